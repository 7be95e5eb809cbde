#!/bin/bash
# t_server_api: mirrord alone, over a real socket, driven with curl.
#
# Starts its own mirrord on 127.0.0.1 (port 0 + --port-file) over a fresh
# DIR and checks the protocol of docs/PROTOCOL.md end to end: ping; chunk
# upload (plain and zstd) and file commit with exact content, mode and mtime;
# 409 for missing chunks; mkdir, symlink, delete, meta, rename (plain,
# noreplace, exchange, replay by X-Mirror-Seq); refusal of bad paths,
# symlink escapes, wrong chunk bytes, oversized bodies, malformed JSON and
# unknown ops, with nothing changed; the manifest; ENOSPC (507, nothing
# left behind) on a small tmpfs when run as root; refused command lines.
#
# mirrord is killed by PID in the EXIT trap, whatever happens; every curl
# runs under timeout; waiting is by bounded polls only.
#
# timeout: 180

set -u -o pipefail

NAME=t_server_api
T=$(mktemp -d /tmp/mirrord-api.XXXXXX) || exit 1
# The second mirrord (ENOSPC check) and its tmpfs, for the EXIT trap.
PID2=""
SMALL=""
cleanup_more() {
	stop_pid "$PID2"
	[[ -n $SMALL ]] && umount "$SMALL" 2>/dev/null
}
# shellcheck source-path=SCRIPTDIR source=api_lib.sh
. "$(dirname "$0")/api_lib.sh"

start_main

# ------------------------------------------------------------------ basics
req GET /v1/ping
expect 200 '"version":1' "ping"
req POST /v1/ping
expect_err 405 "" "ping with POST is 405"
req GET /v1/nothing
expect_err 404 "" "unknown route is 404"

# ------------------------------------------------------------ bundles
req GET /v1/ping
expect 200 '"bundle":true' "ping announces bundles"
printf 'bundled one\n' >"$T/b1"
printf 'bundled two, longer\n' >"$T/b2"
{ frame "$T/b1"; frame "$T/b2"; } >"$T/bframes"
B1=$(id_of "$T/b1")
B2=$(id_of "$T/b2")
bundle "{\"ops\":[{\"op\":\"file\",\"path\":\"bun/a\",\"mode\":420,\"mtime\":[1700000000,5],\"size\":12,\"chunks\":[[\"$B1\",12]],\"seq\":7},{\"op\":\"file\",\"path\":\"bun/b\",\"mode\":384,\"mtime\":[1700000001,6],\"size\":20,\"chunks\":[[\"$B2\",20]]},{\"op\":\"file\",\"path\":\"bun/c\",\"mode\":420,\"mtime\":[1700000000,0],\"size\":5,\"chunks\":[[\"$(id_of "$T/b1" | tr 0-9a-f 1-9a-f0)\",5]]}]}" "$T/bframes"
zstd -q -c "$T/bundle" >"$T/bundle.zst"
req POST /v1/bundle -H 'Content-Type: application/octet-stream' -H 'Content-Encoding: zstd' \
	--data-binary "@$T/bundle.zst"
expect 200 '"results":[{"ok":true},{"ok":true},{"ok":false' "bundle (zstd): two files applied, one refused"
expect 200 '"status":409' "bundle: the op lacking a chunk gets its own 409"
ok "bundled file a exact" cmp -s "$T/b1" "$D/bun/a"
ok "bundled file b exact, mode 0600" test "$(cat "$D/bun/b")" = "bundled two, longer" -a \
	"$(stat -c %a "$D/bun/b")" = 600
