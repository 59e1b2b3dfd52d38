/*
 * merge_ties.c -- TIES-merging with an exact threshold, in three passes.
 *
 * Per task, tau'_i = w_i tau_i keeps the entries with |tau'_i| >= t_i,
 * where t_i is the k-th smallest |tau'_i| (1-based), k = d - floor(d rho),
 * over the d floating elements of the whole model (--trim global) or of
 * each tensor (--trim tensor). The signs are elected by mass, the model's
 * majority sign breaking exact ties, and the kept entries that agree are
 * averaged (kern_ties.h).
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
 * Every sum is float64 per block of elements in output order, then the
 * file's in its order: the same for any -j or --chunk.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <pthread.h>

#include "kern_ties.h"
#include "pipeline.h"

#define BINS 65536u

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
	double num[4];   /* |sum tau|, (sum tau)^2 */
	double det[2];   /* |tau_MTL|, tau_MTL^2 of decided elements */
	double zpos[2], zneg[2]; /* of zero-sum elements, for majority + and - */
	int64_t votes;   /* sum of the elected signs */
	int maj;
	FILE *spill;     /* records: tensor index, then nx floats */
	uint64_t nspill;
	pthread_mutex_t mu; /* run, when a worker flushes its counts */
	uint64_t count_limit; /* a worker flushes before counting past this */
};

static struct ties *T(struct plan *p) { return p->mstate; }
static size_t entry(const struct ties *t, size_t tensor) { return t->per_tensor ? tensor : 0; }
static int want_merged(const struct plan *p, size_t i) { return p->t[i].merge; }

static int want_all(const struct plan *p, size_t i)
{
	(void)p, (void)i;
	return 1;
}

static void add_run(struct ties *ts, const uint32_t *hist)
{
	for (size_t q = 0; q < (size_t)ts->nx * BINS; q++)
		ts->run[q] += hist[q];
}

/* Scratch of a worker: the base tile, nx task-vector tiles, tau_MTL, the
 * signs and the open flags of a tile. */
static size_t scratch_bytes(unsigned nx)
{
	return (size_t)KERN_TILE * (sizeof(float) * (nx + 1) + sizeof(double) + 2);
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
	hist = (uint32_t *)((char *)scratch + scratch_bytes(ts->nx));
	counted = (uint64_t *)(hist + (size_t)ts->nx * BINS);
	if (*counted + n > ts->count_limit)
		flush_counts(ts, hist);
	*counted += n;
	return hist;
}

static int counts_end(struct plan *p, void *scratch, struct lines_error *err)
{
	struct ties *ts = T(p);
	(void)err;
	add_run(ts, (const uint32_t *)((char *)scratch + scratch_bytes(ts->nx)));
	return 0;
}

/* ---- select ------------------------------------------------------------------ */
static int select_work(struct plan *p, struct pipe_job *job, void *scratch, struct lines_error *err)
{
	const struct plan_tensor *t = &p->t[job->tensor];
	struct ties *ts = T(p);
	unsigned nx = ts->nx;
	uint32_t *hist = job_counts(ts, job, scratch), *h[1024];
	float *bt = scratch, *tp = bt + KERN_TILE;
	const void *xs[1024];
	size_t n = (size_t)(job->u1 - job->u0);
	double *blk = job->part + part_counts(ts);
	(void)err;

	for (unsigned i = 0; i < nx; i++)
		h[i] = hist + (size_t)i * BINS;
	for (unsigned b = 0; b < job->nblocks; b++) {
		struct kern_norms nm;
		size_t b0 = (size_t)b * KERN_BLOCK, b1 = b0 + KERN_BLOCK < n ? b0 + KERN_BLOCK : n;
		memset(&nm, 0, sizeof(nm));
		if (p->k->ties_select) { /* in one step, without tiles */
			for (unsigned i = 0; i < nx; i++)
				xs[i] = job->in[i + 1] + b0 * t->unit_in;
			p->k->ties_select(t->in_dt, xs, nx, job->in[0] + b0 * t->unit_in, p->w, b1 - b0,
			                  h, nm.s1, nm.s2);
		}
		for (size_t j0 = b0; j0 < b1 && !p->k->ties_select; j0 += KERN_TILE) {
			size_t nn = b1 - j0 < KERN_TILE ? b1 - j0 : KERN_TILE;
			for (unsigned i = 0; i < nx; i++)
				xs[i] = job->in[i + 1] + j0 * t->unit_in;
			ties_taus(p->k, t->in_dt, xs, nx, job->in[0] + j0 * t->unit_in, p->w, nn, bt, tp);
			ties_hist(tp, nx, nn, h);
			/* the numerator of alpha: the raw, unweighted task vectors,
			 * which are the tiles when every weight is 1 */
			if (p->equal_weights && p->w[0] == 1.0)
				ties_norm_sum(tp, nx, nn, nm.s1, nm.s2);
			else
				p->k->norm_lin(t->in_dt, xs, nx, bt, ts->ones, nn, &nm);
		}
		blk[2 * b] = kern_lane_sum(nm.s1);
		blk[2 * b + 1] = kern_lane_sum(nm.s2);
	}
	return 0;
}

