/*
 * kern_avx2.c -- the kernels for x86-64 with AVX2, FMA and F16C, eight
 * floats at a time. Compiled with -mavx2 -mfma -mf16c, and only called
 * after kern_dispatch.c has seen the CPU support all three.
 *
 * Every operation is the one the scalar reference performs, in the same
 * order, so the results are bit-identical: FMA only where the reference
 * calls fmaf(), separate multiply and add in double precision where it
 * multiplies and adds, the same eight norm lanes (element j of a block
 * goes to lane j % 8). Tails shorter than eight elements, and F64 data,
 * are handed to the scalar kernels.
 */
#include "config.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels.h"

/* ---- loads and stores of eight elements ------------------------------------ */

/* Eight bf16 values' bits shifted into the high half: their float32 bits. */
static inline __m256i bf16_bits8(const unsigned char *p)
{
	return _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16);
}

/* bf16 -> f32: shift into the high half; quiet a NaN like the reference. */
static inline __m256 ld_bf16(const unsigned char *p)
{
	__m256i u = bf16_bits8(p);
	__m256i mag = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
	__m256i nan = _mm256_cmpgt_epi32(mag, _mm256_set1_epi32(0x7f800000)); /* |x| > inf */
	u = _mm256_or_si256(u, _mm256_and_si256(nan, _mm256_set1_epi32(0x00400000)));
	return _mm256_castsi256_ps(u);
}

/* f16 -> f32: F16C converts exactly and quiets NaNs, as the reference does. */
static inline __m256 ld_f16(const unsigned char *p)
{
	return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline __m256 ld8(enum dtype dt, const unsigned char *p)
{
	switch (dt) {
	case DT_BF16: return ld_bf16(p);
	case DT_F16: return ld_f16(p);
	default: return _mm256_loadu_ps((const float *)p);
	}
}

/* Eight values of x as the minuend of x - b, in float32: BF16 shifted
 * without quieting a NaN, which the subtraction quiets to the bits the
 * decoding gives (an x86 operation returns its first NaN operand with the
 * quiet bit set, else its second); F16 and F32 as ld8() decodes them. */
static inline __m256 ld8x(enum dtype dt, const unsigned char *p)
{
	if (dt == DT_BF16)
		return _mm256_castsi256_ps(bf16_bits8(p));
	return ld8(dt, p);
}

/* f32 -> bf16, round to nearest even: u + 0x7fff + ((u >> 16) & 1), then >> 16;
 * a NaN keeps its top bits and gets the quiet bit: (u >> 16) | 0x40. */
static inline __m128i to_bf16(__m256 x)
{
	__m256i u = _mm256_castps_si256(x);
	__m256i mag = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
	__m256i nan = _mm256_cmpgt_epi32(mag, _mm256_set1_epi32(0x7f800000));
	__m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
	__m256i r = _mm256_srli_epi32(
		_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
	__m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
	r = _mm256_blendv_epi8(r, q, nan);
	/* pack eight 32-bit lanes (all <= 0xffff) into eight 16-bit ones */
	__m256i packed = _mm256_packus_epi32(r, r);
	packed = _mm256_permute4x64_epi64(packed, 0x08); /* lanes 0, 2 */
	return _mm256_castsi256_si128(packed);
}

static inline void st8(enum dtype dt, unsigned char *p, __m256 x)
{
	switch (dt) {
	case DT_BF16: _mm_storeu_si128((__m128i *)p, to_bf16(x)); break;
	case DT_F16:
		/* F16C rounds to nearest even, keeps subnormals, quiets NaNs
		 * with the top payload bits: what kern_f32_to_f16 does */
		_mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
		break;
	default: _mm256_storeu_ps((float *)p, x); break;
	}
}

/* ---- kernels ------------------------------------------------------------------ */
static void avx2_decode(enum dtype dt, const void *src, float *dst, size_t n)
{
	const unsigned char *p = src;
	size_t j = 0, es = dtype_size(dt);
	if (dt == DT_F64) {
		kern_scalar.decode(dt, src, dst, n);
		return;
	}
	for (; j + 8 <= n; j += 8)
		_mm256_storeu_ps(dst + j, ld8(dt, p + j * es));
	kern_scalar.decode(dt, p + j * es, dst + j, n - j);
}

static void avx2_encode(enum dtype dt, const float *src, void *dst, size_t n)
{
	unsigned char *p = dst;
	size_t j = 0, es = dtype_size(dt);
	if (dt == DT_F64) {
		kern_scalar.encode(dt, src, dst, n);
		return;
	}
	for (; j + 8 <= n; j += 8)
		st8(dt, p + j * es, _mm256_loadu_ps(src + j));
	kern_scalar.encode(dt, src + j, p + j * es, n - j);
}

static void avx2_accum(enum dtype dt, const void *x, const float *b, double c, double *acc,
                       size_t n, int first)
{
	const unsigned char *p = x;
	size_t j = 0, es = dtype_size(dt);
	__m256d vc = _mm256_set1_pd(c);
	if (dt == DT_F64) {
		kern_scalar.accum(dt, x, b, c, acc, n, first);
		return;
	}
	for (; j + 8 <= n; j += 8) {
		__m256 tau = _mm256_sub_ps(ld8x(dt, p + j * es), _mm256_loadu_ps(b + j)); /* tau = x - b, float */
		__m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(tau));
		__m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(tau, 1));
		if (first) {
			_mm256_storeu_pd(acc + j, _mm256_mul_pd(vc, lo)); /* acc = c * tau */
			_mm256_storeu_pd(acc + j + 4, _mm256_mul_pd(vc, hi));
		} else {
			_mm256_storeu_pd(acc + j, _mm256_fmadd_pd(vc, lo, _mm256_loadu_pd(acc + j))); /* fma(c, tau, acc) */
			_mm256_storeu_pd(acc + j + 4, _mm256_fmadd_pd(vc, hi, _mm256_loadu_pd(acc + j + 4)));
		}
	}
	kern_scalar.accum(dt, p + j * es, b + j, c, acc + j, n - j, first);
}

static void avx2_finish(enum dtype odt, void *out, const float *b, const double *m, double lambda,
                        size_t n)
{
	unsigned char *p = out;
	size_t j = 0, es = dtype_size(odt);
	__m256d vl = _mm256_set1_pd(lambda);
	__m256 qnan = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc00000));
	if (odt == DT_F64) {
		kern_scalar.finish(odt, out, b, m, lambda, n);
		return;
	}
	for (; j + 8 <= n; j += 8) {
		__m256 vb = _mm256_loadu_ps(b + j);
		__m256d rl = _mm256_fmadd_pd(vl, _mm256_loadu_pd(m + j), _mm256_cvtps_pd(_mm256_castps256_ps128(vb))); /* fma(lambda, m, b) */
		__m256d rh = _mm256_fmadd_pd(vl, _mm256_loadu_pd(m + j + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(vb, 1)));
		__m256 f = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(rl)), _mm256_cvtpd_ps(rh), 1); /* (float)r */
		f = _mm256_blendv_ps(f, qnan, _mm256_cmp_ps(f, f, _CMP_UNORD_Q)); /* NaN -> 0x7fc00000 */
		st8(odt, p + j * es, f);
	}
	kern_scalar.finish(odt, p + j * es, b + j, m + j, lambda, n - j);
}

/* bf16 -> f32 without quieting NaNs: only for values whose NaNs end up
 * canonical anyway (merge_lin), where the quiet bit cannot show */
