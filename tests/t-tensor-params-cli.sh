#!/bin/sh
# t-tensor-params-cli.sh -- weights and densities per tensor from a mergekit
# configuration (gradients, filters, slices) for the methods that read
# them: ties (per-tensor trim), task_arithmetic (sum, and mean with
# normalize: true) and linear. mergekit's examples/ties.yml runs unchanged
# (its hub ids found in a Hugging Face cache made here). For every tensor
# of a Llama family, including those outside the blocks, the weights and
# densities of -n --json are the ones computed here from mergekit's rule
# (the gradient at t = i / (L - 1), 0 outside the blocks; the first filter
# that matches); for sum, mean and linear every tensor's bytes are those
# of a merge of the whole model with that tensor's values given once for
# all (whose every element t-mergekit and t-math check against a float64
# reference of the formula). TIES is not such a concatenation (the
# model's majority sign breaks zero sums): t-tensor-params.c checks its
# every element against its own reference. Same bytes for -j1 and -j2,
# --chunk 64K and --io mmap;
# --print-config prints the gradients back and runs to the same bytes;
# methods that take one value per model refuse them at their line and
# column. Values are read from --json, not from messages.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

command -v jq >/dev/null 2>&1 || { echo "1..0 # SKIP jq is missing"; exit 77; }

HF_HUB_CACHE=$tmp/hub
export HF_HUB_CACHE

# hub ID DIR: the cache's snapshot of ID (branch main) is DIR
hub() {
	repo=$HF_HUB_CACHE/models--$(printf '%s' "$1" | sed 's|/|--|')
	rm -rf "$repo"
	mkdir -p "$repo/refs" "$repo/snapshots" || exit 99
	echo 0123456789abcdef >"$repo/refs/main"
	ln -s "$2" "$repo/snapshots/0123456789abcdef" || exit 99
}

# offsets FILE: "NAME OFFSET BYTES" of every tensor of a safetensors file
offsets() {
	"$LINES" inspect --json "$1" | jq -r '.header_bytes as $h |
		reduce .tensor_list[] as $t ({o: $h, l: []};
			.l += ["\($t.name) \(.o) \($t.bytes)"] | .o += $t.bytes) | .l[]'
}

# per_group DESC OUT PLAN ARGS...: every merged tensor of OUT (whose
# per-tensor weights and densities PLAN, a -n --json, gives) has the bytes
# of lines merge ARGS -w ITS_WEIGHTS [--density ITS_DENSITIES]; at least
# MIN_GROUPS different sets of values
per_group() {
	desc=$1 out=$2 plan=$3
	shift 3
	offsets "$out" >"$tmp/og"
	jq -r '.tensors[] | select(.merged) |
		"\(.name) \(.weights | map(tostring) | join(","))/\((.densities // []) | map(tostring) | join(","))"' \
		"$plan" >"$tmp/tt"
	bad=0 groups=0
	for key in $(cut -d' ' -f2 "$tmp/tt" | sort -u); do
		w=${key%/*} d=${key#*/}
		groups=$((groups + 1))
		rm -f "$tmp/u.st"
		if [ -n "$d" ]; then
			"$LINES" merge -q "$@" -w "$w" --density "$d" -o "$tmp/u.st" 2>>"$tmp/err"
		else
			"$LINES" merge -q "$@" -w "$w" -o "$tmp/u.st" 2>>"$tmp/err"
		fi || bad=$((bad + 1))
		offsets "$tmp/u.st" >"$tmp/ou"
		for name in $(awk -v k="$key" '$2 == k {print $1}' "$tmp/tt"); do
			o1=$(awk -v n="$name" '$1 == n {print $2}' "$tmp/og")
			len=$(awk -v n="$name" '$1 == n {print $3}' "$tmp/og")
			o2=$(awk -v n="$name" '$1 == n {print $2}' "$tmp/ou")
			if ! cmp -s -i "$o1:$o2" -n "$len" "$out" "$tmp/u.st"; then
				echo "# $name: not the bytes of the merge with -w $w ${d:+--density $d}"
				bad=$((bad + 1))
			fi
		done
	done
	ok $((bad != 0 || groups < MIN_GROUPS)) \
		"$desc: every tensor has the bytes of a merge with its own values given once ($groups sets)"
}

# jq: mergekit's gradient at t, and a tensor's t (0 outside the blocks)
JQDEF='def grad(g; t): (t * ((g | length) - 1)) as $s | ($s | floor) as $i |
	if $i >= (g | length) - 1 then g[-1] else (1 - ($s - $i)) * g[$i] + ($s - $i) * g[$i + 1] end;
	def tpos(L): if .block == null then 0 elif L == 1 then 1 else .block / (L - 1) end;'

