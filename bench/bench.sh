#!/bin/sh
# bench.sh -- `make bench`: what lines costs, printed beside what the
# machine cannot beat.
#
# Sections (BENCH_SECTIONS, default all):
#   engine   bf16 families of BENCH_SIZES per model (default "1G 4G") with
#            N = BENCH_NS models (default "1 4 8"): the I/O floor (io-floor:
#            read every input once, write the output once, fsync), then
#            `lines merge --lines -j 2` with each reader; wall time (best
#            of BENCH_REPEAT, default 3), ratio to the floor, GB/s of input,
#            peak RSS. Hot page cache when the inputs fit in memory; cold
#            too when the script may drop caches (root).
#   kernels  GB/s of every kernel of every instruction set on buffers that
#            fit in the cache and on buffers that do not, beside memcpy,
#            and the share of a merge's time spent in the kernels.
#   zstd     a merge written as .zst (level BENCH_ZSTD_LEVEL, default 1)
#            beside `zstd -LEVEL -T2` compressing the same uncompressed
#            output; throughput in GB/s of uncompressed bytes, and the
#            compression ratio beside plain zstd's on the base model.
#   ties     every method that takes four models (TIES, DARE, linear, ...)
#            beside sum on the 1G, N = 4 family (hot), with its peak RSS
#            and the passes each made over the inputs; then slerp and
#            nearswap (the base and one model) and nuslerp (two) beside
#            sum of the same models.
#   sweep    a sweep of four betas (--beta 0.1,0.3,0.5,0.7, one read of
#            the inputs, four outputs) beside one run with one beta, for
#            sum and ties on the BENCH_SWEEP_SIZE (default 1G), N = 4
#            family, hot: seconds, x one run (the target: well under 4),
#            peak RSS.
#   cgroup   a merge whose inputs total more than 8 GiB inside a 512 MiB
#            memory cgroup (v2 memory.max or v1 memory.limit_in_bytes),
#            checked against the same merge without the limit.
#   gguf     F16 and Q8_0 GGUF families (tests/gen-gguf, 16 blocks, base +
#            4 fine-tunes, BENCH_GGUF_SIZE per F16 model, default 1G; the
#            Q8_0 family has the same tensors, so the same element count)
#            merged with -m sum --lines and -m ties --lines into the base's
#            types, beside the same merge of an F16 safetensors family of
#            the F16 GGUF's size (tests/gen-family): seconds (best of
#            BENCH_REPEAT, hot), x the safetensors merge, peak RSS.
#
# Data goes to BENCH_DIR (default $TMPDIR/lines-bench, about 9 GiB per
# 1G of BENCH_SIZES) and is removed at the end unless BENCH_KEEP=1.
set -u
: "${LINES:=./lines}"
: "${GEN:=./tests/gen-family}"
: "${FLOOR:=./bench/io-floor}"
: "${KBENCH:=./bench/kbench}"
: "${PEAK_RSS:=./tests/peak-rss}"
: "${BENCH_DIR:=${TMPDIR:-/tmp}/lines-bench}"
: "${BENCH_SIZES:=1G 4G}"
: "${BENCH_NS:=1 4 8}"
: "${BENCH_REPEAT:=3}"
: "${BENCH_SECTIONS:=engine kernels zstd ties sweep cgroup gguf}"
: "${BENCH_SWEEP_SIZE:=1G}"
: "${BENCH_ZSTD_LEVEL:=1}"
: "${BENCH_JOBS:=2}"
: "${BENCH_GGUF_SIZE:=1G}"
: "${GEN_GGUF:=./tests/gen-gguf}"

mkdir -p "$BENCH_DIR" || exit 1
[ -n "${BENCH_KEEP:-}" ] || trap 'rm -rf "$BENCH_DIR"' EXIT

maxn=0
for n in $BENCH_NS; do [ "$n" -gt "$maxn" ] && maxn=$n; done
mem_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
can_drop=0
[ -w /proc/sys/vm/drop_caches ] && can_drop=1

