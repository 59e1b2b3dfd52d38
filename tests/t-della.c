/*
 * t-della.c -- DELLA (della, della_linear) against a float64 reference
 * written here from the formula of lines-merge(1).
 *
 * For every merged tensor the test takes the task vectors, sorts each row
 * of each of them in full (qsort of (|tau|, index)), gives the entry at
 * position q the probability p = (d - e) + (q / (r - 1)) 2e, draws the
 * documented counter-based hash itself, rescales (by p, mergekit's L1 or
 * not at all), combines (sum, or the sign election with its normalized
 * mean) and compares every output element within one ULP; the kept counts
 * that lines reports equal the test's, and the kept fraction is within
 * five standard deviations of the expected sum of p; automatic alpha
 * equals the test's to 1e-9. Families: llama BF16, F16, F32 (one with
 * tensors longer than a job of whole rows) and clip F32 (a 4-D
 * convolution, whose rows along dim 1 are interleaved). Then: the same
 * bytes for every -j, --chunk, reader and instruction set, and -n's
 * memory bound holding the rows.
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

enum { R_P, R_L1, R_NONE };

struct scen {
	const char *what;
	int elect, no_normalize, rescale, lines;
	double w[NM], d[NM], e[NM];
	unsigned long long seed;
	double lambda;
	const char *extra; /* the options as given */
};

static const struct scen scens[] = {
    {"della defaults",
     1,
     0,
     R_P,
     0,
     {1, 1, 1},
     {0.2, 0.2, 0.2},
     {0.15, 0.15, 0.15},
     0,
     1,
     "-m della"},
    {"della weighted, per-model d and e",
     1,
     0,
     R_P,
     0,
     {0.5, 1.5, -0.7},
     {0.3, 0.5, 0.6},
     {0.1, 0.2, 0.05},
     7,
     1,
     "-m della -w 0.5,1.5,-0.7 --density 0.3,0.5,0.6 --epsilon 0.1,0.2,0.05 --seed 7"},
    {"della_linear --lines",
     0,
     0,
     R_P,
     1,
     {1, 1, 1},
     {0.4, 0.4, 0.4},
     {0.3, 0.3, 0.3},
     3,
     1,
     "-m della_linear --lines --density 0.4 --epsilon 0.3 --seed 3"},
    {"della --lines --rescale weighted",
     1,
     0,
     R_L1,
     1,
     {2, 0.5, 1},
     {0.5, 0.5, 0.5},
     {0.1, 0.1, 0.1},
     11,
     1,
     "-m della --lines --rescale -w 2,0.5,1 --density 0.5 --epsilon 0.1 --seed 11"},
    {"della_linear --no-rescale --lambda, density 1",
     0,
     0,
     R_NONE,
     0,
     {1, 1, 1},
     {1, 0.4, 0.5},
     {0.15, 0.15, 0.15},
     5,
     0.7,
     "-m della_linear --no-rescale --lambda 0.7 --density 1,0.4,0.5 --seed 5"},
    {"della --no-normalize -w",
     1,
     1,
     R_P,
     0,
     {1, 2, 3},
     {0.2, 0.2, 0.2},
     {0.15, 0.15, 0.15},
     0,
     1,
     "-m della --no-normalize -w 1,2,3"},
};

struct fam {
	const char *arch, *dtype, *size;
	char dir[4200];
	struct tu_model base, ft[NM];
};

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

struct ent {
	uint32_t mag, j;
};

static int cmp_ent(const void *a, const void *b)
{
	const struct ent *x = a, *y = b;
	if (x->mag != y->mag)
		return x->mag < y->mag ? -1 : 1;
	return x->j < y->j ? -1 : x->j > y->j;
}

static uint32_t magf(float v)
{
	uint32_t u;
	memcpy(&u, &v, 4);
	return u & 0x7fffffffu;
}

/* What the reference found over the whole model. */
struct tally {
	double kept[NM], p[NM], var[NM]; /* kept, sum of p, sum of p (1 - p) */
	double s1, m1;                   /* alpha's L1 sums */
	size_t elements, bad;
	double worst;
};

