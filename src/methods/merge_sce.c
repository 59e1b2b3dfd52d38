/*
 * merge_sce.c -- SCE (FuseChat, arXiv 2408.07990: select, calculate,
 * erase), as mergekit's sce computes it.
 *
 * Per tensor, with b the base's value, tau_i = theta_i - b in float32
 * (float64 for F64) and the rest in float64, models in order:
 *   select    var_j = the variance (divided by N, torch's unbiased=False)
 *             of tau_1j .. tau_Nj; with --select-topk f < 1, keep the
 *             k = floor(f * count) positions of largest variance, count
 *             the positions whose variance is not 0 (m_j = 1), and mask
 *             the others (m_j = 0); f = 1 (the default) masks nothing
 *   calculate w_i = mean over the tensor of (m tau_i)^2, divided by their
 *             sum, or 1/N each when that sum is below 1e-6
 *   erase     where m_j = 1: s = sum_i tau_i, majority +1 where s >= 0,
 *             else -1; e_i = sign(tau_i) is the majority (a zero never is)
 *             mtl = sum_i w_i e_i tau_i / max(sum_i w_i e_i, 1e-6)
 *             where m_j = 0: mtl = 0 (the base's value)
 *   theta = fma(lambda, mtl, b), lambda 1, --lambda or LiNeS's lambda(block).
 * Where s is a NaN or an infinity, mtl = s (as sum passes them on).
 *
 * The positions are ranked by a 32-bit key: var_j rounded to float32
 * (nearest even), whose bit pattern orders like the values; a nonzero
 * variance below float32's range counts as its smallest subnormal (so
 * the count is exactly the positions where the task vectors differ) and
 * a NaN ranks above everything (as torch's topk puts it). The threshold
 * is the k-th largest key, found exactly by radix selection, as TIES's
 * --trim tensor finds its own, in constant memory:
 *   select   counts the high 16 bits of each nonzero key per tensor (the
 *            consumer adds a job's counts in order; at a tensor's last
 *            job it knows count, k, and the bin of the k-th largest key
 *            with its rank inside the bin);
 *   refine   counts the low 16 bits of the keys inside that bin: the
 *            threshold is exact. Every position whose key is at least the
 *            threshold is kept, so ties at the cut are all kept (torch
 *            keeps k of them in an order of its own).
 *   weights  the sums of squares of the masked task vectors per tensor
 *            and model, in float64 per KERN_BLOCK block (in KERN_LANES
 *            lanes, as the norms), blocks in order;
 *   norms    (--lines with automatic alpha) ||sum_i tau_i|| and ||mtl||;
 *   write.
 * k = 0 (f = 0, or a small tensor) keeps nothing: the tensor is the
 * base's (mergekit's mask then has the wrong shape). With f = 1 the
 * select and refine passes do not run. Memory per tensor: a few numbers
 * and N weights; per job, the counts of one pass (128 or 256 KiB).
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "kern_sce.h"
#include "method.h"

#define SCE_HI 32768u /* high 16 bits of a key: its top bit is 0 */
#define SCE_LO 65536u
#define SCE_NONE UINT32_MAX /* a threshold above every key: keep nothing */
/* Elements per tile: a tile's arrays stay in the level-1 cache (the
 * element loops make several sweeps over them). */
#define SCE_TILE 256

struct sce_state {
	int select;       /* select_topk < 1 */
	uint64_t *run;    /* SCE_LO counts of the tensor being reduced */
	/* per tensor (nt): */
	uint64_t *count;  /* positions with a nonzero variance */
	uint64_t *k;      /* kept: floor(select_topk * count) */
	uint64_t *rank;   /* of the k-th largest key inside its bin, from the top */
	uint32_t *bin;    /* its high 16 bits */
	uint32_t *thr;    /* the threshold key: 0 keeps all, SCE_NONE nothing */
	unsigned char *known; /* thr is final */
	unsigned char *refine; /* the refine pass finds thr (k > 0) */
	double *sq;       /* nt x N: sum of (m tau_i)^2 */
	double *w;        /* nt x N: the weights */
	unsigned char *uniform; /* the weights are 1/N (their sum was below 1e-6) */
	double acc[4];    /* the norm pass: |s|, |mtl|, s^2, mtl^2 */
	int selected, weighed;
};

