#!/bin/sh
# t-mergekit-cli.sh -- mergekit's names on the command line: task_arithmetic is
# sum under another name; linear, nearswap, slerp and nuslerp give the same bytes for every
# instruction set, thread count and chunk size; and what they refuse is a
# usage error (exit 2) that writes nothing. Values are read with jq from
# --json, not from the messages. (t-mergekit.c checks the numbers.)
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

family "$tmp/f" --arch llama --dtype bf16 --layers 4 --size 3M --models 3 --seed 5 --specials
b=$tmp/f/base.safetensors
m1=$tmp/f/ft1.safetensors
m2=$tmp/f/ft2.safetensors
m3=$tmp/f/ft3.safetensors

# ---- task_arithmetic is sum ----------------------------------------------------------------
"$LINES" merge -q -b "$b" -m sum --lines -w 2,1 -o "$tmp/sum.st" "$m1" "$m2"
"$LINES" merge -q -b "$b" -m task_arithmetic --lines -w 2,1 -o "$tmp/ta.st" "$m1" "$m2"
check "-m task_arithmetic: the same bytes as -m sum" cmp -s "$tmp/sum.st" "$tmp/ta.st"
jq -S 'del(.file)' "$tmp/sum.st.manifest.json" >"$tmp/sum.mf" 2>/dev/null
jq -S 'del(.file)' "$tmp/ta.st.manifest.json" >"$tmp/ta.mf" 2>/dev/null
check "... and the same manifest but for the file's name" sh -c "test -s '$tmp/sum.mf' && cmp -s '$tmp/sum.mf' '$tmp/ta.mf'"
status 0 "-m task_arithmetic -n --json" "$LINES" merge -n --json -b "$b" -m task_arithmetic "$m1"
jqok "... names the method sum, its one canonical name" '.method == "sum"'

# ---- the same bytes whatever runs them ------------------------------------------------------
# same NAME ARGS...: the output of ARGS with every kernel set, -j 1 and 2, chunks of 16K
# and 1M, against the first
same() {
	name=$1
	shift
	rm -f "$tmp"/ref.st
	"$LINES" merge -q "$@" -j 2 -o "$tmp/ref.st" || { ok 1 "$name: merges"; return; }
	ok 0 "$name: merges"
	for run in "-j 1 --chunk 16K" "-j 2 --chunk 16K" "-j 2 --chunk 1M"; do
		rm -f "$tmp/x.st"
		# shellcheck disable=SC2086
		"$LINES" merge -q "$@" $run -o "$tmp/x.st"
		check "$name: the same bytes with $run" cmp -s "$tmp/ref.st" "$tmp/x.st"
	done
	for isa in scalar avx2 avx512 neon; do
		if ! LINES_ISA=$isa "$LINES" --version >/dev/null 2>&1; then
			skip "$name with LINES_ISA=$isa: not built or not supported by this CPU"
			continue
		fi
		rm -f "$tmp/x.st"
		LINES_ISA=$isa "$LINES" merge -q "$@" -j 2 --chunk 16K -o "$tmp/x.st"
		check "$name: the same bytes with LINES_ISA=$isa" cmp -s "$tmp/ref.st" "$tmp/x.st"
	done
}
same "linear" -m linear -w 0.3,0.5,0.2 "$m1" "$m2" "$m3"
same "linear -b --lines" -b "$b" -m linear --lines --alpha 0.4 "$m1" "$m2" "$m3"
same "linear -b --lines, alpha from a norm pass" -b "$b" -m linear --lines -w 1,2,3 "$m1" "$m2" "$m3"
same "nearswap --lines" -b "$b" -m nearswap --t 0.003 --gamma 0.5 "$m1"
same "slerp" -b "$b" -m slerp --t 0.4 "$m1"
same "slerp --lines" -b "$b" -m slerp --t 0.6 --lines --alpha 0.3 "$m1"
same "nuslerp" -m nuslerp -w 1,2 "$m1" "$m2"
same "nuslerp -b --lines" -b "$b" -m nuslerp -w 2,1 --gamma 0.4 "$m1" "$m2"
same "nuslerp -b --lines, automatic alpha" -b "$b" -m nuslerp -w 1,3 --lines "$m1" "$m2"

# ---- what linear without a base records ------------------------------------------------------
status 0 "-m linear without -b: --json" "$LINES" merge -n --json -m linear -w 1,3 "$m1" "$m2"
jqok "... no base, both models with their weights, normalized" \
	".method == \"linear\" and .base == null and .models == [\"$m1\", \"$m2\"] and .weights == [1, 3] and .linear.normalize == true"
