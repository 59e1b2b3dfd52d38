/*
 * kern_avx512.c -- the TIES kernels with AVX-512 (F, DQ, BW, VL), sixteen
 * elements at a time: the election, the select pass, the tiles of task
 * vectors, the threshold pass's sums and the add-back. The rest of the "avx512" table is the AVX2
 * one (kern_dispatch.c makes it). These gain from the mask registers,
 * which take the place of blends and masking ANDs, and from narrowing
 * and widening in one instruction; every one is tested bit-identical to
 * the scalar kernel.
 *
 * The election:
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
		__m512d dh = _mm512_maskz_cvtps_pd((__mmask8)_kshiftri_mask16(keep, 8), _mm512_extractf32x8_ps(v, 1));
		cp = _mm512_mask_add_epi32(cp, kp, cp, one);
		cn = _mm512_mask_add_epi32(cn, kn, cn, one);
		pl = _mm512_mask_add_pd(pl, (__mmask8)kp, pl, dl); /* P += v when v > 0 */
		ph = _mm512_mask_add_pd(ph, (__mmask8)_kshiftri_mask16(kp, 8), ph, dh);
		nl = _mm512_mask_add_pd(nl, (__mmask8)kn, nl, dl); /* N += the others */
		nh = _mm512_mask_add_pd(nh, (__mmask8)_kshiftri_mask16(kn, 8), nh, dh);
	}
	/* sign(S): a NaN S compares neither way */
	__m512d sl = _mm512_add_pd(pl, nl), sh = _mm512_add_pd(ph, nh);
	__mmask8 gtl = _mm512_cmp_pd_mask(sl, zero, _CMP_GT_OQ), gth = _mm512_cmp_pd_mask(sh, zero, _CMP_GT_OQ);
	__mmask8 ltl = _mm512_cmp_pd_mask(sl, zero, _CMP_LT_OQ), lth = _mm512_cmp_pd_mask(sh, zero, _CMP_LT_OQ);
	__mmask16 gt = _mm512_kunpackb(gth, gtl), lt = _mm512_kunpackb(lth, ltl);
	/* the elected sign is +: S > 0, or S == 0 (or NaN) with a + majority */
	__mmask16 e = maj > 0 ? _mm512_knot(lt) : gt;
	__mmask8 el = maj > 0 ? _knot_mask8(ltl) : gtl, eh = maj > 0 ? _knot_mask8(lth) : gth;
	/* the mean, or +0 when nothing agrees: then the sum is +0, and a count
	 * of at least 1 keeps it +0 */
	__m512i cnt = _mm512_max_epi32(_mm512_mask_blend_epi32(e, cn, cp), one);
	__m512d cl = _mm512_cvtepi32_pd(_mm512_castsi512_si256(cnt));
	__m512d ch = _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(cnt, 1));
	__m512d ml = _mm512_div_pd(_mm512_mask_blend_pd(el, nl, pl), cl);
	__m512d mh = _mm512_div_pd(_mm512_mask_blend_pd(eh, nh, ph), ch);
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

/* Sixteen bf16 values' bits shifted into the high half: their float32 bits. */
static inline __attribute__((always_inline)) __m512i bf16_bits16(const unsigned char *p)
{
	return _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16);
}

/* Sixteen elements in float32: bf16 shifted (a NaN quieted, as the
 * reference decodes), f16 by F16C, f32 as they are. */
static inline __attribute__((always_inline)) __m512 ld16(const enum dtype dt, const unsigned char *p)
{
	if (dt == DT_BF16) {
		__m512i u = bf16_bits16(p);
		__mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
		                                        _mm512_set1_epi32(0x7f800000));
		return _mm512_castsi512_ps(_mm512_mask_or_epi32(u, nan, u, _mm512_set1_epi32(0x00400000)));
	}
	if (dt == DT_F16)
		return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
	return _mm512_loadu_ps((const float *)p);
}

/* Sixteen values of x as the minuend of x - b, in float32: BF16 shifted
 * without quieting a NaN, which the subtraction quiets to the bits the
 * decoding gives (an x86 operation returns its first NaN operand with the
 * quiet bit set, else its second); F16 and F32 as ld16() decodes them. */
static inline __attribute__((always_inline)) __m512 ld16x(const enum dtype dt,
                                                          const unsigned char *p)
{
	if (dt == DT_BF16)
		return _mm512_castsi512_ps(bf16_bits16(p));
	return ld16(dt, p);
}

/*
 * TIES's select pass, sixteen elements at a time: the operations of
 * kern_avx2.c's, the two halves of the norm lanes added in element order
 * (elements 0-7, then 8-15, into lanes 0-7), the keys narrowed in one
 * instruction. The counting is the same scalar loop. norms is 0 when s1
 * is NULL: the counts alone.
 */
