/*
 * merge_dare.c -- DARE: drop and rescale, then sum (or elect as TIES).
 *
 * Each entry of task vector i is kept with probability rho_i (--density,
 * one for all or one per model) and divided by r_i (float32, one
 * rounding): rho_i by default, 1 with --no-rescale, or with --rescale
 * (mergekit's) the ratio of the L1 norms of the kept entries and of all
 * of them in the tensor, which a read-only `rescale` pass measures first
 * (per block of the tensor, in order: the same for any chunking). The
 * weighted kept entries are summed in float64 (dare_linear), or with
 * --dare-elect (dare_ties) their signs are elected by mass (the model's
 * majority sign breaking exact ties) and the agreeing entries averaged
 * over the sum of their weights (mergekit's normalize; elect_divisors()),
 * or summed with --no-normalize. Whether an entry
 * is kept is decided by a counter-based hash of (seed, task, the XXH3 of
 * the tensor's name, the element's index): a pure function, so the output
 * is the same for any chunk size, thread count or reader, on any machine.
 * The weights and densities may differ between tensors (a
 * configuration's gradients and filters: tensor_w(), tensor_density()).
 *
 * Election needs the majority sign before the first byte, and automatic
 * alpha needs ||tau_MTL||: a read-only `stats` pass gets both (an element
 * whose kept entries sum to exactly zero counts both ways until the
 * majority is known). Without either, there is only the writing pass.
 *
 * An F64 tensor written as F64 takes the same steps in float64 (f64.h):
 * the same drops, the kept values divided by rho in double, summed or
 * elected and added back in double.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <xxhash.h>

#include "f64.h"
#include "kern_ties.h"
#include "method.h"

struct dare {
	unsigned nx;
	uint64_t *keys; /* nt x nx */
	uint64_t *limit; /* nt x nx: dare_limit() of each model's density in each tensor */
	/* nt x nx: what the kept values of a task in a tensor are divided by
	 * (its density, 1, or with --rescale kept L1 / L1 from the rescale
	 * pass) */
	double *div;
	double *l1; /* nt x nx x 2, with --rescale: L1 of tau', of the kept */
	const double *c; /* the divisors of the elected mean: elect_divisors() */
	double cbuf[LINES_MAX_MODELS];
	/* weights per tensor (tensor_w()): per tensor nx divisors and a flag,
	 * 1 for the kernels' count (elect_divisors()'s NULL); NULL: c */
	double *cten;
	uint32_t *zero; /* nx thresholds of 0: election keeps every nonzero value */
	double *ones;
	double num[2], det[2], zpos[2], zneg[2]; /* the totals of tsum */
	/* nt x 8: each tensor's num, det, zpos and zneg, added in output
	 * order when the stats pass is done (the same for any --part) */
	double *tsum;
	int64_t votes;
	int maj;
	int elected; /* the stats pass ran with --dare-elect: maj was elected */
};

static struct dare *D(struct merge_ctx *p) { return p->state; }
/* The limits of TENSOR's drops, one per task. */
static const uint64_t *lim(const struct dare *ds, size_t tensor)
{
	return ds->limit + tensor * ds->nx;
}
/* The divisors of the elected mean of TENSOR's elements. */
static const double *divs(const struct dare *ds, size_t tensor)
{
	if (!ds->cten)
		return ds->c;
	const double *c = ds->cten + tensor * (ds->nx + 1);
	return c[ds->nx] != 0.0 ? NULL : c; /* after its nx, 1: the kernels' count */
}

/* The scratch of a worker: the base, the nx task vectors and their kept
 * values (the rescale pass), two tau_MTL and two signs per element of a
 * tile. */
struct tile {
	float *bt, *tp, *kp;
	double *mp, *mn;
	signed char *sp, *sn;
};

static size_t scratch_bytes(unsigned nx)
{
	return (size_t)KERN_TILE * (sizeof(float) * (2 * nx + 1) + 2 * sizeof(double) + 2);
}

