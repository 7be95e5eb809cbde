#define _GNU_SOURCE
#include "ra.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "log.h"

/* Undo mountinfo's octal escapes (\040 for a space, ...) in place. */
static void unescape(char *s)
{
	char *o = s;
	for (const char *p = s; *p; p++) {
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
		    p[3] >= '0' && p[3] <= '7') {
			*o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
			p += 3;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
}

int ra_mount_dev(const char *mountinfo, const char *mountpoint, unsigned *maj, unsigned *min)
{
	FILE *f = fopen(mountinfo, "re");
	char *line = NULL;
	size_t cap = 0;
	int found = -ENOENT;
	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		unsigned a, b;
		int at = 0;
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT ... - FSTYPE SOURCE OPTIONS */
		if (sscanf(line, "%*u %*u %u:%u %*s %n", &a, &b, &at) != 2 || at == 0)
			continue;
		char *mp = line + at, *end = strchr(mp, ' ');
		const char *sep = end ? strstr(end, " - ") : NULL;
		if (!sep || strncmp(sep + 3, "fuse", 4) != 0)
			continue;
		*end = '\0';
		unescape(mp);
		if (strcmp(mp, mountpoint) == 0) {
			*maj = a;
			*min = b;
			found = 0; /* the last one listed is the newest */
		}
	}
	free(line);
	fclose(f);
	return found;
}

/* read_ahead_kb of the bdi at path, or -errno. */
static long read_kb(const char *path)
{
	char v[32];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, v, sizeof(v) - 1);
	int e = errno;
	close(fd);
	if (n <= 0)
		return n < 0 ? -e : -EIO;
	v[n] = '\0';
	char *endp;
	long kb = strtol(v, &endp, 10);
	return endp == v || kb < 0 ? -EIO : kb;
}

int ra_match(const char *mountpoint, const char *backing)
{
	struct stat st;
	char p[128];
	unsigned maj, min;
	long want, have;
	int r;

	if (stat(backing, &st) < 0)
		return -errno;
	/* A disk's own bdi, or, for a partition, its disk's. */
	snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/bdi/read_ahead_kb", major(st.st_dev),
		 minor(st.st_dev));
	if ((want = read_kb(p)) < 0) {
		snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/../bdi/read_ahead_kb",
			 major(st.st_dev), minor(st.st_dev));
		if ((want = read_kb(p)) < 0)
			return 0; /* not on a block device */
	}
	if ((r = ra_mount_dev("/proc/self/mountinfo", mountpoint, &maj, &min)) < 0)
		return r;
	snprintf(p, sizeof(p), "/sys/class/bdi/%u:%u/read_ahead_kb", maj, min);
	if ((have = read_kb(p)) < 0)
		return (int)have;
	if (want <= have)
		return 0;
	int fd = open(p, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	char v[32];
	int len = snprintf(v, sizeof(v), "%ld\n", want);
	ssize_t n = write(fd, v, (size_t)len);
	r = n == len ? 1 : n < 0 ? -errno : -EIO;
	close(fd);
	if (r == 1)
		log_debug("readahead of the mount: %ld KiB, as BACKING's disk (was %ld)", want, have);
	return r;
}
