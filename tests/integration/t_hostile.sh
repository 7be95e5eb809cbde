#!/bin/bash
# t_hostile: mirrord facing a hostile client, over a real socket (curl, and
# perl for raw HTTP).
#
# mirrord runs with a token (--token-file), a short --timeout and a small
# --max-per-ip. DIR gets some legitimate content first (a file, a folder,
# and two symlinks pointing at OUTSIDE, a folder next to DIR holding a
# "secret"); then copies of DIR and OUTSIDE are taken, and every hostile
# request below must get its status (with the JSON error object where HTTP
# still allows an answer) and leave DIR and OUTSIDE exactly as they were
# (treecmp against the copies):
#   - no token, a wrong token, malformed Authorization headers, on every
#     route: 401, and nothing in the answer about DIR;
#   - traversal in every form (../, /abs, a//b, ., a/./b, NUL, an over-long
#     component, an over-long path) in op paths and in the manifest query;
#   - chunks whose bytes do not match their id, truncated and malformed
#     frames; truncated, oversized and over-cap chunked bodies; malformed,
#     deeply nested and non-object JSON; unknown ops, routes and methods;
#     oversized headers;
#   - slow clients (headers, then a body, one byte a second): cut off
#     within a bound (measured; the test never sleeps to synchronise);
#   - one connection over the per-address cap: closed at once.
# Then the symlink escapes: every op aimed through DIR/evil (-> OUTSIDE)
# must leave OUTSIDE untouched (replacing the symlink inside DIR is the
# protocol's answer where it creates something). Last, TLS: a second
# mirrord with a certificate from a private CA: curl and mirrorfs refuse it
# with another CA (mirrorfs with a clear error at mount time), accept it
# with the right one, and a mount over HTTPS with the token mirrors; when the
# server's certificate changes to one the client cannot verify, status says
# so and the changes wait (nothing is dropped) until it can again.
#
# Server-side, so it runs in the FUSE pass only.
#
# timeout: 400

. "$(dirname "$0")/lib.sh"

need_mount
command -v perl >/dev/null || fail "perl is needed"
command -v openssl >/dev/null || fail "openssl is needed (apt-get install openssl)"
command -v b2sum >/dev/null || fail "b2sum is needed"
command -v xxd >/dev/null || fail "xxd is needed"

t_setup
OUT=$T/outside
mkdir -m 0755 "$OUT" "$OUT/sub"
echo "secret data" >"$OUT/secret"
echo "more" >"$OUT/sub/keep"
TOK=$T/token
TIMEOUT=3 # mirrord --timeout: the slow-client bound is built on it
start_mirrord --token-file "$TOK" --timeout "$TIMEOUT" --max-per-ip 6
[[ -s $TOK && $(stat -c %a "$TOK") == 600 ]] || fail "mirrord did not create a 0600 token file"
AUTH="Authorization: Bearer $(<"$TOK")"
HOSTPORT=127.0.0.1:$PORT

# ------------------------------------------------------------------ helpers

# req METHOD PATH [CURL ARGS...]: a request with the token; sets CODE, BODY
# and HDRS (the response headers).
req() {
	local method=$1 path=$2
	shift 2
	CODE=$(timeout -k 5 30 curl -sS --path-as-is -o "$T/body" -D "$T/hdrs" \
		-w '%{http_code}' -X "$method" -H "$AUTH" "$@" "$URL$path") ||
		fail "curl $method $path failed"
	BODY=$(<"$T/body")
	HDRS=$(<"$T/hdrs")
}

# noauth METHOD PATH [CURL ARGS...]: as req, without the token.
noauth() {
	local method=$1 path=$2
	shift 2
	CODE=$(timeout -k 5 30 curl -sS --path-as-is -o "$T/body" -D "$T/hdrs" \
		-w '%{http_code}' -X "$method" "$@" "$URL$path") ||
		fail "curl $method $path failed"
	BODY=$(<"$T/body")
	HDRS=$(<"$T/hdrs")
}

op() { req POST /v1/op -H 'Content-Type: application/json' --data-binary "$1"; }

