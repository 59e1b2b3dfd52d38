/*
 * config_map.c -- what a mergekit configuration means as lines merge's
 * options: one row per mergekit method (its parameters, mergekit's
 * defaults, the lines option each one becomes) and the mapping of the
 * models, the base, the dtypes and the lines: section.
 *
 * Defaults are mergekit's (ties' density is 1 there, DARE rescales by the
 * L1 norm, ...), written out as explicit options so that lines' own
 * defaults never leak into a configuration's meaning. A value that would
 * differ between tensors (a gradient or filters that do not all give one
 * number) is taken where the method reads one per tensor (PM_TENSOR,
 * PM_TLIST: slerp's t; the weights of task_arithmetic, linear, nuslerp,
 * multislerp, ties, dare_*, breadcrumbs* and della*, the densities of the
 * last four) and
 * refused elsewhere, at its line and column.
 */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "merge_config.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

enum pmap {
	PM_LIST,      /* one value per model: OPT v1,v2,...                    */
	PM_NUM,       /* one value: OPT v                                      */
	PM_FLAG,      /* a boolean: OPT when true, NEG when false              */
	PM_NORM_MEAN, /* task_arithmetic's normalize: true is lines' -m mean   */
	PM_NOEFFECT,  /* accepted and checked; no effect on exact arithmetic   */
	PM_FIXED,     /* only the default is supported yet                     */
	PM_TENSOR,    /* one value, or one per tensor (opts.tensor_t): OPT v     */
	PM_TLIST,     /* as PM_LIST, or one per model per tensor (tensor_params) */
};

struct pdef {
	const char *name;
	enum pmap map;
	const char *opt, *neg;
	int per_model; /* mergekit reads it per model (a tensor parameter)  */
	int required;  /* no default: mergekit refuses a merge without it    */
	double def;
};

enum base_role {
	BASE_NEEDED,   /* the task vectors' origin; listed models equal to it are dropped */
	BASE_OPTIONAL, /* the same when given                                 */
	BASE_AVERAGED, /* one of the sources (linear): appended when not listed */
	BASE_NONE,     /* not used (passthrough): refused with models:, ignored by slices */
};

struct mdef {
	const char *name;  /* mergekit's name                         */
	const char *lines; /* lines' -m                                */
	const char *fixed[2];
	enum base_role base;
	int one_model; /* exactly one model besides the base (slerp) */
	struct pdef params[8];
};

/* one row per method reads better than the formatter's layout */
/* clang-format off */
#define WEIGHT {"weight", PM_LIST, "--weights", NULL, 1, 1, 1}
#define DENSITY {"density", PM_LIST, "--density", NULL, 1, 0, 1}
#define LAMBDA {"lambda", PM_NUM, "--lambda", NULL, 0, 0, 1}
#define INT8 {"int8_mask", PM_NOEFFECT, NULL, NULL, 0, 0, 0}
/* the methods that read a weight (a density) per tensor */
#define WEIGHT_T {"weight", PM_TLIST, "--weights", NULL, 1, 1, 1}
#define DENSITY_T {"density", PM_TLIST, "--density", NULL, 1, 0, 1}

static const struct mdef mdefs[] = {
	{"task_arithmetic", "task_arithmetic", {0}, BASE_NEEDED, 0,
	 {WEIGHT_T, {"density", PM_NOEFFECT, NULL, NULL, 1, 0, 1},
	  {"normalize", PM_NORM_MEAN, NULL, NULL, 0, 0, 0},
	  {"rescale", PM_NOEFFECT, NULL, NULL, 0, 0, 0}, LAMBDA, INT8}},
	{"ties", "ties", {"--trim", "tensor"}, BASE_NEEDED, 0,
	 {WEIGHT_T, DENSITY_T, {"normalize", PM_FLAG, "--normalize", "--no-normalize", 0, 0, 1},
	  {"rescale", PM_NOEFFECT, NULL, NULL, 0, 0, 0}, LAMBDA, INT8}},
	{"dare_ties", "dare_ties", {0}, BASE_NEEDED, 0,
	 {WEIGHT_T, DENSITY_T, {"normalize", PM_FLAG, "--normalize", "--no-normalize", 0, 0, 1},
	  {"rescale", PM_FLAG, "--rescale", "--no-rescale", 0, 0, 1}, LAMBDA, INT8}},
	{"dare_linear", "dare_linear", {0}, BASE_NEEDED, 0,
	 {WEIGHT_T, DENSITY_T, {"normalize", PM_FIXED, NULL, NULL, 0, 0, 0},
	  {"rescale", PM_FLAG, "--rescale", "--no-rescale", 0, 0, 1}, LAMBDA, INT8}},
	{"breadcrumbs", "breadcrumbs", {0}, BASE_NEEDED, 0,
	 {WEIGHT_T, DENSITY_T, {"gamma", PM_LIST, "--bc-gamma", NULL, 1, 0, 0.01},
	  {"normalize", PM_FLAG, "--normalize", "--no-normalize", 0, 0, 0},
	  {"rescale", PM_NOEFFECT, NULL, NULL, 0, 0, 0}, LAMBDA, INT8}},
	{"breadcrumbs_ties", "breadcrumbs_ties", {0}, BASE_NEEDED, 0,
	 {WEIGHT_T, DENSITY_T, {"gamma", PM_LIST, "--bc-gamma", NULL, 1, 0, 0.01},
	  {"normalize", PM_FLAG, "--normalize", "--no-normalize", 0, 0, 1},
	  {"rescale", PM_NOEFFECT, NULL, NULL, 0, 0, 0}, LAMBDA, INT8}},
	{"della", "della", {0}, BASE_NEEDED, 0,
	 {WEIGHT_T, DENSITY_T, {"epsilon", PM_LIST, "--epsilon", NULL, 1, 0, 0.15},
	  {"normalize", PM_FLAG, "--normalize", "--no-normalize", 0, 0, 1},
	  {"rescale", PM_FLAG, "--rescale", "--no-rescale", 0, 0, 1}, LAMBDA, INT8}},
	{"della_linear", "della_linear", {0}, BASE_NEEDED, 0,
	 {WEIGHT_T, DENSITY_T, {"epsilon", PM_LIST, "--epsilon", NULL, 1, 0, 0.15},
	  {"normalize", PM_FIXED, NULL, NULL, 0, 0, 0},
	  {"rescale", PM_FLAG, "--rescale", "--no-rescale", 0, 0, 1}, LAMBDA, INT8}},
	{"linear", "linear", {0}, BASE_AVERAGED, 0,
	 {WEIGHT_T, {"normalize", PM_FLAG, "--normalize", "--no-normalize", 0, 0, 1}}},
	{"slerp", "slerp", {0}, BASE_NEEDED, 1, {{"t", PM_TENSOR, "--t", NULL, 0, 1, 0}}},
	{"nuslerp", "nuslerp", {0}, BASE_OPTIONAL, 0,
	 {WEIGHT_T, {"nuslerp_flatten", PM_FLAG, NULL, "--per-row", 0, 0, 1},
	  {"nuslerp_row_wise", PM_FIXED, NULL, NULL, 0, 0, 0}}},
	{"multislerp", "multislerp", {0}, BASE_OPTIONAL, 0,
	 {WEIGHT_T, {"normalize_weights", PM_FLAG, "--normalize", "--no-normalize", 0, 0, 1},
	  {"eps", PM_FIXED, NULL, NULL, 0, 0, 1e-8}}},
	{"model_stock", "model_stock", {0}, BASE_NEEDED, 0,
	 {{"filter_wise", PM_FLAG, "--per-row", NULL, 0, 0, 0}}},
	{"nearswap", "nearswap", {0}, BASE_NEEDED, 1, {{"t", PM_NUM, "--t", NULL, 0, 1, 0}}},
	{"ram", "ram", {0}, BASE_NEEDED, 0, {{"epsilon", PM_NUM, "--epsilon", NULL, 0, 0, 1e-5}}},
	{"ramplus_tl", "ramplus_tl", {0}, BASE_NEEDED, 0,
	 {{"epsilon", PM_NUM, "--epsilon", NULL, 0, 0, 1e-5},
	  {"r", PM_NUM, "--ram-r", NULL, 0, 0, 0.1}, {"alpha", PM_NUM, "--ram-alpha", NULL, 0, 0, 0.2}}},
	{"sce", "sce", {0}, BASE_NEEDED, 0,
	 {{"select_topk", PM_NUM, "--select-topk", NULL, 0, 0, 1}, INT8}},
	{"karcher", "karcher", {0}, BASE_AVERAGED, 0,
	 {{"max_iter", PM_NUM, "--max-iter", NULL, 0, 0, 10}, {"tol", PM_NUM, "--tol", NULL, 0, 0, 1e-5}}},
	{"passthrough", "passthrough", {0}, BASE_NONE, 1,
	 {{"scale", PM_FIXED, NULL, NULL, 1, 0, 1}}},
	{"arcee_fusion", "arcee_fusion", {0}, BASE_NEEDED, 1, {{0}}},
	/* lines' own: Consensus Task Arithmetic */
	{"consensus", "consensus", {0}, BASE_NEEDED, 0,
	 {{"weight", PM_LIST, "--weights", NULL, 1, 0, 1},
	  {"tall_lambda", PM_LIST, "--tall-lambda", NULL, 1, 0, 0.4},
	  {"consensus_k", PM_NUM, "--consensus-k", NULL, 0, 0, 2}, LAMBDA}},
};

