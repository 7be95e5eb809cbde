/*
 * Unit tests for server/apply (and server/resolve through it): every op
 * applied to a temporary DIR directly, with checks of content, modes,
 * mtimes, what happens outside DIR, and what is left in the state's tmp/.
 */
#define _GNU_SOURCE
#include <CUnit/CUnit.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "server_fixture.h"

static struct proto_op mk(enum proto_kind k, const char *path)
{
	struct proto_op op;
	memset(&op, 0, sizeof(op));
	op.kind = k;
	op.path = (char *)path;
	op.mode = 0644;
	op.mtime = sfx_ts(1700000000, 123456789);
	return op;
}

static int run_op(struct sfx *f, struct proto_op *op)
{
	struct apply_result res;
	int r = apply_op(&f->ax, op, NULL, &res);
	apply_result_release(&res);
	return r;
}

/* A file op for path made of the given stored chunks. */
static int put_file(struct sfx *f, const char *path, struct proto_chunk *chunks, size_t n,
		    mode_t mode)
{
	struct proto_op op = mk(OP_FILE, path);
	op.mode = mode;
	op.chunks = chunks;
	op.nchunks = n;
	for (size_t i = 0; i < n; i++)
		op.size += chunks[i].len;
	return run_op(f, &op);
}

/* A file with the text s at path. */
static int put_text(struct sfx *f, const char *path, const char *s, mode_t mode)
{
	struct proto_chunk c;
	if (sfx_chunk(f, s, strlen(s), &c) < 0)
		return -EIO;
	return put_file(f, path, &c, 1, mode);
}

static int text_is(struct sfx *f, const char *rel, const char *want)
{
	char p[512], got[4096];
	ssize_t n = sfx_read(sfx_path(f, rel, p, sizeof(p)), got, sizeof(got));
	return n == (ssize_t)strlen(want) && memcmp(got, want, (size_t)n) == 0;
}

static int lstat_rel(struct sfx *f, const char *rel, struct stat *st)
{
	char p[512];
	return lstat(sfx_path(f, rel, p, sizeof(p)), st);
}

#define SETUP(f, state)                                   \
	struct sfx f;                                     \
	if (sfx_setup(&f, geteuid() != 0, state) < 0) {   \
		CU_FAIL_FATAL("cannot set up the fixture"); \
		return;                                   \
	}

static void test_file_from_store(void)
{
	SETUP(f, 1);
	static uint8_t big[300000];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7 + (i >> 9));
	struct proto_chunk c[3];
	CU_ASSERT_EQUAL_FATAL(sfx_chunk(&f, "head:", 5, &c[0]), 0);
	CU_ASSERT_EQUAL_FATAL(sfx_chunk(&f, big, sizeof(big), &c[1]), 0);
	CU_ASSERT_EQUAL_FATAL(sfx_chunk(&f, ":tail", 5, &c[2]), 0);
	struct proto_op op = mk(OP_FILE, "a/b/file");
	op.mode = 0640;
	op.chunks = c;
	op.nchunks = 3;
	op.size = 5 + sizeof(big) + 5;
	op.has_pmtime = 1;
	op.pmtime = sfx_ts(1600000000, 42);
	CU_ASSERT_EQUAL(run_op(&f, &op), 0);

	char p[512];
	static uint8_t got[300100];
	CU_ASSERT_EQUAL(sfx_read(sfx_path(&f, "a/b/file", p, sizeof(p)), got, sizeof(got)),
			(ssize_t)op.size);
	CU_ASSERT(memcmp(got, "head:", 5) == 0);
	CU_ASSERT(memcmp(got + 5, big, sizeof(big)) == 0);
	CU_ASSERT(memcmp(got + 5 + sizeof(big), ":tail", 5) == 0);
	struct stat st;
	CU_ASSERT_EQUAL(lstat_rel(&f, "a/b/file", &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 07777, 0640);
	CU_ASSERT(sfx_same_time(&st.st_mtim, 1700000000, 123456789));
	CU_ASSERT_EQUAL(lstat_rel(&f, "a/b", &st), 0);
	CU_ASSERT(sfx_same_time(&st.st_mtim, 1600000000, 42)); /* pmtime */
	CU_ASSERT_EQUAL(st.st_mode & 07777, 0755);              /* made parent */
	/* Published: the store copies are gone, the index knows the bytes. */
	for (int i = 0; i < 3; i++) {
		CU_ASSERT_FALSE(store_has(&f.store, &c[i].id));
		CU_ASSERT_TRUE(state_index_has(f.st, &c[i].id));
	}
	CU_ASSERT_EQUAL(sfx_tmp_count(&f), 0);
	sfx_teardown(&f);
}

static void test_file_missing_chunks(void)
{
	SETUP(f, 1);
	struct proto_chunk c[3];
	CU_ASSERT_EQUAL_FATAL(sfx_chunk(&f, "one", 3, &c[0]), 0);
	hash_buf("two", 3, &c[1].id);
	c[1].len = 3;
	hash_buf("three", 5, &c[2].id);
	c[2].len = 5;
	struct proto_op op = mk(OP_FILE, "f");
	op.chunks = c;
	op.nchunks = 3;
	op.size = 11;
	struct apply_result res;
	CU_ASSERT_EQUAL(apply_op(&f.ax, &op, NULL, &res), APPLY_MISSING);
	CU_ASSERT_EQUAL(res.nmissing, 2);
	if (res.nmissing == 2) {
		CU_ASSERT_EQUAL(res.missing[0], 1);
		CU_ASSERT_EQUAL(res.missing[1], 2);
	}
	apply_result_release(&res);
	struct stat st;
	CU_ASSERT_EQUAL(lstat_rel(&f, "f", &st), -1);
	CU_ASSERT_TRUE(store_has(&f.store, &c[0].id)); /* kept for the retry */
	CU_ASSERT_EQUAL(sfx_tmp_count(&f), 0);

	/* A length that contradicts the stored chunk is refused for good. */
	c[0].len = 4;
	op.nchunks = 1;
	op.size = 4;
	CU_ASSERT_EQUAL(apply_op(&f.ax, &op, NULL, &res), -EBADMSG);
	apply_result_release(&res);
	sfx_teardown(&f);
}

/* A file op with "patch": chunks mirrord lacks are built from its copy
 * of the file at the same offsets with the patches laid over, and used
 * only if they hash to their ids. */
static void test_file_patched(void)
{
	SETUP(f, 1);
	struct proto_chunk old[2];
	CU_ASSERT_EQUAL_FATAL(sfx_chunk(&f, "0123456789", 10, &old[0]), 0);
	CU_ASSERT_EQUAL_FATAL(sfx_chunk(&f, "abcdefghij", 10, &old[1]), 0);
	CU_ASSERT_EQUAL_FATAL(put_file(&f, "p", old, 2, 0644), 0);

	/* The new version: "XY" at 2, "klm" appended, cut anew. */
	static const char *const parts[] = { "01XY4", "56789abcde", "fghijklm" };
	struct proto_chunk nw[3];
	for (int i = 0; i < 3; i++) {
		hash_buf(parts[i], strlen(parts[i]), &nw[i].id);
		nw[i].len = (uint32_t)strlen(parts[i]);
	}
	uint8_t xy[2] = { 'X', 'Y' }, zz[2] = { 'Z', 'Z' }, klm[3] = { 'k', 'l', 'm' };
	struct proto_patch pp[2] = { { 2, 2, zz }, { 20, 3, klm } };
	struct proto_op op = mk(OP_FILE, "p");
	op.chunks = nw;
	op.nchunks = 3;
	op.size = 23;
	struct apply_result res;

	/* Without "patch": all three missing. */
	CU_ASSERT_EQUAL(apply_op(&f.ax, &op, NULL, &res), APPLY_MISSING);
	CU_ASSERT_EQUAL(res.nmissing, 3);
	apply_result_release(&res);

	/* A wrong patch: the chunk it makes is not chunk 0, which is missing;
	 * the others are built. Nothing changes. */
	op.patched = 1;
	op.patches = pp;
	op.npatches = 2;
	CU_ASSERT_EQUAL(apply_op(&f.ax, &op, NULL, &res), APPLY_MISSING);
	CU_ASSERT_EQUAL_FATAL(res.nmissing, 1);
	CU_ASSERT_EQUAL(res.missing[0], 0);
	apply_result_release(&res);
	CU_ASSERT(text_is(&f, "p", "0123456789abcdefghij"));

	/* The right one. */
	pp[0].data = xy;
	CU_ASSERT_EQUAL(apply_op(&f.ax, &op, NULL, &res), 0);
	apply_result_release(&res);
	CU_ASSERT(text_is(&f, "p", "01XY456789abcdefghijklm"));
	CU_ASSERT_TRUE(state_index_has(f.st, &nw[1].id));
	CU_ASSERT_EQUAL(sfx_tmp_count(&f), 0);

	/* No copy at the path: nothing to build from. */
	op.path = "elsewhere";
	CU_ASSERT_EQUAL(apply_op(&f.ax, &op, NULL, &res), 0); /* indexed now */
	apply_result_release(&res);
	hash_buf("new!!", 5, &nw[0].id);
	op.path = "nothing";
	op.size = 5;
	op.nchunks = 1;
	nw[0].len = 5;
	pp[0].off = 0;
	op.npatches = 1;
	CU_ASSERT_EQUAL(apply_op(&f.ax, &op, NULL, &res), APPLY_MISSING);
	apply_result_release(&res);
	sfx_teardown(&f);
}