static inline __m256 ld8_raw(enum dtype dt, const unsigned char *p)
{
	if (dt == DT_BF16)
		return _mm256_castsi256_ps(_mm256_slli_epi32(
			_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
	return ld8(dt, p);
}

/* The body is instantiated once per input dtype (dt is a constant in each
 * call below), so the loads are not a switch inside the hot loop. */
static inline __attribute__((always_inline)) void
merge_lin_t(const enum dtype dt, const void *const *x, unsigned nx, const void *base,
            const double *c, double lambda, enum dtype odt, void *out, size_t n)
{
	const unsigned char *bp = base;
	unsigned char *o = out;
	size_t j = 0, es = dtype_size(dt), os = dtype_size(odt);
	const __m256d vl = _mm256_set1_pd(lambda);
	const __m256 qnan = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc00000));

	if (dt == DT_F64 || odt == DT_F64) {
		kern_scalar.merge_lin(dt, x, nx, base, c, lambda, odt, out, n);
		return;
	}
	for (; j + 8 <= n; j += 8) {
		__m256 b = ld8_raw(dt, bp + j * es);
		__m256d bl = _mm256_cvtps_pd(_mm256_castps256_ps128(b));
		__m256d bh = _mm256_cvtps_pd(_mm256_extractf128_ps(b, 1));
		__m256d al = _mm256_setzero_pd(), ah = _mm256_setzero_pd();
		for (unsigned i = 0; i < nx; i++) {
			__m256 tau = _mm256_sub_ps(ld8_raw(dt, (const unsigned char *)x[i] + j * es), b); /* x - b */
			__m256d tl = _mm256_cvtps_pd(_mm256_castps256_ps128(tau));
			__m256d th = _mm256_cvtps_pd(_mm256_extractf128_ps(tau, 1));
			__m256d ci = _mm256_set1_pd(c[i]);
			if (i == 0) {
				al = _mm256_mul_pd(ci, tl); /* acc = c * tau */
				ah = _mm256_mul_pd(ci, th);
			} else {
				al = _mm256_fmadd_pd(ci, tl, al); /* acc = fma(c, tau, acc) */
				ah = _mm256_fmadd_pd(ci, th, ah);
			}
		}
		__m256d rl = _mm256_fmadd_pd(vl, al, bl); /* fma(lambda, acc, b) */
		__m256d rh = _mm256_fmadd_pd(vl, ah, bh);
		__m256 f = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(rl)),
		                                _mm256_cvtpd_ps(rh), 1);
		f = _mm256_blendv_ps(f, qnan, _mm256_cmp_ps(f, f, _CMP_UNORD_Q)); /* NaN -> canonical */
		st8(odt, o + j * os, f);
	}
	if (j < n) {
		const void *xt[LINES_MAX_MODELS];
		kern_advance(x, nx, j * es, xt);
		kern_scalar.merge_lin(dt, xt, nx, bp + j * es, c, lambda, odt, o + j * os, n - j);
	}
}

static void avx2_merge_lin(enum dtype dt, const void *const *x, unsigned nx, const void *base,
                           const double *c, double lambda, enum dtype odt, void *out, size_t n)
{
	switch (dt) {
	case DT_BF16: merge_lin_t(DT_BF16, x, nx, base, c, lambda, odt, out, n); break;
	case DT_F16: merge_lin_t(DT_F16, x, nx, base, c, lambda, odt, out, n); break;
	case DT_F32: merge_lin_t(DT_F32, x, nx, base, c, lambda, odt, out, n); break;
	default: kern_scalar.merge_lin(dt, x, nx, base, c, lambda, odt, out, n); break;
	}
}

static void avx2_norm_lin(enum dtype dt, const void *const *x, unsigned nx, const float *b,
                          const double *c, size_t n, struct kern_norms *acc)
{
	size_t j = 0, es = dtype_size(dt);
	const __m256d absmask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
	const __m256d inf = _mm256_set1_pd(INFINITY);
	__m256d s1l = _mm256_loadu_pd(acc->s1), s1h = _mm256_loadu_pd(acc->s1 + 4);
	__m256d t1l = _mm256_loadu_pd(acc->t1), t1h = _mm256_loadu_pd(acc->t1 + 4);
	__m256d s2l = _mm256_loadu_pd(acc->s2), s2h = _mm256_loadu_pd(acc->s2 + 4);
	__m256d t2l = _mm256_loadu_pd(acc->t2), t2h = _mm256_loadu_pd(acc->t2 + 4);

	if (dt == DT_F64) {
		kern_scalar.norm_lin(dt, x, nx, b, c, n, acc);
		return;
	}
	for (; j + 8 <= n; j += 8) {
		__m256 vb = _mm256_loadu_ps(b + j);
		__m256d sl = _mm256_setzero_pd(), sh = _mm256_setzero_pd();
		__m256d tl = _mm256_setzero_pd(), th = _mm256_setzero_pd();
		for (unsigned i = 0; i < nx; i++) {
			__m256 tau = _mm256_sub_ps(ld8x(dt, (const unsigned char *)x[i] + j * es), vb);
			__m256d dl = _mm256_cvtps_pd(_mm256_castps256_ps128(tau));
			__m256d dh = _mm256_cvtps_pd(_mm256_extractf128_ps(tau, 1));
			__m256d ci = _mm256_set1_pd(c[i]);
			sl = _mm256_add_pd(sl, dl); /* s += tau */
			sh = _mm256_add_pd(sh, dh);
			tl = _mm256_add_pd(tl, _mm256_mul_pd(ci, dl)); /* t += c * tau, two roundings */
			th = _mm256_add_pd(th, _mm256_mul_pd(ci, dh));
		}
		__m256d asl = _mm256_and_pd(sl, absmask), ash = _mm256_and_pd(sh, absmask);
		__m256d atl = _mm256_and_pd(tl, absmask), ath = _mm256_and_pd(th, absmask);
		/* finite lanes only: |s| < inf and |t| < inf (false for NaN);
		 * adding +0 to a non-negative sum is the same as skipping */
		__m256d ml = _mm256_and_pd(_mm256_cmp_pd(asl, inf, _CMP_LT_OQ), _mm256_cmp_pd(atl, inf, _CMP_LT_OQ));
		__m256d mh = _mm256_and_pd(_mm256_cmp_pd(ash, inf, _CMP_LT_OQ), _mm256_cmp_pd(ath, inf, _CMP_LT_OQ));
		s1l = _mm256_add_pd(s1l, _mm256_and_pd(asl, ml)); /* += |s| */
		s1h = _mm256_add_pd(s1h, _mm256_and_pd(ash, mh));
		t1l = _mm256_add_pd(t1l, _mm256_and_pd(atl, ml)); /* += |t| */
		t1h = _mm256_add_pd(t1h, _mm256_and_pd(ath, mh));
		s2l = _mm256_add_pd(s2l, _mm256_and_pd(_mm256_mul_pd(sl, sl), ml)); /* += s * s */
		s2h = _mm256_add_pd(s2h, _mm256_and_pd(_mm256_mul_pd(sh, sh), mh));
		t2l = _mm256_add_pd(t2l, _mm256_and_pd(_mm256_mul_pd(tl, tl), ml)); /* += t * t */
		t2h = _mm256_add_pd(t2h, _mm256_and_pd(_mm256_mul_pd(th, th), mh));
	}
	_mm256_storeu_pd(acc->s1, s1l), _mm256_storeu_pd(acc->s1 + 4, s1h);
	_mm256_storeu_pd(acc->t1, t1l), _mm256_storeu_pd(acc->t1 + 4, t1h);
	_mm256_storeu_pd(acc->s2, s2l), _mm256_storeu_pd(acc->s2 + 4, s2h);
	_mm256_storeu_pd(acc->t2, t2l), _mm256_storeu_pd(acc->t2 + 4, t2h);
	if (j < n) {
		/* the tail continues every lane in order, as the reference does
		 * (j is a multiple of 8, so element j goes to lane 0) */
		const void *xt[LINES_MAX_MODELS];
		kern_advance(x, nx, j * es, xt);
		kern_scalar.norm_lin(dt, xt, nx, b + j, c, n - j, acc);
	}
}

/*
 * TIES election, eight elements at a time (two halves of four doubles).
 * The scalar definition skips what is not kept; here a value not kept
 * adds +0.0, which changes no sum that matters (a sum that is exactly
 * zero has the same sign either way), and the count is an integer held
 * in a double. Two shortcuts, both exact:
 *  - kept is |v|'s bits > max(thr, 1) - 1 as a signed compare (a kept
 *    value is not zero; thresholds above 0x80000000 keep nothing, as
 *    0x80000000 does): elect_limits() makes these limits;
 *  - a kept NaN makes S NaN, so only when some S is NaN are the values
 *    looked at again for one (an S of inf - inf is NaN without one).
 */