jqok "... one pass, the writing one" '[.passes[].name] == ["write"]'
status 0 "-m linear without -b: -n prints the plan" "$LINES" merge -n -m linear "$m1" "$m2"
check "... a plan on standard output" has "$tmp/out" "plan: lines merge"
"$LINES" merge -q -m linear -o "$tmp/lin.st" "$m1" "$m2"
jqok "... the manifest calls the first input the reference, not a base" \
	"[.run.inputs[] | .role] == [\"reference\", \"model\", \"model\"]" "$tmp/lin.st.manifest.json"
status 0 "-m linear -b --lines -w 1,2 -n --json" "$LINES" merge -n --json -b "$b" -m linear --lines -w 1,2 "$m1" "$m2"
jqok "... measures alpha in a norm pass, then writes" '[.passes[].name] == ["norms", "write"] and .lines.alpha == null'
status 0 "-m linear -b --lines (equal weights) -n --json" "$LINES" merge -n --json -b "$b" -m linear --lines "$m1" "$m2"
jqok "... knows alpha = 1 without reading: one pass" '[.passes[].name] == ["write"] and .lines.alpha == 1'
status 0 "-m nearswap --json records t" "$LINES" merge -n --json -b "$b" -m nearswap --t 0.25 "$m1"
jqok "... as nearswap.t" '.nearswap.t == 0.25 and .method == "nearswap"'

# ---- slerp and nuslerp: a pass of dots, then the writing pass ------------------------------------
status 0 "-m slerp -n --json" "$LINES" merge -n --json -b "$b" -m slerp --t 0.25 "$m1"
jqok "... t recorded, passes dots then write" \
	'.method == "slerp" and .slerp.t == 0.25 and [.passes[].name] == ["dots", "write"]'
status 0 "-m slerp -n prints both passes" "$LINES" merge -n -b "$b" -m slerp --t 0.25 "$m1"
check "... the dots pass in the plan" has "$tmp/out" "dots"
status 0 "-m nuslerp -w 1,3 without -b: --json" "$LINES" merge -n --json -m nuslerp -w 1,3 "$m1" "$m2"
jqok "... t = w1 / (w0 + w1), the models themselves" \
	'.nuslerp.t == 0.75 and .nuslerp.task_vectors == false and .base == null and [.passes[].name] == ["dots", "write"]'
status 0 "-m nuslerp -w 1,-1 -b: --json" "$LINES" merge -n --json -b "$b" -m nuslerp -w 1,-1 "$m1" "$m2"
jqok "... weights summing to 0 give t = 0.5, task vectors" '.nuslerp.t == 0.5 and .nuslerp.task_vectors == true'
status 0 "-m nuslerp -b --lines -n --json" "$LINES" merge -n --json -b "$b" -m nuslerp --lines "$m1" "$m2"
jqok "... automatic alpha from a norms pass after the dots" '[.passes[].name] == ["dots", "norms", "write"] and .lines.alpha == null'
"$LINES" merge -q -b "$b" -m slerp --t 0.3 -o "$tmp/sl.st" "$m1"
jqok "the manifest holds every merged tensor's dots" \
	'[.tensors[] | select(.slerp) | .slerp | has("dot") and has("norm0_sq") and has("norm1_sq")] | length > 10 and all' \
	"$tmp/sl.st.manifest.json"
# the dots themselves, to the bit, whatever runs them
for run in "-j 1 --chunk 16K" "-j 2 --chunk 1M"; do
	rm -f "$tmp/d.st"
	# shellcheck disable=SC2086
	"$LINES" merge -q -m nuslerp -w 1,2 -b "$b" $run -o "$tmp/d.st" "$m1" "$m2"
	jq -c '[.tensors[] | .nuslerp]' "$tmp/d.st.manifest.json" >"$tmp/dots $run" 2>/dev/null
done
check "nuslerp: the same dots with -j 1 --chunk 16K and -j 2 --chunk 1M" \
	sh -c "test -s '$tmp/dots -j 1 --chunk 16K' && cmp -s '$tmp/dots -j 1 --chunk 16K' '$tmp/dots -j 2 --chunk 1M'"
"$LINES" merge -q -b "$b" -m slerp --t 0 -o "$tmp/sl0.st" "$m1"
"$LINES" merge -q -b "$b" -m sum --lambda 0 -o "$tmp/b0.st" "$m1"
# a tensor with an infinity (--specials) has a NaN angle: NaN throughout, as in mergekit
jq -c '[.tensors[] | select(.slerp.s0 | type == "number") | .name]' "$tmp/sl0.st.manifest.json" >"$tmp/fin.json"
# shellcheck disable=SC2016
check "slerp --t 0: every finite tensor has the base's bytes (those of sum --lambda 0)" \
	jq -e --slurpfile a "$tmp/sl0.st.manifest.json" --slurpfile fin "$tmp/fin.json" \
	'($fin[0] | length) > 10 and ([.tensors[] | select(.name as $n | $fin[0] | index($n)) | .xxh3_64] == [$a[0].tensors[] | select(.name as $n | $fin[0] | index($n)) | .xxh3_64])' \
	"$tmp/b0.st.manifest.json"

