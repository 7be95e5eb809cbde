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
#include <unistd.h>

#include "links.h"
#include "log.h"
#include "mirror.h"
#include "ofile.h"
#include "queue.h"
#include "setup.h"
#include "status.h"

/* One open file: its BACKING fd and the shared record of its inode. */
struct fh {
	int fd;
	int writer;
	struct ofile *of; /* reference held */
};

static struct mirror *ctx(void)
{
	return fuse_get_context()->private_data;
}

/* FUSE paths start with '/'; BACKING paths are relative to backing_fd. */
static const char *rel(const char *path)
{
	return path[1] ? path + 1 : ".";
}

/* The mirror path ("" for the root). */
static const char *mpath(const char *path)
{
	return path + 1;
}

static struct fh *get_fh(struct fuse_file_info *fi)
{
	return (struct fh *)(uintptr_t)fi->fh;
}

/* Queue a sync after a successful mutation. An allocation failure is
 * logged; the next mount's reconciliation repairs what was missed. */
static void capture(const char *path, unsigned flags)
{
	struct mirror *m = ctx();
	if (mirror_is_hidden(path))
		return;
	if (queue_sync(m->q, mpath(path), flags) < 0)
		log_error("%s: cannot queue change: out of memory", path);
}

/* Capture for operations that may come with a file handle and no path. */
static void capture_fi(const char *path, struct fuse_file_info *fi, unsigned flags)
{
	if (path) {
		capture(path, flags);
		return;
	}
	if (fi && get_fh(fi)->of && flags & QF_CONTENT) {
		/* ftruncate: not a range */
		ofiles_dirty(&ctx()->ofiles, get_fh(fi)->of->dev, get_fh(fi)->of->ino, 0, 0);
		ofiles_written(&ctx()->ofiles, get_fh(fi)->of);
		return;
	}
	if (fi && get_fh(fi)->of) {
		struct mirror *m = ctx();
		pthread_mutex_lock(&m->ofiles.lock);
		if (get_fh(fi)->of->path && queue_sync(m->q, get_fh(fi)->of->path, flags) < 0)
			log_error("cannot queue change: out of memory");
		pthread_mutex_unlock(&m->ofiles.lock);
	}
}

static void *fs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	struct mirror *m = ctx();
	cfg->use_ino = 1;
	/* A file unlinked while open is kept under a hidden name until its last
	 * handle closes (hard_remove = 0), so that fchmod, futimens and the
	 * rest keep working on it as on a real filesystem. libfuse 3.14 finds
	 * that name again at release only when it computes paths for handle
	 * operations: with nullpath_ok set it sometimes leaves the hidden file
	 * behind in BACKING (seen with git clone). Correctness first. */
	cfg->nullpath_ok = 0;
	cfg->hard_remove = 0;
	/* Names, attributes and absent names are cached by the kernel for 1 s:
	 * every change made through the mount updates them at once; a change
	 * made in BACKING behind the mount's back shows within a second.
	 * Caching absent names spares a compiler's search of its include
	 * path most lookups (bench build: 2.47x -> 1.94x native time). */
	cfg->entry_timeout = 1;
	cfg->attr_timeout = 1;
	cfg->negative_timeout = 1;
	conn->want |= conn->capable & FUSE_CAP_SPLICE_READ;
	conn->want |= conn->capable & FUSE_CAP_SPLICE_WRITE;
	/* Threads start here, after fuse_daemonize() has forked. */
	(void)setup_start(m);
	return m;
}

static void fs_destroy(void *data)
{
	struct mirror *m = data;
	setup_stop(m, 30000);
}

static int fs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	int r = fi ? fstat(get_fh(fi)->fd, st)
		   : fstatat(ctx()->backing_fd, rel(path), st, AT_SYMLINK_NOFOLLOW);
	return r < 0 ? -errno : 0;
}