/* A file op with moves: a chunk is built from bytes of the base file at
 * other offsets (an insertion shifted them), patches laid over; used only
 * if it hashes right. apply_signatures() gives what the client matches. */
static void test_file_moves(void)
{
	SETUP(f, 1);
	struct proto_chunk old;
	CU_ASSERT_EQUAL_FATAL(sfx_chunk(&f, "0123456789abcdefghij", 20, &old), 0);
	CU_ASSERT_EQUAL_FATAL(put_file(&f, "m", &old, 1, 0644), 0);

	/* Signatures of two ranges, blocks of 64 bytes: the file is shorter. */
	uint8_t sig[RSIG_ENTRY * 2];
	uint64_t off[2] = { 0, 5 }, len[2] = { 64, 1000 };
	size_t cnt[2] = { 9, 9 };
	CU_ASSERT_EQUAL(apply_signatures(&f.ax, "m", 64, off, len, 2, sig, cnt), 0);
	CU_ASSERT(cnt[0] == 0 && cnt[1] == 0);
	CU_ASSERT_EQUAL(apply_signatures(&f.ax, "none", 64, off, len, 2, sig, cnt), -ENOENT);
	CU_ASSERT_EQUAL(apply_signatures(&f.ax, "../x", 64, off, len, 2, sig, cnt), -ENOENT);

	/* New: "0123" "++" "456789abcdefghij" - bytes 4.. moved by two. */
	const char *text = "0123++456789abcdefghij";
	struct proto_chunk nw;
	hash_buf(text, 22, &nw.id);
	nw.len = 22;
	uint8_t plus[2] = { '+', '+' };
	struct rsig_move mv[2] = { { 0, 4, 0 }, { 6, 16, 4 } };
	struct proto_patch pp = { 4, 2, plus };
	struct proto_op op = mk(OP_FILE, "m");
	op.chunks = &nw;
	op.nchunks = 1;
	op.size = 22;
	op.patched = 1;
	op.patches = &pp;
	op.npatches = 1;
	op.moves = mv;
	op.nmoves = 2;
	struct apply_result res;
	/* A wrong move: not the chunk, missing, nothing changed. */
	mv[1].src = 3;
	CU_ASSERT_EQUAL(apply_op(&f.ax, &op, NULL, &res), APPLY_MISSING);
	CU_ASSERT_EQUAL(res.nmissing, 1);
	apply_result_release(&res);
	CU_ASSERT(text_is(&f, "m", "0123456789abcdefghij"));
	/* A move past the end of the base: missing. */
	mv[1].src = 5;
	CU_ASSERT_EQUAL(apply_op(&f.ax, &op, NULL, &res), APPLY_MISSING);
	apply_result_release(&res);
	mv[1].src = 4;
	CU_ASSERT_EQUAL(apply_op(&f.ax, &op, NULL, &res), 0);
	apply_result_release(&res);
	CU_ASSERT(text_is(&f, "m", text));

	/* Without a delta base, moves read the op's own path: a new name has
	 * nothing there (and the index no longer knows the chunk either). */
	struct rsig_move whole = { 0, 22, 0 };
	CU_ASSERT_EQUAL(state_index_forget(f.st, "m"), 0);
	op.path = "n";
	op.npatches = 0;
	op.moves = &whole;
	op.nmoves = 1;
	CU_ASSERT_EQUAL(apply_op(&f.ax, &op, NULL, &res), APPLY_MISSING); /* no "n" to read */
	apply_result_release(&res);

	/* Every chunk that cannot be built is reported at once, not one a
	 * round trip. */
	struct proto_chunk two[3];
	hash_buf("first", 5, &two[0].id);
	hash_buf("second", 6, &two[1].id);
	hash_buf("third!", 6, &two[2].id);
	two[0].len = 5;
	two[1].len = 6;
	two[2].len = 6;
	struct rsig_move none = { 0, 1, 0 };
	op.path = "m";
	op.chunks = two;
	op.nchunks = 3;
	op.size = 17;
	op.moves = &none;
	op.nmoves = 1;
	CU_ASSERT_EQUAL(apply_op(&f.ax, &op, NULL, &res), APPLY_MISSING);
	CU_ASSERT_EQUAL(res.nmissing, 3);
	apply_result_release(&res);
	sfx_teardown(&f);
}

/* apply_many's lookup over "inline" chunks: the test's own table. */
struct inl_tab {
	const struct proto_chunk *c;
	const uint8_t *const *bytes;
	size_t n;
	int calls;
};

static const uint8_t *inl_get(void *arg, const struct hash_id *id, uint32_t len)
{
	struct inl_tab *t = arg;
	t->calls++;
	for (size_t i = 0; i < t->n; i++)
		if (t->c[i].len == len && hash_equal(&t->c[i].id, id))
			return t->bytes[i];
	return NULL;
}

static void test_many(void)
{
	SETUP(f, 1);
	/* Chunks given inline (never in the store), and one from the store. */
	static const uint8_t *bytes[2] = { (const uint8_t *)"alpha", (const uint8_t *)"beta!" };
	struct proto_chunk in[2], st, gone;
	for (int i = 0; i < 2; i++) {
		hash_buf(bytes[i], 5, &in[i].id);
		in[i].len = 5;
	}
	CU_ASSERT_EQUAL_FATAL(sfx_chunk(&f, "store", 5, &st), 0);
	hash_buf("never", 5, &gone.id);
	gone.len = 5;
	struct inl_tab tab = { in, bytes, 2, 0 };
	struct apply_inline inl = { inl_get, &tab };
	struct proto_op ops[5] = { mk(OP_FILE, "d/a"), mk(OP_FILE, "d/b"), mk(OP_FILE, "d/c"),
				   mk(OP_MKDIR, "e"), mk(OP_FILE, "e/f") };
	const struct proto_chunk *lists[5] = { &in[0], &gone, &st, NULL, &in[1] };
	struct apply_item it[5];
	memset(it, 0, sizeof(it));
	for (int i = 0; i < 5; i++) {
		if (lists[i]) {
			ops[i].chunks = (struct proto_chunk *)lists[i];
			ops[i].nchunks = 1;
			ops[i].size = 5;
			ops[i].mode = 0600;
		}
		it[i].op = &ops[i];
		it[i].origin.inl = &inl;
	}
	apply_many(&f.ax, it, 5);
	CU_ASSERT_EQUAL(it[0].r, 0);
	CU_ASSERT_EQUAL(it[1].r, APPLY_MISSING); /* its chunk is nowhere */
	CU_ASSERT_EQUAL(it[1].res.nmissing, 1);
	CU_ASSERT_EQUAL(it[2].r, 0);
	CU_ASSERT_EQUAL(it[3].r, 0);
	CU_ASSERT_EQUAL(it[4].r, 0);
	CU_ASSERT(tab.calls > 0);
	char p[512], got[16];
	CU_ASSERT_EQUAL(sfx_read(sfx_path(&f, "d/a", p, sizeof(p)), (uint8_t *)got, sizeof(got)), 5);
	CU_ASSERT(memcmp(got, "alpha", 5) == 0);
	CU_ASSERT_EQUAL(sfx_read(sfx_path(&f, "d/c", p, sizeof(p)), (uint8_t *)got, sizeof(got)), 5);
	CU_ASSERT(memcmp(got, "store", 5) == 0);
	CU_ASSERT_EQUAL(sfx_read(sfx_path(&f, "e/f", p, sizeof(p)), (uint8_t *)got, sizeof(got)), 5);
	CU_ASSERT(memcmp(got, "beta!", 5) == 0);
	struct stat sb;
	CU_ASSERT_EQUAL(lstat_rel(&f, "d/b", &sb), -1);
	CU_ASSERT_EQUAL(lstat_rel(&f, "d/a", &sb), 0);
	CU_ASSERT_EQUAL(sb.st_mode & 07777, 0600);
	CU_ASSERT(sfx_same_time(&sb.st_mtim, 1700000000, 123456789));
	/* Inline chunks are indexed where they now live, never stored. */
	CU_ASSERT_TRUE(state_index_has(f.st, &in[0].id));
	CU_ASSERT_FALSE(store_has(&f.store, &in[0].id));
	CU_ASSERT_FALSE(store_has(&f.store, &st.id));
	CU_ASSERT_EQUAL(sfx_tmp_count(&f), 0);
	for (int i = 0; i < 5; i++)
		apply_result_release(&it[i].res);
	sfx_teardown(&f);
}

