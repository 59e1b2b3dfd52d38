/*
 * merge_model_stock.c -- Model Stock (Jang et al., 2024), as mergekit's
 * model_stock computes it: the mean of the fine-tunes, pulled toward the
 * base by the angle between their task vectors.
 *
 * Per tensor, flattened (mergekit's default filter_wise: false), with the
 * N >= 2 task vectors tau_i = theta_i - b rounded to float32 (float64 for
 * F64) and everything else in float64:
 *     cos_ij = (tau_i . tau_j) / max(|tau_i| |tau_j|, 1e-6), clamped to [-1, 1]
 *     cos    = the mean of cos_ij over the pairs i < j
 *     t      = N cos / (1 + (N - 1) cos)
 *     theta  = b + lambda t (tau_1 + ... + tau_N) / N     fma(lambda, t m, b)
 * which is mergekit's t * mean(theta_i) + (1 - t) * b in exact arithmetic;
 * lambda is 1, --lambda, or LiNeS's lambda(block). The dots come from a
 * read-only pass (tensor_dots.h), so every tensor's t is the same for any
 * -j, --chunk or instruction set. A tensor whose 1 + (N - 1) cos is 0,
 * or within MS_SINGULAR of it (t infinite, or a value of 1e9 and more that
 * rounding chose: mergekit writes NaN or that value), is an error before
 * anything is written. Automatic alpha, ||sum_i tau_i|| / (N ||t m||), is in the L2
 * norm, from the same dots (sum_ij tau_i . tau_j is ||sum tau||^2).
 *
 * --per-row (mergekit's filter_wise: true): the same per row (the
 * elements that share all but their last index, tdots_row_len()), in a
 * writing pass of whole rows (pass.rows) that sums each row's dots before
 * writing it; no dots pass. A row with such a t stops the run.
 */
#include "config.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "method.h"
#include "tensor_dots.h"

struct stock {
	struct tdots d; /* first: tensor_dots.h; with --per-row, a tensor's
	                 * smallest and largest row t and its count of rows */
	unsigned char pairs[TDOTS_MAX_PAIRS][2];
	double acc[2]; /* --per-row, automatic alpha: ||sum tau||^2, ||t mean||^2 */
};

struct ms_scratch {
	double b[KERN_TILE], s[KERN_TILE], v[KERN_TILE];
	float f[KERN_TILE], bf[KERN_TILE];
};

/* The pass's vectors: the N task vectors. */
LINES_HOT static void ms_load(const struct merge_ctx *p, const struct tensor *t, const struct pipe_job *job,
                    size_t j0, size_t n, double *const *v, float *tmp)
{
	size_t off = j0 * t->unit_in;
	double *b = v[p->nmodels]; /* room after the N vectors */
	float *bf = tmp + KERN_TILE; /* tdots' second float tile */
	tile_load(p->k, t->in_dt, job->in[0] + off, n, b, bf);
	for (unsigned i = 0; i < p->nmodels; i++)
		tile_tau(p->k, t->in_dt, job->in[i + 1] + off, n, b, bf, v[i], tmp);
}

/* The dot of tau_i and tau_j among a tensor's pairs (i <= j, in the order
 * ms_pairs() lists them). */
static double ms_dot(const double *dot, unsigned n, unsigned i, unsigned j)
{
	if (i > j) {
		unsigned k = i;
		i = j, j = k;
	}
	return dot[i * n - i * (i - 1) / 2 + (j - i)];
}

/* cos and t of a tensor from its dots. */
static double ms_t(const double *dot, unsigned n, double *cosine)
{
	double sum = 0.0;
	unsigned pairs = 0;
	for (unsigned i = 0; i < n; i++)
		for (unsigned j = i + 1; j < n; j++, pairs++) {
			double np = sqrt(ms_dot(dot, n, i, i)) * sqrt(ms_dot(dot, n, j, j));
			double c = ms_dot(dot, n, i, j) / (np > 1e-6 ? np : 1e-6);
			sum += c > 1.0 ? 1.0 : c < -1.0 ? -1.0 : c; /* NaN stays NaN */
		}
	*cosine = sum / pairs;
	return n * *cosine / (1.0 + (n - 1) * *cosine);
}

/* 1 + (N - 1) cos this close to 0 (or 0): t is infinite, or so large
 * (|t| of 1e9 and more) that rounding in the dots decided it. */
#define MS_SINGULAR 1e-9

