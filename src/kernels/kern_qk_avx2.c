/*
 * kern_qk_avx2.c -- the sub-block fits of GGUF's K types with AVX2: for
 * Q4_K/Q5_K the eight 32-element sub-blocks of a super-block side by
 * side, sub-block j in lane j; for Q6_K eight of its sixteen 16-element
 * sub-blocks. Part of the AVX2 kernels (compiled with their flags, called
 * only after kern_dispatch.c has checked the CPU).
 *
 * The scalar definitions are fit_scale_min and fit_scale_sym in
 * src/core/ggml_quants.c (ggml's make_qkx2_quants and make_qx_quants). Each lane runs exactly its sequence of operations on
 * its own sub-block: the sums over the 32 elements stay sequential within
 * the lane (element 0 first), every multiply and add is a separate IEEE
 * operation (no FMA: -ffp-contract=off keeps the compiler from fusing),
 * division is the correctly rounded vdivps, and the branches of the scalar
 * code become masks: a candidate grid replaces the best one in the lanes
 * where its determinant is positive and its error strictly lower. Lanes
 * whose sub-block is constant compute garbage (divisions by zero, NaN)
 * that the final blend discards, as the scalar code returns early there.
 * So the bits are those of the scalar fit, lane by lane.
 */
#include "config.h"

#include <immintrin.h>
#include <string.h>

#include "kernels.h"

/* ggml's nearest_int: add 1.5 * 2^23, keep the low mantissa bits. */
static inline __m256i nearest8(__m256 f)
{
	const __m256 v = _mm256_add_ps(f, _mm256_set1_ps(12582912.0f));
	const __m256i m = _mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x007fffff));
	return _mm256_sub_epi32(m, _mm256_set1_epi32(0x00400000));
}

/* clamp(nearest_int(iscale * xm), 0, nmax) */
static inline __m256i level8(__m256 iscale, __m256 xm, __m256i nmax)
{
	const __m256i l = nearest8(_mm256_mul_ps(iscale, xm));
	return _mm256_max_epi32(_mm256_setzero_si256(), _mm256_min_epi32(nmax, l));
}

