/*
 * queue: the ordered stream of changes waiting for the server.
 *
 * Both front ends (FUSE today, the polling scanner later) produce entries;
 * the uploader consumes them. An entry does not carry data: it says "make
 * the server's PATH match what BACKING holds at PATH now" (Q_SYNC), or "rename
 * on the server" (Q_RENAME). Because a sync reads BACKING when it is
 * processed, entries for one path coalesce, and replaying one is harmless.
 *
 * Ordering rules (the reasons are in docs/ARCHITECTURE.md):
 *  - A Q_RENAME is a barrier: entries queued after it are applied after it;
 *    no later change coalesces into a sync queued before it.
 *  - When PATH is renamed, pending syncs under the old name are moved behind
 *    the rename, under the new name (data follows the name). Syncs in flight
 *    under the old name get a fresh sync under the new name.
 *  - A sync may be deferred (not_before) while its file is being written;
 *    deferred syncs do not hold back later entries: a state-based sync
 *    commutes with every entry but a rename of its own path, which moves it.
 *
 * Progress: every entry has a sequence number. queue_done_below() is the
 * largest N such that every entry with seq <= N is finished, which is what
 * `mirrorfs sync` waits for.
 *
 * Thread-safety: all functions lock q->lock internally; safe from any thread.
 * Lock order: queue lock is a leaf (no other lock is taken while holding it).
 */
#ifndef MIRRORFS_QUEUE_H
#define MIRRORFS_QUEUE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

enum qkind { Q_SYNC = 1, Q_RENAME };

/* Flags of a Q_SYNC: what changed. Only QF_META means the content is known
 * unchanged (chmod, utimens); QF_TREE asks for a full comparison of the
 * subtree with the server (mount-time reconciliation, rename fallback). */
#define QF_CONTENT 1u
#define QF_META 2u
#define QF_TREE 4u
#define QF_NOLINK 8u /* internal: do not re-sync the other names of a hard link */
#define QF_GONE 16u  /* the front end saw path vanish: delete it on the server,
		      * whatever BACKING holds there by then (something put
		      * there since is new to the front end, which reports it
		      * later). Only used with mirror.keep_missing (the polling
		      * front end), where a sync that finds nothing deletes
		      * nothing and notes a miss instead (queue_note).
		      * When syncs coalesce, the newer one decides this flag,
		      * unless it is a worker's follow-up (QF_FOLLOW). */
