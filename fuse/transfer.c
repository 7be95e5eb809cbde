/*
 * transfer: send one regular file as content-defined chunks.
 *
 * The file is read once, in batches of about TRANSFER_BATCH bytes: each
 * batch is cut into chunks (common/chunker), hashed, the server is asked
 * which of them it lacks, and only those are uploaded (zstd where that
 * pays: a body with a strongly compressible chunk goes in the worker's
 * compression stream, batch_post_chunks(), else each chunk that
 * compresses goes compressed alone; compress.h).
 * Memory stays bounded by one batch plus the chunk list (48 bytes a
 * chunk), whatever the file size. The commit names the whole chunk list;
 * mirrord answers 409 with the chunks it no longer has, which are read
 * again (and re-checked against their ids) and sent.
 *
 * A file that changes while it is read (size, mtime or ctime differ before
 * and after) is not committed: SEND_CHANGED makes the uploader try again,
 * so a torn version is never published as final.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "batch.h"
#include "chunker.h"
#include "compress.h"
#include "frame.h"
#include "log.h"
#include "patch.h"
#include "queue.h"
#include "record.h"
#include "worker.h"

/* Bytes read (and chunked, hashed, uploaded) at a time. Each uploader
 * thread holds one batch and its upload body. Peak RSS of mirrorfs during
 * cp -a of a 1 GiB tree: 4 MiB batches 125 MiB (the body doubled to
 * 8 MiB; 32 FUSE threads), 2 MiB 76 and 1 MiB 68-70 (10 threads); the
 * time until sync did not change measurably (a request per MiB of new
 * data costs little on loopback). */
#define TRANSFER_BATCH (1u * 1024 * 1024)
/* A body's frame headers and offsets beyond the chunk bytes: at most one
 * chunk per CHUNK_MIN bytes of a batch, and the last one. */
#define BODY_SLACK \
	(((TRANSFER_BATCH + CHUNK_MAX) / CHUNK_MIN + 1) * (FRAME_HEADER_LEN + FRAME_OFFSET_LEN))

struct chunk_ref {
	struct hash_id id;
	uint32_t len;
	uint64_t off;
};

struct xfer {
	struct worker *w;
	const char *path;
	int fd;
	struct chunk_ref *chunks; /* owned; grows */
	size_t n, alloc;
	struct buf body;   /* chunk upload body */
	struct buf zbuf;   /* compression scratch */
	uint64_t bytes_sent, chunks_sent, chunks_skipped;
	struct compress_prober probe;
	int streamed;      /* frames go raw, a compressible body in the stream */
	int zbody;         /* the best compress_class probed in this body */
	/* Patches (mirrord "patch", patch.h): set up when the record has
	 * the list last sent for this inode and the FUSE layer says which
	 * ranges changed since. */
	struct patchset ps;
	/* Moves (mirrord "move", rsig.h): when the record has a list for this
	 * path, new chunks that neither the server nor a patch has wait here
	 * (chunk indexes, up to DEFER_MAX bytes) until the whole list is
	 * known; those inside a changed region of the base file are then
	 * looked for in its blocks, the rest go whole. */
	int defer;
	size_t *wait, nwait, await;
	uint64_t wait_bytes;
	struct rsig_move *moves; /* owned */
	size_t nmoves, amoves;
	/* A stage (mirrord "stage"): a file sent whole uploads its chunks
	 * with their offsets, and mirrord writes each in its place in the
	 * new file as it comes, instead of storing it and writing it again
	 * at the commit. stage_hex: its name, random. */
	int staged;
	char stage_hex[2 * PROTO_STAGE_LEN + 1];
};

#define DEFER_MAX (8u * 1024 * 1024)
/* Old bytes of one changed region looked at (larger: the chunks go whole). */
#define MOVE_REGION_MAX (2u * 1024 * 1024)
#define MOVE_BLOCK 512u


/* Unknown chunks adding up to no more than this are sent without asking
 * the server first. */
#define QUERY_MIN_BYTES (32u * 1024)

static int add_chunk(struct xfer *x, const uint8_t *data, uint32_t len, uint64_t off)
{
	if (x->n == x->alloc) {
		size_t na = x->alloc ? x->alloc * 2 : 64;
		struct chunk_ref *p = realloc(x->chunks, na * sizeof(*p));
		if (!p)
			return -ENOMEM;
		x->chunks = p;
		x->alloc = na;
	}
	struct chunk_ref *c = &x->chunks[x->n++];
	hash_buf(data, len, &c->id);
	c->len = len;
	c->off = off;
	return 0;
}

/* Append one frame for chunk c (bytes at data) to the upload body, its
 * bytes probed for compression (compress.h) until one of the body
 * compresses strongly. A weak chunk goes compressed alone at the fast
 * level (its probe's output). A strong one: when streamed, the whole body
 * goes in the worker's compression stream (batch_post_chunks()) and its
 * frames raw; otherwise it is compressed alone at COMPRESS_LEVEL. */
