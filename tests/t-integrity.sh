#!/bin/sh
# t-integrity.sh -- zstd output and input, the XXH3-128 sidecar and the
# manifest, lines verify naming what was damaged, and lines as a filter.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

have() { command -v "$1" >/dev/null 2>&1; }
family "$tmp/f" --arch llama --dtype bf16 --layers 4 --hidden 64 --models 2 --seed 3
family "$tmp/r" --arch llama --dtype bf16 --layers 4 --hidden 64 --models 2 --seed 3 --reverse
cd "$tmp" || exit 99
b=f/base.safetensors
m1=f/ft1.safetensors
m2=f/ft2.safetensors

# ---- zstd output, sidecars, manifest ---------------------------------------------
"$LINES" merge -q -b $b --lines -w 1,2 -o plain.safetensors $m1 $m2
"$LINES" merge -q -b $b --lines -w 1,2 -o packed.safetensors.zst $m1 $m2
check "a file output gets OUT.xxh128 and OUT.manifest.json" \
	test -s plain.safetensors.xxh128 -a -s plain.safetensors.manifest.json
check "so does a .zst output" test -s packed.safetensors.zst.xxh128 -a -s packed.safetensors.zst.manifest.json
if have zstd; then
	check "zstd -t accepts the .zst output" zstd -q -t packed.safetensors.zst
	zstd -q -d -c packed.safetensors.zst >unpacked.safetensors
	check "zstd -d gives the very bytes of the uncompressed run" cmp -s unpacked.safetensors plain.safetensors
else
	skip "zstd -t accepts the .zst output: zstd(1) is missing"
	skip "zstd -d gives the very bytes of the uncompressed run: zstd(1) is missing"
fi
if have xxhsum; then
	check "xxhsum -c accepts the sidecar of the plain output" sh -c "xxhsum -c plain.safetensors.xxh128 >/dev/null"
	check "xxhsum -c accepts the sidecar of the .zst output" sh -c "xxhsum -c packed.safetensors.zst.xxh128 >/dev/null"
else
	skip "xxhsum -c accepts the sidecar of the plain output: xxhsum(1) is missing"
	skip "xxhsum -c accepts the sidecar of the .zst output: xxhsum(1) is missing"
fi
check "the manifest records alpha, the norms and every tensor's XXH3" \
	sh -c "grep -q '\"alpha\": 0\\.' plain.safetensors.manifest.json && grep -q '\"norm_sum\": [0-9]' plain.safetensors.manifest.json && test \$(grep -c '\"xxh3_64\"' plain.safetensors.manifest.json) -eq 40"
check "the manifest records the inputs with their sizes" \
	grep -q "\"bytes\": $(stat -c %s $b)" plain.safetensors.manifest.json
status 0 "lines verify accepts both outputs" "$LINES" verify plain.safetensors packed.safetensors.zst
check "... and says what it checked" sh -c "grep -q '^plain.safetensors: OK (39 tensors, XXH3-128, manifest)' '$tmp/out' && grep -q '^packed.safetensors.zst: OK (39 tensors, zstd frames, XXH3-128, manifest)' '$tmp/out'"
status 2 "--zstd-level without a .zst output is a usage error" "$LINES" merge -b $b --zstd-level 3 -o x.safetensors $m1
"$LINES" merge -q -b $b --lines -w 1,2 --zstd-level 19 -o l19.safetensors.zst $m1 $m2
if have zstd; then
	check "--zstd-level 19 writes the same bytes once decompressed" \
		sh -c "zstd -q -d -c l19.safetensors.zst | cmp -s - plain.safetensors"
else
	skip "--zstd-level 19 writes the same bytes once decompressed: zstd(1) is missing"
fi

# ---- one damaged byte, anywhere --------------------------------------------------------
flip() { # flip FILE OFFSET: change one byte
	printf '\125' | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
	orig=$(dd if="$1" bs=1 skip="$2" count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
	[ "$orig" = 85 ] || return 0
	printf '\252' | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null # it was 0x55 already
}
damaged() { # damaged NAME SRC: a copy with its sidecars, under NAME
	cp "$2" "$1"
	cp "$2.manifest.json" "$1.manifest.json"
	sed "s/  .*/  $1/" "$2.xxh128" >"$1.xxh128"
}
# tensor N of the manifest (1-based): its name and where its data starts
nth() { awk -v n="$1" -v w="$2" '/"name":/ {k++; if (k == n) {split($0, a, "\""); name = a[4]}} /"offset":/ && k == n {gsub(/[^0-9]/, ""); off = $0} END {if (w == "name") print name; else print off}' plain.safetensors.manifest.json; }
hdr=$(( $(od -An -tu8 -N8 plain.safetensors | tr -d ' ') + 8 ))
nt=$(grep -c '"xxh3_64"' plain.safetensors.manifest.json)
nt=$((nt - 1)) # the header's own hash is counted too
for where in header first middle last; do
	damaged d.safetensors plain.safetensors
	case $where in
	header) off=20 name=header ;;
	first) off=$((hdr + 5)) name=$(nth 1 name) ;;
	middle) k=$((nt / 2)); off=$((hdr + $(nth $k off) + 7)) name=$(nth $k name) ;;
	last) off=$(($(stat -c %s plain.safetensors) - 1)) name=$(nth "$nt" name) ;;
	esac
	flip d.safetensors $off
	status 1 "a byte changed in the $where ($off): lines verify fails" "$LINES" verify d.safetensors
	check "... and names $name" has "$tmp/err" "$name"
