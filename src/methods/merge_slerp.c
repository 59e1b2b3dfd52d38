/*
 * merge_slerp.c -- mergekit's slerp: spherical interpolation between two
 * models, the base (-b, mergekit's base_model, t = 0) and the one MODEL
 * (t = 1), one angle per tensor.
 *
 * Per tensor, with v0 the base's and v1 the model's values (decoded to
 * float32, F64 stays float64), everything else in float64:
 *     a_i = |v_i| when |v_i| > 1e-8, else 1    (the norm or no normalizing)
 *     c = (v0 . v1) / (a0 a1)
 *     |c| > 0.9995:  s0 = 1 - t, s1 = t          (lerp)
 *     else:          th = acos(c), s0 = sin(th - t th) / sin(th),
 *                    s1 = sin(t th) / sin(th)
 * and per element
 *     v = s0 v0 + s1 v1                  two products and a sum
 *     theta = v0 + lambda (v - v0)       lambda is --lambda or LiNeS's
 *                                        lambda(block); v when lambda is 1
 * rounded once to the output dtype. t may differ between tensors
 * (tensor->t: a configuration's gradients and filters, opts.tensor_t). A read-only pass measures v0 . v1,
 * |v0|^2 and |v1|^2 of every tensor (tensor_dots.h); the writing pass
 * computes the coefficients from them. Portable C on tiles: the same
 * bytes on every instruction set.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>

#include "method.h"
#include "tensor_dots.h"

struct slerp {
	struct tdots d; /* first: tensor_dots.h */
};

/* v0 . v1, |v0|^2, |v1|^2 */
static const unsigned char sl_pairs[3][2] = {{0, 1}, {0, 0}, {1, 1}};

struct sl_scratch {
	double v0[KERN_TILE], v1[KERN_TILE];
	float f[KERN_TILE];
};

LINES_HOT static void sl_load(const struct merge_ctx *p, const struct tensor *t, const struct pipe_job *job,
                    size_t j0, size_t n, double *const *v, float *tmp)
{
	for (unsigned i = 0; i < 2; i++)
		tile_load(p->k, t->in_dt, job->in[i] + j0 * t->unit_in, n, v[i], tmp);
}

/* The coefficients of a tensor from its dots; 1 when it falls back to lerp. */
static int sl_coef(const double *dot, double t, double *s0, double *s1)
{
	double n0 = sqrt(dot[1]), n1 = sqrt(dot[2]);
	double c = dot[0] / ((n0 > 1e-8 ? n0 : 1.0) * (n1 > 1e-8 ? n1 : 1.0));
	if (fabs(c) > 0.9995) {
		*s0 = 1.0 - t, *s1 = t;
		return 1;
	}
	double th = acos(c), st = sin(th);
	*s0 = sin(th - th * t) / st;
	*s1 = sin(th * t) / st;
	return 0;
}

LINES_HOT static int sl_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                   struct lines_error *err)
{
	const struct slerp *sl = p->state;
	const struct tensor *t = &p->t[job->tensor];
	struct sl_scratch *s = scratch;
	size_t n = (size_t)(job->u1 - job->u0);
	double s0, s1;
	(void)err;
	sl_coef(tdots_of(&sl->d, job->tensor), t->t, &s0, &s1);
	for (size_t j0 = 0; j0 < n; j0 += KERN_TILE) {
		size_t nn = n - j0 < KERN_TILE ? n - j0 : KERN_TILE;
		tile_load(p->k, t->in_dt, job->in[0] + j0 * t->unit_in, nn, s->v0, s->f);
		tile_load(p->k, t->in_dt, job->in[1] + j0 * t->unit_in, nn, s->v1, s->f);
		for (size_t j = 0; j < nn; j++)
			s->v1[j] = toward_base(s0 * s->v0[j] + s1 * s->v1[j], s->v0[j], t->lambda);
		tile_store(p->k, t->out_dt, s->v1, nn, job->out + j0 * t->unit_out, s->f);
	}
	return 0;
}

/* mergekit requires t; any finite t (outside [0, 1] it extrapolates). */
static int sl_check(const struct lines_merge_opts *o, struct lines_error *err)
{
	RETURN_ERROR_IF(!isfinite(o->t), err, LINES_EUSAGE, NULL, NULL,
	                "-m slerp needs --t T, a finite number (0: the base, 1: the model)");
	return 0;
}

static int sl_setup(struct merge_ctx *p, struct lines_error *err)
{
	struct slerp *sl;
	RETURN_ERROR_IF(p->o->lines && p->o->alpha_auto, err, LINES_EUSAGE, NULL, NULL,
	                "automatic alpha compares several task vectors; -m slerp has one: "
	                "give --alpha or --gamma");
	RETURN_ERROR_IF(!(sl = calloc(1, sizeof(*sl))), err, LINES_ENOMEM, NULL, NULL,
	                "out of memory");
	p->state = sl;
	FORWARD_IF_ERROR(tdots_init(&sl->d, p, 2, sl_pairs, 3, sl_load, err));
	FORWARD_IF_ERROR(tdots_add_pass(p, "dots", "-m slerp", err));
	return tdots_add_write(p, sl_work, sizeof(struct sl_scratch), err);
}

static json_t *sl_report(const struct merge_ctx *c)
{
	json_t *m = json_object();
	json_object_set_new(m, "t", json_num(c->o->t));
	return m;
}

/* Per merged tensor, once measured: the dots, the cosine's coefficients. */
static void sl_report_tensor(const struct merge_ctx *c, size_t i, json_t *e)
{
	const struct slerp *sl = c->state;
	if (c->t[i].merge)
		json_object_set_new(e, "t", json_num(c->t[i].t));
	if (!sl || !sl->d.measured || !c->t[i].merge)
		return;
	const double *d = tdots_of(&sl->d, i);
	double s0, s1;
	int lerp = sl_coef(d, c->t[i].t, &s0, &s1);
	tdots_report_pair(e, "slerp", d, lerp, s0, s1);
}

static void sl_meta(const struct merge_ctx *c,
                    void (*put)(void *arg, const char *key, const char *value), void *arg)
{
	char v[64];
	int varies = 0;
	for (size_t i = 0; i < c->nt && !varies; i++)
		varies = c->t[i].merge && c->t[i].t != c->o->t;
	lines_fmt_double(v, sizeof(v), c->o->t);
	put(arg, "lines.t", varies ? "per tensor (see the manifest)" : v);
}

const struct method method_slerp = {
	.name = "slerp",
	.summary = "spherical interpolation from the base (t = 0) to the model (t = 1)",
	.flags = METHOD_USES_T | METHOD_ONE_MODEL | METHOD_TENSOR_T | METHOD_PART,
	.check = sl_check,
	.setup = sl_setup,
	.meta = sl_meta,
	.report = sl_report,
	.report_tensor = sl_report_tensor,
	.free = tdots_method_free,
};
