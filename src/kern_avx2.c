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

/* bf16 -> f32: shift into the high half; quiet a NaN like the reference. */
static inline __m256 ld_bf16(const unsigned char *p)
{
	__m256i u = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16);
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
		__m256 tau = _mm256_sub_ps(ld8(dt, p + j * es), _mm256_loadu_ps(b + j)); /* tau = x - b, float */
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
		const void *xt[1024]; /* plan.c merges at most 1024 models */
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
			__m256 tau = _mm256_sub_ps(ld8(dt, (const unsigned char *)x[i] + j * es), vb);
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
		const void *xt[1024]; /* plan.c merges at most 1024 models */
		kern_advance(x, nx, j * es, xt);
		kern_scalar.norm_lin(dt, xt, nx, b + j, c, n - j, acc);
	}
}

/*
 * TIES election, eight elements at a time (two halves of four doubles).
 * The scalar definition skips what is not kept; here a value not kept
 * adds +0.0, which changes no sum that matters (a sum that is exactly
 * zero has the same sign either way), and the count is an integer.
 */
static void avx2_ties_elect(const float *tp, size_t n, unsigned nx, const uint32_t *thr, int maj,
                            double *mtl, signed char *sign)
{
	const __m256i mask = _mm256_set1_epi32(0x7fffffff), bias = _mm256_set1_epi32((int)0x80000000u);
	const __m256d zero = _mm256_setzero_pd();
	const __m256 zf = _mm256_setzero_ps();
	__m256i tb[16];
	size_t j = 0;

	if (nx > 16) { /* the kept masks are cached per task below: few tasks only */
		kern_scalar.ties_elect(tp, n, nx, thr, maj, mtl, sign);
		return;
	}
	for (unsigned i = 0; i < nx; i++) /* thresholds, biased for an unsigned compare */
		tb[i] = _mm256_xor_si256(_mm256_set1_epi32((int)thr[i]), bias);
	for (; j + 8 <= n; j += 8) {
		__m256 keep[16];
		__m256d sl = zero, sh = zero;
		__m256 nan = zf;
		for (unsigned i = 0; i < nx; i++) {
			__m256 v = _mm256_loadu_ps(tp + (size_t)i * n + j);
			__m256i a = _mm256_and_si256(_mm256_castps_si256(v), mask);
			/* kept: v != 0 and a >= thr */
			__m256i below = _mm256_cmpgt_epi32(tb[i], _mm256_xor_si256(a, bias));
			keep[i] = _mm256_andnot_ps(_mm256_castsi256_ps(below), _mm256_cmp_ps(v, zf, _CMP_NEQ_UQ));
			__m256 vk = _mm256_and_ps(v, keep[i]);
			sl = _mm256_add_pd(sl, _mm256_cvtps_pd(_mm256_castps256_ps128(vk))); /* s += v */
			sh = _mm256_add_pd(sh, _mm256_cvtps_pd(_mm256_extractf128_ps(vk, 1)));
			nan = _mm256_or_ps(nan, _mm256_and_ps(keep[i], _mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
		}
		/* sign(s) as floats: +1, -1 or 0 (a NaN s compares neither way) */
		__m256 sf = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(sl)), _mm256_cvtpd_ps(sh), 1);
		__m256 gt = _mm256_cmp_ps(sf, zf, _CMP_GT_OQ), lt = _mm256_cmp_ps(sf, zf, _CMP_LT_OQ);
		/* lanes whose elected sign is +: s > 0, or s == 0 with a + majority */
		__m256 eplus = maj > 0 ? _mm256_xor_ps(lt, _mm256_castsi256_ps(_mm256_set1_epi32(-1))) : gt;
		__m256d suml = zero, sumh = zero;
		__m256i cnt = _mm256_setzero_si256();
		for (unsigned i = 0; i < nx; i++) {
			__m256 v = _mm256_loadu_ps(tp + (size_t)i * n + j);
			__m256 vpos = _mm256_cmp_ps(v, zf, _CMP_GT_OQ);
			/* agree: kept and (v > 0) == (e > 0) */
			__m256 agree = _mm256_andnot_ps(_mm256_xor_ps(vpos, eplus), keep[i]);
			__m256 va = _mm256_and_ps(v, agree);
			suml = _mm256_add_pd(suml, _mm256_cvtps_pd(_mm256_castps256_ps128(va))); /* sum += v */
			sumh = _mm256_add_pd(sumh, _mm256_cvtps_pd(_mm256_extractf128_ps(va, 1)));
			cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(agree)); /* cnt += 1 */
		}
		__m256d cl = _mm256_cvtepi32_pd(_mm256_castsi256_si128(cnt));
		__m256d ch = _mm256_cvtepi32_pd(_mm256_extracti128_si256(cnt, 1));
		__m256d ml = _mm256_blendv_pd(zero, _mm256_div_pd(suml, cl), _mm256_cmp_pd(cl, zero, _CMP_GT_OQ));
		__m256d mh = _mm256_blendv_pd(zero, _mm256_div_pd(sumh, ch), _mm256_cmp_pd(ch, zero, _CMP_GT_OQ));
		/* a kept NaN makes the element NaN, with sign +1 */
		__m256i nani = _mm256_castps_si256(nan);
		ml = _mm256_blendv_pd(ml, _mm256_set1_pd(NAN),
		                      _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(nani))));
		mh = _mm256_blendv_pd(mh, _mm256_set1_pd(NAN),
		                      _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_extracti128_si256(nani, 1))));
		_mm256_storeu_pd(mtl + j, ml);
		_mm256_storeu_pd(mtl + j + 4, mh);
		/* sign = (s > 0) - (s < 0), or 1 for NaN: masks are -1 or 0 */
		__m256i sg = _mm256_sub_epi32(_mm256_castps_si256(lt), _mm256_castps_si256(gt));
		sg = _mm256_blendv_epi8(sg, _mm256_set1_epi32(1), nani);
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

