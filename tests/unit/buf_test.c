/* Unit tests for common/buf: caps, NUL termination, appendf, detach. */
#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

/* The invariant every operation must keep. */
static void check_inv(const struct buf *b)
{
	CU_ASSERT(b->len <= b->cap);
	if (b->data) {
		CU_ASSERT(b->len < b->alloc);
		CU_ASSERT(b->data[b->len] == '\0');
	} else {
		CU_ASSERT(b->len == 0 && b->alloc == 0);
	}
}

static void test_append(void)
{
	struct buf b;
	buf_init(&b, 0);
	check_inv(&b);
	CU_ASSERT(b.cap == SIZE_MAX / 2);
	CU_ASSERT_EQUAL(buf_append(&b, "hello", 5), 0);
	check_inv(&b);
	CU_ASSERT_EQUAL(buf_append(&b, ", world", 7), 0);
	check_inv(&b);
	CU_ASSERT_EQUAL(b.len, 12);
	CU_ASSERT_STRING_EQUAL(b.data, "hello, world");
	CU_ASSERT_EQUAL(buf_append(&b, NULL, 0), 0);
	CU_ASSERT_EQUAL(b.len, 12);

	/* binary data with NULs, across several reallocations */
	uint8_t bin[1000];
	for (size_t i = 0; i < sizeof(bin); i++)
		bin[i] = (uint8_t)(i * 7);
	buf_reset(&b);
	CU_ASSERT_EQUAL(b.len, 0);
	CU_ASSERT(b.data != NULL && b.data[0] == '\0');
	for (int i = 0; i < 10; i++)
		CU_ASSERT_EQUAL(buf_append(&b, bin, sizeof(bin)), 0);
	check_inv(&b);
	CU_ASSERT_EQUAL(b.len, 10 * sizeof(bin));
	CU_ASSERT(memcmp(b.data + 9 * sizeof(bin), bin, sizeof(bin)) == 0);
	buf_release(&b);
	check_inv(&b);
	CU_ASSERT_PTR_NULL(b.data);
	buf_release(NULL);
}

static void test_cap(void)
{
	struct buf b;
	buf_init(&b, 10);
	CU_ASSERT_EQUAL(buf_append(&b, "12345678", 8), 0);
	char *before = b.data;
	CU_ASSERT_EQUAL(buf_append(&b, "abc", 3), -EMSGSIZE);
	check_inv(&b);
	CU_ASSERT_EQUAL(b.len, 8);
	CU_ASSERT_STRING_EQUAL(b.data, "12345678");
	CU_ASSERT_PTR_EQUAL(b.data, before);
	CU_ASSERT_EQUAL(buf_append(&b, "ab", 2), 0); /* exactly the cap */
	CU_ASSERT_STRING_EQUAL(b.data, "12345678ab");
	CU_ASSERT_EQUAL(buf_append(&b, "", 0), 0);
	CU_ASSERT_EQUAL(buf_append(&b, "x", 1), -EMSGSIZE);
	CU_ASSERT_EQUAL(b.len, 10);
	CU_ASSERT_EQUAL(buf_reserve(&b, 1), -EMSGSIZE);
	CU_ASSERT_EQUAL(buf_reserve(&b, 0), 0);
	CU_ASSERT_EQUAL(buf_reserve(&b, SIZE_MAX), -EMSGSIZE);
	check_inv(&b);

	/* the cap survives release and detach */
	buf_release(&b);
	CU_ASSERT_EQUAL(b.cap, 10);
	CU_ASSERT_EQUAL(buf_append(&b, "12345678901", 11), -EMSGSIZE);
	CU_ASSERT_PTR_NULL(b.data);
	CU_ASSERT_EQUAL(buf_append(&b, "1234567890", 10), 0);
	free(buf_detach(&b, NULL));
	CU_ASSERT_EQUAL(b.cap, 10);
	CU_ASSERT_EQUAL(buf_append(&b, "12345678901", 11), -EMSGSIZE);
	buf_release(&b);
}

static void test_reserve(void)
{
	struct buf b;
	buf_init(&b, 0);
	CU_ASSERT_EQUAL(buf_reserve(&b, 5000), 0);
	CU_ASSERT(b.alloc >= 5001);
	CU_ASSERT_EQUAL(b.len, 0);
	char *p = b.data;
	for (int i = 0; i < 5000; i++)
		CU_ASSERT_EQUAL(buf_append(&b, "z", 1), 0);
	CU_ASSERT_PTR_EQUAL(b.data, p); /* reserved: no reallocation */
	check_inv(&b);
	buf_reset(&b);
	CU_ASSERT_PTR_EQUAL(b.data, p); /* reset keeps the allocation */
	buf_release(&b);
}

