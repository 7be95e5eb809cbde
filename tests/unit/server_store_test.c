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

/* A stage's chunks: at their offsets in its file, available as any
 * chunk, handed over whole by take. */
static void test_stage(void)
{
	struct sfx f;
	struct hash_id a, b, c;
	char name[64], p[512];
	off_t off;
	uint8_t tok[STORE_STAGE_TOKEN], other[STORE_STAGE_TOKEN];
	struct store_placed *pl = NULL;
	size_t n = 0;
	int fd = -1;
	memset(tok, 7, sizeof(tok));
	memset(other, 8, sizeof(other));
	CU_ASSERT_FATAL(sfx_setup(&f, 0, 0) == 0);
	hash_buf("aaaa", 4, &a);
	hash_buf("bbbbbb", 6, &b);
	hash_buf("cc", 2, &c);
	CU_ASSERT_EQUAL(store_stage_put(&f.store, tok, 0, &a, "aaaa", 4), 0);
	CU_ASSERT_EQUAL(store_stage_put(&f.store, tok, 10, &b, "bbbbbb", 6), 0);
	/* The same chunk again further on: placed twice, one entry. */
	CU_ASSERT_EQUAL(store_stage_put(&f.store, tok, 20, &a, "aaaa", 4), 0);
	/* Before the end of the last one: a pack keeps it, not placed. */
	CU_ASSERT_EQUAL(store_stage_put(&f.store, tok, 5, &c, "cc", 2), 0);
	CU_ASSERT_EQUAL(store_locate(&f.store, &c, name, sizeof(name), &off), 0);
	CU_ASSERT(strncmp(name, "pack.", 5) == 0);
	CU_ASSERT_EQUAL(store_locate(&f.store, &b, name, sizeof(name), &off), 0);
	CU_ASSERT(strncmp(name, "stage.", 6) == 0);
	CU_ASSERT_EQUAL(off, 10);
	CU_ASSERT_EQUAL(store_stage_put(&f.store, tok, 0, &a, "aaaa", 0), -EINVAL);
	CU_ASSERT_EQUAL(store_stage_put(&f.store, tok, UINT64_MAX - 2, &a, "aaaa", 4), -EINVAL);
	CU_ASSERT_TRUE(store_has(&f.store, &a) && store_has(&f.store, &b));
	CU_ASSERT_EQUAL(store_get(&f.store, &b, 6, out), 0);
	CU_ASSERT(memcmp(out, "bbbbbb", 6) == 0);
	/* Dropping a chunk of a stage keeps its bytes in place. */
	CU_ASSERT_EQUAL(store_remove(&f.store, &b), 0);

	CU_ASSERT_EQUAL(store_stage_take(&f.store, other, f.tmp.fd, "t1", &fd, &pl, &n), -ENOENT);
	CU_ASSERT_EQUAL(fd, -1);
	CU_ASSERT_EQUAL(store_stage_take(&f.store, tok, f.tmp.fd, "t1", &fd, &pl, &n), 0);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL_FATAL(n, 3);
	CU_ASSERT(pl[0].off == 0 && pl[0].len == 4 && hash_equal(&pl[0].id, &a));
	CU_ASSERT(pl[1].off == 10 && pl[1].len == 6 && hash_equal(&pl[1].id, &b));
	CU_ASSERT(pl[2].off == 20 && pl[2].len == 4 && hash_equal(&pl[2].id, &a));
	uint8_t all[24];
	CU_ASSERT_EQUAL(pread(fd, all, sizeof(all), 0), 24);
	CU_ASSERT(memcmp(all, "aaaa\0\0\0\0\0\0bbbbbb\0\0\0\0aaaa", 24) == 0);
	/* The file moved to the caller's name; the stage is gone. */
	snprintf(p, sizeof(p), "%s/tmp/t1", f.state);
	CU_ASSERT_EQUAL(access(p, F_OK), 0);
	struct store_placed *pl2;
	size_t n2;
	int fd2;
	CU_ASSERT_EQUAL(store_stage_take(&f.store, tok, f.tmp.fd, "t2", &fd2, &pl2, &n2), -ENOENT);
	CU_ASSERT(fd2 == -1 && pl2 == NULL && n2 == 0);
	/* Its chunks stay readable until removed, and removing them leaves
	 * the file alone: it is the caller's now. */
	CU_ASSERT_EQUAL(store_get(&f.store, &a, 4, out), 0);
	CU_ASSERT(memcmp(out, "aaaa", 4) == 0);
	CU_ASSERT_EQUAL(store_remove(&f.store, &a), 0);
	CU_ASSERT_EQUAL(store_gc(&f.store, -10), 1); /* c, in its pack */
	struct stat st;
	CU_ASSERT_EQUAL(fstat(fd, &st), 0);
	CU_ASSERT_EQUAL(st.st_size, 24);
	CU_ASSERT_EQUAL(st.st_blocks > 0, 1);
	CU_ASSERT_EQUAL(access(p, F_OK), 0);
	/* A put to a taken name starts a new stage. */
	CU_ASSERT_EQUAL(store_stage_put(&f.store, tok, 0, &c, "cc", 2), 0);
	close(fd);
	free(pl);
	CU_ASSERT_EQUAL(store_stage_take(&f.store, tok, f.tmp.fd, "t3", &fd, &pl, &n), 0);
	CU_ASSERT_EQUAL(n, 1);
	close(fd);
	free(pl);
	sfx_teardown(&f);
}