ok "bundled file b mtime" test "$(stat -c %Y.%y "$D/bun/b" | cut -c1-10)" = 1700000001
ok "refused bundled op left nothing" test ! -e "$D/bun/c"
find "$D" -printf '%p %m %s %T@\n' | sort >"$T/dir.before.bundle"
post_bundle '{"ops":[{"op":"delete","path":"bun"}' "$T/bframes"
expect_err 400 EINVAL "bundle with malformed json is 400"
post_bundle '{"ops":[{"op":"delete","path":"bun"},{"op":"delete","path":"../x"}]}' /dev/null
expect_err 400 "" "bundle with one bad op is 400"
bundle '{"ops":[{"op":"delete","path":"bun"}]}' "$T/bframes"
head -c -3 "$T/bundle" >"$T/bundle.cut"
req POST /v1/bundle --data-binary "@$T/bundle.cut"
expect_err 400 EBADMSG "bundle cut inside a frame is 400"
{ cat "$T/bundle"; id_of "$T/b2" | xxd -r -p; u32 12; u32 12; cat "$T/b1"; } >"$T/bundle.bad"
req POST /v1/bundle --data-binary "@$T/bundle.bad"
expect_err 400 EBADMSG "bundle with a chunk not matching its id is 400"
req POST /v1/bundle -H 'Content-Encoding: gzip' --data-binary "@$T/bundle"
expect_err 415 "" "bundle in an unknown content-encoding is 415"
req POST /v1/bundle -H 'Content-Encoding: zstd' --data-binary "@$T/bundle"
expect_err 400 EBADMSG "bundle announced as zstd but plain is 400"
find "$D" -printf '%p %m %s %T@\n' | sort >"$T/dir.after.bundle"
ok "refused bundles applied nothing" cmp -s "$T/dir.before.bundle" "$T/dir.after.bundle"
# Compression streams (X-Mirror-Stream): a stream starts at position 0;
# a position the connection's stream is not at is a 409 with nothing
# applied; a malformed header, or one on a plain body, is a 400.
req GET /v1/ping
expect 200 '"stream":true' "ping announces compression streams"
bundle '{"ops":[{"op":"mkdir","path":"streamed","mode":493,"mtime":[1700000000,0]}]}' /dev/null
zstd -q -c "$T/bundle" >"$T/bundle.zst"
req POST /v1/bundle -H 'Content-Encoding: zstd' -H 'X-Mirror-Stream: 00000000000000aa-0' \
	--data-binary "@$T/bundle.zst"
expect 200 '"results":[{"ok":true}]' "bundle starting a compression stream"
ok "streamed bundle applied" test -d "$D/streamed"
bundle '{"ops":[{"op":"delete","path":"streamed"}]}' /dev/null
zstd -q -c "$T/bundle" >"$T/bundle.zst"
req POST /v1/bundle -H 'Content-Encoding: zstd' -H 'X-Mirror-Stream: 00000000000000aa-7' \
	--data-binary "@$T/bundle.zst"
expect_err 409 ESTALE "bundle out of step with its stream is 409"
ok "out-of-step bundle applied nothing" test -d "$D/streamed"
req POST /v1/bundle -H 'Content-Encoding: zstd' -H 'X-Mirror-Stream: aa-0' \
	--data-binary "@$T/bundle.zst"
expect_err 400 EINVAL "bundle with a malformed x-mirror-stream is 400"
req POST /v1/bundle -H 'X-Mirror-Stream: 00000000000000aa-0' --data-binary "@$T/bundle"
expect_err 400 EINVAL "x-mirror-stream on a plain body is 400"
ok "refused stream bundles applied nothing" test -d "$D/streamed"
rmdir "$D/streamed"

# Refs: short frames (no ids, mirrord hashes the bytes), named by position
# in the ops. A ref to no frame, or to one of another length, is a 400
# with nothing applied; refs outside a bundle with "refs" are malformed.
sframe() { # FILE: a short frame
	u32 "$(stat -c %s "$1")"
	u32 "$(stat -c %s "$1")"
	cat "$1"
}
req GET /v1/ping
expect 200 '"refs":true' "ping announces refs"
{ sframe "$T/b1"; sframe "$T/b2"; } >"$T/sframes"
find "$D" -printf '%p %m %s %T@\n' | sort >"$T/dir.before.refs"
post_bundle '{"refs":true,"ops":[{"op":"file","path":"refs/a","mode":420,"mtime":[1700000000,0],"size":12,"chunks":[[0,12]]},{"op":"file","path":"refs/b","mode":420,"mtime":[1700000000,0],"size":32,"chunks":[[1,20],[0,12]]},{"op":"file","path":"refs/c","mode":420,"mtime":[1700000000,0],"size":12,"chunks":[[2,12]]}]}' "$T/sframes"
expect_err 400 EINVAL "bundle with a ref to a missing frame is 400"
post_bundle '{"refs":true,"ops":[{"op":"file","path":"refs/a","mode":420,"mtime":[1700000000,0],"size":20,"chunks":[[0,20]]}]}' "$T/sframes"
expect_err 400 EINVAL "bundle with a ref to a frame of another length is 400"
post_bundle '{"refs":"yes","ops":[{"op":"delete","path":"bun"}]}' /dev/null
expect_err 400 EINVAL "bundle with malformed refs is 400"
post_bundle '{"ops":[{"op":"file","path":"refs/a","mode":420,"mtime":[1700000000,0],"size":12,"chunks":[[0,12]]}]}' "$T/bframes"
expect_err 400 EINVAL "a ref in a bundle without refs is 400"
req POST /v1/op -H 'Content-Type: application/json' \
	--data '{"op":"file","path":"refs/a","mode":420,"mtime":[1700000000,0],"size":12,"chunks":[[0,12]]}'
