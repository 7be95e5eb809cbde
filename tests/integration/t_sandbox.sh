#!/bin/bash
# t_sandbox: the units' system call filters and socket families allow
# everything mirrord and mirrorfs do.
#
# systemd is not PID 1 where the tests run, so the units cannot be started;
# instead, what each unit runs is traced with strace through a workload that
# touches every kind of change, and every system call made must be allowed
# by the unit's SystemCallFilter= lines (expanded with `systemd-analyze
# syscall-filter`), every socket() family by RestrictAddressFamilies=.
#   - mirrord.service: the launcher (packaging/mirrord-service) and mirrord,
#     as an unprivileged user (setpriv), as the unit runs them, with a token
#     file (made by mirrord) and, where openssl is found, over HTTPS;
#   - mirrorfs@.service: mirrorfs -f as root (with the token, and the CA
#     certificate for HTTPS), and the ExecStop commands;
#   - mirrorfs-poll@.service (where mirrorfs-poll is built): the launcher's
#     poll mode and mirrorfs-poll as root with the unit's capability
#     bounding set (setpriv), until SIGTERM.
# Needs root, strace, setpriv and systemd-analyze (skipped otherwise).
#
# timeout: 300

. "$(dirname "$0")/lib.sh"

need_mount
for tool in strace setpriv systemd-analyze; do
	if ! command -v "$tool" >/dev/null; then
		echo "SKIP: $T_NAME: $tool is missing"
		exit 0
	fi
done
if [[ $(id -u) != 0 ]]; then
	echo "SKIP: $T_NAME: needs root"
	exit 0
fi
# The units run release builds: a sanitizer's runtime makes calls of its own.
libs=$(ldd "$MIRRORD" "$MIRRORFS" 2>/dev/null || true)
if grep -qE 'lib(a|ub|t|l)san' <<<"$libs"; then
	echo "SKIP: $T_NAME: sanitizer build (its runtime's system calls are not the units')"
	exit 0
fi
t_setup
P=$T_ROOT/packaging
need_fsop

# ------------------------------------------------------------ the filters

