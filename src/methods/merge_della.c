/*
 * merge_della.c -- DELLA (Deep et al., 2024, mergekit's della and
 * della_linear): drop each task vector's entries at random with a keep
 * probability that grows with the entry's magnitude rank in its row, then
 * rescale, then elect signs as TIES does (della) or sum (della_linear).
 *
 * Rows. mergekit ranks |tau_i| along dim 1: in a matrix, within each row;
 * a tensor of rank 0 or 1 is one row; in a tensor of rank 3 or more, the
 * elements sharing every index but the second. All of them lie in one slab
 * (the elements that share their first index, pipe_slab()), so the passes
 * ask the pipeline for jobs of whole slabs (pass.rows) and work() ranks a
 * row by sorting it in the worker's scratch: the memory is the longest
 * slab times the models (their tau and the table of p by rank that a job
 * computes once), in the scratch that -n's bound counts.
 *
 * Rank and probability. The entries of a row of length r are sorted by
 * |tau_i| (the bit pattern of the float32 task vector, or of the float64
 * one on the F64 path), ties in the order of their index (a stable LSD
 * radix sort, 8 bits a digit, the digits every key shares skipped; on
 * the float32 path the digits start at the lowest bit that differs
 * within the row, and each pass counts and places the row's 4 quarters
 * with their own counters, so that a nearly constant digit does not make
 * one chain of increments of the same counter); the
 * entry at position q (0 the smallest) is kept with probability
 *     p = (d - eps) + (q / (r - 1)) (2 eps)        (p = d when r = 1)
 * (tabulated by q once a job, the same doubles) when the 53-bit draw of
 * DARE's counter-based hash (kern_ties.h: the
 * seed, the task, the XXH3 of the tensor's name, the element's index in
 * the tensor) is below p 2^53. A density of 1 keeps everything as it is
 * (mergekit returns the task vector unchanged). The weights and densities
 * may differ between tensors (a configuration's gradients and filters:
 * tensor_w(), tensor_density()); each tensor's densities are checked
 * against epsilon when the plan is set up.
 *
 * Rescale: a kept entry is divided by its p (the paper's; the default),
 * or, with --rescale (mergekit's), the task vector's kept entries are
 * multiplied by its L1 norm over their L1 norm in the tensor, which a
 * read-only `rescale` pass measures first; --no-rescale keeps them.
 *
 * Combination in float64, models in order: della_linear sums w_i tau'_i;
 * della elects the sign of that sum (+1 where it is >= 0, mergekit's rule),
 * keeps the w_i tau'_i of that sign and divides their sum by the sum of
 * their weights (1 where that is 0; not with --no-normalize). Then
 * theta = fma(lambda, tau_MTL, theta_0), rounded once to float32 and
 * encoded (or stored in float64 on the F64 path): the same bits on every
 * instruction set. Automatic alpha needs ||tau_MTL|| first: a read-only
 * `norms` pass. Since the jobs of these passes do not depend on --chunk
 * (pipeline.h, PIPE_ROW_UNITS) and the consumer adds their sums in job
 * order, the output bytes do not depend on -j, --chunk or the reader.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <xxhash.h>

#include "f64.h"
#include "kern_ties.h"
#include "method.h"

struct della {
	unsigned nx;
	int elect;
	uint64_t *keys; /* nt x nx: dare_key() */
	double eps[LINES_MAX_MODELS];
	/* nt x nx: each tensor's density of each model (tensor_density()) */
	double *d;
	double *div;   /* nt x nx: the L1 rescale's divisor (kept L1 / L1), else 1 */
	double *l1;    /* nt x nx x 2: L1 of tau and of its kept entries (--rescale) */
	double acc[4]; /* the norm pass's sums */
	uint64_t kept[LINES_MAX_MODELS]; /* the writing pass's kept entries */
	uint64_t elements;               /* and the elements it saw */
	uint64_t slab;                   /* the longest slab of a merged tensor */
};

