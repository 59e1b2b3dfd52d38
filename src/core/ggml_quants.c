/*
 * ggml_quants.c -- the scalar reference decoders of ggml's block types.
 *
 * Each function follows the arithmetic of ggml's dequantize_row_* in the
 * same order (float32 products and sums, one rounding each), so the values
 * are those llama.cpp computes: a scale times a small integer, minus an
 * offset where the type has one. Bytes are read one at a time, so neither
 * the host's byte order nor alignment matters.
 */
#include "config.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "ggml_quants.h"
#include "kernels.h"

#define QK 32
#define QK_K 256

float ggml_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
	float f;
	if (exp == 0) { /* zero or subnormal: mant * 2^-24, exact in float */
		f = (float)mant * 0x1p-24f;
		return sign ? -f : f;
	}
	if (exp == 31)
		bits = sign | 0x7f800000u | (mant << 13);
	else
		bits = sign | ((exp - 15 + 127) << 23) | (mant << 13);
	memcpy(&f, &bits, sizeof(f));
	return f;
}

static float f16_at(const unsigned char *p) { return ggml_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

static uint32_t le32_at(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Q4_0: d (f16), qs[16]; x = (q - 8) * d, low nibbles first. */
static void dq_q4_0(const unsigned char *b, float *y)
{
	const float d = f16_at(b);
	const unsigned char *qs = b + 2;
	for (int j = 0; j < QK / 2; j++) {
		y[j] = (float)((qs[j] & 0x0f) - 8) * d;
		y[j + QK / 2] = (float)((qs[j] >> 4) - 8) * d;
	}
}

/* Q4_1: d, m (f16), qs[16]; x = q * d + m. */
static void dq_q4_1(const unsigned char *b, float *y)
{
	const float d = f16_at(b), m = f16_at(b + 2);
	const unsigned char *qs = b + 4;
	for (int j = 0; j < QK / 2; j++) {
		y[j] = (float)(qs[j] & 0x0f) * d + m;
		y[j + QK / 2] = (float)(qs[j] >> 4) * d + m;
	}
}

/* Q5_0: d (f16), qh (32 fifth bits, LE), qs[16]; x = (q - 16) * d. */
static void dq_q5_0(const unsigned char *b, float *y)
{
	const float d = f16_at(b);
	const uint32_t qh = le32_at(b + 2);
	const unsigned char *qs = b + 6;
	for (int j = 0; j < QK / 2; j++) {
		int h0 = (int)((qh >> j) & 1) << 4, h1 = (int)((qh >> (j + 16)) & 1) << 4;
		y[j] = (float)(((qs[j] & 0x0f) | h0) - 16) * d;
		y[j + QK / 2] = (float)(((qs[j] >> 4) | h1) - 16) * d;
	}
}

/* Q5_1: d, m (f16), qh, qs[16]; x = q * d + m. */
static void dq_q5_1(const unsigned char *b, float *y)
{
	const float d = f16_at(b), m = f16_at(b + 2);
	const uint32_t qh = le32_at(b + 4);
	const unsigned char *qs = b + 8;
	for (int j = 0; j < QK / 2; j++) {
		int h0 = (int)((qh >> j) & 1) << 4, h1 = (int)((qh >> (j + 16)) & 1) << 4;
		y[j] = (float)((qs[j] & 0x0f) | h0) * d + m;
		y[j + QK / 2] = (float)((qs[j] >> 4) | h1) * d + m;
	}
}

/* Q8_0: d (f16), qs[32] (int8); x = q * d. */
static void dq_q8_0(const unsigned char *b, float *y)
{
	const float d = f16_at(b);
	for (int j = 0; j < QK; j++)
		y[j] = (float)(int8_t)b[2 + j] * d;
}

/* Q2_K: scales[16] (low nibble scale, high nibble min), qs[64], d, dmin
 * (f16); x = d * sc * q - dmin * m, q two bits. */
static void dq_q2_k(const unsigned char *b, float *y)
{
	const unsigned char *scales = b, *q = b + 16;
	const float d = f16_at(b + 80), min = f16_at(b + 82);
	int is = 0;
	for (int n = 0; n < QK_K; n += 128) {
		for (int shift = 0; shift < 8; shift += 2) {
			for (int half = 0; half < 2; half++) {
				unsigned sc = scales[is++];
				const float dl = d * (float)(sc & 0x0f), ml = min * (float)(sc >> 4);
				for (int l = 0; l < 16; l++)
					*y++ = dl * (float)((q[l + 16 * half] >> shift) & 3) - ml;
			}
		}
		q += 32;
	}
}

/* Q3_K: hmask[32], qs[64], scales[12] (16 six-bit scales), d (f16);
 * x = d * (s - 32) * (q - (high bit clear ? 4 : 0)). */
static void dq_q3_k(const unsigned char *b, float *y)
{
	const unsigned char *hm = b, *q = b + 32, *sc = b + 96;
	const float d_all = f16_at(b + 108);
	int8_t scales[16];
	/* scale i: low four bits from byte i % 8 (low nibble for i < 8, high
	 * nibble above), high two bits from byte 8 + i % 4, bits 2 * (i / 4) */
	for (int i = 0; i < 16; i++) {
		int lo = i < 8 ? sc[i] & 0x0f : sc[i - 8] >> 4;
		int hi = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
		scales[i] = (int8_t)(lo | hi << 4);
	}
	int is = 0;
	unsigned char m = 1;
	for (int n = 0; n < QK_K; n += 128) {
		for (int shift = 0; shift < 8; shift += 2) {
			for (int half = 0; half < 2; half++) {
				const float dl = d_all * (float)(scales[is++] - 32);
				for (int l = 0; l < 16; l++) {
					int k = l + 16 * half;
					int v = ((q[k] >> shift) & 3) - ((hm[k] & m) ? 0 : 4);
					*y++ = dl * (float)v;
				}
			}
			m = (unsigned char)(m << 1);
		}
		q += 32;
	}
}

/* The six-bit scale and min of sub-block j of a Q4_K or Q5_K block. */
static void scale_min_k4(int j, const unsigned char *q, unsigned *d, unsigned *m)
{
	if (j < 4) {
		*d = q[j] & 63;
		*m = q[j + 4] & 63;
	} else {
		*d = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
		*m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
	}
}

/* Q4_K: d, dmin (f16), scales[12], qs[128]; x = d * sc * q - dmin * m. */
static void dq_q4_k(const unsigned char *b, float *y)
{
	const float d = f16_at(b), min = f16_at(b + 2);
	const unsigned char *scales = b + 4, *q = b + 16;
	unsigned sc, m;
	for (int j = 0, is = 0; j < QK_K; j += 64, is += 2, q += 32) {
		scale_min_k4(is, scales, &sc, &m);
		const float d1 = d * (float)sc, m1 = min * (float)m;
		scale_min_k4(is + 1, scales, &sc, &m);
		const float d2 = d * (float)sc, m2 = min * (float)m;
		for (int l = 0; l < 32; l++)
			*y++ = d1 * (float)(q[l] & 0x0f) - m1;
		for (int l = 0; l < 32; l++)
			*y++ = d2 * (float)(q[l] >> 4) - m2;
	}
}

/* Q5_K: d, dmin (f16), scales[12], qh[32], qs[128]. */
static void dq_q5_k(const unsigned char *b, float *y)
{
	const float d = f16_at(b), min = f16_at(b + 2);
	const unsigned char *scales = b + 4, *qh = b + 16, *ql = b + 48;
	unsigned sc, m, u1 = 1, u2 = 2;
	for (int j = 0, is = 0; j < QK_K; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
		scale_min_k4(is, scales, &sc, &m);
		const float d1 = d * (float)sc, m1 = min * (float)m;
		scale_min_k4(is + 1, scales, &sc, &m);
		const float d2 = d * (float)sc, m2 = min * (float)m;
		for (int l = 0; l < 32; l++)
			*y++ = d1 * (float)((ql[l] & 0x0f) + ((qh[l] & u1) ? 16 : 0)) - m1;
		for (int l = 0; l < 32; l++)
			*y++ = d2 * (float)((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
	}
}

/* Q6_K: ql[128], qh[64], scales[16] (int8), d (f16); x = d * s * (q - 32). */
static void dq_q6_k(const unsigned char *b, float *y)
{
	const unsigned char *ql = b, *qh = b + 128;
	const int8_t *sc = (const int8_t *)(b + 192);
	const float d = f16_at(b + 208);
	for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
		for (int l = 0; l < 32; l++) {
			int is = l / 16;
			int q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) - 32;
			int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
			int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
			int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
			y[l] = d * (float)sc[is] * (float)q1;
			y[l + 32] = d * (float)sc[is + 2] * (float)q2;
			y[l + 64] = d * (float)sc[is + 4] * (float)q3;
			y[l + 96] = d * (float)sc[is + 6] * (float)q4;
		}
	}
}

/* Q8_K: d (f32), qs[256] (int8), bsums[16] (unused to decode); x = d * q. */
static void dq_q8_k(const unsigned char *b, float *y)
{
	uint32_t bits = le32_at(b);
	float d;
	memcpy(&d, &bits, sizeof(d));
	for (int j = 0; j < QK_K; j++)
		y[j] = d * (float)(int8_t)b[4 + j];
}

void ggml_dequant(enum dtype dt, const unsigned char *src, size_t nblocks, float *dst)
{
	void (*fn)(const unsigned char *, float *);
	switch (dt) {
	case DT_Q4_0: fn = dq_q4_0; break;
	case DT_Q4_1: fn = dq_q4_1; break;
	case DT_Q5_0: fn = dq_q5_0; break;
	case DT_Q5_1: fn = dq_q5_1; break;
	case DT_Q8_0: fn = dq_q8_0; break;
	case DT_Q2_K: fn = dq_q2_k; break;
	case DT_Q3_K: fn = dq_q3_k; break;
	case DT_Q4_K: fn = dq_q4_k; break;
	case DT_Q5_K: fn = dq_q5_k; break;
	case DT_Q6_K: fn = dq_q6_k; break;
	case DT_Q8_K: fn = dq_q8_k; break;
	default: return;
	}
	const unsigned bb = dtype_table[dt].block_bytes, be = dtype_table[dt].block_elems;
	for (size_t i = 0; i < nblocks; i++)
		fn(src + i * bb, dst + i * be);
}

/* ==== Encoding ============================================================
 *
 * The encoders reproduce ggml's reference quantizers (quantize_row_*_ref in
 * ggml-quants.c, the ones llama-quantize and ggml_quantize_chunk() use when
 * no importance matrix is given) operation for operation: every float32
 * expression is evaluated in the order ggml's C source gives it (built
 * with -ffp-contract=off, so no multiply-add is fused), integer rounding
 * goes through the same conversions (truncation after adding 8.5 for Q4_0,
 * roundf for Q8_0, the 1.5 * 2^23 addition of nearest_int for the K types)
 * and scales are rounded to half precision with the same round-to-nearest-
 * even. The search loops of the K types (make_qkx2_quants, make_qx_quants)
 * keep ggml's candidate order and its strict comparisons, since a tie
 * broken the other way changes the bytes.
 */

static uint32_t f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof(u));
	return u;
}

