/*
 * merge_consensus.c -- Consensus Task Arithmetic (Wang et al., ICML 2024,
 * "Localizing Task Information for Improved Model Merging and
 * Compression"): task arithmetic kept only where the TALL masks of at
 * least k tasks agree.
 *
 * Per element, with b the base's value, tau_t = theta_t - b in float32
 * (float64 for F64) and the rest in float64, models in order:
 *     c_t   = w_t tau_t                    (the weighted task vector)
 *     mtl   = c_1 + c_2 + ... + c_N        (task arithmetic, plain adds)
 *     m_t   = |c_t| > lambda_t |mtl - c_t|  (TALL mask of task t)
 *     keep  = m_1 + ... + m_N >= k         (the consensus mask)
 *     theta = fma(lambda, mtl, b) where keep, or where mtl is not finite
 *             b (the base's value) elsewhere
 * lambda is --lambda or LiNeS's lambda(block); lambda_t is --tall-lambda.
 * The mask is strict (>) as in the reference code (nik-dim/tall_masks,
 * generate_task_masks): a task whose tau_t is 0 never votes. A NaN or
 * infinite mtl is written as it is, so a NaN or infinity of an input
 * reaches the output as with sum (the reference's mask * mtl would write
 * NaN for a dropped infinity). The result is rounded once to the output
 * dtype. Portable C on tiles decoded and encoded by the kernel table
 * (float32 values: one loop over the elements in GNU C's vectors, cs_vec,
 * with cs_elem its reference): the same bytes on every instruction set.
 *
 * Automatic alpha is ||sum_t tau_t|| / (N ||tau_cons||), tau_cons the
 * masked vector above (keep ? mtl : 0): the masks are not linear in the
 * inputs, so a read-only norm pass measures it before the writing pass.
 *
 * With --consensus-over ties, mtl is TIES's merged vector instead: the
 * method runs TIES's passes (merge_ties.c, which applies the masks when
 * o->method is consensus), and this file only reports.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>

#include "method.h"

/* Elements a tile holds: its arrays fit in L1 with four models (with
 * KERN_TILE's they do not, and the loops wait on L2) */
#define CS_TILE 256

/* A worker's tiles: the base, the weighted task vectors (nmodels tiles,
 * after the struct), their sum, the plain sum, float32 room. */
struct cs_scratch {
	double b[CS_TILE], mtl[CS_TILE], s[CS_TILE], out[CS_TILE];
	float f[CS_TILE], bf[CS_TILE]; /* a model's values, the base's */
	double votes[CS_TILE]; /* whole numbers, of the width of the other tiles */
	double c[]; /* c[t * CS_TILE + j] */
};

/* The running sums of the norm pass (|s|, |t|, s^2, t^2), and what the
 * writing pass kept and dropped (elements whose sum is finite). */
struct cs_state {
	double acc[4];
	uint64_t kept, dropped;
	int written;
};

static double tall_lambda(const struct lines_merge_opts *o, unsigned t)
{
	return o->tall_lambdas ? o->tall_lambdas[t] : o->tall_lambda;
}

/*
 * s->b, s->c (the weighted task vectors), s->mtl (their sum) and with
 * norms s->s (the plain sum of the task vectors, for the norm pass) for
 * elements [j0, j0 + n) of the job.
 */
static void cs_load(const struct merge_ctx *p, const struct tensor *t, const struct pipe_job *job,
                    size_t j0, size_t n, struct cs_scratch *s, int norms)
{
	size_t off = j0 * t->unit_in;
	tile_load(p->k, t->in_dt, job->in[0] + off, n, s->b, s->bf);
	for (unsigned i = 0; i < p->nmodels; i++) {
		double *c = s->c + (size_t)i * CS_TILE, w = p->w[i];
		tile_tau(p->k, t->in_dt, job->in[i + 1] + off, n, s->b, s->bf, c, s->f);
		if (norms)
			for (size_t j = 0; j < n; j++)
				s->s[j] = i == 0 ? c[j] : s->s[j] + c[j];
		for (size_t j = 0; j < n; j++) { /* c holds tau, then w tau */
			c[j] *= w;
			s->mtl[j] = i == 0 ? c[j] : s->mtl[j] + c[j];
		}
	}
}

