/*
 * poll_scan: see poll_scan.h.
 *
 * One scan has three phases:
 *
 * 1. The walk (walk_dir/visit/look). BACKING is read folder by folder and
 *    each entry is matched with a snapshot node: by name in the node of its
 *    folder (same dev, ino and type), else by inode anywhere (a move), else
 *    it is new (a "fresh" node, not yet in the tree). The snapshot's tree is
 *    not changed during the walk (so it still says where everything is on
 *    the server); only the nodes' stat fields are. What must be queued is
 *    collected: moves, syncs (with the paths of this walk, which are the
 *    final ones), and the nodes of the walked folders that were not seen
 *    (candidates for deletion).
 *
 * 2. Queueing (emit_renames, then the rest). A move is queued as a rename
 *    only once it is safe on the server, which the tree (kept equal to the
 *    server's view as renames are queued) tells: the target's folder is at
 *    its final place (or is new and its name is free), and the target name
 *    is free or held by something that vanished entirely. Moves are tried
 *    in passes until no more can go; the rest become full syncs of the new
 *    name. Then syncs, then deletions (a vanished node whose name was taken
 *    by a new entry needs none: that entry's sync replaces it; a folder over
 *    a stale folder is synced with QF_TREE, which removes the stale inside).
 *
 * 3. Installation: the tree becomes what the walk saw.
 *
 * Nodes carry their flags in one word; the ones below PN_PERSIST survive a
 * scan, the others describe the scan in progress.
 */
#define _XOPEN_SOURCE 700
#include "poll_scan.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "links.h"
#include "log.h"
#include "path.h"
#include "queue.h"

#define NS_PER_MS 1000000LL

enum {
	PN_DIRTY = 1u << 0,    /* regular file changed since it was last queued */
	PN_NEW = 1u << 1,      /* regular file never queued (the server lacks it) */
	PN_NAMED = 1u << 2,    /* in the (parent, name) index, i.e. in the tree */
	PN_INO = 1u << 3,      /* in the inode index */
	PN_PERSIST = 1u << 8,  /* flags from here on live for one scan */
	PN_FRESH = 1u << 8,    /* made by this scan, not in the tree yet */
	PN_MOVING = 1u << 9,   /* found at another place; its rename is pending */
	PN_FALLBACK = 1u << 10, /* its move could not be queued as a rename */
	PN_OCC = 1u << 11,     /* another entry now holds its name */
	PN_GONE = 1u << 12,    /* replaced on the server by a rename */
};

struct pnode {
	struct pnode *parent;     /* in the tree; for a fresh node: its parent-to-be */
	struct pnode *kids;       /* first child */
	struct pnode *next, *prev; /* siblings */
	struct pnode *nnext;      /* (parent, name) hash chain */
	struct pnode *inext;      /* (dev, ino) hash chain */
	char *name;               /* owned; "" for the root */
	uint64_t dev, ino;
	int64_t size;
	int64_t mtime, ctime;     /* ns since the epoch */
	int64_t stamp;            /* dirty: scan start (monotonic ns) at which the
				   * current stat was first seen */
	int64_t dirty;            /* dirty: scan start of the first unsent change */
	uint32_t mode;
	uint32_t gen;             /* the last scan that saw it */
	uint32_t flags;
};

/* 100,000 entries must stay well under 64 MiB with their names and index
 * slots: keep the node itself at two cache lines. */
_Static_assert(sizeof(struct pnode) <= 128, "a snapshot node grew past 128 bytes");

/* A hash table of nodes chained through an offset's next pointer. */
struct ptab {
	struct pnode **b;
	size_t nb, n;
};

struct move {
	struct pnode *node;
	struct pnode *parent; /* new parent (in the tree, or fresh) */
	char *name;           /* owned until installed: the new name */
	char *path;           /* owned: the new path */
	int quiet;            /* never queued: nothing to rename on the server */
	int done;             /* queued as a rename */
};

struct psync {
	char *path; /* owned */
	unsigned flags;
};

/* A rename queued by this scan, in queue order. */
struct renamed {
	char *from;     /* owned */
	const char *to; /* the move's path */
};

/* Growable arrays of the scan in progress. */
#define VEC(T)                  \
	struct {                \
		T *v;           \
		size_t n, a;    \
	}

struct scan {
	struct poll_scan *s;
	uint32_t gen;
	int first, final;
	int64_t start;     /* monotonic ns */
	int64_t start_rt;  /* realtime ns, for racy looks */
	char path[PATH_MAX_LEN + 1];
	size_t plen;
	VEC(struct move) moves;
	VEC(struct pnode *) fresh;
	VEC(struct pnode *) cands;
	VEC(struct pnode *) trash;
	VEC(struct psync) syncs;
	VEC(struct renamed) renamed;
	size_t entries, toolong, changes, deletions, renames, dirty;
	int64_t min_dirty; /* earliest dirty episode among visited files, or INT64_MAX */
};

struct poll_req {
	int fd;         /* owned */
	int64_t asked;  /* monotonic ns */
	int64_t anchor; /* start of the first scan after asked, -1 until then */
	struct poll_req *next;
};

struct poll_scan {
	struct mirror *m; /* borrowed */
	struct poll_scan_cfg cfg;
	/* owned by the scanning thread */
	struct pnode *root;
	struct ptab names, inos;
	size_t nodes;
	uint32_t gen;
	int rebuild;      /* the snapshot was dropped: reconcile after the next baseline */
	int64_t min_dirty;
	int64_t next_settle; /* earliest time a dirty file may settle, or INT64_MAX */

	pthread_t thread;
	int started;
	pthread_mutex_t lock;
	pthread_cond_t cond;      /* monotonic clock */
	int stopping;             /* under lock */
	struct poll_req *reqs;    /* under lock */
	struct poll_scan_stats st; /* under lock */
};

