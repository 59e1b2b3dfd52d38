#!/bin/sh
# t-mergekit-cli.sh -- mergekit's names on the command line: task_arithmetic is
# sum under another name, dare_linear and dare_ties are dare without and with
# --dare-elect; linear, nearswap, slerp, nuslerp, multislerp, model_stock,
# consensus, ram, ramplus_tl, karcher and the new options of ties and dare (a density
# consensus, ram, ramplus_tl, della, della_linear and the new options of ties and dare (a density
# consensus, ram, ramplus_tl, breadcrumbs, breadcrumbs_ties and the new options of ties and dare (a density
# consensus, ram, ramplus_tl, sce and the new options of ties and dare (a density
# per model, --no-normalize, --rescale) give the same bytes for every
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
same "consensus" -b "$b" -m consensus "$m1" "$m2" "$m3"
same "consensus -k 3 weighted --lambda" -b "$b" -m consensus --consensus-k 3 -w 1,2,0.5 \
	--tall-lambda 0.2,0.3,0.5 --lambda 0.8 "$m1" "$m2" "$m3"
same "consensus -k 1 --lines, alpha from a norm pass" -b "$b" -m consensus --consensus-k 1 \
	--lines --norm l2 "$m1" "$m2" "$m3"

same "ram --epsilon 0.003" -b "$b" -m ram --epsilon 0.003 "$m1" "$m2" "$m3"
same "ram --lines, alpha from a norm pass" -b "$b" -m ram --epsilon 0.002 --lines "$m1" "$m2" "$m3"
same "ramplus_tl --lambda 0.8" -b "$b" -m ramplus_tl --lambda 0.8 "$m1" "$m2" "$m3"
same "ramplus_tl --ram-r 0.5 --ram-alpha 5 --lines, count and norm passes" -b "$b" -m ramplus_tl \
	--epsilon 0.003 --ram-r 0.5 --ram-alpha 5 --lines --norm l2 "$m1" "$m2" "$m3"
same "sce --select-topk 0.3, select, refine, weights and write passes" -b "$b" -m sce \
	--select-topk 0.3 "$m1" "$m2" "$m3"
same "sce --lines, alpha from a norm pass" -b "$b" -m sce --select-topk 0.6 --lines "$m1" "$m2" "$m3"

same "dare_ties --rescale, a density per model" -b "$b" -m dare_ties --rescale \
	--density 0.2,0.5,0.9 -w 0.5,1.5,1 --lines "$m1" "$m2" "$m3"
same "dare_linear --no-rescale" -b "$b" -m dare_linear --no-rescale --density 0.3 "$m1" "$m2" "$m3"
same "ties weighted, a density per model" -b "$b" -m ties --density 0.1,0.3,0.6 -w 0.5,1.5,1 \
	--lines "$m1" "$m2" "$m3"
same "ties --no-normalize --trim tensor" -b "$b" -m ties --no-normalize --trim tensor \
	-w 2,1,0.5 "$m1" "$m2" "$m3"

# ---- dare_linear and dare_ties are dare and dare --dare-elect ----------------------------------
# named A B ARGS...: -m A and -m B (the rest of the arguments shared) give the same bytes and
# the same manifest but for the file's name
named() {
	x=$1
	y=$2
	shift 2
	rm -f "$tmp/na.st" "$tmp/nb.st"
	# shellcheck disable=SC2086
	"$LINES" merge -q -b "$b" -m $x "$@" -o "$tmp/na.st" "$m1" "$m2" "$m3"
	# shellcheck disable=SC2086
	"$LINES" merge -q -b "$b" -m $y "$@" -o "$tmp/nb.st" "$m1" "$m2" "$m3"
	check "-m $x: the same bytes as -m $y ($*)" sh -c "test -s '$tmp/na.st' && cmp -s '$tmp/na.st' '$tmp/nb.st'"
	jq -S 'del(.file)' "$tmp/na.st.manifest.json" >"$tmp/na.mf" 2>/dev/null
	jq -S 'del(.file)' "$tmp/nb.st.manifest.json" >"$tmp/nb.mf" 2>/dev/null
	check "... and the same manifest but for the file's name" sh -c "test -s '$tmp/na.mf' && cmp -s '$tmp/na.mf' '$tmp/nb.mf'"
}
named dare_linear dare --density 0.3 --seed 4 --lines
named dare_ties "dare --dare-elect" --density 0.3 --seed 4 -w 1,2,0.5
named dare_ties "dare --dare-elect" --density 0.2,0.4,0.6 --rescale --no-normalize
status 0 "-m dare_ties -n --json" "$LINES" merge -n --json -b "$b" -m dare_ties --density 0.2,0.4,0.6 "$m1" "$m2" "$m3"
jqok "... is dare electing signs, a density per model, normalized, divided by the density" \
	'.method == "dare" and .dare.elect == true and .dare.density == [0.2, 0.4, 0.6] and .dare.normalize == null and .dare.rescale == null'
status 0 "-m dare_linear --rescale -n --json" "$LINES" merge -n --json -b "$b" -m dare_linear --rescale "$m1" "$m2"
jqok "... elects no signs; the L1 rescale in a rescale pass before the writing one" \
	'.dare.elect == false and .dare.rescale == "l1" and [.passes[].name] == ["rescale", "write"]'
status 0 "-m ties --no-normalize --density 0.5,0.25 -n --json" "$LINES" merge -n --json -b "$b" -m ties --no-normalize --density 0.5,0.25 "$m1" "$m2"
jqok "... records both" '.ties.normalize == false and .ties.density == [0.5, 0.25]'
same "slerp" -b "$b" -m slerp --t 0.4 "$m1"
same "slerp --lines" -b "$b" -m slerp --t 0.6 --lines --alpha 0.3 "$m1"
same "nuslerp" -m nuslerp -w 1,2 "$m1" "$m2"
same "nuslerp -b --lines" -b "$b" -m nuslerp -w 2,1 --gamma 0.4 "$m1" "$m2"
same "nuslerp -b --lines, automatic alpha" -b "$b" -m nuslerp -w 1,3 --lines "$m1" "$m2"
same "model_stock" -b "$b" -m model_stock "$m1" "$m2" "$m3"
same "model_stock --lines, automatic alpha (L2)" -b "$b" -m model_stock --lines --norm l2 "$m1" "$m2" "$m3"
status 0 "-m model_stock -n --json" "$LINES" merge -n --json -b "$b" -m model_stock "$m1" "$m2" "$m3"
jqok "... a dots pass before the writing pass" '.method == "model_stock" and [.passes[].name] == ["dots", "write"]'
same "consensus --consensus-over ties" -b "$b" -m consensus --consensus-over ties --density 0.3 -w 1,2,0.5 "$m1" "$m2" "$m3"
same "consensus --consensus-over ties --trim tensor --lines, automatic alpha" -b "$b" -m consensus --consensus-over ties --trim tensor --lines "$m1" "$m2" "$m3"
status 0 "-m consensus --consensus-over ties --lines -n --json" "$LINES" merge -n --json -b "$b" -m consensus --consensus-over ties --lines "$m1" "$m2" "$m3"
jqok "... TIES's passes with a norm pass before the writing pass" \
	'.consensus.over == "ties" and .consensus.density == 0.2 and [.passes[].name] == ["select", "threshold", "norms", "write"]'
