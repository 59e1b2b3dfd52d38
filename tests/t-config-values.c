/*
 * t-config-values.c -- mergekit's parameter values as lines resolves them
 * (src/cli/merge_config.c), against values computed by hand from
 * MERGEKIT.md's rules: gradients over the layer position t, the first
 * matching filter, the fall-through from a model's value to the global
 * one, t = 0 outside the blocks; the closest-name hint; and where each
 * problem of a configuration is reported (line and column).
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "merge_config.h"
#include "tap.h"

static struct mcfg *parse(const char *text)
{
	return mcfg_read("t.yml", text, strlen(text));
}

/* NAME for MODEL at TENSOR, T is WANT (within 1e-15). */
static void value_is(const struct mcfg *c, size_t model, const char *name, const char *tensor,
                     double t, double want)
{
	double got = NAN;
	int r = mcfg_value_for(c, model, name, tensor, t, &got);
	ok(r == 1 && fabs(got - want) <= 1e-15, "%s of model %zu at %s, t = %g: %.17g (want %.17g)",
	   name, model, tensor, t, got, want);
}

static int has_problem(const struct mcfg *c, const char *prefix, const char *part)
{
	for (size_t i = 0; i < c->nproblems; i++)
		if (!strncmp(c->problems[i], prefix, strlen(prefix)) &&
		    strstr(c->problems[i], part))
			return 1;
	return 0;
}

static void show_problems(const struct mcfg *c)
{
	for (size_t i = 0; i < c->nproblems; i++)
		diag("%s", c->problems[i]);
}

static void gradients(void)
{
	struct mcfg *c = parse("merge_method: task_arithmetic\n"
	                       "base_model: org/b\n"
	                       "models:\n"
	                       "  - model: org/a\n"
	                       "    parameters:\n"
	                       "      weight: [1, 3, 2, 6]\n"
	                       "  - model: org/c\n"
	                       "parameters:\n"
	                       "  weight: [0, 0.5, 1]\n"
	                       "  density: [0.4]\n");
	ok(c->nproblems == 0, "a configuration with gradients reads without problems");
	show_problems(c);
	/* [0, 0.5, 1]: s = 2t */
	value_is(c, 1, "weight", "model.layers.0.mlp.up_proj.weight", 0.0, 0.0);
	value_is(c, 1, "weight", "x", 0.25, 0.25);
	value_is(c, 1, "weight", "x", 0.5, 0.5);
	value_is(c, 1, "weight", "x", 0.75, 0.75);
	value_is(c, 1, "weight", "x", 1.0, 1.0);
	/* [1, 3, 2, 6]: s = 3t; t = 0.5: between 3 and 2 at 0.5; t = 0.9: s = 2.7 */
	value_is(c, 0, "weight", "x", 0.5, 2.5);
	value_is(c, 0, "weight", "x", 1.0 / 3.0, 3.0);
	value_is(c, 0, "weight", "x", 0.9, (1 - (0.9 * 3 - 2)) * 2 + (0.9 * 3 - 2) * 6);
	value_is(c, 0, "weight", "x", 1.0, 6.0);
	/* one value: the same everywhere */
	value_is(c, 0, "density", "x", 0.7, 0.4);
	/* block i of L: t = i / (L - 1); outside the blocks t = 0; one block: t = 1 */
	ok(mcfg_layer_t(-1, 8) == 0.0 && mcfg_layer_t(7, 8) == 1.0 && mcfg_layer_t(0, 1) == 1.0 &&
	       mcfg_layer_t(3, 8) == 3.0 / 7.0,
	   "layer positions: -1 -> 0, 7 of 8 -> 1, 0 of 1 -> 1, "
	   "3 of 8 -> 3/7");
	/* the embeddings (outside, t = 0) take the gradient's first value */
	value_is(c, 0, "weight", "model.embed_tokens.weight", mcfg_layer_t(-1, 8), 1.0);
	mcfg_free(c);
}