static struct della *D(struct merge_ctx *p)
{
	return p->state;
}

/* The epsilon of model i. */
static double eps_of(const struct lines_merge_opts *o, unsigned i)
{
	return o->della_epsilons ? o->della_epsilons[i] : o->della_epsilon;
}

/* What a job computes: the L1 sums, the norms, or the output. */
enum { DO_L1, DO_NORMS, DO_WRITE };

/* The scratch of a worker for slabs of s elements. */
struct rows {
	double *b, *raw, *r; /* s each: the base, sum of the raw tau, the result */
	double *tau;         /* nx x s */
	double *pr;          /* nx x s: p of rank q in a row of the job's tensor */
	float *tmp;          /* s */
	uint64_t *key;       /* s */
	uint32_t *ia, *ib;   /* s each */
};

static size_t scratch_bytes(unsigned nx, uint64_t s)
{
	return (size_t)s * ((3 + 2 * nx) * sizeof(double) + sizeof(float) + sizeof(uint64_t) +
	                    2 * sizeof(uint32_t)) +
	       64;
}

static struct rows rows_of(void *scratch, unsigned nx, uint64_t s)
{
	struct rows w;
	w.b = scratch;
	w.raw = w.b + s;
	w.r = w.raw + s;
	w.tau = w.r + s;
	w.pr = w.tau + (size_t)nx * s;
	w.key = (uint64_t *)(void *)(w.pr + (size_t)nx * s);
	w.ia = (uint32_t *)(void *)(w.key + s); /* ia and ib: s uint64 too */
	w.ib = w.ia + s;
	w.tmp = (float *)(void *)(w.ib + s);
	return w;
}

/*
 * The indices 0..n-1 sorted by key, ties in index order: a stable LSD
 * radix sort on the low `digits` bytes, skipping a digit that every key
 * shares. Returns the buffer (ia or ib) that holds the order.
 */
static const uint32_t *sort_row(const uint64_t *key, uint32_t n, int digits, uint32_t *ia,
                                uint32_t *ib)
{
	uint32_t cnt[8][256];
	memset(cnt, 0, sizeof(cnt[0]) * (size_t)digits);
	for (uint32_t j = 0; j < n; j++) {
		uint64_t v = key[j];
		for (int d = 0; d < digits; d++)
			cnt[d][(v >> (8 * d)) & 255]++;
		ia[j] = j;
	}
	uint32_t *src = ia, *dst = ib;
	for (int d = 0; d < digits && n > 1; d++) {
		uint32_t *c = cnt[d], sum = 0;
		if (c[(key[0] >> (8 * d)) & 255] == n)
			continue;
		for (int b = 0; b < 256; b++) {
			uint32_t t = c[b];
			c[b] = sum;
			sum += t;
		}
		for (uint32_t j = 0; j < n; j++) {
			uint32_t x = src[j];
			dst[c[(key[x] >> (8 * d)) & 255]++] = x;
		}
		uint32_t *t = src;
		src = dst;
		dst = t;
	}
	return src;
}

/*
 * The float32 path's sort: a[j] = mag << 32 | j sorted in place of the
 * index (the same order as sort_row(): by magnitude, then index), with
 * no indirection, by a stable LSD radix sort of 8 bits a digit. any and
 * all are the OR and the AND of the row's magnitudes: the bits that
 * differ within the row (any ^ all) alone order them, so the digits start
 * at the lowest of them, and a digit where none varies is neither counted
 * nor placed; and every key's digit lies between all's and any's, so the
 * counters outside are neither cleared nor summed. Returns a or b,
 * whichever holds the order.
 */
