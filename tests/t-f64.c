/*
 * t-f64.c -- F64 stays F64 (issue 14, item 6): an F64 tensor merged into
 * F64 is computed in float64 end to end by every method, so --lambda 0
 * gives the base's bytes, and every element of sum, mean, TIES (global
 * and per-tensor trim), DARE (sum and elect) and LiNeS with automatic
 * alpha is within one float64 ULP of a float64 reference computed here,
 * plus 2^-51 of the operands where they cancel (a float32 computation
 * would be some 2^29 ULP off).
 *
 * Two kinds of family: gen-family's F64 llama, and "band" families made
 * here, whose task vectors crowd inside one float32 value (1 + m 2^-33),
 * so the TIES threshold is right only if it is exact in float64; the
 * "mixed" band family adds an F32 tensor whose values share that float32
 * value, for the one global threshold over F32 and F64 tensors (float32
 * values ranked by their exact magnitude among the float64 ones).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "tap.h"
#include "tutil.h"

#define NX 2

struct fam {
	char dir[4300];
	struct tu_model b, x[NX];
	size_t nel; /* floating elements */
};

/* What lines was asked: the method and its options, for the reference. */
struct job {
	const char *name, *args;
	enum { M_SUM, M_MEAN, M_TIES, M_DARE } m;
	double w[NX], lambda, rho;
	int per_tensor, elect, lines;
	uint64_t seed;
};

static int fam_load(struct fam *f)
{
	char p[4400];
	int ok = 1;
	snprintf(p, sizeof(p), "%s/base.safetensors", f->dir);
	ok &= tu_model_load(&f->b, p) == 0;
	for (int i = 0; i < NX; i++) {
		snprintf(p, sizeof(p), "%s/ft%d.safetensors", f->dir, i + 1);
		ok &= tu_model_load(&f->x[i], p) == 0;
	}
	f->nel = 0;
	for (size_t ti = 0; ok && ti < f->b.n; ti++)
		f->nel += tu_is_float(&f->b.t[ti]) ? f->b.t[ti].nelem : 0;
	return ok;
}

static void fam_free(struct fam *f)
{
	tu_model_free(&f->b);
	for (int i = 0; i < NX; i++)
		tu_model_free(&f->x[i]);
}

/* The task vector of model i at element e of base tensor ti: float64 for
 * F64, float32 (rounded once) for the others, as the spec defines it. */
static double tau_of(const struct fam *f, size_t ti, uint64_t e, int i)
{
	const struct tu_tensor *bt = &f->b.t[ti], *xt = tu_model_find(&f->x[i], bt->name);
	if (!strcmp(bt->dtype, "F64"))
		return tu_elem64(xt, e) - tu_elem64(bt, e);
	return (double)(float)(tu_elem(xt, e) - tu_elem(bt, e));
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* TIES's t_i: the k-th smallest |w_i tau_i| (k = d - floor(d rho)) over
 * tensors [t0, t1), by sorting (the test may hold the model). */
static double ties_thr(const struct fam *f, const struct job *j, size_t t0, size_t t1, int i)
{
	double *v = malloc(f->nel * sizeof(double)), t = 0;
	size_t d = 0;
	for (size_t ti = t0; ti < t1; ti++)
		for (uint64_t e = 0; tu_is_float(&f->b.t[ti]) && e < f->b.t[ti].nelem; e++)
			v[d++] = fabs(j->w[i] * tau_of(f, ti, e, i));
	size_t k = d - (size_t)floor((double)d * j->rho);
	qsort(v, d, sizeof(double), cmp_dbl);
	if (k > 0)
		t = v[k - 1];
	free(v);
	return t;
}

/* The election at one element: kept when nonzero and |v| >= thr[i]; the
 * agreeing values over the sum of their weights w_i (mergekit's
 * normalize; 0 -> 1). */
static int elect(const double *v, const double *thr, const double *w, int maj, double *m)
{
	double pos = 0, neg = 0, wp = 0, wn = 0;
	for (int i = 0; i < NX; i++)
		if (v[i] != 0 && fabs(v[i]) >= thr[i] && v[i] > 0)
			pos += v[i], wp += w[i];
		else if (v[i] != 0 && fabs(v[i]) >= thr[i])
			neg += v[i], wn += w[i];
	int s = pos + neg > 0 ? 1 : pos + neg < 0 ? -1 : 0, e = s ? s : maj;
	*m = e > 0 ? pos / (wp != 0 ? wp : 1) : neg / (wn != 0 ? wn : 1);
	return s;
}

/* DARE's keep: the documented counter-based hash (kern_ties.h). */
static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}
static int dare_keep(const struct job *j, const char *name, int i, uint64_t e)
{
	uint64_t h = XXH3_64bits(name, strlen(name));
	uint64_t key = mix64(j->seed ^ mix64(((uint64_t)i + 1) * 0x100000001b3ull ^ mix64(h)));
	uint64_t lim = j->rho >= 1 ? 1ull << 53 : (uint64_t)ceil(j->rho * 0x1p53);
	return (mix64(key ^ e * 0xd1b54a32d192ed03ull) >> 11) < lim;
}

