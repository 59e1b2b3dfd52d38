/*
 * t-api.c -- liblines through lines.h alone, as a program that embeds it
 * would use it: no lines program, no internal header.
 *
 * On a small generated family (base + 2 fine-tunes, 4 blocks) the test
 * makes, runs and frees a plan for `sum --lines` and one for `ties
 * --lines`, and checks what lines_plan_info() tells: the number of
 * blocks, the passes, alpha (1/N for a sum of N equal weights, known
 * before the run; measured by the run for TIES), beta = 1 - alpha, and
 * the scale of every block against alpha + beta * i / (L - 1) computed
 * here. lines_verify() passes on each output, with its sidecar and its
 * manifest, and reports a problem (naming a tensor) in a copy with one
 * byte changed.
 *
 * Then the two merges run again at once, in two threads of this process,
 * each with two workers and the mmap reader, to other outputs: both must
 * be byte-identical to the outputs of the same merges run one after the
 * other (twice). Under ThreadSanitizer (.ci/run) this also checks that
 * the library keeps no process-wide state that two plans race on.
 * Finally a SIGBUS raised in the main thread must reach the handler the
 * program installed before its first merge: the library's own handler,
 * which catches truncated mapped inputs in its workers, chains to it. (A
 * library that installed and restored its handler around each pass could,
 * after two overlapping plans, leave behind a handler chaining to itself;
 * that SIGBUS would then loop, and an alarm ends the test. ThreadSanitizer
 * cannot see that race: it keeps signal dispositions itself.)
 */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lines.h"
#include "tap.h"
#include "tutil.h"

#define NLAYERS 4
#define NMODELS 2

static char dir[4200];
static char base[4300], model_path[NMODELS][4300];
static const char *models[NMODELS];

/* What the log callback saw, per call (never shared between threads). */
struct logbook {
	unsigned errors, warnings;
	char first_tensor[512], a_tensor[512]; /* the first, and the last named */
	char first_msg[1024];
};

static void log_cb(void *ctx, enum lines_level level, const char *file, const char *tensor,
                   const char *msg)
{
	struct logbook *lb = ctx;
	(void)file;
	if (level == LINES_LOG_ERROR) {
		if (!lb->errors++) {
			snprintf(lb->first_tensor, sizeof(lb->first_tensor), "%s", tensor);
			snprintf(lb->first_msg, sizeof(lb->first_msg), "%s", msg);
		}
		if (*tensor)
			snprintf(lb->a_tensor, sizeof(lb->a_tensor), "%s", tensor);
	} else if (level == LINES_LOG_WARN) {
		lb->warnings++;
	}
}

static void merge_opts(struct lines_merge_opts *o, int ties, const char *out, struct logbook *lb)
{
	lines_merge_opts_init(o);
	o->base = base;
	o->models = models;
	o->nmodels = NMODELS;
	o->method = ties ? LINES_M_TIES : LINES_M_SUM;
	o->lines = 1;
	o->output = out;
	o->jobs = 2;
	o->io = LINES_IO_MMAP; /* the reader whose pages can raise SIGBUS */
	o->log = log_cb;
	o->cb_ctx = lb;
}

/* Every block's scale is alpha + beta * i / (L - 1); every tensor's is its
 * block's, or alpha outside the blocks. */
static void check_lambda(const char *what, const struct lines_plan *p)
{
	const struct lines_plan_info *in = lines_plan_info(p);
	int bad = 0;

	for (long i = 0; i < in->num_layers; i++) {
		double want = in->alpha + in->beta * (double)i / (double)(in->num_layers - 1);
		if (fabs(in->lambda[i] - want) > 1e-15) {
			diag("%s: block %ld: lambda %.17g, want %.17g", what, i, in->lambda[i],
			     want);
			bad++;
		}
	}
	ok(!bad, "%s: lambda of block i = alpha + beta * i / (L - 1) for the %ld blocks", what,
	   in->num_layers);
	ok(in->lambda_outside == in->alpha, "%s: lambda outside the blocks = alpha", what);

	bad = 0;
	for (size_t i = 0; i < in->ntensors; i++) {
		struct lines_tensor_info ti;
		double lam;
		lines_plan_tensor(p, i, &ti, &lam);
		if (lam != (ti.block >= 0 ? in->lambda[ti.block] : in->lambda_outside)) {
			if (!bad++)
				diag("%s: %s (block %ld): lambda %.17g", what, ti.name, ti.block,
				     lam);
		}
	}
	ok(!bad && in->ntensors > 0, "%s: each of the %zu tensors has its block's lambda", what,
	   in->ntensors);
}

