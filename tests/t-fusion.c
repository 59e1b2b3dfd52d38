/*
 * t-fusion.c -- -m arcee_fusion against a float64 reference written here
 * from mergekit's formula (lines-merge(1)):
 *     tau = x - b                                  (float32, as lines defines it)
 *     per row of the last dimension (the whole tensor for rank 0 and 1):
 *       p = softmax(x_row) + 1e-8, q = softmax(b_row) + 1e-8 (float64,
 *       max-subtracted), kl = sum_j p_j log(p_j / q_j) in row order
 *     imp = (float)(|tau| kl)
 *     per tensor: the importances sorted in full (qsort, NaN last), Q(q)
 *     the element of index floor(q (n - 1)), thr = Q(.5) + 1.5 (Q(.75) - Q(.25))
 *     ref = b + lambda [imp >= thr] tau
 * Every element within one ULP of the output dtype (BF16, F16, F32 and F64
 * -- tau in float64 there -- llama families and a clip F32 family with a
 * 4-D convolution), with and without
 * LiNeS (automatic alpha = ||tau|| / ||m tau||, L1); each tensor's
 * quantiles, threshold and kept count in the manifest equal the sort's
 * (also with NaN, infinities and subnormals in the inputs);
 * the same bytes for -j, --chunk, --io and LINES_ISA, and whether the
 * select pass keeps the rows' KL for the later passes or they compute
 * them again (LINES_TEST_FUSION_KL_ROWS); three models and no
 * base refused (exit 2, nothing written).
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "tutil.h"

struct fam {
	char dir[4200];
	struct tu_model b, x;
	long L;
};

struct scen {
	const char *name, *args;
	double lambda, alpha, beta; /* beta 0: lambda for every tensor; alpha < 0: automatic */
};

/* What the test finds for a tensor. */
struct cut {
	float q[3];
	double thr;
	uint64_t kept;
	float *imp; /* nelem */
};

static int cmpf(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	if (x != x || y != y) /* NaN last, as torch.sort */
		return (x != x) - (y != y);
	return x < y ? -1 : x > y;
}

/* tau: float32, or float64 for F64 tensors (written as F64) */
static double tau_of(const struct tu_tensor *x, const struct tu_tensor *b, uint64_t e)
{
	if (!strcmp(b->dtype, "F64"))
		return tu_elem64(x, e) - tu_elem64(b, e);
	return (double)(tu_elem(x, e) - tu_elem(b, e)); /* a float32 subtraction */
}

static double softmax_terms(const double *v, uint64_t r, double *e)
{
	double mx = -INFINITY, s = 0;
	for (uint64_t j = 0; j < r; j++)
		if (v[j] > mx)
			mx = v[j];
	for (uint64_t j = 0; j < r; j++) {
		e[j] = exp(v[j] - mx);
		s += e[j];
	}
	return s;
}

static void find_cut(const struct tu_tensor *b, const struct tu_tensor *x, struct cut *c)
{
	uint64_t n = b->nelem, r = b->rank < 2 ? n : b->shape[b->rank - 1];
	double *xv = calloc(r + 1, sizeof(double)), *bv = calloc(r + 1, sizeof(double));
	double *e1 = malloc(r * sizeof(double)), *e2 = malloc(r * sizeof(double));
	float *s = malloc(n * sizeof(float));
	c->imp = malloc(n * sizeof(float));
	for (uint64_t j0 = 0; j0 < n; j0 += r) {
		for (uint64_t j = 0; j < r; j++)
			xv[j] = tu_elem64(x, j0 + j), bv[j] = tu_elem64(b, j0 + j);
		double s1 = softmax_terms(xv, r, e1), s2 = softmax_terms(bv, r, e2), kl = 0;
		for (uint64_t j = 0; j < r; j++) {
			double p = e1[j] / s1 + 1e-8, q = e2[j] / s2 + 1e-8;
			kl += p * log(p / q);
		}
		for (uint64_t j = 0; j < r; j++) {
			c->imp[j0 + j] = (float)(fabs(tau_of(x, b, j0 + j)) * kl);
		}
	}
	memcpy(s, c->imp, n * sizeof(float));
	qsort(s, n, sizeof(float), cmpf);
	c->q[0] = s[(uint64_t)(0.25 * (double)(n - 1))];
	c->q[1] = s[(uint64_t)(0.5 * (double)(n - 1))];
	c->q[2] = s[(uint64_t)(0.75 * (double)(n - 1))];
	c->thr = (double)c->q[1] + 1.5 * ((double)c->q[2] - (double)c->q[0]);
	c->kept = 0;
	for (uint64_t j = 0; j < n; j++)
		c->kept += (double)c->imp[j] >= c->thr;
	free(xv), free(bv), free(e1), free(e2), free(s);
}