expect_err 400 EINVAL "a ref in POST /v1/op is 400"
find "$D" -printf '%p %m %s %T@\n' | sort >"$T/dir.after.refs"
ok "refused refs bundles applied nothing" cmp -s "$T/dir.before.refs" "$T/dir.after.refs"
bundle '{"refs":true,"ops":[{"op":"file","path":"refs/a","mode":420,"mtime":[1700000000,0],"size":12,"chunks":[[0,12]]},{"op":"file","path":"refs/b","mode":420,"mtime":[1700000000,0],"size":32,"chunks":[[1,20],[0,12]]},{"op":"file","path":"refs/c","mode":420,"mtime":[1700000000,0],"size":20,"chunks":[["'"$B2"'",20]]}]}' "$T/sframes"
zstd -q -c "$T/bundle" >"$T/bundle.zst"
req POST /v1/bundle -H 'Content-Encoding: zstd' --data-binary "@$T/bundle.zst"
expect 200 '"results":[{"ok":true},{"ok":true},{"ok":true}]' "bundle with refs and short frames"
ok "file named by ref exact" cmp -s "$T/b1" "$D/refs/a"
ok "file of two refs exact" test "$(cat "$D/refs/b")" = "$(cat "$T/b2" "$T/b1")"
ok "file by id beside refs exact" cmp -s "$T/b2" "$D/refs/c"
rm -r "$D/refs"
# brief: a bundle whose ops were all applied is answered with their count;
# one with a refused op gets the list.
req GET /v1/ping
expect 200 '"brief":true' "ping announces brief answers"
post_bundle '{"brief":true,"ops":[{"op":"mkdir","path":"brief","mode":493,"mtime":[1700000000,0]},{"op":"mkdir","path":"brief/x","mode":493,"mtime":[1700000000,0]}]}' /dev/null
expect 200 '{"ok":true,"stored":0,"applied":2}' "brief answer to a bundle all applied"
ok "brief bundle applied" test -d "$D/brief/x"
post_bundle '{"brief":true,"ops":[{"op":"mkdir","path":"brief/y","mode":493,"mtime":[1700000000,0]},{"op":"meta","path":"brief/none","type":"d","mode":493,"mtime":[1700000000,0]}]}' /dev/null
expect 200 '"results":[{"ok":true},{"ok":false' "a brief bundle with a refused op lists the results"
post_bundle '{"brief":1,"ops":[{"op":"delete","path":"brief"}]}' /dev/null
expect_err 400 EINVAL "bundle with malformed brief is 400"
ok "malformed brief bundle applied nothing" test -d "$D/brief/y"
rm -r "$D/brief"
# A bundle of no ops ("bare"): its chunks go to the store, for a later
# commit (a large file's chunks sent in the compression stream).
req GET /v1/ping
expect 200 '"bare":true' "ping announces bundles without ops"
head -c 3000 /dev/urandom | base64 >"$T/b3"
B3=$(id_of "$T/b3")
L3=$(stat -c %s "$T/b3")
BARE_OP="{\"op\":\"file\",\"path\":\"bare/f\",\"mode\":420,\"mtime\":[1700000000,0],\"size\":$L3,\"chunks\":[[\"$B3\",$L3]]}"
op "$BARE_OP"
expect_err 409 "" "commit of a chunk never sent is 409"
frame "$T/b3" >"$T/b3frame"
bundle '{"ops":[]}' "$T/b3frame"
zstd -q -c "$T/bundle" >"$T/bundle.zst"
req POST /v1/bundle -H 'Content-Encoding: zstd' --data-binary "@$T/bundle.zst"
expect 200 '"stored":1,"results":[]' "bundle without ops stores its chunk"
op "$BARE_OP"
expect 200 '"ok":true' "commit of the chunk a bare bundle stored"
ok "file from a bare bundle's chunk exact" cmp -s "$T/b3" "$D/bare/f"
# JSON bodies of /v1/op and /v1/chunks/query may be zstd ("zjson"): one
# frame, its size declared or not, within the route's cap.
req GET /v1/ping
expect 200 '"zjson":true' "ping announces zstd json bodies"
printf '%s' "${BARE_OP/bare\/f/bare\/g}" >"$T/op.json"
zstd -q -c "$T/op.json" >"$T/op.zst"
req POST /v1/op -H 'Content-Encoding: zstd' --data-binary "@$T/op.zst"
expect 200 '"ok":true' "zstd-encoded op"
ok "file from a zstd-encoded op exact" cmp -s "$T/b3" "$D/bare/g"
printf '%s' "${BARE_OP/bare\/f/bare\/h}" | zstd -q -c >"$T/op.nosize"
req POST /v1/op -H 'Content-Encoding: zstd' --data-binary "@$T/op.nosize"
expect 200 '"ok":true' "zstd-encoded op without its size in the frame"
ok "file from a zstd op without size exact" cmp -s "$T/b3" "$D/bare/h"
printf '{"ids":["%s","%s"]}' "$B3" "$(id_of "$T/b3" | tr 0-9a-f 1-9a-f0)" | zstd -q -c >"$T/q.zst"
req POST /v1/chunks/query -H 'Content-Encoding: zstd' --data-binary "@$T/q.zst"
expect 200 '"missing":[1]' "zstd-encoded query"
head -c 100 /dev/urandom >"$T/notzstd"
req POST /v1/op -H 'Content-Encoding: zstd' --data-binary "@$T/notzstd"
expect_err 400 EBADMSG "op body that is not zstd is 400"
printf '%s' "$BARE_OP" | zstd -q -c | head -c -4 >"$T/op.cut"
req POST /v1/op -H 'Content-Encoding: zstd' --data-binary "@$T/op.cut"
expect_err 400 EBADMSG "zstd op body cut short is 400"
{ cat "$T/op.zst" "$T/op.zst"; } >"$T/op.two"
req POST /v1/op -H 'Content-Encoding: zstd' --data-binary "@$T/op.two"
expect_err 400 EBADMSG "zstd op body of two frames is 400"
head -c $((65 << 20)) /dev/zero | zstd -q -c >"$T/op.bomb"
req POST /v1/op -H 'Content-Encoding: zstd' --data-binary "@$T/op.bomb"
expect_err 413 EMSGSIZE "zstd op body over the cap once decoded is 413"
req POST /v1/op -H 'Content-Encoding: gzip' --data-binary "@$T/op.zst"
expect_err 415 "" "op in an unknown content-encoding is 415"
# "patch": a chunk mirrord lacks is built from its copy of the file at
# the same offset with the patch laid over, used only if it hashes right.
req GET /v1/ping
expect 200 '"patch":true' "ping announces patches"
{ head -c 10 "$T/b3"; printf 'WXYZ'; tail -c +15 "$T/b3"; } >"$T/b3p"
B3P=$(id_of "$T/b3p")
op "${BARE_OP/bare\/f/bare\/p}"
expect 200 '"ok":true' "a copy to patch"
pop() { # PATCH-JSON: commit of b3p at bare/p with that patch
	op "{\"op\":\"file\",\"path\":\"bare/p\",\"mode\":420,\"mtime\":[1700000000,0],\"size\":$L3,\"chunks\":[[\"$B3P\",$L3]],\"patch\":$1}"
}
pop '[[10,"V1hZWQ=="]]' # WXYY: not the chunk
expect_err 409 "" "a patch that does not make the chunk is 409"
[[ $BODY == *'"missing":[0]'* ]] || { echo "FAIL: $NAME: wrong patch: $BODY" >&2; FAILS=$((FAILS + 1)); }
ok "wrong patch changed nothing" cmp -s "$T/b3" "$D/bare/p"
pop '[[12,"WVo="],[10,"V1g="]]'
expect_err 400 EINVAL "unsorted patches are 400"
pop "[[$((L3 - 1)),\"V1g=\"]]"
expect_err 400 EINVAL "a patch past the size is 400"
pop '[[10,"V1h*Wg=="]]'
expect_err 400 EINVAL "a patch that is not base64 is 400"
ok "refused patches changed nothing" cmp -s "$T/b3" "$D/bare/p"
pop '[[10,"V1g="],[12,"WVo="]]'
expect 200 '"ok":true' "commit built with patches"
ok "patched file exact" cmp -s "$T/b3p" "$D/bare/p"
# bare/p held the copy's chunk last; bare/f still holds it.
req POST /v1/chunks/query --data-binary "{\"ids\":[\"$B3\"]}"
expect 200 '"missing":[]' "a chunk stays known while another file has it"
# "move" and POST /v1/sig: the client gets block signatures of a range of
# the server's file and names the blocks it found in the new version.
req GET /v1/ping
expect 200 '"move":true' "ping announces moves"
LP=$(stat -c %s "$T/b3p")
sig() { req POST /v1/sig -H 'Content-Type: application/json' --data-binary "$1"; }
sig "{\"path\":\"bare/p\",\"block\":512,\"ranges\":[[0,$LP],[100,600]]}"
expect 200 '"block":512' "signatures of a file"
n=$(grep -o '"sigs":\["[^"]*"' <<<"$BODY" | cut -d'"' -f4 | base64 -d | wc -c)
ok "one 12-byte signature per whole block ($n bytes)" test "$n" -eq $((LP / 512 * 12))
ok "the second range: one block" test "$(grep -o '","[^"]*"' <<<"$BODY" | cut -d'"' -f3 | base64 -d | wc -c)" -eq 12
sig '{"path":"bare/none","block":512,"ranges":[[0,100]]}'
expect_err 404 ENOENT "signatures of a file that is not there are 404"
sig '{"path":"../outside","block":512,"ranges":[[0,100]]}'
expect_err 400 EINVAL "signatures of a path outside are 400"
sig '{"path":"bare/p","block":32,"ranges":[[0,100]]}'
expect_err 400 EINVAL "a block under the minimum is 400"
sig '{"path":"bare/p","block":512,"ranges":[[0,-1]]}'
expect_err 400 EINVAL "a negative range is 400"
sig "{\"path\":\"bare/p\",\"block\":64,\"ranges\":[$(printf '[0,64],%.0s' {1..64})[0,64]]}"
expect_err 413 E2BIG "65 ranges are 413"
sig '{"path":"bare/p","block":64,"ranges":[[0,1048640]]}'
expect_err 413 E2BIG "16,385 blocks are 413"
sig '{"path":"bare/p","block":512}'
expect_err 400 EINVAL "signatures without ranges are 400"
{ head -c 100 "$T/b3p"; printf 'INSERTED'; tail -c +101 "$T/b3p"; } >"$T/b3m"
B3M=$(id_of "$T/b3m")
mop() { # MOVES: commit of b3m at bare/p with "INSERTED" as a patch
	op "{\"op\":\"file\",\"path\":\"bare/p\",\"mode\":420,\"mtime\":[1700000000,0],\"size\":$((LP + 8)),\"chunks\":[[\"$B3M\",$((LP + 8))]],\"patch\":[[100,\"SU5TRVJURUQ=\"]],\"move\":$1}"
}
mop "[[0,100,0],[108,$((LP - 100)),101]]"
expect_err 409 "" "a wrong move is 409"
ok "a wrong move changed nothing" cmp -s "$T/b3p" "$D/bare/p"
mop "[[0,100,0],[108,$((LP - 100)),$LP]]"
expect_err 409 "" "a move past the end of the base is 409"
mop "[[0,100,0],[108,$((LP - 99)),100]]"
expect_err 400 EINVAL "a move past the size is 400"
mop "[[0,100,0],[108,$((LP - 100)),100]]"
expect 200 '"ok":true' "commit built with moves"
ok "file built with moves exact" cmp -s "$T/b3m" "$D/bare/p"
rm -r "$D/bare"

