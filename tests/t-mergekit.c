/*
 * t-mergekit.c -- mergekit's linear and nearswap (and task_arithmetic,
 * sum's other name), consensus (TALL masks), ram and ramplus_tl: every
 * merged element against a float64 reference
 * written here from the formulas of lines-merge(1), on generated Llama and
 * GPT-2 families in BF16, F16 and F32, and F64 for ram (with NaN, infinities and
 * subnormals: --specials), weighted, with and without LiNeS.
 *
 *   linear:   v = sum_i w_i x_i [/ sum_i w_i]; with a base b and a scale
 *             lambda != 1, ref = b + lambda (v - b); else ref = v
 *   nearswap: w = clamp(t / |b - x|, 0, 1), 1 where that is NaN or
 *             infinite; v = w x + (1 - w) b; ref as above
 *   consensus: tau_t = x_t - b rounded to float32, c_t = w_t tau_t,
 *             mtl = c_1 + c_2 + c_3, m_t = |c_t| > l_t |mtl - c_t|;
 *             ref = b + lambda mtl where m_1 + m_2 + m_3 >= k or mtl is
 *             not finite, else b. k = 1, 2 and 3 each keep some elements
 *             and drop others, and fewer as k grows.
 *   ram:      tau_i = x_i - b (float32; float64 on the F64 families, which
 *             run only ram and ramplus_tl), nz_i = |tau_i| > eps, c = the
 *             count of nz_i; m = (sum of the nz tau_i) / c where c > 1,
 *             the one nz tau_i where c = 1, times lambda_i for ramplus_tl;
 *             ref = b + lambda m, b where c = 0, b + lambda (sum tau_i)
 *             where that sum is not finite. lambda_i = 1 + r clamp(shared_i
 *             / max(unique_i, eps), 0, alpha) from the test's own counts,
 *             which must be the manifest's per tensor; the manifest's
 *             elements by c (run.METHOD.agree) must be the test's, and c
 *             must take each value 0 to 3 with eps 0.003 or 0.004.
 *
 * Automatic alpha of linear, ||sum_i tau_i|| / (N ||v - theta_0||), of
 * consensus, ||sum_i tau_i|| / (N ||tau_cons||) (tau_cons = mtl where
 * kept, 0 elsewhere), and of ram, ||sum_i tau_i|| / (N ||m||), is
 * recomputed from its formula and must match the alpha lines records to
 * 1e-12 (exactly 1 for equal weights); the elements are then checked
 * against the recorded alpha.
 *
 * |out - ref| must be within one ULP of the output dtype at ref, plus
 * 2^-48 times the operands' magnitudes (the float64 reference's own
 * uncertainty, which matters only where they cancel). A NaN reference
 * must give a NaN, an infinite one the same infinity. Tensors that are
 * not floating point are the reference input's bytes (the base, or the
 * first model without one).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tap.h"
#include "tutil.h"

#define N_MODELS 3

enum { LINEAR, NEARSWAP, CONSENSUS, RAM, RAMPLUS };
static const char *const method_names[] = {"linear", "nearswap", "consensus", "ram", "ramplus_tl"};

struct scenario {
	const char *name;
	int meth;       /* LINEAR, NEARSWAP or CONSENSUS */
	int base;       /* -b */
	double w[N_MODELS];
	int weighted;   /* -w */
	int no_normalize;
	double lambda;  /* --lambda, when not 1 */
	int lines;      /* --lines --alpha A --beta B */
	double alpha, beta;
	double t;       /* nearswap */
	int alpha_auto; /* --lines with automatic alpha (beta: the default) */
	int norm_p;     /* its norm: 1, or 2 (--norm l2) */
	unsigned k;     /* consensus: --consensus-k */
	double tl[N_MODELS]; /* consensus: --tall-lambda, one per model */
	double eps;     /* ram, ramplus_tl: --epsilon */
	double rr, ra;  /* ramplus_tl: --ram-r, --ram-alpha */
	int all_c;      /* ram: c takes every value from 0 to N_MODELS */
};

/* consensus: the TALL lambda of every model unless --tall-lambda */
#define TL0 {0.4, 0.4, 0.4}
/* consensus: the TALL lambda of the k = 1, 2, 3 scenarios that are compared */
#define KTL 0.7
#define TLK {KTL, KTL, KTL}

