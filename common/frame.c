#define _GNU_SOURCE
#include "frame.h"

#include <errno.h>
#include <string.h>

#include "chunker.h"

/* Parser states (struct frame_parser.state). */
enum {
	FRAME__HEADER = 0, /* collecting hdr[0..hdr_have) */
	FRAME__PAYLOAD,    /* collecting cur.wire_len bytes into payload */
};
/* A negative state is the sticky error of a failed feed: the rest of the
 * body cannot be framed any more. */

#define FRAME__WIRE_MAX ((uint32_t)CHUNK_PROTO_MAX + FRAME_SLACK)
_Static_assert(FRAME__WIRE_MAX < FRAME_ZSTD, "wire length must fit in 31 bits");
_Static_assert(FRAME_HEADER_LEN == HASH_LEN + 8, "header layout");

static void frame__put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t frame__get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void frame_encode_header(uint8_t out[FRAME_HEADER_LEN], const struct hash_id *id,
			 uint32_t raw_len, uint32_t wire_len, int zstd)
{
	memcpy(out, id->b, HASH_LEN);
	frame__put_be32(out + HASH_LEN, raw_len);
	frame__put_be32(out + HASH_LEN + 4, (wire_len & ~FRAME_ZSTD) | (zstd ? FRAME_ZSTD : 0));
}

void frame_encode_short_header(uint8_t out[FRAME_SHORT_HEADER_LEN], uint32_t raw_len,
			       uint32_t wire_len, int zstd)
{
	frame__put_be32(out, raw_len);
	frame__put_be32(out + 4, (wire_len & ~FRAME_ZSTD) | (zstd ? FRAME_ZSTD : 0));
}

void frame_encode_offset(uint8_t out[FRAME_OFFSET_LEN], uint64_t off)
{
	frame__put_be32(out, (uint32_t)(off >> 32));
	frame__put_be32(out + 4, (uint32_t)off);
}

void frame_parser_init(struct frame_parser *p)
{
	memset(p, 0, sizeof(*p));
	buf_init(&p->payload, FRAME__WIRE_MAX);
	p->state = FRAME__HEADER;
}

void frame_parser_release(struct frame_parser *p)
{
	if (!p)
		return;
	buf_release(&p->payload);
	p->hdr_have = 0;
	p->state = FRAME__HEADER;
}

/* Decode and check the complete header in p->hdr into p->cur. */
static int frame__take_header(struct frame_parser *p)
{
	const uint8_t *lens = p->hdr + (p->noid ? 0 : HASH_LEN);
	uint32_t raw = frame__get_be32(lens);
	uint32_t wire = frame__get_be32(lens + 4);
	int zstd = (wire & FRAME_ZSTD) != 0;

	wire &= ~FRAME_ZSTD;
	if (raw == 0 || raw > CHUNK_PROTO_MAX || wire > FRAME__WIRE_MAX || (!zstd && wire != raw))
		return -EBADMSG;
	p->cur.staged = p->staged;
	p->cur.off = 0;
	if (p->staged) {
		const uint8_t *o = lens + 8;
		uint64_t off = (uint64_t)frame__get_be32(o) << 32 | frame__get_be32(o + 4);
		if (off >= FRAME_OFFSET_MAX - raw)
			return -EBADMSG;
		p->cur.off = off;
	}
	if (p->noid)
		memset(p->cur.id.b, 0, HASH_LEN);
	else
		memcpy(p->cur.id.b, p->hdr, HASH_LEN);
	p->cur.noid = p->noid;
	p->cur.raw_len = raw;
	p->cur.wire_len = wire;
	p->cur.zstd = zstd;
	p->cur.payload = NULL;
	buf_reset(&p->payload);
	/* One allocation per body at most: the buffer keeps its size. */
	return buf_reserve(&p->payload, wire);
}

/* Hand out p->cur and go back to waiting for a header. */
static int frame__emit(struct frame_parser *p, struct frame *out)
{
	/* A zstd frame may claim wire_len 0 (decompression rejects it later):
	 * the payload pointer is still never NULL. */
	p->cur.payload = p->payload.data ? (const uint8_t *)p->payload.data
					 : (const uint8_t *)"";
	*out = p->cur;
	p->state = FRAME__HEADER;
	p->hdr_have = 0;
	return 1;
}

int frame_parser_feed(struct frame_parser *p, const uint8_t **data, size_t *len,
		      struct frame *out)
{
	int r;

	for (;;) {
		switch (p->state) {
		case FRAME__HEADER: {
			if (*len == 0)
				return 0;
			size_t want = (p->noid ? FRAME_SHORT_HEADER_LEN : FRAME_HEADER_LEN) +
				      (p->staged ? FRAME_OFFSET_LEN : 0);
			size_t n = want - p->hdr_have;
			if (n > *len)
				n = *len;
			memcpy(p->hdr + p->hdr_have, *data, n);
			p->hdr_have += n;
			*data += n;
			*len -= n;
			if (p->hdr_have < want)
				return 0;
			if ((r = frame__take_header(p)) < 0) {
				p->state = r;
				return r;
			}
			p->state = FRAME__PAYLOAD;
			break;
		}
		case FRAME__PAYLOAD: {
			size_t n = p->cur.wire_len - p->payload.len;
			if (n > *len)
				n = *len;
			/* Cannot fail: frame__take_header reserved wire_len bytes. */
			if (n && (r = buf_append(&p->payload, *data, n)) < 0) {
				p->state = r;
				return r;
			}
			*data += n;
			*len -= n;
			if (p->payload.len == p->cur.wire_len)
				return frame__emit(p, out);
			return 0;
		}
		default:
			return p->state < 0 ? p->state : -EBADMSG;
		}
	}
}

int frame_parser_idle(const struct frame_parser *p)
{
	return p->state == FRAME__HEADER && p->hdr_have == 0;
}
