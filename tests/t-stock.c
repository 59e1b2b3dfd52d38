/*
 * t-stock.c -- -m model_stock (mergekit's Model Stock, flattened) against
 * a float64 reference written here from the formula:
 *     tau_i  = theta_i - b                      (float32, as lines defines it)
 *     cos_ij = tau_i . tau_j / max(|tau_i| |tau_j|, 1e-6), clamped to [-1, 1]
 *     cos    = mean over i < j;  t = N cos / (1 + (N - 1) cos)
 *     ref    = b + lambda t (tau_1 + ... + tau_N) / N
 * every element within one ULP of the output dtype at ref (plus 2^-40 of
 * the operands: lines' dots are summed in blocks, the test's in one run,
 * so t differs in its last bits); each tensor's cos and t in the manifest
 * within 1e-9 of the test's; automatic alpha (L2, from the dots) against
 * ||sum tau|| / (N ||t mean tau||) to 1e-9; NaN inputs give NaN tensors.
 * With --per-row (mergekit's filter_wise) the same per row (the elements
 * that share all but the last index; a vector is one row): every
 * element, each tensor's count of rows and smallest and largest row t in
 * the manifest, and automatic alpha summed over the rows.
 * Opposite task vectors (cos -1 exactly, or one ULP from it: t of 1e16 set
 * by rounding) are refused with or without --per-row, nothing written;
 * cos -0.6 (not singular) is merged with the formula's t, -3.
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
	double lambda, alpha, beta; /* beta 0: lambda for every tensor; alpha < 0: automatic */
	int per_row;
};

/* The elements of a row: the whole tensor, or its last dimension. */
static uint64_t row_len(const struct tu_tensor *b, int per_row)
{
	if (!per_row || b->rank < 2 || b->shape[b->rank - 1] == 0)
		return b->nelem ? b->nelem : 1;
	return b->shape[b->rank - 1];
}

static double tau(const struct tu_tensor *x, const struct tu_tensor *b, uint64_t e)
{
	if (!strcmp(b->dtype, "F64"))
		return tu_elem64(x, e) - tu_elem64(b, e);
	return (double)(tu_elem(x, e) - tu_elem(b, e)); /* a float32 subtraction */
}

/* t and cos of elements [e0, e1) of tensor i (the tensor, or a row). */
static double stock_t(const struct fam *f, size_t i, uint64_t e0, uint64_t e1, double *cosine,
                      double *s2)
{
	const struct tu_tensor *b = &f->b.t[i], *x[NM];
	double g[NM][NM] = {{0}}, sum = 0;
	int pairs = 0;
	for (int m = 0; m < NM; m++)
		x[m] = tu_model_find(&f->x[m], b->name);
	for (uint64_t e = e0; e < e1; e++) {
		double t[NM];
		for (int m = 0; m < NM; m++)
			t[m] = tau(x[m], b, e);
		for (int p = 0; p < NM; p++)
			for (int q = 0; q < NM; q++)
				g[p][q] += t[p] * t[q];
	}
	*s2 = 0;
	for (int p = 0; p < NM; p++)
		for (int q = 0; q < NM; q++) {
			*s2 += g[p][q];
			if (q <= p)
				continue;
			double np = sqrt(g[p][p]) * sqrt(g[q][q]);
			double c = g[p][q] / (np > 1e-6 ? np : 1e-6);
			sum += c > 1 ? 1 : c < -1 ? -1 : c;
			pairs++;
		}
	*cosine = sum / pairs;
	return NM * *cosine / (1 + (NM - 1) * *cosine);
}

/* |got - want| within rel of want (NaN matches NaN). */
static int near(double got, double want, double rel)
{
	if (isnan(want))
		return isnan(got);
	return fabs(got - want) <= rel * (fabs(want) > 1e-300 ? fabs(want) : 1e-300);
}

/* The manifest's model_stock entry of a tensor: cos and t, or (per row)
 * the rows and their smallest and largest t, into v[0..3). */
