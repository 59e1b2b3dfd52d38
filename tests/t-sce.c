/*
 * t-sce.c -- -m sce (mergekit's SCE) against a float64 reference written
 * here from the formula, per tensor:
 *     tau_i  = theta_i - b                  (float32, as lines defines it)
 *     var_j  = sum_i (tau_ij - mean_j)^2 / N, its key var_j rounded to
 *              float32 (a nonzero one below float32's range: the smallest
 *              subnormal; NaN above everything)
 *     count  = positions with var_j != 0; k = floor(f count)
 *     thr    = the k-th largest key by a full sort (f = 1: no selection;
 *              k = 0: nothing kept), m_j = key_j >= thr
 *     w_i    = mean_j (m_j tau_ij)^2 / their sum (1/N each below 1e-6)
 *     mtl    = where m_j: s = sum_i tau_i, majority sign(s >= 0 ? + : -),
 *              sum of w_i tau_i over the tau_i of that sign /
 *              max(sum of their w_i, 1e-6) (s itself when not finite);
 *              else 0
 *     ref    = fma(lambda, mtl, b)
 * every element within one ULP of the output dtype at ref (plus 2^-40 of
 * the operands: the weights' sums are blocked in lines); each tensor's
 * count, k, threshold (exactly) and weights (to 1e-12) in --json against
 * the test's; automatic alpha against ||sum tau|| / (N ||mtl||) to 1e-9;
 * the same bytes for -j1/-j2, --chunk 64K, --io mmap/uring and
 * LINES_ISA=scalar/avx2/avx512 (those here). Some tensors must have k = 0,
 * uniform weights, computed weights, and ties at the cut (all kept).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "tutil.h"

#define NM 3

struct fam {
	char dir[4200];
	struct tu_model b, x[NM];
	long L;
};

struct scen {
	const char *name, *args;
	double f;                   /* --select-topk */
	double lambda, alpha, beta; /* beta 0: lambda for every tensor; alpha < 0: automatic */
	int norm_p;
};

/* One tensor's statistics, as the test computes them. */
struct tstat {
	uint64_t count, k;
	uint32_t thr; /* 0: keep all; UINT32_MAX: nothing */
	double w[NM];
	int uniform;
};

static double tau(const struct tu_tensor *x, const struct tu_tensor *b, uint64_t e)
{
	if (!strcmp(b->dtype, "F64"))
		return tu_elem64(x, e) - tu_elem64(b, e);
	return (double)(tu_elem(x, e) - tu_elem(b, e)); /* a float32 subtraction */
}

static uint32_t key_of(const double *t)
{
	double mean = 0, var = 0;
	for (int m = 0; m < NM; m++)
		mean += t[m];
	mean /= NM;
	for (int m = 0; m < NM; m++)
		var += (t[m] - mean) * (t[m] - mean);
	var /= NM;
	if (isnan(var))
		return 0x7fc00000u;
	float fv = (float)var;
	uint32_t u;
	memcpy(&u, &fv, 4);
	return u == 0 && var > 0 ? 1u : u;
}

static int cmp_desc(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? 1 : x > y ? -1 : 0;
}

static void taus(const struct fam *f, const struct tu_tensor *b, const struct tu_tensor *const *x,
                 uint64_t e, double *t)
{
	(void)f;
	for (int m = 0; m < NM; m++)
		t[m] = tau(x[m], b, e);
}

static int kept(const struct tstat *st, const double *t)
{
	return st->thr == 0 || (st->thr != UINT32_MAX && key_of(t) >= st->thr);
}