/* The task vectors an element's method combines: w_i tau_i, dropped and
 * rescaled for DARE. */
static void taus(const struct fam *f, const struct job *j, size_t ti, uint64_t e, double *v)
{
	for (int i = 0; i < NX; i++) {
		v[i] = j->w[i] * tau_of(f, ti, e, i);
		if (!strcmp(f->b.t[ti].dtype, "F32"))
			v[i] = (double)(float)v[i]; /* tau' rounded, as the kernels do */
		if (j->m == M_DARE)
			v[i] = dare_keep(j, f->b.t[ti].name, i, e) ? v[i] / j->rho : 0.0;
	}
}

/* tau_MTL of every floating element, in order (mag: the sum of the
 * magnitudes it is made of, for the slack); the thresholds first. */
static void reference(const struct fam *f, const struct job *j, double *mtl, double *mag)
{
	double *thr = calloc(f->b.n * NX, sizeof(double));
	int64_t votes = 0;
	for (size_t ti = 0; j->m == M_TIES && ti < f->b.n; ti++)
		for (int i = 0; i < NX; i++)
			thr[ti * NX + i] = j->per_tensor ? ties_thr(f, j, ti, ti + 1, i)
			                 : ti ? thr[i] : ties_thr(f, j, 0, f->b.n, i);
	int sel = j->m == M_TIES || (j->m == M_DARE && j->elect);
	for (int pass = sel ? 0 : 1; pass < 2; pass++) { /* votes, then values */
		size_t x = 0;
		int maj = votes >= 0 ? 1 : -1;
		for (size_t ti = 0; ti < f->b.n; ti++)
			for (uint64_t e = 0; tu_is_float(&f->b.t[ti]) && e < f->b.t[ti].nelem; e++, x++) {
				double v[NX], m = 0;
				taus(f, j, ti, e, v);
				mag[x] = fabs(v[0]) + fabs(v[1]);
				if (sel)
					votes += pass == 0 ? elect(v, thr + ti * NX, j->w, 1, &m) : 0;
				if (pass == 1)
					mtl[x] = sel ? (elect(v, thr + ti * NX, j->w, maj, &m), m)
					       : j->m == M_MEAN ? (v[0] + v[1]) / (j->w[0] + j->w[1])
					                        : v[0] + v[1];
			}
	}
	free(thr);
}

/* The block of a tensor name (model.layers.N.), -1 outside. */
static double meta_num(const struct tu_model *o, const char *key)
{
	const char *v = tu_model_meta(o, key);
	return v ? strtod(v, NULL) : NAN;
}

/* With --lines: the norms of automatic alpha against the reference's
 * (float64 sums; a float32 task vector would be off by far more). */
