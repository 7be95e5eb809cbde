#!/bin/bash
# t_kcache: the kernel's caches in front of mirrorfs (fuse/fs.h).
#
#   - write-back cache: 8 writers each create 40 files with several
#     write() calls, some with an explicit mtime set between writes (as tar
#     and cp -a do) and some renamed right after close; after `mirrorfs
#     sync` the server, BACKING and the mount agree on content, size and
#     mtime to the nanosecond (the kernel's SETATTR of the mtime may reach
#     mirrorfs before the WRITEs it follows);
#   - hard links are one inode: appending through one name, then removing
#     the name the file was first looked up by, still reaches every other
#     name on the server;
#   - setuid/setgid bits cleared by chown, truncate and write as on a
#     plain folder, through the mount, in BACKING and on the server;
#   - extended attributes: refused (ENOTSUP) by default, passed through to
#     BACKING with -o xattr; `mirrorfs status` works either way (an ioctl);
#   - -o no_writeback mounts and mirrors the same;
#   - every node holds a descriptor: with 8,000 descriptors and no way to
#     raise the limit, 4,000 files are created, listed and stat'ed twice
#     through the mount without an error and mirrored, and the kernel was
#     asked to drop names (past a quarter of the limit: 1,744 nodes);
#   - readahead: as root, the mount reads ahead at least as far as the
#     disk under BACKING (ra.h), when BACKING is on one.
#
# timeout: 300

. "$(dirname "$0")/lib.sh"

need_mount
need_fsop
t_setup
start_mirrord
mount_mirrorfs
M=$T/mnt

step "readahead: the mount's is at least BACKING's disk's"
# ra.h: set once the kernel took the INIT reply, as root. BACKING may sit
# on no block device (tmpfs): then the kernel's default stays.
dev=$(stat -c '%Hd:%Ld' "$T/backing")
disk_ra=$(cat "/sys/dev/block/$dev/bdi/read_ahead_kb" 2>/dev/null ||
	cat "/sys/dev/block/$dev/../bdi/read_ahead_kb" 2>/dev/null || echo 0)
mnt_ra=$(cat "/sys/class/bdi/$(mountpoint -d "$M")/read_ahead_kb")
step "BACKING's disk: ${disk_ra} KiB, the mount: ${mnt_ra} KiB"
if [[ $(id -u) == 0 ]] && ((disk_ra > 0)); then
	((mnt_ra >= disk_ra)) || fail "the mount reads ahead ${mnt_ra} KiB, BACKING's disk ${disk_ra}"
fi

step "8 writers, 40 files each, explicit mtimes between writes"
writer() {
	local w=$1 i
	mkdir -p "$M/w$w"
	for ((i = 0; i < 40; i++)); do
		local f="$M/w$w/f$i"
		{
			printf 'first %d %d\n' "$w" "$i"
			head -c $((i * 997)) /dev/zero | tr '\0' 'x'
			printf '\nlast\n'
		} >"$f"
		if ((i % 3 == 0)); then
			exec 8>>"$f"
			echo "more" >&8
			touch -d "2001-02-03 04:05:06.123456789" "$f"
			echo "after touch" >&8
			exec 8>&-
		fi
		if ((i % 5 == 0)); then
			mv "$f" "$f.renamed"
		fi
	done
}
t_parallel 8 120 writer
sync_mirror 120
check_trees "after the writers"
check "the mount shows what BACKING has (mtimes to the ns)" "$TREECMP" "$M" "$T/backing"

step "hard links: append through one name, remove the first"
echo "one" >"$M/hl-a"
ln "$M/hl-a" "$M/hl-b"
ln "$M/hl-a" "$M/hl-c"
sync_mirror 60
echo "through c" >>"$M/hl-c"
rm "$M/hl-a"
echo "through b" >>"$M/hl-b"
sync_mirror 60
check_trees "hard links after appends and an unlink"
check "hl-b has both appends on the server" grep -qx "through c" "$T/dir/hl-b"
check "hl-c has both appends on the server" grep -qx "through b" "$T/dir/hl-c"

