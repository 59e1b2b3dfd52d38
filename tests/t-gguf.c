/*
 * t-gguf.c -- GGUF (issue 17): ggml's block types decoded exactly, and the
 * reader's view of a file built by hand.
 *
 * Dequantization: for every block type the test picks the quants q of
 * every element and the scales, packs them into the block from the
 * layouts of ggml-common.h (the inverse of decoding, written here from the
 * layout, not from lines' decoder), and expects each element's value from
 * the type's definition, computed in double:
 *     Q4_0 (q - 8) d   Q4_1 q d + m   Q5_0 (q - 16) d   Q5_1 q d + m   Q8_0 q d
 *     Q2_K d sc q - dmin m   Q3_K d (s - 32) q   Q4_K/Q5_K d sc q - dmin m
 *     Q6_K d s (q - 32)   Q8_K d q
 * The values are chosen so that every product is exact in float32; the
 * scales include the edges of F16 (65504, the smallest subnormal 2^-24,
 * negative, zero, infinity) where the value follows IEEE arithmetic
 * (inf * 0 is NaN).
 *
 * GGUF output: a family of GGUF inputs of several types merged into GGUF
 * (F32, F16, the base's types, Q8_0 ... Q6_K), read back by the test's own
 * GGUF reader: the layout (the base's tensors in its order, each at the
 * alignment), every element of a float output within 1 ULP of the
 * float64 reference, every block-type tensor exactly ggml_quant of the
 * F32 output's rows (itself checked against the reference), the types
 * chosen (1-D: the base's; rows not whole blocks: F32), the same bytes
 * for every -j, --chunk, --io and instruction set.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ggml_quants.h"
#include "gguf-write.h"
#include "lines.h"
#include "tap.h"
#include "tutil.h"

#define QK_K 256

/* F16 bits of some exact values */
#define H_ONE 0x3c00
#define H_MAX 0x7bff  /* 65504 */
#define H_TINY 0x0001 /* 2^-24 */
#define H_NEG2 0xc000 /* -2 */
#define H_ZERO 0x0000
#define H_NZERO 0x8000
#define H_INF 0x7c00
#define H_HALF 0x3800 /* 0.5 */
#define H_QUARTER 0x3400

static double h2d(uint16_t h)
{
	unsigned e = (h >> 10) & 31, m = h & 1023;
	double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, (int)e - 25);
	return h & 0x8000 ? -v : v;
}

static void put16(unsigned char *p, uint16_t v) { p[0] = v & 255, p[1] = v >> 8; }

/* Compare decoded floats with the expected doubles (NaN matches NaN). */
static int same(const float *got, const double *want, size_t n, const char *what)
{
	for (size_t i = 0; i < n; i++) {
		float w = (float)want[i];
		int ok = (isnan(w) && isnan(got[i])) || (w == got[i] && !signbit(w) == !signbit(got[i]));
		if (!ok) {
			tap_diag("%s: element %zu is %.9g, expected %.9g", what, i, (double)got[i], want[i]);
			return 0;
		}
	}
	return 1;
}

/* A pseudo-random integer in [lo, hi]. */
static uint32_t rs = 12345;
static int rnd(int lo, int hi)
{
	rs = rs * 1103515245u + 12345u;
	return lo + (int)((rs >> 8) % (uint32_t)(hi - lo + 1));
}

/* ---- blocks of 32 -------------------------------------------------------------------- */
static void t_q4_0(uint16_t d)
{
	unsigned char b[2 * 18];
	int q[64];
	double want[64];
	float got[64];
	for (int blk = 0; blk < 2; blk++) {
		unsigned char *p = b + 18 * blk;
		put16(p, d);
		for (int j = 0; j < 32; j++)
			q[32 * blk + j] = rnd(0, 15);
		q[32 * blk] = 0, q[32 * blk + 31] = 15;
		for (int j = 0; j < 16; j++)
			p[2 + j] = (unsigned char)(q[32 * blk + j] | q[32 * blk + j + 16] << 4);
		for (int j = 0; j < 32; j++)
			want[32 * blk + j] = (q[32 * blk + j] - 8) * h2d(d);
	}
	ggml_dequant(DT_Q4_0, b, 2, got);
	tap_ok(same(got, want, 64, "Q4_0"), "Q4_0 with d = %.9g: every element (q - 8) d", h2d(d));
}

static void t_q4_1(uint16_t d, uint16_t m)
{
	unsigned char b[20];
	int q[32];
	double want[32];
	float got[32];
	put16(b, d), put16(b + 2, m);
	for (int j = 0; j < 32; j++)
		q[j] = j < 16 ? j : 31 - j;
	for (int j = 0; j < 16; j++)
		b[4 + j] = (unsigned char)(q[j] | q[j + 16] << 4);
	for (int j = 0; j < 32; j++)
		want[j] = q[j] * h2d(d) + h2d(m);
	ggml_dequant(DT_Q4_1, b, 1, got);
	tap_ok(same(got, want, 32, "Q4_1"), "Q4_1 with d = %.9g, m = %.9g: q d + m", h2d(d), h2d(m));
}

static void t_q5(int one, uint16_t d, uint16_t m)
{
	unsigned char b[2 * 24];
	const unsigned bb = one ? 24 : 22;
	int q[64];
	double want[64];
	float got[64];
	memset(b, 0, sizeof(b));
	for (int blk = 0; blk < 2; blk++) {
		unsigned char *p = b + bb * blk, *qh = p + (one ? 4 : 2), *qs = qh + 4;
		uint32_t h = 0;
		put16(p, d);
		if (one)
			put16(p + 2, m);
		for (int j = 0; j < 32; j++)
			q[32 * blk + j] = rnd(0, 31);
		q[32 * blk + 3] = 31, q[32 * blk + 20] = 16, q[32 * blk + 21] = 0;
		for (int j = 0; j < 32; j++)
			h |= (uint32_t)(q[32 * blk + j] >> 4) << j;
		for (int k = 0; k < 4; k++)
			qh[k] = (unsigned char)(h >> (8 * k));
		for (int j = 0; j < 16; j++)
			qs[j] = (unsigned char)((q[32 * blk + j] & 15) | (q[32 * blk + j + 16] & 15) << 4);
		for (int j = 0; j < 32; j++)
			want[32 * blk + j] = one ? q[32 * blk + j] * h2d(d) + h2d(m)
			                         : (q[32 * blk + j] - 16) * h2d(d);
	}
	ggml_dequant(one ? DT_Q5_1 : DT_Q5_0, b, 2, got);
	tap_ok(same(got, want, 64, one ? "Q5_1" : "Q5_0"), "%s with d = %.9g%s: every element",
	       one ? "Q5_1" : "Q5_0", h2d(d), one ? " and an offset" : "");
}

