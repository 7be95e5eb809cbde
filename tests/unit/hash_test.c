/* Unit tests for common/hash: BLAKE2b-256 vectors, streaming, hex. */
#include <CUnit/CUnit.h>
#include <errno.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hash.h"

/* BLAKE2b with a 32-byte digest, unkeyed (checked against Python's hashlib). */
static const char *const empty_hex =
	"0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8";
static const char *const abc_hex =
	"bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319";
static const char *const fox_hex =
	"01718cec35cd3d796dd00020e0bfecb473ad23457d063b75eff29c0ffa2e58a9";

static void expect_hash(const char *s, const char *want)
{
	struct hash_id id;
	char hex[HASH_HEX_LEN + 1];
	hash_buf(s, strlen(s), &id);
	hash_to_hex(&id, hex);
	CU_ASSERT_STRING_EQUAL(hex, want);
}

static void test_vectors(void)
{
	expect_hash("", empty_hex);
	expect_hash("abc", abc_hex);
	expect_hash("The quick brown fox jumps over the lazy dog", fox_hex);

	struct hash_id a, b;
	hash_buf(NULL, 0, &a); /* empty input needs no pointer */
	CU_ASSERT_EQUAL(hash_from_hex(empty_hex, HASH_HEX_LEN, &b), 0);
	CU_ASSERT(hash_equal(&a, &b));
}

static void test_hex(void)
{
	struct hash_id id, back;
	char hex[HASH_HEX_LEN + 1];
	for (int i = 0; i < HASH_LEN; i++)
		id.b[i] = (uint8_t)(i * 37 + 11);
	hash_to_hex(&id, hex);
	CU_ASSERT_EQUAL(strlen(hex), HASH_HEX_LEN);
	for (int i = 0; i < HASH_HEX_LEN; i++)
		CU_ASSERT(strchr("0123456789abcdef", hex[i]) != NULL);
	CU_ASSERT_EQUAL(hash_from_hex(hex, HASH_HEX_LEN, &back), 0);
	CU_ASSERT(memcmp(id.b, back.b, HASH_LEN) == 0);
	CU_ASSERT(hash_equal(&id, &back));

	/* upper case is accepted */
	char up[HASH_HEX_LEN + 1];
	for (int i = 0; i <= HASH_HEX_LEN; i++)
		up[i] = (hex[i] >= 'a' && hex[i] <= 'f') ? (char)(hex[i] - 'a' + 'A') : hex[i];
	memset(&back, 0, sizeof(back));
	CU_ASSERT_EQUAL(hash_from_hex(up, HASH_HEX_LEN, &back), 0);
	CU_ASSERT(hash_equal(&id, &back));

	back.b[HASH_LEN - 1] ^= 1;
	CU_ASSERT(!hash_equal(&id, &back));
}

static void test_bad_hex(void)
{
	struct hash_id id;
	char s[HASH_HEX_LEN + 8];

	memcpy(s, abc_hex, HASH_HEX_LEN + 1);
	CU_ASSERT_EQUAL(hash_from_hex(s, HASH_HEX_LEN - 1, &id), -EINVAL);
	CU_ASSERT_EQUAL(hash_from_hex(s, HASH_HEX_LEN - 2, &id), -EINVAL);
	CU_ASSERT_EQUAL(hash_from_hex(s, 0, &id), -EINVAL);
	memcpy(s + HASH_HEX_LEN, "00", 3);
	CU_ASSERT_EQUAL(hash_from_hex(s, HASH_HEX_LEN + 2, &id), -EINVAL);

	static const char bad_chars[] = { 'g', 'G', 'x', ' ', ':', '-', '\0', '\n', 'z' };
	for (size_t k = 0; k < sizeof(bad_chars); k++) {
		for (int pos = 0; pos < HASH_HEX_LEN; pos += 21) {
			memcpy(s, abc_hex, HASH_HEX_LEN + 1);
			s[pos] = bad_chars[k];
			CU_ASSERT_EQUAL(hash_from_hex(s, HASH_HEX_LEN, &id), -EINVAL);
		}
		memcpy(s, abc_hex, HASH_HEX_LEN + 1);
		s[HASH_HEX_LEN - 1] = bad_chars[k];
		CU_ASSERT_EQUAL(hash_from_hex(s, HASH_HEX_LEN, &id), -EINVAL);
	}
}