/* s->votes[j]: the TALL masks that hold element j of the tile (model by
 * model over the tile, so that the loops vectorise). An element is kept,
 * written from the sum, where at least k masks hold it or where the sum
 * is not finite: both passes write that test out without a branch. */
static void cs_votes(const struct merge_ctx *p, struct cs_scratch *s, size_t n)
{
	for (size_t j = 0; j < n; j++)
		s->votes[j] = 0.0;
	for (unsigned i = 0; i < p->nmodels; i++) {
		const double *c = s->c + (size_t)i * CS_TILE;
		double lam = tall_lambda(p->o, i);
		for (size_t j = 0; j < n; j++)
			s->votes[j] += fabs(c[j]) > lam * fabs(s->mtl[j] - c[j]) ? 1.0 : 0.0;
	}
}

#if defined(__GNUC__)
/* Models whose weighted task vectors cs_vec() keeps in registers */
#define CS_VMAX 8

/* Whether the tiles of t take cs_fused(): float32 values in and out (F64
 * takes the loops above, in both passes), and a few models. */
static int cs_fuses(const struct merge_ctx *p, const struct tensor *t)
{
	return t->in_dt != DT_F64 && t->out_dt != DT_F64 && p->nmodels <= CS_VMAX;
}

/*
 * One element of a tile that cs_fused() decoded, the reference for
 * cs_vec(): cs_load's, cs_votes' and the writing pass's steps (norms: the
 * norm pass's), in the same order. The output's value rounded to float32
 * (a NaN as the default quiet NaN, as tile_store() rounds it) goes to
 * s->f[j]; with norms, the plain sum to s->s[j] and u to s->out[j].
 */
static inline void cs_elem(const struct merge_ctx *p, const struct tensor *t, struct cs_scratch *s,
                           const float *f, size_t j, int norms, uint32_t *kept, uint32_t *dropped)
{
	double c[CS_VMAX], sum = 0.0, mtl = 0.0, votes = 0.0;
	for (unsigned i = 0; i < p->nmodels; i++) {
		double tau = (double)(f[(size_t)i * CS_TILE + j] - s->bf[j]);
		sum = i == 0 ? tau : sum + tau;
		c[i] = tau * p->w[i];
		mtl = i == 0 ? c[i] : mtl + c[i];
	}
	for (unsigned i = 0; i < p->nmodels; i++)
		votes += fabs(c[i]) > tall_lambda(p->o, i) * fabs(mtl - c[i]) ? 1.0 : 0.0;
	int fin = isfinite(mtl) != 0, keep = !fin | (votes >= p->o->consensus_k);
	if (norms) {
		s->s[j] = sum;
		s->out[j] = keep ? mtl : 0.0;
		return;
	}
	double b = s->bf[j], o = keep ? fma(t->lambda, mtl, b) : b;
	*kept += (uint32_t)(fin & keep);
	*dropped += (uint32_t)!keep;
	f32_store(&s->f[j], o);
}

/* cs_vec_8() and cs_vec_4(): merge_consensus_vec.h */
#define KV_BODY "merge_consensus_vec.h"
#include "kv_both.h"
/* cs_vec() at the width of struct kern's wide */
#define cs_vec(p, ...) KV_CALL((p)->k->wide, cs_vec, p, __VA_ARGS__)

/* Elements [j0, j0 + n) of the job: cs_vec() on the first n8 (a
 * multiple of 8) and cs_elem() on the others, from the base's values
 * (s->bf) and the models' (f), float32 that the kernels decode; or, for
 * BF16 on a little-endian machine, cs_vec() decodes its elements itself
 * and the kernels only the others. */
