#define _GNU_SOURCE
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sqlerr.h"

enum {
	Q_GET,
	Q_DROP,
	Q_PUT,
	Q_FORGET,
	Q_MOVE,
	Q_LGET,
	Q_LPUT,
	Q_LFORGET,
	Q_LMOVE,
	Q_LHAS,
	Q_SEQ_GET,
	Q_SEQ_SET,
	Q_BEGIN,
	Q_RBEGIN,
	Q_COMMIT,
	Q_ROLLBACK,
	Q_COUNT
};

/*
 * Prefix ranges: the entries "at or beneath P" are path = P or
 * P + "/" <= path < P + "0" ('0' follows '/'), bytewise on BLOBs.
 * Q_MOVE rewrites the prefix: new = to || substr(path, len(from) + 1),
 * cast back to BLOB so that every stored path stays a BLOB.
 * Exchange parks one side under the prefix "/" (no mirror path starts with
 * '/', so nothing real lives there) for the moment of the swap.
 */
static const char *const sql_text[Q_COUNT] = {
	[Q_GET] = "SELECT path, off, len FROM chunkloc WHERE id = ?1 LIMIT 1",
	[Q_DROP] = "DELETE FROM chunkloc WHERE id = ?1 AND path = ?2 AND off = ?3",
	/* A chunk's first place in a file (a run of zeros is one entry). */
	[Q_PUT] = "INSERT OR IGNORE INTO chunkloc(id, path, off, len) VALUES (?1, ?2, ?3, ?4)",
	[Q_FORGET] = "DELETE FROM chunkloc WHERE path = ?1 OR (path >= ?2 AND path < ?3)",
	[Q_MOVE] = "UPDATE chunkloc SET path = CAST(CAST(?4 AS BLOB) || substr(path, ?5) AS BLOB) "
		   "WHERE path = ?1 OR (path >= ?2 AND path < ?3)",
	[Q_LGET] = "SELECT digest, list FROM lists WHERE path = ?1",
	[Q_LPUT] = "INSERT OR REPLACE INTO lists(path, digest, list) VALUES (?1, ?2, ?3)",
	[Q_LFORGET] = "DELETE FROM lists WHERE path = ?1 OR (path >= ?2 AND path < ?3)",
	[Q_LMOVE] = "UPDATE lists SET path = CAST(CAST(?4 AS BLOB) || substr(path, ?5) AS BLOB) "
		    "WHERE path = ?1 OR (path >= ?2 AND path < ?3)",
	/* Every indexed file has a list: what is indexed at or beneath ?1. */
	[Q_LHAS] = "SELECT 1 FROM lists WHERE path = ?1 OR (path >= ?2 AND path < ?3) LIMIT 1",
	[Q_SEQ_GET] = "SELECT seq FROM clients WHERE id = ?1",
	[Q_SEQ_SET] = "INSERT INTO clients(id, seq) VALUES (?1, ?2) "
		      "ON CONFLICT(id) DO UPDATE SET seq = max(seq, excluded.seq)",
	[Q_BEGIN] = "BEGIN IMMEDIATE",
	[Q_RBEGIN] = "BEGIN",
	[Q_COMMIT] = "COMMIT",
	[Q_ROLLBACK] = "ROLLBACK",
};

static const char schema[] =
	"PRAGMA journal_mode=WAL;"
	/* The chunk index and the lists are hints, checked by hash before use:
	 * they need not reach the disk before a reply. Only the replay record
	 * must (state_seq_set syncs explicitly). */
	"PRAGMA synchronous=NORMAL;"
	/* Every file a chunk is in (one place in each): when one of them
	 * changes, the others still have it. */
	"CREATE TABLE IF NOT EXISTS chunkloc(id BLOB NOT NULL, path BLOB NOT NULL,"
	" off INTEGER NOT NULL, len INTEGER NOT NULL, PRIMARY KEY(id, path)) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS chunkloc_path ON chunkloc(path);"
	"CREATE TABLE IF NOT EXISTS clients(id TEXT PRIMARY KEY, seq INTEGER NOT NULL)"
	" WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS lists(path BLOB PRIMARY KEY, digest BLOB NOT NULL,"
	" list BLOB NOT NULL);";

