#!/bin/bash
# t_dedup: renames and copies send no file data, counted independently of
# both programs by a relay on the TCP connection (bench/wire_relay.c).
#
#   - a 50 MiB file copied to a new name through the mount: the upload of
#     the copy is a commit naming the original's chunk list, well under
#     64 KiB on the wire (the file data would be 50 MiB);
#   - a folder of 200 files of 10 KiB renamed: one rename, under 64 KiB
#     (the data would be 2 MiB);
#   - 4 KiB overwritten in the middle of the 50 MiB file: a patch of the
#     4 KiB, under 16 KiB (before patches: the chunks around it, 4 to
#     64 KiB each, most often one: 21,737 and 40,606 B in two runs);
#   - 8 blocks of 4 KiB overwritten across it at once: the commit carries
#     the 32 KiB that changed as patches (mirrord lays them over its copy):
#     under 48 KiB. Sent as the 8 or more chunks around them, with one
#     list edit from the first to the last, they cost 390-426 KB;
#   - the 50 MiB file renamed, then 4 KiB of it overwritten: the record
#     of what was sent follows the rename, so the edit is a patch against
#     the list mirrord moved: under 16 KiB (with the record forgotten at the
#     rename, the whole list of 3,200 chunks went again: 227,886 B);
#   - a 120 MiB file saved as an editor does (a new copy with 4 KiB changed,
#     renamed over the old one): the copy's list goes as a delta against
#     the file whose list shares its least chunk id (record.h, sketch):
#     under 192 KiB, the changed chunk included (with its whole list of
#     about 7,700 chunks: 396,380 B); the same for a new version written
#     next to the old one under another name (282,272 B before);
#   - a 3 MiB text file made of 16 variants of one 200 KiB block of base64
#     (every 97th character differs, so no chunk is a duplicate): its
#     chunks compressed one by one would cost about 2.3 MiB (base64 packs
#     6 bits in 8), in the compression stream each variant is a near copy
#     of the one before: under 1 MiB;
#   - 4 MiB of bytes of 100 values at random (each chunk 16 % smaller
#     alone, no more with context): still sent compressed, chunk by
#     chunk: under 7/8 of its size.
#
# timeout: 600

. "$(dirname "$0")/lib.sh"
need_mount

t_setup
M=$T/mnt
cc -O2 -Wall -Wextra -Werror -o "$T/relay" "$T_ROOT/bench/wire_relay.c" ||
	fail "cannot build the relay"
start_mirrord
"$T/relay" "$T/relay.port" "$PORT" "$T/relay.count" 2>"$T/relay.log" &
RELAY_PID=$!
T_PIDS+=("$RELAY_PID")
wait_for -m "relay port" test -s "$T/relay.port"
URL=http://127.0.0.1:$(cat "$T/relay.port")
mount_mirrorfs

# bytes_up: client -> server bytes so far, exact (the relay writes its
# totals on SIGUSR1).
bytes_up() {
	rm -f "$T/relay.count"
	kill -USR1 "$RELAY_PID"
	wait_for -m "relay counters" test -s "$T/relay.count"
	read -r up _ <"$T/relay.count"
	echo "$up"
}

# bytes_read: what mirrorfs has read from BACKING to upload, so far.
bytes_read() {
	local v
	v=$(mirror_status --json | tr -d ' \t' | grep -o '"bytes_read":[0-9]*' | cut -d: -f2)
	[[ $v =~ ^[0-9]+$ ]] || fail "no bytes_read in mirrorfs status --json"
	echo "$v"
}

# expect_under WHAT BEFORE LIMIT: the bytes sent since BEFORE stay below LIMIT.
expect_under() {
	local now used
	now=$(bytes_up)
	used=$((now - $2))
	step "$1: $used bytes up"
	((used < $3)) || fail "$1: $used bytes on the wire (limit $3)"
}

step "a 50 MiB file"
head -c $((50 << 20)) /dev/urandom >"$M/big"
sync_mirror
b0=$(bytes_up)
((b0 > 50 << 20)) || fail "the relay saw only $b0 bytes for a 50 MiB upload"