static inline __attribute__((always_inline)) void
select_t(const enum dtype dt, const void *const *x, unsigned nx, const void *base, const double *w,
         size_t n, uint32_t *const *hist, double *s1, double *s2, float *tp, size_t ld,
         const int norms)
{
	const unsigned char *bp = base;
	const __m512i mask = _mm512_set1_epi32(0x7fffffff), low16 = _mm512_set1_epi32(0xffff);
	const __m512i one = _mm512_set1_epi32(1);
	const __m512d absmask = _mm512_castsi512_pd(_mm512_set1_epi64(0x7fffffffffffffffLL));
	const __m512d inf = _mm512_set1_pd(INFINITY);
	__m512d a1 = _mm512_setzero_pd(), a2 = _mm512_setzero_pd();
	uint16_t keys[4096];
	size_t es = dtype_size(dt), sub = 4096 / nx < 512 ? (4096 / nx) & ~(size_t)15 : 512;
	size_t m = n - n % 16;

	if (sub == 0) { /* more than 256 tasks: the AVX2 kernel */
		kern_avx2.ties_select(dt, x, nx, base, w, n, hist, s1, s2, tp, ld);
		return;
	}
	if (norms)
		a1 = _mm512_loadu_pd(s1), a2 = _mm512_loadu_pd(s2);
	for (size_t j0 = 0; j0 < m; j0 += sub) {
		size_t k = m - j0 < sub ? m - j0 : sub;
		for (size_t j = j0; j < j0 + k; j += 16) {
			__m512 b = ld16(dt, bp + j * es);
			__m512d sl = _mm512_setzero_pd(), sh = _mm512_setzero_pd();
			for (unsigned i = 0; i < nx; i++) {
				__m512 tau = _mm512_sub_ps(ld16x(dt, (const unsigned char *)x[i] + j * es), b);
				__m512d dl = _mm512_cvtps_pd(_mm512_castps512_ps256(tau));
				__m512d dh = _mm512_cvtps_pd(_mm512_extractf32x8_ps(tau, 1));
				if (norms) {
					sl = _mm512_add_pd(sl, dl); /* s += tau */
					sh = _mm512_add_pd(sh, dh);
				}
				if (w[i] != 1.0) {
					__m512d wi = _mm512_set1_pd(w[i]);
					__m256 lo = _mm512_cvtpd_ps(_mm512_mul_pd(wi, dl));
					__m256 hi = _mm512_cvtpd_ps(_mm512_mul_pd(wi, dh));
					tau = _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
				}
				if (tp)
					_mm512_storeu_ps(tp + (size_t)i * ld + j, tau);
				/* ties_key(): the high bits times two, plus one when the
				 * low sixteen are zero */
				__m512i a = _mm512_and_si512(_mm512_castps_si512(tau), mask);
				__mmask16 edge = _mm512_testn_epi32_mask(a, low16);
				__m512i key = _mm512_slli_epi32(_mm512_srli_epi32(a, 16), 1);
				key = _mm512_mask_add_epi32(key, edge, key, one);
				_mm256_storeu_si256((__m256i *)(keys + (size_t)i * k + (j - j0)), _mm512_cvtepi32_epi16(key));
			}
			if (!norms)
				continue;
			__m512d al = _mm512_and_pd(sl, absmask), ah = _mm512_and_pd(sh, absmask);
			al = _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(al, inf, _CMP_LT_OQ), al); /* +0 when not finite */
			ah = _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(ah, inf, _CMP_LT_OQ), ah);
			a1 = _mm512_add_pd(a1, al), a1 = _mm512_add_pd(a1, ah);
			a2 = _mm512_add_pd(a2, _mm512_mul_pd(al, al)), a2 = _mm512_add_pd(a2, _mm512_mul_pd(ah, ah));
		}
		for (unsigned i = 0; i < nx; i++) {
			uint32_t *h = hist[i];
			const uint16_t *kk = keys + (size_t)i * k;
			for (size_t q = 0; q < k; q += 8) { /* k is a multiple of 16 */
				h[kk[q]]++, h[kk[q + 1]]++, h[kk[q + 2]]++, h[kk[q + 3]]++;
				h[kk[q + 4]]++, h[kk[q + 5]]++, h[kk[q + 6]]++, h[kk[q + 7]]++;
			}
		}
	}
	if (norms)
		_mm512_storeu_pd(s1, a1), _mm512_storeu_pd(s2, a2);
	if (m < n) { /* the tail goes on from lane 0 (m is a multiple of 8) */
		const void *xt[LINES_MAX_MODELS];
		kern_advance(x, nx, m * es, xt);
		kern_avx2.ties_select(dt, xt, nx, bp + m * es, w, n - m, hist, s1, s2,
		                      tp ? tp + m : NULL, ld);
	}
}

#define SELECT_DT(fn, t)                                                                          \
	(s1 ? fn(t, x, nx, base, w, n, hist, s1, s2, tp, ld, 1)                                  \
	    : fn(t, x, nx, base, w, n, hist, s1, s2, tp, ld, 0))
static void avx512_ties_select(enum dtype dt, const void *const *x, unsigned nx, const void *base,
                               const double *w, size_t n, uint32_t *const *hist, double *s1,
                               double *s2, float *tp, size_t ld)
{
	switch (dt) { /* the norms, or (s1 NULL) the counts alone */
	case DT_BF16: SELECT_DT(select_t, DT_BF16); break;
	case DT_F16: SELECT_DT(select_t, DT_F16); break;
	case DT_F32: SELECT_DT(select_t, DT_F32); break;
	default: kern_avx2.ties_select(dt, x, nx, base, w, n, hist, s1, s2, tp, ld); break;
	}
}
#undef SELECT_DT

/* The tiles of TIES and DARE, sixteen elements at a time: kern_avx2.c's
 * avx2_taus, operation for operation. */
