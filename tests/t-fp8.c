/*
 * t-fp8.c -- FP8 checkpoints (issue 14, item 7): DeepSeek-V3-style
 * F8_E4M3 weights with a float32 scale per 128 x 128 block
 * (weight_scale_inv), and compressed-tensors-style ones with one scale per
 * tensor (weight_scale, plus an input_scale).
 *
 * The test decodes every float8 code itself (E4M3: 1 sign, 4 exponent
 * bits of bias 7, 3 mantissa bits, no infinities), multiplies by its
 * block's scale in double, and computes each merged element in float64:
 *     ref = theta_0 + lambda(block) * sum_i w_i (theta_i - theta_0)
 * The output must be within one ULP of its dtype at ref, plus the float32
 * rounding lines does on the way (each dequantized value and each task
 * vector is a float32, as for every input): 2^-22 of the operands. The
 * scales and input scales are not in the output, the weights are BF16 (or
 * --dtype), and config.json has lost its quantization_config.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp8.h"
#include "tap.h"
#include "tutil.h"

static double e4m3(uint8_t c)
{
	unsigned e = (c >> 3) & 15, m = c & 7;
	double v;
	if (e == 15 && m == 7)
		return NAN;
	v = e ? ldexp(1.0 + m / 8.0, (int)e - 7) : ldexp(m / 8.0, -6);
	return c & 0x80 ? -v : v;
}

/* Element e of tensor t of model m, dequantized in double. */
static double value(const struct tu_model *m, const struct tu_tensor *t, uint64_t e)
{
	char name[512];
	const struct tu_tensor *s;
	if (strcmp(t->dtype, "F8_E4M3"))
		return tu_elem64(t, e);
	snprintf(name, sizeof(name), "%s_scale_inv", t->name);
	if ((s = tu_model_find(m, name))) {
		uint64_t C = t->shape[1], r = e / C, c = e % C;
		return e4m3(t->data[e]) * tu_elem(s, (r / 128) * s->shape[1] + c / 128);
	}
	snprintf(name, sizeof(name), "%s_scale", t->name);
	s = tu_model_find(m, name);
	return e4m3(t->data[e]) * (s ? tu_elem(s, 0) : 1.0);
}

static int is_scale(const char *name)
{
	size_t n = strlen(name);
	return (n > 10 && !strcmp(name + n - 10, "_scale_inv")) ||
	       (n > 6 && !strcmp(name + n - 6, "_scale"));
}

struct fam {
	char dir[4200];
	struct tu_model in[3];
};

struct scen {
	const char *name, *args;
	double w[2];
	double alpha, beta; /* lambda = alpha + beta * block / (L - 1); beta 0: global */
	const char *out_dt; /* the dtype of the dequantized weights in the output */
	int fp8;            /* --dtype fp8: 1 block scales, 2 per tensor */
};

