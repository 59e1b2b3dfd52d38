/*
 * t-karcher.c -- mergekit's karcher: every merged element against a
 * float64 reference written here that follows mergekit's steps on the
 * whole flattened vectors (no Gram matrix), the number of steps of every
 * tensor against lines' report, and every Gram matrix lines reports
 * against a full scan; on generated Llama and GPT-2 families in BF16, F16
 * and F32, and a Llama family in F64 (computed and written in float64
 * throughout), with NaN and infinities in the first tensor (--specials); 1,
 * 2, 3, 4 and 8 models, with and without -b, LiNeS (given and automatic
 * alpha) and --lambda, --max-iter and --tol.
 *
 * The reference, per tensor, with x_i the models' values in float64:
 *   n_i = |x_i|, u_i = x_i / n_i (0 when n_i = 0), s = sum n_i / N;
 *   a NaN or infinity in a model: NaN (lines' choice: mergekit gives 0
 *   when every model has one); V = {i : n_i > tol}; V empty: 0;
 *   a = 1/|V|, m = sum_V a u_i, u = m/|m| (u_V0 when |m| < tol);
 *   up to max_iter times: T = sum_V a (th_i / sin th_i) (u_i - d_i u),
 *   d_i = clamp(u . u_i), th_i = acos d_i, leaving out th_i < tol and
 *   1 + d_i <= 1e-12 (the antipode, lines' documented choice); stop when
 *   |T| < tol; u = cos|T| u + sin|T| T/|T|, u = u/|u| when |u| > tol;
 *   result s u; with -b: b + lambda (s u - b). One model: itself.
 * Alongside, the same operations on coefficient vectors give
 * s u = sum C_j x_j, only for the allowance below.
 *
 * The allowance: lines takes the same steps on the Gram matrix (the
 * number of steps and whether |T| < tol stopped them must equal the
 * reference's, tensor by tensor), so the two differ only by float64
 * rounding (dots summed in another order, a few dozen operations per
 * step): every element within one ULP of the output dtype plus 2^-44
 * (5.7e-14; F64: 2^-40, 9.1e-13) of mag = sum_j |C_j x_j| (with -b,
 * |lambda| (mag + |b|) + |b|); on the BF16, F16 and F32 families no
 * element needs more than the ULP. tol is
 * what a wrong step would cost: one step more or less moves u by
 * |T| >= tol (the loop steps only while |T| >= tol), elements by about
 * s tol |u_e|, 10^7 times the allowance at tol = 1e-5 (at the smallest
 * tol used here, 1e-9, still 10^3 times it), so the allowance cannot
 * hide one; and
 * the step counts are checked anyway.
 * Automatic alpha, ||sum tau_i|| / (N ||theta - b||) (L1), from the
 * reference, within 1e-10.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tap.h"
#include "tutil.h"

#define MAXN 8
#define ANTIPODE 1e-12

/* the models: base, ft1..ft4, task vectors tv1..tv3 (far apart: several
 * steps), neg = -ft1, zero = 0 ft2 */
enum { M_BASE, M_FT1, M_FT2, M_FT3, M_FT4, M_TV1, M_TV2, M_TV3, M_NEG, M_ZERO, M_COUNT };
static const char *const file_of[M_COUNT] = {"base", "ft1", "ft2", "ft3", "ft4",
                                             "tv1",  "tv2", "tv3", "neg", "zero"};

struct scenario {
	const char *name;
	int base; /* -b */
	unsigned n;
	int m[MAXN];
	unsigned max_iter; /* 0: the default 10 */
	double tol;        /* 0: the default 1e-5 */
	double lambda;
	int lines;
	double alpha, beta;
	int auto_alpha;
	/* at least this many tensors must take several steps / hit max_iter */
	int want_steps, want_unconverged;
};