static const uint64_t *sort_packed(uint64_t *a, uint64_t *b, uint32_t n, uint32_t any,
                                   uint32_t all)
{
	/* Each pass counts the digit in the 4 quarters of its input apart and
	 * places quarter g's entries of a digit after those of quarters < g
	 * (stable): 4 independent chains of increments where a digit is
	 * nearly constant (the exponent's), or where the last pass made runs
	 * of one digit (equal magnitudes), instead of one. */
	uint32_t cnt[4][256], h = n / 4, lo[4] = {0, h, 2 * h, 3 * h}, vary = any ^ all;
	uint64_t *src = a, *dst = b;
	if (n < 2 || vary == 0) /* one magnitude: in index order already */
		return a;
	for (unsigned q = (unsigned)__builtin_ctz(vary); q < 31; q += 8) {
		uint32_t sum = 0, *c0 = cnt[0], *c1 = cnt[1], *c2 = cnt[2], *c3 = cnt[3];
		unsigned sh = 32 + q, d0 = (all >> q) & 255, d1 = (any >> q) & 255;
		if (((vary >> q) & 255) == 0)
			continue;
		for (int g = 0; g < 4; g++)
			memset(&cnt[g][d0], 0, (d1 - d0 + 1) * sizeof(cnt[g][0]));
		for (uint32_t j = 0; j < h; j++) {
			c0[(src[j] >> sh) & 255]++, c1[(src[lo[1] + j] >> sh) & 255]++;
			c2[(src[lo[2] + j] >> sh) & 255]++, c3[(src[lo[3] + j] >> sh) & 255]++;
		}
		for (uint32_t j = lo[3] + h; j < n; j++)
			c3[(src[j] >> sh) & 255]++;
		/* digit k's quarter g goes after the smaller digits and
		 * quarters < g of its own: one addition a digit in the chain */
		for (unsigned k = d0; k <= d1; k++) {
			uint32_t t0 = c0[k], t1 = c1[k], t2 = c2[k], t3 = c3[k];
			c0[k] = sum, c1[k] = sum + t0, c2[k] = sum + t0 + t1;
			c3[k] = sum + t0 + t1 + t2;
			sum += t0 + t1 + t2 + t3;
		}
		for (uint32_t j = 0; j < h; j++) {
			uint64_t x0 = src[j], x1 = src[lo[1] + j], x2 = src[lo[2] + j],
			         x3 = src[lo[3] + j];
			dst[c0[(x0 >> sh) & 255]++] = x0;
			dst[c1[(x1 >> sh) & 255]++] = x1;
			dst[c2[(x2 >> sh) & 255]++] = x2;
			dst[c3[(x3 >> sh) & 255]++] = x3;
		}
		for (uint32_t j = lo[3] + h; j < n; j++) {
			uint64_t x = src[j];
			dst[c3[(x >> sh) & 255]++] = x;
		}
		uint64_t *t = src;
		src = dst;
		dst = t;
	}
	return src;
}

/*
 * Drop the entries of task i in a slab of s elements (tau, in place),
 * element e0 of the tensor first, rows of r elements c apart (c rows
 * interleaved): kept ones divided by p (rescale by the density) or left,
 * the others +0.0. Adds |tau| and the kept |tau| to l1[0], l1[1] (in
 * the order of the ranks) unless l1 is NULL (the passes that do not use
 * them), and returns the number kept.
 */
static uint64_t drop_slab(const struct merge_ctx *p, unsigned i, double d, uint64_t key,
                          uint64_t e0, double *tau, uint64_t s, uint64_t r, int f64,
                          struct rows *w, double *l1)
{
	const double *prq = w->pr + (size_t)i * s;
	int by_p = p->o->rescale == LINES_RESCALE_DENSITY;
	uint64_t c = s / r, kept = 0;
	double a0 = l1 ? l1[0] : 0.0, a1 = l1 ? l1[1] : 0.0; /* in registers */