/* Task vector i of tensor bt after the drops and the rescale: tv (n). */
static void drop(const struct scen *s, const struct tu_tensor *bt, const struct tu_tensor *xt,
                 unsigned i, const double *tau, double *tv, struct tally *ty)
{
	uint64_t n = bt->nelem, sl = bt->rank < 2 ? n : n / bt->shape[0];
	uint64_t r = bt->rank < 2 ? n : bt->shape[1], c = sl / r;
	double d = s->d[i], e = s->e[i], A = 0, K = 0;
	uint64_t key = mix64(s->seed ^ mix64(((uint64_t)i + 1) * 0x100000001b3ull ^
	                                     mix64(XXH3_64bits(bt->name, strlen(bt->name)))));
	struct ent *row = malloc(r * sizeof(*row));
	(void)xt;
	for (uint64_t a = 0; a < n; a += sl)
		for (uint64_t k = 0; k < c; k++) {
			for (uint64_t j = 0; j < r; j++)
				row[j].mag = magf((float)tau[a + j * c + k]),
				row[j].j = (uint32_t)j;
			qsort(row, r, sizeof(*row), cmp_ent);
			for (uint64_t q = 0; q < r; q++) {
				uint64_t el = a + row[q].j * c + k;
				double p =
				    r > 1 ? (d - e) + ((double)q / (double)(r - 1)) * (2 * e) : d;
				int kept = d >= 1 ||
				           (double)(mix64(key ^ el * 0xd1b54a32d192ed03ull) >> 11) *
				                   0x1p-53 <
				               p;
				if (d >= 1)
					p = 1;
				A += fabs(tau[el]);
				K += kept ? fabs(tau[el]) : 0;
				ty->kept[i] += kept, ty->p[i] += p, ty->var[i] += p * (1 - p);
				tv[el] = !kept ? 0.0 : s->rescale == R_P ? tau[el] / p : tau[el];
			}
		}
	free(row);
	if (s->rescale == R_L1 && d < 1 && A >= 1e-7 && K >= 1e-7)
		for (uint64_t el = 0; el < n; el++)
			tv[el] /= K / A;
}

/* Element el's merged task vector from the dropped tv[i]. */
static double combine(const struct scen *s, double *const *tv, uint64_t el)
{
	double wt[NM], sum = 0, m = 0, c = 0;
	for (unsigned i = 0; i < NM; i++)
		wt[i] = s->w[i] * tv[i][el], sum += wt[i];
	if (!s->elect)
		return sum;
	for (unsigned i = 0; i < NM; i++)
		if (sum >= 0 ? wt[i] > 0 : wt[i] < 0)
			m += wt[i], c += s->w[i];
	return s->no_normalize ? m : m / (c == 0 ? 1 : c);
}

/* The reference of one tensor; with out, compare with it (lambda from the
 * manifest), else only the tallies (alpha's sums). */
static void ref_tensor(const struct fam *f, const struct scen *s, size_t ti,
                       const struct tu_tensor *ot, double lam, struct tally *ty)
{
	const struct tu_tensor *bt = &f->base.t[ti];
	uint64_t n = bt->nelem;
	double *tau[NM], *tv[NM];
	for (unsigned i = 0; i < NM; i++) {
		const struct tu_tensor *xt = tu_model_find(&f->ft[i], bt->name);
		tau[i] = malloc(n * sizeof(double));
		tv[i] = malloc(n * sizeof(double));
		for (uint64_t el = 0; el < n; el++)
			tau[i][el] = (double)(tu_elem(xt, el) - tu_elem(bt, el));
		drop(s, bt, xt, i, tau[i], tv[i], ty);
	}
	for (uint64_t el = 0; el < n; el++) {
		double m = combine(s, tv, el), raw = 0, b = tu_elem(bt, el);
		for (unsigned i = 0; i < NM; i++)
			raw += tau[i][el];
		if (isfinite(m) && isfinite(raw))
			ty->s1 += fabs(raw), ty->m1 += fabs(m);
		if (!ot)
			continue;
		double ref = fma(lam, m, b);
		ty->bad += !tu_within(ot->dtype, ref, fabs(b) + fabs(lam * m), tu_elem64(ot, el),
		                      1e-12, &ty->worst);
		ty->elements++;
	}
	for (unsigned i = 0; i < NM; i++)
		free(tau[i]), free(tv[i]);
}

static double tensor_lambda(json_t *man, const char *name)
{
	json_t *ts = json_object_get(man, "tensors"), *e;
	size_t k;
	json_array_foreach(
	    ts, k, e) if (!strcmp(json_string_value(json_object_get(e, "name")),
	                          name)) return json_real_value(json_object_get(e, "lambda"));
	return NAN;
}

