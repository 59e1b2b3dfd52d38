/*
 * report.c -- the plan, and after a run what the run found, as one JSON
 * object (lines_plan_json): what `lines merge -n` prints as prose, for
 * programs and tests to read as data, as `git status --porcelain` is to
 * `git status`.
 *
 * Nothing is computed here: each section copies what the plan (plan.h)
 * and lines_plan_info() hold, in the order lines-merge(1) lists the keys.
 * A value that is not known yet is null: alpha, beta and lambda until the
 * pass that measures alpha has run, and what only a run knows (the bytes
 * written, the passes skipped, the norms, the TIES thresholds and the
 * majority sign) unless the report is made after the run.
 *
 * jansson reports a failed allocation by returning NULL, and setting a
 * NULL value (or setting into a NULL object) fails in turn; put() and
 * push() note every such failure, so the sections have no error paths and
 * the whole text is refused at the end.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "plan.h"

struct report {
	const struct lines_plan *lp;
	const struct plan *p;
	const struct lines_plan_info *in;
	int ran; /* a report after a successful run: its results are known */
	int oom; /* an allocation failed */
};

static void put(struct report *r, json_t *obj, const char *key, json_t *v)
{
	if (json_object_set_new(obj, key, v) < 0)
		r->oom = 1;
}

static void push(struct report *r, json_t *arr, json_t *v)
{
	if (json_array_append_new(arr, v) < 0)
		r->oom = 1;
}


static json_t *num_if(int known, double v) { return known ? json_num(v) : json_null(); }
static json_t *u64(uint64_t v) { return json_integer((json_int_t)v); }

/* A path as given; one that is not UTF-8 has its bytes above 0x7f as \xNN. */
static json_t *path(const char *s)
{
	if (!s)
		return json_null();
	json_t *v = json_string(s);
	char *esc = v ? NULL : malloc(4 * strlen(s) + 1), *o = esc;
	if (!esc)
		return v;
	for (const unsigned char *c = (const unsigned char *)s; *c; c++)
		if (*c < 0x80)
			*o++ = (char)*c;
		else
			o += sprintf(o, "\\x%02x", *c);
	*o = '\0';
	v = json_string(esc);
	free(esc);
	return v;
}

/* The command line: method, inputs, output, weights. */
static void run_section(struct report *r, json_t *root)
{
	const struct plan *p = r->p;
	json_t *models = json_array(), *weights = json_array();

	put(r, root, "command", json_string(p->o.command ? p->o.command : "merge"));
	put(r, root, "after_run", json_boolean(r->ran));
	put(r, root, "method", json_string(p->method->name));
	put(r, root, "base", p->in.base_is_model ? json_null() : path(p->o.base));
	for (unsigned i = 0; i < p->lay.nmodels; i++) {
		push(r, models, path(p->o.models[i]));
		push(r, weights, json_num(p->sc.w[i]));
	}
	put(r, root, "models", models);
	put(r, root, "weights", weights);
	/* a configuration's gradients or filters gave some tensor weights
	 * (densities) of its own: .tensors[].weights (.densities) */
	put(r, root, "weights_per_tensor", json_boolean(p->lay.tensor_w));
	put(r, root, "densities_per_tensor", json_boolean(p->lay.tensor_density));
	put(r, root, "output", path(p->o.output));
	if (p->tok_dir) /* --tokenizer-source: as given, and the directory its files come from */
		put(r, root, "tokenizer_source",
		    json_pack("{s:s, s:s}", "model", p->o.tokenizer_source, "dir", p->tok_dir));
	/* every output: one, or one per value of a sweep */
	json_t *outs = json_array();
	for (size_t v = 0; v < r->in->noutputs; v++)
		push(r, outs, path(r->in->outputs[v]));
	put(r, root, "outputs", outs);
	if (p->sweep_opts) {
		json_t *sw = json_object(), *vals = json_array();
		for (size_t v = 0; v < p->sweep_opts->nsweep; v++)
			push(r, vals, json_num(p->sweep_opts->sweep_values[v]));
		put(r, sw, "option", json_string(lines_sweep_name(p->sweep_opts->sweep)));
		put(r, sw, "values", vals);
		put(r, root, "sweep", sw);
	} else {
		put(r, root, "sweep", json_null());
	}
	json_t *nf = json_array();
	for (unsigned m = 0; m < p->in.ninputs; m++)
		push(r, nf, r->ran && p->stats.nonfinite ? u64(p->stats.nonfinite[m]) : json_null());
	put(r, root, "nonfinite", nf);
	put(r, root, "overflow", r->ran && p->stats.nonfinite ? u64(p->stats.overflow) : json_null());
}

