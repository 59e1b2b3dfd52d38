/*
 * layers.h -- tensor name -> block index -> LiNeS scale.
 *
 * The block index of a tensor is found with the leftmost match of
 *     (^|\.)(layers|layer|h|blocks|block|resblocks|blk)\.([0-9]+)\.
 * or of a user pattern with exactly one capture group; a name that does
 * not match is outside the blocks (index -1).
 */
#ifndef LINES_LAYERS_H
#define LINES_LAYERS_H

#include <regex.h>

#include "internal.h"

#define LAYERS_MAX_INDEX 1000000L

struct layers {
	regex_t re;
	int group;       /* capture group holding the index          */
	int stack_group; /* capture group naming the stack, 0: the name
	                  * before the index is the stack            */
	long num_layers; /* from --num-layers, 0 = detect             */
	int compiled;
};

int layers_init(struct layers *ly, const struct lines_layer_opts *o, struct lines_error *err);
void layers_free(struct layers *ly);

/*
 * Block index of name, or -1 when the name is outside the blocks. Returns
 * LINES_EFORMAT (filling err, naming the tensor) when a user pattern
 * captured something that is not a number, or the index is too large.
 */
int layers_index(const struct layers *ly, const char *name, long *index, size_t *stack_off,
                 size_t *stack_len, struct lines_error *err);

/* Where the block index of NAME is written: 0 with [*off, *off + *len),
 * or -1 when NAME is outside the blocks. */
int layers_span(const struct layers *ly, const char *name, size_t *off, size_t *len);

/* lambda(i) = alpha + beta * t, t = i / (L - 1) (rounded first); alpha when
 * i < 0 or L == 1. */
double layers_lambda(long i, long L, double alpha, double beta);

/* With a schedule (sched not NULL, nsched >= 2): alpha + beta *
 * lines_gradient(sched, nsched, i / (L - 1)), t = 0 when L == 1; alpha when
 * i < 0. Without: layers_lambda(). */
double layers_lambda_at(long i, long L, double alpha, double beta, const double *sched,
                        size_t nsched);

#endif