static struct tile tile_of(void *scratch, unsigned nx)
{
	struct tile tl;
	tl.bt = scratch;
	tl.tp = tl.bt + KERN_TILE;
	tl.kp = tl.tp + (size_t)nx * KERN_TILE;
	tl.mp = (double *)(void *)(tl.kp + (size_t)nx * KERN_TILE);
	tl.mn = tl.mp + KERN_TILE;
	tl.sp = (signed char *)(tl.mn + KERN_TILE);
	tl.sn = tl.sp + KERN_TILE;
	return tl;
}

/*
 * The nn elements of a job from its element j0 on: drop and rescale each
 * task vector, then tau_MTL in mtl[] as the sum of the kept values (sign
 * 1) or, with election, as ties_elect() with every threshold 0 and the
 * majority sign maj.
 */
static void dare_tile(struct merge_ctx *p, const struct pipe_job *job, const struct tile *tl, size_t j0,
                      size_t nn, int maj, double *mtl, signed char *sign)
{
	const struct tensor *t = &p->t[job->tensor];
	struct dare *ds = D(p);
	const uint64_t *keys = ds->keys + job->tensor * ds->nx;
	const void *xs[LINES_MAX_MODELS];

	for (unsigned i = 0; i < ds->nx; i++)
		xs[i] = job->in[i + 1] + j0 * t->unit_in;
	ties_taus(p->k, t->in_dt, xs, ds->nx, job->in[0] + j0 * t->unit_in, tensor_w(p, t), nn, tl->bt,
	          tl->tp);
	if (!p->o->dare_elect) { /* the drops and their sum in one step; tp as it was */
		dare_sum_tile(p->k, tl->tp, nn, ds->nx, keys, job->u0 + j0, lim(ds, job->tensor),
		              ds->div + job->tensor * ds->nx, mtl);
		memset(sign, 1, nn);
		return;
	}
	for (unsigned i = 0; i < ds->nx; i++)
		dare_drop_tile(p->k, tl->tp + (size_t)i * nn, nn, keys[i], job->u0 + j0, lim(ds, job->tensor)[i],
		               ds->div[job->tensor * ds->nx + i]);
	ties_elect_tile(p->k, tl->tp, nn, ds->nx, ds->zero, maj, divs(ds, job->tensor), mtl, sign);
}

/*
 * An F64 tensor written as F64, one element at a time in float64 (f64.h):
 * the same drop as dare_drop (the same hash of the same element index),
 * the kept values divided by the density in double, then summed or
 * elected in double. Returns theta_0; tau[] gets the dropped and rescaled
 * tau', *raw the sum of the raw task vectors (alpha's numerator).
 */
static double dare_taus_f64(struct merge_ctx *p, const struct pipe_job *job, size_t j,
                            double *tau, double *raw)
{
	struct dare *ds = D(p);
	const uint64_t *keys = ds->keys + job->tensor * ds->nx;
	double d[LINES_MAX_MODELS],
	    b = f64_taus(job, ds->nx, tensor_w(p, &p->t[job->tensor]), j, tau, d);
	*raw = 0.0;
	for (unsigned i = 0; i < ds->nx; i++) {
		tau[i] = kern_dare_kept(keys[i], job->u0 + j, lim(ds, job->tensor)[i])
		                 ? tau[i] / ds->div[job->tensor * ds->nx + i]
		                 : 0.0;
		*raw += d[i];
	}
	return b;
}

/* tau_MTL of an element from its dropped tau' (dare_tile's rule). */
static int dare_mtl_f64(const struct merge_ctx *p, const double *tau, unsigned nx, int maj,
                        double *mtl)
{
	static const uint64_t zero[LINES_MAX_MODELS];
	if (p->o->dare_elect)
		return f64_elect(tau, nx, zero, maj, ((const struct dare *)p->state)->c, mtl);
	*mtl = 0.0;
	for (unsigned i = 0; i < nx; i++)
		*mtl += tau[i];
	return 1;
}