static const struct scenario scenarios[] = {
	{"linear", 0, 0, {1, 1, 1}, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, {0}, 0, 0, 0, 0},
	{"linear weighted", 0, 0, {0.5, -0.25, 1.5}, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, {0}, 0, 0, 0, 0},
	{"linear weighted --no-normalize", 0, 0, {0.2, 0.3, 0.4}, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, {0}, 0, 0, 0, 0},
	{"linear -b weighted --lines", 0, 1, {1, 2, 3}, 1, 0, 1, 1, 0.3, 0.6, 0, 0, 0, 0, {0}, 0, 0, 0, 0},
	{"linear -b --lambda 0.6", 0, 1, {1, 1, 1}, 0, 0, 0.6, 0, 0, 0, 0, 0, 0, 0, {0}, 0, 0, 0, 0},
	{"linear -b --lines --no-normalize", 0, 1, {0.5, 0.25, 0.25}, 1, 1, 1, 1, 0.5, 0.5, 0, 0, 0, 0, {0}, 0, 0, 0, 0},
	{"linear -b --lines auto (alpha 1)", 0, 1, {1, 1, 1}, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, {0}, 0, 0, 0, 0},
	{"linear -b weighted --lines auto", 0, 1, {1, 2, 0.5}, 1, 0, 1, 1, 0, 0, 0, 1, 1, 0, {0}, 0, 0, 0, 0},
	{"linear -b --no-normalize --lines auto L2", 0, 1, {0.5, 0.3, 0.4}, 1, 1, 1, 1, 0, 0, 0, 1, 2, 0, {0}, 0, 0, 0, 0},
	{"nearswap --t 0.01", 1, 1, {1, 0, 0}, 0, 0, 1, 0, 0, 0, 0.01, 0, 0, 0, {0}, 0, 0, 0, 0},
	{"nearswap --t 0.002 --lines", 1, 1, {1, 0, 0}, 0, 0, 1, 1, 0.2, 0.8, 0.002, 0, 0, 0, {0}, 0, 0, 0, 0},
	{"nearswap --t 0.004 --lambda 0.5", 1, 1, {1, 0, 0}, 0, 0, 0.5, 0, 0, 0, 0.004, 0, 0, 0, {0}, 0, 0, 0, 0},
	/* the first three differ only in k and in what scales the merged vector */
	{"consensus -k 1 --tall-lambda 0.7", 2, 1, {1, 1, 1}, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, TLK, 0, 0, 0, 0},
	{"consensus -k 2 --tall-lambda 0.7 --lambda 0.7", 2, 1, {1, 1, 1}, 0, 0, 0.7, 0, 0, 0, 0, 0, 0,
	 2, TLK, 0, 0, 0, 0},
	{"consensus -k 3 --tall-lambda 0.7 --lines", 2, 1, {1, 1, 1}, 0, 0, 1, 1, 0.3, 0.6, 0, 0, 0, 3,
	 TLK, 0, 0, 0, 0},
	{"consensus -k 2 weighted, tall lambdas, --lines auto", 2, 1, {0.5, 1, 2}, 1, 0, 1, 1, 0, 0,
	 0, 1, 1, 2, {0.2, 0.5, 0.9}, 0, 0, 0, 0},
	{"consensus -k 1 --lines auto L2", 2, 1, {1, 1, 1}, 0, 0, 1, 1, 0, 0, 0, 1, 2, 1,
	 {1.5, 1.5, 1.5}, 0, 0, 0, 0},
	{"consensus -k 2 (defaults)", 2, 1, {1, 1, 1}, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2, TL0, 0, 0, 0, 0},
	{"consensus -k 3 weighted --tall-lambda 0.3", 2, 1, {2, -1, 0.5}, 1, 0, 1, 0, 0, 0, 0, 0, 0,
	 3, {0.3, 0.3, 0.3}, 0, 0, 0, 0},
	{.name = "ram (defaults)", .meth = RAM, .base = 1, .w = {1, 1, 1}, .lambda = 1, .eps = 1e-5},
	{.name = "ram --epsilon 0.003", .meth = RAM, .base = 1, .w = {1, 1, 1}, .lambda = 1,
	 .eps = 0.003, .all_c = 1},
	{.name = "ram --epsilon 0.003 --lines auto", .meth = RAM, .base = 1, .w = {1, 1, 1},
	 .lambda = 1, .lines = 1, .alpha_auto = 1, .norm_p = 1, .eps = 0.003, .all_c = 1},
	{.name = "ram --epsilon 0.001 --lambda 0.7", .meth = RAM, .base = 1, .w = {1, 1, 1},
	 .lambda = 0.7, .eps = 0.001},
	{.name = "ram --epsilon 0.002 --lines --alpha 0.3 --beta 0.6", .meth = RAM, .base = 1,
	 .w = {1, 1, 1}, .lambda = 1, .lines = 1, .alpha = 0.3, .beta = 0.6, .eps = 0.002},
	{.name = "ramplus_tl (defaults)", .meth = RAMPLUS, .base = 1, .w = {1, 1, 1}, .lambda = 1,
	 .eps = 1e-5, .rr = 0.1, .ra = 0.2},
	{.name = "ramplus_tl --epsilon 0.003 --ram-r 0.5 --ram-alpha 5", .meth = RAMPLUS,
	 .base = 1, .w = {1, 1, 1}, .lambda = 1, .eps = 0.003, .rr = 0.5, .ra = 5, .all_c = 1},
	{.name = "ramplus_tl --epsilon 0.004 --ram-r 0.3 --ram-alpha 1 --lines auto L2",
	 .meth = RAMPLUS, .base = 1, .w = {1, 1, 1}, .lambda = 1, .lines = 1, .alpha_auto = 1,
	 .norm_p = 2, .eps = 0.004, .rr = 0.3, .ra = 1, .all_c = 1},
	/* the count pass measures the norms (float32 values), or on F64 a norm pass */
	{.name = "ramplus_tl --epsilon 0.003 --ram-r -0.5 --ram-alpha 3 --lines auto L1",
	 .meth = RAMPLUS, .base = 1, .w = {1, 1, 1}, .lambda = 1, .lines = 1, .alpha_auto = 1,
	 .norm_p = 1, .eps = 0.003, .rr = -0.5, .ra = 3},
	{.name = "ramplus_tl --epsilon 0.002 --lambda 1.3", .meth = RAMPLUS, .base = 1,
	 .w = {1, 1, 1}, .lambda = 1.3, .eps = 0.002, .rr = 0.1, .ra = 0.2},
	{.name = "ramplus_tl --epsilon 0.003 --ram-r -0.5 --ram-alpha 3 --lines --alpha 0.4 --beta 0.6",
	 .meth = RAMPLUS, .base = 1, .w = {1, 1, 1}, .lambda = 1, .lines = 1, .alpha = 0.4,
	 .beta = 0.6, .eps = 0.003, .rr = -0.5, .ra = 3},
};

