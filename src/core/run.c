/*
 * run.c -- the public life of a plan: lines_plan_new() opens and checks
 * every input, lays out the output, lets the method set up its passes
 * and sizes the pipeline; lines_plan_run() runs the passes from a chunk
 * source into the output's sinks and commits; lines_plan_free().
 *
 * The order of lines_plan_new is the order of the plan's parts
 * (plan.h): inputs, layout, output, scales, method, pipeline.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_getCParams, for the memory bound */
#include <zstd.h>

#include "fp8.h"
#include "ggml_quants.h"
#include "plan.h"

#define PLAN_MIN_CHUNK (16u << 10)
#define PLAN_MEMORY_BUDGET (96ull << 20)
#define PLAN_MAX_JOBS 256

void lines_merge_opts_init(struct lines_merge_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->command = "merge";
	o->method = LINES_M_SUM;
	o->lambda = 1.0;
	o->alpha_auto = 1;
	o->alpha = 1.0;
	o->beta = NAN;
	o->norm_p = 1;
	o->density = 0.2;
	o->consensus_k = 2;
	o->tall_lambda = 0.4;
	o->ram_epsilon = 1e-5;
	o->ram_r = 0.1;
	o->ram_alpha = 0.2;
	o->max_iter = 10;
	o->tol = 1e-5;
	o->della_epsilon = 0.15;
	o->bc_gamma = 0.01;
	o->select_topk = 1.0;
	o->io = LINES_IO_AUTO;
}

/* ---- checks before anything is read --------------------------------------- */
static int check_options(const struct lines_merge_opts *o, const struct method *m,
                         struct lines_error *err)
{
	RETURN_ERROR_IF(!o->base && !(m->flags & METHOD_NO_BASE), err, LINES_EUSAGE, NULL, NULL,
	                "no base model (-b BASE)");
	RETURN_ERROR_IF(o->nmodels < 1, err, LINES_EUSAGE, NULL, NULL, "no model to merge");
	RETURN_ERROR_IF((m->flags & METHOD_ONE_MODEL) && o->nmodels != 1, err, LINES_EUSAGE, NULL,
	                NULL, "-m %s %s exactly one model (got %zu)", m->name,
	                (m->flags & METHOD_NO_BASE) ? "copies" : "merges the base with", o->nmodels);
	/* without a base the first model is read twice: once as the layout's
	 * reference, once as a model */
	RETURN_ERROR_IF(!o->base && !strcmp(o->models[0], "-"), err, LINES_EUSAGE, NULL, NULL,
	                "without -b the first model is read twice, so it cannot be standard "
	                "input: give it as a file%s",
	                o->nmodels > 1 ? ", or put another model first" : "");
	RETURN_ERROR_IF(o->nmodels > LINES_MAX_MODELS, err, LINES_EUSAGE, NULL, NULL,
	                "at most %d models can be merged at once", LINES_MAX_MODELS);
	RETURN_ERROR_IF(!o->output && !o->norms_only, err, LINES_EUSAGE, NULL, NULL,
	                "no output (-o OUT)");
	unsigned dashes = o->base && !strcmp(o->base, "-");
	for (size_t i = 0; i < o->nmodels; i++)
		dashes += !strcmp(o->models[i], "-");
	RETURN_ERROR_IF(dashes > 1, err, LINES_EUSAGE, NULL, NULL,
	                "standard input (-) can be given only once");
	RETURN_ERROR_IF(!isfinite(o->lambda), err, LINES_EUSAGE, NULL, NULL,
	                "--lambda must be a finite number");
	RETURN_ERROR_IF(o->lines && !o->alpha_auto && !isfinite(o->alpha), err, LINES_EUSAGE, NULL,
	                NULL, "--alpha must be a finite number");
	RETURN_ERROR_IF(o->lines && !isnan(o->beta) && !isfinite(o->beta), err, LINES_EUSAGE, NULL,
	                NULL, "--beta must be a finite number");
	RETURN_ERROR_IF(o->schedule && !o->lines, err, LINES_EUSAGE, NULL, NULL,
	                "a depth schedule (--schedule) shapes LiNeS's ramp: give --lines (or "
	                "--alpha, --gamma) with it");
	RETURN_ERROR_IF(o->schedule && o->nschedule < 2, err, LINES_EUSAGE, NULL, NULL,
	                "--schedule needs at least 2 values (the first and the last block)");
	for (size_t i = 0; o->schedule && i < o->nschedule; i++)
		RETURN_ERROR_IF(!isfinite(o->schedule[i]), err, LINES_EUSAGE, NULL, NULL,
		                "--schedule: value %zu is not a finite number", i + 1);
	RETURN_ERROR_IF(o->norm_p != 1 && o->norm_p != 2, err, LINES_EUSAGE, NULL, NULL,
	                "--norm must be l1 or l2");
	if (o->weights)
		for (size_t i = 0; i < o->nmodels; i++)
			RETURN_ERROR_IF(!isfinite(o->weights[i]), err, LINES_EUSAGE, NULL, NULL,
			                "weight %zu is not a finite number", i + 1);
	return 0;
}

