/*
 * t-math.c -- every merged element against an independent float64
 * reference, for every method and option of lines merge and lines scale,
 * on generated Llama, GPT-2, CLIP and T5 families in BF16, F16 and F32,
 * and on a family whose fine-tunes have other float dtypes than its base.
 *
 * The test runs the lines program, reads the inputs and the output with
 * its own reader (tutil.c), finds block indices with its own matcher and
 * computes, per element and in double precision,
 *     tau_i = theta_i - theta_0            (float32, as the spec defines it)
 *     tau   = sum_i w_i tau_i  [/ sum_i w_i for mean]
 *     ref   = theta_0 + lambda(block) * tau
 * and requires |out - ref| <= one ULP of the output dtype at ref, plus
 * 2^-48 (|theta_0| + |lambda| sum_i |w_i tau_i|): the uncertainty of the
 * float64 reference itself, which only matters where theta_0 and
 * lambda * tau cancel to (almost) zero. A NaN reference must give a NaN,
 * an infinite one the same infinity. Automatic
 * alpha is recomputed from its formula and must match the alpha lines
 * records in the output's metadata to 1e-12 (exactly 1/N for an
 * unweighted sum).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "tutil.h"

#define N_MODELS 3

struct scenario {
	const char *name;
	int scale;       /* lines scale --gamma */
	int mean;        /* -m mean */
	double w[N_MODELS];
	int weighted;    /* pass -w */
	double lambda;   /* without LiNeS */
	int lines;
	int alpha_auto;
	double alpha, beta; /* beta NAN: default */
	int norm_p;
	double gamma;
	const char *dtype; /* --dtype, or NULL */
	long num_layers;   /* --num-layers, or 0 */
	const char *regex; /* --layer-regex, or NULL */
	int closed_form;   /* alpha must equal this exactly: 1 = 1/N, 2 = 1 */
};

static const struct scenario scenarios[] = {
	{"sum", 0, 0, {1, 1, 1}, 0, 1.0, 0, 0, 0, NAN, 1, 0, NULL, 0, NULL, 0},
	{"mean", 0, 1, {1, 1, 1}, 0, 1.0, 0, 0, 0, NAN, 1, 0, NULL, 0, NULL, 0},
	{"sum weighted", 0, 0, {0.5, -0.25, 1.5}, 1, 1.0, 0, 0, 0, NAN, 1, 0, NULL, 0, NULL, 0},
	{"sum --lambda 0.7", 0, 0, {1, 1, 1}, 0, 0.7, 0, 0, 0, NAN, 1, 0, NULL, 0, NULL, 0},
	{"mean weighted --lambda 0.9", 0, 1, {1, 2, 3}, 1, 0.9, 0, 0, 0, NAN, 1, 0, NULL, 0, NULL, 0},
	{"sum --lines alpha 0.4 beta 0.6", 0, 0, {1, 1, 1}, 0, 1, 1, 0, 0.4, 0.6, 1, 0, NULL, 0, NULL, 0},
	{"sum --lines auto (closed form)", 0, 0, {1, 1, 1}, 0, 1, 1, 1, 0, NAN, 1, 0, NULL, 0, NULL, 1},
	{"mean --lines auto (closed form)", 0, 1, {1, 1, 1}, 0, 1, 1, 1, 0, NAN, 1, 0, NULL, 0, NULL, 2},
	{"sum --lines auto L1 weighted", 0, 0, {1, 2, 0.5}, 1, 1, 1, 1, 0, NAN, 1, 0, NULL, 0, NULL, 0},
	{"mean --lines auto L2 weighted", 0, 1, {3, 1, 2}, 1, 1, 1, 1, 0, NAN, 2, 0, NULL, 0, NULL, 0},
	{"sum --lines auto L2 beta 0.3", 0, 0, {0.7, 0.2, 1.1}, 1, 1, 1, 1, 0, 0.3, 2, 0, NULL, 0, NULL, 0},
	{"scale --gamma 0.3", 1, 0, {1, 0, 0}, 0, 1, 1, 0, 0.3, 0.7, 1, 0.3, NULL, 0, NULL, 0},
	{"sum --lines --dtype (converted)", 0, 0, {1, 1, 1}, 0, 1, 1, 0, 0.5, 0.5, 1, 0, "*", 0, NULL, 0},
};

/* Scenarios run on the llama families only (options of layer detection). */
static const struct scenario llama_only[] = {
	{"sum --lines --num-layers 8", 0, 0, {1, 1, 1}, 0, 1, 1, 0, 0.2, 0.8, 1, 0, NULL, 8, NULL, 0},
	{"sum --lines --layer-regex", 0, 0, {1, 1, 1}, 0, 1, 1, 0, 0.25, 0.5, 1, 0, NULL, 0,
	 "model\\.layers\\.([0-9]+)\\.", 0},
};

