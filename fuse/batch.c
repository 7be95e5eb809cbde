#define _GNU_SOURCE
#include "batch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <unistd.h>

#include "bundle.h"
#include "chunker.h"
#include "compress.h"
#include "frame.h"
#include "log.h"
#include "patch.h"
#include "queue.h"
#include "record.h"

/* New chunk bytes up to this much are sent without asking the server
 * first (a round trip costs more), as transfer.c does for one file. */
#define BATCH_QUERY_MIN (32u * 1024)

/* New chunk bytes of an edited file from which sending it alone, to find
 * moves (transfer.c), pays for the extra round trip. */
#define BATCH_MOVE_MIN (4u * 1024)

struct bitem {
	struct proto_op op;       /* op.path is path; op.chunks is pc */
	char *path;               /* owned */
	struct stat st;           /* the version read */
	unsigned flags;
	uint64_t seq, since;      /* of the queue entry */
	struct proto_chunk *pc;   /* owned: the file's chunk list */
	uint32_t *cand;           /* owned: per chunk, its candidate's index + 1, or 0 */
	size_t n;
	char *base_path;          /* owned: a copy's original, or NULL */
	char *target;             /* owned: a symlink's target, or NULL */
	struct drange dr[OFILE_RANGES];
	int ndr;
	struct patchset ps;       /* borrows dr */
	int64_t started;
	void *user;               /* the caller's */
};

/* A chunk the server may lack: its bytes are data[off, off + len). */
struct bcand {
	struct hash_id id;
	uint32_t len;
	size_t off;
};

struct batch {
	struct bitem items[BATCH_FILES];
	size_t n;
	struct bcand *cand;       /* owned */
	size_t ncand, acand;
	struct buf data;          /* the candidates' bytes */
	uint64_t skipped;         /* chunks the record says the server has */
	uint64_t patched;         /* chunks left to mirrord to build (patch.h) */
	uint8_t *fbuf;            /* owned: one file's bytes */
	/* The compression stream over this worker's bundles (X-Mirror-Stream):
	 * each body is compressed with the ones before it as context. */
	void *cs;                 /* owned; NULL until the first bundle */
	uint64_t sid, spos;       /* its id, and the position of the next body */
	/* Compressibility probes of the chunks sent (compress.h): a body
	 * without a strongly compressible chunk goes plain, outside the
	 * stream (its weak chunks compressed alone). */
	struct compress_prober probe;
};

int batch_wants(const struct worker *w, const struct stat *st)
{
	return w->batching && w->m->server_bundle && S_ISREG(st->st_mode) &&
	       (uint64_t)st->st_size <= BATCH_FILE_MAX;
}

int batch_full(const struct worker *w)
{
	const struct batch *b = w->batch;
	return b && (b->n == BATCH_FILES || b->data.len >= BATCH_BYTES);
}

int batch_pending(const struct worker *w)
{
	return w->batch && w->batch->n > 0;
}

static void item_release(struct bitem *it)
{
	free(it->path);
	free(it->pc);
	free(it->cand);
	free(it->base_path);
	free(it->target);
	patchset_release(&it->ps);
	memset(it, 0, sizeof(*it));
}

/* Empty b, keeping its buffers unless they grew large (memory matters more
 * than a malloc per bundle: every uploader has a batch). */
static void batch_reset(struct batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		item_release(&b->items[i]);
	b->n = 0;
	b->ncand = 0;
	b->skipped = 0;
	b->patched = 0;
	if (b->data.alloc > BATCH_BYTES)
		buf_release(&b->data);
	else
		buf_reset(&b->data);
}

void batch_free(struct worker *w)
{
	struct batch *b = w->batch;
	if (!b)
		return;
	batch_reset(b);
	bundle_cstream_free(b->cs);
	free(b->cand);
	free(b->fbuf);
	buf_release(&b->data);
	compress_prober_release(&b->probe);
	free(b);
	w->batch = NULL;
}

static struct batch *batch_get(struct worker *w)
{
	if (w->batch)
		return w->batch;
	struct batch *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	buf_init(&b->data, BATCH_BYTES + BATCH_FILE_MAX);
	compress_prober_init(&b->probe);
	if (!(b->fbuf = malloc(BATCH_FILE_MAX))) {
		free(b);
		return NULL;
	}
	return w->batch = b;
}

