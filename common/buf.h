/*
 * buf: a growable byte buffer with a hard cap (after git's strbuf and curl's
 * dynbuf).
 *
 * Lifecycle: buf_init() -> buf_append*() ... -> buf_release() (or
 * buf_detach() to take the bytes). The contents are always NUL-terminated
 * one byte past len, so text can be used as a C string. Appending past the cap
 * fails with -EMSGSIZE and leaves the buffer unchanged: every buffer filled
 * from the network has a cap. Not thread-safe: one owner at a time.
 */
#ifndef MIRROR_BUF_H
#define MIRROR_BUF_H

#include <stddef.h>

struct buf {
	char *data;  /* owned; NULL until the first append */
	size_t len;
	size_t alloc;
	size_t cap;  /* max len; 0 means SIZE_MAX/2 */
};

void buf_init(struct buf *b, size_t cap);

/* Free the bytes; b is re-initialised with the same cap. Accepts NULL. */
void buf_release(struct buf *b);

/* May reallocate. Returns 0, -EMSGSIZE (over cap) or -ENOMEM. */
__attribute__((warn_unused_result))
int buf_append(struct buf *b, const void *data, size_t len);

__attribute__((warn_unused_result))
int buf_appendf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Make sure len + extra bytes fit. Returns as buf_append. */
__attribute__((warn_unused_result))
int buf_reserve(struct buf *b, size_t extra);

/* As buf_reserve(), but an allocation it grows holds len + extra bytes and
 * no more (buf_reserve() doubles: a 2.1 MiB body would take 4 MiB). For a
 * buffer whose largest size is known before it is filled. */
__attribute__((warn_unused_result))
int buf_reserve_exact(struct buf *b, size_t extra);

/* Drop the contents, keep the allocation. Cannot fail. */
void buf_reset(struct buf *b);

/* Take the bytes (caller frees with free()); b is left empty. Never NULL:
 * an empty buffer gives a fresh "" (NULL only if that malloc fails). */
char *buf_detach(struct buf *b, size_t *len);

#endif
