#!/bin/bash
# bench/bench_wire.sh (make bench-wire): bytes on the wire, mirrorfs against
# rsync.
#
# Each scenario below is applied once through a mirrorfs mount and once to
# the source folder of an rsync client, on the same data, and for each the
# script reports:
#   bytes  TCP payload in both directions for the change alone, counted by a
#          relay on the connection (bench/wire_relay.c, built here) and not
#          by the programs themselves: mirrorfs talks to mirrord through one
#          relay, the rsync client to an rsync daemon through another;
#   time   until the server has the change: for mirrorfs from the start of
#          the change through the mount until `mirrorfs sync` returns, for
#          rsync the run of the rsync client (the change is made first);
#   CPU    user + system seconds of the client: the mirrorfs process (all
#          threads, /proc/PID/stat), the rsync client (bash's time).
# rsync runs as `rsync -a --delete --modify-window=-1 SRC/
# rsync://127.0.0.1:PORT/MODULE/`, to a daemon on 127.0.0.1 (--delete, or a
# rename would leave the old names on the server; --modify-window=-1, or a
# folder's mtime would stay wrong), once plain and once with -z, each into
# its own folder.
#
# Scenarios (full size; BENCH_QUICK=1 makes the files and trees about ten
# times smaller, the changes stay the same), run in this order on one tree
# that carries each scenario's result into the next:
#   overwrite4k  4 KiB overwritten in the middle of a 1 GiB file    < 64 KiB
#   insert100    100 bytes inserted at the start of a 100 MiB file  < 64 KiB
#                (the new content is copied over the file: cp, O_TRUNC)
#   copy100      that 100 MiB file copied to a new name (cp)        < 16 KiB
#   rename1000   a folder of 1,000 files of 10 KiB renamed (mv)     < 64 KiB
#   append1m     1 MiB appended to the 1 GiB file                   < 1.1 MiB
#   mtime        the 100 MiB file's mtime changed, content not      < 4 KiB
#   upload       first upload of a mixed ~500 MiB tree (cp -a):
#                source code (/usr/include, Python and Perl modules),
#                text (/usr/share/doc, man pages) and random bytes
#                standing for compressed media   bytes <= rsync -z, time <= rsync
# Opt-in scenarios (BENCH_SCENARIOS=extra runs them after the ones above):
#   insertmid    100 bytes inserted in the middle of the 100 MiB file < 64 KiB
#   cutmid       1 MiB cut out of the middle of the 100 MiB file      < 64 KiB
#   copytree     the folder of 1,000 files copied (cp -a)            < 128 KiB
#   append1000   100 bytes appended to each of the 1,000 files       < 1 MiB
#   truncate     the 1 GiB file truncated to half its size            < 4 KiB
#   rewrite      the 100 MiB file rewritten with the same bytes       < 64 KiB
# Every goal also asks for no more bytes than rsync: the table compares with
# the smaller of rsync and rsync -z (and the upload's time with the faster).
# Files are random bytes (/dev/urandom). The base state (the two files and
# the folder of small files) is uploaded on both sides before the first
# scenario, outside every measurement. After each scenario the mirror must
# equal its source (build/treecmp): a difference is an error.
#
# Environment:
#   BENCH_QUICK=1       about ten times smaller files and trees
#   BENCH_DIR=/var/tmp  where the scratch folder is made; removed at exit
#   BENCH_KEEP=1        keep the scratch folder (logs, results.tsv)
#   BENCH_SCENARIOS="overwrite4k insert100 ..."  a subset, in the order above
#   BUILD=build         where mirrorfs, mirrord and treecmp are
#
# Everything goes over loopback. Every process the script starts is recorded
# and stopped by PID at exit (EXIT, INT, TERM); every mount under the scratch
# folder is unmounted. Every command that could hang runs under timeout(1).
# Progress goes to stderr, the report to stdout.

