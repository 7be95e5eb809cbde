#define _GNU_SOURCE
#include "fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "kio.h"
#include "links.h"
#include "log.h"
#include "mirror.h"
#include "ofile.h"
#include "queue.h"
#include "setup.h"
#include "status.h"

/* Room for a mirror path (PATH_MAX) plus a name and "/proc/..." slack. */
#define FS_PATH_CAP (PATH_MAX + NAME_MAX + 64)
#define FS_TIMEOUT 1.0 /* entry, attribute and negative-entry cache, s */
#define FS_HASH_MIN 1024
#define FS_BACKGROUND 64 /* written-back pages in flight (kernel default: 12) */
/* A WRITE at least this large starts BACKING's own write-back of its
 * bytes at once (sync_file_range, no wait): see fs_write_buf. */
#define FS_EARLY_WB (512u * 1024)

/* An append through the write-back cache sends the file's last page again,
 * old bytes and new: up to this many old bytes are compared, so that the
 * change recorded (and patched to the server) is the appended bytes only. */
#define FS_TAIL_CMP 4096u

/* One kernel inode: the BACKING inode it stands for. */
struct node {
	int fd;                /* O_PATH|O_NOFOLLOW on the BACKING inode, owned */
	dev_t dev;
	ino_t ino;
	mode_t type;           /* S_IFMT bits */
	uint64_t nlookup;      /* the kernel's references; under fs->lock */
	struct node *next;     /* hash chain; under fs->lock */
	/* Orders a WRITE's keeping of the mtime against SETATTR of times. */
	pthread_mutex_t tlock;
	/* BACKING's mtime and size when the last handle was released, so
	 * that an open finding them unchanged keeps the kernel's cached
	 * pages (keep_cache); under tlock */
	int kept;
	struct timespec kept_mtime;
	off_t kept_size;
};

struct fs {
	struct mirror *m;      /* borrowed */
	int writeback;         /* asked for; frozen after init */
	int xattr;             /* pass extended attributes through; frozen */
	int private_;          /* FS_PRIVATE; frozen */
	struct fuse_session *se; /* borrowed */
	struct node root;      /* BACKING itself, never forgotten */
	size_t prefix_len;     /* strlen of m->backing, plus '/' unless "/" */

	pthread_mutex_t lock;
	struct node **hash;    /* owned, nbuckets chains; under lock */
	size_t nbuckets, nnodes;
	size_t node_high, node_low; /* eviction watermarks (fd limit); frozen */
	size_t evict_cursor;   /* next bucket to look at; flusher only */
	atomic_int evict_asked;

	/* the flusher */
	pthread_mutex_t flock;
	pthread_cond_t fcond;
	pthread_t flusher;
	int flusher_running, stopping; /* under flock */
};

/* One open file: its BACKING fd and the shared record of its inode. */
struct fh {
	int fd;                /* owned */
	int writer;
	struct ofile *of;      /* reference held */
};

struct dh {
	DIR *dir;              /* owned */
	struct dirent *entry;  /* read but not yet returned */
	off_t offset;
};

static struct fs *FS(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct node *N(fuse_req_t req, fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? &FS(req)->root : (struct node *)(uintptr_t)ino;
}

static struct fh *FH(struct fuse_file_info *fi)
{
	return (struct fh *)(uintptr_t)fi->fh;
}

static void proc_name(char *out, size_t len, int fd)
{
	snprintf(out, len, "/proc/self/fd/%d", fd);
}

/* ---------------------------------------------------------------- nodes */

static size_t bucket(const struct fs *fs, dev_t dev, ino_t ino)
{
	uint64_t h = ((uint64_t)ino * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)dev * 0xC2B2AE3D27D4EB4Full);
	return (size_t)(h >> 17) & (fs->nbuckets - 1);
}

/* Under fs->lock. */
static struct node *find_node(struct fs *fs, dev_t dev, ino_t ino)
{
	if (dev == fs->root.dev && ino == fs->root.ino)
		return &fs->root;
	for (struct node *n = fs->hash[bucket(fs, dev, ino)]; n; n = n->next)
		if (n->dev == dev && n->ino == ino)
			return n;
	return NULL;
}

/* Under fs->lock. Doubles the table; on ENOMEM it stays as it is. */
static void grow(struct fs *fs)
{
	size_t old = fs->nbuckets;
	struct node **h = calloc(old * 2, sizeof(*h));
	if (!h)
		return;
	struct node **oldh = fs->hash;
	fs->hash = h;
	fs->nbuckets = old * 2;
	for (size_t i = 0; i < old; i++)
		while (oldh[i]) {
			struct node *n = oldh[i];
			oldh[i] = n->next;
			size_t b = bucket(fs, n->dev, n->ino);
			n->next = h[b];
			h[b] = n;
		}
	free(oldh);
}

static void node_free(struct node *n)
{
	close(n->fd);
	pthread_mutex_destroy(&n->tlock);
	free(n);
}

static void forget_one(struct fs *fs, struct node *n, uint64_t count)
{
	if (n == &fs->root)
		return;
	pthread_mutex_lock(&fs->lock);
	if (count > n->nlookup)
		abort(); /* the kernel forgot more than it was given: a bug */
	n->nlookup -= count;
	if (n->nlookup > 0) {
		pthread_mutex_unlock(&fs->lock);
		return;
	}
	struct node **pp = &fs->hash[bucket(fs, n->dev, n->ino)];
	while (*pp != n)
		pp = &(*pp)->next;
	*pp = n->next;
	fs->nnodes--;
	pthread_mutex_unlock(&fs->lock);
	node_free(n);
}

static void learn_link(struct fs *fs, struct node *parent, const char *name, ino_t ino);

/* Ask the flusher thread to drop names from the kernel's cache (evict()). */
static void ask_evict(struct fs *fs)
{
	if (atomic_exchange(&fs->evict_asked, 1))
		return;
	pthread_mutex_lock(&fs->flock);
	pthread_cond_signal(&fs->fcond);
	pthread_mutex_unlock(&fs->flock);
}

/* Look name up in parent: the node (one more kernel reference) and its
 * attributes in e. 0 or -errno. */
