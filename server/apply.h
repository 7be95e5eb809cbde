/*
 * apply: the operations of docs/PROTOCOL.md (POST /v1/op) applied to the
 * mirrored folder DIR.
 *
 * Invariants:
 * - Every path is resolved beneath DIR without following any symlink
 *   (resolve.h); final components are handled with *at() calls and
 *   AT_SYMLINK_NOFOLLOW / O_NOFOLLOW. A change outside DIR is impossible.
 * - Every op is atomic as seen from DIR: new objects (files, symlinks,
 *   folders) are built in <state>/tmp and renamed into place; replaced or
 *   deleted objects are renamed (or exchanged, RENAME_EXCHANGE) out into
 *   <state>/tmp and removed from there afterwards.
 * - Every op that returns 0 is durable: file data is fsynced before the
 *   rename, the changed folders are fsynced after it.
 * - Explicit modes and mtimes: fchmod/utimensat, so the umask changes
 *   nothing, and the mtime is set last on each object (a chmod never
 *   changes an mtime). pmtime/pmtime2 (the client's parent folder mtimes)
 *   are set after the change inside that folder.
 *
 * Concurrency: building a file (fetching, verifying and writing chunks,
 * fsync) runs in parallel in the caller's threads. Every change of the
 * namespace (renames into place, unlinks, folder lifts, pmtimes, the replay
 * record of renames) happens under ns_lock, which makes each op's namespace
 * step atomic with respect to the others and keeps two lifts of one folder
 * from interleaving. Lock order: ns_lock, then the state db's own lock.
 */
#ifndef MIRRORD_APPLY_H
#define MIRRORD_APPLY_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"
#include "state.h"
#include "store.h"
#include "tmpdir.h"

struct apply_ctx {
	int rootfd;           /* borrowed O_RDONLY|O_DIRECTORY fd of DIR */
	struct tmpdir *tmp;   /* borrowed */
	struct store *store;  /* borrowed */
	struct state *state;  /* borrowed; NULL: no chunk index, no replay check */
	int lift;             /* lift read-only folders (mirrord is not root) */
	pthread_mutex_t ns_lock;
};

/* Set up ctx with borrowed handles that must outlive it. lift: see
 * resolve.h (pass geteuid() != 0). Returns 0 or a negative errno. */
__attribute__((warn_unused_result))
int apply_init(struct apply_ctx *ctx, int rootfd, struct tmpdir *tmp, struct store *store,
	       struct state *state, int lift);

/* Release what apply_init() set up. Accepts NULL. */
void apply_release(struct apply_ctx *ctx);

/* Chunks that came with an op and were verified by the caller (a
 * bundle's, POST /v1/bundle): used before the store and the index, without
 * a second hash, and never written to the store. */
struct apply_inline {
	/* The len bytes of chunk id, or NULL. Borrowed. */
	const uint8_t *(*get)(void *arg, const struct hash_id *id, uint32_t len);
	void *arg;
};

/* Who sent an op, for replay detection (X-Mirror-Client, X-Mirror-Seq),
 * and what came with it. */
struct apply_origin {
	char client[33]; /* 32 hex chars + NUL, "" when unknown */
	uint64_t seq;
	int has_seq;
	const struct apply_inline *inl; /* borrowed, may be NULL */
};

struct apply_result {
	int replayed;    /* the op was a replay and was not applied again */
	size_t *missing; /* file op: indexes of unavailable chunks (owned) */
	size_t nmissing;
};

/* Returned by apply_op() when a file op lacks chunks (res->missing). */
#define APPLY_MISSING 1

/* Signatures (common/rsig.h) of the regular file at the mirror path path,
 * over nr ranges [off[i], off[i] + len[i]), in blocks of block bytes: for
 * each range, the entries of its whole blocks (fewer where the file ends
 * first), one range after the other in out (the caller's: room for
 * sum(len[i] / block) entries); cnt[i] gets the number of range i. The
 * client asks for them to find old blocks in a changed chunk (moves).
 * Returns 0, -ENOENT (no regular file there), -ENOMEM or -EIO. */
__attribute__((warn_unused_result))
int apply_signatures(struct apply_ctx *ctx, const char *path, uint32_t block, const uint64_t *off,
		     const uint64_t *len, size_t nr, uint8_t *out, size_t *cnt);

/* Apply op. origin may be NULL. Fills *res (caller releases with
 * apply_result_release(), also on failure). Returns 0, APPLY_MISSING, or
 * a negative errno: -ENOENT (rename/meta: source missing or of another
 * type), -EEXIST (rename noreplace onto something), the filesystem's error
 * otherwise (-ENOSPC, -EACCES, ...). Nothing half-done stays visible. */
__attribute__((warn_unused_result))
int apply_op(struct apply_ctx *ctx, const struct proto_op *op, const struct apply_origin *origin,
	     struct apply_result *res);

/* One op of apply_many(). */
struct apply_item {
	const struct proto_op *op;  /* borrowed */
	struct apply_origin origin;
	struct apply_result res;    /* filled; the caller releases it */
	int r;                      /* what apply_op() would return */
};

/* Apply items[0..n) in order, each with the outcome apply_op() would give
 * it. Consecutive file ops (whole lists, not deltas) share their journal
 * commits: all their files are written, then fsynced, placed, and their
 * folders fsynced, before any counts as applied. Runs of deletes, and of
 * folders and symlinks, likewise: all done, then fsynced. In each run an
 * inode is fsynced once, however many of its ops changed it; a run holds
 * at most 128 ops (each keeps a descriptor open until the fsyncs).
 * Cannot fail as a whole. */
void apply_many(struct apply_ctx *ctx, struct apply_item *items, size_t n);

/* Free what apply_op() put into res. Accepts NULL. */
void apply_result_release(struct apply_result *res);

#endif