post_bundle '{"ops":[{"op":"delete","path":"bun"}]}' /dev/null
expect 200 '"results":[{"ok":true}]' "bundle without chunks"
ok "bundled delete applied" test ! -e "$D/bun"

# ------------------------------------------------------------ file upload
printf 'hello, mirror\n' >"$T/c1"
head -c 100000 /dev/urandom >"$T/c2"
ID1=$(id_of "$T/c1")
ID2=$(id_of "$T/c2")
req POST /v1/chunks/query --data-binary "{\"ids\":[\"$ID1\",\"$ID2\"]}"
expect 200 '"missing":[0,1]' "query: both chunks missing"
{ frame "$T/c1"; frame "$T/c2"; } >"$T/frames"
upload "$T/frames"
expect 200 '"stored":2' "upload two chunks"
req POST /v1/chunks/query --data-binary "{\"ids\":[\"$ID1\",\"$ID2\"]}"
expect 200 '"missing":[]' "query: nothing missing after upload"

op "{\"op\":\"file\",\"path\":\"sub/dir/f.txt\",\"mode\":416,\"mtime\":[1700000000,123456789],\"size\":100014,\"chunks\":[[\"$ID1\",14],[\"$ID2\",100000]]}"
expect 200 '"ok":true' "file commit"
cat "$T/c1" "$T/c2" >"$T/want"
ok "file content exact" cmp -s "$T/want" "$D/sub/dir/f.txt"
ok "file mode 0640" test "$(stat -c %a "$D/sub/dir/f.txt")" = 640
ok "file mtime with ns" test "$(stat -c %y "$D/sub/dir/f.txt")" = "2023-11-14 22:13:20.123456789 +0000"
ok "missing parents made 0755" test "$(stat -c %a "$D/sub/dir")" = 755