/* clang-format on */

/* ---- output vector ----------------------------------------------------------------- */
struct argv_b {
	char **v;
	char **where; /* of each v[k]: "FILE:LINE:COL: key", or NULL */
	size_t n, cap;
	char *cur;    /* where the strings pushed now come from */
	int oom;
};

static void push(struct argv_b *a, const char *s)
{
	if (!s) /* a flag whose one value has no option */
		return;
	if (a->n == a->cap) {
		size_t cap = a->cap ? 2 * a->cap : 32;
		char **v = realloc(a->v, cap * sizeof(*v)), **w;
		if (v)
			a->v = v;
		if (!v || !(w = realloc(a->where, cap * sizeof(*w)))) {
			a->oom = 1;
			return;
		}
		a->where = w, a->cap = cap;
	}
	a->where[a->n] = a->cur ? strdup(a->cur) : NULL;
	if (!(a->v[a->n] = strdup(s)) || (a->cur && !a->where[a->n])) {
		free(a->v[a->n]), free(a->where[a->n]);
		a->oom = 1;
	} else {
		a->n++;
	}
}

/* The strings pushed next come from KEY at LINE:COL of the configuration
 * (line 0: from no key of it). */
static void push_from(struct argv_b *a, const struct mcfg *c, int line, int col, const char *key)
{
	free(a->cur);
	a->cur = NULL;
	if (line <= 0)
		return;
	size_t n = strlen(c->file) + strlen(key) + 48;
	if (!(a->cur = malloc(n)))
		a->oom = 1;
	else
		snprintf(a->cur, n, "%s:%d:%d: %s", c->file, line, col, key);
}

