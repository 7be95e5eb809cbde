/*
 * path: validation and manipulation of mirror-relative paths.
 *
 * A mirror path is relative to the mirrored root: '/'-separated components,
 * no leading or trailing '/', no empty, "." or ".." component, no NUL, each
 * component at most PATH_COMPONENT_MAX bytes, the whole at most PATH_MAX_LEN
 * bytes. "" names the root. Every path read from the network goes through
 * path_check() before use. Pure functions, thread-safe.
 */
#ifndef MIRROR_PATH_H
#define MIRROR_PATH_H

#include <stddef.h>

#define PATH_COMPONENT_MAX 255
#define PATH_MAX_LEN 4095

/* Check a path of len bytes (which must not contain NUL: a NUL inside
 * len is an error). allow_root: accept "". Returns 0, -EINVAL (bad form),
 * -ENAMETOOLONG (component or total too long). */
__attribute__((warn_unused_result))
int path_check(const char *p, size_t len, int allow_root);

/* 1 if p equals dir or lies beneath it ("a" is under "a", "a/b" is under
 * "a", "ab" is not). dir "" contains everything. */
int path_is_under(const char *p, const char *dir);

/* If p is under from, return a new path with that prefix replaced by to
 * (caller frees with free()); otherwise NULL. NULL also on ENOMEM. */
char *path_rebase(const char *p, const char *from, const char *to);

/* Join a and b with '/' (either may be ""). Caller frees. NULL on ENOMEM. */
char *path_join(const char *a, const char *b);

/* Length of the parent part of p ("a/b/c" -> 3, "c" -> 0). */
size_t path_parent_len(const char *p);

/* Pointer to the last component of p (inside p). */
const char *path_base(const char *p);

#endif
