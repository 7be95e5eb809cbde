/* common/rsig: block signatures and the moves found with them. */
#include <CUnit/CUnit.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "rsig.h"

static uint64_t seed = 88172645463325252ull;

static uint8_t rnd(void)
{
	seed ^= seed << 13;
	seed ^= seed >> 7;
	seed ^= seed << 17;
	return (uint8_t)seed;
}

static void fill(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = rnd();
}

/* The weak sum rolled one byte on equals the sum computed afresh. */
static void test_weak_rolls(void)
{
	uint8_t d[4096];
	fill(d, sizeof(d));
	const uint32_t block = 512;
	uint32_t w = rsig_weak(d, block);
	uint32_t a = w & 0xffff, b = w >> 16;
	for (size_t i = 0; i + block < sizeof(d); i++) {
		a = a - d[i] + d[i + block];
		b = b - block * (uint32_t)d[i] + a;
		CU_ASSERT_EQUAL_FATAL(((a & 0xffff) | (b << 16)), rsig_weak(d + i + 1, block));
	}
}

/* Rebuild new[0..n) from old (at ooff = 0) with the moves, the rest from
 * new itself (the literal bytes); check the moves are sorted, disjoint,
 * inside, and say the truth. Returns the bytes the moves cover. */
static size_t check_moves(const uint8_t *old, size_t nold, const uint8_t *new, size_t n,
			  uint64_t noff, const struct rsig_move *m, size_t nm)
{
	uint64_t end = noff;
	size_t covered = 0;
	for (size_t k = 0; k < nm; k++) {
		CU_ASSERT_FATAL(m[k].off >= end);
		CU_ASSERT_FATAL(m[k].off + m[k].len <= noff + n);
		CU_ASSERT_FATAL(m[k].src + m[k].len <= nold);
		CU_ASSERT_FATAL(memcmp(new + (m[k].off - noff), old + m[k].src, m[k].len) == 0);
		end = m[k].off + m[k].len;
		covered += m[k].len;
	}
	return covered;
}

/* Old offsets of consecutive blocks from base (the caller frees). */
static uint64_t *offsets(size_t nblocks, uint32_t block, uint64_t base)
{
	uint64_t *o = malloc((nblocks + 1) * sizeof(*o));
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	for (size_t k = 0; k < nblocks; k++)
		o[k] = base + k * block;
	return o;
}