static inline __attribute__((always_inline)) void
taus_t(const enum dtype dt, const void *const *x, unsigned nx, const void *base, const double *w,
       size_t n, float *bt, float *tp)
{
	const unsigned char *bp = base;
	size_t es = dtype_size(dt), m = n - n % 16, j;

	for (j = 0; j < m; j += 16)
		_mm512_storeu_ps(bt + j, ld16(dt, bp + j * es));
	for (unsigned i = 0; i < nx; i++) {
		const unsigned char *p = x[i];
		float *t = tp + (size_t)i * n;
		if (w[i] == 1.0) {
			for (j = 0; j < m; j += 16)
				_mm512_storeu_ps(t + j, _mm512_sub_ps(ld16x(dt, p + j * es), _mm512_loadu_ps(bt + j)));
		} else {
			__m512d wi = _mm512_set1_pd(w[i]);
			for (j = 0; j < m; j += 16) {
				__m512 tau = _mm512_sub_ps(ld16x(dt, p + j * es), _mm512_loadu_ps(bt + j));
				__m256 lo = _mm512_cvtpd_ps(_mm512_mul_pd(wi, _mm512_cvtps_pd(_mm512_castps512_ps256(tau))));
				__m256 hi = _mm512_cvtpd_ps(_mm512_mul_pd(wi, _mm512_cvtps_pd(_mm512_extractf32x8_ps(tau, 1))));
				_mm512_storeu_ps(t + j, _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1));
			}
		}
	}
	if (m < n) { /* the tail: the AVX2 kernel on what is left of each row */
		float tb[16], tt[16];
		const void *xt[1];
		kern_avx2.decode(dt, bp + m * es, bt + m, n - m);
		for (unsigned i = 0; i < nx; i++) {
			xt[0] = (const unsigned char *)x[i] + m * es;
			kern_avx2.taus(dt, xt, 1, bp + m * es, w + i, n - m, tb, tt);
			memcpy(tp + (size_t)i * n + m, tt, (n - m) * sizeof(float));
		}
	}
}

static void avx512_taus(enum dtype dt, const void *const *x, unsigned nx, const void *base,
                        const double *w, size_t n, float *bt, float *tp)
{
	switch (dt) {
	case DT_BF16: taus_t(DT_BF16, x, nx, base, w, n, bt, tp); break;
	case DT_F16: taus_t(DT_F16, x, nx, base, w, n, bt, tp); break;
	case DT_F32: taus_t(DT_F32, x, nx, base, w, n, bt, tp); break;
	default: kern_avx2.taus(dt, x, nx, base, w, n, bt, tp); break;
	}
}

/* float32 to the output dtype, sixteen at a time: kern_avx2.c's st8. */
static inline __attribute__((always_inline)) void st16(const enum dtype dt, unsigned char *p, __m512 x)
{
	if (dt == DT_BF16) {
		/* round to nearest even: u + 0x7fff + ((u >> 16) & 1), then >> 16;
		 * a NaN keeps its top bits and gets the quiet bit */
		__m512i u = _mm512_castps_si512(x);
		__mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
		                                        _mm512_set1_epi32(0x7f800000));
		__m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
		__m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
		r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
		_mm256_storeu_si256((__m256i *)p, _mm512_cvtepi32_epi16(r));
	} else if (dt == DT_F16) {
		_mm256_storeu_si256((__m256i *)p, _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
	} else {
		_mm512_storeu_ps((float *)p, x);
	}
}

/* The add-back, sixteen at a time: kern_avx2.c's avx2_finish. */
static inline __attribute__((always_inline)) void
finish_t(const enum dtype odt, void *out, const float *b, const double *m, double lambda, size_t n)
{
	unsigned char *p = out;
	size_t j = 0, es = dtype_size(odt);
	const __m512d vl = _mm512_set1_pd(lambda);
	const __m512 qnan = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fc00000));
	for (; j + 16 <= n; j += 16) {
		__m512 vb = _mm512_loadu_ps(b + j);
		__m512d rl = _mm512_fmadd_pd(vl, _mm512_loadu_pd(m + j), _mm512_cvtps_pd(_mm512_castps512_ps256(vb)));
		__m512d rh = _mm512_fmadd_pd(vl, _mm512_loadu_pd(m + j + 8), _mm512_cvtps_pd(_mm512_extractf32x8_ps(vb, 1)));
		__m512 f = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(rl)), _mm512_cvtpd_ps(rh), 1);
		f = _mm512_mask_mov_ps(f, _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q), qnan); /* NaN -> 0x7fc00000 */
		st16(odt, p + j * es, f);
	}
	if (j < n)
		kern_avx2.finish(odt, p + j * es, b + j, m + j, lambda, n - j);
}

static void avx512_finish(enum dtype odt, void *out, const float *b, const double *m, double lambda,
                          size_t n)
{
	switch (odt) {
	case DT_BF16: finish_t(DT_BF16, out, b, m, lambda, n); break;
	case DT_F16: finish_t(DT_F16, out, b, m, lambda, n); break;
	case DT_F32: finish_t(DT_F32, out, b, m, lambda, n); break;
	default: kern_avx2.finish(odt, out, b, m, lambda, n); break;
	}
}

/* The threshold pass's sums, sixteen elements at a time: kern_avx2.c's
 * avx2_ties_decided, elements 0-7 then 8-15 of each step into lanes 0-7. */
