/*
 * t-breadcrumbs.c -- -m breadcrumbs and -m breadcrumbs_ties against a
 * float64 reference written here from the formula (mergekit's
 * magnitude_outliers, lines' ties rule):
 *     tau_i  = theta_i - b                      (float32, as lines defines it)
 *     per tensor and task, |tau_i| sorted (a full sort here): n elements,
 *     target = floor(d_i n), top = floor(g_i n), bot = n - target - top
 *     (negative: top += bot, bot = 0); lo = the value of rank bot (0 when
 *     bot = 0), hi = that of rank n - top - 1 (none when top = 0: lines
 *     drops no top value there); kept: lo <= |tau_i| <= hi (all ties);
 *     nothing when target = 0; everything when d_i >= 1
 *     v_i    = w_i tau_i (kept), 0 (dropped)
 *     breadcrumbs       m = sum v_i, / sum w_i with --normalize
 *     breadcrumbs_ties  P, N = the sums of the positive and negative v_i,
 *                       s = P + N >= 0 ? +1 : -1; m = P or N (sign s), / the
 *                       sum of their w_i (1 when 0) unless --no-normalize
 *     ref    = b + lambda m
 * Every element within one ULP of the output dtype (BF16, F16, F32
 * families), each tensor's cuts in the manifest equal to the sort's,
 * automatic alpha against ||sum tau|| / (N ||m||), and the same bytes
 * for -j, --chunk, --io and LINES_ISA.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "tutil.h"

#define NM 3
#define MAXT 64

struct fam {
	char dir[4200];
	struct tu_model b, x[NM];
	long L;
};

struct scen {
	const char *name, *method, *args;
	int ties, normalize;
	double w[NM], d[NM], g[NM];
	double lambda, alpha, beta; /* beta 0: lambda for every tensor; alpha < 0: automatic */
};

/* The cuts of a tensor: per task lo (or -1: keep none) and hi (or -1: no top cut). */
struct cuts {
	float lo[NM], hi[NM];
	int none[NM], notop[NM], all[NM];
};

static float tau(const struct tu_tensor *x, const struct tu_tensor *b, uint64_t e)
{
	return tu_elem(x, e) - tu_elem(b, e); /* a float32 subtraction */
}

static int cmpf(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x < y ? -1 : x > y;
}

static void find_cuts(const struct fam *f, size_t ti, const struct scen *s, struct cuts *c)
{
	const struct tu_tensor *b = &f->b.t[ti];
	uint64_t n = b->nelem;
	float *a = malloc(n * sizeof(float));
	for (int m = 0; m < NM; m++) {
		const struct tu_tensor *x = tu_model_find(&f->x[m], b->name);
		c->none[m] = c->notop[m] = c->all[m] = 0;
		c->lo[m] = 0, c->hi[m] = INFINITY;
		if (s->d[m] >= 1) {
			c->all[m] = 1;
			continue;
		}
		for (uint64_t e = 0; e < n; e++)
			a[e] = fabsf(tau(x, b, e));
		qsort(a, n, sizeof(float), cmpf);
		uint64_t target = (uint64_t)(s->d[m] * (double)n), top = (uint64_t)(s->g[m] * (double)n);
		int64_t bot = (int64_t)n - (int64_t)target - (int64_t)top;
		if (bot < 0)
			top = (uint64_t)((int64_t)top + bot), bot = 0;
		if (target == 0) {
			c->none[m] = 1;
			continue;
		}
		c->lo[m] = bot ? a[bot] : 0.0f;
		if (top)
			c->hi[m] = a[n - top - 1];
		else
			c->notop[m] = 1;
	}
	free(a);
}

static int kept(const struct cuts *c, int m, float t)
{
	if (c->all[m])
		return 1;
	if (c->none[m])
		return 0;
	return fabsf(t) >= c->lo[m] && (c->notop[m] || fabsf(t) <= c->hi[m]);
}

