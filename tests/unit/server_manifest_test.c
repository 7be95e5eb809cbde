/* Unit tests for server/manifest: the streamed NDJSON walk. */
#define _GNU_SOURCE
#include <CUnit/CUnit.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../server/manifest.h"
#include "proto.h"
#include "server_fixture.h"

#define MAX_LINES 64

struct listing {
	int n;
	cJSON *e[MAX_LINES]; /* owned */
};

static void listing_release(struct listing *l)
{
	for (int i = 0; i < l->n; i++)
		cJSON_Delete(l->e[i]);
	l->n = 0;
}

/* Walk sub; every line must be valid JSON of at most the line cap. */
static int list(struct sfx *f, const char *sub, struct listing *l)
{
	struct manifest *m;
	struct buf line;
	int r;
	l->n = 0;
	if (manifest_open(f->rootfd, sub, &m) < 0)
		return -1;
	buf_init(&line, 65536);
	while ((r = manifest_next(m, &line)) == 1) {
		CU_ASSERT(line.len > 0 && line.len <= PROTO_MANIFEST_LINE_MAX);
		CU_ASSERT(line.data[line.len - 1] == '\n');
		CU_ASSERT(memchr(line.data, '\n', line.len - 1) == NULL);
		cJSON *j = cJSON_ParseWithLength(line.data, line.len);
		CU_ASSERT_PTR_NOT_NULL(j);
		if (j && l->n < MAX_LINES)
			l->e[l->n++] = j;
		else
			cJSON_Delete(j);
		buf_reset(&line);
	}
	buf_release(&line);
	manifest_free(m);
	return r;
}

static const cJSON *find(const struct listing *l, const char *p, int *index)
{
	for (int i = 0; i < l->n; i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(l->e[i], "p");
		if (cJSON_IsString(v) && strcmp(v->valuestring, p) == 0) {
			if (index)
				*index = i;
			return l->e[i];
		}
	}
	return NULL;
}

static const char *str(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsString(v) ? v->valuestring : "";
}

