/*
 * setup: see setup.h.
 */
#define _GNU_SOURCE
#include "setup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "hash.h"
#include "http.h"
#include "links.h"
#include "log.h"
#include "path.h"
#include "proto.h"
#include "qstore.h"
#include "queue.h"
#include "record.h"
#include "token.h"
#include "uploader.h"

/* Program name for messages; set once in main() (frozen configuration). */
static const char *setup_prog = "mirrorfs";

int setup_parse_opt(const char *prog, struct setup_opts *o, int argc, char **argv, int *i)
{
	static const char *const names[] = { "--server", "--state-dir", "--token-file",
					      "--cacert", "--log-level" };
	const char *a = argv[*i], *val = *i + 1 < argc ? argv[*i + 1] : NULL;
	size_t k = 0, n = sizeof(names) / sizeof(names[0]);
	while (k < n && strcmp(a, names[k]) != 0)
		k++;
	if (k == n || !val)
		return 0;
	const char **slot[] = { &o->server, &o->state_dir, &o->token_file, &o->cacert, NULL };
	if (slot[k]) {
		*slot[k] = val;
	} else if ((o->level = log_level_parse(val)) < 0) {
		fprintf(stderr, "%s: invalid log level '%s'\n", prog, val);
		return -EINVAL;
	}
	(*i)++;
	return 1;
}

void setup_init(struct mirror *m, const char *prog)
{
	memset(m, 0, sizeof(*m));
	m->backing_fd = -1;
	m->lock_fd = -1;
	setup_prog = prog;
}

/* realpath of a folder that must exist. Returns a new string or NULL
 * after printing why. */
char *setup_existing_dir(const char *what, const char *p)
{
	struct stat st;
	if (stat(p, &st) < 0) {
		fprintf(stderr, "%s: %s '%s': %s\n", setup_prog, what, p, strerror(errno));
		return NULL;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "%s: %s '%s' is not a folder\n", setup_prog, what, p);
		return NULL;
	}
	char *r = realpath(p, NULL);
	if (!r)
		fprintf(stderr, "%s: %s '%s': %s\n", setup_prog, what, p, strerror(errno));
	return r;
}

/* mkdir -p with mode 0700 for the parts we create. */
static int mkdirs(const char *p)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s", p) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	for (char *s = tmp + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* p made absolute and normalised without touching the filesystem ("." and
 * ".." resolved lexically), so it can be checked before it is created.
 * Returns a new string or NULL. */
static char *lexical_abs(const char *p)
{
	char cwd[PATH_MAX], in[2 * PATH_MAX + 2], *out;
	size_t n = 0;
	if (p[0] == '/')
		snprintf(in, sizeof(in), "%s", p);
	else if (getcwd(cwd, sizeof(cwd)))
		snprintf(in, sizeof(in), "%s/%s", cwd, p);
	else
		return NULL;
	out = malloc(strlen(in) + 2);
	if (!out)
		return NULL;
	for (char *next, *c = in; c; c = next) {
		next = strchr(c, '/');
		if (next)
			*next++ = '\0';
		if (*c == '\0' || strcmp(c, ".") == 0)
			continue;
		if (strcmp(c, "..") == 0) {
			while (n > 0 && out[n - 1] != '/')
				n--;
			if (n > 0)
				n--;
			continue;
		}
		out[n++] = '/';
		size_t l = strlen(c);
		memcpy(out + n, c, l);
		n += l;
	}
	if (n == 0)
		out[n++] = '/';
	out[n] = '\0';
	return out;
}

char *setup_default_state_dir(const char *backing)
{
	char base[PATH_MAX], out[PATH_MAX];
	const char *x = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
	struct hash_id id;
	char hex[HASH_HEX_LEN + 1];
	if (x && x[0] == '/')
		snprintf(base, sizeof(base), "%s/mirrorfs", x);
	else if (home && home[0] == '/')
		snprintf(base, sizeof(base), "%s/.local/state/mirrorfs", home);
	else
		snprintf(base, sizeof(base), "/var/lib/mirrorfs");
	hash_buf(backing, strlen(backing), &id);
	hash_to_hex(&id, hex);
	hex[16] = '\0';
	if (snprintf(out, sizeof(out), "%s/%s", base, hex) >= (int)sizeof(out))
		return NULL;
	return strdup(out);
}

/* The client id: random, kept in the state folder. */
static int load_client_id(const char *dir, char out[33])
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/client-id", dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, out, 32);
		close(fd);
		if (n == 32) {
			out[32] = '\0';
			return 0;
		}
	}
	unsigned char rnd[16];
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(out, 33, rnd, sizeof(rnd));
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s/client-id.tmp", dir);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int ok = write(fd, out, 32) == 32 && fsync(fd) == 0;
	close(fd);
	if (!ok || rename(tmp, path) < 0)
		return -EIO;
	return 0;
}

