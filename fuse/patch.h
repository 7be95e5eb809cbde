/*
 * patch: the changed bytes of a file as patches (docs/PROTOCOL.md, "patch").
 *
 * When the record holds the chunk list last sent for a file and the FUSE
 * layer says which byte ranges were written since (ofile.h), a new chunk
 * made mostly of unchanged bytes need not go whole: mirrord can build it
 * from its own copy of the file at the same offset, with the changed bytes
 * laid over, and checks the result against the chunk's id. A chunk of
 * unchanged bytes that was only cut anew needs no patch at all. Used for
 * files sent alone (transfer.c) and in bundles (batch.c).
 *
 * A patch set belongs to one op and one thread. It borrows the changed
 * ranges and owns its patches and their bytes.
 */
#ifndef MIRRORFS_PATCH_H
#define MIRRORFS_PATCH_H

#include <stddef.h>
#include <stdint.h>

#include "ofile.h"
#include "proto.h"

struct patchset {
	const struct drange *dr; /* borrowed, sorted and disjoint; NULL: no patching */
	int ndr;
	uint64_t old_size;       /* of the version mirrord has */
	struct proto_patch *v;   /* owned, and each v[i].data */
	size_t n, alloc;
	uint64_t bytes;          /* of all patches */
	int used;                /* a chunk was left to mirrord to build */
};

/* Start an empty set. dr NULL (or ndr <= 0) gives a set that patches
 * nothing. */
void patchset_init(struct patchset *p, const struct drange *dr, int ndr, uint64_t old_size);

/* Chunk [off, off + len) of the new version, bytes at data: add patches of
 * its changed bytes if they are under half of it and within the
 * protocol's caps. Returns 1 if the chunk may be left to mirrord, 0 if it
 * must go whole, -ENOMEM. */
int patchset_chunk(struct patchset *p, uint64_t off, uint32_t len, const uint8_t *data);

/* Add bytes [off, off + len) of the new version (at data) as one patch,
 * whatever the ranges say (the bytes of a chunk that moves do not cover).
 * Returns 1, 0 if the caps leave no room, -ENOMEM. */
int patchset_add(struct patchset *p, uint64_t off, uint32_t len, const uint8_t *data);

/* Sort the patches by offset (chunks may be added out of order). */
void patchset_sort(struct patchset *p);

/* Point op at the set (op->patched, patches, npatches; borrowed). */
void patchset_attach(const struct patchset *p, struct proto_op *op);

/* Free the patches. The set is empty (and patches nothing) afterwards. */
void patchset_release(struct patchset *p);

#endif
