/*
 * merge_config.c -- reading mergekit's YAML configurations (libyaml's
 * document API: every node carries its line and column) into struct mcfg,
 * resolving parameter values as mergekit does, and mapping a configuration
 * onto lines merge's options.
 *
 * Reading and checking go in two steps that both only add problems, never
 * stop: mcfg_read() checks the shape (keys, types, values), mcfg_args()
 * checks what the method makes of it (its parameters, the models it
 * needs, values lines cannot take yet) while writing the options. The CLI
 * prints the problems of both at once, before anything else is opened.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "merge_config.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- problems ------------------------------------------------------------------ */
void mcfg_problem(struct mcfg *c, int line, int col, const char *fmt, ...)
{
	char msg[1024], *s;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	char **p = realloc(c->problems, (c->nproblems + 1) * sizeof(*p));
	if (!p)
		return;
	c->problems = p;
	size_t n = strlen(c->file) + strlen(msg) + 48;
	if (!(s = malloc(n)))
		return;
	if (line > 0)
		snprintf(s, n, "%s:%d:%d: %s", c->file, line, col, msg);
	else
		snprintf(s, n, "%s: %s", c->file, msg);
	c->problems[c->nproblems++] = s;
}

/* ---- names ---------------------------------------------------------------------- */
/* Optimal string alignment: a swap of two neighbours is one edit, as a
 * typo is (modles -> models). */
size_t mcfg_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), w = lb + 1;
	size_t *d = malloc((la + 1) * w * sizeof(*d));
	if (!d)
		return (size_t)-1;
	for (size_t i = 0; i <= la; i++)
		for (size_t j = 0; j <= lb; j++) {
			if (!i || !j) {
				d[i * w + j] = i + j;
				continue;
			}
			size_t best = d[(i - 1) * w + j - 1] + (a[i - 1] != b[j - 1]);
			if (d[(i - 1) * w + j] + 1 < best)
				best = d[(i - 1) * w + j] + 1;
			if (d[i * w + j - 1] + 1 < best)
				best = d[i * w + j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[(i - 2) * w + j - 2] + 1 < best)
				best = d[(i - 2) * w + j - 2] + 1;
			d[i * w + j] = best;
		}
	size_t r = d[la * w + lb];
	free(d);
	return r;
}

const char *mcfg_closest(const char *name, const char *const *list, size_t n)
{
	const char *best = NULL;
	size_t bd = (size_t)-1;
	for (size_t i = 0; i < n; i++) {
		size_t d = mcfg_distance(name, list[i]);
		if (d < bd)
			bd = d, best = list[i];
	}
	/* a likely typo: at most a third of the name changed (at least 2 edits) */
	size_t len = strlen(name);
	return best && bd <= (len / 3 > 2 ? len / 3 : 2) ? best : NULL;
}

/* " (did you mean 'x'?)" or " (one of: a, b, c)" */
const char *mcfg_hint(const char *name, const char *const *list, size_t n)
{
	static char buf[512];
	const char *best = mcfg_closest(name, list, n);
	if (best) {
		snprintf(buf, sizeof(buf), " (did you mean '%s'?)", best);
		return buf;
	}
	size_t k = (size_t)snprintf(buf, sizeof(buf), " (one of:");
	for (size_t i = 0; i < n && k < sizeof(buf); i++)
		k += (size_t)snprintf(buf + k, sizeof(buf) - k, "%s %s", i ? "," : "", list[i]);
	if (k < sizeof(buf))
		snprintf(buf + k, sizeof(buf) - k, ")");
	return buf;
}

/* ---- values ------------------------------------------------------------------------- */
double mcfg_layer_t(long block, long num_layers)
{
	if (block < 0)
		return 0.0;
	if (num_layers <= 1)
		return 1.0;
	return (double)block / (double)(num_layers - 1);
}

int mcfg_value_at(const struct mcfg_value *v, const char *tensor, double t, double *out)
{
	switch (v->kind) {
	case MCFG_NUMBER: *out = v->num; return 1;
	case MCFG_GRADIENT: *out = lines_gradient(v->grad, v->ngrad, t); return 1;
	case MCFG_FILTERS:
		for (size_t i = 0; i < v->nfilters; i++) {
			const struct mcfg_filter *f = &v->filters[i];
			if (!f->filter || (tensor && strstr(tensor, f->filter)))
				return mcfg_value_at(&f->value, tensor, t, out);
		}
		return 0;
	}
	return 0;
}

static const struct mcfg_value *param_get(const struct mcfg_params *ps, const char *name)
{
	for (size_t i = 0; i < ps->n; i++)
		if (!strcmp(ps->p[i].name, name))
			return &ps->p[i].v;
	return NULL;
}

