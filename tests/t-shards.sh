#!/bin/sh
# t-shards.sh -- Hugging Face model directories: sharded inputs (split
# differently in every model) give the merge that single files give; a
# directory output has a consistent index and shards that pass the strict
# reader; a failed run leaves no directory; compatibility errors name what
# does not fit.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

family "$tmp/one" --arch llama --dtype bf16 --layers 4 --hidden 32 --models 2 --seed 8
family "$tmp/dir" --arch llama --dtype bf16 --layers 4 --hidden 32 --models 2 --seed 8 --shards 3
cd "$tmp" || exit 99

# tensor -> XXH3 pairs of one or more manifests, sorted
hashes() { awk '/"name":/ {split($0, a, "\""); n = a[4]} /"xxh3_64":/ && n != "" {split($0, a, "\""); print n, a[4]; n = ""}' "$@" | sort; }

check "the shards of the three models are split at different tensors" \
	sh -c "! cmp -s dir/base/model.safetensors.index.json dir/ft1/model.safetensors.index.json && ! cmp -s dir/ft1/model.safetensors.index.json dir/ft2/model.safetensors.index.json"
"$LINES" merge -q -b one/base.safetensors --lines -w 1,2 -o single.safetensors one/ft1.safetensors one/ft2.safetensors
"$LINES" merge -q -b dir/base --lines -w 1,2 -o fromdirs.safetensors dir/ft1 dir/ft2/model.safetensors.index.json
check "3-shard directories (as a directory and as an index) give the bytes single files give" \
	cmp -s single.safetensors fromdirs.safetensors
"$LINES" merge -q -b dir/base --lines -w 1,2 -o mixed.safetensors one/ft1.safetensors dir/ft2
check "files and directories mix" cmp -s single.safetensors mixed.safetensors

# ---- a directory output ----------------------------------------------------------------
status 0 "-o merged/ writes a model directory" "$LINES" merge -v -b dir/base --lines -w 1,2 --shard-size 40K -o merged/ dir/ft1 dir/ft2
check "... of shards named model-0000i-of-0000K" test -f merged/model-00001-of-00003.safetensors -a -f merged/model-00003-of-00003.safetensors
check "... with the index" test -f merged/model.safetensors.index.json
check "... and the base's config.json and tokenizer.json" test -f merged/config.json -a -f merged/tokenizer.json
check "-v lists the files copied along" sh -c "grep -q 'config.json: copied' '$tmp/err' && grep -q 'tokenizer.json: copied' '$tmp/err'"
ok=0 okx=0
for s in merged/model-0000?-of-00003.safetensors; do
	"$LINES" inspect -q "$s" || ok=1
	"$LINES" verify -q "$s" || ok=1
	(cd merged && xxhsum -c "$(basename "$s").xxh128" >/dev/null 2>&1) || okx=1
done
ok $ok "every shard passes the strict reader and lines verify"
if command -v xxhsum >/dev/null 2>&1; then
	ok $okx "every shard passes xxhsum -c"
else
	skip "every shard passes xxhsum -c: xxhsum(1) is missing"
fi
n_index=$(grep -c '": "model-0000' merged/model.safetensors.index.json)
n_tensors=$(for s in merged/model-0000?-of-00003.safetensors; do "$LINES" inspect "$s" | tail -n +2 | grep -vc '^  metadata\|^block'; done | awk '{t += $1} END {print t}')
check "the index maps every tensor ($n_index), each to one shard, and the shards hold them ($n_tensors)" \
	test "$n_index" = 39 -a "$n_tensors" = 39