/* alpha = ||tau|| / ||m tau|| (L1, N = 1) */
static double fusion_alpha(const struct fam *f)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < f->b.n; i++) {
		const struct tu_tensor *b = &f->b.t[i], *x = tu_model_find(&f->x, b->name);
		struct cut c;
		if (!tu_is_float(b) || b->nelem == 0)
			continue;
		find_cut(b, x, &c);
		for (uint64_t e = 0; e < b->nelem; e++) {
			double t = tau_of(x, b, e);
			double m = (double)c.imp[e] >= c.thr ? t : 0.0;
			if (isfinite(t) && isfinite(m))
				num += fabs(t), den += fabs(m);
		}
		free(c.imp);
	}
	return num / den;
}

static json_t *manifest_entry(json_t *man, const char *name)
{
	json_t *ts = json_object_get(man, "tensors"), *e;
	size_t i;
	json_array_foreach(ts, i, e) if (!strcmp(json_string_value(json_object_get(e, "name")),
	                                         name)) return json_object_get(e, "arcee_fusion");
	return NULL;
}

static double jnum(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	if (json_is_string(v))
		return !strcmp(json_string_value(v), "nan") ? NAN
		       : json_string_value(v)[0] == '-'     ? -INFINITY
		                                            : INFINITY;
	return v ? json_number_value(v) : -12345.0;
}

static void compare(const struct fam *f, const struct scen *s, const struct tu_model *o,
                    const char *man_path, double alpha, const char *dt)
{
	uint64_t n = 0, bad = 0, badc = 0, nc = 0, kept = 0;
	double worst = 0;
	char first[512] = "", firstc[512] = "";
	json_t *man = json_load_file(man_path, 0, NULL);
	for (size_t i = 0; i < f->b.n; i++) {
		const struct tu_tensor *b = &f->b.t[i], *ot = tu_model_find(o, b->name);
		const struct tu_tensor *x = tu_model_find(&f->x, b->name);
		struct cut c;
		if (!tu_is_float(b) || b->nelem == 0)
			continue;
		find_cut(b, x, &c);
		json_t *r = man ? manifest_entry(man, b->name) : NULL;
		double q1 = jnum(r, "q1"), md = jnum(r, "median"), q3 = jnum(r, "q3");
		double thr = jnum(r, "threshold"), k = jnum(r, "kept");
		int same = r && (float)q1 == c.q[0] && (float)md == c.q[1] && (float)q3 == c.q[2] &&
		           (thr == c.thr || (thr != thr && c.thr != c.thr)) && k == (double)c.kept;
		if (!same && !badc++)
			snprintf(firstc, sizeof(firstc),
			         "; %s: q %g %g %g thr %.17g kept %g, want %g %g %g %.17g %llu",
			         b->name, q1, md, q3, thr, k, c.q[0], c.q[1], c.q[2], c.thr,
			         (unsigned long long)c.kept);
		nc++;
		kept += c.kept;
		long blk = tu_block_of(b->name);
		double lam =
		    s->beta == 0
		        ? s->lambda
		        : alpha + s->beta * (blk < 0 ? 0 : (double)blk / (double)(f->L - 1));
		for (uint64_t e = 0; ot && e < b->nelem; e++, n++) {
			double t = tau_of(x, b, e);
			double m = (double)c.imp[e] >= c.thr ? t : 0.0;
			double bv = tu_elem64(b, e), ref = bv + lam * m, got = tu_elem64(ot, e);
			if (!tu_within(ot->dtype, ref, fabs(bv) + fabs(lam * m), got, 0x1p-48,
			               &worst) &&
			    !bad++)
				snprintf(first, sizeof(first), "; %s[%llu]: got %.9g, want %.17g",
				         b->name, (unsigned long long)e, got, ref);
		}
		bad += !ot;
		free(c.imp);
	}
	ok(bad == 0 && n > 0,
	   "%s %s: %llu elements within 1 ULP of the float64 reference (%llu kept; worst %.2f)%s",
	   dt, s->name, (unsigned long long)n, (unsigned long long)kept, worst, first);
	ok(badc == 0 && nc > 0,
	   "%s %s: the %llu tensors' quantiles, thresholds, kept counts in the "
	   "manifest are the sort's%s",
	   dt, s->name, (unsigned long long)nc, firstc);
	json_decref(man);
}

