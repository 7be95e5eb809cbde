#define _GNU_SOURCE
#include "proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "path.h"

/* The errno values that cross the wire. Anything else travels as EUNKNOWN. */
static const struct {
	int err;
	const char *name;
} errno_names[] = {
	{ ENOENT, "ENOENT" },	    { EEXIST, "EEXIST" },	{ ENOTDIR, "ENOTDIR" },
	{ EISDIR, "EISDIR" },	    { ENOTEMPTY, "ENOTEMPTY" }, { EINVAL, "EINVAL" },
	{ ENAMETOOLONG, "ENAMETOOLONG" }, { ENOSPC, "ENOSPC" }, { EDQUOT, "EDQUOT" },
	{ EIO, "EIO" },		    { EACCES, "EACCES" },	{ EPERM, "EPERM" },
	{ ELOOP, "ELOOP" },	    { EXDEV, "EXDEV" },		{ EBADMSG, "EBADMSG" },
	{ EMSGSIZE, "EMSGSIZE" },   { E2BIG, "E2BIG" },		{ EILSEQ, "EILSEQ" },
	{ EROFS, "EROFS" },	    { ENOMEM, "ENOMEM" },	{ EBUSY, "EBUSY" },
	{ EAGAIN, "EAGAIN" },	    { ETIMEDOUT, "ETIMEDOUT" }, { EOPNOTSUPP, "EOPNOTSUPP" },
	{ EMLINK, "EMLINK" },	    { EFBIG, "EFBIG" },		{ ENOSYS, "ENOSYS" },
	{ ESTALE, "ESTALE" },
};

const char *proto_errno_name(int err)
{
	for (size_t i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]); i++)
		if (errno_names[i].err == err)
			return errno_names[i].name;
	return "EUNKNOWN";
}

int proto_errno_from_name(const char *name)
{
	if (!name)
		return 0;
	for (size_t i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]); i++)
		if (strcmp(errno_names[i].name, name) == 0)
			return errno_names[i].err;
	return 0;
}

unsigned proto_status_for_errno(int err)
{
	switch (err) {
	case ENOSPC:
	case EDQUOT:
		return 507;
	case ENAMETOOLONG:
	case EILSEQ:
	case EINVAL:
	case EFBIG:
	case EMLINK:
	case EOPNOTSUPP:
	case EPERM:
	case EACCES:
	case EROFS:
	case EEXIST:
	case ENOTEMPTY:
	case ENOTDIR:
	case EISDIR:
	case ELOOP:
	case EXDEV:
		return 422;
	case ENOENT:
		return 404;
	case ESTALE:
		return 409; /* a delta's base is not what the client thinks */
	case EBADMSG:
		return 400;
	case EMSGSIZE:
	case E2BIG:
		return 413;
	default:
		return 500;
	}
}

int proto_json_depth(const cJSON *j)
{
	int max = 0;
	if (!j)
		return 0;
	for (const cJSON *c = j->child; c; c = c->next) {
		int d = proto_json_depth(c);
		if (d > max)
			max = d;
	}
	return max + 1;
}

int proto_json_has_nul(const char *text, size_t len)
{
	int in_str = 0;
	if (memchr(text, '\0', len))
		return 1;
	for (size_t i = 0; i < len; i++) {
		if (!in_str) {
			in_str = text[i] == '"';
			continue;
		}
		if (text[i] == '"') {
			in_str = 0;
		} else if (text[i] == '\\' && i + 1 < len) {
			i++; /* the escaped character is never a quote that ends the string */
			if (text[i] == 'u' && len - i > 4 && memcmp(text + i + 1, "0000", 4) == 0)
				return 1;
		}
	}
	return 0;
}

cJSON *proto_time_to_json(const struct timespec *ts)
{
	cJSON *a = cJSON_CreateArray();
	if (!a)
		return NULL;
	if (!cJSON_AddItemToArray(a, cJSON_CreateNumber((double)ts->tv_sec)) ||
	    !cJSON_AddItemToArray(a, cJSON_CreateNumber((double)ts->tv_nsec))) {
		cJSON_Delete(a);
		return NULL;
	}
	return a;
}

/* An integral JSON number within [lo, hi]. */
static int get_int(const cJSON *j, double lo, double hi, int64_t *out)
{
	if (!cJSON_IsNumber(j))
		return -EINVAL;
	double d = j->valuedouble;
	if (!(d >= lo && d <= hi) || d != (double)(int64_t)d)
		return -EINVAL;
	*out = (int64_t)d;
	return 0;
}

int proto_json_int(const cJSON *j, double lo, double hi, int64_t *out)
{
	return get_int(j, lo, hi, out);
}

