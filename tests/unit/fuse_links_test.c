/* Unit tests for fuse/links: the names of hard-linked files. */
#include <CUnit/CUnit.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../../fuse/links.h"

static struct links *new_links(void)
{
	struct links *l = links_new();
	CU_ASSERT_PTR_NOT_NULL_FATAL(l);
	return l;
}

/* Check that links_others(l, ino, path) is exactly the NULL-terminated list
 * of names given (in any order, each once). */
static void expect_others(struct links *l, ino_t ino, const char *path, ...)
{
	const char *want[16];
	size_t nwant = 0;
	va_list ap;
	va_start(ap, path);
	for (const char *s; (s = va_arg(ap, const char *)) && nwant < 16;)
		want[nwant++] = s;
	va_end(ap);

	char **v = links_others(l, ino, path);
	if (nwant == 0) {
		CU_ASSERT_PTR_NULL(v);
		links_strv_free(v);
		return;
	}
	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	size_t n = 0;
	while (v[n])
		n++;
	CU_ASSERT_EQUAL(n, nwant);
	for (size_t i = 0; i < nwant; i++) {
		size_t found = 0;
		for (size_t j = 0; j < n; j++)
			found += strcmp(v[j], want[i]) == 0;
		CU_ASSERT_EQUAL(found, 1);
	}
	links_strv_free(v);
}

static void test_add_others(void)
{
	struct links *l = new_links();
	expect_others(l, 1, "a", NULL);
	CU_ASSERT_EQUAL(links_add(l, 1, "a"), 0);
	expect_others(l, 1, "a", NULL); /* one name: no others */
	CU_ASSERT_EQUAL(links_add(l, 1, "b/c"), 0);
	CU_ASSERT_EQUAL(links_add(l, 1, "d"), 0);
	CU_ASSERT_EQUAL(links_add(l, 2, "x"), 0);
	CU_ASSERT_EQUAL(links_add(l, 1, "d"), 0); /* known already: not twice */

	expect_others(l, 1, "a", "b/c", "d", NULL);
	expect_others(l, 1, "d", "a", "b/c", NULL);
	expect_others(l, 1, "elsewhere", "a", "b/c", "d", NULL);
	expect_others(l, 2, "x", NULL);
	expect_others(l, 2, "y", "x", NULL);
	expect_others(l, 3, "a", NULL);

	/* a name now used by another inode moves to it */
	CU_ASSERT_EQUAL(links_add(l, 2, "a"), 0);
	expect_others(l, 1, "d", "b/c", NULL);
	expect_others(l, 2, "x", "a", NULL);
	links_free(l);
	links_free(NULL);
	links_strv_free(NULL);
}

static void test_renamed(void)
{
	struct links *l = new_links();
	CU_ASSERT_EQUAL(links_add(l, 1, "d/f"), 0);
	CU_ASSERT_EQUAL(links_add(l, 1, "d/x/g"), 0);
	CU_ASSERT_EQUAL(links_add(l, 1, "dx/f"), 0);
	CU_ASSERT_EQUAL(links_add(l, 1, "d"), 0);
	CU_ASSERT_EQUAL(links_add(l, 1, "e/d/f"), 0);
	links_renamed(l, "d", "n/m", 0);
	expect_others(l, 1, "", "n/m/f", "n/m/x/g", "dx/f", "n/m", "e/d/f", NULL);

	/* a file renamed on its own */
	links_renamed(l, "dx/f", "top", 0);
	expect_others(l, 1, "", "n/m/f", "n/m/x/g", "top", "n/m", "e/d/f", NULL);
	/* unknown names change nothing */
	links_renamed(l, "zz", "yy", 0);
	expect_others(l, 1, "", "n/m/f", "n/m/x/g", "top", "n/m", "e/d/f", NULL);
	links_free(l);
}

static void test_exchange(void)
{
	struct links *l = new_links();
	CU_ASSERT_EQUAL(links_add(l, 1, "a/f"), 0);
	CU_ASSERT_EQUAL(links_add(l, 1, "k"), 0);
	CU_ASSERT_EQUAL(links_add(l, 2, "b/g"), 0);
	CU_ASSERT_EQUAL(links_add(l, 2, "ab"), 0);
	links_renamed(l, "a", "b", 1);
	expect_others(l, 1, "k", "b/f", NULL);
	expect_others(l, 2, "ab", "a/g", NULL);
	/* exchanging back restores the names */
	links_renamed(l, "b", "a", 1);
	expect_others(l, 1, "k", "a/f", NULL);
	expect_others(l, 2, "ab", "b/g", NULL);
	links_free(l);
}

static void test_unlinked(void)
{
	struct links *l = new_links();
	CU_ASSERT_EQUAL(links_add(l, 1, "a"), 0);
	CU_ASSERT_EQUAL(links_add(l, 1, "d/f"), 0);
	CU_ASSERT_EQUAL(links_add(l, 1, "d/x/g"), 0);
	CU_ASSERT_EQUAL(links_add(l, 1, "dx"), 0);
	CU_ASSERT_EQUAL(links_add(l, 1, "d"), 0);
	CU_ASSERT_EQUAL(links_add(l, 1, "e/d"), 0);
	links_unlinked(l, "a");
	expect_others(l, 1, "", "d/f", "d/x/g", "dx", "d", "e/d", NULL);
	links_unlinked(l, "d"); /* d and everything below it, not dx */
	expect_others(l, 1, "", "dx", "e/d", NULL);
	links_unlinked(l, "nothing");
	expect_others(l, 1, "", "dx", "e/d", NULL);
	links_unlinked(l, "dx");
	links_unlinked(l, "e/d");
	expect_others(l, 1, "", NULL);
	links_free(l);
}

int suite_fuse_links(void)
{
	CU_pSuite s = CU_add_suite("fuse_links", NULL, NULL);
	if (!s)
		return CU_get_error();
	if (!CU_add_test(s, "add_others", test_add_others) ||
	    !CU_add_test(s, "renamed", test_renamed) ||
	    !CU_add_test(s, "exchange", test_exchange) ||
	    !CU_add_test(s, "unlinked", test_unlinked))
		return CU_get_error();
	return 0;
}