# Chunks are reused from published files (the store copy is gone):
# the bytes come from sub/dir/f.txt.
op "{\"op\":\"file\",\"path\":\"copy\",\"mode\":420,\"mtime\":[1700000000,0],\"size\":100000,\"chunks\":[[\"$ID2\",100000]]}"
expect 200 '"ok":true' "file from an already published chunk"
ok "reused chunk content" cmp -s "$T/c2" "$D/copy"
ok "store copies dropped once published" test ! -e "$S/chunks/${ID2:0:2}/$ID2"

# A read-only file is replaced, and pmtime sets the parent's mtime.
op "{\"op\":\"file\",\"path\":\"sub/dir/f.txt\",\"mode\":292,\"mtime\":[1700000001,0],\"size\":14,\"chunks\":[[\"$ID1\",14]]}"
expect 200 '"ok":true' "file commit 0444"
op "{\"op\":\"file\",\"path\":\"sub/dir/f.txt\",\"mode\":420,\"mtime\":[1700000002,0],\"size\":14,\"chunks\":[[\"$ID1\",14]],\"pmtime\":[1600000000,42]}"
expect 200 '"ok":true' "replace the read-only file"
ok "replaced file mode 0644" test "$(stat -c %a "$D/sub/dir/f.txt")" = 644
ok "pmtime applied to the parent" test "$(stat -c %y "$D/sub/dir")" = "2020-09-13 12:26:40.000000042 +0000"

