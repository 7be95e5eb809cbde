/*
 * reconcile: make a subtree on the server equal to the same subtree of
 * BACKING, sending only what differs.
 *
 * Used when mounting (the whole tree: BACKING may have changed while
 * nothing was mounted, or DIR behind mirrord's back) and when a rename
 * cannot be applied on the server (its source is not there).
 *
 * 1. The server's listing of the subtree (GET /v1/manifest, NDJSON) goes
 *    into a hash map: path -> type, mode, size, mtime, target.
 * 2. BACKING is walked (never following symlinks). An entry that matches
 *    its server entry (type, mode, mtime, size or target) costs nothing;
 *    the others are collected with their sizes, so progress can be shown
 *    against a known total.
 * 3. Server entries that BACKING lacks are deleted (a deleted folder's
 *    descendants are skipped), then the differing entries are synced in
 *    walk order (parents first).
 *
 * Memory: the map holds the server's subtree (about 100 bytes an entry);
 * the walk keeps one open folder per level.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch.h"
#include "links.h"
#include "log.h"
#include "mline.h"
#include "path.h"
#include "queue.h"
#include "record.h"
#include "safeopen.h"
#include "worker.h"

struct rentry {
	char *path;
	char *target;
	char type;
	int seen;
	uint32_t mode;
	uint64_t size;
	struct timespec mtime;
	struct rentry *hnext;
	struct rentry *lnext; /* manifest order */
};

struct rmap {
	struct rentry **b;
	size_t nb, n;
	struct rentry *head, **tail;
};

struct todo {
	char *path;
	struct stat st;
};

struct rec {
	struct worker *w;
	struct rmap map;
	struct todo *todo; /* owned */
	size_t ntodo, atodo;
	uint64_t bytes_total;
	int failed; /* -errno of a local failure */
	struct record_snap *snap; /* owned, may be NULL */
};

static size_t hstr(const char *s)
{
	size_t h = 5381;
	while (*s)
		h = h * 33 + (uint8_t)*s++;
	return h;
}

static int map_grow(struct rmap *m)
{
	size_t nb = m->nb ? m->nb * 2 : 1024;
	struct rentry **b = calloc(nb, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < m->nb; i++)
		for (struct rentry *e = m->b[i], *n; e; e = n) {
			n = e->hnext;
			e->hnext = b[hstr(e->path) % nb];
			b[hstr(e->path) % nb] = e;
		}
	free(m->b);
	m->b = b;
	m->nb = nb;
	return 0;
}

static struct rentry *map_find(struct rmap *m, const char *path)
{
	if (!m->nb)
		return NULL;
	for (struct rentry *e = m->b[hstr(path) % m->nb]; e; e = e->hnext)
		if (strcmp(e->path, path) == 0)
			return e;
	return NULL;
}

static void map_release(struct rmap *m)
{
	for (struct rentry *e = m->head, *n; e; e = n) {
		n = e->lnext;
		free(e->path);
		free(e->target);
		free(e);
	}
	free(m->b);
	memset(m, 0, sizeof(*m));
}

/* One manifest line -> map entry. Malformed lines are a server bug: stop. */
static int on_line(void *arg, char *line, size_t len)
{
	struct rec *rc = arg;
	struct rmap *m = &rc->map;
	struct mline ml;
	int r = mline_parse(line, len, &ml);
	if (r <= 0)
		return r;
	struct rentry *e = NULL;
	if ((m->n * 2 >= m->nb && map_grow(m) < 0) || !(e = calloc(1, sizeof(*e)))) {
		mline_release(&ml);
		return -ENOMEM;
	}
	e->path = ml.path; /* the strings move to the entry */
	e->target = ml.target;
	e->type = ml.type;
	e->mode = ml.mode;
	e->size = ml.size;
	e->mtime = ml.mtime;
	size_t h = hstr(e->path) % m->nb;
	e->hnext = m->b[h];
	m->b[h] = e;
	*m->tail = e;
	m->tail = &e->lnext;
	m->n++;
	return 0;
}