/* The stats pass over an F64 job: stats_work's sums, in float64. */
static void stats_f64(struct merge_ctx *p, struct pipe_job *job, size_t n)
{
	unsigned nx = D(p)->nx;
	int64_t votes = 0;
	for (unsigned b = 0; b < job->nblocks; b++) {
		double s1[KERN_LANES] = {0}, s2[KERN_LANES] = {0}, dl[KERN_LANES] = {0},
		       dq[KERN_LANES] = {0}, pl[KERN_LANES] = {0}, pq[KERN_LANES] = {0},
		       nl[KERN_LANES] = {0}, nq[KERN_LANES] = {0};
		size_t b0 = (size_t)b * KERN_BLOCK, b1 = b0 + KERN_BLOCK < n ? b0 + KERN_BLOCK : n;
		for (size_t j = b0; j < b1; j++) {
			unsigned l = (unsigned)((j - b0) % KERN_LANES);
			double tau[LINES_MAX_MODELS], raw, mp, mn = 0.0;
			dare_taus_f64(p, job, j, tau, &raw);
			f64_norm_add(s1, s2, l, raw);
			int sp = dare_mtl_f64(p, tau, nx, 1, &mp), zero = sp == 0;
			if (zero && mp != 0.0)
				dare_mtl_f64(p, tau, nx, -1, &mn);
			int fin = isfinite(mp) && isfinite(mn);
			double a = fin ? fabs(mp) : 0.0, c = fin ? fabs(mn) : 0.0;
			votes += sp;
			dl[l] += zero ? 0.0 : a, dq[l] += zero ? 0.0 : a * a;
			pl[l] += zero ? a : 0.0, pq[l] += zero ? a * a : 0.0;
			nl[l] += zero ? c : 0.0, nq[l] += zero ? c * c : 0.0;
		}
		double *blk = job->part + 1 + 8 * (size_t)b;
		blk[0] = kern_lane_sum(s1), blk[1] = kern_lane_sum(s2);
		blk[2] = kern_lane_sum(dl), blk[3] = kern_lane_sum(dq);
		blk[4] = kern_lane_sum(pl), blk[5] = kern_lane_sum(pq);
		blk[6] = kern_lane_sum(nl), blk[7] = kern_lane_sum(nq);
	}
	job->part[0] = (double)votes;
}

/* ---- rescale (--rescale) ------------------------------------------------------ */

/*
 * s[2q] += |a_q[j]| and s[2q + 1] += |k_q[j]| for the four rows q, j in
 * order: the sums of the rescale pass, each in the order of its elements,
 * four tasks at a time so that the eight chains of additions overlap.
 */
static const float l1_none[KERN_TILE]; /* the rows of absent tasks */

static void l1_rows(const float *const a[4], const float *const k[4], size_t n, double *s)
{
	double a0 = s[0], k0 = s[1], a1 = s[2], k1 = s[3], a2 = s[4], k2 = s[5], a3 = s[6], k3 = s[7];
	for (size_t j = 0; j < n; j++) {
		a0 += fabs((double)a[0][j]), k0 += fabs((double)k[0][j]);
		a1 += fabs((double)a[1][j]), k1 += fabs((double)k[1][j]);
		a2 += fabs((double)a[2][j]), k2 += fabs((double)k[2][j]);
		a3 += fabs((double)a[3][j]), k3 += fabs((double)k[3][j]);
	}
	s[0] = a0, s[1] = k0, s[2] = a1, s[3] = k1, s[4] = a2, s[5] = k2, s[6] = a3, s[7] = k3;
}

/* Per block of a job and per task: the L1 norm of tau' and of its kept
 * values, in float64, elements in order (blk[2i], blk[2i + 1]). */
