#!/bin/bash
# t_sqlite: a SQLite database under load through the mount; the mirror
# must be exact afterwards and a valid database with the same rows.
#
# Two databases, one per journal mode SQLite applications use:
#   - rollback journal (DELETE): every transaction creates, writes, syncs
#     and deletes db-journal next to the database, and rewrites pages of
#     the database in place;
#   - WAL: the writes go to db-wal (and the shared-memory index db-shm,
#     mapped by SQLite), with checkpoints copying pages back into the
#     database while two processes write at once.
# Each runs hundreds of transactions of inserts, updates of random rows
# (blobs of 1-3 KB: pages change all over the file) and deletes. The mirror
# is compared while one WAL writer still has the database open, after a
# sync (its files are in a state SQLite can recover from: the comparison
# is of bytes, so it must be exact anyway), and again once every
# connection is closed. Then the server's copies must pass PRAGMA
# integrity_check and hold the same rows as BACKING's.
#
# timeout: 600

. "$(dirname "$0")/lib.sh"
need_mount
command -v sqlite3 >/dev/null || fail "sqlite3 is not installed (make deps)"

t_setup
start_mirrord
mount_mirrorfs
M=$T/mnt

# load DB MODE ROUNDS SEED: SQL for ROUNDS transactions on DB.
load() {
	local r
	# The busy timeout first: switching to WAL takes a lock, which the
	# other writer may hold at that moment (without a timeout: "database
	# is locked" at once, seen under ASan).
	printf 'PRAGMA busy_timeout=10000;\nPRAGMA journal_mode=%s;\n' "$2"
	printf 'CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, k INTEGER, v BLOB);\n'
	for ((r = 0; r < $3; r++)); do
		printf 'BEGIN;\n'
		# three inserts (printf repeats its format for each argument)
		printf 'INSERT INTO t(k, v) VALUES (%d, randomblob(1000 + abs(random()) %% 2000));\n' \
			$((r * 7 + $4)) $((r * 7 + $4 + 1)) $((r * 7 + $4 + 2))
		printf 'UPDATE t SET v = randomblob(1500), k = k + 1 WHERE id IN (SELECT id FROM t ORDER BY random() LIMIT 3);\n'
		((r % 5 == 4)) && printf 'DELETE FROM t WHERE id IN (SELECT id FROM t ORDER BY random() LIMIT 2);\n'
		printf 'COMMIT;\n'
	done
}

# rows DB: a digest of the table's content.
rows() {
	sqlite3 "$1" 'SELECT id, k, hex(v) FROM t ORDER BY id;' | md5sum | cut -d' ' -f1
}

step "rollback journal: 400 transactions"
load "$M/journal.db" DELETE 400 1 | timeout 300 sqlite3 "$M/journal.db" >/dev/null ||
	fail "the rollback-journal load failed"

step "WAL: two writers at once, 300 transactions each"
load "$M/wal.db" WAL 1 0 | timeout 60 sqlite3 "$M/wal.db" >/dev/null || fail "cannot create wal.db"
load "$M/wal.db" WAL 300 100000 | timeout 300 sqlite3 "$M/wal.db" >/dev/null &
W1=$!
T_PIDS+=("$W1")
load "$M/wal.db" WAL 300 200000 | timeout 300 sqlite3 "$M/wal.db" >/dev/null ||
	fail "the second WAL writer failed"
t_reap "$W1" 300 || fail "the first WAL writer did not finish"
((T_REAP_RC == 0)) || fail "the first WAL writer failed (status $T_REAP_RC)"

step "a writer holding the WAL database open while the mirror is compared"
mkfifo "$T/hold"
{ printf 'PRAGMA busy_timeout=10000;\nBEGIN; INSERT INTO t(k, v) VALUES (-1, randomblob(5000)); COMMIT;\n'; cat "$T/hold"; } |
	timeout 300 sqlite3 "$M/wal.db" >/dev/null &
HOLD=$!
T_PIDS+=("$HOLD")
exec 7>"$T/hold"
wait_for -m "the held writer's row" bash -c "sqlite3 '$M/wal.db' 'PRAGMA busy_timeout=10000; SELECT count(*) FROM t WHERE k = -1;' | grep -qx 1"
sync_mirror
compare_trees
exec 7>&-
t_reap "$HOLD" 60 || fail "the held writer did not finish"

step "every connection closed"
sync_mirror
compare_trees
for db in journal.db wal.db; do
	# A copy: opening a WAL database makes its -wal and -shm files, which
	# must not appear in DIR.
	cp "$T/dir/$db" "$T/check.db" || fail "cannot copy the mirror's $db"
	[[ $(sqlite3 "$T/check.db" 'PRAGMA integrity_check;') == ok ]] ||
		fail "the mirror's $db fails integrity_check"
	[[ $(rows "$T/check.db") == "$(rows "$M/$db")" ]] || fail "the mirror's $db holds other rows"
	rm -f "$T"/check.db*
	step "$db: $(sqlite3 "$M/$db" 'SELECT count(*) FROM t;') rows, $(stat -c %s "$M/$db") bytes, exact"
done

unmount_mirrorfs
stop_mirrord
t_done