static int do_lookup(struct fs *fs, struct node *parent, const char *name,
		     struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->attr_timeout = FS_TIMEOUT;
	e->entry_timeout = FS_TIMEOUT;
	if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0')))
		return -EINVAL; /* never asked without export support: never leave BACKING */
	int fd = openat(parent->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == EMFILE || errno == ENFILE)
			ask_evict(fs);
		return -errno;
	}
	if (fstatat(fd, "", &e->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		int saverr = errno;
		close(fd);
		return -saverr;
	}
	pthread_mutex_lock(&fs->lock);
	struct node *n = find_node(fs, e->attr.st_dev, e->attr.st_ino);
	if (n) {
		n->nlookup++;
		pthread_mutex_unlock(&fs->lock);
		close(fd);
	} else {
		n = calloc(1, sizeof(*n));
		if (!n) {
			pthread_mutex_unlock(&fs->lock);
			close(fd);
			return -ENOMEM;
		}
		n->fd = fd;
		n->dev = e->attr.st_dev;
		n->ino = e->attr.st_ino;
		n->type = e->attr.st_mode & S_IFMT;
		n->nlookup = 1;
		pthread_mutex_init(&n->tlock, NULL);
		if (fs->nnodes >= fs->nbuckets * 2)
			grow(fs);
		size_t b = bucket(fs, n->dev, n->ino);
		n->next = fs->hash[b];
		fs->hash[b] = n;
		fs->nnodes++;
		int evict = fs->nnodes > fs->node_high;
		pthread_mutex_unlock(&fs->lock);
		if (evict)
			ask_evict(fs);
	}
	e->ino = (fuse_ino_t)(uintptr_t)n;
	if (S_ISREG(e->attr.st_mode) && e->attr.st_nlink > 1)
		learn_link(fs, parent, name, e->attr.st_ino);
	return 0;
}

/* ---------------------------------------------------------------- paths */

/* Does mirror path p name (dev, ino) in BACKING now? */
static int names(struct fs *fs, const char *p, const struct node *n)
{
	struct stat st;
	return fstatat(fs->m->backing_fd, p[0] ? p : ".", &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       st.st_dev == n->dev && st.st_ino == n->ino;
}

/* The mirror path of n ("" for the root) into out (cap bytes), as the
 * kernel knows the name its descriptor was opened by: renames follow it.
 * 0, or -ENOENT when n has no name under BACKING any more (unlinked, or
 * moved out of BACKING behind the mount's back), -ENAMETOOLONG. */
static int node_name(struct fs *fs, struct node *n, char *out, size_t cap)
{
	static const char deleted[] = " (deleted)";
	char proc[64];
	if (n == &fs->root) {
		out[0] = '\0';
		return 0;
	}
	proc_name(proc, sizeof(proc), n->fd);
	ssize_t len = readlink(proc, out, cap);
	if (len < 0)
		return -errno;
	if ((size_t)len >= cap)
		return -ENAMETOOLONG;
	out[len] = '\0';
	if ((size_t)len < fs->prefix_len || strncmp(out, fs->m->backing, fs->prefix_len - 1) != 0 ||
	    (fs->prefix_len > 1 && out[fs->prefix_len - 1] != '/'))
		return -ENOENT;
	memmove(out, out + fs->prefix_len, (size_t)len - fs->prefix_len + 1);
	len -= (ssize_t)fs->prefix_len;
	size_t dl = sizeof(deleted) - 1;
	if ((size_t)len > dl && strcmp(out + len - dl, deleted) == 0 && !names(fs, out, n)) {
		out[len - dl] = '\0';
		if (!names(fs, out, n))
			return -ENOENT;
	}
	return 0;
}

/* node_name, or for a hard-linked file whose descriptor's name is gone,
 * another of its known names that is still its own. */
static int node_path(struct fs *fs, struct node *n, char *out, size_t cap)
{
	int r = node_name(fs, n, out, cap);
	if (r != -ENOENT || n->type != S_IFREG)
		return r;
	char **v = links_others(fs->m->links, n->ino, "");
	for (size_t i = 0; v && v[i]; i++)
		if (strlen(v[i]) < cap && names(fs, v[i], n)) {
			strcpy(out, v[i]);
			r = 0;
			break;
		}
	links_strv_free(v);
	return r;
}

/* The mirror path of name in parent. 0 or -errno. */
static int child_path(struct fs *fs, struct node *parent, const char *name, char *out,
		      size_t cap)
{
	int r = node_path(fs, parent, out, cap);
	if (r < 0)
		return r;
	size_t len = strlen(out);
	int n = snprintf(out + len, cap - len, "%s%s", len ? "/" : "", name);
	return n < 0 || (size_t)n >= cap - len ? -ENAMETOOLONG : 0;
}

/* A hard-linked file was looked up as name in parent: remember the name,
 * so that a write through any name reaches every name (links.h). */
static void learn_link(struct fs *fs, struct node *parent, const char *name, ino_t ino)
{
	char p[FS_PATH_CAP];
	if (child_path(fs, parent, name, p, sizeof(p)) == 0)
		(void)links_add(fs->m->links, ino, p);
}

/* Queue a sync of path after a successful mutation. An allocation failure
 * is logged; the next mount's reconciliation repairs what was missed. */
static void capture_path(struct fs *fs, const char *path, unsigned flags)
{
	if (queue_sync(fs->m->q, path, flags) < 0)
		log_error("%s: cannot queue change: out of memory", path);
}

/* A mutation of name in parent succeeded: queue it. A parent that lost
 * its name meanwhile (unlinked, moved away) is compared in full instead. */
static void capture_child(struct fs *fs, struct node *parent, const char *name, unsigned flags)
{
	char p[FS_PATH_CAP];
	if (child_path(fs, parent, name, p, sizeof(p)) < 0) {
		log_warn("%s: changed in a folder that has no name any more", name);
		capture_path(fs, "", QF_TREE);
		return;
	}
	capture_path(fs, p, flags);
}

/* A mutation of n succeeded: queue it, with the bytes [off, off + len)
 * it changed if flags has QF_CONTENT (len 0: not described by a range).
 * fi, if not NULL, is an open handle on n, whose record knows the path
 * (and follows renames). */
static void capture_range(struct fs *fs, struct node *n, struct fuse_file_info *fi,
			  unsigned flags, uint64_t off, uint64_t len)
{
	struct mirror *m = fs->m;
	if (fi && FH(fi)->of) {
		struct ofile *of = FH(fi)->of;
		if (flags & QF_CONTENT) {
			ofiles_dirty(&m->ofiles, of->dev, of->ino, off, len);
			ofiles_written(&m->ofiles, of);
			return;
		}
		pthread_mutex_lock(&m->ofiles.lock);
		if (of->path && queue_sync(m->q, of->path, flags) < 0)
			log_error("cannot queue change: out of memory");
		pthread_mutex_unlock(&m->ofiles.lock);
		return;
	}
	char p[FS_PATH_CAP];
	if (node_path(fs, n, p, sizeof(p)) < 0)
		return; /* no name: nothing the mirror shows */
	if (flags & QF_CONTENT)
		ofiles_dirty(&m->ofiles, n->dev, n->ino, off, len);
	capture_path(fs, p, flags);
}

/* A mutation of n succeeded: queue it. fi, if not NULL, is an open
 * handle on it, whose record knows the path (and follows renames). A
 * content change is one not described by a byte range (the whole file is
 * read at the next upload). */
static void capture_node(struct fs *fs, struct node *n, struct fuse_file_info *fi,
			 unsigned flags)
{
	capture_range(fs, n, fi, flags, 0, 0);
}

/* ------------------------------------------------------------ lifecycle */

static void *flusher_main(void *arg);

static void fs_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs *fs = userdata;
	conn->want |= conn->capable & (FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE |
				       FUSE_CAP_IOCTL_DIR);
	/* A chown (and a write or truncate of a setuid file) must clear the
	 * setuid and setgid bits. Left to the kernel, every chown of a file
	 * costs a GETATTR first (tar x: one FUSE request in nine). On a
	 * private mount the caller is the daemon's own user, and BACKING
	 * clears the bits itself when the daemon changes the file, by the
	 * same rules (t_kcache checks them): the kernel is told that the
	 * filesystem handles it (kio.h: libfuse 3.14 does not pass it on).
	 * A write by a user other than root clears them when the write-back
	 * reaches BACKING, not at write(): such a mount is nosuid anyway
	 * (fusermount3), and root keeps the bits on a write. */
	if (fs->private_ && (conn->capable & FUSE_CAP_HANDLE_KILLPRIV))
		kio_init_flags(FUSE_HANDLE_KILLPRIV_FLAG);
	if (fs->writeback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE))
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	else
		fs->writeback = 0;
	/* Large requests: the kernel writes back up to 1 MiB at once. */
	if (conn->max_write > (1u << 20))
		conn->max_write = 1u << 20;
	/* Written-back pages in flight at once (the kernel's default: 12). */
	conn->max_background = FS_BACKGROUND;
	conn->congestion_threshold = FS_BACKGROUND * 3 / 4;
	/* Threads start here, after fuse_daemonize() has forked. */
	(void)setup_start(fs->m);
	pthread_mutex_lock(&fs->flock);
	if (!fs->stopping && pthread_create(&fs->flusher, NULL, flusher_main, fs) == 0)
		fs->flusher_running = 1;
	pthread_mutex_unlock(&fs->flock);
	log_debug("kernel write-back cache %s", fs->writeback ? "on" : "off");
}

