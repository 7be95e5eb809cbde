#define _GNU_SOURCE
#include "compress.h"

#include <errno.h>
#include <zstd.h>
#include <zstd_errors.h>

int compress_chunk(const uint8_t *in, size_t len, struct buf *out)
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
	size_t n = ZSTD_compress(out->data, bound, in, len, COMPRESS_LEVEL);
	if (ZSTD_isError(n)) {
		if (ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation)
			return -ENOMEM;
		return -EIO;
	}
	if (n >= len)
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
