/*
 * chunk_locality: how far a small overwrite disturbs the chunk boundaries.
 *
 * usage: chunk_locality [TRIALS]
 * Cuts 16 MiB of random bytes with the project's chunker, then, TRIALS
 * times (default 3000), overwrites 4 KiB at a random 4 KiB-aligned offset
 * with other random bytes and cuts the result again. A chunk of the new
 * version is new unless the old version had a chunk with the same start
 * and end that does not overlap the overwrite. Prints how many trials gave
 * 1, 2, ... new chunks and how many gave 64 KiB or more of new chunk bytes:
 * what an upload of that change must send (the 4 KiB overwrite goal of
 * make bench-wire is under 64 KiB). Min-size skipping, normalized chunking
 * and max-size cuts make a boundary depend on the one before it, so a
 * change can move several boundaries after it before they fall back in
 * step (docs/CHUNKING.md).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chunker.h"

#define SIZE (16u << 20)
#define PATCH 4096u

/* Cut d[0..n) into chunks; ends[k] is the end of chunk k. Returns the count. */
static size_t cut(const uint8_t *d, size_t n, size_t *ends)
{
	struct chunker c;
	size_t k = 0;
	chunker_init(&c);
	for (size_t p = 0; p < n; k++) {
		p += chunker_next(&c, d + p, n - p, 1);
		ends[k] = p;
	}
	return k;
}

int main(int argc, char **argv)
{
	int trials = argc > 1 ? atoi(argv[1]) : 3000;
	uint8_t *a = malloc(SIZE), *b = malloc(SIZE), patch[PATCH];
	size_t *ea = malloc(SIZE / CHUNK_MIN * sizeof(*ea) + 16);
	size_t *eb = malloc(SIZE / CHUNK_MIN * sizeof(*eb) + 16);
	FILE *r = fopen("/dev/urandom", "rb");
	int hist[16] = { 0 }, over64 = 0, over128 = 0;
	if (!a || !b || !ea || !eb || !r || fread(a, 1, SIZE, r) != SIZE || trials <= 0) {
		fprintf(stderr, "chunk_locality: cannot set up\n");
		return 1;
	}
	size_t na = cut(a, SIZE, ea);
	srand(12345);
	for (int t = 0; t < trials; t++) {
		/* Away from both ends: a change near the end is an append. */
		size_t off = ((size_t)rand() % (SIZE / PATCH - 64) + 32) * PATCH;
		if (fread(patch, 1, PATCH, r) != PATCH)
			return 1;
		memcpy(b, a, SIZE);
		memcpy(b + off, patch, PATCH);
		size_t nb = cut(b, SIZE, eb), newc = 0, bytes = 0;
		for (size_t i = 0, j = 0; j < nb; j++) {
			size_t s = j ? eb[j - 1] : 0, e = eb[j];
			while (i < na && ea[i] < e)
				i++;
			int kept = i < na && ea[i] == e && (i ? ea[i - 1] : 0) == s &&
				   !(s < off + PATCH && e > off);
			if (!kept) {
				newc++;
				bytes += e - s;
			}
		}
		hist[newc < 15 ? newc : 15]++;
		over64 += bytes >= 65536;
		over128 += bytes >= 131072;
	}
	printf("4 KiB overwritten at %d random offsets of 16 MiB of random bytes "
	       "(chunks %u/%u/%u B min/avg/max)\n",
	       trials, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX);
	for (int k = 0; k < 16; k++)
		if (hist[k])
			printf("  %s%2d new chunks: %5d trials (%.1f %%)\n", k == 15 ? ">=" : "  ", k,
			       hist[k], 100.0 * hist[k] / trials);
	printf("  new chunk bytes >= 64 KiB: %d trials (%.1f %%), >= 128 KiB: %d (%.1f %%)\n",
	       over64, 100.0 * over64 / trials, over128, 100.0 * over128 / trials);
	fclose(r);
	free(a);
	free(b);
	free(ea);
	free(eb);
	return 0;
}
