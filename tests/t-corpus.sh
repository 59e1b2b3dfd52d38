#!/bin/sh
# t-corpus.sh -- the malformed-input corpus: gen-corpus writes some 270
# safetensors files and 102 GGUF files (split sets among them) with the verdict of each (the
# reference reader's, or lines' where lines-inspect(1) says it is
# stricter: for GGUF, gguf.md's and llama.cpp's), and every one goes
# through `lines inspect`. An accepted file exits 0; a rejected one exits 1
# with a message that starts with `lines: FILE: ` and says what is wrong.
# A few rejected files are then given to `lines merge`, as the base and as
# a model: exit 1, no output, no temporary file.
#
# The two files with a 100,000,000-byte header take 200 MB and are skipped
# when $tmp has less than 1 GB free or LINES_SKIP_BIG is set.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

CORPUS=$(dirname "$GEN")/gen-corpus
c=$tmp/corpus
tab=$(printf '\t')

# expect NAME: the message substring that verdicts.txt gives NAME
expect() { awk -F "$tab" -v n="$1" '$1 == n { print $3 }' "$c/verdicts.txt"; }

# rejected FILE EXPECT: the last command ($got its exit status) failed
# with 1 and a message on stderr that starts with `lines: FILE: ` and
# contains EXPECT
rejected() {
	[ "$got" -eq 1 ] && [ -n "$2" ] &&
		case $(head -n 1 "$tmp/err") in "lines: $1: "*) true ;; *) false ;; esac &&
		has "$tmp/err" "$2"
}

# report STATUS DESCRIPTION: ok, and the command's stderr as a diagnostic
# when STATUS is not 0
report() {
	ok "$1" "$2"
	if [ "$1" -ne 0 ]; then
		echo "# exit $got"
		sed 's/^/# /' "$tmp/err"
	fi
}

big=
why=
free_kib=$(df -Pk "$tmp" | awk 'NR == 2 { print $4 }')
if [ -n "${LINES_SKIP_BIG:-}" ]; then
	big=--no-big why="LINES_SKIP_BIG is set"
elif [ "${free_kib:-0}" -lt 1048576 ]; then
	big=--no-big why="needs 1 GB free in $tmp, has $((${free_kib:-0} / 1024)) MiB"
fi
"$CORPUS" $big "$c" >/dev/null || { echo "Bail out! gen-corpus failed"; exit 99; }

total=0
while IFS=$tab read -r name verdict msg; do
	total=$((total + 1))
	f=$c/$name
	if [ ! -e "$f" ] && [ -n "$big" ]; then
		skip "$name: $why"
		continue
	fi
	"$LINES" inspect "$f" </dev/null >"$tmp/out" 2>"$tmp/err"
	got=$?
	if [ "$verdict" = accept ]; then
		[ "$got" -eq 0 ] && [ ! -s "$tmp/err" ]
		report $? "accepts $name"
	else
		rejected "$f" "$msg"
		report $? "rejects $name: $msg"
	fi
done <"$c/verdicts.txt"
check "the corpus has at least 60 cases ($total)" test "$total" -ge 60

# ---- the same refusals from lines merge --------------------------------------
family "$tmp/good" --arch llama --dtype bf16 --layers 2 --hidden 16 --models 1 --seed 3
mkdir "$tmp/o"
o=$tmp/o/out.safetensors
for name in len-2^64-1.safetensors len-2^64-8.safetensors offsets-wrap-2^64.safetensors \
	offsets-up-to-2^63-1.safetensors shape-two-dims-of-2^32.safetensors \
	dup-tensor.safetensors nul-escaped-in-name.safetensors deep-100000-as-tensor-entry.safetensors \
	f6-e3m2-five.safetensors zero-past-the-end.safetensors data-truncated-by-one.safetensors \
	g-type-iq2-xxs.gguf g-offset-overlap.gguf g-key-twice.gguf g-data-short-by-one.gguf; do
	f=$c/$name
	want=$(expect "$name")
	"$LINES" merge -b "$f" -o "$o" "$tmp/good/ft1.safetensors" >"$tmp/out" 2>"$tmp/err"
	got=$?
	rejected "$f" "$want"
	report $? "merge refuses $name as the base"
	"$LINES" merge -b "$tmp/good/base.safetensors" -o "$o" "$f" >"$tmp/out" 2>"$tmp/err"
	got=$?
	rejected "$f" "$want"
	report $? "merge refuses $name as a model"
	check "... and leaves no output" test ! -e "$o"
	check "... and no temporary file" no_temp "$tmp/o"
done

done_testing