static int ms_singular(unsigned n, double cosine)
{
	return fabs(1.0 + (n - 1) * cosine) < MS_SINGULAR; /* a NaN cos: no */
}

/* ---- the writing pass ------------------------------------------------------ */
/* Elements [j0, j1) of the job (relative to its first) with the tensor's
 * or the row's t. */
static void ms_write(const struct merge_ctx *p, const struct tensor *t, struct pipe_job *job,
                     size_t j0, size_t j1, double tt, struct ms_scratch *s)
{
	double inv = 1.0;
	int pow2 = pow2_inverse(p->nmodels, &inv);
	for (; j0 < j1; j0 += KERN_TILE) {
		size_t nn = j1 - j0 < KERN_TILE ? j1 - j0 : KERN_TILE, off = j0 * t->unit_in;
		tile_load(p->k, t->in_dt, job->in[0] + off, nn, s->b, s->bf);
		for (unsigned i = 0; i < p->nmodels; i++) {
			tile_tau(p->k, t->in_dt, job->in[i + 1] + off, nn, s->b, s->bf, s->v, s->f);
			for (size_t j = 0; j < nn; j++)
				s->s[j] = i == 0 ? s->v[j] : s->s[j] + s->v[j];
		}
		if (pow2) /* the quotient by a power of two is the product by 1/N */
			for (size_t j = 0; j < nn; j++)
				s->v[j] = fma(t->lambda, tt * (s->s[j] * inv), s->b[j]);
		else
			for (size_t j = 0; j < nn; j++)
				s->v[j] = fma(t->lambda, tt * (s->s[j] / p->nmodels), s->b[j]);
		tile_store(p->k, t->out_dt, s->v, nn, job->out + j0 * t->unit_out, s->f);
	}
}

LINES_HOT static int ms_work(struct merge_ctx *p, struct pipe_job *job, void *scratch, struct lines_error *err)
{
	const struct stock *st = p->state;
	double cosine, tt = ms_t(tdots_of(&st->d, job->tensor), p->nmodels, &cosine);
	(void)err;
	ms_write(p, &p->t[job->tensor], job, 0, (size_t)(job->u1 - job->u0), tt, scratch);
	return 0;
}

/* ---- --per-row (mergekit's filter_wise) ------------------------------------- */
/*
 * A pass with rows: every job holds whole rows, and work() takes each
 * row's dots (tdots_range, elements in order), its cos and t, then
 * writes it (or, in the norm pass, adds its norms). The scratch is the
 * dots' tiles, then the writing tiles. Per job, part_job doubles: the
 * smallest and largest t of its rows and the count of rows, then (norm
 * pass) ||sum tau||^2 and ||t mean||^2 of its rows.
 */
struct ms_row_scratch {
	struct ms_scratch w;
	double tiles[]; /* tdots_scratch(k) */
};

/* Row r's t, or an error naming the tensor and the row. */
static int ms_row_t(const struct merge_ctx *p, const struct stock *st, const struct pipe_job *job,
                    size_t r0, size_t r1, double **v, float *tmp, double *dot, double *tt,
                    struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	double cosine;
	tdots_range(p, &st->d, t, job, r0, r1, v, tmp, dot);
	*tt = ms_t(dot, p->nmodels, &cosine);
	RETURN_ERROR_IF(ms_singular(p->nmodels, cosine), err, LINES_EUNSUPPORTED, NULL, t->name,
	                "row %" PRIu64 ": the task vectors' mean cosine %.17g is -1/(N-1) within "
	                "1e-9, so Model Stock's t is infinite or set by rounding (mergekit writes "
	                "NaN or that value); leave out one of the models, or merge without --per-row",
	                (job->u0 + r0) / tdots_row_len(t), cosine);
	return 0;
}