static void test_reserve_exact(void)
{
	struct buf b;
	buf_init(&b, 100);
	CU_ASSERT_EQUAL(buf_reserve_exact(&b, 101), -EMSGSIZE);
	CU_ASSERT_PTR_NULL(b.data);
	CU_ASSERT_EQUAL(buf_append(&b, "abc", 3), 0);
	CU_ASSERT_EQUAL(buf_reserve_exact(&b, 70), 0);
	CU_ASSERT_EQUAL(b.alloc, 74); /* len 3 + 70 + the NUL, not a power of two */
	CU_ASSERT_STRING_EQUAL(b.data, "abc");
	char *p = b.data;
	CU_ASSERT_EQUAL(buf_reserve_exact(&b, 10), 0); /* fits: unchanged */
	CU_ASSERT_EQUAL(b.alloc, 74);
	for (int i = 0; i < 70; i++)
		CU_ASSERT_EQUAL(buf_append(&b, "z", 1), 0);
	CU_ASSERT_PTR_EQUAL(b.data, p);
	CU_ASSERT_EQUAL(b.len, 73);
	CU_ASSERT_EQUAL(buf_append(&b, "y", 1), 0); /* past it: grows as usual */
	CU_ASSERT_EQUAL(b.len, 74);
	check_inv(&b);
	CU_ASSERT_EQUAL(buf_reserve_exact(&b, 27), -EMSGSIZE);
	CU_ASSERT_EQUAL(b.len, 74);
	buf_release(&b);
}

static void test_appendf(void)
{
	struct buf b;
	buf_init(&b, 0);
	CU_ASSERT_EQUAL(buf_appendf(&b, "%d-%s", 42, "x"), 0);
	CU_ASSERT_STRING_EQUAL(b.data, "42-x");
	CU_ASSERT_EQUAL(buf_appendf(&b, "%s", ""), 0);
	CU_ASSERT_EQUAL(b.len, 4);

	/* longer than the internal 256-byte fast path, at several lengths */
	static char big[5000];
	for (size_t n = 250; n < 270; n++) {
		memset(big, 'a' + (int)(n % 26), n);
		big[n] = '\0';
		buf_reset(&b);
		CU_ASSERT_EQUAL(buf_appendf(&b, "<%s>", big), 0);
		check_inv(&b);
		CU_ASSERT_EQUAL(b.len, n + 2);
		CU_ASSERT(b.data[0] == '<' && b.data[n + 1] == '>');
		CU_ASSERT(memcmp(b.data + 1, big, n) == 0);
	}
	memset(big, 'q', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	buf_reset(&b);
	CU_ASSERT_EQUAL(buf_append(&b, "pre:", 4), 0);
	CU_ASSERT_EQUAL(buf_appendf(&b, "%s|%05d", big, 7), 0);
	check_inv(&b);
	CU_ASSERT_EQUAL(b.len, 4 + sizeof(big) - 1 + 6);
	CU_ASSERT(memcmp(b.data, "pre:qqq", 7) == 0);
	CU_ASSERT_STRING_EQUAL(b.data + b.len - 6, "|00007");
	buf_release(&b);

	/* over the cap, both short and long: unchanged */
	buf_init(&b, 300);
	CU_ASSERT_EQUAL(buf_appendf(&b, "%s", "0123456789"), 0);
	memset(big, 'r', 295);
	big[295] = '\0';
	CU_ASSERT_EQUAL(buf_appendf(&b, "%s", big), -EMSGSIZE);
	CU_ASSERT_EQUAL(b.len, 10);
	CU_ASSERT_STRING_EQUAL(b.data, "0123456789");
	big[200] = '\0';
	CU_ASSERT_EQUAL(buf_appendf(&b, "%s", big), 0);
	CU_ASSERT_EQUAL(b.len, 210);
	CU_ASSERT_EQUAL(buf_appendf(&b, "%s", big), -EMSGSIZE);
	CU_ASSERT_EQUAL(b.len, 210);
	check_inv(&b);
	buf_release(&b);
}

static void test_detach(void)
{
	struct buf b;
	size_t len = 99;
	buf_init(&b, 0);

	char *e = buf_detach(&b, &len); /* never appended: a fresh "" */
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_EQUAL(len, 0);
	CU_ASSERT_STRING_EQUAL(e, "");
	free(e);

	CU_ASSERT_EQUAL(buf_append(&b, "data\0more", 9), 0);
	char *d = buf_detach(&b, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	CU_ASSERT_EQUAL(len, 9);
	CU_ASSERT(memcmp(d, "data\0more", 10) == 0); /* NUL-terminated too */
	CU_ASSERT_PTR_NULL(b.data);
	CU_ASSERT_EQUAL(b.len, 0);
	CU_ASSERT_EQUAL(b.alloc, 0);

	/* the buffer is reusable and independent of the detached bytes */
	CU_ASSERT_EQUAL(buf_append(&b, "new", 3), 0);
	CU_ASSERT_STRING_EQUAL(b.data, "new");
	CU_ASSERT(memcmp(d, "data", 4) == 0);
	free(d);

	buf_reset(&b); /* allocated but empty */
	d = buf_detach(&b, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	CU_ASSERT_STRING_EQUAL(d, "");
	free(d);
	buf_release(&b);
}

int suite_buf(void)
{
	CU_pSuite s = CU_add_suite("buf", NULL, NULL);
	if (!s)
		return CU_get_error();
	if (!CU_add_test(s, "append", test_append) || !CU_add_test(s, "cap", test_cap) ||
	    !CU_add_test(s, "reserve", test_reserve) ||
	    !CU_add_test(s, "reserve_exact", test_reserve_exact) || !CU_add_test(s, "appendf", test_appendf) ||
	    !CU_add_test(s, "detach", test_detach))
		return CU_get_error();
	return 0;
}
