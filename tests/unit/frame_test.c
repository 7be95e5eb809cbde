/* Unit tests for common/frame: header layout, incremental parsing at every
 * split, caps and bad headers. */
#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "chunker.h"
#include "frame.h"
#include "hash.h"

struct spec {
	uint32_t raw_len, wire_len;
	int zstd;
};

/* A body of frames as described by specs[]; payload byte j of frame i is
 * (i * 31 + j) & 0xff, the id the hash of the payload. */
static void build_body(const struct spec *specs, size_t n, struct buf *body)
{
	uint8_t hdr[FRAME_HEADER_LEN];
	buf_init(body, 0);
	for (size_t i = 0; i < n; i++) {
		uint8_t *pl = malloc(specs[i].wire_len + 1);
		CU_ASSERT_PTR_NOT_NULL_FATAL(pl);
		for (uint32_t j = 0; j < specs[i].wire_len; j++)
			pl[j] = (uint8_t)(i * 31 + j);
		struct hash_id id;
		hash_buf(pl, specs[i].wire_len, &id);
		frame_encode_header(hdr, &id, specs[i].raw_len, specs[i].wire_len, specs[i].zstd);
		CU_ASSERT_EQUAL_FATAL(buf_append(body, hdr, sizeof(hdr)), 0);
		CU_ASSERT_EQUAL_FATAL(buf_append(body, pl, specs[i].wire_len), 0);
		free(pl);
	}
}

static int frame_matches(const struct frame *f, const struct spec *s, size_t i)
{
	struct hash_id id;
	if (f->raw_len != s->raw_len || f->wire_len != s->wire_len || f->zstd != s->zstd ||
	    !f->payload)
		return 0;
	for (uint32_t j = 0; j < s->wire_len; j++)
		if (f->payload[j] != (uint8_t)(i * 31 + j))
			return 0;
	hash_buf(f->payload, f->wire_len, &id);
	return hash_equal(&id, &f->id);
}

/*
 * Feed body in pieces: the first piece is `first` bytes, then `step` bytes
 * at a time. Returns the number of frames that matched specs in order, or
 * -1 on any error. The parser must be idle at the end.
 */
static int parse_pieces(const struct spec *specs, size_t n, const struct buf *body,
			size_t first, size_t step)
{
	struct frame_parser p;
	struct frame f;
	size_t got = 0, off = 0;
	int ok = 1;
	frame_parser_init(&p);
	while (off < body->len) {
		size_t len = off == 0 ? first : step;
		if (len > body->len - off)
			len = body->len - off;
		const uint8_t *d = (const uint8_t *)body->data + off;
		size_t left = len;
		for (;;) {
			int r = frame_parser_feed(&p, &d, &left, &f);
			if (r < 0) {
				ok = 0;
				break;
			}
			if (r == 0) {
				if (left != 0) /* 0 means all input consumed */
					ok = 0;
				break;
			}
			if (got >= n || !frame_matches(&f, &specs[got], got))
				ok = 0;
			got++;
		}
		if (!ok)
			break;
		off += len;
	}
	if (!frame_parser_idle(&p))
		ok = 0;
	frame_parser_release(&p);
	return ok ? (int)got : -1;
}

static const struct spec mixed[] = {
	{ 1, 1, 0 }, { 100, 100, 0 }, { 5000, 77, 1 }, { 1000, 0, 1 }, { 3, 3, 0 },
	{ 70000, 70000, 0 }, { CHUNK_PROTO_MAX, CHUNK_PROTO_MAX + FRAME_SLACK, 1 },
	{ CHUNK_PROTO_MAX, CHUNK_PROTO_MAX, 0 }, { 2, 2, 0 },
};
#define NMIXED (sizeof(mixed) / sizeof(mixed[0]))

