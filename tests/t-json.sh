#!/bin/sh
# t-json.sh -- lines merge/scale --json: the plan (-n) and the summary of a
# run as data. The values are read with jq and checked against what the
# formulas give and what the run wrote, not against the prose.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

if ! command -v jq >/dev/null 2>&1; then
	echo "1..0 # SKIP jq is missing"
	exit 0
fi

family "$tmp/f" --arch llama --dtype bf16 --layers 6 --hidden 32 --models 2 --seed 11
b=$tmp/f/base.safetensors
m1=$tmp/f/ft1.safetensors
m2=$tmp/f/ft2.safetensors
o=$tmp/out.safetensors

# (jqok DESCRIPTION FILTER [FILE] is in lib.sh)
# val FILTER [FILE]: one value, raw
val() { jq -r "$1" "${2:-$tmp/out}"; }

# ---- the plan's output_bytes is the size written, alpha measured or not ----------------------
for m in "ties --lines --beta 0.1" "model_stock --norm l2 --lines --beta 0.1" "model_stock --lines" \
	"dare --lines" "sum --lines -w 1,3"; do
	"$LINES" merge -n --json -b "$b" -m $m -o "$tmp/sz.st" "$m1" "$m2" >"$tmp/plan.json" 2>/dev/null
	"$LINES" merge --json -b "$b" -m $m -o "$tmp/sz.st" "$m1" "$m2" >"$tmp/run.json" 2>/dev/null
	sz=$(stat -c %s "$tmp/sz.st")
	jqok "-m $m: -n's output_bytes is the size of the file" ".output_bytes == $sz" "$tmp/plan.json"
	jqok "... and so is the run's written_bytes" ".written_bytes == $sz and .output_bytes == $sz" "$tmp/run.json"
done

# ---- sum --lines, two equal weights: alpha = 1/N without reading ---------------------------
status 0 "-n --json, sum --lines" "$LINES" merge -n --json -b "$b" --lines -o "$o" "$m1" "$m2"
jqok "... is one JSON object" 'type == "object"'
jqok "... the plan: after_run false, nothing written" '.after_run == false and .written_bytes == null'
jqok "... method, base, models, output and weights as given" \
	".method == \"sum\" and .base == \"$b\" and .models == [\"$m1\", \"$m2\"] and .output == \"$o\" and .weights == [1, 1]"
jqok "... LiNeS with automatic alpha 0.5 and beta 0.5; no global lambda" \
	'.lambda == null and .lines == {"alpha": 0.5, "beta": 0.5, "alpha_mode": "auto", "norm": "l1"}'
L=$(val .num_layers)
check "... num_layers is 6 ($L)" test "$L" = 6
val '.lambda_blocks[]' >"$tmp/lam"
check "... lambda_blocks[i] = 0.5 + 0.5 i / (L - 1) for every block" awk -v L="$L" '
	{ want = 0.5 + 0.5 * (NR - 1) / (L - 1); d = $1 - want; if (d < 0) d = -d; if (d > 1e-12) bad++ }
	END { exit !(NR == L && !bad) }' "$tmp/lam"
jqok "... lambda_outside is alpha" '.lambda_outside == 0.5'
jqok "... one pass, write, not optional, skipped unknown" \
	'.passes == [{"name": "write", "read_bytes": .passes[0].read_bytes, "optional": false, "skipped": null}] and .passes[0].read_bytes > 0'
jqok "... no norms measured" '.norm_sum == null and .norm_mtl == null'
jqok "... every tensor listed; its lambda is its block's, or alpha outside the blocks" \
	'. as $r | (.tensors | length) == .ntensors and .nfloat == .ntensors and
	 all(.tensors[]; .lambda == (if .block == null then $r.lambda_outside else $r.lambda_blocks[.block] end))'
jqok "... shapes and bytes: BF16, 2 bytes an element" \
	'all(.tensors[]; .dtype == "BF16" and .bytes == 2 * (.shape | reduce .[] as $d (1; . * $d)))'
jqok "... memory_bound, chunk and jobs are positive; io and kernels named" \
	'.memory_bound > 0 and .chunk > 0 and .jobs > 0 and (.io | test("^(mmap|uring)$")) and (.kernels | length) > 0'
cp "$tmp/out" "$tmp/plan-sum.json"
check "a dry run writes nothing" test ! -e "$o"