static int frame_chunk(struct xfer *x, const struct chunk_ref *c, const uint8_t *data)
{
	uint8_t hdr[FRAME_HEADER_LEN];
	const struct buf *zb = NULL;
	if (!x->streamed || x->zbody != COMPRESS_STRONG) {
		int cls = compress_prober_next(&x->probe, data, c->len, &zb);
		if (cls > x->zbody)
			x->zbody = cls;
		if (cls == COMPRESS_STRONG) {
			zb = NULL;
			if (!x->streamed && compress_chunk(data, c->len, &x->zbuf) > 0)
				zb = &x->zbuf;
		}
	}
	int z = zb != NULL;
	const uint8_t *payload = z ? (const uint8_t *)zb->data : data;
	uint32_t wire = z ? (uint32_t)zb->len : c->len;
	frame_encode_header(hdr, &c->id, c->len, wire, z);
	int r = buf_append(&x->body, hdr, sizeof(hdr));
	if (r == 0 && x->staged) {
		uint8_t o[FRAME_OFFSET_LEN];
		frame_encode_offset(o, c->off);
		r = buf_append(&x->body, o, sizeof(o));
	}
	if (r == 0)
		r = buf_append(&x->body, payload, wire);
	if (!x->streamed)
		x->bytes_sent += wire;
	x->chunks_sent++;
	return r;
}

static enum send_result post_body(struct xfer *x)
{
	struct worker *w = x->w;
	long status = 0;
	uint64_t wire = x->body.len;
	enum send_result res;
	if (x->body.len == 0)
		return SEND_OK;
	if (x->streamed && x->zbody == COMPRESS_STRONG) {
		res = batch_post_chunks(w, &x->body, x->staged ? x->stage_hex : NULL, &status,
					&wire);
	} else {
		char hdr[64];
		snprintf(hdr, sizeof(hdr), "X-Mirror-Stage: %s", x->stage_hex);
		res = worker_request_enc(w, "POST", "/v1/chunks", x->body.data, x->body.len, NULL,
					 x->staged ? hdr : NULL, &status);
	}
	if (x->streamed)
		x->bytes_sent += wire;
	buf_reset(&x->body);
	x->zbody = 0;
	if (res != SEND_OK)
		return res;
	res = send_classify(status);
	if (res != SEND_OK)
		snprintf(w->why, sizeof(w->why), "chunk upload refused with %ld: %.200s", status,
			 w->resp.data ? w->resp.data : "");
	return res;
}

/* Ask which of the chunks ask[0..nask) the server lacks; *missing gets a
 * new array of flags, one per asked chunk (caller frees). */
static enum send_result query_missing(struct xfer *x, const size_t *ask, size_t nask,
				      uint8_t **missing)
{
	const struct hash_id **ids = malloc((nask ? nask : 1) * sizeof(*ids));
	*missing = NULL;
	if (!ids) {
		snprintf(x->w->why, sizeof(x->w->why), "out of memory");
		return SEND_LOCAL;
	}
	for (size_t i = 0; i < nask; i++)
		ids[i] = &x->chunks[ask[i]].id;
	enum send_result r = worker_query(x->w, ids, nask, missing);
	free(ids);
	return r;
}

/* The chunks[first..n) were just cut from buf (chunk i at buf + off - base):
 * upload those the server lacks. Chunks the server was given before (this
 * file's last version, the original of a copy) are not even asked about:
 * mirrord checks them at commit and answers 409 for any it lost. */
