/*
 * qstore: the durable copy of the change queue, in SQLite (WAL) in the
 * client's state folder (queue.db).
 *
 * A background thread takes the queue's journal (queue.h) and writes it in
 * one transaction per batch: group commit, so the FUSE request path never
 * waits for a disk flush, and a burst of changes costs one fsync. With
 * synchronous=FULL each committed batch survives a power loss; everything
 * the application was told succeeded is in BACKING, and what a crash takes
 * from the last uncommitted batch (a few milliseconds) is found again by
 * the reconciliation that runs at every mount.
 *
 * At mount, qstore_load() puts the entries of the previous session back into
 * the queue, with their sequence numbers (mirrord recognises a replayed
 * rename by them), before anything else is queued. New sequence numbers
 * continue above every one handed out before (the highest is kept in the
 * database's meta table), so that mirrord never mistakes a new rename for
 * a replay after a restart.
 *
 * Thread-safety: qstore_load runs before the thread starts; afterwards only
 * the thread touches the database.
 */
#ifndef MIRRORFS_QSTORE_H
#define MIRRORFS_QSTORE_H

struct queue;
struct qstore;

/* Open (create) dir/queue.db. Returns 0 and *out (free with qstore_close)
 * or a negative errno, with a message in why. */
int qstore_open(const char *dir, struct qstore **out, char *why, unsigned whylen);

/* Restore saved entries into q (which must be empty) and turn its journal
 * on. Returns the number of entries restored or a negative errno. */
int qstore_load(struct qstore *s, struct queue *q);

/* Start the writer thread. 0 or -errno. */
int qstore_start(struct qstore *s);

/* Write what is left of the journal, stop the thread, close. Call after
 * queue_stop() and after the uploader stopped. Accepts NULL. */
void qstore_close(struct qstore *s);

#endif
