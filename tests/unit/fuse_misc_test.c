/*
 * Unit tests for the pure helpers of the client: http_url_check (fuse/http),
 * uploader_backoff_ms (fuse/uploader) and send_classify (fuse/worker).
 */
#include <CUnit/CUnit.h>
#include <sqlite3.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>

#include "../../fuse/http.h"
#include "../../fuse/ra.h"
#include "../../fuse/record.h"
#include "../../fuse/uploader.h"
#include "../../fuse/worker.h"

static void test_url_check(void)
{
	static const char *ok[] = {
		"http://h",
		"http://localhost:8080",
		"http://localhost:8080/",
		"https://mirror.example.org",
		"https://mirror.example.org:443/",
		"http://127.0.0.1:1",
		"http://[::1]:8080",
		"http://[::1]/",
		"http://h:65535",
	};
	static const char *bad[] = {
		"",
		"h",
		"localhost:8080",
		"http:/h",
		"http//h",
		"ftp://h",
		"file:///etc",
		"http://",
		"https://",
		"http:///x",
		"http://:8080",
		"http:// h",
		"http://h x",
		"http://h\n",
		"http://h\t:80",
		" http://h",
		/* only host[:port][/]: no path, user, query or bad port */
		"http://h/v1",
		"http://h//",
		"http://u@h",
		"http://h?x=1",
		"http://h#x",
		"http://h:",
		"http://h:0",
		"http://h:65536",
		"http://h:99999999999999999999",
		"http://h:8o",
		"http://h:80:80",
		"http://[]:80",
		"http://[::1",
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		int r = http_url_check(ok[i]);
		CU_ASSERT_EQUAL(r, 0);
		if (r != 0)
			fprintf(stderr, "url_check: \"%s\" refused\n", ok[i]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = http_url_check(bad[i]);
		CU_ASSERT_EQUAL(r, -EINVAL);
		if (r != -EINVAL)
			fprintf(stderr, "url_check: \"%s\" accepted\n", bad[i]);
	}
}

/* The un-jittered backoff of retry number attempt. */
static long nominal(unsigned attempt)
{
	long ms = 200;
	for (unsigned i = 1; i < attempt && ms < UPLOADER_BACKOFF_MAX_MS; i++)
		ms *= 2;
	return ms < UPLOADER_BACKOFF_MAX_MS ? ms : UPLOADER_BACKOFF_MAX_MS;
}

static void test_backoff_bounds(void)
{
	/* the schedule itself: 200, 400, ... then the cap */
	CU_ASSERT_EQUAL(nominal(1), 200);
	CU_ASSERT_EQUAL(nominal(2), 400);
	CU_ASSERT_EQUAL(nominal(6), 6400);
	CU_ASSERT_EQUAL(nominal(7), UPLOADER_BACKOFF_MAX_MS);

	static const unsigned attempts[] = { 1, 2, 3, 4, 5, 6, 7, 8, 10, 20, 31, 32, 33,
					     64, 1000, UINT_MAX - 1, UINT_MAX };
	for (size_t i = 0; i < sizeof(attempts) / sizeof(attempts[0]); i++) {
		long n = nominal(attempts[i]);
		for (int k = 0; k < 200; k++) {
			int ms = uploader_backoff_ms(attempts[i]);
			CU_ASSERT(ms >= n - n / 4);
			CU_ASSERT(ms <= n + n / 4);
		}
	}
	/* attempt 0 (never used) is treated like the first */
	for (int k = 0; k < 100; k++) {
		int ms = uploader_backoff_ms(0);
		CU_ASSERT(ms >= 150 && ms <= 250);
	}
	/* never beyond the cap plus its jitter, however many attempts */
	for (unsigned a = 1; a < 100; a++)
		CU_ASSERT(uploader_backoff_ms(a) <=
			  UPLOADER_BACKOFF_MAX_MS + UPLOADER_BACKOFF_MAX_MS / 4);
}

/* Jitter: repeated calls spread over both sides of the nominal value. */
static void test_backoff_jitter(void)
{
	static const unsigned attempts[] = { 1, 4, 50 };
	for (size_t i = 0; i < sizeof(attempts) / sizeof(attempts[0]); i++) {
		long n = nominal(attempts[i]);
		int lo = INT_MAX, hi = 0, below = 0, above = 0;
		for (int k = 0; k < 400; k++) {
			int ms = uploader_backoff_ms(attempts[i]);
			lo = ms < lo ? ms : lo;
			hi = ms > hi ? ms : hi;
			below += ms < n;
			above += ms > n;
		}
		/* 400 uniform draws: each side gets some, the range is wide */
		CU_ASSERT(below > 0);
		CU_ASSERT(above > 0);
		CU_ASSERT(hi - lo >= n / 4);
	}
}

static void test_send_classify(void)
{
	static const long okc[] = { 200, 201, 204, 299 };
	static const long retry[] = { 500, 502, 503, 504, 507, 599, 408, 429 };
	static const long rejected[] = { 400, 401, 403, 405, 410, 413, 415, 422, 499 };
	for (size_t i = 0; i < sizeof(okc) / sizeof(okc[0]); i++)
		CU_ASSERT_EQUAL(send_classify(okc[i]), SEND_OK);
	for (size_t i = 0; i < sizeof(retry) / sizeof(retry[0]); i++)
		CU_ASSERT_EQUAL(send_classify(retry[i]), SEND_RETRY);
	for (size_t i = 0; i < sizeof(rejected) / sizeof(rejected[0]); i++)
		CU_ASSERT_EQUAL(send_classify(rejected[i]), SEND_REJECTED);
	CU_ASSERT_EQUAL(send_classify(404), SEND_NOTFOUND);
	CU_ASSERT_EQUAL(send_classify(409), SEND_MISSING);
	/* informational and redirects are not success */
	CU_ASSERT_NOT_EQUAL(send_classify(100), SEND_OK);
	CU_ASSERT_NOT_EQUAL(send_classify(301), SEND_OK);
	CU_ASSERT_NOT_EQUAL(send_classify(304), SEND_OK);
	CU_ASSERT_NOT_EQUAL(send_classify(0), SEND_OK);
}

/* The uploaders open the record together at start: every one gets it
 * (switching a new database to WAL can be busy without the busy handler). */
struct opener {
	const char *dir;
	pthread_barrier_t *go;
	int r;
	struct record *rec;
};

static void *open_record(void *arg)
{
	struct opener *o = arg;
	pthread_barrier_wait(o->go);
	o->r = record_open(o->dir, &o->rec);
	return NULL;
}

static void test_record_open_together(void)
{
	enum { N = 8, ROUNDS = 10 };
	for (int round = 0; round < ROUNDS; round++) {
		char dir[] = "/tmp/mirrorfs-rec.XXXXXX";
		CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
		pthread_barrier_t go;
		pthread_t t[N];
		struct opener o[N];
		pthread_barrier_init(&go, NULL, N);
		for (int i = 0; i < N; i++) {
			o[i] = (struct opener){ .dir = dir, .go = &go };
			CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, open_record, &o[i]), 0);
		}
		for (int i = 0; i < N; i++) {
			pthread_join(t[i], NULL);
			CU_ASSERT_EQUAL(o[i].r, 0);
			record_close(o[i].rec);
		}
		pthread_barrier_destroy(&go);
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		CU_ASSERT_EQUAL(system(cmd), 0);
	}
}