/* Every element of out against the float64 reference. */
static void compare(const struct fam *f, const struct tu_model *o, const struct scen *s, long L)
{
	uint64_t n = 0, bad = 0, same_dt = 0, fp8 = 0, scales = 0, nscale = 0;
	double worst = 0;
	for (size_t ti = 0; ti < f->in[0].n; ti++) {
		const struct tu_tensor *bt = &f->in[0].t[ti], *ot = tu_model_find(o, bt->name);
		if (is_scale(bt->name)) {
			scales += ot != NULL;
			nscale++;
			continue;
		}
		if (!ot || !tu_is_float(ot)) {
			bad++;
			continue;
		}
		if (!strcmp(bt->dtype, "F8_E4M3")) {
			fp8++;
			same_dt += !strcmp(ot->dtype, s->out_dt);
		}
		long b = tu_block_of(bt->name);
		double lambda = b < 0 ? s->alpha : s->alpha + s->beta * (double)b / (double)(L - 1);
		const struct tu_tensor *x1 = tu_model_find(&f->in[1], bt->name);
		const struct tu_tensor *x2 = tu_model_find(&f->in[2], bt->name);
		for (uint64_t e = 0; e < bt->nelem; e++) {
			double b0 = value(&f->in[0], bt, e), v1 = value(&f->in[1], x1, e);
			double v2 = value(&f->in[2], x2, e);
			double t1 = s->w[0] * (v1 - b0), t2 = s->w[1] * (v2 - b0);
			double ref = b0 + lambda * (t1 + t2), got = tu_elem64(ot, e);
			double slack = 0x1p-22 * (fabs(b0) + fabs(lambda) * (fabs(s->w[0]) * (fabs(v1) + fabs(b0)) +
			                                                     fabs(s->w[1]) * (fabs(v2) + fabs(b0))));
			double err = fabs(got - ref) / tu_ulp(ot->dtype, ref);
			if (fabs(got - ref) > tu_ulp(ot->dtype, ref) + slack)
				bad++;
			if (err > worst && fabs(got - ref) <= tu_ulp(ot->dtype, ref))
				worst = err;
			n++;
		}
	}
	ok(bad == 0 && n > 0, "%s: %llu elements within 1 ULP of the float64 reference (worst %.2f ULP)",
	   s->name, (unsigned long long)n, worst);
	ok(fp8 > 0 && same_dt == fp8, "%s: the %llu FP8 weights are %s in the output", s->name,
	   (unsigned long long)fp8, s->out_dt);
	ok(nscale > 0 && scales == 0 && o->n == f->in[0].n - nscale,
	   "%s: none of the %llu scale tensors is in the output (%zu tensors of %zu)", s->name,
	   (unsigned long long)nscale, o->n, f->in[0].n);
}

/* Spacing of E4M3 at |v| (in units of the scale). */
static double ulp8(double v)
{
	int e;
	frexp(fabs(v), &e);
	return e - 1 < -6 ? 0x1p-9 : ldexp(1.0, e - 1 - 3);
}

/*
 * --dtype fp8: each block's scale is the largest |reference| of the block
 * / 448 (float32), and each code is the reference / scale rounded to
 * E4M3 (within one float8 step: lines divides float32 values).
 */
static void compare_fp8(const struct fam *f, const struct tu_model *o, const struct scen *s)
{
	uint64_t n = 0, bad = 0, exact = 0, near = 0, nsc = 0, badsc = 0, kept = 0;
	for (size_t ti = 0; ti < f->in[0].n; ti++) {
		const struct tu_tensor *bt = &f->in[0].t[ti], *ot = tu_model_find(o, bt->name);
		if (strcmp(bt->dtype, "F8_E4M3"))
			continue;
		char name[512];
		const struct tu_tensor *sc, *bs;
		snprintf(name, sizeof(name), "%s%s", bt->name, s->fp8 == 1 ? "_scale_inv" : "_scale");
		sc = tu_model_find(o, name);
		bs = tu_model_find(&f->in[0], name);
		if (!ot || strcmp(ot->dtype, "F8_E4M3") || !sc || !bs || strcmp(sc->dtype, bs->dtype) ||
		    sc->nelem != bs->nelem) {
			bad++;
			continue;
		}
		const struct tu_tensor *x1 = tu_model_find(&f->in[1], bt->name);
		const struct tu_tensor *x2 = tu_model_find(&f->in[2], bt->name);
		double *amax = calloc(sc->nelem, sizeof(double));
		uint64_t C = bt->shape[1];
		for (int pass = 0; pass < 2; pass++)
			for (uint64_t e = 0; e < bt->nelem; e++) {
				size_t k = s->fp8 == 1 ? (size_t)((e / C / 128) * sc->shape[1] + e % C / 128) : 0;
				double b0 = value(&f->in[0], bt, e);
				double ref = b0 + s->w[0] * (value(&f->in[1], x1, e) - b0) +
				             s->w[1] * (value(&f->in[2], x2, e) - b0);
				if (pass == 0) {
					amax[k] = fabs(ref) > amax[k] ? fabs(ref) : amax[k];
					continue;
				}
				double sv = tu_elem(sc, k), q = ref / sv, got = e4m3(ot->data[e]);
				q = fabs(q) > 448 ? copysign(448, q) : q;
				bad += !(fabs(got - q) <= ulp8(q));
				if (got == q || fabs(got - q) <= ulp8(q) / 2)
					exact++;
				else
					near += fabs(fabs(got - q) - ulp8(q) / 2) <= 0x1p-20 * fabs(q);
				n++;
			}
		for (uint64_t k = 0; k < sc->nelem; k++, nsc++)
			badsc += !(fabs(tu_elem(sc, k) - amax[k] / 448) <= 0x1p-20 * amax[k] / 448);
		free(amax);
	}
	/* the per-tensor scheme's input_scale: the base's */
	for (size_t ti = 0; ti < f->in[0].n; ti++) {
		const struct tu_tensor *bt = &f->in[0].t[ti], *ot;
		if (!strstr(bt->name, "input_scale"))
			continue;
		ot = tu_model_find(o, bt->name);
		kept += ot && ot->nbytes == bt->nbytes && !memcmp(ot->data, bt->data, bt->nbytes);
		bad += !ot;
	}
	/* lines rounds the merged value to float32 before it divides: where
	 * the quotient is within 2^-20 of a tie the code may be the other one */
	ok(bad == 0 && n > 0 && exact + near == n,
	   "%s: %llu codes are the reference / scale rounded to E4M3 (%llu at a tie)", s->name,
	   (unsigned long long)n, (unsigned long long)near);
	ok(badsc == 0 && nsc > 0, "%s: %llu scales are the block's largest |value| / 448", s->name,
	   (unsigned long long)nsc);
	if (s->fp8 == 2)
		ok(kept > 0, "%s: the %llu input scales are the base's", s->name, (unsigned long long)kept);
}

