/*
 * mirrorfs: mount a mirrored passthrough of BACKING at MOUNTPOINT, or talk
 * to a running one (status, sync). Option parsing, validation of the user's
 * input (every mistake gets a clear message before anything is mounted),
 * the state folder, and the FUSE session's lifetime.
 */
#define _GNU_SOURCE
#include <dirent.h>
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

#include "fs.h"
#include "hash.h"
#include "http.h"
#include "links.h"
#include "log.h"
#include "mirror.h"
#include "path.h"
#include "proto.h"
#include "qstore.h"
#include "queue.h"
#include "status.h"

#define MIRRORFS_VERSION "0.1.0"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mirrorfs BACKING MOUNTPOINT --server URL [options]\n"
		"       mirrorfs status MOUNTPOINT [--json]\n"
		"       mirrorfs sync MOUNTPOINT [--timeout SECONDS]\n"
		"\n"
		"Mounts a passthrough of the folder BACKING at MOUNTPOINT and mirrors every\n"
		"change made through it to the mirrord server at URL. Stop with\n"
		"'fusermount3 -u MOUNTPOINT'.\n"
		"\n"
		"options:\n"
		"  --server URL         mirrord's address, http://HOST:PORT (-o server=URL)\n"
		"  --state-dir DIR      where the client keeps its state (-o state_dir=DIR)\n"
		"                       default: $XDG_STATE_HOME/mirrorfs/<id of BACKING>\n"
		"  --log-level LEVEL    error, warn, info (default) or debug (-o log_level=L)\n"
		"  -f                   stay in the foreground, log to stderr\n"
		"  -d                   FUSE debug output (implies -f)\n"
		"  -s                   single-threaded FUSE loop\n"
		"  -o OPT[,OPT...]      FUSE mount options (allow_other, ...)\n"
		"  -h, --help           this text\n"
		"  -V, --version        version\n");
}

struct opts {
	const char *backing, *mountpoint, *server, *state_dir;
	int foreground, debug, single, level;
	char fuse_o[4096]; /* FUSE -o options that are not ours */
};

/* Split a -o list: ours go to o, the rest to o->fuse_o. */
static int parse_o(struct opts *o, char *list)
{
	for (char *next, *t = list; t; t = next) {
		next = strchr(t, ',');
		if (next)
			*next++ = '\0';
		if (*t == '\0')
			continue;
		if (strncmp(t, "server=", 7) == 0) {
			o->server = t + 7;
		} else if (strncmp(t, "state_dir=", 10) == 0) {
			o->state_dir = t + 10;
		} else if (strncmp(t, "log_level=", 10) == 0) {
			if ((o->level = log_level_parse(t + 10)) < 0) {
				fprintf(stderr, "mirrorfs: invalid log level '%s'\n", t + 10);
				return -EINVAL;
			}
		} else {
			size_t n = strlen(o->fuse_o);
			if (n + strlen(t) + 2 >= sizeof(o->fuse_o))
				return -E2BIG;
			snprintf(o->fuse_o + n, sizeof(o->fuse_o) - n, "%s%s", n ? "," : "", t);
		}
	}
	return 0;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->level = LOG_LVL_INFO;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			exit(0);
		} else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
			printf("mirrorfs %s\n", MIRRORFS_VERSION);
			exit(0);
		} else if (strcmp(a, "-f") == 0) {
			o->foreground = 1;
		} else if (strcmp(a, "-d") == 0) {
			o->debug = o->foreground = 1;
		} else if (strcmp(a, "-s") == 0) {
			o->single = 1;
		} else if (strcmp(a, "-o") == 0 && val) {
			char *copy = strdup(val);
			if (!copy || parse_o(o, copy) < 0)
				return -EINVAL;
			i++; /* copy is kept: options point into it */
		} else if (strcmp(a, "--server") == 0 && val) {
			o->server = val;
			i++;
		} else if (strcmp(a, "--state-dir") == 0 && val) {
			o->state_dir = val;
			i++;
		} else if (strcmp(a, "--log-level") == 0 && val) {
			if ((o->level = log_level_parse(val)) < 0) {
				fprintf(stderr, "mirrorfs: invalid log level '%s'\n", val);
				return -EINVAL;
			}
			i++;
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "mirrorfs: unknown or incomplete option '%s'\n", a);
			return -EINVAL;
		} else if (!o->backing) {
			o->backing = a;
		} else if (!o->mountpoint) {
			o->mountpoint = a;
		} else {
			fprintf(stderr, "mirrorfs: unexpected argument '%s'\n", a);
			return -EINVAL;
		}
	}
	if (!o->backing || !o->mountpoint) {
		fprintf(stderr, "mirrorfs: BACKING and MOUNTPOINT are required\n");
		return -EINVAL;
	}
	if (!o->server) {
		fprintf(stderr, "mirrorfs: --server URL is required\n");
		return -EINVAL;
	}
	return 0;
}