static void run(const struct fam *f, const struct scen *s, int k, const char *dt)
{
	char out[4400], man[4500], js[4500];
	struct tu_model o;
	snprintf(out, sizeof(out), "%s/o%d.st", f->dir, k);
	snprintf(man, sizeof(man), "%s.manifest.json", out);
	snprintf(js, sizeof(js), "%s/o%d.json", f->dir, k);
	int rc = tu_run("'%s' merge -q -m arcee_fusion -b '%s/base.safetensors' %s --json -o '%s' "
	                "'%s/ft1.safetensors' >'%s'",
	                tu_lines(), f->dir, s->args, out, f->dir, js);
	if (!ok(rc == 0 && tu_model_load(&o, out) == 0, "%s %s: lines exits 0", dt, s->name)) {
		diag("%s", tu_stderr);
		return;
	}
	double alpha = s->alpha;
	if (s->alpha < 0) {
		double want = fusion_alpha(f), got = NAN;
		json_t *j = json_load_file(js, 0, NULL);
		got = json_number_value(json_object_get(json_object_get(j, "lines"), "alpha"));
		json_decref(j);
		ok(fabs(got - want) <= 1e-9 * fabs(want),
		   "%s %s: alpha %.17g = ||tau|| / ||m tau|| = %.17g", dt, s->name, got, want);
		alpha = got;
	}
	compare(f, s, &o, man, alpha, dt);
	tu_model_free(&o);
}

static int load(struct fam *f, const char *arch, const char *dtype, int hidden, const char *sub,
                const char *extra)
{
	char p[4400];
	snprintf(f->dir, sizeof(f->dir), "%s/%s", tu_tmpdir(), sub);
	if (tu_run("'%s' --arch %s --dtype %s --layers 3 --hidden %d --models 3 --seed 11 %s "
	           "--out '%s'",
	           tu_gen(), arch, dtype, hidden, extra, f->dir) != 0)
		return 0;
	snprintf(p, sizeof(p), "%s/base.safetensors", f->dir);
	int good = tu_model_load(&f->b, p) == 0;
	snprintf(p, sizeof(p), "%s/ft1.safetensors", f->dir);
	good &= tu_model_load(&f->x, p) == 0;
	f->L = 3;
	return good;
}

static void free_fam(struct fam *f)
{
	tu_model_free(&f->b);
	tu_model_free(&f->x);
}

/* The same bytes for every -j, --chunk, --io and instruction set. */
static void same_bytes(const struct fam *f)
{
	static const char *const runs[] = {
	    "LINES_ISA=scalar '%s' merge -q -j 1 --io mmap",
	    "'%s' merge -q -j 2 --chunk 64K --io mmap",
	    "LINES_ISA=scalar '%s' merge -q -j 2 --chunk 64K --io uring",
	    "LINES_ISA=avx2 '%s' merge -q -j 1 --chunk 64K --io uring",
	    "LINES_ISA=avx512 '%s' merge -q -j 2 --chunk 64K",
	    /* every row's KL computed in every pass, and some kept, some not */
	    "LINES_TEST_FUSION_KL_ROWS=0 '%s' merge -q -j 2",
	    "LINES_TEST_FUSION_KL_ROWS=300 '%s' merge -q -j 2 --chunk 64K",
	};
	static const char *const meth[] = {
	    "-m arcee_fusion --lines --alpha auto --beta 0.5",
	    "-m arcee_fusion --lambda 0.8",
	};
	for (int q = 0; q < 2; q++) {
		int same = 1, ran = 0;
		char ref[4400] = "";
		for (size_t r = 0; r < sizeof(runs) / sizeof(runs[0]); r++) {
			char cmd[512], out[4400];
			if (strstr(runs[r], "avx512") &&
			    tu_run("LINES_ISA=avx512 '%s' --version >/dev/null", tu_lines()) != 0)
				continue; /* not this machine */
			if (strstr(runs[r], "avx2") &&
			    tu_run("LINES_ISA=avx2 '%s' --version >/dev/null", tu_lines()) != 0)
				continue;
			if (strstr(runs[r], "uring") &&
			    tu_run("'%s' merge --io uring -n -b '%s/base.safetensors' "
			           "'%s/ft1.safetensors' >/dev/null 2>&1",
			           tu_lines(), f->dir, f->dir) != 0)
				continue;
			snprintf(cmd, sizeof(cmd), runs[r], tu_lines());
			snprintf(out, sizeof(out), "%s/det%d-%zu.st", f->dir, q, r);
			if (tu_run("%s %s -b '%s/base.safetensors' -o '%s' '%s/ft1.safetensors'",
			           cmd, meth[q], f->dir, out, f->dir) != 0) {
				diag("%s", tu_stderr);
				same = 0;
				continue;
			}
			ran++;
			if (!*ref)
				snprintf(ref, sizeof(ref), "%s", out);
			else
				same &= tu_run("cmp -s '%s' '%s'", ref, out) == 0;
		}
		ok(same && ran >= 5,
		   "%s: the same bytes for %d runs over -j, --chunk, --io, LINES_ISA, rows' KL "
		   "kept or not",
		   meth[q], ran);
	}
}

