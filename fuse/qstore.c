#define _GNU_SOURCE
#include "qstore.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "sqlerr.h"
#include "queue.h"

struct qstore {
	sqlite3 *db;
	sqlite3_stmt *put, *del;
	sqlite3_stmt *mark; /* raises the persisted highest seq */
	struct queue *q; /* borrowed */
	pthread_t thread;
	int running;
	pthread_mutex_t lock;
	int stopping; /* under lock */
};


static int exec(sqlite3 *db, const char *sql)
{
	return sqlerr_errno(sqlite3_exec(db, sql, NULL, NULL, NULL));
}

int qstore_open(const char *dir, struct qstore **out, char *why, unsigned whylen)
{
	char path[PATH_MAX];
	struct qstore *s = calloc(1, sizeof(*s));
	int r = -ENOMEM;
	if (!s)
		goto fail;
	pthread_mutex_init(&s->lock, NULL);
	snprintf(path, sizeof(path), "%s/queue.db", dir);
	int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
					       SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		r = sqlerr_errno(rc);
		goto fail;
	}
	if ((r = exec(s->db, "PRAGMA journal_mode=WAL")) < 0 ||
	    (r = exec(s->db, "PRAGMA synchronous=FULL")) < 0 ||
	    (r = exec(s->db, "CREATE TABLE IF NOT EXISTS queue ("
			     " seq INTEGER PRIMARY KEY, kind INTEGER NOT NULL,"
			     " flags INTEGER NOT NULL, rflags INTEGER NOT NULL,"
			     " path BLOB NOT NULL, path2 BLOB)")) < 0 ||
	    (r = exec(s->db, "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY,"
			     " v INTEGER NOT NULL)")) < 0)
		goto fail;
	if ((rc = sqlite3_prepare_v2(s->db,
				     "INSERT OR REPLACE INTO queue VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
				     -1, &s->put, NULL)) != SQLITE_OK ||
	    (rc = sqlite3_prepare_v2(s->db, "DELETE FROM queue WHERE seq = ?1", -1, &s->del,
				     NULL)) != SQLITE_OK ||
	    (rc = sqlite3_prepare_v2(s->db,
				     "INSERT INTO meta VALUES ('seq', ?1) ON CONFLICT (k)"
				     " DO UPDATE SET v = max(v, excluded.v)",
				     -1, &s->mark, NULL)) != SQLITE_OK) {
		r = sqlerr_errno(rc);
		goto fail;
	}
	*out = s;
	return 0;
fail:
	snprintf(why, whylen, "%s", s && s->db ? sqlite3_errmsg(s->db) : strerror(-r));
	qstore_close(s);
	return r;
}