/* ---- the reader ------------------------------------------------------------------ */
static int choose_io(struct plan *p, struct lines_error *err)
{
	p->src_ops = &src_mmap_ops;
	RETURN_ERROR_IF(p->o.direct && p->o.io == LINES_IO_MMAP, err, LINES_EUSAGE, NULL, NULL,
	                "--direct reads through io_uring; it cannot be used with --io mmap");
	switch (p->o.io) {
	case LINES_IO_MMAP:
		return 0;
	case LINES_IO_URING:
#ifdef HAVE_URING
		RETURN_ERROR_IF(!src_uring_available(), err, LINES_EUNSUPPORTED, NULL, NULL,
		                "io_uring is not available here (kernel, seccomp or "
		                "kernel.io_uring_disabled); use --io mmap");
		p->src_ops = &src_uring_ops;
		return 0;
#else
		return lines_errf(err, LINES_EUNSUPPORTED, NULL, NULL,
		                  "this lines was built without io_uring; use --io mmap");
#endif
	case LINES_IO_AUTO:
	default:
#ifdef HAVE_URING
		if (src_uring_available()) {
			p->src_ops = &src_uring_ops;
			return 0;
		}
		lines_logf(&p->o, LINES_LOG_NOTE, NULL, NULL,
		         "io_uring is not available here; reading through mmap");
#endif
		return 0;
	}
}

/* The header as it will be written (alpha may still change its digits). */
static int build_header(struct plan *p, struct lines_error *err)
{
	free(p->out.header);
	p->out.header = NULL;
	return plan_header(p, 0, p->lay.nt, &p->out.header, &p->out.header_len, err);
}

/* Every stack on the one ramp of L blocks (one stack, or --stacks joint). */
static int common_ramp(const struct layout *lay)
{
	for (size_t k = 0; k < lay->nstacks; k++)
		if (lay->stacks[k].first != 0 || lay->stacks[k].ramp != lay->L)
			return 0;
	return 1;
}

/* The dtypes of the inputs' and the output's matrices (info.input_types). */
static void fill_types(struct plan *p)
{
	struct lines_plan_info *in = &p->info;
	unsigned char seen[DT_COUNT] = {0};
	enum dtype out = DT_COUNT;
	int one = 1;

	in->ninput_types = 0;
	for (size_t i = 0; i < p->lay.nt; i++) {
		const struct tensor *t = &p->lay.t[i];
		if (!t->merge || t->rank < 2 || !t->in)
			continue;
		for (unsigned m = 0; m < p->in.ninputs; m++)
			if (t->in[m].dt < DT_COUNT && !seen[t->in[m].dt]) {
				seen[t->in[m].dt] = 1;
				p->input_types[in->ninput_types++] = dtype_name(t->in[m].dt);
			}
		enum dtype d = tensor_file_dt(t);
		one &= out == DT_COUNT || out == d;
		out = d;
	}
	in->input_types = p->input_types;
	in->output_type = one && out != DT_COUNT ? dtype_name(out) : NULL;
	in->roundtrip_rms = one && out != DT_COUNT ? ggml_roundtrip_rms(out) : NAN;
}