/* the family being checked is F64: task vectors in float64, and only ram
 * and ramplus_tl run on it (the others' references round to float32) */
static int fam_f64;

/* tau = x - b, rounded to float32 unless the family is F64 */
static double task(double x, double b)
{
	return fam_f64 ? x - b : (double)(float)(x - b);
}

/* consensus: elements kept with k = 1, 2, 3 (the first three consensus
 * scenarios), per family */
static uint64_t kept_by_k[4];

struct family {
	const char *arch, *dtype;
	char dir[4200];
	struct tu_model base, ft[N_MODELS];
	long L;
};

struct tally {
	uint64_t checked, bad, near, far;
	double worst;
	char first_bad[512];
	uint64_t hist[N_MODELS + 1]; /* ram: the elements by c */
};

static void args_of(const struct scenario *s, char *a, size_t cap)
{
	size_t n = (size_t)snprintf(a, cap, "-m %s", method_names[s->meth]);
	if (s->meth == RAM || s->meth == RAMPLUS)
		n += (size_t)snprintf(a + n, cap - n, " --epsilon %.17g", s->eps);
	if (s->meth == RAMPLUS)
		n += (size_t)snprintf(a + n, cap - n, " --ram-r %.17g --ram-alpha %.17g", s->rr, s->ra);
	if (s->meth == CONSENSUS)
		n += (size_t)snprintf(a + n, cap - n, " --consensus-k %u --tall-lambda %.17g,%.17g,%.17g",
		                      s->k, s->tl[0], s->tl[1], s->tl[2]);
	if (s->meth == NEARSWAP)
		n += (size_t)snprintf(a + n, cap - n, " --t %.17g", s->t);
	if (s->weighted)
		n += (size_t)snprintf(a + n, cap - n, " -w %.17g,%.17g,%.17g", s->w[0], s->w[1], s->w[2]);
	if (s->no_normalize)
		n += (size_t)snprintf(a + n, cap - n, " --no-normalize");
	if (s->lambda != 1.0)
		n += (size_t)snprintf(a + n, cap - n, " --lambda %.17g", s->lambda);
	if (s->lines && s->alpha_auto)
		snprintf(a + n, cap - n, " --lines --norm %s", s->norm_p == 2 ? "l2" : "l1");
	else if (s->lines)
		snprintf(a + n, cap - n, " --lines --alpha %.17g --beta %.17g", s->alpha, s->beta);
}

