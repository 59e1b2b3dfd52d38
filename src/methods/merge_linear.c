/*
 * merge_linear.c -- task arithmetic (sum) and model soups (mean), with or
 * without LiNeS.
 *
 * Per element, with tau_i = theta_i - theta_0 in float32:
 *     sum:   theta = theta_0 + lambda * sum_i w_i tau_i
 *     mean:  theta = theta_0 + lambda * sum_i w_i tau_i / sum_i w_i
 * where lambda is --lambda, or lambda(block) with --lines. For mean the
 * 1 / sum(w) is folded into the scale the kernel multiplies by, so an
 * unweighted mean of BF16 models sums exact task vectors and rounds once.
 * The task vectors are float32; their weighted sum and the add-back are
 * float64 (see kernels.h for why). An F64 tensor written as F64 is
 * float64 throughout, the task vectors included (f64.h), as in every
 * method.
 *
 * The weights may differ between tensors (a configuration's gradients
 * and filters: tensor_w()); a mean then divides each tensor by the sum of
 * its own weights.
 *
 * Automatic alpha is ||sum_i tau_i|| / (N ||tau_MTL||). With equal
 * weights for the whole model it is known without reading anything
 * (1 / (N w) for sum, 1 for mean); otherwise a read-only norm pass runs
 * first. The norms are sums
 * in float64 over blocks of KERN_BLOCK elements, and the blocks are added
 * in output order by the consumer, so alpha does not depend on the number
 * of threads or the chunk size.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>

#include "f64.h"
#include "method.h"

/* The running sums of the norm pass: |s|, |t|, s^2, t^2. */
struct linear {
	double acc[4];
};

/* ---- the writing pass ------------------------------------------------------ */

/*
 * An F64 tensor written as F64 is computed in float64 end to end (f64.h):
 * tau_i = theta_i - theta_0, their weighted sum and the add-back in
 * double, with the kernels' order and FMAs, so --lambda 0 gives the
 * base's bytes. Portable C: the same on every instruction set.
 */
static void write_f64(const struct merge_ctx *p, const struct tensor *t, struct pipe_job *job,
                      size_t n)
{
	const double *w = tensor_w(p, t);
	for (size_t j = 0; j < n; j++) {
		double b = f64_load(job->in[0], j), acc = 0.0;
		for (unsigned i = 0; i < p->nmodels; i++) {
			double tau = f64_load(job->in[i + 1], j) - b;
			acc = i == 0 ? w[0] * tau : fma(w[i], tau, acc);
		}
		f64_finish(job->out, j, b, acc, t->k_lambda);
		for (unsigned v = 0; v < job->nvout; v++) /* a sweep: the same sum */
			f64_finish(job->vout[v], j, b, acc, pipe_job_k_lambda(job, v));
	}
}

/* A sweep's tiles: the decoded base and the weighted sum. */
struct sweep_tile {
	double acc[KERN_TILE];
	float b[KERN_TILE];
};

/*
 * A sweep: merge_lin's two halves (the same bits, kernels.h), the
 * weighted sum of the task vectors once per tile, then its finish with
 * every value's lambda.
 */
static void write_sweep(const struct merge_ctx *p, const struct tensor *t, struct pipe_job *job,
                        size_t n, struct sweep_tile *s)
{
	for (size_t j0 = 0; j0 < n; j0 += KERN_TILE) {
		size_t nn = n - j0 < KERN_TILE ? n - j0 : KERN_TILE;
		size_t in = j0 * t->unit_in, out = j0 * t->unit_out;
		p->k->decode(t->in_dt, job->in[0] + in, s->b, nn);
		for (unsigned i = 0; i < p->nmodels; i++)
			p->k->accum(t->in_dt, job->in[i + 1] + in, s->b, tensor_w(p, t)[i], s->acc, nn,
			            i == 0);
		p->k->finish(t->out_dt, job->out + out, s->b, s->acc, t->k_lambda, nn);
		for (unsigned v = 0; v < job->nvout; v++)
			p->k->finish(t->out_dt, job->vout[v] + out, s->b, s->acc,
			             pipe_job_k_lambda(job, v), nn);
	}
}
LINES_HOT static int write_work(struct merge_ctx *p, struct pipe_job *job, void *scratch, struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;

	if (f64_tensor(t)) {
		write_f64(p, t, job, n);
		return 0;
	}
	if (job->nvout) {
		write_sweep(p, t, job, n, scratch);
		return 0;
	}
	p->k->merge_lin(t->in_dt, (const void *const *)(job->in + 1), p->nmodels, job->in[0],
	                tensor_w(p, t), t->k_lambda, t->out_dt, job->out, n);
	return 0;
}

