/*
 * kern_scalar.c -- the reference kernels: plain C, one element at a time,
 * in exactly the order kernels.h prescribes. Every other instruction set
 * is tested against these bits.
 *
 * Inputs may sit at any address (tensor data in a safetensors file need
 * not be aligned), so every load goes through memcpy.
 */
#include "config.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "kern_ties.h"
#include "kernels.h"

static inline uint32_t f2u(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}
static inline float u2f(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}
static inline uint16_t ld16(const unsigned char *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

float kern_bf16_to_f32(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	if ((u & 0x7fffffffu) > 0x7f800000u)
		u |= 0x00400000u; /* quiet a signalling NaN, as the hardware does */
	return u2f(u);
}

float kern_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;

	if (exp == 0x1f) /* inf or NaN: payload moves up, NaN gets its quiet bit */
		return u2f(sign | 0x7f800000u | (man << 13) | (man ? 0x00400000u : 0));
	if (exp == 0) {
		if (man == 0)
			return u2f(sign);
		/* subnormal: normalise; value = man * 2^-24 */
		int e = -1;
		do {
			man <<= 1;
			e++;
		} while (!(man & 0x400u));
		return u2f(sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ffu) << 13);
	}
	return u2f(sign | (exp + 112) << 23 | man << 13);
}

uint16_t kern_f32_to_bf16(float f)
{
	uint32_t u = f2u(f);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x0040u);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

uint16_t kern_f32_to_f16(float f)
{
	uint32_t u = f2u(f);
	uint32_t sign = (u >> 16) & 0x8000u;
	uint32_t x = u & 0x7fffffffu;

	if (x > 0x7f800000u) /* NaN */
		return (uint16_t)(sign | 0x7e00u | ((x >> 13) & 0x3ffu));
	if (x >= 0x477ff000u) /* rounds to at least 65536: infinity */
		return (uint16_t)(sign | 0x7c00u);
	if (x >= 0x38800000u) /* normal: rebias, round to nearest even */
		return (uint16_t)(sign | ((x - 0x38000000u + 0xfffu + ((x >> 13) & 1u)) >> 13));
	if (x < 0x33000000u) /* below half the smallest subnormal: zero */
		return (uint16_t)sign;
	{
		/* subnormal: value * 2^24 = man * 2^(e - 126), shift >= 14 */
		uint32_t e = x >> 23, man = (x & 0x7fffffu) | 0x800000u;
		uint32_t shift = 126 - e;
		uint32_t r = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
		if (rem > half || (rem == half && (r & 1u)))
			r++;
		return (uint16_t)(sign | r);
	}
}

static void sc_decode(enum dtype dt, const void *src, float *dst, size_t n)
{
	const unsigned char *p = src;
	switch (dt) {
	case DT_BF16:
		for (size_t j = 0; j < n; j++)
			dst[j] = kern_bf16_to_f32(ld16(p + 2 * j));
		break;
	case DT_F16:
		for (size_t j = 0; j < n; j++)
			dst[j] = kern_f16_to_f32(ld16(p + 2 * j));
		break;
	case DT_F32:
		memcpy(dst, p, 4 * n);
		break;
	case DT_F64:
		for (size_t j = 0; j < n; j++) {
			double d;
			memcpy(&d, p + 8 * j, 8);
			dst[j] = (float)d;
		}
		break;
	default:
		break;
	}
}

static void sc_encode(enum dtype dt, const float *src, void *dst, size_t n)
{
	unsigned char *p = dst;
	switch (dt) {
	case DT_BF16:
		for (size_t j = 0; j < n; j++) {
			uint16_t h = kern_f32_to_bf16(src[j]);
			memcpy(p + 2 * j, &h, 2);
		}
		break;
	case DT_F16:
		for (size_t j = 0; j < n; j++) {
			uint16_t h = kern_f32_to_f16(src[j]);
			memcpy(p + 2 * j, &h, 2);
		}
		break;
	case DT_F32:
		memcpy(p, src, 4 * n);
		break;
	case DT_F64:
		for (size_t j = 0; j < n; j++) {
			double d = src[j];
			memcpy(p + 8 * j, &d, 8);
		}
		break;
	default:
		break;
	}
}

/* Decode one element (used by the fused kernels below). */
static inline float dec1(enum dtype dt, const unsigned char *p, size_t j)
{
	switch (dt) {
	case DT_BF16: return kern_bf16_to_f32(ld16(p + 2 * j));
	case DT_F16: return kern_f16_to_f32(ld16(p + 2 * j));
	case DT_F32: {
		float f;
		memcpy(&f, p + 4 * j, 4);
		return f;
	}
	case DT_F64: {
		double d;
		memcpy(&d, p + 8 * j, 8);
		return (float)d;
	}
	default: return 0.0f;
	}
}

