/*
 * status: see status.h.
 */
#define _GNU_SOURCE
#include "status.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/stat.h>
#endif
#include <time.h>
#include <unistd.h>

#include "queue.h"
#include "safeopen.h"

/* Sizes of the regular files waiting to be sent, as BACKING holds them now
 * (at most STATUS_PENDING_MAX entries are looked at: an lstat each), counted
 * at most once a second. */
#define STATUS_PENDING_MAX 10000

static uint64_t pending_bytes(struct mirror *m)
{
	int64_t now = queue_now();
	pthread_mutex_lock(&m->stats_lock);
	int fresh = m->pending_bytes_at && now - m->pending_bytes_at < 1000000000LL;
	uint64_t sum = m->pending_bytes;
	pthread_mutex_unlock(&m->stats_lock);
	if (fresh)
		return sum;
	sum = 0;
	char **v = queue_pending_paths(m->q, STATUS_PENDING_MAX);
	for (char **p = v; p && *p; p++) {
		struct stat st;
		if (safe_lstat(m->backing_fd, *p, &st) == 0 && S_ISREG(st.st_mode))
			sum += (uint64_t)st.st_size;
		free(*p);
	}
	free(v);
	pthread_mutex_lock(&m->stats_lock);
	m->pending_bytes = sum;
	m->pending_bytes_at = now;
	pthread_mutex_unlock(&m->stats_lock);
	return sum;
}

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
	/* Nothing queued: nothing pending, whatever the last count said. */
	cJSON_AddNumberToObject(o, "pending_bytes",
				(double)(qs.pending || qs.deferred ? pending_bytes(m) : 0));
	cJSON_AddNumberToObject(o, "deferred_ops", (double)qs.deferred);
	cJSON_AddNumberToObject(o, "last_seq", (double)qs.last_seq);
	cJSON_AddNumberToObject(o, "done_seq", (double)qs.done_below);
	cJSON_AddNumberToObject(o, "notes", (double)qs.notes);
	cJSON_AddNumberToObject(o, "files_sent", (double)s.files_sent);
	cJSON_AddNumberToObject(o, "ops_applied", (double)s.ops_applied);
	cJSON_AddNumberToObject(o, "bytes_read", (double)s.bytes_read);
	cJSON_AddNumberToObject(o, "bytes_sent", (double)s.bytes_sent);
	cJSON_AddNumberToObject(o, "rate", s.rate);
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

/* The FUSE build's source: the status ioctl of the mount's root. */
static cJSON *ioctl_read(const struct status_source *src, const char *mnt)
{
	char buf[STATUS_IOCTL_MAX];
	int r = -1;
	int fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		memset(buf, 0, sizeof(buf));
		r = ioctl(fd, STATUS_IOCTL, buf);
		int saverr = errno;
		close(fd);
		errno = saverr;
	}
	if (r < 0) {
		if (errno == ENOTTY || errno == EINVAL || errno == ENOSYS || errno == ENOTSUP ||
		    errno == EOPNOTSUPP)
			fprintf(stderr, "%s: %s: not a mirrorfs mount\n", src->prog, mnt);
		else
			fprintf(stderr, "%s: %s: %s\n", src->prog, mnt, strerror(errno));
		return NULL;
	}
	buf[sizeof(buf) - 1] = '\0';
	cJSON *j = cJSON_Parse(buf);
	if (!j)
		fprintf(stderr, "%s: %s: unreadable status\n", src->prog, mnt);
	return j;
}

/* Push dirty pages cached by the kernel into the mount first, so that
 * everything written before the sync has reached the client. */
static int mount_flush(const struct status_source *src, const char *mnt, double timeout_s)
{
	(void)src;
	(void)timeout_s;
	int fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
#ifdef __linux__
		syncfs(fd);
#else
		sync();
#endif
		close(fd);
	}
	return 0;
}

