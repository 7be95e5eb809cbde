/*
 * http: mirrord's HTTP front end (libmicrohttpd): routing, body caps, JSON
 * replies, and the glue from requests to apply/store/manifest.
 *
 * Routes (docs/PROTOCOL.md): GET /v1/ping, GET /v1/manifest,
 * POST /v1/chunks/query, POST /v1/chunks, POST /v1/op. Unknown route: 404,
 * wrong method: 405. Every failure answers
 * {"ok":false,"error":"...","code":"E...","errno":n}.
 *
 * Invariants:
 * - Every network buffer is capped: JSON bodies accumulate in a struct buf
 *   capped at the route's limit (413 when crossed; a Content-Length over it
 *   is refused before any byte of the body is read); chunk bodies stream
 *   through the frame parser, which holds at most one chunk.
 * - Nothing is applied from a body that was not complete and within caps.
 *
 * Threading: one thread per connection (MHD_USE_THREAD_PER_CONNECTION),
 * at most HTTP_MAX_CONNECTIONS. Requests block on fsync, on large writes and
 * on long manifest walks; with a thread per connection such a request
 * stalls only its own connection, while a polling thread pool would stall
 * every connection sharing the blocked thread. The connection limit bounds
 * threads and memory. The server struct is read-only while running except
 * the atomic request counter.
 */
#ifndef MIRRORD_HTTP_H
#define MIRRORD_HTTP_H

#include <stdatomic.h>

#include "apply.h"
#include "state.h"
#include "store.h"

#define HTTP_MAX_CONNECTIONS 64
#define HTTP_TIMEOUT_SECONDS 60

struct http_cfg {
	int rootfd;             /* borrowed O_RDONLY|O_DIRECTORY fd of DIR */
	struct apply_ctx *apply; /* borrowed */
	struct store *store;    /* borrowed */
	struct state *state;    /* borrowed, may be NULL */
	unsigned fail_rate;     /* answer 1 request in fail_rate (on average) with 503; 0: never */
};

struct http_server {
	struct MHD_Daemon *daemon;
	struct http_cfg cfg;
	atomic_ulong requests; /* for --fail-rate */
};

/* Start serving on listen_fd (a bound, listening TCP socket; the server
 * takes ownership and closes it when stopped). cfg is copied; what it
 * points to must outlive the server. Returns 0 or a negative errno. */
__attribute__((warn_unused_result))
int http_start(struct http_server *s, int listen_fd, const struct http_cfg *cfg);

/* Stop accepting, wait for the connection threads and free everything.
 * Accepts NULL or a server that never started. */
void http_stop(struct http_server *s);

#endif