static void filters(void)
{
	struct mcfg *c = parse("merge_method: ties\n"
	                       "base_model: org/b\n"
	                       "models:\n"
	                       "  - model: org/a\n"
	                       "    parameters:\n"
	                       "      weight:\n"
	                       "        - filter: mlp\n"
	                       "          value: 2\n"
	                       "  - model: org/c\n"
	                       "parameters:\n"
	                       "  weight: 0.7\n"
	                       "  density:\n"
	                       "    - filter: self_attn\n"
	                       "      value: 0.5\n"
	                       "    - filter: mlp\n"
	                       "      value: [0, 1]\n"
	                       "    - value: 0.1\n"
	                       "  lambda:\n"
	                       "    - {filter: lm_head, value: 3}\n"
	                       "    - {filter: '*', value: [1, 2]}\n");
	ok(c->nproblems == 0, "a configuration with filters reads without problems");
	show_problems(c);
	const char *q = "model.layers.3.self_attn.q_proj.weight",
	           *up = "model.layers.3.mlp.up_proj.weight", *emb = "model.embed_tokens.weight";
	double t3 = mcfg_layer_t(3, 8);
	/* the first filter that is a substring wins; a gradient inside a filter */
	value_is(c, 0, "density", q, t3, 0.5);
	value_is(c, 0, "density", up, t3, t3);
	value_is(c, 1, "density", emb, 0.0, 0.1);
	/* a model's filters with no match fall through to the global value */
	value_is(c, 0, "weight", up, t3, 2.0);
	value_is(c, 0, "weight", q, t3, 0.7);
	value_is(c, 1, "weight", up, t3, 0.7);
	/* '*' matches every tensor */
	value_is(c, 0, "lambda", "lm_head.weight", 0.0, 3.0);
	value_is(c, 0, "lambda", q, t3, 1.0 + t3);
	/* nothing at any level: the caller's default */
	double v;
	ok(mcfg_value_for(c, 0, "rescale", q, t3, &v) == 0, "no value at any level: 0 (default)");
	mcfg_free(c);
}

/* An alias of mcfg_args that only reports. */
static void map(struct mcfg *c)
{
	char **args;
	size_t n, nm;
	if (mcfg_args(c, &args, &n, &nm) == 0)
		mcfg_args_free(args, n);
}

static void varying(void)
{
	/* consensus takes one weight per model (ties, dare, breadcrumbs,
	 * della, nuslerp, multislerp take them per tensor: t-tensor-params) */
	struct mcfg *c = parse("merge_method: consensus\n"
	                       "base_model: org/b\n"
	                       "models:\n"
	                       "  - model: org/a\n"
	                       "    parameters: {weight: [0.5, 0.5]}\n"
	                       "  - model: org/c\n"
	                       "    parameters:\n"
	                       "      weight: [0.2, 0.9]\n");
	map(c);
	ok(c->nproblems == 1 &&
	       has_problem(c, "t.yml:8:15:", "per-tensor values are not supported"),
	   "a gradient that varies is refused at its line and column (8:15); an equal one is not");
	show_problems(c);
	mcfg_free(c);
	c = parse("merge_method: ties\n"
	          "base_model: org/b\n"
	          "models:\n"
	          "  - model: org/a\n"
	          "    parameters:\n"
	          "      weight: 1\n"
	          "      density:\n"
	          "        - {filter: mlp, value: 0.5}\n"
	          "parameters:\n"
	          "  density: 0.5\n");
	map(c);
	ok(c->nproblems == 0,
	   "filters without a catch-all whose fall-through gives the same number "
	   "are accepted");
	show_problems(c);
	mcfg_free(c);
}

static void names(void)
{
	static const char *const params[] = {"weight", "density", "normalize", "lambda"};
	ok(mcfg_distance("kitten", "sitting") == 3 && mcfg_distance("", "abc") == 3 &&
	       mcfg_distance("same", "same") == 0 && mcfg_distance("modles", "models") == 1,
	   "edit distances: kitten/sitting 3, ''/abc 3, same 0, a swap 1");
	const char *a = mcfg_closest("densty", params, 4), *b = mcfg_closest("wieght", params, 4),
	           *d = mcfg_closest("xyzzy", params, 4);
	ok(a && !strcmp(a, "density") && b && !strcmp(b, "weight") && !d,
	   "closest: densty -> density, wieght -> weight, xyzzy -> none");
}

