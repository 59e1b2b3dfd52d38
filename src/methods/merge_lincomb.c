/*
 * merge_lincomb.c -- mergekit's linear: a weighted mean of the models
 * themselves, not of task vectors, so it needs no base.
 *
 * Per element, with x_i the models' values:
 *     v = sum_i w_i x_i / sum_i w_i      (sum_i w_i x_i with --no-normalize)
 *     theta = v                           without a base
 *     theta = b + lambda (v - b)          with -b BASE (b its value), where
 *                                         lambda is --lambda or LiNeS's
 *                                         lambda(block); v when lambda is 1
 * x_i are decoded to float32 (F64 stays float64); the sum is float64,
 * models in order, acc = w_0 x_0 then fma(w_i, x_i, acc); one division by
 * the sum of the weights; the result is rounded once to the output dtype.
 * Portable C on tiles decoded and encoded by the kernel table, so every
 * instruction set gives the same bytes. The weights may differ between
 * tensors (a configuration's gradients and filters: tensor_w()), each
 * tensor then divided by the sum of its own.
 *
 * Without -b, the plan reads the first model a second time as input 0
 * (the layout's reference: names, order, the tensors that are copied);
 * this file never looks at input 0 then, because lambda is always 1.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>

#include "method.h"

/* A worker's tiles: the mean, a model's values, the base's, the sum of the
 * task vectors (norm pass), float32 room. */
struct lc_scratch {
	double acc[KERN_TILE], x[KERN_TILE], b[KERN_TILE], ts[KERN_TILE];
	float f[KERN_TILE];
};

/* The running sums of the norm pass: |s|, |t|, s^2, t^2. */
struct lc_norms {
	double acc[4];
};

/* s->acc = v for elements [j0, j0 + n) of the job. */
static void lc_mean(const struct merge_ctx *p, const struct tensor *t, const struct pipe_job *job,
                    size_t j0, size_t n, struct lc_scratch *s)
{
	const double *w = tensor_w(p, t), ws = tensor_wsum(p, t);
	double r = 1.0;
	for (unsigned i = 0; i < p->nmodels; i++) {
		tile_load(p->k, t->in_dt, job->in[i + 1] + j0 * t->unit_in, n, s->x, s->f);
		for (size_t j = 0; j < n; j++)
			s->acc[j] = i == 0 ? w[0] * s->x[j] : fma(w[i], s->x[j], s->acc[j]);
	}
	if (p->o->no_normalize)
		return;
	if (pow2_inverse(ws, &r)) /* the same quotients, by a product */
		for (size_t j = 0; j < n; j++)
			s->acc[j] *= r;
	else
		for (size_t j = 0; j < n; j++)
			s->acc[j] /= ws;
}

/*
 * For the norms, from the task vectors tau_i = x_i - b rounded to float32
 * (float64 for F64) as for every other method: s->ts = sum_i tau_i and
 * s->acc = v - b written with them, sum_i w_i tau_i / sum_i w_i, or with
 * --no-normalize sum_i w_i tau_i + (sum_i w_i - 1) b.
 */
static void lc_taus(const struct merge_ctx *p, const struct tensor *t, const struct pipe_job *job,
                    size_t j0, size_t n, struct lc_scratch *s)
{
	size_t off = j0 * t->unit_in;
	int f64 = t->in_dt == DT_F64;
	const double *w = tensor_w(p, t), ws = tensor_wsum(p, t);
	double r = 1.0;
	tile_load(p->k, t->in_dt, job->in[0] + off, n, s->b, s->f);
	for (unsigned i = 0; i < p->nmodels; i++) {
		tile_load(p->k, t->in_dt, job->in[i + 1] + off, n, s->x, s->f);
		for (size_t j = 0; j < n; j++) {
			double tau = f64 ? s->x[j] - s->b[j] : (double)(float)(s->x[j] - s->b[j]);
			s->ts[j] = i == 0 ? tau : s->ts[j] + tau;
			s->acc[j] = i == 0 ? w[0] * tau : fma(w[i], tau, s->acc[j]);
		}
	}
	if (p->o->no_normalize)
		for (size_t j = 0; j < n; j++)
			s->acc[j] = fma(ws - 1.0, s->b[j], s->acc[j]);
	else if (pow2_inverse(ws, &r))
		for (size_t j = 0; j < n; j++)
			s->acc[j] *= r;
	else
		for (size_t j = 0; j < n; j++)
			s->acc[j] /= ws;
}

/* ---- the writing pass ------------------------------------------------------ */
static void lc_tile(const struct merge_ctx *p, const struct tensor *t, const struct pipe_job *job,
                    size_t j0, size_t n, struct lc_scratch *s)
{
	lc_mean(p, t, job, j0, n, s);
	if (t->lambda != 1.0) {
		tile_load(p->k, t->in_dt, job->in[0] + j0 * t->unit_in, n, s->b, s->f);
		for (size_t j = 0; j < n; j++)
			s->acc[j] = toward_base(s->acc[j], s->b[j], t->lambda);
	}
	tile_store(p->k, t->out_dt, s->acc, n, job->out + j0 * t->unit_out, s->f);
}

LINES_HOT static int lc_work(struct merge_ctx *p, struct pipe_job *job, void *scratch, struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;
	for (size_t j0 = 0; j0 < n; j0 += KERN_TILE)
		lc_tile(p, t, job, j0, n - j0 < KERN_TILE ? n - j0 : KERN_TILE, scratch);
	return 0;
}

