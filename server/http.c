#define _GNU_SOURCE
#include "http.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "buf.h"
#include "chunker.h"
#include "compress.h"
#include "frame.h"
#include "hash.h"
#include "json.h"
#include "log.h"
#include "manifest.h"
#include "path.h"
#include "proto.h"

/* {"ids":[...]}: 64 hex chars, quotes and a comma per id, and some slack. */
#define QUERY_BODY_MAX ((size_t)PROTO_QUERY_MAX_IDS * 80 + 4096)
/* A manifest line, escaped, fits easily; longer lines are left out. */
#define MANIFEST_LINE_BUF (64 * 1024)
#define MANIFEST_BLOCK (64 * 1024)

/* After a failure the rest of a body is discarded up to the largest cap of
 * any route, then the connection is dropped (see on_request). */
_Static_assert(QUERY_BODY_MAX <= PROTO_CHUNKS_BODY_MAX && PROTO_OP_BODY_MAX <= PROTO_CHUNKS_BODY_MAX,
	       "the chunk body cap must be the largest");

enum route { R_PING, R_MANIFEST, R_QUERY, R_CHUNKS, R_OP };

static const struct {
	const char *url;
	const char *method;
	enum route route;
	size_t body_max; /* 0: no body expected */
} routes[] = {
	{ "/v1/ping", MHD_HTTP_METHOD_GET, R_PING, 0 },
	{ "/v1/manifest", MHD_HTTP_METHOD_GET, R_MANIFEST, 0 },
	{ "/v1/chunks/query", MHD_HTTP_METHOD_POST, R_QUERY, QUERY_BODY_MAX },
	{ "/v1/chunks", MHD_HTTP_METHOD_POST, R_CHUNKS, PROTO_CHUNKS_BODY_MAX },
	{ "/v1/op", MHD_HTTP_METHOD_POST, R_OP, PROTO_OP_BODY_MAX },
};

/* Per-request state, from the first call of the handler to
 * on_completed(). Owned by MHD's con_cls slot. */
struct req {
	enum route route;
	size_t body_max;
	int answered;             /* a response is queued: ignore the rest */
	uint64_t total;           /* body bytes received */
	struct buf body;          /* R_QUERY, R_OP: the JSON text */
	struct frame_parser fp;   /* R_CHUNKS */
	int fp_ready;
	uint8_t *raw;             /* R_CHUNKS: decompression buffer (owned) */
	unsigned long stored;     /* R_CHUNKS: chunks stored so far */
	/* A failure found while the body is still arriving: MHD 0.9.75 cannot
	 * answer before the body is read, so it is answered at its end and
	 * nothing more is processed. */
	unsigned fail_status;
	int fail_err;
	const char *fail_msg;
};

/* ---- replies ------------------------------------------------------------ */

static enum MHD_Result queue_buf(struct MHD_Connection *c, unsigned status, struct buf *b,
				 const char *extra_header, const char *extra_value)
{
	size_t len;
	char *text = buf_detach(b, &len); /* handed to MHD, which frees it */
	if (!text)
		return MHD_NO;
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	if (extra_header)
		MHD_add_response_header(resp, extra_header, extra_value);
	enum MHD_Result r = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return r;
}

/* The start of an error object, left open for extra members. */
static int error_head(struct buf *b, int err, const char *msg)
{
	int r;
	if ((r = buf_append(b, "{\"ok\":false,\"error\":", 20)) < 0 ||
	    (r = json_append_qstr(b, msg)) < 0 ||
	    (r = buf_appendf(b, ",\"code\":\"%s\",\"errno\":%d", proto_errno_name(err), err)) < 0)
		return r;
	return 0;
}

/* Queue {"ok":false,...} with one optional extra header. err: positive
 * errno. */
static enum MHD_Result reply_error_hdr(struct MHD_Connection *c, unsigned status, int err,
				       const char *msg, const char *hdr, const char *value)
{
	struct buf b;
	buf_init(&b, 0);
	if (error_head(&b, err, msg) < 0 || buf_append(&b, "}", 1) < 0) {
		buf_release(&b);
		return MHD_NO;
	}
	return queue_buf(c, status, &b, hdr, value);
}

static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned status, int err,
				   const char *msg)
{
	return reply_error_hdr(c, status, err, msg, NULL, NULL);
}

static enum MHD_Result reply_text(struct MHD_Connection *c, const char *json)
{
	struct buf b;
	buf_init(&b, 0);
	if (buf_append(&b, json, strlen(json)) < 0) {
		buf_release(&b);
		return MHD_NO;
	}
	return queue_buf(c, MHD_HTTP_OK, &b, NULL, NULL);
}

