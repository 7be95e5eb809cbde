#define _GNU_SOURCE
#include "uploader.h"

#include <errno.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __linux__
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "batch.h"
#include "log.h"
#include "queue.h"
#include "record.h"
#include "worker.h"

/* Workers: each has its own connection, so uploads overlap (the queue
 * keeps dependent entries apart, see queue.h). Each holds about 8 MiB at
 * work (its compression stream, a read batch and its body). Three against
 * four, on 2 cores: cp -a of the 1 GiB upload tree peaked at 56 MiB of
 * RSS instead of 64-68 in the same time until sync, tar x and rm -rf took
 * the same time, close() to complete on the server the same 8.5 ms. */
#define UPLOADER_THREADS 3
#define BATCH_LINGER_MS 5

struct uploader {
	struct mirror *m; /* borrowed */
	pthread_t threads[UPLOADER_THREADS];
	int nthreads;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int stopping; /* under lock */
};

int uploader_backoff_ms(unsigned attempt)
{
	if (attempt == 0)
		attempt = 1;
	long ms = 200;
	for (unsigned i = 1; i < attempt && ms < UPLOADER_BACKOFF_MAX_MS; i++)
		ms *= 2;
	if (ms > UPLOADER_BACKOFF_MAX_MS)
		ms = UPLOADER_BACKOFF_MAX_MS;
	/* +-25% jitter so that many clients do not retry in step */
	long spread = ms / 2;
	return (int)(ms - ms / 4 + (long)randombytes_uniform((uint32_t)spread + 1));
}

/* Sleep ms unless stopped first. Returns 1 if stopping. */
static int nap(struct uploader *u, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&u->lock);
	while (!u->stopping)
		if (pthread_cond_timedwait(&u->cond, &u->lock, &ts) == ETIMEDOUT)
			break;
	int s = u->stopping;
	pthread_mutex_unlock(&u->lock);
	return s;
}

/* The worker's backoff between retries of one request. */
static int worker_nap(void *arg, unsigned attempt)
{
	return nap(arg, uploader_backoff_ms(attempt));
}

static enum send_result do_rename(struct worker *w, struct qentry *e)
{
	struct proto_op op = { .kind = OP_RENAME, .path = e->path, .path2 = e->path2 };
	if (e->fallback)
		goto fallback;
	if (e->rflags & RENAME_EXCHANGE)
		op.rflags = RENAME_F_EXCHANGE;
	else if (e->rflags & RENAME_NOREPLACE)
		op.rflags = RENAME_F_NOREPLACE;
	worker_fill_pmtime(w, e->path, &op.pmtime, &op.has_pmtime);
	worker_fill_pmtime(w, e->path2, &op.pmtime2, &op.has_pmtime2);
	enum send_result r = worker_send_op(w, &op, e->seq, NULL);
	if (r == SEND_OK) {
		/* The records follow (mirrord moved its lists too). */
		if (op.rflags == RENAME_F_EXCHANGE) {
			record_forget(w->rec, e->path);
			record_forget(w->rec, e->path2);
		} else {
			record_rename(w->rec, e->path, e->path2);
		}
		/* A rename can change what it moves (a folder's mtime when it
		 * changes parents): send the moved entry's own state after it. */
		if (queue_sync_since(w->m->q, e->path2, QF_META, w->since) < 0 ||
		    ((e->rflags & RENAME_EXCHANGE) &&
		     queue_sync_since(w->m->q, e->path, QF_META, w->since) < 0))
			log_error("%s: cannot queue change: out of memory", e->path2);
	}
	if (r != SEND_NOTFOUND && r != SEND_REJECTED)
		return r;
	e->fallback = 1; /* if the fallback is interrupted, do not rename again */
	/* The server did not rename: what it holds at path2 is what the
	 * record says, a delta base for what replaces it (an editor's copy
	 * renamed over the original before the copy was sent). */
	record_forget(w->rec, e->path);
fallback:
	/* The server does not hold the source (never uploaded, or changed
	 * behind its back): make both names match BACKING instead. */
	log_debug("rename %s -> %s: falling back to a full sync", e->path, e->path2);
	r = reconcile_tree(w, e->path2);
	if (r == SEND_RETRY)
		return r;
	/* The old name too, even when the new one was refused: it must not
	 * stay on the server. The first failure is the one reported. */
	char why[sizeof(w->why)];
	memcpy(why, w->why, sizeof(why));
	enum send_result r1 = reconcile_tree(w, e->path);
	if (r1 == SEND_RETRY || r == SEND_OK)
		return r1;
	memcpy(w->why, why, sizeof(why));
	return r;
}

