/*
 * gen-family.c -- write a deterministic family of models for the tests,
 * the demo and the benchmarks: a base model and N fine-tunes with the
 * tensor names of Llama (llama, llama-tied, mixtral), GPT-2, CLIP (the
 * visual tower: clip; both towers as Hugging Face names them: clip2), T5,
 * Whisper, a VLM (a vision tower beside a language model), Flux, a
 * diffusers transformer, a GPTQ checkpoint (gptq: integer tensors), or
 * names no block pattern knows (noblocks).
 * Models of two stacks (t5, whisper, clip2, vlm, flux, diffusers) have L
 * blocks in the first and L2 (--layers2, default L) in the second.
 *
 *   gen-family --arch ARCH --dtype bf16|f16|f32
 *              --layers L [--layers2 L2] (--hidden H | --size BYTES) [--vocab V]
 *              --models N --seed S --out DIR [--specials] [--int-differ]
 *              [--reverse] [--shards K] [--print-size] [--ragged]
 *
 * With --ragged, every layer norm's weight has H + 3 elements instead of H
 * (a length that is not a multiple of 8, so the vector loops' last
 * elements are merged by their scalar code too).
 *
 * With --shards K, every model is a directory (DIR/base/, DIR/ftN/) of K
 * shards, split at places that differ between models, with
 * model.safetensors.index.json, config.json and tokenizer.json.
 *
 * writes DIR/base.safetensors and DIR/ft1.safetensors ... DIR/ftN.safetensors.
 *
 * Every value is a pure function of (seed, model, tensor, element), so a
 * model of any size is written in constant memory and two runs give the
 * same bytes. The base looks like a trained network: weights spread around
 * zero, layer-norm weights near 1, small biases. A fine-tune adds a task
 * delta whose size grows with depth (1x at the first block, 3x at the
 * last, 0.5x outside the blocks), as LiNeS assumes of real fine-tuning.
 *
 * Independent of liblines on purpose: it has its own JSON writer and its
 * own float conversions, so the tests do not check lines against itself.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum kind { K_WEIGHT, K_NORM, K_BIAS, K_EMBED, K_POS_I64, K_MASK_BOOL, K_SCALE, K_ISCALE };
enum fdt { F_BF16, F_F16, F_F32, F_F64 };

struct tensor {
	char name[160];
	unsigned rank;
	uint64_t shape[4];
	enum kind kind;
	long block;
	int fp8;    /* stored as F8_E4M3 with scales (--fp8) */
	size_t of;  /* K_SCALE: the index of its weight */
};

static struct tensor *T;
static size_t g_many = 100000; /* --arch many: how many tensors (--tensors) */
static long g_layers2; /* --layers2: the second stack's blocks (0: as many as the first) */
static size_t nt, cap;
/* --fp8: the matrices in F8_E4M3, with a scale per 128 x 128 block
 * (DeepSeek-V3's weight_scale_inv) or per tensor (compressed-tensors'
 * weight_scale, and an input_scale) */
static enum { FP8_NONE, FP8_BLOCK, FP8_TENSOR } g_fp8;

static void add(enum kind k, long block, unsigned rank, const uint64_t *shape, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));

static void add(enum kind k, long block, unsigned rank, const uint64_t *shape, const char *fmt,
                ...)
{
	va_list ap;
	if (nt == cap) {
		cap = cap ? 2 * cap : 64;
		T = realloc(T, cap * sizeof(*T));
		if (!T) {
			perror("gen-family");
			exit(1);
		}
	}
	struct tensor *t = &T[nt++];
	memset(t, 0, sizeof(*t));
	va_start(ap, fmt);
	vsnprintf(t->name, sizeof(t->name), fmt, ap);
	va_end(ap);
	t->rank = rank;
	memcpy(t->shape, shape, rank * sizeof(*shape));
	t->kind = k;
	t->block = block;
}

#define S1(a) ((const uint64_t[]){(a)})
#define S2(a, b) ((const uint64_t[]){(a), (b)})
#define S4(a, b, c, d) ((const uint64_t[]){(a), (b), (c), (d)})

/* A pre-norm transformer block of the usual names under prefix. */
static void block_std(const char *prefix, long i, uint64_t H, uint64_t F)
{
	add(K_NORM, i, 1, S1(H), "%s.%ld.self_attn_layer_norm.weight", prefix, i);
	add(K_WEIGHT, i, 2, S2(H, H), "%s.%ld.self_attn.q_proj.weight", prefix, i);
	add(K_BIAS, i, 1, S1(H), "%s.%ld.self_attn.q_proj.bias", prefix, i);
	add(K_WEIGHT, i, 2, S2(H, H), "%s.%ld.self_attn.out_proj.weight", prefix, i);
	add(K_WEIGHT, i, 2, S2(F, H), "%s.%ld.fc1.weight", prefix, i);
	add(K_WEIGHT, i, 2, S2(H, F), "%s.%ld.fc2.weight", prefix, i);
}

