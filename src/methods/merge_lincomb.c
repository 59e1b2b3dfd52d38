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
 * instruction set gives the same bytes.
 *
 * Without -b, the plan reads the first model a second time as input 0
 * (the layout's reference: names, order, the tensors that are copied);
 * this file never looks at input 0 then, because lambda is always 1.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>

#include "method.h"

/* A worker's tiles: the sum, a model's values, float32 room. */
struct lc_scratch {
	double acc[KERN_TILE], x[KERN_TILE];
	float f[KERN_TILE];
};

static void lc_tile(const struct merge_ctx *p, const struct tensor *t, const struct pipe_job *job,
                    size_t j0, size_t n, struct lc_scratch *s)
{
	for (unsigned i = 0; i < p->nmodels; i++) {
		tile_load(p->k, t->in_dt, job->in[i + 1] + j0 * t->unit_in, n, s->x, s->f);
		for (size_t j = 0; j < n; j++)
			s->acc[j] = i == 0 ? p->w[0] * s->x[j] : fma(p->w[i], s->x[j], s->acc[j]);
	}
	if (!p->o->no_normalize)
		for (size_t j = 0; j < n; j++)
			s->acc[j] /= p->wsum;
	if (t->lambda != 1.0) {
		tile_load(p->k, t->in_dt, job->in[0] + j0 * t->unit_in, n, s->x, s->f);
		for (size_t j = 0; j < n; j++)
			s->acc[j] = toward_base(s->acc[j], s->x[j], t->lambda);
	}
	tile_store(p->k, t->out_dt, s->acc, n, job->out + j0 * t->unit_out, s->f);
}

static int lc_work(struct merge_ctx *p, struct pipe_job *job, void *scratch, struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;
	for (size_t j0 = 0; j0 < n; j0 += KERN_TILE)
		lc_tile(p, t, job, j0, n - j0 < KERN_TILE ? n - j0 : KERN_TILE, scratch);
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
 * Automatic alpha = ||sum tau_i|| / (N ||v - theta_0||): with equal
 * weights, normalized, v - theta_0 is the mean task vector and alpha is 1.
 * Other cases would need a norm pass of their own: give --alpha.
 */
static int lc_setup(struct merge_ctx *p, struct lines_error *err)
{
	const struct lines_merge_opts *o = p->o;

	RETURN_ERROR_IF(!o->no_normalize && p->wsum == 0.0, err, LINES_EUSAGE, NULL, NULL,
	                "the weights of -m linear must not sum to zero (or give --no-normalize)");
	if (o->lines && o->alpha_auto) {
		RETURN_ERROR_IF(!p->equal_weights || o->no_normalize, err, LINES_EUSAGE, NULL, NULL,
		                "automatic alpha for -m linear is known for equal weights without "
		                "--no-normalize only: give --alpha");
		scales_auto_alpha(p->sc, 1.0);
	}
	struct pass *pw = passes_add(p->passes);
	pw->name = "write";
	pw->writes = 1;
	pw->want = want_all;
	pw->work = lc_work;
	pw->scratch = sizeof(struct lc_scratch);
	return 0;
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
	.flags = METHOD_USES_WEIGHTS | METHOD_USES_NORMALIZE | METHOD_NO_BASE,
	.check = lc_check,
	.setup = lc_setup,
	.meta = lc_meta,
	.report = lc_report,
};