static enum send_result process(struct worker *w, struct qentry *e)
{
	w->since = e->since;
	log_debug("seq %llu: %s %s%s%s flags %u", (unsigned long long)e->seq,
		  e->kind == Q_RENAME ? "rename" : "sync", e->path, e->path2 ? " -> " : "",
		  e->path2 ? e->path2 : "", e->flags);
	if (e->kind == Q_RENAME)
		return do_rename(w, e);
	if (e->flags & QF_TREE)
		return reconcile_tree(w, e->path);
	return worker_sync_path(w, e->path, e->flags & ~QF_FOLLOW, NULL, e->seq);
}

/* Mirroring is background work: when the CPU is short, the applications
 * using the folder (and the FUSE threads serving them) go first. Linux
 * keeps a nice value per thread; elsewhere this does nothing. */
#define UPLOADER_NICE 10

static void lower_priority(void)
{
#ifdef __linux__
	if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), UPLOADER_NICE) < 0)
		log_debug("uploader: cannot lower the thread's priority: %s", strerror(errno));
#endif
}

/* Process e until it gives an answer other than "try again" (or the
 * client stops). */
static enum send_result run_one(struct uploader *u, struct worker *w, struct qentry *e)
{
	enum send_result r;
	atomic_fetch_add(&w->m->busy_workers, 1);
	for (;;) {
		r = process(w, e);
		if (r != SEND_RETRY)
			break;
		/* Head-of-line retry keeps the order of dependent changes
		 * simple: nothing overtakes a failing entry. */
		worker_offline(w);
		e->attempts++;
		if (nap(u, uploader_backoff_ms(e->attempts)))
			break;
	}
	atomic_fetch_sub(&w->m->busy_workers, 1);
	return r;
}

/* How many times a local failure is tried again (after 0.2, 0.4 ... 6.4 s)
 * before the entry is given up ("not mirrored"). */
#define UPLOADER_LOCAL_TRIES 6

/* What r means for entry e. Returns -1 if the client is stopping. */
static int settle(struct worker *w, struct qentry *e, enum send_result r)
{
	struct mirror *m = w->m;
	switch (r) {
	case SEND_OK:
		queue_done(m->q, e);
		break;
	case SEND_RETRY: /* stopping */
	case SEND_BATCHED: /* not here: the batch settles it */
	case SEND_ALONE:   /* not here: worker_sync_path sends it */
		queue_retry(m->q, e, 0);
		return -1;
	case SEND_CHANGED:
		/* Being written, or changed while read: later. */
		log_debug("%s: %s; again shortly", e->path, w->why);
		queue_retry(m->q, e, e->attempts > 20 ? 500 : 50 + 10 * (int)e->attempts);
		break;
	case SEND_LOCAL:
		/* Out of memory or descriptors, an I/O error in BACKING: often
		 * over in a moment. Again a few times, later and later. */
		if (e->attempts < UPLOADER_LOCAL_TRIES) {
			log_warn("%s: %s; again later", e->path, w->why);
			e->attempts++;
			queue_retry(m->q, e, 100 << e->attempts);
			break;
		}
		/* fall through */
	case SEND_NOTFOUND:
	case SEND_MISSING:
	case SEND_REJECTED:
		mirror_error(m, e->path, "not mirrored: %s", w->why);
		pthread_mutex_lock(&m->stats_lock);
		m->stats.rejected++;
		pthread_mutex_unlock(&m->stats_lock);
		queue_done(m->q, e);
		break;
	}
	return 0;
}

struct flush_ctx {
	struct uploader *u;
	struct worker *w;
	int stop; /* the client is stopping: keep what is left */
};