/* A worker's tiles: the base, the plain sum, the merged vector, the
 * output (also room for sce_sums), float32 room, the keys and the mask,
 * the task vectors. */
struct sce_scratch {
	double b[SCE_TILE], s[SCE_TILE], mtl[SCE_TILE], out[SCE_TILE];
	float f[SCE_TILE], bf[SCE_TILE];
	uint32_t key[SCE_TILE];
	unsigned char keep[SCE_TILE];
	/* tau[i * SCE_TILE + j], then the weights pass's sums (nmodels x
	 * KERN_LANES) */
	double tau[];
};

static size_t sce_scratch_size(const struct merge_ctx *p)
{
	return sizeof(struct sce_scratch) +
	       (size_t)p->nmodels * (SCE_TILE + KERN_LANES) * sizeof(double);
}

/* s->b and s->tau for elements [j0, j0 + n) of the job. */
static void sce_load(const struct merge_ctx *p, const struct tensor *t, const struct pipe_job *job,
                     size_t j0, size_t n, struct sce_scratch *s)
{
	size_t off = j0 * t->unit_in;
	if (t->in_dt == DT_F64) {
		tile_load(p->k, t->in_dt, job->in[0] + off, n, s->b, s->f);
		for (unsigned i = 0; i < p->nmodels; i++) {
			double *tau = s->tau + (size_t)i * SCE_TILE;
			tile_load(p->k, t->in_dt, job->in[i + 1] + off, n, tau, s->f);
			for (size_t j = 0; j < n; j++)
				tau[j] -= s->b[j];
		}
		return;
	}
	/* a float32 subtraction (the float64 difference of two float32
	 * values rounded to float32 is the same number) */
	p->k->decode(t->in_dt, job->in[0] + off, s->bf, n);
	for (unsigned i = 0; i < p->nmodels; i++) {
		p->k->decode(t->in_dt, job->in[i + 1] + off, s->f, n);
		sce_taus(s->f, s->bf, n, s->tau + (size_t)i * SCE_TILE, i == 0 ? s->b : NULL);
	}
}

/* The tile's plain sums s->s, and with a selection its keys s->key
 * (kern_sce.h's sce_sums) and its mask s->keep. 0 when every element is
 * kept (s->keep not set). */
static int sce_mask(const struct merge_ctx *p, const struct sce_state *st, size_t tensor,
                    struct sce_scratch *s, size_t n)
{
	uint32_t thr = st->select ? st->thr[tensor] : 0;
	sce_sums(s->tau, SCE_TILE, p->nmodels, n, s->s, thr ? s->key : NULL, s->out);
	if (thr == 0)
		return 0;
	for (size_t j = 0; j < n; j++)
		s->keep[j] = thr != SCE_NONE && s->key[j] >= thr;
	return 1;
}

/* The tile's merged task vector s->mtl, with the tensor's weights. */
static void sce_tile_mtl(const struct merge_ctx *p, const struct sce_state *st, size_t tensor,
                         struct sce_scratch *s, size_t n)
{
	int masked = sce_mask(p, st, tensor, s, n);
	sce_elect(p->k->wide, s->tau, SCE_TILE, p->nmodels, n, s->s, masked ? s->keep : NULL,
	          st->w + tensor * p->nmodels, s->mtl);
}

#if defined(__GNUC__)
/* Models whose task vectors sce_vec() keeps in registers */
#define SCE_VMAX 16

/* Whether sce_fused() takes a tile of tensor TI (t): float32 values in
 * (and out, for the writing pass: write), nothing masked (no selection,
 * or a threshold that keeps all), a few models */
static int sce_fuses(const struct merge_ctx *p, const struct sce_state *st,
                     const struct tensor *t, size_t ti, int write)
{
	return t->in_dt != DT_F64 && !(write && t->out_dt == DT_F64) &&
	       p->nmodels <= SCE_VMAX && !(st->select && st->thr[ti]);
}

/*
 * One element (j of the tile) of the passes after the selection, from the
 * float32 values decoded into bf (the base's) and ft (the models',
 * ft[i * SCE_TILE + j]), nothing masked: the reference for sce_vec(). The
 * task vectors tau_i (sce_taus()), s their sum from +0.0 (sce_sums()),
 * then with mode 0 (weights) each tau_i^2 added to lane[i][k]
 * (sce_squares()); else mtl elected as sce_elect1() does with the weights
 * w, and with mode 1 (norms) s and mtl added to lane k of l
 * (norm_lanes_add()), with mode 2 (write) fma(lambda, mtl, b) rounded to
 * float32 into out[j] (tile_store()).
 */
