/*
 * merge_ties.c -- TIES-merging with an exact threshold, in three passes.
 *
 * Per task, tau'_i = w_i tau_i keeps the entries with |tau'_i| >= t_i,
 * where t_i is the k-th smallest |tau'_i| (1-based), k = d - floor(d rho),
 * over the d floating elements of the whole model (--trim global) or of
 * each tensor (--trim tensor), rho the model's own density when
 * --density gives one per model (with --trim tensor, the weights and
 * densities may also differ between tensors: tensor_w(), tensor_density()).
 * The signs are elected by mass, the
 * model's majority sign breaking exact ties, and the kept entries that
 * agree are averaged over the sum of their weights (kern_ties.h; with
 * every weight 1 that is their count, the kernels' own) or, with
 * --no-normalize, summed.
 *
 * The threshold is found by radix selection over the bit patterns of
 * |tau'| (which order like the magnitudes), never by sorting:
 *   select     counts the high 16 bits of every |tau'_i|, and apart the
 *              bin's smallest value (low 16 bits zero: ties_key): the
 *              k-th smallest lies in a known bin, at a known rank in it,
 *              and is that smallest value when the rank is within its
 *              count (then t_i is known already);
 *   threshold  counts the low 16 bits inside that bin: t_i is exact.
 * Counts are integers added by the consumer in order, one histogram for
 * the model or, per tensor, one for the tensor being reduced.
 *
 * The writing pass needs two more things before its first byte: the
 * majority sign, and for automatic alpha ||tau_MTL||. Both depend on t_i.
 * The threshold pass gets them without a fourth pass over the inputs: an
 * element whose keep-or-trim is already decided by the bins (every task's
 * |tau'| above its bin, below it, or the bin's smallest value, which is
 * below t_i when t_i is not known yet) contributes at once; the few
 * elements with another value inside a task's bin are written to a
 * temporary file (their N values), and are settled from that file once
 * t_i is known. Elements
 * whose kept values sum to exactly zero take the majority's sign, so
 * their share of the norm is summed both ways and the right one is kept.
 * Every sum is float64 per block of elements, kept per tensor: its
 * blocks in order, then its elements settled from the file in the file's
 * order; the totals add the tensors in output order. The same for any
 * -j or --chunk, and for any --part K/M (two rounds of statistics: see
 * ties_stats_save).
 *
 * Global trim usually needs no threshold pass. Before the select pass, a
 * small model is read whole (with pread): its counts are the select
 * pass's, so that pass refines the bins and does the threshold pass's
 * work itself (three reads in all). In a larger model a sample
 * (SAMPLE_PIECES evenly spread pieces, an eighth of the model at most)
 * predicts each t_i: when the sample's rank of t_i, give or take
 * SAMPLE_Z standard errors, falls on one bin's smallest value, t_i is
 * predicted to be that value (the common case for 16-bit models, as
 * above). The select pass then also does the threshold pass's work with
 * the predicted t_i, which decide every element. When the counts confirm
 * every prediction (a hit), the threshold pass is skipped; otherwise the
 * select pass's sums are dropped and the threshold pass runs as above.
 * Either way every element is summed in the same blocks in the same
 * order as the threshold pass would sum it, so the bytes are the same
 * whether a sample was taken or not (standard input, .zst inputs), and
 * there are never more than three passes.
 *
 * F64 tensors (merged into F64) are computed in float64 (f64.h), and so
 * are their thresholds. One ranking holds every element: its exact
 * magnitude |tau'_i| as a float64 (a float32 value is one exactly), so
 * t_i is the k-th smallest over F32/BF16/F16 and F64 tensors alike. The
 * select and threshold passes count an F64 element under its float32
 * key f64_key32() (its magnitude rounded toward zero, a monotone map
 * that is the identity on float32 values), which finds t_i's key K and
 * its rank inside K's bucket. The bucket holds float32 elements, all of
 * value K, its smallest, and F64 elements in [K, next float32): t_i is K
 * when the rank falls among the former, and otherwise refine64() finds
 * it among the F64 ones, which the threshold pass kept open in a second
 * temporary file (their N doubles), by radix selection over their
 * 64-bit magnitudes, 16 bits per read of that file. A float32 element
 * is kept when |tau'| >= t_i, that is at or above the smallest float32
 * at or above t_i (f64_ceil32). Until t_i is final, float32 elements
 * equal to K stay open too. A model with F64 tensors takes no sample:
 * three passes over the inputs, plus the reads of that small file.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>

#include "f64.h"
#include "kern_ties.h"
#include "fp8.h"
#include "method.h"
#include "radix_select.h"

#define BINS RSEL_BINS
#define SPEC_NX 16  /* tasks at most for a prediction (the sample counts per piece and task) */
#define SAMPLE_PIECES 4096u /* at most, and at most an eighth of the model */
#define SAMPLE_PIECE 2048u /* elements */
#define SAMPLE_Z 6.0       /* the prediction's margin, in standard errors of the sample's rank */

/*
 * The way to the thresholds, decided before the select pass by the sample
 * (select_begin) and after it by the exact counts (select_done):
 *   COUNT    the select pass counts; the threshold pass runs
 *   PREDICT  t_i = pred[i]: the select pass also elects and sums every
 *            element; its counts then confirm the predictions (DONE) or
 *            not (back to COUNT: its sums are dropped)
 *   BINNED   the sample read the whole model, so its bins are the select
 *            pass's: that pass does the threshold pass's work (then DONE)
 *   DONE     the select pass did the threshold pass's work: it is skipped
 */
enum ties_way { TIES_COUNT, TIES_PREDICT, TIES_BINNED, TIES_DONE };

struct ties {
	unsigned nx;
	int per_tensor;
	size_t nentries; /* nt per tensor, else 1 */
	uint64_t *run;   /* nx x BINS counts being reduced (one tensor or the model) */
	uint64_t run_d;  /* elements counted into run */
	uint32_t *bin;   /* nentries x nx: the high 16 bits of t_i */
	uint64_t *rank;  /* nentries x nx: its rank inside that bin, 1-based */
	uint32_t *thr;   /* nentries x nx: t_i as a bit pattern */
	unsigned char *known; /* nentries x nx: t_i final (k <= 0: keep all) */
	double *ones;    /* nx ones, the coefficients of the numerator */
	double num[4];   /* |sum tau|, (sum tau)^2: the tensors' (tsum) added in output order */
	/* the float64 path's settled elements (settle64): |tau_MTL|,
	 * tau_MTL^2 of decided elements, of zero sums for + and - */
	double det[2];
	double zpos[2], zneg[2];
	/* nt x TS_W: each tensor's sums (TS_*), so that the totals group the
	 * same way whatever part of the tensors a run measured (--part) */
	double *tsum;
	int64_t votes;   /* sum of the elected signs */
	int maj;
	FILE *spill;     /* records: tensor index, then nx floats */
	uint64_t nspill;
	/* F64 tensors (the float64 path, f64.h): has64 when some merged
	 * tensor takes it; then the thresholds of the entries it is in are
	 * float64 (thr64), refined from the float32 key's bucket (bcnt
	 * elements have t_i's key, rank counts inside it) over spill64 */
	int has64;
	uint64_t *thr64; /* nentries x nx: t_i as a float64 magnitude's bits */
	uint64_t *bcnt;  /* nentries x nx */
	FILE *spill64;   /* records of F64 elements: tensor index, 4 bytes, nx doubles */
	uint64_t nspill64;
	uint64_t grp0;   /* per tensor: the tensor's first record in spill64 */
	pthread_mutex_t mu; /* run, when a worker flushes its counts */
	uint64_t count_limit; /* a worker flushes before counting past this */
	/* the select pass's prediction (global trim) */
	int spec_ok;       /* the select pass can take one */
	enum ties_way way; /* what the select pass does, and whether it did it all */
	uint32_t *pred;    /* nx */
	int concluded;     /* thr and maj are final */
	const double *c;   /* the divisors of the mean: elect_divisors() */
	double cbuf[LINES_MAX_MODELS];
	/* weights per tensor (tensor_w()): per tensor nx divisors and a
	 * flag, 1 for the kernels' count (elect_divisors()'s NULL); NULL:
	 * c for all */
	double *cten;
	/* -m consensus --consensus-over ties: TALL masks over tau_MTL */
	int tall;
	double cons[2];          /* |tau_cons|, tau_cons^2: automatic alpha */
	uint64_t kept, dropped;  /* finite elements the masks kept and dropped */
	int written;
};

/* A tensor's sums in tsum: alpha's numerator (select), then the decided
 * elements' |tau_MTL| and tau_MTL^2, and the zero sums' for a majority of
 * + and of - (threshold, or select with a prediction), then the same
 * three of the elements settled from the temporary file. */
enum { TS_NUM = 0, TS_DET = 2, TS_ZPOS = 4, TS_ZNEG = 6, TS_SDET = 8, TS_SPOS = 10, TS_SNEG = 12,
       TS_W = 14 };

static struct ties *T(struct merge_ctx *p) { return p->state; }
/* The divisors of the elected mean of TENSOR's elements. */
static const double *divs(const struct ties *ts, size_t tensor)
{
	if (!ts->cten)
		return ts->c;
	const double *c = ts->cten + tensor * (ts->nx + 1);
	return c[ts->nx] != 0.0 ? NULL : c; /* after its nx, 1: the kernels' count */
}
static size_t entry(const struct ties *t, size_t tensor) { return t->per_tensor ? tensor : 0; }
#define REC64(nx) (8 * (1 + (size_t)(nx))) /* bytes of a spill64 record */
/* The thresholds of entry e are float64: it holds an F64 tensor. */
static int entry64(const struct merge_ctx *p, const struct ties *ts, size_t e)
{
	return ts->per_tensor ? f64_tensor(&p->t[e]) : ts->has64;
}


static void add_run(struct ties *ts, const uint32_t *hist)
{
	for (size_t q = 0; q < (size_t)ts->nx * BINS; q++)
		ts->run[q] += hist[q];
}

/* Scratch of a worker: the base tile, nx task-vector tiles, tau_MTL, the
 * signs and the open flags of a tile (tile_ws); then the counts of the
 * whole model (count_bytes); then, for a select pass that may predict,
 * the same for a whole block (sel_ws). */
static size_t scratch_bytes(unsigned nx)
{
	return (size_t)KERN_TILE * (sizeof(float) * (nx + 1) + sizeof(double) + 2);
}

struct tile_ws {
	float *bt, *tp;      /* the base, nx task vectors */
	double *mtl;         /* tau_MTL */
	signed char *sign;
	unsigned char *open; /* left open by ties_decided() */
};

static struct tile_ws tile_ws_at(void *scratch, unsigned nx)
{
	struct tile_ws w;
	w.bt = scratch;
	w.tp = w.bt + KERN_TILE;
	w.mtl = (double *)(void *)(w.tp + (size_t)nx * KERN_TILE);
	w.sign = (signed char *)(w.mtl + KERN_TILE);
	w.open = (unsigned char *)(w.sign + KERN_TILE);
	return w;
}

/*
 * Where the counts go. Per tensor, a job's counts travel in its part and
 * the consumer adds them up tensor by tensor. For the whole model they
 * stay in the worker's scratch, after the tiles, for the whole pass (no
 * clearing and adding per job): nx x BINS uint32, then the number of
 * elements counted since the last flush into run, which happens before a
 * count could pass 2^32 - 1, and at the end of the pass (worker_end).
 */
static size_t count_bytes(const struct ties *ts)
{
	return ts->per_tensor ? 0 : (size_t)ts->nx * BINS * sizeof(uint32_t) + sizeof(uint64_t);
}
static size_t part_counts(const struct ties *ts) /* doubles of counts in a part */
{
	return ts->per_tensor ? (size_t)ts->nx * BINS / 2 : 0;
}

static void flush_counts(struct ties *ts, uint32_t *hist)
{
	pthread_mutex_lock(&ts->mu);
	add_run(ts, hist);
	pthread_mutex_unlock(&ts->mu);
	memset(hist, 0, count_bytes(ts));
}