/* store_reclaim: stages nobody took and nobody put into for the idle
 * time go, with their chunks and files; chunks in packs (an upload whose
 * commit is still to come) and taken stages stay. */
static void test_reclaim(void)
{
	struct sfx f;
	CU_ASSERT_FATAL(sfx_setup(&f, 0, 0) == 0);
	uint8_t t1[STORE_STAGE_TOKEN], t2[STORE_STAGE_TOKEN];
	memset(t1, 1, sizeof(t1));
	memset(t2, 2, sizeof(t2));
	struct hash_id a, b, c;
	hash_buf("aaaa", 4, &a);
	hash_buf("bbbbbb", 6, &b);
	hash_buf("cc", 2, &c);
	CU_ASSERT_EQUAL(store_stage_put(&f.store, t1, 0, &a, "aaaa", 4), 0);
	CU_ASSERT_EQUAL(store_stage_put(&f.store, t2, 0, &b, "bbbbbb", 6), 0);
	CU_ASSERT_EQUAL(store_put(&f.store, &c, "cc", 2), 0);
	int fd;
	struct store_placed *pl;
	size_t n;
	CU_ASSERT_EQUAL(store_stage_take(&f.store, t2, f.tmp.fd, "taken", &fd, &pl, &n), 0);
	close(fd);
	free(pl);
	/* nothing is idle for a day */
	CU_ASSERT_EQUAL(store_reclaim(&f.store, 86400), 0);
	CU_ASSERT_TRUE(store_has(&f.store, &a));
	/* everything is idle since a second from now: only the stage nobody took */
	CU_ASSERT_EQUAL(store_reclaim(&f.store, -1), 1);
	CU_ASSERT_FALSE(store_has(&f.store, &a));
	CU_ASSERT_TRUE(store_has(&f.store, &b));
	CU_ASSERT_TRUE(store_has(&f.store, &c));
	CU_ASSERT_EQUAL(store_stage_take(&f.store, t1, f.tmp.fd, "t1", &fd, &pl, &n), -ENOENT);
	sfx_teardown(&f);
}

/* At most STORE_STAGES_MAX stages: the chunks of one more go to a pack.
 * A stage nobody takes is collected with its file. */
static void test_stage_limits(void)
{
	struct sfx f;
	uint8_t tok[STORE_STAGE_TOKEN];
	struct hash_id id;
	char name[64], p[512];
	off_t off;
	CU_ASSERT_FATAL(sfx_setup(&f, 0, 0) == 0);
	for (int i = 0; i <= STORE_STAGES_MAX; i++) {
		char data[16];
		int len = snprintf(data, sizeof(data), "chunk %d", i);
		memset(tok, i + 1, sizeof(tok));
		hash_buf(data, (size_t)len, &id);
		CU_ASSERT_EQUAL(store_stage_put(&f.store, tok, 0, &id, data, (size_t)len), 0);
		CU_ASSERT_EQUAL(store_locate(&f.store, &id, name, sizeof(name), &off), 0);
		CU_ASSERT(strncmp(name, i < STORE_STAGES_MAX ? "stage." : "pack.", 5) == 0);
	}
	hash_buf("chunk 0", 7, &id);
	CU_ASSERT_EQUAL(store_locate(&f.store, &id, name, sizeof(name), &off), 0);
	snprintf(p, sizeof(p), "%s/chunks/%s", f.state, name);
	CU_ASSERT_EQUAL(access(p, F_OK), 0);
	CU_ASSERT_EQUAL(store_set_time(&f.store, &id, time(NULL) - 2 * 86400), 0);
	CU_ASSERT_EQUAL(store_gc(&f.store, 86400), 1);
	CU_ASSERT_FALSE(store_has(&f.store, &id));
	CU_ASSERT_NOT_EQUAL(access(p, F_OK), 0);
	memset(tok, 1, sizeof(tok));
	struct store_placed *pl;
	size_t n;
	int fd;
	CU_ASSERT_EQUAL(store_stage_take(&f.store, tok, f.tmp.fd, "t", &fd, &pl, &n), -ENOENT);
	/* Room for one more stage now. */
	memset(tok, 99, sizeof(tok));
	CU_ASSERT_EQUAL(store_stage_put(&f.store, tok, 0, &id, "chunk 0", 7), 0);
	CU_ASSERT_EQUAL(store_locate(&f.store, &id, name, sizeof(name), &off), 0);
	CU_ASSERT(strncmp(name, "stage.", 6) == 0);
	sfx_teardown(&f);
}

int suite_server_store(void)
{
	CU_pSuite s = CU_add_suite("server_store", NULL, NULL);
	if (!s)
		return CU_get_error();
	if (!CU_add_test(s, "put/get/has/remove", test_put_get) ||
	    !CU_add_test(s, "damaged chunks are dropped", test_damaged) ||
	    !CU_add_test(s, "gc of stale chunks", test_gc) ||
	    !CU_add_test(s, "stages", test_stage) ||
	    !CU_add_test(s, "reclaim of idle stages", test_reclaim) ||
	    !CU_add_test(s, "stage limits and gc", test_stage_limits))
		return CU_get_error();
	return 0;
}
