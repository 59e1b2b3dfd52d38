/*
 * kern_avx512.c -- the TIES election with AVX-512 (F, DQ, BW, VL), sixteen
 * elements at a time. The rest of the "avx512" table is the AVX2 one
 * (kern_dispatch.c makes it): only the election gains from the mask
 * registers, which take the place of the blends and the masking ANDs.
 *
 * The operations are those of avx2_ties_elect (kern_avx2.c), in the same
 * order, so the bits are the scalar kernel's: P and N are the float64
 * sums in task order of the kept positive values and of the other kept
 * ones (a NaN among them makes S = P + N NaN); a value left out of P or N
 * is one the AVX2 kernel adds as +0.0, which changes nothing.
 */
#include "config.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels.h"

static inline __attribute__((always_inline)) void
elect16(const float *tp, size_t n, size_t j, unsigned nx, const __m512i *tm, int maj, double *mtl,
        signed char *sign)
{
	const __m512i mask = _mm512_set1_epi32(0x7fffffff), one = _mm512_set1_epi32(1);
	const __m512d zero = _mm512_setzero_pd();
	const __m512 zf = _mm512_setzero_ps();
	__m512d pl = zero, ph = zero, nl = zero, nh = zero;
	__m512i cp = _mm512_setzero_si512(), cn = _mm512_setzero_si512();
	__mmask16 nan = 0;

#pragma GCC unroll 16
	for (unsigned i = 0; i < nx; i++) {
		__m512 v = _mm512_loadu_ps(tp + (size_t)i * n + j);
		__mmask16 keep = _mm512_cmpgt_epi32_mask(_mm512_and_si512(_mm512_castps_si512(v), mask), tm[i]);
		/* kept and positive; kept and not (negative, or NaN) */
		__mmask16 kp = _mm512_mask_cmp_ps_mask(keep, v, zf, _CMP_GT_OQ), kn = _kandn_mask16(kp, keep);
		/* the kept values as doubles, +0 for the others */
		__m512d dl = _mm512_maskz_cvtps_pd((__mmask8)keep, _mm512_castps512_ps256(v));
		__m512d dh = _mm512_maskz_cvtps_pd((__mmask8)(keep >> 8), _mm512_extractf32x8_ps(v, 1));
		cp = _mm512_mask_add_epi32(cp, kp, cp, one);
		cn = _mm512_mask_add_epi32(cn, kn, cn, one);
		pl = _mm512_mask_add_pd(pl, (__mmask8)kp, pl, dl); /* P += v when v > 0 */
		ph = _mm512_mask_add_pd(ph, (__mmask8)(kp >> 8), ph, dh);
		nl = _mm512_mask_add_pd(nl, (__mmask8)kn, nl, dl); /* N += the others */
		nh = _mm512_mask_add_pd(nh, (__mmask8)(kn >> 8), nh, dh);
	}
	/* sign(S): a NaN S compares neither way */
	__m512d sl = _mm512_add_pd(pl, nl), sh = _mm512_add_pd(ph, nh);
	__mmask16 gt = (__mmask16)(_mm512_cmp_pd_mask(sl, zero, _CMP_GT_OQ) |
	                           (unsigned)_mm512_cmp_pd_mask(sh, zero, _CMP_GT_OQ) << 8);
	__mmask16 lt = (__mmask16)(_mm512_cmp_pd_mask(sl, zero, _CMP_LT_OQ) |
	                           (unsigned)_mm512_cmp_pd_mask(sh, zero, _CMP_LT_OQ) << 8);
	/* the elected sign is +: S > 0, or S == 0 (or NaN) with a + majority */
	__mmask16 e = maj > 0 ? (__mmask16)~lt : gt;
	/* the mean, or +0 when nothing agrees: then the sum is +0, and a count
	 * of at least 1 keeps it +0 */
	__m512i cnt = _mm512_max_epi32(_mm512_mask_blend_epi32(e, cn, cp), one);
	__m512d cl = _mm512_cvtepi32_pd(_mm512_castsi512_si256(cnt));
	__m512d ch = _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(cnt, 1));
	__m512d ml = _mm512_div_pd(_mm512_mask_blend_pd((__mmask8)e, nl, pl), cl);
	__m512d mh = _mm512_div_pd(_mm512_mask_blend_pd((__mmask8)(e >> 8), nh, ph), ch);
	/* sign = (S > 0) - (S < 0) */
	__m128i sg = _mm_sub_epi8(_mm_movm_epi8(lt), _mm_movm_epi8(gt));
	if (_mm512_cmp_pd_mask(sl, sh, _CMP_UNORD_Q)) {
		/* some S is NaN: a kept NaN makes the element NaN, with sign +1 */
		for (unsigned i = 0; i < nx; i++) {
			__m512i a = _mm512_and_si512(_mm512_castps_si512(_mm512_loadu_ps(tp + (size_t)i * n + j)), mask);
			nan |= (__mmask16)(_mm512_cmpgt_epi32_mask(a, tm[i]) &
			                   _mm512_cmpgt_epi32_mask(a, _mm512_set1_epi32(0x7f800000)));
		}
		ml = _mm512_mask_mov_pd(ml, (__mmask8)nan, _mm512_set1_pd(NAN));
		mh = _mm512_mask_mov_pd(mh, (__mmask8)(nan >> 8), _mm512_set1_pd(NAN));
		sg = _mm_mask_mov_epi8(sg, nan, _mm_set1_epi8(1));
	}
	_mm512_storeu_pd(mtl + j, ml);
	_mm512_storeu_pd(mtl + j + 8, mh);
	_mm_storeu_si128((__m128i *)(sign + j), sg);
}

