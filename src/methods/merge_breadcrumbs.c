/*
 * merge_breadcrumbs.c -- Model Breadcrumbs (Davari & Belilovsky, 2023) as
 * mergekit computes it: breadcrumbs, and breadcrumbs_ties with TIES's sign
 * election.
 *
 * Each task vector tau_i = x_i - b (float32) is sparsified on its own, per
 * tensor, before any weight (mergekit's magnitude_outliers): of its n
 * elements ranked by |tau_i| (0-based, ascending), with
 *     target = floor(density_i n), top = floor(gamma_i n),
 *     bot = n - target - top (when negative: top += bot, bot = 0),
 * the ranks [bot, n - top) are kept: the largest `top` are dropped as
 * outliers and the smallest `bot`, so that `target` remain. lines keeps
 * an element when lo_i <= |tau_i| <= hi_i, lo_i the value of rank bot and
 * hi_i that of rank n - top - 1 (ties at either cut are all kept, as
 * lines' TIES keeps them). density_i >= 1 keeps everything (mergekit
 * returns the tensor as it is, gamma or not); top = 0 drops no top value,
 * where mergekit's slice [bot:-0] is empty and zeroes the whole task
 * vector (a slicing accident on small tensors, or with gamma 0).
 *
 * Then, with v_i = w_i tau_i m_i in float64:
 *   breadcrumbs       m = sum_i v_i, divided by sum_i w_i (1 when its
 *                     magnitude is below 1e-8) with --normalize (off by
 *                     default, as mergekit);
 *   breadcrumbs_ties  P, N the sums of the positive and of the negative
 *                     v_i; s = +1 where P + N >= 0, else -1 (per element:
 *                     mergekit's majority, summed as lines' TIES sums);
 *                     m = P or N (sign s), over the sum of their w_i (1
 *                     when 0) unless --no-normalize;
 * and theta = fma(lambda, m, b) (--lambda, or LiNeS's lambda per block),
 * where the weights and densities may differ between tensors (a
 * configuration's gradients and filters: tensor_w(), tensor_density()),
 * one rounding to the output dtype. A kept NaN makes the element NaN (with
 * ties: a NaN S, which kept infinities of both signs make too); a dropped
 * one is dropped.
 *
 * The cuts are exact, found by radix selection (radix_select.h) per
 * tensor and task, never by sorting: a `select` pass counts the high
 * bits of every |tau_i| (TIES's key, so that a cut at a bin's smallest
 * value -- the common case of 16-bit models -- is known at once), and a
 * `threshold` pass counts the low bits inside the two bins of each task
 * of the tensors whose cuts are still open; it is skipped when none is.
 * Automatic alpha needs ||tau_MTL||: a read-only `norms` pass after the
 * cuts. Then the writing pass. Every sum is per KERN_BLOCK block of a
 * tensor, in order: the bytes do not depend on -j or --chunk, and the
 * element arithmetic is portable C, the same under every LINES_ISA.
 *
 * Not yet: F64 tensors written as F64 (refused: give --dtype f32).
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>

#include "f64.h"
#include "kern_ties.h"
#include "method.h"
#include "radix_select.h"

#define BINS RSEL_BINS
#define NO_TOP UINT32_MAX  /* hi of a task with no top cut: every magnitude is below */
#define KEEP_NONE UINT32_MAX /* lo of a task that keeps nothing */

struct bc {
	unsigned nx;
	int ties;
	uint64_t *run;    /* 2 x nx x BINS counts of the tensor being reduced */
	struct rsel *cut; /* nt x nx x 2: lo, hi */
	uint32_t *lo, *hi; /* nt x nx: the cuts as magnitudes' bits */
	unsigned char *open; /* nt: a cut of the tensor needs the threshold pass */
	size_t nopen;
	double *ones;     /* nx */
	double acc[4];    /* the norms pass: |s|, |m|, s^2, m^2 */
	int counted;      /* the select pass is done: open is known */
	int cut_done;     /* lo and hi final */
};

static struct bc *B(const struct merge_ctx *p) { return p->state; }

static double gamma_of(const struct lines_merge_opts *o, unsigned i)
{
	return o->bc_gammas ? o->bc_gammas[i] : o->bc_gamma;
}

/* ---- the cuts ------------------------------------------------------------------ */