LINES_HOT static int rescale_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                        struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	struct dare *ds = D(p);
	struct tile tl = tile_of(scratch, ds->nx);
	const uint64_t *keys = ds->keys + job->tensor * ds->nx;
	const void *xs[LINES_MAX_MODELS];
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;

	for (unsigned b = 0; b < job->nblocks; b++) {
		double *blk = job->part + 2 * (size_t)ds->nx * b;
		size_t b0 = (size_t)b * KERN_BLOCK, b1 = b0 + KERN_BLOCK < n ? b0 + KERN_BLOCK : n;
		memset(blk, 0, 2 * ds->nx * sizeof(double));
		for (size_t j = b0; f64_tensor(t) && j < b1; j++) {
			double tau[LINES_MAX_MODELS];
			f64_taus(job, ds->nx, tensor_w(p, t), j, tau, NULL);
			for (unsigned i = 0; i < ds->nx; i++) {
				blk[2 * i] += fabs(tau[i]);
				blk[2 * i + 1] += kern_dare_kept(keys[i], job->u0 + j, lim(ds, job->tensor)[i])
				                          ? fabs(tau[i])
				                          : 0.0;
			}
		}
		for (size_t j0 = b0; !f64_tensor(t) && j0 < b1; j0 += KERN_TILE) {
			size_t nn = b1 - j0 < KERN_TILE ? b1 - j0 : KERN_TILE;
			for (unsigned i = 0; i < ds->nx; i++)
				xs[i] = job->in[i + 1] + j0 * t->unit_in;
			ties_taus(p->k, t->in_dt, xs, ds->nx, job->in[0] + j0 * t->unit_in, tensor_w(p, t), nn,
			          tl.bt, tl.tp);
			/* kp: the kept values, +0.0 for the others (adding +0.0 to
			 * a sum of magnitudes changes nothing) */
			for (unsigned i = 0; i < ds->nx; i++)
				dare_keep_tile(p->k, tl.tp + (size_t)i * nn, tl.kp + (size_t)i * nn, nn,
				               keys[i], job->u0 + j0, lim(ds, job->tensor)[i]);
			for (unsigned i0 = 0; i0 < ds->nx; i0 += 4) {
				const float *a[4], *k[4];
				double s[8], junk[8];
				for (unsigned q = 0; q < 4; q++) {
					int in = i0 + q < ds->nx;
					a[q] = in ? tl.tp + (size_t)(i0 + q) * nn : l1_none;
					k[q] = in ? tl.kp + (size_t)(i0 + q) * nn : l1_none;
					s[2 * q] = in ? blk[2 * (i0 + q)] : 0.0;
					s[2 * q + 1] = in ? blk[2 * (i0 + q) + 1] : 0.0;
				}
				l1_rows(a, k, nn, s);
				for (unsigned q = 0; q < 8; q++)
					*(i0 + q / 2 < ds->nx ? &blk[2 * i0 + q] : &junk[q]) = s[q];
			}
		}
	}
	return 0;
}

static int rescale_reduce(struct merge_ctx *p, const struct pipe_job *job, struct lines_error *err)
{
	struct dare *ds = D(p);
	double *l1 = ds->l1 + 2 * job->tensor * ds->nx;
	(void)err;
	for (unsigned b = 0; b < job->nblocks; b++)
		for (unsigned q = 0; q < 2 * ds->nx; q++)
			l1[q] += job->part[2 * (size_t)ds->nx * b + q];
	return 0;
}

/* mergekit's rescale: the kept values times L1 / (kept L1), that is
 * divided by kept L1 / L1; not when either is below 1e-7 (or not finite)
 * or the density is 1. */
static int rescale_done(struct merge_ctx *p, struct lines_error *err)
{
	struct dare *ds = D(p);
	(void)err;
	for (size_t q = 0; q < p->nt * ds->nx; q++) {
		double all = ds->l1[2 * q], k = ds->l1[2 * q + 1];
		int on = tensor_density(p, &p->t[q / ds->nx], (unsigned)(q % ds->nx)) < 1.0 &&
		         isfinite(all) &&
		         isfinite(k) && all >= 1e-7 && k >= 1e-7;
		ds->div[q] = on ? k / all : 1.0;
	}
	return 0;
}

/* ---- stats ------------------------------------------------------------------- */

