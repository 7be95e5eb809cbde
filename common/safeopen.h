/*
 * safeopen: open a path beneath a directory fd without following any
 * symlink, on either side: the client reads BACKING with it (a name that
 * became a symlink since it was queued must not make us upload /etc/passwd),
 * mirrord writes DIR with it.
 *
 * On Linux this is openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
 * RESOLVE_NO_MAGICLINKS); where openat2 is missing (old kernels, other
 * systems) a component-by-component walk with O_NOFOLLOW | O_DIRECTORY does
 * the same. Thread-safe.
 */
#ifndef MIRROR_SAFEOPEN_H
#define MIRROR_SAFEOPEN_H

#include <sys/stat.h>
#include <sys/types.h>

/* Open path (a mirror path, "" = dirfd itself) beneath dirfd. flags as
 * openat(2) (O_CLOEXEC is added; O_CREAT allowed for the last component).
 * Returns an fd (caller closes) or a negative errno: -ELOOP if a component
 * is a symlink, -ENOTDIR, -ENOENT, -EXDEV for an escape attempt, ... */
__attribute__((warn_unused_result))
int safe_openat(int dirfd, const char *path, int flags, mode_t mode);

/* Open the folder that holds path's last component (O_PATH | O_DIRECTORY
 * unless flags says otherwise: pass O_RDONLY to be able to fsync/futimens
 * it), and point *base at that component inside path. path must not be "".
 * Returns an fd or a negative errno as safe_openat. */
__attribute__((warn_unused_result))
int safe_open_parent(int dirfd, const char *path, int flags, const char **base);

/* lstat path beneath dirfd without following symlinks anywhere. A missing
 * or non-folder/symlink parent gives -ENOENT. "" stats dirfd itself.
 * Returns 0 or a negative errno. */
__attribute__((warn_unused_result))
int safe_lstat(int dirfd, const char *path, struct stat *st);

#endif
