/*
 * fsop: file operations the shell cannot do, for the integration tests.
 *
 *   fsop mmapwrite [--msync] FILE OFFSET TEXT
 *       Write TEXT at OFFSET through a shared writable mapping (extending the
 *       file with ftruncate first if needed), then munmap and close. With
 *       --msync, msync(MS_SYNC) before munmap.
 *   fsop rename2 none|noreplace|exchange FROM TO
 *       renameat2(2) with the given flag.
 *   fsop openunlink FILE SIZE
 *       Create FILE, write to it, unlink it while open, keep writing SIZE
 *       bytes through the fd, fchmod and futimens it, then close: the name
 *       must not come back anywhere.
 *   fsop xattr FILE NAME VALUE
 *       setxattr(2) NAME=VALUE on FILE and read it back: exit 0 if it reads
 *       back equal, 3 if the filesystem says extended attributes are not
 *       supported (ENOTSUP), 1 on any other failure.
 *
 * Exit status: 0 on success, 1 on a failed operation (the message names the
 * call and the file), 2 on bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

static int die(const char *what, const char *path)
{
	fprintf(stderr, "fsop: %s %s: %s\n", what, path, strerror(errno));
	return 1;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: fsop mmapwrite [--msync] FILE OFFSET TEXT\n"
		"       fsop rename2 none|noreplace|exchange FROM TO\n"
		"       fsop openunlink FILE SIZE\n"
		"       fsop xattr FILE NAME VALUE\n");
	return 2;
}

static int parse_size(const char *s, off_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < 0)
		return -1;
	*out = (off_t)v;
	return 0;
}

static int write_all(int fd, const void *p, size_t len)
{
	const char *c = p;
	while (len) {
		ssize_t w = write(fd, c, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		c += w;
		len -= (size_t)w;
	}
	return 0;
}

static int cmd_mmapwrite(int argc, char **argv)
{
	int do_msync = 0;
	if (argc > 0 && strcmp(argv[0], "--msync") == 0) {
		do_msync = 1;
		argc--;
		argv++;
	}
	if (argc != 3)
		return usage();
	const char *path = argv[0], *text = argv[2];
	off_t off;
	size_t len = strlen(text);
	if (parse_size(argv[1], &off) < 0 || len == 0)
		return usage();

	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return die("open", path);
	struct stat st;
	if (fstat(fd, &st) < 0)
		return die("fstat", path);
	if (st.st_size < off + (off_t)len && ftruncate(fd, off + (off_t)len) < 0)
		return die("ftruncate", path);
	long pg = sysconf(_SC_PAGESIZE);
	off_t base = off - off % pg;
	size_t maplen = (size_t)(off - base) + len;
	char *m = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, base);
	if (m == MAP_FAILED)
		return die("mmap", path);
	memcpy(m + (off - base), text, len);
	if (do_msync && msync(m, maplen, MS_SYNC) < 0)
		return die("msync", path);
	if (munmap(m, maplen) < 0)
		return die("munmap", path);
	if (close(fd) < 0)
		return die("close", path);
	return 0;
}

static int cmd_rename2(int argc, char **argv)
{
	if (argc != 3)
		return usage();
	unsigned flags;
	if (strcmp(argv[0], "none") == 0)
		flags = 0;
	else if (strcmp(argv[0], "noreplace") == 0)
		flags = RENAME_NOREPLACE;
	else if (strcmp(argv[0], "exchange") == 0)
		flags = RENAME_EXCHANGE;
	else
		return usage();
	if (renameat2(AT_FDCWD, argv[1], AT_FDCWD, argv[2], flags) < 0)
		return die("renameat2", argv[1]);
	return 0;
}

static int cmd_openunlink(int argc, char **argv)
{
	if (argc != 2)
		return usage();
	const char *path = argv[0];
	off_t size;
	if (parse_size(argv[1], &size) < 0)
		return usage();
	char block[4096];
	memset(block, 'g', sizeof(block));

	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return die("open", path);
	if (write_all(fd, "before unlink\n", 14) < 0)
		return die("write", path);
	if (unlink(path) < 0)
		return die("unlink", path);
	for (off_t done = 0; done < size; done += (off_t)sizeof(block)) {
		size_t n = size - done < (off_t)sizeof(block) ? (size_t)(size - done) : sizeof(block);
		if (write_all(fd, block, n) < 0)
			return die("write after unlink", path);
	}
	if (fchmod(fd, 0600) < 0)
		return die("fchmod after unlink", path);
	struct timespec ts[2] = { { 1000000000, 1 }, { 1000000000, 2 } };
	if (futimens(fd, ts) < 0)
		return die("futimens after unlink", path);
	if (close(fd) < 0)
		return die("close", path);
	return 0;
}

static int cmd_xattr(int argc, char **argv)
{
	if (argc != 3)
		return usage();
	const char *path = argv[0], *name = argv[1], *value = argv[2];
	char back[4096];
	if (setxattr(path, name, value, strlen(value), 0) < 0) {
		if (errno == ENOTSUP)
			return 3;
		return die("setxattr", path);
	}
	ssize_t n = getxattr(path, name, back, sizeof(back));
	if (n < 0)
		return die("getxattr", path);
	if ((size_t)n != strlen(value) || memcmp(back, value, (size_t)n) != 0) {
		fprintf(stderr, "fsop: %s: %s reads back different\n", path, name);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	const char *cmd = argv[1];
	argc -= 2;
	argv += 2;
	if (strcmp(cmd, "mmapwrite") == 0)
		return cmd_mmapwrite(argc, argv);
	if (strcmp(cmd, "rename2") == 0)
		return cmd_rename2(argc, argv);
	if (strcmp(cmd, "openunlink") == 0)
		return cmd_openunlink(argc, argv);
	if (strcmp(cmd, "xattr") == 0)
		return cmd_xattr(argc, argv);
	return usage();
}