static inline void sce_elem(unsigned nm, const double *w, const float *bf, const float *ft,
                            size_t j, unsigned k, int mode, double (*lane)[KERN_LANES],
                            struct norm_lanes *l, double lambda, float *out)
{
	double tau[SCE_VMAX], s = 0.0, num = 0.0, den = 0.0;
	for (unsigned i = 0; i < nm; i++) {
		tau[i] = (double)(ft[(size_t)i * SCE_TILE + j] - bf[j]);
		s += tau[i];
		if (mode == 0)
			lane[i][k] += tau[i] * tau[i];
	}
	if (mode == 0)
		return;
	double sign = s >= 0.0 ? 1.0 : -1.0;
	for (unsigned i = 0; i < nm; i++) {
		double pr = tau[i] * sign;
		num += pr > 0.0 ? w[i] * tau[i] : 0.0;
		den += pr > 0.0 ? w[i] : 0.0;
	}
	double d = den < 1e-6 ? 1e-6 : den, q = num / d, m = s - s == 0.0 ? q : s;
	if (mode == 1) {
		norm_lane(l, k, s, m);
		return;
	}
	f32_store(&out[j], fma(lambda, m, (double)bf[j]));
}

/* sce_vec_8() and sce_vec_4(): merge_sce_vec.h */
#define KV_BODY "merge_sce_vec.h"
#include "kv_both.h"
/* sce_vec() at the width of struct kern's wide */
#define sce_vec(wide, ...) KV_CALL(wide, sce_vec, __VA_ARGS__)

/* sce_vec() of mode and bf16 (raw, or values in ft), each call its own
 * copy, for nmc models where nmc is not 0 (a constant: KV_NM_CONST),
 * else for p->nmodels */
static inline __attribute__((always_inline)) void
sce_vec_nm(const struct merge_ctx *p, const double *w, struct sce_scratch *s, const float *ft,
           const unsigned char *const *raw, int bf16, size_t n8, int mode,
           double (*lane)[KERN_LANES], struct norm_lanes *l, double lambda, const unsigned nmc)
{
	const unsigned nm = nmc ? nmc : p->nmodels;
	if (mode == 0 && bf16)
		sce_vec(p->k->wide, nm, w, s->bf, ft, raw, n8, 0, lane, NULL, 0.0, NULL);
	else if (mode == 0)
		sce_vec(p->k->wide, nm, w, s->bf, ft, NULL, n8, 0, lane, NULL, 0.0, NULL);
	else if (mode == 1 && bf16)
		sce_vec(p->k->wide, nm, w, s->bf, ft, raw, n8, 1, NULL, l, 0.0, NULL);
	else if (mode == 1)
		sce_vec(p->k->wide, nm, w, s->bf, ft, NULL, n8, 1, NULL, l, 0.0, NULL);
	else if (bf16)
		sce_vec(p->k->wide, nm, w, s->bf, ft, raw, n8, 2, NULL, NULL, lambda, s->f);
	else
		sce_vec(p->k->wide, nm, w, s->bf, ft, NULL, n8, 2, NULL, NULL, lambda, s->f);
}

/* Elements [j0, j0 + n) of the job in a pass after the selection (mode as
 * sce_elem's), where sce_fuses(): the values decoded to float32 (BF16 in
 * sce_vec() instead, but after the last multiple of 8), then sce_vec()
 * and sce_elem(); mode 2 encodes the output. With 2, 3 or 4 models
 * sce_vec() has their number as a constant (KV_NM_CONST): the loops over
 * the models unrolled, from a twelfth to a sixth less CPU time (sce
 * --lines on four models, AVX2 and AVX-512). */