static enum send_result send_batch(struct xfer *x, size_t first, const uint8_t *buf,
				   uint64_t base)
{
	uint8_t *missing = NULL;
	size_t nask = 0, *ask = malloc((x->n - first) * sizeof(*ask));
	enum send_result res = SEND_LOCAL;
	if (!ask)
		goto out;
	record_read_begin(x->w->rec);
	for (size_t i = first; i < x->n; i++) {
		if (record_known(x->w->rec, &x->chunks[i].id))
			x->chunks_skipped++;
		else
			ask[nask++] = i;
	}
	record_read_end(x->w->rec);
	res = SEND_OK;
	if (nask == 0)
		goto out;
	uint64_t askbytes = 0;
	for (size_t k = 0; k < nask; k++)
		askbytes += x->chunks[ask[k]].len;
	if (askbytes <= QUERY_MIN_BYTES) {
		/* A round trip costs more than these bytes: just send them. */
		if (!(missing = malloc(nask))) {
			res = SEND_LOCAL;
			goto out;
		}
		memset(missing, 1, nask);
	} else if ((res = query_missing(x, ask, nask, &missing)) != SEND_OK) {
		goto out;
	}
	for (size_t k = 0; k < nask; k++) {
		size_t i = ask[k];
		if (!missing[k]) {
			x->chunks_skipped++;
			continue;
		}
		/* The same chunk twice in one batch goes once, if it went in
		 * the body (mirrord keeps no chunk it built from patches). */
		int dup = 0;
		for (size_t j = 0; j < k && !dup; j++)
			dup = missing[j] == 2 && hash_equal(&x->chunks[ask[j]].id, &x->chunks[i].id);
		if (dup)
			continue;
		int pr = patchset_chunk(&x->ps, x->chunks[i].off, x->chunks[i].len,
					 buf + (x->chunks[i].off - base));
		if (pr > 0)
			continue;
		if (pr == 0 && x->defer && x->wait_bytes + x->chunks[i].len <= DEFER_MAX) {
			if (x->nwait == x->await) {
				size_t na = x->await ? 2 * x->await : 16;
				size_t *v = realloc(x->wait, na * sizeof(*v));
				if (!v)
					goto nomem;
				x->wait = v;
				x->await = na;
			}
			x->wait[x->nwait++] = i;
			x->wait_bytes += x->chunks[i].len;
			continue;
		}
		if (pr < 0 || frame_chunk(x, &x->chunks[i], buf + (x->chunks[i].off - base)) < 0)
			goto nomem;
		missing[k] = 2; /* in the body */
	}
	res = post_body(x);
	goto out;
nomem:
	snprintf(x->w->why, sizeof(x->w->why), "out of memory");
	res = SEND_LOCAL;
out:
	free(ask);
	free(missing);
	return res;
}

/* Read chunk c again into data (CHUNK_PROTO_MAX bytes) and check it
 * against its id: SEND_OK, or SEND_CHANGED if the file changed. */
static enum send_result reread(struct xfer *x, const struct chunk_ref *c, uint8_t *data)
{
	struct hash_id id;
	if (pread(x->fd, data, c->len, (off_t)c->off) != (ssize_t)c->len)
		return SEND_CHANGED;
	hash_buf(data, c->len, &id);
	return hash_equal(&id, &c->id) ? SEND_OK : SEND_CHANGED;
}

/* One changed run of the base: the old bytes its edit replaced, asked
 * for as one range, or as its two ends when it is larger than the budget
 * (a long cut: the bytes of the new chunks come from around it); the
 * signatures mirrord sent, and each block's old offset. */
struct region {
	uint64_t off[2], len[2];
	int nr;
	uint8_t *sigs;  /* owned */
	uint64_t *boff; /* owned */
	size_t nsig;
};

/* Old bytes looked at per byte of waiting chunks: signatures cost 12 bytes
 * (16 in base64) per 512, so the answer stays within an eighth of what the
 * chunks would cost whole (1 MiB cut from a 100 MiB file: 36,010 B with the
 * whole 2 MiB around the cut signed, about 8 KB with its ends). */
#define MOVE_BUDGET 4u
#define MOVE_BUDGET_MIN (64u * 1024)

/* Chunk c (bytes at data) as moves from region r and patches of what no
 * block matched, if the moves cover at least half of it. 1 if so, 0 if
 * it must go whole, -ENOMEM. */
static int move_chunk(struct xfer *x, const struct region *r, const struct chunk_ref *c,
		      const uint8_t *data)
{
	struct rsig_move *mv = NULL;
	size_t nmv = 0, mark = x->ps.n;
	uint64_t mark_bytes = x->ps.bytes;
	int mark_used = x->ps.used;
	long covered = rsig_match(r->sigs, r->nsig, MOVE_BLOCK, r->boff, data, c->len, c->off, &mv,
				  &nmv);
	if (covered < 0)
		return -ENOMEM;
	if ((uint64_t)covered * 2 < c->len || x->nmoves + nmv > PROTO_MAX_MOVES) {
		free(mv);
		return 0;
	}
	/* The bytes between the moves go as patches. */
	uint64_t at = c->off;
	for (size_t k = 0; k <= nmv; k++) {
		uint64_t to = k < nmv ? mv[k].off : c->off + c->len;
		int a = to > at ? patchset_add(&x->ps, at, (uint32_t)(to - at), data + (at - c->off)) : 1;
		if (a <= 0) {
			/* Undo this chunk's patches: it goes whole. */
			for (size_t i = mark; i < x->ps.n; i++)
				free(x->ps.v[i].data);
			x->ps.n = mark;
			x->ps.bytes = mark_bytes;
			x->ps.used = mark_used;
			free(mv);
			return a < 0 ? -ENOMEM : 0;
		}
		if (k < nmv)
			at = mv[k].off + mv[k].len;
	}
	if (x->nmoves + nmv > x->amoves) {
		size_t na = x->amoves ? x->amoves : 16;
		while (na < x->nmoves + nmv)
			na *= 2;
		struct rsig_move *v = realloc(x->moves, na * sizeof(*v));
		if (!v) {
			free(mv);
			return -ENOMEM;
		}
		x->moves = v;
		x->amoves = na;
	}
	if (nmv) /* mv is NULL when there are none */
		memcpy(x->moves + x->nmoves, mv, nmv * sizeof(*mv));
	x->nmoves += nmv;
	x->ps.used = 1;
	free(mv);
	return 1;
}