say() { printf '%s\n' "$*"; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b - a}'; }
now() { date +%s.%N; }
div() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }

family() { # family SIZE: the directory of a family of maxn models
	d=$BENCH_DIR/fam-$1
	if [ ! -f "$d/ft$maxn.safetensors" ]; then
		say "(generating a bf16 Llama-style family: base + $maxn fine-tunes of $1 each)" >&2
		"$GEN" --arch llama --dtype bf16 --layers 16 --size "$1" --models "$maxn" --seed 1 --out "$d" >&2 || exit 1
		sync # no write-back of the new files during the first timings
	fi
	echo "$d"
}

inputs() { # inputs DIR N: base then N models
	printf '%s\n' "$1/base.safetensors"
	i=1
	while [ $i -le "$2" ]; do printf '%s\n' "$1/ft$i.safetensors"; i=$((i + 1)); done
}

bytes_of() { total=0; for f in "$@"; do total=$((total + $(stat -c %s "$f"))); done; echo $total; }

# best_of CMD...: the smallest wall time of BENCH_REPEAT runs (seconds)
best_of() {
	best=
	r=0
	while [ $r -lt "$BENCH_REPEAT" ]; do
		sync # nothing left to write back from the run before
		t0=$(now)
		"$@" >/dev/null 2>&1 || { echo "FAILED: $*" >&2; echo 0; return; }
		t=$(secs "$t0" "$(now)")
		if [ -z "$best" ] || awk -v a="$t" -v b="$best" 'BEGIN {exit !(a < b)}'; then best=$t; fi
		r=$((r + 1))
	done
	echo "$best"
}

engine() {
	say "== engine: lines merge --lines -j $BENCH_JOBS (bf16; --gamma 0.5 for N = 1), beside the I/O floor"
	say "   floor = read the N+1 inputs and write the output once with read/write, then fsync"
	printf '%-5s %-3s %-5s %-7s %9s %8s %9s %10s\n' size N cache reader seconds x_floor GB/s_in peak_RSS
	for size in $BENCH_SIZES; do
		d=$(family "$size")
		for n in $BENCH_NS; do
			set -- $(inputs "$d" "$n")
			in_bytes=$(bytes_of "$@")
			b=$1
			shift
			# LiNeS: automatic alpha for several models, --gamma for one
			if [ "$n" = 1 ]; then scaling="--gamma 0.5"; else scaling=--lines; fi
			out=$BENCH_DIR/out.safetensors
			for cache in hot cold; do
				if [ $cache = hot ]; then
					if [ $((in_bytes / 1024)) -gt $((mem_kib * 7 / 10)) ]; then
						say "$size  $n  hot   (inputs exceed 70% of RAM: cannot be cached)"
						continue
					fi
					cat "$b" "$@" >/dev/null
					fl=$(best_of "$FLOOR" "$out" "$b" "$@")
				else
					[ $can_drop = 1 ] || { say "$size  $n  cold  (cannot drop caches: not root)"; continue; }
					drop_caches
					t0=$(now); "$FLOOR" "$out" "$b" "$@" >/dev/null; fl=$(secs "$t0" "$(now)")
				fi
				printf '%-5s %-3s %-5s %-7s %9s %8s %9s %10s\n' "$size" "$n" $cache floor "$fl" 1.00 \
					"$(div "$in_bytes" "$(awk -v t="$fl" 'BEGIN {print t * 1e9}')")" -
				rm -f "$out"
				for io in mmap uring; do
					if [ $cache = hot ]; then
						cat "$b" "$@" >/dev/null
						t=$(best_of "$PEAK_RSS" "$BENCH_DIR/rss" "$LINES" merge -q -j "$BENCH_JOBS" --io $io \
							-b "$b" $scaling -o "$out" "$@")
					else
						drop_caches
						t0=$(now)
						"$PEAK_RSS" "$BENCH_DIR/rss" "$LINES" merge -q -j "$BENCH_JOBS" --io $io \
							-b "$b" $scaling -o "$out" "$@" || say "FAILED"
						t=$(secs "$t0" "$(now)")
					fi
					rss=$(cat "$BENCH_DIR/rss" 2>/dev/null || echo 0)
					[ "$size" = 1G ] && [ "$n" = 4 ] && [ $cache = hot ] && [ $io = uring ] &&
						share_in=$in_bytes share_t=$t
					printf '%-5s %-3s %-5s %-7s %9s %8s %9s %7s MiB\n' "$size" "$n" $cache $io "$t" \
						"$(div "$t" "$fl")" "$(div "$in_bytes" "$(awk -v t="$t" 'BEGIN {print t * 1e9}')")" \
						$((rss / 1024))
					rm -f "$out"
				done
			done
		done
	done
	say
}

