#define _GNU_SOURCE
#include "safeopen.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "path.h"

#ifdef __linux__
#include <linux/openat2.h>
#include <sys/syscall.h>
#endif

/* Portable fallback: walk each component with O_NOFOLLOW. */
static int walk_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	char comp[PATH_COMPONENT_MAX + 1];
	int cur = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cur < 0)
		return -errno;
	const char *p = path;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		if (n == 0 || n > PATH_COMPONENT_MAX) {
			close(cur);
			return n ? -ENAMETOOLONG : -EINVAL;
		}
		memcpy(comp, p, n);
		comp[n] = '\0';
		int fl = slash ? (O_RDONLY | O_DIRECTORY) : flags;
		int next = openat(cur, comp, fl | O_NOFOLLOW | O_CLOEXEC, mode);
		int err = errno;
		close(cur);
		if (next < 0)
			return -err;
		if (!slash)
			return next;
		cur = next;
		p = slash + 1;
	}
}

int safe_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	if (path[0] == '\0')
		path = ".";
#ifdef SYS_openat2
	static int no_openat2; /* set once if the kernel lacks it; benign race */
	if (!no_openat2) {
		struct open_how how;
		memset(&how, 0, sizeof(how));
		how.flags = (uint64_t)(flags | O_CLOEXEC);
		how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
		how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
		long fd;
		do
			fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
		while (fd < 0 && errno == EAGAIN);
		if (fd >= 0)
			return (int)fd;
		if (errno != ENOSYS)
			return -errno;
		no_openat2 = 1;
	}
#endif
	if (strcmp(path, ".") == 0) {
		int fd = openat(dirfd, ".", flags | O_CLOEXEC, mode);
		return fd < 0 ? -errno : fd;
	}
	return walk_openat(dirfd, path, flags, mode);
}

int safe_open_parent(int dirfd, const char *path, int flags, const char **base)
{
	size_t plen = path_parent_len(path);
	*base = path_base(path);
	if (plen == 0)
		return safe_openat(dirfd, "", (flags ? flags : O_PATH) | O_DIRECTORY, 0);
	char *parent = strndup(path, plen);
	if (!parent)
		return -ENOMEM;
	int fd = safe_openat(dirfd, parent, (flags ? flags : O_PATH) | O_DIRECTORY, 0);
	free(parent);
	return fd;
}

int safe_lstat(int dirfd, const char *path, struct stat *st)
{
	if (path[0] == '\0')
		return fstat(dirfd, st) < 0 ? -errno : 0;
	const char *base;
	int pfd = safe_open_parent(dirfd, path, 0, &base);
	if (pfd < 0)
		return (pfd == -ELOOP || pfd == -ENOTDIR) ? -ENOENT : pfd;
	int r = fstatat(pfd, base, st, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
	close(pfd);
	if (r == -ENOTDIR)
		r = -ENOENT;
	return r;
}