/* The shortest text strtod reads back as exactly V. */
static const char *num_text(char *buf, size_t n, double v)
{
	if (v == floor(v) && fabs(v) < 9007199254740992.0) { /* 10, not 1e+01 */
		snprintf(buf, n, "%.0f", v);
		return buf;
	}
	for (int p = 1; p <= 17; p++) {
		snprintf(buf, n, "%.*g", p, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	return buf;
}

void mcfg_args_free(char **args, size_t nargs)
{
	for (size_t i = 0; i < nargs; i++)
		free(args[i]);
	free(args);
}

/* ---- resolving one parameter to one number ---------------------------------------- */
struct vals {
	double first;
	int any, differ;
	const struct mcfg_value *varies; /* the value that gives several numbers */
};

static void add_num(struct vals *s, double x, const struct mcfg_value *from)
{
	if (!s->any)
		s->first = x, s->any = 1;
	else if (x != s->first && !s->differ)
		s->differ = 1, s->varies = from;
}

/* Every number V can give; 1 when it gives one for every tensor. */
static int add_value(struct vals *s, const struct mcfg_value *v)
{
	switch (v->kind) {
	case MCFG_NUMBER: add_num(s, v->num, v); return 1;
	case MCFG_GRADIENT:
		for (size_t i = 0; i < v->ngrad; i++)
			add_num(s, v->grad[i], v);
		return 1;
	case MCFG_FILTERS: {
		int all = 0, before = s->differ;
		for (size_t i = 0; i < v->nfilters; i++) {
			add_value(s, &v->filters[i].value);
			all |= v->filters[i].filter == NULL;
		}
		if (s->differ && !before)
			s->varies = v; /* report the list, not the entry */
		return all;
	}
	}
	return 1;
}

static const struct mcfg_param *pget(const struct mcfg_params *ps, const char *name)
{
	for (size_t i = 0; i < ps->n; i++)
		if (!strcmp(ps->p[i].name, name))
			return &ps->p[i];
	return NULL;
}

/* The one number parameter P has at the levels LV (the first that gives a
 * value for every tensor wins; NULL entries are skipped), with model M
 * (NULL: none) named in messages: 1 with *out, 0 when it has none
 * (required and missing: a problem), -1 when it could differ between
 * tensors (a problem). */
static int resolve_levels(struct mcfg *c, const struct mcfg_model *m, const struct pdef *p,
                          const struct mcfg_params *const *lvs, size_t nlv, int vary_ok,
                          double *out)
{
	struct vals s = {0};
	const struct mcfg_param *lv[3] = {NULL, NULL, NULL};
	int whole = 0;
	for (size_t i = 0; i < nlv && i < 3; i++)
		lv[i] = lvs[i] ? pget(lvs[i], p->name) : NULL;
	for (size_t i = 0; i < nlv && !whole; i++)
		if (lv[i])
			whole = add_value(&s, &lv[i]->v);
	if (!whole && !p->required)
		add_num(&s, p->def, NULL);
	const struct mcfg_param *first = lv[0] ? lv[0] : lv[1] ? lv[1] : lv[2];
	if (s.differ && vary_ok && (whole || !p->required)) {
		*out = s.first;
		return 2;
	}
	if (s.differ && !whole && p->required) { /* not a value for every tensor */
		mcfg_problem(c, first->v.line, first->v.col,
		             "%s: no value for the tensors no filter matches: end the list with a "
		             "{value: X} (lines checks this before it reads the models' names)",
		             p->name);
		return 0;
	}
	if (s.differ) {
		/* a level's value against the default or a level below */
		const struct mcfg_value *v = s.varies ? s.varies : &first->v;
		if (!strcmp(p->name, "weight") || !strcmp(p->name, "density"))
			mcfg_problem(c, v->line, v->col,
			             "%s: per-tensor values are not supported yet by this method "
			             "(task_arithmetic, linear, nuslerp, multislerp, ties, "
			             "dare_*, breadcrumbs* and della* take per-tensor weights, "
			             "the last four per-tensor densities): give one number",
			             p->name);
		else
			mcfg_problem(c, v->line, v->col,
			             "%s: per-tensor values are not supported yet (the "
			             "methods take one number per model): give one number",
			             p->name);
		return -1;
	}
	if (!whole && p->required) {
		if (s.any) {
			mcfg_problem(c, first->v.line, first->v.col,
			             "%s: no value for the tensors no filter "
			             "matches: end the list with a {value: X}",
			             p->name);
		} else if (m) {
			mcfg_problem(c, m->line, m->col,
			             "model '%s' has no %s (give parameters: %s: X "
			             "here or in the global parameters)",
			             m->ref, p->name, p->name);
		} else if (p->per_model) {
			mcfg_problem(
			    c, c->base.line, c->base.col,
			    "base_model '%s' has no %s (%s "
			    "averages it in): give parameters: %s: X, or list it under models",
			    c->base.s, p->name, "this method", p->name);
		} else {
			mcfg_problem(c, 1, 1, "%s is required: give parameters: %s: X", p->name,
			             p->name);
		}
		return 0;
	}
	*out = s.first;
	return 1;
}

/* The input of slices[0]'s source M (an input's model in struct sources). */
static size_t input_of(const struct mcfg *c, const struct mcfg_model *m)
{
	const struct mcfg_slice *s0 = &c->slices[0];
	for (size_t k = 0; k < c->slice_inputs; k++)
		if (&s0->src[s0->order[k]] == m)
			return k;
	return 0;
}

/* The one number parameter P has for model M (NULL: the global level only):
 * 1 with *out, 0 when it has none (required and missing: a problem), -1
 * when it could differ between tensors (a problem). With slices, M's
 * source in each slice, then the slice's parameters, then the global
 * ones, as mergekit reads them; every slice must give the same number. */
static int resolve_ex(struct mcfg *c, const struct mcfg_model *m, const struct pdef *p, int vary_ok,
                      double *out)
{
	if (!c->nslices || !c->slices[0].order) {
		const struct mcfg_params *lv[2] = {m ? &m->params : NULL, &c->params};
		return resolve_levels(c, m, p, lv, 2, vary_ok, out);
	}
	size_t k = m ? input_of(c, m) : 0;
	int varies = 0;
	for (size_t s = 0; s < c->nslices; s++) {
		const struct mcfg_slice *sl = &c->slices[s];
		const struct mcfg_model *ms = m ? &sl->src[sl->order[k]] : NULL;
		const struct mcfg_params *lv[3] = {ms ? &ms->params : NULL, &sl->params,
		                                   &c->params};
		double v;
		int r = resolve_levels(c, ms, p, lv, 3, vary_ok, &v);
		if (r == 2 || (vary_ok && r == 1 && s && v != *out)) {
			varies = 1;
			if (!s)
				*out = v;
			continue;
		}
		if (r != 1)
			return r;
		if (s && v != *out) {
			char a[40], b[40];
			mcfg_problem(
			    c, sl->line, sl->col,
			    "%s: %s in this slice, %s in the first: values that differ between "
			    "slices are not supported yet (the methods take one number per model)",
			    p->name, num_text(a, sizeof(a), v), num_text(b, sizeof(b), *out));
			return -1;
		}
		if (!s)
			*out = v;
	}
	return varies ? 2 : 1;
}

static int resolve(struct mcfg *c, const struct mcfg_model *m, const struct pdef *p, double *out)
{
	return resolve_ex(c, m, p, 0, out);
}

/* ---- checking the parameters against the method --------------------------------------- */
static const struct pdef *pdef_of(const struct mdef *md, const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(md->params) && md->params[i].name; i++)
		if (!strcmp(md->params[i].name, name))
			return &md->params[i];
	return NULL;
}

/* Another method that takes NAME, or NULL. */
static const char *taken_by(const char *name)
{
	for (size_t k = 0; k < ARRAY_SIZE(mdefs); k++)
		if (pdef_of(&mdefs[k], name))
			return mdefs[k].name;
	return NULL;
}

/* A density outside [0, 1] among the values that a gradient or filters
 * can give a tensor (a gradient gives values between its entries, so the
 * entries decide; plan.c's check of each tensor's densities): the problem
 * at the value, before a tensor meets it. */
static void check_unit(struct mcfg *c, const char *name, const struct mcfg_value *v)
{
	char a[40];
	switch (v->kind) {
	case MCFG_NUMBER:
		if (!(v->num >= 0 && v->num <= 1))
			mcfg_problem(c, v->line, v->col, "%s: %s is outside [0, 1]", name,
			             num_text(a, sizeof(a), v->num));
		break;
	case MCFG_GRADIENT:
		for (size_t i = 0; i < v->ngrad; i++)
			if (!(v->grad[i] >= 0 && v->grad[i] <= 1)) {
				mcfg_problem(c, v->line, v->col, "%s: the gradient's %s is outside [0, 1]",
				             name, num_text(a, sizeof(a), v->grad[i]));
				break;
			}
		break;
	case MCFG_FILTERS:
		for (size_t i = 0; i < v->nfilters; i++)
			check_unit(c, name, &v->filters[i].value);
		break;
	}
}

static void check_params(struct mcfg *c, const struct mdef *md, const struct mcfg_params *ps,
                         const struct mcfg_model *m)
{
	const char *names[ARRAY_SIZE(md->params)];
	size_t nn = 0;
	for (size_t i = 0; i < ARRAY_SIZE(md->params) && md->params[i].name; i++)
		names[nn++] = md->params[i].name;
	for (size_t i = 0; i < ps->n; i++) {
		const struct mcfg_param *q = &ps->p[i];
		const struct pdef *p = pdef_of(md, q->name);
		const char *other = taken_by(q->name), *best = mcfg_closest(q->name, names, nn);
		if (p && m && !p->per_model)
			mcfg_problem(c, q->line, q->col,
			             "%s is a global parameter of %s: mergekit "
			             "reads it from the top-level parameters only",
			             q->name, md->name);
		else if (!p && other && !best)
			mcfg_problem(c, q->line, q->col, "%s: %s does not take it (%s does)%s",
			             q->name, md->name, other,
			             nn ? "" : "; it takes no parameters");
		else if (!p && best)
			mcfg_problem(c, q->line, q->col,
			             "unknown parameter '%s' of %s (did you mean "
			             "'%s'?)",
			             q->name, md->name, best);
		else if (!p)
			mcfg_problem(c, q->line, q->col, "unknown parameter '%s'%s", q->name,
			             nn ? "" : " (this method takes none)");
		else if (!strcmp(q->name, "density") && q->v.kind != MCFG_NUMBER)
			check_unit(c, q->name, &q->v); /* one number: --density's check */
	}
}

static const struct mdef *find_method(struct mcfg *c)
{
	const char *names[ARRAY_SIZE(mdefs)];
	const char *name = c->method.s;
	if (!name)
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(mdefs); i++) {
		names[i] = mdefs[i].name;
		if (strcmp(name, mdefs[i].name))
			continue;
		struct lines_merge_opts o;
		lines_merge_opts_init(&o);
		if (lines_method_select(&o, mdefs[i].lines) < 0) {
			mcfg_problem(c, c->method.line, c->method.col,
			             "merge_method: %s is not in this "
			             "version of lines",
			             name);
			return NULL;
		}
		return &mdefs[i];
	}
	const char *best = mcfg_closest(name, names, ARRAY_SIZE(mdefs));
	if (best)
		mcfg_problem(c, c->method.line, c->method.col,
		             "merge_method: unknown method '%s' "
		             "(did you mean '%s'?)",
		             name, best);
	else {
		char list[512] = "";
		for (size_t i = 0; i < ARRAY_SIZE(mdefs); i++)
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
			         mdefs[i].name);
		mcfg_problem(c, c->method.line, c->method.col, "merge_method: unknown method '%s' (%s)",
		             name, list);
	}
	return NULL;
}