/* lambda, or LiNeS's alpha and beta; the scale of every block; the norms. */
static void scale_section(struct report *r, json_t *root)
{
	const struct plan *p = r->p;
	const struct lines_plan_info *in = r->in;
	int known = in->alpha_known;
	json_t *blocks = json_array();

	put(r, root, "lambda", p->o.lines ? json_null() : json_num(p->o.lambda));
	if (p->o.lines) {
		json_t *l = json_object();
		int beta_known = known || !isnan(p->o.beta);
		put(r, l, "alpha", num_if(known, in->alpha));
		put(r, l, "beta", num_if(beta_known, known ? in->beta : p->o.beta));
		put(r, l, "alpha_mode", json_string(p->o.alpha_auto ? "auto" : "given"));
		put(r, l, "norm", json_string(p->o.norm_p == 2 ? "l2" : "l1"));
		if (p->o.schedule) { /* only when given: the linear ramp as before */
			json_t *f = json_array();
			for (size_t i = 0; i < p->o.nschedule; i++)
				push(r, f, json_num(p->o.schedule[i]));
			put(r, l, "schedule", f);
		}
		put(r, root, "lines", l);
	} else {
		put(r, root, "lines", json_null());
	}
	put(r, root, "num_layers", json_integer(in->num_layers));
	if (in->lambda) {
		for (long i = 0; i < in->num_layers; i++)
			push(r, blocks, num_if(known, in->lambda[i]));
		put(r, root, "lambda_blocks", blocks);
	} else { /* no common ramp: see stacks */
		json_decref(blocks);
		put(r, root, "lambda_blocks", json_null());
	}
	json_t *stacks = json_array();
	for (size_t k = 0; k < in->nstacks; k++) {
		const struct lines_stack_info *st = &in->stacks[k];
		json_t *e = json_object(), *lam = json_array();
		put(r, e, "name", json_string(st->name));
		put(r, e, "num_layers", json_integer(st->num_layers));
		put(r, e, "first", json_integer(st->first));
		put(r, e, "ramp", json_integer(st->ramp));
		for (long i = 0; i < st->num_layers; i++)
			push(r, lam, num_if(known, st->lambda[i]));
		put(r, e, "lambda", lam);
		push(r, stacks, e);
	}
	put(r, root, "stacks", stacks);
	put(r, root, "lambda_outside", num_if(known, in->lambda_outside));
	put(r, root, "norm_sum", num_if(r->ran && p->sc.have_norms, p->sc.norm_sum));
	put(r, root, "norm_mtl", num_if(r->ran && p->sc.have_norms, p->sc.norm_mtl));
}

/* The method's parameters and what it decided, as in the manifest
 * (method.h: report). */
static void method_section(struct report *r, json_t *root)
{
	const struct plan *p = r->p;
	json_t *m;
	if (!p->method->report || !(m = p->method->report(&p->ctx)))
		return;
	put(r, root, p->method->name, m);
}

static void passes_section(struct report *r, json_t *root)
{
	const struct lines_plan_info *in = r->in;
	json_t *passes = json_array();

	for (unsigned i = 0; i < in->npasses; i++) {
		json_t *ps = json_object();
		put(r, ps, "name", json_string(in->pass_names[i]));
		put(r, ps, "read_bytes", u64(in->pass_read_bytes[i]));
		put(r, ps, "optional", json_boolean(in->pass_optional[i]));
		put(r, ps, "skipped", r->ran ? json_boolean(in->pass_skipped[i]) : json_null());
		push(r, passes, ps);
	}
	put(r, root, "passes", passes);
}

/* Sizes, the memory bound and how the run reads and computes. */
static void engine_section(struct report *r, json_t *root)
{
	const struct lines_plan_info *in = r->in;

	put(r, root, "output_bytes", u64(in->output_bytes));
	put(r, root, "written_bytes", r->ran ? u64(in->written_bytes) : json_null());
	put(r, root, "memory_bound", u64(in->memory_bound));
	put(r, root, "memory_metadata", u64(in->memory_metadata));
	put(r, root, "memory_scratch", u64(in->memory_scratch));
	put(r, root, "chunk", u64(in->chunk));
	put(r, root, "jobs", json_integer(in->jobs));
	put(r, root, "io", json_string(in->io));
	put(r, root, "kernels", json_string(in->kernels));
}

/* The inputs' and the output's matrix dtypes, and the round trip's cost. */
static void types_section(struct report *r, json_t *root)
{
	const struct lines_plan_info *in = r->in;
	json_t *types = json_array();
	for (size_t i = 0; i < in->ninput_types; i++)
		push(r, types, json_string(in->input_types[i]));
	put(r, root, "input_types", types);
	put(r, root, "output_type", in->output_type ? json_string(in->output_type) : json_null());
	put(r, root, "roundtrip_rms_estimate",
	    num_if(!isnan(in->roundtrip_rms), in->roundtrip_rms));
}