static void run(const struct fam *f, const struct scen *s, int k)
{
	char out[4400], p[4500];
	struct tu_model o;
	int rc = tu_run("'%s' merge -q -b '%s/base' %s -o '%s/out%d/' '%s/ft1' '%s/ft2'", tu_lines(),
	                f->dir, s->args, f->dir, k, f->dir, f->dir);
	if (!ok(rc == 0, "%s: lines exits 0", s->name)) {
		diag("%s", tu_stderr);
		return;
	}
	snprintf(out, sizeof(out), "%s/out%d", f->dir, k);
	snprintf(p, sizeof(p), "%s/model.safetensors", out);
	if (!ok(tu_model_load(&o, p) == 0, "%s: read the output", s->name))
		return;
	if (s->fp8)
		compare_fp8(f, &o, s);
	else
		compare(f, &o, s, 3);
	tu_model_free(&o);
	/* config.json without quantization_config, the rest kept (with
	 * --dtype fp8: as it was) */
	snprintf(p, sizeof(p), "%s/config.json", out);
	rc = tu_run("grep -q quantization_config '%s'", p);
	int kept = tu_run("grep -q '\"model_type\": \"gen-family\"' '%s'", p) == 0;
	if (s->fp8)
		ok(rc == 0 && kept, "%s: config.json keeps its quantization_config", s->name);
	else
		ok(rc == 1 && kept, "%s: config.json has lost its quantization_config only", s->name);
}

static int load_family(struct fam *f, const char *kind)
{
	static const char *const who[] = {"base", "ft1", "ft2"};
	char p[4400];
	snprintf(f->dir, sizeof(f->dir), "%s/%s", tu_tmpdir(), kind);
	if (!ok(tu_run("'%s' --arch llama --dtype bf16 --layers 3 --hidden 200 --models 2 --seed 7 "
	               "--fp8 %s --shards 1 --out '%s'",
	               tu_gen(), kind, f->dir) == 0,
	        "generate an FP8 family with %s scales", kind))
		return 0;
	for (int m = 0; m < 3; m++) {
		snprintf(p, sizeof(p), "%s/%s/model-00001-of-00001.safetensors", f->dir, who[m]);
		if (tu_model_load(&f->in[m], p) != 0)
			return 0;
	}
	return 1;
}