static void problems(void)
{
	struct mcfg *c = parse("merge_method: ties\n"
	                       "base_model: org/b\n"
	                       "modles: []\n"
	                       "models:\n"
	                       "  - model: org/a\n"
	                       "    parameters:\n"
	                       "      wieght: 1\n"
	                       "      density: high\n"
	                       "  - modle: c\n"
	                       "out_dtype: bfloat15\n"
	                       "lines:\n"
	                       "  alpha: auto\n"
	                       "  nrom: l2\n");
	map(c);
	show_problems(c);
	ok(has_problem(c, "t.yml:3:1:", "did you mean 'models'"),
	   "unknown key at 3:1, with 'models'");
	ok(has_problem(c, "t.yml:7:7:", "did you mean 'weight'"), "unknown parameter at 7:7");
	ok(has_problem(c, "t.yml:8:16:", "not a number"), "a string for a number at 8:16");
	ok(has_problem(c, "t.yml:9:5:", "did you mean 'model'"), "unknown key of a model at 9:5");
	ok(has_problem(c, "t.yml:10:12:", "bfloat16"), "an unknown dtype at 10:12, with bfloat16");
	ok(has_problem(c, "t.yml:13:3:", "did you mean 'norm'"), "unknown lines: key at 13:3");
	ok(has_problem(c, "t.yml:5:12:", "has no weight"), "a model without weight at 5:12");
	mcfg_free(c);
	c = parse("merge_method: tiez\nmodels: [{model: a}]\n");
	map(c);
	ok(c->nproblems == 2 && has_problem(c, "t.yml:1:15:", "did you mean 'ties'") &&
	       has_problem(c, "t.yml:2:18:", "no such file"),
	   "an unknown method at 1:15, with 'ties', and the model that does not exist at 2:18");
	show_problems(c);
	mcfg_free(c);
	c = parse("merge_method: slerp\nslices:\n  - sources: []\n");
	map(c);
	ok(has_problem(c, "t.yml:3:14:", "sources: expected a list"),
	   "slices: a slice without sources at 3:14");
	mcfg_free(c);
	c = parse("merge_method: slerp\nmodules: {}\n");
	map(c);
	ok(has_problem(c, "t.yml:2:1:", "modules: not supported"), "modules: refused at 2:1");
	mcfg_free(c);
	c = parse("merge_method: ties\nmodels: [\n");
	ok(c->nproblems == 1 && has_problem(c, "t.yml:3:1:", "not valid YAML"),
	   "broken YAML: one problem at the parser's mark");
	show_problems(c);
	mcfg_free(c);
}

/* T at tensor NAME of slice S, block I of N (I -1: outside) is WANT. */
static void slice_t_is(struct mcfg *c, const char *name, size_t s, long i, long n, double want)
{
	struct lines_tensor_at at = {name, -1, 5, s, i, n};
	double got = NAN;
	mcfg_tensor_value(c, &at, &got);
	ok(fabs(got - want) <= 1e-15, "slice %zu, block %ld of %ld, %s: t = %.17g (want %.17g)", s,
	   i, n, name, got, want);
}

/* Gradients within slices: the position is the block's in its slice, the
 * slice's parameters come before the global ones (mergekit's ConfigReader). */
static void slice_values(void)
{
	struct mcfg *c = parse("merge_method: slerp\n"
	                       "base_model: org/b\n"
	                       "slices:\n"
	                       "  - sources: [{model: org/b, layer_range: [0, 3]},\n"
	                       "              {model: org/a, layer_range: [0, 3]}]\n"
	                       "  - sources: [{model: org/a, layer_range: [3, 5]},\n"
	                       "              {model: org/b, layer_range: [3, 5]}]\n"
	                       "    parameters: {t: [0.2, 0.6]}\n"
	                       "parameters:\n"
	                       "  t:\n"
	                       "    - {filter: mlp, value: [1, 0]}\n"
	                       "    - value: [0, 1]\n");
	map(c);
	ok(c->nproblems == 0 && c->tensor_param && !strcmp(c->tensor_param, "t"),
	   "slerp's t per tensor within slices: no problem, t varies");
	show_problems(c);
	ok(c->slice_inputs == 2 && c->slices[0].order[0] == 0 && c->slices[1].order[0] == 1,
	   "the base is input 0 of both slices, wherever it is listed");
	slice_t_is(c, "model.layers.0.self_attn.q_proj.weight", 0, 0, 3, 0.0);
	slice_t_is(c, "model.layers.1.self_attn.q_proj.weight", 0, 1, 3, 0.5);
	slice_t_is(c, "model.layers.2.self_attn.q_proj.weight", 0, 2, 3, 1.0);
	slice_t_is(c, "model.layers.1.mlp.up_proj.weight", 0, 1, 3, 0.5);
	slice_t_is(c, "model.layers.2.mlp.up_proj.weight", 0, 2, 3, 0.0);
	slice_t_is(c, "model.layers.3.mlp.up_proj.weight", 1, 0, 2, 0.2);
	slice_t_is(c, "model.layers.4.self_attn.q_proj.weight", 1, 1, 2, 0.6);
	slice_t_is(c, "model.embed_tokens.weight", 0, -1, 0, 0.0);
	slice_t_is(c, "lm_head.weight", 1, -1, 0, 0.2);
	mcfg_free(c);
}

int main(void)
{
	slice_values();
	gradients();
	filters();
	varying();
	names();
	problems();
	return tap_done();
}
