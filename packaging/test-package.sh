#!/bin/bash
# packaging/test-package.sh: install the .debs that `make deb` built, run a
# mirror with the installed files only, then purge the packages.
# Run by `make test-package` (root; on a machine where neither package is
# installed already, unless MIRRORFS_TEST_PACKAGE_FORCE=1).
#
#   1. apt-get install ./build/mirrorfs_V_ARCH.deb ./build/mirrord_V_ARCH.deb
#      (dependencies from Debian's archive); the files are in place, the
#      user mirrord and /var/lib/mirrord exist, the installed units pass
#      systemd-analyze verify, the man pages are found by man.
#   2. mirrord as the unit runs it: the installed launcher with the settings
#      of /etc/mirrord/mirrord.conf, as the user mirrord (systemd is not
#      PID 1 here, so in the foreground, not through systemctl); DIR, STATE_DIR
#      and LISTEN pointed at a temporary folder, the token where the settings
#      say (/var/lib/mirrord/token: mirrord makes it, the client's example
#      settings use it; /metrics answers with it). /usr/bin/mirrord refuses
#      root without --allow-root.
#   3. mirrorfs as mirrorfs@.service runs it (installed launcher, the example
#      NAME.conf), then through an fstab line (mount -T FILE, which finds
#      /usr/bin/mirrorfs through mount.fuse3): files written through each
#      mount arrive on the server.
#   4. apt-get purge: every installed file is gone again.
# Bounded waits only; everything started is stopped, unmounted and the
# packages purged on any exit.

root=$(cd "$(dirname "$0")/.." && pwd)
version=$(<"$root/packaging/VERSION")
arch=$(dpkg --print-architecture)
debs=("$root/build/mirrorfs_${version}_$arch.deb" "$root/build/mirrord_${version}_$arch.deb")

if [[ $(id -u) != 0 ]]; then
	echo "test-package: needs root (installs packages, mounts)" >&2
	exit 1
fi
for d in "${debs[@]}"; do
	[[ -f $d ]] || { echo "test-package: $d is missing (make deb)" >&2; exit 1; }
done
for p in mirrorfs mirrord; do
	if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		[[ -e /usr/bin/$p ]]; then
		if [[ ${MIRRORFS_TEST_PACKAGE_FORCE:-0} != 1 ]]; then
			echo "test-package: $p is installed here already; it would be replaced and purged" \
				"(MIRRORFS_TEST_PACKAGE_FORCE=1 to go on)" >&2
			exit 1
		fi
	fi
done

# The test helpers (bounded waits, cleanup of everything started), run
# against the installed binaries.
export MIRRORFS=/usr/bin/mirrorfs MIRRORD=/usr/bin/mirrord MIRROR_MODE=fuse
. "$root/tests/integration/lib.sh"
[[ -x $TREECMP ]] || TREECMP=""

INSTALLED=0
purge_packages() {
	((INSTALLED)) || return 0
	DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq mirrorfs mirrord >"$T_LOG/purge.log" 2>&1 ||
		{ echo "test-package: apt-get purge failed:" >&2; cat "$T_LOG/purge.log" >&2; return 1; }
	INSTALLED=0
}
T_LOG=$(mktemp -d /tmp/mirrorfs-package.XXXXXX)
finish() {
	t_cleanup
	purge_packages
	rm -rf "$T_LOG"
}
t_setup
trap 'finish' EXIT
trap 'finish; trap - EXIT; exit 130' INT
trap 'finish; trap - EXIT; exit 143' TERM

# named_pids NAME: the pids this test started whose command is NAME.
named_pids() {
	local p
	for p in $(t_tagged_pids); do
		[[ $(cat "/proc/$p/comm" 2>/dev/null) == "$1" ]] && echo "$p"
	done
	return 0
}

# compare: the client's folder and the mirror hold the same.
compare() {
	if [[ -n $TREECMP ]]; then
		compare_trees
	else
		diff -r "$T/backing" "$T/dir" >&2 || fail "mirror differs from backing"
	fi
}