static void sce_fused(const struct merge_ctx *p, const struct sce_state *st,
                      const struct tensor *t, const struct pipe_job *job, size_t j0, size_t n,
                      struct sce_scratch *s, int mode, double (*lane)[KERN_LANES],
                      struct norm_lanes *l)
{
	size_t n8 = n & ~(size_t)7;
	unsigned nm = p->nmodels;
	const double *w = mode ? st->w + job->tensor * nm : NULL;
	float *ft = (float *)(void *)s->tau; /* nm float tiles in the float64 ones */
	const unsigned char *raw[SCE_VMAX + 1];
	int bf16 = tile_decode_f32(p, t, job, j0, n, nm, raw, s->bf, ft, SCE_TILE);
	KV_NM_CONST(nm, sce_vec_nm, p, w, s, ft, raw, bf16, n8, mode, lane, l, t->lambda);
	for (size_t j = n8; j < n; j++)
		sce_elem(nm, w, s->bf, ft, j, (unsigned)(j - n8), mode, lane, l, t->lambda, s->f);
	if (mode == 2)
		p->k->encode(t->out_dt, s->f, job->out + j0 * t->unit_out, n);
}
#endif

/* ---- select and refine: the threshold of each tensor -------------------------- */
LINES_HOT static int sce_select_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                           struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	struct sce_scratch *s = scratch;
	uint32_t *h = (uint32_t *)(void *)job->part;
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;
	memset(h, 0, SCE_HI * sizeof(uint32_t));
	for (size_t j0 = 0; j0 < n; j0 += SCE_TILE) {
		size_t nn = n - j0 < SCE_TILE ? n - j0 : SCE_TILE;
		sce_load(p, t, job, j0, nn, s);
		sce_sums(s->tau, SCE_TILE, p->nmodels, nn, s->s, s->key, s->out);
		for (size_t j = 0; j < nn; j++)
			if (s->key[j])
				h[s->key[j] >> 16]++;
	}
	return 0;
}

/* At a tensor's last job: count, k, and where the k-th largest key is. */
static void sce_find_bin(struct sce_state *st, size_t ti, double f)
{
	uint64_t count = 0, cum = 0, k;
	for (uint32_t b = 0; b < SCE_HI; b++)
		count += st->run[b];
	k = (uint64_t)floor((double)count * f);
	st->count[ti] = count, st->k[ti] = k;
	if (k == 0) {
		st->thr[ti] = SCE_NONE, st->known[ti] = 1;
		return;
	}
	for (uint32_t b = SCE_HI; b-- > 0;) {
		if (cum + st->run[b] >= k) {
			st->bin[ti] = b, st->rank[ti] = k - cum, st->refine[ti] = 1;
			return;
		}
		cum += st->run[b];
	}
}

static int sce_select_reduce(struct merge_ctx *p, const struct pipe_job *job,
                             struct lines_error *err)
{
	struct sce_state *st = p->state;
	const uint32_t *h = (const uint32_t *)(const void *)job->part;
	(void)err;
	for (uint32_t b = 0; b < SCE_HI; b++)
		st->run[b] += h[b];
	if (job->u1 == p->t[job->tensor].units) {
		sce_find_bin(st, job->tensor, p->o->select_topk);
		memset(st->run, 0, SCE_LO * sizeof(*st->run));
	}
	return 0;
}

/* The tensors whose threshold the refine pass finds (before the select
 * pass, for the plan: any of them). */
static int sce_want_refine(const struct merge_ctx *p, size_t tensor)
{
	const struct sce_state *st = p->state;
	return p->t[tensor].merge && (!st->selected || st->refine[tensor]);
}

static int sce_refine_needed(const struct merge_ctx *p)
{
	const struct sce_state *st = p->state;
	for (size_t i = 0; i < p->nt; i++)
		if (p->t[i].merge && !st->known[i])
			return 1;
	return 0;
}

LINES_HOT static int sce_refine_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                           struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	const struct sce_state *st = p->state;
	struct sce_scratch *s = scratch;
	uint32_t *h = (uint32_t *)(void *)job->part, bin = st->bin[job->tensor];
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;
	memset(h, 0, SCE_LO * sizeof(uint32_t));
	for (size_t j0 = 0; j0 < n; j0 += SCE_TILE) {
		size_t nn = n - j0 < SCE_TILE ? n - j0 : SCE_TILE;
		sce_load(p, t, job, j0, nn, s);
		sce_sums(s->tau, SCE_TILE, p->nmodels, nn, s->s, s->key, s->out);
		for (size_t j = 0; j < nn; j++)
			if (s->key[j] && s->key[j] >> 16 == bin)
				h[s->key[j] & 0xffffu]++;
	}
	return 0;
}

