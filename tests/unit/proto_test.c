/* Unit tests for common/proto: op JSON round trips, validation, errno map. */
#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "path.h"
#include "proto.h"

/* Encode op, print it as on the wire, parse it back and decode it.
 * Returns proto_op_from_json's result; *out is released by the caller. */
static int wire_roundtrip(const struct proto_op *op, struct proto_op *out)
{
	const char *why = NULL;
	cJSON *j = proto_op_to_json(op);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	char *text = proto_op_print(op, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	cJSON *back = cJSON_Parse(text);
	free(text);
	CU_ASSERT_PTR_NOT_NULL_FATAL(back);
	/* The printed text holds the same JSON as the tree (keys may come in
	 * another order). */
	CU_ASSERT(cJSON_Compare(j, back, 1));
	cJSON_Delete(j);
	int r = proto_op_from_json(back, out, &why);
	cJSON_Delete(back);
	CU_ASSERT_PTR_NOT_NULL(why);
	return r;
}

/* Decode JSON text. On failure check that *why is set and the op released. */
static int decode_text(const char *text, struct proto_op *op, const char **why)
{
	cJSON *j = cJSON_Parse(text);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	*why = NULL;
	int r = proto_op_from_json(j, op, why);
	cJSON_Delete(j);
	if (r < 0) {
		CU_ASSERT_PTR_NOT_NULL(*why);
		CU_ASSERT_PTR_NULL(op->path);
		CU_ASSERT_PTR_NULL(op->path2);
		CU_ASSERT_PTR_NULL(op->target);
		CU_ASSERT_PTR_NULL(op->chunks);
	}
	return r;
}

static int decode_ok(const char *text)
{
	struct proto_op op;
	const char *why;
	int r = decode_text(text, &op, &why);
	if (r == 0)
		proto_op_release(&op);
	return r;
}

/* decode_ok() of a file op of one 100-byte chunk with member key: value
 * (JSON text) added must give want. */
static void check_file_with(const char *key, const char *value, int want)
{
	static const char *const h =
		"0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8";
	char text[512];
	int n = snprintf(text, sizeof(text),
			 "{\"op\":\"file\",\"path\":\"a\",\"mode\":1,\"mtime\":[1,0],"
			 "\"size\":100,\"chunks\":[[\"%s\",100]],\"%s\":%s}",
			 h, key, value);
	CU_ASSERT_FATAL(n > 0 && (size_t)n < sizeof(text));
	int r = decode_ok(text);
	if (r != want)
		fprintf(stderr, "%s %s: %d, not %d\n", key, value, r, want);
	CU_ASSERT_EQUAL(r, want);
}

static int same_ts(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

static void check_same(const struct proto_op *a, const struct proto_op *b)
{
	CU_ASSERT_EQUAL(a->kind, b->kind);
	CU_ASSERT_STRING_EQUAL(a->path, b->path);
	if (a->kind == OP_RENAME) {
		CU_ASSERT_STRING_EQUAL(a->path2, b->path2);
		CU_ASSERT_EQUAL(a->rflags, b->rflags);
		CU_ASSERT_EQUAL(a->has_pmtime2, b->has_pmtime2);
		if (a->has_pmtime2 && b->has_pmtime2)
			CU_ASSERT(same_ts(&a->pmtime2, &b->pmtime2));
	}
	if (a->kind == OP_FILE || a->kind == OP_MKDIR || a->kind == OP_META)
		CU_ASSERT_EQUAL(a->mode, b->mode);
	if (a->kind != OP_DELETE && a->kind != OP_RENAME)
		CU_ASSERT(same_ts(&a->mtime, &b->mtime));
	if (a->kind == OP_META)
		CU_ASSERT_EQUAL(a->type, b->type);
	if (a->kind == OP_SYMLINK)
		CU_ASSERT_STRING_EQUAL(a->target, b->target);
	CU_ASSERT_EQUAL(a->has_pmtime, b->has_pmtime);
	if (a->has_pmtime && b->has_pmtime)
		CU_ASSERT(same_ts(&a->pmtime, &b->pmtime));
	if (a->kind == OP_FILE) {
		CU_ASSERT_EQUAL(a->size, b->size);
		CU_ASSERT_EQUAL_FATAL(a->nchunks, b->nchunks);
		for (size_t i = 0; i < a->nchunks; i++) {
			CU_ASSERT(hash_equal(&a->chunks[i].id, &b->chunks[i].id));
			CU_ASSERT_EQUAL(a->chunks[i].len, b->chunks[i].len);
		}
	}
}

static void roundtrip_ok(const struct proto_op *op)
{
	struct proto_op back;
	CU_ASSERT_EQUAL_FATAL(wire_roundtrip(op, &back), 0);
	check_same(op, &back);
	proto_op_release(&back);
	CU_ASSERT_PTR_NULL(back.path); /* release zeroes */
}

static const struct timespec t1 = { 1700000000, 123456789 };
static const struct timespec t2 = { 4102444800, 999999999 }; /* beyond 2^32 */
static const struct timespec t3 = { -1, 1 };                 /* before the epoch */

static void test_roundtrip_file(void)
{
	struct proto_chunk ch[3];
	for (int i = 0; i < 3; i++) {
		hash_buf(&i, sizeof(i), &ch[i].id);
		ch[i].len = (uint32_t)(65536 + i * 1000);
	}
	ch[2].len = 1024 * 1024; /* the protocol cap is allowed */
	struct proto_op op = {
		.kind = OP_FILE, .path = "dir/f\xc3\xa9 x.txt", .mode = 0644, .mtime = t1,
		.size = 65536 + 66536 + 1024 * 1024, .chunks = ch, .nchunks = 3,
		.has_pmtime = 1, .pmtime = t2,
	};
	roundtrip_ok(&op);

	/* empty file: no chunks; no pmtime; unusual mode bits */
	struct proto_op empty = { .kind = OP_FILE, .path = "e", .mode = 07777, .mtime = t3 };
	roundtrip_ok(&empty);
}

static void test_roundtrip_others(void)
{
	struct proto_op mk = { .kind = OP_MKDIR, .path = "a/b", .mode = 0755, .mtime = t1,
			       .has_pmtime = 1, .pmtime = t3 };
	roundtrip_ok(&mk);
	struct proto_op mkroot = { .kind = OP_MKDIR, .path = "", .mode = 0700, .mtime = t2 };
	roundtrip_ok(&mkroot);

	struct proto_op sl = { .kind = OP_SYMLINK, .path = "l", .target = "../../x/y",
			       .mtime = t1, .has_pmtime = 1, .pmtime = t1 };
	roundtrip_ok(&sl);
	struct proto_op sl_abs = { .kind = OP_SYMLINK, .path = "d/l", .target = "/etc/passwd",
				   .mtime = t2 };
	roundtrip_ok(&sl_abs); /* targets are verbatim, never checked as paths */

	struct proto_op del = { .kind = OP_DELETE, .path = "gone/x" };
	roundtrip_ok(&del);
	struct proto_op del_p = { .kind = OP_DELETE, .path = "x", .has_pmtime = 1, .pmtime = t2 };
	roundtrip_ok(&del_p);

	const char types[] = { 'f', 'd', 'l' };
	for (int i = 0; i < 3; i++) {
		struct proto_op m = { .kind = OP_META, .path = "m", .type = types[i], .mode = 0600,
				      .mtime = t1, .has_pmtime = i == 1, .pmtime = t2 };
		roundtrip_ok(&m);
	}
	struct proto_op mroot = { .kind = OP_META, .path = "", .type = 'd', .mode = 0755, .mtime = t1 };
	roundtrip_ok(&mroot);

	for (int f = RENAME_F_NONE; f <= RENAME_F_EXCHANGE; f++) {
		struct proto_op rn = { .kind = OP_RENAME, .path = "a/from", .path2 = "b/to",
				       .rflags = (enum proto_rename_flags)f, .has_pmtime = 1,
				       .pmtime = t1, .has_pmtime2 = f != 1, .pmtime2 = t2 };
		roundtrip_ok(&rn);
	}
}

static void test_decode_text(void)
{
	struct proto_op op;
	const char *why;
	int r = decode_text("{\"op\":\"rename\",\"from\":\"a\",\"to\":\"b\"}", &op, &why);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	CU_ASSERT_EQUAL(op.kind, OP_RENAME);
	CU_ASSERT_EQUAL(op.rflags, RENAME_F_NONE); /* flags are optional */
	CU_ASSERT_FALSE(op.has_pmtime);
	CU_ASSERT_FALSE(op.has_pmtime2);
	proto_op_release(&op);

	r = decode_text("{\"op\":\"file\",\"path\":\"f\",\"mode\":420,\"mtime\":[5,6],\"size\":3,"
			"\"chunks\":[[\"0E5751C026E543B2E8AB2EB06099DAA1D1E5DF47778F7787FAAB45CDF12FE3A8\",1],"
			"[\"0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8\",2]]}",
			&op, &why);
	CU_ASSERT_EQUAL_FATAL(r, 0);
	CU_ASSERT_EQUAL(op.nchunks, 2);
	CU_ASSERT_EQUAL(op.size, 3);
	CU_ASSERT_EQUAL(op.mode, 0644);
	CU_ASSERT_EQUAL(op.mtime.tv_sec, 5);
	CU_ASSERT_EQUAL(op.mtime.tv_nsec, 6);
	CU_ASSERT(hash_equal(&op.chunks[0].id, &op.chunks[1].id));
	proto_op_release(&op);
	proto_op_release(&op); /* a zeroed op is fine */
	proto_op_release(NULL);
}

static void test_bad_paths(void)
{
	char big[PATH_COMPONENT_MAX + 4];
	memset(big, 'b', PATH_COMPONENT_MAX + 1);
	big[PATH_COMPONENT_MAX + 1] = '\0';
	const char *bad[] = { "/abs", "a/../b", "a//b", "", ".", "..", "a/", big };
	static const char *tmpl[] = {
		"{\"op\":\"file\",\"path\":\"%s\",\"mode\":420,\"mtime\":[1,0],\"size\":0,\"chunks\":[]}",
		"{\"op\":\"symlink\",\"path\":\"%s\",\"target\":\"t\",\"mtime\":[1,0]}",
		"{\"op\":\"delete\",\"path\":\"%s\"}",
		"{\"op\":\"rename\",\"from\":\"%s\",\"to\":\"ok\"}",
		"{\"op\":\"rename\",\"from\":\"ok\",\"to\":\"%s\"}",
		/* root-capable ops still refuse everything but "" */
		"{\"op\":\"mkdir\",\"path\":\"%s\",\"mode\":493,\"mtime\":[1,0]}",
		"{\"op\":\"meta\",\"path\":\"%s\",\"type\":\"d\",\"mode\":493,\"mtime\":[1,0]}",
	};
	struct buf b;
	buf_init(&b, 0);
	for (size_t t = 0; t < sizeof(tmpl) / sizeof(tmpl[0]); t++) {
		/* the template with "ok" must pass: each failure below is the path's */
		buf_reset(&b);
		CU_ASSERT_EQUAL_FATAL(buf_appendf(&b, tmpl[t], "ok"), 0);
		CU_ASSERT_EQUAL(decode_ok(b.data), 0);
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			int root_ok = t >= 5 && bad[i][0] == '\0';
			buf_reset(&b);
			CU_ASSERT_EQUAL_FATAL(buf_appendf(&b, tmpl[t], bad[i]), 0);
			int r = decode_ok(b.data);
			int want = root_ok ? 0 : bad[i] == big ? -ENAMETOOLONG : -EINVAL;
			CU_ASSERT_EQUAL(r, want);
		}
	}
	buf_release(&b);
	/* "" for meta is the root only as a folder */
	CU_ASSERT_EQUAL(decode_ok("{\"op\":\"meta\",\"path\":\"\",\"type\":\"f\","
				  "\"mode\":1,\"mtime\":[1,0]}"), -EINVAL);
	CU_ASSERT_EQUAL(decode_ok("{\"op\":\"meta\",\"path\":\"\",\"type\":\"l\","
				  "\"mode\":1,\"mtime\":[1,0]}"), -EINVAL);
}

static void test_wrong_types(void)
{
	static const char *bad[] = {
		/* not an object, no op, bad op */
		"[]", "\"file\"", "{}", "{\"op\":1,\"path\":\"a\"}", "{\"op\":null,\"path\":\"a\"}",
		/* path types */
		"{\"op\":\"delete\",\"path\":1}", "{\"op\":\"delete\",\"path\":null}",
		"{\"op\":\"delete\",\"path\":[\"a\"]}", "{\"op\":\"delete\"}",
		"{\"op\":\"rename\",\"from\":\"a\"}",
		/* mode */
		"{\"op\":\"mkdir\",\"path\":\"a\",\"mode\":\"493\",\"mtime\":[1,0]}",
		"{\"op\":\"mkdir\",\"path\":\"a\",\"mode\":4096,\"mtime\":[1,0]}",
		"{\"op\":\"mkdir\",\"path\":\"a\",\"mode\":-1,\"mtime\":[1,0]}",
		"{\"op\":\"mkdir\",\"path\":\"a\",\"mode\":1.5,\"mtime\":[1,0]}",
		"{\"op\":\"mkdir\",\"path\":\"a\",\"mtime\":[1,0]}",
		/* times */
		"{\"op\":\"mkdir\",\"path\":\"a\",\"mode\":493}",
		"{\"op\":\"mkdir\",\"path\":\"a\",\"mode\":493,\"mtime\":1}",
		"{\"op\":\"mkdir\",\"path\":\"a\",\"mode\":493,\"mtime\":[1]}",
		"{\"op\":\"mkdir\",\"path\":\"a\",\"mode\":493,\"mtime\":[1,2,3]}",
		"{\"op\":\"mkdir\",\"path\":\"a\",\"mode\":493,\"mtime\":[1,1000000000]}",
		"{\"op\":\"mkdir\",\"path\":\"a\",\"mode\":493,\"mtime\":[1,-1]}",
		"{\"op\":\"mkdir\",\"path\":\"a\",\"mode\":493,\"mtime\":[1.5,0]}",
		"{\"op\":\"mkdir\",\"path\":\"a\",\"mode\":493,\"mtime\":[\"1\",0]}",
		"{\"op\":\"mkdir\",\"path\":\"a\",\"mode\":493,\"mtime\":[1e300,0]}",
		"{\"op\":\"delete\",\"path\":\"a\",\"pmtime\":\"now\"}",
		"{\"op\":\"rename\",\"from\":\"a\",\"to\":\"b\",\"pmtime2\":[0]}",
		/* meta type, symlink target, rename flags */
		"{\"op\":\"meta\",\"path\":\"a\",\"mode\":1,\"mtime\":[1,0]}",
		"{\"op\":\"meta\",\"path\":\"a\",\"type\":\"x\",\"mode\":1,\"mtime\":[1,0]}",
		"{\"op\":\"meta\",\"path\":\"a\",\"type\":\"fd\",\"mode\":1,\"mtime\":[1,0]}",
		"{\"op\":\"meta\",\"path\":\"a\",\"type\":\"\",\"mode\":1,\"mtime\":[1,0]}",
		"{\"op\":\"meta\",\"path\":\"a\",\"type\":102,\"mode\":1,\"mtime\":[1,0]}",
		"{\"op\":\"symlink\",\"path\":\"a\",\"mtime\":[1,0]}",
		"{\"op\":\"symlink\",\"path\":\"a\",\"target\":\"\",\"mtime\":[1,0]}",
		"{\"op\":\"symlink\",\"path\":\"a\",\"target\":7,\"mtime\":[1,0]}",
		"{\"op\":\"rename\",\"from\":\"a\",\"to\":\"b\",\"flags\":\"bogus\"}",
		"{\"op\":\"rename\",\"from\":\"a\",\"to\":\"b\",\"flags\":1}",
		/* file fields */
		"{\"op\":\"file\",\"path\":\"a\",\"mode\":1,\"mtime\":[1,0],\"chunks\":[]}",
		"{\"op\":\"file\",\"path\":\"a\",\"mode\":1,\"mtime\":[1,0],\"size\":-1,\"chunks\":[]}",
		"{\"op\":\"file\",\"path\":\"a\",\"mode\":1,\"mtime\":[1,0],\"size\":\"0\",\"chunks\":[]}",
		"{\"op\":\"file\",\"path\":\"a\",\"mode\":1,\"mtime\":[1,0],\"size\":0}",
		"{\"op\":\"file\",\"path\":\"a\",\"mode\":1,\"mtime\":[1,0],\"size\":0,\"chunks\":{}}",
		"{\"op\":\"file\",\"path\":\"a\",\"mode\":1,\"mtime\":[1,0],\"size\":1,\"chunks\":[[\"zz\",1]]}",
		"{\"op\":\"file\",\"path\":\"a\",\"mode\":1,\"mtime\":[1,0],\"size\":1,\"chunks\":[[1,1]]}",
		"{\"op\":\"file\",\"path\":\"a\",\"mode\":1,\"mtime\":[1,0],\"size\":1,\"chunks\":[\"x\"]}",
		"{\"op\":\"file\",\"path\":\"a\",\"mode\":1,\"mtime\":[1,0],\"size\":1,\"chunks\":[["
		"\"0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8\"]]}",
		"{\"op\":\"file\",\"path\":\"a\",\"mode\":1,\"mtime\":[1,0],\"size\":0,\"chunks\":[["
		"\"0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8\",0]]}",
		"{\"op\":\"file\",\"path\":\"a\",\"mode\":1,\"mtime\":[1,0],\"size\":1048577,\"chunks\":[["
		"\"0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8\",1048577]]}",
		"{\"op\":\"file\",\"path\":\"a\",\"mode\":1,\"mtime\":[1,0],\"size\":1,\"chunks\":[["
		"\"0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8\",\"1\"]]}",
		"{\"op\":\"file\",\"path\":\"a\",\"mode\":1,\"mtime\":[1,0],\"size\":1,\"chunks\":[["
		"\"0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a\",1]]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = decode_ok(bad[i]);
		if (r != -EINVAL)
			fprintf(stderr, "\nexpected -EINVAL, got %d for %s\n", r, bad[i]);
		CU_ASSERT_EQUAL(r, -EINVAL);
	}
}

static void test_chunk_sums(void)
{
	static const char *const h = "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8";
	char text[512];
	static const struct {
		long size;
		int a, b;
		int ok;
	} cases[] = { { 3, 1, 2, 1 }, { 4, 1, 2, 0 }, { 2, 1, 2, 0 }, { 0, 1, 2, 0 },
		      { 2097152, 1048576, 1048576, 1 }, { 2097151, 1048576, 1048576, 0 } };
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int n = snprintf(text, sizeof(text),
				 "{\"op\":\"file\",\"path\":\"a\",\"mode\":1,\"mtime\":[1,0],"
				 "\"size\":%ld,\"chunks\":[[\"%s\",%d],[\"%s\",%d]]}",
				 cases[i].size, h, cases[i].a, h, cases[i].b);
		CU_ASSERT_FATAL(n > 0 && (size_t)n < sizeof(text));
		CU_ASSERT_EQUAL(decode_ok(text), cases[i].ok ? 0 : -EINVAL);
	}
	/* no chunks: only size 0 adds up */
	CU_ASSERT_EQUAL(decode_ok("{\"op\":\"file\",\"path\":\"a\",\"mode\":1,\"mtime\":[1,0],"
				  "\"size\":0,\"chunks\":[]}"), 0);
	CU_ASSERT_EQUAL(decode_ok("{\"op\":\"file\",\"path\":\"a\",\"mode\":1,\"mtime\":[1,0],"
				  "\"size\":1,\"chunks\":[]}"), -EINVAL);
}