/* Lists follow renames (a folder's files too, what the rename replaced is
 * forgotten); a list sharing its least chunk id is found under another
 * name; an old record.db without the sketch column is upgraded. */
static struct proto_chunk *mklist(size_t n, uint32_t seed)
{
	struct proto_chunk *c = calloc(n, sizeof(*c));
	for (size_t i = 0; c && i < n; i++) {
		uint32_t v = seed + (uint32_t)i;
		hash_buf(&v, sizeof(v), &c[i].id);
		c[i].len = 100;
	}
	return c;
}

/* record_known inside record_read_begin/end, alone and inside a write
 * transaction (record_begin): the same answers, and writes before and
 * after the read still land. */
static void test_record_known_read(void)
{
	char dir[] = "/tmp/mirrorfs-rec.XXXXXX";
	struct record *r;
	struct stat st = { .st_ino = 7, .st_size = 3 };
	struct proto_chunk c[2] = { { .len = 1 }, { .len = 2 } };
	struct hash_id other;
	hash_buf("a", 1, &c[0].id);
	hash_buf("bb", 2, &c[1].id);
	hash_buf("other", 5, &other);
	CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
	CU_ASSERT_EQUAL_FATAL(record_open(dir, &r), 0);
	record_put(r, "f", &st, c, 1);
	record_read_begin(r);
	CU_ASSERT_TRUE(record_known(r, &c[0].id));
	CU_ASSERT_FALSE(record_known(r, &c[1].id));
	record_read_end(r);
	record_begin(r);
	record_put(r, "g", &st, &c[1], 1);
	record_read_begin(r);
	CU_ASSERT_TRUE(record_known(r, &c[1].id));
	CU_ASSERT_FALSE(record_known(r, &other));
	record_read_end(r);
	record_end(r);
	record_put(r, "h", &st, NULL, 0);
	CU_ASSERT_TRUE(record_unchanged(r, "g", &st));
	CU_ASSERT_TRUE(record_unchanged(r, "h", &st));
	CU_ASSERT_TRUE(record_known(r, &c[1].id));
	record_close(r);
	/* a new connection sees every write committed */
	CU_ASSERT_EQUAL_FATAL(record_open(dir, &r), 0);
	CU_ASSERT_TRUE(record_known(r, &c[0].id));
	CU_ASSERT_TRUE(record_known(r, &c[1].id));
	CU_ASSERT_TRUE(record_unchanged(r, "h", &st));
	record_close(r);
	char cmd[160];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CU_ASSERT_EQUAL(system(cmd), 0);
}