/* A model reference: an existing path, or what looks like a hub id
 * (org/name[@rev], found in the local cache when the model is opened). */
static void check_ref(struct mcfg *c, const char *ref, int line, int col)
{
	struct stat st;
	const char *slash = strchr(ref, '/');
	if (!strcmp(ref, "-") && !strcmp(c->file, "(standard input)"))
		mcfg_problem(c, line, col,
		             "'-': standard input holds the configuration; name the "
		             "model's file");
	if (!strcmp(ref, "-") || stat(ref, &st) == 0)
		return;
	if (strchr(ref, '+'))
		mcfg_problem(c, line, col,
		             "'%s': model+lora references are not supported (merge the "
		             "LoRA into its model first)",
		             ref);
	else if (slash && ref[0] != '.' && ref[0] != '/' && !strchr(slash + 1, '/') &&
	         !strstr(ref, ".safetensors") && !strstr(ref, ".json"))
		return; /* a hub id: ckpt_open looks in the cache and names where it looked */
	else
		mcfg_problem(c, line, col, "'%s': no such file or directory", ref);
}

/* ---- the sources -------------------------------------------------------------------------- */
struct sources {
	const struct mcfg_model **m; /* NULL entry: the base appended (global parameters) */
	size_t n;
};

static void pick_sources(struct mcfg *c, const struct mdef *md, struct sources *s)
{
	const char *base = c->base.s;
	int listed = 0;
	s->m = calloc(c->nmodels + 1, sizeof(*s->m));
	if (!s->m)
		return;
	for (size_t i = 0; i < c->nmodels; i++) {
		int is_base = base && c->models[i].ref && !strcmp(c->models[i].ref, base);
		listed |= is_base;
		if (!c->models[i].ref || (is_base && md->base != BASE_AVERAGED))
			continue;
		s->m[s->n++] = &c->models[i];
	}
	for (size_t i = 0; i < c->nmodels; i++)
		if (c->models[i].ref)
			check_ref(c, c->models[i].ref, c->models[i].line, c->models[i].col);
	if (base)
		check_ref(c, base, c->base.line, c->base.col);
	if (md->base == BASE_AVERAGED && base && !listed)
		s->m[s->n++] = NULL;
	if (md->base == BASE_NONE && base)
		mcfg_problem(c, c->base.line, c->base.col,
		             "%s copies one model and takes no base_model (mergekit adds the base "
		             "as a second model and fails)",
		             md->name);
	if (md->base == BASE_NEEDED && !base)
		mcfg_problem(c, 1, 1,
		             "%s needs base_model: (the model the task vectors are taken "
		             "from)",
		             md->name);
	if (c->models && s->n == 0)
		mcfg_problem(c, c->models_line, c->models_col, "models: no model to merge%s",
		             base ? " besides the base" : "");
	/* a base with weight 0 adds nothing to the mean (and --print-config lists it
	 * so to say that linear's -b is only LiNeS's reference) */
	for (size_t i = 0; md->base == BASE_AVERAGED && i < s->n; i++) {
		const struct mcfg_param *w = s->m[i] ? pget(&s->m[i]->params, "weight") : NULL;
		int is_base = !s->m[i] || (base && !strcmp(s->m[i]->ref, base));
		if (!w)
			w = pget(&c->params, "weight");
		if (is_base && w && w->v.kind == MCFG_NUMBER && w->v.num == 0) {
			memmove(&s->m[i], &s->m[i + 1], (s->n - i - 1) * sizeof(*s->m));
			s->n--, i--;
		}
	}
	if (md->one_model && s->n > 1 && md->base == BASE_NONE)
		mcfg_problem(c, c->models_line, c->models_col,
		             "%s copies exactly one model (got %zu); stack layers of several "
		             "with slices:",
		             md->name, s->n);
	else if (md->one_model && s->n > 1)
		mcfg_problem(c, c->models_line, c->models_col,
		             "%s merges exactly one model into the "
		             "base (got %zu besides it)",
		             md->name, s->n);
}

/* ---- slices -------------------------------------------------------------------------- */
/* The base of slice SL: its own base_model, else the configuration's. */
static const struct mcfg_str *slice_base(const struct mcfg *c, const struct mcfg_slice *sl)
{
	return sl->base.s ? &sl->base : &c->base;
}

/* Check that every source's layer_range is within its model's blocks
 * (the headers only; a model that cannot be opened is the merge's to
 * report). */
