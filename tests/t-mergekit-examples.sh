#!/bin/sh
# t-mergekit-examples.sh -- mergekit's own example configurations
# (tests/mergekit-examples/, copied verbatim from mergekit's examples/) run
# unchanged: their hub ids are found in a Hugging Face cache made here
# ($HF_HUB_CACHE, one snapshot per id, pointing at a generated family), and
# each run writes byte for byte what the equivalent command line, naming
# the generated models directly, writes; a configuration with no command
# line (slices) is checked tensor by tensor: gradient-slerp's against
# slerps with each tensor's t, the frankenmerge's against its sources.
# Values are read from --json.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

ex=${TESTS_SRCDIR:-$(dirname "$0")}/mergekit-examples
family "$tmp/f" --arch llama --dtype bf16 --layers 4 --hidden 32 --models 3 --seed 21 --shards 2 \
	>/dev/null
HF_HUB_CACHE=$tmp/hub
export HF_HUB_CACHE

# hub ID DIR: the cache's snapshot of ID (branch main) is DIR
hub() {
	repo=$HF_HUB_CACHE/models--$(printf '%s' "$1" | sed 's|/|--|')
	mkdir -p "$repo/refs" "$repo/snapshots" || exit 99
	echo 0123456789abcdef >"$repo/refs/main"
	ln -s "$2" "$repo/snapshots/0123456789abcdef" || exit 99
}
hub mistralai/Mistral-7B-v0.1 "$tmp/f/base"
hub mistralai/Mistral-7B-Instruct-v0.2 "$tmp/f/ft1"
hub BioMistral/BioMistral-7B "$tmp/f/ft2"
# the 13B examples name models of 40 blocks (their layer_range)
family "$tmp/g" --arch llama --dtype bf16 --layers 40 --hidden 32 --models 3 --seed 22 --shards 1 \
	>/dev/null
hub psmathur/orca_mini_v3_13b "$tmp/g/ft1"
hub WizardLM/WizardLM-13B-V1.2 "$tmp/g/ft2"
hub garage-bAInd/Platypus2-13B "$tmp/g/ft3"
G1=$tmp/g/ft1/model-00001-of-00001.safetensors
G3=$tmp/g/ft3/model-00001-of-00001.safetensors

# example NAME ARGS...: --config NAME.yml writes what ARGS write
example() {
	name=$1
	shift
	rm -f "$tmp/c.st" "$tmp/l.st"
	status 0 "$name.yml runs unchanged" "$LINES" merge -q --config "$ex/$name.yml" -o "$tmp/c.st"
	"$LINES" merge -q "$@" -o "$tmp/l.st" 2>"$tmp/err"
	check "... the bytes of the command line $*" cmp -s "$tmp/c.st" "$tmp/l.st"
	status 0 "... -n --json" "$LINES" merge -n --json --config "$ex/$name.yml" -o "$tmp/c.st"
}

# ties, density 0.5 and weight 0.5 each, normalize: false, float16 (mergekit
# trims per tensor)
example bio-merge -b "$tmp/f/base" -m ties --trim tensor --no-normalize -w 0.5,0.5 --density 0.5 \
	--dtype f16 "$tmp/f/ft1" "$tmp/f/ft2"
jqok "... ties over the two models, their weights and density, per-tensor trim, F16" \
	'.method == "ties" and .weights == [0.5, 0.5] and .ties.trim == "tensor" and
	 (.ties.density == 0.5 or .ties.density == [0.5, 0.5]) and
	 all(.tensors[] | select(.merged); .dtype == "F16")'

# a directory output: the base's snapshot's files come along, and a hub id
# names the tokenizer source as it names a model
rm -rf "$tmp/bio"
status 0 "bio-merge.yml into a directory" "$LINES" merge -q --config "$ex/bio-merge.yml" -o "$tmp/bio/"
check "... with the base's config.json and tokenizer.json from the cache" \
	sh -c "cmp -s '$tmp/f/base/tokenizer.json' '$tmp/bio/tokenizer.json' &&
	test \"\$(jq -S 'del(.torch_dtype)' '$tmp/f/base/config.json')\" = \"\$(jq -S 'del(.torch_dtype)' '$tmp/bio/config.json')\""
jqok "... config.json naming the dtype: float16 written (mergekit's)" '.torch_dtype == "float16"' "$tmp/bio/config.json"
printf '{"chat_template":"instruct"}\n' >"$tmp/f/ft1/tokenizer_config.json"
{ cat "$ex/bio-merge.yml"; echo "tokenizer_source: mistralai/Mistral-7B-Instruct-v0.2"; } >"$tmp/bio-tok.yml"
rm -rf "$tmp/bio2"
status 0 "... with tokenizer_source: a hub id of the same vocabulary" "$LINES" merge -q \
	--config "$tmp/bio-tok.yml" -o "$tmp/bio2/"
check "... its tokenizer files, the same model" sh -c "cmp -s '$tmp/f/ft1/tokenizer_config.json' '$tmp/bio2/tokenizer_config.json' &&
	cmp -s '$tmp/bio/model.safetensors' '$tmp/bio2/model.safetensors'"

