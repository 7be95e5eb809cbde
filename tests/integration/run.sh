#!/bin/bash
# tests/integration/run.sh [--fuse|--poll] [t_name ...]: run the integration
# tests.
#
# Runs every tests/integration/t_*.sh (or the ones named, with or without the
# .sh), one after the other, each under `timeout -k 10 N` where N is 600 or
# the value of a "# timeout: N" line in the script. Prints PASS/FAIL/SKIP per
# test with its duration; a failing test's output follows its FAIL line
# (VERBOSE=1 streams every test's output instead).
#
# The suite runs once against the FUSE client (build/mirrorfs), then again
# against the polling client (MIRROR_MODE=poll, build/mirrorfs-poll), for
# each client that is built. --fuse or --poll runs one pass only.
#
# After each test it checks that the test left nothing behind: no mount under
# the test's /tmp/mirrorfs-test.* folder and no process it started (found by
# the MIRRORFS_TEST_RUN tag every process of this run inherits). Leftovers
# fail the test and are cleaned up so the next test starts clean.
#
# Exit status: 0 if every test passed, 1 otherwise, 2 on bad usage.

set -u -o pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export BUILD=${BUILD:-build}

RUN_ID=$$.$RANDOM$RANDOM
export MIRRORFS_TEST_RUN=$RUN_ID
RUNDIR=$(mktemp -d /tmp/mirrorfs-run.XXXXXX) || exit 2
export MIRRORFS_TEST_RUNDIR=$RUNDIR
trap 'rm -rf "$RUNDIR"' EXIT