/*
 * DARE's drop, four elements a step: the hash in 64-bit lanes, the keep
 * test as a signed compare (both sides are below 2^53), the quotient in
 * float64 rounded once to float32, a dropped value masked to +0.0.
 */
static void avx2_dare_drop(float *tp, size_t n, uint64_t key, uint64_t idx0, uint64_t limit,
                           double density)
{
	const __m256i k = _mm256_set1_epi64x((long long)key), lim = _mm256_set1_epi64x((long long)limit);
	const __m256i step = _mm256_set1_epi64x((long long)KERN_DARE_STEP), four = _mm256_set1_epi64x(4);
	const __m256d dd = _mm256_set1_pd(density);
	__m256i idx = _mm256_add_epi64(_mm256_set1_epi64x((long long)idx0), _mm256_setr_epi64x(0, 1, 2, 3));
	size_t j = 0;

	for (; j + 4 <= n; j += 4) {
		__m256i x = _mm256_srli_epi64(mix64x4(_mm256_xor_si256(k, mullo64(idx, step))), 11);
		__m256d keep = _mm256_castsi256_pd(_mm256_cmpgt_epi64(lim, x));
		__m256d q = _mm256_div_pd(_mm256_cvtps_pd(_mm_loadu_ps(tp + j)), dd);
		_mm_storeu_ps(tp + j, _mm256_cvtpd_ps(_mm256_and_pd(q, keep)));
		idx = _mm256_add_epi64(idx, four);
	}
	if (j < n)
		kern_scalar.dare_drop(tp + j, n - j, key, idx0 + j, limit, density);
}

const struct kern kern_avx2 = {
	.name = "avx2",
	.decode = avx2_decode,
	.encode = avx2_encode,
	.accum = avx2_accum,
	.finish = avx2_finish,
	.merge_lin = avx2_merge_lin,
	.norm_lin = avx2_norm_lin,
	.ties_elect = avx2_ties_elect,
	.dare_drop = avx2_dare_drop,
};
