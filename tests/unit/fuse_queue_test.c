/*
 * Unit tests for fuse/queue: the ordering rules of the change queue (FIFO,
 * coalescing, rename barriers, data following renames, in-flight rules,
 * deferral) and its progress counters.
 *
 * Waits are bounded: "nothing may be taken" is queue_take with a short
 * wait_ms expecting NULL, and "comes back later" is a poll of
 * queue_take(q, 50) under an overall deadline. No bare sleeps.
 */
#define _GNU_SOURCE
#include <CUnit/CUnit.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../fuse/qstore.h"
#include "../../fuse/queue.h"

#define MS 1000000LL
#define SHORT_WAIT_MS 20
#define DEADLINE_MS 5000
/* A deferral long enough that the steps a test takes meanwhile (queue calls
 * only) cannot outlast it, even in a slow sanitizer build. */
#define DEFER_MS 500

static struct queue *new_queue(void)
{
	struct queue *q = queue_new();
	CU_ASSERT_PTR_NOT_NULL_FATAL(q);
	return q;
}

/* Take the next entry, which must be a sync of path with exactly flags. */
static struct qentry *take_sync(struct queue *q, const char *path, unsigned flags)
{
	struct qentry *e = queue_take(q, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_EQUAL(e->kind, Q_SYNC);
	CU_ASSERT_STRING_EQUAL(e->path, path);
	CU_ASSERT_EQUAL(e->flags, flags);
	CU_ASSERT(e->inflight);
	return e;
}

/* Take the next entry, which must be the rename from -> to (rflags). */
static struct qentry *take_rename(struct queue *q, const char *from, const char *to,
				  unsigned rflags)
{
	struct qentry *e = queue_take(q, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_EQUAL(e->kind, Q_RENAME);
	CU_ASSERT_STRING_EQUAL(e->path, from);
	CU_ASSERT_PTR_NOT_NULL_FATAL(e->path2);
	CU_ASSERT_STRING_EQUAL(e->path2, to);
	CU_ASSERT_EQUAL(e->rflags, rflags);
	return e;
}

/* Nothing may be taken right now (checked over a short wait). */
static void expect_nothing(struct queue *q)
{
	struct qentry *e = queue_take(q, SHORT_WAIT_MS);
	CU_ASSERT_PTR_NULL(e);
	if (e) /* keep the queue consistent for the asserts that follow */
		queue_done(q, e);
}

/* Poll until an entry can be taken; NULL if none within DEADLINE_MS. */
static struct qentry *take_within_deadline(struct queue *q)
{
	int64_t deadline = queue_now() + DEADLINE_MS * MS;
	while (queue_now() < deadline) {
		struct qentry *e = queue_take(q, 50);
		if (e)
			return e;
	}
	return NULL;
}

static struct queue_stats stats(struct queue *q)
{
	struct queue_stats st;
	queue_get_stats(q, &st);
	return st;
}

static void test_fifo(void)
{
	struct queue *q = new_queue();
	struct queue_stats st = stats(q);
	CU_ASSERT_EQUAL(st.last_seq, 0);
	CU_ASSERT_EQUAL(st.done_below, 0);
	CU_ASSERT_EQUAL(st.pending, 0);
	CU_ASSERT_PTR_NULL(queue_take(q, 0));

	CU_ASSERT_EQUAL(queue_sync(q, "a", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "b/c", QF_META), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "c", QF_TREE), 0);
	st = stats(q);
	CU_ASSERT_EQUAL(st.last_seq, 3);
	CU_ASSERT_EQUAL(st.pending, 3);
	CU_ASSERT_EQUAL(st.deferred, 0);

	struct qentry *e = take_sync(q, "a", QF_CONTENT);
	CU_ASSERT_EQUAL(e->seq, 1);
	queue_done(q, e);
	e = take_sync(q, "b/c", QF_META);
	CU_ASSERT_EQUAL(e->seq, 2);
	queue_done(q, e);
	e = take_sync(q, "c", QF_TREE);
	CU_ASSERT_EQUAL(e->seq, 3);
	queue_done(q, e);
	expect_nothing(q);

	st = stats(q);
	CU_ASSERT_EQUAL(st.last_seq, 3);
	CU_ASSERT_EQUAL(st.done_below, 3);
	CU_ASSERT_EQUAL(st.pending, 0);
	queue_free(q);
}

/* Syncs of a folder and of something inside it never run at once; a
 * subtree comparison runs alone. */
static void test_ancestors_and_trees(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL(queue_sync(q, "d", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "d/f", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "dx", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "e", QF_TREE), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "g", QF_CONTENT), 0);
	struct qentry *d = take_sync(q, "d", QF_CONTENT);
	/* d/f waits for d; dx is not inside d */
	struct qentry *dx = take_sync(q, "dx", QF_CONTENT);
	/* the tree sync waits for everything ahead, g waits for it */
	CU_ASSERT_PTR_NULL(queue_take(q, SHORT_WAIT_MS));
	queue_done(q, d);
	struct qentry *f = take_sync(q, "d/f", QF_CONTENT);
	queue_done(q, dx);
	CU_ASSERT_PTR_NULL(queue_take(q, SHORT_WAIT_MS));
	queue_done(q, f);
	struct qentry *e = take_sync(q, "e", QF_TREE);
	CU_ASSERT_PTR_NULL(queue_take(q, SHORT_WAIT_MS));
	queue_done(q, e);
	queue_done(q, take_sync(q, "g", QF_CONTENT));
	expect_nothing(q);
	queue_free(q);
}

/* 1 if a sync of a may not run beside one of b (the rule pick() keeps):
 * the same path, or one inside the other ("" is the root). */
static int paths_clash(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la == 0 || lb == 0)
		return 1;
	if (la > lb)
		return paths_clash(b, a);
	return strncmp(a, b, la) == 0 && (b[la] == '\0' || b[la] == '/');
}

