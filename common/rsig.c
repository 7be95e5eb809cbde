#define _GNU_SOURCE
#include "rsig.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* The strong hash: SipHash-2-4 with a fixed, public key. It need not
 * resist anyone: the chunk id checks the result. */
static const uint8_t strong_key[crypto_shorthash_KEYBYTES] = "mirrorfs rsig k";

static void strong(const uint8_t *p, size_t n, uint8_t out[8])
{
	crypto_shorthash(out, p, n, strong_key);
}

uint32_t rsig_weak(const uint8_t *p, size_t n)
{
	uint32_t a = 0, b = 0;
	for (size_t i = 0; i < n; i++) {
		a += p[i];
		b += (uint32_t)(n - i) * p[i];
	}
	return (a & 0xffff) | (b << 16);
}

void rsig_make(const uint8_t *data, size_t n, uint32_t block, uint8_t *out)
{
	for (size_t k = 0; k + block <= n; k += block, out += RSIG_ENTRY) {
		uint32_t w = rsig_weak(data + k, block);
		out[0] = (uint8_t)w;
		out[1] = (uint8_t)(w >> 8);
		out[2] = (uint8_t)(w >> 16);
		out[3] = (uint8_t)(w >> 24);
		strong(data + k, block, out + 4);
	}
}

static uint32_t weak_of(const uint8_t *e)
{
	return (uint32_t)e[0] | (uint32_t)e[1] << 8 | (uint32_t)e[2] << 16 | (uint32_t)e[3] << 24;
}

/* Open addressing on the weak sum: slot -> block index + 1 (0: empty). */
struct table {
	uint32_t *slot;
	size_t mask;
};

static int table_build(struct table *t, const uint8_t *sigs, size_t nblocks)
{
	size_t cap = 16;
	while (cap < 2 * nblocks)
		cap *= 2;
	if (!(t->slot = calloc(cap, sizeof(*t->slot))))
		return -ENOMEM;
	t->mask = cap - 1;
	for (size_t k = 0; k < nblocks; k++) {
		size_t h = (weak_of(sigs + k * RSIG_ENTRY) * 2654435761u) & t->mask;
		while (t->slot[h])
			h = (h + 1) & t->mask;
		t->slot[h] = (uint32_t)k + 1;
	}
	return 0;
}

/* The block matching data[0..block) with weak sum w, or -1. The block
 * after prev is tried first (runs stay contiguous where the old blocks
 * are). */
static long lookup(const struct table *t, const uint8_t *sigs, size_t nblocks, uint32_t w,
		   const uint8_t *data, uint32_t block, long prev)
{
	uint8_t s[8];
	int have = 0;
	if (prev >= 0 && (size_t)prev + 1 < nblocks &&
	    weak_of(sigs + (size_t)(prev + 1) * RSIG_ENTRY) == w) {
		strong(data, block, s);
		have = 1;
		if (memcmp(s, sigs + (size_t)(prev + 1) * RSIG_ENTRY + 4, 8) == 0)
			return prev + 1;
	}
	for (size_t h = (w * 2654435761u) & t->mask; t->slot[h]; h = (h + 1) & t->mask) {
		size_t k = t->slot[h] - 1;
		const uint8_t *e = sigs + k * RSIG_ENTRY;
		if (weak_of(e) != w)
			continue;
		if (!have) {
			strong(data, block, s);
			have = 1;
		}
		if (memcmp(s, e + 4, 8) == 0)
			return (long)k;
	}
	return -1;
}

static int add_move(struct rsig_move **v, size_t *n, size_t *cap, uint64_t off, uint32_t len,
		    uint64_t src)
{
	if (*n > 0) {
		struct rsig_move *last = &(*v)[*n - 1];
		if (last->off + last->len == off && last->src + last->len == src &&
		    (uint64_t)last->len + len <= UINT32_MAX) {
			last->len += len;
			return 0;
		}
	}
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		struct rsig_move *p = realloc(*v, nc * sizeof(*p));
		if (!p)
			return -ENOMEM;
		*v = p;
		*cap = nc;
	}
	(*v)[(*n)++] = (struct rsig_move){ .off = off, .len = len, .src = src };
	return 0;
}

long rsig_match(const uint8_t *sigs, size_t nblocks, uint32_t block, const uint64_t *boff,
		const uint8_t *data, size_t n, uint64_t noff, struct rsig_move **moves,
		size_t *nmoves)
{
	struct table t = { 0 };
	struct rsig_move *v = NULL;
	size_t nv = 0, cap = 0;
	long covered = 0, prev = -1;

	*moves = NULL;
	*nmoves = 0;
	if (nblocks == 0 || block == 0 || n < block)
		return 0;
	if (table_build(&t, sigs, nblocks) < 0)
		return -ENOMEM;
	size_t i = 0;
	uint32_t a = 0, b = 0;
	int fresh = 1; /* a, b must be computed for the window at i */
	while (i + block <= n) {
		if (fresh) {
			uint32_t w = rsig_weak(data + i, block);
			a = w & 0xffff;
			b = w >> 16;
			fresh = 0;
		}
		uint32_t w = (a & 0xffff) | (b << 16);
		long k = lookup(&t, sigs, nblocks, w, data + i, block, prev);
		if (k >= 0) {
			if (add_move(&v, &nv, &cap, noff + i, block, boff[k]) < 0) {
				free(t.slot);
				free(v);
				return -ENOMEM;
			}
			covered += block;
			prev = k;
			i += block;
			fresh = 1;
			continue;
		}
		prev = -1;
		if (i + block >= n)
			break;
		/* Roll the window one byte on. */
		uint8_t out = data[i], in = data[i + block];
		a = a - out + in;
		b = b - block * (uint32_t)out + a;
		i++;
	}
	free(t.slot);
	*moves = v;
	*nmoves = nv;
	return covered;
}