/* Index writes wait in memory (state.h, "Deferred index writes"). */
#define PEND_FILES_MAX 256
#define PEND_CHUNKS_MAX 16384
#define PEND_BUCKETS 8192 /* a power of two */

struct pend_file {
	char *path;              /* owned */
	struct proto_chunk *c;   /* owned */
	size_t n;
};

struct pend_chunk {
	struct hash_id id;
	uint64_t off;            /* its first place in the file */
	uint32_t len;
	uint32_t file;           /* index into pf */
	int32_t next;            /* in its bucket, or -1 */
};

struct state {
	pthread_mutex_t lock; /* guards db, every statement and the pending writes */
	sqlite3 *db;
	sqlite3_stmt *q[Q_COUNT];
	struct pend_file *pf;    /* owned, PEND_FILES_MAX; NULL until first use */
	struct pend_chunk *pc;   /* owned, PEND_CHUNKS_MAX */
	int32_t *bucket;         /* owned, PEND_BUCKETS heads */
	size_t npf, npc;
	int64_t pend_since;      /* CLOCK_MONOTONIC ms of the oldest pending file */
};


static void lock(struct state *st)
{
	int r = pthread_mutex_lock(&st->lock);
	if (r) {
		log_error("state lock: %s", strerror(r));
		abort();
	}
}

static void unlock(struct state *st)
{
	int r = pthread_mutex_unlock(&st->lock);
	if (r) {
		log_error("state unlock: %s", strerror(r));
		abort();
	}
}

/* Run a statement without result rows and reset it. */
static int run(struct state *st, sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	if (rc != SQLITE_DONE) {
		log_error("state db: %s", sqlite3_errmsg(st->db));
		return sqlerr_errno(rc) ? sqlerr_errno(rc) : -EIO;
	}
	return 0;
}

/* A database of an older mirrord has the index as chunks(id PRIMARY KEY,
 * ...), one place per chunk: move its entries over, once. */
static int upgrade(struct state *st)
{
	sqlite3_stmt *s = NULL;
	int old = 0;
	if (sqlite3_prepare_v2(st->db,
			       "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'chunks'",
			       -1, &s, NULL) == SQLITE_OK)
		old = sqlite3_step(s) == SQLITE_ROW;
	sqlite3_finalize(s);
	if (!old)
		return 0;
	char *err = NULL;
	int rc = sqlite3_exec(st->db,
			      "BEGIN IMMEDIATE;"
			      "INSERT OR IGNORE INTO chunkloc(id, path, off, len)"
			      " SELECT id, path, off, len FROM chunks;"
			      "DROP TABLE chunks;"
			      "COMMIT;",
			      NULL, NULL, &err);
	if (rc != SQLITE_OK) {
		log_error("state db: moving the chunk index to its new table: %s",
			  err ? err : sqlite3_errstr(rc));
		sqlite3_free(err);
		if (!sqlite3_get_autocommit(st->db))
			sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
		return sqlerr_errno(rc) ? sqlerr_errno(rc) : -EIO;
	}
	log_info("state db: chunk index moved to its new table (a place in every file)");
	return 0;
}

static int begin(struct state *st);
static int end(struct state *st, int r);
static int index_file_locked(struct state *st, const char *path, const struct proto_chunk *chunks,
			     size_t n);

static int64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static size_t pend_slot(const struct hash_id *id)
{
	uint64_t h;
	memcpy(&h, id->b, sizeof(h)); /* ids are uniformly random */
	return (size_t)(h & (PEND_BUCKETS - 1));
}

