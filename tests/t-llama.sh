#!/bin/sh
# t-llama.sh -- llama.cpp loads what lines writes (issue 17): GGUF merges
# of a generated llama family (tests/gen-gguf: a base and two fine-tunes)
# in F16, Q8_0 and Q4_K are loaded by llama.cpp (node-llama-cpp 3.21.1's
# prebuilt CPU build, never built here) and generate 8 tokens greedily,
# twice, the same both times; @huggingface/gguf parses every output, and
# its metadata is the base's plus lines' keys (as `lines inspect --json`
# shows them). tests/llama-load.mjs does the node side.
#
# The npm packages (tests/node/package.json and its lock) are installed
# with `npm ci --ignore-scripts --omit=optional` into the build tree
# (tests/node-deps), or taken from LINES_NODE_MODULES (.ci/run installs
# them once). Without node and npm, or when the registry cannot be
# reached, the checks say SKIP with the reason: they never pass silently.
. "${TESTS_SRCDIR:-./tests}/lib.sh"
: "${GEN_GGUF:=./tests/gen-gguf}"
: "${LINES_BUILDDIR:=.}"
src=${TESTS_SRCDIR:-./tests}

skip_all() {
	for what in "F16 output" "Q8_0 output" "Q4_K output"; do
		skip "llama.cpp loads the $what: $1"
	done
	done_testing
	exit 0
}

command -v node >/dev/null 2>&1 || skip_all "node is not installed (Debian: nodejs)"
# node-llama-cpp 3.21.1 declares node >= 20 (Debian 12's nodejs is 18)
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
[ "$node_major" -ge 20 ] 2>/dev/null ||
	skip_all "node $(node --version 2>/dev/null) is older than node-llama-cpp 3.21.1's node >= 20"
command -v jq >/dev/null 2>&1 || skip_all "jq is not installed"
mods=${LINES_NODE_MODULES:-}
if [ -z "$mods" ]; then
	deps=$LINES_BUILDDIR/tests/node-deps
	mods=$deps/node_modules
	if ! [ -f "$mods/node-llama-cpp/package.json" ] ||
		! cmp -s "$src/node/package-lock.json" "$deps/package-lock.json"; then
		command -v npm >/dev/null 2>&1 || skip_all "npm is not installed"
		rm -rf "$deps" && mkdir -p "$deps" && cp "$src/node/package.json" \
			"$src/node/package-lock.json" "$deps/" || skip_all "cannot write $deps"
		if ! (cd "$deps" && npm ci --ignore-scripts --omit=optional --no-audit --no-fund) \
			>"$tmp/npm.log" 2>&1; then
			reason=$(grep -m1 -iE 'npm (error|ERR)' "$tmp/npm.log" | cut -c1-160)
			rm -rf "$deps"
			skip_all "npm ci failed (registry unreachable?): ${reason:-see the npm log}"
		fi
	fi
fi
[ -f "$mods/node-llama-cpp/package.json" ] || skip_all "no node-llama-cpp in $mods"
LINES_NODE_MODULES=$mods
export LINES_NODE_MODULES
node_load() { timeout 600 node "$src/llama-load.mjs" "$@"; }

# a llama family in F16 and one in Q8_0: rows of 256 elements, so every
# type (Q4_K's blocks of 256 too) applies to every matrix
for ty in f16 q8_0; do
	"$GEN_GGUF" --type $ty --layers 2 --hidden 256 --models 2 --seed 7 --out "$tmp/$ty" ||
		{ echo "Bail out! gen-gguf failed"; exit 99; }
done

# merge NAME TYPE_ID FAMILY ARGS...: merge FAMILY's models into NAME.gguf,
# then check it with lines verify, @huggingface/gguf and llama.cpp; the
# matrices must have ggml type TYPE_ID (the norms stay F32, type 0)
merge() {
	name=$1 id=$2 fam=$3
	shift 3
	out=$tmp/$name.gguf
	status 0 "$name: lines merge $* writes a GGUF" "$LINES" merge -q "$@" \
		-b "$tmp/$fam/base.gguf" -o "$out" "$tmp/$fam/ft1.gguf" "$tmp/$fam/ft2.gguf"
	status 0 "$name: lines verify" "$LINES" verify "$out"
	"$LINES" inspect --json "$out" >"$tmp/$name.json" 2>"$tmp/err"
	status 0 "$name: @huggingface/gguf parses it: the base's metadata plus lines' keys" \
		node_load parse "$out" "$tmp/$fam/base.gguf" "$tmp/$name.json"
	sed 's/^/# /' "$tmp/out"
	jqok "$name: the tensors are the base's; matrices of type $id, norms F32" \
		".ok and .tensors == 21 and .types == [0, $id] and .lines_keys >= 8"
	status 0 "$name: llama.cpp loads it and generates twice the same tokens greedily" \
		node_load generate "$out"
	sed 's/^/# /' "$tmp/out"
	jqok "$name: 8 tokens, the same twice" \
		'.ok and (.tokens | length) == 8 and .tokens == .again'
}

merge f16 1 f16 -m sum --lines
merge q8_0 8 f16 -m ties --lines --dtype q8_0
merge q8_0-base 8 q8_0 -m sum --lines
# split files (--shard-size): llama.cpp loads them from the first, and
# generates what it generates from the same merge in one file
mkdir -p "$tmp/split"
status 0 "split: lines merge --shard-size writes llama.cpp's split files" "$LINES" merge -q \
	-m sum --lines -b "$tmp/q8_0/base.gguf" --shard-size 1M -o "$tmp/split/m.gguf" \
	"$tmp/q8_0/ft1.gguf" "$tmp/q8_0/ft2.gguf"
first=$(ls "$tmp"/split/m-00001-of-0000?.gguf 2>/dev/null)
if [ -n "$first" ]; then
	status 0 "split: llama.cpp loads $(basename "$first") and the others, and generates" \
		node_load generate "$first"
	sed 's/^/# /' "$tmp/out"
	cp "$tmp/out" "$tmp/split.json"
	node_load generate "$tmp/q8_0-base.gguf" >"$tmp/one.json" 2>/dev/null
	jq -e --slurpfile one "$tmp/one.json" '.ok and .tokens == $one[0].tokens' \
		"$tmp/split.json" >/dev/null 2>&1
	ok $? "split: the tokens of the same merge in one file"
else
	ok 1 "split: no file m-00001-of-0000N.gguf"
fi
if "$LINES" merge -q -n --dtype q4_k -b "$tmp/f16/base.gguf" -o "$tmp/x.gguf" \
	"$tmp/f16/ft1.gguf" >/dev/null 2>&1; then
	merge q4_k 12 f16 -m ties --lines --dtype q4_k
else
	skip "llama.cpp loads the Q4_K output: this lines cannot write Q4_K yet"
fi

done_testing
