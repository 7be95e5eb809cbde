#define _GNU_SOURCE
#include "queue.h"

#include <errno.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "path.h"

#define QHASH_SIZE 4096
#define QBUSY_SIZE 1024

/* Syncs in flight, by path prefix: for each prefix of the path of a sync
 * in flight ("" for the root, "a", "a/b", ..., the path itself), how many
 * of them are at exactly that path (exact) and strictly below it (below).
 * pick() then tells whether a path clashes with any sync in flight from
 * the prefixes of that one path, instead of comparing it with each of
 * them: with a batch's worth in flight (up to QUEUE_BUSY_MAX) and
 * thousands pending (tar x), that comparison was a tenth of mirrorfs's
 * CPU, under the queue's lock. */
struct busy {
	struct busy *next;
	uint32_t h;
	unsigned exact, below;
	size_t len;
	char key[]; /* len bytes, not NUL-terminated */
};

struct queue {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* Everything below is protected by lock. */
	struct qentry *head, *tail;      /* pending and in-flight, in order */
	struct qentry *hash[QHASH_SIZE]; /* pending (not in flight) syncs by path */
	uint64_t next_seq;
	uint64_t barrier_seq; /* seq of the newest rename */
	unsigned renaming;    /* queue_rename_begin() calls not yet ended */
	struct qentry *finished; /* syncs finished while renaming (next-linked):
				  * queue_rename() treats them as in flight */
	size_t count;
	int stopping;
	int journal_on;
	struct qjournal *jhead, **jtail; /* journal not yet taken */
	pthread_cond_t jcond;             /* the journal's writer waits here, not
					   * on cond: a change then wakes one
					   * thread for the journal, not every
					   * idle uploader as well */
	struct notes {
		char **v; /* oldest first */
		size_t n, a;
	} notes[QN_KINDS];
	struct busy *busy[QBUSY_SIZE]; /* syncs in flight, see struct busy */
	size_t nbusy;                  /* syncs in flight */
	int blocked; /* a taker found an entry that only an entry in flight
		      * holds back (same path, a barrier, QUEUE_BUSY_MAX): the
		      * next queue_done()/queue_retry() wakes every taker. Any
		      * other wake-up wakes one taker for one entry, or none:
		      * each wake is a context switch, and broadcasts per file
		      * woke all three uploaders (docs/ARCHITECTURE.md) */
	unsigned sleepers; /* takers waiting on cond */
	pthread_cond_t lcond; /* lingering takers (queue_linger) wait here:
			       * only queue_stop() wakes them */
	int64_t timer;     /* 0, or a time by which a sleeping taker wakes
			    * by itself (the earliest known): an entry
			    * deferred past it needs no wake-up */
};

int64_t queue_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static unsigned hash_path(const char *p)
{
	uint32_t h = 2166136261u;
	while (*p)
		h = (h ^ (uint8_t)*p++) * 16777619u;
	return h % QHASH_SIZE;
}

struct queue *queue_new(void)
{
	struct queue *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	pthread_mutex_init(&q->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->cond, &ca);
	pthread_cond_init(&q->jcond, &ca);
	pthread_cond_init(&q->lcond, &ca);
	pthread_condattr_destroy(&ca);
	q->next_seq = 1;
	q->jtail = &q->jhead;
	return q;
}

void queue_journal_free(struct qjournal *j)
{
	while (j) {
		struct qjournal *n = j->next;
		free(j->path);
		free(j->path2);
		free(j);
		j = n;
	}
}

/* Record a change for durable storage. Caller holds lock. An allocation
 * failure loses the record: reconciliation at the next mount covers it. */
static void journal(struct queue *q, enum jop op, const struct qentry *e)
{
	if (!q->journal_on)
		return;
	struct qjournal *j = calloc(1, sizeof(*j));
	if (!j)
		return;
	j->op = op;
	j->seq = e->seq;
	if (op == J_PUT) {
		j->kind = e->kind;
		j->flags = e->flags;
		j->rflags = e->rflags;
		j->path = strdup(e->path);
		j->path2 = e->path2 ? strdup(e->path2) : NULL;
		if (!j->path || (e->path2 && !j->path2)) {
			queue_journal_free(j);
			return;
		}
	}
	*q->jtail = j;
	q->jtail = &j->next;
	pthread_cond_signal(&q->jcond);
}