/* k-th smallest of d for density rho, with the bin and rank of each task. */
static void find_bins(struct ties *ts, size_t e, uint64_t d, double rho)
{
	uint64_t m = (uint64_t)floor((double)d * rho), k = d > m ? d - m : 0;
	for (unsigned i = 0; i < ts->nx; i++) {
		const uint64_t *h = ts->run + (size_t)i * BINS;
		uint64_t cum = 0;
		size_t idx = e * ts->nx + i;
		if (k == 0) { /* nothing to trim */
			ts->known[idx] = 1;
			ts->thr[idx] = 0;
			continue;
		}
		for (uint32_t b = 0; b < BINS / 2; b++) { /* counts by ties_key() */
			uint64_t c = h[2 * b] + h[2 * b + 1];
			if (cum + c >= k) {
				ts->bin[idx] = b;
				ts->rank[idx] = k - cum;
				if (k - cum <= h[2 * b + 1]) { /* the bin's smallest value */
					ts->known[idx] = 1;
					ts->thr[idx] = b << 16;
				}
				break;
			}
			cum += c;
		}
	}
}

static void find_thresholds(struct ties *ts, size_t e)
{
	for (unsigned i = 0; i < ts->nx; i++) {
		size_t idx = e * ts->nx + i;
		const uint64_t *h = ts->run + (size_t)i * BINS;
		uint64_t cum = 0;
		if (ts->known[idx])
			continue;
		for (uint32_t l = 0; l < BINS; l++) {
			if (cum + h[l] >= ts->rank[idx]) {
				ts->thr[idx] = ts->bin[idx] << 16 | l;
				break;
			}
			cum += h[l];
		}
		ts->known[idx] = 1;
	}
}

static int select_reduce(struct plan *p, const struct pipe_job *job, struct lines_error *err)
{
	struct ties *ts = T(p);
	const double *blk = job->part + part_counts(ts);
	(void)err;
	for (unsigned b = 0; b < job->nblocks; b++) {
		ts->num[0] += blk[2 * b];
		ts->num[1] += blk[2 * b + 1];
	}
	ts->run_d += job->u1 - job->u0;
	if (ts->per_tensor)
		add_run(ts, (const uint32_t *)job->part);
	if (ts->per_tensor && job->u1 == p->t[job->tensor].units) {
		find_bins(ts, job->tensor, ts->run_d, p->o.density);
		memset(ts->run, 0, (size_t)ts->nx * BINS * sizeof(*ts->run));
		ts->run_d = 0;
	}
	return 0;
}

static int select_done(struct plan *p, struct lines_error *err)
{
	struct ties *ts = T(p);
	(void)err;
	if (!ts->per_tensor)
		find_bins(ts, 0, ts->run_d, p->o.density);
	memset(ts->run, 0, (size_t)ts->nx * BINS * sizeof(*ts->run));
	ts->run_d = 0;
	return 0;
}

/* ---- threshold (and the election of the decided elements) ---------------------- */

/* part layout of a threshold job: per tensor nx x BINS uint32 counts,
 * then per job votes and the number of spilled records, then per block 6
 * doubles of norms, then the spilled records */
#define TH_HEAD(ts) (part_counts(ts) + 2)
#define TH_REC(nx) (1 + (size_t)(nx)) /* floats: tensor index, then values */

static double *th_blocks(struct ties *ts, struct pipe_job *job) { return job->part + TH_HEAD(ts); }
static float *th_records(struct ties *ts, const struct pipe_job *job)
{
	return (float *)(job->part + TH_HEAD(ts) + 6 * (size_t)job->nblocks);
}

