#define _GNU_SOURCE
#include "resolve.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "path.h"

/* Deeper than any tree the protocol can build (a path holds at most 2048
 * components); a local user could build deeper, we refuse to recurse on. */
#define RMTREE_DEPTH_MAX 4096

static int openat2_beneath(int dirfd, const char *p, int flags)
{
	struct open_how how;
	memset(&how, 0, sizeof(how));
	how.flags = (unsigned long long)(flags | O_CLOEXEC);
	how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
	/* EAGAIN: a concurrent rename somewhere in the filesystem made the
	 * kernel unsure the walk stayed beneath; it asks us to retry. */
	for (int tries = 0; tries < 16; tries++) {
		long fd = syscall(SYS_openat2, dirfd, p, &how, sizeof(how));
		if (fd >= 0)
			return (int)fd;
		if (errno != EAGAIN)
			return -errno;
	}
	return -EAGAIN;
}

/* Copy p[0..len) to a NUL-terminated buffer of PATH_MAX_LEN + 1 bytes;
 * len 0 gives ".". */
static int copy_path(char out[PATH_MAX_LEN + 1], const char *p, size_t len)
{
	if (len > PATH_MAX_LEN)
		return -ENAMETOOLONG;
	if (len == 0) {
		out[0] = '.';
		out[1] = '\0';
		return 0;
	}
	memcpy(out, p, len);
	out[len] = '\0';
	return 0;
}

int resolve_dir(int rootfd, const char *p, size_t len, int *out)
{
	char buf[PATH_MAX_LEN + 1];
	int r = copy_path(buf, p, len);
	if (r < 0)
		return r;
	r = openat2_beneath(rootfd, buf, O_PATH | O_DIRECTORY);
	if (r < 0)
		return r;
	*out = r;
	return 0;
}

/* Make name in the folder cur a folder (0755), replacing a non-folder, and
 * open it (O_PATH) into *out. cur must already be lifted if needed. */
static int make_one(int cur, const char *name, int *out)
{
	for (int tries = 0; tries < 8; tries++) {
		int fd = openat2_beneath(cur, name, O_PATH | O_DIRECTORY);
		if (fd >= 0) {
			*out = fd;
			return 0;
		}
		if (fd == -ENOTDIR || fd == -ELOOP) {
			/* A file, symlink or other non-folder in the way: the
			 * client only asks for this when it has a folder here.
			 * unlinkat() removes the symlink itself, never its target. */
			if (unlinkat(cur, name, 0) < 0 && errno != ENOENT)
				return -errno;
			continue;
		}
		if (fd != -ENOENT)
			return fd;
		if (mkdirat(cur, name, 0700) < 0 && errno != EEXIST)
			return -errno;
		fd = openat2_beneath(cur, name, O_PATH | O_DIRECTORY);
		if (fd < 0)
			continue; /* raced with someone: look again */
		/* Durable before anything inside it is: a file acknowledged
		 * below a folder whose own entry was never flushed would be
		 * lost with it (a filesystem without a journal writes each
		 * folder on its own). Only for folders made here, ahead of
		 * their own op (a retried or deferred folder, a replay). */
		int r = resolve_fd_chmod(fd, 0755);
		if (r == 0)
			r = resolve_fsync_dir(fd);
		if (r == 0)
			r = resolve_fsync_dir(cur);
		if (r < 0) {
			close(fd);
			return r;
		}
		*out = fd;
		return 0;
	}
	return -EAGAIN;
}

/* The slow path of resolve_dir() and resolve_dir_make(): one component
 * at a time, each folder on the way lifted for the moment it is looked
 * into (an O_PATH fd of the next one, once open, needs nothing from its
 * parent), and with make, what is missing created. */
static int walk(int rootfd, const char *p, size_t len, int lift, int make, int *out)
{
	char buf[PATH_MAX_LEN + 1];
	int r = copy_path(buf, p, len);
	if (r < 0)
		return r;
	int cur = openat2_beneath(rootfd, ".", O_PATH | O_DIRECTORY);
	if (cur < 0)
		return cur;
	char *s = buf;
	if (len == 0)
		goto done;
	for (;;) {
		char *slash = strchr(s, '/');
		if (slash)
			*slash = '\0';
		struct resolve_lift l = RESOLVE_LIFT_INIT;
		int next = -1;
		r = resolve_lift(cur, lift, &l);
		if (r == 0 && make) {
			r = make_one(cur, s, &next);
		} else if (r == 0) {
			next = openat2_beneath(cur, s, O_PATH | O_DIRECTORY);
			r = next < 0 ? next : 0;
		}
		resolve_unlift(&l);
		close(cur);
		if (r < 0)
			return r;
		cur = next;
		if (!slash)
			break;
		s = slash + 1;
	}
done:
	*out = cur;
	return 0;
}

int resolve_dir_make(int rootfd, const char *p, size_t len, int lift, int *out)
{
	int r = resolve_dir(rootfd, p, len, out);
	if (r != -ENOENT && r != -ENOTDIR && r != -ELOOP && r != -EACCES)
		return r;
	return walk(rootfd, p, len, lift, 1, out);
}

