/*
 * setup: what every front end (the FUSE mount, the polling scanner) does to
 * bring a struct mirror up and down: checks of the user's folders, the state
 * folder (chosen, checked to be outside the mirrored tree, locked), the
 * client id, a first word with the server, the queue restored from disk with
 * a full reconciliation behind it; then the background threads.
 *
 * Errors are printed to stderr in the user's terms, prefixed with the
 * program name given to setup_init(). Not thread-safe: runs in main().
 */
#ifndef MIRRORFS_SETUP_H
#define MIRRORFS_SETUP_H

#include "mirror.h"

/* The command-line options both front ends share. Strings are borrowed
 * from argv. */
struct setup_opts {
	const char *server, *state_dir, *token_file, *cacert;
	int level; /* enum log_level; set it to the default before parsing */
};

/* If argv[*i] is one of the shared options (--server URL, --state-dir S,
 * --token-file F, --cacert F, --log-level L) followed by its value, store
 * it in o, move *i onto the value and return 1. Return 0 if it is not one
 * (or its value is missing), -EINVAL after printing why (prefixed with
 * prog) if the value is invalid. */
int setup_parse_opt(const char *prog, struct setup_opts *o, int argc, char **argv, int *i);

/* Zero m and remember the program name (borrowed) for messages. */
void setup_init(struct mirror *m, const char *prog);

/* realpath of an existing folder. Returns a new string (caller frees) or
 * NULL after printing why ("BACKING '/x': No such file or directory"). */
char *setup_existing_dir(const char *what, const char *p);

/* The default state folder for the mirrored folder backing (a realpath):
 * $XDG_STATE_HOME/mirrorfs/<16 hex of its hash>, or ~/.local/state/...,
 * or /var/lib/mirrorfs/... Returns a new string or NULL. */
char *setup_default_state_dir(const char *backing);

/* How to reach the server safely (docs/SECURITY.md): the token file
 * (--token-file, may be NULL) and the CA file for an https:// server
 * (--cacert, may be NULL: the system's CAs). Both must exist; they are
 * made absolute (the FUSE front end changes to / when it daemonizes) and
 * kept in m->token_file, m->cacert. Call before setup_mirror(). Returns 0,
 * or -1 after printing why. */
int setup_set_access(struct mirror *m, const char *token_file, const char *cacert);

/* With m->backing set (and m->token_file, m->cacert if wanted): choose and
 * lock the state folder (state_opt or the default; it must lie outside
 * m->backing and outside avoid, if not NULL), load the client id and the
 * token, probe server (unreachable: a warning; not mirrord, a refused
 * token or an untrusted certificate: an error), open BACKING, create the
 * queue and restore it, queue the full reconciliation. Returns 0, or -1
 * after printing why. */
int setup_mirror(struct mirror *m, const char *state_opt, const char *avoid, const char *server);

/* Start the queue writer and the uploader (after any fork). 0 or -1. */
int setup_start(struct mirror *m);

/* Let the queue drain (up to drain_ms while the server answers), stop the
 * threads, save the queue. Safe to call twice. */
void setup_stop(struct mirror *m, int drain_ms);

/* Free everything setup_mirror made (stops threads if still running). */
void setup_release(struct mirror *m);

#endif