static void stats(const struct fam *f, size_t i, double sel, struct tstat *st)
{
	const struct tu_tensor *b = &f->b.t[i], *x[NM];
	uint32_t *keys = malloc(b->nelem * sizeof(*keys) + 4);
	double sq[NM] = {0}, sum = 0;
	uint64_t nk = 0;
	for (int m = 0; m < NM; m++)
		x[m] = tu_model_find(&f->x[m], b->name);
	for (uint64_t e = 0; e < b->nelem; e++) {
		double t[NM];
		taus(f, b, x, e, t);
		uint32_t k = key_of(t);
		if (k)
			keys[nk++] = k;
	}
	qsort(keys, nk, sizeof(*keys), cmp_desc); /* the full sort */
	st->count = nk;
	st->k = (uint64_t)floor((double)nk * sel);
	st->thr = sel >= 1 ? 0 : st->k == 0 ? UINT32_MAX : keys[st->k - 1];
	free(keys);
	for (uint64_t e = 0; e < b->nelem; e++) {
		double t[NM];
		taus(f, b, x, e, t);
		if (kept(st, t))
			for (int m = 0; m < NM; m++)
				sq[m] += t[m] * t[m];
	}
	for (int m = 0; m < NM; m++)
		sum += (st->w[m] = sq[m] / (double)b->nelem);
	st->uniform = fabs(sum) < 1e-6;
	for (int m = 0; m < NM; m++)
		st->w[m] = st->uniform ? 1.0 / NM : st->w[m] / sum;
}

/* mtl at an element; *s the plain sum. */
static double mtl_of(const struct tstat *st, const double *t, double *s)
{
	double sv = 0, num = 0, den = 0;
	for (int m = 0; m < NM; m++)
		sv += t[m];
	*s = sv;
	if (!kept(st, t))
		return 0.0;
	if (!isfinite(sv))
		return sv;
	for (int m = 0; m < NM; m++)
		if (sv >= 0 ? t[m] > 0 : t[m] < 0)
			num += st->w[m] * t[m], den += st->w[m];
	return num / (den < 1e-6 ? 1e-6 : den);
}

/* |got - want| within rel of want (NaN matches NaN). */
static int near(double got, double want, double rel)
{
	if (isnan(want))
		return isnan(got);
	return fabs(got - want) <= rel * (fabs(want) > 1e-300 ? fabs(want) : 1e-300);
}

/* The tensor's "sce" entry in the --json summary: count k threshold w1 w2 w3 uniform. */
static int json_stats(const char *js, const char *name, double *v)
{
	char q[5200];
	int n;
	snprintf(q, sizeof(q),
	         "jq -r '.tensors[] | select(.name == \"%s\") | .sce | "
	         "\"\\(.count // -1) \\(.k // -1) \\(.threshold // -1) \\(.weights[0]) "
	         "\\(.weights[1]) \\(.weights[2]) \\(if .uniform then 1 else 0 end)\"' '%s'",
	         name, js);
	FILE *pf = popen(q, "r");
	if (!pf)
		return 0;
	n = fscanf(pf, "%lf %lf %lf %lf %lf %lf %lf", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
	           &v[6]);
	pclose(pf);
	return n == 7;
}

static double thr_value(uint32_t thr)
{
	float fv;
	if (thr == 0 || thr == UINT32_MAX)
		return -1;
	memcpy(&fv, &thr, 4);
	return fv;
}

static int stats_match(const struct tstat *st, const double *v, double sel)
{
	int good = 1;
	if (sel < 1)
		good &= v[0] == (double)st->count && v[1] == (double)st->k &&
		        v[2] == thr_value(st->thr);
	else
		good &= v[0] == -1 && v[1] == -1 && v[2] == -1;
	for (int m = 0; m < NM; m++)
		good &= near(v[3 + m], st->w[m], 1e-12);
	return good && v[6] == st->uniform;
}

