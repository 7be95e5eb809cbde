/*
 * fuzz_bundle: the body of POST /v1/bundle (bundle_parser_feed) as mirrord
 * runs it: plain or one zstd stream, fed in pieces of arbitrary sizes.
 *
 * Input: one byte (bit 0: the body is zstd; bits 1-7: the piece size,
 * 0: all at once), then the body. Checks the parser's promises: the JSON
 * comes once, first, within its cap; every frame is within the caps; the
 * decoded body stays within its cap; and the same JSON and frames come out
 * whatever the piece size.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "chunker.h"
#include "hash.h"

struct out {
	int json;          /* times the JSON came */
	long frames;
	uint64_t sum;      /* digest of the JSON and frames */
	uint64_t bytes;    /* JSON and payload bytes handed out */
};

static void mix(uint64_t *sum, const uint8_t *p, size_t n)
{
	struct hash_id id;
	hash_buf(p, n, &id);
	uint64_t v;
	memcpy(&v, id.b, sizeof(v));
	*sum = *sum * 1099511628211ull ^ v;
}

static int on_json(void *arg, const char *json, size_t len)
{
	struct out *o = arg;
	if (o->json || o->frames || len == 0 || len > PROTO_BUNDLE_JSON_MAX || json[len] != '\0')
		abort();
	o->json++;
	o->bytes += len;
	mix(&o->sum, (const uint8_t *)json, len);
	return 0;
}

static int on_frame(void *arg, const struct frame *f)
{
	struct out *o = arg;
	if (!o->json || f->raw_len == 0 || f->raw_len > CHUNK_PROTO_MAX ||
	    f->wire_len > CHUNK_PROTO_MAX + FRAME_SLACK)
		abort();
	o->frames++;
	o->bytes += f->wire_len;
	mix(&o->sum, f->payload, f->wire_len);
	return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return hash_init_lib() < 0;
}

/* Returns feed's or finish's result; *o what came out. */
static int run(const uint8_t *body, size_t size, int zstd, size_t step, struct out *o)
{
	struct bundle_parser p;
	struct bundle_cb cb = { on_json, on_frame, o };
	memset(o, 0, sizeof(*o));
	if (bundle_parser_init(&p, zstd) < 0)
		return -1;
	int r = 0;
	for (size_t off = 0; off < size && r == 0;) {
		size_t piece = step && size - off > step ? step : size - off;
		r = bundle_parser_feed(&p, body + off, piece, &cb);
		off += piece;
	}
	if (r == 0)
		r = bundle_parser_finish(&p);
	bundle_parser_release(&p);
	if (o->bytes > PROTO_BUNDLE_BODY_MAX)
		abort();
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct out a, b;
	if (size < 1)
		return 0;
	int zstd = data[0] & 1;
	size_t step = data[0] >> 1;
	int ra = run(data + 1, size - 1, zstd, 0, &a);
	int rb = run(data + 1, size - 1, zstd, step, &b);
	/* Success and what came out do not depend on the piece size; an
	 * error may be found after more or fewer frames, never a different
	 * success. */
	if ((ra == 0) != (rb == 0))
		abort();
	if (ra == 0 && (a.json != b.json || a.frames != b.frames || a.sum != b.sum))
		abort();
	return 0;
}