/* realpath of a folder that must exist. Returns a new string or NULL
 * after printing why. */
static char *existing_dir(const char *what, const char *p)
{
	struct stat st;
	if (stat(p, &st) < 0) {
		fprintf(stderr, "mirrorfs: %s '%s': %s\n", what, p, strerror(errno));
		return NULL;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "mirrorfs: %s '%s' is not a folder\n", what, p);
		return NULL;
	}
	char *r = realpath(p, NULL);
	if (!r)
		fprintf(stderr, "mirrorfs: %s '%s': %s\n", what, p, strerror(errno));
	return r;
}

static int is_empty_dir(const char *p)
{
	int fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	struct dirent *de;
	int empty = 1;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			empty = 0;
	closedir(d);
	return empty;
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

static char *default_state_dir(const char *backing)
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
 * else answered; other negative: unreachable (not fatal). */
static int probe_server(const char *url, const char *client_id, char *why, size_t len)
{
	struct http h;
	struct buf resp;
	long status = 0;
	int r = http_init(&h, url, client_id);
	if (r < 0)
		return r;
	h.timeout_s = 5;
	buf_init(&resp, 65536);
	r = http_request(&h, "GET", "/v1/ping", NULL, 0, NULL, 0, &resp, &status);
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

static int mount_main(int argc, char **argv)
{
	struct opts o;
	struct mirror m;
	int ret = 1, lockfd = -1;
	struct fuse *f = NULL;
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	char why[512];

	memset(&m, 0, sizeof(m));
	m.backing_fd = -1;
	if (parse_args(argc, argv, &o) < 0) {
		usage(stderr);
		return 2;
	}
	log_init("mirrorfs", 0, (enum log_level)o.level);
	if (http_url_check(o.server) < 0) {
		fprintf(stderr, "mirrorfs: invalid server URL '%s' (expected http://HOST:PORT)\n",
			o.server);
		return 2;
	}
	if (!(m.backing = existing_dir("BACKING", o.backing)) ||
	    !(m.mountpoint = existing_dir("MOUNTPOINT", o.mountpoint)))
		goto out;
	if (path_is_under(m.mountpoint + 1, m.backing + 1) ||
	    path_is_under(m.backing + 1, m.mountpoint + 1)) {
		fprintf(stderr, "mirrorfs: BACKING '%s' and MOUNTPOINT '%s' must not contain each other\n",
			m.backing, m.mountpoint);
		goto out;
	}
	int empty = is_empty_dir(m.mountpoint);
	if (empty <= 0) {
		fprintf(stderr, "mirrorfs: MOUNTPOINT '%s' %s\n", m.mountpoint,
			empty == 0 ? "is not empty" : strerror(-empty));
		goto out;
	}
	m.state_dir = o.state_dir ? lexical_abs(o.state_dir) : default_state_dir(m.backing);
	int r;
	if (m.state_dir && (path_is_under(m.state_dir + 1, m.backing + 1) ||
			    path_is_under(m.state_dir + 1, m.mountpoint + 1))) {
		fprintf(stderr, "mirrorfs: the state folder '%s' must be outside BACKING and MOUNTPOINT\n",
			m.state_dir);
		goto out;
	}
	if (!m.state_dir || (r = mkdirs(m.state_dir)) < 0) {
		fprintf(stderr, "mirrorfs: cannot create state folder '%s': %s\n",
			m.state_dir ? m.state_dir : "?", m.state_dir ? strerror(-r) : "no memory");
		goto out;
	}
	char *sd = realpath(m.state_dir, NULL);
	if (!sd) {
		fprintf(stderr, "mirrorfs: state folder '%s': %s\n", m.state_dir, strerror(errno));
		goto out;
	}
	free(m.state_dir);
	m.state_dir = sd;
	if (path_is_under(m.state_dir + 1, m.backing + 1) ||
	    path_is_under(m.state_dir + 1, m.mountpoint + 1)) {
		fprintf(stderr, "mirrorfs: the state folder '%s' must be outside BACKING and MOUNTPOINT\n",
			m.state_dir);
		goto out;
	}
	char lockpath[PATH_MAX];
	snprintf(lockpath, sizeof(lockpath), "%s/lock", m.state_dir);
	lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lockfd < 0 || flock(lockfd, LOCK_EX | LOCK_NB) < 0) {
		fprintf(stderr, "mirrorfs: state folder '%s' is in use by another mirrorfs\n",
			m.state_dir);
		goto out;
	}
	if ((r = load_client_id(m.state_dir, m.client_id)) < 0) {
		fprintf(stderr, "mirrorfs: cannot keep a client id in '%s': %s\n", m.state_dir,
			strerror(-r));
		goto out;
	}
	m.server = strdup(o.server);
	r = probe_server(m.server, m.client_id, why, sizeof(why));
	if (r == -EPROTO) {
		fprintf(stderr, "mirrorfs: server '%s' %s\n", m.server, why);
		goto out;
	} else if (r < 0) {
		fprintf(stderr,
			"mirrorfs: warning: server '%s' is unreachable (%s); changes are kept and sent once it answers\n",
			m.server, why);
	}
	m.backing_fd = open(m.backing, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (m.backing_fd < 0) {
		fprintf(stderr, "mirrorfs: BACKING '%s': %s\n", m.backing, strerror(errno));
		goto out;
	}
	pthread_mutex_init(&m.stats_lock, NULL);
	m.q = queue_new();
	m.links = links_new();
	if (!m.q || !m.links)
		goto out;
	ofiles_init(&m.ofiles, m.q);
	if ((r = qstore_open(m.state_dir, &m.qs, why, sizeof(why))) < 0) {
		fprintf(stderr, "mirrorfs: cannot open the queue in '%s': %s\n", m.state_dir, why);
		goto out;
	}
	if ((r = qstore_load(m.qs, m.q)) < 0) {
		fprintf(stderr, "mirrorfs: cannot read the saved queue in '%s': %s\n", m.state_dir,
			strerror(-r));
		goto out;
	}
	if (r > 0)
		log_info("resuming %d changes saved by the previous session", r);
	/* BACKING may have changed while nothing was mounted, and DIR behind
	 * mirrord's back: compare the whole tree first. */
	if (queue_sync(m.q, "", QF_TREE) < 0)
		goto out;

	if (fuse_opt_add_arg(&args, "mirrorfs") < 0 ||
	    (o.fuse_o[0] && (fuse_opt_add_arg(&args, "-o") < 0 ||
			     fuse_opt_add_arg(&args, o.fuse_o) < 0)) ||
	    fuse_opt_add_arg(&args, "-o") < 0 ||
	    fuse_opt_add_arg(&args, "fsname=mirrorfs,subtype=mirrorfs,default_permissions") < 0 ||
	    (o.debug && fuse_opt_add_arg(&args, "-d") < 0))
		goto out;
	f = fuse_new(&args, &fs_ops, sizeof(fs_ops), &m);
	if (!f) {
		fprintf(stderr, "mirrorfs: invalid FUSE options '%s'\n", o.fuse_o);
		goto out;
	}
	if (fuse_mount(f, m.mountpoint) != 0) {
		fprintf(stderr, "mirrorfs: cannot mount on '%s'\n", m.mountpoint);
		fuse_destroy(f);
		f = NULL;
		goto out;
	}
	if (fuse_set_signal_handlers(fuse_get_session(f)) != 0)
		goto unmount;
	if (fuse_daemonize(o.foreground) != 0)
		goto unmount;
	if (!o.foreground)
		log_init("mirrorfs", 1, (enum log_level)o.level);
	log_info("mirroring %s (mounted at %s) to %s", m.backing, m.mountpoint, m.server);
	if (o.single) {
		ret = fuse_loop(f) ? 1 : 0;
	} else {
		struct fuse_loop_config *lc = fuse_loop_cfg_create();
		if (!lc)
			goto unmount;
		fuse_loop_cfg_set_max_threads(lc, 32);
		fuse_loop_cfg_set_clone_fd(lc, 1);
		ret = fuse_loop_mt(f, lc) ? 1 : 0;
		fuse_loop_cfg_destroy(lc);
	}
	fuse_remove_signal_handlers(fuse_get_session(f));
unmount:
	fuse_unmount(f);
	fuse_destroy(f); /* runs fs_destroy: drains and stops the uploader */
	f = NULL;
out:
	fuse_opt_free_args(&args);
	if (m.backing_fd >= 0)
		close(m.backing_fd);
	qstore_close(m.qs); /* only if the FUSE session never ran */
	if (m.q) {
		ofiles_release(&m.ofiles);
		queue_free(m.q);
		pthread_mutex_destroy(&m.stats_lock);
	}
	links_free(m.links);
	free(m.backing);
	free(m.mountpoint);
	free(m.server);
	free(m.state_dir);
	if (lockfd >= 0)
		close(lockfd);
	return ret;
}

int main(int argc, char **argv)
{
	if (hash_init_lib() < 0 || http_global_init() < 0) {
		fprintf(stderr, "mirrorfs: cannot initialise libsodium/libcurl\n");
		return 1;
	}
	if (argc >= 2 && strcmp(argv[1], "status") == 0)
		return status_cmd(argc - 2, argv + 2);
	if (argc >= 2 && strcmp(argv[1], "sync") == 0)
		return sync_cmd(argc - 2, argv + 2);
	return mount_main(argc, argv);
}
