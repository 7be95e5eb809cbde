/*
 * proto: the operations of docs/PROTOCOL.md as C values, their JSON form,
 * and the one mapping between errno values, their names and HTTP statuses.
 *
 * proto_op_to_json() is the client's encoder, proto_op_from_json() the
 * server's decoder: it checks every field (types, ranges, paths via
 * path_check()) so that a decoded op is safe to apply. Pure, thread-safe.
 */
#ifndef MIRROR_PROTO_H
#define MIRROR_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "hash.h"
#include "rsig.h"

#define PROTO_VERSION 1
#define PROTO_OP_BODY_MAX (64u * 1024 * 1024)
#define PROTO_CHUNKS_BODY_MAX (256u * 1024 * 1024)
#define PROTO_QUERY_MAX_IDS 65536
#define PROTO_FILE_MAX_CHUNKS (1u << 22) /* 4 Mi chunks: 1 TiB at 256 KiB */
#define PROTO_JSON_DEPTH_MAX 8
#define PROTO_MANIFEST_LINE_MAX 8192

enum proto_kind {
	OP_FILE = 1,
	OP_MKDIR,
	OP_SYMLINK,
	OP_DELETE,
	OP_META,
	OP_RENAME,
};

enum proto_rename_flags { RENAME_F_NONE = 0, RENAME_F_NOREPLACE, RENAME_F_EXCHANGE };

struct proto_chunk {
	struct hash_id id;
	uint32_t len;
	/* 0, or k + 1: the chunk is the one in frame k of the same bundle
	 * (bundles with "refs", docs/PROTOCOL.md). The encoder (PROTO_REFS)
	 * then writes [k, len] instead of the id; the decoder (PROTO_REFS)
	 * leaves id zero until proto_op_resolve_refs() fills it in. */
	uint32_t ref;
};

/* Frames a bundle with refs may hold (each ref names one). */
#define PROTO_BUNDLE_MAX_FRAMES 65536u
/* Flag of the encoder and decoder: chunk refs ([k, len]) allowed. */
#define PROTO_REFS 1u

/* One change to a base chunk list: at position start (in the base list),
 * delete del entries and insert the n chunks. */
struct proto_edit {
	uint32_t start, del;
	struct proto_chunk *chunks;
	size_t n;
};

#define PROTO_MAX_EDITS 1024

/* A file op's patch: bytes of the new version at off. A file op with
 * "patch" (patched set, maybe no patches) lets mirrord build a chunk it
 * lacks from its current file at the op's path, the same bytes at the
 * same offset with the patches laid over them, if the result has the
 * chunk's id (docs/PROTOCOL.md). */
struct proto_patch {
	uint64_t off;
	uint32_t len;
	uint8_t *data; /* len bytes; owned as the op's strings are */
};

#define PROTO_MAX_PATCHES 1024
#define PROTO_PATCH_BYTES_MAX (1024u * 1024) /* all of an op's patches */
/* A file op's moves ("move": [[off, len, src], ...], struct rsig_move):
 * bytes [off, off + len) of the new version are the bytes at src of the
 * server's file the op is a delta against (base_path; the op's own path
 * without one). They serve, with the patches, to build a chunk mirrord
 * lacks (an insertion shifts bytes: a patch cannot say that). */
#define PROTO_MAX_MOVES 4096
/* A stage's name: 16 random bytes, 32 hex digits on the wire. */
#define PROTO_STAGE_LEN 16

/* One operation. Strings are owned by the op (proto_op_release frees them)
 * when it comes from proto_op_from_json(); a client may point them at its own
 * strings and never call release. */
struct proto_op {
	enum proto_kind kind;
	char *path;        /* all ops; "from" for rename */
	char *path2;       /* rename: "to" */
	char *target;      /* symlink target */
	char type;         /* meta: 'f', 'd' or 'l' */
	uint32_t mode;     /* permission bits, & 07777 */
	struct timespec mtime;
	int has_pmtime, has_pmtime2;
	struct timespec pmtime, pmtime2;
	enum proto_rename_flags rflags;
	uint64_t size;                /* file */
	struct proto_chunk *chunks;   /* file; owned as the strings are */
	size_t nchunks;
	/* file, as a delta (then chunks is NULL): the list of the server's file
	 * base_path, which must have digest base_digest, changed by edits. */
	char *base_path;
	struct hash_id base_digest;
	struct proto_edit *edits;
	size_t nedits;
	/* file: sorted, disjoint, within size; at most PROTO_MAX_PATCHES,
	 * PROTO_PATCH_BYTES_MAX bytes in all. */
	int patched;
	struct proto_patch *patches;
	size_t npatches;
	/* file: sorted, disjoint, within size; at most PROTO_MAX_MOVES. Any
	 * move sets patched. Owned as the strings are. */
	struct rsig_move *moves;
	size_t nmoves;
	/* file, optional ("stage": 32 hex): the stage the client uploaded this
	 * version's chunks to, each at its offset (POST /v1/chunks with
	 * X-Mirror-Stage): mirrord publishes that file instead of writing a
	 * new one. */
	int has_stage;
	uint8_t stage[PROTO_STAGE_LEN];
};

/* Build the JSON object of op. Returns a new cJSON tree (caller deletes with
 * cJSON_Delete) or NULL on ENOMEM. Chunks go by id: refs are written only
 * by proto_op_to_json_flags(op, PROTO_REFS), for a bundle with refs. */
cJSON *proto_op_to_json(const struct proto_op *op);
cJSON *proto_op_to_json_flags(const struct proto_op *op, unsigned flags);