static void sc_accum(enum dtype dt, const void *x, const float *b, double c, double *acc,
                     size_t n, int first)
{
	const unsigned char *p = x;
	if (first) {
		for (size_t j = 0; j < n; j++) {
			float tau = dec1(dt, p, j) - b[j];
			acc[j] = c * (double)tau;
		}
	} else {
		for (size_t j = 0; j < n; j++) {
			float tau = dec1(dt, p, j) - b[j];
			acc[j] = fma(c, (double)tau, acc[j]);
		}
	}
}

static void sc_finish(enum dtype odt, void *out, const float *b, const double *m, double lambda,
                      size_t n)
{
	float tmp[KERN_TILE];
	unsigned char *o = out;
	if (odt == DT_F64) {
		for (size_t j = 0; j < n; j++) {
			double r = fma(lambda, m[j], (double)b[j]);
			uint64_t u;
			memcpy(&u, &r, 8);
			if (r != r)
				u = 0x7ff8000000000000ull;
			memcpy(o + 8 * j, &u, 8);
		}
		return;
	}
	for (size_t j0 = 0; j0 < n; j0 += KERN_TILE) {
		size_t nn = n - j0 < KERN_TILE ? n - j0 : KERN_TILE;
		for (size_t j = 0; j < nn; j++) {
			float f = (float)fma(lambda, m[j0 + j], (double)b[j0 + j]);
			tmp[j] = f != f ? u2f(0x7fc00000u) : f;
		}
		sc_encode(odt, tmp, o + j0 * dtype_size(odt), nn);
	}
}

static void sc_merge_lin(enum dtype dt, const void *const *x, unsigned nx, const void *base,
                         const double *c, double lambda, enum dtype odt, void *out, size_t n)
{
	unsigned char *o = out;
	for (size_t j = 0; j < n; j++) {
		float b = dec1(dt, base, j);
		double acc = 0.0;
		for (unsigned i = 0; i < nx; i++) {
			float tau = dec1(dt, x[i], j) - b;
			acc = i == 0 ? c[0] * (double)tau : fma(c[i], (double)tau, acc);
		}
		double r = fma(lambda, acc, (double)b);
		if (odt == DT_F64) {
			uint64_t u;
			memcpy(&u, &r, 8);
			if (r != r)
				u = 0x7ff8000000000000ull;
			memcpy(o + 8 * j, &u, 8);
			continue;
		}
		float f = (float)r;
		if (f != f)
			f = u2f(0x7fc00000u);
		sc_encode(odt, &f, o + j * dtype_size(odt), 1);
	}
}

static void sc_norm_lin(enum dtype dt, const void *const *x, unsigned nx, const float *b,
                        const double *c, size_t n, struct kern_norms *acc)
{
	for (size_t j = 0; j < n; j++) {
		double s = 0.0, t = 0.0;
		for (unsigned i = 0; i < nx; i++) {
			float tau = dec1(dt, x[i], j) - b[j];
			s += (double)tau;
			t += c[i] * (double)tau;
		}
		unsigned l = (unsigned)(j % KERN_LANES);
		if (!isfinite(s) || !isfinite(t))
			continue; /* NaN or infinite weights stay out of the norms */
		acc->s1[l] += fabs(s);
		acc->t1[l] += fabs(t);
		acc->s2[l] += s * s;
		acc->t2[l] += t * t;
	}
}

/* One element; the definition (kern_ties.h repeats it for one element). */
static int elect1(const float *tp, size_t stride, unsigned nx, const uint32_t *thr, int maj,
                  double *mtl)
{
	double pos = 0.0, neg = 0.0, s;
	unsigned np = 0, nn = 0;
	int sign, e;

	for (unsigned i = 0; i < nx; i++) {
		float v = tp[(size_t)i * stride];
		if (v != 0.0f && (f2u(v) & 0x7fffffffu) >= thr[i]) {
			if (v != v) { /* a kept NaN: the element is NaN */
				*mtl = NAN;
				return 1;
			}
			if (v > 0.0f)
				pos += (double)v, np++;
			else
				neg += (double)v, nn++;
		}
	}
	s = pos + neg;
	sign = s > 0.0 ? 1 : s < 0.0 ? -1 : 0;
	e = sign ? sign : maj;
	/* the kept values of the elected sign: their sum is pos or neg */
	if (e > 0)
		*mtl = np ? pos / (double)np : 0.0;
	else
		*mtl = nn ? neg / (double)nn : 0.0;
	return sign;
}

static void sc_ties_elect(const float *tp, size_t n, unsigned nx, const uint32_t *thr, int maj,
                          double *mtl, signed char *sign)
{
	for (size_t j = 0; j < n; j++)
		sign[j] = (signed char)elect1(tp + j, n, nx, thr, maj, &mtl[j]);
}

static void sc_dare_drop(float *tp, size_t n, uint64_t key, uint64_t idx0, uint64_t limit,
                         double density)
{
	for (size_t j = 0; j < n; j++) {
		uint64_t x = kern_mix64(key ^ ((idx0 + j) * KERN_DARE_STEP)) >> 11;
		tp[j] = x < limit ? (float)((double)tp[j] / density) : 0.0f;
	}
}

