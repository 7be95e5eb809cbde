#define _GNU_SOURCE
#include "path.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int path_check(const char *p, size_t len, int allow_root)
{
	if (!p)
		return -EINVAL;
	if (len == 0)
		return allow_root ? 0 : -EINVAL;
	if (len > PATH_MAX_LEN)
		return -ENAMETOOLONG;
	if (memchr(p, '\0', len))
		return -EINVAL;
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && p[i] != '/')
			continue;
		size_t clen = i - start;
		if (clen == 0)
			return -EINVAL; /* leading, trailing or double '/' */
		if (clen > PATH_COMPONENT_MAX)
			return -ENAMETOOLONG;
		if (p[start] == '.' && (clen == 1 || (clen == 2 && p[start + 1] == '.')))
			return -EINVAL;
		start = i + 1;
	}
	return 0;
}

int path_is_under(const char *p, const char *dir)
{
	size_t n = strlen(dir);
	if (n == 0)
		return 1;
	return strncmp(p, dir, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

char *path_rebase(const char *p, const char *from, const char *to)
{
	if (!path_is_under(p, from))
		return NULL;
	const char *rest = p + strlen(from);
	if (*rest == '/')
		rest++;
	return path_join(to, rest);
}

char *path_join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *r = malloc(la + lb + 2);
	if (!r)
		return NULL;
	memcpy(r, a, la);
	size_t n = la;
	if (la && lb)
		r[n++] = '/';
	memcpy(r + n, b, lb);
	r[n + lb] = '\0';
	return r;
}

size_t path_parent_len(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? (size_t)(s - p) : 0;
}

const char *path_base(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}
