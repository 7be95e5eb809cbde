#define _GNU_SOURCE
#include "hash.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

_Static_assert(sizeof(struct hash_state) >= sizeof(crypto_generichash_state),
	       "hash_state too small for libsodium's state");
_Static_assert(HASH_LEN == crypto_generichash_BYTES, "BLAKE2b-256 expected");

int hash_init_lib(void)
{
	return sodium_init() < 0 ? -EIO : 0;
}

void hash_buf(const void *data, size_t len, struct hash_id *out)
{
	crypto_generichash(out->b, HASH_LEN, data, len, NULL, 0);
}

void hash_start(struct hash_state *st)
{
	crypto_generichash_init((crypto_generichash_state *)st->opaque, NULL, 0, HASH_LEN);
}

void hash_update(struct hash_state *st, const void *data, size_t len)
{
	crypto_generichash_update((crypto_generichash_state *)st->opaque, data, len);
}

void hash_final(struct hash_state *st, struct hash_id *out)
{
	crypto_generichash_final((crypto_generichash_state *)st->opaque, out->b, HASH_LEN);
}

void hash_to_hex(const struct hash_id *id, char out[HASH_HEX_LEN + 1])
{
	sodium_bin2hex(out, HASH_HEX_LEN + 1, id->b, HASH_LEN);
}

int hash_from_hex(const char *hex, size_t len, struct hash_id *out)
{
	size_t got = 0;
	const char *end = NULL;
	if (len != HASH_HEX_LEN)
		return -EINVAL;
	if (sodium_hex2bin(out->b, HASH_LEN, hex, len, NULL, &got, &end) != 0 ||
	    got != HASH_LEN || end != hex + len)
		return -EINVAL;
	return 0;
}

int hash_equal(const struct hash_id *a, const struct hash_id *b)
{
	return memcmp(a->b, b->b, HASH_LEN) == 0;
}
