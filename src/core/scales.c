/*
 * scales.c -- weights, alpha and beta, and the lambda of every tensor.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>

#include "layers.h"
#include "scales.h"

int scales_init(struct scales *sc, const struct lines_merge_opts *o, struct layout *lay,
                int divide_wsum, struct lines_error *err)
{
	unsigned n = lay->nmodels;
	sc->o = o;
	sc->lay = lay;
	sc->divide_wsum = divide_wsum;
	sc->w = calloc(n ? n : 1, sizeof(*sc->w));
	size_t nl = 0;
	for (size_t i = 0; i < lay->nstacks; i++)
		nl += (size_t)lay->stacks[i].L;
	sc->lambda_layer = calloc(lay->L ? (size_t)lay->L : 1, sizeof(*sc->lambda_layer));
	sc->lambda_stacks = calloc(nl ? nl : 1, sizeof(*sc->lambda_stacks));
	RETURN_ERROR_IF(!sc->w || !sc->lambda_layer || !sc->lambda_stacks, err, LINES_ENOMEM, NULL,
	                NULL, "out of memory");
	sc->equal_weights = 1;
	for (unsigned i = 0; i < n; i++) {
		sc->w[i] = o->weights ? o->weights[i] : 1.0;
		sc->wsum += sc->w[i];
		if (sc->w[i] != sc->w[0])
			sc->equal_weights = 0;
	}
	for (size_t i = 0; i < lay->nt; i++)
		lay->t[i].lambda = 1.0;
	/* a given beta is known before alpha (the header the plan sizes) */
	sc->beta = o->lines && !isnan(o->beta) ? o->beta : 0.0;
	return 0;
}

void scales_free(struct scales *sc)
{
	free(sc->w);
	free(sc->lambda_layer);
	free(sc->lambda_stacks);
	sc->w = sc->lambda_layer = sc->lambda_stacks = NULL;
}

/* A tensor in a block: its stack's ramp. */
static double scales_lambda_of(const struct scales *sc, const struct tensor *t)
{
	const struct stack *st = &sc->lay->stacks[t->stack];
	return sc->o->lines ? layers_lambda_at(st->first + t->block, st->ramp, sc->alpha, sc->beta,
	                                       sc->o->schedule, sc->o->nschedule)
	                    : sc->o->lambda;
}

void scales_set_alpha(struct scales *sc, double alpha)
{
	const struct lines_merge_opts *o = sc->o;
	struct layout *lay = sc->lay;
	sc->alpha = alpha;
	sc->beta = isnan(o->beta) ? fmax(0.0, 1.0 - alpha) : o->beta;
	sc->alpha_known = 1;
	for (long i = 0; i < lay->L; i++)
		sc->lambda_layer[i] = o->lines ? layers_lambda_at(i, lay->L, sc->alpha, sc->beta,
		                                                  o->schedule, o->nschedule)
		                               : o->lambda;
	for (size_t k = 0, at = 0; k < lay->nstacks; at += (size_t)lay->stacks[k++].L) {
		const struct stack *st = &lay->stacks[k];
		for (long i = 0; i < st->L; i++)
			sc->lambda_stacks[at + (size_t)i] =
				o->lines ? layers_lambda_at(st->first + i, st->ramp, sc->alpha,
				                            sc->beta, o->schedule, o->nschedule)
				         : o->lambda;
	}
	if (lay->nstacks == 1 && lay->stacks[0].ramp == lay->L) /* the one stack's ramp */
		for (long i = 0; i < lay->L; i++)
			sc->lambda_layer[i] = sc->lambda_stacks[i];
	sc->lambda_outside = o->lines ? sc->alpha : o->lambda;
	for (size_t i = 0; i < lay->nt; i++) {
		struct tensor *t = &lay->t[i];
		t->lambda = t->block >= 0 ? scales_lambda_of(sc, t) : sc->lambda_outside;
		t->k_lambda = !sc->divide_wsum ? t->lambda
		              : t->w          ? t->lambda / t->wsum /* its own weights */
		                              : t->lambda / sc->wsum;
	}
}

void scales_auto_alpha(struct scales *sc, double alpha)
{
	const struct lines_merge_opts *o = sc->o;
	scales_set_alpha(sc, alpha);
	if (!o->lines || !o->alpha_auto)
		return;
	if (isnan(o->beta) && alpha >= 1.0)
		lines_logf(o, LINES_LOG_WARN, NULL, NULL,
		           "automatic alpha is %.6g, so beta = max(0, 1 - alpha) = 0 and every block "
		           "gets alpha: LiNeS does not scale by depth; give --beta (or --alpha)",
		           alpha);
	else if (!(alpha > 0.0 && alpha <= 2.0))
		lines_logf(o, LINES_LOG_WARN, NULL, NULL,
		           "automatic alpha is %.6g, far outside (0, 1]; check the models, or give "
		           "--alpha and --beta",
		           alpha);
}

int scales_from_norms(struct scales *sc, double sum, double mtl, int zero_ok,
                      struct lines_error *err)
{
	const struct lines_merge_opts *o = sc->o;
	sc->norm_sum = sum;
	sc->norm_mtl = mtl;
	sc->have_norms = 1;
	if (!o->lines || !o->alpha_auto)
		return 0;
	if (mtl == 0.0 && (zero_ok || sum == 0.0)) {
		sc->warned_zero = sum == 0.0;
		lines_logf(o, LINES_LOG_WARN, NULL, NULL,
		           zero_ok ? "the merged task vector is zero; alpha is set to 1 (the output is "
		                     "the base)"
		                   : "every task vector is zero; alpha is set to 1 (the output is the "
		                     "base)");
		scales_set_alpha(sc, 1.0);
		return 0;
	}
	RETURN_ERROR_IF(mtl == 0.0, err, LINES_EUSAGE, NULL, NULL,
	                "the weighted task vectors cancel out (||tau_MTL|| = 0); give --alpha");
	scales_auto_alpha(sc, sum / ((double)sc->lay->nmodels * mtl));
	return 0;
}
