#!/bin/bash
# t_locks: flock() through the mount.
#
# flock is passed through to BACKING's file, so a lock taken through the
# mount is seen by a process using BACKING directly, and the other way
# round. A flock that must wait must not hold one of mirrorfs's few FUSE
# threads (fuse/fs.c): with 24 processes waiting behind one holder (more
# than the 10 threads), the mount still answers other requests, and the
# holder's release lets every waiter through. Each waiter appends a line
# to a file under the lock; the file and the tree are then mirrored.
#
# timeout: 180

. "$(dirname "$0")/lib.sh"

need_mount
t_setup
start_mirrord
mount_mirrorfs
M=$T/mnt
WAITERS=24

echo "other" >"$M/other"
: >"$M/lock"
: >"$M/log"

step "a holder takes the lock through the mount"
t_bg flock "$M/lock" -c "until [ -e '$T/release' ]; do sleep 0.05; done"
HOLDER=$T_BG_PID
wait_for -t 20 -m "the holder's lock" bash -c "! flock -n '$M/lock' true"
check "flock -n through the mount fails while it is held" bash -c "! flock -n '$M/lock' true"
check "flock -n on BACKING's file fails too (the lock is BACKING's)" \
	bash -c "! flock -n '$T/backing/lock' true"

step "$WAITERS waiters queue behind it"
pids=()
for ((i = 1; i <= WAITERS; i++)); do
	t_bg flock "$M/lock" -c "echo waiter-$i >>'$M/log'"
	pids+=("$T_BG_PID")
done
# A waiter is parked once the kernel waits for mirrorfs's answer to its
# FLOCK request (its wait channel is FUSE's).
waiting() {
	local p n=0 w
	for p in "${pids[@]}"; do
		w=$(cat "/proc/$p/wchan" 2>/dev/null) || continue
		[[ $w == request_wait_answer || $w == fuse_* ]] && n=$((n + 1))
	done
	((n == WAITERS))
}
wait_for -t 30 -m "$WAITERS waiters parked in FLOCK" waiting
check "the mount still answers while $WAITERS flocks wait" \
	timeout 10 cat "$M/other"
check "and still creates files" timeout 10 bash -c "echo new >'$M/made-while-waiting'"
check "nobody got the lock early" test ! -s "$M/log"

step "the holder lets go"
touch "$T/release"
t_reap "$HOLDER" 30 || fail "the holder did not finish"
check "the holder exited 0" test "$T_REAP_RC" = 0
for p in "${pids[@]}"; do
	t_reap "$p" 60 || fail "a waiter did not get the lock within 60 s"
	check "waiter $p exited 0 (status $T_REAP_RC)" test "$T_REAP_RC" = 0
done
check "every waiter wrote its line" test "$(wc -l <"$M/log")" = "$WAITERS"
check "flock -n works again" flock -n "$M/lock" true

step "a lock taken on BACKING blocks the mount's flock -n"
t_bg flock "$T/backing/lock" -c "until [ -e '$T/release2' ]; do sleep 0.05; done"
OUTSIDE=$T_BG_PID
wait_for -t 20 -m "the outside lock" bash -c "! flock -n '$T/backing/lock' true"
check "flock -n through the mount fails" bash -c "! flock -n '$M/lock' true"
touch "$T/release2"
t_reap "$OUTSIDE" 30 || fail "the outside holder did not finish"

sync_mirror 60
check_trees "after the lock traffic"
unmount_mirrorfs
t_done
