# cluster.sh -- what the tests of the drivers in contrib/ share (sourced
# after lib.sh): a sharded family, the merges they split into parts, the
# run on one machine they are compared with, and the comparison.
contrib=$(cd "${TESTS_SRCDIR:-$(dirname "$0")}/../contrib" && pwd)

# has_part: this lines has --part (the drivers' checks skip without it)
has_part() { "$LINES" merge --help 2>/dev/null | grep -q -- '--part K/M'; }

# cluster_family DIR: a base and three fine-tunes, each split in 3 shards;
# the output is cut in 5 shards (of 40K), so that M = 3 parts get 2, 2, 1
# or so
cluster_family() {
	family "$1" --arch llama --dtype bf16 --layers 4 --hidden 32 --models 3 --seed 18 --shards 3 >/dev/null
}

# merge_args NAME DIR: the arguments of the merge NAME of the family in
# DIR, one a line: plain (sum --lines, alpha = 1/N known: no statistics
# round), sum (weighted: automatic alpha is a round), ties
merge_args() {
	case $1 in
	plain) printf '%s\n' -q -b "$2/base" -m sum --lines --shard-size 40K "$2/ft1" "$2/ft2" "$2/ft3" ;;
	sum) printf '%s\n' -q -b "$2/base" -m sum --lines -w 1,2,1 --shard-size 40K "$2/ft1" "$2/ft2" "$2/ft3" ;;
	ties) printf '%s\n' -q -b "$2/base" -m ties --lines --density 0.3 --shard-size 40K "$2/ft1" "$2/ft2" "$2/ft3" ;;
	esac
}

# refused ARGSFILE: why lines refuses to split this merge in parts (empty
# when it does not)
refused() {
	(
		f=$1
		set --
		while IFS= read -r a; do set -- ${1+"$@"} "$a"; done <"$f"
		"$LINES" merge ${1+"$@"} --part 0/3 -o "$tmp/refused-probe/" -n >/dev/null 2>"$tmp/refused.err" ||
			head -n 1 "$tmp/refused.err" | sed 's/^lines: //'
	)
}

# label NAME: the merge NAME, for the descriptions of the checks
label() {
	case $1 in
	plain) echo "sum --lines" ;;
	sum) echo "sum --lines -w 1,2,1" ;;
	ties) echo "ties --lines" ;;
	esac
}

# rounds_of ARGSFILE: the statistics rounds -n --json announces
rounds_of() {
	(
		f=$1
		set --
		while IFS= read -r a; do set -- ${1+"$@"} "$a"; done <"$f"
		"$LINES" merge ${1+"$@"} --part 0/3 -o "$tmp/refused-probe/" -n --json | jq -r '.part.rounds'
	)
}

# rounds_run STATSDIR: the rounds combined in STATSDIR (rR.json files)
rounds_run() { find "$1" -name 'r[0-9]*.json' ! -name '*-part-*' | wc -l; }

# run_args ARGSFILE COMMAND...: COMMAND with the lines of ARGSFILE appended
run_args() {
	f=$1
	shift
	while IFS= read -r a; do set -- "$@" "$a"; done <"$f"
	"$@"
}

# one_machine ARGSFILE DIR: the merge on one machine, run in DIR as
# `lines merge ... -o out/` (the drivers write DIR2/out/ from DIR2, so that
# the command line README.md records is the same)
one_machine() {
	(
		f=$1 d=$2
		set --
		while IFS= read -r a; do set -- ${1+"$@"} "$a"; done <"$f"
		mkdir -p "$d" && cd "$d" && "$LINES" merge ${1+"$@"} -o out/
	)
}

# same_tree A B: A and B hold the same files (hidden ones too), byte for
# byte; the differences go to stdout as TAP comments
same_tree() {
	(cd "$1" && find . -type f | sort) >"$tmp/tree-a"
	(cd "$2" && find . -type f | sort) >"$tmp/tree-b"
	if ! cmp -s "$tmp/tree-a" "$tmp/tree-b"; then
		diff "$tmp/tree-a" "$tmp/tree-b" | sed 's/^/# /'
		return 1
	fi
	[ -s "$tmp/tree-a" ] || return 1
	st=0
	while IFS= read -r f; do
		cmp -s "$1/$f" "$2/$f" || { echo "# $f differs"; st=1; }
	done <"$tmp/tree-a"
	return $st
}

# failing_lines FILE: a lines in which part 1 of 3 fails when it writes
failing_lines() {
	cat >"$1" <<EOF
#!/bin/sh
case " \$* " in
*" --part 1/3 "*" --stats-out "*) ;;
*" --part 1/3"*) echo "failing-lines: part 1 fails" >&2; exit 1 ;;
esac
exec "$LINES" "\$@"
EOF
	chmod +x "$1"
}