LINES_HOT static int ms_rows(struct merge_ctx *p, struct pipe_job *job, void *scratch, int write,
                   struct lines_error *err)
{
	const struct stock *st = p->state;
	const struct tensor *t = &p->t[job->tensor];
	struct ms_row_scratch *s = scratch;
	size_t n = (size_t)(job->u1 - job->u0), len = (size_t)tdots_row_len(t);
	double *v[TDOTS_MAX_K], dot[TDOTS_MAX_PAIRS], *part = job->part, tt;
	float *tmp = tdots_tiles(&st->d, s->tiles, v);
	unsigned nm = p->nmodels;
	part[0] = INFINITY, part[1] = -INFINITY, part[2] = part[3] = part[4] = 0.0;
	for (size_t r0 = 0; r0 < n; r0 += len) {
		FORWARD_IF_ERROR(ms_row_t(p, st, job, r0, r0 + len, v, tmp, dot, &tt, err));
		part[0] = tt < part[0] ? tt : part[0];
		part[1] = tt > part[1] ? tt : part[1];
		part[2] += 1.0;
		if (write) {
			ms_write(p, t, job, r0, r0 + len, tt, &s->w);
			continue;
		}
		double s2 = 0.0;
		for (unsigned a = 0; a < nm; a++)
			for (unsigned b = 0; b < nm; b++)
				s2 += ms_dot(dot, nm, a, b);
		if (isfinite(s2) && isfinite(tt))
			part[3] += s2, part[4] += tt * tt * s2 / ((double)nm * nm);
	}
	return 0;
}

LINES_HOT static int ms_rows_write(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                         struct lines_error *err)
{
	return ms_rows(p, job, scratch, 1, err);
}

LINES_HOT static int ms_rows_norms(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                         struct lines_error *err)
{
	return ms_rows(p, job, scratch, 0, err);
}

/* In output order: each tensor's smallest and largest row t, and the
 * norms of automatic alpha. */
static int ms_rows_reduce(struct merge_ctx *p, const struct pipe_job *job, struct lines_error *err)
{
	struct stock *st = p->state;
	double *row = st->d.dot + job->tensor * st->d.npairs;
	(void)err;
	if (row[2] == 0.0 || job->part[0] < row[0])
		row[0] = job->part[0];
	if (row[2] == 0.0 || job->part[1] > row[1])
		row[1] = job->part[1];
	row[2] += job->part[2];
	st->acc[0] += job->part[3], st->acc[1] += job->part[4];
	return 0;
}

static int ms_rows_norms_done(struct merge_ctx *p, struct lines_error *err)
{
	struct stock *st = p->state;
	return scales_from_norms(p->sc, sqrt(st->acc[0]), sqrt(st->acc[1]), 0, err);
}

/* The passes of --per-row: norms (automatic alpha), then write; each
 * resets the per-tensor table, so it holds the writing pass's rows. */
static int ms_rows_begin(struct merge_ctx *p, struct lines_error *err)
{
	struct stock *st = p->state;
	(void)err;
	memset(st->d.dot, 0, p->nt * st->d.npairs * sizeof(double));
	return 0;
}

static int ms_rows_done(struct merge_ctx *p, struct lines_error *err)
{
	struct stock *st = p->state;
	(void)err;
	st->d.measured = 1;
	return 0;
}

static int ms_rows_setup(struct merge_ctx *p, struct lines_error *err)
{
	struct stock *st = p->state;
	size_t scratch = sizeof(struct ms_row_scratch) + tdots_scratch(st->d.k);
	struct pass *ps;
	if (p->o->lines && p->o->alpha_auto) {
		RETURN_ERROR_IF(p->single_pass, err, LINES_EUSAGE, NULL, NULL,
		                "standard input can be read only once, but automatic alpha of -m "
		                "model_stock --per-row needs a pass before the writing pass: give "
		                "that model as a file, or give --alpha");
		RETURN_ERROR_IF(!(ps = passes_add(p->passes)), err, LINES_EUNSUPPORTED, NULL, NULL,
		                "too many passes");
		ps->name = "norms", ps->rows = 1, ps->part_job = 5, ps->scratch = scratch;
		ps->want = want_merged, ps->work = ms_rows_norms, ps->reduce = ms_rows_reduce;
		ps->begin = ms_rows_begin, ps->done = ms_rows_norms_done;
		p->sc->measured = 1;
	}
	FORWARD_IF_ERROR(tdots_add_write(p, ms_rows_write, scratch, err));
	ps = &p->passes->pass[p->passes->n - 1];
	ps->rows = 1, ps->part_job = 5, ps->reduce = ms_rows_reduce;
	ps->begin = ms_rows_begin, ps->done = ms_rows_done;
	return 0;
}

