#define _GNU_SOURCE
#include "record.h"

#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct record {
	sqlite3 *db;
	sqlite3_stmt *put, *get, *forget;
};

int record_open(const char *dir, struct record **out)
{
	char path[PATH_MAX];
	struct record *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	snprintf(path, sizeof(path), "%s/synced.db", dir);
	if (sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
						  SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
	    sqlite3_exec(r->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;"
				"CREATE TABLE IF NOT EXISTS synced (path BLOB PRIMARY KEY,"
				" ino INTEGER, size INTEGER, ms INTEGER, mn INTEGER,"
				" cs INTEGER, cn INTEGER)", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(r->db, "INSERT OR REPLACE INTO synced VALUES (?1,?2,?3,?4,?5,?6,?7)",
			       -1, &r->put, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(r->db, "SELECT ino, size, ms, mn, cs, cn FROM synced WHERE path = ?1",
			       -1, &r->get, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(r->db, "DELETE FROM synced WHERE path = ?1 OR"
				      " substr(path, 1, length(?2)) = ?2",
			       -1, &r->forget, NULL) != SQLITE_OK) {
		record_close(r);
		return -EIO;
	}
	*out = r;
	return 0;
}

void record_close(struct record *r)
{
	if (!r)
		return;
	sqlite3_finalize(r->put);
	sqlite3_finalize(r->get);
	sqlite3_finalize(r->forget);
	sqlite3_close(r->db);
	free(r);
}

void record_put(struct record *r, const char *path, const struct stat *st)
{
	if (!r)
		return;
	sqlite3_bind_blob(r->put, 1, path, (int)strlen(path), SQLITE_STATIC);
	sqlite3_bind_int64(r->put, 2, (sqlite3_int64)st->st_ino);
	sqlite3_bind_int64(r->put, 3, (sqlite3_int64)st->st_size);
	sqlite3_bind_int64(r->put, 4, (sqlite3_int64)st->st_mtim.tv_sec);
	sqlite3_bind_int64(r->put, 5, (sqlite3_int64)st->st_mtim.tv_nsec);
	sqlite3_bind_int64(r->put, 6, (sqlite3_int64)st->st_ctim.tv_sec);
	sqlite3_bind_int64(r->put, 7, (sqlite3_int64)st->st_ctim.tv_nsec);
	sqlite3_step(r->put);
	sqlite3_reset(r->put);
}

void record_forget(struct record *r, const char *path)
{
	size_t n = strlen(path);
	char *prefix;
	if (!r || !(prefix = malloc(n + 2)))
		return;
	memcpy(prefix, path, n);
	prefix[n] = '/';
	sqlite3_bind_blob(r->forget, 1, path, (int)n, SQLITE_STATIC);
	/* "" is the root: everything is beneath it */
	sqlite3_bind_blob(r->forget, 2, prefix, n ? (int)n + 1 : 0, SQLITE_STATIC);
	sqlite3_step(r->forget);
	free(prefix);
	sqlite3_reset(r->forget);
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
