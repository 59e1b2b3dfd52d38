/*
 * kern_qk_neon.c -- the sub-block fits of GGUF's K types with Advanced
 * SIMD (aarch64): four sub-blocks side by side, sub-block j in lane j,
 * called twice for the eight of a Q4_K/Q5_K super-block or of half a Q6_K
 * one. The same design as kern_qk_avx2.c: each lane performs the scalar
 * fit's operations (fit_scale_min and fit_scale_sym in
 * src/core/ggml_quants.c) in the scalar order, without fused multiply-add
 * (-ffp-contract=off), branches as masks. Minimum and maximum are written
 * as compare-and-select: FMIN/FMAX order -0 below +0 and pass NaNs on,
 * which the scalar comparisons do not.
 */
#include "config.h"

#include <arm_neon.h>
#include <string.h>

#include "kernels.h"

/* ggml's nearest_int: add 1.5 * 2^23, keep the low mantissa bits. */
static inline int32x4_t nearest4(float32x4_t f)
{
	const uint32x4_t v = vreinterpretq_u32_f32(vaddq_f32(f, vdupq_n_f32(12582912.0f)));
	return vsubq_s32(vreinterpretq_s32_u32(vandq_u32(v, vdupq_n_u32(0x007fffff))), vdupq_n_s32(0x00400000));
}

static inline int32x4_t clamp4(int32x4_t l, int lo, int hi)
{
	return vmaxq_s32(vdupq_n_s32(lo), vminq_s32(vdupq_n_s32(hi), l));
}

static inline float32x4_t sel(uint32x4_t m, float32x4_t a, float32x4_t b) { return vbslq_f32(m, a, b); }

/* Four sub-blocks of 32 (x, w at 32 j), lanes 0..3. */
static void fit4(const float *x, const float *w, int nmax, float rmin, float rdelta, int nstep, uint8_t *L,
                 float *scale_out, float *min_out)
{
	float32x4_t xt[32], wt[32];
	int32x4_t lbest[32], laux[32];
	for (int i = 0; i < 32; i++) {
		const float xs[4] = {x[i], x[32 + i], x[64 + i], x[96 + i]};
		const float ws[4] = {w[i], w[32 + i], w[64 + i], w[96 + i]};
		xt[i] = vld1q_f32(xs);
		wt[i] = vld1q_f32(ws);
	}
	const float32x4_t zero = vdupq_n_f32(0.0f);
	float32x4_t min = xt[0], max = xt[0], sum_w = wt[0], sum_x = vmulq_f32(wt[0], xt[0]);
	for (int i = 1; i < 32; i++) {
		min = sel(vcltq_f32(xt[i], min), xt[i], min); /* x < min ? x : min */
		max = sel(vcgtq_f32(xt[i], max), xt[i], max); /* x > max ? x : max */
		sum_w = vaddq_f32(sum_w, wt[i]);
		sum_x = vaddq_f32(sum_x, vmulq_f32(wt[i], xt[i]));
	}
	min = sel(vcgtq_f32(min, zero), zero, min);
	const uint32x4_t flat = vceqq_f32(max, min);
	float32x4_t iscale = vdivq_f32(vdupq_n_f32((float)nmax), vsubq_f32(max, min));
	float32x4_t scale = vdivq_f32(vdupq_n_f32(1.0f), iscale), best = zero;
	for (int i = 0; i < 32; i++) {
		lbest[i] = clamp4(nearest4(vmulq_f32(iscale, vsubq_f32(xt[i], min))), 0, nmax);
		const float32x4_t diff =
		    vsubq_f32(vaddq_f32(vmulq_f32(scale, vcvtq_f32_s32(lbest[i])), min), xt[i]);
		best = vaddq_f32(best, vmulq_f32(wt[i], vmulq_f32(diff, diff)));
	}
	float32x4_t bmin = min; /* the best fit's offset: the next grids start there */
	for (int is = 0; is <= nstep; is++) {
		const float num = rmin + rdelta * (float)is + (float)nmax;
		iscale = vdivq_f32(vdupq_n_f32(num), vsubq_f32(max, bmin));
		float32x4_t sum_l = zero, sum_l2 = zero, sum_xl = zero;
		for (int i = 0; i < 32; i++) {
			laux[i] = clamp4(nearest4(vmulq_f32(iscale, vsubq_f32(xt[i], bmin))), 0, nmax);
			const float32x4_t fl = vcvtq_f32_s32(laux[i]), wl = vmulq_f32(wt[i], fl);
			sum_l = vaddq_f32(sum_l, wl);
			sum_l2 = vaddq_f32(sum_l2, vmulq_f32(wl, fl));
			sum_xl = vaddq_f32(sum_xl, vmulq_f32(wl, xt[i]));
		}
		const float32x4_t D = vsubq_f32(vmulq_f32(sum_w, sum_l2), vmulq_f32(sum_l, sum_l));
		const uint32x4_t dpos = vcgtq_f32(D, zero);
		if (vmaxvq_u32(dpos) == 0)
			continue;
		float32x4_t ts = vdivq_f32(vsubq_f32(vmulq_f32(sum_w, sum_xl), vmulq_f32(sum_x, sum_l)), D);
		float32x4_t tm = vdivq_f32(vsubq_f32(vmulq_f32(sum_l2, sum_x), vmulq_f32(sum_l, sum_xl)), D);
		const uint32x4_t mpos = vcgtq_f32(tm, zero);
		tm = sel(mpos, zero, tm);
		ts = sel(mpos, vdivq_f32(sum_xl, sum_l2), ts);
		float32x4_t err = zero;
		for (int i = 0; i < 32; i++) {
			const float32x4_t diff =
			    vsubq_f32(vaddq_f32(vmulq_f32(ts, vcvtq_f32_s32(laux[i])), tm), xt[i]);
			err = vaddq_f32(err, vmulq_f32(wt[i], vmulq_f32(diff, diff)));
		}
		const uint32x4_t take = vandq_u32(dpos, vcltq_f32(err, best));
		if (vmaxvq_u32(take) == 0)
			continue;
		for (int i = 0; i < 32; i++)
			lbest[i] = vbslq_s32(take, laux[i], lbest[i]);
		best = sel(take, err, best);
		scale = sel(take, ts, scale);
		bmin = sel(take, tm, bmin);
	}
	scale = sel(flat, zero, scale);
	bmin = sel(flat, min, bmin);
	float sc[4], mn[4];
	vst1q_f32(sc, scale);
	vst1q_f32(mn, bmin);
	for (int j = 0; j < 4; j++) {
		scale_out[j] = sc[j];
		min_out[j] = -mn[j];
	}
	for (int i = 0; i < 32; i++) {
		int32_t l[4];
		vst1q_s32(l, vbslq_s32(flat, vdupq_n_s32(0), lbest[i]));
		for (int j = 0; j < 4; j++)
			L[32 * j + i] = (uint8_t)l[j];
	}
}

