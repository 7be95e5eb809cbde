/*
 * bench_io_files: the small-files workload reduced to its system calls, for
 * bench.sh: no process is started per file, so the time is the
 * filesystem's alone.
 *
 *   bench_io_files DIR NDIRS NFILES SIZE
 *
 * Creates NDIRS folders under DIR (which must exist) and NFILES files of
 * SIZE bytes spread over them (open O_CREAT|O_EXCL, write, close), then
 * lists every folder and lstat()s every entry (fstatat), then unlinks every
 * file and removes the folders: DIR is left as it was. Each file starts with
 * its own number, so no two have the same content (a mirror that
 * deduplicates gets no free ride).
 *
 * Exit status: 0, 1 on any error (with a message naming the path), 2 on bad
 * usage.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static long arg_long(const char *s, long min, long max, const char *what)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < min || v > max) {
		fprintf(stderr, "bench_io_files: invalid %s '%s'\n", what, s);
		exit(2);
	}
	return v;
}

static int fail(const char *what, const char *path)
{
	fprintf(stderr, "bench_io_files: cannot %s %s: %s\n", what, path, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: bench_io_files DIR NDIRS NFILES SIZE\n");
		return 2;
	}
	const char *root = argv[1];
	long ndirs = arg_long(argv[2], 1, 1000000, "folder count");
	long nfiles = arg_long(argv[3], 0, 100000000, "file count");
	long size = arg_long(argv[4], 0, 1 << 20, "size");
	char path[4096];
	char *buf = malloc((size_t)size + 1);
	struct stat st;

	if (!buf) {
		fprintf(stderr, "bench_io_files: out of memory\n");
		return 1;
	}
	memset(buf, 'x', (size_t)size);
	for (long d = 0; d < ndirs; d++) {
		snprintf(path, sizeof(path), "%s/d%04ld", root, d);
		if (mkdir(path, 0755) < 0)
			return fail("create", path);
	}
	for (long i = 0; i < nfiles; i++) {
		snprintf(path, sizeof(path), "%s/d%04ld/f%07ld", root, i % ndirs, i);
		char tag[24];
		int len = snprintf(tag, sizeof(tag), "%ld\n", i);
		memcpy(buf, tag, (size_t)len < (size_t)size ? (size_t)len : (size_t)size);
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0)
			return fail("create", path);
		if (write(fd, buf, (size_t)size) != (ssize_t)size) {
			close(fd);
			return fail("write", path);
		}
		if (close(fd) < 0)
			return fail("close", path);
	}
	for (long d = 0; d < ndirs; d++) {
		snprintf(path, sizeof(path), "%s/d%04ld", root, d);
		DIR *dir = opendir(path);
		if (!dir)
			return fail("open", path);
		struct dirent *e;
		while ((e = readdir(dir))) {
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			if (fstatat(dirfd(dir), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
				closedir(dir);
				return fail("stat", e->d_name);
			}
		}
		closedir(dir);
	}
	for (long i = 0; i < nfiles; i++) {
		snprintf(path, sizeof(path), "%s/d%04ld/f%07ld", root, i % ndirs, i);
		if (unlink(path) < 0)
			return fail("remove", path);
	}
	for (long d = 0; d < ndirs; d++) {
		snprintf(path, sizeof(path), "%s/d%04ld", root, d);
		if (rmdir(path) < 0)
			return fail("remove", path);
	}
	free(buf);
	return 0;
}