static void run_scen(struct fam *f, const struct scen *s, int idx)
{
	char out[4400], js[4400];
	snprintf(out, sizeof(out), "%s/o%d.safetensors", f->dir, idx);
	snprintf(js, sizeof(js), "%s/o%d.json", f->dir, idx);
	if (!ok(tu_run(
	            "'%s' merge -q -b '%s/base.safetensors' %s --json -o '%s' '%s/ft1.safetensors' "
	            "'%s/ft2.safetensors' '%s/ft3.safetensors' > '%s'",
	            tu_lines(), f->dir, s->extra, out, f->dir, f->dir, f->dir, js) == 0,
	        "%s/%s %s: merged", f->arch, f->dtype, s->what)) {
		diag("%s", tu_stderr);
		return;
	}
	char mp[4500];
	snprintf(mp, sizeof(mp), "%s.manifest.json", out);
	json_t *man = json_load_file(mp, 0, NULL), *sum = json_load_file(js, 0, NULL);
	struct tu_model om;
	if (!ok(man && sum && tu_model_load(&om, out) == 0, "%s/%s %s: output, manifest, summary",
	        f->arch, f->dtype, s->what))
		return;
	struct tally ty;
	memset(&ty, 0, sizeof(ty));
	for (size_t ti = 0; ti < f->base.n; ti++) {
		const struct tu_tensor *bt = &f->base.t[ti];
		if (!tu_is_float(bt))
			continue;
		ref_tensor(f, s, ti, tu_model_find(&om, bt->name), tensor_lambda(man, bt->name),
		           &ty);
	}
	ok(ty.bad == 0 && ty.elements > 0,
	   "%s/%s %s: every element (%zu) within 1 ULP of the float64 reference (%zu off, worst "
	   "%.3g ULP)",
	   f->arch, f->dtype, s->what, ty.elements, ty.bad, ty.worst);
	json_t *dj = json_object_get(sum, s->elect ? "della" : "della_linear"),
	       *kj = json_object_get(dj, "kept");
	int same = json_array_size(kj) == NM, within = 1;
	double kept = 0, p = 0, var = 0;
	for (unsigned i = 0; i < NM; i++) {
		same &= same && (double)json_integer_value(json_array_get(kj, i)) == ty.kept[i];
		if (ty.var[i] > 0)
			within &= fabs(ty.kept[i] - ty.p[i]) <= 5 * sqrt(ty.var[i]);
		kept += ty.kept[i], p += ty.p[i], var += ty.var[i];
	}
	ok(same, "%s/%s %s: the kept counts lines reports are the reference's", f->arch, f->dtype,
	   s->what);
	ok(within && (var == 0 || fabs(kept - p) <= 5 * sqrt(var)),
	   "%s/%s %s: kept %.0f, expected %.1f +- %.1f: within 5 sigma (each model too)", f->arch,
	   f->dtype, s->what, kept, p, sqrt(var));
	if (s->lines) {
		double a = json_real_value(json_object_get(json_object_get(sum, "lines"), "alpha"));
		double ra = ty.s1 / (NM * ty.m1);
		ok(fabs(a - ra) <= 1e-9 * fabs(ra), "%s/%s %s: alpha %.12g = the reference's %.12g",
		   f->arch, f->dtype, s->what, a, ra);
	}
	json_decref(man);
	json_decref(sum);
	tu_model_free(&om);
}

/* The same bytes for every -j, --chunk, reader and instruction set. */
static void same_everywhere(const struct fam *f, const char *args)
{
	static const char *const variants[] = {
	    "-j 1 --chunk 64K --io mmap",  "-j 2 --chunk 1M --io mmap",
	    "-j 3 --chunk 16K --io uring", "-j 2 --chunk 4M --io uring",
	    "LINES_ISA=scalar -j 2",       "LINES_ISA=avx2 -j 2",
	    "LINES_ISA=avx512 -j 2",
	};
	char ref[4400];
	int same = 1, runs = 0, skipped = 0;
	snprintf(ref, sizeof(ref), "%s/same-ref.safetensors", f->dir);
	for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]); v++) {
		char out[4400], env[64] = "";
		const char *opt = variants[v];
		if (!strncmp(opt, "LINES_ISA=", 10)) {
			snprintf(env, sizeof(env), "%.*s", (int)(strchr(opt, ' ') - opt), opt);
			opt = strchr(opt, ' ') + 1;
		}
		snprintf(out, sizeof(out), "%s/same%zu.safetensors", f->dir, v);
		int rc = tu_run("%s '%s' merge -q -b '%s/base.safetensors' %s %s -o '%s' "
		                "'%s/ft1.safetensors' '%s/ft2.safetensors' '%s/ft3.safetensors'",
		                env, tu_lines(), f->dir, args, opt, out, f->dir, f->dir, f->dir);
		if (rc != 0 &&
		    (strstr(tu_stderr, "io_uring") || strstr(tu_stderr, "LINES_ISA") ||
		     strstr(tu_stderr, "cannot run") || strstr(tu_stderr, "instruction"))) {
			skipped++;
			continue;
		}
		runs++;
		if (v == 0) {
			same &= rc == 0 && rename(out, ref) == 0;
			continue;
		}
		same &= rc == 0 && tu_run("cmp -s '%s' '%s'", ref, out) == 0;
	}
	ok(same && runs >= 4,
	   "%s/%s %s: identical bytes for -j, --chunk, --io and LINES_ISA (%d runs, "
	   "%d not possible here)",
	   f->arch, f->dtype, args, runs, skipped);
}