static int fs_readlink(const char *path, char *buf, size_t size)
{
	ssize_t n = readlinkat(ctx()->backing_fd, rel(path), buf, size - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

static int fs_mknod(const char *path, mode_t mode, dev_t rdev)
{
	if (mknodat(ctx()->backing_fd, rel(path), mode, rdev) < 0)
		return -errno;
	capture(path, QF_CONTENT);
	return 0;
}

static int fs_mkdir(const char *path, mode_t mode)
{
	if (mkdirat(ctx()->backing_fd, rel(path), mode) < 0)
		return -errno;
	capture(path, QF_META);
	return 0;
}

static int fs_unlink(const char *path)
{
	struct mirror *m = ctx();
	if (unlinkat(m->backing_fd, rel(path), 0) < 0)
		return -errno;
	ofiles_unlinked(&m->ofiles, mpath(path));
	links_unlinked(m->links, mpath(path));
	capture(path, QF_CONTENT);
	return 0;
}

static int fs_rmdir(const char *path)
{
	if (unlinkat(ctx()->backing_fd, rel(path), AT_REMOVEDIR) < 0)
		return -errno;
	capture(path, QF_META);
	return 0;
}

static int fs_symlink(const char *target, const char *path)
{
	if (symlinkat(target, ctx()->backing_fd, rel(path)) < 0)
		return -errno;
	capture(path, QF_CONTENT);
	return 0;
}

static int fs_rename(const char *from, const char *to, unsigned int flags)
{
	struct mirror *m = ctx();
	if (renameat2(m->backing_fd, rel(from), m->backing_fd, rel(to), flags) < 0)
		return -errno;
	if (mirror_is_hidden(to) && !mirror_is_hidden(from) && flags == 0) {
		/* libfuse hiding a file unlinked while open: for the mirror,
		 * an unlink. Writes through its handles are not mirrored. */
		ofiles_unlinked(&m->ofiles, mpath(from));
		links_unlinked(m->links, mpath(from));
		capture(from, QF_CONTENT);
		return 0;
	}
	int exchange = (flags & RENAME_EXCHANGE) != 0;
	if (!exchange) {
		/* Whatever "to" was is gone (replaced). */
		ofiles_unlinked(&m->ofiles, mpath(to));
		links_unlinked(m->links, mpath(to));
	}
	ofiles_renamed(&m->ofiles, mpath(from), mpath(to), exchange);
	links_renamed(m->links, mpath(from), mpath(to), exchange);
	if (queue_rename(m->q, mpath(from), mpath(to), flags) < 0)
		log_error("%s: cannot queue rename: out of memory", from);
	return 0;
}

static int fs_link(const char *from, const char *to)
{
	struct mirror *m = ctx();
	struct stat st;
	if (linkat(m->backing_fd, rel(from), m->backing_fd, rel(to), 0) < 0)
		return -errno;
	if (fstatat(m->backing_fd, rel(to), &st, AT_SYMLINK_NOFOLLOW) == 0) {
		(void)links_add(m->links, st.st_ino, mpath(from));
		(void)links_add(m->links, st.st_ino, mpath(to));
	}
	capture(to, QF_CONTENT);
	return 0;
}

static int fs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	int r = fi ? fchmod(get_fh(fi)->fd, mode)
		   : fchmodat(ctx()->backing_fd, rel(path), mode, 0);
	if (r < 0)
		return -errno;
	capture_fi(path, fi, QF_META);
	return 0;
}

static int fs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	/* Ownership is not mirrored (mirrord runs unprivileged). */
	int r = fi ? fchown(get_fh(fi)->fd, uid, gid)
		   : fchownat(ctx()->backing_fd, rel(path), uid, gid, AT_SYMLINK_NOFOLLOW);
	return r < 0 ? -errno : 0;
}

static int fs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	int r;
	if (fi) {
		r = ftruncate(get_fh(fi)->fd, size);
	} else {
		int fd = openat(ctx()->backing_fd, rel(path), O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		r = ftruncate(fd, size);
		int saverr = errno;
		struct stat st;
		if (r == 0 && fstat(fd, &st) == 0)
			ofiles_dirty(&ctx()->ofiles, st.st_dev, st.st_ino, 0, 0);
		close(fd);
		errno = saverr;
	}
	if (r < 0)
		return -errno;
	capture_fi(path, fi, QF_CONTENT);
	return 0;
}