dt=bf16
family "$tmp/f" --arch llama --dtype $dt --layers 4 --hidden 32 --models 3 --seed 31 --shards 2 \
	>/dev/null
hub TheBloke/Llama-2-13B-fp16 "$tmp/f/base"
hub psmathur/orca_mini_v3_13b "$tmp/f/ft1"
hub garage-bAInd/Platypus2-13B "$tmp/f/ft2"
hub WizardLM/WizardMath-13B-V1.0 "$tmp/f/ft3"

# mergekit's examples/ties.yml, verbatim: arcee-ai/mergekit, commit
# a6e402884ba9bc30da7f23e8304a35f19485de95, examples/ties.yml;
# mergekit is licensed under the GNU Lesser General Public License,
# version 3 only (LGPL-3.0-only), and this copy stays under it
cat >"$tmp/ties.yml" <<'EOF'
models:
  - model: psmathur/orca_mini_v3_13b
    parameters:
      density: [1, 0.7, 0.1] # density gradient
      weight: 1.0
  - model: garage-bAInd/Platypus2-13B
    parameters:
      density: 0.5
      weight: [0, 0.3, 0.7, 1] # weight gradient
  - model: WizardLM/WizardMath-13B-V1.0
    parameters:
      density: 0.33
      weight:
        - filter: mlp
          value: 0.5
        - value: 0
merge_method: ties
base_model: TheBloke/Llama-2-13B-fp16
parameters:
  normalize: true
  int8_mask: true
dtype: float16
EOF
status 0 "$dt: mergekit's ties.yml runs unchanged: -n --json" \
	"$LINES" merge -n --json --config "$tmp/ties.yml" -o "$tmp/t.st"
cp "$tmp/out" "$tmp/ties.json"
jqok "... weights and densities per tensor, per-tensor trim, F16" \
	'.method == "ties" and .ties.trim == "tensor" and .weights_per_tensor and
	 .densities_per_tensor and all(.tensors[] | select(.merged); .dtype == "F16")'
jqok "... every tensor's weights and densities are mergekit's (the gradients at its block, 0 outside; the filter)" \
	"$JQDEF"'
	.num_layers as $L | [.tensors[] | select(.merged) | tpos($L) as $t |
		.weights == [1, grad([0, 0.3, 0.7, 1]; $t), (if (.name | contains("mlp")) then 0.5 else 0 end)] and
		.densities == [grad([1, 0.7, 0.1]; $t), 0.5, 0.33]] | length >= 39 and all'
jqok "... including the tensors outside the blocks (t = 0)" \
	'[.tensors[] | select(.block == null and .merged) | .weights == [1, 0, 0] and .densities == [1, 0.5, 0.33]] |
	 length >= 3 and all'
status 0 "... the merge" "$LINES" merge -q --config "$tmp/ties.yml" -o "$tmp/t.st"

# -n -v shows them after each tensor's name (text for people: only that
# they are there)
status 0 "ties.yml: -n -v" "$LINES" merge -n -v --config "$tmp/ties.yml" -o "$tmp/t.st"
check "... with the weights and densities of block 1's mlp" \
	grep -q "model.layers.1.mlp.up_proj.weight  w 1,0.3,0.5  d 0.8,0.5,0.33" "$tmp/out"

# the same bytes for any -j, --chunk, --io and instruction set
for how in "-j 1" "-j 2 --chunk 64K" "--io mmap -j 2" "--io uring -j 2"; do
	rm -f "$tmp/j.st"
	if [ "$how" = "--io uring -j 2" ] &&
		! "$LINES" merge -q --io uring -b "$tmp/f/base" -o - "$tmp/f/ft1" >/dev/null 2>&1; then
		skip "ties.yml with $how: io_uring is not available here"
		continue
	fi
	# shellcheck disable=SC2086 # options split on purpose
	"$LINES" merge -q --config "$tmp/ties.yml" $how -o "$tmp/j.st" 2>"$tmp/err"
	check "ties.yml with $how: the same bytes" cmp -s "$tmp/t.st" "$tmp/j.st"