static void fill_info(struct plan *p)
{
	struct lines_plan_info *in = &p->info;
	in->ntensors = p->lay.nt;
	in->nfloat = 0;
	in->nscales_dropped = p->lay.dropped;
	in->nscales_new = 0;
	for (size_t i = 0; i < p->lay.nt; i++) {
		in->nfloat += p->lay.t[i].merge;
		in->nscales_new += p->lay.t[i].gen != NULL;
	}
	in->num_layers = p->lay.L;
	in->alpha_known = p->sc.alpha_known;
	in->alpha = p->o.lines && p->sc.alpha_known ? p->sc.alpha : NAN;
	in->beta = p->o.lines && p->sc.alpha_known ? p->sc.beta : NAN;
	in->lambda = common_ramp(&p->lay) ? p->sc.lambda_layer : NULL;
	in->nstacks = p->lay.nstacks;
	in->stacks = p->stack_info;
	for (size_t k = 0, at = 0; k < p->lay.nstacks; at += (size_t)p->lay.stacks[k++].L) {
		struct lines_stack_info *si = &p->stack_info[k];
		si->name = p->lay.stacks[k].name;
		si->num_layers = p->lay.stacks[k].L;
		si->first = p->lay.stacks[k].first;
		si->ramp = p->lay.stacks[k].ramp;
		si->lambda = p->sc.lambda_stacks + at;
	}
	in->lambda_outside = p->sc.lambda_outside;
	fill_types(p);
	in->norm_sum = p->sc.have_norms ? p->sc.norm_sum : 0;
	in->norm_mtl = p->sc.have_norms ? p->sc.norm_mtl : 0;
	in->npasses = p->passes.n;
	for (unsigned i = 0; i < p->passes.n; i++) {
		p->pass_names[i] = p->passes.pass[i].name;
		p->pass_read[i] = p->pass_skipped[i] ? 0 : pipe_read_bytes(&p->env, &p->passes.pass[i]);
		p->pass_optional[i] = p->passes.pass[i].needed != NULL;
	}
	in->pass_names = p->pass_names;
	in->pass_optional = p->pass_optional;
	in->pass_skipped = p->pass_skipped;
	in->pass_read_bytes = p->pass_read;
	in->output_bytes = p->out.header_len + p->lay.out_data_bytes;
	if (p->out.dir) {
		in->output_bytes = 0;
		for (size_t k = 0; k < p->out.nshards; k++) {
			unsigned char *h = NULL;
			size_t hl = 0;
			if (plan_header(p, p->out.shards[k].t0, p->out.shards[k].t1, &h, &hl, NULL) == 0)
				in->output_bytes += hl + p->out.shards[k].data;
			free(h);
		}
	}
	if (!in->written_bytes)
		in->written_bytes = in->output_bytes;
	in->memory_bound = p->mem_bound;
	in->memory_scratch = 0;
	for (unsigned i = 0; i < p->passes.n; i++)
		if ((uint64_t)p->env.jobs * p->passes.pass[i].scratch > in->memory_scratch)
			in->memory_scratch = (uint64_t)p->env.jobs * p->passes.pass[i].scratch;
	in->chunk = p->env.chunk;
	in->jobs = p->env.jobs;
	in->io = p->src_ops->name;
	in->kernels = p->k->name;
	in->noutputs = p->outputs ? p->nvar : 1;
	in->outputs = p->outputs ? p->outputs : &p->o.output;
}

/* The scales known before anything is read: --lambda, a given alpha. */
static void choose_alpha(struct plan *p)
{
	if (!p->o.lines)
		scales_set_alpha(&p->sc, 1.0);
	else if (!p->o.alpha_auto)
		scales_set_alpha(&p->sc, p->o.alpha);
	/* else the method knows it (closed form) or measures it (a pass) */
}

/* What the method sees, and what the pipeline hands every pass. */
static void wire(struct plan *p)
{
	struct merge_ctx *c = &p->ctx;
	c->o = &p->o;
	c->k = p->k;
	c->t = p->lay.t;
	c->nt = p->lay.nt;
	c->ninputs = p->lay.ninputs;
	c->nmodels = p->lay.nmodels;
	c->L = p->lay.L;
	c->w = p->sc.w;
	c->wsum = p->sc.wsum;
	/* weights per tensor (opts.tensor_params): no closed form for alpha */
	c->equal_weights = p->sc.equal_weights && !p->lay.tensor_w;
	c->tensor_w = p->lay.tensor_w;
	c->tensor_density = p->lay.tensor_density;
	c->single_pass = p->in.single_pass;
	c->no_base = p->in.base_is_model;
	c->streams = p->in.streams;
	c->sc = &p->sc;
	c->passes = &p->passes;

	p->check.strict = p->o.strict;
	p->check.names = p->in.names;
	p->check.log = &p->o;
	p->env.lay = &p->lay;
	p->env.k = p->k;
	p->env.streams = p->in.streams;
	p->env.check = &p->check;
	p->env.stats = p->o.norms_only ? NULL : &p->stats;
	p->env.nonfinite_reaches_output = !!(p->method->flags & METHOD_LINEAR);
	p->env.ctx = c;
	p->env.o = &p->o;
	if (p->part.on) {
		p->env.parted = 1;
		p->env.part_t0 = p->part.t0;
		p->env.part_t1 = p->part.t1;
	}
	if (p->out.thash) {
		p->env.on_output = manifest_note;
		p->env.on_output_arg = &p->out;
	}
}

