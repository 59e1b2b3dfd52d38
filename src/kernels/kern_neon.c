/*
 * kern_neon.c -- the kernels for AArch64 Advanced SIMD (NEON), eight
 * floats per step as two 4-lane halves. Advanced SIMD, FP16 conversions
 * and fused multiply-add are part of every AArch64 CPU, so no run-time
 * check is needed beyond being built for aarch64.
 *
 * As on x86, every operation is the one the scalar reference performs, in
 * the same order: float32 task vectors, float64 sums with FMA where the
 * reference calls fma(), the same eight norm lanes. Conversions use the
 * default FPCR (round to nearest even, subnormals kept, NaNs quieted with
 * their payload), which is what the scalar conversions implement. Tails
 * and F64 data go to the scalar kernels. DARE's hash multiplies 64-bit
 * integers from 32-bit halves, and its quotients are divided.
 */
#include "config.h"

#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "kernels.h"

struct f8 {
	float32x4_t lo, hi;
};

/* bf16 -> f32: widen and shift into the high half; quiet a NaN. */
static inline float32x4_t bf16_half(uint16x4_t h)
{
	uint32x4_t u = vshll_n_u16(h, 16);
	uint32x4_t mag = vandq_u32(u, vdupq_n_u32(0x7fffffffu));
	uint32x4_t nan = vcgtq_u32(mag, vdupq_n_u32(0x7f800000u)); /* |x| > inf */
	u = vorrq_u32(u, vandq_u32(nan, vdupq_n_u32(0x00400000u)));
	return vreinterpretq_f32_u32(u);
}

static inline struct f8 ld8(enum dtype dt, const unsigned char *p)
{
	struct f8 r;
	switch (dt) {
	case DT_BF16: {
		uint16x8_t h = vreinterpretq_u16_u8(vld1q_u8(p));
		r.lo = bf16_half(vget_low_u16(h));
		r.hi = bf16_half(vget_high_u16(h));
		break;
	}
	case DT_F16: {
		float16x8_t h = vreinterpretq_f16_u8(vld1q_u8(p));
		r.lo = vcvt_f32_f16(vget_low_f16(h)); /* exact; NaNs quieted */
		r.hi = vcvt_high_f32_f16(h);
		break;
	}
	default:
		r.lo = vreinterpretq_f32_u8(vld1q_u8(p));
		r.hi = vreinterpretq_f32_u8(vld1q_u8(p + 16));
		break;
	}
	return r;
}

/* f32 -> bf16: (u + 0x7fff + ((u >> 16) & 1)) >> 16, NaN: (u >> 16) | 0x40 */
static inline uint16x4_t bf16_round(float32x4_t x)
{
	uint32x4_t u = vreinterpretq_u32_f32(x);
	uint32x4_t mag = vandq_u32(u, vdupq_n_u32(0x7fffffffu));
	uint32x4_t nan = vcgtq_u32(mag, vdupq_n_u32(0x7f800000u));
	uint32x4_t lsb = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
	uint32x4_t r = vaddq_u32(vaddq_u32(u, vdupq_n_u32(0x7fffu)), lsb);
	uint32x4_t q = vorrq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(0x40));
	return vmovn_u32(vbslq_u32(nan, q, vshrq_n_u32(r, 16)));
}

static inline void st8(enum dtype dt, unsigned char *p, struct f8 x)
{
	switch (dt) {
	case DT_BF16:
		vst1q_u8(p, vreinterpretq_u8_u16(vcombine_u16(bf16_round(x.lo), bf16_round(x.hi))));
		break;
	case DT_F16: /* FCVTN: round to nearest even, NaNs quieted with the top payload */
		vst1q_u8(p, vreinterpretq_u8_f16(vcvt_high_f16_f32(vcvt_f16_f32(x.lo), x.hi)));
		break;
	default:
		vst1q_u8(p, vreinterpretq_u8_f32(x.lo));
		vst1q_u8(p + 16, vreinterpretq_u8_f32(x.hi));
		break;
	}
}