int mcfg_value_for(const struct mcfg *cfg, size_t model, const char *name, const char *tensor,
                   double t, double *out)
{
	const struct mcfg_value *v;
	if (model < cfg->nmodels && (v = param_get(&cfg->models[model].params, name)) &&
	    mcfg_value_at(v, tensor, t, out))
		return 1;
	if ((v = param_get(&cfg->params, name)) && mcfg_value_at(v, tensor, t, out))
		return 1;
	return 0;
}

void mcfg_tensor_value(void *arg, const struct lines_tensor_at *at, double *out)
{
	const struct mcfg *c = arg;
	const struct mcfg_value *v;
	const char *name = c->tensor_param;
	double t;
	if (!name)
		return;
	if (c->nslices) {
		const struct mcfg_slice *sl = &c->slices[at->slice < c->nslices ? at->slice : 0];
		t = at->slice_block < 0 ? 0.0 : mcfg_layer_t(at->slice_block, at->slice_layers);
		if ((v = param_get(&sl->params, name)) && mcfg_value_at(v, at->name, t, out))
			return;
	} else {
		t = mcfg_layer_t(at->block, at->num_layers);
	}
	if ((v = param_get(&c->params, name)))
		mcfg_value_at(v, at->name, t, out);
}

/* ---- reading the YAML -------------------------------------------------------------- */
struct rd {
	struct mcfg *c;
	yaml_document_t *doc;
};

#define LINE(n) ((int)(n)->start_mark.line + 1)
#define COL(n)  ((int)(n)->start_mark.column + 1)

static yaml_node_t *node(const struct rd *r, int id)
{
	return yaml_document_get_node(r->doc, id);
}
static const char *text(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}
static int is_plain(const yaml_node_t *n)
{
	return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static int is_null(const yaml_node_t *n)
{
	static const char *const w[] = {"", "~", "null", "Null", "NULL"};
	if (!is_plain(n))
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(w); i++)
		if (!strcmp(text(n), w[i]))
			return 1;
	return 0;
}

/* YAML 1.1 booleans as PyYAML reads them: 1, 0, or -1 for none */
static int bool_of(const yaml_node_t *n)
{
	static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes",
	                                  "YES",  "on",   "On",   "ON"};
	static const char *const no[] = {"false", "False", "FALSE", "no", "No",
	                                 "NO",    "off",   "Off",   "OFF"};
	if (!is_plain(n))
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (!strcmp(text(n), yes[i]))
			return 1;
		if (!strcmp(text(n), no[i]))
			return 0;
	}
	return -1;
}

/* An integer written with a leading zero (010, -007): octal to a YAML 1.1
 * reader such as mergekit's PyYAML (010 is 8), or a string (09). */
static int leading_zero(const char *s)
{
	s += *s == '-' || *s == '+';
	return s[0] == '0' && s[1] >= '0' && s[1] <= '9' && !strpbrk(s, ".eE");
}

/* A plain decimal number: 0 with *out, -1 otherwise. */
static int number_of(const yaml_node_t *n, double *out)
{
	char *end;
	const char *s = text(n);
	if (!is_plain(n) || !*s || strpbrk(s, "xXpPiInN_") || leading_zero(s))
		return -1;
	errno = 0;
	*out = strtod(s, &end);
	return *end || errno == ERANGE || !isfinite(*out) ? -1 : 0;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (!d) {
		fputs("lines: out of memory\n", stderr);
		exit(1);
	}
	return d;
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);
	if (!p) {
		fputs("lines: out of memory\n", stderr);
		exit(1);
	}
	return p;
}

/* A string value of KEY (not null, not a list or map). */
static void read_str(struct rd *r, yaml_node_t *v, const char *key, struct mcfg_str *out)
{
	out->line = LINE(v), out->col = COL(v);
	if (v->type != YAML_SCALAR_NODE || is_null(v)) {
		mcfg_problem(r->c, LINE(v), COL(v), "%s: expected a string", key);
		return;
	}
	out->s = xstrdup(text(v));
}

/* A number or a boolean. */
static int read_number(struct rd *r, yaml_node_t *n, const char *pname, struct mcfg_value *v)
{
	int b = n->type == YAML_SCALAR_NODE ? bool_of(n) : -1;
	v->kind = MCFG_NUMBER;
	v->line = LINE(n), v->col = COL(n);
	if (b >= 0) {
		v->num = b, v->is_bool = 1;
		return 0;
	}
	if (n->type == YAML_SCALAR_NODE && number_of(n, &v->num) == 0)
		return 0;
	if (n->type == YAML_SCALAR_NODE && is_plain(n) && leading_zero(text(n)))
		mcfg_problem(r->c, LINE(n), COL(n),
		             "%s: '%s' has a leading zero: mergekit's YAML reads it as octal (or "
		             "as a string); write it without the zero",
		             pname, text(n));
	else
		mcfg_problem(r->c, LINE(n), COL(n), "%s: %s%s%s is not a number", pname,
		             n->type == YAML_SCALAR_NODE ? "'" : "",
		             n->type == YAML_SCALAR_NODE ? text(n) : "this value",
		             n->type == YAML_SCALAR_NODE ? "'" : "");
	return -1;
}