static int manifest_entry(const char *manifest, const char *name, int per_row, double *v)
{
	char q[5200];
	snprintf(q, sizeof(q),
	         "jq -e '.tensors[] | select(.name == \"%s\") | .model_stock | %s' '%s'", name,
	         per_row ? "\"\\(.rows) \\(.t_min) \\(.t_max)\"" : "\"\\(.cos) \\(.t) 0\"", manifest);
	FILE *pf = popen(q, "r");
	int n = pf ? fscanf(pf, "\"%lf %lf %lf\"", &v[0], &v[1], &v[2]) : 0;
	if (pf)
		pclose(pf);
	return n == 3;
}

struct tally {
	uint64_t n, bad;
	double worst;
	char first[256];
};

/* Elements [e0, e1) of tensor i against the reference with t. */
static void compare_range(const struct fam *f, size_t i, const struct tu_tensor *ot, uint64_t e0,
                          uint64_t e1, double lam, double t, struct tally *y)
{
	const struct tu_tensor *b = &f->b.t[i];
	for (uint64_t e = e0; e < e1; e++, y->n++) {
		double sum = 0, mag = fabs(tu_elem64(b, e));
		for (int m = 0; m < NM; m++) {
			double tv = tau(tu_model_find(&f->x[m], b->name), b, e);
			sum += tv, mag += fabs(lam * t * tv / NM);
		}
		double ref = tu_elem64(b, e) + lam * t * (sum / NM), got = tu_elem64(ot, e);
		double ulp = tu_ulp(ot->dtype, ref), err = fabs(got - ref);
		int fine = isnan(ref) ? isnan(got) : isinf(ref) ? got == ref : err <= ulp + 0x1p-40 * mag;
		if (!fine && !y->bad++)
			snprintf(y->first, sizeof(y->first), "%s[%llu]: got %.9g, want %.17g", b->name,
			         (unsigned long long)e, got, ref);
		if (fine && !isnan(ref) && !isinf(ref) && err <= ulp && err / ulp > y->worst)
			y->worst = err / ulp;
	}
}

static void compare(const struct fam *f, const struct scen *s, const struct tu_model *o,
                    const char *manifest, double alpha)
{
	uint64_t badt = 0, nt = 0, rows = 0;
	struct tally y = {0, 0, 0, ""};
	for (size_t i = 0; i < f->b.n; i++) {
		const struct tu_tensor *b = &f->b.t[i], *ot = tu_model_find(o, b->name);
		if (!tu_is_float(b))
			continue;
		long blk = tu_block_of(b->name);
		double lam = s->beta == 0 ? s->lambda
		                          : alpha + s->beta * (blk < 0 ? 0 : (double)blk / (double)(f->L - 1));
		uint64_t len = row_len(b, s->per_row), nr = 0;
		double cosine = NAN, s2, t = NAN, tmin = INFINITY, tmax = -INFINITY, m[3] = {NAN, NAN, NAN};
		for (uint64_t e0 = 0; e0 < b->nelem; e0 += len, nr++) {
			t = stock_t(f, i, e0, e0 + len, &cosine, &s2);
			tmin = t < tmin ? t : tmin, tmax = t > tmax ? t : tmax;
			if (ot)
				compare_range(f, i, ot, e0, e0 + len, lam, t, &y);
		}
		int have = manifest_entry(manifest, b->name, s->per_row, m);
		if (s->per_row)
			badt += !(have && m[0] == (double)nr && near(m[1], tmin, 1e-9) && near(m[2], tmax, 1e-9));
		else
			badt += !(have && near(m[0], cosine, 1e-9) && near(m[1], t, 1e-9));
		nt++, rows += nr;
		y.bad += !ot;
	}
	ok(y.bad == 0 && y.n > 0, "%s: %llu elements within 1 ULP of the float64 reference (worst %.2f)%s%s",
	   s->name, (unsigned long long)y.n, y.worst, y.bad ? "; " : "", y.first);
	if (s->per_row)
		ok(badt == 0 && nt > 0 && rows > nt,
		   "%s: the rows (%llu in %llu tensors) and their smallest and largest t in the manifest "
		   "are the test's", s->name, (unsigned long long)rows, (unsigned long long)nt);
	else
		ok(badt == 0 && nt > 0, "%s: the cos and t of the %llu tensors in the manifest are the test's",
		   s->name, (unsigned long long)nt);
}

