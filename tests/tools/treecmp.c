/*
 * treecmp: compare two folder trees entry by entry, for the integration tests.
 *
 *   treecmp [--no-root-mtime] [--ignore-dir-mtime] [--skip-special]
 *           [--max-diffs N] A B
 *
 * What is compared, for every name below A and B (symlinks are never
 * followed; the roots themselves are included and printed as "."):
 *   - the type (file, dir, symlink, fifo, socket, char/block device);
 *   - the permission bits (mode & 07777), except for symlinks, whose mode
 *     Linux does not let anyone set;
 *   - mtime to the nanosecond, for files and symlinks always, for folders
 *     unless --ignore-dir-mtime, for the root unless --no-root-mtime;
 *   - the content of regular files (size first, then a streamed compare in
 *     fixed 1 MiB buffers: memory does not grow with file size);
 *   - symlink targets, byte for byte;
 *   - device numbers of device nodes.
 * Owners, hard-link structure, xattrs and sparseness are not compared: the
 * mirror protocol does not carry them. --skip-special ignores fifos, sockets
 * and devices on both sides (the mirror does not carry them either).
 *
 * Output: one line per difference on stdout ("differs: PATH: mode 0644 !=
 * 0600", "only in A: PATH (file)", ...), at most --max-diffs of them (default
 * 100; 0 means no limit), then one summary line. Unprintable bytes in names
 * are written as \xNN, so one difference is always one line.
 *
 * Exit status: 0 identical, 1 different, 2 on any error (an unreadable entry,
 * a missing root, bad usage); an error wins over a difference.
 *
 * Folders are walked with openat() relative to their parent's fd, so paths
 * longer than PATH_MAX work; each level of depth holds two fds open (the
 * soft RLIMIT_NOFILE is raised to the hard one at start).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"

#define CMP_BUF_SIZE (1024 * 1024)

/* Options, frozen after parsing. */
struct cmp_opts {
	int no_root_mtime;
	int ignore_dir_mtime;
	int skip_special;
	unsigned long max_diffs; /* 0: unlimited */
};

/* Everything one comparison needs; one per run, single-threaded. */
struct cmp_ctx {
	struct cmp_opts opt;
	struct buf path;        /* current relative path, "" at the root */
	unsigned char *buf_a;   /* CMP_BUF_SIZE each, for content compares */
	unsigned char *buf_b;
	unsigned long diffs;    /* differences found (printed or not) */
	unsigned long errors;   /* entries that could not be read */
	unsigned long entries;  /* entries compared (present on both sides) */
};

/* One name in a folder, with its lstat. */
struct cmp_entry {
	char *name; /* owned */
	struct stat st;
};

struct cmp_list {
	struct cmp_entry *v; /* owned, sorted by name (bytewise) */
	size_t n;
};

static void cmp_list_release(struct cmp_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].name);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static int cmp_is_special(mode_t m)
{
	return !S_ISREG(m) && !S_ISDIR(m) && !S_ISLNK(m);
}

static const char *cmp_type_name(mode_t m)
{
	switch (m & S_IFMT) {
	case S_IFREG: return "file";
	case S_IFDIR: return "dir";
	case S_IFLNK: return "symlink";
	case S_IFIFO: return "fifo";
	case S_IFSOCK: return "socket";
	case S_IFCHR: return "chardev";
	case S_IFBLK: return "blockdev";
	default: return "unknown";
	}
}

/* Print the current path (or "." for the root), escaping what would break
 * the one-line-per-difference rule. */
static void cmp_print_path(FILE *f, const struct cmp_ctx *c)
{
	if (c->path.len == 0) {
		fputc('.', f);
		return;
	}
	for (size_t i = 0; i < c->path.len; i++) {
		unsigned char ch = (unsigned char)c->path.data[i];
		if (ch < 0x20 || ch == 0x7f || ch == '\\')
			fprintf(f, "\\x%02x", ch);
		else
			fputc(ch, f);
	}
}