	if (d >= 1.0) { /* mergekit: the task vector as it is */
		for (uint64_t j = 0; l1 && j < s; j++)
			l1[0] += fabs(tau[j]), l1[1] += fabs(tau[j]);
		return s;
	}
	/* the draws of the slab's elements in their order (below 2^53: exact
	 * as doubles), in a loop that vectorises (the loops below take them
	 * in the order of the ranks), in w->r, which the slab needs only
	 * after its drops */
	double *xs = w->r;
	for (uint64_t j = 0; j < s; j++)
		xs[j] = (double)(kern_mix64(key ^ ((e0 + j) * KERN_DARE_STEP)) >> 11);
	for (uint64_t k = 0; k < c; k++) {
		const uint32_t *ord = NULL;
		const uint64_t *pk = NULL;
		uint32_t any = 0, all = UINT32_MAX;
		for (uint64_t j = 0; j < r && f64; j++)
			w->key[j] = f64_mag(tau[j * c + k]);
		for (uint64_t j = 0; j < r && !f64; j++) {
			uint32_t m = ties_mag((float)tau[j * c + k]);
			any |= m, all &= m;
			w->key[j] = (uint64_t)m << 32 | j;
		}
		if (f64)
			ord = sort_row(w->key, (uint32_t)r, 8, w->ia, w->ib);
		else
			pk = sort_packed(w->key, (uint64_t *)(void *)w->ia, (uint32_t)r, any, all);
		/* without a branch (the draws make it unpredictable): the
		 * quotient computed for every entry, the kept value or +0.0
		 * chosen by a mask, and a dropped entry adds +0.0 to a1, which
		 * changes no sum (it starts at +0.0 and only grows) */
		for (uint64_t q = 0; q < r; q++) {
			uint64_t j = (ord ? ord[q] : (uint32_t)pk[q]) * c + k;
			double pr = prq[q], v = tau[j], nv = by_p ? v / pr : v;
			uint64_t in = xs[j] < pr * 0x1p53, m = 0 - in, b;
			kept += in;
			memcpy(&b, &nv, 8);
			b &= m;
			memcpy(&tau[j], &b, 8);
			if (l1) {
				double av = fabs(v);
				memcpy(&b, &av, 8);
				b &= m;
				a0 += av;
				memcpy(&av, &b, 8);
				a1 += av;
			}
		}
	}
	if (l1)
		l1[0] = a0, l1[1] = a1;
	return kept;
}

/*
 * tau_MTL of elements [j0, j0 + n) of a slab (n <= DELLA_TILE) from the
 * dropped tau' (nx x s), into m; tau' becomes the weighted values. Per
 * element, models in order: wt_i = w_i (tau'_i / div_i) (tau'_i where
 * div_i is 1: x / 1 is x), their sum from 0.0; with election, the wt_i
 * whose sign is the sum's (>= 0: positive) summed from 0.0 and divided
 * by the sum of their weights (1 if that is 0), unless --no-normalize.
 * Model by model over the elements, and without a branch (a value left
 * out adds +0.0, which changes no sum: neither sum can be -0.0), so
 * that the loops vectorise.
 */
#define DELLA_TILE 256
static void combine(const struct merge_ctx *p, double *tau, uint64_t s, uint64_t j0, size_t n,
                    const double *div, const double *wts, double *m)
{
	const struct della *ds = p->state;
	double sum[DELLA_TILE], c[DELLA_TILE];
	for (size_t j = 0; j < n; j++)
		sum[j] = 0.0;
	for (unsigned i = 0; i < ds->nx; i++) {
		double *v = tau + (size_t)i * s + j0, w = wts[i], d = div[i];
		if (d == 1.0)
			for (size_t j = 0; j < n; j++)
				v[j] = w * v[j], sum[j] += v[j];
		else
			for (size_t j = 0; j < n; j++)
				v[j] = w * (v[j] / d), sum[j] += v[j];
	}
	if (!ds->elect) {
		memcpy(m, sum, n * sizeof(double));
		return;
	}
	for (size_t j = 0; j < n; j++)
		m[j] = 0.0, c[j] = 0.0;
	for (unsigned i = 0; i < ds->nx; i++) {
		const double *v = tau + (size_t)i * s + j0;
		double w = wts[i];
		for (size_t j = 0; j < n; j++) {
			int pos = sum[j] >= 0.0;
			int sel = (pos & (v[j] > 0.0)) | (!pos & (v[j] < 0.0));
			m[j] += sel ? v[j] : 0.0;
			c[j] += sel ? w : 0.0;
		}
	}
	if (!p->o->no_normalize)
		for (size_t j = 0; j < n; j++)
			m[j] /= c[j] == 0.0 ? 1.0 : c[j];
}