kernels() {
	say "== kernels: GB/s of input bytes, per instruction set, beside memcpy of the same bytes"
	if [ ! -x "$KBENCH" ]; then say "(bench/kbench is not built)"; return; fi
	"$KBENCH" | tee "$BENCH_DIR/kbench.txt"
	# the share of a hot-cache N = 4 merge spent in the kernel: its
	# large-buffer speed on this many bytes, per thread, over the wall time
	gbps=$(awk '$1 == "merge_lin" && $2 == "bf16" && $4 == "large" && $5 != "scalar" {print $6; exit}' "$BENCH_DIR/kbench.txt")
	if [ -n "${share_t:-}" ] && [ -n "$gbps" ]; then
		say "   kernel share of the 1G, N = 4, hot, uring merge: $(awk -v b="$share_in" -v g="$gbps" -v j="$BENCH_JOBS" -v t="$share_t" \
			'BEGIN {k = b / (g * 1e9) / j; printf "%.2f s of %.2f s wall = %.0f%%", k, t, 100 * k / t}') (the rest is I/O and memory traffic)"
	fi
	say
}

zstd() { command zstd "$@"; }

zstd_section() {
	lv=$BENCH_ZSTD_LEVEL
	say "== zstd output: lines merge -o OUT.zst (level $lv, -j $BENCH_JOBS) beside zstd -$lv -T$BENCH_JOBS on the same bytes"
	say "   (both fsync their output; lines also computes the merge and its checksums)"
	if ! command -v zstd >/dev/null; then say "(zstd is not installed)"; return; fi
	d=$(family 1G)
	set -- $(inputs "$d" 4)
	b=$1
	shift
	plain=$BENCH_DIR/plain.safetensors
	"$LINES" merge -q -j "$BENCH_JOBS" -b "$b" --lines --no-checksum -o "$plain" "$@"
	u=$(stat -c %s "$plain")
	cat "$b" "$@" "$plain" >/dev/null
	tl=$(best_of "$LINES" merge -q -j "$BENCH_JOBS" -b "$b" --lines --zstd-level "$lv" -o "$BENCH_DIR/m.safetensors.zst" "$@")
	# zstd, like lines, makes its output durable before it counts as done
	tz=$(best_of sh -c "zstd -q -f -$lv -T$BENCH_JOBS '$plain' -o '$BENCH_DIR/z.zst' && sync -d '$BENCH_DIR/z.zst'")
	cl=$(stat -c %s "$BENCH_DIR/m.safetensors.zst")
	cz=$(stat -c %s "$BENCH_DIR/z.zst")
	zstd -q -f -"$lv" -T"$BENCH_JOBS" "$b" -o "$BENCH_DIR/base.zst"
	cb=$(stat -c %s "$BENCH_DIR/base.zst")
	printf '%-34s %8s %12s %8s\n' "" seconds "GB/s (unc.)" ratio
	printf '%-34s %8s %12s %8s\n' "lines merge (N=4, 1G) -> .zst" "$tl" "$(div "$u" "$(awk -v t="$tl" 'BEGIN {print t * 1e9}')")" "$(div "$u" "$cl")"
	printf '%-34s %8s %12s %8s\n' "zstd -$lv -T$BENCH_JOBS on the merged bytes" "$tz" "$(div "$u" "$(awk -v t="$tz" 'BEGIN {print t * 1e9}')")" "$(div "$u" "$cz")"
	printf '%-34s %8s %12s %8s\n' "zstd -$lv on the base model" - - "$(div "$(stat -c %s "$b")" "$cb")"
	say "   lines' throughput is $(div "$tz" "$tl") x zstd's (it also merged the models)"
	if zstd -q -d -c "$BENCH_DIR/m.safetensors.zst" | cmp -s - "$plain"; then
		say "   zstd -d restores the uncompressed output byte for byte"
	else
		say "   FAILED: zstd -d does not restore the uncompressed output"
	fi
	rm -f "$plain" "$BENCH_DIR"/*.zst
	say
}

# method_table METHODS MODELS...: every method of METHODS ("|" between
# them, the first the reference) merged from the base $b and MODELS,
# BENCH_REPEAT rounds of every method in turn, then a line per method:
# the best wall time, x the first, peak RSS and the passes made (-v)
method_table() {
	methods=$1
	shift
	all="$*" # the paths have no blanks: inputs() made them
	r=0
	while [ $r -lt "$BENCH_REPEAT" ]; do
		q=0
		IFS='|'
		for m in $methods; do
			IFS=' '
			# arcee_fusion merges one model (2 inputs where the others read 5)
			models=$all
			case $m in arcee_fusion*) models=${all%% *} ;; esac
			# every run writes a new file: replacing the one the run before
			# left would add the freeing of its pages (0.2 s for 1 GiB) to
			# whichever method comes next, and none to the first of all
			rm -f "$BENCH_DIR"/o.safetensors*
			sync # nothing left to write back from the run before
			t0=$(now)
			# shellcheck disable=SC2086 # $m is the method and its options, $models the models
			"$PEAK_RSS" "$BENCH_DIR/rss" "$LINES" merge -v -j "$BENCH_JOBS" -b "$b" -m $m \
				-o "$BENCH_DIR/o.safetensors" $models >"$BENCH_DIR/v.log" 2>&1 ||
				{ say "   FAILED: -m $m"; return; }
			t=$(secs "$t0" "$(now)")
			rss=$(($(cat "$BENCH_DIR/rss" 2>/dev/null || echo 0) / 1024))
			eval "rss_$q=\$rss"
			# the passes this run made (-v names each, or says it was skipped)
			p=$(sed -n 's/^lines: pass [0-9]*\/[0-9]* (\([a-z]*\)): [0-9.]* MiB read.*/\1/p' \
				"$BENCH_DIR/v.log" | tr '\n' ' ' | sed 's/ $//')
			seen=
			eval "seen=\${passes_$q:-}"
			case "|$seen|" in
			*"|$p|"*) ;;
			*) eval "passes_$q=\"\${seen:+\$seen|}\$p\"" ;;
			esac
			eval "best=\${best_$q:-}"
			if [ -z "$best" ] || awk -v a="$t" -v b="$best" 'BEGIN {exit !(a < b)}'; then
				eval "best_$q=\$t"
			fi
			q=$((q + 1))
		done
		IFS=' '
		r=$((r + 1))
	done
	printf '%-44s %8s %8s %9s  %s\n' method seconds x_first "RSS MiB" "passes made (-v)"
	first=$best_0
	q=0
	IFS='|'
	for m in $methods; do
		IFS=' '
		eval "t=\$best_$q"
		eval "rss=\${rss_$q:-0}"
		eval "passes=\${passes_$q:-}"
		passes=$(printf '%s' "$passes" | sed 's/|/, or /g')
		printf '%-44s %8s %8s %9s  %s\n' "-m $m" "$t" "$(div "$t" "$first")" "$rss" "$passes"
		unset "best_$q" "rss_$q" "passes_$q"
		q=$((q + 1))
	done
	IFS=' '
	rm -f "$BENCH_DIR"/o.safetensors*
}