static void build(const char *arch, long L, uint64_t H, uint64_t V)
{
	uint64_t F = 3 * H, P = 64;
	long L2 = g_layers2 ? g_layers2 : L;
	nt = 0;
	if (!strcmp(arch, "llama")) {
		add(K_EMBED, -1, 2, S2(V, H), "model.embed_tokens.weight");
		for (long i = 0; i < L; i++) {
			add(K_NORM, i, 1, S1(H), "model.layers.%ld.input_layernorm.weight", i);
			add(K_WEIGHT, i, 2, S2(H, H), "model.layers.%ld.self_attn.q_proj.weight", i);
			add(K_WEIGHT, i, 2, S2(H / 4, H), "model.layers.%ld.self_attn.k_proj.weight", i);
			add(K_WEIGHT, i, 2, S2(H / 4, H), "model.layers.%ld.self_attn.v_proj.weight", i);
			add(K_WEIGHT, i, 2, S2(H, H), "model.layers.%ld.self_attn.o_proj.weight", i);
			add(K_NORM, i, 1, S1(H), "model.layers.%ld.post_attention_layernorm.weight", i);
			add(K_WEIGHT, i, 2, S2(F, H), "model.layers.%ld.mlp.gate_proj.weight", i);
			add(K_WEIGHT, i, 2, S2(F, H), "model.layers.%ld.mlp.up_proj.weight", i);
			add(K_WEIGHT, i, 2, S2(H, F), "model.layers.%ld.mlp.down_proj.weight", i);
		}
		add(K_NORM, -1, 1, S1(H), "model.norm.weight");
		add(K_EMBED, -1, 2, S2(V, H), "lm_head.weight");
	} else if (!strcmp(arch, "gpt2")) {
		add(K_EMBED, -1, 2, S2(V, H), "transformer.wte.weight");
		add(K_EMBED, -1, 2, S2(P, H), "transformer.wpe.weight");
		for (long i = 0; i < L; i++) {
			add(K_NORM, i, 1, S1(H), "transformer.h.%ld.ln_1.weight", i);
			add(K_BIAS, i, 1, S1(H), "transformer.h.%ld.ln_1.bias", i);
			add(K_MASK_BOOL, i, 4, S4(1, 1, P, P), "transformer.h.%ld.attn.bias", i);
			add(K_WEIGHT, i, 2, S2(H, 3 * H), "transformer.h.%ld.attn.c_attn.weight", i);
			add(K_BIAS, i, 1, S1(3 * H), "transformer.h.%ld.attn.c_attn.bias", i);
			add(K_WEIGHT, i, 2, S2(H, H), "transformer.h.%ld.attn.c_proj.weight", i);
			add(K_BIAS, i, 1, S1(H), "transformer.h.%ld.attn.c_proj.bias", i);
			add(K_NORM, i, 1, S1(H), "transformer.h.%ld.ln_2.weight", i);
			add(K_BIAS, i, 1, S1(H), "transformer.h.%ld.ln_2.bias", i);
			add(K_WEIGHT, i, 2, S2(H, 4 * H), "transformer.h.%ld.mlp.c_fc.weight", i);
			add(K_BIAS, i, 1, S1(4 * H), "transformer.h.%ld.mlp.c_fc.bias", i);
			add(K_WEIGHT, i, 2, S2(4 * H, H), "transformer.h.%ld.mlp.c_proj.weight", i);
			add(K_BIAS, i, 1, S1(H), "transformer.h.%ld.mlp.c_proj.bias", i);
		}
		add(K_NORM, -1, 1, S1(H), "transformer.ln_f.weight");
		add(K_BIAS, -1, 1, S1(H), "transformer.ln_f.bias");
	} else if (!strcmp(arch, "clip")) {
		add(K_BIAS, -1, 1, S1(H), "model.visual.class_embedding");
		add(K_EMBED, -1, 2, S2(P + 1, H), "model.visual.positional_embedding");
		add(K_POS_I64, -1, 2, S2(1, P + 1), "model.visual.position_ids");
		add(K_WEIGHT, -1, 4, S4(H, 3, 4, 4), "model.visual.conv1.weight");
		add(K_NORM, -1, 1, S1(H), "model.visual.ln_pre.weight");
		add(K_BIAS, -1, 1, S1(H), "model.visual.ln_pre.bias");
		for (long i = 0; i < L; i++) {
			const char *r = "model.visual.transformer.resblocks";
			add(K_NORM, i, 1, S1(H), "%s.%ld.ln_1.weight", r, i);
			add(K_BIAS, i, 1, S1(H), "%s.%ld.ln_1.bias", r, i);
			add(K_WEIGHT, i, 2, S2(3 * H, H), "%s.%ld.attn.in_proj_weight", r, i);
			add(K_BIAS, i, 1, S1(3 * H), "%s.%ld.attn.in_proj_bias", r, i);
			add(K_WEIGHT, i, 2, S2(H, H), "%s.%ld.attn.out_proj.weight", r, i);
			add(K_BIAS, i, 1, S1(H), "%s.%ld.attn.out_proj.bias", r, i);
			add(K_NORM, i, 1, S1(H), "%s.%ld.ln_2.weight", r, i);
			add(K_BIAS, i, 1, S1(H), "%s.%ld.ln_2.bias", r, i);
			add(K_WEIGHT, i, 2, S2(4 * H, H), "%s.%ld.mlp.c_fc.weight", r, i);
			add(K_BIAS, i, 1, S1(4 * H), "%s.%ld.mlp.c_fc.bias", r, i);
			add(K_WEIGHT, i, 2, S2(H, 4 * H), "%s.%ld.mlp.c_proj.weight", r, i);
			add(K_BIAS, i, 1, S1(H), "%s.%ld.mlp.c_proj.bias", r, i);
		}
		add(K_NORM, -1, 1, S1(H), "model.visual.ln_post.weight");
		add(K_BIAS, -1, 1, S1(H), "model.visual.ln_post.bias");
		add(K_WEIGHT, -1, 2, S2(H, H / 2), "model.visual.proj");
	} else if (!strcmp(arch, "t5")) {
		add(K_EMBED, -1, 2, S2(V, H), "shared.weight");
		for (long i = 0; i < L; i++) {
			const char *e = "encoder.block";
			add(K_WEIGHT, i, 2, S2(H, H), "%s.%ld.layer.0.SelfAttention.q.weight", e, i);
			add(K_WEIGHT, i, 2, S2(H, H), "%s.%ld.layer.0.SelfAttention.k.weight", e, i);
			add(K_WEIGHT, i, 2, S2(H, H), "%s.%ld.layer.0.SelfAttention.v.weight", e, i);
			add(K_WEIGHT, i, 2, S2(H, H), "%s.%ld.layer.0.SelfAttention.o.weight", e, i);
			if (i == 0)
				add(K_WEIGHT, i, 2, S2(32, 8),
				    "%s.0.layer.0.SelfAttention.relative_attention_bias.weight", e);
			add(K_NORM, i, 1, S1(H), "%s.%ld.layer.0.layer_norm.weight", e, i);
			add(K_WEIGHT, i, 2, S2(F, H), "%s.%ld.layer.1.DenseReluDense.wi.weight", e, i);
			add(K_WEIGHT, i, 2, S2(H, F), "%s.%ld.layer.1.DenseReluDense.wo.weight", e, i);
			add(K_NORM, i, 1, S1(H), "%s.%ld.layer.1.layer_norm.weight", e, i);
		}
		add(K_NORM, -1, 1, S1(H), "encoder.final_layer_norm.weight");
		for (long i = 0; i < L2; i++) {
			const char *d = "decoder.block";
			add(K_WEIGHT, i, 2, S2(H, H), "%s.%ld.layer.0.SelfAttention.q.weight", d, i);
			add(K_WEIGHT, i, 2, S2(H, H), "%s.%ld.layer.0.SelfAttention.o.weight", d, i);
			add(K_NORM, i, 1, S1(H), "%s.%ld.layer.0.layer_norm.weight", d, i);
			add(K_WEIGHT, i, 2, S2(H, H), "%s.%ld.layer.1.EncDecAttention.q.weight", d, i);
			add(K_WEIGHT, i, 2, S2(H, H), "%s.%ld.layer.1.EncDecAttention.k.weight", d, i);
			add(K_NORM, i, 1, S1(H), "%s.%ld.layer.1.layer_norm.weight", d, i);
			add(K_WEIGHT, i, 2, S2(F, H), "%s.%ld.layer.2.DenseReluDense.wi.weight", d, i);
			add(K_WEIGHT, i, 2, S2(H, F), "%s.%ld.layer.2.DenseReluDense.wo.weight", d, i);
			add(K_NORM, i, 1, S1(H), "%s.%ld.layer.2.layer_norm.weight", d, i);
		}
		add(K_NORM, -1, 1, S1(H), "decoder.final_layer_norm.weight");
		add(K_EMBED, -1, 2, S2(V, H), "lm_head.weight");
	} else if (!strcmp(arch, "whisper")) { /* encoder L, decoder L2 (distil-whisper: 32 + 2) */
		add(K_WEIGHT, -1, 2, S2(H, 8), "model.encoder.conv1.weight");
		add(K_EMBED, -1, 2, S2(P, H), "model.encoder.embed_positions.weight");
		for (long i = 0; i < L; i++)
			block_std("model.encoder.layers", i, H, F);
		add(K_NORM, -1, 1, S1(H), "model.encoder.layer_norm.weight");
		add(K_EMBED, -1, 2, S2(V, H), "model.decoder.embed_tokens.weight");
		for (long i = 0; i < L2; i++)
			block_std("model.decoder.layers", i, H, F);
		add(K_NORM, -1, 1, S1(H), "model.decoder.layer_norm.weight");
	} else if (!strcmp(arch, "clip2")) { /* Hugging Face CLIP: vision L, text L2 */
		add(K_EMBED, -1, 2, S2(P + 1, H), "vision_model.embeddings.position_embedding.weight");
		add(K_POS_I64, -1, 2, S2(1, P + 1), "vision_model.embeddings.position_ids");
		for (long i = 0; i < L; i++)
			block_std("vision_model.encoder.layers", i, H, F);
		add(K_NORM, -1, 1, S1(H), "vision_model.post_layernorm.weight");
		add(K_EMBED, -1, 2, S2(V, H), "text_model.embeddings.token_embedding.weight");
		for (long i = 0; i < L2; i++)
			block_std("text_model.encoder.layers", i, H, F);
		add(K_NORM, -1, 1, S1(H), "text_model.final_layer_norm.weight");
		add(K_WEIGHT, -1, 2, S2(H, H), "visual_projection.weight");
		add(K_WEIGHT, -1, 2, S2(H, H), "text_projection.weight");
	} else if (!strcmp(arch, "vlm")) { /* a vision tower of L2 beside a language model of L */
		for (long i = 0; i < L2; i++)
			block_std("model.vision_tower.vision_model.encoder.layers", i, H, F);
		add(K_WEIGHT, -1, 2, S2(H, H), "model.multi_modal_projector.linear_1.weight");
		add(K_EMBED, -1, 2, S2(V, H), "model.language_model.embed_tokens.weight");
		for (long i = 0; i < L; i++)
			block_std("model.language_model.layers", i, H, F);
		add(K_NORM, -1, 1, S1(H), "model.language_model.norm.weight");
		add(K_EMBED, -1, 2, S2(V, H), "lm_head.weight");
	} else if (!strcmp(arch, "flux")) { /* L double blocks, then L2 single blocks */
		add(K_WEIGHT, -1, 2, S2(H, 64), "img_in.weight");
		add(K_WEIGHT, -1, 2, S2(H, H), "txt_in.weight");
		for (long i = 0; i < L; i++) {
			add(K_WEIGHT, i, 2, S2(3 * H, H), "double_blocks.%ld.img_attn.qkv.weight", i);
			add(K_WEIGHT, i, 2, S2(3 * H, H), "double_blocks.%ld.txt_attn.qkv.weight", i);
			add(K_WEIGHT, i, 2, S2(F, H), "double_blocks.%ld.img_mlp.0.weight", i);
		}
		for (long i = 0; i < L2; i++) {
			add(K_WEIGHT, i, 2, S2(3 * H + F, H), "single_blocks.%ld.linear1.weight", i);
			add(K_WEIGHT, i, 2, S2(H, H + F), "single_blocks.%ld.linear2.weight", i);
		}
		add(K_WEIGHT, -1, 2, S2(64, H), "final_layer.linear.weight");
	} else if (!strcmp(arch, "diffusers")) { /* a diffusers transformer: L, then L2 single */
		add(K_WEIGHT, -1, 2, S2(H, 64), "x_embedder.weight");
		for (long i = 0; i < L; i++) {
			add(K_WEIGHT, i, 2, S2(H, H), "transformer_blocks.%ld.attn.to_q.weight", i);
			add(K_WEIGHT, i, 2, S2(F, H), "transformer_blocks.%ld.ff.net.0.proj.weight", i);
		}
		for (long i = 0; i < L2; i++) {
			add(K_WEIGHT, i, 2, S2(H, H), "single_transformer_blocks.%ld.attn.to_q.weight", i);
			add(K_WEIGHT, i, 2, S2(F, H), "single_transformer_blocks.%ld.proj_mlp.weight", i);
		}
		add(K_WEIGHT, -1, 2, S2(64, H), "proj_out.weight");
	} else if (!strcmp(arch, "mixtral")) { /* 4 experts a block: the expert index is not a block */
		add(K_EMBED, -1, 2, S2(V, H), "model.embed_tokens.weight");
		for (long i = 0; i < L; i++) {
			add(K_NORM, i, 1, S1(H), "model.layers.%ld.input_layernorm.weight", i);
			add(K_WEIGHT, i, 2, S2(H, H), "model.layers.%ld.self_attn.q_proj.weight", i);
			add(K_WEIGHT, i, 2, S2(4, H), "model.layers.%ld.block_sparse_moe.gate.weight", i);
			for (int e = 0; e < 4; e++) {
				add(K_WEIGHT, i, 2, S2(F, H), "model.layers.%ld.block_sparse_moe.experts.%d.w1.weight", i, e);
				add(K_WEIGHT, i, 2, S2(H, F), "model.layers.%ld.block_sparse_moe.experts.%d.w2.weight", i, e);
			}
		}
		add(K_NORM, -1, 1, S1(H), "model.norm.weight");
		add(K_EMBED, -1, 2, S2(V, H), "lm_head.weight");
	} else if (!strcmp(arch, "llama-tied")) { /* tied embeddings: no lm_head */
		add(K_EMBED, -1, 2, S2(V, H), "model.embed_tokens.weight");
		for (long i = 0; i < L; i++) {
			add(K_NORM, i, 1, S1(H), "model.layers.%ld.input_layernorm.weight", i);
			add(K_WEIGHT, i, 2, S2(H, H), "model.layers.%ld.self_attn.q_proj.weight", i);
			add(K_WEIGHT, i, 2, S2(F, H), "model.layers.%ld.mlp.up_proj.weight", i);
			add(K_WEIGHT, i, 2, S2(H, F), "model.layers.%ld.mlp.down_proj.weight", i);
		}
		add(K_NORM, -1, 1, S1(H), "model.norm.weight");
	} else if (!strcmp(arch, "gptq")) { /* a GPTQ checkpoint: packed integers and scales */
		add(K_EMBED, -1, 2, S2(V, H), "model.embed_tokens.weight");
		for (long i = 0; i < L; i++) {
			add(K_NORM, i, 1, S1(H), "model.layers.%ld.input_layernorm.weight", i);
			add(K_POS_I64, i, 2, S2(H / 8, H), "model.layers.%ld.self_attn.q_proj.qweight", i);
			add(K_POS_I64, i, 2, S2(1, H / 8), "model.layers.%ld.self_attn.q_proj.qzeros", i);
			add(K_WEIGHT, i, 2, S2(1, H), "model.layers.%ld.self_attn.q_proj.scales", i);
			add(K_POS_I64, i, 1, S1(H), "model.layers.%ld.self_attn.q_proj.g_idx", i);
		}
		add(K_EMBED, -1, 2, S2(V, H), "lm_head.weight");
	} else if (!strcmp(arch, "noblocks")) { /* names no pattern knows (a UNet-like stem) */
		for (long i = 0; i < L; i++)
			add(K_WEIGHT, -1, 2, S2(H, H), "stage%ld.conv.weight", i);
	} else if (!strcmp(arch, "many")) {
		/* a header with very many small tensors (g_many of them) */
		for (size_t i = 0; i < g_many; i++)
			add(K_WEIGHT, (long)(i % (size_t)L), 1, S1(H), "blk.%ld.t%zu.weight", (long)(i % (size_t)L), i);
	} else {
		fprintf(stderr, "gen-family: unknown --arch '%s' (llama, gpt2, clip, t5, whisper, clip2, "
		                "vlm, flux, diffusers, mixtral, llama-tied, gptq, noblocks, many)\n",
		        arch);
		exit(2);
	}
}