/* ---------------------------------------------------------------- time */

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t real_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t ts_ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000LL + t->tv_nsec;
}

/* ---------------------------------------------------------------- vectors */

/* Make room for one more element in a VEC. Returns 0 or -ENOMEM. */
#define VEC_GROW(vec)                                                               \
	((vec).n < (vec).a ? 0 : vec_grow((void **)&(vec).v, &(vec).a, sizeof(*(vec).v)))

static int vec_grow(void **v, size_t *a, size_t elem)
{
	size_t na = *a ? *a * 2 : 64;
	void *nv = realloc(*v, na * elem);
	if (!nv)
		return -ENOMEM;
	*v = nv;
	*a = na;
	return 0;
}

/* ---------------------------------------------------------------- indexes */

static size_t hash_name(const struct pnode *parent, const char *name)
{
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uintptr_t)parent;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 1099511628211ULL;
	return (size_t)(h ^ (h >> 29));
}

static size_t hash_ino(uint64_t dev, uint64_t ino)
{
	uint64_t h = (ino * 0x9E3779B97F4A7C15ULL) ^ (dev * 0xC2B2AE3D27D4EB4FULL);
	return (size_t)(h ^ (h >> 31));
}

static size_t node_hash_name(const struct pnode *n)
{
	return hash_name(n->parent, n->name);
}

static size_t node_hash_ino(const struct pnode *n)
{
	return hash_ino(n->dev, n->ino);
}

/* Each table chains through its own pointer: nnext or inext. */
static struct pnode **chain(struct pnode *n, int ino)
{
	return ino ? &n->inext : &n->nnext;
}

static int ptab_grow(struct ptab *t, int ino)
{
	size_t nb = t->nb ? t->nb * 2 : 4096;
	struct pnode **b = calloc(nb, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < t->nb; i++)
		for (struct pnode *e = t->b[i], *nx; e; e = nx) {
			nx = *chain(e, ino);
			size_t h = (ino ? node_hash_ino(e) : node_hash_name(e)) & (nb - 1);
			*chain(e, ino) = b[h];
			b[h] = e;
		}
	free(t->b);
	t->b = b;
	t->nb = nb;
	return 0;
}

/* Insert n (keyed by its current parent and name, or dev and ino). May
 * reallocate the table. Returns 0 or -ENOMEM. */
static int ptab_add(struct ptab *t, struct pnode *n, int ino)
{
	if (t->n >= t->nb && ptab_grow(t, ino) < 0 && t->nb == 0)
		return -ENOMEM; /* a full table still works, only slower */
	size_t h = (ino ? node_hash_ino(n) : node_hash_name(n)) & (t->nb - 1);
	*chain(n, ino) = t->b[h];
	t->b[h] = n;
	t->n++;
	return 0;
}

static void ptab_del(struct ptab *t, struct pnode *n, int ino)
{
	size_t h = (ino ? node_hash_ino(n) : node_hash_name(n)) & (t->nb - 1);
	for (struct pnode **pp = &t->b[h]; *pp; pp = chain(*pp, ino))
		if (*pp == n) {
			*pp = *chain(n, ino);
			*chain(n, ino) = NULL;
			t->n--;
			return;
		}
	assert(!"node missing from its index");
}

