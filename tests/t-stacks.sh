#!/bin/sh
# t-stacks.sh -- depth per stack: every block's lambda is its own stack's
# ramp, alpha + beta * i / (L_s - 1), computed here from the plan's JSON
# and compared with the lambda of every tensor; --stacks joint, --stack-
# order, two-group --layer-regex, and the refusals and warnings around
# them (issue 14, items 1 to 4). Reads --json, not prose.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

if ! command -v jq >/dev/null 2>&1; then
	echo "1..0 # SKIP jq is missing"
	exit 0
fi

# plan NAME ARGS...: lines merge -n --json into $tmp/NAME.json
plan() {
	name=$1
	shift
	"$LINES" merge -n --json -o "$tmp/unused.st" "$@" >"$tmp/$name.json" 2>"$tmp/err"
	ok $? "$name: the plan"
	sed 's/^/# /' "$tmp/err"
}

# ramp_ok NAME: every tensor in a block has the lambda of its stack's ramp
# (first + i of a ramp of `ramp` blocks), every other alpha
ramp_ok() {
	jqok "$1: lambda of every tensor = alpha + beta (first + i) / (ramp - 1) of its stack" '
		.lines.alpha as $a | .lines.beta as $b |
		(.stacks | map({key: .name, value: .}) | from_entries) as $s |
		all(.tensors[] | select(.merged);
			(if .block == null then $a
			 else $s[.stack] as $t |
			      (if $t.ramp > 1 then $a + $b * ($t.first + .block) / ($t.ramp - 1) else $a end)
			 end) as $want |
			(.lambda - $want | fabs) < 1e-12)' "$tmp/$1.json"
}

# stacks_are NAME 'a:L,b:L': the plan's stacks and depths
stacks_are() {
	got=$(jq -r '[.stacks[] | "\(.name):\(.num_layers)"] | join(",")' "$tmp/$1.json")
	[ "$got" = "$2" ]
	ok $? "$1: stacks $2 (got $got)"
}

g() { # g DIR ARCH L L2
	family "$tmp/$1" --arch "$2" --layers "$3" --layers2 "$4" --hidden 16 --models 2 --seed 5 \
		--dtype bf16 >/dev/null 2>&1
}

# T5: 6 encoder and 2 decoder blocks; each ends its ramp at alpha + beta
g t5 t5 6 2
plan t5 -b "$tmp/t5/base.safetensors" --gamma 0.3 "$tmp/t5/ft1.safetensors"
stacks_are t5 "encoder.block:6,decoder.block:2"
ramp_ok t5
jqok "t5: the last decoder block gets alpha + beta = 1" \
	'[.tensors[] | select(.stack == "decoder.block" and .block == 1) | .lambda] | all(. == 1)' "$tmp/t5.json"
jqok "t5: the header's num_layers stays the largest depth" '.num_layers == 6' "$tmp/t5.json"
plan t5-joint -b "$tmp/t5/base.safetensors" --gamma 0.3 --stacks joint "$tmp/t5/ft1.safetensors"
ramp_ok t5-joint
jqok "t5 --stacks joint: one ramp of 6, the last decoder block gets alpha + beta / 5" \
	'all(.stacks[]; .ramp == 6 and .first == 0) and
	 ([.tensors[] | select(.stack == "decoder.block" and .block == 1) | .lambda] | all(((. - (0.3 + 0.7 / 5)) | fabs) < 1e-12)) and
	 (.lambda_blocks | length == 6)' "$tmp/t5-joint.json"

# distil-whisper: 32 encoder blocks, 2 decoder blocks
g whisper whisper 32 2
plan whisper -b "$tmp/whisper/base.safetensors" --lines "$tmp/whisper/ft1.safetensors" "$tmp/whisper/ft2.safetensors"
stacks_are whisper "model.encoder.layers:32,model.decoder.layers:2"
ramp_ok whisper