/* proto_diff_lists: whatever the change, applying the edits to the old
 * list gives the new one; a change of a few runs gives a few small edits. */
static void check_diff(const struct proto_chunk *old, size_t nold, struct proto_chunk *nw,
		       size_t n, size_t max_edits, size_t max_ins)
{
	struct proto_edit *e = NULL;
	size_t ins = 0, got = 0;
	int err = 0;
	int ne = proto_diff_lists(old, nold, nw, n, &e, &ins);
	CU_ASSERT_FATAL(ne >= 0);
	CU_ASSERT((size_t)ne <= max_edits);
	CU_ASSERT(ins <= max_ins);
	struct proto_chunk *back = proto_apply_edits(old, nold, e, (size_t)ne, &got, &err);
	CU_ASSERT_FATAL(back != NULL || (n == 0 && err == 0));
	CU_ASSERT_EQUAL(got, n);
	CU_ASSERT(n == 0 || memcmp(back, nw, n * sizeof(*nw)) == 0);
	free(back);
	free(e);
}

static void test_diff_lists(void)
{
	enum { N = 3000 };
	static struct proto_chunk old[N], nw[2 * N];
	unsigned seed = 7;
	for (size_t i = 0; i < N; i++) {
		uint32_t v = (uint32_t)i;
		hash_buf(&v, sizeof(v), &old[i].id);
		old[i].len = 1000 + (uint32_t)i;
	}
	check_diff(old, N, old, N, 0, 0); /* equal */
	memcpy(nw, old, sizeof(old));
	/* Seven runs replaced in place, one of them 3 chunks long. */
	static const size_t at[] = { 0, 100, 700, 701, 1500, 2200, 2999 };
	for (size_t k = 0; k < 7; k++) {
		uint32_t v = 100000 + (uint32_t)k;
		hash_buf(&v, sizeof(v), &nw[at[k]].id);
	}
	nw[1501] = nw[1502] = nw[1500];
	check_diff(old, N, nw, N, 6, 9);
	/* An insertion at the start, a deletion in the middle, an append. */
	memcpy(nw + 1, old, 1000 * sizeof(*nw));
	memcpy(nw + 1001, old + 1010, (N - 1010) * sizeof(*nw));
	nw[0] = nw[2000];
	size_t n = 1 + 1000 + (N - 1010);
	nw[n++] = nw[5];
	check_diff(old, N, nw, n, 3, 2);
	/* Random lists over a small alphabet (repeats everywhere), random
	 * lengths, empty lists: only the round trip is checked. */
	for (int round = 0; round < 300; round++) {
		size_t na = (size_t)(rand_r(&seed) % 60), nb = (size_t)(rand_r(&seed) % 60);
		for (size_t i = 0; i < na; i++)
			old[i] = old[N - 1 - (size_t)(rand_r(&seed) % 5)];
		for (size_t i = 0; i < nb; i++)
			nw[i] = old[N - 1 - (size_t)(rand_r(&seed) % 6)];
		check_diff(old, na, nw, nb, PROTO_MAX_EDITS, nb);
	}
	/* More runs than PROTO_MAX_EDITS: the last edit takes the rest. */
	static struct proto_chunk big[2 * N + 2], bign[2 * N + 2];
	for (size_t i = 0; i < 2 * N + 2; i++) {
		uint32_t v = 500000 + (uint32_t)i;
		hash_buf(&v, sizeof(v), &big[i].id);
		big[i].len = 1;
		bign[i] = big[i];
		if (i % 2) {
			v += 1000000;
			hash_buf(&v, sizeof(v), &bign[i].id);
		}
	}
	check_diff(big, 2 * N + 2, bign, 2 * N + 2, PROTO_MAX_EDITS, 2 * N + 2);
}

