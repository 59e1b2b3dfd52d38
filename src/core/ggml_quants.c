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

#include <math.h>
#include <string.h>

#include "ggml_quants.h"

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
		b[2 + j] = (unsigned char)(int8_t)roundf(x[j] * id);
}

int ggml_quant_writable(enum dtype d)
{
	switch (d) {
	case DT_F32: case DT_F16: case DT_BF16: case DT_Q8_0:
		return 1;
	default:
		return 0;
	}
}

void ggml_quant(enum dtype dt, const float *src, size_t nblocks, unsigned char *dst)
{
	void (*fn)(const float *, unsigned char *);
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
	default: return;
	}
	const unsigned bb = dtype_table[dt].block_bytes, be = dtype_table[dt].block_elems;
	for (size_t i = 0; i < nblocks; i++)
		fn(src + i * be, dst + i * bb);
}