static int64_t avx512_ties_decided(const double *mtl, const signed char *sign, unsigned char *open,
                                   size_t n, double *dl, double *dq)
{
	const __m512d absmask = _mm512_castsi512_pd(_mm512_set1_epi64(0x7fffffffffffffffLL));
	const __m512d inf = _mm512_set1_pd(INFINITY), zero = _mm512_setzero_pd();
	const __m128i z = _mm_setzero_si128();
	__m512d l1 = _mm512_loadu_pd(dl), l2 = _mm512_loadu_pd(dq);
	__m512i votes = _mm512_setzero_si512();
	size_t j = 0;
	int64_t v;

	for (; j + 16 <= n; j += 16) {
		__m128i sg = _mm_loadu_si128((const __m128i *)(sign + j));
		__mmask16 closed = _mm_cmpeq_epi8_mask(_mm_loadu_si128((const __m128i *)(open + j)), z);
		__mmask16 has = _mm_cmpneq_epi8_mask(sg, z), ok = _kand_mask16(closed, has);
		__m512d ml = _mm512_loadu_pd(mtl + j), mh = _mm512_loadu_pd(mtl + j + 8);
		__m512d al = _mm512_and_pd(ml, absmask), ah = _mm512_and_pd(mh, absmask);
		/* decided with a sign, and finite: add |m| and m^2, else nothing */
		al = _mm512_maskz_mov_pd(_mm512_mask_cmp_pd_mask((__mmask8)ok, al, inf, _CMP_LT_OQ), al);
		ah = _mm512_maskz_mov_pd(_mm512_mask_cmp_pd_mask((__mmask8)_kshiftri_mask16(ok, 8), ah, inf, _CMP_LT_OQ), ah);
		l1 = _mm512_add_pd(l1, al), l1 = _mm512_add_pd(l1, ah);
		l2 = _mm512_add_pd(l2, _mm512_mul_pd(al, al)), l2 = _mm512_add_pd(l2, _mm512_mul_pd(ah, ah));
		votes = _mm512_mask_add_epi32(votes, closed, votes, _mm512_cvtepi8_epi32(sg));
		/* a zero sum of kept values that are not all zero: bit 1 */
		unsigned nz = (unsigned)_mm512_cmp_pd_mask(ml, zero, _CMP_NEQ_UQ) |
		              (unsigned)_mm512_cmp_pd_mask(mh, zero, _CMP_NEQ_UQ) << 8;
		for (unsigned f = nz & (unsigned)_kandn_mask16(has, closed); f; f &= f - 1)
			open[j + (unsigned)__builtin_ctz(f)] |= 2;
	}
	_mm512_storeu_pd(dl, l1);
	_mm512_storeu_pd(dq, l2);
	v = _mm512_reduce_add_epi32(votes);
	if (j < n) /* the tail goes on from lane 0 */
		v += kern_avx2.ties_decided(mtl + j, sign + j, open + j, n - j, dl, dq);
	return v;
}

/* ---- DARE ---------------------------------------------------------------------- */

/* SplitMix64's finalizer on eight lanes, AVX-512DQ's 64-bit multiply,
 * then the 53-bit draw; h = idx * KERN_DARE_STEP of each element */
static inline __m512i draw8(__m512i key, __m512i h)
{
	__m512i x = _mm512_add_epi64(_mm512_xor_si512(key, h),
	                             _mm512_set1_epi64((long long)0x9e3779b97f4a7c15ull));
	x = _mm512_mullo_epi64(_mm512_xor_si512(x, _mm512_srli_epi64(x, 30)),
	                       _mm512_set1_epi64((long long)0xbf58476d1ce4e5b9ull));
	x = _mm512_mullo_epi64(_mm512_xor_si512(x, _mm512_srli_epi64(x, 27)),
	                       _mm512_set1_epi64((long long)0x94d049bb133111ebull));
	return _mm512_srli_epi64(_mm512_xor_si512(x, _mm512_srli_epi64(x, 31)), 11);
}

/* idx * KERN_DARE_STEP of elements idx0 to idx0 + 7 (modulo 2^64); the
 * next eight are these plus STEP8 */
static inline __m512i idx_steps8(uint64_t idx0)
{
	return _mm512_add_epi64(_mm512_set1_epi64((long long)(idx0 * KERN_DARE_STEP)),
	                        _mm512_mullo_epi64(_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7),
	                                           _mm512_set1_epi64((long long)KERN_DARE_STEP)));
}
#define STEP8 _mm512_set1_epi64((long long)(8 * KERN_DARE_STEP))

/* t / d of the kept lanes, +0.0 in the others, as t * r where that is
 * the same float32 (kernels.h, KERN_DARE_RMIN); fast: d is in range */
static inline __m512d quot8(__mmask8 keep, __m512d t, __m512d d, __m512d r, int fast)
{
	const __m512i absm = _mm512_set1_epi64(0x7fffffffffffffffll);
	__m512d q0 = _mm512_mul_pd(t, r);
	__m512i b = _mm512_castpd_si512(q0);
	__m512i e = _mm512_and_si512(_mm512_srli_epi64(b, 52), _mm512_set1_epi64(0x7ff));
	__mmask8 in = _mm512_cmple_epu64_mask(_mm512_sub_epi64(e, _mm512_set1_epi64(KERN_DARE_EMIN)),
	                                      _mm512_set1_epi64(KERN_DARE_ESPAN));
	__mmask8 mid = _mm512_cmple_epu64_mask(
		_mm512_sub_epi64(_mm512_and_si512(b, _mm512_set1_epi64(0x1fffffff)),
		                 _mm512_set1_epi64((long long)(KERN_DARE_MID - KERN_DARE_NEAR))),
		_mm512_set1_epi64(2 * KERN_DARE_NEAR));
	__mmask8 spec = _mm512_cmpeq_epi64_mask(e, _mm512_set1_epi64(0x7ff)) |
	                _mm512_testn_epi64_mask(b, absm);
	__mmask8 bad = keep & (__mmask8)~spec & (__mmask8)(~in | mid);
	if (__builtin_expect(bad != 0 || !fast, 0))
		return _mm512_maskz_div_pd(keep, t, d);
	return _mm512_maskz_mov_pd(keep, q0);
}

static inline int dare_fast(double d)
{
	return d >= KERN_DARE_RMIN && d <= KERN_DARE_RMAX;
}