int proto_time_from_json(const cJSON *j, struct timespec *ts)
{
	int64_t s, ns;
	if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) != 2)
		return -EINVAL;
	/* 2^53: beyond it a double no longer holds every integer */
	if (get_int(j->child, -9007199254740992.0, 9007199254740992.0, &s) < 0 ||
	    get_int(j->child->next, 0, 999999999, &ns) < 0)
		return -EINVAL;
	ts->tv_sec = (time_t)s;
	ts->tv_nsec = (long)ns;
	return 0;
}

static const char *kind_names[] = {
	[OP_FILE] = "file",	    [OP_MKDIR] = "mkdir", [OP_SYMLINK] = "symlink",
	[OP_DELETE] = "delete", [OP_META] = "meta",	  [OP_RENAME] = "rename",
};
static const char *rflag_names[] = { "", "noreplace", "exchange" };

static int add_time(cJSON *o, const char *key, const struct timespec *ts)
{
	cJSON *t = proto_time_to_json(ts);
	return t && cJSON_AddItemToObject(o, key, t) ? 0 : -ENOMEM;
}

/* Append [[hex,len],...] entries to arr ([k,len] for a ref). */
static int fill_chunk_list(cJSON *arr, const struct proto_chunk *c, size_t n, int refs)
{
	char hex[HASH_HEX_LEN + 1];
	for (size_t i = 0; i < n; i++) {
		cJSON *pair = cJSON_CreateArray();
		if (!pair || !cJSON_AddItemToArray(arr, pair))
			return -ENOMEM;
		hash_to_hex(&c[i].id, hex);
		cJSON *name = refs && c[i].ref ? cJSON_CreateNumber((double)(c[i].ref - 1))
				       : cJSON_CreateString(hex);
		if (!cJSON_AddItemToArray(pair, name) ||
		    !cJSON_AddItemToArray(pair, cJSON_CreateNumber(c[i].len)))
			return -ENOMEM;
	}
	return 0;
}

/* Add a new [[hex,len],...] array to parent (an array). */
static int add_chunk_list(cJSON *parent, const struct proto_chunk *c, size_t n, int refs)
{
	cJSON *arr = cJSON_CreateArray();
	if (!arr || !cJSON_AddItemToArray(parent, arr))
		return -ENOMEM;
	return fill_chunk_list(arr, c, n, refs);
}

void proto_list_pack(const struct proto_chunk *c, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < n; i++, out += PROTO_LIST_ENTRY) {
		memcpy(out, c[i].id.b, HASH_LEN);
		out[HASH_LEN] = (uint8_t)(c[i].len >> 24);
		out[HASH_LEN + 1] = (uint8_t)(c[i].len >> 16);
		out[HASH_LEN + 2] = (uint8_t)(c[i].len >> 8);
		out[HASH_LEN + 3] = (uint8_t)c[i].len;
	}
}

void proto_list_unpack(const uint8_t *in, size_t n, struct proto_chunk *c)
{
	for (size_t i = 0; i < n; i++, in += PROTO_LIST_ENTRY) {
		memcpy(c[i].id.b, in, HASH_LEN);
		c[i].len = (uint32_t)in[HASH_LEN] << 24 | (uint32_t)in[HASH_LEN + 1] << 16 |
			   (uint32_t)in[HASH_LEN + 2] << 8 | in[HASH_LEN + 3];
		c[i].ref = 0;
	}
}

void proto_list_digest(const struct proto_chunk *c, size_t n, struct hash_id *out)
{
	struct hash_state st;
	uint8_t e[PROTO_LIST_ENTRY];
	hash_start(&st);
	for (size_t i = 0; i < n; i++) {
		proto_list_pack(&c[i], 1, e);
		hash_update(&st, e, sizeof(e));
	}
	hash_final(&st, out);
}

struct proto_chunk *proto_apply_edits(const struct proto_chunk *base, size_t nbase,
				      const struct proto_edit *e, size_t ne, size_t *n, int *err)
{
	size_t total = nbase, pos = 0;
	for (size_t i = 0; i < ne; i++) {
		if (e[i].start < pos || e[i].start > nbase || e[i].del > nbase - e[i].start) {
			*err = -EINVAL;
			return NULL;
		}
		pos = (size_t)e[i].start + e[i].del;
		total = total - e[i].del + e[i].n;
	}
	if (total > PROTO_FILE_MAX_CHUNKS) {
		*err = -E2BIG;
		return NULL;
	}
	struct proto_chunk *out = malloc((total ? total : 1) * sizeof(*out));
	if (!out) {
		*err = -ENOMEM;
		return NULL;
	}
	size_t k = 0;
	pos = 0;
	for (size_t i = 0; i < ne; i++) {
		memcpy(out + k, base + pos, (e[i].start - pos) * sizeof(*out));
		k += e[i].start - pos;
		memcpy(out + k, e[i].chunks, e[i].n * sizeof(*out));
		k += e[i].n;
		pos = (size_t)e[i].start + e[i].del;
	}
	memcpy(out + k, base + pos, (nbase - pos) * sizeof(*out));
	k += nbase - pos;
	*n = k;
	return out;
}