/* consensus's merged task vector of one element: mtl where kept (counted
 * in ty->near) or not finite, else 0 (counted in ty->far); *mag = sum |c_t| */
static double consensus_tau(const struct scenario *s, double b, const double *x, double *mag,
                            struct tally *ty)
{
	double c[N_MODELS], mtl = 0;
	unsigned votes = 0;
	*mag = 0;
	for (unsigned i = 0; i < N_MODELS; i++) {
		c[i] = s->w[i] * (double)(float)(x[i] - b);
		mtl = i == 0 ? c[0] : mtl + c[i];
		*mag += fabs(c[i]);
	}
	for (unsigned i = 0; i < N_MODELS; i++)
		votes += fabs(c[i]) > s->tl[i] * fabs(mtl - c[i]);
	if (!isfinite(mtl))
		return mtl;
	if (ty && votes >= s->k)
		ty->near++;
	else if (ty)
		ty->far++;
	return votes >= s->k ? mtl : 0.0;
}

/* ram's merged task vector of one element, and *cp = c: the plain sum of
 * the tau_i where it is not finite; else the nz tau_i (times li[i] where
 * c = 1, ramplus_tl) summed, divided by c where c > 1. *mag = sum |tau_i| li_i */
static double ram_tau(const struct scenario *s, double b, const double *x, const double *li,
                      double *mag, unsigned *cp)
{
	double tau[N_MODELS], sum = 0, nzsum = 0;
	unsigned c = 0;
	*mag = 0;
	for (unsigned i = 0; i < N_MODELS; i++) {
		tau[i] = task(x[i], b);
		sum = i == 0 ? tau[0] : sum + tau[i];
		c += fabs(tau[i]) > s->eps;
		*mag += fabs(tau[i]) * (li ? fabs(li[i]) : 1);
	}
	*cp = c;
	if (!isfinite(sum))
		return sum;
	for (unsigned i = 0; i < N_MODELS; i++)
		if (fabs(tau[i]) > s->eps)
			nzsum += c == 1 && li ? li[i] * tau[i] : tau[i];
	return c > 1 ? nzsum / c : nzsum;
}

/* ramplus_tl: per model, the elements of one tensor it changed with
 * others (shared) and alone (unique), and lambda_i = 1 + r clamp(shared /
 * max(unique, epsilon), 0, alpha) */
static void ram_counts(const struct scenario *s, const struct tu_tensor *b,
                       const struct tu_tensor *const *x, uint64_t *shared, uint64_t *unique,
                       double *li)
{
	for (unsigned i = 0; i < N_MODELS; i++)
		shared[i] = unique[i] = 0;
	for (uint64_t e = 0; e < b->nelem; e++) {
		double bv = tu_elem64(b, e), tau[N_MODELS];
		unsigned c = 0;
		for (unsigned i = 0; i < N_MODELS; i++)
			c += fabs(tau[i] = task(tu_elem64(x[i], e), bv)) > s->eps;
		for (unsigned i = 0; i < N_MODELS; i++)
			if (fabs(tau[i]) > s->eps && c > 1)
				shared[i]++;
			else if (fabs(tau[i]) > s->eps)
				unique[i]++;
	}
	for (unsigned i = 0; i < N_MODELS; i++) {
		double rho = (double)shared[i] / fmax((double)unique[i], s->eps);
		li[i] = 1 + s->rr * (rho < 0 ? 0 : rho > s->ra ? s->ra : rho);
	}
}

/* The reference of one element, and the magnitude its uncertainty scales
 * with (li: ramplus_tl's lambda_i of the tensor). */
