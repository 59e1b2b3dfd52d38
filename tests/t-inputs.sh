#!/bin/sh
# t-inputs.sh -- inputs as users have them (issue 14): integer-quantized
# checkpoints refused up front, likely mistakes (an option twice, the base
# given as a model, a model twice, copied tensors that differ in several
# models), index files as others write them, and the smaller defects seen
# in use (verify on a directory, numbers, messages, help).
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

family "$tmp/a" --arch llama --dtype bf16 --layers 3 --hidden 16 --models 2 --seed 4 >/dev/null 2>&1
b=$tmp/a/base.safetensors
m1=$tmp/a/ft1.safetensors
m2=$tmp/a/ft2.safetensors
o=$tmp/o.st

# ---- 8: integer-quantized layouts ---------------------------------------------------
family "$tmp/q" --arch gptq --dtype f16 --layers 2 --hidden 16 --models 1 --seed 4 >/dev/null 2>&1
status 1 "a GPTQ checkpoint is refused" "$LINES" merge -b "$tmp/q/base.safetensors" -o "$o" "$tmp/q/ft1.safetensors"
check "... naming what was found" sh -c "grep -q 'qweight' '$tmp/err' && grep -q 'dequantize' '$tmp/err'"
check "... for each input" sh -c "test \$(grep -c 'quantized with' '$tmp/err') -eq 2"
check "... and nothing is written" test ! -e "$o"
family "$tmp/s" --arch llama --dtype bf16 --layers 2 --hidden 16 --models 1 --seed 4 --shards 1 >/dev/null 2>&1
sed 's/^{/{"quantization_config": {"quant_method": "awq", "bits": 4}, /' "$tmp/s/ft1/config.json" >"$tmp/cfg" &&
	mv "$tmp/cfg" "$tmp/s/ft1/config.json"
status 1 "a model whose config.json names an integer scheme is refused" \
	"$LINES" merge -b "$tmp/s/base" -o "$o" "$tmp/s/ft1"
check "... naming the scheme" has "$tmp/err" "quantized with awq"
sed 's/"awq"/"fp8"/' "$tmp/s/ft1/config.json" >"$tmp/cfg" && mv "$tmp/cfg" "$tmp/s/ft1/config.json"
status 0 "an FP8 quantization_config is not an integer scheme" \
	"$LINES" merge -q -b "$tmp/s/base" -o "$o" "$tmp/s/ft1"
rm -f "$o"
# compressed-tensors' packed integers (its FP8 scheme is item 7: t-fp8)
printf '\110\000\000\000\000\000\000\000{"m.weight_packed":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}    \001\002\003\004\005\006\007\010' >"$tmp/packed.st"
status 1 "compressed-tensors packed integers are refused" "$LINES" merge -b "$tmp/packed.st" -o "$o" "$tmp/packed.st"
check "... naming them" has "$tmp/err" "weight_packed"
check "... and nothing is written" test ! -e "$o"

# ---- 10: likely mistakes ----------------------------------------------------------------
for opt in "-b $b" "-o $o" "-m sum" "--alpha 0.5" "--lambda 1" "-w 1,1"; do
	status 2 "${opt%% *} given twice is a usage error" "$LINES" merge $opt $opt -b "$b" -o "$o" "$m1" "$m2"
done
check "... that says so" has "$tmp/err" "given twice"
status 0 "the base given as a model merges" "$LINES" merge -b "$b" -o "$o" "$m1" "$b"
check "... with a warning" sh -c "grep 'warning' '$tmp/err' | grep -q 'is the base'"
cp "$b" "$tmp/copy.st"
status 0 "a copy of the base given as a model" "$LINES" merge -b "$b" -o "$o" "$m1" "$tmp/copy.st"
check "... is recognized by its bytes" sh -c "grep 'warning' '$tmp/err' | grep -q 'is the base'"
status 0 "the same model twice (through another path)" "$LINES" merge -b "$b" -o "$o" "$m1" "$tmp/a/../a/ft1.safetensors"
check "... warns that it counts twice" sh -c "grep 'warning' '$tmp/err' | grep -q 'counted twice'"
status 0 "two different models: no such warning" "$LINES" merge -b "$b" -o "$o" "$m1" "$m2"
check "... (none)" sh -c "! grep -q 'counted twice\|is the base' '$tmp/err'"
family "$tmp/i" --arch clip --dtype f32 --layers 2 --hidden 16 --models 2 --seed 1 --int-differ >/dev/null 2>&1
status 0 "an I64 tensor that differs in two models" \
	"$LINES" merge -b "$tmp/i/base.safetensors" -o "$o" "$tmp/i/ft1.safetensors" "$tmp/i/ft2.safetensors"
