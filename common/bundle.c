#define _GNU_SOURCE
#include "bundle.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "compress.h"

/* Parser states (struct bundle_parser.state). */
enum {
	BUNDLE__LEN = 0, /* collecting the JSON's length */
	BUNDLE__JSON,    /* collecting json_len bytes of JSON */
	BUNDLE__FRAMES,  /* frames until the end */
};

/* Decoding window: what one call of ZSTD_decompressStream may produce. */
#define BUNDLE__ZOUT (128u * 1024)

void *bundle_dstream_new(void)
{
	ZSTD_DStream *zd = ZSTD_createDStream();
	/* A window no larger than the level the client uses needs: a
	 * hostile stream cannot make mirrord allocate more. */
	if (zd && ZSTD_isError(ZSTD_DCtx_setParameter(zd, ZSTD_d_windowLogMax, 23))) {
		ZSTD_freeDStream(zd);
		zd = NULL;
	}
	return zd;
}

void bundle_dstream_free(void *zd)
{
	ZSTD_freeDStream(zd);
}

static void bundle__init(struct bundle_parser *p)
{
	memset(p, 0, sizeof(*p));
	buf_init(&p->json, PROTO_BUNDLE_JSON_MAX);
	frame_parser_init(&p->fp);
	p->state = BUNDLE__LEN;
}

int bundle_parser_init(struct bundle_parser *p, int zstd)
{
	bundle__init(p);
	if (!zstd)
		return 0;
	p->zd = bundle_dstream_new();
	p->zout = malloc(BUNDLE__ZOUT);
	if (!p->zd || !p->zout) {
		bundle_parser_release(p);
		return -ENOMEM;
	}
	return 0;
}

void bundle_parser_init_stream(struct bundle_parser *p, void *zd)
{
	bundle__init(p);
	p->zd = zd;
	p->zd_borrowed = 1;
	p->zout = malloc(BUNDLE__ZOUT);
	if (!p->zout)
		p->state = -ENOMEM;
}

void bundle_parser_release(struct bundle_parser *p)
{
	if (!p)
		return;
	if (!p->zd_borrowed)
		ZSTD_freeDStream(p->zd);
	p->zd = NULL;
	free(p->zout);
	p->zout = NULL;
	buf_release(&p->json);
	frame_parser_release(&p->fp);
}

void bundle_parser_short_frames(struct bundle_parser *p)
{
	p->fp.noid = 1;
}

void bundle_parser_staged_frames(struct bundle_parser *p)
{
	p->fp.staged = 1;
}

/* Decoded bytes data[0..len). */
static int bundle__take(struct bundle_parser *p, const uint8_t *data, size_t len,
			const struct bundle_cb *cb)
{
	if (len > PROTO_BUNDLE_BODY_MAX - p->decoded)
		return -EMSGSIZE;
	p->decoded += len;
	while (len) {
		if (p->state == BUNDLE__LEN) {
			size_t n = 4 - p->lenhave < len ? 4 - p->lenhave : len;
			memcpy(p->lenb + p->lenhave, data, n);
			p->lenhave += n;
			data += n;
			len -= n;
			if (p->lenhave < 4)
				return 0;
			p->json_len = (uint32_t)p->lenb[0] << 24 | (uint32_t)p->lenb[1] << 16 |
				      (uint32_t)p->lenb[2] << 8 | p->lenb[3];
			if (p->json_len == 0)
				return -EBADMSG;
			if (p->json_len > PROTO_BUNDLE_JSON_MAX)
				return -EMSGSIZE;
			p->state = BUNDLE__JSON;
		} else if (p->state == BUNDLE__JSON) {
			size_t want = p->json_len - p->json.len;
			size_t n = want < len ? want : len;
			int r = buf_append(&p->json, data, n);
			if (r < 0)
				return r;
			data += n;
			len -= n;
			if (p->json.len < p->json_len)
				return 0;
			r = cb->json(cb->arg, p->json.data, p->json.len);
			buf_release(&p->json); /* not needed any more */
			if (r < 0)
				return r;
			p->state = BUNDLE__FRAMES;
		} else {
			struct frame f;
			int r = frame_parser_feed(&p->fp, &data, &len, &f);
			if (r < 0)
				return r;
			if (r == 0)
				return 0;
			if ((r = cb->frame(cb->arg, &f)) < 0)
				return r;
		}
	}
	return 0;
}

int bundle_parser_feed(struct bundle_parser *p, const uint8_t *data, size_t len,
		       const struct bundle_cb *cb)
{
	int r;
	if (p->state < 0)
		return p->state;
	if (!p->zd) {
		r = bundle__take(p, data, len, cb);
		goto out;
	}
	ZSTD_inBuffer in = { data, len, 0 };
	r = 0;
	while (r == 0 && in.pos < in.size) {
		if (p->zdone) {
			r = -EBADMSG; /* one frame only: nothing may follow it */
			break;
		}
		ZSTD_outBuffer o = { p->zout, BUNDLE__ZOUT, 0 };
		size_t z = ZSTD_decompressStream(p->zd, &o, &in);
		if (ZSTD_isError(z)) {
			r = ZSTD_getErrorCode(z) == ZSTD_error_memory_allocation ? -ENOMEM : -EBADMSG;
			break;
		}
		if (z == 0)
			p->zdone = 1;
		r = bundle__take(p, p->zout, o.pos, cb);
		/* The window was full: more may be buffered inside zstd. */
		while (r == 0 && o.pos == o.size && !p->zdone) {
			ZSTD_inBuffer none = { NULL, 0, 0 };
			o.pos = 0;
			z = ZSTD_decompressStream(p->zd, &o, &none);
			if (ZSTD_isError(z)) {
				r = -EBADMSG;
				break;
			}
			if (z == 0)
				p->zdone = 1;
			r = bundle__take(p, p->zout, o.pos, cb);
		}
	}
out:
	if (r < 0)
		p->state = r;
	return r;
}

