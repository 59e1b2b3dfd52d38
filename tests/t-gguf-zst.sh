#!/bin/sh
# t-gguf-zst.sh -- a compressed GGUF output (OUT.gguf.zst): the GGUF a
# .gguf output gets, through the zstd sink as a .safetensors.zst output
# is; lines verify checks it (zstd frames, XXH3-128, manifest, each
# tensor) and finds a damaged byte; lines inspect reads it; merged again as
# an input it gives what the uncompressed file gives. --shard-size with a
# .gguf.zst output is a usage error (split files are .gguf).
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"
: "${GEN_GGUF:=$(dirname "$GEN")/gen-gguf}"

if ! command -v jq >/dev/null 2>&1; then
	echo "1..0 # SKIP jq is missing"
	exit 0
fi

f=$tmp/f
"$GEN_GGUF" --type q8_0 --layers 2 --hidden 256 --models 2 --seed 11 --out "$f" ||
	{ echo "Bail out! gen-gguf failed"; exit 99; }
mkdir "$tmp/o"
merge() { "$LINES" merge -q --lines -b "$f/base.gguf" "$@" "$f/ft1.gguf" "$f/ft2.gguf"; }

status 0 "merge -o OUT.gguf.zst" merge -o "$tmp/o/m.gguf.zst"
merge -o "$tmp/o/m.gguf"
check "... it is compressed (zstd's magic)" \
	test "$(head -c 4 "$tmp/o/m.gguf.zst" | od -An -tx1 | tr -d ' ')" = 28b52ffd
check "... and smaller than the .gguf" \
	test "$(stat -c %s "$tmp/o/m.gguf.zst")" -lt "$(stat -c %s "$tmp/o/m.gguf")"
if command -v zstd >/dev/null 2>&1; then
	zstd -q -d -c "$tmp/o/m.gguf.zst" >"$tmp/d.gguf"
	check "... zstd -d gives the .gguf output byte for byte" cmp -s "$tmp/d.gguf" "$tmp/o/m.gguf"
else
	skip "zstd -d gives the .gguf output: zstd is missing"
fi
jqok "... its manifest says zstd" '.compression == "zstd"' "$tmp/o/m.gguf.zst.manifest.json"
status 0 "lines verify OUT.gguf.zst (sidecar, manifest, every tensor)" "$LINES" verify \
	"$tmp/o/m.gguf.zst"
# a manifest entry changed: verify must have compared the tensors
jq '.tensors[3].xxh3_64 = "0000000000000000"' "$tmp/o/m.gguf.zst.manifest.json" >"$tmp/man.json"
status 1 "... and finds a tensor whose hash differs from the manifest's" "$LINES" verify \
	--manifest "$tmp/man.json" "$tmp/o/m.gguf.zst"
status 0 "lines inspect --json OUT.gguf.zst" "$LINES" inspect --json "$tmp/o/m.gguf.zst"
"$LINES" inspect --json "$tmp/o/m.gguf" >"$tmp/plain.json"
jq -e --slurpfile p "$tmp/plain.json" '.format == "gguf" and .tensor_list == $p[0].tensor_list and
	.metadata == $p[0].metadata' "$tmp/out" >/dev/null
ok $? "... the .gguf's tensors and metadata"

# merged again, compressed or not: the same bytes
"$LINES" merge -q -b "$f/base.gguf" -o "$tmp/a.gguf" "$tmp/o/m.gguf" "$f/ft1.gguf"
status 0 "OUT.gguf.zst as an input" "$LINES" merge -q -b "$f/base.gguf" -o "$tmp/b.gguf" \
	"$tmp/o/m.gguf.zst" "$f/ft1.gguf"
check "... merges as the .gguf does" cmp -s "$tmp/a.gguf" "$tmp/b.gguf"

status 0 "--zstd-level 5" merge --zstd-level 5 -o "$tmp/o/m5.gguf.zst"
status 0 "... verifies" "$LINES" verify "$tmp/o/m5.gguf.zst"

# one byte changed in the middle of the compressed file
cp "$tmp/o/m.gguf.zst" "$tmp/bad.gguf.zst"
cp "$tmp/o/m.gguf.zst.xxh128" "$tmp/bad.gguf.zst.xxh128"
cp "$tmp/o/m.gguf.zst.manifest.json" "$tmp/bad.gguf.zst.manifest.json"
half=$(($(stat -c %s "$tmp/bad.gguf.zst") / 2))
printf '\377' | dd of="$tmp/bad.gguf.zst" bs=1 seek="$half" conv=notrunc 2>/dev/null
status 1 "lines verify finds a damaged byte of a .gguf.zst" "$LINES" verify "$tmp/bad.gguf.zst"

rm -rf "$tmp/o"/*
status 2 "--shard-size with a .gguf.zst output is a usage error" \
	merge --shard-size 100K -o "$tmp/o/s.gguf.zst"
check "... and writes nothing" test -z "$(ls -A "$tmp/o")"

done_testing