/* The whole model's counts in a worker's scratch, after its tiles. */
static uint32_t *worker_counts(const struct ties *ts, void *scratch)
{
	return (uint32_t *)(void *)((char *)scratch + scratch_bytes(ts->nx));
}

/* The histograms a job counts into: its part's, cleared, or its worker's. */
static uint32_t *job_counts(struct ties *ts, struct pipe_job *job, void *scratch)
{
	uint32_t *hist;
	uint64_t *counted;
	size_t n = (size_t)(job->u1 - job->u0) * ts->nx;
	if (ts->per_tensor) {
		hist = (uint32_t *)job->part;
		memset(hist, 0, (size_t)ts->nx * BINS * sizeof(uint32_t));
		return hist;
	}
	hist = worker_counts(ts, scratch);
	counted = (uint64_t *)(hist + (size_t)ts->nx * BINS);
	if (*counted + n > ts->count_limit)
		flush_counts(ts, hist);
	*counted += n;
	return hist;
}

static int counts_end(struct merge_ctx *p, void *scratch, struct lines_error *err)
{
	struct ties *ts = T(p);
	(void)err;
	add_run(ts, worker_counts(ts, scratch));
	return 0;
}

/* ---- the parts of select and threshold jobs ------------------------------------ */

/*
 * A job's part in the select and threshold passes: per tensor nx x BINS
 * uint32 counts, then the job's votes and number of records for the
 * temporary file, then per block its sums, then the records. A threshold
 * block is a struct th_sums; a select block is a struct num_sums and,
 * when the select pass may do the threshold pass's work (global trim),
 * a struct th_sums after it. th_part_of() hands out the regions.
 */
struct num_sums { /* the numerator of alpha over a block */
	double s1, s2;  /* |sum tau|, (sum tau)^2 */
};
struct th_sums { /* the elements a block's thresholds decide */
	double dl, dq;  /* |tau_MTL| and tau_MTL^2 of the decided ones */
	double pl, pq;  /* of the zero sums, for a majority of + */
	double nl, nq;  /* and of - */
};
#define NUM_SUMS (sizeof(struct num_sums) / sizeof(double))
#define TH_SUMS (sizeof(struct th_sums) / sizeof(double))
#define TH_REC(nx) (1 + (size_t)(nx)) /* floats: tensor index, then values */

struct th_part {
	double *votes;  /* the sum of the elected signs */
	double *nrec;   /* records written */
	double *blocks; /* nblocks of stride doubles */
	size_t stride;
	float *rec;     /* the records */
};

static size_t part_head(const struct ties *ts) /* doubles before the blocks */
{
	return part_counts(ts) + 2;
}
static size_t sel_stride(const struct ties *ts) /* doubles per block of a select job */
{
	return NUM_SUMS + (ts->spec_ok ? TH_SUMS : 0);
}
static struct th_part th_part_of(const struct ties *ts, const struct pipe_job *job, size_t stride)
{
	struct th_part v;
	v.votes = job->part + part_counts(ts);
	v.nrec = v.votes + 1;
	v.blocks = job->part + part_head(ts);
	v.stride = stride;
	v.rec = (float *)(void *)(v.blocks + stride * job->nblocks);
	return v;
}
static struct num_sums *part_num(const struct th_part *v, unsigned b)
{
	return (struct num_sums *)(void *)(v->blocks + b * v->stride);
}
/* off: NUM_SUMS in a select block, 0 in a threshold block */
static struct th_sums *part_th(const struct th_part *v, unsigned b, size_t off)
{
	return (struct th_sums *)(void *)(v->blocks + b * v->stride + off);
}

/* Add a job's threshold-pass results in order: the sums of each block
 * (at off in it), its votes, its records to the temporary file. */
static int reduce_decided(struct ties *ts, const struct pipe_job *job, const struct th_part *v,
                          size_t off, int wide, struct lines_error *err)
{
	size_t nrec = (size_t)*v->nrec, rs = wide ? REC64(ts->nx) : TH_REC(ts->nx) * sizeof(float);
	FILE *f = wide ? ts->spill64 : ts->spill;
	double *tsum = ts->tsum + TS_W * job->tensor;
	ts->votes += (int64_t)*v->votes;
	for (unsigned b = 0; b < job->nblocks; b++) {
		const struct th_sums *s = part_th(v, b, off);
		tsum[TS_DET] += s->dl, tsum[TS_DET + 1] += s->dq;
		tsum[TS_ZPOS] += s->pl, tsum[TS_ZPOS + 1] += s->pq;
		tsum[TS_ZNEG] += s->nl, tsum[TS_ZNEG + 1] += s->nq;
	}
	if (nrec) {
		if (fwrite(v->rec, rs, nrec, f) != nrec)
			return lines_errno(err, errno, NULL, "cannot write the temporary file of TIES");
		*(wide ? &ts->nspill64 : &ts->nspill) += nrec;
	}
	return 0;
}

/* The first j' >= j with open[j'] != 0, else n: a word at a time, as
 * most are 0. */