static int same_time(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* Does BACKING's entry (dirfd, name) equal the server's? Same size and
 * mtime counts for a file only if the record says we sent it as it is. */
static int matches(struct rec *rc, const char *path, const struct stat *st, const char *target,
		   const struct rentry *e)
{
	if (!e)
		return 0;
	if (S_ISDIR(st->st_mode))
		return e->type == 'd' && e->mode == (st->st_mode & 07777) &&
		       same_time(&e->mtime, &st->st_mtim);
	if (S_ISREG(st->st_mode))
		return e->type == 'f' && e->mode == (st->st_mode & 07777) &&
		       e->size == (uint64_t)st->st_size && same_time(&e->mtime, &st->st_mtim) &&
		       (rc->snap ? record_snap_unchanged(rc->snap, path, st)
				 : record_unchanged(rc->w->rec, path, st));
	if (S_ISLNK(st->st_mode))
		return e->type == 'l' && e->target && target && same_time(&e->mtime, &st->st_mtim) &&
		       strcmp(target, e->target) == 0;
	return 0;
}

static int add_todo(struct rec *rc, const char *path, const struct stat *st)
{
	if (rc->ntodo == rc->atodo) {
		size_t na = rc->atodo ? rc->atodo * 2 : 64;
		struct todo *t = realloc(rc->todo, na * sizeof(*t));
		if (!t)
			return -ENOMEM;
		rc->todo = t;
		rc->atodo = na;
	}
	if (!(rc->todo[rc->ntodo].path = strdup(path)))
		return -ENOMEM;
	rc->todo[rc->ntodo].st = *st;
	rc->ntodo++;
	if (S_ISREG(st->st_mode))
		rc->bytes_total += (uint64_t)st->st_size;
	return 0;
}

/* Look at one BACKING entry: mark its server twin seen, queue a sync if
 * they differ. */
static int visit(struct rec *rc, const char *path, const struct stat *st, const char *target)
{
	struct rentry *e = map_find(&rc->map, path);
	int special = !S_ISDIR(st->st_mode) && !S_ISREG(st->st_mode) && !S_ISLNK(st->st_mode);
	if (e)
		e->seen = 1;
	if (S_ISREG(st->st_mode) && st->st_nlink > 1)
		(void)links_add(rc->w->m->links, st->st_ino, path);
	if (special) {
		pthread_mutex_lock(&rc->w->m->stats_lock);
		rc->w->m->stats.skipped_special++;
		pthread_mutex_unlock(&rc->w->m->stats_lock);
		if (e)
			e->seen = 0; /* the server must not keep anything there */
		return 0;
	}
	if (matches(rc, path, st, target, e))
		return 0;
	return add_todo(rc, path, st);
}

/* A folder seen by the walk could not be opened (renamed or removed since
 * its lstat, or unreadable): its contents are unknown, not absent. Keep
 * what the server has below it; a change made meanwhile is in the queue
 * (deleting it here would empty a folder whose rename is queued, and the
 * rename would then carry the empty folder). */
static void keep_server_subtree(struct rec *rc, const char *path)
{
	for (struct rentry *e = rc->map.head; e; e = e->lnext)
		if (path_is_under(e->path, path))
			e->seen = 1;
}

/*
 * The walk of BACKING runs in its own thread while the worker reads the
 * server's listing: both sides are scanned at once. It only collects
 * (path, lstat, symlink target); the comparison comes after both are done.
 */
struct lentry {
	char *path;   /* owned */
	char *target; /* owned; symlinks only */
	struct stat st;
	int unreadable; /* a folder that could not be opened */
};

struct lwalk {
	int backing_fd;
	const char *root; /* borrowed */
	struct lentry *v; /* owned */
	size_t n, alloc;
	int err;
};

static int lw_add(struct lwalk *lw, int dirfd, const char *name, const char *path,
		  const struct stat *st, int unreadable)
{
	if (lw->n == lw->alloc) {
		size_t na = lw->alloc ? lw->alloc * 2 : 256;
		struct lentry *v = realloc(lw->v, na * sizeof(*v));
		if (!v)
			return -ENOMEM;
		lw->v = v;
		lw->alloc = na;
	}
	struct lentry *e = &lw->v[lw->n];
	memset(e, 0, sizeof(*e));
	if (!(e->path = strdup(path)))
		return -ENOMEM;
	if (st)
		e->st = *st;
	e->unreadable = unreadable;
	if (st && S_ISLNK(st->st_mode)) {
		char t[PATH_MAX_LEN + 1];
		ssize_t n = readlinkat(dirfd, name, t, sizeof(t) - 1);
		if (n >= 0) {
			t[n] = '\0';
			e->target = strdup(t); /* NULL: compared as different */
		}
	}
	lw->n++;
	return 0;
}

static int lw_walk(struct lwalk *lw, int dirfd, const char *path)
{
	int r = 0;
	int fd = dup(dirfd);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		struct stat st;
		if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue; /* gone since readdir */
		char *child = path_join(path, de->d_name);
		if (!child) {
			r = -ENOMEM;
			break;
		}
		r = lw_add(lw, dirfd, de->d_name, child, &st, 0);
		if (r == 0 && S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd, de->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0) {
				r = lw_walk(lw, sub, child);
				close(sub);
			} else {
				r = lw_add(lw, dirfd, de->d_name, child, NULL, 1);
			}
		}
		free(child);
		if (r < 0)
			break;
	}
	closedir(d);
	return r;
}

