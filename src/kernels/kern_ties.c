/*
 * kern_ties.c -- element operations of TIES and DARE: the entry points the
 * passes call. Each takes the instruction set's kernel when its table has
 * one (kernels.h; the scalar kernels are the definition, the others are
 * tested bit-identical to them) and otherwise the portable loop here,
 * which gives the same bits on any machine.
 */
#include "config.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "kern_ties.h"

void ties_taus(const struct kern *k, enum dtype dt, const void *const *x, unsigned nx,
               const void *base, const double *w, size_t n, float *bt, float *tp)
{
	if (k->taus) {
		k->taus(dt, x, nx, base, w, n, bt, tp);
		return;
	}
	/* decoding is the instruction set's (exact everywhere); the rest is
	 * one rounding per element, the same on any machine */
	k->decode(dt, base, bt, n);
	for (unsigned i = 0; i < nx; i++) {
		float *t = tp + (size_t)i * n;
		k->decode(dt, x[i], t, n);
		if (w[i] == 1.0)
			for (size_t j = 0; j < n; j++)
				t[j] = t[j] - bt[j];
		else
			for (size_t j = 0; j < n; j++)
				t[j] = (float)(w[i] * (double)(t[j] - bt[j]));
	}
}

void ties_hist(const float *tp, unsigned nx, size_t n, uint32_t *const *hist)
{
	for (unsigned i = 0; i < nx; i++)
		for (size_t j = 0; j < n; j++)
			hist[i][ties_key(ties_mag(tp[(size_t)i * n + j]))]++;
}

void ties_bins(const struct kern *k, const float *tp, unsigned nx, size_t n, const uint32_t *bin,
               uint32_t *const *hist, unsigned char *open)
{
	(k->ties_bins ? k->ties_bins : kern_scalar.ties_bins)(tp, nx, n, bin, hist, open);
}

/* The tile path of TIES's select pass (a set without ties_select) and
 * DARE's stats pass use this: portable C, compiled for the vectorizer
 * with the wider registers (LINES_HOT). */
LINES_HOT void ties_norm_sum(int wide, const float *tp, unsigned nx, size_t n, double *s1,
                             double *s2)
{
	size_t j = 0;
#if defined(__GNUC__)
	/* the loop below in GNU C's vectors (kernels.h) of eight lanes, the
	 * same operations in each lane, where they are one register
	 * (kv_width.h); else the loop below, which the compiler vectorizes */
	const kv8u exp_mask = (kv8u){0} + 0x7ff0000000000000ull,
	           abs_mask = (kv8u){0} + 0x7fffffffffffffffull;
	const kv8d zero = {0};
	kv8d v1, v2;
	memcpy(&v1, s1, sizeof(v1)), memcpy(&v2, s2, sizeof(v2));
	for (; wide && j + KERN_LANES <= n; j += KERN_LANES) {
		kv8d s = zero, a;
		for (unsigned i = 0; i < nx; i++) {
			kv8f x;
			kv8d xd;
			memcpy(&x, tp + (size_t)i * n + j, sizeof(x));
			KV_WIDEN(xd, x);
			s += xd;
		}
		kv8u e = (kv8u)s & exp_mask;
		kv8i fin;
		KV_CMP(fin, e, !=, exp_mask);
		a = KV8_PICK(fin, (kv8d)((kv8u)s & abs_mask), zero);
		v1 += a;
		v2 += a * a;
	}
	if (wide)
		memcpy(s1, &v1, sizeof(v1)), memcpy(s2, &v2, sizeof(v2));
#else
	(void)wide;
#endif
	for (; j + KERN_LANES <= n; j += KERN_LANES) {
		double s[KERN_LANES] = {0};
		for (unsigned i = 0; i < nx; i++)
			for (unsigned l = 0; l < KERN_LANES; l++)
				s[l] += (double)tp[(size_t)i * n + j + l];
		for (unsigned l = 0; l < KERN_LANES; l++) {
			/* a sum that is not finite adds +0.0, which changes nothing */
			double a = fabs(s[l]) <= DBL_MAX ? fabs(s[l]) : 0.0;
			s1[l] += a;
			s2[l] += a * a;
		}
	}
	for (; j < n; j++) {
		double s = 0.0;
		for (unsigned i = 0; i < nx; i++)
			s += (double)tp[(size_t)i * n + j];
		if (isfinite(s))
			s1[j % KERN_LANES] += fabs(s), s2[j % KERN_LANES] += s * s;
	}
}


int64_t ties_decided(const struct kern *k, const double *mtl, const signed char *sign,
                     unsigned char *open, size_t n, double *dl, double *dq)
{
	return (k->ties_decided ? k->ties_decided : kern_scalar.ties_decided)(mtl, sign, open, n, dl,
	                                                                      dq);
}

