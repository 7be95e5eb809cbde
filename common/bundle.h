/*
 * bundle: the body of POST /v1/bundle (docs/PROTOCOL.md): several file ops
 * and the chunks they need, in one request.
 *
 * Decoded layout:
 *
 *     json_len u32 BE   1 .. PROTO_BUNDLE_JSON_MAX
 *     json[json_len]    {"ops":[op, ...]} (each op as for POST /v1/op, plus "seq")
 *     frames            chunk frames as in POST /v1/chunks (common/frame.h),
 *                       or short frames (no ids) when the JSON has "refs":true
 *
 * The whole body may be one zstd stream (Content-Encoding: zstd): small
 * files then share one compression context, which per-chunk compression
 * cannot give them (a source file compresses far better next to its
 * siblings than alone).
 *
 * struct bundle_parser is fed the body as it arrives, in pieces of any
 * size. It undoes the zstd stream (the decoded size is capped: a small
 * hostile body cannot expand without limit), collects the JSON (capped)
 * and hands it out once complete, then hands out every complete frame. It
 * checks the framing only; what the JSON and the chunks mean is the
 * caller's. Not thread-safe; one parser per request.
 *
 * bundle_encode() builds a body on the client side.
 */
#ifndef MIRROR_BUNDLE_H
#define MIRROR_BUNDLE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "frame.h"

#define PROTO_BUNDLE_JSON_MAX (8u * 1024 * 1024)
#define PROTO_BUNDLE_MAX_OPS 1024
/* Decoded body; the encoded body has the same cap. */
#define PROTO_BUNDLE_BODY_MAX (64u * 1024 * 1024)

struct bundle_cb {
	/* The ops JSON, complete (json[len] is a NUL, borrowed until the
	 * next feed). Called once, before any frame. A negative return stops
	 * the parser with that error. */
	int (*json)(void *arg, const char *json, size_t len);
	/* One complete frame (borrowed until the next feed). As above. */
	int (*frame)(void *arg, const struct frame *f);
	void *arg;
};

struct bundle_parser {
	void *zd;            /* ZSTD_DStream *; NULL: body not compressed */
	int zd_borrowed;     /* zd is a stream's (bundle_parser_init_stream) */
	uint8_t *zout;       /* owned: decoding window */
	int zdone;           /* the zstd stream's last block was decoded */
	uint64_t decoded;    /* body bytes after decoding */
	uint8_t lenb[4];
	size_t lenhave;
	uint32_t json_len;
	struct buf json;
	struct frame_parser fp;
	int state;           /* private; negative: sticky error */
};

/* zstd: the body is a zstd stream. Returns 0 or -ENOMEM. */
__attribute__((warn_unused_result))
int bundle_parser_init(struct bundle_parser *p, int zstd);
void bundle_parser_release(struct bundle_parser *p);

/* Compression streams (X-Mirror-Stream): one zstd stream carried over
 * several bodies, each ending at a flush point, so that each body is
 * compressed with the ones before it as context. */

/* A decoder for a stream (window capped as for one body), or NULL. */
void *bundle_dstream_new(void);
void bundle_dstream_free(void *zd);

/* The frames after the JSON are short (no ids: FRAME_SHORT_HEADER_LEN
 * headers). Called from the json callback of a bundle with "refs". */
void bundle_parser_short_frames(struct bundle_parser *p);

/* The frames after the JSON are staged (frame.h: each carries its chunk's
 * offset). Called from the json callback of a bundle with "stage". */
void bundle_parser_staged_frames(struct bundle_parser *p);

/* Parse a body that continues the stream zd (borrowed; its state carries
 * over from the previous body). The body need not end the zstd frame.
 * Cannot fail. */
void bundle_parser_init_stream(struct bundle_parser *p, void *zd);

/* The client's side: an encoder, reset to a new stream, freed. Streams
 * compress at BUNDLE_STREAM_LEVEL (one body alone: COMPRESS_LEVEL). */
#define BUNDLE_STREAM_LEVEL 5
void *bundle_cstream_new(void);
int bundle_cstream_reset(void *cs); /* 0 or -EIO */
void bundle_cstream_free(void *cs);

/* As bundle_encode(), compressed as the next body of the stream cs (up to
 * a flush point). Returns 0, -EMSGSIZE, -ENOMEM, -EIO; after a failure
 * the stream must be reset. */
__attribute__((warn_unused_result))
int bundle_encode_stream(void *cs, const char *json, size_t jlen, const uint8_t *frames,
			 size_t flen, struct buf *out);

/* Consume data[0..len). Returns 0, or -EBADMSG (not zstd, bad length,
 * bad frame header, bytes after the end of the zstd stream), -EMSGSIZE
 * (JSON or decoded body over its cap), -ENOMEM, or a callback's negative
 * return. After an error every later feed fails the same way. */
__attribute__((warn_unused_result))
int bundle_parser_feed(struct bundle_parser *p, const uint8_t *data, size_t len,
		       const struct bundle_cb *cb);

/* The body has ended: 0 if it ended cleanly (JSON seen, between frames,
 * the zstd stream complete), else -EBADMSG (or the sticky error). */
int bundle_parser_finish(const struct bundle_parser *p);

/* Build a body into out (reset first): the JSON text json[0..jlen) and the
 * frames frames[0..flen) (already encoded, see frame.h). With zstd, the
 * body is compressed as one stream (at COMPRESS_LEVEL) and *compressed is
 * set to 1, unless that would not make it smaller: then it is left plain
 * and *compressed is 0. Returns 0, -EMSGSIZE (JSON over its cap, or out's
 * cap), -ENOMEM, -EIO. */
__attribute__((warn_unused_result))
int bundle_encode(const char *json, size_t jlen, const uint8_t *frames, size_t flen, int zstd,
		  struct buf *out, int *compressed);

#endif
