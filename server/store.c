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
	uint64_t size;  /* bytes reserved so far */
	size_t live;    /* entries in it */
	unsigned pins;  /* reads or writes in progress outside the lock */
	struct store_pack *next;
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

static void pack_name(unsigned no, char out[32])
{
	snprintf(out, 32, "pack.%u", no);
}

/* Delete p if nothing needs it any more. Caller holds lock. */
static void pack_maybe_drop(struct store *s, struct store_pack *p)
{
	char name[32];
	if (p->live || p->pins || p == s->cur)
		return;
	for (struct store_pack **pp = &s->packs; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	pack_name(p->no, name);
	unlinkat(s->fd, name, 0);
	close(p->fd);
	free(p);
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
		pack_name(p->no, name);
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
	const uint8_t *b = data;
	for (size_t done = 0; done < len && r == 0;) {
		ssize_t w = pwrite(p->fd, b + done, len - done, (off_t)(off + done));
		if (w < 0 && errno != EINTR)
			r = -errno;
		else if (w > 0)
			done += (size_t)w;
	}

	pthread_mutex_lock(&s->lock);
	p->pins--;
	if (r == 0 && !find(s, id)) {
		e = calloc(1, sizeof(*e));
		if (!e) {
			r = -ENOMEM;
		} else {
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
		}
	}
	pack_maybe_drop(s, p);
	pthread_mutex_unlock(&s->lock);
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

int store_gc(struct store *s, time_t max_age)
{
	time_t limit = time(NULL) - max_age;
	int n = 0;
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->nb; i++)
		for (struct store_entry *e = s->tab[i], *next; e; e = next) {
			next = e->next;
			if (e->at < limit) {
				drop_entry(s, e);
				n++;
			}
		}
	pthread_mutex_unlock(&s->lock);
	return n;
}

int store_locate(struct store *s, const struct hash_id *id, char *name, size_t len, off_t *off)
{
	char pn[32];
	int r = -ENOENT;
	pthread_mutex_lock(&s->lock);
	struct store_entry *e = find(s, id);
	if (e) {
		pack_name(e->pack->no, pn);
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
	if (e)
		e->at = at;
	pthread_mutex_unlock(&s->lock);
	return e ? 0 : -ENOENT;
}
