#!/bin/bash
# bench/bench.sh (make bench): mirrorfs against the bare folder and bindfs.
#
# Runs the same workloads on four targets, interleaved round by round
# (round 1: native, bindfs, bindfs-mt, mirrorfs; round 2: ...), and prints
# the median of the rounds for each figure with its ratio to native:
#
#   native     a plain folder on the filesystem that holds BENCH_DIR
#   bindfs     bindfs (single-threaded, its default) over a plain folder
#   bindfs-mt  bindfs --multithreaded
#   mirrorfs   mirrorfs mounted over a plain folder, with a live mirrord on
#              127.0.0.1 (port 0) mirroring into another plain folder
#
# Workloads (full size; BENCH_QUICK=1 divides them by about ten):
#   seqwrite      fio, 1 GiB sequential write, bs 1 MiB, end_fsync      MB/s
#   seqread       fio, reading that file back with a cold page cache    MB/s
#   randwrite     fio, random 4 KiB writes over a 128 MiB file,
#                 end_fsync (the file is laid out before the clock runs) MB/s
#   smallfiles    5,000 files of 4 KiB in 50 folders, created by a shell
#                 loop (bash builtins, no process per file), stat'ed with
#                 find -exec stat, removed with rm -rf                   s
#   smallfiles-c  the same reduced to system calls (bench_io_files.c):
#                 the filesystem's cost alone, shown for information      s
#   tarball       tar -x of a tarball of /usr/include, then rm -rf        s
#   build         git clone (file://) of a generated C project of 200
#                 files, then make -j2                                    s
# After each mirrorfs run the script times `mirrorfs sync` (how long after
# the workload the mirror is complete) and compares BACKING with the
# mirror using build/treecmp; any difference is reported as an error
# (except a libfuse .fuse_hidden file that is gone a second later: a note).
# Before every timed run: sync(1); before a round's tarball and build
# runs, an untimed warm-up reads back what seqread's cache drop evicted
# (the tarball, the compiler), so that native, always first, does not pay
# for it alone. The figures are only as good as the machine is quiet: the
# report shows the load average at the start and at the end.
#
# Then, for mirrorfs alone:
#   latency   small files written one by one through the mount; the time
#             from close() until the mirror holds the full content
#             (bench_io_latency.c polls the server's folder every 2 ms)
#   upload    first upload of a ~1 GiB tree (2,000 files of 4-16 KiB, 900
#             of 64 KiB-1 MiB, 8 of 64 MiB, random bytes): mirrorfs mounted
#             over a BACKING that already holds it until `mirrorfs sync`
#             returns, and `cp -a` into an empty mount plus `mirrorfs
#             sync`, each against a fresh mirrord, side by side with
#             `rsync -a` to an rsync daemon on 127.0.0.1; CPU seconds per
#             GiB of each process
#   memory    (once, after the rounds) a tree of 100,000 small files:
#             peak RSS (VmHWM) of mirrorfs and mirrord during the first
#             upload, RSS when idle, peak while changes stream in, and a
#             remount with nothing to send
#
# Environment:
#   BENCH_ROUNDS=3          rounds (medians are taken over them)
#   BENCH_QUICK=1           about ten times smaller sizes, for a fast check
#   BENCH_DIR=/var/tmp      where the scratch folder is made (same
#                           filesystem for every target); removed at exit
#   BENCH_KEEP=1            keep the scratch folder (logs, results.tsv)
#   BENCH_TARGETS="native bindfs bindfs-mt mirrorfs"
#   BENCH_WORKLOADS="seqwrite seqread randwrite smallfiles smallfiles-c
#                    tarball build latency upload memory"
#   BUILD=build             where mirrorfs, mirrord and treecmp are
#
# Run as root: cold reads need /proc/sys/vm/drop_caches. Everything goes
# over loopback. Every process the script starts is recorded and killed by
# PID at exit; every mount under the scratch folder is unmounted. Progress
# goes to stderr, the report to stdout. Timing lives here and in no test.

