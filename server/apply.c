#define _GNU_SOURCE
#include "apply.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chunker.h"
#include "log.h"
#include "path.h"
#include "resolve.h"

_Static_assert(sizeof(off_t) == 8, "files beyond 2 GiB need a 64-bit off_t");
_Static_assert(CHUNK_PROTO_MAX <= UINT32_MAX, "chunk lengths travel as u32");

int apply_init(struct apply_ctx *ctx, int rootfd, struct tmpdir *tmp, struct store *store,
	       struct state *state, int lift)
{
	ctx->rootfd = rootfd;
	ctx->tmp = tmp;
	ctx->store = store;
	ctx->state = state;
	ctx->lift = lift;
	int r = pthread_mutex_init(&ctx->ns_lock, NULL);
	return r ? -r : 0;
}

void apply_release(struct apply_ctx *ctx)
{
	if (!ctx)
		return;
	pthread_mutex_destroy(&ctx->ns_lock);
}

void apply_result_release(struct apply_result *res)
{
	if (!res)
		return;
	free(res->missing);
	memset(res, 0, sizeof(*res));
}

static void ns_lock(struct apply_ctx *ctx)
{
	int r = pthread_mutex_lock(&ctx->ns_lock);
	if (r) {
		log_error("ns_lock: %s", strerror(r));
		abort();
	}
}

static void ns_unlock(struct apply_ctx *ctx)
{
	int r = pthread_mutex_unlock(&ctx->ns_lock);
	if (r) {
		log_error("ns_unlock: %s", strerror(r));
		abort();
	}
}

/* Errors of resolving a parent that mean "it is not there (as a folder)". */
static int is_absent(int r)
{
	return r == -ENOENT || r == -ENOTDIR || r == -ELOOP;
}

/* Set a parent folder's mtime to the client's (pmtime). A failure does not
 * undo the op: it is logged and the op still succeeds (an mtime off is
 * repaired by the next op in that folder or the next full sync). */
static void set_pmtime(int pfd, int has, const struct timespec *ts, const char *path)
{
	if (!has)
		return;
	int r = resolve_fd_mtime(pfd, ts);
	if (r < 0)
		log_warn("cannot set mtime of the parent of %s: %s", path, strerror(-r));
}

static void remove_aside(struct apply_ctx *ctx, const char *aside)
{
	if (!aside[0])
		return;
	int r = resolve_rmtree(ctx->tmp->fd, aside, ctx->lift);
	if (r < 0)
		log_warn("cannot remove replaced object %s from tmp: %s (removed at next start)",
			 aside, strerror(-r));
}

/* An inode to fsync, and which descriptor of fsync_each_once() holds it. */
struct sync_once {
	dev_t dev;
	ino_t ino;
	size_t k;
};

static int sync_once_cmp(const void *a, const void *b)
{
	const struct sync_once *x = a, *y = b;
	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return 0;
}

/* fsync_parallel()'s shared state. */
struct fsync_job {
	const int *fd;      /* borrowed */
	int *r;             /* borrowed */
	size_t n;
	_Atomic size_t next;
};

static void *fsync_worker(void *arg)
{
	struct fsync_job *j = arg;
	for (size_t k; (k = atomic_fetch_add(&j->next, 1)) < j->n;)
		j->r[k] = fsync(j->fd[k]) < 0 ? -errno : 0;
	return NULL;
}

/* fsync fd[0..n) (all valid), r[k] the outcome of fd[k]; several at once
 * when there are enough: each fsync waits for the disk (its write, then
 * a flush of the disk's cache), and flushes that are waited for together
 * are merged by the block layer into one. */
#define FSYNC_THREADS 4
#define FSYNC_PER_THREAD 4 /* fsyncs that make one more thread worth it */

static void fsync_parallel(const int *fd, int *r, size_t n)
{
	struct fsync_job j = { fd, r, n, 0 };
	pthread_t t[FSYNC_THREADS - 1];
	size_t nt = 0;
	while (nt < FSYNC_THREADS - 1 && (nt + 1) * FSYNC_PER_THREAD < n &&
	       pthread_create(&t[nt], NULL, fsync_worker, &j) == 0)
		nt++;
	fsync_worker(&j);
	for (size_t i = 0; i < nt; i++)
		pthread_join(t[i], NULL);
}

/* fsync every descriptor fd[0..n) (-1: none), each inode once, and put
 * the outcome for fd[k] in r[k] (0 for -1). A run of ops in one folder then
 * costs one fsync of it, not one per op: on ext4 without a journal each
 * fsync writes the inode and flushes the disk's cache on its own. */
static void fsync_each_once(const int *fd, int *r, size_t n)
{
	struct sync_once *v = calloc(n ? n : 1, sizeof(*v)); /* owned */
	size_t m = 0;

	for (size_t k = 0; k < n; k++) {
		struct stat st;
		r[k] = 0;
		if (fd[k] < 0)
			continue;
		if (!v || fstat(fd[k], &st) < 0) {
			/* no memory (or no stat): this one on its own */
			r[k] = fsync(fd[k]) < 0 ? -errno : 0;
			continue;
		}
		v[m++] = (struct sync_once){ st.st_dev, st.st_ino, k };
	}
	if (m > 1)
		qsort(v, m, sizeof(*v), sync_once_cmp);
	/* fd1: one descriptor of each inode, in sorted order; e: their
	 * outcomes, given back to every descriptor of that inode. */
	int *fd1 = malloc((m ? m : 1) * sizeof(*fd1)), *e = malloc((m ? m : 1) * sizeof(*e));
	size_t u = 0;
	for (size_t i = 0; fd1 && e && i < m; i++)
		if (i == 0 || sync_once_cmp(&v[i], &v[i - 1]) != 0)
			fd1[u++] = fd[v[i].k];
	if (fd1 && e) {
		fsync_parallel(fd1, e, u);
		for (size_t i = 0, x = 0; i < m; i++) {
			if (i > 0 && sync_once_cmp(&v[i], &v[i - 1]) != 0)
				x++;
			r[v[i].k] = e[x];
		}
	} else {
		for (size_t i = 0; i < m; i++)
			r[v[i].k] = fsync(fd[v[i].k]) < 0 ? -errno : 0;
	}
	free(fd1);
	free(e);
	free(v);
}

/* Close the descriptors fd[0..n) of changes (-1: none). */
static void close_each(int *fd, size_t n)
{
	for (size_t k = 0; k < n; k++)
		if (fd[k] >= 0) {
			close(fd[k]);
			fd[k] = -1;
		}
}

/* Finish one op whose change had outcome r and whose descriptors to
 * fsync are fd[0..n) (-1: none; n <= 2): when r is 0, fsync each inode
 * once; close them either way. Returns r, or the first fsync error. */
static int settle(int r, int *fd, size_t n)
{
	int e[2] = { 0, 0 };
	if (r == 0 && n <= 2) {
		fsync_each_once(fd, e, n);
		r = e[0] < 0 ? e[0] : e[1];
	}
	close_each(fd, n);
	return r;
}

/* The end of a change in the folder pfd, lifted by pl: open it into *sfd
 * for the fsync that makes the change durable while it is still lifted
 * (opening needs u+r, the fsync nothing), put its mode back, and set its
 * mtime to the client's. Returns 0 or a negative errno (the mode and mtime
 * are seen to either way). */
static int parent_done(int pfd, struct resolve_lift *pl, int has_pmtime,
		       const struct timespec *pmtime, const char *path, int *sfd)
{
	int r = resolve_open_rd(pfd, sfd);
	resolve_unlift(pl);
	set_pmtime(pfd, has_pmtime, pmtime, path);
	return r;
}

