/*
 * http: mirrord's HTTP front end (libmicrohttpd): routing (route.h), the
 * token check (auth.h), body caps, deadlines (guard.h), JSON replies,
 * metrics (metrics.h), and the glue from requests to apply/store/manifest.
 *
 * Routes (docs/PROTOCOL.md): GET /v1/ping, GET /v1/manifest,
 * POST /v1/chunks/query, POST /v1/chunks, POST /v1/op, GET /metrics.
 * Every request must carry the token first (when mirrord has one; /metrics
 * is exempt with metrics_public): without it, 401 whatever the URL, so an
 * outsider learns nothing, not even which routes exist. Unknown route:
 * 404, wrong method: 405. Every failure answers
 * {"ok":false,"error":"...","code":"E...","errno":n}.
 *
 * Invariants:
 * - Every network buffer is capped: JSON bodies accumulate in a struct buf
 *   capped at the route's limit (413 when crossed; a Content-Length over it
 *   is refused before any byte of the body is read); chunk bodies stream
 *   through the frame parser, which holds at most one chunk; headers are
 *   held by libmicrohttpd within HTTP_CONN_MEMORY (over it: libmicrohttpd's
 *   own 4xx, without our JSON body), and over HTTP_HEADER_MAX they get a
 *   431 with the JSON body before anything else is looked at.
 * - Nothing is applied from a body that was not complete and within caps,
 *   nor from a request without the token.
 * - Time: guard.h cuts a connection whose request (headers, then body)
 *   arrives too slowly; libmicrohttpd's idle timeout covers the rest.
 *
 * Threading: one thread per connection (MHD_USE_THREAD_PER_CONNECTION),
 * at most max_connections (max_per_ip from one address). Requests block on
 * fsync, on large writes and on long manifest walks; with a thread per
 * connection such a request stalls only its own connection, while a
 * polling thread pool would stall every connection sharing the blocked
 * thread. The connection limits bound threads and memory. The server
 * struct is read-only while running except the atomic request counter and
 * what metrics and guard keep (each thread-safe on its own).
 */
#ifndef MIRRORD_HTTP_H
#define MIRRORD_HTTP_H

#include <stdatomic.h>

#include "apply.h"
#include "auth.h"
#include "guard.h"
#include "metrics.h"
#include "state.h"
#include "store.h"

#define HTTP_MAX_CONNECTIONS 64
#define HTTP_MAX_PER_IP 16
#define HTTP_TIMEOUT_SECONDS 60
/* A body may fall behind this rate by HTTP_TIMEOUT_SECONDS' worth (guard.h):
 * low enough for any real link, and one byte a second is cut promptly. */
#define HTTP_BODY_MIN_RATE 1024
/* libmicrohttpd's per-connection memory: the request line and headers,
 * and the read buffer a body arrives through. With 32 KiB a body came in
 * 14 KiB reads, each a recv and a select (first upload of 1 GiB: 76,000
 * of each; 256 KiB: 15,000 and 18,000, and the same peak RSS). */
#define HTTP_CONN_MEMORY (256 * 1024)
/* Request line and headers (HTTP_CONN_MEMORY no longer bounds them). */
#define HTTP_HEADER_MAX (16 * 1024)
/* On ENOSPC, stages idle this long are deleted (store_reclaim), at most
 * once a second. */
#define HTTP_RECLAIM_IDLE 10

struct http_cfg {
	int rootfd;             /* borrowed O_RDONLY|O_DIRECTORY fd of DIR */
	struct apply_ctx *apply; /* borrowed */
	struct store *store;    /* borrowed */
	struct state *state;    /* borrowed, may be NULL */
	const struct auth *auth; /* borrowed; NULL or disabled: no token needed */
	int metrics_public;     /* GET /metrics without the token */
	unsigned fail_rate;     /* answer 1 request in fail_rate (on average) with 503; 0: never */
	unsigned timeout_s;     /* 0: HTTP_TIMEOUT_SECONDS */
	unsigned max_connections; /* 0: HTTP_MAX_CONNECTIONS */
	unsigned max_per_ip;    /* 0: HTTP_MAX_PER_IP */
	/* HTTPS: PEM text of the certificate (chain) and its key, borrowed,
	 * NUL-terminated, kept until http_stop(); NULL: plain HTTP. */
	const char *tls_cert;
	const char *tls_key;
};

struct http_server {
	struct MHD_Daemon *daemon;
	struct http_cfg cfg;
	atomic_ulong requests;    /* for --fail-rate */
	struct metrics *metrics;  /* owned */
	struct guard *guard;      /* owned */
	atomic_int starting;      /* libmicrohttpd's messages are errors while starting */
	atomic_llong reclaimed_at; /* time() of the last store_reclaim() */
};

/* Start serving on listen_fd (a bound, listening TCP socket; on success
 * the server owns it and closes it when stopped). cfg is
 * copied; what it points to must outlive the server. Returns 0, -ENOTSUP
 * (TLS asked for, but libmicrohttpd lacks it), or another negative errno
 * (libmicrohttpd's reason is logged: a bad certificate or key, ...). */
__attribute__((warn_unused_result))
int http_start(struct http_server *s, int listen_fd, const struct http_cfg *cfg);

/* Stop accepting, wait for the connection threads and free everything.
 * Accepts NULL or a server that never started. */
void http_stop(struct http_server *s);

#endif