/* {"ok":...,"missing":[i,...]} for query (ok) and 409 (error). */
static enum MHD_Result reply_missing(struct MHD_Connection *c, int ok, const size_t *idx, size_t n)
{
	struct buf b;
	int r;
	buf_init(&b, 0);
	r = ok ? buf_append(&b, "{\"ok\":true", 10) : error_head(&b, ENOENT, "chunks missing");
	if (r == 0)
		r = buf_append(&b, ",\"missing\":[", 12);
	for (size_t i = 0; r == 0 && i < n; i++)
		r = buf_appendf(&b, i ? ",%zu" : "%zu", idx[i]);
	if (r == 0)
		r = buf_append(&b, "]}", 2);
	if (r < 0) {
		buf_release(&b);
		return MHD_NO;
	}
	return queue_buf(c, ok ? MHD_HTTP_OK : MHD_HTTP_CONFLICT, &b, NULL, NULL);
}

/* ---- GET /v1/manifest --------------------------------------------------- */

struct mstream {
	struct manifest *m; /* owned */
	struct buf line;    /* the line being sent */
	size_t off;         /* bytes of line already sent */
	int done;
	int failed;
};

static ssize_t mstream_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct mstream *ms = cls;
	size_t n = 0;
	(void)pos;
	if (ms->failed)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	while (n < max) {
		if (ms->off < ms->line.len) {
			size_t k = ms->line.len - ms->off;
			if (k > max - n)
				k = max - n;
			memcpy(out + n, ms->line.data + ms->off, k);
			ms->off += k;
			n += k;
			continue;
		}
		buf_reset(&ms->line);
		ms->off = 0;
		if (ms->done)
			break;
		int r = manifest_next(ms->m, &ms->line);
		if (r < 0) {
			/* Cut the stream (no final empty chunk): the client sees
			 * a failed transfer, never a short listing as complete. */
			log_error("manifest: walk failed: %s", strerror(-r));
			ms->failed = 1;
			return n ? (ssize_t)n : MHD_CONTENT_READER_END_WITH_ERROR;
		}
		if (r == 0)
			ms->done = 1;
	}
	if (n == 0 && ms->done)
		return MHD_CONTENT_READER_END_OF_STREAM;
	return (ssize_t)n;
}

static void mstream_free(void *cls)
{
	struct mstream *ms = cls;
	if (!ms)
		return;
	manifest_free(ms->m);
	buf_release(&ms->line);
	free(ms);
}

static enum MHD_Result do_manifest(struct http_server *s, struct MHD_Connection *c)
{
	const char *sub = "";
	size_t sublen = 0;
	int r;

	if (MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, "path", 4, &sub, &sublen) !=
	    MHD_YES || !sub) {
		sub = "";
		sublen = 0;
	}
	/* path_check() sees the decoded length: a %00 inside is refused. */
	if ((r = path_check(sub, sublen, 1)) < 0) {
		log_warn("manifest: invalid path");
		return reply_error(c, MHD_HTTP_BAD_REQUEST, -r, "invalid path");
	}
	struct mstream *ms = calloc(1, sizeof(*ms));
	if (!ms)
		return reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, ENOMEM, "out of memory");
	buf_init(&ms->line, MANIFEST_LINE_BUF);
	if ((r = manifest_open(s->cfg.rootfd, sub, &ms->m)) < 0) {
		log_error("manifest %s: %s", sub, strerror(-r));
		mstream_free(ms);
		return reply_error(c, proto_status_for_errno(-r), -r, "cannot list");
	}
	struct MHD_Response *resp = MHD_create_response_from_callback(
		MHD_SIZE_UNKNOWN, MANIFEST_BLOCK, mstream_read, ms, mstream_free);
	if (!resp) {
		mstream_free(ms);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/x-ndjson");
	enum MHD_Result q = MHD_queue_response(c, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp); /* MHD keeps its reference; frees ms at the end */
	return q;
}

/* ---- POST bodies -------------------------------------------------------- */

static void fail_later(struct req *q, unsigned status, int err, const char *msg)
{
	if (q->fail_status)
		return;
	q->fail_status = status;
	q->fail_err = err;
	q->fail_msg = msg;
	buf_release(&q->body); /* not needed any more: give the memory back */
}