# linear of three models without a base, weights 1, 0.3, 0.5, normalized
example linear -m linear --normalize -w 1,0.3,0.5 --dtype f16 "$tmp/g/ft1" "$tmp/g/ft2" "$tmp/g/ft3"
jqok "... linear over the three models, their weights" \
	'.method == "linear" and .weights == [1, 0.3, 0.5] and (.models | length) == 3'

# gradient-slerp: one slice of blocks [0, 40) of both models, slerp from
# orca (the base) toward Platypus, t by filter: self_attn and mlp follow
# their gradients over the block's place in the slice (i / 39; tensors
# outside the blocks at 0), the rest 0.5; float16
status 0 "gradient-slerp.yml runs unchanged (-n --json)" "$LINES" merge -n --json \
	--config "$ex/gradient-slerp.yml" -o "$tmp/gs.st"
jqok "... every tensor's t is its filter's gradient at its block's place in the slice" '
	def grad(g; t): (t * ((g | length) - 1)) as $s | ($s | floor) as $i |
		if $i >= (g | length) - 1 then g[-1] else (1 - ($s - $i)) * g[$i] + ($s - $i) * g[$i + 1] end;
	def want: .name as $n | (if .block == null then 0 else .block / 39 end) as $t |
		if ($n | test("self_attn")) then grad([0, 0.5, 0.3, 0.7, 1]; $t)
		elif ($n | test("mlp")) then grad([1, 0.5, 0.7, 0.3, 0]; $t)
		else 0.5 end;
	[.tensors[] | select(.merged) | .t == want] | length > 200 and all'
jq -r '.tensors[] | select(.merged) | "\(.name) \(.t)"' "$tmp/out" >"$tmp/tt"
status 0 "... the merge" "$LINES" merge -q --config "$ex/gradient-slerp.yml" -o "$tmp/gs.st"
offsets "$tmp/gs.st" >"$tmp/og"
bad=0 count=0
for v in $(cut -d' ' -f2 "$tmp/tt" | sort -u); do
	"$LINES" merge -q -b "$G1" -m slerp --t "$v" --dtype f16 -o "$tmp/u.st" "$G3" 2>>"$tmp/err" ||
		bad=$((bad + 1))
	offsets "$tmp/u.st" >"$tmp/ou"
	awk -v v="$v" '$2 == v {print $1, $1}' "$tmp/tt" >"$tmp/pairs"
	count=$((count + $(wc -l <"$tmp/pairs")))
	same_tensors "$tmp/gs.st" "$tmp/og" "$tmp/u.st" "$tmp/ou" "$tmp/pairs"
	bad=$((bad + st_bad))
done
ok $bad "... each of the $count merged tensors has the bytes of a slerp with its t (t-slerp checks those against float64)"

# orcamini-platy-44layer: passthrough of orca's blocks [0, 24) and
# Platypus's [20, 40) in float16: 44 blocks, each tensor its source's
# tensor in F16 (each source model passed through whole to F16 alone)
rm -rf "$tmp/pt"
status 0 "orcamini-platy-44layer.yml runs unchanged" "$LINES" merge -q \
	--config "$ex/orcamini-platy-44layer.yml" -o "$tmp/pt/"
pt=$tmp/pt/model.safetensors
[ -f "$pt" ] || pt=$(ls "$tmp"/pt/model-*.safetensors | head -n 1)
"$LINES" merge -q -m passthrough --dtype f16 -o "$tmp/g1.st" "$G1" 2>>"$tmp/err"
"$LINES" merge -q -m passthrough --dtype f16 -o "$tmp/g3.st" "$G3" 2>>"$tmp/err"
G1=$tmp/g1.st G3=$tmp/g3.st
offsets "$pt" >"$tmp/op"
offsets "$G1" >"$tmp/o1"
offsets "$G3" >"$tmp/o3"
# the pairs: blocks [0, 24) and what is outside the blocks but the final
# norm and the head from orca; blocks [24, 44) from Platypus's [20, 40)
awk '{n = $1; blk = n; if (sub(/^model\.layers\./, "", blk) && sub(/\..*/, "", blk)) {
		if (blk + 0 < 24) print n, n > g1; else {s = n; sub(/^model\.layers\.[0-9]+\./, "model.layers." (blk - 4) ".", s); print n, s > g3}
	} else if (n ~ /embed/) print n, n > g1; else print n, n > g3}' \
	g1="$tmp/p1" g3="$tmp/p3" "$tmp/op"
count=$(($(wc -l <"$tmp/p1") + $(wc -l <"$tmp/p3")))
same_tensors "$pt" "$tmp/op" "$G1" "$tmp/o1" "$tmp/p1"
bad=$st_bad
same_tensors "$pt" "$tmp/op" "$G3" "$tmp/o3" "$tmp/p3"
bad=$((bad + st_bad))
ok $bad "... each of its $count tensors is its source's tensor (F16), blocks renumbered"
blocks=$(sed -n 's/^model\.layers\.\([0-9]*\)\..*/\1/p' "$tmp/op" | sort -n | uniq | wc -l)
ok $((blocks != 44)) "... 44 blocks ($blocks)"
check "... config.json says 44 hidden layers" \
	sh -c "jq -e '.num_hidden_layers == 44' '$tmp/pt/config.json' >/dev/null"

done_testing
