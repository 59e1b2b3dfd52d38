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

# same_tensor A OFFSETS_A B OFFSETS_B NAME_A [NAME_B]: tensor NAME_A of
# file A has the bytes of tensor NAME_B (default NAME_A) of file B
same_tensor() {
	la=$(grep "^$5 " "$2") && lb=$(grep "^${6:-$5} " "$4") || return 1
	[ "$(echo "$la" | cut -d' ' -f3)" = "$(echo "$lb" | cut -d' ' -f3)" ] &&
		cmp -s -i "$(echo "$la" | cut -d' ' -f2):$(echo "$lb" | cut -d' ' -f2)" \
			-n "$(echo "$la" | cut -d' ' -f3)" "$1" "$3"
}

# family DIR ARGS...: generate a family into DIR (quietly)
family() {
	d=$1
	shift
	"$GEN" --out "$d" "$@" || { echo "Bail out! gen-family failed"; exit 99; }
}