static void test_header_layout(void)
{
	uint8_t h[FRAME_HEADER_LEN];
	struct hash_id id;
	for (int i = 0; i < HASH_LEN; i++)
		id.b[i] = (uint8_t)i;
	frame_encode_header(h, &id, 0x01020304u, 0x00050607u, 0);
	CU_ASSERT(memcmp(h, id.b, HASH_LEN) == 0);
	static const uint8_t plain[8] = { 1, 2, 3, 4, 0, 5, 6, 7 };
	CU_ASSERT(memcmp(h + HASH_LEN, plain, 8) == 0);
	frame_encode_header(h, &id, 1, 0x00050607u, 1);
	static const uint8_t zst[8] = { 0, 0, 0, 1, 0x80, 5, 6, 7 };
	CU_ASSERT(memcmp(h + HASH_LEN, zst, 8) == 0);
}

static void test_roundtrip(void)
{
	struct buf body;
	build_body(mixed, NMIXED, &body);
	CU_ASSERT_EQUAL(parse_pieces(mixed, NMIXED, &body, body.len, body.len), (int)NMIXED);
	CU_ASSERT_EQUAL(parse_pieces(mixed, NMIXED, &body, 1, 1), (int)NMIXED);
	CU_ASSERT_EQUAL(parse_pieces(mixed, NMIXED, &body, 39, 40), (int)NMIXED);
	CU_ASSERT_EQUAL(parse_pieces(mixed, NMIXED, &body, 41, 4093), (int)NMIXED);
	CU_ASSERT_EQUAL(parse_pieces(mixed, NMIXED, &body, 65536, 65536), (int)NMIXED);
	buf_release(&body);
}

/* Every split of a small body into two pieces, and into three. */
static void test_every_split(void)
{
	static const struct spec small[] = {
		{ 5, 5, 0 }, { 9, 4, 1 }, { 1, 1, 0 }, { 300, 0, 1 }, { 17, 17, 0 },
	};
	const size_t n = sizeof(small) / sizeof(small[0]);
	struct buf body;
	build_body(small, n, &body);
	int fails = 0;
	for (size_t k = 0; k <= body.len; k++) {
		if (parse_pieces(small, n, &body, k ? k : 1, body.len) != (int)n)
			fails++;
		for (size_t step = 1; step < 45; step += 7)
			if (parse_pieces(small, n, &body, k ? k : 1, step) != (int)n)
				fails++;
	}
	CU_ASSERT_EQUAL(fails, 0);
	buf_release(&body);
}

static void test_idle(void)
{
	static const struct spec one[] = { { 10, 10, 0 } };
	struct buf body;
	struct frame_parser p;
	struct frame f;
	build_body(one, 1, &body);
	frame_parser_init(&p);
	CU_ASSERT(frame_parser_idle(&p));

	const uint8_t *d = (const uint8_t *)body.data;
	size_t len = 0;
	CU_ASSERT_EQUAL(frame_parser_feed(&p, &d, &len, &f), 0); /* empty feed */
	CU_ASSERT(frame_parser_idle(&p));
	len = 1;
	CU_ASSERT_EQUAL(frame_parser_feed(&p, &d, &len, &f), 0);
	CU_ASSERT(!frame_parser_idle(&p)); /* inside a header */
	len = FRAME_HEADER_LEN - 1;
	CU_ASSERT_EQUAL(frame_parser_feed(&p, &d, &len, &f), 0);
	CU_ASSERT(!frame_parser_idle(&p)); /* header done, payload pending */
	len = 9;
	CU_ASSERT_EQUAL(frame_parser_feed(&p, &d, &len, &f), 0);
	CU_ASSERT(!frame_parser_idle(&p));
	len = 1;
	CU_ASSERT_EQUAL(frame_parser_feed(&p, &d, &len, &f), 1);
	CU_ASSERT_EQUAL(len, 0);
	CU_ASSERT(frame_matches(&f, &one[0], 0));
	CU_ASSERT(frame_parser_idle(&p));
	CU_ASSERT_PTR_EQUAL(d, (const uint8_t *)body.data + body.len);

	frame_parser_release(&p);
	frame_parser_release(NULL);
	buf_release(&body);
}

