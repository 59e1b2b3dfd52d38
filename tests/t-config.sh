#!/bin/sh
# t-config.sh -- lines merge --config FILE.yml: mergekit's configurations,
# written here for a generated family, give byte for byte what the
# equivalent command line gives (mergekit's defaults spelled out on it);
# options beside --config override it; --print-config of a command line,
# run with --config, gives the same bytes; and a bad configuration is a
# usage error (exit 2) naming FILE:LINE:COL for every problem at once,
# with nothing written. Values are read with jq from --json and the
# places from the "lines: FILE:LINE:COL:" prefix.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

family "$tmp/f" --arch llama --dtype bf16 --layers 4 --size 1M --models 3 --seed 11
b=$tmp/f/base.safetensors
m1=$tmp/f/ft1.safetensors
m2=$tmp/f/ft2.safetensors
m3=$tmp/f/ft3.safetensors

# same NAME CONFIG ARGS...: --config CONFIG and the command line ARGS write the same bytes
same() {
	name=$1
	cfg=$2
	shift 2
	rm -f "$tmp/c.st" "$tmp/l.st"
	"$LINES" merge -q --config "$cfg" -o "$tmp/c.st" 2>"$tmp/err"
	rc=$?
	"$LINES" merge -q "$@" -o "$tmp/l.st" 2>>"$tmp/err"
	if [ $rc -eq 0 ] && [ -s "$tmp/c.st" ] && cmp -s "$tmp/c.st" "$tmp/l.st"; then
		ok 0 "$name: the same bytes as the command line"
	else
		ok 1 "$name: the same bytes as the command line"
		sed 's/^/# /' "$tmp/err"
	fi
}

cat >"$tmp/ta.yml" <<EOF
merge_method: task_arithmetic
base_model: $b
models:
  - model: $m1
    parameters:
      weight: 0.7
  - model: $m2
    parameters:
      weight: 0.3
      density: 0.5   # no effect without sparsification, as in mergekit
parameters:
  lambda: 0.9
  int8_mask: true
EOF
same "task_arithmetic" "$tmp/ta.yml" -b "$b" -m sum -w 0.7,0.3 --lambda 0.9 "$m1" "$m2"

cat >"$tmp/mean.yml" <<EOF
merge_method: task_arithmetic
base_model: $b
models: [{model: $m1}, {model: $m2}, {model: $m3, parameters: {weight: 2}}]
parameters: {weight: 1, normalize: true}
EOF
same "task_arithmetic, normalize: true is -m mean" "$tmp/mean.yml" -b "$b" -m mean -w 1,1,2 \
	"$m1" "$m2" "$m3"

cat >"$tmp/ties.yml" <<EOF
merge_method: ties
base_model: $b
models:
  - model: $b          # the base among the models: not a task vector
  - model: $m1
    parameters: {weight: 0.5, density: 0.3}
  - model: $m2
    parameters: {weight: 1.5, density: 0.6}
  - model: $m3
parameters:
  weight: 1
  density: 0.8
out_dtype: torch.float32
EOF
same "ties, a weight and a density per model (mergekit's per-tensor trim, normalize)" \
	"$tmp/ties.yml" -b "$b" -m ties --trim tensor --normalize -w 0.5,1.5,1 --density 0.3,0.6,0.8 \
	--dtype f32 "$m1" "$m2" "$m3"
status 0 "ties: -n --json" "$LINES" merge -n --json --config "$tmp/ties.yml"
jqok "... the plan has mergekit's trim and the densities per model" \
	'.method == "ties" and .ties.trim == "tensor" and .ties.density == [0.3, 0.6, 0.8] and .weights == [0.5, 1.5, 1]'

cat >"$tmp/dare.yml" <<EOF
merge_method: dare_ties
base_model: $b
models:
  - model: $m1
    parameters: {weight: [0.6, 0.6], density: 0.4}
  - model: $m2
    parameters:
      weight:
        - {filter: mlp, value: 0.9}
        - {value: 0.9}
      density: 0.7
lines:
  seed: 3
EOF
same "dare_ties with a seed (mergekit's rescale, normalized as ties is; constant gradient and filters)" \
	"$tmp/dare.yml" -b "$b" -m dare_ties --rescale --normalize --seed 3 -w 0.6,0.9 \
	--density 0.4,0.7 "$m1" "$m2"

cat >"$tmp/linear.yml" <<EOF
merge_method: linear
models:
  - model: $m1
    parameters: {weight: 1}
  - model: $m2
    parameters: {weight: 3}