static struct pnode *find_name(struct poll_scan *s, const struct pnode *parent, const char *name)
{
	if (!s->names.nb)
		return NULL;
	for (struct pnode *e = s->names.b[hash_name(parent, name) & (s->names.nb - 1)]; e;
	     e = e->nnext)
		if (e->parent == parent && strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

/* A node of the tree with st's dev, ino and type that no entry of this scan
 * has claimed yet, or NULL. */
static struct pnode *find_ino(struct poll_scan *s, const struct stat *st, uint32_t gen)
{
	if (!s->inos.nb)
		return NULL;
	for (struct pnode *e = s->inos.b[hash_ino((uint64_t)st->st_dev, (uint64_t)st->st_ino) &
					 (s->inos.nb - 1)];
	     e; e = e->inext)
		if (e->ino == (uint64_t)st->st_ino && e->dev == (uint64_t)st->st_dev &&
		    (e->mode & S_IFMT) == (st->st_mode & S_IFMT) && e->gen != gen && e != s->root)
			return e;
	return NULL;
}

/* ---------------------------------------------------------------- nodes */

static void set_stat(struct pnode *n, const struct stat *st)
{
	n->dev = (uint64_t)st->st_dev;
	n->ino = (uint64_t)st->st_ino;
	n->size = (int64_t)st->st_size;
	n->mtime = ts_ns(&st->st_mtim);
	n->ctime = ts_ns(&st->st_ctim);
	n->mode = (uint32_t)st->st_mode;
}

/* A new node (not in the tree). Returns NULL on ENOMEM. */
static struct pnode *node_new(struct poll_scan *s, const char *name, const struct stat *st)
{
	struct pnode *n = calloc(1, sizeof(*n));
	if (!n || !(n->name = strdup(name))) {
		free(n);
		return NULL;
	}
	set_stat(n, st);
	s->nodes++;
	return n;
}

/* Put n under parent (n->parent is set here) in the tree and the indexes.
 * Returns 0 or -ENOMEM. */
static int attach(struct poll_scan *s, struct pnode *n, struct pnode *parent)
{
	n->parent = parent;
	n->prev = NULL;
	n->next = parent->kids;
	if (parent->kids)
		parent->kids->prev = n;
	parent->kids = n;
	if (ptab_add(&s->names, n, 0) < 0)
		return -ENOMEM;
	n->flags |= PN_NAMED;
	n->flags &= ~PN_FRESH;
	if (!(n->flags & PN_INO)) {
		if (ptab_add(&s->inos, n, 1) < 0)
			return -ENOMEM;
		n->flags |= PN_INO;
	}
	return 0;
}

/* Take n (with its subtree) out of its parent's list and the name index. */
static void detach(struct poll_scan *s, struct pnode *n)
{
	if (!(n->flags & PN_NAMED))
		return;
	ptab_del(&s->names, n, 0);
	n->flags &= ~PN_NAMED;
	if (n->prev)
		n->prev->next = n->next;
	else
		n->parent->kids = n->next;
	if (n->next)
		n->next->prev = n->prev;
	n->next = n->prev = NULL;
}

/* Free n and its subtree (already detached from its parent). */
static void free_subtree(struct poll_scan *s, struct pnode *n)
{
	while (n->kids) {
		struct pnode *k = n->kids;
		detach(s, k);
		free_subtree(s, k);
	}
	if (n->flags & PN_NAMED)
		ptab_del(&s->names, n, 0);
	if (n->flags & PN_INO)
		ptab_del(&s->inos, n, 1);
	free(n->name);
	free(n);
	s->nodes--;
}

/* n's path in the tree as it stands (the server's view during phase 2).
 * Returns a new string or NULL on ENOMEM. */
static char *path_of(const struct pnode *n)
{
	size_t len = 0;
	for (const struct pnode *p = n; p->parent; p = p->parent)
		len += strlen(p->name) + 1;
	char *out = malloc(len ? len : 1);
	if (!out)
		return NULL;
	if (!len) {
		out[0] = '\0';
		return out;
	}
	size_t at = len - 1;
	out[at] = '\0';
	for (const struct pnode *p = n; p->parent; p = p->parent) {
		size_t l = strlen(p->name);
		at -= l;
		memcpy(out + at, p->name, l);
		if (at > 0)
			out[--at] = '/';
	}
	return out;
}

/* Mark n and everything below it as seen (a folder that cannot be read:
 * keep what was known). */
static void keep_subtree(struct scan *sc, struct pnode *n)
{
	n->gen = sc->gen;
	for (struct pnode *k = n->kids; k; k = k->next)
		keep_subtree(sc, k);
}

static void keep_kids(struct scan *sc, struct pnode *d)
{
	for (struct pnode *k = d->kids; k; k = k->next)
		if (k->gen != sc->gen)
			keep_subtree(sc, k);
}

static void keep_name(struct scan *sc, struct pnode *d, const char *name)
{
	struct pnode *c = find_name(sc->s, d, name);
	if (c && c->gen != sc->gen)
		keep_subtree(sc, c);
}

/* ---------------------------------------------------------------- the walk */

static int want_sync(struct scan *sc, const char *path, unsigned flags)
{
	if (VEC_GROW(sc->syncs) < 0)
		return -ENOMEM;
	char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	sc->syncs.v[sc->syncs.n++] = (struct psync){ p, flags };
	return 0;
}

static int racy(const struct scan *sc, const struct stat *st)
{
	return ts_ns(&st->st_ctim) >= sc->start_rt - (int64_t)sc->s->cfg.racy_ms * NS_PER_MS;
}

static void note_dirty(struct scan *sc, const struct pnode *x)
{
	struct poll_scan_cfg *c = &sc->s->cfg;
	if (!(x->flags & PN_DIRTY))
		return;
	sc->dirty++;
	if (x->dirty < sc->min_dirty)
		sc->min_dirty = x->dirty;
	int64_t settle = x->stamp + (int64_t)c->stable_ms * NS_PER_MS;
	int64_t force = x->dirty + (int64_t)c->maxwait_ms * NS_PER_MS;
	if (force < settle)
		settle = force;
	if (settle < sc->s->next_settle)
		sc->s->next_settle = settle;
}

/* A regular file's stat changed (or it is new): it is dirty from now on. */
static void make_dirty(struct scan *sc, struct pnode *x)
{
	if (!(x->flags & PN_DIRTY)) {
		x->flags |= PN_DIRTY;
		x->dirty = sc->start;
	}
	x->stamp = sc->start;
}

/* Compare node x, matched with the entry at sc->path, with its stat now;
 * decide what to queue. Returns 0 or -ENOMEM. */
static int look(struct scan *sc, struct pnode *x, const struct stat *st)
{
	const struct poll_scan_cfg *c = &sc->s->cfg;
	const char *path = sc->path;
	int content = x->size != (int64_t)st->st_size || x->mtime != ts_ns(&st->st_mtim);
	int mode = x->mode != (uint32_t)st->st_mode;
	int any = content || mode || x->ctime != ts_ns(&st->st_ctim);
	int r = 0;

	set_stat(x, st);
	if (S_ISREG(st->st_mode) && any && st->st_nlink > 1 &&
	    links_add(sc->s->m->links, st->st_ino, path) < 0)
		return -ENOMEM; /* a new hard link elsewhere: this name is one too */
	if (S_ISREG(st->st_mode)) {
		int changed = content || ((x->flags & PN_DIRTY) && any) || (mode && racy(sc, st));
		if (changed) {
			/* Changed since the last look: wait until it settles. A
			 * chmod right after a write could hide a same-size write in
			 * the same timestamp tick, so it waits too. */
			make_dirty(sc, x);
			sc->changes++;
		} else if (mode && !(x->flags & PN_DIRTY)) {
			r = want_sync(sc, path, QF_META);
			sc->changes++;
		}
		if (x->flags & PN_DIRTY) {
			/* Settled: unchanged at this look, and for stable_ms. */
			int stable = !changed &&
				     sc->start - x->stamp >= (int64_t)c->stable_ms * NS_PER_MS;
			int overdue = sc->start - x->dirty >= (int64_t)c->maxwait_ms * NS_PER_MS;
			if (stable || sc->final) {
				r = want_sync(sc, path, QF_CONTENT);
				x->flags &= ~(PN_DIRTY | PN_NEW);
			} else if (overdue) {
				/* Still changing after maxwait: send what is there
				 * now (the transfer refuses a version that changes
				 * while it is read) and keep watching. */
				r = want_sync(sc, path, QF_CONTENT);
				x->flags &= ~PN_NEW;
				x->dirty = sc->start;
			}
		}
		note_dirty(sc, x);
	} else if (S_ISDIR(st->st_mode)) {
		if (content || mode) {
			r = want_sync(sc, path, QF_META);
			sc->changes++;
		}
	} else if (S_ISLNK(st->st_mode)) {
		if (content || mode) {
			r = want_sync(sc, path, QF_CONTENT);
			sc->changes++;
		}
	}
	/* fifos, sockets, devices: synced once when they appear (the server
	 * must hold nothing there); their changes do not matter. */
	return r;
}

/* An entry that matches no node: a fresh node, queued as appropriate.
 * occupied: the folder's node had another node under that name. Returns
 * the node or NULL on ENOMEM. */
static struct pnode *fresh(struct scan *sc, struct pnode *d, const char *name,
			   const struct stat *st, int occupied)
{
	struct poll_scan *s = sc->s;
	struct pnode *n;
	int r = 0;
	if (VEC_GROW(sc->fresh) < 0 || !(n = node_new(s, name, st)))
		return NULL;
	n->parent = d;
	n->flags = PN_FRESH;
	n->gen = sc->gen;
	sc->fresh.v[sc->fresh.n++] = n;
	if (sc->first) {
		/* The baseline: the reconciliation queued at start sends what
		 * differs. A file changing right now is watched until it settles. */
		if (S_ISREG(st->st_mode) && racy(sc, st))
			make_dirty(sc, n);
	} else if (S_ISREG(st->st_mode) && sc->final) {
		r = want_sync(sc, sc->path, QF_CONTENT);
		sc->changes++;
	} else if (S_ISREG(st->st_mode)) {
		make_dirty(sc, n);
		n->flags |= PN_NEW;
		sc->changes++;
	} else if (S_ISDIR(st->st_mode)) {
		/* Over something else of that name on the server: compare the
		 * whole subtree, so that nothing stale stays inside. */
		r = want_sync(sc, sc->path, occupied ? QF_TREE : QF_META);
		sc->changes++;
	} else {
		r = want_sync(sc, sc->path, QF_CONTENT);
		sc->changes++;
	}
	if (S_ISREG(st->st_mode)) {
		note_dirty(sc, n);
		if (st->st_nlink > 1 && r == 0)
			r = links_add(s->m->links, st->st_ino, sc->path);
	}
	return r < 0 ? NULL : n;
}

/* The entry (d, name) at sc->path with stat st: find its node. Returns the
 * node (existing, moved or fresh) or NULL on ENOMEM. */
static struct pnode *visit(struct scan *sc, struct pnode *d, const char *name,
			   const struct stat *st)
{
	struct poll_scan *s = sc->s;
	struct pnode *c = find_name(s, d, name), *x;
	if (c && c->gen != sc->gen && c->ino == (uint64_t)st->st_ino &&
	    c->dev == (uint64_t)st->st_dev && (c->mode & S_IFMT) == (st->st_mode & S_IFMT)) {
		c->gen = sc->gen;
		return look(sc, c, st) < 0 ? NULL : c;
	}
	if (c)
		c->flags |= PN_OCC;
	/* A name of a hard-linked file may be a new link, not a move. */
	if (!sc->first && (S_ISDIR(st->st_mode) || st->st_nlink == 1) &&
	    (x = find_ino(s, st, sc->gen))) {
		if (VEC_GROW(sc->moves) < 0)
			return NULL;
		struct move *mv = &sc->moves.v[sc->moves.n];
		*mv = (struct move){ .node = x, .parent = d, .quiet = (x->flags & PN_NEW) != 0 };
		if (!(mv->name = strdup(name)) || !(mv->path = strdup(sc->path))) {
			free(mv->name);
			return NULL;
		}
		sc->moves.n++;
		x->gen = sc->gen;
		x->flags |= PN_MOVING;
		return look(sc, x, st) < 0 ? NULL : x;
	}
	return fresh(sc, d, name, st, c != NULL);
}

/* Walk the folder open as fd (taken), whose node is d. Returns 0 or
 * -ENOMEM. */
static int walk_dir(struct scan *sc, int fd, struct pnode *d)
{
	DIR *dir = fdopendir(fd);
	if (!dir) {
		int e = errno;
		close(fd);
		keep_kids(sc, d);
		return e == ENOMEM ? -ENOMEM : 0;
	}
	size_t base = sc->plen;
	int r = 0, complete = 1;
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(dir);
		if (!de) {
			if (errno) {
				log_warn("%s: cannot list folder: %s", base ? sc->path : ".",
					 strerror(errno));
				complete = 0;
			}
			break;
		}
		const char *name = de->d_name;
		if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0')))
			continue;
		size_t nl = strlen(name), len = base + (base ? 1 : 0) + nl;
		if (len > PATH_MAX_LEN) {
			sc->toolong++;
			keep_name(sc, d, name);
			continue;
		}
		struct stat st;
		if (fstatat(dirfd(dir), name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT) /* cannot tell: keep what was known */
				keep_name(sc, d, name);
			continue;
		}
		if (base)
			sc->path[base] = '/';
		memcpy(sc->path + base + (base ? 1 : 0), name, nl + 1);
		sc->plen = len;
		sc->entries++;
		struct pnode *x = visit(sc, d, name, &st);
		if (!x) {
			r = -ENOMEM;
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd(dir), name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			struct stat sst;
			if (sub >= 0 && (fstat(sub, &sst) < 0 || sst.st_ino != st.st_ino ||
					 sst.st_dev != st.st_dev)) {
				close(sub); /* replaced since the lstat: next time */
				sub = -1;
			}
			if (sub < 0)
				keep_kids(sc, x);
			else if ((r = walk_dir(sc, sub, x)) < 0)
				break;
		}
		sc->plen = base;
		sc->path[base] = '\0';
	}
	sc->plen = base;
	sc->path[base] = '\0';
	closedir(dir);
	if (r < 0)
		return r;
	/* What the folder's node holds and the listing lacked. */
	for (struct pnode *k = d->kids; k; k = k->next) {
		if (k->gen == sc->gen)
			continue;
		if (!complete) {
			keep_subtree(sc, k);
			continue;
		}
		if (VEC_GROW(sc->cands) < 0)
			return -ENOMEM;
		sc->cands.v[sc->cands.n++] = k;
	}
	return 0;
}

/* ---------------------------------------------------------------- queueing */

/* 1 if n and every ancestor are where the walk found them (nothing on the
 * way waits to be moved or is new). */
static int placed(const struct pnode *n)
{
	for (const struct pnode *p = n; p; p = p->parent)
		if (p->flags & (PN_MOVING | PN_FALLBACK | PN_FRESH))
			return 0;
	return 1;
}

/* 1 if anything in n's subtree was seen by this scan. */
static int has_alive(const struct scan *sc, const struct pnode *n)
{
	if (n->gen == sc->gen)
		return 1;
	for (const struct pnode *k = n->kids; k; k = k->next)
		if (has_alive(sc, k))
			return 1;
	return 0;
}

/* 1 if every ancestor of n was seen and stays where it was on the server
 * (n's place there is not abandoned as a whole). */
static int live_parent(const struct scan *sc, const struct pnode *n)
{
	for (const struct pnode *p = n->parent; p; p = p->parent)
		if (p->gen != sc->gen || (p->flags & PN_FALLBACK))
			return 0;
	return 1;
}

static int queue_err(const char *what, const char *path)
{
	log_error("%s: cannot queue %s: out of memory", path, what);
	return -ENOMEM;
}

static int enqueue_sync(struct scan *sc, const char *path, unsigned flags)
{
	if (queue_sync(sc->s->m->q, path, flags) < 0)
		return queue_err("change", path);
	log_debug("scan: sync %s flags %u", path, flags);
	return 0;
}

/* Queue mv as a rename if that is safe now. Returns 1 if queued, 0 if not
 * (yet), -ENOMEM. */
static int try_rename(struct scan *sc, struct move *mv)
{
	struct poll_scan *s = sc->s;
	struct pnode *x = mv->node, *a = mv->parent, *top = NULL, *occ = NULL;
	/* The target's folder: at its final place, or new folders (created by
	 * the server as the rename's missing parents) below one that is. */
	while (a->flags & PN_FRESH) {
		top = a;
		a = a->parent;
	}
	if (!placed(a))
		return 0;
	if (top) {
		if (find_name(s, a, top->name))
			return 0;
	} else if ((occ = find_name(s, mv->parent, mv->name))) {
		/* Taken: only by something that vanished with all it held (the
		 * rename replaces it). Else maybe after another rename. */
		if (occ == x || has_alive(sc, occ))
			return 0;
	}
	char *src = path_of(x);
	if (!src || VEC_GROW(sc->trash) < 0 || VEC_GROW(sc->renamed) < 0) {
		free(src);
		return -ENOMEM;
	}
	if (path_is_under(mv->path, src) || path_is_under(src, mv->path)) {
		free(src);
		return 0;
	}
	if (queue_rename(s->m->q, src, mv->path, 0) < 0) {
		free(src);
		return queue_err("rename", mv->path);
	}
	log_debug("scan: rename %s -> %s (same inode)", src, mv->path);
	links_renamed(s->m->links, src, mv->path, 0);
	sc->renamed.v[sc->renamed.n++] = (struct renamed){ src, mv->path };
	sc->renames++;
	if (occ) {
		detach(s, occ);
		occ->flags |= PN_GONE;
		sc->trash.v[sc->trash.n++] = occ;
	}
	/* The new folders the server creates as missing parents join the
	 * tree, outermost first. */
	while (mv->parent->flags & PN_FRESH) {
		struct pnode *p = mv->parent;
		while (p->parent->flags & PN_FRESH)
			p = p->parent;
		if (attach(s, p, p->parent) < 0)
			return -ENOMEM;
	}
	detach(s, x);
	free(x->name);
	x->name = mv->name;
	mv->name = NULL;
	x->flags &= ~(PN_MOVING | PN_OCC);
	mv->done = 1;
	return attach(s, x, mv->parent) < 0 ? -ENOMEM : 1;
}

/* Renames first, each once it is safe; what cannot go becomes a fallback. */
static int emit_renames(struct scan *sc)
{
	int progress;
	for (size_t i = 0; i < sc->moves.n; i++)
		if (sc->moves.v[i].quiet)
			sc->moves.v[i].node->flags |= PN_FALLBACK;
	do {
		progress = 0;
		for (size_t i = 0; i < sc->moves.n; i++) {
			struct move *mv = &sc->moves.v[i];
			if (mv->done || mv->quiet)
				continue;
			int r = try_rename(sc, mv);
			if (r < 0)
				return r;
			progress += r;
		}
	} while (progress);
	for (size_t i = 0; i < sc->moves.n; i++)
		if (!sc->moves.v[i].done)
			sc->moves.v[i].node->flags |= PN_FALLBACK;
	return 0;
}

/* The server still has x at its old place, which BACKING no longer has:
 * remove it there unless something new takes the name (and replaces it),
 * or its whole folder goes. */
static int forget_old_place(struct scan *sc, struct pnode *x)
{
	if ((x->flags & PN_OCC) || !live_parent(sc, x))
		return 0;
	char *p = path_of(x);
	if (!p)
		return -ENOMEM;
	int r = enqueue_sync(sc, p, (S_ISDIR(x->mode) ? QF_META : QF_CONTENT) | QF_GONE);
	if (S_ISREG(x->mode))
		links_unlinked(sc->s->m->links, p);
	free(p);
	sc->deletions++;
	return r;
}

/* The node at path in the tree as it stands, or NULL. */
static struct pnode *node_at(struct poll_scan *s, const char *path)
{
	char name[PATH_COMPONENT_MAX + 1];
	struct pnode *n = s->root;
	for (const char *p = path; n && *p;) {
		const char *e = strchr(p, '/');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l > PATH_COMPONENT_MAX)
			return NULL;
		memcpy(name, p, l);
		name[l] = '\0';
		n = find_name(s, n, name);
		p += l + (e ? 1 : 0);
	}
	return n;
}