done
for isa in scalar avx2 avx512 neon; do
	if ! LINES_ISA=$isa "$LINES" --version >/dev/null 2>&1; then
		skip "ties.yml with LINES_ISA=$isa: not built or not supported by this CPU"
		continue
	fi
	rm -f "$tmp/j.st"
	LINES_ISA=$isa "$LINES" merge -q --config "$tmp/ties.yml" -o "$tmp/j.st" 2>"$tmp/err"
	check "ties.yml with LINES_ISA=$isa: the same bytes" cmp -s "$tmp/t.st" "$tmp/j.st"
done

# the manifest gives each tensor's weights and densities
status 0 "ties.yml: the manifest" "$LINES" merge -q --config "$tmp/ties.yml" -o "$tmp/md/"
jqok "... has each tensor's weights and densities" \
	'.run.weights_per_tensor and .run.densities_per_tensor and
	 ([.tensors[] | select(.name == "model.layers.1.mlp.up_proj.weight") | .weights == [1, 0.3, 0.5] and
	   .densities[1:] == [0.5, 0.33]] == [true])' "$(ls "$tmp"/md/*manifest*.json 2>/dev/null | head -1)"

# --print-config prints the gradients and filters back; run, the same bytes
status 0 "ties.yml: --print-config" "$LINES" merge --config "$tmp/ties.yml" --print-config
cp "$tmp/out" "$tmp/printed.yml"
check "... with the density gradient and the weight filters" \
	sh -c "grep -q 'density: \\[1, 0.7, 0.1\\]' '$tmp/printed.yml' && grep -q 'filter: \"*mlp' '$tmp/printed.yml'"
"$LINES" merge -q --config "$tmp/printed.yml" -o "$tmp/p.st" 2>"$tmp/err"
check "... run again, the same bytes" cmp -s "$tmp/t.st" "$tmp/p.st"
check "... the directory's lines_config.yml is that configuration" cmp -s "$tmp/printed.yml" "$tmp/md/lines_config.yml"

# -w and --density beside --config give one value for all
status 0 "ties.yml with -w 1,1,1 --density 0.4: -n --json" \
	"$LINES" merge -n --json --config "$tmp/ties.yml" -w 1,1,1 --density 0.4 -o "$tmp/x.st"
jqok "... no values per tensor" '(.weights_per_tensor | not) and (.densities_per_tensor | not) and
	.weights == [1, 1, 1]'

b=$tmp/f/base m1=$tmp/f/ft1 m2=$tmp/f/ft2 m3=$tmp/f/ft3

# task_arithmetic (-m sum) with a gradient, filters with a gradient, lambda
cat >"$tmp/ta.yml" <<EOF
merge_method: task_arithmetic
base_model: $b
models:
  - model: $m1
    parameters:
      weight: [0.2, 1.0]
  - model: $m2
    parameters:
      weight:
        - filter: self_attn
          value: [1, 0.5, 0]
        - value: 0.7
parameters:
  lambda: 0.9
EOF
status 0 "task_arithmetic with weight gradients: -n --json" "$LINES" merge -n --json --config "$tmp/ta.yml"
cp "$tmp/out" "$tmp/ta.json"
jqok "... every tensor's weights" "$JQDEF"'
	.num_layers as $L | .method == "sum" and .weights_per_tensor and
	([.tensors[] | select(.merged) | tpos($L) as $t |
	  .weights == [grad([0.2, 1.0]; $t), (if (.name | contains("self_attn")) then grad([1, 0.5, 0]; $t) else 0.7 end)]] |
	 length >= 39 and all)'
status 0 "... the merge" "$LINES" merge -q --config "$tmp/ta.yml" -o "$tmp/ta.st"
MIN_GROUPS=5
per_group "task_arithmetic" "$tmp/ta.st" "$tmp/ta.json" -b "$b" -m sum --lambda 0.9 "$m1" "$m2"

# normalize: true (-m mean): each tensor divided by the sum of its own weights
sed 's/^  lambda: 0.9/  normalize: true/' "$tmp/ta.yml" >"$tmp/tam.yml"
status 0 "task_arithmetic, normalize: true (mean): the merge" \
	"$LINES" merge -q --config "$tmp/tam.yml" -o "$tmp/tam.st"
status 0 "... -n --json" "$LINES" merge -n --json --config "$tmp/tam.yml"
cp "$tmp/out" "$tmp/tam.json"
per_group "mean" "$tmp/tam.st" "$tmp/tam.json" -b "$b" -m mean "$m1" "$m2"