static void t_q8_0(uint16_t d)
{
	unsigned char b[2 * 34];
	double want[64];
	float got[64];
	for (int blk = 0; blk < 2; blk++) {
		put16(b + 34 * blk, d);
		for (int j = 0; j < 32; j++) {
			int q = j == 0 ? -128 : j == 1 ? 127 : j == 2 ? 0 : rnd(-128, 127);
			b[34 * blk + 2 + j] = (unsigned char)(int8_t)q;
			want[32 * blk + j] = q * h2d(d);
		}
	}
	ggml_dequant(DT_Q8_0, b, 2, got);
	tap_ok(same(got, want, 64, "Q8_0"), "Q8_0 with d = %.9g: q d (q from -128 to 127)", h2d(d));
}

/* ---- super-blocks of 256 ------------------------------------------------------------- */
static void t_q2_k(uint16_t d, uint16_t dmin)
{
	unsigned char b[84];
	int q[QK_K], sc[16], mn[16];
	double want[QK_K];
	float got[QK_K];
	memset(b, 0, sizeof(b));
	for (int i = 0; i < 16; i++) {
		sc[i] = i == 0 ? 15 : rnd(0, 15), mn[i] = i == 1 ? 15 : rnd(0, 15);
		b[i] = (unsigned char)(sc[i] | mn[i] << 4);
	}
	for (int e = 0; e < QK_K; e++) {
		q[e] = rnd(0, 3);
		int n = e / 128, r = e % 128, j = r / 32, half = (r % 32) / 16, l = r % 16;
		b[16 + n * 32 + half * 16 + l] |= (unsigned char)(q[e] << (2 * j));
		want[e] = h2d(d) * sc[e / 16] * q[e] - h2d(dmin) * mn[e / 16];
	}
	put16(b + 80, d), put16(b + 82, dmin);
	ggml_dequant(DT_Q2_K, b, 1, got);
	tap_ok(same(got, want, QK_K, "Q2_K"), "Q2_K with d = %.9g, dmin = %.9g: d sc q - dmin m",
	       h2d(d), h2d(dmin));
}

static void t_q3_k(uint16_t d)
{
	unsigned char b[110];
	int q[QK_K], s[16];
	double want[QK_K];
	float got[QK_K];
	memset(b, 0, sizeof(b));
	unsigned char *hm = b, *qs = b + 32, *sc = b + 96;
	for (int i = 0; i < 16; i++) { /* as ggml's quantize_row_q3_K_ref packs them */
		s[i] = i == 0 ? 0 : i == 1 ? 63 : i == 2 ? 32 : rnd(0, 63);
		if (i < 8)
			sc[i] = (unsigned char)(s[i] & 15);
		else
			sc[i - 8] |= (unsigned char)((s[i] & 15) << 4);
		sc[8 + i % 4] |= (unsigned char)((s[i] >> 4) << (2 * (i / 4)));
	}
	for (int e = 0; e < QK_K; e++) {
		q[e] = rnd(-4, 3);
		int L = q[e] + 4;
		int n = e / 128, r = e % 128, j = r / 32, half = (r % 32) / 16, l = r % 16;
		qs[n * 32 + half * 16 + l] |= (unsigned char)((L & 3) << (2 * j));
		if (L > 3)
			hm[e % 32] |= (unsigned char)(1 << (e / 32));
		want[e] = h2d(d) * (s[e / 16] - 32) * q[e];
	}
	put16(b + 108, d);
	ggml_dequant(DT_Q3_K, b, 1, got);
	tap_ok(same(got, want, QK_K, "Q3_K"), "Q3_K with d = %.9g: d (s - 32) q, q from -4 to 3",
	       h2d(d));
}

/* The 6-bit scales and mins of Q4_K and Q5_K, as ggml packs them. */
static void pack_k4(unsigned char *scales, const int *ls, const int *lm)
{
	memset(scales, 0, 12);
	for (int j = 0; j < 8; j++) {
		if (j < 4) {
			scales[j] = (unsigned char)ls[j];
			scales[j + 4] = (unsigned char)lm[j];
		} else {
			scales[j + 4] = (unsigned char)((ls[j] & 15) | (lm[j] & 15) << 4);
			scales[j - 4] |= (unsigned char)((ls[j] >> 4) << 6);
			scales[j] |= (unsigned char)((lm[j] >> 4) << 6);
		}
	}
}

static void t_q45_k(int five, uint16_t d, uint16_t dmin)
{
	unsigned char b[176];
	int q[QK_K], ls[8], lm[8];
	double want[QK_K];
	float got[QK_K];
	memset(b, 0, sizeof(b));
	put16(b, d), put16(b + 2, dmin);
	for (int j = 0; j < 8; j++) {
		ls[j] = j == 7 ? 63 : rnd(0, 63);
		lm[j] = j == 6 ? 63 : j == 5 ? 0 : rnd(0, 63);
	}
	pack_k4(b + 4, ls, lm);
	unsigned char *qh = b + 16, *qs = five ? b + 48 : b + 16;
	for (int e = 0; e < QK_K; e++) {
		q[e] = rnd(0, five ? 31 : 15);
		int c = e / 64, r = e % 64, hi = r >= 32, l = r % 32, sb = 2 * c + hi;
		qs[c * 32 + l] |= (unsigned char)((q[e] & 15) << (hi ? 4 : 0));
		if (five && q[e] >= 16)
			qh[l] |= (unsigned char)(1 << (2 * c + hi));
		want[e] = h2d(d) * ls[sb] * q[e] - h2d(dmin) * lm[sb];
	}
	ggml_dequant(five ? DT_Q5_K : DT_Q4_K, b, 1, got);
	tap_ok(same(got, want, QK_K, five ? "Q5_K" : "Q4_K"),
	       "%s with d = %.9g, dmin = %.9g: d sc q - dmin m", five ? "Q5_K" : "Q4_K", h2d(d),
	       h2d(dmin));
}

static void t_q6_k(uint16_t d)
{
	unsigned char b[210];
	int q[QK_K], s[16];
	double want[QK_K];
	float got[QK_K];
	memset(b, 0, sizeof(b));
	unsigned char *ql = b, *qh = b + 128;
	for (int i = 0; i < 16; i++) {
		s[i] = i == 0 ? -128 : i == 1 ? 127 : rnd(-128, 127);
		b[192 + i] = (unsigned char)(int8_t)s[i];
	}
	for (int e = 0; e < QK_K; e++) {
		q[e] = e == 0 ? 0 : e == 1 ? 63 : rnd(0, 63);
		int n = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
		unsigned char *L = ql + 64 * n + l + (quarter & 1 ? 32 : 0);
		*L |= (unsigned char)((q[e] & 15) << (quarter >= 2 ? 4 : 0));
		qh[32 * n + l] |= (unsigned char)((q[e] >> 4) << (2 * quarter));
		want[e] = h2d(d) * s[e / 16] * (q[e] - 32);
	}
	put16(b + 208, d);
	ggml_dequant(DT_Q6_K, b, 1, got);
	tap_ok(same(got, want, QK_K, "Q6_K"), "Q6_K with d = %.9g: d s (q - 32)", h2d(d));
}