static void counts(const struct fam *f)
{
	int rc = tu_run("'%s' merge -n --json -b '%s/base' -o '%s/n.st' '%s/ft1' '%s/ft2' | "
	                "jq -e '.nscales_dropped == 21 and .nscales_new == 0 and .ntensors == 30' "
	                ">/dev/null && '%s' merge -n --json --dtype fp8 -b '%s/base' -o '%s/n.st' "
	                "'%s/ft1' '%s/ft2' | jq -e '.nscales_dropped == 0 and .nscales_new == 21 and "
	                ".ntensors == 51 and (.passes | map(.name) | index(\"scales\")) != null' "
	                ">/dev/null",
	                tu_lines(), f->dir, f->dir, f->dir, f->dir, tu_lines(), f->dir, f->dir, f->dir,
	                f->dir);
	ok(rc == 0, "-n --json counts the scales left out or made new, and the scales pass");
}

static void refusals(const struct fam *f)
{
	char p[4400];
	/* a stream cannot be read with its scales */
	int rc = tu_run("cat '%s/base/model-00001-of-00001.safetensors' | '%s' merge -q -b - -o "
	                "'%s/stdin.safetensors' '%s/ft1' '%s/ft2'",
	                f->dir, tu_lines(), f->dir, f->dir, f->dir);
	snprintf(p, sizeof(p), "%s/stdin.safetensors", f->dir);
	ok(rc != 0 && rc != 2 && !tu_exists(p), "an FP8 base on standard input is refused (exit %d), "
	                                        "nothing written", rc);
	/* scales that do not fit the config's blocks */
	rc = tu_run("cp -r '%s/base' '%s/base64' && sed -i 's/\\[128, 128\\]/[64, 64]/' "
	            "'%s/base64/config.json'",
	            f->dir, f->dir, f->dir);
	rc = rc ? rc : tu_run("'%s' merge -q -b '%s/base64' -o '%s/bad/' '%s/ft1' '%s/ft2'", tu_lines(),
	                      f->dir, f->dir, f->dir, f->dir);
	snprintf(p, sizeof(p), "%s/bad", f->dir);
	ok(rc != 0 && rc != 2 && !tu_exists(p) && strstr(tu_stderr, "weight_scale_inv"),
	   "scales that do not fit weight_block_size are refused, naming the tensor (exit %d)", rc);
}

/* E5M2, decoded by the test: 1 sign, 5 exponent bits of bias 15, 2
 * mantissa bits, infinities and NaNs at exponent 31. */
static double e5m2(uint8_t c)
{
	unsigned e = (c >> 2) & 31, m = c & 3;
	double v;
	if (e == 31)
		v = m ? NAN : INFINITY;
	else
		v = e ? ldexp(1.0 + m / 4.0, (int)e - 15) : ldexp(m / 4.0, -14);
	return c & 0x80 ? -v : v;
}

/* liblines's codec against the test's decoders: every code, every
 * midpoint between neighbours (to the even code), saturation. */
static void codec(enum dtype dt, const char *name, double (*dec)(uint8_t), double max)
{
	unsigned bad_dec = 0, bad_rt = 0, bad_mid = 0, bad_sat = 0;
	for (unsigned c = 0; c < 256; c++) {
		double v = dec((uint8_t)c), got = fp8_decode(dt, (uint8_t)c);
		if (v != v) {
			bad_dec += got == got;
			bad_rt += fp8_decode(dt, fp8_encode(dt, v)) == fp8_decode(dt, fp8_encode(dt, v));
			continue;
		}
		bad_dec += got != v;
		if (isfinite(v))
			bad_rt += fp8_encode(dt, v) != c && !(v == 0 && fp8_decode(dt, fp8_encode(dt, v)) == 0);
		/* the midpoint to the next code up (same sign), and just either side */
		unsigned up = c + 1;
		if ((c & 0x7f) == 0x7f || !isfinite(dec((uint8_t)up)) || !isfinite(v) ||
		    fabs(dec((uint8_t)up)) <= fabs(v))
			continue;
		double mid = (v + dec((uint8_t)up)) / 2;
		unsigned even = (c & 1) ? up : c;
		bad_mid += fp8_encode(dt, mid) != even;
		bad_mid += fp8_encode(dt, nextafter(mid, 0)) != c;
		bad_mid += fp8_encode(dt, nextafter(mid, mid * 2)) != up;
	}
	bad_sat += fp8_decode(dt, fp8_encode(dt, max * 1.5)) != max;
	bad_sat += fp8_decode(dt, fp8_encode(dt, -INFINITY)) != -max;
	bad_sat += fp8_decode(dt, fp8_encode(dt, 1e300)) != max;
	ok(bad_dec == 0 && fp8_max(dt) == max, "%s: every code decodes as the test decodes it", name);
	ok(bad_rt == 0, "%s: every value encodes to its code", name);
	ok(bad_mid == 0, "%s: midpoints go to the even code, either side to the nearer", name);
	ok(bad_sat == 0, "%s: beyond %g, and infinities, saturate", name, max);
}

