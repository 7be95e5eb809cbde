/*
 * mirrorfs-poll: mirror a folder in place by scanning it (for machines
 * without FUSE), or talk to a running poller (status, sync).
 *
 * Options and validation (every mistake is reported before anything
 * starts), the daemon's lifetime, signals. Life of a poller:
 *   setup_mirror (state folder, lock, queue, full reconciliation queued)
 *   -> control socket bound -> fork (unless -f) -> baseline scan
 *   -> setup_start (uploader) -> scanner and control threads
 *   -> SIGTERM/SIGINT (sigwait in the main thread) -> threads stopped
 *   -> a last scan (what changed since the previous one, unsettled files
 *      included) -> setup_stop(30 s of draining while the server answers).
 * The baseline scan runs before the uploader starts, so that the
 * reconciliation reads BACKING after the snapshot was taken: a change is
 * either seen by the reconciliation or found by a later scan.
 *
 * Signals: SIGTERM and SIGINT are blocked in every thread (they are blocked
 * before the first thread starts) and taken by sigwait(); SIGPIPE is
 * ignored (control clients may go away).
 */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "buf.h"
#include "hash.h"
#include "http.h"
#include "log.h"
#include "mirror.h"
#include "poll_ctl.h"
#include "poll_scan.h"
#include "setup.h"
#include "status.h"

#define POLL_VERSION "0.1.0"
#define PROG "mirrorfs-poll"
#define INTERVAL_MIN_MS 10
#define INTERVAL_MAX_MS (24 * 3600 * 1000)
#define DRAIN_MS 30000
#define STATUS_WAIT_MS 10000

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " DIR --server URL [options]\n"
		"       " PROG " status DIR [--json] [--state-dir S]\n"
		"       " PROG " sync DIR [--timeout SECONDS] [--state-dir S]\n"
		"\n"
		"Mirrors the folder DIR in place to the mirrord server at URL, finding\n"
		"changes by scanning DIR (for machines without FUSE). Stop with SIGTERM.\n"
		"\n"
		"options:\n"
		"  --server URL         mirrord's address, http://HOST:PORT or https://HOST:PORT\n"
		"  --token-file F       send the token in F, a copy of mirrord's\n"
		"  --cacert F           trust the https:// server's certificate if signed by a CA\n"
		"                       in F (PEM), besides the system's\n"
		"  --interval MS        time between scans (default 1000, at least %d)\n"
		"  --state-dir S        where the client keeps its state\n"
		"                       default: $XDG_STATE_HOME/mirrorfs/<id of DIR>\n"
		"  --log-level LEVEL    error, warn, info (default) or debug\n"
		"  -f                   stay in the foreground, log to stderr\n"
		"  -h, --help           this text\n"
		"  -V, --version        version\n",
		INTERVAL_MIN_MS);
}

struct opts {
	struct setup_opts c; /* --server and the other shared options */
	const char *dir;
	int foreground, interval;
};

static int parse_int(const char *s, long lo, long hi, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->c.level = LOG_LVL_INFO;
	o->interval = 1000;
	int r;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			exit(0);
		} else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
			printf(PROG " %s\n", POLL_VERSION);
			exit(0);
		} else if (strcmp(a, "-f") == 0) {
			o->foreground = 1;
		} else if ((r = setup_parse_opt(PROG, &o->c, argc, argv, &i)) != 0) {
			if (r < 0)
				return r;
		} else if (strcmp(a, "--interval") == 0 && val) {
			if (parse_int(val, INTERVAL_MIN_MS, INTERVAL_MAX_MS, &o->interval) < 0) {
				fprintf(stderr, PROG ": invalid interval '%s' (milliseconds, %d to %d)\n",
					val, INTERVAL_MIN_MS, INTERVAL_MAX_MS);
				return -EINVAL;
			}
			i++;
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, PROG ": unknown or incomplete option '%s'\n", a);
			return -EINVAL;
		} else if (!o->dir) {
			o->dir = a;
		} else {
			fprintf(stderr, PROG ": unexpected argument '%s'\n", a);
			return -EINVAL;
		}
	}
	if (!o->dir) {
		fprintf(stderr, PROG ": DIR is required\n");
		return -EINVAL;
	}
	if (!o->c.server) {
		fprintf(stderr, PROG ": --server URL is required\n");
		return -EINVAL;
	}
	return 0;
}

/* ---------------------------------------------------------------- status, sync */

/* The commands' view of a poller: its state folder, found once. */
struct cli {
	const char *state_opt; /* --state-dir, or NULL: the default for DIR */
	char *state;           /* owned, once resolved */
	char *real;            /* owned: realpath of DIR */
};

/* The state folder of the poller of dir. Returns it (owned by the cli) or
 * NULL after printing why. */