static void *lw_run(void *arg)
{
	struct lwalk *lw = arg;
	struct stat st;
	const char *path = lw->root;
	int r = safe_lstat(lw->backing_fd, path, &st);
	if (r == -ENOENT) {
		lw->err = 0; /* nothing in BACKING: every server entry goes */
		return NULL;
	}
	if (r == 0) {
		const char *base = ".";
		int pfd = path[0] ? safe_open_parent(lw->backing_fd, path, 0, &base)
				  : dup(lw->backing_fd);
		if (pfd < 0) {
			r = pfd;
		} else {
			r = lw_add(lw, pfd, base, path, &st, 0);
			close(pfd);
		}
		if (r == 0 && S_ISDIR(st.st_mode)) {
			int dfd = safe_openat(lw->backing_fd, path, O_RDONLY | O_DIRECTORY, 0);
			if (dfd >= 0) {
				r = lw_walk(lw, dfd, path);
				close(dfd);
			}
		}
	}
	lw->err = r;
	return NULL;
}

static void lw_release(struct lwalk *lw)
{
	for (size_t i = 0; i < lw->n; i++) {
		free(lw->v[i].path);
		free(lw->v[i].target);
	}
	free(lw->v);
	lw->v = NULL;
	lw->n = lw->alloc = 0;
}

static void progress(struct mirror *m, int active, uint64_t done_e, uint64_t tot_e,
		     uint64_t done_b, uint64_t tot_b)
{
	pthread_mutex_lock(&m->stats_lock);
	m->stats.reconciling = active;
	m->stats.rec_entries_done = done_e;
	m->stats.rec_entries_total = tot_e;
	m->stats.rec_bytes_done = done_b;
	m->stats.rec_bytes_total = tot_b;
	pthread_mutex_unlock(&m->stats_lock);
}

/* What the sync of one differing path (res) means. Returns res, or
 * SEND_OK for outcomes that are only reported. */
static enum send_result sync_outcome(struct worker *w, const char *path, enum send_result res)
{
	struct mirror *m = w->m;
	/* Sent without the front end's knowledge: let it check that it
	 * knows the path (queue.h, uploads). */
	if (res == SEND_OK && m->keep_missing && queue_note(m->q, QN_UPLOAD, path) == -ENOMEM)
		mirror_error(m, path, "cannot note an upload: out of memory");
	if (res == SEND_CHANGED) {
		/* Changing right now: the queue will come back to it. */
		if (queue_sync_since(m->q, path, QF_CONTENT, w->since) < 0)
			mirror_error(m, path, "cannot queue change: out of memory");
	} else if (res != SEND_OK && res != SEND_RETRY) {
		mirror_error(m, path, "cannot sync: %s", w->why);
		if (res == SEND_REJECTED) {
			pthread_mutex_lock(&m->stats_lock);
			m->stats.rejected++;
			pthread_mutex_unlock(&m->stats_lock);
		}
	}
	return res == SEND_RETRY ? SEND_RETRY : SEND_OK;
}