/* ---- the norm pass ----------------------------------------------------------- */
/*
 * The weights of the norm pass for tensor T: the run's, or with weights
 * per tensor its own, divided by their sum for a mean (then norm_done
 * does not divide: each tensor has its own sum). buf holds nmodels.
 */
static const double *norm_weights(const struct merge_ctx *p, const struct tensor *t, double *buf)
{
	if (!p->tensor_w || !p->sc->divide_wsum)
		return tensor_w(p, t);
	for (unsigned i = 0; i < p->nmodels; i++)
		buf[i] = t->w[i] / t->wsum;
	return buf;
}

/* norm_lin's sums for an F64 tensor, from the float64 task vectors: the
 * same lanes and blocks, nothing rounded to float32. */
static void norm_f64(const struct merge_ctx *p, struct pipe_job *job, size_t n, const double *w)
{
	for (unsigned b = 0; b < job->nblocks; b++) {
		struct kern_norms nm;
		size_t b0 = (size_t)b * KERN_BLOCK, b1 = b0 + KERN_BLOCK < n ? b0 + KERN_BLOCK : n;
		memset(&nm, 0, sizeof(nm));
		for (size_t j = b0; j < b1; j++) {
			double bv = f64_load(job->in[0], j), s = 0.0, t = 0.0;
			unsigned l = (unsigned)((j - b0) % KERN_LANES);
			for (unsigned i = 0; i < p->nmodels; i++) {
				double tau = f64_load(job->in[i + 1], j) - bv;
				s += tau;
				t += w[i] * tau;
			}
			if (!isfinite(s) || !isfinite(t))
				continue;
			nm.s1[l] += fabs(s), nm.t1[l] += fabs(t);
			nm.s2[l] += s * s, nm.t2[l] += t * t;
		}
		job->part[4 * b + 0] = kern_lane_sum(nm.s1);
		job->part[4 * b + 1] = kern_lane_sum(nm.t1);
		job->part[4 * b + 2] = kern_lane_sum(nm.s2);
		job->part[4 * b + 3] = kern_lane_sum(nm.t2);
	}
}

LINES_HOT static int norm_work(struct merge_ctx *p, struct pipe_job *job, void *scratch, struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	const struct kern *k = p->k;
	double *wbuf = scratch;
	float *bt = (float *)(void *)(wbuf + p->nmodels);
	const void **xs = (const void **)(bt + KERN_TILE);
	size_t n = (size_t)(job->u1 - job->u0);
	const double *w = norm_weights(p, t, wbuf);
	(void)err;

	if (f64_tensor(t)) {
		norm_f64(p, job, n, w);
		return 0;
	}
	for (unsigned b = 0; b < job->nblocks; b++) {
		struct kern_norms nm;
		size_t b0 = (size_t)b * KERN_BLOCK, b1 = b0 + KERN_BLOCK < n ? b0 + KERN_BLOCK : n;
		memset(&nm, 0, sizeof(nm));
		for (size_t j0 = b0; j0 < b1; j0 += KERN_TILE) {
			size_t nn = b1 - j0 < KERN_TILE ? b1 - j0 : KERN_TILE;
			k->decode(t->in_dt, job->in[0] + j0 * t->unit_in, bt, nn);
			for (unsigned m = 0; m < p->nmodels; m++)
				xs[m] = job->in[m + 1] + j0 * t->unit_in;
			k->norm_lin(t->in_dt, (const void *const *)xs, p->nmodels, bt, w, nn, &nm);
		}
		job->part[4 * b + 0] = kern_lane_sum(nm.s1);
		job->part[4 * b + 1] = kern_lane_sum(nm.t1);
		job->part[4 * b + 2] = kern_lane_sum(nm.s2);
		job->part[4 * b + 3] = kern_lane_sum(nm.t2);
	}
	return 0;
}

