#!/bin/bash
# t_large: big files stream in bounded memory; sparse files stay sparse.
#
#   - a 2 GiB file of random data is written through the mount, synced and
#     compared; neither daemon's peak RSS (VmHWM) may come near the file's
#     size (limit: LARGE_RSS_MB, default 400 MiB, skipped for sanitizer
#     builds, whose RSS means nothing);
#   - the same file is rewritten in the middle and renamed: content-defined
#     chunking means little goes over the wire again (reported, not checked);
#   - a 4 GiB file with three 1 MiB islands of data is synced; its copy must
#     match and (HAZARDS: "should stay sparse") occupy far less than 4 GiB.
#
# timeout: 1200

. "$(dirname "$0")/lib.sh"

LIMIT_MB=${LARGE_RSS_MB:-400}

# peak_rss_mb PID: VmHWM of PID in MiB (0 if unknown).
peak_rss_mb() {
	local kb
	kb=$(awk '/^VmHWM:/ { print $2 }' /proc/"$1"/status 2>/dev/null)
	echo $((${kb:-0} / 1024))
}

# check_rss WHO PID: WHO's peak RSS must stay under LIMIT_MB.
check_rss() {
	local mb
	mb=$(peak_rss_mb "$2")
	step "$1 peak RSS: ${mb} MiB"
	check "$1 memory bounded while streaming 2 GiB (peak ${mb} MiB, limit ${LIMIT_MB} MiB)" \
		test "$mb" -lt "$LIMIT_MB"
}

t_setup
start_mirrord
mount_mirrorfs
M=$T/mnt
D=$T/dir
sanitized=0
if grep -q __asan_init < <(nm -a "$MIRRORFS_BIN" 2>/dev/null); then sanitized=1; fi

step "2 GiB of random data"
dd if=/dev/urandom of="$M/huge.bin" bs=4M count=512 status=none
sync_mirror 600
check_trees "2 GiB file"
if ((sanitized)); then
	step "sanitizer build: memory limits not checked"
else
	check_rss mirrorfs "$MIRRORFS_PID"
	check_rss mirrord "$MIRRORD_PID"
fi

step "rewrite 1 MiB in the middle, then rename"
dd if=/dev/urandom of="$M/huge.bin" bs=1M seek=1000 count=1 conv=notrunc status=none
mv "$M/huge.bin" "$M/huge-renamed.bin"
sync_mirror 600
check_trees "2 GiB file after a small rewrite and a rename"
mirror_status >&2 || true
rm "$M/huge-renamed.bin"

step "a 4 GiB sparse file"
truncate -s 4G "$M/sparse.img"
for off in 0 2000 4000; do
	dd if=/dev/urandom of="$M/sparse.img" bs=1M seek=$off count=1 conv=notrunc status=none
done
sync_mirror 600
check_trees "sparse file"
blocks_mb=$(($(stat -c '%b * %B' "$D/sparse.img") / 1048576))
step "sparse file on the server occupies ${blocks_mb} MiB"
check "a 4 GiB sparse file with 3 MiB of data stays sparse on the server (uses ${blocks_mb} MiB)" \
	test "$blocks_mb" -lt 64

unmount_mirrorfs
stop_mirrord
t_done