static void neon_decode(enum dtype dt, const void *src, float *dst, size_t n)
{
	const unsigned char *p = src;
	size_t j = 0, es = dtype_size(dt);
	if (dt == DT_F64) {
		kern_scalar.decode(dt, src, dst, n);
		return;
	}
	for (; j + 8 <= n; j += 8) {
		struct f8 v = ld8(dt, p + j * es);
		vst1q_f32(dst + j, v.lo);
		vst1q_f32(dst + j + 4, v.hi);
	}
	kern_scalar.decode(dt, p + j * es, dst + j, n - j);
}

static void neon_encode(enum dtype dt, const float *src, void *dst, size_t n)
{
	unsigned char *p = dst;
	size_t j = 0, es = dtype_size(dt);
	if (dt == DT_F64) {
		kern_scalar.encode(dt, src, dst, n);
		return;
	}
	for (; j + 8 <= n; j += 8) {
		struct f8 v = {vld1q_f32(src + j), vld1q_f32(src + j + 4)};
		st8(dt, p + j * es, v);
	}
	kern_scalar.encode(dt, src + j, p + j * es, n - j);
}

static void neon_accum(enum dtype dt, const void *x, const float *b, double c, double *acc,
                       size_t n, int first)
{
	const unsigned char *p = x;
	size_t j = 0, es = dtype_size(dt);
	float64x2_t vc = vdupq_n_f64(c);
	if (dt == DT_F64) {
		kern_scalar.accum(dt, x, b, c, acc, n, first);
		return;
	}
	for (; j + 8 <= n; j += 8) {
		struct f8 v = ld8(dt, p + j * es);
		float32x4_t t0 = vsubq_f32(v.lo, vld1q_f32(b + j)); /* tau = x - b, float */
		float32x4_t t1 = vsubq_f32(v.hi, vld1q_f32(b + j + 4));
		float64x2_t d[4] = {vcvt_f64_f32(vget_low_f32(t0)), vcvt_high_f64_f32(t0),
		                    vcvt_f64_f32(vget_low_f32(t1)), vcvt_high_f64_f32(t1)};
		for (int k = 0; k < 4; k++) {
			if (first)
				vst1q_f64(acc + j + 2 * k, vmulq_f64(vc, d[k])); /* acc = c * tau */
			else
				vst1q_f64(acc + j + 2 * k,
				          vfmaq_f64(vld1q_f64(acc + j + 2 * k), vc, d[k])); /* fma(c, tau, acc) */
		}
	}
	kern_scalar.accum(dt, p + j * es, b + j, c, acc + j, n - j, first);
}

static inline float32x4_t canon(float32x4_t f)
{
	uint32x4_t ord = vceqq_f32(f, f); /* false for NaN */
	return vbslq_f32(ord, f, vreinterpretq_f32_u32(vdupq_n_u32(0x7fc00000u)));
}

static void neon_finish(enum dtype odt, void *out, const float *b, const double *m, double lambda,
                        size_t n)
{
	unsigned char *p = out;
	size_t j = 0, es = dtype_size(odt);
	float64x2_t vl = vdupq_n_f64(lambda);
	if (odt == DT_F64) {
		kern_scalar.finish(odt, out, b, m, lambda, n);
		return;
	}
	for (; j + 8 <= n; j += 8) {
		float32x4_t b0 = vld1q_f32(b + j), b1 = vld1q_f32(b + j + 4);
		/* r = fma(lambda, m, b) in double, then (float)r */
		float64x2_t r0 = vfmaq_f64(vcvt_f64_f32(vget_low_f32(b0)), vl, vld1q_f64(m + j));
		float64x2_t r1 = vfmaq_f64(vcvt_high_f64_f32(b0), vl, vld1q_f64(m + j + 2));
		float64x2_t r2 = vfmaq_f64(vcvt_f64_f32(vget_low_f32(b1)), vl, vld1q_f64(m + j + 4));
		float64x2_t r3 = vfmaq_f64(vcvt_high_f64_f32(b1), vl, vld1q_f64(m + j + 6));
		struct f8 f = {canon(vcvt_high_f32_f64(vcvt_f32_f64(r0), r1)),
		               canon(vcvt_high_f32_f64(vcvt_f32_f64(r2), r3))};
		st8(odt, p + j * es, f);
	}
	kern_scalar.finish(odt, p + j * es, b + j, m + j, lambda, n - j);
}