static inline void elect_limits(const uint32_t *thr, unsigned nx, __m256i *tm)
{
	for (unsigned i = 0; i < nx; i++) {
		uint32_t t = thr[i] ? thr[i] : 1;
		tm[i] = _mm256_set1_epi32((int)((t < 0x80000000u ? t : 0x80000000u) - 1));
	}
}

/*
 * Eight elements, their nx values in v[]: tau_MTL in *ml (elements 0-3)
 * and *mh (4-7), the signs as 32-bit lanes in *sg; nonzero when some S
 * is NaN, for the caller to call elect_nan().
 *
 * One pass over the tasks sums, in task order, the kept positive values
 * (P) and the others (N: the kept negative ones, and a kept NaN), with
 * +0 in place of the rest, and counts the kept positive and negative
 * ones; S = P + N. The values that agree with the elected sign are the
 * positive ones when it is + and the negative ones when it is -, so their
 * sum is P or N: two short chains of additions.
 */
static inline __attribute__((always_inline)) int
elect8(const __m256 *v, unsigned nx, const __m256i *tm, int maj, __m256d *ml, __m256d *mh,
       __m256i *sg)
{
	const __m256i mask = _mm256_set1_epi32(0x7fffffff);
	const __m256d zero = _mm256_setzero_pd();
	const __m256 zf = _mm256_setzero_ps();
	const __m256i pick = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6); /* low halves of 64-bit lanes */
	__m256d pl = zero, ph = zero, nl = zero, nh = zero;
	__m256i cp = _mm256_setzero_si256(), cn = _mm256_setzero_si256();
#pragma GCC unroll 16
	for (unsigned i = 0; i < nx; i++) {
		__m256i keep = _mm256_cmpgt_epi32(_mm256_and_si256(_mm256_castps_si256(v[i]), mask), tm[i]);
		__m256 vk = _mm256_and_ps(v[i], _mm256_castsi256_ps(keep)); /* v, or +0 */
		cp = _mm256_sub_epi32(cp, _mm256_castps_si256(_mm256_cmp_ps(vk, zf, _CMP_GT_OQ)));
		cn = _mm256_sub_epi32(cn, _mm256_castps_si256(_mm256_cmp_ps(vk, zf, _CMP_LT_OQ)));
		__m256d dl = _mm256_cvtps_pd(_mm256_castps256_ps128(vk));
		__m256d dh = _mm256_cvtps_pd(_mm256_extractf128_ps(vk, 1));
		__m256d posl = _mm256_cmp_pd(dl, zero, _CMP_GT_OQ), posh = _mm256_cmp_pd(dh, zero, _CMP_GT_OQ);
		pl = _mm256_add_pd(pl, _mm256_and_pd(dl, posl)); /* P += v > 0 ? v : +0 */
		ph = _mm256_add_pd(ph, _mm256_and_pd(dh, posh));
		nl = _mm256_add_pd(nl, _mm256_andnot_pd(posl, dl)); /* N += otherwise */
		nh = _mm256_add_pd(nh, _mm256_andnot_pd(posh, dh));
	}
	/* sign(S): a NaN S compares neither way */
	__m256d sl = _mm256_add_pd(pl, nl), sh = _mm256_add_pd(ph, nh);
	__m256d gtl = _mm256_cmp_pd(sl, zero, _CMP_GT_OQ), ltl = _mm256_cmp_pd(sl, zero, _CMP_LT_OQ);
	__m256d gth = _mm256_cmp_pd(sh, zero, _CMP_GT_OQ), lth = _mm256_cmp_pd(sh, zero, _CMP_LT_OQ);
	/* sign = (S > 0) - (S < 0): masks are -1 or 0 */
	__m256i sl64 = _mm256_sub_epi64(_mm256_castpd_si256(ltl), _mm256_castpd_si256(gtl));
	__m256i sh64 = _mm256_sub_epi64(_mm256_castpd_si256(lth), _mm256_castpd_si256(gth));
	__m256i s32 = _mm256_blend_epi32(_mm256_permutevar8x32_epi32(sl64, pick),
	                                 _mm256_permutevar8x32_epi32(sh64, pick), 0xf0);
	/* the elected sign is +: S > 0, or S == 0 (or NaN) with a + majority */
	__m256d el, eh;
	__m256i e32;
	if (maj > 0) {
		el = _mm256_cmp_pd(sl, zero, _CMP_NLT_UQ), eh = _mm256_cmp_pd(sh, zero, _CMP_NLT_UQ);
		e32 = _mm256_cmpgt_epi32(s32, _mm256_set1_epi32(-1));
	} else {
		el = gtl, eh = gth;
		e32 = _mm256_cmpgt_epi32(s32, _mm256_setzero_si256());
	}
	/* the mean, or +0 when nothing agrees: then the sum is +0, and a count
	 * of at least 1 keeps it +0 */
	__m256i cnt = _mm256_max_epi32(_mm256_blendv_epi8(cn, cp, e32), _mm256_set1_epi32(1));
	__m256d cl = _mm256_cvtepi32_pd(_mm256_castsi256_si128(cnt));
	__m256d ch = _mm256_cvtepi32_pd(_mm256_extracti128_si256(cnt, 1));
	*ml = _mm256_div_pd(_mm256_blendv_pd(nl, pl, el), cl);
	*mh = _mm256_div_pd(_mm256_blendv_pd(nh, ph, eh), ch);
	*sg = s32;
	__m256d un = _mm256_cmp_pd(sl, sh, _CMP_UNORD_Q);
	return !_mm256_testz_pd(un, un);
}

/* After elect8() saw a NaN S: a kept NaN makes the element NaN, sign +1. */
static inline void elect_nan(const __m256 *v, unsigned nx, const __m256i *tm, __m256d *ml,
                             __m256d *mh, __m256i *sg)
{
	const __m256i mask = _mm256_set1_epi32(0x7fffffff);
	__m256i nani = _mm256_setzero_si256();
	for (unsigned i = 0; i < nx; i++) {
		__m256i a = _mm256_and_si256(_mm256_castps_si256(v[i]), mask);
		__m256i keep = _mm256_cmpgt_epi32(a, tm[i]);
		nani = _mm256_or_si256(nani, _mm256_and_si256(keep, _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7f800000))));
	}
	*ml = _mm256_blendv_pd(*ml, _mm256_set1_pd(NAN),
	                       _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(nani))));
	*mh = _mm256_blendv_pd(*mh, _mm256_set1_pd(NAN),
	                       _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_extracti128_si256(nani, 1))));
	*sg = _mm256_blendv_epi8(*sg, _mm256_set1_epi32(1), nani);
}

static inline __attribute__((always_inline)) void
elect_body(const float *tp, size_t n, unsigned nx, const uint32_t *thr, int maj, double *mtl,
           signed char *sign)
{
	__m256i tm[16];
	size_t j = 0;

	elect_limits(thr, nx, tm);
	for (; j + 8 <= n; j += 8) {
		__m256 v[16];
		__m256d ml, mh;
		__m256i sg;
#pragma GCC unroll 16
		for (unsigned i = 0; i < nx; i++)
			v[i] = _mm256_loadu_ps(tp + (size_t)i * n + j);
		if (elect8(v, nx, tm, maj, &ml, &mh, &sg))
			elect_nan(v, nx, tm, &ml, &mh, &sg);
		_mm256_storeu_pd(mtl + j, ml);
		_mm256_storeu_pd(mtl + j + 4, mh);
		__m128i s16 = _mm_packs_epi32(_mm256_castsi256_si128(sg), _mm256_extracti128_si256(sg, 1));
		_mm_storel_epi64((__m128i *)(sign + j), _mm_packs_epi16(s16, s16));
	}
	if (j < n) {
		/* the tail through the scalar kernel, on a compact copy */
		float t[8 * 16];
		size_t m = n - j;
		for (unsigned i = 0; i < nx; i++)
			memcpy(t + (size_t)i * m, tp + (size_t)i * n + j, m * sizeof(float));
		kern_scalar.ties_elect(t, m, nx, thr, maj, mtl + j, sign + j);
	}
}

