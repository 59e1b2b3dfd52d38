#!/bin/sh
# golden.sh -- the XXH3-128 of the outputs of a fixed set of merges: the
# bench's merges (sum with each reader, .zst, TIES, DARE) on a bf16
# family, the demo's, and every method on small families of each
# architecture gen-family makes. Run it with two builds of lines and
# compare the lists: a change that must not change the output bytes
# (a restructuring) shows no difference.
#
#   LINES=./lines GEN=./tests/gen-family sh bench/golden.sh [SIZE]
#
# SIZE is the size of each model of the bench family (default 256M; the
# bench uses 1G). Data goes to GOLDEN_DIR (default $TMPDIR/lines-golden)
# and is kept between runs (the families are the same for a given SIZE).
set -u
: "${LINES:=./lines}"
: "${GEN:=./tests/gen-family}"
: "${GOLDEN_DIR:=${TMPDIR:-/tmp}/lines-golden}"
size=${1:-256M}
mkdir -p "$GOLDEN_DIR" || exit 1
out=$GOLDEN_DIR/out
rm -rf "$out"
mkdir -p "$out"

fam() { # fam NAME GEN-ARGS...: generate once
	d=$GOLDEN_DIR/$1
	shift
	[ -f "$d/.done" ] || { "$GEN" "$@" --out "$d" >/dev/null 2>&1 && touch "$d/.done"; } || exit 1
}
hash() { xxhsum -H2 "$1" | awk '{print $1}'; }
run() { # run NAME ARGS...: merge, print the hash of the output
	name=$1
	shift
	if "$LINES" merge -q "$@" >/dev/null 2>"$out/$name.err"; then
		if [ -d "$out/$name" ]; then
			for f in "$out/$name"/*; do printf '%s  %s/%s\n' "$(hash "$f")" "$name" "${f##*/}"; done
		else
			printf '%s  %s\n' "$(hash "$out/$name")" "$name"
			m=$out/$name.manifest.json
			[ -f "$m" ] && printf '%s  %s\n' "$(hash "$m")" "$name.manifest.json"
		fi
	else
		printf 'FAILED(%s)  %s\n' "$(head -c 200 "$out/$name.err" | tr '\n' ' ')" "$name"
	fi
}

fam bench --arch llama --dtype bf16 --layers 16 --size "$size" --models 4 --seed 1
b=$GOLDEN_DIR/bench
m4="$b/ft1.safetensors $b/ft2.safetensors $b/ft3.safetensors $b/ft4.safetensors"
for io in mmap uring; do
	run bench-sum-$io.st -j 2 --io $io -b $b/base.safetensors --lines -o "$out/bench-sum-$io.st" $m4
done
run bench-sum.st.zst -j 2 -b $b/base.safetensors --lines -o "$out/bench-sum.st.zst" $m4
for m in ties dare; do
	run bench-$m.st -j 2 -b $b/base.safetensors -m $m --lines -o "$out/bench-$m.st" $m4
done
run bench-ties-tensor.st -j 2 -b $b/base.safetensors -m ties --trim tensor --lines -o "$out/bench-ties-tensor.st" $m4
run bench-dare-elect.st -j 2 -b $b/base.safetensors -m dare --dare-elect --lines -o "$out/bench-dare-elect.st" $m4
run bench-ties-w.st -j 1 --chunk 1M -b $b/base.safetensors -m ties -w 1,2,0.5,1 -o "$out/bench-ties-w.st" $m4

fam demo --arch llama --dtype bf16 --layers 8 --hidden 256 --models 3 --seed 42
d=$GOLDEN_DIR/demo
run demo-merged.st -b $d/base.safetensors --lines -w 0.5,1,1.5 -o "$out/demo-merged.st" \
	$d/ft1.safetensors $d/ft2.safetensors $d/ft3.safetensors
if "$LINES" scale -q -b $d/base.safetensors --gamma 0.3 -o "$out/demo-scale.st" $d/ft1.safetensors 2>/dev/null; then
	printf '%s  %s\n' "$(hash "$out/demo-scale.st")" demo-scale.st
else
	echo "FAILED  demo-scale.st"
fi