static void fs_destroy(void *userdata)
{
	struct fs *fs = userdata;
	fs_stop(fs);
	setup_stop(fs->m, 30000);
}

/* Ask the kernel to drop cached names until about node_low nodes are
 * left: every node holds a descriptor, and the kernel forgets inodes only
 * under memory pressure. A dropped name whose inode is unused is evicted,
 * and its FORGET frees the node; one in use (open, a cwd) stays. */
static void evict(struct fs *fs)
{
	enum { BATCH = 4096 };
	struct victim {
		fuse_ino_t parent;
		char *name; /* owned */
	};
	struct victim *v = calloc(BATCH, sizeof(*v));
	char *path = malloc(FS_PATH_CAP);
	size_t nv = 0;
	if (!v || !path)
		goto out;
	pthread_mutex_lock(&fs->lock);
	size_t want = fs->nnodes > fs->node_low ? fs->nnodes - fs->node_low : 0;
	for (size_t seen = 0; seen < fs->nbuckets && nv < want && nv < BATCH; seen++) {
		size_t b = fs->evict_cursor++ & (fs->nbuckets - 1);
		for (struct node *n = fs->hash[b]; n && nv < want && nv < BATCH; n = n->next) {
			if (node_name(fs, n, path, FS_PATH_CAP) < 0 || !path[0])
				continue;
			char *slash = strrchr(path, '/');
			fuse_ino_t parent = FUSE_ROOT_ID;
			if (slash) {
				struct stat st;
				*slash = '\0';
				struct node *p = fstatat(fs->m->backing_fd, path, &st,
							 AT_SYMLINK_NOFOLLOW) == 0
							 ? find_node(fs, st.st_dev, st.st_ino)
							 : NULL;
				if (!p)
					continue;
				if (p != &fs->root)
					parent = (fuse_ino_t)(uintptr_t)p;
			}
			if (!(v[nv].name = strdup(slash ? slash + 1 : path)))
				break;
			v[nv++].parent = parent;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	log_debug("%zu names dropped from the kernel's cache (%zu nodes)", nv, fs->nnodes);
	/* The parent may be forgotten meanwhile: the kernel answers ENOENT. */
	for (size_t i = 0; i < nv; i++)
		if (fs->se)
			(void)fuse_lowlevel_notify_inval_entry(fs->se, v[i].parent, v[i].name,
							       strlen(v[i].name));
out:
	for (size_t i = 0; i < nv; i++)
		free(v[i].name);
	free(v);
	free(path);
	atomic_store(&fs->evict_asked, 0);
}

/* Every FS_FLUSH_MS, the kernel writes back the files open for writing:
 * an inode invalidation launders its dirty pages into WRITE requests. */
static void flush_writers(struct fs *fs)
{
	enum { CAP = 256 };
	dev_t devs[CAP];
	ino_t inos[CAP];
	size_t n = ofiles_writing(&fs->m->ofiles, devs, inos, CAP);
	for (size_t i = 0; i < n && i < CAP; i++) {
		pthread_mutex_lock(&fs->lock);
		struct node *nd = find_node(fs, devs[i], inos[i]);
		fuse_ino_t id = nd && nd != &fs->root ? (fuse_ino_t)(uintptr_t)nd : 0;
		pthread_mutex_unlock(&fs->lock);
		/* A node forgotten meanwhile: the kernel answers ENOENT. */
		if (id && fs->se)
			(void)fuse_lowlevel_notify_inval_inode(fs->se, id, 0, 0);
	}
}

/* The background thread: flushes writers (write-back cache only) and
 * evicts nodes when do_lookup asks. */
static void *flusher_main(void *arg)
{
	struct fs *fs = arg;
	int64_t next_flush = queue_now() + FS_FLUSH_MS * 1000000LL;
	log_thread_name("mfs-flush");
	pthread_mutex_lock(&fs->flock);
	while (!fs->stopping) {
		if (!atomic_load(&fs->evict_asked)) {
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			int64_t left = next_flush - queue_now();
			if (left > 0) {
				until.tv_sec += left / 1000000000LL;
				until.tv_nsec += left % 1000000000LL;
				if (until.tv_nsec >= 1000000000L) {
					until.tv_sec++;
					until.tv_nsec -= 1000000000L;
				}
				pthread_cond_timedwait(&fs->fcond, &fs->flock, &until);
			}
		}
		if (fs->stopping)
			break;
		pthread_mutex_unlock(&fs->flock);
		if (atomic_load(&fs->evict_asked))
			evict(fs);
		if (queue_now() >= next_flush) {
			if (fs->writeback)
				flush_writers(fs);
			next_flush = queue_now() + FS_FLUSH_MS * 1000000LL;
		}
		pthread_mutex_lock(&fs->flock);
	}
	pthread_mutex_unlock(&fs->flock);
	return NULL;
}

/* ----------------------------------------------------------- namespace */

static void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	int r = do_lookup(FS(req), N(req, parent), name, &e);
	if (r == -ENOENT) {
		/* cache the absence too (a compiler's include path search) */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = FS_TIMEOUT;
		fuse_reply_entry(req, &e);
	} else if (r < 0) {
		fuse_reply_err(req, -r);
	} else {
		fuse_reply_entry(req, &e);
	}
}

/* After a node was made as name in parent: reply with its entry and
 * capture it. */
static void made(fuse_req_t req, struct node *parent, const char *name, unsigned flags)
{
	struct fuse_entry_param e;
	int r = do_lookup(FS(req), parent, name, &e);
	capture_child(FS(req), parent, name, flags);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_entry(req, &e);
}

static void fs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	struct node *p = N(req, parent);
	if (mknodat(p->fd, name, mode, rdev) < 0)
		fuse_reply_err(req, errno);
	else
		made(req, p, name, QF_CONTENT);
}