# ---- usage errors: exit 2, nothing written -----------------------------------------------------
# refused DESCRIPTION ARGS...: lines merge ARGS -o OUT exits 2 and leaves no OUT
refused() {
	desc=$1
	shift
	rm -f "$tmp/no.st"
	status 2 "$desc: exit 2" "$LINES" merge "$@" -o "$tmp/no.st"
	check "$desc: nothing written" sh -c "! ls '$tmp' | grep -q '^no\.st'"
}
refused "nearswap with 3 models" -b "$b" -m nearswap --t 0.1 "$m1" "$m2" "$m3"
refused "nearswap with 2 models" -b "$b" -m nearswap --t 0.1 "$m1" "$m2"
refused "nearswap without --t" -b "$b" -m nearswap "$m1"
refused "nearswap --t 0" -b "$b" -m nearswap --t 0 "$m1"
refused "nearswap --t -1" -b "$b" -m nearswap --t -1 "$m1"
refused "nearswap without -b" -m nearswap --t 0.1 "$m1"
refused "nearswap -w" -b "$b" -m nearswap --t 0.1 -w 2 "$m1"
refused "nearswap --lines with automatic alpha" -b "$b" -m nearswap --t 0.1 --lines --alpha auto "$m1"
refused "linear --lines without -b" -m linear --lines "$m1" "$m2"
refused "linear --gamma without -b" -m linear --gamma 0.5 "$m1"
refused "linear --lambda without -b" -m linear --lambda 0.5 "$m1" "$m2"
refused "linear with weights summing to 0" -m linear -w 1,-1 "$m1" "$m2"
refused "linear --lines auto alpha with unequal weights, a model on standard input" \
	-b "$b" -m linear --lines -w 1,2 "$m1" - <"$m2"
refused "linear without -b, the first model on standard input" -m linear - "$m2" <"$m1"
refused "linear --t" -m linear --t 0.1 "$m1" "$m2"
refused "linear --density" -m linear --density 0.5 "$m1" "$m2"
refused "sum --no-normalize" -b "$b" -m sum --no-normalize "$m1" "$m2"
refused "mean --normalize" -b "$b" -m mean --normalize "$m1" "$m2"
refused "task_arithmetic --t" -b "$b" -m task_arithmetic --t 1 "$m1"
refused "ties --t" -b "$b" -m ties --t 1 "$m1"
refused "sum without -b" -m sum "$m1" "$m2"
refused "slerp without --t" -b "$b" -m slerp "$m1"
refused "slerp --t inf" -b "$b" -m slerp --t inf "$m1"
refused "slerp with 2 models" -b "$b" -m slerp --t 0.5 "$m1" "$m2"
refused "slerp without -b" -m slerp --t 0.5 "$m1"
refused "slerp -w" -b "$b" -m slerp --t 0.5 -w 2 "$m1"
refused "slerp --lines with automatic alpha" -b "$b" -m slerp --t 0.5 --lines "$m1"
refused "slerp, the model on standard input (two passes)" -b "$b" -m slerp --t 0.5 - <"$m1"
refused "nuslerp with 1 model" -m nuslerp "$m1"
refused "nuslerp with 3 models" -m nuslerp "$m1" "$m2" "$m3"
refused "nuslerp --t" -m nuslerp --t 0.5 "$m1" "$m2"
refused "nuslerp --lines without -b" -m nuslerp --lines --alpha 0.5 "$m1" "$m2"
refused "nuslerp --lambda without -b" -m nuslerp --lambda 0.5 "$m1" "$m2"
refused "nuslerp -b, a model on standard input (two passes)" -b "$b" -m nuslerp "$m1" - <"$m2"
refused "nuslerp --density" -m nuslerp --density 0.5 "$m1" "$m2"
for opt in "--t 1" --no-normalize; do
	# shellcheck disable=SC2086
	status 2 "scale $opt: exit 2" "$LINES" scale -b "$b" --gamma 0.5 $opt -o "$tmp/no.st" "$m1"
	check "scale $opt: nothing written" sh -c "! ls '$tmp' | grep -q '^no\.st'"
done

done_testing
