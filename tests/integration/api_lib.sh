# tests/integration/api_lib.sh: sourced by the tests that drive mirrord
# alone over a real socket with curl (t_server_api, t_stage). Not a test
# itself: run.sh runs only t_*.sh.
#
# The sourcing test runs under `set -u -o pipefail` and sets, before
# sourcing:
#   NAME  its name, for the ok/FAIL/PASS lines
#   T     a fresh folder of its own (mktemp -d), removed by the EXIT trap
#         (kept with MIRRORFS_TEST_KEEP=1)
# It may define cleanup_more, which the EXIT trap runs after stopping $PID
# and before removing $T (for whatever else the test started).
#
# Sourcing sets ROOT, BUILD, MIRRORD (BUILD and MIRRORD may come from the
# environment; ROOT ends as mirrord's --allow-root argument array), D=$T/dir
# (made, empty), S=$T/state, $T/outside/keep ("untouched"), PID="", FAILS=0,
# TZ=UTC and CLIENT; installs the EXIT trap; and dies unless mirrord, xxd
# and b2sum are there. It starts nothing. Helpers:
#   start_main                  mirrord over $D and $S; sets PID and URL
#   start DIR STATE PORT LOG    another; sets STARTED_PID and STARTED_PORT
#   req op upload               requests; set CODE and BODY ($T/body)
#   bundle post_bundle          bundle bodies in $T/bundle (and POSTed)
#   expect expect_err ok die    checks; FAILS counts the soft failures
#   id_of u32 frame frame_zstd  chunk ids and frames
#   stop_pid PID, finish        stopping; finish ends the test (PASS/FAIL)
# shellcheck shell=bash

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
[[ $BUILD == /* ]] || BUILD=$ROOT/$BUILD
MIRRORD=${MIRRORD:-$BUILD/mirrord}

D=$T/dir
S=$T/state
mkdir "$D" "$T/outside"
echo "untouched" >"$T/outside/keep"
PID=""
FAILS=0
export TZ=UTC

# stop_pid PID: SIGTERM, a bounded wait for a clean exit, then SIGKILL.
stop_pid() {
	[[ -n $1 ]] || return 0
	kill -TERM "$1" 2>/dev/null
	for _ in $(seq 100); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}

cleanup() {
	stop_pid "$PID"
	if declare -F cleanup_more >/dev/null; then
		cleanup_more
	fi
	if [[ ${MIRRORFS_TEST_KEEP:-0} == 1 ]]; then
		echo "kept $T" >&2
	else
		chmod -R u+rwx "$T" 2>/dev/null
		rm -rf "$T"
	fi
}
trap cleanup EXIT

die() {
	echo "FAIL: $NAME: $*" >&2
	[[ -s $T/mirrord.log ]] && tail -n 30 "$T/mirrord.log" | sed 's/^/    /' >&2
	exit 1
}

# ok DESCRIPTION CMD...: a soft check; the test fails at the end.
ok() {
	local what=$1
	shift
	if "$@"; then
		echo "ok: $what"
	else
		echo "FAIL: $NAME: $what" >&2
		FAILS=$((FAILS + 1))
	fi
}

[[ -x $MIRRORD ]] || die "no mirrord binary at $MIRRORD (make first)"
command -v xxd >/dev/null || die "xxd is needed"
command -v b2sum >/dev/null || die "b2sum is needed"

# mirrord refuses to run as root without --allow-root.
ROOT=()
[[ $(id -u) == 0 ]] && ROOT=(--allow-root)

# start DIR STATE PORTFILE LOG: start a mirrord, wait (bounded) for its port
# file; sets STARTED_PID and STARTED_PORT.
start() {
	"$MIRRORD" "$1" --listen 127.0.0.1:0 --port-file "$3" --state-dir "$2" \
		--log-level debug "${ROOT[@]}" >"$4" 2>&1 &
	STARTED_PID=$!
	for _ in $(seq 200); do
		[[ -s $3 ]] && break
		kill -0 "$STARTED_PID" 2>/dev/null || die "mirrord exited at start"
		sleep 0.05
	done
	[[ -s $3 ]] || die "no port file after 10s"
	read -r STARTED_PORT <"$3"
}

# start_main: the test's mirrord, over $D with state $S, logging to
# $T/mirrord.log (which die shows); sets PID and URL.
start_main() {
	start "$D" "$S" "$T/port" "$T/mirrord.log"
	PID=$STARTED_PID
	URL=http://127.0.0.1:$STARTED_PORT
}

CLIENT=0123456789abcdef0123456789abcdef

# req METHOD PATH [CURL ARGS...]: sets CODE and BODY.
req() {
	local method=$1 path=$2
	shift 2
	CODE=$(timeout 30 curl -sS -o "$T/body" -w '%{http_code}' -X "$method" \
		-H "X-Mirror-Client: $CLIENT" "$@" "$URL$path") || die "curl $method $path failed"
	BODY=$(<"$T/body")
}

# op JSON [SEQ]: POST /v1/op.
op() {
	req POST /v1/op -H "X-Mirror-Seq: ${2:-0}" -H 'Content-Type: application/json' \
		--data-binary "$1"
}

# expect CODE [BODY-SUBSTRING] DESCRIPTION: check the last answer.
expect() {
	local code=$1 sub=$2 what=$3
	if [[ $CODE != "$code" ]]; then
		echo "FAIL: $NAME: $what: status $CODE, wanted $code: $BODY" >&2
		FAILS=$((FAILS + 1))
	elif [[ -n $sub && $BODY != *"$sub"* ]]; then
		echo "FAIL: $NAME: $what: answer lacks '$sub': $BODY" >&2
		FAILS=$((FAILS + 1))
	else
		echo "ok: $what"
	fi
}

# Error answers must carry the JSON error object.
expect_err() {
	expect "$1" '"ok":false' "$3"
	[[ $BODY == *'"code":"'* && $BODY == *'"errno":'* && $BODY == *'"error":"'* ]] ||
		{ echo "FAIL: $NAME: $3: not a JSON error object: $BODY" >&2; FAILS=$((FAILS + 1)); }
	[[ -z $2 || $BODY == *"$2"* ]] ||
		{ echo "FAIL: $NAME: $3: wanted code $2: $BODY" >&2; FAILS=$((FAILS + 1)); }
}

id_of() { b2sum -l 256 "$1" | cut -d' ' -f1; }
u32() { printf '%08x' "$1" | xxd -r -p; }

# frame FILE: one uncompressed frame of FILE's bytes on stdout.
frame() {
	local len
	len=$(stat -c %s "$1")
	id_of "$1" | xxd -r -p
	u32 "$len"
	u32 "$len"
	cat "$1"
}

# frame_zstd FILE: one zstd-compressed frame (bit 31 of wire_len).
frame_zstd() {
	local len wire
	len=$(stat -c %s "$1")
	zstd -q -c "$1" >"$1.zst"
	wire=$(stat -c %s "$1.zst")
	id_of "$1" | xxd -r -p
	u32 "$len"
	u32 $((wire | 0x80000000))
	cat "$1.zst"
}

upload() { # FRAMEFILE
	req POST /v1/chunks -H 'Content-Type: application/octet-stream' --data-binary "@$1"
}

# bundle JSON FRAMEFILE: a POST /v1/bundle body (u32 JSON length, JSON,
# frames) in $T/bundle.
bundle() {
	printf '%s' "$1" >"$T/bjson"
	{ u32 "$(stat -c %s "$T/bjson")"; cat "$T/bjson" "$2"; } >"$T/bundle"
}

# post_bundle JSON FRAMEFILE: bundle, then POST /v1/bundle of it as it is.
post_bundle() {
	bundle "$1" "$2"
	req POST /v1/bundle --data-binary "@$T/bundle"
}

# finish: stop mirrord with SIGTERM (it must exit 0 within 10s), then the
# verdict: FAIL if any check failed, else PASS.
finish() {
	local rc
	kill -TERM "$PID"
	for _ in $(seq 200); do
		kill -0 "$PID" 2>/dev/null || break
		sleep 0.05
	done
	if kill -0 "$PID" 2>/dev/null; then
		die "mirrord did not stop within 10s of SIGTERM"
	fi
	wait "$PID"
	rc=$?
	PID=""
	ok "mirrord exits 0 on SIGTERM" test "$rc" = 0

	if ((FAILS > 0)); then
		die "$FAILS check(s) failed"
	fi
	echo "PASS: $NAME"
}