static void check_verify(const char *what, const char *out, size_t ntensors)
{
	struct lines_verify_opts vo = {0};
	struct lines_verify_result r;
	struct lines_error err = {0};
	struct logbook lb = {0};
	int rc;

	vo.log = log_cb;
	vo.cb_ctx = &lb;
	rc = lines_verify(out, &vo, &r, &err);
	if (!ok(rc == 0 && r.sidecar_checked && r.manifest_checked && r.problems == 0 &&
	            r.tensors_checked == ntensors && !r.compressed,
	        "%s: lines_verify: sidecar and manifest checked, %zu tensors, no problem", what,
	        ntensors))
		diag("rc %d (%s), sidecar %d, manifest %d, tensors %zu, problems %zu: %s %s", rc,
		     err.msg, r.sidecar_checked, r.manifest_checked, r.tensors_checked, r.problems,
		     lb.first_tensor, lb.first_msg);
}

/* A copy with the last byte changed (the data of the last tensor in the
 * file, as lines_model_open sees it), checked against the original's
 * sidecar and manifest. */
static void check_corrupt(const char *what, const char *out)
{
	struct lines_model *m = NULL;
	struct lines_tensor_info ti;
	char last[512] = "";
	char copy[4400], side[4400], man[4400];
	struct lines_verify_opts vo = {0};
	struct lines_verify_result r;
	struct lines_error err = {0};
	struct logbook lb = {0};
	unsigned char *buf = NULL;
	long len = 0;
	FILE *f;
	int rc;

	snprintf(copy, sizeof(copy), "%s.bad.safetensors", out);
	snprintf(side, sizeof(side), "%s.xxh128", out);
	snprintf(man, sizeof(man), "%s.manifest.json", out);
	if ((f = fopen(out, "rb")) && fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) > 0 &&
	    (buf = malloc((size_t)len)) && fseek(f, 0, SEEK_SET) == 0 &&
	    fread(buf, 1, (size_t)len, f) == (size_t)len) {
		buf[len - 1] ^= 0x01;
		rc = tu_write_file(copy, buf, (size_t)len);
	} else {
		rc = -1;
	}
	if (f)
		fclose(f);
	free(buf);
	if (!ok(rc == 0, "%s: a copy with one byte changed", what))
		return;
	rc = lines_model_open(out, NULL, &m, &err);
	if (ok(rc == 0 && lines_model_count(m) > 0, "%s: lines_model_open reads the output",
	       what)) {
		lines_model_tensor(m, lines_model_count(m) - 1, &ti);
		snprintf(last, sizeof(last), "%s", ti.name);
	}
	lines_model_close(m);

	vo.checksum_file = side;
	vo.manifest_file = man;
	vo.log = log_cb;
	vo.cb_ctx = &lb;
	rc = lines_verify(copy, &vo, &r, &err);
	if (!ok(rc == LINES_ECORRUPT && r.problems > 0 && lb.errors == r.problems,
	        "%s: lines_verify finds the changed byte (LINES_ECORRUPT, %zu problems logged)",
	        what, r.problems))
		diag("rc %d (%s), problems %zu, errors logged %u", rc, err.msg, r.problems,
		     lb.errors);
	if (!ok(*last && !strcmp(lb.a_tensor, last), "%s: a problem names the changed tensor, %s",
	        what, last))
		diag("first problem: tensor '%s': %s; tensor named: '%s'", lb.first_tensor,
		     lb.first_msg, lb.a_tensor);
}