/* A run of folders and symlinks in apply_many: made one by one, fsynced
 * together; one that fails (a name too long) fails alone. */
static void test_many_entries(void)
{
	SETUP(f, 1);
	char longname[300], lpath[320], p[512], t[64];
	struct stat st;
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	snprintf(lpath, sizeof(lpath), "t/%s", longname);
	CU_ASSERT_EQUAL_FATAL(put_text(&f, "file", "f", 0644), 0);
	CU_ASSERT_EQUAL_FATAL(put_text(&f, "old", "o", 0644), 0);
	struct proto_op ops[7] = { mk(OP_MKDIR, "t"),	   mk(OP_MKDIR, "t/a"),
				   mk(OP_MKDIR, "t/a/b"),  mk(OP_SYMLINK, "t/ln"),
				   mk(OP_MKDIR, lpath),	   mk(OP_MKDIR, "file"),
				   mk(OP_SYMLINK, "old") };
	ops[0].mode = 0755;
	ops[0].mtime = sfx_ts(1500000001, 1);
	ops[1].mode = 0700;
	ops[1].mtime = sfx_ts(1500000002, 2);
	ops[2].mode = 0750;
	ops[2].mtime = sfx_ts(1500000003, 3);
	ops[3].target = "a/b";
	ops[3].mtime = sfx_ts(1500000004, 4);
	ops[5].mode = 0711;
	ops[6].target = "file";
	/* Each child sets its folder's mtime back, as the client's was. */
	for (int i = 1; i <= 4; i++) {
		ops[i].has_pmtime = 1;
		ops[i].pmtime = i == 2 ? ops[1].mtime : ops[0].mtime;
	}
	struct apply_item it[7];
	memset(it, 0, sizeof(it));
	for (int i = 0; i < 7; i++)
		it[i].op = &ops[i];
	apply_many(&f.ax, it, 7);
	for (int i = 0; i < 7; i++) {
		CU_ASSERT_EQUAL(it[i].r, i == 4 ? -ENAMETOOLONG : 0);
		apply_result_release(&it[i].res);
	}
	const char *dirs[] = { "t", "t/a", "t/a/b", "file" };
	const mode_t modes[] = { 0755, 0700, 0750, 0711 };
	for (int i = 0; i < 4; i++) {
		CU_ASSERT_EQUAL_FATAL(lstat_rel(&f, dirs[i], &st), 0);
		CU_ASSERT(S_ISDIR(st.st_mode));
		CU_ASSERT_EQUAL(st.st_mode & 07777, modes[i]);
		if (i < 3)
			CU_ASSERT(sfx_same_time(&st.st_mtim, 1500000001 + i, 1 + i));
	}
	ssize_t n = readlink(sfx_path(&f, "t/ln", p, sizeof(p)), t, sizeof(t));
	CU_ASSERT(n == 3 && memcmp(t, "a/b", 3) == 0);
	CU_ASSERT_EQUAL(lstat_rel(&f, "t/ln", &st), 0);
	CU_ASSERT(sfx_same_time(&st.st_mtim, 1500000004, 4));
	n = readlink(sfx_path(&f, "old", p, sizeof(p)), t, sizeof(t));
	CU_ASSERT(n == 4 && memcmp(t, "file", 4) == 0);
	CU_ASSERT_EQUAL(sfx_tmp_count(&f), 0);
	sfx_teardown(&f);
}

/* Runs longer than a group (folders, then deletes of them): split into
 * groups, every op applied. */
static void test_many_long_runs(void)
{
	SETUP(f, 1);
	enum { N = 300 };
	static char paths[N][24];
	struct proto_op *ops = calloc(2 * N, sizeof(*ops));
	struct apply_item *it = calloc(2 * N, sizeof(*it));
	CU_ASSERT_FATAL(ops && it);
	for (int i = 0; i < N; i++) {
		snprintf(paths[i], sizeof(paths[i]), "big/d%03d", i);
		ops[i] = mk(OP_MKDIR, paths[i]);
		ops[i].mode = 0755;
		ops[N + i] = mk(OP_DELETE, paths[i]);
	}
	for (int i = 0; i < 2 * N; i++)
		it[i].op = &ops[i];
	apply_many(&f.ax, it, N);
	struct stat st;
	char one[24];
	for (int i = 0; i < N; i++) {
		snprintf(one, sizeof(one), "big/d%03d", i);
		CU_ASSERT_EQUAL(it[i].r, 0);
		CU_ASSERT_EQUAL(lstat_rel(&f, one, &st), 0);
		CU_ASSERT(S_ISDIR(st.st_mode));
	}
	apply_many(&f.ax, it + N, N);
	for (int i = 0; i < N; i++) {
		snprintf(one, sizeof(one), "big/d%03d", i);
		CU_ASSERT_EQUAL(it[N + i].r, 0);
		CU_ASSERT_EQUAL(lstat_rel(&f, one, &st), -1);
	}
	for (int i = 0; i < 2 * N; i++)
		apply_result_release(&it[i].res);
	CU_ASSERT_EQUAL(lstat_rel(&f, "big", &st), 0);
	CU_ASSERT_EQUAL(sfx_tmp_count(&f), 0);
	free(ops);
	free(it);
	sfx_teardown(&f);
}

/* A run of deletes in apply_many: files, a folder with content, a name
 * that is not there, one under a file; each applied, the index forgets
 * what went, the pmtimes are set, nothing is left in tmp. */
static void test_many_deletes(void)
{
	SETUP(f, 1);
	CU_ASSERT_EQUAL_FATAL(put_text(&f, "d/a", "first", 0644), 0);
	CU_ASSERT_EQUAL_FATAL(put_text(&f, "d/sub/b", "second", 0644), 0);
	CU_ASSERT_EQUAL_FATAL(put_text(&f, "d/keep", "third", 0644), 0);
	CU_ASSERT_EQUAL_FATAL(put_text(&f, "g", "fourth", 0644), 0);
	struct proto_chunk c;
	hash_buf("second", 6, &c.id);
	CU_ASSERT_TRUE(state_index_has(f.st, &c.id));
	struct proto_op ops[5] = { mk(OP_DELETE, "d/a"), mk(OP_DELETE, "d/sub"),
				   mk(OP_DELETE, "d/none"), mk(OP_DELETE, "g/under"),
				   mk(OP_DELETE, "g") };
	ops[1].has_pmtime = 1;
	ops[1].pmtime = sfx_ts(1600000000, 7);
	struct apply_item it[5];
	memset(it, 0, sizeof(it));
	for (int i = 0; i < 5; i++)
		it[i].op = &ops[i];
	apply_many(&f.ax, it, 5);
	for (int i = 0; i < 5; i++) {
		CU_ASSERT_EQUAL(it[i].r, 0);
		apply_result_release(&it[i].res);
	}
	struct stat sb;
	CU_ASSERT_EQUAL(lstat_rel(&f, "d/a", &sb), -1);
	CU_ASSERT_EQUAL(lstat_rel(&f, "d/sub", &sb), -1);
	CU_ASSERT_EQUAL(lstat_rel(&f, "g", &sb), -1);
	CU_ASSERT_TRUE(text_is(&f, "d/keep", "third"));
	CU_ASSERT_EQUAL(lstat_rel(&f, "d", &sb), 0);
	CU_ASSERT(sfx_same_time(&sb.st_mtim, 1600000000, 7));
	CU_ASSERT_FALSE(state_index_has(f.st, &c.id));
	hash_buf("third", 5, &c.id);
	CU_ASSERT_TRUE(state_index_has(f.st, &c.id));
	CU_ASSERT_EQUAL(sfx_tmp_count(&f), 0);
	sfx_teardown(&f);
}