/* Slabs of a job: load, drop, then the pass's sums or the output. */
LINES_HOT static int della_job(struct merge_ctx *p, struct pipe_job *job, void *scratch, int what)
{
	struct della *ds = D(p);
	const struct tensor *t = &p->t[job->tensor];
	uint64_t s = pipe_slab(t), r = t->rank < 2 ? s : t->shape[1];
	struct rows w = rows_of(scratch, ds->nx, ds->slab);
	const uint64_t *keys = ds->keys + job->tensor * ds->nx;
	const double *div = ds->div + job->tensor * ds->nx;
	const double *dt = ds->d + job->tensor * ds->nx, *wts = tensor_w(p, t);
	int f64 = f64_tensor(t);
	double l1[2 * LINES_MAX_MODELS] = {0}, nm[4] = {0};
	uint64_t kept[LINES_MAX_MODELS] = {0};

	for (unsigned i = 0; i < ds->nx && job->u1 > job->u0; i++) {
		double d = dt[i], lo = d - ds->eps[i], span = 2.0 * ds->eps[i];
		for (uint64_t q = 0; q < r && d < 1.0; q++)
			w.pr[(size_t)i * s + q] = r > 1 ? lo + ((double)q / (double)(r - 1)) * span : d;
	}
	for (uint64_t a = job->u0; a < job->u1; a += s) {
		size_t off = (size_t)(a - job->u0);
		tile_load(p->k, t->in_dt, job->in[0] + off * t->unit_in, s, w.b, w.tmp);
		for (uint64_t j = 0; j < s; j++) {
			if (!f64)
				w.b[j] = (float)w.b[j];
			w.raw[j] = 0.0;
		}
		for (unsigned i = 0; i < ds->nx; i++) {
			double *tau = w.tau + (size_t)i * s;
			tile_load(p->k, t->in_dt, job->in[i + 1] + off * t->unit_in, s, tau, w.tmp);
			for (uint64_t j = 0; j < s; j++) {
				tau[j] =
				    f64 ? tau[j] - w.b[j] : (double)((float)tau[j] - (float)w.b[j]);
				w.raw[j] += tau[j];
			}
			kept[i] += drop_slab(p, i, dt[i], keys[i], a, tau, s, r, f64, &w,
			                     what == DO_L1 ? l1 + 2 * i : NULL);
		}
		if (what == DO_L1)
			continue;
		for (uint64_t j0 = 0; j0 < s; j0 += DELLA_TILE) {
			size_t n = s - j0 < DELLA_TILE ? (size_t)(s - j0) : DELLA_TILE;
			double mt[DELLA_TILE];
			combine(p, w.tau, s, j0, n, div, wts, mt);
			for (size_t q = 0; q < n; q++) {
				uint64_t j = j0 + q;
				double m = mt[q];
				if (what == DO_NORMS && isfinite(m) && isfinite(w.raw[j])) {
					nm[0] += fabs(w.raw[j]), nm[1] += fabs(m);
					nm[2] += w.raw[j] * w.raw[j], nm[3] += m * m;
				}
				w.r[j] = fma(t->lambda, m, w.b[j]);
			}
		}
		if (what != DO_WRITE)
			continue;
		if (f64)
			for (uint64_t j = 0; j < s; j++)
				f64_store(job->out + off * t->unit_out, j, w.r[j]);
		else
			tile_store(p->k, t->out_dt, w.r, s, job->out + off * t->unit_out, w.tmp);
	}
	if (what == DO_L1)
		memcpy(job->part, l1, 2 * ds->nx * sizeof(double));
	else if (what == DO_NORMS)
		memcpy(job->part, nm, sizeof(nm));
	else
		for (unsigned i = 0; i < ds->nx; i++)
			job->part[i] = (double)kept[i];
	return 0;
}