static void fs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct node *p = N(req, parent);
	if (mkdirat(p->fd, name, mode) < 0)
		fuse_reply_err(req, errno);
	else
		made(req, p, name, QF_META);
}

static void fs_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name)
{
	struct node *p = N(req, parent);
	if (symlinkat(target, p->fd, name) < 0)
		fuse_reply_err(req, errno);
	else
		made(req, p, name, QF_CONTENT);
}

static void fs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct fs *fs = FS(req);
	struct node *n = N(req, ino), *np = N(req, newparent);
	char proc[64], from[FS_PATH_CAP], to[FS_PATH_CAP];
	proc_name(proc, sizeof(proc), n->fd);
	if (linkat(AT_FDCWD, proc, np->fd, newname, AT_SYMLINK_FOLLOW) < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	if (node_path(fs, n, from, sizeof(from)) == 0)
		(void)links_add(fs->m->links, n->ino, from);
	if (child_path(fs, np, newname, to, sizeof(to)) == 0)
		(void)links_add(fs->m->links, n->ino, to);
	made(req, np, newname, QF_CONTENT);
}

static void fs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = FS(req);
	struct node *p = N(req, parent);
	char path[FS_PATH_CAP];
	struct stat st;
	int have = child_path(fs, p, name, path, sizeof(path)) == 0;
	int linked = fstatat(p->fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
		     st.st_nlink > 1;
	if (unlinkat(p->fd, name, 0) < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	if (have) {
		links_unlinked(fs->m->links, path);
		char **others = linked ? links_others(fs->m->links, st.st_ino, path) : NULL;
		if (others) {
			/* One name of a hard-linked file: its open handles now
			 * write to the others, and what was written through
			 * this name (queued under it) goes to them too. */
			ofiles_renamed(&fs->m->ofiles, path, others[0], 0);
			for (size_t i = 0; others[i]; i++)
				capture_path(fs, others[i], QF_CONTENT);
			links_strv_free(others);
		} else {
			/* writes through handles still open are not mirrored */
			ofiles_unlinked(&fs->m->ofiles, path);
		}
		capture_path(fs, path, QF_CONTENT);
	} else {
		capture_path(fs, "", QF_TREE);
	}
	fuse_reply_err(req, 0);
}

static void fs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct node *p = N(req, parent);
	if (unlinkat(p->fd, name, AT_REMOVEDIR) < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	capture_child(FS(req), p, name, QF_META);
	fuse_reply_err(req, 0);
}

static void fs_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	struct fs *fs = FS(req);
	struct mirror *m = fs->m;
	struct node *p = N(req, parent), *np = N(req, newparent);
	char from[FS_PATH_CAP], to[FS_PATH_CAP];
	int have = child_path(fs, p, name, from, sizeof(from)) == 0 &&
		   child_path(fs, np, newname, to, sizeof(to)) == 0;
	/* Until queue_rename(), a worker may find BACKING renamed and the
	 * queue not: the queue keeps what finishes meanwhile (queue.h). */
	queue_rename_begin(m->q);
	if (renameat2(p->fd, name, np->fd, newname, flags) < 0) {
		int saverr = errno;
		queue_rename_end(m->q);
		fuse_reply_err(req, saverr);
		return;
	}
	if (!have) {
		capture_path(fs, "", QF_TREE);
	} else {
		int exchange = (flags & RENAME_EXCHANGE) != 0;
		if (!exchange) {
			/* Whatever "to" was is gone (replaced). */
			ofiles_unlinked(&m->ofiles, to);
			links_unlinked(m->links, to);
		}
		ofiles_renamed(&m->ofiles, from, to, exchange);
		links_renamed(m->links, from, to, exchange);
		if (queue_rename(m->q, from, to, flags) < 0)
			log_error("%s: cannot queue rename: out of memory", from);
	}
	queue_rename_end(m->q);
	fuse_reply_err(req, 0);
}

static void fs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	forget_one(FS(req), N(req, ino), nlookup);
	fuse_reply_none(req);
}

static void fs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		forget_one(FS(req), N(req, forgets[i].ino), forgets[i].nlookup);
	fuse_reply_none(req);
}

/* ----------------------------------------------------------- attributes */

static int node_stat(struct node *n, struct fuse_file_info *fi, struct stat *st)
{
	int r = fi ? fstat(FH(fi)->fd, st)
		   : fstatat(n->fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
	return r < 0 ? -errno : 0;
}

static void fs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	int r = node_stat(N(req, ino), fi, &st);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, FS_TIMEOUT);
}

static int set_times(struct node *n, struct fuse_file_info *fi, const struct stat *attr,
		     int valid)
{
	struct timespec tv[2] = { { 0, UTIME_OMIT }, { 0, UTIME_OMIT } };
	char proc[64];
	if (valid & FUSE_SET_ATTR_ATIME_NOW)
		tv[0].tv_nsec = UTIME_NOW;
	else if (valid & FUSE_SET_ATTR_ATIME)
		tv[0] = attr->st_atim;
	if (valid & FUSE_SET_ATTR_MTIME_NOW)
		tv[1].tv_nsec = UTIME_NOW;
	else if (valid & FUSE_SET_ATTR_MTIME)
		tv[1] = attr->st_mtim;
	int r;
	pthread_mutex_lock(&n->tlock);
	if (fi) {
		r = futimens(FH(fi)->fd, tv);
	} else if (n->type == S_IFLNK) {
		r = utimensat(n->fd, "", tv, AT_EMPTY_PATH);
	} else {
		proc_name(proc, sizeof(proc), n->fd);
		r = utimensat(AT_FDCWD, proc, tv, 0);
	}
	r = r < 0 ? -errno : 0;
	pthread_mutex_unlock(&n->tlock);
	return r;
}

