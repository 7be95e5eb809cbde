#!/bin/bash
# t_stage: stages, mirrord alone over a real socket, driven with curl.
#
# Starts its own mirrord on 127.0.0.1 (port 0 + --port-file) over a fresh
# DIR and checks the "stage" addition to the protocol: ping announces it;
# POST /v1/chunks with X-Mirror-Stage (staged frames: the 40-byte header,
# then the chunk's offset u64 BE, then the payload) and POST /v1/bundle with
# "stage" write chunks at their offsets of a per-stage file
# (<state>/chunks/stage.N), which a file op with the same "stage" takes as
# the new file. Each commit is checked exact (cmp), with mode and mtime:
# a plain staged file; the stage name reused once consumed (built the
# ordinary way); gaps filled from plain uploads and from the list itself;
# hostile stage content (a chunk not in the list where zeros belong, a
# list chunk placed at the wrong offset, junk past the size); offsets out
# of order; a 409 that does not consume the stage; a bundle's staged
# frames (one zstd); a file op with a stage inside a bundle. Refusals
# (malformed X-Mirror-Stage, offsets at 2^48, malformed "stage" in ops and
# bundles, bytes not matching their id) are 400 with a JSON error and
# nothing applied or stored. At the end: no stage file and no temporary
# left, mirrord alive, nothing outside DIR changed, clean SIGTERM.
#
# mirrord is killed by PID in the EXIT trap, whatever happens; every curl
# runs under timeout; waiting is by bounded polls only.
#
# timeout: 120

set -u -o pipefail

NAME=t_stage
T=$(mktemp -d /tmp/mirrord-stage.XXXXXX) || exit 1
# shellcheck source-path=SCRIPTDIR source=api_lib.sh
. "$(dirname "$0")/api_lib.sh"
mkdir "$T/f"
find "$T/outside" -printf '%p %m %s %T@\n' | sort >"$T/outside.before"
command -v zstd >/dev/null || die "zstd is needed"

start_main

# The helpers api_lib.sh lacks: staged frames, and the checks of stages.
u64() { printf '%016x' "$1" | xxd -r -p; }

# sframe FILE OFFSET: one uncompressed staged frame (header, offset, bytes).
sframe() {
	local len
	len=$(stat -c %s "$1")
	id_of "$1" | xxd -r -p
	u32 "$len"
	u32 "$len"
	u64 "$2"
	cat "$1"
}

# sframe_zstd FILE OFFSET: one zstd-compressed staged frame.
sframe_zstd() {
	local len wire
	len=$(stat -c %s "$1")
	zstd -q -f -c "$1" >"$1.zst"
	wire=$(stat -c %s "$1.zst")
	id_of "$1" | xxd -r -p
	u32 "$len"
	u32 $((wire | 0x80000000))
	u64 "$2"
	cat "$1.zst"
}

# supload STAGE FRAMEFILE: POST /v1/chunks to a stage.
supload() {
	req POST /v1/chunks -H 'Content-Type: application/octet-stream' \
		-H "X-Mirror-Stage: $1" --data-binary "@$2"
}

# rnd NAME LEN: LEN random bytes in $T/f/NAME.
rnd() { head -c "$2" /dev/urandom >"$T/f/$1"; }

# newstage: a fresh stage name (32 hex digits) on stdout.
newstage() { head -c 16 /dev/urandom | xxd -p | tr -d '\n'; }

# clist NAME...: sets CHUNKS (the op's chunk list) and SIZE for the files
# $T/f/NAME..., and their concatenation in $T/want.
clist() {
	local n l sep=""
	CHUNKS="["
	SIZE=0
	: >"$T/want"
	for n in "$@"; do
		l=$(stat -c %s "$T/f/$n")
		CHUNKS+="${sep}[\"$(id_of "$T/f/$n")\",$l]"
		sep=","
		SIZE=$((SIZE + l))
		cat "$T/f/$n" >>"$T/want"
	done
	CHUNKS+="]"
}

# fop PATH MODE SEC NSEC STAGE: the file op of $CHUNKS/$SIZE in FOP (STAGE
# is put verbatim as the value of "stage"; empty: none).
fop() {
	FOP="{\"op\":\"file\",\"path\":\"$1\",\"mode\":$2,\"mtime\":[$3,$4],\"size\":$SIZE,\"chunks\":$CHUNKS"
	[[ -n $5 ]] && FOP+=",\"stage\":$5"
	FOP+="}"
}

# commit PATH MODE SEC NSEC STAGE: POST /v1/op of fop's op, stage quoted.
commit() {
	fop "$1" "$2" "$3" "$4" "${5:+\"$5\"}"
	op "$FOP"
}