uint16_t ggml_f32_to_f16(float f)
{
	const uint32_t u = f32_bits(f), sign = (u >> 16) & 0x8000u, x = u & 0x7fffffffu;
	if (x > 0x7f800000u) /* NaN: ggml keeps no payload */
		return (uint16_t)(sign | 0x7e00u);
	if (x >= 0x477ff000u) /* 65520 and above round to infinity */
		return (uint16_t)(sign | 0x7c00u);
	if (x >= 0x38800000u) /* a normal half: rebias, round the 13 bits off to even */
		return (uint16_t)(sign | ((x - 0x38000000u + 0xfffu + ((x >> 13) & 1u)) >> 13));
	if (x < 0x33000000u) /* at most a quarter of the smallest subnormal */
		return (uint16_t)sign;
	/* a subnormal half: the value in units of 2^-24, rounded to even */
	const uint32_t e = x >> 23, man = (x & 0x7fffffu) | 0x800000u, shift = 126 - e;
	uint32_t r = man >> shift;
	const uint32_t rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
	if (rem > half || (rem == half && (r & 1u)))
		r++;
	return (uint16_t)(sign | r);
}

uint16_t ggml_f32_to_bf16(float f)
{
	const uint32_t u = f32_bits(f);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40u);
	return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static void put16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

