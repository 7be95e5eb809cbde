/* Unit tests for server/state: the chunk index and the replay records. */
#define _GNU_SOURCE
#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sqlite3.h>

#include "server_fixture.h"

static struct proto_chunk ck(const char *s)
{
	struct proto_chunk c;
	hash_buf(s, strlen(s), &c.id);
	c.len = (uint32_t)strlen(s);
	return c;
}

/* 1 if c is indexed at path+off. */
static int at(struct state *st, const struct proto_chunk *c, const char *path, uint64_t off)
{
	char *p = NULL;
	uint64_t o = 0;
	uint32_t l = 0;
	int r = state_index_get(st, &c->id, &p, &o, &l) == 1 && strcmp(p, path) == 0 && o == off &&
		l == c->len;
	free(p);
	return r;
}

static void test_index(void)
{
	struct sfx f;
	CU_ASSERT_FATAL(sfx_setup(&f, 0, 1) == 0);
	struct proto_chunk c[3] = { ck("aaaa"), ck("bbbbbb"), ck("cc") };
	CU_ASSERT_EQUAL(state_index_file(f.st, "d/file", c, 3), 0);
	CU_ASSERT(at(f.st, &c[0], "d/file", 0));
	CU_ASSERT(at(f.st, &c[1], "d/file", 4));
	CU_ASSERT(at(f.st, &c[2], "d/file", 10));
	/* Republishing the path forgets what is no longer in it. */
	CU_ASSERT_EQUAL(state_index_file(f.st, "d/file", &c[2], 1), 0);
	CU_ASSERT(at(f.st, &c[2], "d/file", 0));
	CU_ASSERT_FALSE(state_index_has(f.st, &c[0].id));
	/* Drop only if the entry still says the same. */
	CU_ASSERT_EQUAL(state_index_drop(f.st, &c[2].id, "d/file", 5), 0);
	CU_ASSERT_TRUE(state_index_has(f.st, &c[2].id));
	CU_ASSERT_EQUAL(state_index_drop(f.st, &c[2].id, "d/file", 0), 0);
	CU_ASSERT_FALSE(state_index_has(f.st, &c[2].id));
	sfx_teardown(&f);
}

/* state_index_lens: the lengths of indexed ids, 0 for the others, in one
 * pass; a write after it still works (the read transaction ended). */
static void test_lens(void)
{
	struct sfx f;
	CU_ASSERT_FATAL(sfx_setup(&f, 0, 1) == 0);
	struct proto_chunk c[3] = { ck("aaaa"), ck("bbbbbb"), ck("cc") };
	struct proto_chunk x = ck("not indexed");
	CU_ASSERT_EQUAL(state_index_file(f.st, "d/file", c, 3), 0);
	struct hash_id ids[5] = { c[1].id, x.id, c[0].id, c[2].id, c[1].id };
	uint32_t lens[5] = { 9, 9, 9, 9, 9 };
	CU_ASSERT_EQUAL(state_index_lens(f.st, ids, 5, lens), 0);
	CU_ASSERT_EQUAL(lens[0], 6);
	CU_ASSERT_EQUAL(lens[1], 0);
	CU_ASSERT_EQUAL(lens[2], 4);
	CU_ASSERT_EQUAL(lens[3], 2);
	CU_ASSERT_EQUAL(lens[4], 6);
	CU_ASSERT_EQUAL(state_index_lens(f.st, ids, 0, lens), 0);
	CU_ASSERT_EQUAL(state_index_file(f.st, "d/other", &x, 1), 0);
	CU_ASSERT_EQUAL(state_index_lens(f.st, &ids[1], 1, lens), 0);
	CU_ASSERT_EQUAL(lens[0], x.len);
	CU_ASSERT(at(f.st, &x, "d/other", 0));
	sfx_teardown(&f);
}

/* Rows of chunkloc at path, read by a connection of its own (what is on
 * disk, not what waits in the state's memory). */
static int rows_at(const struct sfx *f, const char *path)
{
	char db[160];
	sqlite3 *h = NULL;
	sqlite3_stmt *s = NULL;
	int n = -1;
	snprintf(db, sizeof(db), "%s/state.db", f->state);
	if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(h, "SELECT count(*) FROM chunkloc WHERE path = ?1", -1, &s,
			       NULL) == SQLITE_OK) {
		sqlite3_bind_blob(s, 1, path, (int)strlen(path), SQLITE_STATIC);
		if (sqlite3_step(s) == SQLITE_ROW)
			n = sqlite3_column_int(s, 0);
	}
	sqlite3_finalize(s);
	sqlite3_close(h);
	return n;
}

