/*
 * poll_scan: the polling front end's change capture. Where the FUSE front
 * end sees every operation, this one looks at BACKING every interval and
 * compares what it finds with a snapshot of what it saw (and queued) before.
 * Below the queue nothing differs: the uploader does not know who produced
 * an entry.
 *
 * The snapshot is a tree of nodes (name, dev, ino, type, mode, size, mtime,
 * ctime), indexed by (parent, name) and by (dev, ino). A scan walks BACKING
 * with openat/fdopendir/fstatat(AT_SYMLINK_NOFOLLOW), one open folder per
 * level, never following a symlink, one lstat per entry and no file reads,
 * and finds:
 *  - new and changed entries: queue_sync(path, QF_CONTENT or QF_META);
 *  - vanished entries: queue_sync(path, ... | QF_GONE) (the uploader deletes);
 *  - renames, by inode: a folder, or a file with one link, that vanished at
 *    one path and appears at another (same dev, ino and type) is
 *    queue_rename(old, new, 0); a folder's subtree moves with it.
 *
 * Invariants:
 *  - The snapshot is what the queue has been told: after each scan it
 *    equals BACKING as seen by that scan, except that a regular file that
 *    changed is "dirty" until it stayed unchanged between two looks at
 *    least stable_ms apart; only then is it queued, so a file is not sent
 *    half-written (the transfer also re-checks size/mtime/ctime around the
 *    read). A file that keeps changing is sent every maxwait_ms anyway.
 *  - Within one scan, renames are queued first, in an order in which no
 *    rename overwrites something a later one still has to move (chains
 *    a->b, b->c come out as b->c, a->b); a rename that cannot be ordered
 *    safely (a cycle such as an exchange, a target still occupied) becomes
 *    a full sync of the new name (QF_TREE for a folder) instead. Syncs come
 *    next, deletions last. Every path is the one valid on the server at the
 *    point of the queue where it lands.
 *  - A folder that cannot be read (permissions, a race) keeps its snapshot:
 *    nothing below it is reported deleted.
 *  - Changes are found up to one interval late, so the uploader may look
 *    for a path after it was renamed in BACKING, before the scan that finds
 *    the rename. The front end sets m->keep_missing: such a sync deletes
 *    nothing on the server (only QF_GONE syncs delete) and notes a miss
 *    (queue.h); the next scan syncs the path again under its new name,
 *    after queueing the rename that carries the server's copy there.
 *  - Any failure inside a scan (out of memory) drops the snapshot: the next
 *    scan builds a new one and queues a full reconciliation after it.
 *
 * Memory: about 200 bytes per entry (100,000 entries: about 20 MiB).
 *
 * Thread-safety: the snapshot belongs to the thread that scans (the one
 * running poll_scan_once(), or the thread of poll_scan_start()); never two
 * at once. poll_scan_request(), poll_scan_stop() and poll_scan_get_stats()
 * may be called from any thread (they take s->lock, a leaf lock apart from
 * the queue and links locks taken by the scan itself, never while holding
 * s->lock).
 */
#ifndef MIRRORFS_POLL_SCAN_H
#define MIRRORFS_POLL_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "mirror.h"

struct poll_scan_cfg {
	int interval_ms; /* time between the starts of two scans */
	int stable_ms;   /* a changed file is queued once unchanged this long */
	int maxwait_ms;  /* ... or after this long if it keeps changing */
	int racy_ms;     /* a chmod seen this soon after its ctime waits too */
};

/* Defaults for an interval: stable_ms = min(interval, 1000), maxwait 5 s,
 * racy 50 ms. Cannot fail. */
void poll_scan_cfg_default(struct poll_scan_cfg *cfg, int interval_ms);

struct poll_scan_stats {
	uint64_t scans;      /* finished scans, baseline included */
	size_t entries;      /* in the snapshot (BACKING's root not counted) */
	size_t dirty;        /* files waiting to settle */
	double last_ms;      /* duration of the last scan */
	uint64_t queued;     /* syncs and renames queued so far */
	uint64_t renames;    /* of which renames found by inode */
};

struct poll_scan;

/* A scanner of m's BACKING (m->backing_fd) feeding m->q and m->links (all
 * borrowed; m must outlive it). The snapshot is empty: the first
 * poll_scan_once() only builds it. Returns NULL on ENOMEM. */
struct poll_scan *poll_scan_new(struct mirror *m, const struct poll_scan_cfg *cfg);

/* Stops the thread if running, answers pending requests, frees everything.
 * Accepts NULL. */
void poll_scan_free(struct poll_scan *s);

/* Scan once, now, in the calling thread (the thread must not be running).
 * The first call builds the snapshot and queues nothing. final: the client
 * is stopping, queue dirty files without waiting for them to settle.
 * Returns 0, or -ENOMEM (logged; the snapshot is rebuilt next time). */
int poll_scan_once(struct poll_scan *s, int final);

/* Start the scanning thread (one scan every interval, and one at once for
 * each request). Returns 0 or -errno. */
__attribute__((warn_unused_result))
int poll_scan_start(struct poll_scan *s);

/* Stop the thread (waits for a running scan to end). Pending requests are
 * answered "error: stopping". Safe to call twice or without start. */
void poll_scan_stop(struct poll_scan *s);

/* A control client asks for a scan: once a scan that started after this
 * call has ended and every change it found is queued (dirty files
 * included: it may take stable_ms more, maxwait_ms at most), "ok\n" is
 * written to fd. Takes ownership of fd (closed after the answer; on
 * failure at once). */
void poll_scan_request(struct poll_scan *s, int fd);

void poll_scan_get_stats(struct poll_scan *s, struct poll_scan_stats *st);

#endif
