#!/bin/bash
# t_docs: the man pages render cleanly and describe every option of --help;
# the settings files and their launchers agree; one version everywhere.
#
# For each program that is built (mirrorfs, mirrord, mirrorfs-poll) with a
# page in packaging/man/: groff -ww reports no warning, and every option
# that `PROG --help` names (--long, -x, and the -o NAME= mount options) is in
# the rendered page. Every KEY= of packaging/*.conf.example is read by its
# launcher and named in docs/PACKAGING.md. packaging/VERSION matches
# --version and the pages' headers. Runs in the FUSE pass only (it does not
# depend on the client's mode).
#
# timeout: 120

. "$(dirname "$0")/lib.sh"

if [[ $MIRROR_MODE == poll ]]; then
	echo "SKIP: $T_NAME: mode-independent (runs in the FUSE pass)"
	exit 0
fi
if ! command -v groff >/dev/null; then
	echo "SKIP: $T_NAME: groff is missing (apt-get install groff-base)"
	exit 0
fi
t_setup
P=$T_ROOT/packaging
VERSION=$(<"$P/VERSION")

# help_options PROG: the options PROG --help names, one a line.
help_options() {
	"$1" --help 2>&1 | grep -oE '(^|[][ ,|(])--?[A-Za-z][A-Za-z0-9-]*' |
		sed -E 's/^[][ ,|(]//' | sort -u
	# -o NAME=VALUE forms: "(-o server=URL)"
	"$1" --help 2>&1 | { grep -oE -- '-o [a-z_]+=' || true; } | sed 's/^-o //' | sort -u
}

# check_page PROG PAGE
check_page() {
	local prog=$1 page=$2 text opt warn missing=()
	[[ -f $page ]] || { check "$prog has a man page ($page)" false; return; }
	warn=$(groff -ww -man -Tutf8 -z "$page" 2>&1)
	check "groff -ww -man renders $(basename "$page") without warnings" test -z "$warn"
	[[ -z $warn ]] || printf '    %s\n' "$warn" >&2
	# Plain ASCII text: hyphens are "-", no bold or underline.
	text=$(groff -man -Tascii -P-cbou "$page" 2>/dev/null)
	while IFS= read -r opt; do
		[[ -n $opt ]] || continue
		grep -qF -- "$opt" <<<"$text" || missing+=("$opt")
	done < <(help_options "$prog")
	check "every option of $(basename "$prog") --help is in $(basename "$page")" \
		test ${#missing[@]} -eq 0
	((${#missing[@]} == 0)) || echo "    missing: ${missing[*]}" >&2
	check "$(basename "$page") is for version $VERSION" grep -q "^\.TH .*\"[a-z-]* $VERSION\"" "$page"
	step "checked $(basename "$page") against $(basename "$prog") --help"
}

t_require_bins "$MIRRORFS" "$MIRRORD"
check_page "$MIRRORFS" "$P/man/mirrorfs.1"
check_page "$MIRRORD" "$P/man/mirrord.8"
if [[ -x $MIRRORFS_POLL ]]; then
	check_page "$MIRRORFS_POLL" "$P/man/mirrorfs-poll.1"
fi

step "one version: packaging/VERSION is $VERSION"
check "mirrorfs --version says $VERSION" test "$("$MIRRORFS" --version)" = "mirrorfs $VERSION"
if [[ -x $MIRRORFS_POLL ]]; then
	check "mirrorfs-poll --version says $VERSION" \
		test "$("$MIRRORFS_POLL" --version)" = "mirrorfs-poll $VERSION"
fi
if "$MIRRORD" --help 2>&1 | grep -q -- '--version'; then
	check "mirrord --version names $VERSION" grep -qF "$VERSION" <<<"$("$MIRRORD" --version 2>&1)"
fi

step "settings: every KEY of the examples is read and documented"
# conf_keys FILE: the KEY of every KEY=value line, commented-out ones included.
conf_keys() { sed -nE 's/^#?([A-Z][A-Z0-9_]*)=.*/\1/p' "$1" | sort -u; }
for pair in mirrord.conf.example:mirrord-service mirrorfs.conf.example:mirrorfs-service; do
	conf=$P/${pair%%:*}
	launcher=$P/${pair##*:}
	keys=$(conf_keys "$conf")
	check "${pair%%:*} has settings" test -n "$keys"
	for k in $keys; do
		check "$(basename "$launcher") reads $k" grep -qE "\\\$\{?$k([^A-Z_]|$)" "$launcher"
		check "docs/PACKAGING.md names $k" grep -qw "$k" "$T_ROOT/docs/PACKAGING.md"
	done
done
# The keys the unit itself uses must be in the example too.
for k in $(grep -oE '\$\{?[A-Z_]+' "$P/mirrorfs@.service" | tr -d '${' | sort -u); do
	[[ $k == MAINPID ]] && continue
	check "mirrorfs.conf.example has $k (used by mirrorfs@.service)" \
		grep -qE "^#?$k=" "$P/mirrorfs.conf.example"
done
t_done