/* m of one element, and mag: the magnitudes summed. */
static double merged(const struct scen *s, const struct cuts *c, const float *t, double *mag)
{
	double v[NM], sum = 0, wsum = 0;
	*mag = 0;
	for (int m = 0; m < NM; m++) {
		v[m] = kept(c, m, t[m]) ? s->w[m] * (double)t[m] : 0.0;
		sum += v[m], wsum += s->w[m];
		*mag += fabs(v[m]);
	}
	if (!s->ties)
		return s->normalize ? sum / (fabs(wsum) < 1e-8 ? 1.0 : wsum) : sum;
	/* the election as lines' TIES sums: the positive, then the negative */
	double pp = 0, nn = 0, cp = 0, cn = 0;
	for (int m = 0; m < NM; m++) {
		if (v[m] > 0)
			pp += v[m], cp += s->w[m];
		if (v[m] < 0)
			nn += v[m], cn += s->w[m];
	}
	double S = pp + nn;
	if (isnan(sum) || isnan(S))
		return NAN;
	double num = S >= 0 ? pp : nn, den = S >= 0 ? cp : cn;
	return s->normalize ? num / (den != 0 ? den : 1.0) : num;
}

/* The manifest's cuts of every tensor: name lo1 lo2 lo3 hi1 hi2 hi3 (-1 for null). */
static int manifest_cuts(const char *man, const char *name, float *lo, float *hi, int *lonull,
                         int *hinull)
{
	char q[5200];
	double v[2 * NM];
	int got = 0;
	snprintf(q, sizeof(q), "jq -r '.tensors[] | select(.name == \"%s\") | .breadcrumbs | "
	                       "(.lo + .hi) | map(if . == null then \"null\" else tostring end) | "
	                       "join(\" \")' '%s'",
	         name, man);
	FILE *pf = popen(q, "r");
	char line[1024] = "";
	if (pf && fgets(line, sizeof(line), pf)) {
		char *p = line;
		for (int k = 0; k < 2 * NM; k++) {
			char *end;
			while (*p == ' ')
				p++;
			if (!strncmp(p, "null", 4)) {
				v[k] = NAN, p += 4;
			} else {
				v[k] = strtod(p, &end);
				if (end == p)
					break;
				p = end;
			}
			got++;
		}
	}
	if (pf)
		pclose(pf);
	for (int m = 0; m < NM; m++) {
		lonull[m] = isnan(v[m]), hinull[m] = isnan(v[NM + m]);
		lo[m] = (float)v[m], hi[m] = (float)v[NM + m];
	}
	return got == 2 * NM;
}

/* alpha: ||sum tau|| / (N ||m||), L1 */
static double bc_alpha(const struct fam *f, const struct scen *s)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < f->b.n; i++) {
		const struct tu_tensor *b = &f->b.t[i], *x[NM];
		struct cuts c;
		if (!tu_is_float(b))
			continue;
		find_cuts(f, i, s, &c);
		for (int m = 0; m < NM; m++)
			x[m] = tu_model_find(&f->x[m], b->name);
		for (uint64_t e = 0; e < b->nelem; e++) {
			float t[NM];
			double sum = 0, mag;
			for (int m = 0; m < NM; m++)
				t[m] = tau(x[m], b, e), sum += t[m];
			double mm = merged(s, &c, t, &mag);
			if (isfinite(sum) && isfinite(mm))
				num += fabs(sum), den += fabs(mm);
		}
	}
	return num / (NM * den);
}