/* Keep the bytes of chunk c (at p) unless the batch has them already.
 * Returns the candidate's index, or -ENOMEM. */
static int add_candidate(struct batch *b, const struct proto_chunk *c, const uint8_t *p)
{
	for (size_t i = 0; i < b->ncand; i++)
		if (b->cand[i].len == c->len && memcmp(b->cand[i].id.b, c->id.b, HASH_LEN) == 0)
			return (int)i;
	if (b->ncand == b->acand) {
		size_t na = b->acand ? 2 * b->acand : 256;
		struct bcand *v = realloc(b->cand, na * sizeof(*v));
		if (!v)
			return -ENOMEM;
		b->cand = v;
		b->acand = na;
	}
	struct bcand *k = &b->cand[b->ncand];
	k->id = c->id;
	k->len = c->len;
	k->off = b->data.len;
	int r = buf_append(&b->data, p, c->len);
	if (r < 0)
		return r;
	return (int)b->ncand++;
}

/* Let item it's changed bytes go as patches (patch.h) when the FUSE layer
 * knows which ranges changed, they are not the whole file, and the record
 * has the list last sent for this inode (whose size is what mirrord has).
 * An append to a log or a small edit of a source file then sends the new
 * bytes only. */
static void patch_base(struct worker *w, struct bitem *it)
{
	size_t nold = 0;
	uint64_t old_size = 0;
	if (it->ndr <= 0 || !w->m->server_patch ||
	    (it->dr[0].start == 0 && it->dr[0].end >= it->op.size))
		return;
	struct proto_chunk *old = record_list_ino(w->rec, it->path, it->st.st_ino, &nold);
	if (!old)
		return; /* unknown, or out of memory: the chunks go whole */
	for (size_t i = 0; i < nold; i++)
		old_size += old[i].len;
	free(old);
	patchset_init(&it->ps, it->dr, it->ndr, old_size);
}

/* 1 if item it (its new chunks' bytes start at data offset mark) should go
 * alone: mirrord takes moves, at least BATCH_MOVE_MIN bytes of new chunks
 * are left after the patches, and the record has a list for this path
 * (the version mirrord has: a chunk cut around an insertion may be
 * mostly its blocks). */
static int worth_alone(struct worker *w, const struct batch *b, const struct bitem *it,
		       size_t mark)
{
	size_t n = 0;
	if (!w->m->server_move || b->data.len - mark < BATCH_MOVE_MIN)
		return 0;
	struct proto_chunk *old = record_list(w->rec, it->path, &n);
	int have = old != NULL;
	free(old);
	return have;
}

