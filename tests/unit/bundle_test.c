/* Unit tests for common/bundle: encode and parse back (plain and zstd) at
 * every split, and the refusals: bad length, caps, truncation, garbage
 * and bytes after the zstd stream. */
#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "bundle.h"
#include "frame.h"
#include "hash.h"

struct seen {
	char json[256];
	size_t jlen;
	int njson;
	int nframes;
	uint32_t lens[8];
	int ids_ok;
	int stop_at_frame; /* > 0: the frame callback fails at that frame */
};

static int on_json(void *arg, const char *json, size_t len)
{
	struct seen *s = arg;
	s->njson++;
	if (len < sizeof(s->json)) {
		memcpy(s->json, json, len);
		s->jlen = len;
	}
	return 0;
}

static int on_frame(void *arg, const struct frame *f)
{
	struct seen *s = arg;
	struct hash_id id;
	if (s->stop_at_frame && s->nframes + 1 == s->stop_at_frame)
		return -EIO;
	if (s->nframes < 8)
		s->lens[s->nframes] = f->raw_len;
	hash_buf(f->payload, f->wire_len, &id);
	if (!hash_equal(&id, &f->id))
		s->ids_ok = 0;
	s->nframes++;
	return 0;
}

/* Three frames of text-like bytes (compressible), lengths 100, 5000, 1. */
static void make_frames(struct buf *frames)
{
	static const uint32_t lens[] = { 100, 5000, 1 };
	buf_init(frames, 0);
	for (size_t i = 0; i < 3; i++) {
		uint8_t *p = malloc(lens[i]);
		uint8_t hdr[FRAME_HEADER_LEN];
		struct hash_id id;
		CU_ASSERT_PTR_NOT_NULL_FATAL(p);
		for (uint32_t j = 0; j < lens[i]; j++)
			p[j] = (uint8_t)("int main(void) { return 0; }\n"[j % 29]);
		hash_buf(p, lens[i], &id);
		frame_encode_header(hdr, &id, lens[i], lens[i], 0);
		CU_ASSERT_EQUAL_FATAL(buf_append(frames, hdr, sizeof(hdr)), 0);
		CU_ASSERT_EQUAL_FATAL(buf_append(frames, p, lens[i]), 0);
		free(p);
	}
}

static const char JSON[] = "{\"ops\":[{\"op\":\"delete\",\"path\":\"a\"}]}";

/* Feed body in pieces of step bytes, as a body of its own (zstd or not)
 * or, with zd, as the next body of that stream; returns feed's last error
 * or finish's. */
static int parse_with(const struct buf *body, int zstd, void *zd, size_t step, struct seen *s)
{
	struct bundle_parser p;
	struct bundle_cb cb = { on_json, on_frame, s };
	int r = 0;
	if (zd)
		bundle_parser_init_stream(&p, zd);
	else
		r = bundle_parser_init(&p, zstd);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	for (size_t off = 0; r == 0 && off < body->len; off += step) {
		size_t n = body->len - off < step ? body->len - off : step;
		r = bundle_parser_feed(&p, (const uint8_t *)body->data + off, n, &cb);
	}
	if (r == 0)
		r = bundle_parser_finish(&p);
	bundle_parser_release(&p);
	return r;
}

static int parse(const struct buf *body, int zstd, size_t step, struct seen *s)
{
	return parse_with(body, zstd, NULL, step, s);
}

static void test_roundtrip(void)
{
	struct buf frames, body;
	make_frames(&frames);
	buf_init(&body, 0);
	for (int zstd = 0; zstd <= 1; zstd++) {
		int z = -1;
		CU_ASSERT_EQUAL_FATAL(bundle_encode(JSON, strlen(JSON), (const uint8_t *)frames.data,
						    frames.len, zstd, &body, &z), 0);
		CU_ASSERT_EQUAL(z, zstd); /* the repeated text compresses */
		if (zstd)
			CU_ASSERT(body.len < frames.len / 4);
		size_t steps[] = { 1, 2, 7, 40, 4096, body.len };
		for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
			struct seen s = { .ids_ok = 1 };
			CU_ASSERT_EQUAL(parse(&body, z, steps[k], &s), 0);
			CU_ASSERT_EQUAL(s.njson, 1);
			CU_ASSERT_EQUAL(s.jlen, strlen(JSON));
			CU_ASSERT(memcmp(s.json, JSON, strlen(JSON)) == 0);
			CU_ASSERT_EQUAL(s.nframes, 3);
			CU_ASSERT_EQUAL(s.lens[0], 100);
			CU_ASSERT_EQUAL(s.lens[1], 5000);
			CU_ASSERT_EQUAL(s.lens[2], 1);
			CU_ASSERT(s.ids_ok);
		}
	}
	buf_release(&frames);
	buf_release(&body);
}

