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

/* Probing a run of chunks for compressibility (fuse/transfer.c, batch.c):
 * after COMPRESS_FLAT_RUN chunks in a row that did not compress, only
 * every COMPRESS_PROBE-th is tried, until one compresses again: media and
 * random data cost no zstd time, text still gets compressed. */
#define COMPRESS_FLAT_RUN 8
#define COMPRESS_PROBE 16

/* Compress in[0..len) at COMPRESS_LEVEL into out (its previous contents are
 * dropped; may reallocate). Returns 1 if the result saves at least
 * len / COMPRESS_MIN_SAVING bytes (out
 * holds exactly the compressed frame), 0 if compression does not pay (out
 * holds nothing useful), -ENOMEM, -EMSGSIZE (out's cap too small for
 * ZSTD_compressBound(len)) or -EIO (any other zstd failure). */
__attribute__((warn_unused_result))
int compress_chunk(const uint8_t *in, size_t len, struct buf *out);

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

#endif