/* A number, or a list of numbers (a gradient). */
static int read_scalar_or_gradient(struct rd *r, yaml_node_t *n, const char *pname,
                                   struct mcfg_value *v)
{
	if (n->type != YAML_SEQUENCE_NODE)
		return read_number(r, n, pname, v);
	yaml_node_item_t *it = n->data.sequence.items.start, *top = n->data.sequence.items.top;
	v->kind = MCFG_GRADIENT;
	v->line = LINE(n), v->col = COL(n);
	if (it == top) {
		mcfg_problem(r->c, LINE(n), COL(n), "%s: an empty list", pname);
		return -1;
	}
	v->grad = xcalloc((size_t)(top - it), sizeof(double));
	int bad = 0;
	for (; it < top; it++) {
		struct mcfg_value e = {0};
		if (read_number(r, node(r, *it), pname, &e) < 0)
			bad = 1;
		v->grad[v->ngrad++] = e.num;
	}
	return bad ? -1 : 0;
}

static int read_filter(struct rd *r, yaml_node_t *m, const char *pname, struct mcfg_filter *f)
{
	static const char *const keys[] = {"filter", "value"};
	int have_value = 0, bad = 0;
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = node(r, p->key), *v = node(r, p->value);
		const char *ks = k->type == YAML_SCALAR_NODE ? text(k) : "";
		if (!strcmp(ks, "filter")) {
			if (v->type != YAML_SCALAR_NODE) {
				mcfg_problem(r->c, LINE(v), COL(v), "%s: filter: expected a string",
				             pname);
				bad = 1;
			} else if (!is_null(v) && strcmp(text(v), "*") && *text(v)) {
				/* "" is in every name, as mergekit's `in` finds it: no filter */
				f->filter = xstrdup(text(v));
			}
		} else if (!strcmp(ks, "value")) {
			have_value = 1;
			if (read_scalar_or_gradient(r, v, pname, &f->value) < 0)
				bad = 1;
		} else {
			mcfg_problem(r->c, LINE(k), COL(k), "%s: unknown key '%s' in a filter%s",
			             pname, ks, mcfg_hint(ks, keys, ARRAY_SIZE(keys)));
			bad = 1;
		}
	}
	if (!have_value) {
		mcfg_problem(r->c, LINE(m), COL(m), "%s: a filter without a value", pname);
		bad = 1;
	}
	return bad ? -1 : 0;
}

/* A parameter value: a number, a gradient, or a list of {filter, value}. */
static int read_value(struct rd *r, yaml_node_t *n, const char *pname, struct mcfg_value *v)
{
	if (n->type == YAML_MAPPING_NODE) {
		mcfg_problem(r->c, LINE(n), COL(n),
		             "%s: a {filter, value} goes in a list: "
		             "- {filter: NAME, value: X}",
		             pname);
		return -1;
	}
	if (n->type != YAML_SEQUENCE_NODE)
		return read_number(r, n, pname, v);
	yaml_node_item_t *it = n->data.sequence.items.start, *top = n->data.sequence.items.top;
	size_t maps = 0;
	for (yaml_node_item_t *i = it; i < top; i++)
		maps += node(r, *i)->type == YAML_MAPPING_NODE;
	if (maps == 0)
		return read_scalar_or_gradient(r, n, pname, v);
	v->kind = MCFG_FILTERS;
	v->line = LINE(n), v->col = COL(n);
	if (maps != (size_t)(top - it)) {
		mcfg_problem(r->c, LINE(n), COL(n),
		             "%s: a list of numbers (a gradient) or of "
		             "{filter, value}, not both",
		             pname);
		return -1;
	}
	v->filters = xcalloc(maps, sizeof(*v->filters));
	int bad = 0;
	for (; it < top; it++)
		if (read_filter(r, node(r, *it), pname, &v->filters[v->nfilters++]) < 0)
			bad = 1;
	return bad ? -1 : 0;
}

static int dup_key(struct rd *r, yaml_node_t *map, yaml_node_pair_t *p, const char *where)
{
	yaml_node_t *k = node(r, p->key);
	for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
		yaml_node_t *kq = node(r, q->key);
		if (kq->type == YAML_SCALAR_NODE && !strcmp(text(kq), text(k))) {
			mcfg_problem(r->c, LINE(k), COL(k), "%s%s given twice (first at line %d)",
			             where, text(k), LINE(kq));
			return 1;
		}
	}
	return 0;
}