static void fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid,
		       struct fuse_file_info *fi)
{
	struct fs *fs = FS(req);
	struct node *n = N(req, ino);
	char proc[64];
	unsigned flags = 0;
	uint64_t toff = 0, tlen = 0; /* the bytes a truncate changed; 0: unknown */
	int r = 0;
	proc_name(proc, sizeof(proc), n->fd);
	if (valid & FUSE_SET_ATTR_MODE) {
		r = fi ? fchmod(FH(fi)->fd, attr->st_mode) : fchmodat(AT_FDCWD, proc, attr->st_mode, 0);
		if (r < 0)
			goto fail;
		flags |= QF_META;
	}
	if (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		/* Ownership is not mirrored (mirrord runs unprivileged). */
		uid_t uid = valid & FUSE_SET_ATTR_UID ? attr->st_uid : (uid_t)-1;
		gid_t gid = valid & FUSE_SET_ATTR_GID ? attr->st_gid : (gid_t)-1;
		r = fchownat(n->fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
		if (r < 0)
			goto fail;
		/* but the setuid and setgid bits BACKING clears with it are */
		flags |= QF_META;
	}
	if (valid & FUSE_SET_ATTR_SIZE) {
		/* The bytes between the old and the new end changed (gone, or
		 * zeros): the upload re-reads only around the new end. */
		struct stat before;
		int fd = fi ? FH(fi)->fd : n->fd;
		int known = fstat(fd, &before) == 0 && before.st_size != attr->st_size;
		r = fi ? ftruncate(FH(fi)->fd, attr->st_size) : truncate(proc, attr->st_size);
		if (r < 0)
			goto fail;
		flags |= QF_CONTENT;
		if (known) {
			uint64_t a = (uint64_t)before.st_size, b = (uint64_t)attr->st_size;
			toff = a < b ? a : b;
			tlen = a < b ? b - a : a - b;
		}
	}
	if (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
		     FUSE_SET_ATTR_MTIME_NOW)) {
		if ((r = set_times(n, fi, attr, valid)) < 0) {
			errno = -r;
			goto fail;
		}
		flags |= QF_META;
	}
	if (flags & QF_CONTENT)
		capture_range(fs, n, fi, QF_CONTENT, toff, tlen);
	if (flags & QF_META)
		capture_node(fs, n, fi, QF_META);
	fs_getattr(req, ino, fi);
	return;
fail:
	r = errno;
	if (flags)
		capture_node(fs, n, fi, flags); /* what was done before is real */
	fuse_reply_err(req, r);
}

static void fs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX + 1];
	ssize_t n = readlinkat(N(req, ino)->fd, "", buf, sizeof(buf));
	if (n < 0)
		fuse_reply_err(req, errno);
	else if ((size_t)n >= sizeof(buf))
		fuse_reply_err(req, ENAMETOOLONG);
	else {
		buf[n] = '\0';
		fuse_reply_readlink(req, buf);
	}
}

static void fs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	struct statvfs sv;
	if (fstatvfs(FS(req)->m->backing_fd, &sv) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &sv);
}

/* ---------------------------------------------------------------- files */

/* With the write-back cache the kernel reads pages it writes partly, and
 * keeps the append position itself. */
static int open_flags(const struct fs *fs, int flags)
{
	flags &= ~(O_NOFOLLOW | O_CREAT | O_EXCL | O_NOCTTY);
	if (fs->writeback) {
		if ((flags & O_ACCMODE) == O_WRONLY)
			flags = (flags & ~O_ACCMODE) | O_RDWR;
		flags &= ~O_APPEND;
	}
	return flags | O_CLOEXEC;
}

/* Wrap a freshly opened BACKING fd into a handle in fi. path: the mirror
 * path or NULL. 0 or -errno (fd closed). */
static int make_fh(struct fs *fs, struct node *n, const char *path, int fd, int flags,
		   struct fuse_file_info *fi)
{
	int writer = (flags & O_ACCMODE) != O_RDONLY;
	struct fh *h = calloc(1, sizeof(*h));
	if (!h) {
		close(fd);
		return -ENOMEM;
	}
	h->fd = fd;
	h->writer = writer;
	h->of = ofiles_open(&fs->m->ofiles, n->dev, n->ino, path, writer);
	if (!h->of) {
		free(h);
		close(fd);
		return -ENOMEM;
	}
	fi->fh = (uintptr_t)h;
	return 0;
}

/* keep_cache: BACKING unchanged since the kernel last had it open. */
static void cache_choice(struct node *n, int fd, struct fuse_file_info *fi)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return;
	pthread_mutex_lock(&n->tlock);
	fi->keep_cache = n->kept && st.st_size == n->kept_size &&
			 st.st_mtim.tv_sec == n->kept_mtime.tv_sec &&
			 st.st_mtim.tv_nsec == n->kept_mtime.tv_nsec;
	pthread_mutex_unlock(&n->tlock);
}

static int open_backing(const struct fs *fs, const char *proc, int flags)
{
	int fd = open(proc, open_flags(fs, flags));
	if (fd < 0 && errno == EACCES && fs->writeback && (flags & O_ACCMODE) == O_WRONLY)
		fd = open(proc, (open_flags(fs, flags) & ~O_ACCMODE) | O_WRONLY);
	return fd;
}

static void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = FS(req);
	struct node *n = N(req, ino);
	char proc[64], path[FS_PATH_CAP];
	proc_name(proc, sizeof(proc), n->fd);
	int fd = open_backing(fs, proc, fi->flags);
	if (fd < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	cache_choice(n, fd, fi);
	int have = node_path(fs, n, path, sizeof(path)) == 0;
	int r = make_fh(fs, n, have ? path : NULL, fd, fi->flags, fi);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	if (fi->flags & O_TRUNC) {
		fi->keep_cache = 0;
		capture_node(fs, n, fi, QF_CONTENT);
	}
	if (fuse_reply_open(req, fi) < 0) {
		/* interrupted: the kernel will not release it */
		struct fh *h = FH(fi);
		close(h->fd);
		ofiles_close(&fs->m->ofiles, h->of, h->writer);
		free(h);
	}
}