/*
 * Move tmp/tname to pfd/base, replacing whatever is there. is_dir: the new
 * object is a folder. Call under ns_lock with pfd lifted.
 *
 * A non-folder replaces a non-folder with a plain renameat(), atomic. When a
 * folder is involved (replacing one, or being put over a file), renameat()
 * cannot do it, so the two are exchanged with RENAME_EXCHANGE: still one
 * atomic step as seen from DIR, and the old object ends up in tmp under
 * tname; *aside then holds that name and the caller removes it (after
 * unlocking: a large tree takes a while). On a filesystem without exchange
 * the old object is moved to tmp first (a moment with neither).
 */
static int place(struct apply_ctx *ctx, const char *tname, int pfd, const char *base, int is_dir,
		 char aside[TMPDIR_NAME_MAX])
{
	struct stat st;
	struct resolve_lift ol = RESOLVE_LIFT_INIT;
	int tfd = ctx->tmp->fd, r = 0;

	aside[0] = '\0';
	if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno != ENOENT)
			return -errno;
		if (renameat2(tfd, tname, pfd, base, RENAME_NOREPLACE) == 0)
			return 0;
		if (errno != EEXIST)
			return -errno;
		if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	}
	if (!is_dir && !S_ISDIR(st.st_mode))
		return renameat(tfd, tname, pfd, base) < 0 ? -errno : 0;

	if (S_ISDIR(st.st_mode) && ctx->lift) {
		/* The old folder moves to another parent: its ".." entry
		 * changes, which needs write permission on it. */
		int ofd = openat(pfd, base, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (ofd >= 0) {
			r = resolve_lift(ofd, 1, &ol);
			close(ofd);
			if (r < 0)
				return r;
		}
	}
	if (renameat2(tfd, tname, pfd, base, RENAME_EXCHANGE) == 0) {
		snprintf(aside, TMPDIR_NAME_MAX, "%s", tname);
		resolve_lift_drop(&ol);
		return 0;
	}
	if (errno != EINVAL && errno != EOPNOTSUPP) {
		r = -errno;
		goto fail;
	}
	tmpdir_name(ctx->tmp, 'o', aside);
	if (renameat(pfd, base, tfd, aside) < 0) {
		r = -errno;
		aside[0] = '\0';
		goto fail;
	}
	if (renameat(tfd, tname, pfd, base) < 0) {
		r = -errno;
		if (renameat(tfd, aside, pfd, base) < 0)
			log_error("cannot put %s back after a failed replace: %s", base,
				  strerror(errno));
		aside[0] = '\0';
		goto fail;
	}
	resolve_lift_drop(&ol);
	return 0;
fail:
	resolve_unlift(&ol);
	return r;
}

/* ---- file ---------------------------------------------------------------- */

/* The file a chunk was last read from, kept open for the next chunk (a file
 * is usually rebuilt from runs of chunks of one older file). */
struct src_cache {
	char *path; /* owned */
	int fd;
};

static void src_cache_release(struct src_cache *sc)
{
	free(sc->path);
	sc->path = NULL;
	if (sc->fd >= 0)
		close(sc->fd);
	sc->fd = -1;
}