/* The keys of a mapping must be strings: 1 if KEY is one, else a problem. */
static int key_ok(struct rd *r, yaml_node_t *k)
{
	if (k->type == YAML_SCALAR_NODE)
		return 1;
	mcfg_problem(r->c, LINE(k), COL(k), "a key must be a name");
	return 0;
}

static void read_params(struct rd *r, yaml_node_t *n, struct mcfg_params *ps)
{
	if (is_null(n))
		return;
	if (n->type != YAML_MAPPING_NODE) {
		mcfg_problem(r->c, LINE(n), COL(n),
		             "parameters: expected a mapping of NAME: VALUE");
		return;
	}
	size_t cap = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
	ps->p = xcalloc(cap, sizeof(*ps->p));
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = node(r, p->key);
		if (!key_ok(r, k) || dup_key(r, n, p, "parameter "))
			continue;
		struct mcfg_param *q = &ps->p[ps->n++];
		q->name = xstrdup(text(k));
		q->line = LINE(k), q->col = COL(k);
		read_value(r, node(r, p->value), q->name, &q->v);
	}
}

/* ---- models and slices -------------------------------------------------------------- */
/* layer_range: [first, end], two integers, first < end */
static void read_range(struct rd *r, yaml_node_t *v, struct mcfg_model *m)
{
	m->range_line = LINE(v), m->range_col = COL(v);
	double x[2];
	size_t n = 0;
	int ok = v->type == YAML_SEQUENCE_NODE &&
	         v->data.sequence.items.top - v->data.sequence.items.start == 2;
	for (yaml_node_item_t *i = v->data.sequence.items.start;
	     ok && i < v->data.sequence.items.top; i++) {
		yaml_node_t *e = node(r, *i);
		ok = e->type == YAML_SCALAR_NODE && number_of(e, &x[n]) == 0 &&
		     x[n] == floor(x[n]) && fabs(x[n]) < 1e9;
		n++;
	}
	if (!ok) {
		mcfg_problem(r->c, LINE(v), COL(v),
		             "layer_range: expected two integers, [first, end] (end not included)");
		return;
	}
	m->first = (long)x[0], m->end = (long)x[1];
	if (m->first < 0 || m->end <= m->first)
		mcfg_problem(r->c, LINE(v), COL(v),
		             "layer_range: [%ld, %ld] is empty or negative (0 <= first < end)",
		             m->first, m->end);
}

/* An entry of models: (- model: NAME, parameters: ...), or with source
 * set of a slice's sources:, which also needs layer_range: [first, end]. */
static void read_entry(struct rd *r, yaml_node_t *n, struct mcfg_model *m, int source)
{
	static const char *const keys[] = {"model", "parameters", "layer_range"};
	const char *what = source ? "sources" : "models";
	int have_range = 0;
	m->line = LINE(n), m->col = COL(n);
	if (source)
		m->first = m->end = -1;
	if (n->type != YAML_MAPPING_NODE) {
		mcfg_problem(r->c, LINE(n), COL(n), "%s: each entry is a mapping: - model: NAME%s",
		             what, source ? ", layer_range: [A, B]" : "");
		return;
	}
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = node(r, p->key), *v = node(r, p->value);
		if (!key_ok(r, k) || dup_key(r, n, p, "key "))
			continue;
		if (!strcmp(text(k), "model")) {
			struct mcfg_str str = {0};
			read_str(r, v, "model", &str);
			m->ref = str.s, m->line = str.line, m->col = str.col;
		} else if (source && !strcmp(text(k), "layer_range")) {
			have_range = 1;
			read_range(r, v, m);
		} else if (!strcmp(text(k), "parameters")) {
			read_params(r, v, &m->params);
		} else {
			mcfg_problem(r->c, LINE(k), COL(k), "%s: unknown key '%s'%s", what, text(k),
			             mcfg_hint(text(k), keys, source ? 3 : 2));
		}
	}
	if (!m->ref)
		mcfg_problem(r->c, LINE(n), COL(n), "%s: an entry without model: NAME", what);
	if (source && !have_range)
		mcfg_problem(r->c, LINE(n), COL(n),
		             "sources: an entry without layer_range: [first, end]");
}

static void read_models(struct rd *r, yaml_node_t *n)
{
	struct mcfg *c = r->c;
	c->models_line = LINE(n), c->models_col = COL(n);
	if (n->type != YAML_SEQUENCE_NODE) {
		mcfg_problem(c, LINE(n), COL(n), "models: expected a list of - model: NAME");
		return;
	}
	size_t cap = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	c->models = xcalloc(cap, sizeof(*c->models));
	for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top;
	     i++)
		read_entry(r, node(r, *i), &c->models[c->nmodels++], 0);
}

