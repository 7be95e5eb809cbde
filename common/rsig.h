/*
 * rsig: block signatures of old bytes, and the moves that rebuild new bytes
 * from them: rsync's method, applied inside one changed region of a file.
 *
 * Content-defined chunks resynchronise after an insertion or a deletion,
 * but the chunk that holds the change is new as a whole: 100 bytes
 * inserted cost a 4-64 KiB chunk. When mirrord has the old version of
 * that region, the client asks for its signatures (a weak rolling sum and
 * a strong 64-bit hash per block, RSIG_ENTRY bytes), finds the blocks in
 * the new chunk, and sends moves (new offset, length, old offset) and the
 * bytes that matched nothing. mirrord checks the chunk it builds against
 * the chunk's BLAKE2b id, so a false match costs a resend, never a wrong
 * file.
 *
 * Pure functions; thread-safe once hash_init_lib() has run.
 */
#ifndef MIRROR_RSIG_H
#define MIRROR_RSIG_H

#include <stddef.h>
#include <stdint.h>

#define RSIG_ENTRY 12 /* weak sum (4 bytes, little-endian), strong hash (8) */
#define RSIG_BLOCK_MIN 64u
#define RSIG_BLOCK_MAX 65536u
#define RSIG_BLOCKS_MAX 16384u /* per request */
#define RSIG_RANGES_MAX 64      /* per request */

/* The weak sum of p[0..n): two 16-bit sums (rsync's), a | b << 16. */
uint32_t rsig_weak(const uint8_t *p, size_t n);

/* The signatures of data[0..n) in blocks of block bytes: n / block entries
 * written to out (the caller's, n / block * RSIG_ENTRY bytes). A last
 * block shorter than block has none. */
void rsig_make(const uint8_t *data, size_t n, uint32_t block, uint8_t *out);

/* A run of new bytes [off, off + len) that equals old bytes at src. */
struct rsig_move {
	uint64_t off;
	uint32_t len;
	uint64_t src;
};

/* Find the old blocks in data[0..n) (new bytes at offset noff).
 * sigs: nblocks entries of old blocks of block bytes, block k at old
 * offset boff[k]. Matches are merged into runs where both sides are
 * contiguous. *moves gets a new array (caller frees; NULL if none),
 * sorted and disjoint, *nmoves its length. Returns the bytes covered, or
 * -ENOMEM. */
__attribute__((warn_unused_result))
long rsig_match(const uint8_t *sigs, size_t nblocks, uint32_t block, const uint64_t *boff,
		const uint8_t *data, size_t n, uint64_t noff, struct rsig_move **moves,
		size_t *nmoves);

#endif