check "... is a warning for every model" sh -c "grep 'differs from the base' '$tmp/err' | grep -q ft1 && grep 'differs from the base' '$tmp/err' | grep -q ft2"

# ---- 10: NaN and infinite values, counted per input; task vectors that are all zero ------
family "$tmp/sp" --arch llama --dtype bf16 --layers 2 --hidden 16 --models 2 --seed 3 --specials >/dev/null 2>&1
status 0 "inputs with NaN and infinities merge" "$LINES" merge -b "$tmp/sp/base.safetensors" -o "$tmp/sp.st" "$tmp/sp/ft1.safetensors" "$tmp/sp/ft2.safetensors"
check "... with a warning per input that has them" sh -c "test \$(grep -c 'NaN or infinite' '$tmp/err') -eq 3"
jqok "... counted per input in the manifest (2, 3, 2: what gen-family put there)" \
	'[.run.inputs[].nonfinite] == [2, 3, 2]' "$tmp/sp.st.manifest.json"
status 0 "... and in the --json summary" "$LINES" merge --json -b "$tmp/sp/base.safetensors" -o "$tmp/sp.st" "$tmp/sp/ft1.safetensors" "$tmp/sp/ft2.safetensors"
jqok "... (nonfinite: [2, 3, 2])" '.nonfinite == [2, 3, 2]'
status 1 "--strict makes them an error" "$LINES" merge --strict -b "$tmp/sp/base.safetensors" -o "$tmp/sp2.st" "$tmp/sp/ft1.safetensors" "$tmp/sp/ft2.safetensors"
check "... and nothing is written" sh -c "! ls '$tmp'/sp2.st* 2>/dev/null"
# the merge's own overflow: 3e38 + 3e38 is infinite in F32; the infinity of
# an input that reaches the output is the input's, not an overflow
h='8\000\000\000\000\000\000\000{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}} '
printf "$h"'\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000' >"$tmp/ob.st"
printf "$h"'\000\000\200?\346\261a\177\346\261a\377\000\000\200\177' >"$tmp/o1.st"
printf "$h"'\000\000\200?\346\261a\177\346\261a\177\000\000\200?' >"$tmp/o2.st"
status 0 "a sum that overflows the output's type" "$LINES" merge --json -b "$tmp/ob.st" -o "$tmp/ov.st" "$tmp/o1.st" "$tmp/o2.st"
jqok "... counts the one value (overflow: 1; nonfinite: [0, 1, 0])" '.overflow == 1 and .nonfinite == [0, 1, 0]'
check "... with a warning" sh -c "grep 'warning' '$tmp/err' | grep -q 'every input is finite'"
status 0 "... none where nothing overflows" "$LINES" merge --json -b "$tmp/ob.st" -o "$tmp/ov.st" "$tmp/o1.st" "$tmp/ob.st"
jqok "... (overflow: 0)" '.overflow == 0'
status 0 "... a sweep counts each output's" "$LINES" merge --json -b "$tmp/ob.st" --lambda 0.5,1,2 -o "$tmp/ov{lambda}.st" "$tmp/o1.st" "$tmp/o2.st"
jqok "... (2 of 3 overflow: 2)" '.overflow == 2'
status 0 "slerp, which spreads an input's infinity over the tensor (a norm)" \
	"$LINES" merge --json -m slerp --t 0.5 -b "$tmp/o1.st" -o "$tmp/ov.st" "$tmp/o2.st"
jqok "... counts the input's, not an overflow" '.overflow == 0 and .nonfinite == [1, 0]'
status 0 "model_stock, likewise (a dot)" "$LINES" merge --json -m model_stock -b "$tmp/ob.st" -o "$tmp/ov.st" "$tmp/o1.st" "$tmp/o2.st"
jqok "... (overflow: 0)" '.overflow == 0 and .nonfinite == [0, 1, 0]'
: "${GEN_GGUF:=$(dirname "$GEN")/gen-gguf}"
"$GEN_GGUF" --type q8_0 --layers 2 --hidden 64 --models 1 --seed 1 --out "$tmp/gq" >/dev/null 2>&1
cp "$tmp/gq/ft1.gguf" "$tmp/gq/nan.gguf"
hb=$("$LINES" inspect --json "$tmp/gq/ft1.gguf" | jq .header_bytes)
# the first block's F16 scale (token_embd.weight, Q8_0, the first tensor) made NaN
printf '\000\176' | dd of="$tmp/gq/nan.gguf" bs=1 seek="$hb" conv=notrunc 2>/dev/null
status 0 "a Q8_0 input whose block decodes to NaN, written as F16" \
	"$LINES" merge --json -b "$tmp/gq/base.gguf" --dtype f16 -o "$tmp/gq.gguf" "$tmp/gq/nan.gguf"