static void compare(const struct fam *f, const struct scen *s, const struct tu_model *o,
                    const char *js, double alpha, int *nuniform, int *nweighed, int *nzero_k,
                    int *nties)
{
	uint64_t n = 0, bad = 0, badt = 0, nt = 0;
	double worst = 0;
	char first[256] = "", firstt[300] = "";
	for (size_t i = 0; i < f->b.n; i++) {
		const struct tu_tensor *b = &f->b.t[i], *ot = tu_model_find(o, b->name), *x[NM];
		struct tstat st;
		double v[7];
		if (!tu_is_float(b))
			continue;
		for (int m = 0; m < NM; m++)
			x[m] = tu_model_find(&f->x[m], b->name);
		stats(f, i, s->f, &st);
		*nuniform += st.uniform;
		*nweighed += !st.uniform;
		*nzero_k += s->f < 1 && st.k == 0;
		long blk = tu_block_of(b->name);
		double lam = s->beta == 0 ? s->lambda
		                          : alpha + s->beta * (blk < 0 ? 0 : (double)blk / (double)(f->L - 1));
		if (!json_stats(js, b->name, v) || !stats_match(&st, v, s->f)) {
			if (!badt++)
				snprintf(firstt, sizeof(firstt),
				         "; %s: json %g %g %.9g %g, test %llu %llu %.9g %g", b->name, v[0],
				         v[1], v[2], v[3], (unsigned long long)st.count,
				         (unsigned long long)st.k, thr_value(st.thr), st.w[0]);
		}
		nt++;
		uint64_t nkept = 0;
		for (uint64_t e = 0; ot && e < b->nelem; e++, n++) {
			double t[NM], sv, mag = fabs(tu_elem64(b, e));
			taus(f, b, x, e, t);
			double m = mtl_of(&st, t, &sv);
			nkept += st.thr != UINT32_MAX && st.thr != 0 && key_of(t) >= st.thr;
			for (int q = 0; q < NM; q++)
				mag += isfinite(t[q]) ? fabs(lam * t[q]) : 0.0;
			double ref = fma(lam, m, tu_elem64(b, e)), got = tu_elem64(ot, e);
			double ulp = tu_ulp(ot->dtype, ref), err = fabs(got - ref);
			int fine = isnan(ref) ? isnan(got) : isinf(ref) ? got == ref : err <= ulp + 0x1p-40 * mag;
			if (!fine && !bad++)
				snprintf(first, sizeof(first), "%s[%llu]: got %.9g, want %.17g", b->name,
				         (unsigned long long)e, got, ref);
			if (fine && !isnan(ref) && !isinf(ref) && err <= ulp && err / ulp > worst)
				worst = err / ulp;
		}
		*nties += s->f < 1 && st.k > 0 && nkept > st.k; /* ties at the cut, all kept */
		bad += !ot;
	}
	ok(bad == 0 && n > 0, "%s: %llu elements within 1 ULP of the float64 reference (worst %.2f)%s%s",
	   s->name, (unsigned long long)n, worst, bad ? "; " : "", first);
	ok(badt == 0 && nt > 0,
	   "%s: count, k, threshold and weights of the %llu tensors in --json are the test's%s",
	   s->name, (unsigned long long)nt, firstt);
}

/* ||sum tau|| / (N ||mtl||) over the model. */
static double sce_alpha(const struct fam *f, double sel, int p)
{
	double s1 = 0, s2 = 0, m1 = 0, m2 = 0;
	for (size_t i = 0; i < f->b.n; i++) {
		const struct tu_tensor *b = &f->b.t[i], *x[NM];
		struct tstat st;
		if (!tu_is_float(b))
			continue;
		for (int m = 0; m < NM; m++)
			x[m] = tu_model_find(&f->x[m], b->name);
		stats(f, i, sel, &st);
		for (uint64_t e = 0; e < b->nelem; e++) {
			double t[NM], sv, mv;
			taus(f, b, x, e, t);
			mv = mtl_of(&st, t, &sv);
			if (!isfinite(sv) || !isfinite(mv))
				continue;
			s1 += fabs(sv), s2 += sv * sv, m1 += fabs(mv), m2 += mv * mv;
		}
	}
	return p == 2 ? sqrt(s2) / (NM * sqrt(m2)) : s1 / (NM * m1);
}