static const char *out_dtype_for(const char *in)
{
	/* a different dtype than the input, to test conversion */
	return !strcmp(in, "F32") ? "bf16" : "f32";
}

struct family {
	const char *arch, *dtype;
	char dir[4200];
	struct tu_model base, ft[N_MODELS];
	long L;
};

static int run_scenario(struct family *f, const struct scenario *s, int idx)
{
	const char *dir = f->dir;
	char out[4400], args[1024] = "", dt_arg[64] = "";
	unsigned nm = s->scale ? 1 : N_MODELS;
	struct tu_model om;
	int rc, good = 1;

	snprintf(out, sizeof(out), "%s/out%d.safetensors", dir, idx);
	if (s->dtype)
		snprintf(dt_arg, sizeof(dt_arg), " --dtype %s", out_dtype_for(f->base.t[0].dtype));
	if (s->scale) {
		rc = tu_run("'%s' scale -q -b '%s/base.safetensors' --gamma %.17g%s -o '%s' '%s/ft1.safetensors'",
		            tu_lines(), dir, s->gamma, dt_arg, out, dir);
	} else {
		size_t n = 0;
		n += (size_t)snprintf(args + n, sizeof(args) - n, "-m %s", s->mean ? "mean" : "sum");
		if (s->weighted)
			n += (size_t)snprintf(args + n, sizeof(args) - n, " -w %.17g,%.17g,%.17g", s->w[0],
			                      s->w[1], s->w[2]);
		if (!s->lines && s->lambda != 1.0)
			n += (size_t)snprintf(args + n, sizeof(args) - n, " --lambda %.17g", s->lambda);
		if (s->lines) {
			n += (size_t)snprintf(args + n, sizeof(args) - n, " --lines");
			if (!s->alpha_auto)
				n += (size_t)snprintf(args + n, sizeof(args) - n, " --alpha %.17g", s->alpha);
			if (!isnan(s->beta))
				n += (size_t)snprintf(args + n, sizeof(args) - n, " --beta %.17g", s->beta);
			n += (size_t)snprintf(args + n, sizeof(args) - n, " --norm %s", s->norm_p == 2 ? "l2" : "l1");
		}
		if (s->num_layers)
			n += (size_t)snprintf(args + n, sizeof(args) - n, " --num-layers %ld", s->num_layers);
		if (s->regex)
			n += (size_t)snprintf(args + n, sizeof(args) - n, " --layer-regex '%s'", s->regex);
		rc = tu_run("'%s' merge -q -b '%s/base.safetensors' %s%s -o '%s' '%s/ft1.safetensors' "
		            "'%s/ft2.safetensors' '%s/ft3.safetensors'",
		            tu_lines(), dir, args, dt_arg, out, dir, dir, dir);
	}
	if (!ok(rc == 0, "%s/%s %s: lines exits 0", f->arch, f->dtype, s->name)) {
		diag("stderr: %s", tu_stderr);
		return 0;
	}
	if (!ok(tu_run("'%s' inspect -q '%s'", tu_lines(), out) == 0 && tu_model_load(&om, out) == 0,
	        "%s/%s %s: output passes the strict reader", f->arch, f->dtype, s->name))
		return 0;
	/* the writer's layout: 8-aligned header that starts with '{' and
	 * __metadata__, tensors packed back to back */
	{
		uint64_t n = 0, expect = 0;
		for (int i = 7; i >= 0; i--)
			n = (n << 8) | om.buf[i];
		int layout = n % 8 == 0 && om.buf[8] == '{' && !memcmp(om.buf + 9, "\"__metadata__\"", 14) &&
		             tu_model_meta(&om, "format") && !strcmp(tu_model_meta(&om, "format"), "pt");
		for (size_t i = 0; i < om.n; i++)
			expect += om.t[i].nbytes;
		ok(layout && 8 + n + expect == om.len && om.n == f->base.n,
		   "%s/%s %s: header aligned, __metadata__ first, format pt, data packed", f->arch,
		   f->dtype, s->name);
	}

	/* ---- alpha ------------------------------------------------------------------ */
	double alpha = s->alpha, beta = s->beta, lambda = s->lambda;
	double wsum = 0;
	for (unsigned i = 0; i < nm; i++)
		wsum += s->w[i];
	long L = s->num_layers ? s->num_layers : f->L;
	if (s->lines && s->alpha_auto) {
		double num = 0, den = 0;
		for (size_t ti = 0; ti < f->base.n; ti++) {
			const struct tu_tensor *b = &f->base.t[ti];
			if (!tu_is_float(b))
				continue;
			const struct tu_tensor *x[N_MODELS];
			for (unsigned i = 0; i < nm; i++)
				x[i] = tu_model_find(&f->ft[i], b->name);
			for (uint64_t e = 0; e < b->nelem; e++) {
				float bv = tu_elem(b, e);
				double sum = 0, mtl = 0;
				for (unsigned i = 0; i < nm; i++) {
					float tau = tu_elem(x[i], e) - bv;
					sum += tau;
					mtl += s->w[i] * (double)tau;
				}
				if (s->mean)
					mtl /= wsum;
				if (!isfinite(sum) || !isfinite(mtl))
					continue; /* non-finite elements are left out of the norms */
				num += s->norm_p == 2 ? sum * sum : fabs(sum);
				den += s->norm_p == 2 ? mtl * mtl : fabs(mtl);
			}
		}
		if (s->norm_p == 2)
			num = sqrt(num), den = sqrt(den);
		alpha = num / (nm * den);
		const char *rec = tu_model_meta(&om, "lines.alpha");
		double got = rec ? strtod(rec, NULL) : NAN;
		if (s->closed_form == 1)
			ok(got == 1.0 / nm, "%s/%s %s: alpha is exactly 1/N (%s)", f->arch, f->dtype,
			   s->name, rec ? rec : "missing");
		else if (s->closed_form == 2)
			ok(got == 1.0, "%s/%s %s: alpha of an unweighted mean is exactly 1 (%s)", f->arch,
			   f->dtype, s->name, rec ? rec : "missing");
		ok(fabs(got - alpha) <= 1e-12 * fabs(alpha),
		   "%s/%s %s: alpha %.17g matches the formula %.17g (rel. error %.2e)", f->arch, f->dtype,
		   s->name, got, alpha, fabs(got - alpha) / fabs(alpha));
	}
	if (s->lines && isnan(beta))
		beta = fmax(0.0, 1.0 - alpha);

	/* ---- every element -------------------------------------------------------------- */
	uint64_t checked = 0, bad = 0, cancel = 0;
	double worst = 0;
	char first_bad[512] = "";
	for (size_t ti = 0; ti < f->base.n; ti++) {
		const struct tu_tensor *b = &f->base.t[ti], *o = tu_model_find(&om, b->name);
		if (!o) {
			bad++;
			snprintf(first_bad, sizeof(first_bad), "%s missing in the output", b->name);
			continue;
		}
		if (!tu_is_float(b)) {
			if (strcmp(o->dtype, b->dtype) || o->nbytes != b->nbytes ||
			    memcmp(o->data, b->data, b->nbytes)) {
				bad++;
				snprintf(first_bad, sizeof(first_bad), "%s: copied tensor differs", b->name);
			}
			continue;
		}
		const char *want_dt = s->dtype ? (!strcmp(b->dtype, "F32") ? "BF16" : "F32") : b->dtype;
		if (strcmp(o->dtype, want_dt)) {
			bad++;
			snprintf(first_bad, sizeof(first_bad), "%s: dtype %s, expected %s", b->name,
			         o->dtype, want_dt);
			continue;
		}
		long blk = tu_block_of(b->name);
		double lam = !s->lines ? lambda
		             : blk < 0 || L == 1 ? alpha
		                                 : alpha + beta * (double)blk / (double)(L - 1);
		const struct tu_tensor *x[N_MODELS];
		for (unsigned i = 0; i < nm; i++)
			x[i] = tu_model_find(&f->ft[i], b->name);
		for (uint64_t e = 0; e < b->nelem; e++) {
			float bv = tu_elem(b, e);
			double tau = 0, mag = 0;
			for (unsigned i = 0; i < nm; i++) {
				float t = tu_elem(x[i], e) - bv;
				tau += s->w[i] * (double)t;
				mag += fabs(s->w[i] * (double)t);
			}
			if (s->mean)
				tau /= wsum, mag /= fabs(wsum);
			double ref = (double)bv + lam * tau;
			double got = tu_elem(o, e);
			int fine;
			if (isnan(ref))
				fine = isnan(got);
			else if (isinf(ref))
				fine = got == ref;
			else {
				double err = fabs(got - ref), ulp = tu_ulp(o->dtype, ref);
				fine = err <= ulp + 0x1p-48 * (fabs(bv) + fabs(lam) * mag);
				if (err > ulp)
					cancel++; /* within the reference's own uncertainty only */
				else if (err / ulp > worst)
					worst = err / ulp;
			}
			checked++;
			if (!fine && !bad++)
				snprintf(first_bad, sizeof(first_bad),
				         "%s[%llu]: got %.9g, reference %.17g (base %.9g, lambda %.17g)",
				         b->name, (unsigned long long)e, got, ref, bv, lam);
		}
	}
	if (!ok(bad == 0 && checked > 0,
	        "%s/%s %s: %llu elements within 1 ULP of the float64 reference (worst %.3f ULP; "
	        "%llu cancel to ~0 and are within 2^-48 of the operands)",
	        f->arch, f->dtype, s->name, (unsigned long long)checked, worst,
	        (unsigned long long)cancel))
		diag("%llu bad; first: %s", (unsigned long long)bad, first_bad);
	tu_model_free(&om);
	good = bad == 0;
	return good;
}

