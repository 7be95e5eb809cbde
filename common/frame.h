/*
 * frame: the binary framing of chunk uploads (POST /v1/chunks, see
 * docs/PROTOCOL.md): per chunk a 40-byte header (id[32], raw_len u32 BE,
 * wire_len u32 BE with bit 31 = zstd) and the payload.
 *
 * A bundle may use short frames instead (docs/PROTOCOL.md, "refs"): the
 * 8-byte header without the id, which the receiver computes from the
 * bytes; the commits then name those chunks by their frame's position.
 *
 * A chunk upload to a stage (docs/PROTOCOL.md, "stage": a new file's chunks
 * written straight to their place in it) uses staged frames: either header
 * followed by off u64 BE, the chunk's offset in the file.
 *
 * frame_encode_header() writes a header. struct frame_parser is an
 * incremental parser fed arbitrary pieces of a body (as libmicrohttpd hands
 * them over); it buffers at most one payload (capped at CHUNK_PROTO_MAX +
 * FRAME_SLACK bytes) and hands out each complete frame. It checks lengths
 * only; hashing and decompression are the caller's. Not thread-safe.
 */
#ifndef MIRROR_FRAME_H
#define MIRROR_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "hash.h"

#define FRAME_HEADER_LEN 40
#define FRAME_SHORT_HEADER_LEN 8
#define FRAME_OFFSET_LEN 8
#define FRAME_ZSTD 0x80000000u
#define FRAME_SLACK 4096

struct frame {
	struct hash_id id;
	uint32_t raw_len;
	int zstd;               /* payload is zstd-compressed */
	const uint8_t *payload; /* borrowed from the parser, valid until the next feed */
	uint32_t wire_len;
	int noid;               /* a short frame: id is all zero, the receiver hashes */
	int staged;             /* a staged frame: off is the chunk's offset in its file */
	uint64_t off;
};

void frame_encode_header(uint8_t out[FRAME_HEADER_LEN], const struct hash_id *id,
			 uint32_t raw_len, uint32_t wire_len, int zstd);
/* A short frame's header: raw_len u32 BE, wire_len u32 BE as above. */
void frame_encode_short_header(uint8_t out[FRAME_SHORT_HEADER_LEN], uint32_t raw_len,
			       uint32_t wire_len, int zstd);
/* A staged frame's offset, written right after either header. Offsets are
 * below FRAME_OFFSET_MAX (the parser refuses the rest). */
#define FRAME_OFFSET_MAX (1ull << 48)
void frame_encode_offset(uint8_t out[FRAME_OFFSET_LEN], uint64_t off);

struct frame_parser {
	uint8_t hdr[FRAME_HEADER_LEN + FRAME_OFFSET_LEN];
	size_t hdr_have;
	struct buf payload;
	struct frame cur;
	int noid;  /* short frames from here on (set between frames) */
	int staged; /* staged frames from here on (set between frames) */
	int state; /* private */
};

void frame_parser_init(struct frame_parser *p);
void frame_parser_release(struct frame_parser *p);

/* Consume bytes from *data (advancing *data and *len). Returns 1 when a
 * complete frame is in *out (call again with the rest), 0 when all input is
 * consumed without completing a frame, or -EBADMSG for an invalid header
 * (raw_len 0 or over CHUNK_PROTO_MAX, wire_len over CHUNK_PROTO_MAX +
 * FRAME_SLACK, an uncompressed frame whose wire_len != raw_len, or a staged
 * frame that ends past FRAME_OFFSET_MAX), -ENOMEM. */
__attribute__((warn_unused_result))
int frame_parser_feed(struct frame_parser *p, const uint8_t **data, size_t *len,
		      struct frame *out);

/* 1 if the parser sits between frames (a body may end here). */
int frame_parser_idle(const struct frame_parser *p);

#endif