/* A batched entry's answer: done, or sent again on its own. */
static void flushed(void *arg, void *user, enum send_result r)
{
	struct flush_ctx *f = arg;
	struct qentry *e = user;
	if (r == SEND_OK) {
		queue_done(f->w->m->q, e);
		return;
	}
	if (r == SEND_RETRY || f->stop) {
		queue_retry(f->w->m->q, e, 0);
		f->stop = 1;
		return;
	}
	f->w->batching = 0;
	r = run_one(f->u, f->w, e);
	f->w->batching = 1;
	if (settle(f->w, e, r) < 0)
		f->stop = 1;
}

/* Send the worker's batch. Returns -1 if the client is stopping. */
static int flush(struct uploader *u, struct worker *w, int stopping)
{
	struct flush_ctx f = { u, w, stopping };
	atomic_fetch_add(&w->m->busy_workers, 1);
	if (batch_flush(w, flushed, &f) == SEND_RETRY)
		f.stop = 1;
	atomic_fetch_sub(&w->m->busy_workers, 1);
	return f.stop ? -1 : 0;
}

static void *run(void *arg)
{
	struct uploader *u = arg;
	struct mirror *m = u->m;
	struct worker w;

	log_thread_name("mfs-upload");
	lower_priority();
	if (worker_init(&w, m) < 0) {
		log_error("uploader: cannot set up the HTTP client");
		worker_release(&w);
		return NULL;
	}
	w.nap = worker_nap;
	w.nap_arg = u;
	if (worker_probe(&w) != SEND_OK)
		goto out;
	/* Small files wait in the batch: what is ready is taken at once,
	 * then the batch lingers BATCH_LINGER_MS (queue_linger: new
	 * entries meanwhile wake idle uploaders, not this one) and goes
	 * when that brought nothing. One wake-up per linger instead of one
	 * per file while a cp -r or tar x keeps queueing. */
	w.batching = 1;
	for (;;) {
		struct qentry *e;
		if (!batch_pending(&w))
			e = queue_take(m->q, -1);
		else if (!(e = queue_take(m->q, 0)))
			e = queue_linger(m->q, BATCH_LINGER_MS);
		if (!e) {
			if (!batch_pending(&w))
				break; /* stopping */
			if (flush(u, &w, 0) < 0)
				goto out;
			continue;
		}
		w.batch_user = e;
		enum send_result r = run_one(u, &w, e);
		if (r == SEND_BATCHED) {
			if (batch_full(&w) && flush(u, &w, 0) < 0)
				goto out;
			continue;
		}
		if (settle(&w, e, r) < 0)
			goto out;
	}
out:
	/* Stopping: what is still batched goes back to the queue (sent
	 * first if the server answers at once). */
	if (batch_pending(&w))
		flush(u, &w, 1);
	worker_release(&w);
	return NULL;
}

struct uploader *uploader_start(struct mirror *m)
{
	struct uploader *u = calloc(1, sizeof(*u));
	if (!u)
		return NULL;
	u->m = m;
	pthread_mutex_init(&u->lock, NULL);
	pthread_cond_init(&u->cond, NULL);
	for (int i = 0; i < UPLOADER_THREADS; i++)
		if (pthread_create(&u->threads[u->nthreads], NULL, run, u) == 0)
			u->nthreads++;
	if (u->nthreads == 0) {
		pthread_mutex_destroy(&u->lock);
		pthread_cond_destroy(&u->cond);
		free(u);
		return NULL;
	}
	return u;
}

void uploader_stop(struct uploader *u, int drain_ms)
{
	if (!u)
		return;
	struct mirror *m = u->m;
	int64_t deadline = queue_now() + (int64_t)drain_ms * 1000000;
	for (;;) {
		struct queue_stats st;
		queue_get_stats(m->q, &st);
		pthread_mutex_lock(&m->stats_lock);
		int offline = m->stats.offline_since != 0;
		pthread_mutex_unlock(&m->stats_lock);
		if (st.pending == 0 || offline || queue_now() >= deadline)
			break;
		nap(u, 20); /* bounded poll while the queue drains */
	}
	pthread_mutex_lock(&u->lock);
	u->stopping = 1;
	pthread_cond_broadcast(&u->cond);
	pthread_mutex_unlock(&u->lock);
	queue_stop(m->q);
	for (int i = 0; i < u->nthreads; i++)
		pthread_join(u->threads[i], NULL);
	pthread_mutex_destroy(&u->lock);
	pthread_cond_destroy(&u->cond);
	free(u);
}
