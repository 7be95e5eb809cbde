/* Unit tests for common/compress: round trips, "not worth it", bounded and
 * strict decompression, concurrent use. */
#include <CUnit/CUnit.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "buf.h"
#include "chunker.h"
#include "compress.h"

static void fill_text(uint8_t *p, size_t len, unsigned salt)
{
	static const char words[] = "the quick brown fox jumps over the lazy dog; ";
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(words[(i + salt) % (sizeof(words) - 1)] ^ ((i / 4096) & 1));
}

static void fill_random(uint8_t *p, size_t len, uint64_t seed)
{
	uint64_t x = seed | 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)(x >> 24);
	}
}

static void test_roundtrip(void)
{
	static const size_t sizes[] = { 100, 4096, 65536, CHUNK_MAX, CHUNK_PROTO_MAX };
	struct buf z;
	buf_init(&z, 0);
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t n = sizes[k];
		uint8_t *in = malloc(n), *out = malloc(n);
		CU_ASSERT_PTR_NOT_NULL_FATAL(in);
		CU_ASSERT_PTR_NOT_NULL_FATAL(out);
		fill_text(in, n, (unsigned)k);
		CU_ASSERT_EQUAL_FATAL(compress_chunk(in, n, &z), 1);
		CU_ASSERT(z.len > 0 && z.len < n);
		CU_ASSERT_EQUAL(ZSTD_getFrameContentSize(z.data, z.len), n);
		memset(out, 0, n);
		CU_ASSERT_EQUAL(decompress_chunk((const uint8_t *)z.data, z.len, out, n), 0);
		CU_ASSERT(memcmp(in, out, n) == 0);
		free(in);
		free(out);
	}
	/* out's previous contents are dropped */
	uint8_t text[2000];
	fill_text(text, sizeof(text), 3);
	CU_ASSERT_EQUAL(buf_append(&z, "junk", 4), 0);
	CU_ASSERT_EQUAL(compress_chunk(text, sizeof(text), &z), 1);
	CU_ASSERT_EQUAL(ZSTD_getFrameContentSize(z.data, z.len), sizeof(text));
	buf_release(&z);
}

static void test_not_worth_it(void)
{
	struct buf z;
	static uint8_t rnd[65536];
	buf_init(&z, 0);
	fill_random(rnd, sizeof(rnd), 9);
	CU_ASSERT_EQUAL(compress_chunk(rnd, sizeof(rnd), &z), 0);
	CU_ASSERT_EQUAL(compress_chunk(rnd, 1, &z), 0);
	CU_ASSERT_EQUAL(compress_chunk(rnd, 0, &z), 0);
	CU_ASSERT_EQUAL(compress_chunk((const uint8_t *)"aaaaaaaa", 8, &z), 0); /* frame overhead */

	/* Bytes of 180 values (7.5 bits of entropy each) shrink by about
	 * 7 %: not worth it. Of 64 values (6 bits): a quarter, worth it. */
	for (size_t i = 0; i < sizeof(rnd); i++)
		rnd[i] %= 180;
	CU_ASSERT_EQUAL(compress_chunk(rnd, sizeof(rnd), &z), 0);
	for (size_t i = 0; i < sizeof(rnd); i++)
		rnd[i] %= 64;
	CU_ASSERT_EQUAL(compress_chunk(rnd, sizeof(rnd), &z), 1);
	CU_ASSERT(z.len <= sizeof(rnd) - sizeof(rnd) / COMPRESS_MIN_SAVING);
	buf_release(&z);

	/* a cap too small for the compress bound is reported, not overrun */
	buf_init(&z, 100);
	CU_ASSERT_EQUAL(compress_chunk(rnd, 1000, &z), -EMSGSIZE);
	CU_ASSERT_EQUAL(z.len, 0);
	buf_release(&z);
}