/* Feed one 40-byte header; returns what the parser says at its last byte. */
static int feed_header(uint32_t raw, uint32_t wire, int zstd, int bytewise)
{
	struct frame_parser p;
	struct frame f;
	struct hash_id id;
	uint8_t h[FRAME_HEADER_LEN];
	int r = 0;
	memset(&id, 0x5a, sizeof(id));
	frame_encode_header(h, &id, raw, wire, zstd);
	frame_parser_init(&p);
	const uint8_t *d = h;
	if (bytewise) {
		for (size_t i = 0; i < FRAME_HEADER_LEN; i++) {
			size_t one = 1;
			r = frame_parser_feed(&p, &d, &one, &f);
			if (i + 1 < FRAME_HEADER_LEN)
				CU_ASSERT_EQUAL(r, 0);
		}
	} else {
		size_t len = FRAME_HEADER_LEN;
		r = frame_parser_feed(&p, &d, &len, &f);
	}
	if (r < 0) {
		/* errors are sticky: nothing after a bad header is framed */
		size_t len = FRAME_HEADER_LEN;
		d = h;
		CU_ASSERT_EQUAL(frame_parser_feed(&p, &d, &len, &f), r);
		CU_ASSERT(!frame_parser_idle(&p));
	}
	frame_parser_release(&p);
	return r;
}

static void test_bad_headers(void)
{
	const uint32_t wmax = CHUNK_PROTO_MAX + FRAME_SLACK;
	for (int bw = 0; bw <= 1; bw++) {
		CU_ASSERT_EQUAL(feed_header(0, 0, 0, bw), -EBADMSG);
		CU_ASSERT_EQUAL(feed_header(0, 10, 1, bw), -EBADMSG);
		CU_ASSERT_EQUAL(feed_header(CHUNK_PROTO_MAX + 1, CHUNK_PROTO_MAX + 1, 0, bw),
				-EBADMSG);
		CU_ASSERT_EQUAL(feed_header(CHUNK_PROTO_MAX + 1, 100, 1, bw), -EBADMSG);
		CU_ASSERT_EQUAL(feed_header(0xffffffffu, 100, 1, bw), -EBADMSG);
		CU_ASSERT_EQUAL(feed_header(100, wmax + 1, 1, bw), -EBADMSG);
		CU_ASSERT_EQUAL(feed_header(100, 0x7fffffffu, 1, bw), -EBADMSG);
		CU_ASSERT_EQUAL(feed_header(100, 99, 0, bw), -EBADMSG);
		CU_ASSERT_EQUAL(feed_header(100, 101, 0, bw), -EBADMSG);
		CU_ASSERT_EQUAL(feed_header(100, 0, 0, bw), -EBADMSG);
		/* at the caps: accepted, waiting for the payload */
		CU_ASSERT_EQUAL(feed_header(CHUNK_PROTO_MAX, CHUNK_PROTO_MAX, 0, bw), 0);
		CU_ASSERT_EQUAL(feed_header(CHUNK_PROTO_MAX, wmax, 1, bw), 0);
		CU_ASSERT_EQUAL(feed_header(1, wmax, 1, bw), 0);
		CU_ASSERT_EQUAL(feed_header(1, 1, 0, bw), 0);
	}

	/* good frames before a bad header are still handed out */
	static const struct spec good[] = { { 4, 4, 0 }, { 6, 6, 0 } };
	struct buf body;
	struct frame_parser p;
	struct frame f;
	struct hash_id id = { { 0 } };
	uint8_t bad[FRAME_HEADER_LEN];
	build_body(good, 2, &body);
	frame_encode_header(bad, &id, 8, 9, 0);
	CU_ASSERT_EQUAL_FATAL(buf_append(&body, bad, sizeof(bad)), 0);
	frame_parser_init(&p);
	const uint8_t *d = (const uint8_t *)body.data;
	size_t len = body.len;
	CU_ASSERT_EQUAL(frame_parser_feed(&p, &d, &len, &f), 1);
	CU_ASSERT(frame_matches(&f, &good[0], 0));
	CU_ASSERT_EQUAL(frame_parser_feed(&p, &d, &len, &f), 1);
	CU_ASSERT(frame_matches(&f, &good[1], 1));
	CU_ASSERT_EQUAL(frame_parser_feed(&p, &d, &len, &f), -EBADMSG);
	frame_parser_release(&p);
	buf_release(&body);
}

