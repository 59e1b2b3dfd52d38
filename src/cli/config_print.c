/*
 * config_print.c -- lines merge --print-config: the mergekit configuration
 * (and lines: section) that means the merge a command line asks for.
 *
 * Everything that decides a number is written out, defaults included,
 * since lines' defaults are not mergekit's (density, rescale, trim): the
 * configuration read back with --config gives the same options, hence the
 * same bytes. What only says how to run (-j, --io, --chunk, -o, ...) is
 * not part of a recipe and is left out.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "merge_config.h"
#include "strutil.h"

/* The shortest text that reads back as exactly V, and that YAML 1.1
 * (PyYAML, which mergekit reads configurations with) takes for a number:
 * an integer as digits (10, not 1e+01), an exponent after a point
 * (1.0e-05: PyYAML reads 1e-05 as a string). */
/* mergekit's out_dtype of --dtype: bfloat16, float16 or float32; NULL
 * for lines' own (f64, fp8, a GGUF block type), which go under lines: */
static const char *out_dtype_of(const struct lines_merge_opts *o)
{
	const char *n = dtype_torch_name(o->dtype);
	return n && strcmp(n, "float64") ? n : NULL;
}

static const char *num(double v)
{
	static char buf[4][48];
	static int k;
	char *b = buf[k++ & 3];
	if (v == floor(v) && fabs(v) < 9007199254740992.0) {
		snprintf(b, 48, "%.0f", v);
		return b;
	}
	for (int p = 1; p <= 17; p++) {
		snprintf(b, 40, "%.*g", p, v);
		if (strtod(b, NULL) == v)
			break;
	}
	char *e = strchr(b, 'e');
	if (e && !strchr(b, '.')) { /* 1e-05 -> 1.0e-05 */
		memmove(e + 2, e, strlen(e) + 1);
		e[0] = '.', e[1] = '0';
	}
	return b;
}

/* S as a YAML scalar: plain when it is a harmless word or path, else
 * double-quoted with escapes. */
static void put_str(FILE *f, const char *s)
{
	int plain = *s &&
	            strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	                      "0123456789_./@-") == strlen(s) &&
	            strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_/.", s[0]) &&
	            strcmp(s, ".") && strcmp(s, "..");
	static const char *const words[] = {"true", "false", "yes", "no", "on",
	                                    "off",  "null",  "y",   "n"};
	for (size_t i = 0; plain && i < sizeof(words) / sizeof(words[0]); i++)
		if (!strcasecmp(s, words[i]))
			plain = 0;
	if (plain) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* "KEY: VALUE\n" at INDENT spaces: a number, a gradient, or filters. */
static void put_value(FILE *f, int indent, const char *key, const struct mcfg_value *v)
{
	fprintf(f, "%*s%s:", indent, "", key);
	switch (v->kind) {
	case MCFG_NUMBER:
		fprintf(f, " %s\n", v->is_bool ? (v->num != 0 ? "true" : "false") : num(v->num));
		return;
	case MCFG_GRADIENT:
		fputs(" [", f);
		for (size_t i = 0; i < v->ngrad; i++)
			fprintf(f, "%s%s", i ? ", " : "", num(v->grad[i]));
		fputs("]\n", f);
		return;
	case MCFG_FILTERS:
		fputc('\n', f);
		for (size_t i = 0; i < v->nfilters; i++) {
			fprintf(f, "%*s- ", indent + 2, "");
			if (v->filters[i].filter) {
				fputs("filter: ", f);
				put_str(f, v->filters[i].filter);
				fputc('\n', f);
				put_value(f, indent + 4, "value", &v->filters[i].value);
			} else {
				put_value(f, 0, "value", &v->filters[i].value);
			}
		}
		return;
	}
}

/* The per-tensor value of parameter NAME at level PS, if it has one. */
static const struct mcfg_value *tensor_value(const struct mcfg_extra *x,
                                             const struct mcfg_params *ps, const char *name)
{
	if (!x || !x->cfg || !x->cfg->tensor_param || strcmp(x->cfg->tensor_param, name))
		return NULL;
	for (size_t i = 0; i < ps->n; i++)
		if (!strcmp(ps->p[i].name, name))
			return &ps->p[i].v;
	return NULL;
}