/* One merge through the API, checked step by step (single thread). */
static void merge_checked(int ties, const char *out)
{
	const char *what = ties ? "ties --lines" : "sum --lines";
	struct lines_merge_opts o;
	struct lines_plan *p = NULL;
	const struct lines_plan_info *in;
	struct lines_error err = {0};
	struct logbook lb = {0};
	int rc;

	merge_opts(&o, ties, out, &lb);
	rc = lines_plan_new(&o, &p, &err);
	if (!ok(rc == 0 && p, "%s: lines_plan_new", what)) {
		diag("%d: %s: %s: %s", rc, err.file, err.tensor, err.msg);
		return;
	}
	in = lines_plan_info(p);
	ok(in->num_layers == NLAYERS, "%s: num_layers %ld (want %d)", what, in->num_layers,
	   NLAYERS);
	ok(in->nfloat == in->ntensors && in->ntensors > 0, "%s: all %zu tensors are merged", what,
	   in->ntensors);
	ok(in->jobs == 2 && in->io && !strcmp(in->io, "mmap"),
	   "%s: 2 workers, mmap reader (%u, %s)", what, in->jobs, in->io ? in->io : "(null)");
	if (!ties) {
		ok(in->npasses == 1 && in->pass_names && !strcmp(in->pass_names[0], "write"),
		   "%s: one pass, the write (%u)", what, in->npasses);
		ok(in->alpha_known && in->alpha == 1.0 / NMODELS,
		   "%s: alpha is 1/N = 0.5 before the run (%.17g)", what, in->alpha);
		ok(in->beta == 1.0 - in->alpha, "%s: beta = 1 - alpha (%.17g)", what, in->beta);
		check_lambda(what, p);
	} else {
		ok(in->npasses >= 2 && in->npasses <= 3 &&
		       !strcmp(in->pass_names[in->npasses - 1], "write"),
		   "%s: 2 or 3 passes, the last one the write (%u)", what, in->npasses);
		ok(!in->alpha_known, "%s: alpha is not known before the run", what);
	}

	rc = lines_plan_run(p, &err);
	if (!ok(rc == 0, "%s: lines_plan_run", what))
		diag("%d: %s: %s: %s", rc, err.file, err.tensor, err.msg);
	in = lines_plan_info(p);
	if (ties) {
		ok(in->alpha_known && isfinite(in->alpha) && in->alpha > 0,
		   "%s: the run measured alpha (%.17g)", what, in->alpha);
		ok(in->beta == fmax(0.0, 1.0 - in->alpha), "%s: beta = 1 - alpha (%.17g)", what,
		   in->beta);
		check_lambda(what, p);
	}
	ok(in->written_bytes == in->output_bytes && in->output_bytes > 0,
	   "%s: %llu bytes written, as planned", what, (unsigned long long)in->written_bytes);
	ok(lb.errors == 0 && lb.warnings == 0, "%s: nothing logged as a warning or an error", what);
	size_t nt = in->ntensors;
	lines_plan_free(p);
	if (rc == 0) {
		check_verify(what, out, nt);
		check_corrupt(what, out);
	}
}

/* ---- two plans at once ------------------------------------------------------ */
struct job {
	int ties;
	char out[4400];
	int rc;
	struct lines_error err;
	struct logbook lb;
};

static void *run_thread(void *arg)
{
	struct job *j = arg;
	struct lines_merge_opts o;
	struct lines_plan *p = NULL;

	merge_opts(&o, j->ties, j->out, &j->lb);
	j->rc = lines_plan_new(&o, &p, &j->err);
	if (j->rc == 0)
		j->rc = lines_plan_run(p, &j->err);
	lines_plan_free(p);
	return NULL;
}

