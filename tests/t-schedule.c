/*
 * t-schedule.c -- LiNeS's depth schedule (--schedule F0,F1,...): every
 * merged element against a float64 reference computed here, on generated
 * Llama (one stack of 7 blocks) and T5 (encoder 6 and decoder 3 blocks,
 * a ramp each) families in BF16, F16 and F32.
 *
 * Per element, in double precision,
 *     t      = i / (L_s - 1) for block i of its stack of L_s blocks (0 when L_s = 1)
 *     f(t)   = the piecewise-linear curve through F0..Fk at t = 0, 1/k, ..., 1
 *     lambda = alpha + beta f(t) in a block, alpha outside the blocks
 *     ref    = theta_0 + lambda sum_i w_i (theta_i - theta_0)
 * within one ULP of the output dtype (plus the reference's own 2^-48
 * where the operands cancel), as t-math.c. f is written here from its
 * definition, not taken from liblines. Besides: a schedule of two points
 * that is the linear ramp gives the very tensor bytes of --alpha/--beta;
 * automatic alpha does not depend on the schedule; --stacks joint runs
 * the schedule over the deepest stack's depth; a sweep of beta with a
 * schedule writes the bytes of each value's own run; -j1 --chunk 64K --io
 * mmap and LINES_ISA=scalar give the same bytes; bad schedules are refused
 * (exit 2, nothing written).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "lines.h"
#include "tap.h"
#include "tutil.h"

#define N_MODELS 3

struct family {
	const char *arch, *dtype;
	char dir[4200];
	struct tu_model base, ft[N_MODELS];
	/* the stacks: the name's first component (model, encoder, decoder) */
	char stack[4][32];
	long L[4];
	size_t nstacks;
};

/* The stack of a block's tensor: its index in f->stack, added when new. */
static size_t stack_of(struct family *f, const char *name)
{
	char key[32];
	size_t n = strcspn(name, ".");
	if (n >= sizeof(key))
		n = sizeof(key) - 1;
	memcpy(key, name, n);
	key[n] = 0;
	for (size_t k = 0; k < f->nstacks; k++)
		if (!strcmp(f->stack[k], key))
			return k;
	if (f->nstacks == 4)
		return 3;
	strcpy(f->stack[f->nstacks], key);
	f->L[f->nstacks] = 0;
	return f->nstacks++;
}

/* f(t) through g[0..n-1] at evenly spaced t, from its definition: on
 * [k/(n-1), (k+1)/(n-1)] the line from g[k] to g[k+1]. */
static double shape(const double *g, int n, double t)
{
	if (t <= 0)
		return g[0];
	if (t >= 1)
		return g[n - 1];
	double pos = t * (n - 1);
	int k = (int)floor(pos);
	double u = pos - k;
	return g[k] + u * (g[k + 1] - g[k]);
}

struct sched {
	const char *name;
	const char *opts; /* after -b BASE */
	int n;
	double g[6];
	int alpha_auto;
	double alpha, beta; /* beta NAN: max(0, 1 - alpha) */
	double w[N_MODELS];
	int joint; /* --stacks joint: one ramp over the deepest stack's depth */
};

static const struct sched cases[] = {
    {"3 points, alpha 0.3 beta 0.7",
     "--alpha 0.3 --beta 0.7 --schedule 0.1,0.5,1",
     3,
     {0.1, 0.5, 1},
     0,
     0.3,
     0.7,
     {1, 1, 1},
     0},
    {"4 points, not monotone, weighted",
     "-w 0.5,-0.25,1.5 --alpha 0.2 --beta 0.6 --schedule 0,1,0.25,0.5",
     4,
     {0, 1, 0.25, 0.5},
     0,
     0.2,
     0.6,
     {0.5, -0.25, 1.5},
     0},
    {"3 points, automatic alpha, weighted",
     "-w 1,2,0.5 --lines --schedule 0,0,1",
     3,
     {0, 0, 1},
     1,
     0,
     NAN,
     {1, 2, 0.5},
     0},
    {"5 points with --gamma 0.4",
     "--gamma 0.4 --schedule 0,0.8,1,1,1",
     5,
     {0, 0.8, 1, 1, 1},
     0,
     0.4,
     0.6,
     {1, 1, 1},
     0},
    {"2 points beyond [0, 1], negative beta",
     "--alpha 0.9 --beta -0.5 --schedule -0.2,1.3",
     2,
     {-0.2, 1.3},
     0,
     0.9,
     -0.5,
     {1, 1, 1},
     0},
    {"3 points, --stacks joint",
     "--alpha 0.2 --beta 0.8 --stacks joint --schedule 0,0.9,1",
     3,
     {0, 0.9, 1},
     0,
     0.2,
     0.8,
     {1, 1, 1},
     1},
};

