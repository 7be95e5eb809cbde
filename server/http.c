#define _GNU_SOURCE
#include "http.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <sodium.h>

#include "buf.h"
#include "bundle.h"
#include "chunker.h"
#include "compress.h"
#include "frame.h"
#include "hash.h"
#include "json.h"
#include "log.h"
#include "manifest.h"
#include "path.h"
#include "proto.h"
#include "route.h"

/* A manifest line, escaped, fits easily; longer lines are left out. */
#define MANIFEST_LINE_BUF (64 * 1024)
#define MANIFEST_BLOCK (64 * 1024)
/* A scrape of /metrics is a few KiB. */
#define METRICS_MAX (1024 * 1024)
/* The body of a request answered before it was read (a GET with a body,
 * say) is discarded up to this much, then the connection is dropped. */
#define DISCARD_MAX (1024 * 1024)

/* A bundle's chunks are kept in memory up to this much (the rest go to the
 * store, as uploads do): its ops then build their files from them without
 * a pack write, a read back and a second hash. A client's bundle is a few
 * MiB. */
#define BUNDLE_INLINE_MAX (8u * 1024 * 1024)

struct inl_chunk {
	struct hash_id id;
	uint32_t len;
	size_t off; /* in req.inl */
};

/* A client's compression stream over the bundles of one connection
 * (X-Mirror-Stream, docs/PROTOCOL.md): the decoder keeps its history from
 * one request to the next, so a file is compressed with what came before
 * it as context, as in one stream over the whole upload. */
struct zstream {
	uint64_t id;    /* chosen by the client */
	uint64_t next;  /* the position the next request must carry */
	void *zd;       /* ZSTD_DStream *, owned */
};

/* Per-connection state (MHD's socket_context). */
struct conn {
	struct guard_conn *gc; /* owned by the guard, may be NULL */
	struct zstream *zs;    /* owned, NULL: none */
};

static void zstream_free(struct zstream *z)
{
	if (!z)
		return;
	bundle_dstream_free(z->zd);
	free(z);
}

/* One op of a bundle, with its queue sequence number. */
struct bundle_op {
	struct proto_op op;
	uint64_t seq;
	int has_seq;
};

/* Per-request state, from the first call of the handler to
 * on_completed(). Owned by MHD's con_cls slot. */
struct req {
	struct http_server *s;    /* borrowed */
	enum route route;         /* R_NONE until routed */
	size_t body_max;
	struct guard_conn *gc;    /* the connection's deadlines, may be NULL */
	struct conn *cn;          /* the connection's state, may be NULL */
	int streamed;             /* R_BUNDLE: decoded with cn->zs */
	int answered;             /* a response is queued: ignore the rest */
	unsigned status;          /* of the queued response; 0: none yet */
	uint64_t total;           /* body bytes received */
	struct buf body;          /* R_QUERY, R_OP, R_SIG: the JSON text */
	struct frame_parser fp;   /* R_CHUNKS */
	int fp_ready;
	int staged;               /* R_CHUNKS, R_BUNDLE: frames carry offsets into stage */
	uint8_t stage[PROTO_STAGE_LEN];
	uint8_t *raw;             /* R_CHUNKS: decompression buffer (owned) */
	unsigned long stored;     /* R_CHUNKS, R_BUNDLE: chunks stored so far */
	struct bundle_parser bp;  /* R_BUNDLE */
	int bp_ready;
	struct bundle_op *bops;   /* R_BUNDLE: its ops, parsed (owned) */
	size_t nbops;
	struct buf inl;           /* R_BUNDLE: verified chunk bytes in memory */
	struct inl_chunk *inlv;   /* R_BUNDLE: where each lies in inl (owned) */
	size_t ninl, ainl;
	int zbody;                /* R_OP, R_QUERY, R_SIG: the body is zstd (Content-Encoding) */
	int refs;                 /* R_BUNDLE: "refs": short frames, ops name them */
	int brief;                /* R_BUNDLE: "brief": all applied -> no results list */
	struct proto_chunk *fids; /* R_BUNDLE with refs: each frame's id (owned) */
	size_t nfids, afids;
	/* A failure found while the body is still arriving: MHD 0.9.75 cannot
	 * answer before the body is read, so it is answered at its end and
	 * nothing more is processed. */
	unsigned fail_status;
	int fail_err;
	const char *fail_msg;
};

/* ---- replies ------------------------------------------------------------ */

/* Queue resp with status and note the status for the metrics. */
static enum MHD_Result queue(struct req *q, struct MHD_Connection *c, unsigned status,
			     struct MHD_Response *resp)
{
	enum MHD_Result r = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp); /* MHD keeps its own reference */
	if (r == MHD_YES)
		q->status = status;
	return r;
}

/* A request failed for want of space: make some from uploads clients gave
 * up on, so that the retry may succeed (store.h, store_reclaim). */
static void disk_full(struct http_server *s)
{
	long long now = (long long)time(NULL), last = atomic_load(&s->reclaimed_at);
	if (now == last || !atomic_compare_exchange_strong(&s->reclaimed_at, &last, now))
		return;
	int n = store_reclaim(s->cfg.store, HTTP_RECLAIM_IDLE);
	if (n > 0)
		log_info("disk full: dropped %d chunks of uploads idle for %d s", n,
			 HTTP_RECLAIM_IDLE);
}

static enum MHD_Result queue_buf(struct req *q, struct MHD_Connection *c, unsigned status,
				 struct buf *b, const char *ctype, const char *extra_header,
				 const char *extra_value)
{
	if (status == MHD_HTTP_INSUFFICIENT_STORAGE)
		disk_full(q->s);
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
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
				ctype ? ctype : "application/json");
	if (extra_header)
		MHD_add_response_header(resp, extra_header, extra_value);
	return queue(q, c, status, resp);
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
static enum MHD_Result reply_error_hdr(struct req *q, struct MHD_Connection *c, unsigned status,
				       int err, const char *msg, const char *hdr, const char *value)
{
	struct buf b;
	buf_init(&b, 0);
	if (error_head(&b, err, msg) < 0 || buf_append(&b, "}", 1) < 0) {
		buf_release(&b);
		return MHD_NO;
	}
	return queue_buf(q, c, status, &b, NULL, hdr, value);
}

static enum MHD_Result reply_error(struct req *q, struct MHD_Connection *c, unsigned status,
				   int err, const char *msg)
{
	return reply_error_hdr(q, c, status, err, msg, NULL, NULL);
}

static enum MHD_Result reply_text(struct req *q, struct MHD_Connection *c, const char *json)
{
	struct buf b;
	buf_init(&b, 0);
	if (buf_append(&b, json, strlen(json)) < 0) {
		buf_release(&b);
		return MHD_NO;
	}
	return queue_buf(q, c, MHD_HTTP_OK, &b, NULL, NULL, NULL);
}

