#!/bin/sh
# t-slurm.sh -- the Slurm driver of contrib/ on a real, single-node Slurm
# that this test starts in its temporary directory: munged with its own key
# and socket, slurmctld and slurmd on ports of their own, all state, spool,
# pid and log files under $tmp, stopped at exit. A job array of 3 runs a
# trivial job first; then contrib/lines-slurm-submit.sh runs the rounds,
# the parts and `lines index` of a sharded merge as dependent jobs, and
# every file of the output is compared with a run on one machine. When the
# daemons cannot be started (not root, Slurm or munge missing, the node
# never becomes idle) every check is a TAP SKIP with the reason.
. "${TESTS_SRCDIR:-$(dirname "$0")}/lib.sh"
. "${TESTS_SRCDIR:-$(dirname "$0")}/cluster.sh"

# the second and third runs of the tests in CI (make distcheck, the
# sanitizer build) set LINES_SKIP_SLOW: the first has run this one
if [ -n "${LINES_SKIP_SLOW:-}" ]; then
	echo "1..0 # SKIP LINES_SKIP_SLOW is set (Slurm's daemons take a minute and a half)"
	exit 0
fi

sl=$tmp/slurm
pids=
# slurm_stop: cancel what is left in our cluster, stop our daemons (by
# their process ids, slurmd and slurmctld first, munged last), wait for them
slurm_stop() {
	if [ -n "$pids" ]; then
		jobs_left=$(squeue -h -o %A 2>/dev/null | sort -u)
		[ -n "$jobs_left" ] && scancel $jobs_left 2>/dev/null
		for p in $pids; do kill "$p" 2>/dev/null; done
		i=0
		while [ $i -lt 100 ]; do
			alive=
			for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
			[ -z "$alive" ] && break
			sleep 0.1
			i=$((i + 1))
		done
		for p in $pids; do kill -KILL "$p" 2>/dev/null; done
		pids=
	fi
	if [ -n "${munge_pid:-}" ]; then
		kill "$munge_pid" 2>/dev/null
		wait "$munge_pid" 2>/dev/null
		munge_pid=
	fi
}
trap 'slurm_stop; rm -rf "$tmp"' EXIT
# a signal (a reader of our output that went away too) stops them as well
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP
trap 'exit 141' PIPE