static double reference(const struct scenario *s, double b, const double *x, double lam,
                        const double *li, double *mag, struct tally *ty)
{
	double v = 0, m = 0;
	if (s->meth == RAM || s->meth == RAMPLUS) {
		unsigned c;
		double tau = ram_tau(s, b, x, li, &m, &c);
		ty->hist[c]++;
		*mag = fabs(b) + fabs(lam) * m;
		return c == 0 && isfinite(tau) ? b : b + lam * tau;
	}
	if (s->meth == CONSENSUS) {
		double tau = consensus_tau(s, b, x, &m, ty);
		*mag = fabs(b) + fabs(lam) * m;
		return tau == 0.0 ? b : b + lam * tau;
	}
	if (s->meth == NEARSWAP) {
		double d = fabs(b - x[0]), w = s->t / d;
		if (isnan(w) || isinf(w))
			w = 1;
		w = w < 0 ? 0 : w > 1 ? 1 : w;
		if (w == 1)
			ty->near++;
		else
			ty->far++;
		v = w * x[0] + (1 - w) * b;
		m = fabs(x[0]) + fabs(b);
	} else {
		double ws = 0;
		for (unsigned i = 0; i < N_MODELS; i++) {
			v += s->w[i] * x[i];
			m += fabs(s->w[i] * x[i]);
			ws += s->w[i];
		}
		if (!s->no_normalize)
			v /= ws, m /= fabs(ws);
	}
	*mag = m + (lam != 1 ? (1 + fabs(lam)) * (m + fabs(b)) : 0);
	return lam != 1 ? b + lam * (v - b) : v;
}

static void check_element(struct tally *ty, const char *name, uint64_t e, const char *odt,
                          double ref, double mag, double got)
{
	int fine = tu_within(odt, ref, mag, got, 0x1p-48, &ty->worst);
	ty->checked++;
	if (!fine && !ty->bad++)
		snprintf(ty->first_bad, sizeof(ty->first_bad), "%s[%llu]: got %.9g, reference %.17g",
		         name, (unsigned long long)e, got, ref);
}

static void check_tensor(const struct family *f, const struct scenario *s, double alpha,
                         double beta, const struct tu_tensor *r, const struct tu_tensor *o,
                         struct tally *ty)
{
	if (!tu_is_float(r)) {
		if (strcmp(o->dtype, r->dtype) || o->nbytes != r->nbytes || memcmp(o->data, r->data, r->nbytes))
			if (!ty->bad++)
				snprintf(ty->first_bad, sizeof(ty->first_bad), "%s: copied tensor differs", r->name);
		return;
	}
	long blk = tu_block_of(r->name);
	double lam = !s->lines ? s->lambda
	             : blk < 0 || f->L == 1 ? alpha
	                                    : alpha + beta * (double)blk / (double)(f->L - 1);
	const struct tu_tensor *b = tu_model_find(&f->base, r->name), *x[N_MODELS];
	unsigned nm = s->meth == NEARSWAP ? 1 : N_MODELS;
	for (unsigned i = 0; i < nm; i++)
		x[i] = tu_model_find(&f->ft[i], r->name);
	uint64_t sh[N_MODELS], un[N_MODELS];
	double li[N_MODELS];
	if (s->meth == RAMPLUS)
		ram_counts(s, b, x, sh, un, li);
	for (uint64_t e = 0; e < r->nelem; e++) {
		double xv[N_MODELS], mag;
		for (unsigned i = 0; i < nm; i++)
			xv[i] = tu_elem64(x[i], e);
		double bv = s->base ? tu_elem64(b, e) : 0;
		double ref = reference(s, bv, xv, lam, s->meth == RAMPLUS ? li : NULL, &mag, ty);
		check_element(ty, r->name, e, o->dtype, ref, mag, tu_elem64(o, e));
	}
}

/*
 * Automatic alpha from its formula: ||sum_i tau_i|| / (N ||v - theta_0||),
 * tau_i = x_i - b in float32 and v - theta_0 written with them:
 * sum_i w_i tau_i / sum_i w_i, or sum_i w_i tau_i + (sum_i w_i - 1) b;
 * elements where either sum is not finite left out.
 */