/* Index writes of new files wait in memory (state.h) and are seen by
 * lookups all the same; anything else that touches the index writes them
 * first; a new version of an indexed file, and a file too large to wait,
 * are written at once; state_close() writes what waits. */
static void test_pending(void)
{
	struct sfx f;
	char db[160];
	CU_ASSERT_FATAL(sfx_setup(&f, 0, 1) == 0);
	struct proto_chunk a[2] = { ck("aaaa"), ck("bb") }, d = ck("in d"), dx = ck("in d/x");
	struct proto_chunk e = ck("eeeee"), g = ck("gg");

	CU_ASSERT_EQUAL(state_index_file(f.st, "a", a, 2), 0);
	CU_ASSERT_EQUAL(rows_at(&f, "a"), 0); /* waits */
	CU_ASSERT(at(f.st, &a[1], "a", 4));
	struct hash_id ids[2] = { a[0].id, a[1].id };
	uint32_t lens[2];
	CU_ASSERT_EQUAL(state_index_lens(f.st, ids, 2, lens), 0);
	CU_ASSERT(lens[0] == 4 && lens[1] == 2);
	/* a list lookup writes what waits first */
	struct hash_id digest;
	struct proto_chunk *list = NULL;
	size_t n = 0;
	CU_ASSERT_EQUAL(state_list_get(f.st, "a", &digest, &list, &n), 1);
	CU_ASSERT_EQUAL(n, 2);
	free(list);
	CU_ASSERT_EQUAL(rows_at(&f, "a"), 2);
	/* a new version of an indexed file: written at once, the old entries gone */
	CU_ASSERT_EQUAL(state_index_file(f.st, "a", &a[1], 1), 0);
	CU_ASSERT_EQUAL(rows_at(&f, "a"), 1);
	CU_ASSERT_FALSE(state_index_has(f.st, &a[0].id));

	/* a rename of a file that waits */
	CU_ASSERT_EQUAL(state_index_file(f.st, "b", &e, 1), 0);
	CU_ASSERT_EQUAL(state_index_rename(f.st, "b", "c", 0), 0);
	CU_ASSERT(at(f.st, &e, "c", 0));
	CU_ASSERT_EQUAL(rows_at(&f, "b"), 0);
	/* a file under a folder, then a file in the folder's place */
	CU_ASSERT_EQUAL(state_index_file(f.st, "d/x", &dx, 1), 0);
	CU_ASSERT(at(f.st, &dx, "d/x", 0));
	CU_ASSERT_EQUAL(state_index_file(f.st, "d", &d, 1), 0);
	CU_ASSERT(at(f.st, &d, "d", 0));
	CU_ASSERT_FALSE(state_index_has(f.st, &dx.id));
	/* the same path twice while it waits: the newer list only */
	CU_ASSERT_EQUAL(state_index_file(f.st, "h", &g, 1), 0);
	CU_ASSERT_EQUAL(state_index_file(f.st, "h", &e, 1), 0);
	CU_ASSERT(at(f.st, &e, "c", 0) || at(f.st, &e, "h", 0));
	CU_ASSERT_FALSE(state_index_has(f.st, &g.id));
	/* forgetting a file that waits */
	CU_ASSERT_EQUAL(state_index_file(f.st, "g", &g, 1), 0);
	CU_ASSERT_TRUE(state_index_has(f.st, &g.id));
	CU_ASSERT_EQUAL(state_index_forget(f.st, "g"), 0);
	CU_ASSERT_FALSE(state_index_has(f.st, &g.id));

	/* too many chunks to wait: written at once */
	size_t big = 16385;
	struct proto_chunk *many = calloc(big, sizeof(*many));
	CU_ASSERT_PTR_NOT_NULL_FATAL(many);
	for (size_t i = 0; i < big; i++) {
		hash_buf(&i, sizeof(i), &many[i].id);
		many[i].len = 100;
	}
	CU_ASSERT_EQUAL(state_index_file(f.st, "big", many, big), 0);
	CU_ASSERT_EQUAL(rows_at(&f, "big"), (int)big);
	CU_ASSERT(at(f.st, &many[big - 1], "big", (big - 1) * 100));
	free(many);

	/* closing writes what waits */
	CU_ASSERT_EQUAL(state_index_file(f.st, "last", &g, 1), 0);
	CU_ASSERT_EQUAL(rows_at(&f, "last"), 0);
	state_close(f.st);
	f.st = NULL;
	CU_ASSERT_EQUAL(rows_at(&f, "last"), 1);
	snprintf(db, sizeof(db), "%s/state.db", f.state);
	CU_ASSERT_EQUAL_FATAL(state_open(db, &f.st), 0);
	CU_ASSERT(at(f.st, &g, "last", 0));
	CU_ASSERT(at(f.st, &e, "c", 0) || at(f.st, &e, "h", 0));
	sfx_teardown(&f);
}

