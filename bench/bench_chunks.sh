#!/bin/bash
# bench_chunks.sh: measure chunk-size choices (docs/CHUNKING.md) on
# scenarios of the wire benchmark: for each, the bytes a change costs
# (new chunk bytes) and the chunk list metadata (76 bytes a chunk in JSON).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /var/tmp/mirrorfs-chunks.XXXXXX)
trap 'rm -rf "$W"' EXIT
cc -O2 -Wall -Wextra -Werror -I"$ROOT/common" -o "$W/cs" "$ROOT/bench/chunk_sizes.c" \
	"$ROOT/common/chunker.c" "$ROOT/common/hash.c" -lsodium
head -c $((256 << 20)) /dev/urandom >"$W/rand"
cp "$W/rand" "$W/over"
dd if=/dev/urandom of="$W/over" bs=4096 count=1 seek=$((128 << 8)) conv=notrunc status=none
{ head -c 100 /dev/urandom; cat "$W/rand"; } >"$W/ins"
{ cat "$W/rand"; head -c $((1 << 20)) /dev/urandom; } >"$W/app"
tar -C /usr -cf "$W/inc.tar" include 2>/dev/null
# a "new version" of a source tree: every 50th line of every header edited
mkdir -p "$W/x" && tar -C "$W/x" -xf "$W/inc.tar"
find "$W/x" -type f -name '*.h' -print0 | xargs -0 -r sed -i '0~50s/$/ \/* edited *\//'
tar -C "$W/x" -cf "$W/inc2.tar" include
for s in "over:4 KiB overwritten in 256 MiB" "ins:100 bytes inserted at the start of 256 MiB" \
	"app:1 MiB appended to 256 MiB" "inc2:/usr/include tarball, every 50th line edited"; do
	f=${s%%:*}
	base=rand
	[ "$f" = inc2 ] && base=inc.tar
	[ "$f" = inc2 ] && f=inc2.tar
	echo "== ${s#*:}"
	"$W/cs" "$W/$base" "$W/$f"
	echo
done
# How far a 4 KiB overwrite disturbs the boundaries, over many offsets.
cc -O2 -Wall -Wextra -Werror -I"$ROOT/common" -o "$W/cl" "$ROOT/bench/chunk_locality.c" \
	"$ROOT/common/chunker.c" "$ROOT/common/hash.c" -lsodium
echo "== 4 KiB overwrites at random offsets"
"$W/cl"