# unchanged DESCRIPTION: DIR and OUTSIDE equal their copies.
unchanged() {
	check "$1: DIR unchanged" "$TREECMP" "$T/dir" "$T/dir.snap"
	check "$1: OUTSIDE unchanged" "$TREECMP" "$OUT" "$T/outside.snap"
}

# is_json_error: BODY is mirrord's error object, and says nothing of DIR.
is_json_error() {
	[[ $BODY == '{"ok":false,"error":"'* && $BODY == *'"code":"E'* &&
		$BODY == *'"errno":'* && $BODY != *"$T"* && $BODY != *secret* ]]
}

# expect CODE DESCRIPTION: the last answer has status CODE; a 4xx/5xx must
# carry the JSON error object; DIR and OUTSIDE are unchanged.
expect() {
	local code=$1 what=$2
	if [[ $CODE != "$code" ]]; then
		check "$what: status $CODE, wanted $code ($BODY)" false
	elif ((code >= 400)) && ! is_json_error; then
		check "$what: status $code without the JSON error object: $BODY" false
	fi
	unchanged "$what"
}

id_of() { b2sum -l 256 "$1" | cut -d' ' -f1; }
u32() { printf '%08x' "$1" | xxd -r -p; }

# frame FILE [ID]: one uncompressed frame of FILE's bytes (under its own id,
# or ID) on stdout.
frame() {
	local len
	len=$(stat -c %s "$1")
	printf '%s' "${2:-$(id_of "$1")}" | xxd -r -p
	u32 "$len"
	u32 "$len"
	cat "$1"
}

# Raw HTTP over a real socket (perl). Modes:
#   send FILE SECONDS    send FILE, half-close, print the status of the
#                        answer within SECONDS ("none" if the connection
#                        ended without one)
#   drip FILE BYTES N    send FILE at once, then BYTES one a second; print
#                        "cut S" (the server closed after S seconds),
#                        "answer CODE S" or "alive S" after N seconds
#   flood N              open N connections (kept, sending nothing), then
#                        one more; print "closed S" if that one is closed
#                        within 2 s (S seconds), else "open"; and "held K"
#                        (of the N, how many were still open then)
cat >"$T/raw.pl" <<'EOF'
use strict; use warnings;
use IO::Socket::INET; use IO::Select; use Time::HiRes qw(time sleep);
$SIG{PIPE} = 'IGNORE';
my ($hostport, $mode, @a) = @ARGV;
sub conn { IO::Socket::INET->new(PeerAddr => $hostport, Timeout => 5) or die "connect: $!" }
sub slurp { local $/; open(my $f, '<', $_[0]) or die "$_[0]: $!"; binmode $f; <$f> }
# 1 if $s has data or EOF pending within $t seconds; reads what is there.
sub status_line { my ($buf) = @_; return $buf =~ m{^HTTP/1\.[01] (\d{3})} ? $1 : undef }
if ($mode eq 'send') {
	my ($file, $secs) = @a;
	my $s = conn(); binmode $s;
	syswrite($s, slurp($file));
	shutdown($s, 1);
	my ($buf, $end) = ('', time + $secs);
	my $sel = IO::Select->new($s);
	while (time < $end && $sel->can_read($end - time)) {
		my $n = sysread($s, my $chunk, 65536);
		last if !$n;
		$buf .= $chunk;
	}
	print status_line($buf) // 'none', "\n";
} elsif ($mode eq 'drip') {
	my ($file, $bytes, $max) = @a;
	my $s = conn(); binmode $s;
	my $t0 = time;
	syswrite($s, slurp($file));
	my $sel = IO::Select->new($s);
	my $i = 0;
	while (time - $t0 < $max) {
		if ($sel->can_read(1)) {
			my $n = sysread($s, my $buf, 65536);
			my $code = $n ? status_line($buf) : undef;
			if (defined $code) { printf "answer %s %.1f\n", $code, time - $t0; exit 0 }
			printf "cut %.1f\n", time - $t0; exit 0;
		}
		my $w = syswrite($s, substr($bytes, $i++ % length($bytes), 1));
		if (!defined $w) { printf "cut %.1f\n", time - $t0; exit 0 }
	}
	printf "alive %.1f\n", time - $t0;
} elsif ($mode eq 'flood') {
	my ($n) = @a;
	my @held = map { conn() } 1 .. $n;
	my $t0 = time;
	my $extra = conn();
	my $sel = IO::Select->new($extra);
	if ($sel->can_read(2) && !sysread($extra, my $b, 1)) { printf "closed %.1f\n", time - $t0 }
	else { print "open\n" }
	my $alive = grep { !IO::Select->new($_)->can_read(0) } @held;
	print "held $alive\n";
} else { die "raw.pl: unknown mode $mode" }
EOF
raw() { timeout -k 5 60 perl "$T/raw.pl" "$HOSTPORT" "$@"; }