/* One complete frame: decompress, verify, store. */
static void take_frame(struct http_server *s, struct req *q, const struct frame *f)
{
	const uint8_t *raw = f->payload;
	struct hash_id got;
	if (f->zstd) {
		if (decompress_chunk(f->payload, f->wire_len, q->raw, f->raw_len) < 0) {
			fail_later(q, MHD_HTTP_BAD_REQUEST, EBADMSG, "cannot decompress chunk");
			return;
		}
		raw = q->raw;
	}
	hash_buf(raw, f->raw_len, &got);
	if (!hash_equal(&got, &f->id)) {
		fail_later(q, MHD_HTTP_BAD_REQUEST, EBADMSG, "chunk does not match its id");
		return;
	}
	int r = store_put(s->cfg.store, &f->id, raw, f->raw_len);
	if (r < 0) {
		log_error("cannot store a chunk: %s", strerror(-r));
		fail_later(q, proto_status_for_errno(-r), -r, "cannot store chunk");
		return;
	}
	q->stored++;
}

static void take_body(struct http_server *s, struct req *q, const char *data, size_t len)
{
	q->total += len;
	if (q->fail_status)
		return; /* discarding the rest */
	if (q->total > q->body_max) {
		fail_later(q, MHD_HTTP_CONTENT_TOO_LARGE, EMSGSIZE, "body too large");
		return;
	}
	if (q->route != R_CHUNKS) {
		int r = buf_append(&q->body, data, len);
		if (r == -EMSGSIZE)
			fail_later(q, MHD_HTTP_CONTENT_TOO_LARGE, EMSGSIZE, "body too large");
		else if (r < 0)
			fail_later(q, MHD_HTTP_INTERNAL_SERVER_ERROR, -r, "out of memory");
		return;
	}
	const uint8_t *p = (const uint8_t *)data;
	while (len && !q->fail_status) {
		struct frame f;
		int r = frame_parser_feed(&q->fp, &p, &len, &f);
		if (r < 0) {
			fail_later(q, r == -ENOMEM ? MHD_HTTP_INTERNAL_SERVER_ERROR : MHD_HTTP_BAD_REQUEST,
				   -r, r == -ENOMEM ? "out of memory" : "invalid frame");
			break;
		}
		if (r == 0)
			break;
		take_frame(s, q, &f);
	}
}

/* Parse the JSON body; on failure queue the error and return NULL. The
 * caller deletes the tree with cJSON_Delete. */
static cJSON *parse_body(struct req *q, struct MHD_Connection *c, enum MHD_Result *ret)
{
	cJSON *j = cJSON_ParseWithLength(q->body.data ? q->body.data : "", q->body.len);
	if (!j) {
		log_warn("request with malformed json");
		*ret = reply_error(c, MHD_HTTP_BAD_REQUEST, EINVAL, "malformed json");
		return NULL;
	}
	if (proto_json_depth(j) > PROTO_JSON_DEPTH_MAX) {
		cJSON_Delete(j);
		log_warn("request with json nested too deeply");
		*ret = reply_error(c, MHD_HTTP_BAD_REQUEST, EINVAL, "json nested too deeply");
		return NULL;
	}
	return j;
}

static enum MHD_Result do_query(struct http_server *s, struct req *q, struct MHD_Connection *c)
{
	enum MHD_Result ret = MHD_NO;
	size_t *missing = NULL, n = 0;
	cJSON *j = parse_body(q, c, &ret);
	if (!j)
		return ret;
	const cJSON *ids = cJSON_GetObjectItemCaseSensitive(j, "ids");
	if (!cJSON_IsArray(ids)) {
		log_warn("chunk query without an id list");
		ret = reply_error(c, MHD_HTTP_BAD_REQUEST, EINVAL, "missing id list");
		goto out;
	}
	int count = cJSON_GetArraySize(ids);
	if (count > PROTO_QUERY_MAX_IDS) {
		log_warn("chunk query with %d ids (over %d)", count, PROTO_QUERY_MAX_IDS);
		ret = reply_error(c, MHD_HTTP_CONTENT_TOO_LARGE, E2BIG, "too many ids");
		goto out;
	}
	if (count > 0 && !(missing = malloc((size_t)count * sizeof(*missing)))) {
		ret = reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, ENOMEM, "out of memory");
		goto out;
	}
	size_t i = 0;
	const cJSON *e;
	cJSON_ArrayForEach(e, ids) {
		struct hash_id id;
		if (!cJSON_IsString(e) ||
		    hash_from_hex(e->valuestring, strlen(e->valuestring), &id) < 0) {
			log_warn("chunk query with an invalid id at index %zu", i);
			ret = reply_error(c, MHD_HTTP_BAD_REQUEST, EINVAL, "invalid id");
			goto out;
		}
		if (!store_has(s->cfg.store, &id) &&
		    !(s->cfg.state && state_index_has(s->cfg.state, &id)))
			missing[n++] = i;
		i++;
	}
	ret = reply_missing(c, 1, missing, n);
