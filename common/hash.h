/*
 * hash: content ids. BLAKE2b-256 (libsodium's crypto_generichash), used for
 * chunk ids and whole-file checks, and hex conversion.
 *
 * hash_init_lib() must run once in main() before threads start (it sets up
 * libsodium); everything else is thread-safe.
 */
#ifndef MIRROR_HASH_H
#define MIRROR_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_LEN 32
#define HASH_HEX_LEN 64

struct hash_id {
	uint8_t b[HASH_LEN];
};

/* Start libsodium, with the faster of its BLAKE2b codes on this CPU: it
 * times both (about 25 ms here, one of them in a forked child; hash.c says why).
 * Must run before any thread starts. Returns 0 or -EIO if libsodium cannot
 * start. */
__attribute__((warn_unused_result))
int hash_init_lib(void);

/* What hash_init_lib() chose and measured, one line for the log. */
const char *hash_impl_desc(void);

/* One-shot hash of len bytes. Cannot fail once hash_init_lib() succeeded. */
void hash_buf(const void *data, size_t len, struct hash_id *out);

/* Streaming hash. The state is opaque storage big enough for libsodium's. */
struct hash_state {
	_Alignas(64) uint8_t opaque[384];
};
void hash_start(struct hash_state *st);
void hash_update(struct hash_state *st, const void *data, size_t len);
void hash_final(struct hash_state *st, struct hash_id *out);

/* Write 64 lowercase hex chars and a NUL to out[65]. Cannot fail. */
void hash_to_hex(const struct hash_id *id, char out[HASH_HEX_LEN + 1]);

/* Parse exactly 64 hex chars (either case) of len bytes. Returns 0 or -EINVAL. */
__attribute__((warn_unused_result))
int hash_from_hex(const char *hex, size_t len, struct hash_id *out);

/* 1 if equal. Not constant time: content ids are no secret (a token's
 * digest is compared in constant time by server/auth.c), and lookups
 * compare many of them (16 KiB chunks: 65,536 ids a GiB). */
int hash_equal(const struct hash_id *a, const struct hash_id *b);

#endif