jqok "... counts its 32 values as the input's, not an overflow" '.overflow == 0 and .nonfinite == [0, 32]'
# outputs encoded from the method's F32 values (block types, float8):
# the inputs' NaN are counted there too
status 0 "... written as Q8_0 (the base's type)" \
	"$LINES" merge --json -b "$tmp/gq/base.gguf" -o "$tmp/gq8.gguf" "$tmp/gq/nan.gguf"
jqok "... counts them the same (nonfinite: [0, 32])" '.nonfinite == [0, 32]'
status 1 "... and --strict refuses it" "$LINES" merge --strict -b "$tmp/gq/base.gguf" -o "$tmp/gq8s.gguf" "$tmp/gq/nan.gguf"
family "$tmp/f8" --arch llama --dtype bf16 --layers 2 --hidden 32 --models 1 --seed 3 --fp8 block >/dev/null
cp "$tmp/f8/ft1.safetensors" "$tmp/f8/nan.safetensors"
# five NaN (E4M3 0x7f) at the start of the first float8 tensor
off=$("$LINES" inspect --json "$tmp/f8/ft1.safetensors" | jq '.header_bytes as $h |
	reduce .tensor_list[] as $t ({o: $h, r: null};
		if .r == null and $t.dtype == "F8_E4M3" then .r = .o else . end | .o += $t.bytes) | .r')
printf '\177\177\177\177\177' | dd of="$tmp/f8/nan.safetensors" bs=1 seek="$off" conv=notrunc 2>/dev/null
status 0 "a float8 input with 5 NaN, written as float8 (--dtype fp8)" "$LINES" merge --json -m sum \
	--dtype fp8 -b "$tmp/f8/base.safetensors" -o "$tmp/f8.st" "$tmp/f8/nan.safetensors"
jqok "... counts them (nonfinite: [0, 5])" '.nonfinite == [0, 5]'
status 1 "... and --strict refuses it" "$LINES" merge --strict -m sum --dtype fp8 \
	-b "$tmp/f8/base.safetensors" -o "$tmp/f8s.st" "$tmp/f8/nan.safetensors"
status 1 "an overflow with --strict is an error" "$LINES" merge --strict -b "$tmp/ob.st" -o "$tmp/ovs.st" "$tmp/o2.st" "$tmp/o2.st"
check "... and nothing is written" sh -c "! ls '$tmp'/ovs.st* 2>/dev/null"
cp "$b" "$tmp/c1.st"
cp "$b" "$tmp/c2.st"
for m in "sum --lines" "ties" "dare"; do
	status 0 "$m: models equal to the base" "$LINES" merge -m $m -b "$b" -o "$o" "$tmp/c1.st" "$tmp/c2.st"
	check "... warn that every task vector is zero" has "$tmp/err" "every task vector is zero"
done

# ---- 5: fine-tunes in other float dtypes (every element: t-math.c) ----------------------
family "$tmp/m32" --arch llama --dtype f32 --layers 3 --hidden 16 --models 2 --seed 4 >/dev/null 2>&1
family "$tmp/m16" --arch llama --dtype f16 --layers 3 --hidden 16 --models 2 --seed 4 >/dev/null 2>&1
for m in ties dare; do
	status 0 "$m: an F32 and an F16 fine-tune of a BF16 base" \
		"$LINES" merge -q -m $m --lines -j 1 --io mmap -b "$b" -o "$tmp/$m-1.st" "$tmp/m32/ft1.safetensors" "$tmp/m16/ft2.safetensors"
	"$LINES" merge -q -m $m --lines -j 2 --chunk 16K -b "$b" -o "$tmp/$m-2.st" "$tmp/m32/ft1.safetensors" "$tmp/m16/ft2.safetensors" 2>/dev/null
	check "... the same bytes for any -j, --chunk and reader" cmp -s "$tmp/$m-1.st" "$tmp/$m-2.st"
	"$LINES" inspect --json "$tmp/$m-1.st" >"$tmp/out" 2>/dev/null
	jqok "... in the base's dtype" '[.tensor_list[] | select(.name | test("proj")) | .dtype] | all(. == "BF16")'
done

# ---- 14: index files as others write them ------------------------------------------------
family "$tmp/x" --arch llama --dtype bf16 --layers 3 --hidden 16 --models 1 --seed 4 --shards 2 >/dev/null 2>&1
ix=$tmp/x/ft1/model.safetensors.index.json
total=$(sed -n 's/.*"total_size": *\([0-9]*\).*/\1/p' "$ix")
sed "s/\"total_size\": *$total/\"total_size\": $total.0/" "$ix" >"$tmp/ix" && cp "$tmp/ix" "$ix"
status 0 "an index whose total_size is a float" "$LINES" merge -v -b "$tmp/x/base" -o "$o" "$tmp/x/ft1"
check "... is read, with a note" has "$tmp/err" "is a float"
files=0
for f in "$tmp"/x/ft1/*.safetensors; do files=$((files + $(stat -c %s "$f"))); done
sed "s/\"total_size\": *[0-9.]*/\"total_size\": $files/" "$ix" >"$tmp/ix" && cp "$tmp/ix" "$ix"
status 0 "an index whose total_size is the size of the files (mlx-lm)" "$LINES" merge -v -b "$tmp/x/base" -o "$o" "$tmp/x/ft1"
check "... is read, with a note" has "$tmp/err" "size of the shard files"
sed "s/\"total_size\": *[0-9.]*/\"total_size\": 12345/" "$ix" >"$tmp/ix" && cp "$tmp/ix" "$ix"
status 1 "an index whose total_size is neither is still an error" "$LINES" merge -b "$tmp/x/base" -o "$o" "$tmp/x/ft1"
family "$tmp/one" --arch llama --dtype bf16 --layers 1 --hidden 16 --models 1 --seed 4 >/dev/null 2>&1
cp "$tmp/one/base.safetensors" "$tmp/x/ft1/model.safetensors"
status 0 "a directory with both model.safetensors and an index" "$LINES" inspect --json "$tmp/x/ft1"
jqok "... is read from model.safetensors (1 block), as transformers reads it" '.num_layers == 1'

# ---- 15: smaller defects ----------------------------------------------------------------
status 2 "lines verify on a directory is a usage error (exit 2)" "$LINES" verify "$tmp"
status 2 "-w 0x10 is not taken as 16" "$LINES" merge -b "$b" -w 0x10,1 -o "$o" "$m1" "$m2"
check "... it is not a decimal number" has "$tmp/err" "not a decimal number"
status 2 "-w 1e400" "$LINES" merge -b "$b" -w 1e400,1 -o "$o" "$m1" "$m2"
check "... is out of range, not 'not a number'" has "$tmp/err" "out of range"
status 2 "an unknown option" "$LINES" merge --frobnicate -b "$b" -o "$o" "$m1"
check "... gets one message, not getopt's and ours" sh -c "test \$(grep -c '^lines:' '$tmp/err') -eq 1 && grep -q frobnicate '$tmp/err'"
status 0 "lines help merge" "$LINES" help merge
check "... prints merge's help" has "$tmp/out" "usage: lines merge"
status 0 "gen-family --help" "$GEN" --help
check "... prints its usage" has "$tmp/out" "usage: gen-family"
status 0 "-n with -j 1" "$LINES" merge -n -j 1 -b "$b" -o "$o" "$m1" "$m2"
check "... says 1 worker, not 1 workers" sh -c "grep -q '(1 worker,' '$tmp/out'"
status 0 "inspect a one-block model" "$LINES" inspect "$tmp/one/base.safetensors"
check "... L = 1 block, not 1 blocks" has "$tmp/out" "L = 1 block"
status 0 "a directory given with a trailing slash" "$LINES" merge -v -b "$tmp/s/base/" -o "$tmp/d/" "$tmp/s/ft1"
check "... no double slash in what is said" sh -c "! grep -q '//' '$tmp/err'"
printf '\010\000\000\000\000\000\000\000{"a": }' >"$tmp/bad.st"
status 1 "lines verify on a header that is not JSON" "$LINES" verify "$tmp/bad.st"
check "... does not say header twice" sh -c "! grep -q 'header: header' '$tmp/err' '$tmp/out'"
done_testing
