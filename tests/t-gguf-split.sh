#!/bin/sh
# t-gguf-split.sh -- split GGUF input: a model given as any file of
# llama.cpp's split files (NAME-0000i-of-0000N.gguf, as lines' own
# --shard-size writes them) is the whole set. Merging split models gives
# the bytes merging the unsplit files gives (F16 and Q8_0 families, sum and
# ties with --lines, base and fine-tunes split, any file of a set named,
# with -j 2 and uring or -j 1 --chunk 64K and mmap);
# lines inspect --json sees the set's tensors and lines verify still checks
# one file. A set with a file missing, a file of another set (split.count
# differs), a file in the wrong place (split.no) or one that is not GGUF is
# refused, exit 1, naming the file at fault, with nothing written; so is a
# split file on standard input. The single-file refusals are in the corpus
# (tests/gen-corpus.c, g-split-*).
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"
: "${GEN_GGUF:=$(dirname "$GEN")/gen-gguf}"

if ! command -v jq >/dev/null 2>&1; then
	echo "1..0 # SKIP jq is missing"
	exit 0
fi

mkdir "$tmp/o"
for ty in f16 q8_0; do
	f=$tmp/$ty
	"$GEN_GGUF" --type $ty --layers 4 --hidden 256 --models 2 --seed 5 --out "$f" ||
		{ echo "Bail out! gen-gguf failed"; exit 99; }
	# the unsplit files and the split ones, through the same passthrough
	# (Q8_0's blocks are decoded and encoded again: the same for both)
	mkdir "$f/one" "$f/sp"
	for m in base ft1 ft2; do
		"$LINES" merge -q -m passthrough -o "$f/one/$m.gguf" "$f/$m.gguf" &&
			"$LINES" merge -q -m passthrough --shard-size 300K -o "$f/sp/$m.gguf" "$f/$m.gguf" ||
			{ echo "Bail out! passthrough failed"; exit 99; }
	done
	nsp=$(ls "$f/sp"/base-*-of-*.gguf | wc -l)
	check "$ty: --shard-size 300K wrote a set of more than 2 files ($nsp)" test "$nsp" -gt 2
	last=$(printf '%05d' "$nsp")
	b1=$f/sp/base-00001-of-$last.gguf
	for m in "sum" "ties --density 0.5"; do
		# shellcheck disable=SC2086 # $m is the method and its option
		"$LINES" merge -q -m $m --lines -b "$f/one/base.gguf" -o "$f/one.gguf" \
			"$f/one/ft1.gguf" "$f/one/ft2.gguf"
		# shellcheck disable=SC2086
		status 0 "$ty -m $m: split base and models (given by their first, second and last files)" \
			"$LINES" merge -q -m $m --lines -b "$b1" -o "$f/sp.gguf" \
			"$f/sp/ft1-00002-of-$last.gguf" "$f/sp/ft2-$last-of-$last.gguf"
		check "... the same bytes as merging the unsplit files" cmp -s "$f/one.gguf" "$f/sp.gguf"
		rm -f "$f/sp.gguf"*
		# shellcheck disable=SC2086
		"$LINES" merge -q -m $m --lines -j 1 --chunk 64K --io mmap -b "$b1" -o "$f/sp.gguf" \
			"$f/sp/ft1-00002-of-$last.gguf" "$f/sp/ft2-$last-of-$last.gguf"
		check "... and with -j 1 --chunk 64K --io mmap" cmp -s "$f/one.gguf" "$f/sp.gguf"
		rm -f "$f/one.gguf"* "$f/sp.gguf"*
	done
	status 0 "$ty: lines inspect --json of a split file" "$LINES" inspect --json "$f/sp/ft1-00002-of-$last.gguf"
	"$LINES" inspect --json "$f/one/ft1.gguf" >"$tmp/one.json"
	jq -e --slurpfile one "$tmp/one.json" '.tensor_list == $one[0].tensor_list and
		.data_bytes == $one[0].data_bytes and .num_layers == $one[0].num_layers' "$tmp/out" >/dev/null
	ok $? "... shows the set: the unsplit file's tensors, data bytes and blocks"
done

# ---- broken sets (the Q8_0 family's) ----------------------------------------
f=$tmp/q8_0
last=$(printf '%05d' "$(ls "$f/sp"/base-*-of-*.gguf | wc -l)")
mkdir "$tmp/six"
"$LINES" merge -q -m passthrough --shard-size 600K -o "$tmp/six/ft1.gguf" "$f/ft1.gguf"
six=$(ls "$tmp/six"/ft1-*-of-*.gguf | wc -l)

# refused SET_FILE_AT_FAULT DESCRIPTION: a merge of the split ft1 (first
# file named) exits 1, names the file at fault first, writes nothing
refused() {
	status 1 "$2" "$LINES" merge -q -b "$f/sp/base-00001-of-$last.gguf" -o "$tmp/o/m.gguf" \
		"$tmp/bad/ft1-00001-of-$last.gguf"
	check "... names $(basename "$1")" has "$tmp/err" "lines: $1: "
	check "... and writes nothing" test -z "$(ls -A "$tmp/o")"
}
fresh() { rm -rf "$tmp/bad" && cp -r "$f/sp" "$tmp/bad"; }

fresh
rm "$tmp/bad/ft1-00002-of-$last.gguf"
refused "$tmp/bad/ft1-00001-of-$last.gguf" "a set with file 2 missing"
check "... and says which file is missing" has "$tmp/err" "ft1-00002-of-$last.gguf"
fresh
cp "$tmp/six/ft1-00002-of-$(printf '%05d' "$six").gguf" "$tmp/bad/ft1-00002-of-$last.gguf"
refused "$tmp/bad/ft1-00002-of-$last.gguf" "file 2 of another set (split.count $six, not $nsp)"
fresh
cp "$tmp/bad/ft1-00003-of-$last.gguf" "$tmp/bad/ft1-00002-of-$last.gguf"
refused "$tmp/bad/ft1-00002-of-$last.gguf" "file 3 of the set in file 2's place (split.no)"
fresh
cp "$f/one/ft1.gguf" "$tmp/bad/ft1-00002-of-$last.gguf"
refused "$tmp/bad/ft1-00002-of-$last.gguf" "an unsplit GGUF in file 2's place (no split.* keys)"
fresh
printf '\010\0\0\0\0\0\0\0{}      ' >"$tmp/bad/ft1-00002-of-$last.gguf"
refused "$tmp/bad/ft1-00002-of-$last.gguf" "a safetensors file in file 2's place"
status 1 "a split file on standard input is refused" \
	sh -c '"$1" inspect - <"$2"' sh "$LINES" "$f/sp/ft1-00001-of-$last.gguf"
check "... naming standard input" has "$tmp/err" "lines: (standard input): "
status 0 "lines verify checks one file of a split output by itself" \
	"$LINES" verify "$f/sp/ft1-00002-of-$last.gguf"

# a split output whose files are a split input's: refused before writing
fresh
md5sum "$tmp/bad"/ft1-*.gguf >"$tmp/ft1.md5"
status 2 "a split output named as the split input it merges is refused" "$LINES" merge -q \
	-b "$f/sp/base-00001-of-$last.gguf" --lines --alpha 0.5 --shard-size 300K \
	-o "$tmp/bad/ft1.gguf" "$tmp/bad/ft1-00001-of-$last.gguf" "$f/sp/ft2-00001-of-$last.gguf"
check "... and the input's files are untouched" md5sum -c --quiet "$tmp/ft1.md5"

done_testing