# Single quotes around $ are meant throughout (bash -c, perl, make).
# shellcheck disable=SC2016
set -u -o pipefail
export LC_ALL=C
# Run from make: the project's build must not see this make's flags.
unset MAKEFLAGS MFLAGS MAKELEVEL

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD:-build}
[[ $build == /* ]] || build=$root/$build
MIRRORFS=$build/mirrorfs
MIRRORD=$build/mirrord
TREECMP=$build/treecmp

ROUNDS=${BENCH_ROUNDS:-3}
QUICK=${BENCH_QUICK:-0}
TARGETS=${BENCH_TARGETS:-native bindfs bindfs-mt mirrorfs}
WORKLOADS=${BENCH_WORKLOADS:-seqwrite seqread randwrite smallfiles smallfiles-c tarball build latency upload memory}
ALL_TARGETS="native bindfs bindfs-mt mirrorfs"
MAIN_WORKLOADS="seqwrite seqread randwrite smallfiles smallfiles-c tarball build"

if [[ $QUICK == 1 ]]; then
	SEQ_MB=128 RAND_MB=16
	SF_DIRS=10 SF_FILES=500
	TAR_ENTRIES=900 # the first entries of /usr/include, sorted
	BUILD_FILES=30
	LAT_FILES=50
	UP_SMALL=200 UP_MEDIUM=90 UP_LARGE=2 UP_LARGE_MB=24
	MEM_DIRS=10 MEM_FILES=10000
	WL_TIMEOUT=300 SYNC_TIMEOUT=300
else
	SEQ_MB=1024 RAND_MB=128
	SF_DIRS=50 SF_FILES=5000
	TAR_ENTRIES=0 # all of /usr/include
	BUILD_FILES=200
	LAT_FILES=200
	UP_SMALL=2000 UP_MEDIUM=900 UP_LARGE=8 UP_LARGE_MB=64
	MEM_DIRS=100 MEM_FILES=100000
	WL_TIMEOUT=1800 SYNC_TIMEOUT=1800
fi
LAT_SIZE=4096

B="" # the scratch folder
declare -A PID_OF=()  # label -> pid of every process we started
declare -A PORT_OF=() # mirrord instance -> port
ERRORS=()
MFS_DEAD="" # set once the main mirrorfs instance has died

# ---------------------------------------------------------------- output

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}
# error MSG: a problem in what is measured (not in the benchmark): shown as
# it happens and again, with all others, at the end of the report.
error() {
	ERRORS+=("$*")
	printf '[bench %s] *** ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

# note MSG: something odd but not wrong, listed at the end of the report.
NOTES=()
note() {
	NOTES+=("$*")
	printf '[bench %s] note: %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

# ---------------------------------------------------------------- time

# stamp VAR: microseconds since the epoch into VAR, without forking (a
# fork would add to the time measured).
stamp() {
	local t=${EPOCHREALTIME/./}
	printf -v "$1" '%d' $((10#$t))
}
# secs FROM_US TO_US: the difference in seconds, 3 decimals.
secs() {
	local d=$(($2 - $1))
	printf '%d.%03d' $((d / 1000000)) $((d % 1000000 / 1000))
}

# ---------------------------------------------------------------- processes

pid_alive() {
	local st
	[[ -n ${1:-} && -r /proc/$1/stat ]] || return 1
	read -r st 2>/dev/null </proc/"$1"/stat || return 1
	st=${st##*) }
	[[ ${st:0:1} != Z ]]
}

# reap PID SECONDS: wait up to SECONDS for PID to exit; sets REAP_RC to its
# status ("" if it was not our child). Returns 1 on timeout.
reap() {
	local pid=$1 n=$(($2 * 20))
	REAP_RC=""
	while pid_alive "$pid"; do
		((n-- > 0)) || return 1
		sleep 0.05
	done
	if wait "$pid" 2>/dev/null; then REAP_RC=0; else REAP_RC=$?; fi
	[[ $REAP_RC == 127 ]] && REAP_RC=""
	return 0
}

# stop_pid LABEL: SIGTERM, a bounded wait, then SIGKILL.
stop_pid() {
	local pid=${PID_OF[$1]:-}
	unset "PID_OF[$1]"
	[[ -n $pid ]] || return 0
	pid_alive "$pid" || { wait "$pid" 2>/dev/null; return 0; }
	kill -TERM "$pid" 2>/dev/null
	reap "$pid" 10 && return 0
	kill -9 "$pid" 2>/dev/null
	reap "$pid" 5 || log "pid $pid ($1) did not die"
}

# bounded CMD...: CMD under timeout(1) with WL_TIMEOUT, as a background job
# that the shell waits for, so that a signal runs the cleanup at once
# instead of after CMD (bash defers traps until a foreground command ends).
# The job is recorded for the cleanup. Returns CMD's status (124: timeout).
bounded() {
	timeout -k 10 "$WL_TIMEOUT" "$@" &
	PID_OF[job]=$!
	local rc=0
	wait "${PID_OF[job]}" || rc=$?
	unset "PID_OF[job]"
	return $rc
}

is_mounted() { awk -v m="$1" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; }
mounts_under() { awk -v d="$1" 'index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo; }

# wait_mounted MOUNTPOINT LABEL: until MOUNTPOINT shows in mountinfo (10 s),
# or the process LABEL exits.
wait_mounted() {
	local i pid=${PID_OF[$2]}
	for ((i = 0; i < 200; i++)); do
		is_mounted "$1" && return 0
		pid_alive "$pid" || return 1
		sleep 0.05
	done
	return 1
}

cleanup() {
	local m label
	trap - EXIT INT TERM
	[[ -n $B && -d $B ]] || return 0
	# Lazy unmounts first: a hung daemon must not block the exit.
	for m in $(mounts_under "$B" | sort -r); do
		fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
	for label in "${!PID_OF[@]}"; do
		stop_pid "$label"
	done
	if [[ -n $(mounts_under "$B") ]]; then
		log "mounts remain under $B; not removing it"
	elif [[ ${BENCH_KEEP:-0} == 1 ]]; then
		log "kept $B"
	else
		rm -rf --one-file-system "$B"
	fi
}

# ---------------------------------------------------------------- caches

CAN_DROP=0
drop_caches() {
	sync
	((CAN_DROP)) && echo 3 >/proc/sys/vm/drop_caches
	return 0
}

# ---------------------------------------------------------------- results

# record KEY TARGET ROUND VALUE: one measurement (results.tsv).
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$B/results.tsv"; }

# median KEY TARGET: the median of the rounds' values, or "" if none.
median() {
	awk -F'\t' -v k="$1" -v t="$2" '$1 == k && $2 == t && $4 != "" { print $4 }' \
		"$B/results.tsv" 2>/dev/null | sort -g |
		awk '{ v[NR] = $1 } END {
			if (NR == 0) exit
			if (NR % 2) printf "%.6f\n", v[(NR + 1) / 2]
			else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# values KEY TARGET: every round's value, space-separated.
values() {
	awk -F'\t' -v k="$1" -v t="$2" '$1 == k && $2 == t { printf "%s%s", s, $4; s = " " }' \
		"$B/results.tsv" 2>/dev/null
}

# ---------------------------------------------------------------- mirrorfs

# mirrord refuses to run as root unless told to (the benchmark runs as
# root for drop_caches and bindfs); versions before the option lack it.
MIRRORD_ROOT=()
mirrord_root_opt() {
	local help
	help=$("$MIRRORD" --help 2>&1)
	if [[ $(id -u) == 0 && $help == *--allow-root* ]]; then
		MIRRORD_ROOT=(--allow-root)
	fi
}

# md_start NAME: mirrord over $B/NAME.dir on 127.0.0.1, port 0. Sets
# PORT_OF[NAME].
md_start() {
	local n=$1 i p=""
	mkdir -p "$B/$n.dir"
	rm -f "$B/$n.port"
	"$MIRRORD" "$B/$n.dir" --listen 127.0.0.1:0 --port-file "$B/$n.port" \
		--state-dir "$B/$n.dstate" "${MIRRORD_ROOT[@]}" >>"$B/$n.mirrord.log" 2>&1 &
	PID_OF[mirrord.$n]=$!
	for ((i = 0; i < 200; i++)); do
		pid_alive "${PID_OF[mirrord.$n]}" || break
		[[ -s $B/$n.port ]] && read -r p <"$B/$n.port"
		if [[ $p =~ ^[0-9]+$ ]] && curl -sf --max-time 2 "http://127.0.0.1:$p/v1/ping" >/dev/null; then
			PORT_OF[$n]=$p
			return 0
		fi
		sleep 0.05
	done
	tail -n 20 "$B/$n.mirrord.log" >&2
	die "mirrord ($n) did not start"
}

# md_stop NAME: SIGTERM; an exit status other than 0/143 is an error.
md_stop() {
	local n=$1 pid=${PID_OF[mirrord.$1]:-}
	[[ -n $pid ]] || return 0
	unset "PID_OF[mirrord.$n]"
	if ! pid_alive "$pid"; then
		reap "$pid" 1
		error "mirrord ($n) had exited by itself (status ${REAP_RC:-?}); log: $B/$n.mirrord.log"
		return 0
	fi
	kill -TERM "$pid"
	if ! reap "$pid" 30; then
		error "mirrord ($n) did not exit within 30 s of SIGTERM (killed)"
		kill -9 "$pid" 2>/dev/null
		reap "$pid" 5
	elif [[ -n $REAP_RC && $REAP_RC != 0 && $REAP_RC != 143 ]]; then
		error "mirrord ($n) exited with status $REAP_RC after SIGTERM"
	fi
}

# fs_mount NAME: mirrorfs $B/NAME.backing at $B/NAME.mnt, foreground (-f) so
# that its PID is ours, against mirrord NAME.
fs_mount() {
	local n=$1
	mkdir -p "$B/$n.backing" "$B/$n.mnt"
	"$MIRRORFS" "$B/$n.backing" "$B/$n.mnt" --server "http://127.0.0.1:${PORT_OF[$n]}" \
		--state-dir "$B/$n.cstate" -f >>"$B/$n.mirrorfs.log" 2>&1 &
	PID_OF[mirrorfs.$n]=$!
	if ! wait_mounted "$B/$n.mnt" "mirrorfs.$n"; then
		tail -n 20 "$B/$n.mirrorfs.log" >&2
		die "mirrorfs ($n) did not mount $B/$n.mnt"
	fi
}

# fs_unmount NAME: fusermount3 -u (retried while busy), then the daemon
# must exit with status 0 within 60 s (it drains its queue for up to 30 s).
fs_unmount() {
	local n=$1 i out="" pid=${PID_OF[mirrorfs.$1]:-}
	if is_mounted "$B/$n.mnt"; then
		for ((i = 0; i < 100; i++)); do
			out=$(fusermount3 -u "$B/$n.mnt" 2>&1) && break
			sleep 0.1
		done
		if is_mounted "$B/$n.mnt"; then
			error "fusermount3 -u $B/$n.mnt failed for 10 s: $out"
			fusermount3 -u -z "$B/$n.mnt" 2>/dev/null
		fi
	fi
	[[ -n $pid ]] || return 0
	unset "PID_OF[mirrorfs.$n]"
	if ! reap "$pid" 60; then
		error "mirrorfs ($n) did not exit within 60 s of the unmount (killed)"
		kill -9 "$pid" 2>/dev/null
		reap "$pid" 5
	elif [[ -n $REAP_RC && $REAP_RC != 0 ]]; then
		error "mirrorfs ($n) exited with status $REAP_RC after the unmount; log: $B/$n.mirrorfs.log"
	fi
}

# fs_alive NAME: the mirrorfs and mirrord of NAME both run; an error if not.
fs_alive() {
	local n=$1 who
	for who in mirrorfs mirrord; do
		if ! pid_alive "${PID_OF[$who.$n]:-}"; then
			error "$who ($n) died (pid ${PID_OF[$who.$n]:-?}); last log lines: $(tail -n 5 "$B/$n.$who.log" 2>/dev/null | tr '\n' '|')"
			return 1
		fi
	done
}

# fs_sync NAME: mirrorfs sync, bounded. Sets SYNC_SECS to the seconds it
# took; returns 1 (with an error recorded) if it failed. Not to be called in
# $(...): the error would be lost with the subshell.
SYNC_SECS=""
fs_sync() {
	local n=$1 t0 t1 out rc=0
	SYNC_SECS=""
	stamp t0
	WL_TIMEOUT=$((SYNC_TIMEOUT + 30)) bounded "$MIRRORFS" sync "$B/$n.mnt" \
		--timeout "$SYNC_TIMEOUT" >"$B/sync.out" 2>&1 || rc=$?
	stamp t1
	out=$(cat "$B/sync.out")
	if ((rc != 0)); then
		error "mirrorfs sync ($n) failed after $(secs "$t0" "$t1") s (status $rc): $out"
		return 1
	fi
	SYNC_SECS=$(secs "$t0" "$t1")
}

# fs_compare NAME WHAT: BACKING must equal the mirror; differences are
# errors, shown in full (up to 20 lines).
fs_compare() {
	local n=$1 out
	out=$("$TREECMP" --max-diffs 20 "$B/$n.backing" "$B/$n.dir" 2>&1) && return 0
	# libfuse renames a file unlinked while open to .fuse_hidden* until its
	# release, and mirrorfs keeps such names out of the mirror by design:
	# one that is gone a second later is noted, not an error.
	if ! grep -v '^treecmp: ' <<<"$out" | grep -qvE '^only in A: (.*/)?\.fuse_hidden[^/]* \(file\)$'; then
		sleep 1
		if "$TREECMP" "$B/$n.backing" "$B/$n.dir" >/dev/null 2>&1; then
			note "after $2 ($n), BACKING still held a libfuse .fuse_hidden file when 'mirrorfs sync' returned (gone 1 s later): $(grep -v '^treecmp: ' <<<"$out" | head -n 3 | tr '\n' ' ')"
			return 0
		fi
	fi
	error "mirror differs from BACKING after $2 ($n):
$(printf '%s\n' "$out" | sed 's/^/        /')"
	return 1
}

