#!/bin/bash
# t_mount: mirrorfs mounted the way mount(8) and /etc/fstab do it.
#
#   1. mount.fuse3 BACKING MNT -t fuse.mirrorfs -o server=URL,state_dir=S,token_file=F
#      with `mirrorfs` found through PATH (a symlink in a temporary folder);
#   2. mount -t fuse.mirrorfs -o server=URL,state_dir=S,token_file=F BACKING MNT;
#   3. a line of an fstab file (mount -T FILE MNT), with _netdev and nofail:
#        BACKING MNT fuse.mirrorfs server=URL,state_dir=S,token_file=F,_netdev,nofail 0 0
# (mirrord requires the token in F, which it made).
# Each time: mirrorfs daemonizes (no -f), a file written through the mount
# reaches the server (mirrorfs sync, then the trees compared), umount ends
# the daemon.
#
# mount(8) clears PATH for its helpers, so mount.fuse3's `sh -c 'mirrorfs
# ...'` looks in the default path only. To test the build without installing
# it, parts 2 and 3 run in a private mount namespace (the whole test re-runs
# itself under `unshare -m`), where the folder holding the symlink is
# bind-mounted over /usr/local/sbin, first in sh's default PATH; everything
# mounted in the namespace goes away with it. Without unshare (or root),
# only part 1 runs. Skipped without mount.fuse3 (package fuse3).
#
# timeout: 300

if [[ -z ${MIRRORFS_T_MOUNT_NS:-} && $(id -u) == 0 ]] && command -v unshare >/dev/null &&
	unshare -m --propagation private true 2>/dev/null; then
	export MIRRORFS_T_MOUNT_NS=1
	exec unshare -m --propagation private bash "$0" "$@"
fi

. "$(dirname "$0")/lib.sh"

need_mount
if ! command -v mount.fuse3 >/dev/null; then
	echo "SKIP: $T_NAME: mount.fuse3 is missing (apt-get install fuse3)"
	exit 0
fi
t_setup
t_require_bins "$MIRRORFS"
mkdir "$T/bin"
ln -s "$MIRRORFS" "$T/bin/mirrorfs"
start_mirrord --token-file "$T/token"
OPTS="server=$URL,state_dir=$T/cstate,token_file=$T/token"

# mirrorfs_daemon: the pid of the daemonized mirrorfs of this test, if any.
mirrorfs_daemon() {
	local p c
	for p in $(t_tagged_pids); do
		c=$(cat "/proc/$p/comm" 2>/dev/null) || continue
		if [[ $c == mirrorfs ]]; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# fstype PATH: the file system type mounted at PATH.
fstype() {
	awk -v m="$1" '$5 == m { for (i = 7; i <= NF; i++) if ($i == "-") { print $(i + 1); exit } }' \
		/proc/self/mountinfo
}

# exercise WHAT: the mount at $T/mnt, just made by WHAT, is mirrorfs and
# mirrors; umount ends the daemon.
exercise() {
	local what=$1 pid n
	is_mounted "$T/mnt" || fail "$what: $T/mnt is not mounted"
	[[ $(fstype "$T/mnt") == fuse.mirrorfs ]] || fail "$what: type $(fstype "$T/mnt"), not fuse.mirrorfs"
	pid=$(mirrorfs_daemon) || fail "$what: no mirrorfs daemon found"
	step "$what: mounted, daemon pid $pid"
	n=$((++ROUND))
	mkdir -p "$T/mnt/round$n"
	echo "written through $what" >"$T/mnt/round$n/file"
	head -c 200000 /dev/urandom >"$T/mnt/round$n/data"
	sync_mirror
	compare_trees
	umount "$T/mnt" || fail "$what: umount failed"
	wait_for -t 40 -m "mirrorfs (pid $pid) to exit after umount" pid_dead "$pid"
	is_mounted "$T/mnt" && fail "$what: still mounted after umount"
	step "$what: unmounted, daemon gone"
}
ROUND=0

step "1. mount.fuse3, mirrorfs from PATH"
PATH=$T/bin:$PATH mount.fuse3 "$T/backing" "$T/mnt" -t fuse.mirrorfs -o "$OPTS" ||
	fail "mount.fuse3 failed"
exercise "mount.fuse3"

if [[ -z ${MIRRORFS_T_MOUNT_NS:-} ]]; then
	echo "SKIP: $T_NAME: mount(8) and fstab parts need a private mount namespace (root, unshare)"
	stop_mirrord
	t_done
	exit 0
fi
mount --bind "$T/bin" /usr/local/sbin

step "2. mount -t fuse.mirrorfs"
mount -t fuse.mirrorfs -o "$OPTS" "$T/backing" "$T/mnt" || fail "mount -t fuse.mirrorfs failed"
exercise "mount -t fuse.mirrorfs"

step "3. an fstab line"
printf '%s %s fuse.mirrorfs %s,_netdev,nofail 0 0\n' "$T/backing" "$T/mnt" "$OPTS" >"$T/fstab"
sed 's/^/    /' "$T/fstab" >&2
mount -T "$T/fstab" "$T/mnt" || fail "mount -T $T/fstab $T/mnt failed"
exercise "fstab"

stop_mirrord
t_done
