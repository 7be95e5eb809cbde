/* Unit tests for common/token: the token file's format, reading, creating. */
#include <CUnit/CUnit.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "token.h"

static int parse(const char *s, size_t *n)
{
	return token_parse(s, strlen(s), n);
}

static void test_parse(void)
{
	size_t n = 0;
	CU_ASSERT_EQUAL(parse("0123456789abcdef", &n), 0);
	CU_ASSERT_EQUAL(n, 16);
	CU_ASSERT_EQUAL(parse("0123456789abcdef\n", &n), 0);
	CU_ASSERT_EQUAL(n, 16);
	CU_ASSERT_EQUAL(parse("0123456789abcdef\r\n", &n), 0);
	CU_ASSERT_EQUAL(n, 16);
	CU_ASSERT_EQUAL(parse("A-b_c.d~e+f/g=h!", &n), 0);

	CU_ASSERT_EQUAL(parse("", &n), -EINVAL);
	CU_ASSERT_EQUAL(parse("\n", &n), -EINVAL);
	CU_ASSERT_EQUAL(parse("0123456789abcde", &n), -EINVAL);       /* 15 */
	CU_ASSERT_EQUAL(parse("0123456789 abcdef", &n), -EINVAL);     /* space */
	CU_ASSERT_EQUAL(parse("0123456789abcdef\n\n", &n), -EINVAL);  /* two lines */
	CU_ASSERT_EQUAL(parse("0123456789abcdef\nX", &n), -EINVAL);
	CU_ASSERT_EQUAL(parse("0123456789abcdef\r", &n), -EINVAL);    /* CR alone */
	CU_ASSERT_EQUAL(parse("0123456789abcde\x7f", &n), -EINVAL);
	CU_ASSERT_EQUAL(parse("0123456789abcde\xc3\xa9", &n), -EINVAL);
	CU_ASSERT_EQUAL(token_parse("0123456789abcdef\0", 17, &n), -EINVAL);

	char big[TOKEN_MAX_LEN + 2];
	memset(big, 'x', sizeof(big));
	CU_ASSERT_EQUAL(token_parse(big, TOKEN_MAX_LEN, &n), 0);
	CU_ASSERT_EQUAL(token_parse(big, TOKEN_MAX_LEN + 1, &n), -EINVAL);
}

static void test_files(void)
{
	char dir[] = "/tmp/token_test.XXXXXX", path[64], tok[TOKEN_MAX_LEN + 1], again[TOKEN_MAX_LEN + 1];
	struct stat st;
	int loose = -1;

	CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/tok", dir);
	CU_ASSERT_EQUAL(token_read(path, tok, &loose), -ENOENT);

	mode_t old = umask(0); /* the file must be 0600 whatever the umask */
	CU_ASSERT_EQUAL(token_create(path, tok), 0);
	umask(old);
	CU_ASSERT_EQUAL(strlen(tok), TOKEN_NEW_LEN);
	CU_ASSERT_EQUAL(strspn(tok, "0123456789abcdef"), TOKEN_NEW_LEN);
	CU_ASSERT_EQUAL(stat(path, &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 07777, 0600);
	CU_ASSERT_EQUAL(st.st_size, TOKEN_NEW_LEN + 1);
	CU_ASSERT_EQUAL(token_create(path, again), -EEXIST); /* never overwritten */

	CU_ASSERT_EQUAL(token_read(path, again, &loose), 0);
	CU_ASSERT_STRING_EQUAL(again, tok);
	CU_ASSERT_EQUAL(loose, 0);
	chmod(path, 0644);
	CU_ASSERT_EQUAL(token_read(path, again, &loose), 0);
	CU_ASSERT_EQUAL(loose, 1);

	/* Two fresh tokens differ. */
	char path2[64];
	snprintf(path2, sizeof(path2), "%s/tok2", dir);
	CU_ASSERT_EQUAL(token_create(path2, again), 0);
	CU_ASSERT_STRING_NOT_EQUAL(again, tok);

	/* Not a token file: a PEM key, a folder, something huge. */
	FILE *f = fopen(path2, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n", f);
	fclose(f);
	CU_ASSERT_EQUAL(token_read(path2, again, &loose), -EINVAL);
	CU_ASSERT_EQUAL(token_read(dir, again, &loose), -EINVAL);
	f = fopen(path2, "w");
	for (int i = 0; i < 100; i++)
		fputs("0123456789abcdef", f);
	fclose(f);
	CU_ASSERT_EQUAL(token_read(path2, again, &loose), -EFBIG);

	/* A symlink in the new file's place is not followed. */
	char link[64];
	snprintf(link, sizeof(link), "%s/link", dir);
	CU_ASSERT_EQUAL(symlink(path2, link), 0);
	CU_ASSERT_EQUAL(token_create(link, again), -EEXIST);

	unlink(link);
	unlink(path2);
	unlink(path);
	rmdir(dir);
}

int suite_token(void)
{
	CU_pSuite s = CU_add_suite("token", NULL, NULL);
	if (!s)
		return CU_get_error();
	if (!CU_add_test(s, "parse", test_parse) || !CU_add_test(s, "files", test_files))
		return CU_get_error();
	return 0;
}