static void test_file_replaces(void)
{
	SETUP(f, 1);
	struct stat st;
	char p[512];
	/* A read-only file is replaced. */
	CU_ASSERT_EQUAL(put_text(&f, "ro", "old", 0444), 0);
	CU_ASSERT_EQUAL(put_text(&f, "ro", "new!", 0444), 0);
	CU_ASSERT(text_is(&f, "ro", "new!"));
	/* A folder full of things at the target goes (atomically). */
	CU_ASSERT_EQUAL(put_text(&f, "d/x/y", "deep", 0644), 0);
	CU_ASSERT_EQUAL(put_text(&f, "d", "now a file", 0600), 0);
	CU_ASSERT(text_is(&f, "d", "now a file"));
	/* A file where a parent folder should be is replaced by a folder. */
	CU_ASSERT_EQUAL(put_text(&f, "d/inside", "in", 0644), 0);
	CU_ASSERT_EQUAL(lstat_rel(&f, "d", &st), 0);
	CU_ASSERT(S_ISDIR(st.st_mode));
	CU_ASSERT(text_is(&f, "d/inside", "in"));
	/* A symlink at the target is replaced, not followed. */
	CU_ASSERT_EQUAL(symlink(f.out, sfx_path(&f, "sl", p, sizeof(p))), 0);
	CU_ASSERT_EQUAL(put_text(&f, "sl", "plain", 0644), 0);
	CU_ASSERT_EQUAL(lstat_rel(&f, "sl", &st), 0);
	CU_ASSERT(S_ISREG(st.st_mode));
	CU_ASSERT_EQUAL(sfx_tmp_count(&f), 0);
	/* Mode applied exactly, whatever the umask. */
	mode_t old = umask(0777);
	CU_ASSERT_EQUAL(put_text(&f, "m", "mode", 06755), 0);
	umask(old);
	CU_ASSERT_EQUAL(lstat_rel(&f, "m", &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 07777, 06755);
	sfx_teardown(&f);
}

static void test_file_sparse(void)
{
	SETUP(f, 1);
	static uint8_t zero[1 << 20];
	struct proto_chunk c[4];
	CU_ASSERT_EQUAL_FATAL(sfx_chunk(&f, "start", 5, &c[0]), 0);
	CU_ASSERT_EQUAL_FATAL(sfx_chunk(&f, zero, sizeof(zero), &c[1]), 0);
	c[2] = c[1];
	CU_ASSERT_EQUAL_FATAL(sfx_chunk(&f, zero, 1000, &c[3]), 0); /* trailing hole */
	CU_ASSERT_EQUAL(put_file(&f, "sparse", c, 4, 0644), 0);
	struct stat st;
	CU_ASSERT_EQUAL(lstat_rel(&f, "sparse", &st), 0);
	CU_ASSERT_EQUAL(st.st_size, 5 + 2 * (1 << 20) + 1000);
	CU_ASSERT(st.st_blocks * 512 < 1 << 20); /* the zero runs are holes */
	char p[512];
	static uint8_t got[(2 << 20) + 2000];
	CU_ASSERT_EQUAL(sfx_read(sfx_path(&f, "sparse", p, sizeof(p)), got, sizeof(got)),
			st.st_size);
	CU_ASSERT(memcmp(got, "start", 5) == 0);
	CU_ASSERT(memcmp(got + 5, zero, sizeof(zero)) == 0);
	sfx_teardown(&f);
}

/* Put chunk data[0..len) at off of the stage tok; *c gets its id. */
static void stage_chunk(struct sfx *f, const uint8_t *tok, uint64_t off, const void *data,
			uint32_t len, struct proto_chunk *c)
{
	hash_buf(data, len, &c->id);
	c->len = len;
	CU_ASSERT_EQUAL_FATAL(store_stage_put(&f->store, tok, off, &c->id, data, len), 0);
}

static int stage_count(struct sfx *f)
{
	char p[512];
	snprintf(p, sizeof(p), "ls %s/chunks | grep -c '^stage' >/dev/null", f->state);
	return system(p) == 0;
}

/* The inode of the file that holds chunk id in the store (a stage). */
static ino_t store_ino(struct sfx *f, const struct hash_id *id)
{
	char name[64], p[512];
	off_t off;
	struct stat st;
	if (store_locate(&f->store, id, name, sizeof(name), &off) < 0)
		return 0;
	snprintf(p, sizeof(p), "%s/chunks/%s", f->state, name);
	return stat(p, &st) == 0 ? st.st_ino : 0;
}

/* A file op with a stage whose chunks all sit where the list has them:
 * the stage's file becomes the file, the chunks not placed in it are
 * written into its holes. Missing chunks leave the stage for the next
 * try; a used stage is gone. */
static void test_file_stage(void)
{
	SETUP(f, 1);
	uint8_t tok[PROTO_STAGE_LEN];
	static uint8_t a[20000], b[30000], zero[5000];
	for (size_t i = 0; i < sizeof(a); i++)
		a[i] = (uint8_t)(i * 13 + 1);
	for (size_t i = 0; i < sizeof(b); i++)
		b[i] = (uint8_t)(i * 5 + (i >> 7));
	memset(tok, 0x5a, sizeof(tok));

	/* The list: a (staged), zeros (uploaded before), b (staged), a again
	 * (not sent twice), "tail" (not uploaded yet). */
	struct proto_chunk c[5];
	stage_chunk(&f, tok, 0, a, sizeof(a), &c[0]);
	CU_ASSERT_EQUAL_FATAL(sfx_chunk(&f, zero, sizeof(zero), &c[1]), 0);
	stage_chunk(&f, tok, sizeof(a) + sizeof(zero), b, sizeof(b), &c[2]);
	c[3] = c[0];
	hash_buf("tail", 4, &c[4].id);
	c[4].len = 4;
	uint64_t size = 2 * sizeof(a) + sizeof(zero) + sizeof(b) + 4;
	ino_t ino = store_ino(&f, &c[2].id);
	CU_ASSERT_FATAL(ino != 0);

	struct proto_op op = mk(OP_FILE, "staged");
	op.chunks = c;
	op.nchunks = 5;
	op.size = size;
	op.has_stage = 1;
	memcpy(op.stage, tok, sizeof(tok));
	struct apply_result res;
	CU_ASSERT_EQUAL(apply_op(&f.ax, &op, NULL, &res), APPLY_MISSING);
	CU_ASSERT(res.nmissing == 1 && res.missing[0] == 4);
	apply_result_release(&res);
	CU_ASSERT(stage_count(&f)); /* not taken: the retry uses it */
	CU_ASSERT_EQUAL(sfx_tmp_count(&f), 0);

	struct proto_chunk t;
	CU_ASSERT_EQUAL_FATAL(sfx_chunk(&f, "tail", 4, &t), 0);
	CU_ASSERT_EQUAL(run_op(&f, &op), 0);
	CU_ASSERT_FALSE(stage_count(&f));
	CU_ASSERT_EQUAL(sfx_tmp_count(&f), 0);
	char p[512];
	static uint8_t got[100000];
	CU_ASSERT_EQUAL_FATAL(sfx_read(sfx_path(&f, "staged", p, sizeof(p)), got, sizeof(got)),
			      (ssize_t)size);
	uint8_t *g = got;
	CU_ASSERT(memcmp(g, a, sizeof(a)) == 0);
	CU_ASSERT(memcmp(g += sizeof(a), zero, sizeof(zero)) == 0);
	CU_ASSERT(memcmp(g += sizeof(zero), b, sizeof(b)) == 0);
	CU_ASSERT(memcmp(g += sizeof(b), a, sizeof(a)) == 0);
	CU_ASSERT(memcmp(g += sizeof(a), "tail", 4) == 0);
	struct stat st;
	CU_ASSERT_EQUAL(lstat_rel(&f, "staged", &st), 0);
	CU_ASSERT_EQUAL(st.st_ino, ino); /* the stage's file, not a copy */
	CU_ASSERT_EQUAL(st.st_mode & 07777, 0644);
	CU_ASSERT(sfx_same_time(&st.st_mtim, 1700000000, 123456789));
	/* Published: the index knows the chunks, the store let them go. */
	CU_ASSERT_TRUE(state_index_has(f.st, &c[2].id));
	CU_ASSERT_FALSE(store_has(&f.store, &c[2].id));

	/* The stage is used up: the same op again builds the file anew. */
	op.path = "again";
	CU_ASSERT_EQUAL(run_op(&f, &op), 0);
	static uint8_t got2[100000];
	CU_ASSERT_EQUAL(sfx_read(sfx_path(&f, "again", p, sizeof(p)), got2, sizeof(got2)),
			(ssize_t)size);
	CU_ASSERT(memcmp(got, got2, size) == 0);
	CU_ASSERT_EQUAL(sfx_tmp_count(&f), 0);
	sfx_teardown(&f);
}

/* A stage that does not fit the list (a chunk where the list has another,
 * at another offset, past the end) is not written over: the file is built
 * anew, and the chunks of the stage stay available. */
static void test_file_stage_misfit(void)
{
	SETUP(f, 1);
	uint8_t tok[PROTO_STAGE_LEN];
	static uint8_t junk[5000], zero[5000], m1[1000], m2[4000];
	memset(junk, 0xee, sizeof(junk));
	for (size_t i = 0; i < sizeof(m1); i++)
		m1[i] = (uint8_t)(i * 3 + 7);
	for (size_t i = 0; i < sizeof(m2); i++)
		m2[i] = (uint8_t)(i * 11 + 2);
	char p[512];
	static uint8_t got[20000];

	/* Junk where the list has zeros. */
	memset(tok, 0x77, sizeof(tok));
	struct proto_chunk j, z, c[2];
	stage_chunk(&f, tok, 0, junk, sizeof(junk), &j);
	CU_ASSERT_EQUAL_FATAL(sfx_chunk(&f, zero, sizeof(zero), &z), 0);
	struct proto_op op = mk(OP_FILE, "zeros");
	op.chunks = &z;
	op.nchunks = 1;
	op.size = sizeof(zero);
	op.has_stage = 1;
	memcpy(op.stage, tok, sizeof(tok));
	CU_ASSERT_EQUAL(run_op(&f, &op), 0);
	CU_ASSERT_EQUAL(sfx_read(sfx_path(&f, "zeros", p, sizeof(p)), got, sizeof(got)),
			(ssize_t)sizeof(zero));
	CU_ASSERT(memcmp(got, zero, sizeof(zero)) == 0);
	CU_ASSERT_FALSE(stage_count(&f));
	CU_ASSERT_EQUAL(sfx_tmp_count(&f), 0);
	/* The junk chunk is still there for whoever names it. */
	CU_ASSERT_TRUE(store_has(&f.store, &j.id));
	CU_ASSERT_EQUAL(put_file(&f, "junk", &j, 1, 0644), 0);
	CU_ASSERT_EQUAL(sfx_read(sfx_path(&f, "junk", p, sizeof(p)), got, sizeof(got)),
			(ssize_t)sizeof(junk));
	CU_ASSERT(memcmp(got, junk, sizeof(junk)) == 0);

	/* A chunk staged at 0 that the list has at 1000; and one past the
	 * end. */
	memset(tok, 0x78, sizeof(tok));
	CU_ASSERT_EQUAL_FATAL(sfx_chunk(&f, m1, sizeof(m1), &c[0]), 0);
	stage_chunk(&f, tok, 0, m2, sizeof(m2), &c[1]);
	stage_chunk(&f, tok, 100000, junk, sizeof(junk), &j);
	op = mk(OP_FILE, "shifted");
	op.chunks = c;
	op.nchunks = 2;
	op.size = sizeof(m1) + sizeof(m2);
	op.has_stage = 1;
	memcpy(op.stage, tok, sizeof(tok));
	CU_ASSERT_EQUAL(run_op(&f, &op), 0);
	CU_ASSERT_EQUAL_FATAL(sfx_read(sfx_path(&f, "shifted", p, sizeof(p)), got, sizeof(got)),
			      (ssize_t)op.size);
	CU_ASSERT(memcmp(got, m1, sizeof(m1)) == 0);
	CU_ASSERT(memcmp(got + sizeof(m1), m2, sizeof(m2)) == 0);
	CU_ASSERT_EQUAL(sfx_tmp_count(&f), 0);
	sfx_teardown(&f);
}

/* Chunks come from published files once the store copy is gone; a stale
 * index entry is dropped and reported missing; renames keep it right. */
static void test_file_from_index(void)
{
	SETUP(f, 1);
	struct proto_chunk a, b;
	CU_ASSERT_EQUAL_FATAL(sfx_chunk(&f, "alpha-bytes", 11, &a), 0);
	CU_ASSERT_EQUAL_FATAL(sfx_chunk(&f, "beta-bytes", 10, &b), 0);
	struct proto_chunk ab[2] = { a, b };
	CU_ASSERT_EQUAL(put_file(&f, "src", ab, 2, 0644), 0);
	CU_ASSERT_FALSE(store_has(&f.store, &b.id));
	/* b lives at src+11 only now. */
	CU_ASSERT_EQUAL(put_file(&f, "copy", &b, 1, 0644), 0);
	CU_ASSERT(text_is(&f, "copy", "beta-bytes"));
	/* copy took over b's entry; move copy away: the index follows. */
	struct proto_op r = mk(OP_RENAME, "copy");
	r.path2 = "dir/moved";
	CU_ASSERT_EQUAL(run_op(&f, &r), 0);
	CU_ASSERT_EQUAL(put_file(&f, "copy2", &b, 1, 0644), 0);
	CU_ASSERT(text_is(&f, "copy2", "beta-bytes"));
	/* Damage the indexed location behind mirrord's back. */
	char *path = NULL;
	uint64_t off;
	uint32_t len;
	CU_ASSERT_EQUAL(state_index_get(f.st, &a.id, &path, &off, &len), 1);
	CU_ASSERT_STRING_EQUAL(path, "src");
	free(path);
	char p[512];
	CU_ASSERT_EQUAL(sfx_write(sfx_path(&f, "src", p, sizeof(p)), "ALPHA-bytes+beta-bytes", 22),
			0);
	struct proto_op op = mk(OP_FILE, "again");
	op.chunks = &a;
	op.nchunks = 1;
	op.size = 11;
	struct apply_result res;
	CU_ASSERT_EQUAL(apply_op(&f.ax, &op, NULL, &res), APPLY_MISSING);
	CU_ASSERT_EQUAL(res.nmissing, 1);
	apply_result_release(&res);
	CU_ASSERT_FALSE(state_index_has(f.st, &a.id)); /* dropped */
	/* Re-upload: fine again. */
	CU_ASSERT_EQUAL(sfx_chunk(&f, "alpha-bytes", 11, &a), 0);
	CU_ASSERT_EQUAL(put_file(&f, "again", &a, 1, 0644), 0);
	CU_ASSERT(text_is(&f, "again", "alpha-bytes"));
	/* Deleting the only holder makes the chunk unavailable. */
	struct proto_op d = mk(OP_DELETE, "again");
	CU_ASSERT_EQUAL(run_op(&f, &d), 0);
	CU_ASSERT_FALSE(state_index_has(f.st, &a.id));
	CU_ASSERT_EQUAL(sfx_tmp_count(&f), 0);
	sfx_teardown(&f);
}

static void test_mkdir(void)
{
	SETUP(f, 0);
	struct stat st;
	struct proto_op op = mk(OP_MKDIR, "x/y/z");
	op.mode = 0700;
	op.mtime = sfx_ts(1500000000, 1);
	mode_t old = umask(0777);
	CU_ASSERT_EQUAL(run_op(&f, &op), 0);
	umask(old);
	CU_ASSERT_EQUAL(lstat_rel(&f, "x/y/z", &st), 0);
	CU_ASSERT(S_ISDIR(st.st_mode));
	CU_ASSERT_EQUAL(st.st_mode & 07777, 0700);
	CU_ASSERT(sfx_same_time(&st.st_mtim, 1500000000, 1));
	CU_ASSERT_EQUAL(lstat_rel(&f, "x/y", &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 07777, 0755);
	/* Existing folder: mode and mtime change, content stays. */
	CU_ASSERT_EQUAL(put_text(&f, "x/y/z/keep", "k", 0644), 0);
	op.mode = 0751;
	op.mtime = sfx_ts(1400000000, 2);
	CU_ASSERT_EQUAL(run_op(&f, &op), 0);
	CU_ASSERT_EQUAL(lstat_rel(&f, "x/y/z", &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 07777, 0751);
	CU_ASSERT(sfx_same_time(&st.st_mtim, 1400000000, 2));
	CU_ASSERT(text_is(&f, "x/y/z/keep", "k"));
	/* Replacing a file. */
	CU_ASSERT_EQUAL(put_text(&f, "file", "f", 0644), 0);
	struct proto_op m2 = mk(OP_MKDIR, "file");
	m2.mode = 0755;
	CU_ASSERT_EQUAL(run_op(&f, &m2), 0);
	CU_ASSERT_EQUAL(lstat_rel(&f, "file", &st), 0);
	CU_ASSERT(S_ISDIR(st.st_mode));
	/* Replacing a symlink to a folder outside: the link goes, outside stays. */
	char p[512];
	CU_ASSERT_EQUAL(symlink(f.out, sfx_path(&f, "ln", p, sizeof(p))), 0);
	struct proto_op m3 = mk(OP_MKDIR, "ln");
	m3.mode = 0700;
	CU_ASSERT_EQUAL(run_op(&f, &m3), 0);
	CU_ASSERT_EQUAL(lstat_rel(&f, "ln", &st), 0);
	CU_ASSERT(S_ISDIR(st.st_mode));
	CU_ASSERT_EQUAL(stat(f.out, &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 07777, 0755);
	/* The root: mode and mtime only. */
	struct proto_op r = mk(OP_MKDIR, "");
	r.mode = 0750;
	r.mtime = sfx_ts(1300000000, 3);
	CU_ASSERT_EQUAL(run_op(&f, &r), 0);
	CU_ASSERT_EQUAL(stat(f.dir, &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 07777, 0750);
	CU_ASSERT(sfx_same_time(&st.st_mtim, 1300000000, 3));
	CU_ASSERT_EQUAL(sfx_tmp_count(&f), 0);
	sfx_teardown(&f);
}

static void test_symlink(void)
{
	SETUP(f, 0);
	struct stat st;
	char p[512], t[256];
	struct proto_op op = mk(OP_SYMLINK, "l/ink");
	op.target = "../some where/dangling";
	op.mtime = sfx_ts(1234567890, 987654321);
	CU_ASSERT_EQUAL(run_op(&f, &op), 0);
	ssize_t n = readlink(sfx_path(&f, "l/ink", p, sizeof(p)), t, sizeof(t));
	CU_ASSERT(n == (ssize_t)strlen(op.target) && memcmp(t, op.target, (size_t)n) == 0);
	CU_ASSERT_EQUAL(lstat_rel(&f, "l/ink", &st), 0);
	CU_ASSERT(sfx_same_time(&st.st_mtim, 1234567890, 987654321));
	/* Over a file and over a folder tree. */
	CU_ASSERT_EQUAL(put_text(&f, "f", "x", 0644), 0);
	CU_ASSERT_EQUAL(put_text(&f, "tree/a/b", "x", 0644), 0);
	op.path = "f";
	op.target = "/absolute/target";
	CU_ASSERT_EQUAL(run_op(&f, &op), 0);
	op.path = "tree";
	CU_ASSERT_EQUAL(run_op(&f, &op), 0);
	CU_ASSERT_EQUAL(lstat_rel(&f, "f", &st), 0);
	CU_ASSERT(S_ISLNK(st.st_mode));
	CU_ASSERT_EQUAL(lstat_rel(&f, "tree", &st), 0);
	CU_ASSERT(S_ISLNK(st.st_mode));
	CU_ASSERT_EQUAL(sfx_tmp_count(&f), 0);
	sfx_teardown(&f);
}

static void test_delete(void)
{
	SETUP(f, 0);
	struct stat st;
	CU_ASSERT_EQUAL(put_text(&f, "t/a/b/c", "x", 0644), 0);
	CU_ASSERT_EQUAL(put_text(&f, "t/d", "x", 0444), 0);
	struct proto_op op = mk(OP_DELETE, "t");
	op.has_pmtime = 1;
	op.pmtime = sfx_ts(1111111111, 0);
	CU_ASSERT_EQUAL(run_op(&f, &op), 0);
	CU_ASSERT_EQUAL(lstat_rel(&f, "t", &st), -1);
	CU_ASSERT_EQUAL(stat(f.dir, &st), 0);
	CU_ASSERT(sfx_same_time(&st.st_mtim, 1111111111, 0));
	CU_ASSERT_EQUAL(run_op(&f, &op), 0); /* already gone */
	op.path = "missing/parent/x";
	CU_ASSERT_EQUAL(run_op(&f, &op), 0);
	CU_ASSERT_EQUAL(put_text(&f, "file", "x", 0644), 0);
	op.path = "file/under";
	CU_ASSERT_EQUAL(run_op(&f, &op), 0);
	CU_ASSERT(text_is(&f, "file", "x"));
	op.path = "file";
	CU_ASSERT_EQUAL(run_op(&f, &op), 0);
	CU_ASSERT_EQUAL(lstat_rel(&f, "file", &st), -1);
	CU_ASSERT_EQUAL(sfx_tmp_count(&f), 0);
	sfx_teardown(&f);
}

static void test_meta(void)
{
	SETUP(f, 0);
	struct stat st;
	CU_ASSERT_EQUAL(put_text(&f, "d/f", "content", 0644), 0);
	struct proto_op op = mk(OP_META, "d/f");
	op.type = 'f';
	op.mode = 0600;
	op.mtime = sfx_ts(1000000000, 999999999);
	CU_ASSERT_EQUAL(run_op(&f, &op), 0);
	CU_ASSERT_EQUAL(lstat_rel(&f, "d/f", &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 07777, 0600);
	CU_ASSERT(sfx_same_time(&st.st_mtim, 1000000000, 999999999));
	CU_ASSERT(text_is(&f, "d/f", "content"));
	op.type = 'd';
	CU_ASSERT_EQUAL(run_op(&f, &op), -ENOENT);
	op.path = "d/none";
	op.type = 'f';
	CU_ASSERT_EQUAL(run_op(&f, &op), -ENOENT);
	op.path = "none/f";
	CU_ASSERT_EQUAL(run_op(&f, &op), -ENOENT);
	op.path = "d";
	op.type = 'd';
	op.mode = 0711;
	CU_ASSERT_EQUAL(run_op(&f, &op), 0);
	CU_ASSERT_EQUAL(lstat_rel(&f, "d", &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 07777, 0711);
	/* A symlink: mtime only, its target untouched. */
	char p[512];
	CU_ASSERT_EQUAL(symlink(f.out, sfx_path(&f, "ln", p, sizeof(p))), 0);
	op.path = "ln";
	op.type = 'l';
	op.mode = 0;
	op.mtime = sfx_ts(900000000, 5);
	CU_ASSERT_EQUAL(run_op(&f, &op), 0);
	CU_ASSERT_EQUAL(lstat_rel(&f, "ln", &st), 0);
	CU_ASSERT(sfx_same_time(&st.st_mtim, 900000000, 5));
	CU_ASSERT_EQUAL(stat(f.out, &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 07777, 0755);
	CU_ASSERT_FALSE(sfx_same_time(&st.st_mtim, 900000000, 5));
	op.type = 'f';
	CU_ASSERT_EQUAL(run_op(&f, &op), -ENOENT); /* a symlink is not a file */
	sfx_teardown(&f);
}

/* A client made evil -> a folder outside DIR; nothing it sends may change
 * anything outside. */
static void test_symlink_escape(void)
{
	SETUP(f, 1);
	char p[512], keep[512];
	struct stat st, before;
	snprintf(keep, sizeof(keep), "%s/keep", f.out);
	CU_ASSERT_EQUAL_FATAL(sfx_write(keep, "precious", 8), 0);
	CU_ASSERT_EQUAL_FATAL(stat(keep, &before), 0);
	CU_ASSERT_EQUAL(symlink(f.out, sfx_path(&f, "evil", p, sizeof(p))), 0);
	CU_ASSERT_EQUAL(mkdir(sfx_path(&f, "real", p, sizeof(p)), 0755), 0);
	CU_ASSERT_EQUAL(symlink("../evil", sfx_path(&f, "real/via", p, sizeof(p))), 0);

	struct proto_op d = mk(OP_DELETE, "evil/keep");
	CU_ASSERT_EQUAL(run_op(&f, &d), 0); /* a no-op */
	d.path = "real/via/keep";
	CU_ASSERT_EQUAL(run_op(&f, &d), 0);
	struct proto_op m = mk(OP_META, "evil/keep");
	m.type = 'f';
	m.mode = 0777;
	CU_ASSERT_EQUAL(run_op(&f, &m), -ENOENT);
	struct proto_op r = mk(OP_RENAME, "evil/keep");
	r.path2 = "stolen";
	CU_ASSERT_EQUAL(run_op(&f, &r), -ENOENT);
	struct proto_op x = mk(OP_RENAME, "real/via/keep");
	x.path2 = "stolen";
	x.rflags = RENAME_F_EXCHANGE;
	CU_ASSERT_EQUAL(run_op(&f, &x), -ENOENT);
	struct proto_op md = mk(OP_MKDIR, "real/via/sub");
	CU_ASSERT_EQUAL(run_op(&f, &md), 0); /* inside DIR: via became a folder */
	CU_ASSERT_EQUAL(put_text(&f, "evil/x", "x", 0777), 0);
	struct proto_op s = mk(OP_SYMLINK, "evil/keep");
	s.target = "/etc/passwd";
	CU_ASSERT_EQUAL(run_op(&f, &s), 0);

	/* Outside: exactly as before. */
	char got[16];
	CU_ASSERT_EQUAL(sfx_read(keep, got, sizeof(got)), 8);
	CU_ASSERT(memcmp(got, "precious", 8) == 0);
	CU_ASSERT_EQUAL(lstat(keep, &st), 0);
	CU_ASSERT(S_ISREG(st.st_mode));
	CU_ASSERT_EQUAL(st.st_mode, before.st_mode);
	CU_ASSERT(sfx_same_time(&st.st_mtim, before.st_mtim.tv_sec, before.st_mtim.tv_nsec));
	snprintf(p, sizeof(p), "%s/x", f.out);
	CU_ASSERT_EQUAL(lstat(p, &st), -1);
	snprintf(p, sizeof(p), "%s/sub", f.out);
	CU_ASSERT_EQUAL(lstat(p, &st), -1);
	/* Inside: the symlinks were replaced by folders. */
	CU_ASSERT_EQUAL(lstat_rel(&f, "evil", &st), 0);
	CU_ASSERT(S_ISDIR(st.st_mode));
	CU_ASSERT(text_is(&f, "evil/x", "x"));

	/* resolve itself refuses symlinks on the way and never escapes. */
	int fd = -1;
	CU_ASSERT_EQUAL(symlink(f.out, sfx_path(&f, "evil2", p, sizeof(p))), 0);
	CU_ASSERT_EQUAL(resolve_dir(f.rootfd, "evil2", 5, &fd), -ELOOP);
	CU_ASSERT_EQUAL(resolve_dir(f.rootfd, "real/via", 8, &fd), 0);
	if (fd >= 0)
		close(fd);
	sfx_teardown(&f);
}

/* resolve_fd_mtime sets a folder's mtime through an O_PATH descriptor
 * (most callers hold those) and through an ordinary one, exactly, and
 * leaves the atime alone. */
static void test_fd_mtime(void)
{
	SETUP(f, 1);
	char p[PATH_MAX];
	struct stat before, st;
	CU_ASSERT_EQUAL_FATAL(mkdir(sfx_path(&f, "d", p, sizeof(p)), 0755), 0);
	CU_ASSERT_EQUAL_FATAL(stat(p, &before), 0);
	int fd = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
	CU_ASSERT_FATAL(fd >= 0);
	struct timespec ts = sfx_ts(1300000000, 123456789);
	CU_ASSERT_EQUAL(resolve_fd_mtime(fd, &ts), 0);
	CU_ASSERT_EQUAL(stat(p, &st), 0);
	CU_ASSERT(sfx_same_time(&st.st_mtim, 1300000000, 123456789));
	CU_ASSERT(sfx_same_time(&st.st_atim, before.st_atim.tv_sec, before.st_atim.tv_nsec));
	close(fd);
	fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CU_ASSERT_FATAL(fd >= 0);
	ts = sfx_ts(1400000000, 5);
	CU_ASSERT_EQUAL(resolve_fd_mtime(fd, &ts), 0);
	CU_ASSERT_EQUAL(stat(p, &st), 0);
	CU_ASSERT(sfx_same_time(&st.st_mtim, 1400000000, 5));
	close(fd);
	sfx_teardown(&f);
}

static void test_rename(void)
{
	SETUP(f, 1);
	struct stat st;
	CU_ASSERT_EQUAL(put_text(&f, "a", "A", 0644), 0);
	CU_ASSERT_EQUAL(put_text(&f, "b", "B", 0644), 0);
	struct proto_op r = mk(OP_RENAME, "a");
	r.path2 = "new/dir/a2";
	r.has_pmtime = 1;
	r.pmtime = sfx_ts(1200000000, 1);
	r.has_pmtime2 = 1;
	r.pmtime2 = sfx_ts(1200000000, 2);
	CU_ASSERT_EQUAL(run_op(&f, &r), 0);
	CU_ASSERT(text_is(&f, "new/dir/a2", "A"));
	CU_ASSERT_EQUAL(lstat_rel(&f, "a", &st), -1);
	CU_ASSERT_EQUAL(stat(f.dir, &st), 0);
	CU_ASSERT(sfx_same_time(&st.st_mtim, 1200000000, 1));
	CU_ASSERT_EQUAL(lstat_rel(&f, "new/dir", &st), 0);
	CU_ASSERT(sfx_same_time(&st.st_mtim, 1200000000, 2));

	struct proto_op n = mk(OP_RENAME, "b");
	n.path2 = "new/dir/a2";
	n.rflags = RENAME_F_NOREPLACE;
	CU_ASSERT_EQUAL(run_op(&f, &n), -EEXIST);
	CU_ASSERT(text_is(&f, "b", "B"));
	n.rflags = RENAME_F_EXCHANGE;
	CU_ASSERT_EQUAL(run_op(&f, &n), 0);
	CU_ASSERT(text_is(&f, "b", "A"));
	CU_ASSERT(text_is(&f, "new/dir/a2", "B"));
	n.path2 = "nothing";
	CU_ASSERT_EQUAL(run_op(&f, &n), -ENOENT);
	n.path = "nothing";
	n.path2 = "b";
	n.rflags = RENAME_F_NONE;
	CU_ASSERT_EQUAL(run_op(&f, &n), -ENOENT);

	/* A folder onto a non-empty folder and onto a file; a file onto a
	 * folder: the target goes, as it did on the client. */
	CU_ASSERT_EQUAL(put_text(&f, "s/x", "sx", 0644), 0);
	CU_ASSERT_EQUAL(put_text(&f, "t/y", "ty", 0644), 0);
	n.path = "s";
	n.path2 = "t";
	CU_ASSERT_EQUAL(run_op(&f, &n), 0);
	CU_ASSERT(text_is(&f, "t/x", "sx"));
	CU_ASSERT_EQUAL(lstat_rel(&f, "t/y", &st), -1);
	n.path = "t";
	n.path2 = "b";
	CU_ASSERT_EQUAL(run_op(&f, &n), 0);
	CU_ASSERT(text_is(&f, "b/x", "sx"));
	n.path = "new/dir/a2";
	n.path2 = "b";
	CU_ASSERT_EQUAL(run_op(&f, &n), 0);
	CU_ASSERT(text_is(&f, "b", "B"));
	/* Into itself. */
	CU_ASSERT_EQUAL(put_text(&f, "p/q", "pq", 0644), 0);
	n.path = "p";
	n.path2 = "p/q/r";
	CU_ASSERT_EQUAL(run_op(&f, &n), -EINVAL);
	n.path2 = "p/sub";
	CU_ASSERT_EQUAL(run_op(&f, &n), -EINVAL);
	CU_ASSERT(text_is(&f, "p/q", "pq"));
	/* Exchange of two folders. */
	CU_ASSERT_EQUAL(put_text(&f, "e1/f", "one", 0644), 0);
	CU_ASSERT_EQUAL(put_text(&f, "e2/g/f", "two", 0644), 0);
	n.path = "e1";
	n.path2 = "e2/g";
	n.rflags = RENAME_F_EXCHANGE;
	CU_ASSERT_EQUAL(run_op(&f, &n), 0);
	CU_ASSERT(text_is(&f, "e1/f", "two"));
	CU_ASSERT(text_is(&f, "e2/g/f", "one"));
	CU_ASSERT_EQUAL(sfx_tmp_count(&f), 0);
	sfx_teardown(&f);
}

static void test_rename_replay(void)
{
	SETUP(f, 1);
	struct apply_origin o;
	struct apply_result res;
	memset(&o, 0, sizeof(o));
	memcpy(o.client, "0123456789abcdef0123456789abcdef", 33);
	o.has_seq = 1;
	CU_ASSERT_EQUAL(put_text(&f, "x", "X", 0644), 0);
	CU_ASSERT_EQUAL(put_text(&f, "y", "Y", 0644), 0);
	struct proto_op n = mk(OP_RENAME, "x");
	n.path2 = "y";
	n.rflags = RENAME_F_EXCHANGE;
	o.seq = 7;
	CU_ASSERT_EQUAL(apply_op(&f.ax, &n, &o, &res), 0);
	CU_ASSERT_FALSE(res.replayed);
	apply_result_release(&res);
	CU_ASSERT(text_is(&f, "x", "Y"));
	/* The same op again (a retry after a lost reply): not applied. */
	CU_ASSERT_EQUAL(apply_op(&f.ax, &n, &o, &res), 0);
	CU_ASSERT_TRUE(res.replayed);
	apply_result_release(&res);
	CU_ASSERT(text_is(&f, "x", "Y"));
	o.seq = 3;
	CU_ASSERT_EQUAL(apply_op(&f.ax, &n, &o, &res), 0);
	CU_ASSERT_TRUE(res.replayed);
	apply_result_release(&res);
	/* Another client has its own sequence. */
	memcpy(o.client, "ffffffffffffffffffffffffffffffff", 33);
	CU_ASSERT_EQUAL(apply_op(&f.ax, &n, &o, &res), 0);
	CU_ASSERT_FALSE(res.replayed);
	apply_result_release(&res);
	CU_ASSERT(text_is(&f, "x", "X"));
	/* A failed rename records nothing. */
	memcpy(o.client, "0123456789abcdef0123456789abcdef", 33);
	o.seq = 9;
	n.path = "missing";
	CU_ASSERT_EQUAL(apply_op(&f.ax, &n, &o, &res), -ENOENT);
	apply_result_release(&res);
	uint64_t seq = 0;
	CU_ASSERT_EQUAL(state_seq_get(f.st, o.client, &seq), 1);
	CU_ASSERT_EQUAL(seq, 7);
	sfx_teardown(&f);
}

/* Read-only folders (0555, 0500) still accept changes inside them, and
 * keep their mode. Meaningful only unprivileged: as root the checks run
 * in a child that drops to nobody. Returns the number of failures. */
#define CHILD_CHECK(cond)                                                            \
	do {                                                                         \
		if (!(cond)) {                                                       \
			fprintf(stderr, "readonly folders: line %d: %s\n", __LINE__, #cond); \
			fails++;                                                     \
		}                                                                    \
	} while (0)

static int readonly_checks(void)
{
	struct sfx f;
	struct stat st;
	int fails = 0;
	if (sfx_setup(&f, 1, 1) < 0)
		return 1;
	struct proto_op md = mk(OP_MKDIR, "ro");
	md.mode = 0555;
	CHILD_CHECK(run_op(&f, &md) == 0);
	md.path = "ro/inner";
	md.mode = 0500;
	CHILD_CHECK(run_op(&f, &md) == 0);
	CHILD_CHECK(put_text(&f, "ro/f", "1", 0444) == 0);
	CHILD_CHECK(put_text(&f, "ro/f", "2", 0444) == 0);
	CHILD_CHECK(text_is(&f, "ro/f", "2"));
	CHILD_CHECK(put_text(&f, "ro/inner/g", "g", 0644) == 0);
	CHILD_CHECK(put_text(&f, "ro/new/deep/h", "h", 0644) == 0);
	struct proto_op sl = mk(OP_SYMLINK, "ro/l");
	sl.target = "f";
	CHILD_CHECK(run_op(&f, &sl) == 0);
	struct proto_op rn = mk(OP_RENAME, "ro/inner/g");
	rn.path2 = "ro/g2";
	CHILD_CHECK(run_op(&f, &rn) == 0);
	rn.path = "ro/inner";
	rn.path2 = "ro/new/inner2"; /* a read-only folder changes parent */
	CHILD_CHECK(run_op(&f, &rn) == 0);
	struct proto_op mt = mk(OP_META, "ro/g2");
	mt.type = 'f';
	mt.mode = 0400;
	CHILD_CHECK(run_op(&f, &mt) == 0);
	struct proto_op del = mk(OP_DELETE, "ro/f");
	CHILD_CHECK(run_op(&f, &del) == 0);
	CHILD_CHECK(lstat_rel(&f, "ro/f", &st) == -1);
	CHILD_CHECK(lstat_rel(&f, "ro", &st) == 0 && (st.st_mode & 07777) == 0555);
	CHILD_CHECK(lstat_rel(&f, "ro/new/inner2", &st) == 0 && (st.st_mode & 07777) == 0500);
	/* The file op over a read-only folder holding a read-only folder. */
	CHILD_CHECK(put_text(&f, "ro/new/inner2/x", "x", 0644) == 0);
	CHILD_CHECK(put_text(&f, "ro/new", "flat", 0644) == 0);
	CHILD_CHECK(text_is(&f, "ro/new", "flat"));
	/* The root read-only too. */
	struct proto_op root = mk(OP_MKDIR, "");
	root.mode = 0555;
	CHILD_CHECK(run_op(&f, &root) == 0);
	CHILD_CHECK(put_text(&f, "top", "t", 0644) == 0);
	CHILD_CHECK(stat(f.dir, &st) == 0 && (st.st_mode & 07777) == 0555);
	del.path = "ro";
	CHILD_CHECK(run_op(&f, &del) == 0);
	CHILD_CHECK(lstat_rel(&f, "ro", &st) == -1);
	CHILD_CHECK(sfx_tmp_count(&f) == 0);
	sfx_teardown(&f);
	return fails;
}

static void test_readonly_folders(void)
{
	if (geteuid() != 0) {
		CU_ASSERT_EQUAL(readonly_checks(), 0);
		return;
	}
	fflush(NULL);
	pid_t pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		uid_t nobody = 65534;
		if (setgroups(0, NULL) < 0 || setresgid(nobody, nobody, nobody) < 0 ||
		    setresuid(nobody, nobody, nobody) < 0)
			_exit(100);
		_exit(readonly_checks() ? 1 : 0);
	}
	int status = 0;
	CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
	CU_ASSERT_TRUE(WIFEXITED(status));
	CU_ASSERT_EQUAL(WEXITSTATUS(status), 0);
}

/* Leftovers in tmp/ (a crash) are removed when the next mirrord starts. */
static void test_tmp_leftovers(void)
{
	SETUP(f, 1);
	char p[512];
	snprintf(p, sizeof(p), "%s/tmp/f.1.1", f.state);
	CU_ASSERT_EQUAL(sfx_write(p, "half", 4), 0);
	snprintf(p, sizeof(p), "%s/tmp/x.1.2", f.state);
	CU_ASSERT_EQUAL(mkdir(p, 0500), 0);
	snprintf(p, sizeof(p), "%s/tmp/x.1.3", f.state);
	CU_ASSERT_EQUAL(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/tmp/x.1.3/y", f.state);
	CU_ASSERT_EQUAL(sfx_write(p, "y", 1), 0);
	CU_ASSERT_EQUAL(sfx_tmp_count(&f), 3);
	struct tmpdir t2;
	CU_ASSERT_EQUAL(tmpdir_open(&t2, f.statefd, 1), 0);
	CU_ASSERT_EQUAL(sfx_tmp_count(&f), 0);
	char a[TMPDIR_NAME_MAX], b[TMPDIR_NAME_MAX];
	tmpdir_name(&t2, 'f', a);
	tmpdir_name(&t2, 'f', b);
	CU_ASSERT(strcmp(a, b) != 0);
	tmpdir_close(&t2);
	sfx_teardown(&f);
}

int suite_server_apply(void)
{
	CU_pSuite s = CU_add_suite("server_apply", NULL, NULL);
	if (!s)
		return CU_get_error();
	if (!CU_add_test(s, "file from the store", test_file_from_store) ||
	    !CU_add_test(s, "file: missing chunks", test_file_missing_chunks) ||
	    !CU_add_test(s, "file: patched", test_file_patched) ||
	    !CU_add_test(s, "file: moves, signatures", test_file_moves) ||
	    !CU_add_test(s, "many ops, inline chunks", test_many) ||
	    !CU_add_test(s, "many deletes", test_many_deletes) ||
	    !CU_add_test(s, "many folders and symlinks", test_many_entries) ||
	    !CU_add_test(s, "many ops past a group's size", test_many_long_runs) ||
	    !CU_add_test(s, "file: replaces read-only file, folder, symlink", test_file_replaces) ||
	    !CU_add_test(s, "file: sparse", test_file_sparse) ||
	    !CU_add_test(s, "file: stage", test_file_stage) ||
	    !CU_add_test(s, "file: stage that does not fit", test_file_stage_misfit) ||
	    !CU_add_test(s, "file: chunks from the index", test_file_from_index) ||
	    !CU_add_test(s, "mkdir", test_mkdir) || !CU_add_test(s, "symlink", test_symlink) ||
	    !CU_add_test(s, "delete", test_delete) || !CU_add_test(s, "meta", test_meta) ||
	    !CU_add_test(s, "symlink escapes", test_symlink_escape) ||
	    !CU_add_test(s, "folder mtime through a descriptor", test_fd_mtime) ||
	    !CU_add_test(s, "rename", test_rename) ||
	    !CU_add_test(s, "rename replay", test_rename_replay) ||
	    !CU_add_test(s, "read-only folders", test_readonly_folders) ||
	    !CU_add_test(s, "tmp leftovers", test_tmp_leftovers))
		return CU_get_error();
	return 0;
}