done
size=$(stat -c %s packed.safetensors.zst)
for off in 12 $((size / 2)) $((size - 3)); do
	damaged d.safetensors.zst packed.safetensors.zst
	flip d.safetensors.zst $off
	status 1 "a byte changed inside the zstd stream ($off of $size): lines verify fails" "$LINES" verify d.safetensors.zst
	check "... and says where" grep -q 'zstd\|header\|differ' "$tmp/err"
done
# the manifest's XXH3-128 of the whole file, where no checksum file is
damaged m.safetensors.zst packed.safetensors.zst
rm -f m.safetensors.zst.xxh128
status 0 "a .zst with its manifest alone passes lines verify" "$LINES" verify m.safetensors.zst
if have zstd && have xxhsum; then
	# the same tensors in other bytes: only the whole file's hash tells
	zstd -q -d -c packed.safetensors.zst | zstd -q -5 -c >m.safetensors.zst
	status 1 "... recompressed (the same tensors, other bytes), it fails by the manifest's XXH3-128" \
		"$LINES" verify m.safetensors.zst
	check "... which the message names" has "$tmp/err" "manifest's"
	cp m.safetensors.zst.manifest.json m.json
	jq --arg h "$(xxhsum -H2 m.safetensors.zst 2>/dev/null | cut -c1-32)" '.xxh3_128 = $h' m.json \
		>m.safetensors.zst.manifest.json
	status 0 "... and passes with a manifest that has its hash" "$LINES" verify m.safetensors.zst
	jq '.xxh3_128 = "0123"' m.json >m.safetensors.zst.manifest.json
	status 1 "... and fails with a manifest whose xxh3_128 is not 32 hexadecimal digits" \
		"$LINES" verify m.safetensors.zst
	check "... which the message says" has "$tmp/err" "32 hexadecimal"
	# the tensors' hashes are of the uncompressed bytes: a decompressed
	# .zst passes its manifest by them, the whole file's hash set aside
	zstd -q -d -c packed.safetensors.zst >dz.safetensors
	status 0 "a decompressed .zst passes the .zst's manifest (--manifest) by its tensors" \
		"$LINES" verify --manifest packed.safetensors.zst.manifest.json dz.safetensors
else
	skip "a recompressed .zst fails by the manifest's XXH3-128: zstd(1) or xxhsum(1) is missing"
	skip "... which the message names: zstd(1) or xxhsum(1) is missing"
	skip "... and passes with a manifest that has its hash: zstd(1) or xxhsum(1) is missing"
	skip "... and fails with a malformed xxh3_128: zstd(1) or xxhsum(1) is missing"
	skip "... which the message says: zstd(1) or xxhsum(1) is missing"
	skip "a decompressed .zst passes the .zst's manifest: zstd(1) or xxhsum(1) is missing"
fi
cp plain.safetensors alone.safetensors
status 0 "a file without sidecars is checked for structure" "$LINES" verify alone.safetensors
check "... and says so" has "$tmp/out" "no manifest"
printf 'not a model' >junk.safetensors
status 1 "a file that is not safetensors fails verification" "$LINES" verify junk.safetensors
printf '{"metadata": {}, "weight_map": {}}' >model.safetensors.index.json
status 2 "a sharded model's index given to lines verify is a usage error" "$LINES" verify model.safetensors.index.json
status 2 "... so is a manifest" "$LINES" verify plain.safetensors.manifest.json
status 2 "... and a checksum file" "$LINES" verify plain.safetensors.xxh128
status 0 "... and the file they belong to still passes" "$LINES" verify plain.safetensors

# ---- --no-checksum, --checksum-file ----------------------------------------------------
cp plain.safetensors.xxh128 stale.safetensors.xxh128
"$LINES" merge -q -b $b --lines --no-checksum -o stale.safetensors $m1 $m2
check "--no-checksum writes no sidecar and removes a stale one" \
	test ! -e stale.safetensors.xxh128 -a ! -e stale.safetensors.manifest.json
"$LINES" merge -q -b $b --lines -w 1,2 --checksum-file out.xxh128 --manifest out.json -o - $m1 $m2 >stdout.safetensors
if have xxhsum; then
	check "--checksum-file with -o -: the XXH3-128 of the bytes on stdout" \
		sh -c "test \"\$(cut -c1-32 out.xxh128)\" = \"\$(xxhsum -H2 stdout.safetensors 2>/dev/null | cut -c1-32)\""
else
	skip "--checksum-file with -o -: the XXH3-128 of the bytes on stdout: xxhsum(1) is missing"