static const struct status_source ioctl_source = {
	.prog = "mirrorfs",
	.what = "MOUNTPOINT",
	.extra = "",
	.read = ioctl_read,
	.flush = mount_flush,
};

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
	human_bytes(num(s, "pending_bytes"), b1, sizeof(b1));
	printf("pending:       %.0f operations, %s of files (%.0f waiting for files being written)",
	       num(s, "pending_ops"), b1, num(s, "deferred_ops"));
	if (num(s, "rate") > 0 && num(s, "pending_bytes") > 0)
		printf(", about %.0f s left", num(s, "pending_bytes") / num(s, "rate"));
	printf("\n");
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
	if (num(s, "rate") > 0) {
		human_bytes(num(s, "rate"), b1, sizeof(b1));
		printf("rate:          %s/s\n", b1);
	}
	if (cJSON_IsObject(rec) && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "active"))) {
		double done = num(rec, "bytes_done"), total = num(rec, "bytes_total");
		double edone = num(rec, "entries_done"), etotal = num(rec, "entries_total");
		human_bytes(done, b1, sizeof(b1));
		human_bytes(total, b2, sizeof(b2));
		printf("reconciling:   %.0f / %.0f entries, %s / %s", edone, etotal, b1, b2);
		if (num(s, "rate") > 0 && total > done)
			printf(", about %.0f s left", (total - done) / num(s, "rate"));
		printf("\n");
		if (isatty(STDOUT_FILENO)) {
			/* a bar, by bytes if there are any to send, else by entries */
			double f = total > 0 ? done / total : etotal > 0 ? edone / etotal : 0;
			int w = 40, fill = (int)(f * w + 0.5);
			printf("               [");
			for (int i = 0; i < w; i++)
				putchar(i < fill ? '#' : '.');
			printf("] %3.0f%%\n", f * 100);
		}
	}
	if (cJSON_IsString(err) && err->valuestring[0])
		printf("last error:    %s (%.0f s ago)\n", err->valuestring,
		       (double)now - num(s, "last_error_at"));
}

static void status_usage(const struct status_source *src)
{
	fprintf(stderr, "usage: %s status %s [--json]%s\n", src->prog, src->what, src->extra);
}

int status_cmd_with(const struct status_source *src, int argc, char **argv)
{
	int json = 0;
	const char *mnt = NULL;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else if (!mnt && argv[i][0] != '-')
			mnt = argv[i];
		else {
			status_usage(src);
			return 2;
		}
	}
	if (!mnt) {
		status_usage(src);
		return 2;
	}
	cJSON *s = src->read(src, mnt);
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

static void sync_usage(const struct status_source *src)
{
	fprintf(stderr, "usage: %s sync %s [--timeout SECONDS]%s\n", src->prog, src->what,
		src->extra);
}

static double elapsed_since(const struct timespec *start)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start->tv_sec) + (now.tv_nsec - start->tv_nsec) / 1e9;
}

int sync_cmd_with(const struct status_source *src, int argc, char **argv)
{
	const char *mnt = NULL;
	double timeout = 0;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
			char *end;
			timeout = strtod(argv[++i], &end);
			if (*end || timeout < 0) {
				fprintf(stderr, "%s: sync: invalid timeout '%s'\n", src->prog, argv[i]);
				return 2;
			}
		} else if (!mnt && argv[i][0] != '-') {
			mnt = argv[i];
		} else {
			sync_usage(src);
			return 2;
		}
	}
	if (!mnt) {
		sync_usage(src);
		return 2;
	}
	/* The clock starts before the flush: --timeout bounds the whole
	 * command, including the wait for the flush (a poller's scan). */
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	if (src->flush && src->flush(src, mnt, timeout) < 0)
		return 1;
	cJSON *s = src->read(src, mnt);
	if (!s)
		return 1;
	double target = num(s, "last_seq");
	/* A front end that scans (flush) may have notes left by what was sent
	 * (queue.h): it acts on them at its next scan, so look once more. A
	 * few rounds at most: notes from changes made after the call are not
	 * this call's to wait for. */
	int rounds = 3;
	for (;;) {
		if (is_done(s, target)) {
			int look_again = src->flush && num(s, "notes") > 0 && rounds-- > 0;
			cJSON_Delete(s);
			if (!look_again)
				return 0;
			double left = timeout > 0 ? timeout - elapsed_since(&start) : 0;
			if (timeout > 0 && left <= 0)
				left = 0.001; /* the flush's own wait stays bounded */
			if (src->flush(src, mnt, left) < 0 || !(s = src->read(src, mnt)))
				return 1;
			target = num(s, "last_seq");
			continue;
		}
		if (timeout > 0 && elapsed_since(&start) >= timeout) {
			const cJSON *err = cJSON_GetObjectItemCaseSensitive(s, "last_error");
			fprintf(stderr,
				"%s: sync: timed out after %.0f s: %.0f operations pending, server %s%s%s\n",
				src->prog, timeout, num(s, "pending_ops"),
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
		s = src->read(src, mnt);
		if (!s)
			return 1;
	}
}

int status_cmd(int argc, char **argv)
{
	return status_cmd_with(&ioctl_source, argc, argv);
}

int sync_cmd(int argc, char **argv)
{
	return sync_cmd_with(&ioctl_source, argc, argv);
}
