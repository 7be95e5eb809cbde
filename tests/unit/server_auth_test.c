/* Unit tests for server/auth (the token check) and server/route (the
 * route table). */
#include <CUnit/CUnit.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* No -Iserver in the Makefile: reach the server headers relatively. */
#include "../../server/auth.h"
#include "../../server/route.h"
#include "token.h"

static void test_bearer_parse(void)
{
	const char *tok;
	size_t n;
#define BP(s) auth_bearer_parse((s), strlen(s), &tok, &n)
	CU_ASSERT_EQUAL(BP("Bearer abc"), 0);
	CU_ASSERT_EQUAL(n, 3);
	CU_ASSERT_EQUAL(strncmp(tok, "abc", 3), 0);
	CU_ASSERT_EQUAL(BP("bearer   abc  "), 0);
	CU_ASSERT_EQUAL(n, 3);
	CU_ASSERT_EQUAL(BP("BEARER x"), 0);
	CU_ASSERT_EQUAL(BP("Bearer"), -EINVAL);
	CU_ASSERT_EQUAL(BP("Bearer "), -EINVAL);
	CU_ASSERT_EQUAL(BP("Bearer    "), -EINVAL);
	CU_ASSERT_EQUAL(BP("Bearerabc"), -EINVAL);
	CU_ASSERT_EQUAL(BP("Basic abc"), -EINVAL);
	CU_ASSERT_EQUAL(BP(""), -EINVAL);
	CU_ASSERT_EQUAL(BP("abc"), -EINVAL);
#undef BP
}

static void test_check(void)
{
	char dir[] = "/tmp/auth_test.XXXXXX", path[64], tok[TOKEN_MAX_LEN + 1], hdr[300], why[256];
	struct auth a;
	int created, loose;

	auth_init_open(&a);
	CU_ASSERT_EQUAL(auth_check(&a, NULL), 1);
	CU_ASSERT_EQUAL(auth_check(&a, "Bearer whatever"), 1);

	CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/tok", dir);
	CU_ASSERT_EQUAL(auth_init_file(&a, path, &created, &loose, why, sizeof(why)), 0);
	CU_ASSERT_EQUAL(created, 1);
	CU_ASSERT_EQUAL(a.enabled, 1);
	CU_ASSERT_EQUAL(token_read(path, tok, &loose), 0);
	snprintf(hdr, sizeof(hdr), "Bearer %s", tok);
	CU_ASSERT_EQUAL(auth_check(&a, hdr), 1);
	CU_ASSERT_EQUAL(auth_check(&a, NULL), 0);
	CU_ASSERT_EQUAL(auth_check(&a, ""), 0);
	CU_ASSERT_EQUAL(auth_check(&a, tok), 0); /* without the scheme */
	hdr[strlen(hdr) - 1] ^= 1;
	CU_ASSERT_EQUAL(auth_check(&a, hdr), 0); /* one bit off */
	snprintf(hdr, sizeof(hdr), "Bearer %s0", tok);
	CU_ASSERT_EQUAL(auth_check(&a, hdr), 0); /* a byte more */
	snprintf(hdr, sizeof(hdr), "Bearer %.*s", (int)strlen(tok) - 1, tok);
	CU_ASSERT_EQUAL(auth_check(&a, hdr), 0); /* a byte less */

	/* Loaded again: same token, not created. */
	struct auth b;
	CU_ASSERT_EQUAL(auth_init_file(&b, path, &created, &loose, why, sizeof(why)), 0);
	CU_ASSERT_EQUAL(created, 0);
	CU_ASSERT_EQUAL(memcmp(&a.digest, &b.digest, sizeof(a.digest)), 0);

	/* A file that is not a token file is refused, with its name. */
	FILE *f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs("short\n", f);
	fclose(f);
	CU_ASSERT_EQUAL(auth_init_file(&b, path, &created, &loose, why, sizeof(why)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(why, path));
	CU_ASSERT_EQUAL(b.enabled, 0);

	unlink(path);
	rmdir(dir);
}

static void test_routes(void)
{
	const char *allowed = "x";
	const struct route_info *r = route_lookup("/v1/op", "POST", &allowed);
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	CU_ASSERT_EQUAL(r->route, R_OP);
	CU_ASSERT_EQUAL(r->body_max, PROTO_OP_BODY_MAX);
	CU_ASSERT_PTR_NULL(allowed);

	CU_ASSERT_PTR_NULL(route_lookup("/v1/op", "GET", &allowed));
	CU_ASSERT_STRING_EQUAL(allowed, "POST");
	CU_ASSERT_PTR_NULL(route_lookup("/v1/op/", "POST", &allowed));
	CU_ASSERT_PTR_NULL(allowed);
	CU_ASSERT_PTR_NULL(route_lookup("/v1//op", "POST", &allowed));
	CU_ASSERT_PTR_NULL(route_lookup("/V1/OP", "POST", &allowed));
	CU_ASSERT_PTR_NULL(route_lookup("", "GET", &allowed));

	r = route_lookup("/metrics", "GET", &allowed);
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	CU_ASSERT_EQUAL(r->route, R_METRICS);
	r = route_lookup("/v1/chunks", "POST", &allowed);
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	CU_ASSERT_EQUAL(r->route, R_CHUNKS);
	CU_ASSERT_STRING_EQUAL(route_name(R_QUERY), "query");
	CU_ASSERT_STRING_EQUAL(route_name(R_NONE), "none");
}

int suite_server_auth(void)
{
	CU_pSuite s = CU_add_suite("server_auth", NULL, NULL);
	if (!s)
		return CU_get_error();
	if (!CU_add_test(s, "bearer parse", test_bearer_parse) ||
	    !CU_add_test(s, "check", test_check) || !CU_add_test(s, "routes", test_routes))
		return CU_get_error();
	return 0;
}