void kern_avx2_qk_fit8(const float *x, const float *w, int nmax, float rmin, float rdelta, int nstep,
                       uint8_t *L, float *scale_out, float *min_out)
{
	/* element i of the eight sub-blocks: xt[i], wt[i] */
	__m256 xt[32], wt[32];
	__m256i lbest[32], laux[32];
	for (int i = 0; i < 32; i++) {
		xt[i] = _mm256_setr_ps(x[i], x[32 + i], x[64 + i], x[96 + i], x[128 + i], x[160 + i],
		                       x[192 + i], x[224 + i]);
		wt[i] = _mm256_setr_ps(w[i], w[32 + i], w[64 + i], w[96 + i], w[128 + i], w[160 + i],
		                       w[192 + i], w[224 + i]);
	}
	const __m256 zero = _mm256_setzero_ps();
	const __m256i vnmax = _mm256_set1_epi32(nmax);

	/* min, max, sum w, sum w x in the scalar order */
	__m256 min = xt[0], max = xt[0], sum_w = wt[0], sum_x = _mm256_mul_ps(wt[0], xt[0]);
	for (int i = 1; i < 32; i++) {
		min = _mm256_min_ps(xt[i], min); /* x < min ? x : min */
		max = _mm256_max_ps(xt[i], max); /* x > max ? x : max */
		sum_w = _mm256_add_ps(sum_w, wt[i]);
		sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(wt[i], xt[i]));
	}
	min = _mm256_blendv_ps(min, zero, _mm256_cmp_ps(min, zero, _CMP_GT_OQ)); /* min > 0: 0 */
	const __m256 flat = _mm256_cmp_ps(max, min, _CMP_EQ_OQ);             /* the early return */

	/* the first grid: nmax levels over the range */
	__m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)nmax), _mm256_sub_ps(max, min));
	__m256 scale = _mm256_div_ps(_mm256_set1_ps(1.0f), iscale), best = zero;
	for (int i = 0; i < 32; i++) {
		lbest[i] = level8(iscale, _mm256_sub_ps(xt[i], min), vnmax);
		/* diff = scale * L + min - x; best += w * diff^2 */
		__m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, _mm256_cvtepi32_ps(lbest[i])), min), xt[i]);
		best = _mm256_add_ps(best, _mm256_mul_ps(wt[i], _mm256_mul_ps(diff, diff)));
	}
	/* the offset the grids start from is the best fit's so far: ggml
	 * updates min with each better candidate */
	__m256 bmin = min;
	for (int is = 0; is <= nstep; is++) {
		/* (rmin + rdelta * is + nmax) / (max - min) */
		const float num = rmin + rdelta * (float)is + (float)nmax;
		iscale = _mm256_div_ps(_mm256_set1_ps(num), _mm256_sub_ps(max, bmin));
		__m256 sum_l = zero, sum_l2 = zero, sum_xl = zero;
		for (int i = 0; i < 32; i++) {
			laux[i] = level8(iscale, _mm256_sub_ps(xt[i], bmin), vnmax);
			const __m256 fl = _mm256_cvtepi32_ps(laux[i]), wl = _mm256_mul_ps(wt[i], fl);
			sum_l = _mm256_add_ps(sum_l, wl);                           /* w l */
			sum_l2 = _mm256_add_ps(sum_l2, _mm256_mul_ps(wl, fl));      /* (w l) l */
			sum_xl = _mm256_add_ps(sum_xl, _mm256_mul_ps(wl, xt[i]));   /* (w l) x */
		}
		/* D = sum_w sum_l2 - sum_l^2 */
		const __m256 D = _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_l2), _mm256_mul_ps(sum_l, sum_l));
		const __m256 dpos = _mm256_cmp_ps(D, zero, _CMP_GT_OQ);
		if (_mm256_movemask_ps(dpos) == 0)
			continue;
		/* this_scale = (sum_w sum_xl - sum_x sum_l) / D,
		 * this_min = (sum_l2 sum_x - sum_l sum_xl) / D */
		__m256 ts = _mm256_div_ps(
		    _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_xl), _mm256_mul_ps(sum_x, sum_l)), D);
		__m256 tm = _mm256_div_ps(
		    _mm256_sub_ps(_mm256_mul_ps(sum_l2, sum_x), _mm256_mul_ps(sum_l, sum_xl)), D);
		/* an offset above zero: 0, and the scale refitted alone */
		const __m256 mpos = _mm256_cmp_ps(tm, zero, _CMP_GT_OQ);
		tm = _mm256_blendv_ps(tm, zero, mpos);
		ts = _mm256_blendv_ps(ts, _mm256_div_ps(sum_xl, sum_l2), mpos);
		__m256 err = zero;
		for (int i = 0; i < 32; i++) {
			__m256 diff = _mm256_sub_ps(
			    _mm256_add_ps(_mm256_mul_ps(ts, _mm256_cvtepi32_ps(laux[i])), tm), xt[i]);
			err = _mm256_add_ps(err, _mm256_mul_ps(wt[i], _mm256_mul_ps(diff, diff)));
		}
		const __m256 take = _mm256_and_ps(dpos, _mm256_cmp_ps(err, best, _CMP_LT_OQ));
		if (_mm256_movemask_ps(take) == 0)
			continue;
		const __m256i ti = _mm256_castps_si256(take);
		for (int i = 0; i < 32; i++)
			lbest[i] = _mm256_blendv_epi8(lbest[i], laux[i], ti);
		best = _mm256_blendv_ps(best, err, take);
		scale = _mm256_blendv_ps(scale, ts, take);
		bmin = _mm256_blendv_ps(bmin, tm, take);
	}
	/* constant sub-blocks: levels 0, scale 0, offset -min (the clamped min) */
	const __m256i fi = _mm256_castps_si256(flat);
	scale = _mm256_blendv_ps(scale, zero, flat);
	bmin = _mm256_blendv_ps(bmin, min, flat);
	float sc[8], mn[8];
	_mm256_storeu_ps(sc, scale);
	_mm256_storeu_ps(mn, bmin);
	for (int j = 0; j < 8; j++) {
		scale_out[j] = sc[j];
		min_out[j] = -mn[j];
	}
	for (int i = 0; i < 32; i++) {
		int32_t l[8];
		_mm256_storeu_si256((__m256i *)l, _mm256_andnot_si256(fi, lbest[i]));
		for (int j = 0; j < 8; j++)
			L[32 * j + i] = (uint8_t)l[j];
	}
}

/*
 * Q6_K's symmetric fit (fit_scale_sym in ggml_quants.c, ggml's
 * make_qx_quants with weights x^2) of eight 16-element sub-blocks at once,
 * sub-block j in lane j: x is 128 floats (sub-block j at 16 j), L gets the
 * 128 levels (offset by nmax), scale[j] the fit. As above, each lane does
 * the scalar operations in the scalar order; a neighbouring grid replaces
 * the best one where its sums are strictly better; all-zero sub-blocks
 * (largest magnitude below 1e-15) get levels 0 and scale 0.
 */