cJSON *proto_op_to_json(const struct proto_op *op)
{
	return proto_op_to_json_flags(op, 0);
}

/* "patch": [[off, "base64"], ...] */
static int add_patches(cJSON *o, const struct proto_patch *p, size_t n)
{
	cJSON *arr = cJSON_AddArrayToObject(o, "patch");
	if (!arr)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		size_t blen = sodium_base64_encoded_len(p[i].len, sodium_base64_VARIANT_ORIGINAL);
		char *b64 = malloc(blen);
		cJSON *e = cJSON_CreateArray();
		if (!b64 || !e || !cJSON_AddItemToArray(arr, e)) {
			free(b64);
			cJSON_Delete(e);
			return -ENOMEM;
		}
		/* e belongs to arr from here on */
		sodium_bin2base64(b64, blen, p[i].data, p[i].len, sodium_base64_VARIANT_ORIGINAL);
		int ok = cJSON_AddItemToArray(e, cJSON_CreateNumber((double)p[i].off)) &&
			 cJSON_AddItemToArray(e, cJSON_CreateString(b64));
		free(b64);
		if (!ok)
			return -ENOMEM;
	}
	return 0;
}

/* "move": [[off, len, src], ...] */
static int add_moves(cJSON *o, const struct rsig_move *m, size_t n)
{
	cJSON *arr = cJSON_AddArrayToObject(o, "move");
	if (!arr)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		cJSON *e = cJSON_CreateArray();
		if (!e || !cJSON_AddItemToArray(arr, e)) {
			cJSON_Delete(e);
			return -ENOMEM;
		}
		/* e belongs to arr from here on */
		if (!cJSON_AddItemToArray(e, cJSON_CreateNumber((double)m[i].off)) ||
		    !cJSON_AddItemToArray(e, cJSON_CreateNumber((double)m[i].len)) ||
		    !cJSON_AddItemToArray(e, cJSON_CreateNumber((double)m[i].src)))
			return -ENOMEM;
	}
	return 0;
}

/* The tree of op; without its "chunks" list when bare (proto_op_print
 * writes that itself). */
static cJSON *op_tree(const struct proto_op *op, unsigned flags, int bare)
{
	int refs = (flags & PROTO_REFS) != 0;
	cJSON *o = cJSON_CreateObject();
	char hex[HASH_HEX_LEN + 1];
	if (!o)
		return NULL;
	if (!cJSON_AddStringToObject(o, "op", kind_names[op->kind]))
		goto fail;
	if (op->kind == OP_RENAME) {
		if (!cJSON_AddStringToObject(o, "from", op->path) ||
		    !cJSON_AddStringToObject(o, "to", op->path2) ||
		    !cJSON_AddStringToObject(o, "flags", rflag_names[op->rflags]))
			goto fail;
	} else if (!cJSON_AddStringToObject(o, "path", op->path)) {
		goto fail;
	}
	if (op->kind == OP_FILE || op->kind == OP_MKDIR || op->kind == OP_META) {
		if (!cJSON_AddNumberToObject(o, "mode", op->mode & 07777))
			goto fail;
	}
	if (op->kind == OP_FILE || op->kind == OP_MKDIR || op->kind == OP_META ||
	    op->kind == OP_SYMLINK) {
		if (add_time(o, "mtime", &op->mtime) < 0)
			goto fail;
	}
	if (op->kind == OP_META) {
		char t[2] = { op->type, 0 };
		if (!cJSON_AddStringToObject(o, "type", t))
			goto fail;
	}
	if (op->kind == OP_SYMLINK && !cJSON_AddStringToObject(o, "target", op->target))
		goto fail;
	if (op->kind == OP_FILE) {
		if (!cJSON_AddNumberToObject(o, "size", (double)op->size))
			goto fail;
		if (op->base_path) {
			cJSON *b = cJSON_AddObjectToObject(o, "base");
			hash_to_hex(&op->base_digest, hex);
			if (!b || !cJSON_AddStringToObject(b, "path", op->base_path) ||
			    !cJSON_AddStringToObject(b, "digest", hex))
				goto fail;
			cJSON *ea = cJSON_AddArrayToObject(o, "edits");
			if (!ea)
				goto fail;
			for (size_t i = 0; i < op->nedits; i++) {
				cJSON *ed = cJSON_CreateArray();
				if (!ed || !cJSON_AddItemToArray(ea, ed) ||
				    !cJSON_AddItemToArray(ed, cJSON_CreateNumber(op->edits[i].start)) ||
				    !cJSON_AddItemToArray(ed, cJSON_CreateNumber(op->edits[i].del)) ||
				    add_chunk_list(ed, op->edits[i].chunks, op->edits[i].n, refs) < 0)
					goto fail;
			}
		} else if (!bare) {
			cJSON *arr = cJSON_AddArrayToObject(o, "chunks");
			if (!arr || fill_chunk_list(arr, op->chunks, op->nchunks, refs) < 0)
				goto fail;
		}
		if (op->patched && add_patches(o, op->patches, op->npatches) < 0)
			goto fail;
		if (op->nmoves && add_moves(o, op->moves, op->nmoves) < 0)
			goto fail;
		if (op->has_stage) {
			char hex[2 * PROTO_STAGE_LEN + 1];
			sodium_bin2hex(hex, sizeof(hex), op->stage, PROTO_STAGE_LEN);
			if (!cJSON_AddStringToObject(o, "stage", hex))
				goto fail;
		}
	}
	if (op->has_pmtime && add_time(o, "pmtime", &op->pmtime) < 0)
		goto fail;
	if (op->has_pmtime2 && add_time(o, "pmtime2", &op->pmtime2) < 0)
		goto fail;
	return o;
fail:
	cJSON_Delete(o);
	return NULL;
}

