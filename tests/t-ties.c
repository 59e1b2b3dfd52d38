/*
 * t-ties.c -- TIES and DARE against straightforward implementations
 * written here, on small generated families.
 *
 * TIES: the test computes every task vector, sorts the magnitudes of the
 * whole model (or of each tensor) in memory -- fine at this size -- takes
 * the k-th smallest, elects signs, and compares: the thresholds and the
 * majority sign lines records in its manifest, alpha to 1e-12, and every
 * output element within one ULP of the float64 result. Densities include
 * ones whose threshold lands on many equal magnitudes (BF16 task vectors
 * take few values).
 *
 * inspect --norms: every per-block L1 and L2 norm of every task vector
 * and of the base equals the test's own sums to 1e-12, and the task
 * vectors grow with depth as the generator made them.
 *
 * DARE: the test draws the drops itself from the formula of
 * lines-merge(1) and compares every element (sum and --dare-elect, with
 * weights and LiNeS) within one ULP, and the majority sign and alpha; the
 * output is the same for every -j, --chunk and reader; the fraction of
 * entries kept is within five standard deviations of the density; and
 * every changed element is theta_0 + tau / density. mergekit's forms too:
 * dare_ties and ties normalized over the sum of the agreeing weights or
 * not (--no-normalize), the L1 rescale (--rescale) or none, and a density
 * per model (its own threshold, its own kept fraction).
 *
 * Consensus over TIES (-m consensus --consensus-over ties): the same
 * thresholds and majority, then the TALL masks on TIES's merge (an
 * element kept where at least k of |tau'_t| > lambda |tau_MTL - tau'_t|
 * hold), alpha from ||tau_cons||, the kept and dropped counts, and every
 * element, on the BF16 family and on F16 and F32 ones.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "tap.h"
#include "tutil.h"

#define NM 3

static uint32_t mag(float v)
{
	uint32_t u;
	memcpy(&u, &v, 4);
	return u & 0x7fffffffu;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

struct fam {
	char dir[4200];
	struct tu_model base, ft[NM];
	long L;
};

/* task vector i of element e of tensor ti, weighted, as float */
static float tauw(const struct fam *f, size_t ti, unsigned i, uint64_t e, const double *w)
{
	const struct tu_tensor *b = &f->base.t[ti];
	const struct tu_tensor *x = tu_model_find(&f->ft[i], b->name);
	float tau = tu_elem(x, e) - tu_elem(b, e);
	return w[i] == 1.0 ? tau : (float)(w[i] * (double)tau);
}

static uint32_t kth(uint32_t *v, uint64_t d, double rho)
{
	uint64_t m = (uint64_t)floor((double)d * rho), k = d - m;
	if (k == 0)
		return 0;
	qsort(v, d, sizeof(*v), cmp_u32);
	return v[k - 1];
}

/* The disjoint mean: the agreeing kept values over their count (c NULL)
 * or over the sum of their c_i (mergekit's normalize with c = the
 * weights; 0 -> 1, so c all 0 is the plain sum). */
static double elect(const float *t, const uint32_t *thr, int maj, const double *c, int *sign)
{
	double s = 0, sum = 0, div = 0;
	for (unsigned i = 0; i < NM; i++)
		if (t[i] != 0 && mag(t[i]) >= thr[i])
			s += t[i];
	*sign = s > 0 ? 1 : s < 0 ? -1 : 0;
	int e = *sign ? *sign : maj;
	for (unsigned i = 0; i < NM; i++)
		if (t[i] != 0 && mag(t[i]) >= thr[i] && (t[i] > 0) == (e > 0))
			sum += t[i], div += c ? c[i] : 1.0;
	return sum / (div != 0 ? div : 1.0);
}

/* The options of a TIES or DARE case beyond the density and weights. */
struct xopt {
	const double *rhov; /* one density per model, or NULL */
	int no_norm;        /* --no-normalize */
	int rescale;        /* DARE: 0 by the density, 1 --rescale (L1), 2 --no-rescale */
	const char *method; /* DARE: "dare" (with --dare-elect when electing) or a name */
	/* TIES: -m consensus --consensus-over ties with these k and lambda */
	int cons;
	unsigned cons_k;
	double cons_l;
};
static const struct xopt xdef = {NULL, 0, 0, "dare", 0, 0, 0};

/* Consensus over TIES: tau_MTL m where at least k TALL masks
 * |t_i| > lambda |m - t_i| hold it (or m is not finite), else 0. */
static int tall_keep(const struct xopt *x, const float *t, double m)
{
	unsigned votes = 0;
	if (!x->cons || !isfinite(m))
		return 1;
	for (unsigned i = 0; i < NM; i++)
		votes += fabs((double)t[i]) > x->cons_l * fabs(m - t[i]);
	return votes >= x->cons_k;
}

static double tall(const struct xopt *x, const float *t, double m)
{
	return tall_keep(x, t, m) ? m : 0.0;
}
static const double zeros[NM];

static double rho_of(const struct xopt *x, double rho, unsigned i)
{
	return x->rhov ? x->rhov[i] : rho;
}

/* --density as lines takes it (or, short, for a label) */
static void density_arg(char *buf, size_t n, const struct xopt *x, double rho, int label)
{
	const char *f = label ? "density %g,%g,%g" : "--density %.17g,%.17g,%.17g";
	if (x->rhov)
		snprintf(buf, n, f, x->rhov[0], x->rhov[1], x->rhov[2]);
	else
		snprintf(buf, n, label ? "density %g" : "--density %.17g", rho);
}

static float json_float(json_t *v) { return (float)json_number_value(v); }

/* win: "" or a value of LINES_TEST_TIES_SAMPLE (another way to the same
 * thresholds and output) */