rm -f "$tmp/c0.st" "$tmp/t0.st"
"$LINES" merge -q -b "$b" -m consensus --consensus-over ties --consensus-k 0 --density 0.4 -o "$tmp/c0.st" "$m1" "$m2" "$m3"
"$LINES" merge -q -b "$b" -m ties --density 0.4 -o "$tmp/t0.st" "$m1" "$m2" "$m3"
jq -c '[.tensors[] | .xxh3_64]' "$tmp/c0.st.manifest.json" >"$tmp/c0.h" 2>/dev/null
jq -c '[.tensors[] | .xxh3_64]' "$tmp/t0.st.manifest.json" >"$tmp/t0.h" 2>/dev/null
check "consensus --consensus-over ties --consensus-k 0: every tensor is TIES's" sh -c "test -s '$tmp/c0.h' && cmp -s '$tmp/c0.h' '$tmp/t0.h'"
same "model_stock --per-row" -b "$b" -m model_stock --per-row "$m1" "$m2" "$m3"
same "model_stock --per-row --lines, automatic alpha (L2)" -b "$b" -m model_stock --per-row --lines --norm l2 "$m1" "$m2" "$m3"
same "nuslerp --per-row" -m nuslerp --per-row -w 1,2 "$m1" "$m2"
same "nuslerp --per-row -b --lines, automatic alpha" -b "$b" -m nuslerp --per-row -w 1,3 --lines "$m1" "$m2"
status 0 "-m model_stock --per-row -n --json" "$LINES" merge -n --json -b "$b" -m model_stock --per-row "$m1" "$m2" "$m3"
jqok "... one writing pass of whole rows, recorded" '.model_stock.per_row == true and [.passes[].name] == ["write"]'
status 0 "-m model_stock --per-row --lines --norm l2 -n --json" "$LINES" merge -n --json -b "$b" -m model_stock --per-row --lines --norm l2 "$m1" "$m2" "$m3"
jqok "... a norm pass, then the writing pass" '[.passes[].name] == ["norms", "write"]'
status 0 "-m nuslerp --per-row -n --json" "$LINES" merge -n --json -m nuslerp --per-row "$m1" "$m2"
jqok "... one writing pass, not flattened" '.nuslerp.flatten == false and [.passes[].name] == ["write"]'
status 0 "-m nuslerp --per-row on standard input (one pass)" "$LINES" merge -q -m nuslerp --per-row -o "$tmp/pr.st" "$m1" - <"$m2"
status 0 "-m model_stock --per-row --lambda, a model on standard input (one pass)" "$LINES" merge -q -b "$b" -m model_stock --per-row --lambda 0.9 -o "$tmp/ps.st" "$m1" - <"$m2"
rm -f "$tmp/ps2.st"
"$LINES" merge -q -b "$b" -m model_stock --per-row --lambda 0.9 -o "$tmp/ps2.st" "$m1" "$m2"
check "... the same bytes as from the file" cmp -s "$tmp/ps.st" "$tmp/ps2.st"
same "multislerp" -m multislerp -w 1,2,3 "$m1" "$m2" "$m3"
same "multislerp -b --no-normalize --lambda" -b "$b" -m multislerp -w 0.5,1,0.25 --no-normalize \
	--lambda 0.8 "$m1" "$m2" "$m3"
same "multislerp -b --lines, automatic alpha" -b "$b" -m multislerp -w 3,1,2 --lines "$m1" "$m2" "$m3"
# karcher: fine-tunes take a step or none; their task vectors, far apart, take several
for i in 1 2; do
	"$LINES" merge -q -m linear -w 1,-1 --no-normalize -o "$tmp/tv$i.st" "$tmp/f/ft$i.safetensors" "$b"
done
tv1=$tmp/tv1.st
tv2=$tmp/tv2.st
same "karcher" -m karcher "$m1" "$m2" "$m3"
same "karcher of task vectors, several steps, --tol 1e-7 --max-iter 30" -m karcher --tol 1e-7 \
	--max-iter 30 "$tv1" "$tv2" "$m3"
same "karcher -b --lines, automatic alpha" -b "$b" -m karcher --lines "$m1" "$tv2" "$m3"
same "karcher -b --lambda 0.6 --max-iter 2" -b "$b" -m karcher --lambda 0.6 --max-iter 2 "$tv1" "$m2" "$tv2"
uring=1
"$LINES" merge -q --io uring -m karcher -o - "$m1" "$m2" >/dev/null 2>&1 || uring=0
for io in mmap uring; do
	if [ $io = uring ] && [ $uring = 0 ]; then
		skip "karcher: the same bytes with --io uring: io_uring is not available here"
		continue
	fi
	rm -f "$tmp/x.st"
	"$LINES" merge -q -m karcher --io $io -j 2 -o "$tmp/x.st" "$tv1" "$tv2" "$m3"
	"$LINES" merge -q -m karcher --io $io -j 1 --chunk 64K -o "$tmp/y.st" "$tv1" "$tv2" "$m3"
	check "karcher: the same bytes with --io $io, -j 2 and -j 1 --chunk 64K" \
		sh -c "cmp -s '$tmp/x.st' '$tmp/y.st' && cmp -s '$tmp/x.st' '$tmp/kio.st' 2>/dev/null || { cp '$tmp/x.st' '$tmp/kio.st'; cmp -s '$tmp/x.st' '$tmp/y.st'; }"
done
if [ $uring = 1 ]; then
	check "karcher: --io mmap and --io uring, the same bytes" cmp -s "$tmp/kio.st" "$tmp/x.st"