static int merge(const struct family *f, const char *env, const char *opts, const char *out)
{
	return tu_run("%s '%s' merge -q -b '%s/base.safetensors' %s -o '%s' '%s/ft1.safetensors' "
	              "'%s/ft2.safetensors' '%s/ft3.safetensors'",
	              env, tu_lines(), f->dir, opts, out, f->dir, f->dir, f->dir);
}

/* Every tensor of A and B has the same dtype and bytes. */
static int same_tensors(const char *a, const char *b)
{
	struct tu_model ma, mb;
	int same = tu_model_load(&ma, a) == 0;
	if (!same)
		return 0;
	if (tu_model_load(&mb, b)) {
		tu_model_free(&ma);
		return 0;
	}
	same = ma.n == mb.n;
	for (size_t i = 0; same && i < ma.n; i++) {
		const struct tu_tensor *x = &ma.t[i], *y = tu_model_find(&mb, x->name);
		same = y && !strcmp(x->dtype, y->dtype) && x->nbytes == y->nbytes &&
		       !memcmp(x->data, y->data, x->nbytes);
	}
	tu_model_free(&ma);
	tu_model_free(&mb);
	return same;
}

static double meta_num(const char *path, const char *key)
{
	struct tu_model m;
	if (tu_model_load(&m, path))
		return NAN;
	const char *v = tu_model_meta(&m, key);
	double d = v ? strtod(v, NULL) : NAN;
	tu_model_free(&m);
	return d;
}

/* Every element of OUT against the reference of case S. */
static void check_elements(struct family *f, const struct sched *s, const char *out)
{
	struct tu_model om;
	if (!ok(tu_model_load(&om, out) == 0, "%s/%s %s: the output reads", f->arch, f->dtype,
	        s->name))
		return;
	double alpha = s->alpha, beta = s->beta;
	const char *rec = tu_model_meta(&om, "lines.alpha");
	if (s->alpha_auto)
		alpha = rec ? strtod(rec, NULL) : NAN;
	if (isnan(beta))
		beta = fmax(0.0, 1.0 - alpha);
	uint64_t checked = 0, bad = 0, cancel = 0;
	double worst = 0;
	char first_bad[512] = "";
	for (size_t ti = 0; ti < f->base.n; ti++) {
		const struct tu_tensor *b = &f->base.t[ti], *o = tu_model_find(&om, b->name);
		if (!tu_is_float(b))
			continue;
		if (!o || strcmp(o->dtype, b->dtype)) {
			bad++;
			snprintf(first_bad, sizeof(first_bad), "%s: missing or another dtype",
			         b->name);
			continue;
		}
		long blk = tu_block_of(b->name);
		double lam = alpha;
		if (blk >= 0) {
			long L = f->L[stack_of(f, b->name)];
			for (size_t k = 0; s->joint && k < f->nstacks; k++)
				L = f->L[k] > L ? f->L[k] : L;
			lam = alpha +
			      beta * shape(s->g, s->n, L > 1 ? (double)blk / (double)(L - 1) : 0);
		}
		const struct tu_tensor *x[N_MODELS];
		for (unsigned i = 0; i < N_MODELS; i++)
			x[i] = tu_model_find(&f->ft[i], b->name);
		for (uint64_t e = 0; e < b->nelem; e++) {
			float bv = tu_elem(b, e);
			double tau = 0, mag = 0;
			for (unsigned i = 0; i < N_MODELS; i++) {
				float t = tu_elem(x[i], e) - bv;
				tau += s->w[i] * (double)t;
				mag += fabs(s->w[i] * (double)t);
			}
			double ref = (double)bv + lam * tau, got = tu_elem(o, e);
			double err = fabs(got - ref), ulp = tu_ulp(o->dtype, ref);
			int fine = err <= ulp + 0x1p-48 * (fabs(bv) + fabs(lam) * mag);
			if (err > ulp)
				cancel++;
			else if (err / ulp > worst)
				worst = err / ulp;
			checked++;
			if (!fine && !bad++)
				snprintf(first_bad, sizeof(first_bad),
				         "%s[%llu]: got %.9g, reference %.17g (lambda %.17g)",
				         b->name, (unsigned long long)e, got, ref, lam);
		}
	}
	if (!ok(bad == 0 && checked > 0,
	        "%s/%s %s: %llu elements within 1 ULP of the float64 reference (worst %.3f ULP; "
	        "%llu "
	        "cancel)",
	        f->arch, f->dtype, s->name, (unsigned long long)checked, worst,
	        (unsigned long long)cancel))
		diag("%llu bad; first: %s", (unsigned long long)bad, first_bad);
	tu_model_free(&om);
}