static inline __attribute__((always_inline)) void
elect_body(const float *tp, size_t n, unsigned nx, const uint32_t *thr, int maj, double *mtl,
           signed char *sign)
{
	__m512i tm[16];
	size_t j = 0;

	/* kept is |v|'s bits > max(thr, 1) - 1, signed: as kern_avx2.c */
	for (unsigned i = 0; i < nx; i++) {
		uint32_t t = thr[i] ? thr[i] : 1;
		tm[i] = _mm512_set1_epi32((int)((t < 0x80000000u ? t : 0x80000000u) - 1));
	}
	for (; j + 16 <= n; j += 16)
		elect16(tp, n, j, nx, tm, maj, mtl, sign);
	if (j < n) {
		/* the tail through the AVX2 kernel, on a compact copy */
		float t[16 * 16];
		size_t m = n - j;
		for (unsigned i = 0; i < nx; i++)
			memcpy(t + (size_t)i * m, tp + (size_t)i * n + j, m * sizeof(float));
		kern_avx2.ties_elect(t, m, nx, thr, maj, mtl + j, sign + j);
	}
}

static void avx512_ties_elect(const float *tp, size_t n, unsigned nx, const uint32_t *thr, int maj,
                              double *mtl, signed char *sign)
{
	switch (nx) {
	case 1: elect_body(tp, n, 1, thr, maj, mtl, sign); break;
	case 2: elect_body(tp, n, 2, thr, maj, mtl, sign); break;
	case 3: elect_body(tp, n, 3, thr, maj, mtl, sign); break;
	case 4: elect_body(tp, n, 4, thr, maj, mtl, sign); break;
	case 5: elect_body(tp, n, 5, thr, maj, mtl, sign); break;
	case 6: elect_body(tp, n, 6, thr, maj, mtl, sign); break;
	case 7: elect_body(tp, n, 7, thr, maj, mtl, sign); break;
	case 8: elect_body(tp, n, 8, thr, maj, mtl, sign); break;
	default:
		if (nx <= 16)
			elect_body(tp, n, nx, thr, maj, mtl, sign);
		else
			kern_avx2.ties_elect(tp, n, nx, thr, maj, mtl, sign);
	}
}

void kern_avx512_fill(struct kern *k)
{
	*k = kern_avx2;
	k->name = "avx512";
	k->ties_elect = avx512_ties_elect;
}