# exact PATH MODE SEC NSEC WHAT: DIR/PATH is $T/want, with that mode and mtime.
exact() {
	local f=$D/$1 want_t
	want_t="$(date -u -d "@$3" '+%Y-%m-%d %H:%M:%S').$(printf '%09d' "$4") +0000"
	ok "$5: content exact" cmp -s "$T/want" "$f"
	ok "$5: size $(stat -c %s "$T/want")" test "$(stat -c %s "$f" 2>/dev/null)" = "$(stat -c %s "$T/want")"
	ok "$5: mode $(printf '%o' "$2")" test "$(stat -c %a "$f" 2>/dev/null)" = "$(printf '%o' "$2")"
	ok "$5: mtime $3.$4" test "$(stat -c %y "$f" 2>/dev/null)" = "$want_t"
}

# stages: the stage files in the state folder, one a line.
stages() { find "$S/chunks" -maxdepth 1 -name 'stage.*' -printf '%f\n' 2>/dev/null | sort; }

# newstagefile: the one stage file not in $T/stages.before (empty: none, or
# more than one).
stages_mark() { stages >"$T/stages.before"; }
newstagefile() {
	local n
	n=$(stages | comm -13 "$T/stages.before" -)
	[[ $(grep -c . <<<"$n") == 1 ]] && echo "$n"
}

snap() { find "$D" -printf '%p %m %s %T@\n' | sort >"$1"; }

# missing IDS...: POST /v1/chunks/query; sets BODY.
query() {
	local ids="" sep="" i
	for i in "$@"; do
		ids+="$sep\"$i\""
		sep=","
	done
	req POST /v1/chunks/query --data-binary "{\"ids\":[$ids]}"
}

tmp_empty() { test -z "$(ls -A "$S/tmp" 2>/dev/null)"; }

# ------------------------------------------------------------------ ping
req GET /v1/ping
expect 200 '"stage":true' "ping announces stages"

# ------------------------------------------------- a file of three chunks
rnd a 5000
rnd b 7000
rnd c 3000
S1=$(newstage)
{ sframe "$T/f/a" 0; sframe "$T/f/b" 5000; sframe "$T/f/c" 12000; } >"$T/frames1"
stages_mark
supload "$S1" "$T/frames1"
expect 200 '"stored":3' "staged upload of three chunks"
SF1=$(newstagefile)
ok "the upload made one stage file ($SF1)" test -n "$SF1" -a -f "$S/chunks/$SF1"
ok "the stage file holds the chunks at their offsets" \
	cmp -s <(cat "$T/f/a" "$T/f/b" "$T/f/c") "$S/chunks/$SF1"
INO1=$(stat -c %i "$S/chunks/$SF1" 2>/dev/null)
query "$(id_of "$T/f/a")" "$(id_of "$T/f/b")" "$(id_of "$T/f/c")"
expect 200 '"missing":[]' "staged chunks are known to a query"
clist a b c
commit st/one 416 1700000000 123456789 "$S1"
expect 200 '"ok":true' "commit with the stage"
exact st/one 416 1700000000 123456789 "staged file"
ok "the stage file is gone from the state folder" test ! -e "$S/chunks/$SF1"
ok "no stage file left" test -z "$(stages)"
ok "the stage file became the new file (same inode)" \
	test "$(stat -c %i "$D/st/one" 2>/dev/null)" = "$INO1"
ok "no temporary left after a staged commit" tmp_empty

# ---------------------------------------------- the consumed stage reused
commit st/two 384 1600000000 5 "$S1"
expect 200 '"ok":true' "commit with a consumed stage (built the ordinary way)"
exact st/two 384 1600000000 5 "file of a consumed stage"
ok "the first file is untouched by the second commit" cmp -s "$T/want" "$D/st/one"
ok "no stage file after a consumed stage" test -z "$(stages)"

# ------------------------------------------------------------------- gaps
# [d1, d2, d3, d1]: d1 and d3 staged, d2 uploaded plainly before, the last
# chunk the first one again (not re-sent).
rnd d1 4000
rnd d2 6000
rnd d3 2000
frame "$T/f/d2" >"$T/frame.d2"
upload "$T/frame.d2"
expect 200 '"stored":1' "plain upload of the gap's chunk"
S2=$(newstage)
{ sframe "$T/f/d1" 0; sframe "$T/f/d3" 10000; } >"$T/frames2"
stages_mark
supload "$S2" "$T/frames2"
expect 200 '"stored":2' "staged upload with gaps"
SF2=$(newstagefile)
ok "a stage file for the gaps" test -n "$SF2"
clist d1 d2 d3 d1
commit st/gaps 420 1700000100 0 "$S2"
expect 200 '"ok":true' "commit of a stage with gaps"
exact st/gaps 420 1700000100 0 "file with gaps filled"
ok "the gaps' stage consumed" test -z "$(stages)"

