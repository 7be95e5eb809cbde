#define _GNU_SOURCE
#include "record.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

struct record {
	sqlite3 *db;
	sqlite3_stmt *put, *get, *forget, *list, *digest, *known, *add_known;
	sqlite3_stmt *similar, *move, *mh;
	struct record_known *shared; /* borrowed, or NULL: ids inserted at once */
};

#define KNOWN_PEND_MAX 8192
#define KNOWN_SLOTS (2 * KNOWN_PEND_MAX) /* a power of two */

struct record_known {
	pthread_mutex_t lock;  /* guards the rest */
	struct hash_id *pend;  /* owned, KNOWN_PEND_MAX */
	uint32_t *slot;        /* owned, KNOWN_SLOTS: index into pend + 1, or 0 */
	size_t npend;
};

struct record_known *record_known_new(void)
{
	struct record_known *k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	k->pend = malloc(KNOWN_PEND_MAX * sizeof(*k->pend));
	k->slot = calloc(KNOWN_SLOTS, sizeof(*k->slot));
	if (!k->pend || !k->slot || pthread_mutex_init(&k->lock, NULL) != 0) {
		free(k->pend);
		free(k->slot);
		free(k);
		return NULL;
	}
	return k;
}

void record_known_free(struct record_known *k)
{
	if (!k)
		return;
	pthread_mutex_destroy(&k->lock);
	free(k->pend);
	free(k->slot);
	free(k);
}

void record_share_known(struct record *r, struct record_known *k)
{
	if (r)
		r->shared = k;
}

static size_t known_slot(const struct hash_id *id)
{
	uint64_t h;
	memcpy(&h, id->b, sizeof(h)); /* ids are uniformly random */
	return (size_t)(h & (KNOWN_SLOTS - 1));
}

/* Under k's lock: 1 if id waits in k. */
static int set_has(const struct record_known *k, const struct hash_id *id)
{
	if (!k->npend)
		return 0;
	for (size_t i = known_slot(id); k->slot[i]; i = (i + 1) & (KNOWN_SLOTS - 1))
		if (memcmp(k->pend[k->slot[i] - 1].b, id->b, HASH_LEN) == 0)
			return 1;
	return 0;
}

/* Under k's lock, with room in k and id not in it: add id. */
static void set_add(struct record_known *k, const struct hash_id *id)
{
	size_t i = known_slot(id);
	while (k->slot[i])
		i = (i + 1) & (KNOWN_SLOTS - 1);
	k->pend[k->npend] = *id;
	k->slot[i] = (uint32_t)++k->npend;
}

/* Insert id into r's table. */
static void insert_one(struct record *r, const struct hash_id *id)
{
	sqlite3_bind_blob(r->add_known, 1, id->b, HASH_LEN, SQLITE_STATIC);
	sqlite3_step(r->add_known);
	sqlite3_reset(r->add_known);
}

/* Insert ids[0..n) into r's table, in one savepoint. */
static void insert_known(struct record *r, const struct hash_id *ids, size_t n)
{
	sqlite3_exec(r->db, "SAVEPOINT kn", NULL, NULL, NULL);
	for (size_t i = 0; i < n; i++)
		insert_one(r, &ids[i]);
	sqlite3_exec(r->db, "RELEASE kn", NULL, NULL, NULL);
}

/* If r's shared set holds at least min ids (min >= 1), write them through
 * r. The set is emptied under its lock and written outside it: SQLite may
 * wait for another connection's transaction, whose thread may need the
 * set meanwhile (until the write ends, those ids read as unknown: a query
 * at worst). */
static void known_drain(struct record *r, size_t min)
{
	struct record_known *k = r->shared;
	struct hash_id *fresh = malloc(KNOWN_PEND_MAX * sizeof(*fresh));
	pthread_mutex_lock(&k->lock);
	if (k->npend < min) {
		pthread_mutex_unlock(&k->lock);
		free(fresh);
		return;
	}
	struct hash_id *full = k->pend;
	size_t n = k->npend;
	if (!fresh) /* no memory for a swap: written under the lock */
		insert_known(r, full, n);
	else
		k->pend = fresh;
	k->npend = 0;
	memset(k->slot, 0, KNOWN_SLOTS * sizeof(*k->slot));
	pthread_mutex_unlock(&k->lock);
	if (fresh) {
		insert_known(r, full, n);
		free(full);
	}
}

