/*
 * mline: one line of mirrord's manifest (GET /v1/manifest, see
 * docs/PROTOCOL.md) decoded and checked: the client-side parser of what
 * the server lists.
 *
 * A line comes from the network, so nothing in it is trusted: the path
 * must pass path_check() (the root "" allowed), the type must be one
 * letter, numbers must be integers in range (a mode in 0..07777, a size in
 * 0..2^53), the mtime a valid [sec, nsec]. Optional members ("m", "s",
 * "mt", "l") may be missing; a member of the wrong type is an error.
 *
 * Pure, thread-safe.
 */
#ifndef MIRRORFS_MLINE_H
#define MIRRORFS_MLINE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct mline {
	char *path;   /* owned */
	char *target; /* owned; NULL unless "l" was given */
	char type;    /* 'f', 'd', 'l', 'o' or another letter (the caller decides) */
	uint32_t mode;
	uint64_t size;
	struct timespec mtime;
};

/* Decode line[0..len) (JSON, not necessarily NUL-terminated). Returns 1
 * and fills *out (caller releases with mline_release), 0 for an empty line
 * (nothing to take), -EPROTO for a malformed line, or -ENOMEM. On failure
 * *out is released. */
__attribute__((warn_unused_result))
int mline_parse(const char *line, size_t len, struct mline *out);

/* Free what mline_parse() put into l and zero it. Accepts NULL. */
void mline_release(struct mline *l);

#endif