/* Syncs that found nothing (misses, queue.h): between a rename in BACKING
 * and the scan that finds it, the uploader may look for something under the
 * old name. The server still has the old version there (keep_missing), and
 * the renames just queued carry it to the new name: sync the new name once
 * more, after them. Paths follow this scan's renames; what is not in the
 * snapshot any more was deleted (its deletion is queued) or is not known
 * yet (it will be found). Returns 0 or -ENOMEM. */
static int retry_misses(struct scan *sc)
{
	char **v = queue_take_notes(sc->s->m->q, QN_MISS);
	int r = 0;
	for (char **p = v; p && *p; p++) {
		char *cur = *p;
		for (size_t i = 0; i < sc->renamed.n && cur; i++) {
			char *nx = path_rebase(cur, sc->renamed.v[i].from, sc->renamed.v[i].to);
			if (nx) {
				if (cur != *p)
					free(cur);
				cur = nx;
			}
		}
		struct pnode *n = cur && r == 0 ? node_at(sc->s, cur) : NULL;
		if (n && n->gen == sc->gen && !(n->flags & (PN_MOVING | PN_FALLBACK)) &&
		    !(S_ISREG(n->mode) && (n->flags & PN_DIRTY))) {
			log_debug("scan: %s was looked for under its old name: synced again", cur);
			r = enqueue_sync(sc, cur, S_ISDIR(n->mode) ? QF_META : QF_CONTENT);
		}
		if (cur != *p)
			free(cur);
		free(*p);
	}
	free(v);
	return r;
}