/* The body once per small number of tasks, so that its loops unroll and
 * the kept values stay in registers. */
static void avx2_ties_elect(const float *tp, size_t n, unsigned nx, const uint32_t *thr, int maj,
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
		if (nx <= 16) /* the kept values are cached per task: few tasks only */
			elect_body(tp, n, nx, thr, maj, mtl, sign);
		else
			kern_scalar.ties_elect(tp, n, nx, thr, maj, mtl, sign);
	}
}

/*
 * TIES's select pass fused: the task vectors in registers, their sum
 * added up in double lanes as norm_lin does (norms 1: s1 is not NULL),
 * and the high bits of each |tau'| written to a small buffer of keys,
 * which are then counted: a load and an add per count, the part no
 * vector instruction helps.
 */
static inline __attribute__((always_inline)) void
ties_select_t(const enum dtype dt, const void *const *x, unsigned nx, const void *base,
              const double *w, size_t n, uint32_t *const *hist, double *s1, double *s2,
              float *tp, size_t ld, const int norms)
{
	const unsigned char *bp = base;
	const __m256i mask = _mm256_set1_epi32(0x7fffffff), low16 = _mm256_set1_epi32(0xffff);
	const __m256d absmask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
	const __m256d inf = _mm256_set1_pd(INFINITY);
	__m256d s1l = _mm256_setzero_pd(), s1h = s1l, s2l = s1l, s2h = s1l;
	uint16_t keys[4096];
	size_t es = dtype_size(dt), sub = 4096 / nx < 512 ? (4096 / nx) & ~(size_t)7 : 512;
	size_t m = n - n % 8;

	if (norms) {
		s1l = _mm256_loadu_pd(s1), s1h = _mm256_loadu_pd(s1 + 4);
		s2l = _mm256_loadu_pd(s2), s2h = _mm256_loadu_pd(s2 + 4);
	}
	for (size_t j0 = 0; j0 < m; j0 += sub) {
		size_t k = m - j0 < sub ? m - j0 : sub;
		for (size_t j = j0; j < j0 + k; j += 8) {
			__m256 b = ld8(dt, bp + j * es);
			__m256d sl = _mm256_setzero_pd(), sh = _mm256_setzero_pd();
			for (unsigned i = 0; i < nx; i++) {
				__m256 tau = _mm256_sub_ps(ld8x(dt, (const unsigned char *)x[i] + j * es), b);
				if (norms) { /* s += tau */
					sl = _mm256_add_pd(sl, _mm256_cvtps_pd(_mm256_castps256_ps128(tau)));
					sh = _mm256_add_pd(sh, _mm256_cvtps_pd(_mm256_extractf128_ps(tau, 1)));
				}
				if (w[i] != 1.0) {
					__m256d wi = _mm256_set1_pd(w[i]);
					__m128 lo = _mm256_cvtpd_ps(_mm256_mul_pd(wi, _mm256_cvtps_pd(_mm256_castps256_ps128(tau))));
					__m128 hi = _mm256_cvtpd_ps(_mm256_mul_pd(wi, _mm256_cvtps_pd(_mm256_extractf128_ps(tau, 1))));
					tau = _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
				}
				if (tp)
					_mm256_storeu_ps(tp + (size_t)i * ld + j, tau);
				/* ties_key(): the high bits times two, plus one when the low
				 * sixteen are zero */
				__m256i a = _mm256_and_si256(_mm256_castps_si256(tau), mask);
				__m256i edge = _mm256_cmpeq_epi32(_mm256_and_si256(a, low16), _mm256_setzero_si256());
				__m256i key = _mm256_sub_epi32(_mm256_slli_epi32(_mm256_srli_epi32(a, 16), 1), edge);
				__m128i k16 = _mm_packus_epi32(_mm256_castsi256_si128(key), _mm256_extracti128_si256(key, 1));
				_mm_storeu_si128((__m128i *)(keys + (size_t)i * k + (j - j0)), k16);
			}
			if (!norms)
				continue;
			__m256d al = _mm256_and_pd(sl, absmask), ah = _mm256_and_pd(sh, absmask);
			al = _mm256_and_pd(al, _mm256_cmp_pd(al, inf, _CMP_LT_OQ)); /* +0 when not finite */
			ah = _mm256_and_pd(ah, _mm256_cmp_pd(ah, inf, _CMP_LT_OQ));
			s1l = _mm256_add_pd(s1l, al), s1h = _mm256_add_pd(s1h, ah);
			s2l = _mm256_add_pd(s2l, _mm256_mul_pd(al, al)), s2h = _mm256_add_pd(s2h, _mm256_mul_pd(ah, ah));
		}
		for (unsigned i = 0; i < nx; i++) {
			uint32_t *h = hist[i];
			const uint16_t *kk = keys + (size_t)i * k;
			for (size_t q = 0; q < k; q += 8) { /* k is a multiple of 8 */
				h[kk[q]]++, h[kk[q + 1]]++, h[kk[q + 2]]++, h[kk[q + 3]]++;
				h[kk[q + 4]]++, h[kk[q + 5]]++, h[kk[q + 6]]++, h[kk[q + 7]]++;
			}
		}
	}
	if (norms) {
		_mm256_storeu_pd(s1, s1l), _mm256_storeu_pd(s1 + 4, s1h);
		_mm256_storeu_pd(s2, s2l), _mm256_storeu_pd(s2 + 4, s2h);
	}
	if (m < n) { /* the tail goes on from lane 0 */
		const void *xt[LINES_MAX_MODELS];
		kern_advance(x, nx, m * es, xt);
		kern_scalar.ties_select(dt, xt, nx, bp + m * es, w, n - m, hist, s1, s2,
		                        tp ? tp + m : NULL, ld);
	}
}

#define SELECT_DT(fn, t)                                                                          \
	(s1 ? fn(t, x, nx, base, w, n, hist, s1, s2, tp, ld, 1)                                  \
	    : fn(t, x, nx, base, w, n, hist, s1, s2, tp, ld, 0))
static void avx2_ties_select(enum dtype dt, const void *const *x, unsigned nx, const void *base,
                             const double *w, size_t n, uint32_t *const *hist, double *s1,
                             double *s2, float *tp, size_t ld)
{
	switch (dt) { /* the norms, or (s1 NULL) the counts alone */
	case DT_BF16: SELECT_DT(ties_select_t, DT_BF16); break;
	case DT_F16: SELECT_DT(ties_select_t, DT_F16); break;
	case DT_F32: SELECT_DT(ties_select_t, DT_F32); break;
	default: kern_scalar.ties_select(dt, x, nx, base, w, n, hist, s1, s2, tp, ld); break;
	}
}
#undef SELECT_DT

/* The low 64 bits of a * b, lane by lane (AVX2 has no 64-bit multiply). */
static inline __m256i mullo64(__m256i a, __m256i b)
{
	__m256i lo = _mm256_mul_epu32(a, b);
	__m256i hl = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), b);
	__m256i lh = _mm256_mul_epu32(a, _mm256_srli_epi64(b, 32));
	return _mm256_add_epi64(lo, _mm256_slli_epi64(_mm256_add_epi64(hl, lh), 32));
}

static inline __m256i mix64x4(__m256i x)
{
	x = _mm256_add_epi64(x, _mm256_set1_epi64x((long long)0x9e3779b97f4a7c15ull));
	x = mullo64(_mm256_xor_si256(x, _mm256_srli_epi64(x, 30)),
	            _mm256_set1_epi64x((long long)0xbf58476d1ce4e5b9ull));
	x = mullo64(_mm256_xor_si256(x, _mm256_srli_epi64(x, 27)),
	            _mm256_set1_epi64x((long long)0x94d049bb133111ebull));
	return _mm256_xor_si256(x, _mm256_srli_epi64(x, 31));
}

