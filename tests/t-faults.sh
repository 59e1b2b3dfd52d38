#!/bin/sh
# t-faults.sh -- faults from outside: a full disk, a read-only output
# directory, signals at random moments (SIGKILL included), a reader that
# goes away, 64 inputs at once, a header of 100,000 tensors. In every case
# a clear message, the documented exit status, no file left under OUT, and
# the inputs exactly as they were (checksummed before and after).
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"

family "$tmp/f" --arch llama --dtype bf16 --layers 4 --hidden 128 --models 2 --seed 12
cd "$tmp" || exit 99
b=f/base.safetensors
m1=f/ft1.safetensors
m2=f/ft2.safetensors
before=$(cksum $b $m1 $m2)
"$LINES" merge -q -b $b --lines -o ref.safetensors $m1 $m2

# mnt DIR OPTS: a small tmpfs of our own (root, and a kernel that lets us)
mnt() {
	mkdir -p "$1"
	mount -t tmpfs -o "$2" lines-test "$1" 2>/dev/null
}
cleanup_mounts() { for d in full ro; do umount "$tmp/$d" 2>/dev/null; done; }
trap 'cleanup_mounts; rm -rf "$tmp"' EXIT

# ---- a full disk ------------------------------------------------------------------------
if mnt full size=256k; then
	status 1 "a full disk: exit 1" "$LINES" merge -b $b --lines -o full/m.safetensors $m1 $m2
	check "... says so" has "$tmp/err" "No space left on device"
	check "... and leaves nothing on it" test -z "$(ls -A full)"
	status 1 "a full disk under a directory output: exit 1" "$LINES" merge -b $b --lines -o full/dir/ $m1 $m2
	check "... and leaves nothing on it" test -z "$(ls -A full)"
	umount full
else
	skip "a full disk: cannot mount a tmpfs here"
fi

# ---- an output directory that cannot be written -----------------------------------------
if mnt ro ro,size=1m; then
	status 1 "a read-only output directory: exit 1" "$LINES" merge -b $b --lines -o ro/m.safetensors $m1 $m2
	check "... with the reason" has "$tmp/err" "Read-only file system"
	umount ro
elif [ "$(id -u)" != 0 ]; then
	mkdir locked && chmod 555 locked
	status 1 "an output directory without write permission: exit 1" "$LINES" merge -b $b -o locked/m.safetensors $m1 $m2
	check "... with the reason" has "$tmp/err" "Permission denied"
else
	skip "a read-only directory: cannot mount one here (and root ignores modes)"
fi

# ---- SIGINT and SIGTERM at random moments --------------------------------------------------
i=0
while [ $i -lt 8 ]; do
	sig=INT want=130
	[ $((i % 2)) = 1 ] && sig=TERM want=143
	LINES_TEST_JOB_DELAY_US=2000 "$LINES" merge -q -b $b --lines --chunk 16K -o sig.safetensors $m1 $m2 2>sig.err &
	pid=$!
	sleep "0.$(awk -v s=$i 'BEGIN {srand(s * 7 + 1); printf "%02d", int(rand() * 40)}')"
	kill -s $sig $pid 2>/dev/null
	wait $pid
	st=$?
	if [ $st = 0 ]; then # finished before the signal: then it is whole
		ok $(cmp -s sig.safetensors ref.safetensors; echo $?) "SIG$sig #$i: finished first, and the output is whole"
	else
		ok $((st != want)) "SIG$sig #$i at a random moment: exit $want (got $st)"
		check "SIG$sig #$i: no output" test ! -e sig.safetensors
	fi
	check "SIG$sig #$i: no temporary file" no_temp .
	rm -f sig.safetensors sig.safetensors.*
	i=$((i + 1))
done

# ---- SIGKILL: nothing can clean up, and the next run must not mind ----------------------------
LINES_TEST_JOB_DELAY_US=5000 "$LINES" merge -q -b $b --lines --chunk 16K -o killed.safetensors $m1 $m2 &
pid=$!
j=0
while ! ls -a | grep -q 'killed.safetensors.lines-' && [ $j -lt 300 ]; do sleep 0.01; j=$((j + 1)); done
kill -9 $pid
wait $pid 2>/dev/null
check "SIGKILL: no output under the final name" test ! -e killed.safetensors
check "SIGKILL: a stale temporary file is left (nothing could remove it)" sh -c "ls -a | grep -q 'killed.safetensors.lines-'"
status 0 "the next run, stale file and all, succeeds" "$LINES" merge -q -b $b --lines -o killed.safetensors $m1 $m2
check "... with the right bytes" cmp -s killed.safetensors ref.safetensors
status 0 "... that verify" "$LINES" verify -q killed.safetensors
rm -f .killed.safetensors.lines-*

# ---- the reader of standard output goes away ------------------------------------------------
mkfifo pipe
"$LINES" merge -b $b --lines -o pipe $m1 $m2 2>epipe.err &
pid=$!
head -c 1000 pipe >/dev/null
wait $pid
st=$?
ok $((st != 141)) "a reader that goes away: exit 141 (got $st)"
check "... and not a word" test ! -s epipe.err
"$LINES" merge -b $b --lines -o - $m1 $m2 2>epipe2.err >pipe &
pid=$!
head -c 1000 pipe >/dev/null
wait $pid
st=$?
ok $((st != 141)) "the same through -o -: exit 141 (got $st)"

# ---- 64 inputs at once ------------------------------------------------------------------------
family "$tmp/wide" --arch gpt2 --dtype f16 --layers 2 --hidden 16 --models 64 --seed 3
set --
i=1
while [ $i -le 64 ]; do set -- "$@" wide/ft$i.safetensors; i=$((i + 1)); done
status 0 "64 models at once" "$LINES" merge -q -b wide/base.safetensors --lines -o wide.safetensors "$@"
status 0 "... the output verifies" "$LINES" verify -q wide.safetensors
status 0 "... with TIES too" "$LINES" merge -q -b wide/base.safetensors -m ties --lines -o wide-ties.safetensors "$@"

# ---- a header of 100,000 tensors ----------------------------------------------------------------
family "$tmp/many" --arch many --tensors 100000 --dtype bf16 --layers 10 --hidden 8 --models 1 --seed 3
status 0 "a header of 100,000 tensors: inspect" "$LINES" inspect -q many/base.safetensors
status 0 "... merge" "$LINES" merge -q -b many/base.safetensors --lines --alpha 0.5 -o many.safetensors many/ft1.safetensors
status 0 "... verify" "$LINES" verify many.safetensors
check "... all of them" has "$tmp/out" "100000 tensors"

check "the inputs are exactly as they were" test "$before" = "$(cksum $b $m1 $m2)"
done_testing