# ------------------------------------------------------- legitimate content
step "legitimate content, then the copies"
printf 'hello, mirror\n' >"$T/c1"
ID1=$(id_of "$T/c1")
frame "$T/c1" >"$T/f1"
req POST /v1/chunks -H 'Content-Type: application/octet-stream' --data-binary "@$T/f1"
[[ $CODE == 200 ]] || fail "upload a chunk: $CODE $BODY"
op "{\"op\":\"file\",\"path\":\"a/f\",\"mode\":420,\"mtime\":[1700000000,0],\"size\":14,\"chunks\":[[\"$ID1\",14]]}"
[[ $CODE == 200 ]] || fail "commit a/f: $CODE $BODY"
op "{\"op\":\"symlink\",\"path\":\"evil\",\"target\":\"$OUT\",\"mtime\":[1700000000,0]}"
[[ $CODE == 200 ]] || fail "symlink evil: $CODE $BODY"
op '{"op":"symlink","path":"evil2","target":"../outside","mtime":[1700000000,0]}'
[[ $CODE == 200 ]] || fail "symlink evil2: $CODE $BODY"
[[ -L $T/dir/evil && $(readlink "$T/dir/evil2") == ../outside ]] || fail "symlinks not in DIR"
cp -a "$T/dir" "$T/dir.snap"
cp -a "$OUT" "$T/outside.snap"
MKDIR='{"op":"mkdir","path":"new","mode":493,"mtime":[1,0]}'

# ------------------------------------------------------------------- tokens
step "no token, wrong tokens: 401 on every route"
for r in "GET /v1/ping" "GET /v1/manifest" "POST /v1/op" "POST /v1/chunks" \
	"POST /v1/chunks/query" "GET /metrics" "GET /v1/nothing" "DELETE /v1/op"; do
	noauth ${r% *} "${r#* }" --data-binary "$MKDIR"
	expect 401 "no token: $r"
	[[ $HDRS == *"WWW-Authenticate: Bearer"* ]] || check "no token: $r: WWW-Authenticate" false
done
good=$(<"$TOK")
for h in "Bearer ${good}x" "Bearer ${good%?}" "Bearer ${good^^}" "Basic $good" "Bearer" \
	"Bearer  " "$good" "Bearer x" "Bearer $good $good"; do
	noauth POST /v1/op -H "Authorization: $h" --data-binary "$MKDIR"
	expect 401 "wrong Authorization '${h:0:12}...'"
done
noauth GET "/v1/manifest?path=a" -H "Authorization: Bearer wrong-token-wrong-token"
expect 401 "manifest with a wrong token"
[[ $BODY != *'"p"'* ]] || check "manifest with a wrong token lists nothing" false
req GET /v1/ping
[[ $CODE == 200 ]] || check "the right token is accepted ($CODE)" false

