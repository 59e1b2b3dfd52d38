/*
 * merge_config.h -- mergekit's YAML merge configurations (`lines merge
 * --config FILE`), read with libyaml, checked, and turned into the options
 * of lines merge; and the other way round (--print-config).
 *
 * A configuration is read whole and every problem found in it is kept
 * with its file, line and column ("FILE:LINE:COL: problem"); nothing is
 * opened but the configuration itself. Parameter values keep mergekit's
 * three forms (a number, a gradient list, a list of {filter, value}) and
 * mcfg_value_for() resolves them for a tensor as mergekit does; the
 * methods of lines take one number per model today, so mcfg_args()
 * refuses a value that could differ between tensors.
 */
#ifndef LINES_MERGE_CONFIG_H
#define LINES_MERGE_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "lines.h"

/* A parameter value: a number (booleans are 0 and 1), a gradient over
 * the layer position t, or filters tried in order. */
enum mcfg_kind { MCFG_NUMBER, MCFG_GRADIENT, MCFG_FILTERS };

struct mcfg_filter;

struct mcfg_value {
	enum mcfg_kind kind;
	int is_bool; /* a number written true or false */
	double num;
	double *grad; /* MCFG_GRADIENT: ngrad >= 1 values */
	size_t ngrad;
	struct mcfg_filter *filters; /* MCFG_FILTERS */
	size_t nfilters;
	int line, col; /* 1-based, where the value starts */
};

struct mcfg_filter {
	char *filter;            /* a substring of the tensor name; NULL for none or "*" (all) */
	struct mcfg_value value; /* a number or a gradient */
};

struct mcfg_param {
	char *name;
	struct mcfg_value v;
	int line, col; /* of the name */
};

struct mcfg_params {
	struct mcfg_param *p;
	size_t n;
};

/* A key of the configuration given as a string, and where. */
struct mcfg_str {
	char *s; /* NULL when absent */
	int line, col;
};

struct mcfg_model {
	char *ref;
	int line, col;
	struct mcfg_params params;
	/* a slice's source: blocks [first, end) (layer_range), and where */
	long first, end;
	int range_line, range_col;
};

/* One of slices: its sources, and what it says for all of them. */
struct mcfg_slice {
	struct mcfg_model *src;
	size_t nsrc;
	struct mcfg_params params; /* the slice's parameters */
	struct mcfg_str base;      /* its own base_model, or none */
	int line, col;
	size_t *order; /* set by mcfg_args: input k is src[order[k]] */
};

struct mcfg {
	char *file; /* as named on the command line ("-": standard input) */
	struct mcfg_str method, base, dtype, out_dtype, tokenizer_source, chat_template, name;
	struct mcfg_model *models;
	size_t nmodels;
	int models_line, models_col;
	struct mcfg_params params; /* the global parameters */
	struct mcfg_slice *slices; /* slices: instead of models: */
	size_t nslices;
	int slices_line, slices_col;
	size_t slice_inputs; /* set by mcfg_args: the inputs each slice composes */
	/* set by mcfg_args: the parameter whose value differs between tensors
	 * (slerp's t), for mcfg_tensor_value(); NULL when none does */
	const char *tensor_param;
	/* set by mcfg_args: MCFG_TENSOR_W (D) when some model's weight
	 * (density) differs between tensors, for mcfg_tensor_params(), with
	 * the sources in lines' order (tsrc; NULL: the base appended, global
	 * parameters only) and the method's defaults (tdef: weight, density) */
	unsigned tensor_lists;
	const struct mcfg_model **tsrc;
	size_t ntsrc;
	double tdef[2];
	/* the lines: section, each value as written (numbers as text) */
	struct mcfg_params lines_num; /* alpha (number), beta, lambda, seed, num_layers */
	struct mcfg_str alpha_word, norm, stacks, stack_order, trim, rescale, layer_regex, ldtype,
	    vocab;
	int strict;
	int has_lines;
	/* every problem found, "FILE:LINE:COL: problem", in order */
	char **problems;
	size_t nproblems;
	/* set by mcfg_args: where each of its strings comes from, "FILE:LINE:COL:
	 * key" (NULL: from no key, such as the method's fixed options) */
	char **arg_where;
	size_t narg_where;
};

/*
 * Read a configuration from PATH ("-": standard input), or from TEXT of
 * LEN bytes when text is not NULL (path then only names it in messages).
 * Returns the configuration, with problems listed in cfg->problems (each
 * one also checked against the methods lines has), or NULL when memory
 * runs out. Free with mcfg_free().
 */
struct mcfg *mcfg_read(const char *path, const char *text, size_t len);
void mcfg_free(struct mcfg *cfg);