step "copied to a new name"
b0=$(bytes_up)
cp "$M/big" "$M/big-copy"
sync_mirror
expect_under "copy of 50 MiB" "$b0" $((64 << 10))

step "a folder of 200 files renamed"
mkdir "$M/folder"
for i in $(seq 200); do head -c 10240 /dev/urandom >"$M/folder/f$i"; done
sync_mirror
b0=$(bytes_up)
mv "$M/folder" "$M/renamed"
sync_mirror
expect_under "rename of a 2 MiB folder" "$b0" $((64 << 10))

step "100 B appended to each of the 200 files"
head -c 100 /dev/urandom >"$T/line"
b0=$(bytes_up)
for f in "$M"/renamed/f*; do cat "$T/line" >>"$f"; done
sync_mirror
expect_under "100 B appended to 200 files of 10 KiB" "$b0" $((64 << 10))

step "4 KiB overwritten in the middle"
b0=$(bytes_up)
dd if=/dev/urandom of="$M/big" bs=4096 count=1 seek=6400 conv=notrunc status=none
sync_mirror
expect_under "4 KiB overwrite of 50 MiB" "$b0" $((16 << 10))

step "8 blocks of 4 KiB overwritten at once: patches"
head -c $((50 << 20)) "$M/big" >"$T/big.expect"
b0=$(bytes_up)
for blk in 700 1900 3100 4300 5500 7700 9100 11300; do
	dd if=/dev/urandom of="$T/blk" bs=4096 count=1 status=none
	dd if="$T/blk" of="$M/big" bs=4096 seek=$blk conv=notrunc status=none
	dd if="$T/blk" of="$T/big.expect" bs=4096 seek=$blk conv=notrunc status=none
done
sync_mirror
expect_under "8 x 4 KiB overwrites of 50 MiB" "$b0" $((48 << 10))
cmp -s "$T/big.expect" "$T/dir/big" || fail "the patched file differs on the server"

step "renamed, then 4 KiB overwritten"
mv "$M/big" "$M/big2"
sync_mirror
b0=$(bytes_up)
dd if=/dev/urandom of="$M/big2" bs=4096 count=1 seek=3000 conv=notrunc status=none
sync_mirror
expect_under "4 KiB overwrite after a rename" "$b0" $((16 << 10))
cmp -s "$M/big2" "$T/dir/big2" || fail "the renamed and edited file differs on the server"

step "truncated to 20 MiB and a bit"
r0=$(bytes_read)
b0=$(bytes_up)
truncate -s $(((20 << 20) + 12345)) "$M/big2"
sync_mirror
expect_under "truncate of 50 MiB" "$b0" $((4 << 10))
r1=$(bytes_read)
step "truncate: $((r1 - r0)) bytes read again"
((r1 - r0 < 1 << 20)) || fail "the truncate made mirrorfs read $((r1 - r0)) bytes of the file again"
cmp -s "$M/big2" "$T/dir/big2" || fail "the truncated file differs on the server"

step "grown to 30 MiB by truncate, then a hole punched in it"
b0=$(bytes_up)
truncate -s $((30 << 20)) "$M/big2"
sync_mirror
cmp -s "$M/big2" "$T/dir/big2" || fail "the grown file differs on the server"
fallocate -p -o $((5 << 20)) -l $((256 << 10)) "$M/big2"
sync_mirror
cmp -s "$M/big2" "$T/dir/big2" || fail "the file with a hole differs on the server"
# The chunks at the old end and at the hole's edges, half random bytes and
# half zeros, may go whole (43-85 KB in runs): the limit is two of them.
expect_under "truncate up by 10 MiB, then a 256 KiB hole" "$b0" $((192 << 10))