int qstore_load(struct qstore *s, struct queue *q)
{
	sqlite3_stmt *st = NULL;
	int n = 0, r = 0, rc;
	s->q = q;
	/* Every mount queues a full reconciliation of its own: an unfinished
	 * one from before is redundant. */
	if ((r = exec(s->db, "DELETE FROM queue WHERE kind = 1 AND path = '' AND (flags & 4) != 0")) < 0)
		return r;
	rc = sqlite3_prepare_v2(s->db, "SELECT seq, kind, flags, rflags, path, path2 FROM queue"
				       " ORDER BY seq", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return sqlerr_errno(rc);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *p = (const char *)sqlite3_column_text(st, 4);
		const char *p2 = (const char *)sqlite3_column_text(st, 5);
		int kind = sqlite3_column_int(st, 1);
		if (!p || (kind != Q_SYNC && kind != Q_RENAME) || (kind == Q_RENAME && !p2))
			continue; /* not ours: ignore */
		r = queue_restore(q, (uint64_t)sqlite3_column_int64(st, 0), (enum qkind)kind,
				  (unsigned)sqlite3_column_int(st, 2),
				  (unsigned)sqlite3_column_int(st, 3), p, p2);
		if (r < 0)
			break;
		n++;
	}
	sqlite3_finalize(st);
	if (r == 0 && rc != SQLITE_DONE)
		r = sqlerr_errno(rc);
	if (r < 0)
		return r;
	/* Sequence numbers go on growing across sessions (mirrord detects
	 * replayed renames by them): above the highest one saved, and above
	 * the clock in microseconds, which also covers a crash between a
	 * rename reaching mirrord and its batch reaching the disk. */
	uint64_t floor = 0;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	if (now.tv_sec > 0)
		floor = (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
	rc = sqlite3_prepare_v2(s->db, "SELECT v FROM meta WHERE k = 'seq'", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return sqlerr_errno(rc);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint64_t saved = (uint64_t)sqlite3_column_int64(st, 0);
		if (saved + 1 > floor)
			floor = saved + 1;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return sqlerr_errno(rc);
	queue_seq_floor(q, floor);
	queue_enable_journal(q);
	return n;
}

/* Write one batch in one transaction. */
static int write_batch(struct qstore *s, struct qjournal *j)
{
	uint64_t top = 0;
	int r = exec(s->db, "BEGIN");
	if (r < 0)
		return r;
	for (; j && r == 0; j = j->next) {
		if (j->op == J_PUT && j->seq > top)
			top = j->seq;
		sqlite3_stmt *st = j->op == J_PUT ? s->put : s->del;
		sqlite3_bind_int64(st, 1, (sqlite3_int64)j->seq);
		if (j->op == J_PUT) {
			sqlite3_bind_int(st, 2, j->kind);
			sqlite3_bind_int(st, 3, (int)j->flags);
			sqlite3_bind_int(st, 4, (int)j->rflags);
			sqlite3_bind_text(st, 5, j->path, -1, SQLITE_STATIC);
			if (j->path2)
				sqlite3_bind_text(st, 6, j->path2, -1, SQLITE_STATIC);
			else
				sqlite3_bind_null(st, 6);
		}
		r = sqlerr_errno(sqlite3_step(st));
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
	}
	if (r == 0 && top) {
		sqlite3_bind_int64(s->mark, 1, (sqlite3_int64)top);
		r = sqlerr_errno(sqlite3_step(s->mark));
		sqlite3_reset(s->mark);
	}
	if (r < 0) {
		exec(s->db, "ROLLBACK");
		return r;
	}
	return exec(s->db, "COMMIT");
}

/* Commits are at least this far apart: a burst of changes (a cp -r, an
 * unpacked archive) costs one fsync per interval instead of one per
 * wake-up of this thread. What a crash takes from the last interval is
 * found again by the reconciliation at the next mount (see qstore.h). */
#define QSTORE_GAP_NS (10LL * 1000 * 1000)

static void *run(void *arg)
{
	struct qstore *s = arg;
	log_thread_name("mfs-journal");
	int64_t last = 0;
	for (;;) {
		struct qjournal *j = queue_journal_take(s->q, 200);
		int64_t wait = last + QSTORE_GAP_NS - queue_now();
		if (j && wait > 0) {
			struct timespec ts = { 0, (long)wait };
			struct qjournal **tail = &j->next;
			nanosleep(&ts, NULL); /* pacing only; nothing waits on this */
			while (*tail)
				tail = &(*tail)->next;
			*tail = queue_journal_take(s->q, 0);
		}
		if (j) {
			last = queue_now();
			int r = write_batch(s, j);
			if (r < 0)
				log_error("queue.db: cannot save the queue: %s (changes are still"
					  " found by reconciliation at the next mount)",
					  sqlite3_errmsg(s->db));
			queue_journal_free(j);
			continue;
		}
		pthread_mutex_lock(&s->lock);
		int stop = s->stopping;
		pthread_mutex_unlock(&s->lock);
		if (stop)
			break;
	}
	return NULL;
}

int qstore_start(struct qstore *s)
{
	if (pthread_create(&s->thread, NULL, run, s) != 0)
		return -EAGAIN;
	s->running = 1;
	return 0;
}

void qstore_close(struct qstore *s)
{
	if (!s)
		return;
	if (s->running) {
		pthread_mutex_lock(&s->lock);
		s->stopping = 1;
		pthread_mutex_unlock(&s->lock);
		pthread_join(s->thread, NULL);
	}
	if (s->q) {
		/* What the thread did not take yet. */
		struct qjournal *j;
		while ((j = queue_journal_take(s->q, 0))) {
			(void)write_batch(s, j);
			queue_journal_free(j);
		}
	}
	sqlite3_finalize(s->put);
	sqlite3_finalize(s->del);
	sqlite3_finalize(s->mark);
	if (s->db)
		sqlite3_close(s->db);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