/* ||sum tau|| / (N ||t mean tau||) over the model, in L2. */
static double stock_alpha(const struct fam *f, int per_row)
{
	double sum2 = 0, mtl2 = 0;
	for (size_t i = 0; i < f->b.n; i++) {
		if (!tu_is_float(&f->b.t[i]))
			continue;
		uint64_t len = row_len(&f->b.t[i], per_row);
		for (uint64_t e0 = 0; e0 < f->b.t[i].nelem; e0 += len) {
			double cosine, s2, t = stock_t(f, i, e0, e0 + len, &cosine, &s2);
			if (!isfinite(s2) || !isfinite(t))
				continue;
			sum2 += s2;
			mtl2 += t * t * s2 / (NM * NM);
		}
	}
	return sqrt(sum2) / (NM * sqrt(mtl2));
}

static void run(const struct fam *f, const struct scen *s, int k)
{
	char out[4400], man[4500], js[4500];
	struct tu_model o;
	snprintf(out, sizeof(out), "%s/o%d.st", f->dir, k);
	snprintf(man, sizeof(man), "%s.manifest.json", out);
	snprintf(js, sizeof(js), "%s/o%d.json", f->dir, k);
	int rc = tu_run("'%s' merge -q -m model_stock -b '%s/base.safetensors' %s --json -o '%s' "
	                "'%s/ft1.safetensors' '%s/ft2.safetensors' '%s/ft3.safetensors' >'%s'",
	                tu_lines(), f->dir, s->args, out, f->dir, f->dir, f->dir, js);
	if (!ok(rc == 0 && tu_model_load(&o, out) == 0, "%s: lines exits 0", s->name)) {
		diag("%s", tu_stderr);
		return;
	}
	double alpha = s->alpha;
	if (s->alpha < 0) {
		double want = stock_alpha(f, s->per_row), got = NAN;
		char q[4600];
		snprintf(q, sizeof(q), "jq -e '.lines.alpha' '%s'", js);
		FILE *pf = popen(q, "r");
		if (pf && fscanf(pf, "%lf", &got) != 1)
			got = NAN;
		if (pf)
			pclose(pf);
		ok(near(got, want, 1e-9), "%s: alpha %.17g = ||sum tau|| / (N ||t mean tau||) = %.17g",
		   s->name, got, want);
		alpha = got;
	}
	compare(f, s, &o, man, alpha);
	tu_model_free(&o);
}