fi

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

# ---- what consensus records --------------------------------------------------------------------
status 0 "-m consensus -n --json" "$LINES" merge -n --json -b "$b" -m consensus "$m1" "$m2" "$m3"
jqok "... the defaults: k 2, TALL lambda 0.4 per model, over the sum; one pass, the writing one" \
	'.method == "consensus" and .consensus.k == 2 and .consensus.tall_lambda == [0.4, 0.4, 0.4] and .consensus.over == "ta" and .consensus.kept == null and [.passes[].name] == ["write"]'
status 0 "-m consensus --lines --tall-lambda 0.2,0.5,1 --consensus-k 1 -n --json" "$LINES" merge -n \
	--json -b "$b" -m consensus --lines --tall-lambda 0.2,0.5,1 --consensus-k 1 "$m1" "$m2" "$m3"
jqok "... its parameters, and alpha measured in a norm pass before the writing one" \
	'.consensus.k == 1 and .consensus.tall_lambda == [0.2, 0.5, 1] and [.passes[].name] == ["norms", "write"] and .lines.alpha == null'
status 0 "-m consensus -n prints the passes" "$LINES" merge -n -b "$b" -m consensus --lines "$m1" "$m2" "$m3"
check "... the norms pass, then the writing pass" sh -c "grep -q '1\. norms' '$tmp/out' && grep -q '2\. write' '$tmp/out'"
"$LINES" merge -q -b "$b" -m consensus --lines --json -o "$tmp/cs.st" "$m1" "$m2" "$m3" >"$tmp/cs.json"
jqok "... after the run: alpha = ||sum tau|| / (3 ||tau_cons||) from the recorded norms" \
	'.lines.alpha as $a | (($a - .norm_sum / (3 * .norm_mtl)) | fabs) < 1e-12 * $a and $a != 1' "$tmp/cs.json"
"$LINES" merge -q -b "$b" -m consensus --consensus-k 0 -o "$tmp/k0.st" "$m1" "$m2" "$m3"
"$LINES" merge -q -b "$b" -m sum -o "$tmp/sum3.st" "$m1" "$m2" "$m3"
"$LINES" merge -q -b "$b" -m consensus -o "$tmp/k2.st" "$m1" "$m2" "$m3"
jq -c '[.tensors[].xxh3_64]' "$tmp/k0.st.manifest.json" >"$tmp/k0.h" 2>/dev/null
jq -c '[.tensors[].xxh3_64]' "$tmp/sum3.st.manifest.json" >"$tmp/sum3.h" 2>/dev/null
check "... --consensus-k 0 keeps every element: the tensors of -m sum, byte for byte" \
	sh -c "test -s '$tmp/k0.h' && cmp -s '$tmp/k0.h' '$tmp/sum3.h'"
check "... and -k 2 drops some: other bytes" sh -c "! cmp -s '$tmp/k2.st' '$tmp/sum3.st'"
family "$tmp/f64" --arch llama --dtype f64 --layers 2 --hidden 16 --models 3 --seed 2
"$LINES" merge -q -b "$tmp/f64/base.safetensors" -m consensus --consensus-k 0 -o "$tmp/k0-64.st" "$tmp"/f64/ft?.safetensors
"$LINES" merge -q -b "$tmp/f64/base.safetensors" -m sum -o "$tmp/sum-64.st" "$tmp"/f64/ft?.safetensors
jq -c '[.tensors[] | [.dtype, .xxh3_64]]' "$tmp/k0-64.st.manifest.json" >"$tmp/k0-64.h" 2>/dev/null
jq -c '[.tensors[] | [.dtype, .xxh3_64]]' "$tmp/sum-64.st.manifest.json" >"$tmp/sum-64.h" 2>/dev/null
check "... and so on F64, computed in float64: the F64 tensors of -m sum" \
	sh -c "grep -q F64 '$tmp/k0-64.h' && cmp -s '$tmp/k0-64.h' '$tmp/sum-64.h'"
same "ramplus_tl --lines on F64" -b "$tmp/f64/base.safetensors" -m ramplus_tl --epsilon 0.003 \
	--lines "$tmp"/f64/ft1.safetensors "$tmp"/f64/ft2.safetensors "$tmp"/f64/ft3.safetensors
jqok "... the manifest of -k 0 counts nothing dropped" '.run.consensus.dropped == 0 and .run.consensus.kept > 0' "$tmp/k0.st.manifest.json"
jqok "... -k 2 counts some elements kept and some dropped, as many as -k 0 kept" \
	"(.run.consensus | .kept > 0 and .dropped > 0) and .run.consensus.kept + .run.consensus.dropped == $(jq .run.consensus.kept "$tmp/k0.st.manifest.json" 2>/dev/null || echo -1)" \
	"$tmp/k2.st.manifest.json"
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
status 0 "-m multislerp -w 1,1,2 without -b: --json" "$LINES" merge -n --json -m multislerp -w 1,1,2 "$m1" "$m2" "$m3"
jqok "... normalized weights, the models themselves, passes dots then write" \
	'.method == "multislerp" and .multislerp.weights == [0.25, 0.25, 0.5] and .multislerp.normalize == true and .multislerp.task_vectors == false and .base == null and [.passes[].name] == ["dots", "write"]'
status 0 "-m multislerp -b --no-normalize --lines -n --json" "$LINES" merge -n --json -b "$b" -m multislerp --no-normalize --lines "$m1" "$m2" "$m3"
jqok "... weights as given, task vectors, automatic alpha from a norms pass after the dots" \
	'.multislerp.weights == [1, 1, 1] and .multislerp.normalize == false and .multislerp.task_vectors == true and [.passes[].name] == ["dots", "norms", "write"] and .lines.alpha == null'
status 0 "-m multislerp with one model -b --lambda 0.5 -n --json" "$LINES" merge -n --json -b "$b" -m multislerp --lambda 0.5 "$m1"
jqok "... that model: no dots pass" '[.passes[].name] == ["write"]'
"$LINES" merge -q -m multislerp -o "$tmp/ms1.st" "$m2"
"$LINES" merge -q -m linear -o "$tmp/ms1ref.st" "$m2"
jq -c '[.tensors[] | .xxh3_64]' "$tmp/ms1ref.st.manifest.json" >"$tmp/ms1ref.h" 2>/dev/null
jq -c '[.tensors[] | .xxh3_64]' "$tmp/ms1.st.manifest.json" >"$tmp/ms1.h" 2>/dev/null
check "-m multislerp with one model: its tensors' bytes (those of -m linear of it alone)" \
	sh -c "test -s '$tmp/ms1.h' && cmp -s '$tmp/ms1.h' '$tmp/ms1ref.h'"