static int want_none(const struct merge_ctx *c, size_t tensor)
{
	(void)c, (void)tensor;
	return 0;
}

/*
 * A method's first read-only pass also compares the copied tensors;
 * without one a check pass goes first (or, with standard input, the
 * writing pass checks as it copies).
 */
static int add_check(struct plan *p, struct lines_error *err)
{
	int any = 0;
	for (size_t i = 0; i < p->lay.nt; i++)
		any |= !p->lay.t[i].merge && p->lay.t[i].units;
	if (!any)
		return 0;
	RETURN_ERROR_IF(!(p->check.warned = calloc(p->lay.nt, p->lay.nmodels)), err, LINES_ENOMEM,
	                NULL, NULL, "out of memory");
	if (p->passes.n > 1 && !p->passes.pass[0].writes) {
		p->passes.pass[0].checks_copies = 1;
		return 0;
	}
	if (p->in.single_pass) {
		p->env.check_in_write = 1;
		return 0;
	}
	struct pass *ps = passes_add_first(&p->passes);
	RETURN_ERROR_IF(!ps, err, LINES_EUSAGE, NULL, NULL, "too many passes");
	ps->name = "check";
	ps->part_job = p->lay.nmodels;
	ps->want = want_none; /* no merged tensor; the copied ones, as any pass */
	ps->checks_copies = 1;
	return 0;
}

/* --dtype fp8: the weights measured for their scales (fp8.h). */
static int want_measured(const struct merge_ctx *c, size_t tensor)
{
	return c->t[tensor].rq && c->t[tensor].rq->scaled;
}

static int measured(struct merge_ctx *c, struct lines_error *err)
{
	(void)err;
	for (size_t i = 0; i < c->nt; i++)
		if (want_measured(c, i))
			fp8_out_scales(c->t[i].rq);
	return 0;
}

/*
 * With --dtype fp8, the writing pass's values are computed once before it
 * to measure each block's largest magnitude: a pass of its own, with the
 * writing pass's work() (its results kept for the float8 weights only).
 */
static int add_measure(struct plan *p, struct lines_error *err)
{
	int any = 0;
	unsigned wi = 0;
	for (size_t i = 0; i < p->lay.nt; i++)
		any |= want_measured(&p->ctx, i);
	if (!any)
		return 0;
	RETURN_ERROR_IF(p->in.single_pass, err, LINES_EUSAGE, NULL, NULL,
	                "--dtype fp8 reads the inputs twice (to measure the scales), so an input "
	                "cannot be standard input");
	while (wi < p->passes.n && !p->passes.pass[wi].writes)
		wi++;
	struct pass *ps = passes_insert(&p->passes, wi);
	RETURN_ERROR_IF(!ps || wi + 1 >= p->passes.n, err, LINES_EUSAGE, NULL, NULL, "too many passes");
	const struct pass *w = &p->passes.pass[wi + 1];
	ps->name = "scales";
	ps->measure = 1;
	ps->rows = w->rows;
	ps->part_job = w->part_job;
	ps->part_block = w->part_block;
	ps->scratch = w->scratch;
	ps->work = w->work;
	ps->want = want_measured;
	ps->done = measured;
	return 0;
}

/*
 * The tables that grow with the number of tensors: the per-tensor sums
 * of a stats pass (merge_ctx.tstats), and for a directory output each
 * tensor's shard and each shard's count of NaN and infinite values.
 */