cJSON *proto_op_to_json_flags(const struct proto_op *op, unsigned flags)
{
	return op_tree(op, flags, 0);
}

/* Longest entry of a printed list: ["<64 hex>",4294967295], */
#define LIST_ENTRY_TEXT_MAX (2 + HASH_HEX_LEN + 2 + 10 + 2)

char *proto_op_print(const struct proto_op *op, unsigned flags)
{
	int refs = (flags & PROTO_REFS) != 0;
	int bare = op->kind == OP_FILE && !op->base_path;
	cJSON *o = op_tree(op, flags, bare);
	char *skel = o ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	if (!skel || !bare)
		return skel;
	/* skel is "{...}": the list goes in before its closing brace. */
	size_t sl = strlen(skel);
	size_t cap = sl + sizeof(",\"chunks\":[]") + op->nchunks * LIST_ENTRY_TEXT_MAX + 1;
	char *out = sl >= 2 && skel[sl - 1] == '}' ? malloc(cap) : NULL;
	if (!out) {
		free(skel);
		return NULL;
	}
	memcpy(out, skel, sl - 1);
	size_t n = sl - 1;
	free(skel);
	n += (size_t)sprintf(out + n, "%s\"chunks\":[", sl > 2 ? "," : "");
	for (size_t i = 0; i < op->nchunks; i++) {
		const struct proto_chunk *c = &op->chunks[i];
		out[n++] = i ? ',' : '[';
		if (i)
			out[n++] = '[';
		if (refs && c->ref) {
			n += (size_t)sprintf(out + n, "%u", c->ref - 1);
		} else {
			out[n++] = '"';
			hash_to_hex(&c->id, out + n);
			n += HASH_HEX_LEN;
			out[n++] = '"';
		}
		n += (size_t)sprintf(out + n, ",%u]", (unsigned)c->len);
	}
	memcpy(out + n, "]}", 3);
	return out;
}

void proto_op_release(struct proto_op *op)
{
	if (!op)
		return;
	for (size_t i = 0; i < op->npatches; i++)
		free(op->patches[i].data);
	free(op->patches);
	free(op->moves);
	free(op->path);
	free(op->path2);
	free(op->target);
	free(op->chunks);
	free(op->base_path);
	for (size_t i = 0; i < op->nedits; i++)
		free(op->edits[i].chunks);
	free(op->edits);
	memset(op, 0, sizeof(*op));
}

/* Copy a validated path string out of field key. */
static int get_path(const cJSON *o, const char *key, int allow_root, char **out,
		    const char **why)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
	if (!cJSON_IsString(j) || !j->valuestring) {
		*why = "missing or non-string path";
		return -EINVAL;
	}
	size_t len = strlen(j->valuestring);
	int r = path_check(j->valuestring, len, allow_root);
	if (r < 0) {
		*why = r == -ENAMETOOLONG ? "path too long" : "invalid path";
		return r;
	}
	*out = strdup(j->valuestring);
	return *out ? 0 : -ENOMEM;
}

static int get_time(const cJSON *o, const char *key, int required, struct timespec *ts,
		    int *has, const char **why)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
	if (!j) {
		if (required) {
			*why = "missing time";
			return -EINVAL;
		}
		return 0;
	}
	if (proto_time_from_json(j, ts) < 0) {
		*why = "invalid time";
		return -EINVAL;
	}
	if (has)
		*has = 1;
	return 0;
}