static int fs_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	int r = fi ? futimens(get_fh(fi)->fd, tv)
		   : utimensat(ctx()->backing_fd, rel(path), tv, AT_SYMLINK_NOFOLLOW);
	if (r < 0)
		return -errno;
	capture_fi(path, fi, QF_META);
	return 0;
}

/* Wrap a freshly opened BACKING fd into a handle. */
static int make_fh(const char *path, int fd, int flags, struct fuse_file_info *fi)
{
	struct mirror *m = ctx();
	struct stat st;
	int writer = (flags & O_ACCMODE) != O_RDONLY;
	struct fh *h = calloc(1, sizeof(*h));
	if (!h || fstat(fd, &st) < 0) {
		int saverr = h ? errno : ENOMEM;
		free(h);
		close(fd);
		return -saverr;
	}
	h->fd = fd;
	h->writer = writer;
	h->of = ofiles_open(&m->ofiles, st.st_dev, st.st_ino, path ? mpath(path) : NULL, writer);
	if (!h->of) {
		free(h);
		close(fd);
		return -ENOMEM;
	}
	fi->fh = (uintptr_t)h;
	return 0;
}

static int fs_open(const char *path, struct fuse_file_info *fi)
{
	struct mirror *m = ctx();
	int fd = openat(m->backing_fd, rel(path), (fi->flags & ~O_NOFOLLOW) | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = make_fh(path, fd, fi->flags, fi);
	if (r < 0)
		return r;
	if (fi->flags & O_TRUNC) {
		ofiles_dirty(&m->ofiles, get_fh(fi)->of->dev, get_fh(fi)->of->ino, 0, 0);
		ofiles_written(&m->ofiles, get_fh(fi)->of);
	}
	return 0;
}

static int fs_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct mirror *m = ctx();
	int fd = openat(m->backing_fd, rel(path), fi->flags | O_CREAT | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	int r = make_fh(path, fd, fi->flags, fi);
	if (r < 0)
		return r;
	/* A new (maybe empty) file must reach the server even without writes. */
	ofiles_dirty(&m->ofiles, get_fh(fi)->of->dev, get_fh(fi)->of->ino, 0, 0);
	ofiles_written(&m->ofiles, get_fh(fi)->of);
	return 0;
}

static int fs_read_buf(const char *path, struct fuse_bufvec **bufp, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)path;
	struct fuse_bufvec *bv = malloc(sizeof(*bv));
	if (!bv)
		return -ENOMEM;
	*bv = FUSE_BUFVEC_INIT(size);
	bv->buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	bv->buf[0].fd = get_fh(fi)->fd;
	bv->buf[0].pos = off;
	*bufp = bv;
	return 0;
}

static int fs_write_buf(const char *path, struct fuse_bufvec *buf, off_t off,
			struct fuse_file_info *fi)
{
	(void)path;
	struct fh *h = get_fh(fi);
	struct fuse_bufvec dst = FUSE_BUFVEC_INIT(fuse_buf_size(buf));
	dst.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	dst.buf[0].fd = h->fd;
	dst.buf[0].pos = off;
	ssize_t n = fuse_buf_copy(&dst, buf, FUSE_BUF_SPLICE_NONBLOCK);
	if (n > 0) {
		ofiles_dirty(&ctx()->ofiles, h->of->dev, h->of->ino, (uint64_t)off, (uint64_t)n);
		ofiles_written(&ctx()->ofiles, h->of);
	}
	return (int)n;
}

static int fs_statfs(const char *path, struct statvfs *sv)
{
	(void)path;
	return fstatvfs(ctx()->backing_fd, sv) < 0 ? -errno : 0;
}

