/*
 * t-quant.c -- GGUF encoders (issue 17): ggml_quant() writes the bytes
 * ggml's reference quantizers write.
 *
 * 1. Hand-computed blocks: for inputs whose encoding follows from the
 *    format's definition alone (all zeros, a ramp on the type's grid, one
 *    outlier among zeros, the same with a negative maximum), the test
 *    works out every level and scale itself, packs the expected block from
 *    the layouts of ggml-common.h and compares every byte.
 * 2. Round trip: decode(encode(x)) on random rows (uniform and Gaussian,
 *    scales 1e-3 to 1e2) stays within the type's error bound, and the RMS
 *    error relative to the data's RMS is printed per type and
 *    distribution (the figure lines-merge(1) quotes).
 * 3. Bit-exactness against ggml itself: ggml_quantize_chunk() of the
 *    prebuilt llama.cpp of npm's @node-llama-cpp/linux-x64 (3.21.1),
 *    loaded with dlopen from $LINES_GGML_LIB or the npm packages of
 *    t-llama.sh ($LINES_NODE_MODULES, tests/node-deps),
 *    encodes the same rows (normal, extreme and degenerate ones); every
 *    byte must agree; and ggml's dequantize_row_* decode random blocks of
 *    every block type lines reads as ggml_dequant() does. Without the
 *    library the comparisons say SKIP.
 * 4. Every kernel set (LINES_ISA: avx2, avx512, neon) writes the bytes of
 *    the scalar code.
 */
#include <dlfcn.h>
#include <float.h>
#include <glob.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml_quants.h"
#include "kernels.h"
#include "tap.h"

#define QK_K 256

static const enum dtype wtypes[] = {DT_F32, DT_F16, DT_BF16, DT_Q8_0, DT_Q4_0, DT_Q4_1,
                                   DT_Q5_0, DT_Q5_1, DT_Q4_K, DT_Q5_K, DT_Q6_K};
#define NW (sizeof(wtypes) / sizeof(wtypes[0]))

/* ---- an independent half-precision rounding (double arithmetic) ------------------------- */

/* The F16 bits nearest v (ties to even), v finite and below 65520. */
static uint16_t h_of(double v)
{
	uint16_t sign = signbit(v) ? 0x8000 : 0;
	double a = fabs(v);
	if (a == 0)
		return sign;
	int e;
	frexp(a, &e); /* a = f 2^e, f in [0.5, 1) */
	if (e < -13)
		e = -13; /* subnormal: spacing 2^-24 */
	double q = nearbyint(ldexp(a, 11 - e)); /* 11 significant bits, ties to even */
	double r = ldexp(q, e - 11);
	/* back to bits */
	int e2;
	double f = frexp(r, &e2);
	if (e2 < -13) /* subnormal */
		return (uint16_t)(sign | (uint16_t)ldexp(r, 24));
	uint16_t m = (uint16_t)(ldexp(f, 11) - 1024);
	return (uint16_t)(sign | (uint16_t)((e2 + 14) << 10) | m);
}

static void put16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v, p[1] = (unsigned char)(v >> 8); }

/* ---- packers written from ggml-common.h's layouts ----------------------------------------- */

static void pack_q4_0(unsigned char *b, uint16_t d, const int *q)
{
	put16(b, d);
	for (int j = 0; j < 16; j++)
		b[2 + j] = (unsigned char)(q[j] | q[j + 16] << 4);
}

static void pack_q4_1(unsigned char *b, uint16_t d, uint16_t m, const int *q)
{
	put16(b, d);
	put16(b + 2, m);
	for (int j = 0; j < 16; j++)
		b[4 + j] = (unsigned char)(q[j] | q[j + 16] << 4);
}

static void pack_q5(unsigned char *b, int one, uint16_t d, uint16_t m, const int *q)
{
	uint32_t qh = 0;
	put16(b, d);
	if (one)
		put16(b + 2, m);
	unsigned char *h = b + 2 + 2 * one, *qs = h + 4;
	for (int j = 0; j < 32; j++)
		if (q[j] & 16)
			qh |= 1u << j;
	for (int j = 0; j < 16; j++)
		qs[j] = (unsigned char)((q[j] & 15) | (q[j + 16] & 15) << 4);
	for (int i = 0; i < 4; i++)
		h[i] = (unsigned char)(qh >> (8 * i));
}

static void pack_q8_0(unsigned char *b, uint16_t d, const int *q)
{
	put16(b, d);
	for (int j = 0; j < 32; j++)
		b[2 + j] = (unsigned char)(int8_t)q[j];
}

/* Q4_K/Q5_K: d, dmin, then 8 six-bit scales and mins in 12 bytes: for
 * j < 4 scale j in byte j, min j in byte j + 4 (low six bits); for j >= 4
 * the low nibbles in byte j + 4 (scale low, min high) and the top two bits
 * in bits 6-7 of bytes j - 4 (scale) and j (min). Then Q5_K's qh[32]
 * (bit 2k of qh[l]: element 64k + l, bit 2k + 1: element 64k + 32 + l)
 * and qs[128] (per 64 elements, element l low nibble, l + 32 high). */
