/*
 * batch: small files sent together, in one POST /v1/bundle (docs/PROTOCOL.md).
 *
 * Sent one by one, a 4 KiB file costs two requests (its chunks, then its
 * commit), their headers and answers, two round trips, and a compression
 * context of its own. A batch carries up to BATCH_FILES files: their
 * commits and the chunks the server lacks go in one request whose body is
 * one zstd stream, so a source file is compressed next to its siblings.
 *
 * Use: a caller (the uploader, the reconciliation) sets w->batching while
 * it syncs paths; worker_sync_path() then hands a small regular file to
 * batch_add(), which reads, chunks and hashes it, checks that it did not
 * change while read, and answers SEND_BATCHED; a folder's or a symlink's
 * op, or a delete, goes to batch_add_op() (each would otherwise be a request of its
 * own: a cp -r makes one for every folder, and a folder's mtime is sent
 * again after changes inside it). The caller keeps what it
 * needs to finish that path (w->batch_user is stored with it) and calls
 * batch_flush() once batch_full() says so or it has nothing else ready.
 * The flush reports every file: SEND_OK when the server applied it (the
 * record, statistics and hard links are then updated as for a file sent
 * alone), or anything else when the caller must send that path again on
 * its own (a file that lost a chunk, a refused op: the path alone finds
 * the right answer, with all its fallbacks). Nothing is lost either way.
 *
 * A batch belongs to one worker, used by one thread.
 */
#ifndef MIRRORFS_BATCH_H
#define MIRRORFS_BATCH_H

#include <stdint.h>
#include <sys/stat.h>

#include "ofile.h"
#include "worker.h"

#define BATCH_FILES 128
#define BATCH_BYTES (1u * 1024 * 1024) /* of new chunk data */
#define BATCH_FILE_MAX (256u * 1024)   /* larger files go alone */

/* 1 if the regular file st may go in a batch of w now. */
int batch_wants(const struct worker *w, const struct stat *st);

/* Read the file (fd, open on path, fstat'ed as st) into w's batch.
 * flags, seq: of the queue entry; dr[0..ndr): its written ranges, given
 * back to the open-file table if the batch fails; started: when the sync
 * began (queue_now()). Returns SEND_BATCHED, SEND_CHANGED (changed while
 * read), SEND_ALONE (an edit of a file mirrord has, with new chunks that
 * moves may save: transfer.c finds them, which a bundle cannot) or
 * SEND_LOCAL (w->why says why). */
enum send_result batch_add(struct worker *w, const char *path, int fd, const struct stat *st,
			   unsigned flags, uint64_t seq, const struct drange *dr, int ndr,
			   int64_t started);

/* Put op (a folder's, a symlink's, a delete: no chunks) in w's batch; op is
 * copied. Only when w->batching and the server takes bundles. Returns
 * SEND_BATCHED or SEND_LOCAL. */
enum send_result batch_add_op(struct worker *w, const struct proto_op *op, uint64_t seq);

/* 1 if w's batch should be flushed before anything is added. */
int batch_full(const struct worker *w);

/* 1 if w's batch holds files. */
int batch_pending(const struct worker *w);

/* Send w's batch and empty it, calling done(arg, user, r) for every file
 * (user: w->batch_user when it was added). Returns SEND_OK, or SEND_RETRY
 * when the client stops meanwhile (then every file was reported with
 * SEND_RETRY and is the caller's to keep). */
enum send_result batch_flush(struct worker *w,
			     void (*done)(void *arg, void *user, enum send_result r), void *arg);

/* POST chunk frames (frames: a body as for /v1/chunks, uncompressed) as
 * the next body of w's compression stream, in a bundle without ops: the
 * chunks of a large compressible file are then compressed with what went
 * before as context, as small files are (compressed one by one, 16 KiB
 * chunks of text lose a third of what the stream saves). Only when mirrord
 * says "bare". stage: NULL, or the 32 hex digits of the stage the
 * frames (staged frames, frame.h) go to. *status: the HTTP status;
 * *wire: the body's size. */
enum send_result batch_post_chunks(struct worker *w, const struct buf *frames,
				   const char *stage, long *status,
				   uint64_t *wire);

/* Free w's batch (reporting nothing). Accepts a worker without one. */
void batch_free(struct worker *w);

#endif
