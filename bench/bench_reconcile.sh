#!/bin/bash
# bench_reconcile.sh: how long mirrorfs takes to reconcile a tree that is
# already in sync (mount -> `mirrorfs sync` returns), next to
# `rsync -a --dry-run` over the same tree (local, and to an rsync daemon on
# loopback). Timings only; nothing here is pass/fail.
#
#   BENCH_FILES   number of files (default 100000)
#   BENCH_ROUNDS  rounds, interleaved (default 3)
#   BENCH_DIR     where to work (default /var/tmp)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) B=$BUILD ;; *) B=$ROOT/$BUILD ;; esac
MIRRORFS=$B/mirrorfs
MIRRORD=$B/mirrord
FILES=${BENCH_FILES:-100000}
ROUNDS=${BENCH_ROUNDS:-3}
W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/mirrorfs-bench-rec.XXXXXX")
PIDS=()
ALLOW=()
"$MIRRORD" --help 2>&1 | grep -q -- --allow-root && [ "$(id -u)" -eq 0 ] && ALLOW=(--allow-root)

cleanup() {
	set +e
	mountpoint -q "$W/mnt" && fusermount3 -u -z "$W/mnt"
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
		kill -9 "$p" 2>/dev/null
	done
	rm -rf "$W"
}
trap cleanup EXIT INT TERM

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

mkdir -p "$W/backing" "$W/mnt" "$W/dir" "$W/rsyncd"
echo "creating $FILES files..."
perl -e '
	my ($root, $n) = @ARGV;
	for my $i (0 .. $n - 1) {
		my $d = sprintf("%s/d%03d", $root, $i % 500);
		mkdir $d unless -d $d;
		open(my $f, ">", "$d/f$i") or die; print $f "file $i\n" x (1 + $i % 7); close $f;
	}' "$W/backing" "$FILES"

"$MIRRORD" "$W/dir" --listen 127.0.0.1:0 --port-file "$W/port" --state-dir "$W/dstate" \
	"${ALLOW[@]}" --log-level warn 2>"$W/mirrord.log" &
PIDS+=($!)
for _ in $(seq 200); do [ -s "$W/port" ] && break; sleep 0.05; done
URL=http://127.0.0.1:$(cat "$W/port")

mount_sync() {
	"$MIRRORFS" "$W/backing" "$W/mnt" --server "$URL" --state-dir "$W/cstate" -f \
		--log-level warn 2>>"$W/mirrorfs.log" &
	MPID=$!
	for _ in $(seq 400); do mountpoint -q "$W/mnt" && break; sleep 0.025; done
	"$MIRRORFS" sync "$W/mnt" --timeout 3600 >/dev/null
}
unmount() {
	fusermount3 -u "$W/mnt"
	for _ in $(seq 400); do kill -0 "$MPID" 2>/dev/null || break; sleep 0.05; done
}

echo "first upload..."
t0=$(now); mount_sync; t1=$(now); unmount
echo "first upload of $FILES files: $(elapsed "$t0" "$t1") s"

cat >"$W/rsyncd/rsyncd.conf" <<CONF
use chroot = no
[m]
path = $W/dir
read only = no
CONF
RPORT=$((20000 + RANDOM % 20000))
rsync --daemon --no-detach --port "$RPORT" --address 127.0.0.1 --config "$W/rsyncd/rsyncd.conf" &
PIDS+=($!)
for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$RPORT) 2>/dev/null && break; sleep 0.05; done

declare -a T_M T_RL T_RD
for r in $(seq "$ROUNDS"); do
	sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
	t0=$(now); mount_sync; t1=$(now); unmount
	T_M+=("$(elapsed "$t0" "$t1")")
	sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
	t0=$(now); rsync -a --dry-run "$W/backing/" "$W/dir/" >/dev/null; t1=$(now)
	T_RL+=("$(elapsed "$t0" "$t1")")
	sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
	t0=$(now); rsync -a --dry-run "$W/backing/" "rsync://127.0.0.1:$RPORT/m/" >/dev/null; t1=$(now)
	T_RD+=("$(elapsed "$t0" "$t1")")
	echo "round $r: mirrorfs ${T_M[-1]} s, rsync -a --dry-run local ${T_RL[-1]} s, to daemon ${T_RD[-1]} s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
m=$(median "${T_M[@]}"); rl=$(median "${T_RL[@]}"); rd=$(median "${T_RD[@]}")
echo
echo "reconcile of $FILES files already in sync (cold cache, median of $ROUNDS):"
printf '  %-42s %8s s\n' "mirrorfs mount + sync" "$m" "rsync -a --dry-run (local)" "$rl" \
	"rsync -a --dry-run (daemon on loopback)" "$rd"
awk -v m="$m" -v r="$rd" 'BEGIN { printf "  ratio mirrorfs / rsync daemon dry run: %.2f\n", m / r }'
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
