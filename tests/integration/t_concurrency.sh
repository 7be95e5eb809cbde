#!/bin/bash
# t_concurrency: many writers at once, and files that change while they are
# being uploaded or while they stay open.
#
#   - 8 processes write disjoint regions of one file at the same time;
#   - 8 processes each create, rename and delete files in their own folder
#     and in one shared folder;
#   - a file is rewritten continuously while `mirrorfs sync` runs (the
#     upload must never publish a torn version as final: the end state after
#     the writer stops and a second sync must match);
#   - a file kept open and written every 200 ms: its content must reach the
#     server while it is still open (HAZARDS: at least every few seconds),
#     and the final content after close.
#
# timeout: 600

. "$(dirname "$0")/lib.sh"

t_setup
start_mirrord
mount_mirrorfs
M=$T/mnt
D=$T/dir

step "8 writers, disjoint regions of one file"
truncate -s 32M "$M/shared.bin"
pids=()
for i in 0 1 2 3 4 5 6 7; do
	t_bg dd if=/dev/urandom of="$M/shared.bin" bs=1M seek=$((i * 4)) count=4 conv=notrunc status=none
	pids+=("$T_BG_PID")
done
for p in "${pids[@]}"; do
	t_reap "$p" 120 || fail "a writer did not finish"
	[[ $T_REAP_RC == 0 ]] || fail "a writer failed (status $T_REAP_RC)"
done

step "8 processes creating, renaming, deleting"
mkdir "$M/common"
churn() {
	local w=$1 i
	mkdir "$M/w$w"
	for i in $(seq 1 60); do
		echo "writer $w file $i" >"$M/w$w/f$i"
		echo "writer $w shared $i" >"$M/common/w$w-$i"
		if ((i % 3 == 0)); then mv "$M/w$w/f$i" "$M/w$w/renamed-$i"; fi
		if ((i % 5 == 0)); then rm "$M/common/w$w-$i"
		elif ((i % 7 == 0)); then mv "$M/common/w$w-$i" "$M/w$w/from-common-$i"; fi
	done
	mv "$M/w$w" "$M/common/w$w-done"
}
t_parallel 8 120 churn
sync_mirror 120
check_trees "after concurrent writers"

step "a file rewritten while it is uploaded"
rewrite() {
	local i
	for i in $(seq 1 40); do
		head -c 3000000 /dev/urandom >"$M/busy.bin.tmp" && mv "$M/busy.bin.tmp" "$M/busy.bin"
		dd if=/dev/urandom of="$M/inplace.bin" bs=64K count=40 conv=notrunc status=none
	done
}
head -c 2621440 /dev/urandom >"$M/inplace.bin"
t_bg rewrite
writer=$T_BG_PID
# Syncs while the writer runs: each must return (no sync may wait forever
# on a file that keeps changing, but what it promises is only what was
# written before it started).
while pid_alive "$writer"; do
	sync_mirror 120
done
t_reap "$writer" 60 || fail "the rewriter did not finish"
[[ $T_REAP_RC == 0 ]] || fail "the rewriter failed (status $T_REAP_RC)"
sync_mirror 60
check_trees "after the rewrites stopped"

step "a file kept open and written every 200 ms"
exec 7>>"$M/open.log"
echo "first line" >&7
# While it stays open, the first line must reach the server.
i=0
server_has() { grep -qx "$1" "$D/open.log" 2>/dev/null; }
t_now
deadline=$((T_NOW_MS + 20000))
until server_has "first line"; do
	i=$((i + 1))
	echo "line $i" >&7
	t_now
	((T_NOW_MS < deadline)) || break
	sleep 0.2
done
check "an open, still-changing file reaches the server within 20s" server_has "first line"
step "open file on the server after $i more writes"
echo "marker" >&7
t_now
deadline=$((T_NOW_MS + 20000))
until server_has "marker"; do
	echo "more" >&7
	t_now
	((T_NOW_MS < deadline)) || break
	sleep 0.2
done
check "later writes to the open file reach the server within 20s" server_has "marker"
exec 7>&-
sync_mirror
check_trees "after the open file was closed"

unmount_mirrorfs
stop_mirrord
t_done