static int threshold_work(struct plan *p, struct pipe_job *job, void *scratch,
                          struct lines_error *err)
{
	const struct plan_tensor *t = &p->t[job->tensor];
	struct ties *ts = T(p);
	unsigned nx = ts->nx;
	size_t e = entry(ts, job->tensor);
	const uint32_t *bin = ts->bin + e * nx, *thr = ts->thr + e * nx;
	const unsigned char *known = ts->known + e * nx;
	uint32_t *hist = job_counts(ts, job, scratch), *h[1024], lowbin[1024], up[1024];
	float *bt = scratch, *tp = bt + KERN_TILE, *rec = th_records(ts, job);
	double *mtl = (double *)(tp + (size_t)nx * KERN_TILE);
	signed char *sign = (signed char *)(mtl + KERN_TILE);
	unsigned char *open = (unsigned char *)sign + KERN_TILE;
	const void *xs[1024];
	size_t n = (size_t)(job->u1 - job->u0), nrec = 0;
	int64_t votes = 0;
	double *blk = th_blocks(ts, job);
	(void)err;

	for (unsigned i = 0; i < nx; i++) {
		h[i] = hist + (size_t)i * BINS;
		lowbin[i] = known[i] ? UINT32_MAX : bin[i]; /* no bin to refine */
		/* what the bins decide: kept at or above up, trimmed below the
		 * bin of t_i, open inside it until t_i is known */
		up[i] = known[i] ? thr[i] : (bin[i] + 1) << 16;
	}
	for (unsigned b = 0; b < job->nblocks; b++) {
		double dl[KERN_LANES] = {0}, dq[KERN_LANES] = {0};
		double pl[KERN_LANES] = {0}, pq[KERN_LANES] = {0};
		double nl[KERN_LANES] = {0}, nq[KERN_LANES] = {0};
		size_t b0 = (size_t)b * KERN_BLOCK, b1 = b0 + KERN_BLOCK < n ? b0 + KERN_BLOCK : n;
		for (size_t j0 = b0; j0 < b1; j0 += KERN_TILE) {
			size_t nn = b1 - j0 < KERN_TILE ? b1 - j0 : KERN_TILE;
			for (unsigned i = 0; i < nx; i++)
				xs[i] = job->in[i + 1] + j0 * t->unit_in;
			ties_taus(p->k, t->in_dt, xs, nx, job->in[0] + j0 * t->unit_in, p->w, nn, bt, tp);
			ties_bins(p->k, tp, nx, nn, lowbin, h, open);
			ties_elect_tile(p->k, tp, nn, nx, up, 1, mtl, sign);
			votes += ties_decided(p->k, mtl, sign, open, nn, dl, dq);
			for (size_t j = 0; j < nn; j++) {
				unsigned l = (unsigned)(j % KERN_LANES);
				if (j % 8 == 0 && j + 8 <= nn) { /* few are left: skip by eights */
					uint64_t w;
					memcpy(&w, open + j, 8);
					if (!w) {
						j += 7;
						continue;
					}
				}
				if (open[j] & 1) { /* settled from the file once t_i is known */
					float *r = rec + nrec++ * TH_REC(nx);
					uint32_t ti = (uint32_t)job->tensor;
					memcpy(r, &ti, 4);
					for (unsigned i = 0; i < nx; i++)
						r[1 + i] = tp[(size_t)i * nn + j];
				} else if (open[j]) { /* a zero sum: the majority decides, both ways */
					double mp = mtl[j], mn = 0.0;
					ties_elect(tp + j, nn, nx, up, -1, &mn);
					if (isfinite(mp) && isfinite(mn)) {
						pl[l] += fabs(mp), pq[l] += mp * mp;
						nl[l] += fabs(mn), nq[l] += mn * mn;
					}
				}
			}
		}
		blk[6 * b + 0] = kern_lane_sum(dl), blk[6 * b + 1] = kern_lane_sum(dq);
		blk[6 * b + 2] = kern_lane_sum(pl), blk[6 * b + 3] = kern_lane_sum(pq);
		blk[6 * b + 4] = kern_lane_sum(nl), blk[6 * b + 5] = kern_lane_sum(nq);
	}
	job->part[TH_HEAD(ts) - 2] = (double)votes;
	job->part[TH_HEAD(ts) - 1] = (double)nrec;
	return 0;
}

