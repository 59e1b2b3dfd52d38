#!/bin/bash
# lines-parallel.sh -- one `lines merge` split into M parts run by GNU
# parallel, on this machine (-j N) or over ssh (-S host1,host2,...: every
# host sees the same paths, the output and statistics directories shared).
#
#   lines-parallel.sh [-j N] [-S LOGINS] [-M PARTS] [-s STATSDIR] -o OUT/ -- MERGE-ARGS...
#
# MERGE-ARGS are those of `lines merge` without -o, --part, --stats and
# --stats-out. The steps are those `lines merge ... --part 0/M -n` prints:
# per round of whole-model statistics (automatic alpha, ...), every part
# measures its share (--stats-out) and `lines stats` combines them; then
# every part writes its shards (--stats with the last round); then
# `lines index OUT/` checks them and writes the index. A step that fails
# stops the run; running the script again redoes every step and gives the
# same bytes. LINES names the binary (default: lines, on every host);
# options of parallel itself go in $PARALLEL (e.g. PARALLEL=--retries=3).
set -euo pipefail

LINES=${LINES:-lines}
jobs='' logins='' m=3 out='' stats=''
while getopts j:S:M:s:o: opt; do
	case $opt in
	j) jobs=$OPTARG ;;
	S) logins=$OPTARG ;;
	M) m=$OPTARG ;;
	s) stats=$OPTARG ;;
	o) out=$OPTARG ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
if [ -z "$out" ] || [ $# -eq 0 ]; then
	echo "usage: lines-parallel.sh [-j N] [-S LOGINS] [-M PARTS] [-s STATSDIR] -o OUT/ -- MERGE-ARGS..." >&2
	exit 2
fi
stats=${stats:-${out%/}.stats}
args=("$@" -o "$out")

# the number of statistics rounds of this plan, from `-n --json` ("part":
# {"rounds": R}); ROUNDS in the environment overrides it
rounds=${ROUNDS:-$("$LINES" merge "${args[@]}" --part "0/$m" -n --json |
	sed -n 's/^ *"rounds": *\([0-9][0-9]*\).*/\1/p' | head -n 1)}
: "${rounds:?cannot read the rounds from lines merge -n --json: set ROUNDS}"

# par COMMAND...: run COMMAND for K = 0..M-1 ({} is K); -q quotes every word
# for the remote shell, --halt stops the others when one fails
par() {
	local opts=(-q --halt 'now,fail=1')
	[ -n "$jobs" ] && opts+=(-j "$jobs")
	[ -n "$logins" ] && opts+=(--sshlogin "$logins" --workdir "$PWD")
	parallel "${opts[@]}" "$@" ::: $(seq 0 $((m - 1)))
}

mkdir -p "$stats"
with=()
for ((r = 1; r <= rounds; r++)); do
	par "$LINES" merge "${args[@]}" --part "{}/$m" "${with[@]}" --stats-out "$stats/r$r-part-{}.json"
	parts=()
	for ((k = 0; k < m; k++)); do parts+=("$stats/r$r-part-$k.json"); done
	"$LINES" stats "${parts[@]}" -o "$stats/r$r.json"
	with=(--stats "$stats/r$r.json")
done
par "$LINES" merge "${args[@]}" --part "{}/$m" "${with[@]}"
"$LINES" index "$out"
