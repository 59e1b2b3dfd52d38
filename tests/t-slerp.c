/*
 * t-slerp.c -- mergekit's slerp and nuslerp: every merged element against
 * a float64 reference written here from the formulas of lines-merge(1),
 * and every tensor's dot products against a full scan, on generated Llama
 * and GPT-2 families in BF16, F16 and F32 (with NaN and infinities:
 * --specials), with and without LiNeS.
 *
 *   slerp:   v0 = base, v1 = the model; a_i = |v_i| if > 1e-8 else 1;
 *            c = v0.v1 / (a0 a1); |c| > 0.9995: lerp (1 - t, t); else
 *            th = acos c, s0 = sin(th - t th) / sin th, s1 = sin(t th) / sin th;
 *            v = s0 v0 + s1 v1, ref = v0 + lambda (v - v0)
 *   nuslerp: t = w1 / (w0 + w1) (0.5 when |w0 + w1| < 1e-6); v_i = model i,
 *            or (float)(model i - base) with a base; c = v0.v1 /
 *            (max(|v0|, 1e-7) max(|v1|, 1e-7)) clamped to [-1, 1];
 *            th = acos c; |sin th| < 1e-8: lerp; else s0 = sin((1-t) th) /
 *            sin th, s1 = sin(t th) / sin th; m = s0 v0 + s1 v1;
 *            ref = m, or base + lambda m
 *
 * The dots lines reports per tensor (the manifest's "slerp"/"nuslerp"
 * entries) must match the test's own scan to 1e-12 of the sum of the
 * magnitudes of the products; the elements are then checked against the
 * coefficients computed here from the reported dots (near c = +-1, acos
 * turns one rounding of c into a different branch, so the reference uses
 * the very c lines used). Elements are within one ULP of the output dtype
 * plus 2^-48 times the operands' magnitudes, as in t-mergekit.c.
 *
 * Automatic alpha of nuslerp with a base, ||v0 + v1|| / (2 ||m||) (L1 or
 * L2, elements where either is not finite left out), is recomputed with
 * the coefficients of the reported dots and must match the alpha lines
 * records to 1e-12; the elements are then checked with that alpha.
 *
 * Edge cases: slerp of the base with itself (lerp everywhere, the base's
 * bytes), nuslerp with a zero task vector (norm clamped), nuslerp of a
 * model and its exact negation (antiparallel: lines interpolates
 * linearly; with equal weights every finite element is 0), and weights
 * summing to 0 (t = 0.5).
 *
 * nuslerp --per-row (mergekit's nuslerp_flatten: false) takes the angle
 * per row (the last dimension): the test sums each row's dots as lines
 * does (element e into lane e mod 8 of the row, then the lanes in a fixed
 * order), so its coefficients are lines'; every element,
 * the rows and lerp rows of each tensor in the manifest, and automatic
 * alpha over the rows are checked the same way.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tap.h"
#include "tutil.h"

enum { SLERP, NUSLERP };
/* the models: base, ft1, ft2, neg (exactly -ft1) */
enum { M_BASE, M_FT1, M_FT2, M_NEG, M_COUNT };

struct scenario {
	const char *name;
	int method, base; /* -b */
	int m0, m1;       /* slerp: m0 is the base */
	double t, w0, w1; /* --t (slerp), -w (nuslerp) */
	double lambda;
	int lines;
	double alpha, beta;
	int zero_out; /* every finite element must be exactly 0 */
	int all_lerp; /* every tensor interpolates linearly */
	int norm_p;   /* automatic alpha (--lines alone) with this norm; 0: none */
	int per_row;  /* nuslerp --per-row: the angles per row */
};