static int sce_refine_reduce(struct merge_ctx *p, const struct pipe_job *job,
                             struct lines_error *err)
{
	struct sce_state *st = p->state;
	const uint32_t *h = (const uint32_t *)(const void *)job->part;
	size_t ti = job->tensor;
	uint64_t cum = 0;
	(void)err;
	for (uint32_t l = 0; l < SCE_LO; l++)
		st->run[l] += h[l];
	if (job->u1 != p->t[ti].units)
		return 0;
	for (uint32_t l = SCE_LO; l-- > 0;) {
		cum += st->run[l];
		if (cum >= st->rank[ti]) {
			st->thr[ti] = st->bin[ti] << 16 | l;
			break;
		}
	}
	st->known[ti] = 1;
	memset(st->run, 0, SCE_LO * sizeof(*st->run));
	return 0;
}

static int sce_selected(struct merge_ctx *p, struct lines_error *err)
{
	struct sce_state *st = p->state;
	(void)err;
	st->selected = 1;
	return 0;
}

/* ---- weights: the mean squares of the masked task vectors ---------------------- */
/*
 * A block's sum of squares of one model, as the norms are summed: element
 * q of the block (counted from its start; a tile starts on a multiple of
 * KERN_LANES) into lane q % KERN_LANES, the lanes added by kern_lane_sum()
 * at the block's end. A masked element adds +0.0, which changes no sum
 * here (they start at +0.0 and only grow). wide: struct kern's.
 */
static inline void sce_squares(int wide, const double *tau, const unsigned char *keep, size_t n,
                               double *lane)
{
	double l[KERN_LANES]; /* a local copy, which the compiler keeps in registers */
	size_t j = 0;
	(void)wide;
	memcpy(l, lane, sizeof(l));
#if defined(__GNUC__)
	if (keep && wide) { /* the loop below in GNU C's vectors (kernels.h), where
	                     * eight lanes are one register (kv_width.h) */
		const kv8d zero = {0};
		kv8d v;
		memcpy(&v, l, sizeof(v));
		for (; j + KERN_LANES <= n; j += KERN_LANES) {
			kv8d t;
			kv8i m = {0};
			memcpy(&t, tau + j, sizeof(t));
			for (unsigned e = 0; e < KERN_LANES; e++)
				m[e] = keep[j + e] ? -1 : 0;
			v += KV8_PICK(m, t * t, zero);
		}
		memcpy(l, &v, sizeof(v));
	}
#endif
	if (keep)
		for (; j + KERN_LANES <= n; j += KERN_LANES)
			for (unsigned e = 0; e < KERN_LANES; e++)
				l[e] += keep[j + e] ? tau[j + e] * tau[j + e] : 0.0;
	else
		for (; j + KERN_LANES <= n; j += KERN_LANES)
			for (unsigned e = 0; e < KERN_LANES; e++)
				l[e] += tau[j + e] * tau[j + e];
	for (unsigned e = 0; j < n; j++, e++)
		l[e] += !keep || keep[j] ? tau[j] * tau[j] : 0.0;
	memcpy(lane, l, sizeof(l));
}

LINES_HOT static int sce_weights_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                            struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	const struct sce_state *st = p->state;
	struct sce_scratch *s = scratch;
	size_t n = (size_t)(job->u1 - job->u0);
	unsigned nm = p->nmodels;
	(void)err;
	for (unsigned blk = 0; blk < job->nblocks; blk++) {
		double *part = job->part + (size_t)nm * blk;
		size_t b0 = (size_t)blk * KERN_BLOCK, b1 = b0 + KERN_BLOCK < n ? b0 + KERN_BLOCK : n;
		double(*lane)[KERN_LANES] = (double(*)[KERN_LANES])(s->tau + (size_t)nm * SCE_TILE);
		memset(lane, 0, (size_t)nm * sizeof(*lane));
		for (size_t j0 = b0; j0 < b1; j0 += SCE_TILE) {
			size_t nn = b1 - j0 < SCE_TILE ? b1 - j0 : SCE_TILE;
#if defined(__GNUC__)
			if (sce_fuses(p, st, t, job->tensor, 0)) {
				sce_fused(p, st, t, job, j0, nn, s, 0, lane, NULL);
				continue;
			}
#endif
			sce_load(p, t, job, j0, nn, s);
			/* (without a selection, the sums sce_mask makes are not needed) */
			int masked = st->select && st->thr[job->tensor] &&
			             sce_mask(p, st, job->tensor, s, nn);
			for (unsigned i = 0; i < nm; i++)
				sce_squares(p->k->wide, s->tau + (size_t)i * SCE_TILE,
				            masked ? s->keep : NULL, nn, lane[i]);
		}
		for (unsigned i = 0; i < nm; i++)
			part[i] = kern_lane_sum(lane[i]);
	}
	return 0;
}

