/*
 * fuzz_mline: the client's decoder of manifest lines (fuse/mline.c), as
 * reconcile.c feeds it every line mirrord sends.
 *
 * Checks that an accepted line yields a valid mirror path, a mode within
 * 07777 and a valid time.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mline.h"
#include "path.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mline l;
	int r = mline_parse((const char *)data, size, &l);
	if (r == 1) {
		if (!l.path || path_check(l.path, strlen(l.path), 1) < 0 || l.mode > 07777 ||
		    l.mtime.tv_nsec < 0 || l.mtime.tv_nsec > 999999999)
			abort();
	} else if (l.path || l.target) {
		abort(); /* released on failure */
	}
	mline_release(&l);
	return 0;
}
