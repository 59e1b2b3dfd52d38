#!/bin/sh
# t-rss.sh -- constant memory, as a size: the peak RSS of a merge of
# 2 GiB models is within 10% (or 8 MiB) of that of the same merge of
# 256 MiB models, with each reader. Two blocks, so that even the smaller
# models' tensors are larger than a chunk and both merges reach the
# bound. Needs about 7 GiB of free disk in $TMPDIR; skipped without it, or
# when LINES_SKIP_BIG is set (the sanitizer build of CI, whose allocator
# changes what RSS means).
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"
: "${PEAK_RSS:=$(dirname "$GEN")/peak-rss}"

if [ -n "${LINES_SKIP_BIG:-}" ]; then
	echo "1..0 # SKIP LINES_SKIP_BIG is set"
	exit 0
fi
free_kib=$(df -Pk "$tmp" | awk 'NR == 2 {print $4}')
if [ "$free_kib" -lt 7500000 ]; then
	echo "1..0 # SKIP needs 7.5 GB free in $tmp, has $((free_kib / 1024)) MiB"
	exit 0
fi

family "$tmp/small" --arch llama --dtype bf16 --layers 2 --size 256M --models 2 --seed 4
family "$tmp/big" --arch llama --dtype bf16 --layers 2 --size 2G --models 2 --seed 4

uring=1
"$LINES" merge -q --io uring -b "$tmp/small/base.safetensors" -o - "$tmp/small/ft1.safetensors" >/dev/null 2>&1 || uring=0
for io in mmap uring; do
	if [ $io = uring ] && [ $uring = 0 ]; then
		skip "--io uring: peak RSS of the small and big families: io_uring is not available here"
		continue
	fi
	for size in small big; do
		d=$tmp/$size
		"$PEAK_RSS" "$tmp/rss-$size" "$LINES" merge -q -j 2 --io $io -b "$d/base.safetensors" \
			--lines -w 1,2 -o "$tmp/out.st" "$d/ft1.safetensors" "$d/ft2.safetensors"
		ok $? "--io $io: merge of the $size family"
		rm -f "$tmp/out.st"
	done
	s=$(cat "$tmp/rss-small")
	b=$(cat "$tmp/rss-big")
	diff=$((b > s ? b - s : s - b))
	ok $((diff > s / 10 && diff > 8192)) \
		"--io $io: peak RSS $b KiB for 2 GiB models, $s KiB for 256 MiB models (within 10% or 8 MiB)"
done

done_testing
