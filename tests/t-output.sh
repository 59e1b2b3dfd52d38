#!/bin/sh
# t-output.sh -- the output is complete or absent: written under a
# temporary name and renamed, never over an input, removed on errors and on
# SIGINT/SIGTERM (exit 130/143), with the usual file mode.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

family "$tmp/f" --arch t5 --dtype bf16 --layers 2 --hidden 64 --models 2 --seed 9
b=$tmp/f/base.safetensors
m1=$tmp/f/ft1.safetensors
m2=$tmp/f/ft2.safetensors
cp "$m1" "$tmp/m1.orig"

status 2 "an output that is one of the inputs is refused" "$LINES" merge -b "$b" -o "$m1" "$m1" "$m2"
check "... with a clear message" has "$tmp/err" "the output is one of the inputs"
check "... and the input is untouched" cmp -s "$m1" "$tmp/m1.orig"
ln -s "$m1" "$tmp/link.st"
status 2 "a symlink to an input is refused too" "$LINES" merge -b "$b" -o "$tmp/link.st" "$m1" "$m2"
status 2 "the base as output is refused" "$LINES" merge -b "$b" -o "$b" "$m1"
status 2 "--checksum-file naming the output is refused" "$LINES" merge -b "$b" -o "$tmp/c.st" --checksum-file "$tmp/c.st" "$m1" "$m2"
check "... nothing written" test ! -e "$tmp/c.st"
status 2 "--manifest naming the output is refused" "$LINES" merge -b "$b" -o "$tmp/c.st" --manifest "$tmp/./c.st" "$m1" "$m2"
status 2 "--manifest and --checksum-file naming one file are refused" "$LINES" merge -b "$b" -o "$tmp/c.st" --manifest "$tmp/same" --checksum-file "$tmp/same" "$m1" "$m2"
check "... nothing written" sh -c "test ! -e '$tmp/c.st' && test ! -e '$tmp/same'"
family "$tmp/sh" --arch llama --dtype bf16 --layers 2 --hidden 32 --models 1 --seed 6 --shards 2
cp "$tmp/sh/ft1/model.safetensors.index.json" "$tmp/idx.orig"
status 2 "the index of a sharded input (its directory given) as the output is refused" \
	"$LINES" scale -b "$tmp/sh/base" --gamma 0.5 -o "$tmp/sh/ft1/model.safetensors.index.json" "$tmp/sh/ft1"
check "... and the index is untouched, nothing beside it" sh -c \
	"cmp -s '$tmp/sh/ft1/model.safetensors.index.json' '$tmp/idx.orig' && ! ls '$tmp'/sh/ft1/*.xxh128 2>/dev/null"
status 2 "... and the index given as the input" "$LINES" merge -b "$tmp/sh/base/model.safetensors.index.json" \
	-o "$tmp/sh/base/model.safetensors.index.json" "$tmp/sh/ft1"
status 2 "... and as the checksum file" "$LINES" merge -b "$tmp/sh/base" -o "$tmp/x.st" \
	--checksum-file "$tmp/sh/ft1/model.safetensors.index.json" "$tmp/sh/ft1"

"$LINES" merge -q -b "$b" -o "$tmp/d.st" "$m1" "$m2"
cp "$tmp/d.st" "$tmp/d.orig"
rm "$tmp/d.st.xxh128"
mkdir "$tmp/d.st.xxh128"
status 2 "a checksum file's name that is a directory is refused before the run" \
	"$LINES" merge -b "$b" --lambda 0.5 -o "$tmp/d.st" "$m1" "$m2"
check "... and the output and its manifest are the earlier run's" sh -c \
	"cmp -s '$tmp/d.st' '$tmp/d.orig' && test -f '$tmp/d.st.manifest.json'"
status 1 "lines verify: that checksum file is a problem" "$LINES" verify "$tmp/d.st"
rmdir "$tmp/d.st.xxh128"
mkdir "$tmp/d.st.manifest.json.d"
status 2 "a manifest's name that is a directory is refused" \
	"$LINES" merge -b "$b" --manifest "$tmp/d.st.manifest.json.d" -o "$tmp/d.st" "$m1" "$m2"
check "... and the output is the earlier run's" cmp -s "$tmp/d.st" "$tmp/d.orig"