/* The 53-bit draws of four elements, h = their idx * KERN_DARE_STEP */
static inline __m256i draw4(__m256i key, __m256i h)
{
	return _mm256_srli_epi64(mix64x4(_mm256_xor_si256(key, h)), 11);
}

/* idx * KERN_DARE_STEP of elements idx0 to idx0 + 3, and the step from
 * one four to the next: products modulo 2^64, updated by addition */
static inline __m256i idx_steps4(uint64_t idx0)
{
	return _mm256_setr_epi64x((long long)(idx0 * KERN_DARE_STEP),
	                          (long long)((idx0 + 1) * KERN_DARE_STEP),
	                          (long long)((idx0 + 2) * KERN_DARE_STEP),
	                          (long long)((idx0 + 3) * KERN_DARE_STEP));
}
#define STEP4 _mm256_set1_epi64x((long long)(4 * KERN_DARE_STEP))

/* The lanes of q0 = t * r whose product may not stand for the rounded
 * quotient (kernels.h, KERN_DARE_RMIN): kept (keep), not zero (nz, which
 * is returned), and with |q0| below 2^-126 or at least hi (2^128 when
 * rounded by the hardware, 2^127 when rounded in the integer unit), or
 * near a float32 rounding midpoint. Infinities and NaNs are at least hi,
 * so they go to the division. |q0|'s bits are below 2^63 and the low 29
 * less the midpoint's start are taken modulo 2^29: signed compares serve. */
static inline __m256i dare_bad4(__m256i b, __m256i keep, __m256i hi, __m256i *nz)
{
	const __m256i a = _mm256_and_si256(b, _mm256_set1_epi64x(0x7fffffffffffffffll));
	__m256i out = _mm256_or_si256(_mm256_cmpgt_epi64(_mm256_set1_epi64x((long long)KERN_DARE_QLO), a),
	                              _mm256_cmpgt_epi64(a, _mm256_sub_epi64(hi, _mm256_set1_epi64x(1))));
	__m256i mid = _mm256_cmpgt_epi64(
		_mm256_set1_epi64x(2 * KERN_DARE_NEAR + 1),
		_mm256_and_si256(_mm256_sub_epi64(b, _mm256_set1_epi64x((long long)(KERN_DARE_MID - KERN_DARE_NEAR))),
		                 _mm256_set1_epi64x(0x1fffffff)));
	*nz = _mm256_andnot_si256(_mm256_cmpeq_epi64(a, _mm256_setzero_si256()), keep);
	return _mm256_and_si256(*nz, _mm256_or_si256(out, mid));
}

/* t / d of the kept lanes, +0.0 in the others, as t * r where that is
 * the same float32 (dare_bad4); fast: d is in range. A kept zero is
 * t * r exactly. */
static inline __m256d quot4(__m256d keep, __m256d t, __m256d d, __m256d r, int fast)
{
	__m256d q0 = _mm256_mul_pd(t, r);
	__m256i nz, bad = dare_bad4(_mm256_castpd_si256(q0), _mm256_castpd_si256(keep),
	                            _mm256_set1_epi64x((long long)KERN_DARE_QTOP), &nz);
	if (__builtin_expect(!_mm256_testz_si256(bad, bad) || !fast, 0))
		return _mm256_and_pd(_mm256_div_pd(t, d), keep);
	return _mm256_and_pd(q0, keep);
}

/* acc plus the kept t / d rounded to float32 (dare_sum's step): where the
 * product by r stands for the quotient, rounded to float32 in the integer
 * unit (kernels.h, KERN_DARE_QLO); kept zeros add nothing (acc is never
 * -0.0: it starts at +0.0) */
static inline __m256d qsum4(__m256d acc, __m256d keep, __m256d t, __m256d d, __m256d r, int fast)
{
	const __m256i m29 = _mm256_set1_epi64x(0x1fffffff);
	__m256d q0 = _mm256_mul_pd(t, r);
	__m256i b = _mm256_castpd_si256(q0);
	__m256i nz, bad = dare_bad4(b, _mm256_castpd_si256(keep),
	                            _mm256_set1_epi64x((long long)KERN_DARE_QHI), &nz);
	if (__builtin_expect(!_mm256_testz_si256(bad, bad) || !fast, 0)) {
		__m256d q = _mm256_and_pd(_mm256_div_pd(t, d), keep);
		return _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_cvtpd_ps(q)));
	}
	b = _mm256_andnot_si256(m29, _mm256_add_epi64(b, _mm256_set1_epi64x((long long)KERN_DARE_MID)));
	return _mm256_add_pd(acc, _mm256_and_pd(_mm256_castsi256_pd(b), _mm256_castsi256_pd(nz)));
}

static inline int dare_fast(double d)
{
	return d >= KERN_DARE_RMIN && d <= KERN_DARE_RMAX;
}

/*
 * DARE's drop, four elements a step: the hash in 64-bit lanes, the keep
 * test as a signed compare (both sides are below 2^53), the quotient in
 * float64 rounded once to float32, a dropped value masked to +0.0.
 */
static void avx2_dare_drop(float *tp, size_t n, uint64_t key, uint64_t idx0, uint64_t limit,
                           double density)
{
	const __m256i k = _mm256_set1_epi64x((long long)key), lim = _mm256_set1_epi64x((long long)limit);
	const __m256d dd = _mm256_set1_pd(density), rr = _mm256_set1_pd(1.0 / density);
	const int fast = dare_fast(density);
	__m256i h = idx_steps4(idx0);
	size_t j = 0;

	for (; j + 4 <= n; j += 4) {
		__m256d keep = _mm256_castsi256_pd(_mm256_cmpgt_epi64(lim, draw4(k, h)));
		__m256d q = quot4(keep, _mm256_cvtps_pd(_mm_loadu_ps(tp + j)), dd, rr, fast);
		_mm_storeu_ps(tp + j, _mm256_cvtpd_ps(q));
		h = _mm256_add_epi64(h, STEP4);
	}
	if (j < n)
		kern_scalar.dare_drop(tp + j, n - j, key, idx0 + j, limit, density);
}

/* DARE's drops of a tile's tasks and their sum, four elements a step, from
 * element j to n: the index products once for all tasks, each task's
 * quotient rounded to float32 and widened back, dropped ones +0.0, added
 * in task order. */
static void dare_sum_exact(const float *tp, size_t n, size_t j, unsigned nx, const uint64_t *key,
                           uint64_t idx0, const uint64_t *limit, const double *div, double *mtl)
{
	__m256i h = idx_steps4(idx0 + j);
	double r[LINES_MAX_MODELS];
	int fast = 1;

	for (unsigned i = 0; i < nx; i++)
		r[i] = 1.0 / div[i], fast &= dare_fast(div[i]);
	for (; j + 4 <= n; j += 4) {
		__m256d acc = _mm256_setzero_pd();
		for (unsigned i = 0; i < nx; i++) {
			__m256i lim = _mm256_set1_epi64x((long long)limit[i]);
			__m256i x = draw4(_mm256_set1_epi64x((long long)key[i]), h);
			__m256d keep = _mm256_castsi256_pd(_mm256_cmpgt_epi64(lim, x));
			acc = qsum4(acc, keep, _mm256_cvtps_pd(_mm_loadu_ps(tp + (size_t)i * n + j)),
			            _mm256_set1_pd(div[i]), _mm256_set1_pd(r[i]), fast);
		}
		_mm256_storeu_pd(mtl + j, acc);
		h = _mm256_add_epi64(h, STEP4);
	}
	for (; j < n; j++) { /* the tail, by the definition */
		double m = 0.0;
		for (unsigned i = 0; i < nx; i++)
			m += (double)kern_dare_q(tp[(size_t)i * n + j], key[i], idx0 + j, limit[i], div[i]);
		mtl[j] = m;
	}
}

/* The float32 bits of 2^-100 and 2^100 */
#define DARE_TLO 0x0d800000
#define DARE_THI 0x71800000