LINES_HOT static int stats_work(struct merge_ctx *p, struct pipe_job *job, void *scratch, struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	struct dare *ds = D(p);
	struct tile tl = tile_of(scratch, ds->nx);
	const void *xs[LINES_MAX_MODELS];
	size_t n = (size_t)(job->u1 - job->u0);
	int64_t votes = 0;
	int unit = 1; /* every weight is 1: the tiles hold the task vectors */
	(void)err;

	for (unsigned i = 0; i < ds->nx; i++)
		unit &= tensor_w(p, t)[i] == 1.0;
	if (f64_tensor(t)) {
		stats_f64(p, job, n);
		return 0;
	}
	for (unsigned b = 0; b < job->nblocks; b++) {
		struct kern_norms nm;
		double dl[KERN_LANES] = {0}, dq[KERN_LANES] = {0}, pl[KERN_LANES] = {0},
		       pq[KERN_LANES] = {0}, nl[KERN_LANES] = {0}, nq[KERN_LANES] = {0};
		size_t b0 = (size_t)b * KERN_BLOCK, b1 = b0 + KERN_BLOCK < n ? b0 + KERN_BLOCK : n;
		memset(&nm, 0, sizeof(nm));
		for (size_t j0 = b0; j0 < b1; j0 += KERN_TILE) {
			size_t nn = b1 - j0 < KERN_TILE ? b1 - j0 : KERN_TILE;
			int both = 0;
			for (unsigned i = 0; i < ds->nx; i++)
				xs[i] = job->in[i + 1] + j0 * t->unit_in;
			dare_tile(p, job, &tl, j0, nn, 1, tl.mp, tl.sp);
			if (!p->o->dare_elect) {
				/* every sign 1, no zero sum to settle: TIES's sums of the
				 * decided elements (the loop below without election), and
				 * with every weight 1 the norm of the raw sum from the
				 * tiles (the task vectors themselves) without decoding
				 * the inputs again */
				unsigned char *none = (unsigned char *)tl.sn;
				if (unit)
					ties_norm_sum(p->k->wide, tl.tp, ds->nx, nn, nm.s1, nm.s2);
				else
					p->k->norm_lin(t->in_dt, xs, ds->nx, tl.bt, ds->ones, nn, &nm);
				memset(none, 0, nn);
				votes += ties_decided(p->k, tl.mp, tl.sp, none, nn, dl, dq);
				continue;
			}
			/* the norm of the sum of the task vectors (tl.bt: the base) */
			p->k->norm_lin(t->in_dt, xs, ds->nx, tl.bt, ds->ones, nn, &nm);
			/* a zero sum with something kept: the other majority too (when
			 * nothing is kept, tau_MTL is 0 both ways) */
			for (size_t j = 0; j < nn; j++)
				both |= tl.sp[j] == 0 && tl.mp[j] != 0.0;
			if (both) /* the same dropped values, the other majority */
				ties_elect_tile(p->k, tl.tp, nn, ds->nx, ds->zero, -1, divs(ds, job->tensor), tl.mn, tl.sn);
			/* without branches: the signs are random, so a branch per
			 * element would be mispredicted half the time; adding +0.0
			 * leaves these sums of magnitudes unchanged */
			for (size_t j = 0; j < nn; j++) {
				unsigned l = (unsigned)(j % KERN_LANES); /* j0 - b0: a multiple */
				double mp = tl.mp[j];
				int zero = tl.sp[j] == 0;
				double mn = zero && mp != 0.0 ? tl.mn[j] : 0.0;
				int fin = isfinite(mp) && isfinite(mn);
				double a = fin ? fabs(mp) : 0.0, c = fin ? fabs(mn) : 0.0;
				votes += tl.sp[j];
				dl[l] += zero ? 0.0 : a, dq[l] += zero ? 0.0 : a * a;
				pl[l] += zero ? a : 0.0, pq[l] += zero ? a * a : 0.0;
				nl[l] += zero ? c : 0.0, nq[l] += zero ? c * c : 0.0;
			}
		}
		double *blk = job->part + 1 + 8 * (size_t)b;
		blk[0] = kern_lane_sum(nm.s1), blk[1] = kern_lane_sum(nm.s2);
		blk[2] = kern_lane_sum(dl), blk[3] = kern_lane_sum(dq);
		blk[4] = kern_lane_sum(pl), blk[5] = kern_lane_sum(pq);
		blk[6] = kern_lane_sum(nl), blk[7] = kern_lane_sum(nq);
	}
	job->part[0] = (double)votes;
	return 0;
}