for run in "-j 1 --chunk 16K" "-j 2 --chunk 1M"; do
	rm -f "$tmp/d.st"
	# shellcheck disable=SC2086
	"$LINES" merge -q -m multislerp -w 1,2,3 -b "$b" $run -o "$tmp/d.st" "$m1" "$m2" "$m3"
	jq -c '[.tensors[] | .multislerp]' "$tmp/d.st.manifest.json" >"$tmp/msdots $run" 2>/dev/null
done
check "multislerp: the same Gram matrices with -j 1 --chunk 16K and -j 2 --chunk 1M" \
	sh -c "test -s '$tmp/msdots -j 1 --chunk 16K' && cmp -s '$tmp/msdots -j 1 --chunk 16K' '$tmp/msdots -j 2 --chunk 1M'"
jqok "... six dots (pairs i <= j) and three coefficients for every merged tensor" \
	'[.[] | select(. != null) | (.gram | length) == 6 and (.c | length) == 3] | length > 10 and all' \
	"$tmp/msdots -j 1 --chunk 16K"
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

# ---- what karcher records --------------------------------------------------------------------------
status 0 "-m karcher without -b -n --json" "$LINES" merge -n --json -m karcher "$m1" "$m2" "$m3"
jqok "... max_iter 10, tol 1e-5, no steps before the run; a dots pass, then the writing pass" \
	'.method == "karcher" and .base == null and .karcher.max_iter == 10 and .karcher.tol == 1e-5 and .karcher.iterations_max == null and .karcher.unconverged == null and [.passes[].name] == ["dots", "write"]'
status 0 "-m karcher -n prints the two reads" "$LINES" merge -n -m karcher "$m1" "$m2"
check "... dots, then write" sh -c "grep -q '1\. dots' '$tmp/out' && grep -q '2\. write' '$tmp/out'"
status 0 "-m karcher -b --lines -n --json" "$LINES" merge -n --json -b "$b" -m karcher --lines --max-iter 7 --tol 1e-6 "$m1" "$m2"
jqok "... its parameters; automatic alpha in a norms pass after the dots" \
	'.karcher.max_iter == 7 and .karcher.tol == 1e-6 and [.passes[].name] == ["dots", "norms", "write"] and .lines.alpha == null'
status 0 "-m karcher with one model -n --json" "$LINES" merge -n --json -b "$b" -m karcher --lambda 0.5 "$m1"
jqok "... that model: no dots pass" '[.passes[].name] == ["write"]'
"$LINES" merge -q -b "$b" -m karcher -o "$tmp/k1.st" - <"$m2"
"$LINES" merge -q -b "$b" -m linear -o "$tmp/k1ref.st" "$m2"
jq -c '[.tensors[] | .xxh3_64]' "$tmp/k1ref.st.manifest.json" >"$tmp/k1ref.h" 2>/dev/null
jq -c '[.tensors[] | .xxh3_64]' "$tmp/k1.st.manifest.json" >"$tmp/k1.h" 2>/dev/null
check "-m karcher -b of one model on standard input (one pass): its tensors' bytes" \
	sh -c "test -s '$tmp/k1.h' && cmp -s '$tmp/k1.h' '$tmp/k1ref.h'"
"$LINES" merge -q -m karcher --json -o "$tmp/ka.st" "$tv1" "$tv2" "$m3" >"$tmp/ka.json"
jqok "... after the run: every merged tensor's steps and Gram matrix; the most steps, some several" \
	'([.tensors[] | select(.merged) | .karcher | (.gram | length) == 6 and (.c | length) == 3 and .iterations >= 0] | length > 10 and all) and .karcher.iterations_max == ([.tensors[] | .karcher.iterations // 0] | max) and .karcher.iterations_max >= 2' "$tmp/ka.json"
jqok "... the manifest has the same steps and the same summary" \
	"[.tensors[] | .karcher | select(.)] == $(jq -c '[.tensors[] | .karcher | select(.)]' "$tmp/ka.json" 2>/dev/null || echo null) and .run.karcher == $(jq -c .karcher "$tmp/ka.json" 2>/dev/null || echo null)" \
	"$tmp/ka.st.manifest.json"
"$LINES" merge -q -m karcher --max-iter 1 --json -o "$tmp/ka1.st" "$tv1" "$tv2" "$m3" >"$tmp/ka1.json"
jqok "--max-iter 1: one step at most; the tensors it stopped are counted" \
	'.karcher.iterations_max == 1 and .karcher.unconverged > 0 and .karcher.unconverged == ([.tensors[] | select(.karcher.case == "karcher" and .karcher.converged == false)] | length)' "$tmp/ka1.json"
"$LINES" merge -q -m karcher -o "$tmp/kh.st" "$tv1" "$tv2" "$m3"
check "karcher: lines.max_iter and lines.tol in the output's metadata" \
	sh -c "'$LINES' inspect --json '$tmp/kh.st' | jq -e '.metadata[\"lines.max_iter\"] == \"10\" and .metadata[\"lines.tol\"] == \"1e-05\"' >/dev/null"

# ---- what ram and ramplus_tl record ------------------------------------------------------------
status 0 "-m ram -n --json" "$LINES" merge -n --json -b "$b" -m ram "$m1" "$m2" "$m3"
jqok "... epsilon 1e-5, no counts before the run, one pass: the writing one" \
	'.method == "ram" and .ram.epsilon == 1e-5 and .ram.agree == null and .ram.r == null and [.passes[].name] == ["write"]'
status 0 "-m ram --lines -n --json" "$LINES" merge -n --json -b "$b" -m ram --lines "$m1" "$m2" "$m3"
jqok "... alpha measured in a norm pass before the writing one" \
	'[.passes[].name] == ["norms", "write"] and .lines.alpha == null'
status 0 "-m ramplus_tl -n --json" "$LINES" merge -n --json -b "$b" -m ramplus_tl "$m1" "$m2" "$m3"
jqok "... r 0.1, alpha 0.2: a count pass, then the writing one" \
	'.method == "ramplus_tl" and .ramplus_tl.r == 0.1 and .ramplus_tl.alpha == 0.2 and .ramplus_tl.epsilon == 1e-5 and [.passes[].name] == ["count", "write"]'
