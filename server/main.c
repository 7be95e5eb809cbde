/*
 * mirrord: the server of mirrorfs. Options, checks of DIR and the state
 * dir, start-up cleaning, the listening socket, and a clean stop on
 * SIGINT/SIGTERM.
 *
 *   mirrord DIR [--listen HOST:PORT] [--token-file F] [--tls-cert C --tls-key K]
 *               [--metrics-public] [--timeout S] [--max-connections N] [--max-per-ip N]
 *               [--state-dir S] [--port-file F] [--log-level error|warn|info|debug]
 *               [--fail-rate N] [--allow-root] [-h|--help]
 *
 * Invariants established here and relied on everywhere:
 * - The state dir (default: .<basename>.mirrord next to DIR) is on DIR's
 *   filesystem (temporaries are renamed into DIR), and neither folder lies
 *   inside the other (the state is unreachable through any mirror path, and
 *   start-up cleaning can never touch DIR).
 * - One mirrord per state dir (an flock on <state>/lock).
 * - Nobody reaches DIR without the token (docs/SECURITY.md): mirrord
 *   serves without one only on a loopback address, and never as root
 *   unless told (--allow-root).
 * - Configuration is frozen before any thread starts; signals are blocked
 *   in every thread and taken synchronously by main with sigtimedwait().
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sodium.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apply.h"
#include "auth.h"
#include "hash.h"
#include "http.h"
#include "log.h"
#include "state.h"
#include "store.h"
#include "tmpdir.h"

#define DEFAULT_LISTEN "127.0.0.1:8750"
#define STORE_MAX_AGE (24 * 3600) /* store chunks older than this are stale */
#define EXIT_USAGE 2
/* A certificate chain or a key in PEM: far below this. */
#define TLS_FILE_MAX (1024 * 1024)

struct options {
	const char *dir;
	const char *listen;
	const char *state_dir;
	const char *port_file;
	int log_level;
	unsigned fail_rate;
	int allow_root;
	const char *token_file;
	const char *tls_cert;
	const char *tls_key;
	int metrics_public;
	unsigned timeout_s;
	unsigned max_connections;
	unsigned max_per_ip;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mirrord DIR [--listen HOST:PORT] [--token-file F] [--tls-cert C --tls-key K]\n"
		"               [--metrics-public] [--timeout S] [--max-connections N] [--max-per-ip N]\n"
		"               [--state-dir S] [--port-file F] [--log-level error|warn|info|debug]\n"
		"               [--fail-rate N] [--allow-root] [-h|--help]\n"
		"\n"
		"Serve the mirrorfs protocol, applying every change under DIR.\n"
		"  --listen HOST:PORT  address to listen on (default " DEFAULT_LISTEN
		"; port 0: any free port)\n"
		"  --token-file F      require the token in F on every request; F is created\n"
		"                      (mode 0600, a random token) if missing. Required unless\n"
		"                      HOST is a loopback address (docs/SECURITY.md)\n"
		"  --tls-cert C        serve HTTPS with the PEM certificate (chain) in C ...\n"
		"  --tls-key K         ... and its PEM private key in K\n"
		"  --metrics-public    GET /metrics without the token\n"
		"  --timeout S         idle limit, and time allowed for a request to arrive\n"
		"                      (default %d)\n"
		"  --max-connections N connections at once (default %d), --max-per-ip N from one\n"
		"                      address (default %d)\n"
		"  --state-dir S       mirrord's own state (default: .NAME.mirrord next to DIR;\n"
		"                      must be on DIR's filesystem, outside DIR)\n"
		"  --port-file F       write the bound port to F once listening\n"
		"  --log-level L       error, warn, info (default) or debug\n"
		"  --fail-rate N       fault injection: answer 1 request in N (on average,\n"
		"                      a fixed pseudo-random pattern) with 503\n"
		"  --allow-root        run even as root (by default mirrord refuses: run it as\n"
		"                      an unprivileged user who owns DIR)\n",
		HTTP_TIMEOUT_SECONDS, HTTP_MAX_CONNECTIONS, HTTP_MAX_PER_IP);
}