/* Random syncs over a small tree ("", folders and names that share
 * prefixes without being inside each other: "a", "ab", "a/b"), taken and
 * finished in random order: nothing taken ever clashes with what is in
 * flight, and nothing is held back that clashes with nothing. */
static void test_inflight_random(void)
{
	static const char *const paths[] = { "", "a", "ab", "a/b", "a/bc", "a/b/c", "a/b/cd",
					     "b", "b/a", "ba", "a/b/c/d", "c", "c/a/b" };
	const size_t np = sizeof(paths) / sizeof(paths[0]);
	struct qentry *fly[64];
	unsigned seed = 12345;
	for (int round = 0; round < 200; round++) {
		struct queue *q = new_queue();
		size_t nfly = 0, queued = 0, done = 0;
		for (int step = 0; step < 400; step++) {
			int what = rand_r(&seed) % 3;
			if (what == 0 && queued < 300) {
				CU_ASSERT_EQUAL(queue_sync(q, paths[rand_r(&seed) % np], QF_CONTENT), 0);
				queued++;
			} else if (what == 1 && nfly < 64) {
				struct qentry *e = queue_take(q, 0);
				if (!e) {
					/* Every pending path must clash with one in
					 * flight: check with the pending list. */
					struct queue_stats st = stats(q);
					if (st.pending > nfly) {
						char **pend = queue_pending_paths(q, 1000);
						for (size_t k = 0; pend && pend[k]; k++) {
							int blocked = 0;
							for (size_t i = 0; i < nfly && !blocked; i++)
								blocked = paths_clash(pend[k], fly[i]->path);
							CU_ASSERT(blocked);
							free(pend[k]);
						}
						free(pend);
					}
					continue;
				}
				for (size_t i = 0; i < nfly; i++)
					CU_ASSERT_FALSE(paths_clash(e->path, fly[i]->path));
				fly[nfly++] = e;
			} else if (nfly) {
				size_t i = (size_t)rand_r(&seed) % nfly;
				struct qentry *e = fly[i];
				fly[i] = fly[--nfly];
				if (rand_r(&seed) % 4 == 0) {
					queue_retry(q, e, 0);
				} else {
					queue_done(q, e);
					done++;
				}
			}
		}
		/* Drain: everything comes out, one at a time at the end. */
		while (nfly)
			queue_done(q, fly[--nfly]);
		for (struct qentry *e; (e = queue_take(q, 0));)
			queue_done(q, e);
		CU_ASSERT_EQUAL(stats(q).pending, 0);
		queue_free(q);
	}
}

static void test_coalesce(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL(queue_sync(q, "a", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "b", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "a", QF_META), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "a", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "b", QF_TREE), 0);
	struct queue_stats st = stats(q);
	CU_ASSERT_EQUAL(st.pending, 2);
	CU_ASSERT_EQUAL(st.last_seq, 2);

	/* one entry per path, at the place of its first sync, flags ORed */
	struct qentry *a = take_sync(q, "a", QF_CONTENT | QF_META);
	CU_ASSERT_EQUAL(a->seq, 1);
	/* b compares a whole subtree now: a barrier, it waits for a */
	CU_ASSERT_PTR_NULL(queue_take(q, SHORT_WAIT_MS));
	queue_done(q, a);
	struct qentry *b = take_sync(q, "b", QF_CONTENT | QF_TREE);
	CU_ASSERT_EQUAL(b->seq, 2);
	queue_done(q, b);
	expect_nothing(q);
	queue_free(q);
}

/* QF_GONE is decided by the newer of two coalesced syncs: a path reported
 * vanished and then found again is a plain sync; one changed and then
 * reported vanished is a deletion. */
static void test_coalesce_gone(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL(queue_sync(q, "a", QF_CONTENT | QF_GONE), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "a", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "b", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "b", QF_META | QF_GONE), 0);
	struct qentry *a = take_sync(q, "a", QF_CONTENT);
	struct qentry *b = take_sync(q, "b", QF_CONTENT | QF_META | QF_GONE);
	/* a retried entry folds a newer twin in with the same rule */
	CU_ASSERT_EQUAL(queue_sync(q, "a", QF_CONTENT | QF_GONE), 0);
	queue_retry(q, a, 0);
	a = take_sync(q, "a", QF_CONTENT | QF_GONE);
	queue_done(q, a);
	queue_done(q, b);
	expect_nothing(q);
	queue_free(q);
}

/* A worker's follow-up (queue_sync_since) is not the front end seeing the
 * path again: it never cancels a pending QF_GONE, neither when it joins the
 * pending entry nor when a retried entry folds it in. A sync from the front
 * end after it still does. */
static void test_followup_keeps_gone(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL(queue_sync(q, "d", QF_META | QF_GONE), 0);
	/* the folder's mtime, after a file in it was deleted on the server */
	CU_ASSERT_EQUAL(queue_sync_since(q, "d", QF_META, 1), 0);
	struct qentry *d = take_sync(q, "d", QF_META | QF_GONE);
	/* retried while a follow-up waits: folded in, still a deletion */
	CU_ASSERT_EQUAL(queue_sync_since(q, "d", QF_META, d->seq), 0);
	queue_retry(q, d, 0);
	d = take_sync(q, "d", QF_META | QF_GONE);
	queue_done(q, d);
	/* a follow-up alone is marked as such, and a front-end sync merged
	 * into it clears the mark; after that a GONE from the front end wins */
	CU_ASSERT_EQUAL(queue_sync_since(q, "e", QF_META, 2), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "e", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "e", QF_META | QF_GONE), 0);
	struct qentry *e = take_sync(q, "e", QF_CONTENT | QF_META | QF_GONE);
	queue_done(q, e);
	/* the front end reports the path again after it vanished: plain sync */
	CU_ASSERT_EQUAL(queue_sync(q, "f", QF_META | QF_GONE), 0);
	CU_ASSERT_EQUAL(queue_sync_since(q, "f", QF_META, 3), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "f", QF_META), 0);
	struct qentry *f = take_sync(q, "f", QF_META);
	queue_done(q, f);
	expect_nothing(q);
	queue_free(q);
}

