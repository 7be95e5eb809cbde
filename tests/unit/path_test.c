/* Unit tests for common/path: validation and manipulation of mirror paths. */
#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "path.h"

static int check(const char *p, int allow_root)
{
	return path_check(p, strlen(p), allow_root);
}

static void test_check_valid(void)
{
	static const char *ok[] = {
		"a", "a/b", "a/b/c", "..a", "a..", "...", ".x", ".hidden/.x",
		"with space/x y", "caf\xc3\xa9", "\xff\xfe", "a-b_c.d~", "x/.../y",
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		CU_ASSERT_EQUAL(check(ok[i], 0), 0);
		CU_ASSERT_EQUAL(check(ok[i], 1), 0);
	}
	CU_ASSERT_EQUAL(check("", 1), 0);
	CU_ASSERT_EQUAL(check("", 0), -EINVAL);
	/* only len bytes count: "a/b" cut to "a" */
	CU_ASSERT_EQUAL(path_check("a/b", 1, 0), 0);
	CU_ASSERT_EQUAL(path_check("a/b", 2, 0), -EINVAL); /* "a/" */
}

static void test_check_invalid(void)
{
	static const char *bad[] = {
		"/a", "a/", "/", "//", "a//b", ".", "..", "./a", "a/.", "a/./b",
		"../a", "a/..", "a/../b", "/abs/path",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CU_ASSERT_EQUAL(check(bad[i], 0), -EINVAL);
		CU_ASSERT_EQUAL(check(bad[i], 1), -EINVAL);
	}
	CU_ASSERT_EQUAL(path_check("a\0b", 3, 0), -EINVAL);
	CU_ASSERT_EQUAL(path_check("ab\0", 3, 0), -EINVAL);
	CU_ASSERT_EQUAL(path_check(NULL, 0, 1), -EINVAL);
}

static void test_check_lengths(void)
{
	char *p = malloc(PATH_MAX_LEN + 2);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);

	/* one component of 255 bytes is fine, 256 is not */
	memset(p, 'c', PATH_COMPONENT_MAX + 1);
	p[PATH_COMPONENT_MAX] = '\0';
	CU_ASSERT_EQUAL(check(p, 0), 0);
	p[PATH_COMPONENT_MAX] = 'c';
	p[PATH_COMPONENT_MAX + 1] = '\0';
	CU_ASSERT_EQUAL(check(p, 0), -ENAMETOOLONG);
	/* ... also as a middle component */
	char mid[PATH_COMPONENT_MAX + 10];
	mid[0] = 'a';
	mid[1] = '/';
	memset(mid + 2, 'm', PATH_COMPONENT_MAX + 1);
	mid[PATH_COMPONENT_MAX + 3] = '/';
	mid[PATH_COMPONENT_MAX + 4] = 'b';
	mid[PATH_COMPONENT_MAX + 5] = '\0';
	CU_ASSERT_EQUAL(check(mid, 0), -ENAMETOOLONG);

	/* 16 components of 255 and 15 slashes: exactly PATH_MAX_LEN */
	size_t n = 0;
	for (int c = 0; c < 16; c++) {
		if (c)
			p[n++] = '/';
		memset(p + n, 'a' + c, PATH_COMPONENT_MAX);
		n += PATH_COMPONENT_MAX;
	}
	p[n] = '\0';
	CU_ASSERT_EQUAL_FATAL(n, PATH_MAX_LEN);
	CU_ASSERT_EQUAL(check(p, 0), 0);
	p[n] = 'z'; /* one more byte */
	p[n + 1] = '\0';
	CU_ASSERT_EQUAL(check(p, 0), -ENAMETOOLONG);
	free(p);
}

static void test_is_under(void)
{
	CU_ASSERT_EQUAL(path_is_under("a", "a"), 1);
	CU_ASSERT_EQUAL(path_is_under("a/b", "a"), 1);
	CU_ASSERT_EQUAL(path_is_under("a/b/c", "a/b"), 1);
	CU_ASSERT_EQUAL(path_is_under("ab", "a"), 0);
	CU_ASSERT_EQUAL(path_is_under("a/bc", "a/b"), 0);
	CU_ASSERT_EQUAL(path_is_under("a", "a/b"), 0);
	CU_ASSERT_EQUAL(path_is_under("b/a", "a"), 0);
	CU_ASSERT_EQUAL(path_is_under("x/y", ""), 1);
	CU_ASSERT_EQUAL(path_is_under("", ""), 1);
	CU_ASSERT_EQUAL(path_is_under("", "a"), 0);
}

static void expect_rebase(const char *p, const char *from, const char *to, const char *want)
{
	char *r = path_rebase(p, from, to);
	if (!want) {
		CU_ASSERT_PTR_NULL(r);
	} else {
		CU_ASSERT_PTR_NOT_NULL(r);
		if (r)
			CU_ASSERT_STRING_EQUAL(r, want);
	}
	free(r);
}

static void test_rebase(void)
{
	expect_rebase("a/b/c", "a/b", "x", "x/c");
	expect_rebase("a/b/c", "a", "x/y", "x/y/b/c");
	expect_rebase("a/b", "a/b", "x/y", "x/y");
	expect_rebase("a/b", "a", "", "b");
	expect_rebase("a", "a", "", "");
	expect_rebase("a/b", "", "x", "x/a/b");
	expect_rebase("ab", "a", "x", NULL);
	expect_rebase("a", "a/b", "x", NULL);
}

static void expect_join(const char *a, const char *b, const char *want)
{
	char *r = path_join(a, b);
	CU_ASSERT_PTR_NOT_NULL(r);
	if (r)
		CU_ASSERT_STRING_EQUAL(r, want);
	free(r);
}

static void test_join(void)
{
	expect_join("a", "b", "a/b");
	expect_join("a/b", "c/d", "a/b/c/d");
	expect_join("", "b", "b");
	expect_join("a", "", "a");
	expect_join("", "", "");
}

static void test_parent_base(void)
{
	CU_ASSERT_EQUAL(path_parent_len("a/b/c"), 3);
	CU_ASSERT_EQUAL(path_parent_len("a/b"), 1);
	CU_ASSERT_EQUAL(path_parent_len("abc/d"), 3);
	CU_ASSERT_EQUAL(path_parent_len("c"), 0);
	CU_ASSERT_EQUAL(path_parent_len(""), 0);
	CU_ASSERT_STRING_EQUAL(path_base("a/b/c"), "c");
	CU_ASSERT_STRING_EQUAL(path_base("a/bcd"), "bcd");
	CU_ASSERT_STRING_EQUAL(path_base("c"), "c");
	CU_ASSERT_STRING_EQUAL(path_base(""), "");
	const char *p = "x/yz";
	CU_ASSERT_PTR_EQUAL(path_base(p), p + 2); /* points inside p */
}

int suite_path(void)
{
	CU_pSuite s = CU_add_suite("path", NULL, NULL);
	if (!s)
		return CU_get_error();
	if (!CU_add_test(s, "check valid", test_check_valid) ||
	    !CU_add_test(s, "check invalid", test_check_invalid) ||
	    !CU_add_test(s, "check lengths", test_check_lengths) ||
	    !CU_add_test(s, "is_under", test_is_under) || !CU_add_test(s, "rebase", test_rebase) ||
	    !CU_add_test(s, "join", test_join) || !CU_add_test(s, "parent/base", test_parent_base))
		return CU_get_error();
	return 0;
}