# ----------------------------------------------------- hostile: zeros win
# The stage holds x at 0, which is not in the list [zeros, y]: the file
# must hold the zeros.
rnd x 4096
head -c 4096 /dev/zero >"$T/f/z"
rnd y 3000
frame "$T/f/z" >"$T/frame.z"
upload "$T/frame.z"
expect 200 '"stored":1' "plain upload of a zeros chunk"
S3=$(newstage)
{ sframe "$T/f/x" 0; sframe "$T/f/y" 4096; } >"$T/frames3"
supload "$S3" "$T/frames3"
expect 200 '"stored":2' "staged upload of a chunk not in the list"
clist z y
commit st/hostile 420 1700000200 7 "$S3"
expect 200 '"ok":true' "commit over foreign stage bytes"
exact st/hostile 420 1700000200 7 "foreign stage bytes overwritten"
ok "the file's first 4096 bytes are zeros" cmp -s "$T/f/z" <(head -c 4096 "$D/st/hostile")
ok "the hostile stage consumed" test -z "$(stages)"
# x was uploaded (to a stage): a later commit of it must succeed, or be a
# 409 the client can act on (a query reporting it missing too, and a
# plain re-upload then succeeding).
clist x
commit st/x 420 1700000201 0 ""
if [[ $CODE == 409 ]]; then
	X409=$BODY
	query "$(id_of "$T/f/x")"
	ok "x overwritten in its stage: the 409 ($X409) agrees with a query ($BODY)" \
		grep -qF '"missing":[0]' "$T/body"
	frame "$T/f/x" >"$T/frame.x"
	upload "$T/frame.x"
	expect 200 '"ok":true' "plain re-upload of x"
	commit st/x 420 1700000201 0 ""
fi
expect 200 '"ok":true' "commit of a chunk that was only in a consumed stage"
exact st/x 420 1700000201 0 "file of x"

# ----------------------------------------- hostile: a chunk misplaced
# The stage holds m2 at 0, the list is [m1, m2]: m2 belongs at 1000, and
# the stage's copy of it is where m1 goes.
rnd m1 1000
rnd m2 4000
frame "$T/f/m1" >"$T/frame.m1"
upload "$T/frame.m1"
expect 200 '"stored":1' "plain upload of m1"
S4=$(newstage)
sframe "$T/f/m2" 0 >"$T/frames4"
supload "$S4" "$T/frames4"
expect 200 '"stored":1' "staged upload of m2 at the wrong offset"
clist m1 m2
commit st/misplaced 420 1700000300 0 "$S4"
# The stage does not fit the list: left to the store, which still has m2.
expect 200 '"ok":true' "commit of a list whose chunk is staged elsewhere"
exact st/misplaced 420 1700000300 0 "file of a misplaced staged chunk"
ok "no stage file after the misplaced chunk" test -z "$(stages)"

# ------------------------------------------------ junk past the size
rnd t1 5000
rnd j 3000
S5=$(newstage)
{ sframe "$T/f/t1" 0; sframe "$T/f/j" 6000; } >"$T/frames5"
supload "$S5" "$T/frames5"
expect 200 '"stored":2' "staged upload with a chunk past the file's size"
clist t1
commit st/cut 436 1700000400 999999999 "$S5"
expect 200 '"ok":true' "commit cutting the stage's tail"
exact st/cut 436 1700000400 999999999 "stage cut at the size"
ok "the junk stage consumed" test -z "$(stages)"