/* Notes: misses and uploads are kept apart; an upload's path follows the
 * renames still queued when it is noted and those queued after it. */
static void test_notes(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_PTR_NULL(queue_take_notes(q, QN_UPLOAD));
	CU_ASSERT_EQUAL(queue_rename(q, "d", "e", 0), 0);
	CU_ASSERT_EQUAL(queue_note(q, QN_UPLOAD, "d/t"), 0); /* rename d -> e pending */
	CU_ASSERT_EQUAL(queue_note(q, QN_MISS, "d/m"), 0);    /* misses stay as noted */
	CU_ASSERT_EQUAL(queue_note(q, QN_UPLOAD, "x"), 0);
	CU_ASSERT_EQUAL(stats(q).notes, 3);
	CU_ASSERT_EQUAL(queue_rename(q, "e/t", "e/u", 0), 0); /* queued after the note */
	struct qentry *r = take_rename(q, "d", "e", 0);
	queue_done(q, r);
	/* a rename already done does not move a later note */
	r = take_rename(q, "e/t", "e/u", 0);
	queue_done(q, r);
	CU_ASSERT_EQUAL(queue_note(q, QN_UPLOAD, "e/t"), 0);
	char **u = queue_take_notes(q, QN_UPLOAD);
	CU_ASSERT_PTR_NOT_NULL_FATAL(u);
	CU_ASSERT_STRING_EQUAL(u[0], "e/u");
	CU_ASSERT_STRING_EQUAL(u[1], "x");
	CU_ASSERT_STRING_EQUAL(u[2], "e/t");
	CU_ASSERT_PTR_NULL(u[3]);
	for (char **p = u; *p; p++)
		free(*p);
	free(u);
	char **m = queue_take_notes(q, QN_MISS);
	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_STRING_EQUAL(m[0], "d/m");
	CU_ASSERT_PTR_NULL(m[1]);
	free(m[0]);
	free(m);
	CU_ASSERT_EQUAL(stats(q).notes, 0);
	expect_nothing(q);
	queue_free(q);
}

/* A sync in flight may already have read the file: a later change must be
 * a new entry, not folded into it. */