/* Ask the server who it is. 0: a mirrord answered; -EPROTO: something
 * else answered, or TLS failed; -EACCES: it refused the token;
 * -EKEYREJECTED: its certificate cannot be trusted; other negative:
 * unreachable (not fatal). */
static int probe_server(const struct mirror *m, char *why, size_t len)
{
	struct http h;
	struct buf resp;
	long status = 0;
	int r = http_init(&h, m->server, m->client_id);
	if (r < 0)
		return r;
	if ((r = http_set_auth(&h, m->token, m->cacert)) < 0) {
		http_release(&h);
		return r;
	}
	h.timeout_s = 5;
	buf_init(&resp, 65536);
	r = http_request(&h, "GET", "/v1/ping", NULL, 0, 0, &resp, &status);
	if (r < 0) {
		snprintf(why, len, "%s", h.err[0] ? h.err : strerror(-r));
	} else {
		cJSON *j = cJSON_ParseWithLength(resp.data ? resp.data : "", resp.len);
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "version");
		if (status != 200 || !cJSON_IsNumber(v)) {
			snprintf(why, len, "answered %ld but is not a mirrord server", status);
			r = -EPROTO;
		} else if ((int)v->valuedouble != PROTO_VERSION) {
			snprintf(why, len, "speaks protocol %d, this client %d", (int)v->valuedouble,
				 PROTO_VERSION);
			r = -EPROTO;
		}
		cJSON_Delete(j);
	}
	buf_release(&resp);
	http_release(&h);
	return r;
}


