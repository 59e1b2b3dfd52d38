/*
 * gen-gguf.c -- small llama-architecture GGUF models for the tests: a base
 * and fine-tunes of it, in one element type.
 *
 *   gen-gguf --type T --layers L --hidden H [--ff F] [--vocab V] [--heads NH]
 *            [--kv-heads NKV] --models N --seed S --out DIR
 *
 * writes DIR/base.gguf and DIR/ft1.gguf ... DIR/ftN.gguf (GGUF version 3)
 * with every key llama.cpp needs to load a llama model: general.*,
 * llama.context_length, embedding_length, block_count, feed_forward_length,
 * rope.dimension_count, rope.freq_base, attention.head_count,
 * attention.head_count_kv, attention.layer_norm_rms_epsilon, vocab_size,
 * and a SentencePiece-style tokenizer of V tokens (<unk>, <s>, </s>, the
 * 256 byte tokens <0x00> ... <0xFF>, then pieces) in tokenizer.ggml.*.
 *
 * T is f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k,
 * q5_k, q6_k or q8_k: the matrices (token_embd, output, and each block's
 * attention and feed-forward weights) have type T; the norms are F32, as
 * llama.cpp writes them. H and F must be whole blocks of T (32 elements,
 * 256 for the K types). Values are pure functions of (seed, model, tensor,
 * element): float types get small values, a fine-tune the base's plus a
 * small delta; block types get random quants under finite F16 scales, and
 * a fine-tune changes about one quant byte in eight (never a scale), so
 * its task vector is sparse and nonzero.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf-write.h"

static const struct {
	const char *name;
	unsigned type;
	int ftype;           /* general.file_type (llama_ftype), -1: none */
	unsigned q0, q1;     /* the bytes of a block holding quants (not scales) */
} types[] = {
	{"f32", GT_F32, 0, 0, 0},     {"f16", GT_F16, 1, 0, 0},      {"bf16", GT_BF16, 32, 0, 0},
	{"q4_0", GT_Q4_0, 2, 2, 18},  {"q4_1", GT_Q4_1, 3, 4, 20},   {"q5_0", GT_Q5_0, 8, 2, 22},
	{"q5_1", GT_Q5_1, 9, 4, 24},  {"q8_0", GT_Q8_0, 7, 2, 34},   {"q2_k", GT_Q2_K, 10, 16, 80},
	{"q3_k", GT_Q3_K, 12, 0, 96}, {"q4_k", GT_Q4_K, 15, 16, 144}, {"q5_k", GT_Q5_K, 17, 16, 176},
	{"q6_k", GT_Q6_K, 18, 0, 192}, {"q8_k", GT_Q8_K, -1, 4, 260},
};

static uint64_t seed;

