/* Unit tests for common/chunker: feeding independence, size bounds, boundary
 * stability under edits, average size, and pinned boundaries. */
#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chunker.h"
#include "hash.h"

#define MIB (1024 * 1024)

/* Deterministic test data (xorshift64*), the same on every machine. */
static void fill_random(uint8_t *p, size_t len, uint64_t seed)
{
	uint64_t x = seed | 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		p[i] = (uint8_t)((x * 0x2545f4914f6cdd1dull) >> 56);
	}
}

struct cut_list {
	size_t *len;
	size_t n, alloc;
};

static void cuts_push(struct cut_list *l, size_t len)
{
	if (l->n == l->alloc) {
		l->alloc = l->alloc ? l->alloc * 2 : 64;
		l->len = realloc(l->len, l->alloc * sizeof(*l->len));
		CU_ASSERT_PTR_NOT_NULL_FATAL(l->len);
	}
	l->len[l->n++] = len;
}

/*
 * Chunk data[0..total) as a real caller would: bytes arrive `step` at a time
 * into a window buffer of its own; the caller keeps the unconsumed bytes
 * (moved to the front) and appends more whenever chunker_next() returns 0.
 */
static struct cut_list chunk_fed(const struct chunker *c, const uint8_t *data, size_t total,
				 size_t step)
{
	struct cut_list l = { 0 };
	uint8_t *win = malloc(c->max + step);
	size_t have = 0, fed = 0;
	CU_ASSERT_PTR_NOT_NULL_FATAL(win);
	for (;;) {
		int eof = fed == total;
		size_t n = chunker_next(c, win, have, eof);
		CU_ASSERT(n <= have);
		if (n > 0) {
			cuts_push(&l, n);
			memmove(win, win + n, have - n);
			have -= n;
			continue;
		}
		if (eof) {
			CU_ASSERT_EQUAL(have, 0); /* eof with bytes left always cuts */
			break;
		}
		/* 0 is only allowed while the window is shorter than max */
		CU_ASSERT_FATAL(have < c->max);
		size_t add = total - fed < step ? total - fed : step;
		memcpy(win + have, data + fed, add);
		have += add;
		fed += add;
	}
	free(win);
	return l;
}

static struct cut_list chunk_whole(const struct chunker *c, const uint8_t *data, size_t total)
{
	struct cut_list l = { 0 };
	size_t off = 0;
	while (off < total) {
		size_t n = chunker_next(c, data + off, total - off, 1);
		CU_ASSERT_FATAL(n > 0 && n <= total - off);
		cuts_push(&l, n);
		off += n;
	}
	return l;
}

static void check_bounds(const struct chunker *c, const struct cut_list *l, size_t total)
{
	size_t sum = 0;
	for (size_t i = 0; i < l->n; i++) {
		sum += l->len[i];
		CU_ASSERT(l->len[i] > 0);
		CU_ASSERT(l->len[i] <= c->max);
		if (i + 1 < l->n)
			CU_ASSERT(l->len[i] >= c->min);
	}
	CU_ASSERT_EQUAL(sum, total);
}

static int same_cuts(const struct cut_list *a, const struct cut_list *b)
{
	return a->n == b->n && memcmp(a->len, b->len, a->n * sizeof(*a->len)) == 0;
}

static void test_api_edges(void)
{
	struct chunker c;
	static uint8_t d[CHUNK_MAX + 10];
	chunker_init(&c);
	CU_ASSERT_EQUAL(c.min, CHUNK_MIN);
	CU_ASSERT_EQUAL(c.avg, CHUNK_AVG);
	CU_ASSERT_EQUAL(c.max, CHUNK_MAX);
	fill_random(d, sizeof(d), 1);

	CU_ASSERT_EQUAL(chunker_next(&c, d, 0, 0), 0);
	CU_ASSERT_EQUAL(chunker_next(&c, d, 0, 1), 0);
	CU_ASSERT_EQUAL(chunker_next(&c, d, 1, 1), 1);
	CU_ASSERT_EQUAL(chunker_next(&c, d, 1, 0), 0);
	CU_ASSERT_EQUAL(chunker_next(&c, d, CHUNK_MIN, 0), 0);
	CU_ASSERT_EQUAL(chunker_next(&c, d, CHUNK_MIN, 1), CHUNK_MIN);
	/* at max or beyond, a cut is always found */
	size_t n = chunker_next(&c, d, CHUNK_MAX, 0);
	CU_ASSERT(n > CHUNK_MIN && n <= CHUNK_MAX);
	CU_ASSERT_EQUAL(chunker_next(&c, d, sizeof(d), 0), n);
	CU_ASSERT_EQUAL(chunker_next(&c, d, sizeof(d), 1), n);

	/* all zeros: no content to cut on, so every chunk is max */
	static uint8_t z[3 * CHUNK_MAX + 5];
	struct cut_list l = chunk_whole(&c, z, sizeof(z));
	check_bounds(&c, &l, sizeof(z));
	CU_ASSERT_EQUAL(l.n, 4);
	CU_ASSERT_EQUAL(l.len[0], CHUNK_MAX);
	CU_ASSERT_EQUAL(l.len[3], 5);
	free(l.len);
}

