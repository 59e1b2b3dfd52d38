#!/bin/sh
# t-cli.sh -- the command line: help, version, usage errors (exit 2),
# inspect, dry runs, and standard output as a filter.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

family "$tmp/f" --arch llama --dtype bf16 --layers 4 --hidden 32 --models 2 --seed 5
b=$tmp/f/base.safetensors
m1=$tmp/f/ft1.safetensors
m2=$tmp/f/ft2.safetensors

# ---- help and version -------------------------------------------------------
status 0 "lines --help exits 0" "$LINES" --help
check "--help prints the commands on stdout" has "$tmp/out" "merge"
status 0 "lines --version exits 0" "$LINES" --version
check "--version names lines, zstd, xxHash, liburing and the kernels" \
	sh -c "grep -q '^lines [0-9]' '$tmp/out' && grep -q zstd '$tmp/out' && grep -q xxHash '$tmp/out' && grep -q liburing '$tmp/out' && grep -q '^kernels: ' '$tmp/out'"
src=${TESTS_SRCDIR:-$(dirname "$0")}/..
for c in merge scale inspect verify; do
	status 0 "lines $c --help exits 0" "$LINES" $c --help
	check "lines $c --help prints a usage line" has "$tmp/out" "usage: lines $c"
	# every long option the command takes is in its --help and its man page
	# (scale lives in cmd_merge.c and refuses the options of the methods)
	f=$src/src/cli/cmd_$c.c
	[ "$c" = scale ] && f=$src/src/cli/cmd_merge.c
	opts=$(sed -n "s/^	{\"\([a-z-]*\)\", .*/\1/p" "$f")
	[ "$c" = scale ] && opts=$(printf '%s\n' $opts | grep -vxE 'method|weights|lambda|lines|alpha|beta|norm|density|trim|seed|dare-elect|normalize|no-normalize|rescale|no-rescale|t|consensus-k|tall-lambda|consensus-over|epsilon|ram-r|ram-alpha|config|print-config|per-row|max-iter|tol|bc-gamma|select-topk|part|stats|stats-out')
	check "lines $c: its options are found in $f" test -n "$opts"
	for opt in $opts; do
		check "lines $c --help lists --$opt" grep -qE -- "--$opt([^a-z-]|\$)" "$tmp/out"
		check "lines-$c(1) documents --$opt" grep -qE -- "Fl -$opt([^a-z-]|\$)" "$src/man/lines-$c.1"
	done
done
status 2 "no command is a usage error" "$LINES"
status 2 "an unknown command is a usage error" "$LINES" frobnicate
check "... and says so" has "$tmp/err" "'frobnicate' is not a lines command"

# ---- usage errors: exit 2, before anything is read -------------------------------
o=$tmp/never.safetensors
status 2 "merge without -b" "$LINES" merge -o "$o" "$m1"
status 2 "merge without models" "$LINES" merge -b "$b" -o "$o"
status 2 "unknown method" "$LINES" merge -b "$b" -m avg -o "$o" "$m1"
status 2 "wrong number of weights" "$LINES" merge -b "$b" -w 1,2,3 -o "$o" "$m1" "$m2"
check "... names both counts" has "$tmp/err" "3 weights for 2 models"
status 2 "a weight that is not a number" "$LINES" merge -b "$b" -w 1,x -o "$o" "$m1" "$m2"
status 2 "--lambda with --lines" "$LINES" merge -b "$b" --lambda 0.5 --lines -o "$o" "$m1" "$m2"
status 2 "--gamma with --alpha" "$LINES" merge -b "$b" --gamma 0.5 --alpha 0.2 -o "$o" "$m1"
status 2 "--gamma out of [0, 1]" "$LINES" scale -b "$b" --gamma 1.5 -o "$o" "$m1"
status 2 "--norm l3" "$LINES" merge -b "$b" --lines --norm l3 -o "$o" "$m1" "$m2"
status 2 "--chunk below 16K" "$LINES" merge -b "$b" --chunk 1K -o "$o" "$m1"
status 2 "--chunk that is not a size" "$LINES" merge -b "$b" --chunk lots -o "$o" "$m1"
status 2 "--num-layers 0" "$LINES" merge -b "$b" --num-layers 0 -o "$o" "$m1"
status 2 "-j 0" "$LINES" merge -b "$b" -j 0 -o "$o" "$m1"
status 2 "LiNeS with one model needs --alpha or --gamma" "$LINES" merge -b "$b" --lines -o "$o" "$m1"
status 2 "scale without --gamma" "$LINES" scale -b "$b" -o "$o" "$m1"
status 2 "scale with two models" "$LINES" scale -b "$b" --gamma 0.5 -o "$o" "$m1" "$m2"
status 2 "scale with -w" "$LINES" scale -b "$b" --gamma 0.5 -w 2 -o "$o" "$m1"
status 2 "scale with -m" "$LINES" scale -b "$b" --gamma 0.5 -m sum -o "$o" "$m1"
status 0 "scale -n with --schedule and a --gamma list (each list freed once: ASan's leak check)" \
	"$LINES" scale -n -b "$b" --gamma 0.3,0.5 --schedule 0,1 -o "$tmp/s{gamma}.st" "$m1"