void queue_enable_journal(struct queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->journal_on = 1;
	pthread_mutex_unlock(&q->lock);
}

struct qjournal *queue_journal_take(struct queue *q, int wait_ms)
{
	int64_t deadline = queue_now() + (int64_t)wait_ms * 1000000;
	struct qjournal *j;
	pthread_mutex_lock(&q->lock);
	/* Not woken by queue_stop(): the writer keeps going until its owner
	 * stops it, so that nothing journalled is left behind. */
	while (!q->jhead) {
		struct timespec ts = { .tv_sec = deadline / 1000000000,
				       .tv_nsec = deadline % 1000000000 };
		if (pthread_cond_timedwait(&q->jcond, &q->lock, &ts) == ETIMEDOUT)
			break;
	}
	j = q->jhead;
	q->jhead = NULL;
	q->jtail = &q->jhead;
	pthread_mutex_unlock(&q->lock);
	return j;
}

static void entry_free(struct qentry *e)
{
	if (!e)
		return;
	free(e->path);
	free(e->path2);
	free(e);
}

static void entry_free_list(struct qentry *e)
{
	while (e) {
		struct qentry *n = e->next;
		entry_free(e);
		e = n;
	}
}

void queue_free(struct queue *q)
{
	if (!q)
		return;
	entry_free_list(q->head);
	entry_free_list(q->finished);
	queue_journal_free(q->jhead);
	for (size_t i = 0; i < QBUSY_SIZE; i++)
		for (struct busy *b = q->busy[i], *n; b; b = n) {
			n = b->next;
			free(b);
		}
	for (int k = 0; k < QN_KINDS; k++) {
		for (size_t i = 0; i < q->notes[k].n; i++)
			free(q->notes[k].v[i]);
		free(q->notes[k].v);
	}
	pthread_mutex_destroy(&q->lock);
	pthread_cond_destroy(&q->cond);
	pthread_cond_destroy(&q->jcond);
	pthread_cond_destroy(&q->lcond);
	free(q);
}

/* Caller holds lock. */
static void hash_remove(struct queue *q, struct qentry *e)
{
	struct qentry **pp = &q->hash[hash_path(e->path)];
	for (; *pp; pp = &(*pp)->hnext)
		if (*pp == e) {
			*pp = e->hnext;
			e->hnext = NULL;
			return;
		}
}

static struct qentry *hash_find(struct queue *q, const char *path)
{
	for (struct qentry *e = q->hash[hash_path(path)]; e; e = e->hnext)
		if (strcmp(e->path, path) == 0)
			return e;
	return NULL;
}

static void list_append(struct queue *q, struct qentry *e)
{
	e->next = NULL;
	e->prev = q->tail;
	if (q->tail)
		q->tail->next = e;
	else
		q->head = e;
	q->tail = e;
	q->count++;
}

static void list_unlink(struct queue *q, struct qentry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		q->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		q->tail = e->prev;
	e->prev = e->next = NULL;
	q->count--;
}

/* The flags of two syncs of one path folded into one: older, then newer.
 * QF_NOLINK and QF_FOLLOW survive only if both carry them (a write through
 * this name must still reach its other names); QF_GONE is the newer one's
 * (a vanished path reported again is known to the front end once more),
 * unless the newer one is only a worker's follow-up, which reports
 * nothing. */
static unsigned merge_flags(unsigned older, unsigned newer)
{
	unsigned both = QF_NOLINK | QF_FOLLOW;
	unsigned f = (older | newer) & ~(both & ~(older & newer));
	unsigned gone = (newer & QF_FOLLOW) ? (older | newer) & QF_GONE : newer & QF_GONE;
	return (f & ~QF_GONE) | gone;
}

/* Append a new sync entry; takes ownership of path. Caller holds lock. */
static void append_sync(struct queue *q, char *path, unsigned flags)
{
	struct qentry *e = calloc(1, sizeof(*e));
	if (!e) {
		free(path);
		return; /* reconciliation at the next mount repairs a lost entry */
	}
	e->kind = Q_SYNC;
	e->flags = flags;
	e->path = path;
	e->seq = q->next_seq++;
	e->since = e->seq;
	list_append(q, e);
	journal(q, J_PUT, e);
	unsigned h = hash_path(path);
	e->hnext = q->hash[h];
	q->hash[h] = e;
}