void kern_neon_qk_fit8(const float *x, const float *w, int nmax, float rmin, float rdelta, int nstep,
                       uint8_t *L, float *scale, float *the_min)
{
	fit4(x, w, nmax, rmin, rdelta, nstep, L, scale, the_min);
	fit4(x + 128, w + 128, nmax, rmin, rdelta, nstep, L + 128, scale + 4, the_min + 4);
}

/* Four 16-element sub-blocks of Q6_K (x at 16 j). */
static void fit4_sym(const float *x, int nmax, int8_t *L, float *scale_out)
{
	float32x4_t xt[16], wx[16];
	int32x4_t lbest[16], laux[16];
	const float32x4_t zero = vdupq_n_f32(0.0f);
	for (int i = 0; i < 16; i++) {
		const float xs[4] = {x[i], x[16 + i], x[32 + i], x[48 + i]};
		xt[i] = vld1q_f32(xs);
	}
	float32x4_t amax = zero, max = zero;
	for (int i = 0; i < 16; i++) {
		const float32x4_t ax = vabsq_f32(xt[i]);
		const uint32x4_t gt = vcgtq_f32(ax, amax);
		amax = sel(gt, ax, amax);
		max = sel(gt, xt[i], max);
	}
	const uint32x4_t flat = vcltq_f32(amax, vdupq_n_f32(1e-15f));
	float32x4_t iscale = vdivq_f32(vdupq_n_f32((float)-nmax), max);
	float32x4_t sumlx = zero, suml2 = zero;
	for (int i = 0; i < 16; i++) {
		const float32x4_t w = vmulq_f32(xt[i], xt[i]);
		wx[i] = vmulq_f32(w, xt[i]);
		lbest[i] = clamp4(nearest4(vmulq_f32(iscale, xt[i])), -nmax, nmax - 1);
		const float32x4_t fl = vcvtq_f32_s32(lbest[i]);
		sumlx = vaddq_f32(sumlx, vmulq_f32(wx[i], fl));
		suml2 = vaddq_f32(suml2, vmulq_f32(vmulq_f32(w, fl), fl));
	}
	float32x4_t scale = sel(vceqq_f32(suml2, zero), zero, vdivq_f32(sumlx, suml2));
	float32x4_t best = vmulq_f32(scale, sumlx);
	for (int is = -9; is <= 9; is++) {
		if (is == 0)
			continue;
		const float num = -((float)nmax + 0.1f * (float)is);
		iscale = vdivq_f32(vdupq_n_f32(num), max);
		sumlx = suml2 = zero;
		for (int i = 0; i < 16; i++) {
			const float32x4_t w = vmulq_f32(xt[i], xt[i]);
			laux[i] = clamp4(nearest4(vmulq_f32(iscale, xt[i])), -nmax, nmax - 1);
			const float32x4_t fl = vcvtq_f32_s32(laux[i]);
			sumlx = vaddq_f32(sumlx, vmulq_f32(wx[i], fl));
			suml2 = vaddq_f32(suml2, vmulq_f32(vmulq_f32(w, fl), fl));
		}
		const uint32x4_t take = vandq_u32(vcgtq_f32(suml2, zero),
		                                  vcgtq_f32(vmulq_f32(sumlx, sumlx), vmulq_f32(best, suml2)));
		if (vmaxvq_u32(take) == 0)
			continue;
		for (int i = 0; i < 16; i++)
			lbest[i] = vbslq_s32(take, laux[i], lbest[i]);
		const float32x4_t s = vdivq_f32(sumlx, suml2);
		scale = sel(take, s, scale);
		best = sel(take, vmulq_f32(s, sumlx), best);
	}
	vst1q_f32(scale_out, sel(flat, zero, scale));
	for (int i = 0; i < 16; i++) {
		int32_t l[4];
		vst1q_s32(l, vbslq_s32(flat, vdupq_n_s32(0), vaddq_s32(lbest[i], vdupq_n_s32(nmax))));
		for (int j = 0; j < 4; j++)
			L[16 * j + i] = (int8_t)l[j];
	}
}

void kern_neon_q6_fit8(const float *x, int nmax, int8_t *L, float *scale)
{
	fit4_sym(x, nmax, L, scale);
	fit4_sym(x + 64, nmax, L + 64, scale + 4);
}