/* What the method's name and options are in mergekit's words. */
struct form {
	const char *method;
	int weights, densities, tall;
	int della, bc; /* per model: della's epsilon, breadcrumbs' gamma */
	int gta; /* lambda in parameters (task arithmetic's family) */
};

static struct form form_of(const struct lines_merge_opts *o)
{
	struct form fm = {lines_method_name(o->method), 0, 0, 0, 0, 0, 0};
	unsigned mo = lines_method_options(o->method);
	fm.weights = (mo & LINES_MOPT_WEIGHTS) != 0;
	fm.densities = (mo & LINES_MOPT_DENSITY) && o->method != LINES_M_CONSENSUS;
	switch (o->method) {
	case LINES_M_SUM:
	case LINES_M_MEAN: fm.method = "task_arithmetic", fm.gta = 1; break;
	case LINES_M_TIES: fm.gta = 1; break;
	case LINES_M_DARE:
		fm.method = o->dare_elect ? "dare_ties" : "dare_linear", fm.gta = 1;
		break;
	case LINES_M_CONSENSUS: fm.tall = 1, fm.gta = 1; break;
	case LINES_M_DELLA:
	case LINES_M_DELLA_LINEAR: fm.della = 1, fm.gta = 1; break;
	case LINES_M_BREADCRUMBS:
	case LINES_M_BREADCRUMBS_TIES: fm.bc = 1, fm.gta = 1; break;
	default: break;
	}
	return fm;
}

/* A weight or density per tensor (cfg->tensor_lists) as the level PS
 * gives it, or NULL. */
static const struct mcfg_value *list_value(const struct mcfg_extra *x, const struct mcfg_params *ps,
                                           const char *name)
{
	unsigned bit = strcmp(name, "weight") ? MCFG_TENSOR_D : MCFG_TENSOR_W;
	if (!x || !x->cfg || !ps || !(x->cfg->tensor_lists & bit))
		return NULL;
	for (size_t i = 0; i < ps->n; i++)
		if (!strcmp(ps->p[i].name, name))
			return &ps->p[i].v;
	return NULL;
}

/* Does a level below the model's (the slice's UP, the global one) give
 * NAME per tensor? Then a model without its own value prints none. */
static int below(const struct mcfg_extra *x, const struct mcfg_params *up, const char *name)
{
	return list_value(x, up, name) || (x && x->cfg && list_value(x, &x->cfg->params, name));
}

/*
 * A model's parameters at INDENT: its weight and density (OWN: its
 * configuration's level, whose per-tensor values are printed as given;
 * UP: its slice's), and the other per-model values of the method.
 */
static void put_model_params(FILE *f, const struct lines_merge_opts *o, const struct form *fm,
                             size_t i, int indent, const struct mcfg_extra *x,
                             const struct mcfg_params *own, const struct mcfg_params *up)
{
	const struct mcfg_value *wv = list_value(x, own, "weight"),
	                        *dv = list_value(x, own, "density");
	int w = fm->weights && (wv || !below(x, up, "weight"));
	int d = fm->densities && (dv || !below(x, up, "density"));
	if (!w && !d && !fm->tall && !fm->della && !fm->bc) {
		if (fm->weights || fm->densities)
			fprintf(f, "%*sparameters: {}\n", indent, "");
		return;
	}
	fprintf(f, "%*sparameters:\n", indent, "");
	indent += 2;
	if (wv)
		put_value(f, indent, "weight", wv);
	else if (w)
		fprintf(f, "%*sweight: %s\n", indent, "", num(o->weights ? o->weights[i] : 1.0));
	if (dv)
		put_value(f, indent, "density", dv);
	else if (d)
		fprintf(f, "%*sdensity: %s\n", indent, "",
		        num(o->densities ? o->densities[i] : o->density));
	if (fm->tall)
		fprintf(f, "%*stall_lambda: %s\n", indent, "",
		        num(o->tall_lambdas ? o->tall_lambdas[i] : o->tall_lambda));
	if (fm->della)
		fprintf(f, "%*sepsilon: %s\n", indent, "",
		        num(o->della_epsilons ? o->della_epsilons[i] : o->della_epsilon));
	if (fm->bc)
		fprintf(f, "%*sgamma: %s\n", indent, "",
		        num(o->bc_gammas ? o->bc_gammas[i] : o->bc_gamma));
}

