/*
 * fuzz_edits: the delta application (proto_apply_edits) against a naive
 * model, on base lists and edit lists drawn from the input.
 *
 * Input: base length (1 byte), number of edits (1 byte), then per edit
 * start, del, number of inserted chunks (1 byte each). Chunks are told
 * apart by their len field (base: 1000 + index, inserted: 2000 + a
 * counter). The result is then diffed against the base
 * (proto_diff_lists), and those edits must give the same result.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t nbase = data[0], ne = data[1];
	const uint8_t *p = data + 2, *end = data + size;
	struct proto_chunk base[256];
	struct proto_edit edits[256];
	static struct proto_chunk ins[256 * 255]; /* too big for the stack */
	size_t nins = 0;

	memset(base, 0, sizeof(base));
	for (size_t i = 0; i < nbase; i++)
		base[i].len = (uint32_t)(1000 + i);
	for (size_t i = 0; i < ne; i++) {
		if (end - p < 3)
			return 0;
		edits[i].start = p[0];
		edits[i].del = p[1];
		edits[i].n = p[2];
		edits[i].chunks = ins + nins;
		for (size_t k = 0; k < edits[i].n; k++) {
			memset(&ins[nins], 0, sizeof(ins[nins]));
			ins[nins].len = (uint32_t)(2000 + nins);
			nins++;
		}
		p += 3;
	}

	/* The model: valid iff sorted, non-overlapping and inside the base. */
	int valid = 1;
	size_t pos = 0, total = nbase;
	for (size_t i = 0; i < ne && valid; i++) {
		if (edits[i].start < pos || edits[i].start + edits[i].del > nbase)
			valid = 0;
		pos = edits[i].start + edits[i].del;
		total = total - edits[i].del + edits[i].n;
	}

	size_t n = 0;
	int err = 0;
	struct proto_chunk *out = proto_apply_edits(base, nbase, edits, ne, &n, &err);
	if (!valid) {
		if (out || err != -EINVAL)
			abort();
		return 0;
	}
	if (!out || n != total)
		abort();
	size_t k = 0;
	pos = 0;
	for (size_t i = 0; i < ne; i++) {
		for (; pos < edits[i].start; pos++)
			if (out[k++].len != base[pos].len)
				abort();
		for (size_t c = 0; c < edits[i].n; c++)
			if (out[k++].len != edits[i].chunks[c].len)
				abort();
		pos += edits[i].del;
	}
	for (; pos < nbase; pos++)
		if (out[k++].len != base[pos].len)
			abort();
	if (k != n)
		abort();
	/* The client's side: the edits found between base and out must
	 * turn base into out again. */
	struct proto_edit *de = NULL;
	size_t dins = 0, m = 0;
	int dn = proto_diff_lists(base, nbase, out, n, &de, &dins);
	if (dn < 0)
		abort();
	struct proto_chunk *again = proto_apply_edits(base, nbase, de, (size_t)dn, &m, &err);
	if ((n > 0 && !again) || m != n || (n > 0 && memcmp(again, out, n * sizeof(*out)) != 0))
		abort();
	free(again);
	free(de);
	free(out);
	return 0;
}
