#!/bin/sh
# t-engine.sh -- the engine: the same bytes for every -j, --chunk and --io;
# inputs that are truncated or rewritten during a run are reported, never
# crashed on; the progress line on a terminal.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

# CLIP has non-float tensors (the check pass); weights force the norm pass
family "$tmp/f" --arch clip --dtype bf16 --layers 3 --hidden 256 --models 3 --seed 21
b=$tmp/f/base.safetensors
set -- "$tmp/f/ft1.safetensors" "$tmp/f/ft2.safetensors" "$tmp/f/ft3.safetensors"

uring=1
"$LINES" merge -q --io uring -b "$b" -o - "$@" 2>/dev/null >/dev/null || uring=0

"$LINES" merge -q -b "$b" --lines -w 0.5,1,2 -j 1 --io mmap --chunk 64K -o "$tmp/ref.st" "$@"
for io in mmap uring; do
	if [ $io = uring ] && [ $uring = 0 ]; then
		skip "identical output with --io uring, -j 1/2/4 and --chunk 64K/1M/16M: io_uring is not available here"
		continue
	fi
	for j in 1 2 4; do
		for chunk in 64K 1M 16M; do
			"$LINES" merge -q -b "$b" --lines -w 0.5,1,2 -j $j --io $io --chunk $chunk -o "$tmp/o.st" "$@"
			check "identical output: --io $io -j $j --chunk $chunk" cmp -s "$tmp/ref.st" "$tmp/o.st"
		done
	done
done
if [ $uring = 1 ]; then
	"$LINES" merge -q -b "$b" --lines -w 0.5,1,2 --io uring --direct -o "$tmp/o.st" "$@"
	check "identical output: --io uring --direct" cmp -s "$tmp/ref.st" "$tmp/o.st"
	"$LINES" merge -q -b "$b" --lines -w 0.5,1,2 --direct -o "$tmp/o.st" "$@"
	check "identical output: --direct with the default reader" cmp -s "$tmp/ref.st" "$tmp/o.st"
else
	skip "identical output with --direct (io_uring reads): io_uring is not available here"
fi
status 2 "--direct with --io mmap is a usage error" "$LINES" merge -b "$b" --io mmap --direct -o "$tmp/x.st" "$@"
status 0 "the plan names the reader" "$LINES" merge -n -b "$b" --io mmap -o "$tmp/x.st" "$@"
check "... mmap" has "$tmp/out" "mmap reads"

# ---- an input truncated in the middle of a run ----------------------------------
truncated() {
	io=$1
	cp "$tmp/f/ft2.safetensors" "$tmp/victim.st"
	LINES_TEST_JOB_DELAY_US=3000 "$LINES" merge -q --io "$io" --chunk 16K -b "$b" \
		-o "$tmp/t.st" "$tmp/f/ft1.safetensors" "$tmp/victim.st" 2>"$tmp/err" &
	pid=$!
	sleep 0.3
	truncate -s 100000 "$tmp/victim.st"
	wait $pid
	st=$?
	ok $((st != 1)) "--io $io: an input truncated during the run: exit 1 (got $st)"
	check "--io $io: ... the message says what happened" \
		grep -q 'shorter\|changed during the run' "$tmp/err"
	check "--io $io: ... no output" test ! -e "$tmp/t.st"
	check "--io $io: ... no temporary file" no_temp "$tmp"
}
truncated mmap
if [ $uring = 1 ]; then
	truncated uring
else
	skip "--io uring: an input truncated during the run: io_uring is not available here"
fi

# ---- an input rewritten in place during the run -------------------------------------
cp "$tmp/f/ft2.safetensors" "$tmp/victim.st"
LINES_TEST_JOB_DELAY_US=3000 "$LINES" merge -q --chunk 16K -b "$b" \
	-o "$tmp/t.st" "$tmp/f/ft1.safetensors" "$tmp/victim.st" 2>"$tmp/err" &
pid=$!
sleep 0.3
printf 'x' | dd of="$tmp/victim.st" bs=1 seek=4000000 conv=notrunc 2>/dev/null
wait $pid
st=$?
ok $((st != 1)) "an input rewritten during the run: exit 1 (got $st)"
check "... reported as changed" has "$tmp/err" "changed during the run"
check "... no output" test ! -e "$tmp/t.st"

# ---- progress on a terminal --------------------------------------------------------
if command -v script >/dev/null 2>&1; then
	LINES_TEST_JOB_DELAY_US=2000 script -qec "'$LINES' merge -b '$b' --chunk 16K -o '$tmp/p.st' $*" /dev/null >"$tmp/tty" 2>&1
	check "a terminal gets a progress line with its rate (GB/s, or MB/s below 1 GB/s) and ETA" sh -c "grep -qE '[0-9] [GM]B/s' '$tmp/tty' && grep -q 'ETA' '$tmp/tty'"
	LINES_TEST_JOB_DELAY_US=2000 script -qec "'$LINES' merge -q -b '$b' --chunk 16K -o '$tmp/p.st' $*" /dev/null >"$tmp/tty" 2>&1
	check "-q silences it" sh -c "! grep -q 'GB/s' '$tmp/tty'"
else
	skip "a terminal gets a progress line: script(1) is missing"
	skip "-q silences the progress line: script(1) is missing"
fi
"$LINES" merge -b "$b" --chunk 16K -o "$tmp/p.st" "$@" 2>"$tmp/err"
check "no progress line when stderr is not a terminal" sh -c "! grep -q 'GB/s' '$tmp/err'"

done_testing