static int get_mode(const cJSON *o, uint32_t *mode, const char **why)
{
	int64_t m;
	if (get_int(cJSON_GetObjectItemCaseSensitive(o, "mode"), 0, 07777, &m) < 0) {
		*why = "invalid mode";
		return -EINVAL;
	}
	*mode = (uint32_t)m;
	return 0;
}

/* Parse a [[hex,len],...] array into a new list (*out, caller frees);
 * with refs, entries may be [k,len] too. */
static int parse_chunk_list(const cJSON *arr, int refs, struct proto_chunk **out, size_t *n,
			    uint64_t *sum, const char **why)
{
	int64_t k;
	int64_t len;
	*out = NULL;
	*n = 0;
	if (!cJSON_IsArray(arr)) {
		*why = "missing chunk list";
		return -EINVAL;
	}
	int cnt = cJSON_GetArraySize(arr);
	if (cnt < 0 || (unsigned)cnt > PROTO_FILE_MAX_CHUNKS) {
		*why = "too many chunks";
		return -E2BIG;
	}
	if (cnt > 0 && !(*out = calloc((size_t)cnt, sizeof(**out))))
		return -ENOMEM;
	const cJSON *c;
	cJSON_ArrayForEach(c, arr) {
		struct proto_chunk *pc = &(*out)[*n];
		if (!cJSON_IsArray(c) || cJSON_GetArraySize(c) != 2 ||
		    get_int(c->child->next, 1, 1024 * 1024, &len) < 0) {
			*why = "invalid chunk entry";
			return -EINVAL;
		}
		if (refs && cJSON_IsNumber(c->child)) {
			if (get_int(c->child, 0, PROTO_BUNDLE_MAX_FRAMES - 1, &k) < 0) {
				*why = "invalid chunk reference";
				return -EINVAL;
			}
			pc->ref = (uint32_t)k + 1;
		} else if (!cJSON_IsString(c->child) ||
			   hash_from_hex(c->child->valuestring, strlen(c->child->valuestring),
					 &pc->id) < 0) {
			*why = "invalid chunk entry";
			return -EINVAL;
		}
		pc->len = (uint32_t)len;
		*sum += (uint64_t)len;
		(*n)++;
	}
	return 0;
}

/* A delta: "base" {path, digest} and "edits" [[start, del, [chunks]], ...].
 * The sizes are checked once the server has applied the edits. */
static int get_delta(const cJSON *o, int refs, struct proto_op *op, const char **why)
{
	const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, "base");
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(b, "digest");
	const cJSON *ea = cJSON_GetObjectItemCaseSensitive(o, "edits");
	int64_t start, del;
	uint64_t sum = 0;
	int r;

	if ((r = get_path(b, "path", 0, &op->base_path, why)) < 0)
		return r;
	if (!cJSON_IsString(d) || hash_from_hex(d->valuestring, strlen(d->valuestring),
						 &op->base_digest) < 0) {
		*why = "invalid base digest";
		return -EINVAL;
	}
	int cnt = cJSON_IsArray(ea) ? cJSON_GetArraySize(ea) : -1;
	if (cnt < 0 || cnt > PROTO_MAX_EDITS) {
		*why = cnt < 0 ? "missing edits" : "too many edits";
		return cnt < 0 ? -EINVAL : -E2BIG;
	}
	if (cnt > 0 && !(op->edits = calloc((size_t)cnt, sizeof(*op->edits))))
		return -ENOMEM;
	const cJSON *e;
	cJSON_ArrayForEach(e, ea) {
		struct proto_edit *pe = &op->edits[op->nedits];
		if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 3 ||
		    get_int(e->child, 0, PROTO_FILE_MAX_CHUNKS, &start) < 0 ||
		    get_int(e->child->next, 0, PROTO_FILE_MAX_CHUNKS, &del) < 0) {
			*why = "invalid edit";
			return -EINVAL;
		}
		pe->start = (uint32_t)start;
		pe->del = (uint32_t)del;
		op->nedits++;
		if ((r = parse_chunk_list(e->child->next->next, refs, &pe->chunks, &pe->n, &sum,
					  why)) < 0)
			return r;
	}
	return 0;
}