static void test_no_coalesce_into_inflight(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL(queue_sync(q, "a", QF_META), 0);
	struct qentry *a1 = take_sync(q, "a", QF_META);
	CU_ASSERT_EQUAL(queue_sync(q, "a", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(a1->flags, QF_META);
	CU_ASSERT_EQUAL(stats(q).pending, 2);
	CU_ASSERT_EQUAL(stats(q).last_seq, 2);
	expect_nothing(q); /* never two syncs of a in flight */
	queue_done(q, a1);
	struct qentry *a2 = take_sync(q, "a", QF_CONTENT);
	CU_ASSERT_EQUAL(a2->seq, 2);
	queue_done(q, a2);
	expect_nothing(q);
	queue_free(q);
}

static void test_rename_barrier(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL(queue_sync(q, "a", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_rename(q, "x", "y", 0), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "a", QF_META), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "a", QF_CONTENT), 0); /* coalesces with the 2nd */
	struct queue_stats st = stats(q);
	CU_ASSERT_EQUAL(st.pending, 3);
	CU_ASSERT_EQUAL(st.last_seq, 3);

	struct qentry *e = take_sync(q, "a", QF_CONTENT);
	CU_ASSERT_EQUAL(e->seq, 1);
	queue_done(q, e);
	e = take_rename(q, "x", "y", 0);
	CU_ASSERT_EQUAL(e->seq, 2);
	queue_done(q, e);
	e = take_sync(q, "a", QF_META | QF_CONTENT);
	CU_ASSERT_EQUAL(e->seq, 3);
	queue_done(q, e);
	expect_nothing(q);
	queue_free(q);
}

/* Data follows the name: a pending sync of d/f is moved behind the rename
 * of d, as a sync of e/f. */
static void test_rename_moves_pending(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL(queue_sync(q, "d/f", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_rename(q, "d", "e", 0), 0);
	CU_ASSERT_EQUAL(stats(q).pending, 2);

	struct qentry *e = take_rename(q, "d", "e", 0);
	queue_done(q, e);
	e = take_sync(q, "e/f", QF_CONTENT);
	queue_done(q, e);
	expect_nothing(q);
	CU_ASSERT_EQUAL(stats(q).done_below, stats(q).last_seq);

	/* a later sync of the new name coalesces with the moved one */
	CU_ASSERT_EQUAL(queue_sync(q, "p/f", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_rename(q, "p", "r", 0), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "r/f", QF_META), 0);
	CU_ASSERT_EQUAL(stats(q).pending, 2);
	queue_done(q, take_rename(q, "p", "r", 0));
	queue_done(q, take_sync(q, "r/f", QF_CONTENT | QF_META));
	expect_nothing(q);
	queue_free(q);
}

/* "d" renames d itself and everything below it, but not "dx" or "d2/d". */
static void test_rename_prefix(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL(queue_sync(q, "d/x/y", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "dx", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "d", QF_META), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "d2/d", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "dx/y", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_rename(q, "d", "n/m", 0), 0);

	/* the unaffected ones keep their order, ahead of the rename */
	queue_done(q, take_sync(q, "dx", QF_CONTENT));
	queue_done(q, take_sync(q, "d2/d", QF_CONTENT));
	queue_done(q, take_sync(q, "dx/y", QF_CONTENT));
	queue_done(q, take_rename(q, "d", "n/m", 0));
	/* the moved ones keep their relative order, behind it */
	queue_done(q, take_sync(q, "n/m/x/y", QF_CONTENT));
	queue_done(q, take_sync(q, "n/m", QF_META));
	expect_nothing(q);
	struct queue_stats st = stats(q);
	CU_ASSERT_EQUAL(st.pending, 0);
	CU_ASSERT_EQUAL(st.done_below, st.last_seq);
	queue_free(q);
}

static void test_rename_exchange(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL(queue_sync(q, "a", QF_META), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "b/c", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "z", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "ab", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_rename(q, "a", "b", RENAME_EXCHANGE), 0);

	queue_done(q, take_sync(q, "z", QF_CONTENT));
	queue_done(q, take_sync(q, "ab", QF_CONTENT));
	queue_done(q, take_rename(q, "a", "b", RENAME_EXCHANGE));
	queue_done(q, take_sync(q, "b", QF_META));
	queue_done(q, take_sync(q, "a/c", QF_CONTENT));
	expect_nothing(q);

	/* without EXCHANGE, a sync of the target stays where it is */
	CU_ASSERT_EQUAL(queue_sync(q, "b", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_rename(q, "a", "b", RENAME_NOREPLACE), 0);
	queue_done(q, take_sync(q, "b", QF_CONTENT));
	queue_done(q, take_rename(q, "a", "b", RENAME_NOREPLACE));
	expect_nothing(q);
	queue_free(q);
}

/* A sync in flight when its path is renamed may be read under the old name:
 * the new name gets a fresh content sync after the rename. */
static void test_rename_of_inflight(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL(queue_sync(q, "d/f", QF_META), 0);
	struct qentry *f = take_sync(q, "d/f", QF_META);
	CU_ASSERT_EQUAL(queue_rename(q, "d", "e", 0), 0);
	CU_ASSERT_STRING_EQUAL(f->path, "d/f"); /* the entry in flight is not touched */
	CU_ASSERT_EQUAL(stats(q).pending, 3);
	expect_nothing(q); /* the rename waits for the sync in flight */
	queue_done(q, f);
	struct qentry *r = take_rename(q, "d", "e", 0);
	CU_ASSERT_EQUAL(r->seq, 2);
	expect_nothing(q); /* nothing passes a rename in flight */
	queue_done(q, r);
	struct qentry *e = take_sync(q, "e/f", QF_META | QF_CONTENT);
	CU_ASSERT_EQUAL(e->seq, 3);
	queue_done(q, e);
	expect_nothing(q);
	queue_free(q);
}

/* A front end that renames in BACKING before queueing the rename: a sync
 * finished in between may have found its path gone (BACKING renamed) and
 * deleted it on the server, where the rename then moves the folder without
 * it. queue_rename() must compare its new name again (QF_TREE: if it was a
 * folder, its contents went too). */
static void test_rename_of_finished_while_renaming(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL(queue_sync(q, "d/f", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "x", QF_CONTENT), 0);
	queue_rename_begin(q);
	/* renameat2(d, e) in BACKING; a worker syncs d/f meanwhile */
	queue_done(q, take_sync(q, "d/f", QF_CONTENT));
	queue_done(q, take_sync(q, "x", QF_CONTENT));
	CU_ASSERT_EQUAL(stats(q).done_below, 2);
	CU_ASSERT_EQUAL(queue_rename(q, "d", "e", 0), 0);
	queue_rename_end(q);
	CU_ASSERT_EQUAL(stats(q).done_below, 2); /* progress never goes back */
	struct qentry *r = take_rename(q, "d", "e", 0);
	CU_ASSERT_EQUAL(r->seq, 3);
	queue_done(q, r);
	struct qentry *e = take_sync(q, "e/f", QF_TREE);
	CU_ASSERT_EQUAL(e->seq, 4);
	CU_ASSERT_EQUAL(e->since, 4);
	queue_done(q, e);
	expect_nothing(q); /* x was not under d */

	/* Once the rename has ended, finished syncs are forgotten. */
	CU_ASSERT_EQUAL(queue_sync(q, "e/g", QF_CONTENT), 0);
	queue_done(q, take_sync(q, "e/g", QF_CONTENT));
	CU_ASSERT_EQUAL(queue_rename(q, "e", "h", 0), 0);
	queue_done(q, take_rename(q, "e", "h", 0));
	expect_nothing(q);

	/* Nested: kept until the last rename under way ends. */
	queue_rename_begin(q);
	queue_rename_begin(q);
	CU_ASSERT_EQUAL(queue_sync(q, "h/i", QF_META), 0);
	queue_done(q, take_sync(q, "h/i", QF_META));
	queue_rename_end(q);
	CU_ASSERT_EQUAL(queue_rename(q, "h", "j", 0), 0);
	queue_rename_end(q);
	queue_done(q, take_rename(q, "h", "j", 0));
	queue_done(q, take_sync(q, "j/i", QF_TREE));
	expect_nothing(q);
	CU_ASSERT_EQUAL(stats(q).pending, 0);
	queue_free(q);
}

static void test_rename_waits_for_earlier(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL(queue_sync(q, "x", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "w", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_rename(q, "a", "b", 0), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "c", QF_CONTENT), 0);
	struct qentry *x = take_sync(q, "x", QF_CONTENT);
	struct qentry *w = take_sync(q, "w", QF_CONTENT);
	expect_nothing(q); /* neither the rename nor what follows it */
	queue_done(q, w);
	expect_nothing(q); /* x still in flight */
	queue_done(q, x);
	struct qentry *r = take_rename(q, "a", "b", 0);
	expect_nothing(q); /* c is behind the rename in flight */
	queue_retry(q, r, 0); /* a rename put back is still a barrier */
	r = take_rename(q, "a", "b", 0);
	CU_ASSERT_EQUAL(r->attempts, 1);
	expect_nothing(q);
	queue_done(q, r);
	queue_done(q, take_sync(q, "c", QF_CONTENT));
	expect_nothing(q);
	queue_free(q);
}

/* Never two syncs of one path in flight: the older one could land last. */
static void test_no_twin_inflight(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL(queue_sync(q, "a", QF_CONTENT), 0);
	struct qentry *a1 = take_sync(q, "a", QF_CONTENT);
	CU_ASSERT_EQUAL(queue_sync(q, "a", QF_META), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "b", QF_CONTENT), 0);
	/* the second a is skipped, not blocking b */
	struct qentry *b = take_sync(q, "b", QF_CONTENT);
	expect_nothing(q);
	queue_done(q, b);
	expect_nothing(q);
	queue_done(q, a1);
	queue_done(q, take_sync(q, "a", QF_META));
	expect_nothing(q);
	queue_free(q);
}

/* The same rule when the older sync is a deferred retry that sits before a
 * rename and its newer twin (queued after the rename) is already in flight:
 * the older one must wait until the newer one is finished. */
static void test_no_twin_inflight_after_deferral(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL(queue_sync(q, "p", QF_CONTENT), 0);
	struct qentry *p1 = take_sync(q, "p", QF_CONTENT);
	queue_retry(q, p1, DEFER_MS);
	CU_ASSERT_EQUAL(queue_rename(q, "x", "y", 0), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "p", QF_META), 0);
	/* the deferred p does not hold back the rename of another path */
	queue_done(q, take_rename(q, "x", "y", 0));
	struct qentry *p2 = take_sync(q, "p", QF_META);
	CU_ASSERT_EQUAL(p2->seq, 3);
	/* wait well past p1's deferral: it must still not be handed out */
	int64_t until = queue_now() + 2 * DEFER_MS * MS;
	struct qentry *bad = NULL;
	while (!bad && queue_now() < until)
		bad = queue_take(q, 50);
	CU_ASSERT_PTR_NULL(bad);
	if (bad)
		queue_done(q, bad);
	queue_done(q, p2);
	if (!bad) {
		struct qentry *e = take_within_deadline(q);
		CU_ASSERT_PTR_NOT_NULL_FATAL(e);
		CU_ASSERT_STRING_EQUAL(e->path, "p");
		CU_ASSERT_EQUAL(e->seq, 1);
		queue_done(q, e);
	}
	expect_nothing(q);
	CU_ASSERT_EQUAL(stats(q).pending, 0);
	queue_free(q);
}

static void test_retry_deferral(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL(queue_sync(q, "a", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "b", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "c", QF_CONTENT), 0);
	struct qentry *a = take_sync(q, "a", QF_CONTENT);
	int64_t retried = queue_now();
	queue_retry(q, a, DEFER_MS);
	struct queue_stats st = stats(q);
	CU_ASSERT_EQUAL(st.pending, 3);
	CU_ASSERT_EQUAL(st.deferred, 1);

	/* later entries go meanwhile */
	queue_done(q, take_sync(q, "b", QF_CONTENT));
	queue_done(q, take_sync(q, "c", QF_CONTENT));
	st = stats(q);
	CU_ASSERT_EQUAL(st.done_below, 0); /* a (seq 1) is not finished */
	CU_ASSERT_EQUAL(st.last_seq, 3);
	CU_ASSERT_EQUAL(st.pending, 1);

	/* a later change of a joins the deferred entry */
	CU_ASSERT_EQUAL(queue_sync(q, "a", QF_META), 0);
	CU_ASSERT_EQUAL(stats(q).pending, 1);
	CU_ASSERT_EQUAL(stats(q).last_seq, 3);

	a = take_within_deadline(q);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT(queue_now() - retried >= DEFER_MS * MS);
	CU_ASSERT_STRING_EQUAL(a->path, "a");
	CU_ASSERT_EQUAL(a->seq, 1);
	CU_ASSERT_EQUAL(a->attempts, 1);
	CU_ASSERT_EQUAL(a->flags, QF_CONTENT | QF_META);
	CU_ASSERT_EQUAL(stats(q).deferred, 0);
	queue_done(q, a);
	st = stats(q);
	CU_ASSERT_EQUAL(st.done_below, 3);
	CU_ASSERT_EQUAL(st.pending, 0);
	queue_free(q);
}

/* A rename of the deferred sync's path moves it behind the rename under the
 * new name, and it is no longer deferred. */
static void test_retry_then_renamed(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL(queue_sync(q, "a", QF_CONTENT), 0);
	queue_retry(q, take_sync(q, "a", QF_CONTENT), 60000);
	CU_ASSERT_EQUAL(stats(q).deferred, 1);
	CU_ASSERT_EQUAL(queue_rename(q, "a", "b", 0), 0);
	queue_done(q, take_rename(q, "a", "b", 0));
	queue_done(q, take_sync(q, "b", QF_CONTENT));
	struct queue_stats st = stats(q);
	CU_ASSERT_EQUAL(st.pending, 0);
	CU_ASSERT_EQUAL(st.done_below, st.last_seq);
	queue_free(q);
}

/* queue_retry promises "no sooner than delay_ms" for every entry; a rename
 * waiting out its delay still holds back what follows it. */
static void test_retry_rename_deferral(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL(queue_rename(q, "a", "b", 0), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "c", QF_CONTENT), 0);
	struct qentry *r = take_rename(q, "a", "b", 0);
	int64_t retried = queue_now();
	queue_retry(q, r, 200);
	r = take_within_deadline(q);
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	CU_ASSERT_EQUAL(r->kind, Q_RENAME);
	CU_ASSERT(queue_now() - retried >= 200 * MS);
	queue_done(q, r);
	queue_done(q, take_sync(q, "c", QF_CONTENT));
	queue_free(q);
}