static void pack_q45_k(unsigned char *b, int five, uint16_t d, uint16_t dmin, const int *ls,
                       const int *lm, const int *q)
{
	put16(b, d);
	put16(b + 2, dmin);
	unsigned char *sc = b + 4;
	memset(sc, 0, 12);
	for (int j = 0; j < 8; j++) {
		if (j < 4) {
			sc[j] |= (unsigned char)ls[j];
			sc[j + 4] |= (unsigned char)lm[j];
		} else {
			sc[j + 4] = (unsigned char)((ls[j] & 15) | (lm[j] & 15) << 4);
			sc[j - 4] |= (unsigned char)((ls[j] >> 4) << 6);
			sc[j] |= (unsigned char)((lm[j] >> 4) << 6);
		}
	}
	unsigned char *qh = b + 16, *qs = five ? b + 48 : b + 16;
	if (five)
		memset(qh, 0, 32);
	for (int k = 0; k < 4; k++)
		for (int l = 0; l < 32; l++) {
			int a = q[64 * k + l], c = q[64 * k + 32 + l];
			qs[32 * k + l] = (unsigned char)((a & 15) | (c & 15) << 4);
			if (five)
				qh[l] |= (unsigned char)((a >> 4) << (2 * k) | (c >> 4) << (2 * k + 1));
		}
}

/* Q6_K: ql[128], qh[64], scales[16] (int8), d. Per 128 elements (half
 * h): ql[64h + l] = element l (low) and l + 64 (high), ql[64h + 32 + l] =
 * elements l + 32 and l + 96; qh[32h + l] the top two bits of elements l,
 * l + 32, l + 64, l + 96 at bits 0, 2, 4, 6. q in [0, 63]. */
static void pack_q6_k(unsigned char *b, uint16_t d, const int *sc, const int *q)
{
	memset(b, 0, 210);
	for (int h = 0; h < 2; h++)
		for (int l = 0; l < 32; l++) {
			const int *e = q + 128 * h + l;
			b[64 * h + l] = (unsigned char)((e[0] & 15) | (e[64] & 15) << 4);
			b[64 * h + 32 + l] = (unsigned char)((e[32] & 15) | (e[96] & 15) << 4);
			b[128 + 32 * h + l] =
			    (unsigned char)(e[0] >> 4 | (e[32] >> 4) << 2 | (e[64] >> 4) << 4 | (e[96] >> 4) << 6);
		}
	for (int j = 0; j < 16; j++)
		b[192 + j] = (unsigned char)(int8_t)sc[j];
	put16(b + 208, d);
}

/* ---- 1. hand-computed blocks -------------------------------------------------------------- */

static int same_bytes(const unsigned char *got, const unsigned char *want, size_t n, const char *what)
{
	for (size_t i = 0; i < n; i++)
		if (got[i] != want[i]) {
			diag("%s: byte %zu is 0x%02x, expected 0x%02x", what, i, got[i], want[i]);
			return 0;
		}
	return 1;
}

static void check_block(enum dtype d, const float *x, const unsigned char *want, const char *what)
{
	unsigned char got[512];
	const unsigned bb = dtype_table[d].block_bytes;
	memset(got, 0xa5, sizeof(got));
	ggml_quant(d, x, 1, got);
	ok(same_bytes(got, want, bb, what) && got[bb] == 0xa5, "%s %s: every byte as worked out by hand",
	   dtype_name(d), what);
}