total=$(sed -n 's/.*"total_size": \([0-9]*\).*/\1/p' merged/model.safetensors.index.json)
data=$(for s in merged/model-0000?-of-00003.safetensors; do "$LINES" inspect --json "$s" | sed -n 's/.*"data_bytes": \([0-9]*\).*/\1/p'; done | awk '{t += $1} END {print t}')
check "metadata.total_size is the bytes of the tensors ($total = $data)" test "$total" = "$data"
check "the index has no duplicate tensor" sh -c "test \$(grep '\": \"model-0000' merged/model.safetensors.index.json | sort | uniq -d | wc -l) = 0"
hashes single.safetensors.manifest.json >h-single
hashes merged/*.manifest.json >h-dir
check "the merged tensors are those of the single-file merge, byte for byte" cmp -s h-single h-dir
status 0 "the output directory is itself a valid input" "$LINES" inspect merged
check "... the whole model" has "$tmp/out" "39 tensors"
status 0 "one shard is enough: model.safetensors without an index" "$LINES" merge -q -b dir/base --lines -o small/ dir/ft1 dir/ft2
check "... just so" sh -c "test -f small/model.safetensors -a ! -e small/model.safetensors.index.json"
mkdir empty
status 0 "an existing empty directory is an output directory" "$LINES" merge -q -b dir/base --no-copy -o empty dir/ft1
check "--no-copy leaves config.json behind" test -f empty/model.safetensors -a ! -e empty/config.json
status 2 "a directory that is not empty is refused" "$LINES" merge -b dir/base -o merged/ dir/ft1
check "... with the reason" has "$tmp/err" "exists and is not empty"
status 2 "--shard-size with a file output is a usage error" "$LINES" merge -b dir/base --shard-size 1G -o x.safetensors dir/ft1

# ---- a failed or interrupted run leaves no directory ------------------------------------
LINES_TEST_JOB_DELAY_US=20000 "$LINES" merge -q -b dir/base --chunk 16K --shard-size 40K -o gone/ dir/ft1 dir/ft2 2>/dev/null &
pid=$!
sleep 0.4
kill -TERM $pid
wait $pid
st=$?
ok $((st != 143)) "SIGTERM in the middle of a directory output: exit 143 (got $st)"
check "... no output directory" test ! -e gone
check "... no temporary directory" sh -c "! ls -a | grep -q 'gone.lines-'"
cp -r dir/ft2 broken
rm broken/model-00002-of-00003.safetensors
status 1 "a shard missing from a directory" "$LINES" merge -b dir/base -o never/ dir/ft1 broken
check "... is named" has "$tmp/err" "model-00002-of-00003.safetensors: cannot open"
check "... and no output directory is left" test ! -e never

# ---- index files that lie ------------------------------------------------------------------
cp -r dir/ft1 twice
sed 's/^  "weight_map": {/  "weight_map": {\n    "lm_head.weight": "model-00001-of-00003.safetensors",/' dir/ft1/model.safetensors.index.json >twice/model.safetensors.index.json
status 1 "a tensor mapped to two shards" "$LINES" inspect twice
check "... is refused" has "$tmp/err" "duplicate"
cp -r dir/ft1 moved
sed 's/"model.layers.0.input_layernorm.weight": "model-00001/"model.layers.0.input_layernorm.weight": "model-00002/' dir/ft1/model.safetensors.index.json >moved/model.safetensors.index.json
status 1 "a shard that does not hold what the index says" "$LINES" inspect moved
check "... names the tensor" has "$tmp/err" "model.layers.0.input_layernorm.weight"
cp -r dir/ft1 escape
sed 's/"model-00003-of-00003.safetensors"/"..\/..\/etc\/passwd"/' dir/ft1/model.safetensors.index.json >escape/model.safetensors.index.json
status 1 "a shard name that leaves the directory is refused" "$LINES" inspect escape
cp -r dir/ft1 size
sed 's/"total_size": [0-9]*/"total_size": 12/' dir/ft1/model.safetensors.index.json >size/model.safetensors.index.json
status 1 "a wrong metadata.total_size is refused" "$LINES" inspect size
cp -r dir/ft1 emptymap
printf '{"weight_map": {}}' >emptymap/model.safetensors.index.json
status 1 "an index that maps nothing (found by fuzzing)" "$LINES" inspect emptymap
check "... says so" has "$tmp/err" "maps no tensor"
mkdir nothing
status 1 "a directory without a model" "$LINES" inspect nothing
check "... says what is missing" has "$tmp/err" "neither model.safetensors nor model.safetensors.index.json"

# ---- compatibility, explained -------------------------------------------------------------
family "$tmp/voc" --arch llama --dtype bf16 --layers 4 --hidden 32 --vocab 200 --models 1 --seed 8 --shards 2
status 1 "a model with a larger vocabulary" "$LINES" merge -b dir/base -o never2/ voc/ft1
check "... is explained" has "$tmp/err" "the vocabularies differ (200 tokens, the base has 128)"
family "$tmp/deep" --arch llama --dtype bf16 --layers 6 --hidden 32 --models 1 --seed 8 --shards 2
status 1 "a model with more blocks" "$LINES" merge -b dir/base -o never3/ deep/ft1
check "... lists the extra tensors and the block counts" sh -c "grep -q 'model.layers.5.mlp.up_proj.weight: not in the base' '$tmp/err' && grep -q 'has 6 blocks, the base has 4' '$tmp/err'"
check "no output directory after any of these" test ! -e never2 -a ! -e never3

done_testing