static void read_slice(struct rd *r, yaml_node_t *n, struct mcfg_slice *sl)
{
	static const char *const keys[] = {"sources", "parameters", "base_model"};
	sl->line = LINE(n), sl->col = COL(n);
	if (n->type != YAML_MAPPING_NODE) {
		mcfg_problem(r->c, LINE(n), COL(n),
		             "slices: each entry is a mapping: - sources: ...");
		return;
	}
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = node(r, p->key), *v = node(r, p->value);
		if (!key_ok(r, k) || dup_key(r, n, p, "key "))
			continue;
		if (!strcmp(text(k), "sources")) {
			if (v->type != YAML_SEQUENCE_NODE ||
			    v->data.sequence.items.top == v->data.sequence.items.start) {
				mcfg_problem(
				    r->c, LINE(v), COL(v),
				    "sources: expected a list of - model: NAME, layer_range: "
				    "[A, B]");
				continue;
			}
			size_t cap =
			    (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
			sl->src = xcalloc(cap, sizeof(*sl->src));
			for (yaml_node_item_t *i = v->data.sequence.items.start;
			     i < v->data.sequence.items.top; i++)
				read_entry(r, node(r, *i), &sl->src[sl->nsrc++], 1);
		} else if (!strcmp(text(k), "parameters")) {
			read_params(r, v, &sl->params);
		} else if (!strcmp(text(k), "base_model")) {
			if (!is_null(v))
				read_str(r, v, "base_model", &sl->base);
		} else if (!strcmp(text(k), "residual_weight")) {
			mcfg_problem(r->c, LINE(k), COL(k), "residual_weight: not supported");
		} else {
			mcfg_problem(r->c, LINE(k), COL(k), "slices: unknown key '%s'%s", text(k),
			             mcfg_hint(text(k), keys, ARRAY_SIZE(keys)));
		}
	}
	if (!sl->src && !sl->nsrc)
		mcfg_problem(r->c, LINE(n), COL(n), "slices: a slice without sources:");
}

static void read_slices(struct rd *r, yaml_node_t *n)
{
	struct mcfg *c = r->c;
	c->slices_line = LINE(n), c->slices_col = COL(n);
	if (n->type != YAML_SEQUENCE_NODE ||
	    n->data.sequence.items.top == n->data.sequence.items.start) {
		mcfg_problem(c, LINE(n), COL(n), "slices: expected a list of - sources: ...");
		return;
	}
	size_t cap = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	c->slices = xcalloc(cap, sizeof(*c->slices));
	for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top;
	     i++)
		read_slice(r, node(r, *i), &c->slices[c->nslices++]);
}

/* ---- the lines: section ---------------------------------------------------------- */
static const char *const lines_keys[] = {
    "alpha", "beta",    "norm",        "stacks",     "stack_order", "lambda", "trim",
    "seed",  "rescale", "layer_regex", "num_layers", "dtype",       "vocab",  "strict",
    "schedule",
};

/* One of WORDS, or a problem. */
static void read_word(struct rd *r, yaml_node_t *v, const char *key, const char *const *words,
                      size_t n, struct mcfg_str *out)
{
	read_str(r, v, key, out);
	if (!out->s || !words)
		return;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(out->s, words[i]))
			return;
	mcfg_problem(r->c, out->line, out->col, "lines: %s: '%s' is not valid%s", key, out->s,
	             mcfg_hint(out->s, words, n));
	free(out->s);
	out->s = NULL;
}