/* Uploads noted by comparisons of subtrees (queue.h): the server got what
 * BACKING held at the time, maybe something this scanner never saw (a
 * temporary file renamed away in between). Called after install(), when
 * the snapshot is what this walk saw and the notes' paths follow every
 * rename queued: a noted path the snapshot does not hold is deleted on the
 * server (if it is there in BACKING after all, the next scan finds it as new
 * and sends it after that). Below a path the snapshot lacks as well, the
 * deletion of that one takes it along. Returns 0 or -ENOMEM. */
static int forget_unknown_uploads(struct scan *sc)
{
	struct poll_scan *s = sc->s;
	char **v = queue_take_notes(s->m->q, QN_UPLOAD);
	int r = 0;
	for (char **p = v; p && *p; p++) {
		if (r == 0 && **p && !node_at(s, *p)) {
			char *slash = strrchr(*p, '/');
			struct pnode *parent = s->root;
			if (slash) {
				*slash = '\0';
				parent = node_at(s, *p);
				*slash = '/';
			}
			if (parent && S_ISDIR(parent->mode)) {
				log_debug("scan: %s was sent, but is not here: deleted again", *p);
				r = enqueue_sync(sc, *p, QF_CONTENT | QF_GONE);
			}
		}
		free(*p);
	}
	free(v);
	return r;
}