static const char *models(const struct fam *f)
{
	static char buf[13000];
	snprintf(buf, sizeof(buf), "'%s/ft1.safetensors' '%s/ft2.safetensors' '%s/ft3.safetensors'",
	         f->dir, f->dir, f->dir);
	return buf;
}

static void run(const struct fam *f, const struct scen *s, int k, int *nuniform, int *nweighed,
                int *nzero_k, int *nties)
{
	char out[4400], js[4500];
	struct tu_model o;
	snprintf(out, sizeof(out), "%s/o%d.st", f->dir, k);
	snprintf(js, sizeof(js), "%s/o%d.json", f->dir, k);
	int rc = tu_run("'%s' merge -q -m sce -b '%s/base.safetensors' %s --json -o '%s' %s >'%s'",
	                tu_lines(), f->dir, s->args, out, models(f), js);
	if (!ok(rc == 0 && tu_model_load(&o, out) == 0, "%s: lines exits 0", s->name)) {
		diag("%s", tu_stderr);
		return;
	}
	double alpha = s->alpha;
	if (s->alpha < 0) {
		double want = sce_alpha(f, s->f, s->norm_p), got = NAN;
		char q[4600];
		snprintf(q, sizeof(q), "jq -e '.lines.alpha' '%s'", js);
		FILE *pf = popen(q, "r");
		if (pf && fscanf(pf, "%lf", &got) != 1)
			got = NAN;
		if (pf)
			pclose(pf);
		ok(near(got, want, 1e-9), "%s: alpha %.17g = ||sum tau|| / (N ||mtl||) = %.17g", s->name,
		   got, want);
		alpha = got;
	}
	compare(f, s, &o, js, alpha, nuniform, nweighed, nzero_k, nties);
	tu_model_free(&o);
}

/* The same bytes for every -j, --chunk, --io and instruction set. */
static void same_bytes(const struct fam *f)
{
	static const char *const var[] = {
		"-j1", "-j2 --chunk 16K", "-j2 --chunk 64K", "--io mmap -j2", "--io uring --chunk 16K",
		"-j2", "-j1 --chunk 16K", "-j2",
	};
	static const char *const env[] = {"", "", "", "", "", "LINES_ISA=scalar", "LINES_ISA=avx2",
	                                  "LINES_ISA=avx512"};
	char ref[4400];
	int same = 1, ran = 0;
	snprintf(ref, sizeof(ref), "%s/ref.st", f->dir);
	if (tu_run("'%s' merge -q -m sce --select-topk 0.4 --lines -b '%s/base.safetensors' "
	           "--no-checksum -o '%s' %s", tu_lines(), f->dir, ref, models(f)) != 0) {
		ok(0, "same bytes: the reference run");
		return;
	}
	for (size_t i = 0; i < sizeof(var) / sizeof(var[0]); i++) {
		char out[4400];
		snprintf(out, sizeof(out), "%s/v%zu.st", f->dir, i);
		int rc = tu_run("%s '%s' merge -q -m sce --select-topk 0.4 --lines %s -b "
		                "'%s/base.safetensors' --no-checksum -o '%s' %s && cmp -s '%s' '%s'",
		                env[i], tu_lines(), var[i], f->dir, out, models(f), ref, out);
		if (rc != 0 && strstr(var[i], "uring") && strstr(tu_stderr, "uring"))
			continue; /* no io_uring here */
		if (rc != 0 && *env[i] && strstr(tu_stderr, "no such kernels"))
			continue; /* not this instruction set */
		same &= rc == 0;
		ran++;
	}
	ok(same && ran >= 6, "same bytes for -j1/-j2, --chunk 64K, --io mmap/uring, "
	                     "LINES_ISA=scalar/avx2/avx512 (%d runs)", ran);
}

