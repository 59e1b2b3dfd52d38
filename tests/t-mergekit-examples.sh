#!/bin/sh
# t-mergekit-examples.sh -- mergekit's own example configurations
# (tests/mergekit-examples/, copied verbatim from mergekit's examples/) run
# unchanged: their hub ids are found in a Hugging Face cache made here
# ($HF_HUB_CACHE, one snapshot per id, pointing at a generated family), and
# each run writes byte for byte what the equivalent command line, naming
# the generated models directly, writes. Values are read from --json.
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
hub psmathur/orca_mini_v3_13b "$tmp/f/ft1"
hub WizardLM/WizardLM-13B-V1.2 "$tmp/f/ft2"
hub garage-bAInd/Platypus2-13B "$tmp/f/ft3"

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
	sh -c "cmp -s '$tmp/f/base/config.json' '$tmp/bio/config.json' &&
	cmp -s '$tmp/f/base/tokenizer.json' '$tmp/bio/tokenizer.json'"
printf '{"chat_template":"instruct"}\n' >"$tmp/f/ft1/tokenizer_config.json"
{ cat "$ex/bio-merge.yml"; echo "tokenizer_source: mistralai/Mistral-7B-Instruct-v0.2"; } >"$tmp/bio-tok.yml"
rm -rf "$tmp/bio2"
status 0 "... with tokenizer_source: a hub id of the same vocabulary" "$LINES" merge -q \
	--config "$tmp/bio-tok.yml" -o "$tmp/bio2/"
check "... its tokenizer files, the same model" sh -c "cmp -s '$tmp/f/ft1/tokenizer_config.json' '$tmp/bio2/tokenizer_config.json' &&
	cmp -s '$tmp/bio/model.safetensors' '$tmp/bio2/model.safetensors'"

# linear of three models without a base, weights 1, 0.3, 0.5, normalized
example linear -m linear --normalize -w 1,0.3,0.5 --dtype f16 "$tmp/f/ft1" "$tmp/f/ft2" "$tmp/f/ft3"
jqok "... linear over the three models, their weights" \
	'.method == "linear" and .weights == [1, 0.3, 0.5] and (.models | length) == 3'

done_testing
