#!/bin/sh
# t-slices.sh -- mergekit's slices: and passthrough (lines-config(5)).
# A passthrough frankenmerge (blocks [0, 3) of one model, then [1, 4) of
# another) writes every tensor with the bytes of its source tensor (NaN
# payloads included: --specials), blocks renumbered, the embeddings from
# the first slice's model and the final norm and head from the last's;
# a directory output's config.json says 6 layers; the result merges
# again; the same bytes for -j, --chunk and --io. A slerp within slices
# that cover every block is the whole-model slerp, byte for byte.
# --print-config prints the slices back. Each refusal is a usage error at
# the configuration's FILE:LINE:COL, with nothing written. Offsets come
# from `lines inspect --json` (the tensors in storage order, packed after
# the header); values are read with jq.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

if ! command -v jq >/dev/null 2>&1; then
	echo "1..0 # SKIP jq is missing"
	exit 0
fi

family "$tmp/f" --arch llama --dtype bf16 --layers 4 --size 1M --models 2 --seed 21 --specials
A=$tmp/f/ft1.safetensors
B=$tmp/f/ft2.safetensors
base=$tmp/f/base.safetensors

cat >"$tmp/pt.yml" <<EOF
# a frankenmerge: blocks 0-2 of A, then blocks 1-3 of B
merge_method: passthrough
slices:
  - sources:
      - model: $A
        layer_range: [0, 3]
  - sources:
      - model: $B
        layer_range: [1, 4]
EOF
status 0 "passthrough of two slices" "$LINES" merge -q --config "$tmp/pt.yml" -o "$tmp/pt.st"
"$LINES" inspect --json "$tmp/pt.st" >"$tmp/out"
jqok "... 6 blocks, one stack of 6" '.num_layers == 6 and .stacks == [{"name": "model.layers", "num_layers": 6}]'
offsets "$A" >"$tmp/oa"
offsets "$B" >"$tmp/ob"
offsets "$tmp/pt.st" >"$tmp/oo"

# the source of each output tensor: block j < 3 is A's j, else B's j - 2
bad=0
count=0
while read -r name off len; do
	blk=$(echo "$name" | sed -n 's/^model\.layers\.\([0-9]*\)\..*/\1/p')
	if [ -n "$blk" ]; then
		if [ "$blk" -lt 3 ]; then src=$tmp/oa f=$A sb=$blk; else src=$tmp/ob f=$B sb=$((blk - 2)); fi
		sname=$(echo "$name" | sed "s/^model\.layers\.$blk\./model.layers.$sb./")
	else
		case $name in
		*embed*) src=$tmp/oa f=$A ;;
		*) src=$tmp/ob f=$B ;;
		esac
		sname=$name
	fi
	line=$(grep "^$sname " "$src")
	soff=$(echo "$line" | cut -d' ' -f2)
	slen=$(echo "$line" | cut -d' ' -f3)
	count=$((count + 1))
	if [ -z "$line" ] || [ "$slen" != "$len" ] ||
		! cmp -s -i "$off:$soff" -n "$len" "$tmp/pt.st" "$f"; then
		echo "# $name: not the bytes of $sname of $f"
		bad=$((bad + 1))
	fi
done <"$tmp/oo"
ok $bad "every one of the $count output tensors is its source tensor's bytes (renumbered)"
total=$(($(grep -c 'model\.layers\.' "$tmp/oa") / 4 * 6 + $(grep -vc 'model\.layers\.' "$tmp/oa")))
ok $((count != total)) "... $count tensors: 6 blocks and the tensors outside them ($total)"
# the specials: the first tensor of the family holds NaN, infinities, -0
first=$(head -n 1 "$tmp/oa" | cut -d' ' -f1)
grep -q "^$first " "$tmp/oo"
ok $? "... including $first, whose NaN payloads and signed zeros are copied"

