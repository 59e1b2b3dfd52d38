#!/bin/sh
# t-memory.sh -- the memory bound that -n announces holds for a model of
# very many tensors (issue 14, item 13): headers and tables grow with the
# number of tensors, and the bound includes them as measured while the plan
# is made; the peak resident set of the run stays under it. (The bound
# for the model's size, which does not grow, is t-rss.sh's.)
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

: "${PEAK_RSS:=$(dirname "$GEN")/peak-rss}"
if [ -n "${LINES_SKIP_BIG:-}" ]; then
	echo "1..0 # SKIP LINES_SKIP_BIG is set (a sanitizer's allocator has other sizes)"
	exit 0
fi
if ! command -v jq >/dev/null 2>&1 || [ ! -r /proc/self/statm ]; then
	echo "1..0 # SKIP needs jq and /proc/self/statm"
	exit 0
fi

family "$tmp/m" --arch many --tensors 100000 --layers 4 --hidden 16 --models 2 --seed 1 --dtype bf16 >/dev/null 2>&1
for m in sum ties breadcrumbs_ties; do
	"$LINES" merge -n --json -m $m -b "$tmp/m/base.safetensors" --lines -o "$tmp/o.st" \
		"$tmp/m/ft1.safetensors" "$tmp/m/ft2.safetensors" >"$tmp/plan.json" 2>/dev/null
	bound=$(jq .memory_bound "$tmp/plan.json")
	meta=$(jq .memory_metadata "$tmp/plan.json")
	"$PEAK_RSS" "$tmp/rss" "$LINES" merge -q -m $m -b "$tmp/m/base.safetensors" --lines -o "$tmp/o.st" \
		"$tmp/m/ft1.safetensors" "$tmp/m/ft2.safetensors"
	ok $? "$m of 100,000 tensors runs"
	peak=$(($(cat "$tmp/rss") * 1024))
	ok $((peak > bound)) "$m: peak RSS $peak bytes within the bound -n announced, $bound (of which headers and tables $meta)"
	ok $((bound > 2 * peak)) "$m: ... and the bound is not twice the peak"
	rm -f "$tmp"/o.st*
done
done_testing
