/*
 * fuzz_frame: the chunk upload framing (frame_parser_feed) as POST
 * /v1/chunks runs it: the body fed in pieces of arbitrary sizes, each
 * complete frame decompressed (when flagged) within its announced raw
 * length and hashed.
 *
 * Input: one byte choosing the piece size (1..255 bytes, 0: all at once;
 * an odd byte also makes the frames short, without ids, as in a bundle with
 * refs), then the body. Checks the parser's promises: it never hands out a frame
 * over the caps, consumes input only forward, and finds the same frames
 * whatever the piece size.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chunker.h"
#include "compress.h"
#include "frame.h"
#include "hash.h"

static uint8_t raw[CHUNK_PROTO_MAX];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return hash_init_lib() < 0;
}

/* Feed body in pieces of step bytes (0: whole). Returns the number of
 * frames, or -1 - frames on a parse error; *sum gets a digest of them. */
static long run(const uint8_t *body, size_t size, size_t step, int noid, uint64_t *sum)
{
	struct frame_parser fp;
	long frames = 0;
	int err = 0;
	frame_parser_init(&fp);
	fp.noid = noid;
	*sum = 0;
	for (size_t off = 0; off < size && !err;) {
		size_t piece = step && size - off > step ? step : size - off;
		const uint8_t *p = body + off;
		size_t len = piece;
		while (len) {
			struct frame f;
			const uint8_t *before = p;
			int r = frame_parser_feed(&fp, &p, &len, &f);
			if (p < before || p > body + off + piece)
				abort();
			if (r < 0) {
				err = 1;
				break;
			}
			if (r == 0)
				break;
			if (f.noid != noid || f.raw_len == 0 || f.raw_len > CHUNK_PROTO_MAX ||
			    f.wire_len > CHUNK_PROTO_MAX + FRAME_SLACK || (!f.zstd && f.wire_len != f.raw_len))
				abort();
			const uint8_t *bytes = f.payload;
			if (f.zstd) {
				if (decompress_chunk(f.payload, f.wire_len, raw, f.raw_len) < 0)
					continue;
				bytes = raw;
			}
			struct hash_id id;
			hash_buf(bytes, f.raw_len, &id);
			*sum = *sum * 31 + id.b[0] + f.raw_len;
			frames++;
		}
		off += piece;
	}
	if (!err && frame_parser_idle(&fp))
		*sum ^= 1;
	frame_parser_release(&fp);
	return err ? -1 - frames : frames;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t step = data[0];
	uint64_t a, b;
	int noid = data[0] & 1;
	long fa = run(data + 1, size - 1, step, noid, &a);
	long fb = run(data + 1, size - 1, 0, noid, &b);
	if (fa != fb || a != b)
		abort();
	return 0;
}
