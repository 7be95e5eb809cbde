/*
 * bench_io_latency: close()-to-server latency of small files, for bench.sh.
 *
 *   bench_io_latency MNTDIR MIRRORDIR COUNT SIZE [POLL_US [TIMEOUT_MS [GAP_MS]]]
 *
 * For i in 0..COUNT-1: writes SIZE bytes of fresh pseudo-random data to
 * MNTDIR/lat-NNNNNN (open, write, close), takes the time when close()
 * returns, then polls MIRRORDIR/lat-NNNNNN every POLL_US microseconds
 * (default 2000) until it holds exactly those bytes, at most TIMEOUT_MS
 * (default 10000). Then sleeps GAP_MS (default 5) so that the files form a
 * steady stream rather than a burst, and goes on with the next one.
 *
 * MIRRORDIR is the folder on the server side that mirrors MNTDIR; mirrord
 * publishes a file by renaming a complete temporary over it, but the content
 * is compared anyway, so a torn or stale file never counts as arrived.
 *
 * Output (stdout): one line per file, the latency in milliseconds with three
 * decimals, or "timeout" if the file was not complete within TIMEOUT_MS.
 * A summary goes to stderr. Timing uses CLOCK_MONOTONIC.
 *
 * Exit status: 0 when every file was written (timeouts are data, not
 * errors), 1 when writing through the mount failed, 2 on bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_SIZE (16 * 1024 * 1024)

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* xorshift64*: fast, and good enough to defeat compression and dedup. */
static void fill_random(unsigned char *p, size_t n, uint64_t *state)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t x = *state;
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		*state = x;
		x *= 0x2545F4914F6CDD1DULL;
		memcpy(p + i, &x, n - i < 8 ? n - i : 8);
	}
}

/* Write n bytes to path. Returns 0, or -errno with a message printed. */
static int write_file(const char *path, const unsigned char *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		goto fail;
	for (size_t off = 0; off < n;) {
		ssize_t w = write(fd, p + off, n - off);
		if (w < 0) {
			int saverr = errno;
			close(fd);
			errno = saverr;
			goto fail;
		}
		off += (size_t)w;
	}
	if (close(fd) < 0)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "bench_io_latency: cannot write %s: %s\n", path, strerror(errno));
	return -errno;
}

/* 1 if path holds exactly want[0..n), else 0 (missing, short, different). */
static int has_content(const char *path, const unsigned char *want, size_t n, unsigned char *tmp)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return 0;
	struct stat st;
	int ok = 0;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size == n) {
		size_t off = 0;
		while (off < n) {
			ssize_t r = read(fd, tmp + off, n - off);
			if (r <= 0)
				break;
			off += (size_t)r;
		}
		ok = off == n && memcmp(tmp, want, n) == 0;
	}
	close(fd);
	return ok;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static long arg_long(const char *s, long min, long max, const char *what)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < min || v > max) {
		fprintf(stderr, "bench_io_latency: invalid %s '%s'\n", what, s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	if (argc < 5 || argc > 8) {
		fprintf(stderr, "usage: bench_io_latency MNTDIR MIRRORDIR COUNT SIZE "
				"[POLL_US [TIMEOUT_MS [GAP_MS]]]\n");
		return 2;
	}
	const char *mnt = argv[1], *mirror = argv[2];
	long count = arg_long(argv[3], 1, 1000000, "count");
	long size = arg_long(argv[4], 1, MAX_SIZE, "size");
	long poll_us = argc > 5 ? arg_long(argv[5], 100, 1000000, "poll interval") : 2000;
	long timeout_ms = argc > 6 ? arg_long(argv[6], 1, 3600000, "timeout") : 10000;
	long gap_ms = argc > 7 ? arg_long(argv[7], 0, 60000, "gap") : 5;

	unsigned char *data = malloc((size_t)size), *tmp = malloc((size_t)size);
	double *lat = calloc((size_t)count, sizeof(*lat));
	if (!data || !tmp || !lat) {
		fprintf(stderr, "bench_io_latency: out of memory\n");
		return 1;
	}
	uint64_t state = 0x9E3779B97F4A7C15ULL ^ (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	long n_ok = 0, n_timeout = 0;
	char src[4096], dst[4096];
	for (long i = 0; i < count; i++) {
		snprintf(src, sizeof(src), "%s/lat-%06ld", mnt, i);
		snprintf(dst, sizeof(dst), "%s/lat-%06ld", mirror, i);
		fill_random(data, (size_t)size, &state);
		if (write_file(src, data, (size_t)size) < 0)
			return 1;
		double t0 = now_ms(), t;
		int arrived;
		for (;;) {
			arrived = has_content(dst, data, (size_t)size, tmp);
			t = now_ms();
			if (arrived || t - t0 > (double)timeout_ms)
				break;
			sleep_us(poll_us);
		}
		if (arrived) {
			lat[n_ok++] = t - t0;
			printf("%.3f\n", t - t0);
		} else {
			n_timeout++;
			printf("timeout\n");
		}
		fflush(stdout);
		if (gap_ms)
			sleep_us(gap_ms * 1000);
	}
	qsort(lat, (size_t)n_ok, sizeof(*lat), cmp_double);
	if (n_ok > 0)
		fprintf(stderr,
			"bench_io_latency: %ld files of %ld bytes: median %.1f ms, max %.1f ms, "
			"%ld timeouts (> %ld ms)\n",
			count, size, lat[n_ok / 2], lat[n_ok - 1], n_timeout, timeout_ms);
	else
		fprintf(stderr, "bench_io_latency: no file arrived within %ld ms\n", timeout_ms);
	free(data);
	free(tmp);
	free(lat);
	return 0;
}
