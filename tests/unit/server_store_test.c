/* Unit tests for server/store: the chunk store in <state>/chunks. */
#define _GNU_SOURCE
#include <CUnit/CUnit.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chunker.h"
#include "server_fixture.h"

static uint8_t out[CHUNK_PROTO_MAX];

/* The path of the pack holding id, and the offset of its bytes there. */
static void chunk_path(struct sfx *f, const struct hash_id *id, char *p, size_t n, off_t *off)
{
	char name[64];
	CU_ASSERT_EQUAL_FATAL(store_locate(&f->store, id, name, sizeof(name), off), 0);
	snprintf(p, n, "%s/chunks/%s", f->state, name);
}

static void test_put_get(void)
{
	struct sfx f;
	struct hash_id id;
	CU_ASSERT_FATAL(sfx_setup(&f, 0, 0) == 0);
	static uint8_t data[CHUNK_PROTO_MAX];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i ^ (i >> 8));
	hash_buf(data, sizeof(data), &id);
	CU_ASSERT_FALSE(store_has(&f.store, &id));
	CU_ASSERT_EQUAL(store_get(&f.store, &id, sizeof(data), out), -ENOENT);
	CU_ASSERT_EQUAL(store_put(&f.store, &id, data, sizeof(data)), 0);
	CU_ASSERT_TRUE(store_has(&f.store, &id));
	CU_ASSERT_EQUAL(store_get(&f.store, &id, sizeof(data), out), 0);
	CU_ASSERT(memcmp(out, data, sizeof(data)) == 0);
	/* Twice is fine (dedup). */
	CU_ASSERT_EQUAL(store_put(&f.store, &id, data, sizeof(data)), 0);
	/* The caller's length disagrees with the chunk: refused, chunk kept. */
	CU_ASSERT_EQUAL(store_get(&f.store, &id, 10, out), -EBADMSG);
	CU_ASSERT_TRUE(store_has(&f.store, &id));
	CU_ASSERT_EQUAL(store_remove(&f.store, &id), 0);
	CU_ASSERT_FALSE(store_has(&f.store, &id));
	CU_ASSERT_EQUAL(store_remove(&f.store, &id), 0);
	CU_ASSERT_EQUAL(sfx_tmp_count(&f), 0);
	sfx_teardown(&f);
}

static void test_damaged(void)
{
	struct sfx f;
	struct hash_id id;
	char p[512];
	CU_ASSERT_FATAL(sfx_setup(&f, 0, 0) == 0);
	hash_buf("good bytes", 10, &id);
	off_t off;
	CU_ASSERT_EQUAL(store_put(&f.store, &id, "good bytes", 10), 0);
	chunk_path(&f, &id, p, sizeof(p), &off);
	int fd = open(p, O_WRONLY);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(pwrite(fd, "evil bytes", 10, off), 10);
	close(fd);
	CU_ASSERT_EQUAL(store_get(&f.store, &id, 10, out), -ENOENT);
	CU_ASSERT_FALSE(store_has(&f.store, &id)); /* dropped */
	/* Truncated (a crash before the data reached the disk). */
	CU_ASSERT_EQUAL(store_put(&f.store, &id, "good bytes", 10), 0);
	chunk_path(&f, &id, p, sizeof(p), &off);
	CU_ASSERT_EQUAL(truncate(p, off), 0);
	CU_ASSERT_EQUAL(store_get(&f.store, &id, 10, out), -ENOENT);
	CU_ASSERT_FALSE(store_has(&f.store, &id));
	sfx_teardown(&f);
}

static void test_gc(void)
{
	struct sfx f;
	struct hash_id old, fresh;
	CU_ASSERT_FATAL(sfx_setup(&f, 0, 0) == 0);
	hash_buf("old", 3, &old);
	hash_buf("fresh", 5, &fresh);
	CU_ASSERT_EQUAL(store_put(&f.store, &old, "old", 3), 0);
	CU_ASSERT_EQUAL(store_put(&f.store, &fresh, "fresh", 5), 0);
	time_t long_ago = time(NULL) - 2 * 86400;
	CU_ASSERT_EQUAL(store_set_time(&f.store, &old, long_ago), 0);
	CU_ASSERT_EQUAL(store_gc(&f.store, 86400), 1);
	CU_ASSERT_FALSE(store_has(&f.store, &old));
	CU_ASSERT_TRUE(store_has(&f.store, &fresh));
	/* A re-upload of an old chunk makes it fresh again. */
	CU_ASSERT_EQUAL(store_put(&f.store, &old, "old", 3), 0);
	CU_ASSERT_EQUAL(store_set_time(&f.store, &old, long_ago), 0);
	CU_ASSERT_EQUAL(store_put(&f.store, &old, "old", 3), 0);
	CU_ASSERT_EQUAL(store_gc(&f.store, 86400), 0);
	CU_ASSERT_TRUE(store_has(&f.store, &old));
	sfx_teardown(&f);
}

int suite_server_store(void)
{
	CU_pSuite s = CU_add_suite("server_store", NULL, NULL);
	if (!s)
		return CU_get_error();
	if (!CU_add_test(s, "put/get/has/remove", test_put_get) ||
	    !CU_add_test(s, "damaged chunks are dropped", test_damaged) ||
	    !CU_add_test(s, "gc of stale chunks", test_gc))
		return CU_get_error();
	return 0;
}
