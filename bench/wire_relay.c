/*
 * wire_relay: a loopback TCP relay that counts the bytes of every connection
 * passing through it, so that bench/bench_wire.sh can measure what a program
 * sends and receives without trusting the program's own figures.
 *
 *   wire_relay LISTEN_PORT_FILE TARGET_PORT COUNT_FILE
 *
 * Listens on 127.0.0.1, port 0 (any free port), and writes the port it got to
 * LISTEN_PORT_FILE. Every accepted connection is forwarded to
 * 127.0.0.1:TARGET_PORT, byte for byte in both directions, for as long as the
 * two ends keep it open (keep-alive and many concurrent connections work; a
 * half-close is passed on as a half-close).
 *
 * Counters: "up" is every byte received from a client, "down" every byte
 * received from the server: TCP payload only, no headers, no handshakes.
 * COUNT_FILE holds "UP DOWN\n" (decimal, totals since start). It is written
 * at most RELAY_FLUSH_MS after the counters change, at once on SIGUSR1, and
 * on SIGTERM or SIGINT before exiting with status 0. Each write is a new file
 * renamed over COUNT_FILE, so a reader sees either the old or the new totals,
 * never part of a line. To read exact totals after some traffic has ended: remove
 * COUNT_FILE, send SIGUSR1, wait for COUNT_FILE to appear.
 *
 * Invariants:
 *   - a byte is counted once, when it is received; it is then forwarded
 *     before anything else is read in that direction (one buffer per
 *     direction, refilled only when empty), so the relay never holds more
 *     than 2 * RELAY_BUF_SIZE bytes per connection;
 *   - at most RELAY_MAX_CONNS connections at once; while that many are open,
 *     new ones wait in the listen backlog;
 *   - only loopback addresses are ever bound or connected to.
 *
 * Single-threaded (one poll() loop); signals arrive through a signalfd, so
 * no work is done in a signal handler. Exit status: 0 after SIGTERM/SIGINT,
 * 1 on any setup error or when COUNT_FILE cannot be written, 2 on bad usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RELAY_BUF_SIZE (256 * 1024)
#define RELAY_MAX_CONNS 512
#define RELAY_FLUSH_MS 100
/* Reads and writes per direction per wakeup: one busy connection must not
 * starve the others. */
#define RELAY_PUMP_ROUNDS 16

_Static_assert(RELAY_BUF_SIZE <= SSIZE_MAX, "a buffer's length fits a read's result");
_Static_assert(RELAY_MAX_CONNS * 2 + 2 < INT_MAX / 2, "poll set size fits an int");

/* One direction of a connection: bytes read from one socket, waiting to be
 * written to the other. */
struct relay_pipe {
	char *buf;  /* RELAY_BUF_SIZE bytes */
	size_t off; /* first byte not yet written */
	size_t len; /* bytes [off, off + len) wait; 0: the buffer may be refilled */
	bool eof;   /* the reading side sent FIN: nothing more will come */
	bool shut;  /* the FIN was passed on (shutdown SHUT_WR on the writing side) */
};

struct relay_conn {
	int cfd;         /* the client's socket (accepted) */
	int sfd;         /* ours to the server */
	bool connecting; /* sfd's non-blocking connect has not completed */
	struct relay_pipe up;   /* cfd -> sfd */
	struct relay_pipe down; /* sfd -> cfd */
};

struct relay {
	int lfd;   /* listening socket */
	int sigfd; /* SIGUSR1, SIGTERM, SIGINT */
	uint16_t target_port;
	const char *count_file;
	struct relay_conn *conns[RELAY_MAX_CONNS];
	size_t nconns;
	uint64_t up;   /* bytes received from clients */
	uint64_t down; /* bytes received from the server */
	bool dirty;    /* counters changed since COUNT_FILE was last written */
	uint64_t flushed_at_ms; /* CLOCK_MONOTONIC of the last write */
	/* The poll set, rebuilt on every turn: [0] sigfd, [1] lfd, then the
	 * client and server sockets of conns[i] at [2 + 2i] and [3 + 2i]. */
	struct pollfd fds[2 + 2 * RELAY_MAX_CONNS];
};