/*
 * The ranks of tensor e's task i (mergekit's integers): *klo and *khi the
 * 1-based ranks of lo and hi among the n magnitudes, 0 for no cut there;
 * returns 0 when nothing is kept.
 */
static int bc_ranks(const struct merge_ctx *p, const struct tensor *t, unsigned i, uint64_t n,
                    uint64_t *klo, uint64_t *khi)
{
	double d = tensor_density(p, t, i), g = gamma_of(p->o, i);
	uint64_t target, top, bot;
	*klo = *khi = 0;
	if (d >= 1.0 || n == 0)
		return 1;
	target = (uint64_t)(d * (double)n);
	top = (uint64_t)(g * (double)n);
	if (top > n - target) /* bot would be negative: fewer outliers go */
		top = n - target;
	bot = n - target - top;
	if (target == 0)
		return 0;
	*klo = bot ? bot + 1 : 0;
	*khi = top ? n - top : 0;
	return 1;
}

/* After the select pass's counts of tensor e (in run): where its cuts are. */
static void bc_find_bins(const struct merge_ctx *p, size_t e)
{
	struct bc *bc = B(p);
	uint64_t n = p->t[e].units;
	for (unsigned i = 0; i < bc->nx; i++) {
		struct rsel *c = bc->cut + ((size_t)e * bc->nx + i) * 2;
		uint64_t k[2];
		int any = bc_ranks(p, &p->t[e], i, n, &k[0], &k[1]);
		for (int s = 0; s < 2; s++) {
			memset(&c[s], 0, sizeof(c[s]));
			c[s].known = 1;
			if (!any) /* lo above every value: nothing kept */
				c[s].thr = s == 0 ? KEEP_NONE : 0;
			else if (k[s] == 0) /* no cut at this end */
				c[s].thr = s == 0 ? 0 : NO_TOP;
			else
				rsel_bin(bc->run + (size_t)i * BINS, k[s], &c[s]);
			bc->open[e] |= !c[s].known;
		}
	}
	bc->nopen += bc->open[e];
}

/* Tensor e's cuts into lo and hi. */
static void bc_set_cuts(struct bc *bc, size_t e)
{
	for (unsigned i = 0; i < bc->nx; i++) {
		const struct rsel *c = bc->cut + ((size_t)e * bc->nx + i) * 2;
		bc->lo[e * bc->nx + i] = c[0].thr;
		bc->hi[e * bc->nx + i] = c[1].thr;
	}
}

/* ---- select and threshold: the counts ------------------------------------------ */

/* A worker's scratch: the base and nx raw task vectors of a tile, the
 * open flags ties_bins() sets (unused here), the merged tile. */
struct bc_ws {
	float *bt, *tp;
	unsigned char *flags;
	double *m, *s, *sc;
};
static size_t bc_scratch(unsigned nx)
{
	return (size_t)KERN_TILE * (sizeof(float) * ((size_t)nx + 1) + 1 + 2 * sizeof(double)) +
	       BC_SCRATCH * sizeof(double) + 64;
}
static struct bc_ws bc_ws_at(void *mem, unsigned nx)
{
	struct bc_ws w;
	w.m = mem;
	w.s = w.m + KERN_TILE;
	w.sc = w.s + KERN_TILE; /* BC_SCRATCH */
	w.bt = (float *)(void *)(w.sc + BC_SCRATCH);
	w.tp = w.bt + KERN_TILE;
	w.flags = (unsigned char *)(w.tp + (size_t)nx * KERN_TILE);
	return w;
}

/* The models' inputs of a job from element j0 on. */
static void job_models(const struct merge_ctx *p, const struct pipe_job *job, size_t j0,
                       const void **xs)
{
	const struct tensor *t = &p->t[job->tensor];
	for (unsigned i = 0; i < B(p)->nx; i++)
		xs[i] = job->in[i + 1] + j0 * t->unit_in;
}

/* The raw task vectors (every weight 1) of tile [j0, j0 + nn) of a job. */
static void bc_taus(const struct merge_ctx *p, const struct pipe_job *job, size_t j0, size_t nn,
                    struct bc_ws *w)
{
	const struct tensor *t = &p->t[job->tensor];
	const void *xs[LINES_MAX_MODELS];
	job_models(p, job, j0, xs);
	ties_taus(p->k, t->in_dt, xs, B(p)->nx, job->in[0] + j0 * t->unit_in, B(p)->ones, nn, w->bt,
	          w->tp);
}