/* Count a difference; print it while under the limit. */
static void cmp_diff(struct cmp_ctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void cmp_diff(struct cmp_ctx *c, const char *fmt, ...)
{
	va_list ap;

	c->diffs++;
	if (c->opt.max_diffs && c->diffs > c->opt.max_diffs)
		return;
	fputs("differs: ", stdout);
	cmp_print_path(stdout, c);
	fputs(": ", stdout);
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
}

static void cmp_only(struct cmp_ctx *c, const char *side, mode_t m)
{
	c->diffs++;
	if (c->opt.max_diffs && c->diffs > c->opt.max_diffs)
		return;
	printf("only in %s: ", side);
	cmp_print_path(stdout, c);
	printf(" (%s)\n", cmp_type_name(m));
}

/* Count an error: the entry could not be examined. errno-style err > 0. */
static void cmp_error(struct cmp_ctx *c, const char *side, const char *what, int err)
{
	c->errors++;
	fprintf(stderr, "treecmp: error: %s: ", side);
	cmp_print_path(stderr, c);
	fprintf(stderr, ": %s: %s\n", what, strerror(err));
}

/* Append "/name" (or "name" at the root) to the current path. Returns the
 * old length to restore with cmp_path_pop(), or (size_t)-1 on ENOMEM. */
static size_t cmp_path_push(struct cmp_ctx *c, const char *name)
{
	size_t old = c->path.len;
	if ((old && buf_append(&c->path, "/", 1) < 0) ||
	    buf_append(&c->path, name, strlen(name)) < 0) {
		c->path.len = old;
		if (c->path.data)
			c->path.data[old] = '\0';
		return (size_t)-1;
	}
	return old;
}

static void cmp_path_pop(struct cmp_ctx *c, size_t old)
{
	c->path.len = old;
	if (c->path.data)
		c->path.data[old] = '\0';
}

static int cmp_entry_order(const void *a, const void *b)
{
	const struct cmp_entry *x = a, *y = b;
	return strcmp(x->name, y->name);
}

/* Read the names of the folder open at dfd (not consumed) and lstat each.
 * Returns 0 and fills *out (caller releases with cmp_list_release), or a
 * negative errno; *out is empty on failure. */
static int cmp_list_read(int dfd, struct cmp_list *out)
{
	size_t alloc = 0;
	int saverr = 0;
	int fd = -1;
	DIR *d = NULL;

	out->v = NULL;
	out->n = 0;
	/* fdopendir takes ownership of its fd; keep dfd for the caller. */
	fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		saverr = errno;
		goto fail;
	}
	d = fdopendir(fd);
	if (!d) {
		saverr = errno;
		close(fd);
		goto fail;
	}
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (!de) {
			if (errno) {
				saverr = errno;
				goto fail;
			}
			break;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (out->n == alloc) {
			size_t na = alloc ? alloc * 2 : 32;
			struct cmp_entry *nv = realloc(out->v, na * sizeof(*nv));
			if (!nv) {
				saverr = ENOMEM;
				goto fail;
			}
			out->v = nv;
			alloc = na;
		}
		struct cmp_entry *e = &out->v[out->n];
		if (fstatat(dfd, de->d_name, &e->st, AT_SYMLINK_NOFOLLOW) < 0) {
			/* Vanished between readdir and stat: treat as absent. */
			if (errno == ENOENT)
				continue;
			saverr = errno;
			goto fail;
		}
		e->name = strdup(de->d_name);
		if (!e->name) {
			saverr = ENOMEM;
			goto fail;
		}
		out->n++;
	}
	closedir(d);
	if (out->n > 1)
		qsort(out->v, out->n, sizeof(*out->v), cmp_entry_order);
	return 0;

fail:
	if (d)
		closedir(d);
	cmp_list_release(out);
	return -saverr;
}

/* Read up to len bytes, retrying short reads; returns bytes read (< len
 * only at end of file) or -errno. */