/* Phase 2 after the renames: fallbacks, the walk's syncs, deletions. */
static int emit_rest(struct scan *sc)
{
	int r;
	for (size_t i = 0; i < sc->moves.n; i++) {
		struct move *mv = &sc->moves.v[i];
		struct pnode *x = mv->node;
		if (mv->done)
			continue;
		if (!mv->quiet)
			log_debug("scan: %s: moved, but not as a rename: sent again", mv->path);
		if (S_ISDIR(x->mode))
			r = enqueue_sync(sc, mv->path, QF_TREE);
		else if (!S_ISREG(x->mode) || !(x->flags & PN_DIRTY))
			r = enqueue_sync(sc, mv->path, QF_CONTENT);
		else
			r = 0; /* dirty: queued once it settles */
		if (r == 0)
			r = forget_old_place(sc, x);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < sc->syncs.n; i++)
		if ((r = enqueue_sync(sc, sc->syncs.v[i].path, sc->syncs.v[i].flags)) < 0)
			return r;
	for (size_t i = 0; i < sc->cands.n; i++) {
		struct pnode *c = sc->cands.v[i];
		if (c->gen == sc->gen || (c->flags & PN_GONE))
			continue; /* found elsewhere, or replaced by a rename */
		if ((r = forget_old_place(sc, c)) < 0)
			return r;
	}
	return 0;
}

/* Phase 3: the tree becomes what the walk saw. Moved nodes leave their
 * old folders before what vanished is freed. A name may briefly be in the
 * index twice (a node moving where a vanished one still is): the index
 * removes by pointer and is not searched meanwhile. */