/* Read fd (st_size bytes) into b->fbuf; *got: bytes read. */
static int read_all(struct batch *b, int fd, size_t size, size_t *got)
{
	*got = 0;
	while (*got < size) {
		ssize_t n = pread(fd, b->fbuf + *got, size - *got, (off_t)*got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		*got += (size_t)n;
	}
	return 0;
}

enum send_result batch_add(struct worker *w, const char *path, int fd, const struct stat *st,
			   unsigned flags, uint64_t seq, const struct drange *dr, int ndr,
			   int64_t started)
{
	struct batch *b = batch_get(w);
	struct chunker ck;
	struct stat after;
	size_t got = 0, mark_cand, mark_data;
	int r;

	if (!b || b->n == BATCH_FILES) {
		snprintf(w->why, sizeof(w->why), b ? "batch full" : "out of memory");
		return SEND_LOCAL;
	}
	if ((r = read_all(b, fd, (size_t)st->st_size, &got)) < 0) {
		snprintf(w->why, sizeof(w->why), "read error in backing folder: %s", strerror(-r));
		return SEND_LOCAL;
	}
	if (fstat(fd, &after) < 0 || !transfer_same_version(st, &after) ||
	    got != (size_t)st->st_size) {
		snprintf(w->why, sizeof(w->why), "changed while being read");
		return SEND_CHANGED;
	}
	struct bitem *it = &b->items[b->n];
	memset(it, 0, sizeof(*it));
	mark_cand = b->ncand;
	mark_data = b->data.len;
	uint64_t mark_skipped = b->skipped, mark_patched = b->patched;
	if (!(it->path = strdup(path)))
		goto nomem;
	/* At most one chunk per CHUNK_MIN bytes, plus the last. */
	if (got && (!(it->pc = calloc(got / CHUNK_MIN + 2, sizeof(*it->pc))) ||
		    !(it->cand = calloc(got / CHUNK_MIN + 2, sizeof(*it->cand)))))
		goto nomem;
	it->st = *st;
	it->ndr = ndr > 0 ? ndr : 0;
	if (it->ndr)
		memcpy(it->dr, dr, (size_t)it->ndr * sizeof(*dr));
	else
		it->ndr = ndr; /* -1: unknown ranges, given back as such */
	chunker_init(&ck);
	for (size_t pos = 0; pos < got;) {
		size_t len = chunker_next(&ck, b->fbuf + pos, got - pos, 1);
		struct proto_chunk *c = &it->pc[it->n++];
		hash_buf(b->fbuf + pos, len, &c->id);
		c->len = (uint32_t)len;
		pos += len;
	}
	it->op = (struct proto_op){ .kind = OP_FILE, .path = it->path, .mode = st->st_mode & 07777,
				    .mtime = st->st_mtim, .size = (uint64_t)st->st_size,
				    .chunks = it->pc, .nchunks = it->n };
	struct hash_id digest;
	proto_list_digest(it->pc, it->n, &digest);
	if (it->n && w->m->server_delta && (it->base_path = record_find_digest(w->rec, &digest))) {
		/* The same content is on the server under another name: a
		 * copy sends no chunk at all. */
		it->op.base_path = it->base_path;
		it->op.base_digest = digest;
		it->op.chunks = NULL;
		it->op.nchunks = 0;
	} else {
		size_t pos = 0;
		int k = 0;
		patch_base(w, it);
		record_read_begin(w->rec);
		for (size_t i = 0; k >= 0 && i < it->n; pos += it->pc[i++].len) {
			if (record_known(w->rec, &it->pc[i].id))
				b->skipped++;
			else if ((k = patchset_chunk(&it->ps, pos, it->pc[i].len, b->fbuf + pos)) > 0)
				b->patched++;
			else if (k == 0 && (k = add_candidate(b, &it->pc[i], b->fbuf + pos)) >= 0)
				it->cand[i] = (uint32_t)k + 1;
		}
		record_read_end(w->rec);
		if (k < 0)
			goto nomem;
		patchset_attach(&it->ps, &it->op);
		if (worth_alone(w, b, it, mark_data)) {
			b->ncand = mark_cand;
			b->data.len = mark_data;
			b->skipped = mark_skipped;
			b->patched = mark_patched;
			item_release(it);
			return SEND_ALONE;
		}
		log_debug("%s: %zu chunks, %d changed ranges, %zu patches of %llu bytes", path,
			  it->n, ndr, it->ps.n, (unsigned long long)it->ps.bytes);
	}
	it->flags = flags;
	it->seq = seq;
	it->since = w->since;
	it->started = started;
	it->user = w->batch_user;
	b->n++;
	pthread_mutex_lock(&w->m->stats_lock);
	w->m->stats.bytes_read += got;
	pthread_mutex_unlock(&w->m->stats_lock);
	return SEND_BATCHED;
nomem:
	b->ncand = mark_cand;
	b->data.len = mark_data;
	b->skipped = mark_skipped;
	b->patched = mark_patched;
	item_release(it);
	snprintf(w->why, sizeof(w->why), "out of memory");
	return SEND_LOCAL;
}

enum send_result batch_add_op(struct worker *w, const struct proto_op *op, uint64_t seq)
{
	struct batch *b = batch_get(w);
	if (!b || b->n == BATCH_FILES) {
		snprintf(w->why, sizeof(w->why), b ? "batch full" : "out of memory");
		return SEND_LOCAL;
	}
	struct bitem *it = &b->items[b->n];
	memset(it, 0, sizeof(*it));
	it->op = *op;
	if (!(it->path = strdup(op->path)) || (op->target && !(it->target = strdup(op->target)))) {
		item_release(it);
		snprintf(w->why, sizeof(w->why), "out of memory");
		return SEND_LOCAL;
	}
	it->op.path = it->path;
	it->op.target = it->target;
	it->seq = seq;
	it->since = w->since;
	it->user = w->batch_user;
	b->n++;
	return SEND_BATCHED;
}

/* Which candidates the server lacks: *send gets one flag per candidate
 * (caller frees). Few new bytes are sent without asking. */
static enum send_result choose(struct worker *w, struct batch *b, uint8_t **send)
{
	const struct hash_id **ids = NULL;
	enum send_result r;

	if (b->data.len <= BATCH_QUERY_MIN || b->ncand == 0) {
		if (!(*send = malloc(b->ncand ? b->ncand : 1)))
			return SEND_LOCAL;
		memset(*send, 1, b->ncand);
		return SEND_OK;
	}
	if (!(ids = malloc(b->ncand * sizeof(*ids))))
		return SEND_LOCAL;
	for (size_t i = 0; i < b->ncand; i++)
		ids[i] = &b->cand[i].id;
	r = worker_query(w, ids, b->ncand, send);
	free(ids);
	return r;
}

/* The body's parts: the ops as JSON (*json, caller frees) and a frame for
 * every chunk in send, its bytes probed for compression (compress.h)
 * until one compresses strongly; a weak chunk goes compressed alone at the
 * fast level. *flat: frames were sent and none of the chunks probed
 * compressed strongly (random data, media, weakly compressible data): the
 * body goes plain, since compressing it costs more CPU than the JSON's
 * few bytes save (first upload of bench.sh's incompressible tree: zstd was
 * 13 % of mirrorfs's CPU), and such bytes are no use as context to the
 * stream. With refs
 * (mirrord says "refs"), the frames are
 * short and the commits name those chunks by frame position: the server
 * hashes every chunk it receives anyway, and an id costs 32 bytes in the
 * frame and about as much again, as hex that compresses badly, in the
 * commit. With brief, mirrord answers a bundle whose ops were all applied
 * with their count instead of a list of {"ok":true}. */
static int encode(struct batch *b, const uint8_t *send, int refs, int brief, char **json,
		  struct buf *frames, uint64_t *nsent, int *flat)
{
	uint32_t *pos = NULL; /* per candidate: its frame's position + 1, or 0 */
	int r = -ENOMEM, squeezes = 0;

	*json = NULL;
	*nsent = 0;
	*flat = 0;
	cJSON *root = cJSON_CreateObject();
	cJSON *ops = root ? cJSON_AddArrayToObject(root, "ops") : NULL;
	if (!ops || (brief && !cJSON_AddTrueToObject(root, "brief")) ||
	    (refs && (!cJSON_AddTrueToObject(root, "refs") ||
			      !(pos = calloc(b->ncand ? b->ncand : 1, sizeof(*pos))))))
		goto out;
	for (size_t i = 0; i < b->ncand; i++) {
		uint8_t hdr[FRAME_HEADER_LEN];
		const struct bcand *k = &b->cand[i];
		if (!send[i])
			continue;
		const uint8_t *raw = (const uint8_t *)b->data.data + k->off;
		const struct buf *zb = NULL;
		if (!squeezes) {
			squeezes = compress_prober_next(&b->probe, raw, k->len, &zb) ==
				   COMPRESS_STRONG;
			if (squeezes)
				zb = NULL; /* raw: the whole body is compressed */
		}
		const uint8_t *payload = zb ? (const uint8_t *)zb->data : raw;
		uint32_t wire = zb ? (uint32_t)zb->len : k->len;
		if (refs)
			frame_encode_short_header(hdr, k->len, wire, zb != NULL);
		else
			frame_encode_header(hdr, &k->id, k->len, wire, zb != NULL);
		if ((r = buf_append(frames, hdr, refs ? FRAME_SHORT_HEADER_LEN : FRAME_HEADER_LEN)) < 0 ||
		    (r = buf_append(frames, payload, wire)) < 0)
			goto out;
		if (refs)
			pos[i] = (uint32_t)++*nsent;
		else
			++*nsent;
	}
	*flat = *nsent > 0 && !squeezes;
	r = -ENOMEM;
	for (size_t i = 0; i < b->n; i++) {
		struct bitem *it = &b->items[i];
		/* it->pc is the op's list unless the op is a copy (no list). */
		for (size_t c = 0; refs && it->op.chunks && c < it->n; c++)
			it->pc[c].ref = it->cand[c] ? pos[it->cand[c] - 1] : 0;
		cJSON *j = proto_op_to_json_flags(&it->op, refs ? PROTO_REFS : 0);
		for (size_t c = 0; refs && it->op.chunks && c < it->n; c++)
			it->pc[c].ref = 0;
		if (!j || !cJSON_AddItemToArray(ops, j)) {
			cJSON_Delete(j);
			goto out;
		}
		if (it->seq && !cJSON_AddNumberToObject(j, "seq", (double)it->seq))
			goto out;
	}
	if (!(*json = cJSON_PrintUnformatted(root)))
		goto out;
	r = 0;
out:
	free(pos);
	cJSON_Delete(root);
	if (r < 0) {
		free(*json);
		*json = NULL;
	}
	return r;
}

/* Start a new compression stream (or the first). 0 or -ENOMEM/-EIO. */
static int stream_reset(struct batch *b)
{
	if (!b->cs && !(b->cs = bundle_cstream_new()))
		return -ENOMEM;
	randombytes_buf(&b->sid, sizeof(b->sid));
	b->spos = 0;
	return bundle_cstream_reset(b->cs);
}

/* POST the bundle: as the next body of the worker's compression stream
 * when mirrord keeps one, else compressed alone; plain if flat (encode()).
 * A stream mirrord does not follow (a new connection, a lost answer: 409)
 * is started again, once. *wire: the body's size. */
static enum send_result post_bundle(struct worker *w, struct batch *b, const char *json,
				    const struct buf *frames, int flat, long *status,
				    uint64_t *wire)
{
	struct buf body;
	enum send_result res = SEND_LOCAL;
	int r = 0;

	buf_init(&body, PROTO_BUNDLE_BODY_MAX);
	/* A connection the server closed (idle for its timeout, or after an
	 * error) took its decoder along: start anew rather than be told so
	 * with a 409 and send the body twice. */
	if (b->cs && b->spos && !http_conn_kept(&w->http))
		stream_reset(b);
	for (int attempt = 0; attempt < 2; attempt++) {
		char hdr[64];
		int z = 0;
		int streamed = !flat && w->m->server_stream && (b->cs || stream_reset(b) == 0);
		if (streamed && bundle_encode_stream(b->cs, json, strlen(json),
						     (const uint8_t *)frames->data, frames->len,
						     &body) < 0) {
			stream_reset(b);
			streamed = 0;
		}
		if (streamed) {
			snprintf(hdr, sizeof(hdr), "X-Mirror-Stream: %016llx-%llu",
				 (unsigned long long)b->sid, (unsigned long long)b->spos);
			z = 1;
		} else if ((r = bundle_encode(json, strlen(json), (const uint8_t *)frames->data,
					      frames->len, !flat, &body, &z)) < 0) {
			snprintf(w->why, sizeof(w->why), "cannot encode a bundle: %s", strerror(-r));
			res = SEND_LOCAL;
			break;
		}
		*wire = body.len;
		res = worker_request_enc(w, "POST", "/v1/bundle", body.data, body.len,
					 z ? "zstd" : NULL, streamed ? hdr : NULL, status);
		if (!streamed)
			break;
		if (res == SEND_OK && *status == 200) {
			b->spos++;
			break;
		}
		/* Whatever else happened, the server's decoder is not where
		 * ours is any more: a new stream from here. */
		stream_reset(b);
		if (res != SEND_OK || *status != 409)
			break;
	}
	buf_release(&body);
	return res;
}

enum send_result batch_post_chunks(struct worker *w, const struct buf *frames,
				   const char *stage, long *status, uint64_t *wire)
{
	char json[80];
	struct batch *b = batch_get(w);
	if (!b) {
		snprintf(w->why, sizeof(w->why), "out of memory");
		return SEND_LOCAL;
	}
	if (stage)
		snprintf(json, sizeof(json), "{\"ops\":[],\"stage\":\"%s\"}", stage);
	else
		snprintf(json, sizeof(json), "{\"ops\":[]}");
	return post_bundle(w, b, json, frames, 0, status, wire);
}

/* Item it was applied by the server. */
static void applied(struct worker *w, struct bitem *it)
{
	struct mirror *m = w->m;
	w->since = it->since;
	if (it->op.kind != OP_FILE) {
		worker_applied(w, &it->op);
		return;
	}
	record_put(w->rec, it->path, &it->st, it->pc, it->n);
	ofiles_uploaded(&m->ofiles, it->st.st_dev, it->st.st_ino, it->started);
	w->since = it->since;
	worker_sync_links(w, it->path, &it->st, it->flags);
	worker_applied(w, &it->op);
	pthread_mutex_lock(&m->stats_lock);
	m->stats.files_sent++;
	pthread_mutex_unlock(&m->stats_lock);
}

enum send_result batch_flush(struct worker *w,
			     void (*done)(void *arg, void *user, enum send_result r), void *arg)
{
	struct batch *b = w->batch;
	struct buf frames;
	uint8_t *send = NULL;
	char *json = NULL;
	cJSON *reply = NULL;
	const cJSON *results = NULL;
	int all_ok = 0;
	enum send_result res;
	uint64_t nsent = 0, wire = 0;
	long status = 0;
	int flat = 0;

	if (!b || b->n == 0)
		return SEND_OK;
	buf_init(&frames, PROTO_BUNDLE_BODY_MAX);
	/* Folder mtimes as they are now, as for an op sent at once: read when
	 * the item was added, they could be older than a change to the
	 * folder applied since (and would set it back). */
	for (size_t i = 0; i < b->n; i++)
		worker_fill_pmtime(w, b->items[i].path, &b->items[i].op.pmtime,
				   &b->items[i].op.has_pmtime);
	res = choose(w, b, &send);
	if (res == SEND_OK && encode(b, send, w->m->server_refs, w->m->server_brief, &json, &frames,
				     &nsent, &flat) < 0) {
		snprintf(w->why, sizeof(w->why), "out of memory");
		res = SEND_LOCAL;
	}
	if (res == SEND_OK)
		res = post_bundle(w, b, json, &frames, flat, &status, &wire);
	if (res == SEND_OK && (res = send_classify(status)) != SEND_OK)
		snprintf(w->why, sizeof(w->why), "bundle refused with %ld: %.200s", status,
			 w->resp.data ? w->resp.data : "");
	if (res == SEND_OK) {
		reply = cJSON_ParseWithLength(w->resp.data ? w->resp.data : "", w->resp.len);
		results = cJSON_GetObjectItemCaseSensitive(reply, "results");
		const cJSON *applied_n = cJSON_GetObjectItemCaseSensitive(reply, "applied");
		/* brief: every op applied, no list */
		all_ok = !results && cJSON_IsNumber(applied_n) &&
			 applied_n->valuedouble == (double)b->n;
		if (!all_ok &&
		    (!cJSON_IsArray(results) || (size_t)cJSON_GetArraySize(results) != b->n)) {
			snprintf(w->why, sizeof(w->why), "malformed answer to a bundle");
			results = NULL;
		}
	}
	if (res == SEND_OK) {
		pthread_mutex_lock(&w->m->stats_lock);
		/* Bytes of bundles that carried chunks or patches (folders, symlinks and
		 * copies send no data: renames, for one, must count 0). */
		if (nsent || b->patched)
			w->m->stats.bytes_sent += wire;
		w->m->stats.chunks_sent += nsent;
		w->m->stats.chunks_skipped += b->skipped + (b->ncand - nsent);
		pthread_mutex_unlock(&w->m->stats_lock);
	}
	const cJSON *one = results ? results->child : NULL;
	record_begin(w->rec); /* the record of every file applied: one commit */
	for (size_t i = 0; i < b->n; i++, one = one ? one->next : NULL) {
		struct bitem *it = &b->items[i];
		enum send_result r = SEND_MISSING; /* send it alone */
		if (res == SEND_RETRY)
			r = SEND_RETRY;
		else if (all_ok || (one && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(one, "ok"))))
			r = SEND_OK;
		if (r == SEND_OK)
			applied(w, it);
		else if (it->op.kind == OP_FILE)
			ofiles_return_dirty(&w->m->ofiles, it->st.st_dev, it->st.st_ino, it->dr, it->ndr);
		if (r == SEND_MISSING)
			log_debug("%s: not applied in a bundle (%s); sending it alone", it->path,
				  results ? "refused" : w->why);
		done(arg, it->user, r);
	}
	record_end(w->rec);
	batch_reset(b);
	cJSON_Delete(reply);
	buf_release(&frames);
	free(json);
	free(send);
	return res == SEND_RETRY ? SEND_RETRY : SEND_OK;
}