status 0 "-m ramplus_tl --lines --epsilon 0.01 --ram-r 0.3 --ram-alpha 2 -n --json" "$LINES" merge -n \
	--json -b "$b" -m ramplus_tl --lines --epsilon 0.01 --ram-r 0.3 --ram-alpha 2 "$m1" "$m2" "$m3"
jqok "... its parameters; the count pass measures the norms too, then the writing pass" \
	'.ramplus_tl.epsilon == 0.01 and .ramplus_tl.r == 0.3 and .ramplus_tl.alpha == 2 and [.passes[].name] == ["count", "write"]'
status 0 "-m ramplus_tl -n prints the passes" "$LINES" merge -n -b "$b" -m ramplus_tl --lines "$m1" "$m2" "$m3"
check "... count, write" sh -c "grep -q '1\. count' '$tmp/out' && grep -q '2\. write' '$tmp/out' && ! grep -q 'norms' '$tmp/out'"
status 0 "-m ramplus_tl --lines --ram-r 1e300 -n --json" "$LINES" merge -n --json -b "$b" -m ramplus_tl \
	--lines --ram-r 1e300 "$m1" "$m2" "$m3"
jqok "... lambda_i could overflow: a norm pass of its own after the count pass" \
	'[.passes[].name] == ["count", "norms", "write"]'
status 0 "-m ramplus_tl --lines on 17 models -n --json" "$LINES" merge -n --json -b "$b" -m ramplus_tl \
	--lines "$m1" "$m2" "$m3" "$m1" "$m2" "$m3" "$m1" "$m2" "$m3" "$m1" "$m2" "$m3" "$m1" "$m2" "$m3" "$m1" "$m2"
jqok "... the count pass measures the norms too" '[.passes[].name] == ["count", "write"]'
"$LINES" merge -q -b "$b" -m ramplus_tl --epsilon 0.003 --lines --json -o "$tmp/rp.st" "$m1" "$m2" "$m3" >"$tmp/rp.json"
jqok "... after the run: alpha = ||sum tau|| / (3 ||tau_ram||) from the recorded norms" \
	'.lines.alpha as $a | (($a - .norm_sum / (3 * .norm_mtl)) | fabs) < 1e-12 * $a and $a != 1' "$tmp/rp.json"
jqok "... the elements by c (0 to 3) add up to the merged elements, each c occurs" \
	'.ramplus_tl.agree as $g | ($g | length) == 4 and ($g | all(. > 0)) and ($g | add) == ([.tensors[] | select(.merged) | .shape | reduce .[] as $d (1; . * $d)] | add)' "$tmp/rp.json"
jqok "... every merged tensor has 3 shared and unique counts and lambdas in [1, 1.02]" \
	'[.tensors[] | select(.merged) | .ram | (.shared | length) == 3 and (.unique | length) == 3 and all(.lambda[]; . >= 1 and . <= 1.02)] | length > 0 and all' "$tmp/rp.json"
jqok "... the manifest has the same counts" \
	"[.tensors[] | .ram | select(.)] == $(jq -c '[.tensors[] | .ram | select(.)]' "$tmp/rp.json" 2>/dev/null || echo null) and .run.ramplus_tl.agree == $(jq -c .ramplus_tl.agree "$tmp/rp.json" 2>/dev/null || echo null)" \
	"$tmp/rp.st.manifest.json"
"$LINES" merge -q -b "$b" -m ram --epsilon 0.003 -o "$tmp/ram-f.st" "$m1" "$m2" "$m3"
"$LINES" merge -q -b "$b" -m ram --epsilon 0.003 -o "$tmp/ram-in.st" "$m1" - "$m3" <"$m2"
check "-m ram reads a model from standard input in its one pass: the same bytes" cmp -s "$tmp/ram-f.st" "$tmp/ram-in.st"

# ---- della ------------------------------------------------------------------------------------
same "della weighted, per-model density and epsilon" -b "$b" -m della -w 1,2,0.5 \
	--density 0.3,0.5,0.2 --epsilon 0.1,0.2,0.15 --seed 4 "$m1" "$m2" "$m3"
same "della_linear --lines --rescale" -b "$b" -m della_linear --lines --rescale "$m1" "$m2" "$m3"
status 0 "-m della -n --json" "$LINES" merge -n --json -b "$b" -m della "$m1" "$m2" "$m3"
jqok "... density 0.2, epsilon 0.15, rescale by p, elected, normalized, one pass" \
	'.method == "della" and .della.density == 0.2 and .della.epsilon == 0.15 and .della.rescale == "p" and .della.elect and .della.normalize and [.passes[].name] == ["write"] and .memory_scratch > 0'
status 0 "-m della_linear --lines --rescale --epsilon list -n --json" "$LINES" merge -n --json \
	-b "$b" -m della_linear --lines --rescale --epsilon 0.1,0.05,0.15 "$m1" "$m2" "$m3"
jqok "... the rescale pass, the norm pass, the writing pass; no election" \
	'.method == "della_linear" and .della_linear.epsilon == [0.1, 0.05, 0.15] and .della_linear.rescale == "l1" and (.della_linear.elect | not) and [.passes[].name] == ["rescale", "norms", "write"]'
status 0 "-m della --density 1,0.95 -n (density 1 takes no epsilon check)" "$LINES" merge -n \
	-b "$b" -m della --density 1,0.95 --epsilon 0.04 "$m1" "$m2"
"$LINES" merge -q -b "$b" -m della -o "$tmp/della-f.st" "$m1" "$m2" "$m3"
"$LINES" merge -q -b "$b" -m della -o "$tmp/della-in.st" "$m1" - "$m3" <"$m2"
check "-m della reads a model from standard input in its one pass: the same bytes" \
	cmp -s "$tmp/della-f.st" "$tmp/della-in.st"
# ---- breadcrumbs and breadcrumbs_ties ---------------------------------------------------------
same "breadcrumbs --density 0.8 --bc-gamma 0.02" -b "$b" -m breadcrumbs --density 0.8 --bc-gamma 0.02 \
	"$m1" "$m2" "$m3"
same "breadcrumbs_ties weighted, lists, --lines auto" -b "$b" -m breadcrumbs_ties -w 1,2,0.5 \
	--density 0.7,0.8,0.9 --bc-gamma 0.01,0.05,0.02 --lines "$m1" "$m2" "$m3"