# inst_remove NAME: the folders of a mirrorfs/mirrord pair (not its logs).
inst_remove() {
	local d
	for d in backing mnt dir dstate cstate; do
		rm -rf --one-file-system "${B:?}/$1.$d"
	done
}

# fs_check_status NAME: operations the server refused are errors; the last
# transient error, if any, is logged.
fs_check_status() {
	local n=$1 st
	st=$(timeout -k 5 30 "$MIRRORFS" status "$B/$n.mnt" --json 2>&1) || {
		error "mirrorfs status ($n) failed: $st"
		return 0
	}
	perl -MJSON::PP -e '
		my $s = eval { decode_json(join("", <STDIN>)) } or do { print "unreadable status\n"; exit 1 };
		print "$s->{rejected} operations refused by the server, last error: $s->{last_error}\n"
			if $s->{rejected};
		print "$s->{skipped_special} special files skipped\n" if $s->{skipped_special};
		exit($s->{rejected} ? 1 : 0);' <<<"$st" >"$B/$n.status.check" ||
		error "mirrorfs ($n): $(cat "$B/$n.status.check")"
	if grep -q '"last_error":[[:space:]]*"[^"]' <<<"$st"; then
		log "note: mirrorfs ($n) status has a last error: $(grep -o '"last_error":[^,]*' <<<"$st")"
	fi
}

# fs_cpu NAME WHO: utime+stime of mirrorfs or mirrord NAME, in seconds.
fs_cpu() {
	local pid=${PID_OF[$2.$1]} st
	read -r st </proc/"$pid"/stat || return 1
	st=${st##*) }
	# shellcheck disable=SC2086
	set -- $st
	awk -v u="${12}" -v s="${13}" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f\n", (u + s) / hz }'
}

# fs_mem NAME WHO FIELD: VmHWM or VmRSS of mirrorfs or mirrord NAME, MiB.
fs_mem() {
	local pid=${PID_OF[$2.$1]}
	awk -v f="$3:" '$1 == f { printf "%.1f\n", $2 / 1024 }' /proc/"$pid"/status
}

# ---------------------------------------------------------------- targets

# target_root TARGET: the folder the workloads run in.
target_root() {
	case $1 in
	native) echo "$B/native" ;;
	bindfs) echo "$B/bindfs.mnt" ;;
	bindfs-mt) echo "$B/bindfsmt.mnt" ;;
	mirrorfs) echo "$B/mfs.mnt" ;;
	esac
}

start_targets() {
	local t
	for t in $TARGETS; do
		case $t in
		native) mkdir -p "$B/native" ;;
		bindfs | bindfs-mt)
			local n=${t/-/}
			mkdir -p "$B/$n.src" "$B/$n.mnt"
			if [[ $t == bindfs ]]; then
				bindfs -f "$B/$n.src" "$B/$n.mnt" >>"$B/$n.log" 2>&1 &
			else
				bindfs -f --multithreaded "$B/$n.src" "$B/$n.mnt" >>"$B/$n.log" 2>&1 &
			fi
			PID_OF[$t]=$!
			wait_mounted "$B/$n.mnt" "$t" || die "$t did not mount (log: $(cat "$B/$n.log"))"
			;;
		mirrorfs)
			md_start mfs
			fs_mount mfs
			;;
		*) die "unknown target '$t' (known: $ALL_TARGETS)" ;;
		esac
	done
}

# ---------------------------------------------------------------- fio

# fio_run OUT.json ARGS...: fio, bounded; returns fio's status.
fio_run() {
	local out=$1
	shift
	bounded fio --output-format=json --output="$out" "$@" >"$out.stderr" 2>&1
}