static void neon_merge_lin(enum dtype dt, const void *const *x, unsigned nx, const void *base,
                           const double *c, double lambda, enum dtype odt, void *out, size_t n)
{
	const unsigned char *bp = base;
	unsigned char *o = out;
	size_t j = 0, es = dtype_size(dt), os = dtype_size(odt);
	const float64x2_t vl = vdupq_n_f64(lambda);

	if (dt == DT_F64 || odt == DT_F64) {
		kern_scalar.merge_lin(dt, x, nx, base, c, lambda, odt, out, n);
		return;
	}
	for (; j + 8 <= n; j += 8) {
		struct f8 b = ld8(dt, bp + j * es);
		float64x2_t bd[4] = {vcvt_f64_f32(vget_low_f32(b.lo)), vcvt_high_f64_f32(b.lo),
		                     vcvt_f64_f32(vget_low_f32(b.hi)), vcvt_high_f64_f32(b.hi)};
		float64x2_t a[4];
		for (unsigned i = 0; i < nx; i++) {
			struct f8 v = ld8(dt, (const unsigned char *)x[i] + j * es);
			float32x4_t t0 = vsubq_f32(v.lo, b.lo), t1 = vsubq_f32(v.hi, b.hi); /* x - b */
			float64x2_t d[4] = {vcvt_f64_f32(vget_low_f32(t0)), vcvt_high_f64_f32(t0),
			                    vcvt_f64_f32(vget_low_f32(t1)), vcvt_high_f64_f32(t1)};
			float64x2_t ci = vdupq_n_f64(c[i]);
			for (int k = 0; k < 4; k++)
				a[k] = i == 0 ? vmulq_f64(ci, d[k])          /* acc = c * tau */
				              : vfmaq_f64(a[k], ci, d[k]);  /* acc = fma(c, tau, acc) */
		}
		float64x2_t r[4];
		for (int k = 0; k < 4; k++)
			r[k] = vfmaq_f64(bd[k], vl, a[k]); /* fma(lambda, acc, b) */
		struct f8 f = {canon(vcvt_high_f32_f64(vcvt_f32_f64(r[0]), r[1])),
		               canon(vcvt_high_f32_f64(vcvt_f32_f64(r[2]), r[3]))};
		st8(odt, o + j * os, f);
	}
	if (j < n) {
		const void *xt[LINES_MAX_MODELS];
		kern_advance(x, nx, j * es, xt);
		kern_scalar.merge_lin(dt, xt, nx, bp + j * es, c, lambda, odt, o + j * os, n - j);
	}
}