/* A pure function of its arguments (splitmix64 of their mix). */
static uint64_t hash(uint64_t model, uint64_t tensor, uint64_t i)
{
	uint64_t z = seed * 0x9e3779b97f4a7c15ull ^ model * 0xbf58476d1ce4e5b9ull ^
	             tensor * 0x94d049bb133111ebull ^ (i + 1) * 0x2545f4914f6cdd1dull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* A uniform value in [-1, 1). */
static double uni(uint64_t h) { return (double)(h >> 11) * 0x1p-52 - 1.0; }

static uint16_t f32_to_f16(float f) /* nearest, for the small finite values used here */
{
	uint32_t u;
	memcpy(&u, &f, 4);
	uint32_t sign = (u >> 16) & 0x8000;
	int e = (int)((u >> 23) & 0xff) - 127 + 15;
	uint32_t m = u & 0x7fffff;
	if (e <= 0) { /* subnormal or zero */
		if (e < -10)
			return (uint16_t)sign;
		m |= 0x800000;
		uint32_t sh = (uint32_t)(14 - e), r = m >> sh, rem = m & ((1u << sh) - 1), half = 1u << (sh - 1);
		r += rem > half || (rem == half && (r & 1));
		return (uint16_t)(sign | r);
	}
	uint32_t r = m >> 13, rem = m & 0x1fff;
	uint32_t h = ((uint32_t)e << 10) | r;
	h += rem > 0x1000 || (rem == 0x1000 && (h & 1));
	return (uint16_t)(sign | (h > 0x7bff ? 0x7bff : h));
}

static uint16_t f32_to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	u += 0x7fff + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

/* A small positive F16 scale, about 2^-9 to 2^-8. */
static uint16_t scale16(uint64_t h) { return (uint16_t)((6u << 10) | (h & 0x3ff)); }

struct tens {
	char name[64];
	unsigned nd;
	uint64_t ne[2];
	unsigned type;
	int norm;
};

/* Tensor t of model m (0 the base) as bytes. */
static unsigned char *tensor_bytes(const struct tens *t, unsigned ti, unsigned m, size_t ty,
                                   uint64_t *len)
{
	uint64_t n = t->ne[0] * (t->nd > 1 ? t->ne[1] : 1);
	uint64_t nb = gt_nbytes(t->type, t->nd, t->ne);
	unsigned char *b = calloc(nb ? nb : 1, 1);
	if (!b) {
		fprintf(stderr, "gen-gguf: out of memory\n");
		exit(1);
	}
	*len = nb;
	if (t->type == GT_F32 || t->type == GT_F16 || t->type == GT_BF16) {
		for (uint64_t e = 0; e < n; e++) {
			double v = t->norm ? 1.0 + 0.01 * uni(hash(0, ti, e)) : 0.05 * uni(hash(0, ti, e));
			if (m)
				v += 0.005 * uni(hash(m, ti, e));
			float f = (float)v;
			if (t->type == GT_F32)
				memcpy(b + 4 * e, &f, 4);
			else {
				uint16_t h = t->type == GT_F16 ? f32_to_f16(f) : f32_to_bf16(f);
				b[2 * e] = (unsigned char)h, b[2 * e + 1] = (unsigned char)(h >> 8);
			}
		}
		return b;
	}
	unsigned be, bb;
	gt_block(t->type, &be, &bb);
	for (uint64_t k = 0; k < n / be; k++) {
		unsigned char *p = b + k * bb;
		for (unsigned i = 0; i < bb; i++) /* the base's bytes, then the scales */
			p[i] = (unsigned char)hash(0, ti, k * bb + i);
		uint16_t d = scale16(hash(0, ti, ~k)), dm = scale16(hash(0, ti, ~k ^ 0x5555));
		switch (t->type) {
		case GT_Q4_0: case GT_Q5_0: case GT_Q8_0:
			p[0] = (unsigned char)d, p[1] = (unsigned char)(d >> 8);
			break;
		case GT_Q4_1: case GT_Q5_1: case GT_Q4_K: case GT_Q5_K:
			p[0] = (unsigned char)d, p[1] = (unsigned char)(d >> 8);
			p[2] = (unsigned char)dm, p[3] = (unsigned char)(dm >> 8);
			break;
		case GT_Q2_K:
			p[80] = (unsigned char)d, p[81] = (unsigned char)(d >> 8);
			p[82] = (unsigned char)dm, p[83] = (unsigned char)(dm >> 8);
			break;
		case GT_Q3_K:
			p[108] = (unsigned char)d, p[109] = (unsigned char)(d >> 8);
			break;
		case GT_Q6_K:
			p[208] = (unsigned char)d, p[209] = (unsigned char)(d >> 8);
			break;
		case GT_Q8_K: {
			float f = 0x1p-9f;
			memcpy(p, &f, 4);
			break;
		}
		}
		/* a fine-tune: about one quant byte in eight changed by a bit */
		for (unsigned i = types[ty].q0; m && i < types[ty].q1; i++) {
			uint64_t h = hash(m, ti, k * bb + i);
			if ((h & 7) == 0)
				p[i] ^= (unsigned char)(1u << ((h >> 3) & 7));
		}
		if (t->type == GT_Q8_K) /* bsums: the sums of each 16 quants */
			for (int g = 0; g < 16; g++) {
				int s = 0;
				for (int j = 0; j < 16; j++)
					s += (int8_t)p[4 + 16 * g + j];
				p[260 + 2 * g] = (unsigned char)(s & 0xff);
				p[261 + 2 * g] = (unsigned char)((s >> 8) & 0xff);
			}
	}
	return b;
}

static void usage(void)
{
	fprintf(stderr, "usage: gen-gguf --type T --layers L --hidden H [--ff F] [--vocab V] "
	                "[--heads NH] [--kv-heads NKV]\n                --models N --seed S --out DIR\n"
	                "T: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k q4_k q5_k q6_k q8_k\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *type = NULL, *out = NULL;
	long L = 0, H = 0, F = 0, V = 320, NH = 0, NKV = 0, N = -1, S = -1;
	size_t ty = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--type")) type = v;
		else if (!strcmp(a, "--out")) out = v;
		else if (!strcmp(a, "--layers")) L = atol(v);
		else if (!strcmp(a, "--hidden")) H = atol(v);
		else if (!strcmp(a, "--ff")) F = atol(v);
		else if (!strcmp(a, "--vocab")) V = atol(v);
		else if (!strcmp(a, "--heads")) NH = atol(v);
		else if (!strcmp(a, "--kv-heads")) NKV = atol(v);
		else if (!strcmp(a, "--models")) N = atol(v);
		else if (!strcmp(a, "--seed")) S = atol(v);
		else usage();
	}
	if (!type || !out || L < 1 || H < 1 || N < 0 || S < 0 || V < 260)
		usage();
	for (ty = 0; ty < sizeof(types) / sizeof(types[0]) && strcmp(types[ty].name, type); ty++)
		;
	if (ty == sizeof(types) / sizeof(types[0]))
		usage();
	seed = (uint64_t)S;
	F = F ? F : 2 * H;
	NH = NH ? NH : (H % 64 == 0 ? H / 64 : 1);
	NKV = NKV ? NKV : NH;
	unsigned be, bb;
	gt_block(types[ty].type, &be, &bb);
	if (H % (long)be || F % (long)be || H % NH || NH % NKV) {
		fprintf(stderr, "gen-gguf: --hidden %ld and --ff %ld must be multiples of %s's %u "
		                "elements, and --hidden of --heads\n", H, F, type, be);
		return 2;
	}
	if (mkdir(out, 0777) < 0 && errno != EEXIST) {
		perror(out);
		return 1;
	}
	const long hd = H / NH, kvd = hd * NKV;
	/* the tensors, in llama.cpp's order */
	size_t nt = 3 + 9 * (size_t)L, k = 0;
	struct tens *ts = calloc(nt, sizeof(*ts));
#define T(nm, d, a, b, ty_, nrm)                                                                   \
	(snprintf(ts[k].name, sizeof(ts[k].name), "%s", nm), ts[k].nd = (d), ts[k].ne[0] = (uint64_t)(a), \
	 ts[k].ne[1] = (uint64_t)(b), ts[k].type = (ty_), ts[k].norm = (nrm), k++)
	const unsigned q = types[ty].type;
	T("token_embd.weight", 2, H, V, q, 0);
	for (long l = 0; l < L; l++) {
		char nm[64];
#define B(suffix, d, a, b, ty_, nrm) \
	(snprintf(nm, sizeof(nm), "blk.%ld.%s", l, suffix), T(nm, d, a, b, ty_, nrm))
		B("attn_norm.weight", 1, H, 1, GT_F32, 1);
		B("attn_q.weight", 2, H, H, q, 0);
		B("attn_k.weight", 2, H, kvd, q, 0);
		B("attn_v.weight", 2, H, kvd, q, 0);
		B("attn_output.weight", 2, H, H, q, 0);
		B("ffn_norm.weight", 1, H, 1, GT_F32, 1);
		B("ffn_gate.weight", 2, H, F, q, 0);
		B("ffn_up.weight", 2, H, F, q, 0);
		B("ffn_down.weight", 2, F, H, q, 0);
	}
	T("output_norm.weight", 1, H, 1, GT_F32, 1);
	T("output.weight", 2, H, V, q, 0);
	for (long m = 0; m <= N; m++) {
		struct gb b;
		char path[4096];
		gb_init(&b);
		gb_kv_str(&b, "general.architecture", "llama");
		gb_kv_str(&b, "general.name", m ? "lines test llama (fine-tune)" : "lines test llama");
		gb_kv_u32(&b, "general.alignment", 32);
		if (types[ty].ftype >= 0)
			gb_kv_u32(&b, "general.file_type", (uint32_t)types[ty].ftype);
		gb_kv_u32(&b, "llama.context_length", 256);
		gb_kv_u32(&b, "llama.embedding_length", (uint32_t)H);
		gb_kv_u32(&b, "llama.block_count", (uint32_t)L);
		gb_kv_u32(&b, "llama.feed_forward_length", (uint32_t)F);
		gb_kv_u32(&b, "llama.rope.dimension_count", (uint32_t)hd);
		gb_kv_f32(&b, "llama.rope.freq_base", 10000.0f);
		gb_kv_u32(&b, "llama.attention.head_count", (uint32_t)NH);
		gb_kv_u32(&b, "llama.attention.head_count_kv", (uint32_t)NKV);
		gb_kv_f32(&b, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
		gb_kv_u32(&b, "llama.vocab_size", (uint32_t)V);
		gb_kv_str(&b, "tokenizer.ggml.model", "llama");
		gb_key(&b, "tokenizer.ggml.tokens", GV_ARRAY), gw_u32(&b.kv, GV_STRING);
		gw_u64(&b.kv, (uint64_t)V);
		for (long i = 0; i < V; i++) {
			char tok[32];
			if (i < 3)
				snprintf(tok, sizeof(tok), "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
			else if (i < 259)
				snprintf(tok, sizeof(tok), "<0x%02lX>", i - 3);
			else /* "▁" and two letters */
				snprintf(tok, sizeof(tok), "\xe2\x96\x81%c%c", 'a' + (int)((i - 259) / 26 % 26),
				         'a' + (int)((i - 259) % 26));
			gw_str(&b.kv, tok);
		}
		gb_key(&b, "tokenizer.ggml.scores", GV_ARRAY), gw_u32(&b.kv, GV_F32);
		gw_u64(&b.kv, (uint64_t)V);
		for (long i = 0; i < V; i++)
			gw_f32(&b.kv, i < 259 ? 0.0f : -(float)(i - 259));
		gb_key(&b, "tokenizer.ggml.token_type", GV_ARRAY), gw_u32(&b.kv, GV_I32);
		gw_u64(&b.kv, (uint64_t)V);
		for (long i = 0; i < V; i++)
			gw_u32(&b.kv, i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1);
		gb_kv_u32(&b, "tokenizer.ggml.unknown_token_id", 0);
		gb_kv_u32(&b, "tokenizer.ggml.bos_token_id", 1);
		gb_kv_u32(&b, "tokenizer.ggml.eos_token_id", 2);
		gb_key(&b, "tokenizer.ggml.add_bos_token", GV_BOOL), gw_u8(&b.kv, 1);
		for (size_t i = 0; i < nt; i++) {
			uint64_t len;
			unsigned char *data = tensor_bytes(&ts[i], (unsigned)i, (unsigned)m, ty, &len);
			gb_tensor(&b, ts[i].name, ts[i].nd, ts[i].ne, ts[i].type, data);
			free(data);
		}
		if (m)
			snprintf(path, sizeof(path), "%s/ft%ld.gguf", out, m);
		else
			snprintf(path, sizeof(path), "%s/base.gguf", out);
		if (gb_write(&b, path) < 0) {
			perror(path);
			return 1;
		}
		gb_free(&b);
	}
	free(ts);
	return 0;
}