ties() {
	say "== methods: wall time beside sum (1G, N = 4, hot cache, -j $BENCH_JOBS)"
	say "   best of $BENCH_REPEAT rounds; each round runs every method once, in turn, so that"
	say "   each ratio compares runs made under the same conditions; each writes a new file;"
	say "   x_first is x sum, the first line"
	d=$(family 1G)
	set -- $(inputs "$d" 4)
	b=$1
	shift
	cat "$b" "$@" >/dev/null
	# --lines everywhere (automatic alpha unless --alpha is given); a given
	# alpha (--alpha 0.5) where the issue's targets name it: the one-pass
	# element-wise methods and DARE's writing pass alone
	method_table "sum --lines|linear --alpha 0.5 --lines|ram --alpha 0.5 --lines|consensus --alpha 0.5 --lines|dare --alpha 0.5 --lines|dare_linear --alpha 0.5 --lines|ties --lines|ties --trim tensor --lines|dare --lines|dare --dare-elect --lines|dare_ties --rescale --lines|linear --lines|consensus --lines|consensus --consensus-over ties --lines|model_stock --norm l2 --lines|model_stock --per-row --norm l2 --lines|multislerp --lines|ram --lines|ramplus_tl --lines|karcher --lines|karcher --alpha 0.8 --lines|della --lines|della_linear --rescale --lines|breadcrumbs --density 0.9 --lines|breadcrumbs_ties --density 0.9 --lines|sce --lines|sce --select-topk 0.3 --lines|arcee_fusion --alpha auto --lines" "$@"
	say
	say "== methods of one or two models beside sum of the same models (1G, hot, -j $BENCH_JOBS)"
	say "   slerp and nearswap take the base and one model, nuslerp two models (and the base)"
	method_table "sum --lines --alpha 0.5|slerp --t 0.5|slerp --t 0.5 --lines --alpha 0.5|nearswap --t 0.001" "$1"
	say
	method_table "sum --lines|nuslerp|nuslerp --lines|nuslerp --per-row|multislerp" "$1" "$2"
	say
}

