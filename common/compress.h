/*
 * compress: zstd compression of single chunks for the upload framing
 * (docs/PROTOCOL.md, POST /v1/chunks, bit 31 of wire_len).
 *
 * A chunk is sent compressed only when that makes it smaller. Decompression
 * is bounded by the raw length the frame header announced, so a hostile
 * payload can never make it write more than raw_len bytes.
 *
 * Thread-safe: each thread compresses with a zstd context of its own, kept
 * for its lifetime (freed when it exits); decompression uses libzstd's
 * simple API.
 */
#ifndef MIRROR_COMPRESS_H
#define MIRROR_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define COMPRESS_LEVEL 3

/* Compressed only if that saves at least 1/COMPRESS_MIN_SAVING of the
 * bytes. Data that zstd shrinks by a few percent (media, encrypted or
 * near-random data, fio's scrambled buffers) is the data it is slowest on:
 * a new 1 GiB file written by fio (default buffers) through the mount
 * shrank by 11 % in the worker's stream at 95 MB/s, and the mirror
 * completed 19-30 s after fio, 8-9 s without (README). Text shrinks by
 * half or more. */
#define COMPRESS_MIN_SAVING 8


/* Compress in[0..len) at COMPRESS_LEVEL into out (its previous contents are
 * dropped; may reallocate). Returns 1 if the result saves at least
 * len / COMPRESS_MIN_SAVING bytes (out
 * holds exactly the compressed frame), 0 if compression does not pay (out
 * holds nothing useful), -ENOMEM, -EMSGSIZE (out's cap too small for
 * ZSTD_compressBound(len)) or -EIO (any other zstd failure). */
__attribute__((warn_unused_result))
int compress_chunk(const uint8_t *in, size_t len, struct buf *out);

/* As compress_chunk(), at zstd level `level` (COMPRESS_LEVEL,
 * COMPRESS_FAST_LEVEL). */
__attribute__((warn_unused_result))
int compress_chunk_at(const uint8_t *in, size_t len, int level, struct buf *out);

/* Decompress the single zstd frame in[0..len) into out[0..raw_len). Returns 0
 * only if in is exactly one frame that declares and yields raw_len bytes;
 * otherwise -EBADMSG (out's contents are then unspecified). Never writes more
 * than raw_len bytes to out. */
__attribute__((warn_unused_result))
int decompress_chunk(const uint8_t *in, size_t len, uint8_t *out, size_t raw_len);

/* A request body sent with Content-Encoding: zstd: exactly one zstd frame
 * (its size declared or not), decoded into out (its previous contents
 * dropped). out's cap must be over cap. Returns 0, -EMSGSIZE when the
 * decoded size passes cap (decoding stops there), -EBADMSG for anything
 * but one complete frame, or -ENOMEM. */
__attribute__((warn_unused_result))
int decompress_body(const uint8_t *in, size_t len, size_t cap, struct buf *out);


/*
 * Weakly compressible data. Some data shrinks by 1/8 to 1/5 and hardly
 * more whatever the level or context: fio's buffers with --randrepeat=0
 * (9-13 % per 16 KiB chunk: level 1 compresses such chunks at 230 MB/s,
 * the worker's level-5 stream at about 95 MB/s), some media and packed
 * formats. Text and code shrink by half or more, base64 by a quarter
 * alone and much more with context (tests/integration/t_dedup.sh), where
 * level 5 and the stream are worth their time. So each chunk is probed at
 * COMPRESS_FAST_LEVEL (level 1: it entropy-codes literals, which negative
 * levels skip, so base64 still counts), which is also how a weak chunk is
 * sent: its probe's output, in its frame. A body with a chunk that saves
 * 1/COMPRESS_STRONG_SAVING alone goes in the stream at BUNDLE_STREAM_LEVEL
 * (bundle.h); other bodies go plain, their weak chunks compressed alone.
 * A new 1 GiB file written through the mount by fio --randrepeat=0 (make
 * bench's seqwrite), when every body went in the stream: the mirror
 * completed 16-18 s after fio, mirrorfs spent 13-14 CPU-s; with weak
 * chunks alone, 12-13 s and 8 CPU-s. (A draw of fio's seed whose chunks
 * all fell under 1/8 at level 3 went plain before: 6-8 s; now its weak
 * chunks are compressed: 12 s, 9-10 % fewer bytes. README.)
 */
#define COMPRESS_FAST_LEVEL 1
#define COMPRESS_STRONG_SAVING 5

enum compress_class { COMPRESS_FLAT = 0, COMPRESS_WEAK = 1, COMPRESS_STRONG = 2 };

/* Probe in[0..len) at COMPRESS_FAST_LEVEL into out (as compress_chunk():
 * it holds the frame unless COMPRESS_FLAT is returned). Returns a
 * compress_class, or -ENOMEM, -EMSGSIZE, -EIO as compress_chunk(). */
__attribute__((warn_unused_result))
int compress_probe(const uint8_t *in, size_t len, struct buf *out);

/* Probing a run of chunks (fuse/transfer.c, batch.c): after COMPRESS_RUN
 * chunks in a row probed flat (or strong), only every COMPRESS_PROBE-th
 * is probed and the others are taken to be of that class, until a probe
 * differs: media and random data cost almost no zstd time, text still
 * gets compressed. Weak chunks are all probed (the probe is their
 * compression). Not thread-safe: one per uploader. */
#define COMPRESS_RUN 8
#define COMPRESS_PROBE 16

struct compress_prober {
	struct buf out; /* owned: the last probe's frame */
	int cls;        /* the class of the current run */
	unsigned run;   /* chunks in a row probed to cls */
	uint64_t n;     /* chunks looked at in the run */
};

void compress_prober_init(struct compress_prober *p);
void compress_prober_release(struct compress_prober *p);

/* The class of the next chunk, in[0..len): probed, or the run's. A probe
 * that fails counts as COMPRESS_FLAT. *z (borrowed from p, valid until
 * the next call): the chunk compressed at COMPRESS_FAST_LEVEL when it was
 * probed and saves 1/COMPRESS_MIN_SAVING (always for COMPRESS_WEAK), else
 * NULL. */
enum compress_class compress_prober_next(struct compress_prober *p, const uint8_t *in,
					 size_t len, const struct buf **z);

#endif