static const struct scenario scenarios[] = {
	{"2 models", 0, 2, {M_FT1, M_FT2}, 0, 0, 1, 0, 0, 0, 0, 0, 0},
	{"4 models", 0, 4, {M_FT1, M_FT2, M_FT3, M_FT4}, 0, 0, 1, 0, 0, 0, 0, 0, 0},
	{"2 task vectors", 0, 2, {M_TV1, M_TV2}, 0, 0, 1, 0, 0, 0, 0, 0, 0},
	{"4 spread models", 0, 4, {M_TV1, M_TV2, M_TV3, M_FT4}, 0, 0, 1, 0, 0, 0, 0, 1, 0},
	{"4 spread models --max-iter 2", 0, 4, {M_TV1, M_TV2, M_TV3, M_FT4}, 2, 0, 1, 0, 0, 0, 0,
	 1, 1},
	{"3 spread models --tol 1e-3 --max-iter 40", 0, 3, {M_TV1, M_TV2, M_FT3}, 40, 1e-3, 1, 0, 0,
	 0, 0, 1, 0},
	{"3 spread models --tol 1e-9", 0, 3, {M_TV1, M_TV3, M_FT2}, 0, 1e-9, 1, 0, 0, 0, 0, 1, 0},
	{"4 models -b --lines", 1, 4, {M_FT1, M_FT2, M_FT3, M_FT4}, 0, 0, 1, 1, 0.3, 0.6, 0, 0, 0},
	{"4 spread models -b --lines auto", 1, 4, {M_TV1, M_FT2, M_TV3, M_FT4}, 0, 0, 1, 1, 0, 0, 1,
	 1, 0},
	{"3 models -b --lambda 0.7", 1, 3, {M_FT2, M_FT3, M_TV1}, 0, 0, 0.7, 0, 0, 0, 0, 0, 0},
	{"8 models", 0, 8, {M_TV1, M_TV2, M_TV3, M_FT1, M_FT2, M_FT3, M_FT4, M_NEG}, 0, 0, 1, 0, 0,
	 0, 0, 1, 0},
	{"1 model", 0, 1, {M_FT2}, 0, 0, 1, 0, 0, 0, 0, 0, 0},
	{"1 model -b --lambda 0.5", 1, 1, {M_TV2}, 0, 0, 0.5, 0, 0, 0, 0, 0, 0},
	{"a model and its negation", 0, 2, {M_FT1, M_NEG}, 0, 0, 1, 0, 0, 0, 0, 0, 0},
	{"ft1, neg, ft2", 0, 3, {M_FT1, M_NEG, M_FT2}, 0, 0, 1, 0, 0, 0, 0, 0, 0},
	{"ft1, zero, ft3", 0, 3, {M_FT1, M_ZERO, M_FT3}, 0, 0, 1, 0, 0, 0, 0, 0, 0},
	{"zero, zero", 0, 2, {M_ZERO, M_ZERO}, 0, 0, 1, 0, 0, 0, 0, 0, 0},
};

struct family {
	const char *arch, *dtype;
	char dir[4200];
	struct tu_model m[M_COUNT];
	long L;
};

struct tally {
	uint64_t checked, bad, tensors, stepped, unconverged;
	unsigned most;
	double worst;
	char first_bad[512];
};

static void fail_msg(struct tally *ty, const char *name, const char *what)
{
	if (!ty->bad++)
		snprintf(ty->first_bad, sizeof(ty->first_bad), "%s: %s", name, what);
}

static unsigned max_iter_of(const struct scenario *s) { return s->max_iter ? s->max_iter : 10; }
static double tol_of(const struct scenario *s) { return s->tol > 0 ? s->tol : 1e-5; }

/* The allowance per unit of mag (see the top): 2^-44; for F64 outputs,
 * whose ULP does not hide it, 2^-40, the float64 rounding of the steps
 * (acos multiplies a dot's rounding by 1 / sin th, and a model with its
 * negation among the inputs makes coefficients larger than the result). */
static double slack(const char *odt)
{
	return strcmp(odt, "F64") ? 0x1p-44 : 0x1p-40;
}