/* The same merge in other ways gives the same bytes: threads, chunks,
 * readers, kernels. */
static void same_bytes(const struct fam *f)
{
	static const char *const ways[] = {"-j1", "-j2 --chunk 64K", "--io mmap", "--io uring -j2"};
	static const char *const isa[] = {"scalar", "avx2", "native"};
	int same = 1, runs = 0;
	for (size_t i = 0; i < 4; i++) {
		const char *e = isa[i % 3];
		int rc = tu_run("%s%s '%s' merge -q -b '%s/base' -w 0.5,1.5 --dtype fp8 %s -o '%s/w%zu.st' "
		                "'%s/ft1' '%s/ft2' && cmp -s '%s/w0.st' '%s/w%zu.st'",
		                strcmp(e, "native") ? "LINES_ISA=" : "", strcmp(e, "native") ? e : "",
		                tu_lines(), f->dir, ways[i], f->dir, i, f->dir, f->dir, f->dir, f->dir, i);
		same &= rc == 0;
		runs++;
	}
	ok(same && runs == 4, "--dtype fp8: the same bytes with -j1/-j2, --chunk, --io mmap/uring and "
	                      "LINES_ISA scalar/avx2");
}

/* TIES and DARE see what they would see of float32 copies of the models:
 * the FP8 family and its dequantized copy merge to the same bytes. */
static void like_f32(const struct fam *f)
{
	static const char *const who[] = {"base", "ft1", "ft2"};
	static const char *const methods[] = {"-m ties --density 0.3", "-m dare --density 0.5 --seed 3"};
	int rc = 0;
	for (int m = 0; m < 3 && rc == 0; m++) /* --lambda 0: the model itself, decoded */
		rc = tu_run("'%s' merge -q -b '%s/%s' --lambda 0 --dtype f32 -o '%s/%s.f32' '%s/%s' 2>/dev/null",
		            tu_lines(), f->dir, who[m], f->dir, who[m], f->dir, who[m]);
	if (!ok(rc == 0, "dequantize the FP8 family to F32 copies"))
		return;
	for (size_t i = 0; i < 2; i++) {
		rc = tu_run("'%s' merge -q -b '%s/base' %s --dtype bf16 -o '%s/m%zu.st' '%s/ft1' '%s/ft2' && "
		            "'%s' merge -q -b '%s/base.f32' %s --dtype bf16 -o '%s/c%zu.st' '%s/ft1.f32' "
		            "'%s/ft2.f32' && cmp -s '%s/m%zu.st' '%s/c%zu.st'",
		            tu_lines(), f->dir, methods[i], f->dir, i, f->dir, f->dir, tu_lines(), f->dir,
		            methods[i], f->dir, i, f->dir, f->dir, f->dir, i, f->dir, i);
		ok(rc == 0, "%s on FP8 gives the bytes it gives on the F32 copies", methods[i]);
	}
}

/* A BF16 fine-tune of an FP8 base (the same model before quantization),
 * and the other way round. */
