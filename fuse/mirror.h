/*
 * mirror: the client's context, one per mount. Everything the FUSE front
 * end, the uploader and the status reporter share lives here and is passed
 * down explicitly (no globals beyond configuration and the log sink).
 *
 * Fields marked "frozen" are set before the FUSE loop starts and never
 * change. The rest name their own lock.
 */
#ifndef MIRRORFS_MIRROR_H
#define MIRRORFS_MIRROR_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "ofile.h"

struct record_known; /* record.h */

struct queue;
struct links;
struct uploader;
struct qstore;

struct mirror_stats {
	uint64_t files_sent;      /* file commits applied */
	uint64_t ops_applied;     /* every op the server applied */
	uint64_t bytes_read;      /* file bytes read for upload */
	uint64_t bytes_sent;      /* chunk payload bytes sent */
	uint64_t chunks_sent;
	uint64_t chunks_skipped;  /* the server had them already */
	uint64_t skipped_special; /* fifos, sockets, devices: not mirrored */
	uint64_t rejected;        /* refused for good by the server */
	double rate;              /* bytes read for upload per second, smoothed */
	time_t offline_since;     /* 0 when the last request got through */
	time_t last_ok;           /* wall time of the last applied op */
	time_t last_error_at;
	char last_error[512];
	/* reconciliation */
	int reconciling;
	uint64_t rec_entries_done, rec_entries_total;
	uint64_t rec_bytes_done, rec_bytes_total;
	uint64_t rec_runs;
};

struct mirror {
	/* frozen */
	int backing_fd;     /* O_RDONLY|O_DIRECTORY on BACKING, owned */
	char *backing;      /* realpath of BACKING, owned */
	char *mountpoint;   /* realpath of MOUNTPOINT, owned */
	char *server;       /* base URL, owned */
	/* Access to the server (docs/SECURITY.md), set by the front end
	 * before setup_mirror() (setup_set_access() checks and sets both):
	 * absolute paths, owned, NULL when not given. */
	char *token_file;   /* the token to send */
	char *cacert;       /* PEM CA bundle for an https:// server; NULL: the system's */
	char *token;        /* owned; read from token_file by setup_mirror(), NULL: none */
	char *state_dir;    /* owned */
	int lock_fd;        /* owned; flock'ed lock file in state_dir */
	char client_id[33];
	int server_delta;   /* mirrord accepts delta commits ("delta" in ping) */
	int server_bundle;  /* mirrord accepts POST /v1/bundle ("bundle" in ping) */
	int server_stream;  /* ... and X-Mirror-Stream ("stream" in ping) */
	int server_refs;    /* ... and bundles with short frames ("refs") */
	int server_bare;    /* ... and bundles of chunks only ("bare") */
	int server_zjson;   /* ... and zstd JSON bodies of /v1/op and queries */
	int server_brief;   /* ... and brief answers to bundles */
	int server_patch;   /* ... and file ops with patches ("patch") */
	int server_move;    /* ... moves and POST /v1/sig ("move") */
	int server_stage;   /* ... uploads to a stage ("stage") */
	atomic_int busy_workers; /* uploader workers processing an entry */
	int keep_missing;   /* frozen: the front end reports deletions itself
			     * (polling): a sync without QF_GONE that finds
			     * nothing notes a miss (queue.h) instead of
			     * deleting on the server */

	struct queue *q;      /* owned */
	struct ofiles ofiles; /* open files */
	struct links *links;  /* owned */
	struct record_known *known; /* owned, may be NULL: chunk ids given to
				     * the server, shared by the uploaders'
				     * records (record.h) */
	struct uploader *up;  /* owned; started in the FUSE init callback */
	struct qstore *qs;    /* owned; durable copy of q */

	pthread_mutex_t stats_lock;
	struct mirror_stats stats; /* under stats_lock */
	/* status: the bytes of the files waiting to be sent, as last counted
	 * (at most once a second: `sync` reads the status every 10 ms), and
	 * when, in queue_now() time; under stats_lock */
	uint64_t pending_bytes;
	int64_t pending_bytes_at;
};

/* Record a failure for status and the log: one line naming path and reason. */
void mirror_error(struct mirror *m, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