/* The n chunks c were given to the server. */
static void note_known(struct record *r, const struct proto_chunk *c, size_t n)
{
	struct record_known *k = r->shared;
	if (!k) {
		for (size_t i = 0; i < n; i++)
			insert_one(r, &c[i].id);
		return;
	}
	for (size_t i = 0; i < n;) {
		pthread_mutex_lock(&k->lock);
		for (; i < n && k->npend < KNOWN_PEND_MAX; i++)
			if (!set_has(k, &c[i].id))
				set_add(k, &c[i].id);
		pthread_mutex_unlock(&k->lock);
		if (i < n)
			known_drain(r, KNOWN_PEND_MAX);
	}
}

/* Lists are stored as proto_list_pack() writes them. */
#define REC_ENTRY PROTO_LIST_ENTRY

static int record_open_once(const char *dir, struct record **out)
{
	char path[PATH_MAX];
	struct record *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	snprintf(path, sizeof(path), "%s/record.db", dir);
	if (sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
						  SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
	    sqlite3_busy_timeout(r->db, 10000) != SQLITE_OK ||
	    sqlite3_exec(r->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;"
				"CREATE TABLE IF NOT EXISTS synced (path BLOB PRIMARY KEY,"
				" ino INTEGER, size INTEGER, ms INTEGER, mn INTEGER,"
				" cs INTEGER, cn INTEGER, digest BLOB, list BLOB);"
				"CREATE INDEX IF NOT EXISTS synced_digest ON synced (digest);"
				"CREATE TABLE IF NOT EXISTS known (id BLOB PRIMARY KEY) WITHOUT ROWID",
			 NULL, NULL, NULL) != SQLITE_OK ||
	    /* mh: the least chunk id of the list, a one-value sketch (a
	     * record.db from before it has no such column: added). */
	    (sqlite3_exec(r->db, "ALTER TABLE synced ADD COLUMN mh BLOB", NULL, NULL, NULL),
	     sqlite3_exec(r->db, "CREATE INDEX IF NOT EXISTS synced_mh ON synced (mh)", NULL, NULL,
			  NULL) != SQLITE_OK) ||
	    sqlite3_prepare_v2(r->db, "INSERT OR REPLACE INTO synced (path, ino, size, ms, mn, cs, cn,"
				      " digest, list, mh) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
			       -1, &r->put, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(r->db, "SELECT path FROM synced WHERE mh = ?1 AND path != ?2 LIMIT 1",
			       -1, &r->similar, NULL) != SQLITE_OK ||
	    /* What is at or beneath P: path = P, or P/ <= path < P0 ('0'
	     * follows '/', and BLOBs compare bytewise): a search of the
	     * primary key, not a scan of every row (rm -rf of a tree of n
	     * files scanned the table n times). */
	    sqlite3_prepare_v2(r->db, "UPDATE synced SET path = CAST(?1 || substr(path, ?2) AS BLOB)"
				      " WHERE path = ?3 OR (path >= ?4 AND path < ?5)",
			       -1, &r->move, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(r->db, "SELECT list FROM synced WHERE path = ?1", -1, &r->list,
			       NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(r->db, "SELECT path FROM synced WHERE digest = ?1 LIMIT 1", -1,
			       &r->digest, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(r->db, "SELECT 1 FROM known WHERE id = ?1", -1, &r->known,
			       NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(r->db, "INSERT OR IGNORE INTO known VALUES (?1)", -1, &r->add_known,
			       NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(r->db, "SELECT ino, size, ms, mn, cs, cn FROM synced WHERE path = ?1",
			       -1, &r->get, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(r->db, "DELETE FROM synced WHERE path = ?1 OR"
				      " (path >= ?2 AND path < ?3)",
			       -1, &r->forget, NULL) != SQLITE_OK) {
		int rc = r->db ? sqlite3_errcode(r->db) : SQLITE_NOMEM;
		log_debug("record.db: %s", r->db ? sqlite3_errmsg(r->db) : "out of memory");
		record_close(r);
		return rc == SQLITE_BUSY || rc == SQLITE_LOCKED ? -EBUSY : -EIO;
	}
	*out = r;
	return 0;
}

/* The uploaders open the record together at start, and switching a new
 * database to WAL can fail busy without calling the busy handler: tried
 * again for about 2 s while another connection holds the lock. */
int record_open(const char *dir, struct record **out)
{
	int r = -EBUSY;
	for (int i = 0; i < 100 && r == -EBUSY; i++) {
		if (i)
			usleep(20000);
		r = record_open_once(dir, out);
	}
	return r;
}

void record_close(struct record *r)
{
	if (!r)
		return;
	if (r->shared && r->add_known)
		known_drain(r, 1);
	sqlite3_finalize(r->put);
	sqlite3_finalize(r->get);
	sqlite3_finalize(r->forget);
	sqlite3_finalize(r->list);
	sqlite3_finalize(r->digest);
	sqlite3_finalize(r->known);
	sqlite3_finalize(r->add_known);
	sqlite3_finalize(r->similar);
	sqlite3_finalize(r->move);
	sqlite3_close(r->db);
	free(r);
}

void record_put(struct record *r, const char *path, const struct stat *st,
		const struct proto_chunk *c, size_t n)
{
	struct hash_id digest;
	uint8_t *blob;
	if (!r || !(blob = malloc(n ? n * REC_ENTRY : 1)))
		return;
	proto_list_pack(c, n, blob);
	proto_list_digest(c, n, &digest);
	const struct hash_id *mh = record_sketch(c, n);
	sqlite3_exec(r->db, "SAVEPOINT put", NULL, NULL, NULL);
	note_known(r, c, n);
	sqlite3_bind_blob(r->put, 8, digest.b, HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(r->put, 9, blob, (int)(n * REC_ENTRY), SQLITE_STATIC);
	sqlite3_bind_blob(r->put, 1, path, (int)strlen(path), SQLITE_STATIC);
	sqlite3_bind_int64(r->put, 2, (sqlite3_int64)st->st_ino);
	sqlite3_bind_int64(r->put, 3, (sqlite3_int64)st->st_size);
	sqlite3_bind_int64(r->put, 4, (sqlite3_int64)st->st_mtim.tv_sec);
	sqlite3_bind_int64(r->put, 5, (sqlite3_int64)st->st_mtim.tv_nsec);
	sqlite3_bind_int64(r->put, 6, (sqlite3_int64)st->st_ctim.tv_sec);
	sqlite3_bind_int64(r->put, 7, (sqlite3_int64)st->st_ctim.tv_nsec);
	if (mh)
		sqlite3_bind_blob(r->put, 10, mh->b, HASH_LEN, SQLITE_STATIC);
	else
		sqlite3_bind_null(r->put, 10);
	sqlite3_step(r->put);
	sqlite3_reset(r->put);
	sqlite3_exec(r->db, "RELEASE put", NULL, NULL, NULL);
	free(blob);
}

void record_begin(struct record *r)
{
	if (r)
		sqlite3_exec(r->db, "BEGIN", NULL, NULL, NULL);
}

void record_end(struct record *r)
{
	if (r)
		sqlite3_exec(r->db, "COMMIT", NULL, NULL, NULL);
}

struct proto_chunk *record_list_ino(struct record *r, const char *path, ino_t ino, size_t *n)
{
	int same = 0;
	*n = 0;
	if (!r)
		return NULL;
	sqlite3_bind_blob(r->get, 1, path, (int)strlen(path), SQLITE_STATIC);
	if (sqlite3_step(r->get) == SQLITE_ROW)
		same = sqlite3_column_int64(r->get, 0) == (sqlite3_int64)ino;
	sqlite3_reset(r->get);
	return same ? record_list(r, path, n) : NULL;
}

struct proto_chunk *record_list(struct record *r, const char *path, size_t *n)
{
	struct proto_chunk *c = NULL;
	*n = 0;
	if (!r)
		return NULL;
	sqlite3_bind_blob(r->list, 1, path, (int)strlen(path), SQLITE_STATIC);
	if (sqlite3_step(r->list) == SQLITE_ROW) {
		const uint8_t *b = sqlite3_column_blob(r->list, 0);
		size_t len = (size_t)sqlite3_column_bytes(r->list, 0);
		size_t cnt = len / REC_ENTRY;
		if (b && len % REC_ENTRY == 0 && (c = malloc(cnt ? cnt * sizeof(*c) : 1))) {
			proto_list_unpack(b, cnt, c);
			*n = cnt;
		}
	}
	sqlite3_reset(r->list);
	return c;
}

/* Run bound statement st, which selects one path: a new string (caller
 * frees) or NULL; st is reset. */
static char *step_path(sqlite3_stmt *st)
{
	char *p = NULL;
	if (sqlite3_step(st) == SQLITE_ROW) {
		const char *b = sqlite3_column_blob(st, 0);
		int len = sqlite3_column_bytes(st, 0);
		if (b && len > 0)
			p = strndup(b, (size_t)len);
	}
	sqlite3_reset(st);
	return p;
}

const struct hash_id *record_sketch(const struct proto_chunk *c, size_t n)
{
	const struct hash_id *m = NULL;
	for (size_t i = 0; i < n; i++)
		if (!m || memcmp(c[i].id.b, m->b, HASH_LEN) < 0)
			m = &c[i].id;
	return m;
}

char *record_find_similar(struct record *r, const struct proto_chunk *c, size_t n,
			  const char *path)
{
	const struct hash_id *mh = record_sketch(c, n);
	if (!r || !mh)
		return NULL;
	sqlite3_bind_blob(r->similar, 1, mh->b, HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(r->similar, 2, path, (int)strlen(path), SQLITE_STATIC);
	return step_path(r->similar);
}

char *record_find_digest(struct record *r, const struct hash_id *digest)
{
	if (!r)
		return NULL;
	sqlite3_bind_blob(r->digest, 1, digest->b, HASH_LEN, SQLITE_STATIC);
	return step_path(r->digest);
}

void record_read_begin(struct record *r)
{
	if (r)
		sqlite3_exec(r->db, "SAVEPOINT rd", NULL, NULL, NULL);
}

void record_read_end(struct record *r)
{
	if (r)
		sqlite3_exec(r->db, "RELEASE rd", NULL, NULL, NULL);
}

int record_known(struct record *r, const struct hash_id *id)
{
	int k;
	if (!r)
		return 0;
	if (r->shared) {
		pthread_mutex_lock(&r->shared->lock);
		k = set_has(r->shared, id);
		pthread_mutex_unlock(&r->shared->lock);
		if (k)
			return 1;
	}
	sqlite3_bind_blob(r->known, 1, id->b, HASH_LEN, SQLITE_STATIC);
	k = sqlite3_step(r->known) == SQLITE_ROW;
	sqlite3_reset(r->known);
	return k;
}

/* The bounds of what lies beneath path: path + "/" and path + "0" (each
 * strlen(path) + 1 bytes, not NUL-terminated). A new array (caller frees),
 * or NULL on ENOMEM. */
static char *below_bounds(const char *path, size_t n)
{
	char *b = malloc(2 * (n + 1));
	if (!b)
		return NULL;
	memcpy(b, path, n);
	b[n] = '/';
	memcpy(b + n + 1, path, n);
	b[2 * n + 1] = '0';
	return b;
}

void record_forget(struct record *r, const char *path)
{
	size_t n = strlen(path);
	char *b;
	if (!r)
		return;
	if (n == 0) {
		/* "" is the root: everything is beneath it */
		sqlite3_exec(r->db, "DELETE FROM synced", NULL, NULL, NULL);
		return;
	}
	if (!(b = below_bounds(path, n)))
		return;
	sqlite3_bind_blob(r->forget, 1, path, (int)n, SQLITE_STATIC);
	sqlite3_bind_blob(r->forget, 2, b, (int)n + 1, SQLITE_STATIC);
	sqlite3_bind_blob(r->forget, 3, b + n + 1, (int)n + 1, SQLITE_STATIC);
	sqlite3_step(r->forget);
	sqlite3_reset(r->forget);
	sqlite3_clear_bindings(r->forget);
	free(b);
}

void record_rename(struct record *r, const char *from, const char *to)
{
	size_t nf = strlen(from);
	char *b;
	if (!r || nf == 0 || !(b = below_bounds(from, nf)))
		return;
	sqlite3_exec(r->db, "SAVEPOINT rename", NULL, NULL, NULL);
	record_forget(r, to); /* what the rename replaced */
	sqlite3_bind_blob(r->move, 1, to, (int)strlen(to), SQLITE_STATIC);
	sqlite3_bind_int64(r->move, 2, (sqlite3_int64)nf + 1);
	sqlite3_bind_blob(r->move, 3, from, (int)nf, SQLITE_STATIC);
	sqlite3_bind_blob(r->move, 4, b, (int)nf + 1, SQLITE_STATIC);
	sqlite3_bind_blob(r->move, 5, b + nf + 1, (int)nf + 1, SQLITE_STATIC);
	if (sqlite3_step(r->move) != SQLITE_DONE)
		record_forget(r, from); /* a hint: when in doubt, none */
	sqlite3_reset(r->move);
	sqlite3_clear_bindings(r->move);
	sqlite3_exec(r->db, "RELEASE rename", NULL, NULL, NULL);
	free(b);
}

int record_unchanged(struct record *r, const char *path, const struct stat *st)
{
	int same = 0;
	if (!r)
		return 0;
	sqlite3_bind_blob(r->get, 1, path, (int)strlen(path), SQLITE_STATIC);
	if (sqlite3_step(r->get) == SQLITE_ROW)
		same = sqlite3_column_int64(r->get, 0) == (sqlite3_int64)st->st_ino &&
		       sqlite3_column_int64(r->get, 1) == (sqlite3_int64)st->st_size &&
		       sqlite3_column_int64(r->get, 2) == (sqlite3_int64)st->st_mtim.tv_sec &&
		       sqlite3_column_int64(r->get, 3) == (sqlite3_int64)st->st_mtim.tv_nsec &&
		       sqlite3_column_int64(r->get, 4) == (sqlite3_int64)st->st_ctim.tv_sec &&
		       sqlite3_column_int64(r->get, 5) == (sqlite3_int64)st->st_ctim.tv_nsec;
	sqlite3_reset(r->get);
	return same;
}

struct snap_entry {
	char *path;
	int64_t v[6]; /* ino, size, mtime s/ns, ctime s/ns */
	struct snap_entry *next;
};

struct record_snap {
	struct snap_entry **tab;
	size_t nb;
};

static size_t snap_hash(const char *p, size_t nb)
{
	size_t h = 5381;
	while (*p)
		h = h * 33 + (uint8_t)*p++;
	return h % nb;
}

struct record_snap *record_snapshot(struct record *r, const char *path)
{
	sqlite3_stmt *st = NULL;
	struct record_snap *s;
	size_t n = strlen(path);
	if (!r || !(s = calloc(1, sizeof(*s))))
		return NULL;
	s->nb = 65536;
	if (!(s->tab = calloc(s->nb, sizeof(*s->tab))) ||
	    sqlite3_prepare_v2(r->db, "SELECT path, ino, size, ms, mn, cs, cn FROM synced", -1, &st,
			       NULL) != SQLITE_OK) {
		record_snap_free(s);
		return NULL;
	}
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *p = sqlite3_column_blob(st, 0);
		size_t len = (size_t)sqlite3_column_bytes(st, 0);
		if (!p || (n && !(len >= n && memcmp(p, path, n) == 0 && (len == n || p[n] == '/'))))
			continue;
		struct snap_entry *e = calloc(1, sizeof(*e));
		if (!e || !(e->path = strndup(p, len))) {
			free(e);
			break;
		}
		for (int i = 0; i < 6; i++)
			e->v[i] = sqlite3_column_int64(st, i + 1);
		size_t h = snap_hash(e->path, s->nb);
		e->next = s->tab[h];
		s->tab[h] = e;
	}
	sqlite3_finalize(st);
	return s;
}

int record_snap_unchanged(const struct record_snap *s, const char *path, const struct stat *st)
{
	for (const struct snap_entry *e = s->tab[snap_hash(path, s->nb)]; e; e = e->next)
		if (strcmp(e->path, path) == 0)
			return e->v[0] == (int64_t)st->st_ino && e->v[1] == (int64_t)st->st_size &&
			       e->v[2] == (int64_t)st->st_mtim.tv_sec &&
			       e->v[3] == (int64_t)st->st_mtim.tv_nsec &&
			       e->v[4] == (int64_t)st->st_ctim.tv_sec &&
			       e->v[5] == (int64_t)st->st_ctim.tv_nsec;
	return 0;
}

void record_snap_free(struct record_snap *s)
{
	if (!s)
		return;
	for (size_t i = 0; s->tab && i < s->nb; i++)
		for (struct snap_entry *e = s->tab[i], *n; e; e = n) {
			n = e->next;
			free(e->path);
			free(e);
		}
	free(s->tab);
	free(s);
}