# one_sweep METHOD ARGS...: the best time and the peak RSS (KiB) of ARGS, in $t and $rss
one_sweep() {
	t=
	rss=0
	r=0
	while [ $r -lt "$BENCH_REPEAT" ]; do
		rm -f "$BENCH_DIR"/sw*.safetensors*
		sync
		t0=$(now)
		"$PEAK_RSS" "$BENCH_DIR/rss" "$LINES" merge -q -j "$BENCH_JOBS" "$@" >/dev/null 2>&1 ||
			{ say "   FAILED: $*"; t=0; return; }
		x=$(secs "$t0" "$(now)")
		if [ -z "$t" ] || awk -v a="$x" -v b="$t" 'BEGIN {exit !(a < b)}'; then t=$x; fi
		rss=$(cat "$BENCH_DIR/rss" 2>/dev/null || echo 0)
		r=$((r + 1))
	done
	rm -f "$BENCH_DIR"/sw*.safetensors*
}

sweep() {
	say "== sweeps: four betas from one read of the inputs, beside one run ($BENCH_SWEEP_SIZE, N = 4, hot, -j $BENCH_JOBS)"
	say "   four separate runs would take 4 x one run; the target is well under that"
	d=$(family "$BENCH_SWEEP_SIZE")
	set -- $(inputs "$d" 4)
	b=$1
	shift
	cat "$b" "$@" >/dev/null
	printf '%-26s %10s %8s %10s %8s %9s\n' method "one run s" "sweep s" "x one run" "4 runs" "RSS MiB"
	for m in sum ties; do
		one_sweep -b "$b" -m $m --lines --beta 0.1 -o "$BENCH_DIR/sw.safetensors" "$@"
		t1=$t
		one_sweep -b "$b" -m $m --lines --beta 0.1,0.3,0.5,0.7 -o "$BENCH_DIR/sw{beta}.safetensors" "$@"
		printf '%-26s %10s %8s %10s %8s %9s\n' "-m $m --lines --beta x4" "$t1" "$t" \
			"$(div "$t" "$t1")" "4.00" "$((rss / 1024))"
	done
	say
}