static int install(struct scan *sc)
{
	struct poll_scan *s = sc->s;
	for (size_t i = 0; i < sc->moves.n; i++) {
		struct move *mv = &sc->moves.v[i];
		struct pnode *x = mv->node;
		x->flags &= ~(PN_MOVING | PN_FALLBACK | PN_OCC);
		if (mv->done)
			continue;
		detach(s, x);
		free(x->name);
		x->name = mv->name;
		mv->name = NULL;
		if (attach(s, x, mv->parent) < 0)
			return -ENOMEM;
	}
	for (size_t i = 0; i < sc->fresh.n; i++) {
		struct pnode *n = sc->fresh.v[i];
		if ((n->flags & PN_FRESH) && attach(s, n, n->parent) < 0)
			return -ENOMEM;
	}
	for (size_t i = 0; i < sc->cands.n; i++) {
		struct pnode *c = sc->cands.v[i];
		if (c->gen == sc->gen || (c->flags & PN_GONE))
			continue;
		/* Only what vanished is freed: everything seen moved out. */
		assert(!has_alive(sc, c));
		detach(s, c);
		free_subtree(s, c);
	}
	sc->cands.n = 0;
	for (size_t i = 0; i < sc->trash.n; i++)
		free_subtree(s, sc->trash.v[i]);
	sc->trash.n = 0;
	return 0;
}

/* ---------------------------------------------------------------- a scan */

static void scan_release(struct scan *sc)
{
	for (size_t i = 0; i < sc->moves.n; i++) {
		free(sc->moves.v[i].name);
		free(sc->moves.v[i].path);
	}
	for (size_t i = 0; i < sc->syncs.n; i++)
		free(sc->syncs.v[i].path);
	for (size_t i = 0; i < sc->renamed.n; i++)
		free(sc->renamed.v[i].from);
	free(sc->renamed.v);
	free(sc->moves.v);
	free(sc->fresh.v);
	free(sc->cands.v);
	free(sc->trash.v);
	free(sc->syncs.v);
}

/* Drop the whole snapshot, after a failed scan (sc may be NULL). */
static void drop_snapshot(struct poll_scan *s, struct scan *sc)
{
	if (sc) {
		/* Fresh nodes outside the tree hold only nodes that are not
		 * fresh (fresh ones join the tree parents first). */
		for (size_t i = 0; i < sc->fresh.n; i++)
			if (sc->fresh.v[i]->flags & PN_FRESH)
				free_subtree(s, sc->fresh.v[i]);
		for (size_t i = 0; i < sc->trash.n; i++)
			free_subtree(s, sc->trash.v[i]);
		sc->trash.n = 0;
	}
	if (s->root) {
		free_subtree(s, s->root);
		s->root = NULL;
	}
	free(s->names.b);
	free(s->inos.b);
	memset(&s->names, 0, sizeof(s->names));
	memset(&s->inos, 0, sizeof(s->inos));
	s->nodes = 0;
}

/* The root: BACKING itself. */
static int scan_root(struct scan *sc, struct pnode **root)
{
	struct poll_scan *s = sc->s;
	struct stat st;
	if (fstat(s->m->backing_fd, &st) < 0)
		return -errno;
	if (!s->root) {
		struct pnode *n = node_new(s, "", &st);
		if (!n)
			return -ENOMEM;
		n->gen = sc->gen;
		s->root = n;
	} else {
		s->root->gen = sc->gen;
		sc->path[0] = '\0';
		int r = look(sc, s->root, &st);
		if (r < 0)
			return r;
	}
	*root = s->root;
	return 0;
}

int poll_scan_once(struct poll_scan *s, int final)
{
	struct scan sc = { .s = s, .final = final };
	struct pnode *root = NULL;
	int r, fd;

	if (s->rebuild)
		drop_snapshot(s, NULL);
	sc.first = s->root == NULL;
	sc.gen = ++s->gen;
	sc.start = mono_ns();
	sc.start_rt = real_ns();
	sc.min_dirty = INT64_MAX;
	s->next_settle = INT64_MAX;
	/* Requests made before this point are answered once nothing dirty
	 * since this scan's start is left (answer_requests). */
	pthread_mutex_lock(&s->lock);
	for (struct poll_req *q = s->reqs; q; q = q->next)
		if (q->anchor < 0)
			q->anchor = sc.start;
	pthread_mutex_unlock(&s->lock);
	if ((r = scan_root(&sc, &root)) < 0)
		goto fail;
	fd = openat(s->m->backing_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		log_warn("cannot list the mirrored folder: %s", strerror(errno));
		keep_kids(&sc, root);
	} else if ((r = walk_dir(&sc, fd, root)) < 0) {
		goto fail;
	}
	if (!sc.first) {
		if ((r = emit_renames(&sc)) < 0 || (r = retry_misses(&sc)) < 0 ||
		    (r = emit_rest(&sc)) < 0)
			goto fail;
	}
	if ((r = install(&sc)) < 0 || (!sc.first && (r = forget_unknown_uploads(&sc)) < 0))
		goto fail;
	if (s->rebuild) {
		/* The snapshot is new: whatever happened before it is found by
		 * comparing with the server (queued after the baseline, so
		 * that nothing falls between the two). */
		if (queue_sync(s->m->q, "", QF_TREE) < 0) {
			r = queue_err("reconciliation", "/");
			goto fail;
		}
		s->rebuild = 0;
	}
	s->min_dirty = sc.min_dirty;
	double ms = (double)(mono_ns() - sc.start) / 1e6;
	if (sc.toolong)
		log_warn("scan: %zu names skipped: path longer than %d bytes", sc.toolong,
			 PATH_MAX_LEN);
	log_debug("scan %u: %zu entries in %.1f ms%s: %zu changes, %zu renames, %zu deletions, %zu files settling",
		  sc.gen, sc.entries, ms, sc.first ? " (baseline)" : "", sc.changes, sc.renames,
		  sc.deletions, sc.dirty);
	pthread_mutex_lock(&s->lock);
	s->st.scans++;
	s->st.entries = s->nodes ? s->nodes - 1 : 0; /* the root is not an entry */
	s->st.dirty = sc.dirty;
	s->st.last_ms = ms;
	s->st.renames += sc.renames;
	s->st.queued += sc.renames + sc.syncs.n + sc.deletions;
	pthread_mutex_unlock(&s->lock);
	scan_release(&sc);
	return 0;
fail:
	if (r == -ENOMEM)
		log_error("scan: out of memory: the snapshot is rebuilt at the next scan");
	else
		log_error("scan: %s: the snapshot is rebuilt at the next scan", strerror(-r));
	drop_snapshot(s, &sc);
	scan_release(&sc);
	s->rebuild = 1;
	s->min_dirty = INT64_MIN; /* no request is answered before the rebuild */
	return r;
}