int setup_mirror(struct mirror *m, const char *state_opt, const char *avoid, const char *server)
{
	char why[512];
	int r = 0;

	m->state_dir = state_opt ? lexical_abs(state_opt) : setup_default_state_dir(m->backing);
	for (int pass = 0; pass < 2; pass++) {
		/* Checked before creating it, and again once symlinks are resolved. */
		if (m->state_dir && (path_is_under(m->state_dir + 1, m->backing + 1) ||
				     (avoid && path_is_under(m->state_dir + 1, avoid + 1)))) {
			fprintf(stderr, "%s: the state folder '%s' must be outside %s\n", setup_prog,
				m->state_dir, avoid ? "BACKING and MOUNTPOINT" : "the mirrored folder");
			return -1;
		}
		if (pass == 1)
			break;
		if (!m->state_dir || (r = mkdirs(m->state_dir)) < 0) {
			fprintf(stderr, "%s: cannot create state folder '%s': %s\n", setup_prog,
				m->state_dir ? m->state_dir : "?",
				m->state_dir ? strerror(-r) : "out of memory");
			return -1;
		}
		char *sd = realpath(m->state_dir, NULL);
		if (!sd) {
			fprintf(stderr, "%s: state folder '%s': %s\n", setup_prog, m->state_dir,
				strerror(errno));
			return -1;
		}
		free(m->state_dir);
		m->state_dir = sd;
	}
	char lockpath[PATH_MAX];
	snprintf(lockpath, sizeof(lockpath), "%s/lock", m->state_dir);
	m->lock_fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (m->lock_fd < 0 || flock(m->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		fprintf(stderr, "%s: state folder '%s' is in use by another client\n", setup_prog,
			m->state_dir);
		return -1;
	}
	if ((r = load_client_id(m->state_dir, m->client_id)) < 0) {
		fprintf(stderr, "%s: cannot keep a client id in '%s': %s\n", setup_prog,
			m->state_dir, strerror(-r));
		return -1;
	}
	if (!(m->server = strdup(server)))
		return -1;
	if (m->token_file) {
		char token[TOKEN_MAX_LEN + 1];
		int loose = 0;
		r = token_read(m->token_file, token, &loose);
		if (r < 0) {
			fprintf(stderr, "%s: token file '%s': %s\n", setup_prog, m->token_file,
				r == -EINVAL ? "not a token file (one line of 16 to 256 printable characters)" :
				r == -EFBIG  ? "too long for a token file" :
					       strerror(-r));
			return -1;
		}
		if (loose)
			fprintf(stderr, "%s: warning: token file '%s' can be read by others: chmod 600 it\n",
				setup_prog, m->token_file);
		m->token = strdup(token);
		sodium_memzero(token, sizeof(token));
		if (!m->token)
			return -1;
	}
	r = probe_server(m, why, sizeof(why));
	if (r == -EACCES) {
		fprintf(stderr, "%s: server '%s' %s\n", setup_prog, m->server,
			m->token ? "refused the token: check --token-file against the server's" :
				   "requires a token: give --token-file (see docs/SECURITY.md)");
		return -1;
	} else if (r == -EKEYREJECTED) {
		fprintf(stderr, "%s: server '%s' cannot be trusted: %s%s\n", setup_prog, m->server,
			why, m->cacert ? "" : " (a private CA? give it with --cacert)");
		return -1;
	} else if (r == -EPROTO) {
		fprintf(stderr, "%s: server '%s' %s\n", setup_prog, m->server, why);
		return -1;
	} else if (r < 0) {
		fprintf(stderr,
			"%s: warning: server '%s' is unreachable (%s); changes are kept and sent once it answers\n",
			setup_prog, m->server, why);
	}
	m->backing_fd = open(m->backing, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (m->backing_fd < 0) {
		fprintf(stderr, "%s: '%s': %s\n", setup_prog, m->backing, strerror(errno));
		return -1;
	}
	pthread_mutex_init(&m->stats_lock, NULL);
	m->q = queue_new();
	m->links = links_new();
	if (!m->q || !m->links)
		return -1;
	m->known = record_known_new(); /* NULL: each record inserts at once */
	ofiles_init(&m->ofiles, m->q);
	if ((r = qstore_open(m->state_dir, &m->qs, why, sizeof(why))) < 0) {
		fprintf(stderr, "%s: cannot open the queue in '%s': %s\n", setup_prog,
			m->state_dir, why);
		return -1;
	}
	if ((r = qstore_load(m->qs, m->q)) < 0) {
		fprintf(stderr, "%s: cannot read the saved queue in '%s': %s\n", setup_prog,
			m->state_dir, strerror(-r));
		return -1;
	}
	if (r > 0)
		log_info("resuming %d changes saved by the previous session", r);
	/* BACKING may have changed while nothing watched it, and DIR behind
	 * mirrord's back: compare the whole tree first. */
	if (queue_sync(m->q, "", QF_TREE) < 0)
		return -1;
	return 0;
}

int setup_start(struct mirror *m)
{
	if (m->qs && qstore_start(m->qs) < 0)
		log_error("cannot start the queue writer: changes are not saved");
	m->up = uploader_start(m);
	if (!m->up) {
		log_error("cannot start the uploader thread: changes stay queued");
		return -1;
	}
	return 0;
}

void setup_stop(struct mirror *m, int drain_ms)
{
	uploader_stop(m->up, drain_ms);
	m->up = NULL;
	qstore_close(m->qs); /* after the uploader: its last results are saved */
	m->qs = NULL;
}

void setup_release(struct mirror *m)
{
	setup_stop(m, 0);
	if (m->backing_fd >= 0)
		close(m->backing_fd);
	if (m->q) {
		ofiles_release(&m->ofiles);
		queue_free(m->q);
		pthread_mutex_destroy(&m->stats_lock);
	}
	links_free(m->links);
	record_known_free(m->known); /* after setup_stop: every record is closed */
	m->known = NULL;
	free(m->backing);
	free(m->mountpoint);
	free(m->server);
	free(m->token_file);
	free(m->cacert);
	if (m->token) {
		sodium_memzero(m->token, strlen(m->token));
		free(m->token);
	}
	free(m->state_dir);
	if (m->lock_fd >= 0)
		close(m->lock_fd);
	m->backing_fd = m->lock_fd = -1;
	m->q = NULL;
	m->links = NULL;
	m->backing = m->mountpoint = m->server = m->state_dir = NULL;
	m->token_file = m->cacert = m->token = NULL;
}

/* realpath of a file that must be a readable regular file. Returns a new
 * string or NULL after printing why. */
static char *existing_file(const char *what, const char *p)
{
	struct stat st;
	char *r = NULL;
	if (stat(p, &st) < 0 || !(r = realpath(p, NULL))) {
		fprintf(stderr, "%s: %s '%s': %s\n", setup_prog, what, p, strerror(errno));
		return NULL;
	}
	if (!S_ISREG(st.st_mode) || access(r, R_OK) < 0) {
		fprintf(stderr, "%s: %s '%s': %s\n", setup_prog, what, p,
			S_ISREG(st.st_mode) ? strerror(errno) : "not a regular file");
		free(r);
		return NULL;
	}
	return r;
}

int setup_set_access(struct mirror *m, const char *token_file, const char *cacert)
{
	if (token_file && !(m->token_file = existing_file("token file", token_file)))
		return -1;
	if (cacert && !(m->cacert = existing_file("CA file (--cacert)", cacert)))
		return -1;
	return 0;
}
