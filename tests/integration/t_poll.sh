#!/bin/bash
# t_poll: what only the polling client (mirrorfs-poll, MIRROR_MODE=poll)
# has to get right: finding changes by scanning.
#
#   - renames are found by inode: a renamed file, and a renamed folder of
#     200 files (moved again into a new folder), cost no upload: files_sent
#     and bytes_sent do not grow (status --json), the client log names the
#     renames;
#   - an idle scan reads no file (bytes_read and files_sent stay put over
#     ten scans);
#   - a file that grows while it is scanned (a line every 50 ms for 2 s) is
#     never published half-written: a reader watching DIR only ever sees
#     complete lines 1..k, and the end matches; a writer that pauses now and
#     then gets its intermediate versions published, each complete;
#   - a rename right after the start (racing the start's reconciliation);
#   - status (human and --json, with the "scan" counters) and sync;
#   - a second poller on the same state folder is refused;
#   - SIGTERM: a change made just before it is still sent (the last scan
#     and the drain), the process exits 0 and removes its control socket;
#   - without -f it daemonizes, answers, and stops on SIGTERM.
#
# timeout: 600

. "$(dirname "$0")/lib.sh"

need_poll

# js KEY [OBJECT]: a number from the status JSON (top level, or inside OBJECT).
js() {
	local out
	out=$(mirror_status --json) || fail "status --json failed"
	if [[ -n ${2:-} ]]; then
		out=$(sed -n "/\"$2\":/,/}/p" <<<"$out")
	fi
	sed -n "s/^[[:space:]]*\"$1\":[[:space:]]*\([0-9.e+-]*\).*/\1/p" <<<"$out" | head -n 1
}

# torn_reader FILE STOP LOG: until STOP exists, copy FILE (one open) every
# few ms and check that it is lines "line 1".."line k", complete; record
# each size seen in LOG. Exits 1 at the first torn version.
torn_reader() {
	local f=$1 stop=$2 log=$3 snap=$3.snap
	while [[ ! -e $stop ]]; do
		if cp "$f" "$snap" 2>/dev/null; then
			if [[ -n $(tail -c 1 "$snap") ]] ||
				! awk '$0 != "line " NR { exit 1 }' "$snap"; then
				echo "torn version of $(stat -c %s "$snap") bytes:" >>"$log"
				tail -c 200 "$snap" >>"$log"
				exit 1
			fi
			stat -c %s "$snap" >>"$log"
		fi
		sleep 0.01
	done
	exit 0
}

# writer FILE N PAUSE_EVERY: append "line 1".."line N", one every 50 ms; with
# PAUSE_EVERY > 0, rest 600 ms after every PAUSE_EVERY lines.
writer() {
	local f=$1 n=$2 every=$3 i
	for ((i = 1; i <= n; i++)); do
		echo "line $i" >>"$f"
		sleep 0.05
		if ((every > 0 && i % every == 0)); then sleep 0.6; fi
	done
}

t_setup
start_mirrord
M=$T/mnt
D=$T/dir

step "a rename right after the start"
mkdir -p "$T/backing/early/sub"
for i in 1 2 3; do echo "early $i" >"$T/backing/early/sub/f$i"; done
head -c 200000 /dev/urandom >"$T/backing/early/blob"
mount_mirrorfs
sync_mirror
unmount_mirrorfs
mount_mirrorfs
mv "$M/early" "$M/early-renamed"
sync_mirror
check_trees "a rename racing the reconciliation at start"

step "status and sync"
check "status" mirror_status
check "status names the server" grep -q "^server: .*$URL" <(mirror_status)
check "status --json has the scan counters" grep -q '"scan"' <(mirror_status --json)
check "status --json names the folder" grep -q "\"backing\":.*$T/backing" <(mirror_status --json)
entries=$(js entries scan)
check "the snapshot counts the entries ($entries)" test "${entries:-0}" = 6

step "a second poller on the same state folder"
if out=$(timeout -k 5 20 "$MIRRORFS_POLL" "$T/backing" --server "$URL" --state-dir "$T/cstate" -f 2>&1); then
	fail "a second poller on $T/cstate started"
fi
check "the second poller says the state folder is in use: $out" grep -q "in use" <<<"$out"

step "a renamed file is not sent again"
head -c 3000000 /dev/urandom >"$M/big"
sync_mirror
files0=$(js files_sent)
bytes0=$(js bytes_sent)
mv "$M/big" "$M/big-renamed"
sync_mirror
check_trees "renamed file"
check "renaming a file sends no file ($files0 -> $(js files_sent))" test "$(js files_sent)" = "$files0"
check "renaming a file sends no bytes ($bytes0 -> $(js bytes_sent))" test "$(js bytes_sent)" = "$bytes0"
check "the client found the rename by inode" grep -q "rename big -> big-renamed (same inode)" "$T/mirrorfs.log"