static void t_q8_k(float d)
{
	unsigned char b[2 * 292];
	double want[2 * QK_K];
	float got[2 * QK_K];
	uint32_t u;
	memcpy(&u, &d, 4);
	memset(b, 0, sizeof(b));
	for (int blk = 0; blk < 2; blk++) {
		unsigned char *p = b + 292 * blk;
		for (int k = 0; k < 4; k++)
			p[k] = (unsigned char)(u >> (8 * k));
		for (int e = 0; e < QK_K; e++) {
			int q = e == 0 ? -128 : e == 1 ? 127 : rnd(-128, 127);
			p[4 + e] = (unsigned char)(int8_t)q;
			want[QK_K * blk + e] = (double)d * q;
		}
		for (int k = 0; k < 32; k++) /* bsums: not part of the values */
			p[260 + k] = 0xa5;
	}
	ggml_dequant(DT_Q8_K, b, 2, got);
	tap_ok(same(got, want, 2 * QK_K, "Q8_K"), "Q8_K with d = %.9g: d q", (double)d);
}

static void t_f16(void)
{
	static const struct {
		uint16_t h;
		double v;
	} c[] = {{0x0000, 0.0},   {0x8000, -0.0},       {0x3c00, 1.0},          {0xc000, -2.0},
	         {0x7bff, 65504}, {0x0001, 0x1p-24},    {0x03ff, 1023 * 0x1p-24}, {0x0400, 0x1p-14},
	         {0x7c00, INFINITY}, {0xfc00, -INFINITY}, {0x3555, 0x1.554p-2}};
	int bad = 0;
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		float f = ggml_f16_to_f32(c[i].h);
		bad += !(f == (float)c[i].v && !signbit(f) == !signbit(c[i].v));
	}
	bad += !isnan(ggml_f16_to_f32(0x7e00));
	tap_ok(!bad, "F16 scales: zeros, subnormals, the largest, infinities and NaN decode exactly");
}

/* ---- the reader ------------------------------------------------------------------------ */
static void t_reader(void)
{
	char path[] = "/tmp/t-gguf-XXXXXX";
	int fd = mkstemp(path);
	struct gb b;
	struct lines_model *m = NULL;
	struct lines_error err;
	static const uint64_t ne[2] = {64, 3}, ne1[1] = {256};
	if (fd < 0) {
		tap_ok(0, "mkstemp");
		return;
	}
	close(fd);
	gb_init(&b);
	gb_kv_str(&b, "general.architecture", "llama");
	gb_kv_u32(&b, "llama.block_count", 3);
	gb_kv_f32(&b, "llama.rope.freq_base", 10000.0f);
	gb_key(&b, "tokenizer.ggml.tokens", GV_ARRAY), gw_u32(&b.kv, GV_STRING), gw_u64(&b.kv, 2);
	gw_str(&b.kv, "<s>"), gw_str(&b.kv, "a\"b");
	gb_tensor(&b, "token_embd.weight", 2, ne, GT_Q8_0, NULL);
	gb_tensor(&b, "blk.0.attn_norm.weight", 1, ne1, GT_F32, NULL);
	gb_tensor(&b, "blk.1.ffn_down.weight", 2, ne, GT_Q4_0, NULL);
	gb_write(&b, path);
	gb_free(&b);
	int rc = lines_model_open(path, NULL, &m, &err);
	tap_ok(rc == 0, "a GGUF file opens (%s)", rc ? err.msg : "");
	if (rc == 0) {
		struct lines_tensor_info t;
		const char *k, *v;
		tap_ok(lines_model_count(m) == 3, "3 tensors");
		lines_model_tensor(m, 0, &t);
		tap_ok(!strcmp(t.dtype, "Q8_0") && t.rank == 2 && t.shape[0] == 3 && t.shape[1] == 64 &&
		               t.nbytes == 3 * 2 * 34 && t.block < 0,
		       "Q8_0 [64, 3] in ggml's order is shape [3, 64], 204 bytes, outside the blocks");
		lines_model_tensor(m, 2, &t);
		tap_ok(t.block == 1 && t.nbytes == 3 * 2 * 18, "blk.1.ffn_down.weight is in block 1");
		tap_ok(lines_model_num_layers(m) == 3,
		       "L is llama.block_count (3), though block 2 holds no tensor (%ld)",
		       lines_model_num_layers(m));
		lines_model_meta(m, 2, &k, &v);
		tap_ok(!strcmp(k, "llama.rope.freq_base") && !strcmp(v, "10000"), "an f32 reads 10000 (%s)",
		       v);
		lines_model_meta(m, 3, &k, &v);
		tap_ok(!strcmp(v, "[\"<s>\", \"a\\\"b\"]"), "a short array of strings is JSON (%s)", v);
		lines_model_close(m);
	}
	unlink(path);
}


/* ---- merging GGUF into safetensors ------------------------------------------------------- */
/*
 * A family of three GGUF files (a base and two fine-tunes, llama.block_count
 * 3) whose every value the test knows by construction: F32 and F16 values,
 * and for Q8_0, Q4_0 and Q8_K the quants and scales it packs. The second
 * fine-tune stores blk.0's Q8_0 tensors in F16. Three tensors are larger than
 * a job of --chunk 64K, so that jobs start inside them.
 * Each merge's output (safetensors) is compared element by element with
 *     ref = theta_0 + lambda(block) * sum_i w_i (theta_i - theta_0)
 * in float64, within 1 ULP of F32 (the output dtype of a quantized base
 * tensor, and of the F32 one) or F16, plus the float32 rounding of the
 * task vectors (2^-22 of the operands).
 */
#define NMOD 3
struct mt {
	const char *name;
	unsigned type[NMOD]; /* ggml type per model */
	uint64_t ne0, ne1;
	double *v[NMOD];     /* the values, row-major */
	long block;
};

static struct mt fam[] = {
	{"token_embd.weight", {GT_F32, GT_F32, GT_F32}, 64, 5, {0}, -1},
	{"blk.0.attn_norm.weight", {GT_F32, GT_F32, GT_F32}, 64, 1, {0}, 0},
	{"blk.0.attn_q.weight", {GT_Q8_0, GT_Q8_0, GT_F16}, 64, 3, {0}, 0},
	{"blk.1.attn_q.weight", {GT_Q4_0, GT_Q4_0, GT_Q4_0}, 96, 2, {0}, 1},
	{"blk.2.attn_q.weight", {GT_F16, GT_F16, GT_F16}, 64, 2, {0}, 2},
	{"blk.2.ffn_down.weight", {GT_Q8_K, GT_Q8_K, GT_Q8_K}, 256, 2, {0}, 2},
	/* more than one job with --chunk 64K (16384 elements a job) */
	{"blk.1.ffn_up.weight", {GT_Q4_0, GT_Q4_0, GT_Q4_0}, 128, 300, {0}, 1},
	{"blk.2.ffn_up.weight", {GT_Q8_K, GT_Q8_K, GT_Q8_K}, 256, 100, {0}, 2},
	{"blk.0.ffn_up.weight", {GT_Q8_0, GT_Q8_0, GT_F16}, 64, 600, {0}, 0},
};
#define NT (sizeof(fam) / sizeof(fam[0]))

