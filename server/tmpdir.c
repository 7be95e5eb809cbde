#define _GNU_SOURCE
#include "tmpdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "resolve.h"

/* Remove every entry of the folder fd (not the folder itself). */
static int clean(int fd, int lift)
{
	int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (dfd < 0)
		return -errno;
	DIR *d = fdopendir(dfd); /* takes dfd */
	if (!d) {
		int r = -errno;
		close(dfd);
		return r;
	}
	int r = 0, n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if ((r = resolve_rmtree(fd, e->d_name, lift)) < 0) {
			log_error("cannot remove leftover temporary %s: %s", e->d_name, strerror(-r));
			break;
		}
		n++;
	}
	closedir(d);
	if (n)
		log_info("removed %d leftover temporaries", n);
	return r;
}

int tmpdir_open(struct tmpdir *t, int statefd, int lift)
{
	t->fd = -1;
	atomic_init(&t->counter, 1);
	if (mkdirat(statefd, "tmp", 0700) < 0 && errno != EEXIST)
		return -errno;
	int fd = openat(statefd, "tmp", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = clean(fd, lift);
	if (r < 0) {
		close(fd);
		return r;
	}
	t->fd = fd;
	return 0;
}

void tmpdir_close(struct tmpdir *t)
{
	if (!t || t->fd < 0)
		return;
	close(t->fd);
	t->fd = -1;
}

void tmpdir_name(struct tmpdir *t, char kind, char out[TMPDIR_NAME_MAX])
{
	unsigned long n = atomic_fetch_add(&t->counter, 1);
	snprintf(out, TMPDIR_NAME_MAX, "%c.%ld.%lu", kind, (long)getpid(), n);
}