int bundle_parser_finish(const struct bundle_parser *p)
{
	if (p->state < 0)
		return p->state;
	/* A stream's body ends at a flush point, not at the frame's end. */
	if (p->state != BUNDLE__FRAMES || !frame_parser_idle(&p->fp) ||
	    (p->zd && !p->zd_borrowed && !p->zdone))
		return -EBADMSG;
	return 0;
}

/* The body's first field: jlen as u32 BE, if within its cap. */
static int json_len(size_t jlen, uint8_t lenb[4])
{
	if (jlen == 0 || jlen > PROTO_BUNDLE_JSON_MAX)
		return -EMSGSIZE;
	lenb[0] = (uint8_t)(jlen >> 24);
	lenb[1] = (uint8_t)(jlen >> 16);
	lenb[2] = (uint8_t)(jlen >> 8);
	lenb[3] = (uint8_t)jlen;
	return 0;
}

int bundle_encode(const char *json, size_t jlen, const uint8_t *frames, size_t flen, int zstd,
		  struct buf *out, int *compressed)
{
	struct buf plain;
	uint8_t lenb[4];
	int r;

	*compressed = 0;
	buf_reset(out);
	if ((r = json_len(jlen, lenb)) < 0)
		return r;
	if (!zstd) {
		if ((r = buf_append(out, lenb, 4)) < 0 || (r = buf_append(out, json, jlen)) < 0 ||
		    (flen && (r = buf_append(out, frames, flen)) < 0))
			return r;
		return 0;
	}
	buf_init(&plain, out->cap);
	if ((r = buf_append(&plain, lenb, 4)) < 0 || (r = buf_append(&plain, json, jlen)) < 0 ||
	    (flen && (r = buf_append(&plain, frames, flen)) < 0))
		goto out;
	r = compress_chunk((const uint8_t *)plain.data, plain.len, out);
	if (r == 1) {
		*compressed = 1;
		r = 0;
	} else if (r == 0 || r == -EMSGSIZE) {
		/* Does not pay (or the bound does not fit): send it plain. */
		buf_reset(out);
		r = buf_append(out, plain.data, plain.len);
	}
out:
	buf_release(&plain);
	return r;
}

void *bundle_cstream_new(void)
{
	ZSTD_CCtx *cs = ZSTD_createCCtx();
	/* A 1 MiB window: the context recent files give is most of the gain,
	 * and each uploader keeps one (about 2 MiB with the tables). Level
	 * BUNDLE_STREAM_LEVEL's search with level 3's table sizes: on the
	 * source and text of make bench-wire's tree, 6.5 % fewer bytes than
	 * level 3 for 1.8x its CPU, and no more memory. */
	if (cs && (ZSTD_isError(ZSTD_CCtx_setParameter(cs, ZSTD_c_compressionLevel,
						       BUNDLE_STREAM_LEVEL)) ||
		   ZSTD_isError(ZSTD_CCtx_setParameter(cs, ZSTD_c_windowLog, 20)) ||
		   ZSTD_isError(ZSTD_CCtx_setParameter(cs, ZSTD_c_hashLog, 17)) ||
		   ZSTD_isError(ZSTD_CCtx_setParameter(cs, ZSTD_c_chainLog, 16)))) {
		ZSTD_freeCCtx(cs);
		cs = NULL;
	}
	return cs;
}

int bundle_cstream_reset(void *cs)
{
	return ZSTD_isError(ZSTD_CCtx_reset(cs, ZSTD_reset_session_only)) ? -EIO : 0;
}

void bundle_cstream_free(void *cs)
{
	ZSTD_freeCCtx(cs);
}

/* Compress in[0..len) into out as more of the stream cs; end: flush. */
static int stream_put(ZSTD_CCtx *cs, const void *data, size_t len, ZSTD_EndDirective end,
		      struct buf *out)
{
	ZSTD_inBuffer in = { data, len, 0 };
	for (;;) {
		/* Room for what one call may write; the cap bounds the total. */
		int r = buf_reserve(out, ZSTD_CStreamOutSize());
		if (r < 0)
			return r;
		size_t room = out->alloc - out->len - 1;
		size_t cap = (out->cap ? out->cap : SIZE_MAX / 2) - out->len;
		ZSTD_outBuffer o = { out->data + out->len, room < cap ? room : cap, 0 };
		size_t left = ZSTD_compressStream2(cs, &o, &in, end);
		if (ZSTD_isError(left))
			return ZSTD_getErrorCode(left) == ZSTD_error_memory_allocation ? -ENOMEM : -EIO;
		out->len += o.pos;
		out->data[out->len] = '\0';
		if (in.pos == in.size && (end == ZSTD_e_continue || left == 0))
			return 0;
	}
}

int bundle_encode_stream(void *cs, const char *json, size_t jlen, const uint8_t *frames,
			 size_t flen, struct buf *out)
{
	uint8_t lenb[4];
	int r;

	buf_reset(out);
	if ((r = json_len(jlen, lenb)) < 0)
		return r;
	/* The parts go in as they are: no plain copy of the body. */
	if ((r = stream_put(cs, lenb, 4, ZSTD_e_continue, out)) < 0 ||
	    (r = stream_put(cs, json, jlen, ZSTD_e_continue, out)) < 0 ||
	    (r = stream_put(cs, frames, flen, ZSTD_e_flush, out)) < 0)
		return r;
	return 0;
}