static void run_family(struct family *f, int first)
{
	char out[4400], out2[4400];
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const struct sched *s = &cases[c];
		snprintf(out, sizeof(out), "%s/case%zu.safetensors", f->dir, c);
		if (!ok(merge(f, "", s->opts, out) == 0, "%s/%s %s: merge", f->arch, f->dtype,
		        s->name)) {
			diag("%s", tu_stderr);
			continue;
		}
		check_elements(f, s, out);
	}

	/* the linear ramp as a schedule: the same tensors, bit for bit */
	static const char *const same[][2] = {
	    {"--alpha 0.3 --beta 0.7 --schedule 0,1", "--alpha 0.3 --beta 0.7"},
	    {"--alpha 0.3 --beta 1.4 --schedule 0,0.5", "--alpha 0.3 --beta 0.7"},
	    {"-w 1,2,0.5 --lines --schedule 0,1", "-w 1,2,0.5 --lines"},
	    {"--gamma 0.25 --schedule 0,1", "--gamma 0.25"},
	};
	for (size_t k = 0; k < sizeof(same) / sizeof(same[0]); k++) {
		snprintf(out, sizeof(out), "%s/same%zua.safetensors", f->dir, k);
		snprintf(out2, sizeof(out2), "%s/same%zub.safetensors", f->dir, k);
		int rc = merge(f, "", same[k][0], out) | merge(f, "", same[k][1], out2);
		ok(rc == 0 && same_tensors(out, out2), "%s/%s: %s gives the tensors of %s", f->arch,
		   f->dtype, same[k][0], same[k][1]);
	}
	/* automatic alpha is LiNeS's, whatever the schedule */
	snprintf(out, sizeof(out), "%s/case2.safetensors", f->dir);
	snprintf(out2, sizeof(out2), "%s/same2b.safetensors", f->dir);
	double a1 = meta_num(out, "lines.alpha"), a2 = meta_num(out2, "lines.alpha");
	ok(a1 == a2 && a1 > 0,
	   "%s/%s: automatic alpha with a schedule is the ramp's (%.17g, %.17g)", f->arch, f->dtype,
	   a1, a2);
	if (!first)
		return;
	/* a sweep with a schedule: each output is what its value alone writes */
	char tmpl[4400];
	snprintf(tmpl, sizeof(tmpl), "%s/sweep-{beta}.safetensors", f->dir);
	snprintf(out, sizeof(out), "%s/sweep-0.6.safetensors", f->dir);
	snprintf(out2, sizeof(out2), "%s/sweep-one.safetensors", f->dir);
	int rs = merge(f, "", "--alpha 0.3 --beta 0.4,0.6 --schedule 0.1,0.5,1", tmpl) |
	         merge(f, "", "--alpha 0.3 --beta 0.6 --schedule 0.1,0.5,1", out2);
	ok(rs == 0 && tu_run("cmp -s '%s' '%s'", out, out2) == 0,
	   "%s/%s: a sweep of beta with a schedule: each output is the run of its value, byte for "
	   "byte",
	   f->arch, f->dtype);
	/* the same bytes whatever runs it */
	snprintf(out, sizeof(out), "%s/case0.safetensors", f->dir);
	snprintf(out2, sizeof(out2), "%s/case0-j1.safetensors", f->dir);
	int rc = merge(
	    f, "", "-j1 --chunk 64K --io mmap --alpha 0.3 --beta 0.7 --schedule 0.1,0.5,1", out2);
	ok(rc == 0 && same_tensors(out, out2), "%s/%s: -j1 --chunk 64K --io mmap: the same tensors",
	   f->arch, f->dtype);
	rc = merge(f, "LINES_ISA=scalar", "-j2 --alpha 0.3 --beta 0.7 --schedule 0.1,0.5,1", out2);
	ok(rc == 0 && same_tensors(out, out2), "%s/%s: LINES_ISA=scalar: the same tensors", f->arch,
	   f->dtype);
}

