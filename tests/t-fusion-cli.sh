#!/bin/sh
# t-fusion-cli.sh -- -m arcee_fusion from the command line and from
# mergekit's own example configuration (tests/mergekit-examples/arcee_fusion.yml,
# unchanged: its model_a and model_b are directories made here holding a
# generated family's base and first model): the same bytes either way and
# through --print-config; a sweep's output equals a run alone; the
# passes in -n --json; a parameter the method
# does not take, a third model or no base refused (exit 2, nothing
# written). Values are read with jq from --json.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"
src=${TESTS_SRCDIR:-$(dirname "$0")}

family "$tmp/f" --arch llama --dtype bf16 --layers 4 --size 1M --models 3 --seed 11
b=$tmp/f/base.safetensors
m1=$tmp/f/ft1.safetensors
m2=$tmp/f/ft2.safetensors

mkdir -p "$tmp/ex/model_a" "$tmp/ex/model_b"
ln -s "$b" "$tmp/ex/model_a/model.safetensors"
ln -s "$m1" "$tmp/ex/model_b/model.safetensors"
cp "$src/mergekit-examples/arcee_fusion.yml" "$tmp/ex/"

status 0 "mergekit's examples/arcee_fusion.yml runs" \
	sh -c "cd '$tmp/ex' && '$LINES' merge -q --config arcee_fusion.yml -o c.st"
status 0 "... and the command line" "$LINES" merge -q -m arcee_fusion -b "$b" --dtype bf16 \
	-o "$tmp/l.st" "$m1"
check "... the same bytes" cmp -s "$tmp/ex/c.st" "$tmp/l.st"
status 0 "--print-config of the command line" "$LINES" merge -m arcee_fusion -b "$b" \
	--dtype bf16 --print-config "$m1"
cp "$tmp/out" "$tmp/pc.yml"
status 0 "... runs with --config" "$LINES" merge -q --config "$tmp/pc.yml" -o "$tmp/p.st"
check "... the same bytes" cmp -s "$tmp/p.st" "$tmp/l.st"

status 0 "-n --json" "$LINES" merge -n --json -m arcee_fusion -b "$b" -o "$tmp/n.st" "$m1"
jqok "... the passes select, threshold, write" '[.passes[].name] == ["select","threshold","write"]'
status 0 "-n --json --lines --alpha auto" "$LINES" merge -n --json -m arcee_fusion -b "$b" \
	--lines --alpha auto -o "$tmp/n.st" "$m1"
jqok "... a norms pass before the writing pass" \
	'[.passes[].name] == ["select","threshold","norms","write"]'

status 0 "--json of a run" "$LINES" merge -q --json -m arcee_fusion -b "$b" -o "$tmp/j.st" "$m1"
jqok "... reports what it kept of how many" \
	'.arcee_fusion.elements > 0 and .arcee_fusion.kept > 0 and .arcee_fusion.kept < .arcee_fusion.elements'
jqok "... every merged tensor's threshold in the manifest" \
	'[.tensors[] | select(.arcee_fusion) | .arcee_fusion.threshold >= .arcee_fusion.median] | length > 0 and all' \
	"$tmp/j.st.manifest.json"

cat >"$tmp/lines.yml" <<EOF2
merge_method: arcee_fusion
base_model: $b
models:
  - model: $m1
dtype: bfloat16
lines:
  alpha: 0.4
  beta: 0.6
EOF2
status 0 "a lines: section on top" "$LINES" merge -q --config "$tmp/lines.yml" -o "$tmp/cl.st"
status 0 "... and the command line" "$LINES" merge -q -m arcee_fusion -b "$b" --dtype bf16 \
	--lines --alpha 0.4 --beta 0.6 -o "$tmp/ll.st" "$m1"
check "... the same bytes" cmp -s "$tmp/cl.st" "$tmp/ll.st"

status 0 "a sweep of --beta" "$LINES" merge -q -m arcee_fusion -b "$b" --lines --alpha auto \
	--beta 0.2,0.6 -o "$tmp/sw{beta}.st" "$m1"
status 0 "... and --beta 0.6 alone" "$LINES" merge -q -m arcee_fusion -b "$b" --lines \
	--alpha auto --beta 0.6 -o "$tmp/sw.st" "$m1"
check "... the same bytes" cmp -s "$tmp/sw0.6.st" "$tmp/sw.st"

printf 'merge_method: arcee_fusion\nbase_model: %s\nmodels:\n  - model: %s\n    parameters: {weight: 0.5}\n' \
	"$b" "$m1" >"$tmp/w.yml"
status 2 "a weight: refused (arcee_fusion takes no parameters)" \
	"$LINES" merge --config "$tmp/w.yml" -o "$tmp/no.st"
check "... the place is reported" grep -q "^lines: $tmp/w.yml:5:" "$tmp/err"
printf 'merge_method: arcee_fusion\nbase_model: %s\nmodels:\n  - model: %s\n  - model: %s\n' \
	"$b" "$m1" "$m2" >"$tmp/3.yml"
status 2 "two models besides the base refused" "$LINES" merge --config "$tmp/3.yml" -o "$tmp/no.st"
printf 'merge_method: arcee_fusion\nmodels:\n  - model: %s\n  - model: %s\n' "$m1" "$m2" >"$tmp/nb.yml"
status 2 "no base_model refused" "$LINES" merge --config "$tmp/nb.yml" -o "$tmp/no.st"
check "... nothing written" test ! -e "$tmp/no.st"

done_testing