/* queue_sync_since() and queue_sync_open(): a new entry waits until
 * not_before (0: ready now). */
static int sync_entry(struct queue *q, const char *path, unsigned flags, uint64_t since,
		      int64_t not_before)
{
	char *copy = NULL;
	if (since)
		flags |= QF_FOLLOW;
	pthread_mutex_lock(&q->lock);
	struct qentry *e = hash_find(q, path);
	/* Coalesce only with a sync queued after the newest rename: moving a
	 * change in front of a rename could let the rename overwrite it. */
	if (e && e->seq > q->barrier_seq) {
		unsigned nf = merge_flags(e->flags, flags);
		if (nf != e->flags) {
			e->flags = nf;
			journal(q, J_PUT, e);
		}
		if (since && since < e->since)
			e->since = since;
		pthread_mutex_unlock(&q->lock);
		return 0;
	}
	copy = strdup(path);
	if (!copy) {
		pthread_mutex_unlock(&q->lock);
		return -ENOMEM;
	}
	append_sync(q, copy, flags);
	if (since && since < q->tail->since)
		q->tail->since = since;
	q->tail->not_before = not_before;
	/* One new entry: one worker is enough (waking all of them for it
	 * costs a context switch each, per change). A deferred one needs
	 * one only if no sleeping worker wakes by then anyway (its timer). */
	if (!not_before || (q->sleepers && (!q->timer || q->timer > not_before)))
		pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
	return 0;
}

int queue_sync(struct queue *q, const char *path, unsigned flags)
{
	return sync_entry(q, path, flags, 0, 0);
}

int queue_sync_since(struct queue *q, const char *path, unsigned flags, uint64_t since)
{
	return sync_entry(q, path, flags, since, 0);
}

int queue_sync_open(struct queue *q, const char *path, unsigned flags, int defer_ms)
{
	return sync_entry(q, path, flags, 0, queue_now() + (int64_t)defer_ms * 1000000);
}

/* The new name of p after renaming from -> to (with exchange: either way).
 * Returns a new string or NULL if p is not affected. */
static char *renamed(const char *p, const char *from, const char *to, int exchange)
{
	char *r = path_rebase(p, from, to);
	if (!r && exchange)
		r = path_rebase(p, to, from);
	return r;
}

/* Rebase *p (owned) through renaming from -> to. Caller holds lock. */
static void note_rebase(char **p, const char *from, const char *to, int exchange)
{
	char *np = renamed(*p, from, to, exchange);
	if (np) {
		free(*p);
		*p = np;
	}
}

int queue_rename(struct queue *q, const char *from, const char *to, unsigned rflags)
{
	int exchange = (rflags & RENAME_EXCHANGE) != 0;
	struct qentry *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->kind = Q_RENAME;
	r->rflags = rflags;
	r->path = strdup(from);
	r->path2 = strdup(to);
	if (!r->path || !r->path2) {
		entry_free(r);
		return -ENOMEM;
	}
	/* Syncs that follow the data to its new name, appended after r. */
	struct qentry *moved = NULL, **mtail = &moved;

	pthread_mutex_lock(&q->lock);
	/* Syncs finished since the rename began in BACKING (queue.h,
	 * queue_rename_begin): like those in flight, they may have read
	 * BACKING already renamed, under the old name. Their changes count as
	 * done, so the copies carry seqs of their own (since 0, set below). */
	for (struct qentry *e = q->finished; e; e = e->next) {
		char *np = renamed(e->path, from, to, exchange);
		struct qentry *c = np ? calloc(1, sizeof(*c)) : NULL;
		if (!c) {
			free(np);
			continue;
		}
		c->kind = Q_SYNC;
		/* A comparison: a folder deleted on the server in the gap
		 * took its contents along, which no entry names. */
		c->flags = QF_TREE;
		c->path = np;
		*mtail = c;
		mtail = &c->next;
	}
	for (struct qentry *e = q->head, *n; e; e = n) {
		n = e->next;
		if (e->kind != Q_SYNC)
			continue;
		char *np = renamed(e->path, from, to, exchange);
		if (!np)
			continue;
		if (e->inflight) {
			/* Its result may be read under the old name: sync the
			 * new name again after the rename. */
			struct qentry *c = calloc(1, sizeof(*c));
			if (!c) {
				free(np);
				continue;
			}
			c->kind = Q_SYNC;
			c->flags = e->flags | QF_CONTENT;
			c->path = np;
			c->since = e->since;
			*mtail = c;
			mtail = &c->next;
			continue;
		}
		hash_remove(q, e);
		list_unlink(q, e);
		journal(q, J_DEL, e);
		free(e->path);
		e->path = np;
		e->not_before = 0;
		e->next = NULL;
		*mtail = e;
		mtail = &e->next;
	}
	for (size_t i = 0; i < q->notes[QN_UPLOAD].n; i++)
		note_rebase(&q->notes[QN_UPLOAD].v[i], from, to, exchange);
	r->seq = q->next_seq++;
	r->since = r->seq;
	q->barrier_seq = r->seq;
	list_append(q, r);
	journal(q, J_PUT, r);
	while (moved) {
		struct qentry *n = moved->next;
		moved->seq = q->next_seq++;
		if (!moved->since)
			moved->since = moved->seq;
		list_append(q, moved);
		journal(q, J_PUT, moved);
		unsigned h = hash_path(moved->path);
		moved->hnext = q->hash[h];
		q->hash[h] = moved;
		moved = n;
	}
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
	return 0;
}

