#define _GNU_SOURCE
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chunker.h"
#include "log.h"

_Static_assert(CHUNK_MAX <= CHUNK_PROTO_MAX, "the store reads chunks into CHUNK_PROTO_MAX bytes");

struct store_pack {
	int fd;
	unsigned no;
	uint64_t size;  /* bytes reserved so far (a stage: the end of the last put) */
	size_t live;    /* entries in it */
	unsigned pins;  /* reads or writes in progress outside the lock */
	struct store_pack *next;
	/* A stage (store_stage_put): chunks at their offsets in a new file.
	 * Never punched; deleted by store_gc() unless taken, never once
	 * taken (its file is then someone else's). */
	int stage, taken;
	uint8_t token[STORE_STAGE_TOKEN];
	time_t at;                  /* last put */
	struct store_placed *placed; /* owned; in put order */
	size_t nplaced, aplaced;
};

struct store_entry {
	struct hash_id id;
	struct store_pack *pack;
	uint64_t off;
	uint32_t len;
	time_t at;
	struct store_entry *next;
};

static size_t slot(const struct store *s, const struct hash_id *id)
{
	uint64_t h;
	memcpy(&h, id->b, sizeof(h)); /* ids are uniformly random */
	return (size_t)(h % s->nb);
}

static struct store_entry *find(struct store *s, const struct hash_id *id)
{
	for (struct store_entry *e = s->tab[slot(s, id)]; e; e = e->next)
		if (memcmp(e->id.b, id->b, HASH_LEN) == 0)
			return e;
	return NULL;
}

static void pack_name(const struct store_pack *p, char out[32])
{
	snprintf(out, 32, "%s.%u", p->stage ? "stage" : "pack", p->no);
}

static void pack_free(struct store *s, struct store_pack *p)
{
	char name[32];
	for (struct store_pack **pp = &s->packs; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	if (!p->taken) {
		pack_name(p, name);
		unlinkat(s->fd, name, 0);
	}
	close(p->fd);
	free(p->placed);
	free(p);
}

/* Delete p if nothing needs it any more (a stage waits to be taken or
 * collected). Caller holds lock. */
static void pack_maybe_drop(struct store *s, struct store_pack *p)
{
	if (p->live || p->pins || p == s->cur || (p->stage && !p->taken))
		return;
	pack_free(s, p);
}

/* Unlink e from the table and its pack. Caller holds lock. */
static void drop_entry(struct store *s, struct store_entry *e)
{
	struct store_entry **pp = &s->tab[slot(s, &e->id)];
	while (*pp != e)
		pp = &(*pp)->next;
	*pp = e->next;
	s->n--;
	struct store_pack *p = e->pack;
	p->live--;
	/* Give the bytes back at once: a pack lives as long as its last chunk,
	 * and on a full disk the space of placed chunks is what lets the next
	 * file be built. */
#ifdef FALLOC_FL_PUNCH_HOLE
	if (!p->stage)
		(void)fallocate(p->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)e->off,
			(off_t)e->len);
#endif
	free(e);
	pack_maybe_drop(s, p);
}