static void sc_dare_sum(const float *tp, size_t n, unsigned nx, const uint64_t *key, uint64_t idx0,
                        const uint64_t *limit, const double *div, double *mtl)
{
	for (size_t j = 0; j < n; j++)
		mtl[j] = 0.0;
	for (unsigned i = 0; i < nx; i++)
		for (size_t j = 0; j < n; j++)
			mtl[j] += (double)kern_dare_q(tp[(size_t)i * n + j], key[i], idx0 + j, limit[i],
			                              div[i]);
}

static void sc_dare_keep(const float *tp, float *out, size_t n, uint64_t key, uint64_t idx0,
                         uint64_t limit)
{
	for (size_t j = 0; j < n; j++)
		out[j] = kern_dare_kept(key, idx0 + j, limit) ? tp[j] : 0.0f;
}

static void sc_taus(enum dtype dt, const void *const *x, unsigned nx, const void *base,
                    const double *w, size_t n, float *bt, float *tp)
{
	sc_decode(dt, base, bt, n);
	for (unsigned i = 0; i < nx; i++) {
		float *t = tp + (size_t)i * n;
		sc_decode(dt, x[i], t, n);
		for (size_t j = 0; j < n; j++)
			t[j] = w[i] == 1.0 ? t[j] - bt[j] : (float)(w[i] * (double)(t[j] - bt[j]));
	}
}

static void sc_ties_bins(const float *tp, unsigned nx, size_t n, const uint32_t *bin,
                         uint32_t *const *hist, unsigned char *open)
{
	memset(open, 0, n);
	for (unsigned i = 0; i < nx; i++) {
		if (bin[i] == UINT32_MAX)
			continue;
		for (size_t j = 0; j < n; j++) {
			uint32_t a = f2u(tp[(size_t)i * n + j]) & 0x7fffffffu;
			if (a >> 16 == bin[i]) {
				hist[i][a & 0xffffu]++;
				open[j] |= (a & 0xffffu) != 0;
			}
		}
	}
}

static int64_t sc_ties_decided(const double *mtl, const signed char *sign, unsigned char *open, size_t n,
                               double *dl, double *dq)
{
	int64_t votes = 0;
	size_t j = 0;
	for (; j + KERN_LANES <= n; j += KERN_LANES)
		for (unsigned l = 0; l < KERN_LANES; l++) {
			double m = mtl[j + l];
			int s = sign[j + l], o = open[j + l];
			/* decided with a sign: add |m|, else +0.0 (no change) */
			double a = !o && s && fabs(m) <= DBL_MAX ? fabs(m) : 0.0;
			dl[l] += a;
			dq[l] += a * a;
			votes += o ? 0 : s;
			open[j + l] = (unsigned char)(o | (!o && !s && m != 0.0) << 1);
		}
	for (; j < n; j++) {
		double m = mtl[j];
		int s = sign[j], o = open[j];
		if (!o && s && isfinite(m))
			dl[j % KERN_LANES] += fabs(m), dq[j % KERN_LANES] += m * m;
		votes += o ? 0 : s;
		open[j] = (unsigned char)(o | (!o && !s && m != 0.0) << 1);
	}
	return votes;
}

/* TIES's select pass, element by element: the counts of the high bits
 * of |tau'|, and norm_lin's s (every c = 1) of the raw task vectors
 * unless s1 is NULL. */
static void sc_ties_select(enum dtype dt, const void *const *x, unsigned nx, const void *base,
                           const double *w, size_t n, uint32_t *const *hist, double *s1,
                           double *s2, float *tp, size_t ld)
{
	for (size_t j = 0; j < n; j++) {
		float b = dec1(dt, base, j);
		double s = 0.0;
		for (unsigned i = 0; i < nx; i++) {
			float tau = dec1(dt, x[i], j) - b;
			float t = w[i] == 1.0 ? tau : (float)(w[i] * (double)tau);
			s += (double)tau;
			hist[i][ties_key(f2u(t) & 0x7fffffffu)]++;
			if (tp)
				tp[(size_t)i * ld + j] = t;
		}
		if (s1 && isfinite(s))
			s1[j % KERN_LANES] += fabs(s), s2[j % KERN_LANES] += s * s;
	}
}

const struct kern kern_scalar = {
	.name = "scalar",
	.decode = sc_decode,
	.encode = sc_encode,
	.accum = sc_accum,
	.finish = sc_finish,
	.merge_lin = sc_merge_lin,
	.norm_lin = sc_norm_lin,
	.taus = sc_taus,
	.ties_elect = sc_ties_elect,
	.ties_decided = sc_ties_decided,
	.ties_bins = sc_ties_bins,
	.ties_select = sc_ties_select,
	.dare_drop = sc_dare_drop,
	.dare_sum = sc_dare_sum,
	.dare_keep = sc_dare_keep,
};