void kern_avx2_q6_fit8(const float *x, int nmax, int8_t *L, float *scale_out)
{
	__m256 xt[16], wx[16];
	__m256i lbest[16], laux[16];
	const __m256 zero = _mm256_setzero_ps();
	const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
	const __m256i lo = _mm256_set1_epi32(-nmax), hi = _mm256_set1_epi32(nmax - 1);
	for (int i = 0; i < 16; i++)
		xt[i] = _mm256_setr_ps(x[i], x[16 + i], x[32 + i], x[48 + i], x[64 + i], x[80 + i], x[96 + i],
		                       x[112 + i]);
	/* the first element of largest magnitude, its sign kept */
	__m256 amax = zero, max = zero;
	for (int i = 0; i < 16; i++) {
		const __m256 ax = _mm256_and_ps(xt[i], absmask);
		const __m256 gt = _mm256_cmp_ps(ax, amax, _CMP_GT_OQ); /* ax > amax */
		amax = _mm256_blendv_ps(amax, ax, gt);
		max = _mm256_blendv_ps(max, xt[i], gt);
	}
	const __m256 flat = _mm256_cmp_ps(amax, _mm256_set1_ps(1e-15f), _CMP_LT_OQ);
	/* iscale = -nmax / max; w = x^2, and w x as the sums use it */
	__m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)-nmax), max);
	__m256 sumlx = zero, suml2 = zero;
	for (int i = 0; i < 16; i++) {
		const __m256 w = _mm256_mul_ps(xt[i], xt[i]);
		wx[i] = _mm256_mul_ps(w, xt[i]);
		const __m256i l = _mm256_max_epi32(lo, _mm256_min_epi32(hi, nearest8(_mm256_mul_ps(iscale, xt[i]))));
		const __m256 fl = _mm256_cvtepi32_ps(l);
		lbest[i] = l;
		sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(wx[i], fl));                /* (w x) l */
		suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w, fl), fl)); /* (w l) l */
	}
	/* scale = suml2 ? sumlx / suml2 : 0 */
	__m256 scale = _mm256_blendv_ps(_mm256_div_ps(sumlx, suml2), zero, _mm256_cmp_ps(suml2, zero, _CMP_EQ_OQ));
	__m256 best = _mm256_mul_ps(scale, sumlx);
	for (int is = -9; is <= 9; is++) {
		if (is == 0)
			continue;
		const float num = -((float)nmax + 0.1f * (float)is);
		iscale = _mm256_div_ps(_mm256_set1_ps(num), max);
		sumlx = suml2 = zero;
		for (int i = 0; i < 16; i++) {
			const __m256 w = _mm256_mul_ps(xt[i], xt[i]);
			laux[i] = _mm256_max_epi32(lo, _mm256_min_epi32(hi, nearest8(_mm256_mul_ps(iscale, xt[i]))));
			const __m256 fl = _mm256_cvtepi32_ps(laux[i]);
			sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(wx[i], fl));
			suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w, fl), fl));
		}
		/* suml2 > 0 && sumlx^2 > best suml2 */
		const __m256 take = _mm256_and_ps(_mm256_cmp_ps(suml2, zero, _CMP_GT_OQ),
		                                  _mm256_cmp_ps(_mm256_mul_ps(sumlx, sumlx),
		                                                _mm256_mul_ps(best, suml2), _CMP_GT_OQ));
		if (_mm256_movemask_ps(take) == 0)
			continue;
		const __m256i ti = _mm256_castps_si256(take);
		for (int i = 0; i < 16; i++)
			lbest[i] = _mm256_blendv_epi8(lbest[i], laux[i], ti);
		const __m256 s = _mm256_div_ps(sumlx, suml2);
		scale = _mm256_blendv_ps(scale, s, take);
		best = _mm256_blendv_ps(best, _mm256_mul_ps(s, sumlx), take);
	}
	const __m256i fi = _mm256_castps_si256(flat);
	_mm256_storeu_ps(scale_out, _mm256_blendv_ps(scale, zero, flat));
	for (int i = 0; i < 16; i++) {
		int32_t l[8];
		/* levels + nmax, or 0 in an all-zero sub-block */
		_mm256_storeu_si256((__m256i *)l,
		                    _mm256_andnot_si256(fi, _mm256_add_epi32(lbest[i], _mm256_set1_epi32(nmax))));
		for (int j = 0; j < 8; j++)
			L[16 * j + i] = (int8_t)l[j];
	}
}
