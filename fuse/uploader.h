/*
 * uploader: the background thread that drains the queue into mirrord.
 *
 * It takes entries in order (queue rules), turns each into protocol
 * requests through a worker (its own keep-alive HTTP connection), and
 * decides what a failure means: a transport error or 5xx keeps the entry
 * and retries it after a capped exponential backoff with jitter (the
 * client is then "offline"); a file still being written is deferred; a
 * permanent refusal is reported (status and log) and skipped so that it
 * never blocks the changes after it.
 *
 * Nothing here runs on the FUSE request path.
 */
#ifndef MIRRORFS_UPLOADER_H
#define MIRRORFS_UPLOADER_H

#include "mirror.h"

/* Start the thread. Returns a handle (stop with uploader_stop) or NULL. */
struct uploader *uploader_start(struct mirror *m);

/* Wait up to drain_ms for the queue to empty (while the server answers),
 * then stop the thread and free u. Accepts NULL. */
void uploader_stop(struct uploader *u, int drain_ms);

/* Backoff before retry number attempt (1, 2, ...), in ms: 200 * 2^(n-1),
 * capped at UPLOADER_BACKOFF_MAX_MS, with +-25% jitter. */
int uploader_backoff_ms(unsigned attempt);

#define UPLOADER_BACKOFF_MAX_MS 10000

#endif