/* The sums per tensor (a stats pass: a partitioned run measures them per
 * part), added in output order when the pass is done. */
static int norm_reduce(struct merge_ctx *p, const struct pipe_job *job, struct lines_error *err)
{
	(void)err;
	norm_sums_tensor(p, job);
	return 0;
}

static int norm_done(struct merge_ctx *p, struct lines_error *err)
{
	struct linear *ln = p->state;
	norm_sums_total(p, ln->acc);
	double s = norm_sum_of(ln->acc, p->o->norm_p), t = norm_mtl_of(ln->acc, p->o->norm_p);

	if (p->sc->divide_wsum && !p->tensor_w) /* else divided per tensor */
		t /= fabs(p->wsum);
	return scales_from_norms(p->sc, s, t, 0, err);
}

/*
 * Automatic alpha = ||sum tau|| / (N ||tau_MTL||): with equal weights it is
 * 1 / (N |w|) for a sum and 1 for a mean, known before anything is read;
 * otherwise a norm pass measures it.
 */
static int linear_setup(struct merge_ctx *p, struct lines_error *err)
{
	const struct lines_merge_opts *o = p->o;
	int mean = p->sc->divide_wsum;

	RETURN_ERROR_IF(mean && !p->tensor_w && p->wsum == 0.0, err, LINES_EUSAGE, NULL, NULL,
	                "the weights of a mean must not sum to zero");
	for (size_t i = 0; i < p->nt && mean; i++)
		RETURN_ERROR_IF(p->t[i].merge && p->t[i].w && p->t[i].wsum == 0.0, err, LINES_EUSAGE,
		                NULL, p->t[i].name, "the weights of a mean sum to zero here");
	if (o->lines && o->alpha_auto && p->equal_weights) {
		RETURN_ERROR_IF(!mean && p->w[0] == 0.0, err, LINES_EUSAGE, NULL, NULL,
		                "with zero weights alpha cannot be set automatically; give --alpha");
		scales_auto_alpha(p->sc, mean ? 1.0 : 1.0 / ((double)p->nmodels * fabs(p->w[0])));
	}
	RETURN_ERROR_IF(o->lines && !p->sc->alpha_known && p->single_pass, err, LINES_EUSAGE, NULL,
	                NULL,
	                "standard input can be read only once, but automatic alpha with unequal "
	                "weights needs a norm pass before the writing pass: give that model as a "
	                "file, or give --alpha");
	if (o->lines && !p->sc->alpha_known) {
		struct pass *ps = passes_add(p->passes);
		RETURN_ERROR_IF(!(p->state = calloc(1, sizeof(struct linear))), err, LINES_ENOMEM, NULL,
		                NULL, "out of memory");
		ps->name = "norms";
		ps->part_block = 4;
		ps->scratch = p->nmodels * sizeof(double) + KERN_TILE * sizeof(float) +
		              p->nmodels * sizeof(void *);
		ps->want = want_merged;
		ps->work = norm_work;
		ps->reduce = norm_reduce;
		ps->done = norm_done;
		ps->stats = 1;
		p->sc->measured = 1;
	}
	struct pass *pw = passes_add(p->passes);
	pw->name = "write";
	pw->writes = 1;
	pw->want = want_all;
	pw->work = write_work;
	pw->sweeps = 1; /* the weighted sum once, finished per value */
	pw->scratch = sizeof(struct sweep_tile);
	return 0;
}

static void linear_free(struct merge_ctx *p)
{
	free(p->state);
	p->state = NULL;
}

const struct method method_sum = {
	.name = "sum",
	.summary = "task arithmetic: theta_0 + lambda * sum_i w_i tau_i",
	.flags = METHOD_USES_WEIGHTS | METHOD_LINEAR | METHOD_PART | METHOD_TENSOR_W,
	.setup = linear_setup,
	.free = linear_free,
};

const struct method method_mean = {
	.name = "mean",
	.summary = "weighted mean (model soup): theta_0 + lambda * sum_i w_i tau_i / sum_i w_i",
	.flags = METHOD_USES_WEIGHTS | METHOD_LINEAR | METHOD_DIVIDES_WSUM | METHOD_PART | METHOD_TENSOR_W,
	.setup = linear_setup,
	.free = linear_free,
};