/* --fp8: every matrix (not the embeddings) becomes F8_E4M3, and its
 * scales follow it. */
static void fp8_expand(void)
{
	size_t n0 = nt;
	struct tensor *old = malloc(n0 * sizeof(*old));
	if (!old) {
		perror("gen-family");
		exit(1);
	}
	memcpy(old, T, n0 * sizeof(*old));
	nt = 0;
	for (size_t i = 0; i < n0; i++) {
		const struct tensor *t = &old[i];
		add(t->kind, t->block, t->rank, t->shape, "%s", t->name);
		if (g_fp8 == FP8_NONE || t->kind != K_WEIGHT || t->rank != 2)
			continue;
		size_t w = nt - 1;
		T[w].fp8 = 1;
		if (g_fp8 == FP8_BLOCK) {
			add(K_SCALE, t->block, 2, S2((t->shape[0] + 127) / 128, (t->shape[1] + 127) / 128),
			    "%s_scale_inv", t->name);
		} else {
			size_t n = strlen(t->name);
			add(K_SCALE, t->block, 1, S1(1), "%s_scale", t->name);
			if (n > 6 && !strcmp(t->name + n - 6, "weight"))
				add(K_ISCALE, t->block, 1, S1(1), "%.*sinput_scale", (int)(n - 6), t->name);
		}
		T[nt - (g_fp8 == FP8_TENSOR && T[nt - 1].kind == K_ISCALE ? 2 : 1)].of = w;
	}
	free(old);
}