# the same bytes however it is read and written
for run in "-j 1" "-j 2" "--chunk 64K" "--io mmap"; do
	# shellcheck disable=SC2086
	"$LINES" merge -q --config "$tmp/pt.yml" $run -o "$tmp/pt2.st" 2>"$tmp/err"
	cmp -s "$tmp/pt.st" "$tmp/pt2.st"
	ok $? "... $run: the same bytes"
done
if "$LINES" merge -q --io uring --config "$tmp/pt.yml" -o "$tmp/pt2.st" 2>/dev/null; then
	cmp -s "$tmp/pt.st" "$tmp/pt2.st"
	ok $? "... --io uring: the same bytes"
else
	skip "... --io uring: io_uring is not available here"
fi

# --print-config prints the slices, and they run to the same bytes
status 0 "--print-config of the slices" "$LINES" merge --config "$tmp/pt.yml" --print-config
cp "$tmp/out" "$tmp/pt-printed.yml"
has "$tmp/pt-printed.yml" "layer_range: [1, 4]"
ok $? "... it has the second slice's layer_range"
"$LINES" merge -q --config "$tmp/pt-printed.yml" -o "$tmp/pt3.st" 2>"$tmp/err"
cmp -s "$tmp/pt.st" "$tmp/pt3.st"
ok $? "... run again, the same bytes"

# -n --json names the composed input
status 0 "-n --json" "$LINES" merge -n --json --config "$tmp/pt.yml" -o "$tmp/x.st"
jqok "... method passthrough, one input made of the two ranges, 6 layers" \
	'.method == "passthrough" and (.models | length) == 1 and
	 (.models[0] | test("\\[0:3\\]\\+.*\\[1:4\\]$")) and .num_layers == 6'

# a directory output: config.json with 6 layers, the rest as it was
mkdir -p "$tmp/A" "$tmp/B"
cp "$A" "$tmp/A/model.safetensors"
cp "$B" "$tmp/B/model.safetensors"
printf '{"architectures": ["LlamaForCausalLM"], "hidden_size": 64,\n "num_hidden_layers": 4, "vocab_size": 256,\n "layer_types": ["a0", "a1", "a2", "a3"]}\n' >"$tmp/A/config.json"
printf '{"num_hidden_layers": 4}\n' >"$tmp/B/config.json"
sed -e "s|$A|$tmp/A|" -e "s|$B|$tmp/B|" "$tmp/pt.yml" >"$tmp/ptdir.yml"
status 0 "passthrough into a directory" "$LINES" merge -q --config "$tmp/ptdir.yml" -o "$tmp/outdir/"
jqok "... config.json (the first slice's model's) says 6 layers, the rest unchanged" \
	'.num_hidden_layers == 6 and .hidden_size == 64 and .vocab_size == 256 and
	 .architectures == ["LlamaForCausalLM"]' "$tmp/outdir/config.json"
jqok "... its layer_types taken at each block's source index" \
	'.layer_types == ["a0", "a1", "a2", "a1", "a2", "a3"]' "$tmp/outdir/config.json"
cmp -s "$tmp/outdir/model.safetensors" "$tmp/pt.st"
ok $? "... model.safetensors is the file's bytes"
has "$tmp/outdir/lines_config.yml" "layer_range: [0, 3]"
ok $? "... lines_config.yml records the slices"

# the frankenmerge merges again: a second one, then task arithmetic of the two
cat >"$tmp/pt-b.yml" <<EOF
merge_method: passthrough
slices:
  - sources: [{model: $base, layer_range: [0, 3]}]
  - sources: [{model: $base, layer_range: [1, 4]}]
EOF
status 0 "a frankenmerge of the base" "$LINES" merge -q --config "$tmp/pt-b.yml" -o "$tmp/ptb.st"
status 0 "... and lines merges the two frankenmerges (--lines)" \
	"$LINES" merge -q --json -b "$tmp/ptb.st" --lines --alpha 0.5 -o "$tmp/again.st" "$tmp/pt.st"
jqok "... over 6 blocks" '.num_layers == 6'