static int sce_weights_reduce(struct merge_ctx *p, const struct pipe_job *job,
                              struct lines_error *err)
{
	struct sce_state *st = p->state;
	double *sq = st->sq + job->tensor * p->nmodels;
	(void)err;
	for (unsigned b = 0; b < job->nblocks; b++)
		for (unsigned i = 0; i < p->nmodels; i++)
			sq[i] += job->part[(size_t)p->nmodels * b + i];
	return 0;
}

/* w_i = mean square / sum of them; 1/N each when that sum is below 1e-6. */
static int sce_weights_done(struct merge_ctx *p, struct lines_error *err)
{
	struct sce_state *st = p->state;
	unsigned nm = p->nmodels;
	(void)err;
	for (size_t ti = 0; ti < p->nt; ti++) {
		const double *sq = st->sq + ti * nm;
		double *w = st->w + ti * nm, sum = 0.0;
		if (!p->t[ti].merge)
			continue;
		for (unsigned i = 0; i < nm; i++) {
			w[i] = p->t[ti].units ? sq[i] / (double)p->t[ti].units : 0.0;
			sum += w[i];
		}
		st->uniform[ti] = fabs(sum) < 1e-6;
		for (unsigned i = 0; i < nm; i++)
			w[i] = st->uniform[ti] ? 1.0 / nm : w[i] / sum;
	}
	st->weighed = 1;
	return 0;
}

/* ---- the norm pass of automatic alpha, and the writing pass -------------------- */
LINES_HOT static int sce_norm_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                         struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	const struct sce_state *st = p->state;
	struct sce_scratch *s = scratch;
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;
	for (unsigned blk = 0; blk < job->nblocks; blk++) {
		double *part = job->part + 4 * blk;
		size_t b0 = (size_t)blk * KERN_BLOCK, b1 = b0 + KERN_BLOCK < n ? b0 + KERN_BLOCK : n;
		struct norm_lanes l = {0};
		for (size_t j0 = b0; j0 < b1; j0 += SCE_TILE) {
			size_t nn = b1 - j0 < SCE_TILE ? b1 - j0 : SCE_TILE;
#if defined(__GNUC__)
			if (sce_fuses(p, st, t, job->tensor, 0)) {
				sce_fused(p, st, t, job, j0, nn, s, 1, NULL, &l);
				continue;
			}
#endif
			sce_load(p, t, job, j0, nn, s);
			sce_tile_mtl(p, st, job->tensor, s, nn);
			norm_lanes_add(p->k->wide, &l, s->s, s->mtl, nn);
		}
		norm_lanes_fold(part, &l);
	}
	return 0;
}

static int sce_norm_reduce(struct merge_ctx *p, const struct pipe_job *job, struct lines_error *err)
{
	struct sce_state *st = p->state;
	(void)err;
	norm_sums_add(st->acc, job);
	return 0;
}

/* The mask may keep nothing: alpha 1 with a warning then. */
static int sce_norm_done(struct merge_ctx *p, struct lines_error *err)
{
	const struct sce_state *st = p->state;
	return norm_sums_alpha(p, st->acc, 1, err);
}