static int alloc_tables(struct plan *p, struct lines_error *err)
{
	size_t nt = p->lay.nt ? p->lay.nt : 1;
	p->ctx.tstats = calloc(4 * nt, sizeof(double));
	RETURN_ERROR_IF(!p->ctx.tstats, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	if (!p->out.dir || !p->out.nshards)
		return 0;
	uint32_t *of = calloc(nt, sizeof(*of));
	p->stats.by_shard = calloc(p->out.nshards * p->in.ninputs, sizeof(uint64_t));
	RETURN_ERROR_IF(!of || !p->stats.by_shard, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	for (size_t k = 0; k < p->out.nshards; k++)
		for (size_t i = p->out.shards[k].t0; i < p->out.shards[k].t1; i++)
			of[i] = (uint32_t)k;
	p->stats.shard_of = of;
	return 0;
}

/* Threads, the reader, the chunk size and the memory they take. */
static int size_pipeline(struct plan *p, struct lines_error *err)
{
	const struct lines_merge_opts *opts = &p->o;
	p->env.jobs = opts->jobs;
	if (!p->env.jobs) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		p->env.jobs = n > 0 ? (unsigned)n : 1;
	}
	if (p->env.jobs > PLAN_MAX_JOBS)
		p->env.jobs = PLAN_MAX_JOBS;
	FORWARD_IF_ERROR(choose_io(p, err));
	p->env.chunk = opts->chunk ? opts->chunk : p->src_ops->default_chunk;
	if (p->env.chunk < PLAN_MIN_CHUNK)
		p->env.chunk = PLAN_MIN_CHUNK;
	p->env.npasses = p->passes.n;
	p->mem_bound = pipe_memory(&p->env, &p->passes, p->src_ops);
	/* many threads times many inputs: smaller chunks keep the default
	 * run under PLAN_MEMORY_BUDGET (an explicit --chunk is obeyed) */
	while (!opts->chunk && p->mem_bound > PLAN_MEMORY_BUDGET &&
	       p->env.chunk > PLAN_MIN_CHUNK * 4) {
		p->env.chunk /= 2;
		p->mem_bound = pipe_memory(&p->env, &p->passes, p->src_ops);
	}
	if (p->out.zst) {
		/* libzstd's: per thread (its workers and the caller) about four
		 * windows of input, history and output (measured: 8 MiB each at
		 * level 1, whose window is 512 KiB) */
		uint64_t win = 1ull << ZSTD_getCParams(p->out.zstd_level, 0, 0).windowLog;
		p->mem_bound += (uint64_t)p->nvar * (p->env.jobs + 1) * 16 * win;
	}
	return 0;
}

int lines_plan_new(const struct lines_merge_opts *opts, struct lines_plan **out,
                   struct lines_error *err)
{
	struct lines_plan *lp;
	struct plan *p;
	struct lines_error dummy;
	struct lines_merge_opts first;
	int rc;

	if (!err)
		err = &dummy;
	*out = NULL;
	const struct lines_merge_opts *given = opts;
	if (opts->sweep != LINES_SWEEP_NONE) { /* the plan is the first value's */
		FORWARD_IF_ERROR(sweep_first(opts, &first, err));
		opts = &first;
	}
	const struct method *m = opts->norms_only ? &method_block_norms : method_get(opts->method);
	RETURN_ERROR_IF(!m, err, LINES_EUSAGE, NULL, NULL, "unknown method %d", (int)opts->method);
	FORWARD_IF_ERROR(check_options(opts, m, err));
	RETURN_ERROR_IF((m->flags & METHOD_USES_DENSITY) && !(opts->density > 0 && opts->density <= 1),
	                err, LINES_EUSAGE, NULL, NULL, "--density must be in (0, 1]");
	for (size_t i = 0; opts->densities && i < opts->nmodels; i++)
		RETURN_ERROR_IF((m->flags & METHOD_USES_DENSITY) &&
		                        !(opts->densities[i] > 0 && opts->densities[i] <= 1),
		                err, LINES_EUSAGE, NULL, NULL, "--density must be in (0, 1]");
	if (m->check)
		FORWARD_IF_ERROR(m->check(opts, err));
	lp = calloc(1, sizeof(*lp));
	RETURN_ERROR_IF(!lp, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	p = &lp->p;
	p->o = *opts;
	p->nvar = 1;
	if (given != opts) {
		p->sweep_o = *given;
		p->sweep_opts = &p->sweep_o;
	}
	p->method = m;
	p->in.ninputs = (unsigned)opts->nmodels + 1;
	if (!opts->base) { /* input 0 is the first model again, as the reference */
		p->o.base = opts->models[0];
		p->in.base_is_model = 1;
	}

	if (!(p->k = kern_get(err))) {
		rc = LINES_EUSAGE;
		goto fail;
	}
	/* choose_outputs after the layout: the manifest sizes its table by tensors */
	if ((rc = layers_init(&p->layers, &opts->layers, err)) < 0 ||
	    (rc = plan_open_inputs(p, err)) < 0 || (rc = plan_check_inputs(p, err)) < 0 ||
	    (!opts->norms_only && (rc = output_check(p, err)) < 0) ||
	    (rc = plan_layout(p, err)) < 0 || (!opts->norms_only && (rc = output_choose(p, err)) < 0) ||
	    (!opts->norms_only && (rc = output_tokenizer(p, err)) < 0) ||
	    (rc = scales_init(&p->sc, &p->o, &p->lay, !!(m->flags & METHOD_DIVIDES_WSUM), err)) < 0 ||
	    (!opts->norms_only && (rc = part_setup(p, err)) < 0) || (rc = alloc_tables(p, err)) < 0)
		goto fail;
	choose_alpha(p);
	wire(p);
	p->stats.nonfinite = calloc(p->in.ninputs, sizeof(*p->stats.nonfinite));
	p->stats.differs = calloc(p->in.ninputs, 1);
	if (!p->stats.nonfinite || !p->stats.differs) {
		rc = lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
		goto fail;
	}
	if ((rc = plan_check_stream_order(p, err)) < 0 || (rc = m->setup(&p->ctx, err)) < 0 ||
	    (rc = add_measure(p, err)) < 0 ||
	    (!opts->norms_only && (rc = add_check(p, err)) < 0) ||
	    (!opts->norms_only && (rc = part_after_setup(p, err)) < 0) || (rc = sweep_make(p, err)) < 0 ||
	    (rc = size_pipeline(p, err)) < 0 ||
	    (rc = build_header(p, err)) < 0)
		goto fail;
	p->env.nonfinite_reaches_output |= p->ctx.nonfinite_out;
	if (!(p->stack_info = calloc(p->lay.nstacks ? p->lay.nstacks : 1, sizeof(*p->stack_info)))) {
		rc = lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
		goto fail;
	}
	/* the headers and tables: they grow with the number of tensors, not
	 * with the model's size; measured, the largest of the heap while a
	 * header's JSON was parsed and the heap the plan holds now */
	size_t meta = lines_heap_in_use();
	for (unsigned i = 0; i < p->in.ninputs; i++)
		for (size_t f = 0; f < p->in.ck[i]->nfiles; f++)
			if (p->in.ck[i]->files[f].heap_peak > meta)
				meta = p->in.ck[i]->files[f].heap_peak;
	/* and what the run adds beside its buffers: the header rebuilt once
	 * alpha is known (its JSON and text), its threads' stacks */
	if (meta)
		meta += 2 * p->out.header_len + (4u << 20);
	p->info.memory_metadata = meta;
	p->mem_bound += meta;
	fill_info(p);
	*out = lp;
	return 0;
fail:
	lines_plan_free(lp);
	return rc;
}

const struct lines_plan_info *lines_plan_info(const struct lines_plan *lp)
{
	return &lp->p.info;
}

void lines_plan_tensor(const struct lines_plan *lp, size_t i, struct lines_tensor_info *info,
                       double *lambda)
{
	const struct tensor *t = &lp->p.lay.t[i];
	info->name = t->name;
	info->dtype = dtype_name(tensor_file_dt(t));
	info->is_float = t->merge;
	info->rank = t->rank;
	info->shape = t->shape;
	info->nelem = t->nelem;
	info->nbytes = tensor_file_bytes(t);
	info->block = t->block;
	info->stack = t->stack >= 0 ? lp->p.lay.stacks[t->stack].name : NULL;
	info->t = t->t;
	info->weights = t->merge ? t->w : NULL;
	info->densities = t->merge ? t->density : NULL;
	info->nmodels = lp->p.lay.nmodels;
	if (lambda)
		*lambda = lp->p.sc.alpha_known ? t->lambda : NAN;
}

/* The chunk source: mmap or io_uring, wrapped by a stream reader for
 * standard input and .zst files. */
static int open_source(struct plan *p, struct source **out, struct lines_error *err)
{
	struct inputs *in = &p->in;
	struct source *src = NULL;
	/* streams that cannot be read in order: decompress them first */
	for (unsigned m = 0, f = 0; m < in->ninputs; m++)
		for (size_t i = 0; i < in->ck[m]->nfiles; i++, f++)
			if (in->spill[f]) {
				FORWARD_IF_ERROR(ckpt_spill(&in->ck[m]->files[i], err));
				in->files[f].fd = in->ck[m]->files[i].fd;
				in->files[f].size = in->ck[m]->files[i].size;
			}
	FORWARD_IF_ERROR(p->src_ops->open(&src, in->files, in->nfiles, p->o.direct, err));
	if (in->streams) {
		struct zstream **zs = calloc(in->nfiles ? in->nfiles : 1, sizeof(*zs));
		struct source *wrapped = NULL;
		int rc;
		for (unsigned m = 0, f = 0; zs && m < in->ninputs; m++)
			for (size_t i = 0; i < in->ck[m]->nfiles; i++, f++)
				zs[f] = in->ck[m]->files[i].zs;
		rc = zs ? src_stream_open(&wrapped, src, zs, err)
		        : lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
		free(zs);
		if (rc < 0) {
			src->ops->close(src);
			return rc;
		}
		src = wrapped;
	}
	*out = src;
	return 0;
}

static int run_passes(struct plan *p, struct source *src, struct sink *out,
                      struct lines_error *err)
{
	int rc = 0;
	unsigned skipped = 0, r = 0;
	for (unsigned i = 0; rc == 0 && i < p->passes.n; i++) {
		struct pass *ps = &p->passes.pass[i];
		RETURN_ERROR_IF(lines_canceled(), err, LINES_ECANCELED, NULL, NULL, "interrupted");
		r += !!ps->stats;
		if (ps->stats && r <= p->part.have) {
			/* measured by the parts and given by --stats: only its done() */
			p->pass_skipped[i] = 1;
			skipped++;
			lines_logf(&p->o, LINES_LOG_INFO, NULL, NULL,
			           "pass %u/%u (%s): from the statistics file", i + 1, p->passes.n, ps->name);
			FORWARD_IF_ERROR(part_load_round(p, r, err));
			if (ps->done)
				FORWARD_IF_ERROR(ps->done(&p->ctx, err));
			continue;
		}
		if (p->part.round && ps->stats && r == p->part.round) {
			/* --stats-out: this part's share of the round, then stop */
			p->env.npasses = p->passes.n - skipped;
			if (ps->begin)
				FORWARD_IF_ERROR(ps->begin(&p->ctx, err));
			/* without its done(): the part's results, not the model's */
			int (*done)(struct merge_ctx *, struct lines_error *) = ps->done;
			ps->done = NULL;
			rc = pipe_run(&p->env, ps, i + 1 - skipped, src, NULL, err);
			ps->done = done;
			FORWARD_IF_ERROR(rc);
			for (unsigned j = i + 1; j < p->passes.n; j++)
				p->pass_skipped[j] = 1;
			return part_write_stats(p, err);
		}
		if (ps->writes && !p->out.dir) { /* shards write their own */
			FORWARD_IF_ERROR(build_header(p, err));
			FORWARD_IF_ERROR(sink_write(out, p->out.header, p->out.header_len, err));
			p->out.header_hash = XXH3_64bits(p->out.header, p->out.header_len);
		}
		if (ps->needed && !ps->needed(&p->ctx)) {
			p->pass_skipped[i] = 1;
			lines_logf(&p->o, LINES_LOG_INFO, NULL, NULL, "pass %u/%u (%s): not needed, skipped",
			           i + 1, p->passes.n, ps->name);
			skipped++;
			continue;
		}
		if (ps->writes)
			FORWARD_IF_ERROR(sweep_begin_write(p, err));
		if (ps->begin)
			FORWARD_IF_ERROR(ps->begin(&p->ctx, err));
		/* progress counts the passes that run: a skipped one is not one */
		p->env.npasses = p->passes.n - skipped;
		rc = pipe_run(&p->env, ps, i + 1 - skipped, src, ps->writes ? out : NULL, err);
	}
	return rc;
}

/*
 * What the writing pass saw: NaN or infinite values in an input (a
 * warning, or with --strict an error before anything is committed), and
 * models whose task vector is zero everywhere (a warning on every path,
 * unless a norm pass said so already).
 */
static int report_stats(struct plan *p, struct lines_error *err)
{
	unsigned zero = 0;
	/* without a base, input 0 is the first model again: counted once */
	for (unsigned m = p->in.base_is_model; m < p->in.ninputs; m++) {
		uint64_t n = p->stats.nonfinite[m];
		if (n) {
			RETURN_ERROR_IF(p->o.strict, err, LINES_EFORMAT, p->in.names[m], NULL,
			                "%llu NaN or infinite value%s in merged tensors (--strict)",
			                (unsigned long long)n, n == 1 ? "" : "s");
			lines_logf(&p->o, LINES_LOG_WARN, p->in.names[m], NULL,
			           "%llu NaN or infinite value%s in merged tensors; they stay NaN or "
			           "infinite in the output",
			           (unsigned long long)n, n == 1 ? "" : "s");
		}
		zero += m && !p->stats.differs[m];
	}
	uint64_t o = p->stats.overflow;
	RETURN_ERROR_IF(o && p->o.strict, err, LINES_EFORMAT, NULL, NULL,
	                "%llu output value%s NaN or infinite where every input is finite: "
	                "the weights or lambda overflow the output's type (--strict)",
	                (unsigned long long)o, o == 1 ? " is" : "s are");
	if (o)
		lines_logf(&p->o, LINES_LOG_WARN, NULL, NULL,
		           "%llu output value%s NaN or infinite where every input is finite: the "
		           "weights or lambda overflow the output's type",
		           (unsigned long long)o, o == 1 ? " is" : "s are");
	/* (a method of the models themselves has no task vectors) */
	/* (a part sees its own tensors only, or none) */
	if (zero == p->lay.nmodels && !p->sc.warned_zero && !(p->method->flags & METHOD_NO_BASE) &&
	    !p->part.on)
		lines_logf(&p->o, LINES_LOG_WARN, NULL, NULL,
		           "every task vector is zero (the models equal the base): the output is the "
		           "base");
	return 0;
}

int lines_plan_run(struct lines_plan *lp, struct lines_error *err)
{
	struct plan *p = &lp->p;
	struct source *src = NULL;
	struct sink *out = NULL;
	int rc;

	RETURN_ERROR_IF(p->ran, err, LINES_EUSAGE, NULL, NULL, "a plan runs only once");
	p->ran = 1;
	int no_output = p->o.norms_only || p->part.round; /* --stats-out writes no model */
	FORWARD_IF_ERROR(part_check_run(p, err));
	if (!no_output)
		FORWARD_IF_ERROR(output_lock(p, err));
	if ((rc = sweep_lock(p, err)) < 0 || (rc = open_source(p, &src, err)) < 0) {
		sweep_close(p);
		output_unlock(&p->out);
		return rc;
	}
	p->ctx.src = src;
	rc = no_output ? 0 : output_open(p, &out, err);
	if (rc == 0)
		rc = sweep_open(p, err);
	if (rc == 0)
		rc = run_passes(p, src, out, err);
	if (rc == 0 && !no_output)
		rc = report_stats(p, err);
	if (rc == 0)
		rc = plan_check_unchanged(p, err);
	if (rc == 0)
		rc = plan_check_stream_ends(p, err);
	if (rc == 0 && out)
		rc = sink_finish(out, err);
	if (rc == 0)
		rc = sweep_finish(p, err);
	if (rc == 0 && out)
		rc = output_commit(p, out, err);
	else if (out)
		sink_abort(out);
	if (rc == 0)
		rc = sweep_commit(p, err);
	else
		sweep_abort(p);
	sweep_close(p);
	if (rc == 0 && out && !p->out.dir && !p->out.zst) /* the bytes, not the plan's count */
		p->info.written_bytes = out->written;
	sink_free(out);
	output_unlock(&p->out);
	src->ops->close(src);
	p->ctx.src = NULL;
	if (rc == 0 && p->out.zst) {
		struct stat st;
		if (stat(p->o.output, &st) == 0)
			p->info.written_bytes = (uint64_t)st.st_size;
	}
	fill_info(p);
	return rc;
}

int lines_block_norms(struct lines_plan *lp, const struct lines_block_norms **out,
                      struct lines_error *err)
{
	struct plan *p = &lp->p;
	RETURN_ERROR_IF(!p->o.norms_only, err, LINES_EUSAGE, NULL, NULL,
	                "the plan was not made for norms");
	FORWARD_IF_ERROR(lines_plan_run(lp, err));
	*out = block_norms_of(&p->ctx);
	return 0;
}

void lines_plan_free(struct lines_plan *lp)
{
	struct plan *p;
	if (!lp)
		return;
	p = &lp->p;
	sweep_free(p);
	/* (a plan that failed before the method's context was wired has no
	 * method state, and its free() may read the options through it) */
	if (p->method && p->method->free && p->ctx.o)
		p->method->free(&p->ctx);
	plan_inputs_free(p);
	free(p->check.warned);
	free(p->stats.nonfinite);
	free(p->stats.differs);
	free(p->stats.by_shard);
	free(p->stats.shard_of);
	free(p->ctx.tstats);
	json_decref(p->part.loaded);
	output_free(&p->out);
	free(p->tok_dir);
	scales_free(&p->sc);
	free(p->stack_info);
	layers_free(&p->layers);
	free(lp);
}
