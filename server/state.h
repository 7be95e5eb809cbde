/*
 * state: mirrord's SQLite database, <state>/state.db (WAL, synchronous=FULL).
 *
 * Three tables:
 * - chunkloc(id, path, off, len): where the bytes of a chunk live inside
 *   DIR, filled when a file is published (so the store copy can go and
 *   mirrord keeps no second copy of the data). An entry is a hint, never
 *   trusted: readers verify the bytes by hash and drop a stale entry, then
 *   try the next. One entry per file that holds the chunk (its first
 *   offset there), so that a chunk stays known while any file has it. (An
 *   older database's chunks table, one entry per chunk, is moved over at
 *   open.) Paths are stored as BLOBs (they are bytes, not
 *   necessarily UTF-8), which makes comparisons and substr() bytewise.
 * - lists(path, digest, list): the chunk list of each file published at
 *   path (so that a client can commit a delta against it, or a copy of it);
 *   kept in step with chunks: renamed, forgotten and replaced together.
 * - clients(id, seq): per client, the highest X-Mirror-Seq of an applied
 *   rename (replay detection: a rename must not be applied twice).
 *
 * The index and the lists are hints (synchronous=NORMAL: a crash may lose
 * the last commits, which only costs a 409 and a re-upload); the replay
 * record is made durable before state_seq_set returns (a full WAL
 * checkpoint).
 *
 * Deferred index writes: state_index_files() keeps a published file's
 * entries and list in memory (up to 256 files and 16,384 chunks), and they
 * go to the database together, in one transaction: when that is full,
 * when the oldest waited STATE_PEND_MS (checked by every index write and
 * by state_tick()), at state_close(), and before anything else that
 * touches the index or the lists (forget, rename, drop, list lookups),
 * which therefore always see them. A file with more chunks, and a new
 * version of a path the database indexes (its old entries must go now),
 * are written at once, after what waits. Lookups by id (state_index_get/lens/has) answer
 * from memory first. Written one transaction per file, the random ids
 * dirtied most of the index's pages each time: the first upload of 1 GiB
 * (2,908 files) took about 120,000 pwrite calls for the index (its WAL
 * and checkpoints; 29,000 now), and skipping the index entirely
 * saved a quarter of mirrord's CPU. A crash loses at most what waited,
 * hints like the commits synchronous=NORMAL may lose.
 * Thread-safety: one connection guarded by an internal mutex; all
 * functions may be called from any thread. Lock order: apply's ns_lock
 * before this one.
 */
#ifndef MIRRORD_STATE_H
#define MIRRORD_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "hash.h"
#include "proto.h"

struct state;

/* Open or create the database at path (mode 0600). Returns 0 and *out
 * (caller closes with state_close) or a negative errno. */
__attribute__((warn_unused_result))
int state_open(const char *path, struct state **out);

/* Write what waits, then close the database. Accepts NULL. */
void state_close(struct state *st);

/* How long index writes may wait in memory (see above). */
#define STATE_PEND_MS 1000

/* Write what waits if the oldest of it waited STATE_PEND_MS. For a timer
 * (mirrord's main thread, every second), so that an idle server does not
 * keep them in memory. */
void state_tick(struct state *st);

/* Look up a place where chunk id lives. Returns 1 and fills *path (caller frees
 * with free()), *off, *len; 0 if unknown; or a negative errno. */
__attribute__((warn_unused_result))
int state_index_get(struct state *st, const struct hash_id *id, char **path, uint64_t *off,
		    uint32_t *len);

/* For each of the n ids, lens[i] = the length its entry gives, or 0 if it
 * has none (one read transaction for all). Returns 0, or the first
 * negative errno (those ids read as unknown). */
int state_index_lens(struct state *st, const struct hash_id *ids, size_t n, uint32_t *lens);

/* 1 if id has an entry, 0 if not (errors read as 0). */
int state_index_has(struct state *st, const struct hash_id *id);

/* Drop the entry of id if it still says (path, off). Returns 0 or a
 * negative errno. */
int state_index_drop(struct state *st, const struct hash_id *id, const char *path, uint64_t off);

/* A file was published at path with these chunks: forget every entry at or
 * beneath path, then record each chunk's offset in it. One transaction.
 * Returns 0 or a negative errno. */
__attribute__((warn_unused_result))
int state_index_file(struct state *st, const char *path, const struct proto_chunk *chunks,
		     size_t n);

/* state_index_file() for nfiles files (path[k] with the n[k] chunks
 * chunks[k]) in one transaction: a bundle's files cost one commit. On
 * failure none of them is indexed. Returns 0 or a negative errno. */
__attribute__((warn_unused_result))
int state_index_files(struct state *st, size_t nfiles, const char *const *path,
		      const struct proto_chunk *const *chunks, const size_t *n);

/* The chunk list recorded for the file at path. Returns 1 and fills
 * *digest, *list (caller frees) and *n; 0 if none; or a negative errno. */
__attribute__((warn_unused_result))
int state_list_get(struct state *st, const char *path, struct hash_id *digest,
		   struct proto_chunk **list, size_t *n);

/* Forget every entry at or beneath path (it was deleted or replaced).
 * Returns 0 or a negative errno. */
int state_index_forget(struct state *st, const char *path);

/* state_index_forget() of path[0..n) in one transaction (on failure, of
 * none). Returns 0 or a negative errno. */
int state_index_forget_many(struct state *st, size_t n, const char *const *path);

/* from was renamed to to (exchange: and to to from). Entries at or beneath
 * them follow; entries at or beneath a replaced to are forgotten. Returns 0
 * or a negative errno. */
__attribute__((warn_unused_result))
int state_index_rename(struct state *st, const char *from, const char *to, int exchange);

/* The highest rename seq recorded for client (32 hex). Returns 1 and *seq,
 * 0 if none, or a negative errno. */
__attribute__((warn_unused_result))
int state_seq_get(struct state *st, const char *client, uint64_t *seq);

/* Record seq for client (kept if higher than what is there). Durable on
 * return. Returns 0 or a negative errno. */
__attribute__((warn_unused_result))
int state_seq_set(struct state *st, const char *client, uint64_t seq);

#endif