/* Print "mirrord: ..." and the usage hint; the caller exits EXIT_USAGE. */
static void bad_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "mirrord: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	usage(stderr);
}

/* A decimal integer 1..max into *out. Returns 0 or -1. */
static int parse_count(const char *arg, unsigned long max, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long n = strtoul(arg, &end, 10);
	if (errno || *end || end == arg || arg[0] == '-' || arg[0] == '+' || n == 0 || n > max)
		return -1;
	*out = (unsigned)n;
	return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "port-file", required_argument, NULL, 'p' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "fail-rate", required_argument, NULL, 'F' },
		{ "allow-root", no_argument, NULL, 'R' },
		{ "token-file", required_argument, NULL, 'T' },
		{ "tls-cert", required_argument, NULL, 'C' },
		{ "tls-key", required_argument, NULL, 'K' },
		{ "metrics-public", no_argument, NULL, 'M' },
		{ "timeout", required_argument, NULL, 't' },
		{ "max-connections", required_argument, NULL, 'N' },
		{ "max-per-ip", required_argument, NULL, 'I' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	memset(o, 0, sizeof(*o));
	o->listen = DEFAULT_LISTEN;
	o->log_level = LOG_LVL_INFO;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (c) {
		case 'l':
			o->listen = optarg;
			break;
		case 's':
			o->state_dir = optarg;
			break;
		case 'p':
			o->port_file = optarg;
			break;
		case 'L':
			if ((o->log_level = log_level_parse(optarg)) < 0) {
				bad_usage("invalid --log-level '%s' (error, warn, info or debug)", optarg);
				return -1;
			}
			break;
		case 'F':
			if (parse_count(optarg, UINT_MAX, &o->fail_rate) < 0) {
				bad_usage("invalid --fail-rate '%s' (a positive integer)", optarg);
				return -1;
			}
			break;
		case 't':
			if (parse_count(optarg, 24 * 3600, &o->timeout_s) < 0) {
				bad_usage("invalid --timeout '%s' (seconds, 1 to 86400)", optarg);
				return -1;
			}
			break;
		case 'N':
			if (parse_count(optarg, 4096, &o->max_connections) < 0) {
				bad_usage("invalid --max-connections '%s' (1 to 4096)", optarg);
				return -1;
			}
			break;
		case 'I':
			if (parse_count(optarg, 4096, &o->max_per_ip) < 0) {
				bad_usage("invalid --max-per-ip '%s' (1 to 4096)", optarg);
				return -1;
			}
			break;
		case 'T':
			o->token_file = optarg;
			break;
		case 'C':
			o->tls_cert = optarg;
			break;
		case 'K':
			o->tls_key = optarg;
			break;
		case 'M':
			o->metrics_public = 1;
			break;
		case 'R':
			o->allow_root = 1;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case ':':
			bad_usage("option %s needs a value", argv[optind - 1]);
			return -1;
		default:
			bad_usage("unknown option '%s'", argv[optind - 1]);
			return -1;
		}
	}
	if (optind >= argc) {
		bad_usage("%s", "missing DIR");
		return -1;
	}
	if (optind + 1 < argc) {
		bad_usage("unexpected argument '%s'", argv[optind + 1]);
		return -1;
	}
	o->dir = argv[optind];
	if (!o->tls_cert != !o->tls_key) {
		bad_usage("%s", "--tls-cert and --tls-key go together");
		return -1;
	}
	return 0;
}

/* Split HOST:PORT ([v6]:PORT too) and open a listening socket. Returns the
 * fd or -1 after printing why. */