static void check_alpha(const struct fam *f, const struct job *j, const struct tu_model *o,
                        const double *mtl)
{
	double ns = 0, nm = 0;
	size_t x = 0;
	for (size_t ti = 0; ti < f->b.n; ti++)
		for (uint64_t e = 0; tu_is_float(&f->b.t[ti]) && e < f->b.t[ti].nelem; e++, x++) {
			ns += fabs(tau_of(f, ti, e, 0) + tau_of(f, ti, e, 1));
			nm += fabs(mtl[x]);
		}
	double gs = meta_num(o, "lines.norm_sum"), gm = meta_num(o, "lines.norm_mtl");
	ok(fabs(gs - ns) <= 1e-12 * ns && fabs(gm - nm) <= 1e-12 * nm,
	   "%s: the norms of automatic alpha are float64 (%.17g %.17g, reference %.17g %.17g)",
	   j->name, gs, gm, ns, nm);
	ok(fabs(meta_num(o, "lines.alpha") - ns / (NX * nm)) <= 1e-12 * ns / (NX * nm),
	   "%s: alpha = ||sum tau|| / (N ||tau_MTL||)", j->name);
}

/* Every floating element of out against theta_0 + lambda tau_MTL. */
static void check_out(const struct fam *f, const struct job *j, const struct tu_model *o,
                      const double *mtl, const double *mag)
{
	double alpha = meta_num(o, "lines.alpha"), beta = meta_num(o, "lines.beta");
	double L = meta_num(o, "lines.num_layers");
	uint64_t n = 0, n64 = 0, bad = 0;
	double worst = 0;
	size_t x = 0;
	for (size_t ti = 0; ti < f->b.n; ti++) {
		const struct tu_tensor *bt = &f->b.t[ti], *ot = tu_model_find(o, bt->name);
		long blk = tu_block_of(bt->name);
		double lam = !j->lines ? j->lambda : blk < 0 ? alpha : alpha + beta * blk / (L - 1);
		if (!tu_is_float(bt))
			continue;
		if (!ot || strcmp(ot->dtype, bt->dtype)) {
			bad++, x += bt->nelem;
			continue;
		}
		for (uint64_t e = 0; e < bt->nelem; e++, x++) {
			double bv = tu_elem64(bt, e), ref = bv + lam * mtl[x], got = tu_elem64(ot, e);
			if (strcmp(bt->dtype, "F64"))
				ref = (double)(float)fma(lam, mtl[x], bv);
			double u = tu_ulp(ot->dtype, ref), err = fabs(got - ref);
			double slack = 0x1p-51 * (fabs(bv) + fabs(lam) * mag[x]);
			if (!(err <= u + slack))
				bad++;
			else if (err <= u && err / u > worst)
				worst = err / u;
			n++, n64 += !strcmp(bt->dtype, "F64");
		}
	}
	ok(bad == 0 && n64 > 0, "%s: %llu elements (%llu F64) within 1 ULP of the float64 reference "
	   "(worst %.2f ULP)", j->name, (unsigned long long)n, (unsigned long long)n64, worst);
}

static int run(const struct fam *f, const char *env, const char *args, const char *out)
{
	return tu_run("%s '%s' merge -q -b '%s/base.safetensors' %s -o '%s' '%s/ft1.safetensors' "
	              "'%s/ft2.safetensors'",
	              env, tu_lines(), f->dir, args, out, f->dir, f->dir);
}

static void check(const struct fam *f, const struct job *j)
{
	char out[4500];
	struct tu_model o;
	snprintf(out, sizeof(out), "%s/%s.st", f->dir, j->name);
	if (!ok(run(f, "", j->args, out) == 0 && tu_model_load(&o, out) == 0, "%s: lines merges",
	        j->name))
		return;
	double *mtl = calloc(f->nel, sizeof(double)), *mag = calloc(f->nel, sizeof(double));
	reference(f, j, mtl, mag);
	if (j->lines)
		check_alpha(f, j, &o, mtl);
	check_out(f, j, &o, mtl, mag);
	free(mtl), free(mag);
	tu_model_free(&o);
}

