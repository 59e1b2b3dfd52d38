#!/bin/sh
# t-sweep.sh -- sweeps: --beta, --lambda, --alpha or --gamma given as a
# list write one output per value from one read of the inputs. Each
# output (its bytes, its .xxh128 and its manifest) is what a run with that
# value alone writes, and verifies; the passes read what a single run's
# read (from --json); the usage errors write nothing; a failure midway
# leaves no output of any value. Values are read with jq from --json.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

family "$tmp/f" --arch llama --dtype bf16 --layers 4 --size 3M --models 3 --seed 7 --specials
cd "$tmp" || exit 99
b=f/base.safetensors
m1=f/ft1.safetensors
m2=f/ft2.safetensors
m3=f/ft3.safetensors

# same_as_single NAME DIR FILE OPT VALUE ARGS...: FILE, the sweep's output for
# --OPT VALUE, against a run of ARGS with that value alone: the same bytes,
# the same manifest but for the file's name, the same checksum, and it verifies
same_as_single() {
	name=$1 dir=$2 file=$3 opt=$4 val=$5
	shift 5
	rm -rf one && mkdir one
	"$LINES" merge -q "$@" --"$opt" "$val" -o one/single.st || { ok 1 "$name: the single run"; return; }
	check "$name, $opt $val: the same bytes as a run with that value alone" cmp -s "$dir/$file" one/single.st
	jq -S 'del(.file)' "$dir/$file.manifest.json" >one/a.mf 2>/dev/null
	jq -S 'del(.file)' one/single.st.manifest.json >one/b.mf 2>/dev/null
	check "$name, $opt $val: ... the same manifest but for the file's name" \
		sh -c "test -s one/a.mf && cmp -s one/a.mf one/b.mf"
	check "$name, $opt $val: ... the same checksum" \
		test "$(cut -d' ' -f1 "$dir/$file.xxh128")" = "$(cut -d' ' -f1 one/single.st.xxh128)"
	check "$name, $opt $val: ... and it verifies" "$LINES" verify -q "$dir/$file"
}

# sweep NAME OPT VALUES ARGS...: a sweep of --OPT VALUES (with --json after
# the run), each output against the single run, and the passes' reads
sweep() {
	name=$1 opt=$2 vals=$3
	shift 3
	rm -rf sw && mkdir sw
	status 0 "$name: a sweep of --$opt $vals" "$LINES" merge -q --json "$@" --"$opt" "$vals" \
		-o "sw/out-$opt{$opt}.st"
	cp "$tmp/out" sw.json
	nv=$(echo "$vals" | tr ',' '\n' | wc -l)
	jqok "$name: --json lists the $nv outputs" ".outputs | length == $nv" sw.json
	jqok "$name: ... and the sweep" ".sweep.option == \"$opt\" and (.sweep.values | length) == $nv" sw.json
	first=$(echo "$vals" | cut -d, -f1)
	"$LINES" merge -q --json "$@" --"$opt" "$first" -o one.st >one.json
	jqok "$name: every pass reads what a single run's reads (the inputs read once)" \
		--slurpfile one one.json \
		'[.passes[] | [.name, .read_bytes, .skipped]] == [$one[0].passes[] | [.name, .read_bytes, .skipped]]' sw.json
	for v in $(echo "$vals" | tr ',' ' '); do
		same_as_single "$name" sw "out-$opt$v.st" "$opt" "$v" "$@"
	done
	check "$name: no temporary file left" no_temp sw
}

# jqok with extra jq arguments before the filter
jqok() {
	if ! command -v jq >/dev/null 2>&1; then
		skip "$1: jq is missing"
		return
	fi
	d=$1
	shift
	jq -e "$@" >/dev/null 2>"$tmp/jqerr"
	ok $? "$d"
	sed 's/^/# /' "$tmp/jqerr"
}

# ---- sum and ties, with LiNeS: four betas; without: lambdas ------------------------------------
sweep "sum --lines" beta 0.1,0.3,0.5,0.7 -b $b --lines $m1 $m2 $m3
sweep "ties --lines, weighted" beta 0.1,0.3,0.5,0.7 -b $b -m ties --lines -w 1,2,0.5 $m1 $m2 $m3
sweep "sum" lambda 0.5,1,1.25 -b $b $m1 $m2 $m3
sweep "ties --trim tensor" lambda 0.3,0.8,1 -b $b -m ties --trim tensor $m1 $m2 $m3
sweep "sum, alpha given" alpha 0.2,0.6 -b $b --lines --beta 0.4 $m1 $m2 $m3
sweep "sum, one model" gamma 0.25,0.75 -b $b $m1