static uint16_t f16_of(double v) /* v exact in F16 and normal, or 0 */
{
	int e;
	double m = frexp(fabs(v), &e); /* v = m 2^e, m in [0.5, 1) */
	if (v == 0)
		return 0;
	uint16_t h = (uint16_t)(((e - 1 + 15) << 10) | (uint16_t)((m * 2 - 1) * 1024));
	return v < 0 ? (uint16_t)(h | 0x8000) : h;
}

/* The bytes of model m's tensor t, its values set as a side effect. */
static unsigned char *mt_bytes(struct mt *t, int m, size_t *len)
{
	const uint64_t n = t->ne0 * t->ne1;
	unsigned char *b = calloc(n * 4 + 64, 1);
	double *v = t->v[m] = calloc(n, sizeof(double));
	static const double ds[] = {0.5, 0.25, 0.125, 0.015625};
	switch (t->type[m]) {
	case GT_F32:
		for (uint64_t e = 0; e < n; e++) {
			float f = (float)rnd(-100000, 100000) / 65536.0f;
			uint32_t u;
			memcpy(&u, &f, 4);
			for (int k = 0; k < 4; k++)
				b[4 * e + k] = (unsigned char)(u >> (8 * k));
			v[e] = f;
		}
		*len = n * 4;
		break;
	case GT_F16:
		for (uint64_t e = 0; e < n; e++) {
			/* a fine-tune of the Q8_0 tensor: values of the base's form */
			double x = t->type[0] == GT_Q8_0 ? rnd(-128, 127) * 0.125 : rnd(-512, 512) / 256.0;
			put16(b + 2 * e, f16_of(x));
			v[e] = x;
		}
		*len = n * 2;
		break;
	case GT_Q8_0:
	case GT_Q4_0:
		for (uint64_t k = 0; k < n / 32; k++) {
			int q8 = t->type[m] == GT_Q8_0;
			unsigned char *p = b + k * (q8 ? 34 : 18);
			double d = q8 ? 0.125 : ds[rnd(0, 3)];
			put16(p, f16_of(d));
			for (int j = 0; j < 32; j++) {
				int q = q8 ? rnd(-128, 127) : rnd(0, 15);
				if (q8)
					p[2 + j] = (unsigned char)(int8_t)q;
				else
					p[2 + j % 16] |= (unsigned char)(q << (j < 16 ? 0 : 4));
				v[32 * k + j] = q8 ? q * d : (q - 8) * d;
			}
		}
		*len = n / 32 * (t->type[m] == GT_Q8_0 ? 34 : 18);
		break;
	case GT_Q8_K:
		for (uint64_t k = 0; k < n / 256; k++) {
			unsigned char *p = b + k * 292;
			float d = (float)ds[rnd(0, 3)];
			uint32_t u;
			memcpy(&u, &d, 4);
			for (int i = 0; i < 4; i++)
				p[i] = (unsigned char)(u >> (8 * i));
			for (int j = 0; j < 256; j++) {
				int q = rnd(-128, 127);
				p[4 + j] = (unsigned char)(int8_t)q;
				v[256 * k + j] = q * (double)d;
			}
		}
		*len = n / 256 * 292;
		break;
	}
	return b;
}

static int write_family(const char *dir)
{
	static const char *const who[NMOD] = {"base", "ft1", "ft2"};
	char path[4200];
	for (int m = 0; m < NMOD; m++) {
		struct gb b;
		gb_init(&b);
		gb_kv_str(&b, "general.architecture", "llama");
		gb_kv_u32(&b, "llama.block_count", 3);
		gb_key(&b, "tokenizer.ggml.tokens", GV_ARRAY), gw_u32(&b.kv, GV_STRING), gw_u64(&b.kv, 20);
		for (int i = 0; i < 20; i++)
			gw_str(&b.kv, "tok");
		for (size_t i = 0; i < NT; i++) {
			size_t len;
			const uint64_t ne[2] = {fam[i].ne0, fam[i].ne1};
			unsigned char *data = mt_bytes(&fam[i], m, &len);
			gb_tensor(&b, fam[i].name, fam[i].ne1 > 1 ? 2 : 1, ne, fam[i].type[m], data);
			free(data);
		}
		snprintf(path, sizeof(path), "%s/%s.gguf", dir, who[m]);
		if (gb_write(&b, path) < 0)
			return -1;
		gb_free(&b);
	}
	return 0;
}

static void check_merge(const char *dir, const char *what, const char *args, double w1, double w2,
                        double alpha, double beta)
{
	char out[4300];
	struct tu_model o;
	snprintf(out, sizeof(out), "%s/out-%d.safetensors", dir, tap_n);
	int rc = tu_run("'%s' merge -q -b '%s/base.gguf' %s -o '%s' '%s/ft1.gguf' '%s/ft2.gguf'",
	                tu_lines(), dir, args, out, dir, dir);
	if (!tap_ok(rc == 0, "%s: lines merge of GGUF into safetensors exits 0", what)) {
		tap_diag("%s", tu_stderr);
		return;
	}
	if (!tap_ok(tu_model_load(&o, out) == 0, "%s: read the output", what))
		return;
	uint64_t n = 0, bad = 0, dts = 0;
	for (size_t i = 0; i < NT; i++) {
		const struct tu_tensor *ot = tu_model_find(&o, fam[i].name);
		const char *want = fam[i].type[0] == GT_F16 ? "F16" : "F32";
		if (!ot || ot->nelem != fam[i].ne0 * fam[i].ne1) {
			bad++;
			continue;
		}
		dts += !strcmp(ot->dtype, want) && ot->shape[ot->rank - 1] == fam[i].ne0;
		double lambda = fam[i].block < 0 ? alpha : alpha + beta * fam[i].block / 2.0;
		for (uint64_t e = 0; e < ot->nelem; e++) {
			double b0 = fam[i].v[0][e], x1 = fam[i].v[1][e], x2 = fam[i].v[2][e];
			double ref = b0 + lambda * (w1 * (x1 - b0) + w2 * (x2 - b0)), got = tu_elem64(ot, e);
			double slack = 0x1p-22 * (fabs(b0) + fabs(lambda) * (fabs(w1) * (fabs(x1) + fabs(b0)) +
			                                                     fabs(w2) * (fabs(x2) + fabs(b0))));
			if (!(fabs(got - ref) <= tu_ulp(ot->dtype, ref) + slack)) {
				if (bad++ < 3)
					tap_diag("%s[%llu]: %.9g, expected %.9g", fam[i].name,
					         (unsigned long long)e, got, ref);
			}
			n++;
		}
	}
	tap_ok(bad == 0 && n > 0, "%s: %llu elements within 1 ULP of the float64 reference", what,
	       (unsigned long long)n);
	tap_ok(dts == NT, "%s: quantized base tensors are F32, the others keep their type, shapes "
	       "row-major (%llu of %zu)", what, (unsigned long long)dts, NT);
	tap_ok(!tu_model_meta(&o, "tokenizer.ggml.tokens") &&
	               tu_model_meta(&o, "llama.block_count") &&
	               !strcmp(tu_model_meta(&o, "llama.block_count"), "3"),
	       "%s: the base's metadata is kept, less the arrays too long to show", what);
	tu_model_free(&o);
}