out:
	free(missing);
	cJSON_Delete(j);
	return ret;
}

/* X-Mirror-Client / X-Mirror-Seq. Both optional (without them there is no
 * replay detection); present but malformed: -EINVAL. */
static int get_origin(struct MHD_Connection *c, struct apply_origin *o)
{
	const char *client = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Mirror-Client");
	const char *seq = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Mirror-Seq");
	memset(o, 0, sizeof(*o));
	if (client) {
		if (strlen(client) != 32 || strspn(client, "0123456789abcdefABCDEF") != 32)
			return -EINVAL;
		memcpy(o->client, client, 33);
	}
	if (seq) {
		uint64_t v = 0;
		if (!*seq || strspn(seq, "0123456789") != strlen(seq) || strlen(seq) > 19)
			return -EINVAL;
		for (const char *p = seq; *p; p++)
			v = v * 10 + (uint64_t)(*p - '0');
		if (v > INT64_MAX)
			return -EINVAL;
		o->seq = v;
		o->has_seq = 1;
	}
	return 0;
}

static enum MHD_Result do_op(struct http_server *s, struct req *q, struct MHD_Connection *c)
{
	enum MHD_Result ret = MHD_NO;
	struct proto_op op;
	struct apply_origin origin;
	struct apply_result res;
	const char *why;

	if (get_origin(c, &origin) < 0) {
		log_warn("op with malformed X-Mirror-Client or X-Mirror-Seq");
		return reply_error(c, MHD_HTTP_BAD_REQUEST, EINVAL,
				   "malformed x-mirror-client or x-mirror-seq");
	}
	cJSON *j = parse_body(q, c, &ret);
	if (!j)
		return ret;
	int r = proto_op_from_json(j, &op, &why);
	cJSON_Delete(j);
	if (r < 0) {
		log_warn("rejecting op: %s", why);
		unsigned status = r == -E2BIG ? MHD_HTTP_CONTENT_TOO_LARGE :
				  r == -ENOMEM ? MHD_HTTP_INTERNAL_SERVER_ERROR : MHD_HTTP_BAD_REQUEST;
		return reply_error(c, status, -r, why);
	}
	r = apply_op(s->cfg.apply, &op, &origin, &res);
	if (r == APPLY_MISSING) {
		ret = reply_missing(c, 0, res.missing, res.nmissing);
	} else if (r < 0) {
		/* A noreplace rename onto something: the client's view of the
		 * target is stale; 404 sends it to a full sync of the paths. */
		unsigned status = op.kind == OP_RENAME && r == -EEXIST ? MHD_HTTP_NOT_FOUND :
				  proto_status_for_errno(-r);
		ret = reply_error(c, status, -r, strerror(-r));
	} else {
		ret = reply_text(c, res.replayed ? "{\"ok\":true,\"replayed\":true}" : "{\"ok\":true}");
	}
	apply_result_release(&res);
	proto_op_release(&op);
	return ret;
}

static enum MHD_Result finish(struct http_server *s, struct req *q, struct MHD_Connection *c)
{
	q->answered = 1;
	if (q->fail_status) {
		log_warn("request failed: %s", q->fail_msg);
		return reply_error(c, q->fail_status, q->fail_err, q->fail_msg);
	}
	switch (q->route) {
	case R_QUERY:
		return do_query(s, q, c);
	case R_OP:
		return do_op(s, q, c);
	case R_CHUNKS:
		if (!frame_parser_idle(&q->fp)) {
			log_warn("chunk upload ends inside a frame");
			return reply_error(c, MHD_HTTP_BAD_REQUEST, EBADMSG, "body ends inside a frame");
		} else {
			char text[64];
			snprintf(text, sizeof(text), "{\"ok\":true,\"stored\":%lu}", q->stored);
			return reply_text(c, text);
		}
	case R_PING:
	case R_MANIFEST:
		break;
	}
	return MHD_NO;
}

/* ---- the MHD callbacks -------------------------------------------------- */

/*
 * --fail-rate N: fail 1 request in N on average. Not every N-th request: a
 * client whose retry loop makes a multiple of N requests would then meet
 * the failure at the same step every time and never get through. The n-th
 * request fails if a hash (splitmix64) of n is 0 mod N: well spread, yet the
 * same sequence on every run, so a failing test can be replayed.
 */
