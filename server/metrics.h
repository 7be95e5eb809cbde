/*
 * metrics: mirrord's counters, and their rendering in the Prometheus text
 * format (version 0.0.4) for GET /metrics (docs/PROTOCOL.md).
 *
 * Every counter is a relaxed atomic: the request path only adds, a scrape
 * reads each value once. A scrape is therefore not a consistent snapshot
 * across counters (a request may be counted in one and not yet in
 * another), which is what Prometheus expects of counters anyway.
 *
 * Thread-safety: all functions may be called from any thread once
 * metrics_new() returned.
 */
#ifndef MIRRORD_METRICS_H
#define MIRRORD_METRICS_H

#include <stdint.h>

#include "buf.h"
#include "route.h"

struct metrics;

enum metrics_counter {
	M_BYTES_RECEIVED,  /* request body bytes read */
	M_CHUNKS_RECEIVED, /* chunks stored from POST /v1/chunks */
	M_CHUNKS_REUSED,   /* queried ids mirrord already had */
	M_BYTES_SAVED,     /* bytes the client did not upload thanks to dedup */
	M_AUTH_FAILURES,   /* requests refused for a missing or wrong token */
	M_CONNS_CUT,       /* connections cut off for being too slow */
	M_COUNTER_COUNT,
};

/* Returns a zeroed set of counters (caller frees with metrics_free), or
 * NULL on ENOMEM. */
struct metrics *metrics_new(void);

/* Accepts NULL. */
void metrics_free(struct metrics *m);

/* Count one answered request on route with HTTP status (0: the connection
 * was closed without an answer). Statuses outside 100..599 count as 0. */
void metrics_request(struct metrics *m, enum route route, unsigned status);

void metrics_add(struct metrics *m, enum metrics_counter c, uint64_t n);

/* One op applied in ns nanoseconds (whatever its outcome). */
void metrics_apply_time(struct metrics *m, uint64_t ns);

/* A connection opened (+1) or closed (-1). */
void metrics_connection(struct metrics *m, int delta);

/* Append the whole exposition to out; rootfd: DIR, for its filesystem's
 * free space (statvfs). May reallocate out. Returns 0 or a negative errno
 * from buf_append. */
__attribute__((warn_unused_result))
int metrics_render(struct metrics *m, int rootfd, struct buf *out);

#endif