static const char *cli_state(const struct status_source *src, const char *dir)
{
	struct cli *c = src->arg;
	if (c->state)
		return c->state;
	if (!(c->real = realpath(dir, NULL))) {
		fprintf(stderr, PROG ": %s: %s\n", dir, strerror(errno));
		return NULL;
	}
	c->state = c->state_opt ? strdup(c->state_opt) : setup_default_state_dir(c->real);
	if (!c->state)
		fprintf(stderr, PROG ": %s: cannot find its state folder: out of memory\n", dir);
	return c->state;
}

/* Ask the poller of dir; prints why on failure. Returns 0 or -1. */
static int cli_ask(const struct status_source *src, const char *dir, const char *req,
		   int timeout_ms, struct buf *out)
{
	const char *state = cli_state(src, dir);
	if (!state)
		return -1;
	int r = poll_ctl_ask(state, req, timeout_ms, out);
	if (r == 0)
		return 0;
	if (r == -ENOENT || r == -ECONNREFUSED || r == -ENOTDIR)
		fprintf(stderr, PROG ": %s: no " PROG " is running for it (no control socket in %s)\n",
			dir, state);
	else if (r == -ENAMETOOLONG)
		fprintf(stderr, PROG ": state folder '%s': path too long for a control socket\n",
			state);
	else if (r == -ETIMEDOUT)
		fprintf(stderr, PROG ": %s: the poller did not answer within %.0f s\n", dir,
			timeout_ms / 1000.0);
	else
		fprintf(stderr, PROG ": %s: control socket in %s: %s\n", dir, state, strerror(-r));
	return -1;
}

static cJSON *sock_read(const struct status_source *src, const char *dir)
{
	struct cli *c = src->arg;
	struct buf b;
	cJSON *j = NULL;
	buf_init(&b, POLL_CTL_ANSWER_MAX);
	if (cli_ask(src, dir, "status\n", STATUS_WAIT_MS, &b) < 0)
		goto out;
	j = cJSON_ParseWithLength(b.data ? b.data : "", b.len);
	const cJSON *bk = cJSON_GetObjectItemCaseSensitive(j, "backing");
	if (!j || !cJSON_IsString(bk)) {
		fprintf(stderr, PROG ": %s: unreadable status\n", dir);
		cJSON_Delete(j);
		j = NULL;
	} else if (strcmp(bk->valuestring, c->real) != 0) {
		/* --state-dir named another poller's folder */
		fprintf(stderr, PROG ": %s: the poller using %s mirrors %s, not this folder\n", dir,
			c->state, bk->valuestring);
		cJSON_Delete(j);
		j = NULL;
	}
out:
	buf_release(&b);
	return j;
}

/* sync's flush: a scan, so that every change made before the call is
 * queued before sync reads last_seq. */
static int sock_flush(const struct status_source *src, const char *dir, double timeout_s)
{
	struct buf b;
	int r = -1;
	buf_init(&b, POLL_CTL_ANSWER_MAX);
	int ms = timeout_s > 0 ? (timeout_s * 1000 > INT_MAX ? INT_MAX : (int)(timeout_s * 1000)) : -1;
	if (cli_ask(src, dir, "scan\n", ms, &b) < 0)
		goto out;
	if (b.len == 3 && memcmp(b.data, "ok\n", 3) == 0) {
		r = 0;
	} else {
		size_t n = b.len;
		while (n > 0 && b.data[n - 1] == '\n')
			n--;
		fprintf(stderr, PROG ": %s: sync: the poller answered '%.*s'\n", dir, (int)n,
			b.data ? b.data : "");
	}
out:
	buf_release(&b);
	return r;
}

/* `status` and `sync`; argv after the command word, plus a --state-dir
 * given before it (state_pre, may be NULL). */
static int cli_main(const char *cmd, int argc, char **argv, const char *state_pre)
{
	struct cli c = { .state_opt = state_pre };
	struct status_source src = {
		.prog = PROG,
		.what = "DIR",
		.extra = " [--state-dir S]",
		.read = sock_read,
		.flush = sock_flush,
		.arg = &c,
	};
	char **rest = calloc((size_t)argc + 1, sizeof(*rest));
	int n = 0, ret;
	if (!rest) {
		fprintf(stderr, PROG ": out of memory\n");
		return 1;
	}
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--state-dir") == 0 && i + 1 < argc)
			c.state_opt = argv[++i];
		else
			rest[n++] = argv[i];
	}
	if (strcmp(cmd, "status") == 0)
		ret = status_cmd_with(&src, n, rest);
	else
		ret = sync_cmd_with(&src, n, rest);
	free(rest);
	free(c.state);
	free(c.real);
	return ret;
}

/* ---------------------------------------------------------------- the poller */

/* Fork into the background. The parent waits until the child reports ready
 * (a byte on the pipe) or dies, and exits 0 or 1. In the child: a new
 * session, "/" as working folder, /dev/null as stdio; returns the pipe's
 * write end (close it when ready, after writing a byte), or -1 after
 * printing why (in the parent, before forking). */