static double auto_alpha(const struct family *f, const struct scenario *s)
{
	double num = 0, den = 0, ws = s->w[0] + s->w[1] + s->w[2];
	for (size_t ti = 0; ti < f->base.n; ti++) {
		const struct tu_tensor *b = &f->base.t[ti], *x[N_MODELS];
		if (!tu_is_float(b))
			continue;
		for (unsigned i = 0; i < N_MODELS; i++)
			x[i] = tu_model_find(&f->ft[i], b->name);
		uint64_t sh[N_MODELS], un[N_MODELS];
		double li[N_MODELS];
		if (s->meth == RAMPLUS)
			ram_counts(s, b, x, sh, un, li);
		for (uint64_t e = 0; e < b->nelem; e++) {
			double bv = tu_elem64(b, e);
			double sum = 0, wt = 0;
			for (unsigned i = 0; i < N_MODELS; i++) {
				double tau = task(tu_elem64(x[i], e), bv);
				sum += tau;
				wt += s->w[i] * (double)tau;
			}
			double mtl = s->no_normalize ? wt + (ws - 1) * bv : wt / ws;
			if (s->meth == CONSENSUS) {
				double xv[N_MODELS], m;
				for (unsigned i = 0; i < N_MODELS; i++)
					xv[i] = tu_elem64(x[i], e);
				mtl = consensus_tau(s, bv, xv, &m, NULL);
			}
			if (s->meth == RAM || s->meth == RAMPLUS) {
				double xv[N_MODELS], m;
				unsigned c;
				for (unsigned i = 0; i < N_MODELS; i++)
					xv[i] = tu_elem64(x[i], e);
				mtl = ram_tau(s, bv, xv, s->meth == RAMPLUS ? li : NULL, &m, &c);
			}
			if (!isfinite(sum) || !isfinite(mtl))
				continue;
			num += s->norm_p == 2 ? sum * sum : fabs(sum);
			den += s->norm_p == 2 ? mtl * mtl : fabs(mtl);
		}
	}
	if (s->norm_p == 2)
		num = sqrt(num), den = sqrt(den);
	return num / (N_MODELS * den);
}

/* consensus: the manifest's run.consensus.kept and .dropped are the
 * reference's counts of finite elements kept and dropped */
static void check_counts(const char *out, const struct family *f, const struct scenario *s,
                         const struct tally *ty)
{
	char mpath[4500];
	snprintf(mpath, sizeof(mpath), "%s.manifest.json", out);
	json_t *man = json_load_file(mpath, 0, NULL);
	json_t *cs = json_object_get(json_object_get(man, "run"), "consensus");
	json_int_t kept = json_integer_value(json_object_get(cs, "kept"));
	json_int_t dropped = json_integer_value(json_object_get(cs, "dropped"));
	ok(kept == (json_int_t)ty->near && dropped == (json_int_t)ty->far,
	   "%s/%s %s: the manifest counts %lld kept and %lld dropped, as the reference", f->arch,
	   f->dtype, s->name, (long long)kept, (long long)dropped);
	json_decref(man);
}

/* ramplus_tl: each merged tensor's manifest entry has the test's own
 * shared and unique counts per model, and its lambda_i; returns how many
 * lambda_i are strictly between 1 and 1 + r alpha (the clamp's inside) */
static int check_ram_tensors(const json_t *tensors, const struct family *f,
                             const struct scenario *s, int *bad, size_t *seen)
{
	int inside = 0;
	size_t i;
	json_t *e;
	json_array_foreach(tensors, i, e) {
		json_t *r = json_object_get(e, "ram");
		const char *name = json_string_value(json_object_get(e, "name"));
		const struct tu_tensor *b = tu_model_find(&f->base, name), *x[N_MODELS];
		if (!r || !b)
			continue;
		uint64_t sh[N_MODELS], un[N_MODELS];
		double li[N_MODELS];
		for (unsigned q = 0; q < N_MODELS; q++)
			x[q] = tu_model_find(&f->ft[q], b->name);
		ram_counts(s, b, x, sh, un, li);
		++*seen;
		for (unsigned q = 0; q < N_MODELS; q++) {
			json_int_t gs =
			    json_integer_value(json_array_get(json_object_get(r, "shared"), q));
			json_int_t gu =
			    json_integer_value(json_array_get(json_object_get(r, "unique"), q));
			double gl =
			    json_number_value(json_array_get(json_object_get(r, "lambda"), q));
			if (gs != (json_int_t)sh[q] || gu != (json_int_t)un[q] ||
			    fabs(gl - li[q]) > 1e-15 * fabs(li[q]))
				if (!(*bad)++)
					diag("%s model %u: shared %lld unique %lld lambda %.17g, "
					     "the test's %llu %llu %.17g",
					     b->name, q + 1, (long long)gs, (long long)gu, gl,
					     (unsigned long long)sh[q], (unsigned long long)un[q],
					     li[q]);
			inside += gl != 1 && gl != 1 + s->rr * s->ra;
		}
	}
	return inside;
}

/* ram, ramplus_tl: the manifest's run.METHOD.agree is the reference's
 * count of elements by c; ramplus_tl's counts and lambdas per tensor */