static int load(struct fam *f, const char *dtype, const char *extra, int hidden)
{
	char p[4400];
	snprintf(f->dir, sizeof(f->dir), "%s/%s-%d", tu_tmpdir(), dtype, hidden);
	if (tu_run("'%s' --arch llama --dtype %s --layers 3 --hidden %d --models 3 --seed 13 %s "
	           "--out '%s'",
	           tu_gen(), dtype, hidden, extra, f->dir) != 0)
		return 0;
	snprintf(p, sizeof(p), "%s/base.safetensors", f->dir);
	int good = tu_model_load(&f->b, p) == 0;
	for (int m = 0; m < NM; m++) {
		snprintf(p, sizeof(p), "%s/ft%d.safetensors", f->dir, m + 1);
		good &= tu_model_load(&f->x[m], p) == 0;
	}
	f->L = 3;
	return good;
}

int main(void)
{
	static const struct scen sc[] = {
		{"sce (select_topk 1)", "", 1, 1, 0, 0, 1},
		{"sce --select-topk 0.3", "--select-topk 0.3", 0.3, 1, 0, 0, 1},
		{"sce --select-topk 0.03 (k = 0 on small tensors)", "--select-topk 0.03", 0.03, 1, 0, 0, 1},
		{"sce --select-topk 0 (nothing kept)", "--select-topk 0", 0, 1, 0, 0, 1},
		{"sce --select-topk 0.3 --lambda 0.7", "--select-topk 0.3 --lambda 0.7", 0.3, 0.7, 0, 0, 1},
		{"sce --select-topk 0.5 --lines 0.3 0.6", "--select-topk 0.5 --lines --alpha 0.3 --beta 0.6",
		 0.5, 0, 0.3, 0.6, 1},
		{"sce --select-topk 0.3 --lines auto L1", "--select-topk 0.3 --lines --beta 0.5", 0.3, 0,
		 -1, 0.5, 1},
		{"sce --lines auto L2", "--lines --norm l2 --beta 0.5", 1, 0, -1, 0.5, 2},
	};
	static const struct scen big[] = {
		{"sce --select-topk 0.3 --chunk 16K -j2", "--select-topk 0.3 --chunk 16K -j2", 0.3, 1, 0,
		 0, 1},
		{"sce --select-topk 0.7 --lines auto --chunk 16K",
		 "--select-topk 0.7 --lines --beta 0.5 --chunk 16K",
		 0.7, 0, -1, 0.5, 1},
	};
	static const char *const dts[] = {"bf16", "f16", "f32", "f64"};
	int nuniform = 0, nweighed = 0, nzero_k = 0, nties = 0;
	for (size_t d = 0; d < 4; d++) {
		struct fam f;
		memset(&f, 0, sizeof(f));
		if (!ok(load(&f, dts[d], d == 0 ? "--specials" : "--ragged", 32), "generate a %s family", dts[d]))
			continue;
		for (size_t i = 0; i < sizeof(sc) / sizeof(sc[0]); i++)
			run(&f, &sc[i], (int)i, &nuniform, &nweighed, &nzero_k, &nties);
		tu_model_free(&f.b);
		for (int m = 0; m < NM; m++)
			tu_model_free(&f.x[m]);
	}
	/* tensors of many jobs (16 KiB chunks): the counts of a tensor are
	 * added over its jobs */
	struct fam f;
	memset(&f, 0, sizeof(f));
	if (ok(load(&f, "bf16", "", 128), "generate a larger bf16 family")) {
		for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++)
			run(&f, &big[i], 100 + (int)i, &nuniform, &nweighed, &nzero_k, &nties);
		same_bytes(&f);
		tu_model_free(&f.b);
		for (int m = 0; m < NM; m++)
			tu_model_free(&f.x[m]);
	}
	ok(nzero_k > 0, "some tensors had k = 0 (%d) and were the base's", nzero_k);
	ok(nuniform > 0 && nweighed > 0, "tensors with uniform weights (%d) and with their own (%d)",
	   nuniform, nweighed);
	ok(nties > 0, "tensors with ties at the cut, all kept (%d)", nties);
	tu_cleanup();
	return tap_done();
}