static void t_hand_32(void)
{
	float x[32];
	int q[32];
	unsigned char w[64];

	/* all zeros: Q8_0 d = 0, q = 0; Q4_0/Q5_0 d = 0 / -8 = -0 and
	 * q = trunc(0 + 8.5) = 8 (16 for Q5_0); Q4_1/Q5_1 d = m = 0, q = 0 */
	memset(x, 0, sizeof(x));
	for (int j = 0; j < 32; j++)
		q[j] = 0;
	pack_q8_0(w, 0, q);
	check_block(DT_Q8_0, x, w, "zeros");
	pack_q4_1(w, 0, 0, q);
	check_block(DT_Q4_1, x, w, "zeros");
	pack_q5(w, 1, 0, 0, q);
	check_block(DT_Q5_1, x, w, "zeros");
	for (int j = 0; j < 32; j++)
		q[j] = 8;
	pack_q4_0(w, 0x8000, q);
	check_block(DT_Q4_0, x, w, "zeros");
	for (int j = 0; j < 32; j++)
		q[j] = 16;
	pack_q5(w, 0, 0x8000, 0, q);
	check_block(DT_Q5_0, x, w, "zeros");

	/* a ramp: Q8_0 x = (8j - 127) / 16, amax = 127/16 so d = 1/16 and
	 * q = 8j - 127 exactly */
	for (int j = 0; j < 32; j++) {
		x[j] = (float)(8 * j - 127) / 16;
		q[j] = 8 * j - 127;
	}
	pack_q8_0(w, h_of(1.0 / 16), q);
	check_block(DT_Q8_0, x, w, "ramp");
	/* Q4_0 x = (j mod 16) - 8: the first of largest magnitude is -8, so
	 * d = -8 / -8 = 1 and q = x + 8 */
	for (int j = 0; j < 32; j++) {
		x[j] = (float)(j % 16 - 8) * 0.25f;
		q[j] = j % 16;
	}
	pack_q4_0(w, h_of(0.25), q);
	check_block(DT_Q4_0, x, w, "ramp");
	/* the same reversed: the maximum 8 is positive, d = -1, q = 8 - x */
	for (int j = 0; j < 32; j++) {
		x[j] = (float)(8 - j % 16);
		q[j] = j % 16;
	}
	pack_q4_0(w, h_of(-1.0), q);
	check_block(DT_Q4_0, x, w, "descending ramp");
	/* Q5_0 x = j - 16: d = -16 / -16 = 1, q = j */
	for (int j = 0; j < 32; j++) {
		x[j] = (float)(j - 16) * 4;
		q[j] = j;
	}
	pack_q5(w, 0, h_of(4.0), 0, q);
	check_block(DT_Q5_0, x, w, "ramp");
	/* Q4_1 x = (j mod 16) / 8 - 3: min -3, d = (15/8) / 15 = 1/8, q = j mod 16 */
	for (int j = 0; j < 32; j++) {
		x[j] = (float)(j % 16) / 8 - 3;
		q[j] = j % 16;
	}
	pack_q4_1(w, h_of(0.125), h_of(-3), q);
	check_block(DT_Q4_1, x, w, "ramp");
	/* Q5_1 x = j / 2 + 5: min 5, d = (31/2) / 31 = 1/2, q = j */
	for (int j = 0; j < 32; j++) {
		x[j] = (float)j / 2 + 5;
		q[j] = j;
	}
	pack_q5(w, 1, h_of(0.5), h_of(5), q);
	check_block(DT_Q5_1, x, w, "ramp");

	/* one outlier A at element 5 among zeros, then -A */
	for (int sgn = 1; sgn >= -1; sgn -= 2) {
		const char *what = sgn > 0 ? "outlier" : "negative outlier";
		memset(x, 0, sizeof(x));
		/* Q8_0: A = 127/8, d = A / 127 = 1/8, q5 = +-127 */
		x[5] = (float)sgn * 127.0f / 8;
		for (int j = 0; j < 32; j++)
			q[j] = j == 5 ? 127 * sgn : 0;
		pack_q8_0(w, h_of(1.0 / 8), q);
		check_block(DT_Q8_0, x, w, what);
		/* Q4_0: A = 16, d = -A / 8 (sign of A flipped): the outlier at
		 * level 0, the zeros at 8 */
		x[5] = (float)sgn * 16;
		for (int j = 0; j < 32; j++)
			q[j] = j == 5 ? 0 : 8;
		pack_q4_0(w, h_of(-2.0 * sgn), q);
		check_block(DT_Q4_0, x, w, what);
		/* Q5_0: A = 16, d = -A / 16, the zeros at 16 */
		for (int j = 0; j < 32; j++)
			q[j] = j == 5 ? 0 : 16;
		pack_q5(w, 0, h_of(-1.0 * sgn), 0, q);
		check_block(DT_Q5_0, x, w, what);
		/* Q4_1: A = 15: d = 1, min 0 (A > 0: q5 = 15) or -15 (q5 = 0,
		 * zeros 15) */
		x[5] = (float)sgn * 15;
		for (int j = 0; j < 32; j++)
			q[j] = sgn > 0 ? (j == 5 ? 15 : 0) : (j == 5 ? 0 : 15);
		pack_q4_1(w, h_of(1), h_of(sgn > 0 ? 0 : -15), q);
		check_block(DT_Q4_1, x, w, what);
		/* Q5_1: A = 31 likewise with 31 levels */
		x[5] = (float)sgn * 31;
		for (int j = 0; j < 32; j++)
			q[j] = sgn > 0 ? (j == 5 ? 31 : 0) : (j == 5 ? 0 : 31);
		pack_q5(w, 1, h_of(1), h_of(sgn > 0 ? 0 : -31), q);
		check_block(DT_Q5_1, x, w, what);
	}
}

/*
 * The K types on inputs whose fit is exact, so that the search of ggml's
 * reference finds nothing strictly better and the result follows from the
 * definition: every sub-block on its own grid, x = s (l - o) for levels l;
 * the first fit then has no error, scale s and offset s o. The six-bit
 * sub-block scales are round(63 s_j / max s), d = max s / 63 (as F16), and
 * the levels re-quantized against the rounded scales are still l (the
 * rounding moves them by far less than half a level).
 */