status 0 "-m breadcrumbs -n --json" "$LINES" merge -n --json -b "$b" -m breadcrumbs "$m1" "$m2" "$m3"
jqok "... mergekit's defaults: density 1, gamma 0.01, no normalize; select, threshold if needed, write" \
	'.method == "breadcrumbs" and .breadcrumbs.density == 1 and .breadcrumbs.gamma == 0.01 and .breadcrumbs.normalize == false and [.passes[].name] == ["select", "threshold", "write"] and [.passes[].optional] == [false, true, false]'
status 0 "-m breadcrumbs_ties --lines -n --json" "$LINES" merge -n --json -b "$b" -m breadcrumbs_ties \
	--lines --density 0.5,0.6,0.7 --bc-gamma 0.1,0.2,0.3 "$m1" "$m2" "$m3"
jqok "... normalized by default, the lists per model, a norms pass for alpha" \
	'.method == "breadcrumbs_ties" and .breadcrumbs_ties.density == [0.5, 0.6, 0.7] and .breadcrumbs_ties.gamma == [0.1, 0.2, 0.3] and .breadcrumbs_ties.normalize == true and [.passes[].name] == ["select", "threshold", "norms", "write"]'
status 0 "-m breadcrumbs --normalize -n --json" "$LINES" merge -n --json -b "$b" -m breadcrumbs \
	--normalize "$m1" "$m2"
jqok "... normalize on" '.breadcrumbs.normalize == true'
status 0 "-m breadcrumbs -n prints the passes" "$LINES" merge -n -b "$b" -m breadcrumbs --lines "$m1" "$m2" "$m3"
"$LINES" merge -q -b "$b" -m breadcrumbs_ties --density 0.6 --bc-gamma 0.05 --json -o "$tmp/bc.st" \
	"$m1" "$m2" "$m3" >"$tmp/bc.json"
jqok "... after a run, every merged tensor has its cuts: lo <= hi per task" \
	'[.tensors[] | select(.merged) | .breadcrumbs | (.lo | length) == 3 and ([.lo, .hi] | transpose | all(.[0] == null or .[1] == null or .[0] <= .[1]))] | length > 10 and all' "$tmp/bc.json"
check "... and the manifest records the same cuts" jq -e \
	"[.tensors[] | .breadcrumbs | select(.)] == $(jq -c '[.tensors[] | .breadcrumbs | select(.)]' "$tmp/bc.json" 2>/dev/null || echo null)" \
	"$tmp/bc.st.manifest.json"
# ---- what sce records ----------------------------------------------------------------------------
status 0 "-m sce -n --json" "$LINES" merge -n --json -b "$b" -m sce "$m1" "$m2" "$m3"
jqok "... select_topk 1: no selection, the weights pass and the writing pass" \
	'.method == "sce" and .sce.select_topk == 1 and [.passes[].name] == ["weights", "write"]'
status 0 "-m sce --select-topk 0.25 --lines -n --json" "$LINES" merge -n --json -b "$b" -m sce \
	--select-topk 0.25 --lines "$m1" "$m2" "$m3"
jqok "... select, refine (if needed), weights, norms, write" \
	'.sce.select_topk == 0.25 and [.passes[].name] == ["select", "refine", "weights", "norms", "write"] and .passes[1].optional'
"$LINES" merge -q -b "$b" -m sce --select-topk 0.25 --json -o "$tmp/sce.st" "$m1" "$m2" "$m3" >"$tmp/sce.json"
jqok "... after the run: per merged tensor count, k = floor(0.25 count), a threshold when k > 0, 3 weights summing to 1" \
	'[.tensors[] | select(.merged) | .sce | .k == ((.count * 0.25) | floor) and ((.k > 0) == (.threshold != null)) and (.weights | length) == 3 and ((.weights[0] | type) == "string" or ((.weights | add) - 1 | fabs) < 1e-12)] | length > 10 and all' \
	"$tmp/sce.json"
jqok "... the same entries in the manifest" \
	"[.tensors[] | .sce | select(.)] == $(jq -c '[.tensors[] | .sce | select(.)]' "$tmp/sce.json" 2>/dev/null || echo null)" \
	"$tmp/sce.st.manifest.json"
status 0 "-m sce --select-topk 0 --json" "$LINES" merge -q -b "$b" -m sce --select-topk 0 --json \
	-o "$tmp/sce0.st" "$m1" "$m2" "$m3"