# ------------------------------------------------- offsets out of order
rnd o1 3000
rnd o2 5000
S6=$(newstage)
{ sframe "$T/f/o2" 3000; sframe "$T/f/o1" 0; } >"$T/frames6"
supload "$S6" "$T/frames6"
expect 200 '"stored":2' "staged upload with offsets going back"
query "$(id_of "$T/f/o1")" "$(id_of "$T/f/o2")"
expect 200 '"missing":[]' "both chunks of an out-of-order stage known"
clist o1 o2
commit st/order 420 1700000500 1 "$S6"
expect 200 '"ok":true' "commit of an out-of-order stage"
exact st/order 420 1700000500 1 "file of an out-of-order stage"
# Overlapping: the second starts before the end of the first.
rnd p1 3000
rnd p2 4000
S7=$(newstage)
{ sframe "$T/f/p1" 0; sframe "$T/f/p2" 2000; } >"$T/frames7"
supload "$S7" "$T/frames7"
expect 200 '"stored":2' "staged upload with overlapping offsets"
clist p1 p2
commit st/overlap 420 1700000501 2 "$S7"
expect 200 '"ok":true' "commit of an overlapping stage"
exact st/overlap 420 1700000501 2 "file of an overlapping stage"
# A second request to the same stage, going back: the same.
rnd q1 2500
rnd q2 2500
S8=$(newstage)
sframe "$T/f/q2" 2500 >"$T/frames8a"
sframe "$T/f/q1" 0 >"$T/frames8b"
supload "$S8" "$T/frames8a"
expect 200 '"stored":1' "first request to a stage"
supload "$S8" "$T/frames8b"
expect 200 '"stored":1' "second request to the stage, offset going back"
clist q1 q2
commit st/order2 420 1700000502 3 "$S8"
expect 200 '"ok":true' "commit of a stage fed by two requests"
exact st/order2 420 1700000502 3 "file of a stage fed by two requests"
ok "the out-of-order stages consumed" test -z "$(stages)"

# -------------------------------------------------------------------- 409
rnd h1 2500
rnd h2 3500
S9=$(newstage)
sframe "$T/f/h1" 0 >"$T/frames9"
stages_mark
supload "$S9" "$T/frames9"
expect 200 '"stored":1' "staged upload of half a file"
SF9=$(newstagefile)
ok "a stage file for the 409 case" test -n "$SF9"
clist h1 h2
commit st/late 420 1700000600 0 "$S9"
expect_err 409 "" "commit with a chunk never uploaded is 409"
expect 409 '"missing":[1]' "the 409 names the missing index"
ok "nothing published for a 409" test ! -e "$D/st/late"
ok "the 409 did not consume the stage" test -n "$SF9" -a -f "$S/chunks/$SF9"
ok "no temporary left after a 409" tmp_empty
frame "$T/f/h2" >"$T/frame.h2"
upload "$T/frame.h2"
expect 200 '"stored":1' "plain upload of the missing chunk"
commit st/late 420 1700000600 0 "$S9"
expect 200 '"ok":true' "commit with the same stage after the 409"
exact st/late 420 1700000600 0 "file committed after a 409"
ok "the stage consumed by the successful commit" test ! -e "$S/chunks/$SF9"
ok "no stage file left after the 409 case" test -z "$(stages)"

# ----------------------------------------------------------------- bundle
rnd g1 6000
yes "staged and compressed" | head -c 20000 >"$T/f/g2"
S10=$(newstage)
{ sframe "$T/f/g1" 0; sframe_zstd "$T/f/g2" 6000; } >"$T/frames10"
bundle "{\"ops\":[],\"stage\":\"$S10\"}" "$T/frames10"
stages_mark
req POST /v1/bundle -H 'Content-Type: application/octet-stream' --data-binary "@$T/bundle"
expect 200 '"stored":2' "bundle of staged frames (one zstd)"
SF10=$(newstagefile)
ok "the bundle made a stage file" test -n "$SF10"
ok "the bundle's stage file holds the chunks at their offsets" \
	cmp -s <(cat "$T/f/g1" "$T/f/g2") "$S/chunks/$SF10"
clist g1 g2
commit st/bundled 420 1700000700 44 "$S10"
expect 200 '"ok":true' "commit of a bundle's stage"
exact st/bundled 420 1700000700 44 "file of a bundle's stage"
ok "the bundle's stage consumed" test -z "$(stages)"
# The same, the whole bundle zstd-encoded.
rnd g3 3000
rnd g4 3000
S11=$(newstage)
{ sframe "$T/f/g3" 0; sframe "$T/f/g4" 3000; } >"$T/frames11"
bundle "{\"ops\":[],\"stage\":\"$S11\"}" "$T/frames11"
zstd -q -f -c "$T/bundle" >"$T/bundle.zst"
req POST /v1/bundle -H 'Content-Encoding: zstd' --data-binary "@$T/bundle.zst"
expect 200 '"stored":2' "zstd-encoded bundle of staged frames"
clist g3 g4
commit st/bundled2 420 1700000701 0 "$S11"
expect 200 '"ok":true' "commit of a zstd bundle's stage"
exact st/bundled2 420 1700000701 0 "file of a zstd bundle's stage"
# A file op with a stage inside a bundle.
rnd k1 4000
rnd k2 1000
S12=$(newstage)
{ sframe "$T/f/k1" 0; sframe "$T/f/k2" 4000; } >"$T/frames12"
supload "$S12" "$T/frames12"
expect 200 '"stored":2' "staged upload for a bundled commit"
clist k1 k2
fop st/inbundle 420 1700000702 0 "\"$S12\""
post_bundle "{\"ops\":[$FOP]}" /dev/null
expect 200 '"results":[{"ok":true}]' "bundled file op with a stage"
exact st/inbundle 420 1700000702 0 "file of a bundled op with a stage"
ok "no stage file left after the bundles" test -z "$(stages)"
ok "no temporary left after the bundles" tmp_empty

