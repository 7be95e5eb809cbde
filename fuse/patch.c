#define _GNU_SOURCE
#include "patch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void patchset_init(struct patchset *p, const struct drange *dr, int ndr, uint64_t old_size)
{
	memset(p, 0, sizeof(*p));
	if (dr && ndr > 0) {
		p->dr = dr;
		p->ndr = ndr;
		p->old_size = old_size;
	}
}

/* Where changed range r meets [off, off + len): [*a, *b), if anywhere. */
static int overlap(const struct drange *r, uint64_t off, uint32_t len, uint64_t *a, uint64_t *b)
{
	*a = r->start > off ? r->start : off;
	*b = r->end < off + len ? r->end : off + len;
	return *a < *b;
}

/* Append [off, off + len) at data; the caller checked the caps. */
static int append(struct patchset *p, uint64_t off, uint64_t len, const uint8_t *data)
{
	if (p->n == p->alloc) {
		size_t na = p->alloc ? p->alloc * 2 : 8;
		struct proto_patch *v = realloc(p->v, na * sizeof(*v));
		if (!v)
			return -ENOMEM;
		p->v = v;
		p->alloc = na;
	}
	struct proto_patch *pp = &p->v[p->n];
	if (!(pp->data = malloc(len ? len : 1)))
		return -ENOMEM;
	memcpy(pp->data, data, len);
	pp->off = off;
	pp->len = (uint32_t)len;
	p->n++;
	p->bytes += len;
	return 0;
}

int patchset_chunk(struct patchset *p, uint64_t off, uint32_t len, const uint8_t *data)
{
	uint64_t d = 0, a, b;
	if (!p->dr)
		return 0;
	for (int k = 0; k < p->ndr; k++)
		if (overlap(&p->dr[k], off, len, &a, &b))
			d += b - a;
	/* Unchanged bytes past the old end: mirrord has no copy of them. */
	if ((d == 0 && off + len > p->old_size) || d * 2 > len ||
	    p->bytes + d > PROTO_PATCH_BYTES_MAX || p->n + (size_t)p->ndr > PROTO_MAX_PATCHES)
		return 0;
	for (int k = 0; k < p->ndr; k++)
		if (overlap(&p->dr[k], off, len, &a, &b) && append(p, a, b - a, data + (a - off)) < 0)
			return -ENOMEM;
	p->used = 1;
	return 1;
}

int patchset_add(struct patchset *p, uint64_t off, uint32_t len, const uint8_t *data)
{
	if (len == 0 || p->bytes + len > PROTO_PATCH_BYTES_MAX || p->n >= PROTO_MAX_PATCHES)
		return 0;
	if (append(p, off, len, data) < 0)
		return -ENOMEM;
	p->used = 1;
	return 1;
}

static int by_off(const void *a, const void *b)
{
	const struct proto_patch *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

void patchset_sort(struct patchset *p)
{
	if (p->n > 1)
		qsort(p->v, p->n, sizeof(*p->v), by_off);
}

void patchset_attach(const struct patchset *p, struct proto_op *op)
{
	op->patched = p->used;
	op->patches = p->v;
	op->npatches = p->n;
}

void patchset_release(struct patchset *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->v[i].data);
	free(p->v);
	memset(p, 0, sizeof(*p));
}
