/*
 * kio: the session's reads and writes on /dev/fuse.
 *
 * Plain read(), writev() and splice(), as libfuse would make them, with
 * one difference: the reply to the kernel's INIT also carries the flags
 * given to kio_init_flags(). libfuse 3.14 (Debian 12) sets
 * FUSE_CAP_HANDLE_KILLPRIV in conn->want but never passes it on to the
 * kernel, which then sends a GETATTR before every chown of a file (to
 * work out the setuid bits to clear): tar x sends three SETATTRs and one
 * such GETATTR for each file it extracts. The INIT reply is the first
 * thing written on the session, before any other request is served.
 *
 * It also runs a hook once the kernel has taken the INIT reply
 * (kio_after_init(): ra.h sets the mount's readahead then).
 *
 * Use: kio_install() after fuse_session_mount(); kio_init_flags() from
 * the init callback (only with flags the kernel offered: FUSE_* bits of
 * <linux/fuse.h>, low 32). One session per process.
 */
#ifndef MIRRORFS_KIO_H
#define MIRRORFS_KIO_H

#include <stdint.h>

/* FUSE_HANDLE_KILLPRIV of <linux/fuse.h>, which cannot be included next
 * to libfuse's headers. */
#define FUSE_HANDLE_KILLPRIV_FLAG (1u << 19)

struct fuse_session;

/* Route se's I/O through kio. 0 or a negative errno (se is unchanged). */
int kio_install(struct fuse_session *se);

/* Add flags to the INIT reply, if it has not been written yet. */
void kio_init_flags(uint32_t flags);

/* Call fn(arg) once, in the session thread that wrote the INIT reply,
 * right after the kernel took it (fn must not touch the mount: no other
 * request is served until it returns). Set before the session loop. */
void kio_after_init(void (*fn)(void *arg), void *arg);

#endif