# ---- the same bytes for any -j and --chunk ---------------------------------------------------
rm -rf sj && mkdir sj
"$LINES" merge -q -b $b -m ties --lines -j 1 --chunk 16K --beta 0.1,0.7 -o 'sj/x{beta}.st' $m1 $m2 $m3
"$LINES" merge -q -b $b -m ties --lines -j 2 --beta 0.7 -o sj/one.st $m1 $m2 $m3
check "ties sweep -j 1 --chunk 16K: the same bytes as a single -j 2 run" cmp -s sj/x0.7.st sj/one.st

# ---- every instruction set: sum, ties and dare finish one merged task vector per value ----------
for isa in scalar avx2 avx512 neon; do
	if ! LINES_ISA=$isa "$LINES" --version >/dev/null 2>&1; then
		skip "sweeps with LINES_ISA=$isa: not built or not supported by this CPU"
		continue
	fi
	good=0
	for m in sum ties dare; do
		rm -rf si && mkdir si
		LINES_ISA=$isa "$LINES" merge -q -b $b -m $m --lines -w 1,2,0.5 --beta 0.2,0.9 -o 'si/x{beta}.st' $m1 $m2 $m3
		"$LINES" merge -q -b $b -m $m --lines -w 1,2,0.5 --beta 0.9 -o si/one.st $m1 $m2 $m3
		cmp -s si/x0.9.st si/one.st || good=1
	done
	ok $good "sum, ties and dare sweeps with LINES_ISA=$isa: the same bytes as the single runs"
done

# ---- every method: the core runs each value's work() on the same chunk --------------------------
# every METHOD ARGS...: a sweep of two lambdas against the two single runs
every() {
	name=$1
	shift
	rm -rf ev && mkdir ev
	if ! "$LINES" merge -q "$@" --lambda 0.6,0.9 -o 'ev/x{lambda}.st' 2>ev.err; then
		ok 1 "-m $name: a sweep of --lambda 0.6,0.9"
		sed 's/^/# /' ev.err
		return
	fi
	good=0
	for v in 0.6 0.9; do
		"$LINES" merge -q "$@" --lambda $v -o ev/one.st && cmp -s ev/x$v.st ev/one.st || good=1
		rm -f ev/one.st*
	done
	ok $good "-m $name: a sweep of --lambda writes what the single runs write"
}
every mean -b $b -m mean $m1 $m2 $m3
every dare -b $b -m dare --seed 3 $m1 $m2 $m3
every dare_ties -b $b -m dare_ties --rescale $m1 $m2 $m3
every linear -b $b -m linear -w 1,2,3 $m1 $m2 $m3
every nearswap -b $b -m nearswap --t 0.003 $m1
every consensus -b $b -m consensus $m1 $m2 $m3
every slerp -b $b -m slerp --t 0.3 $m1
every nuslerp -b $b -m nuslerp $m1 $m2
every multislerp -b $b -m multislerp $m1 $m2 $m3
every model_stock -b $b -m model_stock $m1 $m2 $m3
every ram -b $b -m ram $m1 $m2 $m3
every ramplus_tl -b $b -m ramplus_tl $m1 $m2 $m3

# the methods that finish every value from one merged task vector (ties,
# dare): every dtype, the float64 path included
for dt in f16 f32 f64; do
	family "$tmp/g$dt" --arch gpt2 --dtype $dt --layers 3 --hidden 64 --models 2 --seed 9
	every "ties ($dt)" -b g$dt/base.safetensors -m ties --trim tensor g$dt/ft1.safetensors g$dt/ft2.safetensors
	every "dare_ties ($dt)" -b g$dt/base.safetensors -m dare_ties g$dt/ft1.safetensors g$dt/ft2.safetensors
	every "sum ($dt)" -b g$dt/base.safetensors g$dt/ft1.safetensors g$dt/ft2.safetensors
done