# a slerp within slices that cover [0, 4) is the whole-model slerp (the
# base second in the second slice: the order of sources does not matter)
cat >"$tmp/sl.yml" <<EOF
merge_method: slerp
base_model: $base
slices:
  - sources:
      - model: $base
        layer_range: [0, 2]
      - model: $A
        layer_range: [0, 2]
  - sources:
      - model: $A
        layer_range: [2, 4]
      - model: $base
        layer_range: [2, 4]
parameters:
  t: 0.3
EOF
cat >"$tmp/wh.yml" <<EOF
merge_method: slerp
base_model: $base
models: [{model: $base}, {model: $A}]
parameters: {t: 0.3}
EOF
status 0 "slerp within two slices" "$LINES" merge -q --config "$tmp/sl.yml" -o "$tmp/sl.st"
status 0 "... the whole-model slerp" "$LINES" merge -q --config "$tmp/wh.yml" -o "$tmp/wh.st"
cmp -s "$tmp/sl.st" "$tmp/wh.st"
ok $? "... the same bytes"
status 0 "... --print-config" "$LINES" merge --config "$tmp/sl.yml" --print-config
cp "$tmp/out" "$tmp/sl-printed.yml"
"$LINES" merge -q --config "$tmp/sl-printed.yml" -o "$tmp/sl2.st" 2>"$tmp/err"
cmp -s "$tmp/sl.st" "$tmp/sl2.st"
ok $? "... run again, the same bytes"

# ties within slices: A and B over the base, slices [0, 1) and [1, 4)
cat >"$tmp/ties.yml" <<EOF
merge_method: ties
base_model: $base
slices:
  - sources:
      - {model: $base, layer_range: [0, 1]}
      - {model: $A, layer_range: [0, 1], parameters: {weight: 0.6, density: 0.5}}
      - {model: $B, layer_range: [0, 1], parameters: {weight: 0.4, density: 0.7}}
  - sources:
      - {model: $base, layer_range: [1, 4]}
      - {model: $A, layer_range: [1, 4], parameters: {weight: 0.6, density: 0.5}}
      - {model: $B, layer_range: [1, 4], parameters: {weight: 0.4, density: 0.7}}
EOF
cat >"$tmp/ties-wh.yml" <<EOF
merge_method: ties
base_model: $base
models:
  - {model: $A, parameters: {weight: 0.6, density: 0.5}}
  - {model: $B, parameters: {weight: 0.4, density: 0.7}}
EOF
"$LINES" merge -q --config "$tmp/ties.yml" -o "$tmp/t1.st" 2>"$tmp/err"
"$LINES" merge -q --config "$tmp/ties-wh.yml" -o "$tmp/t2.st" 2>>"$tmp/err"
cmp -s "$tmp/t1.st" "$tmp/t2.st"
ok $? "ties within slices with parameters per source: the whole-model ties's bytes"

# slerp's t per tensor within slices (mergekit's gradient-slerp): the
# filters' gradients at the block's position in its slice, the second
# slice's own t; each tensor is what a slerp with that one t writes
cat >"$tmp/gr.yml" <<EOF
merge_method: slerp
base_model: $base
slices:
  - sources:
      - model: $base
        layer_range: [0, 3]
      - model: $A
        layer_range: [0, 3]
  - sources:
      - model: $A
        layer_range: [3, 4]
      - model: $base
        layer_range: [3, 4]
    parameters:
      t: 0.9
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5
EOF
status 0 "slerp with gradients within slices: -n --json" \
	"$LINES" merge -n --json --config "$tmp/gr.yml" -o "$tmp/gr.st"
jqok "... every tensor's t is its filter's gradient at its place in its slice" '
	def grad(g; t): (t * ((g | length) - 1)) as $s | ($s | floor) as $i |
		if $i >= (g | length) - 1 then g[-1] else (1 - ($s - $i)) * g[$i] + ($s - $i) * g[$i + 1] end;
	def want: .name as $n | .block as $b |
		if ($b == null and ($n | test("embed") | not)) or ($b != null and $b >= 3) then 0.9
		else (if $b == null then 0 else $b / 2 end) as $t |
			if ($n | test("self_attn")) then grad([0, 0.5, 0.3, 0.7, 1]; $t)
			elif ($n | test("mlp")) then grad([1, 0.5, 0.7, 0.3, 0]; $t)
			else 0.5 end
		end;
	[.tensors[] | select(.merged) | .t == want] | length > 30 and all'