/* Three models, no base, standard input: usage errors, nothing written. */
static void refusals(const struct fam *f)
{
	static const char *const bad[] = {
	    "-b '%1$s/base.safetensors' '%1$s/ft1.safetensors' '%1$s/ft2.safetensors'",
	    "-b '%1$s/base.safetensors' '%1$s/ft1.safetensors' '%1$s/ft2.safetensors' "
	    "'%1$s/ft3.safetensors'",
	    "'%1$s/ft1.safetensors' '%1$s/ft2.safetensors'",
	    "'%1$s/ft1.safetensors'",
	    "-b '%1$s/base.safetensors' -w 2 '%1$s/ft1.safetensors'",
	    "-b '%1$s/base.safetensors' --density 0.5 '%1$s/ft1.safetensors'",
	};
	static const char *const what[] = {
	    "two models",          "three models", "no base (two models)",
	    "no base (one model)", "weights",      "--density"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char args[2048], out[4400];
		snprintf(args, sizeof(args), bad[i], f->dir);
		snprintf(out, sizeof(out), "%s/refused%zu.st", f->dir, i);
		int rc = tu_run("'%s' merge -q -m arcee_fusion %s -o '%s'", tu_lines(), args, out);
		ok(rc == 2 && !tu_exists(out), "%s refused (exit %d), nothing written", what[i],
		   rc);
	}
	/* the base from standard input: read once, but the method reads it 3 times */
	char out[4400];
	snprintf(out, sizeof(out), "%s/refused-stdin.st", f->dir);
	int rc = tu_run("'%s' merge -q -m arcee_fusion -b - -o '%s' '%s/ft1.safetensors' "
	                "<'%s/base.safetensors'",
	                tu_lines(), out, f->dir, f->dir);
	ok(rc != 0 && !tu_exists(out),
	   "the base on standard input refused (exit %d), nothing written", rc);
}

int main(void)
{
	static const struct scen sc[] = {
	    {"plain", "", 1, 0, 0},
	    {"--lambda 0.7", "--lambda 0.7", 0.7, 0, 0},
	    {"--lines --alpha auto --beta 0.5", "--lines --alpha auto --beta 0.5", 0, -1, 0.5},
	    {"--lines --alpha 0.3 --beta 0.6", "--lines --alpha 0.3 --beta 0.6", 0, 0.3, 0.6},
	};
	static const char *const dts[] = {"bf16", "f16", "f32", "f64"};
	for (size_t d = 0; d < 4; d++) {
		struct fam f;
		memset(&f, 0, sizeof(f));
		if (!ok(load(&f, "llama", dts[d], 32, dts[d], ""), "generate a %s family", dts[d]))
			continue;
		for (size_t i = 0; i < sizeof(sc) / sizeof(sc[0]); i++)
			run(&f, &sc[i], (int)i, dts[d]);
		if (d == 0)
			refusals(&f);
		free_fam(&f);
	}
	struct fam f;
	memset(&f, 0, sizeof(f));
	if (ok(load(&f, "clip", "f32", 32, "clip", ""),
	       "generate a clip f32 family (a 4-D convolution)")) {
		run(&f, &sc[0], 0, "clip f32");
		run(&f, &sc[2], 2, "clip f32");
	}
	free_fam(&f);
	/* NaN, infinities, signed zeros and subnormals in the first tensor: its
	 * rows that hold one have a NaN KL, NaN importances, sorted last */
	memset(&f, 0, sizeof(f));
	if (ok(load(&f, "llama", "bf16", 32, "spec", "--specials"), "generate a bf16 family with "
	                                                            "special values")) {
		run(&f, &sc[0], 0, "specials bf16");
		run(&f, &sc[3], 3, "specials bf16");
	}
	free_fam(&f);
	memset(&f, 0, sizeof(f));
	if (ok(load(&f, "llama", "f32", 96, "det", ""),
	       "generate an f32 family with 96 x 96 tensors"))
		same_bytes(&f);
	free_fam(&f);
	tu_cleanup();
	return tap_done();
}