static void read_lines_key(struct rd *r, yaml_node_t *k, yaml_node_t *v)
{
	static const char *const norms[] = {"l1", "l2"}, *const stacks[] = {"separate", "joint"},
	                         *const trims[] = {"global", "tensor"},
	                         *const rescales[] = {"density", "l1", "none"},
	                         *const vocabs[] = {"strict", "base"};
	struct mcfg *c = r->c;
	const char *key = text(k);
	if (!strcmp(key, "alpha") && v->type == YAML_SCALAR_NODE && !strcmp(text(v), "auto")) {
		read_str(r, v, key, &c->alpha_word);
	} else if (!strcmp(key, "alpha") || !strcmp(key, "beta") || !strcmp(key, "lambda") ||
	           !strcmp(key, "seed") || !strcmp(key, "num_layers")) {
		struct mcfg_param *q = &c->lines_num.p[c->lines_num.n++];
		q->name = xstrdup(key);
		q->line = LINE(k), q->col = COL(k);
		if (read_number(r, v, key, &q->v) == 0 && q->v.is_bool)
			mcfg_problem(c, LINE(v), COL(v),
			             "lines: %s: expected a number, not a boolean", key);
	} else if (!strcmp(key, "schedule")) { /* a gradient of at least 2 numbers */
		struct mcfg_param *q = &c->lines_num.p[c->lines_num.n++];
		q->name = xstrdup(key);
		q->line = LINE(k), q->col = COL(k);
		if (v->type != YAML_SEQUENCE_NODE)
			mcfg_problem(c, LINE(v), COL(v),
			             "lines: schedule: expected a list of numbers, f at evenly spaced "
			             "depths ([0, 1] is the linear ramp)");
		else if (read_scalar_or_gradient(r, v, "lines: schedule", &q->v) == 0 &&
		         q->v.ngrad < 2)
			mcfg_problem(c, LINE(v), COL(v),
			             "lines: schedule: at least 2 values, the first block's and the "
			             "last's");
		for (yaml_node_item_t *i = v->type == YAML_SEQUENCE_NODE ? v->data.sequence.items.start
		                                                         : NULL;
		     i && i < v->data.sequence.items.top; i++)
			if (bool_of(node(r, *i)) >= 0)
				mcfg_problem(c, LINE(node(r, *i)), COL(node(r, *i)),
				             "lines: schedule: expected a number, not a boolean");
	} else if (!strcmp(key, "norm")) {
		read_word(r, v, key, norms, 2, &c->norm);
	} else if (!strcmp(key, "stacks")) {
		read_word(r, v, key, stacks, 2, &c->stacks);
	} else if (!strcmp(key, "trim")) {
		read_word(r, v, key, trims, 2, &c->trim);
	} else if (!strcmp(key, "rescale")) {
		read_word(r, v, key, rescales, 3, &c->rescale);
	} else if (!strcmp(key, "vocab")) {
		read_word(r, v, key, vocabs, 2, &c->vocab);
	} else if (!strcmp(key, "stack_order")) {
		read_str(r, v, key, &c->stack_order);
	} else if (!strcmp(key, "layer_regex")) {
		read_str(r, v, key, &c->layer_regex);
	} else if (!strcmp(key, "dtype")) {
		read_str(r, v, key, &c->ldtype);
	} else if (!strcmp(key, "strict")) {
		if ((c->strict = bool_of(v)) < 0) {
			mcfg_problem(c, LINE(v), COL(v), "lines: strict: expected true or false");
			c->strict = 0;
		}
	} else {
		mcfg_problem(c, LINE(k), COL(k), "lines: unknown key '%s'%s", key,
		             mcfg_hint(key, lines_keys, ARRAY_SIZE(lines_keys)));
	}
}

static void read_lines(struct rd *r, yaml_node_t *n)
{
	struct mcfg *c = r->c;
	c->has_lines = 1;
	if (is_null(n))
		return;
	if (n->type != YAML_MAPPING_NODE) {
		mcfg_problem(c, LINE(n), COL(n),
		             "lines: expected a mapping (alpha: auto, beta: 0.5, ...)");
		return;
	}
	c->lines_num.p = xcalloc(ARRAY_SIZE(lines_keys), sizeof(*c->lines_num.p));
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = node(r, p->key);
		if (key_ok(r, k) && !dup_key(r, n, p, "lines: "))
			read_lines_key(r, k, node(r, p->value));
	}
}

/* ---- the top level ------------------------------------------------------------------ */
static const char *const top_keys[] = {
    "merge_method", "base_model",       "models",    "parameters",    "dtype",
    "out_dtype",    "tokenizer_source", "tokenizer", "chat_template", "name",
    "slices",       "modules",          "lines",
};

static void read_top_key(struct rd *r, yaml_node_t *k, yaml_node_t *v)
{
	struct mcfg *c = r->c;
	const char *key = text(k);
	struct mcfg_str *s = !strcmp(key, "merge_method")       ? &c->method
	                     : !strcmp(key, "base_model")       ? &c->base
	                     : !strcmp(key, "dtype")            ? &c->dtype
	                     : !strcmp(key, "out_dtype")        ? &c->out_dtype
	                     : !strcmp(key, "tokenizer_source") ? &c->tokenizer_source
	                     : !strcmp(key, "chat_template")    ? &c->chat_template
	                     : !strcmp(key, "name")             ? &c->name
	                                                        : NULL;
	if (s && is_null(v) && s != &c->method)
		return; /* mergekit's None: the default */
	if (s)
		read_str(r, v, key, s);
	else if (!strcmp(key, "models"))
		read_models(r, v);
	else if (!strcmp(key, "parameters"))
		read_params(r, v, &c->params);
	else if (!strcmp(key, "lines"))
		read_lines(r, v);
	else if (!strcmp(key, "slices"))
		read_slices(r, v);
	else if (!strcmp(key, "modules"))
		mcfg_problem(c, LINE(k), COL(k),
		             "modules: not supported (merges of several modules, each "
		             "with its own slices): give models: or slices:");
	else if (!strcmp(key, "tokenizer"))
		mcfg_problem(c, LINE(k), COL(k),
		             "tokenizer: not supported (lines keeps the base's "
		             "tokenizer; build a merged vocabulary with mergekit)");
	else
		mcfg_problem(c, LINE(k), COL(k), "unknown key '%s'%s", key,
		             mcfg_hint(key, top_keys, ARRAY_SIZE(top_keys)));
}

