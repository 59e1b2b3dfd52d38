/*
 * merge_dare.c -- DARE: drop and rescale, then sum (or elect as TIES).
 *
 * Each entry of each task vector is kept with probability rho (--density)
 * and divided by rho (float32, one rounding); the weighted kept entries
 * are summed in float64, or with
 * --dare-elect their signs are elected by mass (the model's majority sign
 * breaking exact ties) and the agreeing entries averaged. Whether an entry
 * is kept is decided by a counter-based hash of (seed, task, the XXH3 of
 * the tensor's name, the element's index): a pure function, so the output
 * is the same for any chunk size, thread count or reader, on any machine.
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
	uint64_t limit; /* dare_limit(density) */
	uint32_t *zero; /* nx thresholds of 0: election keeps every nonzero value */
	double *ones;
	double num[2], det[2], zpos[2], zneg[2];
	int64_t votes;
	int maj;
	int elected; /* the stats pass ran with --dare-elect: maj was elected */
};

static struct dare *D(struct merge_ctx *p) { return p->state; }

/* The scratch of a worker: the base, the nx task vectors, two tau_MTL and
 * two signs per element of a tile. */
struct tile {
	float *bt, *tp;
	double *mp, *mn;
	signed char *sp, *sn;
};

static size_t scratch_bytes(unsigned nx)
{
	return (size_t)KERN_TILE * (sizeof(float) * (nx + 1) + 2 * sizeof(double) + 2);
}

static struct tile tile_of(void *scratch, unsigned nx)
{
	struct tile tl;
	tl.bt = scratch;
	tl.tp = tl.bt + KERN_TILE;
	tl.mp = (double *)(void *)(tl.tp + (size_t)nx * KERN_TILE);
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
	ties_taus(p->k, t->in_dt, xs, ds->nx, job->in[0] + j0 * t->unit_in, p->w, nn, tl->bt,
	          tl->tp);
	for (unsigned i = 0; i < ds->nx; i++)
		dare_drop_tile(p->k, tl->tp + (size_t)i * nn, nn, keys[i], job->u0 + j0, ds->limit,
		               p->o->density);
	if (p->o->dare_elect) {
		ties_elect_tile(p->k, tl->tp, nn, ds->nx, ds->zero, maj, mtl, sign);
		return;
	}
	for (size_t j = 0; j < nn; j++)
		mtl[j] = 0.0, sign[j] = 1;
	for (unsigned i = 0; i < ds->nx; i++) {
		const float *d = tl->tp + (size_t)i * nn;
		for (size_t j = 0; j < nn; j++)
			mtl[j] += (double)d[j];
	}
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
	double d[LINES_MAX_MODELS], b = f64_taus(job, ds->nx, p->w, j, tau, d);
	*raw = 0.0;
	for (unsigned i = 0; i < ds->nx; i++) {
		uint64_t x = kern_mix64(keys[i] ^ ((job->u0 + j) * KERN_DARE_STEP)) >> 11;
		tau[i] = x < ds->limit ? tau[i] / p->o->density : 0.0;
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
		return f64_elect(tau, nx, zero, maj, mtl);
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

/* ---- stats ------------------------------------------------------------------- */
static int stats_work(struct merge_ctx *p, struct pipe_job *job, void *scratch, struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	struct dare *ds = D(p);
	struct tile tl = tile_of(scratch, ds->nx);
	const void *xs[LINES_MAX_MODELS];
	size_t n = (size_t)(job->u1 - job->u0);
	int64_t votes = 0;
	(void)err;

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
			/* the norm of the sum of the task vectors (tl.bt: the base) */
			p->k->norm_lin(t->in_dt, xs, ds->nx, tl.bt, ds->ones, nn, &nm);
			/* a zero sum with something kept: the other majority too (when
			 * nothing is kept, tau_MTL is 0 both ways) */
			for (size_t j = 0; j < nn; j++)
				both |= tl.sp[j] == 0 && tl.mp[j] != 0.0;
			if (both) /* the same dropped values, the other majority */
				ties_elect_tile(p->k, tl.tp, nn, ds->nx, ds->zero, -1, tl.mn, tl.sn);
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
	ds->votes += (int64_t)job->part[0];
	for (unsigned b = 0; b < job->nblocks; b++) {
		const double *blk = job->part + 1 + 8 * (size_t)b;
		ds->num[0] += blk[0], ds->num[1] += blk[1];
		ds->det[0] += blk[2], ds->det[1] += blk[3];
		ds->zpos[0] += blk[4], ds->zpos[1] += blk[5];
		ds->zneg[0] += blk[6], ds->zneg[1] += blk[7];
	}
	return 0;
}

static int stats_done(struct merge_ctx *p, struct lines_error *err)
{
	struct dare *ds = D(p);
	ds->maj = ds->votes >= 0 ? 1 : -1;
	ds->elected = p->o->dare_elect;
	double l1 = ds->det[0] + (ds->maj > 0 ? ds->zpos[0] : ds->zneg[0]);
	double l2 = ds->det[1] + (ds->maj > 0 ? ds->zpos[1] : ds->zneg[1]);
	return scales_from_norms(p->sc, p->o->norm_p == 2 ? sqrt(ds->num[1]) : ds->num[0],
	                         p->o->norm_p == 2 ? sqrt(l2) : l1, 1, err);
}

/* ---- write ------------------------------------------------------------------------ */
static int write_work(struct merge_ctx *p, struct pipe_job *job, void *scratch, struct lines_error *err)
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
	}
	for (size_t j0 = 0; !f64_tensor(t) && j0 < n; j0 += KERN_TILE) {
		size_t nn = n - j0 < KERN_TILE ? n - j0 : KERN_TILE;
		dare_tile(p, job, &tl, j0, nn, ds->maj, tl.mp, tl.sp);
		p->k->finish(t->out_dt, job->out + j0 * t->unit_out, tl.bt, tl.mp, t->lambda, nn);
	}
	return 0;
}

