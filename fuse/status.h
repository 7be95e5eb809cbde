/*
 * status: the client's progress as JSON (served through the status xattr
 * of the mount's root, see fs.h) and the two commands that read it,
 * `mirrorfs status MOUNTPOINT [--json]` and `mirrorfs sync MOUNTPOINT
 * [--timeout S]`.
 *
 * status_json() is called on the FUSE thread that serves getxattr: it only
 * takes the queue and stats locks and never waits on the network.
 */
#ifndef MIRRORFS_STATUS_H
#define MIRRORFS_STATUS_H

#include <stddef.h>

#include "mirror.h"

/* The extended attribute of a mount's root that holds its status JSON. */
#define STATUS_XATTR "user.mirrorfs.status"

/* A new JSON text of m's status (caller frees with free()), length in
 * *len; NULL on ENOMEM. */
char *status_json(struct mirror *m, size_t *len);

/* The commands; argv after the command word. Return the exit status. */
int status_cmd(int argc, char **argv);
int sync_cmd(int argc, char **argv);

#endif