static int src_open(struct apply_ctx *ctx, struct src_cache *sc, char *path)
{
	int pfd, r;
	const char *base;

	if (sc->path && strcmp(sc->path, path) == 0) {
		free(path);
		return sc->fd;
	}
	src_cache_release(sc);
	sc->path = path;
	if (path_check(path, strlen(path), 0) < 0)
		return -ENOENT;
	if ((r = resolve_parent(ctx->rootfd, path, 0, 0, &pfd, &base)) < 0)
		return r;
	sc->fd = openat(pfd, base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	r = sc->fd < 0 ? -errno : sc->fd;
	close(pfd);
	return r;
}

static int pread_full(int fd, uint8_t *buf, size_t len, off_t off)
{
	size_t have = 0;
	while (have < len) {
		ssize_t n = pread(fd, buf + have, len - have, off + (off_t)have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ENODATA;
		have += (size_t)n;
	}
	return 0;
}

int apply_signatures(struct apply_ctx *ctx, const char *path, uint32_t block, const uint64_t *off,
		     const uint64_t *len, size_t nr, uint8_t *out, size_t *cnt)
{
	struct src_cache sc = { .path = NULL, .fd = -1 };
	struct stat st;
	uint8_t *buf = NULL;
	int r = -ENOMEM;
	char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	int fd = src_open(ctx, &sc, p); /* takes p */
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		r = fd == -ENOMEM ? -ENOMEM : -ENOENT;
		goto out;
	}
	/* Read in pieces of whole blocks, about 1 MiB. */
	size_t piece = (1u << 20) / block * block;
	if (!(buf = malloc(piece)))
		goto out;
	for (size_t i = 0; i < nr; i++) {
		uint64_t have = off[i] < (uint64_t)st.st_size ? (uint64_t)st.st_size - off[i] : 0;
		uint64_t n = (len[i] < have ? len[i] : have) / block * block;
		cnt[i] = (size_t)(n / block);
		for (uint64_t at = 0; at < n;) {
			size_t want = n - at < piece ? (size_t)(n - at) : piece;
			if ((r = pread_full(fd, buf, want, (off_t)(off[i] + at))) < 0) {
				r = r == -ENODATA ? -ENOENT : -EIO; /* it shrank meanwhile */
				goto out;
			}
			rsig_make(buf, want, block, out);
			out += want / block * RSIG_ENTRY;
			at += want;
		}
	}
	r = 0;
out:
	free(buf);
	src_cache_release(&sc);
	return r;
}

/* Places of one chunk tried before it counts as unavailable: each stale one
 * is dropped on the way, so the next fetch starts further on. */
#define FETCH_PLACES 8

/*
 * Get the bytes of chunk c into buf, verified. Tries the chunks that came
 * with the op (inl, may be NULL), the store, then the
 * chunk index (a published file in DIR; up to FETCH_PLACES of them). On
 * success from the index,
 * *srcfd and *srcoff say where the verified bytes lie (for copy_file_range; the
 * fd belongs to sc). Returns 0, -ENOENT (unavailable: stale index entries
 * are dropped), -EBADMSG (c's length contradicts the chunk) or another
 * negative errno.
 */
static int fetch_chunk(struct apply_ctx *ctx, const struct apply_inline *inl,
		       const struct proto_chunk *c, uint8_t *buf, struct src_cache *sc, int *srcfd,
		       off_t *srcoff)
{
	char *path;
	uint64_t off;
	uint32_t len;
	struct hash_id got;
	const uint8_t *p;

	*srcfd = -1;
	if (inl && (p = inl->get(inl->arg, &c->id, c->len))) {
		memcpy(buf, p, c->len);
		return 0;
	}
	int r = store_get(ctx->store, &c->id, c->len, buf);
	if (r != -ENOENT || !ctx->state)
		return r;
	for (int tries = 0; tries < FETCH_PLACES; tries++) {
		r = state_index_get(ctx->state, &c->id, &path, &off, &len);
		if (r <= 0)
			return r == 0 ? -ENOENT : r;
		if (len != c->len) {
			free(path);
			return -EBADMSG;
		}
		int fd = src_open(ctx, sc, path); /* takes path */
		if (fd >= 0 && off <= (uint64_t)INT64_MAX - len)
			r = pread_full(fd, buf, len, (off_t)off);
		else
			r = fd < 0 ? fd : -EINVAL;
		if (r == 0) {
			hash_buf(buf, len, &got);
			if (hash_equal(&got, &c->id)) {
				*srcfd = fd;
				*srcoff = (off_t)off;
				return 0;
			}
		}
		/* Stale: the file is gone, shorter, or holds other bytes there
		 * (or the entry is nonsense). Anything else (no descriptors
		 * left, EACCES) passes: the entry stays, and the chunk counts
		 * as unavailable this time. */
		if (r == -ENOMEM || r == -EIO)
			return r;
		if (r != 0 && r != -ENOENT && r != -ENODATA && r != -ENOTDIR && r != -ELOOP &&
		    r != -EINVAL)
			return -ENOENT;
		log_debug("dropping stale index entry of a chunk at %s+%llu", sc->path,
			  (unsigned long long)off);
		r = state_index_drop(ctx->state, &c->id, sc->path, off);
		if (r < 0) {
			log_warn("cannot drop a stale chunk index entry: %s", strerror(-r));
			break; /* it would come back the same */
		}
	}
	return -ENOENT;
}

static int chunk_available(struct apply_ctx *ctx, const struct apply_inline *inl,
			   const struct proto_chunk *c)
{
	return (inl && inl->get(inl->arg, &c->id, c->len)) || store_has(ctx->store, &c->id) ||
	       (ctx->state && state_index_has(ctx->state, &c->id));
}

static int add_missing(struct apply_result *res, size_t i, size_t *alloc)
{
	if (res->nmissing == *alloc) {
		size_t n = *alloc ? *alloc * 2 : 64;
		size_t *p = realloc(res->missing, n * sizeof(*p));
		if (!p)
			return -ENOMEM;
		res->missing = p;
		*alloc = n;
	}
	res->missing[res->nmissing++] = i;
	return 0;
}

static int all_zero(const uint8_t *p, size_t len)
{
	/* Compare the buffer with itself shifted by one: zero iff every byte
	 * equals the first, and the first is zero. */
	return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

static int pwrite_full(int fd, const uint8_t *p, size_t len, off_t at)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len, at);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		at += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Write the verified chunk buf[0..len) at offset at of fd. Bytes that sit
 * verified in a file of DIR are copied in the kernel (copy_file_range: a
 * reflink where the filesystem can). */
static int put_chunk(int fd, off_t at, const uint8_t *buf, size_t len, int srcfd, off_t srcoff)
{
	size_t done = 0;
	if (srcfd >= 0) {
		loff_t in = srcoff, out = at;
		while (done < len) {
			ssize_t n = copy_file_range(srcfd, &in, fd, &out, len - done, 0);
			if (n <= 0)
				break; /* any failure: fall back to the verified buffer */
			done += (size_t)n;
		}
	}
	return pwrite_full(fd, buf + done, len - done, at + (off_t)done);
}

/*
 * Build chunk c, at offset at of op's new version, from the file now at
 * op->path with op's moves and then its patches laid over it (a small
 * edit of a large file sends the bytes it changed, not the chunks around
 * them). Bytes past that file's end, or with no such file, read as zeros;
 * moves read the file the op is a delta against (base_path, else
 * op->path). The result counts only if it has c's id. Returns 0 (buf
 * holds the chunk), -ENOENT (not the chunk, or a source missing) or
 * -ENOMEM.
 */
static int patch_chunk(struct apply_ctx *ctx, const struct proto_op *op,
		       const struct proto_chunk *c, uint64_t at, uint8_t *buf,
		       struct src_cache *bsc, struct src_cache *msc)
{
	struct hash_id got;
	struct stat st;
	size_t have = 0;
	if (at > (uint64_t)INT64_MAX - c->len)
		return -ENOENT;
	char *p = strdup(op->path);
	if (!p)
		return -ENOMEM;
	int fd = src_open(ctx, bsc, p); /* takes p */
	if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		while (have < c->len) {
			ssize_t n = pread(fd, buf + have, c->len - have, (off_t)(at + have));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			have += (size_t)n;
		}
	} else if (!op->nmoves) {
		return -ENOENT;
	}
	memset(buf + have, 0, c->len - have);
	/* Moves: bytes of the base file at other offsets (the first one that
	 * ends past at is found by bisection; they are sorted). */
	size_t lo = 0, hi = op->nmoves;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (op->moves[mid].off + op->moves[mid].len <= at)
			lo = mid + 1;
		else
			hi = mid;
	}
	int mfd = -1;
	for (size_t k = lo; k < op->nmoves && op->moves[k].off < at + c->len; k++) {
		const struct rsig_move *m = &op->moves[k];
		uint64_t from = m->off > at ? m->off : at;
		uint64_t to = m->off + m->len < at + c->len ? m->off + m->len : at + c->len;
		if (mfd < 0) {
			char *q = strdup(op->base_path ? op->base_path : op->path);
			if (!q)
				return -ENOMEM;
			if ((mfd = src_open(ctx, msc, q)) < 0) /* takes q */
				return -ENOENT;
		}
		if (m->src + (from - m->off) > (uint64_t)INT64_MAX - (to - from) ||
		    pread_full(mfd, buf + (from - at), (size_t)(to - from),
			       (off_t)(m->src + (from - m->off))) < 0)
			return -ENOENT;
	}
	for (size_t k = 0; k < op->npatches; k++) {
		const struct proto_patch *pp = &op->patches[k];
		if (pp->off >= at + c->len)
			break;
		if (pp->off + pp->len <= at)
			continue;
		uint64_t from = pp->off > at ? pp->off : at;
		uint64_t to = pp->off + pp->len < at + c->len ? pp->off + pp->len : at + c->len;
		memcpy(buf + (from - at), pp->data + (from - pp->off), (size_t)(to - from));
	}
	hash_buf(buf, c->len, &got);
	return hash_equal(&got, &c->id) ? 0 : -ENOENT;
}

/* 1 if chunk i is the same as chunk i - 1. */
static int same_as_prev(const struct proto_op *op, size_t i)
{
	return i > 0 && op->chunks[i].len == op->chunks[i - 1].len &&
	       hash_equal(&op->chunks[i].id, &op->chunks[i - 1].id);
}

_Static_assert(PROTO_STAGE_LEN == STORE_STAGE_TOKEN, "a stage's name is the store's token");

/*
 * 1 if every chunk placed in a stage (pl[0..n), sorted by offset) is one
 * of op's chunks at its offset (same id and length): the stage's file can
 * then become the new file with only the holes between them written,
 * and no placed byte is ever written over (the op's chunks do not
 * overlap). 0 otherwise (a chunk at another offset, past the end, a
 * stage the client filled for another version): writing the file there
 * would destroy chunks the store still offers from it.
 */
static int stage_fits(const struct proto_op *op, const struct store_placed *pl, size_t n)
{
	uint64_t at = 0;
	size_t k = 0;
	for (size_t i = 0; i < op->nchunks && k < n; i++) {
		const struct proto_chunk *c = &op->chunks[i];
		if (pl[k].off < at)
			return 0; /* inside the chunk before */
		if (pl[k].off == at) {
			if (pl[k].len != c->len || !hash_equal(&pl[k].id, &c->id))
				return 0;
			k++;
		}
		at += c->len;
	}
	return k == n;
}

/* 1 if chunk c at offset at is the next placed one (*k moves past it). */
static int stage_has(const struct store_placed *pl, size_t n, size_t *k, uint64_t at)
{
	if (*k < n && pl[*k].off == at) {
		(*k)++;
		return 1;
	}
	return 0;
}

