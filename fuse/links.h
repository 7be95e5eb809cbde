/*
 * links: the known names of hard-linked files (BACKING inode -> mirror
 * paths), so that a write through one name re-syncs every name on the server
 * (mirrord stores each name as its own file).
 *
 * Names are learnt from link() through the mount and from scans (files with
 * st_nlink > 1); renames and unlinks through the mount keep them current.
 * Names may be stale: users of links_others() check each name's inode.
 * Thread-safe (one mutex, a leaf lock).
 */
#ifndef MIRRORFS_LINKS_H
#define MIRRORFS_LINKS_H

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

struct links;

/* Returns a new empty map (free with links_free) or NULL. */
struct links *links_new(void);
void links_free(struct links *l);

/* Record that ino is (also) reachable as path. 0 or -ENOMEM. */
int links_add(struct links *l, ino_t ino, const char *path);
void links_renamed(struct links *l, const char *from, const char *to, int exchange);
void links_unlinked(struct links *l, const char *path);

/* Names of ino other than path: returns a NULL-terminated array of new
 * strings (caller frees each and the array with links_strv_free), or NULL
 * when there are none (or on ENOMEM). */
char **links_others(struct links *l, ino_t ino, const char *path);
void links_strv_free(char **v);

#endif
