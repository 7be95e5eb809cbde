/* fuse/patch: which chunks go as patches, and what the patches hold. */
#include <CUnit/CUnit.h>
#include <string.h>

#include "../../fuse/patch.h"

static uint8_t data[65536];

static void fill(void)
{
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 131 + 7);
}

/* No ranges: nothing is patched. */
static void test_off(void)
{
	struct patchset p;
	patchset_init(&p, NULL, 0, 1000);
	CU_ASSERT_EQUAL(patchset_chunk(&p, 0, 100, data), 0);
	struct drange r = { 10, 20 };
	patchset_init(&p, &r, -1, 1000); /* unknown ranges */
	CU_ASSERT_EQUAL(patchset_chunk(&p, 0, 100, data), 0);
	struct proto_op op = { 0 };
	patchset_attach(&p, &op);
	CU_ASSERT_FALSE(op.patched);
	patchset_release(&p);
}

/* A chunk with a few changed bytes gets exactly those, at their offsets. */
static void test_bytes(void)
{
	fill();
	struct drange r[2] = { { 1000, 1100 }, { 5000, 5010 } };
	struct patchset p;
	patchset_init(&p, r, 2, 10000);
	/* chunk [0, 4096): one patch of 100 bytes */
	CU_ASSERT_EQUAL(patchset_chunk(&p, 0, 4096, data), 1);
	/* chunk [4096, 8192): one of 10, from the chunk's own bytes */
	CU_ASSERT_EQUAL(patchset_chunk(&p, 4096, 4096, data + 4096), 1);
	CU_ASSERT_EQUAL(p.n, 2);
	CU_ASSERT_EQUAL(p.bytes, 110);
	CU_ASSERT_EQUAL(p.v[0].off, 1000);
	CU_ASSERT_EQUAL(p.v[0].len, 100);
	CU_ASSERT_EQUAL(memcmp(p.v[0].data, data + 1000, 100), 0);
	CU_ASSERT_EQUAL(p.v[1].off, 5000);
	CU_ASSERT_EQUAL(p.v[1].len, 10);
	CU_ASSERT_EQUAL(memcmp(p.v[1].data, data + 5000, 10), 0);
	struct proto_op op = { 0 };
	patchset_attach(&p, &op);
	CU_ASSERT_TRUE(op.patched);
	CU_ASSERT_EQUAL(op.npatches, 2);
	CU_ASSERT_PTR_EQUAL(op.patches, p.v);
	patchset_release(&p);
	CU_ASSERT_EQUAL(p.n, 0);
	CU_ASSERT_PTR_NULL(p.dr);
}

/* A range that spans two chunks is split between them. */
static void test_split(void)
{
	fill();
	struct drange r = { 4000, 4200 };
	struct patchset p;
	patchset_init(&p, &r, 1, 10000);
	CU_ASSERT_EQUAL(patchset_chunk(&p, 0, 4096, data), 1);
	CU_ASSERT_EQUAL(patchset_chunk(&p, 4096, 4096, data + 4096), 1);
	CU_ASSERT_EQUAL(p.n, 2);
	CU_ASSERT_EQUAL(p.v[0].off, 4000);
	CU_ASSERT_EQUAL(p.v[0].len, 96);
	CU_ASSERT_EQUAL(p.v[1].off, 4096);
	CU_ASSERT_EQUAL(p.v[1].len, 104);
	CU_ASSERT_EQUAL(memcmp(p.v[1].data, data + 4096, 104), 0);
	patchset_release(&p);
}

/* Over half changed: the chunk goes whole, and nothing is added. */
static void test_half(void)
{
	struct drange r = { 0, 2049 };
	struct patchset p;
	patchset_init(&p, &r, 1, 10000);
	CU_ASSERT_EQUAL(patchset_chunk(&p, 0, 4096, data), 0);
	CU_ASSERT_EQUAL(p.n, 0);
	CU_ASSERT_FALSE(p.used);
	r.end = 2048; /* exactly half: patched */
	CU_ASSERT_EQUAL(patchset_chunk(&p, 0, 4096, data), 1);
	patchset_release(&p);
}

/* Unchanged bytes cut anew need no patch, unless they lie past the end of
 * the version mirrord has (an append: it has no copy of them). */
static void test_unchanged(void)
{
	struct drange r = { 9000, 9100 };
	struct patchset p;
	patchset_init(&p, &r, 1, 8192);
	CU_ASSERT_EQUAL(patchset_chunk(&p, 4096, 4096, data), 1);
	CU_ASSERT_EQUAL(p.n, 0);
	CU_ASSERT_TRUE(p.used);
	CU_ASSERT_EQUAL(patchset_chunk(&p, 6000, 2500, data), 0);
	/* new bytes past the old end, changed: patched */
	CU_ASSERT_EQUAL(patchset_chunk(&p, 8192, 2000, data), 1);
	CU_ASSERT_EQUAL(p.n, 1);
	CU_ASSERT_EQUAL(p.v[0].off, 9000);
	patchset_release(&p);
}

/* The protocol's caps: total bytes, and number of patches. */
static void test_caps(void)
{
	static uint8_t big[2 * 1024 * 1024];
	struct drange r = { 0, PROTO_PATCH_BYTES_MAX / 2 + 1 };
	struct patchset p;
	patchset_init(&p, &r, 1, sizeof(big));
	CU_ASSERT_EQUAL(patchset_chunk(&p, 0, PROTO_PATCH_BYTES_MAX + 2, big), 1);
	r.start = PROTO_PATCH_BYTES_MAX + 2;
	r.end = r.start + PROTO_PATCH_BYTES_MAX / 2;
	CU_ASSERT_EQUAL(patchset_chunk(&p, r.start, PROTO_PATCH_BYTES_MAX, big), 0);
	CU_ASSERT_EQUAL(p.n, 1);
	patchset_release(&p);

	struct drange one = { 0, 1 };
	patchset_init(&p, &one, 1, 1u << 30);
	size_t ok = 0;
	for (size_t i = 0; i < PROTO_MAX_PATCHES + 10; i++) {
		one.start = i * 100;
		one.end = one.start + 1;
		ok += (size_t)(patchset_chunk(&p, one.start, 100, data) == 1);
	}
	CU_ASSERT_EQUAL(ok, PROTO_MAX_PATCHES);
	CU_ASSERT_EQUAL(p.n, PROTO_MAX_PATCHES);
	patchset_release(&p);
}

int suite_fuse_patch(void)
{
	CU_pSuite s = CU_add_suite("fuse_patch", NULL, NULL);
	if (!s)
		return CU_get_error();
	if (!CU_add_test(s, "off", test_off) || !CU_add_test(s, "bytes", test_bytes) ||
	    !CU_add_test(s, "split", test_split) || !CU_add_test(s, "half", test_half) ||
	    !CU_add_test(s, "unchanged", test_unchanged) || !CU_add_test(s, "caps", test_caps))
		return CU_get_error();
	return 0;
}