static void ties_case_x(struct fam *f, double rho, int per_tensor, const double *w, int weighted,
                        int idx, const char *win, const struct xopt *x)
{
	char out[4400], wopt[128] = "", label[300], dopt[128];
	int rc;
	/* the divisors of the disjoint mean: mergekit's sum of the agreeing
	 * weights (the count when they are all 1), or none */
	const double *c = x->no_norm ? zeros : weighted ? w : NULL;
	if (weighted)
		snprintf(wopt, sizeof(wopt), "-w %.17g,%.17g,%.17g", w[0], w[1], w[2]);
	density_arg(dopt, sizeof(dopt), x, rho, 1);
	snprintf(label, sizeof(label), "%.20s %s %s%s%s%s%s", x->cons ? "consensus over ties" : "ties", dopt,
	         per_tensor ? "per tensor" : "global", weighted ? " weighted" : "",
	         x->no_norm ? " --no-normalize" : "", *win ? ", LINES_TEST_TIES_SAMPLE=" : "", win);
	density_arg(dopt, sizeof(dopt), x, rho, 0);
	snprintf(out, sizeof(out), "%s/ties%d.safetensors", f->dir, idx);
	char mopt[200] = "-m ties";
	if (x->cons)
		snprintf(mopt, sizeof(mopt), "-m consensus --consensus-over ties --consensus-k %u "
		         "--tall-lambda %.17g", x->cons_k, x->cons_l);
	rc = tu_run("LINES_TEST_TIES_SAMPLE='%s' '%s' merge -q -b '%s/base.safetensors' %s --lines "
	            "%s %s %s %s -o '%s' '%s/ft1.safetensors' '%s/ft2.safetensors' "
	            "'%s/ft3.safetensors'",
	            win, tu_lines(), f->dir, mopt, dopt, per_tensor ? "--trim tensor" : "", wopt,
	            x->no_norm ? "--no-normalize" : "", out, f->dir, f->dir, f->dir);
	if (!ok(rc == 0, "%s: lines exits 0", label)) {
		diag("%s", tu_stderr);
		return;
	}
	char mpath[4500];
	snprintf(mpath, sizeof(mpath), "%s.manifest.json", out);
	json_t *man = json_load_file(mpath, 0, NULL), *run = json_object_get(man, "run");
	json_t *tj = json_object_get(run, x->cons ? "consensus" : "ties");

	/* thresholds: global or per tensor */
	size_t nt = f->base.n;
	uint32_t (*thr)[NM] = calloc(nt, sizeof(*thr));
	int thr_ok = 1, on_ties = 0;
	if (!per_tensor) {
		uint64_t d = 0;
		for (size_t ti = 0; ti < nt; ti++)
			if (tu_is_float(&f->base.t[ti]))
				d += f->base.t[ti].nelem;
		uint32_t *v = malloc(d * sizeof(*v));
		for (unsigned i = 0; i < NM; i++) {
			uint64_t q = 0;
			for (size_t ti = 0; ti < nt; ti++)
				if (tu_is_float(&f->base.t[ti]))
					for (uint64_t e = 0; e < f->base.t[ti].nelem; e++)
						v[q++] = mag(tauw(f, ti, i, e, w));
			uint32_t t = kth(v, d, rho_of(x, rho, i));
			uint64_t same = 0;
			for (uint64_t e = 0; e < d; e++)
				same += v[e] == t;
			on_ties |= same > 1;
			for (size_t ti = 0; ti < nt; ti++)
				thr[ti][i] = t;
			float got = json_float(json_array_get(json_object_get(tj, "thresholds"), i));
			thr_ok &= mag(got) == t;
		}
		free(v);
	} else {
		json_t *tensors = json_object_get(man, "tensors");
		for (size_t ti = 0; ti < nt; ti++) {
			const struct tu_tensor *b = &f->base.t[ti];
			if (!tu_is_float(b))
				continue;
			uint32_t *v = malloc(b->nelem * sizeof(*v));
			json_t *me = NULL;
			for (size_t k = 0; k < json_array_size(tensors); k++)
				if (!strcmp(json_string_value(json_object_get(json_array_get(tensors, k), "name")), b->name))
					me = json_array_get(tensors, k);
			for (unsigned i = 0; i < NM; i++) {
				for (uint64_t e = 0; e < b->nelem; e++)
					v[e] = mag(tauw(f, ti, i, e, w));
				thr[ti][i] = kth(v, b->nelem, rho_of(x, rho, i));
				float got = json_float(json_array_get(json_object_get(me, "ties_thresholds"), i));
				thr_ok &= mag(got) == thr[ti][i];
			}
			free(v);
		}
	}
	ok(thr_ok, "%s: every threshold equals the k-th smallest |tau| by sorting%s", label,
	   on_ties ? " (it lands on equal magnitudes)" : "");

	/* majority, tau_MTL, alpha */
	long votes = 0;
	for (size_t ti = 0; ti < nt; ti++) {
		if (!tu_is_float(&f->base.t[ti]))
			continue;
		for (uint64_t e = 0; e < f->base.t[ti].nelem; e++) {
			float t[NM];
			int sign;
			for (unsigned i = 0; i < NM; i++)
				t[i] = tauw(f, ti, i, e, w);
			elect(t, thr[ti], 1, c, &sign);
			votes += sign;
		}
	}
	int maj = votes >= 0 ? 1 : -1;
	ok(json_integer_value(json_object_get(tj, "majority")) == maj,
	   "%s: the majority sign is %+d", label, maj);
	double num = 0, den = 0;
	uint64_t kept = 0, dropped = 0;
	for (size_t ti = 0; ti < nt; ti++) {
		const struct tu_tensor *b = &f->base.t[ti];
		if (!tu_is_float(b))
			continue;
		for (uint64_t e = 0; e < b->nelem; e++) {
			float t[NM];
			double raw = 0;
			int sign;
			for (unsigned i = 0; i < NM; i++) {
				t[i] = tauw(f, ti, i, e, w);
				raw += (double)(tu_elem(tu_model_find(&f->ft[i], b->name), e) - tu_elem(b, e));
			}
			double m = elect(t, thr[ti], maj, c, &sign), u = tall(x, t, m);
			num += fabs(raw);
			den += fabs(u);
			int keep = tall_keep(x, t, m);
			kept += keep && isfinite(m), dropped += !keep;
		}
	}
	double alpha = num / (NM * den), beta = fmax(0, 1 - alpha);
	double got_alpha = json_real_value(json_object_get(run, "alpha"));
	ok(fabs(got_alpha - alpha) <= 1e-12 * alpha,
	   "%s: alpha %.17g = ||sum tau|| / (N ||tau_%s||) = %.17g", label, got_alpha,
	   x->cons ? "cons" : "MTL", alpha);
	if (x->cons && !ok((uint64_t)json_integer_value(json_object_get(tj, "kept")) == kept &&
	                           (uint64_t)json_integer_value(json_object_get(tj, "dropped")) == dropped &&
	                           dropped > 0 && kept > 0,
	                   "%s: the masks keep %llu elements and drop %llu, as the test's", label,
	                   (unsigned long long)kept, (unsigned long long)dropped))
		diag("lines: kept %lld, dropped %lld", (long long)json_integer_value(json_object_get(tj, "kept")),
		     (long long)json_integer_value(json_object_get(tj, "dropped")));

	/* every element */
	struct tu_model om;
	uint64_t bad = 0, n = 0;
	char first[512] = "";
	if (tu_model_load(&om, out) == 0) {
		for (size_t ti = 0; ti < nt; ti++) {
			const struct tu_tensor *b = &f->base.t[ti], *o = tu_model_find(&om, b->name);
			if (!tu_is_float(b))
				continue;
			long blk = tu_block_of(b->name);
			double lam = blk < 0 ? alpha : alpha + beta * blk / (double)(f->L - 1);
			for (uint64_t e = 0; e < b->nelem; e++) {
				float t[NM];
				int sign;
				for (unsigned i = 0; i < NM; i++)
					t[i] = tauw(f, ti, i, e, w);
				double m = tall(x, t, elect(t, thr[ti], maj, c, &sign));
				double ref = tu_elem(b, e) + lam * m, got = tu_elem(o, e);
				double tol = tu_ulp(o->dtype, ref) + 0x1p-48 * (fabs(tu_elem(b, e)) + fabs(lam * m));
				n++;
				if (!(fabs(got - ref) <= tol) && !bad++)
					snprintf(first, sizeof(first), "%s[%llu]: got %.9g, reference %.17g",
					         b->name, (unsigned long long)e, got, ref);
			}
		}
		tu_model_free(&om);
	}
	if (!ok(bad == 0 && n > 0,
	        "%s: %llu elements within 1 ULP of the reference", label, (unsigned long long)n))
		diag("%llu bad, first %s", (unsigned long long)bad, first);
	json_decref(man);
	free(thr);
}