/* Under the lock: forget every pending write. */
static void pend_clear(struct state *st)
{
	for (size_t k = 0; k < st->npf; k++) {
		free(st->pf[k].path);
		free(st->pf[k].c);
	}
	st->npf = st->npc = 0;
	if (st->bucket)
		memset(st->bucket, 0xff, PEND_BUCKETS * sizeof(*st->bucket)); /* all -1 */
}

/* Under the lock: the pending writes go to the database, in one
 * transaction. A failure loses them (logged): the index is a hint. */
static int flush_locked(struct state *st)
{
	if (st->npf == 0)
		return 0;
	int r = begin(st);
	for (size_t k = 0; r == 0 && k < st->npf; k++)
		r = index_file_locked(st, st->pf[k].path, st->pf[k].c, st->pf[k].n);
	r = end(st, r);
	if (r < 0)
		log_warn("state db: the chunk index entries of %zu files are lost: %s", st->npf,
			 strerror(-r));
	pend_clear(st);
	return r;
}

/* 1 if a and b are the same path, or one lies beneath the other. */
static int related(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), m = la < lb ? la : lb;
	if (memcmp(a, b, m) != 0)
		return 0;
	return la == lb || m == 0 || (la > lb ? a : b)[m] == '/';
}

static int bind_prefix(sqlite3_stmt *s, const char *p, char **bounds);

/* Under the lock: 1 if the database indexes something at or beneath path,
 * 0 if not, or a negative errno. */