# Empty file, and a chunk nobody uploaded (409 with its index).
op '{"op":"file","path":"empty","mode":420,"mtime":[1700000000,0],"size":0,"chunks":[]}'
expect 200 '"ok":true' "empty file"
ok "empty file exists" test -f "$D/empty" -a ! -s "$D/empty"
NOID=$(printf 'never uploaded' | b2sum -l 256 | cut -d' ' -f1)
op "{\"op\":\"file\",\"path\":\"m\",\"mode\":420,\"mtime\":[1700000000,0],\"size\":28,\"chunks\":[[\"$ID1\",14],[\"$NOID\",14]]}"
expect_err 409 "" "missing chunk is 409"
expect 409 '"missing":[1]' "409 names the missing index"
ok "nothing published for a 409" test ! -e "$D/m"

# Compressed frame.
if command -v zstd >/dev/null; then
	yes "compressible line" | head -c 50000 >"$T/c3"
	ID3=$(id_of "$T/c3")
	frame_zstd "$T/c3" >"$T/zframe"
	upload "$T/zframe"
	expect 200 '"stored":1' "upload a zstd frame"
	op "{\"op\":\"file\",\"path\":\"z\",\"mode\":420,\"mtime\":[1700000000,0],\"size\":50000,\"chunks\":[[\"$ID3\",50000]]}"
	expect 200 '"ok":true' "file from a zstd chunk"
	ok "zstd chunk content" cmp -s "$T/c3" "$D/z"
fi


# ------------------------------------------------------------------ ops
op '{"op":"mkdir","path":"d1/d2","mode":448,"mtime":[1600000000,5]}'
expect 200 '"ok":true' "mkdir"
ok "mkdir mode 0700" test "$(stat -c %a "$D/d1/d2")" = 700
ok "mkdir mtime" test "$(stat -c %y "$D/d1/d2")" = "2020-09-13 12:26:40.000000005 +0000"
op '{"op":"mkdir","path":"empty","mode":493,"mtime":[1600000000,0]}'
expect 200 '"ok":true' "mkdir over a file"
ok "file replaced by a folder" test -d "$D/empty"

op '{"op":"symlink","path":"d1/ln","target":"../nowhere/at all","mtime":[1500000000,7]}'
expect 200 '"ok":true' "symlink"
ok "symlink target verbatim" test "$(readlink "$D/d1/ln")" = "../nowhere/at all"
ok "symlink mtime" test "$(stat -c %y "$D/d1/ln")" = "2017-07-14 02:40:00.000000007 +0000"

op '{"op":"meta","path":"sub/dir/f.txt","type":"f","mode":384,"mtime":[1400000000,1]}'
expect 200 '"ok":true' "meta on a file"
ok "meta mode" test "$(stat -c %a "$D/sub/dir/f.txt")" = 600
ok "meta mtime" test "$(stat -c %y "$D/sub/dir/f.txt")" = "2014-05-13 16:53:20.000000001 +0000"
op '{"op":"meta","path":"sub/dir/f.txt","type":"d","mode":384,"mtime":[1400000000,1]}'
expect_err 404 "" "meta with the wrong type is 404"
op '{"op":"meta","path":"nothing/here","type":"f","mode":384,"mtime":[1400000000,1]}'
expect_err 404 "" "meta on a missing path is 404"

op '{"op":"rename","from":"copy","to":"d1/moved","flags":""}' 10
expect 200 '"ok":true' "rename"
ok "rename moved the file" test -f "$D/d1/moved" -a ! -e "$D/copy"
op '{"op":"rename","from":"copy","to":"d1/moved","flags":""}' 10
expect 200 '"replayed":true' "the same seq again is a replay"
op '{"op":"rename","from":"copy","to":"d1/moved2","flags":""}' 11
expect_err 404 "" "rename of a missing source is 404"
op '{"op":"rename","from":"d1/moved","to":"z","flags":"noreplace"}' 12
expect_err 404 "EEXIST" "noreplace onto an existing file is refused"
op '{"op":"rename","from":"d1/moved","to":"z","flags":"exchange"}' 13
expect 200 '"ok":true' "exchange"
ok "exchange swapped the files" cmp -s "$T/c2" "$D/z"
op '{"op":"rename","from":"d1/moved","to":"z","flags":"exchange"}' 13
expect 200 '"replayed":true' "a replayed exchange is not applied twice"
ok "replayed exchange left the files alone" cmp -s "$T/c2" "$D/z"
op '{"op":"rename","from":"sub","to":"d1/d2/sub2","flags":""}' 14
expect 200 '"ok":true' "rename a folder"
ok "folder moved with its content" test -f "$D/d1/d2/sub2/dir/f.txt"