static void ties_case(struct fam *f, double rho, int per_tensor, const double *w, int weighted,
                      int idx, const char *win)
{
	ties_case_x(f, rho, per_tensor, w, weighted, idx, win, &xdef);
}

/* ---- which way TIES took, and the same bytes everywhere -------------------------- */
struct tlog {
	int sampled, whole, pieces, at, unpinned, missed, skipped;
	unsigned long long settled;
	char after[32]; /* the pass the file was settled after */
};

static void ties_log(const struct fam *f, const char *win, const char *args, struct tlog *g)
{
	char logp[4400], line[512];
	memset(g, 0, sizeof(*g));
	g->settled = ~0ull;
	snprintf(logp, sizeof(logp), "%s/ties-v.log", f->dir);
	tu_run("LINES_TEST_TIES_SAMPLE='%s' '%s' merge -v -b '%s/base.safetensors' -m ties %s "
	       "-o '%s/v.safetensors' '%s/ft1.safetensors' '%s/ft2.safetensors' '%s/ft3.safetensors' "
	       "2> '%s'",
	       win, tu_lines(), f->dir, args, f->dir, f->dir, f->dir, f->dir, logp);
	FILE *lf = fopen(logp, "r");
	while (lf && fgets(line, sizeof(line), lf)) {
		g->sampled |= strstr(line, "ties: a sample of ") != NULL;
		g->whole |= strstr(line, "the sample is the whole model") != NULL;
		g->pieces |= strstr(line, "ties: a sample of ") && strstr(line, " pieces)");
		g->at |= strstr(line, "threshold at 0x") != NULL;
		g->unpinned |= strstr(line, "does not pin task") != NULL;
		g->missed |= strstr(line, "is not the sample's prediction") != NULL;
		g->skipped |= strstr(line, "(threshold): not needed, skipped") != NULL;
		if (strstr(line, "elements settled after the"))
			sscanf(strstr(line, "ties: ") + 6, "%llu elements settled after the %31s pass",
			       &g->settled, g->after);
	}
	if (lf)
		fclose(lf);
}