# fio_mbps FILE.json read|write: bandwidth in MB/s (10^6 bytes). fio's
# runtime includes the end_fsync. Empty output if the job reported an error.
fio_mbps() {
	perl -MJSON::PP -e '
		local $/; open(my $f, "<", $ARGV[0]) or exit 1; my $t = <$f>;
		$t =~ s/^[^{]*//s;   # warnings fio may print before the JSON
		my $j = eval { decode_json($t) } or exit 1;
		my $job = $j->{jobs}[0];
		exit 1 if $job->{error};
		printf "%.1f\n", $job->{$ARGV[1]}{bw_bytes} / 1e6;' "$1" "$2"
}

# ---------------------------------------------------------------- fixtures

# Made once, outside every target.
make_fixtures() {
	local want
	# shellcheck disable=SC2086 # a list, split on purpose
	want=$(printf '%s\n' $WORKLOADS)
	if grep -qx tarball <<<"$want"; then
		if ((TAR_ENTRIES > 0)); then
			# sed, not head: head would stop sort with SIGPIPE (pipefail).
			(cd /usr && find include -mindepth 1 | sort | sed -n "1,${TAR_ENTRIES}p" |
				tar -cf "$B/include.tar" --no-recursion -T -) || die "cannot make include.tar"
		else
			tar -cf "$B/include.tar" -C /usr include || die "cannot make include.tar"
		fi
		log "tarball: $(tar -tf "$B/include.tar" | wc -l) entries, $(($(stat -c %s "$B/include.tar") / 1048576)) MiB"
	fi
	if grep -qx build <<<"$want"; then
		make_project "$B/proj.src" "$BUILD_FILES"
		git init -q --bare "$B/proj.git"
		(cd "$B/proj.src" && git init -q && git add -A &&
			git -c user.name=bench -c user.email=bench@localhost commit -q -m project &&
			git push -q "$B/proj.git" HEAD:refs/heads/main) || die "cannot make the project's git repo"
		git -C "$B/proj.git" symbolic-ref HEAD refs/heads/main
	fi
	if grep -qx upload <<<"$want"; then
		log "making the upload tree"
		mkdir -p "$B/tree"
		local a b c
		a=$("$BIN/bench_io_tree" "$B/tree/small" 20 "$UP_SMALL" 4096 16384 1) &&
			b=$("$BIN/bench_io_tree" "$B/tree/medium" 10 "$UP_MEDIUM" 65536 1048576 2) &&
			c=$("$BIN/bench_io_tree" "$B/tree/large" 1 "$UP_LARGE" $((UP_LARGE_MB << 20)) \
				$((UP_LARGE_MB << 20)) 3) || die "cannot make the upload tree"
		UP_BYTES=$((a + b + c))
		UP_FILES=$((UP_SMALL + UP_MEDIUM + UP_LARGE))
		log "upload tree: $UP_FILES files, $((UP_BYTES >> 20)) MiB"
	fi
}

# make_project DIR N: a C project of N modules (each a .c and a .h), a
# main.c that calls them all, and a Makefile with dependency tracking.
make_project() {
	local d=$1 n=$2 i
	mkdir -p "$d/src" "$d/include"
	{
		echo '#ifndef COMMON_H'
		echo '#define COMMON_H'
		echo '#include <stddef.h>'
		echo 'struct acc { unsigned long sum; size_t calls; };'
		echo 'static inline void acc_add(struct acc *a, unsigned long v) { a->sum += v; a->calls++; }'
		echo '#endif'
	} >"$d/include/common.h"
	for ((i = 0; i < n; i++)); do
		printf -v m 'mod%03d' "$i"
		{
			echo "#ifndef ${m^^}_H"
			echo "#define ${m^^}_H"
			echo '#include "common.h"'
			echo "void ${m}_run(struct acc *a);"
			echo '#endif'
		} >"$d/include/$m.h"
		{
			echo "#include \"$m.h\""
			echo '#include <string.h>'
			echo "static unsigned long ${m}_mix(unsigned long x) { x ^= x >> 13; x *= 0x5bd1e995UL; return x ^ (x >> 15); }"
			echo "static unsigned long ${m}_table[64];"
			echo "static void ${m}_fill(void) { for (int i = 0; i < 64; i++) ${m}_table[i] = ${m}_mix((unsigned long)i * $((i + 7))UL); }"
			echo "void ${m}_run(struct acc *a) {"
			echo "	char buf[32];"
			echo "	${m}_fill();"
			echo "	for (int i = 0; i < 64; i++) acc_add(a, ${m}_table[i] % $((i + 97)));"
			echo "	memset(buf, $((i % 250 + 1)), sizeof(buf));"
			echo "	acc_add(a, (unsigned long)buf[$((i % 32))]);"
			echo "}"
		} >"$d/src/$m.c"
	done
	{
		echo '#include <stdio.h>'
		for ((i = 0; i < n; i++)); do printf '#include "mod%03d.h"\n' "$i"; done
		echo 'int main(void) {'
		echo '	struct acc a = { 0, 0 };'
		for ((i = 0; i < n; i++)); do printf '	mod%03d_run(&a);\n' "$i"; done
		echo '	printf("%zu %lu\n", a.calls, a.sum);'
		echo '	return 0;'
		echo '}'
	} >"$d/src/main.c"
	# (the recipe lines start with a literal tab)
	printf '%s\n' 'CFLAGS := -O1 -g -Wall -Wextra' 'SRCS := $(wildcard src/*.c)' \
		'OBJS := $(SRCS:src/%.c=obj/%.o)' '' 'app: $(OBJS)' '	$(CC) -o $@ $^' '' \
		'obj/%.o: src/%.c | obj' '	$(CC) $(CFLAGS) -Iinclude -MMD -MP -c $< -o $@' '' \
		'obj:' '	mkdir -p obj' '' '-include $(OBJS:.o=.d)' >"$d/Makefile"
	echo 'obj/' >"$d/.gitignore"
	echo 'app' >>"$d/.gitignore"
}

# ---------------------------------------------------------------- workloads

# The shell small-files workload, run by `timeout bash -c`.
smallfiles_body() {
	local dir=$1 nd=$2 nf=$3 d i
	for ((d = 0; d < nd; d++)); do mkdir "$dir/d$d" || return 1; done
	for ((i = 0; i < nf; i++)); do
		printf '%06d%4090s' "$i" '' >"$dir/d$((i % nd))/f$i" || return 1
	done
	find "$dir" -type f -exec stat -c %s {} + >/dev/null || return 1
	rm -rf "$dir"/d*
}
export -f smallfiles_body

# run_timed OUTVAR CMD...: run CMD bounded by WL_TIMEOUT; sets OUTVAR to
# the wall time in seconds. Returns CMD's status.
run_timed() {
	local -n _out=$1
	shift
	local t0 t1 rc=0
	stamp t0
	bounded "$@" >>"$B/workload.log" 2>&1 || rc=$?
	stamp t1
	_out=$(secs "$t0" "$t1")
	return $rc
}

# workload W TARGET ROUND: run W on TARGET in a fresh folder; record the
# figure; for mirrorfs, time the sync and compare the trees. The folder is
# left for the next workload that needs it (seqread reads seqwrite's file)
# and removed by workload_cleanup.
workload() {
	local w=$1 t=$2 r=$3 dir val="" rc=0 lag
	dir=$(target_root "$t")/$w
	if [[ $t == mirrorfs && -n $MFS_DEAD ]]; then
		return 0
	fi
	case $w in
	seqread) dir=$(target_root "$t")/seqwrite ;;
	esac
	echo "=== round $r $w $t" >>"$B/workload.log"
	case $w in
	seqwrite)
		mkdir -p "$dir"
		sync
		fio_run "$B/fio.json" --name=seqwrite --directory="$dir" --filename=seq.dat \
			--rw=write --bs=1M --size="${SEQ_MB}M" --end_fsync=1 --fallocate=none \
			--randrepeat=0 || rc=$?
		((rc == 0)) && val=$(fio_mbps "$B/fio.json" write)
		;;
	seqread)
		if [[ ! -f $dir/seq.dat ]]; then
			error "seqread on $t: $dir/seq.dat is missing (seqwrite failed?)"
			return 0
		fi
		drop_caches
		fio_run "$B/fio.json" --name=seqread --directory="$dir" --filename=seq.dat \
			--rw=read --bs=1M --size="${SEQ_MB}M" || rc=$?
		((rc == 0)) && val=$(fio_mbps "$B/fio.json" read)
		;;
	randwrite)
		mkdir -p "$dir"
		# Lay the file out first, outside the clock (and, for mirrorfs,
		# let it reach the mirror), so that only the random writes count.
		fio_run "$B/fio.json" --name=randwrite --directory="$dir" --filename=rand.dat \
			--rw=randwrite --bs=4k --size="${RAND_MB}M" --fallocate=none --create_only=1 || rc=$?
		if [[ $t == mirrorfs ]] && ((rc == 0)); then
			fs_sync mfs
		fi
		sync
		((rc == 0)) && { fio_run "$B/fio.json" --name=randwrite --directory="$dir" \
			--filename=rand.dat --rw=randwrite --bs=4k --size="${RAND_MB}M" --end_fsync=1 \
			--fallocate=none --randrepeat=0 || rc=$?; }
		((rc == 0)) && val=$(fio_mbps "$B/fio.json" write)
		;;
	smallfiles)
		mkdir -p "$dir"
		sync
		run_timed val bash -c 'smallfiles_body "$@"' _ "$dir" "$SF_DIRS" "$SF_FILES" || rc=$?
		;;
	smallfiles-c)
		mkdir -p "$dir"
		sync
		run_timed val "$BIN/bench_io_files" "$dir" "$SF_DIRS" "$SF_FILES" 4096 || rc=$?
		;;
	tarball)
		mkdir -p "$dir"
		sync
		run_timed val bash -c 'tar -xf "$1" -C "$2" && rm -rf "$2/include"' _ \
			"$B/include.tar" "$dir" || rc=$?
		;;
	build)
		mkdir -p "$dir"
		sync
		run_timed val bash -c 'git clone -q "file://$1" "$2/proj" && make -s -C "$2/proj" -j2' _ \
			"$B/proj.git" "$dir" || rc=$?
		if ((rc == 0)) && [[ $("$dir/proj/app" 2>&1) != "$((BUILD_FILES * 65)) "* ]]; then
			error "build on $t: the program built does not run right: $("$dir/proj/app" 2>&1 | head -c 200)"
		fi
		;;
	esac
	if ((rc != 0)) || [[ -z $val ]]; then
		error "$w on $t (round $r) failed (status $rc$( ((rc == 124)) && echo ", timed out after ${WL_TIMEOUT}s")); see $B/workload.log: $(tail -n 3 "$B/workload.log" "$B/fio.json.stderr" 2>/dev/null | tr '\n' ' ' | head -c 400)"
		record "$w.failed" "$t" "$r" 1
		val=""
	else
		record "$w" "$t" "$r" "$val"
	fi
	local msg="round $r $w $t: ${val:-FAILED}"
	if [[ $t == mirrorfs ]]; then
		if ! fs_alive mfs; then
			MFS_DEAD=1
			log "$msg; mirrorfs is dead, skipping it from now on"
			return 0
		fi
		if fs_sync mfs; then
			lag=$SYNC_SECS
			record "$w.lag" mirrorfs "$r" "$lag"
			msg+=", mirror complete ${lag}s later"
			fs_compare mfs "$w (round $r)" || record "$w.failed" "$t" "$r" 1
		else
			record "$w.failed" "$t" "$r" 1
		fi
	fi
	log "$msg"
}