static void concurrent(const char *seq_sum, const char *seq_ties, int round)
{
	struct job jobs[2] = {{.ties = 0}, {.ties = 1}};
	pthread_t tid[2];
	int started[2];

	for (int i = 0; i < 2; i++) {
		snprintf(jobs[i].out, sizeof(jobs[i].out), "%s/par%d-%s.safetensors", dir, round,
		         jobs[i].ties ? "ties" : "sum");
		started[i] = pthread_create(&tid[i], NULL, run_thread, &jobs[i]) == 0;
	}
	for (int i = 0; i < 2; i++)
		if (started[i])
			pthread_join(tid[i], NULL);
	for (int i = 0; i < 2; i++) {
		const char *what = jobs[i].ties ? "ties --lines" : "sum --lines";
		if (!ok(started[i] && jobs[i].rc == 0, "round %d: %s in a thread beside the other",
		        round, what)) {
			diag("%d: %s: %s: %s", jobs[i].rc, jobs[i].err.file, jobs[i].err.tensor,
			     jobs[i].err.msg);
			continue;
		}
		ok(tu_run("cmp -s '%s' '%s'", jobs[i].ties ? seq_ties : seq_sum, jobs[i].out) == 0,
		   "round %d: %s: the same bytes as when run alone", round, what);
	}
}

/* ---- the program's own SIGBUS handler ------------------------------------ */
/* consensus's options through the API: k at most N, TALL lambdas >= 0 */
static void consensus_api(struct lines_merge_opts *o)
{
	struct lines_plan *p = NULL;
	struct lines_error err;
	double tl[NMODELS];
	o->method = LINES_M_CONSENSUS;
	o->nmodels = NMODELS;
	ok(o->consensus_k == 2 && o->tall_lambda == 0.4 && !o->tall_lambdas,
	   "consensus defaults: k 2, TALL lambda 0.4 for every model");
	o->consensus_k = NMODELS + 1;
	int rc = lines_plan_new(o, &p, &err);
	ok(rc == LINES_EUSAGE && !p, "consensus with k = N + 1: LINES_EUSAGE (%d)", rc);
	o->consensus_k = NMODELS;
	for (int i = 0; i < NMODELS; i++)
		tl[i] = i == NMODELS - 1 ? -0.5 : 0.3;
	o->tall_lambdas = tl;
	rc = lines_plan_new(o, &p, &err);
	ok(rc == LINES_EUSAGE && !p, "consensus with a negative TALL lambda: LINES_EUSAGE (%d)", rc);
	tl[NMODELS - 1] = 0.6;
	rc = lines_plan_new(o, &p, &err);
	ok(rc == 0 && p, "consensus with k = N and TALL lambdas per model: a plan (%d: %s)", rc,
	   rc ? err.msg : "");
	lines_plan_free(p);
}

/* ram's and ramplus_tl's options through the API: no weights, epsilon >= 0 */
static void ram_api(struct lines_merge_opts *o)
{
	struct lines_plan *p = NULL;
	struct lines_error err;
	double w[NMODELS];
	o->tall_lambdas = NULL;
	o->method = LINES_M_RAMPLUS_TL;
	o->nmodels = NMODELS;
	ok(o->ram_epsilon == 1e-5 && o->ram_r == 0.1 && o->ram_alpha == 0.2,
	   "ram defaults: epsilon 1e-5, r 0.1, alpha 0.2");
	for (int i = 0; i < NMODELS; i++)
		w[i] = 1;
	o->weights = w;
	int rc = lines_plan_new(o, &p, &err);
	ok(rc == LINES_EUSAGE && !p, "ramplus_tl with weights: LINES_EUSAGE (%d)", rc);
	o->weights = NULL;
	o->ram_epsilon = -1e-9;
	rc = lines_plan_new(o, &p, &err);
	ok(rc == LINES_EUSAGE && !p, "ramplus_tl with a negative epsilon: LINES_EUSAGE (%d)", rc);
	o->ram_epsilon = 0;
	o->ram_alpha = -1;
	rc = lines_plan_new(o, &p, &err);
	ok(rc == LINES_EUSAGE && !p, "ramplus_tl with a negative alpha: LINES_EUSAGE (%d)", rc);
	o->ram_alpha = 0.2;
	o->method = LINES_M_RAM;
	rc = lines_plan_new(o, &p, &err);
	ok(rc == 0 && p, "ram with epsilon 0: a plan (%d: %s)", rc, rc ? err.msg : "");
	lines_plan_free(p);
}