cgroup_run() { # cgroup_run LIMIT_BYTES CMD...: run CMD in a fresh memory cgroup
	limit=$1
	shift
	cg=
	if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
		cg=/sys/fs/cgroup/lines-bench.$$
		mkdir "$cg" 2>/dev/null && echo "$limit" >"$cg/memory.max" 2>/dev/null || cg=
		peakf=$cg/memory.peak
	fi
	if [ -z "$cg" ] && [ -d /sys/fs/cgroup/memory ]; then
		cg=/sys/fs/cgroup/memory/lines-bench.$$
		mkdir "$cg" 2>/dev/null && echo "$limit" >"$cg/memory.limit_in_bytes" 2>/dev/null || cg=
		peakf=$cg/memory.max_usage_in_bytes
	fi
	if [ -z "$cg" ]; then
		say "(no memory cgroup can be created here: v2 memory.max or v1 memory controller needed)"
		return 77
	fi
	sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$cg" "$@"
	st=$?
	say "   cgroup peak memory (page cache included): $(($(cat "$peakf" 2>/dev/null || echo 0) / 1048576)) MiB, limit $((limit / 1048576)) MiB"
	rmdir "$cg" 2>/dev/null
	return $st
}

cgroup() {
	say "== larger than the memory limit: > 8 GiB of inputs in a 512 MiB cgroup"
	d=$(family 1G)
	n=$maxn
	set -- $(inputs "$d" "$n")
	in_bytes=$(bytes_of "$@")
	if [ "$in_bytes" -le $((8 << 30)) ]; then
		say "(the inputs total $((in_bytes >> 20)) MiB, not more than 8 GiB: use BENCH_NS with 8)"
		return
	fi
	b=$1
	shift
	"$LINES" merge -q -b "$b" --lines -o "$BENCH_DIR/free.st" "$@" || { say FAILED; return; }
	[ $can_drop = 1 ] && drop_caches
	t0=$(now)
	cgroup_run $((512 << 20)) "$PEAK_RSS" "$BENCH_DIR/rss" "$LINES" merge -q -b "$b" --lines -o "$BENCH_DIR/capped.st" "$@"
	st=$?
	t=$(secs "$t0" "$(now)")
	if [ $st = 77 ]; then return; fi
	if [ $st = 0 ] && cmp -s "$BENCH_DIR/free.st" "$BENCH_DIR/capped.st"; then
		say "   $((in_bytes >> 20)) MiB of inputs (N = $n), 512 MiB cgroup: completed in $t s, peak RSS $(($(cat "$BENCH_DIR/rss") / 1024)) MiB, output identical to the uncapped run"
	else
		say "   FAILED (exit $st) or output differs from the uncapped run"
	fi
	rm -f "$BENCH_DIR/free.st" "$BENCH_DIR/capped.st"
	say
}

bytes_of_size() { # 1G, 256M, 64K or bytes
	case $1 in
	*G) echo $((${1%G} << 30)) ;;
	*M) echo $((${1%M} << 20)) ;;
	*K) echo $((${1%K} << 10)) ;;
	*) echo "$1" ;;
	esac
}