struct synced_ctx {
	struct worker *w;
	enum send_result res; /* SEND_RETRY once stopping */
	int gone;             /* a path vanished before it could be sent alone */
};

/* A batched path's answer: done, or sent again on its own. */
static void synced(void *arg, void *user, enum send_result r)
{
	struct synced_ctx *sc = arg;
	struct todo *t = user;
	struct worker *w = sc->w;
	if (r == SEND_RETRY || sc->res == SEND_RETRY) {
		sc->res = SEND_RETRY;
		return;
	}
	if (r != SEND_OK) {
		struct stat now;
		if (safe_lstat(w->m->backing_fd, t->path, &now) == -ENOENT) {
			/* Gone since it was read (see pool_run): not deleted,
			 * the comparison runs again instead. */
			sc->gone = 1;
			return;
		}
		w->batching = 0;
		r = worker_sync_path(w, t->path, QF_CONTENT, &now, 0);
		w->batching = 1;
	}
	sc->res = sync_outcome(w, t->path, r);
}

/* The differing entries, synced by the comparison's worker and, for
 * regular files, by helpers: each has its own connection, so uploads and
 * mirrord's fsyncs overlap. */
#define RECONCILE_HELPERS 2
#define RECONCILE_HELPER_MIN 16 /* regular files that make helpers worth it */

struct sync_pool {
	struct mirror *m;       /* borrowed */
	struct todo *todo;      /* borrowed */
	size_t ntodo;
	int files;              /* 0: everything but regular files; 1: regular files */
	pthread_mutex_t lock;
	/* under lock: */
	size_t next;
	uint64_t done, total, bytes, bytes_total;
	int again;              /* an entry vanished since the walk */
	int stop;               /* the client is stopping */
};

/* The next entry of the pool's phase, or NULL. */
static struct todo *pool_take(struct sync_pool *p)
{
	struct todo *t = NULL;
	pthread_mutex_lock(&p->lock);
	while (!p->stop && p->next < p->ntodo && !t) {
		struct todo *c = &p->todo[p->next++];
		if ((S_ISREG(c->st.st_mode) ? 1 : 0) == p->files)
			t = c;
	}
	pthread_mutex_unlock(&p->lock);
	return t;
}

/* One entry is finished (gone: vanished since the walk). */
static void pool_count(struct sync_pool *p, const struct todo *t, int gone, int stop)
{
	pthread_mutex_lock(&p->lock);
	p->again |= gone;
	p->stop |= stop;
	p->done++;
	if (!gone && S_ISREG(t->st.st_mode))
		p->bytes += (uint64_t)t->st.st_size;
	progress(p->m, 1, p->done, p->total, p->bytes, p->bytes_total);
	pthread_mutex_unlock(&p->lock);
}

/* Sync the entries of the pool's phase with w until none is left. Small
 * files go in batches (batch.h); the batch reports them back through
 * synced(), which sends again alone what it could not. */