jqok "... k = 0 and no threshold in every merged tensor (t-sce checks that they are the base's)" \
	'[.tensors[] | select(.merged) | .sce | .k == 0 and .threshold == null] | length > 10 and all'

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
refused "consensus --density without --consensus-over ties" -b "$b" -m consensus --density 0.3 "$m1" "$m2"
refused "consensus --trim without --consensus-over ties" -b "$b" -m consensus --trim tensor "$m1" "$m2"
refused "consensus --no-normalize without --consensus-over ties" -b "$b" -m consensus --no-normalize "$m1" "$m2"
refused "consensus --consensus-over ties --seed" -b "$b" -m consensus --consensus-over ties --seed 3 "$m1" "$m2"
refused "consensus --consensus-over ties, a model on standard input" -b "$b" -m consensus --consensus-over ties "$m1" - <"$m2"
refused "ties --consensus-over ties" -b "$b" -m ties --consensus-over ties "$m1" "$m2"
refused "consensus --consensus-over other" -b "$b" -m consensus --consensus-over mean "$m1" "$m2"
refused "consensus --consensus-k 3 with 2 models" -b "$b" -m consensus --consensus-k 3 "$m1" "$m2"
refused "consensus --consensus-k -1" -b "$b" -m consensus --consensus-k -1 "$m1" "$m2"
refused "consensus --tall-lambda with 2 values for 3 models" -b "$b" -m consensus --tall-lambda 0.2,0.3 "$m1" "$m2" "$m3"
refused "consensus --tall-lambda -0.1" -b "$b" -m consensus --tall-lambda -0.1 "$m1" "$m2"
refused "consensus --tall-lambda nan" -b "$b" -m consensus --tall-lambda nan "$m1" "$m2"
refused "consensus without -b" -m consensus "$m1" "$m2"
refused "consensus --t" -b "$b" -m consensus --t 1 "$m1" "$m2"
refused "consensus --density" -b "$b" -m consensus --density 0.5 "$m1" "$m2"
refused "consensus --lines auto alpha, a model on standard input" -b "$b" -m consensus --lines "$m1" - <"$m2"
refused "sum --consensus-k" -b "$b" -m sum --consensus-k 1 "$m1" "$m2"
refused "ties --tall-lambda" -b "$b" -m ties --tall-lambda 0.3 "$m1" "$m2"
refused "ties --density with 2 values for 3 models" -b "$b" -m ties --density 0.2,0.3 "$m1" "$m2" "$m3"
refused "dare_ties --density with 4 values for 3 models" -b "$b" -m dare_ties --density 0.2,0.3,0.4,0.5 "$m1" "$m2" "$m3"
refused "ties --density 0" -b "$b" -m ties --density 0 "$m1" "$m2"
refused "dare --density 1.5 in a list" -b "$b" -m dare --density 0.5,1.5 "$m1" "$m2"
refused "dare_linear --density -0.1 in a list" -b "$b" -m dare_linear --density -0.1,0.5 "$m1" "$m2"
refused "dare_linear --dare-elect" -b "$b" -m dare_linear --dare-elect "$m1" "$m2"
refused "dare_linear --normalize (it sums)" -b "$b" -m dare_linear --normalize "$m1" "$m2"
refused "ties --rescale" -b "$b" -m ties --rescale "$m1" "$m2"
refused "linear --no-rescale" -m linear --no-rescale "$m1" "$m2"
refused "sum --density 0.5,0.5" -b "$b" -m sum --density 0.5,0.5 "$m1" "$m2"
refused "dare --rescale, a model on standard input" -b "$b" -m dare --rescale "$m1" - <"$m2"
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
refused "model_stock with 1 model" -b "$b" -m model_stock "$m1"
refused "model_stock without -b" -m model_stock "$m1" "$m2"
refused "model_stock -w" -b "$b" -m model_stock -w 1,2 "$m1" "$m2"
refused "model_stock --density" -b "$b" -m model_stock --density 0.5 "$m1" "$m2"
refused "model_stock --lines, automatic alpha in L1" -b "$b" -m model_stock --lines "$m1" "$m2"
refused "model_stock, a model on standard input (two passes)" -b "$b" -m model_stock "$m1" - <"$m2"
refused "ram -w" -b "$b" -m ram -w 1,2,3 "$m1" "$m2" "$m3"
refused "ramplus_tl -w" -b "$b" -m ramplus_tl -w 1,1 "$m1" "$m2"
refused "ram without -b" -m ram "$m1" "$m2"
refused "ram --ram-r" -b "$b" -m ram --ram-r 0.5 "$m1" "$m2"
refused "ram --ram-alpha" -b "$b" -m ram --ram-alpha 0.5 "$m1" "$m2"
refused "sum --epsilon" -b "$b" -m sum --epsilon 0.1 "$m1" "$m2"
refused "consensus --epsilon" -b "$b" -m consensus --epsilon 0.1 "$m1" "$m2"
refused "ties --ram-r" -b "$b" -m ties --ram-r 0.1 "$m1" "$m2"
refused "ramplus_tl --epsilon -1" -b "$b" -m ramplus_tl --epsilon -1 "$m1" "$m2"
refused "ram --epsilon nan" -b "$b" -m ram --epsilon nan "$m1" "$m2"
refused "ramplus_tl --ram-alpha -0.1" -b "$b" -m ramplus_tl --ram-alpha -0.1 "$m1" "$m2"
refused "ramplus_tl --ram-r inf" -b "$b" -m ramplus_tl --ram-r inf "$m1" "$m2"
refused "ramplus_tl --epsilon given twice" -b "$b" -m ramplus_tl --epsilon 0.1 --epsilon 0.2 "$m1" "$m2"
refused "ramplus_tl, a model on standard input (a count pass)" -b "$b" -m ramplus_tl "$m1" - <"$m2"
refused "ram --lines auto alpha, a model on standard input" -b "$b" -m ram --lines "$m1" - <"$m2"
refused "sce -w" -b "$b" -m sce -w 1,2 "$m1" "$m2"
refused "sce without -b" -m sce "$m1" "$m2"
refused "sce --select-topk 1.5" -b "$b" -m sce --select-topk 1.5 "$m1" "$m2"
refused "sce --select-topk -0.1" -b "$b" -m sce --select-topk -0.1 "$m1" "$m2"
refused "sce --select-topk nan" -b "$b" -m sce --select-topk nan "$m1" "$m2"
refused "sce --density" -b "$b" -m sce --density 0.5 "$m1" "$m2"
refused "sce, a model on standard input (a weights pass)" -b "$b" -m sce "$m1" - <"$m2"
family "$tmp/f8" --arch llama --dtype bf16 --layers 2 --hidden 32 --models 2 --seed 3 --fp8 block
refused "sce --select-topk 0.5 --lines --dtype fp8 (six passes)" -b "$tmp/f8/base.safetensors" -m sce \
	--select-topk 0.5 --lines --dtype fp8 "$tmp/f8/ft1.safetensors" "$tmp/f8/ft2.safetensors"