static void refusals(const struct family *f)
{
	static const char *const bad[][2] = {
	    {"--lines --schedule ''", "an empty schedule"},
	    {"--lines --schedule a,b", "not numbers"},
	    {"--lines --schedule 0,,1", "an empty value"},
	    {"--lines --schedule 0,inf", "an infinite value"},
	    {"--lines --schedule 0.5", "one value"},
	    {"--schedule 0,1", "without LiNeS"},
	    {"--schedule 0,1 --lambda 0.5", "with --lambda"},
	    {"--lines --schedule 0,1 --schedule 0,0.5,1", "given twice"},
	};
	char out[4400];
	snprintf(out, sizeof(out), "%s/refused.safetensors", f->dir);
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		int rc = merge(f, "", bad[k][0], out);
		ok(rc == 2 && !tu_exists(out), "%s (%s): exit 2 (got %d), nothing written",
		   bad[k][1], bad[k][0], rc);
	}
}

/* The library itself: lines_merge_opts.schedule checked, and the plan's
 * lambda per block (before a run) from it. */
static void library(const struct family *f)
{
	char base[4400], m1[4400], m2[4400], out[4400];
	snprintf(base, sizeof(base), "%s/base.safetensors", f->dir);
	snprintf(m1, sizeof(m1), "%s/ft1.safetensors", f->dir);
	snprintf(m2, sizeof(m2), "%s/ft2.safetensors", f->dir);
	snprintf(out, sizeof(out), "%s/api.safetensors", f->dir);
	const char *models[] = {m1, m2};
	static const double one[] = {0.5}, inf[] = {0, INFINITY}, g[] = {0.1, 0.5, 1};
	struct {
		const char *what;
		int lines;
		const double *sched;
		size_t n;
		int want;
	} c[] = {
	    {"one value", 1, one, 1, LINES_EUSAGE},
	    {"an infinite value", 1, inf, 2, LINES_EUSAGE},
	    {"without LiNeS", 0, g, 3, LINES_EUSAGE},
	    {"three values", 1, g, 3, 0},
	};
	for (size_t k = 0; k < sizeof(c) / sizeof(c[0]); k++) {
		struct lines_merge_opts o;
		struct lines_plan *p = NULL;
		struct lines_error err;
		lines_merge_opts_init(&o);
		o.base = base, o.models = models, o.nmodels = 2, o.output = out;
		o.lines = c[k].lines, o.alpha_auto = 0, o.alpha = 0.3, o.beta = 0.7;
		o.schedule = c[k].sched, o.nschedule = c[k].n;
		int rc = lines_plan_new(&o, &p, &err);
		ok(rc == c[k].want, "library: a schedule, %s: %d (want %d)", c[k].what, rc,
		   c[k].want);
		if (rc == 0) {
			const struct lines_plan_info *in = lines_plan_info(p);
			int bad = !in->lambda || in->num_layers != 7;
			for (long i = 0; !bad && i < in->num_layers; i++)
				bad = fabs(in->lambda[i] - (0.3 + 0.7 * shape(g, 3, i / 6.0))) >
				      1e-15;
			ok(!bad && in->lambda_outside == 0.3,
			   "library: the plan's lambda of each block is alpha + beta f(i / 6), "
			   "alpha "
			   "outside");
		}
		lines_plan_free(p);
	}
	/* lines inspect --norms --schedule: its lambda column */
	char js[4400];
	snprintf(js, sizeof(js), "%s/inspect.json", f->dir);
	int rc = tu_run("'%s' inspect --norms --json -b '%s' --alpha 0.3 --beta 0.7 --schedule "
	                "0.1,0.5,1 '%s' >'%s'",
	                tu_lines(), base, m1, js);
	json_error_t je;
	json_t *root = rc == 0 ? json_load_file(js, 0, &je) : NULL,
	       *blocks = json_object_get(root, "blocks");
	int bad = !json_is_array(blocks) || json_array_size(blocks) != 8;
	for (size_t i = 0; !bad && i < 8; i++) {
		double want = i < 7 ? 0.3 + 0.7 * shape(g, 3, (double)i / 6.0) : 0.3;
		bad = fabs(json_real_value(json_object_get(json_array_get(blocks, i), "lambda")) -
		           want) > 1e-15;
	}
	ok(!bad,
	   "lines inspect --norms --schedule: lambda of each block (and outside) as the plan's");
	json_decref(root);
}

