#!/bin/bash
# tests/demo.sh (make demo): mirrorfs end to end on this machine, narrated.
#
# Starts mirrord on a loopback port over an empty folder, mounts mirrorfs
# over a sample folder that already holds a few files, makes changes through
# the mount, shows `mirrorfs status`, runs `mirrorfs sync`, shows both sides
# and treecmp's verdict, then unmounts and stops the server. Everything lives
# in one temporary folder, removed on exit (DEMO_KEEP=1 keeps it). Builds
# nothing: `make demo` has built the binaries (BUILD picks the build dir).

set -u -o pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD:-build}
[[ $build == /* ]] || build=$root/$build
MIRRORFS=$build/mirrorfs
MIRRORD=$build/mirrord
TREECMP=$build/treecmp

if [[ -t 1 ]]; then
	B=$'\e[1m' G=$'\e[32m' R=$'\e[31m' N=$'\e[0m'
else
	B="" G="" R="" N=""
fi
say() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
run() {
	printf '%s$ %s%s\n' "$B" "$*" "$N"
	"$@"
}
# runsh 'SHELL TEXT': show it, then run it in this shell.
runsh() {
	printf '%s$ %s%s\n' "$B" "$1" "$N"
	eval "$1" || die "failed: $1"
}
die() {
	printf '%sdemo: %s%s\n' "$R" "$*" "$N" >&2
	for f in "$area/mirrord.log" "$area/mirrorfs.log"; do
		[[ -s $f ]] && { echo "--- last lines of $(basename "$f") ---" >&2; tail -n 20 "$f" >&2; }
	done
	exit 1
}

for b in "$MIRRORFS" "$MIRRORD" "$TREECMP"; do
	[[ -x $b ]] || { echo "demo: $b is missing; run 'make' first" >&2; exit 1; }
done

area=$(mktemp -d /tmp/mirrorfs-demo.XXXXXX) || exit 1
chmod 0755 "$area"
server_pid=""
mnt=$area/mnt

cleanup() {
	trap - EXIT INT TERM
	if awk -v m="$mnt" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; then
		fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -u -z "$mnt" 2>/dev/null
	fi
	# mirrorfs daemonized; find it by its mount point on the command line.
	for p in /proc/[0-9]*; do
		[[ -r $p/cmdline ]] || continue
		if tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -qxF "$mnt"; then
			kill -9 "${p#/proc/}" 2>/dev/null
		fi
	done
	if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null
		wait "$server_pid" 2>/dev/null
	fi
	if [[ ${DEMO_KEEP:-0} == 1 ]]; then
		echo "demo: kept $area"
	else
		rm -rf --one-file-system "$area"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# poll SECONDS CMD...: until CMD succeeds, at most SECONDS.
poll() {
	local n=$(($1 * 20))
	shift
	while ! "$@"; do
		((n-- > 0)) || return 1
		sleep 0.05
	done
}
mounted() { awk -v m="$mnt" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; }

mkdir -p "$area/photos" "$area/mirror" "$mnt"
cd "$area" || exit 1

say "The sample folder: $area/photos, with a few files already in it"
mkdir -p photos/2023
echo "Holiday photos. Do not delete." >photos/README.txt
head -c 250000 /dev/urandom >photos/2023/beach.jpg
head -c 180000 /dev/urandom >photos/2023/sunset.jpg
run ls -lR photos

say "Start the server: mirrord keeps $area/mirror an exact copy"
root=() # mirrord refuses to run as root unless told
[[ $(id -u) == 0 ]] && root=(--allow-root)
"$MIRRORD" "$area/mirror" --listen 127.0.0.1:0 --port-file "$area/port" \
	--state-dir "$area/mirrord-state" "${root[@]}" 2>"$area/mirrord.log" &
server_pid=$!
port_up() {
	kill -0 "$server_pid" 2>/dev/null || die "mirrord exited"
	[[ -s $area/port ]] && read -r port <"$area/port" && [[ $port =~ ^[0-9]+$ ]] &&
		curl -sf --max-time 2 "http://127.0.0.1:$port/v1/ping" >/dev/null
}
poll 10 port_up || die "mirrord did not start"
url=http://127.0.0.1:$port
echo "mirrord $MIRRORD $area/mirror --listen 127.0.0.1:0  (pid $server_pid, listening on $url)"
run curl -s "$url/v1/ping"
echo

say "Mount mirrorfs: work in $mnt, changes land in photos/ and go to the server"
run "$MIRRORFS" "$area/photos" "$mnt" --server "$url" --state-dir "$area/client-state" \
	2>"$area/mirrorfs.log" || die "mirrorfs did not start"
poll 10 mounted || die "$mnt is not mounted"
client_pid=""
for p in /proc/[0-9]*; do
	[[ $(readlink "$p/exe" 2>/dev/null) == */mirrorfs ]] || continue
	tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -qxF "$mnt" && client_pid=${p#/proc/}
done
echo "(mirrorfs runs in the background as pid ${client_pid:-?})"
run ls -l mnt

say "Make changes through the mount (we are in $area)"
runsh "echo 'Packing list: towel, hat' > mnt/todo.txt"
runsh "cp mnt/2023/beach.jpg mnt/2023/beach-copy.jpg"
runsh "mkdir -p mnt/2024/spring"
runsh "head -c 300000 /dev/urandom > mnt/2024/spring/tulips.jpg"
runsh "mv mnt/2023/sunset.jpg mnt/2024/sunset.jpg"
runsh "rm mnt/2023/beach-copy.jpg"
runsh "chmod 0600 mnt/todo.txt"
runsh "ln -s 2024/sunset.jpg mnt/favourite.jpg"
runsh "echo 'Edited through the mount.' >> mnt/README.txt"

say "What the client still has to send"
run "$MIRRORFS" status "$mnt"

say "Wait until the server has everything"
run "$MIRRORFS" sync "$mnt" --timeout 60 || die "sync failed"

say "Status again"
run "$MIRRORFS" status "$mnt"

say "Both sides (type, mode, size, mtime, name)"
for side in photos mirror; do
	echo "--- $side"
	fmt='%y %4m %8s %TY-%Tm-%Td %TH:%TM  %p'
	(cd "$side" && find . -mindepth 1 \( -type l -printf "$fmt -> %l\n" \) -o -printf "$fmt\n" |
		sort -k6)
done

say "treecmp: the two trees, entry by entry"
if run "$TREECMP" "$area/photos" "$area/mirror"; then
	printf '%s%s%s\n' "$G" "The mirror is an exact copy." "$N"
	verdict=0
else
	printf '%s%s%s\n' "$R" "The mirror differs (see above)." "$N"
	verdict=1
fi

say "Unmount and stop the server"
run fusermount3 -u "$mnt" || die "unmount failed"
if [[ -n $client_pid ]]; then
	poll 20 eval '! kill -0 "$client_pid" 2>/dev/null' || die "mirrorfs did not exit after the unmount"
fi
kill -TERM "$server_pid"
wait "$server_pid" 2>/dev/null
server_pid=""
echo "done."
exit $verdict