static void test_prefixes(void)
{
	struct sfx f;
	CU_ASSERT_FATAL(sfx_setup(&f, 0, 1) == 0);
	struct proto_chunk a = ck("in a"), ab = ck("in ab"), sub = ck("in a/sub"),
			   odd = ck("odd"), b = ck("in b");
	CU_ASSERT_EQUAL(state_index_file(f.st, "a", &a, 1), 0);
	CU_ASSERT_EQUAL(state_index_file(f.st, "ab", &ab, 1), 0);
	CU_ASSERT_EQUAL(state_index_file(f.st, "a/sub/f", &sub, 1), 0);
	CU_ASSERT_EQUAL(state_index_file(f.st, "a/\xff\x01 \"q\"", &odd, 1), 0);
	CU_ASSERT_EQUAL(state_index_file(f.st, "b/x", &b, 1), 0);
	/* Rename a -> z/a: a and beneath follow, "ab" does not. */
	CU_ASSERT_EQUAL(state_index_rename(f.st, "a", "z/a", 0), 0);
	CU_ASSERT(at(f.st, &a, "z/a", 0));
	CU_ASSERT(at(f.st, &sub, "z/a/sub/f", 0));
	CU_ASSERT(at(f.st, &odd, "z/a/\xff\x01 \"q\"", 0));
	CU_ASSERT(at(f.st, &ab, "ab", 0));
	/* Exchange z/a <-> b. */
	CU_ASSERT_EQUAL(state_index_rename(f.st, "z/a", "b", 1), 0);
	CU_ASSERT(at(f.st, &a, "b", 0));
	CU_ASSERT(at(f.st, &sub, "b/sub/f", 0));
	CU_ASSERT(at(f.st, &b, "z/a/x", 0));
	/* Plain rename onto an existing tree: the old target's entries go. */
	CU_ASSERT_EQUAL(state_index_rename(f.st, "ab", "b", 0), 0);
	CU_ASSERT(at(f.st, &ab, "b", 0));
	CU_ASSERT_FALSE(state_index_has(f.st, &sub.id));
	CU_ASSERT_FALSE(state_index_has(f.st, &a.id));
	/* Forget a tree. */
	CU_ASSERT_EQUAL(state_index_forget(f.st, "z"), 0);
	CU_ASSERT_FALSE(state_index_has(f.st, &b.id));
	CU_ASSERT_TRUE(state_index_has(f.st, &ab.id));
	sfx_teardown(&f);
}

/* A chunk in several files stays known while any of them has it. */
static void test_places(void)
{
	struct sfx f;
	CU_ASSERT_FATAL(sfx_setup(&f, 0, 1) == 0);
	struct proto_chunk x = ck("shared"), y = ck("other"), p3[3], q2[2];
	p3[0] = y;
	p3[1] = x;
	p3[2] = x; /* twice in p: its first place is kept */
	q2[0] = x;
	q2[1] = y;
	CU_ASSERT_EQUAL(state_index_file(f.st, "p", p3, 3), 0);
	CU_ASSERT_EQUAL(state_index_file(f.st, "q", q2, 2), 0);
	CU_ASSERT(at(f.st, &x, "p", 5)); /* "p" sorts first */
	/* p changes: x is still in q */
	CU_ASSERT_EQUAL(state_index_file(f.st, "p", &y, 1), 0);
	CU_ASSERT(at(f.st, &x, "q", 0));
	/* a stale place is dropped; the next one is found */
	CU_ASSERT_EQUAL(state_index_file(f.st, "a", &x, 1), 0);
	CU_ASSERT(at(f.st, &x, "a", 0));
	CU_ASSERT_EQUAL(state_index_drop(f.st, &x.id, "a", 0), 0);
	CU_ASSERT(at(f.st, &x, "q", 0));
	/* renames carry every place */
	CU_ASSERT_EQUAL(state_index_rename(f.st, "q", "r", 0), 0);
	CU_ASSERT(at(f.st, &x, "r", 0));
	CU_ASSERT(at(f.st, &y, "p", 0));
	CU_ASSERT_EQUAL(state_index_forget(f.st, "p"), 0);
	CU_ASSERT(at(f.st, &y, "r", 6));
	CU_ASSERT_EQUAL(state_index_forget(f.st, "r"), 0);
	CU_ASSERT_FALSE(state_index_has(f.st, &x.id));
	CU_ASSERT_FALSE(state_index_has(f.st, &y.id));
	sfx_teardown(&f);
}