# CLIP with both towers, a VLM with a vision tower, Flux, diffusers
g clip2 clip2 6 3
plan clip2 -b "$tmp/clip2/base.safetensors" --gamma 0.5 "$tmp/clip2/ft1.safetensors"
stacks_are clip2 "vision_model.encoder.layers:6,text_model.encoder.layers:3"
ramp_ok clip2
g vlm vlm 5 3
plan vlm -b "$tmp/vlm/base.safetensors" --gamma 0.5 "$tmp/vlm/ft1.safetensors"
stacks_are vlm "model.vision_tower.vision_model.encoder.layers:3,model.language_model.layers:5"
ramp_ok vlm
g flux flux 3 5
plan flux -b "$tmp/flux/base.safetensors" --gamma 0.2 "$tmp/flux/ft1.safetensors"
stacks_are flux "double_blocks:3,single_blocks:5"
ramp_ok flux
plan flux-chain -b "$tmp/flux/base.safetensors" --gamma 0.2 --stack-order double_blocks,single_blocks "$tmp/flux/ft1.safetensors"
ramp_ok flux-chain
jqok "flux --stack-order: single block i is block 3 + i of a ramp of 8" \
	'(.stacks[] | select(.name == "single_blocks") | .first == 3 and .ramp == 8) and
	 (.stacks[] | select(.name == "double_blocks") | .first == 0 and .ramp == 8) and
	 ([.tensors[] | select(.stack == "single_blocks" and .block == 4) | .lambda] | all(. == 1))' "$tmp/flux-chain.json"
g diff diffusers 2 4
plan diffusers -b "$tmp/diff/base.safetensors" --gamma 0.5 "$tmp/diff/ft1.safetensors"
stacks_are diffusers "transformer_blocks:2,single_transformer_blocks:4"
ramp_ok diffusers

# one stack: Mixtral (an expert's index is not a block), tied Llama
g mixtral mixtral 4 4
plan mixtral -b "$tmp/mixtral/base.safetensors" --gamma 0.5 "$tmp/mixtral/ft1.safetensors"
stacks_are mixtral "model.layers:4"
ramp_ok mixtral
jqok "mixtral: experts.3 of block 2 is in block 2" \
	'[.tensors[] | select(.name == "model.layers.2.block_sparse_moe.experts.3.w1.weight") | .block] == [2]' "$tmp/mixtral.json"
jqok "mixtral: one stack is also the common ramp" '.lambda_blocks | length == 4' "$tmp/mixtral.json"
g tied llama-tied 3 3
plan tied -b "$tmp/tied/base.safetensors" --gamma 0.5 "$tmp/tied/ft1.safetensors"
ramp_ok tied

# the merge itself follows the plan: a run's summary has the same lambdas
status 0 "t5: a run" "$LINES" merge --json -b "$tmp/t5/base.safetensors" --gamma 0.3 -o "$tmp/t5.st" "$tmp/t5/ft1.safetensors"
cp "$tmp/out" "$tmp/t5-run.json"
cmp_l=$(jq -c '[.tensors[].lambda]' "$tmp/t5-run.json")
[ "$cmp_l" = "$(jq -c '[.tensors[].lambda]' "$tmp/t5.json")" ]
ok $? "t5: the run used the plan's lambdas"
jqok "t5: the manifest lists the stacks" \
	'.run.stacks | map(.name) == ["encoder.block", "decoder.block"]' "$tmp/t5.st.manifest.json"
"$LINES" inspect --layers --json "$tmp/t5/base.safetensors" >"$tmp/insp.json" 2>/dev/null
jqok "inspect --layers --json lists each stack with its L" \
	'.stacks == [{"name": "encoder.block", "num_layers": 6}, {"name": "decoder.block", "num_layers": 2}]' "$tmp/insp.json"

"$LINES" inspect --layers --json --num-layers 9 "$tmp/t5/base.safetensors" >"$tmp/insp9.json" 2>/dev/null
jqok "... and with --num-layers, that L for every stack, as a merge takes it" \
	'.num_layers == 9 and .stacks == [{"name": "encoder.block", "num_layers": 9}, {"name": "decoder.block", "num_layers": 9}]' "$tmp/insp9.json"