/* The chunks that waited: find each one's changed region in the list of
 * src (the file the commit is a delta against, or this path) by diffing
 * the two lists, ask mirrord for the signatures of those regions, and
 * send each chunk as moves and patches where that covers most of it,
 * whole otherwise. pc[0..n): the new list. */
static enum send_result send_waiting(struct xfer *x, const char *src, struct proto_chunk *pc,
				     size_t n)
{
	struct worker *w = x->w;
	struct proto_edit *edits = NULL;
	struct region reg[RSIG_RANGES_MAX];
	int of[RSIG_RANGES_MAX]; /* the edit of each region */
	size_t nold = 0, ins = 0, nreg = 0;
	uint64_t *ooff = NULL;
	uint8_t *data = malloc(CHUNK_PROTO_MAX);
	enum send_result res = SEND_LOCAL;
	int ne = 0;

	memset(reg, 0, sizeof(reg));
	struct proto_chunk *old = w->m->server_move ? record_list(w->rec, src, &nold) : NULL;
	if (!data)
		goto out;
	if (old && nold && (ooff = malloc((nold + 1) * sizeof(*ooff))) &&
	    (ne = proto_diff_lists(old, nold, pc, n, &edits, &ins)) > 0) {
		ooff[0] = 0;
		for (size_t i = 0; i < nold; i++)
			ooff[i + 1] = ooff[i] + old[i].len;
		/* The regions: edits that replace old chunks with waiting ones. */
		size_t k = 0, nrange = 0;
		uint64_t asked = 0; /* old bytes in all: within the blocks cap */
		for (int e = 0; e < ne && k < x->nwait; e++) {
			size_t first = (size_t)(edits[e].chunks - pc), end = first + edits[e].n;
			uint64_t waiting = 0;
			while (k < x->nwait && x->wait[k] < first)
				k++;
			for (size_t j = k; j < x->nwait && x->wait[j] < end; j++)
				waiting += x->chunks[x->wait[j]].len;
			if (!waiting || edits[e].del == 0 || nrange + 2 > RSIG_RANGES_MAX)
				continue;
			uint64_t a = ooff[edits[e].start], b = ooff[edits[e].start + edits[e].del];
			uint64_t budget = waiting * MOVE_BUDGET;
			if (budget < MOVE_BUDGET_MIN)
				budget = MOVE_BUDGET_MIN;
			if (budget > MOVE_REGION_MAX)
				budget = MOVE_REGION_MAX;
			struct region *g = &reg[nreg];
			*g = (struct region){ .off = { a }, .len = { b - a }, .nr = 1 };
			if (b - a > budget) {
				g->len[0] = budget / 2;
				g->off[1] = b - budget / 2;
				g->len[1] = budget / 2;
				g->nr = 2;
			}
			if (asked + g->len[0] + g->len[1] > (uint64_t)RSIG_BLOCKS_MAX * MOVE_BLOCK)
				continue; /* its chunks go whole */
			asked += g->len[0] + g->len[1];
			nrange += (size_t)g->nr;
			of[nreg++] = e;
		}
	}
	if (nreg) {
		uint64_t offs[RSIG_RANGES_MAX], lens[RSIG_RANGES_MAX];
		uint8_t *sigs[RSIG_RANGES_MAX];
		size_t cnt[RSIG_RANGES_MAX], nrange = 0;
		for (size_t i = 0; i < nreg; i++)
			for (int h = 0; h < reg[i].nr; h++) {
				offs[nrange] = reg[i].off[h];
				lens[nrange++] = reg[i].len[h];
			}
		res = worker_signatures(w, src, MOVE_BLOCK, offs, lens, nrange, sigs, cnt);
		if (res == SEND_RETRY)
			goto out;
		/* Each region's blocks in one array, with their old offsets. */
		size_t q = 0;
		for (size_t i = 0; i < nreg && res == SEND_OK; i++) {
			struct region *g = &reg[i];
			size_t total = 0;
			for (int h = 0; h < g->nr; h++)
				total += cnt[q + (size_t)h];
			g->sigs = malloc(total * RSIG_ENTRY + 1);
			g->boff = malloc((total + 1) * sizeof(*g->boff));
			if (!g->sigs || !g->boff)
				res = SEND_LOCAL;
			for (int h = 0; h < g->nr && res == SEND_OK; h++, q++) {
				if (cnt[q]) /* none: sigs[q] is NULL */
					memcpy(g->sigs + g->nsig * RSIG_ENTRY, sigs[q],
					       cnt[q] * RSIG_ENTRY);
				for (size_t j = 0; j < cnt[q]; j++)
					g->boff[g->nsig + j] = offs[q] + j * MOVE_BLOCK;
				g->nsig += cnt[q];
			}
		}
		for (size_t i = 0; i < nrange; i++)
			free(sigs[i]); /* NULL when the request failed */
		if (res != SEND_OK)
			for (size_t i = 0; i < nreg; i++)
				reg[i].nsig = 0; /* every waiting chunk goes whole */
		log_debug("%s: %zu changed regions (%zu ranges) of %s looked up for %zu waiting chunks (%s)",
			  x->path, nreg, nrange, src, x->nwait, res == SEND_OK ? "signatures" : w->why);
	}
	size_t r = 0;
	for (size_t k = 0; k < x->nwait; k++) {
		const struct chunk_ref *c = &x->chunks[x->wait[k]];
		if ((res = reread(x, c, data)) != SEND_OK)
			goto out;
		/* Its region, if it has one: regions follow the chunk order. */
		while (r < nreg &&
		       (size_t)(edits[of[r]].chunks - pc) + edits[of[r]].n <= x->wait[k])
			r++;
		int m = 0;
		if (r < nreg && (size_t)(edits[of[r]].chunks - pc) <= x->wait[k] && reg[r].nsig &&
		    (m = move_chunk(x, &reg[r], c, data)) < 0)
			goto nomem;
		if (m > 0)
			continue;
		if (frame_chunk(x, c, data) < 0)
			goto nomem;
		if (x->body.len >= TRANSFER_BATCH && (res = post_body(x)) != SEND_OK)
			goto out;
	}
	res = post_body(x);
	patchset_sort(&x->ps);
	goto out;
nomem:
	snprintf(w->why, sizeof(w->why), "out of memory");
	res = SEND_LOCAL;
out:
	for (size_t i = 0; i < nreg; i++) {
		free(reg[i].sigs);
		free(reg[i].boff);
	}
	free(edits);
	free(ooff);
	free(old);
	free(data);
	return res;
}