static void put_f16(unsigned char *p, float f) { put16(p, ggml_f32_to_f16(f)); }

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/*
 * ggml converts floats to its 8-bit levels with C casts ((int8_t)v,
 * (uint8_t)v): truncation toward zero, and for a NaN or a value beyond
 * int32 -- reachable from finite input, when a block of subnormals makes
 * 1/d infinite -- what x86's cvttss2si gives, INT32_MIN, of which the cast
 * keeps the low byte. C leaves that case undefined; lines defines it as
 * x86 does, so that every machine writes the bytes ggml writes on x86.
 */
static int32_t trunc_x86(float v)
{
	return v > -2147483648.0f && v < 2147483648.0f ? (int32_t)v : INT32_MIN;
}

/* (int8_t)v then MIN(top, .) as ggml's quantizers do, stored in a byte */
static unsigned level8(float v, int top)
{
	const int q = (int8_t)trunc_x86(v);
	return (uint8_t)(q < top ? q : top);
}

/* Q8_0: d = max|x| / 127, q = roundf(x / d) (half away from zero). */
static void q_q8_0(const float *x, unsigned char *b)
{
	float amax = 0.0f;
	for (int j = 0; j < QK; j++) {
		const float a = fabsf(x[j]);
		amax = amax > a ? amax : a;
	}
	const float d = amax / 127.0f;
	const float id = d != 0.0f ? 1.0f / d : 0.0f;
	put_f16(b, d);
	for (int j = 0; j < QK; j++)
		b[2 + j] = (unsigned char)trunc_x86(roundf(x[j] * id));
}