static long match(const uint8_t *old, size_t nold, const uint8_t *new, size_t n, uint32_t block,
		  struct rsig_move **m, size_t *nm)
{
	uint8_t *sigs = malloc(nold / block * RSIG_ENTRY + 1);
	uint64_t *o = offsets(nold / block, block, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(sigs);
	rsig_make(old, nold, block, sigs);
	long r = rsig_match(sigs, nold / block, block, o, new, n, 1000, m, nm);
	free(sigs);
	free(o);
	return r;
}

/* 100 bytes inserted in the middle: every block but the one broken is
 * found, in two runs. */
static void test_insert(void)
{
	enum { N = 32768 };
	static uint8_t old[N], new[N + 100];
	struct rsig_move *m;
	size_t nm;
	fill(old, N);
	memcpy(new, old, 10000);
	fill(new + 10000, 100);
	memcpy(new + 10100, old + 10000, N - 10000);
	long r = match(old, N, new, sizeof(new), 512, &m, &nm);
	CU_ASSERT_EQUAL((size_t)r, check_moves(old, N, new, sizeof(new), 1000, m, nm));
	CU_ASSERT(r >= N - 2 * 512);
	CU_ASSERT_EQUAL(nm, 2);
	free(m);
}

/* Random edits: insertions, deletions and overwrites; the moves are
 * always true, and cover most of the unchanged bytes. */
static void test_random_edits(void)
{
	enum { N = 65536 };
	static uint8_t old[N], new[2 * N];
	for (int round = 0; round < 200; round++) {
		uint32_t block = 64u << (rnd() % 5);
		size_t n = 0, pos = 0;
		fill(old, N);
		int edits = 1 + rnd() % 4;
		size_t cut[8];
		for (int e = 0; e < edits; e++)
			cut[e] = (size_t)(((unsigned)rnd() << 8 | rnd()) % N);
		for (int e = 0; e < edits; e++)
			for (int f = e + 1; f < edits; f++)
				if (cut[f] < cut[e]) {
					size_t t = cut[e];
					cut[e] = cut[f];
					cut[f] = t;
				}
		for (int e = 0; e < edits; e++) {
			memcpy(new + n, old + pos, cut[e] - pos);
			n += cut[e] - pos;
			pos = cut[e];
			switch (rnd() % 3) {
			case 0: { /* insert */
				size_t k = 1 + rnd() % 200;
				fill(new + n, k);
				n += k;
				break;
			}
			case 1: /* delete */
				pos += rnd() % 200;
				if (pos > N)
					pos = N;
				break;
			default: /* overwrite */
				fill(new + n, 20);
				n += 20;
				pos = pos + 20 > N ? N : pos + 20;
			}
		}
		memcpy(new + n, old + pos, N - pos);
		n += N - pos;
		struct rsig_move *m;
		size_t nm;
		long r = match(old, N, new, n, block, &m, &nm);
		CU_ASSERT_FATAL(r >= 0);
		CU_ASSERT_EQUAL_FATAL((size_t)r, check_moves(old, N, new, n, 1000, m, nm));
		/* each edit breaks at most 2 blocks, plus the ends */
		CU_ASSERT((size_t)r + (size_t)(2 * edits + 2) * block + 1000 >= N);
		free(m);
	}
}

/* Nothing to match, and degenerate sizes. */
static void test_edges(void)
{
	uint8_t a[4096], b[4096], sig[RSIG_ENTRY * 8];
	struct rsig_move *m = (struct rsig_move *)1;
	size_t nm = 5;
	uint64_t *o0 = offsets(8, 512, 0), *o7 = offsets(8, 512, 7000);
	fill(a, sizeof(a));
	fill(b, sizeof(b));
	rsig_make(a, sizeof(a), 512, sig);
	CU_ASSERT_EQUAL(rsig_match(sig, 8, 512, o0, b, sizeof(b), 0, &m, &nm), 0);
	CU_ASSERT_PTR_NULL(m);
	CU_ASSERT_EQUAL(nm, 0);
	CU_ASSERT_EQUAL(rsig_match(sig, 0, 512, o0, a, sizeof(a), 0, &m, &nm), 0);
	CU_ASSERT_EQUAL(rsig_match(sig, 8, 512, o0, a, 100, 0, &m, &nm), 0);
	/* identical: one run over all of it, at the old offsets given */
	CU_ASSERT_EQUAL(rsig_match(sig, 8, 512, o7, a, sizeof(a), 50, &m, &nm), 4096);
	CU_ASSERT_EQUAL_FATAL(nm, 1);
	CU_ASSERT_EQUAL(m[0].off, 50);
	CU_ASSERT_EQUAL(m[0].len, 4096);
	CU_ASSERT_EQUAL(m[0].src, 7000);
	free(m);
	/* blocks from two places: two runs, each where its blocks were */
	o7[4] = 90000;
	for (int k = 5; k < 8; k++)
		o7[k] = o7[k - 1] + 512;
	CU_ASSERT_EQUAL(rsig_match(sig, 8, 512, o7, a, sizeof(a), 0, &m, &nm), 4096);
	CU_ASSERT_EQUAL_FATAL(nm, 2);
	CU_ASSERT(m[0].off == 0 && m[0].len == 2048 && m[0].src == 7000);
	CU_ASSERT(m[1].off == 2048 && m[1].len == 2048 && m[1].src == 90000);
	free(m);
	/* a repeated block: runs stay contiguous where they can */
	memset(a, 'x', sizeof(a));
	rsig_make(a, sizeof(a), 512, sig);
	CU_ASSERT_EQUAL(rsig_match(sig, 8, 512, o0, a, sizeof(a), 0, &m, &nm), 4096);
	CU_ASSERT_EQUAL(nm, 1);
	free(m);
	free(o0);
	free(o7);
}

int suite_rsig(void)
{
	CU_pSuite s = CU_add_suite("rsig", NULL, NULL);
	if (!s)
		return CU_get_error();
	if (!CU_add_test(s, "weak sum rolls", test_weak_rolls) ||
	    !CU_add_test(s, "insertion", test_insert) ||
	    !CU_add_test(s, "random edits", test_random_edits) ||
	    !CU_add_test(s, "edges", test_edges))
		return CU_get_error();
	return 0;
}
