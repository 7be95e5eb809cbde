/*
 * auth: mirrord's check of the shared token (docs/SECURITY.md) on every
 * request.
 *
 * Invariants:
 * - mirrord never keeps the token itself after start: only its BLAKE2b-256
 *   digest. A request's credential is hashed the same way and the two
 *   fixed-size digests are compared with sodium_memcmp(), so the time a
 *   check takes says nothing about how much of a guess was right (nor
 *   about the token's length).
 * - A disabled auth (no --token-file: only allowed on a loopback address,
 *   see main.c) lets every request through.
 *
 * Thread-safety: struct auth is frozen after auth_init(); auth_check() and
 * auth_bearer_parse() may be called from any thread.
 */
#ifndef MIRRORD_AUTH_H
#define MIRRORD_AUTH_H

#include <stddef.h>

#include "hash.h"

struct auth {
	int enabled;           /* 0: no token, every request passes */
	struct hash_id digest; /* BLAKE2b-256 of the token */
};

/* No token: every request passes. Cannot fail. */
void auth_init_open(struct auth *a);

/* Use the token in the file at path, creating the file (mode 0600, a fresh
 * random token) if it does not exist; *created says which. On failure
 * writes a lowercase reason naming the file to why and returns a negative
 * errno. A file readable by group or others is accepted, with *loose set
 * (the caller warns). */
__attribute__((warn_unused_result))
int auth_init_file(struct auth *a, const char *path, int *created, int *loose, char *why,
		   size_t why_len);

/* The credential of an Authorization header value "Bearer <token>" (the
 * scheme in any case, then one or more spaces; trailing spaces ignored).
 * Returns 0 with the token's span in value, or -EINVAL. Pure. */
__attribute__((warn_unused_result))
int auth_bearer_parse(const char *value, size_t len, const char **tok, size_t *tok_len);

/* 1 if the Authorization header value (NULL: none was sent) carries the
 * token, or auth is disabled; 0 otherwise. */
int auth_check(const struct auth *a, const char *value);

#endif
