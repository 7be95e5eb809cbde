#define _GNU_SOURCE
#include "ofile.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "path.h"
#include "queue.h"

static unsigned slot(dev_t dev, ino_t ino)
{
	return (unsigned)(((uint64_t)ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)dev) >> 40) % OFILE_HASH;
}

void ofiles_init(struct ofiles *t, struct queue *q)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->lock, NULL);
	t->q = q;
}

void ofiles_release(struct ofiles *t)
{
	if (!t)
		return;
	for (unsigned i = 0; i < OFILE_HASH; i++)
		while (t->dirty[i]) {
			struct dirty *n = t->dirty[i]->next;
			free(t->dirty[i]);
			t->dirty[i] = n;
		}
	for (unsigned i = 0; i < OFILE_HASH; i++) {
		struct ofile *of = t->hash[i];
		while (of) {
			struct ofile *n = of->next;
			free(of->path);
			free(of);
			of = n;
		}
		t->hash[i] = NULL;
	}
	pthread_mutex_destroy(&t->lock);
}

static struct ofile *find(struct ofiles *t, dev_t dev, ino_t ino)
{
	for (struct ofile *of = t->hash[slot(dev, ino)]; of; of = of->next)
		if (of->dev == dev && of->ino == ino)
			return of;
	return NULL;
}

struct ofile *ofiles_open(struct ofiles *t, dev_t dev, ino_t ino, const char *path, int writer)
{
	pthread_mutex_lock(&t->lock);
	struct ofile *of = find(t, dev, ino);
	if (!of) {
		of = calloc(1, sizeof(*of));
		if (!of)
			goto out;
		of->dev = dev;
		of->ino = ino;
		of->path = path ? strdup(path) : NULL;
		unsigned s = slot(dev, ino);
		of->next = t->hash[s];
		t->hash[s] = of;
	} else if (path && (!of->path || strcmp(of->path, path) != 0)) {
		/* Opened under another name (a hard link, or a rename done
		 * behind our back): the newest name is the one to use. */
		char *p = strdup(path);
		if (p) {
			free(of->path);
			of->path = p;
		}
	}
	of->refs++;
	if (writer)
		of->writers++;
out:
	pthread_mutex_unlock(&t->lock);
	return of;
}

void ofiles_close(struct ofiles *t, struct ofile *of, int writer)
{
	pthread_mutex_lock(&t->lock);
	if (writer) {
		if (of->writers == 0)
			abort(); /* unbalanced open/close: a bug */
		of->writers--;
		/* Its sync, deferred while the file was written, may go now:
		 * the time from close() to the server is what users feel. */
		if (of->writers == 0 && of->path)
			queue_undefer(t->q, of->path);
	}
	if (--of->refs == 0) {
		struct ofile **pp = &t->hash[slot(of->dev, of->ino)];
		while (*pp != of)
			pp = &(*pp)->next;
		*pp = of->next;
		free(of->path);
		free(of);
	}
	pthread_mutex_unlock(&t->lock);
}

void ofiles_written(struct ofiles *t, struct ofile *of)
{
	long long now = queue_now();
	atomic_store_explicit(&of->last_write, now, memory_order_relaxed);
	if (atomic_load_explicit(&of->queued, memory_order_acquire))
		return;
	long long zero = 0;
	atomic_compare_exchange_strong(&of->dirty_since, &zero, now);
	if (atomic_exchange(&of->queued, 1))
		return;
	pthread_mutex_lock(&t->lock);
	/* Open for writing: the sync waits for the close (or for the file
	 * to be quiet), as the worker would make it wait. */
	int r = !of->path ? 0 :
		of->writers ? queue_sync_open(t->q, of->path, QF_CONTENT, OFILES_QUIET_MS) :
			      queue_sync(t->q, of->path, QF_CONTENT);
	if (r < 0)
		log_error("%s: cannot queue change: out of memory", of->path);
	pthread_mutex_unlock(&t->lock);
}

void ofiles_renamed(struct ofiles *t, const char *from, const char *to, int exchange)
{
	pthread_mutex_lock(&t->lock);
	for (unsigned i = 0; i < OFILE_HASH; i++)
		for (struct ofile *of = t->hash[i]; of; of = of->next) {
			if (!of->path)
				continue;
			char *np = path_rebase(of->path, from, to);
			if (!np && exchange)
				np = path_rebase(of->path, to, from);
			if (np) {
				free(of->path);
				of->path = np;
			}
		}
	pthread_mutex_unlock(&t->lock);
}

void ofiles_unlinked(struct ofiles *t, const char *path)
{
	pthread_mutex_lock(&t->lock);
	for (unsigned i = 0; i < OFILE_HASH; i++)
		for (struct ofile *of = t->hash[i]; of; of = of->next)
			if (of->path && strcmp(of->path, path) == 0) {
				free(of->path);
				of->path = NULL;
			}
	pthread_mutex_unlock(&t->lock);
}

size_t ofiles_writing(struct ofiles *t, dev_t *devs, ino_t *inos, size_t cap)
{
	size_t n = 0;
	pthread_mutex_lock(&t->lock);
	for (unsigned i = 0; i < OFILE_HASH; i++)
		for (struct ofile *of = t->hash[i]; of; of = of->next) {
			if (!of->writers)
				continue;
			if (n < cap) {
				devs[n] = of->dev;
				inos[n] = of->ino;
			}
			n++;
		}
	pthread_mutex_unlock(&t->lock);
	return n;
}