static void t_hand_k(void)
{
	float x[QK_K];
	int q[QK_K], ls[8], lm[8], sc[16];
	unsigned char w[256];

	/* all zeros: every byte zero */
	memset(x, 0, sizeof(x));
	memset(w, 0, sizeof(w));
	check_block(DT_Q4_K, x, w, "zeros");
	check_block(DT_Q5_K, x, w, "zeros");
	check_block(DT_Q6_K, x, w, "zeros");

	/* Q4_K/Q5_K ramps: sub-block j has scale s_j = 2^-3 (j even) or
	 * 2^-4 (j odd) and offset 3 s_j, x = s_j (l - 3), l = i mod 16
	 * (Q4_K) or i (Q5_K): ls = 63 or 32 (63/2 = 31.5 rounds to even),
	 * lm likewise, d = 2^-3 / 63, dmin = 3 2^-3 / 63 */
	for (int five = 0; five <= 1; five++) {
		const int nl = five ? 32 : 16;
		for (int j = 0; j < 8; j++) {
			const double s = j % 2 ? 0.0625 : 0.125;
			ls[j] = lm[j] = j % 2 ? 32 : 63;
			for (int i = 0; i < 32; i++) {
				q[32 * j + i] = i % nl;
				x[32 * j + i] = (float)(s * (i % nl - 3));
			}
		}
		/* the levels re-quantized with the rounded scales: d_j = d ls_j,
		 * m_j = dmin lm_j; for the odd sub-blocks 32/63 = 0.5079 of 2^-3
		 * against 2^-4: x / d_j = (l - 3) 63/64, + the offset 3 63/64:
		 * l 63/64 still rounds to l */
		const double d = ldexp(1, -3) / 63, dm = 3 * ldexp(1, -3) / 63;
		pack_q45_k(w, five, h_of(d), h_of(dm), ls, lm, q);
		check_block(five ? DT_Q5_K : DT_Q4_K, x, w, "ramp");
	}

	/* Q4_K one outlier A = 1 at element 0 among zeros: sub-block 0 has
	 * scale A/15 and offset 0, the rest scale 0: ls_0 = 63, d = A/945,
	 * dmin = 0, q_0 = 15. With -A: offset A, levels 0 for the outlier and
	 * 15 for the zeros, dmin = A/63 */
	for (int sgn = 1; sgn >= -1; sgn -= 2) {
		memset(x, 0, sizeof(x));
		x[0] = (float)sgn;
		memset(ls, 0, sizeof(ls));
		memset(lm, 0, sizeof(lm));
		memset(q, 0, sizeof(q));
		ls[0] = 63;
		if (sgn > 0) {
			q[0] = 15;
		} else {
			lm[0] = 63;
			for (int i = 1; i < 32; i++)
				q[i] = 15;
		}
		pack_q45_k(w, 0, h_of(1.0 / 945), h_of(sgn > 0 ? 0 : 1.0 / 63), ls, lm, q);
		check_block(DT_Q4_K, x, w, sgn > 0 ? "outlier" : "negative outlier");
		/* Q5_K: 31 levels, d = A/(31 63) */
		if (sgn > 0)
			q[0] = 31;
		else
			for (int i = 1; i < 32; i++)
				q[i] = 31;
		pack_q45_k(w, 1, h_of(1.0 / (31 * 63)), h_of(sgn > 0 ? 0 : 1.0 / 63), ls, lm, q);
		check_block(DT_Q5_K, x, w, sgn > 0 ? "outlier" : "negative outlier");
	}

	/* Q6_K ramps: each 16-element sub-block x = s (i - 8): the first of
	 * largest magnitude is -8 s, so the grid is x 4/s with no error,
	 * scale s/4, levels 4 (i - 8) + 32 = 4i; all sub-blocks alike, the
	 * int8 scales are -128 and d = -(s/4) / 128 = -s/512. Descending
	 * (x = s (8 - i)): scale -s/4, d = s/512, the same levels. */
	for (int sgn = 1; sgn >= -1; sgn -= 2) {
		const double s = 0.5;
		/* descending, the largest magnitude 8s is positive: the grid is
		 * x (-4/s), l = -4 (8 - i) = 4i - 32, the same levels 4i */
		for (int k = 0; k < QK_K; k++) {
			x[k] = (float)(sgn * s * (k % 16 - 8));
			q[k] = 4 * (k % 16);
		}
		for (int j = 0; j < 16; j++)
			sc[j] = -128;
		pack_q6_k(w, h_of(-sgn * s / 512), sc, q);
		check_block(DT_Q6_K, x, w, sgn > 0 ? "ramp" : "descending ramp");
	}

	/* Q6_K one outlier A = 2 among zeros: sub-block 0 scale -A/32 (A at
	 * level 0, its zeros at 32), the other sub-blocks all zero (levels 0);
	 * scale int8 -128 for sub-block 0, 0 elsewhere, d = A/4096; -A flips
	 * d's sign */
	for (int sgn = 1; sgn >= -1; sgn -= 2) {
		memset(x, 0, sizeof(x));
		x[0] = (float)(2 * sgn);
		for (int k = 0; k < QK_K; k++)
			q[k] = k == 0 ? 0 : k < 16 ? 32 : 0;
		for (int j = 0; j < 16; j++)
			sc[j] = j == 0 ? -128 : 0;
		pack_q6_k(w, h_of(sgn * 2.0 / 4096), sc, q);
		check_block(DT_Q6_K, x, w, sgn > 0 ? "outlier" : "negative outlier");
	}
}

/* F16, BF16 and F32: the conversions themselves, on values whose result
 * is known: exact ones, ties (to even), subnormals, overflow, NaN. */