int main(void)
{
	static const char *const archs[] = {"llama", "gpt2", "clip", "t5"};
	static const char *const dtypes[] = {"bf16", "f16", "f32"};

	for (size_t a = 0; a < 4; a++)
		for (size_t d = 0; d < 3; d++) {
			struct family f = {archs[a], dtypes[d], "", {0}, {{0}}, 0};
			snprintf(f.dir, sizeof(f.dir), "%s/%s-%s", tu_tmpdir(), f.arch, f.dtype);
			int rc = tu_run("'%s' --arch %s --dtype %s --layers 4 --hidden 32 --models %d "
			                "--seed %zu --specials --out '%s'",
			                tu_gen(), f.arch, f.dtype, N_MODELS, 11 + a * 3 + d, f.dir);
			if (!ok(rc == 0, "generate %s/%s family", f.arch, f.dtype))
				continue;
			char p[4400];
			snprintf(p, sizeof(p), "%s/base.safetensors", f.dir);
			int loaded = tu_model_load(&f.base, p) == 0;
			for (int i = 0; i < N_MODELS; i++) {
				snprintf(p, sizeof(p), "%s/ft%d.safetensors", f.dir, i + 1);
				loaded &= tu_model_load(&f.ft[i], p) == 0;
			}
			if (!ok(loaded, "read %s/%s family", f.arch, f.dtype))
				continue;
			for (size_t i = 0; i < f.base.n; i++) {
				long blk = tu_block_of(f.base.t[i].name);
				if (blk + 1 > f.L)
					f.L = blk + 1;
			}
			ok(f.L == 4, "%s: the test's matcher finds L = 4 (%ld)", f.arch, f.L);
			for (size_t s = 0; s < sizeof(scenarios) / sizeof(scenarios[0]); s++)
				run_scenario(&f, &scenarios[s], (int)s);
			if (!strcmp(f.arch, "llama"))
				for (size_t s = 0; s < sizeof(llama_only) / sizeof(llama_only[0]); s++)
					run_scenario(&f, &llama_only[s], 100 + (int)s);
			tu_model_free(&f.base);
			for (int i = 0; i < N_MODELS; i++)
				tu_model_free(&f.ft[i]);
		}
	/* Fine-tunes in another float dtype than the base (issue 14, item 5): a
	 * BF16 base, an F32, an F16 and a BF16 fine-tune of the same values;
	 * the output takes the base's dtype. */
	{
		static const char *const mdt[] = {"bf16", "f32", "f16"};
		struct family f = {"llama", "mixed", "", {0}, {{0}}, 4};
		char p[4400];
		int loaded = 1;
		snprintf(f.dir, sizeof(f.dir), "%s/mixed", tu_tmpdir());
		loaded &= tu_run("mkdir -p '%s'", f.dir) == 0;
		for (size_t d = 0; d < 3; d++)
			loaded &= tu_run("'%s' --arch llama --dtype %s --layers 4 --hidden 32 --models %d "
			                 "--seed 99 --specials --out '%s/%s'",
			                 tu_gen(), mdt[d], N_MODELS, f.dir, mdt[d]) == 0;
		/* base and ft3 BF16, ft1 F32, ft2 F16 */
		loaded &= tu_run("cp '%s/bf16/base.safetensors' '%s/base.safetensors' && "
		                 "cp '%s/f32/ft1.safetensors' '%s/ft1.safetensors' && "
		                 "cp '%s/f16/ft2.safetensors' '%s/ft2.safetensors' && "
		                 "cp '%s/bf16/ft3.safetensors' '%s/ft3.safetensors'",
		                 f.dir, f.dir, f.dir, f.dir, f.dir, f.dir, f.dir, f.dir) == 0;
		snprintf(p, sizeof(p), "%s/base.safetensors", f.dir);
		loaded &= tu_model_load(&f.base, p) == 0;
		for (int i = 0; i < N_MODELS; i++) {
			snprintf(p, sizeof(p), "%s/ft%d.safetensors", f.dir, i + 1);
			loaded &= tu_model_load(&f.ft[i], p) == 0;
		}
		if (ok(loaded, "a family of mixed dtypes (BF16 base; F32, F16, BF16 fine-tunes)"))
			for (size_t s = 0; s < sizeof(scenarios) / sizeof(scenarios[0]); s++)
				run_scenario(&f, &scenarios[s], 200 + (int)s);
		tu_model_free(&f.base);
		for (int i = 0; i < N_MODELS; i++)
			tu_model_free(&f.ft[i]);
	}
	tu_cleanup();
	return tap_done();
}