# warm_up W: before a round's runs of W, read back what seqread's
# drop_caches evicted and W needs, outside the clock: otherwise the first
# target of the round (always native) pays for it alone.
warm_up() {
	case $1 in
	tarball) cat "$B/include.tar" >/dev/null ;;
	build)
		rm -rf "$B/warm"
		git clone -q "file://$B/proj.git" "$B/warm" &&
			make -s -C "$B/warm" obj/mod000.o >/dev/null &&
			printf 'int main(void) { return 0; }\n' >"$B/warm/m.c" &&
			cc -o "$B/warm/m" "$B/warm/m.c" || die "the build warm-up failed"
		rm -rf "$B/warm"
		;;
	esac
}

# workload_cleanup W TARGET: remove W's folder (outside the clock); for
# mirrorfs, let the deletion reach the mirror so the next workload starts
# with an idle mirrorfs.
workload_cleanup() {
	local w=$1 t=$2 dir
	[[ $w == seqread ]] && w=seqwrite
	dir=$(target_root "$t")/$w
	[[ $t == mirrorfs && -n $MFS_DEAD ]] && return 0
	[[ -e $dir ]] && bounded rm -rf "$dir"
	if [[ $t == mirrorfs ]]; then
		fs_sync mfs
	fi
	sync
}

# latency ROUND: small files through the main mirrorfs mount.
latency() {
	local r=$1 sub=latency-r$1 out
	[[ -z $MFS_DEAD ]] || return 0
	mkdir -p "$B/mfs.mnt/$sub"
	fs_sync mfs || return 0
	out=$B/latency-r$r.txt
	if ! bounded "$BIN/bench_io_latency" "$B/mfs.mnt/$sub" "$B/mfs.dir/$sub" \
		"$LAT_FILES" "$LAT_SIZE" 2000 10000 5 >"$out" 2>>"$B/workload.log"; then
		error "latency test (round $r) failed: $(tail -n 2 "$B/workload.log" | tr '\n' ' ')"
		return 0
	fi
	local to
	to=$(grep -c timeout "$out")
	((to > 0)) && error "latency test (round $r): $to of $LAT_FILES files were not complete on the server within 10 s"
	log "round $r latency: $(grep -v timeout "$out" | sort -g | awk '{ v[NR] = $1 } END { if (NR) printf "median %.1f ms, max %.1f ms", v[int((NR + 1) / 2)], v[NR] }'), $to timeouts"
	fs_alive mfs || { MFS_DEAD=1; return 0; }
	fs_compare mfs "the latency test (round $r)"
	rm -rf "${B:?}/mfs.mnt/$sub"
	fs_sync mfs
}

RSYNC_PORT=""
rsync_start() {
	local i p
	mkdir -p "$B/rsync.dest"
	cat >"$B/rsyncd.conf" <<-EOF
		use chroot = no
		lock file = $B/rsyncd.lock
		uid = root
		gid = root
		max connections = 4
		[bench]
		path = $B/rsync.dest
		read only = no
	EOF
	for ((i = 0; i < 20; i++)); do
		p=$((20000 + RANDOM % 40000))
		rsync --daemon --no-detach --address 127.0.0.1 --port "$p" --config "$B/rsyncd.conf" \
			--log-file "$B/rsyncd.log" >>"$B/rsyncd.out" 2>&1 &
		PID_OF[rsyncd]=$!
		local j
		for ((j = 0; j < 40; j++)); do
			pid_alive "${PID_OF[rsyncd]}" || break
			if rsync "rsync://127.0.0.1:$p/" 2>/dev/null | grep -q '^bench'; then
				RSYNC_PORT=$p
				return 0
			fi
			sleep 0.05
		done
		stop_pid rsyncd
	done
	die "cannot start an rsync daemon on 127.0.0.1 (see $B/rsyncd.out)"
}