static void test_streaming(void)
{
	static uint8_t data[3000];
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < sizeof(data); i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		data[i] = (uint8_t)x;
	}
	struct hash_id one, st_id;
	hash_buf(data, sizeof(data), &one);

	static const size_t steps[] = { 1, 3, 64, 127, 128, 129, 1000, sizeof(data) };
	for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
		struct hash_state st;
		hash_start(&st);
		for (size_t off = 0; off < sizeof(data); off += steps[k]) {
			size_t n = sizeof(data) - off < steps[k] ? sizeof(data) - off : steps[k];
			hash_update(&st, data + off, n);
		}
		hash_final(&st, &st_id);
		CU_ASSERT(hash_equal(&one, &st_id));
	}

	/* empty updates change nothing; an empty stream is the empty hash */
	struct hash_state st;
	hash_start(&st);
	hash_update(&st, "ab", 2);
	hash_update(&st, "", 0);
	hash_update(&st, "c", 1);
	hash_final(&st, &st_id);
	char hex[HASH_HEX_LEN + 1];
	hash_to_hex(&st_id, hex);
	CU_ASSERT_STRING_EQUAL(hex, abc_hex);
	hash_start(&st);
	hash_final(&st, &st_id);
	hash_to_hex(&st_id, hex);
	CU_ASSERT_STRING_EQUAL(hex, empty_hex);
}

/* hash_init_lib() may have kept libsodium's portable BLAKE2b code instead
 * of the one sodium_init() picks: both must give the same ids. A child runs
 * sodium_init() (libsodium's pick) and hashes lengths around the 128-byte
 * block, up to 1 MiB; the parent hashes the same with what it kept. Where
 * the parent kept the pick, this compares the pick with itself. */
#define AGREE_MAX (1u << 20)
static const size_t agree_lens[] = { 0, 1, 127, 128, 129, 255, 256, 1000, 4096, 16385, 65536, AGREE_MAX };
#define AGREE_N (sizeof(agree_lens) / sizeof(agree_lens[0]))

static void agree_ids(const uint8_t *buf, struct hash_id *ids)
{
	for (size_t i = 0; i < AGREE_N; i++)
		hash_buf(buf, agree_lens[i], &ids[i]);
}

static void test_codes_agree(void)
{
	uint8_t *buf = malloc(AGREE_MAX);
	struct hash_id mine[AGREE_N], picked[AGREE_N];
	int fds[2];
	CU_ASSERT_FATAL(buf != NULL);
	for (size_t i = 0; i < AGREE_MAX; i++)
		buf[i] = (uint8_t)(i * 131 + (i >> 9));
	agree_ids(buf, mine);
	CU_ASSERT_FATAL(pipe(fds) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		close(fds[0]);
		if (sodium_init() < 0)
			_exit(2);
		agree_ids(buf, picked);
		_exit(write(fds[1], picked, sizeof(picked)) == (ssize_t)sizeof(picked) ? 0 : 1);
	}
	close(fds[1]);
	CU_ASSERT_FATAL(pid > 0);
	size_t got = 0;
	while (got < sizeof(picked)) {
		ssize_t n = read(fds[0], (uint8_t *)picked + got, sizeof(picked) - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fds[0]);
	int st = -1;
	waitpid(pid, &st, 0);
	CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CU_ASSERT_EQUAL_FATAL(got, sizeof(picked));
	for (size_t i = 0; i < AGREE_N; i++)
		CU_ASSERT(hash_equal(&mine[i], &picked[i]));
	free(buf);

	/* What was kept is said, and the random numbers work either way. */
	CU_ASSERT(strncmp(hash_impl_desc(), "BLAKE2b: ", 9) == 0);
	uint8_t r1[16], r2[16];
	randombytes_buf(r1, sizeof(r1));
	randombytes_buf(r2, sizeof(r2));
	CU_ASSERT(memcmp(r1, r2, sizeof(r1)) != 0);
}

int suite_hash(void)
{
	CU_pSuite s = CU_add_suite("hash", NULL, NULL);
	if (!s)
		return CU_get_error();
	if (!CU_add_test(s, "vectors", test_vectors) || !CU_add_test(s, "hex", test_hex) ||
	    !CU_add_test(s, "bad hex", test_bad_hex) ||
	    !CU_add_test(s, "streaming", test_streaming) ||
	    !CU_add_test(s, "both BLAKE2b codes agree", test_codes_agree))
		return CU_get_error();
	return 0;
}