/* ---- the reference ------------------------------------------------------------ */

struct ref {
	enum { K_MEAN, K_ZERO, K_NAN } kind;
	unsigned iters;
	int converged;
	double C[MAXN]; /* r = sum C_j x_j */
};
static const char *const case_names[] = {"karcher", "zero", "nan"};

/* A vector and its coefficients over the x_j, side by side. */
struct vec {
	double *e;
	double c[MAXN];
};

static double vdot(const double *p, const double *q, uint64_t ne)
{
	double s = 0;
	for (uint64_t e = 0; e < ne; e++)
		s += p[e] * q[e];
	return s;
}

/* mergekit's steps on the flattened vectors x[0..n), in float64: r[e]. */
static struct ref reference(const struct scenario *s, double *const *x, uint64_t ne, double *r)
{
	struct ref R = {K_MEAN, 0, 0, {0}};
	unsigned n = s->n, valid[MAXN], nv = 0, maxit = max_iter_of(s);
	double tol = tol_of(s), nrm[MAXN], sc = 0, a;
	struct vec u, t, unit[MAXN];
	int finite = 1;

	u.e = calloc(ne + 1, sizeof(double)), t.e = calloc(ne + 1, sizeof(double));
	for (unsigned i = 0; i < n; i++) {
		nrm[i] = sqrt(vdot(x[i], x[i], ne));
		finite &= isfinite(nrm[i]) != 0;
		sc += nrm[i] / n;
		unit[i].e = calloc(ne + 1, sizeof(double));
		memset(unit[i].c, 0, sizeof(unit[i].c));
		if (nrm[i] != 0) {
			unit[i].c[i] = 1 / nrm[i];
			for (uint64_t e = 0; e < ne; e++)
				unit[i].e[e] = x[i][e] / nrm[i];
		}
		if (nrm[i] > tol)
			valid[nv++] = i;
	}
	if (nv == 0 || !finite) {
		R.kind = !finite ? K_NAN : K_ZERO;
		for (uint64_t e = 0; e < ne; e++)
			r[e] = !finite ? NAN : 0.0;
		goto out;
	}
	a = 1.0 / nv;
	memset(u.c, 0, sizeof(u.c));
	for (unsigned k = 0; k < nv; k++) {
		for (uint64_t e = 0; e < ne; e++)
			u.e[e] += a * unit[valid[k]].e[e];
		for (unsigned j = 0; j < n; j++)
			u.c[j] += a * unit[valid[k]].c[j];
	}
	double mn = sqrt(vdot(u.e, u.e, ne));
	if (mn < tol) {
		memcpy(u.e, unit[valid[0]].e, ne * sizeof(double));
		memcpy(u.c, unit[valid[0]].c, sizeof(u.c));
	} else {
		for (uint64_t e = 0; e < ne; e++)
			u.e[e] /= mn;
		for (unsigned j = 0; j < n; j++)
			u.c[j] /= mn;
	}
	while (R.iters < maxit) {
		memset(t.e, 0, ne * sizeof(double));
		memset(t.c, 0, sizeof(t.c));
		for (unsigned k = 0; k < nv; k++) {
			const struct vec *ui = &unit[valid[k]];
			double d = vdot(u.e, ui->e, ne);
			d = d > 1 ? 1 : d < -1 ? -1 : d;
			double th = acos(d);
			if (th < tol || 1 + d <= ANTIPODE)
				continue;
			double f = a * (th / sin(th));
			for (uint64_t e = 0; e < ne; e++)
				t.e[e] += f * (ui->e[e] - d * u.e[e]);
			for (unsigned j = 0; j < n; j++)
				t.c[j] += f * (ui->c[j] - d * u.c[j]);
		}
		double tn = sqrt(vdot(t.e, t.e, ne));
		if (tn < tol) {
			R.converged = 1;
			break;
		}
		double cs = cos(tn), sn = sin(tn);
		for (uint64_t e = 0; e < ne; e++)
			u.e[e] = cs * u.e[e] + sn * (t.e[e] / tn);
		for (unsigned j = 0; j < n; j++)
			u.c[j] = cs * u.c[j] + sn * (t.c[j] / tn);
		double un = sqrt(vdot(u.e, u.e, ne));
		if (un > tol) {
			for (uint64_t e = 0; e < ne; e++)
				u.e[e] /= un;
			for (unsigned j = 0; j < n; j++)
				u.c[j] /= un;
		}
		R.iters++;
	}
	for (uint64_t e = 0; e < ne; e++)
		r[e] = sc * u.e[e];
	for (unsigned j = 0; j < n; j++)
		R.C[j] = sc * u.c[j];
out:
	for (unsigned i = 0; i < n; i++)
		free(unit[i].e);
	free(u.e), free(t.e);
	return R;
}