gguf() {
	say "== GGUF: N = 4 fine-tunes + base, -j $BENCH_JOBS, hot, into the base's types, beside safetensors"
	say "   x_st = time / the same merge of an F16 safetensors family of the F16 GGUF's size; the"
	say "   Q8_0 family has the F16 family's tensors (same element count, 34/64 of the bytes), so"
	say "   its row compares with the same F16 safetensors merge"
	[ -x "$GEN_GGUF" ] || { say "(tests/gen-gguf is not built)"; return; }
	# 16 blocks of 10 H^2 elements (attention 4 H^2, feed-forward 3 x 2 H^2):
	# the largest H, a multiple of 256 (whole Q8_0 and K blocks), whose F16
	# model is at most BENCH_GGUF_SIZE
	h=$(awk -v b="$(bytes_of_size "$BENCH_GGUF_SIZE")" 'BEGIN {h = int(sqrt(b / 2 / 160) / 256) * 256; print (h < 256 ? 256 : h)}')
	for ty in f16 q8_0; do
		gd=$BENCH_DIR/gguf-$ty-$h
		if [ ! -f "$gd/ft4.gguf" ]; then
			say "(generating a $ty GGUF llama family: base + 4 fine-tunes, 16 blocks, hidden $h)" >&2
			"$GEN_GGUF" --type $ty --layers 16 --hidden "$h" --models 4 --seed 1 --out "$gd" >&2 || { say FAILED; return; }
			sync
		fi
	done
	sd=$BENCH_DIR/gguf-st-$h
	if [ ! -f "$sd/ft4.safetensors" ]; then
		say "(generating an f16 safetensors llama family of the F16 GGUF's size)" >&2
		# gen-family rounds its hidden size: ask for the --size whose model
		# comes nearest the GGUF's (--print-size tells without writing)
		want=$(stat -c %s "$BENCH_DIR/gguf-f16-$h/base.gguf")
		best=$want bd=
		for pct in 100 104 108 112 116 120 124 128 132 136 140; do
			s=$((want * pct / 100))
			a=$("$GEN" --arch llama --dtype f16 --layers 16 --size "$s" --models 4 --seed 1 \
				--out "$sd" --print-size) || continue
			dd=$((a > want ? a - want : want - a))
			if [ -z "$bd" ] || [ "$dd" -lt "$bd" ]; then bd=$dd best=$s; fi
		done
		"$GEN" --arch llama --dtype f16 --layers 16 --size "$best" \
			--models 4 --seed 1 --out "$sd" >&2 || { say FAILED; return; }
		sync
	fi
	printf '%-42s %-6s %9s %8s %9s\n' family method seconds x_st "RSS MiB"
	for m in sum ties; do
		st_t=
		for fam in st f16 q8_0; do
			case $fam in
			st) d=$sd ext=safetensors label="F16 safetensors" ;;
			f16) d=$BENCH_DIR/gguf-$fam-$h ext=gguf label="F16 GGUF" ;;
			*) d=$BENCH_DIR/gguf-$fam-$h ext=gguf label="Q8_0 GGUF, F16's elements" ;;
			esac
			set -- "$d/base.$ext" "$d/ft1.$ext" "$d/ft2.$ext" "$d/ft3.$ext" "$d/ft4.$ext"
			mib=$(($(stat -c %s "$1") >> 20))
			b=$1
			shift
			cat "$b" "$@" >/dev/null
			rm -f "$BENCH_DIR"/g.*
			t=$(best_of "$PEAK_RSS" "$BENCH_DIR/rss" "$LINES" merge -q -j "$BENCH_JOBS" -b "$b" -m $m --lines \
				-o "$BENCH_DIR/g.$ext" "$@")
			rss=$(($(cat "$BENCH_DIR/rss" 2>/dev/null || echo 0) / 1024))
			[ $fam = st ] && st_t=$t
			printf '%-42s %-6s %9s %8s %9s\n' "$label ($mib MiB/model)" "$m" "$t" "$(div "$t" "$st_t")" "$rss"
			rm -f "$BENCH_DIR"/g.*
		done
	done
	say
}

say "lines bench -- $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $((mem_kib / 1024)) MiB RAM"
"$LINES" --version | sed 's/^/   /'
for s in $BENCH_SECTIONS; do
	case $s in
	zstd) zstd_section ;;
	*) $s ;;
	esac
done