refused "ties --select-topk" -b "$b" -m ties --select-topk 0.5 "$m1" "$m2"
refused "sum --select-topk" -b "$b" -m sum --select-topk 0.5 "$m1" "$m2"
refused "multislerp with 8 models" -m multislerp "$m1" "$m2" "$m3" "$m1" "$m2" "$m3" "$m1" "$m2"
refused "multislerp --lines without -b" -m multislerp --lines --alpha 0.5 "$m1" "$m2" "$m3"
refused "multislerp --lambda without -b" -m multislerp --lambda 0.5 "$m1" "$m2"
refused "multislerp with weights summing to 0" -m multislerp -w 1,-1,0 "$m1" "$m2" "$m3"
refused "multislerp -w with 2 values for 3 models" -m multislerp -w 1,2 "$m1" "$m2" "$m3"
refused "multislerp -b, a model on standard input (two passes)" -b "$b" -m multislerp "$m1" "$m2" - <"$m3"
refused "multislerp with one model, --lines auto alpha, on standard input" -b "$b" -m multislerp --lines - <"$m1"
refused "multislerp --t" -m multislerp --t 0.5 "$m1" "$m2"
refused "multislerp --density" -m multislerp --density 0.5 "$m1" "$m2"
refused "multislerp --rescale" -m multislerp --rescale "$m1" "$m2"
refused "multislerp --consensus-k" -m multislerp --consensus-k 1 "$m1" "$m2"
refused "sum --per-row" -b "$b" -m sum --per-row "$m1" "$m2"
refused "slerp --per-row" -b "$b" -m slerp --t 0.5 --per-row "$m1"
refused "model_stock --per-row --lines auto alpha, a model on standard input" -b "$b" -m model_stock --per-row --lines --norm l2 "$m1" - <"$m2"
refused "karcher -w (mergekit's karcher takes no weights)" -m karcher -w 1,2 "$m1" "$m2"
refused "karcher --max-iter 0" -m karcher --max-iter 0 "$m1" "$m2"
refused "karcher --max-iter -1" -m karcher --max-iter -1 "$m1" "$m2"
refused "karcher --max-iter 2.5" -m karcher --max-iter 2.5 "$m1" "$m2"
refused "karcher --tol 0" -m karcher --tol 0 "$m1" "$m2"
refused "karcher --tol -1e-5" -m karcher --tol -1e-5 "$m1" "$m2"
refused "karcher --tol nan" -m karcher --tol nan "$m1" "$m2"
refused "karcher --tol inf" -m karcher --tol inf "$m1" "$m2"
refused "karcher --max-iter given twice" -m karcher --max-iter 3 --max-iter 4 "$m1" "$m2"
refused "karcher with 9 models" -m karcher "$m1" "$m2" "$m3" "$m1" "$m2" "$m3" "$m1" "$m2" "$m3"
refused "karcher --lines without -b" -m karcher --lines --alpha 0.5 "$m1" "$m2"
refused "karcher --lambda without -b" -m karcher --lambda 0.5 "$m1" "$m2"
refused "karcher, a model on standard input (two passes)" -m karcher "$m1" - <"$m2"
refused "karcher --density" -m karcher --density 0.5 "$m1" "$m2"
refused "karcher --no-normalize" -m karcher --no-normalize "$m1" "$m2"
refused "karcher --t" -m karcher --t 0.5 "$m1" "$m2"
refused "linear --max-iter" -m linear --max-iter 3 "$m1" "$m2"
refused "multislerp --tol" -m multislerp --tol 1e-3 "$m1" "$m2"
refused "della --density 0.2 --epsilon 0.2 (p from 0)" -b "$b" -m della --epsilon 0.2 "$m1" "$m2"
refused "della --density 0.9 (p up to 1.05)" -b "$b" -m della --density 0.9 "$m1" "$m2"
refused "della_linear --epsilon 0.1,0.3 for a model at 0.2" -b "$b" -m della_linear \
	--density 0.5,0.2 --epsilon 0.1,0.3 "$m1" "$m2"
refused "della --epsilon with 2 values for 3 models" -b "$b" -m della --epsilon 0.1,0.1 "$m1" "$m2" "$m3"
refused "della --epsilon inf" -b "$b" -m della --epsilon inf "$m1" "$m2"
refused "della --dare-elect" -b "$b" -m della --dare-elect "$m1" "$m2"
refused "della_linear --normalize (it sums)" -b "$b" -m della_linear --normalize "$m1" "$m2"
refused "della --trim" -b "$b" -m della --trim tensor "$m1" "$m2"
refused "della --t" -b "$b" -m della --t 0.5 "$m1" "$m2"
refused "della without -b" -m della "$m1" "$m2"
refused "della --lines auto alpha, a model on standard input" -b "$b" -m della --lines "$m1" - <"$m2"
refused "della --rescale, a model on standard input" -b "$b" -m della --rescale "$m1" - <"$m2"
refused "ram --epsilon with 2 values" -b "$b" -m ram --epsilon 0.1,0.2 "$m1" "$m2"
refused "breadcrumbs --bc-gamma 1.5" -b "$b" -m breadcrumbs --bc-gamma 1.5 "$m1" "$m2"
refused "breadcrumbs --bc-gamma -0.1 in a list" -b "$b" -m breadcrumbs --bc-gamma 0.1,-0.1 "$m1" "$m2"
refused "breadcrumbs --bc-gamma nan" -b "$b" -m breadcrumbs --bc-gamma nan "$m1" "$m2"
refused "breadcrumbs_ties --bc-gamma with 2 values for 3 models" -b "$b" -m breadcrumbs_ties \
	--bc-gamma 0.1,0.2 "$m1" "$m2" "$m3"
refused "breadcrumbs --density with 2 values for 3 models" -b "$b" -m breadcrumbs --density 0.5,0.6 \
	"$m1" "$m2" "$m3"
refused "breadcrumbs --density 0" -b "$b" -m breadcrumbs --density 0 "$m1" "$m2"
refused "breadcrumbs --bc-gamma given twice" -b "$b" -m breadcrumbs --bc-gamma 0.1 --bc-gamma 0.2 "$m1" "$m2"
refused "breadcrumbs without -b" -m breadcrumbs "$m1" "$m2"
refused "breadcrumbs --trim" -b "$b" -m breadcrumbs --trim tensor "$m1" "$m2"
refused "breadcrumbs_ties --seed" -b "$b" -m breadcrumbs_ties --seed 1 "$m1" "$m2"
refused "breadcrumbs --rescale" -b "$b" -m breadcrumbs --rescale "$m1" "$m2"
refused "breadcrumbs --t" -b "$b" -m breadcrumbs --t 0.5 "$m1" "$m2"
refused "breadcrumbs, a model on standard input (several passes)" -b "$b" -m breadcrumbs "$m1" - <"$m2"
refused "ties --bc-gamma" -b "$b" -m ties --bc-gamma 0.1 "$m1" "$m2"
refused "dare_ties --bc-gamma" -b "$b" -m dare_ties --bc-gamma 0.1 "$m1" "$m2"
refused "sum --bc-gamma" -b "$b" -m sum --bc-gamma 0.1 "$m1" "$m2"
for opt in "--t 1" --no-normalize --rescale --no-rescale "--consensus-k 1" "--tall-lambda 0.3" \
	"--epsilon 0.1" "--ram-r 0.1" "--ram-alpha 0.1" --per-row "--max-iter 3" "--tol 1e-3" \
	"--bc-gamma 0.1" "--select-topk 0.5"; do
	# shellcheck disable=SC2086
	status 2 "scale $opt: exit 2" "$LINES" scale -b "$b" --gamma 0.5 $opt -o "$tmp/no.st" "$m1"
	check "scale $opt: nothing written" sh -c "! ls '$tmp' | grep -q '^no\.st'"
done

done_testing