static void check_ram(const char *out, const struct family *f, const struct scenario *s,
                      const struct tally *ty)
{
	char mpath[4500];
	int same = 1, bad = 0;
	size_t seen = 0, nfloat = 0;
	snprintf(mpath, sizeof(mpath), "%s.manifest.json", out);
	json_t *man = json_load_file(mpath, 0, NULL);
	json_t *agree = json_object_get(
	    json_object_get(json_object_get(man, "run"), method_names[s->meth]), "agree");
	same = json_array_size(agree) == N_MODELS + 1;
	for (unsigned c = 0; same && c <= N_MODELS; c++)
		same = json_integer_value(json_array_get(agree, c)) == (json_int_t)ty->hist[c];
	ok(same,
	   "%s/%s %s: the manifest counts the elements by c as the reference: %llu %llu %llu %llu",
	   f->arch, f->dtype, s->name, (unsigned long long)ty->hist[0],
	   (unsigned long long)ty->hist[1], (unsigned long long)ty->hist[2],
	   (unsigned long long)ty->hist[3]);
	if (s->all_c)
		ok(ty->hist[0] > 0 && ty->hist[1] > 0 && ty->hist[2] > 0 && ty->hist[3] > 0,
		   "%s/%s %s: c takes the values 0, 1, 2 and 3", f->arch, f->dtype, s->name);
	if (s->meth == RAMPLUS) {
		for (size_t i = 0; i < f->base.n; i++)
			nfloat += tu_is_float(&f->base.t[i]);
		int inside = check_ram_tensors(json_object_get(man, "tensors"), f, s, &bad, &seen);
		ok(!bad && seen == nfloat,
		   "%s/%s %s: %zu tensors' shared and unique counts and lambda_i are the test's",
		   f->arch, f->dtype, s->name, seen);
		if (s->ra > 1)
			ok(inside > 0, "%s/%s %s: %d lambda_i inside the clamp", f->arch, f->dtype,
			   s->name, inside);
	}
	json_decref(man);
}

static void run_scenario(struct family *f, const struct scenario *s, int idx)
{
	char out[4400], args[512], models[13000] = "";
	struct tu_model om;
	struct tally ty = {0};
	unsigned nm = s->meth == NEARSWAP ? 1 : N_MODELS;

	snprintf(out, sizeof(out), "%s/out%d.safetensors", f->dir, idx);
	args_of(s, args, sizeof(args));
	for (unsigned i = 0, n = 0; i < nm; i++)
		n += (unsigned)snprintf(models + n, sizeof(models) - n, " '%s/ft%u.safetensors'", f->dir, i + 1);
	char base[4300] = "";
	if (s->base)
		snprintf(base, sizeof(base), "-b '%s/base.safetensors'", f->dir);
	int rc = tu_run("'%s' merge -q %s %s -o '%s'%s", tu_lines(), base, args, out, models);
	if (!ok(rc == 0, "%s/%s %s: lines exits 0", f->arch, f->dtype, s->name)) {
		diag("stderr: %s", tu_stderr);
		return;
	}
	if (!ok(tu_model_load(&om, out) == 0, "%s/%s %s: output read", f->arch, f->dtype, s->name))
		return;
	const struct tu_model *refm = s->base ? &f->base : &f->ft[0];
	double alpha = s->alpha, beta = s->beta;
	if (s->alpha_auto) {
		alpha = auto_alpha(f, s);
		beta = fmax(0.0, 1.0 - alpha);
		const char *rec = tu_model_meta(&om, "lines.alpha");
		double got = rec ? strtod(rec, NULL) : NAN;
		ok(fabs(got - alpha) <= 1e-12 * fabs(alpha),
		   "%s/%s %s: alpha %.17g matches the formula %.17g", f->arch, f->dtype, s->name, got,
		   alpha);
		if (s->meth == LINEAR && s->w[0] == s->w[1] && s->w[1] == s->w[2] && !s->no_normalize)
			ok(got == 1.0, "%s/%s %s: alpha is exactly 1", f->arch, f->dtype, s->name);
		/* the elements against the alpha lines used, once it is checked */
		alpha = got;
		beta = fmax(0.0, 1.0 - alpha);
	}
	const char *meth = tu_model_meta(&om, "lines.method");
	ok(meth && !strcmp(meth, method_names[s->meth]) && om.n == refm->n,
	   "%s/%s %s: lines.method recorded, every tensor there", f->arch, f->dtype, s->name);
	for (size_t ti = 0; ti < refm->n; ti++) {
		const struct tu_tensor *r = &refm->t[ti], *o = tu_model_find(&om, r->name);
		if (!o || strcmp(o->dtype, r->dtype)) {
			if (!ty.bad++)
				snprintf(ty.first_bad, sizeof(ty.first_bad), "%s missing or of another dtype", r->name);
			continue;
		}
		check_tensor(f, s, alpha, beta, r, o, &ty);
	}
	if (!ok(ty.bad == 0 && ty.checked > 0,
	        "%s/%s %s: %llu elements within 1 ULP of the float64 reference (worst %.3f ULP)",
	        f->arch, f->dtype, s->name, (unsigned long long)ty.checked, ty.worst))
		diag("%llu bad; first: %s", (unsigned long long)ty.bad, ty.first_bad);
	if (s->meth == CONSENSUS)
		ok(ty.near > 100 && ty.far > 100,
		   "%s/%s %s: the mask matters: %llu elements kept, %llu dropped", f->arch, f->dtype,
		   s->name, (unsigned long long)ty.near, (unsigned long long)ty.far);
	if (s->meth == CONSENSUS)
		check_counts(out, f, s, &ty);
	if (s->meth == CONSENSUS && !s->weighted && s->tl[0] == KTL && s->k >= 1 && s->k <= 3)
		kept_by_k[s->k] = ty.near;
	if (s->meth == RAM || s->meth == RAMPLUS)
		check_ram(out, f, s, &ty);
	if (s->meth == NEARSWAP)
		ok(ty.near > 100 && ty.far > 100,
		   "%s/%s %s: both cases are tested: %llu elements within t (the model's), %llu beyond",
		   f->arch, f->dtype, s->name, (unsigned long long)ty.near, (unsigned long long)ty.far);
	tu_model_free(&om);
}