static int stats_reduce(struct merge_ctx *p, const struct pipe_job *job, struct lines_error *err)
{
	struct dare *ds = D(p);
	(void)err;
	double *ts = ds->tsum + 8 * job->tensor;
	ds->votes += (int64_t)job->part[0];
	for (unsigned b = 0; b < job->nblocks; b++) {
		const double *blk = job->part + 1 + 8 * (size_t)b;
		for (int j = 0; j < 8; j++)
			ts[j] += blk[j];
	}
	return 0;
}

static int stats_done(struct merge_ctx *p, struct lines_error *err)
{
	struct dare *ds = D(p);
	double sum[8] = {0};
	for (size_t t = 0; t < p->nt; t++)
		for (int j = 0; j < 8; j++)
			sum[j] += ds->tsum[8 * t + j];
	memcpy(ds->num, sum, sizeof(ds->num));
	memcpy(ds->det, sum + 2, sizeof(ds->det));
	memcpy(ds->zpos, sum + 4, sizeof(ds->zpos));
	memcpy(ds->zneg, sum + 6, sizeof(ds->zneg));
	ds->maj = ds->votes >= 0 ? 1 : -1;
	ds->elected = p->o->dare_elect;
	double l1 = ds->det[0] + (ds->maj > 0 ? ds->zpos[0] : ds->zneg[0]);
	double l2 = ds->det[1] + (ds->maj > 0 ? ds->zpos[1] : ds->zneg[1]);
	return scales_from_norms(p->sc, p->o->norm_p == 2 ? sqrt(ds->num[1]) : ds->num[0],
	                         p->o->norm_p == 2 ? sqrt(l2) : l1, 1, err);
}

/* ---- write ------------------------------------------------------------------------ */
LINES_HOT static int write_work(struct merge_ctx *p, struct pipe_job *job, void *scratch, struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	struct dare *ds = D(p);
	struct tile tl = tile_of(scratch, ds->nx);
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;

	for (size_t j = 0; f64_tensor(t) && j < n; j++) {
		double tau[LINES_MAX_MODELS], raw, m, b = dare_taus_f64(p, job, j, tau, &raw);
		dare_mtl_f64(p, tau, ds->nx, ds->maj, &m);
		f64_finish(job->out, j, b, m, t->lambda);
		for (unsigned v = 0; v < job->nvout; v++) /* a sweep: the same m */
			f64_finish(job->vout[v], j, b, m, pipe_job_lambda(job, v));
	}
	for (size_t j0 = 0; !f64_tensor(t) && j0 < n; j0 += KERN_TILE) {
		size_t nn = n - j0 < KERN_TILE ? n - j0 : KERN_TILE;
		dare_tile(p, job, &tl, j0, nn, ds->maj, tl.mp, tl.sp);
		p->k->finish(t->out_dt, job->out + j0 * t->unit_out, tl.bt, tl.mp, t->lambda, nn);
		for (unsigned v = 0; v < job->nvout; v++)
			p->k->finish(t->out_dt, job->vout[v] + j0 * t->unit_out, tl.bt, tl.mp,
			             pipe_job_lambda(job, v), nn);
	}
	return 0;
}

static void dare_free(struct merge_ctx *p)
{
	struct dare *ds = D(p);
	if (!ds)
		return;
	free(ds->keys);
	free(ds->limit);
	free(ds->cten);
	free(ds->div);
	free(ds->l1);
	free(ds->zero);
	free(ds->ones);
	free(ds->tsum);
	free(ds);
	p->state = NULL;
}

/* The state's tables: the keys of the drops, and what the kept values
 * are divided by until the rescale pass knows better. */
