# lib.sh -- TAP for the shell tests. Source it; it makes $tmp (removed at
# exit) and provides ok/check/done_testing. $LINES and $GEN come from
# `make check` (tests/Makefile.am's AM_TESTS_ENVIRONMENT).
set -u
: "${LINES:=./lines}"
: "${GEN:=./tests/gen-family}"
n=0
failed=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lines-sh-XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT

# ok STATUS DESCRIPTION: pass when STATUS is 0
ok() {
	n=$((n + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
		failed=$((failed + 1))
	fi
}

# check DESCRIPTION COMMAND...: pass when COMMAND succeeds
check() {
	desc=$1
	shift
	if "$@"; then ok 0 "$desc"; else ok 1 "$desc"; fi
}

# status EXPECTED DESCRIPTION COMMAND...: pass when COMMAND exits EXPECTED;
# its stderr is kept in $tmp/err and its stdout in $tmp/out
status() {
	want=$1
	desc=$2
	shift 2
	"$@" >"$tmp/out" 2>"$tmp/err"
	got=$?
	if [ "$got" -eq "$want" ]; then
		ok 0 "$desc"
	else
		ok 1 "$desc (exit $got, expected $want)"
		sed 's/^/# /' "$tmp/err"
	fi
}

# skip REASON: a TAP line for a check that was not run
skip() {
	n=$((n + 1))
	echo "ok $n # SKIP $1"
}

# jqok DESCRIPTION FILTER [FILE]: pass when jq's FILTER gives true on FILE
# (default $tmp/out, where status leaves stdout); skipped without jq
jqok() {
	if ! command -v jq >/dev/null 2>&1; then
		skip "$1: jq is missing"
		return
	fi
	jq -e "$2" "${3:-$tmp/out}" >/dev/null 2>"$tmp/jqerr"
	ok $? "$1"
	sed 's/^/# /' "$tmp/jqerr"
}

# has FILE TEXT: FILE contains TEXT (fixed string)
has() { grep -qF -- "$2" "$1"; }

# no_temp DIR: no temporary output of lines is left in DIR
no_temp() { ! ls -a "$1" | grep -q '\.lines-'; }

done_testing() {
	echo "1..$n"
	[ "$failed" -eq 0 ]
}

# offsets FILE: "NAME OFFSET BYTES" for every tensor of a safetensors
# file, in storage order
offsets() {
	"$LINES" inspect --json "$1" | jq -r '.header_bytes as $h |
		reduce .tensor_list[] as $t ({o: $h, l: []};
			.l += ["\($t.name) \(.o) \($t.bytes)"] | .o += $t.bytes) | .l[]'
}

# same_tensors A OFFSETS_A B OFFSETS_B PAIRS: each line "NAME_A NAME_B" of
# PAIRS names a tensor of file A that has the bytes of tensor NAME_B of
# file B; prints a "# " line for each that has not (or is missing, or of
# another size) and sets st_bad to their number. One cmp a tensor: the
# offsets are joined by one awk.
same_tensors() {
	st_bad=0
	for st_f in "$2" "$4" "$5"; do # (awk numbers only the files it reads a line of)
		[ -s "$st_f" ] || { echo "# same_tensors: $st_f is empty"; st_bad=1; }
	done
	[ "$st_bad" = 0 ] || return 0
	awk 'FNR == 1 {f++}
	     f == 1 {oa[$1] = $2; la[$1] = $3; next}
	     f == 2 {ob[$1] = $2; lb[$1] = $3; next}
	     !($1 in oa) || !($2 in ob) || la[$1] != lb[$2] {print "x", $1, $2; next}
	     {print oa[$1] ":" ob[$2], la[$1], $1, $2}' "$2" "$4" "$5" >"$tmp/st.pairs" || exit 99
	while read -r st_at st_len st_a st_b; do
		if [ "$st_at" = x ]; then
			echo "# $st_len: missing in $1 or $st_a in $3, or of another size"
			st_bad=$((st_bad + 1))
		elif ! cmp -s -i "$st_at" -n "$st_len" "$1" "$3"; then
			echo "# $st_a: not the bytes of $st_b of $3"
			st_bad=$((st_bad + 1))
		fi
	done <"$tmp/st.pairs"
}

# family DIR ARGS...: generate a family into DIR (quietly)
family() {
	d=$1
	shift
	"$GEN" --out "$d" "$@" || { echo "Bail out! gen-family failed"; exit 99; }
}
