#!/bin/bash
# t_units: make install, the systemd units, and their launchers at work.
#
# 1. `make install` into a temporary prefix puts every file in place, with
#    the units' and launchers' paths rewritten for that prefix; `make
#    uninstall` removes them all again (settings under /etc stay).
# 2. `systemd-analyze verify` accepts mirrord.service and an instance of
#    mirrorfs@.service as installed (offline: systemd need not be PID 1),
#    without a single warning.
# 3. `systemd-analyze security --offline=yes`: mirrord.service's exposure
#    stays at 1.5 or below; the sandbox settings the unit promises are there.
# 4. What the units run, run here by hand with the settings of the example
#    files (the token file in the test's folder): mirrord-service starts
#    mirrord, which makes the token file (a missing DIR is named);
#    mirrorfs-service mounts, a file reaches the server, the ExecStop
#    sequence (fusermount3 -u, wait for the main pid) ends it with status 0,
#    and after a crash (SIGKILL) it clears the dead mount and mounts again.
# Skipped without systemd-analyze (parts 2-3) or in poll mode.
#
# timeout: 300

. "$(dirname "$0")/lib.sh"

need_mount
t_setup
P=$T_ROOT/packaging

step "make install into $T/inst"
I=$T/inst
inst_vars=(PREFIX="$I/usr" SYSCONFDIR="$I/etc" UNITDIR="$I/units" SYSUSERSDIR="$I/sysusers.d"
	BUILD="$T_BUILD")
make -s -C "$T_ROOT" --no-print-directory install "${inst_vars[@]}" >"$T/install.log" 2>&1 ||
	fail "make install failed: $(cat "$T/install.log")"
for f in usr/bin/mirrorfs usr/bin/mirrord usr/libexec/mirrord/mirrord-service \
	usr/libexec/mirrorfs/mirrorfs-service; do
	check "installed $f, executable" test -x "$I/$f"
done
for f in usr/share/man/man1/mirrorfs.1 usr/share/man/man8/mirrord.8 units/mirrord.service \
	units/mirrorfs@.service sysusers.d/mirrord.conf etc/mirrord/mirrord.conf \
	usr/share/doc/mirrord/examples/mirrord.conf.example \
	usr/share/doc/mirrorfs/examples/mirrorfs.conf.example usr/share/doc/mirrorfs/PACKAGING.md; do
	check "installed $f" test -f "$I/$f"
done
if [[ -x $MIRRORFS_POLL ]]; then
	check "installed usr/bin/mirrorfs-poll" test -x "$I/usr/bin/mirrorfs-poll"
	check "installed mirrorfs-poll(1)" test -f "$I/usr/share/man/man1/mirrorfs-poll.1"
	check "installed mirrorfs-poll@.service" test -f "$I/units/mirrorfs-poll@.service"
fi
check "mirrord.service runs the installed launcher" \
	grep -qx "ExecStart=$I/usr/libexec/mirrord/mirrord-service" "$I/units/mirrord.service"
check "mirrord.service reads the installed settings" \
	grep -qx "EnvironmentFile=$I/etc/mirrord/mirrord.conf" "$I/units/mirrord.service"
check "mirrorfs@.service runs the installed launcher" \
	grep -qx "ExecStart=$I/usr/libexec/mirrorfs/mirrorfs-service" "$I/units/mirrorfs@.service"
check "mirrord-service runs the installed mirrord" \
	grep -q "MIRRORD_PROGRAM:-$I/usr/bin/mirrord}" "$I/usr/libexec/mirrord/mirrord-service"
check "mirrorfs-service runs the installed mirrorfs" \
	grep -q "MIRRORFS_PROGRAM:-$I/usr/bin/mirrorfs}" "$I/usr/libexec/mirrorfs/mirrorfs-service"
echo "# edited" >>"$I/etc/mirrord/mirrord.conf"
make -s -C "$T_ROOT" --no-print-directory install "${inst_vars[@]}" >"$T/install.log" 2>&1 ||
	fail "second make install failed: $(cat "$T/install.log")"
check "make install keeps an existing mirrord.conf" grep -q '^# edited' "$I/etc/mirrord/mirrord.conf"