static int dare_tables(struct merge_ctx *p, struct dare *ds)
{
	unsigned nx = ds->nx;
	size_t nt = p->nt ? p->nt : 1;
	ds->keys = calloc(nt * nx, sizeof(*ds->keys));
	ds->div = calloc(nt * nx, sizeof(*ds->div));
	ds->l1 = calloc(nt * nx * 2, sizeof(*ds->l1));
	ds->ones = calloc(nx, sizeof(*ds->ones));
	ds->zero = calloc(nx, sizeof(*ds->zero));
	ds->tsum = calloc(nt * 8, sizeof(*ds->tsum));
	ds->limit = calloc(nt * nx, sizeof(*ds->limit));
	if (!ds->keys || !ds->div || !ds->l1 || !ds->ones || !ds->zero || !ds->tsum || !ds->limit)
		return -1;
	for (unsigned i = 0; i < nx; i++)
		ds->ones[i] = 1.0;
	for (size_t t = 0; t < p->nt; t++) {
		uint64_t h = XXH3_64bits(p->t[t].name, strlen(p->t[t].name));
		for (unsigned i = 0; i < nx; i++) {
			double rho = tensor_density(p, &p->t[t], i); /* the tensor's own, or the run's */
			ds->keys[t * nx + i] = dare_key(p->o->seed, i, h);
			ds->limit[t * nx + i] = dare_limit(rho);
			ds->div[t * nx + i] = p->o->rescale == LINES_RESCALE_DENSITY ? rho : 1.0;
		}
	}
	if (p->tensor_w) { /* each tensor its own weights: its own divisors */
		if (!(ds->cten = calloc(nt * (nx + 1), sizeof(double))))
			return -1;
		for (size_t t = 0; t < p->nt; t++) {
			const double *w = tensor_w(p, &p->t[t]);
			double *c = ds->cten + t * (nx + 1);
			int ones = !p->o->no_normalize;
			for (unsigned i = 0; i < nx; i++) {
				c[i] = p->o->no_normalize ? 0.0 : w[i];
				ones &= w[i] == 1.0;
			}
			c[nx] = ones;
		}
	}
	return 0;
}

static struct pass *add_pass(struct merge_ctx *p, const char *name, int writes,
                     int (*work)(struct merge_ctx *, struct pipe_job *, void *,
                                 struct lines_error *))
{
	struct pass *a = passes_add(p->passes);
	a->name = name;
	a->writes = writes;
	a->scratch = scratch_bytes(D(p)->nx);
	a->want = writes ? want_all : want_merged;
	a->work = work;
	return a;
}