/* DARE's drop, eight elements a step (avx2_dare_drop's operations) */
static void avx512_dare_drop(float *tp, size_t n, uint64_t key, uint64_t idx0, uint64_t limit,
                             double density)
{
	const __m512i k = _mm512_set1_epi64((long long)key), lim = _mm512_set1_epi64((long long)limit);
	const __m512d dd = _mm512_set1_pd(density), rr = _mm512_set1_pd(1.0 / density);
	const int fast = dare_fast(density);
	__m512i h = idx_steps8(idx0);
	size_t j = 0;

	for (; j + 8 <= n; j += 8) {
		__mmask8 keep = _mm512_cmplt_epu64_mask(draw8(k, h), lim);
		__m512d q = quot8(keep, _mm512_cvtps_pd(_mm256_loadu_ps(tp + j)), dd, rr, fast);
		_mm256_storeu_ps(tp + j, _mm512_cvtpd_ps(q));
		h = _mm512_add_epi64(h, STEP8);
	}
	if (j < n)
		kern_scalar.dare_drop(tp + j, n - j, key, idx0 + j, limit, density);
}

/* acc plus the kept t / d rounded to float32 (dare_sum's step): where the
 * product by r stands for the quotient, rounded to float32 in the integer
 * unit (kernels.h, KERN_DARE_QLO); kept zeros add nothing (acc is never
 * -0.0: it starts at +0.0) */
static inline __m512d qsum8(__m512d acc, __mmask8 keep, __m512d t, __m512d d, __m512d r, int fast)
{
	const __m512i absm = _mm512_set1_epi64(0x7fffffffffffffffll);
	const __m512i m29 = _mm512_set1_epi64(0x1fffffff);
	__m512d q0 = _mm512_mul_pd(t, r);
	__m512i b = _mm512_castpd_si512(q0), a = _mm512_and_si512(b, absm);
	__mmask8 nz = _mm512_mask_test_epi64_mask(keep, b, absm);
	__mmask8 in = _mm512_cmplt_epu64_mask(_mm512_sub_epi64(a, _mm512_set1_epi64((long long)KERN_DARE_QLO)),
	                                      _mm512_set1_epi64((long long)(KERN_DARE_QHI - KERN_DARE_QLO)));
	__mmask8 mid = _mm512_cmple_epu64_mask(
		_mm512_sub_epi64(_mm512_and_si512(b, m29),
		                 _mm512_set1_epi64((long long)(KERN_DARE_MID - KERN_DARE_NEAR))),
		_mm512_set1_epi64(2 * KERN_DARE_NEAR));
	if (__builtin_expect((nz & (__mmask8)(~in | mid)) != 0 || !fast, 0)) {
		__m512d q = _mm512_maskz_div_pd(keep, t, d);
		return _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_cvtpd_ps(q)));
	}
	b = _mm512_andnot_si512(m29, _mm512_add_epi64(b, _mm512_set1_epi64((long long)KERN_DARE_MID)));
	return _mm512_mask_add_pd(acc, nz, acc, _mm512_castsi512_pd(b));
}

/* DARE's drops of a tile's tasks and their sum from element j to n
 * (avx2_dare_sum's steps) */
static void dare_sum_exact(const float *tp, size_t n, size_t j, unsigned nx, const uint64_t *key,
                           uint64_t idx0, const uint64_t *limit, const double *div, double *mtl)
{
	__m512i h = idx_steps8(idx0 + j);
	double r[LINES_MAX_MODELS];
	int fast = 1;

	for (unsigned i = 0; i < nx; i++)
		r[i] = 1.0 / div[i], fast &= dare_fast(div[i]);
	/* sixteen elements a step, two groups of eight whose draws (two
	 * dependent 64-bit multiplies each) overlap; each lane's sum takes
	 * the tasks in order, as below */
	for (; j + 16 <= n; j += 16) {
		__m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
		__m512i h1 = _mm512_add_epi64(h, STEP8);
		for (unsigned i = 0; i < nx; i++) {
			__m512i k = _mm512_set1_epi64((long long)key[i]);
			__m512i lim = _mm512_set1_epi64((long long)limit[i]);
			__m512d d = _mm512_set1_pd(div[i]), ri = _mm512_set1_pd(r[i]);
			__mmask8 k0 = _mm512_cmplt_epu64_mask(draw8(k, h), lim);
			__mmask8 k1 = _mm512_cmplt_epu64_mask(draw8(k, h1), lim);
			const float *x = tp + (size_t)i * n + j;
			a0 = qsum8(a0, k0, _mm512_cvtps_pd(_mm256_loadu_ps(x)), d, ri, fast);
			a1 = qsum8(a1, k1, _mm512_cvtps_pd(_mm256_loadu_ps(x + 8)), d, ri, fast);
		}
		_mm512_storeu_pd(mtl + j, a0);
		_mm512_storeu_pd(mtl + j + 8, a1);
		h = _mm512_add_epi64(h1, STEP8);
	}
	for (; j + 8 <= n; j += 8) {
		__m512d acc = _mm512_setzero_pd();
		for (unsigned i = 0; i < nx; i++) {
			__mmask8 keep = _mm512_cmplt_epu64_mask(draw8(_mm512_set1_epi64((long long)key[i]), h),
			                                        _mm512_set1_epi64((long long)limit[i]));
			acc = qsum8(acc, keep, _mm512_cvtps_pd(_mm256_loadu_ps(tp + (size_t)i * n + j)),
			            _mm512_set1_pd(div[i]), _mm512_set1_pd(r[i]), fast);
		}
		_mm512_storeu_pd(mtl + j, acc);
		h = _mm512_add_epi64(h, STEP8);
	}
	for (; j < n; j++) { /* the tail, by the definition */
		double m = 0.0;
		for (unsigned i = 0; i < nx; i++)
			m += (double)kern_dare_q(tp[(size_t)i * n + j], key[i], idx0 + j, limit[i], div[i]);
		mtl[j] = m;
	}
}

