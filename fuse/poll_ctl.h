/*
 * poll_ctl: the polling client's control socket, how `mirrorfs-poll status`
 * and `mirrorfs-poll sync` reach a running poller (the FUSE build uses the
 * mount's status xattr instead).
 *
 * The socket is a Unix stream socket at <state folder>/ctl.sock, mode 0600
 * (the state folder is the client's own; the lock in it keeps a second
 * client away, so a leftover socket there is stale and replaced). One
 * request per connection, one line:
 *   "status\n"  answered with status_json() (status.h) with the scanner's
 *               counters added as "scan" (scans, entries, settling, last_ms,
 *               renames), then EOF;
 *   "scan\n"    answered "ok\n" once a scan that started after the request
 *               has queued every change it found (poll_scan_request());
 *   other       answered "error: ...\n".
 *
 * Server side: one thread accepts and answers; it never waits on the
 * network or a scan (a scan request's connection is handed to the scanner).
 * A client that does not send its line within 2 s is dropped.
 *
 * Client side: poll_ctl_ask(), for the commands.
 */
#ifndef MIRRORFS_POLL_CTL_H
#define MIRRORFS_POLL_CTL_H

#include <stddef.h>

#include "buf.h"
#include "mirror.h"
#include "poll_scan.h"

#define POLL_CTL_NAME "ctl.sock"

/* Answers are at most this long (the status JSON is a few hundred bytes). */
#define POLL_CTL_ANSWER_MAX (1024 * 1024)

struct poll_ctl;

/* Bind and listen on state_dir/ctl.sock (mode 0600). Returns 0 and *out
 * (free with poll_ctl_close), or a negative errno: -ENAMETOOLONG if the
 * path does not fit a Unix socket address. */
__attribute__((warn_unused_result))
int poll_ctl_open(const char *state_dir, struct poll_ctl **out);

/* Start answering for m and s (borrowed; they must outlive the thread).
 * Returns 0 or a negative errno. */
__attribute__((warn_unused_result))
int poll_ctl_start(struct poll_ctl *c, struct mirror *m, struct poll_scan *s);

/* Stop the thread, close and remove the socket, free c. Accepts NULL. */
void poll_ctl_close(struct poll_ctl *c);

/* Send the request line req (e.g. "status\n") to the poller whose state
 * folder is state_dir and read the whole answer into out (appended, up to
 * out's cap: buf_init it with POLL_CTL_ANSWER_MAX). Waits at most
 * timeout_ms for the answer (< 0: no limit).
 * Returns 0; -ENOENT or -ECONNREFUSED when no poller listens there;
 * -ETIMEDOUT; -ENAMETOOLONG; -EMSGSIZE; another negative errno. */
__attribute__((warn_unused_result))
int poll_ctl_ask(const char *state_dir, const char *req, int timeout_ms, struct buf *out);

#endif