/* Q4_0: d = -m / 8 where m is the first element of largest magnitude (its
 * sign kept, so that m itself lands on the end level 0), q = x / d + 8,
 * truncated after adding one half, at most 15. */
static void q_q4_0(const float *x, unsigned char *b)
{
	float amax = 0.0f, max = 0.0f;
	for (int j = 0; j < QK; j++)
		if (amax < fabsf(x[j])) {
			amax = fabsf(x[j]);
			max = x[j];
		}
	const float d = max / -8.0f;
	const float id = d != 0.0f ? 1.0f / d : 0.0f;
	put_f16(b, d);
	for (int j = 0; j < QK / 2; j++) {
		const unsigned lo = level8(x[j] * id + 8.5f, 15), hi = level8(x[j + QK / 2] * id + 8.5f, 15);
		b[2 + j] = (unsigned char)(lo | hi << 4);
	}
}

/* The least and greatest element of a 32-block, as ggml scans them. */
static void block_min_max(const float *x, float *mn, float *mx)
{
	float lo = FLT_MAX, hi = -FLT_MAX;
	for (int j = 0; j < QK; j++) {
		if (x[j] < lo)
			lo = x[j];
		if (x[j] > hi)
			hi = x[j];
	}
	*mn = lo;
	*mx = hi;
}

/* Q4_1: m = min, d = (max - min) / 15, q = (x - m) / d rounded half up. */
static void q_q4_1(const float *x, unsigned char *b)
{
	float min, max;
	block_min_max(x, &min, &max);
	const float d = (max - min) / 15.0f;
	const float id = d != 0.0f ? 1.0f / d : 0.0f;
	put_f16(b, d);
	put_f16(b + 2, min);
	for (int j = 0; j < QK / 2; j++) {
		const unsigned lo = level8((x[j] - min) * id + 0.5f, 15);
		const unsigned hi = level8((x[j + QK / 2] - min) * id + 0.5f, 15);
		b[4 + j] = (unsigned char)(lo | hi << 4);
	}
}

/* Q5_0: as Q4_0 with 32 levels: d = -m / 16, q = x / d + 16; the fifth
 * bit of element j is bit j of qh. */
static void q_q5_0(const float *x, unsigned char *b)
{
	float amax = 0.0f, max = 0.0f;
	for (int j = 0; j < QK; j++)
		if (amax < fabsf(x[j])) {
			amax = fabsf(x[j]);
			max = x[j];
		}
	const float d = max / -16.0f;
	const float id = d != 0.0f ? 1.0f / d : 0.0f;
	uint32_t qh = 0;
	put_f16(b, d);
	for (int j = 0; j < QK / 2; j++) {
		const unsigned lo = level8(x[j] * id + 16.5f, 31), hi = level8(x[j + QK / 2] * id + 16.5f, 31);
		b[6 + j] = (unsigned char)((lo & 0x0f) | (hi & 0x0f) << 4);
		qh |= (uint32_t)(lo >> 4 & 1) << j | (uint32_t)(hi >> 4 & 1) << (j + QK / 2);
	}
	put32(b + 2, qh);
}

