/*
 * scales.h -- the weights and the scale of every tensor: --lambda, or
 * LiNeS's lambda(block) = alpha + beta * block / (L - 1) once alpha is
 * known.
 *
 * A scale set is made before the methods set up; a method that measures
 * alpha (a norm pass) calls scales_from_norms() when it is done. That is
 * the only way a method changes anything outside its own state.
 */
#ifndef LINES_SCALES_H
#define LINES_SCALES_H

#include "layout.h"

struct scales {
	const struct lines_merge_opts *o;
	struct layout *lay;
	double *w;   /* N weights */
	double wsum; /* their sum */
	int equal_weights;
	int divide_wsum; /* the kernel divides by the sum of the weights (mean) */

	int alpha_known;
	double alpha, beta;
	double *lambda_layer; /* L entries: the joint ramp, or the one stack's */
	double *lambda_stacks; /* the stacks' L entries each, one after the other */
	double lambda_outside;
	/* set when a pass measures alpha: the header then writes alpha with a
	 * fixed width, so the header the plan announces has its final length */
	int measured;
	int have_norms;
	int warned_zero; /* said that the task vectors are zero */
	double norm_sum, norm_mtl; /* ||tau_1 + ... + tau_N||_p and ||tau_MTL||_p */
};

/* The weights from the options (all 1 without -w); lambdas not yet set. */
int scales_init(struct scales *sc, const struct lines_merge_opts *o, struct layout *lay,
                int divide_wsum, struct lines_error *err);
void scales_free(struct scales *sc);

/* Set alpha, beta and every tensor's lambda. */
void scales_set_alpha(struct scales *sc, double alpha);

/* Set an automatic alpha: as scales_set_alpha(), with a warning when it
 * leaves no depth scaling (alpha >= 1 with the default beta) or is far
 * outside (0, 1]. */
void scales_auto_alpha(struct scales *sc, double alpha);

/*
 * After a pass measured the norms: record them and, with automatic alpha,
 * set alpha = sum / (N mtl). zero_ok: a zero tau_MTL gives alpha 1 with a
 * warning (a non-linear method's kept entries can all vanish); otherwise
 * it is an error unless every task vector is zero too.
 */
int scales_from_norms(struct scales *sc, double sum, double mtl, int zero_ok,
                      struct lines_error *err);

#endif