# ---------------------------------------------------------------- traversal
step "traversal in op paths: 400"
long_comp=$(printf 'x%.0s' {1..256})
long_path=$(printf 'abcdefg/%.0s' {1..512})x
for p in "../x" "../outside/secret" "/abs" "/$OUT/secret" "a//b" "." ".." "a/." "a/./b" \
	"a/../b" "a/.." "a/" "$long_comp" "a/$long_comp" "$long_path" 'a\u0000b' '\u0000' \
	'a/\u0000/../b'; do
	op "{\"op\":\"mkdir\",\"path\":\"$p\",\"mode\":493,\"mtime\":[1,0]}"
	expect 400 "mkdir '${p:0:20}'"
	op "{\"op\":\"delete\",\"path\":\"$p\"}"
	expect 400 "delete '${p:0:20}'"
	op "{\"op\":\"file\",\"path\":\"$p\",\"mode\":420,\"mtime\":[1,0],\"size\":14,\"chunks\":[[\"$ID1\",14]]}"
	expect 400 "file '${p:0:20}'"
	op "{\"op\":\"rename\",\"from\":\"a/f\",\"to\":\"$p\",\"flags\":\"\"}"
	expect 400 "rename to '${p:0:20}'"
	op "{\"op\":\"rename\",\"from\":\"$p\",\"to\":\"b\",\"flags\":\"\"}"
	expect 400 "rename from '${p:0:20}'"
done
op '{"op":"symlink","path":"../evil3","target":"/etc","mtime":[1,0]}'
expect 400 "symlink outside DIR"
op '{"op":"meta","path":"../outside","type":"d","mode":511,"mtime":[1,0]}'
expect 400 "meta on ../outside"
op "{\"op\":\"file\",\"path\":\"a/g\",\"mode\":420,\"mtime\":[1,0],\"size\":14,\"base\":{\"path\":\"../outside/secret\",\"digest\":\"$ID1\"},\"edits\":[]}"
expect 400 "delta with a base outside DIR"

step "traversal in the manifest query: 400"
for q in "../" "..%2F" "%2E%2E" "%2E%2E%2Foutside" "/etc" "%2Fetc" "a//b" "." "a/./b" "a%00b" \
	"%00" "a/" "$long_comp" "$long_path"; do
	req GET "/v1/manifest?path=$q"
	expect 400 "manifest path '${q:0:20}'"
done
req GET "/v1/../v1/ping"
expect 404 "dot-dot in the URL itself"
req GET "/v1/ping/../manifest"
expect 404 "dot-dot after a route"

# ------------------------------------------------------------------- chunks
step "chunks that lie, frames that are cut or malformed"
head -c 5000 /dev/urandom >"$T/c2"
frame "$T/c2" "$ID1" >"$T/lying"
req POST /v1/chunks -H 'Content-Type: application/octet-stream' --data-binary "@$T/lying"
expect 400 "chunk whose bytes do not match its id"
[[ $BODY == *EBADMSG* ]] || check "lying chunk: EBADMSG" false
head -c 100 "$T/lying" >"$T/cut"
req POST /v1/chunks -H 'Content-Type: application/octet-stream' --data-binary "@$T/cut"
expect 400 "body ending inside a frame"
{ printf '%s' "$ID1" | xxd -r -p; u32 0; u32 0; } >"$T/zero"
req POST /v1/chunks -H 'Content-Type: application/octet-stream' --data-binary "@$T/zero"
expect 400 "frame of length 0"
{ printf '%s' "$ID1" | xxd -r -p; u32 14; u32 $((0x80000000 | 20)); head -c 20 /dev/urandom; } >"$T/badz"
req POST /v1/chunks -H 'Content-Type: application/octet-stream' --data-binary "@$T/badz"
expect 400 "zstd payload that is not zstd"
{ printf '%s' "$ID1" | xxd -r -p; u32 $((0x7fffffff)); u32 $((0x7fffffff)); } >"$T/huge"
req POST /v1/chunks -H 'Content-Type: application/octet-stream' --data-binary "@$T/huge"
expect 400 "frame announcing 2 GiB"
req POST /v1/chunks/query --data-binary "{\"ids\":[\"${ID1:0:63}\"]}"
expect 400 "query with a short id"
op "{\"op\":\"file\",\"path\":\"a/h\",\"mode\":420,\"mtime\":[1,0],\"size\":15,\"chunks\":[[\"$ID1\",14]]}"
expect 400 "file whose size is not the sum of its chunks"

# ------------------------------------------------------------------- bodies
step "truncated, oversized and over-cap bodies"
printf 'POST /v1/op HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n%s' \
	"$AUTH" '{"op":"mkdir","path":"trunc","mode":493,"mtime":[1,0]}' >"$T/trunc.req"