/* --lambda 0: every F64 tensor is the base's bytes. */
static void check_lambda0(const struct fam *f, const char *name, const char *args)
{
	char out[4500], a[256];
	struct tu_model o;
	uint64_t same = 0, n = 0;
	snprintf(out, sizeof(out), "%s/%s-l0.st", f->dir, name);
	snprintf(a, sizeof(a), "%s --lambda 0", args);
	if (!ok(run(f, "", a, out) == 0 && tu_model_load(&o, out) == 0, "%s --lambda 0: merges", name))
		return;
	for (size_t ti = 0; ti < f->b.n; ti++) {
		const struct tu_tensor *bt = &f->b.t[ti], *ot = tu_model_find(&o, bt->name);
		if (strcmp(bt->dtype, "F64"))
			continue;
		n++;
		same += ot && ot->nbytes == bt->nbytes && !memcmp(ot->data, bt->data, bt->nbytes);
	}
	ok(n > 0 && same == n, "%s --lambda 0: %llu of %llu F64 tensors are the base's bytes", name,
	   (unsigned long long)same, (unsigned long long)n);
	tu_model_free(&o);
}

/* The same bytes under every instruction set, -j and --chunk. */
static void check_same(const struct fam *f, const char *name, const char *args)
{
	static const char *const how[][2] = {
		{"LINES_ISA=scalar", "-j1 --chunk 16K"}, {"LINES_ISA=avx2", "-j2 --chunk 16K"},
		{"LINES_ISA=avx512", "-j2 --chunk 64K"}, {"LINES_ISA=scalar", "-j2 --chunk 1M"}};
	char ref[4500], out[4500], a[512];
	int same = 1, runs = 0;
	snprintf(ref, sizeof(ref), "%s/%s-ref.st", f->dir, name);
	if (!ok(run(f, "", args, ref) == 0, "%s: lines merges", name))
		return;
	for (size_t h = 0; h < sizeof(how) / sizeof(how[0]); h++) {
		snprintf(out, sizeof(out), "%s/%s-%zu.st", f->dir, name, h);
		snprintf(a, sizeof(a), "%s %s", args, how[h][1]);
		if (run(f, how[h][0], a, out) != 0) {
			/* not a failure only when that instruction set is not here */
			same &= tu_run("%s '%s' merge -q -b '%s/base.safetensors' -o '%s' "
			               "'%s/ft1.safetensors' '%s/ft2.safetensors' 2>&1 | "
			               "grep -q 'no such kernels'",
			               how[h][0], tu_lines(), f->dir, out, f->dir, f->dir) == 0;
			continue;
		}
		runs++;
		same &= tu_run("cmp -s '%s' '%s'", ref, out) == 0;
	}
	ok(same && runs >= 2, "%s: the same bytes in %d runs of other instruction sets, -j, --chunk",
	   name, runs);
}

/* ---- the band families -------------------------------------------------------- */

/* A safetensors file of n tensors of 256 elements (F64, or F32 with f32). */
static int write_st(const char *path, const char *const *names, const int *f32, int n,
                    double (*val)(int t, int e))
{
	char hdr[2048];
	size_t len = 0, off = 0, dlen = 0;
	unsigned char *data = malloc((size_t)n * 256 * 8);
	len += (size_t)snprintf(hdr + len, sizeof(hdr) - len, "{");
	for (int t = 0; t < n; t++) {
		size_t sz = f32[t] ? 4 : 8;
		len += (size_t)snprintf(hdr + len, sizeof(hdr) - len,
		                        "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[256],"
		                        "\"data_offsets\":[%zu,%zu]}",
		                        t ? "," : "", names[t], f32[t] ? "F32" : "F64", off, off + 256 * sz);
		for (int e = 0; e < 256; e++) {
			double v = val(t, e);
			float g = (float)v;
			memcpy(data + dlen, f32[t] ? (void *)&g : (void *)&v, sz);
			dlen += sz;
		}
		off += 256 * sz;
	}
	len += (size_t)snprintf(hdr + len, sizeof(hdr) - len, "}");
	while (len % 8)
		hdr[len++] = ' ';
	unsigned char *file = malloc(8 + len + dlen);
	uint64_t hl = len;
	for (int i = 0; i < 8; i++)
		file[i] = (unsigned char)(hl >> (8 * i));
	memcpy(file + 8, hdr, len);
	memcpy(file + 8 + len, data, dlen);
	int rc = tu_write_file(path, file, 8 + len + dlen);
	free(data), free(file);
	return rc;
}