static void relay_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void relay_log(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("wire_relay: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* Milliseconds of CLOCK_MONOTONIC. Cannot fail. */
static uint64_t relay_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Write TEXT to PATH through PATH.tmp and rename(2), so that readers never
 * see a partial file. Returns 0 or a negative errno (message logged). */
__attribute__((warn_unused_result))
static int relay_write_atomic(const char *path, const char *text)
{
	char tmp[PATH_MAX];
	size_t len = strlen(text), done = 0;
	int fd = -1, rc = 0, n;

	n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		relay_log("path too long: %s", path);
		return -ENAMETOOLONG;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		relay_log("cannot create %s: %s", tmp, strerror(-rc));
		return rc;
	}
	while (done < len) {
		ssize_t w = write(fd, text + done, len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			rc = -errno;
			relay_log("cannot write %s: %s", tmp, strerror(-rc));
			goto out_unlink;
		}
		done += (size_t)w;
	}
	if (close(fd) < 0) {
		fd = -1;
		rc = -errno;
		relay_log("cannot close %s: %s", tmp, strerror(-rc));
		goto out_unlink;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		rc = -errno;
		relay_log("cannot rename %s to %s: %s", tmp, path, strerror(-rc));
		goto out_unlink;
	}
	return 0;

out_unlink:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return rc;
}

/* Write the totals to COUNT_FILE. Returns 0 or a negative errno. */
__attribute__((warn_unused_result))
static int relay_flush(struct relay *r)
{
	char line[64];
	int rc;

	snprintf(line, sizeof(line), "%" PRIu64 " %" PRIu64 "\n", r->up, r->down);
	rc = relay_write_atomic(r->count_file, line);
	if (rc == 0) {
		r->dirty = false;
		r->flushed_at_ms = relay_now_ms();
	}
	return rc;
}

/* Closes both sockets and frees C. Accepts NULL. */
static void relay_conn_free(struct relay_conn *c)
{
	if (!c)
		return;
	if (c->cfd >= 0)
		close(c->cfd);
	if (c->sfd >= 0)
		close(c->sfd);
	free(c->up.buf);
	free(c->down.buf);
	free(c);
}

static void relay_nodelay(int fd)
{
	int one = 1;
	/* The relay must not add Nagle delays to what it forwards; failure
	 * only costs latency, so it is not an error. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Open the server side of a new connection for the accepted socket CFD
 * (takes ownership of cfd: it is closed on failure). Returns the connection
 * (caller frees with relay_conn_free) or NULL (message logged). */
static struct relay_conn *relay_conn_new(const struct relay *r, int cfd)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct relay_conn *c = calloc(1, sizeof(*c));
	int saverr;

	if (!c) {
		close(cfd);
		relay_log("out of memory for a connection");
		return NULL;
	}
	c->cfd = cfd;
	c->sfd = -1;
	c->up.buf = malloc(RELAY_BUF_SIZE);
	c->down.buf = malloc(RELAY_BUF_SIZE);
	if (!c->up.buf || !c->down.buf) {
		relay_log("out of memory for a connection's buffers");
		goto fail;
	}
	c->sfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->sfd < 0) {
		saverr = errno;
		relay_log("cannot open a socket to the server: %s", strerror(saverr));
		goto fail;
	}
	relay_nodelay(c->cfd);
	relay_nodelay(c->sfd);
	sa.sin_port = htons(r->target_port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(c->sfd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		c->connecting = false;
	} else if (errno == EINPROGRESS) {
		c->connecting = true;
	} else {
		saverr = errno;
		relay_log("cannot connect to 127.0.0.1:%u: %s", (unsigned)r->target_port, strerror(saverr));
		goto fail;
	}
	return c;

fail:
	relay_conn_free(c);
	return NULL;
}

/* Move bytes FROM -> TO through P, adding what is received to *COUNTED,
 * until either side would block (or RELAY_PUMP_ROUNDS rounds). Sets
 * *PROGRESS when anything moved or changed state. Returns 0, or a negative
 * errno when the connection is broken and must be closed. */
__attribute__((warn_unused_result))
static int relay_pump(int from, int to, struct relay_pipe *p, uint64_t *counted, bool *progress)
{
	for (int round = 0; round < RELAY_PUMP_ROUNDS; round++) {
		while (p->len > 0) {
			ssize_t w = send(to, p->buf + p->off, p->len, MSG_NOSIGNAL);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return 0;
			if (w < 0)
				return -errno;
			p->off += (size_t)w;
			p->len -= (size_t)w;
			*progress = true;
		}
		if (p->eof) {
			if (!p->shut) {
				/* ENOTCONN: the other side is gone already; the
				 * connection ends when both directions are done. */
				if (shutdown(to, SHUT_WR) < 0 && errno != ENOTCONN)
					return -errno;
				p->shut = true;
				*progress = true;
			}
			return 0;
		}
		ssize_t n = recv(from, p->buf, RELAY_BUF_SIZE, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0)
			return -errno;
		*progress = true;
		if (n == 0) {
			p->eof = true;
			continue;
		}
		*counted += (uint64_t)n;
		p->off = 0;
		p->len = (size_t)n;
	}
	return 0;
}

/* Service connection C after poll() reported CREV/SREV on its sockets.
 * Returns 1 while the connection stays open, 0 when it is over (the caller
 * frees it). Counters and r->dirty are updated. */
static int relay_conn_service(struct relay *r, struct relay_conn *c, short crev, short srev)
{
	bool progress = false;
	int rc;

	if (c->connecting) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (!(srev & (POLLOUT | POLLERR | POLLHUP)))
			return (crev & (POLLERR | POLLHUP)) ? 0 : 1;
		if (getsockopt(c->sfd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			relay_log("cannot connect to 127.0.0.1:%u: %s", (unsigned)r->target_port, strerror(err));
			return 0;
		}
		c->connecting = false;
		progress = true;
	}
	uint64_t up0 = r->up, down0 = r->down;
	rc = relay_pump(c->cfd, c->sfd, &c->up, &r->up, &progress);
	if (rc == 0)
		rc = relay_pump(c->sfd, c->cfd, &c->down, &r->down, &progress);
	if (r->up != up0 || r->down != down0)
		r->dirty = true;
	/* A reset by either end is how some clients close; not worth a line. */
	if (rc < 0 && rc != -ECONNRESET && rc != -EPIPE)
		relay_log("connection closed: %s", strerror(-rc));
	if (rc < 0)
		return 0;
	if (c->up.shut && c->down.shut)
		return 0;
	/* Error or hang-up reported, yet nothing could be done: the connection
	 * can never progress again, and polling it would spin. */
	if (!progress && ((crev | srev) & (POLLERR | POLLHUP | POLLNVAL)))
		return 0;
	return 1;
}

/* Poll events wanted on each socket of C. */
static void relay_conn_events(const struct relay_conn *c, short *cev, short *sev)
{
	*cev = 0;
	*sev = 0;
	if (c->connecting) {
		*sev = POLLOUT;
		return;
	}
	if (!c->up.eof && c->up.len == 0)
		*cev |= POLLIN;
	if (c->up.len > 0)
		*sev |= POLLOUT;
	if (!c->down.eof && c->down.len == 0)
		*sev |= POLLIN;
	if (c->down.len > 0)
		*cev |= POLLOUT;
}

/* Accept every pending connection while there is room. Cannot fail: a
 * connection that cannot be set up is closed and logged. */
static void relay_accept(struct relay *r)
{
	while (r->nconns < RELAY_MAX_CONNS) {
		int cfd = accept4(r->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				relay_log("accept: %s", strerror(errno));
			return;
		}
		struct relay_conn *c = relay_conn_new(r, cfd);
		if (c)
			r->conns[r->nconns++] = c;
	}
}

/* Listen on 127.0.0.1:0 and write the port to PORT_FILE. Returns 0 or a
 * negative errno (message logged). */
__attribute__((warn_unused_result))
static int relay_listen(struct relay *r, const char *port_file)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	char line[16];
	int one = 1, rc;

	r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (r->lfd < 0) {
		rc = -errno;
		relay_log("cannot open the listening socket: %s", strerror(-rc));
		return rc;
	}
	(void)setsockopt(r->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = 0;
	if (bind(r->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(r->lfd, SOMAXCONN) < 0 ||
	    getsockname(r->lfd, (struct sockaddr *)&sa, &len) < 0) {
		rc = -errno;
		relay_log("cannot listen on 127.0.0.1: %s", strerror(-rc));
		return rc;
	}
	snprintf(line, sizeof(line), "%u\n", (unsigned)ntohs(sa.sin_port));
	return relay_write_atomic(port_file, line);
}

/* Block SIGUSR1, SIGTERM and SIGINT and read them from a signalfd instead.
 * Returns 0 or a negative errno (message logged). */
__attribute__((warn_unused_result))
static int relay_signals(struct relay *r)
{
	sigset_t set;
	int rc;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) {
		rc = -errno;
		relay_log("sigprocmask: %s", strerror(-rc));
		return rc;
	}
	r->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (r->sigfd < 0) {
		rc = -errno;
		relay_log("signalfd: %s", strerror(-rc));
		return rc;
	}
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

/* Drain the signalfd. Returns 1 to go on, 0 to stop (SIGTERM/SIGINT), or a
 * negative errno when COUNT_FILE could not be written. */
__attribute__((warn_unused_result))
static int relay_on_signals(struct relay *r)
{
	struct signalfd_siginfo si;
	int go_on = 1, rc;

	for (;;) {
		ssize_t n = read(r->sigfd, &si, sizeof(si));
		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof(si))
			break;
		if (si.ssi_signo == SIGUSR1) {
			rc = relay_flush(r);
			if (rc < 0)
				return rc;
		} else {
			go_on = 0;
		}
	}
	return go_on;
}

/* The poll() loop. Returns 0 after SIGTERM/SIGINT (totals written), or a
 * negative errno. */
__attribute__((warn_unused_result))
static int relay_run(struct relay *r)
{
	struct pollfd *fds = r->fds;
	int rc;

	for (;;) {
		size_t nfds = 2;
		int timeout = -1;

		fds[0] = (struct pollfd){ .fd = r->sigfd, .events = POLLIN };
		/* A negative fd is skipped by poll(): full means no accepting. */
		fds[1] = (struct pollfd){ .fd = r->nconns < RELAY_MAX_CONNS ? r->lfd : -1, .events = POLLIN };
		for (size_t i = 0; i < r->nconns; i++) {
			short cev, sev;
			relay_conn_events(r->conns[i], &cev, &sev);
			fds[nfds++] = (struct pollfd){ .fd = r->conns[i]->cfd, .events = cev };
			fds[nfds++] = (struct pollfd){ .fd = r->conns[i]->sfd, .events = sev };
		}
		if (r->dirty) {
			uint64_t since = relay_now_ms() - r->flushed_at_ms;
			timeout = since >= RELAY_FLUSH_MS ? 0 : (int)(RELAY_FLUSH_MS - since);
		}
		if (poll(fds, nfds, timeout) < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			relay_log("poll: %s", strerror(-rc));
			return rc;
		}
		/* From the last connection down: freeing one moves the last
		 * (already serviced) into its slot. */
		for (size_t i = r->nconns; i-- > 0;) {
			short crev = fds[2 + 2 * i].revents, srev = fds[3 + 2 * i].revents;
			if (!crev && !srev)
				continue;
			if (!relay_conn_service(r, r->conns[i], crev, srev)) {
				relay_conn_free(r->conns[i]);
				r->conns[i] = r->conns[--r->nconns];
				r->conns[r->nconns] = NULL;
			}
		}
		if (fds[1].revents & POLLIN)
			relay_accept(r);
		if (fds[0].revents & POLLIN) {
			rc = relay_on_signals(r);
			if (rc <= 0)
				return rc < 0 ? rc : relay_flush(r);
		}
		if (r->dirty && relay_now_ms() - r->flushed_at_ms >= RELAY_FLUSH_MS) {
			rc = relay_flush(r);
			if (rc < 0)
				return rc;
		}
	}
}

int main(int argc, char **argv)
{
	struct relay r = { .lfd = -1, .sigfd = -1 };
	unsigned long port;
	char *end;
	int rc;

	if (argc != 4) {
		fprintf(stderr, "usage: wire_relay LISTEN_PORT_FILE TARGET_PORT COUNT_FILE\n");
		return 2;
	}
	errno = 0;
	port = strtoul(argv[2], &end, 10);
	if (errno || end == argv[2] || *end || port == 0 || port > 65535) {
		relay_log("bad target port: %s", argv[2]);
		return 2;
	}
	r.target_port = (uint16_t)port;
	r.count_file = argv[3];

	rc = relay_signals(&r);
	if (rc == 0)
		rc = relay_flush(&r); /* "0 0": readers never see a missing file at start */
	if (rc == 0)
		rc = relay_listen(&r, argv[1]);
	if (rc == 0)
		rc = relay_run(&r);

	for (size_t i = 0; i < r.nconns; i++)
		relay_conn_free(r.conns[i]);
	if (r.lfd >= 0)
		close(r.lfd);
	if (r.sigfd >= 0)
		close(r.sigfd);
	return rc == 0 ? 0 : 1;
}