static int indexed(struct state *st, const char *path)
{
	sqlite3_stmt *s = st->q[Q_LHAS];
	char *b[2] = { NULL, NULL };
	int r = bind_prefix(s, path, b);
	if (r == 0) {
		int rc = sqlite3_step(s);
		r = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : sqlerr_errno(rc) ? sqlerr_errno(rc) : -EIO;
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	free(b[0]);
	free(b[1]);
	return r;
}

/* Under the lock: file path's entries wait in memory. Returns 0, or
 * -E2BIG if they cannot wait (the caller writes them at once, after what
 * waits): too many chunks, or the database indexes something at or
 * beneath path (a new version: the entries it replaces must go now, or a
 * lookup could still find them); -ENOMEM. A pending write of the same
 * path, or of one above or beneath it, goes to the database first. So no
 * entry a lookup finds is one a pending write will remove. */
static int pend_add(struct state *st, const char *path, const struct proto_chunk *c, size_t n)
{
	for (size_t k = 0; k < st->npf; k++)
		if (related(st->pf[k].path, path)) {
			flush_locked(st);
			break;
		}
	if (n > PEND_CHUNKS_MAX || indexed(st, path) != 0)
		return -E2BIG;
	if (!st->pf) {
		st->pf = calloc(PEND_FILES_MAX, sizeof(*st->pf));
		st->pc = malloc(PEND_CHUNKS_MAX * sizeof(*st->pc));
		st->bucket = malloc(PEND_BUCKETS * sizeof(*st->bucket));
		if (!st->pf || !st->pc || !st->bucket) {
			free(st->pf);
			free(st->pc);
			free(st->bucket);
			st->pf = NULL;
			st->pc = NULL;
			st->bucket = NULL;
			return -ENOMEM;
		}
		memset(st->bucket, 0xff, PEND_BUCKETS * sizeof(*st->bucket));
	}
	if (st->npf == PEND_FILES_MAX || st->npc + n > PEND_CHUNKS_MAX)
		flush_locked(st);
	char *p = strdup(path);
	struct proto_chunk *cc = malloc(n ? n * sizeof(*cc) : 1);
	if (!p || !cc) {
		free(p);
		free(cc);
		return -ENOMEM;
	}
	if (n)
		memcpy(cc, c, n * sizeof(*cc));
	uint32_t f = (uint32_t)st->npf++;
	st->pf[f] = (struct pend_file){ .path = p, .c = cc, .n = n };
	if (f == 0)
		st->pend_since = now_ms();
	uint64_t off = 0;
	for (size_t i = 0; i < n; off += c[i++].len) {
		struct pend_chunk *e = &st->pc[st->npc];
		size_t b = pend_slot(&c[i].id);
		*e = (struct pend_chunk){ .id = c[i].id, .off = off, .len = c[i].len, .file = f,
					  .next = st->bucket[b] };
		st->bucket[b] = (int32_t)st->npc++;
	}
	return 0;
}

/* Under the lock: the first pending place of id (its first offset in the
 * first file that waits with it, as the table keeps), or NULL. */
static const struct pend_chunk *pend_find(const struct state *st, const struct hash_id *id)
{
	const struct pend_chunk *first = NULL;
	if (st->npc == 0)
		return NULL;
	/* Newest first in a bucket: the last match is the oldest. */
	for (int32_t i = st->bucket[pend_slot(id)]; i >= 0; i = st->pc[i].next)
		if (hash_equal(&st->pc[i].id, id))
			first = &st->pc[i];
	return first;
}

void state_tick(struct state *st)
{
	lock(st);
	if (st->npf && now_ms() - st->pend_since >= STATE_PEND_MS)
		flush_locked(st);
	unlock(st);
}

int state_open(const char *path, struct state **out)
{
	struct state *st = calloc(1, sizeof(*st));
	int r, rc;
	if (!st)
		return -ENOMEM;
	if ((r = pthread_mutex_init(&st->lock, NULL)) != 0) {
		free(st);
		return -r;
	}
	/* Create it 0600 ourselves: SQLite would use 0644. */
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		r = -errno;
		goto fail;
	}
	close(fd);
	rc = sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		r = sqlerr_errno(rc);
		goto fail;
	}
	sqlite3_busy_timeout(st->db, 5000);
	char *err = NULL;
	rc = sqlite3_exec(st->db, schema, NULL, NULL, &err);
	if (rc != SQLITE_OK) {
		log_error("state db %s: %s", path, err ? err : sqlite3_errstr(rc));
		sqlite3_free(err);
		r = sqlerr_errno(rc) ? sqlerr_errno(rc) : -EIO;
		goto fail;
	}
	if ((r = upgrade(st)) < 0)
		goto fail;
	for (int i = 0; i < Q_COUNT; i++) {
		rc = sqlite3_prepare_v3(st->db, sql_text[i], -1, SQLITE_PREPARE_PERSISTENT,
					&st->q[i], NULL);
		if (rc != SQLITE_OK) {
			log_error("state db: %s: %s", sql_text[i], sqlite3_errmsg(st->db));
			r = sqlerr_errno(rc) ? sqlerr_errno(rc) : -EIO;
			goto fail;
		}
	}
	*out = st;
	return 0;
fail:
	state_close(st);
	return r;
}

void state_close(struct state *st)
{
	if (!st)
		return;
	if (st->db && st->q[Q_COUNT - 1]) {
		lock(st);
		flush_locked(st);
		unlock(st);
	}
	free(st->pf);
	free(st->pc);
	free(st->bucket);
	for (int i = 0; i < Q_COUNT; i++)
		sqlite3_finalize(st->q[i]);
	if (st->db)
		sqlite3_close(st->db);
	pthread_mutex_destroy(&st->lock);
	free(st);
}

