/*
 * guard: deadlines for client connections, enforced by a watchdog thread.
 *
 * libmicrohttpd's connection timeout is an idle timeout: a client that
 * sends one byte a second is never idle, and with a thread per connection
 * it would hold a thread (and a connection slot) for as long as it likes.
 * guard knows what each connection is doing and cuts it off when it takes
 * too long:
 *
 * - WAIT (from the connection's start, or the end of its previous
 *   request, until a request's headers are complete): at most timeout_s.
 *   This covers an idle keep-alive connection and headers sent slowly
 *   alike (mirrord cannot tell them apart: the headers are libmicrohttpd's
 *   until they are complete).
 * - BODY (the request body is arriving): the body may fall behind a
 *   steady min_rate bytes/s by at most timeout_s seconds' worth: cut when
 *   elapsed > timeout_s and bytes < (elapsed - timeout_s) * min_rate.
 * - WORK (the request is complete: it is being applied, or the answer is
 *   being sent): no deadline here (an fsync of a large file takes what it
 *   takes); a client that stops reading the answer meets libmicrohttpd's
 *   idle timeout.
 *
 * Cutting is shutdown(fd, SHUT_RDWR) from the watchdog: the connection's
 * own thread then sees the connection end and libmicrohttpd closes it
 * (nothing half-received is ever applied). This is safe because
 * libmicrohttpd 0.9.75 closes a connection's fd only after the
 * MHD_CONNECTION_NOTIFY_CLOSED callback, which calls guard_conn_close()
 * and so removes the fd from the watchdog's list under the lock the
 * watchdog holds while it shuts an fd down.
 *
 * Thread-safety: every function may be called from any thread; one lock
 * (leaf) guards the list and every connection's fields.
 */
#ifndef MIRRORD_GUARD_H
#define MIRRORD_GUARD_H

#include <stdint.h>

#include "metrics.h"

struct guard;
struct guard_conn;

struct guard_cfg {
	unsigned timeout_s; /* see above; > 0 */
	unsigned min_rate;  /* bytes per second; > 0 */
};

/* Start the watchdog. metrics (borrowed, may be NULL) counts the cuts.
 * Returns 0 and *out (caller stops with guard_stop), or a negative errno. */
__attribute__((warn_unused_result))
int guard_start(const struct guard_cfg *cfg, struct metrics *metrics, struct guard **out);

/* Stop the watchdog and free. Every connection must be closed already
 * (libmicrohttpd's daemon stopped). Accepts NULL. */
void guard_stop(struct guard *g);

/* A new connection on socket fd (borrowed), from peer (a printable
 * address, copied, for the log). Starts in WAIT. Returns the record, or
 * NULL on ENOMEM (the connection is then left to the idle timeout). */
struct guard_conn *guard_conn_open(struct guard *g, int fd, const char *peer);

/* The connection is closing: forget it. Accepts NULL. */
void guard_conn_close(struct guard *g, struct guard_conn *c);

/* A request's headers are complete: BODY if has_body, else WORK. Accepts
 * NULL (an unguarded connection) here and below. */
void guard_request_begin(struct guard *g, struct guard_conn *c, int has_body);

/* n more body bytes arrived. Returns 0, or -ETIMEDOUT if the body is
 * arriving too slowly (the caller drops the connection; the watchdog
 * would cut it anyway). */
__attribute__((warn_unused_result))
int guard_body(struct guard *g, struct guard_conn *c, uint64_t n);

/* The request is complete (WORK). */
void guard_request_work(struct guard *g, struct guard_conn *c);

/* The request is over: back to WAIT. */
void guard_request_end(struct guard *g, struct guard_conn *c);

#endif