/*
 * The options of lines merge that the configuration means: "--name" or
 * "--name" "value" items, then the models, in *args (nargs items, each
 * malloc'd; free with mcfg_args_free). Problems found while mapping the
 * values onto those options (a parameter the method does not take, a
 * value that varies by tensor) are added to cfg->problems. Returns 0, or
 * -1 when memory runs out.
 */
int mcfg_args(struct mcfg *cfg, char ***args, size_t *nargs, size_t *nmodels);
void mcfg_args_free(char **args, size_t nargs);

/*
 * The slices of a configuration as lines_merge_opts takes them (after
 * mcfg_args() mapped it without problems): n slices of ninputs sources
 * each, in the order of the inputs mcfg_args() named. Owns its strings;
 * free with mcfg_slices_free(). Returns 0 (n is 0 without slices), or -1
 * when memory runs out.
 */
struct mcfg_slices {
	size_t n, ninputs;
	struct lines_slice *s;
	struct lines_slice_src *src;
};
int mcfg_take_slices(const struct mcfg *cfg, struct mcfg_slices *out);
void mcfg_slices_free(struct mcfg_slices *s);

/*
 * The value of parameter NAME for a tensor named TENSOR at layer position
 * T (t = i / (L - 1) for block i of L, 1 when L = 1, 0 outside the
 * blocks): model MODEL's parameters (model < cfg->nmodels; pass
 * (size_t)-1 for none), then the global ones. Returns 1 with *out set, or
 * 0 when neither level gives one (the method's default applies).
 */
int mcfg_value_for(const struct mcfg *cfg, size_t model, const char *name, const char *tensor,
                   double t, double *out);
/*
 * The value of the global parameter cfg->tensor_param for the output
 * tensor AT, as mergekit gives it: the slice's parameters, then the global
 * ones, at the block's position in its slice (t = i / (n - 1) for block i
 * of a slice of n, 1 when n = 1; 0 outside the blocks); without slices
 * at the block's position in its stack. *out is left alone when no value
 * applies. Usable as lines_merge_opts.tensor_t with the configuration as
 * t_ctx.
 */
void mcfg_tensor_value(void *cfg, const struct lines_tensor_at *at, double *out);
/*
 * The weights and densities of every model for the output tensor AT, as
 * mergekit gives them (cfg->tensor_lists says which): the model's
 * parameters, then (with slices) the slice's, then the global ones, at
 * the block's position in its slice or stack (as mcfg_tensor_value()),
 * else the method's default. Usable as lines_merge_opts.tensor_params
 * with the configuration as tp_ctx.
 */
enum { MCFG_TENSOR_W = 1, MCFG_TENSOR_D = 2 };
void mcfg_tensor_params(void *cfg, const struct lines_tensor_at *at, struct lines_tensor_params *p);
/* One value at T for TENSOR: 1 with *out, or 0 when no filter matches. */
int mcfg_value_at(const struct mcfg_value *v, const char *tensor, double t, double *out);
/* Add "FILE:LINE:COL: problem" to cfg->problems (line 0: "FILE: problem"). */
void mcfg_problem(struct mcfg *cfg, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The layer position of block BLOCK of NUM_LAYERS (-1: outside, t = 0). */
double mcfg_layer_t(long block, long num_layers);

/* Of the N names in LIST, the one closest to NAME by edit distance when it
 * is close enough to be a likely typo, else NULL. */
const char *mcfg_closest(const char *name, const char *const *list, size_t n);
/* " (did you mean 'x'?)", or " (one of: a, b, c)" when none is close.
 * Static buffer. */
const char *mcfg_hint(const char *name, const char *const *list, size_t n);
/* The edit distance (insertions, deletions, substitutions) of A and B. */
size_t mcfg_distance(const char *a, const char *b);

/*
 * Print the configuration that means the same merge as O (filled in as
 * lines merge's options leave it after their checks): mergekit's keys,
 * every default written out, and a lines: section for what only lines
 * has. Weights and densities per model; X (may be NULL) adds what a
 * configuration said that no option holds. Returns 0, or -1 on a write
 * error.
 */
struct mcfg_extra {
	/* keys of a configuration that change no number, printed back as
	 * given (NULL: absent): name, chat_template, the working dtype */
	const char *name, *chat_template, *dtype;
	/* a configuration whose per-tensor values (tensor_param) the options
	 * hold only as opts.tensor_t: printed from it */
	const struct mcfg *cfg;
};
/* 0, -1 when f fails, or MCFG_NO_FORM for options that no key of the
 * format says (mcfg_no_form()) */
#define MCFG_NO_FORM (-2)
int mcfg_print(FILE *f, const struct lines_merge_opts *o, const struct mcfg_extra *x);
/* Why no configuration says the options o, or NULL when one does. */
const char *mcfg_no_form(const struct lines_merge_opts *o);

#endif