static int threshold_reduce(struct plan *p, const struct pipe_job *job, struct lines_error *err)
{
	struct ties *ts = T(p);
	const double *blk = job->part + TH_HEAD(ts);
	size_t nrec = (size_t)job->part[TH_HEAD(ts) - 1];

	if (ts->per_tensor)
		add_run(ts, (const uint32_t *)job->part);
	ts->votes += (int64_t)job->part[TH_HEAD(ts) - 2];
	for (unsigned b = 0; b < job->nblocks; b++) {
		ts->det[0] += blk[6 * b + 0], ts->det[1] += blk[6 * b + 1];
		ts->zpos[0] += blk[6 * b + 2], ts->zpos[1] += blk[6 * b + 3];
		ts->zneg[0] += blk[6 * b + 4], ts->zneg[1] += blk[6 * b + 5];
	}
	if (nrec) {
		if (fwrite(th_records(ts, job), TH_REC(ts->nx) * sizeof(float), nrec, ts->spill) != nrec)
			return lines_errno(err, errno, NULL, "cannot write the temporary file of TIES");
		ts->nspill += nrec;
	}
	if (ts->per_tensor && job->u1 == p->t[job->tensor].units) {
		find_thresholds(ts, job->tensor);
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
static int settle(struct plan *p, double *pos, double *neg, struct lines_error *err)
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
			const uint32_t *thr = ts->thr + entry(ts, ti) * nx;
			ties_elect_tile(p->k, tp, m, nx, thr, 1, mp, sp);
			ties_elect_tile(p->k, tp, m, nx, thr, -1, mn, sn);
			for (size_t r = 0; r < m; r++) {
				if (sp[r]) {
					ts->votes += sp[r];
					if (isfinite(mp[r]))
						ts->det[0] += fabs(mp[r]), ts->det[1] += mp[r] * mp[r];
				} else if (isfinite(mp[r]) && isfinite(mn[r])) {
					pos[0] += fabs(mp[r]), pos[1] += mp[r] * mp[r];
					neg[0] += fabs(mn[r]), neg[1] += mn[r] * mn[r];
				}
			}
			r0 = r1;
		}
	}
	free(buf), free(tp), free(mp), free(mn), free(sp), free(sn);
	return rc;
}

static int threshold_done(struct plan *p, struct lines_error *err)
{
	struct ties *ts = T(p);
	double pos[2] = {0, 0}, neg[2] = {0, 0};

	if (!ts->per_tensor)
		find_thresholds(ts, 0);
	FORWARD_IF_ERROR(settle(p, pos, neg, err));
	ts->maj = ts->votes >= 0 ? 1 : -1; /* +1 when the votes are even */
	p->maj = ts->maj;
	p->thr = ts->thr;
	p->thr_per_tensor = ts->per_tensor;
	double l1 = ts->det[0] + (ts->maj > 0 ? ts->zpos[0] + pos[0] : ts->zneg[0] + neg[0]);
	double l2 = ts->det[1] + (ts->maj > 0 ? ts->zpos[1] + pos[1] : ts->zneg[1] + neg[1]);
	p->norm_sum = p->o.norm_p == 2 ? sqrt(ts->num[1]) : ts->num[0];
	p->norm_mtl = p->o.norm_p == 2 ? sqrt(l2) : l1;
	plan_log(p, LINES_LOG_INFO, NULL, NULL,
	         "ties: %llu elements settled after the threshold pass; majority sign %+d",
	         (unsigned long long)ts->nspill, ts->maj);
	return plan_alpha_from_norms(p, err);
}

/* ---- write ----------------------------------------------------------------------- */
static int write_work(struct plan *p, struct pipe_job *job, void *scratch, struct lines_error *err)
{
	const struct plan_tensor *t = &p->t[job->tensor];
	struct ties *ts = T(p);
	unsigned nx = ts->nx;
	const uint32_t *thr = ts->thr + entry(ts, job->tensor) * nx;
	float *bt = scratch, *tp = bt + KERN_TILE;
	double *mtl = (double *)(tp + (size_t)nx * KERN_TILE);
	signed char *sign = (signed char *)(mtl + KERN_TILE);
	const void *xs[1024];
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;

	for (size_t j0 = 0; j0 < n; j0 += KERN_TILE) {
		size_t nn = n - j0 < KERN_TILE ? n - j0 : KERN_TILE;
		for (unsigned i = 0; i < nx; i++)
			xs[i] = job->in[i + 1] + j0 * t->unit_in;
		ties_taus(p->k, t->in_dt, xs, nx, job->in[0] + j0 * t->unit_in, p->w, nn, bt, tp);
		ties_elect_tile(p->k, tp, nn, nx, thr, ts->maj, mtl, sign);
		p->k->finish(t->out_dt, job->out + j0 * t->unit_out, bt, mtl, t->lambda, nn);
	}
	return 0;
}