/* Moves: "move" [[off, len, src], ...] round trip; any makes the op
 * patched; sorted, disjoint, within the size, or refused. */
static void test_moves(void)
{
	struct rsig_move mv[2] = { { 0, 40, 1000 }, { 50, 50, 0 } };
	struct proto_chunk ch = { .len = 100 };
	hash_buf("c", 1, &ch.id);
	struct proto_op op = { .kind = OP_FILE, .path = "f", .mode = 0644, .mtime = t1,
			       .size = 100, .chunks = &ch, .nchunks = 1, .moves = mv, .nmoves = 2 };
	struct proto_op back;
	CU_ASSERT_EQUAL_FATAL(wire_roundtrip(&op, &back), 0);
	CU_ASSERT_EQUAL(back.patched, 1);
	CU_ASSERT_EQUAL_FATAL(back.nmoves, 2);
	CU_ASSERT(back.moves[0].off == 0 && back.moves[0].len == 40 && back.moves[0].src == 1000);
	CU_ASSERT(back.moves[1].off == 50 && back.moves[1].len == 50 && back.moves[1].src == 0);
	proto_op_release(&back);

	static const struct {
		const char *move;
		int r;
	} cases[] = {
		{ "[[0,10,5],[10,90,0]]", 0 },              /* adjacent, to the end */
		{ "[[0,10,9007199254740992]]", 0 },         /* src anywhere */
		{ "[[0,101,0]]", -EINVAL },                 /* past the size */
		{ "[[99,2,0]]", -EINVAL },
		{ "[[10,5,0],[0,5,0]]", -EINVAL },          /* unsorted */
		{ "[[0,10,0],[9,5,0]]", -EINVAL },          /* overlapping */
		{ "[[0,0,0]]", -EINVAL },                   /* empty */
		{ "[[-1,5,0]]", -EINVAL },
		{ "[[0,5,-1]]", -EINVAL },
		{ "[[0,5]]", -EINVAL },
		{ "[[0,5,0,0]]", -EINVAL },
		{ "[[0.5,5,0]]", -EINVAL },
		{ "[\"x\"]", -EINVAL },
		{ "{}", -EINVAL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_file_with("move", cases[i].move, cases[i].r);
	/* The cap on their number. */
	struct rsig_move *many = calloc(PROTO_MAX_MOVES + 1, sizeof(*many));
	CU_ASSERT_PTR_NOT_NULL_FATAL(many);
	for (size_t i = 0; i <= PROTO_MAX_MOVES; i++)
		many[i] = (struct rsig_move){ .off = i, .len = 1, .src = 0 };
	struct proto_chunk big = { .len = PROTO_MAX_MOVES + 1 };
	struct proto_op m2 = { .kind = OP_FILE, .path = "f", .mode = 0644, .mtime = t1,
			       .size = PROTO_MAX_MOVES + 1, .chunks = &big, .nchunks = 1,
			       .moves = many, .nmoves = PROTO_MAX_MOVES };
	CU_ASSERT_EQUAL(wire_roundtrip(&m2, &back), 0);
	proto_op_release(&back);
	m2.nmoves = PROTO_MAX_MOVES + 1;
	CU_ASSERT_EQUAL(wire_roundtrip(&m2, &back), -E2BIG);
	free(many);
}

/* "stage": 32 hex digits, round trip; anything else refused. */
static void test_stage(void)
{
	struct proto_chunk ch = { .len = 100 };
	hash_buf("c", 1, &ch.id);
	struct proto_op op = { .kind = OP_FILE, .path = "f", .mode = 0644, .mtime = t1,
			       .size = 100, .chunks = &ch, .nchunks = 1, .has_stage = 1 };
	for (int i = 0; i < PROTO_STAGE_LEN; i++)
		op.stage[i] = (uint8_t)(i * 17 + 1);
	struct proto_op back;
	CU_ASSERT_EQUAL_FATAL(wire_roundtrip(&op, &back), 0);
	CU_ASSERT(back.has_stage);
	CU_ASSERT(memcmp(back.stage, op.stage, PROTO_STAGE_LEN) == 0);
	proto_op_release(&back);
	op.has_stage = 0;
	CU_ASSERT_EQUAL_FATAL(wire_roundtrip(&op, &back), 0);
	CU_ASSERT_FALSE(back.has_stage);
	proto_op_release(&back);

	static const struct {
		const char *stage;
		int r;
	} cases[] = {
		{ "\"00112233445566778899aabbccddeeff\"", 0 },
		{ "\"00112233445566778899AABBCCDDEEFF\"", 0 },
		{ "\"00112233445566778899aabbccddeef\"", -EINVAL },   /* 31 digits */
		{ "\"00112233445566778899aabbccddeeff0\"", -EINVAL }, /* 33 */
		{ "\"00112233445566778899aabbccddeefg\"", -EINVAL },
		{ "\"\"", -EINVAL },
		{ "12", -EINVAL },
		{ "null", -EINVAL },
		{ "[\"00112233445566778899aabbccddeeff\"]", -EINVAL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_file_with("stage", cases[i].stage, cases[i].r);
	uint8_t out[PROTO_STAGE_LEN];
	CU_ASSERT_EQUAL(proto_stage_from_hex("00112233445566778899aabbccddeeff", out), 0);
	CU_ASSERT_EQUAL(out[15], 0xff);
	CU_ASSERT_EQUAL(proto_stage_from_hex("0011223344556677 899aabbccddeeff", out), -EINVAL);
	CU_ASSERT_EQUAL(proto_stage_from_hex("", out), -EINVAL);
}

/* Patches: "patch" [[off, base64], ...] round trip (an empty list too:
 * "build what you lack from your copy"); sorted, disjoint, within the size,
 * valid base64, within the caps, or refused. */
static void test_patches(void)
{
	static const char *const h = "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8";
	uint8_t d1[5] = { 0, 1, 2, 0xfe, 0xff }, d2[1] = { 'x' };
	struct proto_patch pp[2] = { { 10, 5, d1 }, { 15, 1, d2 } };
	struct proto_chunk ch = { .len = 100 };
	hash_buf("c", 1, &ch.id);
	struct proto_op op = { .kind = OP_FILE, .path = "f", .mode = 0644, .mtime = t1,
			       .size = 100, .chunks = &ch, .nchunks = 1, .patched = 1,
			       .patches = pp, .npatches = 2 };
	struct proto_op back;
	CU_ASSERT_EQUAL_FATAL(wire_roundtrip(&op, &back), 0);
	CU_ASSERT_EQUAL(back.patched, 1);
	CU_ASSERT_EQUAL_FATAL(back.npatches, 2);
	CU_ASSERT_EQUAL(back.patches[0].off, 10);
	CU_ASSERT_EQUAL(back.patches[0].len, 5);
	CU_ASSERT(memcmp(back.patches[0].data, d1, 5) == 0);
	CU_ASSERT_EQUAL(back.patches[1].off, 15);
	CU_ASSERT(back.patches[1].len == 1 && back.patches[1].data[0] == 'x');
	proto_op_release(&back);

	op.npatches = 0; /* "patch": [] */
	CU_ASSERT_EQUAL_FATAL(wire_roundtrip(&op, &back), 0);
	CU_ASSERT(back.patched == 1 && back.npatches == 0);
	proto_op_release(&back);
	op.patched = 0; /* no key at all */
	CU_ASSERT_EQUAL_FATAL(wire_roundtrip(&op, &back), 0);
	CU_ASSERT_EQUAL(back.patched, 0);
	proto_op_release(&back);

	static const struct {
		const char *patch;
		int r;
	} cases[] = {
		{ "[[0,\"AAEC\"],[3,\"eA==\"]]", 0 },    /* adjacent: fine */
		{ "[[97,\"AAEC\"]]", 0 },                  /* ends at the size */
		{ "[[98,\"AAEC\"]]", -EINVAL },            /* past the size */
		{ "[[3,\"AAEC\"],[0,\"eA==\"]]", -EINVAL }, /* unsorted */
		{ "[[0,\"AAEC\"],[2,\"eA==\"]]", -EINVAL }, /* overlapping */
		{ "[[0,\"A*EC\"]]", -EINVAL },             /* not base64 */
		{ "[[0,\"\"]]", -EINVAL },                 /* empty */
		{ "[[-1,\"AAEC\"]]", -EINVAL },
		{ "[[0,\"AAEC\",1]]", -EINVAL },
		{ "[[0,3]]", -EINVAL },
		{ "{}", -EINVAL },
		{ "7", -EINVAL },
	};
	char text[512];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int n = snprintf(text, sizeof(text),
				 "{\"op\":\"file\",\"path\":\"a\",\"mode\":1,\"mtime\":[1,0],"
				 "\"size\":100,\"chunks\":[[\"%s\",100]],\"patch\":%s}",
				 h, cases[i].patch);
		CU_ASSERT_FATAL(n > 0 && (size_t)n < sizeof(text));
		int r = decode_ok(text);
		if (r != cases[i].r)
			fprintf(stderr, "patch case %zu: %d\n", i, r);
		CU_ASSERT_EQUAL(r, cases[i].r);
	}

	/* Caps: PROTO_PATCH_BYTES_MAX bytes in all, PROTO_MAX_PATCHES. */
	size_t big = PROTO_PATCH_BYTES_MAX + 3;
	uint8_t *data = calloc(1, big);
	CU_ASSERT_PTR_NOT_NULL_FATAL(data);
	struct proto_patch one = { 0, (uint32_t)big, data };
	struct proto_chunk c2 = { .len = (uint32_t)big };
	struct proto_op bop = { .kind = OP_FILE, .path = "f", .mode = 0644, .mtime = t1,
				.size = big, .chunks = &c2, .nchunks = 1, .patched = 1,
				.patches = &one, .npatches = 1 };
	c2.len = 1024 * 1024; /* a valid list: two chunks */
	struct proto_chunk cl[2] = { c2, { .len = 3 } };
	bop.chunks = cl;
	bop.nchunks = 2;
	CU_ASSERT_EQUAL(wire_roundtrip(&bop, &back), -E2BIG);
	proto_op_release(&back);
	one.len = PROTO_PATCH_BYTES_MAX;
	CU_ASSERT_EQUAL(wire_roundtrip(&bop, &back), 0);
	proto_op_release(&back);
	struct proto_patch *many = calloc(PROTO_MAX_PATCHES + 1, sizeof(*many));
	CU_ASSERT_PTR_NOT_NULL_FATAL(many);
	for (size_t i = 0; i <= PROTO_MAX_PATCHES; i++)
		many[i] = (struct proto_patch){ i * 2, 1, data };
	bop.patches = many;
	bop.npatches = PROTO_MAX_PATCHES + 1;
	CU_ASSERT_EQUAL(wire_roundtrip(&bop, &back), -E2BIG);
	proto_op_release(&back);
	bop.npatches = PROTO_MAX_PATCHES;
	CU_ASSERT_EQUAL(wire_roundtrip(&bop, &back), 0);
	proto_op_release(&back);
	free(many);
	free(data);
}

/* Refs ([k, len]: the chunk of frame k of the same bundle): only with
 * PROTO_REFS; written by the encoder for a chunk with ref set; resolved
 * against the frames' ids, refusing a missing frame or another length. */
static void test_refs(void)
{
	static const char *const text =
		"{\"op\":\"file\",\"path\":\"f\",\"mode\":420,\"mtime\":[5,6],\"size\":7,"
		"\"chunks\":[[1,3],[\"0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8\",2],"
		"[0,2]]}";
	struct proto_op op;
	const char *why;
	cJSON *j = cJSON_Parse(text);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	CU_ASSERT_EQUAL(proto_op_from_json(j, &op, &why), -EINVAL); /* not without refs */
	CU_ASSERT_EQUAL_FATAL(proto_op_from_json_flags(j, PROTO_REFS, &op, &why), 0);
	cJSON_Delete(j);
	CU_ASSERT_EQUAL_FATAL(op.nchunks, 3);
	CU_ASSERT_EQUAL(op.chunks[0].ref, 2);
	CU_ASSERT_EQUAL(op.chunks[1].ref, 0);
	CU_ASSERT_EQUAL(op.chunks[2].ref, 1);
	struct hash_id given = op.chunks[1].id;

	struct proto_chunk frames[2];
	memset(frames, 0, sizeof(frames));
	memset(frames[0].id.b, 0xaa, HASH_LEN);
	frames[0].len = 2;
	memset(frames[1].id.b, 0xbb, HASH_LEN);
	frames[1].len = 3;
	CU_ASSERT_EQUAL(proto_op_resolve_refs(&op, frames, 1, &why), -EINVAL); /* frame 1 missing */
	frames[1].len = 4;
	CU_ASSERT_EQUAL(proto_op_resolve_refs(&op, frames, 2, &why), -EINVAL); /* another length */
	frames[1].len = 3;
	CU_ASSERT_EQUAL_FATAL(proto_op_resolve_refs(&op, frames, 2, &why), 0);
	CU_ASSERT(hash_equal(&op.chunks[0].id, &frames[1].id));
	CU_ASSERT(hash_equal(&op.chunks[1].id, &given));
	CU_ASSERT(hash_equal(&op.chunks[2].id, &frames[0].id));
	for (size_t i = 0; i < op.nchunks; i++)
		CU_ASSERT_EQUAL(op.chunks[i].ref, 0);

	/* The encoder writes a ref as [k, len] and an id as hex; refs only
	 * when asked to. */
	op.chunks[2].ref = 5;
	cJSON *plain = proto_op_to_json(&op);
	CU_ASSERT_PTR_NOT_NULL_FATAL(plain);
	const cJSON *p2 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(plain, "chunks"), 2);
	CU_ASSERT(cJSON_IsString(cJSON_GetArrayItem(p2, 0)));
	cJSON_Delete(plain);
	cJSON *out = proto_op_to_json_flags(&op, PROTO_REFS);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(out, "chunks");
	const cJSON *e0 = cJSON_GetArrayItem(list, 0), *e2 = cJSON_GetArrayItem(list, 2);
	CU_ASSERT(cJSON_IsString(cJSON_GetArrayItem(e0, 0)));
	CU_ASSERT(cJSON_IsNumber(cJSON_GetArrayItem(e2, 0)) &&
		  cJSON_GetArrayItem(e2, 0)->valuedouble == 4.0);
	/* The printed text says the same, refs and all. */
	char *printed_text = proto_op_print(&op, PROTO_REFS);
	CU_ASSERT_PTR_NOT_NULL_FATAL(printed_text);
	cJSON *printed = cJSON_Parse(printed_text);
	CU_ASSERT(cJSON_Compare(out, printed, 1));
	cJSON_Delete(printed);
	free(printed_text);
	cJSON_Delete(out);
	proto_op_release(&op);

	/* Out of range, or not an integer. */
	static const char *const bad[] = {
		"{\"op\":\"file\",\"path\":\"f\",\"mode\":1,\"mtime\":[1,0],\"size\":1,\"chunks\":[[-1,1]]}",
		"{\"op\":\"file\",\"path\":\"f\",\"mode\":1,\"mtime\":[1,0],\"size\":1,\"chunks\":[[65536,1]]}",
		"{\"op\":\"file\",\"path\":\"f\",\"mode\":1,\"mtime\":[1,0],\"size\":1,\"chunks\":[[0.5,1]]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cJSON *b = cJSON_Parse(bad[i]);
		CU_ASSERT_PTR_NOT_NULL_FATAL(b);
		CU_ASSERT_EQUAL(proto_op_from_json_flags(b, PROTO_REFS, &op, &why), -EINVAL);
		cJSON_Delete(b);
	}
}

static void test_unknown_and_depth(void)
{
	struct proto_op op;
	const char *why;
	CU_ASSERT_EQUAL(decode_text("{\"op\":\"chmod\",\"path\":\"a\"}", &op, &why), -EINVAL);
	CU_ASSERT_STRING_EQUAL(why, "unknown op");
	CU_ASSERT_EQUAL(decode_text("{\"op\":\"\",\"path\":\"a\"}", &op, &why), -EINVAL);
	CU_ASSERT_EQUAL(decode_text("{\"op\":\"FILE\",\"path\":\"a\"}", &op, &why), -EINVAL);
	CU_ASSERT_EQUAL(decode_text("{\"op\":\"delete \",\"path\":\"a\"}", &op, &why), -EINVAL);

	/* depth PROTO_JSON_DEPTH_MAX passes, one more level does not; unknown
	 * keys are otherwise ignored */
	struct buf b;
	buf_init(&b, 0);
	for (int depth = 2; depth <= PROTO_JSON_DEPTH_MAX + 3; depth++) {
		buf_reset(&b);
		CU_ASSERT_EQUAL_FATAL(buf_appendf(&b, "{\"op\":\"delete\",\"path\":\"a\",\"x\":"), 0);
		for (int i = 0; i < depth - 2; i++)
			CU_ASSERT_EQUAL_FATAL(buf_append(&b, "[", 1), 0);
		CU_ASSERT_EQUAL_FATAL(buf_append(&b, "1", 1), 0);
		for (int i = 0; i < depth - 2; i++)
			CU_ASSERT_EQUAL_FATAL(buf_append(&b, "]", 1), 0);
		CU_ASSERT_EQUAL_FATAL(buf_append(&b, "}", 1), 0);
		cJSON *j = cJSON_Parse(b.data);
		CU_ASSERT_PTR_NOT_NULL_FATAL(j);
		CU_ASSERT_EQUAL(proto_json_depth(j), depth);
		cJSON_Delete(j);
		int r = decode_text(b.data, &op, &why);
		if (depth <= PROTO_JSON_DEPTH_MAX) {
			CU_ASSERT_EQUAL(r, 0);
			if (r == 0)
				proto_op_release(&op);
		} else {
			CU_ASSERT_EQUAL(r, -EINVAL);
			CU_ASSERT_STRING_EQUAL(why, "json nested too deeply");
		}
	}
	buf_release(&b);
	CU_ASSERT_EQUAL(proto_json_depth(NULL), 0);
}

static void test_times(void)
{
	static const struct timespec ts[] = {
		{ 0, 0 }, { 1, 1 }, { 1700000000, 123456789 }, { 4102444800, 999999999 },
		/* 15 digits: cJSON prints numbers with %1.15g when that reads back
		 * within its epsilon, which loses the last unit beyond 15 digits */
		{ -86400, 500000000 }, { 999999999999999LL, 999999999 },
	};
	for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++) {
		cJSON *j = proto_time_to_json(&ts[i]);
		CU_ASSERT_PTR_NOT_NULL_FATAL(j);
		char *text = cJSON_PrintUnformatted(j);
		cJSON_Delete(j);
		CU_ASSERT_PTR_NOT_NULL_FATAL(text);
		cJSON *back = cJSON_Parse(text);
		free(text);
		CU_ASSERT_PTR_NOT_NULL_FATAL(back);
		struct timespec out = { 7, 7 };
		CU_ASSERT_EQUAL(proto_time_from_json(back, &out), 0);
		CU_ASSERT_EQUAL(out.tv_sec, ts[i].tv_sec);
		CU_ASSERT_EQUAL(out.tv_nsec, ts[i].tv_nsec);
		cJSON_Delete(back);
	}
	static const char *bad[] = { "[1,1000000000]", "[1,-1]", "[1]", "[]", "[1,2,3]",
				     "{\"s\":1,\"n\":2}", "1", "[1,0.5]", "[null,0]",
				     "[1e17,0]" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cJSON *j = cJSON_Parse(bad[i]);
		struct timespec out;
		CU_ASSERT_PTR_NOT_NULL_FATAL(j);
		CU_ASSERT_EQUAL(proto_time_from_json(j, &out), -EINVAL);
		cJSON_Delete(j);
	}
}

/* The stored form of a chunk list: id then length big-endian, the bytes
 * the list digest covers, and back. */
static void test_list_pack(void)
{
	struct proto_chunk c[3], back[3];
	uint8_t blob[3 * PROTO_LIST_ENTRY];
	for (int i = 0; i < 3; i++) {
		memset(c[i].id.b, 0x11 * (i + 1), HASH_LEN);
		c[i].len = 0x01020304u * (uint32_t)(i + 1);
	}
	c[2].len = 0xffffffffu;
	CU_ASSERT_EQUAL(PROTO_LIST_ENTRY, 36);
	proto_list_pack(c, 3, blob);
	CU_ASSERT_EQUAL(blob[0], 0x11);
	CU_ASSERT_EQUAL(blob[32], 0x01);
	CU_ASSERT_EQUAL(blob[35], 0x04);
	CU_ASSERT_EQUAL(blob[36 + 32], 0x02);
	CU_ASSERT_EQUAL(blob[36 + 35], 0x08);
	CU_ASSERT_EQUAL(blob[72 + 32], 0xff);
	proto_list_unpack(blob, 3, back);
	for (int i = 0; i < 3; i++) {
		CU_ASSERT_EQUAL(memcmp(back[i].id.b, c[i].id.b, HASH_LEN), 0);
		CU_ASSERT_EQUAL(back[i].len, c[i].len);
	}
	/* the digest is BLAKE2b of exactly these bytes */
	struct hash_id d1, d2;
	proto_list_digest(c, 3, &d1);
	hash_buf(blob, sizeof(blob), &d2);
	CU_ASSERT_EQUAL(memcmp(d1.b, d2.b, HASH_LEN), 0);
}

static void test_json_nul(void)
{
#define HAS(s) proto_json_has_nul((s), sizeof(s) - 1)
	CU_ASSERT_EQUAL(HAS("{\"p\":\"a\\u0000b\"}"), 1);
	CU_ASSERT_EQUAL(HAS("{\"p\\u0000\":1}"), 1);        /* in a key too */
	CU_ASSERT_EQUAL(HAS("{\"p\":\"a\0b\"}"), 1);          /* a raw NUL */
	CU_ASSERT_EQUAL(HAS("{\"p\":\"a\\\\u0000b\"}"), 0); /* an escaped backslash, then text */
	CU_ASSERT_EQUAL(HAS("{\"p\":\"a\\u0001\\\"\\u00000\"}"), 1);
	CU_ASSERT_EQUAL(HAS("{\"p\":\"a\\u00001\"}"), 1);
	CU_ASSERT_EQUAL(HAS("{\"p\":\"\\u0100\"}"), 0);
	CU_ASSERT_EQUAL(HAS("{\"p\":\"\\\"\\u000\"}"), 0);  /* too short */
	CU_ASSERT_EQUAL(HAS("{\"p\":\"\\u000"), 0);
	CU_ASSERT_EQUAL(HAS("\\u0000"), 0);                  /* outside a string: cJSON refuses it */
	CU_ASSERT_EQUAL(HAS(""), 0);
#undef HAS
}

static void test_errno_map(void)
{
	static const int errs[] = { ENOENT, EEXIST, ENOTDIR, EISDIR, ENOTEMPTY, EINVAL,
				    ENAMETOOLONG, ENOSPC, EDQUOT, EIO, EACCES, EPERM, ELOOP,
				    EXDEV, EBADMSG, EMSGSIZE, E2BIG, EILSEQ, EROFS, ENOMEM };
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		const char *n = proto_errno_name(errs[i]);
		CU_ASSERT_STRING_NOT_EQUAL(n, "EUNKNOWN");
		CU_ASSERT_EQUAL(proto_errno_from_name(n), errs[i]);
	}
	CU_ASSERT_STRING_EQUAL(proto_errno_name(ENOENT), "ENOENT");
	CU_ASSERT_STRING_EQUAL(proto_errno_name(ENOSPC), "ENOSPC");
	CU_ASSERT_STRING_EQUAL(proto_errno_name(EBADMSG), "EBADMSG");
	CU_ASSERT_STRING_EQUAL(proto_errno_name(0), "EUNKNOWN");
	CU_ASSERT_STRING_EQUAL(proto_errno_name(-ENOENT), "EUNKNOWN");
	CU_ASSERT_STRING_EQUAL(proto_errno_name(99999), "EUNKNOWN");
	CU_ASSERT_EQUAL(proto_errno_from_name("EUNKNOWN"), 0);
	CU_ASSERT_EQUAL(proto_errno_from_name("enoent"), 0);
	CU_ASSERT_EQUAL(proto_errno_from_name(""), 0);
	CU_ASSERT_EQUAL(proto_errno_from_name(NULL), 0);

	/* the status table of docs/PROTOCOL.md */
	CU_ASSERT_EQUAL(proto_status_for_errno(ENOENT), 404);
	CU_ASSERT_EQUAL(proto_status_for_errno(ENOSPC), 507);
	CU_ASSERT_EQUAL(proto_status_for_errno(EDQUOT), 507);
	CU_ASSERT_EQUAL(proto_status_for_errno(ENAMETOOLONG), 422);
	CU_ASSERT_EQUAL(proto_status_for_errno(EILSEQ), 422);
	CU_ASSERT_EQUAL(proto_status_for_errno(EINVAL), 422);
	CU_ASSERT_EQUAL(proto_status_for_errno(EMSGSIZE), 413);
	CU_ASSERT_EQUAL(proto_status_for_errno(E2BIG), 413);
	CU_ASSERT_EQUAL(proto_status_for_errno(EBADMSG), 400);
	CU_ASSERT_EQUAL(proto_status_for_errno(EIO), 500);
}

