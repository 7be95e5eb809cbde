#!/bin/bash
# t_cli_errors: bad command lines get a clear error and lose nothing.
#
# Each bad invocation must exit non-zero (not by a signal, not by hanging),
# print a message on stderr that names what is wrong (the offending path,
# URL or option), mount nothing and leave no daemon behind. mirrorfs runs
# without -f, as a user would, so an error found only after daemonizing
# (exit 0, message lost in syslog) shows up as a failure. Afterwards BACKING,
# the non-empty mount point and mirrord's DIR must be unchanged, and a good
# command line must still mount (so the refusals above were specific).
# In poll mode (MIRROR_MODE=poll) the client's checks are mirrorfs-poll's.
#
# timeout: 300

. "$(dirname "$0")/lib.sh"

# rejects [-t SECONDS] DESCRIPTION WANT CMD...: CMD must fail cleanly; WANT
# (case-insensitive, may be "") must appear in its stderr.
rejects() {
	local limit=20 what want rc=0 err first m p out
	if [[ $1 == -t ]]; then
		limit=$2
		shift 2
	fi
	what=$1 want=$2
	shift 2
	timeout -k 5 "$limit" "$@" >"$T/stdout" 2>"$T/stderr" </dev/null || rc=$?
	err=$(<"$T/stderr")
	first=${err%%$'\n'*}
	if ((rc == 0)); then
		soft_fail "$what: exit status 0 (stderr: '$first')"
	elif ((rc == 124 || rc == 137)); then
		soft_fail "$what: still running after ${limit}s instead of refusing (stderr: '$first')"
	elif ((rc > 128)); then
		soft_fail "$what: killed by signal $((rc - 128)) (stderr: '$first')"
	elif [[ -z ${err//[[:space:]]/} ]]; then
		soft_fail "$what: exit status $rc but nothing on stderr"
	elif [[ -n $want ]] && ! grep -qiF -- "$want" <<<"$err"; then
		soft_fail "$what: the message does not name '$want': '$first'"
	else
		step "ok: $what: status $rc: $first"
	fi
	# Nothing mounted, no daemon left: clear them so later checks start clean.
	for m in $(mounts_under "$T"); do
		soft_fail "$what: left a mount at $m"
		fusermount3 -u -z "$m" 2>/dev/null || true
	done
	for p in $(t_tagged_pids); do
		[[ $p == "${MIRRORD_PID:-}" || " ${T_PIDS[*]} " == *" $p "* ]] && continue
		pid_alive "$p" || continue
		soft_fail "$what: left process $p running: $(tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null)"
		kill -9 "$p" 2>/dev/null || true
	done
	# Nothing created or changed: restore, so the next check starts clean.
	if [[ -n $(ls -A "$T/mnt") ]]; then
		soft_fail "$what: left entries in the empty MOUNTPOINT: $(ls -A "$T/mnt" | tr '\n' ' ')"
		rm -rf --one-file-system "${T:?}/mnt" && mkdir -m 0755 "$T/mnt"
	fi
	if ! out=$("$TREECMP" "$B" "$T/backing.snap" 2>&1); then
		soft_fail "$what: changed BACKING: $(grep -v '^treecmp:' <<<"$out" | tr '\n' ';')"
		rm -rf --one-file-system "$B" && cp -a "$T/backing.snap" "$B"
	fi
}

soft_fail() {
	T_SOFT_FAILS=$((T_SOFT_FAILS + 1))
	echo "FAIL: $T_NAME: $*" >&2
}

t_setup
t_require_bins "$MIRRORFS_BIN" "$MIRRORD"
start_mirrord

# Fixtures, made before the snapshot.
B=$T/backing
echo "precious" >"$B/keep.txt"
mkdir -p "$B/sub" "$B/inside"
echo "also precious" >"$B/sub/keep2.txt"
echo "not a folder" >"$T/afile"
mkdir "$T/full"
echo "was here before" >"$T/full/existing"
mkdir -p "$T/outer/inner"
ln -s "$B" "$T/blink"
echo "mirror content" >"$T/dir/server-side.txt"
cp -a "$B" "$T/backing.snap"
cp -a "$T/full" "$T/full.snap"
cp -a "$T/dir" "$T/dir.snap"
CS=(--state-dir "$T/cstate")

if [[ $MIRROR_MODE == fuse ]]; then
step "mirrorfs: bad command lines"
rejects "no arguments" "" "$MIRRORFS"
rejects "unknown option" "--bogus" "$MIRRORFS" "$B" "$T/mnt" --server "$URL" "${CS[@]}" --bogus
rejects "missing BACKING" "$T/nonexistent" \
	"$MIRRORFS" "$T/nonexistent" "$T/mnt" --server "$URL" "${CS[@]}"
rejects "BACKING is a file" "$T/afile" \
	"$MIRRORFS" "$T/afile" "$T/mnt" --server "$URL" "${CS[@]}"
rejects "missing MOUNTPOINT" "$T/nomnt" \
	"$MIRRORFS" "$B" "$T/nomnt" --server "$URL" "${CS[@]}"
rejects "MOUNTPOINT is a file" "$T/afile" \
	"$MIRRORFS" "$B" "$T/afile" --server "$URL" "${CS[@]}"
rejects "non-empty MOUNTPOINT" "$T/full" \
	"$MIRRORFS" "$B" "$T/full" --server "$URL" "${CS[@]}"
rejects "MOUNTPOINT inside BACKING" "$B/inside" \
	"$MIRRORFS" "$B" "$B/inside" --server "$URL" "${CS[@]}"
rejects "MOUNTPOINT inside BACKING, through a symlink" "inside" \
	"$MIRRORFS" "$B" "$T/blink/inside" --server "$URL" "${CS[@]}"
rejects "BACKING inside MOUNTPOINT" "$T/outer" \
	"$MIRRORFS" "$T/outer/inner" "$T/outer" --server "$URL" "${CS[@]}"
rejects "BACKING is MOUNTPOINT" "$T/mnt" \
	"$MIRRORFS" "$T/mnt" "$T/mnt" --server "$URL" "${CS[@]}"
rejects "malformed URL" "notaurl" \
	"$MIRRORFS" "$B" "$T/mnt" --server notaurl "${CS[@]}"
rejects "URL with another scheme" "ftp://" \
	"$MIRRORFS" "$B" "$T/mnt" --server ftp://127.0.0.1/ "${CS[@]}"
rejects "URL without a host" "http://" \
	"$MIRRORFS" "$B" "$T/mnt" --server http:// "${CS[@]}"
rejects "URL with a bad port" "99999" \
	"$MIRRORFS" "$B" "$T/mnt" --server http://127.0.0.1:99999 "${CS[@]}"
rejects "missing --server" "server" \
	"$MIRRORFS" "$B" "$T/mnt" "${CS[@]}"
rejects "--server without a value" "server" \
	"$MIRRORFS" "$B" "$T/mnt" "${CS[@]}" --server
rejects "bad --log-level" "loud" \
	"$MIRRORFS" "$B" "$T/mnt" --server "$URL" "${CS[@]}" --log-level loud
rejects "--state-dir inside BACKING" "$B/state" \
	"$MIRRORFS" "$B" "$T/mnt" --server "$URL" --state-dir "$B/state"
rejects "--state-dir inside MOUNTPOINT" "$T/mnt/state" \
	"$MIRRORFS" "$B" "$T/mnt" --server "$URL" --state-dir "$T/mnt/state"
CLIENT=("$MIRRORFS" "$B" "$T/mnt")
else
step "mirrorfs-poll: bad command lines"
P=$MIRRORFS_POLL
rejects "no arguments" "" "$P"
rejects "unknown option" "--bogus" "$P" "$B" --server "$URL" "${CS[@]}" --bogus
rejects "missing DIR" "$T/nonexistent" "$P" "$T/nonexistent" --server "$URL" "${CS[@]}"
rejects "DIR is a file" "$T/afile" "$P" "$T/afile" --server "$URL" "${CS[@]}"
rejects "two folders" "$T/mnt" "$P" "$B" "$T/mnt" --server "$URL" "${CS[@]}"
rejects "malformed URL" "notaurl" "$P" "$B" --server notaurl "${CS[@]}"
rejects "URL with another scheme" "ftp://" "$P" "$B" --server ftp://127.0.0.1/ "${CS[@]}"
rejects "URL without a host" "http://" "$P" "$B" --server http:// "${CS[@]}"
rejects "URL with a bad port" "99999" "$P" "$B" --server http://127.0.0.1:99999 "${CS[@]}"
rejects "missing --server" "server" "$P" "$B" "${CS[@]}"
rejects "--server without a value" "server" "$P" "$B" "${CS[@]}" --server
rejects "bad --log-level" "loud" "$P" "$B" --server "$URL" "${CS[@]}" --log-level loud
rejects "non-numeric --interval" "soon" "$P" "$B" --server "$URL" "${CS[@]}" --interval soon
rejects "--interval below the minimum" "interval" \
	"$P" "$B" --server "$URL" "${CS[@]}" --interval 5
rejects "--state-dir inside DIR" "$B/state" "$P" "$B" --server "$URL" --state-dir "$B/state"
rejects "--state-dir inside DIR, DIR named through a symlink" "state" \
	"$P" "$T/blink" --server "$URL" --state-dir "$B/state"
# The control socket lives in the state folder: its path must fit a
# socket address (about 100 bytes).
long=$T/$(printf 's%.0s' {1..110})
rejects "--state-dir too long for the control socket" "too long" \
	"$P" "$B" --server "$URL" --state-dir "$long"
rm -rf "$long"
CLIENT=("$P" "$B")
fi

step "mirrorfs: a server that answers but is not mirrord"
# A tiny HTTP server (perl is in every Debian base) answering 404 to all.
t_bg perl -MIO::Socket::INET -e '
	my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0,
		Listen => 5, ReuseAddr => 1) or die "listen: $!";
	open(my $f, ">", "$ARGV[0].tmp") or die; print $f $s->sockport, "\n"; close $f;
	rename("$ARGV[0].tmp", $ARGV[0]) or die;
	while (my $c = $s->accept) {
		while (my $l = <$c>) { last if $l =~ /^\r?\n$/ }
		print $c "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot here\n";
		close $c;
	}' "$T/other-port"
other_pid=$T_BG_PID
wait_for -t 10 -m "the non-mirrord HTTP server" test -s "$T/other-port"
other_url=http://127.0.0.1:$(<"$T/other-port")
rejects "server is not mirrord" "$other_url" \
	"${CLIENT[@]}" --server "$other_url" "${CS[@]}"
kill "$other_pid"
t_reap "$other_pid" 5 || true

step "status/sync on something that is not a mirrorfs mount (no poller for it)"
rejects "status of a plain folder" "$T/outer" "${MIRRORFS_CLI[@]}" status "$T/outer"
rejects "status of a missing path" "$T/nonexistent" \
	"${MIRRORFS_CLI[@]}" status "$T/nonexistent"
rejects "status without a mount point" "" "${MIRRORFS_CLI[@]}" status
rejects "sync of a plain folder" "$T/outer" "${MIRRORFS_CLI[@]}" sync "$T/outer" --timeout 5
rejects "sync with a bad timeout" "soon" "${MIRRORFS_CLI[@]}" sync "$T/outer" --timeout soon

step "mirrord: bad command lines"
MS=(--port-file "$T/port2" --state-dir "$T/dstate2")
[[ $(id -u) == 0 ]] && MS+=(--allow-root)
rejects -t 10 "mirrord without DIR" "" "$MIRRORD"
rejects -t 10 "mirrord on a missing DIR" "$T/nodir" \
	"$MIRRORD" "$T/nodir" --listen 127.0.0.1:0 "${MS[@]}"
rejects -t 10 "mirrord on a file" "$T/afile" \
	"$MIRRORD" "$T/afile" --listen 127.0.0.1:0 "${MS[@]}"
rejects -t 10 "mirrord --listen without a port" "nonsense" \
	"$MIRRORD" "$T/dir" --listen nonsense "${MS[@]}"
rejects -t 10 "mirrord --listen with a port out of range" "99999" \
	"$MIRRORD" "$T/dir" --listen 127.0.0.1:99999 "${MS[@]}"
rejects -t 10 "mirrord --listen with a non-numeric port" "http" \
	"$MIRRORD" "$T/dir" --listen 127.0.0.1:http "${MS[@]}"
rejects -t 10 "mirrord --listen on a port in use" "$PORT" \
	"$MIRRORD" "$T/dir" --listen "127.0.0.1:$PORT" "${MS[@]}"
rejects -t 10 "mirrord unknown option" "--bogus" \
	"$MIRRORD" "$T/dir" --listen 127.0.0.1:0 "${MS[@]}" --bogus
rejects -t 10 "mirrord bad --log-level" "loud" \
	"$MIRRORD" "$T/dir" --listen 127.0.0.1:0 "${MS[@]}" --log-level loud

step "nothing was lost"
check "BACKING unchanged" "$TREECMP" "$B" "$T/backing.snap"
check "non-empty MOUNTPOINT unchanged" "$TREECMP" "$T/full" "$T/full.snap"
check "mirrord's DIR unchanged" "$TREECMP" "$T/dir" "$T/dir.snap"
check "the running mirrord still answers" curl -sf --max-time 5 "$URL/v1/ping"

step "a good command line still mounts"
mount_mirrorfs
unmount_mirrorfs
stop_mirrord
t_done