/* ---- GGUF output, read back by the test's own reader ----------------------------------- */
struct og_t {
	char name[64];
	unsigned nd;
	uint64_t ne[4];
	uint32_t type;
	uint64_t off;
};
struct og {
	unsigned char *buf;
	size_t len;
	size_t nt;
	struct og_t t[64];
	uint64_t align, data;
	char method[32]; /* lines.method */
};

static uint64_t le_at(const unsigned char *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = n; i-- > 0;)
		v = v << 8 | p[i];
	return v;
}

/* Skip a value of type ty at *pos (the value types of gguf.md). */
static int og_skip(const struct og *g, size_t *pos, uint32_t ty)
{
	static const unsigned sz[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
	if (ty > 12)
		return -1;
	if (ty == 8) {
		if (*pos + 8 > g->len)
			return -1;
		*pos += 8 + le_at(g->buf + *pos, 8);
	} else if (ty == 9) {
		if (*pos + 12 > g->len)
			return -1;
		uint32_t et = (uint32_t)le_at(g->buf + *pos, 4);
		uint64_t n = le_at(g->buf + *pos + 4, 8);
		*pos += 12;
		for (uint64_t i = 0; i < n; i++)
			if (og_skip(g, pos, et) < 0)
				return -1;
	} else {
		*pos += sz[ty];
	}
	return *pos <= g->len ? 0 : -1;
}

static int og_load(struct og *g, const char *path)
{
	FILE *f = fopen(path, "rb");
	size_t pos = 24;
	memset(g, 0, sizeof(*g));
	g->align = 32;
	if (!f)
		return -1;
	fseek(f, 0, SEEK_END);
	g->len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	g->buf = malloc(g->len + 1);
	if (!g->buf || fread(g->buf, 1, g->len, f) != g->len || g->len < 24 ||
	    memcmp(g->buf, "GGUF", 4) || le_at(g->buf + 4, 4) != 3) {
		fclose(f);
		return -1;
	}
	fclose(f);
	uint64_t nt = le_at(g->buf + 8, 8), nkv = le_at(g->buf + 16, 8);
	if (nt > 64)
		return -1;
	for (uint64_t i = 0; i < nkv; i++) {
		uint64_t kl = le_at(g->buf + pos, 8);
		const char *key = (const char *)g->buf + pos + 8;
		pos += 8 + kl;
		uint32_t ty = (uint32_t)le_at(g->buf + pos, 4);
		pos += 4;
		if (kl == 17 && !memcmp(key, "general.alignment", 17) && ty == 4)
			g->align = le_at(g->buf + pos, 4);
		if (kl == 12 && !memcmp(key, "lines.method", 12) && ty == 8)
			snprintf(g->method, sizeof(g->method), "%.*s", (int)le_at(g->buf + pos, 8),
			         (const char *)g->buf + pos + 8);
		if (og_skip(g, &pos, ty) < 0)
			return -1;
	}
	for (uint64_t i = 0; i < nt; i++) {
		struct og_t *t = &g->t[i];
		uint64_t nl = le_at(g->buf + pos, 8);
		if (nl >= sizeof(t->name))
			return -1;
		memcpy(t->name, g->buf + pos + 8, nl);
		pos += 8 + nl;
		t->nd = (unsigned)le_at(g->buf + pos, 4);
		pos += 4;
		for (unsigned k = 0; k < t->nd && k < 4; k++, pos += 8)
			t->ne[k] = le_at(g->buf + pos, 8);
		t->type = (uint32_t)le_at(g->buf + pos, 4);
		t->off = le_at(g->buf + pos + 4, 8);
		pos += 12;
	}
	g->nt = nt;
	g->data = (pos + g->align - 1) / g->align * g->align;
	return 0;
}

/* ggml's type id -> lines' dtype, elements and bytes per block */
static int og_type(uint32_t id, enum dtype *d, unsigned *be, unsigned *bb)
{
	static const struct {
		uint32_t id;
		enum dtype d;
		unsigned be, bb;
	} ty[] = {{0, DT_F32, 1, 4},     {1, DT_F16, 1, 2},      {30, DT_BF16, 1, 2},
	          {2, DT_Q4_0, 32, 18},  {3, DT_Q4_1, 32, 20},   {6, DT_Q5_0, 32, 22},
	          {7, DT_Q5_1, 32, 24},  {8, DT_Q8_0, 32, 34},   {12, DT_Q4_K, 256, 144},
	          {13, DT_Q5_K, 256, 176}, {14, DT_Q6_K, 256, 210}};
	for (size_t i = 0; i < sizeof(ty) / sizeof(ty[0]); i++)
		if (ty[i].id == id) {
			*d = ty[i].d, *be = ty[i].be, *bb = ty[i].bb;
			return 0;
		}
	return -1;
}

static uint64_t og_nelem(const struct og_t *t)
{
	uint64_t n = 1;
	for (unsigned k = 0; k < t->nd; k++)
		n *= t->ne[k];
	return n;
}

/* Element e of a float tensor, decoded by the test (F32, F16, BF16). */
static double og_elem(const struct og *g, const struct og_t *t, uint64_t e)
{
	const unsigned char *p = g->buf + g->data + t->off;
	if (t->type == 0) {
		uint32_t u = (uint32_t)le_at(p + 4 * e, 4);
		float f;
		memcpy(&f, &u, 4);
		return f;
	}
	if (t->type == 1)
		return h2d((uint16_t)le_at(p + 2 * e, 2));
	uint32_t u = (uint32_t)le_at(p + 2 * e, 2) << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

/* The layout: the base's tensors in its order, at the alignment, packed,
 * the file ending with the last one's padding. */
static int og_layout_ok(const struct og *g)
{
	uint64_t expect = 0;
	if (g->nt != NT)
		return 0;
	for (size_t i = 0; i < g->nt; i++) {
		const struct og_t *t = &g->t[i];
		enum dtype d;
		unsigned be, bb;
		if (strcmp(t->name, fam[i].name) || t->ne[0] != fam[i].ne0 ||
		    og_type(t->type, &d, &be, &bb) < 0 || t->off != expect || og_nelem(t) % be)
			return 0;
		expect = (t->off + og_nelem(t) / be * bb + g->align - 1) / g->align * g->align;
	}
	return g->data + expect == g->len;
}

/*
 * lines merge ARGS of the family into a GGUF of --dtype DT. Float
 * outputs: every element within 1 ULP of its type of the float64
 * reference (dequantize, merge, round), as check_merge. A block type:
 * every tensor's bytes are exactly ggml_quant of the rows of the same
 * merge written in F32 (f32, checked against the reference first), the
 * tensors whose rows are not whole blocks, and the 1-D ones, F32.
 */
static void check_gguf_out(const char *dir, const char *what, const char *args, const char *dt,
                           const struct og *f32, double w1, double w2, double alpha, double beta,
                           struct og *keep)
{
	char out[4300];
	struct og g;
	snprintf(out, sizeof(out), "%s/g-%d.gguf", dir, tap_n);
	int rc = tu_run("'%s' merge -q -b '%s/base.gguf' %s%s%s -o '%s' '%s/ft1.gguf' '%s/ft2.gguf'",
	                tu_lines(), dir, args, dt ? " --dtype " : "", dt ? dt : "", out, dir, dir);
	if (!tap_ok(rc == 0, "%s --dtype %s: lines merge of GGUF into GGUF exits 0", what,
	            dt ? dt : "(base's)")) {
		tap_diag("%s", tu_stderr);
		return;
	}
	if (!tap_ok(og_load(&g, out) == 0 && og_layout_ok(&g),
	            "%s --dtype %s: a GGUF v3 of the base's tensors in its order, at the alignment %llu",
	            what, dt ? dt : "(base's)", (unsigned long long)g.align))
		return;
	tap_ok(rc == 0 && tu_run("'%s' verify -q '%s'", tu_lines(), out) == 0 && g.method[0],
	       "%s --dtype %s: lines verify passes; lines.method is %s", what, dt ? dt : "(base's)",
	       g.method);
	uint64_t n = 0, bad = 0, types = 0;
	for (size_t i = 0; i < NT; i++) {
		const struct og_t *t = &g.t[i];
		enum dtype d = DT_F32;
		unsigned be = 1, bb = 4; /* a type the test does not know: as F32 (counted bad) */
		bad += og_type(t->type, &d, &be, &bb) != 0;
		/* the type wanted: 1-D keeps the base's; rows not whole blocks F32 */
		int one_d = fam[i].ne1 == 1;
		uint32_t want = one_d ? fam[i].type[0] : dt ? 99 : fam[i].type[0];
		if (want == GT_Q8_K)
			want = GT_Q8_0;
		if (!one_d && dt) {
			static const struct {
				const char *n;
				uint32_t id;
			} m[] = {{"f32", 0}, {"f16", 1}, {"bf16", 30}, {"q8_0", 8}, {"q4_0", 2}, {"q4_k", 12},
			         {"q5_k", 13}, {"q6_k", 14}};
			for (size_t k = 0; k < sizeof(m) / sizeof(m[0]); k++)
				if (!strcmp(dt, m[k].n))
					want = m[k].id;
		}
		enum dtype wd;
		unsigned wbe, wbb;
		/* a base type this lines cannot write (yet): Q8_0 */
		if (og_type(want, &wd, &wbe, &wbb) == 0 && wbe > 1 && !ggml_quant_writable(wd))
			want = 8, og_type(want, &wd, &wbe, &wbb);
		if (og_type(want, &wd, &wbe, &wbb) == 0 && fam[i].ne0 % wbe)
			want = 0;
		types += t->type == want;
		if (t->type != want)
			tap_diag("%s: ggml type %u, expected %u", t->name, (unsigned)t->type, (unsigned)want);
		if (be > 1) {
			/* a block type: ggml_quant of the F32 merge's rows */
			const struct og_t *ft = f32 ? &f32->t[i] : NULL;
			uint64_t ne = og_nelem(t);
			float *x = malloc(ne * sizeof(float));
			unsigned char *q = malloc(ne / be * bb + 1);
			if (!ft || ft->type != 0 || !x || !q) {
				bad++;
			} else {
				for (uint64_t e = 0; e < ne; e++)
					x[e] = (float)og_elem(f32, ft, e);
				ggml_quant(d, x, ne / be, q);
				if (memcmp(q, g.buf + g.data + t->off, ne / be * bb) && bad++ < 3)
					tap_diag("%s: its %s bytes are not ggml_quant of the F32 merge", t->name,
					         dtype_name(d));
				n += ne;
			}
			free(x);
			free(q);
			continue;
		}
		const char *odt = t->type == 0 ? "F32" : t->type == 1 ? "F16" : "BF16";
		double lambda = fam[i].block < 0 ? alpha : alpha + beta * fam[i].block / 2.0;
		for (uint64_t e = 0; e < og_nelem(t); e++) {
			double b0 = fam[i].v[0][e], x1 = fam[i].v[1][e], x2 = fam[i].v[2][e];
			double ref = b0 + lambda * (w1 * (x1 - b0) + w2 * (x2 - b0)), got = og_elem(&g, t, e);
			double slack = 0x1p-22 * (fabs(b0) + fabs(lambda) * (fabs(w1) * (fabs(x1) + fabs(b0)) +
			                                                     fabs(w2) * (fabs(x2) + fabs(b0))));
			if (!(fabs(got - ref) <= tu_ulp(odt, ref) + slack) && bad++ < 3)
				tap_diag("%s[%llu]: %.9g, expected %.9g", t->name, (unsigned long long)e, got,
				         ref);
			n++;
		}
	}
	tap_ok(bad == 0 && n > 0, "%s --dtype %s: %llu elements as the reference (within 1 ULP; "
	       "block types: the exact bytes of ggml_quant)", what, dt ? dt : "(base's)",
	       (unsigned long long)n);
	tap_ok(types == NT, "%s --dtype %s: the types (1-D: the base's; rows not whole blocks: F32) "
	       "(%llu of %zu)", what, dt ? dt : "(base's)", (unsigned long long)types, NT);
	if (keep)
		*keep = g;
	else
		free(g.buf);
}

static void t_gguf_out(const char *dir)
{
	static const struct {
		const char *what, *args;
		double w1, w2, alpha, beta;
	} runs[] = {
		{"sum", "", 1, 1, 1, 0},
		{"sum weighted", "-w 0.5,1.5", 0.5, 1.5, 1, 0},
		{"--lines 0.4 0.6", "--lines --alpha 0.4 --beta 0.6", 1, 1, 0.4, 0.6},
		{"mean -j1 --chunk 64K", "-m mean -j1 --chunk 64K", 0.5, 0.5, 1, 0},
	};
	static const char *const qs[] = {"q8_0", "q4_0", "q4_k", "q5_k", "q6_k"};
	for (size_t r = 0; r < sizeof(runs) / sizeof(runs[0]); r++) {
		struct og f32;
		memset(&f32, 0, sizeof(f32));
		check_gguf_out(dir, runs[r].what, runs[r].args, "f32", NULL, runs[r].w1, runs[r].w2,
		               runs[r].alpha, runs[r].beta, &f32);
		check_gguf_out(dir, runs[r].what, runs[r].args, "f16", NULL, runs[r].w1, runs[r].w2,
		               runs[r].alpha, runs[r].beta, NULL);
		check_gguf_out(dir, runs[r].what, runs[r].args, NULL, &f32, runs[r].w1, runs[r].w2,
		               runs[r].alpha, runs[r].beta, NULL);
		for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
			enum dtype d;
			unsigned be, bb;
			static const uint32_t ids[] = {8, 2, 12, 13, 14};
			if (og_type(ids[k], &d, &be, &bb) != 0) {
				ok(0, "%s: ggml type %u is one the test knows", runs[r].what, ids[k]);
				continue;
			}
			if (!ggml_quant_writable(d)) {
				tap_skip("%s --dtype %s: this lines cannot write %s yet", runs[r].what, qs[k],
				         dtype_name(d));
				continue;
			}
			check_gguf_out(dir, runs[r].what, runs[r].args, qs[k], &f32, runs[r].w1, runs[r].w2,
			               runs[r].alpha, runs[r].beta, NULL);
		}
		free(f32.buf);
	}
	/* the same bytes on every instruction set, -j, --chunk and --io */
	const char *L = tu_lines();
	int rc = tu_run("d='%s' && for t in f16 q8_0; do LINES_ISA=scalar '%s' merge -q --lines -b "
	                "$d/base.gguf --dtype $t -o $d/s.gguf $d/ft1.gguf $d/ft2.gguf && '%s' merge -q "
	                "--lines -j1 --chunk 64K --io mmap --dtype $t -b $d/base.gguf -o $d/d.gguf "
	                "$d/ft1.gguf $d/ft2.gguf && '%s' merge -q --lines -j2 --io uring --dtype $t -b "
	                "$d/base.gguf -o $d/u.gguf $d/ft1.gguf $d/ft2.gguf && cmp $d/s.gguf $d/d.gguf && "
	                "cmp $d/s.gguf $d/u.gguf || exit 1; done",
	                dir, L, L, L);
	tap_ok(rc == 0, "GGUF F16 and Q8_0 outputs: the same bytes with LINES_ISA=scalar, -j1 --chunk "
	       "64K --io mmap, -j2 --io uring");
	/* standard output is GGUF too; a dry run says how large */
	rc = tu_run("d='%s' && '%s' merge -q -b $d/base.gguf -o - $d/ft1.gguf $d/ft2.gguf > $d/p.gguf "
	            "&& '%s' merge -q -b $d/base.gguf -o $d/f.gguf $d/ft1.gguf $d/ft2.gguf && "
	            "cmp $d/p.gguf $d/f.gguf && '%s' merge -n --json -b $d/base.gguf -o $d/n.gguf "
	            "$d/ft1.gguf $d/ft2.gguf | jq -e --argjson s $(stat -c %%s $d/f.gguf) "
	            "'.output_bytes == $s' >/dev/null && ! test -e $d/n.gguf",
	            dir, L, L, L);
	tap_ok(rc == 0, "-o - writes the same GGUF as a file; --dry-run's output_bytes is its size "
	       "and writes nothing");
	if (rc)
		tap_diag("%s", tu_stderr);
	/* --shard-size: llama.cpp's split files, each a GGUF lines verify
	 * checks, whose tensors are the unsharded output's, byte for byte */
	rc = tu_run("d='%s' && mkdir -p $d/sh && '%s' merge -q --lines --dtype q8_0 -b $d/base.gguf "
	            "--shard-size 40K -o $d/sh/m.gguf $d/ft1.gguf $d/ft2.gguf && '%s' merge -q --lines "
	            "--dtype q8_0 -b $d/base.gguf -o $d/m1.gguf $d/ft1.gguf $d/ft2.gguf && "
	            "n=$(ls $d/sh/m-0000?-of-0000?.gguf | wc -l) && test $n -ge 3 && "
	            "test $(ls $d/sh | wc -l) -eq $((3 * n)) && '%s' verify -q $d/sh/m-*.gguf && "
	            "'%s' inspect --json $d/sh/m-00001-of-0000$n.gguf | jq -e --argjson n $n "
	            "'.metadata[\"split.no\"] == \"0\" and .metadata[\"split.count\"] == ($n|tostring) "
	            "and .metadata[\"split.tensors.count\"] == \"%zu\" and .metadata[\"lines.method\"] "
	            "== \"sum\" and .metadata[\"llama.block_count\"] == \"3\"' >/dev/null && "
	            "'%s' inspect --json $d/sh/m-00002-of-0000$n.gguf | jq -e '.metadata[\"split.no\"] "
	            "== \"0\" and .metadata[\"lines.method\"] == \"sum\" and .tensors == %zu' "
	            ">/dev/null && "
	            "jq -s '[.[].tensors[] | {name, xxh3_64, dtype}]' $d/sh/m-*.gguf.manifest.json > "
	            "$d/a.json && jq '[.tensors[] | {name, xxh3_64, dtype}]' $d/m1.gguf.manifest.json > "
	            "$d/b.json && cmp $d/a.json $d/b.json",
	            dir, L, L, L, L, NT, L, NT);
	tap_ok(rc == 0, "--shard-size: split files PREFIX-0000i-of-0000N.gguf (split.no, split.count, "
	       "split.tensors.count; the metadata in the first), each verified, the tensors the "
	       "unsharded output's byte for byte; inspect of the second file reads the set");
	if (rc)
		tap_diag("%s", tu_stderr);
}

static void t_merge(void)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/gguf", tu_tmpdir());
	if (!tap_ok(tu_run("mkdir -p '%s'", dir) == 0 && write_family(dir) == 0,
	            "write a GGUF family of three (F32, F16, Q8_0, Q4_0, Q8_K)"))
		return;
	check_merge(dir, "sum", "", 1, 1, 1, 0);
	check_merge(dir, "sum weighted", "-w 0.5,1.5", 0.5, 1.5, 1, 0);
	check_merge(dir, "--lines 0.4 0.6", "--lines --alpha 0.4 --beta 0.6", 1, 1, 0.4, 0.6);
	check_merge(dir, "mean -j1 --chunk 64K", "-m mean -j1 --chunk 64K", 0.5, 0.5, 1, 0);
	check_merge(dir, "mean -j2 --io mmap", "-m mean -j2 --io mmap", 0.5, 0.5, 1, 0);
	/* the same bytes on every instruction set, -j, --chunk and --io */
	const char *L = tu_lines();
	int rc = tu_run("d='%s' && LINES_ISA=scalar '%s' merge -q --lines -b $d/base.gguf -o $d/s.st "
	                "$d/ft1.gguf $d/ft2.gguf && '%s' merge -q --lines -j1 --chunk 64K --io mmap -b "
	                "$d/base.gguf -o $d/d.st $d/ft1.gguf $d/ft2.gguf && '%s' merge -q --lines -j2 "
	                "--io uring -b $d/base.gguf -o $d/u.st $d/ft1.gguf $d/ft2.gguf && "
	                "cmp $d/s.st $d/d.st && cmp $d/s.st $d/u.st",
	                dir, L, L, L);
	tap_ok(rc == 0, "the same bytes with LINES_ISA=scalar, -j1 --chunk 64K --io mmap, -j2 --io uring");
	t_gguf_out(dir);
	/* what is refused */
	rc = tu_run("'%s' merge -q -b '%s/base.gguf' --shard-size 40K -o '%s/x.gguf.zst' '%s/ft1.gguf'",
	            tu_lines(), dir, dir, dir);
	tap_ok(rc == 2 && !tu_exists("x.gguf.zst"),
	       "--shard-size with a .gguf.zst output is a usage error (exit %d)", rc);
	rc = tu_run("'%s' merge -q -b '%s/base.gguf' --dtype q8_0 -o '%s/x.safetensors' '%s/ft1.gguf'",
	            tu_lines(), dir, dir, dir);
	tap_ok(rc == 2 && !tu_exists("x.safetensors"),
	       "--dtype q8_0 with a safetensors output is a usage error (exit %d)", rc);
	rc = tu_run("'%s' --arch llama --dtype f32 --layers 3 --hidden 16 --models 1 --seed 1 --out "
	            "'%s/st' >/dev/null && '%s' merge -q -b '%s/base.gguf' -o '%s/mix.safetensors' "
	            "'%s/st/ft1.safetensors'",
	            tu_gen(), dir, tu_lines(), dir, dir, dir);
	tap_ok(rc == 1 && strstr(tu_stderr, "is GGUF and") && !tu_exists("mix.safetensors"),
	       "GGUF and safetensors inputs together are refused (exit %d)", rc);
	rc = tu_run("'%s' merge -q -b '%s/st/base.safetensors' -o '%s/st.gguf' '%s/st/ft1.safetensors'",
	            tu_lines(), dir, dir, dir);
	tap_ok(rc == 2 && !tu_exists("st.gguf"),
	       "a .gguf output of safetensors inputs is a usage error (exit %d)", rc);
	for (size_t i = 0; i < NT; i++)
		for (int m = 0; m < NMOD; m++)
			free(fam[i].v[m]);
}