static const struct scenario scenarios[] = {
	{"slerp --t 0.3", SLERP, 1, M_BASE, M_FT1, 0.3, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0},
	{"slerp --t 0.7 --lines", SLERP, 1, M_BASE, M_FT1, 0.7, 0, 0, 1, 1, 0.3, 0.6, 0, 0, 0, 0},
	{"slerp --t 1.25 --lambda 0.5", SLERP, 1, M_BASE, M_FT1, 1.25, 0, 0, 0.5, 0, 0, 0, 0, 0, 0, 0},
	{"slerp of the base with itself", SLERP, 1, M_BASE, M_BASE, 0.4, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0},
	{"nuslerp -w 1,3", NUSLERP, 0, M_FT1, M_FT2, 0, 1, 3, 1, 0, 0, 0, 0, 0, 0, 0},
	{"nuslerp -b -w 2,1 --lines", NUSLERP, 1, M_FT1, M_FT2, 0, 2, 1, 1, 1, 0.2, 0.7, 0, 0, 0, 0},
	{"nuslerp -b -w 1,-3 --lambda 0.8", NUSLERP, 1, M_FT1, M_FT2, 0, 1, -3, 0.8, 0, 0, 0, 0, 0, 0, 0},
	{"nuslerp -w 1,-1 (t 0.5)", NUSLERP, 0, M_FT1, M_FT2, 0, 1, -1, 1, 0, 0, 0, 0, 0, 0, 0},
	{"nuslerp -b, a zero task vector", NUSLERP, 1, M_BASE, M_FT1, 0, 1, 2, 1, 0, 0, 0, 0, 0, 0, 0},
	{"nuslerp antiparallel", NUSLERP, 0, M_FT1, M_NEG, 0, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0},
	{"nuslerp antiparallel -w 1,3", NUSLERP, 0, M_FT1, M_NEG, 0, 1, 3, 1, 0, 0, 0, 0, 0, 0, 0},
	{"nuslerp -b -w 1,3 --lines auto", NUSLERP, 1, M_FT1, M_FT2, 0, 1, 3, 1, 1, 0, 0, 0, 0, 1, 0},
	{"nuslerp -b -w 3,2 --lines auto L2", NUSLERP, 1, M_FT1, M_FT2, 0, 3, 2, 1, 1, 0, 0, 0, 0, 2, 0},
	{"nuslerp --per-row -w 1,3", NUSLERP, 0, M_FT1, M_FT2, 0, 1, 3, 1, 0, 0, 0, 0, 0, 0, 1},
	{"nuslerp --per-row -b -w 2,1 --lines", NUSLERP, 1, M_FT1, M_FT2, 0, 2, 1, 1, 1, 0.2, 0.7, 0, 0,
	 0, 1},
	{"nuslerp --per-row antiparallel", NUSLERP, 0, M_FT1, M_NEG, 0, 1, 1, 1, 0, 0, 0, 1, 0, 0, 1},
	{"nuslerp --per-row -b -w 1,3 --lines auto L2", NUSLERP, 1, M_FT1, M_FT2, 0, 1, 3, 1, 1, 0, 0,
	 0, 0, 2, 1},
};

static const char *const file_of[M_COUNT] = {"base", "ft1", "ft2", "neg"};

struct family {
	const char *arch, *dtype;
	char dir[4200];
	struct tu_model m[M_COUNT];
	long L;
};

struct tally {
	uint64_t checked, bad, lerp, slerp, dots_bad, nonzero;
	double worst;
	char first_bad[512];
};

static void fail(struct tally *ty, const char *fmt, const char *name, uint64_t e, double got,
                 double ref)
{
	if (!ty->bad++)
		snprintf(ty->first_bad, sizeof(ty->first_bad), fmt, name, (unsigned long long)e, got, ref);
}

static void fail_msg(struct tally *ty, const char *name, const char *what)
{
	if (!ty->bad++)
		snprintf(ty->first_bad, sizeof(ty->first_bad), "%s: %s", name, what);
}

static void check_element(struct tally *ty, const char *name, uint64_t e, const char *odt,
                          double ref, double mag, double got)
{
	int fine = tu_within(odt, ref, mag, got, 0x1p-48, &ty->worst);
	ty->checked++;
	if (!fine)
		fail(ty, "%s[%llu]: got %.9g, reference %.17g", name, e, got, ref);
}