got=$(raw send "$T/trunc.req" 10)
[[ $got != 200 ]] || check "truncated body answered 200" false
unchanged "truncated body"
printf 'POST /v1/op HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Length: 67108865\r\n\r\n{' "$AUTH" >"$T/big.req"
got=$(raw send "$T/big.req" 10)
[[ $got == 413 ]] || check "Content-Length over the op cap: status $got, wanted 413" false
unchanged "Content-Length over the cap"
req POST /v1/op -H "Content-Length: 99999999999999999999" --data-binary "{}"
[[ $CODE == 413 || $CODE == 400 ]] || check "absurd Content-Length: status $CODE" false
unchanged "absurd Content-Length"
# A chunked body has no length up front: refused when it crosses the cap.
head -c $((6 * 1024 * 1024)) /dev/zero | tr '\0' ' ' >"$T/spaces"
req POST /v1/chunks/query -H "Transfer-Encoding: chunked" --data-binary "@$T/spaces"
expect 413 "chunked body over the query cap"
printf 'GET /v1/ping HTTP/1.1\r\nHost: x\r\n%s\r\nX-Big: %s\r\n\r\n' "$AUTH" \
	"$(head -c 70000 /dev/zero | tr '\0' a)" >"$T/bighdr.req"
got=$(raw send "$T/bighdr.req" 10)
[[ $got =~ ^4[0-9][0-9]$ || $got == none ]] || check "oversized header: status $got" false
[[ $got != 200 ]] || check "oversized header answered 200" false
unchanged "oversized header"

# --------------------------------------------------------------------- JSON
step "malformed, deep and unexpected JSON"
deep=$(printf '[%.0s' {1..5000})
for body in '{' '[' '' 'null' '"mkdir"' '42' '[]' '{"op":"mkdir"}' '{"op":"mkdir","path":5}' \
	'{"op":"nuke","path":"a"}' '{"op":"","path":"a"}' '{"op":null}' '{"path":"a"}' \
	"$deep" '{"op":"mkdir","path":"a","mode":493,"mtime":[1,0],"x":[[[[[[[[[[1]]]]]]]]]]}' \
	'{"op":"mkdir","path":"new","mode":-1,"mtime":[1,0]}' \
	'{"op":"mkdir","path":"new","mode":493,"mtime":[1,1000000000]}' \
	'{"op":"mkdir","path":"new","mode":493,"mtime":[1e300,0]}' \
	'{"op":"rename","from":"a/f","to":"b","flags":"sideways"}' \
	'{"op":"meta","path":"a","type":"x","mode":493,"mtime":[1,0]}'; do
	op "$body"
	expect 400 "op body '${body:0:30}'"
done
req POST /v1/chunks/query --data-binary '{"ids":"none"}'
expect 400 "query without an id list"
req POST /v1/chunks/query --data-binary "$deep"
expect 400 "query nested too deep"
python_ids=$(printf '"%s",' $(seq 65537 | sed "s/.*/$ID1/") | sed 's/,$//')
printf '{"ids":[%s]}' "$python_ids" >"$T/many"
req POST /v1/chunks/query --data-binary "@$T/many"
expect 413 "query with 65537 ids"

step "unknown routes and methods"
req GET /v1/nothing
expect 404 "unknown route"
req GET /v1/op
expect 405 "GET on a POST route"
[[ $HDRS == *"Allow: POST"* ]] || check "405 carries Allow" false
req PUT /v1/manifest --data-binary x
expect 405 "PUT on the manifest"
req GET "/v1/ping%00/../x"
expect 404 "route with a NUL"

# ------------------------------------------------------------- slow clients
step "slow clients: cut within a bound"
bound=$((TIMEOUT + 4)) # the limit, the watchdog's tick, and a loaded machine
printf 'G' >"$T/one"
got=$(raw drip "$T/one" "ET /v1/ping HTTP/1.1\r\nHost: x\r\nX-Slow: yyyyyyyyyyyyyyyyyyyyyyyyyyyy" 30)
step "header drip: $got"
if [[ $got =~ ^cut\ ([0-9]+)\.[0-9]$ ]]; then
	((BASH_REMATCH[1] < bound)) || check "header drip cut after ${BASH_REMATCH[1]} s (bound $bound s)" false
