#!/bin/bash
# t_errors: errors through the mount are the backing filesystem's errors,
# and a failed operation changes nothing on the server.
#
# The same layout is built in a plain folder ($T/ref) and through the mount;
# each failing command runs against both, and its exit status and message
# (with the root replaced by "@") must be the same: ENOTEMPTY, EEXIST,
# ENOENT, ENOTDIR, EISDIR, EINVAL (folder into itself), ENAMETOOLONG,
# EPERM (hard link to a folder), EEXIST from RENAME_NOREPLACE, ELOOP (open
# O_NOFOLLOW on a symlink, via a dangling chain). Then the mirror must
# match BACKING: no failed operation may leave a trace on the server.
#
# timeout: 300

. "$(dirname "$0")/lib.sh"

need_mount # with the polling client there is nothing between the test and BACKING
t_setup
need_fsop
start_mirrord
mount_mirrorfs
M=$T/mnt
R=$T/ref
mkdir -m 0755 "$R"

layout() {
	local r=$1
	mkdir -p "$r/full/sub" "$r/emptyd"
	echo "f" >"$r/full/f"
	echo "file" >"$r/file"
	echo "other" >"$r/other"
	ln -s loop2 "$r/loop1"
	ln -s loop1 "$r/loop2"
}
layout "$R"
layout "$M"
sync_mirror
compare_trees

# same_error DESCRIPTION CMD...: run CMD with "@" standing for the root,
# in $R and in $M; status and message must match (and be a failure).
same_error() {
	local what=$1 ref_rc=0 mnt_rc=0 ref_out mnt_out
	shift
	ref_out=$(cd "$R" && timeout 20 "${@//@/$R}" 2>&1) || ref_rc=$?
	mnt_out=$(cd "$M" && timeout 20 "${@//@/$M}" 2>&1) || mnt_rc=$?
	ref_out=${ref_out//$R/@}
	mnt_out=${mnt_out//$M/@}
	if ((ref_rc == 0)); then
		check "$what: the reference command should fail" false
	elif [[ $ref_rc != "$mnt_rc" || $ref_out != "$mnt_out" ]]; then
		check "$what: plain folder: status $ref_rc '$ref_out'; mount: status $mnt_rc '$mnt_out'" false
	else
		step "ok: $what: $mnt_out"
	fi
}

long=$(printf 'n%.0s' {1..256})
same_error "rmdir of a non-empty folder" rmdir @/full
same_error "mkdir over an existing folder" mkdir @/full
same_error "mkdir over an existing file" mkdir @/file
same_error "rm of a missing file" rm @/missing
same_error "file used as a folder" cat @/file/x
same_error "create inside a file" touch @/file/x
same_error "write to a folder" sh -c 'echo x >"$1"' sh @/full
same_error "folder moved into itself" "$FSOP" rename2 none @/full @/full/sub/x
same_error "256-byte name" touch "@/$long"
same_error "rename to a 256-byte name" "$FSOP" rename2 none @/other "@/$long"
same_error "hard link to a folder" perl -e 'link($ARGV[0], $ARGV[1]) or die "link: $!\n"' @/full @/full-link
same_error "hard link over an existing name" perl -e 'link($ARGV[0], $ARGV[1]) or die "link: $!\n"' @/file @/other
same_error "rename over a non-empty folder" "$FSOP" rename2 none @/emptyd @/full
same_error "rename file over folder" "$FSOP" rename2 none @/file @/emptyd
same_error "rename folder over file" "$FSOP" rename2 none @/emptyd @/file
same_error "RENAME_NOREPLACE over an existing file" "$FSOP" rename2 noreplace @/file @/other
same_error "symlink loop" cat @/loop1
same_error "rmdir of a file" rmdir @/file
same_error "truncate of a folder" truncate -s 0 @/full

# The successful commands must have left both trees alike, and the server
# must mirror BACKING (nothing half-applied).
listing() { (cd "$1" && find . -printf '%y %m %p %l\n' | LC_ALL=C sort); }
check "the mount behaved like a plain folder" diff <(listing "$R") <(listing "$T/backing")
sync_mirror
check_trees "after the failed operations"
unmount_mirrorfs
stop_mirrord
t_done
