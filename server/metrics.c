#define _GNU_SOURCE
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/statvfs.h>

/* Slot 0: no status (closed without an answer); slot s - 99: status s. */
#define STATUS_SLOTS 501

/* Upper bounds of the apply latency buckets, in nanoseconds. */
static const uint64_t apply_bounds[] = {
	1000000,   5000000,   10000000,   25000000,   50000000,   100000000,
	250000000, 500000000, 1000000000, 2500000000, 5000000000, 10000000000,
};
#define APPLY_BUCKETS (sizeof(apply_bounds) / sizeof(apply_bounds[0]))

struct metrics {
	atomic_uint_fast64_t requests[R_COUNT + 1][STATUS_SLOTS];
	atomic_uint_fast64_t counters[M_COUNTER_COUNT];
	atomic_uint_fast64_t apply_buckets[APPLY_BUCKETS + 1]; /* last: +Inf */
	atomic_uint_fast64_t apply_ns;                           /* sum */
	atomic_int_fast64_t connections;
};

static const struct {
	const char *name;
	const char *help;
} counter_info[M_COUNTER_COUNT] = {
	[M_BYTES_RECEIVED] = { "mirrord_received_bytes_total", "Request body bytes received." },
	[M_CHUNKS_RECEIVED] = { "mirrord_chunks_received_total",
				"Chunks received and stored (POST /v1/chunks)." },
	[M_CHUNKS_REUSED] = { "mirrord_chunks_reused_total",
			      "Queried chunk ids mirrord already had (not uploaded)." },
	[M_BYTES_SAVED] = { "mirrord_dedup_saved_bytes_total",
			    "Bytes not uploaded because mirrord had them: reused chunks of known "
			    "length, and what delta commits kept from their base." },
	[M_AUTH_FAILURES] = { "mirrord_auth_failures_total",
			      "Requests refused for a missing or wrong token." },
	[M_CONNS_CUT] = { "mirrord_connections_cut_total",
			  "Connections cut off for sending a request too slowly." },
};

struct metrics *metrics_new(void)
{
	struct metrics *m = calloc(1, sizeof(*m));
	/* calloc's zero bytes are valid zero atomics on every target we build
	 * for; atomic_init is not needed for static-like zero state. */
	return m;
}

void metrics_free(struct metrics *m)
{
	free(m);
}

void metrics_request(struct metrics *m, enum route route, unsigned status)
{
	size_t slot = status >= 100 && status <= 599 ? status - 99 : 0;
	if ((unsigned)route > R_NONE)
		route = R_NONE;
	atomic_fetch_add_explicit(&m->requests[route][slot], 1, memory_order_relaxed);
}

void metrics_add(struct metrics *m, enum metrics_counter c, uint64_t n)
{
	atomic_fetch_add_explicit(&m->counters[c], n, memory_order_relaxed);
}

void metrics_apply_time(struct metrics *m, uint64_t ns)
{
	size_t i = 0;
	while (i < APPLY_BUCKETS && ns > apply_bounds[i])
		i++;
	atomic_fetch_add_explicit(&m->apply_buckets[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->apply_ns, ns, memory_order_relaxed);
}

void metrics_connection(struct metrics *m, int delta)
{
	atomic_fetch_add_explicit(&m->connections, delta, memory_order_relaxed);
}

static uint64_t get(atomic_uint_fast64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

static int head(struct buf *out, const char *name, const char *type, const char *help)
{
	return buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

int metrics_render(struct metrics *m, int rootfd, struct buf *out)
{
	int r;

	if ((r = head(out, "mirrord_requests_total", "counter",
		      "HTTP requests by route and status (status 0: closed without an answer).")) < 0)
		return r;
	for (unsigned rt = 0; rt <= R_NONE; rt++)
		for (size_t s = 0; s < STATUS_SLOTS; s++) {
			uint64_t v = get(&m->requests[rt][s]);
			if (v && (r = buf_appendf(out,
						  "mirrord_requests_total{route=\"%s\",status=\"%zu\"} %" PRIu64 "\n",
						  route_name((enum route)rt), s ? s + 99 : 0, v)) < 0)
				return r;
		}
	for (size_t c = 0; c < M_COUNTER_COUNT; c++)
		if ((r = head(out, counter_info[c].name, "counter", counter_info[c].help)) < 0 ||
		    (r = buf_appendf(out, "%s %" PRIu64 "\n", counter_info[c].name,
				     get(&m->counters[c]))) < 0)
			return r;

	/* Histogram buckets are cumulative; read each bucket once, so that
	 * _count equals the +Inf bucket whatever happens meanwhile. */
	const char *h = "mirrord_apply_duration_seconds";
	uint64_t total = 0;
	if ((r = head(out, h, "histogram", "Time to apply one op (POST /v1/op).")) < 0)
		return r;
	for (size_t i = 0; i <= APPLY_BUCKETS; i++) {
		total += get(&m->apply_buckets[i]);
		if (i < APPLY_BUCKETS)
			r = buf_appendf(out, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", h,
					(double)apply_bounds[i] / 1e9, total);
		else
			r = buf_appendf(out, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", h, total);
		if (r < 0)
			return r;
	}
	if ((r = buf_appendf(out, "%s_sum %.9f\n%s_count %" PRIu64 "\n", h,
			     (double)get(&m->apply_ns) / 1e9, h, total)) < 0)
		return r;

	struct statvfs vfs;
	if (fstatvfs(rootfd, &vfs) == 0) {
		if ((r = head(out, "mirrord_dir_free_bytes", "gauge",
			      "Space available to mirrord on DIR's filesystem.")) < 0 ||
		    (r = buf_appendf(out, "mirrord_dir_free_bytes %" PRIu64 "\n",
				     (uint64_t)vfs.f_bavail * vfs.f_frsize)) < 0 ||
		    (r = head(out, "mirrord_dir_size_bytes", "gauge",
			      "Size of DIR's filesystem.")) < 0 ||
		    (r = buf_appendf(out, "mirrord_dir_size_bytes %" PRIu64 "\n",
				     (uint64_t)vfs.f_blocks * vfs.f_frsize)) < 0)
			return r;
	}
	if ((r = head(out, "mirrord_connections_active", "gauge", "Open client connections.")) < 0 ||
	    (r = buf_appendf(out, "mirrord_connections_active %" PRIdFAST64 "\n",
			     atomic_load_explicit(&m->connections, memory_order_relaxed))) < 0)
		return r;
	return 0;
}