static void read_root(struct rd *r, yaml_node_t *root)
{
	struct mcfg *c = r->c;
	if (!root) {
		mcfg_problem(c, 0, 0, "an empty configuration (give merge_method: and models:)");
		return;
	}
	if (root->type != YAML_MAPPING_NODE) {
		mcfg_problem(c, LINE(root), COL(root),
		             "expected a mapping of keys (merge_method: ...)");
		return;
	}
	for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = node(r, p->key);
		if (key_ok(r, k) && !dup_key(r, root, p, "key "))
			read_top_key(r, k, node(r, p->value));
	}
	if (!c->method.s && !c->method.line)
		mcfg_problem(c, 1, 1,
		             "no merge_method: (task_arithmetic, ties, dare_ties, linear, ...)");
	if (c->models && c->slices)
		mcfg_problem(c, c->slices_line, c->slices_col,
		             "slices: give models: or slices:, not both");
	if (!c->models && !c->slices && !c->slices_line) {
		int has_modules = 0;
		for (size_t i = 0; i < c->nproblems; i++)
			has_modules |= strstr(c->problems[i], "modules: not supported") != NULL;
		if (!has_modules)
			mcfg_problem(
			    c, 1, 1,
			    "no models: (a list of - model: NAME) and no slices: (a list of - "
			    "sources: ...)");
	}
}

static FILE *open_input(struct mcfg *c, const char *path, const char *txt, size_t len)
{
	FILE *f;
	if (txt)
		f = fmemopen((void *)(uintptr_t)txt, len, "r");
	else if (!strcmp(path, "-"))
		f = stdin;
	else
		f = fopen(path, "r");
	if (!f) {
		mcfg_problem(c, 0, 0, "%s", strerror(errno));
		return NULL;
	}
	struct stat st; /* fopen opens a directory, whose first read fails */
	if (f != stdin && fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
		fclose(f);
		mcfg_problem(c, 0, 0, "%s", strerror(EISDIR));
		return NULL;
	}
	return f;
}

/* ---- YAML 1.1's merge key ---------------------------------------------------- */
/* "<<: *a" (or "<<: [*a, *b]") in a mapping adds the keys of those mappings
 * that it does not give itself, the first mapping listed winning, as
 * mergekit's PyYAML reads it; the "<<" pair goes. libyaml leaves it to us. */
static int mapping_has(yaml_document_t *d, const yaml_node_t *m, const char *key)
{
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		const yaml_node_t *k = yaml_document_get_node(d, p->key);
		if (k && k->type == YAML_SCALAR_NODE && !strcmp(text(k), key))
			return 1;
	}
	return 0;
}

/* Mapping ID's "<<" pairs replaced by the keys they merge; problems into C.
 * A "<<" is never copied from a source (each source is expanded first,
 * and one nested too deeply is a problem): the loop ends. */
static void merge_keys(struct mcfg *c, yaml_document_t *d, int id, int depth)
{
	yaml_node_t *m = yaml_document_get_node(d, id);
	if (!m || m->type != YAML_MAPPING_NODE)
		return;
	for (size_t i = 0; m->data.mapping.pairs.start + i < m->data.mapping.pairs.top;) {
		yaml_node_pair_t pr = m->data.mapping.pairs.start[i];
		yaml_node_t *k = yaml_document_get_node(d, pr.key), *v = yaml_document_get_node(d, pr.value);
		int src[32];
		size_t ns = 0;
		if (!k || !is_plain(k) || strcmp(text(k), "<<") || !v) {
			i++;
			continue;
		}
		if (depth > 16) {
			mcfg_problem(c, LINE(k), COL(k), "<<: merge keys nested more than 16 deep");
			return;
		}
		if (v->type == YAML_MAPPING_NODE)
			src[ns++] = pr.value;
		for (yaml_node_item_t *it = v->type == YAML_SEQUENCE_NODE ? v->data.sequence.items.start
		                                                          : NULL;
		     it && it < v->data.sequence.items.top; it++) {
			yaml_node_t *e = yaml_document_get_node(d, *it);
			if (!e || e->type != YAML_MAPPING_NODE || ns == ARRAY_SIZE(src))
				mcfg_problem(c, e ? LINE(e) : LINE(v), e ? COL(e) : COL(v), "<<: %s",
				             ns == ARRAY_SIZE(src) ? "more than 32 mappings to merge"
				                                   : "expected a mapping to merge");
			else
				src[ns++] = *it;
		}
		if (!ns && v->type != YAML_SEQUENCE_NODE) { /* left: an unknown key */
			i++;
			continue;
		}
		size_t left = (size_t)(m->data.mapping.pairs.top - m->data.mapping.pairs.start) - i - 1;
		memmove(m->data.mapping.pairs.start + i, m->data.mapping.pairs.start + i + 1,
		        left * sizeof(yaml_node_pair_t));
		m->data.mapping.pairs.top--;
		for (size_t j = 0; j < ns; j++) {
			const yaml_node_t *sm = yaml_document_get_node(d, src[j]);
			if (src[j] == id)
				continue;
			merge_keys(c, d, src[j], depth + 1);
			size_t n = (size_t)(sm->data.mapping.pairs.top - sm->data.mapping.pairs.start);
			for (size_t q = 0; q < n; q++) {
				yaml_node_pair_t sp = sm->data.mapping.pairs.start[q];
				const yaml_node_t *sk = yaml_document_get_node(d, sp.key);
				if (sk && sk->type == YAML_SCALAR_NODE && strcmp(text(sk), "<<") &&
				    !mapping_has(d, m, text(sk)))
					yaml_document_append_mapping_pair(d, id, sp.key, sp.value);
			}
		}
	}
}

