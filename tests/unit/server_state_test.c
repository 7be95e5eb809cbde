/* Unit tests for server/state: the chunk index and the replay records. */
#define _GNU_SOURCE
#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
	    !CU_add_test(s, "prefix rename/exchange/forget", test_prefixes) ||
	    !CU_add_test(s, "replay seqs", test_seq))
		return CU_get_error();
	return 0;
}
