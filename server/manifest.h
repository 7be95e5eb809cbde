/*
 * manifest: the streamed listing of GET /v1/manifest (docs/PROTOCOL.md): one
 * NDJSON line per entry of a subtree of DIR, pre-order (a folder before
 * its content), the subtree root first.
 *
 * Invariants:
 * - Bounded memory whatever the tree: the walk is iterative, keeps one open
 *   folder per level of the current path (at most PATH_MAX_LEN / 2 levels)
 *   and produces entries one at a time as the HTTP layer asks for them.
 * - Never follows a symlink: the subtree root is resolved like every op
 *   (resolve.h), folders are opened O_NOFOLLOW, entries lstat'ed.
 * - Every line is at most PROTO_MANIFEST_LINE_MAX bytes. An entry that
 *   cannot be expressed (path over PATH_MAX_LEN, line too long) is left out
 *   and logged; so is an unreadable folder's content.
 *
 * Thread-safety: a walk belongs to one thread at a time.
 */
#ifndef MIRRORD_MANIFEST_H
#define MIRRORD_MANIFEST_H

#include "buf.h"

struct manifest;

/* Start a walk of sub (a checked mirror path, "" = the root) beneath
 * rootfd (borrowed, must outlive the walk). A sub that is missing or not a
 * folder gives an empty walk. Returns 0 and *out (caller frees with
 * manifest_free) or a negative errno. */
__attribute__((warn_unused_result))
int manifest_open(int rootfd, const char *sub, struct manifest **out);

/* Append the next line (with its '\n') to line. Returns 1 (a line was
 * added), 0 (the walk is over) or a negative errno (the walk cannot go on;
 * the listing must be reported as failed, not as complete). */
__attribute__((warn_unused_result))
int manifest_next(struct manifest *m, struct buf *line);

/* Close every folder and free the walk. Accepts NULL. */
void manifest_free(struct manifest *m);

#endif