/* The methods' names and options through the API, and a plan without a
 * base for the method that needs none. */
static void methods_api(void)
{
	enum lines_method m = LINES_M_DARE, s = LINES_M_DARE;
	ok(lines_method_parse("task_arithmetic", &m) == 0 && lines_method_parse("sum", &s) == 0 &&
	       m == s && !strcmp(lines_method_name(m), "sum"),
	   "task_arithmetic parses to sum, whose one name is sum");
	ok(lines_method_parse("linear", &m) == 0 && m == LINES_M_LINEAR &&
	       (lines_method_options(m) & (LINES_MOPT_NO_BASE | LINES_MOPT_NORMALIZE | LINES_MOPT_WEIGHTS)) ==
	           (LINES_MOPT_NO_BASE | LINES_MOPT_NORMALIZE | LINES_MOPT_WEIGHTS) &&
	       !(lines_method_options(m) & LINES_MOPT_T),
	   "linear: may go without a base, takes --normalize and weights, not t");
	ok(lines_method_parse("nearswap", &m) == 0 && m == LINES_M_NEARSWAP &&
	       lines_method_options(m) == (LINES_MOPT_T | LINES_MOPT_ONE_MODEL),
	   "nearswap: takes t and one model, nothing else");
	ok(!(lines_method_options(LINES_M_SUM) & LINES_MOPT_NO_BASE), "sum needs a base");
	ok(lines_method_parse("consensus", &m) == 0 && m == LINES_M_CONSENSUS &&
	       lines_method_options(m) == (LINES_MOPT_CONSENSUS | LINES_MOPT_WEIGHTS |
	                                   LINES_MOPT_DENSITY | LINES_MOPT_TRIM |
	                                   LINES_MOPT_NORMALIZE),
	   "consensus: takes its k and TALL lambdas and weights, needs a base, and TIES's "
	   "density, trim and normalize (--consensus-over ties)");
	ok(lines_method_parse("ram", &m) == 0 && m == LINES_M_RAM &&
	       lines_method_options(m) == LINES_MOPT_EPSILON &&
	       lines_method_parse("ramplus_tl", &m) == 0 && m == LINES_M_RAMPLUS_TL &&
	       lines_method_options(m) == (LINES_MOPT_EPSILON | LINES_MOPT_RAM),
	   "ram takes epsilon, ramplus_tl also r and alpha; no weights, a base");

	struct lines_merge_opts o;
	struct lines_plan *p = NULL;
	struct lines_error err;
	struct logbook lb = {0};
	merge_opts(&o, 0, "-", &lb);
	o.lines = 0;
	o.base = NULL;
	int rc = lines_plan_new(&o, &p, &err);
	ok(rc == LINES_EUSAGE && !p, "sum without a base: LINES_EUSAGE (%d)", rc);
	o.method = LINES_M_LINEAR;
	rc = lines_plan_new(&o, &p, &err);
	ok(rc == 0 && p && lines_plan_info(p)->ntensors > 0, "linear without a base: a plan (%d: %s)",
	   rc, rc ? err.msg : "");
	lines_plan_free(p);
	p = NULL;
	o.lines = 1;
	rc = lines_plan_new(&o, &p, &err);
	ok(rc == LINES_EUSAGE && !p, "linear without a base, with LiNeS: LINES_EUSAGE (%d)", rc);
	o.lines = 0;
	o.base = base;
	o.method = LINES_M_NEARSWAP;
	o.t = 0.01;
	rc = lines_plan_new(&o, &p, &err);
	ok(rc == LINES_EUSAGE && !p, "nearswap of %d models: LINES_EUSAGE (%d)", NMODELS, rc);
	o.nmodels = 1;
	o.t = 0;
	rc = lines_plan_new(&o, &p, &err);
	ok(rc == LINES_EUSAGE && !p, "nearswap with t = 0: LINES_EUSAGE (%d)", rc);
	consensus_api(&o);
	ram_api(&o);
}

