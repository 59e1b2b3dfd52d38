/*
 * sweep.c -- one output per value of a swept option (--beta, --lambda,
 * --alpha or --gamma given as a list), from one read of the inputs.
 *
 * The value of a swept option reaches the output only through the scales
 * (the lambda of every tensor, scales.c) and through what the header and
 * the manifest record. So the plan made for the first value is the run:
 * its passes measure what they measure once, and each other value gets a
 * variant plan, a shallow copy that shares the inputs, the layout's
 * tables and the method's state, with its own options, scales, tensor
 * table (where the lambdas are), method context and output. The writing
 * pass runs the method's work() once per value on the same input bytes
 * (pipeline.h, struct pipe_variant); everything the header, manifest and
 * checksum of a variant's output say comes from its own plan, so each
 * output has the bytes a run with that value alone writes.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"

const char *lines_sweep_name(enum lines_sweep s)
{
	switch (s) {
	case LINES_SWEEP_BETA: return "beta";
	case LINES_SWEEP_LAMBDA: return "lambda";
	case LINES_SWEEP_ALPHA: return "alpha";
	case LINES_SWEEP_GAMMA: return "gamma";
	case LINES_SWEEP_NONE:
	default: return NULL;
	}
}

/* The options of value v: what a run with that one value is given. */
static void apply(struct lines_merge_opts *o, const struct lines_merge_opts *opts, size_t v)
{
	double x = opts->sweep_values[v];
	switch (opts->sweep) {
	case LINES_SWEEP_BETA:
		o->lines = 1;
		o->beta = x;
		break;
	case LINES_SWEEP_LAMBDA:
		o->lambda = x;
		break;
	case LINES_SWEEP_ALPHA:
		o->lines = 1;
		o->alpha_auto = 0;
		o->alpha = x;
		break;
	case LINES_SWEEP_GAMMA:
		o->lines = 1;
		o->alpha_auto = 0;
		o->alpha = x;
		o->beta = 1.0 - x;
		break;
	case LINES_SWEEP_NONE:
	default:
		break;
	}
	o->output = opts->sweep_outputs[v];
	if (opts->sweep_config_yaml)
		o->config_yaml = opts->sweep_config_yaml[v];
	o->sweep = LINES_SWEEP_NONE;
	o->nsweep = 0;
	o->sweep_values = NULL;
	o->sweep_outputs = NULL;
	o->sweep_config_yaml = NULL;
}

void lines_sweep_value(const struct lines_merge_opts *opts, size_t v,
                       struct lines_merge_opts *out)
{
	*out = *opts;
	apply(out, opts, v);
}

int sweep_first(const struct lines_merge_opts *opts, struct lines_merge_opts *o,
                struct lines_error *err)
{
	const char *name = lines_sweep_name(opts->sweep);
	RETURN_ERROR_IF(!name, err, LINES_EUSAGE, NULL, NULL, "unknown sweep option %d",
	                (int)opts->sweep);
	RETURN_ERROR_IF(opts->nsweep < 2 || !opts->sweep_values || !opts->sweep_outputs, err,
	                LINES_EUSAGE, NULL, NULL, "a sweep of --%s needs at least two values, "
	                "each with its output", name);
	RETURN_ERROR_IF(opts->norms_only, err, LINES_EUSAGE, NULL, NULL,
	                "a sweep writes outputs; measuring norms writes none");
	RETURN_ERROR_IF(opts->checksum_file || opts->manifest_file, err, LINES_EUSAGE, NULL, NULL,
	                "--checksum-file and --manifest name one file; a sweep writes each "
	                "output's beside it");
	RETURN_ERROR_IF(opts->sweep == LINES_SWEEP_LAMBDA && opts->lines, err, LINES_EUSAGE, NULL,
	                NULL, "--lambda and LiNeS exclude each other");
	for (size_t v = 0; v < opts->nsweep; v++) {
		const char *out = opts->sweep_outputs[v];
		double x = opts->sweep_values[v];
		RETURN_ERROR_IF(!out || !*out || !strcmp(out, "-"), err, LINES_EUSAGE, NULL, NULL,
		                "a sweep writes one file or directory per value: standard output "
		                "cannot take them");
		RETURN_ERROR_IF(!isfinite(x), err, LINES_EUSAGE, NULL, NULL,
		                "--%s: value %zu is not a finite number", name, v + 1);
		RETURN_ERROR_IF(opts->sweep == LINES_SWEEP_GAMMA && !(x >= 0 && x <= 1), err,
		                LINES_EUSAGE, NULL, NULL, "--gamma must be between 0 and 1");
		for (size_t u = 0; u < v; u++)
			RETURN_ERROR_IF(!strcmp(out, opts->sweep_outputs[u]), err, LINES_EUSAGE, out, NULL,
			                "values %zu and %zu of the --%s sweep have the same output", u + 1,
			                v + 1, name);
	}
	*o = *opts;
	apply(o, opts, 0);
	return 0;
}

