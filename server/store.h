/*
 * store: mirrord's chunk store, one file per chunk received through
 * POST /v1/chunks and not yet part of a published file:
 * <state>/chunks/<first 2 hex>/<64 hex>.
 *
 * Invariants:
 * - Only verified bytes are put (the caller checked the hash), and every
 *   read verifies again: a chunk file damaged by a crash (store files are
 *   not fsynced, see store_put) or by anyone else is dropped and reported
 *   missing, never used.
 * - A chunk file appears under its final name only complete (temp + rename).
 * - Once a file using a chunk is published, the chunk index (state.h) knows
 *   where its bytes live inside DIR and apply.c removes the store copy, so
 *   the store holds only chunks in transit.
 *
 * Thread-safety: all functions may be called from any thread; concurrent
 * puts of one id are harmless (the last rename wins, both are identical).
 */
#ifndef MIRRORD_STORE_H
#define MIRRORD_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "hash.h"
#include "tmpdir.h"

struct store {
	int fd;             /* owned O_RDONLY|O_DIRECTORY fd of <state>/chunks */
	struct tmpdir *tmp; /* borrowed, outlives the store */
};

/* Open (creating, mode 0700) "chunks" in statefd. Returns 0 or a negative
 * errno. */
__attribute__((warn_unused_result))
int store_open(struct store *s, int statefd, struct tmpdir *tmp);

/* Close. Accepts NULL or a store whose open failed (fd -1). */
void store_close(struct store *s);

/* 1 if a chunk file for id exists (not verified), 0 if not. Cannot fail:
 * an error reads as "not there". */
int store_has(struct store *s, const struct hash_id *id);

/* Store len bytes whose BLAKE2b-256 the caller verified to be id. Not
 * fsynced: a chunk only matters once a file is built from it, and that file
 * is fsynced; a chunk lost in a crash is re-sent after a 409. Returns 0 or a
 * negative errno (-ENOSPC, -EIO, ...). */
__attribute__((warn_unused_result))
int store_put(struct store *s, const struct hash_id *id, const void *data, size_t len);

/* Read chunk id into out[0..len) and verify it. Returns 0, -ENOENT (absent,
 * or damaged: then it is deleted), -EBADMSG (the chunk is fine but its
 * length is not len: the caller's length is wrong), or another negative
 * errno. out must hold CHUNK_PROTO_MAX bytes. */
__attribute__((warn_unused_result))
int store_get(struct store *s, const struct hash_id *id, size_t len, uint8_t *out);

/* Delete the chunk file of id. Returns 0 (also if absent) or a negative
 * errno. */
int store_remove(struct store *s, const struct hash_id *id);

/* Remove chunk files not modified for max_age seconds (stale uploads).
 * Returns the number removed or a negative errno. */
int store_gc(struct store *s, time_t max_age);

#endif