dtype: float16
EOF
same "linear without a base (dtype: the output's when out_dtype is absent)" "$tmp/linear.yml" \
	-m linear --normalize -w 1,3 --dtype f16 "$m1" "$m2"

cat >"$tmp/linear-base.yml" <<EOF
merge_method: linear
base_model: $b
models:
  - model: $m1
  - model: $m2
parameters:
  weight: 0.5
EOF
same "linear averages an unlisted base_model in" "$tmp/linear-base.yml" -m linear --normalize \
	-w 0.5,0.5,0.5 "$m1" "$m2" "$b"

cat >"$tmp/slerp.yml" <<EOF
merge_method: slerp
base_model: $b
models:
  - model: $b
  - model: $m2
parameters:
  t: 0.3
EOF
same "slerp, t" "$tmp/slerp.yml" -b "$b" -m slerp --t 0.3 "$m2"

cat >"$tmp/pt.yml" <<EOF
merge_method: passthrough
models: [{model: $m1}]
EOF
same "passthrough of one model" "$tmp/pt.yml" -m passthrough "$m1"

cat >"$tmp/lines.yml" <<EOF
merge_method: ties
base_model: $b
models:
  - model: $m1
  - model: $m2
  - model: $m3
parameters:
  weight: 1
  density: 0.5
lines:
  alpha: auto
  norm: l2
  stacks: joint
  trim: global
EOF
same "ties with a lines: section (LiNeS, automatic alpha in L2, global trim)" "$tmp/lines.yml" \
	-b "$b" -m ties --normalize --lines --norm l2 --stacks joint --trim global -w 1,1,1 \
	--density 0.5 "$m1" "$m2" "$m3"

cat >"$tmp/lines2.yml" <<EOF
merge_method: task_arithmetic
base_model: $b
models: [{model: $m1}, {model: $m2}]
parameters: {weight: 1}
lines: {alpha: 0.25, beta: 0.5}
EOF
same "lines: alpha and beta numbers" "$tmp/lines2.yml" -b "$b" -m sum --alpha 0.25 --beta 0.5 \
	-w 1,1 "$m1" "$m2"

# ---- standard input, and options beside --config ---------------------------------------------
rm -f "$tmp/s.st" "$tmp/c.st"
"$LINES" merge -q --config - -o "$tmp/s.st" <"$tmp/ties.yml"
"$LINES" merge -q --config "$tmp/ties.yml" -o "$tmp/c.st"
check "--config - reads standard input" cmp -s "$tmp/s.st" "$tmp/c.st"
rm -f "$tmp/c.st" "$tmp/l.st"
"$LINES" merge -q --config "$tmp/ties.yml" --density 0.9 --no-normalize --lines -o "$tmp/c.st"
"$LINES" merge -q -b "$b" -m ties --trim tensor --no-normalize --lines -w 0.5,1.5,1 --density 0.9 \
	--dtype f32 -o "$tmp/l.st" "$m1" "$m2" "$m3"
check "options beside --config override it (--density, --no-normalize, --lines)" \
	cmp -s "$tmp/c.st" "$tmp/l.st"
status 0 "... and the plan records them" "$LINES" merge -n --json --config "$tmp/ties.yml" \
	--density 0.9 --gamma 0.4
jqok "... density 0.9 for every model, LiNeS from --gamma" \
	'(.ties.density == 0.9 or .ties.density == [0.9, 0.9, 0.9]) and .lines.alpha == 0.4 and .lines.beta == 0.6'
status 2 "MODEL operands beside --config: exit 2" "$LINES" merge --config "$tmp/ties.yml" -n "$m1"

# ---- --print-config: any command line as a configuration, same bytes -------------------------
roundtrip() {
	name=$1
	shift
	rm -f "$tmp/a.st" "$tmp/r.st"
	"$LINES" merge -q "$@" -o "$tmp/a.st" 2>"$tmp/err" &&
		"$LINES" merge "$@" --print-config >"$tmp/p.yml" 2>>"$tmp/err" &&
		"$LINES" merge -q --config "$tmp/p.yml" -o "$tmp/r.st" 2>>"$tmp/err"
	if [ $? -eq 0 ] && cmp -s "$tmp/a.st" "$tmp/r.st"; then
		ok 0 "--print-config of $name, run with --config: the same bytes"
	else
		ok 1 "--print-config of $name, run with --config: the same bytes"
		sed 's/^/# /' "$tmp/err" "$tmp/p.yml"
	fi
}
roundtrip "sum (lines' defaults: weights 1)" -b "$b" "$m1" "$m2"
roundtrip "mean" -b "$b" -m mean -w 1,2 "$m1" "$m2"
roundtrip "ties (lines' density 0.2, global trim)" -b "$b" -m ties "$m1" "$m2" "$m3"
roundtrip "ties --lines --beta --norm l2 --dtype f16" -b "$b" -m ties --lines --beta 0.7 \
	--norm l2 --dtype f16 "$m1" "$m2"