struct mcfg *mcfg_read(const char *path, const char *txt, size_t len)
{
	struct mcfg *c = xcalloc(1, sizeof(*c));
	yaml_parser_t parser;
	yaml_document_t doc;
	c->file = xstrdup(strcmp(path, "-") ? path : "(standard input)");
	FILE *f = open_input(c, path, txt, len);
	if (!f)
		return c;
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_file(&parser, f);
	if (!yaml_parser_load(&parser, &doc)) {
		mcfg_problem(c, (int)parser.problem_mark.line + 1,
		             (int)parser.problem_mark.column + 1, "not valid YAML: %s%s%s",
		             parser.problem ? parser.problem : "an error",
		             parser.context ? " " : "", parser.context ? parser.context : "");
	} else {
		struct rd r = {c, &doc};
		for (int id = 1; doc.nodes.start + id - 1 < doc.nodes.top; id++)
			merge_keys(c, &doc, id, 0);
		read_root(&r, yaml_document_get_root_node(&doc));
		yaml_document_delete(&doc);
		/* mergekit reads one document (PyYAML's safe_load refuses more) */
		if (!yaml_parser_load(&parser, &doc)) {
			mcfg_problem(c, (int)parser.problem_mark.line + 1,
			             (int)parser.problem_mark.column + 1, "not valid YAML: %s",
			             parser.problem ? parser.problem : "an error");
		} else {
			if (yaml_document_get_root_node(&doc))
				mcfg_problem(c, (int)doc.start_mark.line + 1, (int)doc.start_mark.column + 1,
				             "a second YAML document: a configuration is one document");
			yaml_document_delete(&doc);
		}
	}
	yaml_parser_delete(&parser);
	if (f != stdin)
		fclose(f);
	return c;
}

static void value_free(struct mcfg_value *v)
{
	free(v->grad);
	for (size_t i = 0; i < v->nfilters; i++) {
		free(v->filters[i].filter);
		value_free(&v->filters[i].value);
	}
	free(v->filters);
}

static void params_free(struct mcfg_params *ps)
{
	for (size_t i = 0; i < ps->n; i++) {
		free(ps->p[i].name);
		value_free(&ps->p[i].v);
	}
	free(ps->p);
}

void mcfg_free(struct mcfg *c)
{
	if (!c)
		return;
	struct mcfg_str *strs[] = {
	    &c->method,        &c->base, &c->dtype,      &c->out_dtype,   &c->tokenizer_source,
	    &c->chat_template, &c->name, &c->alpha_word, &c->norm,        &c->stacks,
	    &c->stack_order,   &c->trim, &c->rescale,    &c->layer_regex, &c->ldtype,
	    &c->vocab};
	for (size_t i = 0; i < ARRAY_SIZE(strs); i++)
		free(strs[i]->s);
	for (size_t i = 0; i < c->nmodels; i++) {
		free(c->models[i].ref);
		params_free(&c->models[i].params);
	}
	free(c->models);
	for (size_t i = 0; i < c->nslices; i++) {
		struct mcfg_slice *sl = &c->slices[i];
		for (size_t j = 0; j < sl->nsrc; j++) {
			free(sl->src[j].ref);
			params_free(&sl->src[j].params);
		}
		free(sl->src);
		params_free(&sl->params);
		free(sl->base.s);
		free(sl->order);
	}
	free(c->slices);
	free((void *)c->tsrc);
	params_free(&c->params);
	params_free(&c->lines_num);
	for (size_t i = 0; i < c->nproblems; i++)
		free(c->problems[i]);
	free(c->problems);
	mcfg_args_free(c->arg_where, c->narg_where);
	free(c->file);
	free(c);
}