# ---- other outputs: directories, .zst, standard input -------------------------------------------
rm -rf dirs && mkdir dirs
status 0 "a sweep into directories of shards" "$LINES" merge -q -b $b -m ties --lines --shard-size 1M \
	--beta 0.2,0.6 -o 'dirs/d-beta{beta}/' $m1 $m2 $m3
"$LINES" merge -q -b $b -m ties --lines --shard-size 1M --beta 0.6 -o dirs/one/ $m1 $m2 $m3
good=0
for f in dirs/one/*; do
	fn=${f##*/}
	case $fn in README.md) continue ;; esac
	cmp -s "$f" "dirs/d-beta0.6/$fn" || good=1
done
ok $good "... every shard, index, manifest and lines_config.yml the same as the single run's"
check "... lines_config.yml records each value's beta" sh -c "grep -q 'beta: 0.6\$' dirs/d-beta0.6/lines_config.yml && grep -q 'beta: 0.2\$' dirs/d-beta0.2/lines_config.yml"
status 2 "--print-config with a sweep: one configuration, exit 2" "$LINES" merge -b $b --lines \
	--beta 0.2,0.6 -o 'x{beta}.st' --print-config $m1 $m2
sed 's|dirs/d-beta0.6/|OUT/|g' dirs/d-beta0.6/README.md >r1
sed 's|dirs/one/|OUT/|g' dirs/one/README.md >r2
check "... the README differs only in the -o it records" cmp -s r1 r2
good=0
for f in dirs/d-beta0.2/model-*.safetensors; do "$LINES" verify -q "$f" || good=1; done
ok $good "... the shards of the other value verify"

rm -rf z && mkdir z
"$LINES" merge -q -b $b --lines --beta 0.1,0.5 -o 'z/x{beta}.st.zst' $m1 $m2 $m3
"$LINES" merge -q -b $b --lines --beta 0.5 -o z/one.st.zst $m1 $m2 $m3
check "a sweep into .zst files: the same bytes" cmp -s z/x0.5.st.zst z/one.st.zst

rm -rf si && mkdir si
status 0 "a sweep with a model on standard input (read once)" sh -c \
	"cat $m2 | '$LINES' merge -q -b $b --lines --beta 0.1,0.5 -o 'si/x{beta}.st' $m1 - $m3"
"$LINES" merge -q -b $b --lines --beta 0.5 -o si/one.st $m1 $m2 $m3
check "... the same bytes" cmp -s si/x0.5.st si/one.st

# ---- -n shows the outputs, and the memory bound counts their buffers ---------------------------
# (sum: its one pass writes, so the writing pass's buffers are the bound; the
# headers' share, measured from the heap, is left out)
status 0 "-n --json of a sweep of 4" "$LINES" merge -n --json -b $b --lines \
	--beta 0.1,0.3,0.5,0.7 -o 'n{beta}.st' $m1 $m2 $m3
cp "$tmp/out" n4.json
"$LINES" merge -n --json -b $b --lines --beta 0.1 -o n.st $m1 $m2 $m3 >n1.json
jqok "... the memory bound grows with the outputs' buffers" --slurpfile one n1.json \
	'.memory_bound - .memory_metadata > $one[0].memory_bound - $one[0].memory_metadata' n4.json
jqok "... lists the outputs" '.outputs == ["n0.1.st", "n0.3.st", "n0.5.st", "n0.7.st"]' n4.json
status 0 "-n of a sweep" "$LINES" merge -n -b $b --lines --beta 0.1,0.3 -o 'n{beta}.st' $m1 $m2
check "... names every output" sh -c "grep -q 'n0.1.st' '$tmp/out' && grep -q 'n0.3.st' '$tmp/out'"
check "... and writes none" test ! -e n0.1.st

