#define _GNU_SOURCE
#include "status.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "queue.h"

char *status_json(struct mirror *m, size_t *len)
{
	struct queue_stats qs;
	struct mirror_stats s;
	queue_get_stats(m->q, &qs);
	pthread_mutex_lock(&m->stats_lock);
	s = m->stats;
	pthread_mutex_unlock(&m->stats_lock);

	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "server", m->server);
	cJSON_AddStringToObject(o, "backing", m->backing);
	cJSON_AddBoolToObject(o, "online", s.offline_since == 0);
	if (s.offline_since)
		cJSON_AddNumberToObject(o, "offline_since", (double)s.offline_since);
	else
		cJSON_AddNullToObject(o, "offline_since");
	cJSON_AddNumberToObject(o, "pending_ops", (double)qs.pending);
	cJSON_AddNumberToObject(o, "deferred_ops", (double)qs.deferred);
	cJSON_AddNumberToObject(o, "last_seq", (double)qs.last_seq);
	cJSON_AddNumberToObject(o, "done_seq", (double)qs.done_below);
	cJSON_AddNumberToObject(o, "files_sent", (double)s.files_sent);
	cJSON_AddNumberToObject(o, "ops_applied", (double)s.ops_applied);
	cJSON_AddNumberToObject(o, "bytes_read", (double)s.bytes_read);
	cJSON_AddNumberToObject(o, "bytes_sent", (double)s.bytes_sent);
	cJSON_AddNumberToObject(o, "chunks_sent", (double)s.chunks_sent);
	cJSON_AddNumberToObject(o, "chunks_skipped", (double)s.chunks_skipped);
	cJSON_AddNumberToObject(o, "skipped_special", (double)s.skipped_special);
	cJSON_AddNumberToObject(o, "rejected", (double)s.rejected);
	cJSON_AddNumberToObject(o, "last_ok", (double)s.last_ok);
	cJSON_AddStringToObject(o, "last_error", s.last_error);
	cJSON_AddNumberToObject(o, "last_error_at", (double)s.last_error_at);
	cJSON *r = cJSON_AddObjectToObject(o, "reconcile");
	if (r) {
		cJSON_AddBoolToObject(r, "active", s.reconciling);
		cJSON_AddNumberToObject(r, "runs", (double)s.rec_runs);
		cJSON_AddNumberToObject(r, "entries_done", (double)s.rec_entries_done);
		cJSON_AddNumberToObject(r, "entries_total", (double)s.rec_entries_total);
		cJSON_AddNumberToObject(r, "bytes_done", (double)s.rec_bytes_done);
		cJSON_AddNumberToObject(r, "bytes_total", (double)s.rec_bytes_total);
	}
	char *txt = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (txt)
		*len = strlen(txt);
	return txt;
}

/* Read the status of the mirrorfs mounted at mnt. Returns a cJSON tree
 * (caller deletes) or NULL with a message printed. */
static cJSON *read_status(const char *mnt, int quiet)
{
	char buf[65536];
	ssize_t n;
	for (int tries = 0; tries < 10; tries++) {
		n = getxattr(mnt, STATUS_XATTR, buf, sizeof(buf) - 1);
		if (n >= 0 || errno != ERANGE)
			break;
	}
	if (n < 0) {
		if (!quiet) {
			if (errno == ENODATA || errno == ENOTSUP || errno == EOPNOTSUPP)
				fprintf(stderr, "mirrorfs: %s: not a mirrorfs mount\n", mnt);
			else
				fprintf(stderr, "mirrorfs: %s: %s\n", mnt, strerror(errno));
		}
		return NULL;
	}
	buf[n] = '\0';
	cJSON *j = cJSON_Parse(buf);
	if (!j && !quiet)
		fprintf(stderr, "mirrorfs: %s: unreadable status\n", mnt);
	return j;
}