step "a renamed folder of 200 files is not sent again"
mkdir -p "$M/fold/sub"
for i in $(seq 1 200); do
	if ((i % 4 == 0)); then p=$M/fold/sub/f$i; else p=$M/fold/f$i; fi
	head -c $((1000 + i * 37)) /dev/urandom >"$p"
done
sync_mirror
check_trees "folder of 200 files"
files0=$(js files_sent)
bytes0=$(js bytes_sent)
renames0=$(js renames scan)
mv "$M/fold" "$M/fold-renamed"
sync_mirror
mkdir "$M/newparent"
mv "$M/fold-renamed" "$M/newparent/fold-moved"
sync_mirror
check_trees "folder renamed, then moved into a new folder"
files1=$(js files_sent)
bytes1=$(js bytes_sent)
check "the folder's files are not sent again: files_sent $files0 -> $files1" \
	test "$((files1 - files0))" -lt 200
check "no file sent at all: files_sent $files0 -> $files1" test "$files1" = "$files0"
check "no bytes sent: bytes_sent $bytes0 -> $bytes1" test "$bytes1" = "$bytes0"
check "two renames counted" test "$(js renames scan)" = "$((renames0 + 2))"
check "the client found the folder's renames" \
	grep -q "rename fold-renamed -> newparent/fold-moved (same inode)" "$T/mirrorfs.log"

step "an idle scan reads nothing"
read0=$(js bytes_read)
files0=$(js files_sent)
scans0=$(js scans scan)
wait_for -t 30 -m "ten more scans" eval '(( $(js scans scan) >= scans0 + 10 ))'
check "no byte read while idle" test "$(js bytes_read)" = "$read0"
check "no file sent while idle" test "$(js files_sent)" = "$files0"

step "a file that grows during scans is never published half-written"
rm -f "$T/stop1"
t_bg torn_reader "$D/grow.log" "$T/stop1" "$T/reader1.log"
reader=$T_BG_PID
writer "$M/grow.log" 40 0 # 2 s
sync_mirror
touch "$T/stop1"
t_reap "$reader" 20 || fail "the reader did not stop"
check "the reader saw only complete versions: $(tail -n 3 "$T/reader1.log" | tr '\n' ' ')" \
	test "$T_REAP_RC" = 0
check_trees "after the growing file"
check "the last version has 40 lines" test "$(wc -l <"$D/grow.log")" = 40

step "a writer that pauses: its intermediate versions are published, complete"
rm -f "$T/stop2"
t_bg torn_reader "$D/pause.log" "$T/stop2" "$T/reader2.log"
reader=$T_BG_PID
writer "$M/pause.log" 40 10
sync_mirror
touch "$T/stop2"
t_reap "$reader" 20 || fail "the reader did not stop"
check "the reader saw only complete versions: $(tail -n 3 "$T/reader2.log" | tr '\n' ' ')" \
	test "$T_REAP_RC" = 0
versions=$(sort -un "$T/reader2.log" | grep -c '^[0-9]')
step "the reader saw $versions versions of pause.log"
check "intermediate versions were published while it paused ($versions sizes seen)" \
	test "$versions" -ge 3
check_trees "after the pausing writer"

step "SIGTERM: a last change is still sent, the poller exits 0"
echo "written just before the stop" >"$M/at-stop"
mkdir "$M/dir-at-stop"
unmount_mirrorfs # SIGTERM; must exit 0
check "the poller said it was stopping" grep -q "stopping (signal 15)" "$T/mirrorfs.log"
check "the control socket is gone" test ! -e "$T/cstate/ctl.sock"
check_trees "changes made just before SIGTERM"

step "without -f: a daemon"
"$MIRRORFS_POLL" "$T/backing" --server "$URL" --state-dir "$T/cstate" --interval 100 \
	--log-level "$T_LOGLEVEL" || fail "mirrorfs-poll did not start in the background"
wait_for -t 20 -m "the daemon answering status" poll_answers
dpid=""
for p in $(t_tagged_pids); do
	[[ $(cat /proc/"$p"/comm 2>/dev/null) == mirrorfs-poll ]] && dpid=$p
done
[[ -n $dpid ]] || fail "no mirrorfs-poll process found"
check "the daemon is in its own session" test "$(awk '{ print $6 }' /proc/"$dpid"/stat)" = "$dpid"
echo "via the daemon" >"$M/daemon-file"
sync_mirror
check_trees "through the daemon"
kill -TERM "$dpid"
wait_for -t 40 -m "the daemon to exit after SIGTERM" pid_dead "$dpid"
check "the daemon removed its control socket" test ! -e "$T/cstate/ctl.sock"

stop_mirrord
check_trees "at the end"
t_done