int suite_proto(void)
{
	CU_pSuite s = CU_add_suite("proto", NULL, NULL);
	if (!s)
		return CU_get_error();
	if (!CU_add_test(s, "roundtrip file", test_roundtrip_file) ||
	    !CU_add_test(s, "roundtrip other ops", test_roundtrip_others) ||
	    !CU_add_test(s, "decode text", test_decode_text) ||
	    !CU_add_test(s, "bad paths", test_bad_paths) ||
	    !CU_add_test(s, "wrong types", test_wrong_types) ||
	    !CU_add_test(s, "chunk sums", test_chunk_sums) ||
	    !CU_add_test(s, "refs", test_refs) || !CU_add_test(s, "patches", test_patches) ||
	    !CU_add_test(s, "moves", test_moves) ||
	    !CU_add_test(s, "stage", test_stage) ||
	    !CU_add_test(s, "list diff", test_diff_lists) ||
	    !CU_add_test(s, "unknown op and depth", test_unknown_and_depth) ||
	    !CU_add_test(s, "times", test_times) || !CU_add_test(s, "errno map", test_errno_map) ||
	    !CU_add_test(s, "json nul", test_json_nul) ||
	    !CU_add_test(s, "list pack", test_list_pack))
		return CU_get_error();
	return 0;
}