/* avx2_dare_sum's test: every d in [2^-20, 2^20] and every value zero or
 * of magnitude in [2^-100, 2^100] */
static int dare_easy(const float *tp, size_t len, unsigned nx, const double *div)
{
	const __m512i abs = _mm512_set1_epi32(0x7fffffff);
	__mmask16 bad = 0;
	size_t j = 0;

	for (unsigned i = 0; i < nx; i++)
		if (!(div[i] >= 0x1p-20 && div[i] <= 0x1p20))
			return 0;
	for (; j + 16 <= len; j += 16) {
		__m512i a = _mm512_and_si512(_mm512_loadu_si512(tp + j), abs);
		bad |= _mm512_mask_cmpgt_epu32_mask(_mm512_test_epi32_mask(a, a),
		                                    _mm512_sub_epi32(a, _mm512_set1_epi32(0x0d800000)),
		                                    _mm512_set1_epi32(0x71800000 - 0x0d800000));
	}
	for (; j < len; j++) {
		uint32_t a;
		memcpy(&a, tp + j, sizeof(a));
		a &= 0x7fffffff;
		if (a != 0 && (a < 0x0d800000 || a > 0x71800000))
			return 0;
	}
	return bad == 0;
}

/* DARE's drops of a tile's tasks and their sum: where dare_easy holds,
 * with the midpoint test of all lanes and tasks gathered and one branch
 * at the end (avx2_dare_sum's) */
static void avx512_dare_sum(const float *tp, size_t n, unsigned nx, const uint64_t *key,
                            uint64_t idx0, const uint64_t *limit, const double *div, double *mtl)
{
	const __m512i m29 = _mm512_set1_epi64(0x1fffffff), mid = _mm512_set1_epi64((long long)KERN_DARE_MID),
		      near0 = _mm512_set1_epi64((long long)(KERN_DARE_MID - KERN_DARE_NEAR)),
		      span = _mm512_set1_epi64(2 * KERN_DARE_NEAR);
	__m512i h = idx_steps8(idx0);
	double r[LINES_MAX_MODELS];
	__mmask8 bad = 0;
	size_t j = 0;

	if (!dare_easy(tp, (size_t)nx * n, nx, div)) {
		dare_sum_exact(tp, n, 0, nx, key, idx0, limit, div, mtl);
		return;
	}
	for (unsigned i = 0; i < nx; i++)
		r[i] = 1.0 / div[i];
	for (; j + 16 <= n; j += 16) {
		__m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
		__m512i h1 = _mm512_add_epi64(h, STEP8);
		for (unsigned i = 0; i < nx; i++) {
			const __m512i k = _mm512_set1_epi64((long long)key[i]),
				      lim = _mm512_set1_epi64((long long)limit[i]);
			const __m512d ri = _mm512_set1_pd(r[i]);
			const float *x = tp + (size_t)i * n + j;
			__mmask8 k0 = _mm512_cmplt_epu64_mask(draw8(k, h), lim);
			__mmask8 k1 = _mm512_cmplt_epu64_mask(draw8(k, h1), lim);
			__m512i b0 = _mm512_castpd_si512(_mm512_mul_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x)), ri));
			__m512i b1 = _mm512_castpd_si512(_mm512_mul_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + 8)), ri));
			bad |= _mm512_cmple_epu64_mask(_mm512_sub_epi64(_mm512_and_si512(b0, m29), near0), span);
			bad |= _mm512_cmple_epu64_mask(_mm512_sub_epi64(_mm512_and_si512(b1, m29), near0), span);
			b0 = _mm512_andnot_si512(m29, _mm512_add_epi64(b0, mid));
			b1 = _mm512_andnot_si512(m29, _mm512_add_epi64(b1, mid));
			a0 = _mm512_mask_add_pd(a0, k0, a0, _mm512_castsi512_pd(b0));
			a1 = _mm512_mask_add_pd(a1, k1, a1, _mm512_castsi512_pd(b1));
		}
		_mm512_storeu_pd(mtl + j, a0);
		_mm512_storeu_pd(mtl + j + 8, a1);
		h = _mm512_add_epi64(h1, STEP8);
	}
	dare_sum_exact(tp, n, bad ? 0 : j, nx, key, idx0, limit, div, mtl);
}

/* DARE's keep test alone, sixteen elements a step */
static void avx512_dare_keep(const float *tp, float *out, size_t n, uint64_t key, uint64_t idx0,
                             uint64_t limit)
{
	const __m512i k = _mm512_set1_epi64((long long)key), lim = _mm512_set1_epi64((long long)limit);
	__m512i h0 = idx_steps8(idx0), h1 = _mm512_add_epi64(h0, STEP8);
	const __m512i step16 = _mm512_add_epi64(STEP8, STEP8);
	size_t j = 0;

	for (; j + 16 <= n; j += 16) {
		__mmask16 keep = (__mmask16)((unsigned)_mm512_cmplt_epu64_mask(draw8(k, h0), lim) |
		                             (unsigned)_mm512_cmplt_epu64_mask(draw8(k, h1), lim) << 8);
		_mm512_storeu_ps(out + j, _mm512_maskz_loadu_ps(keep, tp + j));
		h0 = _mm512_add_epi64(h0, step16), h1 = _mm512_add_epi64(h1, step16);
	}
	if (j < n)
		kern_scalar.dare_keep(tp + j, out + j, n - j, key, idx0 + j, limit);
}

/* One task's part of the merge without ties of eight elements whose
 * float32 bits are u: vm + (w x where kept, else +0.0). */