static int inject_failure(struct http_server *s)
{
	uint64_t z = (uint64_t)atomic_fetch_add(&s->requests, 1) + 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return z % s->cfg.fail_rate == 0;
}

/* First call of a request: route it, answer what needs no body, refuse a
 * declared body over the cap before reading it. */
static enum MHD_Result start(struct http_server *s, struct req *q, struct MHD_Connection *c,
			     const char *url, const char *method)
{
	int found = -1;
	const char *allowed = NULL;
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (strcmp(url, routes[i].url) != 0)
			continue;
		allowed = routes[i].method;
		if (strcmp(method, routes[i].method) == 0)
			found = (int)i;
	}
	if (found < 0) {
		q->answered = 1;
		log_warn("%s %s: %s", method, url, allowed ? "method not allowed" : "no such route");
		return allowed ? reply_error_hdr(c, MHD_HTTP_METHOD_NOT_ALLOWED, EOPNOTSUPP,
						 "method not allowed", MHD_HTTP_HEADER_ALLOW, allowed) :
				 reply_error(c, MHD_HTTP_NOT_FOUND, ENOENT, "no such route");
	}
	q->route = routes[found].route;
	q->body_max = routes[found].body_max;

	if (s->cfg.fail_rate && q->route != R_PING && inject_failure(s)) {
		q->answered = 1;
		log_info("%s %s: injected failure (--fail-rate)", method, url);
		return reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, EAGAIN, "injected failure");
	}
	if (q->route == R_PING) {
		q->answered = 1;
		/* "delta": file ops may be deltas of a recorded list */
		return reply_text(c, "{\"ok\":true,\"version\":1,\"delta\":true}");
	}
	if (q->route == R_MANIFEST) {
		q->answered = 1;
		return do_manifest(s, c);
	}

	const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl) {
		char *end;
		errno = 0;
		unsigned long long n = strtoull(cl, &end, 10);
		if (errno || *end || n > q->body_max) {
			q->answered = 1;
			log_warn("%s %s: body of %s bytes over the cap", method, url, cl);
			return reply_error(c, MHD_HTTP_CONTENT_TOO_LARGE, EMSGSIZE, "body too large");
		}
	}
	if (q->route == R_CHUNKS) {
		frame_parser_init(&q->fp);
		q->fp_ready = 1;
		if (!(q->raw = malloc(CHUNK_PROTO_MAX))) {
			q->answered = 1;
			return reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, ENOMEM, "out of memory");
		}
	} else {
		buf_init(&q->body, q->body_max);
	}
	return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct http_server *s = cls;
	struct req *q = *con_cls;
	(void)version;

	if (!q) {
		if (!(q = calloc(1, sizeof(*q))))
			return MHD_NO;
		buf_init(&q->body, 1);
		*con_cls = q; /* freed by on_completed() */
		return start(s, q, c, url, method);
	}
	if (*upload_size) {
		if (!q->answered)
			take_body(s, q, upload, *upload_size);
		*upload_size = 0;
		/* Discarding after a failure is bounded: past the largest body
		 * any route accepts, the connection is dropped. */
		if (q->fail_status && q->total > (uint64_t)PROTO_CHUNKS_BODY_MAX + 1)
			return MHD_NO;
		return MHD_YES;
	}
	if (q->answered)
		return MHD_YES;
	return finish(s, q, c);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode why)
{
	struct req *q = *con_cls;
	(void)cls;
	(void)c;
	if (!q)
		return;
	if (why != MHD_REQUEST_TERMINATED_COMPLETED_OK && why != MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN)
		log_debug("request ended early (%d)", (int)why);
	buf_release(&q->body);
	if (q->fp_ready)
		frame_parser_release(&q->fp);
	free(q->raw);
	free(q);
	*con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	(void)cls;
	vsnprintf(line, sizeof(line), fmt, ap);
	size_t n = strlen(line);
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	log_debug("libmicrohttpd: %s", line);
}

int http_start(struct http_server *s, int listen_fd, const struct http_cfg *cfg)
{
	s->cfg = *cfg;
	atomic_init(&s->requests, 0);
	s->daemon = MHD_start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG,
		0, NULL, NULL, on_request, s,
		MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s, /* first, to catch everything */
		MHD_OPTION_LISTEN_SOCKET, listen_fd,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_MAX_CONNECTIONS,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_TIMEOUT_SECONDS,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
		MHD_OPTION_END);
	return s->daemon ? 0 : -EIO;
}

void http_stop(struct http_server *s)
{
	if (!s || !s->daemon)
		return;
	MHD_stop_daemon(s->daemon);
	s->daemon = NULL;
}