/* ---------------------------------------------------------------- the thread */

static void answer(int fd, const char *text)
{
	size_t len = strlen(text), off = 0;
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	close(fd);
}

void poll_scan_cfg_default(struct poll_scan_cfg *cfg, int interval_ms)
{
	cfg->interval_ms = interval_ms;
	cfg->stable_ms = interval_ms < 1000 ? interval_ms : 1000;
	cfg->maxwait_ms = 5000;
	cfg->racy_ms = 50;
}

struct poll_scan *poll_scan_new(struct mirror *m, const struct poll_scan_cfg *cfg)
{
	struct poll_scan *s = calloc(1, sizeof(*s));
	pthread_condattr_t ca;
	if (!s)
		return NULL;
	s->m = m;
	s->cfg = *cfg;
	s->min_dirty = INT64_MAX;
	s->next_settle = INT64_MAX;
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	return s;
}

void poll_scan_request(struct poll_scan *s, int fd)
{
	struct poll_req *q = calloc(1, sizeof(*q));
	if (!q) {
		answer(fd, "error: out of memory\n");
		return;
	}
	q->fd = fd;
	q->asked = mono_ns();
	q->anchor = -1;
	pthread_mutex_lock(&s->lock);
	if (s->stopping) {
		pthread_mutex_unlock(&s->lock);
		free(q);
		answer(fd, "error: stopping\n");
		return;
	}
	q->next = s->reqs;
	s->reqs = q;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* Answer the requests that the scans so far satisfy (all of them with
 * text if text is not NULL). */
static void answer_requests(struct poll_scan *s, const char *text)
{
	struct poll_req *done = NULL;
	pthread_mutex_lock(&s->lock);
	for (struct poll_req **pp = &s->reqs; *pp;) {
		struct poll_req *q = *pp;
		/* Every change made before the request was seen by the anchor
		 * scan; it is queued once no file dirty since then is left. */
		if (text || (q->anchor >= 0 && s->min_dirty > q->anchor)) {
			*pp = q->next;
			q->next = done;
			done = q;
		} else {
			pp = &q->next;
		}
	}
	pthread_mutex_unlock(&s->lock);
	while (done) {
		struct poll_req *q = done;
		done = q->next;
		answer(q->fd, text ? text : "ok\n");
		free(q);
	}
}

static void *run(void *arg)
{
	struct poll_scan *s = arg;
	int64_t next = mono_ns() + (int64_t)s->cfg.interval_ms * NS_PER_MS;
	log_thread_name("mfs-scan");
	for (;;) {
		pthread_mutex_lock(&s->lock);
		int waiting = 0;
		for (;;) {
			if (s->stopping)
				break;
			int64_t now = mono_ns(), at = next;
			waiting = 0;
			for (struct poll_req *q = s->reqs; q; q = q->next) {
				if (q->anchor < 0)
					at = now; /* a new request: scan at once */
				else
					waiting = 1;
			}
			/* Someone waits for a file to settle: look when it may. */
			if (waiting && s->next_settle < at)
				at = s->next_settle;
			if (now >= at)
				break;
			struct timespec ts = { (time_t)(at / 1000000000LL), (long)(at % 1000000000LL) };
			pthread_cond_timedwait(&s->cond, &s->lock, &ts);
		}
		if (s->stopping) {
			pthread_mutex_unlock(&s->lock);
			break;
		}
		pthread_mutex_unlock(&s->lock);
		int64_t start = mono_ns();
		(void)poll_scan_once(s, 0);
		answer_requests(s, NULL);
		next = start + (int64_t)s->cfg.interval_ms * NS_PER_MS;
		int64_t now = mono_ns();
		if (next < now)
			next = now; /* a scan longer than the interval: go on at once */
	}
	return NULL;
}

int poll_scan_start(struct poll_scan *s)
{
	int r = pthread_create(&s->thread, NULL, run, s);
	if (r != 0)
		return -r;
	s->started = 1;
	return 0;
}

void poll_scan_stop(struct poll_scan *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stopping = 1;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	if (s->started) {
		pthread_join(s->thread, NULL);
		s->started = 0;
	}
	answer_requests(s, "error: stopping\n");
}

void poll_scan_get_stats(struct poll_scan *s, struct poll_scan_stats *st)
{
	pthread_mutex_lock(&s->lock);
	*st = s->st;
	pthread_mutex_unlock(&s->lock);
}

void poll_scan_free(struct poll_scan *s)
{
	if (!s)
		return;
	poll_scan_stop(s);
	drop_snapshot(s, NULL);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s);
}