static void pool_run(struct sync_pool *p, struct worker *w)
{
	struct mirror *m = p->m;
	struct synced_ctx sc = { w, SEND_OK, 0 };
	int was_batching = w->batching;
	struct todo *t;
	/* (A caller's batch is always sent before a comparison starts: the
	 * queue runs nothing beside one. Never mix the two anyway.) */
	w->batching = !batch_pending(w);
	while ((t = pool_take(p))) {
		struct stat now;
		int lr = safe_lstat(m->backing_fd, t->path, &now);
		if (lr == -ENOENT) {
			/* Gone since the walk: removed or renamed meanwhile, and
			 * queued by the front end behind this entry. Not deleted
			 * here: a queued rename of a folder above it must carry
			 * the server's copy, which the comparison after that
			 * rename then brings up to date. */
			pool_count(p, t, 1, 0);
			continue;
		}
		w->batch_user = t;
		enum send_result res = worker_sync_path(w, t->path, QF_CONTENT,
							lr == 0 ? &now : NULL, 0);
		if (res == SEND_BATCHED && batch_full(w))
			res = batch_flush(w, synced, &sc) == SEND_RETRY ? SEND_RETRY : sc.res;
		else if (res != SEND_BATCHED)
			res = sync_outcome(w, t->path, res);
		pool_count(p, t, 0, res == SEND_RETRY);
	}
	/* What is still batched goes now, even when stopping: the batch
	 * then reports every file back as not sent. */
	int stop = w->batching && (batch_flush(w, synced, &sc) == SEND_RETRY || sc.res == SEND_RETRY);
	pthread_mutex_lock(&p->lock);
	p->stop |= stop;
	p->again |= sc.gone;
	pthread_mutex_unlock(&p->lock);
	w->batching = was_batching;
}

struct helper {
	struct worker w;
	struct sync_pool *p; /* borrowed */
};

/* A helper worker like w (its own connection and record), or NULL. */
static struct worker *helper_new(struct sync_pool *p, struct worker *w)
{
	struct helper *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	if (worker_init(&h->w, w->m) < 0) {
		worker_release(&h->w);
		free(h);
		return NULL;
	}
	h->p = p;
	h->w.nap = w->nap;
	h->w.nap_arg = w->nap_arg;
	h->w.since = w->since;
	return &h->w;
}

static void helper_free(struct worker *hw)
{
	if (!hw)
		return;
	worker_release(hw);
	free((struct helper *)hw); /* w is the first member */
}

static void *helper_run(void *arg)
{
	struct helper *h = arg;
	pool_run(h->p, &h->w);
	return NULL;
}

enum send_result reconcile_tree(struct worker *w, const char *path)
{
	struct mirror *m = w->m;
	struct rec rc = { .w = w };
	enum send_result res = SEND_LOCAL;
	char *esc = NULL, target[8192];
	long status = 0;
	int r;

	struct lwalk lw = { .backing_fd = m->backing_fd, .root = path };
	pthread_t walker;
	int walking = 0;

	rc.map.tail = &rc.map.head;
	progress(m, 1, 0, 0, 0, 0);
	if (pthread_create(&walker, NULL, lw_run, &lw) == 0)
		walking = 1;
	else
		lw_run(&lw); /* no thread: one after the other */
	esc = http_escape(&w->http, path);
	if (!esc)
		goto out;
	snprintf(target, sizeof(target), "/v1/manifest?path=%s", esc);
	for (unsigned attempt = 1;; attempt++) {
		r = http_get_lines(&w->http, target, on_line, &rc, &status);
		if (r == 0)
			break;
		if (r == -EPROTO && send_classify(status) != SEND_RETRY) {
			res = send_classify(status);
			snprintf(w->why, sizeof(w->why), "manifest refused with %ld", status);
			goto out;
		}
		if (r == -ENOMEM || r == -EMSGSIZE) {
			snprintf(w->why, sizeof(w->why), "cannot read the server's listing: %s",
				 strerror(-r));
			goto out;
		}
		snprintf(w->why, sizeof(w->why), "cannot list the server: %s",
			 r == -EPROTO ? "server error" : w->http.err[0] ? w->http.err : strerror(-r));
		worker_offline(w);
		/* A partial listing is thrown away: start again. */
		map_release(&rc.map);
		rc.map.tail = &rc.map.head;
		if (!w->nap || w->nap(w->nap_arg, attempt)) {
			res = SEND_RETRY;
			goto out;
		}
	}