/* {"ok":...,"missing":[i,...]} for query (ok) and 409 (error). */
static enum MHD_Result reply_missing(struct req *q, struct MHD_Connection *c, int ok,
				     const size_t *idx, size_t n)
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
	return queue_buf(q, c, ok ? MHD_HTTP_OK : MHD_HTTP_CONFLICT, &b, NULL, NULL, NULL);
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

static enum MHD_Result do_manifest(struct http_server *s, struct req *q,
				   struct MHD_Connection *c)
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
		return reply_error(q, c, MHD_HTTP_BAD_REQUEST, -r, "invalid path");
	}
	struct mstream *ms = calloc(1, sizeof(*ms));
	if (!ms)
		return reply_error(q, c, MHD_HTTP_INTERNAL_SERVER_ERROR, ENOMEM, "out of memory");
	buf_init(&ms->line, MANIFEST_LINE_BUF);
	if ((r = manifest_open(s->cfg.rootfd, sub, &ms->m)) < 0) {
		log_error("manifest %s: %s", sub, strerror(-r));
		mstream_free(ms);
		return reply_error(q, c, proto_status_for_errno(-r), -r, "cannot list");
	}
	struct MHD_Response *resp = MHD_create_response_from_callback(
		MHD_SIZE_UNKNOWN, MANIFEST_BLOCK, mstream_read, ms, mstream_free);
	if (!resp) {
		mstream_free(ms);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/x-ndjson");
	return queue(q, c, MHD_HTTP_OK, resp); /* MHD frees ms at the end */
}

/* ---- GET /metrics ------------------------------------------------------- */