# rsyncd_cpu: CPU seconds of the daemon's reaped children (the
# per-connection processes that receive the files).
rsyncd_cpu() {
	local st
	read -r st </proc/"${PID_OF[rsyncd]}"/stat || return 1
	st=${st##*) }
	# shellcheck disable=SC2086
	set -- $st
	awk -v u="${12}" -v s="${13}" -v cu="${14}" -v cs="${15}" -v hz="$CLK_TCK" \
		'BEGIN { printf "%.2f\n", (u + s + cu + cs) / hz }'
}

# per_gib CPU_SECONDS: CPU seconds per GiB of the upload tree.
per_gib() { awk -v c="$1" -v b="$UP_BYTES" 'BEGIN { printf "%.2f\n", c / (b / 1073741824) }'; }

# upload ROUND: rsync, mirrorfs over an existing tree, cp -a into mirrorfs.
upload() {
	local r=$1 t0 t1 rc n val c0 c1 rtimes
	# rsync -a to the daemon: the client's CPU from bash's time keyword,
	# the daemon's from its reaped children.
	rm -rf "$B/rsync.dest/r"
	drop_caches
	c0=$(rsyncd_cpu)
	stamp t0
	rtimes=$( { TIMEFORMAT='%U %S'; time timeout -k 10 "$WL_TIMEOUT" \
		rsync -a "$B/tree/" "rsync://127.0.0.1:$RSYNC_PORT/bench/r/" >>"$B/workload.log" 2>&1; } 2>&1) || rc=$?
	stamp t1
	sleep 0.2 # let the daemon reap its child
	c1=$(rsyncd_cpu)
	if [[ ${rc:-0} != 0 ]]; then
		error "rsync upload (round $r) failed: $(tail -n 2 "$B/workload.log" | tr '\n' ' ')"
	else
		val=$(secs "$t0" "$t1")
		record upload rsync "$r" "$val"
		record upload.cpu.sender rsync "$r" "$(per_gib "$(awk -v a="${rtimes% *}" -v b="${rtimes#* }" 'BEGIN { print a + b }')")"
		record upload.cpu.receiver rsync "$r" "$(per_gib "$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')")"
		log "round $r upload rsync: ${val}s"
	fi
	rm -rf "$B/rsync.dest/r"

	# mirrorfs mounted over a BACKING that holds the tree (first upload by
	# reconciliation), then cp -a into an empty mount: each against a fresh
	# mirrord, so that no chunk is on the server beforehand.
	for n in up cp; do
		inst_remove "$n"
		if [[ $n == up ]]; then
			mkdir -p "$B/$n.backing"
			cp -a "$B/tree/." "$B/$n.backing/"
		fi
		md_start "$n"
		drop_caches
		c0=$(fs_cpu "$n" mirrord)
		stamp t0
		fs_mount "$n"
		if [[ $n == cp ]]; then
			if ! bounded cp -a "$B/tree/." "$B/$n.mnt/" 2>>"$B/workload.log"; then
				error "cp -a into mirrorfs (round $r) failed: $(tail -n 2 "$B/workload.log" | tr '\n' ' ')"
			fi
		fi
		if fs_sync "$n"; then
			stamp t1
			val=$(secs "$t0" "$t1")
			record "upload.$n" mirrorfs "$r" "$val"
			record "upload.$n.cpu.sender" mirrorfs "$r" "$(per_gib "$(fs_cpu "$n" mirrorfs)")"
			record "upload.$n.cpu.receiver" mirrorfs "$r" \
				"$(per_gib "$(awk -v a="$c0" -v b="$(fs_cpu "$n" mirrord)" 'BEGIN { print b - a }')")"
			record "upload.$n.hwm.mirrorfs" mirrorfs "$r" "$(fs_mem "$n" mirrorfs VmHWM)"
			record "upload.$n.hwm.mirrord" mirrorfs "$r" "$(fs_mem "$n" mirrord VmHWM)"
			log "round $r upload mirrorfs ($([[ $n == up ]] && echo "mount over the tree" || echo "cp -a into the mount")): ${val}s"
			fs_compare "$n" "the upload ($n, round $r)"
		fi
		fs_alive "$n" && fs_check_status "$n"
		fs_unmount "$n"
		md_stop "$n"
		inst_remove "$n"
	done
}

# memory: 100,000 small files, once.
memory() {
	local n=mem t0 t1 lag
	log "memory: making $MEM_FILES files"
	"$BIN/bench_io_tree" "$B/$n.backing" "$MEM_DIRS" "$MEM_FILES" 512 4096 4 >/dev/null ||
		die "cannot make the memory tree"
	md_start "$n"
	drop_caches
	stamp t0
	fs_mount "$n"
	fs_sync "$n" || return 0
	stamp t1
	MEM[first]=$(secs "$t0" "$t1")
	MEM[fs_hwm_first]=$(fs_mem "$n" mirrorfs VmHWM)
	MEM[md_hwm_first]=$(fs_mem "$n" mirrord VmHWM)
	fs_compare "$n" "the first upload of $MEM_FILES files"
	sleep 5
	MEM[fs_idle]=$(fs_mem "$n" mirrorfs VmRSS)
	MEM[md_idle]=$(fs_mem "$n" mirrord VmRSS)
	log "memory: first upload ${MEM[first]}s; peak mirrorfs ${MEM[fs_hwm_first]} MiB, mirrord ${MEM[md_hwm_first]} MiB"

	# A stream of changes: rewrite a tenth of the files through the mount.
	local k=$((MEM_FILES / 10))
	stamp t0
	if ! (cd "$B/$n.mnt" && find . -type f | awk -v k="$k" 'NR <= k' |
		timeout -k 10 "$WL_TIMEOUT" xargs -d '\n' -n 200 perl -e 'for (@ARGV) { open(my $f, ">>", $_) or die "$_: $!"; print $f "x"; close($f) or die "$_: $!" }'); then
		error "memory: appending to $k files through the mount failed"
	fi
	if fs_sync "$n"; then
		lag=$SYNC_SECS
		stamp t1
		MEM[change]=$(secs "$t0" "$t1")
		MEM[change_lag]=$lag
		MEM[fs_hwm_change]=$(fs_mem "$n" mirrorfs VmHWM)
		MEM[md_hwm_change]=$(fs_mem "$n" mirrord VmHWM)
		fs_compare "$n" "appending to $k files"
	fi

	# Remount with nothing to send: the whole tree is compared again.
	fs_unmount "$n"
	drop_caches
	stamp t0
	fs_mount "$n"
	if fs_sync "$n"; then
		stamp t1
		MEM[remount]=$(secs "$t0" "$t1")
		MEM[fs_hwm_remount]=$(fs_mem "$n" mirrorfs VmHWM)
		MEM[md_hwm_remount]=$(fs_mem "$n" mirrord VmHWM)
	fi
	fs_alive "$n" && fs_check_status "$n"
	fs_unmount "$n"
	md_stop "$n"
	inst_remove "$n"
}
declare -A MEM=()

# ---------------------------------------------------------------- report

# fmt VALUE UNIT: a figure for the table.
fmt() {
	[[ -n $1 ]] || { echo "-"; return; }
	case $2 in
	MB/s) awk -v v="$1" 'BEGIN { printf(v >= 100 ? "%.0f MB/s" : "%.1f MB/s", v) }' ;;
	s) awk -v v="$1" 'BEGIN { printf "%.2f s", v }' ;;
	esac
}
# num VALUE DECIMALS: VALUE rounded, or "-" if empty.
num() { [[ -n $1 ]] && printf "%.${2}f" "$1" || printf -- -; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print ""; else printf "%.2f\n", a / b }'; }

wl_label() {
	case $1 in
	seqwrite) echo "seq write ${SEQ_MB} MiB, fsync" ;;
	seqread) echo "seq read, cold cache" ;;
	randwrite) echo "rand 4K writes ${RAND_MB} MiB" ;;
	smallfiles) echo "$SF_FILES x 4K files (shell)" ;;
	smallfiles-c) echo "$SF_FILES x 4K files (syscalls)" ;;
	tarball) echo "tar x /usr/include + rm" ;;
	build) echo "git clone + make -j2 ($BUILD_FILES .c)" ;;
	esac
}
# wl_goal W: "unit higher-is-better ratio-goal" (ratio goal "-" if none).
wl_goal() {
	case $1 in
	seqwrite) echo "MB/s 1 0.7" ;;
	seqread) echo "MB/s 1 0.9" ;;
	randwrite) echo "MB/s 1 0.5" ;;
	smallfiles | tarball) echo "s 0 1.5" ;;
	smallfiles-c) echo "s 0 info" ;;
	build) echo "s 0 -" ;;
	esac
}