/* Rows of record.db's known table in dir, read by a connection of its own. */
static int known_rows(const char *dir)
{
	char db[PATH_MAX];
	sqlite3 *h = NULL;
	sqlite3_stmt *s = NULL;
	int n = -1;
	snprintf(db, sizeof(db), "%s/record.db", dir);
	if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(h, "SELECT count(*) FROM known", -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		n = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(h);
	return n;
}

/* Two records (two uploaders) sharing a set of known ids: what one gave,
 * the other knows at once, while it waits in memory; the one that fills
 * the set (8,192 ids) writes them, and closing writes the rest; an id
 * given twice is one row. */
static void test_record_known_shared(void)
{
	char dir[] = "/tmp/mirrorfs-rec.XXXXXX";
	struct record *a, *b;
	struct stat st = { .st_ino = 9, .st_size = 1 };
	const size_t n = 9000;
	struct proto_chunk *c = calloc(n, sizeof(*c));
	struct record_known *k = record_known_new();
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_PTR_NOT_NULL_FATAL(k);
	for (size_t i = 0; i < n; i++) {
		hash_buf(&i, sizeof(i), &c[i].id);
		c[i].len = 1;
	}
	CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
	CU_ASSERT_EQUAL_FATAL(record_open(dir, &a), 0);
	CU_ASSERT_EQUAL_FATAL(record_open(dir, &b), 0);
	record_share_known(a, k);
	record_share_known(b, k);
	record_put(a, "x", &st, c, 3);
	record_put(b, "y", &st, c, 3); /* the same ids again */
	CU_ASSERT_EQUAL(known_rows(dir), 0);
	CU_ASSERT_TRUE(record_known(b, &c[2].id));
	CU_ASSERT_FALSE(record_known(b, &c[3].id));
	record_put(a, "big", &st, c, n);
	CU_ASSERT_EQUAL(known_rows(dir), 8192); /* the first 8,192 went */
	for (size_t i = 0; i < n; i += 997)
		CU_ASSERT_TRUE(record_known(b, &c[i].id));
	CU_ASSERT_TRUE(record_known(b, &c[n - 1].id));
	record_close(a);
	CU_ASSERT_EQUAL(known_rows(dir), (int)n);
	record_close(b);
	record_known_free(k);
	CU_ASSERT_EQUAL_FATAL(record_open(dir, &a), 0);
	CU_ASSERT_TRUE(record_known(a, &c[n - 1].id));
	CU_ASSERT_TRUE(record_known(a, &c[0].id));
	record_close(a);
	free(c);
	char cmd[160];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CU_ASSERT_EQUAL(system(cmd), 0);
}

/* record_forget and record_rename take a path and what is beneath it,
 * and nothing else: not the names that only start the same ("ab", "a0",
 * "a.b", bytes above '/' and below it); "" is everything. */
static void test_record_forget_prefix(void)
{
	static const char *const names[] = { "a", "a/b", "a/b/c", "ab", "a0", "a.b", "a-", "b",
					     "a\x01", "a\xff/x" };
	const size_t nn = sizeof(names) / sizeof(names[0]);
	char dir[] = "/tmp/mirrorfs-rec.XXXXXX";
	struct record *r;
	struct stat st = { .st_ino = 5, .st_size = 1000 };
	CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
	CU_ASSERT_EQUAL_FATAL(record_open(dir, &r), 0);
	for (size_t i = 0; i < nn; i++)
		record_put(r, names[i], &st, NULL, 0);
	record_forget(r, "a");
	for (size_t i = 0; i < nn; i++) {
		int gone = strcmp(names[i], "a") == 0 || strncmp(names[i], "a/", 2) == 0;
		CU_ASSERT_EQUAL(record_unchanged(r, names[i], &st), !gone);
	}
	record_put(r, "a/b", &st, NULL, 0);
	record_put(r, "a/b/c", &st, NULL, 0);
	record_rename(r, "a", "z");
	CU_ASSERT_TRUE(record_unchanged(r, "z/b", &st));
	CU_ASSERT_TRUE(record_unchanged(r, "z/b/c", &st));
	CU_ASSERT_FALSE(record_unchanged(r, "a/b", &st));
	CU_ASSERT_TRUE(record_unchanged(r, "ab", &st));
	CU_ASSERT_TRUE(record_unchanged(r, "a0", &st));
	record_forget(r, "");
	CU_ASSERT_FALSE(record_unchanged(r, "b", &st));
	CU_ASSERT_FALSE(record_unchanged(r, "z/b", &st));
	CU_ASSERT_FALSE(record_unchanged(r, "a\xff/x", &st));
	record_close(r);
	char cmd[160];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CU_ASSERT_EQUAL(system(cmd), 0);
}

static void test_record_rename_similar(void)
{
	char dir[] = "/tmp/mirrorfs-rec.XXXXXX", cmd[160];
	struct record *r;
	struct stat st = { .st_ino = 5, .st_size = 1000 };
	size_t n;
	CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
	/* A record.db of the previous layout (no mh column). */
	sqlite3 *db;
	snprintf(cmd, sizeof(cmd), "%s/record.db", dir);
	CU_ASSERT_EQUAL_FATAL(sqlite3_open(cmd, &db), SQLITE_OK);
	CU_ASSERT_EQUAL(sqlite3_exec(db, "CREATE TABLE synced (path BLOB PRIMARY KEY, ino INTEGER,"
					 " size INTEGER, ms INTEGER, mn INTEGER, cs INTEGER,"
					 " cn INTEGER, digest BLOB, list BLOB)",
				     NULL, NULL, NULL),
			SQLITE_OK);
	sqlite3_close(db);
	CU_ASSERT_EQUAL_FATAL(record_open(dir, &r), 0);
	struct proto_chunk *a = mklist(10, 0), *b = mklist(10, 1000), *c;
	CU_ASSERT_FATAL(a && b);
	record_put(r, "d/a", &st, a, 10);
	record_put(r, "d/sub/b", &st, b, 10);
	record_put(r, "e", &st, b, 10);
	record_put(r, "dd", &st, b, 10); /* not beneath d */

	record_rename(r, "d", "e");
	CU_ASSERT_PTR_NULL(record_list(r, "d/a", &n));
	CU_ASSERT_PTR_NULL(record_list(r, "d/sub/b", &n));
	c = record_list(r, "e/a", &n);
	CU_ASSERT(c && n == 10 && memcmp(c, a, 10 * sizeof(*a)) == 0);
	free(c);
	c = record_list(r, "e/sub/b", &n);
	CU_ASSERT(c && n == 10 && memcmp(c, b, 10 * sizeof(*b)) == 0);
	free(c);
	c = record_list(r, "dd", &n);
	CU_ASSERT(c && n == 10);
	free(c);
	CU_ASSERT_TRUE(record_unchanged(r, "e/a", &st));

	/* Similar: a new version of a (one chunk changed, not its least). */
	size_t least = 0;
	for (size_t i = 1; i < 10; i++)
		if (memcmp(a[i].id.b, a[least].id.b, HASH_LEN) < 0)
			least = i;
	struct proto_chunk v2[10];
	memcpy(v2, a, sizeof(v2));
	for (size_t i = 0; i < 10; i++) /* a new chunk, but not a new least one */
		if (memcmp(b[i].id.b, a[least].id.b, HASH_LEN) > 0) {
			v2[(least + 5) % 10] = b[i];
			break;
		}
	CU_ASSERT(memcmp(&v2[(least + 5) % 10], &a[(least + 5) % 10], sizeof(*a)) != 0);
	char *p = record_find_similar(r, v2, 10, "new");
	CU_ASSERT(p && strcmp(p, "e/a") == 0);
	free(p);
	CU_ASSERT_PTR_NULL(record_find_similar(r, a, 10, "e/a")); /* not itself */
	CU_ASSERT_PTR_NULL(record_find_similar(r, NULL, 0, "new"));
	record_close(r);

	/* Reopened (the upgraded layout works again). */
	CU_ASSERT_EQUAL_FATAL(record_open(dir, &r), 0);
	c = record_list(r, "e/sub/b", &n);
	CU_ASSERT(c && n == 10);
	free(c);
	record_close(r);
	free(a);
	free(b);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CU_ASSERT_EQUAL(system(cmd), 0);
}

/* ra_mount_dev: the newest FUSE mount at a path, with mountinfo's
 * escapes undone; other filesystems and other paths are not it. */
static void test_ra_mount_dev(void)
{
	char path[] = "/tmp/mirror-ra-XXXXXX";
	int fd = mkstemp(path);
	CU_ASSERT_FATAL(fd >= 0);
	static const char text[] =
		"22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
		"40 22 0:39 / /mnt/a rw,nosuid - fuse.mirrorfs /b rw,user_id=0\n"
		"41 22 0:40 / /mnt/my\\040dir rw - fuse.mirrorfs /c rw\n"
		"42 22 0:41 / /mnt/a rw - tmpfs tmpfs rw\n"
		"43 40 0:42 / /mnt/a rw - fuse.other x rw\n"
		"44 22 0:43 / /mnt/ab rw - fuse.mirrorfs /d rw\n";
	CU_ASSERT_EQUAL_FATAL(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
	close(fd);
	unsigned maj = 9, min = 9;
	CU_ASSERT_EQUAL(ra_mount_dev(path, "/mnt/a", &maj, &min), 0);
	CU_ASSERT(maj == 0 && min == 42); /* the newest fuse mount, not tmpfs */
	CU_ASSERT_EQUAL(ra_mount_dev(path, "/mnt/my dir", &maj, &min), 0);
	CU_ASSERT(maj == 0 && min == 40);
	CU_ASSERT_EQUAL(ra_mount_dev(path, "/mnt/my\\040dir", &maj, &min), -ENOENT);
	CU_ASSERT_EQUAL(ra_mount_dev(path, "/mnt", &maj, &min), -ENOENT);
	CU_ASSERT_EQUAL(ra_mount_dev(path, "/", &maj, &min), -ENOENT); /* ext4 */
	unlink(path);
	CU_ASSERT_EQUAL(ra_mount_dev(path, "/mnt/a", &maj, &min), -ENOENT);
}

int suite_fuse_misc(void)
{
	CU_pSuite s = CU_add_suite("fuse_misc", NULL, NULL);
	if (!s)
		return CU_get_error();
	if (!CU_add_test(s, "url_check", test_url_check) ||
	    !CU_add_test(s, "ra_mount_dev", test_ra_mount_dev) ||
	    !CU_add_test(s, "backoff_bounds", test_backoff_bounds) ||
	    !CU_add_test(s, "backoff_jitter", test_backoff_jitter) ||
	    !CU_add_test(s, "send_classify", test_send_classify) ||
	    !CU_add_test(s, "record_open_together", test_record_open_together) ||
	    !CU_add_test(s, "record_rename_similar", test_record_rename_similar) ||
	    !CU_add_test(s, "record_forget_prefix", test_record_forget_prefix) ||
	    !CU_add_test(s, "record_known_read", test_record_known_read) ||
	    !CU_add_test(s, "record_known_shared", test_record_known_shared))
		return CU_get_error();
	return 0;
}