LINES_HOT static int sce_write_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                          struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	const struct sce_state *st = p->state;
	struct sce_scratch *s = scratch;
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;
	for (size_t j0 = 0; j0 < n; j0 += SCE_TILE) {
		size_t nn = n - j0 < SCE_TILE ? n - j0 : SCE_TILE;
#if defined(__GNUC__)
		if (sce_fuses(p, st, t, job->tensor, 1)) {
			sce_fused(p, st, t, job, j0, nn, s, 2, NULL, NULL);
			continue;
		}
#endif
		sce_load(p, t, job, j0, nn, s);
		sce_tile_mtl(p, st, job->tensor, s, nn);
		if (t->lambda == 1.0) /* fma(1, m, b) is m + b, rounded once */
			for (size_t j = 0; j < nn; j++)
				s->out[j] = s->mtl[j] + s->b[j];
		else
			for (size_t j = 0; j < nn; j++)
				s->out[j] = fma(t->lambda, s->mtl[j], s->b[j]);
		tile_store(p->k, t->out_dt, s->out, nn, job->out + j0 * t->unit_out, s->f);
	}
	return 0;
}

/* ---- setup ------------------------------------------------------------------- */
static struct pass *sce_add_pass(struct merge_ctx *p, const char *name,
                                 int (*work)(struct merge_ctx *, struct pipe_job *, void *,
                                             struct lines_error *))
{
	struct pass *ps = passes_add(p->passes);
	if (!ps)
		return NULL;
	ps->name = name;
	ps->want = want_merged;
	ps->work = work;
	ps->scratch = sce_scratch_size(p);
	return ps;
}

