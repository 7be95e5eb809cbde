/*
 * fuzz_op_json: the server's decoder of ops (proto_op_from_json), behind
 * the same JSON parse and depth cap as POST /v1/op.
 *
 * Every op that decodes must encode again (proto_op_to_json), and the
 * encoding must decode to the same op: what mirrord accepts is exactly
 * what a client can say. Inputs of odd length are decoded as ops of a
 * bundle with refs ([k, len] entries), encoded back with refs, and their
 * refs resolved against four frames: a resolved op names no frame any
 * more. Patches ("patch") must come back byte for byte, moves ("move")
 * exactly.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "path.h"
#include "proto.h"

static int same_chunks(const struct proto_chunk *a, const struct proto_chunk *b, size_t n)
{
	return n == 0 || memcmp(a, b, n * sizeof(*a)) == 0;
}

static int same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int same_op(const struct proto_op *a, const struct proto_op *b)
{
	if (a->kind != b->kind || !same_str(a->path, b->path) || !same_str(a->path2, b->path2) ||
	    !same_str(a->target, b->target) || a->type != b->type || a->mode != b->mode ||
	    a->mtime.tv_sec != b->mtime.tv_sec || a->mtime.tv_nsec != b->mtime.tv_nsec ||
	    a->has_pmtime != b->has_pmtime || a->has_pmtime2 != b->has_pmtime2 ||
	    a->rflags != b->rflags || a->size != b->size || a->nchunks != b->nchunks ||
	    !same_chunks(a->chunks, b->chunks, a->nchunks) || !same_str(a->base_path, b->base_path) ||
	    a->nedits != b->nedits)
		return 0;
	if (a->base_path && memcmp(&a->base_digest, &b->base_digest, sizeof(a->base_digest)))
		return 0;
	if (a->patched != b->patched || a->npatches != b->npatches)
		return 0;
	for (size_t i = 0; i < a->npatches; i++)
		if (a->patches[i].off != b->patches[i].off || a->patches[i].len != b->patches[i].len ||
		    memcmp(a->patches[i].data, b->patches[i].data, a->patches[i].len) != 0)
			return 0;
	if (a->nmoves != b->nmoves)
		return 0;
	for (size_t i = 0; i < a->nmoves; i++)
		if (a->moves[i].off != b->moves[i].off || a->moves[i].len != b->moves[i].len ||
		    a->moves[i].src != b->moves[i].src)
			return 0;
	for (size_t i = 0; i < a->nedits; i++)
		if (a->edits[i].start != b->edits[i].start || a->edits[i].del != b->edits[i].del ||
		    a->edits[i].n != b->edits[i].n ||
		    !same_chunks(a->edits[i].chunks, b->edits[i].chunks, a->edits[i].n))
			return 0;
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_op op, again;
	const char *why = NULL;
	if (proto_json_has_nul((const char *)data, size))
		return 0; /* refused before parsing, as mirrord does */
	cJSON *j = cJSON_ParseWithLength((const char *)data, size);
	if (!j)
		return 0;
	if (proto_json_depth(j) > PROTO_JSON_DEPTH_MAX) {
		cJSON_Delete(j);
		return 0;
	}
	unsigned flags = size & 1 ? PROTO_REFS : 0;
	int r = proto_op_from_json_flags(j, flags, &op, &why);
	cJSON_Delete(j);
	if (r < 0) {
		if (!why)
			abort(); /* every refusal says why */
		return 0;
	}
	/* What is accepted is safe to apply: every path is a mirror path. */
	if (path_check(op.path, strlen(op.path), op.kind == OP_MKDIR || op.kind == OP_META) < 0 ||
	    (op.path2 && path_check(op.path2, strlen(op.path2), 0) < 0) ||
	    (op.base_path && path_check(op.base_path, strlen(op.base_path), 0) < 0))
		abort();
	cJSON *e = proto_op_to_json_flags(&op, flags);
	if (!e)
		abort();
	r = proto_op_from_json_flags(e, flags, &again, &why);
	cJSON_Delete(e);
	if (r < 0 || !same_op(&op, &again))
		abort();
	proto_op_release(&again);
	if (flags) {
		struct proto_chunk frames[4];
		memset(frames, 0, sizeof(frames));
		for (uint32_t k = 0; k < 4; k++) {
			frames[k].id.b[0] = (uint8_t)(k + 1);
			frames[k].len = k + 1;
		}
		if (proto_op_resolve_refs(&op, frames, 4, &why) == 0) {
			for (size_t i = 0; i < op.nchunks; i++)
				if (op.chunks[i].ref)
					abort();
			for (size_t e2 = 0; e2 < op.nedits; e2++)
				for (size_t i = 0; i < op.edits[e2].n; i++)
					if (op.edits[e2].chunks[i].ref)
						abort();
		} else if (!why) {
			abort();
		}
	}
	proto_op_release(&op);
	return 0;
}
