#!/bin/bash
# t_reconcile: what the queue did not deliver is found again.
#
# Per README/ARCHITECTURE: at every mount BACKING is compared with the
# server and the differences are sent; while the server is down the mount
# works and changes wait; a crash of either side loses nothing. Covered:
#   - a pre-filled BACKING is mirrored by the first mount;
#   - changes made directly in BACKING while unmounted;
#   - damage done directly to DIR while unmounted;
#   - mirrord stopped: the mount keeps working, sync fails cleanly, status
#     says so; mirrord back on the same port: everything arrives;
#   - mirrord SIGKILLed while a large file is in flight;
#   - mirrorfs SIGKILLed with changes pending, then mounted again;
#   - unmount with changes pending while the server is down;
#   - a rename after all those remounts is applied (not taken for a replay);
#   - files named like libfuse's hidden ones (".fuse_hidden...") are files
#     like any other: mirrored from BACKING, and never deleted on the
#     server by the reconciliation at mount.
# `mirrorfs sync` is expected to cover the reconciliation at mount too.
#
# timeout: 600

. "$(dirname "$0")/lib.sh"

t_setup
B=$T/backing
M=$T/mnt
D=$T/dir
start_mirrord

step "a pre-filled BACKING"
mkdir -p "$B/docs/deep/er" "$B/empty" "$B/ro"
echo "readme" >"$B/README"
head -c 500000 /dev/urandom >"$B/docs/blob.bin"
echo "deep" >"$B/docs/deep/er/file"
ln -s ../README "$B/docs/readme-link"
ln -s /nowhere "$B/dangling"
echo "ro" >"$B/ro/file"
chmod 0444 "$B/ro/file"
chmod 0555 "$B/ro"
chmod 0600 "$B/docs/blob.bin"
touch -d '2012-12-12 12:12:12.121212121' "$B/README"
touch -h -d '2013-01-01 01:01:01.5' "$B/docs/readme-link"
touch -d '2011-11-11 11:11:11.111111111' "$B/docs/deep"
# A few hundred entries: folders with pinned mtimes (read-only ones
# among them), symlinks, empty files.
for i in $(seq 1 12); do
	mkdir -p "$B/many/d$i/sub"
	for j in 1 2 3 4; do
		printf 'file %s of %s\n' "$j" "$i" >"$B/many/d$i/f$j"
		: >"$B/many/d$i/sub/empty$j"
	done
	ln -s "f1" "$B/many/d$i/link"
	head -c $((i * 3000)) /dev/urandom >"$B/many/d$i/sub/data"
	touch -d "2010-01-$((i + 10)) 10:00:00.$i" "$B/many/d$i/sub" "$B/many/d$i"
	((i % 3 == 0)) && chmod 0555 "$B/many/d$i/sub" "$B/many/d$i"
done
echo "not libfuse's" >"$B/.fuse_hidden00000001deadbeef"
mount_mirrorfs
sync_mirror
check_trees "pre-filled BACKING"
echo "made through the mount" >"$M/many/d1/.fuse_hidden0000000300000003"
sync_mirror
check_trees "a .fuse_hidden name made through the mount"

step "changes made in BACKING while unmounted"
unmount_mirrorfs
echo "added offline" >"$B/offline-new"
echo "also not libfuse's" >"$B/docs/.fuse_hidden0000000200000002"
echo "modified offline" >>"$B/README"
rm "$B/docs/deep/er/file"
rm -r "$B/empty"
chmod 0640 "$B/docs/blob.bin"
touch -d '2014-04-04 04:04:04.4' "$B/docs/deep"
rm "$B/dangling"
mkdir "$B/dangling"
echo "now a folder" >"$B/dangling/inside"
rm "$B/docs/readme-link"
ln -s ../offline-new "$B/docs/readme-link"
mount_mirrorfs
sync_mirror
check_trees "changes while unmounted"

step "damage to DIR while unmounted"
unmount_mirrorfs
rm "$D/offline-new"
echo "intruder" >"$D/intruder"
mkdir -p "$D/intruder-dir/sub"
chmod 0600 "$D/README"
echo "damaged content" >"$D/docs/blob.bin"
rm -r "$D/docs/deep"
touch -d '2000-01-01' "$D/dangling"
mount_mirrorfs
sync_mirror
check_trees "damaged DIR"

step "server down: the mount works, changes wait"
stop_mirrord
echo "written while the server is down" >"$M/while-down"
mkdir -p "$M/down-dir/sub"
head -c 2000000 /dev/urandom >"$M/down-dir/sub/data"
mv "$M/down-dir" "$M/down-dir-renamed"
rm "$M/README"
chmod 0700 "$M/docs"
check "status works while the server is down" mirror_status
if timeout -k 5 40 "${MIRRORFS_CLI[@]}" sync "$T_TARGET" --timeout 3 >"$T/sync.out" 2>&1; then
	check "sync must fail while the server is down" false
else
	rc=$?
	((rc == 124 || rc == 137)) && check "sync --timeout 3 must return by itself" false
	[[ -s $T/sync.out ]] || check "sync failing while the server is down says why" false
	step "sync while down: status $rc: $(head -n 1 "$T/sync.out")"
fi
restart_mirrord
sync_mirror 120
check_trees "after the server came back"

step "mirrord SIGKILLed with a large file in flight"
dd if=/dev/urandom of="$M/inflight.bin" bs=1M count=64 status=none
for i in $(seq 1 20); do echo "small $i" >"$M/docs/small-$i"; done
kill_mirrord
restart_mirrord
sync_mirror 120
check_trees "after mirrord was killed"

step "mirrorfs SIGKILLed with changes pending"
stop_mirrord
echo "pending at the crash" >"$M/pending"
mkdir "$M/pending-dir"
echo "x" >"$M/pending-dir/x"
rm "$M/inflight.bin"
mv "$M/docs" "$M/docs-moved"
kill_mirrorfs
restart_mirrord
mount_mirrorfs
sync_mirror 120
check_trees "after mirrorfs was killed"

step "unmount with changes pending while the server is down"
stop_mirrord
echo "pending at unmount" >"$M/pending-unmount"
rm -r "$M/pending-dir"
unmount_mirrorfs
restart_mirrord
mount_mirrorfs
sync_mirror 120
check_trees "after an unmount with changes pending"

step "a rename after a remount"
# mirrord skips a rename whose sequence number is not above the last one it
# applied from this client: numbers must go on growing across sessions,
# also when the queue was empty at the unmount.
mv "$M/docs-moved" "$M/docs-again"
sync_mirror
unmount_mirrorfs
mount_mirrorfs
mv "$M/docs-again" "$M/docs-final"
sync_mirror
check_trees "a rename after a remount"

unmount_mirrorfs
stop_mirrord
check_trees "at the end"
t_done