status 0 "scale --gamma -0" "$LINES" scale -n --json -b "$b" --gamma -0 -o "$o" "$m1"
jqok "... is alpha 0, not -0" '(.lines.alpha | tostring) == "0"'
status 2 "scale with --norm" "$LINES" scale -b "$b" --gamma 0.5 --norm l2 -o "$o" "$m1"
status 2 "--density with -m sum" "$LINES" merge -b "$b" --density 0.3 -o "$o" "$m1"
status 2 "--seed that is not an integer" "$LINES" merge -b "$b" -m dare --seed 1.5 -o "$o" "$m1"
status 2 "a bad --layer-regex" "$LINES" merge -b "$b" --layer-regex '(' -o "$o" "$m1"
status 2 "a --layer-regex without a capture group" "$LINES" merge -b "$b" --layer-regex 'layers' -o "$o" "$m1"
status 2 "--num-layers smaller than the base's blocks" "$LINES" merge -b "$b" --num-layers 2 -o "$o" "$m1"
check "... names the tensor beyond it" has "$tmp/err" "is beyond --num-layers 2"
status 2 "an unsupported LINES_ISA" env LINES_ISA=vax "$LINES" merge -b "$b" -o "$o" "$m1"
status 2 "--trim with -m dare" "$LINES" merge -b "$b" -m dare --trim tensor -o "$o" "$m1" "$m2"
check "... says --trim is for TIES" has "$tmp/err" "--trim applies to -m ties only"
status 2 "--seed with -m ties" "$LINES" merge -b "$b" -m ties --seed 3 -o "$o" "$m1" "$m2"
status 2 "--dare-elect with -m ties" "$LINES" merge -b "$b" -m ties --dare-elect -o "$o" "$m1" "$m2"
check "... says they are for DARE" has "$tmp/err" "--seed and --dare-elect apply to -m dare only"
status 2 "scale with --density" "$LINES" scale -b "$b" --gamma 0.5 --density 0.3 -o "$o" "$m1"
check "... points to lines merge" has "$tmp/err" "belong to lines merge -m ties or -m dare"
status 2 "a TIES density of 0 is a usage error" "$LINES" merge -b "$b" -m ties --density 0 -o "$o" "$m1" "$m2"
check "no output after any usage error" test ! -e "$o"
check "no temporary file after any usage error" no_temp "$tmp"
status 2 "inspect needs exactly one model" "$LINES" inspect "$b" "$m1"

# ---- inspect -------------------------------------------------------------------
status 0 "inspect a model" "$LINES" inspect "$b"
check "inspect prints L" has "$tmp/out" "L = 4 blocks"
check "inspect prints a block index" grep -q '^3  *BF16 .* model\.layers\.3\.mlp\.down_proj\.weight$' "$tmp/out"
check "inspect prints '-' outside the blocks" grep -q '^-  *BF16 .* model\.embed_tokens\.weight$' "$tmp/out"
check "inspect prints shape and bytes" grep -q 'BF16  *\[128, 32\]  *8192  *model\.embed_tokens\.weight' "$tmp/out"
status 0 "inspect --layers" "$LINES" inspect --layers "$b"
check "--layers has one row per block and one outside" sh -c "grep -c '^[0-3] ' '$tmp/out' | grep -qx 4 && grep -q '^outside ' '$tmp/out'"
status 0 "inspect --json" "$LINES" inspect --json "$b"
check "--json has the tensor list and num_layers" sh -c "grep -q '\"num_layers\": 4' '$tmp/out' && grep -q '\"tensor_list\"' '$tmp/out'"
status 0 "inspect --layer-regex" "$LINES" inspect --layer-regex 'proj\.([0-9]+)' "$b"
check "... finds no blocks in names without them" has "$tmp/out" "L = 0 blocks"
status 0 "inspect -q prints nothing" "$LINES" inspect -q "$b"
check "... really nothing" test ! -s "$tmp/out"