static int get_chunks(const cJSON *o, int refs, struct proto_op *op, const char **why)
{
	int64_t size;
	uint64_t sum = 0;
	int r;

	if (get_int(cJSON_GetObjectItemCaseSensitive(o, "size"), 0, 9007199254740992.0, &size) < 0) {
		*why = "invalid size";
		return -EINVAL;
	}
	op->size = (uint64_t)size;
	if (cJSON_GetObjectItemCaseSensitive(o, "base"))
		return get_delta(o, refs, op, why);
	if ((r = parse_chunk_list(cJSON_GetObjectItemCaseSensitive(o, "chunks"), refs, &op->chunks,
				  &op->nchunks, &sum, why)) < 0)
		return r;
	if (sum != op->size) {
		*why = "chunk lengths do not add up to size";
		return -EINVAL;
	}
	return 0;
}

/* "stage" (optional): 32 hex digits. */
static int get_stage(const cJSON *o, struct proto_op *op, const char **why)
{
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "stage");
	if (!st)
		return 0;
	if (!cJSON_IsString(st) || proto_stage_from_hex(st->valuestring, op->stage) < 0) {
		*why = "invalid stage";
		return -EINVAL;
	}
	op->has_stage = 1;
	return 0;
}

int proto_stage_from_hex(const char *hex, uint8_t out[PROTO_STAGE_LEN])
{
	size_t got = 0;
	const char *end = NULL;
	if (strlen(hex) != 2 * PROTO_STAGE_LEN ||
	    sodium_hex2bin(out, PROTO_STAGE_LEN, hex, 2 * PROTO_STAGE_LEN, NULL, &got, &end) != 0 ||
	    got != PROTO_STAGE_LEN || end != hex + 2 * PROTO_STAGE_LEN)
		return -EINVAL;
	return 0;
}

/* "patch" (optional): [[off, "base64"], ...], sorted, disjoint, within
 * the file's size, PROTO_PATCH_BYTES_MAX decoded bytes in all. */
static int get_patches(const cJSON *o, struct proto_op *op, const char **why)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "patch"), *e;
	uint64_t total = 0, end = 0;
	int64_t off;

	if (!arr)
		return 0;
	op->patched = 1;
	int cnt = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : -1;
	if (cnt < 0 || cnt > (int)PROTO_MAX_PATCHES) {
		*why = cnt < 0 ? "invalid patch" : "too many patches";
		return cnt < 0 ? -EINVAL : -E2BIG;
	}
	if (cnt > 0 && !(op->patches = calloc((size_t)cnt, sizeof(*op->patches))))
		return -ENOMEM;
	cJSON_ArrayForEach(e, arr) {
		struct proto_patch *pp = &op->patches[op->npatches];
		const cJSON *b;
		if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2 ||
		    get_int(e->child, 0, 9007199254740992.0, &off) < 0 ||
		    !cJSON_IsString(b = e->child->next)) {
			*why = "invalid patch";
			return -EINVAL;
		}
		size_t blen = strlen(b->valuestring), len = 0;
		/* Decoded: 3 bytes per 4 characters, less one per '=' of padding. */
		size_t dmax = blen / 4 * 3;
		for (size_t k = 1; k <= 2 && dmax > 0 && b->valuestring[blen - k] == '='; k++)
			dmax--;
		if (dmax > PROTO_PATCH_BYTES_MAX - total) {
			*why = "patches too large";
			return -E2BIG;
		}
		if (!(pp->data = malloc(dmax + 1)))
			return -ENOMEM;
		op->npatches++;
		if (sodium_base642bin(pp->data, dmax + 1, b->valuestring, blen, NULL, &len,
				      NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
		    len == 0) {
			*why = "invalid patch data";
			return -EINVAL;
		}
		if ((uint64_t)off < end || (uint64_t)off > op->size || len > op->size - (uint64_t)off) {
			*why = "patches out of order or beyond the size";
			return -EINVAL;
		}
		pp->off = (uint64_t)off;
		pp->len = (uint32_t)len;
		end = pp->off + len;
		total += len;
	}
	return 0;
}

/* "move" (optional): [[off, len, src], ...], sorted by off, disjoint,
 * within the file's size; it makes the op patched. */
static int get_moves(const cJSON *o, struct proto_op *op, const char **why)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "move"), *e;
	uint64_t end = 0;
	int64_t v[3];

	if (!arr)
		return 0;
	int cnt = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : -1;
	if (cnt < 0 || cnt > (int)PROTO_MAX_MOVES) {
		*why = cnt < 0 ? "invalid move" : "too many moves";
		return cnt < 0 ? -EINVAL : -E2BIG;
	}
	op->patched = 1;
	if (cnt > 0 && !(op->moves = calloc((size_t)cnt, sizeof(*op->moves))))
		return -ENOMEM;
	cJSON_ArrayForEach(e, arr) {
		const cJSON *x = cJSON_IsArray(e) && cJSON_GetArraySize(e) == 3 ? e->child : NULL;
		if (!x || get_int(x, 0, 9007199254740992.0, &v[0]) < 0 ||
		    get_int(x->next, 1, 4294967295.0, &v[1]) < 0 ||
		    get_int(x->next->next, 0, 9007199254740992.0, &v[2]) < 0) {
			*why = "invalid move";
			return -EINVAL;
		}
		if ((uint64_t)v[0] < end || (uint64_t)v[0] > op->size ||
		    (uint64_t)v[1] > op->size - (uint64_t)v[0]) {
			*why = "moves out of order or beyond the size";
			return -EINVAL;
		}
		op->moves[op->nmoves++] = (struct rsig_move){ .off = (uint64_t)v[0],
							      .len = (uint32_t)v[1],
							      .src = (uint64_t)v[2] };
		end = (uint64_t)v[0] + (uint64_t)v[1];
	}
	return 0;
}