static void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct fs *fs = FS(req);
	struct node *p = N(req, parent);
	char path[FS_PATH_CAP];
	struct fuse_entry_param e;
	int fd = openat(p->fd, name, open_flags(fs, fi->flags) | O_CREAT | (fi->flags & O_EXCL),
			mode);
	if (fd < 0 && errno == EACCES && fs->writeback && (fi->flags & O_ACCMODE) == O_WRONLY)
		fd = openat(p->fd, name,
			    ((open_flags(fs, fi->flags) & ~O_ACCMODE) | O_WRONLY) | O_CREAT |
				    (fi->flags & O_EXCL),
			    mode);
	if (fd < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	int r = do_lookup(fs, p, name, &e);
	if (r < 0) {
		/* The file exists in BACKING now, whatever the answer. */
		close(fd);
		capture_child(fs, p, name, QF_CONTENT);
		fuse_reply_err(req, -r);
		return;
	}
	struct node *n = (struct node *)(uintptr_t)e.ino;
	int have = child_path(fs, p, name, path, sizeof(path)) == 0;
	r = make_fh(fs, n, have ? path : NULL, fd, fi->flags, fi);
	if (r < 0) {
		forget_one(fs, n, 1);
		capture_child(fs, p, name, QF_CONTENT);
		fuse_reply_err(req, -r);
		return;
	}
	/* A new (maybe empty) file must reach the server even without writes. */
	capture_node(fs, n, fi, QF_CONTENT);
	if (fuse_reply_create(req, &e, fi) < 0) {
		struct fh *h = FH(fi);
		close(h->fd);
		ofiles_close(&fs->m->ofiles, h->of, h->writer);
		free(h);
		forget_one(fs, n, 1);
	}
}

static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	(void)ino;
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(size);
	bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	bv.buf[0].fd = FH(fi)->fd;
	bv.buf[0].pos = off;
	fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
}

/* How many of the bytes now at off in fd equal old[0..n) (the file's
 * bytes there before a write). */
static size_t same_prefix(int fd, off_t off, const uint8_t *old, size_t n)
{
	uint8_t now[FS_TAIL_CMP];
	ssize_t g = pread(fd, now, n, off);
	size_t i = 0;
	while (g > 0 && i < (size_t)g && now[i] == old[i])
		i++;
	return i;
}

static void fs_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in_buf,
			 off_t off, struct fuse_file_info *fi)
{
	struct fs *fs = FS(req);
	struct node *n = N(req, ino);
	struct fh *h = FH(fi);
	struct fuse_bufvec dst = FUSE_BUFVEC_INIT(fuse_buf_size(in_buf));
	struct stat st;
	dst.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	dst.buf[0].fd = h->fd;
	dst.buf[0].pos = off;
	/* With the write-back cache the kernel owns the mtime (it sends it
	 * with SETATTR, maybe before this write): keep BACKING's as it is. */
	int keep = fs->writeback;
	uint8_t tail[FS_TAIL_CMP];
	size_t ntail = 0;
	if (keep) {
		pthread_mutex_lock(&n->tlock);
		keep = fstat(h->fd, &st) == 0;
		if (keep && off < st.st_size && st.st_size - off <= (off_t)sizeof(tail) &&
		    off + (off_t)fuse_buf_size(in_buf) > st.st_size) {
			ssize_t g = pread(h->fd, tail, (size_t)(st.st_size - off), off);
			ntail = g > 0 ? (size_t)g : 0;
		}
	}
	ssize_t r = fuse_buf_copy(&dst, in_buf, FUSE_BUF_SPLICE_NONBLOCK);
	if (keep && r > 0) {
		struct timespec tv[2] = { { 0, UTIME_OMIT }, st.st_mtim };
		(void)futimens(h->fd, tv);
	}
	if (fs->writeback)
		pthread_mutex_unlock(&n->tlock);
	if (r < 0) {
		fuse_reply_err(req, (int)-r);
		return;
	}
	/* Large writes are a file written out in sequence (the kernel's
	 * write-back sends up to 1 MiB at once), usually before an fsync or
	 * a close that the application waits for. Left alone, BACKING's
	 * copy would reach the disk only at that fsync, after every byte
	 * has crossed the FUSE layer; started now, the two overlap (fio
	 * 1 GiB sequential write with end_fsync: 0.55x -> 0.79x native,
	 * medians of 3). SYNC_FILE_RANGE_WRITE only queues the I/O. */
	if (r >= (ssize_t)FS_EARLY_WB)
		(void)sync_file_range(h->fd, off, r, SYNC_FILE_RANGE_WRITE);
	if (r > 0) {
		size_t same = ntail ? same_prefix(h->fd, off, tail, ntail) : 0;
		if (same >= (size_t)r)
			same = 0;
		ofiles_dirty(&fs->m->ofiles, h->of->dev, h->of->ino, (uint64_t)off + same,
			     (uint64_t)r - same);
		ofiles_written(&fs->m->ofiles, h->of);
	}
	fuse_reply_write(req, (size_t)r);
}

/* No flush op: the kernel writes dirty pages back before it would send
 * FLUSH, POSIX locks are its own (no getlk/setlk here), and the ENOSYS
 * libfuse answers the first FLUSH with makes the kernel stop sending them,
 * a request less per close(). */

/* Asked only without default_permissions (a mount that only the user who
 * mounted it can use, so the daemon's credentials are the caller's): access(2)
 * and chdir, answered by BACKING. */
static void fs_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	char p[64];
	proc_name(p, sizeof(p), N(req, ino)->fd);
	fuse_reply_err(req, faccessat(AT_FDCWD, p, mask, AT_EACCESS) < 0 ? errno : 0);
}

static void fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = FS(req);
	struct node *n = N(req, ino);
	struct fh *h = FH(fi);
	struct stat st;
	if (fstat(h->fd, &st) == 0) {
		pthread_mutex_lock(&n->tlock);
		n->kept = 1;
		n->kept_size = st.st_size;
		n->kept_mtime = st.st_mtim;
		pthread_mutex_unlock(&n->tlock);
	}
	close(h->fd);
	ofiles_close(&fs->m->ofiles, h->of, h->writer);
	free(h);
	fuse_reply_err(req, 0);
}

static void fs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	int fd = FH(fi)->fd;
	fuse_reply_err(req, (datasync ? fdatasync(fd) : fsync(fd)) < 0 ? errno : 0);
}

/* A flock() that has to wait, on a thread of its own. */
struct flock_wait {
	fuse_req_t req;
	int fd; /* owned: a dup of the handle's, the same open file */
	int op;
};

static void *flock_waiter(void *arg)
{
	struct flock_wait *fw = arg;
	int e = flock(fw->fd, fw->op) < 0 ? errno : 0;
	close(fw->fd);
	fuse_reply_err(fw->req, e);
	free(fw);
	return NULL;
}

/*
 * flock() on BACKING's file. One that must wait does not wait on a FUSE
 * thread: with every thread (FUSE_THREADS_MAX, main.c) blocked behind one lock,
 * the unlock or close of its holder would find none left, and the mount
 * would hang. It waits on a detached thread of its own, on a dup of the
 * descriptor (flock locks belong to the open file, which the dup shares;
 * the handle's own descriptor may be closed meanwhile if the caller is
 * killed). If that thread cannot be made, it waits here as before.
 */