static void compare(const struct fam *f, const struct scen *s, const struct tu_model *o,
                    const char *man, double alpha)
{
	uint64_t n = 0, bad = 0, badc = 0, nc = 0;
	double worst = 0;
	char first[512] = "", firstc[512] = "";
	for (size_t i = 0; i < f->b.n; i++) {
		const struct tu_tensor *b = &f->b.t[i], *ot = tu_model_find(o, b->name), *x[NM];
		struct cuts c;
		if (!tu_is_float(b))
			continue;
		find_cuts(f, i, s, &c);
		float lo[NM], hi[NM];
		int lon[NM], hin[NM], okc = manifest_cuts(man, b->name, lo, hi, lon, hin);
		for (int m = 0; m < NM; m++) {
			int same = okc && lon[m] == c.none[m] && hin[m] == (c.notop[m] || c.all[m]) &&
			           (c.none[m] || lo[m] == c.lo[m]) &&
			           (c.notop[m] || c.all[m] || hi[m] == c.hi[m]);
			if (!same && !badc++)
				snprintf(firstc, sizeof(firstc), "; %s task %d: lo %g hi %g, want %g %g%s%s",
				         b->name, m + 1, lo[m], hi[m], c.lo[m], c.hi[m],
				         c.none[m] ? " (none kept)" : "", c.notop[m] ? " (no top cut)" : "");
			nc++;
		}
		long blk = tu_block_of(b->name);
		double lam = s->beta == 0 ? s->lambda
		                          : alpha + s->beta * (blk < 0 ? 0 : (double)blk / (double)(f->L - 1));
		for (int m = 0; m < NM; m++)
			x[m] = tu_model_find(&f->x[m], b->name);
		for (uint64_t e = 0; ot && e < b->nelem; e++, n++) {
			float t[NM];
			double mag;
			for (int m = 0; m < NM; m++)
				t[m] = tau(x[m], b, e);
			double mm = merged(s, &c, t, &mag);
			double bv = tu_elem64(b, e), ref = bv + lam * mm, got = tu_elem64(ot, e);
			if (!tu_within(ot->dtype, ref, fabs(bv) + fabs(lam) * mag, got, 0x1p-48, &worst) &&
			    !bad++)
				snprintf(first, sizeof(first), "; %s[%llu]: got %.9g, want %.17g", b->name,
				         (unsigned long long)e, got, ref);
		}
		bad += !ot;
	}
	ok(bad == 0 && n > 0, "%s: %llu elements within 1 ULP of the float64 reference (worst %.2f)%s",
	   s->name, (unsigned long long)n, worst, first);
	ok(badc == 0 && nc > 0, "%s: the %llu cuts (tensor x task) in the manifest are the sort's%s",
	   s->name, (unsigned long long)nc, firstc);
}

static void run(const struct fam *f, const struct scen *s, int k, const char *dt)
{
	char out[4400], man[4500], js[4500];
	struct tu_model o;
	snprintf(out, sizeof(out), "%s/o%d.st", f->dir, k);
	snprintf(man, sizeof(man), "%s.manifest.json", out);
	snprintf(js, sizeof(js), "%s/o%d.json", f->dir, k);
	int rc = tu_run("'%s' merge -q -m %s -b '%s/base.safetensors' %s --json -o '%s' "
	                "'%s/ft1.safetensors' '%s/ft2.safetensors' '%s/ft3.safetensors' >'%s'",
	                tu_lines(), s->method, f->dir, s->args, out, f->dir, f->dir, f->dir, js);
	if (!ok(rc == 0 && tu_model_load(&o, out) == 0, "%s %s: lines exits 0", dt, s->name)) {
		diag("%s", tu_stderr);
		return;
	}
	double alpha = s->alpha;
	if (s->alpha < 0) {
		double want = bc_alpha(f, s), got = NAN;
		char q[4600];
		snprintf(q, sizeof(q), "jq -e '.lines.alpha' '%s'", js);
		FILE *pf = popen(q, "r");
		if (pf && fscanf(pf, "%lf", &got) != 1)
			got = NAN;
		if (pf)
			pclose(pf);
		ok(fabs(got - want) <= 1e-9 * fabs(want), "%s %s: alpha %.17g = ||sum tau|| / (N ||m||) = %.17g",
		   dt, s->name, got, want);
		alpha = got;
	}
	char name[256];
	snprintf(name, sizeof(name), "%s %s", dt, s->name);
	struct scen s2 = *s;
	s2.name = name;
	compare(f, &s2, &o, man, alpha);
	tu_model_free(&o);
}

