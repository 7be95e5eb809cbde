/*
 * record: what the client last sent for each regular file (synced.db in
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
 * The record is a hint, written without fsync: losing it costs hashing,
 * never correctness. Used by the uploader thread only (one connection).
 */
#ifndef MIRRORFS_RECORD_H
#define MIRRORFS_RECORD_H

#include <sys/stat.h>

struct record;

/* Open (create) dir/synced.db. Returns 0 and *out (close with
 * record_close) or a negative errno. */
int record_open(const char *dir, struct record **out);
void record_close(struct record *r);

/* path was sent as it was when st was taken. Errors are ignored (hint). */
void record_put(struct record *r, const char *path, const struct stat *st);

/* Forget path and everything beneath it. */
void record_forget(struct record *r, const char *path);

/* 1 if path's record matches st (inode, size, mtime, ctime), else 0. */
int record_unchanged(struct record *r, const char *path, const struct stat *st);

#endif