/* ---- lines' report ------------------------------------------------------------ */

static double json_dbl(json_t *v)
{
	if (json_is_number(v))
		return json_number_value(v);
	const char *str = json_string_value(v);
	return !str ? NAN : !strcmp(str, "inf") ? INFINITY : !strcmp(str, "-inf") ? -INFINITY : NAN;
}

/* The manifest's "karcher" entry of a tensor, or NULL. */
static json_t *entry_of(json_t *mf, const char *name)
{
	json_t *ts = json_object_get(mf, "tensors"), *e;
	size_t i;
	json_array_foreach(ts, i, e) {
		if (!strcmp(json_string_value(json_object_get(e, "name")), name))
			return json_object_get(e, "karcher");
	}
	return NULL;
}

/* The reported Gram matrix against a full scan. */
static void check_gram(unsigned n, double *const *x, uint64_t ne, json_t *gram, const char *name,
                       struct tally *ty)
{
	unsigned q = 0;
	if (json_array_size(gram) != n * (n + 1) / 2) {
		fail_msg(ty, name, "the Gram matrix has the wrong size");
		return;
	}
	for (unsigned i = 0; i < n; i++)
		for (unsigned j = i; j < n; j++, q++) {
			double d = 0, mag = 0, g = json_dbl(json_array_get(gram, q));
			for (uint64_t e = 0; e < ne; e++)
				d += x[i][e] * x[j][e], mag += fabs(x[i][e] * x[j][e]);
			int fine = isnan(d) ? isnan(g) : isinf(d) ? g == d : fabs(g - d) <= 1e-12 * mag;
			if (!fine)
				fail_msg(ty, name, "a reported dot differs from the full scan");
		}
}

static double **load_models(const struct family *f, const struct scenario *s, const char *name,
                            uint64_t ne)
{
	double **x = calloc(s->n, sizeof(*x));
	for (unsigned i = 0; i < s->n; i++) {
		const struct tu_tensor *t = tu_model_find(&f->m[s->m[i]], name);
		x[i] = calloc(ne + 1, sizeof(double));
		for (uint64_t e = 0; e < ne; e++)
			x[i][e] = tu_elem64(t, e);
	}
	return x;
}

static void free_models(double **x, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		free(x[i]);
	free(x);
}

static double lambda_of(const struct family *f, const struct scenario *s, const char *name)
{
	long blk = tu_block_of(name);
	if (!s->lines)
		return s->lambda;
	return blk < 0 ? s->alpha : s->alpha + s->beta * (double)blk / (double)(f->L - 1);
}

