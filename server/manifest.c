#define _GNU_SOURCE
#include "manifest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "log.h"
#include "path.h"
#include "proto.h"
#include "resolve.h"

/* One open folder of the current path. */
struct level {
	DIR *d;      /* owned */
	size_t plen; /* length of this folder's path in manifest.path */
};

enum walk_state { W_ROOT, W_WALK, W_DONE };

struct manifest {
	enum walk_state state;
	/* The path of the innermost open folder, then room for one more name. */
	char path[PATH_MAX_LEN + 1 + PATH_COMPONENT_MAX + 1];
	struct stat root_st;
	int root_fd;       /* owned O_RDONLY fd of the subtree root, -1 once in levels */
	struct level *lv;  /* owned stack, lv[depth - 1] is the innermost */
	size_t depth, alloc;
};

static int is_absent(int r)
{
	return r == -ENOENT || r == -ENOTDIR || r == -ELOOP;
}

int manifest_open(int rootfd, const char *sub, struct manifest **out)
{
	struct manifest *m = calloc(1, sizeof(*m));
	const char *base;
	int pfd = -1, r = 0;

	if (!m)
		return -ENOMEM;
	m->root_fd = -1;
	m->state = W_DONE;
	size_t n = strlen(sub);
	if (n > PATH_MAX_LEN) {
		free(m);
		return -ENAMETOOLONG;
	}
	memcpy(m->path, sub, n + 1);
	if (n == 0) {
		m->root_fd = openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	} else {
		r = resolve_parent(rootfd, sub, 0, 0, &pfd, &base);
		if (r < 0)
			goto out;
		if (fstatat(pfd, base, &m->root_st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = -errno;
			goto out;
		}
		if (!S_ISDIR(m->root_st.st_mode))
			goto out; /* not a folder: empty listing */
		m->root_fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	}
	if (m->root_fd < 0) {
		r = -errno;
		goto out;
	}
	if (fstat(m->root_fd, &m->root_st) < 0) {
		r = -errno;
		goto out;
	}
	m->state = W_ROOT;
out:
	if (pfd >= 0)
		close(pfd);
	if (is_absent(r))
		r = 0;
	if (r < 0) {
		manifest_free(m);
		return r;
	}
	*out = m;
	return 0;
}

void manifest_free(struct manifest *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->depth; i++)
		closedir(m->lv[i].d);
	free(m->lv);
	if (m->root_fd >= 0)
		close(m->root_fd);
	free(m);
}

/* Append the line of the entry at path (plen bytes), or nothing if it
 * cannot be expressed. Returns 1 (added), 0 (left out) or -ENOMEM. */
static int add_line(struct buf *line, const char *path, size_t plen, const struct stat *st,
		    const char *target, size_t tlen)
{
	char t = S_ISREG(st->st_mode) ? 'f' : S_ISDIR(st->st_mode) ? 'd' : S_ISLNK(st->st_mode) ? 'l' : 'o';
	size_t start = line->len;
	int r;

	if ((r = buf_append(line, "{\"p\":\"", 6)) < 0 || (r = json_append_str(line, path, plen)) < 0 ||
	    (r = buf_appendf(line, "\",\"t\":\"%c\",\"m\":%u", t, (unsigned)(st->st_mode & 07777))) < 0)
		goto fail;
	if (t == 'f' && (r = buf_appendf(line, ",\"s\":%lld", (long long)st->st_size)) < 0)
		goto fail;
	if ((r = buf_appendf(line, ",\"mt\":[%lld,%ld]", (long long)st->st_mtim.tv_sec,
			     (long)st->st_mtim.tv_nsec)) < 0)
		goto fail;
	if (t == 'l' && ((r = buf_append(line, ",\"l\":\"", 6)) < 0 ||
			 (r = json_append_str(line, target, tlen)) < 0 || (r = buf_append(line, "\"", 1)) < 0))
		goto fail;
	if ((r = buf_append(line, "}\n", 2)) < 0)
		goto fail;
	if (line->len - start > PROTO_MANIFEST_LINE_MAX) {
		r = -EMSGSIZE;
		goto fail;
	}
	return 1;
fail:
	line->len = start;
	if (line->data)
		line->data[start] = '\0';
	if (r == -ENOMEM)
		return r;
	log_warn("manifest: leaving out %.*s: line too long", (int)plen, path);
	return 0;
}

static int push(struct manifest *m, int fd, size_t plen)
{
	if (m->depth == m->alloc) {
		size_t n = m->alloc ? m->alloc * 2 : 16;
		struct level *p = realloc(m->lv, n * sizeof(*p));
		if (!p) {
			close(fd);
			return -ENOMEM;
		}
		m->lv = p;
		m->alloc = n;
	}
	DIR *d = fdopendir(fd); /* takes fd */
	if (!d) {
		int r = -errno;
		close(fd);
		return r;
	}
	m->lv[m->depth].d = d;
	m->lv[m->depth].plen = plen;
	m->depth++;
	return 0;
}

int manifest_next(struct manifest *m, struct buf *line)
{
	char target[PATH_MAX_LEN + 2];
	int r;

	if (m->state == W_DONE)
		return 0;
	if (m->state == W_ROOT) {
		size_t n = strlen(m->path);
		m->state = W_WALK;
		if ((r = add_line(line, m->path, n, &m->root_st, NULL, 0)) < 0)
			return r;
		int fd = m->root_fd;
		m->root_fd = -1;
		if ((r = push(m, fd, n)) < 0)
			return r;
		return 1;
	}
	while (m->depth > 0) {
		struct level *top = &m->lv[m->depth - 1];
		errno = 0;
		struct dirent *e = readdir(top->d);
		if (!e) {
			if (errno)
				return -errno;
			closedir(top->d);
			m->depth--;
			continue;
		}
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		size_t nlen = strlen(e->d_name);
		size_t plen = top->plen + (top->plen ? 1 : 0) + nlen;
		if (plen > PATH_MAX_LEN || nlen > PATH_COMPONENT_MAX) {
			log_warn("manifest: leaving out %.*s/%s: path too long", (int)top->plen,
				 m->path, e->d_name);
			continue;
		}
		char *p = m->path + top->plen;
		if (top->plen)
			*p++ = '/';
		memcpy(p, e->d_name, nlen + 1);

		struct stat st;
		int dfd = dirfd(top->d);
		if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT)
				log_warn("manifest: cannot stat %s: %s", m->path, strerror(errno));
			continue; /* gone meanwhile */
		}
		ssize_t tlen = 0;
		if (S_ISLNK(st.st_mode)) {
			tlen = readlinkat(dfd, e->d_name, target, sizeof(target));
			if (tlen < 0 || (size_t)tlen >= sizeof(target) - 1) {
				if (tlen >= 0 || errno != ENOENT)
					log_warn("manifest: cannot read symlink %s", m->path);
				continue;
			}
		}
		if ((r = add_line(line, m->path, plen, &st, target, (size_t)tlen)) < 0)
			return r;
		if (r == 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			int fd = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0) {
				if (errno == EMFILE || errno == ENFILE || errno == ENOMEM)
					return -errno; /* an incomplete listing would delete things */
				log_warn("manifest: cannot open folder %s: %s", m->path, strerror(errno));
			} else if ((r = push(m, fd, plen)) < 0) {
				return r;
			}
		}
		return 1;
	}
	m->state = W_DONE;
	return 0;
}
