/*
 * t-multislerp.c -- mergekit's multislerp: every merged element against a
 * float64 reference written here that follows mergekit's steps one by
 * one (the tangent step included), and every tensor's Gram matrix against
 * a full scan, on generated Llama and GPT-2 families in BF16, F16 and F32
 * (with NaN and infinities: --specials) and a Llama family in F64 (task
 * vectors and every step in float64, no float32 rounding), with and without a base, LiNeS,
 * --lambda and --no-normalize.
 *
 *   w_i = the weights / their sum (unless --no-normalize); eps = 1e-8;
 *   v_i = model i, or (float)(model i - base) with a base (F64: not rounded);
 *   n_i = |v_i|, u_i = v_i / (n_i + eps), m = sum w_i u_i;
 *   |m| < eps: two models: r = w_0 v_0 + w_1 v_1; more: lines refuses;
 *   else mh = m / |m|, t_i = u_i - (u_i . mh) mh, T = sum w_i t_i,
 *        tn = |T| + eps, r = (mh cos tn + T sin(tn) / tn) sum w_i n_i;
 *   ref = r, or base + lambda r; one model: the model (base + lambda
 *   (model - base)); every v_i zero: 0 (lines' choice; mergekit raises).
 *
 * Elements are within one ULP of the output dtype plus 2^-48 times the
 * operands' magnitudes sum |c_i v_i| (lines computes the same r as
 * sum c_i v_i, from the Gram matrix), as in t-slerp.c; for F64, 2^-44:
 * the coefficients rest on float64 norms summed in another order than
 * here, which F64 resolves (a float32 step would be 2^-24 off). The Gram matrix
 * lines reports per tensor (the manifest's "multislerp" entries) must
 * match the test's scan to 1e-12 of the sum of the magnitudes of the
 * products. Automatic alpha, ||sum v_i|| / (N ||r||), is recomputed from
 * the reported Gram matrices and must match lines' to 1e-12.
 *
 * Edge cases: a model and its exact negation with equal weights (zero
 * mean, two models: lerp, every finite element 0); three vectors whose
 * weighted mean is zero (ft1, -ft1, ft1 with weights 1, 2, 1): exit 1,
 * an error naming a tensor, no output.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tap.h"
#include "tutil.h"

#define EPS 1e-8
#define MAXN 4

/* the models: base, ft1, ft2, ft3, neg (exactly -ft1) */
enum { M_BASE, M_FT1, M_FT2, M_FT3, M_NEG, M_COUNT };
static const char *const file_of[M_COUNT] = {"base", "ft1", "ft2", "ft3", "neg"};

struct scenario {
	const char *name;
	int base; /* -b */
	unsigned n;
	int m[MAXN];
	double w[MAXN]; /* -w; 0 in w[0]: none given (1 each) */
	int no_normalize;
	double lambda;
	int lines;
	double alpha, beta;
	int norm_p;   /* automatic alpha (--lines alone) with this norm; 0: none */
	int zero_out; /* every finite element must be exactly 0, every tensor lerps */
	int refused;  /* exit 1, no output */
};

static const struct scenario scenarios[] = {
	{"3 models -w 1,2,3", 0, 3, {M_FT1, M_FT2, M_FT3}, {1, 2, 3}, 0, 1, 0, 0, 0, 0, 0, 0},
	{"3 models -b", 1, 3, {M_FT1, M_FT2, M_FT3}, {0}, 0, 1, 0, 0, 0, 0, 0, 0},
	{"3 models -b -w 2,-1,3 --no-normalize --lambda 0.7", 1, 3, {M_FT1, M_FT2, M_FT3},
	 {2, -1, 3}, 1, 0.7, 0, 0, 0, 0, 0, 0},
	{"3 models -w 0.5,1,0.25 --no-normalize", 0, 3, {M_FT1, M_FT2, M_FT3}, {0.5, 1, 0.25}, 1, 1,
	 0, 0, 0, 0, 0, 0},
	{"3 models -b -w 1,2,3 --lines", 1, 3, {M_FT1, M_FT2, M_FT3}, {1, 2, 3}, 0, 1, 1, 0.3, 0.6,
	 0, 0, 0},
	{"3 models -b -w 3,1,2 --lines auto L2", 1, 3, {M_FT1, M_FT2, M_FT3}, {3, 1, 2}, 0, 1, 1, 0,
	 0, 2, 0, 0},
	{"2 models -b -w 1,3 --lines auto", 1, 2, {M_FT2, M_FT3}, {1, 3}, 0, 1, 1, 0, 0, 1, 0, 0},
	{"1 model", 0, 1, {M_FT2}, {0}, 0, 1, 0, 0, 0, 0, 0, 0},
	{"1 model -b --lambda 0.5", 1, 1, {M_FT2}, {0}, 0, 0.5, 0, 0, 0, 0, 0, 0},
	{"a model and its negation (lerp)", 0, 2, {M_FT1, M_NEG}, {0}, 0, 1, 0, 0, 0, 0, 1, 0},
	{"ft1, -ft1, ft1 -w 1,2,1 (zero mean)", 0, 3, {M_FT1, M_NEG, M_FT1}, {1, 2, 1}, 0, 1, 0, 0,
	 0, 0, 0, 1},
};