/* Bytes of `values` distinct values at random (log2(values) bits each). */
static void fill_values(uint8_t *p, size_t len, unsigned values, uint64_t seed)
{
	fill_random(p, len, seed);
	for (size_t i = 0; i < len; i++)
		p[i] %= values;
}

/* z holds a frame that decodes to exactly in[0..len). */
static void check_frame(const struct buf *z, const uint8_t *in, size_t len)
{
	uint8_t *out = malloc(len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	CU_ASSERT(z->len < len);
	CU_ASSERT_EQUAL(decompress_chunk((const uint8_t *)z->data, z->len, out, len), 0);
	CU_ASSERT(memcmp(out, in, len) == 0);
	free(out);
}

static void test_probe(void)
{
	static uint8_t in[16384];
	struct buf z;
	buf_init(&z, 0);
	/* random: flat */
	fill_random(in, sizeof(in), 5);
	CU_ASSERT_EQUAL(compress_probe(in, sizeof(in), &z), COMPRESS_FLAT);
	/* 100 values (6.6 bits): about 16 % smaller, weak, yet worth sending
	 * compressed */
	fill_values(in, sizeof(in), 100, 5);
	CU_ASSERT_EQUAL_FATAL(compress_probe(in, sizeof(in), &z), COMPRESS_WEAK);
	CU_ASSERT(z.len <= sizeof(in) - sizeof(in) / COMPRESS_MIN_SAVING);
	CU_ASSERT(z.len > sizeof(in) - sizeof(in) / COMPRESS_STRONG_SAVING);
	check_frame(&z, in, sizeof(in));
	/* 32 values (5 bits, as base64's 6 bits in 8 and more): strong */
	fill_values(in, sizeof(in), 32, 5);
	CU_ASSERT_EQUAL_FATAL(compress_probe(in, sizeof(in), &z), COMPRESS_STRONG);
	check_frame(&z, in, sizeof(in));
	fill_text(in, sizeof(in), 1);
	CU_ASSERT_EQUAL_FATAL(compress_probe(in, sizeof(in), &z), COMPRESS_STRONG);
	check_frame(&z, in, sizeof(in));
	buf_release(&z);
}

/* A run of flat chunks is probed every COMPRESS_PROBE-th chunk, the
 * others taken as flat; a probe that differs ends the run. */
static void test_prober_flat_run(void)
{
	static uint8_t rnd[8192], text[8192];
	struct compress_prober p;
	const struct buf *z;
	fill_random(rnd, sizeof(rnd), 7);
	fill_text(text, sizeof(text), 2);
	compress_prober_init(&p);
	for (int i = 0; i < COMPRESS_RUN; i++) {
		CU_ASSERT_EQUAL(compress_prober_next(&p, rnd, sizeof(rnd), &z), COMPRESS_FLAT);
		CU_ASSERT_PTR_NULL(z);
	}
	/* the run is long enough: this one is probed, the next
	 * COMPRESS_PROBE - 1 are not, even if they are text */
	CU_ASSERT_EQUAL(compress_prober_next(&p, rnd, sizeof(rnd), &z), COMPRESS_FLAT);
	for (int i = 1; i < COMPRESS_PROBE; i++) {
		CU_ASSERT_EQUAL(compress_prober_next(&p, text, sizeof(text), &z), COMPRESS_FLAT);
		CU_ASSERT_PTR_NULL(z);
	}
	/* the next probe finds text: strong, and the run starts again */
	CU_ASSERT_EQUAL_FATAL(compress_prober_next(&p, text, sizeof(text), &z), COMPRESS_STRONG);
	CU_ASSERT_PTR_NOT_NULL_FATAL(z);
	check_frame(z, text, sizeof(text));
	CU_ASSERT_EQUAL(compress_prober_next(&p, rnd, sizeof(rnd), &z), COMPRESS_FLAT);
	CU_ASSERT_EQUAL(compress_prober_next(&p, text, sizeof(text), &z), COMPRESS_STRONG);
	compress_prober_release(&p);
}

/* Weak chunks are sent as their probe's output: every one is probed, in
 * a run however long, and each frame decodes to its own chunk. */
static void test_prober_weak_run(void)
{
	enum { N = 3 * COMPRESS_PROBE };
	static uint8_t in[N][4096];
	struct compress_prober p;
	const struct buf *z;
	compress_prober_init(&p);
	for (int i = 0; i < N; i++) {
		fill_values(in[i], sizeof(in[i]), 100, (uint64_t)i + 1);
		CU_ASSERT_EQUAL_FATAL(compress_prober_next(&p, in[i], sizeof(in[i]), &z),
				      COMPRESS_WEAK);
		CU_ASSERT_PTR_NOT_NULL_FATAL(z);
		check_frame(z, in[i], sizeof(in[i]));
	}
	compress_prober_release(&p);
}

/* Decompress into a buffer of exactly raw_len bytes followed by guard bytes
 * that must stay untouched. */
static int decompress_guarded(const uint8_t *in, size_t len, size_t raw_len)
{
	uint8_t *out = malloc(raw_len + 64);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	memset(out + raw_len, 0xee, 64);
	int r = decompress_chunk(in, len, out, raw_len);
	for (size_t i = 0; i < 64; i++)
		CU_ASSERT_EQUAL(out[raw_len + i], 0xee);
	free(out);
	return r;
}

static void test_bad_input(void)
{
	const size_t n = 50000;
	uint8_t *in = malloc(n);
	struct buf z, two;
	CU_ASSERT_PTR_NOT_NULL_FATAL(in);
	fill_text(in, n, 1);
	buf_init(&z, 0);
	buf_init(&two, 0);
	CU_ASSERT_EQUAL_FATAL(compress_chunk(in, n, &z), 1);
	const uint8_t *zd = (const uint8_t *)z.data;

	CU_ASSERT_EQUAL(decompress_guarded(zd, z.len, n), 0);
	/* wrong raw length either way */
	CU_ASSERT_EQUAL(decompress_guarded(zd, z.len, n - 1), -EBADMSG);
	CU_ASSERT_EQUAL(decompress_guarded(zd, z.len, n + 1), -EBADMSG);
	CU_ASSERT_EQUAL(decompress_guarded(zd, z.len, 1), -EBADMSG);
	/* truncated, empty, garbage */
	CU_ASSERT_EQUAL(decompress_guarded(zd, z.len - 1, n), -EBADMSG);
	CU_ASSERT_EQUAL(decompress_guarded(zd, z.len / 2, n), -EBADMSG);
	CU_ASSERT_EQUAL(decompress_guarded(zd, 4, n), -EBADMSG);
	CU_ASSERT_EQUAL(decompress_guarded(zd, 0, n), -EBADMSG);
	CU_ASSERT_EQUAL(decompress_guarded(in, 1000, n), -EBADMSG);
	/* trailing bytes, or a second frame */
	CU_ASSERT_EQUAL_FATAL(buf_append(&two, z.data, z.len), 0);
	CU_ASSERT_EQUAL_FATAL(buf_append(&two, "x", 1), 0);
	CU_ASSERT_EQUAL(decompress_guarded((const uint8_t *)two.data, two.len, n), -EBADMSG);
	buf_reset(&two);
	CU_ASSERT_EQUAL_FATAL(buf_append(&two, z.data, z.len), 0);
	CU_ASSERT_EQUAL_FATAL(buf_append(&two, z.data, z.len), 0);
	CU_ASSERT_EQUAL(decompress_guarded((const uint8_t *)two.data, two.len, n), -EBADMSG);
	CU_ASSERT_EQUAL(decompress_guarded((const uint8_t *)two.data, two.len, 2 * n), -EBADMSG);
	/* ... even one that adds no bytes: an empty frame or a skippable one */
	uint8_t empty[64];
	size_t el = ZSTD_compress(empty, sizeof(empty), "", 0, 3);
	CU_ASSERT_FATAL(!ZSTD_isError(el));
	buf_reset(&two);
	CU_ASSERT_EQUAL_FATAL(buf_append(&two, z.data, z.len), 0);
	CU_ASSERT_EQUAL_FATAL(buf_append(&two, empty, el), 0);
	CU_ASSERT_EQUAL(decompress_guarded((const uint8_t *)two.data, two.len, n), -EBADMSG);
	static const uint8_t skippable[] = { 0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 'a', 'b', 'c' };
	buf_reset(&two);
	CU_ASSERT_EQUAL_FATAL(buf_append(&two, z.data, z.len), 0);
	CU_ASSERT_EQUAL_FATAL(buf_append(&two, skippable, sizeof(skippable)), 0);
	CU_ASSERT_EQUAL(decompress_guarded((const uint8_t *)two.data, two.len, n), -EBADMSG);

	/* a frame that does not declare its size */
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	CU_ASSERT_PTR_NOT_NULL_FATAL(cc);
	CU_ASSERT(!ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0)));
	uint8_t *nosize = malloc(ZSTD_compressBound(n));
	CU_ASSERT_PTR_NOT_NULL_FATAL(nosize);
	size_t nl = ZSTD_compress2(cc, nosize, ZSTD_compressBound(n), in, n);
	CU_ASSERT_FATAL(!ZSTD_isError(nl));
	CU_ASSERT_EQUAL(ZSTD_getFrameContentSize(nosize, nl), ZSTD_CONTENTSIZE_UNKNOWN);
	CU_ASSERT_EQUAL(decompress_guarded(nosize, nl, n), -EBADMSG);
	free(nosize);
	ZSTD_freeCCtx(cc);

	/* a frame that declares more than the header's raw_len (a "bomb") */
	const size_t big = 8 * 1024 * 1024;
	uint8_t *zeros = calloc(1, big);
	CU_ASSERT_PTR_NOT_NULL_FATAL(zeros);
	CU_ASSERT_EQUAL_FATAL(compress_chunk(zeros, big, &z), 1);
	CU_ASSERT(z.len < 4096);
	CU_ASSERT_EQUAL(decompress_guarded((const uint8_t *)z.data, z.len, CHUNK_PROTO_MAX),
			-EBADMSG);
	free(zeros);

	/* a corrupted size field */
	CU_ASSERT_EQUAL_FATAL(compress_chunk(in, n, &z), 1);
	for (size_t i = 4; i < 12 && i < z.len; i++) {
		z.data[i] ^= 0x40;
		int r = decompress_guarded((const uint8_t *)z.data, z.len, n);
		z.data[i] ^= 0x40;
		/* bytes the size does not depend on may still decode: then the
		 * content must be what was compressed (checked by the caller's hash) */
		CU_ASSERT(r == 0 || r == -EBADMSG);
	}
	buf_release(&two);
	buf_release(&z);
	free(in);
}

