#!/bin/sh
# t-gguf-summary.sh -- what the plan and the summary say of quantized
# inputs: --json's input_types (the dtypes of every input's matrices, in
# order of first appearance: one when all are quantized the same way),
# output_type, and roundtrip_rms_estimate, the relative RMS error of a
# round trip through the output's block type, which must be the figure of
# lines-merge(1)'s table "GGUF round-trip error" for every block type lines
# writes (and null for a float output). The same keys after a run.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"
: "${GEN_GGUF:=$(dirname "$GEN")/gen-gguf}"
MAN=${TESTS_SRCDIR:-$(dirname "$0")}/../man/lines-merge.1

if ! command -v jq >/dev/null 2>&1; then
	echo "1..0 # SKIP jq is missing"
	exit 0
fi

for ty in q4_k q8_0 f16; do
	"$GEN_GGUF" --type $ty --layers 2 --hidden 256 --models 2 --seed 9 --out "$tmp/$ty" ||
		{ echo "Bail out! gen-gguf failed"; exit 99; }
done
q=$tmp/q4_k
o=$tmp/out.gguf

status 0 "-n --json of Q4_K models" "$LINES" merge -n --json --lines -b "$q/base.gguf" -o "$o" \
	"$q/ft1.gguf" "$q/ft2.gguf"
jqok "... input_types [Q4_K], output_type Q4_K, an estimate" \
	'.input_types == ["Q4_K"] and .output_type == "Q4_K" and (.roundtrip_rms_estimate > 0)'

# every block type lines writes: the estimate is the man page's figure
for dt in q8_0 q6_k q5_k q5_1 q5_0 q4_k q4_1 q4_0; do
	DT=$(echo "$dt" | tr 'a-z' 'A-Z')
	want=$(sed -n "s/^\.It $DT Ta \([0-9.e-]*\) Ta .*/\1/p" "$MAN")
	"$LINES" merge -n --json --lines --dtype "$dt" -b "$q/base.gguf" -o "$o" "$q/ft1.gguf" \
		"$q/ft2.gguf" >"$tmp/out" 2>"$tmp/err"
	jqok "--dtype $dt: output_type $DT, roundtrip_rms_estimate the man page's ${want:-(none)}" \
		".output_type == \"$DT\" and \"$want\" != \"\" and .roundtrip_rms_estimate == ($want)"
done

status 0 "--dtype f16" "$LINES" merge -n --json --lines --dtype f16 -b "$q/base.gguf" -o "$o" \
	"$q/ft1.gguf" "$q/ft2.gguf"
jqok "... output_type F16, no estimate (not a block type)" \
	'.input_types == ["Q4_K"] and .output_type == "F16" and .roundtrip_rms_estimate == null'

status 0 "a Q8_0 base with Q4_K fine-tunes" "$LINES" merge -n --json --lines -b "$tmp/q8_0/base.gguf" \
	-o "$o" "$q/ft1.gguf" "$q/ft2.gguf"
jqok "... input_types [Q8_0, Q4_K], output_type Q8_0 (the base's)" \
	'.input_types == ["Q8_0", "Q4_K"] and .output_type == "Q8_0" and
	 .roundtrip_rms_estimate > 0'

status 0 "F16 GGUF models" "$LINES" merge -n --json --lines -b "$tmp/f16/base.gguf" -o "$o" \
	"$tmp/f16/ft1.gguf" "$tmp/f16/ft2.gguf"
jqok "... input_types [F16], output_type F16, no estimate" \
	'.input_types == ["F16"] and .output_type == "F16" and .roundtrip_rms_estimate == null'

status 0 "after a run, --json of Q4_K models" "$LINES" merge -q --json --lines -b "$q/base.gguf" \
	-o "$o" "$q/ft1.gguf" "$q/ft2.gguf"
jqok "... the same keys" \
	'.after_run and .input_types == ["Q4_K"] and .output_type == "Q4_K" and
	 .roundtrip_rms_estimate > 0'

"$GEN" --arch llama --dtype bf16 --layers 2 --hidden 16 --models 1 --seed 3 --out "$tmp/st" ||
	{ echo "Bail out! gen-family failed"; exit 99; }
status 0 "safetensors BF16 models" "$LINES" merge -n --json -b "$tmp/st/base.safetensors" \
	-o "$tmp/o.safetensors" "$tmp/st/ft1.safetensors"
jqok "... input_types [BF16], output_type BF16, no estimate" \
	'.input_types == ["BF16"] and .output_type == "BF16" and .roundtrip_rms_estimate == null'

# rows of 64 elements hold no whole Q4_K block: every matrix F32, said once
"$GEN_GGUF" --type q8_0 --layers 2 --hidden 64 --models 2 --seed 9 --out "$tmp/small" ||
	{ echo "Bail out! gen-gguf failed"; exit 99; }
status 0 "-n --json --dtype q4_k where no row is whole blocks" "$LINES" merge -n --json --lines --alpha 0.5 \
	-b "$tmp/small/base.gguf" --dtype q4_k -o "$o" "$tmp/small/ft1.gguf" "$tmp/small/ft2.gguf"
jqok "... output_type F32" '.output_type == "F32"'
check "... with a warning that names the type" sh -c "grep -c 'warning: --dtype q4_k' '$tmp/err' | grep -qx 1"
# --print-config of a block type: lines' own dtype, so that the config
# writes Q8_0 again (it said out_dtype: float32, an F32 model)
status 0 "--print-config with --dtype q8_0" "$LINES" merge --print-config --lines --alpha 0.5 \
	-b "$tmp/q8_0/base.gguf" --dtype q8_0 -o "$o" "$tmp/q8_0/ft1.gguf" "$tmp/q8_0/ft2.gguf"
cp "$tmp/out" "$tmp/q8.yml"
status 0 "... run with --config -n --json" "$LINES" merge -n --json --config "$tmp/q8.yml" -o "$o"
jqok "... output_type Q8_0" '.output_type == "Q8_0"'
# float64 has no llama.cpp model type: refused for a GGUF output
status 2 "--dtype f64 with a GGUF output is a usage error" "$LINES" merge -q --lines --alpha 0.5 \
	-b "$tmp/q8_0/base.gguf" --dtype f64 -o "$tmp/f64.gguf" "$tmp/q8_0/ft1.gguf" "$tmp/q8_0/ft2.gguf"
check "... and writes nothing" test ! -e "$tmp/f64.gguf"

done_testing