/* The scales known before anything is read (run.c's choose_alpha). */
static void known_alpha(struct plan *q)
{
	if (!q->o.lines)
		scales_set_alpha(&q->sc, 1.0);
	else if (!q->o.alpha_auto)
		scales_set_alpha(&q->sc, q->o.alpha);
}

/* The writing pass of p: -1 when there is none. */
static int write_pass(const struct plan *p)
{
	for (unsigned i = 0; i < p->passes.n; i++)
		if (p->passes.pass[i].writes)
			return (int)i;
	return -1;
}

static void free_variant(struct plan *q)
{
	if (!q)
		return;
	output_free(&q->out);
	scales_free(&q->sc);
	free(q->lay.t);
	free(q);
}

static int make_variant(struct plan *p, const struct lines_merge_opts *opts, size_t v,
                        struct plan **out, struct lines_error *err)
{
	struct plan *q = malloc(sizeof(*q));
	RETURN_ERROR_IF(!q, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	memcpy(q, p, sizeof(*q));
	q->o = p->o;
	apply(&q->o, opts, v);
	memset(&q->out, 0, sizeof(q->out));
	memset(&q->sc, 0, sizeof(q->sc));
	q->nvar = 1;
	q->var = NULL;
	q->pvar = NULL;
	q->var_sink = NULL;
	q->outputs = NULL;
	q->stack_info = NULL;
	q->is_variant = 1;
	q->lay.t = malloc((p->lay.nt ? p->lay.nt : 1) * sizeof(*q->lay.t));
	if (!q->lay.t) {
		free(q);
		return lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
	}
	memcpy(q->lay.t, p->lay.t, p->lay.nt * sizeof(*q->lay.t));
	*out = q;
	FORWARD_IF_ERROR(scales_init(&q->sc, &q->o, &q->lay, p->sc.divide_wsum, err));
	known_alpha(q);
	q->ctx.o = &q->o;
	q->ctx.t = q->lay.t;
	q->ctx.sc = &q->sc;
	FORWARD_IF_ERROR(output_check(q, err));
	RETURN_ERROR_IF(!!q->out.dir != !!p->out.dir, err, LINES_EUSAGE, q->o.output, NULL,
	                "the outputs of a sweep must all be files or all be directories");
	return output_choose(q, err);
}

int sweep_make(struct plan *p, struct lines_error *err)
{
	const struct lines_merge_opts *opts = p->sweep_opts;
	p->nvar = 1;
	if (!opts)
		return 0;
	const char *name = lines_sweep_name(opts->sweep);
	int wi = write_pass(p);
	RETURN_ERROR_IF(wi < 0, err, LINES_EUSAGE, NULL, NULL, "-m %s has no writing pass to sweep",
	                p->method->name);
	/* what a writing pass keeps across jobs in its workers would be
	 * counted once per value */
	RETURN_ERROR_IF(p->passes.pass[wi].worker_end, err, LINES_EUSAGE, NULL, NULL,
	                "-m %s cannot sweep --%s: its writing pass keeps results across jobs",
	                p->method->name, name);
	RETURN_ERROR_IF(p->out.gguf, err, LINES_EUSAGE, NULL, NULL,
	                "a sweep of --%s writes safetensors; a GGUF output is one run per value",
	                name);
	for (size_t i = 0; i < p->lay.nt; i++)
		RETURN_ERROR_IF(p->lay.t[i].rq, err, LINES_EUSAGE, NULL, NULL,
		                "--dtype fp8 measures the scales of each output from its values: a "
		                "sweep of --%s cannot share them; run once per value", name);
	size_t n = opts->nsweep;
	p->var = calloc(n, sizeof(*p->var));
	p->pvar = calloc(n, sizeof(*p->pvar));
	p->var_sink = calloc(n, sizeof(*p->var_sink));
	p->outputs = calloc(n, sizeof(*p->outputs));
	RETURN_ERROR_IF(!p->var || !p->pvar || !p->var_sink || !p->outputs, err, LINES_ENOMEM, NULL,
	                NULL, "out of memory");
	p->outputs[0] = p->o.output;
	for (size_t v = 1; v < n; v++) {
		struct plan *q = NULL;
		int rc = make_variant(p, opts, v, &q, err);
		p->var[v - 1] = q;
		p->nvar = (unsigned)v + 1; /* freed from here on */
		if (rc < 0)
			return rc;
		p->outputs[v] = q->o.output;
		RETURN_ERROR_IF(p->out.dir && q->out.dir && !strcmp(p->out.dir, q->out.dir), err,
		                LINES_EUSAGE, q->o.output, NULL, "two values of the sweep have the "
		                "same output directory");
	}
	p->env.nvariants = p->nvar - 1;
	return 0;
}

int sweep_begin_write(struct plan *p, struct lines_error *err)
{
	for (unsigned v = 1; v < p->nvar; v++) {
		struct plan *q = p->var[v - 1];
		/* what the passes before measured, as a run of this value alone
		 * would have measured it */
		q->sc.measured = p->sc.measured;
		q->sc.have_norms = p->sc.have_norms;
		q->sc.norm_sum = p->sc.norm_sum;
		q->sc.norm_mtl = p->sc.norm_mtl;
		q->sc.warned_zero = p->sc.warned_zero;
		if (q->o.lines && q->o.alpha_auto)
			scales_set_alpha(&q->sc, p->sc.alpha);
		struct pipe_variant *pv = &p->pvar[v - 1];
		pv->ctx = &q->ctx;
		pv->out = p->var_sink[v - 1];
		pv->on_output = q->out.thash ? manifest_note : NULL;
		pv->on_output_arg = &q->out;
		if (q->out.dir)
			continue; /* the shards write their own headers */
		free(q->out.header);
		q->out.header = NULL;
		FORWARD_IF_ERROR(plan_header(q, 0, q->lay.nt, &q->out.header, &q->out.header_len, err));
		FORWARD_IF_ERROR(sink_write(pv->out, q->out.header, q->out.header_len, err));
		q->out.header_hash = XXH3_64bits(q->out.header, q->out.header_len);
	}
	p->env.variants = p->pvar;
	return 0;
}

int sweep_lock(struct plan *p, struct lines_error *err)
{
	for (unsigned v = 1; v < p->nvar; v++)
		FORWARD_IF_ERROR(output_lock(p->var[v - 1], err));
	return 0;
}

int sweep_open(struct plan *p, struct lines_error *err)
{
	for (unsigned v = 1; v < p->nvar; v++)
		FORWARD_IF_ERROR(output_open(p->var[v - 1], &p->var_sink[v - 1], err));
	return 0;
}

int sweep_finish(struct plan *p, struct lines_error *err)
{
	for (unsigned v = 1; v < p->nvar; v++)
		FORWARD_IF_ERROR(sink_finish(p->var_sink[v - 1], err));
	return 0;
}

/*
 * Every output is complete and its companions staged before this; the
 * commits are renames. A failure at one leaves the outputs before it in
 * place (they are whole) and removes the rest.
 */
int sweep_commit(struct plan *p, struct lines_error *err)
{
	int rc = 0;
	for (unsigned v = 1; v < p->nvar; v++) {
		struct sink *s = p->var_sink[v - 1];
		if (!s)
			continue;
		if (rc == 0)
			rc = output_commit(p->var[v - 1], s, err);
		else
			sink_abort(s);
	}
	return rc;
}

void sweep_abort(struct plan *p)
{
	for (unsigned v = 1; v < p->nvar; v++)
		if (p->var_sink[v - 1])
			sink_abort(p->var_sink[v - 1]);
}

void sweep_close(struct plan *p)
{
	for (unsigned v = 1; v < p->nvar; v++) {
		sink_free(p->var_sink[v - 1]);
		p->var_sink[v - 1] = NULL;
		output_unlock(&p->var[v - 1]->out);
	}
	p->env.variants = NULL;
}

void sweep_free(struct plan *p)
{
	for (unsigned v = 1; p->var && v < p->nvar; v++)
		free_variant(p->var[v - 1]);
	free(p->var);
	free(p->pvar);
	free(p->var_sink);
	free(p->outputs);
	p->var = NULL;
	p->pvar = NULL;
	p->var_sink = NULL;
	p->outputs = NULL;
}