static double num(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static void human_bytes(double b, char *out, size_t len)
{
	const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	int i = 0;
	while (b >= 1024 && i < 4) {
		b /= 1024;
		i++;
	}
	snprintf(out, len, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

static void print_human(const cJSON *s)
{
	char b1[32], b2[32];
	time_t now = time(NULL);
	const cJSON *online = cJSON_GetObjectItemCaseSensitive(s, "online");
	const cJSON *srv = cJSON_GetObjectItemCaseSensitive(s, "server");
	const cJSON *err = cJSON_GetObjectItemCaseSensitive(s, "last_error");
	const cJSON *rec = cJSON_GetObjectItemCaseSensitive(s, "reconcile");

	printf("server:        %s (%s", cJSON_IsString(srv) ? srv->valuestring : "?",
	       cJSON_IsTrue(online) ? "reachable" : "unreachable");
	if (!cJSON_IsTrue(online))
		printf(", offline since %.0f s ago", (double)now - num(s, "offline_since"));
	printf(")\n");
	printf("pending:       %.0f operations (%.0f waiting for files being written)\n",
	       num(s, "pending_ops"), num(s, "deferred_ops"));
	human_bytes(num(s, "bytes_sent"), b1, sizeof(b1));
	human_bytes(num(s, "bytes_read"), b2, sizeof(b2));
	printf("sent:          %.0f files, %s on the wire for %s read, %.0f chunks already there\n",
	       num(s, "files_sent"), b1, b2, num(s, "chunks_skipped"));
	if (num(s, "last_ok") > 0)
		printf("last sync:     %.0f s ago\n", (double)now - num(s, "last_ok"));
	else
		printf("last sync:     never\n");
	printf("skipped:       %.0f special files (not mirrored), %.0f refused by the server\n",
	       num(s, "skipped_special"), num(s, "rejected"));
	if (cJSON_IsObject(rec) && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "active"))) {
		human_bytes(num(rec, "bytes_done"), b1, sizeof(b1));
		human_bytes(num(rec, "bytes_total"), b2, sizeof(b2));
		printf("reconciling:   %.0f / %.0f entries, %s / %s\n", num(rec, "entries_done"),
		       num(rec, "entries_total"), b1, b2);
	}
	if (cJSON_IsString(err) && err->valuestring[0])
		printf("last error:    %s (%.0f s ago)\n", err->valuestring,
		       (double)now - num(s, "last_error_at"));
}

int status_cmd(int argc, char **argv)
{
	int json = 0;
	const char *mnt = NULL;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else if (!mnt && argv[i][0] != '-')
			mnt = argv[i];
		else {
			fprintf(stderr, "usage: mirrorfs status MOUNTPOINT [--json]\n");
			return 2;
		}
	}
	if (!mnt) {
		fprintf(stderr, "usage: mirrorfs status MOUNTPOINT [--json]\n");
		return 2;
	}
	cJSON *s = read_status(mnt, 0);
	if (!s)
		return 1;
	if (json) {
		char *t = cJSON_Print(s);
		if (t)
			printf("%s\n", t);
		free(t);
	} else {
		print_human(s);
	}
	cJSON_Delete(s);
	return 0;
}

static int is_done(const cJSON *s, double target)
{
	const cJSON *rec = cJSON_GetObjectItemCaseSensitive(s, "reconcile");
	return num(s, "done_seq") >= target &&
	       !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "active"));
}

int sync_cmd(int argc, char **argv)
{
	const char *mnt = NULL;
	double timeout = 0;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
			char *end;
			timeout = strtod(argv[++i], &end);
			if (*end || timeout < 0) {
				fprintf(stderr, "mirrorfs: sync: invalid timeout '%s'\n", argv[i]);
				return 2;
			}
		} else if (!mnt && argv[i][0] != '-') {
			mnt = argv[i];
		} else {
			fprintf(stderr, "usage: mirrorfs sync MOUNTPOINT [--timeout SECONDS]\n");
			return 2;
		}
	}
	if (!mnt) {
		fprintf(stderr, "usage: mirrorfs sync MOUNTPOINT [--timeout SECONDS]\n");
		return 2;
	}
	/* Push dirty pages cached by the kernel into the mount first, so that
	 * everything written before this call has reached the client. */
	int fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		syncfs(fd);
		close(fd);
	}
	cJSON *s = read_status(mnt, 0);
	if (!s)
		return 1;
	double target = num(s, "last_seq");
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		if (is_done(s, target)) {
			cJSON_Delete(s);
			return 0;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		double el = (double)(now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9;
		if (timeout > 0 && el >= timeout) {
			const cJSON *err = cJSON_GetObjectItemCaseSensitive(s, "last_error");
			fprintf(stderr,
				"mirrorfs: sync: timed out after %.0f s: %.0f operations pending, server %s%s%s\n",
				timeout, num(s, "pending_ops"),
				cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "online"))
					? "reachable"
					: "unreachable",
				cJSON_IsString(err) && err->valuestring[0] ? "; last error: " : "",
				cJSON_IsString(err) ? err->valuestring : "");
			cJSON_Delete(s);
			return 1;
		}
		cJSON_Delete(s);
		/* Bounded poll: the status is cheap to read. */
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
		s = read_status(mnt, 0);
		if (!s)
			return 1;
	}
}