static void test_incompressible_stays_plain(void)
{
	struct buf body;
	uint8_t frames[FRAME_HEADER_LEN + 256], hdr[FRAME_HEADER_LEN];
	struct hash_id id;
	int z = -1;
	uint64_t x = 88172645463325252ull;
	for (size_t i = 0; i < 256; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		frames[FRAME_HEADER_LEN + i] = (uint8_t)x;
	}
	hash_buf(frames + FRAME_HEADER_LEN, 256, &id);
	frame_encode_header(hdr, &id, 256, 256, 0);
	memcpy(frames, hdr, sizeof(hdr));
	buf_init(&body, 0);
	CU_ASSERT_EQUAL(bundle_encode("{}", 2, frames, sizeof(frames), 1, &body, &z), 0);
	CU_ASSERT_EQUAL(z, 0);
	CU_ASSERT_EQUAL(body.len, 4 + 2 + sizeof(frames));
	buf_release(&body);
}

static void test_refusals(void)
{
	struct buf frames, body;
	struct seen s = { .ids_ok = 1 };
	int z;
	make_frames(&frames);
	buf_init(&body, 0);

	/* a zero JSON length */
	CU_ASSERT_EQUAL(buf_append(&body, "\0\0\0\0{}", 6), 0);
	CU_ASSERT_EQUAL(parse(&body, 0, 3, &s), -EBADMSG);
	/* a JSON length over the cap */
	buf_reset(&body);
	CU_ASSERT_EQUAL(buf_append(&body, "\x7f\0\0\0{}", 6), 0);
	CU_ASSERT_EQUAL(parse(&body, 0, 6, &s), -EMSGSIZE);
	/* the body ends inside the JSON, then inside a frame */
	CU_ASSERT_EQUAL(bundle_encode(JSON, strlen(JSON), (const uint8_t *)frames.data, frames.len,
				      0, &body, &z), 0);
	size_t full = body.len;
	body.len = 10;
	CU_ASSERT_EQUAL(parse(&body, 0, 3, &s), -EBADMSG);
	body.len = full - 1;
	CU_ASSERT_EQUAL(parse(&body, 0, 100, &s), -EBADMSG);
	body.len = full;
	/* a callback's error stops the parser */
	memset(&s, 0, sizeof(s));
	s.stop_at_frame = 2;
	CU_ASSERT_EQUAL(parse(&body, 0, 50, &s), -EIO);
	CU_ASSERT_EQUAL(s.nframes, 1);
	/* not zstd at all, announced as zstd */
	memset(&s, 0, sizeof(s));
	CU_ASSERT_EQUAL(parse(&body, 1, 50, &s), -EBADMSG);
	/* a zstd body cut short; then with bytes after its end */
	CU_ASSERT_EQUAL(bundle_encode(JSON, strlen(JSON), (const uint8_t *)frames.data, frames.len,
				      1, &body, &z), 0);
	CU_ASSERT_EQUAL_FATAL(z, 1);
	full = body.len;
	body.len = full - 3;
	CU_ASSERT_EQUAL(parse(&body, 1, 16, &s), -EBADMSG);
	body.len = full;
	CU_ASSERT_EQUAL(buf_append(&body, "x", 1), 0);
	CU_ASSERT_EQUAL(parse(&body, 1, 16, &s), -EBADMSG);
	buf_release(&frames);
	buf_release(&body);
}

/* A small zstd body that expands past the decoded cap is refused, after
 * the frames before the cap were handed out. */