/* Re-read and upload the chunks the commit answer says are missing. */
static enum send_result resend(struct xfer *x, const cJSON *reply)
{
	const cJSON *miss = cJSON_GetObjectItemCaseSensitive(reply, "missing"), *it;
	uint8_t *data = malloc(CHUNK_PROTO_MAX);
	enum send_result res = SEND_OK;
	if (!data)
		return SEND_LOCAL;
	cJSON_ArrayForEach(it, miss) {
		if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= (double)x->n)
			continue;
		const struct chunk_ref *c = &x->chunks[(size_t)it->valuedouble];
		struct hash_id id;
		if (pread(x->fd, data, c->len, (off_t)c->off) != (ssize_t)c->len) {
			res = SEND_CHANGED;
			break;
		}
		hash_buf(data, c->len, &id);
		if (!hash_equal(&id, &c->id)) {
			res = SEND_CHANGED; /* the file changed under us */
			break;
		}
		if (frame_chunk(x, c, data) < 0) {
			res = SEND_LOCAL;
			break;
		}
		if (x->body.len >= TRANSFER_BATCH && (res = post_body(x)) != SEND_OK)
			break;
	}
	free(data);
	if (res == SEND_OK)
		res = post_body(x);
	else
		buf_reset(&x->body);
	return res;
}

/* Rough size in JSON of a chunk list entry: ["<64 hex>",len], and of an
 * edit's own numbers. */
#define LIST_ENTRY_JSON 76
#define EDIT_JSON 24

/* Turn op (a full list pc[0..n)) into a delta when the server holds a
 * file whose list we know: this path's last version (an edit), or any
 * file with exactly this list (a copy). *base_path and *edits get what
 * the caller frees (the edits point into pc). */
static void plan_delta(struct worker *w, const char *path, struct proto_chunk *pc, size_t n,
		       struct proto_op *op, struct proto_edit **edits, char **base_path)
{
	struct proto_chunk *old;
	size_t nold = 0, ins = 0;
	struct hash_id digest;