int state_index_get(struct state *st, const struct hash_id *id, char **path, uint64_t *off,
		    uint32_t *len)
{
	sqlite3_stmt *s = st->q[Q_GET];
	int r = 0;
	lock(st);
	const struct pend_chunk *e = pend_find(st, id);
	if (e) {
		char *c = strdup(st->pf[e->file].path);
		*path = c;
		*off = e->off;
		*len = e->len;
		unlock(st);
		return c ? 1 : -ENOMEM;
	}
	sqlite3_bind_blob(s, 1, id->b, HASH_LEN, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const void *p = sqlite3_column_blob(s, 0);
		int n = sqlite3_column_bytes(s, 0);
		sqlite3_int64 o = sqlite3_column_int64(s, 1);
		sqlite3_int64 l = sqlite3_column_int64(s, 2);
		char *c = malloc((size_t)n + 1);
		if (!c) {
			r = -ENOMEM;
		} else if (o < 0 || l <= 0 || l > UINT32_MAX || (n > 0 && !p)) {
			free(c);
			r = 0; /* nonsense entry: as good as none */
		} else {
			if (n)
				memcpy(c, p, (size_t)n);
			c[n] = '\0';
			*path = c;
			*off = (uint64_t)o;
			*len = (uint32_t)l;
			r = 1;
		}
	} else if (rc != SQLITE_DONE) {
		r = sqlerr_errno(rc) ? sqlerr_errno(rc) : -EIO;
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	unlock(st);
	return r;
}

int state_index_lens(struct state *st, const struct hash_id *ids, size_t n, uint32_t *lens)
{
	sqlite3_stmt *s = st->q[Q_GET];
	int r = 0;
	lock(st);
	/* One read transaction for all: alone, each lookup takes and drops
	 * the WAL read lock (fcntl calls that cost more than the lookup). */
	int txn = run(st, st->q[Q_RBEGIN]) == 0;
	for (size_t i = 0; i < n; i++) {
		const struct pend_chunk *e = pend_find(st, &ids[i]);
		lens[i] = e ? e->len : 0;
		if (e)
			continue;
		sqlite3_bind_blob(s, 1, ids[i].b, HASH_LEN, SQLITE_STATIC);
		int rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			sqlite3_int64 l = sqlite3_column_int64(s, 2);
			if (sqlite3_column_int64(s, 1) >= 0 && l > 0 && l <= UINT32_MAX)
				lens[i] = (uint32_t)l;
		} else if (rc != SQLITE_DONE && r == 0) {
			r = sqlerr_errno(rc) ? sqlerr_errno(rc) : -EIO;
		}
		sqlite3_reset(s);
	}
	sqlite3_clear_bindings(s);
	if (txn)
		end(st, 0);
	unlock(st);
	return r;
}

int state_index_has(struct state *st, const struct hash_id *id)
{
	char *path = NULL;
	uint64_t off;
	uint32_t len;
	int r = state_index_get(st, id, &path, &off, &len);
	free(path);
	return r == 1;
}

int state_index_drop(struct state *st, const struct hash_id *id, const char *path, uint64_t off)
{
	sqlite3_stmt *s = st->q[Q_DROP];
	lock(st);
	flush_locked(st);
	sqlite3_bind_blob(s, 1, id->b, HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(s, 2, path, (int)strlen(path), SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)off);
	int r = run(st, s);
	unlock(st);
	return r;
}

/* Bind P, P + "/", P + "0" to parameters 1..3 of s. bounds holds the two
 * bound strings and must live until the statement is reset. */
static int bind_prefix(sqlite3_stmt *s, const char *p, char **bounds)
{
	size_t n = strlen(p);
	bounds[0] = malloc(n + 1);
	bounds[1] = malloc(n + 1);
	if (!bounds[0] || !bounds[1])
		return -ENOMEM;
	memcpy(bounds[0], p, n);
	memcpy(bounds[1], p, n);
	bounds[0][n] = '/';
	bounds[1][n] = '0';
	sqlite3_bind_blob(s, 1, p, (int)n, SQLITE_STATIC);
	sqlite3_bind_blob(s, 2, bounds[0], (int)n + 1, SQLITE_STATIC);
	sqlite3_bind_blob(s, 3, bounds[1], (int)n + 1, SQLITE_STATIC);
	return 0;
}

/* Under the lock. */
static int forget_one(struct state *st, sqlite3_stmt *s, const char *path)
{
	char *b[2] = { NULL, NULL };
	int r = bind_prefix(s, path, b);
	if (r == 0)
		r = run(st, s);
	else
		sqlite3_clear_bindings(s);
	free(b[0]);
	free(b[1]);
	return r;
}