static void test_init_sizes(void)
{
	struct chunker c;
	CU_ASSERT_EQUAL(chunker_init_sizes(&c, 64, 256, 1024), 0);
	CU_ASSERT_EQUAL(c.min, 64);
	CU_ASSERT_EQUAL(c.avg, 256);
	CU_ASSERT_EQUAL(c.max, 1024);
	CU_ASSERT(c.mask_s != 0 && c.mask_l != 0);
	CU_ASSERT((c.mask_s & c.mask_l) == c.mask_l); /* stricter: more bits */
	CU_ASSERT_EQUAL(chunker_init_sizes(&c, 0, 2, 3), 0);
	CU_ASSERT_EQUAL(chunker_init_sizes(&c, 1, 512 * 1024, CHUNK_PROTO_MAX), 0);
	CU_ASSERT_EQUAL(chunker_init_sizes(&c, 64, 300, 1024), -EINVAL);  /* not 2^n */
	CU_ASSERT_EQUAL(chunker_init_sizes(&c, 64, 0, 1024), -EINVAL);
	CU_ASSERT_EQUAL(chunker_init_sizes(&c, 256, 256, 1024), -EINVAL); /* min == avg */
	CU_ASSERT_EQUAL(chunker_init_sizes(&c, 64, 1024, 1024), -EINVAL); /* avg == max */
	CU_ASSERT_EQUAL(chunker_init_sizes(&c, 64, 256, 128), -EINVAL);
	CU_ASSERT_EQUAL(chunker_init_sizes(&c, 64, 256, CHUNK_PROTO_MAX + 1), -EINVAL);
}

/* Whole buffer versus windows of many sizes, default sizes. */
static void test_feeding(void)
{
	struct chunker c;
	const size_t total = 4 * MIB + 12345;
	uint8_t *d = malloc(total);
	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	fill_random(d, total, 2);
	chunker_init(&c);

	struct cut_list ref = chunk_whole(&c, d, total);
	check_bounds(&c, &ref, total);
	CU_ASSERT(ref.n > 20);
	static const size_t steps[] = { 997, 4096, 16384, 65537, CHUNK_MAX, 3 * MIB };
	for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
		struct cut_list l = chunk_fed(&c, d, total, steps[k]);
		CU_ASSERT(same_cuts(&ref, &l));
		free(l.len);
	}
	free(ref.len);
	free(d);
}

/* Byte-at-a-time feeding, with small sizes so that it stays fast. */
static void test_feeding_bytewise(void)
{
	struct chunker c;
	const size_t total = 200 * 1024 + 7;
	uint8_t *d = malloc(total);
	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	fill_random(d, total, 3);
	CU_ASSERT_EQUAL_FATAL(chunker_init_sizes(&c, 64, 512, 4096), 0);

	struct cut_list ref = chunk_whole(&c, d, total);
	check_bounds(&c, &ref, total);
	CU_ASSERT(ref.n > 100);
	for (size_t step = 1; step <= 5; step++) {
		struct cut_list l = chunk_fed(&c, d, total, step);
		CU_ASSERT(same_cuts(&ref, &l));
		free(l.len);
	}
	free(ref.len);
	free(d);
}

struct id_list {
	struct hash_id *ids;
	size_t n;
};

static struct id_list chunk_ids(const struct chunker *c, const uint8_t *d, size_t total)
{
	struct cut_list l = chunk_whole(c, d, total);
	struct id_list ids = { calloc(l.n, sizeof(struct hash_id)), l.n };
	CU_ASSERT_PTR_NOT_NULL_FATAL(ids.ids);
	size_t off = 0;
	for (size_t i = 0; i < l.n; i++) {
		hash_buf(d + off, l.len[i], &ids.ids[i]);
		off += l.len[i];
	}
	free(l.len);
	return ids;
}

/* Fraction (in percent) of b's chunk ids that also occur in a. */
static unsigned shared_pct(const struct id_list *a, const struct id_list *b)
{
	size_t shared = 0;
	for (size_t i = 0; i < b->n; i++)
		for (size_t k = 0; k < a->n; k++)
			if (memcmp(&b->ids[i], &a->ids[k], sizeof(struct hash_id)) == 0) {
				shared++;
				break;
			}
	return (unsigned)(shared * 100 / b->n);
}

