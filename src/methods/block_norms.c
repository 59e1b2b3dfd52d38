/*
 * block_norms.c -- where fine-tuning moved the weights: per block (and
 * outside the blocks), the L1 and L2 norms of every task vector and of the
 * base, in one read-only pass. `lines inspect --norms` draws them.
 *
 * Sums are float64 per block of elements, reduced in output order, like
 * every norm of lines: the same for any -j or --chunk.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>

#include "method.h"

static struct lines_block_norms *BN(struct merge_ctx *p) { return p->state; }

/* part per KERN_BLOCK: base |b|, b^2, then per model |tau|, tau^2 */
LINES_HOT static int bn_work(struct merge_ctx *p, struct pipe_job *job, void *scratch, struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	unsigned nx = p->nmodels, w = 2 + 2 * nx;
	float *bt = scratch, *xt = bt + KERN_TILE;
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;

	for (unsigned b = 0; b < job->nblocks; b++) {
		size_t b0 = (size_t)b * KERN_BLOCK, b1 = b0 + KERN_BLOCK < n ? b0 + KERN_BLOCK : n;
		double *out = job->part + (size_t)w * b;
		double acc[KERN_LANES][2];
		memset(acc, 0, sizeof(acc));
		for (size_t j0 = b0; j0 < b1; j0 += KERN_TILE) {
			size_t nn = b1 - j0 < KERN_TILE ? b1 - j0 : KERN_TILE;
			p->k->decode(t->in_dt, job->in[0] + j0 * t->unit_in, bt, nn);
			for (size_t j = 0; j < nn; j++)
				if (isfinite(bt[j])) {
					acc[(j0 - b0 + j) % KERN_LANES][0] += fabs((double)bt[j]);
					acc[(j0 - b0 + j) % KERN_LANES][1] += (double)bt[j] * bt[j];
				}
		}
		double l1[KERN_LANES], l2[KERN_LANES];
		for (int l = 0; l < KERN_LANES; l++)
			l1[l] = acc[l][0], l2[l] = acc[l][1];
		out[0] = kern_lane_sum(l1);
		out[1] = kern_lane_sum(l2);
		for (unsigned i = 0; i < nx; i++) {
			memset(acc, 0, sizeof(acc));
			for (size_t j0 = b0; j0 < b1; j0 += KERN_TILE) {
				size_t nn = b1 - j0 < KERN_TILE ? b1 - j0 : KERN_TILE;
				p->k->decode(t->in_dt, job->in[0] + j0 * t->unit_in, bt, nn);
				p->k->decode(t->in_dt, job->in[i + 1] + j0 * t->unit_in, xt, nn);
				for (size_t j = 0; j < nn; j++) {
					float tau = xt[j] - bt[j];
					if (isfinite(tau)) {
						acc[(j0 - b0 + j) % KERN_LANES][0] += fabs((double)tau);
						acc[(j0 - b0 + j) % KERN_LANES][1] += (double)tau * tau;
					}
				}
			}
			for (int l = 0; l < KERN_LANES; l++)
				l1[l] = acc[l][0], l2[l] = acc[l][1];
			out[2 + 2 * i] = kern_lane_sum(l1);
			out[3 + 2 * i] = kern_lane_sum(l2);
		}
	}
	return 0;
}

static int bn_reduce(struct merge_ctx *p, const struct pipe_job *job, struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	unsigned nx = p->nmodels, w = 2 + 2 * nx;
	size_t row = t->block < 0 ? (size_t)p->L : (size_t)t->block;
	(void)err;
	for (unsigned b = 0; b < job->nblocks; b++) {
		const double *in = job->part + (size_t)w * b;
		BN(p)->base_l1[row] += in[0];
		BN(p)->base_l2[row] += in[1];
		for (unsigned i = 0; i < nx; i++) {
			BN(p)->tau_l1[row * nx + i] += in[2 + 2 * i];
			BN(p)->tau_l2[row * nx + i] += in[3 + 2 * i];
		}
	}
	BN(p)->elements[row] += job->u1 - job->u0;
	return 0;
}

static int bn_done(struct merge_ctx *p, struct lines_error *err)
{
	(void)err;
	for (size_t r = 0; r <= (size_t)p->L; r++) {
		BN(p)->base_l2[r] = sqrt(BN(p)->base_l2[r]);
		for (unsigned i = 0; i < p->nmodels; i++)
			BN(p)->tau_l2[r * p->nmodels + i] = sqrt(BN(p)->tau_l2[r * p->nmodels + i]);
	}
	return 0;
}

static int bn_setup(struct merge_ctx *p, struct lines_error *err)
{
	size_t rows = (size_t)p->L + 1;
	struct lines_block_norms *bn = calloc(1, sizeof(*bn));
	RETURN_ERROR_IF(!bn, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	p->state = bn;
	bn->num_layers = p->L;
	bn->nmodels = p->nmodels;
	bn->tau_l1 = calloc(rows * p->nmodels, sizeof(double));
	bn->tau_l2 = calloc(rows * p->nmodels, sizeof(double));
	bn->base_l1 = calloc(rows, sizeof(double));
	bn->base_l2 = calloc(rows, sizeof(double));
	bn->elements = calloc(rows, sizeof(uint64_t));
	RETURN_ERROR_IF(!bn->tau_l1 || !bn->tau_l2 || !bn->base_l1 || !bn->base_l2 || !bn->elements,
	                err, LINES_ENOMEM, NULL, NULL, "out of memory");
	struct pass *ps = passes_add(p->passes);
	ps->name = "norms";
	ps->part_block = 2 + 2 * p->nmodels;
	ps->scratch = 2 * KERN_TILE * sizeof(float);
	ps->want = want_merged;
	ps->work = bn_work;
	ps->reduce = bn_reduce;
	ps->done = bn_done;
	return 0;
}

static void bn_free(struct merge_ctx *p)
{
	struct lines_block_norms *bn = p->state;
	if (!bn)
		return;
	free(bn->tau_l1);
	free(bn->tau_l2);
	free(bn->base_l1);
	free(bn->base_l2);
	free(bn->elements);
	free(bn);
	p->state = NULL;
}

const struct lines_block_norms *block_norms_of(const struct merge_ctx *c) { return c->state; }

/* Not a merge: lines inspect --norms runs it instead of a method. */
const struct method method_block_norms = {
	.name = "norms",
	.summary = "per-block norms of the task vectors and the base (nothing is written)",
	.setup = bn_setup,
	.free = bn_free,
};