# Single quotes around $ are meant (bash -c scripts take $1 at run time).
# shellcheck disable=SC2016
set -u -o pipefail
export LC_ALL=C
# Run from make: nothing built here must see that make's flags.
unset MAKEFLAGS MFLAGS MAKELEVEL

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD:-build}
[[ $build == /* ]] || build=$root/$build
MIRRORFS=$build/mirrorfs
MIRRORD=$build/mirrord
TREECMP=$build/treecmp

QUICK=${BENCH_QUICK:-0}
ALL_SCENARIOS="overwrite4k insert100 copy100 rename1000 append1m mtime upload"
# Changes the issue does not list, run only when named in BENCH_SCENARIOS
# (or with BENCH_SCENARIOS=extra, all of them after the listed ones).
EXTRA_SCENARIOS="insertmid cutmid copytree append1000 truncate rewrite"
SCENARIOS=${BENCH_SCENARIOS:-$ALL_SCENARIOS}
[[ $SCENARIOS == extra ]] && SCENARIOS="$ALL_SCENARIOS $EXTRA_SCENARIOS"

if [[ $QUICK == 1 ]]; then
	BIG_MIB=100 MED_MIB=10 REN_FILES=100 MIX_MIB=50
	SYNC_TIMEOUT=600 CMD_TIMEOUT=600
else
	BIG_MIB=1024 MED_MIB=100 REN_FILES=1000 MIX_MIB=500
	SYNC_TIMEOUT=1800 CMD_TIMEOUT=1800
fi
REN_SIZE=10240
APPEND_SIZE=1048576
MTIME=1700000000 # the mtime scenario's new mtime (2023-11-14)

B=""                 # the scratch folder
declare -A PID_OF=() # label -> pid of every process we started
ERRORS=()
NOTES=()
MFS_DEAD="" # set once mirrorfs or mirrord has died: later scenarios skip it

# ---------------------------------------------------------------- output

log() { printf '[wire %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}
# error MSG: a problem in what is measured (not in the benchmark): shown as
# it happens and again, with all others, at the end of the report.
error() {
	ERRORS+=("$*")
	printf '[wire %s] *** ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2
}
# note MSG: something odd but not wrong, listed at the end of the report.
note() {
	NOTES+=("$*")
	printf '[wire %s] note: %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

# ---------------------------------------------------------------- time

# stamp VAR: microseconds since the epoch into VAR, without forking.
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
	read -r st 2>/dev/null <"/proc/$1/stat" || return 1
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
	pid_alive "$pid" || {
		wait "$pid" 2>/dev/null
		return 0
	}
	kill -TERM "$pid" 2>/dev/null
	reap "$pid" 10 && return 0
	kill -9 "$pid" 2>/dev/null
	reap "$pid" 5 || log "pid $pid ($1) did not die"
}

# bounded SECONDS CMD...: CMD under timeout(1), as a background job that the
# shell waits for, so that a signal runs the cleanup at once (bash defers
# traps until a foreground command ends). Returns CMD's status (124: timeout).
bounded() {
	local limit=$1
	shift
	timeout -k 10 "$limit" "$@" &
	PID_OF[job]=$!
	local rc=0
	wait "${PID_OF[job]}" || rc=$?
	unset "PID_OF[job]"
	return $rc
}

is_mounted() { awk -v m="$1" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; }
mounts_under() { awk -v d="$1" 'index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo; }

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
	# A run with errors keeps its logs, even when the data goes.
	if ((${#ERRORS[@]})) && [[ ${BENCH_KEEP:-0} != 1 ]]; then
		local logs=${B}.logs
		mkdir -p "$logs" && cp "$B"/*.log "$B"/results.tsv "$logs/" 2>/dev/null
		log "errors: logs kept in $logs"
	fi
	if [[ -n $(mounts_under "$B") ]]; then
		log "mounts remain under $B; not removing it"
	elif [[ ${BENCH_KEEP:-0} == 1 ]]; then
		log "kept $B"
	else
		rm -rf --one-file-system "$B"
	fi
}

# ---------------------------------------------------------------- relays

# relay_start NAME TARGET_PORT: a counting relay in front of 127.0.0.1:
# TARGET_PORT; sets RELAY_PORT.
RELAY_PORT=""
relay_start() {
	local n=$1 i p=""
	rm -f "$B/$n.relay.port"
	"$BIN/wire_relay" "$B/$n.relay.port" "$2" "$B/$n.count" 2>>"$B/$n.relay.log" &
	PID_OF[relay.$n]=$!
	for ((i = 0; i < 100; i++)); do
		pid_alive "${PID_OF[relay.$n]}" || break
		[[ -s $B/$n.relay.port ]] && read -r p <"$B/$n.relay.port"
		if [[ $p =~ ^[0-9]+$ ]]; then
			RELAY_PORT=$p
			return 0
		fi
		sleep 0.05
	done
	die "the relay ($n) did not start: $(cat "$B/$n.relay.log")"
}

# wire_counts NAME: the relay's exact totals into WIRE_UP and WIRE_DOWN. The
# count file is removed, SIGUSR1 asks for it, and whatever appears next was
# written after every byte relayed so far had been counted.
WIRE_UP="" WIRE_DOWN=""
wire_counts() {
	local n=$1 f=$B/$1.count i
	WIRE_UP="" WIRE_DOWN=""
	pid_alive "${PID_OF[relay.$n]:-}" || die "the relay ($n) died: $(cat "$B/$n.relay.log")"
	rm -f "$f"
	kill -USR1 "${PID_OF[relay.$n]}"
	for ((i = 0; i < 200; i++)); do
		[[ -s $f ]] && break
		sleep 0.025
	done
	read -r WIRE_UP WIRE_DOWN <"$f" 2>/dev/null
	[[ $WIRE_UP =~ ^[0-9]+$ && $WIRE_DOWN =~ ^[0-9]+$ ]] ||
		die "the relay ($n) wrote no counts within 5 s: $(cat "$B/$n.relay.log")"
}

# ---------------------------------------------------------------- mirrorfs

MNT="" BACKING="" MDIR=""
md_start() {
	local i p=""
	local root_opt=()
	MDIR=$B/md.dir
	mkdir -p "$MDIR"
	# mirrord refuses to run as root unless told (the benchmark is root
	# for FUSE); a mirrord from before that option has no such check.
	if (($(id -u) == 0)) && "$MIRRORD" --help 2>&1 | grep -q -- --allow-root; then
		root_opt=(--allow-root)
	fi
	"$MIRRORD" "$MDIR" --listen 127.0.0.1:0 --port-file "$B/md.port" \
		--state-dir "$B/md.state" "${root_opt[@]}" >>"$B/mirrord.log" 2>&1 &
	PID_OF[mirrord]=$!
	for ((i = 0; i < 200; i++)); do
		pid_alive "${PID_OF[mirrord]}" || break
		[[ -s $B/md.port ]] && read -r p <"$B/md.port"
		if [[ $p =~ ^[0-9]+$ ]] && curl -sf --max-time 2 "http://127.0.0.1:$p/v1/ping" >/dev/null; then
			MD_PORT=$p
			return 0
		fi
		sleep 0.05
	done
	die "mirrord did not start: $(tail -n 20 "$B/mirrord.log")"
}

fs_mount() {
	local i
	BACKING=$B/fs.backing MNT=$B/fs.mnt
	mkdir -p "$BACKING" "$MNT"
	"$MIRRORFS" "$BACKING" "$MNT" --server "http://127.0.0.1:$MD_RELAY" \
		--state-dir "$B/fs.state" -f >>"$B/mirrorfs.log" 2>&1 &
	PID_OF[mirrorfs]=$!
	for ((i = 0; i < 200; i++)); do
		is_mounted "$MNT" && return 0
		pid_alive "${PID_OF[mirrorfs]}" || break
		sleep 0.05
	done
	die "mirrorfs did not mount $MNT: $(tail -n 20 "$B/mirrorfs.log")"
}

# fs_unmount: fusermount3 -u (retried while busy); mirrorfs must then exit
# with status 0 within 60 s.
fs_unmount() {
	local i out="" pid=${PID_OF[mirrorfs]:-}
	if is_mounted "$MNT"; then
		for ((i = 0; i < 100; i++)); do
			out=$(timeout 10 fusermount3 -u "$MNT" 2>&1) && break
			sleep 0.1
		done
		if is_mounted "$MNT"; then
			error "fusermount3 -u $MNT failed for 10 s: $out"
			fusermount3 -u -z "$MNT" 2>/dev/null
		fi
	fi
	[[ -n $pid ]] || return 0
	unset "PID_OF[mirrorfs]"
	if ! reap "$pid" 60; then
		error "mirrorfs did not exit within 60 s of the unmount (killed)"
		kill -9 "$pid" 2>/dev/null
		reap "$pid" 5
	elif [[ -n $REAP_RC && $REAP_RC != 0 ]]; then
		error "mirrorfs exited with status $REAP_RC after the unmount; log: $B/mirrorfs.log"
	fi
}

# md_stop: SIGTERM; an exit status other than 0/143 is an error.
md_stop() {
	local pid=${PID_OF[mirrord]:-}
	[[ -n $pid ]] || return 0
	unset "PID_OF[mirrord]"
	if ! pid_alive "$pid"; then
		reap "$pid" 1
		error "mirrord had exited by itself (status ${REAP_RC:-?}); log: $B/mirrord.log"
		return 0
	fi
	kill -TERM "$pid"
	if ! reap "$pid" 30; then
		error "mirrord did not exit within 30 s of SIGTERM (killed)"
		kill -9 "$pid" 2>/dev/null
		reap "$pid" 5
	elif [[ -n $REAP_RC && $REAP_RC != 0 && $REAP_RC != 143 ]]; then
		error "mirrord exited with status $REAP_RC after SIGTERM"
	fi
}

# fs_alive: mirrorfs and mirrord both run; if not, an error, and MFS_DEAD
# is set so that later scenarios skip mirrorfs.
fs_alive() {
	local who
	[[ -z $MFS_DEAD ]] || return 1
	for who in mirrorfs mirrord; do
		if ! pid_alive "${PID_OF[$who]:-}"; then
			error "$who died (pid ${PID_OF[$who]:-?}); last log lines: $(tail -n 5 "$B/$who.log" 2>/dev/null | tr '\n' '|')"
			MFS_DEAD=1
			return 1
		fi
	done
}

# fs_sync WHAT: mirrorfs sync, bounded. Returns 1 (error recorded) if it
# failed. Not to be called in $(...): the error would be lost.
fs_sync() {
	local t0 t1 rc=0
	stamp t0
	bounded $((SYNC_TIMEOUT + 30)) "$MIRRORFS" sync "$MNT" --timeout "$SYNC_TIMEOUT" \
		>"$B/sync.out" 2>&1 || rc=$?
	stamp t1
	((rc == 0)) && return 0
	error "mirrorfs sync ($1) failed after $(secs "$t0" "$t1") s (status $rc): $(tr '\n' ' ' <"$B/sync.out")"
	fs_alive
	return 1
}

# fs_cpu: user + system seconds of mirrorfs so far (all its threads).
fs_cpu() {
	local st
	read -r st <"/proc/${PID_OF[mirrorfs]}/stat" || return 1
	st=${st##*) }
	# shellcheck disable=SC2086 # split on purpose
	set -- $st
	awk -v u="${12}" -v s="${13}" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f\n", (u + s) / hz }'
}

# fs_stat: "bytes_sent chunks_sent chunks_skipped rejected" from mirrorfs
# status (what the client says it sent; a cross-check of the relay).
fs_stat() {
	timeout -k 5 30 "$MIRRORFS" status "$MNT" --json 2>/dev/null | perl -MJSON::PP -e '
		my $s = eval { decode_json(join("", <STDIN>)) } or do { print "- - - -\n"; exit };
		printf "%s %s %s %s\n", map { $s->{$_} // "-" } qw(bytes_sent chunks_sent chunks_skipped rejected);'
}

# compare WHAT SRC MIRROR: the mirror must equal its source; a difference
# is an error, shown in full (up to 20 lines). Returns 1 on a difference.
compare() {
	local out rc=0
	out=$(timeout -k 5 "$CMD_TIMEOUT" "$TREECMP" --max-diffs 20 "$2" "$3" 2>&1) || rc=$?
	((rc == 0)) && return 0
	error "MISMATCH after $1: $3 differs from $2 (treecmp status $rc):
$(printf '%s\n' "$out" | sed 's/^/        /')"
	return 1
}

# ---------------------------------------------------------------- rsync

RS_SRC="" RS_PORT=""
rsync_start() {
	local i j p m
	RS_SRC=$B/rs.src
	mkdir -p "$RS_SRC" "$B/rs.plain" "$B/rs.z"
	cat >"$B/rsyncd.conf" <<-EOF
		use chroot = no
		lock file = $B/rsyncd.lock
		uid = root
		gid = root
		max connections = 4
		[plain]
		path = $B/rs.plain
		read only = no
		[z]
		path = $B/rs.z
		read only = no
	EOF
	# rsync --daemon cannot report a port it picked, so try random ones.
	for ((i = 0; i < 20; i++)); do
		p=$((20000 + RANDOM % 40000))
		rsync --daemon --no-detach --address 127.0.0.1 --port "$p" --config "$B/rsyncd.conf" \
			--log-file "$B/rsyncd.log" >>"$B/rsyncd.out" 2>&1 &
		PID_OF[rsyncd]=$!
		for ((j = 0; j < 40; j++)); do
			pid_alive "${PID_OF[rsyncd]}" || break
			m=$(timeout 5 rsync "rsync://127.0.0.1:$p/" 2>/dev/null)
			if grep -q '^plain' <<<"$m"; then
				RS_PORT=$p
				return 0
			fi
			sleep 0.05
		done
		stop_pid rsyncd
	done
	die "cannot start an rsync daemon on 127.0.0.1 (see $B/rsyncd.out)"
}

# rsync_run MODE [RSYNC OPTIONS...]: rsync -a --delete of the source to
# module MODE (plain or z) through the relay. Sets RS_SECS and RS_CPU
# (client user+sys); returns rsync's status. --modify-window=-1 makes rsync
# compare mtimes to the nanosecond: by default it takes a folder whose mtime
# differs by less than a second for up to date, and the mirror would differ.
RS_SECS="" RS_CPU=""
rsync_run() {
	local mode=$1 t0 t1 rc=0 times
	shift
	RS_SECS="" RS_CPU=""
	stamp t0
	times=$( {
		TIMEFORMAT='%U %S'
		time timeout -k 10 "$CMD_TIMEOUT" rsync -a --delete --modify-window=-1 "$@" "$RS_SRC/" \
			"rsync://127.0.0.1:$RS_RELAY/$mode/" >>"$B/rsync.log" 2>&1
	} 2>&1) || rc=$?
	stamp t1
	if ((rc != 0)); then
		error "rsync ($mode) failed with status $rc: $(tail -n 3 "$B/rsync.log" | tr '\n' ' ')"
		return "$rc"
	fi
	RS_SECS=$(secs "$t0" "$t1")
	RS_CPU=$(awk -v u="${times% *}" -v s="${times#* }" 'BEGIN { printf "%.2f\n", u + s }')
}

# ---------------------------------------------------------------- data

# random_file PATH BYTES
random_file() { head -c "$2" /dev/urandom >"$1" || die "cannot write $1"; }

# pick_files BUDGET_BYTES LISTFILE PATH...: regular files below PATH...
# (sorted by name, only names ending in $PICK_RE), taken in order until
# BUDGET_BYTES, written to LISTFILE without their leading slash.
pick_files() {
	local budget=$1 list=$2
	shift 2
	find "$@" -type f -regextype posix-extended -regex "$PICK_RE" -printf '%s\t%p\n' 2>/dev/null |
		sort -t$'\t' -k2 | awk -F'\t' -v b="$budget" '
			{ if (t + $1 > b) next; t += $1; print substr($2, 2) }' >"$list"
}

# mib DIR: the apparent size of the files below DIR, MiB.
mib() { du -sb "$1" | awk '{ printf "%.0f\n", $1 / 1048576 }'; }

# make_mixed DIR BYTES: the upload's tree: ~40% source code, ~15% text,
# the rest random bytes in files of 256 KiB to 12 MiB ("media").
make_mixed() {
	local d=$1 total=$2 src_b text_b media_b n=0 sz have f i
	local sizes=(3145728 524288 8388608 1572864 12582912 262144 5242880 2097152)
	src_b=$((total * 40 / 100)) text_b=$((total * 15 / 100))
	mkdir -p "$d/source" "$d/text/man" "$d/media"
	PICK_RE='.*\.(h|hpp|c|cc|py|pm|pl|tcl|rb|js)$'
	pick_files "$src_b" "$B/source.list" /usr/include /usr/lib/python3* /usr/share/perl* \
		/usr/lib/x86_64-linux-gnu/perl* /usr/share/perl5
	tar -cf - -C / --no-recursion -T "$B/source.list" 2>/dev/null | tar -xf - -C "$d/source" ||
		die "cannot copy the source files"
	# Text: /usr/share/doc without what is compressed, then man pages
	# (uncompressed) until the budget is met.
	PICK_RE='.*/[^/]*$'
	pick_files "$text_b" "$B/text.list" /usr/share/doc
	grep -vE '\.(gz|bz2|xz|zst|png|jpg|gif|pdf)$' "$B/text.list" >"$B/text.list2"
	tar -cf - -C / --no-recursion -T "$B/text.list2" 2>/dev/null | tar -xf - -C "$d/text" ||
		die "cannot copy the text files"
	have=$(du -sb "$d/text" | cut -f1)
	while read -r f; do
		((have < text_b)) || break
		i=${f##*/}
		zcat "$f" >"$d/text/man/${i%.gz}" 2>/dev/null || continue
		have=$((have + $(stat -c %s "$d/text/man/${i%.gz}")))
	done < <(find /usr/share/man -name '*.gz' -type f 2>/dev/null | sort)
	have=$(du -sb "$d" | cut -f1)
	media_b=$((total - have))
	while ((media_b > 0)); do
		sz=${sizes[n % ${#sizes[@]}]}
		((sz > media_b)) && sz=$media_b
		random_file "$d/media/clip$n.bin" "$sz"
		media_b=$((media_b - sz)) n=$((n + 1))
	done
	MIX_DESC="$(find "$d" -type f | wc -l) files, $(mib "$d") MiB: source $(mib "$d/source") MiB, text $(mib "$d/text") MiB, media $(mib "$d/media") MiB ($n files)"
}

# make_data: everything the scenarios copy, made once under $G.
make_data() {
	local i
	G=$B/gen
	mkdir -p "$G/base/d"
	log "making data: ${BIG_MIB} MiB and ${MED_MIB} MiB files, $REN_FILES small files, a ${MIX_MIB} MiB tree"
	random_file "$G/base/big.bin" $((BIG_MIB * 1048576))
	random_file "$G/base/med.bin" $((MED_MIB * 1048576))
	for ((i = 0; i < REN_FILES; i++)); do
		random_file "$G/base/d/f$i" "$REN_SIZE"
	done
	random_file "$G/patch4k" 4096
	random_file "$G/patch100" 100
	random_file "$G/append" "$APPEND_SIZE"
	cat "$G/patch100" "$G/base/med.bin" >"$G/med.inserted" || die "cannot write $G/med.inserted"
	make_mixed "$G/mixed" $((MIX_MIB * 1048576))
	log "mixed tree: $MIX_DESC"
	export G
}

# ---------------------------------------------------------------- scenarios

# Each change is a bash script run with $1 = the folder to change (the mount
# or the rsync source) and $G = the prepared data; both sides get exactly
# the same change.
declare -A CHANGE=() LABEL=() GOAL=()
define_scenarios() {
	local mid=$((BIG_MIB * 1048576 / 2 / 4096))
	CHANGE[overwrite4k]="dd if=\"\$G/patch4k\" of=\"\$1/big.bin\" bs=4096 seek=$mid conv=notrunc status=none"
	CHANGE[insert100]='cp "$G/med.inserted" "$1/med.bin"'
	CHANGE[copy100]='cp "$1/med.bin" "$1/med-copy.bin"'
	CHANGE[rename1000]='mv "$1/d" "$1/d-renamed"'
	CHANGE[append1m]='cat "$G/append" >>"$1/big.bin"'
	CHANGE[mtime]="touch -m -d @$MTIME \"\$1/med.bin\""
	CHANGE[upload]='cp -a "$G/mixed" "$1/mixed"'
	# The opt-in ones. Each works on whatever the earlier scenarios left.
	local medmid=$((MED_MIB * 1048576 / 2))
	local spliced='t="$G/splice.tmp"; f="$1/med.bin"; n=$(stat -c %s "$f")'
	CHANGE[insertmid]="$spliced"'; { head -c '"$medmid"' "$f"; cat "$G/patch100"; tail -c +$(('"$medmid"' + 1)) "$f"; } >"$t" && cp "$t" "$f" && rm -f "$t"'
	CHANGE[cutmid]="$spliced"'; { head -c '"$medmid"' "$f"; tail -c +$(('"$medmid"' + 1048577)) "$f"; } >"$t" && cp "$t" "$f" && rm -f "$t"'
	CHANGE[copytree]='d="$1/d"; [ -d "$d" ] || d="$1/d-renamed"; cp -a "$d" "$1/d-copy"'
	CHANGE[append1000]='d="$1/d"; [ -d "$d" ] || d="$1/d-renamed"; for f in "$d"/*; do cat "$G/patch100" >>"$f" || exit 1; done'
	CHANGE[truncate]='truncate -s $(($(stat -c %s "$1/big.bin") / 2)) "$1/big.bin"'
	CHANGE[rewrite]='cp "$1/med.bin" "$G/rewrite.tmp" && cp "$G/rewrite.tmp" "$1/med.bin" && rm -f "$G/rewrite.tmp"'
	LABEL[insertmid]="100 B inserted mid ${MED_MIB} MiB file"
	LABEL[cutmid]="1 MiB cut from mid ${MED_MIB} MiB file"
	LABEL[copytree]="folder of $REN_FILES x 10 KiB copied"
	LABEL[append1000]="100 B appended to $REN_FILES files"
	LABEL[truncate]="${BIG_MIB} MiB file truncated to half"
	LABEL[rewrite]="${MED_MIB} MiB file rewritten, same bytes"
	GOAL[insertmid]=65536
	GOAL[cutmid]=65536
	GOAL[copytree]=131072 # a commit naming the original, about 70 B a file
	GOAL[append1000]=1048576
	GOAL[truncate]=4096
	GOAL[rewrite]=65536
	LABEL[overwrite4k]="4 KiB overwritten mid ${BIG_MIB} MiB file"
	LABEL[insert100]="100 B inserted at start of ${MED_MIB} MiB"
	LABEL[copy100]="${MED_MIB} MiB file copied to a new name"
	LABEL[rename1000]="folder of $REN_FILES x 10 KiB renamed"
	LABEL[append1m]="1 MiB appended to ${BIG_MIB} MiB file"
	LABEL[mtime]="mtime changed, content not"
	LABEL[upload]="first upload, mixed ${MIX_MIB} MiB tree"
	# Bytes; "z": at most rsync -z's bytes and rsync's time.
	GOAL[overwrite4k]=65536
	GOAL[insert100]=65536
	GOAL[copy100]=16384
	GOAL[rename1000]=65536
	GOAL[append1m]=1153434 # 1.1 MiB
	GOAL[mtime]=4096
	GOAL[upload]=z
}

# record SCENARIO KEY VALUE
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$B/results.tsv"; }
# result SCENARIO KEY: the recorded value, or "".
result() { awk -F'\t' -v s="$1" -v k="$2" '$1 == s && $2 == k { v = $3 } END { print v }' "$B/results.tsv" 2>/dev/null; }

# apply_change SCENARIO ROOT: the change, bounded; returns its status.
apply_change() {
	bounded "$CMD_TIMEOUT" bash -c "${CHANGE[$1]}" change "$2" 2>>"$B/change.log"
}

# run_mirrorfs SCENARIO
run_mirrorfs() {
	local s=$1 u0 d0 c0 c1 t0 t1 ta st0 st1 rc=0
	fs_alive || {
		record "$s" mfs.failed "mirrorfs is not running"
		return
	}
	sync
	# Nothing may be pending from before: it would count as the change's.
	fs_sync "before $s" || {
		record "$s" mfs.failed "sync before the change failed"
		return
	}
	st0=$(fs_stat)
	c0=$(fs_cpu)
	wire_counts md
	u0=$WIRE_UP d0=$WIRE_DOWN
	stamp t0
	apply_change "$s" "$MNT" || rc=$?
	stamp ta
	if ((rc != 0)); then
		error "$s: the change through the mount failed (status $rc): $(tail -n 3 "$B/change.log" | tr '\n' ' ')"
		record "$s" mfs.failed "the change failed"
		fs_alive
		return
	fi
	if ! fs_sync "$s"; then
		record "$s" mfs.failed "sync failed"
		return
	fi
	stamp t1
	wire_counts md
	c1=$(fs_cpu)
	st1=$(fs_stat)
	record "$s" mfs.up $((WIRE_UP - u0))
	record "$s" mfs.down $((WIRE_DOWN - d0))
	record "$s" mfs.bytes $((WIRE_UP - u0 + WIRE_DOWN - d0))
	record "$s" mfs.secs "$(secs "$t0" "$t1")"
	record "$s" mfs.apply "$(secs "$t0" "$ta")"
	record "$s" mfs.lag "$(secs "$ta" "$t1")"
	record "$s" mfs.cpu "$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f\n", b - a }')"
	record "$s" mfs.selfreport "$(awk -v a="$st0" -v b="$st1" 'BEGIN {
		split(a, x, " "); split(b, y, " ")
		if (x[1] == "-" || y[1] == "-") { print "status unreadable"; exit }
		printf "bytes_sent %d, chunks_sent %d, chunks_skipped %d", y[1] - x[1], y[2] - x[2], y[3] - x[3]
		if (y[4] > x[4]) printf ", REJECTED %d", y[4] - x[4] }')"
	[[ ${st1##* } != - && ${st0##* } != - ]] && ((${st1##* } > ${st0##* })) &&
		error "$s: mirrorfs reports $((${st1##* } - ${st0##* })) operations refused by the server"
	compare "$s (mirrorfs)" "$BACKING" "$MDIR" || record "$s" mfs.mismatch 1
	log "$s mirrorfs: $(human $((WIRE_UP - u0 + WIRE_DOWN - d0))), $(secs "$t0" "$t1") s"
}

# run_rsync SCENARIO: the change to the rsync source, then rsync and
# rsync -z, each measured alone.
run_rsync() {
	local s=$1 mode u0 d0 rc=0
	apply_change "$s" "$RS_SRC" || rc=$?
	if ((rc != 0)); then
		error "$s: the change to the rsync source failed (status $rc)"
		record "$s" rs.failed 1
		return
	fi
	sync
	for mode in plain z; do
		wire_counts rs
		u0=$WIRE_UP d0=$WIRE_DOWN
		if [[ $mode == z ]]; then rsync_run z -z; else rsync_run plain; fi || {
			record "$s" "rs.$mode.failed" 1
			continue
		}
		wire_counts rs
		record "$s" "rs.$mode.up" $((WIRE_UP - u0))
		record "$s" "rs.$mode.down" $((WIRE_DOWN - d0))
		record "$s" "rs.$mode.bytes" $((WIRE_UP - u0 + WIRE_DOWN - d0))
		record "$s" "rs.$mode.secs" "$RS_SECS"
		record "$s" "rs.$mode.cpu" "$RS_CPU"
		compare "$s (rsync $mode)" "$RS_SRC" "$B/rs.$mode" || record "$s" "rs.$mode.mismatch" 1
		log "$s rsync${mode/plain/}: $(human $((WIRE_UP - u0 + WIRE_DOWN - d0))), $RS_SECS s"
	done
}

# base: the state before the first scenario, on both sides; measured for
# information only.
base() {
	local u0 d0 t0 t1 mode
	log "base state: uploading $(mib "$G/base") MiB through mirrorfs and rsync"
	wire_counts md
	u0=$WIRE_UP d0=$WIRE_DOWN
	stamp t0
	bounded "$CMD_TIMEOUT" cp -a "$G/base/." "$MNT/" || error "copying the base state into the mount failed"
	if fs_sync "the base state"; then
		stamp t1
		wire_counts md
		record base mfs.bytes $((WIRE_UP - u0 + WIRE_DOWN - d0))
		record base mfs.secs "$(secs "$t0" "$t1")"
		compare "the base state (mirrorfs)" "$BACKING" "$MDIR"
	fi
	cp -a "$G/base/." "$RS_SRC/" || die "cannot copy the base state to $RS_SRC"
	for mode in plain z; do
		wire_counts rs
		u0=$WIRE_UP d0=$WIRE_DOWN
		if [[ $mode == z ]]; then rsync_run z -z --debug=NSTR; else rsync_run plain; fi || die "rsync of the base state failed"
		wire_counts rs
		record base "rs.$mode.bytes" $((WIRE_UP - u0 + WIRE_DOWN - d0))
		record base "rs.$mode.secs" "$RS_SECS"
		compare "the base state (rsync $mode)" "$RS_SRC" "$B/rs.$mode"
	done
	RS_COMPRESS=$(sed -n 's/^Client negotiated compress: //p' "$B/rsync.log" | tail -n 1)

	# Idle traffic: anything mirrorfs sends on its own would be counted in
	# the scenarios; measure it over 3 s.
	wire_counts md
	u0=$WIRE_UP d0=$WIRE_DOWN
	sleep 3
	wire_counts md
	IDLE_BYTES=$((WIRE_UP - u0 + WIRE_DOWN - d0))
	((IDLE_BYTES == 0)) || note "mirrorfs exchanged $IDLE_BYTES bytes with mirrord in 3 s of idleness; the scenarios count such traffic too"
}

# ---------------------------------------------------------------- report

# human BYTES: "41.2 KiB (42188)".
human() {
	awk -v b="$1" 'BEGIN {
		if (b < 1024) h = sprintf("%d B", b)
		else if (b < 1048576) h = sprintf("%.1f KiB", b / 1024)
		else if (b < 1073741824) h = sprintf("%.1f MiB", b / 1048576)
		else h = sprintf("%.2f GiB", b / 1073741824)
		printf(b < 1024 ? "%s" : "%s (%d)", h, b) }'
}
hshort() { awk -v b="$1" 'BEGIN { if (b < 1024) printf "%d B", b; else if (b < 1048576) printf "%.1f KiB", b / 1024; else printf "%.2f MiB", b / 1048576 }'; }
min2() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "") print b; else if (b == "") print a; else print (a + 0 < b + 0 ? a : b) }'; }

# cell SCENARIO PREFIX: the bytes of one side, or why there are none.
cell() {
	local v
	v=$(result "$1" "$2.bytes")
	if [[ -n $v ]]; then
		printf '%s%s' "$(human "$v")" "$([[ -n $(result "$1" "$2.mismatch") ]] && echo " MISMATCH")"
	elif [[ -n $(result "$1" "$2.failed") ]]; then
		printf 'FAILED'
	else
		printf -- '-'
	fi
}

# verdict SCENARIO: "yes", or "NO (reasons)".
verdict() {
	local s=$1 m g rs rz best bt mt why=()
	m=$(result "$s" mfs.bytes)
	g=${GOAL[$s]}
	rs=$(result "$s" rs.plain.bytes) rz=$(result "$s" rs.z.bytes)
	[[ -n $m ]] || {
		echo "NO (no figure)"
		return
	}
	[[ -n $(result "$s" mfs.mismatch) ]] && why+=("mirror differs")
	if [[ $g == z ]]; then
		if [[ -z $rz ]]; then
			why+=("no rsync -z figure")
		elif ((m > rz)); then
			why+=("> rsync -z bytes")
		fi
		bt=$(min2 "$(result "$s" rs.plain.secs)" "$(result "$s" rs.z.secs)")
		mt=$(result "$s" mfs.secs)
		if [[ -n $bt ]] && awk -v a="$mt" -v b="$bt" 'BEGIN { exit !(a > b) }'; then
			why+=("slower than rsync")
		fi
	else
		((m < g)) || why+=(">= $(hshort "$g")")
		best=$(min2 "$rs" "$rz")
		if [[ -z $best ]]; then
			why+=("no rsync figure")
		elif ((m > best)); then
			why+=("> rsync")
		fi
	fi
	if ((${#why[@]} == 0)); then
		echo yes
	else
		local out=${why[0]} w
		for w in "${why[@]:1}"; do out+=", $w"; done
		echo "NO ($out)"
	fi
}

goal_text() {
	case ${GOAL[$1]} in
	z) echo "<= rsync -z, time <= rsync" ;;
	*) echo "< $(hshort "${GOAL[$1]}"), <= rsync" ;;
	esac
}

# pair SCENARIO KEY UNIT: "plain / z" figures of rsync.
pair() {
	local a b
	a=$(result "$1" "rs.plain.$2") b=$(result "$1" "rs.z.$2")
	printf '%s / %s %s' "${a:--}" "${b:--}" "$3"
}

report() {
	local s e fmt line
	fmt='%-40s | %-30s | %-30s | %-30s | %-27s | %-40s | %-10s | %-17s | %-9s | %s\n'
	echo
	echo "mirrorfs wire benchmark  ($(date -u +%Y-%m-%dT%H:%MZ), $([[ $QUICK == 1 ]] && echo "QUICK sizes: the goals are for the full sizes" || echo "full sizes"))"
	echo "machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo); kernel $(uname -r)"
	echo "tools:   mirrorfs $MFS_VERSION, rsync $(rsync --version | awk '{ print $3; exit }') (-z: ${RS_COMPRESS:-?})"
	echo "data:    ${BIG_MIB} MiB and ${MED_MIB} MiB files and $REN_FILES x 10 KiB files of random bytes; mixed tree: ${MIX_DESC:-?}"
	echo "bytes:   TCP payload, both directions, for the change alone, counted by a relay on the connection (exact bytes in brackets)"
	echo "time:    mirrorfs: from the start of the change through the mount until 'mirrorfs sync' returns; rsync: its run (plain / -z)"
	echo "CPU:     user+sys seconds of the client: the mirrorfs process; the rsync client (plain / -z)"
	echo "goal:    '<= rsync' compares with the smaller of rsync and rsync -z; for the upload, time with the faster of the two"
	echo
	# shellcheck disable=SC2059 # the format is ours
	printf "$fmt" scenario "mirrorfs bytes" "rsync bytes" "rsync -z bytes" goal "met?" "mfs time" "rsync time" "mfs CPU" "rsync CPU"
	printf '%s\n' "$(printf -- '-%.0s' {1..270})"
	for s in $SCENARIOS; do
		# shellcheck disable=SC2059
		printf "$fmt" "${LABEL[$s]}" "$(cell "$s" mfs)" "$(cell "$s" rs.plain)" "$(cell "$s" rs.z)" \
			"$(goal_text "$s")" "$(verdict "$s")" \
			"$(v=$(result "$s" mfs.secs); [[ -n $v ]] && echo "$v s" || echo -)" "$(pair "$s" secs s)" \
			"$(v=$(result "$s" mfs.cpu); [[ -n $v ]] && echo "$v s" || echo -)" "$(pair "$s" cpu s)"
	done

	echo
	echo "details (bytes up = client to server, down = server to client):"
	for s in $SCENARIOS; do
		printf '  %s:\n' "${LABEL[$s]}"
		line=$(result "$s" mfs.bytes)
		if [[ -n $line ]]; then
			printf '    mirrorfs  up %s, down %s; change %s s + sync %s s; client says: %s\n' \
				"$(human "$(result "$s" mfs.up)")" "$(human "$(result "$s" mfs.down)")" \
				"$(result "$s" mfs.apply)" "$(result "$s" mfs.lag)" "$(result "$s" mfs.selfreport)"
		else
			printf '    mirrorfs  %s\n' "$(result "$s" mfs.failed)"
		fi
		for e in plain z; do
			line=$(result "$s" "rs.$e.bytes")
			[[ -n $line ]] || continue
			printf '    rsync%-4s up %s, down %s\n' "$([[ $e == z ]] && echo " -z")" \
				"$(human "$(result "$s" "rs.$e.up")")" "$(human "$(result "$s" "rs.$e.down")")"
		done
	done
	printf '  base state (not part of any scenario): mirrorfs %s in %s s; rsync %s in %s s; rsync -z %s in %s s\n' \
		"$(cell base mfs)" "$(result base mfs.secs)" "$(cell base rs.plain)" "$(result base rs.plain.secs)" \
		"$(cell base rs.z)" "$(result base rs.z.secs)"
	printf '  mirrorfs traffic when idle: %s bytes in 3 s\n' "${IDLE_BYTES:-?}"

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
	local s tool parent need avail
	for s in $SCENARIOS; do
		[[ " $ALL_SCENARIOS $EXTRA_SCENARIOS " == *" $s "* ]] ||
			die "unknown scenario '$s' (known: $ALL_SCENARIOS $EXTRA_SCENARIOS, or extra)"
	done
	for tool in rsync cc curl perl tar zcat fusermount3 timeout; do
		command -v "$tool" >/dev/null || die "$tool is not installed (make deps)"
	done
	for tool in "$MIRRORFS" "$MIRRORD" "$TREECMP"; do
		[[ -x $tool ]] || die "$tool is missing (run make first)"
	done
	CLK_TCK=$(getconf CLK_TCK)
	MFS_VERSION="$(git -C "$root" describe --always --dirty 2>/dev/null) (build of $(date -u -r "$MIRRORFS" +%Y-%m-%dT%H:%MZ))"

	parent=${BENCH_DIR:-/var/tmp}
	mkdir -p "$parent" || die "cannot create $parent"
	# gen, BACKING, mirrord's folder and store, the rsync source and two
	# copies: about ten times the data, and some room.
	need=$((QUICK == 1 ? 3 : 16))
	avail=$(df -Pk "$parent" | awk 'NR == 2 { print int($4 / 1048576) }')
	((avail >= need)) || die "$parent has $avail GiB free; the benchmark needs about $need GiB"
	B=$(mktemp -d "$parent/mirrorfs-wire.XXXXXX") || die "cannot create a folder in $parent"
	chmod 0755 "$B"
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	log "scratch folder $B; scenarios: $SCENARIOS$([[ $QUICK == 1 ]] && echo "; quick sizes")"

	BIN=$B/bin
	mkdir -p "$BIN"
	# The binaries are copied: a rebuild during the run must not change
	# what is measured half-way.
	for tool in MIRRORFS MIRRORD TREECMP; do
		cp "${!tool}" "$BIN/" || die "cannot copy ${!tool}"
		printf -v "$tool" '%s' "$BIN/$(basename "${!tool}")"
	done
	"${CC:-cc}" -std=gnu11 -O2 -Wall -Wextra -Werror -o "$BIN/wire_relay" "$root/bench/wire_relay.c" ||
		die "cannot build bench/wire_relay.c"

	make_data
	define_scenarios
	md_start
	relay_start md "$MD_PORT"
	MD_RELAY=$RELAY_PORT
	fs_mount
	rsync_start
	relay_start rs "$RS_PORT"
	RS_RELAY=$RELAY_PORT
	log "mirrord on $MD_PORT (relay $MD_RELAY), rsync daemon on $RS_PORT (relay $RS_RELAY)"

	base
	for s in $SCENARIOS; do
		log "---- $s: ${LABEL[$s]}"
		run_mirrorfs "$s"
		run_rsync "$s"
	done

	if fs_alive; then
		s=$(timeout -k 5 30 "$MIRRORFS" status "$MNT" --json 2>&1)
		grep -q '"last_error":[[:space:]]*"[^"]' <<<"$s" &&
			note "mirrorfs status has a last error: $(grep -o '"last_error":"[^"]*"' <<<"$s")"
	fi
	fs_unmount
	md_stop
	stop_pid rsyncd
	for s in mirrorfs mirrord; do
		tool=$(grep -ciE 'error|warn|assert|sanitizer' "$B/$s.log" 2>/dev/null)
		((${tool:-0} == 0)) ||
			note "$s.log: $tool lines mention an error or a warning, e.g. $(grep -iE 'error|warn|assert|sanitizer' "$B/$s.log" | head -n 3 | tr '\n' '|')"
	done
	report
	((${#ERRORS[@]} == 0))
}

main "$@"