op '{"op":"delete","path":"d1/d2"}'
expect 200 '"ok":true' "delete a tree"
ok "tree gone" test ! -e "$D/d1/d2"
op '{"op":"delete","path":"d1/d2"}'
expect 200 '"ok":true' "delete of a missing path succeeds"
op '{"op":"delete","path":"z/under/a/file"}'
expect 200 '"ok":true' "delete beneath a file succeeds"

# -------------------------------------------------------------- refusals
for p in '../x' '/etc/x' 'a/../../x' 'a//b' '.'; do
	op "{\"op\":\"mkdir\",\"path\":\"$p\",\"mode\":493,\"mtime\":[1,0]}"
	expect_err 400 "" "bad path '$p' is 400"
done
ok "nothing created by bad paths" test ! -e "$T/x" -a ! -e /etc/x -a ! -e "$D/a"

# Symlink escape: evil -> $T/outside, then ops through it.
op "{\"op\":\"symlink\",\"path\":\"evil\",\"target\":\"$T/outside\",\"mtime\":[1,0]}"
expect 200 '"ok":true' "symlink pointing outside"
op '{"op":"delete","path":"evil/keep"}'
expect 200 '"ok":true' "delete through a symlink is a no-op"
op '{"op":"meta","path":"evil/keep","type":"f","mode":511,"mtime":[1,0]}'
expect_err 404 "" "meta through a symlink is 404"
op '{"op":"rename","from":"evil/keep","to":"stolen","flags":""}' 20
expect_err 404 "" "rename from beneath a symlink is 404"
op "{\"op\":\"file\",\"path\":\"evil/x\",\"mode\":511,\"mtime\":[1,0],\"size\":14,\"chunks\":[[\"$ID1\",14]]}"
if [[ $CODE == 200 ]]; then
	ok "file through a symlink landed inside DIR" test -f "$D/evil/x" -a ! -L "$D/evil"
fi
ok "outside untouched: no new file" test ! -e "$T/outside/x"
ok "outside untouched: keep intact" test "$(cat "$T/outside/keep")" = untouched
ok "outside untouched: mode" test "$(stat -c %a "$T/outside/keep")" = 644
ok "outside untouched: one entry" test "$(ls -A "$T/outside" | wc -l)" = 1

# Wrong chunk bytes: 400, nothing stored.
printf 'honest bytes\n' >"$T/c4"
{ id_of "$T/c4" | xxd -r -p; u32 13; u32 13; printf 'forged bytes\n'; } >"$T/bad"
upload "$T/bad"
expect_err 400 "EBADMSG" "chunk with wrong bytes is 400"
req POST /v1/chunks/query --data-binary "{\"ids\":[\"$(id_of "$T/c4")\"]}"
expect 200 '"missing":[0]' "the forged chunk was not stored"
head -c 30 "$T/frames" >"$T/trunc"
upload "$T/trunc"
expect_err 400 "" "truncated frame is 400"

# Oversized bodies: 413 (declared length over the cap).
head -c $((64 * 1024 * 1024 + 1)) /dev/zero >"$T/huge"
req POST /v1/op --data-binary "@$T/huge"
expect_err 413 "" "op body over 64 MiB is 413"
req POST /v1/chunks/query --data-binary "@$T/huge"
expect_err 413 "" "query body over its cap is 413"
rm -f "$T/huge"

op '{"op":"mkdir","path":"j",'
expect_err 400 "" "malformed JSON is 400"
op '{"op":"chmod","path":"j","mode":493}'
expect_err 400 "" "unknown op is 400"
op '{"op":"mkdir","path":"j","mode":493,"mtime":[1,0],"x":[[[[[[[[[[1]]]]]]]]]]}'
expect_err 400 "" "JSON nested too deeply is 400"
op '{"op":"mkdir","path":"j","mode":493,"mtime":[1,0]}' notanumber
expect_err 400 "" "malformed X-Mirror-Seq is 400"
ok "nothing created by refused ops" test ! -e "$D/j"

# -------------------------------------------------------------- manifest
req GET /v1/manifest
expect 200 '{"p":"","t":"d"' "manifest starts with the root"
ok "manifest lists the file with size and mtime" \
	grep -qF '{"p":"z","t":"f","m":420,"s":100000,"mt":[1700000000,0]}' "$T/body"