/*
 * A job's counts. The select and threshold passes count into nsets x nx
 * histograms of BINS uint32 in the worker's scratch (after bc_scratch()),
 * which start zeroed (pass.zero_scratch), and job_pack() moves them into
 * the job's part, leaving them zeroed: histogram q as pairs (bin, count)
 * of its nonzero bins, in the order of the bins, where they fit in its
 * BINS uint32 (with the counts of a job of 2^18 elements, a BF16 model's
 * magnitudes fill a few thousand bins), else as it is. Then flags[q],
 * after the nsets x nx histograms, holds the number of pairs, or
 * UINT32_MAX for a whole histogram. So a job neither clears nor hands
 * over 256 KiB a histogram, and the reduce adds only the bins counted.
 */
#define PACK_DENSE UINT32_MAX
static size_t bc_part_job(unsigned nx, unsigned nsets)
{
	/* doubles: the histograms, then the flags */
	return ((size_t)nsets * nx * BINS + (size_t)nsets * nx + 1) / 2;
}
static uint32_t *worker_hist(void *scratch, unsigned nx)
{
	return (uint32_t *)(void *)((unsigned char *)scratch + bc_scratch(nx));
}
static void job_hist(const struct bc *bc, void *scratch, unsigned nsets, uint32_t **h)
{
	uint32_t *wh = worker_hist(scratch, bc->nx);
	for (unsigned q = 0; q < nsets * bc->nx; q++)
		h[q] = wh + (size_t)q * BINS;
}
static void job_pack(const struct bc *bc, void *scratch, struct pipe_job *job, unsigned nsets)
{
	uint32_t *wh = worker_hist(scratch, bc->nx), *part = (uint32_t *)(void *)job->part;
	uint32_t *flags = part + (size_t)nsets * bc->nx * BINS;
	for (unsigned q = 0; q < nsets * bc->nx; q++) {
		uint32_t *h = wh + (size_t)q * BINS, *o = part + (size_t)q * BINS, np = 0;
		for (uint32_t b = 0; b < BINS; b += 8) {
			uint64_t u[4];
			memcpy(u, h + b, sizeof(u));
			if ((u[0] | u[1] | u[2] | u[3]) == 0)
				continue;
			for (uint32_t k = b; k < b + 8; k++) {
				if (!h[k])
					continue;
				if (np < BINS / 2)
					o[2 * np] = k, o[2 * np + 1] = h[k];
				np++;
			}
		}
		if (np <= BINS / 2) {
			for (uint32_t e = 0; e < np; e++)
				h[o[2 * e]] = 0;
			flags[q] = np;
		} else {
			memcpy(o, h, BINS * sizeof(uint32_t));
			memset(h, 0, BINS * sizeof(uint32_t));
			flags[q] = PACK_DENSE;
		}
	}
}

LINES_HOT static int select_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                       struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	struct bc *bc = B(p);
	struct bc_ws w = bc_ws_at(scratch, bc->nx);
	uint32_t *h[LINES_MAX_MODELS];
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;
	job_hist(bc, scratch, 1, h);
	if (p->k->ties_select) { /* counts without tiles */
		const void *xs[LINES_MAX_MODELS];
		for (size_t b0 = 0; b0 < n; b0 += KERN_BLOCK) {
			size_t nn = n - b0 < KERN_BLOCK ? n - b0 : KERN_BLOCK;
			job_models(p, job, b0, xs);
			p->k->ties_select(t->in_dt, xs, bc->nx, job->in[0] + b0 * t->unit_in, bc->ones, nn,
			                  h, NULL, NULL, NULL, 0); /* the counts alone */
		}
	} else {
		for (size_t j0 = 0; j0 < n; j0 += KERN_TILE) {
			size_t nn = n - j0 < KERN_TILE ? n - j0 : KERN_TILE;
			bc_taus(p, job, j0, nn, &w);
			ties_hist(w.tp, bc->nx, nn, h);
		}
	}
	job_pack(bc, scratch, job, 1);
	return 0;
}