static uint64_t nelem(const struct tensor *t)
{
	uint64_t n = 1;
	for (unsigned i = 0; i < t->rank; i++)
		n *= t->shape[i];
	return n;
}

static unsigned esize(const struct tensor *t, enum fdt dt)
{
	if (t->kind == K_POS_I64)
		return 8;
	if (t->kind == K_MASK_BOOL || t->fp8)
		return 1;
	if (t->kind == K_SCALE || t->kind == K_ISCALE)
		return 4;
	return dt == F_F64 ? 8 : dt == F_F32 ? 4 : 2;
}

static uint64_t total_bytes(enum fdt dt)
{
	uint64_t b = 0;
	for (size_t i = 0; i < nt; i++)
		b += nelem(&T[i]) * esize(&T[i], dt);
	return b;
}

/* ---- values ------------------------------------------------------------------ */
static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* uniform in [-0.5, 0.5), from (seed, model, tensor, element): one mix
 * per element, the rest is hashed once per tensor */
static uint64_t key_of(uint64_t seed, uint64_t model, uint64_t tensor)
{
	return mix(seed ^ mix(model * 0x100000001b3ull ^ mix(tensor)));
}
static uint64_t hash_at(uint64_t key, uint64_t i) { return mix(key ^ (i * 0xd1b54a32d192ed03ull)); }
static double unif(uint64_t h) { return (double)(h >> 11) * 0x1p-53 - 0.5; }