step "setuid and setgid bits: chown, truncate and write clear them as on a plain folder"
# The kernel leaves clearing them to mirrorfs on a private mount (kio.h);
# BACKING does it. The same steps on a plain folder give the expected
# modes, and the server must end up with the mount's.
mkdir "$T/plain"
suid_steps() {
	local d=$1
	echo x >"$d/su-chown" && chmod 6755 "$d/su-chown" && chown "$(id -u):$(id -g)" "$d/su-chown"
	echo x >"$d/su-trunc" && chmod 6755 "$d/su-trunc" && truncate -s 1 "$d/su-trunc"
	echo x >"$d/su-write" && chmod 6755 "$d/su-write" && echo more >>"$d/su-write"
	echo x >"$d/sg-chgrp" && chmod 2775 "$d/sg-chgrp" && chgrp "$(id -g)" "$d/sg-chgrp"
}
suid_steps "$T/plain"
suid_steps "$M"
sync_mirror 60
for f in su-chown su-trunc su-write sg-chgrp; do
	want=$(stat -c %a "$T/plain/$f")
	check "$f: mode $want through the mount (got $(stat -c %a "$M/$f"))" \
		test "$(stat -c %a "$M/$f")" = "$want"
	check "$f: mode $want in BACKING" test "$(stat -c %a "$T/backing/$f")" = "$want"
	check "$f: mode $want on the server" test "$(stat -c %a "$T/dir/$f")" = "$want"
done

step "extended attributes are off by default"
echo "x" >"$M/xa"
rc=0
"$FSOP" xattr "$M/xa" user.mirrorfs.test value || rc=$?
check "setxattr through the default mount is ENOTSUP (status 3, was $rc)" test "$rc" = 3
check "mirrorfs status answers" "$MIRRORFS" status "$M"
unmount_mirrorfs

step "-o xattr passes them through"
mount_mirrorfs -o xattr
rc=0
"$FSOP" xattr "$M/xa" user.mirrorfs.test value || rc=$?
check "setxattr and getxattr with -o xattr (status $rc)" test "$rc" = 0
check "mirrorfs status answers with -o xattr" "$MIRRORFS" status "$M"
echo "y" >>"$M/xa"
sync_mirror 60
check_trees "with -o xattr"
unmount_mirrorfs

step "-o no_writeback"
mount_mirrorfs -o no_writeback
for i in 1 2 3; do echo "line $i" >>"$M/nowb"; done
touch -d "2002-03-04 05:06:07.5" "$M/nowb"
sync_mirror 60
check_trees "with -o no_writeback"
check "the mount shows what BACKING has" "$TREECMP" "$M" "$T/backing"
unmount_mirrorfs

step "4,000 files with 8,000 descriptors"
real_mirrorfs=$MIRRORFS
cat >"$T/mirrorfs-lowfd" <<EOS
#!/bin/sh
exec prlimit --nofile=8000:8000 setpriv --bounding-set -sys_resource --inh-caps -sys_resource "$real_mirrorfs" "\$@"
EOS
chmod +x "$T/mirrorfs-lowfd"
MIRRORFS=$T/mirrorfs-lowfd
mount_mirrorfs
mkdir "$M/many"
for ((i = 0; i < 4000; i++)); do echo "$i" >"$M/many/f$i"; done
for round in 1 2; do
	n=$(find "$M/many" -type f -exec stat -c %s {} + | wc -l)
	check "round $round: 4,000 files listed and stat'ed (got $n)" test "$n" = 4000
done
check "no descriptor ran out" test "$(grep -c 'Too many open files' "$T/mirrorfs.log")" = 0
check "names were dropped from the kernel's cache" grep -q "names dropped from the kernel" "$T/mirrorfs.log"
sync_mirror 120
check_trees "4,000 files with 8,000 descriptors"
unmount_mirrorfs
MIRRORFS=$real_mirrorfs
check_trees "after unmount"
t_done