# ------------------------------------------------------------ 1. install

step "1. apt-get install ${debs[*]##*/}"
INSTALLED=1
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${debs[@]}" >"$T/install.log" 2>&1 ||
	fail "apt-get install failed: $(tail -n 20 "$T/install.log")"
for p in mirrorfs mirrord; do
	check "package $p $version is installed" \
		test "$(dpkg-query -W -f='${Status} ${Version}' "$p")" = "install ok installed $version"
done
files=(/usr/bin/mirrorfs /usr/bin/mirrord /usr/libexec/mirrorfs/mirrorfs-service
	/usr/libexec/mirrord/mirrord-service /lib/systemd/system/mirrord.service
	/lib/systemd/system/mirrorfs@.service /usr/lib/sysusers.d/mirrord.conf
	/etc/mirrord/mirrord.conf /usr/share/doc/mirrorfs/examples/mirrorfs.conf.example
	/usr/share/doc/mirrord/examples/mirrord.conf.example /usr/share/man/man1/mirrorfs.1.gz
	/usr/share/man/man8/mirrord.8.gz)
[[ -x $root/build/mirrorfs-poll ]] &&
	files+=(/usr/bin/mirrorfs-poll /usr/share/man/man1/mirrorfs-poll.1.gz /lib/systemd/system/mirrorfs-poll@.service)
for f in "${files[@]}"; do
	check "installed $f" test -e "$f"
done
check "mirrorfs --version says $version" test "$(/usr/bin/mirrorfs --version)" = "mirrorfs $version"
check "the user mirrord exists" getent passwd mirrord
check "/var/lib/mirrord/data belongs to mirrord" \
	test "$(stat -c %U "/var/lib/mirrord/data" 2>/dev/null)" = mirrord
check "/etc/mirrord/mirrord.conf is a conffile" grep -qx /etc/mirrord/mirrord.conf \
	/var/lib/dpkg/info/mirrord.conffiles
if command -v man >/dev/null; then
	check "man finds mirrorfs(1)" man -w mirrorfs
	check "man finds mirrord(8)" man -w 8 mirrord
fi
if command -v systemd-analyze >/dev/null; then
	units=(/lib/systemd/system/mirrord.service "$T/mirrorfs@pkgtest.service")
	ln -s /lib/systemd/system/mirrorfs@.service "$T/mirrorfs@pkgtest.service"
	if [[ -f /lib/systemd/system/mirrorfs-poll@.service ]]; then
		ln -s /lib/systemd/system/mirrorfs-poll@.service "$T/mirrorfs-poll@pkgtest.service"
		units+=("$T/mirrorfs-poll@pkgtest.service")
	fi
	out=$(systemd-analyze verify "${units[@]}" 2>&1) && rc=0 || rc=$?
	check "the installed units pass systemd-analyze verify (status $rc: $out)" test "$rc:$out" = "0:"
fi

# ------------------------------------------------------------ 2. mirrord

step "2. mirrord through the installed launcher, as the user mirrord"
out=$(/usr/bin/mirrord "$T/dir" --listen 127.0.0.1:0 2>&1) && rc=0 || rc=$?
check "/usr/bin/mirrord refuses root without --allow-root (status $rc)" test "$rc" = 2
# mirrord writes its port file into $T, and owns DIR and its state.
chmod 1777 "$T"
chown mirrord:mirrord "$T/dir"
cat >"$T/mirrord-as-service" <<WRAPPER
#!/bin/bash
# start_mirrord's DIR and options become settings over mirrord.conf's.
set -a
. <(grep -E '^[A-Z_]+=' /etc/mirrord/mirrord.conf)
DIR=\$1; shift
EXTRA_ARGS=""
while ((\$#)); do
	case \$1 in
	--listen) LISTEN=\$2; shift 2 ;;
	--state-dir) STATE_DIR=\$2; shift 2 ;;
	--log-level) LOG_LEVEL=\$2; shift 2 ;;
	--allow-root) shift ;;
	*) EXTRA_ARGS+=" \$1"; shift ;;
	esac