/*
 * Whether each d is in [2^-20, 2^20] and each of the len values of tp is
 * zero or of magnitude in [2^-100, 2^100]. Then every q0 = t * r (r =
 * 1 / d rounded, in [2^-20, 2^20]) that is not zero is above 2^-126 and
 * below 2^127, a kept zero rounds to itself in the integer unit, and
 * dare_bad4's one remaining test is the midpoint's.
 */
static int dare_easy(const float *tp, size_t len, unsigned nx, const double *div)
{
	const __m256i abs = _mm256_set1_epi32(0x7fffffff), zero = _mm256_setzero_si256(),
		      lo = _mm256_set1_epi32(DARE_TLO), hi = _mm256_set1_epi32(DARE_THI);
	__m256i bad = zero;
	size_t j = 0;

	for (unsigned i = 0; i < nx; i++)
		if (!(div[i] >= 0x1p-20 && div[i] <= 0x1p20))
			return 0;
	for (; j + 8 <= len; j += 8) {
		__m256i a = _mm256_and_si256(_mm256_loadu_si256((const void *)(tp + j)), abs);
		__m256i out = _mm256_or_si256(_mm256_cmpgt_epi32(lo, a), _mm256_cmpgt_epi32(a, hi));
		bad = _mm256_or_si256(bad, _mm256_andnot_si256(_mm256_cmpeq_epi32(a, zero), out));
	}
	for (; j < len; j++) {
		uint32_t a;
		memcpy(&a, tp + j, sizeof(a));
		a &= 0x7fffffff;
		if (a != 0 && (a < DARE_TLO || a > DARE_THI))
			return 0;
	}
	return _mm256_testz_si256(bad, bad);
}

/*
 * dare_sum_exact's sum where dare_easy holds: the midpoint test of all
 * lanes and tasks gathered, one branch at the end (about 2^-26 of random
 * lanes fail it; then the whole tile is summed again by dare_sum_exact).
 * A dropped lane's test counts too: it costs a rare second sum, not a
 * wrong one.
 */
static void avx2_dare_sum(const float *tp, size_t n, unsigned nx, const uint64_t *key,
                          uint64_t idx0, const uint64_t *limit, const double *div, double *mtl)
{
	const __m256i m29 = _mm256_set1_epi64x(0x1fffffff),
		      mid = _mm256_set1_epi64x((long long)KERN_DARE_MID),
		      near0 = _mm256_set1_epi64x((long long)(KERN_DARE_MID - KERN_DARE_NEAR)),
		      span = _mm256_set1_epi64x(2 * KERN_DARE_NEAR + 1);
	__m256i h = idx_steps4(idx0), bad = _mm256_setzero_si256();
	double r[LINES_MAX_MODELS];
	size_t j = 0;

	if (!dare_easy(tp, (size_t)nx * n, nx, div)) {
		dare_sum_exact(tp, n, 0, nx, key, idx0, limit, div, mtl);
		return;
	}
	for (unsigned i = 0; i < nx; i++)
		r[i] = 1.0 / div[i];
	/* eight elements a step, two groups of four whose draws overlap */
	for (; j + 8 <= n; j += 8) {
		__m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
		__m256i h1 = _mm256_add_epi64(h, STEP4);
		for (unsigned i = 0; i < nx; i++) {
			const __m256i k = _mm256_set1_epi64x((long long)key[i]),
				      lim = _mm256_set1_epi64x((long long)limit[i]);
			const __m256d ri = _mm256_set1_pd(r[i]);
			const float *x = tp + (size_t)i * n + j;
			__m256i k0 = _mm256_cmpgt_epi64(lim, draw4(k, h)), k1 = _mm256_cmpgt_epi64(lim, draw4(k, h1));
			__m256i b0 = _mm256_castpd_si256(_mm256_mul_pd(_mm256_cvtps_pd(_mm_loadu_ps(x)), ri));
			__m256i b1 = _mm256_castpd_si256(_mm256_mul_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + 4)), ri));
			bad = _mm256_or_si256(bad, _mm256_cmpgt_epi64(span, _mm256_and_si256(_mm256_sub_epi64(b0, near0), m29)));
			bad = _mm256_or_si256(bad, _mm256_cmpgt_epi64(span, _mm256_and_si256(_mm256_sub_epi64(b1, near0), m29)));
			b0 = _mm256_and_si256(_mm256_andnot_si256(m29, _mm256_add_epi64(b0, mid)), k0);
			b1 = _mm256_and_si256(_mm256_andnot_si256(m29, _mm256_add_epi64(b1, mid)), k1);
			a0 = _mm256_add_pd(a0, _mm256_castsi256_pd(b0));
			a1 = _mm256_add_pd(a1, _mm256_castsi256_pd(b1));
		}
		_mm256_storeu_pd(mtl + j, a0);
		_mm256_storeu_pd(mtl + j + 4, a1);
		h = _mm256_add_epi64(h1, STEP4);
	}
	if (!_mm256_testz_si256(bad, bad))
		j = 0;
	dare_sum_exact(tp, n, j, nx, key, idx0, limit, div, mtl);
}

/* DARE's keep test alone: kept values copied, the others +0.0. */
static void avx2_dare_keep(const float *tp, float *out, size_t n, uint64_t key, uint64_t idx0,
                           uint64_t limit)
{
	const __m256i k = _mm256_set1_epi64x((long long)key), lim = _mm256_set1_epi64x((long long)limit);
	__m256i h0 = idx_steps4(idx0), h1 = _mm256_add_epi64(h0, STEP4);
	const __m256i step8 = _mm256_add_epi64(STEP4, STEP4);
	size_t j = 0;

	for (; j + 8 <= n; j += 8) {
		__m256i k0 = _mm256_cmpgt_epi64(lim, draw4(k, h0)), k1 = _mm256_cmpgt_epi64(lim, draw4(k, h1));
		/* the low halves of the eight 64-bit masks, in order */
		__m256i m = _mm256_permutevar8x32_epi32(_mm256_blend_epi32(k0, _mm256_slli_epi64(k1, 32), 0xaa),
		                                        _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
		_mm256_storeu_ps(out + j, _mm256_and_ps(_mm256_loadu_ps(tp + j), _mm256_castsi256_ps(m)));
		h0 = _mm256_add_epi64(h0, step8), h1 = _mm256_add_epi64(h1, step8);
	}
	if (j < n)
		kern_scalar.dare_keep(tp + j, out + j, n - j, key, idx0 + j, limit);
}

/*
 * The tiles of TIES and DARE in one step: each model decoded, the base
 * subtracted in float32 and, for a weight other than 1, multiplied in
 * float64 and rounded once (kern_ties.c's ties_taus, the reference).
 */
static void avx2_taus(enum dtype dt, const void *const *x, unsigned nx, const void *base,
                      const double *w, size_t n, float *bt, float *tp)
{
	size_t es = dtype_size(dt), m = n - n % 8;
	if (dt == DT_F64) {
		kern_scalar.decode(dt, base, bt, n);
		for (unsigned i = 0; i < nx; i++) {
			float *t = tp + (size_t)i * n;
			kern_scalar.decode(dt, x[i], t, n);
			for (size_t j = 0; j < n; j++)
				t[j] = w[i] == 1.0 ? t[j] - bt[j] : (float)(w[i] * (double)(t[j] - bt[j]));
		}
		return;
	}
	avx2_decode(dt, base, bt, n);
	for (unsigned i = 0; i < nx; i++) {
		const unsigned char *p = x[i];
		float *t = tp + (size_t)i * n;
		size_t j = 0;
		if (w[i] == 1.0) {
			for (; j < m; j += 8)
				_mm256_storeu_ps(t + j, _mm256_sub_ps(ld8x(dt, p + j * es), _mm256_loadu_ps(bt + j)));
		} else {
			__m256d wi = _mm256_set1_pd(w[i]);
			for (; j < m; j += 8) {
				__m256 tau = _mm256_sub_ps(ld8x(dt, p + j * es), _mm256_loadu_ps(bt + j));
				__m128 lo = _mm256_cvtpd_ps(_mm256_mul_pd(wi, _mm256_cvtps_pd(_mm256_castps256_ps128(tau))));
				__m128 hi = _mm256_cvtpd_ps(_mm256_mul_pd(wi, _mm256_cvtps_pd(_mm256_extractf128_ps(tau, 1))));
				_mm256_storeu_ps(t + j, _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1));
			}
		}
		if (j < n) {
			kern_scalar.decode(dt, p + j * es, t + j, n - j);
			for (; j < n; j++)
				t[j] = w[i] == 1.0 ? t[j] - bt[j] : (float)(w[i] * (double)(t[j] - bt[j]));
		}
	}
}

