/*
 * chunk_sizes: what each choice of chunk sizes costs and saves.
 *
 * usage: chunk_sizes OLD NEW
 * For several (min, avg, max) choices, cuts OLD and NEW into chunks and
 * prints: chunks in NEW, bytes of NEW's chunks not found in OLD (what an
 * upload of NEW after OLD must send), and the list metadata for NEW (76
 * bytes a chunk in JSON). Used for docs/CHUNKING.md (bench/bench_chunks.sh).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chunker.h"
#include "hash.h"

struct set {
	struct hash_id *ids;
	size_t n, alloc;
};

static void *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	void *p = malloc(n > 0 ? (size_t)n : 1);
	if (p && n > 0 && fread(p, 1, (size_t)n, f) != (size_t)n) {
		free(p);
		p = NULL;
	}
	fclose(f);
	*len = (size_t)n;
	return p;
}

static int cmp(const void *a, const void *b)
{
	return memcmp(a, b, HASH_LEN);
}

/* Chunks of d[0..len): ids appended to s (if not NULL); returns the number
 * of chunks and adds to *miss the bytes whose ids are not in old. */
static size_t cut(const struct chunker *c, const unsigned char *d, size_t len, struct set *s,
		  const struct set *old, size_t *miss)
{
	size_t pos = 0, n = 0;
	while (pos < len) {
		size_t l = chunker_next(c, d + pos, len - pos, 1);
		struct hash_id id;
		hash_buf(d + pos, l, &id);
		if (s) {
			if (s->n == s->alloc) {
				s->alloc = s->alloc ? s->alloc * 2 : 1024;
				s->ids = realloc(s->ids, s->alloc * sizeof(*s->ids));
				if (!s->ids)
					exit(1);
			}
			s->ids[s->n++] = id;
		}
		if (old && !bsearch(&id, old->ids, old->n, sizeof(id), cmp))
			*miss += l;
		pos += l;
		n++;
	}
	return n;
}

int main(int argc, char **argv)
{
	static const size_t sizes[][3] = {
		{ 2048, 8192, 32768 },	    { 4096, 16384, 65536 }, { 8192, 32768, 131072 },
		{ 16384, 65536, 262144 }, { 65536, 262144, 1048576 },
	};
	size_t lo, ln;
	if (argc != 3 || hash_init_lib() < 0)
		return 2;
	unsigned char *o = slurp(argv[1], &lo), *nw = slurp(argv[2], &ln);
	if (!o || !nw)
		return 2;
	printf("%-22s %10s %14s %14s %14s\n", "min/avg/max (KiB)", "chunks", "new bytes", "list bytes",
	       "total");
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct chunker c;
		struct set old = { 0 };
		size_t miss = 0;
		if (chunker_init_sizes(&c, sizes[i][0], sizes[i][1], sizes[i][2]) < 0)
			return 2;
		cut(&c, o, lo, &old, NULL, &miss);
		qsort(old.ids, old.n, sizeof(*old.ids), cmp);
		size_t n = cut(&c, nw, ln, NULL, &old, &miss);
		printf("%5zu/%5zu/%6zu       %10zu %14zu %14zu %14zu\n", sizes[i][0] / 1024,
		       sizes[i][1] / 1024, sizes[i][2] / 1024, n, miss, n * 76, miss + n * 76);
		free(old.ids);
	}
	return 0;
}
