/*
 * fs: the FUSE front end (libfuse high-level API, path based, multithreaded).
 *
 * Every operation is passed through to BACKING with the *at() calls on
 * mirror->backing_fd, returning BACKING's own errors, and every mutation is
 * captured for the queue after it succeeded in BACKING: the request path
 * does no network I/O, no hashing and no fsync of its own (an fsync the
 * application asks for goes to BACKING).
 *
 * Capture costs: a metadata operation calls queue_sync/queue_rename (a
 * mutex and a hash lookup); a write costs two atomic operations on the
 * open file's record (ofile.h) except for the first write after an upload.
 *
 * The status of the mirror is readable as the extended attribute
 * STATUS_XATTR (status.h) of the mount's root (JSON): that is how `mirrorfs status`
 * and `mirrorfs sync` find a running client from its mountpoint, without a
 * socket or any file visible in the mount.
 */
#ifndef MIRRORFS_FS_H
#define MIRRORFS_FS_H

#define FUSE_USE_VERSION 314
#include <fuse.h>

/* The operations table; private_data must be a struct mirror *. */
extern const struct fuse_operations fs_ops;

#endif