static int listen_on(const char *spec, int *usage_err)
{
	char host[256];
	const char *colon, *h = spec;
	size_t hlen;

	*usage_err = 1;
	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');
		if (!close || close[1] != ':') {
			fprintf(stderr, "mirrord: invalid --listen '%s' (expected HOST:PORT)\n", spec);
			return -1;
		}
		h = spec + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(spec, ':');
		if (!colon) {
			fprintf(stderr, "mirrord: invalid --listen '%s' (expected HOST:PORT)\n", spec);
			return -1;
		}
		hlen = (size_t)(colon - spec);
	}
	if (hlen == 0 || hlen >= sizeof(host)) {
		fprintf(stderr, "mirrord: invalid host in --listen '%s'\n", spec);
		return -1;
	}
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	const char *port = colon + 1;
	char *end;
	errno = 0;
	unsigned long pn = strtoul(port, &end, 10);
	if (!*port || *end || errno || pn > 65535 || port[0] == '-' || port[0] == '+') {
		fprintf(stderr, "mirrord: invalid port '%s' in --listen '%s' (0..65535)\n", port, spec);
		return -1;
	}

	struct addrinfo hints, *res = NULL, *ai;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	int gr = getaddrinfo(host, port, &hints, &res);
	if (gr != 0) {
		fprintf(stderr, "mirrord: cannot resolve '%s' in --listen '%s': %s\n", host, spec,
			gai_strerror(gr));
		return -1;
	}
	*usage_err = 0;
	int fd = -1, err = 0;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			err = errno;
			continue;
		}
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 128) == 0)
			break;
		err = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		fprintf(stderr, "mirrord: cannot listen on %s: %s\n", spec, strerror(err));
	return fd;
}

static int bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -1;
}

/* Write "PORT\n" to path atomically (temporary + rename). */
static int write_port_file(const char *path, int port)
{
	char tmp[PATH_MAX], text[16];
	int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -ENAMETOOLONG;
	int len = snprintf(text, sizeof(text), "%d\n", port);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	/* Readable by the scripts that wait for it, whatever our umask. */
	int r = fchmod(fd, 0644) < 0 ? -errno : 0;
	if (r == 0 && write(fd, text, (size_t)len) != len)
		r = -EIO;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
	return r;
}

/* 1 if a equals b or lies beneath it (both canonical absolute paths). */
static int abs_under(const char *a, const char *b)
{
	size_t n = strlen(b);
	if (n == 1) /* "/" */
		return 1;
	return strncmp(a, b, n) == 0 && (a[n] == '\0' || a[n] == '/');
}

/* Make and check the state dir; returns its O_RDONLY fd or -1 after
 * printing why. real_dir: canonical DIR. */