static volatile sig_atomic_t bus_seen;
static void on_bus(int sig)
{
	(void)sig;
	bus_seen++;
}

/* A GGUF output cut short: lines_verify() finds the header's problem and
 * the checksum's, and does not also count the tensors of a header it
 * could not read. */
static void gguf_truncated(void)
{
	char gen[4400], gdir[4300], out[4400];
	struct lines_verify_opts vo = {0};
	struct lines_verify_result r = {0};
	struct lines_error err = {0};
	const char *slash = strrchr(tu_gen(), '/');
	snprintf(gen, sizeof(gen), "%.*sgen-gguf", slash ? (int)(slash - tu_gen() + 1) : 0, tu_gen());
	snprintf(gdir, sizeof(gdir), "%s/gg", tu_tmpdir());
	snprintf(out, sizeof(out), "%s/cut.gguf", gdir);
	if (!ok(tu_run("'%s' --type f16 --layers 2 --hidden 256 --models 1 --seed 3 --out '%s'", gen,
	               gdir) == 0 &&
	            tu_run("'%s' merge -q -b '%s/base.gguf' --lambda 0.5 -o '%s' '%s/ft1.gguf'",
	                   tu_lines(), gdir, out, gdir) == 0 &&
	            truncate(out, 20000) == 0,
	        "a GGUF merge, cut to 20000 bytes"))
		return;
	int rc = lines_verify(out, &vo, &r, &err);
	ok(rc == LINES_ECORRUPT && r.manifest_checked && r.sidecar_checked && r.problems == 2,
	   "lines_verify of the cut GGUF: 2 problems (its header, its XXH3-128), no tensor count "
	   "(got rc %d, %zu)",
	   rc, r.problems);
}

int main(void)
{
	char seq_sum[4400], seq_ties[4400];
	struct sigaction sa;

	lines_cancel_reset();
	/* installed before any merge: the library's handler must chain to it */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_bus;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	snprintf(dir, sizeof(dir), "%s/fam", tu_tmpdir());
	if (tu_run("'%s' --arch llama --dtype bf16 --layers %d --hidden 64 --models %d --seed 29 "
	           "--out '%s'",
	           tu_gen(), NLAYERS, NMODELS, dir) != 0) {
		fprintf(stderr, "gen-family: %s\n", tu_stderr);
		return 99;
	}
	snprintf(base, sizeof(base), "%s/base.safetensors", dir);
	for (int i = 0; i < NMODELS; i++) {
		snprintf(model_path[i], sizeof(model_path[i]), "%s/ft%d.safetensors", dir, i + 1);
		models[i] = model_path[i];
	}

	snprintf(seq_sum, sizeof(seq_sum), "%s/sum.safetensors", dir);
	snprintf(seq_ties, sizeof(seq_ties), "%s/ties.safetensors", dir);
	merge_checked(0, seq_sum);
	merge_checked(1, seq_ties);
	methods_api();
	gguf_truncated();

	for (int round = 1; round <= 2; round++)
		concurrent(seq_sum, seq_ties, round);

	/* A SIGBUS outside the workers is not the library's: it reaches the
	 * handler the program had, however the plans before overlapped (a
	 * handler restored by one plan while another ran could loop forever:
	 * the alarm ends that) */
	alarm(60);
	raise(SIGBUS);
	alarm(0);
	ok(bus_seen == 1,
	   "after plans ran at once, a SIGBUS in the main thread reaches the "
	   "program's own handler (%d)",
	   (int)bus_seen);

	tu_cleanup();
	return tap_done();
}