/* Build op's file in tmp/tname: content, mode, mtime, fsync. Returns 0,
 * APPLY_MISSING (res->missing filled) or a negative errno; on anything but
 * 0 the temporary is gone. Without flush, the caller makes the file
 * durable (apply_many: one journal commit for many files). */
static int assemble(struct apply_ctx *ctx, const struct proto_op *op,
		    const struct apply_inline *inl, const char *tname, int flush,
		    struct apply_result *res)
{
	struct src_cache sc = { .path = NULL, .fd = -1 };
	struct src_cache bsc = { .path = NULL, .fd = -1 }; /* op->path, for patches */
	struct src_cache msc = { .path = NULL, .fd = -1 }; /* the base, for moves */
	size_t alloc = 0;
	uint8_t *buf = NULL;
	off_t at = 0;
	int r = 0;

	/* Cheap presence check first: no point writing gigabytes to find the
	 * last chunk missing. Runs of one chunk (a sparse image is mostly
	 * the zero chunk) are looked up once. */
	int avail = 0;
	for (size_t i = 0; i < op->nchunks; i++) {
		if (!same_as_prev(op, i))
			avail = chunk_available(ctx, inl, &op->chunks[i]);
		/* With "patch", it may be built from the file (checked below). */
		if (!avail && !op->patched && (r = add_missing(res, i, &alloc)) < 0)
			return r;
	}
	if (res->nmissing)
		return APPLY_MISSING;

	/* A stage: the chunks uploaded for this version, already at their
	 * offsets in a file of their own, which becomes the new file; only
	 * the chunks not placed there are written. A stage that does not
	 * fit the list is left to the store, which reads the chunks placed
	 * in it from its descriptor (the file itself is dropped). */
	int fd = -1;
	struct store_placed *placed = NULL;
	size_t nplaced = 0, pk = 0;
	if (op->has_stage) {
		r = store_stage_take(ctx->store, op->stage, ctx->tmp->fd, tname, &fd, &placed,
				     &nplaced);
		if (r < 0 && r != -ENOENT)
			return r;
		if (r == 0 && !stage_fits(op, placed, nplaced)) {
			log_debug("%s: the stage does not fit the chunk list", op->path);
			close(fd);
			fd = -1;
			unlinkat(ctx->tmp->fd, tname, 0);
			nplaced = 0;
		}
	}
	if (fd < 0 && (fd = openat(ctx->tmp->fd, tname, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
				   0600)) < 0)
		return -errno;
	if (op->nchunks && !(buf = malloc(CHUNK_PROTO_MAX))) {
		r = -ENOMEM;
		goto fail;
	}
	int in_buf = 0, zero = 0; /* buf holds the previous chunk, verified */
	for (size_t i = 0; i < op->nchunks; i++) {
		const struct proto_chunk *c = &op->chunks[i];
		off_t here = at; /* where chunk i goes */
		int srcfd;
		off_t srcoff;
		at += c->len;
		if (res->nmissing) {
			/* Already failing: only find the rest of the missing. A
			 * chunk to be built from patches or moves is tried too,
			 * or each one that fails would cost a round trip. */
			if (!chunk_available(ctx, inl, c)) {
				int pr = op->patched ? patch_chunk(ctx, op, c, (uint64_t)here, buf,
								   &bsc, &msc)
						     : -ENOENT;
				if (pr == -ENOMEM) {
					r = pr;
					goto fail;
				}
				if (pr < 0 && (r = add_missing(res, i, &alloc)) < 0)
					goto fail;
			}
			continue;
		}
		if (stage_has(placed, nplaced, &pk, (uint64_t)here)) {
			in_buf = 0; /* buf is not chunk i */
			continue;   /* its bytes are there */
		}
		if (in_buf && same_as_prev(op, i)) {
			/* The same chunk again: no second fetch and hash. */
			if (!zero && (r = pwrite_full(fd, buf, c->len, here)) < 0)
				goto fail;
			continue;
		}
		in_buf = 0;
		r = fetch_chunk(ctx, inl, c, buf, &sc, &srcfd, &srcoff);
		if (r == -ENOENT && op->patched)
			r = patch_chunk(ctx, op, c, (uint64_t)here, buf, &bsc, &msc);
		if (r == -ENOENT) {
			if ((r = add_missing(res, i, &alloc)) < 0)
				goto fail;
			continue;
		}
		if (r < 0)
			goto fail;
		/* An all-zero chunk is skipped: a hole (sparse files stay
		 * sparse; the final ftruncate sets the size). */
		zero = all_zero(buf, c->len);
		if (!zero && (r = put_chunk(fd, here, buf, c->len, srcfd, srcoff)) < 0)
			goto fail;
		in_buf = 1;
	}
	if (res->nmissing) {
		r = APPLY_MISSING;
		goto fail;
	}
	struct timespec ts[2] = { { .tv_sec = 0, .tv_nsec = UTIME_OMIT }, op->mtime };
	if (ftruncate(fd, (off_t)op->size) < 0 || fchmod(fd, op->mode) < 0 ||
	    futimens(fd, ts) < 0 || (flush && fsync(fd) < 0)) {
		r = -errno;
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		r = -errno;
		goto fail;
	}
	free(buf);
	free(placed);
	src_cache_release(&sc);
	src_cache_release(&bsc);
	src_cache_release(&msc);
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlinkat(ctx->tmp->fd, tname, 0);
	free(buf);
	free(placed);
	src_cache_release(&sc);
	src_cache_release(&bsc);
	src_cache_release(&msc);
	return r;
}

/* Put the assembled temporary tname at op->path and set its folder's
 * mtime. *syncfd gets the folder, open for an fsync (or -1); aside: what
 * the file replaced, for remove_aside(). On failure the temporary is
 * gone. */
static int file_place(struct apply_ctx *ctx, const struct proto_op *op, const char *tname,
		      int *syncfd, char aside[TMPDIR_NAME_MAX])
{
	struct resolve_lift pl = RESOLVE_LIFT_INIT;
	const char *base;
	int pfd = -1, placed = 0, r;

	*syncfd = -1;
	aside[0] = '\0';
	ns_lock(ctx);
	if ((r = resolve_parent(ctx->rootfd, op->path, 1, ctx->lift, &pfd, &base)) < 0 ||
	    (r = resolve_lift(pfd, ctx->lift, &pl)) < 0 ||
	    (r = place(ctx, tname, pfd, base, 0, aside)) < 0)
		goto unlock;
	placed = 1;
	r = parent_done(pfd, &pl, op->has_pmtime, &op->pmtime, op->path, syncfd);
unlock:
	resolve_unlift(&pl);
	ns_unlock(ctx);
	if (pfd >= 0)
		close(pfd);
	if (!placed)
		unlinkat(ctx->tmp->fd, tname, 0);
	return r;
}

/* The file ops op[0..n) are durable: record where their chunks live
 * (one transaction), then drop the store copies (no second copy of the
 * data). If recording fails, the copies simply stay in the store. */
static void file_index_many(struct apply_ctx *ctx, const struct proto_op *const *op, size_t n)
{
	if (!ctx->state || n == 0)
		return;
	const char **path = calloc(n, sizeof(*path));
	const struct proto_chunk **ch = calloc(n, sizeof(*ch));
	size_t *nch = calloc(n, sizeof(*nch));
	int ir = -ENOMEM;
	if (path && ch && nch) {
		for (size_t k = 0; k < n; k++) {
			path[k] = op[k]->path;
			ch[k] = op[k]->chunks;
			nch[k] = op[k]->nchunks;
		}
		ir = state_index_files(ctx->state, n, path, ch, nch);
	}
	if (ir < 0)
		log_warn("cannot index the chunks of %s%s: %s", op[0]->path,
			 n > 1 ? " and the files published with it" : "", strerror(-ir));
	for (size_t k = 0; ir == 0 && k < n; k++)
		for (size_t i = 0; i < op[k]->nchunks; i++)
			store_remove(ctx->store, &op[k]->chunks[i].id);
	free(path);
	free(ch);
	free(nch);
}