static void same_everywhere(const struct fam *f, const char *win, const char *args,
                            const char *what)
{
	static const char *const variants[] = {
		"-j 1 --chunk 64K --io mmap", "-j 2 --chunk 1M --io mmap", "-j 4 --chunk 16M --io mmap",
		"-j 1 --chunk 64K --io uring", "-j 2 --chunk 1M --io uring", "-j 4 --chunk 16M --io uring",
	};
	char refpath[4400];
	int same = 1, runs = 0, have_ref = 0, no_uring = 0;
	snprintf(refpath, sizeof(refpath), "%s/same-ref.safetensors", f->dir);
	for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
		char out[4400];
		snprintf(out, sizeof(out), "%s/same%zu.safetensors", f->dir, v);
		int rc = tu_run("LINES_TEST_TIES_SAMPLE='%s' '%s' merge -q -b '%s/base.safetensors' %s %s "
		                "-o '%s' '%s/ft1.safetensors' '%s/ft2.safetensors' '%s/ft3.safetensors'",
		                win, tu_lines(), f->dir, args, variants[v], out, f->dir, f->dir, f->dir);
		if (rc != 0 && strstr(variants[v], "uring") && strstr(tu_stderr, "io_uring")) {
			no_uring++; /* no io_uring here */
			continue;
		}
		runs++;
		if (!have_ref) {
			have_ref = rc == 0 && rename(out, refpath) == 0;
			same &= have_ref;
			continue;
		}
		same &= rc == 0 && tu_run("cmp -s '%s' '%s'", refpath, out) == 0;
	}
	ok(same && runs >= 3, "%s: identical output for -j 1/2/4, --chunk 64K/1M/16M and each reader (%d runs)",
	   what, runs);
	if (no_uring)
		skip("%s: the %d runs with --io uring: io_uring is not available here", what, no_uring);
}

/* TIES with the sample, without it (LINES_TEST_TIES_SAMPLE=off), and with
 * the models as .zst files (no sample): the same bytes. */
static void same_sampled(const struct fam *f, const char *what, const char *args)
{
	char ref[4400];
	int same = 1;
	snprintf(ref, sizeof(ref), "%s/sampled-0.safetensors", f->dir);
	for (int h = 0; h < 3; h++) {
		char out[4400], ext[8] = "";
		if (h == 2) {
			if (tu_run("zstd -q -f '%s/ft1.safetensors' '%s/ft2.safetensors' '%s/ft3.safetensors'",
			           f->dir, f->dir, f->dir) != 0) {
				same = 0;
				break;
			}
			strcpy(ext, ".zst");
		}
		snprintf(out, sizeof(out), "%s/sampled-%d.safetensors", f->dir, h);
		same &= tu_run("LINES_TEST_TIES_SAMPLE='%s' '%s' merge -q -b '%s/base.safetensors' -m ties "
		               "--lines %s -o '%s' '%s/ft1.safetensors%s' '%s/ft2.safetensors%s' "
		               "'%s/ft3.safetensors%s'",
		               h == 1 ? "off" : "", tu_lines(), f->dir, args, out, f->dir, ext, f->dir, ext,
		               f->dir, ext) == 0;
		if (h)
			same &= tu_run("cmp -s '%s' '%s'", ref, out) == 0;
	}
	ok(same, "ties %s%s: the same bytes with the sample, without it and from .zst inputs", args,
	   what);
}

/* DARE's draw as lines-merge(1) defines it */
static uint64_t splitmix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static int dare_kept(uint64_t seed, unsigned i, const char *name, uint64_t e, double rho)
{
	uint64_t h = XXH3_64bits(name, strlen(name));
	uint64_t k = splitmix(seed ^ splitmix(((uint64_t)i + 1) * 0x100000001b3ull ^ splitmix(h)));
	double u = (double)(splitmix(k ^ (e * 0xd1b54a32d192ed03ull)) >> 11) * 0x1p-53;
	return u < rho;
}

/* What the kept values of task i in tensor ti are divided by: the
 * density, 1, or with --rescale (mergekit's) kept L1 / L1 of tau' in that
 * tensor, unless either is below 1e-7 or the density is 1 (fac). */
static double dare_div(const struct xopt *x, const double *fac, double rho, size_t ti, unsigned i)
{
	return x->rescale == 0 ? rho_of(x, rho, i) : x->rescale == 2 ? 1.0 : fac[ti * NM + i];
}

static double *l1_factors(const struct fam *f, const double *w, double rho, uint64_t seed,
                          const struct xopt *x)
{
	double *fac = calloc(f->base.n * NM, sizeof(*fac));
	for (size_t ti = 0; ti < f->base.n; ti++)
		for (unsigned i = 0; i < NM; i++) {
			const struct tu_tensor *b = &f->base.t[ti];
			double all = 0, kept = 0, r = rho_of(x, rho, i);
			for (uint64_t e = 0; tu_is_float(b) && e < b->nelem; e++) {
				double a = fabs((double)tauw(f, ti, i, e, w));
				all += a;
				kept += dare_kept(seed, i, b->name, e, r) ? a : 0;
			}
			fac[ti * NM + i] = r < 1 && all >= 1e-7 && kept >= 1e-7 ? kept / all : 1.0;
		}
	return fac;
}

static double dare_mtl(const struct fam *f, size_t ti, uint64_t e, const double *w, double rho,
                       uint64_t seed, int el, int maj, int *sign, const struct xopt *x,
                       const double *fac)
{
	static const uint32_t zero[NM];
	const char *name = f->base.t[ti].name;
	int ones = w[0] == 1 && w[1] == 1 && w[2] == 1;
	float d[NM];
	double s = 0;
	for (unsigned i = 0; i < NM; i++) {
		float t = tauw(f, ti, i, e, w);
		d[i] = dare_kept(seed, i, name, e, rho_of(x, rho, i))
		           ? (float)((double)t / dare_div(x, fac, rho, ti, i))
		           : 0.0f;
		s += d[i];
	}
	*sign = 1;
	return el ? elect(d, zero, maj, x->no_norm ? zeros : ones ? NULL : w, sign) : s;
}