/* A barrier: renames, and full comparisons of a subtree (their listing of
 * the server would be outdated by changes applied meanwhile). */
static int is_barrier(const struct qentry *e)
{
	return e->kind == Q_RENAME || (e->flags & QF_TREE);
}

/* Syncs in flight at once: a few per worker, or a batch's worth
 * (batch.h); past this many, nothing more starts until some finish. */
#define QUEUE_BUSY_MAX 512

#define BUSY_FNV_BASIS 2166136261u

static uint32_t busy_step(uint32_t h, uint8_t c)
{
	return (h ^ c) * 16777619u;
}

/* The node of prefix p[0..len) with hash h, or NULL. */
static struct busy *busy_find(const struct queue *q, const char *p, size_t len, uint32_t h)
{
	for (struct busy *b = q->busy[h % QBUSY_SIZE]; b; b = b->next)
		if (b->h == h && b->len == len && memcmp(b->key, p, len) == 0)
			return b;
	return NULL;
}

/* Call fn(q, p, len, h, full, arg) for each prefix of p ("" first, p
 * itself last: full = 1); stops at the first non-zero result and returns
 * it (0 when every call returned 0). */
static int busy_walk(struct queue *q, const char *p,
		     int (*fn)(struct queue *, const char *, size_t, uint32_t, int, void *),
		     void *arg)
{
	uint32_t h = BUSY_FNV_BASIS;
	int r;
	if (*p == '\0')
		return fn(q, p, 0, h, 1, arg);
	if ((r = fn(q, p, 0, h, 0, arg)) != 0)
		return r;
	for (size_t i = 0;; i++) {
		if (p[i] == '/' || p[i] == '\0') {
			if ((r = fn(q, p, i, h, p[i] == '\0', arg)) != 0 || p[i] == '\0')
				return r;
		}
		h = busy_step(h, (uint8_t)p[i]);
	}
}

/* busy_walk() callbacks. */

/* Make sure prefix p[0..len) has a node (counts 0 when new). 0 or
 * -ENOMEM. */
static int busy_ensure(struct queue *q, const char *p, size_t len, uint32_t h, int full,
		       void *arg)
{
	(void)full;
	(void)arg;
	if (busy_find(q, p, len, h))
		return 0;
	struct busy *b = calloc(1, sizeof(*b) + len);
	if (!b)
		return -ENOMEM;
	memcpy(b->key, p, len);
	b->len = len;
	b->h = h;
	b->next = q->busy[h % QBUSY_SIZE];
	q->busy[h % QBUSY_SIZE] = b;
	return 0;
}

/* Add *arg (1, -1, or 0 to drop an empty node) to the count of prefix
 * p[0..len); a node whose counts are 0 is freed. Returns 0. */
