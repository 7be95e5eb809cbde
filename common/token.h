/*
 * token: the shared secret of mirrord and its clients (docs/SECURITY.md),
 * kept in a token file on both sides.
 *
 * A token file holds one line: the token, TOKEN_MIN_LEN..TOKEN_MAX_LEN
 * bytes of printable ASCII without spaces (so it can travel in an
 * Authorization header as is), optionally followed by "\n" or "\r\n".
 * Nothing else: a file with anything more is refused, so that a wrong file
 * (a key, a certificate) is never taken for a token. A token made here is
 * 64 lowercase hex chars from 32 random bytes (libsodium).
 *
 * Thread-safety: token_parse() is pure; the file functions are reentrant.
 * hash_init_lib() must have run (randomness).
 */
#ifndef MIRROR_TOKEN_H
#define MIRROR_TOKEN_H

#include <stddef.h>

#define TOKEN_MIN_LEN 16
#define TOKEN_MAX_LEN 256
#define TOKEN_NEW_LEN 64

/* The token in text[0..len): see above. Returns 0 and *tok_len (the token
 * is text[0..*tok_len)), or -EINVAL (empty, too short, too long, a byte
 * that is not printable ASCII, a space, more than one line). */
__attribute__((warn_unused_result))
int token_parse(const char *text, size_t len, size_t *tok_len);

/* Read the token file at path into out (NUL-terminated). *loose is set to
 * 1 if the file can be read by its group or by others (the caller warns).
 * Returns 0, or a negative errno: the open/read error (-ENOENT, -EACCES,
 * ...), -EINVAL (not a token file: see token_parse), -EFBIG (longer than a
 * token file can be). */
__attribute__((warn_unused_result))
int token_read(const char *path, char out[TOKEN_MAX_LEN + 1], int *loose);

/* Create the token file at path (which must not exist: O_EXCL, never
 * following a symlink) with mode 0600 and a fresh random token, durably
 * (fsync). The token goes to out. Returns 0, or a negative errno (-EEXIST
 * if it appeared meanwhile: read it instead); a half-written file is
 * removed. */
__attribute__((warn_unused_result))
int token_create(const char *path, char out[TOKEN_MAX_LEN + 1]);

#endif