/* ---- the norm pass of automatic alpha ----------------------------------------- */
/*
 * Per block of KERN_BLOCK elements (aligned to the tensor's start, so the
 * sums do not depend on the chunking), with s = sum_i tau_i and
 * t = v - b (lc_taus): |s|, |t|, s^2 and t^2, elements in order, leaving out those
 * where s or t is not finite. The consumer adds the blocks in order.
 */
LINES_HOT static int lc_norm_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                        struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	struct lc_scratch *s = scratch;
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;
	for (unsigned blk = 0; blk < job->nblocks; blk++) {
		double *part = job->part + 4 * blk;
		size_t b0 = (size_t)blk * KERN_BLOCK, b1 = b0 + KERN_BLOCK < n ? b0 + KERN_BLOCK : n;
		struct norm_lanes l = {0};
		for (size_t j0 = b0; j0 < b1; j0 += KERN_TILE) {
			size_t nn = b1 - j0 < KERN_TILE ? b1 - j0 : KERN_TILE;
			lc_taus(p, t, job, j0, nn, s);
			norm_lanes_add(p->k->wide, &l, s->ts, s->acc, nn);
		}
		norm_lanes_fold(part, &l);
	}
	return 0;
}

static int lc_norm_reduce(struct merge_ctx *p, const struct pipe_job *job, struct lines_error *err)
{
	(void)err;
	norm_sums_tensor(p, job); /* per tensor: a stats pass */
	return 0;
}

static int lc_norm_done(struct merge_ctx *p, struct lines_error *err)
{
	struct lc_norms *nm = p->state;
	norm_sums_total(p, nm->acc);
	return norm_sums_alpha(p, nm->acc, 0, err);
}

static int lc_add_norms(struct merge_ctx *p, struct lines_error *err)
{
	RETURN_ERROR_IF(p->single_pass, err, LINES_EUSAGE, NULL, NULL,
	                "standard input can be read only once, but automatic alpha for -m linear "
	                "with unequal weights or --no-normalize needs a norm pass before the "
	                "writing pass: give that model as a file, or give --alpha");
	RETURN_ERROR_IF(!(p->state = calloc(1, sizeof(struct lc_norms))), err, LINES_ENOMEM, NULL,
	                NULL, "out of memory");
	struct pass *ps = passes_add(p->passes);
	ps->name = "norms";
	ps->part_block = 4;
	ps->scratch = sizeof(struct lc_scratch);
	ps->want = want_merged;
	ps->work = lc_norm_work;
	ps->reduce = lc_norm_reduce;
	ps->done = lc_norm_done;
	ps->stats = 1;
	p->sc->measured = 1;
	return 0;
}

/* LiNeS and --lambda move the result along its difference from a base. */
static int lc_check(const struct lines_merge_opts *o, struct lines_error *err)
{
	RETURN_ERROR_IF(!o->base && o->lines, err, LINES_EUSAGE, NULL, NULL,
	                "-m linear --lines scales the merged model's difference from a base: "
	                "give -b BASE");
	RETURN_ERROR_IF(!o->base && o->lambda != 1.0, err, LINES_EUSAGE, NULL, NULL,
	                "-m linear --lambda scales the merged model's difference from a base: "
	                "give -b BASE");
	return 0;
}

/*
 * Automatic alpha = ||sum_i tau_i|| / (N ||v - theta_0||): with equal
 * weights, normalized, v - theta_0 is the mean task vector and alpha is 1,
 * known before anything is read; otherwise a norm pass measures it.
 */
static int lc_setup(struct merge_ctx *p, struct lines_error *err)
{
	const struct lines_merge_opts *o = p->o;

	RETURN_ERROR_IF(!o->no_normalize && !p->tensor_w && p->wsum == 0.0, err, LINES_EUSAGE, NULL,
	                NULL, "the weights of -m linear must not sum to zero (or give --no-normalize)");
	for (size_t i = 0; i < p->nt && !o->no_normalize; i++)
		RETURN_ERROR_IF(p->t[i].merge && p->t[i].w && p->t[i].wsum == 0.0, err, LINES_EUSAGE,
		                NULL, p->t[i].name,
		                "the weights of -m linear sum to zero here (or give --no-normalize)");
	if (o->lines && o->alpha_auto && p->equal_weights && !o->no_normalize)
		scales_auto_alpha(p->sc, 1.0);
	else if (o->lines && o->alpha_auto)
		FORWARD_IF_ERROR(lc_add_norms(p, err));
	struct pass *pw = passes_add(p->passes);
	pw->name = "write";
	pw->writes = 1;
	pw->want = want_all;
	pw->work = lc_work;
	pw->scratch = sizeof(struct lc_scratch);
	return 0;
}

static void lc_free(struct merge_ctx *p)
{
	free(p->state);
	p->state = NULL;
}

static json_t *lc_report(const struct merge_ctx *c)
{
	json_t *m = json_object();
	json_object_set_new(m, "normalize", json_boolean(!c->o->no_normalize));
	return m;
}

static void lc_meta(const struct merge_ctx *c,
                    void (*put)(void *arg, const char *key, const char *value), void *arg)
{
	put(arg, "lines.normalize", c->o->no_normalize ? "false" : "true");
}

const struct method method_linear = {
	.name = "linear",
	.summary = "weighted mean of the models: sum_i w_i theta_i / sum_i w_i",
	.flags = METHOD_USES_WEIGHTS | METHOD_USES_NORMALIZE | METHOD_NO_BASE | METHOD_LINEAR |
	         METHOD_PART | METHOD_TENSOR_W,
	.check = lc_check,
	.setup = lc_setup,
	.meta = lc_meta,
	.report = lc_report,
	.free = lc_free,
};