static inline __attribute__((always_inline)) void
cs_fused_nm(const struct merge_ctx *p, const struct tensor *t, const struct pipe_job *job, size_t j0,
            size_t n, struct cs_scratch *s, int norms, uint32_t *kept, uint32_t *dropped,
            const unsigned nmc)
{
	size_t n8 = n & ~(size_t)7;
	float *f = (float *)s->c; /* nmodels tiles of float32 in those of float64 */
	const unsigned char *raw[CS_VMAX + 1];
	int bf16 = tile_decode_f32(p, t, job, j0, n, p->nmodels, raw, s->bf, f, CS_TILE);
	if (bf16 && norms)
		cs_vec(p, t, s, f, raw, n8, 1, NULL, NULL, nmc);
	else if (bf16)
		cs_vec(p, t, s, f, raw, n8, 0, kept, dropped, nmc);
	else if (norms)
		cs_vec(p, t, s, f, NULL, n8, 1, NULL, NULL, nmc);
	else
		cs_vec(p, t, s, f, NULL, n8, 0, kept, dropped, nmc);
	for (size_t j = n8; j < n; j++)
		cs_elem(p, t, s, f, j, norms, kept, dropped);
}

/* cs_fused_nm() with the number of models a constant for 2, 3 or 4
 * (KV_NM_CONST): the loops over the models unrolled and c[] in
 * registers, from an eighth to a quarter less CPU time than with a
 * variable (consensus on four models, AVX-512 and AVX2) */
static void cs_fused(const struct merge_ctx *p, const struct tensor *t, const struct pipe_job *job,
                     size_t j0, size_t n, struct cs_scratch *s, int norms, uint32_t *kept,
                     uint32_t *dropped)
{
	KV_NM_CONST(p->nmodels, cs_fused_nm, p, t, job, j0, n, s, norms, kept, dropped);
}
#endif

/* ---- the writing pass ------------------------------------------------------ */
/* The tile's output; part[0] += the finite elements kept, part[1] += those dropped. */
static void cs_tile(const struct merge_ctx *p, const struct tensor *t, const struct pipe_job *job,
                    size_t j0, size_t n, struct cs_scratch *s)
{
	uint32_t kept = 0, dropped = 0;
	double k = p->o->consensus_k;
#if defined(__GNUC__)
	if (cs_fuses(p, t)) {
		cs_fused(p, t, job, j0, n, s, 0, &kept, &dropped);
		job->part[0] += (double)kept, job->part[1] += (double)dropped; /* exact */
		p->k->encode(t->out_dt, s->f, job->out + j0 * t->unit_out, n);
		return;
	}
#endif
	cs_load(p, t, job, j0, n, s, 0);
	cs_votes(p, s, n);
	/* every fma computed, then chosen */
	for (size_t j = 0; j < n; j++)
		s->out[j] = fma(t->lambda, s->mtl[j], s->b[j]);
	for (size_t j = 0; j < n; j++) {
		int fin = isfinite(s->mtl[j]) != 0, keep = !fin | (s->votes[j] >= k);
		s->out[j] = keep ? s->out[j] : s->b[j];
		kept += (uint32_t)(fin & keep);
		dropped += (uint32_t)!keep;
	}
	job->part[0] += (double)kept, job->part[1] += (double)dropped; /* exact */
	tile_store(p->k, t->out_dt, s->out, n, job->out + j0 * t->unit_out, s->f);
}

LINES_HOT static int cs_work(struct merge_ctx *p, struct pipe_job *job, void *scratch, struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;
	job->part[0] = job->part[1] = 0.0;
	for (size_t j0 = 0; j0 < n; j0 += CS_TILE)
		cs_tile(p, t, job, j0, n - j0 < CS_TILE ? n - j0 : CS_TILE, scratch);
	return 0;
}

/* ---- the norm pass of automatic alpha ----------------------------------------- */
/*
 * Per block of KERN_BLOCK elements (aligned to the tensor's start, so the
 * sums do not depend on the chunking), with s = sum_t tau_t and
 * u = tau_cons: |s|, |u|, s^2 and u^2, elements in order, leaving out
 * those where s or u is not finite. The consumer adds the blocks in order.
 */
