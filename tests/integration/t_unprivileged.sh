#!/bin/bash
# t_unprivileged: an unprivileged mirrord copes with the client's modes.
#
# mirrord runs as nobody (setpriv) over a DIR nobody owns; the client, as
# root, makes folders 0555, 0500 and 0000 with files in them, files 0444 and
# 0000, then later changes, renames and deletes things inside those folders
# and replaces the read-only files (HAZARDS: "a folder with mode 0555 or 0500
# on the client must not stop an unprivileged mirrord from changing what is
# inside it later"), and renames into, out of and within folders mode
# 0000. The mirror must match after each round.
# Needs root (skipped otherwise) and setpriv (util-linux).
#
# timeout: 300

. "$(dirname "$0")/lib.sh"

t_setup
if [[ $(id -u) != 0 ]] || ! command -v setpriv >/dev/null; then
	step "skipped: needs root and setpriv"
	exit 0
fi
B=$T/backing
M=$T/mnt
# nobody writes its port file next to the others and owns DIR and its state.
chmod 1777 "$T"
chown 65534:65534 "$T/dir"
mkdir "$T/dstate"
chown 65534:65534 "$T/dstate"
real_mirrord=$MIRRORD
t_require_bins "$real_mirrord"
cat >"$T/mirrord-as-nobody" <<EOF
#!/bin/sh
exec setpriv --reuid=65534 --regid=65534 --clear-groups "$real_mirrord" "\$@"
EOF
chmod 0755 "$T/mirrord-as-nobody"
MIRRORD=$T/mirrord-as-nobody
start_mirrord
[[ $(stat -c %u "/proc/$MIRRORD_PID") == 65534 ]] || fail "mirrord does not run as nobody"
mount_mirrorfs

step "round 1: restrictive modes"
mkdir -p "$M/ro/sub" "$M/priv" "$M/none/deeper"
echo "in ro" >"$M/ro/a"
echo "in ro/sub" >"$M/ro/sub/b"
echo "in priv" >"$M/priv/p"
echo "in none" >"$M/none/n"
echo "deeper" >"$M/none/deeper/d"
echo "read only" >"$M/ro-file"
echo "no access" >"$M/no-access-file"
chmod 0444 "$M/ro-file"
chmod 0000 "$M/no-access-file"
chmod 0555 "$M/ro/sub" "$M/ro"
chmod 0500 "$M/priv"
chmod 0000 "$M/none/deeper" "$M/none"
sync_mirror
check_trees "restrictive modes"

step "round 2: changes inside restrictive folders"
echo "new in ro" >"$M/ro/new"
echo "changed" >>"$M/ro/a"
rm "$M/ro/sub/b"
mv "$M/ro/sub" "$M/ro/sub-renamed"
echo "new in priv" >"$M/priv/q"
mv "$M/priv/p" "$M/priv/p-renamed"
echo "new in none" >"$M/none/new"
echo "more" >>"$M/none/deeper/d"
echo "replaced" >"$M/ro-file.new"
chmod 0444 "$M/ro-file.new"
mv -f "$M/ro-file.new" "$M/ro-file"
echo "rewritten in place" >"$M/no-access-file"
chmod 0755 "$M/priv"
chmod 0500 "$M/priv"
sync_mirror
check_trees "changes inside restrictive folders"

step "round 2b: renames into, out of and within folders without access"
echo "moves in" >"$M/moves-in"
mkdir "$M/dir-moves-in"
echo "inside" >"$M/dir-moves-in/f"
sync_mirror
mv "$M/moves-in" "$M/none/moved-in"
mv "$M/dir-moves-in" "$M/none/deeper/dir-moved-in"
mv "$M/none/n" "$M/moved-out"
mv "$M/none/deeper/d" "$M/none/deeper/d-renamed"
mv "$M/ro/a" "$M/none/from-ro"
rm "$M/none/deeper/dir-moved-in/f"
chmod 0640 "$M/none/moved-in"
touch -d '2020-02-02 02:02:02' "$M/none/deeper/d-renamed"
sync_mirror
check_trees "renames through folders without access"

step "round 3: deleting and moving restrictive folders"
mv "$M/ro" "$M/ro-moved"
rm -rf "$M/none"
sync_mirror
check_trees "deleting restrictive folders"

unmount_mirrorfs
stop_mirrord
t_done