static void check_tensor(const struct family *f, const struct scenario *s, json_t *mf,
                         const struct tu_tensor *rt, const struct tu_tensor *o, struct tally *ty)
{
	const struct tu_tensor *b = tu_model_find(&f->m[M_BASE], rt->name);
	uint64_t ne = rt->nelem;
	double **x = load_models(f, s, rt->name, ne), *r = calloc(ne + 1, sizeof(double));
	double lam = lambda_of(f, s, rt->name);
	struct ref R = {K_MEAN, 0, 1, {1}};

	if (s->n > 1) {
		json_t *k = entry_of(mf, rt->name);
		R = reference(s, x, ne, r);
		ty->tensors++;
		ty->stepped += R.iters > 1;
		ty->unconverged += R.kind == K_MEAN && !R.converged;
		if (R.iters > ty->most)
			ty->most = R.iters;
		if (!k) {
			fail_msg(ty, rt->name, "no karcher entry in the manifest");
		} else {
			check_gram(s->n, x, ne, json_object_get(k, "gram"), rt->name, ty);
			json_t *it = json_object_get(k, "iterations");
			if (!json_is_integer(it) || (unsigned)json_integer_value(it) != R.iters)
				fail_msg(ty, rt->name, "lines' number of steps differs from the reference's");
			if (json_is_true(json_object_get(k, "converged")) != (R.converged != 0))
				fail_msg(ty, rt->name, "lines' stop differs from the reference's");
			const char *cs = json_string_value(json_object_get(k, "case"));
			if (!cs || strcmp(cs, case_names[R.kind]))
				fail_msg(ty, rt->name, "lines' case differs from the reference's");
		}
	} else {
		memcpy(r, x[0], ne * sizeof(double));
	}
	for (uint64_t e = 0; e < ne; e++) {
		double bv = tu_elem64(b, e), got = tu_elem64(o, e), mag = 0, ref;
		for (unsigned j = 0; j < s->n; j++)
			mag += fabs(R.C[j] * x[j][e]);
		ref = s->base ? bv + lam * (r[e] - bv) : r[e];
		mag = s->base ? fabs(lam) * (mag + fabs(bv)) + fabs(bv) : mag;
		int fine = tu_within(o->dtype, ref, mag, got, slack(o->dtype), &ty->worst);
		ty->checked++;
		if (!fine && !ty->bad++)
			snprintf(ty->first_bad, sizeof(ty->first_bad),
			         "%s[%llu]: got %.17g, reference %.17g (allowance %.3g)", rt->name,
			         (unsigned long long)e, got, ref, tu_ulp(o->dtype, ref) + slack(o->dtype) * mag);
	}
	free_models(x, s->n);
	free(r);
}

/* Automatic alpha (L1) from the reference: ||sum tau_i|| / (N ||theta - b||). */
static double auto_alpha(const struct family *f, const struct scenario *s)
{
	double num = 0, den = 0;
	const struct tu_model *bm = &f->m[M_BASE];
	for (size_t ti = 0; ti < bm->n; ti++) {
		const struct tu_tensor *b = &bm->t[ti];
		if (!tu_is_float(b))
			continue;
		double **x = load_models(f, s, b->name, b->nelem), *r = calloc(b->nelem + 1, 8);
		reference(s, x, b->nelem, r);
		for (uint64_t e = 0; e < b->nelem; e++) {
			double bv = tu_elem64(b, e), sum = 0, t = r[e] - bv;
			for (unsigned i = 0; i < s->n; i++)
				sum += strcmp(b->dtype, "F64") ? (double)(float)(x[i][e] - bv) : x[i][e] - bv;
			if (!isfinite(sum) || !isfinite(t))
				continue;
			num += fabs(sum), den += fabs(t);
		}
		free_models(x, s->n);
		free(r);
	}
	return num / (s->n * den);
}

/* ---- running ------------------------------------------------------------------ */