static void test_done_below(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL(queue_sync(q, "a", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "b", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "c", QF_CONTENT), 0);
	struct qentry *a = take_sync(q, "a", QF_CONTENT);
	struct qentry *b = take_sync(q, "b", QF_CONTENT);
	struct qentry *c = take_sync(q, "c", QF_CONTENT);
	queue_done(q, c);
	CU_ASSERT_EQUAL(stats(q).done_below, 0);
	queue_done(q, a);
	CU_ASSERT_EQUAL(stats(q).done_below, 1);

	/* a retried entry keeps its seq and holds done_below back */
	queue_retry(q, b, 0);
	CU_ASSERT_EQUAL(stats(q).done_below, 1);
	CU_ASSERT_EQUAL(queue_sync(q, "d", QF_CONTENT), 0);
	b = take_sync(q, "b", QF_CONTENT);
	CU_ASSERT_EQUAL(b->seq, 2);
	struct qentry *d = take_sync(q, "d", QF_CONTENT);
	queue_done(q, d);
	struct queue_stats st = stats(q);
	CU_ASSERT_EQUAL(st.done_below, 1);
	CU_ASSERT_EQUAL(st.last_seq, 4);
	queue_done(q, b);
	st = stats(q);
	CU_ASSERT_EQUAL(st.done_below, 4);
	CU_ASSERT_EQUAL(st.pending, 0);
	queue_free(q);
}