roundtrip "dare (lines' density rescale) --seed" -b "$b" -m dare --seed 7 --density 0.5 "$m1" "$m2"
roundtrip "dare_ties --rescale, densities per model, --lines" -b "$b" -m dare_ties --rescale \
	--density 0.4,0.6 -w 1,2 --lines "$m1" "$m2"
roundtrip "linear without base" -m linear -w 1,3 "$m1" "$m2"
roundtrip "linear -b (the reference of --lambda only)" -b "$b" -m linear -w 1,2 "$m1" "$m2"
roundtrip "linear -b --lines --alpha" -b "$b" -m linear -w 1,3 --lines --alpha 0.5 "$m1" "$m2"
roundtrip "slerp" -b "$b" -m slerp --t 0.3 "$m1"
roundtrip "passthrough --dtype f32" -m passthrough --dtype f32 "$m1"
roundtrip "nuslerp" -b "$b" -m nuslerp -w 1,2 "$m1" "$m2"
roundtrip "multislerp --no-normalize" -b "$b" -m multislerp -w 1,2 --no-normalize "$m1" "$m2"
roundtrip "model_stock" -b "$b" -m model_stock "$m1" "$m2"
roundtrip "ramplus_tl" -b "$b" -m ramplus_tl --ram-r 0.3 --epsilon 0.001 "$m1" "$m2"
cat >"$tmp/stockrow.yml" <<EOF
merge_method: model_stock
base_model: $b
models:
  - model: $m1
  - model: $m2
parameters:
  filter_wise: true
EOF
same "model_stock filter_wise: true (--per-row)" "$tmp/stockrow.yml" -b "$b" -m model_stock --per-row "$m1" "$m2"
cat >"$tmp/nurow.yml" <<EOF
merge_method: nuslerp
models:
  - model: $m1
    parameters: {weight: 1}
  - model: $m2
    parameters: {weight: 3}
parameters:
  nuslerp_flatten: false
EOF
same "nuslerp nuslerp_flatten: false (--per-row)" "$tmp/nurow.yml" -m nuslerp --per-row -w 1,3 "$m1" "$m2"
cat >"$tmp/emptyfilter.yml" <<EOF
merge_method: task_arithmetic
base_model: $b
models:
  - model: $m1
    parameters:
      weight:
        - {filter: "", value: 0.6}
EOF
same "an empty filter is in every name (mergekit's in): a catch-all" "$tmp/emptyfilter.yml" -b "$b" -w 0.6 "$m1"
cat >"$tmp/mergekey.yml" <<EOF
merge_method: ties
base_model: $b
models:
  - model: $m1
    parameters: &p {weight: 0.5, density: 0.3}
  - model: $m2
    parameters:
      <<: *p
      weight: 0.25
EOF
same "YAML's merge key (<<: *anchor), its own keys first" "$tmp/mergekey.yml" -b "$b" -m ties \
	--trim tensor -w 0.5,0.25 --density 0.3 "$m1" "$m2"
roundtrip "karcher --max-iter 10 --tol 1e-6 (an integer option of 10)" -m karcher --max-iter 10 --tol 1e-6 "$m1" "$m2"
status 0 "--print-config writes numbers YAML 1.1 reads as numbers" "$LINES" merge -m karcher --tol 1e-6 \
	--max-iter 10 --print-config "$m1" "$m2"
check "... 1.0e-06, not 1e-06 (a string to PyYAML), and 10" sh -c "grep -qx '  tol: 1.0e-06' '$tmp/out' && grep -qx '  max_iter: 10' '$tmp/out'"
roundtrip "sce --select-topk 0.4" -b "$b" -m sce --select-topk 0.4 "$m1" "$m2" "$m3"
roundtrip "breadcrumbs_ties, a gamma and a density per model" -b "$b" -m breadcrumbs_ties --density 0.7 \
	-w 1,2,1 --bc-gamma 0.01,0.02,0.03 "$m1" "$m2" "$m3"