/* After the dots: no tensor with an infinite t; alpha from the dots. */
static int ms_measured(struct merge_ctx *p, struct lines_error *err)
{
	struct stock *st = p->state;
	double sum2 = 0.0, mtl2 = 0.0;
	unsigned n = p->nmodels;
	st->d.measured = 1;
	for (size_t i = 0; i < p->nt; i++) {
		if (!p->t[i].merge)
			continue;
		const double *dot = tdots_of(&st->d, i);
		double cosine, t = ms_t(dot, n, &cosine), s2 = 0.0;
		RETURN_ERROR_IF(ms_singular(n, cosine), err, LINES_EUNSUPPORTED, NULL, p->t[i].name,
		                "the task vectors' mean cosine %.17g is -1/(N-1) within 1e-9, so Model "
		                "Stock's t is infinite or set by rounding (mergekit writes NaN or that "
		                "value); leave out one of the models",
		                cosine);
		for (unsigned a = 0; a < n; a++)
			for (unsigned b = 0; b < n; b++)
				s2 += ms_dot(dot, n, a, b);
		if (!isfinite(s2) || !isfinite(t))
			continue;
		sum2 += s2;
		mtl2 += t * t * s2 / ((double)n * n);
	}
	if (p->o->lines && p->o->alpha_auto)
		return scales_from_norms(p->sc, sqrt(sum2), sqrt(mtl2), 0, err);
	return 0;
}

static int ms_check(const struct lines_merge_opts *o, struct lines_error *err)
{
	RETURN_ERROR_IF(o->nmodels < 2 || o->nmodels > TDOTS_MAX_K - 1, err, LINES_EUSAGE, NULL, NULL,
	                "-m model_stock takes 2 to %d models besides the base, not %zu",
	                TDOTS_MAX_K - 1, o->nmodels);
	RETURN_ERROR_IF(o->lines && o->alpha_auto && o->norm_p != 2, err, LINES_EUSAGE, NULL, NULL,
	                "automatic alpha of -m model_stock comes from its dot products, in the L2 "
	                "norm: add --norm l2, or give --alpha");
	return 0;
}

static int ms_setup(struct merge_ctx *p, struct lines_error *err)
{
	struct stock *st;
	unsigned np = 0;
	RETURN_ERROR_IF(!(st = calloc(1, sizeof(*st))), err, LINES_ENOMEM, NULL, NULL,
	                "out of memory");
	p->state = st;
	for (unsigned i = 0; i < p->nmodels; i++)
		for (unsigned j = i; j < p->nmodels; j++, np++) {
			st->pairs[np][0] = (unsigned char)i;
			st->pairs[np][1] = (unsigned char)j;
		}
	/* k = N + 1: the base's tile is loaded into the last vector */
	FORWARD_IF_ERROR(tdots_init(&st->d, p, p->nmodels + 1, (const unsigned char(*)[2])st->pairs, np,
	                            ms_load, err));
	if (p->o->per_row)
		return ms_rows_setup(p, err);
	FORWARD_IF_ERROR(tdots_add_pass(p, "dots", "-m model_stock", err));
	p->passes->pass[p->passes->n - 1].done = ms_measured;
	if (p->o->lines && p->o->alpha_auto) /* alpha from the dots: fixed width */
		p->sc->measured = 1;
	return tdots_add_write(p, ms_work, sizeof(struct ms_scratch), err);
}

static json_t *ms_report(const struct merge_ctx *c)
{
	json_t *m = json_object();
	json_object_set_new(m, "per_row", json_boolean(c->o->per_row));
	return m;
}

/* Per merged tensor, once measured: the mean cosine and t (--per-row: the
 * count of rows and their smallest and largest t). */
static void ms_report_tensor(const struct merge_ctx *c, size_t i, json_t *e)
{
	const struct stock *st = c->state;
	if (!st || !st->d.measured || !c->t[i].merge)
		return;
	json_t *o = json_object();
	if (c->o->per_row) {
		const double *r = tdots_of(&st->d, i);
		json_object_set_new(o, "rows", json_integer((json_int_t)r[2]));
		json_object_set_new(o, "t_min", json_num(r[0]));
		json_object_set_new(o, "t_max", json_num(r[1]));
		json_object_set_new(e, "model_stock", o);
		return;
	}
	double cosine, t = ms_t(tdots_of(&st->d, i), c->nmodels, &cosine);
	json_object_set_new(o, "cos", json_num(cosine));
	json_object_set_new(o, "t", json_num(t));
	json_object_set_new(e, "model_stock", o);
}

const struct method method_model_stock = {
	.name = "model_stock",
	.summary = "the models' mean, pulled toward the base by their task vectors' angle",
	.flags = METHOD_USES_PER_ROW,
	.check = ms_check,
	.report = ms_report,
	.setup = ms_setup,
	.report_tensor = ms_report_tensor,
	.free = tdots_method_free,
};