fi
check "--manifest with -o -: the manifest verifies the bytes" \
	"$LINES" verify -q --checksum-file out.xxh128 --manifest out.json stdout.safetensors
"$LINES" merge -q -b $b --lines -w 1,2 --manifest only.json -o - $m1 $m2 >stdout2.safetensors
check "--manifest alone with -o -: its xxh3_128 is the hash of the bytes on stdout" \
	sh -c "test \"\$(jq -r .xxh3_128 only.json)\" = \"\$(cut -c1-32 out.xxh128)\""
status 2 "--no-checksum with --checksum-file is a usage error" "$LINES" merge -b $b --no-checksum --checksum-file x -o y.st $m1

# ---- a filter: standard input and output, zstd input -----------------------------------
check "-o - gives the bytes of a file output" cmp -s stdout.safetensors plain.safetensors
"$LINES" merge -q -b $b --lambda 0.5 -o ref.safetensors $m1 $m2
cat $m1 | "$LINES" merge -q -b $b --lambda 0.5 -o - - $m2 >piped.safetensors
check "a model on standard input: the same bytes" cmp -s piped.safetensors ref.safetensors
cat $b | "$LINES" merge -q -b - --lambda 0.5 $m1 $m2 >piped2.safetensors
check "the base on standard input: the same bytes" cmp -s piped2.safetensors ref.safetensors
status 2 "standard input twice is a usage error" sh -c "cat $m1 | '$LINES' merge -b - -o x.st - $m2"
status 2 "standard input with a norm pass is a usage error" sh -c "cat $m1 | '$LINES' merge -b $b --lines -w 1,2 -o x.st - $m2"
check "... that says why" has "$tmp/err" "norm pass"
status 1 "standard input stored in another order is refused" sh -c "cat r/ft1.safetensors | '$LINES' merge -b $b --lambda 0.5 -o x.st - $m2"
check "... with the reason" has "$tmp/err" "cannot be read in one pass"
if have zstd; then
	zstd -q -f $m1 -o ft1.safetensors.zst
	zstd -q -f r/ft1.safetensors -o rev.safetensors.zst
	"$LINES" merge -q -b $b --lambda 0.5 -o z.safetensors ft1.safetensors.zst $m2
	check "a .zst model: the same bytes" cmp -s z.safetensors ref.safetensors
	"$LINES" merge -q -b $b --lines -w 1,2 -o z2.safetensors ft1.safetensors.zst $m2
	"$LINES" merge -q -b $b --lines -w 1,2 -o p2.safetensors $m1 $m2
	check "a .zst model read twice (norm pass, then writing): the same bytes" cmp -s z2.safetensors p2.safetensors
	"$LINES" merge -q -b $b --lambda 0.5 -o z3.safetensors rev.safetensors.zst $m2
	"$LINES" merge -q -b $b --lambda 0.5 -o p3.safetensors r/ft1.safetensors $m2
	check "a .zst model in another order (decompressed to a temporary file): the same bytes" \
		cmp -s z3.safetensors p3.safetensors
	zstd -q -f $b -o base.safetensors.zst
	zstdcat ft1.safetensors.zst | "$LINES" merge -q -b base.safetensors.zst --lambda 0.5 - $m2 | zstd -q -T0 >filtered.safetensors.zst
	check "zstdcat | lines | zstd: a pipeline gives the same bytes" sh -c "zstd -q -d -c filtered.safetensors.zst | cmp -s - ref.safetensors"
	head -c 100000 ft1.safetensors.zst >cut.safetensors.zst
	status 1 "a truncated .zst model is an error" "$LINES" merge -b $b -o x.st cut.safetensors.zst $m2
	check "... and leaves no output" test ! -e x.st
	# one byte changed in the middle: every run names the damage (another
	# worker's "stopped" no longer wins the race to report)
	zmid=$(($(stat -c %s ft1.safetensors.zst) / 2))
	zbyte=$(od -An -tu1 -j $zmid -N1 ft1.safetensors.zst | tr -d ' ')
	cp ft1.safetensors.zst flip.safetensors.zst
	printf "\\$(printf %03o $((zbyte ^ 255)))" |
		dd of=flip.safetensors.zst bs=1 seek=$zmid conv=notrunc 2>/dev/null
	named=0
	for i in $(seq 40); do
		"$LINES" merge -q -j 8 -b flip.safetensors.zst -o x.st $m2 2>err.txt
		grep -q 'flip.safetensors.zst' err.txt && named=$((named + 1))
	done
	check "a damaged .zst base is named in each of 40 runs" test "$named" -eq 40
	check "... and leaves no output" test ! -e x.st
else
	skip ".zst models as inputs (8 checks): zstd(1) is missing"
fi

# ---- a reader that goes away --------------------------------------------------------------
"$LINES" merge -b $b --lines $m1 $m2 2>sigpipe.err | head -c 100 >/dev/null
check "a closed pipe ends lines quietly" test ! -s sigpipe.err

done_testing