static int busy_count(struct queue *q, const char *p, size_t len, uint32_t h, int full,
		      void *arg)
{
	int delta = *(const int *)arg;
	struct busy *b = busy_find(q, p, len, h);
	if (!b) {
		if (delta != 0)
			abort(); /* counting a prefix that has no node: a bug */
		return 0;
	}
	unsigned *c = full ? &b->exact : &b->below;
	if (delta < 0 && *c == 0)
		abort(); /* more syncs out of flight than went in: a bug */
	*c += (unsigned)delta;
	if (b->exact == 0 && b->below == 0) {
		struct busy **pp = &q->busy[h % QBUSY_SIZE];
		while (*pp != b)
			pp = &(*pp)->next;
		*pp = b->next;
		free(b);
	}
	return 0;
}

/* The sync of p goes in flight. 0, or -ENOMEM with nothing counted. */
static int busy_add(struct queue *q, const char *p)
{
	int up = 1, none = 0;
	if (busy_walk(q, p, busy_ensure, NULL) < 0) {
		(void)busy_walk(q, p, busy_count, &none); /* drop the new empty nodes */
		return -ENOMEM;
	}
	(void)busy_walk(q, p, busy_count, &up);
	q->nbusy++;
	return 0;
}

/* The sync of p, counted by busy_add(), is no longer in flight. */
static void busy_remove(struct queue *q, const char *p)
{
	int down = -1;
	(void)busy_walk(q, p, busy_count, &down);
	q->nbusy--;
}

/* 1 at a prefix of p that a sync in flight is at (p itself: or below). */
static int busy_hit(struct queue *q, const char *p, size_t len, uint32_t h, int full, void *arg)
{
	(void)arg;
	const struct busy *b = busy_find(q, p, len, h);
	return b && (b->exact || (full && b->below));
}

/* 1 if a sync of p may not start now: one of p itself, of a folder above
 * it or of something inside it is in flight (the older could land last;
 * a delete of the folder read earlier could land after a create inside). */
static int busy_clash(struct queue *q, const char *p)
{
	return q->nbusy && busy_walk(q, p, busy_hit, NULL);
}

/* The first entry that may start now, or NULL; *wake gets the earliest
 * not_before among deferred entries (0 if none). Caller holds lock. */
static struct qentry *pick(struct queue *q, int64_t now, int64_t *wake)
{
	int ahead = 0; /* an entry ahead of e is in flight */
	*wake = 0;
	if (q->nbusy >= QUEUE_BUSY_MAX) {
		q->blocked = 1;
		return NULL;
	}
	for (struct qentry *e = q->head; e; e = e->next) {
		if (e->inflight) {
			if (is_barrier(e)) {
				q->blocked = 1;
				return NULL; /* nothing passes a barrier in flight */
			}
			ahead = 1;
			continue;
		}
		if (e->not_before > now && (!*wake || e->not_before < *wake))
			*wake = e->not_before;
		if (is_barrier(e)) { /* also while deferred */
			if (e->not_before > now)
				return NULL;
			if (ahead)
				q->blocked = 1;
			return ahead ? NULL : e;
		}
		if (e->not_before > now)
			continue;
		if (busy_clash(q, e->path)) {
			q->blocked = 1;
			continue;
		}
		return e;
	}
	return NULL;
}

struct qentry *queue_take(struct queue *q, int wait_ms)
{
	int64_t deadline = wait_ms < 0 ? 0 : queue_now() + (int64_t)wait_ms * 1000000;
	struct qentry *e = NULL;

	pthread_mutex_lock(&q->lock);
	while (!q->stopping) {
		int64_t now = queue_now(), wake;
		e = pick(q, now, &wake);
		if (e)
			break;
		if (deadline && now >= deadline)
			break;
		int64_t until = deadline;
		if (wake && (!until || wake < until))
			until = wake;
		q->sleepers++;
		if (until) {
			struct timespec ts = { .tv_sec = until / 1000000000,
					       .tv_nsec = until % 1000000000 };
			if (!q->timer || until < q->timer)
				q->timer = until;
			pthread_cond_timedwait(&q->cond, &q->lock, &ts);
			if (q->timer == until)
				q->timer = 0; /* the other sleepers' are not known */
		} else {
			pthread_cond_wait(&q->cond, &q->lock);
		}
		q->sleepers--;
	}
	if (e && !q->stopping && (e->kind != Q_SYNC || busy_add(q, e->path) == 0)) {
		e->inflight = 1;
		if (e->kind == Q_SYNC)
			hash_remove(q, e);
	} else {
		e = NULL; /* stopping, or no memory to count it in flight */
	}
	pthread_mutex_unlock(&q->lock);
	return e;
}