/* Under the lock: forget chunk locations and file lists at or beneath path. */
static int forget_locked(struct state *st, const char *path)
{
	int r = forget_one(st, st->q[Q_FORGET], path);
	return r ? r : forget_one(st, st->q[Q_LFORGET], path);
}

/* Under the lock: rewrite the prefix from to to. */
static int move_one(struct state *st, sqlite3_stmt *s, const char *from, const char *to)
{
	char *b[2] = { NULL, NULL };
	int r = bind_prefix(s, from, b);
	if (r == 0) {
		sqlite3_bind_blob(s, 4, to, (int)strlen(to), SQLITE_STATIC);
		sqlite3_bind_int64(s, 5, (sqlite3_int64)strlen(from) + 1);
		r = run(st, s);
	} else {
		sqlite3_clear_bindings(s);
	}
	free(b[0]);
	free(b[1]);
	return r;
}

/* Under the lock: rewrite the prefix from to to in both tables. */
static int move_locked(struct state *st, const char *from, const char *to)
{
	int r = move_one(st, st->q[Q_MOVE], from, to);
	return r ? r : move_one(st, st->q[Q_LMOVE], from, to);
}

static int begin(struct state *st)
{
	return run(st, st->q[Q_BEGIN]);
}

static int end(struct state *st, int r)
{
	if (r == 0 && (r = run(st, st->q[Q_COMMIT])) == 0)
		return 0;
	if (!sqlite3_get_autocommit(st->db))
		run(st, st->q[Q_ROLLBACK]);
	return r;
}

/* Lists are stored as proto_list_pack() writes them. */
#define LIST_ENTRY PROTO_LIST_ENTRY

