/*
 * fuzz_path: path_check() on arbitrary bytes, against an independent
 * statement of the rules, and the prefix helpers on the paths it accepts.
 *
 * Input: one flag byte (allow_root), then the path (may contain NUL).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "path.h"

/* The rules of path.h, written the naive way. */
static int naive_ok(const char *p, size_t len, int allow_root)
{
	if (len == 0)
		return allow_root;
	if (len > PATH_MAX_LEN || memchr(p, '\0', len))
		return 0;
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && p[i] != '/')
			continue;
		size_t n = i - start;
		if (n == 0 || n > PATH_COMPONENT_MAX || (n == 1 && p[start] == '.') ||
		    (n == 2 && p[start] == '.' && p[start + 1] == '.'))
			return 0;
		start = i + 1;
	}
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int allow_root = data[0] & 1;
	const char *p = (const char *)data + 1;
	size_t len = size - 1;
	int r = path_check(p, len, allow_root);
	if ((r == 0) != naive_ok(p, len, allow_root))
		abort();
	if (r != 0 || len == 0)
		return 0;

	char *s = strndup(p, len);
	if (!s)
		return 0;
	/* Split into a prefix and the rest at the middle '/', if any. */
	const char *mid = memchr(s, '/', len / 2 + 1);
	size_t plen = mid ? (size_t)(mid - s) : len;
	char *dir = strndup(s, plen);
	if (dir) {
		if (!path_is_under(s, dir) || !path_is_under(s, ""))
			abort();
		/* A longer prefix can push a path over PATH_MAX_LEN: then
		 * path_check refuses it (mirrord would answer 400), which is
		 * right; under the limit it must pass. */
		char *moved = path_rebase(s, dir, "x/y");
		if (!moved || strncmp(moved, "x/y", 3) != 0 || strcmp(moved + 3, s + plen) != 0 ||
		    (path_check(moved, strlen(moved), 0) != 0) != (strlen(moved) > PATH_MAX_LEN))
			abort();
		free(moved);
		size_t parent = path_parent_len(s);
		const char *base = path_base(s);
		if (parent > len || base < s || base > s + len || (parent && s[parent] != '/'))
			abort();
		char *joined = path_join(dir, s + plen + (mid ? 1 : 0));
		if (mid && (!joined || strcmp(joined, s) != 0))
			abort();
		free(joined);
	}
	free(dir);
	free(s);
	return 0;
}