report() {
	local e w t u hb g m cells n v mfs bmt r met goal lag fails
	echo
	echo "mirrorfs benchmark  ($(date -u +%Y-%m-%dT%H:%MZ), $([[ $QUICK == 1 ]] && echo "QUICK sizes" || echo "full sizes"), medians of $ROUNDS rounds)"
	echo "machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo)"
	echo "kernel:  $(uname -sr); filesystem: $(findmnt -n -o FSTYPE,SOURCE,OPTIONS -T "$B" | awk '{ print $1 " on " $2 " (" $3 ")" }')"
	echo "tools:   $(fio --version), bindfs $(bindfs --version 2>&1 | awk '{ print $2; exit }'), rsync $(rsync --version | awk '{ print $3; exit }')"
	echo "binaries: $build (repository at ${REPO_AT_START:-?} when the run started)"
	echo "load:    $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (1/5/15 min; $(nproc) CPUs)"
	((CAN_DROP)) || echo "WARNING: not root, page caches were not dropped: reads are not cold"
	echo
	printf '%-34s | %-11s | %-18s | %-18s | %-18s | %-7s | %-8s | %-22s | %s\n' \
		workload native bindfs bindfs-mt mirrorfs "mfs/nat" "sync lag" "goal" "met?"
	printf '%s\n' "$(printf -- '-%.0s' {1..164})"
	for w in $MAIN_WORKLOADS; do
		[[ " $WORKLOADS " == *" $w "* ]] || continue
		read -r u hb g <<<"$(wl_goal "$w")"
		n=$(median "$w" native)
		cells=()
		for t in native bindfs bindfs-mt mirrorfs; do
			v=$(median "$w" "$t")
			fails=$(values "$w.failed" "$t")
			if [[ -z $v && -n $fails ]]; then
				cells+=("FAILED")
			elif [[ $t != native && -n $v && -n $n ]]; then
				cells+=("$(fmt "$v" "$u") ($(ratio "$v" "$n")x)")
			else
				cells+=("$(fmt "$v" "$u")")
			fi
			[[ -n $fails && -n $v ]] && cells[-1]+="!"
		done
		mfs=$(median "$w" mirrorfs)
		bmt=$(median "$w" bindfs-mt)
		r=$(ratio "$mfs" "$n")
		lag=$(median "$w.lag" mirrorfs)
		[[ -n $lag ]] && lag=$(fmt "$lag" s)
		case $g in
		info) goal="(information)" ;;
		-) goal="< bindfs-mt" ;;
		*) goal="$([[ $hb == 1 ]] && echo ">=" || echo "<=") ${g}x, $([[ $hb == 1 ]] && echo ">" || echo "<") bindfs-mt" ;;
		esac
		if [[ $g == info ]]; then
			met=""
		elif [[ -n $(values "$w.failed" mirrorfs) ]]; then
			met="NO (errors)"
		elif [[ -z $mfs || -z $n ]]; then
			met="n/a"
		else
			met=$(awk -v m="$mfs" -v n="$n" -v b="$bmt" -v hb="$hb" -v g="$g" 'BEGIN {
				r = m / n; ok = 1
				if (g != "-") ok = hb ? r >= g : r <= g
				if (b != "") ok = ok && (hb ? m > b : m < b)
				print ok ? "yes" : "NO" }')
		fi
		printf '%-34s | %-11s | %-18s | %-18s | %-18s | %-7s | %-8s | %-22s | %s\n' \
			"$(wl_label "$w")" "${cells[0]}" "${cells[1]}" "${cells[2]}" "${cells[3]}" \
			"${r:--}" "${lag:--}" "$goal" "$met"
	done
	echo "(bindfs columns: figure and ratio to native; 'sync lag': time from the end of the workload until"
	echo " 'mirrorfs sync' returned; '!': some rounds failed, see errors)"

	echo
	[[ " $WORKLOADS " == *" "@(latency|upload|memory)" "* ]] && echo "mirrorfs only:"
	if [[ " $WORKLOADS " == *" latency "* ]]; then
		local lat
		# Pooled over the rounds; a timeout counts as the slowest possible.
		lat=$(cat "$B"/latency-r*.txt 2>/dev/null | sed 's/^timeout$/1e12/' | sort -g | awk '
			{ v[++n] = $1; if ($1 >= 1e12) to++ }
			END { if (!n) exit
				med = n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
				i = int(n * 0.99); if (i < n * 0.99) i++
				p99 = v[i]
				printf "%s %s %d %d %s\n", (med >= 1e12 ? "timeout" : sprintf("%.1f", med)),
					(p99 >= 1e12 ? "timeout" : sprintf("%.1f", p99)), n, to,
					(v[n] >= 1e12 ? "timeout" : sprintf("%.1f", v[n])) }')
		if [[ -n $lat ]]; then
			read -r lmed lp99 ln lto lmax <<<"$lat"
			printf '  %-44s median %s ms (goal < 50: %s), p99 %s ms (goal < 250: %s), max %s ms; %d files of %d B, %d not complete within 10 s\n' \
				"close() -> complete on server" "$lmed" \
				"$(awk -v v="$lmed" 'BEGIN { print (v != "timeout" && v < 50) ? "yes" : "NO" }')" "$lp99" \
				"$(awk -v v="$lp99" 'BEGIN { print (v != "timeout" && v < 250) ? "yes" : "NO" }')" \
				"$lmax" "$ln" "$LAT_SIZE" "$lto"
		else
			printf '  %-44s no data (see errors)\n' "close() -> complete on server"
		fi
	fi
	if [[ " $WORKLOADS " == *" upload "* ]]; then
		local rs
		rs=$(median upload rsync)
		local mib=$((UP_BYTES >> 20))
		printf '  first upload of %d files, %d MiB (time, MB/s):\n' "$UP_FILES" "$mib"
		printf '    %-42s %s\n' "rsync -a to rsync daemon (no fsync)" \
			"$(fmt "$rs" s) $(awk -v s="$rs" -v b="$UP_BYTES" 'BEGIN { if (s) printf "(%.0f MB/s)", b / s / 1e6 }')"
		for n in up cp; do
			v=$(median "upload.$n" mirrorfs)
			printf '    %-42s %s' "$([[ $n == up ]] && echo "mirrorfs: mount over the tree until sync" || echo "mirrorfs: cp -a into the mount + sync")" \
				"$(fmt "$v" s) $(awk -v s="$v" -v b="$UP_BYTES" 'BEGIN { if (s) printf "(%.0f MB/s)", b / s / 1e6 }')"
			if [[ -n $v && -n $rs ]]; then
				printf '  %.2fx rsync time; goal <= rsync: %s' "$(ratio "$v" "$rs")" \
					"$(awk -v a="$v" -v b="$rs" 'BEGIN { print a <= b ? "yes" : "NO" }')"
			fi
			echo
		done
		printf '  CPU seconds per GiB uploaded (sender / receiver):\n'
		printf '    %-42s %s / %s\n' "rsync client / rsync daemon" \
			"$(num "$(median upload.cpu.sender rsync)" 2)" "$(num "$(median upload.cpu.receiver rsync)" 2)"
		for n in up cp; do
			printf '    %-42s %s / %s   (peak RSS %s / %s MiB)\n' \
				"mirrorfs / mirrord ($([[ $n == up ]] && echo "mount over the tree" || echo "cp -a into mount"))" \
				"$(num "$(median "upload.$n.cpu.sender" mirrorfs)" 2)" \
				"$(num "$(median "upload.$n.cpu.receiver" mirrorfs)" 2)" \
				"$(num "$(median "upload.$n.hwm.mirrorfs" mirrorfs)" 1)" \
				"$(num "$(median "upload.$n.hwm.mirrord" mirrorfs)" 1)"
		done
	fi
	if [[ " $WORKLOADS " == *" memory "* ]]; then
		yn() { awk -v v="$1" -v g="$2" 'BEGIN { print (v != "" && v < g) ? "yes" : "NO" }'; }
		printf '  memory with %d files in the tree (MiB; goals: mirrorfs < 64, mirrord < 128):\n' "$MEM_FILES"
		printf '    %-42s mirrorfs %s (%s), mirrord %s (%s); took %s s\n' "peak RSS, first upload by reconciliation" \
			"${MEM[fs_hwm_first]:--}" "$(yn "${MEM[fs_hwm_first]:-}" 64)" \
			"${MEM[md_hwm_first]:--}" "$(yn "${MEM[md_hwm_first]:-}" 128)" "${MEM[first]:--}"
		printf '    %-42s mirrorfs %s (%s), mirrord %s (%s)\n' "RSS when idle afterwards" \
			"${MEM[fs_idle]:--}" "$(yn "${MEM[fs_idle]:-}" 64)" \
			"${MEM[md_idle]:--}" "$(yn "${MEM[md_idle]:-}" 128)"
		printf '    %-42s mirrorfs %s (%s), mirrord %s (%s); took %s s, sync lag %s s\n' \
			"peak RSS, appending to $((MEM_FILES / 10)) files" \
			"${MEM[fs_hwm_change]:--}" "$(yn "${MEM[fs_hwm_change]:-}" 64)" \
			"${MEM[md_hwm_change]:--}" "$(yn "${MEM[md_hwm_change]:-}" 128)" \
			"${MEM[change]:--}" "${MEM[change_lag]:--}"
		printf '    %-42s mirrorfs %s (%s), mirrord %s (%s); took %s s\n' "peak RSS, remount with nothing to send" \
			"${MEM[fs_hwm_remount]:--}" "$(yn "${MEM[fs_hwm_remount]:-}" 64)" \
			"${MEM[md_hwm_remount]:--}" "$(yn "${MEM[md_hwm_remount]:-}" 128)" "${MEM[remount]:--}"
	fi

	echo
	echo "every round (key target: values):"
	awk -F'\t' '{ k = $1 " " $2; if (!(k in v)) o[++n] = k; v[k] = v[k] " " $4 }
		END { for (i = 1; i <= n; i++) printf "  %-40s%s\n", o[i] ":", v[o[i]] }' "$B/results.tsv" 2>/dev/null

	echo
	if ((${#ERRORS[@]})); then
		echo "ERRORS (${#ERRORS[@]}):"
		for e in "${ERRORS[@]}"; do printf '  * %s\n' "$e"; done
	else
		echo "errors: none"
	fi
	if ((${#NOTES[@]})); then
		echo "notes (${#NOTES[@]}):"
		for e in "${NOTES[@]}"; do printf '  * %s\n' "$e"; done
	fi
}

# ---------------------------------------------------------------- main

main() {
	local t w r tool
	[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a positive number"
	for t in $TARGETS; do
		[[ " $ALL_TARGETS " == *" $t "* ]] || die "unknown target '$t' (known: $ALL_TARGETS)"
	done
	for w in $WORKLOADS; do
		[[ " $MAIN_WORKLOADS latency upload memory " == *" $w "* ]] ||
			die "unknown workload '$w' (known: $MAIN_WORKLOADS latency upload memory)"
	done
	for tool in fio bindfs rsync git cc make tar perl curl fusermount3 findmnt timeout; do
		command -v "$tool" >/dev/null || die "$tool is not installed (make deps)"
	done
	if [[ " $TARGETS " == *" mirrorfs "* || " $WORKLOADS " == *" upload "* ||
		" $WORKLOADS " == *" memory "* ]]; then
		for tool in "$MIRRORFS" "$MIRRORD" "$TREECMP"; do
			[[ -x $tool ]] || die "$tool is missing (run make first)"
		done
	fi
	# latency measures mirrorfs alone.
	[[ " $TARGETS " == *" mirrorfs "* ]] || WORKLOADS=${WORKLOADS//latency/}
	[[ -w /proc/sys/vm/drop_caches ]] && CAN_DROP=1
	((CAN_DROP)) || log "warning: cannot drop page caches (not root): cold reads will be warm"
	CLK_TCK=$(getconf CLK_TCK)

	local parent=${BENCH_DIR:-/var/tmp}
	mkdir -p "$parent" || die "cannot create $parent"
	local need=$((QUICK == 1 ? 3 : 14)) avail
	avail=$(df -Pk "$parent" | awk 'NR == 2 { print int($4 / 1048576) }')
	((avail >= need)) || die "$parent has $avail GiB free; the benchmark needs about $need GiB"
	B=$(mktemp -d "$parent/mirrorfs-bench.XXXXXX") || die "cannot create a folder in $parent"
	chmod 0755 "$B"
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
	REPO_AT_START=$(git -C "$root" describe --always --dirty 2>/dev/null)
	log "scratch folder $B; targets: $TARGETS; workloads: $WORKLOADS; $ROUNDS rounds$([[ $QUICK == 1 ]] && echo ", quick sizes")"

	BIN=$B/bin
	mkdir -p "$BIN"
	# The binaries are copied: a rebuild during the run must not change
	# what is measured half-way.
	for tool in MIRRORFS MIRRORD TREECMP; do
		if [[ -x ${!tool} ]]; then
			cp "${!tool}" "$BIN/" || die "cannot copy ${!tool}"
			printf -v "$tool" '%s' "$BIN/$(basename "${!tool}")"
		fi
	done
	for tool in latency tree files; do
		"${CC:-cc}" -std=gnu11 -O2 -Wall -Wextra -Werror -o "$BIN/bench_io_$tool" \
			"$root/bench/bench_io_$tool.c" || die "cannot build bench/bench_io_$tool.c"
	done
	[[ -x $MIRRORD ]] && mirrord_root_opt
	UP_BYTES=0 UP_FILES=0
	make_fixtures
	start_targets
	[[ " $WORKLOADS " == *" upload "* ]] && rsync_start

	for ((r = 1; r <= ROUNDS; r++)); do
		log "---- round $r of $ROUNDS"
		for w in $MAIN_WORKLOADS; do
			[[ " $WORKLOADS " == *" $w "* ]] || continue
			warm_up "$w"
			for t in $TARGETS; do
				workload "$w" "$t" "$r"
				# seqread reads seqwrite's file; clean up after the read.
				if [[ $w != seqwrite || " $WORKLOADS " != *" seqread "* ]]; then
					workload_cleanup "$w" "$t"
				fi
			done
		done
		[[ " $WORKLOADS " == *" latency "* ]] && latency "$r"
		[[ " $WORKLOADS " == *" upload "* ]] && upload "$r"
	done
	if [[ " $TARGETS " == *" mirrorfs "* ]]; then
		[[ -z $MFS_DEAD ]] && fs_check_status mfs
		fs_unmount mfs
		md_stop mfs
	fi
	[[ " $WORKLOADS " == *" memory "* ]] && memory
	stop_pid rsyncd
	for t in bindfs bindfs-mt; do
		[[ -n ${PID_OF[$t]:-} ]] || continue
		fusermount3 -u "$(target_root "$t")" 2>/dev/null
		stop_pid "$t"
	done
	report
}

main "$@"