status 1 "--checksum-file in a missing directory fails before the run" \
	"$LINES" merge -b "$b" -o "$tmp/e.st" --checksum-file "$tmp/nodir/e.xxh128" "$m1" "$m2"
status 1 "... and --manifest" "$LINES" merge -b "$b" -o "$tmp/e.st" --manifest "$tmp/nodir/e.json" "$m1" "$m2"
status 1 "... which -n finds too" "$LINES" merge -n -b "$b" -o "$tmp/e.st" --manifest "$tmp/nodir/e.json" "$m1" "$m2"
check "... nothing written" sh -c "! ls '$tmp'/e.st* '$tmp'/.e.st* 2>/dev/null"

# what a killed run leaves (mkostemp's names) goes with the next run of OUT
touch "$tmp/.k.st.lines-AbC123" "$tmp/.k.st.xxh128.lines-XyZ789" "$tmp/.k.st.manifest.json.lines-q1w2e3" \
	"$tmp/.k.st.lines-short" "$tmp/.other.st.lines-AbC123"
status 0 "a run after a killed one" "$LINES" merge -b "$b" -o "$tmp/k.st" "$m1" "$m2"
check "... removes the temporary files it left beside OUT" sh -c \
	"! ls '$tmp'/.k.st.lines-AbC123 '$tmp'/.k.st.xxh128.lines-XyZ789 '$tmp'/.k.st.manifest.json.lines-q1w2e3 2>/dev/null"
check "... and nothing else" test -e "$tmp/.k.st.lines-short" -a -e "$tmp/.other.st.lines-AbC123"
rm -f "$tmp/.k.st.lines-short" "$tmp/.other.st.lines-AbC123"

o=$tmp/out.st
(umask 022 && "$LINES" merge -q -b "$b" -o "$o" "$m1" "$m2")
check "the output has mode 644 under umask 022" test "$(stat -c %a "$o")" = 644
check "no temporary file after success" no_temp "$tmp"
echo "precious" >"$tmp/old.st"
status 1 "a failing merge" "$LINES" merge -b "$b" -o "$tmp/old.st" "$tmp/missing.st"
check "leaves an existing output as it was" sh -c "test \"\$(cat '$tmp/old.st')\" = precious"
"$LINES" merge -q -b "$b" -o "$tmp/old.st" "$m1" "$m2"
check "a successful merge replaces it" cmp -s "$tmp/old.st" "$o"

# a character device or a FIFO is written, not replaced
if [ -c /dev/null ] && [ -w /dev/null ]; then
	status 0 "-o /dev/null works" "$LINES" merge -q -b "$b" -o /dev/null "$m1" "$m2"
	check "... and /dev/null is still a character device" test -c /dev/null
else
	skip "-o /dev/null (2 checks): /dev/null is not a writable character device here"
fi
mkfifo "$tmp/fifo"
cat "$tmp/fifo" >"$tmp/from-fifo" &
catpid=$!
status 0 "-o FIFO writes into the pipe" "$LINES" merge -q -b "$b" -o "$tmp/fifo" "$m1" "$m2"
wait $catpid
check "... the same bytes as a file, and the FIFO stays a FIFO" sh -c "cmp -s '$tmp/from-fifo' '$o' && test -p '$tmp/fifo'"

# interrupt a run in the middle; the hook slows each job down
interrupt() {
	sig=$1
	want=$2
	out=$tmp/int-$sig.st
	echo "precious" >"$out.keep"
	LINES_TEST_JOB_DELAY_US=20000 "$LINES" merge -q -b "$b" --chunk 16K -o "$out" "$m1" "$m2" 2>"$tmp/err" &
	pid=$!
	i=0
	while ! ls -a "$tmp" | grep -q "int-$sig.st.lines-" && [ $i -lt 500 ]; do
		sleep 0.01
		i=$((i + 1))
	done
	sleep 0.1
	kill -s "$sig" $pid
	wait $pid
	st=$?
	ok $((st != want)) "SIG$sig mid-run: exit $want (got $st)"
	check "SIG$sig: no output" test ! -e "$out"
	check "SIG$sig: no temporary file" no_temp "$tmp"
	check "SIG$sig: no message but the signal's" test ! -s "$tmp/err"
}
interrupt INT 130
interrupt TERM 143

done_testing
