/*
 * fuzz_token: the token file format (token_parse), on both sides the
 * first thing read from a file a user may have got wrong.
 *
 * Checks that an accepted token is within the length limits, printable,
 * free of spaces and line ends, and a prefix of the input.
 */
#include <stdint.h>
#include <stdlib.h>

#include "token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t n = 0;
	if (token_parse((const char *)data, size, &n) < 0)
		return 0;
	if (n < TOKEN_MIN_LEN || n > TOKEN_MAX_LEN || n > size || size - n > 2)
		abort();
	for (size_t i = 0; i < n; i++)
		if (data[i] <= ' ' || data[i] >= 0x7f)
			abort();
	return 0;
}