/* The JSON text of op as proto_op_to_json_flags() would print it, in a new
 * string (caller frees; NULL on ENOMEM). A file's chunk list is written
 * straight into the text: a tree of a 1 GiB file's 65,536 chunks took
 * 11 MiB more than its 5 MiB of text. */
char *proto_op_print(const struct proto_op *op, unsigned flags);

/* Decode and validate. On success fills *op (caller releases with
 * proto_op_release) and returns 0. On failure returns -EINVAL (malformed),
 * -ENAMETOOLONG, -E2BIG (too many chunks) or -ENOMEM, writes a lowercase
 * reason to why (borrowed static string) and leaves *op released. Does not
 * take ownership of j. */
__attribute__((warn_unused_result))
int proto_op_from_json(const cJSON *j, struct proto_op *op, const char **why);

/* The same, with flags: PROTO_REFS accepts [k, len] chunk entries (an op of
 * a bundle with refs), 0 <= k < PROTO_BUNDLE_MAX_FRAMES. */
__attribute__((warn_unused_result))
int proto_op_from_json_flags(const cJSON *j, unsigned flags, struct proto_op *op,
			     const char **why);

/* Replace every ref of op's chunk lists (the whole list or the edits')
 * with frames[k] (borrowed; nframes of them): the id the receiver
 * computed from that frame's bytes. Returns 0, or -EINVAL (why set) when
 * a ref names no frame or a frame of another length. */
__attribute__((warn_unused_result))
int proto_op_resolve_refs(struct proto_op *op, const struct proto_chunk *frames, size_t nframes,
			  const char **why);

/* Exactly 2 * PROTO_STAGE_LEN hex digits (either case) into out: 0 or
 * -EINVAL. Pure. */
__attribute__((warn_unused_result))
int proto_stage_from_hex(const char *hex, uint8_t out[PROTO_STAGE_LEN]);

/* Free what proto_op_from_json() allocated. Accepts a zeroed op. */
void proto_op_release(struct proto_op *op);

/* [sec, nsec] <-> timespec. from_json returns 0 or -EINVAL. */
cJSON *proto_time_to_json(const struct timespec *ts);
__attribute__((warn_unused_result))
int proto_time_from_json(const cJSON *j, struct timespec *ts);

/* "ENOENT" for ENOENT (positive errno), "EUNKNOWN" otherwise. */
const char *proto_errno_name(int err);
/* Inverse; returns the positive errno or 0 if unknown. */
int proto_errno_from_name(const char *name);

/* The HTTP status mirrord answers for a failed apply with positive errno err
 * (see the table in docs/PROTOCOL.md). */
unsigned proto_status_for_errno(int err);

/* The digest of a chunk list: BLAKE2b-256 over, per chunk, its id and
 * its length (u32 big-endian). Both sides compute it the same way. */
void proto_list_digest(const struct proto_chunk *c, size_t n, struct hash_id *out);

/* The stored form of a chunk list (the client's record.db, mirrord's
 * state.db): per chunk its id and its length as u32 big-endian, the bytes
 * the digest covers, PROTO_LIST_ENTRY bytes each. */
#define PROTO_LIST_ENTRY (HASH_LEN + 4)

/* Write c[0..n) to out (n * PROTO_LIST_ENTRY bytes). Cannot fail. */
void proto_list_pack(const struct proto_chunk *c, size_t n, uint8_t *out);

/* Read n entries of in (n * PROTO_LIST_ENTRY bytes) into c[0..n). Cannot
 * fail. */
void proto_list_unpack(const uint8_t *in, size_t n, struct proto_chunk *c);

/* Apply op's edits to base (nbase entries). Returns a new list (caller
 * frees) with its length in *n, or NULL: -EINVAL in *err if the edits do
 * not fit the base (out of range, overlapping, unsorted), -ENOMEM. */
struct proto_chunk *proto_apply_edits(const struct proto_chunk *base, size_t nbase,
				      const struct proto_edit *e, size_t ne, size_t *n, int *err);

/* The edits that turn old[0..nold) into pc[0..n): walk both lists; where
 * they differ, an edit runs until the first new chunk found again in the
 * old list past that point (the old chunks in between are deleted, the new
 * ones in between inserted). An in-place change of a few ranges of a large
 * file gives one small edit per range; at most PROTO_MAX_EDITS (the last
 * one takes the rest). The edits point into pc (borrowed). Returns their
 * number (*out: a new array, caller frees; NULL for 0, the lists being
 * equal) or -ENOMEM. *ins gets the number of chunks inserted in all. */
__attribute__((warn_unused_result))
int proto_diff_lists(const struct proto_chunk *old, size_t nold, struct proto_chunk *pc, size_t n,
		     struct proto_edit **out, size_t *ins);

/* An integral JSON number within [lo, hi] into *out: 0, or -EINVAL (not
 * a number, not integral, out of range). Pure. */
int proto_json_int(const cJSON *j, double lo, double hi, int64_t *out);

/* Maximum nesting depth of a cJSON tree (for the JSON depth cap). */
int proto_json_depth(const cJSON *j);

/* 1 if the JSON text[0..len) holds a NUL: a raw NUL byte, or a \u0000
 * escape inside a string; 0 otherwise. cJSON cuts a string at its first
 * NUL, so "a\u0000/../b" would silently become the path "a": a text that
 * holds one must be refused before parsing. Pure. */
int proto_json_has_nul(const char *text, size_t len);

#endif
