#!/bin/bash
# bench/bench_poll.sh [N]: what one idle scan of mirrorfs-poll costs on a
# tree of N files (default 100000), next to find(1) on the same tree:
#   find DIR -printf ''      one pass of readdir, no stat (d_type suffices)
#   find DIR -printf '%s\n'  the same with an lstat per entry, as the poller
# and the poller's memory (VmHWM) with that snapshot.
#
# The poller runs in the foreground with --log-level debug, which logs each
# scan's duration ("scan N: E entries in T ms"); the first scan builds the
# snapshot, the next ones are idle (nothing changes). Its server is a port
# where nothing listens: scanning does not need one (changes wait queued).
# Everything is warm in the page cache, as for a poller that runs all the
# time. Timings are medians of 5 runs (find) and of scans 2-6 (poller).
#
# Environment: BUILD (default build), INTERVAL_MS (default 1000).

set -eu -o pipefail

N=${1:-100000}
BUILD=${BUILD:-build}
INTERVAL_MS=${INTERVAL_MS:-1000}
root=$(cd "$(dirname "$0")/.." && pwd)
case $BUILD in
/*) POLL=$BUILD/mirrorfs-poll ;;
*) POLL=$root/$BUILD/mirrorfs-poll ;;
esac
[[ -x $POLL ]] || { echo "bench_poll: no $POLL (make poll first)" >&2; exit 1; }

W=$(mktemp -d /tmp/mirrorfs-bench-poll.XXXXXX)
PID=""
cleanup() {
	if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
		kill -TERM "$PID" 2>/dev/null || true
		wait "$PID" 2>/dev/null || true
	fi
	rm -rf "$W"
}
trap cleanup EXIT

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }

# ms_of CMD...: wall time of CMD in ms.
ms_of() {
	local t0 t1
	t0=${EPOCHREALTIME/./}
	"$@" >/dev/null
	t1=${EPOCHREALTIME/./}
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f\n", (b - a) / 1000 }'
}

echo "bench_poll: making $N files under $W/tree ..."
dirs=$(((N + 999) / 1000))
made=0
for ((d = 0; d < dirs; d++)); do
	n=$((N - made < 1000 ? N - made : 1000))
	mkdir -p "$W/tree/d$((d % 10))/s$d"
	(cd "$W/tree/d$((d % 10))/s$d" && seq -f 'f%04g' 1 "$n" | xargs touch)
	made=$((made + n))
done
entries=$(find "$W/tree" -mindepth 1 | wc -l)
fs=$(stat -f -c %T "$W/tree") # ext4 reports ext2/ext3

find "$W/tree" -printf '' # warm the caches
f1=$(for i in 1 2 3 4 5; do ms_of find "$W/tree" -printf ''; done | median)
f2=$(for i in 1 2 3 4 5; do ms_of find "$W/tree" -printf '%s\n'; done | median)

"$POLL" "$W/tree" --server http://127.0.0.1:9 --state-dir "$W/state" -f \
	--interval "$INTERVAL_MS" --log-level debug 2>"$W/poll.log" &
PID=$!
for ((i = 0; i < 600; i++)); do
	[[ $(grep -c 'debug: scan [0-9]*: ' "$W/poll.log" || true) -ge 6 ]] && break
	kill -0 "$PID" 2>/dev/null || { cat "$W/poll.log" >&2; exit 1; }
	sleep 0.1
done
hwm=$(awk '/^VmHWM:/ { print $2 }' /proc/"$PID"/status)
kill -TERM "$PID"
wait "$PID" || true
PID=""
scans=$(sed -n 's/.*debug: scan \([0-9]*\): \([0-9]*\) entries in \([0-9.]*\) ms.*/\1 \2 \3/p' "$W/poll.log")
first=$(awk 'NR == 1 { print $3 }' <<<"$scans")
idle=$(awk 'NR >= 2 && NR <= 6 { print $3 }' <<<"$scans" | median)
seen=$(awk 'NR == 2 { print $2 }' <<<"$scans")

printf '\n%d entries (%d files) on %s, warm cache\n' "$entries" "$N" "$fs"
printf '  %-42s %9s ms\n' "find DIR -printf ''" "$f1"
printf '  %-42s %9s ms\n' "find DIR -printf '%s\\n' (lstat each)" "$f2"
printf '  %-42s %9s ms\n' "mirrorfs-poll first scan (snapshot)" "$first"
printf '  %-42s %9s ms   (%s entries)\n' "mirrorfs-poll idle scan (median of 5)" "$idle" "$seen"
printf '  %-42s %9s MiB\n' "mirrorfs-poll peak memory (VmHWM)" "$((hwm / 1024))"