static void dare_case_x(struct fam *f, double rho, uint64_t seed, int el, const double *w, int idx,
                        const struct xopt *x)
{
	char out[4400], dopt[128], label[256];
	static const char *const resc[] = {"", "--rescale", "--no-rescale"};
	int named = strcmp(x->method, "dare") != 0; /* dare_ties elects by its name */
	double *fac = x->rescale == 1 ? l1_factors(f, w, rho, seed, x) : NULL;
	density_arg(dopt, sizeof(dopt), x, rho, 1);
	snprintf(label, sizeof(label), "%s %s%s%s%s%s", x->method, dopt,
	         el && !named ? " elect" : "", x->no_norm ? " --no-normalize" : "",
	         x->rescale ? " " : "", resc[x->rescale]);
	density_arg(dopt, sizeof(dopt), x, rho, 0);
	snprintf(out, sizeof(out), "%s/darex%d.safetensors", f->dir, idx);
	int rc = tu_run("'%s' merge -q -b '%s/base.safetensors' -m %s %s --seed %llu %s %s %s "
	                "-w %.17g,%.17g,%.17g --lines -o '%s' '%s/ft1.safetensors' "
	                "'%s/ft2.safetensors' '%s/ft3.safetensors'",
	                tu_lines(), f->dir, x->method, dopt, (unsigned long long)seed,
	                el && !named ? "--dare-elect" : "", x->no_norm ? "--no-normalize" : "",
	                resc[x->rescale], w[0], w[1], w[2], out, f->dir, f->dir, f->dir);
	if (!ok(rc == 0, "%s: lines exits 0", label)) {
		diag("%s", tu_stderr);
		return;
	}
	char mpath[4500];
	snprintf(mpath, sizeof(mpath), "%s.manifest.json", out);
	json_t *man = json_load_file(mpath, 0, NULL), *run = json_object_get(man, "run");
	size_t nt = f->base.n;
	long votes = 0;
	int sign, maj;
	for (size_t ti = 0; el && ti < nt; ti++)
		for (uint64_t e = 0; tu_is_float(&f->base.t[ti]) && e < f->base.t[ti].nelem; e++) {
			dare_mtl(f, ti, e, w, rho, seed, el, 1, &sign, x, fac);
			votes += sign;
		}
	maj = votes >= 0 ? 1 : -1;
	if (el)
		ok(json_integer_value(json_object_get(json_object_get(run, "dare"), "majority")) == maj,
		   "%s: the majority sign is %+d", label, maj);
	double num = 0, den = 0;
	for (size_t ti = 0; ti < nt; ti++) {
		const struct tu_tensor *b = &f->base.t[ti];
		for (uint64_t e = 0; tu_is_float(b) && e < b->nelem; e++) {
			double raw = 0;
			for (unsigned i = 0; i < NM; i++)
				raw += (double)(tu_elem(tu_model_find(&f->ft[i], b->name), e) - tu_elem(b, e));
			num += fabs(raw);
			den += fabs(dare_mtl(f, ti, e, w, rho, seed, el, maj, &sign, x, fac));
		}
	}
	double alpha = num / (NM * den), beta = fmax(0, 1 - alpha);
	double got_alpha = json_real_value(json_object_get(run, "alpha"));
	ok(fabs(got_alpha - alpha) <= 1e-12 * alpha,
	   "%s: alpha %.17g = ||sum tau|| / (N ||tau_MTL||) = %.17g", label, got_alpha, alpha);

	struct tu_model om;
	uint64_t bad = 0, n = 0, kept = 0;
	char first[512] = "";
	if (tu_model_load(&om, out) == 0) {
		for (size_t ti = 0; ti < nt; ti++) {
			const struct tu_tensor *b = &f->base.t[ti], *o = tu_model_find(&om, b->name);
			long blk = tu_block_of(b->name);
			double lam = blk < 0 ? alpha : alpha + beta * blk / (double)(f->L - 1);
			for (uint64_t e = 0; tu_is_float(b) && e < b->nelem; e++) {
				double m = dare_mtl(f, ti, e, w, rho, seed, el, maj, &sign, x, fac);
				double ref = tu_elem(b, e) + lam * m, got = tu_elem(o, e);
				double tol = tu_ulp(o->dtype, ref) + 0x1p-48 * (fabs(tu_elem(b, e)) + fabs(lam * m));
				n++;
				kept += m != 0;
				if (!(fabs(got - ref) <= tol) && !bad++)
					snprintf(first, sizeof(first), "%s[%llu]: got %.9g, reference %.17g",
					         b->name, (unsigned long long)e, got, ref);
			}
		}
		tu_model_free(&om);
	}
	if (!ok(bad == 0 && n > 0 && kept > 0 && kept < n,
	        "%s: %llu elements within 1 ULP of the test's own drops (%llu changed)", label,
	        (unsigned long long)n, (unsigned long long)kept))
		diag("%llu bad, first %s", (unsigned long long)bad, first);
	json_decref(man);
	free(fac);
}

static void dare_case(struct fam *f, double rho, uint64_t seed, int el, const double *w, int idx)
{
	dare_case_x(f, rho, seed, el, w, idx, &xdef);
}

/* A density per model: with the weights of one model 1 and the others'
 * 0 (so nothing else moves) and no rescale, the entries of that model
 * kept are the changed ones, each theta_0 + tau exactly as rounded, and
 * their fraction is within 5 sigma of that model's own density. */