# Every group of `systemd-analyze syscall-filter`, expanded: GROUP[@name]="a b ...".
declare -A GROUP
load_groups() {
	local line cur="" l
	while IFS= read -r line; do
		l=${line#"${line%%[![:space:]]*}"}
		[[ -z $l || $l == \#* ]] && continue
		if [[ $line == @* ]]; then
			cur=$line
			GROUP[$cur]=""
		elif [[ -n $cur ]]; then
			GROUP[$cur]+="$l "
		fi
	done < <(systemd-analyze syscall-filter 2>/dev/null)
	((${#GROUP[@]} > 10)) || fail "systemd-analyze syscall-filter listed no groups"
}

# expand NAME...: the system calls NAME (a call or a @group) stand for.
declare -A EXP_SEEN
expand() {
	local x
	for x in "$@"; do
		if [[ $x == @* ]]; then
			[[ -n ${GROUP[$x]+set} ]] || fail "unknown syscall group $x"
			# shellcheck disable=SC2086 # a list of names
			expand ${GROUP[$x]}
		else
			EXP_SEEN[$x]=1
		fi
	done
}

# allowed_calls UNIT: the calls UNIT's SystemCallFilter= lines allow, one a
# line, as systemd reads them: the first line must be an allow-list; each
# later ~deny-list removes its calls, each later allow-list adds its own.
allowed_calls() {
	local unit=$1 v first=1
	local -A ok=()
	while IFS= read -r v; do
		EXP_SEEN=()
		if [[ $v == ~* ]]; then
			((first == 0)) || fail "$unit: the first SystemCallFilter= is not an allow-list"
			# shellcheck disable=SC2086 # a list of names
			expand ${v#\~}
			for v in "${!EXP_SEEN[@]}"; do unset "ok[$v]"; done
		else
			# shellcheck disable=SC2086
			expand $v
			for v in "${!EXP_SEEN[@]}"; do ok[$v]=1; done
		fi
		first=0
	done < <(sed -n 's/^SystemCallFilter=//p' "$unit")
	((first == 0)) || fail "$unit has no SystemCallFilter= allow-list"
	EXP_SEEN=()
	printf '%s\n' "${!ok[@]}" | sort
}

# traced_calls TRACE...: the system calls in strace -f output, one a line.
traced_calls() {
	sed -nE 's/^[0-9]+ +([a-z_][a-z0-9_]*)\(.*/\1/p' "$@" | sort -u
}

# check_trace WHAT UNIT TRACE...: every call and socket family in TRACE is
# allowed by UNIT.
check_trace() {
	local what=$1 unit=$2 bad fams badfam=()
	shift 2
	local n
	n=$(traced_calls "$@" | wc -l)
	((n > 20)) || fail "$what: only $n distinct system calls traced (strace failed?)"
	bad=$(comm -23 <(traced_calls "$@") <(allowed_calls "$unit"))
	check "$what: every system call is allowed by $(basename "$unit")'s SystemCallFilter= ($n calls; refused: ${bad:-none})" \
		test -z "$bad"
	fams=$(sed -n 's/^RestrictAddressFamilies=//p' "$unit")
	for f in $(grep -ohE 'socket\(AF_[A-Z0-9]+' "$@" | sed 's/socket(//' | sort -u); do
		[[ " $fams " == *" $f "* ]] || badfam+=("$f")
	done
	check "$what: every socket family is allowed by RestrictAddressFamilies=$fams (refused: ${badfam[*]:-none})" \
		test ${#badfam[@]} -eq 0
	step "$what: $n distinct system calls, families $(grep -ohE 'socket\(AF_[A-Z0-9]+' "$@" | sed 's/socket(//' | sort -u | tr '\n' ' ')"
}

load_groups

# ------------------------------------------------------------ run traced

# mirrord as nobody over a DIR nobody owns, started through the unit's
# launcher with settings as in mirrord.conf, under strace.
chmod 1777 "$T"
mkdir "$T/dstate"
chown 65534:65534 "$T/dir" "$T/dstate"
t_require_bins "$MIRRORD"
TLS=0
if command -v openssl >/dev/null; then
	# A certificate for 127.0.0.1, signed by a CA of the test's own.
	ssl() { openssl "$@" >>"$T/openssl.log" 2>&1 || fail "openssl $1 failed: $(tail -n 5 "$T/openssl.log")"; }
	ssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/ca.key" -out "$T/ca.pem" -days 2 -subj /CN=test-ca
	ssl req -newkey rsa:2048 -nodes -keyout "$T/srv.key" -out "$T/srv.csr" -subj /CN=127.0.0.1
	printf 'subjectAltName=IP:127.0.0.1\n' >"$T/san"
	ssl x509 -req -in "$T/srv.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
		-out "$T/srv.pem" -days 2 -extfile "$T/san"
	chmod 0644 "$T/srv.key"
	TLS=1
fi
cat >"$T/mirrord.env" <<SETTINGS
DIR=$T/dir
STATE_DIR=$T/dstate
LISTEN=127.0.0.1:0
TOKEN_FILE=$T/token
TLS_CERT=$( ((TLS)) && echo "$T/srv.pem")
TLS_KEY=$( ((TLS)) && echo "$T/srv.key")
LOG_LEVEL=debug
EXTRA_ARGS="--port-file $T/port"
MIRRORD_PROGRAM=$MIRRORD
SETTINGS
step "mirrord: token$( ((TLS)) && echo ", HTTPS")"
(
	set -a
	. "$T/mirrord.env"
	exec setpriv --reuid=65534 --regid=65534 --clear-groups \
		strace -f -qq -o "$T/mirrord.trace" "$P/mirrord-service"
) >>"$T/mirrord.log" 2>&1 &
MIRRORD_PID=$!
T_PIDS+=("$MIRRORD_PID")
wait_for -t 20 -m "mirrord's port file" test -s "$T/port"
SCHEME=http
CURL_TLS=()
if ((TLS)); then
	SCHEME=https
	CURL_TLS=(--cacert "$T/ca.pem")
fi
URL=$SCHEME://127.0.0.1:$(<"$T/port")
wait_for -t 20 -m "the token file mirrord makes" test -s "$T/token"
AUTH="Authorization: Bearer $(<"$T/token")"
wait_for -t 20 -m "mirrord to answer $URL/v1/ping" \
	curl -sf "${CURL_TLS[@]}" -H "$AUTH" -o /dev/null "$URL/v1/ping"
[[ $(stat -c %u "/proc/$MIRRORD_PID") == 65534 ]] || fail "mirrord does not run as nobody"
step "mirrord on $URL"
check "GET /metrics answers with the token" \
	curl -sf "${CURL_TLS[@]}" -H "$AUTH" -o /dev/null "$URL/metrics"

real_mirrorfs=$MIRRORFS
cat >"$T/mirrorfs-traced" <<WRAPPER
#!/bin/sh
exec strace -f -qq -o "$T/mirrorfs.trace" "$real_mirrorfs" "\$@"
WRAPPER
chmod 0755 "$T/mirrorfs-traced"
client_args=(--token-file "$T/token")
((TLS)) && client_args+=(--cacert "$T/ca.pem")
MIRRORFS=$T/mirrorfs-traced mount_mirrorfs "${client_args[@]}"

step "workload"
M=$T/mnt
mkdir -p "$M/d/e"
for i in 1 2 3 4 5; do echo "file $i" >"$M/d/e/f$i"; done
head -c 3000000 /dev/urandom >"$M/big"
mv "$M/big" "$M/d/big"
cp "$M/d/big" "$M/copy"
echo "more" >>"$M/copy"
truncate -s 100000 "$M/d/e/f1"
truncate -s 10 "$M/d/e/f1"
fallocate -l 65536 "$M/d/alloc" 2>/dev/null || true
ln -s d/e/f2 "$M/link"
ln "$M/d/e/f3" "$M/hard"
echo "through the other name" >>"$M/hard"
mkfifo "$M/fifo"
chmod 0500 "$M/d/e"
chmod 0444 "$M/d/e/f4" 2>/dev/null || true
touch -d '2020-02-02 02:02:02.5' "$M/copy"
chmod 0755 "$M/d/e"
"$FSOP" rename2 exchange "$M/d/e/f4" "$M/d/e/f5"
"$FSOP" mmapwrite --msync "$M/mapped" 0 "mapped text"
"$FSOP" openunlink "$M/gone" 100000
rm "$M/d/e/f2"
mv "$M/d/e" "$M/e-moved"
rm -r "$M/d/big"
mirror_status >/dev/null
sync_mirror
compare_trees --skip-special

step "ExecStop, traced"
strace -f -qq -o "$T/stop.trace" /bin/fusermount3 -u "$M"
MAINPID=$MIRRORFS_PID strace -f -qq -o "$T/stop-wait.trace" timeout 60 /bin/sh -c \
	"$(sed -n "s/^ExecStop=\/bin\/sh -c '\(.*\)'$/\1/p" "$P/mirrorfs@.service")" ||
	fail "the ExecStop wait did not end within 60 s"
unmount_mirrorfs

POLL=0
if [[ -x $MIRRORFS_POLL ]]; then
	POLL=1
	step "mirrorfs-poll@.service: the launcher's poll mode and mirrorfs-poll, traced"
	(
		set -a
		BACKING=$T/backing SERVER=$URL STATE_DIR=$T/pstate TOKEN_FILE=$T/token INTERVAL=100
		LOG_LEVEL=debug MIRRORFS_POLL_PROGRAM=$MIRRORFS_POLL
		((TLS)) && CACERT=$T/ca.pem
		# The unit's CapabilityBoundingSet=, as setpriv can set it.
		exec setpriv --bounding-set=-all,+dac_read_search,+dac_override,+fowner \
			strace -f -qq -o "$T/poll.trace" "$P/mirrorfs-service" poll
	) >>"$T/mirrorfs.log" 2>&1 &
	POLL_PID=$!
	T_PIDS+=("$POLL_PID")
	poll_up() { "$MIRRORFS_POLL" status "$T/backing" --state-dir "$T/pstate" >/dev/null 2>&1; }
	wait_for -t 30 -m "mirrorfs-poll to answer status" poll_up
	B=$T/backing
	mkdir -p "$B/polled/x"
	echo "scanned" >"$B/polled/x/a"
	head -c 500000 /dev/urandom >"$B/polled/big"
	mv "$B/copy" "$B/polled/copy-moved"
	ln -s x/a "$B/polled/link"
	chmod 0700 "$B/polled/x"
	# Another user's private file: read through the capabilities the unit keeps.
	echo "private" >"$B/polled/private"
	chown 65534:65534 "$B/polled/private"
	chmod 0000 "$B/polled/private"
	rm -r "$B/e-moved"
	timeout 90 "$MIRRORFS_POLL" sync "$B" --state-dir "$T/pstate" --timeout 60 ||
		fail "mirrorfs-poll sync failed"
	compare_trees --skip-special
	# SIGTERM to the poller (strace's child), as systemd stops the unit.
	pchild=$(cat "/proc/$POLL_PID/task/$POLL_PID/children" 2>/dev/null || true)
	[[ -n $pchild ]] || fail "no mirrorfs-poll under strace"
	kill -TERM $pchild
	t_reap "$POLL_PID" 40 || fail "mirrorfs-poll did not exit within 40 s of SIGTERM"
fi
# MIRRORD_PID is strace's: the SIGTERM goes to the launcher's process (now
# mirrord, by exec), and strace ends with it.
child=$(cat "/proc/$MIRRORD_PID/task/$MIRRORD_PID/children" 2>/dev/null || true)
[[ -n $child ]] || fail "no mirrord under strace (pid $MIRRORD_PID)"
kill -TERM $child
stop_mirrord

# timeout(1) is only the test's bound, not part of the unit.
sed -i -E '/^[0-9]+ +execve\("[^"]*timeout"/d' "$T/stop-wait.trace"
check_trace "mirrord.service" "$P/mirrord.service" "$T/mirrord.trace"
check_trace "mirrorfs@.service" "$P/mirrorfs@.service" "$T/mirrorfs.trace" "$T/stop.trace" \
	"$T/stop-wait.trace"
if ((POLL)); then
	check_trace "mirrorfs-poll@.service" "$P/mirrorfs-poll@.service" "$T/poll.trace"
fi
t_done
