/*
 * route: the table of mirrord's HTTP routes (docs/PROTOCOL.md) and the one
 * lookup of a request's URL and method in it.
 *
 * Pure: no libmicrohttpd in here, so the lookup can be tested and fuzzed on
 * its own. The URL is matched exactly (MHD hands it over without the query
 * string): no prefix matching, no normalisation, so "/v1//op" or
 * "/v1/op/" are simply unknown. Thread-safe (the table is constant).
 */
#ifndef MIRRORD_ROUTE_H
#define MIRRORD_ROUTE_H

#include <limits.h>
#include <stddef.h>

#include "bundle.h"
#include "proto.h"

/* {"ids":[...]}: 64 hex chars, quotes and a comma per id, and some slack. */
#define ROUTE_QUERY_BODY_MAX ((size_t)PROTO_QUERY_MAX_IDS * 80 + 4096)

/* {"path":...,"block":B,"ranges":[[off,len],...]}: a path, and a few dozen
 * bytes per range. */
#define ROUTE_SIG_RANGES_MAX RSIG_RANGES_MAX
#define ROUTE_SIG_BODY_MAX ((size_t)PATH_MAX * 6 + ROUTE_SIG_RANGES_MAX * 48 + 1024)

/* After a failure the rest of a body is discarded up to the largest cap of
 * any route, then the connection is dropped (see http.c). */
_Static_assert(ROUTE_QUERY_BODY_MAX <= PROTO_CHUNKS_BODY_MAX &&
		       ROUTE_SIG_BODY_MAX <= PROTO_CHUNKS_BODY_MAX &&
		       PROTO_OP_BODY_MAX <= PROTO_CHUNKS_BODY_MAX &&
		       PROTO_BUNDLE_BODY_MAX <= PROTO_CHUNKS_BODY_MAX,
	       "the chunk body cap must be the largest");

enum route {
	R_PING,
	R_MANIFEST,
	R_QUERY,
	R_CHUNKS,
	R_OP,
	R_BUNDLE,
	R_METRICS,
	R_SIG,
	R_COUNT,  /* number of routes */
	R_NONE = R_COUNT, /* no route (404/405), for counting */
};

struct route_info {
	const char *url;
	const char *method; /* "GET" or "POST" */
	enum route route;
	size_t body_max;    /* 0: no body expected */
	const char *name;   /* short name, for logs and metrics labels */
};

/* The route for url and method, or NULL. When NULL, *allowed is the one
 * method the url accepts (answer 405 with an Allow header) or NULL (an
 * unknown url: 404). Cannot fail. */
const struct route_info *route_lookup(const char *url, const char *method,
				      const char **allowed);

/* The short name of r ("op", "ping", ...; "none" for R_NONE). */
const char *route_name(enum route r);

#endif