jq -r '.tensors[] | "\(.name) \(.t)"' "$tmp/out" >"$tmp/tt"
status 0 "... the merge" "$LINES" merge -q --config "$tmp/gr.yml" -o "$tmp/gr.st"
offsets "$tmp/gr.st" >"$tmp/og"
bad=0
for v in $(cut -d' ' -f2 "$tmp/tt" | sort -u); do
	"$LINES" merge -q -b "$base" -m slerp --t "$v" -o "$tmp/u.st" "$A" 2>>"$tmp/err" || bad=$((bad + 1))
	offsets "$tmp/u.st" >"$tmp/ou"
	awk -v v="$v" '$2 == v {print $1}' "$tmp/tt" >"$tmp/names"
	while read -r name; do
		read -r _ o1 len <<-EOF
			$(grep "^$name " "$tmp/og")
		EOF
		read -r _ o2 _ <<-EOF
			$(grep "^$name " "$tmp/ou")
		EOF
		if ! cmp -s -i "$o1:$o2" -n "$len" "$tmp/gr.st" "$tmp/u.st"; then
			echo "# $name: not the bytes of a slerp with t = $v"
			bad=$((bad + 1))
		fi
	done <"$tmp/names"
done
ok $bad "... each tensor has the bytes of a slerp of the whole model with its t"
cat >"$tmp/gr-whole.yml" <<EOF
merge_method: slerp
base_model: $base
slices:
  - sources:
      - {model: $base, layer_range: [0, 4]}
      - {model: $A, layer_range: [0, 4]}
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5
EOF
status 0 "... one slice over [0, 4) with the same gradients" \
	"$LINES" merge -q --config "$tmp/gr-whole.yml" -o "$tmp/gr-whole.st"
! cmp -s "$tmp/gr.st" "$tmp/gr-whole.st"
ok $? "... is another model (positions over 4 blocks, no t: 0.9)"
status 0 "... whose t are the gradients over 4 blocks" \
	"$LINES" merge -n --json --config "$tmp/gr-whole.yml" -o "$tmp/x.st"
jqok "... block 1's self_attn at t = 1/3" \
	'[.tensors[] | select(.name == "model.layers.1.self_attn.q_proj.weight") | .t] ==
	 [(1 - (4/3 - 1)) * 0.5 + (4/3 - 1) * 0.3]'
status 0 "... --print-config of the gradients" "$LINES" merge --config "$tmp/gr.yml" --print-config
cp "$tmp/out" "$tmp/gr-printed.yml"
"$LINES" merge -q --config "$tmp/gr-printed.yml" -o "$tmp/gr2.st" 2>"$tmp/err"
cmp -s "$tmp/gr.st" "$tmp/gr2.st"
ok $? "... run again, the same bytes"
"$LINES" merge -q --config "$tmp/gr.yml" --t 0.3 -o "$tmp/gr3.st" 2>"$tmp/err"
cmp -s "$tmp/gr3.st" "$tmp/sl.st"
ok $? "... --t beside it gives every tensor that t (the slerp at 0.3 above)"