static void fs_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op)
{
	(void)ino;
	int fd = FH(fi)->fd;
	if (flock(fd, op | LOCK_NB) == 0) {
		fuse_reply_err(req, 0);
		return;
	}
	if (errno != EWOULDBLOCK || (op & LOCK_NB)) {
		fuse_reply_err(req, errno);
		return;
	}
	struct flock_wait *fw = malloc(sizeof(*fw));
	pthread_attr_t attr;
	pthread_t t;
	int ok = 0;
	if (fw && (fw->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) >= 0) {
		fw->req = req;
		fw->op = op;
		if (pthread_attr_init(&attr) == 0) {
			ok = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0 &&
			     pthread_attr_setstacksize(&attr, 64 * 1024) == 0 &&
			     pthread_create(&t, &attr, flock_waiter, fw) == 0;
			pthread_attr_destroy(&attr);
		}
		if (!ok)
			close(fw->fd);
	}
	if (ok)
		return;
	free(fw);
	fuse_reply_err(req, flock(fd, op) < 0 ? errno : 0);
}

static void fs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	if (fallocate(FH(fi)->fd, mode, off, len) < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	/* Bytes outside [off, off + len) keep their content and place unless
	 * the mode moves them. */
	if (mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE))
		capture_node(FS(req), N(req, ino), fi, QF_CONTENT);
	else
		capture_range(FS(req), N(req, ino), fi, QF_CONTENT, (uint64_t)off, (uint64_t)len);
	fuse_reply_err(req, 0);
}

static void fs_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			       struct fuse_file_info *fi_out, size_t len, int flags)
{
	(void)ino_in;
	(void)ino_out;
	struct fs *fs = FS(req);
	ssize_t n = copy_file_range(FH(fi_in)->fd, &off_in, FH(fi_out)->fd, &off_out, len,
				    (unsigned)flags);
	if (n < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	struct ofile *of = FH(fi_out)->of;
	ofiles_dirty(&fs->m->ofiles, of->dev, of->ino, (uint64_t)(off_out - n), (uint64_t)n);
	ofiles_written(&fs->m->ofiles, of);
	fuse_reply_write(req, (size_t)n);
}

static void fs_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	(void)ino;
	off_t r = lseek(FH(fi)->fd, off, whence);
	if (r < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_lseek(req, r);
}

/* --------------------------------------------------------------- xattrs */

/* A name for the xattr calls, which have no *at() forms: the inode itself
 * through /proc (followed), or for a symlink its path under BACKING (not
 * followed: *l = 1). */
static int xattr_name(struct fs *fs, struct node *n, char *out, size_t cap, int *l)
{
	*l = n->type == S_IFLNK;
	if (!*l) {
		proc_name(out, cap, n->fd);
		return 0;
	}
	int len = snprintf(out, cap, "/proc/self/fd/%d/", fs->m->backing_fd);
	if (len < 0 || (size_t)len >= cap)
		return -ENAMETOOLONG;
	return node_path(fs, n, out + len, cap - (size_t)len);
}

/* The common start of the xattr operations: the name to use in p, or the
 * request answered (off: ENOSYS, once, and the kernel stops asking; the
 * kernel asks for security.capability before every write(): fs.h).
 * Returns 1 to go on. */
static int xattr_begin(fuse_req_t req, fuse_ino_t ino, char *p, size_t cap, int *l)
{
	if (!FS(req)->xattr) {
		fuse_reply_err(req, ENOSYS);
		return 0;
	}
	int r = xattr_name(FS(req), N(req, ino), p, cap, l);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return 0;
	}
	return 1;
}

static void fs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	char p[FS_PATH_CAP + 64];
	int l;
	if (!xattr_begin(req, ino, p, sizeof(p), &l))
		return;
	int r = (l ? lsetxattr : setxattr)(p, name, value, size, flags);
	fuse_reply_err(req, r < 0 ? errno : 0);
}

/* getxattr of name, or listxattr when name is NULL: the size alone when
 * size is 0. */
static void get_or_list(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char p[FS_PATH_CAP + 64];
	int l;
	if (!xattr_begin(req, ino, p, sizeof(p), &l))
		return;
	char *value = size ? malloc(size) : NULL;
	if (size && !value) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	ssize_t n = name ? (l ? lgetxattr : getxattr)(p, name, value, size)
			 : (l ? llistxattr : listxattr)(p, value, size);
	if (n < 0)
		fuse_reply_err(req, errno);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, value, (size_t)n);
	free(value);
}

static void fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	get_or_list(req, ino, name, size);
}

static void fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	get_or_list(req, ino, NULL, size);
}

static void fs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	char p[FS_PATH_CAP + 64];
	int l;
	if (!xattr_begin(req, ino, p, sizeof(p), &l))
		return;
	int r = (l ? lremovexattr : removexattr)(p, name);
	fuse_reply_err(req, r < 0 ? errno : 0);
}

/* The status of the mirror, for `mirrorfs status` and `sync` (status.h):
 * on the root folder only. */
static void fs_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
		     struct fuse_file_info *fi, unsigned flags, const void *in_buf,
		     size_t in_bufsz, size_t out_bufsz)
{
	(void)arg;
	(void)fi;
	(void)in_buf;
	(void)in_bufsz;
	if (cmd != (unsigned int)STATUS_IOCTL || ino != FUSE_ROOT_ID ||
	    (flags & FUSE_IOCTL_COMPAT)) {
		fuse_reply_err(req, ENOTTY);
		return;
	}
	size_t len = 0;
	char *json = status_json(FS(req)->m, &len);
	if (!json)
		fuse_reply_err(req, ENOMEM);
	else if (len + 1 > out_bufsz || len + 1 > STATUS_IOCTL_MAX)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_ioctl(req, 0, json, len + 1);
	free(json);
}

/* ------------------------------------------------------------- folders */

static void fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dh *d = calloc(1, sizeof(*d));
	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	int fd = openat(N(req, ino)->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(d->dir = fdopendir(fd))) {
		int saverr = errno;
		if (fd >= 0)
			close(fd);
		free(d);
		fuse_reply_err(req, saverr);
		return;
	}
	fi->fh = (uintptr_t)d;
	fi->cache_readdir = 0;
	if (fuse_reply_open(req, fi) < 0) {
		closedir(d->dir);
		free(d);
	}
}