	*base_path = NULL;
	*edits = NULL;
	if (!w->m->server_delta)
		return; /* an older mirrord: whole lists only */
	proto_list_digest(pc, n, &digest);
	if (n > 0 && (*base_path = record_find_digest(w->rec, &digest))) {
		/* Same content elsewhere (or here): no edits at all. */
		op->base_path = *base_path;
		op->base_digest = digest;
		op->chunks = NULL;
		op->nchunks = 0;
		op->edits = NULL;
		op->nedits = 0;
		return;
	}
	/* This path's last version, else a file that probably shares most
	 * chunks (the one an editor's new copy will replace). */
	char *base = NULL;
	old = record_list(w->rec, path, &nold);
	if (!old && (base = record_find_similar(w->rec, pc, n, path)))
		old = record_list(w->rec, base, &nold);
	if (!old || nold == 0) {
		free(old);
		free(base);
		return;
	}
	int ne = proto_diff_lists(old, nold, pc, n, edits, &ins);
	log_debug("%s: list of %zu chunks against %zu of %s: %d edits inserting %zu", path, n, nold,
		  base ? base : "its last version", ne, ins);
	/* Worth it only if it is smaller than the whole list. */
	if (ne >= 0 && ins * LIST_ENTRY_JSON + (size_t)ne * EDIT_JSON + 300 < n * LIST_ENTRY_JSON &&
	    (*base_path = base ? base : strdup(path))) {
		base = NULL; /* *base_path has it */
		op->base_path = *base_path;
		proto_list_digest(old, nold, &op->base_digest);
		op->chunks = NULL;
		op->nchunks = 0;
		op->edits = *edits;
		op->nedits = (size_t)ne;
	}
	free(base);
	free(old);
}

int transfer_same_version(const struct stat *a, const struct stat *b)
{
	return a->st_size == b->st_size && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec && a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
	       a->st_ctim.tv_nsec == b->st_ctim.tv_nsec && a->st_ino == b->st_ino;
}

/*
 * Partial re-chunking. When the FUSE layer says which ranges changed and
 * the record has the list last sent for this inode, chunks entirely before
 * the first changed byte are kept as they are (a content-defined boundary
 * depends only on the bytes before it), chunking restarts at the start of
 * the chunk holding that byte, and stops as soon as a boundary past the
 * last changed byte falls on an old boundary (the file's size unchanged):
 * from there on, the old chunks are the new ones. A few bytes changed in a
 * huge file cost reading and hashing a few chunks, not the file.
 */
struct partial {
	struct proto_chunk *old; /* owned */
	uint64_t *ooff;          /* owned; ooff[i] = start of old chunk i, ooff[nold] = size */
	size_t nold, first;      /* old chunks [0, first) are kept */
	uint64_t span_end;       /* end of the changed range being re-chunked */
	const struct drange *dr; /* borrowed: the changed ranges */
	int ndr, cur;            /* dr[cur] is being re-chunked */
	int same_size;
};

static void partial_release(struct partial *p)
{
	free(p->old);
	free(p->ooff);
	memset(p, 0, sizeof(*p));
}

/* The old chunk holding byte a (the last chunk if a is at or past the end:
 * that chunk was cut by the end of the file, not by its content). */