# a sweep of lambda writes, per value, what a run with that value writes
for cfg in tam ties; do
	rm -f "$tmp"/sw-*
	"$LINES" merge -q --config "$tmp/$cfg.yml" --lambda 0.5,1 -o "$tmp/sw-{lambda}.st" 2>"$tmp/err"
	"$LINES" merge -q --config "$tmp/$cfg.yml" --lambda 0.5 -o "$tmp/one.st" 2>>"$tmp/err"
	check "$cfg.yml with --lambda 0.5,1 (a sweep): the bytes of --lambda 0.5" \
		cmp -s "$tmp/sw-0.5.st" "$tmp/one.st"
done

# linear (no base) with a filtered gradient, a gradient and a number
cat >"$tmp/lin.yml" <<EOF
merge_method: linear
models:
  - model: $m1
    parameters:
      weight: [0.2, 1.0]
  - model: $m2
    parameters:
      weight:
        - filter: mlp
          value: [1, 0.5, 0]
        - value: 0.7
  - model: $m3
    parameters:
      weight: 0.5
dtype: float32
EOF
status 0 "linear with weight gradients: -n --json" "$LINES" merge -n --json --config "$tmp/lin.yml"
cp "$tmp/out" "$tmp/lin.json"
jqok "... every tensor's weights" "$JQDEF"'
	.num_layers as $L | .method == "linear" and
	([.tensors[] | select(.merged) | tpos($L) as $t |
	  .weights == [grad([0.2, 1.0]; $t), (if (.name | contains("mlp")) then grad([1, 0.5, 0]; $t) else 0.7 end), 0.5]] |
	 length >= 39 and all)'
status 0 "... the merge" "$LINES" merge -q --config "$tmp/lin.yml" -o "$tmp/lin.st"
per_group "linear" "$tmp/lin.st" "$tmp/lin.json" -m linear --normalize --dtype f32 "$m1" "$m2" "$m3"
"$LINES" merge --config "$tmp/lin.yml" --print-config >"$tmp/linp.yml" 2>"$tmp/err"
"$LINES" merge -q --config "$tmp/linp.yml" -o "$tmp/p.st" 2>"$tmp/err"
check "... --print-config, run again: the same bytes" cmp -s "$tmp/lin.st" "$tmp/p.st"

# nuslerp of two task vectors, t = w1 / (w0 + w1) per tensor
cat >"$tmp/nu.yml" <<EOF
merge_method: nuslerp
base_model: $b
models:
  - model: $m1
    parameters:
      weight: [1, 0.2]
  - model: $m2
    parameters:
      weight: [{filter: mlp, value: [0.5, 2]}, {value: 1}]
EOF
status 0 "nuslerp with weight gradients: -n --json" "$LINES" merge -n --json --config "$tmp/nu.yml"
cp "$tmp/out" "$tmp/nu.json"
jqok "... every tensor's weights, and its t = w1 / (w0 + w1)" "$JQDEF"'
	.num_layers as $L | .method == "nuslerp" and .weights_per_tensor and
	([.tensors[] | select(.merged) | tpos($L) as $t |
	  .weights == [grad([1, 0.2]; $t), (if (.name | contains("mlp")) then grad([0.5, 2]; $t) else 1 end)] and
	  .t == .weights[1] / (.weights[0] + .weights[1])] | length >= 39 and all)'
status 0 "... the merge" "$LINES" merge -q --config "$tmp/nu.yml" -o "$tmp/nu.st"
MIN_GROUPS=7 # block 1's mlp tensors have the weights of its others
per_group "nuslerp" "$tmp/nu.st" "$tmp/nu.json" -b "$b" -m nuslerp "$m1" "$m2"
"$LINES" merge --config "$tmp/nu.yml" --print-config >"$tmp/nup.yml" 2>"$tmp/err"
"$LINES" merge -q --config "$tmp/nup.yml" -o "$tmp/p.st" 2>"$tmp/err"
check "... --print-config, run again: the same bytes" cmp -s "$tmp/nu.st" "$tmp/p.st"

# multislerp of three task vectors, each tensor's weights over their sum
cat >"$tmp/ms.yml" <<EOF
merge_method: multislerp
base_model: $b
models:
  - model: $m1
    parameters:
      weight: [1, 0.2]
  - model: $m2
    parameters:
      weight: [{filter: mlp, value: [0.5, 2]}, {value: 1}]
  - model: $m3
    parameters:
      weight: 0.7
EOF
status 0 "multislerp with weight gradients: -n --json" "$LINES" merge -n --json --config "$tmp/ms.yml"
cp "$tmp/out" "$tmp/ms.json"
jqok "... every tensor's weights" "$JQDEF"'
	.num_layers as $L | .method == "multislerp" and .weights_per_tensor and
	([.tensors[] | select(.merged) | tpos($L) as $t |
	  .weights == [grad([1, 0.2]; $t), (if (.name | contains("mlp")) then grad([0.5, 2]; $t) else 1 end), 0.7]] |
	 length >= 39 and all)'
