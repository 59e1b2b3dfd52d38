#!/bin/bash
# lines-slurm-submit.sh -- submit a `lines merge` split into M parts to
# Slurm: per round of whole-model statistics a job array of M tasks
# (--stats-out) and a job that combines them (lines stats); then a job
# array of M tasks that write the shards; then `lines index`. Each job
# starts when the one before has succeeded (--dependency=afterok) and is
# cancelled if it failed (--kill-on-invalid-dep=yes). Prints the id of the
# last job.
#
#   M=3 OUT=merged/ lines-slurm-submit.sh [SBATCH-OPTION...] [-- MERGE-ARGS...]
#
# MERGE-ARGS (the arguments of `lines merge` without -o and --part) are
# written to STATS/args; or give ARGS, a file holding them one a line.
# SBATCH-OPTIONs (--partition, --time, -o ..., or SBATCH_* variables) go to
# every job; --wait waits for the last one and fails unless it completed.
# LINES, STATS and SCRIPT (default: lines-slurm.sbatch beside this script)
# may be set too; see lines-slurm.sbatch.
set -euo pipefail

: "${M:?set M, the number of parts}" "${OUT:?set OUT, the output directory}"
LINES=${LINES:-lines}
STATS=${STATS:-${OUT%/}.stats}
SCRIPT=${SCRIPT:-$(dirname "$0")/lines-slurm.sbatch}

opts=() wait=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do
	case $1 in
	-W | --wait) wait=(--wait) ;;
	*) opts+=("$1") ;;
	esac
	shift
done
if [ $# -gt 0 ]; then
	shift
	args=("$@")
	ARGS=
else
	: "${ARGS:?give the arguments of lines merge after --, or ARGS=FILE}"
	mapfile -t args <"$ARGS"
fi

# the number of statistics rounds, from `-n --json` ("part": {"rounds": R});
# this also checks the arguments before anything is submitted
rounds=${ROUNDS:-$("$LINES" merge "${args[@]}" -o "$OUT" --part "0/$M" -n --json |
	sed -n 's/^ *"rounds": *\([0-9][0-9]*\).*/\1/p' | head -n 1)}
: "${rounds:?cannot read the rounds from lines merge -n --json: set ROUNDS}"

mkdir -p "$STATS"
if [ -z "${ARGS:-}" ]; then
	ARGS=$STATS/args
	printf '%s\n' "${args[@]}" >"$ARGS"
fi
export LINES ARGS OUT STATS M

# sub STEP ROUND SBATCH-OPTION...: submit one step, print its job id
sub() {
	local step=$1 round=$2
	shift 2
	sbatch --parsable --kill-on-invalid-dep=yes --job-name="lines-$step" \
		--export="ALL,LINES_STEP=$step,LINES_ROUND=$round" "${opts[@]}" "$@" "$SCRIPT" | cut -d';' -f1
}

after=()
for ((r = 1; r <= rounds; r++)); do
	job=$(sub stats "$r" --array="0-$((M - 1))" "${after[@]}")
	job=$(sub combine "$r" --dependency="afterok:$job")
	after=(--dependency="afterok:$job")
done
job=$(sub write "$rounds" --array="0-$((M - 1))" "${after[@]}")
job=$(sub index 0 --dependency="afterok:$job" "${wait[@]}")
echo "$job"
# sbatch --wait gives 0 for a job cancelled because a step before it failed
if [ ${#wait[@]} -gt 0 ]; then
	state=$(scontrol -o show job "$job" | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
	if [ "$state" != COMPLETED ]; then
		echo "lines-slurm-submit.sh: job $job (lines index): $state" >&2
		exit 1
	fi
fi