static int band_model; /* 0 base, 1 and 2 the fine-tuned */
static const int band_f32[3] = {0, 0, 1};

/* Task vectors: 70% in [1, 1 + 2^-23) (one float32 value), the rest near
 * 0.5 and 2, signs mixed; the F32 tensor has 0.5, 1, 1 + 2^-23 and 2. */
static double band_val(int t, int e)
{
	uint64_t h = mix64((uint64_t)(t * 1000 + e) * 3 + (uint64_t)band_model);
	double b = band_f32[t] ? 0.25 : 0.25 + 0.001 * (e % 7), m;
	if (band_model == 0)
		return b;
	if (band_f32[t])
		m = (double[]){0.5, 1.0, 1.0 + 0x1p-23, 2.0}[h % 4];
	else if (h % 100 < 70)
		m = 1.0 + (double)(h >> 20 & 1023) * 0x1p-33;
	else
		m = h % 100 < 85 ? 0.5 + (double)(h >> 20 & 1023) * 0x1p-40 : 2.0 + 0x1p-30 * (e % 5);
	return b + (h >> 40 & 1 ? m : -m);
}

static int make_band(const char *dir, int mixed)
{
	static const char *const names[] = {"model.layers.0.mlp.weight", "model.layers.1.mlp.weight",
	                                    "model.layers.0.attn.weight"};
	char p[4400];
	int rc = tu_run("mkdir -p '%s'", dir);
	for (band_model = 0; rc == 0 && band_model < 3; band_model++) {
		snprintf(p, sizeof(p), band_model ? "%s/ft%d.safetensors" : "%s/base.safetensors", dir,
		         band_model);
		rc = write_st(p, names, band_f32, mixed ? 3 : 2, band_val);
	}
	return rc;
}

/* ---- the runs ----------------------------------------------------------------------- */