/* ---- gen-gguf's families -------------------------------------------------------------- */
static void t_gen(void)
{
	static const char *const tys[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0",
	                                  "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q8_k"};
	const char *gen = getenv("GEN_GGUF") && *getenv("GEN_GGUF") ? getenv("GEN_GGUF")
	                                                            : "./tests/gen-gguf";
	for (size_t i = 0; i < sizeof(tys) / sizeof(tys[0]); i++) {
		char d[4200];
		snprintf(d, sizeof(d), "%s/gen-%s", tu_tmpdir(), tys[i]);
		int rc = tu_run("'%s' --type %s --layers 3 --hidden 256 --models 2 --seed 5 --out '%s'",
		                gen, tys[i], d);
		/* every key llama.cpp needs, L from block_count, the blocks found */
		rc = rc ? rc : tu_run("'%s' inspect --json '%s/ft2.gguf' | jq -e '.format == \"gguf\" and "
		                      ".num_layers == 3 and .tensors == 30 and (.stacks[0].name == \"blk\") "
		                      "and ([\"llama.feed_forward_length\", \"llama.attention.head_count\", "
		                      "\"llama.block_count\", \"llama.context_length\", "
		                      "\"llama.embedding_length\", \"llama.rope.dimension_count\", "
		                      "\"llama.attention.layer_norm_rms_epsilon\", \"tokenizer.ggml.model\", "
		                      "\"tokenizer.ggml.tokens\", \"tokenizer.ggml.scores\", "
		                      "\"tokenizer.ggml.token_type\"] - (.metadata | keys) == [])' >/dev/null",
		                      tu_lines(), d);
		rc = rc ? rc : tu_run("'%s' merge -q --lines -b '%s/base.gguf' -o '%s/m.safetensors' "
		                      "'%s/ft1.gguf' '%s/ft2.gguf' && '%s' inspect --json '%s/m.safetensors' | "
		                      "jq -e '.tensors == 30 and .num_layers == 3' >/dev/null",
		                      tu_lines(), d, d, d, d, tu_lines(), d);
		tap_ok(rc == 0, "gen-gguf --type %s: a llama family lines reads, with every key llama.cpp "
		       "needs, and merges", tys[i]);
		if (rc)
			tap_diag("%s", tu_stderr);
	}
}