/* A failed sync must not count as finished because a newer sync of its path
 * exists: `mirrorfs sync` waits for done_below to reach the last_seq it read,
 * so dropping the older entry would let it return before that change was
 * sent. */
static void test_done_below_retry_with_newer_twin(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL(queue_sync(q, "p", QF_CONTENT), 0);
	struct qentry *p1 = take_sync(q, "p", QF_CONTENT);
	uint64_t target = stats(q).last_seq; /* what `mirrorfs sync` waits for */
	CU_ASSERT_EQUAL(target, 1);
	CU_ASSERT_EQUAL(queue_sync(q, "p", QF_META), 0); /* written again */
	queue_retry(q, p1, 100); /* p was still changing: not sent */
	CU_ASSERT(stats(q).done_below < target);

	/* whatever entries remain, p's change is sent once, flags merged */
	int64_t deadline = queue_now() + DEADLINE_MS * MS;
	unsigned flags = 0;
	while (stats(q).pending > 0 && queue_now() < deadline) {
		struct qentry *e = queue_take(q, 50);
		if (!e)
			continue;
		CU_ASSERT_STRING_EQUAL(e->path, "p");
		flags |= e->flags;
		queue_done(q, e);
	}
	CU_ASSERT_EQUAL(flags, QF_CONTENT | QF_META);
	struct queue_stats st = stats(q);
	CU_ASSERT_EQUAL(st.pending, 0);
	CU_ASSERT_EQUAL(st.done_below, 2);
	queue_free(q);
}

struct taker {
	struct queue *q;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct qentry *got; /* under lock */
	int returned;       /* under lock */
	int linger_ms;      /* 0: queue_take(q, -1); else queue_linger(q, linger_ms) */
};

static void *taker_run(void *arg)
{
	struct taker *t = arg;
	struct qentry *e = t->linger_ms ? queue_linger(t->q, t->linger_ms) : queue_take(t->q, -1);
	pthread_mutex_lock(&t->lock);
	t->got = e;
	t->returned = 1;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

/* Start a thread blocked in queue_take(q, -1), or in queue_linger(q,
 * linger_ms) if linger_ms (q owned by the caller). */
static void taker_start_linger(struct taker *t, pthread_t *th, struct queue *q, int linger_ms)
{
	memset(t, 0, sizeof(*t));
	t->q = q;
	t->linger_ms = linger_ms;
	pthread_mutex_init(&t->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&t->cond, &ca);
	pthread_condattr_destroy(&ca);
	CU_ASSERT_EQUAL_FATAL(pthread_create(th, NULL, taker_run, t), 0);
}

static void taker_start_on(struct taker *t, pthread_t *th, struct queue *q)
{
	taker_start_linger(t, th, q, 0);
}

/* The same on a new empty queue (t->q, freed by the test). */
static void taker_start(struct taker *t, pthread_t *th)
{
	taker_start_on(t, th, new_queue());
}

/* Wait up to ms for the taker to return from queue_take. Returns 1 if it did. */
static int taker_wait(struct taker *t, int ms)
{
	int64_t until = queue_now() + ms * MS;
	struct timespec ts = { .tv_sec = until / 1000000000, .tv_nsec = until % 1000000000 };
	pthread_mutex_lock(&t->lock);
	while (!t->returned)
		if (pthread_cond_timedwait(&t->cond, &t->lock, &ts) != 0)
			break;
	int r = t->returned;
	pthread_mutex_unlock(&t->lock);
	return r;
}

/* Join the taker; if it is stuck (a failed test), unstick it first. */
static void taker_finish(struct taker *t, pthread_t th)
{
	if (!taker_wait(t, 0)) {
		queue_stop(t->q);
		if (!taker_wait(t, DEADLINE_MS))
			CU_FAIL_FATAL("taker thread cannot be stopped");
	}
	pthread_join(th, NULL);
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->cond);
}

static void test_blocked_taker_gets_entry(void)
{
	struct taker t;
	pthread_t th;
	taker_start(&t, &th);
	CU_ASSERT_FALSE(taker_wait(&t, 50)); /* nothing to take yet */
	CU_ASSERT_EQUAL(queue_sync(t.q, "a", QF_CONTENT), 0);
	CU_ASSERT(taker_wait(&t, DEADLINE_MS)); /* woken by the new entry */
	taker_finish(&t, th);
	CU_ASSERT_PTR_NOT_NULL_FATAL(t.got);
	CU_ASSERT_STRING_EQUAL(t.got->path, "a");
	queue_done(t.q, t.got);
	queue_free(t.q);
}

/* The taker's entry must be a sync of path; it is finished, q freed. */
static void taker_expect(struct taker *t, const char *path)
{
	CU_ASSERT_PTR_NOT_NULL_FATAL(t->got);
	CU_ASSERT_EQUAL(t->got->kind, Q_SYNC);
	CU_ASSERT_STRING_EQUAL(t->got->path, path);
	queue_done(t->q, t->got);
	queue_free(t->q);
}

/* A taker asleep with no timer wakes for a deferred entry, to set one, and
 * takes it once it is due. */