static void dare_kept_per_model(struct fam *f)
{
	static const double rv[NM] = {0.2, 0.5, 0.8};
	for (unsigned j = 0; j < NM; j++) {
		char out[4400];
		struct tu_model om;
		double w[NM] = {0, 0, 0};
		uint64_t nz = 0, kept = 0, wrong = 0;
		w[j] = 1;
		snprintf(out, sizeof(out), "%s/darek%u.safetensors", f->dir, j);
		int rc = tu_run("'%s' merge -q -b '%s/base.safetensors' -m dare_linear --no-rescale "
		                "--density 0.2,0.5,0.8 --seed 11 -w %g,%g,%g -o '%s' '%s/ft1.safetensors' "
		                "'%s/ft2.safetensors' '%s/ft3.safetensors'",
		                tu_lines(), f->dir, w[0], w[1], w[2], out, f->dir, f->dir, f->dir);
		if (rc == 0 && tu_model_load(&om, out) == 0) {
			for (size_t ti = 0; ti < f->base.n; ti++) {
				const struct tu_tensor *b = &f->base.t[ti], *o = tu_model_find(&om, b->name);
				for (uint64_t e = 0; tu_is_float(b) && e < b->nelem; e++) {
					float tau = tauw(f, ti, j, e, w), bv = tu_elem(b, e), got = tu_elem(o, e);
					if (tau == 0)
						continue;
					nz++;
					if (got == bv)
						continue;
					kept++;
					double r = (double)bv + tau;
					wrong += fabs(got - r) > tu_ulp(o->dtype, r) + 0x1p-48 * fabs(r);
				}
			}
			tu_model_free(&om);
		}
		double mean = nz * rv[j], sd = sqrt(nz * rv[j] * (1 - rv[j]));
		ok(rc == 0 && nz > 0 && fabs((double)kept - mean) <= 5 * sd && wrong == 0,
		   "dare --density 0.2,0.5,0.8: model %u kept %llu of %llu, %.4f, within 5 sigma of "
		   "its density %.1f, each theta_0 + tau without rescaling (%llu differ)",
		   j + 1, (unsigned long long)kept, (unsigned long long)nz, nz ? (double)kept / nz : 0.0,
		   rv[j], (unsigned long long)wrong);
	}
}

