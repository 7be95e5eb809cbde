# tests/integration/lib.sh: sourced by every integration test (bash).
#
# A test looks like:
#
#   . "$(dirname "$0")/lib.sh"
#   t_setup                    # $T with backing/ mnt/ dir/, cleanup trap
#   start_mirrord              # sets PORT, URL
#   mount_mirrorfs             # FUSE mount of $T/backing at $T/mnt
#   echo hi > "$T/mnt/a"
#   sync_mirror
#   compare_trees              # $T/backing vs $T/dir, fails on any difference
#   unmount_mirrorfs
#   stop_mirrord
#   t_done                     # PASS unless a check() failed softly
#
# Rules the helpers keep, and tests should too:
#   - No sleep is ever used to wait for something: wait_for polls a condition
#     with a deadline (the short sleep inside its loop is the only one).
#   - Every wait is bounded; a hang becomes a FAIL with the log tails.
#   - A failing command anywhere in the test (outside if/while/&&/||) fails
#     the test through the ERR trap, naming the line and the command.
#   - Everything a test starts is recorded and killed by t_cleanup, which is
#     idempotent and safe to run after a failure at any point. Processes are
#     also found by the MIRRORFS_TEST_T=$T environment tag, which daemons
#     inherit, so even a daemonized mirrorfs is found.
#
# Environment knobs: BUILD (build dir, default "build"), MIRRORFS, MIRRORD,
# TREECMP, FSOP, MIRRORFS_POLL (override binaries), MIRRORFS_TEST_KEEP=1
# (keep $T after the test, for post-mortems), MIRRORFS_TEST_LOGLEVEL (default
# debug), MIRROR_MODE (see below).
#
# MIRROR_MODE=poll runs the same tests against the polling client: instead
# of mounting, mount_mirrorfs starts mirrorfs-poll on $T/backing and makes
# $T/mnt a symlink to it, so what a test writes to $T/mnt lands in BACKING
# and is found by scanning. unmount_mirrorfs is then a SIGTERM. Tests that
# only make sense through a mount call need_mount (they skip in poll mode);
# poll-only tests call need_poll. Commands for the running client go through
# "${MIRRORFS_CLI[@]}" status|sync "$T_TARGET" (the right binary and, in
# poll mode, the state folder).

set -u -o pipefail
set -E