static double num(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static void test_walk(void)
{
	struct sfx f;
	struct listing l;
	char p[512];
	CU_ASSERT_FATAL(sfx_setup(&f, 0, 0) == 0);
	CU_ASSERT_EQUAL(mkdir(sfx_path(&f, "a", p, sizeof(p)), 0750), 0);
	CU_ASSERT_EQUAL(mkdir(sfx_path(&f, "a/b", p, sizeof(p)), 0700), 0);
	CU_ASSERT_EQUAL(sfx_write(sfx_path(&f, "a/b/f", p, sizeof(p)), "12345", 5), 0);
	CU_ASSERT_EQUAL(chmod(p, 0604), 0);
	struct timespec ts[2] = { { .tv_sec = 5, .tv_nsec = 6 }, { .tv_sec = 1700000000, .tv_nsec = 999 } };
	CU_ASSERT_EQUAL(utimensat(AT_FDCWD, p, ts, 0), 0);
	CU_ASSERT_EQUAL(symlink(f.out, sfx_path(&f, "a/out", p, sizeof(p))), 0);
	CU_ASSERT_EQUAL(sfx_write(sfx_path(&f, "q\"\x01\\", p, sizeof(p)), "", 0), 0);
	CU_ASSERT_EQUAL(mkfifo(sfx_path(&f, "fifo", p, sizeof(p)), 0600), 0);
	snprintf(p, sizeof(p), "%s/not-listed", f.out);
	CU_ASSERT_EQUAL(sfx_write(p, "x", 1), 0);

	CU_ASSERT_EQUAL(list(&f, "", &l), 0);
	CU_ASSERT_EQUAL(l.n, 7); /* "", a, a/b, a/b/f, a/out, q..., fifo */
	CU_ASSERT_STRING_EQUAL(str(l.e[0], "p"), "");
	CU_ASSERT_STRING_EQUAL(str(l.e[0], "t"), "d");
	int ia = -1, ib = -1, iff = -1;
	const cJSON *e = find(&l, "a/b/f", &iff);
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_STRING_EQUAL(str(e, "t"), "f");
	CU_ASSERT_EQUAL(num(e, "m"), 0604);
	CU_ASSERT_EQUAL(num(e, "s"), 5);
	const cJSON *mt = cJSON_GetObjectItemCaseSensitive(e, "mt");
	CU_ASSERT(cJSON_GetArraySize(mt) == 2 && mt->child->valuedouble == 1700000000 &&
		  mt->child->next->valuedouble == 999);
	CU_ASSERT_PTR_NOT_NULL(find(&l, "a", &ia));
	CU_ASSERT_PTR_NOT_NULL(find(&l, "a/b", &ib));
	CU_ASSERT(ia < ib && ib < iff); /* pre-order */
	CU_ASSERT_EQUAL(num(find(&l, "a", NULL), "m"), 0750);
	CU_ASSERT_PTR_NULL(cJSON_GetObjectItemCaseSensitive(find(&l, "a", NULL), "s"));
	e = find(&l, "a/out", NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_STRING_EQUAL(str(e, "t"), "l");
	CU_ASSERT_STRING_EQUAL(str(e, "l"), f.out);
	CU_ASSERT_PTR_NOT_NULL(find(&l, "q\"\x01\\", NULL)); /* escaped and back */
	CU_ASSERT_STRING_EQUAL(str(find(&l, "fifo", NULL), "t"), "o");
	CU_ASSERT_PTR_NULL(find(&l, "a/out/not-listed", NULL));
	listing_release(&l);

	/* A subtree. */
	CU_ASSERT_EQUAL(list(&f, "a/b", &l), 0);
	CU_ASSERT_EQUAL(l.n, 2);
	CU_ASSERT_STRING_EQUAL(str(l.e[0], "p"), "a/b");
	CU_ASSERT_STRING_EQUAL(str(l.e[1], "p"), "a/b/f");
	listing_release(&l);
	/* Missing, a file, a symlink (not followed), beneath a symlink: empty. */
	static const char *empty[] = { "nothing", "a/b/f", "a/out", "a/out/x", "fifo/x" };
	for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++) {
		CU_ASSERT_EQUAL(list(&f, empty[i], &l), 0);
		CU_ASSERT_EQUAL(l.n, 0);
		listing_release(&l);
	}
	sfx_teardown(&f);
}

/* Deep trees: bounded by levels, not by entries; every level listed. */
static void test_deep(void)
{
	struct sfx f;
	struct listing l;
	char p[4200];
	CU_ASSERT_FATAL(sfx_setup(&f, 0, 0) == 0);
	size_t n = strlen(f.dir);
	memcpy(p, f.dir, n + 1);
	for (int i = 0; i < 300; i++) {
		memcpy(p + n, "/d", 3);
		n += 2;
		CU_ASSERT_EQUAL_FATAL(mkdir(p, 0755), 0);
	}
	struct manifest *m;
	struct buf line;
	int count = 0, r;
	CU_ASSERT_EQUAL_FATAL(manifest_open(f.rootfd, "", &m), 0);
	buf_init(&line, 65536);
	while ((r = manifest_next(m, &line)) == 1) {
		count++;
		buf_reset(&line);
	}
	CU_ASSERT_EQUAL(r, 0);
	CU_ASSERT_EQUAL(count, 301);
	buf_release(&line);
	manifest_free(m);
	(void)l;
	sfx_teardown(&f);
}

int suite_server_manifest(void)
{
	CU_pSuite s = CU_add_suite("server_manifest", NULL, NULL);
	if (!s)
		return CU_get_error();
	if (!CU_add_test(s, "walk", test_walk) || !CU_add_test(s, "deep tree", test_deep))
		return CU_get_error();
	return 0;
}