static void test_taker_wakes_for_deferred(void)
{
	struct taker t;
	pthread_t th;
	taker_start(&t, &th);
	CU_ASSERT_FALSE(taker_wait(&t, 50));
	int64_t t0 = queue_now();
	CU_ASSERT_EQUAL(queue_sync_open(t.q, "a", QF_CONTENT, 100), 0);
	CU_ASSERT(taker_wait(&t, DEADLINE_MS));
	CU_ASSERT(queue_now() - t0 >= 100 * MS); /* not before it was due */
	taker_finish(&t, th);
	taker_expect(&t, "a");
}

/* A deferred entry released early (its file closed) wakes a taker whose
 * timer is far away. A second deferred entry due later than that timer
 * does not need to wake it, and is not taken before its time. */
static void test_undefer_wakes_taker(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL(queue_sync_open(q, "a", QF_CONTENT, 60000), 0);
	struct taker t;
	pthread_t th;
	taker_start_on(&t, &th, q);
	CU_ASSERT_FALSE(taker_wait(&t, 50)); /* asleep until a is due */
	CU_ASSERT_EQUAL(queue_sync_open(q, "b", QF_CONTENT, 120000), 0);
	queue_undefer(q, "nothing"); /* no such entry: nothing changes */
	CU_ASSERT_FALSE(taker_wait(&t, 20));
	queue_undefer(q, "a");
	CU_ASSERT(taker_wait(&t, DEADLINE_MS));
	taker_finish(&t, th);
	CU_ASSERT_PTR_NULL(queue_take(q, 0)); /* b still waits */
	taker_expect(&t, "a");
}

/* A pending entry open for writing keeps its place and time when written
 * again; a second sync of a ready entry does not defer it. */