/* The low-bit counts of the threshold pass: eight compares at a time,
 * and a count only for the few values in the bin (kern_ties.h). */
static void avx2_ties_bins(const float *tp, unsigned nx, size_t n, const uint32_t *bin,
                           uint32_t *const *hist, unsigned char *open)
{
	const __m256i mask = _mm256_set1_epi32(0x7fffffff);
	size_t m = n - n % 8;
	memset(open, 0, n);
	for (unsigned i = 0; i < nx; i++) {
		const float *t = tp + (size_t)i * n;
		__m256i b = _mm256_set1_epi32((int)bin[i]);
		if (bin[i] == UINT32_MAX)
			continue;
		for (size_t j = 0; j < n; j += 8) {
			unsigned f;
			if (j < m) {
				__m256i a = _mm256_and_si256(_mm256_castps_si256(_mm256_loadu_ps(t + j)), mask);
				f = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_srli_epi32(a, 16), b)));
			} else {
				f = (1u << (n - j)) - 1; /* the tail: look at each */
			}
			for (; f; f &= f - 1) {
				size_t q = j + (unsigned)__builtin_ctz(f);
				uint32_t a;
				memcpy(&a, t + q, 4);
				a &= 0x7fffffffu;
				if (a >> 16 == bin[i]) {
					hist[i][a & 0xffffu]++;
					open[q] |= (a & 0xffffu) != 0;
				}
			}
		}
	}
}

/* 64-bit lane masks from eight bytes of 0 or -1: lanes 0-3, then 4-7. */
static inline __m256d mask_lo(__m128i b) { return _mm256_castsi256_pd(_mm256_cvtepi8_epi64(b)); }
static inline __m256d mask_hi(__m128i b) { return _mm256_castsi256_pd(_mm256_cvtepi8_epi64(_mm_srli_si128(b, 4))); }

/* The decided elements of TIES's threshold pass (kern_ties.h). */
static int64_t avx2_ties_decided(const double *mtl, const signed char *sign, unsigned char *open,
                                 size_t n, double *dl, double *dq)
{
	const __m256d absmask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
	const __m256d inf = _mm256_set1_pd(INFINITY), zero = _mm256_setzero_pd();
	const __m128i z = _mm_setzero_si128();
	__m256d dll = _mm256_loadu_pd(dl), dlh = _mm256_loadu_pd(dl + 4);
	__m256d dql = _mm256_loadu_pd(dq), dqh = _mm256_loadu_pd(dq + 4);
	__m256i votes = _mm256_setzero_si256();
	int64_t v = 0;
	size_t j = 0;

	for (; j + 8 <= n; j += 8) {
		__m128i s = _mm_loadl_epi64((const __m128i *)(sign + j));
		__m128i o = _mm_loadl_epi64((const __m128i *)(open + j));
		__m128i closed = _mm_cmpeq_epi8(o, z), nos = _mm_cmpeq_epi8(s, z);
		__m128i ok = _mm_andnot_si128(nos, closed); /* not open, with a sign */
		__m256d ml = _mm256_loadu_pd(mtl + j), mh = _mm256_loadu_pd(mtl + j + 4);
		__m256d al = _mm256_and_pd(ml, absmask), ah = _mm256_and_pd(mh, absmask);
		al = _mm256_and_pd(al, _mm256_and_pd(mask_lo(ok), _mm256_cmp_pd(al, inf, _CMP_LT_OQ)));
		ah = _mm256_and_pd(ah, _mm256_and_pd(mask_hi(ok), _mm256_cmp_pd(ah, inf, _CMP_LT_OQ)));
		dll = _mm256_add_pd(dll, al), dlh = _mm256_add_pd(dlh, ah);
		dql = _mm256_add_pd(dql, _mm256_mul_pd(al, al)), dqh = _mm256_add_pd(dqh, _mm256_mul_pd(ah, ah));
		votes = _mm256_add_epi32(votes, _mm256_cvtepi8_epi32(_mm_and_si128(s, closed)));
		/* a zero sum of kept values that are not all zero: bit 1 */
		unsigned nz = (unsigned)_mm256_movemask_pd(_mm256_cmp_pd(ml, zero, _CMP_NEQ_UQ)) |
		              (unsigned)_mm256_movemask_pd(_mm256_cmp_pd(mh, zero, _CMP_NEQ_UQ)) << 4;
		unsigned f = nz & (unsigned)_mm_movemask_epi8(_mm_and_si128(closed, nos)) & 0xffu;
		for (; f; f &= f - 1)
			open[j + (unsigned)__builtin_ctz(f)] |= 2;
	}
	_mm256_storeu_pd(dl, dll), _mm256_storeu_pd(dl + 4, dlh);
	_mm256_storeu_pd(dq, dql), _mm256_storeu_pd(dq + 4, dqh);
	{
		int32_t vv[8];
		_mm256_storeu_si256((__m256i *)vv, votes);
		for (unsigned l = 0; l < 8; l++)
			v += vv[l];
	}
	if (j < n) /* the tail goes on from lane 0 */
		v += kern_scalar.ties_decided(mtl + j, sign + j, open + j, n - j, dl, dq);
	return v;
}

/* The masks of 32-bit lanes 0-3 (lo) and 4-7 (hi) of m as masks of
 * 64-bit lanes */
static inline __m256d widen_lo(__m256i m)
{
	return _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(m)));
}
static inline __m256d widen_hi(__m256i m)
{
	return _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_extracti128_si256(m, 1)));
}

/* The sums of breadcrumbs' merge with ties of four elements (as
 * kern_avx512.c's struct bc8, on four lanes): with every weight 1
 * (unit), np and nn count the kept values of each sign, one count in
 * each 64-bit lane, instead of the sums of their weights. */
struct bc4 {
	__m256d p, n, cp, cn;
	__m256i np, nn;
};

/* One task's part of the merge with ties of four elements: x their
 * float32 values widened, kp and kn (64-bit lanes) where a kept value is
 * > 0 or NaN, and < 0, of the sign of w x (the comparisons of x with its
 * sign flipped where w < 0, as avx512's bc_elect8). */
static inline __attribute__((always_inline)) void bc_elect4(struct bc4 *t, const int unit,
                                                            __m256d x, __m256d kp, __m256d kn,
                                                            double w)
{
	__m256d c = _mm256_set1_pd(w), v = unit || w == 1.0 ? x : _mm256_mul_pd(c, x);
	t->p = _mm256_add_pd(t->p, _mm256_and_pd(v, kp));
	t->n = _mm256_add_pd(t->n, _mm256_and_pd(v, kn));
	if (unit) {
		t->np = _mm256_sub_epi64(t->np, _mm256_castpd_si256(kp));
		t->nn = _mm256_sub_epi64(t->nn, _mm256_castpd_si256(kn));
	} else {
		t->cp = _mm256_add_pd(t->cp, _mm256_and_pd(c, kp));
		t->cn = _mm256_add_pd(t->cn, _mm256_and_pd(c, kn));
	}
}

/* The merge with ties of four elements from their sums (avx512's
 * bc_elected8): S = P + N; P over its weights where S >= 0, else N over
 * its (1 where that is 0, or without normalize); S where S is NaN. */