static void check_ranges(struct mcfg *c)
{
	struct lines_layer_opts lo = {.regex = c->layer_regex.s};
	for (size_t s = 0; s < c->nslices; s++)
		for (size_t j = 0; j < c->slices[s].nsrc; j++) {
			const struct mcfg_model *m = &c->slices[s].src[j];
			struct lines_model *lm;
			struct lines_error e;
			if (!m->ref || m->end <= m->first ||
			    lines_model_open(m->ref, &lo, &lm, &e) < 0)
				continue;
			long L = lines_model_num_layers(lm);
			lines_model_close(lm);
			if (m->end > L)
				mcfg_problem(
				    c, m->range_line, m->range_col,
				    "layer_range: [%ld, %ld] is beyond the %ld blocks of '%s' "
				    "(blocks 0 to %ld)",
				    m->first, m->end, L, m->ref, L - 1);
		}
}

/*
 * The inputs a slice configuration composes: input k is source order[k]
 * of every slice. With a base (a method that takes one, or LiNeS over
 * linear), input 0 is each slice's base_model source; then the other
 * sources in order (all of them for linear, which averages the base in).
 * Every slice must give the same number of inputs, and a slice's sources
 * the same number of blocks.
 */
static void pick_slices(struct mcfg *c, const struct mdef *md, int with_base, struct sources *src)
{
	size_t want = 0;
	src->m = NULL, src->n = 0;
	for (size_t s = 0; s < c->nslices && md->base == BASE_NEEDED; s++)
		if (!slice_base(c, &c->slices[s])->s) {
			mcfg_problem(c, 1, 1,
			             "%s needs base_model: (the model the task vectors are taken "
			             "from), one of every slice's sources",
			             md->name);
			return;
		}
	for (size_t s = 0; s < c->nslices; s++) {
		struct mcfg_slice *sl = &c->slices[s];
		const struct mcfg_str *b = slice_base(c, sl);
		size_t n = 0, bi = (size_t)-1;
		if (!sl->nsrc)
			return;
		sl->order = calloc(sl->nsrc + 1, sizeof(*sl->order));
		if (!sl->order)
			return;
		for (size_t j = 0; j < sl->nsrc; j++)
			if (sl->src[j].ref && !strcmp(sl->src[j].ref, "-"))
				mcfg_problem(c, sl->src[j].line, sl->src[j].col,
				             "'-': a slice's model is read where its blocks are, not in "
				             "order: name its file");
			else if (sl->src[j].ref)
				check_ref(c, sl->src[j].ref, sl->src[j].line, sl->src[j].col);
		for (size_t j = 1; j < sl->nsrc; j++)
			if (sl->src[j].end - sl->src[j].first != sl->src[0].end - sl->src[0].first)
				mcfg_problem(c, sl->src[j].range_line, sl->src[j].range_col,
				             "layer_range: %ld blocks, and the slice's first "
				             "source has %ld: "
				             "the sources of a slice have as many blocks",
				             sl->src[j].end - sl->src[j].first,
				             sl->src[0].end - sl->src[0].first);
		if (md->base == BASE_NONE && sl->nsrc != 1) {
			mcfg_problem(c, sl->line, sl->col,
			             "%s takes one source per slice (this one has %zu): to merge "
			             "layers, use a merge method",
			             md->name, sl->nsrc);
			continue;
		}
		if (with_base) {
			for (size_t j = 0; j < sl->nsrc && bi == (size_t)-1; j++)
				if (sl->src[j].ref && b->s && !strcmp(sl->src[j].ref, b->s))
					bi = j;
			if (bi == (size_t)-1) {
				mcfg_problem(c, sl->line, sl->col,
				             "base_model '%s' is not one of this slice's sources "
				             "(each slice merges its sources into its base's)",
				             b->s ? b->s : "?");
				continue;
			}
			sl->order[n++] = bi;
		}
		for (size_t j = 0; j < sl->nsrc; j++)
			if (j != bi || md->base == BASE_AVERAGED)
				sl->order[n++] = j;
		if (s == 0)
			want = n;
		else if (n != want)
			mcfg_problem(
			    c, sl->line, sl->col,
			    "this slice merges %zu model%s and the first %zu: the slices of a "
			    "merge have the same number of sources (mergekit's rule)",
			    n - !!with_base, n - !!with_base == 1 ? "" : "s", want - !!with_base);
	}
	for (size_t s = 0; s < c->nslices; s++)
		if (!c->slices[s].order)
			return;
	c->slice_inputs = want;
	check_ranges(c);
	if (want <= !!with_base) {
		mcfg_problem(c, c->slices_line, c->slices_col, "slices: no model to merge%s",
		             with_base ? " besides the base" : "");
		return;
	}
	src->m = calloc(want, sizeof(*src->m));
	if (!src->m)
		return;
	for (size_t k = !!with_base; k < want; k++)
		src->m[src->n++] = &c->slices[0].src[c->slices[0].order[k]];
	if (md->one_model && src->n > 1 && md->base != BASE_NONE)
		mcfg_problem(c, c->slices_line, c->slices_col,
		             "%s merges exactly one model into the base (the slices give %zu "
		             "besides it)",
		             md->name, src->n);
}

/* The name of input K of a slice configuration: its sources, "A[0:8]+B[4:12]". */
static char *slice_name(const struct mcfg *c, size_t k)
{
	size_t n = 1;
	for (size_t s = 0; s < c->nslices; s++) {
		const struct mcfg_model *m = &c->slices[s].src[c->slices[s].order[k]];
		n += strlen(m->ref) + 48;
	}
	char *name = malloc(n), *p = name;
	if (!name)
		return NULL;
	*p = '\0';
	for (size_t s = 0; s < c->nslices; s++) {
		const struct mcfg_model *m = &c->slices[s].src[c->slices[s].order[k]];
		p += sprintf(p, "%s%s[%ld:%ld]", s ? "+" : "", m->ref, m->first, m->end);
	}
	return name;
}

int mcfg_take_slices(const struct mcfg *c, struct mcfg_slices *out)
{
	memset(out, 0, sizeof(*out));
	if (!c->nslices)
		return 0;
	out->n = c->nslices, out->ninputs = c->slice_inputs;
	out->s = calloc(out->n, sizeof(*out->s));
	out->src = calloc(out->n * out->ninputs, sizeof(*out->src));
	if (!out->s || !out->src)
		return -1;
	for (size_t s = 0; s < out->n; s++) {
		struct lines_slice_src *d = &out->src[s * out->ninputs];
		out->s[s].src = d;
		for (size_t k = 0; k < out->ninputs; k++) {
			const struct mcfg_model *m = &c->slices[s].src[c->slices[s].order[k]];
			d[k].first = m->first, d[k].end = m->end;
			if (!(d[k].model = strdup(m->ref)))
				return -1;
		}
	}
	return 0;
}

void mcfg_slices_free(struct mcfg_slices *s)
{
	for (size_t i = 0; s->src && i < s->n * s->ninputs; i++)
		free((char *)(uintptr_t)s->src[i].model);
	free(s->src);
	free(s->s);
	memset(s, 0, sizeof(*s));
}

/* ---- the options ------------------------------------------------------------------------- */
struct mapper {
	struct mcfg *c;
	const struct mdef *md;
	struct sources src;
	struct argv_b *a;
	int lines_on; /* lines: alpha given */
	const char *method;
};

