#define _GNU_SOURCE
#include "compress.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <zstd.h>
#include <zstd_errors.h>

/* One compression context per thread, made at its first use and freed at
 * its exit: a context costs about a megabyte to set up, more than a small
 * chunk takes to compress. Its window is capped at 256 KiB: a chunk is
 * smaller, and a large JSON body (a file's chunk list) repeats itself at
 * short range; uncapped, one such body grew the context to 3 MiB, kept by
 * every uploader thread. */
#define CCTX_WINDOW_LOG 18
static pthread_key_t cctx_key;
static pthread_once_t cctx_once = PTHREAD_ONCE_INIT;
static int cctx_key_ok;

static void cctx_free(void *c)
{
	ZSTD_freeCCtx(c);
}

static void cctx_key_make(void)
{
	cctx_key_ok = pthread_key_create(&cctx_key, cctx_free) == 0;
}

/* This thread's context, or NULL (ENOMEM). */
static ZSTD_CCtx *thread_cctx(void)
{
	pthread_once(&cctx_once, cctx_key_make);
	if (!cctx_key_ok)
		return NULL;
	ZSTD_CCtx *c = pthread_getspecific(cctx_key);
	if (c)
		return c;
	c = ZSTD_createCCtx();
	if (c && (ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, CCTX_WINDOW_LOG)) ||
		  pthread_setspecific(cctx_key, c) != 0)) {
		ZSTD_freeCCtx(c);
		c = NULL;
	}
	return c;
}

int compress_chunk(const uint8_t *in, size_t len, struct buf *out)
{
	return compress_chunk_at(in, len, COMPRESS_LEVEL, out);
}

int compress_probe(const uint8_t *in, size_t len, struct buf *out)
{
	int r = compress_chunk_at(in, len, COMPRESS_FAST_LEVEL, out);
	if (r <= 0)
		return r;
	return out->len <= len - len / COMPRESS_STRONG_SAVING ? COMPRESS_STRONG
								 : COMPRESS_WEAK;
}

void compress_prober_init(struct compress_prober *p)
{
	memset(p, 0, sizeof(*p));
	buf_init(&p->out, 0);
}

void compress_prober_release(struct compress_prober *p)
{
	buf_release(&p->out);
}

enum compress_class compress_prober_next(struct compress_prober *p, const uint8_t *in,
					 size_t len, const struct buf **z)
{
	*z = NULL;
	/* A weak chunk is sent as its probe's output: always probed. */
	if (p->run >= COMPRESS_RUN && p->cls != COMPRESS_WEAK && p->n++ % COMPRESS_PROBE != 0)
		return (enum compress_class)p->cls;
	int c = compress_probe(in, len, &p->out);
	if (c < 0)
		c = COMPRESS_FLAT;
	if (c != COMPRESS_FLAT)
		*z = &p->out;
	if (c == p->cls) {
		p->run++;
	} else {
		p->cls = c;
		p->run = 1;
		p->n = 0;
	}
	return (enum compress_class)c;
}

int compress_chunk_at(const uint8_t *in, size_t len, int level, struct buf *out)
{
	size_t bound = ZSTD_compressBound(len);
	int r;

	if (ZSTD_isError(bound))
		return -EMSGSIZE;
	buf_reset(out);
	/* The full bound, not len - 1: zstd is faster when it cannot run out
	 * of room, and a chunk is at most CHUNK_PROTO_MAX anyway. */
	if ((r = buf_reserve(out, bound)) < 0)
		return r;
	ZSTD_CCtx *c = thread_cctx();
	if (!c)
		return -ENOMEM;
	/* The level sticks to the context: set it every time (cheap). */
	if (ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level)))
		return -EIO;
	size_t n = ZSTD_compress2(c, out->data, bound, in, len);
	if (ZSTD_isError(n)) {
		if (ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation)
			return -ENOMEM;
		return -EIO;
	}
	if (n > len - len / COMPRESS_MIN_SAVING)
		return 0;
	out->len = n;
	out->data[n] = '\0'; /* buf's invariant; reserve left room for it */
	return 1;
}

int decompress_chunk(const uint8_t *in, size_t len, uint8_t *out, size_t raw_len)
{
	/*
	 * Check the declared size before decoding and the frame's extent: a
	 * frame without a content size, a size other than raw_len, or trailing
	 * bytes (a second frame, a skippable frame) are all refused. The
	 * destination capacity raw_len bounds the writes in any case.
	 */
	unsigned long long declared = ZSTD_getFrameContentSize(in, len);
	if (declared == ZSTD_CONTENTSIZE_UNKNOWN || declared == ZSTD_CONTENTSIZE_ERROR ||
	    declared != (unsigned long long)raw_len)
		return -EBADMSG;
	size_t flen = ZSTD_findFrameCompressedSize(in, len);
	if (ZSTD_isError(flen) || flen != len)
		return -EBADMSG;
	size_t n = ZSTD_decompress(out, raw_len, in, len);
	if (ZSTD_isError(n) || n != raw_len)
		return -EBADMSG;
	return 0;
}

int decompress_body(const uint8_t *in, size_t len, size_t cap, struct buf *out)
{
	ZSTD_DCtx *d = ZSTD_createDCtx();
	ZSTD_inBuffer src = { in, len, 0 };
	int r = -EBADMSG;
	if (!d)
		return -ENOMEM;
	buf_reset(out);
	/* A window over 8 MiB is refused: no body needs more. */
	if (ZSTD_isError(ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, 23)))
		goto out;
	for (;;) {
		size_t room = 64 * 1024;
		if (out->len + room > cap)
			room = cap - out->len + 1; /* one byte past the cap tells */
		int e = buf_reserve(out, room);
		if (e < 0) {
			r = e == -EMSGSIZE ? -EMSGSIZE : -ENOMEM;
			goto out;
		}
		ZSTD_outBuffer dst = { out->data + out->len, room, 0 };
		size_t left = ZSTD_decompressStream(d, &dst, &src);
		if (ZSTD_isError(left))
			goto out;
		out->len += dst.pos;
		if (out->len > cap) {
			r = -EMSGSIZE;
			goto out;
		}
		if (left == 0) /* the frame is complete: nothing may follow */
			break;
		if (src.pos == src.size && dst.pos < room)
			goto out; /* cut short */
	}
	if (src.pos != src.size)
		goto out;
	out->data[out->len] = '\0';
	r = 0;
out:
	ZSTD_freeDCtx(d);
	if (r < 0)
		buf_reset(out);
	return r;
}