static inline __attribute__((always_inline)) __m256d bc_elected4(const struct bc4 *t,
                                                                 const int unit, int normalize)
{
	const __m256d zero = _mm256_setzero_pd(), one = _mm256_set1_pd(1.0);
	__m256d s = _mm256_add_pd(t->p, t->n), pos = _mm256_cmp_pd(s, zero, _CMP_GE_OQ);
	__m256d num = _mm256_blendv_pd(t->n, t->p, pos), d;
	if (unit) { /* counts of at most LINES_MAX_MODELS: the lanes' low words */
		__m256i c = _mm256_blendv_epi8(t->nn, t->np, _mm256_castpd_si256(pos));
		__m128i c32 = _mm256_castsi256_si128(
		    _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)));
		d = _mm256_cvtepi32_pd(c32);
	} else {
		d = _mm256_blendv_pd(t->cn, t->cp, pos);
	}
	if (normalize)
		d = _mm256_blendv_pd(one, d, _mm256_cmp_pd(d, zero, _CMP_NEQ_UQ));
	else
		d = one;
	return _mm256_blendv_pd(_mm256_div_pd(num, d), s, _mm256_cmp_pd(s, s, _CMP_UNORD_Q));
}

/*
 * Breadcrumbs' taus and merge in one loop (kernels.h, bc_taus_merge),
 * eight elements at a time, as avx512's: the base decoded once into bt,
 * each task's tau = x - b as avx2_taus computes it (every weight 1), kept
 * where lo <= |tau|'s bits <= hi (unsigned: through max and min). Without
 * ties, w tau in float64 added to m's lanes (+0.0 where dropped), tasks
 * in order, as kern_ties.c's strip adds bc_kept(), then times 1 / wdiv
 * where that is a power of two, else over wdiv (normalize), as there;
 * with ties, bc_elect4() and bc_elected4(). With s, the sum of the taus
 * in float64 from 0.0, as bc_raw_sum adds them. With every weight 1
 * (unit), 1 x is x (a NaN's payload aside): no product.
 */
static inline __attribute__((always_inline)) size_t
bc_taus_merge4_t(const enum dtype dt, const int ties, const int unit, const int raw,
                 const void *const *x, unsigned nx, const void *base, size_t n,
                 const uint32_t *lo, const uint32_t *hi, const double *w, int normalize,
                 double wdiv, float *bt, double *m, double *s)
{
	const unsigned char *bp = base;
	const __m256i abs = _mm256_set1_epi32(0x7fffffff);
	size_t es = dtype_size(dt), n8 = n - n % 8;
	double r = 0.0;
	int pow2 = !ties && normalize && pow2_inverse(wdiv, &r);
	for (size_t j = 0; j < n8; j += 8) {
		__m256 b = ld8(dt, bp + j * es);
		__m256d v0 = _mm256_setzero_pd(), v1 = v0, s0 = v0, s1 = v0;
		struct bc4 t0 = {v0, v0, v0, v0, _mm256_setzero_si256(), _mm256_setzero_si256()},
		           t1 = t0;
		_mm256_storeu_ps(bt + j, b);
		for (unsigned i = 0; i < nx; i++) {
			__m256 tau = _mm256_sub_ps(ld8x(dt, (const unsigned char *)x[i] + j * es), b);
			__m256i a = _mm256_and_si256(_mm256_castps_si256(tau), abs);
			__m256i keep = _mm256_and_si256(
			    _mm256_cmpeq_epi32(_mm256_max_epu32(a, _mm256_set1_epi32((int)lo[i])), a),
			    _mm256_cmpeq_epi32(_mm256_min_epu32(a, _mm256_set1_epi32((int)hi[i])), a));
			__m256d x0 = _mm256_cvtps_pd(_mm256_castps256_ps128(tau)),
			        x1 = _mm256_cvtps_pd(_mm256_extractf128_ps(tau, 1));
			if (raw) {
				s0 = _mm256_add_pd(s0, x0);
				s1 = _mm256_add_pd(s1, x1);
			}
			if (ties) {
				__m256 sx = unit || w[i] >= 0.0
				                ? tau
				                : _mm256_xor_ps(tau, _mm256_set1_ps(-0.0f));
				__m256i kp = _mm256_and_si256(keep, _mm256_castps_si256(_mm256_cmp_ps(
				                                        sx, _mm256_setzero_ps(), _CMP_NLE_UQ)));
				__m256i kn = _mm256_and_si256(keep, _mm256_castps_si256(_mm256_cmp_ps(
				                                        sx, _mm256_setzero_ps(), _CMP_LT_OQ)));
				bc_elect4(&t0, unit, x0, widen_lo(kp), widen_lo(kn), w[i]);
				bc_elect4(&t1, unit, x1, widen_hi(kp), widen_hi(kn), w[i]);
				continue;
			}
			__m256d k0 = widen_lo(keep), k1 = widen_hi(keep);
			if (!unit) {
				x0 = _mm256_mul_pd(_mm256_set1_pd(w[i]), x0);
				x1 = _mm256_mul_pd(_mm256_set1_pd(w[i]), x1);
			}
			v0 = _mm256_add_pd(v0, _mm256_and_pd(x0, k0));
			v1 = _mm256_add_pd(v1, _mm256_and_pd(x1, k1));
		}
		if (raw) {
			_mm256_storeu_pd(s + j, s0);
			_mm256_storeu_pd(s + j + 4, s1);
		}
		if (ties) {
			v0 = bc_elected4(&t0, unit, normalize);
			v1 = bc_elected4(&t1, unit, normalize);
		} else if (pow2) {
			v0 = _mm256_mul_pd(v0, _mm256_set1_pd(r));
			v1 = _mm256_mul_pd(v1, _mm256_set1_pd(r));
		} else if (normalize) {
			v0 = _mm256_div_pd(v0, _mm256_set1_pd(wdiv));
			v1 = _mm256_div_pd(v1, _mm256_set1_pd(wdiv));
		}
		_mm256_storeu_pd(m + j, v0);
		_mm256_storeu_pd(m + j + 4, v1);
	}
	return n8;
}

#define BC_TM4(dt, ties, unit, raw)                                                               \
	bc_taus_merge4_t(dt, ties, unit, raw, x, nx, base, n, lo, hi, w, normalize, wdiv, bt, m, s)
#define BC_TM4_DT(dt)                                                                             \
	(ties ? (unit ? (s ? BC_TM4(dt, 1, 1, 1) : BC_TM4(dt, 1, 1, 0))                           \
	              : (s ? BC_TM4(dt, 1, 0, 1) : BC_TM4(dt, 1, 0, 0)))                          \
	      : (unit ? (s ? BC_TM4(dt, 0, 1, 1) : BC_TM4(dt, 0, 1, 0))                           \
	              : (s ? BC_TM4(dt, 0, 0, 1) : BC_TM4(dt, 0, 0, 0))))
static size_t avx2_bc_taus_merge(enum dtype dt, const void *const *x, unsigned nx,
                                 const void *base, size_t n, const uint32_t *lo, const uint32_t *hi,
                                 const double *w, int ties, int normalize, double wdiv, float *bt,
                                 double *m, double *s)
{
	int unit = 1;
	for (unsigned i = 0; i < nx; i++)
		unit &= w[i] == 1.0;
	switch (dt) {
	case DT_BF16: return BC_TM4_DT(DT_BF16);
	case DT_F16: return BC_TM4_DT(DT_F16);
	case DT_F32: return BC_TM4_DT(DT_F32);
	default: return 0;
	}
}
#undef BC_TM4_DT
#undef BC_TM4

const struct kern kern_avx2 = {
	.name = "avx2",
	.decode = avx2_decode,
	.encode = avx2_encode,
	.accum = avx2_accum,
	.finish = avx2_finish,
	.merge_lin = avx2_merge_lin,
	.norm_lin = avx2_norm_lin,
	.taus = avx2_taus,
	.ties_elect = avx2_ties_elect,
	.ties_decided = avx2_ties_decided,
	.ties_bins = avx2_ties_bins,
	.ties_select = avx2_ties_select,
	.dare_drop = avx2_dare_drop,
	.dare_sum = avx2_dare_sum,
	.dare_keep = avx2_dare_keep,
	.bc_taus_merge = avx2_bc_taus_merge,
	.qk_fit8 = kern_avx2_qk_fit8,
	.q6_fit8 = kern_avx2_q6_fit8,
};