static const struct mcfg_param *lines_num(const struct mcfg *c, const char *name)
{
	return pget(&c->lines_num, name);
}

static void push_opt(struct argv_b *a, const char *opt, double v)
{
	char buf[40];
	push(a, opt);
	push(a, num_text(buf, sizeof(buf), v));
}

/* Parameter P's first mention: a source's parameters, else the global
 * ones; NULL when none gives it. */
static const struct mcfg_param *first_param(const struct mapper *mp, const struct pdef *p)
{
	const struct mcfg_param *q = NULL;
	for (size_t i = 0; i < mp->src.n && !q; i++)
		q = mp->src.m[i] ? pget(&mp->src.m[i]->params, p->name) : NULL;
	return q ? q : pget(&mp->c->params, p->name);
}

/* The options of parameter P come from its first mention. */
static void param_from(struct mapper *mp, const struct pdef *p)
{
	const struct mcfg_param *q = first_param(mp, p);
	push_from(mp->a, mp->c, q ? q->line : 0, q ? q->col : 0, p->name);
}

/* One value per source, or a problem. */
static void map_list(struct mapper *mp, const struct pdef *p)
{
	char *list = calloc(mp->src.n + 1, 40);
	size_t k = 0;
	int ok = 1, same = 1;
	double first = 0;
	if (!list) {
		mp->a->oom = 1;
		return;
	}
	for (size_t i = 0; i < mp->src.n; i++) {
		double v;
		char buf[40];
		int r = resolve_ex(mp->c, mp->src.m[i], p, p->map == PM_TLIST, &v);
		if (r == 2) /* the first value here; the tensors' own from tensor_params */
			mp->c->tensor_lists |=
			    !strcmp(p->name, "weight") ? MCFG_TENSOR_W : MCFG_TENSOR_D;
		else if (r != 1) {
			ok = 0;
			continue;
		}
		k += (size_t)sprintf(list + k, "%s%s", i ? "," : "", num_text(buf, sizeof(buf), v));
		same &= i == 0 || v == first;
		first = i ? first : v;
	}
	/* one density (one TALL lambda) for all is what the command line gives
	 * as one number, and what the output records so; -w is always a list */
	if (ok && same && mp->src.n && strcmp(p->opt, "--weights")) {
		char buf[40];
		strcpy(list, num_text(buf, sizeof(buf), first));
	}
	if (ok && mp->src.n) {
		push(mp->a, p->opt);
		push(mp->a, list);
	}
	free(list);
}

/* One value for every source (a tensor parameter lines takes once). */
static int resolve_one(struct mapper *mp, const struct pdef *p, double *out)
{
	if (!p->per_model || mp->src.n == 0)
		return resolve(mp->c, NULL, p, out);
	int r = 1;
	for (size_t i = 0; i < mp->src.n && r == 1; i++) {
		double v;
		if ((r = resolve(mp->c, mp->src.m[i], p, &v)) == 1 && i && v != *out) {
			const struct mcfg_model *m = mp->src.m[i];
			mcfg_problem(mp->c, m ? m->line : 1, m ? m->col : 1,
			             "%s: one value per model "
			             "is not supported yet (lines takes one for all)",
			             p->name);
			return -1;
		}
		*out = v;
	}
	return r;
}

static void map_param(struct mapper *mp, const struct pdef *p)
{
	struct mcfg *c = mp->c;
	const struct mcfg_param *given = pget(&c->params, p->name);
	double v;
	param_from(mp, p);
	if (p->map == PM_LIST || p->map == PM_TLIST) {
		map_list(mp, p);
		return;
	}
	if (!strcmp(p->name, "lambda") && mp->lines_on) {
		if (given)
			mcfg_problem(c, given->line, given->col,
			             "lambda and lines: alpha exclude each "
			             "other (LiNeS replaces the global coefficient)");
		return;
	}
	if (!strcmp(p->name, "rescale") && c->rescale.s) {
		if (given)
			mcfg_problem(c, given->line, given->col,
			             "rescale: give it here or as lines: "
			             "rescale, not both");
		return;
	}
	if (p->map == PM_NOEFFECT) /* its type was checked when read */
		return;
	if (p->map == PM_TENSOR) { /* a global parameter that may vary by tensor */
		int r = resolve_ex(c, NULL, p, 1, &v);
		if (r == 2)
			c->tensor_param = p->name;
		if (r >= 1)
			push_opt(mp->a, p->opt, v);
		return;
	}
	if (resolve_one(mp, p, &v) != 1)
		return;
	switch (p->map) {
	case PM_NUM: push_opt(mp->a, p->opt, v); break;
	case PM_FLAG: push(mp->a, v != 0 ? p->opt : p->neg); break;
	case PM_NORM_MEAN: mp->method = v != 0 ? "mean" : mp->method; break;
	case PM_FIXED:
		if (v != p->def) {
			const struct mcfg_param *q = first_param(mp, p);
			if (q && q->v.is_bool) /* written true or false: said so */
				mcfg_problem(c, q->v.line, q->v.col,
				             "%s: only %s is supported yet", p->name,
				             p->def != 0 ? "true" : "false");
			else
				mcfg_problem(c, q ? q->v.line : 1, q ? q->v.col : 1,
				             "%s: only %g is supported yet", p->name, p->def);
		}
		break;
	case PM_LIST:
	case PM_TLIST:
	case PM_TENSOR:
	case PM_NOEFFECT: break;
	}
}

/* out_dtype (else dtype): bfloat16, float16, float32 (float64), torch. allowed */
static void map_dtype(struct mapper *mp)
{
	static const char *const names[] = {"bfloat16", "float16", "float32", "float64"};
	static const char *const opts[] = {"bf16", "f16", "f32", "f64"};
	struct mcfg *c = mp->c;
	const struct mcfg_str *d = c->out_dtype.s ? &c->out_dtype : &c->dtype;
	for (int i = 0; i < 2; i++) {
		const struct mcfg_str *s = i ? &c->dtype : &c->out_dtype;
		if (!s->s)
			continue;
		const char *n = strncmp(s->s, "torch.", 6) ? s->s : s->s + 6;
		size_t k = 0;
		while (k < ARRAY_SIZE(names) && strcmp(n, names[k]))
			k++;
		if (k == ARRAY_SIZE(names))
			mcfg_problem(c, s->line, s->col, "%s: '%s' is not a dtype lines writes%s",
			             i ? "dtype" : "out_dtype", s->s, mcfg_hint(n, names, 4));
		else if (s == d && c->ldtype.s)
			mcfg_problem(c, c->ldtype.line, c->ldtype.col,
			             "lines: dtype: give the output "
			             "dtype once (here or as %s)",
			             i ? "dtype" : "out_dtype");
		else if (s == d) {
			push(mp->a, "--dtype");
			push(mp->a, opts[k]);
		}
	}
	if (c->ldtype.s) {
		push(mp->a, "--dtype");
		push(mp->a, c->ldtype.s);
	}
}