/* Q5_1: as Q4_1 with 32 levels, d = (max - min) / 31; ggml does not clamp
 * (a quotient rounding to 32 would lose its fifth bit; it cannot occur). */
static void q_q5_1(const float *x, unsigned char *b)
{
	float min, max;
	block_min_max(x, &min, &max);
	const float d = (max - min) / 31.0f;
	const float id = d != 0.0f ? 1.0f / d : 0.0f;
	uint32_t qh = 0;
	put_f16(b, d);
	put_f16(b + 2, min);
	for (int j = 0; j < QK / 2; j++) {
		const unsigned lo = (uint8_t)trunc_x86((x[j] - min) * id + 0.5f);
		const unsigned hi = (uint8_t)trunc_x86((x[j + QK / 2] - min) * id + 0.5f);
		b[8 + j] = (unsigned char)((lo & 0x0f) | (hi & 0x0f) << 4);
		qh |= (uint32_t)(lo >> 4 & 1) << j | (uint32_t)(hi >> 4 & 1) << (j + QK / 2);
	}
	put32(b + 4, qh);
}

/* ---- the K types ----------------------------------------------------------
 *
 * ggml rounds to the nearest integer by adding 1.5 * 2^23: the sum's last
 * mantissa bits are then the integer, rounded to even by the addition
 * itself. Valid for |f| < 2^22, which every caller keeps to (the result
 * for larger or non-finite f is whatever the bits say, as in ggml).
 */
static int nearest_int(float f)
{
	const float v = f + 12582912.0f;
	return (int)(f32_bits(v) & 0x007fffffu) - 0x00400000;
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/*
 * The scale and offset of one sub-block of an asymmetric K type (Q4_K,
 * Q5_K): x ~ scale * L - min, L in [0, nmax], minimising the weighted
 * squared error. Start from the range (min clamped to at most 0), then try
 * nstep + 1 stretched grids (nmax + rmin + rdelta * is levels over the
 * range), each followed by the weighted least-squares fit of scale and min
 * to its levels; keep a candidate only when its error is strictly lower.
 * Returns the scale and sets *the_min to the offset as a positive number
 * (-min); L gets the levels. Laux is scratch of n bytes.
 */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L,
                           float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep)
{
	float min = x[0], max = x[0];
	float sum_w = w[0], sum_x = sum_w * x[0];
	for (int i = 1; i < n; i++) {
		if (x[i] < min)
			min = x[i];
		if (x[i] > max)
			max = x[i];
		sum_w += w[i];
		sum_x += w[i] * x[i];
	}
	if (min > 0)
		min = 0;
	if (max == min) {
		memset(L, 0, (size_t)n);
		*the_min = -min;
		return 0.0f;
	}
	float iscale = (float)nmax / (max - min), scale = 1 / iscale, best = 0;
	for (int i = 0; i < n; i++) {
		L[i] = (uint8_t)clampi(nearest_int(iscale * (x[i] - min)), 0, nmax);
		const float diff = scale * (float)L[i] + min - x[i];
		best += w[i] * (diff * diff);
	}
	for (int is = 0; is <= nstep; is++) {
		iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
		float sum_l = 0, sum_l2 = 0, sum_xl = 0;
		for (int i = 0; i < n; i++) {
			const int l = clampi(nearest_int(iscale * (x[i] - min)), 0, nmax);
			const float fl = (float)l;
			Laux[i] = (uint8_t)l;
			sum_l += w[i] * fl;
			sum_l2 += w[i] * fl * fl;
			sum_xl += w[i] * fl * x[i];
		}
		const float D = sum_w * sum_l2 - sum_l * sum_l;
		if (!(D > 0))
			continue;
		float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
		float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
		if (this_min > 0) { /* an offset above zero: refit the scale alone */
			this_min = 0;
			this_scale = sum_xl / sum_l2;
		}
		float err = 0;
		for (int i = 0; i < n; i++) {
			const float diff = this_scale * (float)Laux[i] + this_min - x[i];
			err += w[i] * (diff * diff);
		}
		if (err < best) {
			memcpy(L, Laux, (size_t)n);
			best = err;
			scale = this_scale;
			min = this_min;
		}
	}
	*the_min = -min;
	return scale;
}