static int load(struct fam *f, const char *dtype, int hidden, const char *sub)
{
	char p[4400];
	snprintf(f->dir, sizeof(f->dir), "%s/%s", tu_tmpdir(), sub);
	if (tu_run("'%s' --arch llama --dtype %s --layers 3 --hidden %d --models 3 --seed 11 "
	           "--out '%s'",
	           tu_gen(), dtype, hidden, f->dir) != 0)
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

static void free_fam(struct fam *f)
{
	tu_model_free(&f->b);
	for (int m = 0; m < NM; m++)
		tu_model_free(&f->x[m]);
}

/*
 * A family whose counts fill more than half of a histogram's 65536 bins in
 * one job (a job of the default --chunk holds 2^17 float32 elements), so
 * that a job hands its counts over whole, not as pairs (bin, count):
 *   layers.0  512 x 512, base 0, models random finite bits, half of them
 *             with the low 16 bits 0 (the bins' smallest values): the
 *             select pass's counts;
 *   layers.1  512 x 256, base 0, models 1 + random low 16 bits: every
 *             magnitude in one bin, both cuts open, and the threshold
 *             pass's counts of the low bits fill that histogram.
 * Returns the distinct bins of task 1's first 2^17 magnitudes in layers.0
 * and the distinct low 16 bits of those in layers.1, in *d0 and *d1.
 */
static uint32_t wide_rng = 12345;
static uint32_t wide_rand(void)
{
	wide_rng ^= wide_rng << 13;
	wide_rng ^= wide_rng >> 17;
	wide_rng ^= wide_rng << 5;
	return wide_rng;
}
static int wide_family(struct fam *f, unsigned *d0, unsigned *d1)
{
	enum { N0 = 512 * 512, N1 = 512 * 256, JOB = 1 << 17 };
	static float v[N0 + N1];
	static unsigned char seen[65536];
	char head[512], p[4400];
	int good = 1;
	snprintf(f->dir, sizeof(f->dir), "%s/wide", tu_tmpdir());
	if (tu_run("mkdir -p '%s'", f->dir) != 0)
		return 0;
	int hl = snprintf(head, sizeof(head),
	                  "{\"model.layers.0.mlp.down_proj.weight\":{\"dtype\":\"F32\",\"shape\":"
	                  "[512,512],\"data_offsets\":[0,%d]},"
	                  "\"model.layers.1.mlp.down_proj.weight\":{\"dtype\":\"F32\",\"shape\":"
	                  "[512,256],\"data_offsets\":[%d,%d]}}",
	                  4 * N0, 4 * N0, 4 * (N0 + N1));
	while (hl % 8)
		head[hl++] = ' ';
	for (int m = 0; m <= NM; m++) {
		static unsigned char buf[8 + 512 + 4 * (N0 + N1)];
		uint64_t h64 = (uint64_t)hl;
		for (size_t e = 0; e < N0; e++) {
			uint32_t u = wide_rand(), ex = 1 + wide_rand() % 254;
			u = (u & 0x807fffffu) | ex << 23;
			if (wide_rand() & 1)
				u &= 0xffff0000u;
			memcpy(&v[e], &u, 4);
		}
		for (size_t e = 0; e < N1; e++) {
			uint32_t u = 0x3f800000u | (wide_rand() & 0xffffu);
			memcpy(&v[N0 + e], &u, 4);
		}
		if (m == 0)
			memset(v, 0, sizeof(v));
		memcpy(buf, &h64, 8);
		memcpy(buf + 8, head, (size_t)hl);
		memcpy(buf + 8 + hl, v, sizeof(v));
		snprintf(p, sizeof(p), "%s/%s.safetensors", f->dir, m ? "ft" : "base");
		if (m)
			snprintf(p, sizeof(p), "%s/ft%d.safetensors", f->dir, m);
		good &= tu_write_file(p, buf, 8 + (size_t)hl + sizeof(v)) == 0;
	}
	snprintf(p, sizeof(p), "%s/base.safetensors", f->dir);
	good &= tu_model_load(&f->b, p) == 0;
	for (int m = 0; m < NM; m++) {
		snprintf(p, sizeof(p), "%s/ft%d.safetensors", f->dir, m + 1);
		good &= tu_model_load(&f->x[m], p) == 0;
	}
	f->L = 2;
	*d0 = *d1 = 0;
	for (int k = 0; good && k < 2; k++) {
		const struct tu_tensor *b = &f->b.t[0], *x;
		const char *name = k ? "model.layers.1.mlp.down_proj.weight"
		                     : "model.layers.0.mlp.down_proj.weight";
		b = tu_model_find(&f->b, name);
		x = tu_model_find(&f->x[0], name);
		memset(seen, 0, sizeof(seen));
		for (uint64_t e = 0; b && x && e < JOB; e++) {
			float t = tau(x, b, e);
			uint32_t u;
			memcpy(&u, &t, 4);
			u &= 0x7fffffffu;
			unsigned key = k ? (u & 0xffffu) : (u >> 16) << 1 | ((u & 0xffffu) == 0);
			*(k ? d1 : d0) += !seen[key];
			seen[key] = 1;
		}
	}
	return good;
}

/* The threshold pass of a run: "1" when it ran (skipped false). */
static int threshold_ran(const char *js)
{
	return tu_run("jq -e '.passes[] | select(.name == \"threshold\") | .skipped == false' "
	              "'%s' >/dev/null", js) == 0;
}

/* The same bytes for every -j, --chunk, --io and instruction set. */
static void same_bytes(const struct fam *f)
{
	static const char *const runs[] = {
		"LINES_ISA=scalar '%s' merge -q -j 1 --io mmap",
		"'%s' merge -q -j 2 --chunk 16K --io mmap",
		"LINES_ISA=scalar '%s' merge -q -j 2 --chunk 16K --io uring",
		"LINES_ISA=avx2 '%s' merge -q -j 1 --chunk 16K --io uring",
		"LINES_ISA=avx512 '%s' merge -q -j 2 --chunk 32K",
	};
	static const char *const meth[] = {
		"-m breadcrumbs_ties -w 1,2,0.5 --density 0.6,0.8,0.7 --bc-gamma 0.02 --lines --beta 0.5",
		"-m breadcrumbs --density 0.7 --bc-gamma 0.01,0.05,0.1 --normalize --lambda 0.8",
	};
	for (int q = 0; q < 2; q++) {
		int same = 1, ran = 0, th = 0;
		char ref[4400] = "";
		for (size_t r = 0; r < sizeof(runs) / sizeof(runs[0]); r++) {
			char cmd[512], out[4400];
			if (strstr(runs[r], "avx512") && tu_run("LINES_ISA=avx512 '%s' --version >/dev/null",
			                                        tu_lines()) != 0)
				continue; /* not this machine */
			if (strstr(runs[r], "avx2") && tu_run("LINES_ISA=avx2 '%s' --version >/dev/null",
			                                      tu_lines()) != 0)
				continue;
			if (strstr(runs[r], "uring") && tu_run("'%s' merge --io uring -n -b '%s/base.safetensors' "
			                                       "'%s/ft1.safetensors' >/dev/null 2>&1",
			                                       tu_lines(), f->dir, f->dir) != 0)
				continue;
			snprintf(cmd, sizeof(cmd), runs[r], tu_lines());
			snprintf(out, sizeof(out), "%s/det%d-%zu.st", f->dir, q, r);
			if (tu_run("%s %s -b '%s/base.safetensors' --json -o '%s' '%s/ft1.safetensors' "
			           "'%s/ft2.safetensors' '%s/ft3.safetensors' >'%s.json'",
			           cmd, meth[q], f->dir, out, f->dir, f->dir, f->dir, out) != 0) {
				diag("%s", tu_stderr);
				same = 0;
				continue;
			}
			char js[4500];
			snprintf(js, sizeof(js), "%s.json", out);
			th += threshold_ran(js);
			ran++;
			if (!*ref)
				snprintf(ref, sizeof(ref), "%s", out);
			else
				same &= tu_run("cmp -s '%s' '%s'", ref, out) == 0;
		}
		ok(same && ran >= 2, "%s: the same bytes for %d runs over -j, --chunk, --io, LINES_ISA",
		   meth[q], ran);
		ok(th == ran, "%s: the threshold pass ran (F32 cuts inside bins)", meth[q]);
	}
}

int main(void)
{
	static const struct scen sc[] = {
		{"breadcrumbs d0.7 g0.05", "breadcrumbs", "--density 0.7 --bc-gamma 0.05", 0, 0,
		 {1, 1, 1}, {0.7, 0.7, 0.7}, {0.05, 0.05, 0.05}, 1, 0, 0},
		{"breadcrumbs weighted normalized, lists, --lambda", "breadcrumbs",
		 "-w 1,2,0.5 --normalize --density 0.6,0.8,0.9 --bc-gamma 0.02,0.1,0.05 --lambda 0.7", 0, 1,
		 {1, 2, 0.5}, {0.6, 0.8, 0.9}, {0.02, 0.1, 0.05}, 0.7, 0, 0},
		{"breadcrumbs defaults (density 1: the sum)", "breadcrumbs", "", 0, 0,
		 {1, 1, 1}, {1, 1, 1}, {0.01, 0.01, 0.01}, 1, 0, 0},
		{"breadcrumbs_ties --lines auto", "breadcrumbs_ties", "--density 0.7 --bc-gamma 0.05 --lines --beta 0.5",
		 1, 1, {1, 1, 1}, {0.7, 0.7, 0.7}, {0.05, 0.05, 0.05}, 0, -1, 0.5},
		{"breadcrumbs_ties weighted --no-normalize --lines 0.3 0.6", "breadcrumbs_ties",
		 "-w 1,2,-0.5 --no-normalize --density 0.5 --lines --alpha 0.3 --beta 0.6", 1, 0,
		 {1, 2, -0.5}, {0.5, 0.5, 0.5}, {0.01, 0.01, 0.01}, 0, 0.3, 0.6},
		/* floor(gamma n) = 0 on the 32-element norms (and 0.001 n < 1 on all):
		 * lines drops no top value there */
		{"breadcrumbs_ties weighted, gamma edge", "breadcrumbs_ties",
		 "-w 1,2,0.5 --density 0.9 --bc-gamma 0.001", 1, 1, {1, 2, 0.5}, {0.9, 0.9, 0.9},
		 {0.001, 0.001, 0.001}, 1, 0, 0},
		{"breadcrumbs gamma 0 and gamma + density > 1", "breadcrumbs",
		 "--density 0.3,0.95,0.5 --bc-gamma 0,0.2,0.6 --lines --beta 0.4", 0, 0, {1, 1, 1},
		 {0.3, 0.95, 0.5}, {0, 0.2, 0.6}, 0, -1, 0.4},
	};
	static const char *const dts[] = {"bf16", "f16", "f32"};
	for (size_t d = 0; d < 3; d++) {
		struct fam f;
		memset(&f, 0, sizeof(f));
		if (!ok(load(&f, dts[d], 32, dts[d]), "generate a %s family", dts[d]))
			continue;
		for (size_t i = 0; i < sizeof(sc) / sizeof(sc[0]); i++)
			run(&f, &sc[i], (int)i, dts[d]);
		free_fam(&f);
	}
	struct fam f;
	memset(&f, 0, sizeof(f));
	if (ok(load(&f, "f32", 96, "det"), "generate an f32 family with 96 x 96 tensors"))
		same_bytes(&f);
	free_fam(&f);
	static const struct scen wide[] = {
		{"breadcrumbs d0.7 g0.05", "breadcrumbs", "--density 0.7 --bc-gamma 0.05", 0, 0,
		 {1, 1, 1}, {0.7, 0.7, 0.7}, {0.05, 0.05, 0.05}, 1, 0, 0},
		{"breadcrumbs_ties weighted", "breadcrumbs_ties", "-w 1,2,0.5 --density 0.6 --bc-gamma 0.02",
		 1, 1, {1, 2, 0.5}, {0.6, 0.6, 0.6}, {0.02, 0.02, 0.02}, 1, 0, 0},
	};
	unsigned d0, d1;
	memset(&f, 0, sizeof(f));
	if (ok(wide_family(&f, &d0, &d1), "write a family whose counts fill a job's histograms")) {
		ok(d0 > 32768 && d1 > 32768,
		   "a job's counts fill more than half of the bins: %u bins (select), %u low bits "
		   "(threshold)", d0, d1);
		for (size_t i = 0; i < sizeof(wide) / sizeof(wide[0]); i++)
			run(&f, &wide[i], 20 + (int)i, "wide");
	}
	free_fam(&f);
	tu_cleanup();
	return tap_done();
}