/* One element with the divisor sum(c_i) over the kept values of the
 * elected sign (1 where 0): the scalar kernel's rule, but c for counts. */
static int elect_div1(const float *tp, size_t stride, unsigned nx, const uint32_t *thr, int maj,
                      const double *c, double *mtl)
{
	double pos = 0.0, neg = 0.0, cp = 0.0, cn = 0.0, s, dv;
	int sign, e;

	for (unsigned i = 0; i < nx; i++) {
		float v = tp[(size_t)i * stride];
		if (v != 0.0f && ties_mag(v) >= thr[i]) {
			if (v != v) { /* a kept NaN: the element is NaN */
				*mtl = NAN;
				return 1;
			}
			if (v > 0.0f)
				pos += (double)v, cp += c[i];
			else
				neg += (double)v, cn += c[i];
		}
	}
	s = pos + neg;
	sign = s > 0.0 ? 1 : s < 0.0 ? -1 : 0;
	e = sign ? sign : maj;
	dv = e > 0 ? cp : cn;
	*mtl = (e > 0 ? pos : neg) / (dv != 0.0 ? dv : 1.0);
	return sign;
}

int ties_elect(const float *tp, size_t stride, unsigned nx, const uint32_t *thr, int maj,
               const double *c, double *mtl)
{
	/* one element through the scalar tile kernel (stride: its task step) */
	float t[LINES_MAX_MODELS];
	signed char sign;
	if (c)
		return elect_div1(tp, stride, nx, thr, maj, c, mtl);
	for (unsigned i = 0; i < nx && i < LINES_MAX_MODELS; i++)
		t[i] = tp[(size_t)i * stride];
	kern_scalar.ties_elect(t, 1, nx, thr, maj, mtl, &sign);
	return sign;
}

void ties_elect_tile(const struct kern *k, const float *tp, size_t n, unsigned nx,
                     const uint32_t *thr, int maj, const double *c, double *mtl,
                     signed char *sign)
{
	if (c) {
		for (size_t j = 0; j < n; j++)
			sign[j] = (signed char)elect_div1(tp + j, n, nx, thr, maj, c, &mtl[j]);
		return;
	}
	(k->ties_elect ? k->ties_elect : kern_scalar.ties_elect)(tp, n, nx, thr, maj, mtl, sign);
}

/* v where bit is 1, else +0.0: a bit mask, without branches (a multiply
 * by 0 would make 0 * inf a NaN). */
static inline double bc_mask(double v, uint64_t bit)
{
	uint64_t u;
	memcpy(&u, &v, 8);
	u &= (uint64_t)0 - bit;
	memcpy(&v, &u, 8);
	return v;
}

/* The kept value of tau: w times it, or 0. */
static inline double bc_kept(float x, uint32_t lo, uint32_t hi, double w)
{
	uint32_t u;
	memcpy(&u, &x, 4);
	u &= 0x7fffffffu;
	return bc_mask(w * (double)x, (uint64_t)((u >= lo) & (u <= hi)));
}

#define BC_STRIP (BC_SCRATCH / 4) /* elements at a time: the sums stay in L1 */