static void tensors_section(struct report *r, json_t *root)
{
	const struct plan *p = r->p;
	json_t *tensors = json_array();

	put(r, root, "ntensors", u64(r->in->ntensors));
	put(r, root, "nfloat", u64(r->in->nfloat));
	put(r, root, "nscales_dropped", u64(r->in->nscales_dropped));
	put(r, root, "nscales_new", u64(r->in->nscales_new));
	for (size_t i = 0; i < r->in->ntensors; i++) {
		struct lines_tensor_info ti;
		double lambda;
		json_t *t = json_object(), *shape = json_array();

		lines_plan_tensor(r->lp, i, &ti, &lambda);
		for (unsigned k = 0; k < ti.rank; k++)
			push(r, shape, u64(ti.shape[k]));
		put(r, t, "name", json_string(ti.name));
		put(r, t, "dtype", json_string(ti.dtype));
		put(r, t, "shape", shape);
		put(r, t, "block", ti.block < 0 ? json_null() : json_integer(ti.block));
		put(r, t, "stack", ti.stack ? json_string(ti.stack) : json_null());
		put(r, t, "merged", json_boolean(ti.is_float));
		put(r, t, "lambda", num_if(ti.is_float && !isnan(lambda), lambda));
		put(r, t, "bytes", u64(ti.nbytes));
		if (p->method->report_tensor)
			p->method->report_tensor(&p->ctx, i, t);
		tensor_params_report(&p->ctx, i, t);
		push(r, tensors, t);
	}
	put(r, root, "tensors", tensors);
}

/* Whether pass i runs in this step of a partitioned run (partition.c). */
static int part_runs_pass(const struct plan *p, unsigned i)
{
	unsigned r = 0;
	for (unsigned j = 0; j <= i; j++)
		r += !!p->passes.pass[j].stats;
	if (p->part.round) /* --stats-out: up to its round's pass */
		return i <= part_stats_pass(p, p->part.round) && (!p->passes.pass[i].stats || r == p->part.round);
	return !p->passes.pass[i].stats || r > p->part.have;
}

/* --part K/M: the part's shards, what this step reads and writes, the
 * rounds of statistics; null for a run that is not partitioned. */
static void part_section(struct report *r, json_t *root)
{
	const struct plan *p = r->p;
	const struct part *pt = &p->part;
	json_t *o, *shards;
	uint64_t out = 0, read = 0;
	if (!pt->on) {
		put(r, root, "part", json_null());
		return;
	}
	o = json_object(), shards = json_array();
	for (size_t k = pt->s0; k < pt->s1; k++) {
		unsigned char *h = NULL;
		size_t hl = 0;
		if (plan_header(p, p->out.shards[k].t0, p->out.shards[k].t1, &h, &hl, NULL) == 0)
			out += hl + p->out.shards[k].data;
		free(h);
		push(r, shards, json_string(p->out.shards[k].name));
	}
	for (unsigned i = 0; i < p->passes.n; i++)
		if (part_runs_pass(p, i))
			read += r->in->pass_read_bytes[i];
	put(r, o, "k", json_integer(pt->k));
	put(r, o, "m", json_integer(pt->m));
	put(r, o, "plan", json_string(pt->hash));
	put(r, o, "nshards", u64(p->out.nshards));
	put(r, o, "shard_first", u64(pt->s0));
	put(r, o, "shards", shards);
	put(r, o, "tensor_first", u64(pt->t0));
	put(r, o, "ntensors", u64(pt->t1 - pt->t0));
	json_t *sp = json_array();
	for (unsigned i = 0; i < p->passes.n; i++)
		if (p->passes.pass[i].stats)
			push(r, sp, json_string(p->passes.pass[i].name));
	put(r, o, "stats_passes", sp);
	put(r, o, "rounds", json_integer(pt->rounds));
	put(r, o, "stats_given", json_integer(pt->have));
	put(r, o, "step", json_string(pt->round ? "stats" : "write"));
	put(r, o, "round", pt->round ? json_integer(pt->round) : json_null());
	put(r, o, "read_bytes", u64(read));
	put(r, o, "output_bytes", u64(pt->round ? 0 : out));
	put(r, root, "part", o);
}

char *lines_plan_json(const struct lines_plan *lp, int after_run)
{
	struct report r = {lp, &lp->p, lines_plan_info(lp), after_run && lp->p.ran, 0};
	json_t *root = json_object();
	char *text = NULL;

	run_section(&r, root);
	scale_section(&r, root);
	method_section(&r, root);
	passes_section(&r, root);
	engine_section(&r, root);
	part_section(&r, root);
	types_section(&r, root);
	tensors_section(&r, root);
	if (!r.oom)
		text = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
	json_decref(root);
	return text;
}