static int run_lines(const struct family *f, const struct scenario *s, const char *out)
{
	char args[4700], files[MAXN * 4400] = "";
	size_t n = (size_t)snprintf(args, sizeof(args), "-m karcher");
	if (s->max_iter)
		n += (size_t)snprintf(args + n, sizeof(args) - n, " --max-iter %u", s->max_iter);
	if (s->tol > 0)
		n += (size_t)snprintf(args + n, sizeof(args) - n, " --tol %.17g", s->tol);
	if (s->lambda != 1)
		n += (size_t)snprintf(args + n, sizeof(args) - n, " --lambda %.17g", s->lambda);
	if (s->lines && s->auto_alpha)
		n += (size_t)snprintf(args + n, sizeof(args) - n, " --lines");
	else if (s->lines)
		n += (size_t)snprintf(args + n, sizeof(args) - n, " --lines --alpha %.17g --beta %.17g",
		                      s->alpha, s->beta);
	if (s->base)
		snprintf(args + n, sizeof(args) - n, " -b '%s/base.safetensors'", f->dir);
	for (unsigned i = 0, k = 0; i < s->n; i++)
		k += (unsigned)snprintf(files + k, sizeof(files) - k, " '%s/%s.safetensors'", f->dir,
		                        file_of[s->m[i]]);
	return tu_run("'%s' merge -q %s -o '%s'%s", tu_lines(), args, out, files);
}

static void report(const struct family *f, const struct scenario *s, const struct tally *ty,
                   json_t *mf)
{
	if (!ok(ty->bad == 0 && ty->checked > 0,
	        "%s/%s %s: %llu elements within 1 ULP + %s mag of the float64 reference "
	        "(worst %.3f ULP); steps, stops and Gram matrices of %llu tensors as the "
	        "reference's",
	        f->arch, f->dtype, s->name, (unsigned long long)ty->checked,
	        strcmp(f->dtype, "f64") ? "2^-44" : "2^-40", ty->worst,
	        (unsigned long long)ty->tensors))
		diag("%llu bad; first: %s", (unsigned long long)ty->bad, ty->first_bad);
	if (s->n < 2)
		return;
	json_t *k = json_object_get(json_object_get(mf, "run"), "karcher");
	json_t *most = json_object_get(k, "iterations_max"), *unc = json_object_get(k, "unconverged");
	ok(json_is_integer(most) && (unsigned)json_integer_value(most) == ty->most &&
	       json_is_integer(unc) && (uint64_t)json_integer_value(unc) == ty->unconverged &&
	       json_integer_value(json_object_get(k, "max_iter")) == max_iter_of(s) &&
	       json_dbl(json_object_get(k, "tol")) == tol_of(s),
	   "%s/%s %s: the summary's most steps %u and %llu tensors stopped by max_iter, as the "
	   "reference's", f->arch, f->dtype, s->name, ty->most, (unsigned long long)ty->unconverged);
	if (s->want_steps)
		ok(ty->stepped > 0, "%s/%s %s: %llu tensors take 2 steps or more", f->arch, f->dtype,
		   s->name, (unsigned long long)ty->stepped);
	if (s->want_unconverged)
		ok(ty->unconverged > 0, "%s/%s %s: %llu tensors stop at --max-iter", f->arch, f->dtype,
		   s->name, (unsigned long long)ty->unconverged);
}

static void run_scenario(struct family *f, const struct scenario *s0, int idx)
{
	char out[4400], mfp[4500];
	struct tu_model om;
	struct tally ty = {0};
	struct scenario sc = *s0, *s = &sc;

	snprintf(out, sizeof(out), "%s/out%d.safetensors", f->dir, idx);
	snprintf(mfp, sizeof(mfp), "%s.manifest.json", out);
	if (!ok(run_lines(f, s, out) == 0, "%s/%s %s: lines exits 0", f->arch, f->dtype, s->name)) {
		diag("stderr: %s", tu_stderr);
		return;
	}
	json_t *mf = json_load_file(mfp, 0, NULL);
	if (!ok(mf && tu_model_load(&om, out) == 0, "%s/%s %s: output and manifest read", f->arch,
	        f->dtype, s->name)) {
		json_decref(mf);
		return;
	}
	if (s->auto_alpha) {
		double want = auto_alpha(f, s);
		const char *rec = tu_model_meta(&om, "lines.alpha");
		double got = rec ? strtod(rec, NULL) : NAN;
		ok(fabs(got - want) <= 1e-10 * fabs(want) && want > 0,
		   "%s/%s %s: alpha %.17g matches the formula %.17g", f->arch, f->dtype, s->name, got,
		   want);
		s->alpha = got, s->beta = fmax(0.0, 1.0 - got);
	}
	const struct tu_model *refm = &f->m[s->base ? M_BASE : s->m[0]];
	for (size_t ti = 0; ti < refm->n; ti++) {
		const struct tu_tensor *r = &refm->t[ti], *o = tu_model_find(&om, r->name);
		if (!o || strcmp(o->dtype, r->dtype))
			fail_msg(&ty, r->name, "missing or of another dtype");
		else if (!tu_is_float(r) && (o->nbytes != r->nbytes || memcmp(o->data, r->data, r->nbytes)))
			fail_msg(&ty, r->name, "copied tensor differs");
		else if (tu_is_float(r))
			check_tensor(f, s, mf, r, o, &ty);
	}
	report(f, s, &ty, mf);
	json_decref(mf);
	tu_model_free(&om);
}