/* A database of an older mirrord (one place per chunk, table "chunks")
 * keeps its entries. */
static void test_upgrade(void)
{
	struct sfx f;
	char db[160];
	sqlite3 *h = NULL;
	sqlite3_stmt *s = NULL;
	struct proto_chunk x = ck("from before");
	CU_ASSERT_FATAL(sfx_setup(&f, 0, 0) == 0);
	snprintf(db, sizeof(db), "%s/state.db", f.state);
	CU_ASSERT_FATAL(sqlite3_open(db, &h) == SQLITE_OK);
	CU_ASSERT_FATAL(sqlite3_exec(h,
				     "CREATE TABLE chunks(id BLOB PRIMARY KEY, path BLOB NOT NULL,"
				     " off INTEGER NOT NULL, len INTEGER NOT NULL) WITHOUT ROWID;"
				     "CREATE INDEX chunks_path ON chunks(path);",
				     NULL, NULL, NULL) == SQLITE_OK);
	CU_ASSERT_FATAL(sqlite3_prepare_v2(h, "INSERT INTO chunks VALUES (?1, CAST('old/f' AS BLOB),"
					      " 7, ?2)", -1, &s, NULL) == SQLITE_OK);
	sqlite3_bind_blob(s, 1, x.id.b, HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, x.len);
	CU_ASSERT_EQUAL(sqlite3_step(s), SQLITE_DONE);
	sqlite3_finalize(s);
	sqlite3_close(h);
	CU_ASSERT_EQUAL_FATAL(state_open(db, &f.st), 0);
	CU_ASSERT(at(f.st, &x, "old/f", 7));
	state_close(f.st);
	f.st = NULL;
	/* and opens again as a database of this version */
	CU_ASSERT_EQUAL_FATAL(state_open(db, &f.st), 0);
	CU_ASSERT(at(f.st, &x, "old/f", 7));
	sfx_teardown(&f);
}

static void test_seq(void)
{
	struct sfx f;
	uint64_t seq = 0;
	const char *c1 = "00000000000000000000000000000001";
	CU_ASSERT_FATAL(sfx_setup(&f, 0, 1) == 0);
	CU_ASSERT_EQUAL(state_seq_get(f.st, c1, &seq), 0);
	CU_ASSERT_EQUAL(state_seq_set(f.st, c1, 5), 0);
	CU_ASSERT_EQUAL(state_seq_get(f.st, c1, &seq), 1);
	CU_ASSERT_EQUAL(seq, 5);
	CU_ASSERT_EQUAL(state_seq_set(f.st, c1, 3), 0); /* never goes back */
	CU_ASSERT_EQUAL(state_seq_get(f.st, c1, &seq), 1);
	CU_ASSERT_EQUAL(seq, 5);
	CU_ASSERT_EQUAL(state_seq_set(f.st, c1, (uint64_t)INT64_MAX), 0);
	CU_ASSERT_EQUAL(state_seq_get(f.st, c1, &seq), 1);
	CU_ASSERT_EQUAL(seq, (uint64_t)INT64_MAX);
	CU_ASSERT_EQUAL(state_seq_set(f.st, c1, (uint64_t)INT64_MAX + 1), -EINVAL);
	/* Survives a reopen. */
	char db[160];
	snprintf(db, sizeof(db), "%s/state.db", f.state);
	state_close(f.st);
	f.st = NULL;
	CU_ASSERT_EQUAL_FATAL(state_open(db, &f.st), 0);
	CU_ASSERT_EQUAL(state_seq_get(f.st, c1, &seq), 1);
	CU_ASSERT_EQUAL(seq, (uint64_t)INT64_MAX);
	sfx_teardown(&f);
}

int suite_server_state(void)
{
	CU_pSuite s = CU_add_suite("server_state", NULL, NULL);
	if (!s)
		return CU_get_error();
	if (!CU_add_test(s, "chunk index", test_index) ||
	    !CU_add_test(s, "lengths of many ids", test_lens) ||
	    !CU_add_test(s, "index writes that wait", test_pending) ||
	    !CU_add_test(s, "prefix rename/exchange/forget", test_prefixes) ||
	    !CU_add_test(s, "a chunk in several files", test_places) ||
	    !CU_add_test(s, "upgrade of an older index", test_upgrade) ||
	    !CU_add_test(s, "replay seqs", test_seq))
		return CU_get_error();
	return 0;
}