/* The coefficients from the dots d = {v0.v1, |v0|^2, |v1|^2}; 1 for lerp. */
static int coefficients(const struct scenario *s, double t, const double *d, double *s0, double *s1)
{
	double n0 = sqrt(d[1]), n1 = sqrt(d[2]), c, th;
	if (s->method == SLERP) {
		c = d[0] / ((n0 > 1e-8 ? n0 : 1) * (n1 > 1e-8 ? n1 : 1));
		if (fabs(c) > 0.9995) {
			*s0 = 1 - t, *s1 = t;
			return 1;
		}
		th = acos(c);
		*s0 = sin(th - t * th) / sin(th), *s1 = sin(t * th) / sin(th);
		return 0;
	}
	c = d[0] / (fmax(n0, 1e-7) * fmax(n1, 1e-7));
	if (c > 1)
		c = 1;
	if (c < -1)
		c = -1;
	th = acos(c);
	if (fabs(sin(th)) < 1e-8) {
		*s0 = 1 - t, *s1 = t;
		return 1;
	}
	*s0 = sin((1 - t) * th) / sin(th), *s1 = sin(t * th) / sin(th);
	return 0;
}

/* The two vectors' element e: models, or task vectors (float32) with a base. */
static void vectors(const struct scenario *s, const struct tu_tensor *b, const struct tu_tensor *x0,
                    const struct tu_tensor *x1, uint64_t e, double *v0, double *v1, double *bv)
{
	*bv = tu_elem(b, e);
	*v0 = tu_elem(x0, e), *v1 = tu_elem(x1, e);
	if (s->method == NUSLERP && s->base) {
		*v0 = (float)(tu_elem(x0, e) - tu_elem(b, e));
		*v1 = (float)(tu_elem(x1, e) - tu_elem(b, e));
	}
}

/* The reported dots against a full scan. */
static void check_dots(const struct scenario *s, const struct tu_tensor *b, const struct tu_tensor *x0,
                       const struct tu_tensor *x1, const double *got, struct tally *ty)
{
	double d[3] = {0, 0, 0}, a[3] = {0, 0, 0};
	for (uint64_t e = 0; e < b->nelem; e++) {
		double v0, v1, bv;
		vectors(s, b, x0, x1, e, &v0, &v1, &bv);
		d[0] += v0 * v1, d[1] += v0 * v0, d[2] += v1 * v1;
		a[0] += fabs(v0 * v1), a[1] += v0 * v0, a[2] += v1 * v1;
	}
	for (int i = 0; i < 3; i++) {
		int fine = isnan(d[i]) ? isnan(got[i])
		           : isinf(d[i]) ? got[i] == d[i]
		                         : fabs(got[i] - d[i]) <= 1e-12 * a[i];
		if (!fine && !ty->dots_bad++)
			fail(ty, "%s dot %llu: got %.17g, scan %.17g", b->name, (uint64_t)i, got[i], d[i]);
		if (!fine)
			ty->bad++;
	}
}

static double json_dbl(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	if (json_is_number(v))
		return json_number_value(v);
	const char *str = json_string_value(v);
	return !str ? NAN : !strcmp(str, "inf") ? INFINITY : !strcmp(str, "-inf") ? -INFINITY : NAN;
}

/* The manifest's entry of a tensor: its dots, and lines' lerp choice. */
static int reported(json_t *mf, const char *key, const char *name, double *d, int *lerp)
{
	json_t *ts = json_object_get(mf, "tensors"), *e;
	size_t i;
	json_array_foreach(ts, i, e) {
		if (strcmp(json_string_value(json_object_get(e, "name")), name))
			continue;
		json_t *o = json_object_get(e, key);
		if (!o)
			return -1;
		d[0] = json_dbl(o, "dot"), d[1] = json_dbl(o, "norm0_sq"), d[2] = json_dbl(o, "norm1_sq");
		*lerp = json_is_true(json_object_get(o, "lerp"));
		return 0;
	}
	return -1;
}

static double t_of(const struct scenario *s)
{
	if (s->method == SLERP)
		return s->t;
	return fabs(s->w0 + s->w1) < 1e-6 ? 0.5 : s->w1 / (s->w0 + s->w1);
}

static double lambda_of(const struct family *f, const struct scenario *s, const char *name)
{
	long blk = tu_block_of(name);
	if (!s->lines)
		return s->lambda;
	return blk < 0 ? s->alpha : s->alpha + s->beta * (double)blk / (double)(f->L - 1);
}