static void put_model(FILE *f, const struct lines_merge_opts *o, const struct form *fm, size_t i,
                      const struct mcfg_extra *x)
{
	const struct mcfg *c = x ? x->cfg : NULL;
	fputs("  - model: ", f);
	put_str(f, o->models[i]);
	fputc('\n', f);
	if (!fm->weights && !fm->densities && !fm->tall && !fm->della && !fm->bc)
		return;
	const struct mcfg_params *own =
	    c && c->tensor_lists && i < c->ntsrc && c->tsrc[i] ? &c->tsrc[i]->params : NULL;
	put_model_params(f, o, fm, i, 4, x, own, NULL);
}

/* One source of a slice: input K (0 the base when there is one) of slice
 * S. */
static void put_source(FILE *f, const struct lines_merge_opts *o, const struct form *fm,
                       const struct lines_slice_src *ss, size_t s, size_t k,
                       const struct mcfg_extra *x)
{
	const struct mcfg *c = x ? x->cfg : NULL;
	fputs("      - model: ", f);
	put_str(f, ss->model);
	fprintf(f, "\n        layer_range: [%ld, %ld]\n", ss->first, ss->end);
	if (o->base && k == 0) { /* the base: a source, no task vector */
		if (o->method == LINES_M_LINEAR)
			fputs("        parameters:\n          weight: 0\n", f);
		return;
	}
	size_t i = o->base ? k - 1 : k;
	if (!fm->weights && !fm->densities && !fm->tall && !fm->della && !fm->bc)
		return;
	const struct mcfg_slice *sl = c && c->tensor_lists && s < c->nslices ? &c->slices[s] : NULL;
	const struct mcfg_params *own = sl && sl->order ? &sl->src[sl->order[k]].params : NULL;
	put_model_params(f, o, fm, i, 8, x, own, sl ? &sl->params : NULL);
}

/* slices: in the inputs' order, the base's source first; a slice whose
 * base is another model than the first slice's says so */
static void put_slices(FILE *f, const struct lines_merge_opts *o, const struct form *fm,
                       const struct mcfg_extra *x)
{
	size_t n = o->nmodels + (o->base ? 1 : 0);
	fputs("slices:\n", f);
	for (size_t s = 0; s < o->nslices; s++) {
		const struct lines_slice_src *src = o->slices[s].src;
		fputs("  - sources:\n", f);
		for (size_t k = 0; k < n; k++)
			put_source(f, o, fm, &src[k], s, k, x);
		if (o->base && strcmp(src[0].model, o->slices[0].src[0].model)) {
			fputs("    base_model: ", f);
			put_str(f, src[0].model);
			fputc('\n', f);
		}
		const struct mcfg_value *tv = x && x->cfg && s < x->cfg->nslices
		                                  ? tensor_value(x, &x->cfg->slices[s].params, "t")
		                                  : NULL;
		const struct mcfg_params *sp =
		    x && x->cfg && s < x->cfg->nslices ? &x->cfg->slices[s].params : NULL;
		const struct mcfg_value *sw = list_value(x, sp, "weight"),
		                        *sd = list_value(x, sp, "density");
		if (tv || sw || sd)
			fputs("    parameters:\n", f);
		if (tv)
			put_value(f, 6, "t", tv);
		if (sw)
			put_value(f, 6, "weight", sw);
		if (sd)
			put_value(f, 6, "density", sd);
	}
}

static void put_models(FILE *f, const struct lines_merge_opts *o, const struct form *fm,
                       const struct mcfg_extra *x)
{
	if (o->nslices) {
		put_slices(f, o, fm, x);
		return;
	}
	fputs("models:\n", f);
	/* slerp: mergekit lists both ends; linear: a base that is only LiNeS's
	 * reference is listed with weight 0 (averaged in by mergekit, else) */
	if (o->base && o->method == LINES_M_SLERP) {
		fputs("  - model: ", f);
		put_str(f, o->base);
		fputc('\n', f);
	}
	for (size_t i = 0; i < o->nmodels; i++)
		put_model(f, o, fm, i, x);
	if (o->base && o->method == LINES_M_LINEAR) {
		fputs("  - model: ", f);
		put_str(f, o->base);
		fputs("\n    parameters:\n      weight: 0\n", f);
	}
}