	/* the record, in one read, while the walker may still be busy */
	rc.snap = record_snapshot(w->rec, path);
	if (walking) {
		pthread_join(walker, NULL);
		walking = 0;
	}
	r = lw.err;
	for (size_t i = 0; r == 0 && i < lw.n; i++) {
		if (lw.v[i].unreadable)
			keep_server_subtree(&rc, lw.v[i].path);
		else
			r = visit(&rc, lw.v[i].path, &lw.v[i].st, lw.v[i].target);
	}
	lw_release(&lw);
	if (r < 0) {
		snprintf(w->why, sizeof(w->why), "cannot scan the backing folder: %s", strerror(-r));
		goto out;
	}

	uint64_t ndel = 0;
	for (struct rentry *e = rc.map.head; e; e = e->lnext)
		ndel += !e->seen;
	uint64_t total = ndel + rc.ntodo, done = 0, bytes = 0;
	progress(m, 1, 0, total, 0, rc.bytes_total);

	/* Deletions first; a folder's removal takes its descendants along. */
	const char *deleted = NULL;
	for (struct rentry *e = rc.map.head; e; e = e->lnext) {
		if (e->seen)
			continue;
		if (deleted && path_is_under(e->path, deleted)) {
			progress(m, 1, ++done, total, bytes, rc.bytes_total);
			continue;
		}
		struct proto_op op = { .kind = OP_DELETE, .path = e->path };
		worker_fill_pmtime(w, e->path, &op.pmtime, &op.has_pmtime);
		res = worker_send_op(w, &op, 0, NULL);
		if (res == SEND_RETRY)
			goto out;
		if (res != SEND_OK)
			mirror_error(m, e->path, "cannot delete on the server: %s", w->why);
		deleted = e->path;
		progress(m, 1, ++done, total, bytes, rc.bytes_total);
	}
	/* Folders, symlinks and the like first, in walk order (parents
	 * before children), by this worker; then the regular files, by this
	 * worker and helpers with connections of their own. */
	struct sync_pool pool = { .m = m, .todo = rc.todo, .ntodo = rc.ntodo, .done = done,
				  .total = total, .bytes_total = rc.bytes_total };
	pthread_mutex_init(&pool.lock, NULL);
	pool_run(&pool, w);
	pool.files = 1;
	pool.next = 0;
	pthread_t helpers[RECONCILE_HELPERS];
	struct worker *hw[RECONCILE_HELPERS];
	int nh = 0;
	for (size_t i = 0, nf = 0; i < rc.ntodo && !nh && !pool.stop; i++)
		if (S_ISREG(rc.todo[i].st.st_mode) && ++nf >= RECONCILE_HELPER_MIN) {
			for (; nh < RECONCILE_HELPERS; nh++)
				if (!(hw[nh] = helper_new(&pool, w)) ||
				    pthread_create(&helpers[nh], NULL, helper_run, hw[nh]) != 0) {
					helper_free(hw[nh]);
					break;
				}
		}
	if (!pool.stop)
		pool_run(&pool, w);
	for (int i = 0; i < nh; i++) {
		pthread_join(helpers[i], NULL);
		helper_free(hw[i]);
	}
	pthread_mutex_destroy(&pool.lock);
	if (pool.stop) {
		res = SEND_RETRY;
		goto out;
	}
	int again = pool.again;
	res = SEND_OK;
	if (again && queue_sync_since(m->q, path, QF_TREE, w->since) < 0)
		mirror_error(m, path, "cannot queue change: out of memory");
	pthread_mutex_lock(&m->stats_lock);
	m->stats.rec_runs++;
	pthread_mutex_unlock(&m->stats_lock);
	log_info("reconciled /%s: %llu entries sent or deleted", path,
		 (unsigned long long)total);
out:
	if (walking)
		pthread_join(walker, NULL);
	lw_release(&lw);
	record_snap_free(rc.snap);
	pthread_mutex_lock(&m->stats_lock);
	m->stats.reconciling = 0;
	pthread_mutex_unlock(&m->stats_lock);
	for (size_t i = 0; i < rc.ntodo; i++)
		free(rc.todo[i].path);
	free(rc.todo);
	map_release(&rc.map);
	free(esc);
	return res;
}