static void cs_norm_tile(const struct merge_ctx *p, struct cs_scratch *s, size_t n,
                         struct norm_lanes *l)
{
	double k = p->o->consensus_k;
	cs_votes(p, s, n);
	for (size_t j = 0; j < n; j++) { /* u, in the output's tile */
		int keep = !isfinite(s->mtl[j]) | (s->votes[j] >= k);
		s->out[j] = keep ? s->mtl[j] : 0.0;
	}
	norm_lanes_add(p->k->wide, l, s->s, s->out, n);
}

LINES_HOT static int cs_norm_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                        struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;
	for (unsigned blk = 0; blk < job->nblocks; blk++) {
		double *part = job->part + 4 * blk;
		size_t b0 = (size_t)blk * KERN_BLOCK, b1 = b0 + KERN_BLOCK < n ? b0 + KERN_BLOCK : n;
		struct norm_lanes l = {0};
		for (size_t j0 = b0; j0 < b1; j0 += CS_TILE) {
			size_t nn = b1 - j0 < CS_TILE ? b1 - j0 : CS_TILE;
#if defined(__GNUC__)
			if (cs_fuses(p, t)) {
				struct cs_scratch *s = scratch;
				cs_fused(p, t, job, j0, nn, s, 1, NULL, NULL);
				norm_lanes_add(p->k->wide, &l, s->s, s->out, nn);
				continue;
			}
#endif
			cs_load(p, t, job, j0, nn, scratch, 1);
			cs_norm_tile(p, scratch, nn, &l);
		}
		norm_lanes_fold(part, &l);
	}
	return 0;
}

static int cs_write_reduce(struct merge_ctx *p, const struct pipe_job *job,
                           struct lines_error *err)
{
	struct cs_state *st = p->state;
	(void)err;
	st->kept += (uint64_t)job->part[0];
	st->dropped += (uint64_t)job->part[1];
	return 0;
}

static int cs_write_done(struct merge_ctx *p, struct lines_error *err)
{
	struct cs_state *st = p->state;
	(void)err;
	st->written = 1;
	return 0;
}

static int cs_norm_reduce(struct merge_ctx *p, const struct pipe_job *job, struct lines_error *err)
{
	struct cs_state *nm = p->state;
	(void)err;
	norm_sums_add(nm->acc, job);
	return 0;
}

/* The masks may drop every element: alpha 1 with a warning then. */
static int cs_norm_done(struct merge_ctx *p, struct lines_error *err)
{
	const struct cs_state *nm = p->state;
	return norm_sums_alpha(p, nm->acc, 1, err);
}

static size_t cs_scratch_size(const struct merge_ctx *p)
{
	return sizeof(struct cs_scratch) + (size_t)p->nmodels * CS_TILE * sizeof(double);
}

static int cs_add_norms(struct merge_ctx *p, struct lines_error *err)
{
	RETURN_ERROR_IF(p->single_pass, err, LINES_EUSAGE, NULL, NULL,
	                "standard input can be read only once, but automatic alpha for -m consensus "
	                "needs a norm pass before the writing pass: give that model as a file, or "
	                "give --alpha");
	struct pass *ps = passes_add(p->passes);
	ps->name = "norms";
	ps->part_block = 4;
	ps->scratch = cs_scratch_size(p);
	ps->want = want_merged;
	ps->work = cs_norm_work;
	ps->reduce = cs_norm_reduce;
	ps->done = cs_norm_done;
	p->sc->measured = 1;
	return 0;
}

static int cs_check(const struct lines_merge_opts *o, struct lines_error *err)
{
	RETURN_ERROR_IF(o->consensus_k > o->nmodels, err, LINES_EUSAGE, NULL, NULL,
	                "--consensus-k %u is more than the %zu model%s: nothing would be kept",
	                o->consensus_k, o->nmodels, o->nmodels == 1 ? "" : "s");
	for (size_t i = 0; i < (o->tall_lambdas ? o->nmodels : 1); i++) {
		double l = tall_lambda(o, (unsigned)i);
		RETURN_ERROR_IF(!(l >= 0 && isfinite(l)), err, LINES_EUSAGE, NULL, NULL,
		                "--tall-lambda must be finite and at least 0");
	}
	return 0;
}

