/* Unit tests for server/metrics (the Prometheus text) and server/guard
 * (connection deadlines). */
#include <CUnit/CUnit.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* No -Iserver in the Makefile: reach the server headers relatively. */
#include "../../server/guard.h"
#include "../../server/metrics.h"

static int has_line(const struct buf *b, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = b->data; p && (p = strstr(p, line)); p++)
		if ((p == b->data || p[-1] == '\n') && p[n] == '\n')
			return 1;
	return 0;
}

static void test_render(void)
{
	struct metrics *m = metrics_new();
	struct buf b;
	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	buf_init(&b, 1 << 20);

	metrics_request(m, R_OP, 200);
	metrics_request(m, R_OP, 200);
	metrics_request(m, R_NONE, 401);
	metrics_request(m, R_CHUNKS, 0);
	metrics_request(m, R_PING, 999); /* out of range: no answer */
	metrics_add(m, M_BYTES_RECEIVED, 1234);
	metrics_add(m, M_BYTES_SAVED, 7);
	metrics_apply_time(m, 2000000);     /* 2 ms */
	metrics_apply_time(m, 20000000000); /* 20 s: only +Inf */
	metrics_connection(m, 1);
	int dfd = open("/tmp", O_RDONLY | O_DIRECTORY);
	CU_ASSERT_EQUAL(metrics_render(m, dfd, &b), 0);
	close(dfd);

	CU_ASSERT(has_line(&b, "mirrord_requests_total{route=\"op\",status=\"200\"} 2"));
	CU_ASSERT(has_line(&b, "mirrord_requests_total{route=\"none\",status=\"401\"} 1"));
	CU_ASSERT(has_line(&b, "mirrord_requests_total{route=\"chunks\",status=\"0\"} 1"));
	CU_ASSERT(has_line(&b, "mirrord_requests_total{route=\"ping\",status=\"0\"} 1"));
	CU_ASSERT(has_line(&b, "# TYPE mirrord_requests_total counter"));
	CU_ASSERT(has_line(&b, "mirrord_received_bytes_total 1234"));
	CU_ASSERT(has_line(&b, "mirrord_dedup_saved_bytes_total 7"));
	CU_ASSERT(has_line(&b, "mirrord_chunks_received_total 0"));
	CU_ASSERT(has_line(&b, "mirrord_apply_duration_seconds_bucket{le=\"0.001\"} 0"));
	CU_ASSERT(has_line(&b, "mirrord_apply_duration_seconds_bucket{le=\"0.005\"} 1"));
	CU_ASSERT(has_line(&b, "mirrord_apply_duration_seconds_bucket{le=\"10\"} 1"));
	CU_ASSERT(has_line(&b, "mirrord_apply_duration_seconds_bucket{le=\"+Inf\"} 2"));
	CU_ASSERT(has_line(&b, "mirrord_apply_duration_seconds_count 2"));
	CU_ASSERT(has_line(&b, "mirrord_apply_duration_seconds_sum 20.002000000"));
	CU_ASSERT(has_line(&b, "mirrord_connections_active 1"));
	CU_ASSERT(has_line(&b, "# TYPE mirrord_dir_free_bytes gauge"));
	CU_ASSERT_PTR_NULL(strstr(b.data, "route=\"query\"")); /* zero: not listed */

	/* Over the buffer's cap: an error, never a cut exposition. */
	struct buf small;
	buf_init(&small, 100);
	CU_ASSERT_EQUAL(metrics_render(m, -1, &small), -EMSGSIZE);
	buf_release(&small);
	buf_release(&b);
	metrics_free(m);
}

/* 1 if the peer of fd shut the connection down within ms. */
static int closed_within(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;
	return poll(&p, 1, ms) == 1 && read(fd, &c, 1) == 0;
}

static void test_guard(void)
{
	struct guard_cfg cfg = { .timeout_s = 1, .min_rate = 1024 };
	struct metrics *m = metrics_new();
	struct guard *g = NULL;
	int idle[2], work[2];

	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_EQUAL_FATAL(guard_start(&cfg, m, &g), 0);
	CU_ASSERT_EQUAL_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, idle), 0);
	CU_ASSERT_EQUAL_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, work), 0);
	struct guard_conn *ci = guard_conn_open(g, idle[0], "idle");
	struct guard_conn *cw = guard_conn_open(g, work[0], "work");
	CU_ASSERT_PTR_NOT_NULL_FATAL(ci);
	CU_ASSERT_PTR_NOT_NULL_FATAL(cw);
	guard_request_begin(g, cw, 1);
	CU_ASSERT_EQUAL(guard_body(g, cw, 10), 0); /* within the budget */
	guard_request_work(g, cw);

	/* WAIT for more than timeout_s: cut (within a tick or so). */
	CU_ASSERT(closed_within(idle[1], 3000));
	/* WORK has no deadline: still open. */
	CU_ASSERT(!closed_within(work[1], 10));
	/* A body that keeps to nothing is late once past the budget. */
	guard_request_begin(g, cw, 1);
	CU_ASSERT(closed_within(work[1], 3000));
	CU_ASSERT_EQUAL(guard_body(g, cw, 1), -ETIMEDOUT);

	guard_conn_close(g, ci);
	guard_conn_close(g, cw);
	guard_stop(g);
	struct buf b;
	buf_init(&b, 1 << 20);
	CU_ASSERT_EQUAL(metrics_render(m, -1, &b), 0);
	CU_ASSERT(has_line(&b, "mirrord_connections_cut_total 2"));
	buf_release(&b);
	metrics_free(m);
	close(idle[0]);
	close(idle[1]);
	close(work[0]);
	close(work[1]);
}

int suite_server_metrics(void)
{
	CU_pSuite s = CU_add_suite("server_metrics", NULL, NULL);
	if (!s)
		return CU_get_error();
	if (!CU_add_test(s, "render", test_render) || !CU_add_test(s, "guard", test_guard))
		return CU_get_error();
	return 0;
}