/* The file op is durable: file_index_many() of one. */
static void file_index(struct apply_ctx *ctx, const struct proto_op *op)
{
	file_index_many(ctx, &op, 1);
}

static int op_file(struct apply_ctx *ctx, const struct proto_op *op,
		   const struct apply_inline *inl, struct apply_result *res)
{
	char tname[TMPDIR_NAME_MAX], aside[TMPDIR_NAME_MAX] = "";
	int syncfd = -1, r;

	tmpdir_name(ctx->tmp, 'f', tname);
	if ((r = assemble(ctx, op, inl, tname, 1, res)) != 0)
		return r;
	r = file_place(ctx, op, tname, &syncfd, aside);
	/* The folder fsync runs outside the lock so that parallel uploads
	 * share journal commits instead of queueing for one each. The op is
	 * acknowledged only after it. */
	if (syncfd >= 0) {
		if (fsync(syncfd) < 0 && r == 0)
			r = -errno;
		close(syncfd);
	}
	remove_aside(ctx, aside);
	if (r < 0)
		return r;
	file_index(ctx, op);
	return 0;
}

/* ---- mkdir, symlink, delete, meta --------------------------------------- */

/* The root itself: mode and mtime only (mkdir "" and meta ""). */
static int op_root(struct apply_ctx *ctx, const struct proto_op *op)
{
	int r;
	ns_lock(ctx);
	if ((r = resolve_fd_chmod(ctx->rootfd, op->mode)) == 0 &&
	    (r = resolve_fd_mtime(ctx->rootfd, &op->mtime)) == 0 && fsync(ctx->rootfd) < 0)
		r = -errno;
	ns_unlock(ctx);
	return r;
}

/* Make the folder op->path (not the root). Durable once *dsync (the
 * folder, open for an fsync; -1 when it cannot be opened for one: no u+r)
 * and *psync (its parent, likewise, or -1) are fsynced: the caller's to
 * do, outside the namespace lock, and to close, also on failure. */
static int op_mkdir_at(struct apply_ctx *ctx, const struct proto_op *op, int *dsync, int *psync)
{
	char tname[TMPDIR_NAME_MAX] = "", aside[TMPDIR_NAME_MAX] = "";
	struct resolve_lift pl = RESOLVE_LIFT_INIT;
	struct stat st;
	const char *base;
	int pfd = -1, dfd = -1, replaced = 0, r;

	*dsync = -1;
	*psync = -1;
	ns_lock(ctx);
	if ((r = resolve_parent(ctx->rootfd, op->path, 1, ctx->lift, &pfd, &base)) < 0 ||
	    (r = resolve_lift(pfd, ctx->lift, &pl)) < 0)
		goto out;
	if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
		dfd = openat(pfd, base, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (dfd < 0) {
			r = -errno;
			goto out;
		}
	} else {
		/* Missing, or a non-folder to replace: build the folder in tmp
		 * (0700 until filled in) and put it in place atomically. */
		tmpdir_name(ctx->tmp, 'd', tname);
		if (mkdirat(ctx->tmp->fd, tname, 0700) < 0) {
			r = -errno;
			tname[0] = '\0';
			goto out;
		}
		dfd = openat(ctx->tmp->fd, tname, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (dfd < 0) {
			r = -errno;
			goto out;
		}
		if ((r = place(ctx, tname, pfd, base, 1, aside)) < 0)
			goto out;
		/* Placed: tmp/tname is gone, or is the replaced object (aside). */
		tname[0] = '\0';
		replaced = 1;
	}
	/* Mode and mtime last: the rename into place may touch the folder. */
	if ((r = resolve_fd_chmod(dfd, op->mode)) < 0 || (r = resolve_fd_mtime(dfd, &op->mtime)) < 0)
		goto out;
	int e = resolve_open_rd(dfd, dsync);
	if (e < 0 && e != -EACCES)
		r = e;
	e = parent_done(pfd, &pl, op->has_pmtime, &op->pmtime, op->path, psync);
	if (r == 0)
		r = e;
	if (r == 0 && replaced && ctx->state)
		state_index_forget(ctx->state, op->path); /* a stale hint at worst */
out:
	resolve_unlift(&pl);
	if (tname[0])
		unlinkat(ctx->tmp->fd, tname, AT_REMOVEDIR);
	ns_unlock(ctx);
	if (dfd >= 0)
		close(dfd);
	if (pfd >= 0)
		close(pfd);
	remove_aside(ctx, aside);
	return r;
}

static int op_mkdir(struct apply_ctx *ctx, const struct proto_op *op)
{
	int fd[2];

	if (op->path[0] == '\0')
		return op_root(ctx, op);
	return settle(op_mkdir_at(ctx, op, &fd[0], &fd[1]), fd, 2);
}

/* Make the symlink op->path. Durable once *psync (its folder, open for an
 * fsync, or -1) is fsynced: the caller's to do, outside the namespace
 * lock, and to close, also on failure. */
static int op_symlink_at(struct apply_ctx *ctx, const struct proto_op *op, int *psync)
{
	char tname[TMPDIR_NAME_MAX], aside[TMPDIR_NAME_MAX] = "";
	struct resolve_lift pl = RESOLVE_LIFT_INIT;
	struct timespec ts[2] = { { .tv_sec = 0, .tv_nsec = UTIME_OMIT }, op->mtime };
	const char *base;
	int pfd = -1, placed = 0, r;

	*psync = -1;

	/* Built in tmp, mtime included (a rename does not change a
	 * non-folder's mtime), then renamed over whatever is at path. */
	tmpdir_name(ctx->tmp, 'l', tname);
	if (symlinkat(op->target, ctx->tmp->fd, tname) < 0)
		return -errno;
	if (utimensat(ctx->tmp->fd, tname, ts, AT_SYMLINK_NOFOLLOW) < 0) {
		r = -errno;
		unlinkat(ctx->tmp->fd, tname, 0);
		return r;
	}
	ns_lock(ctx);
	if ((r = resolve_parent(ctx->rootfd, op->path, 1, ctx->lift, &pfd, &base)) < 0 ||
	    (r = resolve_lift(pfd, ctx->lift, &pl)) < 0 ||
	    (r = place(ctx, tname, pfd, base, 0, aside)) < 0)
		goto out;
	placed = 1;
	r = parent_done(pfd, &pl, op->has_pmtime, &op->pmtime, op->path, psync);
	if (r == 0 && ctx->state)
		state_index_forget(ctx->state, op->path); /* a stale hint at worst */
out:
	resolve_unlift(&pl);
	ns_unlock(ctx);
	if (!placed)
		unlinkat(ctx->tmp->fd, tname, 0);
	if (pfd >= 0)
		close(pfd);
	remove_aside(ctx, aside);
	return r;
}

static int op_symlink(struct apply_ctx *ctx, const struct proto_op *op)
{
	int fd;
	return settle(op_symlink_at(ctx, op, &fd), &fd, 1);
}

/* Delete op->path. *syncfd gets the folder, open, for the caller to fsync
 * outside the namespace lock (-1 when nothing changed) and to make the
 * index forget the path. */
static int op_delete_at(struct apply_ctx *ctx, const struct proto_op *op, int *syncfd)
{
	char aside[TMPDIR_NAME_MAX] = "";
	struct resolve_lift pl = RESOLVE_LIFT_INIT, dl = RESOLVE_LIFT_INIT;
	struct stat st;
	const char *base;
	int pfd = -1, sfd = -1, r;

	*syncfd = -1;
	ns_lock(ctx);
	r = resolve_parent(ctx->rootfd, op->path, 0, ctx->lift, &pfd, &base);
	if (is_absent(r)) {
		r = 0; /* a parent is missing or not a folder: nothing to delete */
		goto out;
	}
	if (r < 0 || (r = resolve_lift(pfd, ctx->lift, &pl)) < 0)
		goto out;
	if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		r = errno == ENOENT ? 0 : -errno;
		if (r == 0) {
			resolve_unlift(&pl);
			set_pmtime(pfd, op->has_pmtime, &op->pmtime, op->path);
		}
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		/* Out of DIR in one atomic rename, removed from tmp later. */
		int dfd = openat(pfd, base, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (dfd < 0) {
			r = -errno;
			goto out;
		}
		r = resolve_lift(dfd, ctx->lift, &dl);
		close(dfd);
		if (r < 0)
			goto out;
		tmpdir_name(ctx->tmp, 'x', aside);
		if (renameat(pfd, base, ctx->tmp->fd, aside) < 0) {
			r = -errno;
			aside[0] = '\0';
			goto out;
		}
		resolve_lift_drop(&dl);
	} else if (unlinkat(pfd, base, 0) < 0 && errno != ENOENT) {
		r = -errno;
		goto out;
	}
	if ((r = parent_done(pfd, &pl, op->has_pmtime, &op->pmtime, op->path, &sfd)) < 0)
		goto out;
	*syncfd = sfd;
	sfd = -1;
out:
	resolve_unlift(&dl);
	resolve_unlift(&pl);
	ns_unlock(ctx);
	if (sfd >= 0)
		close(sfd);
	if (pfd >= 0)
		close(pfd);
	remove_aside(ctx, aside);
	return r;
}

/* Delete op->path; durable when it returns 0 (its folder fsynced). */
static int op_delete(struct apply_ctx *ctx, const struct proto_op *op)
{
	int fd;
	int r = op_delete_at(ctx, op, &fd), changed = fd >= 0;
	r = settle(r, &fd, 1);
	if (r == 0 && changed && ctx->state)
		state_index_forget(ctx->state, op->path); /* a stale hint at worst */
	return r;
}

static int type_matches(mode_t m, char type)
{
	return (type == 'f' && S_ISREG(m)) || (type == 'd' && S_ISDIR(m)) ||
	       (type == 'l' && S_ISLNK(m));
}

/* Make a metadata change of pfd/base durable: fsync the object itself if
 * it can be opened, otherwise its folder (whose journal commit carries the
 * inode change on ext4/xfs). */
static int sync_meta(int pfd, const char *base, char type)
{
	if (type != 'l') {
		int fd = openat(pfd, base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd >= 0) {
			int r = fsync(fd) < 0 ? -errno : 0;
			close(fd);
			if (r == 0)
				return 0;
		}
	}
	return resolve_fsync_dir(pfd);
}

static int op_meta(struct apply_ctx *ctx, const struct proto_op *op)
{
	struct resolve_lift pl = RESOLVE_LIFT_INIT;
	struct stat st;
	const char *base;
	int pfd = -1, ofd = -1, r;

	if (op->path[0] == '\0')
		return op_root(ctx, op);
	ns_lock(ctx);
	r = resolve_parent(ctx->rootfd, op->path, 0, ctx->lift, &pfd, &base);
	if (r < 0) {
		if (is_absent(r))
			r = -ENOENT;
		goto out;
	}
	/* Looking into the folder takes u+x (a folder made 0000). */
	if ((r = resolve_lift(pfd, ctx->lift, &pl)) < 0)
		goto out;
	if (op->type == 'l') {
		struct timespec ts[2] = { { .tv_sec = 0, .tv_nsec = UTIME_OMIT }, op->mtime };
		if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = -errno;
			goto out;
		}
		if (!S_ISLNK(st.st_mode)) {
			r = -ENOENT;
			goto out;
		}
		if (utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW) < 0) {
			r = -errno;
			goto out;
		}
	} else {
		/* Through an fd of the object itself: never a symlink's target,
		 * and the type check and the change hit the same inode. */
		ofd = openat(pfd, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (ofd < 0) {
			r = -errno;
			goto out;
		}
		if (fstat(ofd, &st) < 0) {
			r = -errno;
			goto out;
		}
		if (!type_matches(st.st_mode, op->type)) {
			r = -ENOENT;
			goto out;
		}
		if ((r = resolve_fd_chmod(ofd, op->mode)) < 0 ||
		    (r = resolve_fd_mtime(ofd, &op->mtime)) < 0)
			goto out;
	}
	set_pmtime(pfd, op->has_pmtime, &op->pmtime, op->path);
	r = sync_meta(pfd, base, op->type);
out:
	resolve_unlift(&pl);
	ns_unlock(ctx);
	if (ofd >= 0)
		close(ofd);
	if (pfd >= 0)
		close(pfd);
	return r;
}

