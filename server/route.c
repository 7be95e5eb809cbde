#include "route.h"

#include <string.h>

static const struct route_info routes[] = {
	{ "/v1/ping", "GET", R_PING, 0, "ping" },
	{ "/v1/manifest", "GET", R_MANIFEST, 0, "manifest" },
	{ "/v1/chunks/query", "POST", R_QUERY, ROUTE_QUERY_BODY_MAX, "query" },
	{ "/v1/chunks", "POST", R_CHUNKS, PROTO_CHUNKS_BODY_MAX, "chunks" },
	{ "/v1/op", "POST", R_OP, PROTO_OP_BODY_MAX, "op" },
	{ "/v1/bundle", "POST", R_BUNDLE, PROTO_BUNDLE_BODY_MAX, "bundle" },
	{ "/metrics", "GET", R_METRICS, 0, "metrics" },
	{ "/v1/sig", "POST", R_SIG, ROUTE_SIG_BODY_MAX, "sig" },
};

_Static_assert(sizeof(routes) / sizeof(routes[0]) == R_COUNT, "one table entry per route");

const struct route_info *route_lookup(const char *url, const char *method,
				      const char **allowed)
{
	*allowed = NULL;
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (strcmp(url, routes[i].url) != 0)
			continue;
		if (strcmp(method, routes[i].method) == 0)
			return &routes[i];
		*allowed = routes[i].method;
	}
	return NULL;
}

const char *route_name(enum route r)
{
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (routes[i].route == r)
			return routes[i].name;
	return "none";
}
