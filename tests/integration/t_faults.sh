#!/bin/bash
# t_faults: a flaky server loses nothing and reorders nothing.
#
# mirrord runs with --fail-rate 3 (one request in three answered 503). A
# workload of dependent operations (mkdir then files inside, write then
# rename, rename chains, delete after copy, type changes, a folder renamed
# with queued children) goes through the mount; the client must retry in
# order until the mirror matches. Then the same with mirrord restarted
# between rounds at --fail-rate 2.
#
# timeout: 600

. "$(dirname "$0")/lib.sh"

workload() {
	local r=$1 i
	mkdir -p "$M/$r/a/b/c"
	for i in $(seq 1 30); do echo "$r file $i" >"$M/$r/a/b/c/f$i"; done
	head -c 3000000 /dev/urandom >"$M/$r/big"
	mv "$M/$r/big" "$M/$r/a/big-moved"
	cp "$M/$r/a/big-moved" "$M/$r/copy"
	rm "$M/$r/a/big-moved"
	echo "1" >"$M/$r/chain1"
	mv "$M/$r/chain1" "$M/$r/chain2"
	mv "$M/$r/chain2" "$M/$r/a/chain3"
	mv "$M/$r/a/b" "$M/$r/b-moved"
	echo "file" >"$M/$r/swap"
	rm "$M/$r/swap"
	mkdir "$M/$r/swap"
	echo "in swap" >"$M/$r/swap/in"
	ln -s a/chain3 "$M/$r/link"
	chmod 0700 "$M/$r/a"
	touch -d '2020-02-02 02:02:02.202020202' "$M/$r/copy"
	rm -r "$M/$r/b-moved/c/f1" "$M/$r/b-moved/c/f2"
}

t_setup
start_mirrord --fail-rate 3
mount_mirrorfs
M=$T/mnt

step "round 1 at --fail-rate 3"
workload r1
sync_mirror 180
check_trees "with one request in three failing"
mirror_status >&2 || true

step "round 2 at --fail-rate 2, server restarted"
restart_mirrord --fail-rate 2
workload r2
rm -r "$M/r1"
sync_mirror 300
check_trees "with one request in two failing"

step "round 3: the server heals"
restart_mirrord
echo "after healing" >"$M/healed"
sync_mirror 60
check_trees "after the server healed"

unmount_mirrorfs
stop_mirrord
t_done