/* bc_merge_tile() on elements [j0, j1) of the tile. */
static void bc_merge_strip(const float *tp, unsigned nx, size_t n, size_t j0, size_t j1,
                           const uint32_t *lo, const uint32_t *hi, const double *w, int ties,
                           int normalize, double wdiv, double *m, double *sc)
{
	/* ties: P, N the sums of the positive and of the negative kept v_i,
	 * cp, cn the sums of their weights; m the sum of all (NaN: a kept NaN) */
	double *pos = sc, *neg = sc + BC_STRIP, *cp = sc + 2 * BC_STRIP, *cn = sc + 3 * BC_STRIP;
	size_t k = j1 - j0;
	m += j0;
	for (size_t j = 0; j < k; j++)
		m[j] = 0.0;
	if (!ties) {
		for (unsigned i = 0; i < nx; i++) { /* tasks in order */
			const float *t = tp + (size_t)i * n + j0;
			const uint32_t l = lo[i], h = hi[i];
			const double c = w[i];
			for (size_t j = 0; j < k; j++)
				m[j] += bc_kept(t[j], l, h, c);
		}
		double r = 1.0;
		if (normalize && pow2_inverse(wdiv, &r)) /* the same quotients */
			for (size_t j = 0; j < k; j++)
				m[j] *= r;
		else
			for (size_t j = 0; normalize && j < k; j++)
				m[j] = m[j] / wdiv;
		return;
	}
	for (size_t j = 0; j < k; j++)
		pos[j] = neg[j] = cp[j] = cn[j] = 0.0;
	for (unsigned i = 0; i < nx; i++) {
		const float *t = tp + (size_t)i * n + j0;
		const uint32_t l = lo[i], h = hi[i];
		const double c = w[i], ac = fabs(c);
		if (!(ac >= 0x1p-900 && ac <= 0x1p900)) { /* 0, tiny, huge or NaN: compare v */
			for (size_t j = 0; j < k; j++) {
				double v = bc_kept(t[j], l, h, c);
				m[j] += v;
				pos[j] += v > 0.0 ? v : 0.0;
				cp[j] += v > 0.0 ? c : 0.0;
				neg[j] += v < 0.0 ? v : 0.0;
				cn[j] += v < 0.0 ? c : 0.0;
			}
			continue;
		}
		/* v = c x is then nonzero with the sign of c x exactly when x is
		 * nonzero (no underflow, no overflow): its sign from x's bits, in
		 * integers, so that the compiler vectorizes the loop */
		const uint32_t flip = c < 0.0 ? 0x80000000u : 0;
		for (size_t j = 0; j < k; j++) {
			uint32_t u;
			memcpy(&u, &t[j], 4);
			uint32_t a = u & 0x7fffffffu, sg = (u ^ flip) >> 31;
			uint32_t in = (a >= l) & (a <= h) & (a != 0);
			double v = bc_mask(c * (double)t[j], (uint64_t)((a >= l) & (a <= h)));
			uint64_t kp = (uint64_t)(in & (sg ^ 1u)), kn = (uint64_t)(in & sg);
			m[j] += v;
			pos[j] += bc_mask(v, kp);
			cp[j] += bc_mask(c, kp);
			neg[j] += bc_mask(v, kn);
			cn[j] += bc_mask(c, kn);
		}
	}
	for (size_t j = 0; j < k; j++) {
		double s = pos[j] + neg[j];
		double num = s >= 0.0 ? pos[j] : neg[j], d = s >= 0.0 ? cp[j] : cn[j];
		d = normalize && d != 0.0 ? d : 1.0;
		m[j] = m[j] != m[j] || s != s ? m[j] + s : num / d;
	}
}

#if defined(__GNUC__)
/* bc_ties_vec_t_8() and bc_ties_vec_t_4(): kern_ties_bc.h */
#define KV_BODY "kern_ties_bc.h"
#include "kv_both.h"

static inline void bc_ties_vec(int wide, const float *tp, unsigned nx, size_t n, size_t n8,
                               const uint32_t *lo, const uint32_t *hi, const double *w,
                               int normalize, double *m)
{
	int unit = kern_unit_weights(w, nx);
	if (unit) /* a constant 1 or 0: the loops without the weights, or with */
		KV_CALL(wide, bc_ties_vec_t, tp, nx, n, n8, lo, hi, w, normalize, m, 1);
	else
		KV_CALL(wide, bc_ties_vec_t, tp, nx, n, n8, lo, hi, w, normalize, m, 0);
}
#endif

/* bc_merge_tile()'s condition for a vector loop (a kernel's, or
 * bc_ties_vec()): with ties, every weight's magnitude in [2^-900, 2^900]. */
static int bc_vec_weights(const double *w, unsigned nx)
{
	int vec = 1;
	for (unsigned i = 0; i < nx; i++) {
		double ac = fabs(w[i]);
		vec &= ac >= 0x1p-900 && ac <= 0x1p900;
	}
	return vec;
}

LINES_HOT void bc_merge_tile(const struct kern *k, const float *tp, unsigned nx, size_t n,
                             const uint32_t *lo, const uint32_t *hi, const double *w, int ties,
                             int normalize, double wdiv, double *m, double *sc)
{
	size_t n8 = 0;
#if defined(__GNUC__)
	/* with ties (without, the strip's loops are as fast), when the
	 * strip would take its fast loop for every task */
	int vec = ties && bc_vec_weights(w, nx);
	if (k && k->bc_merge && (vec || !ties)) {
		n8 = n - n % KERN_LANES;
		k->bc_merge(tp, nx, n, n8, lo, hi, w, ties, normalize, wdiv, m);
	} else if (vec) {
		n8 = n - n % KERN_LANES;
		bc_ties_vec(k && k->wide, tp, nx, n, n8, lo, hi, w, normalize, m);
	}
#endif
	for (size_t j0 = n8; j0 < n; j0 += BC_STRIP)
		bc_merge_strip(tp, nx, n, j0, n - j0 < BC_STRIP ? n : j0 + BC_STRIP, lo, hi, w, ties,
		               normalize, wdiv, m, sc);
}

