/*
 * fuzz_route: mirrord's route lookup (server/route.c) and the token header
 * parsing (server/auth.c) on arbitrary request lines.
 *
 * Input: METHOD '\n' URL ['\n' AUTHORIZATION-VALUE]. Checks that a route is
 * found only for its exact URL and method, that "allowed" is only given
 * for a known URL, and that the bearer parser returns a span inside the
 * value.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "hash.h"
#include "route.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return hash_init_lib() < 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	char *method = text, *url = strchr(text, '\n'), *hdr = NULL;
	if (url) {
		*url++ = '\0';
		if ((hdr = strchr(url, '\n')))
			*hdr++ = '\0';
	} else {
		url = text + size;
	}

	const char *allowed = (const char *)1;
	const struct route_info *r = route_lookup(url, method, &allowed);
	if (r && (strcmp(r->url, url) != 0 || strcmp(r->method, method) != 0 || allowed))
		abort();
	if (!r && allowed && (strcmp(allowed, "GET") != 0 && strcmp(allowed, "POST") != 0))
		abort();
	if (r && strcmp(route_name(r->route), r->name) != 0)
		abort();

	if (hdr) {
		const char *tok;
		size_t n;
		size_t len = strlen(hdr);
		if (auth_bearer_parse(hdr, len, &tok, &n) == 0 &&
		    (tok < hdr || tok + n > hdr + len || n == 0 || tok[0] == ' '))
			abort();
		struct auth a;
		auth_init_open(&a);
		if (!auth_check(&a, hdr))
			abort(); /* disabled auth lets everything through */
		a.enabled = 1;
		hash_buf("0123456789abcdef", 16, &a.digest);
		if (auth_check(&a, hdr) &&
		    !(auth_bearer_parse(hdr, len, &tok, &n) == 0 && n == 16 &&
		      memcmp(tok, "0123456789abcdef", 16) == 0))
			abort();
	}
	free(text);
	return 0;
}