if command -v systemd-analyze >/dev/null; then
	step "systemd-analyze verify (offline)"
	# An instance name for the template; man pages from the install.
	units=("$I/units/mirrord.service" "$I/units/mirrorfs@t.service")
	ln -s 'mirrorfs@.service' "$I/units/mirrorfs@t.service"
	if [[ -f $I/units/mirrorfs-poll@.service ]]; then
		ln -s 'mirrorfs-poll@.service' "$I/units/mirrorfs-poll@t.service"
		units+=("$I/units/mirrorfs-poll@t.service")
	fi
	out=$(MANPATH=$I/usr/share/man systemd-analyze verify "${units[@]}" 2>&1) && rc=0 || rc=$?
	check "systemd-analyze verify ${units[*]##*/}: status 0 and no warning (status $rc)" \
		test "$rc:$out" = "0:"
	[[ -z $out ]] || printf '    %s\n' "$out" >&2
	rm -f "$I/units/mirrorfs@t.service" "$I/units/mirrorfs-poll@t.service"

	if systemd-analyze security --help 2>&1 | grep -q -- '--offline'; then
		step "systemd-analyze security --offline=yes"
		out=$(systemd-analyze security --offline=yes --threshold=15 "$P/mirrord.service" 2>&1) &&
			rc=0 || rc=$?
		score=$(sed -n 's/.*Overall exposure level for mirrord.service: \([0-9.]*\).*/\1/p' <<<"$out")
		step "mirrord.service exposure: ${score:-?}"
		check "mirrord.service exposure ${score:-?} is at most 1.5" test "$rc" = 0
	else
		step "systemd-analyze has no --offline: security score not checked"
	fi
else
	step "systemd-analyze is missing: units not verified (apt-get install systemd)"
fi

step "mirrord.service keeps its sandbox"
for d in User=mirrord NoNewPrivileges=yes ProtectSystem=strict ReadWritePaths=/var/lib/mirrord \
	PrivateTmp=yes PrivateDevices=yes ProtectHome=yes ProtectKernelTunables=yes \
	ProtectKernelModules=yes ProtectKernelLogs=yes ProtectControlGroups=yes \
	'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' SystemCallFilter=@system-service \
	CapabilityBoundingSet= LockPersonality=yes MemoryDenyWriteExecute=yes Restart=on-failure \
	EnvironmentFile=/etc/mirrord/mirrord.conf; do
	check "mirrord.service has $d" grep -qxF "$d" "$P/mirrord.service"
done
for d in Type=simple Restart=on-failure 'EnvironmentFile=/etc/mirrorfs/%i.conf' \
	'ExecStop=/bin/fusermount3 -u ${MOUNTPOINT}'; do
	check "mirrorfs@.service has $d" grep -qxF "$d" "$P/mirrorfs@.service"
done

# conf_env FILE: print FILE's KEY=value lines (what EnvironmentFile= reads).
conf_env() { grep -E '^[A-Z_]+=' "$1"; }

step "mirrord-service with the example settings"
out=$(env -i PATH=/usr/bin:/bin "$I/usr/libexec/mirrord/mirrord-service" 2>&1) && rc=0 || rc=$?
check "mirrord-service without DIR: status 2" test "$rc" = 2
check "mirrord-service without DIR: names DIR" grep -q 'DIR is not set' <<<"$out"
# The example's settings, pointed at this test's folders; mirrord started
# through the installed launcher (start_mirrord's arguments become settings).
cat >"$T/mirrord-via-launcher" <<WRAPPER
#!/bin/bash
set -a
. <(grep -E '^[A-Z_]+=' "$I/etc/mirrord/mirrord.conf")
set +a
# The token file mirrord makes at its first start, in the test's folder.
TOKEN_FILE=$T/token
DIR=\$1; shift
EXTRA_ARGS=""
while ((\$#)); do
	case \$1 in
	--listen) LISTEN=\$2; shift 2 ;;
	--state-dir) STATE_DIR=\$2; shift 2 ;;
	--log-level) LOG_LEVEL=\$2; shift 2 ;;
	*) EXTRA_ARGS+=" \$1"; shift ;;
	esac
done
[[ \$(id -u) == 0 ]] && EXTRA_ARGS+=" --allow-root"
export DIR EXTRA_ARGS LISTEN STATE_DIR LOG_LEVEL
exec "$I/usr/libexec/mirrord/mirrord-service"
WRAPPER
chmod 0755 "$T/mirrord-via-launcher"
MIRRORD=$T/mirrord-via-launcher
start_mirrord
check "mirrord runs as the service's main process (exec)" \
	grep -q mirrord "/proc/$MIRRORD_PID/comm"
check "mirrord made the token file of TOKEN_FILE" test -s "$T/token"

step "mirrorfs-service with the example settings"
out=$(env -i PATH=/usr/bin:/bin BACKING=/x SERVER=$URL "$I/usr/libexec/mirrorfs/mirrorfs-service" 2>&1) &&
	rc=0 || rc=$?
check "mirrorfs-service without MOUNTPOINT: status 2, named" \
	test "$rc:$(grep -c 'MOUNTPOINT is not set' <<<"$out")" = 2:1
