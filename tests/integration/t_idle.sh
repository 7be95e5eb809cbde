#!/bin/bash
# t_idle: a connection the server closed does not cost a body sent twice.
#
# Bundles continue a compression stream that mirrord keeps per connection
# (docs/PROTOCOL.md, X-Mirror-Stream). mirrord closes a connection idle for
# its --timeout (here 2 s), and its decoder goes with it. A client that
# went on with the old stream on a new connection would get a 409 and send
# the bundle again. Here: files, then the idle timeout (a bounded poll of
# mirrord_connections_active until only the scrape's own connection is
# left), then more files, more than once; the mirror must match and
# mirrord must have answered no bundle with 409.
#
# timeout: 180

. "$(dirname "$0")/lib.sh"

t_setup
start_mirrord --timeout 2
mount_mirrorfs
M=$T/mnt

# metric NAME: its value in a fresh scrape (0 when absent).
metric() {
	timeout -k 5 30 curl -sS "$URL/metrics" |
		awk -v s="$1" '$1 == s { v = $2 } END { print (v == "" ? 0 : v) }'
}
# idle: every client connection is closed (the scrape is the one left).
idle() { [[ $(metric mirrord_connections_active) == 1 ]]; }

for round in 1 2 3; do
	step "round $round: files, then the server's idle timeout"
	for i in $(seq 1 20); do
		printf 'round %s file %s %0200d\n' "$round" "$i" 0 >"$M/r$round-f$i"
	done
	sync_mirror
	check_trees "round $round"
	wait_for -t 60 -m "mirrord closing idle connections" idle
done
step "files after the last timeout"
echo "last" >"$M/last"
sync_mirror
check_trees "after the last timeout"

ok=$(metric 'mirrord_requests_total{route="bundle",status="200"}')
stale=$(metric 'mirrord_requests_total{route="bundle",status="409"}')
check "bundles were sent ($ok answered 200)" test "$ok" -ge 4
check "no bundle was refused for a stream out of step ($stale answered 409)" test "$stale" -eq 0

unmount_mirrorfs
stop_mirrord
t_done
