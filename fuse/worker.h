/*
 * worker: one uploader thread's tools for talking to mirrord: its own HTTP
 * connection and scratch buffers, and the helpers that turn BACKING state
 * into protocol ops (worker_send_op) and sync one path (worker_sync_path).
 *
 * The outcome of talking to the server is always one of enum send_result;
 * send_classify() is the one mapping from HTTP status to it.
 * A worker is used by one thread only.
 */
#ifndef MIRRORFS_WORKER_H
#define MIRRORFS_WORKER_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <sys/stat.h>

#include "buf.h"
#include "http.h"
#include "mirror.h"
#include "ofile.h"
#include "proto.h"

enum send_result {
	SEND_OK = 0,
	SEND_RETRY,    /* transport failure, 5xx, 507: try again later */
	SEND_NOTFOUND, /* 404: fall back to a full sync */
	SEND_MISSING,  /* 409: chunks missing (reply holds the list) */
	SEND_REJECTED, /* other 4xx: the server refuses for good */
	SEND_CHANGED,  /* the file changed while being read: sync it again */
	SEND_LOCAL,    /* a local error (out of memory, I/O on BACKING) */
	SEND_BATCHED,  /* only with w->batching: held in the batch (batch.h) */
	SEND_ALONE,    /* batch_add only: send this file alone (transfer_file) */
};

struct batch;
struct record;

struct worker {
	struct mirror *m; /* borrowed */
	struct record *rec; /* owned, may be NULL: what was sent (record.h) */
	struct http http;
	struct buf resp;  /* last response body */
	char why[512];    /* what went wrong, for SEND_* != SEND_OK */
	/* Wait before retry number attempt; returns 1 if the client is
	 * stopping (then the caller gives up with SEND_RETRY). Set by the
	 * uploader; NULL means never retry. */
	int (*nap)(void *arg, unsigned attempt);
	void *nap_arg;
	uint64_t since;   /* seq of the queue entry being processed: changes
			   * found while processing it are queued with it
			   * (queue_sync_since) so that sync waits for them */
	int batching;     /* set by the caller: small files may be batched */
	void *batch_user; /* set by the caller: stored with a batched file */
	struct batch *batch; /* owned, made at first use (batch.h) */
};

int worker_init(struct worker *w, struct mirror *m);
void worker_release(struct worker *w);

enum send_result send_classify(long status);

/* One request, retried (with w->nap's backoff) for as long as the server
 * cannot be reached or answers 5xx/408/429, so that one lost request never
 * restarts a whole multi-request operation. Returns SEND_OK with *status
 * set once the server gave a definitive answer (2xx or 4xx; the body is in
 * w->resp), or SEND_RETRY if the client is stopping meanwhile. */
enum send_result worker_request(struct worker *w, const char *method, const char *target,
				const void *body, size_t len, uint64_t seq, long *status);

/* The same with a Content-Encoding (NULL: none) for the body and one more
 * header line (NULL: none). */
enum send_result worker_request_enc(struct worker *w, const char *method, const char *target,
				    const void *body, size_t len, const char *encoding,
				    const char *header, long *status);

/* Ask the server what it supports (waiting for it if it is down). Sets
 * m->server_delta. SEND_OK, or SEND_RETRY if stopping meanwhile. */
enum send_result worker_probe(struct worker *w);

/* Note that the server could not be reached (why: w->why). */
void worker_offline(struct worker *w);

/* POST op; seq is its queue sequence number (0: none). On SEND_MISSING,
 * *reply (if not NULL) receives the parsed answer (caller deletes it). */
enum send_result worker_send_op(struct worker *w, const struct proto_op *op, uint64_t seq,
				cJSON **reply);

/* Make the server's path match BACKING's path now. flags: QF_* of the
 * queue entry (QF_META: content known unchanged). st: BACKING's lstat of
 * path if the caller has it (NULL: look it up). */
enum send_result worker_sync_path(struct worker *w, const char *path, unsigned flags,
				  const struct stat *st, uint64_t seq);

/* Upload the regular file path (open as fd, fstat'ed as st): chunks the
 * server lacks, then the commit. dr[0..ndr) are the ranges written since
 * the last upload (sorted, disjoint; ndr < 0: unknown, read everything).
 * Defined in transfer.c. */
enum send_result transfer_file(struct worker *w, const char *path, int fd,
			       const struct stat *st, uint64_t seq, const struct drange *dr,
			       int ndr);

/* 1 if a and b (fstat before and after reading) are the same version of
 * a file: size, mtime, ctime and inode. Defined in transfer.c. */
int transfer_same_version(const struct stat *a, const struct stat *b);

/* Make the server's subtree at path equal to BACKING's (both sides listed,
 * only differences sent). Defined in reconcile.c. */
enum send_result reconcile_tree(struct worker *w, const char *path);

/* op was applied by the server: statistics, and a look at its folders'
 * mtimes again when other workers are busy in them. */
void worker_applied(struct worker *w, const struct proto_op *op);

/* The regular file path (lstat st) was sent: queue its other names when
 * it has several (unless flags has QF_NOLINK). */
void worker_sync_links(struct worker *w, const char *path, const struct stat *st, unsigned flags);

/* Ask which of ids[0..n) the server lacks; *missing gets a new array of n
 * flags (caller frees) on SEND_OK. */
enum send_result worker_query(struct worker *w, const struct hash_id *const *ids, size_t n,
			      uint8_t **missing);

/* Ask for the signatures (rsig.h) of nr ranges [off[i], off[i] + len[i])
 * of the server's file path, in blocks of block bytes (POST /v1/sig). On
 * SEND_OK, sigs[i] is a new buffer (caller frees; NULL if none) of cnt[i]
 * entries, at most len[i] / block; a file the server does not have gives
 * none. SEND_LOCAL when the request is refused or the answer is not
 * well-formed (the caller does without). */
enum send_result worker_signatures(struct worker *w, const char *path, uint32_t block,
				   const uint64_t *off, const uint64_t *len, size_t nr,
				   uint8_t **sigs, size_t *cnt);

/* Fill op->pmtime (and has_pmtime) from BACKING's parent of path. */
void worker_fill_pmtime(struct worker *w, const char *path, struct timespec *ts, int *has);

#endif
