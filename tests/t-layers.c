/*
 * t-layers.c -- block indices from tensor names (the examples of the spec
 * and the traps around them), --layer-regex and --num-layers, and the
 * LiNeS ramp lambda(i) = alpha + beta i / (L - 1).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "layers.h"
#include "tap.h"

static long idx(const struct layers *ly, const char *name)
{
	long i = -99;
	struct lines_error e;
	if (layers_index(ly, name, &i, &e) < 0)
		return -100;
	return i;
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
	layers_free(&ly);

	struct lines_layer_opts o = {"^stage([0-9]+)/", 0};
	ok(layers_init(&ly, &o, &e) == 0, "a custom pattern compiles");
	ok(idx(&ly, "stage3/conv.weight") == 3 && idx(&ly, "model.layers.7.w") == -1,
	   "--layer-regex replaces the default pattern");
	layers_free(&ly);

	struct lines_layer_opts two = {"(a)([0-9]+)", 0};
	ok(layers_init(&ly, &two, &e) == LINES_EUSAGE && strstr(e.msg, "exactly one capture group"),
	   "two capture groups are refused (%s)", e.msg);
	struct lines_layer_opts none = {"layers", 0};
	ok(layers_init(&ly, &none, &e) == LINES_EUSAGE, "no capture group is refused");
	struct lines_layer_opts badre = {"(unclosed", 0};
	ok(layers_init(&ly, &badre, &e) == LINES_EUSAGE && strstr(e.msg, "bad --layer-regex"),
	   "an invalid pattern is a usage error (%s)", e.msg);
	struct lines_layer_opts word = {"\\.([a-z]+)\\.", 0};
	ok(layers_init(&ly, &word, &e) == 0, "a pattern capturing letters compiles");
	ok(idx(&ly, "model.abc.w") == -100, "capturing a non-number is an error");
	layers_free(&ly);
	struct lines_layer_opts neg = {NULL, -3};
	ok(layers_init(&ly, &neg, &e) == LINES_EUSAGE, "a negative --num-layers is refused");

	/* the ramp */
	ok(layers_lambda(0, 8, 0.3, 0.7) == 0.3, "lambda(0) = alpha");
	ok(layers_lambda(7, 8, 0.3, 0.7) == 0.3 + 0.7, "lambda(L-1) = alpha + beta");
	ok(fabs(layers_lambda(3, 8, 0.3, 0.7) - (0.3 + 0.7 * 3 / 7.0)) < 1e-15, "lambda(3) of 8");
	ok(layers_lambda(-1, 8, 0.3, 0.7) == 0.3, "outside the blocks: alpha");
	ok(layers_lambda(0, 1, 0.3, 0.7) == 0.3, "L = 1: alpha");
	ok(layers_lambda(5, 11, 0.5, 0.5) == 0.75, "midpoint of an odd ramp");
	return tap_done();
}