static int is_dot(const char *name)
{
	return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
		       struct fuse_file_info *fi, int plus)
{
	struct fs *fs = FS(req);
	struct dh *d = (struct dh *)(uintptr_t)fi->fh;
	char *buf = malloc(size ? size : 1);
	size_t used = 0;
	int err = 0;
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (offset != d->offset) {
		seekdir(d->dir, offset);
		d->entry = NULL;
		d->offset = offset;
	}
	for (;;) {
		if (!d->entry) {
			errno = 0;
			d->entry = readdir(d->dir);
			if (!d->entry) {
				err = errno;
				break;
			}
		}
		const char *name = d->entry->d_name;
		off_t next = telldir(d->dir);
		size_t len;
		if (plus) {
			struct fuse_entry_param e;
			fuse_ino_t got = 0;
			if (is_dot(name)) {
				memset(&e, 0, sizeof(e));
				e.attr.st_ino = d->entry->d_ino;
				e.attr.st_mode = (mode_t)d->entry->d_type << 12;
			} else {
				int r = do_lookup(fs, N(req, ino), name, &e);
				if (r == -ENOENT) { /* gone since readdir: skip it */
					d->entry = NULL;
					d->offset = next;
					continue;
				}
				if (r < 0) {
					err = -r;
					break;
				}
				got = e.ino;
			}
			len = fuse_add_direntry_plus(req, buf + used, size - used, name, &e, next);
			if (len > size - used) {
				if (got)
					forget_one(fs, (struct node *)(uintptr_t)got, 1);
				break;
			}
		} else {
			struct stat st;
			memset(&st, 0, sizeof(st));
			st.st_ino = d->entry->d_ino;
			st.st_mode = (mode_t)d->entry->d_type << 12;
			len = fuse_add_direntry(req, buf + used, size - used, name, &st, next);
			if (len > size - used)
				break;
		}
		used += len;
		d->entry = NULL;
		d->offset = next;
	}
	/* An error after some entries: return those; the next call sees it. */
	if (err && used == 0)
		fuse_reply_err(req, err);
	else
		fuse_reply_buf(req, buf, used);
	free(buf);
}

static void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 0);
}

static void fs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 1);
}

static void fs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	struct dh *d = (struct dh *)(uintptr_t)fi->fh;
	closedir(d->dir);
	free(d);
	fuse_reply_err(req, 0);
}

static void fs_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	int fd = dirfd(((struct dh *)(uintptr_t)fi->fh)->dir);
	fuse_reply_err(req, (datasync ? fdatasync(fd) : fsync(fd)) < 0 ? errno : 0);
}

/* ---------------------------------------------------------------- setup */

/* Every node holds a descriptor: raise the soft limit to the hard one
 * (as root, the hard one to the system's maximum first). Past a quarter
 * of it, less a reserve, nodes are evicted (evict()); the rest is room for
 * bursts of lookups faster than eviction, and for everything else. */
static size_t fs_node_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 1000;
	FILE *f = fopen("/proc/sys/fs/nr_open", "re");
	unsigned long max = 0;
	if (f) {
		if (fscanf(f, "%lu", &max) != 1)
			max = 0;
		fclose(f);
	}
	if (max > rl.rlim_max) {
		struct rlimit up = { max, max };
		if (setrlimit(RLIMIT_NOFILE, &up) == 0)
			rl = up;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
		(void)getrlimit(RLIMIT_NOFILE, &rl);
	}
	size_t lim = rl.rlim_cur == RLIM_INFINITY ? 1u << 20 : (size_t)rl.rlim_cur;
	return lim > 5024 ? (lim - 1024) / 4 : 1000;
}

struct fs *fs_new(struct mirror *m, unsigned flags)
{
	struct fs *fs = calloc(1, sizeof(*fs));
	struct stat st;
	if (!fs)
		return NULL;
	fs->m = m;
	fs->writeback = (flags & FS_WRITEBACK) != 0;
	fs->xattr = (flags & FS_XATTR) != 0;
	fs->private_ = (flags & FS_PRIVATE) != 0;
	fs->nbuckets = FS_HASH_MIN;
	fs->hash = calloc(fs->nbuckets, sizeof(*fs->hash));
	fs->root.fd = open(m->backing, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (!fs->hash || fs->root.fd < 0 || fstat(fs->root.fd, &st) < 0)
		goto fail;
	fs->root.dev = st.st_dev;
	fs->root.ino = st.st_ino;
	fs->root.type = S_IFDIR;
	fs->root.nlookup = 2;
	fs->prefix_len = strlen(m->backing) + (strcmp(m->backing, "/") != 0);
	fs->node_high = fs_node_limit();
	fs->node_low = fs->node_high / 2;
	pthread_mutex_init(&fs->root.tlock, NULL);
	pthread_mutex_init(&fs->lock, NULL);
	pthread_mutex_init(&fs->flock, NULL);
	pthread_cond_init(&fs->fcond, NULL);
	return fs;
fail:
	if (fs->root.fd >= 0)
		close(fs->root.fd);
	free(fs->hash);
	free(fs);
	return NULL;
}

void fs_set_session(struct fs *fs, struct fuse_session *se)
{
	fs->se = se;
}

void fs_stop(struct fs *fs)
{
	pthread_mutex_lock(&fs->flock);
	fs->stopping = 1;
	pthread_cond_broadcast(&fs->fcond);
	int running = fs->flusher_running;
	fs->flusher_running = 0;
	pthread_mutex_unlock(&fs->flock);
	if (running)
		pthread_join(fs->flusher, NULL);
}

void fs_free(struct fs *fs)
{
	if (!fs)
		return;
	fs_stop(fs);
	for (size_t i = 0; i < fs->nbuckets; i++)
		while (fs->hash[i]) {
			struct node *n = fs->hash[i];
			fs->hash[i] = n->next;
			node_free(n);
		}
	free(fs->hash);
	close(fs->root.fd);
	pthread_mutex_destroy(&fs->root.tlock);
	pthread_mutex_destroy(&fs->lock);
	pthread_mutex_destroy(&fs->flock);
	pthread_cond_destroy(&fs->fcond);
	free(fs);
}

const struct fuse_lowlevel_ops fs_ops = {
	.init = fs_init,
	.destroy = fs_destroy,
	.lookup = fs_lookup,
	.forget = fs_forget,
	.forget_multi = fs_forget_multi,
	.getattr = fs_getattr,
	.setattr = fs_setattr,
	.readlink = fs_readlink,
	.access = fs_access,
	.mknod = fs_mknod,
	.mkdir = fs_mkdir,
	.unlink = fs_unlink,
	.rmdir = fs_rmdir,
	.symlink = fs_symlink,
	.rename = fs_rename,
	.link = fs_link,
	.open = fs_open,
	.create = fs_create,
	.read = fs_read,
	.write_buf = fs_write_buf,
	.release = fs_release,
	.fsync = fs_fsync,
	.opendir = fs_opendir,
	.readdir = fs_readdir,
	.readdirplus = fs_readdirplus,
	.releasedir = fs_releasedir,
	.fsyncdir = fs_fsyncdir,
	.statfs = fs_statfs,
	.setxattr = fs_setxattr,
	.getxattr = fs_getxattr,
	.listxattr = fs_listxattr,
	.removexattr = fs_removexattr,
	.flock = fs_flock,
	.fallocate = fs_fallocate,
	.copy_file_range = fs_copy_file_range,
	.lseek = fs_lseek,
	.ioctl = fs_ioctl,
};