family "$tmp/g" --arch gpt2 --dtype f16 --layers 3 --hidden 16 --models 1 --seed 5
status 0 "inspect a GPT-2 model" "$LINES" inspect "$tmp/g/base.safetensors"
check "GPT-2: transformer.h.N. gives the block" sh -c "grep -q 'L = 3 blocks' '$tmp/out' && grep -q '^2  *F16 .*transformer\.h\.2\.mlp\.c_fc\.weight' '$tmp/out'"
check "GPT-2: the BOOL mask is listed" grep -q '^0  *BOOL  *\[1, 1, 64, 64\]' "$tmp/out"

# ---- dry run -----------------------------------------------------------------------
# the plan is read as data (--json, see also t-json.sh); the prose is only
# checked to be there
status 0 "merge --dry-run" "$LINES" merge -n -b "$b" --lines -w 1,3 -o "$o" "$m1" "$m2"
check "the prose plan names the passes and the memory bound" \
	sh -c "grep -q 'passes' '$tmp/out' && grep -q 'memory bound' '$tmp/out'"
check "a dry run writes nothing" test ! -e "$o"
status 0 "merge --dry-run --json" "$LINES" merge -n --json -b "$b" --lines -w 1,3 -o "$o" "$m1" "$m2"
cp "$tmp/out" "$tmp/plan.json"
jqok "the plan lists the norm pass and the write pass" '[.passes[].name] == ["norms", "write"]'
jqok "alpha is measured by the norms pass: alpha, beta and lambda per block are unknown" \
	'.lines.alpha == null and .lines.beta == null and all(.lambda_blocks[]; . == null) and .lines.alpha_mode == "auto"'
jqok "the plan gives a memory bound" '.memory_bound > 0'
check "a dry run with --json writes nothing either" test ! -e "$o"
"$LINES" merge -q -b "$b" --lines -w 1,3 -o "$o" "$m1" "$m2"
jqok "the plan's output size is the size written ($(stat -c %s "$o"))" \
	".output_bytes == $(stat -c %s "$o")" "$tmp/plan.json"
rm -f "$o"
status 0 "a TIES dry run" "$LINES" merge -n --json -b "$b" -m ties --lines -o "$o" "$m1" "$m2"
jqok "... passes select, threshold and write, alpha not known yet" \
	'[.passes[].name] == ["select", "threshold", "write"] and .lines.alpha == null'
jqok "... shows the threshold pass as one that runs only if needed" '[.passes[].optional] == [false, true, false]'
status 0 "a DARE dry run with --beta" "$LINES" merge -n --json -b "$b" -m dare --lines --beta 0.25 -o "$o" "$m1" "$m2"
jqok "... measures alpha in the stats pass and shows the beta given" \
	'[.passes[].name] == ["stats", "write"] and .lines.alpha == null and .lines.beta == 0.25'
check "... and creates no temporary file" no_temp "$tmp"
status 0 "dry run with a closed-form alpha" "$LINES" merge -n --json -b "$b" --lines -o "$o" "$m1" "$m2"
jqok "... gives alpha 0.5 and lambda per block up to 1" \
	'.lines.alpha == 0.5 and (.lambda_blocks | length) == 4 and
	 all(range(4) as $i | .lambda_blocks[$i] - (0.5 + 0.5 * $i / 3); fabs < 1e-12)'
status 0 "dry run -v lists every tensor" "$LINES" merge -n -v -b "$b" --gamma 0.4 "$m1"
check "... by name" has "$tmp/out" "model.layers.2.mlp.down_proj.weight"
status 0 "dry run --json of the same" "$LINES" merge -n --json -b "$b" --gamma 0.4 "$m1"
jqok "... every tensor with its block and lambda" \
	'(.tensors | length) == .ntensors and (.tensors[] | select(.name == "model.layers.2.mlp.down_proj.weight") | .block == 2 and (.lambda - 0.8 | fabs) < 1e-12)'

# ---- a filter ---------------------------------------------------------------------
"$LINES" merge -q -b "$b" --lines -o "$tmp/file.st" "$m1" "$m2"
"$LINES" merge -q -b "$b" --lines "$m1" "$m2" >"$tmp/stdout.st"
check "no -o and stdout not a terminal: the same bytes on stdout" cmp -s "$tmp/file.st" "$tmp/stdout.st"
"$LINES" merge -q -b "$b" --lines -o - "$m1" "$m2" | cat >"$tmp/dash.st"
check "-o - writes the same bytes to a pipe" cmp -s "$tmp/file.st" "$tmp/dash.st"
status 0 "merge prints a summary on stderr" "$LINES" merge -b "$b" --lines -o "$tmp/s.st" "$m1" "$m2"
check "... that names the output" sh -c "grep -q 'wrote' '$tmp/err' && grep -q 's\.st' '$tmp/err'"
status 0 "merge --json prints the summary as data on stdout" "$LINES" merge --json -b "$b" --lines -o "$tmp/s.st" "$m1" "$m2"
jqok "... with the output, alpha and lambda per block" \
	".after_run and .output == \"$tmp/s.st\" and .lines.alpha == 0.5 and .lines.alpha_mode == \"auto\" and .lambda_blocks[3] == 1"
