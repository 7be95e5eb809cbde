/*
 * tmpdir: mirrord's private folder for temporaries, <state>/tmp.
 *
 * Every file, symlink or folder mirrord builds is made here first and then
 * renamed into the mirrored tree; things removed from the tree are renamed
 * here first and deleted afterwards. The state dir lies outside DIR but on
 * the same filesystem (checked at start), so both renames are atomic and no
 * temporary name ever appears inside DIR: a user's file can never collide
 * with one, and a leftover can never be mistaken for a user's file.
 *
 * Invariants: names are unique for the life of the process (a counter; one
 * mirrord per state dir, enforced by main's lock file); whatever is in tmp/
 * at start is a crash leftover and tmpdir_open() removes it.
 *
 * Thread-safety: tmpdir_name() may be called from any thread.
 */
#ifndef MIRRORD_TMPDIR_H
#define MIRRORD_TMPDIR_H

#include <stdatomic.h>

#define TMPDIR_NAME_MAX 64

struct tmpdir {
	int fd;                /* owned O_RDONLY|O_DIRECTORY fd of <state>/tmp */
	atomic_ulong counter;  /* next temporary number */
};

/* Open (creating, mode 0700) the folder "tmp" in statefd and remove
 * everything in it. lift: see resolve.h (leftover read-only folders).
 * Returns 0 or a negative errno. */
__attribute__((warn_unused_result))
int tmpdir_open(struct tmpdir *t, int statefd, int lift);

/* Close the fd. Accepts a never-opened (fd -1) or NULL tmpdir. */
void tmpdir_close(struct tmpdir *t);

/* Write a fresh unique name, e.g. "f.123.7", to out. kind is one letter
 * saying what the temporary is for (debugging only). Cannot fail. */
void tmpdir_name(struct tmpdir *t, char kind, char out[TMPDIR_NAME_MAX]);

#endif