ok "manifest lists the symlink target" grep -qF '"p":"d1/ln","t":"l","m":511,"mt":[1500000000,7],"l":"../nowhere/at all"}' "$T/body"
ok "manifest lists folders" grep -qF '"p":"d1","t":"d"' "$T/body"
ok "manifest line count = entries in DIR" \
	test "$(wc -l <"$T/body")" = "$(find "$D" | wc -l)"
req GET "/v1/manifest?path=d1"
expect 200 '{"p":"d1","t":"d"' "sub-manifest starts with its root"
ok "sub-manifest stays in its subtree" test -z "$(grep -v '"p":"d1' "$T/body")"
req GET "/v1/manifest?path=nothing"
expect 200 "" "manifest of a missing path is 200"
ok "manifest of a missing path is empty" test -z "$BODY"
req GET "/v1/manifest?path=evil"
ok "manifest does not follow a symlink" test -z "$(grep outside "$T/body")"
req GET "/v1/manifest?path=../x"
expect_err 400 "" "manifest of a bad path is 400"

# ------------------------------------------------------------ state dir
ok "no temporaries left in tmp/" test -z "$(ls -A "$S/tmp")"
ok "nothing of mirrord's inside DIR" test -z "$(find "$D" -name '*.mirrord' -o -name 'f.*.*')"

# ------------------------------------------------------------- ENOSPC
# On a 1 MiB tmpfs (root only): the third copy of a 400 kB file does not
# fit: 507, and no temporary is left behind.
if [[ $(id -u) == 0 ]] && mkdir "$T/small" && mount -t tmpfs -o size=1m tmpfs "$T/small"; then
	SMALL=$T/small
	mkdir "$SMALL/d"
	start "$SMALL/d" "$SMALL/state" "$T/port2" "$T/mirrord2.log"
	PID2=$STARTED_PID
	MAIN_URL=$URL
	URL=http://127.0.0.1:$STARTED_PORT
	head -c 400000 /dev/urandom >"$T/c5"
	ID5=$(id_of "$T/c5")
	frame "$T/c5" >"$T/frame5"
	upload "$T/frame5"
	expect 200 '"stored":1' "small fs: upload"
	for n in 1 2; do
		op "{\"op\":\"file\",\"path\":\"f$n\",\"mode\":420,\"mtime\":[1,0],\"size\":400000,\"chunks\":[[\"$ID5\",400000]]}"
		expect 200 '"ok":true' "small fs: copy $n fits"
	done
	op "{\"op\":\"file\",\"path\":\"f3\",\"mode\":420,\"mtime\":[1,0],\"size\":400000,\"chunks\":[[\"$ID5\",400000]]}"
	expect_err 507 "ENOSPC" "small fs: a full disk is 507"
	ok "small fs: nothing half-written visible" test ! -e "$SMALL/d/f3"
	ok "small fs: no temporary left" test -z "$(ls -A "$SMALL/state/tmp")"
	stop_pid "$PID2"
	PID2=""
	umount "$SMALL" && SMALL=""
	URL=$MAIN_URL
else
	echo "skip: ENOSPC check needs root and tmpfs"
fi

# ------------------------------------------------------------ command line
find "$D" -printf '%p %m %s %T@\n' | sort >"$T/dir.before"
for args in "--state-dir $D/inside" "--state-dir $D" "--listen nonsense" \
	"--listen 127.0.0.1:99999" "--log-level loud" "--fail-rate 0" "--bogus"; do
	# shellcheck disable=SC2086
	timeout 10 "$MIRRORD" "$D" --listen 127.0.0.1:0 --state-dir "$T/s3" "${ROOT[@]}" $args \
		>/dev/null 2>"$T/err"
	rc=$?
	ok "refused: mirrord $args (status $rc: $(head -n 1 "$T/err"))" test "$rc" = 2
done
timeout 10 "$MIRRORD" "$T/outside/keep" --listen 127.0.0.1:0 "${ROOT[@]}" >/dev/null 2>"$T/err"
ok "refused: DIR is a file (status $?)" grep -q "$T/outside/keep" "$T/err"
timeout 10 "$MIRRORD" "$D" --listen "127.0.0.1:${URL##*:}" --state-dir "$T/s4" "${ROOT[@]}" >/dev/null 2>"$T/err"
ok "refused: port in use (status $?)" grep -q "${URL##*:}" "$T/err"
find "$D" -printf '%p %m %s %T@\n' | sort >"$T/dir.after"
ok "refused command lines left DIR alone" cmp -s "$T/dir.before" "$T/dir.after"

# Clean stop on SIGTERM, then PASS or FAIL.
finish