static inline size_t next_open(const unsigned char *open, size_t n, size_t j)
{
	for (; j + 8 <= n; j += 8) {
		uint64_t w;
		memcpy(&w, open + j, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
		if (w) /* the first byte in memory is the lowest */
			return j + (unsigned)__builtin_ctzll(w) / 8;
#else
		if (w)
			break;
#endif
	}
	while (j < n && !open[j])
		j++;
	return j;
}

/*
 * The elements of a tile that ties_decided() left (open[j]): a zero sum
 * (2) is summed for both majorities into pl, pq (+) and nl, nq (-); an
 * open one (1, only in the threshold pass) goes to rec as a record for
 * the temporary file: its tensor, its values. Returns the records written.
 */
static size_t tile_open(const struct ties *ts, uint32_t tensor, const float *tp, size_t nn,
                        const unsigned char *open, const double *mtl, const uint32_t *up,
                        float *rec, double *pl, double *pq, double *nl, double *nq)
{
	unsigned nx = ts->nx;
	size_t nrec = 0;
	for (size_t j = next_open(open, nn, 0); j < nn; j = next_open(open, nn, j + 1)) {
		unsigned l = (unsigned)(j % KERN_LANES);
		if (open[j] & 1) { /* settled from the file once t_i is known */
			float *r = rec + nrec++ * TH_REC(nx);
			memcpy(r, &tensor, 4);
			for (unsigned i = 0; i < nx; i++)
				r[1 + i] = tp[(size_t)i * nn + j];
		} else { /* a zero sum: the majority decides, both ways */
			double mp = mtl[j], mn = 0.0;
			ties_elect(tp + j, nn, nx, up, -1, divs(ts, tensor), &mn);
			if (isfinite(mp) && isfinite(mn)) {
				pl[l] += fabs(mp), pq[l] += mp * mp;
				nl[l] += fabs(mn), nq[l] += mn * mn;
			}
		}
	}
	return nrec;
}

/* The select pass's scratch with a prediction, after scratch_bytes() +
 * count_bytes(): a whole block at a time (the select kernel gives its
 * tiles for a block). */
struct sel_ws {
	float *bt, *tp;       /* the base, nx task vectors */
	double *mtl;          /* tau_MTL */
	signed char *sign;
	unsigned char *open;  /* zero sums, from ties_decided() */
};
static size_t sel_scratch(unsigned nx)
{
	return (size_t)KERN_BLOCK * (sizeof(float) * ((size_t)nx + 1) + sizeof(double) + 2);
}
static struct sel_ws sel_ws_at(void *mem, unsigned nx)
{
	struct sel_ws w;
	w.mtl = mem;
	w.bt = (float *)(w.mtl + KERN_BLOCK);
	w.tp = w.bt + KERN_BLOCK;
	w.sign = (signed char *)(w.tp + (size_t)nx * KERN_BLOCK);
	w.open = (unsigned char *)(w.sign + KERN_BLOCK);
	return w;
}

/* ---- select ------------------------------------------------------------------ */

/* The numerator of alpha over a tile: the raw, unweighted task vectors,
 * which are the tiles when every weight is 1. */
static void tile_numerator(struct merge_ctx *p, const struct tensor *t, const void *const *xs,
                           const float *bt, const float *tp, size_t nn, struct kern_norms *nm)
{
	if (p->equal_weights && p->w[0] == 1.0)
		ties_norm_sum(p->k->wide, tp, T(p)->nx, nn, nm->s1, nm->s2);
	else
		p->k->norm_lin(t->in_dt, xs, T(p)->nx, bt, T(p)->ones, nn, nm);
}

/* The select pass with a prediction: the counts, and the threshold pass's
 * work with the predicted thresholds, a block at a time. */
static void select_predicted(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                             uint32_t *const *h)
{
	const struct tensor *t = &p->t[job->tensor];
	struct ties *ts = T(p);
	unsigned nx = ts->nx;
	struct sel_ws ws = sel_ws_at((char *)scratch + scratch_bytes(nx) + count_bytes(ts), nx);
	const void *xs[SPEC_NX];
	size_t n = (size_t)(job->u1 - job->u0);
	struct th_part v = th_part_of(ts, job, sel_stride(ts));
	int64_t votes = 0;

	for (unsigned b = 0; b < job->nblocks; b++) {
		struct kern_norms nm;
		double dl[KERN_LANES] = {0}, dq[KERN_LANES] = {0};
		double pl[KERN_LANES] = {0}, pq[KERN_LANES] = {0};
		double nl[KERN_LANES] = {0}, nq[KERN_LANES] = {0};
		struct num_sums *ns = part_num(&v, b);
		struct th_sums *s = part_th(&v, b, NUM_SUMS);
		size_t b0 = (size_t)b * KERN_BLOCK, nn = n - b0 < KERN_BLOCK ? n - b0 : KERN_BLOCK;
		memset(&nm, 0, sizeof(nm));
		for (unsigned i = 0; i < nx; i++)
			xs[i] = job->in[i + 1] + b0 * t->unit_in;
		if (p->k->ties_select) { /* the counts and the tiles in one step */
			p->k->ties_select(t->in_dt, xs, nx, job->in[0] + b0 * t->unit_in, tensor_w(p, t), nn, h, nm.s1,
			                  nm.s2, ws.tp, nn);
		} else {
			ties_taus(p->k, t->in_dt, xs, nx, job->in[0] + b0 * t->unit_in, tensor_w(p, t), nn, ws.bt,
			          ws.tp);
			ties_hist(ws.tp, nx, nn, h);
			tile_numerator(p, t, xs, ws.bt, ws.tp, nn, &nm);
		}
		memset(ws.open, 0, nn); /* the predictions decide every element */
		ties_elect_tile(p->k, ws.tp, nn, nx, ts->pred, 1, divs(ts, job->tensor), ws.mtl, ws.sign);
		votes += ties_decided(p->k, ws.mtl, ws.sign, ws.open, nn, dl, dq);
		tile_open(ts, (uint32_t)job->tensor, ws.tp, nn, ws.open, ws.mtl, ts->pred, NULL, pl, pq,
		          nl, nq);
		ns->s1 = kern_lane_sum(nm.s1), ns->s2 = kern_lane_sum(nm.s2);
		s->dl = kern_lane_sum(dl), s->dq = kern_lane_sum(dq);
		s->pl = kern_lane_sum(pl), s->pq = kern_lane_sum(pq);
		s->nl = kern_lane_sum(nl), s->nq = kern_lane_sum(nq);
	}
	*v.votes = (double)votes;
	*v.nrec = 0.0;
}

static void threshold_job(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                          const struct th_part *v, size_t off, int num);

/* The select pass over an F64 job (no prediction: has64 takes none): the
 * counts of the keys (f64_key32) of the float64 |tau'|, and alpha's
 * numerator from the float64 task vectors, in select_work's lanes. */
static void select_f64(struct merge_ctx *p, struct pipe_job *job, uint32_t *const *h,
                       const struct th_part *v)
{
	unsigned nx = T(p)->nx;
	size_t n = (size_t)(job->u1 - job->u0);
	for (unsigned b = 0; b < job->nblocks; b++) {
		double s1[KERN_LANES] = {0}, s2[KERN_LANES] = {0};
		size_t b0 = (size_t)b * KERN_BLOCK, b1 = b0 + KERN_BLOCK < n ? b0 + KERN_BLOCK : n;
		for (size_t j = b0; j < b1; j++) {
			double tau[LINES_MAX_MODELS], raw[LINES_MAX_MODELS], sum = 0.0;
			f64_taus(job, nx, tensor_w(p, &p->t[job->tensor]), j, tau, raw);
			for (unsigned i = 0; i < nx; i++) {
				h[i][ties_key(f64_key32(f64_mag(tau[i])))]++;
				sum += raw[i];
			}
			f64_norm_add(s1, s2, (unsigned)((j - b0) % KERN_LANES), sum);
		}
		part_num(v, b)->s1 = kern_lane_sum(s1);
		part_num(v, b)->s2 = kern_lane_sum(s2);
	}
	*v->votes = 0.0;
	*v->nrec = 0.0;
}

LINES_HOT static int select_work(struct merge_ctx *p, struct pipe_job *job, void *scratch, struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	struct ties *ts = T(p);
	unsigned nx = ts->nx;
	uint32_t *hist, *h[LINES_MAX_MODELS];
	struct tile_ws w = tile_ws_at(scratch, nx);
	struct th_part v = th_part_of(ts, job, sel_stride(ts));
	const void *xs[LINES_MAX_MODELS];
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;

	if (ts->way == TIES_BINNED) { /* the bins are known: the threshold pass's work */
		threshold_job(p, job, scratch, &v, NUM_SUMS, 1);
		return 0;
	}
	hist = job_counts(ts, job, scratch);
	for (unsigned i = 0; i < nx; i++)
		h[i] = hist + (size_t)i * BINS;
	if (ts->way == TIES_PREDICT) {
		select_predicted(p, job, scratch, h);
		return 0;
	}
	if (f64_tensor(t)) {
		select_f64(p, job, h, &v);
		return 0;
	}
	for (unsigned b = 0; b < job->nblocks; b++) {
		struct kern_norms nm;
		struct num_sums *ns = part_num(&v, b);
		size_t b0 = (size_t)b * KERN_BLOCK, b1 = b0 + KERN_BLOCK < n ? b0 + KERN_BLOCK : n;
		memset(&nm, 0, sizeof(nm));
		if (p->k->ties_select) { /* in one step, without tiles */
			for (unsigned i = 0; i < nx; i++)
				xs[i] = job->in[i + 1] + b0 * t->unit_in;
			p->k->ties_select(t->in_dt, xs, nx, job->in[0] + b0 * t->unit_in, tensor_w(p, t), b1 - b0,
			                  h, nm.s1, nm.s2, NULL, 0);
		}
		for (size_t j0 = b0; j0 < b1 && !p->k->ties_select; j0 += KERN_TILE) {
			size_t nn = b1 - j0 < KERN_TILE ? b1 - j0 : KERN_TILE;
			for (unsigned i = 0; i < nx; i++)
				xs[i] = job->in[i + 1] + j0 * t->unit_in;
			ties_taus(p->k, t->in_dt, xs, nx, job->in[0] + j0 * t->unit_in, tensor_w(p, t), nn, w.bt,
			          w.tp);
			ties_hist(w.tp, nx, nn, h);
			tile_numerator(p, t, xs, w.bt, w.tp, nn, &nm);
		}
		ns->s1 = kern_lane_sum(nm.s1);
		ns->s2 = kern_lane_sum(nm.s2);
	}
	*v.votes = 0.0;
	*v.nrec = 0.0;
	return 0;
}

/* k-th smallest of d for density rho, with the bin and rank of each task. */
static uint64_t rank_k(uint64_t d, double rho)
{
	uint64_t m = (uint64_t)floor((double)d * rho);
	return d > m ? d - m : 0;
}

static void find_bins(struct ties *ts, size_t e, uint64_t d, const struct merge_ctx *p)
{
	for (unsigned i = 0; i < ts->nx; i++) {
		/* each task its own; per tensor (entry e is tensor e) the
		 * tensor's own (tensor_density()) */
		double rho = ts->per_tensor ? tensor_density(p, &p->t[e], i) : density_of(p->o, i);
		uint64_t k = rank_k(d, rho);
		size_t idx = e * ts->nx + i;
		struct rsel r;
		if (k == 0) { /* nothing to trim */
			ts->known[idx] = 1;
			ts->thr[idx] = 0;
			ts->rank[idx] = 0;
			continue;
		}
		rsel_bin(ts->run + (size_t)i * BINS, k, &r);
		ts->bin[idx] = r.bin;
		ts->rank[idx] = r.rank;
		if (r.known) {
			ts->known[idx] = 1;
			ts->thr[idx] = r.thr;
			ts->bcnt[idx] = r.bcnt;
		}
	}
}

static void find_thresholds(struct ties *ts, size_t e)
{
	for (unsigned i = 0; i < ts->nx; i++) {
		size_t idx = e * ts->nx + i;
		struct rsel r = {ts->bin[idx], ts->rank[idx], ts->thr[idx], 0, 0};
		if (ts->known[idx])
			continue;
		rsel_low(ts->run + (size_t)i * BINS, &r);
		ts->thr[idx] = r.thr;
		ts->rank[idx] = r.rank;
		ts->bcnt[idx] = r.bcnt;
		ts->known[idx] = 1;
	}
}

/* What the sample reads into, and how it measures its own error. */
struct sampler {
	struct src_worker *w;        /* of the run's chunk source: one piece at a time */
	struct src_span *span;       /* ninputs */
	const unsigned char **ptr;   /* ninputs */
	float *wide;                 /* ninputs x SAMPLE_PIECE: a mixed tensor's inputs as F32 */
	const unsigned char **wptr;  /* ninputs */
	float *bt, *tp;     /* tiles */
	const uint32_t *below; /* nx: count the values under these, per piece */
	uint32_t *cnt;      /* nx per piece so counted */
	uint64_t *len;      /* elements per piece so counted */
	size_t npc;         /* pieces so counted */
};

/* Count the keys of [u0, u1) of tensor t into run (and, once there is a
 * pilot value per task, the values under it into the next cnt). */
static int sample_piece(struct merge_ctx *p, const struct tensor *t, uint64_t u0, uint64_t u1,
                        struct sampler *sm)
{
	struct ties *ts = T(p);
	const struct src_ops *ops = p->src->ops;
	struct src_batch b = {0, 0, p->ninputs, sm->span, sm->ptr};
	struct lines_error e;
	const void *xs[SPEC_NX];
	uint32_t *cnt = sm->below ? sm->cnt + sm->npc * ts->nx : NULL;
	const unsigned char **in = sm->ptr;
	for (unsigned m = 0; m < p->ninputs; m++) {
		sm->span[m].file = t->in[m].file;
		sm->span[m].off = t->in[m].off + u0 * t->in[m].unit;
		sm->span[m].len = (size_t)((u1 - u0) * t->in[m].unit);
	}
	if (ops->start(sm->w, &b, &e) < 0)
		return -1;
	if (ops->finish(sm->w, &b, &e) < 0) {
		ops->release(sm->w, &b);
		return -1;
	}
	if (t->mixed) { /* as the pipeline does: every input as F32 */
		int rc = 0;
		for (unsigned m = 0; rc == 0 && m < p->ninputs; m++) {
			float *dst = sm->wide + (size_t)m * SAMPLE_PIECE;
			float *sbuf = t->in[m].q ? malloc(fp8_scale_floats(t->in[m].q, u1 - u0) * sizeof(float) + 1)
			                         : NULL;
			rc = t->in[m].q && !sbuf ? -1
			                         : pipe_widen_input(p->k, t, m, sm->ptr[m], u0,
			                                            (size_t)(u1 - u0), dst, sbuf, &e);
			free(sbuf);
			sm->wptr[m] = (const unsigned char *)dst;
		}
		in = sm->wptr;
		if (rc < 0) {
			ops->release(sm->w, &b);
			return -1;
		}
	}
	for (uint64_t j0 = 0; j0 < u1 - u0; j0 += KERN_TILE) {
		size_t nn = u1 - u0 - j0 < KERN_TILE ? (size_t)(u1 - u0 - j0) : KERN_TILE;
		for (unsigned i = 0; i < ts->nx; i++)
			xs[i] = in[i + 1] + j0 * t->unit_in;
		ties_taus(p->k, t->in_dt, xs, ts->nx, in[0] + j0 * t->unit_in, tensor_w(p, t), nn, sm->bt, sm->tp);
		for (unsigned i = 0; i < ts->nx; i++)
			for (size_t j = 0; j < nn; j++) {
				uint32_t a = ties_mag(sm->tp[(size_t)i * nn + j]);
				ts->run[(size_t)i * BINS + ties_key(a)]++;
				if (cnt)
					cnt[i] += a < sm->below[i];
			}
	}
	ops->release(sm->w, &b);
	if (cnt)
		sm->len[sm->npc++] = u1 - u0;
	return 0;
}

/* Piece q of np over the d merged elements: its tensor and first element. */
static const struct tensor *piece_at(const struct merge_ctx *p, uint64_t d, uint64_t q,
                                          uint64_t np, uint64_t *u0)
{
	uint64_t g = (uint64_t)(((double)q + 0.5) * (double)d / (double)np), start = 0;
	for (size_t ti = 0; ti < p->nt; ti++) {
		const struct tensor *t = &p->t[ti];
		if (!t->merge)
			continue;
		if (g < start + t->units) {
			*u0 = g - start;
			return t;
		}
		start += t->units;
	}
	return NULL;
}

/* The bin under which the histogram in run holds rank r of task i. */
static uint32_t bin_of_rank(const struct ties *ts, unsigned i, uint64_t r)
{
	const uint64_t *h = ts->run + (size_t)i * BINS;
	uint64_t cum = 0;
	for (uint32_t b = 0; b < BINS / 2; b++)
		if ((cum += h[2 * b] + h[2 * b + 1]) >= r)
			return b;
	return BINS / 2 - 1;
}

/*
 * The sample: every element of a small model (*whole = 1), else
 * SAMPLE_PIECES pieces of SAMPLE_PIECE elements spread evenly over the
 * merged elements, into run. Pieces are clusters (a row of a matrix may
 * have its own scale), so the error of a rank is measured, not assumed:
 * every eighth piece first gives a pilot value near each t_i, and the
 * other pieces each count their values under it; the differences of
 * those counts between neighbouring pieces give the standard error of
 * the sample's rank, se[i], in elements of the sample (the estimator of
 * a systematic sample). Returns the elements counted
 * per task, 0 when a read failed (the passes will report it).
 */
static uint64_t sample(struct merge_ctx *p, uint64_t d, uint64_t k, int *whole, uint64_t *pieces,
                       double *se)
{
	struct ties *ts = T(p);
	unsigned nx = ts->nx;
	struct sampler sm = {0};
	uint32_t below[SPEC_NX];
	uint64_t ns = 0;
	int all = d <= (uint64_t)SAMPLE_PIECES * SAMPLE_PIECE, ok;
	/* a partial sample reads an eighth of the model at most */
	uint64_t np = d / (8 * (uint64_t)SAMPLE_PIECE) < SAMPLE_PIECES ? d / (8 * (uint64_t)SAMPLE_PIECE)
	                                                               : SAMPLE_PIECES;

	struct lines_error e;
	sm.span = calloc(p->ninputs, sizeof(*sm.span));
	sm.ptr = calloc(p->ninputs, sizeof(*sm.ptr));
	sm.wptr = calloc(p->ninputs, sizeof(*sm.wptr));
	sm.wide = malloc((size_t)p->ninputs * SAMPLE_PIECE * sizeof(float));
	sm.bt = malloc(KERN_TILE * sizeof(float));
	sm.tp = malloc((size_t)nx * KERN_TILE * sizeof(float));
	sm.cnt = calloc((size_t)SAMPLE_PIECES * nx, sizeof(*sm.cnt));
	sm.len = calloc(SAMPLE_PIECES, sizeof(*sm.len));
	ok = sm.span && sm.ptr && sm.wptr && sm.wide && sm.bt && sm.tp && sm.cnt && sm.len &&
	     p->src->ops->worker_open(p->src, p->ninputs, (size_t)SAMPLE_PIECE * 8, 1, &sm.w, &e) == 0;
	for (unsigned i = 0; i < nx; i++)
		se[i] = 0.0;
	for (size_t ti = 0; ok && all && ti < p->nt; ti++) {
		const struct tensor *t = &p->t[ti];
		for (uint64_t u = 0; ok && t->merge && u < t->units; u += SAMPLE_PIECE) {
			uint64_t u1 = t->units - u < SAMPLE_PIECE ? t->units : u + SAMPLE_PIECE;
			ok = sample_piece(p, t, u, u1, &sm) == 0;
			ns += u1 - u;
		}
	}
	for (int phase = 0; ok && !all && phase < 2; phase++) {
		for (uint64_t q = 0; ok && q < np; q++) {
			uint64_t u0 = 0;
			const struct tensor *t;
			if ((q % 8 == 0) != (phase == 0) || !(t = piece_at(p, d, q, np, &u0)))
				continue;
			uint64_t u1 = t->units - u0 < SAMPLE_PIECE ? t->units : u0 + SAMPLE_PIECE;
			ok = sample_piece(p, t, u0, u1, &sm) == 0;
			ns += u1 - u0;
		}
		if (phase == 0 && ns) { /* the pilot values */
			for (unsigned i = 0; i < nx; i++) {
				uint64_t r = (uint64_t)((double)k / (double)d * (double)ns);
				below[i] = bin_of_rank(ts, i, r ? r : 1) << 16;
			}
			sm.below = below;
		}
	}
	if (ok && !all && sm.npc > 1) {
		for (unsigned i = 0; i < nx; i++) {
			double c = 0, n = 0, v = 0;
			for (size_t q = 0; q < sm.npc; q++)
				c += sm.cnt[q * nx + i], n += (double)sm.len[q];
			for (size_t q = 1; q < sm.npc; q++) {
				double e1 = sm.cnt[q * nx + i] - c / n * (double)sm.len[q];
				double e0 = sm.cnt[(q - 1) * nx + i] - c / n * (double)sm.len[q - 1];
				v += (e1 - e0) * (e1 - e0);
			}
			/* the fraction's variance, from neighbouring pieces (a
			 * systematic sample: the spread between tensors is not
			 * error, the spread within them is) */
			v = v / (2.0 * ((double)sm.npc - 1.0)) * (double)sm.npc / (n * n);
			se[i] = sqrt(v) * (double)ns;
		}
	}
	if (sm.w)
		p->src->ops->worker_close(sm.w);
	free(sm.span), free(sm.ptr), free(sm.wptr), free(sm.wide), free(sm.bt), free(sm.tp), free(sm.cnt), free(sm.len);
	*whole = all;
	*pieces = all ? 0 : np;
	return ok ? ns : 0;
}

/*
 * Before the select pass (global trim): locate each t_i in the sample, give
 * or take SAMPLE_Z standard errors of the sample's rank (binomial, or what
 * the pieces measure, whichever is larger). When that range lies among
 * the smallest value of one bin, which ranks first in its bin, t_i is
 * predicted to be that value; when some t_i cannot be predicted so, the
 * select pass takes no prediction.
 * A sample of the whole model gives the bins themselves: then the select
 * pass does the threshold pass's work with them instead.
 * LINES_TEST_TIES_SAMPLE=off (no sample), predict (predict even from a
 * whole sample) or wrong (a wrong prediction): testing hooks, for the
 * paths that the small test models would not take.
 */
static int select_begin(struct merge_ctx *p, struct lines_error *err)
{
	struct ties *ts = T(p);
	const char *test = getenv("LINES_TEST_TIES_SAMPLE");
	uint64_t d = 0, k, ns, pieces = 0;
	struct timespec t0, t1;
	double se[SPEC_NX];
	char how[40];
	int whole = 0;
	(void)err;

	ts->way = TIES_COUNT;
	if (!ts->spec_ok || (test && !strcmp(test, "off")))
		return 0;
	for (size_t i = 0; i < p->nt; i++)
		d += p->t[i].merge ? p->t[i].units : 0;
	k = rank_k(d, p->o->density);
	if (d && k == 0) { /* nothing to trim: every t_i is 0, no sample needed */
		memset(ts->pred, 0, ts->nx * sizeof(*ts->pred));
		ts->way = TIES_PREDICT;
		return 0;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ns = d ? sample(p, d, k, &whole, &pieces, se) : 0;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	snprintf(how, sizeof(how), whole ? "the whole model" : "%llu pieces",
	         (unsigned long long)pieces);
	lines_logf(p->o, LINES_LOG_INFO, NULL, NULL, "ties: a sample of %llu elements (%s) in %.3f s",
	         (unsigned long long)ns, how,
	         (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
	if (ns && whole && !(test && (!strcmp(test, "wrong") || !strcmp(test, "predict")))) {
		/* The sample is the whole model: its counts are the select
		 * pass's, so the bins are known now, and the select pass does
		 * the threshold pass's work (a prediction would be no better:
		 * the same reads, the same sums). */
		find_bins(ts, 0, d, p);
		memset(ts->run, 0, (size_t)ts->nx * BINS * sizeof(*ts->run));
		ts->way = TIES_BINNED;
		lines_logf(p->o, LINES_LOG_INFO, NULL, NULL,
		         "ties: the sample is the whole model: the select pass does the threshold "
		         "pass's work");
		return 0;
	}
	ts->way = ns > 0 ? TIES_PREDICT : TIES_COUNT;
	for (unsigned i = 0; i < ts->nx && ts->way == TIES_PREDICT; i++) {
		const uint64_t *h = ts->run + (size_t)i * BINS;
		double f = (double)k / (double)d, r = f * (double)ns;
		/* the rank's error: binomial, or more where the pieces show it */
		double mg = SAMPLE_Z * fmax(sqrt((double)ns * f * (1.0 - f)), se[i]) + 2.0;
		uint64_t rlo = r - mg < 1.0 ? 1 : (uint64_t)(r - mg);
		uint64_t rhi = r + mg > (double)ns ? ns : (uint64_t)ceil(r + mg), cum = 0;
		uint32_t b = 0;
		if (whole) /* the sample is the model: t_i exactly */
			rlo = rhi = k;
		for (; b < BINS / 2; b++) { /* the bin of rank rlo */
			if (cum + h[2 * b] + h[2 * b + 1] >= rlo)
				break;
			cum += h[2 * b] + h[2 * b + 1];
		}
		if (b == BINS / 2 || rhi > cum + h[2 * b + 1]) {
			lines_logf(p->o, LINES_LOG_INFO, NULL, NULL,
			         "ties: the sample does not pin task %u's threshold to one value: the "
			         "threshold pass runs",
			         i + 1);
			ts->way = TIES_COUNT;
			break;
		}
		if (test && !strcmp(test, "wrong")) /* the next bin's smallest value */
			b = b + 1 < BINS / 2 ? b + 1 : 0;
		ts->pred[i] = b << 16;
		lines_logf(p->o, LINES_LOG_INFO, NULL, NULL, "ties: the sample puts task %u's threshold at %#x",
		         i + 1, b << 16);
	}
	memset(ts->run, 0, (size_t)ts->nx * BINS * sizeof(*ts->run));
	return 0;
}

static int select_reduce(struct merge_ctx *p, const struct pipe_job *job, struct lines_error *err)
{
	struct ties *ts = T(p);
	struct th_part v = th_part_of(ts, job, sel_stride(ts));

	for (unsigned b = 0; b < job->nblocks; b++) {
		ts->tsum[TS_W * job->tensor + TS_NUM] += part_num(&v, b)->s1;
		ts->tsum[TS_W * job->tensor + TS_NUM + 1] += part_num(&v, b)->s2;
	}
	if (ts->way == TIES_PREDICT || ts->way == TIES_BINNED) /* it did the threshold pass's work */
		FORWARD_IF_ERROR(reduce_decided(ts, job, &v, NUM_SUMS, 0, err));
	ts->run_d += job->u1 - job->u0;
	if (ts->per_tensor)
		add_run(ts, (const uint32_t *)job->part);
	if (ts->per_tensor && job->u1 == p->t[job->tensor].units) {
		find_bins(ts, job->tensor, ts->run_d, p);
		memset(ts->run, 0, (size_t)ts->nx * BINS * sizeof(*ts->run));
		ts->run_d = 0;
	}
	return 0;
}

static int conclude(struct merge_ctx *p, const char *pass, struct lines_error *err);

/* Count into run, for each task still selecting (need), the 16 bits at
 * sh of the magnitudes of the spill64 records [first, first + nrec) that
 * have the task's key and the bits above sh found so far (pre). */
static int refine_count(struct ties *ts, unsigned char *buf, uint64_t first, uint64_t nrec,
                        const uint32_t *key, const int *need, const uint64_t *pre, unsigned sh,
                        struct lines_error *err)
{
	unsigned nx = ts->nx;
	size_t rl = REC64(nx);
	memset(ts->run, 0, (size_t)nx * BINS * sizeof(*ts->run));
	if (fseeko(ts->spill64, (off_t)(first * rl), SEEK_SET) < 0)
		return lines_errno(err, errno, NULL, "cannot read back the temporary file of TIES");
	while (nrec) {
		size_t got = nrec < KERN_TILE ? (size_t)nrec : KERN_TILE;
		if (fread(buf, rl, got, ts->spill64) != got)
			return lines_errf(err, LINES_EIO, NULL, NULL,
			                  "cannot read back the temporary file of TIES");
		nrec -= got;
		for (size_t r = 0; r < got; r++)
			for (unsigned i = 0; i < nx; i++) {
				double d;
				memcpy(&d, buf + r * rl + 8 + 8 * (size_t)i, 8);
				uint64_t m = f64_mag(d);
				if (!need[i] || f64_key32(m) != key[i] ||
				    (sh < 48 && m >> (sh + 16) != pre[i] >> (sh + 16)))
					continue;
				ts->run[(size_t)i * BINS + ((m >> sh) & 0xffffu)]++;
			}
	}
	return 0;
}

/*
 * The float64 thresholds of entry e, once each t_i's float32 key K (thr)
 * and its rank inside K's bucket are known. The bucket holds float32
 * elements, all of value K (its smallest), and the F64 elements with key
 * K, which are all among the spill64 records [first, first + nrec). t_i
 * is K when the rank falls among the former; otherwise the rest of the
 * rank is found among the records by radix selection over the float64
 * magnitude's bits, 16 at a time: four reads of the records, in constant
 * memory. The float32 threshold becomes the smallest float32 at or above
 * t_i (the same values kept).
 */
static int refine64(struct merge_ctx *p, size_t e, uint64_t first, uint64_t nrec,
                    struct lines_error *err)
{
	struct ties *ts = T(p);
	unsigned nx = ts->nx;
	uint64_t want[LINES_MAX_MODELS], pre[LINES_MAX_MODELS];
	uint32_t key[LINES_MAX_MODELS];
	int need[LINES_MAX_MODELS], rc = 0;
	unsigned char *buf = malloc(KERN_TILE * REC64(nx));

	RETURN_ERROR_IF(!buf, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	for (unsigned i = 0; i < nx; i++) {
		size_t x = e * nx + i;
		key[i] = ts->thr[x], want[i] = ts->rank[x], pre[i] = 0;
		need[i] = want[i] > 0; /* else nothing is trimmed: t_i = 0 */
		ts->thr64[x] = f64_widen(key[i]);
	}
	for (unsigned lv = 0; rc == 0 && lv < 4; lv++) {
		unsigned sh = 48 - 16 * lv;
		rc = refine_count(ts, buf, first, nrec, key, need, pre, sh, err);
		for (unsigned i = 0; rc == 0 && i < nx; i++) {
			const uint64_t *h = ts->run + (size_t)i * BINS;
			uint64_t cum = 0, f = 0, c32;
			uint32_t b = 0;
			if (!need[i])
				continue;
			for (b = 0; lv == 0 && b < BINS; b++)
				f += h[b];
			c32 = ts->bcnt[e * nx + i] > f ? ts->bcnt[e * nx + i] - f : 0;
			if (lv == 0 && want[i] <= c32) { /* a float32 element: t_i = K */
				need[i] = 0;
				continue;
			}
			want[i] -= lv == 0 ? c32 : 0;
			for (b = 0; b + 1 < BINS && cum + h[b] < want[i]; b++)
				cum += h[b];
			want[i] -= cum;
			pre[i] |= (uint64_t)b << sh;
		}
	}
	for (unsigned i = 0; i < nx; i++) {
		size_t x = e * nx + i;
		if (need[i])
			ts->thr64[x] = pre[i];
		ts->thr[x] = ts->rank[x] ? f64_ceil32(ts->thr64[x]) : 0;
		if (!ts->rank[x])
			ts->thr64[x] = 0;
	}
	memset(ts->run, 0, (size_t)nx * BINS * sizeof(*ts->run));
	free(buf);
	if (rc == 0 && fseeko(ts->spill64, 0, SEEK_END) < 0)
		rc = lines_errno(err, errno, NULL, "cannot write the temporary file of TIES");
	return rc;
}

/* settle() for the spill64 records, in float64 with the float64
 * thresholds. */
static int settle64(struct merge_ctx *p, double *pos, double *neg, struct lines_error *err)
{
	struct ties *ts = T(p);
	unsigned nx = ts->nx;
	size_t rl = REC64(nx);
	unsigned char *buf = malloc(KERN_TILE * rl);
	uint64_t left = ts->nspill64;
	int rc = 0;

	RETURN_ERROR_IF(!buf, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	if (left && fseeko(ts->spill64, 0, SEEK_SET) < 0)
		rc = lines_errno(err, errno, NULL, "cannot read back the temporary file of TIES");
	while (rc == 0 && left) {
		size_t got = left < KERN_TILE ? (size_t)left : KERN_TILE;
		if (fread(buf, rl, got, ts->spill64) != got) {
			rc = lines_errf(err, LINES_EIO, NULL, NULL,
			                "cannot read back the temporary file of TIES");
			break;
		}
		left -= got;
		for (size_t r = 0; r < got; r++) {
			uint32_t ti;
			double tau[LINES_MAX_MODELS], mp, mn;
			memcpy(&ti, buf + r * rl, 4);
			memcpy(tau, buf + r * rl + 8, 8 * (size_t)nx);
			const uint64_t *thr = ts->thr64 + entry(ts, ti) * nx;
			int sp = f64_elect(tau, nx, thr, 1, divs(ts, ti), &mp);
			f64_elect(tau, nx, thr, -1, divs(ts, ti), &mn);
			if (sp) {
				ts->votes += sp;
				if (isfinite(mp))
					ts->det[0] += fabs(mp), ts->det[1] += mp * mp;
			} else if (isfinite(mp) && isfinite(mn)) {
				pos[0] += fabs(mp), pos[1] += mp * mp;
				neg[0] += fabs(mn), neg[1] += mn * mn;
			}
		}
	}
	free(buf);
	return rc;
}

/*
 * After a select pass with a prediction, the counts final: on a hit
 * (every t_i is its predicted value) the select pass summed what the
 * threshold pass would have; on a miss its sums are dropped for the
 * threshold pass.
 */
static int predict_end(struct merge_ctx *p, struct lines_error *err)
{
	struct ties *ts = T(p);
	int hit = 1;
	for (unsigned i = 0; i < ts->nx; i++)
		hit &= ts->known[i] && ts->thr[i] == ts->pred[i];
	if (hit) {
		ts->way = TIES_DONE;
		return conclude(p, "select", err);
	}
	lines_logf(p->o, LINES_LOG_INFO, NULL, NULL,
	         "ties: a threshold is not the sample's prediction: the threshold pass runs");
	ts->way = TIES_COUNT;
	ts->votes = 0;
	for (size_t t = 0; t < p->nt; t++) /* the decided sums; the numerator stays */
		memset(ts->tsum + TS_W * t + TS_DET, 0, 6 * sizeof(double));
	return 0;
}

static int select_done(struct merge_ctx *p, struct lines_error *err)
{
	struct ties *ts = T(p);
	ts->num[0] = ts->num[1] = 0.0; /* the tensors in output order */
	for (size_t t = 0; t < p->nt; t++)
		ts->num[0] += ts->tsum[TS_W * t + TS_NUM], ts->num[1] += ts->tsum[TS_W * t + TS_NUM + 1];
	if (ts->way == TIES_BINNED) { /* the select pass was the threshold pass */
		find_thresholds(ts, 0);
		memset(ts->run, 0, (size_t)ts->nx * BINS * sizeof(*ts->run));
		ts->run_d = 0;
		ts->way = TIES_DONE;
		return conclude(p, "select", err);
	}
	if (!ts->per_tensor)
		find_bins(ts, 0, ts->run_d, p);
	if (ts->way == TIES_PREDICT)
		FORWARD_IF_ERROR(predict_end(p, err));
	memset(ts->run, 0, (size_t)ts->nx * BINS * sizeof(*ts->run));
	ts->run_d = 0;
	return 0;
}

/* ---- threshold (and the election of the decided elements) ---------------------- */

static int threshold_needed(const struct merge_ctx *p)
{
	return ((const struct ties *)p->state)->way != TIES_DONE;
}

/*
 * What the bins decide in the threshold pass, per task of an entry:
 * lowbin, the bin whose low 16 bits are counted (UINT32_MAX: t_i known);
 * up, kept at or above it, trimmed below the bin, open inside it until
 * t_i is known. With float64 thresholds (entry64) t_i is final only
 * after refine64(): an F64 element with a key in obin stays open, and
 * so does a float32 one equal to eq (the known key, which F64 elements
 * may share).
 */
struct th_bins {
	uint32_t lowbin[LINES_MAX_MODELS], up[LINES_MAX_MODELS];
	uint32_t obin[LINES_MAX_MODELS], eq[LINES_MAX_MODELS];
	uint64_t up64[LINES_MAX_MODELS]; /* up as a float64 magnitude */
	int wide;
};

static void th_bins_of(const struct merge_ctx *p, size_t tensor, struct th_bins *tb)
{
	const struct ties *ts = p->state;
	size_t e = entry(ts, tensor);
	tb->wide = entry64(p, ts, e);
	for (unsigned i = 0; i < ts->nx; i++) {
		size_t x = e * ts->nx + i;
		int keep_all = ts->known[x] && ts->rank[x] == 0;
		tb->lowbin[i] = ts->known[x] ? UINT32_MAX : ts->bin[x];
		tb->up[i] = ts->known[x] ? ts->thr[x] : (ts->bin[x] + 1) << 16;
		tb->up64[i] = f64_widen(tb->up[i]);
		tb->obin[i] = tb->wide && !keep_all ? ts->bin[x] : UINT32_MAX;
		tb->eq[i] = tb->wide && ts->known[x] && !keep_all ? ts->thr[x] : UINT32_MAX;
	}
}

/* open[j] |= 1 where a task's float32 |tau'| is its eq. */
static void open_equal(const struct th_bins *tb, const float *tp, unsigned nx, size_t nn,
                       unsigned char *open)
{
	for (unsigned i = 0; tb->wide && i < nx; i++)
		for (size_t j = 0; tb->eq[i] != UINT32_MAX && j < nn; j++)
			open[j] |= ties_mag(tp[(size_t)i * nn + j]) == tb->eq[i];
}

/*
 * The threshold pass over an F64 job, element by element in float64: the
 * low-bit counts of the keys (f64_key32) of |tau'| inside each bin; an
 * element with a key in a task's obin is open, a record of its nx
 * doubles for spill64; the others are decided by up64 and summed as
 * threshold_job sums them.
 */
static void threshold_f64(struct merge_ctx *p, struct pipe_job *job, uint32_t *const *h,
                          const struct th_bins *tb, const struct th_part *v, size_t off)
{
	unsigned nx = T(p)->nx;
	size_t n = (size_t)(job->u1 - job->u0), nrec = 0;
	uint32_t ti = (uint32_t)job->tensor;
	int64_t votes = 0;

	for (unsigned b = 0; b < job->nblocks; b++) {
		double dl[KERN_LANES] = {0}, dq[KERN_LANES] = {0}, pl[KERN_LANES] = {0},
		       pq[KERN_LANES] = {0}, nl[KERN_LANES] = {0}, nq[KERN_LANES] = {0};
		struct th_sums *s = part_th(v, b, off);
		size_t b0 = (size_t)b * KERN_BLOCK, b1 = b0 + KERN_BLOCK < n ? b0 + KERN_BLOCK : n;
		for (size_t j = b0; j < b1; j++) {
			unsigned l = (unsigned)((j - b0) % KERN_LANES);
			double tau[LINES_MAX_MODELS], mp, mn = 0.0;
			int open = 0, sp;
			f64_taus(job, nx, tensor_w(p, &p->t[job->tensor]), j, tau, NULL);
			for (unsigned i = 0; i < nx; i++) {
				uint32_t k = f64_key32(f64_mag(tau[i]));
				if (k >> 16 == tb->lowbin[i])
					h[i][k & 0xffffu]++;
				open |= k >> 16 == tb->obin[i];
			}
			if (open) { /* settled from spill64 once t_i is known */
				unsigned char *r = (unsigned char *)v->rec + nrec++ * REC64(nx);
				memset(r, 0, 8);
				memcpy(r, &ti, 4);
				memcpy(r + 8, tau, 8 * (size_t)nx);
				continue;
			}
			votes += sp = f64_elect(tau, nx, tb->up64, 1, divs(T(p), ti), &mp);
			if (sp) {
				f64_norm_add(dl, dq, l, mp);
			} else if (mp != 0.0) { /* a zero sum: both majorities */
				f64_elect(tau, nx, tb->up64, -1, divs(T(p), ti), &mn);
				if (isfinite(mp) && isfinite(mn))
					f64_norm_add(pl, pq, l, mp), f64_norm_add(nl, nq, l, mn);
			}
		}
		s->dl = kern_lane_sum(dl), s->dq = kern_lane_sum(dq);
		s->pl = kern_lane_sum(pl), s->pq = kern_lane_sum(pq);
		s->nl = kern_lane_sum(nl), s->nq = kern_lane_sum(nq);
	}
	*v->votes = (double)votes;
	*v->nrec = (double)nrec;
}

/*
 * The threshold pass's work on one job: the low-bit counts into the
 * job's counts, per block the sums (at off in the block), the records,
 * the votes and the records' number; with num, also the numerator of
 * alpha per block (the select pass, when the sample read the whole model
 * and so gave the bins).
 */
static void threshold_job(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                          const struct th_part *v, size_t off, int num)
{
	const struct tensor *t = &p->t[job->tensor];
	struct ties *ts = T(p);
	unsigned nx = ts->nx;
	uint32_t *hist = job_counts(ts, job, scratch), *h[LINES_MAX_MODELS];
	struct th_bins tb;
	const uint32_t *lowbin = tb.lowbin, *up = tb.up;
	struct tile_ws w = tile_ws_at(scratch, nx);
	const void *xs[LINES_MAX_MODELS];
	size_t n = (size_t)(job->u1 - job->u0), nrec = 0;
	int64_t votes = 0;

	th_bins_of(p, job->tensor, &tb);
	for (unsigned i = 0; i < nx; i++)
		h[i] = hist + (size_t)i * BINS;
	if (f64_tensor(t)) {
		threshold_f64(p, job, h, &tb, v, off);
		return;
	}
	for (unsigned b = 0; b < job->nblocks; b++) {
		struct kern_norms nm;
		double dl[KERN_LANES] = {0}, dq[KERN_LANES] = {0};
		double pl[KERN_LANES] = {0}, pq[KERN_LANES] = {0};
		double nl[KERN_LANES] = {0}, nq[KERN_LANES] = {0};
		struct th_sums *s = part_th(v, b, off);
		size_t b0 = (size_t)b * KERN_BLOCK, b1 = b0 + KERN_BLOCK < n ? b0 + KERN_BLOCK : n;
		memset(&nm, 0, sizeof(nm));
		for (size_t j0 = b0; j0 < b1; j0 += KERN_TILE) {
			size_t nn = b1 - j0 < KERN_TILE ? b1 - j0 : KERN_TILE;
			for (unsigned i = 0; i < nx; i++)
				xs[i] = job->in[i + 1] + j0 * t->unit_in;
			ties_taus(p->k, t->in_dt, xs, nx, job->in[0] + j0 * t->unit_in, tensor_w(p, t), nn, w.bt,
			          w.tp);
			if (num)
				tile_numerator(p, t, xs, w.bt, w.tp, nn, &nm);
			ties_bins(p->k, w.tp, nx, nn, lowbin, h, w.open);
			open_equal(&tb, w.tp, nx, nn, w.open);
			ties_elect_tile(p->k, w.tp, nn, nx, up, 1, divs(ts, job->tensor), w.mtl, w.sign);
			votes += ties_decided(p->k, w.mtl, w.sign, w.open, nn, dl, dq);
			nrec += tile_open(ts, (uint32_t)job->tensor, w.tp, nn, w.open, w.mtl, up,
			                  v->rec + nrec * TH_REC(nx), pl, pq, nl, nq);
		}
		if (num) {
			part_num(v, b)->s1 = kern_lane_sum(nm.s1);
			part_num(v, b)->s2 = kern_lane_sum(nm.s2);
		}
		s->dl = kern_lane_sum(dl), s->dq = kern_lane_sum(dq);
		s->pl = kern_lane_sum(pl), s->pq = kern_lane_sum(pq);
		s->nl = kern_lane_sum(nl), s->nq = kern_lane_sum(nq);
	}
	*v->votes = (double)votes;
	*v->nrec = (double)nrec;
}

LINES_HOT static int threshold_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                          struct lines_error *err)
{
	struct th_part v = th_part_of(T(p), job, TH_SUMS);
	(void)err;
	threshold_job(p, job, scratch, &v, 0, 0);
	return 0;
}

static int threshold_reduce(struct merge_ctx *p, const struct pipe_job *job, struct lines_error *err)
{
	struct ties *ts = T(p);

	if (ts->per_tensor)
		add_run(ts, (const uint32_t *)job->part);
	struct th_part v = th_part_of(ts, job, TH_SUMS);
	if (job->u0 == 0)
		ts->grp0 = ts->nspill64;
	FORWARD_IF_ERROR(reduce_decided(ts, job, &v, 0, f64_tensor(&p->t[job->tensor]), err));
	if (ts->per_tensor && job->u1 == p->t[job->tensor].units) {
		find_thresholds(ts, job->tensor);
		if (entry64(p, ts, job->tensor))
			FORWARD_IF_ERROR(refine64(p, job->tensor, ts->grp0, ts->nspill64 - ts->grp0, err));
		memset(ts->run, 0, (size_t)ts->nx * BINS * sizeof(*ts->run));
	}
	return 0;
}

/*
 * Settle the elements of the temporary file, now that every t_i is known:
 * one sequential read, in batches that the election kernel takes as tiles
 * (a batch is cut where the tensor, hence the thresholds, changes). Zero
 * sums are counted both ways, as in the threshold pass.
 */
static int settle(struct merge_ctx *p, struct lines_error *err)
{
	struct ties *ts = T(p);
	unsigned nx = ts->nx;
	size_t rl = TH_REC(nx), cap = KERN_TILE;
	float *buf = malloc(cap * rl * sizeof(float)), *tp = malloc(cap * nx * sizeof(float));
	double *mp = malloc(cap * sizeof(double)), *mn = malloc(cap * sizeof(double));
	signed char *sp = malloc(cap), *sn = malloc(cap);
	uint64_t left = ts->nspill;
	int rc = 0;

	if (!buf || !tp || !mp || !mn || !sp || !sn)
		rc = lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
	else if (fseek(ts->spill, 0, SEEK_SET) < 0)
		rc = lines_errno(err, errno, NULL, "cannot read back the temporary file of TIES");
	while (rc == 0 && left) {
		size_t got = left < cap ? (size_t)left : cap;
		if (fread(buf, rl * sizeof(float), got, ts->spill) != got) {
			rc = lines_errf(err, LINES_EIO, NULL, NULL,
			                "cannot read back the temporary file of TIES");
			break;
		}
		left -= got;
		for (size_t r0 = 0; r0 < got;) {
			uint32_t ti, tj;
			size_t r1 = r0 + 1, m;
			memcpy(&ti, buf + r0 * rl, 4);
			while (r1 < got && (memcpy(&tj, buf + r1 * rl, 4), tj == ti))
				r1++;
			m = r1 - r0;
			for (size_t r = 0; r < m; r++) /* records to a task-major tile */
				for (unsigned i = 0; i < nx; i++)
					tp[(size_t)i * m + r] = buf[(r0 + r) * rl + 1 + i];
			if (ti >= p->nt) {
				rc = lines_errf(err, LINES_EFORMAT, NULL, NULL,
				                "a record of TIES's temporary file names tensor %u of %zu", ti,
				                p->nt);
				break;
			}
			const uint32_t *thr = ts->thr + entry(ts, ti) * nx;
			double *tsum = ts->tsum + TS_W * (size_t)ti;
			ties_elect_tile(p->k, tp, m, nx, thr, 1, divs(ts, ti), mp, sp);
			ties_elect_tile(p->k, tp, m, nx, thr, -1, divs(ts, ti), mn, sn);
			for (size_t r = 0; r < m; r++) {
				if (sp[r]) {
					ts->votes += sp[r];
					if (isfinite(mp[r]))
						tsum[TS_SDET] += fabs(mp[r]), tsum[TS_SDET + 1] += mp[r] * mp[r];
				} else if (isfinite(mp[r]) && isfinite(mn[r])) {
					tsum[TS_SPOS] += fabs(mp[r]), tsum[TS_SPOS + 1] += mp[r] * mp[r];
					tsum[TS_SNEG] += fabs(mn[r]), tsum[TS_SNEG + 1] += mn[r] * mn[r];
				}
			}
			r0 = r1;
		}
	}
	free(buf), free(tp), free(mp), free(mn), free(sp), free(sn);
	return rc;
}

/*
 * Every t_i known and the file complete: settle it, elect the majority
 * sign, and set alpha from the norms: per tensor, its decided elements
 * plus its settled ones; the tensors in output order (then the float64
 * path's settled elements): the same sums whatever part of the tensors
 * a run measured.
 */
static int conclude(struct merge_ctx *p, const char *pass, struct lines_error *err)
{
	struct ties *ts = T(p);
	double pos[2] = {0, 0}, neg[2] = {0, 0}, det[2] = {0, 0};

	FORWARD_IF_ERROR(settle(p, err));
	for (size_t t = 0; t < p->nt; t++) {
		const double *s = ts->tsum + TS_W * t;
		for (int j = 0; j < 2; j++) {
			det[j] += s[TS_DET + j] + s[TS_SDET + j];
			pos[j] += s[TS_ZPOS + j] + s[TS_SPOS + j];
			neg[j] += s[TS_ZNEG + j] + s[TS_SNEG + j];
		}
	}
	if (ts->has64)
		FORWARD_IF_ERROR(settle64(p, pos, neg, err));
	ts->maj = ts->votes >= 0 ? 1 : -1; /* +1 when the votes are even */
	ts->concluded = 1;
	double l1 = det[0] + ts->det[0] + (ts->maj > 0 ? pos[0] : neg[0]);
	double l2 = det[1] + ts->det[1] + (ts->maj > 0 ? pos[1] : neg[1]);
	lines_logf(p->o, LINES_LOG_INFO, NULL, NULL,
	           "ties: %llu elements settled after the %s pass; majority sign %+d",
	           (unsigned long long)(ts->nspill + ts->nspill64), pass, ts->maj);
	if (ts->tall) /* alpha from ||tau_cons||: the norm pass after this one */
		return 0;
	return scales_from_norms(p->sc, p->o->norm_p == 2 ? sqrt(ts->num[1]) : ts->num[0],
	                         p->o->norm_p == 2 ? sqrt(l2) : l1, 1, err);
}

static int threshold_done(struct merge_ctx *p, struct lines_error *err)
{
	struct ties *ts = T(p);
	if (!ts->per_tensor)
		find_thresholds(ts, 0);
	if (!ts->per_tensor && ts->has64)
		FORWARD_IF_ERROR(refine64(p, 0, 0, ts->nspill64, err));
	return conclude(p, "threshold", err);
}

/* ---- consensus over TIES --------------------------------------------------------- */
/*
 * -m consensus --consensus-over ties: tau_MTL is TIES's merged vector
 * (the disjoint mean of the trimmed, elected tau'_i), and task t's TALL
 * mask holds an element where |tau'_t| > lambda_t |tau_MTL - tau'_t|,
 * tau'_t the weighted task vector TIES trims (float32, or float64 in F64
 * tensors). Where fewer than k masks hold it, tau_MTL becomes 0 (the
 * base's value is written); a NaN or infinite tau_MTL is written as it is.
 */
static double tall_lambda_of(const struct lines_merge_opts *o, unsigned i)
{
	return o->tall_lambdas ? o->tall_lambdas[i] : o->tall_lambda;
}

/* 1 where element m of the nx values tau (stride apart) is kept. */
static int tall_keep(const struct lines_merge_opts *o, unsigned nx, const float *tp,
                     const double *tau, size_t stride, double m)
{
	unsigned votes = 0;
	if (!isfinite(m))
		return 1;
	for (unsigned i = 0; i < nx; i++) {
		double c = tau ? tau[i] : (double)tp[(size_t)i * stride];
		votes += fabs(c) > tall_lambda_of(o, i) * fabs(m - c);
	}
	return votes >= o->consensus_k;
}

/* Element j's tau_cons, and the counts (part[0] kept, part[1] dropped). */
static double tall_apply(const struct merge_ctx *p, unsigned nx, const float *tp, const double *tau,
                         size_t stride, double m, double *part)
{
	int keep = tall_keep(p->o, nx, tp, tau, stride, m);
	if (part) {
		part[0] += keep && isfinite(m);
		part[1] += !keep;
	}
	return keep ? m : 0.0;
}

/* ---- write ----------------------------------------------------------------------- */
LINES_HOT static int write_work(struct merge_ctx *p, struct pipe_job *job, void *scratch, struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	struct ties *ts = T(p);
	unsigned nx = ts->nx;
	const uint32_t *thr = ts->thr + entry(ts, job->tensor) * nx;
	struct tile_ws w = tile_ws_at(scratch, nx);
	const void *xs[LINES_MAX_MODELS];
	size_t n = (size_t)(job->u1 - job->u0);
	double *part = ts->tall ? job->part : NULL;
	(void)err;

	if (part)
		part[0] = part[1] = 0.0;
	for (size_t j = 0; f64_tensor(t) && j < n; j++) { /* in float64 (f64.h) */
		double tau[LINES_MAX_MODELS], m, b = f64_taus(job, nx, tensor_w(p, t), j, tau, NULL);
		f64_elect(tau, nx, ts->thr64 + entry(ts, job->tensor) * nx, ts->maj, divs(ts, job->tensor), &m);
		if (ts->tall)
			m = tall_apply(p, nx, NULL, tau, 1, m, part);
		f64_finish(job->out, j, b, m, t->lambda);
		for (unsigned v = 0; v < job->nvout; v++) /* a sweep: the same m */
			f64_finish(job->vout[v], j, b, m, pipe_job_lambda(job, v));
	}
	for (size_t j0 = 0; !f64_tensor(t) && j0 < n; j0 += KERN_TILE) {
		size_t nn = n - j0 < KERN_TILE ? n - j0 : KERN_TILE;
		for (unsigned i = 0; i < nx; i++)
			xs[i] = job->in[i + 1] + j0 * t->unit_in;
		ties_taus(p->k, t->in_dt, xs, nx, job->in[0] + j0 * t->unit_in, tensor_w(p, t), nn, w.bt, w.tp);
		ties_elect_tile(p->k, w.tp, nn, nx, thr, ts->maj, divs(ts, job->tensor), w.mtl, w.sign);
		for (size_t j = 0; ts->tall && j < nn; j++)
			w.mtl[j] = tall_apply(p, nx, w.tp + j, NULL, nn, w.mtl[j], part);
		p->k->finish(t->out_dt, job->out + j0 * t->unit_out, w.bt, w.mtl, t->lambda, nn);
		for (unsigned v = 0; v < job->nvout; v++)
			p->k->finish(t->out_dt, job->vout[v] + j0 * t->unit_out, w.bt, w.mtl,
			             pipe_job_lambda(job, v), nn);
	}
	return 0;
}

static int tall_write_reduce(struct merge_ctx *p, const struct pipe_job *job,
                             struct lines_error *err)
{
	struct ties *ts = T(p);
	(void)err;
	ts->kept += (uint64_t)job->part[0];
	ts->dropped += (uint64_t)job->part[1];
	return 0;
}

static int tall_write_done(struct merge_ctx *p, struct lines_error *err)
{
	(void)err;
	T(p)->written = 1;
	return 0;
}

/*
 * The norm pass of automatic alpha over TIES: |tau_cons| and tau_cons^2
 * per KERN_BLOCK block (aligned to the tensor's start), elements in
 * order, the non-finite left out; ||sum tau|| is the select pass's.
 */
static void tall_norm_add(double *part, double u)
{
	if (isfinite(u))
		part[0] += fabs(u), part[1] += u * u;
}

LINES_HOT static int tall_norm_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                          struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	struct ties *ts = T(p);
	unsigned nx = ts->nx;
	const uint32_t *thr = ts->thr + entry(ts, job->tensor) * nx;
	struct tile_ws w = tile_ws_at(scratch, nx);
	const void *xs[LINES_MAX_MODELS];
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;
	for (unsigned blk = 0; blk < job->nblocks; blk++) {
		double *part = job->part + 2 * blk;
		size_t b0 = (size_t)blk * KERN_BLOCK, b1 = b0 + KERN_BLOCK < n ? b0 + KERN_BLOCK : n;
		part[0] = part[1] = 0.0;
		for (size_t j = b0; f64_tensor(t) && j < b1; j++) {
			double tau[LINES_MAX_MODELS], m;
			f64_taus(job, nx, tensor_w(p, t), j, tau, NULL);
			f64_elect(tau, nx, ts->thr64 + entry(ts, job->tensor) * nx, ts->maj, divs(ts, job->tensor), &m);
			tall_norm_add(part, tall_apply(p, nx, NULL, tau, 1, m, NULL));
		}
		for (size_t j0 = b0; !f64_tensor(t) && j0 < b1; j0 += KERN_TILE) {
			size_t nn = b1 - j0 < KERN_TILE ? b1 - j0 : KERN_TILE;
			for (unsigned i = 0; i < nx; i++)
				xs[i] = job->in[i + 1] + j0 * t->unit_in;
			ties_taus(p->k, t->in_dt, xs, nx, job->in[0] + j0 * t->unit_in, tensor_w(p, t), nn, w.bt,
			          w.tp);
			ties_elect_tile(p->k, w.tp, nn, nx, thr, ts->maj, divs(ts, job->tensor), w.mtl, w.sign);
			for (size_t j = 0; j < nn; j++)
				tall_norm_add(part, tall_apply(p, nx, w.tp + j, NULL, nn, w.mtl[j], NULL));
		}
	}
	return 0;
}

static int tall_norm_reduce(struct merge_ctx *p, const struct pipe_job *job,
                            struct lines_error *err)
{
	struct ties *ts = T(p);
	(void)err;
	for (unsigned b = 0; b < job->nblocks; b++)
		ts->cons[0] += job->part[2 * b], ts->cons[1] += job->part[2 * b + 1];
	return 0;
}

/* The masks may drop every element: alpha 1 with a warning then. */
static int tall_norm_done(struct merge_ctx *p, struct lines_error *err)
{
	const struct ties *ts = T(p);
	int l2 = p->o->norm_p == 2;
	return scales_from_norms(p->sc, l2 ? sqrt(ts->num[1]) : ts->num[0],
	                         l2 ? sqrt(ts->cons[1]) : ts->cons[0], 1, err);
}

/* The passes that consensus adds: norms (automatic alpha), and the
 * counts of the writing pass. */
static int tall_setup(struct merge_ctx *p, struct pass *write, struct lines_error *err)
{
	write->part_job = 2;
	write->reduce = tall_write_reduce;
	write->done = tall_write_done;
	if (!(p->o->lines && p->o->alpha_auto))
		return 0;
	struct pass *ps = passes_insert(p->passes, p->passes->n - 1);
	RETURN_ERROR_IF(!ps, err, LINES_EUNSUPPORTED, NULL, NULL, "too many passes");
	ps->name = "norms";
	ps->part_block = 2;
	ps->scratch = scratch_bytes(T(p)->nx);
	ps->want = want_merged;
	ps->work = tall_norm_work;
	ps->reduce = tall_norm_reduce;
	ps->done = tall_norm_done;
	return 0;
}

int ties_consensus_counts(const struct merge_ctx *c, uint64_t *kept, uint64_t *dropped)
{
	const struct ties *ts = c->state;
	if (!ts || !ts->written)
		return 0;
	*kept = ts->kept, *dropped = ts->dropped;
	return 1;
}

static void ties_free(struct merge_ctx *p)
{
	struct ties *ts = T(p);
	if (!ts)
		return;
	if (ts->spill)
		fclose(ts->spill);
	if (ts->spill64)
		fclose(ts->spill64);
	free(ts->thr64), free(ts->bcnt);
	free(ts->run), free(ts->bin), free(ts->rank), free(ts->thr), free(ts->known);
	free(ts->ones), free(ts->pred), free(ts->tsum), free(ts->cten);
	pthread_mutex_destroy(&ts->mu);
	free(ts);
	p->state = NULL;
}

static FILE *tmpfile_in(const char *dir)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	return fd < 0 ? NULL : fdopen(fd, "w+");
}

/* The state's tables, zeroed; -1 when out of memory. */
static int ties_alloc(const struct merge_ctx *p, struct ties *ts)
{
	unsigned nx = ts->nx;
	ts->nentries = ts->per_tensor ? (p->nt ? p->nt : 1) : 1;
	ts->run = calloc((size_t)nx * BINS, sizeof(*ts->run));
	ts->bin = calloc(ts->nentries * nx, sizeof(*ts->bin));
	ts->rank = calloc(ts->nentries * nx, sizeof(*ts->rank));
	ts->thr = calloc(ts->nentries * nx, sizeof(*ts->thr));
	ts->known = calloc(ts->nentries * nx, 1);
	ts->ones = calloc(nx, sizeof(*ts->ones));
	ts->thr64 = calloc(ts->nentries * nx, sizeof(*ts->thr64));
	ts->bcnt = calloc(ts->nentries * nx, sizeof(*ts->bcnt));
	ts->pred = calloc(nx, sizeof(*ts->pred));
	ts->tsum = calloc((p->nt ? p->nt : 1) * TS_W, sizeof(*ts->tsum));
	return ts->run && ts->bin && ts->rank && ts->thr && ts->known && ts->ones && ts->pred &&
	               ts->thr64 && ts->bcnt && ts->tsum
	           ? 0
	           : -1;
}

static int ties_setup(struct merge_ctx *p, struct lines_error *err)
{
	struct ties *ts = calloc(1, sizeof(*ts));
	const char *dir = getenv("TMPDIR");
	unsigned nx = p->nmodels;

	RETURN_ERROR_IF(!ts, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	pthread_mutex_init(&ts->mu, NULL);
	p->state = ts;
	RETURN_ERROR_IF(p->single_pass, err, LINES_EUSAGE, NULL, NULL,
	                "standard input can be read only once, and TIES reads its inputs two or "
	                "three times: give that model as a file");
	RETURN_ERROR_IF(nx > LINES_MAX_MODELS, err, LINES_EUSAGE, NULL, NULL, "TIES merges at most %d models", LINES_MAX_MODELS);
	ts->nx = nx;
	ts->per_tensor = p->o->trim_tensor;
	ts->tall = p->o->method == LINES_M_CONSENSUS;
	ts->c = elect_divisors(p, ts->cbuf);
	if (p->tensor_w) { /* each tensor its own weights: its own divisors */
		RETURN_ERROR_IF(!(ts->cten = calloc(p->nt * (nx + 1), sizeof(double))), err,
		                LINES_ENOMEM, NULL, NULL, "out of memory");
		for (size_t i = 0; i < p->nt; i++) {
			const double *w = tensor_w(p, &p->t[i]);
			double *c = ts->cten + i * (nx + 1);
			int ones = !p->o->no_normalize;
			for (unsigned q = 0; q < nx; q++) {
				c[q] = p->o->no_normalize ? 0.0 : w[q];
				ones &= w[q] == 1.0;
			}
			c[nx] = ones;
		}
	}
	/* LINES_TEST_TIES_FLUSH_EVERY: flush far more often, to test the flushes
	 * (the counts and so the bytes must not change) */
	ts->count_limit = UINT32_MAX;
	if (getenv("LINES_TEST_TIES_FLUSH_EVERY"))
		ts->count_limit = strtoull(getenv("LINES_TEST_TIES_FLUSH_EVERY"), NULL, 10);
	for (size_t i = 0; i < p->nt; i++)
		ts->has64 |= p->t[i].merge && f64_tensor(&p->t[i]);
	/* a prediction for the select pass: global trim over files that can
	 * be sampled (not streams), and few enough tasks for the sample; not
	 * with F64 tensors, whose thresholds are refined after the counts */
	ts->spec_ok = !ts->per_tensor && !p->streams && nx <= SPEC_NX && !ts->has64 &&
	              !p->o->densities /* one k for every task */
	              && !p->o->part_m; /* a part counts its own tensors only */
	RETURN_ERROR_IF(ties_alloc(p, ts) < 0, err, LINES_ENOMEM, NULL, NULL,
	                "out of memory for TIES");
	for (unsigned i = 0; i < nx; i++)
		ts->ones[i] = 1.0;
	if (!dir || !*dir)
		dir = "/tmp";
	if (!(ts->spill = tmpfile_in(dir)) || (ts->has64 && !(ts->spill64 = tmpfile_in(dir))))
		return lines_errno(err, errno, dir, "cannot create the temporary file of TIES");

	struct pass *a = passes_add(p->passes);
	a->name = "select";
	a->part_job = (unsigned)part_head(ts);
	a->part_block = (unsigned)sel_stride(ts) +
	                (ts->spec_ok ? (unsigned)((KERN_BLOCK * TH_REC(nx) + 1) / 2) : 0);
	a->begin = select_begin;
	a->scratch = scratch_bytes(nx) + count_bytes(ts) + (ts->spec_ok ? sel_scratch(nx) : 0);
	a->worker_end = ts->per_tensor ? NULL : counts_end;
	a->want = want_merged;
	a->work = select_work;
	a->reduce = select_reduce;
	a->done = select_done;

	struct pass *b = passes_add(p->passes);
	b->name = "threshold";
	b->part_job = (unsigned)part_head(ts);
	b->part_block = (unsigned)TH_SUMS + (unsigned)((KERN_BLOCK * TH_REC(nx) + 1) / 2);
	if (ts->has64) /* room for a block of F64 records */
		b->part_block = (unsigned)(TH_SUMS + KERN_BLOCK * REC64(nx) / 8);
	b->scratch = scratch_bytes(nx) + count_bytes(ts);
	b->worker_end = ts->per_tensor ? NULL : counts_end;
	b->want = want_merged;
	b->work = threshold_work;
	b->reduce = threshold_reduce;
	b->done = threshold_done;
	/* skipped when the select pass did its work: only with global trim
	 * over files that can be sampled */
	b->needed = ts->spec_ok ? threshold_needed : NULL;
	/* in parts: rounds of statistics with global trim; the rest is not yet */
	int parts_ok = !ts->has64 && !ts->tall;
	a->stats = b->stats = parts_ok;
	a->whole_model = b->whole_model = !parts_ok;

	struct pass *c = passes_add(p->passes);
	c->name = "write";
	c->writes = 1;
	c->sweeps = 1; /* the elected mean once, finished per value */
	c->scratch = scratch_bytes(nx);
	c->want = want_all;
	c->work = write_work;
	if (p->o->lines && p->o->alpha_auto)
		p->sc->measured = 1;
	return ts->tall ? tall_setup(p, c, err) : 0;
}

/* ---- --part: the select and threshold passes as rounds of statistics ------------ */
/*
 * Without F64 tensors and not under consensus, both passes run per part
 * (partition.c): round 1 the select pass (no sample: its counts only),
 * round 2 the threshold pass with the bins of round 1's combined counts
 * (with --trim tensor each tensor's bins and thresholds are its own, and
 * travel in its row). A part's file holds the counts of its tensors (integers: they
 * add exactly), the sums of each of its tensors as hex floats (tsum, the
 * same groups as one machine's), the votes, and in round 2 the elements
 * left open (the temporary file's records): the step after the last
 * round settles them in order, as one machine does.
 */
static json_t *ties_stats_save(struct merge_ctx *p, unsigned r, size_t t0, size_t t1)
{
	struct ties *ts = T(p);
	json_t *o = json_object(), *counts = json_array(), *rows = json_array(), *tot = json_array();
	json_t *recs = r == 2 ? json_array() : NULL;
	int bad = !o || !counts || !rows || !tot || (r == 2 && !recs);
	for (size_t q = 0; !bad && q < (size_t)ts->nx * BINS; q++)
		if (ts->run[q]) {
			json_t *pr = json_array();
			json_array_append_new(pr, json_integer((json_int_t)q));
			json_array_append_new(pr, json_integer((json_int_t)ts->run[q]));
			json_array_append_new(counts, pr);
		}
	for (size_t t = t0; !bad && t < t1; t++) {
		json_t *row = json_array();
		const double *s = ts->tsum + TS_W * t;
		for (int j = r == 1 ? TS_NUM : TS_DET; j < (r == 1 ? TS_NUM + 2 : TS_ZNEG + 2); j++)
			json_array_append_new(row, json_hexf(s[j]));
		for (unsigned i = 0; ts->per_tensor && i < ts->nx; i++) { /* its own thresholds */
			size_t x = t * ts->nx + i;
			uint64_t v[5] = {ts->bin[x], ts->rank[x], ts->known[x], ts->thr[x], ts->bcnt[x]};
			for (int j = 0; j < 5; j++)
				json_array_append_new(row, json_integer((json_int_t)v[j]));
		}
		json_array_append_new(rows, row);
	}
	json_array_append_new(tot, json_integer(r == 1 ? (json_int_t)ts->run_d : (json_int_t)ts->votes));
	if (!bad && r == 2 && ts->nspill) { /* the open elements, in order */
		size_t rl = TH_REC(ts->nx);
		float *rec = malloc(rl * sizeof(float));
		bad = !rec || fseek(ts->spill, 0, SEEK_SET) < 0;
		for (uint64_t k = 0; !bad && k < ts->nspill; k++) {
			uint32_t ti;
			json_t *e = json_array();
			if (fread(rec, rl * sizeof(float), 1, ts->spill) != 1) {
				bad = 1;
				json_decref(e);
				break;
			}
			memcpy(&ti, rec, 4);
			json_array_append_new(e, json_integer(ti));
			for (unsigned i = 0; i < ts->nx; i++)
				json_array_append_new(e, json_hexf(rec[1 + i]));
			json_array_append_new(recs, e);
		}
		free(rec);
	}
	if (bad) {
		json_decref(o), json_decref(counts), json_decref(rows), json_decref(tot);
		json_decref(recs);
		return NULL;
	}
	json_object_set_new(o, "kind", json_string(r == 1 ? "ties-select" : "ties-threshold"));
	json_object_set_new(o, "counts", counts);
	json_object_set_new(o, "totals", tot);
	json_object_set_new(o, "rows", rows);
	if (recs)
		json_object_set_new(o, "records", recs);
	return o;
}

static int ties_stats_load(struct merge_ctx *p, unsigned r, json_t *res, struct lines_error *err)
{
	struct ties *ts = T(p);
	json_t *counts = json_object_get(res, "counts"), *rows = json_object_get(res, "rows"), *e;
	json_t *recs = json_object_get(res, "records");
	const char *kind = json_string_value(json_object_get(res, "kind"));
	size_t i, w0 = r == 1 ? 2 : 6, w = w0 + (ts->per_tensor ? 5 * (size_t)ts->nx : 0);
	RETURN_ERROR_IF(!kind || strcmp(kind, r == 1 ? "ties-select" : "ties-threshold") ||
	                        !json_is_array(counts) || (r == 2 && !json_is_array(recs)),
	                err, LINES_EFORMAT, p->o->stats_in, NULL,
	                "round %u: not TIES's statistics", r);
	memset(ts->run, 0, (size_t)ts->nx * BINS * sizeof(*ts->run));
	json_array_foreach(counts, i, e) {
		json_int_t q = json_integer_value(json_array_get(e, 0));
		RETURN_ERROR_IF(q < 0 || (size_t)q >= (size_t)ts->nx * BINS, err, LINES_EFORMAT,
		                p->o->stats_in, NULL, "round %u: a count out of range", r);
		ts->run[q] = (uint64_t)json_integer_value(json_array_get(e, 1));
	}
	json_int_t tot = json_integer_value(json_array_get(json_object_get(res, "totals"), 0));
	if (r == 1)
		ts->run_d = (uint64_t)tot;
	else
		ts->votes = tot;
	for (size_t t = 0; t < p->nt; t++) {
		json_t *row = json_array_get(rows, t);
		RETURN_ERROR_IF(json_array_size(row) != w, err, LINES_EFORMAT, p->o->stats_in, NULL,
		                "round %u: tensor %zu: not %zu sums", r, t, w);
		for (size_t j = 0; j < w0; j++)
			RETURN_ERROR_IF(json_unhexf(json_array_get(row, j),
			                            ts->tsum + TS_W * t + (r == 1 ? TS_NUM : TS_DET) + j) < 0,
			                err, LINES_EFORMAT, p->o->stats_in, NULL,
			                "round %u: tensor %zu: not a hex float", r, t);
		for (unsigned x = 0; ts->per_tensor && x < ts->nx; x++) { /* --trim tensor */
			size_t q = t * ts->nx + x, at = w0 + 5 * (size_t)x;
			ts->bin[q] = (uint32_t)json_integer_value(json_array_get(row, at));
			ts->rank[q] = (uint64_t)json_integer_value(json_array_get(row, at + 1));
			ts->known[q] = (unsigned char)json_integer_value(json_array_get(row, at + 2));
			ts->thr[q] = (uint32_t)json_integer_value(json_array_get(row, at + 3));
			ts->bcnt[q] = (uint64_t)json_integer_value(json_array_get(row, at + 4));
		}
	}
	if (r == 1)
		return 0;
	/* the open elements back into the temporary file, for settle() */
	size_t rl = TH_REC(ts->nx);
	float rec[1 + LINES_MAX_MODELS];
	RETURN_ERROR_IF(fseek(ts->spill, 0, SEEK_SET) < 0, err, LINES_EIO, NULL, NULL,
	                "cannot write the temporary file of TIES");
	ts->nspill = 0;
	json_array_foreach(recs, i, e) {
		json_int_t ti = json_integer_value(json_array_get(e, 0));
		RETURN_ERROR_IF(ti < 0 || (size_t)ti >= p->nt || json_array_size(e) != 1 + ts->nx, err,
		                LINES_EFORMAT, p->o->stats_in, NULL, "round 2: record %zu is not one", i);
		uint32_t t32 = (uint32_t)ti;
		memcpy(rec, &t32, 4);
		for (unsigned x = 0; x < ts->nx; x++) {
			double v;
			RETURN_ERROR_IF(json_unhexf(json_array_get(e, 1 + x), &v) < 0, err, LINES_EFORMAT,
			                p->o->stats_in, NULL, "round 2: record %zu is not one", i);
			rec[1 + x] = (float)v;
		}
		RETURN_ERROR_IF(fwrite(rec, rl * sizeof(float), 1, ts->spill) != 1, err, LINES_EIO, NULL,
		                NULL, "cannot write the temporary file of TIES");
		ts->nspill++;
	}
	return 0;
}

static void ties_meta(const struct merge_ctx *p, void (*put)(void *, const char *, const char *),
                      void *arg)
{
	density_meta(p, put, arg);
	put(arg, "lines.trim", p->o->trim_tensor ? "tensor" : "global");
	if (p->o->no_normalize)
		put(arg, "lines.normalize", "false");
}

/* The thresholds of entry e as the magnitudes they are (float32 bit
 * patterns, or float64 ones where F64 tensors are; a task whose largest
 * entries are infinite or NaN has such a threshold). JSON has no infinity
 * or NaN, so those are the strings "inf", "-inf", "nan". */
static json_t *thresholds(const struct merge_ctx *p, const struct ties *ts, size_t e)
{
	json_t *a = json_array();
	for (unsigned i = 0; a && i < ts->nx; i++) {
		float f;
		double d;
		memcpy(&f, &ts->thr[e * ts->nx + i], 4);
		memcpy(&d, &ts->thr64[e * ts->nx + i], 8);
		json_array_append_new(a, json_num(entry64(p, ts, e) ? d : f));
	}
	return a;
}

static json_t *ties_report(const struct merge_ctx *p)
{
	const struct ties *ts = p->state;
	int done = ts && ts->concluded;
	json_t *m = json_object();
	if (!m)
		return NULL;
	density_report(p, m);
	if (p->o->no_normalize) /* beside the default */
		json_object_set_new(m, "normalize", json_false());
	json_object_set_new(m, "trim", json_string(p->o->trim_tensor ? "tensor" : "global"));
	json_object_set_new(m, "majority", done && ts->maj ? json_integer(ts->maj) : json_null());
	if (!p->o->trim_tensor) /* per tensor, they are in each tensor's entry */
		json_object_set_new(m, "thresholds",
		                    done ? thresholds(p, ts, 0) : json_null());
	return m;
}

static void ties_report_tensor(const struct merge_ctx *p, size_t i, json_t *e)
{
	const struct ties *ts = p->state;
	if (ts && ts->concluded && ts->per_tensor && p->t[i].merge)
		json_object_set_new(e, "ties_thresholds", thresholds(p, ts, i));
}

const struct method method_ties = {
	.name = "ties",
	.summary = "TIES: trim each task vector, elect a sign per element, disjoint mean",
	.flags = METHOD_USES_WEIGHTS | METHOD_USES_DENSITY | METHOD_USES_TRIM |
	         METHOD_USES_NORMALIZE | METHOD_PART | METHOD_TENSOR_W | METHOD_TENSOR_DENSITY,
	.setup = ties_setup,
	.meta = ties_meta,
	.report = ties_report,
	.report_tensor = ties_report_tensor,
	.free = ties_free,
	.stats_save = ties_stats_save,
	.stats_load = ties_stats_load,
};