static int sce_setup(struct merge_ctx *p, struct lines_error *err)
{
	struct sce_state *st = calloc(1, sizeof(*st));
	size_t nt = p->nt ? p->nt : 1, k = nt * p->nmodels;
	struct pass *ps;
	p->state = st;
	RETURN_ERROR_IF(!st, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	st->select = p->o->select_topk < 1.0;
	st->sq = calloc(k, sizeof(*st->sq));
	st->w = calloc(k, sizeof(*st->w));
	st->uniform = calloc(nt, 1);
	if (st->select) {
		st->run = calloc(SCE_LO, sizeof(*st->run));
		st->count = calloc(nt, sizeof(*st->count));
		st->k = calloc(nt, sizeof(*st->k));
		st->rank = calloc(nt, sizeof(*st->rank));
		st->bin = calloc(nt, sizeof(*st->bin));
		st->thr = calloc(nt, sizeof(*st->thr));
		st->known = calloc(nt, 1);
		st->refine = calloc(nt, 1);
	}
	RETURN_ERROR_IF(!st->sq || !st->w || !st->uniform ||
	                (st->select && (!st->run || !st->count || !st->k || !st->rank || !st->bin ||
	                                !st->thr || !st->known || !st->refine)),
	                err, LINES_ENOMEM, NULL, NULL, "out of memory");
	RETURN_ERROR_IF(p->single_pass, err, LINES_EUSAGE, NULL, NULL,
	                "standard input can be read only once, but -m sce measures every tensor "
	                "in a pass before the writing pass: give that model as a file");
	for (size_t i = 0; st->select && i < p->nt; i++)
		if (!p->t[i].units) /* no job: nothing to select */
			st->thr[i] = SCE_NONE, st->known[i] = 1;
	if (st->select) {
		RETURN_ERROR_IF(!(ps = sce_add_pass(p, "select", sce_select_work)), err,
		                LINES_EUNSUPPORTED, NULL, NULL, "too many passes");
		ps->part_job = SCE_HI * sizeof(uint32_t) / sizeof(double);
		ps->reduce = sce_select_reduce;
		ps->done = sce_selected;
		RETURN_ERROR_IF(!(ps = sce_add_pass(p, "refine", sce_refine_work)), err,
		                LINES_EUNSUPPORTED, NULL, NULL, "too many passes");
		ps->part_job = SCE_LO * sizeof(uint32_t) / sizeof(double);
		ps->want = sce_want_refine;
		ps->needed = sce_refine_needed;
		ps->reduce = sce_refine_reduce;
	}
	RETURN_ERROR_IF(!(ps = sce_add_pass(p, "weights", sce_weights_work)), err,
	                LINES_EUNSUPPORTED, NULL, NULL, "too many passes");
	ps->part_block = p->nmodels;
	ps->reduce = sce_weights_reduce;
	ps->done = sce_weights_done;
	if (p->o->lines && p->o->alpha_auto) {
		RETURN_ERROR_IF(!(ps = sce_add_pass(p, "norms", sce_norm_work)), err,
		                LINES_EUNSUPPORTED, NULL, NULL, "too many passes");
		ps->part_block = 4;
		ps->reduce = sce_norm_reduce;
		ps->done = sce_norm_done;
		p->sc->measured = 1;
	}
	RETURN_ERROR_IF(!(ps = sce_add_pass(p, "write", sce_write_work)), err, LINES_EUNSUPPORTED,
	                NULL, NULL, "too many passes");
	ps->writes = 1;
	ps->want = want_all;
	return 0;
}

static int sce_check(const struct lines_merge_opts *o, struct lines_error *err)
{
	RETURN_ERROR_IF(o->weights, err, LINES_EUSAGE, NULL, NULL,
	                "-m sce takes no weights: it computes its own per tensor (as mergekit's)");
	RETURN_ERROR_IF(!(o->select_topk >= 0.0 && o->select_topk <= 1.0), err, LINES_EUSAGE, NULL,
	                NULL, "--select-topk must be in [0, 1]");
	/* select, refine, weights, norms, the scales' measure pass and write:
	 * one more than a run has */
	RETURN_ERROR_IF(o->select_topk < 1.0 && o->lines && o->alpha_auto && o->dtype &&
	                    strcasecmp(o->dtype, "fp8") == 0,
	                err, LINES_EUSAGE, NULL, NULL,
	                "-m sce --select-topk below 1 with automatic alpha and --dtype fp8 would "
	                "take six passes, one more than lines runs: give --alpha");
	return 0;
}

static void sce_free(struct merge_ctx *p)
{
	struct sce_state *st = p->state;
	if (st) {
		free(st->run), free(st->count), free(st->k), free(st->rank);
		free(st->bin), free(st->thr), free(st->known), free(st->refine);
		free(st->sq), free(st->w), free(st->uniform);
	}
	free(st);
	p->state = NULL;
}

/* ---- reports ----------------------------------------------------------------- */
static json_t *sce_report(const struct merge_ctx *c)
{
	json_t *m = json_object();
	json_object_set_new(m, "select_topk", json_num(c->o->select_topk));
	return m;
}

/* The float32 value of a key, for the reports. */
static double sce_key_value(uint32_t key)
{
	float f;
	memcpy(&f, &key, 4);
	return f;
}

/*
 * "sce": {"count", "k", "threshold", "weights": [...], "uniform"} in each
 * merged tensor's entry once measured: count the positions whose
 * variance is not zero, k the kept ones (with ties, possibly more), the
 * threshold the k-th largest variance as float32 (null: no selection, or
 * k = 0); then the weights.
 */
static void sce_report_tensor(const struct merge_ctx *c, size_t i, json_t *e)
{
	const struct sce_state *st = c->state;
	json_t *r, *w;
	if (!st || !c->t[i].merge || (!st->selected && !st->weighed))
		return;
	r = json_object();
	if (st->select && st->selected) {
		uint32_t thr = st->thr[i];
		json_object_set_new(r, "count", json_integer((json_int_t)st->count[i]));
		json_object_set_new(r, "k", json_integer((json_int_t)st->k[i]));
		json_object_set_new(r, "threshold",
		                    thr == SCE_NONE || !st->known[i] ? json_null()
		                                                  : json_num(sce_key_value(thr)));
	}
	if (st->weighed) {
		w = json_array();
		for (unsigned q = 0; q < c->nmodels; q++)
			json_array_append_new(w, json_num(st->w[i * c->nmodels + q]));
		json_object_set_new(r, "weights", w);
		json_object_set_new(r, "uniform", json_boolean(st->uniform[i]));
	}
	json_object_set_new(e, "sce", r);
}

/* lines.select_topk */
static void sce_meta(const struct merge_ctx *c,
                     void (*put)(void *arg, const char *key, const char *value), void *arg)
{
	char v[40];
	lines_fmt_double(v, sizeof(v), c->o->select_topk);
	put(arg, "lines.select_topk", v);
}

const struct method method_sce = {
	.name = "sce",
	.summary = "SCE: positions of high variance, weights from mean squares, TIES election",
	.flags = METHOD_USES_SELECT_TOPK,
	.check = sce_check,
	.setup = sce_setup,
	.meta = sce_meta,
	.report = sce_report,
	.report_tensor = sce_report_tensor,
	.free = sce_free,
};