roundtrip "breadcrumbs --normalize --lines" -b "$b" -m breadcrumbs --density 0.8 --normalize --lines "$m1" "$m2"
roundtrip "della --seed (lines' 1/p rescale)" -b "$b" -m della --density 0.5 --epsilon 0.1 --seed 3 "$m1" "$m2"
roundtrip "della_linear --rescale, an epsilon per model" -b "$b" -m della_linear --density 0.5 --rescale \
	--epsilon 0.1,0.2,0.05 "$m1" "$m2" "$m3"
roundtrip "model_stock --per-row" -b "$b" -m model_stock --per-row "$m1" "$m2"
roundtrip "nuslerp --per-row" -m nuslerp --per-row -w 2,1 "$m1" "$m2"
status 2 "--print-config of consensus over ties: no form yet, exit 2" "$LINES" merge -b "$b" -m consensus --consensus-over ties --print-config "$m1" "$m2"
status 2 "--print-config of karcher -b (LiNeS's reference only; mergekit would average it in): exit 2" \
	"$LINES" merge -b "$b" -m karcher --lines --print-config "$m1" "$m2"
status 2 "--print-config of karcher -b without --lines: exit 2 too" "$LINES" merge -b "$b" -m karcher --print-config "$m1" "$m2"
roundtrip "karcher -b --lines with the base one of its models (which a configuration says)" -b "$b" \
	-m karcher --lines --alpha 0.5 "$m1" "$m2" "$b"
roundtrip "consensus" -b "$b" -m consensus --consensus-k 1 --tall-lambda 0.2,0.3 "$m1" "$m2"
roundtrip "nearswap --gamma" -b "$b" -m nearswap --t 0.01 --gamma 0.3 "$m1"
roundtrip "a path that needs quotes" -b "$b" -m sum --lambda 0.1234567890123 "$tmp/f/ft1.safetensors"
status 0 "--print-config of --config prints the configuration" "$LINES" merge --config \
	"$tmp/ties.yml" --print-config
check "... in mergekit's keys and a lines: section" sh -c "grep -q '^merge_method: ties' '$tmp/out' && grep -q '^lines:' '$tmp/out' && grep -q '  trim: tensor' '$tmp/out'"

# ---- a directory output records the configuration as run ------------------------------------
cat >"$tmp/rec.yml" <<EOF
merge_method: ties
base_model: $b
models:
  - model: $m1
    parameters: {weight: 1, density: 0.5}
  - model: $m2
    parameters: {weight: 2, density: 0.5}
name: my-merge
chat_template: "{% for m in messages %}\n{{ m }}"
EOF
rm -rf "$tmp/d1" "$tmp/d2"
"$LINES" merge -q --config "$tmp/rec.yml" --lambda 0.8 -o "$tmp/d1/"
check "-o DIR/ writes DIR/lines_config.yml" test -s "$tmp/d1/lines_config.yml"
check "... with the option given beside --config, and the name and chat template" sh -c \
	"grep -q '^  lambda: 0.8' '$tmp/d1/lines_config.yml' && grep -q '^name: my-merge' '$tmp/d1/lines_config.yml' && grep -q '^chat_template: ' '$tmp/d1/lines_config.yml'"
check "... README.md shows it" grep -q '^merge_method: ties' "$tmp/d1/README.md"
"$LINES" merge -q --config "$tmp/d1/lines_config.yml" -o "$tmp/d2/"
check "... which run again gives the same model" cmp -s "$tmp/d1/model.safetensors" "$tmp/d2/model.safetensors"
check "... and the same configuration" cmp -s "$tmp/d1/lines_config.yml" "$tmp/d2/lines_config.yml"
rm -rf "$tmp/d3"
"$LINES" merge -q -b "$tmp/d1" -m sum -o "$tmp/d3/" "$m1"
check "a directory merged from a lines output gets its own lines_config.yml, not the input's" \
	grep -q '^merge_method: task_arithmetic' "$tmp/d3/lines_config.yml"

# ---- bad configurations ---------------------------------------------------------------------
# bad NAME LINE:COL YAML: exit 2, a problem at FILE:LINE:COL, no output
bad() {
	name=$1
	at=$2
	printf '%s\n' "$3" >"$tmp/bad.yml"
	rm -f "$tmp/no.st"
	status 2 "$name: exit 2" "$LINES" merge --config "$tmp/bad.yml" -o "$tmp/no.st"
	check "... reported at $at" grep -q "^lines: $tmp/bad.yml:$at: " "$tmp/err"
	check "... nothing written" test ! -e "$tmp/no.st"
}
bad "an unknown key" 3:1 "merge_method: ties
base_model: $b
modles: []
models: [{model: $m1, parameters: {weight: 1}}]"
check "... naming the closest key" grep -q "did you mean 'models'" "$tmp/err"
bad "an unknown method" 1:15 "merge_method: dare_tie
base_model: $b
models: [{model: $m1}]"
check "... naming the closest method" grep -q "did you mean 'dare_ties'" "$tmp/err"
bad "an unknown parameter" 6:7 "merge_method: ties
base_model: $b
models:
  - model: $m1
    parameters:
      weihgt: 1