/*
 * Q4_K and Q5_K (nmax 15 or 31): eight sub-blocks of 32, each fitted by
 * fit_scale_min with weights mean-square + |x|; the eight scales and eight
 * offsets are then quantized to six bits against the largest of each
 * (d = max scale / 63, dmin = max offset / 63) and every element is
 * re-quantized against its rounded sub-block scale and offset. levels gets
 * the 256 final levels; the caller packs them.
 */
static void kquant_scale_min(const struct kern *k, const float *x, int nmax, float rmin, float rstep,
                             int nstep, unsigned char *b, uint8_t *levels)
{
	float scales[QK_K / 32], mins[QK_K / 32], w[QK_K];
	uint8_t aux[32];
	float max_scale = 0, max_min = 0;
	for (int j = 0; j < QK_K / 32; j++) {
		const float *xs = x + 32 * j;
		float sum_x2 = 0;
		for (int l = 0; l < 32; l++)
			sum_x2 += xs[l] * xs[l];
		const float av_x = sqrtf(sum_x2 / 32);
		for (int l = 0; l < 32; l++)
			w[32 * j + l] = av_x + fabsf(xs[l]);
	}
	if (k && k->qk_fit8)
		k->qk_fit8(x, w, nmax, rmin, rstep, nstep, levels, scales, mins);
	else
		for (int j = 0; j < QK_K / 32; j++)
			scales[j] = fit_scale_min(32, nmax, x + 32 * j, w + 32 * j, levels + 32 * j, &mins[j],
			                          aux, rmin, rstep, nstep);
	for (int j = 0; j < QK_K / 32; j++) {
		if (scales[j] > max_scale)
			max_scale = scales[j];
		if (mins[j] > max_min)
			max_min = mins[j];
	}
	const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
	const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
	unsigned char *sc = b + 4;
	memset(sc, 0, 12);
	for (int j = 0; j < QK_K / 32; j++) {
		/* ggml stores the rounded value in a byte before clamping */
		unsigned ls = (uint8_t)nearest_int(inv_scale * scales[j]);
		unsigned lm = (uint8_t)nearest_int(inv_min * mins[j]);
		ls = ls < 63 ? ls : 63;
		lm = lm < 63 ? lm : 63;
		if (j < 4) { /* six bits in bytes 0..7 */
			sc[j] = (unsigned char)ls;
			sc[j + 4] = (unsigned char)lm;
		} else { /* low nibbles in bytes 8..11, top two bits on bytes 0..7 */
			sc[j + 4] = (unsigned char)((ls & 0x0f) | (lm & 0x0f) << 4);
			sc[j - 4] |= (unsigned char)((ls >> 4) << 6);
			sc[j] |= (unsigned char)((lm >> 4) << 6);
		}
	}
	put_f16(b, max_scale / 63.0f);
	put_f16(b + 2, max_min / 63.0f);
	const float d = f16_at(b), dmin = f16_at(b + 2);
	for (int j = 0; j < QK_K / 32; j++) {
		unsigned s, m;
		scale_min_k4(j, sc, &s, &m);
		const float dl = d * (float)s;
		if (dl == 0.0f) /* keep the fit's levels, as ggml does */
			continue;
		const float ml = dmin * (float)m;
		for (int i = 0; i < 32; i++)
			levels[32 * j + i] = (uint8_t)clampi(nearest_int((x[32 * j + i] + ml) / dl), 0, nmax);
	}
}

/* Q4_K: d, dmin, scales[12], then qs[128]: for each 64 elements, 32 bytes
 * holding element l in the low nibble and element l + 32 in the high. */
static void q_q4_k(const struct kern *k, const float *x, unsigned char *b)
{
	uint8_t L[QK_K];
	kquant_scale_min(k, x, 15, -1.0f, 0.1f, 20, b, L);
	unsigned char *q = b + 16;
	for (int j = 0; j < QK_K; j += 64, q += 32)
		for (int l = 0; l < 32; l++)
			q[l] = (unsigned char)(L[j + l] | L[j + l + 32] << 4);
}

/* Q5_K: as Q4_K with 32 levels; the fifth bits go to qh[32]: element
 * 64 * n + l sets bit 2n of qh[l], element 64 * n + 32 + l bit 2n + 1. */