sed -e "s|^BACKING=.*|BACKING=$T/backing|" -e "s|^MOUNTPOINT=.*|MOUNTPOINT=$T/mnt|" \
	-e "s|^SERVER=.*|SERVER=$URL|" -e "s|^LOG_LEVEL=.*|LOG_LEVEL=debug|" -e "s|^TOKEN_FILE=.*|TOKEN_FILE=$T/token|" \
	"$I/usr/share/doc/mirrorfs/examples/mirrorfs.conf.example" >"$T/t.conf"
live_mount() { is_mounted "$1" && ls -A -- "$1" >/dev/null 2>&1; }
# As the unit does: Environment=STATE_DIR=..., then EnvironmentFile=.
start_client() {
	(
		set -a
		STATE_DIR=$T/cstate
		. <(conf_env "$T/t.conf")
		exec "$I/usr/libexec/mirrorfs/mirrorfs-service"
	) >>"$T/mirrorfs.log" 2>&1 &
	MIRRORFS_PID=$!
	T_PIDS+=("$MIRRORFS_PID")
	# A live mount (a dead one is listed too, but cannot be listed).
	wait_for -t 20 -m "mirrorfs-service to mount $T/mnt" live_mount "$T/mnt"
	check "mirrorfs runs as the service's main process (exec)" \
		grep -q mirrorfs "/proc/$MIRRORFS_PID/comm"
}
start_client
echo "through the unit's launcher" >"$T/mnt/a"
sync_mirror
compare_trees

step "ExecStop: fusermount3 -u, then wait for the main pid"
/bin/fusermount3 -u "$T/mnt"
MAINPID=$MIRRORFS_PID timeout 60 /bin/sh -c \
	"$(sed -n "s/^ExecStop=\/bin\/sh -c '\(.*\)'$/\1/p" "$P/mirrorfs@.service")" ||
	fail "the ExecStop wait did not end within 60 s"
pid_dead "$MIRRORFS_PID" || fail "mirrorfs still runs after ExecStop"
t_reap "$MIRRORFS_PID" 5 || true
check "mirrorfs exited with status 0 after ExecStop (${T_REAP_RC:-?})" test "${T_REAP_RC:-0}" = 0
MIRRORFS_PID=""

step "Restart=on-failure after a crash: the dead mount is cleared"
start_client
echo "before the crash" >"$T/mnt/b"
sync_mirror
kill -9 "$MIRRORFS_PID"
t_reap "$MIRRORFS_PID" 10 || fail "mirrorfs survived SIGKILL"
MIRRORFS_PID=""
is_mounted "$T/mnt" || fail "expected the dead mount to stay after SIGKILL"
start_client
grep -q 'clearing the dead mount' "$T/mirrorfs.log" || fail "mirrorfs-service did not report the dead mount"
echo "after the restart" >"$T/mnt/c"
sync_mirror
compare_trees
unmount_mirrorfs

if [[ -x $MIRRORFS_POLL ]]; then
	step "mirrorfs-service poll (mirrorfs-poll@.service) with the same settings"
	(
		set -a
		STATE_DIR=$T/pstate
		. <(conf_env "$T/t.conf")
		INTERVAL=100
		exec "$I/usr/libexec/mirrorfs/mirrorfs-service" poll
	) >>"$T/mirrorfs.log" 2>&1 &
	POLL_PID=$!
	T_PIDS+=("$POLL_PID")
	poll_up() { "$MIRRORFS_POLL" status "$T/backing" --state-dir "$T/pstate" >/dev/null 2>&1; }
	wait_for -t 20 -m "mirrorfs-poll to answer status" poll_up
	check "mirrorfs-poll runs as the service's main process (exec)" \
		grep -q mirrorfs-poll "/proc/$POLL_PID/cmdline"
	echo "found by a scan" >"$T/backing/polled"
	timeout 90 "$MIRRORFS_POLL" sync "$T/backing" --state-dir "$T/pstate" --timeout 60 ||
		fail "mirrorfs-poll sync failed"
	compare_trees
	kill -TERM "$POLL_PID"
	t_reap "$POLL_PID" 40 || fail "mirrorfs-poll did not exit within 40 s of SIGTERM"
	check "mirrorfs-poll exited with status 0 after SIGTERM (${T_REAP_RC:-?})" test "${T_REAP_RC:-0}" = 0
fi
stop_mirrord

step "make uninstall"
make -s -C "$T_ROOT" --no-print-directory uninstall "${inst_vars[@]}" >"$T/install.log" 2>&1 ||
	fail "make uninstall failed: $(cat "$T/install.log")"
left=$(cd "$I" && find . ! -type d | sort)
check "make uninstall leaves only the settings (left: $left)" test "$left" = "./etc/mirrord/mirrord.conf"
t_done