else
	check "header drip: '$got', wanted the connection cut" false
fi
printf 'POST /v1/op HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n' \
	"$AUTH" >"$T/slowbody.req"
got=$(raw drip "$T/slowbody.req" '{"op":"mkdir","path":"slow","mode":493,"mtime":[1,0]}                ' 30)
step "body drip: $got"
if [[ $got =~ ^cut\ ([0-9]+)\.[0-9]$ ]]; then
	((BASH_REMATCH[1] < bound)) || check "body drip cut after ${BASH_REMATCH[1]} s (bound $bound s)" false
else
	check "body drip: '$got', wanted the connection cut" false
fi
unchanged "slow clients"
req GET /v1/ping
[[ $CODE == 200 ]] || check "mirrord still answers after the slow clients ($CODE)" false

step "one connection over the per-address cap"
got=$(raw flood 6 | tr '\n' ' ')
step "flood: $got"
[[ $got == "closed "*" held 6 " ]] || check "7th connection from one address: '$got'" false

# -------------------------------------------------------- symlink escapes
step "symlink escapes: nothing reaches OUTSIDE"
# Put the symlinks back (an op below may have replaced evil by a folder).
reset_evil() {
	op '{"op":"delete","path":"evil"}'
	op "{\"op\":\"symlink\",\"path\":\"evil\",\"target\":\"$OUT\",\"mtime\":[1700000000,0]}"
	[[ -L $T/dir/evil ]] || fail "cannot put DIR/evil back"
}
outside_same() { check "$1: OUTSIDE unchanged" "$TREECMP" "$OUT" "$T/outside.snap"; }
# where_now DESCRIPTION: evil is a real folder inside DIR now, not a way out.
inside() {
	[[ -d $T/dir/evil && ! -L $T/dir/evil ]] || check "$1: DIR/evil is not a real folder" false
	outside_same "$1"
}
for e in evil evil2; do
	# (the chunk again: deleting the last file mirrord indexed it under
	# may have dropped it)
	req POST /v1/chunks -H 'Content-Type: application/octet-stream' --data-binary "@$T/f1"
	op "{\"op\":\"file\",\"path\":\"$e/secret\",\"mode\":420,\"mtime\":[1,0],\"size\":14,\"chunks\":[[\"$ID1\",14]]}"
	[[ $CODE == 200 ]] || check "file $e/secret: $CODE $BODY" false
	outside_same "file $e/secret"
	[[ ! -L $T/dir/$e && -f $T/dir/$e/secret ]] || check "file $e/secret landed inside DIR" false
	op "{\"op\":\"delete\",\"path\":\"$e\"}"
	op "{\"op\":\"symlink\",\"path\":\"$e\",\"target\":\"$(readlink "$T/dir.snap/$e")\",\"mtime\":[1700000000,0]}"
done
reset_evil
op '{"op":"mkdir","path":"evil/d","mode":511,"mtime":[1,0]}'
[[ $CODE == 200 ]] || check "mkdir evil/d: $CODE $BODY" false
inside "mkdir evil/d"
reset_evil
op '{"op":"rename","from":"a/f","to":"evil/f","flags":""}'
[[ $CODE == 200 ]] || check "rename a/f evil/f: $CODE $BODY" false
inside "rename into evil/"
[[ -f $T/dir/evil/f ]] || check "rename into evil/: the file is in DIR/evil" false
op '{"op":"rename","from":"evil/f","to":"a/f","flags":""}'
reset_evil
op '{"op":"symlink","path":"evil/l","target":"/etc/passwd","mtime":[1,0]}'
[[ $CODE == 200 ]] || check "symlink evil/l: $CODE $BODY" false
inside "symlink evil/l"
reset_evil
op '{"op":"rename","from":"evil/secret","to":"stolen","flags":""}'
[[ $CODE == 404 ]] || check "rename evil/secret out: status $CODE, wanted 404" false
[[ ! -e $T/dir/stolen ]] || check "rename evil/secret out: nothing stolen" false
outside_same "rename out of evil/"
for p in evil/secret evil/sub evil/sub/keep evil2/secret; do
	op "{\"op\":\"delete\",\"path\":\"$p\"}"
	[[ $CODE == 200 ]] || check "delete $p: $CODE $BODY" false
	outside_same "delete $p"