/* A body that ends inside a frame leaves the parser busy. */
/* Short frames (no id): 8-byte headers, fed a byte at a time; the frame
 * says it has no id and its id is zero; the lengths are checked as for
 * full frames. */
static void test_short_frames(void)
{
	static const uint32_t lens[] = { 1, 300, 5 };
	uint8_t hdr[FRAME_SHORT_HEADER_LEN], pl[300];
	struct buf body;
	struct frame_parser p;
	struct frame f;
	struct hash_id zero;
	size_t got = 0;

	memset(&zero, 0, sizeof(zero));
	buf_init(&body, 0);
	for (size_t i = 0; i < 3; i++) {
		memset(pl, (int)i + 1, lens[i]);
		frame_encode_short_header(hdr, lens[i], lens[i], 0);
		CU_ASSERT_EQUAL_FATAL(buf_append(&body, hdr, sizeof(hdr)), 0);
		CU_ASSERT_EQUAL_FATAL(buf_append(&body, pl, lens[i]), 0);
	}
	CU_ASSERT_EQUAL(body.len, 3 * FRAME_SHORT_HEADER_LEN + 306);
	frame_parser_init(&p);
	p.noid = 1;
	const uint8_t *d = (const uint8_t *)body.data;
	for (size_t off = 0; off < body.len; off++) {
		const uint8_t *one = d + off;
		size_t n = 1;
		while (n) {
			int r = frame_parser_feed(&p, &one, &n, &f);
			CU_ASSERT_FATAL(r >= 0);
			if (r == 0)
				break;
			CU_ASSERT_FATAL(got < 3);
			CU_ASSERT_EQUAL(f.raw_len, lens[got]);
			CU_ASSERT_EQUAL(f.wire_len, lens[got]);
			CU_ASSERT(f.noid);
			CU_ASSERT(hash_equal(&f.id, &zero));
			CU_ASSERT_EQUAL(f.payload[f.raw_len - 1], (uint8_t)(got + 1));
			got++;
		}
	}
	CU_ASSERT_EQUAL(got, 3);
	CU_ASSERT(frame_parser_idle(&p));
	frame_parser_release(&p);
	buf_release(&body);

	/* raw_len 0, and a plain frame whose lengths differ: refused */
	static const uint32_t bad[][2] = { { 0, 0 }, { 5, 4 } };
	for (size_t i = 0; i < 2; i++) {
		frame_encode_short_header(hdr, bad[i][0], bad[i][1], 0);
		frame_parser_init(&p);
		p.noid = 1;
		d = hdr;
		size_t n = sizeof(hdr);
		CU_ASSERT_EQUAL(frame_parser_feed(&p, &d, &n, &f), -EBADMSG);
		frame_parser_release(&p);
	}
}

