/*
 * resolve: safe resolution of mirror paths beneath mirrord's root folder, and
 * the small filesystem helpers every apply step needs.
 *
 * Invariants:
 * - Nothing here ever follows a symlink. Folders are opened with openat2()
 *   (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) relative
 *   to the root fd, so no path can leave the root, whatever the network sends
 *   and whatever symlinks a client planted. Final components are handled by
 *   the callers with *at() calls and AT_SYMLINK_NOFOLLOW / O_NOFOLLOW.
 * - Paths given here have passed path_check() (no "..", no leading '/').
 * - Folder fds returned are O_PATH: usable as the dirfd of *at() calls, not for
 *   fsync/fchmod (use resolve_fsync_dir(), resolve_fd_chmod()).
 *
 * "Lifting": an unprivileged mirrord must still change the content of a
 * folder the client made read-only (0555, 0500). resolve_lift() adds u+rwx
 * to such a folder for the moment of the change and resolve_unlift() puts
 * the exact old mode back. Lifting is a no-op when the caller passes
 * lift == 0 (mirrord runs as root: permissions do not stop it). chmod never
 * touches a folder's mtime, so lifting is invisible to the mirror.
 *
 * Thread-safety: all functions are reentrant; callers serialise changes to
 * the namespace (apply.c's namespace lock) so that two lifts of one folder
 * never interleave.
 */
#ifndef MIRRORD_RESOLVE_H
#define MIRRORD_RESOLVE_H

#include <stddef.h>
#include <sys/stat.h>
#include <time.h>

/* Open the folder at mirror path p[0..len) (len 0: the root) beneath rootfd.
 * On success *out is a new O_PATH fd (caller closes). Returns 0, -ENOENT,
 * -ENOTDIR, -ELOOP (a symlink on the way), -EXDEV, -EACCES, -ENAMETOOLONG
 * or another negative errno. */
__attribute__((warn_unused_result))
int resolve_dir(int rootfd, const char *p, size_t len, int *out);

/* As resolve_dir(), but missing folders on the way are created (mode 0755,
 * set explicitly so the umask does not matter), and a non-folder in the way
 * (file, symlink, ...) is unlinked and replaced by a folder. Folders that
 * refuse the change are lifted for the moment if lift is set. Returns as
 * resolve_dir(). */
__attribute__((warn_unused_result))
int resolve_dir_make(int rootfd, const char *p, size_t len, int lift, int *out);

/* Split a non-root mirror path into its parent folder (opened with
 * resolve_dir, or resolve_dir_make if make) and its base name (a pointer
 * into p). Without make, folders on the way that refuse the walk (no u+x)
 * are lifted for the moment if lift is set; nothing is created. The parent
 * itself is not left lifted: callers that change or look into it lift it
 * (resolve_lift) before they do. Returns as resolve_dir(). */
__attribute__((warn_unused_result))
int resolve_parent(int rootfd, const char *p, int make, int lift, int *pfd,
		   const char **base);

/* A lifted folder: what resolve_unlift() needs to restore it. */
struct resolve_lift {
	int fd;      /* owned dup of the folder fd, -1 if nothing was lifted */
	mode_t mode; /* the mode to put back */
};

#define RESOLVE_LIFT_INIT { .fd = -1, .mode = 0 }

/* If lift is set and the folder dirfd lacks any of u+rwx, add them and
 * remember the old mode in *l (which must be RESOLVE_LIFT_INIT or already
 * restored). Returns 0 (also when nothing had to change) or a negative
 * errno. */
__attribute__((warn_unused_result))
int resolve_lift(int dirfd, int lift, struct resolve_lift *l);

/* Put back the mode saved by resolve_lift() and reset *l. Cannot fail in a
 * way the caller can act on (a failure is logged). Accepts an unlifted l. */
void resolve_unlift(struct resolve_lift *l);

/* Forget a lift without restoring (the folder is about to be removed). */
void resolve_lift_drop(struct resolve_lift *l);

/* chmod / set mtime of whatever fd refers to (also O_PATH fds, through
 * /proc/self/fd, which names the inode itself, never a path). Not for
 * symlinks. The atime is left alone. Return 0 or a negative errno. */
__attribute__((warn_unused_result))
int resolve_fd_chmod(int fd, mode_t mode);
__attribute__((warn_unused_result))
int resolve_fd_mtime(int fd, const struct timespec *mtime);

/* fsync the folder dirfd refers to (opening it read-only for the purpose:
 * a folder without u+r must still be lifted). Returns 0 or a negative
 * errno. */
__attribute__((warn_unused_result))
int resolve_fsync_dir(int dirfd);

/* Open the folder dirfd refers to read-only (for a later fsync, which the
 * folder's mode no longer affects), into *out (caller closes). Returns 0
 * or a negative errno. */
__attribute__((warn_unused_result))
int resolve_open_rd(int dirfd, int *out);

/* Remove name in dirfd and, if it is a folder, everything beneath it,
 * never following a symlink. Read-only folders inside are lifted when lift
 * is set (they are about to disappear anyway). Missing name: 0. Returns 0 or
 * a negative errno (the removal stops at the first failure). */
__attribute__((warn_unused_result))
int resolve_rmtree(int dirfd, const char *name, int lift);

#endif