done
op '{"op":"meta","path":"evil","type":"d","mode":511,"mtime":[1,0]}'
[[ $CODE == 404 ]] || check "meta evil as a folder: status $CODE, wanted 404" false
op '{"op":"meta","path":"evil/secret","type":"f","mode":511,"mtime":[1,0]}'
[[ $CODE == 404 ]] || check "meta evil/secret: status $CODE, wanted 404" false
op '{"op":"meta","path":"evil","type":"l","mode":0,"mtime":[5,0]}'
[[ $CODE == 200 ]] || check "meta evil as a symlink (its own mtime): $CODE $BODY" false
outside_same "meta through evil"
[[ $(stat -c %Y "$OUT") == $(stat -c %Y "$T/outside.snap") ]] || check "OUTSIDE's own mtime unchanged" false
for q in evil evil/sub evil2; do
	req GET "/v1/manifest?path=$q"
	[[ $CODE == 200 && $BODY != *secret* && $BODY != *keep* ]] ||
		check "manifest of $q lists OUTSIDE: $CODE $BODY" false
done
op "{\"op\":\"file\",\"path\":\"a/g\",\"mode\":420,\"mtime\":[1,0],\"size\":14,\"base\":{\"path\":\"evil/secret\",\"digest\":\"$ID1\"},\"edits\":[]}"
[[ $CODE == 409 ]] || check "delta based on evil/secret: status $CODE, wanted 409" false
outside_same "symlink escapes"

# ---------------------------------------------------------------------- TLS
step "TLS: a private CA"
ssl() { openssl "$@" >>"$T/openssl.log" 2>&1 || fail "openssl $1 failed (see $T/openssl.log)"; }
ssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/ca.key" -out "$T/ca.pem" -days 2 -subj /CN=mirror-test-ca
ssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/ca2.key" -out "$T/ca2.pem" -days 2 -subj /CN=other-ca
ssl req -newkey rsa:2048 -nodes -keyout "$T/srv.key" -out "$T/srv.csr" -subj /CN=127.0.0.1
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$T/san"
ssl x509 -req -in "$T/srv.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
	-out "$T/srv.pem" -days 2 -extfile "$T/san"
mkdir -m 0755 "$T/dir-tls"
root=()
[[ $(id -u) == 0 ]] && root=(--allow-root)
t_bg "$MIRRORD" "$T/dir-tls" --listen 127.0.0.1:0 --port-file "$T/port-tls" \
	--state-dir "$T/dstate-tls" --token-file "$TOK" --tls-cert "$T/srv.pem" --tls-key "$T/srv.key" \
	--log-level debug "${root[@]}" >>"$T/mirrord-tls.log" 2>&1
tls_pid=$T_BG_PID
wait_for -t 20 -m "the HTTPS mirrord's port file" test -s "$T/port-tls"
TLS_URL=https://127.0.0.1:$(<"$T/port-tls")
wait_for -t 20 -m "the HTTPS mirrord" curl -sf --cacert "$T/ca.pem" -H "$AUTH" "$TLS_URL/v1/ping" -o /dev/null
rc=0
curl -s --cacert "$T/ca2.pem" -H "$AUTH" "$TLS_URL/v1/ping" -o /dev/null || rc=$?
[[ $rc == 60 ]] || check "curl with another CA: exit $rc, wanted 60 (certificate refused)" false
rc=0
curl -s -H "$AUTH" "$TLS_URL/v1/ping" -o /dev/null || rc=$?
[[ $rc == 60 ]] || check "curl with the system's CAs: exit $rc, wanted 60" false
rc=0
curl -s -H "$AUTH" "http://127.0.0.1:$(<"$T/port-tls")/v1/ping" -o /dev/null || rc=$?
((rc != 0)) || check "plain HTTP to the HTTPS port got an answer" false

