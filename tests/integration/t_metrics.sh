#!/bin/bash
# t_metrics: GET /metrics speaks the Prometheus text format and counts what
# happened.
#
# mirrord runs with a token; a mount mirrors a few files through it. The
# scrape needs the token (401 without), and a small parser (perl) checks
# the format: HELP/TYPE before each family's samples, samples of a family
# together, valid names, labels and values, counters named *_total,
# histograms cumulative with +Inf equal to _count. Then the values: ops,
# bytes and chunks received, the apply histogram, DIR's free space, open
# connections; a query for a chunk mirrord holds counts as reused with its
# bytes saved; counters never go down between scrapes. Last, with
# --metrics-public the scrape needs no token while everything else still
# does. Runs in both passes (the FUSE mount and mirrorfs-poll both send the
# token).
#
# timeout: 180

. "$(dirname "$0")/lib.sh"

t_setup
TOK=$T/token
start_mirrord --token-file "$TOK"
AUTH="Authorization: Bearer $(<"$TOK")"

# scrape OUT [CURL ARGS...]: GET /metrics into OUT; prints the status.
scrape() {
	local out=$1
	shift
	timeout -k 5 30 curl -sS -o "$out" -w '%{http_code}' "$@" "$URL/metrics"
}

# The parser: exits non-zero naming the first violation; writes one
# "name{labels} value" line per sample to stdout.
cat >"$T/promparse.pl" <<'EOF'
use strict; use warnings;
my (%type, %seen, %done, $cur, $bad);
my $name_re = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
my $val_re = qr/[-+]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|Inf|NaN)/;
sub fail { print STDERR "line $.: $_[0]: $_\n"; exit 1 }
my %hist; # family -> [ [le, count]... ], sum, count
while (<>) {
	chomp;
	next if $_ eq '';
	if (/^# HELP ($name_re) \S/) { next }
	if (/^# TYPE ($name_re) (counter|gauge|histogram|summary|untyped)$/) {
		fail("second TYPE for $1") if $type{$1};
		$done{$cur} = 1 if defined $cur;
		$type{$1} = $2; $cur = $1; next;
	}
	fail("unexpected comment") if /^#/;
	/^($name_re)(\{(.*)\})? ($val_re)$/ or fail("not a sample");
	my ($name, $labels, $value) = ($1, $3 // '', $4);
	my $fam = $name;
	if (!$type{$fam}) { ($fam = $name) =~ s/_(bucket|sum|count)$// }
	fail("sample before its TYPE") if !$type{$fam};
	fail("family $fam interleaved") if $done{$fam} || $fam ne $cur;
	my %l;
	for my $pair (split /,(?=[a-zA-Z_])/, $labels) {
		$pair =~ /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"$/ or fail("bad label '$pair'");
		fail("label $1 twice") if exists $l{$1};
		$l{$1} = $2;
	}
	fail("duplicate sample") if $seen{"$name\{$labels\}"}++;
	my $t = $type{$fam};
	fail("counter $fam not named *_total") if $t eq 'counter' && $fam !~ /_total$/;
	fail("negative counter") if $t eq 'counter' && $value < 0;
	if ($t eq 'histogram') {
		if ($name eq "${fam}_bucket") {
			fail("bucket without le") if !defined $l{le};
			push @{$hist{$fam}{b}}, [$l{le}, $value];
		} elsif ($name eq "${fam}_sum") { $hist{$fam}{sum} = $value }
		elsif ($name eq "${fam}_count") { $hist{$fam}{count} = $value }
		else { fail("stray histogram sample") }
	}
	print "$name\{$labels\} $value\n";
}
for my $fam (keys %hist) {
	my $h = $hist{$fam};
	my @b = @{$h->{b} // []};
	die "$fam: no buckets\n" if !@b;
	die "$fam: last bucket is not +Inf\n" if $b[-1][0] ne '+Inf';
	for my $i (1 .. $#b) {
		die "$fam: le not increasing\n" if $b[$i][0] ne '+Inf' && $b[$i][0] <= $b[$i-1][0];
		die "$fam: buckets not cumulative\n" if $b[$i][1] < $b[$i-1][1];
	}
	die "$fam: no _sum/_count\n" if !defined $h->{sum} || !defined $h->{count};
	die "$fam: +Inf bucket != _count\n" if $b[-1][1] != $h->{count};
}
EOF

# val FILE SAMPLE: the value of SAMPLE ("name{labels}") in a parsed scrape
# (0 when absent).
val() {
	awk -v s="$2" '$1 == s { v = $2 } END { print (v == "" ? 0 : v) }' "$1"
}
# parse NAME: parse $T/NAME.txt into $T/NAME.vals; fails on a violation.
parse() {
	perl "$T/promparse.pl" "$T/$1.txt" >"$T/$1.vals" 2>"$T/$1.err" ||
		fail "/metrics is not valid Prometheus text: $(cat "$T/$1.err")"
}
# ge A B DESCRIPTION: A >= B (integers or decimals).
ge() {
	awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }' ||
		check "$3: $1 < $2" false
}

step "the scrape needs the token"
code=$(scrape "$T/noauth.txt")
[[ $code == 401 ]] || check "/metrics without the token: $code, wanted 401" false
code=$(scrape "$T/badauth.txt" -H "Authorization: Bearer not-the-token-at-all")
[[ $code == 401 ]] || check "/metrics with a wrong token: $code, wanted 401" false

step "traffic"
mount_mirrorfs --token-file "$TOK"
printf 'small file\n' >"$T/mnt/small"
head -c $((1024 * 1024)) /dev/urandom >"$T/mnt/big"
mkdir "$T/mnt/d"
cp "$T/mnt/big" "$T/mnt/d/big-copy"
sync_mirror 60
compare_trees

step "scrape and parse"
code=$(scrape "$T/m1.txt" -H "$AUTH")
[[ $code == 200 ]] || fail "/metrics with the token: $code"
grep -qi '^content-type: text/plain; version=0.0.4' <(curl -sS -D - -o /dev/null -H "$AUTH" "$URL/metrics") ||
	check "/metrics Content-Type is text/plain; version=0.0.4" false
parse m1
M=$T/m1.vals
# Ops come one by one (/v1/op) or several in a bundle (/v1/bundle); the
# four (two files, a folder, a copy) are timed one by one either way.
ge "$(($(val "$M" 'mirrord_requests_total{route="op",status="200"}') +
	$(val "$M" 'mirrord_requests_total{route="bundle",status="200"}')))" 2 "op and bundle requests"
ge "$(val "$M" 'mirrord_requests_total{route="metrics",status="401"}')" 2 "refused scrapes counted"
ge "$(val "$M" 'mirrord_requests_total{route="manifest",status="200"}')" 1 "manifest requests"
ge "$(val "$M" 'mirrord_auth_failures_total{}')" 2 "auth failures"
ge "$(val "$M" 'mirrord_received_bytes_total{}')" 1000000 "bytes received (1 MiB of random data)"
ge "$(val "$M" 'mirrord_chunks_received_total{}')" 2 "chunks received"
ge "$(val "$M" 'mirrord_apply_duration_seconds_count{}')" 4 "applies timed"
ge "$(val "$M" 'mirrord_dir_free_bytes{}')" 1 "DIR's free space"
ge "$(val "$M" 'mirrord_dir_size_bytes{}')" "$(val "$M" 'mirrord_dir_free_bytes{}')" "DIR's size"
ge "$(val "$M" 'mirrord_connections_active{}')" 1 "open connections (this scrape)"
for f in mirrord_requests_total mirrord_received_bytes_total mirrord_chunks_received_total \
	mirrord_chunks_reused_total mirrord_dedup_saved_bytes_total mirrord_auth_failures_total \
	mirrord_connections_cut_total mirrord_apply_duration_seconds mirrord_dir_free_bytes \
	mirrord_connections_active; do
	grep -q "^# TYPE $f " "$T/m1.txt" || check "/metrics lacks $f" false
done

step "a query for a chunk mirrord holds counts as reuse"
id=$(b2sum -l 256 "$T/backing/small" | cut -d' ' -f1)
size=$(stat -c %s "$T/backing/small")
answer=$(curl -sS -H "$AUTH" --data-binary "{\"ids\":[\"$id\"]}" "$URL/v1/chunks/query")
[[ $answer == *'"missing":[]'* ]] || check "query for small's chunk: $answer" false
scrape "$T/m2.txt" -H "$AUTH" >/dev/null
parse m2
s='mirrord_chunks_reused_total{}'
ge "$(val "$T/m2.vals" "$s")" "$(($(val "$T/m1.vals" "$s") + 1))" "$s after the query"
s='mirrord_dedup_saved_bytes_total{}'
ge "$(val "$T/m2.vals" "$s")" "$(($(val "$T/m1.vals" "$s") + size))" "$s after the query"
# Counters never go down between two scrapes of one mirrord.
while read -r s v; do
	[[ $s == mirrord_dir_* || $s == mirrord_connections_active* ]] && continue
	ge "$(val "$T/m2.vals" "$s")" "$v" "$s went down"
done <"$T/m1.vals"

step "--metrics-public"
unmount_mirrorfs
restart_mirrord --token-file "$TOK" --metrics-public
code=$(scrape "$T/m3.txt")
[[ $code == 200 ]] || check "public /metrics without the token: $code" false
parse m3
code=$(curl -sS -o /dev/null -w '%{http_code}' "$URL/v1/ping")
[[ $code == 401 ]] || check "with --metrics-public, /v1/ping still needs the token: $code" false
code=$(curl -sS -o /dev/null -w '%{http_code}' "$URL/v1/manifest")
[[ $code == 401 ]] || check "with --metrics-public, the manifest still needs the token: $code" false
stop_mirrord
t_done