static void test_edit_stability(void)
{
	struct chunker c;
	const size_t total = 4 * MIB;
	uint8_t *d = malloc(total);
	uint8_t *e = malloc(total + 100);
	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	fill_random(d, total, 4);
	chunker_init(&c);
	struct id_list orig = chunk_ids(&c, d, total);
	CU_ASSERT_FATAL(orig.n > 30);

	static const struct {
		size_t at;
		int delta; /* > 0 insert, < 0 delete */
	} edits[] = { { 0, 1 }, { 100, 1 }, { 5000, 37 }, { 20000, -1 },
		      { 70000, -50 }, { 1, -1 }, { 2 * MIB, 13 } };
	for (size_t k = 0; k < sizeof(edits) / sizeof(edits[0]); k++) {
		size_t at = edits[k].at, elen;
		memcpy(e, d, at);
		if (edits[k].delta > 0) {
			size_t ins = (size_t)edits[k].delta;
			memset(e + at, 0xa5, ins);
			memcpy(e + at + ins, d + at, total - at);
			elen = total + ins;
		} else {
			size_t del = (size_t)-edits[k].delta;
			memcpy(e + at, d + at + del, total - at - del);
			elen = total - del;
		}
		struct id_list ed = chunk_ids(&c, e, elen);
		unsigned pct = shared_pct(&orig, &ed);
		CU_ASSERT(pct >= 90);
		if (pct < 90)
			fprintf(stderr, "\nedit %zu: only %u%% of chunks shared\n", k, pct);
		/* an edit touches at most a couple of chunks */
		CU_ASSERT(ed.n + 3 >= orig.n && ed.n <= orig.n + 3);
		free(ed.ids);
	}
	free(orig.ids);
	free(e);
	free(d);
}

static void test_average(void)
{
	struct chunker c;
	const size_t total = 32 * MIB;
	uint8_t *d = malloc(total);
	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	fill_random(d, total, 5);
	chunker_init(&c);
	struct cut_list l = chunk_whole(&c, d, total);
	check_bounds(&c, &l, total);
	size_t avg = total / l.n, at_max = 0;
	for (size_t i = 0; i < l.n; i++)
		at_max += l.len[i] == CHUNK_MAX;
	/* normalized chunking keeps the mean near CHUNK_AVG and max cuts rare */
	CU_ASSERT(avg >= CHUNK_AVG * 3 / 4 && avg <= CHUNK_AVG * 3 / 2);
	CU_ASSERT(at_max * 100 < l.n);
	if (!(avg >= CHUNK_AVG * 3 / 4 && avg <= CHUNK_AVG * 3 / 2))
		fprintf(stderr, "\naverage chunk %zu bytes over %zu chunks\n", avg, l.n);
	free(l.len);

	/* the same with custom sizes */
	CU_ASSERT_EQUAL_FATAL(chunker_init_sizes(&c, 1024, 8192, 65536), 0);
	l = chunk_whole(&c, d, 8 * MIB);
	check_bounds(&c, &l, 8 * MIB);
	avg = 8 * MIB / l.n;
	CU_ASSERT(avg >= 8192 * 3 / 4 && avg <= 8192 * 3 / 2);
	free(l.len);
	free(d);
}

/*
 * Chunk boundaries are part of the protocol in practice: clients and servers
 * of different builds deduplicate against each other only if they cut the
 * same way. These values pin the Gear table and the cut rule.
 */
static void test_pinned(void)
{
	static const size_t want[] = { 83982, 68965, 79385, 47415, 25712, 72739,
				       96989, 45168, 73537, 69859, 91325, 102281 };
	struct chunker c;
	const size_t total = 2 * MIB;
	uint8_t *d = malloc(total);
	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	fill_random(d, total, 0x6d6972726f72ull);
	/* pinned for explicit sizes, so that tuning the defaults does not
	 * hide a change of the table or the cut rule */
	CU_ASSERT_EQUAL_FATAL(chunker_init_sizes(&c, 16 * 1024, 64 * 1024, 256 * 1024), 0);
	struct cut_list l = chunk_whole(&c, d, total);
	size_t n = sizeof(want) / sizeof(want[0]);
	CU_ASSERT_FATAL(l.n >= n);
	for (size_t i = 0; i < n; i++)
		CU_ASSERT_EQUAL(l.len[i], want[i]);
	free(l.len);
	free(d);
}

int suite_chunker(void)
{
	CU_pSuite s = CU_add_suite("chunker", NULL, NULL);
	if (!s)
		return CU_get_error();
	if (!CU_add_test(s, "api edges", test_api_edges) ||
	    !CU_add_test(s, "init sizes", test_init_sizes) ||
	    !CU_add_test(s, "feeding", test_feeding) ||
	    !CU_add_test(s, "feeding bytewise", test_feeding_bytewise) ||
	    !CU_add_test(s, "edit stability", test_edit_stability) ||
	    !CU_add_test(s, "average size", test_average) ||
	    !CU_add_test(s, "pinned boundaries", test_pinned))
		return CU_get_error();
	return 0;
}