static enum MHD_Result do_metrics(struct http_server *s, struct req *q,
				  struct MHD_Connection *c)
{
	struct buf b;
	buf_init(&b, METRICS_MAX);
	int r = metrics_render(s->metrics, s->cfg.rootfd, &b);
	if (r < 0) {
		buf_release(&b);
		log_error("metrics: %s", strerror(-r));
		return reply_error(q, c, MHD_HTTP_INTERNAL_SERVER_ERROR, -r, "cannot render metrics");
	}
	return queue_buf(q, c, MHD_HTTP_OK, &b, "text/plain; version=0.0.4; charset=utf-8", NULL,
			 NULL);
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

/* Keep a bundle's verified chunk in memory. 0, or -ENOSPC when over
 * BUNDLE_INLINE_MAX (or out of memory): then it goes to the store. */
static int keep_inline(struct req *q, const struct hash_id *id, const uint8_t *raw, uint32_t len)
{
	if (q->ninl == q->ainl) {
		size_t na = q->ainl ? 2 * q->ainl : 64;
		struct inl_chunk *v = realloc(q->inlv, na * sizeof(*v));
		if (!v)
			return -ENOSPC;
		q->inlv = v;
		q->ainl = na;
	}
	size_t off = q->inl.len;
	if (buf_append(&q->inl, raw, len) < 0)
		return -ENOSPC;
	q->inlv[q->ninl++] = (struct inl_chunk){ *id, len, off };
	return 0;
}

/* struct apply_inline's lookup over a bundle's chunks. */
static const uint8_t *inline_get(void *arg, const struct hash_id *id, uint32_t len)
{
	struct req *q = arg;
	for (size_t i = 0; i < q->ninl; i++)
		if (q->inlv[i].len == len && memcmp(q->inlv[i].id.b, id->b, HASH_LEN) == 0)
			return (const uint8_t *)q->inl.data + q->inlv[i].off;
	return NULL;
}

/* A frame of a bundle with refs: its ops may name it by position. 0, or
 * -1 with the request failed (too many frames, out of memory). */
static int note_frame(struct req *q, const struct hash_id *id, uint32_t len)
{
	if (q->nfids == PROTO_BUNDLE_MAX_FRAMES) {
		fail_later(q, MHD_HTTP_CONTENT_TOO_LARGE, E2BIG, "too many frames");
		return -1;
	}
	if (q->nfids == q->afids) {
		size_t na = q->afids ? 2 * q->afids : 256;
		struct proto_chunk *v = realloc(q->fids, na * sizeof(*v));
		if (!v) {
			fail_later(q, MHD_HTTP_INTERNAL_SERVER_ERROR, ENOMEM, "out of memory");
			return -1;
		}
		q->fids = v;
		q->afids = na;
	}
	q->fids[q->nfids++] = (struct proto_chunk){ .id = *id, .len = len };
	return 0;
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
	/* A short frame has no id to check: its id is what its bytes hash to. */
	if (!f->noid && !hash_equal(&got, &f->id)) {
		fail_later(q, MHD_HTTP_BAD_REQUEST, EBADMSG, "chunk does not match its id");
		return;
	}
	if (q->refs && note_frame(q, &got, f->raw_len) < 0)
		return;
	if (q->route == R_BUNDLE && q->nbops && keep_inline(q, &got, raw, f->raw_len) == 0) {
		q->stored++;
		metrics_add(s->metrics, M_CHUNKS_RECEIVED, 1);
		return;
	}
	int r = f->staged ? store_stage_put(s->cfg.store, q->stage, f->off, &got, raw, f->raw_len)
			  : store_put(s->cfg.store, &got, raw, f->raw_len);
	if (r < 0) {
		log_error("cannot store a chunk: %s", strerror(-r));
		fail_later(q, proto_status_for_errno(-r), -r, "cannot store chunk");
		return;
	}
	q->stored++;
	metrics_add(s->metrics, M_CHUNKS_RECEIVED, 1);
}

/* ---- POST /v1/bundle ---------------------------------------------------- */

static void bundle_ops_free(struct req *q)
{
	for (size_t i = 0; i < q->nbops; i++)
		proto_op_release(&q->bops[i].op);
	free(q->bops);
	q->bops = NULL;
	q->nbops = 0;
}

/* The bundle's JSON, complete: every op is parsed and checked before any
 * chunk is taken, so a bad op costs nothing and nothing is applied. */
static int bundle_json(void *arg, const char *json, size_t len)
{
	struct req *q = arg;
	const char *why = "malformed json";
	unsigned status = MHD_HTTP_BAD_REQUEST;
	int err = EINVAL;
	cJSON *j = NULL;

	if (proto_json_has_nul(json, len)) {
		why = "nul in json";
		goto fail;
	}
	if (!(j = cJSON_ParseWithLength(json, len)))
		goto fail;
	/* {"ops":[op,...]}: two levels above an op */
	if (proto_json_depth(j) > PROTO_JSON_DEPTH_MAX + 2) {
		why = "json nested too deeply";
		goto fail;
	}
	const cJSON *refs = cJSON_GetObjectItemCaseSensitive(j, "refs");
	if (refs && !cJSON_IsBool(refs)) {
		why = "malformed refs";
		goto fail;
	}
	q->refs = cJSON_IsTrue(refs);
	/* "stage" (chunks only): the frames carry offsets into that stage. */
	const cJSON *stage = cJSON_GetObjectItemCaseSensitive(j, "stage");
	if (stage &&
	    (!cJSON_IsString(stage) || proto_stage_from_hex(stage->valuestring, q->stage) < 0)) {
		why = "malformed stage";
		goto fail;
	}
	q->staged = stage != NULL;
	const cJSON *brief = cJSON_GetObjectItemCaseSensitive(j, "brief");
	if (brief && !cJSON_IsBool(brief)) {
		why = "malformed brief";
		goto fail;
	}
	q->brief = cJSON_IsTrue(brief);
	const cJSON *ops = cJSON_GetObjectItemCaseSensitive(j, "ops"), *e;
	int n = cJSON_IsArray(ops) ? cJSON_GetArraySize(ops) : -1;
	if (n < 0) {
		why = "missing op list";
		goto fail;
	}
	if (n > PROTO_BUNDLE_MAX_OPS) {
		why = "too many ops";
		status = MHD_HTTP_CONTENT_TOO_LARGE;
		err = E2BIG;
		goto fail;
	}
	/* No ops: chunks only (a large file's, sent in the compression
	 * stream), every one goes to the store. */
	if (n > 0 && !(q->bops = calloc((size_t)n, sizeof(*q->bops)))) {
		why = "out of memory";
		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		err = ENOMEM;
		goto fail;
	}
	cJSON_ArrayForEach(e, ops) {
		struct bundle_op *b = &q->bops[q->nbops];
		int r = proto_op_from_json_flags(e, q->refs ? PROTO_REFS : 0, &b->op, &why);
		if (r < 0) {
			status = r == -E2BIG ? MHD_HTTP_CONTENT_TOO_LARGE :
				 r == -ENOMEM ? MHD_HTTP_INTERNAL_SERVER_ERROR : MHD_HTTP_BAD_REQUEST;
			err = -r;
			goto fail;
		}
		q->nbops++;
		const cJSON *seq = cJSON_GetObjectItemCaseSensitive(e, "seq");
		if (seq) {
			if (!cJSON_IsNumber(seq) || seq->valuedouble < 0 ||
			    seq->valuedouble > 9007199254740992.0 ||
			    seq->valuedouble != (double)(uint64_t)seq->valuedouble) {
				why = "malformed seq";
				goto fail;
			}
			b->seq = (uint64_t)seq->valuedouble;
			b->has_seq = 1;
		}
	}
	cJSON_Delete(j);
	if (q->refs)
		bundle_parser_short_frames(&q->bp);
	if (q->staged)
		bundle_parser_staged_frames(&q->bp);
	return 0;
fail:
	log_warn("rejecting bundle: %s", why);
	cJSON_Delete(j);
	bundle_ops_free(q);
	fail_later(q, status, err, why);
	return -EINVAL;
}

static int bundle_frame(void *arg, const struct frame *f)
{
	struct req *q = arg;
	take_frame(q->s, q, f);
	return q->fail_status ? -EIO : 0;
}

/* len more body bytes (q->total already counts them). */
static void take_body(struct http_server *s, struct req *q, const char *data, size_t len)
{
	if (q->fail_status)
		return; /* discarding the rest */
	if (q->total > q->body_max) {
		fail_later(q, MHD_HTTP_CONTENT_TOO_LARGE, EMSGSIZE, "body too large");
		return;
	}
	if (q->route == R_BUNDLE) {
		struct bundle_cb cb = { bundle_json, bundle_frame, q };
		int r = bundle_parser_feed(&q->bp, (const uint8_t *)data, len, &cb);
		if (r == -EMSGSIZE)
			fail_later(q, MHD_HTTP_CONTENT_TOO_LARGE, EMSGSIZE, "body too large");
		else if (r == -ENOMEM)
			fail_later(q, MHD_HTTP_INTERNAL_SERVER_ERROR, ENOMEM, "out of memory");
		else if (r < 0)
			fail_later(q, MHD_HTTP_BAD_REQUEST, EBADMSG, "invalid bundle body");
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
	if (q->zbody) {
		struct buf plain;
		buf_init(&plain, q->body_max + 1);
		int r = decompress_body((const uint8_t *)q->body.data, q->body.len, q->body_max,
					&plain);
		if (r < 0) {
			buf_release(&plain);
			log_warn("request with a body that does not decode");
			*ret = r == -EMSGSIZE ? reply_error(q, c, MHD_HTTP_CONTENT_TOO_LARGE, EMSGSIZE,
							    "body too large once decoded")
			       : r == -ENOMEM ? reply_error(q, c, MHD_HTTP_INTERNAL_SERVER_ERROR,
							    ENOMEM, "out of memory")
					      : reply_error(q, c, MHD_HTTP_BAD_REQUEST, EBADMSG,
							    "body is not one zstd frame of declared size");
			return NULL;
		}
		buf_release(&q->body);
		q->body = plain;
		q->zbody = 0;
	}
	if (proto_json_has_nul(q->body.data ? q->body.data : "", q->body.len)) {
		log_warn("request with a nul in its json");
		*ret = reply_error(q, c, MHD_HTTP_BAD_REQUEST, EINVAL, "nul in json");
		return NULL;
	}
	cJSON *j = cJSON_ParseWithLength(q->body.data ? q->body.data : "", q->body.len);
	if (!j) {
		log_warn("request with malformed json");
		*ret = reply_error(q, c, MHD_HTTP_BAD_REQUEST, EINVAL, "malformed json");
		return NULL;
	}
	if (proto_json_depth(j) > PROTO_JSON_DEPTH_MAX) {
		cJSON_Delete(j);
		log_warn("request with json nested too deeply");
		*ret = reply_error(q, c, MHD_HTTP_BAD_REQUEST, EINVAL, "json nested too deeply");
		return NULL;
	}
	return j;
}

static enum MHD_Result do_query(struct http_server *s, struct req *q, struct MHD_Connection *c)
{
	enum MHD_Result ret = MHD_NO;
	size_t *missing = NULL, n = 0;
	struct hash_id *qids = NULL;
	uint32_t *lens = NULL;
	cJSON *j = parse_body(q, c, &ret);
	if (!j)
		return ret;
	const cJSON *ids = cJSON_GetObjectItemCaseSensitive(j, "ids");
	if (!cJSON_IsArray(ids)) {
		log_warn("chunk query without an id list");
		ret = reply_error(q, c, MHD_HTTP_BAD_REQUEST, EINVAL, "missing id list");
		goto out;
	}
	int count = cJSON_GetArraySize(ids);
	if (count > PROTO_QUERY_MAX_IDS) {
		log_warn("chunk query with %d ids (over %d)", count, PROTO_QUERY_MAX_IDS);
		ret = reply_error(q, c, MHD_HTTP_CONTENT_TOO_LARGE, E2BIG, "too many ids");
		goto out;
	}
	if (count > 0 && !(missing = malloc((size_t)count * sizeof(*missing)))) {
		ret = reply_error(q, c, MHD_HTTP_INTERNAL_SERVER_ERROR, ENOMEM, "out of memory");
		goto out;
	}
	if (count > 0 && (!(qids = malloc((size_t)count * sizeof(*qids))) ||
			  !(lens = calloc((size_t)count, sizeof(*lens))))) {
		ret = reply_error(q, c, MHD_HTTP_INTERNAL_SERVER_ERROR, ENOMEM, "out of memory");
		goto out;
	}
	size_t i = 0;
	uint64_t reused = 0, saved = 0;
	const cJSON *e;
	cJSON_ArrayForEach(e, ids) {
		if (!cJSON_IsString(e) ||
		    hash_from_hex(e->valuestring, strlen(e->valuestring), &qids[i]) < 0) {
			log_warn("chunk query with an invalid id at index %zu", i);
			ret = reply_error(q, c, MHD_HTTP_BAD_REQUEST, EINVAL, "invalid id");
			goto out;
		}
		i++;
	}
	/* Known: a hint, as the protocol says (the bytes are verified when
	 * used), where DIR holds the chunk (the index, one pass; its length
	 * goes to the metrics) or in the store of chunks in transit. */
	if (s->cfg.state && i > 0)
		(void)state_index_lens(s->cfg.state, qids, i, lens);
	for (size_t k = 0; k < i; k++) {
		if (lens[k]) {
			reused++;
			saved += lens[k];
		} else if (store_has(s->cfg.store, &qids[k])) {
			reused++;
		} else {
			missing[n++] = k;
		}
	}
	metrics_add(s->metrics, M_CHUNKS_REUSED, reused);
	metrics_add(s->metrics, M_BYTES_SAVED, saved);
	ret = reply_missing(q, c, 1, missing, n);
out:
	free(missing);
	free(qids);
	free(lens);
	cJSON_Delete(j);
	return ret;
}

/* POST /v1/sig: the signatures of ranges of a file (docs/PROTOCOL.md). */
static enum MHD_Result do_sig(struct http_server *s, struct req *q, struct MHD_Connection *c)
{
	enum MHD_Result ret = MHD_NO;
	uint64_t off[ROUTE_SIG_RANGES_MAX], len[ROUTE_SIG_RANGES_MAX], blocks = 0;
	size_t cnt[ROUTE_SIG_RANGES_MAX], nr = 0;
	uint8_t *sigs = NULL;
	char *b64 = NULL;
	struct buf b;
	int64_t v, w;
	buf_init(&b, 0);
	cJSON *j = parse_body(q, c, &ret);
	if (!j)
		return ret;
	const cJSON *path = cJSON_GetObjectItemCaseSensitive(j, "path");
	const cJSON *block = cJSON_GetObjectItemCaseSensitive(j, "block");
	const cJSON *ranges = cJSON_GetObjectItemCaseSensitive(j, "ranges"), *e;
	if (!cJSON_IsString(path) || path_check(path->valuestring, strlen(path->valuestring), 0) < 0 ||
	    proto_json_int(block, RSIG_BLOCK_MIN, RSIG_BLOCK_MAX, &w) < 0 || !cJSON_IsArray(ranges)) {
		log_warn("signature request without a valid path, block or ranges");
		ret = reply_error(q, c, MHD_HTTP_BAD_REQUEST, EINVAL, "invalid signature request");
		goto out;
	}
	if (cJSON_GetArraySize(ranges) > ROUTE_SIG_RANGES_MAX) {
		ret = reply_error(q, c, MHD_HTTP_CONTENT_TOO_LARGE, E2BIG, "too many ranges");
		goto out;
	}
	cJSON_ArrayForEach(e, ranges) {
		if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2 ||
		    proto_json_int(e->child, 0, 9007199254740992.0, &v) < 0 ||
		    proto_json_int(e->child->next, 0, 9007199254740992.0, (int64_t *)&len[nr]) < 0) {
			ret = reply_error(q, c, MHD_HTTP_BAD_REQUEST, EINVAL, "invalid range");
			goto out;
		}
		off[nr] = (uint64_t)v;
		blocks += len[nr++] / (uint64_t)w;
	}
	if (blocks > RSIG_BLOCKS_MAX) {
		ret = reply_error(q, c, MHD_HTTP_CONTENT_TOO_LARGE, E2BIG, "too many blocks");
		goto out;
	}
	if (!(sigs = malloc(blocks ? blocks * RSIG_ENTRY : 1))) {
		ret = reply_error(q, c, MHD_HTTP_INTERNAL_SERVER_ERROR, ENOMEM, "out of memory");
		goto out;
	}
	int r = apply_signatures(s->cfg.apply, path->valuestring, (uint32_t)w, off, len, nr, sigs,
				 cnt);
	if (r < 0) {
		/* Signatures are optional: a file that cannot be read now is a
		 * 409 (the client sends its chunks whole), not a 5xx it would
		 * retry. */
		ret = r == -ENOENT   ? reply_error(q, c, MHD_HTTP_NOT_FOUND, ENOENT, "no such file")
		      : r == -ENOMEM ? reply_error(q, c, MHD_HTTP_INTERNAL_SERVER_ERROR, ENOMEM,
						   "out of memory")
				     : reply_error(q, c, MHD_HTTP_CONFLICT, -r, "cannot read the file");
		goto out;
	}
	size_t blen = sodium_base64_encoded_len(blocks * RSIG_ENTRY, sodium_base64_VARIANT_ORIGINAL);
	if (!(b64 = malloc(blen)) || buf_appendf(&b, "{\"ok\":true,\"block\":%lld,\"sigs\":[",
						   (long long)w) < 0)
		goto nomem;
	const uint8_t *p = sigs;
	for (size_t i = 0; i < nr; p += cnt[i] * RSIG_ENTRY, i++) {
		sodium_bin2base64(b64, blen, p, cnt[i] * RSIG_ENTRY, sodium_base64_VARIANT_ORIGINAL);
		if (buf_appendf(&b, "%s\"%s\"", i ? "," : "", b64) < 0)
			goto nomem;
	}
	if (buf_append(&b, "]}", 2) < 0)
		goto nomem;
	ret = queue_buf(q, c, MHD_HTTP_OK, &b, NULL, NULL, NULL);
	goto out;
nomem:
	ret = reply_error(q, c, MHD_HTTP_INTERNAL_SERVER_ERROR, ENOMEM, "out of memory");
out:
	buf_release(&b);
	free(b64);
	free(sigs);
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

/* Bytes of a delta commit's file that came from its base list: neither
 * queried nor uploaded (what the edits insert was). */
static uint64_t delta_kept(const struct proto_op *op)
{
	uint64_t inserted = 0;
	for (size_t i = 0; i < op->nedits; i++)
		for (size_t k = 0; k < op->edits[i].n; k++)
			inserted += op->edits[i].chunks[k].len;
	return op->size > inserted ? op->size - inserted : 0;
}

/* The HTTP status that apply_op()'s result r means for op. */
static unsigned op_status(const struct proto_op *op, int r)
{
	if (r == 0)
		return MHD_HTTP_OK;
	if (r == APPLY_MISSING)
		return MHD_HTTP_CONFLICT;
	/* A noreplace rename onto something: the client's view of the target
	 * is stale; 404 sends it to a full sync of the paths. */
	return op->kind == OP_RENAME && r == -EEXIST ? MHD_HTTP_NOT_FOUND :
						       proto_status_for_errno(-r);
}

static void op_metrics(struct http_server *s, const struct proto_op *op, int r,
		       const struct apply_result *res, uint64_t ns)
{
	metrics_apply_time(s->metrics, ns);
	if (r == -ENOSPC || r == -EDQUOT)
		disk_full(s); /* also for an op of a bundle, answered 200 */
	if (r == 0 && !res->replayed && op->kind == OP_FILE && op->base_path)
		metrics_add(s->metrics, M_BYTES_SAVED, delta_kept(op));
}

static uint64_t elapsed_ns(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (uint64_t)((t1.tv_sec - t0->tv_sec) * 1000000000LL + (t1.tv_nsec - t0->tv_nsec));
}

/* Apply one op, timed for the metrics. Returns apply_op()'s result;
 * *status: the HTTP status it means. */
static int apply_one(struct http_server *s, const struct proto_op *op,
		     const struct apply_origin *origin, struct apply_result *res, unsigned *status)
{
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int r = apply_op(s->cfg.apply, op, origin, res);
	op_metrics(s, op, r, res, elapsed_ns(&t0));
	*status = op_status(op, r);
	return r;
}

static enum MHD_Result do_op(struct http_server *s, struct req *q, struct MHD_Connection *c)
{
	enum MHD_Result ret = MHD_NO;
	struct proto_op op;
	struct apply_origin origin;
	struct apply_result res;
	const char *why;
	unsigned status;

	if (get_origin(c, &origin) < 0) {
		log_warn("op with malformed X-Mirror-Client or X-Mirror-Seq");
		return reply_error(q, c, MHD_HTTP_BAD_REQUEST, EINVAL,
				   "malformed x-mirror-client or x-mirror-seq");
	}
	cJSON *j = parse_body(q, c, &ret);
	if (!j)
		return ret;
	int r = proto_op_from_json(j, &op, &why);
	cJSON_Delete(j);
	if (r < 0) {
		log_warn("rejecting op: %s", why);
		status = r == -E2BIG ? MHD_HTTP_CONTENT_TOO_LARGE :
			 r == -ENOMEM ? MHD_HTTP_INTERNAL_SERVER_ERROR : MHD_HTTP_BAD_REQUEST;
		return reply_error(q, c, status, -r, why);
	}
	r = apply_one(s, &op, &origin, &res, &status);
	if (r == APPLY_MISSING)
		ret = reply_missing(q, c, 0, res.missing, res.nmissing);
	else if (r < 0)
		ret = reply_error(q, c, status, -r, strerror(-r));
	else
		ret = reply_text(q, c, res.replayed ? "{\"ok\":true,\"replayed\":true}" : "{\"ok\":true}");
	apply_result_release(&res);
	proto_op_release(&op);
	return ret;
}

/* Apply a bundle's ops in order; each gets its own result, as POST /v1/op
 * would have answered it, with the status as a member. */
static enum MHD_Result do_bundle(struct http_server *s, struct req *q, struct MHD_Connection *c)
{
	struct apply_origin origin;
	struct buf b;
	int r;

	if (bundle_parser_finish(&q->bp) < 0) {
		log_warn("bundle body ends early");
		return reply_error(q, c, MHD_HTTP_BAD_REQUEST, EBADMSG, "body ends inside the bundle");
	}
	if (get_origin(c, &origin) < 0) {
		log_warn("bundle with malformed X-Mirror-Client or X-Mirror-Seq");
		return reply_error(q, c, MHD_HTTP_BAD_REQUEST, EINVAL,
				   "malformed x-mirror-client or x-mirror-seq");
	}
	/* Every ref names a frame of this body: checked before anything is
	 * applied. */
	for (size_t i = 0; i < q->nbops; i++) {
		const char *why;
		if (proto_op_resolve_refs(&q->bops[i].op, q->fids, q->nfids, &why) < 0) {
			log_warn("rejecting bundle: %s", why);
			return reply_error(q, c, MHD_HTTP_BAD_REQUEST, EINVAL, why);
		}
	}
	if (q->nbops == 0) {
		buf_init(&b, 0);
		if ((r = buf_appendf(&b, "{\"ok\":true,\"stored\":%lu,\"results\":[]}",
				     q->stored)) < 0) {
			buf_release(&b);
			return reply_error(q, c, MHD_HTTP_INTERNAL_SERVER_ERROR, ENOMEM,
					   "out of memory");
		}
		return queue_buf(q, c, MHD_HTTP_OK, &b, NULL, NULL, NULL);
	}
	struct apply_inline inl = { inline_get, q };
	struct apply_item *items = calloc(q->nbops, sizeof(*items));
	struct timespec t0;
	if (!items)
		return reply_error(q, c, MHD_HTTP_INTERNAL_SERVER_ERROR, ENOMEM, "out of memory");
	origin.inl = &inl;
	for (size_t i = 0; i < q->nbops; i++) {
		items[i].op = &q->bops[i].op;
		items[i].origin = origin;
		items[i].origin.seq = q->bops[i].seq;
		items[i].origin.has_seq = q->bops[i].has_seq;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	apply_many(s->cfg.apply, items, q->nbops);
	uint64_t each = elapsed_ns(&t0) / q->nbops;
	/* brief: when every op was applied plainly, their count stands for
	 * the list of {"ok":true} (12 bytes an op, the most of what a first
	 * upload receives). */
	int plain = q->brief;
	for (size_t i = 0; plain && i < q->nbops; i++)
		plain = items[i].r == 0 && !items[i].res.replayed;
	buf_init(&b, 0);
	if (plain)
		r = buf_appendf(&b, "{\"ok\":true,\"stored\":%lu,\"applied\":%zu", q->stored,
				q->nbops);
	else
		r = buf_appendf(&b, "{\"ok\":true,\"stored\":%lu,\"results\":[", q->stored);
	for (size_t i = 0; r == 0 && i < q->nbops; i++) {
		struct apply_item *it = &items[i];
		int a = it->r;
		unsigned status = op_status(it->op, a);
		op_metrics(s, it->op, a, &it->res, each);
		if (plain)
			continue;
		if (i)
			r = buf_append(&b, ",", 1);
		if (r == 0 && a == 0)
			r = buf_appendf(&b, "{\"ok\":true%s}", it->res.replayed ? ",\"replayed\":true" : "");
		else if (r == 0 && a == APPLY_MISSING)
			r = error_head(&b, ENOENT, "chunks missing");
		else if (r == 0)
			r = error_head(&b, -a, strerror(-a));
		if (r == 0 && a != 0)
			r = buf_appendf(&b, ",\"status\":%u", status);
		if (r == 0 && a == APPLY_MISSING) {
			r = buf_append(&b, ",\"missing\":[", 12);
			for (size_t k = 0; r == 0 && k < it->res.nmissing; k++)
				r = buf_appendf(&b, k ? ",%zu" : "%zu", it->res.missing[k]);
			if (r == 0)
				r = buf_append(&b, "]", 1);
		}
		if (r == 0 && a != 0)
			r = buf_append(&b, "}", 1);
	}
	for (size_t i = 0; i < q->nbops; i++)
		apply_result_release(&items[i].res);
	free(items);
	if (r == 0)
		r = plain ? buf_append(&b, "}", 1) : buf_append(&b, "]}", 2);
	if (r < 0) {
		buf_release(&b);
		return reply_error(q, c, MHD_HTTP_INTERNAL_SERVER_ERROR, ENOMEM, "out of memory");
	}
	return queue_buf(q, c, MHD_HTTP_OK, &b, NULL, NULL, NULL);
}

static enum MHD_Result finish(struct http_server *s, struct req *q, struct MHD_Connection *c)
{
	q->answered = 1;
	if (q->fail_status) {
		log_warn("request failed: %s", q->fail_msg);
		return reply_error(q, c, q->fail_status, q->fail_err, q->fail_msg);
	}
	switch (q->route) {
	case R_QUERY:
		return do_query(s, q, c);
	case R_OP:
		return do_op(s, q, c);
	case R_SIG:
		return do_sig(s, q, c);
	case R_BUNDLE:
		return do_bundle(s, q, c);
	case R_CHUNKS:
		if (!frame_parser_idle(&q->fp)) {
			log_warn("chunk upload ends inside a frame");
			return reply_error(q, c, MHD_HTTP_BAD_REQUEST, EBADMSG, "body ends inside a frame");
		} else {
			char text[64];
			snprintf(text, sizeof(text), "{\"ok\":true,\"stored\":%lu}", q->stored);
			return reply_text(q, c, text);
		}
	case R_PING:
	case R_MANIFEST:
	case R_METRICS:
	case R_NONE:
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

/* The printable address of c's peer, for the log ("?" if unknown). */
static void peer_name(struct MHD_Connection *c, char *out, size_t len)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	snprintf(out, len, "?");
	if (!ci || !ci->client_addr)
		return;
	socklen_t alen = ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) :
								   sizeof(struct sockaddr_in);
	if (getnameinfo(ci->client_addr, alen, out, (socklen_t)len, NULL, 0, NI_NUMERICHOST) != 0)
		snprintf(out, len, "?");
}

/* 1 if the request declares a body (libmicrohttpd will hand it over in
 * later calls of the handler). */
static int declares_body(struct MHD_Connection *c)
{
	const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_CONTENT_LENGTH);
	return (cl && strspn(cl, "0") != strlen(cl)) ||
	       MHD_lookup_connection_value(c, MHD_HEADER_KIND,
					   MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL;
}

/* X-Mirror-Stream: <16 hex digits>-<decimal position>. 0 or -EINVAL. */
static int parse_stream(const char *v, uint64_t *id, uint64_t *pos)
{
	char *end;
	if (strlen(v) < 18 || strspn(v, "0123456789abcdefABCDEF") != 16 || v[16] != '-' ||
	    !v[17] || strspn(v + 17, "0123456789") != strlen(v + 17) || strlen(v + 17) > 18)
		return -EINVAL;
	*id = strtoull(v, &end, 16);
	*pos = strtoull(v + 17, &end, 10);
	return 0;
}

/* First call of a request: check the token, route it, answer what needs
 * no body, refuse a declared body over the cap before reading it. */
/* MHD_get_connection_values() callback: adds a header's size to *cls. */
static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
				    const char *value)
{
	size_t *n = cls;
	(void)kind;
	*n += strlen(key) + (value ? strlen(value) : 0) + 4; /* ": " and CRLF */
	return MHD_YES;
}

static enum MHD_Result start(struct http_server *s, struct req *q, struct MHD_Connection *c,
			     const char *url, const char *method)
{
	const char *allowed = NULL;
	const struct route_info *ri = route_lookup(url, method, &allowed);
	size_t hbytes = strlen(url) + strlen(method);

	/* libmicrohttpd's limit is its connection memory, which is larger
	 * (it also holds the body as it arrives): the headers' own cap. */
	MHD_get_connection_values(c, MHD_HEADER_KIND, count_header, &hbytes);
	if (hbytes > HTTP_HEADER_MAX) {
		q->answered = 1;
		log_warn("%s: request headers of %zu bytes (over %d)", method, hbytes,
			 HTTP_HEADER_MAX);
		return reply_error(q, c, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE, EMSGSIZE,
				   "request headers too large");
	}

	q->route = ri ? ri->route : R_NONE;
	/* The token comes before anything else: without it a client learns
	 * nothing, not even whether the route exists. */
	if (s->cfg.auth && !(ri && ri->route == R_METRICS && s->cfg.metrics_public) &&
	    !auth_check(s->cfg.auth, MHD_lookup_connection_value(c, MHD_HEADER_KIND,
								 MHD_HTTP_HEADER_AUTHORIZATION))) {
		char peer[64];
		peer_name(c, peer, sizeof(peer));
		q->answered = 1;
		metrics_add(s->metrics, M_AUTH_FAILURES, 1);
		log_warn("%s %s from %s: missing or wrong token", method, ri ? ri->url : "(unknown)",
			 peer);
		return reply_error_hdr(q, c, MHD_HTTP_UNAUTHORIZED, EACCES, "missing or wrong token",
				       MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"mirrord\"");
	}
	if (!ri) {
		q->answered = 1;
		log_warn("%s %s: %s", method, url, allowed ? "method not allowed" : "no such route");
		return allowed ? reply_error_hdr(q, c, MHD_HTTP_METHOD_NOT_ALLOWED, EOPNOTSUPP,
						 "method not allowed", MHD_HTTP_HEADER_ALLOW, allowed) :
				 reply_error(q, c, MHD_HTTP_NOT_FOUND, ENOENT, "no such route");
	}
	q->body_max = ri->body_max;

	if (s->cfg.fail_rate && q->route != R_PING && q->route != R_METRICS && inject_failure(s)) {
		q->answered = 1;
		log_info("%s %s: injected failure (--fail-rate)", method, url);
		return reply_error(q, c, MHD_HTTP_SERVICE_UNAVAILABLE, EAGAIN, "injected failure");
	}
	switch (q->route) {
	case R_PING:
		q->answered = 1;
		/* "delta": file ops may be deltas of a recorded list */
		return reply_text(q, c, "{\"ok\":true,\"version\":1,\"delta\":true,"
					"\"bundle\":true,\"stream\":true,\"refs\":true,\"bare\":true,"
					"\"zjson\":true,\"brief\":true,\"patch\":true,\"move\":true,"
					"\"stage\":true}");
	case R_MANIFEST:
		q->answered = 1;
		return do_manifest(s, q, c);
	case R_METRICS:
		q->answered = 1;
		return do_metrics(s, q, c);
	default:
		break;
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
			return reply_error(q, c, MHD_HTTP_CONTENT_TOO_LARGE, EMSGSIZE, "body too large");
		}
	}
	const char *ce = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_CONTENT_ENCODING);
	int z = ce && strcasecmp(ce, "zstd") == 0;
	if ((q->route == R_BUNDLE || q->route == R_OP || q->route == R_QUERY || q->route == R_SIG) &&
	    ce && !z &&
	    strcasecmp(ce, "identity") != 0) {
		q->answered = 1;
		log_warn("%s %s: unsupported content-encoding", method, url);
		return reply_error(q, c, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, EINVAL,
				   "unsupported content-encoding (zstd or identity)");
	}
	if (q->route == R_OP || q->route == R_QUERY || q->route == R_SIG)
		q->zbody = z;
	if (q->route == R_BUNDLE) {
		const char *sh = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Mirror-Stream");
		uint64_t sid = 0, spos = 0;
		if (sh && (!z || parse_stream(sh, &sid, &spos) < 0)) {
			q->answered = 1;
			log_warn("%s %s: malformed x-mirror-stream", method, url);
			return reply_error(q, c, MHD_HTTP_BAD_REQUEST, EINVAL,
					   "malformed x-mirror-stream (or not zstd)");
		}
		struct conn *cn = q->cn;
		if (sh && cn && spos == 0) {
			/* A new stream on this connection. */
			zstream_free(cn->zs);
			cn->zs = calloc(1, sizeof(*cn->zs));
			if (cn->zs && !(cn->zs->zd = bundle_dstream_new())) {
				free(cn->zs);
				cn->zs = NULL;
			}
			if (cn->zs)
				cn->zs->id = sid;
		}
		int r = 0;
		if (sh && cn && cn->zs && cn->zs->id == sid && cn->zs->next == spos) {
			bundle_parser_init_stream(&q->bp, cn->zs->zd);
			q->streamed = 1;
		} else if (sh && spos != 0) {
			/* Not the stream this connection carries (a new
			 * connection, a lost answer): the client starts a new
			 * one. The body is discarded unread. */
			log_debug("%s %s: compression stream out of step", method, url);
			fail_later(q, MHD_HTTP_CONFLICT, ESTALE, "compression stream out of step");
		} else {
			r = bundle_parser_init(&q->bp, z);
		}
		if (r == 0)
			q->bp_ready = 1;
		buf_init(&q->inl, BUNDLE_INLINE_MAX);
		if (r < 0 || !(q->raw = malloc(CHUNK_PROTO_MAX))) {
			q->answered = 1;
			return reply_error(q, c, MHD_HTTP_INTERNAL_SERVER_ERROR, ENOMEM, "out of memory");
		}
	} else if (q->route == R_CHUNKS) {
		const char *st = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Mirror-Stage");
		if (st && proto_stage_from_hex(st, q->stage) < 0) {
			q->answered = 1;
			log_warn("%s %s: malformed x-mirror-stage", method, url);
			return reply_error(q, c, MHD_HTTP_BAD_REQUEST, EINVAL, "malformed x-mirror-stage");
		}
		frame_parser_init(&q->fp);
		q->fp.staged = q->staged = st != NULL;
		q->fp_ready = 1;
		if (!(q->raw = malloc(CHUNK_PROTO_MAX))) {
			q->answered = 1;
			return reply_error(q, c, MHD_HTTP_INTERNAL_SERVER_ERROR, ENOMEM, "out of memory");
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
		q->s = s;
		q->route = R_NONE;
		*con_cls = q; /* freed by on_completed() */
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
		q->cn = ci ? ci->socket_context : NULL;
		q->gc = q->cn ? q->cn->gc : NULL;
		int body = declares_body(c);
		guard_request_begin(s->guard, q->gc, body);
		enum MHD_Result r = start(s, q, c, url, method);
		/* Answered at once: libmicrohttpd reads no POST body after that
		 * (it closes the connection instead), so nothing more arrives. */
		if (q->answered && body && strcmp(method, MHD_HTTP_METHOD_POST) == 0)
			guard_request_work(s->guard, q->gc);
		return r;
	}
	if (*upload_size) {
		size_t n = *upload_size;
		*upload_size = 0;
		q->total += n;
		metrics_add(s->metrics, M_BYTES_RECEIVED, n);
		if (guard_body(s->guard, q->gc, n) < 0) {
			log_warn("%s %s: request body arriving too slowly, dropping the connection",
				 method, url);
			return MHD_NO;
		}
		if (!q->answered)
			take_body(s, q, upload, n);
		/* Discarding is bounded: past the largest body any route
		 * accepts (after a failure: its answer, a 413, is due at the
		 * end), or past DISCARD_MAX for a request answered before its
		 * body, the connection is dropped. */
		if (q->fail_status && q->total > (uint64_t)PROTO_CHUNKS_BODY_MAX + 1)
			return MHD_NO;
		if (q->answered && q->total > DISCARD_MAX)
			return MHD_NO;
		return MHD_YES;
	}
	if (q->answered)
		return MHD_YES;
	guard_request_work(s->guard, q->gc);
	return finish(s, q, c);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode why)
{
	struct http_server *s = cls;
	struct req *q = *con_cls;
	(void)c;
	if (!q)
		return;
	if (why != MHD_REQUEST_TERMINATED_COMPLETED_OK && why != MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN)
		log_debug("request ended early (%d)", (int)why);
	/* A response that could not be sent counts as no answer. */
	metrics_request(s->metrics, q->route,
			why == MHD_REQUEST_TERMINATED_COMPLETED_OK ? q->status : 0);
	guard_request_end(s->guard, q->gc);
	if (q->streamed && q->cn && q->cn->zs) {
		/* Only an answered success moves the stream on; after
		 * anything else the decoder's state is unknown to the client,
		 * which starts a new stream. */
		if (why == MHD_REQUEST_TERMINATED_COMPLETED_OK && q->status == MHD_HTTP_OK) {
			q->cn->zs->next++;
		} else {
			zstream_free(q->cn->zs);
			q->cn->zs = NULL;
		}
	}
	buf_release(&q->body);
	if (q->fp_ready)
		frame_parser_release(&q->fp);
	if (q->bp_ready)
		bundle_parser_release(&q->bp);
	bundle_ops_free(q);
	buf_release(&q->inl);
	free(q->inlv);
	free(q->fids);
	free(q->raw);
	free(q);
	*con_cls = NULL;
}

/* Connections come and go: the guard's list, the metrics' gauge. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
			  enum MHD_ConnectionNotificationCode code)
{
	struct http_server *s = cls;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *fd =
			MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		char peer[64];
		struct conn *cn = calloc(1, sizeof(*cn));
		peer_name(c, peer, sizeof(peer));
		if (cn && fd)
			cn->gc = guard_conn_open(s->guard, fd->connect_fd, peer);
		if (!cn || !cn->gc)
			log_warn("connection from %s: cannot guard its deadlines", peer);
		*socket_context = cn;
		metrics_connection(s->metrics, 1);
	} else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
		struct conn *cn = *socket_context;
		if (cn) {
			guard_conn_close(s->guard, cn->gc);
			zstream_free(cn->zs);
			free(cn);
		}
		*socket_context = NULL;
		metrics_connection(s->metrics, -1);
	}
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' :
	       c >= 'a' && c <= 'f' ? c - 'a' + 10 :
	       c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/*
 * libmicrohttpd decodes %HH in the URL and the query arguments with this.
 * Its own decoder turns %00 into a NUL, and the URL reaches the handler as
 * a C string: "/v1/ping%00anything" would be routed as "/v1/ping". A
 * string that decodes to a NUL is therefore replaced by a lone NUL: as
 * the URL it is "" (no route: 404), as an argument it has length 1 and a
 * NUL (path_check refuses it: 400). Otherwise %HH is decoded and anything
 * else (an invalid escape included) left as it is, as libmicrohttpd does.
 */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
	size_t w = 0;
	(void)cls;
	(void)c;
	for (size_t r = 0; s[r]; r++) {
		int hi, lo;
		if (s[r] == '%' && (hi = hexval(s[r + 1])) >= 0 && (lo = hexval(s[r + 2])) >= 0) {
			char v = (char)(hi * 16 + lo);
			if (v == '\0') {
				s[0] = '\0';
				return 1;
			}
			s[w++] = v;
			r += 2;
		} else {
			s[w++] = s[r];
		}
	}
	s[w] = '\0';
	return w;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct http_server *s = cls;
	char line[512];
	vsnprintf(line, sizeof(line), fmt, ap);
	size_t n = strlen(line);
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	/* While starting, a message is the reason the start fails (a bad
	 * certificate, ...); later they are routine (a client went away). */
	if (atomic_load(&s->starting))
		log_error("libmicrohttpd: %s", line);
	else
		log_debug("libmicrohttpd: %s", line);
}