static int load(struct fam *f, const char *dtype, const char *extra)
{
	char p[4400];
	snprintf(f->dir, sizeof(f->dir), "%s/%s", tu_tmpdir(), dtype);
	if (tu_run("'%s' --arch llama --dtype %s --layers 3 --hidden 32 --models 3 --seed 11 %s "
	           "--out '%s'",
	           tu_gen(), dtype, extra, f->dir) != 0)
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

/* A file of one F32 tensor "z" of shape [1, 8]. */
static int write_z(const char *dir, const char *name, const float *v)
{
	char path[4300], head[128];
	unsigned char buf[8 + 128 + 32];
	int hl = snprintf(head, sizeof(head),
	                  "{\"z\":{\"dtype\":\"F32\",\"shape\":[1,8],\"data_offsets\":[0,32]}}");
	while (hl % 8)
		head[hl++] = ' ';
	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	memcpy(buf + 8, head, (size_t)hl);
	memcpy(buf + 8 + hl, v, 32); /* little-endian hosts, as the rest of the tests */
	snprintf(path, sizeof(path), "%s/%s.safetensors", dir, name);
	return tu_write_file(path, buf, 8 + (size_t)hl + 32);
}

/* Task vectors whose mean cosine is -1/(N-1), exactly or within rounding. */
static void singular(void)
{
	static const float a[8] = {-0.731271505355835f, 0.6948674917221069f, 0.5275492668151855f,
	                           -0.48986193537712097f, -0.009129825979471207f,
	                           -0.10101787000894547f, 0.30318593978881836f, 0.577446699142456f};
	/* u = (3, 4, 0...), v = (-5, 0, 0...): cos -0.6, t = 2 cos / (1 + cos) = -3,
	 * theta = t (u + v) / 2 = (3, -6, 0...) */
	float z[8] = {0}, b[8], c[8], d[8], u[8] = {3, 4}, v[8] = {-5};
	char dir[4200], out[4400];
	for (int i = 0; i < 8; i++)
		b[i] = -2 * a[i], c[i] = 0.25f * (float)(i + 1), d[i] = -3 * c[i];
	snprintf(dir, sizeof(dir), "%s/singular", tu_tmpdir());
	tu_run("mkdir -p '%s'", dir);
	snprintf(out, sizeof(out), "%s/o.st", dir);
	if (!ok(write_z(dir, "base", z) == 0 && write_z(dir, "a", a) == 0 && write_z(dir, "b", b) == 0 &&
	            write_z(dir, "c", c) == 0 && write_z(dir, "d", d) == 0 &&
	            write_z(dir, "u", u) == 0 && write_z(dir, "v", v) == 0,
	        "write the opposite task vectors"))
		return;
	for (int per_row = 0; per_row < 2; per_row++) {
		struct tu_model o;
		const struct tu_tensor *t;
		int rc = tu_run("'%s' merge -q -m model_stock %s -b '%s/base.safetensors' -o '%s' "
		                "'%s/u.safetensors' '%s/v.safetensors'",
		                tu_lines(), per_row ? "--per-row" : "", dir, out, dir, dir);
		int good = rc == 0 && tu_model_load(&o, out) == 0;
		if (good) {
			t = tu_model_find(&o, "z");
			good = t && fabs(tu_elem(t, 0) - 3.0) < 1e-5 && fabs(tu_elem(t, 1) + 6.0) < 1e-5;
			for (int i = 2; good && i < 8; i++)
				good = tu_elem(t, (uint64_t)i) == 0.0f;
			tu_model_free(&o);
		}
		ok(good, "model_stock%s, cos -0.6: t = -3, theta = (3, -6, 0...)",
		   per_row ? " --per-row" : "");
		remove(out);
	}
	static const char *const pairs[][3] = {
	    {"a", "b", "b = -2 a in float32: cos one ULP above -1"},
	    {"c", "d", "d = -3 c: cos exactly -1"},
	};
	for (int per_row = 0; per_row < 2; per_row++)
		for (size_t k = 0; k < 2; k++) {
			remove(out);
			int rc = tu_run("'%s' merge -q -m model_stock %s -b '%s/base.safetensors' -o '%s' "
			                "'%s/%s.safetensors' '%s/%s.safetensors'",
			                tu_lines(), per_row ? "--per-row" : "", dir, out, dir,
			                pairs[k][0], dir, pairs[k][1]);
			ok(rc == 1 && !tu_exists(out), "model_stock%s, %s: refused (exit %d), no output",
			   per_row ? " --per-row" : "", pairs[k][2], rc);
		}
}

int main(void)
{
	static const struct scen sc[] = {
		{"model_stock", "", 1, 0, 0, 0},
		{"model_stock --lambda 0.7", "--lambda 0.7", 0.7, 0, 0, 0},
		{"model_stock --lines 0.3 0.6", "--lines --alpha 0.3 --beta 0.6", 0, 0.3, 0.6, 0},
		{"model_stock --lines auto L2", "--lines --norm l2 --beta 0.5", 0, -1, 0.5, 0},
		{"model_stock --per-row", "--per-row", 1, 0, 0, 1},
		{"model_stock --per-row --lines 0.3 0.6", "--per-row --lines --alpha 0.3 --beta 0.6", 0,
		 0.3, 0.6, 1},
		{"model_stock --per-row --lines auto L2", "--per-row --lines --norm l2 --beta 0.5", 0, -1,
		 0.5, 1},
	};
	static const char *const dts[] = {"bf16", "f16", "f32", "f64"};
	for (size_t d = 0; d < 4; d++) {
		struct fam f;
		memset(&f, 0, sizeof(f));
		if (!ok(load(&f, dts[d], d == 0 ? "--specials" : ""), "generate a %s family", dts[d]))
			continue;
		for (size_t i = 0; i < sizeof(sc) / sizeof(sc[0]); i++)
			run(&f, &sc[i], (int)i);
		tu_model_free(&f.b);
		for (int m = 0; m < NM; m++)
			tu_model_free(&f.x[m]);
	}
	singular();
	tu_cleanup();
	return tap_done();
}