static int open_state_dir(const char *opt, const char *real_dir, const struct stat *dir_st,
			  char *state_path, size_t state_size)
{
	char real_state[PATH_MAX];
	struct stat st;

	if (opt) {
		if (snprintf(state_path, state_size, "%s", opt) >= (int)state_size) {
			fprintf(stderr, "mirrord: --state-dir too long\n");
			return -1;
		}
	} else {
		const char *slash = strrchr(real_dir, '/');
		if (!slash || slash[1] == '\0') {
			fprintf(stderr, "mirrord: DIR is '/': give --state-dir\n");
			return -1;
		}
		int plen = (int)(slash - real_dir);
		if (snprintf(state_path, state_size, "%.*s/.%s.mirrord", plen, real_dir, slash + 1) >=
		    (int)state_size) {
			fprintf(stderr, "mirrord: state dir path too long\n");
			return -1;
		}
	}
	/* Refuse a state dir inside DIR (or around it) before creating
	 * anything: judge by the canonical parent and the last name. */
	{
		char parent[PATH_MAX], canon[PATH_MAX];
		size_t n = strlen(state_path);
		while (n > 1 && state_path[n - 1] == '/')
			state_path[--n] = '\0';
		const char *slash = strrchr(state_path, '/');
		const char *name = slash ? slash + 1 : state_path;
		if (slash == state_path)
			snprintf(parent, sizeof(parent), "/");
		else if (slash)
			snprintf(parent, sizeof(parent), "%.*s", (int)(slash - state_path), state_path);
		else
			snprintf(parent, sizeof(parent), ".");
		if (!realpath(parent, canon)) {
			fprintf(stderr, "mirrord: state dir %s: parent folder %s: %s\n", state_path,
				parent, strerror(errno));
			return -1;
		}
		size_t cl = strlen(canon);
		if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0 &&
		    snprintf(canon + cl, sizeof(canon) - cl, "%s%s", cl > 1 ? "/" : "", name) >=
			    (int)(sizeof(canon) - cl)) {
			fprintf(stderr, "mirrord: state dir path too long\n");
			return -1;
		}
		if (abs_under(canon, real_dir) || abs_under(real_dir, canon)) {
			fprintf(stderr, "mirrord: state dir %s and DIR %s must not contain each other\n",
				state_path, real_dir);
			return -1;
		}
	}
	if (mkdir(state_path, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "mirrord: cannot create state dir %s: %s\n", state_path,
			strerror(errno));
		return -1;
	}
	int fd = open(state_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "mirrord: cannot open state dir %s: %s\n", state_path,
			errno == ENOTDIR || errno == ELOOP ? "not a folder" : strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !realpath(state_path, real_state)) {
		fprintf(stderr, "mirrord: cannot check state dir %s: %s\n", state_path,
			strerror(errno));
		goto fail;
	}
	if (st.st_dev != dir_st->st_dev) {
		fprintf(stderr,
			"mirrord: state dir %s is on another filesystem than DIR %s "
			"(temporaries are renamed into DIR; use --state-dir on DIR's filesystem)\n",
			state_path, real_dir);
		goto fail;
	}
	if (abs_under(real_state, real_dir) || abs_under(real_dir, real_state)) {
		fprintf(stderr, "mirrord: state dir %s and DIR %s must not contain each other\n",
			state_path, real_dir);
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

/* 1 if the listening socket fd is bound to a loopback address (127/8,
 * ::1, or ::ffff:127/104): only this machine can reach it. */
static int bound_to_loopback(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return 0;
	if (ss.ss_family == AF_INET)
		return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
	if (ss.ss_family == AF_INET6) {
		const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
		return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return 0;
}

/* Read a small text file (a PEM certificate or key) into a new
 * NUL-terminated string (caller frees with free_secret). Returns NULL
 * after printing why. */
static char *read_pem(const char *what, const char *path)
{
	char *text = NULL;
	size_t have = 0;
	int err = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		err = errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > TLS_FILE_MAX) {
		fprintf(stderr, "mirrord: %s %s: %s\n", what, path,
			S_ISREG(st.st_mode) ? "too large for a PEM file" : "not a regular file");
		goto out;
	}
	if (!(text = malloc((size_t)st.st_size + 1))) {
		err = ENOMEM;
		goto out;
	}
	while (have < (size_t)st.st_size) {
		ssize_t k = read(fd, text + have, (size_t)st.st_size - have);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			err = k < 0 ? errno : EIO;
			goto out;
		}
		have += (size_t)k;
	}
	text[have] = '\0';
	if (!strstr(text, "-----BEGIN ")) {
		fprintf(stderr, "mirrord: %s %s: not a PEM file\n", what, path);
		goto out;
	}
	close(fd);
	return text;
out:
	if (err)
		fprintf(stderr, "mirrord: %s %s: %s\n", what, path, strerror(err));
	if (fd >= 0)
		close(fd);
	if (text) {
		sodium_memzero(text, have);
		free(text);
	}
	return NULL;
}

/* Wipe and free what read_pem() returned. Accepts NULL. */
static void free_secret(char *text)
{
	if (!text)
		return;
	sodium_memzero(text, strlen(text));
	free(text);
}