LINES_HOT void bc_taus_merge_tile(const struct kern *k, enum dtype dt, const void *const *x,
                                  unsigned nx, const void *base, const double *ones, size_t n,
                                  const uint32_t *lo, const uint32_t *hi, const double *w,
                                  int ties, int normalize, double wdiv, float *bt, float *tp,
                                  double *m, double *s, double *sc)
{
	size_t done = 0, es = dtype_size(dt);
	const void *xs[LINES_MAX_MODELS];
	if (k->bc_taus_merge && (!ties || bc_vec_weights(w, nx)))
		done = k->bc_taus_merge(dt, x, nx, base, n, lo, hi, w, ties, normalize, wdiv, bt, m, s);
	if (done == n)
		return;
	for (unsigned i = 0; i < nx; i++)
		xs[i] = (const unsigned char *)x[i] + done * es;
	ties_taus(k, dt, xs, nx, (const unsigned char *)base + done * es, ones, n - done, bt + done,
	          tp);
	bc_merge_tile(k, tp, nx, n - done, lo, hi, w, ties, normalize, wdiv, m + done, sc);
	if (s)
		bc_raw_sum(tp, nx, n - done, s + done);
}

LINES_HOT void bc_raw_sum(const float *tp, unsigned nx, size_t n, double *s)
{
	for (size_t j = 0; j < n; j++)
		s[j] = 0.0;
	for (unsigned i = 0; i < nx; i++)
		for (size_t j = 0; j < n; j++)
			s[j] += (double)tp[(size_t)i * n + j];
}

uint64_t dare_key(uint64_t seed, unsigned task, uint64_t name_hash)
{
	return kern_mix64(seed ^ kern_mix64(((uint64_t)task + 1) * 0x100000001b3ull ^
	                                    kern_mix64(name_hash)));
}

uint64_t dare_limit(double density)
{
	/* u = x 2^-53 < density  <=>  x < density 2^53 (exact)  <=>  x < ceil() */
	return density >= 1.0 ? (uint64_t)1 << 53 : (uint64_t)ceil(density * 0x1p53);
}

void dare_drop_tile(const struct kern *k, float *tp, size_t n, uint64_t key, uint64_t idx0,
                    uint64_t limit, double density)
{
	(k->dare_drop ? k->dare_drop : kern_scalar.dare_drop)(tp, n, key, idx0, limit, density);
}

void dare_sum_tile(const struct kern *k, const float *tp, size_t n, unsigned nx,
                   const uint64_t *key, uint64_t idx0, const uint64_t *limit, const double *div,
                   double *mtl)
{
	(k->dare_sum ? k->dare_sum : kern_scalar.dare_sum)(tp, n, nx, key, idx0, limit, div, mtl);
}

void dare_keep_tile(const struct kern *k, const float *tp, float *out, size_t n, uint64_t key,
                    uint64_t idx0, uint64_t limit)
{
	(k->dare_keep ? k->dare_keep : kern_scalar.dare_keep)(tp, out, n, key, idx0, limit);
}

/* The exponent is all ones. Counted in lanes as wide as the values, a
 * block at a time (a 16-bit count cannot overflow in 32768 values), so
 * the vectorizer compares and subtracts 16 or 32 values per instruction
 * (this file is built with -ftree-vectorize), and LINES_HOT gives it
 * AVX-512's and AVX2's registers: it looks at every input of a writing
 * pass. */
#define NF_BLOCK 32768u
LINES_HOT uint64_t kern_count_nonfinite(enum dtype dt, const void *p, size_t n)
{
	const unsigned char *b = p;
	uint64_t c = 0;
	if (dt == DT_BF16 || dt == DT_F16) {
		const uint16_t mask = dt == DT_BF16 ? 0x7f80 : 0x7c00;
		for (size_t i0 = 0; i0 < n; i0 += NF_BLOCK) {
			size_t e = n - i0 < NF_BLOCK ? n : i0 + NF_BLOCK;
			uint16_t cc = 0;
			for (size_t i = i0; i < e; i++) {
				uint16_t v;
				memcpy(&v, b + 2 * i, 2);
				cc = (uint16_t)(cc + ((uint16_t)(v & mask) == mask));
			}
			c += cc;
		}
	} else if (dt == DT_F32) {
		for (size_t i0 = 0; i0 < n; i0 += NF_BLOCK) {
			size_t e = n - i0 < NF_BLOCK ? n : i0 + NF_BLOCK;
			uint32_t cc = 0;
			for (size_t i = i0; i < e; i++) {
				uint32_t v;
				memcpy(&v, b + 4 * i, 4);
				cc += (v & 0x7f800000u) == 0x7f800000u;
			}
			c += cc;
		}
	} else if (dt == DT_F64) {
		for (size_t i = 0; i < n; i++) {
			uint64_t v;
			memcpy(&v, b + 8 * i, 8);
			c += (v & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
		}
	}
	return c;
}