static void dare_free(struct merge_ctx *p)
{
	struct dare *ds = D(p);
	if (!ds)
		return;
	free(ds->keys);
	free(ds->zero);
	free(ds->ones);
	free(ds);
	p->state = NULL;
}

static int dare_setup(struct merge_ctx *p, struct lines_error *err)
{
	struct dare *ds = calloc(1, sizeof(*ds));
	unsigned nx = p->nmodels;
	int stats = p->o->dare_elect || (p->o->lines && p->o->alpha_auto);

	RETURN_ERROR_IF(!ds, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	p->state = ds;
	RETURN_ERROR_IF(nx > LINES_MAX_MODELS, err, LINES_EUSAGE, NULL, NULL, "DARE merges at most %d models", LINES_MAX_MODELS);
	RETURN_ERROR_IF(stats && p->single_pass, err, LINES_EUSAGE, NULL, NULL,
	                "standard input can be read only once, but DARE with --dare-elect or "
	                "automatic alpha reads its inputs twice: give that model as a file");
	ds->nx = nx;
	ds->maj = 1;
	ds->keys = calloc((p->nt ? p->nt : 1) * nx, sizeof(*ds->keys));
	ds->ones = calloc(nx, sizeof(*ds->ones));
	ds->zero = calloc(nx, sizeof(*ds->zero));
	ds->limit = dare_limit(p->o->density);
	RETURN_ERROR_IF(!ds->keys || !ds->ones || !ds->zero, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	for (unsigned i = 0; i < nx; i++)
		ds->ones[i] = 1.0;
	for (size_t t = 0; t < p->nt; t++) {
		uint64_t h = XXH3_64bits(p->t[t].name, strlen(p->t[t].name));
		for (unsigned i = 0; i < nx; i++)
			ds->keys[t * nx + i] = dare_key(p->o->seed, i, h);
	}
	if (stats) {
		struct pass *a = passes_add(p->passes);
		a->name = "stats";
		a->part_job = 1;
		a->part_block = 8;
		a->scratch = scratch_bytes(nx);
		a->want = want_merged;
		a->work = stats_work;
		a->reduce = stats_reduce;
		a->done = stats_done;
		if (p->o->lines && p->o->alpha_auto)
			p->sc->measured = 1;
	}
	struct pass *w = passes_add(p->passes);
	w->name = "write";
	w->writes = 1;
	w->scratch = scratch_bytes(nx);
	w->want = want_all;
	w->work = write_work;
	return 0;
}

static void dare_meta(const struct merge_ctx *p, void (*put)(void *, const char *, const char *),
                      void *arg)
{
	char v[64];
	lines_fmt_double(v, sizeof(v), p->o->density);
	put(arg, "lines.density", v);
	snprintf(v, sizeof(v), "%llu", (unsigned long long)p->o->seed);
	put(arg, "lines.seed", v);
	put(arg, "lines.dare_elect", p->o->dare_elect ? "true" : "false");
}

static json_t *dare_report(const struct merge_ctx *p)
{
	const struct dare *ds = p->state;
	json_t *m = json_object();
	char seed[24]; /* a string: JSON readers lose integers above 2^53 */
	if (!m)
		return NULL;
	snprintf(seed, sizeof(seed), "%llu", (unsigned long long)p->o->seed);
	json_object_set_new(m, "density", json_real(p->o->density));
	json_object_set_new(m, "seed", json_string(seed));
	json_object_set_new(m, "elect", json_boolean(p->o->dare_elect));
	json_object_set_new(m, "majority",
	                    ds && ds->elected && ds->maj ? json_integer(ds->maj) : json_null());
	return m;
}

const struct method method_dare = {
	.name = "dare",
	.summary = "drop and rescale (DARE), then sum, or elect signs with --dare-elect",
	.flags = METHOD_USES_WEIGHTS | METHOD_USES_DENSITY | METHOD_USES_SEED,
	.setup = dare_setup,
	.meta = dare_meta,
	.report = dare_report,
	.free = dare_free,
};