static int load_family(struct family *f, size_t seed)
{
	char p[4400];
	const char *d = f->dir;
	snprintf(f->dir, sizeof(f->dir), "%s/%s-%s", tu_tmpdir(), f->arch, f->dtype);
	if (!ok(tu_run("'%s' --arch %s --dtype %s --layers 4 --hidden 32 --models 4 --seed %zu "
	               "--specials --out '%s'",
	               tu_gen(), f->arch, f->dtype, seed, d) == 0,
	        "generate %s/%s family of 4 models", f->arch, f->dtype))
		return 0;
	/* task vectors, -ft1 and 0 ft2 as models of their own */
	int made = 1;
	for (int i = 1; i <= 3; i++)
		made &= tu_run("'%s' merge -q -m linear -w 1,-1 --no-normalize -o '%s/tv%d.safetensors' "
		               "'%s/ft%d.safetensors' '%s/base.safetensors'",
		               tu_lines(), d, i, d, i, d) == 0;
	made &= tu_run("'%s' merge -q -m linear -w -1 --no-normalize -o '%s/neg.safetensors' "
	               "'%s/ft1.safetensors'", tu_lines(), d, d) == 0;
	made &= tu_run("'%s' merge -q -m linear -w 0 --no-normalize -o '%s/zero.safetensors' "
	               "'%s/ft2.safetensors'", tu_lines(), d, d) == 0;
	if (!ok(made, "%s/%s: task vectors, a negation and a zero model made", f->arch, f->dtype))
		return 0;
	int loaded = 1;
	for (int i = 0; i < M_COUNT; i++) {
		snprintf(p, sizeof(p), "%s/%s.safetensors", d, file_of[i]);
		loaded &= tu_model_load(&f->m[i], p) == 0;
	}
	for (size_t i = 0; loaded && i < f->m[M_BASE].n; i++)
		if (tu_block_of(f->m[M_BASE].t[i].name) + 1 > f->L)
			f->L = tu_block_of(f->m[M_BASE].t[i].name) + 1;
	return ok(loaded && f->L == 4, "read %s/%s family (L = %ld)", f->arch, f->dtype, f->L);
}

int main(void)
{
	static const struct {
		const char *arch, *dtype;
	} fams[] = {{"llama", "bf16"}, {"llama", "f16"}, {"llama", "f32"}, {"gpt2", "f32"},
	            {"llama", "f64"}};

	for (size_t a = 0; a < sizeof(fams) / sizeof(fams[0]); a++) {
		struct family f = {fams[a].arch, fams[a].dtype, "", {{0}}, 0};
		if (load_family(&f, 131 + a))
			for (size_t s = 0; s < sizeof(scenarios) / sizeof(scenarios[0]); s++)
				run_scenario(&f, &scenarios[s], (int)s);
		for (int i = 0; i < M_COUNT; i++)
			tu_model_free(&f.m[i]);
	}
	tu_cleanup();
	return tap_done();
}
