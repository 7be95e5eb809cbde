#define _GNU_SOURCE
#include "guard.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"

/* How often the watchdog looks: a slow client is cut at most this much
 * after its deadline. */
#define GUARD_TICK_MS 250

enum phase { P_WAIT, P_BODY, P_WORK };

struct guard_conn {
	int fd;            /* borrowed from libmicrohttpd */
	enum phase phase;
	int64_t since_ns;  /* start of the phase (CLOCK_MONOTONIC) */
	uint64_t bytes;    /* body bytes so far (BODY) */
	int cut;           /* shut down already */
	char peer[64];
	struct guard_conn *prev, *next;
};

struct guard {
	struct guard_cfg cfg;       /* frozen */
	struct metrics *metrics;    /* borrowed */
	pthread_t thread;
	pthread_mutex_t lock;       /* leaf: the list, every conn's fields, stop */
	pthread_cond_t cond;        /* stop */
	int stop;
	struct guard_conn *head;
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Why c is overdue at now, or NULL if it is not. Under g->lock. */
static const char *overdue(const struct guard *g, const struct guard_conn *c, int64_t now)
{
	int64_t elapsed = now - c->since_ns, budget = (int64_t)g->cfg.timeout_s * 1000000000;
	switch (c->phase) {
	case P_WAIT:
		return elapsed > budget ? "no complete request headers in time" : NULL;
	case P_BODY:
		if (elapsed <= budget)
			return NULL;
		/* bytes < (elapsed - budget) * rate, in integers: the product
		 * fits (rate < 2^32, the excess well below 2^31 s). */
		if ((unsigned __int128)c->bytes * 1000000000 <
		    (unsigned __int128)(elapsed - budget) * g->cfg.min_rate)
			return "request body arriving too slowly";
		return NULL;
	case P_WORK:
		return NULL;
	}
	return NULL;
}

static void *watchdog(void *arg)
{
	struct guard *g = arg;
	pthread_mutex_lock(&g->lock);
	while (!g->stop) {
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += GUARD_TICK_MS * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&g->cond, &g->lock, &until);
		int64_t now = now_ns();
		for (struct guard_conn *c = g->head; c && !g->stop; c = c->next) {
			const char *why = c->cut ? NULL : overdue(g, c, now);
			if (!why)
				continue;
			/* The fd is still open: libmicrohttpd closes it only
			 * after guard_conn_close(), which needs this lock. */
			shutdown(c->fd, SHUT_RDWR);
			c->cut = 1;
			if (g->metrics)
				metrics_add(g->metrics, M_CONNS_CUT, 1);
			log_warn("cut off the connection from %s: %s (limit %us)", c->peer, why,
				 g->cfg.timeout_s);
		}
	}
	pthread_mutex_unlock(&g->lock);
	return NULL;
}

int guard_start(const struct guard_cfg *cfg, struct metrics *metrics, struct guard **out)
{
	pthread_condattr_t ca;
	struct guard *g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->cfg = *cfg;
	g->metrics = metrics;
	pthread_mutex_init(&g->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&g->cond, &ca);
	pthread_condattr_destroy(&ca);
	int r = pthread_create(&g->thread, NULL, watchdog, g);
	if (r != 0) {
		pthread_cond_destroy(&g->cond);
		pthread_mutex_destroy(&g->lock);
		free(g);
		return -r;
	}
	*out = g;
	return 0;
}

void guard_stop(struct guard *g)
{
	if (!g)
		return;
	pthread_mutex_lock(&g->lock);
	g->stop = 1;
	pthread_cond_signal(&g->cond);
	pthread_mutex_unlock(&g->lock);
	pthread_join(g->thread, NULL);
	/* Connections closed by the daemon's stop are gone from the list;
	 * anything left would be a bug in the caller's order. */
	if (g->head)
		log_error("guard: stopped with connections still registered");
	pthread_cond_destroy(&g->cond);
	pthread_mutex_destroy(&g->lock);
	free(g);
}

struct guard_conn *guard_conn_open(struct guard *g, int fd, const char *peer)
{
	struct guard_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->fd = fd;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	pthread_mutex_lock(&g->lock);
	c->phase = P_WAIT;
	c->since_ns = now_ns();
	c->next = g->head;
	if (g->head)
		g->head->prev = c;
	g->head = c;
	pthread_mutex_unlock(&g->lock);
	return c;
}

void guard_conn_close(struct guard *g, struct guard_conn *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&g->lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		g->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&g->lock);
	free(c);
}

static void set_phase(struct guard *g, struct guard_conn *c, enum phase p)
{
	if (!c)
		return;
	pthread_mutex_lock(&g->lock);
	c->phase = p;
	c->since_ns = now_ns();
	c->bytes = 0;
	pthread_mutex_unlock(&g->lock);
}

void guard_request_begin(struct guard *g, struct guard_conn *c, int has_body)
{
	set_phase(g, c, has_body ? P_BODY : P_WORK);
}

int guard_body(struct guard *g, struct guard_conn *c, uint64_t n)
{
	if (!c)
		return 0;
	pthread_mutex_lock(&g->lock);
	c->bytes += n;
	int late = c->phase == P_BODY && overdue(g, c, now_ns()) != NULL;
	pthread_mutex_unlock(&g->lock);
	return late ? -ETIMEDOUT : 0;
}

void guard_request_work(struct guard *g, struct guard_conn *c)
{
	set_phase(g, c, P_WORK);
}

void guard_request_end(struct guard *g, struct guard_conn *c)
{
	set_phase(g, c, P_WAIT);
}
