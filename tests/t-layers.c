/*
 * t-layers.c -- block indices and stacks from tensor names (the examples of
 * the spec and the traps around them), --layer-regex with one or two
 * capture groups and --num-layers, and the LiNeS ramp
 * lambda(i) = alpha + beta i / (L - 1).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "layers.h"
#include "tap.h"

static char stack_buf[256];

static long idx(const struct layers *ly, const char *name)
{
	long i = -99;
	size_t so, sl;
	struct lines_error e;
	if (layers_index(ly, name, &i, &so, &sl, &e) < 0)
		return -100;
	snprintf(stack_buf, sizeof(stack_buf), "%.*s", (int)sl, name + so);
	return i;
}

/* The stack of name ("" outside the blocks). */
static const char *stack(const struct layers *ly, const char *name)
{
	idx(ly, name);
	return stack_buf;
}

int main(void)
{
	struct layers ly;
	struct lines_error e;
	static const struct {
		const char *name;
		long block;
	} cases[] = {
		{"model.layers.7.mlp.up_proj.weight", 7},
		{"transformer.h.3.attn.c_attn.weight", 3},
		{"encoder.block.5.layer.1.DenseReluDense.wi.weight", 5},
		{"model.visual.transformer.resblocks.11.ln_1.weight", 11},
		{"blk.2.attn_q.weight", 2},
		{"model.embed_tokens.weight", -1},
		{"layers.0.w", 0},                    /* at the start of the name */
		{"decoder.block.12.layer.2.DenseReluDense.wo.weight", 12},
		{"model.layers.10.self_attn.q_proj.weight", 10},
		{"vision.blocks.31.attn.qkv.weight", 31},
		{"text.layer.4.output.dense.weight", 4},
		{"model.norm.weight", -1},
		{"lm_head.weight", -1},
		{"transformer.h.3", -1},              /* no dot after the number */
		{"transformer.h3.attn.weight", -1},   /* no dot before the number */
		{"my_layers.3.weight", -1},           /* keyword must follow a dot or start */
		{"model.layersX.3.weight", -1},
		{"transformer.h.x.attn", -1},
		{"model.layers.007.mlp", 7},
		{"a.h.1.b.layers.9.c", 1},           /* leftmost match wins */
	};

	ok(layers_init(&ly, NULL, &e) == 0, "default pattern compiles");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ok(idx(&ly, cases[i].name) == cases[i].block, "%s -> %ld (got %ld)", cases[i].name,
		   cases[i].block, idx(&ly, cases[i].name));
	ok(idx(&ly, "model.layers.99999999999999999999.w") == -100,
	   "an absurd block index is an error, not an overflow");

	/* stacks: the name before the block index */
	static const struct {
		const char *name, *stack;
		long block;
	} st[] = {
		{"encoder.block.5.layer.1.DenseReluDense.wi.weight", "encoder.block", 5},
		{"decoder.block.1.layer.0.SelfAttention.q.weight", "decoder.block", 1},
		{"model.layers.7.mlp.up_proj.weight", "model.layers", 7},
		{"model.encoder.layers.31.fc1.weight", "model.encoder.layers", 31},
		{"model.decoder.layers.1.fc1.weight", "model.decoder.layers", 1},
		{"vision_model.encoder.layers.3.mlp.fc1.weight", "vision_model.encoder.layers", 3},
		{"text_model.encoder.layers.11.mlp.fc1.weight", "text_model.encoder.layers", 11},
		{"visual.transformer.resblocks.23.attn.in_proj_weight", "visual.transformer.resblocks", 23},
		{"transformer.resblocks.11.ln_1.weight", "transformer.resblocks", 11},
		{"double_blocks.18.img_attn.qkv.weight", "double_blocks", 18},
		{"single_blocks.37.linear1.weight", "single_blocks", 37},
		{"transformer_blocks.3.attn.to_q.weight", "transformer_blocks", 3},
		{"single_transformer_blocks.9.proj_mlp.weight", "single_transformer_blocks", 9},
		{"down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight", "down_blocks", 1},
		{"model.diffusion_model.input_blocks.4.1.proj_in.weight",
		 "model.diffusion_model.input_blocks", 4},
		{"blk.2.attn_q.weight", "blk", 2},
		{"layers.0.w", "layers", 0},
		{"model.embed_tokens.weight", "", -1},
	};
	for (size_t i = 0; i < sizeof(st) / sizeof(st[0]); i++) {
		long b = idx(&ly, st[i].name);
		ok(b == st[i].block && !strcmp(stack_buf, st[i].stack), "%s -> stack '%s' block %ld (got '%s' %ld)",
		   st[i].name, st[i].stack, st[i].block, stack_buf, b);
	}
	layers_free(&ly);

	struct lines_layer_opts o = {"^stage([0-9]+)/", 0, 0, NULL};
	ok(layers_init(&ly, &o, &e) == 0, "a custom pattern compiles");
	ok(idx(&ly, "stage3/conv.weight") == 3 && idx(&ly, "model.layers.7.w") == -1,
	   "--layer-regex replaces the default pattern");
	ok(!strcmp(stack(&ly, "stage3/conv.weight"), "stage"),
	   "one capture group: the stack is the name before the index (%s)", stack_buf);
	layers_free(&ly);

	struct lines_layer_opts two = {"^(unet\\.[a-z]+)_([0-9]+)\\.", 0, 0, NULL};
	ok(layers_init(&ly, &two, &e) == 0, "two capture groups: the stack, then the index");
	ok(idx(&ly, "unet.down_2.conv.weight") == 2 && !strcmp(stack_buf, "unet.down"),
	   "... name the stack and the block (%s %ld)", stack_buf, idx(&ly, "unet.down_2.conv.weight"));
	ok(idx(&ly, "unet.mid.conv.weight") == -1, "... and leave the rest outside");
	layers_free(&ly);
	struct lines_layer_opts three = {"(a)(b)([0-9]+)", 0, 0, NULL};
	ok(layers_init(&ly, &three, &e) == LINES_EUSAGE && strstr(e.msg, "it has 3"),
	   "three capture groups are refused (%s)", e.msg);
	struct lines_layer_opts none = {"layers", 0, 0, NULL};
	ok(layers_init(&ly, &none, &e) == LINES_EUSAGE, "no capture group is refused");
	struct lines_layer_opts badre = {"(unclosed", 0, 0, NULL};
	ok(layers_init(&ly, &badre, &e) == LINES_EUSAGE && strstr(e.msg, "bad --layer-regex"),
	   "an invalid pattern is a usage error (%s)", e.msg);
	struct lines_layer_opts word = {"\\.([a-z]+)\\.", 0, 0, NULL};
	ok(layers_init(&ly, &word, &e) == 0, "a pattern capturing letters compiles");
	ok(idx(&ly, "model.abc.w") == -100, "capturing a non-number is an error");
	layers_free(&ly);
	struct lines_layer_opts neg = {NULL, -3, 0, NULL};
	ok(layers_init(&ly, &neg, &e) == LINES_EUSAGE, "a negative --num-layers is refused");

	/* the ramp */
	ok(layers_lambda(0, 8, 0.3, 0.7) == 0.3, "lambda(0) = alpha");
	ok(layers_lambda(7, 8, 0.3, 0.7) == 0.3 + 0.7, "lambda(L-1) = alpha + beta");
	ok(fabs(layers_lambda(3, 8, 0.3, 0.7) - (0.3 + 0.7 * 3 / 7.0)) < 1e-15, "lambda(3) of 8");
	ok(layers_lambda(-1, 8, 0.3, 0.7) == 0.3, "outside the blocks: alpha");
	ok(layers_lambda(0, 1, 0.3, 0.7) == 0.3, "L = 1: alpha");
	ok(layers_lambda(5, 11, 0.5, 0.5) == 0.75, "midpoint of an odd ramp");

	/* mergekit's gradient, and the schedule of the ramp (--schedule) */
	static const double g3[] = {0.1, 0.5, 1.0}, g2[] = {0, 1}, g1[] = {0.25};
	ok(lines_gradient(g3, 3, 0) == 0.1 && lines_gradient(g3, 3, 1) == 1.0 &&
	       lines_gradient(g3, 3, 0.5) == 0.5,
	   "gradient: the values at t = 0, 1/2, 1");
	ok(fabs(lines_gradient(g3, 3, 0.25) - 0.3) < 1e-15 &&
	       fabs(lines_gradient(g3, 3, 0.75) - 0.75) < 1e-15,
	   "gradient: linear between them");
	ok(lines_gradient(g3, 3, -0.5) == 0.1 && lines_gradient(g3, 3, 2) == 1.0 &&
	       lines_gradient(g1, 1, 0.7) == 0.25,
	   "gradient: the first value before 0, the last after 1; one value is constant");
	ok(lines_gradient(g2, 2, 3 / 7.0) == 3 / 7.0, "gradient 0,1 is t itself");
	ok(layers_lambda_at(3, 8, 0.3, 0.7, NULL, 0) == layers_lambda(3, 8, 0.3, 0.7),
	   "no schedule: the linear ramp");
	ok(layers_lambda_at(2, 5, 0.3, 0.7, g3, 3) == 0.3 + 0.7 * 0.5 &&
	       layers_lambda_at(4, 5, 0.3, 0.7, g3, 3) == 0.3 + 0.7 * 1.0 &&
	       layers_lambda_at(0, 5, 0.3, 0.7, g3, 3) == 0.3 + 0.7 * 0.1,
	   "schedule: alpha + beta f(i / (L - 1))");
	ok(layers_lambda_at(-1, 5, 0.3, 0.7, g3, 3) == 0.3 &&
	       layers_lambda_at(0, 1, 0.3, 0.7, g3, 3) == 0.3 + 0.7 * 0.1,
	   "schedule: alpha outside the blocks, f(0) for one block");
	return tap_done();
}