int ofiles_begin_upload(struct ofiles *t, dev_t dev, ino_t ino, int64_t *last_write,
			int64_t *dirty_since)
{
	int writing = 0;
	*last_write = 0;
	*dirty_since = 0;
	pthread_mutex_lock(&t->lock);
	struct ofile *of = find(t, dev, ino);
	if (of) {
		atomic_store(&of->queued, 0);
		*last_write = atomic_load(&of->last_write);
		*dirty_since = atomic_load(&of->dirty_since);
		writing = of->writers > 0;
	}
	pthread_mutex_unlock(&t->lock);
	return writing;
}

void ofiles_uploaded(struct ofiles *t, dev_t dev, ino_t ino, int64_t started)
{
	pthread_mutex_lock(&t->lock);
	struct ofile *of = find(t, dev, ino);
	if (of && atomic_load(&of->last_write) < started)
		atomic_store(&of->dirty_since, 0);
	pthread_mutex_unlock(&t->lock);
}

void ofiles_postpone(struct ofiles *t, dev_t dev, ino_t ino, int64_t now)
{
	pthread_mutex_lock(&t->lock);
	struct ofile *of = find(t, dev, ino);
	if (of && atomic_load(&of->dirty_since) != 0)
		atomic_store(&of->dirty_since, now);
	pthread_mutex_unlock(&t->lock);
}

/* Merge [a, b) into d's sorted disjoint ranges. When they are all used,
 * the new range joins its nearest neighbour: a superset is still right. */
static void add_range(struct dirty *d, uint64_t a, uint64_t b)
{
	int i = 0;
	while (i < d->n && d->r[i].end < a)
		i++;
	int j = i;
	while (j < d->n && d->r[j].start <= b) {
		if (d->r[j].start < a)
			a = d->r[j].start;
		if (d->r[j].end > b)
			b = d->r[j].end;
		j++;
	}
	/* ranges i..j-1 merge into [a, b) */
	if (j == i && d->n == OFILE_RANGES) {
		/* no room: widen a neighbour */
		int k = i < d->n ? i : d->n - 1;
		if (a < d->r[k].start)
			d->r[k].start = a;
		if (b > d->r[k].end)
			d->r[k].end = b;
		/* it may now touch the next one */
		while (k + 1 < d->n && d->r[k + 1].start <= d->r[k].end) {
			if (d->r[k + 1].end > d->r[k].end)
				d->r[k].end = d->r[k + 1].end;
			memmove(&d->r[k + 1], &d->r[k + 2], (size_t)(d->n - k - 2) * sizeof(d->r[0]));
			d->n--;
		}
		while (k > 0 && d->r[k - 1].end >= d->r[k].start) {
			if (d->r[k].end > d->r[k - 1].end)
				d->r[k - 1].end = d->r[k].end;
			memmove(&d->r[k], &d->r[k + 1], (size_t)(d->n - k - 1) * sizeof(d->r[0]));
			d->n--;
			k--;
		}
		return;
	}
	memmove(&d->r[i + 1], &d->r[j], (size_t)(d->n - j) * sizeof(d->r[0]));
	d->n = d->n - (j - i) + 1;
	d->r[i].start = a;
	d->r[i].end = b;
}

static struct dirty **dirty_slot(struct ofiles *t, dev_t dev, ino_t ino)
{
	struct dirty **pp = &t->dirty[slot(dev, ino)];
	while (*pp && !((*pp)->dev == dev && (*pp)->ino == ino))
		pp = &(*pp)->next;
	return pp;
}

void ofiles_dirty(struct ofiles *t, dev_t dev, ino_t ino, uint64_t off, uint64_t len)
{
	pthread_mutex_lock(&t->lock);
	struct dirty **pp = dirty_slot(t, dev, ino), *d = *pp;
	if (!d) {
		d = calloc(1, sizeof(*d));
		if (!d) {
			pthread_mutex_unlock(&t->lock);
			return; /* unknown = whole file: still right */
		}
		d->dev = dev;
		d->ino = ino;
		*pp = d;
	}
	if (len == 0 || off + len < off)
		d->whole = 1;
	else if (!d->whole)
		add_range(d, off, off + len);
	pthread_mutex_unlock(&t->lock);
}

int ofiles_take_dirty(struct ofiles *t, dev_t dev, ino_t ino, struct drange *out)
{
	int n = -1;
	pthread_mutex_lock(&t->lock);
	struct dirty **pp = dirty_slot(t, dev, ino), *d = *pp;
	if (d) {
		*pp = d->next;
		if (!d->whole) {
			n = d->n;
			memcpy(out, d->r, (size_t)n * sizeof(*out));
		}
		free(d);
	}
	pthread_mutex_unlock(&t->lock);
	return n;
}

void ofiles_return_dirty(struct ofiles *t, dev_t dev, ino_t ino, const struct drange *r, int n)
{
	if (n < 0) {
		ofiles_dirty(t, dev, ino, 0, 0);
		return;
	}
	for (int i = 0; i < n; i++)
		ofiles_dirty(t, dev, ino, r[i].start, r[i].end - r[i].start);
}
