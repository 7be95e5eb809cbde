/*
 * record: what the client last sent for each regular file (record.db in
 * the state folder): BACKING's inode, size, mtime and ctime at the moment
 * the file was read for a successful upload.
 *
 * Reconciliation trusts "same size and mtime on both sides" only when the
 * record shows that the file has not been touched since it was sent (same
 * inode and ctime): a change that keeps size and mtime (a rewrite within
 * one timestamp tick, `touch -r`, a crash between a write and its queue
 * entry) is then still found, by hashing the file (the chunks the server
 * already holds are not sent again).
 *
 * It also keeps the chunk list sent for each file and the ids of chunks
 * the server was given: the next upload of the file asks the server only
 * about chunks it was never given, and commits a delta against the list
 * (or against another file with the same list: a copy).
 *
 * The record is a hint, written without fsync: losing it costs hashing
 * and bytes, never correctness (mirrord checks every chunk and list digest
 * and answers 409 when a hint was wrong). Used by the uploader thread only (one connection).
 */
#ifndef MIRRORFS_RECORD_H
#define MIRRORFS_RECORD_H

#include <stddef.h>
#include <sys/stat.h>

#include "proto.h"

struct record;

/* The ids of chunks given to the server that wait in memory to be
 * written (up to 8,192), shared by the records of one client (one per
 * uploader and helper), so that what one gave, the others know at once.
 * Inserted with each file's record, the random ids dirtied a page of the
 * table each: the first upload of 1 GiB made mirrorfs write about 100,000
 * times. A crash loses what waits: a hint, which costs a query. */
struct record_known;
/* A new, empty set, or NULL (ENOMEM). */
struct record_known *record_known_new(void);
/* Free k, once every record that used it is closed. Accepts NULL. */
void record_known_free(struct record_known *k);
/* r notes the ids it gives in k (borrowed, must outlive r) instead of
 * inserting them at once; record_known() looks there first; the one that
 * fills k, and record_close(), write what waits. */
void record_share_known(struct record *r, struct record_known *k);

/* Open (create) dir/synced.db. Returns 0 and *out (close with
 * record_close) or a negative errno. */
int record_open(const char *dir, struct record **out);
void record_close(struct record *r);

/* The writes between record_begin() and record_end() go in one
 * transaction (a bundle's files: one commit instead of one each). Not
 * nested. Errors are ignored (hint). */
void record_begin(struct record *r);
void record_end(struct record *r);

/* path was sent as it was when st was taken, as the n chunks c. Errors are
 * ignored (hint). */
void record_put(struct record *r, const char *path, const struct stat *st,
		const struct proto_chunk *c, size_t n);

/* All records at or beneath path, read in one pass into memory (what
 * reconciliation checks for every file: one sequential read instead of a
 * lookup per file). Returns a snapshot (free with record_snap_free) or
 * NULL (then callers fall back to record_unchanged). */
struct record_snap;
struct record_snap *record_snapshot(struct record *r, const char *path);
int record_snap_unchanged(const struct record_snap *s, const char *path, const struct stat *st);
void record_snap_free(struct record_snap *s);

/* The chunk list last sent for path: a new array (caller frees) and *n, or
 * NULL if unknown. */
struct proto_chunk *record_list(struct record *r, const char *path, size_t *n);

/* The same, only if the record is of inode ino (the list describes this
 * file, not an earlier one at that name). */
struct proto_chunk *record_list_ino(struct record *r, const char *path, ino_t ino, size_t *n);

/* A path whose recorded list has this digest (a new string, caller frees),
 * or NULL. */
char *record_find_digest(struct record *r, const struct hash_id *digest);

/* 1 if the server was given chunk id (by us, at some point). */
int record_known(struct record *r, const struct hash_id *id);

/* The record_known() calls between record_read_begin() and
 * record_read_end() share one read transaction (a savepoint, so it may
 * sit inside record_begin/end): each lookup alone takes and drops
 * SQLite's WAL read lock, a few fcntl calls, which cost more than the
 * lookup (first upload of 1 GiB: 65,536 lookups). Write nothing in
 * between. Errors are ignored (hint). */
void record_read_begin(struct record *r);
void record_read_end(struct record *r);

/* Forget path and everything beneath it. */
void record_forget(struct record *r, const char *path);

/* The server renamed from to to (replacing what to was): the records of
 * from and beneath it move there, those of to are forgotten. The moved
 * file's ctime changed, so record_unchanged() fails for it until it is
 * sent again; its list still serves as a delta base, as mirrord moved its
 * own. Not for exchanges (forget both names). */
void record_rename(struct record *r, const char *from, const char *to);

/* A file's sketch: the least chunk id of its list (NULL for no chunks).
 * Two lists that share most chunks most likely have the same least one. */
const struct hash_id *record_sketch(const struct proto_chunk *c, size_t n);

/* A path other than path whose recorded list has the sketch of c[0..n):
 * a file that probably shares most of its chunks (an editor's save, a
 * new version next to the old). A new string (caller frees) or NULL. */
char *record_find_similar(struct record *r, const struct proto_chunk *c, size_t n,
			  const char *path);

/* 1 if path's record matches st (inode, size, mtime, ctime), else 0. */
int record_unchanged(struct record *r, const char *path, const struct stat *st);

#endif
