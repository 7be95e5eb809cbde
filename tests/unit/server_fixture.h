/*
 * server_fixture: a throw-away mirrord (DIR, state dir, tmp, store, state
 * db, apply context) in a fresh /tmp folder, for the server_* unit suites.
 *
 * Everything is static (each suite includes its own copy); the fixture
 * struct is the only state. Not thread-safe; one fixture per test.
 */
#ifndef MIRROR_SERVER_FIXTURE_H
#define MIRROR_SERVER_FIXTURE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hash.h"
/* The Makefile has no -Iserver: reach the server headers relatively (their
 * own includes resolve next to them). */
#include "../../server/apply.h"
#include "../../server/resolve.h"
#include "../../server/state.h"
#include "../../server/store.h"
#include "../../server/tmpdir.h"

struct sfx {
	char base[64];   /* /tmp/mirrord-unit.XXXXXX */
	char dir[96];    /* base/dir: DIR */
	char state[96];  /* base/state */
	char out[96];    /* base/outside: a folder outside DIR */
	int rootfd, statefd;
	struct tmpdir tmp;
	struct store store;
	struct state *st;
	struct apply_ctx ax;
	int ax_ok;
};

static __attribute__((unused)) void sfx_teardown(struct sfx *f)
{
	if (f->ax_ok)
		apply_release(&f->ax);
	state_close(f->st);
	store_close(&f->store);
	tmpdir_close(&f->tmp);
	if (f->rootfd >= 0)
		close(f->rootfd);
	if (f->statefd >= 0)
		close(f->statefd);
	if (f->base[0]) {
		/* lift = 1: tests leave read-only folders behind */
		if (resolve_rmtree(AT_FDCWD, f->base, 1) < 0)
			fprintf(stderr, "cannot remove %s\n", f->base);
	}
	memset(f, 0, sizeof(*f));
	f->rootfd = f->statefd = -1;
}

/* Returns 0 or -1 (then everything made so far is gone). lift: see
 * resolve.h. with_state: open the state db (chunk index, replay). */
static __attribute__((unused)) int sfx_setup(struct sfx *f, int lift, int with_state)
{
	char db[128];
	memset(f, 0, sizeof(*f));
	f->rootfd = f->statefd = -1;
	f->tmp.fd = f->store.fd = -1;
	snprintf(f->base, sizeof(f->base), "/tmp/mirrord-unit.XXXXXX");
	if (!mkdtemp(f->base)) {
		f->base[0] = '\0';
		return -1;
	}
	snprintf(f->dir, sizeof(f->dir), "%s/dir", f->base);
	snprintf(f->state, sizeof(f->state), "%s/state", f->base);
	snprintf(f->out, sizeof(f->out), "%s/outside", f->base);
	snprintf(db, sizeof(db), "%s/state.db", f->state);
	if (mkdir(f->dir, 0755) < 0 || mkdir(f->state, 0700) < 0 || mkdir(f->out, 0755) < 0)
		goto fail;
	if ((f->rootfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    (f->statefd = open(f->state, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		goto fail;
	if (tmpdir_open(&f->tmp, f->statefd, lift) < 0 ||
	    store_open(&f->store, f->statefd, &f->tmp) < 0)
		goto fail;
	if (with_state && state_open(db, &f->st) < 0)
		goto fail;
	if (apply_init(&f->ax, f->rootfd, &f->tmp, &f->store, f->st, lift) < 0)
		goto fail;
	f->ax_ok = 1;
	return 0;
fail:
	sfx_teardown(f);
	return -1;
}

/* base/dir/rel or base/outside/rel into out. */
static __attribute__((unused)) const char *sfx_path(const struct sfx *f, const char *rel, char *out,
						    size_t n)
{
	snprintf(out, n, "%s/%s", f->dir, rel);
	return out;
}

/* Write len bytes to path (0644). Returns 0 or -1. */
static __attribute__((unused)) int sfx_write(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, data, len);
	close(fd);
	return n == (ssize_t)len ? 0 : -1;
}

/* Read up to cap bytes of path into out; returns the length or -1. */
static __attribute__((unused)) ssize_t sfx_read(const char *path, void *out, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t have = 0;
	for (;;) {
		ssize_t n = read(fd, (char *)out + have, cap - have);
		if (n <= 0)
			break;
		have += (size_t)n;
		if (have == cap)
			break;
	}
	close(fd);
	return (ssize_t)have;
}

/* Store data as a chunk and describe it in *c. Returns 0 or -1. */
static __attribute__((unused)) int sfx_chunk(struct sfx *f, const void *data, size_t len,
					     struct proto_chunk *c)
{
	hash_buf(data, len, &c->id);
	c->len = (uint32_t)len;
	return store_put(&f->store, &c->id, data, len) < 0 ? -1 : 0;
}

/* Number of entries in base/state/tmp (leftover temporaries). */
static __attribute__((unused)) int sfx_tmp_count(const struct sfx *f)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "%s/tmp", f->state);
	int fd = open(cmd, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int n = 0;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -1;
	}
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static __attribute__((unused)) struct timespec sfx_ts(time_t s, long ns)
{
	struct timespec t = { .tv_sec = s, .tv_nsec = ns };
	return t;
}

static __attribute__((unused)) int sfx_same_time(const struct timespec *a, time_t s, long ns)
{
	return a->tv_sec == s && a->tv_nsec == ns;
}

#endif