int http_start(struct http_server *s, int listen_fd, const struct http_cfg *cfg)
{
	struct MHD_OptionItem opt[16];
	size_t n = 0;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
			 MHD_USE_ERROR_LOG;
	int r;

	s->cfg = *cfg;
	if (!s->cfg.timeout_s)
		s->cfg.timeout_s = HTTP_TIMEOUT_SECONDS;
	if (!s->cfg.max_connections)
		s->cfg.max_connections = HTTP_MAX_CONNECTIONS;
	if (!s->cfg.max_per_ip)
		s->cfg.max_per_ip = HTTP_MAX_PER_IP;
	atomic_init(&s->requests, 0);
	atomic_init(&s->starting, 1);
	s->daemon = NULL;
	s->guard = NULL;
	if (cfg->tls_cert && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
		return -ENOTSUP;
	if (!(s->metrics = metrics_new()))
		return -ENOMEM;
	struct guard_cfg gcfg = { .timeout_s = s->cfg.timeout_s, .min_rate = HTTP_BODY_MIN_RATE };
	if ((r = guard_start(&gcfg, s->metrics, &s->guard)) < 0)
		goto fail;

#define OPT(o, v, p) (opt[n++] = (struct MHD_OptionItem){ (o), (intptr_t)(v), (p) })
	OPT(MHD_OPTION_LISTEN_SOCKET, listen_fd, NULL);
	OPT(MHD_OPTION_CONNECTION_LIMIT, s->cfg.max_connections, NULL);
	OPT(MHD_OPTION_PER_IP_CONNECTION_LIMIT, s->cfg.max_per_ip, NULL);
	OPT(MHD_OPTION_CONNECTION_TIMEOUT, s->cfg.timeout_s, NULL);
	OPT(MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEMORY, NULL);
	OPT(MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, s);
	OPT(MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, s);
	OPT(MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)unescape, NULL);
	if (cfg->tls_cert) {
		flags |= MHD_USE_TLS;
		OPT(MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)cfg->tls_cert);
		OPT(MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)cfg->tls_key);
	}
	OPT(MHD_OPTION_END, 0, NULL);
#undef OPT
	_Static_assert(sizeof(opt) / sizeof(opt[0]) >= 11, "room for every option");

	s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s,
				     /* first, to catch everything */
				     MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
				     MHD_OPTION_ARRAY, opt, MHD_OPTION_END);
	atomic_store(&s->starting, 0);
	if (!s->daemon) {
		r = -EIO;
		goto fail;
	}
	return 0;
fail:
	guard_stop(s->guard);
	s->guard = NULL;
	metrics_free(s->metrics);
	s->metrics = NULL;
	return r;
}

void http_stop(struct http_server *s)
{
	if (!s || !s->daemon)
		return;
	MHD_stop_daemon(s->daemon); /* closes every connection: the guard's list empties */
	s->daemon = NULL;
	guard_stop(s->guard);
	s->guard = NULL;
	metrics_free(s->metrics);
	s->metrics = NULL;
}