struct family {
	const char *arch, *dtype;
	char dir[4200];
	struct tu_model m[M_COUNT];
	long L;
};

struct tally {
	uint64_t checked, bad, lerp, slerp, nonzero;
	double worst;
	char first_bad[512];
};

static void fail_msg(struct tally *ty, const char *name, const char *what)
{
	if (!ty->bad++)
		snprintf(ty->first_bad, sizeof(ty->first_bad), "%s: %s", name, what);
}

/* The allowance per unit of the operands' magnitude: the coefficients come
 * from norms summed in another order than lines' (some sqrt(n) float64
 * roundings apart), which an F64 output shows. */
static double slack(const char *odt)
{
	return strcmp(odt, "F64") ? 0x1p-48 : 0x1p-44;
}

static void check_element(struct tally *ty, const char *name, uint64_t e, const char *odt,
                          double ref, double mag, double got)
{
	int fine = tu_within(odt, ref, mag, got, slack(odt), &ty->worst);
	ty->checked++;
	if (!fine && !ty->bad++)
		snprintf(ty->first_bad, sizeof(ty->first_bad), "%s[%llu]: got %.17g, reference %.17g (allowance %.3g)",
		         name, (unsigned long long)e, got, ref, tu_ulp(odt, ref) + slack(odt) * mag);
}

static void weights_of(const struct scenario *s, double *w)
{
	double sum = 0;
	for (unsigned i = 0; i < s->n; i++)
		w[i] = s->w[0] != 0 ? s->w[i] : 1.0, sum += w[i];
	for (unsigned i = 0; i < s->n && !s->no_normalize; i++)
		w[i] /= sum;
}

/* The vectors of a tensor: v[i][e] (models, or float32 task vectors). */
static double **load_vectors(const struct family *f, const struct scenario *s, const char *name)
{
	const struct tu_tensor *b = tu_model_find(&f->m[M_BASE], name);
	double **v = calloc(s->n, sizeof(*v));
	for (unsigned i = 0; i < s->n; i++) {
		const struct tu_tensor *x = tu_model_find(&f->m[s->m[i]], name);
		v[i] = calloc(b->nelem ? b->nelem : 1, sizeof(double));
		for (uint64_t e = 0; e < b->nelem; e++)
		{
			double d = tu_elem64(x, e) - tu_elem64(b, e);
			v[i][e] = !s->base ? tu_elem64(x, e) : strcmp(b->dtype, "F64") ? (double)(float)d : d;
		}
	}
	return v;
}