static int fs_flush(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	/* Closing a duplicate releases POSIX locks held through this fd, as a
	 * close() on the real file would. */
	int fd = dup(get_fh(fi)->fd);
	if (fd < 0)
		return -errno;
	return close(fd) < 0 ? -errno : 0;
}

static int fs_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	struct fh *h = get_fh(fi);
	close(h->fd);
	ofiles_close(&ctx()->ofiles, h->of, h->writer);
	free(h);
	return 0;
}

static int fs_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path;
	int fd = get_fh(fi)->fd;
	return (datasync ? fdatasync(fd) : fsync(fd)) < 0 ? -errno : 0;
}

/* xattrs have no *at() calls: go through /proc/self/fd of an O_PATH fd
 * (works for symlinks too, without following them). */
static int xattr_path(const char *path, char *out, size_t len, int *fd)
{
	*fd = openat(ctx()->backing_fd, rel(path), O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (*fd < 0)
		return -errno;
	snprintf(out, len, "/proc/self/fd/%d", *fd);
	return 0;
}

static int fs_setxattr(const char *path, const char *name, const char *value, size_t size,
		       int flags)
{
	char p[64];
	int fd, r;
	if (strcmp(path, "/") == 0 && strcmp(name, STATUS_XATTR) == 0)
		return -EPERM;
	if ((r = xattr_path(path, p, sizeof(p), &fd)) < 0)
		return r;
	r = lsetxattr(p, name, value, size, flags) < 0 ? -errno : 0;
	close(fd);
	return r;
}

static int fs_getxattr(const char *path, const char *name, char *value, size_t size)
{
	char p[64];
	int fd, r;
	if (strcmp(path, "/") == 0 && strcmp(name, STATUS_XATTR) == 0) {
		size_t len = 0;
		char *json = status_json(ctx(), &len);
		if (!json)
			return -ENOMEM;
		r = size == 0 ? (int)len : size < len ? -ERANGE : (memcpy(value, json, len), (int)len);
		free(json);
		return r;
	}
	if ((r = xattr_path(path, p, sizeof(p), &fd)) < 0)
		return r;
	ssize_t n = lgetxattr(p, name, value, size);
	r = n < 0 ? -errno : (int)n;
	close(fd);
	return r;
}

static int fs_listxattr(const char *path, char *list, size_t size)
{
	char p[64];
	int fd, r;
	if ((r = xattr_path(path, p, sizeof(p), &fd)) < 0)
		return r;
	ssize_t n = llistxattr(p, list, size);
	r = n < 0 ? -errno : (int)n;
	close(fd);
	return r;
}

static int fs_removexattr(const char *path, const char *name)
{
	char p[64];
	int fd, r;
	if ((r = xattr_path(path, p, sizeof(p), &fd)) < 0)
		return r;
	r = lremovexattr(p, name) < 0 ? -errno : 0;
	close(fd);
	return r;
}

struct dh {
	DIR *dir;
	struct dirent *entry; /* read but not yet returned */
	off_t offset;
};

static int fs_opendir(const char *path, struct fuse_file_info *fi)
{
	struct dh *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	int fd = openat(ctx()->backing_fd, rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(d->dir = fdopendir(fd))) {
		int saverr = errno;
		if (fd >= 0)
			close(fd);
		free(d);
		return -saverr;
	}
	fi->fh = (uintptr_t)d;
	return 0;
}

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t offset,
		      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	(void)path;
	struct dh *d = (struct dh *)(uintptr_t)fi->fh;
	if (offset != d->offset) {
		seekdir(d->dir, offset);
		d->entry = NULL;
		d->offset = offset;
	}
	for (;;) {
		struct stat st;
		enum fuse_fill_dir_flags fill = 0;
		if (!d->entry) {
			errno = 0;
			d->entry = readdir(d->dir);
			if (!d->entry)
				return errno ? -errno : 0;
		}
		memset(&st, 0, sizeof(st));
		if (flags & FUSE_READDIR_PLUS) {
			if (fstatat(dirfd(d->dir), d->entry->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
				fill = FUSE_FILL_DIR_PLUS;
		}
		if (!fill) {
			st.st_ino = d->entry->d_ino;
			st.st_mode = (mode_t)d->entry->d_type << 12;
		}
		off_t next = telldir(d->dir);
		if (filler(buf, d->entry->d_name, &st, next, fill))
			break;
		d->entry = NULL;
		d->offset = next;
	}
	return 0;
}

static int fs_releasedir(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	struct dh *d = (struct dh *)(uintptr_t)fi->fh;
	closedir(d->dir);
	free(d);
	return 0;
}

static int fs_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path;
	int fd = dirfd(((struct dh *)(uintptr_t)fi->fh)->dir);
	return (datasync ? fdatasync(fd) : fsync(fd)) < 0 ? -errno : 0;
}

static int fs_access(const char *path, int mask)
{
	return faccessat(ctx()->backing_fd, rel(path), mask, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

static int fs_flock(const char *path, struct fuse_file_info *fi, int op)
{
	(void)path;
	return flock(get_fh(fi)->fd, op) < 0 ? -errno : 0;
}

static int fs_fallocate(const char *path, int mode, off_t off, off_t len,
			struct fuse_file_info *fi)
{
	(void)path;
	if (fallocate(get_fh(fi)->fd, mode, off, len) < 0)
		return -errno;
	/* may change the size (KEEP_SIZE or not): treat as a size change */
	ofiles_dirty(&ctx()->ofiles, get_fh(fi)->of->dev, get_fh(fi)->of->ino, 0, 0);
	ofiles_written(&ctx()->ofiles, get_fh(fi)->of);
	return 0;
}

static ssize_t fs_copy_file_range(const char *path_in, struct fuse_file_info *fi_in,
				  off_t off_in, const char *path_out,
				  struct fuse_file_info *fi_out, off_t off_out, size_t len,
				  int flags)
{
	(void)path_in;
	(void)path_out;
	ssize_t n = copy_file_range(get_fh(fi_in)->fd, &off_in, get_fh(fi_out)->fd, &off_out,
				    len, (unsigned)flags);
	if (n < 0)
		return -errno;
	ofiles_dirty(&ctx()->ofiles, get_fh(fi_out)->of->dev, get_fh(fi_out)->of->ino,
		     (uint64_t)(off_out - n), (uint64_t)n);
	ofiles_written(&ctx()->ofiles, get_fh(fi_out)->of);
	return n;
}

static off_t fs_lseek(const char *path, off_t off, int whence, struct fuse_file_info *fi)
{
	(void)path;
	off_t r = lseek(get_fh(fi)->fd, off, whence);
	return r < 0 ? -errno : r;
}

const struct fuse_operations fs_ops = {
	.init = fs_init,
	.destroy = fs_destroy,
	.getattr = fs_getattr,
	.readlink = fs_readlink,
	.mknod = fs_mknod,
	.mkdir = fs_mkdir,
	.unlink = fs_unlink,
	.rmdir = fs_rmdir,
	.symlink = fs_symlink,
	.rename = fs_rename,
	.link = fs_link,
	.chmod = fs_chmod,
	.chown = fs_chown,
	.truncate = fs_truncate,
	.utimens = fs_utimens,
	.open = fs_open,
	.create = fs_create,
	.read_buf = fs_read_buf,
	.write_buf = fs_write_buf,
	.statfs = fs_statfs,
	.flush = fs_flush,
	.release = fs_release,
	.fsync = fs_fsync,
	.setxattr = fs_setxattr,
	.getxattr = fs_getxattr,
	.listxattr = fs_listxattr,
	.removexattr = fs_removexattr,
	.opendir = fs_opendir,
	.readdir = fs_readdir,
	.releasedir = fs_releasedir,
	.fsyncdir = fs_fsyncdir,
	.access = fs_access,
	.flock = fs_flock,
	.fallocate = fs_fallocate,
	.copy_file_range = fs_copy_file_range,
	.lseek = fs_lseek,
};