static void test_sync_open_keeps_pending(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL(queue_sync(q, "a", QF_META), 0);
	CU_ASSERT_EQUAL(queue_sync_open(q, "a", QF_CONTENT, 60000), 0);
	CU_ASSERT_EQUAL(queue_sync_open(q, "b", QF_CONTENT, 60000), 0);
	struct queue_stats st = stats(q);
	CU_ASSERT_EQUAL(st.pending, 2);
	CU_ASSERT_EQUAL(st.deferred, 1);
	struct qentry *e = queue_take(q, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_STRING_EQUAL(e->path, "a");
	CU_ASSERT_EQUAL(e->flags, QF_META | QF_CONTENT);
	queue_done(q, e);
	CU_ASSERT_PTR_NULL(queue_take(q, 0));
	queue_undefer(q, "b");
	e = queue_take(q, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_STRING_EQUAL(e->path, "b");
	queue_done(q, e);
	queue_free(q);
}

/* A taker that found its only entry held back by one in flight (the same
 * path) sleeps, and is woken when that one is done. */
static void test_taker_wakes_when_clash_ends(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL(queue_sync(q, "a", QF_CONTENT), 0);
	struct qentry *first = queue_take(q, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(first);
	CU_ASSERT_EQUAL(queue_sync(q, "a/b", QF_CONTENT), 0); /* clashes with a */
	struct taker t;
	pthread_t th;
	taker_start_on(&t, &th, q);
	CU_ASSERT_FALSE(taker_wait(&t, 50));
	queue_done(q, first);
	CU_ASSERT(taker_wait(&t, DEADLINE_MS));
	taker_finish(&t, th);
	taker_expect(&t, "a/b");
}

/* The same for an entry behind a rename in flight, and a retried entry
 * that held one back. */
static void test_taker_wakes_after_barrier(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL(queue_rename(q, "x", "y", 0), 0);
	struct qentry *r = queue_take(q, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	CU_ASSERT_EQUAL(queue_sync(q, "z", QF_CONTENT), 0);
	struct taker t;
	pthread_t th;
	taker_start_on(&t, &th, q);
	CU_ASSERT_FALSE(taker_wait(&t, 50));
	queue_done(q, r);
	CU_ASSERT(taker_wait(&t, DEADLINE_MS));
	taker_finish(&t, th);
	taker_expect(&t, "z");

	q = new_queue();
	CU_ASSERT_EQUAL(queue_sync(q, "d", QF_CONTENT), 0);
	struct qentry *d = queue_take(q, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	CU_ASSERT_EQUAL(queue_sync(q, "d/f", QF_CONTENT), 0);
	taker_start_on(&t, &th, q);
	CU_ASSERT_FALSE(taker_wait(&t, 50));
	queue_retry(q, d, 60000); /* d waits a minute; d/f may go */
	CU_ASSERT(taker_wait(&t, DEADLINE_MS));
	taker_finish(&t, th);
	taker_expect(&t, "d/f");
}

/* A lingering taker is not woken by new entries: it takes one when its
 * time is up; queue_stop() ends it with nothing. */
static void test_linger(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL(queue_sync(q, "a", QF_CONTENT), 0);
	struct taker t;
	pthread_t th;
	int64_t t0 = queue_now();
	taker_start_linger(&t, &th, q, 100); /* a is ready: taken after 100 ms */
	CU_ASSERT(taker_wait(&t, DEADLINE_MS));
	CU_ASSERT(queue_now() - t0 >= 100 * MS);
	taker_finish(&t, th);
	CU_ASSERT_PTR_NOT_NULL_FATAL(t.got);
	CU_ASSERT_STRING_EQUAL(t.got->path, "a");
	queue_done(q, t.got);

	taker_start_linger(&t, &th, q, 60000);
	CU_ASSERT_EQUAL(queue_sync(q, "b", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(queue_sync(q, "c", QF_CONTENT), 0);
	CU_ASSERT_FALSE(taker_wait(&t, 50)); /* still lingering */
	queue_stop(q);
	CU_ASSERT(taker_wait(&t, DEADLINE_MS));
	taker_finish(&t, th);
	CU_ASSERT_PTR_NULL(t.got);
	queue_free(q);
}

static void test_stop(void)
{
	struct taker t;
	pthread_t th;
	taker_start(&t, &th);
	CU_ASSERT_FALSE(taker_wait(&t, 50)); /* blocked, not returning on its own */
	queue_stop(t.q);
	CU_ASSERT(taker_wait(&t, DEADLINE_MS)); /* woken by the stop */
	taker_finish(&t, th);
	CU_ASSERT_PTR_NULL(t.got);

	/* once stopped, take returns NULL even with work pending */
	CU_ASSERT_EQUAL(queue_sync(t.q, "a", QF_CONTENT), 0);
	CU_ASSERT_PTR_NULL(queue_take(t.q, 0));
	CU_ASSERT_PTR_NULL(queue_take(t.q, -1));
	CU_ASSERT_EQUAL(stats(t.q).pending, 1);
	queue_free(t.q); /* frees the pending entry */
	queue_free(NULL);
}

/* queue_seq_floor raises the next seq, never lowers it. */
static void test_seq_floor(void)
{
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL(queue_restore(q, 7, Q_SYNC, QF_CONTENT, 0, "a", NULL), 0);
	queue_seq_floor(q, 3); /* below the restored entry: no effect */
	CU_ASSERT_EQUAL(queue_sync(q, "b", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(stats(q).last_seq, 8);
	queue_seq_floor(q, 1000);
	CU_ASSERT_EQUAL(queue_sync(q, "c", QF_CONTENT), 0);
	CU_ASSERT_EQUAL(stats(q).last_seq, 1000);
	queue_free(q);
}

/* Sequence numbers keep growing across sessions of one queue.db, even when
 * the queue was empty at the end (mirrord skips a rename whose seq is not
 * above the last one applied: a new session starting at 1 lost renames). */
static void test_seq_survives_restart(void)
{
	char dir[] = "/tmp/mirrorfs-qstore.XXXXXX", why[256], path[64];
	struct qstore *qs;
	uint64_t first;
	CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
	struct queue *q = new_queue();
	CU_ASSERT_EQUAL_FATAL(qstore_open(dir, &qs, why, sizeof(why)), 0);
	CU_ASSERT_EQUAL(qstore_load(qs, q), 0);
	CU_ASSERT_EQUAL(qstore_start(qs), 0);
	CU_ASSERT_EQUAL(queue_rename(q, "a", "b", 0), 0);
	first = stats(q).last_seq;
	struct qentry *e = take_rename(q, "a", "b", 0);
	queue_done(q, e); /* the queue is empty again */
	queue_stop(q);
	qstore_close(qs);
	queue_free(q);

	q = new_queue();
	CU_ASSERT_EQUAL_FATAL(qstore_open(dir, &qs, why, sizeof(why)), 0);
	CU_ASSERT_EQUAL(qstore_load(qs, q), 0);
	CU_ASSERT_EQUAL(queue_rename(q, "b", "c", 0), 0);
	CU_ASSERT(stats(q).last_seq > first);
	qstore_close(qs);
	queue_free(q);
	snprintf(path, sizeof(path), "%s/queue.db", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/queue.db-wal", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/queue.db-shm", dir);
	unlink(path);
	CU_ASSERT_EQUAL(rmdir(dir), 0);
}

int suite_fuse_queue(void)
{
	CU_pSuite s = CU_add_suite("fuse_queue", NULL, NULL);
	if (!s)
		return CU_get_error();
	if (!CU_add_test(s, "fifo", test_fifo) || !CU_add_test(s, "coalesce", test_coalesce) ||
	    !CU_add_test(s, "coalesce_gone", test_coalesce_gone) ||
	    !CU_add_test(s, "followup_keeps_gone", test_followup_keeps_gone) ||
	    !CU_add_test(s, "notes", test_notes) ||
	    !CU_add_test(s, "folders and trees", test_ancestors_and_trees) ||
	    !CU_add_test(s, "in flight, random", test_inflight_random) ||
	    !CU_add_test(s, "no_coalesce_into_inflight", test_no_coalesce_into_inflight) ||
	    !CU_add_test(s, "rename_barrier", test_rename_barrier) ||
	    !CU_add_test(s, "rename_moves_pending", test_rename_moves_pending) ||
	    !CU_add_test(s, "rename_prefix", test_rename_prefix) ||
	    !CU_add_test(s, "rename_exchange", test_rename_exchange) ||
	    !CU_add_test(s, "rename_of_inflight", test_rename_of_inflight) ||
	    !CU_add_test(s, "rename_of_finished_while_renaming",
			 test_rename_of_finished_while_renaming) ||
	    !CU_add_test(s, "rename_waits_for_earlier", test_rename_waits_for_earlier) ||
	    !CU_add_test(s, "no_twin_inflight", test_no_twin_inflight) ||
	    !CU_add_test(s, "no_twin_inflight_after_deferral",
			 test_no_twin_inflight_after_deferral) ||
	    !CU_add_test(s, "retry_deferral", test_retry_deferral) ||
	    !CU_add_test(s, "retry_then_renamed", test_retry_then_renamed) ||
	    !CU_add_test(s, "retry_rename_deferral", test_retry_rename_deferral) ||
	    !CU_add_test(s, "done_below", test_done_below) ||
	    !CU_add_test(s, "done_below_retry_with_newer_twin",
			 test_done_below_retry_with_newer_twin) ||
	    !CU_add_test(s, "blocked_taker_gets_entry", test_blocked_taker_gets_entry) ||
	    !CU_add_test(s, "taker_wakes_for_deferred", test_taker_wakes_for_deferred) ||
	    !CU_add_test(s, "undefer_wakes_taker", test_undefer_wakes_taker) ||
	    !CU_add_test(s, "sync_open_keeps_pending", test_sync_open_keeps_pending) ||
	    !CU_add_test(s, "taker_wakes_when_clash_ends", test_taker_wakes_when_clash_ends) ||
	    !CU_add_test(s, "taker_wakes_after_barrier", test_taker_wakes_after_barrier) ||
	    !CU_add_test(s, "linger", test_linger) ||
	    !CU_add_test(s, "stop", test_stop) ||
	    !CU_add_test(s, "seq_floor", test_seq_floor) ||
	    !CU_add_test(s, "seq_survives_restart", test_seq_survives_restart))
		return CU_get_error();
	return 0;
}
