#!/bin/sh
# t-errors.sh -- inputs that do not fit together: every mismatch is listed
# before anything is written, the exit status is 1, no output is left.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

family "$tmp/a" --arch llama --dtype bf16 --layers 4 --hidden 32 --models 2 --seed 1
family "$tmp/wide" --arch llama --dtype bf16 --layers 4 --hidden 48 --models 1 --seed 1
family "$tmp/deep" --arch llama --dtype bf16 --layers 6 --hidden 32 --models 1 --seed 1
family "$tmp/half" --arch llama --dtype f16 --layers 4 --hidden 32 --models 1 --seed 1
family "$tmp/other" --arch gpt2 --dtype bf16 --layers 4 --hidden 32 --models 1 --seed 1
b=$tmp/a/base.safetensors
o=$tmp/out.safetensors

status 1 "a model with other shapes" "$LINES" merge -b "$b" -o "$o" "$tmp/wide/ft1.safetensors"
check "shape mismatches are listed, 20 at most (of 39)" sh -c "test \$(grep -c 'differs from the base' '$tmp/err') -eq 20"
check "... then counted" has "$tmp/err" "... 39 tensors have another shape in all"
check "... with both shapes" has "$tmp/err" "model.layers.0.mlp.up_proj.weight: shape [144, 48] differs from the base's [96, 32]"
check "... and a summary that counts what was listed" has "$tmp/err" "the models do not match the base (39 problems, 20 of them listed above)"
check "no output" test ! -e "$o"

status 0 "a model with another float dtype merges (into the base's dtype)" "$LINES" merge -b "$b" -o "$o" "$tmp/half/ft1.safetensors"
check "... without a mismatch" sh -c "! grep -q 'differs from the base' '$tmp/err'"
rm -f "$o" "$o".*

status 1 "a model with more blocks" "$LINES" merge -b "$b" -o "$o" "$tmp/deep/ft1.safetensors"
check "extra tensors are listed" has "$tmp/err" "model.layers.5.mlp.up_proj.weight: not in the base"
check "the block counts are compared" has "$tmp/err" "has 6 blocks, the base has 4"
status 1 "a model with fewer blocks" "$LINES" merge -b "$tmp/deep/base.safetensors" -o "$o" "$b"
check "missing tensors are listed, 20 at most, then counted" sh -c "test \$(grep -c ': missing (the base has this tensor)' '$tmp/err') -eq 18 && ! grep -q 'missing in all' '$tmp/err'"

status 1 "three bad models at once" "$LINES" merge -b "$b" -o "$o" "$tmp/wide/ft1.safetensors" "$tmp/other/ft1.safetensors" "$tmp/deep/ft1.safetensors"
check "all three are reported in one run" sh -c "grep -q wide '$tmp/err' && grep -q other '$tmp/err' && grep -q deep '$tmp/err'"
check "still no output" test ! -e "$o"
check "and no temporary file" no_temp "$tmp"

head -c 1000 "$tmp/a/ft2.safetensors" >"$tmp/cut.safetensors"
status 1 "a model with more blocks beside a truncated one" "$LINES" merge -b "$b" -o "$o" "$tmp/deep/ft1.safetensors" "$tmp/cut.safetensors"
check "... both are reported in one run (the readable one's mismatches too)" \
	sh -c "grep -q 'cut.safetensors: ' '$tmp/err' && grep -q 'model.layers.5.mlp.up_proj.weight: not in the base' '$tmp/err'"
check "... and no output" test ! -e "$o"

status 1 "a missing input" "$LINES" merge -b "$b" -o "$o" "$tmp/nope.safetensors"
check "... is named with the system's reason" has "$tmp/err" "nope.safetensors: cannot open: No such file or directory"
status 1 "two unreadable inputs" "$LINES" merge -b "$b" -o "$o" "$tmp/nope1" "$tmp/nope2"
check "... are both reported" sh -c "grep -q nope1 '$tmp/err' && grep -q nope2 '$tmp/err'"
status 1 "a directory as input" "$LINES" merge -b "$b" -o "$o" "$tmp/a"
status 1 "an output directory that does not exist" "$LINES" merge -b "$b" -o "$tmp/no/such/dir/out.st" "$tmp/a/ft1.safetensors"
check "... is reported, naming the directory" has "$tmp/err" "$tmp/no/such/dir does not exist"