static void map_tokenizer(struct mcfg *c)
{
	const struct mcfg_str *t = &c->tokenizer_source;
	if (!t->s || !strcmp(t->s, "base") || (c->base.s && !strcmp(t->s, c->base.s)))
		return;
	if (!strcmp(t->s, "union"))
		mcfg_problem(
		    c, t->line, t->col,
		    "tokenizer_source: union is not supported (lines "
		    "merges no vocabularies): use base, and --vocab base to merge a larger "
		    "model's embeddings over the base's rows");
	else /* a model: here as the models' paths; its vocabulary is checked
	      * against the base's when the plan is made (map_lines) */
		check_ref(c, t->s, t->line, t->col);
}

static void push_str(struct mapper *mp, const char *opt, const struct mcfg_str *s, const char *key)
{
	if (s->s) {
		push_from(mp->a, mp->c, s->line, s->col, key);
		push(mp->a, opt);
		push(mp->a, s->s);
		push_from(mp->a, mp->c, 0, 0, NULL);
	}
}

/* From the lines: number NAME (Q), as "lines: NAME". */
static void lines_from(struct mapper *mp, const struct mcfg_param *q, const char *name)
{
	char key[64];
	snprintf(key, sizeof(key), "lines: %s", name);
	push_from(mp->a, mp->c, q ? q->line : 0, q ? q->col : 0, key);
}

/* A lines: number that must be an integer in [0, max]. */
static void push_int(struct mapper *mp, const char *name, const char *opt, double max)
{
	const struct mcfg_param *q = lines_num(mp->c, name);
	if (!q || q->v.kind != MCFG_NUMBER)
		return;
	if (q->v.num != floor(q->v.num) || q->v.num < 0 || q->v.num > max)
		mcfg_problem(mp->c, q->v.line, q->v.col,
		             "lines: %s: expected an integer from 0 to "
		             "%.0f",
		             name, max);
	else {
		lines_from(mp, q, name);
		push_opt(mp->a, opt, q->v.num);
		push_from(mp->a, mp->c, 0, 0, NULL);
	}
}

/* lines: keys of one family of methods: a problem at the key for another */
static void check_lines_keys(struct mapper *mp)
{
	struct mcfg *c = mp->c;
	struct lines_merge_opts o;
	lines_merge_opts_init(&o);
	lines_method_select(&o, mp->method);
	unsigned mo = lines_method_options(o.method);
	const struct mcfg_param *seed = lines_num(c, "seed");
	if (c->trim.s && !(mo & LINES_MOPT_TRIM))
		mcfg_problem(c, c->trim.line, c->trim.col,
		             "lines: trim: only ties trims by a "
		             "threshold (not %s)",
		             c->method.s);
	if (c->rescale.s && !(mo & LINES_MOPT_RESCALE))
		mcfg_problem(c, c->rescale.line, c->rescale.col,
		             "lines: rescale: only dare_ties "
		             "and dare_linear rescale (not %s)",
		             c->method.s);
	if (seed && !(mo & LINES_MOPT_SEED))
		mcfg_problem(c, seed->line, seed->col,
		             "lines: seed: only dare_ties and dare_linear "
		             "draw at random (not %s)",
		             c->method.s);
}

/* lines: schedule: [f0, f1, ...] is --schedule f0,f1,... (with alpha) */
static void map_schedule(struct mapper *mp)
{
	const struct mcfg_param *q = lines_num(mp->c, "schedule");
	char buf[40];
	if (!q || q->v.kind != MCFG_GRADIENT || q->v.ngrad < 2)
		return; /* absent, or a problem already */
	if (!mp->lines_on) {
		mcfg_problem(mp->c, q->line, q->col,
		             "lines: schedule needs alpha (auto or a number): it shapes LiNeS's "
		             "ramp");
		return;
	}
	char *list = calloc(q->v.ngrad, 40);
	if (!list) {
		mp->a->oom = 1;
		return;
	}
	for (size_t i = 0, k = 0; i < q->v.ngrad; i++)
		k += (size_t)sprintf(list + k, "%s%s", i ? "," : "",
		                     num_text(buf, sizeof(buf), q->v.grad[i]));
	lines_from(mp, q, "schedule");
	push(mp->a, "--schedule");
	push(mp->a, list);
	push_from(mp->a, mp->c, 0, 0, NULL);
	free(list);
}

static void map_lines(struct mapper *mp)
{
	struct mcfg *c = mp->c;
	check_lines_keys(mp);
	const struct mcfg_param *alpha = lines_num(c, "alpha"), *beta = lines_num(c, "beta"),
	                        *lambda = lines_num(c, "lambda");
	if (mp->lines_on) {
		if (alpha)
			lines_from(mp, alpha, "alpha");
		else
			push_from(mp->a, c, c->alpha_word.line, c->alpha_word.col, "lines: alpha");
		push(mp->a, "--lines");
		if (alpha) {
			push_opt(mp->a, "--alpha", alpha->v.num);
		} else {
			push(mp->a, "--alpha");
			push(mp->a, "auto");
		}
	} else if (beta) {
		mcfg_problem(c, beta->line, beta->col,
		             "lines: beta needs alpha (auto or a number)");
	}
	if (beta && mp->lines_on) {
		lines_from(mp, beta, "beta");
		push_opt(mp->a, "--beta", beta->v.num);
	}
	push_from(mp->a, c, 0, 0, NULL);
	map_schedule(mp);
	if (lambda && mp->lines_on)
		mcfg_problem(c, lambda->line, lambda->col,
		             "lines: lambda and alpha exclude each "
		             "other (LiNeS replaces the global coefficient)");
	else if (lambda && pdef_of(mp->md, "lambda"))
		mcfg_problem(c, lambda->line, lambda->col,
		             "lines: lambda: %s takes lambda in parameters: (mergekit's); give it "
		             "there",
		             mp->md->name);
	else if (lambda) {
		lines_from(mp, lambda, "lambda");
		push_opt(mp->a, "--lambda", lambda->v.num);
		push_from(mp->a, c, 0, 0, NULL);
	}
	push_str(mp, "--norm", &c->norm, "lines: norm");
	push_str(mp, "--stacks", &c->stacks, "lines: stacks");
	push_str(mp, "--stack-order", &c->stack_order, "lines: stack_order");
	push_str(mp, "--trim", &c->trim, "lines: trim");
	push_str(mp, "--layer-regex", &c->layer_regex, "lines: layer_regex");
	push_str(mp, "--vocab", &c->vocab, "lines: vocab");
	if (c->tokenizer_source.s && strcmp(c->tokenizer_source.s, "union") &&
	    strcmp(c->tokenizer_source.s, "base") &&
	    !(c->base.s && !strcmp(c->tokenizer_source.s, c->base.s)))
		push_str(mp, "--tokenizer-source", &c->tokenizer_source, "tokenizer_source");
	push_int(mp, "seed", "--seed", 9007199254740992.0);
	push_int(mp, "num_layers", "--num-layers", 1000000);
	/* density: lines' own default, no option */
	if (c->rescale.s && strcmp(c->rescale.s, "density"))
		push(mp->a, !strcmp(c->rescale.s, "l1") ? "--rescale" : "--no-rescale");
	if (c->strict)
		push(mp->a, "--strict");
}