static void t_elements(void)
{
	static const struct {
		float f;
		uint16_t h, b;
	} v[] = {
	    {0.0f, 0x0000, 0x0000},
	    {-0.0f, 0x8000, 0x8000},
	    {1.0f, 0x3c00, 0x3f80},
	    {-2.0f, 0xc000, 0xc000},
	    {65504.0f, 0x7bff, 0x4780},
	    {65519.99f, 0x7bff, 0x4780},     /* below the halfway point to 2^16 */
	    {65520.0f, 0x7c00, 0x4780},      /* halfway: to even, infinity */
	    {0x1p-24f, 0x0001, 0x3380},      /* smallest subnormal half */
	    {0x1p-25f, 0x0000, 0x3300},      /* half of it: ties to even, zero */
	    {0x1.8p-25f, 0x0001, 0x3340},    /* three quarters: up */
	    {0x1.8p-24f, 0x0002, 0x33c0},    /* 1.5 units: to even, 2 */
	    {1.0f + 0x1p-11f, 0x3c00, 0x3f80}, /* half tie: to even */
	    {1.0f + 0x3p-11f, 0x3c02, 0x3f80}, /* tie at odd: up */
	    {1.0f + 0x1p-8f, 0x3c04, 0x3f80},  /* bf16 tie: to even (down) */
	    {1.0f + 0x3p-8f, 0x3c0c, 0x3f82},  /* bf16 tie at odd: up */
	    {INFINITY, 0x7c00, 0x7f80},
	    {-INFINITY, 0xfc00, 0xff80},
	};
	int good = 1;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		unsigned char h[2], b[2], f[4];
		ggml_quant(DT_F16, &v[i].f, 1, h);
		ggml_quant(DT_BF16, &v[i].f, 1, b);
		ggml_quant(DT_F32, &v[i].f, 1, f);
		uint32_t fb;
		memcpy(&fb, &v[i].f, 4);
		unsigned hh = h[0] | h[1] << 8, bb = b[0] | b[1] << 8;
		unsigned ff = f[0] | f[1] << 8 | f[2] << 16 | (unsigned)f[3] << 24;
		if (hh != v[i].h || bb != v[i].b || ff != fb) {
			diag("%a: f16 0x%04x bf16 0x%04x f32 0x%08x, expected 0x%04x 0x%04x 0x%08x",
			     (double)v[i].f, hh, bb, ff, v[i].h, v[i].b, (unsigned)fb);
			good = 0;
		}
	}
	/* a NaN: ggml's F16 is the quiet NaN with the sign, no payload; BF16
	 * keeps the top of the payload and sets the quiet bit */
	uint32_t nb = 0xffa00001u;
	float nan;
	memcpy(&nan, &nb, 4);
	unsigned char h[2], b[2];
	ggml_quant(DT_F16, &nan, 1, h);
	ggml_quant(DT_BF16, &nan, 1, b);
	if ((h[0] | h[1] << 8) != 0xfe00 || (b[0] | b[1] << 8) != 0xffe0) {
		diag("NaN: f16 0x%04x bf16 0x%04x", h[0] | h[1] << 8, b[0] | b[1] << 8);
		good = 0;
	}
	ok(good, "F16, BF16, F32: ties to even, subnormals, overflow, NaN, as ggml's conversions");
}

/* ---- random rows ---------------------------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15u;
static double urand(void) /* uniform in [0, 1) */
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (double)(rng >> 11) * 0x1p-53;
}
static double grand(void) /* standard normal (Box-Muller) */
{
	double u = urand(), v = urand();
	return sqrt(-2 * log(1 - u)) * cos(2 * M_PI * v);
}

enum dist { D_UNIFORM, D_GAUSS };

static void fill(float *x, size_t n, enum dist d, double scale)
{
	for (size_t i = 0; i < n; i++)
		x[i] = (float)(scale * (d == D_UNIFORM ? 2 * urand() - 1 : grand()));
}

/* ---- 2. round trip ---------------------------------------------------------------------- */

/*
 * The bound of one element's error, from the block it is in (be elements
 * from b): half a quantization step, or a whole one where ggml clamps the
 * end level (Q4_0, Q5_0: the largest magnitude takes level 0 and a value
 * of the other sign as large clamps one step short), plus the F16 rounding
 * of the scales. The K types: one step of the largest sub-block scale
 * plus the six-bit (Q4_K, Q5_K) or eight-bit (Q6_K) rounding of the
 * sub-block scales and offsets, a generous tenth or twentieth of the
 * super-block's range.
 */
static double bound(enum dtype t, const float *b, unsigned be, double x)
{
	double lo = b[0], hi = b[0], amax = 0;
	for (unsigned i = 0; i < be; i++) {
		lo = fmin(lo, b[i]);
		hi = fmax(hi, b[i]);
		amax = fmax(amax, fabs(b[i]));
	}
	const double r = hi - lo, h = 1.0 / 1024;
	switch (t) {
	case DT_F32: return 0;
	case DT_F16: return fabs(x) * h / 2 + 0x1p-25;
	case DT_BF16: return fabs(x) / 256;
	case DT_Q8_0: return amax * (0.5 / 127 + h) + 0x1p-24;
	case DT_Q4_0: return amax * (1.0 / 8 + h) + 0x1p-24;
	case DT_Q5_0: return amax * (1.0 / 16 + h) + 0x1p-24;
	case DT_Q4_1: return r * (1.0 / 30 + h) + fabs(lo) * h + 0x1p-24;
	case DT_Q5_1: return r * (1.0 / 62 + h) + fabs(lo) * h + 0x1p-24;
	case DT_Q4_K: return r / 10 + 0x1p-20;
	case DT_Q5_K: return r / 20 + 0x1p-20;
	case DT_Q6_K: return amax / 20 + 0x1p-20;
	default: return 0;
	}
}

#define RT_N 16384