# --------------------------------------------------------------- refusals
snap "$T/dir.before"
stages_mark
rnd r1 1500
rnd r2 1500
R1=$(id_of "$T/f/r1")
R2=$(id_of "$T/f/r2")
sframe "$T/f/r1" 0 >"$T/frames.r"
for h in 0123456789abcdef 0123456789abcdef0123456789abcdeg \
	0123456789abcdef0123456789abcdef00 '0123456789abcdef 123456789abcdef'; do
	supload "$h" "$T/frames.r"
	expect_err 400 EINVAL "malformed X-Mirror-Stage '$h' is 400"
done
query "$R1"
expect 200 '"missing":[0]' "nothing stored by malformed X-Mirror-Stage"
SR=$(newstage)
{ sframe "$T/f/r1" $(((1 << 48) - 1)); sframe "$T/f/r2" 0; } >"$T/frames.off"
supload "$SR" "$T/frames.off"
expect_err 400 EBADMSG "staged frame at offset 2^48-1 is 400"
{ sframe "$T/f/r1" $(((1 << 48) - 1500)); sframe "$T/f/r2" 0; } >"$T/frames.off2"
supload "$SR" "$T/frames.off2"
expect_err 400 EBADMSG "staged frame ending at 2^48 is 400"
query "$R1" "$R2"
expect 200 '"missing":[0,1]' "nothing stored by frames at offsets past 2^48"
{ id_of "$T/f/r1" | xxd -r -p; u32 1500; u32 1500; u64 0; cat "$T/f/r2"; } >"$T/frames.forged"
supload "$SR" "$T/frames.forged"
expect_err 400 EBADMSG "staged frame not matching its id is 400"
query "$R1" "$R2"
expect 200 '"missing":[0,1]' "the forged staged chunk was not stored"
# Ops and bundles with a malformed stage; their chunks are all available.
clist a b c
for st in '"xyz"' '"0123456789abcdef0123456789abcdeg"' '"0123456789abcdef"' 12 null '["00"]'; do
	fop st/refused 420 1700000800 0 "$st"
	op "$FOP"
	expect_err 400 EINVAL "op with \"stage\":$st is 400"
done
fop st/refused 420 1700000800 0 '"xyz"'
post_bundle "{\"ops\":[$FOP]}" /dev/null
expect_err 400 EINVAL "bundled op with a malformed stage is 400"
for st in 12 '"xyz"' '"0123456789abcdef0123456789abcdeg"' true; do
	post_bundle "{\"ops\":[{\"op\":\"mkdir\",\"path\":\"st/refused-bundle\",\"mode\":493,\"mtime\":[1,0]}],\"stage\":$st}" "$T/frames.r"
	expect_err 400 EINVAL "bundle with \"stage\":$st is 400"
	post_bundle "{\"ops\":[],\"stage\":$st}" "$T/frames.r"
	expect_err 400 EINVAL "bare bundle with \"stage\":$st is 400"
done
query "$R1"
expect 200 '"missing":[0]' "nothing stored by refused bundles"
ok "refused ops and bundles published nothing" test ! -e "$D/st/refused" -a ! -e "$D/st/refused-bundle"
snap "$T/dir.after"
ok "refusals left DIR unchanged" cmp -s "$T/dir.before" "$T/dir.after"
ok "refusals made no stage file" test -z "$(stages | comm -13 "$T/stages.before" -)"

# ------------------------------------------------------------------ end
ok "no stage file left at the end" test -z "$(stages)"
ok "no temporaries left in tmp/" tmp_empty
ok "nothing of mirrord's inside DIR" test -z "$(find "$D" -name '*.mirrord' -o -name 'f.*.*' -o -name 'stage.*')"
ok "mirrord still running" kill -0 "$PID"
find "$T/outside" -printf '%p %m %s %T@\n' | sort >"$T/outside.after"
ok "nothing outside DIR changed" cmp -s "$T/outside.before" "$T/outside.after"
ok "outside: keep intact" test "$(cat "$T/outside/keep")" = untouched

# Clean stop on SIGTERM, then PASS or FAIL.
finish