int mcfg_args(struct mcfg *c, char ***args, size_t *nargs, size_t *nmodels)
{
	struct argv_b a = {0};
	struct mapper mp = {.c = c, .a = &a};
	mp.md = find_method(c);
	mp.lines_on = lines_num(c, "alpha") || c->alpha_word.s;
	map_tokenizer(c);
	for (size_t i = 0; i < c->nmodels && mp.md; i++)
		check_params(c, mp.md, &c->models[i].params, &c->models[i]);
	for (size_t s = 0; s < c->nslices && mp.md; s++) {
		for (size_t j = 0; j < c->slices[s].nsrc; j++)
			check_params(c, mp.md, &c->slices[s].src[j].params, &c->slices[s].src[j]);
		check_params(c, mp.md, &c->slices[s].params, NULL);
	}
	if (mp.md)
		check_params(c, mp.md, &c->params, NULL);
	*args = NULL, *nargs = *nmodels = 0;
	if (!mp.md) { /* the rest is meaningless without the method; report what is known */
		map_dtype(&mp);
		for (size_t i = 0; i < c->nmodels; i++) /* the models' paths */
			if (c->models[i].ref)
				check_ref(c, c->models[i].ref, c->models[i].line, c->models[i].col);
		if (c->base.s)
			check_ref(c, c->base.s, c->base.line, c->base.col);
		mcfg_args_free(a.v, a.n);
		mcfg_args_free(a.where, a.n);
		free(a.cur);
		return 0;
	}
	mp.method = mp.md->lines;
	/* linear averages the base in; -b only when LiNeS or lambda scale toward it */
	int with_base =
	    mp.md->base == BASE_NEEDED || (mp.md->base == BASE_OPTIONAL && c->base.s) ||
	    (mp.md->base == BASE_AVERAGED && c->base.s && (mp.lines_on || lines_num(c, "lambda")));
	if (c->nslices) {
		for (size_t s = 0; s < c->nslices && !with_base; s++)
			with_base = mp.md->base == BASE_OPTIONAL && c->slices[s].base.s;
		pick_slices(c, mp.md, with_base, &mp.src);
	} else {
		pick_sources(c, mp.md, &mp.src);
	}
	push(&a, "--method");
	size_t at_method = a.n;
	push(&a, mp.method);
	/* ties: mergekit trims per tensor, unless lines: trim says otherwise */
	for (size_t i = 0; i < ARRAY_SIZE(mp.md->fixed) && mp.md->fixed[i] && !c->trim.s; i++)
		push(&a, mp.md->fixed[i]);
	for (size_t i = 0; i < ARRAY_SIZE(mp.md->params) && mp.md->params[i].name; i++)
		map_param(&mp, &mp.md->params[i]);
	push_from(&a, c, 0, 0, NULL);
	if (strcmp(mp.method, mp.md->lines) && !a.oom) { /* task_arithmetic, normalize: mean */
		free(a.v[at_method]);
		if (!(a.v[at_method] = strdup(mp.method)))
			a.oom = 1;
	}
	if (c->nslices && with_base && c->slice_inputs) {
		char *nm = slice_name(c, 0);
		push(&a, "--base");
		push(&a, nm ? nm : "");
		free(nm);
	} else if (!c->nslices && with_base && c->base.s) {
		push(&a, "--base");
		push(&a, c->base.s);
	}
	map_dtype(&mp);
	map_lines(&mp);
	for (size_t i = 0; i < mp.src.n; i++) {
		char *nm = c->nslices ? slice_name(c, i + !!with_base) : NULL;
		push(&a, nm ? nm : mp.src.m[i] ? mp.src.m[i]->ref : c->base.s);
		free(nm);
	}
	*nmodels = mp.src.n;
	if (c->tensor_lists) { /* mcfg_tensor_params() reads the models' parameters */
		free((void *)c->tsrc);
		c->tsrc = mp.src.m, c->ntsrc = mp.src.n;
		for (size_t i = 0; i < ARRAY_SIZE(mp.md->params) && mp.md->params[i].name; i++)
			if (mp.md->params[i].map == PM_TLIST)
				c->tdef[strcmp(mp.md->params[i].name, "weight") ? 1 : 0] =
				    mp.md->params[i].def;
	} else {
		free(mp.src.m);
	}
	free(a.cur);
	if (a.oom) {
		mcfg_args_free(a.v, a.n);
		mcfg_args_free(a.where, a.n);
		return -1;
	}
	mcfg_args_free(c->arg_where, c->narg_where);
	c->arg_where = a.where, c->narg_where = a.n;
	*args = a.v, *nargs = a.n;
	return 0;
}

/* ---- per-tensor weights and densities -------------------------------------------------- */
/* The value of NAME for source I (its parameters, the slice's, the global
 * ones) for the tensor AT, or DEF when no level gives one. */
static double tensor_level_value(const struct mcfg *c, size_t i, const char *name,
                                 const struct lines_tensor_at *at, double def)
{
	const struct mcfg_model *m = i < c->ntsrc ? c->tsrc[i] : NULL;
	const struct mcfg_params *lv[3] = {NULL, NULL, &c->params};
	double t, out;
	if (c->nslices && c->slices[0].order) {
		const struct mcfg_slice *sl = &c->slices[at->slice < c->nslices ? at->slice : 0];
		size_t k = m ? input_of(c, m) : 0;
		lv[0] = m ? &sl->src[sl->order[k]].params : NULL;
		lv[1] = &sl->params;
		t = at->slice_block < 0 ? 0.0 : mcfg_layer_t(at->slice_block, at->slice_layers);
	} else {
		lv[0] = m ? &m->params : NULL;
		t = mcfg_layer_t(at->block, at->num_layers);
	}
	for (int l = 0; l < 3; l++) {
		const struct mcfg_param *q = lv[l] ? pget(lv[l], name) : NULL;
		if (q && mcfg_value_at(&q->v, at->name, t, &out))
			return out;
	}
	return def;
}

void mcfg_tensor_params(void *arg, const struct lines_tensor_at *at, struct lines_tensor_params *p)
{
	const struct mcfg *c = arg;
	for (unsigned i = 0; i < p->nmodels && i < c->ntsrc; i++) {
		if (c->tensor_lists & MCFG_TENSOR_W)
			p->w[i] = tensor_level_value(c, i, "weight", at, c->tdef[0]);
		if (c->tensor_lists & MCFG_TENSOR_D)
			p->density[i] = tensor_level_value(c, i, "density", at, c->tdef[1]);
	}
}
