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
	sc->lambda_layer = calloc(lay->L ? (size_t)lay->L : 1, sizeof(*sc->lambda_layer));
	RETURN_ERROR_IF(!sc->w || !sc->lambda_layer, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	sc->equal_weights = 1;
	for (unsigned i = 0; i < n; i++) {
		sc->w[i] = o->weights ? o->weights[i] : 1.0;
		sc->wsum += sc->w[i];
		if (sc->w[i] != sc->w[0])
			sc->equal_weights = 0;
	}
	for (size_t i = 0; i < lay->nt; i++)
		lay->t[i].lambda = 1.0;
	return 0;
}

void scales_free(struct scales *sc)
{
	free(sc->w);
	free(sc->lambda_layer);
	sc->w = sc->lambda_layer = NULL;
}

void scales_set_alpha(struct scales *sc, double alpha)
{
	const struct lines_merge_opts *o = sc->o;
	struct layout *lay = sc->lay;
	sc->alpha = alpha;
	sc->beta = isnan(o->beta) ? fmax(0.0, 1.0 - alpha) : o->beta;
	sc->alpha_known = 1;
	for (long i = 0; i < lay->L; i++)
		sc->lambda_layer[i] = o->lines ? layers_lambda(i, lay->L, sc->alpha, sc->beta) : o->lambda;
	sc->lambda_outside = o->lines ? sc->alpha : o->lambda;
	for (size_t i = 0; i < lay->nt; i++) {
		struct tensor *t = &lay->t[i];
		t->lambda = t->block >= 0 ? sc->lambda_layer[t->block] : sc->lambda_outside;
		t->k_lambda = sc->divide_wsum ? t->lambda / sc->wsum : t->lambda;
	}
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
	scales_set_alpha(sc, sum / ((double)sc->lay->nmodels * mtl));
	return 0;
}