static int put_list_locked(struct state *st, const char *path, const struct proto_chunk *c,
			   size_t n)
{
	struct hash_id digest;
	uint8_t *blob = malloc(n ? n * LIST_ENTRY : 1);
	sqlite3_stmt *s = st->q[Q_LPUT];
	if (!blob)
		return -ENOMEM;
	proto_list_pack(c, n, blob);
	proto_list_digest(c, n, &digest);
	sqlite3_bind_blob(s, 1, path, (int)strlen(path), SQLITE_STATIC);
	sqlite3_bind_blob(s, 2, digest.b, HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(s, 3, blob, (int)(n * LIST_ENTRY), SQLITE_STATIC);
	int r = run(st, s);
	free(blob);
	return r;
}

int state_list_get(struct state *st, const char *path, struct hash_id *digest,
		   struct proto_chunk **list, size_t *n)
{
	sqlite3_stmt *s = st->q[Q_LGET];
	int r = 0;
	*list = NULL;
	*n = 0;
	lock(st);
	flush_locked(st);
	sqlite3_bind_blob(s, 1, path, (int)strlen(path), SQLITE_STATIC);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const uint8_t *d = sqlite3_column_blob(s, 0);
		const uint8_t *b = sqlite3_column_blob(s, 1);
		size_t len = (size_t)sqlite3_column_bytes(s, 1), cnt = len / LIST_ENTRY;
		if (!d || sqlite3_column_bytes(s, 0) != HASH_LEN || len % LIST_ENTRY) {
			r = 0; /* damaged: as if unknown */
		} else if (!(*list = malloc(cnt ? cnt * sizeof(**list) : 1))) {
			r = -ENOMEM;
		} else {
			memcpy(digest->b, d, HASH_LEN);
			proto_list_unpack(b, cnt, *list);
			*n = cnt;
			r = 1;
		}
	} else if (rc != SQLITE_DONE) {
		r = sqlerr_errno(rc);
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	unlock(st);
	return r;
}

/* Under the lock, in a transaction: see state_index_file(). */
static int index_file_locked(struct state *st, const char *path, const struct proto_chunk *chunks,
			     size_t n)
{
	sqlite3_stmt *s = st->q[Q_PUT];
	uint64_t off = 0;
	int r = forget_locked(st, path);
	for (size_t i = 0; r == 0 && i < n; i++) {
		sqlite3_bind_blob(s, 1, chunks[i].id.b, HASH_LEN, SQLITE_STATIC);
		sqlite3_bind_blob(s, 2, path, (int)strlen(path), SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, (sqlite3_int64)off);
		sqlite3_bind_int64(s, 4, chunks[i].len);
		r = run(st, s);
		off += chunks[i].len;
	}
	return r == 0 ? put_list_locked(st, path, chunks, n) : r;
}

int state_index_file(struct state *st, const char *path, const struct proto_chunk *chunks, size_t n)
{
	return state_index_files(st, 1, &path, &chunks, &n);
}

int state_index_files(struct state *st, size_t nfiles, const char *const *path,
		      const struct proto_chunk *const *chunks, const size_t *n)
{
	int r = 0;
	lock(st);
	for (size_t k = 0; r == 0 && k < nfiles; k++) {
		if (pend_add(st, path[k], chunks[k], n[k]) == 0)
			continue;
		/* Too large to wait, or no memory: written now, after what
		 * waits (the same order as if nothing had waited). */
		flush_locked(st);
		if ((r = begin(st)) == 0)
			r = end(st, index_file_locked(st, path[k], chunks[k], n[k]));
	}
	if (st->npf && now_ms() - st->pend_since >= STATE_PEND_MS)
		flush_locked(st);
	unlock(st);
	return r;
}

int state_index_forget(struct state *st, const char *path)
{
	lock(st);
	flush_locked(st);
	int r = forget_locked(st, path);
	unlock(st);
	return r;
}

int state_index_forget_many(struct state *st, size_t n, const char *const *path)
{
	int r;
	lock(st);
	flush_locked(st);
	if ((r = begin(st)) < 0)
		goto out;
	for (size_t k = 0; r == 0 && k < n; k++)
		r = forget_locked(st, path[k]);
	r = end(st, r);
out:
	unlock(st);
	return r;
}

int state_index_rename(struct state *st, const char *from, const char *to, int exchange)
{
	int r;
	lock(st);
	flush_locked(st);
	if ((r = begin(st)) < 0)
		goto out;
	if (exchange) {
		if ((r = move_locked(st, from, "/")) == 0 && (r = move_locked(st, to, from)) == 0)
			r = move_locked(st, "/", to);
	} else if ((r = forget_locked(st, to)) == 0) {
		r = move_locked(st, from, to);
	}
	r = end(st, r);
out:
	unlock(st);
	return r;
}

int state_seq_get(struct state *st, const char *client, uint64_t *seq)
{
	sqlite3_stmt *s = st->q[Q_SEQ_GET];
	int r = 0;
	lock(st);
	sqlite3_bind_text(s, 1, client, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*seq = (uint64_t)sqlite3_column_int64(s, 0);
		r = 1;
	} else if (rc != SQLITE_DONE) {
		r = sqlerr_errno(rc) ? sqlerr_errno(rc) : -EIO;
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	unlock(st);
	return r;
}

int state_seq_set(struct state *st, const char *client, uint64_t seq)
{
	sqlite3_stmt *s = st->q[Q_SEQ_SET];
	if (seq > INT64_MAX)
		return -EINVAL;
	lock(st);
	sqlite3_bind_text(s, 1, client, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)seq);
	int r = run(st, s);
	/* Durable before the reply: a WAL checkpoint with FULL syncing writes
	 * the WAL (this commit included) through to disk. */
	if (r == 0) {
		int rc = sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_FULL, NULL, NULL);
		if (rc != SQLITE_OK && rc != SQLITE_BUSY)
			r = sqlerr_errno(rc);
	}
	unlock(st);
	return r;
}