static void gen_family(void)
{
	struct fam f = {0};
	snprintf(f.dir, sizeof(f.dir), "%s/f64", tu_tmpdir());
	if (!ok(tu_run("'%s' --arch llama --dtype f64 --layers 3 --hidden 32 --models 2 --seed 9 "
	               "--out '%s'",
	               tu_gen(), f.dir) == 0 &&
	            fam_load(&f),
	        "generate an F64 family"))
		return;
	const struct job jobs[] = {
		{"sum", "-w 0.75,-0.5 --lambda 0.9", M_SUM, {0.75, -0.5}, 0.9, 0, 0, 0, 0, 0},
		{"mean", "-m mean --lambda 1", M_MEAN, {1, 1}, 1, 0, 0, 0, 0, 0},
		{"ties", "-m ties --density 0.3 --lambda 0.8", M_TIES, {1, 1}, 0.8, 0.3, 0, 0, 0, 0},
		{"ties-w", "-m ties -w 0.5,1.5", M_TIES, {0.5, 1.5}, 1, 0.2, 0, 0, 0, 0},
		{"ties-tensor", "-m ties --trim tensor --density 0.4", M_TIES, {1, 1}, 1, 0.4, 1, 0, 0, 0},
		{"dare", "-m dare --density 0.6 --seed 5 --lambda 0.7", M_DARE, {1, 1}, 0.7, 0.6, 0, 0, 0, 5},
		{"dare-elect", "-m dare --dare-elect --density 0.5", M_DARE, {1, 1}, 1, 0.5, 0, 1, 0, 0},
		{"dare_ties-w", "-m dare_ties --density 0.5 -w 0.5,1.5 --seed 2", M_DARE, {0.5, 1.5}, 1,
		 0.5, 0, 1, 0, 2},
		{"sum-lines", "-w 1,2 --lines", M_SUM, {1, 2}, 1, 0, 0, 0, 1, 0},
		{"ties-lines", "-m ties --lines", M_TIES, {1, 1}, 1, 0.2, 0, 0, 1, 0},
		{"dare-lines", "-m dare --lines --density 0.5", M_DARE, {1, 1}, 1, 0.5, 0, 0, 1, 0},
	};
	for (size_t i = 0; i < sizeof(jobs) / sizeof(jobs[0]); i++)
		check(&f, &jobs[i]);
	check_lambda0(&f, "sum", "");
	check_lambda0(&f, "mean", "-m mean");
	check_lambda0(&f, "ties", "-m ties");
	check_lambda0(&f, "ties-tensor", "-m ties --trim tensor");
	check_lambda0(&f, "dare", "-m dare --density 0.5");
	check_lambda0(&f, "dare-elect", "-m dare --dare-elect");
	check_same(&f, "same-ties", "-m ties --density 0.3");
	check_same(&f, "same-ties-tensor", "-m ties --trim tensor");
	check_same(&f, "same-dare", "-m dare --dare-elect --lines");
	check_same(&f, "same-lines", "-w 1,2 --lines");
	fam_free(&f);
}

static void band(int mixed)
{
	struct fam f = {0};
	snprintf(f.dir, sizeof(f.dir), "%s/%s", tu_tmpdir(), mixed ? "mixed" : "band");
	if (!ok(make_band(f.dir, mixed) == 0 && fam_load(&f), "write the %s family",
	        mixed ? "mixed" : "band"))
		return;
	const struct job jobs[] = {
		{mixed ? "mixed-ties" : "band-ties", "-m ties --density 0.5", M_TIES, {1, 1}, 1, 0.5, 0,
		 0, 0, 0},
		{mixed ? "mixed-ties-tensor" : "band-ties-tensor", "-m ties --trim tensor --density 0.5",
		 M_TIES, {1, 1}, 1, 0.5, 1, 0, 0, 0},
		{mixed ? "mixed-ties-lines" : "band-ties-lines", "-m ties --density 0.6 --lines", M_TIES,
		 {1, 1}, 1, 0.6, 0, 0, 1, 0},
	};
	for (size_t i = 0; i < sizeof(jobs) / sizeof(jobs[0]); i++)
		check(&f, &jobs[i]);
	/* the test can fail: a float32 threshold would keep the whole band */
	double t = ties_thr(&f, &jobs[0], 0, f.b.n, 0);
	ok(t > 1.0 && t < 1.0 + 0x1p-23,
	   "%s: TIES's threshold %.17g lies between the float32 values 1 and 1 + 2^-23", f.dir, t);
	if (mixed) { /* a threshold that is an F32 value, shared with F64 ones */
		const struct job k = {"mixed-ties-f32", "-m ties --density 0.77", M_TIES, {1, 1}, 1, 0.77,
		                      0, 0, 0, 0};
		ok(ties_thr(&f, &k, 0, f.b.n, 0) == 1.0 && ties_thr(&f, &k, 0, f.b.n, 1) == 1.0,
		   "mixed: at density 0.77 TIES's thresholds are the F32 value 1");
		check(&f, &k);
	}
	check_same(&f, mixed ? "mixed-same" : "band-same", "-m ties --density 0.5");
	fam_free(&f);
}

int main(void)
{
	gen_family();
	band(0);
	band(1);
	tu_cleanup();
	return tap_done();
}