static void check_tensor(const struct family *f, const struct scenario *s, json_t *mf,
                         const struct tu_tensor *r, const struct tu_tensor *o, struct tally *ty)
{
	const char *key = s->method == SLERP ? "slerp" : "nuslerp";
	const struct tu_tensor *b = tu_model_find(&f->m[M_BASE], r->name);
	const struct tu_tensor *x0 = tu_model_find(&f->m[s->m0], r->name);
	const struct tu_tensor *x1 = tu_model_find(&f->m[s->m1], r->name);
	double d[3], s0, s1, t = s->t, lam = lambda_of(f, s, r->name);
	int lerp;
	t = t_of(s);
	if (reported(mf, key, r->name, d, &lerp) < 0) {
		fail_msg(ty, r->name, "no entry of the method in the manifest");
		return;
	}
	check_dots(s, b, x0, x1, d, ty);
	if (coefficients(s, t, d, &s0, &s1) != lerp)
		fail_msg(ty, r->name, "lines' lerp choice differs from its dots'");
	if (isfinite(s0) && isfinite(s1))
		lerp ? ty->lerp++ : ty->slerp++;
	for (uint64_t e = 0; e < r->nelem; e++) {
		double v0, v1, bv, got = tu_elem(o, e);
		vectors(s, b, x0, x1, e, &v0, &v1, &bv);
		double m = s0 * v0 + s1 * v1, mag = fabs(s0 * v0) + fabs(s1 * v1), ref = m;
		if (s->method == SLERP && lam != 1)
			ref = v0 + lam * (m - v0), mag = (1 + fabs(lam)) * (mag + fabs(v0));
		else if (s->method == NUSLERP && s->base)
			ref = bv + lam * m, mag = fabs(lam) * mag + fabs(bv);
		check_element(ty, r->name, e, o->dtype, ref, mag, got);
		if (s->zero_out && isfinite(got) && got != 0)
			ty->nonzero++;
	}
}

/* The elements of a row with --per-row: the last dimension (a vector is
 * one row); the whole tensor without. */
static uint64_t row_len(const struct scenario *s, const struct tu_tensor *b)
{
	if (!s->per_row || b->rank < 2 || b->shape[b->rank - 1] == 0)
		return b->nelem ? b->nelem : 1;
	return b->shape[b->rank - 1];
}

/* A row's dots, summed in element order as lines sums them. */
static void row_dots(const struct scenario *s, const struct tu_tensor *b, const struct tu_tensor *x0,
                     const struct tu_tensor *x1, uint64_t e0, uint64_t e1, double *d)
{
	double l[3][8] = {{0}};
	for (uint64_t e = e0; e < e1; e++) { /* lane (e - e0) mod 8, as lines */
		double v0, v1, bv;
		unsigned q = (unsigned)((e - e0) % 8);
		vectors(s, b, x0, x1, e, &v0, &v1, &bv);
		l[0][q] += v0 * v1, l[1][q] += v0 * v0, l[2][q] += v1 * v1;
	}
	for (int k = 0; k < 3; k++) /* and the lanes in lines' order */
		d[k] = ((l[k][0] + l[k][1]) + (l[k][2] + l[k][3])) +
		       ((l[k][4] + l[k][5]) + (l[k][6] + l[k][7]));
}

/* The manifest's per-row entry of nuslerp: its rows and lerp rows. */
static int reported_rows(json_t *mf, const char *name, double *rows, double *lerp_rows)
{
	json_t *ts = json_object_get(mf, "tensors"), *e;
	size_t i;
	json_array_foreach(ts, i, e) {
		if (strcmp(json_string_value(json_object_get(e, "name")), name))
			continue;
		json_t *o = json_object_get(e, "nuslerp");
		*rows = json_dbl(o, "rows"), *lerp_rows = json_dbl(o, "lerp_rows");
		return o ? 0 : -1;
	}
	return -1;
}

/* nuslerp --per-row: each row's coefficients from the test's own dots
 * (summed in the order lines sums them, so the same values), every
 * element, and the rows and lerp rows lines reports. */