static void q_q5_k(const struct kern *k, const float *x, unsigned char *b)
{
	uint8_t L[QK_K];
	kquant_scale_min(k, x, 31, -0.5f, 0.1f, 15, b, L);
	unsigned char *qh = b + 16, *ql = b + 48;
	memset(qh, 0, 32);
	for (int n = 0, sh = 0; n < QK_K; n += 64, sh += 2, ql += 32)
		for (int l = 0; l < 32; l++) {
			const unsigned l1 = L[n + l], l2 = L[n + l + 32];
			qh[l] |= (unsigned char)((l1 >> 4) << sh | (l2 >> 4) << (sh + 1));
			ql[l] = (unsigned char)((l1 & 0x0f) | (l2 & 0x0f) << 4);
		}
}

/*
 * The scale of one sub-block of a symmetric K type (Q6_K, rmse_type 1 of
 * ggml's make_qx_quants without weights): x ~ scale * (L - nmax), L in
 * [0, 2 nmax - 1]. Start from the grid that puts the largest-magnitude
 * element m on level 0 (iscale = -nmax / m), fit the scale by least
 * squares weighted with x^2, then try 18 neighbouring grids
 * (nmax +- 0.1 ... 0.9) and keep one when it fits strictly better.
 */
static float fit_scale_sym(int n, int nmax, const float *x, int8_t *L)
{
	float max = 0, amax = 0;
	for (int i = 0; i < n; i++) {
		const float ax = fabsf(x[i]);
		if (ax > amax) {
			amax = ax;
			max = x[i];
		}
	}
	if (amax < 1e-15f) { /* ggml's GROUP_MAX_EPS: all zero */
		memset(L, 0, (size_t)n);
		return 0.0f;
	}
	float iscale = (float)-nmax / max, sumlx = 0, suml2 = 0;
	for (int i = 0; i < n; i++) {
		const int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
		const float w = x[i] * x[i], fl = (float)l;
		L[i] = (int8_t)(l + nmax);
		sumlx += w * x[i] * fl;
		suml2 += w * fl * fl;
	}
	float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
	float best = scale * sumlx;
	for (int is = -9; is <= 9; is++) {
		if (is == 0)
			continue;
		iscale = -((float)nmax + 0.1f * (float)is) / max;
		sumlx = suml2 = 0;
		for (int i = 0; i < n; i++) {
			const float fl = (float)clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
			const float w = x[i] * x[i];
			sumlx += w * x[i] * fl;
			suml2 += w * fl * fl;
		}
		if (suml2 > 0 && sumlx * sumlx > best * suml2) {
			for (int i = 0; i < n; i++)
				L[i] = (int8_t)(nmax + clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1));
			scale = sumlx / suml2;
			best = scale * sumlx;
		}
	}
	return scale;
}

/* Q6_K: ql[128], qh[64], scales[16] (int8), d. Sixteen sub-blocks of 16
 * fitted by fit_scale_sym; their scales quantized to int8 against the one
 * of largest magnitude (d = -that / 128), the elements re-quantized to
 * [-32, 31] against the rounded scales. Packing per 128 elements: ql[l]
 * holds elements l (low) and l + 64 (high), ql[l + 32] elements l + 32 and
 * l + 96; qh[l] their top two bits, two bits per element in that order. */