int main(void)
{
	struct fam f = {"", {0}, {{0}}, 4};
	static const double ones[NM] = {1, 1, 1}, wts[NM] = {0.5, 1.5, 1.0};
	char p[4400];

	snprintf(f.dir, sizeof(f.dir), "%s/fam", tu_tmpdir());
	if (tu_run("'%s' --arch llama --dtype bf16 --layers 4 --hidden 32 --models 3 --seed 17 --out '%s'",
	           tu_gen(), f.dir) != 0)
		return 99;
	snprintf(p, sizeof(p), "%s/base.safetensors", f.dir);
	tu_model_load(&f.base, p);
	for (int i = 0; i < NM; i++) {
		snprintf(p, sizeof(p), "%s/ft%d.safetensors", f.dir, i + 1);
		tu_model_load(&f.ft[i], p);
	}

	static const double rhos[] = {0.2, 0.5, 0.01, 0.9, 1.0};
	static const char *const wins[] = {"predict", "wrong", "off"};
	int idx = 0;
	for (size_t r = 0; r < sizeof(rhos) / sizeof(rhos[0]); r++)
		ties_case(&f, rhos[r], 0, ones, 0, idx++, "");
	ties_case(&f, 0.3, 1, ones, 0, idx++, "");
	ties_case(&f, 0.2, 0, wts, 1, idx++, "");
	ties_case(&f, 0.25, 1, wts, 1, idx++, "");
	/* the other ways to the same thresholds: a prediction, a wrong one
	 * (the threshold pass runs), no sample */
	for (size_t v = 0; v < sizeof(wins) / sizeof(wins[0]); v++) {
		ties_case(&f, 0.2, 0, ones, 0, idx++, wins[v]);
		ties_case(&f, 0.01, 0, ones, 0, idx++, wins[v]);
		ties_case(&f, 0.2, 0, wts, 1, idx++, wins[v]);
	}
	/* which way each took, from -v (see merge_ties.c) */
	{
		struct tlog g;
		ties_log(&f, "", "--density 0.2", &g);
		ok(g.sampled && g.whole && g.skipped && g.settled == 0 && !strcmp(g.after, "select"),
		   "ties density 0.2: the sample reads the whole model, so the select pass does the "
		   "threshold pass's work and that pass is skipped");
		ties_log(&f, "", "--density 0.2 -w 0.3,0.7,1.1", &g);
		ok(g.whole && g.skipped && g.settled > 0 && !strcmp(g.after, "select"),
		   "ties density 0.2 weighted: the same, settling %llu elements after the select pass",
		   g.settled);
		ties_log(&f, "predict", "--density 0.2", &g);
		ok(g.sampled && g.at && g.skipped && g.settled == 0 && !strcmp(g.after, "select"),
		   "ties density 0.2, LINES_TEST_TIES_SAMPLE=predict: the sample predicts every "
		   "threshold, the select pass confirms it, the threshold pass is skipped");
		ties_log(&f, "predict", "--density 0.2 -w 0.3,0.7,1.1", &g);
		ok(g.unpinned && !g.skipped && g.settled > 0 && !strcmp(g.after, "threshold"),
		   "ties density 0.2 weighted, LINES_TEST_TIES_SAMPLE=predict: no prediction (the "
		   "values are not 16-bit), the threshold pass runs and settles %llu elements", g.settled);
		ties_log(&f, "wrong", "--density 0.2", &g);
		ok(g.at && g.missed && !g.skipped && !strcmp(g.after, "threshold"),
		   "ties density 0.2, LINES_TEST_TIES_SAMPLE=wrong: the wrong prediction is noticed, "
		   "the threshold pass runs");
		ties_log(&f, "", "--density 1", &g);
		ok(!g.sampled && g.skipped,
		   "ties density 1: nothing to trim, no sample, the threshold pass is skipped");
		ties_log(&f, "", "--density 0.3 --trim tensor", &g);
		ok(!g.sampled && !g.skipped && !strcmp(g.after, "threshold"),
		   "ties --trim tensor: no sample, the threshold pass runs");
	}
	/* the same bytes for any -j, --chunk and reader, whichever way */
	same_everywhere(&f, "", "-m ties --lines --density 0.2", "ties");
	same_everywhere(&f, "", "-m ties --lines --density 0.2 -w 0.5,1.5,1", "ties weighted");
	same_everywhere(&f, "predict", "-m ties --lines --density 0.2",
	                "ties, LINES_TEST_TIES_SAMPLE=predict");
	same_everywhere(&f, "wrong", "-m ties --lines --density 0.2",
	                "ties, LINES_TEST_TIES_SAMPLE=wrong");
	/* and whether a sample was taken or not: with it (each way), without
	 * it, and from .zst inputs, which cannot be sampled */
	same_sampled(&f, "", "--density 0.2");
	same_sampled(&f, "", "--density 0.01 --norm l2");
	same_sampled(&f, "", "--density 0.2 -w 0.5,1.5,1");
	/* a model too big to be sampled whole (18 million elements): a sample
	 * of pieces, its error measured; the same bytes as without it */
	{
		struct fam g2 = {"", {0}, {{0}}, 4};
		struct tlog g;
		snprintf(g2.dir, sizeof(g2.dir), "%s/fam2", tu_tmpdir());
		if (tu_run("'%s' --arch llama --dtype bf16 --layers 4 --size 40M --models 3 --seed 17 "
		           "--out '%s'",
		           tu_gen(), g2.dir) != 0)
			return 99;
		ties_log(&g2, "", "--density 0.2", &g);
		ok(g.sampled && !g.whole && g.pieces && !strcmp(g.after, g.skipped ? "select" : "threshold"),
		   "ties on 18 million elements: a sample of pieces (%s)",
		   g.skipped ? "it predicted, the threshold pass is skipped" : "no prediction");
		same_sampled(&g2, " (18 million elements)", "--density 0.2");
		same_sampled(&g2, " (18 million elements)", "--density 0.2 -w 0.5,1.5,1");
	}
	dare_case(&f, 0.3, 99, 0, wts, 0);
	dare_case(&f, 0.3, 99, 1, wts, 1);
	dare_case(&f, 0.7, 12345678901234ull, 1, ones, 2);
	dare_case(&f, 0.1, 0, 0, ones, 3);
	/* mergekit's names and options: normalize over the agreeing weights
	 * or not, the L1 rescale or none, a density per model */
	{
		static const double rv[NM] = {0.2, 0.5, 0.9}, rv2[NM] = {0.05, 0.3, 1.0};
		struct xopt x = xdef;
		x.method = "dare_ties";
		dare_case_x(&f, 0.3, 99, 1, wts, 4, &x);
		x.no_norm = 1;
		dare_case_x(&f, 0.3, 99, 1, wts, 5, &x);
		x.no_norm = 0, x.rescale = 1, x.rhov = rv;
		dare_case_x(&f, 0.3, 7, 1, wts, 6, &x);
		x.method = "dare_linear";
		dare_case_x(&f, 0.3, 7, 0, wts, 7, &x);
		x.rescale = 2, x.rhov = rv2;
		dare_case_x(&f, 0.3, 7, 0, ones, 8, &x);
		x.method = "dare", x.rescale = 0;
		dare_case_x(&f, 0.3, 3, 1, wts, 9, &x);
		x = xdef;
		x.no_norm = 1;
		ties_case_x(&f, 0.2, 0, wts, 1, idx++, "", &x);
		ties_case_x(&f, 0.3, 1, ones, 0, idx++, "", &x);
		x = xdef;
		x.rhov = rv;
		ties_case_x(&f, 0.2, 0, wts, 1, idx++, "", &x);
		ties_case_x(&f, 0.2, 1, ones, 0, idx++, "", &x);
		x.rhov = rv2;
		ties_case_x(&f, 0.2, 0, ones, 0, idx++, "", &x);
		ties_case_x(&f, 0.2, 0, ones, 0, idx++, "off", &x);
		/* consensus over TIES: the TALL masks on TIES's merge */
		x = xdef;
		x.cons = 1, x.cons_k = 2, x.cons_l = 0.4;
		ties_case_x(&f, 0.2, 0, ones, 0, idx++, "", &x);
		ties_case_x(&f, 0.5, 0, wts, 1, idx++, "predict", &x);
		x.cons_k = 1, x.cons_l = 0.7;
		ties_case_x(&f, 0.3, 1, wts, 1, idx++, "", &x);
		x.cons_k = 3, x.no_norm = 1;
		ties_case_x(&f, 0.6, 0, ones, 0, idx++, "off", &x);
		/* and on F16 and F32 families */
		static const char *const cdt[] = {"f16", "f32"};
		for (int d = 0; d < 2; d++) {
			struct fam g = {"", {0}, {{0}}, 4};
			int good = 1;
			snprintf(g.dir, sizeof(g.dir), "%s/fam-%s", tu_tmpdir(), cdt[d]);
			if (tu_run("'%s' --arch llama --dtype %s --layers 4 --hidden 32 --models 3 "
			           "--seed %d --out '%s'",
			           tu_gen(), cdt[d], 23 + d, g.dir) != 0)
				return 99;
			snprintf(p, sizeof(p), "%s/base.safetensors", g.dir);
			good &= tu_model_load(&g.base, p) == 0;
			for (int i = 0; i < NM; i++) {
				snprintf(p, sizeof(p), "%s/ft%d.safetensors", g.dir, i + 1);
				good &= tu_model_load(&g.ft[i], p) == 0;
			}
			if (!ok(good, "consensus over ties: read the %s family", cdt[d]))
				continue;
			x = xdef;
			x.cons = 1, x.cons_k = 2, x.cons_l = 0.4;
			ties_case_x(&g, 0.3, 0, wts, 1, idx++, "", &x);
			x.cons_k = 3, x.cons_l = 0.3;
			ties_case_x(&g, 0.2, 1, ones, 0, idx++, "", &x);
			tu_model_free(&g.base);
			for (int i = 0; i < NM; i++)
				tu_model_free(&g.ft[i]);
		}
	}

	/* ---- inspect --norms ---------------------------------------------------------------- */
	{
		char jpath[4400];
		snprintf(jpath, sizeof(jpath), "%s/norms.json", f.dir);
		int rc = tu_run("'%s' inspect --norms --json -b '%s/base.safetensors' '%s/ft1.safetensors' "
		                "'%s/ft2.safetensors' '%s/ft3.safetensors' > '%s'",
		                tu_lines(), f.dir, f.dir, f.dir, f.dir, jpath);
		json_t *nj = json_load_file(jpath, 0, NULL), *rows = json_object_get(nj, "blocks");
		int good = rc == 0 && json_array_size(rows) == (size_t)f.L + 1, grows = 1;
		double prev = 0;
		for (long r = 0; good && r <= f.L; r++) {
			double bl1 = 0, bl2 = 0, tl1[NM] = {0}, tl2[NM] = {0};
			for (size_t ti = 0; ti < f.base.n; ti++) {
				const struct tu_tensor *b = &f.base.t[ti];
				long blk = tu_block_of(b->name);
				if (!tu_is_float(b) || (r < f.L ? blk != r : blk >= 0))
					continue;
				for (uint64_t e = 0; e < b->nelem; e++) {
					double bv = tu_elem(b, e);
					bl1 += fabs(bv), bl2 += bv * bv;
					for (unsigned i = 0; i < NM; i++) {
						double t = tauw(&f, ti, i, e, ones);
						tl1[i] += fabs(t), tl2[i] += t * t;
					}
				}
			}
			json_t *row = json_array_get(rows, (size_t)r), *tasks = json_object_get(row, "tasks");
			double g1 = json_real_value(json_object_get(row, "base_l1"));
			double g2 = json_real_value(json_object_get(row, "base_l2"));
			good &= fabs(g1 - bl1) <= 1e-12 * bl1 && fabs(g2 - sqrt(bl2)) <= 1e-12 * sqrt(bl2);
			for (unsigned i = 0; i < NM; i++) {
				json_t *t = json_array_get(tasks, i);
				double a1 = json_real_value(json_object_get(t, "l1"));
				double a2 = json_real_value(json_object_get(t, "l2"));
				good &= fabs(a1 - tl1[i]) <= 1e-12 * tl1[i] && fabs(a2 - sqrt(tl2[i])) <= 1e-12 * sqrt(tl2[i]);
			}
			double rel = json_real_value(json_object_get(json_array_get(tasks, 0), "rel_l2"));
			if (r < f.L) {
				grows &= rel > prev;
				prev = rel;
			}
		}
		ok(good, "inspect --norms: every block's L1 and L2 norms match the test's sums");
		ok(grows, "inspect --norms: the relative size of the task vectors grows with depth");
		json_decref(nj);
	}

	/* ---- DARE --------------------------------------------------------------------- */
	same_everywhere(&f, "", "-m dare --dare-elect --density 0.3 --seed 99 --lines", "dare");
	same_everywhere(&f, "", "-m dare_ties --rescale --density 0.2,0.5,0.9 -w 0.5,1.5,1 --lines",
	                "dare_ties --rescale, a density per model");
	same_everywhere(&f, "", "-m ties --density 0.1,0.3,0.6 -w 0.5,1.5,1 --no-normalize --lines",
	                "ties --no-normalize, a density per model");
	dare_kept_per_model(&f);

	/* the fraction kept, and what is kept: one model, lambda 1 */
	double rho = 0.3;
	char out[4400];
	snprintf(out, sizeof(out), "%s/dare1.safetensors", f.dir);
	tu_run("'%s' merge -q -b '%s/base.safetensors' -m dare --density %g --seed 5 -o '%s' '%s/ft1.safetensors'",
	       tu_lines(), f.dir, rho, out, f.dir);
	struct tu_model om;
	uint64_t nz = 0, kept = 0, wrong = 0;
	if (tu_model_load(&om, out) == 0) {
		for (size_t ti = 0; ti < f.base.n; ti++) {
			const struct tu_tensor *b = &f.base.t[ti], *o = tu_model_find(&om, b->name);
			if (!tu_is_float(b))
				continue;
			for (uint64_t e = 0; e < b->nelem; e++) {
				float tau = tauw(&f, ti, 0, e, ones), bv = tu_elem(b, e), got = tu_elem(o, e);
				if (tau == 0)
					continue;
				nz++;
				if (got == bv)
					continue;
				kept++;
				double r = bv + tau / rho;
				wrong += fabs(got - r) > tu_ulp(o->dtype, r) + 0x1p-48 * fabs(r);
			}
		}
		tu_model_free(&om);
	}
	double mean = nz * rho, sd = sqrt(nz * rho * (1 - rho));
	ok(nz > 0 && fabs((double)kept - mean) <= 5 * sd,
	   "dare: kept %llu of %llu non-zero entries, %.4f, within 5 sigma of the density %.2f",
	   (unsigned long long)kept, (unsigned long long)nz, (double)kept / nz, rho);
	ok(wrong == 0, "dare: every kept entry is theta_0 + tau / density (%llu differ)",
	   (unsigned long long)wrong);

	tu_model_free(&f.base);
	for (int i = 0; i < NM; i++)
		tu_model_free(&f.ft[i]);
	tu_cleanup();
	return tap_done();
}