static void t_round_trip(void)
{
	static float x[RT_N], y[RT_N];
	static unsigned char enc[RT_N * 4];
	static const double scales[] = {0.02, 1, 100};
	static const char *dname[] = {"uniform", "gaussian"};
	diag("round trip: RMS error / RMS of the data (max error / max |x|), %d elements each", RT_N);
	for (size_t ti = 0; ti < NW; ti++) {
		const enum dtype t = wtypes[ti];
		const unsigned be = dtype_table[t].block_elems;
		char line[512];
		int len = snprintf(line, sizeof(line), "%-5s", dtype_name(t)), good = 1;
		for (int d = 0; d <= 1; d++)
			for (size_t si = 0; si < sizeof(scales) / sizeof(scales[0]); si++) {
				fill(x, RT_N, (enum dist)d, scales[si]);
				ggml_quant(t, x, RT_N / be, enc);
				if (t == DT_F32)
					memcpy(y, enc, sizeof(y));
				else if (t == DT_F16 || t == DT_BF16)
					for (size_t i = 0; i < RT_N; i++) {
						uint32_t u = (uint32_t)(enc[2 * i] | enc[2 * i + 1] << 8);
						if (t == DT_BF16) {
							u <<= 16;
							memcpy(&y[i], &u, 4);
						} else {
							y[i] = ggml_f16_to_f32((uint16_t)u);
						}
					}
				else
					ggml_dequant(t, enc, RT_N / be, y);
				double se = 0, sx = 0, emax = 0, xmax = 0;
				for (size_t i = 0; i < RT_N; i++) {
					const double e = fabs((double)y[i] - x[i]);
					se += e * e;
					sx += (double)x[i] * x[i];
					emax = fmax(emax, e);
					xmax = fmax(xmax, fabs(x[i]));
					const float *blk = x + i / be * be;
					if (!(e <= bound(t, blk, be, x[i])) && good) {
						diag("%s %s scale %g: element %zu is %.9g for %.9g, error %.3g above %.3g",
						     dtype_name(t), dname[d], scales[si], i, (double)y[i], (double)x[i], e,
						     bound(t, blk, be, x[i]));
						good = 0;
					}
				}
				if (si == 1 || si == 0)
					len += snprintf(line + len, sizeof(line) - (size_t)len, " %s%s %.3e (%.2e)",
					                dname[d], si ? "" : "/0.02", sqrt(se / sx), emax / xmax);
			}
		diag("%s", line);
		ok(good, "%s: decode(encode(x)) within the type's bound, uniform and gaussian, scales 0.02, 1, 100",
		   dtype_name(t));
	}
}

/* ---- 3. against ggml itself ---------------------------------------------------------------- */

typedef size_t (*quantize_chunk_fn)(int type, const float *src, void *dst, int64_t start, int64_t nrows,
                                    int64_t n_per_row, const float *imatrix);

/* ggml's enum ggml_type (ggml.h): the values are part of the GGUF format */
static int ggml_type_of(enum dtype t)
{
	switch (t) {
	case DT_F32: return 0;
	case DT_F16: return 1;
	case DT_Q4_0: return 2;
	case DT_Q4_1: return 3;
	case DT_Q5_0: return 6;
	case DT_Q5_1: return 7;
	case DT_Q8_0: return 8;
	case DT_Q4_K: return 12;
	case DT_Q5_K: return 13;
	case DT_Q6_K: return 14;
	case DT_BF16: return 30;
	default: return -1;
	}
}

/* libggml-base.so: $LINES_GGML_LIB, else in the npm packages t-llama.sh
 * uses ($LINES_NODE_MODULES, or the build tree's tests/node-deps, which
 * t-llama.sh installs), else a tests/node/node_modules of the source or
 * build tree. */
static void *open_ggml(char *why, size_t whylen)
{
	const char *env = getenv("LINES_GGML_LIB");
	char pat[4096];
	void *h;
	if (env && *env) {
		h = dlopen(env, RTLD_NOW | RTLD_LOCAL);
		if (!h)
			snprintf(why, whylen, "LINES_GGML_LIB=%s: %s", env, dlerror());
		return h;
	}
	const struct {
		const char *root, *sub;
	} where[] = {
	    {getenv("LINES_NODE_MODULES"), ""},
	    {getenv("LINES_BUILDDIR"), "/tests/node-deps/node_modules"},
	    {getenv("TESTS_SRCDIR"), "/node/node_modules"},
	    {getenv("LINES_BUILDDIR"), "/tests/node/node_modules"},
	};
	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		if (!where[i].root || !*where[i].root)
			continue;
		snprintf(pat, sizeof(pat), "%s%s/@node-llama-cpp/linux-x64/bins/*/libggml-base.so", where[i].root,
		         where[i].sub);
		glob_t g;
		if (glob(pat, 0, NULL, &g) == 0) {
			h = dlopen(g.gl_pathv[0], RTLD_NOW | RTLD_LOCAL);
			if (!h)
				snprintf(why, whylen, "%s: %s", g.gl_pathv[0], dlerror());
			globfree(&g);
			return h;
		}
	}
	snprintf(why, whylen,
	         "ggml not found: set LINES_GGML_LIB to libggml-base.so or LINES_NODE_MODULES to where "
	         "@node-llama-cpp/linux-x64@3.21.1 is installed (.ci/run does; t-llama.sh installs it)");
	return NULL;
}

#define GG_ROWS 32
#define GG_N 4096

/* Row r of the comparison set: typical, skewed, degenerate and extreme
 * data (all finite). */
