/*
 * ofile: what the client knows about files that are open through the mount,
 * keyed by BACKING inode, so that change capture costs a few memory
 * operations per write and pending data follows the file across renames.
 *
 * A record exists while at least one handle is open. It holds the file's
 * current mirror path (kept up to date by renames and unlinks through the
 * mount; NULL once every known name is gone), how many handles may write,
 * when the last write happened, and whether a sync of the file is already
 * queued ("queued": set by the first write after the uploader picked the
 * file up, cleared by the uploader before it reads the file, so a write that
 * races with an upload always queues a new sync).
 *
 * Thread-safety: the table has one mutex (ofiles.lock) protecting the hash
 * chains, refs, writers and path; queued and last_write are atomics read
 * and written without it on the write path. Lock order: ofiles.lock, then
 * the queue lock (queue_sync is called with ofiles.lock held).
 */
#ifndef MIRRORFS_OFILE_H
#define MIRRORFS_OFILE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct queue;

struct ofile {
	dev_t dev;
	ino_t ino;
	unsigned refs;       /* open handles; under lock */
	unsigned writers;    /* handles open for writing; under lock */
	char *path;          /* owned; current mirror path or NULL; under lock */
	atomic_int queued;
	atomic_llong last_write;  /* queue_now() of the last write */
	atomic_llong dirty_since; /* first write not yet uploaded; 0 if none */
	struct ofile *next;  /* hash chain; under lock */
};

#define OFILE_HASH 1024
#define OFILE_RANGES 16

/* The byte ranges of a file written since its last upload began, so that
 * the upload re-reads and re-hashes only around them (transfer.c). Kept
 * by inode, also after the file is closed, until the uploader takes them.
 * No entry means "unknown": the whole file is read. */
struct drange {
	uint64_t start, end; /* [start, end) */
};

struct dirty {
	dev_t dev;
	ino_t ino;
	int whole;  /* changed in ways not tracked by range */
	int n;
	struct drange r[OFILE_RANGES];
	struct dirty *next;
};

struct ofiles {
	pthread_mutex_t lock;
	struct ofile *hash[OFILE_HASH];
	struct dirty *dirty[OFILE_HASH]; /* under lock */
	struct queue *q; /* borrowed */
};

void ofiles_init(struct ofiles *t, struct queue *q);
/* Frees every record. Accepts NULL. */
void ofiles_release(struct ofiles *t);

/* A handle on (dev, ino) was opened under path. Returns the record
 * (reference held by the handle) or NULL on ENOMEM. */
struct ofile *ofiles_open(struct ofiles *t, dev_t dev, ino_t ino, const char *path, int writer);

/* The handle is closed: drop its reference. */
void ofiles_close(struct ofiles *t, struct ofile *of, int writer);

/* How long a file open for writing must be quiet before it is sent. */
#define OFILES_QUIET_MS 1000

/* The file was written: queue a content sync unless one is already queued;
 * while the file is open for writing, the sync waits for its close or
 * OFILES_QUIET_MS (queue_sync_open). The fast path is two atomic
 * operations. */
void ofiles_written(struct ofiles *t, struct ofile *of);

/* Bytes [off, off + len) of (dev, ino) changed; len 0 means "in a way
 * not described by a range" (truncate, O_TRUNC): the whole file is read at
 * the next upload. A mutex and a few comparisons. */
void ofiles_dirty(struct ofiles *t, dev_t dev, ino_t ino, uint64_t off, uint64_t len);

/* For the uploader: take the ranges of (dev, ino) (up to OFILE_RANGES,
 * sorted, disjoint). Returns their number, or -1 if unknown or whole. */
int ofiles_take_dirty(struct ofiles *t, dev_t dev, ino_t ino, struct drange *out);

/* Put ranges back after a failed upload (n = -1: the whole file). */
void ofiles_return_dirty(struct ofiles *t, dev_t dev, ino_t ino, const struct drange *r, int n);

/* Update paths after a rename (exchange: both ways) or an unlink of path. */
void ofiles_renamed(struct ofiles *t, const char *from, const char *to, int exchange);
void ofiles_unlinked(struct ofiles *t, const char *path);

/* Files open for writing: up to cap of their (dev, ino), into devs and
 * inos (caller's arrays). Returns how many there are (may exceed cap). */
size_t ofiles_writing(struct ofiles *t, dev_t *devs, ino_t *inos, size_t cap);

/* For the uploader, before reading (dev, ino): clear "queued" and report
 * whether it has writers and when it was last written (0 if not open).
 * Returns 1 if the file is open for writing. */
int ofiles_begin_upload(struct ofiles *t, dev_t dev, ino_t ino, int64_t *last_write,
			int64_t *dirty_since);

/* The uploader published (dev, ino) as read at time 'started': clears
 * dirty_since unless it was written after that. */
void ofiles_uploaded(struct ofiles *t, dev_t dev, ino_t ino, int64_t started);

/* The uploader read (dev, ino) while it was being written and gave up (it
 * changed under the read): its next attempt before the writes pause waits a
 * full maxwait again, counted from now, instead of re-reading a file that
 * keeps changing over and over. */
void ofiles_postpone(struct ofiles *t, dev_t dev, ino_t ino, int64_t now);

#endif