static void check_tensor_rows(const struct family *f, const struct scenario *s, json_t *mf,
                              const struct tu_tensor *r, const struct tu_tensor *o,
                              struct tally *ty)
{
	const struct tu_tensor *b = tu_model_find(&f->m[M_BASE], r->name);
	const struct tu_tensor *x0 = tu_model_find(&f->m[s->m0], r->name);
	const struct tu_tensor *x1 = tu_model_find(&f->m[s->m1], r->name);
	double d[3], s0, s1, lam = lambda_of(f, s, r->name), rows = 0, lerps = 0, grows, glerps;
	uint64_t len = row_len(s, r);
	for (uint64_t e0 = 0; e0 < r->nelem; e0 += len, rows++) {
		row_dots(s, b, x0, x1, e0, e0 + len, d);
		int lerp = coefficients(s, t_of(s), d, &s0, &s1);
		lerps += lerp;
		if (isfinite(s0) && isfinite(s1))
			lerp ? ty->lerp++ : ty->slerp++;
		for (uint64_t e = e0; e < e0 + len; e++) {
			double v0, v1, bv, got = tu_elem(o, e);
			vectors(s, b, x0, x1, e, &v0, &v1, &bv);
			double m = s0 * v0 + s1 * v1, mag = fabs(s0 * v0) + fabs(s1 * v1), ref = m;
			if (s->base)
				ref = bv + lam * m, mag = fabs(lam) * mag + fabs(bv);
			check_element(ty, r->name, e, o->dtype, ref, mag, got);
			if (s->zero_out && isfinite(got) && got != 0)
				ty->nonzero++;
		}
	}
	if (reported_rows(mf, r->name, &grows, &glerps) < 0 || grows != rows || glerps != lerps)
		fail_msg(ty, r->name, "the rows or lerp rows in the manifest are not the test's");
}

/* Automatic alpha from its formula, with the coefficients of the reported dots. */
static double auto_alpha(const struct family *f, const struct scenario *s, json_t *mf)
{
	double num = 0, den = 0, d[3], s0, s1;
	int lerp;
	for (size_t ti = 0; ti < f->m[M_BASE].n; ti++) {
		const struct tu_tensor *b = &f->m[M_BASE].t[ti];
		if (!tu_is_float(b) || (!s->per_row && reported(mf, "nuslerp", b->name, d, &lerp) < 0))
			continue;
		const struct tu_tensor *x0 = tu_model_find(&f->m[s->m0], b->name);
		const struct tu_tensor *x1 = tu_model_find(&f->m[s->m1], b->name);
		if (!s->per_row)
			coefficients(s, t_of(s), d, &s0, &s1);
		for (uint64_t e = 0, len = row_len(s, b); e < b->nelem; e++) {
			if (s->per_row && e % len == 0) {
				row_dots(s, b, x0, x1, e, e + len, d);
				coefficients(s, t_of(s), d, &s0, &s1);
			}
			double v0, v1, bv;
			vectors(s, b, x0, x1, e, &v0, &v1, &bv);
			double sum = v0 + v1, m = s0 * v0 + s1 * v1;
			if (!isfinite(sum) || !isfinite(m))
				continue;
			num += s->norm_p == 2 ? sum * sum : fabs(sum);
			den += s->norm_p == 2 ? m * m : fabs(m);
		}
	}
	if (s->norm_p == 2)
		num = sqrt(num), den = sqrt(den);
	return num / (2 * den);
}

/* The scenario with the alpha lines recorded, once it matches the formula. */
static void check_alpha(const struct family *f, struct scenario *s, json_t *mf,
                        const struct tu_model *om)
{
	double want = auto_alpha(f, s, mf);
	const char *rec = tu_model_meta(om, "lines.alpha");
	double got = rec ? strtod(rec, NULL) : NAN;
	ok(fabs(got - want) <= 1e-12 * fabs(want) && want > 0,
	   "%s/%s %s: alpha %.17g matches the formula %.17g", f->arch, f->dtype, s->name, got, want);
	s->alpha = got, s->beta = fmax(0.0, 1.0 - got);
}

