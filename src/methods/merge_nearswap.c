/*
 * merge_nearswap.c -- mergekit's nearswap: take the model where it is near
 * the base, and move only a little toward it where it is far.
 *
 * Per element, with b the base's value and x the one model's, both decoded
 * to float32 (F64 stays float64) and the rest in float64:
 *     d = |b - x|
 *     w = t / d, clamped to [0, 1]; 1 where t / d is NaN or infinite
 *         (d = 0: the values agree; d NaN: an input is NaN)
 *     v = w x + (1 - w) b            as fma(w, x, (1 - w) b)
 *     theta = b + lambda (v - b)     lambda is --lambda or LiNeS's
 *                                    lambda(block); v when lambda is 1
 * and theta is rounded once to the output dtype. So an element whose two
 * values differ by at most t is the model's, and one that differs by
 * D > t moves t toward the model: the base plus t sign(x - b), before
 * rounding. Portable C on tiles decoded and encoded by the kernel table:
 * the same bytes on every instruction set.
 */
#include "config.h"

#include <math.h>

#include "method.h"

struct ns_scratch {
	double b[KERN_TILE], x[KERN_TILE], w[KERN_TILE];
	float f[KERN_TILE];
};

/* The weight of the model in one element from t / d (mergekit's
 * nan_to_num and clamp), without a branch. */
static inline double ns_weight(double q)
{
	double c = q > 1.0 ? 1.0 : q;
	c = c < 0.0 ? 0.0 : c;
	return isfinite(q) ? c : 1.0;
}

static void ns_tile(const struct merge_ctx *p, const struct tensor *t, const struct pipe_job *job,
                    size_t j0, size_t n, struct ns_scratch *s)
{
	double th = p->o->t;
	tile_load(p->k, t->in_dt, job->in[0] + j0 * t->unit_in, n, s->b, s->f);
	tile_load(p->k, t->in_dt, job->in[1] + j0 * t->unit_in, n, s->x, s->f);
	/* every quotient first, then the weights, then the values: loops
	 * without a branch, which vectorise (GCC 12 leaves the weights and
	 * the values in one loop scalar for AVX2) */
	for (size_t j = 0; j < n; j++)
		s->w[j] = th / fabs(s->b[j] - s->x[j]);
	for (size_t j = 0; j < n; j++)
		s->w[j] = ns_weight(s->w[j]);
	for (size_t j = 0; j < n; j++) {
		double w = s->w[j];
		double v = fma(w, s->x[j], (1.0 - w) * s->b[j]);
		s->x[j] = toward_base(v, s->b[j], t->lambda);
	}
	tile_store(p->k, t->out_dt, s->x, n, job->out + j0 * t->unit_out, s->f);
}

LINES_HOT static int ns_work(struct merge_ctx *p, struct pipe_job *job, void *scratch, struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;
	for (size_t j0 = 0; j0 < n; j0 += KERN_TILE)
		ns_tile(p, t, job, j0, n - j0 < KERN_TILE ? n - j0 : KERN_TILE, scratch);
	return 0;
}

/* mergekit requires t and refuses t <= 0. */
static int ns_check(const struct lines_merge_opts *o, struct lines_error *err)
{
	RETURN_ERROR_IF(!(o->t > 0 && isfinite(o->t)), err, LINES_EUSAGE, NULL, NULL,
	                "-m nearswap needs --t T, a finite number greater than 0");
	return 0;
}

static int ns_setup(struct merge_ctx *p, struct lines_error *err)
{
	RETURN_ERROR_IF(p->o->lines && p->o->alpha_auto, err, LINES_EUSAGE, NULL, NULL,
	                "automatic alpha compares several task vectors; -m nearswap merges one: "
	                "give --alpha or --gamma");
	struct pass *pw = passes_add(p->passes);
	pw->name = "write";
	pw->writes = 1;
	pw->want = want_all;
	pw->work = ns_work;
	pw->scratch = sizeof(struct ns_scratch);
	return 0;
}

static json_t *ns_report(const struct merge_ctx *c)
{
	json_t *m = json_object();
	json_object_set_new(m, "t", json_num(c->o->t));
	return m;
}

static void ns_meta(const struct merge_ctx *c,
                    void (*put)(void *arg, const char *key, const char *value), void *arg)
{
	char v[64];
	lines_fmt_double(v, sizeof(v), c->o->t);
	put(arg, "lines.t", v);
}

const struct method method_nearswap = {
	.name = "nearswap",
	.summary = "the model where it is within t of the base, else t toward it",
	.flags = METHOD_USES_T | METHOD_ONE_MODEL | METHOD_PART,
	.check = ns_check,
	.setup = ns_setup,
	.meta = ns_meta,
	.report = ns_report,
};