/* An entry in flight ended: wake the takers if one found an entry it held
 * back. Caller holds lock. */
static void wake_blocked(struct queue *q)
{
	if (q->blocked) {
		q->blocked = 0;
		pthread_cond_broadcast(&q->cond); /* lingerers are not blocked */
	}
}

struct qentry *queue_linger(struct queue *q, int wait_ms)
{
	int64_t until = queue_now() + (int64_t)wait_ms * 1000000;
	struct timespec ts = { .tv_sec = until / 1000000000, .tv_nsec = until % 1000000000 };
	pthread_mutex_lock(&q->lock);
	while (!q->stopping)
		if (pthread_cond_timedwait(&q->lcond, &q->lock, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&q->lock);
	return queue_take(q, 0);
}

void queue_done(struct queue *q, struct qentry *e)
{
	pthread_mutex_lock(&q->lock);
	if (e->inflight && e->kind == Q_SYNC)
		busy_remove(q, e->path);
	list_unlink(q, e);
	journal(q, J_DEL, e);
	if (q->renaming && e->kind == Q_SYNC) {
		/* Kept for queue_rename() until the rename ends (queue.h). */
		e->inflight = 0;
		e->next = q->finished;
		q->finished = e;
		e = NULL;
	}
	wake_blocked(q);
	pthread_mutex_unlock(&q->lock);
	entry_free(e);
}

void queue_rename_begin(struct queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->renaming++;
	pthread_mutex_unlock(&q->lock);
}

void queue_rename_end(struct queue *q)
{
	struct qentry *f = NULL;
	pthread_mutex_lock(&q->lock);
	if (q->renaming == 0)
		abort(); /* unbalanced begin/end: a bug */
	if (--q->renaming == 0) {
		f = q->finished;
		q->finished = NULL;
	}
	pthread_mutex_unlock(&q->lock);
	entry_free_list(f);
}

void queue_retry(struct queue *q, struct qentry *e, int delay_ms)
{
	pthread_mutex_lock(&q->lock);
	if (e->inflight && e->kind == Q_SYNC)
		busy_remove(q, e->path);
	e->inflight = 0;
	e->attempts++;
	e->not_before = delay_ms > 0 ? queue_now() + (int64_t)delay_ms * 1000000 : 0;
	if (e->kind == Q_SYNC) {
		/* A newer sync of the same path may have been queued meanwhile;
		 * it would do the same work, so fold it into this one. Not the
		 * other way round: e keeps the older seq, and dropping e would
		 * let done_below pass it before its change is sent. */
		struct qentry *dup = hash_find(q, e->path);
		if (dup && dup->seq > q->barrier_seq && e->seq > q->barrier_seq) {
			e->flags = merge_flags(e->flags, dup->flags);
			if (dup->since < e->since)
				e->since = dup->since;
			hash_remove(q, dup);
			list_unlink(q, dup);
			journal(q, J_DEL, dup);
			journal(q, J_PUT, e);
			entry_free(dup);
			dup = NULL;
		}
		if (!dup) {
			unsigned h = hash_path(e->path);
			e->hnext = q->hash[h];
			q->hash[h] = e;
		}
	}
	/* e is pending again: one taker for it (to take it, or to set its
	 * timer), and all of them if e held others back. */
	if (q->blocked)
		wake_blocked(q);
	else
		pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
}

void queue_undefer(struct queue *q, const char *path)
{
	pthread_mutex_lock(&q->lock);
	struct qentry *e = hash_find(q, path);
	if (e && e->not_before) {
		e->not_before = 0;
		pthread_cond_signal(&q->cond); /* one entry ready: one taker */
	}
	pthread_mutex_unlock(&q->lock);
}

void queue_stop(struct queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->stopping = 1;
	pthread_cond_broadcast(&q->cond);
	pthread_cond_broadcast(&q->lcond);
	pthread_mutex_unlock(&q->lock);
}

void queue_get_stats(struct queue *q, struct queue_stats *st)
{
	int64_t now = queue_now();
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&q->lock);
	st->last_seq = q->next_seq - 1;
	uint64_t min = q->next_seq;
	for (struct qentry *e = q->head; e; e = e->next) {
		st->pending++;
		if (!e->inflight && e->not_before > now)
			st->deferred++;
		if (e->since < min)
			min = e->since;
	}
	st->done_below = min - 1;
	st->notes = 0;
	for (int k = 0; k < QN_KINDS; k++)
		st->notes += q->notes[k].n;
	pthread_mutex_unlock(&q->lock);
}

