#!/bin/bash
# t_dedup: renames and copies send no file data, counted independently of
# both programs by a relay on the TCP connection (bench/wire_relay.c).
#
#   - a 50 MiB file copied to a new name through the mount: the upload of
#     the copy is a commit naming the original's chunk list, well under
#     64 KiB on the wire (the file data would be 50 MiB);
#   - a folder of 200 files of 10 KiB renamed: one rename, under 64 KiB
#     (the data would be 2 MiB);
#   - 4 KiB overwritten in the middle of the 50 MiB file: under 128 KiB.
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

step "4 KiB overwritten in the middle"
b0=$(bytes_up)
dd if=/dev/urandom of="$M/big" bs=4096 count=1 seek=6400 conv=notrunc status=none
sync_mirror
expect_under "4 KiB overwrite of 50 MiB" "$b0" $((128 << 10))

compare_trees
unmount_mirrorfs
stop_mirrord
t_done