static int dare_setup(struct merge_ctx *p, struct lines_error *err)
{
	struct dare *ds = calloc(1, sizeof(*ds));
	unsigned nx = p->nmodels;
	int stats = p->o->dare_elect || (p->o->lines && p->o->alpha_auto);
	int l1 = p->o->rescale == LINES_RESCALE_L1;

	RETURN_ERROR_IF(!ds, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	p->state = ds;
	RETURN_ERROR_IF(nx > LINES_MAX_MODELS, err, LINES_EUSAGE, NULL, NULL, "DARE merges at most %d models", LINES_MAX_MODELS);
	RETURN_ERROR_IF((stats || l1) && p->single_pass, err, LINES_EUSAGE, NULL, NULL,
	                "standard input can be read only once, but DARE with --dare-elect, "
	                "--rescale or automatic alpha reads its inputs twice: give that model as "
	                "a file");
	ds->nx = nx;
	ds->maj = 1;

	ds->c = elect_divisors(p, ds->cbuf);
	RETURN_ERROR_IF(dare_tables(p, ds) < 0, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	if (l1) {
		struct pass *r = add_pass(p, "rescale", 0, rescale_work);
		r->part_block = 2 * nx;
		r->reduce = rescale_reduce;
		r->done = rescale_done;
	}
	if (stats) {
		struct pass *a = add_pass(p, "stats", 0, stats_work);
		a->part_job = 1;
		a->part_block = 8;
		a->reduce = stats_reduce;
		a->done = stats_done;
		a->stats = 1; /* --part: one round (dare_stats_save) */
		if (p->o->lines && p->o->alpha_auto)
			p->sc->measured = 1;
	}
	add_pass(p, "write", 1, write_work)->sweeps = 1; /* the drops once, finished per value */
	return 0;
}

/* --part: the stats pass's round, each tensor's eight sums (hex floats)
 * and the votes (an integer: they add exactly). */
static json_t *dare_stats_save(struct merge_ctx *p, unsigned r, size_t t0, size_t t1)
{
	struct dare *ds = D(p);
	json_t *o = json_object(), *rows = json_array(), *tot = json_array();
	(void)r;
	if (!o || !rows || !tot) {
		json_decref(o), json_decref(rows), json_decref(tot);
		return NULL;
	}
	for (size_t t = t0; t < t1; t++) {
		json_t *row = json_array();
		for (int j = 0; j < 8; j++)
			json_array_append_new(row, json_hexf(ds->tsum[8 * t + j]));
		json_array_append_new(rows, row);
	}
	json_array_append_new(tot, json_integer((json_int_t)ds->votes));
	json_object_set_new(o, "kind", json_string("dare-stats"));
	json_object_set_new(o, "totals", tot);
	json_object_set_new(o, "rows", rows);
	return o;
}

static int dare_stats_load(struct merge_ctx *p, unsigned r, json_t *res, struct lines_error *err)
{
	struct dare *ds = D(p);
	json_t *rows = json_object_get(res, "rows");
	const char *kind = json_string_value(json_object_get(res, "kind"));
	RETURN_ERROR_IF(!kind || strcmp(kind, "dare-stats"), err, LINES_EFORMAT, p->o->stats_in,
	                NULL, "round %u: not DARE's statistics", r);
	ds->votes = json_integer_value(json_array_get(json_object_get(res, "totals"), 0));
	for (size_t t = 0; t < p->nt; t++) {
		json_t *row = json_array_get(rows, t);
		RETURN_ERROR_IF(json_array_size(row) != 8, err, LINES_EFORMAT, p->o->stats_in, NULL,
		                "round %u: tensor %zu: not 8 sums", r, t);
		for (size_t j = 0; j < 8; j++)
			RETURN_ERROR_IF(json_unhexf(json_array_get(row, j), ds->tsum + 8 * t + j) < 0, err,
			                LINES_EFORMAT, p->o->stats_in, NULL,
			                "round %u: tensor %zu: not a hex float", r, t);
	}
	return 0;
}

static void dare_meta(const struct merge_ctx *p, void (*put)(void *, const char *, const char *),
                      void *arg)
{
	char v[64 * LINES_MAX_MODELS];
	density_meta(p, put, arg);
	snprintf(v, sizeof(v), "%llu", (unsigned long long)p->o->seed);
	put(arg, "lines.seed", v);
	put(arg, "lines.dare_elect", p->o->dare_elect ? "true" : "false");
	if (p->o->dare_elect && p->o->no_normalize)
		put(arg, "lines.normalize", "false");
	if (p->o->rescale != LINES_RESCALE_DENSITY)
		put(arg, "lines.rescale", p->o->rescale == LINES_RESCALE_L1 ? "l1" : "none");
}

static json_t *dare_report(const struct merge_ctx *p)
{
	const struct dare *ds = p->state;
	json_t *m = json_object();
	char seed[24]; /* a string: JSON readers lose integers above 2^53 */
	if (!m)
		return NULL;
	snprintf(seed, sizeof(seed), "%llu", (unsigned long long)p->o->seed);
	density_report(p, m);
	json_object_set_new(m, "seed", json_string(seed));
	/* beside the defaults (normalized, divided by the density) */
	if (p->o->dare_elect && p->o->no_normalize)
		json_object_set_new(m, "normalize", json_false());
	if (p->o->rescale != LINES_RESCALE_DENSITY)
		json_object_set_new(m, "rescale",
		                    json_string(p->o->rescale == LINES_RESCALE_L1 ? "l1" : "none"));
	json_object_set_new(m, "elect", json_boolean(p->o->dare_elect));
	json_object_set_new(m, "majority",
	                    ds && ds->elected && ds->maj ? json_integer(ds->maj) : json_null());
	return m;
}

const struct method method_dare = {
	.name = "dare",
	.summary = "drop and rescale (DARE), then sum, or elect signs with --dare-elect",
	.flags = METHOD_USES_WEIGHTS | METHOD_USES_DENSITY | METHOD_USES_SEED |
	         METHOD_USES_NORMALIZE | METHOD_USES_RESCALE | METHOD_PART | METHOD_TENSOR_W |
	         METHOD_TENSOR_DENSITY,
	.setup = dare_setup,
	.meta = dare_meta,
	.report = dare_report,
	.free = dare_free,
	.stats_save = dare_stats_save,
	.stats_load = dare_stats_load,
};