int queue_note(struct queue *q, enum qnote kind, const char *path)
{
	struct notes *ns = &q->notes[kind];
	char *p = strdup(path);
	int r = 0;
	if (!p)
		return -ENOMEM;
	pthread_mutex_lock(&q->lock);
	if (ns->n >= QUEUE_NOTES_MAX) {
		r = -ENOSPC;
	} else if (ns->n == ns->a) {
		size_t na = ns->a ? ns->a * 2 : 16;
		char **v = realloc(ns->v, na * sizeof(*v));
		if (!v) {
			r = -ENOMEM;
		} else {
			ns->v = v;
			ns->a = na;
		}
	}
	if (r == 0 && kind == QN_UPLOAD) {
		/* The server's path once the renames still queued are applied
		 * (queue_rename rebases it for those queued later). */
		for (struct qentry *e = q->head; e && p; e = e->next)
			if (e->kind == Q_RENAME)
				note_rebase(&p, e->path, e->path2, (e->rflags & RENAME_EXCHANGE) != 0);
	}
	if (r == 0)
		ns->v[ns->n++] = p;
	pthread_mutex_unlock(&q->lock);
	if (r < 0)
		free(p);
	return r;
}

char **queue_take_notes(struct queue *q, enum qnote kind)
{
	struct notes *ns = &q->notes[kind];
	char **out = NULL;
	pthread_mutex_lock(&q->lock);
	if (ns->n && (out = malloc((ns->n + 1) * sizeof(*out)))) {
		memcpy(out, ns->v, ns->n * sizeof(*out));
		out[ns->n] = NULL;
		ns->n = 0;
	}
	pthread_mutex_unlock(&q->lock);
	return out;
}

void queue_seq_floor(struct queue *q, uint64_t next)
{
	pthread_mutex_lock(&q->lock);
	if (next > q->next_seq)
		q->next_seq = next;
	pthread_mutex_unlock(&q->lock);
}

int queue_restore(struct queue *q, uint64_t seq, enum qkind kind, unsigned flags,
		  unsigned rflags, const char *path, const char *path2)
{
	struct qentry *e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->seq = seq;
	e->since = seq;
	e->kind = kind;
	e->flags = flags;
	e->rflags = rflags;
	e->path = strdup(path);
	e->path2 = path2 ? strdup(path2) : NULL;
	if (!e->path || (path2 && !e->path2)) {
		entry_free(e);
		return -ENOMEM;
	}
	pthread_mutex_lock(&q->lock);
	list_append(q, e);
	if (seq >= q->next_seq)
		q->next_seq = seq + 1;
	if (kind == Q_RENAME) {
		q->barrier_seq = seq;
	} else {
		struct qentry *dup = hash_find(q, path);
		if (dup)
			hash_remove(q, dup); /* the newest one takes later changes */
		unsigned h = hash_path(path);
		e->hnext = q->hash[h];
		q->hash[h] = e;
	}
	pthread_mutex_unlock(&q->lock);
	return 0;
}

char **queue_pending_paths(struct queue *q, size_t max)
{
	char **v = NULL;
	size_t n = 0;
	pthread_mutex_lock(&q->lock);
	size_t cnt = q->count < max ? q->count : max;
	if (cnt && (v = calloc(cnt + 1, sizeof(*v))))
		for (struct qentry *e = q->head; e && n < cnt; e = e->next)
			if (e->kind == Q_SYNC && !(e->flags & QF_TREE) && (v[n] = strdup(e->path)))
				n++;
	pthread_mutex_unlock(&q->lock);
	if (v && n == 0) {
		free(v);
		v = NULL;
	}
	return v;
}