/* Let the manifest walk and the tree removal hold one fd per folder level
 * of deep trees: raise the soft fd limit to the hard one. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	struct options o;
	char real_dir[PATH_MAX], state_path[PATH_MAX], db_path[PATH_MAX + 16];
	struct stat dir_st;
	struct tmpdir tmp = { .fd = -1 };
	struct store store = { .fd = -1 };
	struct state *state = NULL;
	struct apply_ctx apply;
	struct http_server server = { .daemon = NULL };
	struct auth auth;
	char *tls_cert = NULL, *tls_key = NULL;
	int rootfd = -1, statefd = -1, lockfd = -1, listen_fd = -1, apply_ok = 0;
	int rc = 1, r, usage_err;
	sigset_t sigs;

	log_init("mirrord", 0, LOG_LVL_INFO);
	if (parse_options(argc, argv, &o) < 0)
		return EXIT_USAGE;
	log_init("mirrord", 0, (enum log_level)o.log_level);
	/* A root mirrord turns any mistake (its own or a client's) into a
	 * change anywhere on the machine, and its files end up owned by root:
	 * refuse unless asked for, before anything is created. */
	if (geteuid() == 0 && !o.allow_root) {
		fprintf(stderr, "mirrord: refusing to run as root: run it as the unprivileged "
				"user who owns DIR, or pass --allow-root\n");
		return EXIT_USAGE;
	}
	umask(077);
	raise_fd_limit();
	signal(SIGPIPE, SIG_IGN);
	if (hash_init_lib() < 0) {
		fprintf(stderr, "mirrord: cannot initialise libsodium\n");
		return 1;
	}

	rootfd = open(o.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0 || fstat(rootfd, &dir_st) < 0 || !realpath(o.dir, real_dir)) {
		fprintf(stderr, "mirrord: DIR %s: %s\n", o.dir,
			errno == ENOTDIR ? "not a folder" : strerror(errno));
		if (rootfd >= 0)
			close(rootfd);
		return EXIT_USAGE;
	}
	if (o.tls_cert && (!(tls_cert = read_pem("--tls-cert", o.tls_cert)) ||
			   !(tls_key = read_pem("--tls-key", o.tls_key)))) {
		rc = EXIT_USAGE;
		goto out;
	}
	/* Bind first: a bad or busy address fails before anything is created. */
	listen_fd = listen_on(o.listen, &usage_err);
	if (listen_fd < 0) {
		rc = usage_err ? EXIT_USAGE : 1;
		goto out;
	}
	int port = bound_port(listen_fd);
	/* Without a token anyone who can connect may change DIR: acceptable
	 * only when "anyone" means the users of this machine. */
	if (!o.token_file && !bound_to_loopback(listen_fd)) {
		fprintf(stderr,
			"mirrord: refusing to serve %s without a token: anyone who can reach it could "
			"change DIR. Give --token-file F (created if missing; see docs/SECURITY.md), "
			"or listen on a loopback address\n",
			o.listen);
		rc = EXIT_USAGE;
		goto out;
	}
	auth_init_open(&auth);
	if (o.token_file) {
		char why[PATH_MAX + 128];
		int created, loose;
		if ((r = auth_init_file(&auth, o.token_file, &created, &loose, why, sizeof(why))) < 0) {
			fprintf(stderr, "mirrord: %s\n", why);
			rc = EXIT_USAGE;
			goto out;
		}
		if (created)
			log_info("created token file %s: copy it to each client (see docs/SECURITY.md)",
				 o.token_file);
		if (loose)
			log_warn("token file %s can be read by others: chmod 600 it", o.token_file);
	}
	if (!tls_cert && !bound_to_loopback(listen_fd))
		log_warn("serving plain HTTP on %s: the token and every file cross the network "
			 "unencrypted; use --tls-cert and --tls-key (docs/SECURITY.md)",
			 o.listen);
	statefd = open_state_dir(o.state_dir, real_dir, &dir_st, state_path, sizeof(state_path));
	if (statefd < 0) {
		rc = EXIT_USAGE;
		goto out;
	}
	lockfd = openat(statefd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (lockfd < 0 || flock(lockfd, LOCK_EX | LOCK_NB) < 0) {
		fprintf(stderr, "mirrord: state dir %s: %s\n", state_path,
			errno == EWOULDBLOCK ? "in use by another mirrord" : strerror(errno));
		goto out;
	}

	int lift = geteuid() != 0;
	if ((r = tmpdir_open(&tmp, statefd, lift)) < 0) {
		fprintf(stderr, "mirrord: cannot prepare %s/tmp: %s\n", state_path, strerror(-r));
		goto out;
	}
	if ((r = store_open(&store, statefd, &tmp)) < 0) {
		fprintf(stderr, "mirrord: cannot open chunk store in %s: %s\n", state_path,
			strerror(-r));
		goto out;
	}
	if ((r = store_gc(&store, STORE_MAX_AGE)) > 0)
		log_info("removed %d stale chunks from the store", r);
	snprintf(db_path, sizeof(db_path), "%s/state.db", state_path);
	if ((r = state_open(db_path, &state)) < 0) {
		fprintf(stderr, "mirrord: cannot open %s: %s\n", db_path, strerror(-r));
		goto out;
	}
	if ((r = apply_init(&apply, rootfd, &tmp, &store, state, lift)) < 0) {
		fprintf(stderr, "mirrord: %s\n", strerror(-r));
		goto out;
	}
	apply_ok = 1;


	/* Block the stop signals before any thread exists, so that every
	 * thread inherits the mask and only sigtimedwait() below takes them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	struct http_cfg cfg = {
		.rootfd = rootfd,
		.apply = &apply,
		.store = &store,
		.state = state,
		.auth = &auth,
		.metrics_public = o.metrics_public,
		.fail_rate = o.fail_rate,
		.timeout_s = o.timeout_s,
		.max_connections = o.max_connections,
		.max_per_ip = o.max_per_ip,
		.tls_cert = tls_cert,
		.tls_key = tls_key,
	};
	r = http_start(&server, listen_fd, &cfg);
	if (r == -ENOTSUP) {
		fprintf(stderr, "mirrord: this libmicrohttpd was built without TLS: cannot serve "
				"HTTPS (--tls-cert)\n");
		rc = EXIT_USAGE;
		goto out;
	} else if (r < 0) {
		fprintf(stderr, "mirrord: cannot start the %s server on %s%s\n",
			tls_cert ? "HTTPS" : "HTTP", o.listen,
			tls_cert ? " (is the key the certificate's? see the error above)" : "");
		goto out;
	}
	listen_fd = -1; /* the server owns it now */
	if (o.port_file && (r = write_port_file(o.port_file, port)) < 0) {
		fprintf(stderr, "mirrord: cannot write port file %s: %s\n", o.port_file,
			strerror(-r));
		goto out;
	}
	log_info("serving %s on %s://%s (port %d), %s, state in %s%s", real_dir,
		 tls_cert ? "https" : "http", o.listen, port,
		 auth.enabled ? "token required" : "no token (loopback only)", state_path,
		 o.fail_rate ? ", fault injection on" : "");
	log_info("%s", hash_impl_desc());

	/* Wait for a stop signal; meanwhile, every second, the chunk index
	 * writes that waited long enough go to the database (state.h). */
	int sig = -1;
	const struct timespec tick = { .tv_sec = 1 };
	while ((sig = sigtimedwait(&sigs, NULL, &tick)) < 0)
		state_tick(state);
	log_info("stopping on signal %d", sig);
	rc = 0;
out:
	http_stop(&server);
	if (listen_fd >= 0)
		close(listen_fd);
	if (apply_ok)
		apply_release(&apply);
	state_close(state);
	store_close(&store);
	tmpdir_close(&tmp);
	if (lockfd >= 0)
		close(lockfd);
	if (statefd >= 0)
		close(statefd);
	if (rootfd >= 0)
		close(rootfd);
	free_secret(tls_cert);
	free_secret(tls_key);
	return rc;
}