check "... and nothing on stderr" test ! -s "$tmp/err"
status 0 "-q silences the summary" "$LINES" merge -q -b "$b" --lines -o "$tmp/s.st" "$m1" "$m2"
check "... entirely" test ! -s "$tmp/err"

# ---- determinism across threads and chunk sizes ------------------------------------------
"$LINES" merge -q -b "$b" --lines -w 2,1 -j 1 --chunk 16K -o "$tmp/j1.st" "$m1" "$m2"
"$LINES" merge -q -b "$b" --lines -w 2,1 -j 4 --chunk 1M -o "$tmp/j4.st" "$m1" "$m2"
check "the same bytes with -j 1 --chunk 16K and -j 4 --chunk 1M" cmp -s "$tmp/j1.st" "$tmp/j4.st"
LINES_ISA=scalar "$LINES" merge -q -b "$b" --lines -w 2,1 -o "$tmp/sc.st" "$m1" "$m2"
check "the same bytes with LINES_ISA=scalar" cmp -s "$tmp/j1.st" "$tmp/sc.st"
for m in "ties --lines --density 0.3" "dare --lines --dare-elect --seed 9" "dare -w 2,0.5 --density 0.4"; do
	rm -f "$tmp/simd.st" "$tmp/sc.st"
	"$LINES" merge -q -b "$b" -m $m -o "$tmp/simd.st" "$m1" "$m2" &&
		LINES_ISA=scalar "$LINES" merge -q -b "$b" -m $m -o "$tmp/sc.st" "$m1" "$m2"
	ok $? "-m $m: both merges succeed"
	check "-m $m: the same bytes with LINES_ISA=scalar" cmp -s "$tmp/simd.st" "$tmp/sc.st"
done
# every other kernel set this machine runs (the default is the best one)
rm -f "$tmp/sc.st"
LINES_ISA=scalar "$LINES" merge -q -b "$b" -m ties --lines --density 0.3 -o "$tmp/sc.st" "$m1" "$m2"
# the workers' counts flushed at every job, four workers at once
rm -f "$tmp/fl.st"
LINES_TEST_TIES_FLUSH_EVERY=1 "$LINES" merge -q -j 4 --chunk 16K -b "$b" -m ties --lines --density 0.3 \
	-o "$tmp/fl.st" "$m1" "$m2"
check "-m ties: the same bytes when the workers flush their counts at every job" \
	cmp -s "$tmp/fl.st" "$tmp/sc.st"
for isa in avx2 avx512 neon; do
	if ! LINES_ISA=$isa "$LINES" --version >/dev/null 2>&1; then
		skip "-m ties with LINES_ISA=$isa: not built or not supported by this CPU"
		continue
	fi
	rm -f "$tmp/isa.st"
	LINES_ISA=$isa "$LINES" merge -q -b "$b" -m ties --lines --density 0.3 -o "$tmp/isa.st" "$m1" "$m2"
	ok $? "-m ties with LINES_ISA=$isa succeeds"
	check "-m ties: the same bytes with LINES_ISA=$isa" cmp -s "$tmp/isa.st" "$tmp/sc.st"
done

# ---- a TIES threshold that is infinite ------------------------------------------------
# one F32 tensor of 4 elements: the base zeros, the model three infinities and a 1
mkst() {
	h='{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'
	printf "\\$(printf %03o ${#h})\000\000\000\000\000\000\000%s$2" "$h" >"$1"
}
mkst "$tmp/zero.st" '\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000'
mkst "$tmp/inf.st" '\000\000\200\177\000\000\200\177\000\000\200\177\000\000\200\077'
status 0 "TIES whose threshold is infinite" "$LINES" merge -q -b "$tmp/zero.st" -m ties --density 0.5 -o "$tmp/inf-out.st" "$tmp/inf.st"
check "... records it as the string inf in the manifest" sh -c "grep -A1 '\"thresholds\"' '$tmp/inf-out.st.manifest.json' | grep -q '\"inf\"'"
status 0 "... and the output verifies" "$LINES" verify "$tmp/inf-out.st"

done_testing