parameters: {weight: 1}"
bad "a parameter the method does not take" 5:3 "merge_method: ties
base_model: $b
models: [{model: $m1, parameters: {weight: 1}}]
parameters:
  t: 0.5"
bad "a global parameter given per model" 7:7 "merge_method: ties
base_model: $b
models:
  - model: $m1
    parameters:
      weight: 1
      normalize: false"
bad "a string for a number" 4:26 "merge_method: linear
models:
  - model: $m1
    parameters: {weight: heavy}"
bad "a missing model file" 3:12 "merge_method: linear
models:
  - model: $tmp/f/nothere.safetensors
    parameters: {weight: 1}"
bad "a model without the required weight" 4:12 "merge_method: task_arithmetic
base_model: $b
models:
  - model: $m1"
bad "a gradient that varies (consensus takes one weight per model)" 6:15 "merge_method: consensus
base_model: $b
models:
  - model: $m1
    parameters:
      weight: [0, 1]"
check "... says per-tensor values are not supported yet" grep -q "per-tensor values are not supported yet" "$tmp/err"
bad "filters that vary (consensus takes one weight per model)" 6:15 "merge_method: consensus
base_model: $b
models:
  - model: $m1
    parameters:
      weight: [{filter: mlp, value: 1}, {value: 2}]
  - model: $m2
    parameters:
      weight: 1"
bad "modules" 2:1 "merge_method: passthrough
modules:
  text:
    slices:
      - sources: [{model: $m1, layer_range: [0, 2]}]"
bad "passthrough with a base_model (mergekit adds it as a second model)" 2:13 "merge_method: passthrough
base_model: $b
models: [{model: $m1}]"
bad "tokenizer_source: union" 5:19 "merge_method: linear
models:
  - model: $m1
    parameters: {weight: 1}
tokenizer_source: union"
bad "a bad out_dtype" 5:12 "merge_method: linear
models:
  - model: $m1
    parameters: {weight: 1}
