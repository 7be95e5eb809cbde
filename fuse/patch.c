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
	for (int k = 0; k < p->ndr; k++) {
		if (!overlap(&p->dr[k], off, len, &a, &b))
			continue;
		if (p->n == p->alloc) {
			size_t na = p->alloc ? p->alloc * 2 : 8;
			struct proto_patch *v = realloc(p->v, na * sizeof(*v));
			if (!v)
				return -ENOMEM;
			p->v = v;
			p->alloc = na;
		}
		struct proto_patch *pp = &p->v[p->n];
		if (!(pp->data = malloc(b - a)))
			return -ENOMEM;
		memcpy(pp->data, data + (a - off), b - a);
		pp->off = a;
		pp->len = (uint32_t)(b - a);
		p->n++;
		p->bytes += b - a;
	}
	p->used = 1;
	return 1;
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