/* Add the nsets x nx histograms of a job (job_pack()) to run. */
static void add_counts(struct bc *bc, const struct pipe_job *job, unsigned nsets)
{
	const uint32_t *part = (const uint32_t *)(const void *)job->part;
	const uint32_t *flags = part + (size_t)nsets * bc->nx * BINS;
	for (size_t q = 0; q < (size_t)nsets * bc->nx; q++) {
		const uint32_t *o = part + q * BINS;
		uint64_t *run = bc->run + q * BINS;
		if (flags[q] == PACK_DENSE)
			for (uint32_t b = 0; b < BINS; b++)
				run[b] += o[b];
		else
			for (uint32_t e = 0; e < flags[q]; e++)
				run[o[2 * e]] += o[2 * e + 1];
	}
}

static int select_reduce(struct merge_ctx *p, const struct pipe_job *job, struct lines_error *err)
{
	struct bc *bc = B(p);
	(void)err;
	add_counts(bc, job, 1);
	if (job->u1 == p->t[job->tensor].units) {
		bc_find_bins(p, job->tensor);
		memset(bc->run, 0, (size_t)bc->nx * BINS * sizeof(*bc->run));
	}
	return 0;
}

static void log_cuts(const struct merge_ctx *p, const char *pass)
{
	lines_logf(p->o, LINES_LOG_INFO, NULL, NULL,
	           "%s: every cut known after the %s pass (%zu tensors needed the threshold pass)",
	           p->o->method == LINES_M_BREADCRUMBS_TIES ? "breadcrumbs_ties" : "breadcrumbs",
	           pass, B(p)->nopen);
}

static int select_done(struct merge_ctx *p, struct lines_error *err)
{
	struct bc *bc = B(p);
	(void)err;
	bc->counted = 1;
	if (bc->nopen)
		return 0;
	for (size_t e = 0; e < p->nt; e++)
		if (p->t[e].merge)
			bc_set_cuts(bc, e);
	bc->cut_done = 1;
	log_cuts(p, "select");
	return 0;
}

static int threshold_needed(const struct merge_ctx *p)
{
	return B(p)->nopen > 0;
}

static int want_open(const struct merge_ctx *p, size_t tensor)
{
	/* before the select pass (the plan): every merged tensor may be */
	return p->t[tensor].merge && (!B(p)->counted || B(p)->open[tensor]);
}

/* The low 16 bits of the magnitudes inside each open cut's bin: lo's
 * counts in the first nx histograms, hi's in the next. */
LINES_HOT static int threshold_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                          struct lines_error *err)
{
	struct bc *bc = B(p);
	struct bc_ws w = bc_ws_at(scratch, bc->nx);
	uint32_t *h[2 * LINES_MAX_MODELS], bin[2][LINES_MAX_MODELS];
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;
	job_hist(bc, scratch, 2, h);
	for (unsigned i = 0; i < bc->nx; i++)
		for (int s = 0; s < 2; s++) {
			const struct rsel *c = bc->cut + ((size_t)job->tensor * bc->nx + i) * 2 + s;
			bin[s][i] = c->known ? UINT32_MAX : c->bin;
		}
	for (size_t j0 = 0; j0 < n; j0 += KERN_TILE) {
		size_t nn = n - j0 < KERN_TILE ? n - j0 : KERN_TILE;
		bc_taus(p, job, j0, nn, &w);
		ties_bins(p->k, w.tp, bc->nx, nn, bin[0], h, w.flags);
		ties_bins(p->k, w.tp, bc->nx, nn, bin[1], h + bc->nx, w.flags);
	}
	job_pack(bc, scratch, job, 2);
	return 0;
}

static int threshold_reduce(struct merge_ctx *p, const struct pipe_job *job,
                            struct lines_error *err)
{
	struct bc *bc = B(p);
	(void)err;
	add_counts(bc, job, 2);
	if (job->u1 == p->t[job->tensor].units) {
		for (unsigned i = 0; i < bc->nx; i++)
			for (unsigned s = 0; s < 2; s++)
				rsel_low(bc->run + ((size_t)s * bc->nx + i) * BINS,
				         bc->cut + ((size_t)job->tensor * bc->nx + i) * 2 + s);
		memset(bc->run, 0, 2 * (size_t)bc->nx * BINS * sizeof(*bc->run));
	}
	return 0;
}