static int resolve_list(struct proto_chunk *c, size_t n, const struct proto_chunk *frames,
			size_t nframes, const char **why)
{
	for (size_t i = 0; i < n; i++) {
		if (!c[i].ref)
			continue;
		size_t k = c[i].ref - 1;
		if (k >= nframes || frames[k].len != c[i].len) {
			*why = k >= nframes ? "chunk reference to a missing frame"
					    : "chunk reference of another length";
			return -EINVAL;
		}
		c[i].id = frames[k].id;
		c[i].ref = 0;
	}
	return 0;
}

int proto_op_resolve_refs(struct proto_op *op, const struct proto_chunk *frames, size_t nframes,
			  const char **why)
{
	int r = resolve_list(op->chunks, op->nchunks, frames, nframes, why);
	for (size_t e = 0; r == 0 && e < op->nedits; e++)
		r = resolve_list(op->edits[e].chunks, op->edits[e].n, frames, nframes, why);
	return r;
}

int proto_op_from_json(const cJSON *j, struct proto_op *op, const char **why)
{
	return proto_op_from_json_flags(j, 0, op, why);
}

int proto_op_from_json_flags(const cJSON *j, unsigned flags, struct proto_op *op,
			     const char **why)
{
	int r = -EINVAL;
	memset(op, 0, sizeof(*op));
	*why = "malformed op";
	if (!cJSON_IsObject(j))
		goto fail;
	if (proto_json_depth(j) > PROTO_JSON_DEPTH_MAX) {
		*why = "json nested too deeply";
		goto fail;
	}
	const cJSON *k = cJSON_GetObjectItemCaseSensitive(j, "op");
	if (!cJSON_IsString(k)) {
		*why = "missing op";
		goto fail;
	}
	op->kind = 0;
	for (int i = OP_FILE; i <= OP_RENAME; i++)
		if (strcmp(k->valuestring, kind_names[i]) == 0)
			op->kind = (enum proto_kind)i;
	if (!op->kind) {
		*why = "unknown op";
		goto fail;
	}
	int root_ok = op->kind == OP_MKDIR || op->kind == OP_META;
	if (op->kind == OP_RENAME) {
		if ((r = get_path(j, "from", 0, &op->path, why)) < 0 ||
		    (r = get_path(j, "to", 0, &op->path2, why)) < 0)
			goto fail;
		const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "flags");
		r = -EINVAL;
		op->rflags = RENAME_F_NONE;
		if (f) {
			if (!cJSON_IsString(f))
				goto fail;
			int found = 0;
			for (int i = 0; i < 3; i++)
				if (strcmp(f->valuestring, rflag_names[i]) == 0) {
					op->rflags = (enum proto_rename_flags)i;
					found = 1;
				}
			if (!found) {
				*why = "unknown rename flags";
				goto fail;
			}
		}
		if ((r = get_time(j, "pmtime2", 0, &op->pmtime2, &op->has_pmtime2, why)) < 0)
			goto fail;
	} else if ((r = get_path(j, "path", root_ok, &op->path, why)) < 0) {
		goto fail;
	}
	if ((r = get_time(j, "pmtime", 0, &op->pmtime, &op->has_pmtime, why)) < 0)
		goto fail;
	switch (op->kind) {
	case OP_FILE:
		if ((r = get_mode(j, &op->mode, why)) < 0 ||
		    (r = get_time(j, "mtime", 1, &op->mtime, NULL, why)) < 0 ||
		    (r = get_chunks(j, (flags & PROTO_REFS) != 0, op, why)) < 0 ||
		    (r = get_patches(j, op, why)) < 0 || (r = get_moves(j, op, why)) < 0 ||
		    (r = get_stage(j, op, why)) < 0)
			goto fail;
		break;
	case OP_MKDIR:
		if ((r = get_mode(j, &op->mode, why)) < 0 ||
		    (r = get_time(j, "mtime", 1, &op->mtime, NULL, why)) < 0)
			goto fail;
		break;
	case OP_META: {
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "type");
		r = -EINVAL;
		if (!cJSON_IsString(t) || strlen(t->valuestring) != 1 ||
		    !strchr("fdl", t->valuestring[0])) {
			*why = "invalid type";
			goto fail;
		}
		op->type = t->valuestring[0];
		if (op->path[0] == '\0' && op->type != 'd') {
			*why = "invalid path";
			goto fail;
		}
		if ((r = get_mode(j, &op->mode, why)) < 0 ||
		    (r = get_time(j, "mtime", 1, &op->mtime, NULL, why)) < 0)
			goto fail;
		break;
	}
	case OP_SYMLINK: {
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "target");
		r = -EINVAL;
		if (!cJSON_IsString(t) || t->valuestring[0] == '\0' ||
		    strlen(t->valuestring) > PATH_MAX_LEN) {
			*why = "invalid symlink target";
			goto fail;
		}
		if (!(op->target = strdup(t->valuestring))) {
			r = -ENOMEM;
			goto fail;
		}
		if ((r = get_time(j, "mtime", 1, &op->mtime, NULL, why)) < 0)
			goto fail;
		break;
	}
	case OP_DELETE:
	case OP_RENAME:
		break;
	}
	return 0;