# the run: its summary agrees with the plan and with the file
status 0 "sum --lines --json: a run" "$LINES" merge --json -b "$b" --lines -o "$o" "$m1" "$m2"
jqok "... the summary: after_run true" '.after_run == true'
check "... on stdout only: stderr is empty" test ! -s "$tmp/err"
check "... output_bytes as planned ($(val .output_bytes "$tmp/plan-sum.json"))" \
	test "$(val .output_bytes)" = "$(val .output_bytes "$tmp/plan-sum.json")"
check "... written_bytes is the size of the file" test "$(val .written_bytes)" = "$(stat -c %s "$o")"
check "... memory_bound's buffers are what -n predicted" \
	test "$(val '.memory_bound - .memory_metadata')" = "$(val '.memory_bound - .memory_metadata' "$tmp/plan-sum.json")"
check "... and its headers and tables (measured) within a quarter of -n's" \
	awk -v a="$(val .memory_metadata)" -v b="$(val .memory_metadata "$tmp/plan-sum.json")" 'BEGIN { exit !(a > 0.75 * b && a < 1.25 * b) }'
jqok "... the write pass ran" '.passes == [{"name": "write", "read_bytes": .passes[0].read_bytes, "optional": false, "skipped": false}]'
check "... the same lambdas as the plan" \
	test "$(jq -c .lambda_blocks "$tmp/out")" = "$(jq -c .lambda_blocks "$tmp/plan-sum.json")"
check "... and as the manifest" test "$(jq -c '[.tensors[].lambda]' "$tmp/out")" = \
	"$(jq -c '[.tensors[].lambda]' "$o.manifest.json")"
status 0 "-q does not silence --json" "$LINES" merge -q --json -b "$b" --lines -o "$o" "$m1" "$m2"
jqok "... the summary is there" '.after_run == true'

# unequal weights: alpha waits for the norm pass
status 0 "-n --json with -w 1,3" "$LINES" merge -n --json -b "$b" --lines -w 1,3 -o "$o" "$m1" "$m2"
jqok "... alpha, beta and every lambda unknown (null)" \
	'.lines.alpha == null and .lines.beta == null and all(.lambda_blocks[]; . == null) and .lambda_outside == null and all(.tensors[]; .lambda == null)'
jqok "... passes norms then write" '[.passes[].name] == ["norms", "write"]'
status 0 "the run with -w 1,3" "$LINES" merge --json -b "$b" --lines -w 1,3 -o "$o" "$m1" "$m2"
jqok "... measured the norms and set alpha = norm_sum / (2 norm_mtl)" \
	'.norm_sum > 0 and .norm_mtl > 0 and ((.lines.alpha - .norm_sum / (2 * .norm_mtl)) | fabs) < 1e-12'
jqok "... the manifest records the same alpha" ".lines.alpha == $(jq .run.alpha "$o.manifest.json")"

# no LiNeS
status 0 "-n --json --lambda 0.7" "$LINES" merge -n --json -b "$b" --lambda 0.7 -o "$o" "$m1" "$m2"
jqok "... lambda 0.7 everywhere, lines null" \
	'.lambda == 0.7 and .lines == null and all(.lambda_blocks[]; . == 0.7) and .lambda_outside == 0.7'

# ---- TIES ------------------------------------------------------------------------------
status 0 "-n --json, ties --lines" "$LINES" merge -n --json -b "$b" -m ties --lines -o "$o" "$m1" "$m2"
jqok "... passes select, threshold, write" '[.passes[].name] == ["select", "threshold", "write"]'
jqok "... only threshold is optional" '[.passes[].optional] == [false, true, false]'
jqok "... skipped is not known before the run" 'all(.passes[]; .skipped == null)'
jqok "... alpha is not known yet" '.lines.alpha == null and all(.lambda_blocks[]; . == null)'
jqok "... ties: density 0.2, global trim, no thresholds yet" \
	'.ties == {"density": 0.2, "trim": "global", "majority": null, "thresholds": null}'
cp "$tmp/out" "$tmp/plan-ties.json"
rm -f "$o"
status 0 "ties --lines --json: a run" "$LINES" merge --json -b "$b" -m ties --lines -o "$o" "$m1" "$m2"
jqok "... a threshold per model, positive numbers" \
	'(.ties.thresholds | length) == 2 and all(.ties.thresholds[]; type == "number" and . > 0)'
check "... the thresholds of the manifest" \
	test "$(jq -c .ties.thresholds "$tmp/out")" = "$(jq -c .run.ties.thresholds "$o.manifest.json")"
jqok "... a majority sign" '.ties.majority == 1 or .ties.majority == -1'
jqok "... skipped is a boolean for every pass; select and write ran" \
	'all(.passes[]; .skipped | type == "boolean") and .passes[0].skipped == false and .passes[2].skipped == false'
