/*
 * fuzz_zbody: the decoder of zstd request bodies (decompress_body), as
 * mirrord runs it for POST /v1/op and /v1/chunks/query with
 * Content-Encoding: zstd.
 *
 * Checks its promises: the decoded bytes never pass the cap, a refusal
 * leaves nothing decoded, and a body it accepts decodes the same again.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "compress.h"

#define CAP (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf a, b;
	buf_init(&a, CAP + 1);
	buf_init(&b, CAP + 1);
	int r = decompress_body(data, size, CAP, &a);
	if (a.len > CAP || (r < 0 && a.len != 0) ||
	    (r < 0 && r != -EBADMSG && r != -EMSGSIZE && r != -ENOMEM))
		abort();
	if (r == 0 && (decompress_body(data, size, CAP, &b) != 0 || b.len != a.len ||
		       (a.len && memcmp(a.data, b.data, a.len) != 0)))
		abort();
	buf_release(&a);
	buf_release(&b);
	return 0;
}