# -m passthrough with another dtype: each element rounded once (BF16 to
# F32 is exact: the data of linear's mean of the one model, an
# independent path), and back to BF16 the model's own bytes, NaN included
data() { tail -c +$(($("$LINES" inspect --json "$1" | jq .header_bytes) + 1)) "$1"; }
for dt in bf16 f16; do
	family "$tmp/d$dt" --arch llama --dtype $dt --layers 2 --size 256K --models 1 --seed 9 --specials
	src=$tmp/d$dt/ft1.safetensors
	"$LINES" merge -q -m passthrough --dtype f32 -o "$tmp/p32.st" "$src" 2>"$tmp/err"
	"$LINES" merge -q -m linear --dtype f32 -o "$tmp/l32.st" "$src" 2>>"$tmp/err"
	data "$tmp/p32.st" >"$tmp/p32.bin"
	data "$tmp/l32.st" >"$tmp/l32.bin"
	cmp -s "$tmp/p32.bin" "$tmp/l32.bin"
	ok $? "-m passthrough --dtype f32 of $dt: the data of -m linear --dtype f32 of the one model"
	"$LINES" merge -q -m passthrough --dtype $dt -o "$tmp/back.st" "$tmp/p32.st" 2>>"$tmp/err"
	data "$tmp/back.st" >"$tmp/back.bin"
	data "$src" >"$tmp/src.bin"
	cmp -s "$tmp/back.bin" "$tmp/src.bin"
	ok $? "... and back to $dt, the model's own data (NaN, infinities, -0 and subnormals)"
done

# refusals: a usage error at FILE:LINE:COL, nothing written
refused() {
	desc=$1
	cfg=$2
	where=$3
	rm -f "$tmp/r.st"
	status 2 "$desc: refused" "$LINES" merge -q --config "$cfg" -o "$tmp/r.st"
	grep -q "^lines: $cfg:$where: " "$tmp/err"
	ok $? "... at $where"
	[ ! -e "$tmp/r.st" ]
	ok $? "... nothing written"
}
sed 's/layer_range: \[1, 4\]/layer_range: [1, 5]/' "$tmp/pt.yml" >"$tmp/bad1.yml"
refused "a layer_range beyond the model's 4 blocks" "$tmp/bad1.yml" 9:22
# scale is a per-model parameter of passthrough (mergekit's tensor parameter):
# 1 on a source is accepted, as at the top level; another value is refused there
sed 's/layer_range: \[0, 3\]/layer_range: [0, 3]\n        parameters: {scale: 1}/' "$tmp/pt.yml" >"$tmp/sc1.yml"
status 0 "passthrough, scale: 1 on a source" "$LINES" merge -q --config "$tmp/sc1.yml" -o "$tmp/sc1.st"
cmp -s "$tmp/sc1.st" "$tmp/pt.st"
ok $? "... the bytes without it"
sed 's/layer_range: \[\([0-9]\), \([0-9]\)\]/layer_range: [\1, \2]\n        parameters: {scale: 0.5}/' \
	"$tmp/pt.yml" >"$tmp/sc2.yml"
refused "passthrough, scale: 0.5 on every source (only 1 yet)" "$tmp/sc2.yml" 7:29
cat >"$tmp/bad2.yml" <<EOF
merge_method: slerp
base_model: $base
slices:
  - sources:
      - {model: $base, layer_range: [0, 2]}
      - {model: $A, layer_range: [0, 2]}
  - sources:
      - {model: $base, layer_range: [2, 4]}
      - {model: $A, layer_range: [2, 4]}
      - {model: $B, layer_range: [2, 4]}
parameters: {t: 0.5}
EOF
refused "slices with another number of sources under a merge" "$tmp/bad2.yml" 7:5
cat >"$tmp/bad3.yml" <<EOF
merge_method: passthrough
slices:
  - sources:
      - {model: $A, layer_range: [0, 2]}
      - {model: $B, layer_range: [0, 2]}
EOF
refused "passthrough with two sources in a slice" "$tmp/bad3.yml" 3:5
cat >"$tmp/bad4.yml" <<EOF
merge_method: slerp
base_model: $base
slices:
  - sources:
      - model: $base
        layer_range: [0, 2]
      - model: $A
        layer_range: [0, 3]
parameters: {t: 0.5}
EOF
refused "sources of a slice with different numbers of blocks" "$tmp/bad4.yml" 8:22
cat >"$tmp/bad5.yml" <<EOF
merge_method: slerp
base_model: $base
slices:
  - sources:
      - {model: $A, layer_range: [0, 4]}
      - {model: $B, layer_range: [0, 4]}