static void ties_free(struct plan *p)
{
	struct ties *ts = T(p);
	if (!ts)
		return;
	if (ts->spill)
		fclose(ts->spill);
	free(ts->run), free(ts->bin), free(ts->rank), free(ts->thr), free(ts->known);
	free(ts->ones);
	pthread_mutex_destroy(&ts->mu);
	free(ts);
	p->mstate = NULL;
}

static FILE *tmpfile_in(const char *dir)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	return fd < 0 ? NULL : fdopen(fd, "w+");
}

int merge_ties_setup(struct plan *p, struct lines_error *err)
{
	struct ties *ts = calloc(1, sizeof(*ts));
	const char *dir = getenv("TMPDIR");
	unsigned nx = p->nmodels;

	RETURN_ERROR_IF(!ts, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	pthread_mutex_init(&ts->mu, NULL);
	p->mstate = ts;
	p->mfree = ties_free;
	RETURN_ERROR_IF(p->single_pass, err, LINES_EUSAGE, NULL, NULL,
	                "standard input can be read only once, and TIES reads its inputs three "
	                "times: give that model as a file");
	RETURN_ERROR_IF(nx > 1024, err, LINES_EUSAGE, NULL, NULL, "TIES merges at most 1024 models");
	ts->nx = nx;
	ts->per_tensor = p->o.trim_tensor;
	/* LINES_TEST_COUNT_LIMIT: flush far more often, to test the flushes
	 * (the counts and so the bytes must not change) */
	ts->count_limit = UINT32_MAX;
	if (getenv("LINES_TEST_COUNT_LIMIT"))
		ts->count_limit = strtoull(getenv("LINES_TEST_COUNT_LIMIT"), NULL, 10);
	ts->nentries = ts->per_tensor ? (p->nt ? p->nt : 1) : 1;
	ts->run = calloc((size_t)nx * BINS, sizeof(*ts->run));
	ts->bin = calloc(ts->nentries * nx, sizeof(*ts->bin));
	ts->rank = calloc(ts->nentries * nx, sizeof(*ts->rank));
	ts->thr = calloc(ts->nentries * nx, sizeof(*ts->thr));
	ts->known = calloc(ts->nentries * nx, 1);
	ts->ones = calloc(nx, sizeof(*ts->ones));
	RETURN_ERROR_IF(!ts->run || !ts->bin || !ts->rank || !ts->thr || !ts->known || !ts->ones, err,
	                LINES_ENOMEM, NULL, NULL, "out of memory for TIES");
	for (unsigned i = 0; i < nx; i++)
		ts->ones[i] = 1.0;
	if (!dir || !*dir)
		dir = "/tmp";
	if (!(ts->spill = tmpfile_in(dir)))
		return lines_errno(err, errno, dir, "cannot create the temporary file of TIES");

	struct pass *a = &p->pass[p->npasses++];
	a->name = "select";
	a->part_job = (unsigned)part_counts(ts);
	a->part_block = 2;
	a->scratch = scratch_bytes(nx) + count_bytes(ts);
	a->worker_end = ts->per_tensor ? NULL : counts_end;
	a->want = want_merged;
	a->work = select_work;
	a->reduce = select_reduce;
	a->done = select_done;

	struct pass *b = &p->pass[p->npasses++];
	b->name = "threshold";
	b->part_job = (unsigned)TH_HEAD(ts);
	b->part_block = 6 + (unsigned)((KERN_BLOCK * TH_REC(nx) + 1) / 2);
	b->scratch = scratch_bytes(nx) + count_bytes(ts);
	b->worker_end = ts->per_tensor ? NULL : counts_end;
	b->want = want_merged;
	b->work = threshold_work;
	b->reduce = threshold_reduce;
	b->done = threshold_done;

	struct pass *c = &p->pass[p->npasses++];
	c->name = "write";
	c->writes = 1;
	c->scratch = scratch_bytes(nx);
	c->want = want_all;
	c->work = write_work;
	if (p->o.lines && p->o.alpha_auto)
		p->norm_pass = 1;
	return 0;
}