LINES_HOT static int l1_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                   struct lines_error *err)
{
	(void)err;
	return della_job(p, job, scratch, DO_L1);
}

static int l1_reduce(struct merge_ctx *p, const struct pipe_job *job, struct lines_error *err)
{
	struct della *ds = D(p);
	double *l1 = ds->l1 + 2 * job->tensor * ds->nx;
	(void)err;
	for (unsigned q = 0; q < 2 * ds->nx; q++)
		l1[q] += job->part[q];
	return 0;
}

/* mergekit's rescale: times L1 / kept L1, not when either is below 1e-7
 * (or not finite) or the density is 1. */
static int l1_done(struct merge_ctx *p, struct lines_error *err)
{
	struct della *ds = D(p);
	(void)err;
	for (size_t q = 0; q < p->nt * ds->nx; q++) {
		double all = ds->l1[2 * q], k = ds->l1[2 * q + 1];
		int on = ds->d[q] < 1.0 && isfinite(all) && isfinite(k) && all >= 1e-7 &&
		         k >= 1e-7;
		ds->div[q] = on ? k / all : 1.0;
	}
	return 0;
}

LINES_HOT static int norms_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                      struct lines_error *err)
{
	(void)err;
	return della_job(p, job, scratch, DO_NORMS);
}

static int norms_reduce(struct merge_ctx *p, const struct pipe_job *job, struct lines_error *err)
{
	struct della *ds = D(p);
	(void)err;
	for (int i = 0; i < 4; i++)
		ds->acc[i] += job->part[i];
	return 0;
}

static int norms_done(struct merge_ctx *p, struct lines_error *err)
{
	struct della *ds = D(p);
	return norm_sums_alpha(p, ds->acc, 1, err);
}

LINES_HOT static int write_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                      struct lines_error *err)
{
	(void)err;
	return della_job(p, job, scratch, DO_WRITE);
}

static int write_reduce(struct merge_ctx *p, const struct pipe_job *job, struct lines_error *err)
{
	struct della *ds = D(p);
	(void)err;
	if (!p->t[job->tensor].merge)
		return 0;
	for (unsigned i = 0; i < ds->nx; i++)
		ds->kept[i] += (uint64_t)job->part[i];
	ds->elements += job->u1 - job->u0;
	return 0;
}

/* The densities and epsilons: both ends of p inside (0, 1). */
static int della_check(const struct lines_merge_opts *o, struct lines_error *err)
{
	for (size_t i = 0; i < o->nmodels; i++) {
		double d = density_of(o, (unsigned)i), e = eps_of(o, (unsigned)i);
		RETURN_ERROR_IF(!isfinite(e), err, LINES_EUSAGE, NULL, NULL,
		                "--epsilon must be a finite number");
		RETURN_ERROR_IF(
		    d < 1.0 && !(d - e > 0.0 && d + e < 1.0), err, LINES_EUSAGE, NULL, NULL,
		    "della: model %zu: density %g and epsilon %g make keep probabilities "
		    "from %g to %g; both must be inside (0, 1)",
		    i + 1, d, e, d - e, d + e);
	}
	RETURN_ERROR_IF(o->dare_elect, err, LINES_EUSAGE, NULL, NULL,
	                "della takes no --dare-elect: -m della elects, -m della_linear does not");
	return 0;
}

static void della_free(struct merge_ctx *p)
{
	struct della *ds = D(p);
	if (!ds)
		return;
	free(ds->keys);
	free(ds->d);
	free(ds->div);
	free(ds->l1);
	free(ds);
	p->state = NULL;
}