/* Staged frames: either header, then the offset; fed a byte at a time. */
static void test_staged_frames(void)
{
	static const uint32_t lens[] = { 7, 300, 1 };
	static const uint64_t offs[] = { 0, 4096, (1ull << 40) + 3 };
	uint8_t hdr[FRAME_HEADER_LEN], o[FRAME_OFFSET_LEN], pl[300];
	struct frame_parser p;
	struct frame f;
	for (int noid = 0; noid < 2; noid++) {
		struct buf body;
		size_t got = 0;
		buf_init(&body, 0);
		for (size_t i = 0; i < 3; i++) {
			struct hash_id id;
			memset(pl, (int)i + 1, lens[i]);
			hash_buf(pl, lens[i], &id);
			if (noid)
				frame_encode_short_header(hdr, lens[i], lens[i], 0);
			else
				frame_encode_header(hdr, &id, lens[i], lens[i], 0);
			frame_encode_offset(o, offs[i]);
			CU_ASSERT_EQUAL_FATAL(buf_append(&body, hdr, noid ? FRAME_SHORT_HEADER_LEN
									 : FRAME_HEADER_LEN), 0);
			CU_ASSERT_EQUAL_FATAL(buf_append(&body, o, sizeof(o)), 0);
			CU_ASSERT_EQUAL_FATAL(buf_append(&body, pl, lens[i]), 0);
		}
		frame_parser_init(&p);
		p.noid = noid;
		p.staged = 1;
		const uint8_t *d = (const uint8_t *)body.data;
		for (size_t off = 0; off < body.len; off++) {
			const uint8_t *one = d + off;
			size_t n = 1;
			int r = frame_parser_feed(&p, &one, &n, &f);
			CU_ASSERT_FATAL(r >= 0);
			if (r == 0)
				continue;
			CU_ASSERT_FATAL(got < 3);
			CU_ASSERT(f.staged);
			CU_ASSERT_EQUAL(f.off, offs[got]);
			CU_ASSERT_EQUAL(f.raw_len, lens[got]);
			CU_ASSERT_EQUAL(f.payload[0], (uint8_t)(got + 1));
			got++;
		}
		CU_ASSERT_EQUAL(got, 3);
		CU_ASSERT(frame_parser_idle(&p));
		frame_parser_release(&p);
		buf_release(&body);
	}

	/* A chunk that would end at or past FRAME_OFFSET_MAX: refused. The
	 * last offset that fits is taken. */
	static const struct {
		uint64_t off;
		int ok;
	} edge[] = { { FRAME_OFFSET_MAX - 11, 1 }, { FRAME_OFFSET_MAX - 10, 0 },
		     { UINT64_MAX, 0 }, { UINT64_MAX - 5, 0 } };
	for (size_t i = 0; i < sizeof(edge) / sizeof(edge[0]); i++) {
		uint8_t b[FRAME_HEADER_LEN + FRAME_OFFSET_LEN];
		struct hash_id id;
		hash_buf("0123456789", 10, &id);
		frame_encode_header(b, &id, 10, 10, 0);
		frame_encode_offset(b + FRAME_HEADER_LEN, edge[i].off);
		frame_parser_init(&p);
		p.staged = 1;
		const uint8_t *d = b;
		size_t n = sizeof(b);
		int r = frame_parser_feed(&p, &d, &n, &f);
		CU_ASSERT_EQUAL(r, edge[i].ok ? 0 : -EBADMSG);
		if (edge[i].ok) {
			d = (const uint8_t *)"0123456789";
			n = 10;
			CU_ASSERT_EQUAL(frame_parser_feed(&p, &d, &n, &f), 1);
			CU_ASSERT_EQUAL(f.off, edge[i].off);
		}
		frame_parser_release(&p);
	}
}

static void test_truncated(void)
{
	static const struct spec two[] = { { 50, 50, 0 }, { 60, 60, 0 } };
	struct buf body;
	build_body(two, 2, &body);
	for (size_t cut = 1; cut < body.len; cut++) {
		struct frame_parser p;
		struct frame f;
		const uint8_t *d = (const uint8_t *)body.data;
		size_t len = body.len - cut;
		int frames = 0, r;
		frame_parser_init(&p);
		while ((r = frame_parser_feed(&p, &d, &len, &f)) == 1)
			frames++;
		CU_ASSERT_EQUAL(r, 0);
		CU_ASSERT_EQUAL(frame_parser_idle(&p), body.len - cut == FRAME_HEADER_LEN + 50);
		CU_ASSERT_EQUAL(frames, body.len - cut >= FRAME_HEADER_LEN + 50 ? 1 : 0);
		frame_parser_release(&p);
	}
	buf_release(&body);
}

int suite_frame(void)
{
	CU_pSuite s = CU_add_suite("frame", NULL, NULL);
	if (!s)
		return CU_get_error();
	if (!CU_add_test(s, "header layout", test_header_layout) ||
	    !CU_add_test(s, "round trip", test_roundtrip) ||
	    !CU_add_test(s, "every split", test_every_split) ||
	    !CU_add_test(s, "idle", test_idle) ||
	    !CU_add_test(s, "short frames", test_short_frames) ||
	    !CU_add_test(s, "staged frames", test_staged_frames) ||
	    !CU_add_test(s, "bad headers", test_bad_headers) ||
	    !CU_add_test(s, "truncated body", test_truncated))
		return CU_get_error();
	return 0;
}