static ssize_t cmp_read_full(int fd, unsigned char *p, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t r = read(fd, p + got, len - got);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/* Compare the content of two regular files of equal size, by name in the
 * folders da and db. Records a difference or an error. */
static void cmp_content(struct cmp_ctx *c, int da, int db, const char *name)
{
	int fa = -1, fb = -1;
	uint64_t off = 0;

	fa = openat(da, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
	if (fa < 0) {
		cmp_error(c, "A", "open", errno);
		goto out;
	}
	fb = openat(db, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
	if (fb < 0) {
		cmp_error(c, "B", "open", errno);
		goto out;
	}
	posix_fadvise(fa, 0, 0, POSIX_FADV_SEQUENTIAL);
	posix_fadvise(fb, 0, 0, POSIX_FADV_SEQUENTIAL);
	for (;;) {
		ssize_t na = cmp_read_full(fa, c->buf_a, CMP_BUF_SIZE);
		if (na < 0) {
			cmp_error(c, "A", "read", (int)-na);
			goto out;
		}
		ssize_t nb = cmp_read_full(fb, c->buf_b, CMP_BUF_SIZE);
		if (nb < 0) {
			cmp_error(c, "B", "read", (int)-nb);
			goto out;
		}
		size_t n = (size_t)(na < nb ? na : nb);
		if (memcmp(c->buf_a, c->buf_b, n) != 0) {
			size_t i = 0;
			while (c->buf_a[i] == c->buf_b[i])
				i++;
			cmp_diff(c, "content differs at byte %" PRIu64, off + i);
			goto out;
		}
		if (na != nb) {
			/* Sizes were equal at stat time: one side changed under us. */
			cmp_diff(c, "content length differs (%s ends at byte %" PRIu64 ")",
				 na < nb ? "A" : "B", off + n);
			goto out;
		}
		if ((size_t)na < CMP_BUF_SIZE)
			break;
		off += (uint64_t)na;
	}
out:
	if (fa >= 0)
		close(fa);
	if (fb >= 0)
		close(fb);
}

/* Compare two symlink targets, by name in da and db. */
static void cmp_symlink(struct cmp_ctx *c, int da, int db, const char *name)
{
	char ta[PATH_MAX + 1], tb[PATH_MAX + 1];
	ssize_t la = readlinkat(da, name, ta, sizeof(ta) - 1);
	if (la < 0) {
		cmp_error(c, "A", "readlink", errno);
		return;
	}
	ssize_t lb = readlinkat(db, name, tb, sizeof(tb) - 1);
	if (lb < 0) {
		cmp_error(c, "B", "readlink", errno);
		return;
	}
	ta[la] = '\0';
	tb[lb] = '\0';
	if (la != lb || memcmp(ta, tb, (size_t)la) != 0)
		cmp_diff(c, "symlink target '%s' != '%s'", ta, tb);
}

static void cmp_dir(struct cmp_ctx *c, int da, int db);

/* Compare one entry present on both sides. da/db are the parent folders;
 * name is "." for the roots (then da/db are the roots themselves). */
static void cmp_entry(struct cmp_ctx *c, int da, int db, const char *name,
		      const struct stat *sa, const struct stat *sb, int is_root)
{
	mode_t ta = sa->st_mode & S_IFMT, tb = sb->st_mode & S_IFMT;

	c->entries++;
	if (ta != tb) {
		cmp_diff(c, "type %s != %s", cmp_type_name(ta), cmp_type_name(tb));
		return;
	}
	if (!S_ISLNK(sa->st_mode) && (sa->st_mode & 07777) != (sb->st_mode & 07777))
		cmp_diff(c, "mode %04o != %04o", (unsigned)(sa->st_mode & 07777),
			 (unsigned)(sb->st_mode & 07777));
	int check_mtime = 1;
	if (S_ISDIR(sa->st_mode))
		check_mtime = is_root ? !c->opt.no_root_mtime : !c->opt.ignore_dir_mtime;
	if (check_mtime && (sa->st_mtim.tv_sec != sb->st_mtim.tv_sec ||
			    sa->st_mtim.tv_nsec != sb->st_mtim.tv_nsec))
		cmp_diff(c, "mtime %lld.%09ld != %lld.%09ld",
			 (long long)sa->st_mtim.tv_sec, sa->st_mtim.tv_nsec,
			 (long long)sb->st_mtim.tv_sec, sb->st_mtim.tv_nsec);

	if (S_ISREG(sa->st_mode)) {
		if (sa->st_size != sb->st_size)
			cmp_diff(c, "size %lld != %lld", (long long)sa->st_size,
				 (long long)sb->st_size);
		else
			cmp_content(c, da, db, name);
	} else if (S_ISLNK(sa->st_mode)) {
		cmp_symlink(c, da, db, name);
	} else if (S_ISCHR(sa->st_mode) || S_ISBLK(sa->st_mode)) {
		if (sa->st_rdev != sb->st_rdev)
			cmp_diff(c, "device %u:%u != %u:%u", major(sa->st_rdev),
				 minor(sa->st_rdev), major(sb->st_rdev), minor(sb->st_rdev));
	} else if (S_ISDIR(sa->st_mode)) {
		int ca = -1, cb = -1;
		ca = openat(da, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (ca < 0) {
			cmp_error(c, "A", "open folder", errno);
			goto dir_out;
		}
		cb = openat(db, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (cb < 0) {
			cmp_error(c, "B", "open folder", errno);
			goto dir_out;
		}
		cmp_dir(c, ca, cb);
dir_out:
		if (ca >= 0)
			close(ca);
		if (cb >= 0)
			close(cb);
	}
}

/* Compare the contents of two open folders (fds not consumed). */
static void cmp_dir(struct cmp_ctx *c, int da, int db)
{
	struct cmp_list la = { 0 }, lb = { 0 };
	int r;

	r = cmp_list_read(da, &la);
	if (r < 0) {
		cmp_error(c, "A", "read folder", -r);
		goto out;
	}
	r = cmp_list_read(db, &lb);
	if (r < 0) {
		cmp_error(c, "B", "read folder", -r);
		goto out;
	}
	size_t i = 0, j = 0;
	while (i < la.n || j < lb.n) {
		const struct cmp_entry *ea = i < la.n ? &la.v[i] : NULL;
		const struct cmp_entry *eb = j < lb.n ? &lb.v[j] : NULL;
		int order = !ea ? 1 : !eb ? -1 : strcmp(ea->name, eb->name);
		const char *name = order <= 0 ? ea->name : eb->name;

		if (order <= 0)
			i++;
		if (order >= 0)
			j++;
		if (c->opt.skip_special) {
			if (ea && order <= 0 && cmp_is_special(ea->st.st_mode))
				ea = NULL;
			if (eb && order >= 0 && cmp_is_special(eb->st.st_mode))
				eb = NULL;
		}
		size_t old = cmp_path_push(c, name);
		if (old == (size_t)-1) {
			cmp_error(c, "A", "path", ENOMEM);
			goto out;
		}
		if (order == 0 && ea && eb)
			cmp_entry(c, da, db, name, &ea->st, &eb->st, 0);
		else if (order <= 0 && ea)
			cmp_only(c, "A", ea->st.st_mode);
		else if (order >= 0 && eb)
			cmp_only(c, "B", eb->st.st_mode);
		cmp_path_pop(c, old);
	}
out:
	cmp_list_release(&la);
	cmp_list_release(&lb);
}

/* Let deep trees hold two fds per level. Failure is harmless. */
static void cmp_raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void usage(FILE *f)
{
	fprintf(f, "usage: treecmp [--no-root-mtime] [--ignore-dir-mtime] [--skip-special]\n"
		   "               [--max-diffs N] A B\n"
		   "exit status: 0 identical, 1 different, 2 error\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "no-root-mtime", no_argument, NULL, 'r' },
		{ "ignore-dir-mtime", no_argument, NULL, 'd' },
		{ "skip-special", no_argument, NULL, 's' },
		{ "max-diffs", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct cmp_ctx c = { .opt = { .max_diffs = 100 } };
	int ra = -1, rb = -1;
	int status = 2;
	int opt;

	log_init("treecmp", 0, LOG_LVL_INFO);
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'r': c.opt.no_root_mtime = 1; break;
		case 'd': c.opt.ignore_dir_mtime = 1; break;
		case 's': c.opt.skip_special = 1; break;
		case 'm': {
			char *end;
			errno = 0;
			unsigned long v = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || optarg[0] == '-') {
				log_error("bad --max-diffs value '%s'", optarg);
				return 2;
			}
			c.opt.max_diffs = v;
			break;
		}
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		return 2;
	}
	const char *a = argv[optind], *b = argv[optind + 1];

	cmp_raise_nofile();
	buf_init(&c.path, 0);
	c.buf_a = malloc(CMP_BUF_SIZE);
	c.buf_b = malloc(CMP_BUF_SIZE);
	if (!c.buf_a || !c.buf_b) {
		log_error("cannot allocate compare buffers");
		goto out;
	}
	/* The roots may be symlinks to folders (the caller named them); below
	 * them nothing is followed. */
	ra = open(a, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ra < 0) {
		log_error("cannot open %s: %s", a, strerror(errno));
		goto out;
	}
	rb = open(b, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rb < 0) {
		log_error("cannot open %s: %s", b, strerror(errno));
		goto out;
	}
	struct stat sa, sb;
	if (fstat(ra, &sa) < 0 || fstat(rb, &sb) < 0) {
		log_error("cannot stat the roots: %s", strerror(errno));
		goto out;
	}
	cmp_entry(&c, ra, rb, ".", &sa, &sb, 1);

	if (c.opt.max_diffs && c.diffs > c.opt.max_diffs)
		printf("... %lu more differences not shown\n", c.diffs - c.opt.max_diffs);
	if (c.errors)
		printf("treecmp: %lu errors, %lu differences, %lu entries compared\n",
		       c.errors, c.diffs, c.entries);
	else if (c.diffs)
		printf("treecmp: %lu differences, %lu entries compared\n", c.diffs, c.entries);
	else
		printf("treecmp: identical, %lu entries compared\n", c.entries);
	status = c.errors ? 2 : c.diffs ? 1 : 0;
out:
	if (ra >= 0)
		close(ra);
	if (rb >= 0)
		close(rb);
	free(c.buf_a);
	free(c.buf_b);
	buf_release(&c.path);
	fflush(stdout);
	return status;
}