# ---- usage errors: exit 2, nothing written -------------------------------------------------------
rm -rf ue && mkdir ue
status 2 "two lists at once" "$LINES" merge -b $b --lines --beta 0.1,0.2 --alpha 0.3,0.4 -o 'ue/x{beta}.st' $m1 $m2
status 2 "a list with -o that has no placeholder" "$LINES" merge -b $b --lines --beta 0.1,0.2 -o ue/x.st $m1 $m2
status 2 "a list with -o -" "$LINES" merge -b $b --lines --beta 0.1,0.2 -o - $m1 $m2
status 2 "a list without -o" "$LINES" merge -b $b --lines --beta 0.1,0.2 $m1 $m2
status 2 "two values with the same name" "$LINES" merge -b $b --lines --beta 0.1,0.1 -o 'ue/x{beta}.st' $m1 $m2
status 2 "a placeholder without a list" "$LINES" merge -b $b --lines --beta 0.1 -o 'ue/x{beta}.st' $m1 $m2
status 2 "a placeholder of another option" "$LINES" merge -b $b --lines --beta 0.1,0.2 -o 'ue/x{alpha}.st' $m1 $m2
status 2 "a list of lambdas with LiNeS" "$LINES" merge -b $b --lines --lambda 0.1,0.2 -o 'ue/x{lambda}.st' $m1 $m2
status 2 "a sweep with --checksum-file" "$LINES" merge -b $b --lines --beta 0.1,0.2 --checksum-file ue/c \
	--manifest ue/m -o 'ue/x{beta}.st' $m1 $m2
: "${GEN_GGUF:=$(dirname "$GEN")/gen-gguf}"
"$GEN_GGUF" --type f16 --layers 2 --hidden 32 --models 1 --seed 1 --out gg >/dev/null 2>&1
status 2 "a sweep into GGUF (one run per value)" "$LINES" scale -b gg/base.gguf --gamma 0.5,0.6 -o 'ue/x{gamma}.gguf' gg/ft1.gguf
status 2 "a value with a leading space (it would name a file)" "$LINES" merge -b $b --lambda ' 0.5',1 -o 'ue/x{lambda}.st' $m1 $m2
status 2 "a gamma out of [0, 1] in the list" "$LINES" merge -b $b --gamma 0.5,1.5 -o 'ue/x{gamma}.st' $m1
check "the usage errors wrote nothing" test -z "$(ls -A ue)"
mkdir -p mixed/x0.2
status 2 "a file for one value and a directory for another" "$LINES" merge -b $b --lines \
	--beta 0.1,0.2 -o 'mixed/x{beta}' $m1 $m2
check "... wrote nothing" test "$(ls -A mixed)" = x0.2

family "$tmp/q" --arch llama --dtype bf16 --layers 2 --hidden 64 --models 2 --seed 3 --fp8 block
rm -rf q8 && mkdir q8
status 2 "--dtype fp8 (each output's scales are its own): refused" "$LINES" merge -b q/base.safetensors \
	--dtype fp8 --lines --beta 0.1,0.2 -o 'q8/x{beta}.st' q/ft1.safetensors q/ft2.safetensors
check "... and nothing written" test -z "$(ls -A q8)"

# ---- a failure midway leaves no output of any value -----------------------------------------------
rm -rf mid && mkdir mid
LINES_TEST_JOB_DELAY_US=5000 "$LINES" merge -q -b $b -m ties --lines --chunk 16K --beta 0.1,0.3,0.5,0.7 \
	-o 'mid/x{beta}.st' $m1 $m2 $m3 2>mid.err &
pid=$!
j=0
while [ "$(find mid -name '*.lines-*' ! -name '*.lines-lock' -size +0c | wc -l)" -lt 4 ] &&
	[ $j -lt 500 ]; do sleep 0.01; j=$((j + 1)); done
kill -s TERM $pid 2>/dev/null
wait $pid
st=$?
ok $((st != 143)) "SIGTERM while the 4 outputs are being written: exit 143 (got $st)"
check "... no output of any value, nor a temporary file" test -z "$(ls -A mid)"

mnt() {
	mkdir -p "$1"
	mount -t tmpfs -o "$2" lines-test "$1" 2>/dev/null
}
trap 'umount "$tmp/full" 2>/dev/null; rm -rf "$tmp"' EXIT
# room for the first outputs, not for all four
if mnt full size=3m; then
	status 1 "a disk that fills up during a sweep: exit 1" "$LINES" merge -b $b -m ties --lines \
		--beta 0.1,0.3,0.5,0.7 -o 'full/x{beta}.st' $m1 $m2 $m3
	check "... says so" has "$tmp/err" "No space left on device"
	check "... and leaves nothing" test -z "$(ls -A full)"
	umount full
else
	skip "a disk that fills up: cannot mount a tmpfs here"
fi

done_testing
