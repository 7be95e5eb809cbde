/*
 * status: the client's progress as JSON and the two commands that read it,
 * `status TARGET [--json]` and `sync TARGET [--timeout S]`.
 *
 * The commands do not know how the JSON is obtained: a struct status_source
 * says it. The FUSE build reads the status xattr of the mount's root (see
 * fs.h; status_cmd/sync_cmd), the polling build asks the poller's control
 * socket (poll_ctl.h). Output and exit statuses are the same for both.
 *
 * status_json() is called on the FUSE thread that serves getxattr (or the
 * poller's control thread): it only takes the queue and stats locks and
 * never waits on the network.
 */
#ifndef MIRRORFS_STATUS_H
#define MIRRORFS_STATUS_H

#include <stddef.h>
#include <sys/ioctl.h>

#include "mirror.h"

/* The ioctl on a mount's root folder that answers its status JSON
 * (NUL-terminated; a restricted FUSE ioctl: the size is in the number). */
#define STATUS_IOCTL_MAX 16000
#define STATUS_IOCTL _IOR('M', 0x51, char[STATUS_IOCTL_MAX])

/* A new JSON text of m's status (caller frees with free()), length in
 * *len; NULL on ENOMEM. */
char *status_json(struct mirror *m, size_t *len);

struct cJSON;

/* How the commands reach a running client. All fields are borrowed. */
struct status_source {
	const char *prog;  /* program name for messages: "mirrorfs" */
	const char *what;  /* what TARGET is, for usage lines: "MOUNTPOINT" */
	const char *extra; /* more usage text after the options, or "" */
	/* Read target's status: a new cJSON tree (caller deletes it with
	 * cJSON_Delete), or NULL after printing why on stderr. */
	struct cJSON *(*read)(const struct status_source *src, const char *target);
	/* sync only, may be NULL: make sure every change made before this
	 * call has reached the client's queue (FUSE: syncfs of the mount;
	 * polling: a scan), waiting at most timeout_s seconds if > 0.
	 * Returns 0, or -1 after printing why on stderr. */
	int (*flush)(const struct status_source *src, const char *target, double timeout_s);
	void *arg; /* for read and flush */
};

/* The commands; argv after the command word. Return the exit status
 * (0 done, 1 failed, 2 bad usage). */
int status_cmd_with(const struct status_source *src, int argc, char **argv);
int sync_cmd_with(const struct status_source *src, int argc, char **argv);

/* The FUSE build's commands: status_cmd_with/sync_cmd_with asking the
 * STATUS_IOCTL of a mount ("mirrorfs status MOUNTPOINT ..."). */
int status_cmd(int argc, char **argv);
int sync_cmd(int argc, char **argv);

#endif
