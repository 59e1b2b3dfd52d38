#!/bin/sh
# t-parallel-driver.sh -- the GNU parallel and make drivers of contrib/ on
# a merge in 3 parts: contrib/lines-parallel.sh with -j 3, and with
# --sshlogin through a stand-in for ssh (a shell on this machine, so the
# commands are quoted for a remote shell and run from --workdir; the
# models' path has a space), and contrib/lines.mk with make -j3, each give
# every file of the run on one machine; a part that fails stops the run
# before `lines index`, and running the driver again gives the same bytes.
# SKIP without GNU parallel, or when lines has no --part yet.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"
. "${TESTS_SRCDIR:-$(dirname "$0")}/cluster.sh"

if [ -n "${LINES_SKIP_SLOW:-}" ]; then
	echo "1..0 # SKIP LINES_SKIP_SLOW is set (the drivers are shell around lines; the first run of the tests in CI has them)"
	exit 0
fi
if ! has_part; then
	skip "the drivers of contrib/: lines has no --part yet"
	done_testing
	exit
fi
if ! parallel --version 2>/dev/null | grep -q 'GNU parallel'; then
	have_parallel=
else
	have_parallel=1
fi
cluster_family "$tmp/fam"
ln -s fam "$tmp/the models"

# ssh HOST COMMAND... as parallel calls it, run by a shell here; like
# sshd, it gives the command the login shell of the user as $SHELL
# (parallel's remote wrapper runs the job with $SHELL, and make check may
# run without one)
cat >"$tmp/fakessh" <<'EOF'
#!/bin/sh
SHELL=$(getent passwd "$(id -un)" | cut -d: -f7)
export SHELL="${SHELL:-/bin/sh}"
while [ $# -gt 0 ]; do
	case $1 in
	-l | -p | -o | -i) shift 2 ;;
	-*) shift ;;
	*) echo "$1" >>"$FAKESSH_LOG"; shift; [ "${1:-}" = -- ] && shift; break ;;
	esac
done
exec sh -c "$*"
EOF
chmod +x "$tmp/fakessh"
failing_lines "$tmp/failing-lines"

# drivers NAME: the merge NAME by every driver
drivers() {
	merge_args "$1" "$tmp/fam" >"$tmp/$1.args"
	why=$(refused "$tmp/$1.args")
	if [ -n "$why" ]; then
		skip "$(label "$1") by GNU parallel and make in 3 parts: lines refuses it: $why"
		return
	fi
	one_machine "$tmp/$1.args" "$tmp/one-$1"
	one="$tmp/one-$1/out"
	mkdir -p "$tmp/par-$1" "$tmp/ssh-$1" "$tmp/fail-$1" "$tmp/mk-$1" "$tmp/mkfail-$1"

	if [ -n "$have_parallel" ]; then
		(cd "$tmp/par-$1" && run_args "$tmp/$1.args" "$contrib/lines-parallel.sh" -j 3 -M 3 -o out/ --) >"$tmp/log" 2>&1
		ok $? "$(label "$1"): lines-parallel.sh -j 3 succeeds"
		check "... and gives every file of the run on one machine, byte for byte" same_tree "$one" "$tmp/par-$1/out"
		check "... after the rounds -n announces ($(rounds_of "$tmp/$1.args"))" \
			test "$(rounds_run "$tmp/par-$1/out.stats")" = "$(rounds_of "$tmp/$1.args")"

		merge_args "$1" "$tmp/the models" >"$tmp/$1-space.args"
		one_machine "$tmp/$1-space.args" "$tmp/one-$1-space"
		: >"$tmp/ssh.log"
		(cd "$tmp/ssh-$1" && FAKESSH_LOG=$tmp/ssh.log PARALLEL_SSH=$tmp/fakessh \
			run_args "$tmp/$1-space.args" "$contrib/lines-parallel.sh" -S 2/h1,1/h2 -M 3 -o out/ --) >"$tmp/log" 2>&1
		ok $? "$(label "$1"): lines-parallel.sh -S 2/h1,1/h2 (ssh, the models' path with a space) succeeds"
		check "... through ssh to both hosts" sh -c "grep -qx h1 '$tmp/ssh.log' && grep -qx h2 '$tmp/ssh.log'"
		check "... and gives every file of the run on one machine, byte for byte" same_tree "$tmp/one-$1-space/out" "$tmp/ssh-$1/out"

		(cd "$tmp/fail-$1" && LINES=$tmp/failing-lines run_args "$tmp/$1.args" "$contrib/lines-parallel.sh" -j 3 -M 3 -o out/ --) >"$tmp/log" 2>&1
		st=$?
		ok $((st == 0)) "$(label "$1"): lines-parallel.sh fails when part 1 fails (exit $st)"
		check "... before lines index: no index, no README.md in OUT" \
			test ! -e "$tmp/fail-$1/out/model.safetensors.index.json" -a ! -e "$tmp/fail-$1/out/README.md"
		(cd "$tmp/fail-$1" && run_args "$tmp/$1.args" "$contrib/lines-parallel.sh" -j 3 -M 3 -o out/ --) >"$tmp/log" 2>&1
		ok $? "... run again, it succeeds"
		check "... and gives every file of the run on one machine, byte for byte" same_tree "$one" "$tmp/fail-$1/out"
	else
		skip "$(label "$1") by contrib/lines-parallel.sh: GNU parallel is missing (Debian: apt-get install parallel)"
	fi

	margs=$(tr '\n' ' ' <"$tmp/$1.args")
	(cd "$tmp/mk-$1" && make -f "$contrib/lines.mk" -j3 LINES="$LINES" M=3 OUT=out/ ARGS="$margs") >"$tmp/log" 2>&1
	ok $? "$(label "$1"): make -j3 -f lines.mk succeeds"
	check "... and gives every file of the run on one machine, byte for byte" same_tree "$one" "$tmp/mk-$1/out"
	check "... after the rounds -n announces" test "$(rounds_run "$tmp/mk-$1/out.stats")" = "$(rounds_of "$tmp/$1.args")"
	(cd "$tmp/mkfail-$1" && make -f "$contrib/lines.mk" -j3 LINES="$tmp/failing-lines" M=3 OUT=out/ ARGS="$margs") >"$tmp/log" 2>&1
	st=$?
	ok $((st == 0)) "$(label "$1"): make -j3 fails when part 1 fails (exit $st)"
	check "... before lines index" test ! -e "$tmp/mkfail-$1/out/model.safetensors.index.json"
	(cd "$tmp/mkfail-$1" && make -f "$contrib/lines.mk" -j3 LINES="$LINES" M=3 OUT=out/ ARGS="$margs") >"$tmp/log" 2>&1
	ok $? "... make again finishes the run"
	check "... and gives every file of the run on one machine, byte for byte" same_tree "$one" "$tmp/mkfail-$1/out"
}

drivers plain
drivers sum
drivers ties

done_testing