static int g_specials;

/* kb, km: key_of(seed, 0, tensor) and key_of(seed, model, tensor) */
static double value(uint64_t kb, uint64_t km, unsigned model, size_t ti, uint64_t i, long L)
{
	const struct tensor *t = &T[ti];
	uint64_t h = hash_at(kb, i);
	double base;
	switch (t->kind) {
	case K_NORM: base = 1.0 + 0.1 * unif(h); break;
	case K_BIAS: base = 0.02 * unif(h); break;
	default: /* a triangular spread: the sum of two uniforms from one hash */
		base = 0.08 * ((double)(uint32_t)h * 0x1p-32 + (double)(h >> 32) * 0x1p-32 - 1.0);
		break;
	}
	if (g_specials && ti == 0 && i < 8) {
		/* edge values in the first tensor: NaN, infinities, signed zeros,
		 * subnormals of every output dtype */
		static const double sp[8] = {NAN, 0.0, INFINITY, -0.0, 1e-41, -3e-8, 6e-8, 65504.0};
		if (i == 0 && model == 0)
			return NAN;
		if (i == 1)
			return model == 1 ? NAN : 0.25;
		if (i == 2 || i == 7)
			return sp[i];
		if (i == 3)
			return -0.0;
		return sp[i] * (model ? 1.5 : 1.0);
	}
	if (model == 0)
		return base;
	double depth = t->block < 0 ? 0.5 : 1.0 + 2.0 * (double)t->block / (double)(L > 1 ? L - 1 : 1);
	return base + 0.01 * depth * unif(hash_at(km, i));
}