static void q_q6_k(const struct kern *k, const float *x, unsigned char *b)
{
	int8_t L[QK_K];
	float scales[QK_K / 16];
	float max_scale = 0, max_abs = 0;
	if (k && k->q6_fit8) {
		k->q6_fit8(x, 32, L, scales);
		k->q6_fit8(x + 128, 32, L + 128, scales + 8);
	} else {
		for (int ib = 0; ib < QK_K / 16; ib++)
			scales[ib] = fit_scale_sym(16, 32, x + 16 * ib, L + 16 * ib);
	}
	for (int ib = 0; ib < QK_K / 16; ib++) {
		if (fabsf(scales[ib]) > max_abs) {
			max_abs = fabsf(scales[ib]);
			max_scale = scales[ib];
		}
	}
	memset(b, 0, 210);
	if (max_abs < 1e-15f)
		return; /* all zero, d = +0 */
	const float iscale = -128.0f / max_scale;
	put_f16(b + 208, 1 / iscale);
	int8_t *sc = (int8_t *)(b + 192);
	for (int ib = 0; ib < QK_K / 16; ib++) {
		const int l = nearest_int(iscale * scales[ib]);
		sc[ib] = (int8_t)(l < 127 ? l : 127);
	}
	const float d = f16_at(b + 208);
	for (int j = 0; j < QK_K / 16; j++) {
		const float dl = d * (float)sc[j];
		if (dl == 0.0f) /* keep the fit's levels, as ggml does */
			continue;
		for (int i = 0; i < 16; i++)
			L[16 * j + i] = (int8_t)(clampi(nearest_int(x[16 * j + i] / dl), -32, 31) + 32);
	}
	unsigned char *ql = b, *qh = b + 128;
	for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32)
		for (int l = 0; l < 32; l++) {
			const unsigned a = (uint8_t)L[j + l], c = (uint8_t)L[j + l + 32];
			const unsigned e = (uint8_t)L[j + l + 64], f = (uint8_t)L[j + l + 96];
			ql[l] = (unsigned char)((a & 0x0f) | (e & 0x0f) << 4);
			ql[l + 32] = (unsigned char)((c & 0x0f) | (f & 0x0f) << 4);
			qh[l] = (unsigned char)(a >> 4 | (c >> 4) << 2 | (e >> 4) << 4 | (f >> 4) << 6);
		}
}

int ggml_quant_writable(enum dtype d)
{
	switch (d) {
	case DT_F32: case DT_F16: case DT_BF16: case DT_Q8_0: case DT_Q4_0: case DT_Q4_1:
	case DT_Q5_0: case DT_Q5_1: case DT_Q4_K: case DT_Q5_K: case DT_Q6_K:
		return 1;
	default:
		return 0;
	}
}

void ggml_quant(enum dtype dt, const float *src, size_t nblocks, unsigned char *dst)
{
	struct lines_error err;
	ggml_quant_with(kern_get(&err), dt, src, nblocks, dst);
}

void ggml_quant_with(const struct kern *k, enum dtype dt, const float *src, size_t nblocks,
                     unsigned char *dst)
{
	void (*fn)(const float *, unsigned char *) = NULL;
	void (*kfn)(const struct kern *, const float *, unsigned char *) = NULL;
	switch (dt) {
	case DT_F32:
		for (size_t i = 0; i < nblocks; i++)
			put32(dst + 4 * i, f32_bits(src[i]));
		return;
	case DT_F16:
		for (size_t i = 0; i < nblocks; i++)
			put16(dst + 2 * i, ggml_f32_to_f16(src[i]));
		return;
	case DT_BF16:
		for (size_t i = 0; i < nblocks; i++)
			put16(dst + 2 * i, ggml_f32_to_bf16(src[i]));
		return;
	case DT_Q8_0: fn = q_q8_0; break;
	case DT_Q4_0: fn = q_q4_0; break;
	case DT_Q4_1: fn = q_q4_1; break;
	case DT_Q5_0: fn = q_q5_0; break;
	case DT_Q5_1: fn = q_q5_1; break;
	case DT_Q4_K: kfn = q_q4_k; break;
	case DT_Q5_K: kfn = q_q5_k; break;
	case DT_Q6_K: kfn = q_q6_k; break;
	default: return;
	}
	const unsigned bb = dtype_table[dt].block_bytes, be = dtype_table[dt].block_elems;
	for (size_t i = 0; i < nblocks; i++) {
		if (kfn)
			kfn(k, src + i * be, dst + i * bb);
		else
			fn(src + i * be, dst + i * bb);
	}
}

/* The figures of lines-merge(1)'s table (GGUF round-trip error): keep the
 * two the same. */
double ggml_roundtrip_rms(enum dtype d)
{
	switch (d) {
	case DT_Q8_0: return 3.88e-3;
	case DT_Q6_K: return 1.35e-2;
	case DT_Q5_K: return 2.82e-2;
	case DT_Q5_1: return 2.99e-2;
	case DT_Q5_0: return 3.16e-2;
	case DT_Q4_K: return 5.57e-2;
	case DT_Q4_1: return 6.19e-2;
	case DT_Q4_0: return 6.49e-2;
	default: return NAN;
	}
}