static inline __attribute__((always_inline)) __m512d bc_add8(__m512d vm, __m256i u, uint32_t lo,
                                                             uint32_t hi, double w)
{
	__m256i a = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
	__mmask8 keep = _mm256_cmpge_epu32_mask(a, _mm256_set1_epi32((int)lo)) &
	                _mm256_cmple_epu32_mask(a, _mm256_set1_epi32((int)hi));
	__m512d x = _mm512_cvtps_pd(_mm256_castsi256_ps(u));
	return _mm512_add_pd(vm, _mm512_maskz_mul_pd(keep, _mm512_set1_pd(w), x));
}

/* The sums of the merge with ties of eight elements: with every weight
 * 1 (unit), the counts of the kept values of each sign instead of the
 * sums of their weights, which are those counts. */
struct bc8 {
	__m512d p, n, cp, cn;
	__m256i np, nn;
};
#define BC8_ZERO                                                                                  \
	{                                                                                         \
		_mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd(),                    \
		    _mm512_setzero_pd(), _mm256_setzero_si256(), _mm256_setzero_si256()            \
	}

/* One task's part of the merge with ties of eight elements (bits u). */
static inline __attribute__((always_inline)) void bc_elect8(struct bc8 *t, const int unit, __m256i u,
                                                            uint32_t lo, uint32_t hi, double w)
{
	__m256i a = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
	__mmask8 keep = _mm256_cmpge_epu32_mask(a, _mm256_set1_epi32((int)lo)) &
	                _mm256_cmple_epu32_mask(a, _mm256_set1_epi32((int)hi));
	/* v = w x is > 0 or NaN (P), or < 0 (N), as x with its sign flipped
	 * where w < 0 is: w's magnitude in [2^-900, 2^900] makes v neither
	 * 0 nor NaN where x is not (a product that overflows keeps the sign);
	 * the comparisons in float32, and the lanes not kept out of both */
	__m256 sx = _mm256_castsi256_ps(
	    unit ? u : _mm256_xor_si256(u, _mm256_set1_epi32(w < 0.0 ? INT32_MIN : 0)));
	__mmask8 kp = _mm256_mask_cmp_ps_mask(keep, sx, _mm256_setzero_ps(), _CMP_NLE_UQ);
	__mmask8 kn = _mm256_mask_cmp_ps_mask(keep, sx, _mm256_setzero_ps(), _CMP_LT_OQ);
	__m512d c = _mm512_set1_pd(w), x = _mm512_cvtps_pd(_mm256_castsi256_ps(u));
	__m512d v = unit || w == 1.0 ? x : _mm512_mul_pd(c, x); /* 1 x is x (a NaN's payload aside) */
	t->p = _mm512_mask_add_pd(t->p, kp, t->p, v);
	t->n = _mm512_mask_add_pd(t->n, kn, t->n, v);
	if (unit) {
		t->np = _mm256_mask_sub_epi32(t->np, kp, t->np, _mm256_set1_epi32(-1));
		t->nn = _mm256_mask_sub_epi32(t->nn, kn, t->nn, _mm256_set1_epi32(-1));
	} else {
		t->cp = _mm512_mask_add_pd(t->cp, kp, t->cp, c);
		t->cn = _mm512_mask_add_pd(t->cn, kn, t->cn, c);
	}
}

/* The result of the merge with ties of eight elements from their sums. */
static inline __attribute__((always_inline)) __m512d bc_elected8(const struct bc8 *t, const int unit,
                                                                 int normalize)
{
	const __m512d zero = _mm512_setzero_pd(), one = _mm512_set1_pd(1.0);
	__m512d s = _mm512_add_pd(t->p, t->n);
	__mmask8 pos = _mm512_cmp_pd_mask(s, zero, _CMP_GE_OQ);
	__m512d num = _mm512_mask_blend_pd(pos, t->n, t->p), d;
	if (unit)
		d = _mm512_cvtepi32_pd(_mm256_mask_blend_epi32(pos, t->nn, t->np));
	else
		d = _mm512_mask_blend_pd(pos, t->cn, t->cp);
	if (normalize)
		d = _mm512_mask_blend_pd(_mm512_cmp_pd_mask(d, zero, _CMP_NEQ_UQ), one, d);
	else
		d = one;
	__m512d q = _mm512_div_pd(num, d);
	__mmask8 nan = _mm512_cmp_pd_mask(s, s, _CMP_UNORD_Q);
	return _mm512_mask_blend_pd(nan, q, s);
}

/* The sum without ties over wdiv (times 1 / wdiv, r, when pow2). */
static inline __attribute__((always_inline)) __m512d bc_scaled8(__m512d vm, int normalize, int pow2,
                                                                double r, double wdiv)
{
	if (pow2)
		return _mm512_mul_pd(vm, _mm512_set1_pd(r));
	if (normalize)
		return _mm512_div_pd(vm, _mm512_set1_pd(wdiv));
	return vm;
}

/*
 * Breadcrumbs' merge of eight elements at a time (kernels.h): the sums of
 * kern_ties.c's loops in registers, with masks. Without ties, m = the sum
 * of v = w x where x is kept, +0.0 where it is dropped, as there (times
 * 1 / wdiv where that is a power of two, else over wdiv, with normalize).
 * With ties, P takes the kept v that are > 0 or NaN (a kept NaN then
 * makes S, and the result, NaN, as m does in the tile's loops), N those
 * < 0, their weights likewise (bc_elect8: the signs read from x and w);
 * a lane adds nothing to a sum it does not take, where the loops add
 * +0.0 (the same sums: none is -0.0). The result is S where S is NaN,
 * else P or N over the weights.
 */