status 0 "... the merge" "$LINES" merge -q --config "$tmp/ms.yml" -o "$tmp/ms.st"
per_group "multislerp" "$tmp/ms.st" "$tmp/ms.json" -b "$b" -m multislerp --normalize "$m1" "$m2" "$m3"
"$LINES" merge --config "$tmp/ms.yml" --print-config >"$tmp/msp.yml" 2>"$tmp/err"
"$LINES" merge -q --config "$tmp/msp.yml" -o "$tmp/p.st" 2>"$tmp/err"
check "... --print-config, run again: the same bytes" cmp -s "$tmp/ms.st" "$tmp/p.st"

# ties within slices: a weight per slice (a gradient in the second), a
# source's density gradient; the embeddings take the first slice's, the
# norm and head the last slice's (t = 0)
cat >"$tmp/sl.yml" <<EOF
merge_method: ties
base_model: $b
slices:
  - sources:
      - {model: $b, layer_range: [0, 2]}
      - {model: $m1, layer_range: [0, 2]}
      - model: $m2
        layer_range: [0, 2]
        parameters: {density: [0.3, 0.9]}
    parameters: {weight: 0.2}
  - sources:
      - {model: $b, layer_range: [2, 4]}
      - {model: $m1, layer_range: [2, 4]}
      - {model: $m2, layer_range: [2, 4]}
    parameters: {weight: [0.8, 0.4]}
parameters:
  density: 0.5
EOF
status 0 "ties within slices, values per slice: -n --json" "$LINES" merge -n --json --config "$tmp/sl.yml"
cp "$tmp/out" "$tmp/sl.json"
jqok "... every tensor's weights and densities at its place in its slice" '
	[.tensors[] | select(.merged) |
	 (if .block == null then (if (.name | contains("embed")) then 0 else 1 end)
	  elif .block < 2 then 0 else 1 end) as $s |
	 (if .block == null then 0 else .block - 2 * $s end) as $i |
	 .weights == (if $s == 0 then [0.2, 0.2] elif $i == 0 then [0.8, 0.8] else [0.4, 0.4] end) and
	 .densities == [0.5, (if $s == 1 then 0.5 elif .block == null or $i == 0 then 0.3 else 0.9 end)]] |
	length >= 39 and all'
status 0 "... the merge" "$LINES" merge -q --config "$tmp/sl.yml" -o "$tmp/sl.st"
"$LINES" merge --config "$tmp/sl.yml" --print-config >"$tmp/slp.yml" 2>"$tmp/err"
"$LINES" merge -q --config "$tmp/slp.yml" -o "$tmp/p.st" 2>"$tmp/err"
check "... --print-config, run again: the same bytes" cmp -s "$tmp/sl.st" "$tmp/p.st"

# dare_linear and dare_ties (mergekit's L1 rescale), breadcrumbs,
# breadcrumbs_ties, della and della_linear: the drops are a pure function
# of (seed, model, tensor, element), breadcrumbs' cuts are per tensor,
# and the signs of breadcrumbs_ties and della per element, so each tensor
# is the tensor of a merge with its values given once.
# dare_ties's zero sums take the model's majority sign, as ties's do; on
# an F32 family no kept values cancel exactly, so there too each tensor
# has those bytes.
family "$tmp/g" --arch llama --dtype f32 --layers 4 --hidden 32 --models 3 --seed 41 >/dev/null
for dm in dare_linear dare_ties breadcrumbs breadcrumbs_ties della della_linear; do
	cat >"$tmp/$dm.yml" <<EOF
merge_method: $dm
base_model: $tmp/g/base.safetensors
models:
  - model: $tmp/g/ft1.safetensors
    parameters:
      weight: [1, 0.5]
      density: [0.9, 0.4]
  - model: $tmp/g/ft2.safetensors
    parameters:
      weight: [{filter: mlp, value: 0.8}, {value: 1.2}]
      density: 0.6
  - model: $tmp/g/ft3.safetensors
    parameters:
      weight: 0.7
      density: [{filter: self_attn, value: [0.3, 0.8]}, {value: 0.5}]
parameters:
  lambda: 1.1