root=$(cd "$here/../.." && pwd)
case $BUILD in
/*) bdir=$BUILD ;;
*) bdir=$root/$BUILD ;;
esac
modes=()
case ${1:-} in
--fuse) modes=(fuse); shift ;;
--poll) modes=(poll); shift ;;
*)
	[[ -x ${MIRRORFS:-$bdir/mirrorfs} ]] && modes+=(fuse)
	[[ -x ${MIRRORFS_POLL:-$bdir/mirrorfs-poll} ]] && modes+=(poll)
	((${#modes[@]})) || modes=(fuse) # the tests say what is missing
	;;
esac

tests=()
if (($# == 0)); then
	for f in "$here"/t_*.sh; do
		[[ -e $f ]] && tests+=("$f")
	done
else
	for a in "$@"; do
		a=$(basename "$a" .sh)
		if [[ ! -f $here/$a.sh ]]; then
			echo "run.sh: no such test: $a" >&2
			exit 2
		fi
		tests+=("$here/$a.sh")
	done
fi
if ((${#tests[@]} == 0)); then
	echo "run.sh: no tests found in $here" >&2
	exit 2
fi

now_ms() {
	local t=${EPOCHREALTIME//[!0-9]/}
	NOW_MS=$((10#$t / 1000))
}

# Pids (not this shell) whose environment carries our run tag, into PIDS.
# Runs in this shell, without forking, so it never finds its own helpers.
tagged_pids() {
	local p kv
	PIDS=()
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[[ $p == "$$" ]] && continue
		while IFS= read -r -d '' kv; do
			if [[ $kv == "MIRRORFS_TEST_RUN=$RUN_ID" ]]; then
				PIDS+=("$p")
				break
			fi
		done 2>/dev/null </proc/"$p"/environ || true # gone, or not ours to read
	done
}

# Mount points below the test dirs recorded so far (lib.sh's t_setup appends
# each $T to $RUNDIR/dirs).
leftover_mounts() {
	[[ -s $RUNDIR/dirs ]] || return 0
	awk 'NR == FNR { d[$0] = 1; next }
	     { for (x in d) if ($5 == x || index($5, x "/") == 1) print $5 }' \
		"$RUNDIR/dirs" /proc/self/mountinfo | sort -u
}

# Report (into LEFT) and clear what a test left behind. Must run in this
# shell, not in $(...). Returns 1 if anything was found.
check_leftovers() {
	local p m cmd
	LEFT=""
	tagged_pids
	for p in "${PIDS[@]}"; do
		cmd=""
		[[ -r /proc/$p/cmdline ]] && cmd=$(tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null)
		[[ -n $cmd ]] || continue # gone, or a kernel thread
		LEFT+="    leftover process $p: $cmd"$'\n'
		kill -9 "$p" 2>/dev/null
	done
	for m in $(leftover_mounts); do
		LEFT+="    leftover mount: $m"$'\n'
		fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
	# A test folder still there (t_cleanup did not run: SIGKILL) is only
	# noted and removed, once nothing is mounted in it.
	if [[ -s $RUNDIR/dirs && ${MIRRORFS_TEST_KEEP:-0} != 1 ]]; then
		for m in $(<"$RUNDIR/dirs"); do
			[[ -d $m ]] || continue
			echo "    note: removing leftover test folder $m" >&2
			awk -v d="$m" 'index($5, d "/") == 1 { f = 1 } END { exit f }' /proc/self/mountinfo &&
				rm -rf --one-file-system "$m"
		done
	fi
	[[ -z $LEFT ]]
}

# Interrupted: stop the running test (it cleans up on TERM), then clear
# whatever is left.
TEST_PID=""
TAIL_PID=""
on_signal() {
	trap - INT TERM
	echo "run.sh: interrupted" >&2
	if [[ -n $TEST_PID ]]; then
		kill -TERM "$TEST_PID" 2>/dev/null
		wait "$TEST_PID" 2>/dev/null
	fi
	check_leftovers || printf '%s' "$LEFT" >&2
	exit "$1"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

pass=0
skipped=0
failed=()
for mode in "${modes[@]}"; do
for t in "${tests[@]}"; do
	name=$(basename "$t" .sh)
	label=$name
	[[ $mode == poll ]] && label=$name/poll
	limit=$(sed -n 's/^# timeout: *\([0-9][0-9]*\).*/\1/p' "$t" | head -n 1)
	limit=${limit:-600}
	out=$RUNDIR/$name.$mode.out
	now_ms
	start=$NOW_MS
	# In the background, so that a signal to run.sh can be passed on to the
	# test (timeout forwards it and the test's trap cleans up).
	MIRROR_MODE=$mode timeout -k 10 "$limit" bash "$t" >"$out" 2>&1 &
	TEST_PID=$!
	if [[ ${VERBOSE:-0} == 1 ]]; then
		tail -n +1 --pid="$TEST_PID" -f "$out" &
		TAIL_PID=$!
	fi
	wait "$TEST_PID"
	rc=$?
	TEST_PID=""
	if [[ -n $TAIL_PID ]]; then
		wait "$TAIL_PID"
		TAIL_PID=""
	fi
	now_ms
	dur=$(((NOW_MS - start) / 1000)).$(((NOW_MS - start) % 1000 / 100))
	why=""
	case $rc in
	0) ;;
	124 | 137) why=" (timed out after ${limit}s)" ;;
	*) why=" (status $rc)" ;;
	esac
	if ! check_leftovers; then
		[[ $rc == 0 ]] && rc=1
		why="$why (left things behind)"
	fi
	if [[ $rc == 0 ]] && skip=$(grep -m 1 '^SKIP: ' "$out"); then
		printf 'SKIP %-24s %6ss %s\n' "$label" "$dur" "${skip#SKIP: "$name": }"
		skipped=$((skipped + 1))
	elif [[ $rc == 0 ]]; then
		printf 'PASS %-24s %6ss\n' "$label" "$dur"
		pass=$((pass + 1))
	else
		printf 'FAIL %-24s %6ss%s\n' "$label" "$dur" "$why"
		[[ -n $LEFT ]] && printf '%s' "$LEFT"
		if [[ ${VERBOSE:-0} != 1 ]]; then
			tail -n 150 "$out" | sed 's/^/    /'
		fi
		failed+=("$label")
	fi
done
done

# A last sweep, in case something outlived its test's check.
if ! check_leftovers; then
	echo "FAIL leftovers after the run:"
	printf '%s' "$LEFT"
	failed+=("(leftovers)")
fi

echo "integration (${modes[*]}): ${pass} passed, ${skipped} skipped, ${#failed[@]} failed${failed[*]:+: ${failed[*]}}"
((${#failed[@]} == 0))
