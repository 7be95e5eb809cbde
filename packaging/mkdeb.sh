#!/bin/sh
# packaging/mkdeb.sh PACKAGE STAGE OUTDIR VERSION: turn STAGE (a `make
# install-PACKAGE DESTDIR=STAGE PREFIX=/usr` tree) into OUTDIR/PACKAGE_VERSION_ARCH.deb.
#
# No debhelper: binaries are stripped, man pages and long docs compressed,
# Depends computed by dpkg-shlibdeps from the shared libraries the binaries
# use (plus the packages the maintainer scripts and units call), then
# dpkg-deb builds the archive with every file owned by root.
set -eu

pkg=$1 stage=$(cd "$2" && pwd) out=$3 version=$4
here=$(cd "$(dirname "$0")" && pwd)
maint=${DEB_MAINTAINER:-mirrorfs developers <mirrorfs@localhost>}
arch=$(dpkg --print-architecture)

case $pkg in
mirrorfs)
	section=utils
	extra_depends="fuse3"
	summary="filesystem that mirrors a folder to a server, change by change"
	long=" mirrorfs mounts a FUSE passthrough of a folder; every change made through
 the mount is queued durably and sent to mirrord, an HTTP server that keeps
 an exact copy. Files travel as content-defined chunks the server lacks.
 .
 This package holds the client (mirrorfs, and mirrorfs-poll where built),
 the unit mirrorfs@.service (one mirrored folder per /etc/mirrorfs/NAME.conf)
 and fuse.mirrorfs support for /etc/fstab."
	;;
mirrord)
	section=net
	extra_depends="adduser"
	summary="server that keeps the copies of folders mirrored by mirrorfs"
	long=" mirrord receives the changes mirrorfs clients send over HTTP and applies
 them under a folder, which becomes an exact copy of the client's folder:
 type, content, permission bits, mtime and symlink targets.
 .
 This package holds mirrord, the sandboxed unit mirrord.service running as
 the system user mirrord, and its settings in /etc/mirrord/mirrord.conf."
	;;
*)
	echo "mkdeb.sh: unknown package '$pkg'" >&2
	exit 2
	;;
esac

# Binaries: stripped (the build keeps -g for debugging from the tree).
elves=""
for f in "$stage"/usr/bin/*; do
	[ -f "$f" ] || continue
	strip --strip-unneeded --remove-section=.comment --remove-section=.note "$f"
	elves="$elves -e$f"
done
[ -n "$elves" ] || { echo "mkdeb.sh: no binary in $stage/usr/bin" >&2; exit 1; }

# Debian policy: man pages and documentation compressed (gzip -9n).
find "$stage/usr/share/man" -type f ! -name '*.gz' -exec gzip -9nf {} +
find "$stage/usr/share/doc" -type f -name '*.md' -size +4k -exec gzip -9nf {} +

# dpkg-shlibdeps wants a debian/control naming the package, and finds the
# package's root by its DEBIAN folder.
mkdir -p "$stage/DEBIAN"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/debian"
printf 'Source: mirrorfs\nMaintainer: %s\n\nPackage: %s\nArchitecture: any\n' \
	"$maint" "$pkg" >"$work/debian/control"
# shellcheck disable=SC2086 # one -e per binary
shlibs=$(cd "$work" && dpkg-shlibdeps -O $elves | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { echo "mkdeb.sh: dpkg-shlibdeps found no dependency" >&2; exit 1; }

for s in postinst prerm postrm; do
	if [ -f "$here/debian/$pkg.$s" ]; then
		install -m 0755 "$here/debian/$pkg.$s" "$stage/DEBIAN/$s"
	fi
done
# Every file under /etc is a conffile: dpkg keeps the administrator's edits.
if [ -d "$stage/etc" ]; then
	(cd "$stage" && find etc -type f | sort | sed 's|^|/|') >"$stage/DEBIAN/conffiles"
	[ -s "$stage/DEBIAN/conffiles" ] || rm -f "$stage/DEBIAN/conffiles"
fi
(cd "$stage" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -print |
	sed 's|^\./||' | LC_ALL=C sort | xargs -r md5sum) >"$stage/DEBIAN/md5sums"

size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<CONTROL
Package: $pkg
Version: $version
Architecture: $arch
Maintainer: $maint
Installed-Size: $size
Depends: $shlibs, $extra_depends
Section: $section
Priority: optional
Description: $summary
$long
CONTROL

mkdir -p "$out"
deb=$out/${pkg}_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "  DEB     $deb"