static int threshold_done(struct merge_ctx *p, struct lines_error *err)
{
	struct bc *bc = B(p);
	(void)err;
	for (size_t e = 0; e < p->nt; e++)
		if (p->t[e].merge)
			bc_set_cuts(bc, e);
	bc->cut_done = 1;
	log_cuts(p, "threshold");
	return 0;
}

/* ---- the merge ------------------------------------------------------------------- */

/* The merged task vector of tile [j0, j0 + nn) of a job, w.m[j], the base
 * in w.bt and, unless s is NULL, the sum of the raw task vectors in s
 * (kern_ties.h's bc_taus_merge_tile). */
static void bc_merge(const struct merge_ctx *p, const struct pipe_job *job, size_t j0, size_t nn,
                     struct bc_ws *w, double *s)
{
	const struct bc *bc = B(p);
	const struct tensor *t = &p->t[job->tensor]; /* its own weights, or the run's */
	double ws = tensor_wsum(p, t), wdiv = fabs(ws) < 1e-8 ? 1.0 : ws;
	const void *xs[LINES_MAX_MODELS];
	job_models(p, job, j0, xs);
	bc_taus_merge_tile(p->k, t->in_dt, xs, bc->nx, job->in[0] + j0 * t->unit_in, bc->ones, nn,
	                   bc->lo + job->tensor * bc->nx, bc->hi + job->tensor * bc->nx,
	                   tensor_w(p, t), bc->ties, !p->o->no_normalize, wdiv, w->bt, w->tp, w->m,
	                   s, w->sc);
}

/* The norms pass: per block |s|, |m|, s^2, m^2 (s = sum_i tau_i), element
 * j in lane j % KERN_LANES, leaving out those where s or m is not finite. */
LINES_HOT static int norms_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                      struct lines_error *err)
{
	struct bc_ws w = bc_ws_at(scratch, B(p)->nx);
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;
	for (unsigned b = 0; b < job->nblocks; b++) {
		double *part = job->part + 4 * b;
		size_t b0 = (size_t)b * KERN_BLOCK, b1 = b0 + KERN_BLOCK < n ? b0 + KERN_BLOCK : n;
		struct norm_lanes l = {0};
		for (size_t j0 = b0; j0 < b1; j0 += KERN_TILE) {
			size_t nn = b1 - j0 < KERN_TILE ? b1 - j0 : KERN_TILE;
			bc_merge(p, job, j0, nn, &w, w.s);
			norm_lanes_add(p->k->wide, &l, w.s, w.m, nn); /* KERN_TILE is a multiple of the lanes */
		}
		norm_lanes_fold(part, &l);
	}
	return 0;
}

static int norms_reduce(struct merge_ctx *p, const struct pipe_job *job, struct lines_error *err)
{
	(void)err;
	norm_sums_tensor(p, job); /* per tensor: a stats pass (--part) */
	return 0;
}

static int norms_done(struct merge_ctx *p, struct lines_error *err)
{
	struct bc *bc = B(p);
	norm_sums_total(p, bc->acc);
	return norm_sums_alpha(p, bc->acc, 1, err);
}

LINES_HOT static int write_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                      struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	struct bc_ws w = bc_ws_at(scratch, B(p)->nx);
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;
	for (size_t j0 = 0; j0 < n; j0 += KERN_TILE) {
		size_t nn = n - j0 < KERN_TILE ? n - j0 : KERN_TILE;
		bc_merge(p, job, j0, nn, &w, NULL);
		p->k->finish(t->out_dt, job->out + j0 * t->unit_out, w.bt, w.m, t->lambda, nn);
	}
	return 0;
}

/* ---- setup ------------------------------------------------------------------------ */

static int bc_check(const struct lines_merge_opts *o, struct lines_error *err)
{
	RETURN_ERROR_IF(!(o->bc_gamma >= 0 && o->bc_gamma <= 1), err, LINES_EUSAGE, NULL, NULL,
	                "--bc-gamma must be in [0, 1]");
	for (size_t i = 0; o->bc_gammas && i < o->nmodels; i++)
		RETURN_ERROR_IF(!(o->bc_gammas[i] >= 0 && o->bc_gammas[i] <= 1), err, LINES_EUSAGE,
		                NULL, NULL, "--bc-gamma must be in [0, 1]");
	return 0;
}

/* Write a zero to each page of zeroed memory, making it resident. */
static void touch(void *mem, size_t bytes)
{
	for (size_t q = 0; q < bytes; q += 4096)
		((volatile unsigned char *)mem)[q] = 0;
}