struct worker {
	unsigned seed;
	int failures;
};

/* Bodies (Content-Encoding: zstd): one frame, size declared or not (a
 * streaming compressor does not declare it), decoded within the cap; two
 * frames, a cut frame, garbage and a bomb past the cap are refused. */
static void test_body(void)
{
	enum { LEN = 300000 };
	uint8_t *text = malloc(LEN);
	struct buf z, out;
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	fill_text(text, LEN, 7);
	buf_init(&z, 0);
	buf_init(&out, LEN + 1);
	CU_ASSERT_EQUAL_FATAL(compress_chunk(text, LEN, &z), 1);
	CU_ASSERT_EQUAL(decompress_body((const uint8_t *)z.data, z.len, LEN, &out), 0);
	CU_ASSERT(out.len == LEN && memcmp(out.data, text, LEN) == 0);
	CU_ASSERT_EQUAL(decompress_body((const uint8_t *)z.data, z.len, LEN - 1, &out), -EMSGSIZE);
	CU_ASSERT_EQUAL(decompress_body((const uint8_t *)z.data, z.len - 3, LEN, &out), -EBADMSG);
	size_t one = z.len;
	CU_ASSERT_EQUAL_FATAL(buf_append(&z, z.data, one), 0);
	CU_ASSERT_EQUAL(decompress_body((const uint8_t *)z.data, z.len, LEN, &out), -EBADMSG);
	CU_ASSERT_EQUAL(decompress_body(text, 1000, LEN, &out), -EBADMSG);

	/* No declared size: a streamed frame. */
	ZSTD_CCtx *c = ZSTD_createCCtx();
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	uint8_t *dst = malloc(ZSTD_compressBound(LEN));
	CU_ASSERT_PTR_NOT_NULL_FATAL(dst);
	ZSTD_outBuffer o = { dst, ZSTD_compressBound(LEN), 0 };
	ZSTD_inBuffer i = { text, LEN, 0 }, none = { NULL, 0, 0 };
	CU_ASSERT_FALSE(ZSTD_isError(ZSTD_compressStream2(c, &o, &i, ZSTD_e_continue)));
	CU_ASSERT_EQUAL(ZSTD_compressStream2(c, &o, &none, ZSTD_e_end), 0);
	CU_ASSERT_EQUAL(ZSTD_getFrameContentSize(dst, o.pos), ZSTD_CONTENTSIZE_UNKNOWN);
	CU_ASSERT_EQUAL(decompress_body(dst, o.pos, LEN, &out), 0);
	CU_ASSERT(out.len == LEN && memcmp(out.data, text, LEN) == 0);
	CU_ASSERT_EQUAL(decompress_body(dst, o.pos, LEN / 2, &out), -EMSGSIZE);
	ZSTD_freeCCtx(c);
	free(dst);
	free(text);
	buf_release(&z);
	buf_release(&out);
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	const size_t n = 100000;
	uint8_t *in = malloc(n), *out = malloc(n);
	struct buf z;
	buf_init(&z, 0);
	if (!in || !out) {
		w->failures++;
		goto out;
	}
	for (int round = 0; round < 20; round++) {
		fill_text(in, n, w->seed * 100 + (unsigned)round);
		if (compress_chunk(in, n, &z) != 1 ||
		    decompress_chunk((const uint8_t *)z.data, z.len, out, n) != 0 ||
		    memcmp(in, out, n) != 0)
			w->failures++;
	}
out:
	buf_release(&z);
	free(in);
	free(out);
	return NULL;
}

static void test_threads(void)
{
	enum { NT = 4 };
	pthread_t th[NT];
	struct worker w[NT];
	for (int i = 0; i < NT; i++) {
		w[i].seed = (unsigned)i;
		w[i].failures = 0;
		CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, worker_run, &w[i]), 0);
	}
	for (int i = 0; i < NT; i++) {
		CU_ASSERT_EQUAL(pthread_join(th[i], NULL), 0);
		CU_ASSERT_EQUAL(w[i].failures, 0);
	}
}

int suite_compress(void)
{
	CU_pSuite s = CU_add_suite("compress", NULL, NULL);
	if (!s)
		return CU_get_error();
	if (!CU_add_test(s, "round trip", test_roundtrip) ||
	    !CU_add_test(s, "not worth it", test_not_worth_it) ||
	    !CU_add_test(s, "probe classes", test_probe) ||
	    !CU_add_test(s, "prober: flat run", test_prober_flat_run) ||
	    !CU_add_test(s, "prober: weak run", test_prober_weak_run) ||
	    !CU_add_test(s, "bad input", test_bad_input) ||
	    !CU_add_test(s, "bodies", test_body) ||
	    !CU_add_test(s, "threads", test_threads))
		return CU_get_error();
	return 0;
}