T_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in
/*) T_BUILD=$BUILD ;;
*) T_BUILD=$T_ROOT/$BUILD ;;
esac
MIRRORFS=${MIRRORFS:-$T_BUILD/mirrorfs}
MIRRORD=${MIRRORD:-$T_BUILD/mirrord}
TREECMP=${TREECMP:-$T_BUILD/treecmp}
FSOP=${FSOP:-$T_BUILD/fsop}
MIRRORFS_POLL=${MIRRORFS_POLL:-$T_BUILD/mirrorfs-poll}
MIRROR_MODE=${MIRROR_MODE:-fuse}
case $MIRROR_MODE in
fuse) MIRRORFS_BIN=$MIRRORFS ;;
poll) MIRRORFS_BIN=$MIRRORFS_POLL ;;
*) echo "lib.sh: MIRROR_MODE must be fuse or poll, not '$MIRROR_MODE'" >&2; exit 2 ;;
esac
MIRRORFS_CLI=("$MIRRORFS_BIN") # completed by t_setup in poll mode
T_TARGET=""                    # what status/sync name: the mount, or BACKING
T_LOGLEVEL=${MIRRORFS_TEST_LOGLEVEL:-debug}

T_NAME=$(basename "$0" .sh)
T=""
MIRRORD_PID=""
MIRRORFS_PID=""
PORT=""
URL=""
T_PIDS=()        # every background process this test started
T_SOFT_FAILS=0   # check() failures so far
T_START_MS=0

# ---------------------------------------------------------------- basics

# Milliseconds since the epoch into T_NOW_MS, without forking.
t_now() {
	local t=${EPOCHREALTIME//[!0-9]/}
	T_NOW_MS=$((10#$t / 1000))
}

# step MSG: say where the test is (stderr), with the elapsed time, so that a
# hang or a failure is easy to place.
step() {
	t_now
	printf '[%s +%d.%03ds] %s\n' "$T_NAME" $(((T_NOW_MS - T_START_MS) / 1000)) \
		$(((T_NOW_MS - T_START_MS) % 1000)) "$*" >&2
}

# Print the last lines of the daemons' logs (stderr).
t_log_tails() {
	local f
	[[ -n $T ]] || return 0
	for f in "$T/mirrord.log" "$T/mirrorfs.log"; do
		[[ -s $f ]] || continue
		echo "--- last 40 lines of $(basename "$f") ---" >&2
		tail -n 40 "$f" >&2
	done
}

# fail MSG: the test failed. Prints "FAIL: <test>: MSG" and the log tails,
# then exits 1 (the EXIT trap cleans up).
fail() {
	trap - ERR
	echo "FAIL: $T_NAME: $*" >&2
	if [[ $BASHPID != "$$" ]]; then
		# In a subshell: the parent sees the status and fails in turn.
		exit 1
	fi
	t_log_tails
	exit 1
}

# check DESCRIPTION CMD...: a soft assertion. If CMD fails, print
# "FAIL: <test>: DESCRIPTION" with its output and carry on; t_done fails the
# test at the end. For checks whose failure does not make the rest
# meaningless, so that one run shows as much as possible.
check() {
	local what=$1 out rc
	shift
	out=$("$@" 2>&1) && return 0
	rc=$?
	T_SOFT_FAILS=$((T_SOFT_FAILS + 1))
	echo "FAIL: $T_NAME: $what (exit $rc)" >&2
	[[ -n $out ]] && printf '%s\n' "$out" | head -n 60 | sed 's/^/    /' >&2
	return 0
}

# t_sanitizer_reports: 0 if no daemon log holds a sanitizer report (UBSan
# reports and carries on, so only its log shows the bug).
t_sanitizer_reports() {
	local f hits=""
	for f in "$T"/*.log; do
		[[ -f $f ]] || continue
		if grep -qE 'runtime error:|ERROR: (Address|Leak|Thread|Memory)Sanitizer|SUMMARY: [A-Za-z]*Sanitizer' "$f"; then
			hits+="$(basename "$f"): $(grep -m 3 -E 'runtime error:|Sanitizer' "$f" | tr '\n' ' ')"$'\n'
		fi
	done
	[[ -z $hits ]] && return 0
	printf '%s' "$hits"
	return 1
}

# t_done: end of a test. Fails if any check() failed or a daemon's log holds
# a sanitizer report.
t_done() {
	check "no sanitizer reports in the daemons' logs" t_sanitizer_reports
	if ((T_SOFT_FAILS > 0)); then
		fail "$T_SOFT_FAILS check(s) failed (see above)"
	fi
	step "done"
}

t_on_err() {
	fail "command failed (status $1) at line $2: $3"
}
trap 't_on_err $? $LINENO "$BASH_COMMAND"' ERR

# wait_for [-t SECONDS] [-m WHAT] CMD...: run CMD every 50 ms until it
# succeeds; fail after SECONDS (default 30) naming WHAT (default CMD).
wait_for() {
	local timeout=30 what=""
	while (($# > 0)); do
		case $1 in
		-t) timeout=$2; shift 2 ;;
		-m) what=$2; shift 2 ;;
		*) break ;;
		esac
	done
	t_now
	local deadline=$((T_NOW_MS + timeout * 1000))
	until "$@"; do
		t_now
		if ((T_NOW_MS > deadline)); then
			fail "timed out after ${timeout}s waiting for: ${what:-$*}"
		fi
		sleep 0.05
	done
}

# ---------------------------------------------------------------- processes

# pid_alive PID: 0 if PID runs and is not a zombie.
pid_alive() {
	local st
	[[ -n ${1:-} && -r /proc/$1/stat ]] || return 1
	read -r st 2>/dev/null </proc/"$1"/stat || return 1
	st=${st##*) }
	[[ ${st:0:1} != Z ]]
}

pid_dead() { ! pid_alive "$1"; }

# t_tagged_pids: pids (other than this shell) whose environment carries
# MIRRORFS_TEST_T=$T, i.e. everything this test started, daemons included.
# Pure bash (no forks), so the scan never finds its own helpers.
t_tagged_pids() {
	local p kv found=()
	[[ -n $T ]] || return 0
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[[ $p == "$$" || $p == "$BASHPID" ]] && continue
		while IFS= read -r -d '' kv; do
			if [[ $kv == "MIRRORFS_TEST_T=$T" ]]; then
				found+=("$p")
				break
			fi
		done 2>/dev/null </proc/"$p"/environ || true # gone, or not ours to read
	done
	((${#found[@]})) && echo "${found[@]}"
	return 0
}

# t_bg CMD...: start CMD in the background, recorded for cleanup. Sets
# T_BG_PID.
t_bg() {
	"$@" &
	T_BG_PID=$!
	T_PIDS+=("$T_BG_PID")
}

# t_parallel N SECONDS FUNC: run FUNC 1 .. FUNC N in the background, wait
# (bounded) for all; fails the test if one fails or overruns.
t_parallel() {
	local n=$1 secs=$2 fn=$3 i p pids=()
	for ((i = 1; i <= n; i++)); do
		t_bg "$fn" "$i"
		pids+=("$T_BG_PID")
	done
	for p in "${pids[@]}"; do
		t_reap "$p" "$secs" || fail "$fn did not finish within ${secs}s"
		[[ $T_REAP_RC == 0 ]] || fail "$fn failed (status $T_REAP_RC)"
	done
}

# t_reap PID [SECONDS]: wait (bounded) for PID to exit; sets T_REAP_RC to its
# exit status (or "" if it is not our child). Returns 1 on timeout.
t_reap() {
	local pid=$1 timeout=${2:-20}
	t_now
	local deadline=$((T_NOW_MS + timeout * 1000))
	T_REAP_RC=""
	while pid_alive "$pid"; do
		t_now
		((T_NOW_MS > deadline)) && return 1
		sleep 0.05
	done
	if wait "$pid" 2>/dev/null; then
		T_REAP_RC=0
	else
		T_REAP_RC=$?
		# 127: not a child of this shell (or already reaped).
		[[ $T_REAP_RC == 127 ]] && T_REAP_RC=""
	fi
	return 0
}

# ---------------------------------------------------------------- mounts

# is_mounted PATH: 0 if PATH is a mount point (per /proc/self/mountinfo).
is_mounted() {
	local m=${1//\\/\\134}
	m=${m// /\\040}
	awk -v m="$m" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo
}

# mounts_under DIR: mount points at or below DIR, one a line.
mounts_under() {
	awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo
}

# ---------------------------------------------------------------- setup

t_require_bins() {
	local b
	for b in "$@"; do
		[[ -x $b ]] || fail "missing binary $b (run make first)"
	done
}

# t_setup: make $T (backing/ mnt/ dir/), install the cleanup trap, tag the
# environment so every process started from here can be found.
t_setup() {
	t_now
	T_START_MS=$T_NOW_MS
	T=$(mktemp -d /tmp/mirrorfs-test.XXXXXX)
	# Known modes for the roots whatever the caller's umask (mktemp: 0700).
	chmod 0755 "$T"
	mkdir -m 0755 "$T/backing" "$T/mnt" "$T/dir"
	export MIRRORFS_TEST_T=$T
	if [[ $MIRROR_MODE == poll ]]; then
		MIRRORFS_CLI=("$MIRRORFS_POLL" --state-dir "$T/cstate")
		T_TARGET=$T/backing
	else
		T_TARGET=$T/mnt
	fi
	# Nothing a test runs may leave state in the caller's home.
	export XDG_STATE_HOME=$T/xdg-state
	trap 't_cleanup' EXIT
	trap 't_cleanup; trap - EXIT; exit 130' INT
	trap 't_cleanup; trap - EXIT; exit 143' TERM
	# run.sh collects the test dirs of a run to check for leftovers.
	if [[ -n ${MIRRORFS_TEST_RUNDIR:-} && -d $MIRRORFS_TEST_RUNDIR ]]; then
		echo "$T" >>"$MIRRORFS_TEST_RUNDIR/dirs"
	fi
	step "setup in $T"
}

# t_cleanup: unmount, kill, remove. Idempotent; safe after a failure at any
# point and when nothing was started.
t_cleanup() {
	local pid m pids leftover=()
	[[ $BASHPID == "$$" ]] || return 0
	[[ -n $T && -d $T ]] || return 0
	trap - ERR

	# Lazy unmount first: a dead or hung daemon must not block us.
	for m in $(mounts_under "$T" | sort -r); do
		fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	for pid in "${T_PIDS[@]}" $MIRRORD_PID $MIRRORFS_PID $(t_tagged_pids); do
		[[ " ${leftover[*]} " == *" $pid "* ]] && continue
		if pid_alive "$pid"; then
			leftover+=("$pid")
			kill -9 "$pid" 2>/dev/null || true
		fi
	done
	for pid in "${leftover[@]}"; do
		t_reap "$pid" 10 || echo "t_cleanup: pid $pid did not die" >&2
	done
	if ((${#leftover[@]})); then
		echo "t_cleanup: killed leftover process(es) ${leftover[*]}" >&2
	fi
	for m in $(mounts_under "$T" | sort -r); do
		fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
	MIRRORD_PID=""
	MIRRORFS_PID=""
	T_PIDS=()

	if [[ ${MIRRORFS_TEST_KEEP:-0} == 1 ]]; then
		echo "t_cleanup: keeping $T" >&2
	elif [[ -z $(mounts_under "$T") ]]; then
		# 0555 folders must not stop an unprivileged run from removing $T.
		chmod -R u+rwX "$T" 2>/dev/null || true
		rm -rf --one-file-system "$T"
	else
		echo "t_cleanup: $T still has mounts, not removed" >&2
	fi
	T=""
}

# ---------------------------------------------------------------- mirrord

# start_mirrord [ARGS...]: start mirrord over $T/dir on a free loopback port
# (MIRRORD_LISTEN overrides 127.0.0.1:0); wait until it answers /v1/ping.
# Sets MIRRORD_PID, PORT, URL.
start_mirrord() {
	local listen=${MIRRORD_LISTEN:-127.0.0.1:0} p
	t_require_bins "$MIRRORD"
	if [[ -n $MIRRORD_PID ]] && pid_alive "$MIRRORD_PID"; then
		fail "start_mirrord: mirrord already running (pid $MIRRORD_PID)"
	fi
	rm -f "$T/port"
	# mirrord refuses to run as root without --allow-root (tests run as root).
	local root=()
	[[ $(id -u) == 0 ]] && root=(--allow-root)
	echo "=== start_mirrord $listen $* ===" >>"$T/mirrord.log"
	"$MIRRORD" "$T/dir" --listen "$listen" --port-file "$T/port" \
		--state-dir "$T/dstate" --log-level "$T_LOGLEVEL" "${root[@]}" "$@" >>"$T/mirrord.log" 2>&1 &
	MIRRORD_PID=$!
	T_PIDS+=("$MIRRORD_PID")
	local i
	for ((i = 0; i < 200; i++)); do
		if ! pid_alive "$MIRRORD_PID"; then
			t_reap "$MIRRORD_PID" 1 || true
			fail "mirrord exited during start (status ${T_REAP_RC:-?})"
		fi
		p=""
		[[ -s $T/port ]] && read -r p <"$T/port" 2>/dev/null
		# 401: a mirrord started with --token-file answers too.
		if [[ $p =~ ^[0-9]+$ ]] && [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
			"http://127.0.0.1:$p/v1/ping") =~ ^(200|401)$ ]]; then
			PORT=$p
			URL=http://127.0.0.1:$PORT
			step "mirrord pid $MIRRORD_PID on $URL"
			return 0
		fi
		sleep 0.05
	done
	fail "mirrord did not answer /v1/ping within 10s (port file: '$(cat "$T/port" 2>/dev/null)')"
}

# stop_mirrord: SIGTERM and a bounded wait; fails if it does not exit or
# exits with an error (0 and 143 are accepted).
stop_mirrord() {
	[[ -n $MIRRORD_PID ]] || return 0
	kill -TERM "$MIRRORD_PID" 2>/dev/null || true
	if ! t_reap "$MIRRORD_PID" 20; then
		kill -9 "$MIRRORD_PID" 2>/dev/null || true
		t_reap "$MIRRORD_PID" 5 || true
		MIRRORD_PID=""
		fail "mirrord did not exit within 20s of SIGTERM"
	fi
	local rc=$T_REAP_RC
	MIRRORD_PID=""
	case $rc in
	0 | 143 | "") step "mirrord stopped (status ${rc:-?})" ;;
	*) fail "mirrord exited with status $rc after SIGTERM" ;;
	esac
}

# kill_mirrord: SIGKILL (a crash), then reap.
kill_mirrord() {
	[[ -n $MIRRORD_PID ]] || return 0
	kill -9 "$MIRRORD_PID" 2>/dev/null || true
	t_reap "$MIRRORD_PID" 10 || fail "mirrord survived SIGKILL"
	MIRRORD_PID=""
	step "mirrord killed"
}

# restart_mirrord [ARGS...]: stop and start again on the same port, so the
# mounted client keeps its URL.
restart_mirrord() {
	local port=$PORT
	stop_mirrord
	MIRRORD_LISTEN=127.0.0.1:$port start_mirrord "$@"
}

# ---------------------------------------------------------------- mirrorfs

# need_mount: skip this test (exit 0 with SKIP) in poll mode: it checks what
# only a mount does (return codes of operations through it, its command line).
need_mount() {
	[[ $MIRROR_MODE == poll ]] || return 0
	echo "SKIP: $T_NAME: needs a FUSE mount (MIRROR_MODE=poll)"
	exit 0
}

# need_poll: skip this test unless MIRROR_MODE=poll.
need_poll() {
	[[ $MIRROR_MODE == poll ]] && return 0
	echo "SKIP: $T_NAME: polling client only (MIRROR_MODE=poll)"
	exit 0
}

# poll_answers: 0 if the running mirrorfs-poll answers status.
poll_answers() {
	timeout -k 2 10 "${MIRRORFS_CLI[@]}" status "$T_TARGET" >/dev/null 2>&1
}

# mount_poll [ARGS...]: mount_mirrorfs in poll mode: mirrorfs-poll -f on
# $T/backing (scanning every 100 ms), $T/mnt a symlink to $T/backing; waits
# until it answers status.
mount_poll() {
	t_require_bins "$MIRRORFS_POLL"
	if [[ -n $MIRRORFS_PID ]] && pid_alive "$MIRRORFS_PID"; then
		fail "mount_mirrorfs: mirrorfs-poll already running (pid $MIRRORFS_PID)"
	fi
	if [[ ! -L $T/mnt ]]; then
		rmdir "$T/mnt" && ln -s backing "$T/mnt"
	fi
	echo "=== mount_mirrorfs (poll) $* ===" >>"$T/mirrorfs.log"
	"$MIRRORFS_POLL" "$T/backing" --server "$URL" --state-dir "$T/cstate" -f --interval 100 \
		--log-level "$T_LOGLEVEL" "$@" >>"$T/mirrorfs.log" 2>&1 &
	MIRRORFS_PID=$!
	T_PIDS+=("$MIRRORFS_PID")
	local i
	for ((i = 0; i < 400; i++)); do
		if ! pid_alive "$MIRRORFS_PID"; then
			t_reap "$MIRRORFS_PID" 1 || true
			fail "mirrorfs-poll exited during start (status ${T_REAP_RC:-?})"
		fi
		if poll_answers; then
			step "mirrorfs-poll pid $MIRRORFS_PID scanning $T/backing"
			return 0
		fi
		sleep 0.05
	done
	fail "mirrorfs-poll did not answer status within 20s"
}

# mount_mirrorfs [ARGS...]: mount $T/backing at $T/mnt in the foreground (-f)
# as a background job; wait until the mount shows in mountinfo. Sets
# MIRRORFS_PID.
mount_mirrorfs() {
	if [[ $MIRROR_MODE == poll ]]; then
		mount_poll "$@"
		return
	fi
	t_require_bins "$MIRRORFS"
	[[ -n $URL ]] || fail "mount_mirrorfs: no URL (start_mirrord first)"
	if is_mounted "$T/mnt"; then
		fail "mount_mirrorfs: $T/mnt is already mounted"
	fi
	echo "=== mount_mirrorfs $* ===" >>"$T/mirrorfs.log"
	"$MIRRORFS" "$T/backing" "$T/mnt" --server "$URL" --state-dir "$T/cstate" -f \
		--log-level "$T_LOGLEVEL" "$@" >>"$T/mirrorfs.log" 2>&1 &
	MIRRORFS_PID=$!
	T_PIDS+=("$MIRRORFS_PID")
	local i
	for ((i = 0; i < 200; i++)); do
		if is_mounted "$T/mnt"; then
			step "mirrorfs pid $MIRRORFS_PID mounted $T/mnt"
			return 0
		fi
		if ! pid_alive "$MIRRORFS_PID"; then
			t_reap "$MIRRORFS_PID" 1 || true
			fail "mirrorfs exited during mount (status ${T_REAP_RC:-?})"
		fi
		sleep 0.05
	done
	fail "$T/mnt not mounted within 10s"
}

# unmount_mirrorfs: fusermount3 -u (retried while busy; poll mode: SIGTERM),
# then a bounded wait for the daemon; it must exit with status 0. Killed with
# -9 (and the test fails) if it does not exit.
unmount_mirrorfs() {
	local i out=""
	if [[ $MIRROR_MODE == poll && -n $MIRRORFS_PID ]]; then
		kill -TERM "$MIRRORFS_PID" 2>/dev/null || true
	fi
	if is_mounted "$T/mnt"; then
		for ((i = 0; i < 100; i++)); do
			out=$(fusermount3 -u "$T/mnt" 2>&1) && break
			sleep 0.05
		done
		is_mounted "$T/mnt" && fail "fusermount3 -u $T/mnt failed for 5s: $out"
	fi
	[[ -n $MIRRORFS_PID ]] || return 0
	if ! t_reap "$MIRRORFS_PID" 30; then
		kill -9 "$MIRRORFS_PID" 2>/dev/null || true
		t_reap "$MIRRORFS_PID" 5 || true
		MIRRORFS_PID=""
		fail "mirrorfs did not exit within 30s of the unmount (killed)"
	fi
	local rc=$T_REAP_RC
	MIRRORFS_PID=""
	[[ $rc == 0 || -z $rc ]] || fail "mirrorfs exited with status $rc after the unmount"
	step "unmounted"
}

# kill_mirrorfs: SIGKILL the client (a crash) and clear the dead mount.
kill_mirrorfs() {
	[[ -n $MIRRORFS_PID ]] || return 0
	kill -9 "$MIRRORFS_PID" 2>/dev/null || true
	t_reap "$MIRRORFS_PID" 10 || fail "mirrorfs survived SIGKILL"
	MIRRORFS_PID=""
	fusermount3 -u -z "$T/mnt" 2>/dev/null || true
	step "mirrorfs killed"
}

# sync_mirror [TIMEOUT=60]: mirrorfs sync (or mirrorfs-poll sync); fails
# with its output if it does not succeed within TIMEOUT (plus a margin for
# the command itself).
sync_mirror() {
	local timeout=${1:-60} out rc
	step "sync (timeout ${timeout}s)"
	out=$(timeout -k 5 $((timeout + 30)) "${MIRRORFS_CLI[@]}" sync "$T_TARGET" --timeout "$timeout" 2>&1) && {
		step "synced"
		return 0
	}
	rc=$?
	fail "mirrorfs sync failed (status $rc): $out"
}

# mirror_status [ARGS...]: mirrorfs (or mirrorfs-poll) status, bounded;
# prints its output.
mirror_status() {
	timeout -k 5 30 "${MIRRORFS_CLI[@]}" status "$T_TARGET" "$@"
}

# ---------------------------------------------------------------- compare

# compare_trees [TREECMP-ARGS...]: $T/backing must equal $T/dir.
compare_trees() {
	local out
	out=$("$TREECMP" "$@" "$T/backing" "$T/dir" 2>&1) && return 0
	fail "mirror differs from backing (treecmp $*):
$out"
}

# check_trees DESCRIPTION [TREECMP-ARGS...]: compare_trees as a soft check.
check_trees() {
	local what=$1
	shift
	check "$what: mirror differs from backing (treecmp $*)" \
		"$TREECMP" "$@" "$T/backing" "$T/dir"
}

# ---------------------------------------------------------------- tools

# need_fsop: make sure $FSOP exists; builds tests/tools/fsop.c into $T when
# the build dir has none.
need_fsop() {
	[[ -x $FSOP ]] && return 0
	local cc=${CC:-cc}
	"$cc" -std=gnu11 -O2 -Wall -Wextra -Werror -o "$T/fsop" "$T_ROOT/tests/tools/fsop.c" ||
		fail "cannot build tests/tools/fsop.c"
	FSOP=$T/fsop
}

# expect_fail CMD...: CMD must exit non-zero (not by a signal or timeout).
expect_fail() {
	local rc=0
	"$@" || rc=$?
	((rc != 0 && rc < 124)) || fail "expected failure (status $rc): $*"
}