static struct pass *bc_pass(struct merge_ctx *p, const char *name,
                            int (*work)(struct merge_ctx *, struct pipe_job *, void *,
                                        struct lines_error *))
{
	struct pass *ps = passes_add(p->passes);
	if (!ps)
		return NULL;
	ps->name = name;
	ps->want = want_merged;
	ps->work = work;
	ps->scratch = bc_scratch(B(p)->nx);
	return ps;
}

static int bc_setup(struct merge_ctx *p, struct lines_error *err)
{
	struct bc *bc = calloc(1, sizeof(*bc));
	unsigned nx = p->nmodels;
	const char *name = p->o->method == LINES_M_BREADCRUMBS_TIES ? "breadcrumbs_ties"
	                                                             : "breadcrumbs";
	size_t nt = p->nt ? p->nt : 1;
	struct pass *a, *b, *c, *d;

	p->state = bc;
	RETURN_ERROR_IF(!bc, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	RETURN_ERROR_IF(p->single_pass, err, LINES_EUSAGE, NULL, NULL,
	                "standard input can be read only once, and -m %s reads its inputs two to "
	                "four times: give that model as a file", name);
	RETURN_ERROR_IF(nx > LINES_MAX_MODELS, err, LINES_EUSAGE, NULL, NULL,
	                "-m %s merges at most %d models", name, LINES_MAX_MODELS);
	for (size_t i = 0; i < p->nt; i++)
		RETURN_ERROR_IF(p->t[i].merge && f64_tensor(&p->t[i]), err, LINES_EUNSUPPORTED, NULL,
		                p->t[i].name,
		                "-m %s does not merge F64 tensors into F64 yet: give --dtype f32", name);
	bc->nx = nx;
	bc->ties = p->o->method == LINES_M_BREADCRUMBS_TIES;
	bc->run = calloc(2 * (size_t)nx * BINS, sizeof(*bc->run));
	bc->cut = calloc(nt * nx * 2, sizeof(*bc->cut));
	bc->lo = calloc(nt * nx, sizeof(*bc->lo));
	bc->hi = calloc(nt * nx, sizeof(*bc->hi));
	bc->open = calloc(nt, 1);
	bc->ones = calloc(nx ? nx : 1, sizeof(*bc->ones));
	RETURN_ERROR_IF(!bc->run || !bc->cut || !bc->lo || !bc->hi || !bc->open || !bc->ones, err,
	                LINES_ENOMEM, NULL, NULL, "out of memory for -m %s", name);
	for (unsigned i = 0; i < nx; i++)
		bc->ones[i] = 1.0;
	/* the counts and the tables are held for the whole run: resident now,
	 * so that the plan's measure of its heap (-n's memory bound) has them */
	touch(bc->run, 2 * (size_t)nx * BINS * sizeof(*bc->run));
	touch(bc->cut, nt * nx * 2 * sizeof(*bc->cut));
	touch(bc->lo, nt * nx * sizeof(*bc->lo));
	touch(bc->hi, nt * nx * sizeof(*bc->hi));
	touch(bc->open, nt);

	a = bc_pass(p, "select", select_work);
	b = bc_pass(p, "threshold", threshold_work);
	RETURN_ERROR_IF(!a || !b, err, LINES_EUSAGE, NULL, NULL, "too many passes");
	a->part_job = (unsigned)bc_part_job(nx, 1);
	a->scratch += (size_t)nx * BINS * sizeof(uint32_t); /* worker_hist() */
	a->zero_scratch = 1;
	a->reduce = select_reduce;
	a->done = select_done;
	b->part_job = (unsigned)bc_part_job(nx, 2);
	b->scratch += 2 * (size_t)nx * BINS * sizeof(uint32_t);
	b->zero_scratch = 1;
	b->want = want_open;
	b->reduce = threshold_reduce;
	b->done = threshold_done;
	b->needed = threshold_needed;
	if (p->o->lines && p->o->alpha_auto) {
		c = bc_pass(p, "norms", norms_work);
		RETURN_ERROR_IF(!c, err, LINES_EUSAGE, NULL, NULL, "too many passes");
		c->part_block = 4;
		c->reduce = norms_reduce;
		c->done = norms_done;
		c->stats = 1;
		p->sc->measured = 1;
	}
	d = bc_pass(p, "write", write_work);
	RETURN_ERROR_IF(!d, err, LINES_EUSAGE, NULL, NULL, "too many passes");
	d->writes = 1;
	d->want = want_all;
	return 0;
}

static void bc_free(struct merge_ctx *p)
{
	struct bc *bc = p->state;
	if (bc) {
		free(bc->run), free(bc->cut), free(bc->lo), free(bc->hi), free(bc->open);
		free(bc->ones);
	}
	free(bc);
	p->state = NULL;
}

/* ---- reports ------------------------------------------------------------------------ */

static void bc_meta(const struct merge_ctx *p, void (*put)(void *, const char *, const char *),
                    void *arg)
{
	char v[40 * LINES_MAX_MODELS] = "";
	size_t n = 0;
	density_meta(p, put, arg);
	for (unsigned i = 0; i < (p->o->bc_gammas ? p->nmodels : 1) && n + 40 < sizeof(v); i++) {
		if (i)
			v[n++] = ',';
		lines_fmt_double(v + n, sizeof(v) - n, gamma_of(p->o, i));
		n += strlen(v + n);
	}
	put(arg, "lines.bc_gamma", v);
	put(arg, "lines.normalize", p->o->no_normalize ? "false" : "true");
}

/* {"density", "gamma", "normalize"} */
static json_t *bc_report(const struct merge_ctx *p)
{
	json_t *m = json_object(), *g = p->o->bc_gammas ? json_array() : NULL;
	if (!m)
		return NULL;
	density_report(p, m);
	for (unsigned i = 0; g && i < p->nmodels; i++)
		json_array_append_new(g, json_real(p->o->bc_gammas[i]));
	json_object_set_new(m, "gamma", g ? g : json_real(p->o->bc_gamma));
	json_object_set_new(m, "normalize", json_boolean(!p->o->no_normalize));
	return m;
}

/* A cut's magnitude: null for none (lo of a task that keeps nothing, hi
 * with no top cut). */
static json_t *cut_json(uint32_t bits, uint32_t none)
{
	float f;
	if (bits == none)
		return json_null();
	memcpy(&f, &bits, 4);
	return json_num(f);
}

/* "breadcrumbs": {"lo": [...], "hi": [...]}: per task, the kept
 * magnitudes are lo <= |tau| <= hi */
static void bc_report_tensor(const struct merge_ctx *p, size_t e, json_t *entry)
{
	const struct bc *bc = p->state;
	if (!bc || !bc->cut_done || !p->t[e].merge)
		return;
	json_t *r = json_object(), *lo = json_array(), *hi = json_array();
	for (unsigned i = 0; i < bc->nx; i++) {
		json_array_append_new(lo, cut_json(bc->lo[e * bc->nx + i], KEEP_NONE));
		json_array_append_new(hi, cut_json(bc->hi[e * bc->nx + i], NO_TOP));
	}
	json_object_set_new(r, "lo", lo);
	json_object_set_new(r, "hi", hi);
	json_object_set_new(entry, "breadcrumbs", r);
}

#define BC_FLAGS                                                                              \
	(METHOD_USES_WEIGHTS | METHOD_USES_DENSITY | METHOD_USES_NORMALIZE | METHOD_USES_BC_GAMMA | \
	 METHOD_PART | METHOD_TENSOR_W | METHOD_TENSOR_DENSITY)

const struct method method_breadcrumbs = {
	.name = "breadcrumbs",
	.summary = "Model Breadcrumbs: drop each task vector's top gamma and bottom by magnitude "
	           "per tensor, weighted sum",
	.flags = BC_FLAGS,
	.check = bc_check,
	.setup = bc_setup,
	.meta = bc_meta,
	.report = bc_report,
	.report_tensor = bc_report_tensor,
	.free = bc_free,
};

const struct method method_breadcrumbs_ties = {
	.name = "breadcrumbs_ties",
	.summary = "Model Breadcrumbs with TIES: breadcrumbs' cuts, signs elected per element, "
	           "disjoint mean",
	.flags = BC_FLAGS,
	.check = bc_check,
	.setup = bc_setup,
	.meta = bc_meta,
	.report = bc_report,
	.report_tensor = bc_report_tensor,
	.free = bc_free,
};