int store_open(struct store *s, int statefd, struct tmpdir *tmp)
{
	memset(s, 0, sizeof(*s));
	s->fd = -1;
	s->tmp = tmp;
	pthread_mutex_init(&s->lock, NULL);
	s->nb = 4096;
	if (!(s->tab = calloc(s->nb, sizeof(*s->tab))))
		return -ENOMEM;
	if (mkdirat(statefd, "chunks", 0700) < 0 && errno != EEXIST)
		return -errno;
	int fd = openat(statefd, "chunks", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	s->fd = fd;
	/* Leftovers of an earlier run (packs, or the per-chunk files and
	 * folders of older versions): the table that knew them is gone. */
	int dfd = dup(fd);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return 0;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (unlinkat(fd, de->d_name, 0) == 0)
			continue;
		int sub = openat(fd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		DIR *sd = sub >= 0 ? fdopendir(sub) : NULL;
		if (sd) {
			struct dirent *se;
			while ((se = readdir(sd)))
				unlinkat(sub, se->d_name, 0);
			closedir(sd);
		} else if (sub >= 0) {
			close(sub);
		}
		unlinkat(fd, de->d_name, AT_REMOVEDIR);
	}
	closedir(d);
	return 0;
}

void store_close(struct store *s)
{
	if (!s || !s->tab)
		return;
	for (size_t i = 0; i < s->nb; i++)
		for (struct store_entry *e = s->tab[i], *n; e; e = n) {
			n = e->next;
			free(e);
		}
	free(s->tab);
	s->tab = NULL;
	for (struct store_pack *p = s->packs, *n; p; p = n) {
		n = p->next;
		close(p->fd);
		free(p->placed);
		free(p);
	}
	s->packs = s->cur = NULL;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	pthread_mutex_destroy(&s->lock);
}

int store_has(struct store *s, const struct hash_id *id)
{
	pthread_mutex_lock(&s->lock);
	int r = find(s, id) != NULL;
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* Grow the table when it gets crowded. Caller holds lock. */
static void maybe_grow(struct store *s)
{
	if (s->n < s->nb)
		return;
	size_t nb = s->nb * 2;
	struct store_entry **t = calloc(nb, sizeof(*t));
	if (!t)
		return; /* longer chains, still correct */
	size_t old = s->nb;
	struct store_entry **ot = s->tab;
	s->tab = t;
	s->nb = nb;
	for (size_t i = 0; i < old; i++)
		for (struct store_entry *e = ot[i], *n; e; e = n) {
			n = e->next;
			size_t k = slot(s, &e->id);
			e->next = t[k];
			t[k] = e;
		}
	free(ot);
}

static int pwrite_all(int fd, const void *data, size_t len, uint64_t off)
{
	const uint8_t *b = data;
	for (size_t done = 0; done < len;) {
		ssize_t w = pwrite(fd, b + done, len - done, (off_t)(off + done));
		if (w < 0 && errno != EINTR)
			return -errno;
		if (w > 0)
			done += (size_t)w;
	}
	return 0;
}

/* Make id's bytes at off of p known, unless the table has id already.
 * Caller holds lock. Returns 0 or -ENOMEM. */
static int add_entry(struct store *s, struct store_pack *p, const struct hash_id *id,
		     uint64_t off, size_t len)
{
	struct store_entry *e = find(s, id);
	if (e) {
		e->at = time(NULL);
		return 0;
	}
	if (!(e = calloc(1, sizeof(*e))))
		return -ENOMEM;
	e->id = *id;
	e->pack = p;
	e->off = off;
	e->len = (uint32_t)len;
	e->at = time(NULL);
	size_t k = slot(s, id);
	e->next = s->tab[k];
	s->tab[k] = e;
	s->n++;
	p->live++;
	maybe_grow(s);
	return 0;
}

int store_put(struct store *s, const struct hash_id *id, const void *data, size_t len)
{
	char name[32];
	struct store_pack *p;
	uint64_t off;
	int r = 0;

	if (len == 0 || len > CHUNK_PROTO_MAX)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	struct store_entry *e = find(s, id);
	if (e) {
		e->at = time(NULL);
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	if (!s->cur || s->cur->size + len > STORE_PACK_MAX) {
		struct store_pack *old = s->cur;
		p = calloc(1, sizeof(*p));
		if (!p) {
			pthread_mutex_unlock(&s->lock);
			return -ENOMEM;
		}
		p->no = s->next_pack++;
		pack_name(p, name);
		p->fd = openat(s->fd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (p->fd < 0) {
			r = -errno;
			free(p);
			pthread_mutex_unlock(&s->lock);
			return r;
		}
		p->next = s->packs;
		s->packs = p;
		s->cur = p;
		if (old)
			pack_maybe_drop(s, old);
	}
	p = s->cur;
	off = p->size;
	p->size += len;
	p->pins++;
	pthread_mutex_unlock(&s->lock);

	/* The bytes go in outside the lock; the entry appears after them. */
	r = pwrite_all(p->fd, data, len, off);

	pthread_mutex_lock(&s->lock);
	p->pins--;
	if (r == 0)
		r = add_entry(s, p, id, off, len);
	pack_maybe_drop(s, p);
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* The stage named token, or NULL. Caller holds lock. */
static struct store_pack *find_stage(struct store *s, const uint8_t *token)
{
	for (struct store_pack *p = s->packs; p; p = p->next)
		if (p->stage && !p->taken && memcmp(p->token, token, STORE_STAGE_TOKEN) == 0)
			return p;
	return NULL;
}

/* A new stage named token, or NULL (-errno in *err): STORE_STAGES_MAX are
 * open (-EBUSY), or its file cannot be made. Caller holds lock. */
static struct store_pack *new_stage(struct store *s, const uint8_t *token, int *err)
{
	char name[32];
	unsigned n = 0;
	for (struct store_pack *p = s->packs; p; p = p->next)
		n += p->stage && !p->taken;
	if (n >= STORE_STAGES_MAX) {
		*err = -EBUSY;
		return NULL;
	}
	struct store_pack *p = calloc(1, sizeof(*p));
	if (!p) {
		*err = -ENOMEM;
		return NULL;
	}
	p->stage = 1;
	p->no = s->next_pack++;
	memcpy(p->token, token, STORE_STAGE_TOKEN);
	pack_name(p, name);
	p->fd = openat(s->fd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (p->fd < 0) {
		*err = -errno;
		free(p);
		return NULL;
	}
	p->next = s->packs;
	s->packs = p;
	return p;
}

int store_stage_put(struct store *s, const uint8_t token[STORE_STAGE_TOKEN], uint64_t off,
		    const struct hash_id *id, const void *data, size_t len)
{
	int r = 0;
	if (len == 0 || len > CHUNK_PROTO_MAX || off > (uint64_t)INT64_MAX - len)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	struct store_pack *p = find_stage(s, token);
	if (!p && !(p = new_stage(s, token, &r)) && r != -EBUSY) {
		pthread_mutex_unlock(&s->lock);
		return r;
	}
	if (!p || off < p->size || p->nplaced == STORE_STAGE_CHUNKS_MAX) {
		/* Not in place: a pack keeps it as for any upload. */
		pthread_mutex_unlock(&s->lock);
		return store_put(s, id, data, len);
	}
	if (p->nplaced == p->aplaced) {
		size_t na = p->aplaced ? 2 * p->aplaced : 256;
		struct store_placed *v = realloc(p->placed, na * sizeof(*v));
		if (!v) {
			pthread_mutex_unlock(&s->lock);
			return -ENOMEM;
		}
		p->placed = v;
		p->aplaced = na;
	}
	p->size = off + len;
	p->at = time(NULL);
	p->pins++;
	pthread_mutex_unlock(&s->lock);

	r = pwrite_all(p->fd, data, len, off);

	pthread_mutex_lock(&s->lock);
	p->pins--;
	if (r < 0 && p->size == off + len)
		p->size = off; /* the retry of this upload puts it here again */
	if (r == 0 && !p->taken) {
		/* Room was made above, and only puts add (under the lock). */
		p->placed[p->nplaced++] = (struct store_placed){ .off = off, .len = (uint32_t)len,
								 .id = *id };
		r = add_entry(s, p, id, off, len);
	}
	pack_maybe_drop(s, p);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int placed_cmp(const void *a, const void *b)
{
	const struct store_placed *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

int store_stage_take(struct store *s, const uint8_t token[STORE_STAGE_TOKEN], int dirfd,
		     const char *name, int *fd, struct store_placed **placed, size_t *n)
{
	char pn[32];
	int r;
	*fd = -1;
	*placed = NULL;
	*n = 0;
	pthread_mutex_lock(&s->lock);
	struct store_pack *p = find_stage(s, token);
	if (!p) {
		pthread_mutex_unlock(&s->lock);
		return -ENOENT;
	}
	pack_name(p, pn);
	if (renameat(s->fd, pn, dirfd, name) < 0) {
		r = -errno;
		pthread_mutex_unlock(&s->lock);
		return r;
	}
	/* From here on the file is the caller's: the store only reads it. A
	 * put still writing into it (a second upload to the same stage) ends
	 * before its bytes count as placed, and the caller writes every
	 * chunk that is not placed. */
	p->taken = 1;
	if ((*fd = fcntl(p->fd, F_DUPFD_CLOEXEC, 0)) < 0) {
		r = -errno;
		goto out;
	}
	*placed = p->placed;
	*n = p->nplaced;
	p->placed = NULL;
	p->nplaced = p->aplaced = 0;
	r = 0;
out:
	pack_maybe_drop(s, p);
	pthread_mutex_unlock(&s->lock);
	if (r == 0)
		qsort(*placed, *n, sizeof(**placed), placed_cmp);
	return r;
}

int store_get(struct store *s, const struct hash_id *id, size_t len, uint8_t *out)
{
	struct hash_id got;
	pthread_mutex_lock(&s->lock);
	struct store_entry *e = find(s, id);
	if (!e) {
		pthread_mutex_unlock(&s->lock);
		return -ENOENT;
	}
	if (e->len != len) {
		pthread_mutex_unlock(&s->lock);
		return -EBADMSG;
	}
	struct store_pack *p = e->pack;
	uint64_t off = e->off;
	p->pins++;
	pthread_mutex_unlock(&s->lock);

	ssize_t n = pread(p->fd, out, len, (off_t)off);
	int r = n == (ssize_t)len ? 0 : n < 0 ? -errno : -ENOENT;
	if (r == 0) {
		hash_buf(out, len, &got);
		if (!hash_equal(&got, id))
			r = -ENOENT;
	}

	pthread_mutex_lock(&s->lock);
	p->pins--;
	if (r == -ENOENT && (e = find(s, id)) && e->pack == p && e->off == off) {
		log_warn("chunk store: damaged bytes in pack.%u dropped", p->no);
		drop_entry(s, e);
	} else {
		pack_maybe_drop(s, p);
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

int store_remove(struct store *s, const struct hash_id *id)
{
	pthread_mutex_lock(&s->lock);
	struct store_entry *e = find(s, id);
	if (e)
		drop_entry(s, e);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* Under the lock: 1 if stage p is one nobody took and nobody put into
 * since limit. */
static int stage_idle(const struct store_pack *p, time_t limit)
{
	return p->stage && !p->taken && p->at < limit && !p->pins;
}

/* store_gc(), or with stages_only, store_reclaim(). */
static int collect(struct store *s, time_t max_age, int stages_only)
{
	time_t limit = time(NULL) - max_age;
	int n = 0;
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->nb; i++)
		for (struct store_entry *e = s->tab[i], *next; e; e = next) {
			next = e->next;
			if ((!stages_only && e->at < limit) || stage_idle(e->pack, limit)) {
				drop_entry(s, e);
				n++;
			}
		}
	/* Stages nobody took (the client gave up on that upload). */
	for (struct store_pack *p = s->packs, *next; p; p = next) {
		next = p->next;
		if (stage_idle(p, limit) && !p->live)
			pack_free(s, p);
	}
	pthread_mutex_unlock(&s->lock);
	return n;
}

int store_gc(struct store *s, time_t max_age)
{
	return collect(s, max_age, 0);
}

int store_reclaim(struct store *s, time_t idle)
{
	return collect(s, idle, 1);
}

int store_locate(struct store *s, const struct hash_id *id, char *name, size_t len, off_t *off)
{
	char pn[32];
	int r = -ENOENT;
	pthread_mutex_lock(&s->lock);
	struct store_entry *e = find(s, id);
	if (e) {
		pack_name(e->pack, pn);
		snprintf(name, len, "%s", pn);
		*off = (off_t)e->off;
		r = 0;
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

int store_set_time(struct store *s, const struct hash_id *id, time_t at)
{
	pthread_mutex_lock(&s->lock);
	struct store_entry *e = find(s, id);
	if (e) {
		e->at = at;
		if (e->pack->stage)
			e->pack->at = at;
	}
	pthread_mutex_unlock(&s->lock);
	return e ? 0 : -ENOENT;
}
