/*
 * store: mirrord's chunk store for chunks in transit: received through
 * POST /v1/chunks and not yet part of a published file.
 *
 * Chunks are appended to pack files, <state>/chunks/pack.N (up to
 * STORE_PACK_MAX bytes each), and found through an in-memory table (id ->
 * pack, offset, length, arrival time). One file per chunk would cost an
 * open, write, rename and unlink per 16 KiB; a pack costs one pwrite.
 *
 * Invariants:
 * - Only verified bytes are put (the caller checked the hash), and every
 *   read verifies again: bytes damaged in a pack are dropped and reported
 *   missing, never used.
 * - An entry becomes visible only after its bytes are written.
 * - A pack is deleted once no entry lives in it (and it is not the one
 *   being filled). Once a file using a chunk is published, the chunk index
 *   (state.h) knows where its bytes live inside DIR and apply.c removes the
 *   store entry, so the store holds only chunks in transit: no second copy
 *   of the data.
 * - The table is not persistent: packs left by an earlier run are removed
 *   at open. Chunks lost that way are missing at commit (409) and re-sent.
 *
 * Thread-safety: all functions may be called from any thread (one mutex
 * protects the table and the pack list; reads and writes of pack bytes run
 * outside it, on packs pinned by a count).
 */
#ifndef MIRRORD_STORE_H
#define MIRRORD_STORE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "hash.h"
#include "tmpdir.h"

#define STORE_PACK_MAX (64u * 1024 * 1024)
/* Stages open at once, and chunks placed in one (48 bytes each in memory;
 * past that, a stage's chunks go to packs). */
#define STORE_STAGES_MAX 16
#define STORE_STAGE_CHUNKS_MAX 131072
#define STORE_STAGE_TOKEN 16

struct store_pack;
struct store_entry;

struct store {
	int fd;             /* owned O_RDONLY|O_DIRECTORY fd of <state>/chunks */
	struct tmpdir *tmp; /* borrowed, outlives the store */
	pthread_mutex_t lock;
	/* under lock: */
	struct store_entry **tab;
	size_t nb, n;
	struct store_pack *packs; /* every open pack */
	struct store_pack *cur;   /* the one being filled, or NULL */
	unsigned next_pack;
};

/* A chunk placed in a stage: its bytes, verified, at off of the stage's
 * file. */
struct store_placed {
	uint64_t off;
	uint32_t len;
	struct hash_id id;
};

/* Open (creating, mode 0700) "chunks" in statefd and remove what an
 * earlier run left there. Returns 0 or a negative errno. */
__attribute__((warn_unused_result))
int store_open(struct store *s, int statefd, struct tmpdir *tmp);

/* Close. Accepts NULL or a store whose open failed (fd -1). */
void store_close(struct store *s);

/* 1 if the store holds id (not verified), 0 if not. Cannot fail. */
int store_has(struct store *s, const struct hash_id *id);

/* Store len bytes whose BLAKE2b-256 the caller verified to be id. Not
 * fsynced: a chunk only matters once a file is built from it, and that file
 * is fsynced; a chunk lost in a crash is re-sent after a 409. Putting a
 * chunk that is there refreshes its time. Returns 0 or a negative errno
 * (-ENOSPC, -EIO, -ENOMEM, ...). */
__attribute__((warn_unused_result))
int store_put(struct store *s, const struct hash_id *id, const void *data, size_t len);

/* Read chunk id into out[0..len) and verify it. Returns 0, -ENOENT (absent,
 * or damaged: then it is dropped), -EBADMSG (the chunk is fine but its
 * length is not len: the caller's length is wrong), or another negative
 * errno. out must hold CHUNK_PROTO_MAX bytes. */
__attribute__((warn_unused_result))
int store_get(struct store *s, const struct hash_id *id, size_t len, uint8_t *out);

/*
 * Stages: the chunks of a new file uploaded at their offsets in it
 * (docs/PROTOCOL.md, X-Mirror-Stage), so that publishing the file writes
 * only what did not come that way, instead of every byte a second time.
 *
 * store_stage_put() stores chunk id (verified by the caller) at offset off
 * of the stage named token: a file of its own in the chunks folder, made
 * at the first put. The chunk is then available as after store_put(). A
 * chunk that starts before the end of the stage's last one (puts go in
 * order), or one that finds no stage (STORE_STAGES_MAX open, or
 * STORE_STAGE_CHUNKS_MAX placed), goes to a pack as with store_put(): it
 * is then not placed. Returns 0 or a negative errno (-EINVAL for a bad
 * length or offset, -ENOSPC, -EIO, -ENOMEM, ...).
 *
 * store_stage_take() hands the stage token over to be published: its
 * file is renamed to name in dirfd (same filesystem), *fd gets it open
 * for reading and writing (caller closes), *placed a new array of the
 * chunks placed in it, sorted by offset (caller frees; NULL when none),
 * and *n their number. The store never writes, punches or unlinks that
 * file again; its chunks stay readable through store_get() (verified, as
 * always) until removed. Returns 0, -ENOENT (no such stage: never made,
 * taken already, or collected) or a negative errno (the stage is then
 * kept).
 *
 * A stage nobody takes is deleted by store_gc() once its last put is
 * max_age old.
 */
__attribute__((warn_unused_result))
int store_stage_put(struct store *s, const uint8_t token[STORE_STAGE_TOKEN], uint64_t off,
		    const struct hash_id *id, const void *data, size_t len);
__attribute__((warn_unused_result))
int store_stage_take(struct store *s, const uint8_t token[STORE_STAGE_TOKEN], int dirfd,
		     const char *name, int *fd, struct store_placed **placed, size_t *n);

/* Drop chunk id. Returns 0 (also if absent). */
int store_remove(struct store *s, const struct hash_id *id);

/* Drop chunks that arrived more than max_age seconds ago (uploads never
 * committed). Returns the number dropped. */
int store_gc(struct store *s, time_t max_age);

/* The disk is full: delete the stages nobody took and nobody put into for
 * idle seconds (uploads a client gave up on: a file that changed while it
 * was read leaves its stage, which store_gc() would keep for a day; a few
 * of them filled a small disk for good, t_enospc/poll). A stage still in
 * use that is dropped costs its client a 409 and a resend. Returns the
 * number of chunks dropped. */
int store_reclaim(struct store *s, time_t idle);

/* For tests: where id's bytes are (pack or stage file name relative to
 * the chunks folder, and offset), and moving its arrival time (and its
 * stage's last put). 0 or -ENOENT. */
int store_locate(struct store *s, const struct hash_id *id, char *name, size_t len, off_t *off);
int store_set_time(struct store *s, const struct hash_id *id, time_t at);

#endif
