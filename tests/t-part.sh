#!/bin/sh
# t-part.sh -- partitioned runs (--part K/M): every step that
# `lines merge -n --json --part 0/M` lists, run by shell loops (parts in
# order, in reverse order, one part killed and rerun) and by GNU parallel,
# gives an output directory whose every file is byte-identical to the
# one-machine run; the refusals (stats of another plan, missing,
# duplicate or mixed-round parts, --part with -o - or a file, K >= M)
# exit non-zero and leave nothing that lines index accepts.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

command -v jq >/dev/null 2>&1 || { echo "1..0 # SKIP jq is missing"; exit 0; }
case $LINES in /*) ;; *) LINES=$(pwd)/$LINES ;; esac
family "$tmp/fam" --arch llama --dtype bf16 --layers 4 --hidden 32 --models 3 --seed 8 --shards 3
# F32 values: TIES's thresholds fall inside their bins, and elements stay
# open until the threshold pass's counts are combined (records)
family "$tmp/f32" --arch llama --dtype f32 --layers 4 --hidden 48 --models 3 --seed 4 --shards 2
cd "$tmp" || exit 99

# every step of the plan for M parts, "GROUP<tab>COMMAND" a line, lines
# replaced by $LINES; a group is the parts of one step
steps() { # DIR M ARGS...
	d=$1 m=$2
	shift 2
	(cd "$d" && "$LINES" merge -q -n --json --part 0/"$m" "$@") >"$d/plan.json" || return 1
	jq -r '.part.steps[] | "\(.step)\(.round // "")\t\(.command)"' "$d/plan.json" |
		sed "s|	lines |	\"$LINES\" |"
}

# run_steps DIR M ORDER ARGS...: in DIR, the steps; a group's parts in
# ORDER: fwd, rev, kill (the first part of the writing step killed by
# SIGKILL while it writes, lines index refused, then the part rerun), or
# parallel (GNU parallel -j 3)
run_steps() {
	d=$1 m=$2 order=$3
	shift 3
	mkdir -p "$d"
	steps "$d" "$m" "$@" >"$d/steps" || return 1
	cut -f1 "$d/steps" | uniq >"$d/groups"
	while read -r g; do
		awk -F '	' -v g="$g" '$1 == g {print $2}' "$d/steps" >"$d/group"
		case $order in
		rev) tac "$d/group" >"$d/run" ;;
		*) cp "$d/group" "$d/run" ;;
		esac
		if [ "$order" = kill ] && [ "$g" = write ]; then
			first=$(head -n 1 "$d/run")
			(cd "$d" && LINES_TEST_JOB_DELAY_US=100000 timeout -s KILL 0.5 sh -c "exec $first" 2>/dev/null)
			[ $? -eq 137 ] || { echo "# the part was not killed"; return 1; }
			sed 1d "$d/run" >"$d/run2"
			(cd "$d" && sh -e run2) || return 1
			(cd "$d" && "$LINES" index -q out/ 2>/dev/null) && { echo "# index took a killed part"; return 1; }
			(cd "$d" && sh -c "$first") || return 1
			continue
		fi
		if [ "$order" = parallel ]; then
			(cd "$d" && parallel -j 3 --halt now,fail=1 <run) || return 1
		else
			(cd "$d" && sh -e run) || return 1
		fi
	done <"$d/groups"
}

# same OUT1 OUT2: the same files, byte for byte (hidden ones included)
same() { diff -r "$1" "$2" >/dev/null && ! ls -A "$2" | grep -q '^\.'; }

# the cases: FAMILY|ENV|ARGS (ENV for the one-machine run: the TIES
# sample's ways, which must give the bytes the parts give)
cases='fam||-m sum --lines -w 1,2,0.5
fam||-m sum --lines --alpha 0.3 -w 1,2,0.5
fam||-m mean --lines -w 1,3,2
fam||-m linear --lines -w 2,1,1
fam||-m slerp --t 0.3 --lines --alpha 0.5
fam||-m dare --density 0.6 --seed 7 --rescale --lines --alpha 0.4 -w 1,2,1
fam||-m ties --lines
f32||-m ties --lines -w 1,2,1 --density 0.3
f32|LINES_TEST_TIES_SAMPLE=predict|-m ties --lines -w 1,2,1 --density 0.3
f32|LINES_TEST_TIES_SAMPLE=off|-m ties --lines --density 0.25 --alpha 0.7
fam||-m breadcrumbs --lines -w 1,2,1 --density 0.8
f32||-m breadcrumbs_ties --lines -w 1,1,2
f32||-m dare_ties --lines --density 0.5 --seed 3
fam||-m dare --lines -w 1,2,1 --density 0.6 --rescale
f32||-m ties --trim tensor --lines -w 1,2,1 --density 0.3'
n_case=0
echo "$cases" >cases
while IFS='|' read -r fam env args; do
	n_case=$((n_case + 1))
	set -- $args
	case $args in *slerp*) models="../fam/ft1" ;; *) models="../fam/ft1 ../fam/ft2 ../fam/ft3" ;; esac
	mkdir -p "c$n_case/ref"
	ln -s "../$fam" "c$n_case/fam"
	# shellcheck disable=SC2086
	(cd "c$n_case/ref" && env $env "$LINES" merge -q -b ../fam/base "$@" --shard-size 40K -o out/ $models) ||
		{ echo "Bail out! the one-machine run failed: $args"; exit 99; }
	# shellcheck disable=SC2086
	rounds=$(cd "c$n_case/ref" && "$LINES" merge -q -n --json --part 0/2 -b ../fam/base "$@" --shard-size 40K -o out2/ $models | jq .part.rounds)
	for m in 1 2 3 5; do
		# LINES_SKIP_SLOW (CI's distcheck and sanitizer runs): M = 3 only
		if [ -n "${LINES_SKIP_SLOW:-}" ] && [ "$m" != 3 ]; then
			skip "$fam $env $args, M = $m: LINES_SKIP_SLOW is set (M = 3 runs)"
			continue
		fi
		for order in fwd rev kill parallel; do
			[ "$order" = kill ] && [ "$m" != 3 ] && continue
			[ "$order" = parallel ] && [ "$m" != 3 ] && continue
			if [ "$order" = parallel ] && ! command -v parallel >/dev/null 2>&1; then
				skip "$args, M = $m with GNU parallel: parallel(1) is missing (apt-get install parallel)"
				continue
			fi
			d="c$n_case/$m-$order"
			# shellcheck disable=SC2086
			if run_steps "$d" "$m" "$order" -b ../fam/base "$@" --shard-size 40K -o out/ $models; then
				check "$fam $env $args ($rounds round(s) of statistics), M = $m, $order: every file as one machine's" same "c$n_case/ref/out" "$d/out"
			else
				ok 1 "$fam $args, M = $m, $order: the steps ran"
			fi
		done
	done
done <cases
check "TIES with global trim takes two rounds of statistics" test "$(jq .part.rounds c7/3-fwd/plan.json)" = 2
check "... and on F32 the second round carries the open elements" test "$(jq '.results[1].records | length' c8/3-fwd/out.stats/r2.json)" -gt 0

# ---- -n and --json describe the part ------------------------------------------------------
A="-b fam/base -m sum --lines -w 1,2,0.5 --shard-size 40K -o o/ fam/ft1 fam/ft2 fam/ft3"
# shellcheck disable=SC2086
status 0 "-n --json --part 1/3" "$LINES" merge -n --json --part 1/3 $A
jqok "... its shard, the rounds, the steps (3 map, 1 reduce, 3 writes, 1 index)" \
	'.part.k == 1 and .part.m == 3 and .part.shards == ["model-00002-of-00003.safetensors"] and .part.rounds == 1 and ([.part.steps[].step] == ["stats","stats","stats","combine","write","write","write","index"]) and .part.output_bytes > 0'
# shellcheck disable=SC2086
status 0 "-n --part 4/5: more parts than shards" "$LINES" merge -n --json --part 4/5 $A
jqok "... a part with no shard" '.part.shards == [] and .part.ntensors == 0'
# shellcheck disable=SC2086
status 0 "-n (text) prints the steps" "$LINES" merge -n --part 0/2 $A
check "... the reduce and the index" sh -c "grep -q 'lines stats o.stats/r1-part-\*.json -o o.stats/r1.json' '$tmp/out' && grep -q 'lines index o/' '$tmp/out'"

# ---- refusals ----------------------------------------------------------------------------------
# shellcheck disable=SC2086
for k in 0 1 2; do "$LINES" merge -q --part $k/3 $A --stats-out st/p$k.json || echo "Bail out! stats"; done
B="-b fam/base -m sum --lines -w 1,2,0.7 --shard-size 40K -o o/ fam/ft1 fam/ft2 fam/ft3"
# shellcheck disable=SC2086
for k in 0 1 2; do "$LINES" merge -q --part $k/3 $B --stats-out sb/p$k.json || echo "Bail out! stats"; done
shard=$(ls fam/ft1/*.safetensors | head -n 1)
cp "$shard" "$tmp/shard.orig"
# shellcheck disable=SC2086
status 2 "--stats-out naming an input (a shard of a model) is refused" "$LINES" merge -q --part 0/3 $A --stats-out "$shard"
check "... and the input is untouched" cmp -s "$shard" "$tmp/shard.orig"
cp st/p0.json "$tmp/p0.orig"
status 2 "lines stats -o naming one of its statistics files is refused" "$LINES" stats -o st/p0.json st/p2.json st/p0.json st/p1.json
check "... and that file is untouched" cmp -s st/p0.json "$tmp/p0.orig"
status 0 "lines stats combines parts 0, 1, 2" "$LINES" stats -o st/all.json st/p2.json st/p0.json st/p1.json
status 2 "a missing part is refused" "$LINES" stats -o st/x.json st/p0.json st/p2.json
check "... and writes nothing" test ! -e st/x.json
status 2 "a part given twice is refused" "$LINES" stats -o st/x.json st/p0.json st/p1.json st/p1.json st/p2.json
status 2 "a part of another plan (other weights) is refused" "$LINES" stats -o st/x.json st/p0.json sb/p1.json st/p2.json
check "... and writes nothing" test ! -e st/x.json
jq '.round = 2' st/p1.json >st/p1r2.json
status 2 "a part of another round is refused" "$LINES" stats -o st/x.json st/p0.json st/p1r2.json st/p2.json
# shellcheck disable=SC2086
status 2 "--stats of another plan (other options) is refused" "$LINES" merge -q --part 0/3 $B --stats st/all.json
C="-b fam/base -m sum --lines -w 1,2,0.5 --shard-size 40K -o o/ fam/ft1 fam/ft3 fam/ft2"
# shellcheck disable=SC2086
status 2 "--stats of another plan (other inputs) is refused" "$LINES" merge -q --part 0/3 $C --stats st/all.json
# shellcheck disable=SC2086
status 2 "--stats of one part, not combined, is refused" "$LINES" merge -q --part 0/3 $A --stats st/p0.json
# shellcheck disable=SC2086
status 2 "writing without the statistics it needs is refused" "$LINES" merge -q --part 0/3 $A
# shellcheck disable=SC2086
status 2 "--stats-out when --stats holds every round is refused" "$LINES" merge -q --part 0/3 $A --stats st/all.json --stats-out st/again.json
check "nothing was written under o/" test ! -e o
D="-b fam/base -m sum --lines --alpha 0.5 fam/ft1 fam/ft2"
# shellcheck disable=SC2086
status 2 "--part with -o - is refused" "$LINES" merge -q --part 0/2 $D -o -
# shellcheck disable=SC2086
status 2 "--part with a file output is refused" "$LINES" merge -q --part 0/2 $D -o f.safetensors
check "... and writes nothing" test ! -e f.safetensors
# shellcheck disable=SC2086
status 2 "--part 2/2 (K >= M) is refused" "$LINES" merge -q --part 2/2 $D -o p/
# shellcheck disable=SC2086
status 2 "--part 0/0 is refused" "$LINES" merge -q --part 0/0 $D -o p/
# shellcheck disable=SC2086
status 2 "--part 1 (not K/M) is refused" "$LINES" merge -q --part 1 $D -o p/
# shellcheck disable=SC2086
status 2 "--stats without --part is refused" "$LINES" merge -q $D --stats st/all.json -o p/
# shellcheck disable=SC2086
status 2 "-m consensus --consensus-over ties with --part is refused" "$LINES" merge -q -m consensus --consensus-over ties --part 0/2 -b fam/base --lines --alpha 0.5 fam/ft1 fam/ft2 -o p/
# shellcheck disable=SC2086
status 2 "-m della with --part is refused (not yet in parts)" "$LINES" merge -q -m della --part 0/2 -b fam/base --lines --alpha 0.5 fam/ft1 fam/ft2 -o p/
# shellcheck disable=SC2086
status 2 "-m ties on F64 tensors with --part is refused" "$LINES" merge -q -m ties --dtype f64 --part 0/2 -b fam/base --lines fam/ft1 fam/ft2 -o p/
# shellcheck disable=SC2086
status 2 "a sweep with --part is refused (one value at a time)" "$LINES" merge -q --part 0/2 -b fam/base -m sum --lines --beta 0.2,0.6 fam/ft1 fam/ft2 -o 'sw{beta}/'
check "... and writes nothing" sh -c '! ls -d sw* 2>/dev/null'
# a part into a finished model of another run, or into other files:
# refused, the model left as it was (its shards would mix two merges)
# shellcheck disable=SC2086
"$LINES" merge -q $D --shard-size 40K -o done/
cp -r done done.before
# shellcheck disable=SC2086
status 2 "--part into an assembled model's directory is refused" "$LINES" merge -q --part 0/3 -b fam/base -m sum --lines --alpha 0.4 fam/ft1 fam/ft2 --shard-size 40K -o done/
check "... and leaves it as it was" diff -r done done.before
mkdir other && echo x >other/model-00001-of-00004.safetensors
# shellcheck disable=SC2086
status 2 "--part into a directory of other files is refused" "$LINES" merge -q --part 0/3 $D --shard-size 40K -o other/
check "... and leaves them" sh -c 'test "$(cat other/model-00001-of-00004.safetensors)" = x && test "$(ls -A other | wc -l)" = 1'
# a part with no shard (more parts than shards): nothing to write, and no
# claim about the whole model (every task vector zero) from the nothing it read
# shellcheck disable=SC2086
status 0 "a part with no shard succeeds" "$LINES" merge --part 19/20 $D --shard-size 40K -o few/
check "... writes no shard" sh -c '! ls few/*.safetensors 2>/dev/null'
check "... and warns of nothing" sh -c "! grep -q warning '$tmp/err'"
# (a plan that fails before its method is set up frees no method state:
# consensus over TIES read its options through an unset context)
# shellcheck disable=SC2086
status 2 "-m consensus --consensus-over ties with --zstd-level and -o DIR/: a usage error, no crash" "$LINES" merge -q -m consensus --consensus-over ties -b fam/base --lines --alpha 0.5 fam/ft1 fam/ft2 -o p/ --zstd-level 3
check "nothing was written under p/" test ! -e p
# one part of two written: lines index refuses
# shellcheck disable=SC2086
"$LINES" merge -q --part 0/2 $D --shard-size 40K -o half/
status 1 "lines index with a part missing fails" "$LINES" index half/
check "... and assembles nothing (no README.md, no index)" test ! -e half/README.md -a ! -e half/model.safetensors.index.json
# a damaged shard
# shellcheck disable=SC2086
"$LINES" merge -q --part 1/2 $D --shard-size 40K -o half/
printf 'x' | dd of=half/model-00001-of-00003.safetensors bs=1 seek=200 conv=notrunc 2>/dev/null
status 1 "lines index with a damaged shard fails" "$LINES" index half/
check "... and assembles nothing" test ! -e half/README.md
# shellcheck disable=SC2086
"$LINES" merge -q --part 0/2 $D --shard-size 40K -o half/
status 0 "the part rerun: lines index assembles" "$LINES" index half/
check "... and says so, one line on standard error" sh -c "test \$(wc -l <'$tmp/err') = 1"
# shellcheck disable=SC2086
"$LINES" merge -q $D --shard-size 40K -o whole/
check "... as the one-machine run (but its -o)" sh -c "diff -r -x README.md half whole >/dev/null"
cp -R half half.before
status 0 "lines index again (a scheduler's retry): exit 0" "$LINES" index half/
check "... and nothing changes" sh -c "diff -r half half.before >/dev/null"
status 0 "lines index -q again: exit 0" "$LINES" index -q half/
check "... and prints nothing" test ! -s "$tmp/err"
status 1 "lines index on a directory that no part wrote" "$LINES" index whole.nothing/
# the index cannot be put in place (a directory has its name): exit 1
# (lines index freed a name twice there)
for k in 0 1; do
	# shellcheck disable=SC2086
	"$LINES" merge -q --part $k/2 $D --shard-size 40K -o hx/ || echo "Bail out! part"
done
mkdir hx/model.safetensors.index.json
status 1 "lines index whose index file cannot be written: exit 1" "$LINES" index hx/
check "... and writes no README.md" test ! -e hx/README.md
# shellcheck disable=SC2086
"$LINES" merge -q --part 0/2 $D --shard-size 40K -o other/
# shellcheck disable=SC2086
status 2 "parts of two plans in one directory are refused" "$LINES" merge -q --part 1/2 -b fam/base -m sum --lines --alpha 0.6 fam/ft1 fam/ft2 --shard-size 40K -o other/

# a shard of another plan (another alpha) copied in: lines index names it,
# assembles nothing
for k in 0 1 2; do
	# shellcheck disable=SC2086
	"$LINES" merge -q --part $k/3 -b fam/base -m sum --lines --alpha 0.4 --shard-size 40K -o pa/ fam/ft1 fam/ft2 ||
		echo "Bail out! part"
	# shellcheck disable=SC2086
	"$LINES" merge -q --part $k/3 -b fam/base -m sum --lines --alpha 0.5 --shard-size 40K -o pb/ fam/ft1 fam/ft2 ||
		echo "Bail out! part"
done
sh1=$(cd pa && ls model-*-of-*.safetensors | head -n 1)
cp "pb/$sh1" "pb/$sh1.xxh128" "pb/$sh1.manifest.json" pa/
status 1 "lines index with a shard of another plan (its own checksums fine): exit 1" "$LINES" index pa/
check "... names the shard" grep -q "$sh1: " "$tmp/err"
check "... and assembles nothing" test ! -e pa/README.md

# a second run of a part stopped while it waits for the first run's lock
# leaves the first run's files alone, and the first run finishes
LK="-b fam/base -m sum --lines --alpha 0.4 --shard-size 40K -o lk/ fam/ft1 fam/ft2 fam/ft3"
# shellcheck disable=SC2086
LINES_TEST_JOB_DELAY_US=200000 "$LINES" merge -q --part 1/3 $LK --chunk 16K &
p1=$!
i=0
while [ ! -d lk/.lines-part-1 ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
# shellcheck disable=SC2086
"$LINES" merge -v --part 1/3 $LK 2>lk2.err &
p2=$!
i=0 # its note that it waits (or 10 s)
while ! grep -q "waiting" lk2.err 2>/dev/null && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
kill -TERM $p2
wait $p2
rc2=$?
wait $p1
rc1=$?
check "a second run of a part, stopped while it waits for the lock: exit 143" test $rc2 -eq 143
check "... and the first run finishes its part: exit 0" test $rc1 -eq 0
check "... with its shards written" sh -c "ls lk/model-*-of-*.safetensors >/dev/null 2>&1"

done_testing
