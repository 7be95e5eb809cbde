/*
 * fs: the FUSE front end (libfuse low-level API, inode based, multithreaded).
 *
 * Every kernel inode is a struct node holding an O_PATH descriptor on the
 * BACKING inode, keyed by (st_dev, st_ino): hard links are one inode, as on
 * the real filesystem. Every operation is passed through to BACKING with the
 * *at() calls on those descriptors, returning BACKING's own errors, and
 * every mutation is captured for the queue after it succeeded in BACKING:
 * the request path does no network I/O, no hashing and no fsync of its own
 * (an fsync the application asks for goes to BACKING). The mirror path of
 * a node is read from the kernel (/proc/self/fd), which follows renames,
 * also those made behind the mount's back.
 *
 * The kernel's write-back cache is on unless the mount says no_writeback:
 * writes collect in the page cache and reach mirrorfs in large requests
 * when the kernel writes them back (at close, fsync, syncfs, memory
 * pressure, or when the flusher below asks). The kernel then owns the
 * file's mtime and sends it with SETATTR: a WRITE keeps BACKING's mtime as
 * it was (under the node's lock, which the SETATTR of times takes too), so
 * BACKING, the mount and the mirror agree whatever order the kernel's
 * requests arrive in. The flusher thread makes the kernel write back files
 * open for writing every FS_FLUSH_MS, so that a file that stays open (a
 * log, a database) still reaches the server within seconds.
 * The same thread asks the kernel to drop cached names when the nodes
 * (one descriptor each) pass a quarter of the descriptor limit.
 *
 * Capture costs: a metadata operation calls queue_sync/queue_rename (a
 * mutex and a hash lookup) after one readlink(); a write costs two atomic
 * operations on the open file's record (ofile.h) except for the first
 * write after an upload.
 *
 * Extended attributes are passed through only with -o xattr (FS_XATTR):
 * without it getxattr answers ENOSYS, and the kernel stops asking. The
 * kernel asks for security.capability before every write() (to drop it),
 * a round trip that made 4 KiB random writes 3.5 times slower (0.18x ->
 * 0.63x native, fio); libfuse 3.14 cannot negotiate HANDLE_KILLPRIV_V2,
 * which would spare it. BACKING's own filesystem still drops a file's
 * capabilities when mirrorfs writes to it.
 *
 * The status of the mirror is answered by the ioctl STATUS_IOCTL (status.h)
 * on the mount's root folder (JSON): that is how `mirrorfs status` and
 * `mirrorfs sync` find a running client from its mountpoint, without a
 * socket or any file visible in the mount.
 */
#ifndef MIRRORFS_FS_H
#define MIRRORFS_FS_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

struct mirror;
struct fs;

#define FS_FLUSH_MS 2000

/* The operations table; the session's userdata must be a struct fs *. */
extern const struct fuse_lowlevel_ops fs_ops;

#define FS_WRITEBACK 1u /* ask for the kernel's write-back cache */
#define FS_XATTR 2u     /* pass extended attributes through */
#define FS_PRIVATE 4u   /* only the daemon's own user uses the mount (no
			 * allow_other/allow_root): BACKING's own checks,
			 * made with that user's credentials, are the caller's */

/* A front end over m (borrowed: it must outlive the fs), flags FS_*.
 * NULL on ENOMEM or when BACKING cannot be opened. Free with fs_free. */
struct fs *fs_new(struct mirror *m, unsigned flags);

/* The session the fs serves (borrowed), for the flusher's notifications;
 * set before the loop starts. */
void fs_set_session(struct fs *fs, struct fuse_session *se);

/* Stop the flusher thread: call when the loop has returned, before the
 * session is destroyed. Idempotent. */
void fs_stop(struct fs *fs);

/* Frees every node. Accepts NULL. */
void fs_free(struct fs *fs);

#endif
