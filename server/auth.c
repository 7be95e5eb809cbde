#define _GNU_SOURCE
#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "token.h"

void auth_init_open(struct auth *a)
{
	memset(a, 0, sizeof(*a));
}

int auth_init_file(struct auth *a, const char *path, int *created, int *loose, char *why,
		   size_t why_len)
{
	char token[TOKEN_MAX_LEN + 1];
	int r;

	memset(a, 0, sizeof(*a));
	*created = 0;
	*loose = 0;
	r = token_read(path, token, loose);
	if (r == -ENOENT) {
		r = token_create(path, token);
		if (r == 0)
			*created = 1;
		else if (r == -EEXIST) /* made meanwhile by someone else: use theirs */
			r = token_read(path, token, loose);
	}
	if (r < 0) {
		snprintf(why, why_len, "token file %s: %s", path,
			 r == -EINVAL ? "not a token file (one line of 16 to 256 printable characters)" :
			 r == -EFBIG  ? "too long for a token file" :
					strerror(-r));
		goto out;
	}
	hash_buf(token, strlen(token), &a->digest);
	a->enabled = 1;
out:
	sodium_memzero(token, sizeof(token));
	return r;
}

int auth_bearer_parse(const char *value, size_t len, const char **tok, size_t *tok_len)
{
	static const char scheme[] = "Bearer";
	size_t i = sizeof(scheme) - 1;

	if (len <= i || strncasecmp(value, scheme, i) != 0 || value[i] != ' ')
		return -EINVAL;
	while (i < len && value[i] == ' ')
		i++;
	size_t end = len;
	while (end > i && value[end - 1] == ' ')
		end--;
	if (end == i)
		return -EINVAL;
	*tok = value + i;
	*tok_len = end - i;
	return 0;
}

int auth_check(const struct auth *a, const char *value)
{
	const char *tok;
	size_t len;
	struct hash_id got;

	if (!a->enabled)
		return 1;
	if (!value || auth_bearer_parse(value, strlen(value), &tok, &len) < 0)
		return 0;
	/* Hashing first makes the comparison fixed-size whatever was sent. */
	hash_buf(tok, len, &got);
	return sodium_memcmp(got.b, a->digest.b, sizeof(got.b)) == 0;
}