static size_t partial_chunk_at(const struct partial *p, uint64_t a)
{
	size_t lo = 0, hi = p->nold - 1;
	if (a >= p->ooff[p->nold])
		return p->nold - 1;
	while (lo < hi) {
		size_t mid = lo + (hi - lo + 1) / 2;
		if (p->ooff[mid] <= a)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

/* Set p up, or leave it empty (whole-file transfer). */
static void partial_plan(struct worker *w, const char *path, const struct stat *st,
			 const struct drange *dr, int ndr, struct partial *p)
{
	memset(p, 0, sizeof(*p));
	if (ndr <= 0 || !(p->old = record_list_ino(w->rec, path, st->st_ino, &p->nold)))
		return;
	if (p->nold == 0 || !(p->ooff = malloc((p->nold + 1) * sizeof(*p->ooff)))) {
		partial_release(p);
		return;
	}
	p->ooff[0] = 0;
	for (size_t i = 0; i < p->nold; i++)
		p->ooff[i + 1] = p->ooff[i] + p->old[i].len;
	p->dr = dr;
	p->ndr = ndr;
	p->cur = 0;
	p->first = partial_chunk_at(p, dr[0].start);
	p->span_end = dr[0].end;
	p->same_size = p->ooff[p->nold] == (uint64_t)st->st_size;
	if (!p->same_size) /* an append or a shrink: re-chunk to the end */
		p->span_end = UINT64_MAX;
}

/* After a cut at file offset end: the index of the old chunk starting
 * there, if the rest of the file can be taken from the old list. */
static int partial_aligned(const struct partial *p, uint64_t end, size_t *j)
{
	if (!p->old || !p->same_size || end < p->span_end)
		return 0;
	size_t lo = p->first + 1, hi = p->nold;
	while (lo <= hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (p->ooff[mid] == end) {
			*j = mid;
			return 1;
		}
		if (p->ooff[mid] < end)
			lo = mid + 1;
		else if (mid == 0)
			break;
		else
			hi = mid - 1;
	}
	return 0;
}

static int add_old(struct xfer *x, const struct partial *p, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++) {
		if (x->n == x->alloc) {
			size_t na = x->alloc ? x->alloc * 2 : 64;
			struct chunk_ref *c = realloc(x->chunks, na * sizeof(*c));
			if (!c)
				return -ENOMEM;
			x->chunks = c;
			x->alloc = na;
		}
		x->chunks[x->n].id = p->old[i].id;
		x->chunks[x->n].len = p->old[i].len;
		x->chunks[x->n].off = p->ooff[i];
		x->n++;
	}
	return 0;
}

enum send_result transfer_file(struct worker *w, const char *path, int fd,
			       const struct stat *st, uint64_t seq, const struct drange *dr,
			       int ndr)
{
	struct xfer x = { .w = w, .path = path, .fd = fd, .streamed = w->m->server_bare };
	struct chunker ck;
	struct partial part;
	enum send_result res = SEND_LOCAL;
	size_t cap = TRANSFER_BATCH + CHUNK_MAX;
	uint8_t *buf = malloc(cap);
	size_t fill = 0;
	uint64_t off = 0, nread = 0; /* file offset of buf[0]; bytes read */
	int eof = 0, aligned = 0;
	cJSON *reply = NULL;

	int64_t started = queue_now();
	buf_init(&x.body, PROTO_CHUNKS_BODY_MAX);
	buf_init(&x.zbuf, 2 * CHUNK_PROTO_MAX);
	compress_prober_init(&x.probe);
	/* Sized once: grown by doubling, a body a little over a batch would
	 * take twice its memory. */
	if (buf_reserve_exact(&x.body, cap + BODY_SLACK) < 0) {
		snprintf(w->why, sizeof(w->why), "out of memory");
		goto out;
	}
	chunker_init(&ck);
	partial_plan(w, path, st, dr, ndr, &part);
	if (!buf) {
		snprintf(w->why, sizeof(w->why), "out of memory");
		goto out;
	}
	if (w->m->server_move) {
		size_t nrec = 0;
		struct proto_chunk *rec = part.old ? NULL : record_list(w->rec, path, &nrec);
		x.defer = part.old || rec;
		free(rec);
	}
	if (w->m->server_stage && !part.old) {
		uint8_t name[PROTO_STAGE_LEN];
		randombytes_buf(name, sizeof(name));
		sodium_bin2hex(x.stage_hex, sizeof(x.stage_hex), name, sizeof(name));
		x.staged = 1;
	}
	if (part.old) {
		if (add_old(&x, &part, 0, part.first) < 0)
			goto out;
		off = part.ooff[part.first];
		if (w->m->server_patch)
			patchset_init(&x.ps, part.dr, part.ndr, part.ooff[part.nold]);
	}
	while (!aligned && (!eof || fill > 0)) {
		/* While re-chunking a changed range, read little past its end:
		 * the old boundaries usually come back within a chunk or two. */
		size_t want = cap;
		if (part.old && part.span_end != UINT64_MAX) {
			uint64_t need = (part.span_end > off ? part.span_end - off : 0) + 4 * CHUNK_MAX;
			if (need < want)
				want = (size_t)need;
			if (want < fill + CHUNK_MAX)
				want = fill + 4 * CHUNK_MAX < cap ? fill + 4 * CHUNK_MAX : cap;
		}
		while (!eof && fill < want) {
			ssize_t n = pread(fd, buf + fill, want - fill, (off_t)(off + fill));
			if (n < 0) {
				if (errno == EINTR)
					continue;
				snprintf(w->why, sizeof(w->why), "read error in backing folder: %s",
					 strerror(errno));
				goto out;
			}
			if (n == 0)
				eof = 1;
			fill += (size_t)n;
			nread += (size_t)n;
		}
		size_t pos = 0, first = x.n, j;
		for (;;) {
			size_t len = chunker_next(&ck, buf + pos, fill - pos, eof);
			if (len == 0)
				break;
			if (add_chunk(&x, buf + pos, (uint32_t)len, off + pos) < 0) {
				snprintf(w->why, sizeof(w->why), "out of memory");
				goto out;
			}
			pos += len;
			if (partial_aligned(&part, off + pos, &j)) {
				aligned = 1;
				break;
			}
			if (pos == fill)
				break;
		}
		if (x.n > first && (res = send_batch(&x, first, buf, off)) != SEND_OK)
			goto out;
		res = SEND_LOCAL;
		if (aligned) {
			/* Skip to the next changed range that lies beyond this
			 * point, keeping the old chunks in between. */
			while (part.cur < part.ndr && part.dr[part.cur].end <= part.ooff[j])
				part.cur++;
			size_t k = part.cur < part.ndr ? partial_chunk_at(&part, part.dr[part.cur].start)
						       : part.nold;
			if (k < j)
				k = j; /* the next range starts inside what was just cut */
			if (add_old(&x, &part, j, k) < 0)
				goto out;
			if (k < part.nold) {
				aligned = 0;
				part.span_end = part.dr[part.cur].end;
				off = part.ooff[k];
				fill = 0;
				eof = 0;
				continue;
			}
			break;
		}
		memmove(buf, buf + pos, fill - pos);
		off += pos;
		fill -= pos;
	}
	int64_t took = queue_now() - started;
	pthread_mutex_lock(&w->m->stats_lock);
	w->m->stats.bytes_read += nread;
	/* A smoothed rate for the estimate of the time left (status). */
	if (nread >= 65536 && took > 0) {
		double r = (double)nread * 1e9 / (double)took;
		w->m->stats.rate = w->m->stats.rate > 0 ? 0.7 * w->m->stats.rate + 0.3 * r : r;
	}
	pthread_mutex_unlock(&w->m->stats_lock);

	struct stat after;
	if (fstat(fd, &after) < 0 || !transfer_same_version(st, &after) ||
	    (!aligned && off != (uint64_t)st->st_size)) {
		snprintf(w->why, sizeof(w->why), "changed while being read");
		res = SEND_CHANGED;
		goto out;
	}
	struct proto_chunk *pc = x.n ? calloc(x.n, sizeof(*pc)) : NULL;
	if (x.n && !pc)
		goto out;
	for (size_t i = 0; i < x.n; i++) {
		pc[i].id = x.chunks[i].id;
		pc[i].len = x.chunks[i].len;
	}
	struct proto_op op = { .kind = OP_FILE, .path = (char *)path, .mode = st->st_mode & 07777,
			       .mtime = st->st_mtim, .size = (uint64_t)st->st_size,
			       .chunks = pc, .nchunks = x.n };
	struct proto_edit *edits = NULL;
	char *base_path = NULL;
	worker_fill_pmtime(w, path, &op.pmtime, &op.has_pmtime);
	plan_delta(w, path, pc, x.n, &op, &edits, &base_path);
	if (op.nedits || op.chunks) { /* not a copy: the patched chunks are needed */
		if (x.nwait && (res = send_waiting(&x, op.base_path ? op.base_path : path, pc,
						    x.n)) != SEND_OK) {
			free(base_path);
			free(edits);
			free(pc);
			goto out;
		}
		patchset_attach(&x.ps, &op);
		op.moves = x.moves;
		op.nmoves = x.nmoves;
	}
	if (x.staged && x.chunks_sent)
		op.has_stage = proto_stage_from_hex(x.stage_hex, op.stage) == 0;
	log_debug("%s: %zu chunks, %d changed ranges%s, %zu patches of %llu bytes", path, x.n,
		  ndr, part.old ? " (re-chunked around them)" : "", x.ps.n,
		  (unsigned long long)x.ps.bytes);
	/* mirrord reports the chunks it cannot produce; it may find more
	 * stale ones on the next try, so keep going while each round makes
	 * progress (at most one round per chunk, plus a few). */
	for (size_t attempt = 0; attempt < x.n + 3; attempt++) {
		cJSON_Delete(reply);
		reply = NULL;
		res = worker_send_op(w, &op, seq, &reply);
		if (res != SEND_MISSING)
			break;
		/* A 409 leaves the stage to the next commit: the chunks
		 * mirrord lacks are uploaded to it too (in place when they
		 * lie past what it holds, stored as any upload otherwise). */
		const cJSON *code = cJSON_GetObjectItemCaseSensitive(reply, "code");
		if (op.base_path && cJSON_IsString(code) && strcmp(code->valuestring, "ESTALE") == 0) {
			/* The server's list is not the one we recorded: send it whole. */
			op.base_path = NULL;
			op.edits = NULL;
			op.nedits = 0;
			op.chunks = pc;
			op.nchunks = x.n;
			/* Patches and moves describe the version we thought it
			 * had: the 409s that follow name what to send whole. */
			op.patched = 0;
			op.npatches = 0;
			op.nmoves = 0;
			res = SEND_MISSING;
			continue;
		}
		res = resend(&x, reply);
		if (res != SEND_OK)
			break;
		res = SEND_MISSING;
	}
	if (res == SEND_OK)
		record_put(w->rec, path, st, pc, x.n);
	free(base_path);
	free(edits);
	free(pc);
	if (res == SEND_MISSING)
		res = SEND_RETRY; /* chunks keep vanishing: try again later */
	if (res == SEND_OK) {
		pthread_mutex_lock(&w->m->stats_lock);
		w->m->stats.files_sent++;
		w->m->stats.bytes_sent += x.bytes_sent + x.ps.bytes;
		w->m->stats.chunks_sent += x.chunks_sent;
		w->m->stats.chunks_skipped += x.chunks_skipped;
		pthread_mutex_unlock(&w->m->stats_lock);
	}
out:
	cJSON_Delete(reply);
	partial_release(&part);
	free(buf);
	free(x.chunks);
	patchset_release(&x.ps);
	free(x.wait);
	free(x.moves);
	buf_release(&x.body);
	buf_release(&x.zbuf);
	compress_prober_release(&x.probe);
	return res;
}