out_dtype: bfloat15"
check "... naming bfloat16" grep -q "did you mean 'bfloat16'" "$tmp/err"
bad "broken YAML" 3:3 "merge_method: linear
models: [
  - : x"
bad "dare_linear normalize: true (mergekit's option that lines lacks)" 7:14 "merge_method: dare_linear
base_model: $b
models:
  - model: $m1
    parameters: {weight: 1, density: 0.5}
parameters:
  normalize: true"
check "... saying false is the one supported" grep -q "only false is supported" "$tmp/err"
bad "a density gradient that reaches 1.3 (found before any tensor is read)" 5:38 "merge_method: ties
base_model: $b
models:
  - model: $m1
    parameters: {weight: 1, density: [0.5, 1.3]}"
bad "a density filter value of 2" 5:49 "merge_method: dare_ties
base_model: $b
models:
  - model: $m1
    parameters: {density: [{filter: mlp, value: 2}, {value: 0.5}], weight: 1}"
mkdir -p "$tmp/cfgdir"
status 2 "--config naming a directory: exit 2" "$LINES" merge --config "$tmp/cfgdir" -o "$tmp/no.st"
check "... saying so, not that it is bad YAML" sh -c "grep -q 'Is a directory' '$tmp/err' && ! grep -q YAML '$tmp/err'"
bad "an unknown lines: key" 6:3 "merge_method: linear
models:
  - model: $m1
    parameters: {weight: 1}
lines:
  aplha: auto"

bad "a lines: key of another method" 6:3 "merge_method: ties
base_model: $b
models:
  - model: $m1
lines:
  seed: 3
parameters: {weight: 1}"

# ---- lines: schedule (lines' depth schedule) ----------------------------------------------
cat >"$tmp/sched.yml" <<EOF
merge_method: task_arithmetic
base_model: $b
models:
  - model: $m1
    parameters: {weight: 0.7}
  - model: $m2
    parameters: {weight: 0.3}
lines:
  alpha: 0.25
  beta: 0.5
  schedule: [0.1, 0.5, 1.0]
EOF
same "lines: schedule" "$tmp/sched.yml" -b "$b" -m sum -w 0.7,0.3 --alpha 0.25 --beta 0.5 \
	--schedule 0.1,0.5,1 "$m1" "$m2"
status 0 "lines: schedule: -n --json" "$LINES" merge -n --json --config "$tmp/sched.yml"
jqok "... the plan records the schedule and its lambdas" \
	'.lines.schedule == [0.1, 0.5, 1] and .lambda_blocks[0] == 0.25 + 0.5 * 0.1 and
	 .lambda_blocks[3] == 0.25 + 0.5 * 1 and ((.lambda_blocks[1] - (0.25 + 0.5 * (0.1 + 0.4 * 2 / 3))) | fabs) < 1e-15'
status 0 "--schedule beside --config overrides it" "$LINES" merge -n --json --config "$tmp/sched.yml" \
	--schedule 0,1
jqok "... the plan has the command line's" '.lines.schedule == [0, 1]'
status 0 "--lambda beside --config drops LiNeS and its schedule" "$LINES" merge -n --json \
	--config "$tmp/sched.yml" --lambda 0.5
jqok "... no LiNeS" '.lines == null and .lambda == 0.5'
roundtrip "sum --lines --schedule 0,0.2,0.3,1 (automatic alpha)" -b "$b" -w 1,2 --lines \
	--schedule 0,0.2,0.3,1 "$m1" "$m2"
roundtrip "ties --gamma 0.3 --schedule 1e-7,0.5,1" -b "$b" -m ties --gamma 0.3 --schedule 1e-7,0.5,1 \
	"$m1" "$m2"
"$LINES" merge -b "$b" --alpha 0.2 --schedule 0,0.3333333333333333,1 "$m1" "$m2" --print-config \
	>"$tmp/p.yml" 2>"$tmp/err"
check "--print-config writes the schedule as a list" grep -qx '  schedule: \[0, 0.3333333333333333, 1\]' \
	"$tmp/p.yml"
rm -rf "$tmp/ds"
"$LINES" merge -q --config "$tmp/sched.yml" -o "$tmp/ds/" 2>"$tmp/err"
check "a directory's lines_config.yml keeps the schedule" grep -q '^  schedule: \[0.1, 0.5, 1\]' \
	"$tmp/ds/lines_config.yml"
check "... and so does the manifest" jq -e '.run.schedule == [0.1, 0.5, 1]' \
	"$tmp/ds/model.safetensors.manifest.json"

sched_head="merge_method: task_arithmetic
base_model: $b
models: [{model: $m1, parameters: {weight: 1}}]
lines:"
bad "lines: schedule: an empty list" 6:13 "$sched_head
  alpha: 0.5
  schedule: []"
bad "lines: schedule: not a number" 6:17 "$sched_head
  alpha: 0.5
  schedule: [0, x, 1]"
bad "lines: schedule: one value" 6:13 "$sched_head
  alpha: 0.5
  schedule: [0.5]"
bad "lines: schedule: not a list" 6:13 "$sched_head
  alpha: 0.5
  schedule: 0.5"
bad "lines: schedule without alpha" 5:3 "$sched_head
  schedule: [0, 1]"
bad "lines: schedule: a boolean" 6:17 "$sched_head
  alpha: 0.5
  schedule: [0, true]"

bad "a second YAML document (mergekit reads one)" 6:1 "merge_method: task_arithmetic
base_model: $b
models:
  - model: $m1
    parameters: {weight: 0.5}
---
merge_method: linear"
bad "a merge key (<<) of something that is not a mapping" 6:12 "merge_method: task_arithmetic
base_model: $b
models:
  - model: $m1
    parameters:
      <<: [foo]
      weight: 1"
bad "a number with a leading zero (octal to mergekit's YAML)" 5:26 "merge_method: task_arithmetic
base_model: $b
models:
  - model: $m1
    parameters: {weight: 010}"

bad "lines: lambda for a method that takes lambda in parameters" 6:9 "merge_method: task_arithmetic
base_model: $b
models:
  - model: $m1
    parameters: {weight: 0.5}
lines: {lambda: 0.5}"

bad "an unknown method beside a missing model" 1:15 "merge_method: tiez
base_model: $b
models:
  - model: $tmp/no-such-model.safetensors"
check "... the missing model reported too" grep -q "^lines: $tmp/bad.yml:4:12: " "$tmp/err"

bad "a tokenizer_source that does not exist" 5:19 "merge_method: task_arithmetic
base_model: $b
models:
  - model: $m1
tokenizer_source: $tmp/no-such-tokenizer"

# values of the right type that the options' own checks refuse: reported at
# the key that gave the option (the first model's, for a list per model)
bad "nearswap t: -1 (--t's check)" 5:3 "merge_method: nearswap
base_model: $b
models: [{model: $m1}]
parameters:
  t: -1"
bad "sce select_topk: 2 (--select-topk's check)" 5:3 "merge_method: sce
base_model: $b
models: [{model: $m1}, {model: $m2}]
parameters:
  select_topk: 2"
bad "karcher max_iter: 0 (--max-iter's parser)" 4:3 "merge_method: karcher
models: [{model: $m1}, {model: $m2}]
parameters:
  max_iter: 0"
bad "consensus_k: 7 of 2 models (--consensus-k's check)" 5:3 "merge_method: consensus
base_model: $b
models: [{model: $m1}, {model: $m2}]
parameters:
  consensus_k: 7"
bad "multislerp weights summing to 0 (the library's check)" 5:7 "merge_method: multislerp
models:
  - model: $m1
    parameters:
      weight: 1
  - model: $m2
    parameters:
      weight: -1"
bad "lines: norm: l3 (--norm's parser)" 6:9 "$sched_head
  alpha: 0.5
  norm: l3"
printf 'merge_method: sce\nbase_model: %s\nmodels: [{model: %s}, {model: %s}]\nparameters:\n  select_topk: 0.5\n' \
	"$b" "$m1" "$m2" >"$tmp/sce.yml"
status 2 "--select-topk 3 beside a configuration's good select_topk: exit 2" \
	"$LINES" merge --config "$tmp/sce.yml" --select-topk 3 -o "$tmp/no.st"
check "... reported as the command line's, not at the configuration's key" \
	sh -c "! grep -q '^lines: $tmp/sce.yml:' '$tmp/err' && grep -q -- '--select-topk' '$tmp/err'"

# ---- tokenizer_source: a model with the base's vocabulary ---------------------------------
family "$tmp/td" --arch llama --dtype bf16 --layers 4 --hidden 16 --models 3 --seed 12 --shards 2 >/dev/null
family "$tmp/tv" --arch llama --dtype bf16 --layers 4 --hidden 16 --models 1 --seed 12 --shards 2 \
	--vocab 77 >/dev/null
tb=$tmp/td/base
tok() { # tok DIR VOCAB... : a tokenizer.json with these tokens, ids in order
	dir=$1
	shift
	v= i=0
	for t in "$@"; do v="$v${v:+,}\"$t\":$i"; i=$((i + 1)); done
	printf '{"version":"1.0","model":{"type":"BPE","vocab":{%s}},"added_tokens":[{"id":%d,"content":"<s>"}]}\n' \
		"$v" "$i" >"$dir/tokenizer.json"
}
tok "$tb" a b c
tok "$tmp/td/ft1" a b c
printf '{"chat_template":"the base"}\n' >"$tb/tokenizer_config.json"
printf '{"chat_template":"ft1, same tokens"}\n' >"$tmp/td/ft1/tokenizer_config.json"
printf '{"bos_token":"<s>"}\n' >"$tmp/td/ft1/special_tokens_map.json"
tok "$tmp/td/ft2" a b d
cat >"$tmp/tok.yml" <<EOF
merge_method: task_arithmetic
base_model: $tb
models:
  - model: $tmp/td/ft1
    parameters: {weight: 1}
  - model: $tmp/td/ft2
    parameters: {weight: 0.5}
tokenizer_source: $tmp/td/ft1
EOF
rm -rf "$tmp/tk1" "$tmp/tk2"
status 0 "tokenizer_source: MODEL (the base's vocabulary): a directory output" \
	"$LINES" merge -q --config "$tmp/tok.yml" -o "$tmp/tk1/"
check "... has that model's tokenizer files" sh -c "cmp -s '$tmp/td/ft1/tokenizer.json' '$tmp/tk1/tokenizer.json' &&
	cmp -s '$tmp/td/ft1/tokenizer_config.json' '$tmp/tk1/tokenizer_config.json' &&
	cmp -s '$tmp/td/ft1/special_tokens_map.json' '$tmp/tk1/special_tokens_map.json'"
check "... and the base's config.json" cmp -s "$tb/config.json" "$tmp/tk1/config.json"
"$LINES" merge -q -b "$tb" -w 1,0.5 --tokenizer-source "$tmp/td/ft1" -o "$tmp/tk2/" "$tmp/td/ft1" \
	"$tmp/td/ft2" 2>"$tmp/err"
check "... the same model as --tokenizer-source on the command line" \
	cmp -s "$tmp/tk1/model.safetensors" "$tmp/tk2/model.safetensors"
check "... the manifest records the source" jq -e --arg m "$tmp/td/ft1" '.run.tokenizer_source == $m' \
	"$tmp/tk1/model.safetensors.manifest.json"
check "... lines_config.yml keeps it" grep -qx "tokenizer_source: $tmp/td/ft1" "$tmp/tk1/lines_config.yml"
rm -rf "$tmp/tk3"
"$LINES" merge -q --config "$tmp/tk1/lines_config.yml" -o "$tmp/tk3/" 2>"$tmp/err"
check "... which run again gives the same model and tokenizer" sh -c "cmp -s '$tmp/tk1/model.safetensors' '$tmp/tk3/model.safetensors' &&
	cmp -s '$tmp/td/ft1/tokenizer_config.json' '$tmp/tk3/tokenizer_config.json'"
status 0 "tokenizer_source: -n --json" "$LINES" merge -n --json --config "$tmp/tok.yml" -o "$tmp/tk4/"
jqok "... names the model and its directory" \
	".tokenizer_source.model == \"$tmp/td/ft1\" and (.tokenizer_source.dir | endswith(\"ft1\"))"
sed "s|^tokenizer_source: .*|tokenizer_source: $tb|" "$tmp/tok.yml" >"$tmp/tokb.yml"
status 0 "tokenizer_source: the base model is the default" "$LINES" merge -n --json --config "$tmp/tokb.yml" -o "$tmp/tk4/"
jqok "... no tokenizer source recorded" '.tokenizer_source == null'
# refused: another vocabulary, in tokenizer.json or in the embedding rows; a file output
for case in "tokenizer.json's tokens differ|$tmp/td/ft2|1|-o $tmp/tk5/" \
	"the embeddings have other rows|$tmp/tv/ft1|1|-o $tmp/tk5/" \
	"a single file output|$tmp/td/ft1|2|-o $tmp/tk5.safetensors" \
	"a single file as the source|$tmp/td/ft1/model-00001-of-00002.safetensors|2|-o $tmp/tk5/"; do
	IFS='|' read -r what src want out <<EOF
$case
EOF
	sed "s|^tokenizer_source: .*|tokenizer_source: $src|" "$tmp/tok.yml" >"$tmp/tokx.yml"
	rm -rf "$tmp/tk5" "$tmp/tk5.safetensors"
	# shellcheck disable=SC2086
	status "$want" "tokenizer_source refused: $what (exit $want)" "$LINES" merge -q --config "$tmp/tokx.yml" $out
	check "... nothing written" test ! -e "$tmp/tk5" -a ! -e "$tmp/tk5.safetensors"
done
"$LINES" merge -b "$tb" -w 1,0.5 --tokenizer-source "$tmp/td/ft1" "$tmp/td/ft1" "$tmp/td/ft2" \
	--print-config >"$tmp/p.yml" 2>"$tmp/err"
check "--print-config of --tokenizer-source prints tokenizer_source" grep -qx "tokenizer_source: $tmp/td/ft1" \
	"$tmp/p.yml"
rm -rf "$tmp/tk6"
"$LINES" merge -q --config "$tmp/p.yml" -o "$tmp/tk6/" 2>"$tmp/err"
check "... run with --config: the same model and tokenizer" sh -c "cmp -s '$tmp/tk2/model.safetensors' '$tmp/tk6/model.safetensors' &&
	cmp -s '$tmp/td/ft1/tokenizer_config.json' '$tmp/tk6/tokenizer_config.json'"

# every problem at once
printf 'merge_method: consensus\nbase_model: %s\nmodels:\n  - model: %s\n    parameters: {weight: [0, 1], densty: 0.5}\n  - model: %s/nothere.safetensors\nparameters:\n  normalize: maybe\n  t: 0.5\nnmae: x\n' \
	"$b" "$m1" "$tmp" >"$tmp/bad.yml"
status 2 "a configuration with six problems: exit 2" "$LINES" merge --config "$tmp/bad.yml" -o "$tmp/no.st"
for at in 5:26 5:34 6:12 8:14 9:3 10:1; do
	check "... the problem at $at is reported" grep -q "^lines: $tmp/bad.yml:$at: " "$tmp/err"
done
check "... nothing written" test ! -e "$tmp/no.st"
status 2 "lines scale --config: exit 2" "$LINES" scale --config "$tmp/ties.yml" --gamma 0.5 -o "$tmp/no.st"

done_testing