static void put_params(FILE *f, const struct lines_merge_opts *o, const struct form *fm,
                       const struct mcfg_extra *x)
{
	const struct mcfg_value *tv = x && x->cfg ? tensor_value(x, &x->cfg->params, "t") : NULL;
	unsigned mo = lines_method_options(o->method);
	fputs("parameters:\n", f);
	if (o->method == LINES_M_SUM || o->method == LINES_M_MEAN)
		fprintf(f, "  normalize: %s\n", o->method == LINES_M_MEAN ? "true" : "false");
	else if (o->method == LINES_M_MULTISLERP)
		fprintf(f, "  normalize_weights: %s\n", o->no_normalize ? "false" : "true");
	else if ((mo & LINES_MOPT_NORMALIZE) && !(o->method == LINES_M_DARE && !o->dare_elect) &&
	         o->method != LINES_M_CONSENSUS)
		fprintf(f, "  normalize: %s\n", o->no_normalize ? "false" : "true");
	if ((o->method == LINES_M_DARE || fm->della) && o->rescale != LINES_RESCALE_DENSITY)
		fprintf(f, "  rescale: %s\n", o->rescale == LINES_RESCALE_L1 ? "true" : "false");
	const struct mcfg_value *gw = x && x->cfg ? list_value(x, &x->cfg->params, "weight") : NULL,
	                        *gd =
	                            x && x->cfg ? list_value(x, &x->cfg->params, "density") : NULL;
	if (gw) /* the per-tensor weights the models fall back on */
		put_value(f, 2, "weight", gw);
	if (gd)
		put_value(f, 2, "density", gd);
	if ((mo & LINES_MOPT_T) && tv)
		put_value(f, 2, "t", tv);
	else if ((mo & LINES_MOPT_T) && !(x && x->cfg && x->cfg->tensor_param))
		fprintf(f, "  t: %s\n", num(o->t));
	if ((mo & LINES_MOPT_EPSILON) && !fm->della)
		fprintf(f, "  epsilon: %s\n", num(o->ram_epsilon));
	if (mo & LINES_MOPT_SELECT_TOPK)
		fprintf(f, "  select_topk: %s\n", num(o->select_topk));
	if (mo & LINES_MOPT_RAM)
		fprintf(f, "  r: %s\n  alpha: %s\n", num(o->ram_r), num(o->ram_alpha));
	if (mo & LINES_MOPT_CONSENSUS)
		fprintf(f, "  consensus_k: %u\n", o->consensus_k);
	if (mo & LINES_MOPT_KARCHER)
		fprintf(f, "  max_iter: %u\n  tol: %s\n", o->max_iter, num(o->tol));
	if (o->method == LINES_M_NUSLERP)
		fprintf(f, "  nuslerp_flatten: %s\n  nuslerp_row_wise: false\n",
		        o->per_row ? "false" : "true");
	if (o->method == LINES_M_MODEL_STOCK)
		fprintf(f, "  filter_wise: %s\n", o->per_row ? "true" : "false");
	if (fm->gta && !o->lines)
		fprintf(f, "  lambda: %s\n", num(o->lambda));
}

