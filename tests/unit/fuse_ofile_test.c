/*
 * Unit tests for fuse/ofile: open-file records, and the "queued" handshake
 * between writes (ofiles_written) and the uploader (ofiles_begin_upload),
 * observed through a real queue.
 */
#include <CUnit/CUnit.h>
#include <stdlib.h>
#include <string.h>

#include "../../fuse/ofile.h"
#include "../../fuse/queue.h"

#define DEV 7

struct fixture {
	struct queue *q;
	struct ofiles t;
};

static void setup(struct fixture *f)
{
	f->q = queue_new();
	CU_ASSERT_PTR_NOT_NULL_FATAL(f->q);
	ofiles_init(&f->t, f->q);
}

static void teardown(struct fixture *f)
{
	ofiles_release(&f->t);
	queue_free(f->q);
}

/* The next queue entry must be a content sync of path; it is finished.
 * The files of these tests are open for writing, so their syncs wait for
 * the close (test_deferred_until_close): released here as a close would. */
static void expect_sync(struct fixture *f, const char *path)
{
	queue_undefer(f->q, path);
	struct qentry *e = queue_take(f->q, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_EQUAL(e->kind, Q_SYNC);
	CU_ASSERT_STRING_EQUAL(e->path, path);
	CU_ASSERT_EQUAL(e->flags, QF_CONTENT);
	queue_done(f->q, e);
}

static void expect_no_sync(struct fixture *f)
{
	struct queue_stats st;
	queue_get_stats(f->q, &st);
	CU_ASSERT_EQUAL(st.pending, 0); /* not even a deferred one */
	struct qentry *e = queue_take(f->q, 0);
	CU_ASSERT_PTR_NULL(e);
	if (e)
		queue_done(f->q, e);
}

/* The record's current path must be want. */
static void expect_path(const struct ofile *of, const char *want)
{
	CU_ASSERT_PTR_NOT_NULL(of->path);
	if (of->path)
		CU_ASSERT_STRING_EQUAL(of->path, want);
}

static uint64_t last_seq(struct fixture *f)
{
	struct queue_stats st;
	queue_get_stats(f->q, &st);
	return st.last_seq;
}

/* What ofiles_begin_upload reports (and, as a side effect, clear "queued"). */
static int begin(struct fixture *f, ino_t ino, int64_t *lw, int64_t *ds)
{
	int64_t a, b;
	int w = ofiles_begin_upload(&f->t, DEV, ino, lw ? lw : &a, ds ? ds : &b);
	return w;
}

static void test_refs(void)
{
	struct fixture f;
	setup(&f);
	struct ofile *w = ofiles_open(&f.t, DEV, 10, "f", 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(w);
	CU_ASSERT_EQUAL(w->refs, 1);
	CU_ASSERT_EQUAL(w->writers, 1);
	expect_path(w, "f");
	struct ofile *r = ofiles_open(&f.t, DEV, 10, "f", 0);
	CU_ASSERT_PTR_EQUAL(r, w); /* one record per inode */
	CU_ASSERT_EQUAL(w->refs, 2);
	CU_ASSERT_EQUAL(w->writers, 1);
	/* same inode number on another device: another record */
	struct ofile *o = ofiles_open(&f.t, DEV + 1, 10, "g", 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	CU_ASSERT_PTR_NOT_EQUAL(o, w);
	CU_ASSERT_EQUAL(begin(&f, 10, NULL, NULL), 1);

	ofiles_close(&f.t, w, 1);
	CU_ASSERT_EQUAL(w->refs, 1);
	CU_ASSERT_EQUAL(w->writers, 0);
	CU_ASSERT_EQUAL(begin(&f, 10, NULL, NULL), 0); /* open, but not for writing */
	struct ofile *w2 = ofiles_open(&f.t, DEV, 10, "f", 1);
	CU_ASSERT_PTR_EQUAL(w2, w);
	CU_ASSERT_EQUAL(w->writers, 1);
	ofiles_close(&f.t, w2, 1);
	ofiles_close(&f.t, r, 0); /* the last reference: record gone */

	int64_t lw = -1, ds = -1;
	CU_ASSERT_EQUAL(ofiles_begin_upload(&f.t, DEV, 10, &lw, &ds), 0);
	CU_ASSERT_EQUAL(lw, 0);
	CU_ASSERT_EQUAL(ds, 0);
	ofiles_close(&f.t, o, 1);
	/* a new open starts afresh */
	w = ofiles_open(&f.t, DEV, 10, NULL, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(w);
	CU_ASSERT_EQUAL(w->refs, 1);
	CU_ASSERT_EQUAL(w->writers, 0);
	CU_ASSERT_PTR_NULL(w->path);
	ofiles_close(&f.t, w, 0);
	teardown(&f);
	ofiles_release(NULL);
}

static void test_written_queues_once(void)
{
	struct fixture f;
	setup(&f);
	struct ofile *of = ofiles_open(&f.t, DEV, 10, "dir/f", 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(of);
	CU_ASSERT_EQUAL(last_seq(&f), 0); /* opening queues nothing */
	ofiles_written(&f.t, of);
	ofiles_written(&f.t, of);
	ofiles_written(&f.t, of);
	CU_ASSERT_EQUAL(last_seq(&f), 1);
	expect_sync(&f, "dir/f");
	/* taken but the uploader has not started reading: still "queued" */
	ofiles_written(&f.t, of);
	expect_no_sync(&f);
	CU_ASSERT_EQUAL(last_seq(&f), 1);

	/* the uploader starts reading: the next write queues a new sync */
	CU_ASSERT_EQUAL(begin(&f, 10, NULL, NULL), 1);
	expect_no_sync(&f);
	ofiles_written(&f.t, of);
	ofiles_written(&f.t, of);
	CU_ASSERT_EQUAL(last_seq(&f), 2);
	expect_sync(&f, "dir/f");
	expect_no_sync(&f);

	/* begin_upload of another inode does not clear this one */
	struct ofile *o2 = ofiles_open(&f.t, DEV, 11, "g", 1);
	CU_ASSERT_EQUAL(begin(&f, 11, NULL, NULL), 1);
	ofiles_written(&f.t, of);
	expect_no_sync(&f);
	ofiles_written(&f.t, o2);
	expect_sync(&f, "g");
	ofiles_close(&f.t, o2, 1);
	ofiles_close(&f.t, of, 1);
	teardown(&f);
}

/* A write to a file open for writing queues a sync that waits: for the
 * last writer's close, or OFILES_QUIET_MS. A write through a record with
 * no writer (the kernel's write-back of a file closed) goes at once. */
static void test_deferred_until_close(void)
{
	struct fixture f;
	setup(&f);
	struct ofile *a = ofiles_open(&f.t, DEV, 10, "a", 1);
	struct ofile *a2 = ofiles_open(&f.t, DEV, 10, "a", 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	ofiles_written(&f.t, a);
	struct queue_stats st;
	queue_get_stats(f.q, &st);
	CU_ASSERT_EQUAL(st.pending, 1);
	CU_ASSERT_EQUAL(st.deferred, 1);
	CU_ASSERT_PTR_NULL(queue_take(f.q, 0));
	ofiles_close(&f.t, a, 1); /* another writer is left */
	CU_ASSERT_PTR_NULL(queue_take(f.q, 0));
	ofiles_close(&f.t, a2, 1); /* the last one */
	struct qentry *e = queue_take(f.q, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_STRING_EQUAL(e->path, "a");
	queue_done(f.q, e);

	/* still open, but quiet: it goes after OFILES_QUIET_MS */
	struct ofile *b = ofiles_open(&f.t, DEV, 11, "b", 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	int64_t t0 = queue_now();
	ofiles_written(&f.t, b);
	e = queue_take(f.q, 3 * OFILES_QUIET_MS);
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_STRING_EQUAL(e->path, "b");
	CU_ASSERT(queue_now() - t0 >= OFILES_QUIET_MS * 1000000LL);
	queue_done(f.q, e);
	ofiles_close(&f.t, b, 1);

	struct ofile *c = ofiles_open(&f.t, DEV, 12, "c", 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	ofiles_written(&f.t, c);
	e = queue_take(f.q, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_STRING_EQUAL(e->path, "c");
	queue_done(f.q, e);
	ofiles_close(&f.t, c, 0);
	teardown(&f);
}

static void test_begin_upload_reports(void)
{
	struct fixture f;
	setup(&f);
	int64_t lw = -1, ds = -1;
	CU_ASSERT_EQUAL(ofiles_begin_upload(&f.t, DEV, 10, &lw, &ds), 0); /* not open */
	CU_ASSERT_EQUAL(lw, 0);
	CU_ASSERT_EQUAL(ds, 0);

	struct ofile *of = ofiles_open(&f.t, DEV, 10, "f", 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(of);
	CU_ASSERT_EQUAL(ofiles_begin_upload(&f.t, DEV, 10, &lw, &ds), 1);
	CU_ASSERT_EQUAL(lw, 0); /* never written */
	CU_ASSERT_EQUAL(ds, 0);

	int64_t t0 = queue_now();
	ofiles_written(&f.t, of);
	int64_t t1 = queue_now();
	CU_ASSERT_EQUAL(ofiles_begin_upload(&f.t, DEV, 10, &lw, &ds), 1);
	CU_ASSERT(lw >= t0 && lw <= t1);
	CU_ASSERT(ds >= t0 && ds <= t1);
	int64_t first = ds;

	/* a later write moves last_write, not dirty_since */
	int64_t t2 = queue_now();
	ofiles_written(&f.t, of);
	int64_t lw2;
	CU_ASSERT_EQUAL(ofiles_begin_upload(&f.t, DEV, 10, &lw2, &ds), 1);
	CU_ASSERT(lw2 >= t2 && lw2 >= lw);
	CU_ASSERT_EQUAL(ds, first);

	/* a read that gave up (the file changed under it) postpones the
	 * next forced attempt: dirty_since restarts at that moment */
	ofiles_postpone(&f.t, DEV, 10, first + 7);
	CU_ASSERT_EQUAL(ofiles_begin_upload(&f.t, DEV, 10, &lw, &ds), 1);
	CU_ASSERT_EQUAL(ds, first + 7);
	ofiles_postpone(&f.t, DEV, 10, first);
	ofiles_postpone(&f.t, DEV, 99, first + 9); /* unknown inode: nothing */
	CU_ASSERT_EQUAL(ofiles_begin_upload(&f.t, DEV, 10, &lw, &ds), 1);
	CU_ASSERT_EQUAL(ds, first);

	/* published as read before the last write: still dirty */
	ofiles_uploaded(&f.t, DEV, 10, t2 - 1);
	CU_ASSERT_EQUAL(ofiles_begin_upload(&f.t, DEV, 10, &lw, &ds), 1);
	CU_ASSERT_EQUAL(ds, first);
	/* published as read after it: clean */
	ofiles_uploaded(&f.t, DEV, 10, queue_now());
	CU_ASSERT_EQUAL(ofiles_begin_upload(&f.t, DEV, 10, &lw, &ds), 1);
	CU_ASSERT_EQUAL(ds, 0);
	CU_ASSERT_EQUAL(lw, lw2);
	ofiles_postpone(&f.t, DEV, 10, queue_now()); /* clean stays clean */
	CU_ASSERT_EQUAL(ofiles_begin_upload(&f.t, DEV, 10, &lw, &ds), 1);
	CU_ASSERT_EQUAL(ds, 0);

	/* the writer closes; a reader keeps the record */
	struct ofile *r = ofiles_open(&f.t, DEV, 10, "f", 0);
	ofiles_close(&f.t, of, 1);
	CU_ASSERT_EQUAL(ofiles_begin_upload(&f.t, DEV, 10, &lw, &ds), 0);
	CU_ASSERT_EQUAL(lw, lw2);
	ofiles_close(&f.t, r, 0);
	while (queue_take(f.q, 0)) /* drain: entries are freed by queue_free */
		;
	teardown(&f);
}

static void test_renamed(void)
{
	struct fixture f;
	setup(&f);
	struct ofile *a = ofiles_open(&f.t, DEV, 10, "d/f", 1);
	struct ofile *b = ofiles_open(&f.t, DEV, 11, "dx/f", 1);
	struct ofile *c = ofiles_open(&f.t, DEV, 12, "d", 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	ofiles_renamed(&f.t, "d", "e/n", 0);
	expect_path(a, "e/n/f");
	expect_path(b, "dx/f");
	expect_path(c, "e/n");
	ofiles_written(&f.t, a);
	expect_sync(&f, "e/n/f");
	ofiles_written(&f.t, b);
	expect_sync(&f, "dx/f");

	/* exchange: both ways */
	ofiles_renamed(&f.t, "e", "dx", 1);
	expect_path(a, "dx/n/f");
	expect_path(b, "e/f");
	expect_path(c, "dx/n");
	CU_ASSERT_EQUAL(begin(&f, 10, NULL, NULL), 1);
	CU_ASSERT_EQUAL(begin(&f, 11, NULL, NULL), 1);
	ofiles_written(&f.t, a);
	ofiles_written(&f.t, b);
	expect_sync(&f, "dx/n/f");
	expect_sync(&f, "e/f");
	ofiles_close(&f.t, a, 1);
	ofiles_close(&f.t, b, 1);
	ofiles_close(&f.t, c, 1);
	teardown(&f);
}

static void test_unlinked(void)
{
	struct fixture f;
	setup(&f);
	struct ofile *of = ofiles_open(&f.t, DEV, 10, "f", 1);
	struct ofile *o2 = ofiles_open(&f.t, DEV, 11, "fx", 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(of);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o2);
	ofiles_unlinked(&f.t, "f");
	CU_ASSERT_PTR_NULL(of->path);
	expect_path(o2, "fx");
	/* writes to a file without a name queue nothing */
	ofiles_written(&f.t, of);
	expect_no_sync(&f);
	CU_ASSERT_EQUAL(last_seq(&f), 0);
	ofiles_unlinked(&f.t, "f"); /* again: harmless */

	/* opened again through another name (a hard link): that name is used */
	struct ofile *again = ofiles_open(&f.t, DEV, 10, "link", 0);
	CU_ASSERT_PTR_EQUAL(again, of);
	expect_path(of, "link");
	CU_ASSERT_EQUAL(begin(&f, 10, NULL, NULL), 1);
	ofiles_written(&f.t, of);
	expect_sync(&f, "link");
	ofiles_close(&f.t, again, 0);
	ofiles_close(&f.t, of, 1);
	ofiles_close(&f.t, o2, 1);
	teardown(&f);
}

int suite_fuse_ofile(void)
{
	CU_pSuite s = CU_add_suite("fuse_ofile", NULL, NULL);
	if (!s)
		return CU_get_error();
	if (!CU_add_test(s, "refs", test_refs) ||
	    !CU_add_test(s, "written_queues_once", test_written_queues_once) ||
	    !CU_add_test(s, "deferred_until_close", test_deferred_until_close) ||
	    !CU_add_test(s, "begin_upload_reports", test_begin_upload_reports) ||
	    !CU_add_test(s, "renamed", test_renamed) ||
	    !CU_add_test(s, "unlinked", test_unlinked))
		return CU_get_error();
	return 0;
}