static void free_vectors(double **v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

enum { K_SLERP, K_LERP, K_NULL, K_ZERO };

/* mergekit's steps, literally, in float64: r[e]; c[i] the coefficients
 * of r = sum c_i v_i (for the allowance). */
static int reference(const struct scenario *s, double *const *v, uint64_t ne, double *r,
                     double *c)
{
	double w[MAXN], nrm[MAXN], mn = 0, avg = 0, dots[MAXN] = {0}, tn = 0;
	double *u[MAXN], *m = calloc(ne + 1, sizeof(double)), *t = calloc(ne + 1, sizeof(double));
	int kind = K_SLERP, null = 1;
	weights_of(s, w);
	for (unsigned i = 0; i < s->n; i++) {
		double q = 0;
		for (uint64_t e = 0; e < ne; e++)
			q += v[i][e] * v[i][e];
		nrm[i] = sqrt(q), avg += w[i] * nrm[i], null &= nrm[i] == 0;
		u[i] = calloc(ne + 1, sizeof(double));
		for (uint64_t e = 0; e < ne; e++)
			u[i][e] = v[i][e] / (nrm[i] + EPS), m[e] += w[i] * u[i][e];
	}
	for (uint64_t e = 0; e < ne; e++)
		mn += m[e] * m[e];
	mn = sqrt(mn);
	if (null) {
		kind = K_NULL;
		for (unsigned i = 0; i < s->n; i++)
			c[i] = 0;
		memset(r, 0, ne * sizeof(double));
	} else if (mn < EPS) {
		kind = s->n == 2 ? K_LERP : K_ZERO;
		for (unsigned i = 0; i < s->n; i++)
			c[i] = w[i];
		for (uint64_t e = 0; e < ne; e++)
			r[e] = s->n == 2 ? w[0] * v[0][e] + w[1] * v[1][e] : NAN;
	} else {
		for (uint64_t e = 0; e < ne; e++)
			m[e] /= mn;
		for (unsigned i = 0; i < s->n; i++) {
			for (uint64_t e = 0; e < ne; e++)
				dots[i] += u[i][e] * m[e];
			for (uint64_t e = 0; e < ne; e++)
				t[e] += w[i] * (u[i][e] - dots[i] * m[e]);
			c[i] = avg * w[i] / ((nrm[i] + EPS) * mn);
		}
		for (uint64_t e = 0; e < ne; e++)
			tn += t[e] * t[e];
		tn = sqrt(tn) + EPS;
		for (uint64_t e = 0; e < ne; e++)
			r[e] = (m[e] * cos(tn) + t[e] * (sin(tn) / tn)) * avg;
	}
	for (unsigned i = 0; i < s->n; i++)
		free(u[i]);
	free(m), free(t);
	return kind;
}

static double json_dbl(json_t *v)
{
	if (json_is_number(v))
		return json_number_value(v);
	const char *str = json_string_value(v);
	return !str ? NAN : !strcmp(str, "inf") ? INFINITY : !strcmp(str, "-inf") ? -INFINITY : NAN;
}

/* The manifest's entry of a tensor: its Gram matrix (pairs i <= j in
 * order), and lines' case. NULL when there is none. */
static const char *reported(json_t *mf, const char *name, double *g, unsigned npairs)
{
	json_t *ts = json_object_get(mf, "tensors"), *e;
	size_t i;
	json_array_foreach(ts, i, e) {
		if (strcmp(json_string_value(json_object_get(e, "name")), name))
			continue;
		json_t *o = json_object_get(e, "multislerp"), *a = json_object_get(o, "gram");
		if (!o || json_array_size(a) != npairs)
			return NULL;
		for (unsigned q = 0; q < npairs; q++)
			g[q] = json_dbl(json_array_get(a, q));
		return json_string_value(json_object_get(o, "case"));
	}
	return NULL;
}

/* The Gram matrix against a full scan. */
static void check_gram(const struct scenario *s, double *const *v, uint64_t ne, const double *g,
                       const char *name, struct tally *ty)
{
	unsigned q = 0;
	for (unsigned i = 0; i < s->n; i++)
		for (unsigned j = i; j < s->n; j++, q++) {
			double d = 0, a = 0;
			for (uint64_t e = 0; e < ne; e++)
				d += v[i][e] * v[j][e], a += fabs(v[i][e] * v[j][e]);
			int fine = isnan(d) ? isnan(g[q]) : isinf(d) ? g[q] == d : fabs(g[q] - d) <= 1e-12 * a;
			if (!fine)
				fail_msg(ty, name, "a reported dot differs from the full scan");
		}
}

static double lambda_of(const struct family *f, const struct scenario *s, const char *name)
{
	long blk = tu_block_of(name);
	if (!s->lines)
		return s->lambda;
	return blk < 0 ? s->alpha : s->alpha + s->beta * (double)blk / (double)(f->L - 1);
}

static const char *const case_names[] = {"slerp", "lerp", "zero_vectors", "zero_mean"};

static void check_tensor(const struct family *f, const struct scenario *s, json_t *mf,
                         const struct tu_tensor *r, const struct tu_tensor *o, struct tally *ty)
{
	const struct tu_tensor *b = tu_model_find(&f->m[M_BASE], r->name);
	const struct tu_tensor *x0 = tu_model_find(&f->m[s->m[0]], r->name);
	double **v = load_vectors(f, s, r->name), g[16], c[MAXN] = {1};
	double *res = calloc(r->nelem + 1, sizeof(double)), lam = lambda_of(f, s, r->name);
	int kind = K_SLERP;
	if (s->n > 1) {
		const char *cs = reported(mf, r->name, g, s->n * (s->n + 1) / 2);
		kind = reference(s, v, r->nelem, res, c);
		if (!cs)
			fail_msg(ty, r->name, "no multislerp entry in the manifest");
		else {
			check_gram(s, v, r->nelem, g, r->name, ty);
			if (!isnan(res[0]) && strcmp(cs, case_names[kind]))
				fail_msg(ty, r->name, "lines' case differs from the reference's");
		}
		kind == K_LERP ? ty->lerp++ : ty->slerp++;
	}
	for (uint64_t e = 0; e < r->nelem; e++) {
		double bv = tu_elem64(b, e), got = tu_elem64(o, e), ref, mag = 0;
		if (s->n == 1) {
			double x = tu_elem64(x0, e);
			ref = s->base ? bv + lam * (x - bv) : x, mag = fabs(bv) + fabs(lam) * (fabs(x) + fabs(bv));
		} else {
			for (unsigned i = 0; i < s->n; i++)
				mag += fabs(c[i] * v[i][e]);
			ref = s->base ? bv + lam * res[e] : res[e];
			mag = s->base ? fabs(lam) * mag + fabs(bv) : mag;
		}
		check_element(ty, r->name, e, o->dtype, ref, mag, got);
		if (s->zero_out && isfinite(got) && got != 0)
			ty->nonzero++;
	}
	free_vectors(v, s->n);
	free(res);
}

/* Automatic alpha from its formula, with the coefficients of the reference. */
static double auto_alpha(const struct family *f, const struct scenario *s)
{
	double num = 0, den = 0, c[MAXN];
	for (size_t ti = 0; ti < f->m[M_BASE].n; ti++) {
		const struct tu_tensor *b = &f->m[M_BASE].t[ti];
		if (!tu_is_float(b))
			continue;
		double **v = load_vectors(f, s, b->name), *res = calloc(b->nelem + 1, sizeof(double));
		reference(s, v, b->nelem, res, c);
		for (uint64_t e = 0; e < b->nelem; e++) {
			double sum = 0, m = 0;
			for (unsigned i = 0; i < s->n; i++)
				sum += v[i][e], m += c[i] * v[i][e];
			if (!isfinite(sum) || !isfinite(m))
				continue;
			num += s->norm_p == 2 ? sum * sum : fabs(sum);
			den += s->norm_p == 2 ? m * m : fabs(m);
		}
		free_vectors(v, s->n);
		free(res);
	}
	if (s->norm_p == 2)
		num = sqrt(num), den = sqrt(den);
	return num / (s->n * den);
}

static void check_alpha(const struct family *f, struct scenario *s, const struct tu_model *om)
{
	double want = auto_alpha(f, s);
	const char *rec = tu_model_meta(om, "lines.alpha");
	double got = rec ? strtod(rec, NULL) : NAN;
	ok(fabs(got - want) <= 1e-12 * fabs(want) && want > 0,
	   "%s/%s %s: alpha %.17g matches the formula %.17g", f->arch, f->dtype, s->name, got, want);
	s->alpha = got, s->beta = fmax(0.0, 1.0 - got);
}

static int run_lines(const struct family *f, const struct scenario *s, const char *out)
{
	char args[512], files[4 * 4400] = "";
	size_t n = (size_t)snprintf(args, sizeof(args), "-m multislerp");
	for (unsigned i = 0; s->w[0] != 0 && i < s->n; i++)
		n += (size_t)snprintf(args + n, sizeof(args) - n, "%s%.17g", i ? "," : " -w ", s->w[i]);
	if (s->no_normalize)
		n += (size_t)snprintf(args + n, sizeof(args) - n, " --no-normalize");
	if (s->lambda != 1)
		n += (size_t)snprintf(args + n, sizeof(args) - n, " --lambda %.17g", s->lambda);
	if (s->lines && s->norm_p)
		n += (size_t)snprintf(args + n, sizeof(args) - n, " --lines --norm l%d", s->norm_p);
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

static void report(const struct family *f, const struct scenario *s, const struct tally *ty)
{
	if (!ok(ty->bad == 0 && ty->checked > 0,
	        "%s/%s %s: %llu elements within 1 ULP of the float64 reference (worst %.3f ULP), "
	        "the Gram matrices of %llu tensors match a full scan",
	        f->arch, f->dtype, s->name, (unsigned long long)ty->checked, ty->worst,
	        (unsigned long long)(ty->lerp + ty->slerp)))
		diag("%llu bad; first: %s", (unsigned long long)ty->bad, ty->first_bad);
	if (s->zero_out) {
		ok(ty->nonzero == 0, "%s/%s %s: every finite element is 0 (%llu are not)", f->arch,
		   f->dtype, s->name, (unsigned long long)ty->nonzero);
		ok(ty->lerp > 0, "%s/%s %s: %llu tensors fall back to lerp", f->arch, f->dtype, s->name,
		   (unsigned long long)ty->lerp);
	} else if (s->n > 1)
		ok(ty->slerp > 0 && ty->lerp == 0, "%s/%s %s: %llu tensors on the sphere, none lerp",
		   f->arch, f->dtype, s->name, (unsigned long long)ty->slerp);
}

static void run_refused(const struct family *f, const struct scenario *s, const char *out)
{
	int rc = run_lines(f, s, out);
	ok(rc == 1 && !tu_exists(out) && strstr(tu_stderr, "multislerp") &&
	       strstr(tu_stderr, ".weight") && strstr(tu_stderr, "zero"),
	   "%s/%s %s: refused (exit %d), an error naming the tensor, no output", f->arch, f->dtype,
	   s->name, rc);
}

static void run_scenario(struct family *f, const struct scenario *s0, int idx)
{
	char out[4400], mfp[4500];
	struct tu_model om;
	struct tally ty = {0};
	struct scenario sc = *s0, *s = &sc;

	snprintf(out, sizeof(out), "%s/out%d.safetensors", f->dir, idx);
	snprintf(mfp, sizeof(mfp), "%s.manifest.json", out);
	if (s->refused) {
		run_refused(f, s, out);
		return;
	}
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
	if (s->norm_p)
		check_alpha(f, s, &om);
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
	report(f, s, &ty);
	json_decref(mf);
	tu_model_free(&om);
}

static int load_family(struct family *f, size_t seed)
{
	char p[4400];
	snprintf(f->dir, sizeof(f->dir), "%s/%s-%s", tu_tmpdir(), f->arch, f->dtype);
	/* gpt2's layer norms have a length that is not a multiple of 8
	 * (--ragged): the vector loops' last elements are checked too */
	if (!ok(tu_run("'%s' --arch %s --dtype %s --layers 4 --hidden 32 --models 3 --seed %zu "
	               "--specials %s --out '%s' && '%s' merge -q -m linear -w -1 --no-normalize "
	               "-o '%s/neg.safetensors' '%s/ft1.safetensors'",
	               tu_gen(), f->arch, f->dtype, seed, strcmp(f->arch, "gpt2") ? "" : "--ragged",
	               f->dir, tu_lines(), f->dir, f->dir) == 0,
	        "generate %s/%s family of 3 models and the negation of ft1", f->arch, f->dtype))
		return 0;
	int loaded = 1;
	for (int i = 0; i < M_COUNT; i++) {
		snprintf(p, sizeof(p), "%s/%s.safetensors", f->dir, file_of[i]);
		loaded &= tu_model_load(&f->m[i], p) == 0;
	}
	for (size_t i = 0; loaded && i < f->m[M_BASE].n; i++)
		if (tu_block_of(f->m[M_BASE].t[i].name) + 1 > f->L)
			f->L = tu_block_of(f->m[M_BASE].t[i].name) + 1;
	return ok(loaded && f->L == 4, "read %s/%s family (L = %ld)", f->arch, f->dtype, f->L);
}

int main(void)
{
	static const char *const archs[] = {"llama", "gpt2"};
	static const char *const dtypes[] = {"bf16", "f16", "f32", "f64"};

	for (size_t a = 0; a < 2; a++)
		for (size_t d = 0; d < (a ? 3 : 4); d++) {
			struct family f = {archs[a], dtypes[d], "", {{0}}, 0};
			if (load_family(&f, 91 + a * 3 + d))
				for (size_t s = 0; s < sizeof(scenarios) / sizeof(scenarios[0]); s++)
					run_scenario(&f, &scenarios[s], (int)s);
			for (int i = 0; i < M_COUNT; i++)
				tu_model_free(&f.m[i]);
		}
	tu_cleanup();
	return tap_done();
}