# now: seconds since the epoch with a fraction
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# slurm_start: set $why and fail when the daemons cannot be started
slurm_start() {
	if [ "$(id -u)" != 0 ]; then
		why="not root (slurmd launches jobs as root)"
		return 1
	fi
	for c in munged slurmctld slurmd sbatch squeue sinfo scontrol scancel; do
		if ! command -v $c >/dev/null 2>&1 && ! [ -x /usr/sbin/$c ]; then
			why="$c is missing (Debian: apt-get install slurm-wlm munge)"
			return 1
		fi
	done
	PATH=$PATH:/usr/sbin
	export PATH
	mkdir -p "$sl/state" "$sl/spool" "$sl/jobs" || return 1
	# munged wants every directory above its socket searchable by all
	chmod 755 "$tmp" "$sl" "$sl/jobs"
	if command -v mungekey >/dev/null 2>&1; then
		mungekey -c -k "$sl/munge.key" 2>"$sl/mungekey.err"
	else
		dd if=/dev/urandom of="$sl/munge.key" bs=1024 count=1 2>/dev/null
	fi
	chmod 600 "$sl/munge.key"
	munged -F --socket="$sl/munge.sock" --key-file="$sl/munge.key" --pid-file="$sl/munged.pid" \
		--log-file="$sl/munged.log" --seed-file="$sl/munged.seed" >"$sl/munged.out" 2>&1 &
	munge_pid=$!
	i=0
	while ! [ -S "$sl/munge.sock" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	if ! [ -S "$sl/munge.sock" ]; then
		why="munged did not start: $(tail -n 1 "$sl/munged.out")"
		return 1
	fi
	# ports: two free ones from the process id; slurmctld fails on a used port,
	# and then the next pair is tried
	for try in 1 2 3; do
		port=$((20000 + ($$ * 7 + try * 101) % 30000))
		slurm_conf "$port" && slurm_daemons && return 0
		for p in $pids; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
		pids=
	done
	return 1
}

# slurm_conf PORT: the configuration of a one-node cluster under $sl
slurm_conf() {
	cat >"$sl/slurm.conf" <<EOF
ClusterName=linestest
SlurmctldHost=localhost
SlurmctldPort=$1
SlurmdPort=$(($1 + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sl/munge.sock
StateSaveLocation=$sl/state
SlurmdSpoolDir=$sl/spool
SlurmctldPidFile=$sl/slurmctld.pid
SlurmdPidFile=$sl/slurmd.pid
SlurmctldLogFile=$sl/slurmctld.log
SlurmdLogFile=$sl/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
MinJobAge=3600
NodeName=localhost CPUs=$(nproc) RealMemory=100 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
	SLURM_CONF=$sl/slurm.conf
	export SLURM_CONF
}

# slurm_daemons: start slurmctld and slurmd, wait until the node is idle
slurm_daemons() {
	slurmctld -D -c -i >"$sl/slurmctld.out" 2>&1 &
	pids="$pids $!"
	slurmd -D -N localhost >"$sl/slurmd.out" 2>&1 &
	pids="$pids $!"
	i=0
	while [ $i -lt 300 ]; do
		st=$(sinfo -h -N -o %t 2>/dev/null)
		[ "$st" = idle ] && return 0
		for p in $pids; do
			if ! kill -0 "$p" 2>/dev/null; then
				why="a daemon exited: $(tail -n 1 "$sl/slurmctld.log" "$sl/slurmd.log" 2>/dev/null | tr '\n' ' ')"
				return 1
			fi
		done
		sleep 0.1
		i=$((i + 1))
	done
	why="the node is not idle after 30 s (state: ${st:-none})"
	return 1
}

# job_state ID: the states of a job (of every task of an array), one a line
job_state() { scontrol -o show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | sort -u; }

# wait_job ID: wait until the job (every task of an array) has ended, for
# up to 5 minutes; succeed when it completed (sbatch --wait does the same
# but polls at growing intervals, up to 10 s here)
wait_job() {
	i=0
	while [ $i -lt 3000 ]; do
		st=$(job_state "$1")
		case $st in
		*PENDING* | *RUNNING* | *CONFIGURING* | *COMPLETING* | "") ;;
		*) break ;;
		esac
		sleep 0.1
		i=$((i + 1))
	done
	echo "# job $1: $st"
	[ "$st" = COMPLETED ]
}

# ---- Slurm up, and a trivial job array of 3 ---------------------------------------------
t0=$(now)
why=
if slurm_start; then
	up=1
	echo "# slurm up in $(elapsed "$t0") s (slurm $(sinfo -V 2>/dev/null | cut -d' ' -f2), as uid $(id -u))"
	ok 0 "a one-node Slurm starts in the temporary directory"
else
	up=
	skip "a one-node Slurm starts: $why"
fi

if [ -n "$up" ]; then
	t1=$(now)
	job=$(sbatch --parsable --array=0-2 -D "$sl/jobs" -o "$sl/jobs/echo-%A_%a.out" \
		--wrap 'echo "task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_TASK_COUNT" >"echo-$SLURM_ARRAY_TASK_ID"')
	wait_job "$job"
	ok $? "sbatch --array=0-2 runs a trivial job array (in $(elapsed "$t1") s)"
	check "... whose three tasks each wrote their file" \
		sh -c "cd '$sl/jobs' && test \"\$(cat echo-0 echo-1 echo-2)\" = \"\$(printf 'task %s of 3\n' 0 1 2)\""
else
	skip "a trivial job array of 3: $why"
	skip "... whose three tasks each wrote their file: $why"
fi

# ---- the merges, by contrib/lines-slurm-submit.sh ---------------------------------------
# slurm_merge NAME [wait|fail]: the merge NAME in 3 parts by the shipped
# scripts, then compared file for file with the run on one machine; with
# wait, lines-slurm-submit.sh --wait waits for the jobs; with fail, the
# merge again with a part that fails, then submitted once more
slurm_merge() {
	merge_args "$1" "$tmp/fam" >"$tmp/$1.args"
	why=$(refused "$tmp/$1.args")
	if [ -n "$why" ]; then
		skip "$(label "$1") as a job array of 3: lines refuses it: $why"
		return
	fi
	one_machine "$tmp/$1.args" "$tmp/one-$1"
	mkdir -p "$tmp/slurm-$1" "$sl/jobs/$1"
	t1=$(now)
	if [ "${2:-}" = wait ]; then
		# --wait: sbatch waits for the last job (polling at growing intervals)
		(cd "$tmp/slurm-$1" && M=3 OUT=out/ ARGS=$tmp/$1.args timeout 300 \
			"$contrib/lines-slurm-submit.sh" --wait -o "$sl/jobs/$1/%x-%A_%a.out" >/dev/null)
	else
		job=$(cd "$tmp/slurm-$1" && M=3 OUT=out/ ARGS=$tmp/$1.args \
			"$contrib/lines-slurm-submit.sh" -o "$sl/jobs/$1/%x-%A_%a.out") && wait_job "$job"
	fi
	st=$?
	how=
	[ "${2:-}" = wait ] && how=" --wait"
	ok $st "$(label "$1"): the job arrays and dependent jobs of lines-slurm-submit.sh$how succeed (in $(elapsed "$t1") s)"
	[ $st -eq 0 ] || tail -n 5 "$sl/jobs/$1"/* 2>/dev/null | sed 's/^/# /'
	check "... and give every file of the run on one machine, byte for byte" same_tree "$tmp/one-$1/out" "$tmp/slurm-$1/out"
	check "... after the rounds -n announces ($(rounds_of "$tmp/$1.args"))" \
		test "$(rounds_run "$tmp/slurm-$1/out.stats")" = "$(rounds_of "$tmp/$1.args")"
	check "... each part a task of a job array (3 logs of lines-write)" \
		test "$(find "$sl/jobs/$1" -name 'lines-write-*_[012].out' | wc -l)" = 3
	[ "${2:-}" = fail ] || return

	# part 1 fails: the index job never runs; submitted again, all is well
	mkdir -p "$tmp/slurm-fail-$1"
	job=$(cd "$tmp/slurm-fail-$1" && M=3 OUT=out/ ARGS=$tmp/$1.args LINES=$tmp/failing-lines \
		"$contrib/lines-slurm-submit.sh" -o "$sl/jobs/fail-%x-%A_%a.out")
	wait_job "$job"
	check "$(label "$1"): when a task of the writing array fails, the index job is cancelled" \
		test "$(job_state "$job")" = CANCELLED
	check "... and OUT has no index and no README.md" \
		test ! -e "$tmp/slurm-fail-$1/out/model.safetensors.index.json" -a ! -e "$tmp/slurm-fail-$1/out/README.md"
	job=$(cd "$tmp/slurm-fail-$1" && M=3 OUT=out/ run_args "$tmp/$1.args" \
		"$contrib/lines-slurm-submit.sh" -o "$sl/jobs/fail-%x-%A_%a.out" --) && wait_job "$job"
	ok $? "... submitted again (the arguments after --), the jobs succeed"
	check "... and give every file of the run on one machine, byte for byte" same_tree "$tmp/one-$1/out" "$tmp/slurm-fail-$1/out"
}

if [ -z "$up" ]; then
	skip "the merges by the Slurm scripts of contrib/: $why"
elif ! has_part; then
	skip "the merges by the Slurm scripts of contrib/: lines has no --part yet"
else
	cluster_family "$tmp/fam"
	failing_lines "$tmp/failing-lines"
	slurm_merge plain wait
	slurm_merge sum fail
	slurm_merge ties
fi

done_testing