static void put_lines(FILE *f, const struct lines_merge_opts *o, const struct form *fm)
{
	unsigned mo = lines_method_options(o->method);
	fputs("lines:\n", f);
	if (o->lines) {
		fprintf(f, "  alpha: %s\n", o->alpha_auto ? "auto" : num(o->alpha));
		if (!isnan(o->beta))
			fprintf(f, "  beta: %s\n", num(o->beta));
		for (size_t i = 0; o->schedule && i < o->nschedule; i++)
			fprintf(f, "%s%s", i ? ", " : "  schedule: [", num(o->schedule[i]));
		if (o->schedule)
			fputs("]\n", f);
	} else if (!fm->gta && o->base) {
		fprintf(f, "  lambda: %s\n", num(o->lambda));
	}
	fprintf(f, "  norm: %s\n", o->norm_p == 2 ? "l2" : "l1");
	if (o->layers.stack_order) {
		fputs("  stack_order: ", f);
		put_str(f, o->layers.stack_order);
		fputc('\n', f);
	} else {
		fprintf(f, "  stacks: %s\n", o->layers.joint ? "joint" : "separate");
	}
	if (o->layers.regex) {
		fputs("  layer_regex: ", f);
		put_str(f, o->layers.regex);
		fputc('\n', f);
	}
	if (o->layers.num_layers)
		fprintf(f, "  num_layers: %ld\n", o->layers.num_layers);
	if ((mo & LINES_MOPT_TRIM) && o->method != LINES_M_CONSENSUS)
		fprintf(f, "  trim: %s\n", o->trim_tensor ? "tensor" : "global");
	if (mo & LINES_MOPT_SEED)
		fprintf(f, "  seed: %llu\n", (unsigned long long)o->seed);
	if ((o->method == LINES_M_DARE || fm->della) && o->rescale == LINES_RESCALE_DENSITY)
		fputs("  rescale: density\n", f);
	if (o->dtype && !out_dtype_of(o)) /* fp8, f64, a GGUF block type: lines' own */
		fprintf(f, "  dtype: %s\n", o->dtype);
	fprintf(f, "  vocab: %s\n", o->vocab_base ? "base" : "strict");
	if (o->strict)
		fputs("  strict: true\n", f);
}

/* Whether the base is also one of the models (the same name, or file). */
static int base_listed(const struct lines_merge_opts *o)
{
	struct stat sb, sm;
	int have = o->base && stat(o->base, &sb) == 0;
	for (size_t i = 0; o->base && i < o->nmodels; i++)
		if (!strcmp(o->models[i], o->base) ||
		    (have && stat(o->models[i], &sm) == 0 && sm.st_dev == sb.st_dev &&
		     sm.st_ino == sb.st_ino))
			return 1;
	return 0;
}

const char *mcfg_no_form(const struct lines_merge_opts *o)
{
	if (o->consensus_ties) /* no key says it yet */
		return "-m consensus --consensus-over ties has no configuration form yet";
	/* karcher's -b is only LiNeS's (lambda's) reference, but mergekit
	 * averages base_model in, and karcher takes no weight to leave it out;
	 * a base that is one of the models says just that */
	if (o->method == LINES_M_KARCHER && o->base && !base_listed(o))
		return "-m karcher with -b has no configuration form: mergekit averages "
		       "base_model in with the models, where -b is only the reference of LiNeS "
		       "and --lambda (list the base as a model to average it in)";
	return NULL;
}

int mcfg_print(FILE *f, const struct lines_merge_opts *o, const struct mcfg_extra *x)
{
	struct form fm = form_of(o);
	if (mcfg_no_form(o))
		return MCFG_NO_FORM;
	fputs("# lines merge --print-config: mergekit's format, and LiNeS and the rest of\n"
	      "# lines' options under lines: (see lines-config(5))\n",
	      f);
	fputs("merge_method: ", f);
	put_str(f, fm.method ? fm.method : "?");
	fputc('\n', f);
	if (o->base) {
		fputs("base_model: ", f);
		put_str(f, o->nslices ? o->slices[0].src[0].model : o->base);
		fputc('\n', f);
	}
	put_models(f, o, &fm, x);
	put_params(f, o, &fm, x);
	if (out_dtype_of(o))
		fprintf(f, "out_dtype: %s\n", out_dtype_of(o));
	if (o->tokenizer_source) {
		fputs("tokenizer_source: ", f);
		put_str(f, o->tokenizer_source);
		fputc('\n', f);
	}
	const char *keys[] = {"name", "chat_template", "dtype"};
	const char *vals[] = {x ? x->name : NULL, x ? x->chat_template : NULL, x ? x->dtype : NULL};
	for (size_t i = 0; i < 3; i++)
		if (vals[i]) {
			fprintf(f, "%s: ", keys[i]);
			put_str(f, vals[i]);
			fputc('\n', f);
		}
	put_lines(f, o, &fm);
	return fflush(f) == 0 && !ferror(f) ? 0 : -1;
}