static void gg_row(float *x, int r)
{
	static const double big[] = {1e-17, 1e-10, 1e-6, 3e4, 1e7, 1e15};
	switch (r) {
	case 0: fill(x, GG_N, D_UNIFORM, 1); break;
	case 1: fill(x, GG_N, D_GAUSS, 0.02); break;
	case 2: fill(x, GG_N, D_GAUSS, 100); break;
	case 3: /* all positive */
		for (int i = 0; i < GG_N; i++)
			x[i] = (float)(0.5 + urand());
		break;
	case 4: /* all negative */
		for (int i = 0; i < GG_N; i++)
			x[i] = (float)(-0.5 - urand());
		break;
	case 5: /* sparse: nine in ten zero */
		for (int i = 0; i < GG_N; i++)
			x[i] = urand() < 0.9 ? 0.0f : (float)grand();
		break;
	case 6: /* heavy tails */
		for (int i = 0; i < GG_N; i++) {
			double g = grand();
			x[i] = (float)(g * g * g);
		}
		break;
	case 7: /* small integers: ties everywhere */
		for (int i = 0; i < GG_N; i++)
			x[i] = (float)((int)(urand() * 17) - 8);
		break;
	case 8: /* constant blocks of 32 */
		for (int i = 0; i < GG_N; i++)
			x[i] = (float)((i / 32) % 5 - 2) * 0.375f;
		break;
	case 9: /* zero sub-blocks among gaussian ones */
		fill(x, GG_N, D_GAUSS, 1);
		for (int i = 0; i < GG_N; i++)
			if ((i / 16) % 3 == 1 || (i / 256) % 4 == 1)
				x[i] = 0;
		break;
	case 10: /* one outlier per 256 */
		fill(x, GG_N, D_GAUSS, 0.01);
		for (int i = 0; i < GG_N; i += 256)
			x[i + (i / 256) * 37 % 256] = (float)(i % 512 ? 5 : -50);
		break;
	case 11: /* values already on a half grid */
		fill(x, GG_N, D_GAUSS, 1);
		for (int i = 0; i < GG_N; i++)
			x[i] = ggml_f16_to_f32(ggml_f32_to_f16(x[i]));
		break;
	case 12: /* integers in [-7, 8]: exact 4-bit grids, the fits tie */
	case 13: /* in [0, 31]: exact 5-bit grids */
	case 14: /* in [-32, 31]: exact 6-bit grids */
	case 15: /* in [-3, 3]: few distinct values */
		for (int i = 0; i < GG_N; i++) {
			static const int lo[] = {-7, 0, -32, -3}, n[] = {16, 32, 64, 7};
			x[i] = (float)(lo[r - 12] + (int)(urand() * n[r - 12])) * 0.125f;
		}
		break;
	case 28: /* NaNs here and there (a block of them too) */
	case 29: /* infinities */
		fill(x, GG_N, D_GAUSS, 1);
		for (int i = 0; i < GG_N; i += 97)
			x[i] = r == 28 ? NAN : i % 2 ? INFINITY : -INFINITY;
		for (int i = 512; i < 512 + 256; i++)
			x[i] = r == 28 ? NAN : INFINITY;
		break;
	case 30: /* float32 subnormals: 1/d overflows */
		fill(x, GG_N, D_GAUSS, 1e-40);
		break;
	case 31: /* near FLT_MAX: sums of squares overflow */
		fill(x, GG_N, D_UNIFORM, 3e38);
		break;
	default: /* extreme scales: F16 subnormal and overflowing scales */
		fill(x, GG_N, r % 2 ? D_GAUSS : D_UNIFORM, big[(r - 16) % 6]);
		break;
	}
}

/* Decoding, the other way: ggml's dequantize_row_* and ggml_dequant()
 * on blocks of random bytes (scales of every F16 value, infinities and
 * NaNs included) give the same floats, NaN for NaN. */
typedef void (*dequant_fn)(const void *x, float *y, int64_t k);

static void t_ggml_decode(void *h)
{
	static const struct {
		enum dtype t;
		const char *sym;
	} dq[] = {
	    {DT_Q4_0, "dequantize_row_q4_0"}, {DT_Q4_1, "dequantize_row_q4_1"},
	    {DT_Q5_0, "dequantize_row_q5_0"}, {DT_Q5_1, "dequantize_row_q5_1"},
	    {DT_Q8_0, "dequantize_row_q8_0"}, {DT_Q2_K, "dequantize_row_q2_K"},
	    {DT_Q3_K, "dequantize_row_q3_K"}, {DT_Q4_K, "dequantize_row_q4_K"},
	    {DT_Q5_K, "dequantize_row_q5_K"}, {DT_Q6_K, "dequantize_row_q6_K"},
	    {DT_Q8_K, "dequantize_row_q8_K"},
	};
	enum { NB = 64 };
	static unsigned char blk[NB * 292];
	static float a[NB * QK_K], b[NB * QK_K];
	for (size_t i = 0; i < sizeof(dq) / sizeof(dq[0]); i++) {
		dequant_fn fn = (dequant_fn)(uintptr_t)dlsym(h, dq[i].sym);
		if (!fn) {
			skip("%s: no %s in ggml", dtype_name(dq[i].t), dq[i].sym);
			continue;
		}
		const unsigned be = dtype_table[dq[i].t].block_elems;
		for (size_t k = 0; k < sizeof(blk); k++)
			blk[k] = (unsigned char)(urand() * 256);
		fn(blk, a, (int64_t)NB * be);
		ggml_dequant(dq[i].t, blk, NB, b);
		size_t bad = 0;
		for (size_t k = 0; k < (size_t)NB * be; k++)
			if (!(isnan(a[k]) ? isnan(b[k]) : memcmp(&a[k], &b[k], 4) == 0) && bad++ == 0)
				diag("%s element %zu: %a, ggml %a", dtype_name(dq[i].t), k, (double)b[k], (double)a[k]);
		ok(!bad, "%s: ggml_dequant() as ggml's %s on %d random blocks", dtype_name(dq[i].t), dq[i].sym, NB);
	}
}