#define QF_FOLLOW 32u /* internal, set by queue_sync_since() with since != 0:
		       * every sync folded into the entry was a worker's
		       * follow-up (a folder's mtime after a change in it, a
		       * hard link's other names), not something the front end
		       * saw. Such a sync does not cancel a pending QF_GONE:
		       * the front end saw the path vanish, and a folder's
		       * mtime to send after its last file was deleted does
		       * not say it is back (t_concurrency, polling client:
		       * the folder stayed on the server). */

struct qentry {
	uint64_t seq;
	uint64_t since;       /* oldest seq whose change this entry carries:
			       * moved or merged entries get a new seq but keep
			       * it, so progress never passes an unsent change */
	enum qkind kind;
	unsigned flags;       /* Q_SYNC */
	unsigned rflags;      /* Q_RENAME: 0, or RENAME_NOREPLACE/EXCHANGE values */
	char *path;           /* owned */
	char *path2;          /* owned; rename target */
	int64_t not_before;   /* monotonic ns; 0 = now */
	unsigned attempts;    /* failed tries so far */
	int fallback;         /* Q_RENAME: the server lacked the source; only the
			       * fallback (full sync of both names) is left */
	int inflight;
	struct qentry *prev, *next; /* pending list or in-flight list */
	struct qentry *hnext;       /* coalescing hash chain (pending syncs) */
};

struct queue_stats {
	uint64_t last_seq;    /* highest seq handed out */
	uint64_t done_below;  /* every seq <= this is finished */
	size_t pending;       /* entries waiting or in flight */
	size_t deferred;      /* of which deferred */
	size_t notes;         /* misses and uploads noted, not yet taken */
};

struct queue;

/* Returns a new empty queue (caller frees with queue_free) or NULL (ENOMEM). */
struct queue *queue_new(void);
/* Frees every entry. Accepts NULL. No thread may use q any more. */
void queue_free(struct queue *q);

/* Queue a sync of path (copied) with flags. Returns 0 or -ENOMEM. */
int queue_sync(struct queue *q, const char *path, unsigned flags);

/* The same, for a change found while processing the entry with sequence
 * number since (a hard link's other name, a file that changed during a
 * reconciliation): progress will not pass since until it is done. A
 * nonzero since marks the sync as a worker's follow-up (QF_FOLLOW). */
int queue_sync_since(struct queue *q, const char *path, unsigned flags, uint64_t since);

/* The same, for a change of a file still open for writing: a new entry
 * waits up to defer_ms, or until queue_undefer() (at its close) releases
 * it, instead of being taken between the writes only to be put back. An
 * entry already pending keeps its time. Returns 0 or -ENOMEM. */
int queue_sync_open(struct queue *q, const char *path, unsigned flags, int defer_ms);

/* Queue a rename (paths copied), rflags as renameat2. Returns 0 or -ENOMEM. */
int queue_rename(struct queue *q, const char *from, const char *to, unsigned rflags);

/*
 * A front end that captures a rename after making it in BACKING calls
 * queue_rename_begin() before renameat2() and queue_rename_end() after
 * queue_rename() (or after a failed renameat2()). In between, a worker can
 * find BACKING renamed while the queue is not: a sync of a path under the
 * old name then finds nothing there and deletes it on the server, and once
 * the rename is applied there the moved folder lacks that path, which no
 * entry syncs under its new name. So syncs finished between the two calls
 * are remembered, and queue_rename() syncs their new names again, as it does
 * for syncs still in flight. Calls nest (renames in several threads).
 * Cannot fail.
 */
void queue_rename_begin(struct queue *q);
void queue_rename_end(struct queue *q);

/* Wait for the next entry to process and mark it in flight. Blocks up to
 * wait_ms (-1: until stopped). Returns the entry (still owned by the queue
 * until queue_done/queue_retry) or NULL on timeout or once queue_stop()
 * was called. */
struct qentry *queue_take(struct queue *q, int wait_ms);

/* For a taker holding a batch of small files: wait wait_ms whatever is
 * queued meanwhile (single new entries wake other takers, not this one),
 * then take an entry that may start, if any (as queue_take(q, 0)). A
 * batch then gathers what arrived during the wait with one wake-up,
 * instead of one per entry. Ends early at queue_stop(). */
struct qentry *queue_linger(struct queue *q, int wait_ms);

/* Entry e (from queue_take) is finished: frees it. */
void queue_done(struct queue *q, struct qentry *e);

/* Put e back at its place in the pending order (it keeps its seq), to be
 * taken again no sooner than delay_ms from now. */
void queue_retry(struct queue *q, struct qentry *e, int delay_ms);

/* The pending sync of path (if any) need not wait any longer: its file was
 * closed. Wakes one queue_take() waiter if that made an entry ready. */
void queue_undefer(struct queue *q, const char *path);

/* Make queue_take() return NULL from now on. */
void queue_stop(struct queue *q);

void queue_get_stats(struct queue *q, struct queue_stats *st);

/* The paths of up to max pending syncs (for status: pending bytes). Returns
 * a NULL-terminated array of new strings (caller frees each and the array)
 * or NULL if there are none or on ENOMEM. */
char **queue_pending_paths(struct queue *q, size_t max);

/*
 * Journal, for durable storage (qstore.c): once enabled, every change to
 * the set of entries (J_PUT: an entry was added or its flags changed; J_DEL:
 * it is finished or merged away) is recorded, in order, for one consumer
 * that writes them out in batches (group commit).
 */
enum jop { J_PUT = 1, J_DEL };

struct qjournal {
	enum jop op;
	uint64_t seq;
	uint64_t since;       /* oldest seq whose change this entry carries:
			       * moved or merged entries get a new seq but keep
			       * it, so progress never passes an unsent change */
	enum qkind kind;
	unsigned flags, rflags;
	char *path, *path2; /* owned; NULL for J_DEL */
	struct qjournal *next;
};

void queue_enable_journal(struct queue *q);

/* Take every journal record so far, oldest first (caller frees with
 * queue_journal_free). Waits up to wait_ms for one; NULL on timeout. */
struct qjournal *queue_journal_take(struct queue *q, int wait_ms);
void queue_journal_free(struct qjournal *j);

/* Put back an entry read from durable storage, before any other use of q.
 * Entries must come in increasing seq order. Returns 0 or -ENOMEM. */
int queue_restore(struct queue *q, uint64_t seq, enum qkind kind, unsigned flags,
		  unsigned rflags, const char *path, const char *path2);

/*
 * Notes, for a front end that finds changes late (the polling scanner,
 * mirror.keep_missing). Thread-safe; at most QUEUE_NOTES_MAX of each kind
 * are kept.
 *
 * Misses: a sync without QF_GONE that finds nothing at its path does not
 * delete it on the server (the path may be inside a folder renamed since, a
 * rename the scanner has not seen yet: deleting would empty the folder the
 * rename then carries) but notes the path. The front end takes the notes
 * and syncs again what it finds under the new names.
 *
 * Uploads: a comparison of a subtree (QF_TREE, a rename's fallback) sends
 * what BACKING holds at the time, which may be something the front end
 * never sees (a temporary file renamed away between two scans). Each path
 * it sends is noted; the front end deletes on the server what it does not
 * know. A noted path follows the renames queued before or after the note
 * (it is the server's path once they are applied).
 */
#define QUEUE_NOTES_MAX 100000

enum qnote { QN_MISS, QN_UPLOAD, QN_KINDS };

/* Note path (copied) under kind. Returns 0, or -ENOMEM (or -ENOSPC when
 * full: the note is dropped). */
int queue_note(struct queue *q, enum qnote kind, const char *path);

/* The paths noted so far under kind, oldest first: a NULL-terminated array
 * of new strings (caller frees each and the array), or NULL when there are
 * none (or on ENOMEM, when the notes are kept for the next call). */
char **queue_take_notes(struct queue *q, enum qnote kind);

/* Hand out sequence numbers from next on, at least (call before anything
 * is queued). They must keep growing across sessions of one client:
 * mirrord takes a rename whose seq is not above the last one it applied
 * from the client for a replay, and skips it. Cannot fail. */
void queue_seq_floor(struct queue *q, uint64_t next);

/* Monotonic clock in ns. */
int64_t queue_now(void);

#endif