done
set +a
exec setpriv --reuid=mirrord --regid=mirrord --clear-groups /usr/libexec/mirrord/mirrord-service
WRAPPER
chmod 0755 "$T/mirrord-as-service"
# mirrord's state must be on DIR's file system and writable by mirrord.
install -d -o mirrord -g mirrord "$T/dstate"
MIRRORD=$T/mirrord-as-service start_mirrord
check "mirrord runs as the user mirrord" test "$(stat -c %U "/proc/$MIRRORD_PID")" = mirrord
# The settings' default TOKEN_FILE, made by mirrord at its first start.
tok=$(sed -n 's/^TOKEN_FILE=//p' /etc/mirrord/mirrord.conf)
if [[ -n $tok ]]; then
	wait_for -t 10 -m "mirrord to make its token file $tok" test -s "$tok"
	check "$tok belongs to mirrord, mode 600" test "$(stat -c %U:%a "$tok")" = mirrord:600
	check "GET /metrics answers with the token" \
		curl -sf -o /dev/null -H "Authorization: Bearer $(<"$tok")" "$URL/metrics"
	code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/ping")
	check "a request without the token is refused (401, got $code)" test "$code" = 401
fi

# ------------------------------------------------------------ 3. mirrorfs

step "3a. mirrorfs through the installed launcher (mirrorfs@.service)"
sed -e "s|^BACKING=.*|BACKING=$T/backing|" -e "s|^MOUNTPOINT=.*|MOUNTPOINT=$T/mnt|" \
	-e "s|^SERVER=.*|SERVER=$URL|" /usr/share/doc/mirrorfs/examples/mirrorfs.conf.example >"$T/pkg.conf"
(
	set -a
	STATE_DIR=$T/cstate # the unit's Environment=, then its EnvironmentFile=
	. <(grep -E '^[A-Z_]+=' "$T/pkg.conf")
	exec /usr/libexec/mirrorfs/mirrorfs-service
) >>"$T/mirrorfs.log" 2>&1 &
MIRRORFS_PID=$!
T_PIDS+=("$MIRRORFS_PID")
wait_for -t 20 -m "the installed mirrorfs to mount $T/mnt" is_mounted "$T/mnt"
mkdir "$T/mnt/from-the-package"
echo "installed mirrorfs" >"$T/mnt/from-the-package/a"
head -c 300000 /dev/urandom >"$T/mnt/from-the-package/data"
sync_mirror
compare
check "the file arrived" grep -qx "installed mirrorfs" "$T/dir/from-the-package/a"
unmount_mirrorfs

step "3b. mirrorfs from an fstab line (mount.fuse3 finds /usr/bin/mirrorfs)"
printf '%s %s fuse.mirrorfs server=%s,state_dir=%s%s,_netdev,nofail 0 0\n' \
	"$T/backing" "$T/mnt" "$URL" "$T/cstate" "${tok:+,token_file=$tok}" >"$T/fstab"
sed 's/^/    /' "$T/fstab" >&2
mount -T "$T/fstab" "$T/mnt" || fail "mount -T $T/fstab failed"
is_mounted "$T/mnt" || fail "fstab mount: $T/mnt not mounted"
echo "through fstab" >"$T/mnt/fstab-file"
sync_mirror
compare
umount "$T/mnt"
no_mirrorfs() { [[ -z $(named_pids mirrorfs) ]]; }
wait_for -t 40 -m "the fstab mirrorfs to exit after umount" no_mirrorfs
stop_mirrord

# ------------------------------------------------------------ 4. purge

step "4. apt-get purge"
purge_packages || fail "apt-get purge failed"
for p in mirrorfs mirrord; do
	check "package $p is gone" bash -c "! dpkg-query -W -f='\${Status}' $p 2>/dev/null | grep -q 'ok installed'"
done
for f in "${files[@]}"; do
	check "$f is gone" test ! -e "$f"
done
check "/etc/mirrord is gone" test ! -e /etc/mirrord
t_done
echo "test-package: PASS"