static int daemonize(void)
{
	int p[2];
	if (pipe(p) < 0) {
		fprintf(stderr, PROG ": cannot start in the background: %s\n", strerror(errno));
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, PROG ": cannot start in the background: %s\n", strerror(errno));
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid > 0) {
		char c;
		ssize_t n;
		close(p[1]);
		do
			n = read(p[0], &c, 1);
		while (n < 0 && errno == EINTR);
		if (n != 1)
			fprintf(stderr, PROG ": the poller stopped during start (see the system log)\n");
		_exit(n == 1 ? 0 : 1);
	}
	close(p[0]);
	(void)fcntl(p[1], F_SETFD, FD_CLOEXEC);
	(void)setsid();
	if (chdir("/") < 0) {
		/* paths in use are absolute: not fatal */
	}
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	return p[1];
}

static int poll_main(int argc, char **argv)
{
	struct opts o;
	struct mirror m;
	struct poll_scan_cfg cfg;
	struct poll_scan *scan = NULL;
	struct poll_ctl *ctl = NULL;
	sigset_t sigs;
	int ready = -1, ret = 1, r, sig = 0;

	setup_init(&m, PROG);
	if (parse_args(argc, argv, &o) < 0) {
		usage(stderr);
		return 2;
	}
	log_init(PROG, 0, (enum log_level)o.c.level);
	if (http_url_check(o.c.server) < 0) {
		fprintf(stderr,
			PROG ": invalid server URL '%s' (expected http://HOST:PORT or https://HOST:PORT)\n",
			o.c.server);
		return 2;
	}
	if (!(m.backing = setup_existing_dir("DIR", o.dir)))
		goto out;
	if (setup_set_access(&m, o.c.token_file, o.c.cacert) < 0 ||
	    setup_mirror(&m, o.c.state_dir, NULL, o.c.server) < 0)
		goto out;
	m.keep_missing = 1; /* deletions are the scanner's to report (poll_scan.h) */
	poll_scan_cfg_default(&cfg, o.interval);
	if (!(scan = poll_scan_new(&m, &cfg))) {
		fprintf(stderr, PROG ": out of memory\n");
		goto out;
	}
	if ((r = poll_ctl_open(m.state_dir, &ctl)) < 0) {
		if (r == -ENAMETOOLONG)
			fprintf(stderr,
				PROG ": state folder '%s': path too long for the control socket; choose a shorter --state-dir\n",
				m.state_dir);
		else
			fprintf(stderr, PROG ": cannot create the control socket in '%s': %s\n",
				m.state_dir, strerror(-r));
		goto out;
	}
	signal(SIGPIPE, SIG_IGN);
	if (!o.foreground) {
		if ((ready = daemonize()) < 0)
			goto out;
		log_init(PROG, 1, (enum log_level)o.c.level);
	}
	/* Before the first thread, so that every thread inherits the mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	(void)poll_scan_once(scan, 0); /* the baseline; a failure rebuilds it later */
	if (setup_start(&m) < 0)
		goto out;
	if ((r = poll_scan_start(scan)) < 0 || (r = poll_ctl_start(ctl, &m, scan)) < 0) {
		log_error("cannot start a thread: %s", strerror(-r));
		goto stop;
	}
	log_info("mirroring %s to %s, scanning every %d ms", m.backing, m.server, o.interval);
	log_info("%s", hash_impl_desc());
	if (ready >= 0) {
		ssize_t w = write(ready, "1", 1);
		(void)w;
		close(ready);
		ready = -1;
	}
	while (sigwait(&sigs, &sig) != 0)
		;
	log_info("stopping (signal %d): sending what is queued", sig);
	ret = 0;
stop:
	poll_scan_stop(scan);
	poll_ctl_close(ctl);
	ctl = NULL;
	if (ret == 0)
		(void)poll_scan_once(scan, 1); /* what changed since the last scan */
	setup_stop(&m, DRAIN_MS);
out:
	if (ready >= 0)
		close(ready); /* the parent exits 1 */
	poll_ctl_close(ctl);
	poll_scan_free(scan);
	setup_release(&m);
	return ret;
}

int main(int argc, char **argv)
{
	/* [--state-dir S] status|sync ...: they ask the running client over
	 * its control socket, without libsodium or libcurl. */
	const char *state_pre = NULL;
	int i = 1;
	if (argc > 3 && strcmp(argv[1], "--state-dir") == 0) {
		state_pre = argv[2];
		i = 3;
	}
	if (i < argc && (strcmp(argv[i], "status") == 0 || strcmp(argv[i], "sync") == 0))
		return cli_main(argv[i], argc - i - 1, argv + i + 1, state_pre);
	if (hash_init_lib() < 0 || http_global_init() < 0) {
		fprintf(stderr, PROG ": cannot initialise libsodium/libcurl\n");
		return 1;
	}
	return poll_main(argc, argv);
}