static int load_family(struct family *f, size_t seed)
{
	char p[4400];
	snprintf(f->dir, sizeof(f->dir), "%s/%s-%s", tu_tmpdir(), f->arch, f->dtype);
	/* gpt2's layer norms have a length that is not a multiple of 8
	 * (--ragged): the vector loops' last elements are checked too */
	if (!ok(tu_run("'%s' --arch %s --dtype %s --layers 4 --hidden 32 --models %d --seed %zu "
	               "--specials %s --out '%s'",
	               tu_gen(), f->arch, f->dtype, N_MODELS, seed,
	               strcmp(f->arch, "gpt2") ? "" : "--ragged", f->dir) == 0,
	        "generate %s/%s family", f->arch, f->dtype))
		return 0;
	snprintf(p, sizeof(p), "%s/base.safetensors", f->dir);
	int loaded = tu_model_load(&f->base, p) == 0;
	for (int i = 0; i < N_MODELS; i++) {
		snprintf(p, sizeof(p), "%s/ft%d.safetensors", f->dir, i + 1);
		loaded &= tu_model_load(&f->ft[i], p) == 0;
	}
	for (size_t i = 0; loaded && i < f->base.n; i++)
		if (tu_block_of(f->base.t[i].name) + 1 > f->L)
			f->L = tu_block_of(f->base.t[i].name) + 1;
	return ok(loaded && f->L == 4, "read %s/%s family (L = %ld)", f->arch, f->dtype, f->L);
}

int main(void)
{
	static const char *const archs[] = {"llama", "gpt2"};
	static const char *const dtypes[] = {"bf16", "f16", "f32", "f64"};

	for (size_t a = 0; a < 2; a++)
		for (size_t d = 0; d < 4; d++) {
			struct family f = {archs[a], dtypes[d], "", {0}, {{0}}, 0};
			memset(kept_by_k, 0, sizeof(kept_by_k));
			fam_f64 = d == 3;
			if (load_family(&f, fam_f64 ? 61 + a : 31 + a * 3 + d))
				for (size_t s = 0; s < sizeof(scenarios) / sizeof(scenarios[0]); s++)
					if (!fam_f64 || scenarios[s].meth == RAM || scenarios[s].meth == RAMPLUS)
						run_scenario(&f, &scenarios[s], (int)s);
			if (!fam_f64)
				ok(kept_by_k[1] > kept_by_k[2] && kept_by_k[2] > kept_by_k[3] && kept_by_k[3] > 0,
				   "%s/%s consensus: k = 1, 2, 3 keep %llu > %llu > %llu elements", archs[a],
				   dtypes[d], (unsigned long long)kept_by_k[1],
				   (unsigned long long)kept_by_k[2], (unsigned long long)kept_by_k[3]);
			tu_model_free(&f.base);
			for (int i = 0; i < N_MODELS; i++)
				tu_model_free(&f.ft[i]);
		}
	tu_cleanup();
	return tap_done();
}
