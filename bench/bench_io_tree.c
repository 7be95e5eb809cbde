/*
 * bench_io_tree: generate a tree of files with incompressible content, for
 * bench.sh (the first-upload and memory tests).
 *
 *   bench_io_tree DIR NDIRS NFILES MINSIZE MAXSIZE SEED
 *
 * Creates DIR (and its parents' last level only) if missing, NDIRS folders
 * DIR/dNNNN, and NFILES files spread over them round-robin,
 * DIR/dNNNN/fNNNNNNN, each of a size drawn uniformly from [MINSIZE,
 * MAXSIZE] and filled with pseudo-random bytes (xorshift64*, seeded by SEED
 * and the file's number): zstd cannot shrink them and no two files share a
 * chunk. The same arguments always give the same tree.
 *
 * Output (stdout): the number of bytes written. Exit status: 0, 1 on any
 * error (with a message naming the path), 2 on bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BUF_SIZE (1024 * 1024)

static uint64_t next_random(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static void fill_random(unsigned char *p, size_t n, uint64_t *state)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t x = next_random(state);
		memcpy(p + i, &x, n - i < 8 ? n - i : 8);
	}
}

static long long arg_ll(const char *s, long long min, const char *what)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || end == s || v < min) {
		fprintf(stderr, "bench_io_tree: invalid %s '%s'\n", what, s);
		exit(2);
	}
	return v;
}

/* Write size pseudo-random bytes to path. Returns 0, or -errno with a
 * message printed. */
static int make_file(const char *path, long long size, uint64_t *state, unsigned char *buf)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		goto fail;
	while (size > 0) {
		size_t n = size > BUF_SIZE ? BUF_SIZE : (size_t)size;
		fill_random(buf, n, state);
		for (size_t off = 0; off < n;) {
			ssize_t w = write(fd, buf + off, n - off);
			if (w < 0) {
				int saverr = errno;
				close(fd);
				errno = saverr;
				goto fail;
			}
			off += (size_t)w;
		}
		size -= (long long)n;
	}
	if (close(fd) < 0)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "bench_io_tree: cannot write %s: %s\n", path, strerror(errno));
	return -errno;
}

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: bench_io_tree DIR NDIRS NFILES MINSIZE MAXSIZE SEED\n");
		return 2;
	}
	const char *root = argv[1];
	long long ndirs = arg_ll(argv[2], 1, "folder count");
	long long nfiles = arg_ll(argv[3], 0, "file count");
	long long min = arg_ll(argv[4], 0, "minimum size");
	long long max = arg_ll(argv[5], min, "maximum size");
	uint64_t seed = (uint64_t)arg_ll(argv[6], 0, "seed");
	unsigned char *buf = malloc(BUF_SIZE);
	char path[4096];
	long long total = 0;

	if (!buf) {
		fprintf(stderr, "bench_io_tree: out of memory\n");
		return 1;
	}
	if (mkdir(root, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "bench_io_tree: cannot create %s: %s\n", root, strerror(errno));
		return 1;
	}
	for (long long d = 0; d < ndirs; d++) {
		snprintf(path, sizeof(path), "%s/d%04lld", root, d);
		if (mkdir(path, 0755) < 0 && errno != EEXIST) {
			fprintf(stderr, "bench_io_tree: cannot create %s: %s\n", path, strerror(errno));
			return 1;
		}
	}
	for (long long i = 0; i < nfiles; i++) {
		uint64_t state = (seed + 1) * 0x9E3779B97F4A7C15ULL ^ ((uint64_t)i + 1) * 0xBF58476D1CE4E5B9ULL;
		if (state == 0)
			state = 1;
		long long size = min + (long long)(next_random(&state) % (uint64_t)(max - min + 1));
		snprintf(path, sizeof(path), "%s/d%04lld/f%07lld", root, i % ndirs, i);
		if (make_file(path, size, &state, buf) < 0)
			return 1;
		total += size;
	}
	printf("%lld\n", total);
	free(buf);
	return 0;
}