int main(void)
{
	static const uint16_t ds[] = {H_ONE, H_MAX, H_TINY, H_NEG2, H_ZERO, H_NZERO, H_INF, H_QUARTER};
	t_f16();
	for (size_t i = 0; i < sizeof(ds) / sizeof(ds[0]); i++) {
		t_q4_0(ds[i]);
		t_q8_0(ds[i]);
		t_q5(0, ds[i], 0);
		t_q3_k(ds[i]);
		t_q6_k(ds[i]);
	}
	t_q4_1(H_HALF, H_NEG2);
	t_q4_1(H_MAX, H_ZERO);
	t_q4_1(H_TINY, H_ONE);
	t_q5(1, H_QUARTER, 0xbc00);
	t_q5(1, H_MAX, H_MAX);
	t_q2_k(H_ONE, H_HALF);
	t_q2_k(H_MAX, H_TINY);
	t_q2_k(H_NEG2, H_ZERO);
	t_q45_k(0, H_QUARTER, H_ONE);
	t_q45_k(0, H_TINY, H_MAX);
	t_q45_k(1, H_HALF, H_NEG2);
	t_q45_k(1, H_MAX, H_ZERO);
	t_q8_k(0.5f);
	t_q8_k(3.0e38f);
	t_q8_k(-0x1p-149f);
	t_reader();
	t_merge();
	t_gen();
	tu_cleanup();
	return tap_done();
}
