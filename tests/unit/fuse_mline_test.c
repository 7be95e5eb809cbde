/* Unit tests for fuse/mline: decoding the server's manifest lines. */
#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../../fuse/mline.h"

static int parse(const char *s, struct mline *l)
{
	return mline_parse(s, strlen(s), l);
}

static void test_good(void)
{
	struct mline l;
	CU_ASSERT_EQUAL(parse("{\"p\":\"a/b\",\"t\":\"f\",\"m\":420,\"s\":1234,\"mt\":[1700000000,5]}", &l), 1);
	CU_ASSERT_STRING_EQUAL(l.path, "a/b");
	CU_ASSERT_EQUAL(l.type, 'f');
	CU_ASSERT_EQUAL(l.mode, 0644);
	CU_ASSERT_EQUAL(l.size, 1234);
	CU_ASSERT_EQUAL(l.mtime.tv_sec, 1700000000);
	CU_ASSERT_EQUAL(l.mtime.tv_nsec, 5);
	CU_ASSERT_PTR_NULL(l.target);
	mline_release(&l);
	CU_ASSERT_EQUAL(parse("{\"p\":\"\",\"t\":\"d\"}", &l), 1);
	CU_ASSERT_STRING_EQUAL(l.path, "");
	mline_release(&l);
	CU_ASSERT_EQUAL(parse("{\"p\":\"l\",\"t\":\"l\",\"l\":\"../x\"}", &l), 1);
	CU_ASSERT_STRING_EQUAL(l.target, "../x");
	mline_release(&l);
	CU_ASSERT_EQUAL(mline_parse("", 0, &l), 0);
	mline_release(NULL);
}

static void test_bad(void)
{
	static const char *bad[] = {
		"{", "[]", "null", "\"p\"", "{\"t\":\"f\"}", "{\"p\":\"a\"}",
		"{\"p\":\"a\",\"t\":\"ff\"}", "{\"p\":\"a\",\"t\":\"\"}",
		"{\"p\":\"../a\",\"t\":\"f\"}", "{\"p\":\"/a\",\"t\":\"f\"}",
		"{\"p\":\"a//b\",\"t\":\"f\"}", "{\"p\":1,\"t\":\"f\"}",
		"{\"p\":\"a\",\"t\":\"f\",\"m\":-1}", "{\"p\":\"a\",\"t\":\"f\",\"m\":4096}",
		"{\"p\":\"a\",\"t\":\"f\",\"m\":1.5}", "{\"p\":\"a\",\"t\":\"f\",\"m\":\"420\"}",
		"{\"p\":\"a\",\"t\":\"f\",\"s\":-1}", "{\"p\":\"a\",\"t\":\"f\",\"s\":1e300}",
		"{\"p\":\"a\",\"t\":\"f\",\"mt\":[1]}", "{\"p\":\"a\",\"t\":\"f\",\"mt\":[1,1e9]}",
		"{\"p\":\"a\",\"t\":\"l\",\"l\":5}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mline l;
		int r = parse(bad[i], &l);
		CU_ASSERT_EQUAL(r, -EPROTO);
		if (r != -EPROTO)
			fprintf(stderr, "accepted: %s\n", bad[i]);
		CU_ASSERT_PTR_NULL(l.path);
	}
}

int suite_fuse_mline(void)
{
	CU_pSuite s = CU_add_suite("fuse_mline", NULL, NULL);
	if (!s)
		return CU_get_error();
	if (!CU_add_test(s, "good", test_good) || !CU_add_test(s, "bad", test_bad))
		return CU_get_error();
	return 0;
}