int resolve_parent(int rootfd, const char *p, int make, int lift, int *pfd, const char **base)
{
	size_t plen = path_parent_len(p);
	*base = path_base(p);
	if (make)
		return resolve_dir_make(rootfd, p, plen, lift, pfd);
	int r = resolve_dir(rootfd, p, plen, pfd);
	if (r == -EACCES && lift)
		r = walk(rootfd, p, plen, lift, 0, pfd); /* a folder without x on the way */
	return r;
}

int resolve_lift(int dirfd, int lift, struct resolve_lift *l)
{
	struct stat st;
	if (!lift)
		return 0;
	if (l->fd >= 0)
		return -EBUSY; /* caller bug: lifting twice would lose the mode */
	if (fstat(dirfd, &st) < 0)
		return -errno;
	if ((st.st_mode & S_IRWXU) == S_IRWXU)
		return 0;
	int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int r = resolve_fd_chmod(fd, (st.st_mode & 07777) | S_IRWXU);
	if (r < 0) {
		close(fd);
		return r;
	}
	l->fd = fd;
	l->mode = st.st_mode & 07777;
	return 0;
}

void resolve_unlift(struct resolve_lift *l)
{
	if (!l || l->fd < 0)
		return;
	int r = resolve_fd_chmod(l->fd, l->mode);
	if (r < 0)
		log_error("cannot restore folder mode %04o: %s", (unsigned)l->mode, strerror(-r));
	close(l->fd);
	l->fd = -1;
}

/* /proc/self/fd/N names the inode behind fd (a magic link), which makes
 * chmod/utimensat work on O_PATH fds. */
static void proc_fd_path(char out[64], int fd)
{
	snprintf(out, 64, "/proc/self/fd/%d", fd);
}

int resolve_fd_chmod(int fd, mode_t mode)
{
	char p[64];
	if (fchmod(fd, mode) == 0)
		return 0;
	if (errno != EBADF)
		return -errno;
	proc_fd_path(p, fd);
	return fchmodat(AT_FDCWD, p, mode, 0) < 0 ? -errno : 0;
}

int resolve_fd_mtime(int fd, const struct timespec *mtime)
{
	char p[64];
	struct timespec ts[2] = { { .tv_sec = 0, .tv_nsec = UTIME_OMIT }, *mtime };
	/* Most callers pass an O_PATH folder: futimens() refuses those
	 * (EBADF), utimensat() with AT_EMPTY_PATH takes them on recent
	 * kernels (one call instead of two); older kernels refuse the empty
	 * path (ENOENT, EINVAL), and the /proc/self/fd path does it. */
	if (utimensat(fd, "", ts, AT_EMPTY_PATH) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOENT && errno != EBADF)
		return -errno;
	if (futimens(fd, ts) == 0)
		return 0;
	if (errno != EBADF)
		return -errno;
	proc_fd_path(p, fd);
	return utimensat(AT_FDCWD, p, ts, 0) < 0 ? -errno : 0;
}

void resolve_lift_drop(struct resolve_lift *l)
{
	if (!l || l->fd < 0)
		return;
	close(l->fd);
	l->fd = -1;
}

int resolve_open_rd(int dirfd, int *out)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	*out = fd;
	return 0;
}

int resolve_fsync_dir(int dirfd)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return r;
}

static int rmtree_at(int parent, const char *name, int lift, int depth)
{
	struct stat st;
	int r = 0;

	if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(parent, name, 0) < 0 && errno != ENOENT ? -errno : 0;
	if (depth > RMTREE_DEPTH_MAX)
		return -ELOOP;

	int pfd = openat(parent, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (pfd < 0)
		return errno == ENOENT ? 0 : -errno;
	/* No unlift: the folder is about to go. */
	if (lift && (st.st_mode & S_IRWXU) != S_IRWXU &&
	    (r = resolve_fd_chmod(pfd, (st.st_mode & 07777) | S_IRWXU)) < 0)
		goto out_pfd;
	int fd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		goto out_pfd;
	}
	DIR *d = fdopendir(fd); /* takes fd */
	if (!d) {
		r = -errno;
		close(fd);
		goto out_pfd;
	}
	/* Entries removed while reading are ones already returned; a second
	 * pass catches anything a filesystem's readdir skipped. */
	for (int pass = 0; pass < 3; pass++) {
		struct dirent *e;
		errno = 0;
		while ((e = readdir(d))) {
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			if ((r = rmtree_at(dirfd(d), e->d_name, lift, depth + 1)) < 0)
				goto out_dir;
			errno = 0;
		}
		if (errno) {
			r = -errno;
			goto out_dir;
		}
		if (unlinkat(parent, name, AT_REMOVEDIR) == 0 || errno == ENOENT) {
			r = 0;
			goto out_dir;
		}
		if (errno != ENOTEMPTY) {
			r = -errno;
			goto out_dir;
		}
		rewinddir(d);
	}
	r = -ENOTEMPTY;
out_dir:
	closedir(d);
out_pfd:
	close(pfd);
	return r;
}

int resolve_rmtree(int dirfd, const char *name, int lift)
{
	return rmtree_at(dirfd, name, lift, 0);
}