jqok "... a skipped pass read nothing" 'all(.passes[]; (.skipped | not) or .read_bytes == 0)'
jqok "... alpha from the norms, and lambda ends at 1" \
	'.lines.alpha > 0 and ((.lines.alpha - .norm_sum / (2 * .norm_mtl)) | fabs) < 1e-12 and .lambda_blocks[-1] == 1'
check "... memory_bound's buffers are what -n predicted" \
	test "$(val '.memory_bound - .memory_metadata')" = "$(val '.memory_bound - .memory_metadata' "$tmp/plan-ties.json")"
check "... and its headers and tables (measured) within a quarter of -n's" \
	awk -v a="$(val .memory_metadata)" -v b="$(val .memory_metadata "$tmp/plan-ties.json")" 'BEGIN { exit !(a > 0.75 * b && a < 1.25 * b) }'
check "... written_bytes is the size of the file" test "$(val .written_bytes)" = "$(stat -c %s "$o")"

# the threshold pass runs when the select pass cannot do its work: per tensor,
# the thresholds are per tensor too
status 0 "ties --trim tensor --json: a run" "$LINES" merge --json -b "$b" -m ties --trim tensor --lambda 1 -o "$o" "$m1" "$m2"
jqok "... no global thresholds; each merged tensor has its own" \
	'.ties.thresholds == null and all(.tensors[]; (.ties_thresholds | length) == 2)'
check "... those of the manifest" test "$(jq -c '[.tensors[].ties_thresholds]' "$tmp/out")" = \
	"$(jq -c '[.tensors[].ties_thresholds]' "$o.manifest.json")"
jqok "... the threshold pass is not optional and ran" \
	'.passes[1] | .name == "threshold" and .optional == false and .skipped == false and .read_bytes > 0'

# ---- DARE ------------------------------------------------------------------------------
status 0 "-n --json, dare --lines" "$LINES" merge -n --json -b "$b" -m dare --lines --seed 7 -o "$o" "$m1" "$m2"
jqok "... a stats pass measures alpha before the write pass" '[.passes[].name] == ["stats", "write"]'
jqok "... dare: density, the seed as a string, no election" \
	'.dare == {"density": 0.2, "seed": "7", "elect": false, "majority": null}'
status 0 "-n --json, dare with a given alpha" "$LINES" merge -n --json -b "$b" -m dare --alpha 0.4 -o "$o" "$m1" "$m2"
jqok "... no stats pass" '[.passes[].name] == ["write"] and .lines.alpha == 0.4 and .lines.alpha_mode == "given"'
status 0 "dare --dare-elect --json: a run" "$LINES" merge --json -b "$b" -m dare --dare-elect --lambda 1 -o "$o" "$m1" "$m2"
jqok "... the majority sign of the election" '.dare.elect and (.dare.majority == 1 or .dare.majority == -1)'

# ---- scale -----------------------------------------------------------------------------
status 0 "scale -n --json --gamma 0.4" "$LINES" scale -n --json -b "$b" --gamma 0.4 -o "$o" "$m1"
jqok "... command scale, alpha 0.4 given, beta 0.6" \
	'.command == "scale" and .lines.alpha == 0.4 and .lines.alpha_mode == "given" and ((.lines.beta - 0.6) | fabs) < 1e-15'
val '.lambda_blocks[]' >"$tmp/lam"
check "... lambda_blocks[i] = 0.4 + 0.6 i / (L - 1)" awk -v L="$L" '
	{ want = 0.4 + 0.6 * (NR - 1) / (L - 1); d = $1 - want; if (d < 0) d = -d; if (d > 1e-12) bad++ }
	END { exit !(NR == L && !bad) }' "$tmp/lam"

# ---- where the object goes -------------------------------------------------------------
status 2 "--json -o -: a usage error" "$LINES" merge --json -b "$b" --lines -o - "$m1" "$m2"
check "... that says why" has "$tmp/err" "--json prints on standard output"
check "... and writes nothing on stdout" test ! -s "$tmp/out"
status 2 "--json with no -o and stdout not a terminal: a usage error" "$LINES" merge --json -b "$b" --lines "$m1" "$m2"
status 2 "scale --json -o -: a usage error" "$LINES" scale --json -b "$b" --gamma 0.5 -o - "$m1"
status 0 "-n --json -o -: the plan, nothing else, on stdout" "$LINES" merge -n --json -b "$b" --lines -o - "$m1" "$m2"
jqok "... output is -" '.output == "-" and .after_run == false'

done_testing