step "mirrorfs refuses the certificate from another CA at mount time"
mnt_fails() { # WANT ARGS...: the mount must fail with WANT in the message
	local want=$1 rc=0
	shift
	timeout -k 5 30 "$MIRRORFS" "$T/backing" "$T/mnt" --server "$TLS_URL" \
		--state-dir "$T/cstate-tls" "$@" >"$T/mnt.out" 2>&1 </dev/null || rc=$?
	if ((rc == 0 || rc >= 124)) || ! grep -qiF -- "$want" "$T/mnt.out"; then
		check "mount $*: status $rc, wanted a failure naming '$want': $(head -c 300 "$T/mnt.out")" false
	fi
	! is_mounted "$T/mnt" || { fusermount3 -u -z "$T/mnt"; check "mount $* mounted" false; }
}
mnt_fails "cannot be trusted" --token-file "$TOK" --cacert "$T/ca2.pem"
mnt_fails "--cacert" --token-file "$TOK"
echo "wrong-token-wrong-token" >"$T/badtok"
chmod 600 "$T/badtok"
mnt_fails "refused the token" --token-file "$T/badtok" --cacert "$T/ca.pem"
mnt_fails "requires a token" --cacert "$T/ca.pem"
mnt_fails "$T/nope" --token-file "$T/nope" --cacert "$T/ca.pem"

step "mirrorfs over HTTPS with the token"
URL=$TLS_URL
echo "over tls" >"$T/backing/t"
mount_mirrorfs --token-file "$TOK" -o "cacert=$T/ca.pem"
mkdir "$T/mnt/d"
echo "written through the mount" >"$T/mnt/d/f"
sync_mirror 60
check "mirror over HTTPS" "$TREECMP" "$T/backing" "$T/dir-tls"
mirror_status >"$T/status.out" 2>&1 || true
grep -q "reachable" "$T/status.out" || check "status over HTTPS: $(cat "$T/status.out")" false

# tls_mirrord CERT KEY: (re)start the HTTPS mirrord on its port.
tls_mirrord() {
	t_bg "$MIRRORD" "$T/dir-tls" --listen "127.0.0.1:${TLS_URL##*:}" --state-dir "$T/dstate-tls" \
		--token-file "$TOK" --tls-cert "$1" --tls-key "$2" --log-level debug "${root[@]}" \
		>>"$T/mirrord-tls.log" 2>&1
	tls_pid=$T_BG_PID
	wait_for -t 20 -m "the HTTPS mirrord on its port" \
		curl -sk -o /dev/null "$TLS_URL/v1/ping"
}
step "the server's certificate changes to one the client cannot verify"
kill -TERM "$tls_pid"
t_reap "$tls_pid" 20 || fail "the HTTPS mirrord did not stop"
ssl req -newkey rsa:2048 -nodes -keyout "$T/srv2.key" -out "$T/srv2.csr" -subj /CN=127.0.0.1
ssl x509 -req -in "$T/srv2.csr" -CA "$T/ca2.pem" -CAkey "$T/ca2.key" -CAcreateserial \
	-out "$T/srv2.pem" -days 2 -extfile "$T/san"
tls_mirrord "$T/srv2.pem" "$T/srv2.key"
echo "kept while the server cannot be trusted" >"$T/mnt/d/g"
last_error_names_cert() {
	mirror_status >"$T/status.out" 2>&1 || true
	grep -qi "last error:.*certificate" "$T/status.out" && grep -q "unreachable" "$T/status.out"
}
wait_for -t 30 -m "status naming the certificate" last_error_names_cert
step "status: $(grep -i 'last error' "$T/status.out")"
[[ ! -e $T/dir-tls/d/g ]] || check "a change reached a server that cannot be trusted" false
kill -TERM "$tls_pid"
t_reap "$tls_pid" 20 || fail "the HTTPS mirrord did not stop"
tls_mirrord "$T/srv.pem" "$T/srv.key"
sync_mirror 60
check "the change kept meanwhile arrives once the server is trusted again" \
	"$TREECMP" "$T/backing" "$T/dir-tls"
unmount_mirrorfs
kill -TERM "$tls_pid"
t_reap "$tls_pid" 20 || fail "the HTTPS mirrord did not stop"
outside_same "the end"
stop_mirrord
t_done