static void t_ggml(void)
{
	char why[8192];
	void *h = open_ggml(why, sizeof(why));
	if (!h) {
		skip("bit-exactness against ggml: %s", why);
		return;
	}
	quantize_chunk_fn qc = (quantize_chunk_fn)(uintptr_t)dlsym(h, "ggml_quantize_chunk");
	if (!qc) {
		skip("bit-exactness against ggml: no ggml_quantize_chunk in the library");
		dlclose(h);
		return;
	}
	static float x[GG_ROWS * GG_N];
	static unsigned char a[GG_ROWS * GG_N * 4], b[GG_ROWS * GG_N * 4];
	for (int r = 0; r < GG_ROWS; r++)
		gg_row(x + (size_t)r * GG_N, r);
	for (size_t ti = 0; ti < NW; ti++) {
		const enum dtype t = wtypes[ti];
		const unsigned be = dtype_table[t].block_elems, bb = dtype_table[t].block_bytes;
		const size_t rowbytes = GG_N / be * bb;
		memset(a, 0, sizeof(a));
		memset(b, 0x5a, sizeof(b));
		size_t n = qc(ggml_type_of(t), x, a, 0, GG_ROWS, GG_N, NULL);
		ggml_quant(t, x, (size_t)GG_ROWS * GG_N / be, b);
		int good = n == rowbytes * GG_ROWS, bad_rows = 0;
		if (!good)
			diag("%s: ggml wrote %zu bytes, expected %zu", dtype_name(t), n, rowbytes * GG_ROWS);
		for (int r = 0; good && r < GG_ROWS; r++) {
			const unsigned char *pa = a + r * rowbytes, *pb = b + r * rowbytes;
			if (memcmp(pa, pb, rowbytes) == 0)
				continue;
			size_t i = 0;
			while (pa[i] == pb[i])
				i++;
			diag("%s row %d: block %zu byte %zu is 0x%02x, ggml wrote 0x%02x", dtype_name(t), r,
			     i / bb, i % bb, pb[i], pa[i]);
			bad_rows++;
		}
		ok(good && !bad_rows, "%s: the bytes of ggml_quantize_chunk() on %d rows of %d (%d differ)",
		   dtype_name(t), GG_ROWS, GG_N, bad_rows);
	}
	t_ggml_decode(h);
	dlclose(h);
}

/* Every kernel set this build and CPU have gives the scalar code's bytes
 * (the Q4_K/Q5_K sub-block fit has an AVX2 kernel), on the rows of the
 * ggml comparison. */
static void t_isa(void)
{
	static const char *const isa[] = {"avx2", "avx512", "neon"};
	static float x[GG_ROWS * GG_N];
	static unsigned char a[GG_ROWS * GG_N * 4], b[GG_ROWS * GG_N * 4];
	for (int r = 0; r < GG_ROWS; r++)
		gg_row(x + (size_t)r * GG_N, r);
	/* a digest of the scalar code's bytes: the same on every machine
	 * (compare a cross build's under qemu with the native one's) */
	char line[512];
	int len = snprintf(line, sizeof(line), "digests (FNV-1a) of the comparison rows:");
	for (size_t ti = 0; ti < NW; ti++) {
		const enum dtype t = wtypes[ti];
		const size_t nb = (size_t)GG_ROWS * GG_N / dtype_table[t].block_elems;
		uint64_t hsh = 0xcbf29ce484222325u;
		ggml_quant_with(NULL, t, x, nb, a);
		for (size_t i = 0; i < nb * dtype_table[t].block_bytes; i++)
			hsh = (hsh ^ a[i]) * 0x100000001b3u;
		len += snprintf(line + len, sizeof(line) - (size_t)len, " %s %08x", dtype_name(t), (unsigned)(hsh >> 32));
	}
	diag("%s", line);
	for (size_t s = 0; s < sizeof(isa) / sizeof(isa[0]); s++) {
		const struct kern *k = kern_by_name(isa[s]);
		if (!k) {
			skip("%s kernels: not in this build or not on this CPU", isa[s]);
			continue;
		}
		int bad = 0;
		for (size_t ti = 0; ti < NW; ti++) {
			const enum dtype t = wtypes[ti];
			const size_t nb = (size_t)GG_ROWS * GG_N / dtype_table[t].block_elems;
			ggml_quant_with(NULL, t, x, nb, a);
			ggml_quant_with(k, t, x, nb, b);
			if (memcmp(a, b, nb * dtype_table[t].block_bytes) != 0) {
				diag("%s: the %s kernels write other bytes than the scalar code", dtype_name(t), isa[s]);
				bad++;
			}
		}
		ok(!bad, "%s kernels: the scalar code's bytes for every writable type (%d differ)", isa[s], bad);
	}
}

int main(void)
{
	for (size_t i = 0; i < NW; i++)
		ok(ggml_quant_writable(wtypes[i]), "%s is writable", dtype_name(wtypes[i]));
	ok(!ggml_quant_writable(DT_Q2_K) && !ggml_quant_writable(DT_Q3_K) && !ggml_quant_writable(DT_Q8_K) &&
	       !ggml_quant_writable(DT_F64) && !ggml_quant_writable(DT_I8),
	   "Q2_K, Q3_K, Q8_K, F64, I8 are not");
	t_elements();
	t_hand_32();
	t_hand_k();
	t_round_trip();
	t_isa();
	t_ggml();
	return tap_done();
}