static void mixed(const struct fam *f)
{
	char dir[4400], p[4500];
	struct fam m;
	snprintf(dir, sizeof(dir), "%s-bf16", f->dir);
	if (!ok(tu_run("'%s' --arch llama --dtype bf16 --layers 3 --hidden 200 --models 2 --seed 7 "
	               "--shards 1 --out '%s'",
	               tu_gen(), dir) == 0,
	        "generate the family in BF16"))
		return;
	memset(&m, 0, sizeof(m));
	snprintf(m.dir, sizeof(m.dir), "%s/mixed", tu_tmpdir());
	int rc = tu_run("mkdir -p '%s' && ln -s '%s/base' '%s/base' && ln -s '%s/ft1' '%s/ft1' && "
	                "ln -s '%s/ft2' '%s/ft2'",
	                m.dir, f->dir, m.dir, dir, m.dir, f->dir, m.dir);
	snprintf(p, sizeof(p), "%s/ft1/model-00001-of-00001.safetensors", dir);
	if (!ok(rc == 0 && tu_model_load(&m.in[1], p) == 0, "a family of an FP8 base, a BF16 and an "
	                                                      "FP8 fine-tune"))
		return;
	m.in[0] = f->in[0];
	m.in[2] = f->in[2];
	static const struct scen s = {"mixed: sum weighted", "-w 1.25,0.5", {1.25, 0.5}, 1, 0, "BF16", 0};
	run(&m, &s, 0);
	tu_model_free(&m.in[1]);
	/* a BF16 base with FP8 fine-tunes: the base's dtypes, no scales */
	rc = tu_run("'%s' merge -q -b '%s/base' -o '%s/rev.st' '%s/ft1' '%s/ft2'", tu_lines(), dir,
	            f->dir, f->dir, f->dir);
	snprintf(p, sizeof(p), "%s/rev.st", f->dir);
	struct tu_model o;
	int good = rc == 0 && tu_model_load(&o, p) == 0;
	size_t f8 = 0;
	for (size_t i = 0; good && i < o.n; i++)
		f8 += strstr(o.t[i].name, "_scale") != NULL || strcmp(o.t[i].dtype, "BF16");
	ok(good && f8 == 0, "a BF16 base with FP8 fine-tunes gives BF16, without their scales");
	if (good)
		tu_model_free(&o);
}

int main(void)
{
	static const struct scen block[] = {
		{"block: sum weighted", "-w 0.5,1.5", {0.5, 1.5}, 1, 0, "BF16", 0},
		{"block: --lines 0.4 0.6", "--lines --alpha 0.4 --beta 0.6", {1, 1}, 0.4, 0.6, "BF16", 0},
		{"block: --lambda 0", "--lambda 0", {1, 1}, 0, 0, "BF16", 0},
		{"block: mean --dtype f32", "-m mean --dtype f32", {0.5, 0.5}, 1, 0, "F32", 0},
		{"block: sum --dtype fp8", "-w 0.5,1.5 --dtype fp8", {0.5, 1.5}, 1, 0, "F8_E4M3", 1},
	};
	static const struct scen tensor[] = {
		{"tensor: sum weighted", "-w 0.75,-0.5", {0.75, -0.5}, 1, 0, "BF16", 0},
		{"tensor: --lines 0.3 0.7 --dtype f16", "--lines --alpha 0.3 --beta 0.7 --dtype f16",
		 {1, 1}, 0.3, 0.7, "F16", 0},
		{"tensor: sum --dtype fp8", "-w 0.75,-0.5 --dtype fp8", {0.75, -0.5}, 1, 0, "F8_E4M3", 2},
	};
	struct fam fb = {0}, ft = {0};
	codec(DT_F8_E4M3, "E4M3", e4m3, 448);
	codec(DT_F8_E5M2, "E5M2", e5m2, 57344);
	if (load_family(&fb, "block")) {
		for (size_t i = 0; i < sizeof(block) / sizeof(block[0]); i++)
			run(&fb, &block[i], (int)i);
		refusals(&fb);
		counts(&fb);
		same_bytes(&fb);
		like_f32(&fb);
		mixed(&fb);
	}
	if (load_family(&ft, "tensor"))
		for (size_t i = 0; i < sizeof(tensor) / sizeof(tensor[0]); i++)
			run(&ft, &tensor[i], (int)i);
	for (int m = 0; m < 3; m++) {
		tu_model_free(&fb.in[m]);
		tu_model_free(&ft.in[m]);
	}
	tu_cleanup();
	return tap_done();
}