/* -n: the rows are in the memory bound. */
static void memory_bound(const struct fam *f)
{
	char js[4400];
	uint64_t slab = 0;
	snprintf(js, sizeof(js), "%s/plan.json", f->dir);
	for (size_t ti = 0; ti < f->base.n; ti++) {
		const struct tu_tensor *t = &f->base.t[ti];
		uint64_t s = t->rank < 2 ? t->nelem : t->nelem / t->shape[0];
		if (tu_is_float(t) && s > slab)
			slab = s;
	}
	int rc =
	    tu_run("'%s' merge -n --json -j 3 -b '%s/base.safetensors' -m della --lines --rescale "
	           "'%s/ft1.safetensors' '%s/ft2.safetensors' '%s/ft3.safetensors' > '%s'",
	           tu_lines(), f->dir, f->dir, f->dir, f->dir, js);
	json_t *p = json_load_file(js, 0, NULL);
	uint64_t scratch = (uint64_t)json_integer_value(json_object_get(p, "memory_scratch"));
	uint64_t bound = (uint64_t)json_integer_value(json_object_get(p, "memory_bound"));
	uint64_t jobs = (uint64_t)json_integer_value(json_object_get(p, "jobs"));
	uint64_t ls = (uint64_t)json_integer_value(
	    json_object_get(json_object_get(p, "della"), "longest_slab"));
	json_t *ps = json_object_get(p, "passes");
	ok(rc == 0 && ls == slab && jobs == 3 && scratch >= jobs * slab * (8 * NM + 44) &&
	       bound > scratch && json_array_size(ps) == 3,
	   "%s/%s: -n shows 3 passes and the rows (longest slab %llu = %llu) in the bound: "
	   "scratch %llu >= 3 x %llu x (8 N + 44), bound %llu",
	   f->arch, f->dtype, (unsigned long long)ls, (unsigned long long)slab,
	   (unsigned long long)scratch, (unsigned long long)slab, (unsigned long long)bound);
	json_decref(p);
}

static int load(struct fam *f, unsigned seed)
{
	char p[4400];
	snprintf(f->dir, sizeof(f->dir), "%s/%s-%s%s", tu_tmpdir(), f->arch, f->dtype,
	         f->size[0] ? "-big" : "");
	if (!ok(tu_run("'%s' --arch %s --dtype %s --layers 3 %s --models 3 --seed %u --out '%s'",
	               tu_gen(), f->arch, f->dtype, f->size[0] ? f->size : "--hidden 32", seed,
	               f->dir) == 0,
	        "generate %s/%s %s", f->arch, f->dtype, f->size))
		return 0;
	snprintf(p, sizeof(p), "%s/base.safetensors", f->dir);
	int loaded = tu_model_load(&f->base, p) == 0;
	for (int i = 0; i < NM; i++) {
		snprintf(p, sizeof(p), "%s/ft%d.safetensors", f->dir, i + 1);
		loaded &= tu_model_load(&f->ft[i], p) == 0;
	}
	return ok(loaded, "read the %s/%s family", f->arch, f->dtype);
}

int main(void)
{
	struct fam fams[] = {
	    {"llama", "bf16", "", "", {0}, {{0}}},
	    {"llama", "f16", "", "", {0}, {{0}}},
	    {"llama", "f32", "", "", {0}, {{0}}},
	    {"clip", "f32", "", "", {0}, {{0}}},
	    /* rows of 256 in tensors of up to 2^19 elements: several jobs */
	    {"llama", "bf16", "--hidden 256 --vocab 2048", "", {0}, {{0}}},
	};
	for (size_t k = 0; k < sizeof(fams) / sizeof(fams[0]); k++) {
		struct fam *f = &fams[k];
		if (load(f, 40 + (unsigned)k)) {
			size_t nsc = sizeof(scens) / sizeof(scens[0]);
			for (size_t s = 0; s < nsc; s++)
				if (!f->size[0] || s == 1 || s == 3)
					run_scen(f, &scens[s], (int)s);
			if (k == 3 || k == 4)
				same_everywhere(f,
				                "-m della --lines --rescale -w 2,0.5,1 --seed 9");
			if (k == 4)
				same_everywhere(f, "-m della_linear --density 0.3 --epsilon 0.2");
			if (k == 4)
				memory_bound(f);
		}
		tu_model_free(&f->base);
		for (int i = 0; i < NM; i++)
			tu_model_free(&f->ft[i]);
	}
	tu_cleanup();
	return tap_done();
}