parameters: {t: 0.5}
EOF
refused "a slice without the base among its sources" "$tmp/bad5.yml" 4:5
cat >"$tmp/bad6.yml" <<EOF
merge_method: passthrough
modules:
  text:
    slices:
      - sources: [{model: $A, layer_range: [0, 4]}]
EOF
refused "modules:" "$tmp/bad6.yml" 2:1
cat >"$tmp/bad7.yml" <<EOF
merge_method: consensus
base_model: $base
slices:
  - sources: [{model: $base, layer_range: [0, 2]}, {model: $A, layer_range: [0, 2]}]
    parameters: {weight: 0.2}
  - sources: [{model: $base, layer_range: [2, 4]}, {model: $A, layer_range: [2, 4]}]
    parameters: {weight: 0.8}
EOF
refused "a weight that differs between slices (consensus takes one per model; ties takes it: t-tensor-params)" "$tmp/bad7.yml" 6:5
cat >"$tmp/bad8.yml" <<EOF
merge_method: passthrough
models: [{model: $A}]
slices:
  - sources: [{model: $A, layer_range: [0, 4]}]
EOF
refused "models: and slices: together" "$tmp/bad8.yml" 4:3
cat >"$tmp/bad9.yml" <<EOF
merge_method: passthrough
slices:
  - sources:
      - model: $A
        layer_range: [3, 1]
EOF
refused "an empty layer_range" "$tmp/bad9.yml" 5:22

cat >"$tmp/bad10.yml" <<EOF
merge_method: passthrough
slices:
  - sources:
      - model: "-"
        layer_range: [0, 2]
EOF
refused "standard input as a slice's model" "$tmp/bad10.yml" 4:16

# a model of two stacks (T5's encoder and decoder) is refused when opened
family "$tmp/t5" --arch t5 --dtype bf16 --layers 2 --size 256K --models 1 --seed 1
cat >"$tmp/t5.yml" <<EOF
merge_method: passthrough
slices:
  - sources:
      - model: $tmp/t5/ft1.safetensors
        layer_range: [0, 2]
EOF
rm -f "$tmp/r.st"
status 1 "a model of two stacks of blocks as a slice's source: an error" \
	"$LINES" merge -q --config "$tmp/t5.yml" -o "$tmp/r.st"
grep -q "^lines: $tmp/t5/ft1.safetensors: slice 1: " "$tmp/err"
ok $? "... naming the model and the slice"
[ ! -e "$tmp/r.st" ]
ok $? "... nothing written"

# constant memory: the peak resident set of a passthrough of 512 MiB
# models stays within the bound -n announces (which does not grow with
# the model's size: t-rss.sh)
: "${PEAK_RSS:=$(dirname "$GEN")/peak-rss}"
if [ -n "${LINES_SKIP_BIG:-}" ] || [ ! -r /proc/self/statm ]; then
	skip "peak RSS of a passthrough: LINES_SKIP_BIG is set, or no /proc/self/statm"
else
	family "$tmp/m" --arch llama --dtype bf16 --layers 2 --size 512M --models 2 --seed 4
	cat >"$tmp/m.yml" <<EOF
merge_method: passthrough
slices:
  - sources: [{model: $tmp/m/ft1.safetensors, layer_range: [0, 2]}]
  - sources: [{model: $tmp/m/ft2.safetensors, layer_range: [0, 2]}]
EOF
	"$LINES" merge -n --json -j 2 --io mmap --config "$tmp/m.yml" -o "$tmp/m.st" >"$tmp/plan.json"
	bound=$(jq .memory_bound "$tmp/plan.json")
	"$PEAK_RSS" "$tmp/rss" "$LINES" merge -q -j 2 --io mmap --config "$tmp/m.yml" -o "$tmp/m.st"
	ok $? "passthrough of two 512 MiB models' blocks"
	peak=$(($(cat "$tmp/rss") * 1024))
	ok $((peak > bound)) "... peak RSS $peak bytes within the bound -n announced, $bound"
	rm -rf "$tmp/m.st" "$tmp/m"
fi

done_testing