/* ---- float encoders (independent of liblines) --------------------------------- */
static uint16_t enc_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40);
	return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

/* F8_E4M3 (the "fn" variant, largest 448): the nearest code by search,
 * ties to the even code, saturating */
static double dec_e4m3(unsigned c)
{
	unsigned e = (c >> 3) & 15, m = c & 7;
	double v = e ? ldexp(8 + m, (int)e - 10) : ldexp(m, -9);
	return c & 0x80 ? -v : v;
}

static uint8_t enc_e4m3(double v)
{
	double a = fabs(v) > 448 ? 448 : fabs(v), best = INFINITY;
	unsigned code = 0;
	for (unsigned c = 0; c < 0x7f; c++) {
		double d = fabs(dec_e4m3(c) - a);
		if (d < best || (d == best && !(c & 1)))
			best = d, code = c;
	}
	return (uint8_t)(code | (signbit(v) ? 0x80 : 0));
}

/* The scale of block (br, bc) of weight w of a model: each model is
 * quantized on its own, so its scales are its own. */
static float fp8_scale(uint64_t seed, unsigned model, size_t w, uint64_t br, uint64_t bc)
{
	uint64_t h = hash_at(key_of(seed ^ 0x5ca1e, model, w), br * 65536 + bc);
	return (float)(0.12 / 448 * (1.0 + 0.25 * unif(h)));
}

static void put(unsigned char *p, enum fdt dt, double v)
{
	float f = (float)v;
	if (dt == F_F64) { /* the value itself, not rounded to float32 first */
		memcpy(p, &v, 8);
	} else if (dt == F_F32) {
		memcpy(p, &f, 4);
	} else if (dt == F_BF16) {
		uint16_t h = enc_bf16(f);
		memcpy(p, &h, 2);
	} else {
		_Float16 h = (_Float16)f;
		memcpy(p, &h, 2);
	}
}

/* ---- writer ------------------------------------------------------------------ */
static int g_int_differ;
static int g_reverse; /* fine-tunes store their tensors in reverse order */

