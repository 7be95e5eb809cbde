#!/bin/bash
# t_names: names are bytes.
#
# The protocol carries any bytes but NUL and '/', components up to 255
# bytes, paths up to 4095 bytes. Through the mount: control characters
# (newline, tab, escape), backslashes and quotes, invalid UTF-8, both
# Unicode normalisations of one name, names differing only in case, a
# 255-byte component, a path close to 4095 bytes, and names that look like
# the tools' own files (temporaries, state folders, FUSE's hidden files).
# Each is created, some renamed and deleted, then synced and compared; a
# 256-byte name must fail with ENAMETOOLONG, as on any folder.
#
# timeout: 300

. "$(dirname "$0")/lib.sh"

t_setup
start_mirrord
mount_mirrorfs
M=$T/mnt

step "control characters, quotes, backslashes"
echo "nl" >"$M/new"$'\n'"line"
echo "tab" >"$M/tab"$'\t'"name"
echo "esc" >"$M/esc"$'\e'"[31mred"
echo "cr" >"$M/carriage"$'\r'"return"
echo "bs" >"$M/back\\slash"
echo "q" >"$M/it's \"quoted\""
echo "json" >"$M/{\"op\":\"delete\",\"path\":\"\"}"
mkdir "$M/dir"$'\n'"with newline"
echo "inside" >"$M/dir"$'\n'"with newline/file"$'\n'

step "bytes that are not UTF-8, Unicode normalisation, case"
echo "latin1" >"$M/caf"$'\xe9'
echo "broken" >"$M/"$'\xff\xfe\x80'
mkdir "$M/"$'\xc3\x28'"-dir"
echo "x" >"$M/"$'\xc3\x28'"-dir/x"
echo "nfc" >"$M/"$'\xc3\xa9'        # é precomposed
echo "nfd" >"$M/e"$'\xcc\x81'       # e + combining acute
echo "upper" >"$M/Case"
echo "lower" >"$M/case"
echo "emoji" >"$M/😀 🎉"

step "long names and paths"
long=$(printf 'L%.0s' {1..255})
echo "255 bytes" >"$M/$long"
long3=$(printf '\xe6\x97\xa5%.0s' {1..85}) # 85 x 3-byte character = 255 bytes
echo "255 bytes of UTF-8" >"$M/$long3"
if out=$(echo x 2>&1 >"$M/${long}X"); then
	check "a 256-byte name must fail" false
else
	check "a 256-byte name fails with ENAMETOOLONG" grep -q "File name too long" <<<"$out"
fi
# A relative path of about 4000 bytes: 20 components of 199 bytes.
comp=$(printf 'd%.0s' {1..199})
(
	cd "$M" || exit 1
	for i in $(seq 1 20); do
		mkdir "$comp" && cd "$comp" || exit 1
	done
	echo "deep and long" >leaf
) || check "creating a ~4000-byte path through the mount" false

step "names that look like the tools' own"
for n in .mirrord .dir.mirrord .mirrorfs .fuse_hidden0000000100000001 .tmp.mirror \
	.mirrord-tmp-1 tmp state chunks .state .lock .~lock.x# '~$x.docx' .nfs0000000000000001; do
	echo "user file $n" >"$M/$n"
done
mkdir "$M/.mirrord-state" "$M/tmp.d"
echo "in a folder named like state" >"$M/.mirrord-state/queue.db"

step "renames and deletes of odd names"
mv "$M/new"$'\n'"line" "$M/renamed"$'\n'"again"
mv "$M/"$'\xff\xfe\x80' "$M/still"$'\xff'"broken"
mv "$M/dir"$'\n'"with newline" "$M/"$'\xc3\x28'"-dir/moved"$'\t'"dir"
rm "$M/tab"$'\t'"name"
rm "$M/e"$'\xcc\x81'
mv "$M/$long" "$M/${long:1}"

sync_mirror
check_trees "odd names" --max-diffs 50
check "the mount shows backing" "$TREECMP" "$M" "$T/backing"
unmount_mirrorfs
stop_mirrord
check_trees "after unmount"
t_done