static struct pass *add_pass(struct merge_ctx *p, const char *name, int writes,
                             int (*work)(struct merge_ctx *, struct pipe_job *, void *,
                                         struct lines_error *),
                             unsigned part)
{
	struct della *ds = D(p);
	struct pass *a = passes_add(p->passes);
	a->name = name;
	a->writes = writes;
	a->rows = 1;
	a->scratch = scratch_bytes(ds->nx, ds->slab);
	a->part_job = part;
	a->want = writes ? want_all : want_merged;
	a->work = work;
	return a;
}

static int setup(struct merge_ctx *p, int elect, struct lines_error *err)
{
	struct della *ds = calloc(1, sizeof(*ds));
	unsigned nx = p->nmodels;
	int norms = p->o->lines && p->o->alpha_auto, l1 = p->o->rescale == LINES_RESCALE_L1;
	size_t nt = p->nt ? p->nt : 1;

	RETURN_ERROR_IF(!ds, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	p->state = ds;
	RETURN_ERROR_IF(nx > LINES_MAX_MODELS, err, LINES_EUSAGE, NULL, NULL,
	                "della merges at most %d models", LINES_MAX_MODELS);
	RETURN_ERROR_IF((norms || l1) && p->single_pass, err, LINES_EUSAGE, NULL, NULL,
	                "standard input can be read only once, but della with --rescale or "
	                "automatic alpha reads its inputs twice: give that model as a file");
	ds->nx = nx;
	ds->elect = elect;
	ds->slab = 1;
	for (size_t t = 0; t < p->nt; t++) {
		uint64_t s = pipe_slab(&p->t[t]);
		RETURN_ERROR_IF(p->t[t].merge && s > UINT32_MAX, err, LINES_EUNSUPPORTED, NULL,
		                p->t[t].name, "a row of more than 2^32 elements");
		if (p->t[t].merge && s > ds->slab)
			ds->slab = s;
	}
	ds->keys = calloc(nt * nx, sizeof(*ds->keys));
	ds->div = calloc(nt * nx, sizeof(*ds->div));
	ds->l1 = calloc(nt * nx * 2, sizeof(*ds->l1));
	ds->d = calloc(nt * nx, sizeof(*ds->d));
	RETURN_ERROR_IF(!ds->keys || !ds->div || !ds->l1 || !ds->d, err, LINES_ENOMEM, NULL, NULL,
	                "out of memory");
	for (unsigned i = 0; i < nx; i++)
		ds->eps[i] = eps_of(p->o, i);
	for (size_t t = 0; t < p->nt; t++) {
		uint64_t h = XXH3_64bits(p->t[t].name, strlen(p->t[t].name));
		for (unsigned i = 0; i < nx; i++) {
			/* the tensor's own density (a configuration's), or the run's */
			double d = tensor_density(p, &p->t[t], i), e = ds->eps[i];
			RETURN_ERROR_IF(p->t[t].merge && d < 1.0 && !(d - e > 0.0 && d + e < 1.0), err,
			                LINES_EUSAGE, NULL, p->t[t].name,
			                "della: model %u: density %g and epsilon %g make keep "
			                "probabilities from %g to %g; both must be inside (0, 1)",
			                i + 1, d, e, d - e, d + e);
			ds->d[t * nx + i] = d;
			ds->keys[t * nx + i] = dare_key(p->o->seed, i, h);
			ds->div[t * nx + i] = 1.0;
		}
	}
	if (l1) {
		struct pass *a = add_pass(p, "rescale", 0, l1_work, 2 * nx);
		a->reduce = l1_reduce;
		a->done = l1_done;
	}
	if (norms) {
		struct pass *a = add_pass(p, "norms", 0, norms_work, 4);
		a->reduce = norms_reduce;
		a->done = norms_done;
		p->sc->measured = 1;
	}
	add_pass(p, "write", 1, write_work, nx)->reduce = write_reduce;
	return 0;
}

static int della_setup(struct merge_ctx *p, struct lines_error *err)
{
	return setup(p, 1, err);
}
static int della_linear_setup(struct merge_ctx *p, struct lines_error *err)
{
	return setup(p, 0, err);
}

static const char *rescale_name(const struct lines_merge_opts *o)
{
	return o->rescale == LINES_RESCALE_L1     ? "l1"
	       : o->rescale == LINES_RESCALE_NONE ? "none"
	                                          : "p";
}

static void della_meta(const struct merge_ctx *p, void (*put)(void *, const char *, const char *),
                       void *arg)
{
	char v[40 * LINES_MAX_MODELS] = "";
	size_t n = 0;
	density_meta(p, put, arg);
	for (unsigned i = 0; i < (p->o->della_epsilons ? p->nmodels : 1) && n + 40 < sizeof(v);
	     i++) {
		if (i)
			v[n++] = ',';
		lines_fmt_double(v + n, sizeof(v) - n, eps_of(p->o, i));
		n += strlen(v + n);
	}
	put(arg, "lines.epsilon", v);
	snprintf(v, sizeof(v), "%llu", (unsigned long long)p->o->seed);
	put(arg, "lines.seed", v);
	put(arg, "lines.rescale", rescale_name(p->o));
	if (p->o->method == LINES_M_DELLA && p->o->no_normalize)
		put(arg, "lines.normalize", "false");
}

static json_t *della_report(const struct merge_ctx *p)
{
	const struct della *ds = p->state;
	json_t *m = json_object(), *e, *k;
	char seed[24]; /* a string: JSON readers lose integers above 2^53 */
	if (!m)
		return NULL;
	snprintf(seed, sizeof(seed), "%llu", (unsigned long long)p->o->seed);
	density_report(p, m);
	e = p->o->della_epsilons ? json_array() : json_real(p->o->della_epsilon);
	for (unsigned i = 0; p->o->della_epsilons && i < p->nmodels; i++)
		json_array_append_new(e, json_real(p->o->della_epsilons[i]));
	json_object_set_new(m, "epsilon", e);
	json_object_set_new(m, "seed", json_string(seed));
	json_object_set_new(m, "rescale", json_string(rescale_name(p->o)));
	json_object_set_new(m, "elect", json_boolean(p->o->method == LINES_M_DELLA));
	json_object_set_new(m, "normalize",
	                    json_boolean(p->o->method == LINES_M_DELLA && !p->o->no_normalize));
	/* what the writing pass kept of each task vector, of how many */
	k = json_array();
	for (unsigned i = 0; ds && i < ds->nx; i++)
		json_array_append_new(k, json_integer((json_int_t)ds->kept[i]));
	json_object_set_new(m, "kept", k);
	json_object_set_new(m, "elements", json_integer(ds ? (json_int_t)ds->elements : 0));
	json_object_set_new(m, "longest_slab", json_integer(ds ? (json_int_t)ds->slab : 0));
	return m;
}

#define DELLA_FLAGS                                                                                \
	(METHOD_USES_WEIGHTS | METHOD_USES_DENSITY | METHOD_USES_SEED | METHOD_USES_RESCALE |      \
	 METHOD_USES_EPSILON | METHOD_TENSOR_W | METHOD_TENSOR_DENSITY)

const struct method method_della = {
    .name = "della",
    .summary = "DELLA: drops by magnitude rank in each row, rescaled, then TIES's election",
    .flags = DELLA_FLAGS | METHOD_USES_NORMALIZE,
    .check = della_check,
    .setup = della_setup,
    .meta = della_meta,
    .report = della_report,
    .free = della_free,
};

const struct method method_della_linear = {
    .name = "della_linear",
    .summary = "DELLA without election: drops by magnitude rank in each row, rescaled, summed",
    .flags = DELLA_FLAGS,
    .check = della_check,
    .setup = della_linear_setup,
    .meta = della_meta,
    .report = della_report,
    .free = della_free,
};
