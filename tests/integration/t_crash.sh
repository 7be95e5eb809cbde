#!/bin/bash
# t_crash: mirrord SIGKILLed in the middle of a 200 MiB upload, then
# restarted: the mirror converges, and no reader of DIR ever sees a partial
# file under the final name (a reader polls the file during the whole test:
# whenever it exists, it has the full size, and every version it sees is
# complete: the old content or the new one).
#
# timeout: 900

. "$(dirname "$0")/lib.sh"

t_setup
M=$T/mnt
D=$T/dir
SIZE=$((200 << 20))
start_mirrord
mount_mirrorfs

step "an old version of the file on the server"
head -c "$SIZE" /dev/urandom >"$T/old.bin"
head -c "$SIZE" /dev/urandom >"$T/new.bin"
cp "$T/old.bin" "$M/big.bin"
sync_mirror 300

# The reader: records any sighting of big.bin in DIR that is not complete.
# It stats every 10 ms and, for every new inode, compares the content with
# the old and the new version.
reader() {
	local seen="" ino size
	while [[ ! -e $T/stop-reader ]]; do
		if read -r ino size < <(stat -c '%i %s' "$D/big.bin" 2>/dev/null); then
			if [[ $size != "$SIZE" ]]; then
				echo "partial: $size bytes (inode $ino)" >>"$T/reader.bad"
			elif [[ $ino != "$seen" ]]; then
				seen=$ino
				if ! cmp -s "$D/big.bin" "$T/old.bin" && ! cmp -s "$D/big.bin" "$T/new.bin"; then
					# a rename may have replaced it during the compare: look again
					read -r ino size < <(stat -c '%i %s' "$D/big.bin" 2>/dev/null)
					[[ $ino == "$seen" ]] &&
						echo "torn content (inode $ino)" >>"$T/reader.bad"
				fi
			fi
		fi
		sleep 0.01 # the reader's polling interval, not a synchronisation
	done
	echo done >"$T/reader.done"
}
reader &
READER_PID=$!
T_PIDS+=("$READER_PID")

step "the new version, mirrord killed while it uploads"
cp "$T/new.bin" "$M/big.bin"
# wait until the upload is under way: chunks of the new version pile up
# in mirrord's store of chunks in transit (not yet placed in a file)
in_flight() {
	local b
	b=$(du -sb "$T/dstate/chunks" 2>/dev/null | cut -f1)
	((${b:-0} > 16 << 20))
}
wait_for -t 120 -m "the upload to be under way" in_flight
kill_mirrord
step "killed; the mirror must still hold a complete version"
restart_mirrord
sync_mirror 300
check_trees "after mirrord was killed during the upload"
cmp "$D/big.bin" "$T/new.bin" || fail "big.bin is not the new version"

touch "$T/stop-reader"
wait_for -t 30 -m "the reader to stop" test -e "$T/reader.done"
if [[ -s $T/reader.bad ]]; then
	fail "a reader saw an incomplete file: $(head -n 5 "$T/reader.bad")"
fi
step "the reader never saw a partial or torn file"

step "no temporaries left in mirrord's state"
n=$(find "$T/dstate/tmp" -mindepth 1 | wc -l)
((n == 0)) || fail "$n temporaries left in $T/dstate/tmp"

unmount_mirrorfs
stop_mirrord
t_done