# non-float tensors that differ: a warning, or an error with --strict
family "$tmp/c" --arch clip --dtype f32 --layers 2 --hidden 16 --models 1 --seed 1 --int-differ
status 0 "an I64 tensor that differs is a warning" "$LINES" merge -b "$tmp/c/base.safetensors" --lambda 0.5 -o "$o" "$tmp/c/ft1.safetensors"
check "... naming the tensor" has "$tmp/err" "warning: $tmp/c/ft1.safetensors: model.visual.position_ids: I64 tensor differs from the base's; the base's values are kept"
rm -f "$o"
status 1 "... and an error with --strict" "$LINES" merge --strict -b "$tmp/c/base.safetensors" -o "$o" "$tmp/c/ft1.safetensors"
check "--strict leaves no output" test ! -e "$o"
check "--strict leaves no temporary file" no_temp "$tmp"

# a floating dtype lines cannot decode (E8M0 holds scales, not weights)
printf '\100\000\000\000\000\000\000\000{"q":{"dtype":"F8_E8M0","shape":[2],"data_offsets":[0,2]}}      \001\002' >"$tmp/f8.st"
status 0 "an F8_E8M0 model is valid" "$LINES" inspect -q "$tmp/f8.st"
status 1 "but cannot be merged" "$LINES" merge -b "$tmp/f8.st" -o "$o" "$tmp/f8.st"
check "... and says why" has "$tmp/err" "F8_E8M0"

# a name too long for a message is cut at the start of a character, and
# says so (3000 x U+00E9, 6000 bytes)
nm=$(awk 'BEGIN { for (i = 0; i < 3000; i++) printf "\303\251" }')
hdr="{\"$nm\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}"
hl=$(printf '%s' "$hdr" | wc -c)
printf "\\$(printf %03o $((hl % 256)))\\$(printf %03o $((hl / 256)))\\000\\000\\000\\000\\000\\000" >"$tmp/long.st"
printf '%s\000\000\000\000' "$hdr" >>"$tmp/long.st"
status 1 "a model whose tensor has a 6000-byte name" "$LINES" merge -b "$b" -o "$o" "$tmp/long.st"
check "... is reported in valid UTF-8" sh -c "iconv -f UTF-8 -t UTF-8 '$tmp/err' >/dev/null"
check "... and the cut name says it is cut" sh -c "grep -q '\\.\\.\\.: not in the base' '$tmp/err'"

# a .gguf whose magic is wrong is not read as safetensors
printf 'GGUX\003\000\000\000\000\000\000\000\000\000\000\000' >"$tmp/bad.gguf"
status 1 "a .gguf file whose magic is not GGUF" "$LINES" inspect "$tmp/bad.gguf"
check "... says so, not that a safetensors header is too long" has "$tmp/err" 'the magic is not "GGUF"'

# a FIFO with no writer is refused at once, not waited on
mkfifo "$tmp/fifo"
status 1 "a FIFO as a model is refused without waiting for a writer" timeout 30 "$LINES" merge -b "$b" -o "$o" "$tmp/fifo"
status 1 "... as the base" timeout 30 "$LINES" merge -b "$tmp/fifo" -o "$o" "$tmp/a/ft1.safetensors"
status 1 "... to lines inspect" timeout 30 "$LINES" inspect "$tmp/fifo"
status 2 "... to lines verify (a usage error)" timeout 30 "$LINES" verify "$tmp/fifo"
mkdir "$tmp/fifodir"
mkfifo "$tmp/fifodir/model.safetensors.index.json"
status 1 "... and as a directory's index" timeout 30 "$LINES" inspect "$tmp/fifodir"
check "no output" test ! -e "$o"

done_testing
