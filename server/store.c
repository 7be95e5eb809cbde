#define _GNU_SOURCE
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chunker.h"
#include "log.h"

_Static_assert(CHUNK_MAX <= CHUNK_PROTO_MAX, "the store reads chunks into CHUNK_PROTO_MAX bytes");

/* "ab/<64 hex>" */
#define STORE_REL_MAX (3 + HASH_HEX_LEN + 1)

static void rel_name(const struct hash_id *id, char out[STORE_REL_MAX])
{
	char hex[HASH_HEX_LEN + 1];
	hash_to_hex(id, hex);
	out[0] = hex[0];
	out[1] = hex[1];
	out[2] = '/';
	memcpy(out + 3, hex, HASH_HEX_LEN + 1);
}

int store_open(struct store *s, int statefd, struct tmpdir *tmp)
{
	s->fd = -1;
	s->tmp = tmp;
	if (mkdirat(statefd, "chunks", 0700) < 0 && errno != EEXIST)
		return -errno;
	int fd = openat(statefd, "chunks", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	s->fd = fd;
	return 0;
}

void store_close(struct store *s)
{
	if (!s || s->fd < 0)
		return;
	close(s->fd);
	s->fd = -1;
}

int store_has(struct store *s, const struct hash_id *id)
{
	char rel[STORE_REL_MAX];
	struct stat st;
	rel_name(id, rel);
	return fstatat(s->fd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int store_put(struct store *s, const struct hash_id *id, const void *data, size_t len)
{
	char rel[STORE_REL_MAX], tmp[TMPDIR_NAME_MAX];
	int r;

	rel_name(id, rel);
	if (store_has(s, id)) {
		/* Already there: refresh its age so store_gc() keeps it. */
		if (utimensat(s->fd, rel, NULL, AT_SYMLINK_NOFOLLOW) == 0)
			return 0;
	}
	tmpdir_name(s->tmp, 'c', tmp);
	int fd = openat(s->tmp->fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	r = write_all(fd, data, len);
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r < 0)
		goto fail;
	rel[2] = '\0';
	if (mkdirat(s->fd, rel, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		goto fail;
	}
	rel[2] = '/';
	if (renameat(s->tmp->fd, tmp, s->fd, rel) < 0) {
		r = -errno;
		goto fail;
	}
	return 0;
fail:
	unlinkat(s->tmp->fd, tmp, 0);
	return r;
}

int store_get(struct store *s, const struct hash_id *id, size_t len, uint8_t *out)
{
	char rel[STORE_REL_MAX];
	struct stat st;
	struct hash_id got;
	size_t have = 0;
	int r;

	rel_name(id, rel);
	int fd = openat(s->fd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ENOENT : -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size > CHUNK_PROTO_MAX) {
		r = -ENOENT;
		goto damaged;
	}
	while (have < (size_t)st.st_size) {
		ssize_t n = pread(fd, out + have, (size_t)st.st_size - have, (off_t)have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			goto out;
		}
		if (n == 0)
			break;
		have += (size_t)n;
	}
	hash_buf(out, have, &got);
	if (!hash_equal(&got, id)) {
		r = -ENOENT;
		goto damaged;
	}
	r = have == len ? 0 : -EBADMSG;
	goto out;
damaged:
	log_warn("dropping damaged chunk %s from the store", rel + 3);
	unlinkat(s->fd, rel, 0);
out:
	close(fd);
	return r;
}

int store_remove(struct store *s, const struct hash_id *id)
{
	char rel[STORE_REL_MAX];
	rel_name(id, rel);
	return unlinkat(s->fd, rel, 0) < 0 && errno != ENOENT ? -errno : 0;
}

/* Remove old files in one "ab" folder. */
static int gc_sub(int subfd, time_t cutoff, int *removed)
{
	int dfd = fcntl(subfd, F_DUPFD_CLOEXEC, 0);
	if (dfd < 0)
		return -errno;
	DIR *d = fdopendir(dfd); /* takes dfd */
	if (!d) {
		int r = -errno;
		close(dfd);
		return r;
	}
	struct dirent *e;
	struct stat st;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (fstatat(subfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (st.st_mtime < cutoff && unlinkat(subfd, e->d_name, 0) == 0)
			(*removed)++;
	}
	closedir(d);
	return 0;
}

int store_gc(struct store *s, time_t max_age)
{
	time_t cutoff = time(NULL) - max_age;
	int removed = 0, r = 0;
	int dfd = fcntl(s->fd, F_DUPFD_CLOEXEC, 0);
	if (dfd < 0)
		return -errno;
	DIR *d = fdopendir(dfd); /* takes dfd */
	if (!d) {
		r = -errno;
		close(dfd);
		return r;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		int sub = openat(s->fd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0)
			continue;
		r = gc_sub(sub, cutoff, &removed);
		close(sub);
		if (r < 0)
			break;
	}
	closedir(d);
	return r < 0 ? r : removed;
}