static int cs_setup(struct merge_ctx *p, struct lines_error *err)
{
	if (p->o->consensus_ties) /* TIES's passes, with the masks (merge_ties.c) */
		return method_ties.setup(p, err);
	RETURN_ERROR_IF(!(p->state = calloc(1, sizeof(struct cs_state))), err, LINES_ENOMEM, NULL,
	                NULL, "out of memory");
	/* where mtl is not finite it is written: a non-finite tau_t (or w_t tau_t)
	 * or base makes it NaN or infinite */
	p->nonfinite_out = 1;
	if (p->o->lines && p->o->alpha_auto)
		FORWARD_IF_ERROR(cs_add_norms(p, err));
	struct pass *pw = passes_add(p->passes);
	pw->name = "write";
	pw->writes = 1;
	pw->want = want_all;
	pw->work = cs_work;
	pw->part_job = 2;
	pw->reduce = cs_write_reduce;
	pw->done = cs_write_done;
	pw->scratch = cs_scratch_size(p);
	return 0;
}

static void cs_free(struct merge_ctx *p)
{
	if (p->o->consensus_ties) {
		method_ties.free(p);
		return;
	}
	free(p->state);
	p->state = NULL;
}

/* {k, over, tall_lambda, kept, dropped}: the counts after a run, else null */
static json_t *cs_report(const struct merge_ctx *c)
{
	const struct cs_state *st = c->o->consensus_ties ? NULL : c->state;
	uint64_t kept = st ? st->kept : 0, dropped = st ? st->dropped : 0;
	int ran = c->o->consensus_ties ? ties_consensus_counts(c, &kept, &dropped)
	                               : st && st->written;
	/* over TIES: TIES's own report (density, trim, majority, thresholds) */
	json_t *m = c->o->consensus_ties ? method_ties.report(c) : json_object(), *l = json_array();
	json_object_set_new(m, "k", json_integer(c->o->consensus_k));
	json_object_set_new(m, "over", json_string(c->o->consensus_ties ? "ties" : "ta"));
	for (unsigned i = 0; i < c->nmodels; i++)
		json_array_append_new(l, json_num(tall_lambda(c->o, i)));
	json_object_set_new(m, "tall_lambda", l);
	json_object_set_new(m, "kept", ran ? json_integer((json_int_t)kept) : json_null());
	json_object_set_new(m, "dropped", ran ? json_integer((json_int_t)dropped) : json_null());
	return m;
}

/* lines.tall_lambda: one number, or one per model */
static void cs_meta(const struct merge_ctx *c,
                    void (*put)(void *arg, const char *key, const char *value), void *arg)
{
	char v[32];
	unsigned n = c->o->tall_lambdas ? c->nmodels : 1;
	char *list = malloc((size_t)n * 32);
	snprintf(v, sizeof(v), "%u", c->o->consensus_k);
	put(arg, "lines.consensus_k", v);
	if (!list)
		return;
	list[0] = '\0';
	for (unsigned i = 0; i < n; i++) {
		lines_fmt_double(v, sizeof(v), tall_lambda(c->o, i));
		strcat(strcat(list, i ? "," : ""), v);
	}
	put(arg, "lines.tall_lambda", list);
	free(list);
	if (c->o->consensus_ties) {
		put(arg, "lines.consensus_over", "ties");
		method_ties.meta(c, put, arg);
	}
}

static void cs_report_tensor(const struct merge_ctx *c, size_t i, json_t *e)
{
	if (c->o->consensus_ties)
		method_ties.report_tensor(c, i, e);
}

const struct method method_consensus = {
	.name = "consensus",
	.summary = "task arithmetic where at least k TALL masks agree (Consensus TA)",
	/* density, trim and normalize with --consensus-over ties only (the
	 * command line checks that) */
	.flags = METHOD_USES_WEIGHTS | METHOD_USES_CONSENSUS | METHOD_USES_DENSITY |
	         METHOD_USES_TRIM | METHOD_USES_NORMALIZE,
	.check = cs_check,
	.setup = cs_setup,
	.meta = cs_meta,
	.report = cs_report,
	.report_tensor = cs_report_tensor,
	.free = cs_free,
};
