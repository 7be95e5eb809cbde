#!/bin/bash
# t_enospc: the server's disk fills up. mirrord answers 507, nothing
# half-written becomes visible in DIR, the client keeps the change and
# retries; once space is freed (by a delete through the mount), the mirror
# converges. DIR and mirrord's state live on a small tmpfs. Part of the
# space is held by an upload its client gave up on (24 MiB staged with
# curl, never committed), and the client's own failed attempts leave
# stages too: mirrord must reclaim them once they are idle (store.h,
# store_reclaim; they used to stay a day, and the mirror never converged).
#
# timeout: 600

. "$(dirname "$0")/lib.sh"
[[ $(id -u) -eq 0 ]] || { echo "SKIP: t_enospc needs root (tmpfs mount)"; exit 0; }

t_setup
M=$T/mnt
mkdir -p "$T/fs"
mount -t tmpfs -o size=48m tmpfs "$T/fs" || { echo "SKIP: cannot mount a tmpfs"; exit 0; }
# (t_cleanup unmounts everything under $T, the tmpfs included)
mkdir "$T/fs/dir" "$T/fs/dstate"
rmdir "$T/dir"
ln -s "$T/fs/dir" "$T/dir"
start_mirrord --state-dir "$T/fs/dstate"
mount_mirrorfs

step "20 MiB fits"
head -c $((20 << 20)) /dev/urandom >"$M/a"
sync_mirror
$TREECMP "$T/backing" "$T/fs/dir" >/dev/null || fail "mirror differs after the first file"

step "an upload given up on: 24 MiB staged, never committed"
# staged frames (PROTOCOL.md): id, raw length, wire length (u32 BE), the
# chunk's offset (u64 BE), the bytes
be() { printf "%0${2}x" "$1" | xxd -r -p; }
: >"$T/frames"
for i in $(seq 0 23); do
	head -c $((1 << 20)) /dev/urandom >"$T/piece"
	{
		b2sum -l 256 "$T/piece" | cut -d' ' -f1 | xxd -r -p
		be $((1 << 20)) 8
		be $((1 << 20)) 8
		be $((i << 20)) 16
		cat "$T/piece"
	} >>"$T/frames"
done
stage=$(head -c 16 /dev/urandom | xxd -p | tr -d '\n')
code=$(timeout 60 curl -s -o "$T/stage.out" -w '%{http_code}' -X POST \
	-H 'Content-Type: application/octet-stream' -H "X-Mirror-Stage: $stage" \
	--data-binary "@$T/frames" "http://127.0.0.1:$(cat "$T/port")/v1/chunks")
[[ $code == 200 ]] || fail "the staged upload answered $code: $(head -c 300 "$T/stage.out")"
rm -f "$T/frames" "$T/piece"

step "another 30 MiB does not"
head -c $((30 << 20)) /dev/urandom >"$M/b"
if "${MIRRORFS_CLI[@]}" sync "$T_TARGET" --timeout 5 2>"$T/sync.err"; then
	fail "sync succeeded on a full disk"
fi
step "sync failed as it should: $(head -c 300 "$T/sync.err")"
# nothing half-written under a user's name, and the old content intact
[[ ! -e $T/fs/dir/b ]] || [[ $(stat -c %s "$T/fs/dir/b") -eq $((30 << 20)) ]] ||
	fail "a partial b is visible in DIR"
cmp -s "$T/backing/a" "$T/fs/dir/a" || fail "a was damaged"
"${MIRRORFS_CLI[@]}" status "$T_TARGET" >"$T/status.txt" 2>&1 || true
grep -qi "space\|507\|ENOSPC" "$T/status.txt" ||
	fail "status does not say why: $(cat "$T/status.txt")"
step "status says: $(grep -i 'error' "$T/status.txt" | head -n 1)"

step "space is freed: the change arrives"
rm "$M/a"
if ! "${MIRRORFS_CLI[@]}" sync "$T_TARGET" --timeout 60; then
	df -k "$T/fs" >&2
	ls -la "$T/fs/dir" "$T/fs/dstate/chunks" "$T/fs/dstate/tmp" >&2
	grep -v 'store a chunk\|store chunk' "$T/mirrord.log" | tail -n 5 >&2
	grep 'seq\|again' "$T/mirrorfs.log" | tail -n 8 >&2
	fail "the change did not arrive once space was freed"
fi
$TREECMP "$T/backing" "$T/fs/dir" || fail "mirror differs after space was freed"

unmount_mirrorfs
stop_mirrord
t_done