status 0 "inspect --norms --json on two stacks" "$LINES" inspect --norms --json -b "$tmp/t5/base.safetensors" --alpha 0.5 "$tmp/t5/ft1.safetensors"
jqok "... has no one lambda for a block of both stacks (null), alpha outside" \
	'[.blocks[].lambda] == [null, null, null, null, null, null, 0.5]'

# --layer-regex with two groups: the stack, then the index
plan t5-re -b "$tmp/t5/base.safetensors" --gamma 0.3 --layer-regex '^(encoder|decoder)\.block\.([0-9]+)\.' "$tmp/t5/ft1.safetensors"
stacks_are t5-re "encoder:6,decoder:2"
ramp_ok t5-re

# refusals
g nb noblocks 3 3
status 2 "LiNeS on a model with no tensor in a block is an error" \
	"$LINES" merge -b "$tmp/nb/base.safetensors" --lines -o "$tmp/nb.st" "$tmp/nb/ft1.safetensors" "$tmp/nb/ft2.safetensors"
check "... that names what it saw" has "$tmp/err" "stage0.conv.weight"
check "... and writes nothing" test ! -e "$tmp/nb.st"
status 2 "--gamma on it too" "$LINES" scale -b "$tmp/nb/base.safetensors" --gamma 0.5 -o "$tmp/nb.st" "$tmp/nb/ft1.safetensors"
status 0 "... while a merge without LiNeS works" "$LINES" merge -q -b "$tmp/nb/base.safetensors" -o "$tmp/nb.st" "$tmp/nb/ft1.safetensors"
status 2 "--stack-order with an unknown stack" \
	"$LINES" merge -n -b "$tmp/flux/base.safetensors" --gamma 0.2 --stack-order double_blocks,triple_blocks -o "$tmp/f.st" "$tmp/flux/ft1.safetensors"
check "... names it" has "$tmp/err" "triple_blocks"
status 2 "--stack-order with one stack" \
	"$LINES" merge -n -b "$tmp/flux/base.safetensors" --gamma 0.2 --stack-order double_blocks -o "$tmp/f.st" "$tmp/flux/ft1.safetensors"
status 2 "--stacks joint with --stack-order" \
	"$LINES" merge -n -b "$tmp/flux/base.safetensors" --gamma 0.2 --stacks joint --stack-order double_blocks,single_blocks -o "$tmp/f.st" "$tmp/flux/ft1.safetensors"
status 2 "--stacks with another value" \
	"$LINES" merge -n -b "$tmp/flux/base.safetensors" --gamma 0.2 --stacks shared -o "$tmp/f.st" "$tmp/flux/ft1.safetensors"

# warnings: a stack of one block, an automatic alpha that removes the ramp
g w1 whisper 4 1
status 0 "a stack of a single block merges" \
	"$LINES" merge -b "$tmp/w1/base.safetensors" --gamma 0.5 -o "$tmp/w1.st" "$tmp/w1/ft1.safetensors"
check "... with a warning naming the stack" sh -c "grep 'warning' '$tmp/err' | grep -q 'model.decoder.layers'"
status 0 "mean with automatic alpha (alpha = 1)" \
	"$LINES" merge -m mean --lines -b "$tmp/t5/base.safetensors" -o "$tmp/m.st" "$tmp/t5/ft1.safetensors" "$tmp/t5/ft2.safetensors"
check "... warns that beta is 0 and suggests --beta" sh -c "grep 'warning' '$tmp/err' | grep -q -- '--beta'"
status 0 "... and not with --beta given" \
	"$LINES" merge -m mean --lines --beta 0.5 -b "$tmp/t5/base.safetensors" -o "$tmp/m.st" "$tmp/t5/ft1.safetensors" "$tmp/t5/ft2.safetensors"
check "... (no warning)" sh -c "! grep -q 'warning' '$tmp/err'"
done_testing