static void avx512_bc_merge(const float *tp, unsigned nx, size_t n, size_t n8, const uint32_t *lo,
                            const uint32_t *hi, const double *w, int ties, int normalize,
                            double wdiv, double *m)
{
	double r = 0.0;
	int pow2 = !ties && normalize && pow2_inverse(wdiv, &r);
	for (size_t j = 0; j < n8; j += 8) {
		if (!ties) {
			__m512d vm = _mm512_setzero_pd();
			for (unsigned i = 0; i < nx; i++)
				vm = bc_add8(vm, _mm256_loadu_si256((const __m256i *)(tp + (size_t)i * n + j)),
				             lo[i], hi[i], w[i]);
			_mm512_storeu_pd(m + j, bc_scaled8(vm, normalize, pow2, r, wdiv));
			continue;
		}
		struct bc8 t = BC8_ZERO;
		for (unsigned i = 0; i < nx; i++)
			bc_elect8(&t, 0, _mm256_loadu_si256((const __m256i *)(tp + (size_t)i * n + j)),
			          lo[i], hi[i], w[i]);
		_mm512_storeu_pd(m + j, bc_elected8(&t, 0, normalize));
	}
}

/*
 * Breadcrumbs' taus and merge in one loop (kernels.h), sixteen elements at
 * a time: the base decoded once into bt, each task's tau = x - b as
 * avx512_taus computes it (every weight 1), its two halves merged as
 * avx512_bc_merge merges them, and with s their sum in float64 from 0.0,
 * tasks in order, as bc_raw_sum adds them. The tau never leaves the
 * registers.
 */
static inline __attribute__((always_inline)) size_t
bc_taus_merge_t(const enum dtype dt, const int ties, const int unit, const int raw,
                const void *const *x,
                unsigned nx, const void *base, size_t n, const uint32_t *lo, const uint32_t *hi,
                const double *w, int normalize, double wdiv, float *bt, double *m, double *s)
{
	const unsigned char *bp = base;
	size_t es = dtype_size(dt), n16 = n - n % 16;
	double r = 0.0;
	int pow2 = !ties && normalize && pow2_inverse(wdiv, &r);
	for (size_t j = 0; j < n16; j += 16) {
		__m512 b = ld16(dt, bp + j * es);
		__m512d s0 = _mm512_setzero_pd(), s1 = s0, v0 = s0, v1 = s0;
		struct bc8 t0 = BC8_ZERO, t1 = BC8_ZERO;
		_mm512_storeu_ps(bt + j, b);
		for (unsigned i = 0; i < nx; i++) {
			__m512i tau = _mm512_castps_si512(
			    _mm512_sub_ps(ld16x(dt, (const unsigned char *)x[i] + j * es), b));
			__m256i u0 = _mm512_castsi512_si256(tau), u1 = _mm512_extracti64x4_epi64(tau, 1);
			if (raw) {
				s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm256_castsi256_ps(u0)));
				s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castsi256_ps(u1)));
			}
			if (ties) {
				bc_elect8(&t0, unit, u0, lo[i], hi[i], w[i]);
				bc_elect8(&t1, unit, u1, lo[i], hi[i], w[i]);
			} else {
				v0 = bc_add8(v0, u0, lo[i], hi[i], w[i]);
				v1 = bc_add8(v1, u1, lo[i], hi[i], w[i]);
			}
		}
		if (raw) {
			_mm512_storeu_pd(s + j, s0);
			_mm512_storeu_pd(s + j + 8, s1);
		}
		if (ties) {
			_mm512_storeu_pd(m + j, bc_elected8(&t0, unit, normalize));
			_mm512_storeu_pd(m + j + 8, bc_elected8(&t1, unit, normalize));
		} else {
			_mm512_storeu_pd(m + j, bc_scaled8(v0, normalize, pow2, r, wdiv));
			_mm512_storeu_pd(m + j + 8, bc_scaled8(v1, normalize, pow2, r, wdiv));
		}
	}
	return n16;
}

#define BC_TM(dt, ties, unit, raw)                                                                \
	bc_taus_merge_t(dt, ties, unit, raw, x, nx, base, n, lo, hi, w, normalize, wdiv, bt, m, s)
#define BC_TM_DT(dt)                                                                              \
	(!ties ? (s ? BC_TM(dt, 0, 0, 1) : BC_TM(dt, 0, 0, 0))                                    \
	 : unit ? (s ? BC_TM(dt, 1, 1, 1) : BC_TM(dt, 1, 1, 0))                                    \
	        : (s ? BC_TM(dt, 1, 0, 1) : BC_TM(dt, 1, 0, 0)))
static size_t avx512_bc_taus_merge(enum dtype dt, const void *const *x, unsigned nx,
                                   const void *base, size_t n, const uint32_t *lo,
                                   const uint32_t *hi, const double *w, int ties, int normalize,
                                   double wdiv, float *bt, double *m, double *s)
{
	int unit = ties && kern_unit_weights(w, nx);
	switch (dt) {
	case DT_BF16: return BC_TM_DT(DT_BF16);
	case DT_F16: return BC_TM_DT(DT_F16);
	case DT_F32: return BC_TM_DT(DT_F32);
	default: return 0;
	}
}
#undef BC_TM_DT
#undef BC_TM

void kern_avx512_fill(struct kern *k)
{
	*k = kern_avx2;
	k->name = "avx512";
	k->wide = 1;
	k->ties_elect = avx512_ties_elect;
	k->ties_select = avx512_ties_select;
	k->taus = avx512_taus;
	k->finish = avx512_finish;
	k->ties_decided = avx512_ties_decided;
	k->dare_drop = avx512_dare_drop;
	k->dare_sum = avx512_dare_sum;
	k->dare_keep = avx512_dare_keep;
	k->bc_merge = avx512_bc_merge;
	k->bc_taus_merge = avx512_bc_taus_merge;
}