static void neon_norm_lin(enum dtype dt, const void *const *x, unsigned nx, const float *b,
                          const double *c, size_t n, struct kern_norms *acc)
{
	size_t j = 0, es = dtype_size(dt);
	const float64x2_t inf = vdupq_n_f64(INFINITY);
	float64x2_t s1[4], t1[4], s2[4], t2[4];

	if (dt == DT_F64) {
		kern_scalar.norm_lin(dt, x, nx, b, c, n, acc);
		return;
	}
	for (int k = 0; k < 4; k++) {
		s1[k] = vld1q_f64(acc->s1 + 2 * k), t1[k] = vld1q_f64(acc->t1 + 2 * k);
		s2[k] = vld1q_f64(acc->s2 + 2 * k), t2[k] = vld1q_f64(acc->t2 + 2 * k);
	}
	for (; j + 8 <= n; j += 8) {
		float32x4_t b0 = vld1q_f32(b + j), b1 = vld1q_f32(b + j + 4);
		float64x2_t s[4], t[4];
		for (int k = 0; k < 4; k++)
			s[k] = vdupq_n_f64(0.0), t[k] = vdupq_n_f64(0.0);
		for (unsigned i = 0; i < nx; i++) {
			struct f8 v = ld8(dt, (const unsigned char *)x[i] + j * es);
			float32x4_t t0 = vsubq_f32(v.lo, b0), tt1 = vsubq_f32(v.hi, b1); /* tau, float */
			float64x2_t d[4] = {vcvt_f64_f32(vget_low_f32(t0)), vcvt_high_f64_f32(t0),
			                    vcvt_f64_f32(vget_low_f32(tt1)), vcvt_high_f64_f32(tt1)};
			float64x2_t ci = vdupq_n_f64(c[i]);
			for (int k = 0; k < 4; k++) {
				s[k] = vaddq_f64(s[k], d[k]);                  /* s += tau */
				t[k] = vaddq_f64(t[k], vmulq_f64(ci, d[k]));   /* t += c * tau, two roundings */
			}
		}
		for (int k = 0; k < 4; k++) {
			float64x2_t as = vabsq_f64(s[k]), at = vabsq_f64(t[k]);
			/* finite lanes only (|x| < inf is false for NaN) */
			uint64x2_t ok = vandq_u64(vcltq_f64(as, inf), vcltq_f64(at, inf));
			float64x2_t z = vdupq_n_f64(0.0);
			s1[k] = vaddq_f64(s1[k], vbslq_f64(ok, as, z));                       /* += |s| */
			t1[k] = vaddq_f64(t1[k], vbslq_f64(ok, at, z));                       /* += |t| */
			s2[k] = vaddq_f64(s2[k], vbslq_f64(ok, vmulq_f64(s[k], s[k]), z));    /* += s * s */
			t2[k] = vaddq_f64(t2[k], vbslq_f64(ok, vmulq_f64(t[k], t[k]), z));    /* += t * t */
		}
	}
	for (int k = 0; k < 4; k++) {
		vst1q_f64(acc->s1 + 2 * k, s1[k]), vst1q_f64(acc->t1 + 2 * k, t1[k]);
		vst1q_f64(acc->s2 + 2 * k, s2[k]), vst1q_f64(acc->t2 + 2 * k, t2[k]);
	}
	if (j < n) {
		/* the tail continues every lane in order (j is a multiple of 8) */
		const void *xt[LINES_MAX_MODELS];
		kern_advance(x, nx, j * es, xt);
		kern_scalar.norm_lin(dt, xt, nx, b + j, c, n - j, acc);
	}
}

/* ---- DARE ---------------------------------------------------------------------- */

/* The low 64 bits of a * c, lane by lane, for a constant c: Advanced SIMD
 * has no 64-bit multiply, so from 32-bit halves */
static inline uint64x2_t mullo64(uint64x2_t a, uint64_t c)
{
	uint32x2_t alo = vmovn_u64(a), ahi = vshrn_n_u64(a, 32);
	uint32x2_t clo = vdup_n_u32((uint32_t)c), chi = vdup_n_u32((uint32_t)(c >> 32));
	uint32x2_t cross = vmla_u32(vmul_u32(ahi, clo), alo, chi);
	return vaddq_u64(vmull_u32(alo, clo), vshlq_n_u64(vmovl_u32(cross), 32));
}

/* The 53-bit draws of two elements, h = their idx * KERN_DARE_STEP */
static inline uint64x2_t draw2(uint64_t key, uint64x2_t h)
{
	uint64x2_t x = vaddq_u64(veorq_u64(vdupq_n_u64(key), h), vdupq_n_u64(0x9e3779b97f4a7c15ull));
	x = mullo64(veorq_u64(x, vshrq_n_u64(x, 30)), 0xbf58476d1ce4e5b9ull);
	x = mullo64(veorq_u64(x, vshrq_n_u64(x, 27)), 0x94d049bb133111ebull);
	return vshrq_n_u64(veorq_u64(x, vshrq_n_u64(x, 31)), 11);
}

/* idx * KERN_DARE_STEP of elements idx0 and idx0 + 1 (modulo 2^64) */
static inline uint64x2_t idx_steps2(uint64_t idx0)
{
	uint64_t h[2] = {idx0 * KERN_DARE_STEP, (idx0 + 1) * KERN_DARE_STEP};
	return vld1q_u64(h);
}

/* DARE's drop, two elements a step: the quotient in float64 (divided),
 * rounded once to float32, a dropped value masked to +0.0 */