step "100 B inserted in the middle (the file rewritten), then 64 KiB cut"
b0=$(bytes_up)
{ head -c $((15 << 20)) "$M/big2"; head -c 100 /dev/urandom; tail -c +$(((15 << 20) + 1)) "$M/big2"; } >"$T/big2.new"
cp "$T/big2.new" "$M/big2"
sync_mirror
cmp -s "$M/big2" "$T/dir/big2" || fail "the file with an insertion differs on the server"
expect_under "100 B inserted into 30 MiB" "$b0" $((8 << 10))
b0=$(bytes_up)
{ head -c $((7 << 20)) "$M/big2"; tail -c +$(((7 << 20) + 65537)) "$M/big2"; } >"$T/big2.new"
cp "$T/big2.new" "$M/big2"
sync_mirror
cmp -s "$M/big2" "$T/dir/big2" || fail "the file with a cut differs on the server"
expect_under "64 KiB cut out of 30 MiB" "$b0" $((24 << 10))
rm -f "$T/big2.new"

step "a 120 MiB file saved as an editor saves"
head -c $((120 << 20)) /dev/urandom >"$M/doc"
sync_mirror
b0=$(bytes_up)
{ head -c $((60 << 20)) "$M/doc"; head -c 4096 /dev/urandom; tail -c +$(((60 << 20) + 4097)) "$M/doc"; } >"$M/.doc.swp"
mv "$M/.doc.swp" "$M/doc"
sync_mirror
expect_under "editor-style save of 120 MiB" "$b0" $((192 << 10))
cmp -s "$M/doc" "$T/dir/doc" || fail "the saved file differs on the server"

step "a new version next to the old one"
b0=$(bytes_up)
{ head -c $((30 << 20)) "$M/doc"; head -c 4096 /dev/urandom; tail -c +$(((30 << 20) + 4097)) "$M/doc"; } >"$M/doc-v2"
sync_mirror
expect_under "a 120 MiB file's new version under a new name" "$b0" $((192 << 10))
cmp -s "$M/doc-v2" "$T/dir/doc-v2" || fail "the new version differs on the server"
rm "$M/doc" "$M/doc-v2"

step "100 B inserted in the middle of a 100 KiB file"
head -c $((100 << 10)) /dev/urandom >"$M/small"
sync_mirror
b0=$(bytes_up)
{ head -c $((50 << 10)) "$M/small"; head -c 100 /dev/urandom; tail -c +$(((50 << 10) + 1)) "$M/small"; } >"$T/small.new"
cp "$T/small.new" "$M/small"
sync_mirror
cmp -s "$M/small" "$T/dir/small" || fail "the small file with an insertion differs on the server"
expect_under "100 B inserted into 100 KiB" "$b0" $((8 << 10))

step "a large text file whose chunks compress only with context"
head -c 150000 /dev/urandom | base64 -w0 >"$T/block"
awk -v n=16 '{ for (v = 0; v < n; v++) { s = $0; out = ""
	for (i = 1; i <= length(s); i += 97)
		out = out substr(s, i, 96) sprintf("%c", 65 + (v + i) % 26)
	print out } }' "$T/block" >"$T/text"
size=$(stat -c %s "$T/text")
((size > 3000000)) || fail "the text file has only $size bytes"
b0=$(bytes_up)
cp "$T/text" "$M/text"
sync_mirror
expect_under "3 MiB of near-repeating text" "$b0" $((1 << 20))
cmp -s "$T/text" "$T/dir/text" || fail "the text file differs on the server"

step "a weakly compressible file: its chunks go compressed one by one"
# 4 MiB of bytes of 100 values at random (6.6 bits in 8): each chunk
# shrinks by about 16 % alone and no more with context (compress.h's weak
# class, sent as each chunk's level-1 frame).
perl -e 'srand(7); my $s = ""; $s .= chr(int(rand(100))) for 1 .. (4 << 20); print $s' >"$T/weak"
b0=$(bytes_up)
cp "$T/weak" "$M/weak"
sync_mirror
expect_under "4 MiB of weakly compressible bytes" "$b0" $(((4 << 20) * 7 / 8))
cmp -s "$T/weak" "$T/dir/weak" || fail "the weakly compressible file differs on the server"

compare_trees
unmount_mirrorfs
stop_mirrord
t_done
