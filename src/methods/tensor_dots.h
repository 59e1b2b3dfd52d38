/*
 * tensor_dots.h -- per-tensor statistics: dot products and squared norms
 * of K vectors, one set per merged tensor, measured in a read-only pass.
 *
 * A method names its K vectors by a load() callback (element j of vector
 * k of a tensor, in float64: a model, a task vector, ...) and the dots it
 * wants as pairs (i, j): sum_e v_i[e] v_j[e], a squared norm when i == j.
 * The pass's work() sums each KERN_BLOCK block of a job (blocks start at
 * the tensor's first element) in float64, element e of the block into
 * lane e mod KERN_LANES, then the lanes by kern_lane_sum() (the norms'
 * order, which vectorises); its reduce()
 * adds the blocks in output order into the table. So every value is the
 * same for any -j, --chunk or instruction set. NaN and infinities are
 * summed as they are (a tensor with a NaN has NaN dots).
 *
 * The table holds npairs doubles per tensor of the layout (nt entries,
 * like TIES's per-tensor thresholds): it grows with the tensor count,
 * never with a tensor's size.
 *
 * The pass's callbacks find the table through the merge context: the
 * method's state (ctx->state) must begin with its struct tdots.
 */
#ifndef LINES_TENSOR_DOTS_H
#define LINES_TENSOR_DOTS_H

#include "method.h"

#define TDOTS_MAX_K 8
#define TDOTS_MAX_PAIRS 36

/* Elements [j0, j0 + n) of the K vectors of tensor t into v[0..K), from a
 * job's input bytes; tmp is room for 2 KERN_TILE floats (the second tile
 * for the base's float32 values: tile_load(), tile_tau()). */
typedef void tdots_load_fn(const struct merge_ctx *c, const struct tensor *t,
                           const struct pipe_job *job, size_t j0, size_t n, double *const *v,
                           float *tmp);

struct tdots {
	unsigned k, npairs;
	unsigned char pair[TDOTS_MAX_PAIRS][2];
	tdots_load_fn *load;
	size_t nt;
	double *dot; /* nt * npairs, output order; complete once measured */
	int measured;
};

/* Make the table for the tensors of c: k vectors, the pairs (npairs of
 * them, each < k). 0, or LINES_ENOMEM. */
int tdots_init(struct tdots *d, const struct merge_ctx *c, unsigned k,
               const unsigned char (*pairs)[2], unsigned npairs, tdots_load_fn *load,
               struct lines_error *err);
void tdots_free(struct tdots *d);
/* A method's free() whose state begins with its struct tdots: the table,
 * then the state. */
void tdots_method_free(struct merge_ctx *c);

/* Add the read-only pass, named name, over the merged tensors. Refused
 * (LINES_EUSAGE) when an input can be read only once. */
int tdots_add_pass(struct merge_ctx *c, const char *name, const char *who,
                   struct lines_error *err);

/* The writing pass after the dots (work on want_all tensors, scratch
 * bytes a worker); LINES_EUNSUPPORTED when there are too many passes. */
int tdots_add_write(struct merge_ctx *c,
                    int (*work)(struct merge_ctx *, struct pipe_job *, void *, struct lines_error *),
                    size_t scratch, struct lines_error *err);
/* A two-vector method's entry of a tensor in the manifest and --json:
 * its dots d = {v0 . v1, |v0|^2, |v1|^2}, whether it fell back to lerp,
 * and the coefficients s0, s1, under key. */
void tdots_report_pair(json_t *e, const char *key, const double *d, int lerp, double s0,
                       double s1);

/* The sums of the pairs over elements [b0, b1) of a job (relative to its
 * first), elements in order, into part[0..npairs): what the pass sums per
 * block, and what a method with --per-row sums per row. v holds k tiles
 * of KERN_TILE doubles, tmp 2 KERN_TILE floats. */
void tdots_range(const struct merge_ctx *c, const struct tdots *d, const struct tensor *t,
                 const struct pipe_job *job, size_t b0, size_t b1, double *const *v, float *tmp,
                 double *part);
/* The scratch of tdots_range(): k tiles of doubles, then two of floats;
 * tdots_tiles() points v[0..k) at the tiles and returns the floats. */
size_t tdots_scratch(unsigned k);
float *tdots_tiles(const struct tdots *d, void *scratch, double **v);

/* --per-row: the elements of a row of tensor t, the vectors whose angles
 * are taken (all but the last index shared; a tensor of rank 0 or 1 is
 * one row). A pass with rows (pass.rows) gets whole rows in every job. */
static inline uint64_t tdots_row_len(const struct tensor *t)
{
	if (t->rank >= 2 && t->shape[t->rank - 1])
		return t->shape[t->rank - 1];
	return t->nelem ? t->nelem : 1;
}

/* The npairs values of tensor i, in the order of the pairs. */
static inline const double *tdots_of(const struct tdots *d, size_t i)
{
	return d->dot + i * d->npairs;
}

#endif