static int run_lines(const struct family *f, const struct scenario *s, const char *out)
{
	char args[512], base[4300] = "";
	size_t n;
	if (s->method == SLERP)
		n = (size_t)snprintf(args, sizeof(args), "-m slerp --t %.17g", s->t);
	else
		n = (size_t)snprintf(args, sizeof(args), "-m nuslerp -w %.17g,%.17g", s->w0, s->w1);
	if (s->lambda != 1)
		n += (size_t)snprintf(args + n, sizeof(args) - n, " --lambda %.17g", s->lambda);
	if (s->per_row)
		n += (size_t)snprintf(args + n, sizeof(args) - n, " --per-row");
	if (s->lines && s->norm_p)
		snprintf(args + n, sizeof(args) - n, " --lines --norm l%d", s->norm_p);
	else if (s->lines)
		snprintf(args + n, sizeof(args) - n, " --lines --alpha %.17g --beta %.17g", s->alpha, s->beta);
	if (s->base || s->method == SLERP)
		snprintf(base, sizeof(base), "-b '%s/%s.safetensors'", f->dir,
		         s->method == SLERP ? file_of[s->m0] : "base");
	if (s->method == SLERP)
		return tu_run("'%s' merge -q %s %s -o '%s' '%s/%s.safetensors'", tu_lines(), base, args,
		              out, f->dir, file_of[s->m1]);
	return tu_run("'%s' merge -q %s %s -o '%s' '%s/%s.safetensors' '%s/%s.safetensors'", tu_lines(),
	              base, args, out, f->dir, file_of[s->m0], f->dir, file_of[s->m1]);
}

static void report(const struct family *f, const struct scenario *s, const struct tally *ty)
{
	if (!ok(ty->bad == 0 && ty->checked > 0,
	        "%s/%s %s: %llu elements within 1 ULP of the float64 reference (worst %.3f ULP), "
	        "the dots of %llu tensors match a full scan",
	        f->arch, f->dtype, s->name, (unsigned long long)ty->checked, ty->worst,
	        (unsigned long long)(ty->lerp + ty->slerp)))
		diag("%llu bad; first: %s", (unsigned long long)ty->bad, ty->first_bad);
	if (s->all_lerp)
		ok(ty->slerp == 0 && ty->lerp > 0, "%s/%s %s: every tensor falls back to lerp", f->arch,
		   f->dtype, s->name);
	else if (s->method == SLERP && s->m1 != M_BASE)
		ok(ty->slerp > 0 && ty->lerp > 0, "%s/%s %s: both cases: %llu tensors slerp, %llu lerp",
		   f->arch, f->dtype, s->name, (unsigned long long)ty->slerp,
		   (unsigned long long)ty->lerp);
	if (s->zero_out)
		ok(ty->nonzero == 0, "%s/%s %s: every finite element is 0 (%llu are not)", f->arch,
		   f->dtype, s->name, (unsigned long long)ty->nonzero);
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
	if (s->norm_p)
		check_alpha(f, s, mf, &om);
	const struct tu_model *refm = &f->m[s->method == SLERP || s->base ? M_BASE : s->m0];
	for (size_t ti = 0; ti < refm->n; ti++) {
		const struct tu_tensor *r = &refm->t[ti], *o = tu_model_find(&om, r->name);
		if (!o || strcmp(o->dtype, r->dtype))
			fail_msg(&ty, r->name, "missing or of another dtype");
		else if (!tu_is_float(r) && (o->nbytes != r->nbytes || memcmp(o->data, r->data, r->nbytes)))
			fail_msg(&ty, r->name, "copied tensor differs");
		else if (tu_is_float(r) && s->per_row)
			check_tensor_rows(f, s, mf, r, o, &ty);
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
	if (!ok(tu_run("'%s' --arch %s --dtype %s --layers 4 --hidden 32 --models 2 --seed %zu "
	               "--specials --out '%s' && '%s' merge -q -m linear -w -1 --no-normalize "
	               "-o '%s/neg.safetensors' '%s/ft1.safetensors'",
	               tu_gen(), f->arch, f->dtype, seed, f->dir, tu_lines(), f->dir, f->dir) == 0,
	        "generate %s/%s family and the negation of ft1", f->arch, f->dtype))
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
	static const char *const dtypes[] = {"bf16", "f16", "f32"};

	for (size_t a = 0; a < 2; a++)
		for (size_t d = 0; d < 3; d++) {
			struct family f = {archs[a], dtypes[d], "", {{0}}, 0};
			if (load_family(&f, 71 + a * 3 + d))
				for (size_t s = 0; s < sizeof(scenarios) / sizeof(scenarios[0]); s++)
					run_scenario(&f, &scenarios[s], (int)s);
			for (int i = 0; i < M_COUNT; i++)
				tu_model_free(&f.m[i]);
		}
	tu_cleanup();
	return tap_done();
}