/* ---- rename ------------------------------------------------------------- */

/* Lift the folder base in pfd itself (not its parent), if it is one. */
static int lift_child(struct apply_ctx *ctx, int pfd, const char *base, struct resolve_lift *l)
{
	if (!ctx->lift)
		return 0;
	int fd = openat(pfd, base, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return 0; /* not a folder: nothing to lift */
	int r = resolve_lift(fd, 1, l);
	close(fd);
	return r;
}

static int op_rename(struct apply_ctx *ctx, const struct proto_op *op,
		     const struct apply_origin *origin, struct apply_result *res)
{
	char aside[TMPDIR_NAME_MAX] = "";
	struct resolve_lift fl = RESOLVE_LIFT_INIT, tl = RESOLVE_LIFT_INIT;
	struct resolve_lift sl = RESOLVE_LIFT_INIT, xl = RESOLVE_LIFT_INIT;
	struct stat fst, tst;
	const char *fbase, *tbase;
	int fpfd = -1, tpfd = -1, fsfd = -1, tsfd = -1, r, texists;
	int exchange = op->rflags == RENAME_F_EXCHANGE;
	int replay = ctx->state && origin && origin->client[0] && origin->has_seq;
	uint64_t last;

	/* Moving a folder into itself, or onto one of its ancestors: the
	 * client's own rename(2) refused that, so it never sends it. */
	if (strcmp(op->path, op->path2) != 0 &&
	    (path_is_under(op->path2, op->path) || path_is_under(op->path, op->path2)))
		return -EINVAL;

	ns_lock(ctx);
	if (replay) {
		r = state_seq_get(ctx->state, origin->client, &last);
		if (r < 0)
			goto out;
		if (r == 1 && origin->seq <= last) {
			res->replayed = 1;
			r = 0;
			goto out;
		}
	}
	/* Write permission: both parents (lifted before anything looks into
	 * them: a folder made 0000 refuses even that), and a folder that
	 * changes parent (its ".." entry is rewritten). */
	r = resolve_parent(ctx->rootfd, op->path, 0, ctx->lift, &fpfd, &fbase);
	if (r < 0) {
		if (is_absent(r))
			r = -ENOENT;
		goto out;
	}
	if ((r = resolve_lift(fpfd, ctx->lift, &fl)) < 0)
		goto out;
	if (fstatat(fpfd, fbase, &fst, AT_SYMLINK_NOFOLLOW) < 0) {
		r = -errno;
		goto out;
	}
	r = resolve_parent(ctx->rootfd, op->path2, !exchange, ctx->lift, &tpfd, &tbase);
	if (r < 0) {
		if (is_absent(r) && exchange)
			r = -ENOENT;
		goto out;
	}
	if ((r = resolve_lift(tpfd, ctx->lift, &tl)) < 0)
		goto out;
	texists = fstatat(tpfd, tbase, &tst, AT_SYMLINK_NOFOLLOW) == 0;
	if (!texists && errno != ENOENT) {
		r = -errno;
		goto out;
	}
	if (exchange && !texists) {
		r = -ENOENT;
		goto out;
	}
	if (op->rflags == RENAME_F_NOREPLACE && texists) {
		r = -EEXIST;
		goto out;
	}
	if ((r = lift_child(ctx, fpfd, fbase, &sl)) < 0 ||
	    (texists && (r = lift_child(ctx, tpfd, tbase, &xl)) < 0))
		goto out;

	unsigned flags = exchange ? RENAME_EXCHANGE :
			 op->rflags == RENAME_F_NOREPLACE ? RENAME_NOREPLACE : 0;
	if (renameat2(fpfd, fbase, tpfd, tbase, flags) < 0) {
		r = -errno;
		if (flags || (r != -ENOTEMPTY && r != -EEXIST && r != -EISDIR && r != -ENOTDIR))
			goto out;
		/* Plain rename onto something rename(2) cannot replace (a
		 * non-empty folder, or another type): the client's own rename
		 * replaced it, so move it aside first, and back on failure. */
		tmpdir_name(ctx->tmp, 'r', aside);
		if (renameat(tpfd, tbase, ctx->tmp->fd, aside) < 0) {
			r = -errno;
			aside[0] = '\0';
			goto out;
		}
		if (renameat(fpfd, fbase, tpfd, tbase) < 0) {
			r = -errno;
			if (renameat(ctx->tmp->fd, aside, tpfd, tbase) < 0)
				log_error("cannot put %s back after a failed rename: %s",
					  op->path2, strerror(errno));
			aside[0] = '\0';
			goto out;
		}
	}
	resolve_unlift(&xl);
	resolve_unlift(&sl);
	r = parent_done(tpfd, &tl, op->has_pmtime2, &op->pmtime2, op->path2, &tsfd);
	int fr = parent_done(fpfd, &fl, op->has_pmtime, &op->pmtime, op->path, &fsfd);
	if (r == 0)
		r = fr;
	/* Both folders; a rename within one folder fsyncs it once. */
	int fds[2] = { tsfd, fsfd };
	tsfd = fsfd = -1;
	if ((r = settle(r, fds, 2)) < 0)
		goto out;
	if (ctx->state) {
		int ir = state_index_rename(ctx->state, op->path, op->path2, exchange);
		if (ir < 0)
			log_warn("cannot update the chunk index for %s -> %s: %s", op->path,
				 op->path2, strerror(-ir));
	}
	/* Recorded after the rename is durable and before the reply: a
	 * replay after this point is recognised. */
	if (replay)
		r = state_seq_set(ctx->state, origin->client, origin->seq);
out:
	resolve_unlift(&xl);
	resolve_unlift(&sl);
	resolve_unlift(&tl);
	resolve_unlift(&fl);
	ns_unlock(ctx);
	if (fsfd >= 0)
		close(fsfd);
	if (tsfd >= 0)
		close(tsfd);
	if (fpfd >= 0)
		close(fpfd);
	if (tpfd >= 0)
		close(tpfd);
	remove_aside(ctx, aside);
	return r;
}

/* ---- dispatch ----------------------------------------------------------- */

static const char *op_name(enum proto_kind k)
{
	switch (k) {
	case OP_FILE: return "file";
	case OP_MKDIR: return "mkdir";
	case OP_SYMLINK: return "symlink";
	case OP_DELETE: return "delete";
	case OP_META: return "meta";
	case OP_RENAME: return "rename";
	}
	return "?";
}

/* A file op sent as a delta: the list recorded for base_path (which must
 * have the digest the client expects, else -ESTALE: the client then sends
 * the whole list) with the edits applied. Fills full (borrowing op's
 * strings; full->chunks is new, caller frees). */
static int resolve_delta(struct apply_ctx *ctx, const struct proto_op *op, struct proto_op *full)
{
	struct proto_chunk *base = NULL;
	struct hash_id digest;
	size_t nbase = 0, n = 0;
	uint64_t sum = 0;
	int r, err = 0;

	if (!ctx->state)
		return -ESTALE;
	r = state_list_get(ctx->state, op->base_path, &digest, &base, &nbase);
	if (r < 0)
		return r;
	if (r == 0 || !hash_equal(&digest, &op->base_digest)) {
		free(base);
		return -ESTALE;
	}
	*full = *op;
	/* full keeps base_path (borrowed): its moves read that file. */
	full->edits = NULL;
	full->nedits = 0;
	full->chunks = proto_apply_edits(base, nbase, op->edits, op->nedits, &n, &err);
	free(base);
	if (!full->chunks)
		return err;
	full->nchunks = n;
	for (size_t i = 0; i < n; i++)
		sum += full->chunks[i].len;
	if (sum != op->size) {
		free(full->chunks);
		full->chunks = NULL;
		return -EINVAL;
	}
	return 0;
}

static void log_result(const struct proto_op *op, int r, const struct apply_result *res)
{
	if (r == APPLY_MISSING)
		log_debug("file %s: %zu chunks missing", op->path, res->nmissing);
	else if (r < 0 && op->kind == OP_RENAME)
		log_warn("rename %s -> %s: %s", op->path, op->path2, strerror(-r));
	else if (r < 0)
		log_warn("%s %s: %s", op_name(op->kind), op->path, strerror(-r));
}

int apply_op(struct apply_ctx *ctx, const struct proto_op *op, const struct apply_origin *origin,
	     struct apply_result *res)
{
	int r = -EINVAL;
	struct proto_op full;
	const struct apply_inline *inl = origin ? origin->inl : NULL;
	memset(res, 0, sizeof(*res));
	switch (op->kind) {
	case OP_FILE:
		if (!op->base_path) {
			r = op_file(ctx, op, inl, res);
		} else if ((r = resolve_delta(ctx, op, &full)) == 0) {
			r = op_file(ctx, &full, inl, res);
			free(full.chunks);
		}
		break;
	case OP_MKDIR: r = op_mkdir(ctx, op); break;
	case OP_SYMLINK: r = op_symlink(ctx, op); break;
	case OP_DELETE: r = op_delete(ctx, op); break;
	case OP_META: r = op_meta(ctx, op); break;
	case OP_RENAME: r = op_rename(ctx, op, origin, res); break;
	}
	log_result(op, r, res);
	return r;
}

/*
 * A run of file ops that share their disk flushes. Alone, each op costs
 * two journal commits to wait for (fsync of its file, then of its folder).
 * Here every file of the run is written first, then each is fsynced: the
 * first fsync commits the journal transaction that holds all of them, the
 * others find their inodes committed already. They are renamed into place,
 * and their folders fsynced the same way. Only then does any of them count
 * as applied (and get indexed). A failure at any step fails the ops it
 * concerns, never the others. (syncfs() would flush everything else being
 * written on the filesystem too: an application writing next to mirrord
 * would wait for it.)
 */
static void file_group(struct apply_ctx *ctx, struct apply_item *it, size_t n)
{
	char (*tn)[TMPDIR_NAME_MAX] = calloc(n, sizeof(*tn));
	char aside[TMPDIR_NAME_MAX];
	int *stage = calloc(n, sizeof(*stage)); /* 1: assembled, 2: placed */
	int *dirfd = calloc(n, sizeof(*dirfd)), *e = calloc(n, sizeof(*e));
	const struct proto_op **placed = calloc(n, sizeof(*placed));

	if (!tn || !stage || !dirfd || !e || !placed) {
		for (size_t k = 0; k < n; k++)
			it[k].r = apply_op(ctx, it[k].op, &it[k].origin, &it[k].res);
		goto out;
	}
	for (size_t k = 0; k < n; k++) {
		memset(&it[k].res, 0, sizeof(it[k].res));
		tmpdir_name(ctx->tmp, 'f', tn[k]);
		it[k].r = assemble(ctx, it[k].op, it[k].origin.inl, tn[k], 0, &it[k].res);
		stage[k] = it[k].r == 0;
	}
	/* The files, fsynced together (dirfd holds them meanwhile). */
	for (size_t k = 0; k < n; k++) {
		dirfd[k] = -1;
		if (stage[k] == 1 &&
		    (dirfd[k] = openat(ctx->tmp->fd, tn[k], O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
			it[k].r = -errno;
			unlinkat(ctx->tmp->fd, tn[k], 0);
			stage[k] = 0;
		}
	}
	fsync_each_once(dirfd, e, n);
	for (size_t k = 0; k < n; k++) {
		if (stage[k] == 1 && e[k] < 0) {
			it[k].r = e[k];
			unlinkat(ctx->tmp->fd, tn[k], 0);
			stage[k] = 0;
		}
	}
	close_each(dirfd, n);
	for (size_t k = 0; k < n; k++) {
		dirfd[k] = -1;
		if (stage[k] != 1)
			continue;
		it[k].r = file_place(ctx, it[k].op, tn[k], &dirfd[k], aside);
		remove_aside(ctx, aside);
		stage[k] = it[k].r == 0 ? 2 : 0;
	}
	/* In place but perhaps not durable: not acknowledged (the client
	 * sends it again; a file op is idempotent). */
	fsync_each_once(dirfd, e, n);
	for (size_t k = 0; k < n; k++)
		if (e[k] < 0 && stage[k] == 2) {
			it[k].r = e[k];
			stage[k] = 0;
		}
	close_each(dirfd, n);
	/* Every file placed is indexed in one transaction. */
	size_t np = 0;
	for (size_t k = 0; k < n; k++)
		if (stage[k] == 2)
			placed[np++] = it[k].op;
	file_index_many(ctx, placed, np);
	for (size_t k = 0; k < n; k++)
		log_result(it[k].op, it[k].r, &it[k].res);
out:
	free(tn);
	free(stage);
	free(dirfd);
	free(e);
	free(placed);
}

/*
 * A run of deletes (rm -rf) that share their disk flushes the same way:
 * each is done, then the folders they changed are fsynced (the first
 * fsync commits the journal transaction that holds them all), and only
 * then does any of them count as applied; the index forgets them in one
 * transaction. Alone, each cost a journal commit and an index commit.
 */
static void delete_group(struct apply_ctx *ctx, struct apply_item *it, size_t n)
{
	int *dirfd = calloc(n, sizeof(*dirfd)), *e = calloc(n, sizeof(*e));
	const char **gone = calloc(n, sizeof(*gone));
	size_t ngone = 0;
	if (!dirfd || !e || !gone) {
		for (size_t k = 0; k < n; k++)
			it[k].r = apply_op(ctx, it[k].op, &it[k].origin, &it[k].res);
		goto out;
	}
	for (size_t k = 0; k < n; k++) {
		memset(&it[k].res, 0, sizeof(it[k].res));
		dirfd[k] = -1;
		it[k].r = op_delete_at(ctx, it[k].op, &dirfd[k]);
	}
	fsync_each_once(dirfd, e, n);
	for (size_t k = 0; k < n; k++) {
		if (dirfd[k] < 0)
			continue;
		if (e[k] < 0 && it[k].r == 0)
			it[k].r = e[k];
		if (it[k].r == 0)
			gone[ngone++] = it[k].op->path;
	}
	close_each(dirfd, n);
	if (ctx->state && ngone)
		(void)state_index_forget_many(ctx->state, ngone, gone); /* a stale hint at worst */
	for (size_t k = 0; k < n; k++)
		log_result(it[k].op, it[k].r, &it[k].res);
out:
	free(dirfd);
	free(e);
	free(gone);
}

/* Ops in a group at most: each holds a descriptor until the fsyncs (a
 * folder or a symlink two), and a bundle may carry thousands. */
#define GROUP_MAX 128
#define ENTRY_GROUP_MAX (GROUP_MAX / 2)

static int entry_op(const struct proto_op *op)
{
	return (op->kind == OP_MKDIR && op->path[0] != '\0') || op->kind == OP_SYMLINK;
}

/*
 * A run of folders and symlinks (cp -r, tar x, a first upload sends every
 * folder before the files) that share their fsyncs the same way: each is
 * made, then the objects they changed are fsynced, each inode once (a new
 * folder and its parent; the parent of a run of siblings once, a folder
 * made here and filled by the next ops once), and only then does any of
 * them count as applied. Alone, each cost two fsyncs, the second of the
 * parent every sibling shares.
 */
static void entry_group(struct apply_ctx *ctx, struct apply_item *it, size_t n)
{
	int *fd = malloc(2 * n * sizeof(*fd)), *e = malloc(2 * n * sizeof(*e));
	if (!fd || !e) {
		for (size_t k = 0; k < n; k++)
			it[k].r = apply_op(ctx, it[k].op, &it[k].origin, &it[k].res);
		goto out;
	}
	for (size_t k = 0; k < n; k++) {
		memset(&it[k].res, 0, sizeof(it[k].res));
		fd[2 * k] = -1;
		if (it[k].op->kind == OP_MKDIR)
			it[k].r = op_mkdir_at(ctx, it[k].op, &fd[2 * k], &fd[2 * k + 1]);
		else
			it[k].r = op_symlink_at(ctx, it[k].op, &fd[2 * k + 1]);
		if (it[k].r < 0)
			close_each(&fd[2 * k], 2);
	}
	fsync_each_once(fd, e, 2 * n);
	for (size_t k = 0; k < n; k++) {
		/* In place but perhaps not durable: not acknowledged (the
		 * client sends it again; both ops are idempotent). */
		if (it[k].r == 0)
			it[k].r = e[2 * k] < 0 ? e[2 * k] : e[2 * k + 1];
		log_result(it[k].op, it[k].r, &it[k].res);
	}
	close_each(fd, 2 * n);
out:
	free(fd);
	free(e);
}

void apply_many(struct apply_ctx *ctx, struct apply_item *items, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && j - i < GROUP_MAX && items[j].op->kind == OP_FILE &&
		       !items[j].op->base_path)
			j++;
		if (j == i)
			while (j < n && j - i < GROUP_MAX && items[j].op->kind == OP_DELETE)
				j++;
		if (j == i)
			while (j < n && j - i < ENTRY_GROUP_MAX && entry_op(items[j].op))
				j++;
		if (j - i >= 2) {
			if (items[i].op->kind == OP_DELETE)
				delete_group(ctx, items + i, j - i);
			else if (entry_op(items[i].op))
				entry_group(ctx, items + i, j - i);
			else
				file_group(ctx, items + i, j - i);
			i = j;
		} else {
			items[i].r = apply_op(ctx, items[i].op, &items[i].origin, &items[i].res);
			i++;
		}
	}
}