static void neon_dare_drop(float *tp, size_t n, uint64_t key, uint64_t idx0, uint64_t limit,
                           double density)
{
	const uint64x2_t lim = vdupq_n_u64(limit), step = vdupq_n_u64(2 * KERN_DARE_STEP);
	const float64x2_t dd = vdupq_n_f64(density);
	uint64x2_t h = idx_steps2(idx0);
	size_t j = 0;

	for (; j + 2 <= n; j += 2) {
		uint64x2_t keep = vcltq_u64(draw2(key, h), lim);
		float64x2_t q = vdivq_f64(vcvt_f64_f32(vld1_f32(tp + j)), dd);
		q = vreinterpretq_f64_u64(vandq_u64(vreinterpretq_u64_f64(q), keep));
		vst1_f32(tp + j, vcvt_f32_f64(q));
		h = vaddq_u64(h, step);
	}
	if (j < n)
		kern_scalar.dare_drop(tp + j, n - j, key, idx0 + j, limit, density);
}

/* DARE's drops of a tile's tasks and their sum, two elements a step */
static void neon_dare_sum(const float *tp, size_t n, unsigned nx, const uint64_t *key,
                          uint64_t idx0, const uint64_t *limit, const double *div, double *mtl)
{
	const uint64x2_t step = vdupq_n_u64(2 * KERN_DARE_STEP);
	uint64x2_t h = idx_steps2(idx0);
	size_t j = 0;

	for (; j + 2 <= n; j += 2) {
		float64x2_t acc = vdupq_n_f64(0.0);
		for (unsigned i = 0; i < nx; i++) {
			uint64x2_t keep = vcltq_u64(draw2(key[i], h), vdupq_n_u64(limit[i]));
			float64x2_t q = vdivq_f64(vcvt_f64_f32(vld1_f32(tp + (size_t)i * n + j)),
			                          vdupq_n_f64(div[i]));
			q = vcvt_f64_f32(vcvt_f32_f64(q));
			acc = vaddq_f64(acc, vreinterpretq_f64_u64(vandq_u64(vreinterpretq_u64_f64(q), keep)));
		}
		vst1q_f64(mtl + j, acc);
		h = vaddq_u64(h, step);
	}
	for (; j < n; j++) { /* the tail, by the definition */
		double m = 0.0;
		for (unsigned i = 0; i < nx; i++)
			m += (double)kern_dare_q(tp[(size_t)i * n + j], key[i], idx0 + j, limit[i], div[i]);
		mtl[j] = m;
	}
}

/* DARE's keep test alone, four elements a step */
static void neon_dare_keep(const float *tp, float *out, size_t n, uint64_t key, uint64_t idx0,
                           uint64_t limit)
{
	const uint64x2_t lim = vdupq_n_u64(limit), step = vdupq_n_u64(2 * KERN_DARE_STEP);
	uint64x2_t h0 = idx_steps2(idx0), h1 = vaddq_u64(h0, step);
	const uint64x2_t step4 = vaddq_u64(step, step);
	size_t j = 0;

	for (; j + 4 <= n; j += 4) {
		uint32x4_t m = vcombine_u32(vmovn_u64(vcltq_u64(draw2(key, h0), lim)),
		                            vmovn_u64(vcltq_u64(draw2(key, h1), lim)));
		vst1q_f32(out + j, vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(vld1q_f32(tp + j)), m)));
		h0 = vaddq_u64(h0, step4), h1 = vaddq_u64(h1, step4);
	}
	if (j < n)
		kern_scalar.dare_keep(tp + j, out + j, n - j, key, idx0 + j, limit);
}

const struct kern kern_neon = {
	.name = "neon",
	.decode = neon_decode,
	.encode = neon_encode,
	.accum = neon_accum,
	.finish = neon_finish,
	.merge_lin = neon_merge_lin,
	.norm_lin = neon_norm_lin,
	.dare_drop = neon_dare_drop,
	.dare_sum = neon_dare_sum,
	.dare_keep = neon_dare_keep,
	.qk_fit8 = kern_neon_qk_fit8,
	.q6_fit8 = kern_neon_q6_fit8,
};