fail:
	proto_op_release(op);
	return r;
}

/* ---- list diff: old positions sorted by (id, len, position), for finding
 * where the old list has a chunk again. */
static int cmp_chunk(const struct proto_chunk *a, const struct proto_chunk *b)
{
	int c = memcmp(a->id.b, b->id.b, sizeof(a->id.b));
	return c ? c : (a->len > b->len) - (a->len < b->len);
}

static int cmp_pos(const void *pa, const void *pb, void *list)
{
	const struct proto_chunk *l = list;
	uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
	int c = cmp_chunk(&l[a], &l[b]);
	return c ? c : (a > b) - (a < b);
}

/* The first position >= from where old (sorted as pos[0..n)) holds c, or
 * SIZE_MAX. */
static size_t find_old(const struct proto_chunk *old, const uint32_t *pos, size_t n,
		       const struct proto_chunk *c, size_t from)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int k = cmp_chunk(&old[pos[mid]], c);
		if (k < 0 || (k == 0 && pos[mid] < from))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && cmp_chunk(&old[pos[lo]], c) == 0 ? pos[lo] : SIZE_MAX;
}

int proto_diff_lists(const struct proto_chunk *old, size_t nold, struct proto_chunk *pc,
		      size_t n, struct proto_edit **out, size_t *ins)
{
	uint32_t *pos = malloc((nold ? nold : 1) * sizeof(*pos));
	struct proto_edit *e = NULL;
	size_t ne = 0, i = 0, j = 0;
	*out = NULL;
	*ins = 0;
	if (!pos || nold > UINT32_MAX)
		goto nomem;
	for (size_t k = 0; k < nold; k++)
		pos[k] = (uint32_t)k;
	qsort_r(pos, nold, sizeof(*pos), cmp_pos, (void *)old);
	while (i < n || j < nold) {
		if (i < n && j < nold && cmp_chunk(&pc[i], &old[j]) == 0) {
			i++;
			j++;
			continue;
		}
		/* Resynchronise on a chunk the old list has again, confirmed
		 * by the next one (or both lists ending there): a lone match
		 * far ahead (a chunk moved, a run of zeros) is not taken. */
		size_t i2 = i, j2 = SIZE_MAX;
		if (ne + 1 < PROTO_MAX_EDITS)
			for (; i2 < n; i2++) {
				j2 = find_old(old, pos, nold, &pc[i2], j);
				if (j2 != SIZE_MAX &&
				    ((i2 + 1 == n && j2 + 1 == nold) ||
				     (i2 + 1 < n && j2 + 1 < nold &&
				      cmp_chunk(&pc[i2 + 1], &old[j2 + 1]) == 0)))
					break;
				j2 = SIZE_MAX;
			}
		if (j2 == SIZE_MAX) { /* the rest is one edit */
			i2 = n;
			j2 = nold;
		}
		if (ne % 16 == 0) {
			struct proto_edit *p = realloc(e, (ne + 16) * sizeof(*e));
			if (!p)
				goto nomem;
			e = p;
		}
		e[ne++] = (struct proto_edit){ .start = (uint32_t)j, .del = (uint32_t)(j2 - j),
					       .chunks = pc + i, .n = i2 - i };
		*ins += i2 - i;
		i = i2;
		j = j2;
	}
	free(pos);
	*out = e;
	return (int)ne;
nomem:
	free(pos);
	free(e);
	return -ENOMEM;
}