int main(void)
{
	static const char *const archs[] = {"llama", "t5"};
	static const char *const dtypes[] = {"bf16", "f16", "f32"};
	int refused = 0;

	for (size_t a = 0; a < 2; a++)
		for (size_t d = 0; d < 3; d++) {
			struct family f = {archs[a], dtypes[d], "", {0}, {{0}}, {{0}}, {0}, 0};
			snprintf(f.dir, sizeof(f.dir), "%s/%s-%s", tu_tmpdir(), f.arch, f.dtype);
			int rc = tu_run(
			    "'%s' --arch %s --dtype %s --layers %d --layers2 3 --hidden 24 "
			    "--models %d --seed %zu --out '%s'",
			    tu_gen(), f.arch, f.dtype, a ? 6 : 7, N_MODELS, 40 + a * 3 + d, f.dir);
			if (!ok(rc == 0, "generate %s/%s family", f.arch, f.dtype))
				continue;
			char p[4400];
			snprintf(p, sizeof(p), "%s/base.safetensors", f.dir);
			int loaded = tu_model_load(&f.base, p) == 0;
			for (int i = 0; i < N_MODELS; i++) {
				snprintf(p, sizeof(p), "%s/ft%d.safetensors", f.dir, i + 1);
				loaded &= tu_model_load(&f.ft[i], p) == 0;
			}
			if (!ok(loaded, "read %s/%s family", f.arch, f.dtype))
				continue;
			for (size_t i = 0; i < f.base.n; i++) {
				long blk = tu_block_of(f.base.t[i].name);
				if (blk >= 0) {
					size_t k = stack_of(&f, f.base.t[i].name);
					if (blk + 1 > f.L[k])
						f.L[k] = blk + 1;
				}
			}
			if (a == 0)
				ok(f.nstacks == 1 && f.L[0] == 7, "llama: one stack of 7 blocks");
			else
				ok(f.nstacks == 2 && f.L[0] + f.L[1] == 9 &&
				       (f.L[0] == 3 || f.L[1] == 3),
				   "t5: stacks of 6 and 3 blocks");
			run_family(&f, d == 0);
			if (!refused++) {
				refusals(&f);
				library(&f);
			}
			tu_model_free(&f.base);
			for (int i = 0; i < N_MODELS; i++)
				tu_model_free(&f.ft[i]);
		}
	tu_cleanup();
	return tap_done();
}
