/*
 * chunker: content-defined chunking (FastCDC-style Gear rolling hash with
 * normalized chunking).
 *
 * Boundaries depend only on the bytes near them, so inserting or removing
 * bytes moves boundaries only locally. Every chunk is between CHUNK_MIN and
 * CHUNK_MAX bytes, except the last chunk of a stream which may be shorter.
 * The same input always gives the same chunks, however it is fed.
 *
 * Usage: chunker_init(); then repeatedly chunker_next() on a window of bytes;
 * it returns the length of the next chunk once a boundary is found in the
 * window, or 0 when it needs more bytes (the caller keeps the unconsumed
 * bytes and appends more); at end of stream pass eof=1 to get the rest.
 * The chunker does not copy or own data. One chunker per stream; not
 * thread-safe, but separate chunkers are independent.
 */
#ifndef MIRROR_CHUNKER_H
#define MIRROR_CHUNKER_H

#include <stddef.h>
#include <stdint.h>

/* Sizes chosen by measurement: see docs/CHUNKING.md. */
#define CHUNK_MIN (4 * 1024)
#define CHUNK_AVG (16 * 1024)
#define CHUNK_MAX (64 * 1024)
/* Hard protocol cap on any chunk (frames and ops); CHUNK_MAX <= CHUNK_PROTO_MAX. */
#define CHUNK_PROTO_MAX (1024 * 1024)

struct chunker {
	uint64_t mask_s; /* stricter mask, before the average size */
	uint64_t mask_l; /* looser mask, after it */
	size_t min, avg, max;
};

/* Default sizes (CHUNK_MIN/AVG/MAX). Cannot fail. */
void chunker_init(struct chunker *c);

/* Custom sizes, for measurement; avg must be a power of two, min < avg < max
 * <= CHUNK_PROTO_MAX. Returns 0 or -EINVAL. */
__attribute__((warn_unused_result))
int chunker_init_sizes(struct chunker *c, size_t min, size_t avg, size_t max);

/* Find the next boundary in data[0..len). Returns the chunk length (> 0,
 * <= len), or 0 if more data is needed (only when !eof and len < max). With
 * eof set and len > 0 it always returns > 0. Cannot fail. */
size_t chunker_next(const struct chunker *c, const uint8_t *data, size_t len, int eof);

#endif