EOF
	case $dm in della*) # keep probabilities within (0, 1): density 0.9 - 0.15 ... 0.9 + 0.15 is not
		sed -i 's/density: \[0.9, 0.4\]/density: [0.8, 0.4]/' "$tmp/$dm.yml" ;;
	esac
	status 0 "$dm with gradients and filters: -n --json" "$LINES" merge -n --json --config "$tmp/$dm.yml"
	cp "$tmp/out" "$tmp/$dm.json"
	jqok "... every tensor's weights and densities" "$JQDEF"'
		.num_layers as $L | .weights_per_tensor and .densities_per_tensor and
		([.tensors[] | select(.merged) | tpos($L) as $t |
		  .weights == [grad([1, 0.5]; $t), (if (.name | contains("mlp")) then 0.8 else 1.2 end), 0.7] and
		  .densities == [grad([(if "'"$dm"'" | startswith("della") then 0.8 else 0.9 end), 0.4]; $t), 0.6,
		                 (if (.name | contains("self_attn")) then grad([0.3, 0.8]; $t) else 0.5 end)]] |
		 length >= 39 and all)'
	status 0 "... the merge" "$LINES" merge -q --config "$tmp/$dm.yml" -o "$tmp/$dm.st"
	case $dm in
	dare_linear) how="-m dare --rescale" ;;
	dare_ties) how="-m dare --dare-elect --normalize --rescale" ;;
	breadcrumbs) how="-m breadcrumbs --bc-gamma 0.01" ;; # mergekit's defaults
	breadcrumbs_ties) how="-m breadcrumbs_ties --normalize --bc-gamma 0.01" ;;
	della) how="-m della --normalize --rescale --epsilon 0.15" ;; # mergekit's defaults
	della_linear) how="-m della_linear --rescale --epsilon 0.15" ;;
	esac
	MIN_GROUPS=8
	# shellcheck disable=SC2086 # options split on purpose
	per_group "$dm" "$tmp/$dm.st" "$tmp/$dm.json" -b "$tmp/g/base.safetensors" $how --lambda 1.1 \
		"$tmp/g/ft1.safetensors" "$tmp/g/ft2.safetensors" "$tmp/g/ft3.safetensors"
	"$LINES" merge --config "$tmp/$dm.yml" --print-config >"$tmp/dp.yml" 2>"$tmp/err"
	"$LINES" merge -q --config "$tmp/dp.yml" -o "$tmp/p.st" 2>"$tmp/err"
	check "... --print-config, run again: the same bytes" cmp -s "$tmp/$dm.st" "$tmp/p.st"
done

# refusals: a method that takes one value per model, at the value's line
# and column; ties' densities per tensor under global trim; nothing written
refused() {
	desc=$1 cfg=$2 at=$3
	rm -f "$tmp/no.st"
	status 2 "$desc: refused" "$LINES" merge --config "$cfg" -o "$tmp/no.st"
	if [ -n "$at" ]; then
		check "... at $at" grep -q "^lines: $cfg:$at: " "$tmp/err"
	fi
	check "... nothing written" test ! -e "$tmp/no.st"
}
cat >"$tmp/bad1.yml" <<EOF
merge_method: consensus
base_model: $b
models:
  - model: $m1
    parameters:
      weight: [0, 1]
EOF
refused "consensus with a weight gradient" "$tmp/bad1.yml" 6:15
cat >"$tmp/bad2.yml" <<EOF
merge_method: della
base_model: $b
models:
  - model: $m1
    parameters:
      weight: 1
      density: [{filter: mlp, value: 0.1}, {value: 0.6}]
parameters:
  epsilon: 0.15
EOF
refused "della with a density of 0.1 for the mlp tensors (epsilon 0.15: keep probabilities below 0)" \
	"$tmp/bad2.yml" ""
cat >"$tmp/bad3.yml" <<EOF
merge_method: ties
base_model: $b
models:
  - model: $m1
    parameters:
      weight: 1
      density: [0.2, 0.8]
lines:
  trim: global
EOF
refused "ties with a density gradient under lines: trim: global" "$tmp/bad3.yml" ""
cat >"$tmp/ok4.yml" <<EOF
merge_method: ties
base_model: $b
models:
  - model: $m1
    parameters:
      weight: [1, 0.5]
      density: 0.3
  - model: $m2
    parameters:
      weight: 1
      density: 0.3
lines:
  trim: global
EOF
status 0 "ties with a weight gradient under global trim (the trim ranks w tau over the model)" \
	"$LINES" merge -q --config "$tmp/ok4.yml" -o "$tmp/ok4.st"

done_testing