for arch in llama gpt2 clip t5; do
	for dt in bf16 f16 f32; do
		fam $arch-$dt --arch $arch --dtype $dt --layers 4 --hidden 64 --models 3 --seed 7 --specials
		f=$GOLDEN_DIR/$arch-$dt
		m3="$f/ft1.safetensors $f/ft2.safetensors $f/ft3.safetensors"
		fb=$f/base.safetensors
		run $arch-$dt-sum.st -b $fb -o "$out/$arch-$dt-sum.st" $m3
		run $arch-$dt-sumw.st -b $fb --lines -w 1,0.5,2 -o "$out/$arch-$dt-sumw.st" $m3
		run $arch-$dt-mean.st -b $fb -m mean --lines --norm l2 -o "$out/$arch-$dt-mean.st" $m3
		run $arch-$dt-ties.st -b $fb -m ties --lines --density 0.3 -o "$out/$arch-$dt-ties.st" $m3
		run $arch-$dt-tiest.st -b $fb -m ties --trim tensor --lambda 0.7 -o "$out/$arch-$dt-tiest.st" $m3
		run $arch-$dt-dare.st -b $fb -m dare --seed 3 --lines --beta 0.4 -o "$out/$arch-$dt-dare.st" $m3
		run $arch-$dt-daree.st -b $fb -m dare --dare-elect --density 0.5 -o "$out/$arch-$dt-daree.st" $m3
		run $arch-$dt-dareties.st -b $fb -m dare_ties --rescale --density 0.3,0.5,0.7 -w 1,2,0.5 -o "$out/$arch-$dt-dareties.st" $m3
		run $arch-$dt-tiesnn.st -b $fb -m ties --no-normalize --density 0.2,0.4,0.6 -w 1,2,0.5 -o "$out/$arch-$dt-tiesnn.st" $m3
		run $arch-$dt-f32.st -b $fb --gamma 0.25 --dtype f32 -o "$out/$arch-$dt-f32.st" $f/ft1.safetensors
		run $arch-$dt-dir -b $fb -m ties --lines --shard-size 20000 -o "$out/$arch-$dt-dir/" $m3
		run $arch-$dt-linear.st -m linear -w 1,0.5,2 -o "$out/$arch-$dt-linear.st" $m3
		run $arch-$dt-linearb.st -b $fb -m linear --lines -w 1,0.5,2 -o "$out/$arch-$dt-linearb.st" $m3
		run $arch-$dt-nearswap.st -b $fb -m nearswap --t 0.01 --gamma 0.5 \
			-o "$out/$arch-$dt-nearswap.st" $GOLDEN_DIR/$arch-$dt/ft1.safetensors
		run $arch-$dt-consensus.st -b $fb -m consensus --lines -o "$out/$arch-$dt-consensus.st" $m3
		run $arch-$dt-consensusw.st -b $fb -m consensus --consensus-k 1 -w 1,0.5,2 \
			--tall-lambda 0.2,0.4,0.6 --lambda 0.8 -o "$out/$arch-$dt-consensusw.st" $m3
		run $arch-$dt-slerp.st -b $fb -m slerp --t 0.4 --gamma 0.5 \
			-o "$out/$arch-$dt-slerp.st" $GOLDEN_DIR/$arch-$dt/ft1.safetensors
		g=$GOLDEN_DIR/$arch-$dt # not $f: run's loop over a directory output sets it
		run $arch-$dt-nuslerp.st -m nuslerp -w 1,2 -o "$out/$arch-$dt-nuslerp.st" \
			$g/ft1.safetensors $g/ft2.safetensors
		run $arch-$dt-nuslerpb.st -b $fb -m nuslerp -w 2,1 --lines --alpha 0.5 \
			-o "$out/$arch-$dt-nuslerpb.st" $g/ft1.safetensors $g/ft2.safetensors
		run $arch-$dt-stock.st -b $fb -m model_stock --lines --norm l2 \
			-o "$out/$arch-$dt-stock.st" $g/ft1.safetensors $g/ft2.safetensors $g/ft3.safetensors
		run $arch-$dt-ram.st -b $fb -m ram --epsilon 0.003 --lines -o "$out/$arch-$dt-ram.st" $m3
		run $arch-$dt-ramplus.st -b $fb -m ramplus_tl --epsilon 0.002 --ram-r 0.5 --ram-alpha 3 \
			--lambda 0.9 -o "$out/$arch-$dt-ramplus.st" $m3
		g3="$g/ft1.safetensors $g/ft2.safetensors $g/ft3.safetensors"
		run $arch-$dt-della.st -b $fb -m della -w 1,2,0.5 --density 0.3,0.4,0.5 --seed 2 --lines \
			-o "$out/$arch-$dt-della.st" $g3
		run $arch-$dt-dellalin.st -b $fb -m della_linear --rescale --epsilon 0.1 --lambda 0.8 \
			-o "$out/$arch-$dt-dellalin.st" $g3
		run $arch-$dt-sce.st -b $fb -m sce --select-topk 0.4 --lines -o "$out/$arch-$dt-sce.st" $g3
		run $arch-$dt-sce1.st -b $fb -m sce --lambda 0.8 -o "$out/$arch-$dt-sce1.st" $g3
		run $arch-$dt-multislerp.st -m multislerp -w 1,2,3 -o "$out/$arch-$dt-multislerp.st" $g3
		run $arch-$dt-multislerpb.st -b $fb -m multislerp -w 2,1,1 --lines --alpha 0.5 \
			-o "$out/$arch-$dt-multislerpb.st" $g3
		run $arch-$dt-karcher.st -m karcher -o "$out/$arch-$dt-karcher.st" $g3
		run $arch-$dt-karcherb.st -b $fb -m karcher --max-iter 3 --tol 1e-7 --lines \
			-o "$out/$arch-$dt-karcherb.st" $g3
		run $arch-$dt-bc.st -b $fb -m breadcrumbs --density 0.8 --bc-gamma 0.02 --lines \
			-o "$out/$arch-$dt-bc.st" $g3
		run $arch-$dt-bcties.st -b $fb -m breadcrumbs_ties -w 1,2,0.5 --density 0.6,0.8,0.9 \
			--bc-gamma 0.01,0.05,0.02 --lambda 0.9 -o "$out/$arch-$dt-bcties.st" $g3
		run $arch-$dt-passthrough.st -m passthrough --dtype f32 -o "$out/$arch-$dt-passthrough.st" \
			$g/ft1.safetensors
		run $arch-$dt-fusion.st -b $fb -m arcee_fusion -o "$out/$arch-$dt-fusion.st" \
			$g/ft1.safetensors
		run $arch-$dt-fusionl.st -b $fb -m arcee_fusion --lines --alpha auto --beta 0.5 \
			-o "$out/$arch-$dt-fusionl.st" $g/ft2.safetensors
	done
done