static void test_decoded_cap(void)
{
	const uint32_t one = 1u << 20; /* CHUNK_PROTO_MAX */
	size_t nf = PROTO_BUNDLE_BODY_MAX / one + 1;
	uint8_t *zeros = calloc(1, one), hdr[FRAME_HEADER_LEN];
	struct buf frames, body;
	struct hash_id id;
	int z = 0;
	CU_ASSERT_PTR_NOT_NULL_FATAL(zeros);
	hash_buf(zeros, one, &id);
	frame_encode_header(hdr, &id, one, one, 0);
	buf_init(&frames, 0);
	for (size_t i = 0; i < nf; i++) {
		CU_ASSERT_EQUAL_FATAL(buf_append(&frames, hdr, sizeof(hdr)), 0);
		CU_ASSERT_EQUAL_FATAL(buf_append(&frames, zeros, one), 0);
	}
	buf_init(&body, 0);
	CU_ASSERT_EQUAL_FATAL(bundle_encode("{}", 2, (const uint8_t *)frames.data, frames.len, 1,
					    &body, &z), 0);
	CU_ASSERT_EQUAL_FATAL(z, 1);
	CU_ASSERT(body.len < 1024 * 1024);
	struct seen s = { .ids_ok = 1 };
	CU_ASSERT_EQUAL(parse(&body, 1, 65536, &s), -EMSGSIZE);
	CU_ASSERT(s.nframes >= 60 && (size_t)s.nframes < nf);
	CU_ASSERT(s.ids_ok);
	free(zeros);
	buf_release(&frames);
	buf_release(&body);
}

/* Parse one body of a stream with the decoder zd. */
static int parse_stream_body(const struct buf *body, void *zd, size_t step, struct seen *s)
{
	return parse_with(body, 1, zd, step, s);
}

/* Three bodies of one stream: each decodes with the decoder the bodies
 * before it went through, later ones are smaller (the context), and a
 * later body cannot be decoded by a fresh decoder. */
static void test_stream(void)
{
	struct buf frames, body[3];
	void *cs = bundle_cstream_new(), *zd = bundle_dstream_new(), *fresh = bundle_dstream_new();
	CU_ASSERT_PTR_NOT_NULL_FATAL(cs);
	CU_ASSERT_PTR_NOT_NULL_FATAL(zd);
	CU_ASSERT_PTR_NOT_NULL_FATAL(fresh);
	make_frames(&frames);
	for (int i = 0; i < 3; i++) {
		buf_init(&body[i], 0);
		CU_ASSERT_EQUAL_FATAL(bundle_encode_stream(cs, JSON, strlen(JSON),
							   (const uint8_t *)frames.data, frames.len,
							   &body[i]), 0);
	}
	CU_ASSERT(body[1].len < body[0].len);
	for (int i = 0; i < 3; i++) {
		struct seen s = { .ids_ok = 1 };
		CU_ASSERT_EQUAL(parse_stream_body(&body[i], zd, i == 1 ? 3 : 4096, &s), 0);
		CU_ASSERT_EQUAL(s.njson, 1);
		CU_ASSERT_EQUAL(s.nframes, 3);
		CU_ASSERT(s.ids_ok);
	}
	struct seen s = { .ids_ok = 1 };
	CU_ASSERT_NOT_EQUAL(parse_stream_body(&body[2], fresh, 4096, &s), 0);
	/* After a reset the stream starts again: a fresh decoder reads it. */
	void *zd2 = bundle_dstream_new();
	CU_ASSERT_EQUAL(bundle_cstream_reset(cs), 0);
	CU_ASSERT_EQUAL(bundle_encode_stream(cs, JSON, strlen(JSON), (const uint8_t *)frames.data,
					     frames.len, &body[0]), 0);
	memset(&s, 0, sizeof(s));
	s.ids_ok = 1;
	CU_ASSERT_EQUAL(parse_stream_body(&body[0], zd2, 100, &s), 0);
	CU_ASSERT_EQUAL(s.nframes, 3);
	for (int i = 0; i < 3; i++)
		buf_release(&body[i]);
	buf_release(&frames);
	bundle_cstream_free(cs);
	bundle_dstream_free(zd);
	bundle_dstream_free(zd2);
	bundle_dstream_free(fresh);
}

int suite_bundle(void)
{
	CU_pSuite s = CU_add_suite("bundle", NULL, NULL);
	if (!s)
		return CU_get_error();
	if (!CU_add_test(s, "round trip at every split", test_roundtrip) ||
	    !CU_add_test(s, "incompressible stays plain", test_incompressible_stays_plain) ||
	    !CU_add_test(s, "refusals", test_refusals) ||
	    !CU_add_test(s, "decoded cap", test_decoded_cap) ||
	    !CU_add_test(s, "stream over several bodies", test_stream))
		return CU_get_error();
	return 0;
}