/* Write tensors k0..k1-1 (in the model's storage order) as one file. */
static void write_part(const char *path, unsigned model, uint64_t seed, enum fdt dt, long L,
                       size_t k0, size_t k1)
{
	static const char *const dname[] = {"BF16", "F16", "F32", "F64"};
	size_t hcap = 256 + nt * 256, hl = 0;
	char *h = malloc(hcap);
	uint64_t off = 0;
	FILE *f = fopen(path, "wb");
	unsigned char *buf = malloc(1 << 20);

	if (!f || !h || !buf) {
		fprintf(stderr, "gen-family: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	hl += (size_t)snprintf(h + hl, hcap - hl,
	                       "{\"__metadata__\":{\"format\":\"pt\",\"generator\":\"gen-family\"}");
	for (size_t k = k0; k < k1; k++) {
		size_t i = g_reverse && model ? nt - 1 - k : k;
		const struct tensor *t = &T[i];
		uint64_t n = nelem(t) * esize(t, dt);
		const char *d = t->kind == K_POS_I64     ? "I64"
		                : t->kind == K_MASK_BOOL ? "BOOL"
		                : t->fp8                 ? "F8_E4M3"
		                : t->kind == K_SCALE || t->kind == K_ISCALE ? "F32"
		                                                            : dname[dt];
		hl += (size_t)snprintf(h + hl, hcap - hl, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t->name, d);
		for (unsigned d2 = 0; d2 < t->rank; d2++)
			hl += (size_t)snprintf(h + hl, hcap - hl, "%s%" PRIu64, d2 ? "," : "", t->shape[d2]);
		hl += (size_t)snprintf(h + hl, hcap - hl, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}",
		                       off, off + n);
		off += n;
	}
	hl += (size_t)snprintf(h + hl, hcap - hl, "}");
	/* the reference writer pads with spaces to a multiple of 8 */
	while (hl % 8)
		h[hl++] = ' ';
	unsigned char len[8];
	for (int i = 0; i < 8; i++)
		len[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	fwrite(len, 1, 8, f);
	fwrite(h, 1, hl, f);

	for (size_t k = k0; k < k1; k++) {
		size_t ti = g_reverse && model ? nt - 1 - k : k;
		const struct tensor *t = &T[ti];
		uint64_t n = nelem(t);
		unsigned es = esize(t, dt);
		uint64_t per = (1 << 20) / es;
		uint64_t kb = key_of(seed, 0, ti), km = key_of(seed, model, ti);
		for (uint64_t i0 = 0; i0 < n; i0 += per) {
			uint64_t cnt = n - i0 < per ? n - i0 : per;
			for (uint64_t j = 0; j < cnt; j++) {
				uint64_t i = i0 + j;
				unsigned char *p = buf + j * es;
				if (t->kind == K_POS_I64) {
					int64_t v = (int64_t)i + (g_int_differ && model >= 1 && i == 0);
					memcpy(p, &v, 8);
				} else if (t->kind == K_MASK_BOOL) {
					uint64_t P = t->shape[3];
					*p = (i % P) <= (i / P % P);
				} else if (t->kind == K_SCALE) {
					float sc = g_fp8 == FP8_BLOCK
					                   ? fp8_scale(seed, model, t->of, i / t->shape[1], i % t->shape[1])
					                   : fp8_scale(seed, model, t->of, 0, 0);
					memcpy(p, &sc, 4);
				} else if (t->kind == K_ISCALE) {
					float sc = 0.02f;
					memcpy(p, &sc, 4);
				} else if (t->fp8) {
					uint64_t C = t->shape[1], r = i / C, c = i % C;
					float sc = g_fp8 == FP8_BLOCK ? fp8_scale(seed, model, ti, r / 128, c / 128)
					                              : fp8_scale(seed, model, ti, 0, 0);
					*p = enc_e4m3(value(kb, km, model, ti, i, L) / sc);
				} else {
					put(p, dt, value(kb, km, model, ti, i, L));
				}
			}
			fwrite(buf, es, cnt, f);
		}
	}
	if (fclose(f) != 0) {
		fprintf(stderr, "gen-family: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	free(h);
	free(buf);
}

static void write_model(const char *path, unsigned model, uint64_t seed, enum fdt dt, long L)
{
	write_part(path, model, seed, dt, L, 0, nt);
}

static void put_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
		fprintf(stderr, "gen-family: %s: %s\n", path, strerror(errno));
		exit(1);
	}
}

/*
 * A Hugging Face model directory: K shards split at places that differ
 * from model to model, the index, and two small non-weight files.
 */
static void write_sharded(const char *dir, unsigned model, uint64_t seed, enum fdt dt, long L,
                          unsigned K)
{
	size_t *cut = calloc(K + 1, sizeof(*cut));
	FILE *ix;
	char path[4200];
	uint64_t total = 0;

	mkdir(dir, 0777);
	cut[K] = nt;
	for (unsigned k = 1; k < K; k++) {
		long c = (long)(k * nt / K) + (long)(model % 3) - 1;
		if (c <= (long)cut[k - 1])
			c = (long)cut[k - 1] + 1;
		cut[k] = (size_t)c < nt ? (size_t)c : nt;
	}
	snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
	if (!(ix = fopen(path, "w"))) {
		fprintf(stderr, "gen-family: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	for (size_t i = 0; i < nt; i++)
		total += nelem(&T[i]) * esize(&T[i], dt);
	fprintf(ix, "{\n  \"metadata\": {\"total_size\": %" PRIu64 "},\n  \"weight_map\": {", total);
	for (unsigned k = 0; k < K; k++) {
		char name[64];
		snprintf(name, sizeof(name), "model-%05u-of-%05u.safetensors", k + 1, K);
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		write_part(path, model, seed, dt, L, cut[k], cut[k + 1]);
		for (size_t q = cut[k]; q < cut[k + 1]; q++) {
			size_t i = g_reverse && model ? nt - 1 - q : q;
			fprintf(ix, "%s\n    \"%s\": \"%s\"", q ? "," : "", T[i].name, name);
		}
	}
	fprintf(ix, "\n  }\n}\n");
	fclose(ix);
	snprintf(path, sizeof(path), "%s/config.json", dir);
	put_text(path, g_fp8 == FP8_BLOCK
	                       ? "{\"model_type\": \"gen-family\", \"num_hidden_layers\": 0,\n"
	                         " \"quantization_config\": {\"quant_method\": \"fp8\", \"fmt\": \"e4m3\",\n"
	                         "  \"activation_scheme\": \"dynamic\", \"weight_block_size\": [128, 128]}}\n"
	               : g_fp8 == FP8_TENSOR
	                       ? "{\"model_type\": \"gen-family\", \"num_hidden_layers\": 0,\n"
	                         " \"quantization_config\": {\"quant_method\": \"compressed-tensors\",\n"
	                         "  \"format\": \"float-quantized\"}}\n"
	                       : "{\"model_type\": \"gen-family\", \"num_hidden_layers\": 0}\n");
	snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
	put_text(path, "{\"version\": \"1.0\", \"model\": {\"type\": \"BPE\"}}\n");
	free(cut);
}

static const char usage_text[] =
	"usage: gen-family --arch ARCH --dtype bf16|f16|f32|f64 --layers L [--layers2 L2]\n"
	"                  (--hidden H | --size BYTES) [--vocab V] --models N --seed S\n"
	"                  --out DIR [--specials] [--int-differ] [--reverse] [--shards K]\n"
	"                  [--tensors N] [--fp8 block|tensor] [--print-size] [--ragged]\n"
	"ARCH: llama, llama-tied, mixtral, gpt2, clip, clip2, t5, whisper, vlm, flux,\n"
	"      diffusers, gptq, noblocks, many\n";

static void usage(void)
{
	fputs(usage_text, stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"arch", required_argument, NULL, 'a'},     {"dtype", required_argument, NULL, 'd'},
		{"layers", required_argument, NULL, 'l'},   {"hidden", required_argument, NULL, 'H'},
		{"size", required_argument, NULL, 's'},     {"vocab", required_argument, NULL, 'V'},
		{"models", required_argument, NULL, 'n'},   {"seed", required_argument, NULL, 'S'},
		{"out", required_argument, NULL, 'o'},      {"specials", no_argument, NULL, 'x'},
		{"int-differ", no_argument, NULL, 'i'},     {"print-size", no_argument, NULL, 'p'},
		{"reverse", no_argument, NULL, 'r'},         {"ragged", no_argument, NULL, 'g'},
		{"shards", required_argument, NULL, 'k'},
		{"tensors", required_argument, NULL, 'T'},
		{"layers2", required_argument, NULL, 'L'},
		{"fp8", required_argument, NULL, '8'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *arch = "llama", *out = NULL;
	enum fdt dt = F_BF16;
	long L = 4;
	uint64_t H = 0, V = 0, size = 0, seed = 1;
	unsigned models = 2;
	int c, print_size = 0, ragged = 0;
	unsigned shards = 0;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'a': arch = optarg; break;
		case 'd':
			if (!strcmp(optarg, "bf16")) dt = F_BF16;
			else if (!strcmp(optarg, "f16")) dt = F_F16;
			else if (!strcmp(optarg, "f32")) dt = F_F32;
			else if (!strcmp(optarg, "f64")) dt = F_F64;
			else usage();
			break;
		case 'l': L = strtol(optarg, NULL, 10); break;
		case 'H': H = strtoull(optarg, NULL, 10); break;
		case 's': {
			char *end;
			double v = strtod(optarg, &end);
			if (*end == 'K' || *end == 'k') v *= 1024;
			if (*end == 'M' || *end == 'm') v *= 1024 * 1024;
			if (*end == 'G' || *end == 'g') v *= 1024.0 * 1024 * 1024;
			size = (uint64_t)v;
			break;
		}
		case 'V': V = strtoull(optarg, NULL, 10); break;
		case 'n': models = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'S': seed = strtoull(optarg, NULL, 10); break;
		case 'o': out = optarg; break;
		case 'x': g_specials = 1; break;
		case 'i': g_int_differ = 1; break;
		case 'p': print_size = 1; break;
		case 'r': g_reverse = 1; break;
		case 'g': ragged = 1; break;
		case 'k': shards = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'T': g_many = strtoul(optarg, NULL, 10); break;
		case 'L': g_layers2 = strtol(optarg, NULL, 10); break;
		case '8':
			if (!strcmp(optarg, "block")) g_fp8 = FP8_BLOCK;
			else if (!strcmp(optarg, "tensor")) g_fp8 = FP8_TENSOR;
			else usage();
			break;
		case 'h': fputs(usage_text, stdout); return 0;
		default: usage();
		}
	}
	if ((!out && !print_size) || L < 1 || (!H && !size))
		usage();
	if (size) {
		/* the largest hidden size (a multiple of 64) that fits in size */
		uint64_t best = 64;
		for (uint64_t h = 64; h <= 65536; h += 64) {
			build(arch, L, h, V ? V : 4 * h);
			if (total_bytes(dt) > size)
				break;
			best = h;
		}
		H = best;
	}
	if (H < 8 || H % 8) {
		fprintf(stderr, "gen-family: --hidden must be a multiple of 8\n");
		return 2;
	}
	build(arch, L, H, V ? V : 4 * H);
	for (size_t q = 0; ragged && q < nt; q++)
		if (T[q].kind == K_NORM && T[q].rank == 1)
			T[q].shape[0] += 3;
	fp8_expand();
	if (print_size) {
		printf("%" PRIu64 "\n", total_bytes(dt));
		return 0;
	}
	mkdir(out, 0777);
	for (unsigned m = 0; m <= models; m++) {
		char path[4096];
		if (shards) { /* DIR/base/ and DIR/ftN/, as downloaded from a hub */
			if (m == 0)
				snprintf(path, sizeof(path), "%s/base", out);
			else
				snprintf(path, sizeof(path), "%s/ft%u", out, m);
			write_sharded(path, m, seed, dt, L, shards);
			continue;
		}
		if (m == 0)
			snprintf(path, sizeof(path), "%s/base.safetensors", out);
		else
			snprintf(path, sizeof(path), "%s/ft%u.safetensors", out, m);
		write_model(path, m, seed, dt, L);
	}
	return 0;
}
