/*
 * poll_ctl: see poll_ctl.h.
 */
#define _XOPEN_SOURCE 700
#include "poll_ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "log.h"
#include "status.h"

#define REQUEST_WAIT_MS 2000 /* for a client's request line */
#define ANSWER_WAIT_MS 5000  /* for a client to take the status answer */

struct poll_ctl {
	int lfd;        /* listening socket, owned */
	int wake[2];    /* poll_ctl_close writes to wake[1] to stop the thread */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct mirror *m;    /* borrowed */
	struct poll_scan *s; /* borrowed */
	pthread_t thread;
	int started;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The socket address of state_dir. Returns 0 or -ENAMETOOLONG. */
static int ctl_addr(const char *state_dir, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	int n = snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/%s", state_dir, POLL_CTL_NAME);
	if (n < 0 || (size_t)n >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	return 0;
}

static int set_cloexec_nonblock(int fd, int nonblock)
{
	int fl = fcntl(fd, F_GETFD);
	if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
		return -errno;
	if (nonblock) {
		fl = fcntl(fd, F_GETFL);
		if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
			return -errno;
	}
	return 0;
}

/* Wait up to ms (< 0: forever) for fd to be ready for events. Returns 1,
 * 0 on timeout, or a negative errno. */
static int wait_fd(int fd, short events, int ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	for (;;) {
		int r = poll(&p, 1, ms);
		if (r >= 0)
			return r > 0;
		if (errno != EINTR)
			return -errno;
	}
}

/* Write all of data to the non-blocking fd within ms. Returns 0 or a
 * negative errno (-ETIMEDOUT). */
static int write_all(int fd, const char *data, size_t len, int ms)
{
	int64_t deadline = now_ms() + ms;
	size_t off = 0;
	while (off < len) {
		ssize_t n = write(fd, data + off, len - off);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return -errno;
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		int r = wait_fd(fd, POLLOUT, (int)left);
		if (r <= 0)
			return r < 0 ? r : -ETIMEDOUT;
	}
	return 0;
}

/* ---------------------------------------------------------------- server */

int poll_ctl_open(const char *state_dir, struct poll_ctl **out)
{
	struct sockaddr_un sa;
	struct poll_ctl *c;
	int r;

	*out = NULL;
	if ((r = ctl_addr(state_dir, &sa)) < 0)
		return r;
	if (!(c = calloc(1, sizeof(*c))))
		return -ENOMEM;
	c->lfd = c->wake[0] = c->wake[1] = -1;
	memcpy(c->path, sa.sun_path, sizeof(c->path));
	if (pipe(c->wake) < 0 || set_cloexec_nonblock(c->wake[0], 1) < 0 ||
	    set_cloexec_nonblock(c->wake[1], 1) < 0) {
		r = -errno;
		goto fail;
	}
	c->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (c->lfd < 0) {
		r = -errno;
		goto fail;
	}
	if ((r = set_cloexec_nonblock(c->lfd, 1)) < 0)
		goto fail;
	/* A socket left by a client that died: the state folder's lock, which
	 * the caller holds, says nobody else serves it. */
	if (unlink(c->path) < 0 && errno != ENOENT) {
		r = -errno;
		goto fail;
	}
	/* Created with 0600 (not a window with wider rights before chmod). */
	mode_t old = umask(0177);
	r = bind(c->lfd, (struct sockaddr *)&sa, sizeof(sa));
	int saved = errno;
	umask(old);
	if (r < 0) {
		r = -saved;
		goto fail;
	}
	if (chmod(c->path, 0600) < 0 || listen(c->lfd, 16) < 0) {
		r = -errno;
		unlink(c->path);
		goto fail;
	}
	*out = c;
	return 0;
fail:
	if (c->lfd >= 0)
		close(c->lfd);
	if (c->wake[0] >= 0)
		close(c->wake[0]);
	if (c->wake[1] >= 0)
		close(c->wake[1]);
	free(c);
	return r;
}

/* Read one request line from cfd (non-blocking) into line. Returns 0 or a
 * negative errno. */
static int read_request(int cfd, char *line, size_t len)
{
	int64_t deadline = now_ms() + REQUEST_WAIT_MS;
	size_t n = 0;
	while (n + 1 < len) {
		ssize_t k = read(cfd, line + n, len - 1 - n);
		if (k > 0) {
			n += (size_t)k;
			line[n] = '\0';
			if (memchr(line, '\n', n))
				return 0;
			continue;
		}
		if (k == 0)
			return -EPROTO; /* closed before the end of its line */
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return -errno;
		int64_t left = deadline - now_ms();
		int r = left > 0 ? wait_fd(cfd, POLLIN, (int)left) : 0;
		if (r <= 0)
			return r < 0 ? r : -ETIMEDOUT;
	}
	return -EMSGSIZE;
}

/* status_json() plus the scanner's own counters under "scan". Returns a
 * new string (caller frees) or NULL on ENOMEM. */
static char *poll_status_json(struct poll_ctl *c, size_t *len)
{
	struct poll_scan_stats st;
	char *txt = status_json(c->m, len), *out = NULL;
	cJSON *j = txt ? cJSON_ParseWithLength(txt, *len) : NULL;
	cJSON *o = j ? cJSON_AddObjectToObject(j, "scan") : NULL;
	if (o) {
		poll_scan_get_stats(c->s, &st);
		cJSON_AddNumberToObject(o, "scans", (double)st.scans);
		cJSON_AddNumberToObject(o, "entries", (double)st.entries);
		cJSON_AddNumberToObject(o, "settling", (double)st.dirty);
		cJSON_AddNumberToObject(o, "last_ms", st.last_ms);
		cJSON_AddNumberToObject(o, "renames", (double)st.renames);
		if ((out = cJSON_PrintUnformatted(j)))
			*len = strlen(out);
	}
	cJSON_Delete(j);
	free(txt);
	return out;
}

/* One connection: read the request, answer or hand it to the scanner. */
static void serve(struct poll_ctl *c, int cfd)
{
	char line[64];
	int r = read_request(cfd, line, sizeof(line));
	if (r < 0) {
		log_debug("control socket: dropped a client: %s", strerror(-r));
		close(cfd);
		return;
	}
	if (strcmp(line, "scan\n") == 0) {
		/* The scanner answers (and closes) once the scan is done. Its
		 * write is blocking-safe: "ok\n" fits any socket buffer. */
		poll_scan_request(c->s, cfd);
		return;
	}
	if (strcmp(line, "status\n") == 0) {
		size_t len = 0;
		char *json = poll_status_json(c, &len);
		if (json) {
			if ((r = write_all(cfd, json, len, ANSWER_WAIT_MS)) < 0)
				log_debug("control socket: status not delivered: %s", strerror(-r));
			free(json);
		} else {
			(void)write_all(cfd, "error: out of memory\n", 21, ANSWER_WAIT_MS);
		}
	} else {
		(void)write_all(cfd, "error: unknown request\n", 23, ANSWER_WAIT_MS);
	}
	close(cfd);
}

static void *run(void *arg)
{
	struct poll_ctl *c = arg;
	log_thread_name("mfs-ctl");
	for (;;) {
		struct pollfd p[2] = { { .fd = c->lfd, .events = POLLIN },
				       { .fd = c->wake[0], .events = POLLIN } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("control socket: poll: %s", strerror(errno));
			break;
		}
		if (p[1].revents)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		int cfd = accept(c->lfd, NULL, NULL);
		if (cfd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warn("control socket: accept: %s", strerror(errno));
			continue;
		}
		if (set_cloexec_nonblock(cfd, 1) < 0) {
			close(cfd);
			continue;
		}
		serve(c, cfd);
	}
	return NULL;
}

int poll_ctl_start(struct poll_ctl *c, struct mirror *m, struct poll_scan *s)
{
	c->m = m;
	c->s = s;
	int r = pthread_create(&c->thread, NULL, run, c);
	if (r != 0)
		return -r;
	c->started = 1;
	return 0;
}

void poll_ctl_close(struct poll_ctl *c)
{
	if (!c)
		return;
	if (c->started) {
		ssize_t w = write(c->wake[1], "x", 1);
		(void)w; /* a full pipe wakes the thread as well */
		pthread_join(c->thread, NULL);
	}
	close(c->lfd);
	unlink(c->path);
	close(c->wake[0]);
	close(c->wake[1]);
	free(c);
}

/* ---------------------------------------------------------------- client */

int poll_ctl_ask(const char *state_dir, const char *req, int timeout_ms, struct buf *out)
{
	struct sockaddr_un sa;
	int64_t deadline = timeout_ms >= 0 ? now_ms() + timeout_ms : -1;
	int fd, r;
	if ((r = ctl_addr(state_dir, &sa)) < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0)
		return -errno;
	/* A Unix socket connects at once or fails at once: blocking is fine. */
	if ((r = set_cloexec_nonblock(fd, 0)) < 0 ||
	    (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && (r = -errno)) ||
	    (r = set_cloexec_nonblock(fd, 1)) < 0)
		goto out;
	if ((r = write_all(fd, req, strlen(req), timeout_ms >= 0 ? timeout_ms : 60000)) < 0)
		goto out;
	for (;;) {
		char chunk[4096];
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n > 0) {
			if ((r = buf_append(out, chunk, (size_t)n)) < 0)
				goto out;
			continue;
		}
		if (n == 0) {
			r = 0;
			break;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			r = -errno;
			break;
		}
		int wait = -1;
		if (deadline >= 0) {
			int64_t left = deadline - now_ms();
			if (left <= 0) {
				r = -ETIMEDOUT;
				break;
			}
			wait = (int)left;
		}
		if ((r = wait_fd(fd, POLLIN, wait)) <= 0) {
			r = r < 0 ? r : -ETIMEDOUT;
			break;
		}
	}
out:
	close(fd);
	return r;
}
