/*
 * merge_ram.c -- Reinforced Agent Merging (RAM, arXiv 2601.13572), as
 * mergekit's ram and ramplus_tl: the task vectors are averaged only over
 * the models that changed an element, so that an update one model makes
 * alone is not diluted by the others' zeros.
 *
 * Per element, with b the base's value, tau_i = theta_i - b in float32
 * (float64 for F64) and the rest in float64, models in order:
 *     nz_i  = |tau_i| > epsilon          (--epsilon, default 1e-5)
 *     c     = nz_1 + ... + nz_N          (how many models changed it)
 *     ram:        m = tau_i of the one model        where c = 1
 *                     (sum of the nz tau_i) / c     where c > 1
 *                     0                             where c = 0
 *     ramplus_tl: m = lambda_i tau_i where c = 1, as ram elsewhere
 *     theta = fma(lambda, m, b), or b where c = 0
 * lambda is --lambda or LiNeS's lambda(block). ramplus_tl's lambda_i is
 * per tensor and model: with shared_i the elements of the tensor where
 * nz_i and c > 1, and unique_i those where nz_i and c = 1,
 *     rho_i    = shared_i / max(unique_i, epsilon)
 *     lambda_i = 1 + r clamp(rho_i, 0, alpha)   (--ram-r 0.1, --ram-alpha 0.2)
 * The counts are integers, so a read-only `count` pass gathers them
 * before the writing pass in any order. Where the plain sum of the
 * task vectors is NaN or infinite, theta = fma(lambda, sum, b): a NaN or
 * infinity of an input reaches the output as with sum and consensus
 * (mergekit multiplies the task vectors by its masks, so a NaN or an
 * infinite tau_i makes the element NaN there). One rounding to the
 * output dtype. Portable C (GNU C's vectors where the compiler has them)
 * on tiles decoded and encoded by the kernel table: the same bytes on
 * every instruction set, -j and --chunk.
 *
 * Automatic alpha is ||sum_i tau_i|| / (N ||m||): m is not linear in the
 * inputs, so a read-only norm pass measures it; ramplus_tl's count pass
 * measures it too where it can (ram_fuses()).
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>

#include "method.h"

/* Elements a tile holds: its arrays fit in L1 with a few models (with
 * KERN_TILE's they do not, and the loops wait on L2) */
#define RAM_TILE 256

/* A worker's tiles: the base, the plain sum, the merged vector, the
 * output, c (and as an integer, for counting), float32 room (the base's
 * values, a model's, the output's); then the task vectors (nmodels
 * tiles), and for the count pass of ramplus_tl every model's nz_i
 * (nmodels tiles). */
struct ram_scratch {
	double b[RAM_TILE], s[RAM_TILE], m[RAM_TILE], out[RAM_TILE];
	double c[RAM_TILE]; /* whole numbers, of the width of the other tiles */
	uint16_t c16[RAM_TILE];
	uint8_t c1[RAM_TILE], cg[RAM_TILE]; /* the count pass: c = 1, c > 1 */
	float bf[RAM_TILE], f[RAM_TILE];
	double tau[]; /* tau[i * RAM_TILE + j], then uint8_t nz[i * RAM_TILE + j] */
};

struct ram_state {
	int plus;      /* ramplus_tl */
	double acc[4]; /* the norm pass: |s|, |m|, s^2, m^2 */
	/* ramplus_tl: nt x N x 2 (shared, unique), and nt x N lambda_i */
	uint64_t *cnt;
	double *lam;
	uint64_t *agree; /* N + 1: the merged elements by c, writing pass */
	double *recip;   /* N + 1: 1 / c rounded (ram_vec) */
	/* ramplus_tl with automatic alpha, fused (ram_fuses()): the count
	 * pass measures the norms too; nt x N x 2, per tensor and model,
	 * sum |m| and sum m^2 over the elements that model alone changed */
	int fused;
	double *uni;
	int counted, written;
};

/*
 * An element's merge (j of the tile), the reference for ram_vec: from
 * the task vectors in s->tau, s (the plain sum), c, m (the sum of the nz
 * tau_i from 0.0, in model order) and ml (the same of lambda_i tau_i,
 * ramplus_tl), then m = ml where c = 1 (ramplus_tl), m /= c (by 1 where
 * c = 0), and m = s where s is not finite. Adding +0.0 for a value left
 * out changes no sum (a sum of nonzero values that cancels is +0.0,
 * never -0.0), and where c = 1 the sums are the one model's tau_i and
 * lambda_i tau_i. nz: every model's nz_i, in s->nz (the count pass).
 */
static void ram_elem(const struct merge_ctx *p, struct ram_scratch *s, size_t j, const double *lam,
                     uint8_t *nz)
{
	double eps = p->o->ram_epsilon, sum = 0.0, c = 0.0, m = 0.0, ml = 0.0;
	for (unsigned i = 0; i < p->nmodels; i++) {
		double tau = s->tau[(size_t)i * RAM_TILE + j];
		int z = fabs(tau) > eps;
		sum = i == 0 ? tau : sum + tau;
		c += z ? 1.0 : 0.0;
		m += z ? tau : 0.0;
		if (lam)
			ml += z ? lam[i] * tau : 0.0;
		if (nz)
			nz[(size_t)i * RAM_TILE + j] = (uint8_t)z;
	}
	if (lam && c == 1.0)
		m = ml;
	m /= c > 1.0 ? c : 1.0;
	s->s[j] = sum;
	s->c[j] = c;
	s->c16[j] = (uint16_t)c;
	s->m[j] = isfinite(sum) ? m : sum;
}

#if defined(__GNUC__)
/*
 * ram_elem on KVW elements at a time in GNU C's vectors (ram_vec(),
 * merge_ram_vec.h: eight, one register, with AVX-512; else four, one
 * register with AVX2; kv_width.h), every model's values in registers:
 * the same operations on each element, so the same numbers.
 * One difference of cost, as a division costs a quarter of the writing
 * pass: m /= c is computed without one, and gives the same number.
 * Where c is a power of two it is m times 1/c (each rounds m 2^-k once),
 * 1/c made from c's bits (2^-k is 0x7fe0... minus 2^k). For each other
 * count k up to RAM_DIV_MAX, with r = 1/k rounded (st->recip), q = m r is
 * within an ulp of m / k, the remainder e = m - q k is exact (one fma),
 * and q + e r rounded (another) is m / k rounded to nearest: Markstein's
 * theorem, whose condition, no underflow in e, holds as m is a sum of
 * float32 values (a multiple of 2^-149). F64's values can be as small as
 * a double's, and more models would need more steps: with divide, those
 * divide.
 */
#define RAM_DIV_MAX 16
#define RAM_PACK_MAX 7

/* With float32 values (not F64) and at most this many models, the
 * loads read them as float32 (ram_load) */
#define RAM_FLOAT_MAX 16

/* The float32 tiles of the models' values (RAM_TILE each), after the
 * rest of the scratch (ram_scratch_size) */
static float *ram_floats(const struct merge_ctx *p, struct ram_scratch *s)
{
	const struct ram_state *st = p->state;
	return (float *)(void *)((unsigned char *)(s + 1) +
	                         (size_t)p->nmodels * RAM_TILE * sizeof(double) +
	                         (st->plus ? (size_t)p->nmodels *
	                                             (RAM_TILE + 2 * KERN_LANES * sizeof(double))
	                                   : 0));
}

/* ram_vec_8() and ram_vec_4(): merge_ram_vec.h */
#define KV_BODY "merge_ram_vec.h"
#include "kv_both.h"
/* ram_vec() at the width of struct kern's wide */
#define ram_vec(p, ...) KV_CALL((p)->k->wide, ram_vec, p, __VA_ARGS__)
#endif

/*
 * Elements [j0, j0 + n) of the job: s->b, s->tau, then s->s, s->c,
 * s->c16 and s->m (the merged task vector) as ram_elem says, with lam
 * ramplus_tl's lambda_i of the tensor (NULL for ram); with nz, every
 * model's nz_i in s->nz. With cnt, cnt[c] += the elements that c models
 * changed, when it can (RAM_PACK_MAX: 1, and s->c16 is then left out),
 * else 0. With float32 values (up to RAM_FLOAT_MAX models, and a float32
 * output for the writing pass, write), the vector loop reads them as
 * float32, and s->b and s->tau hold only the elements after it; with
 * write, that loop writes its elements' output, [0, *j1), in s->f and
 * leaves out s->s, s->c and s->m there (*j1 is 0 otherwise).
 */
static int ram_load(const struct merge_ctx *p, const struct tensor *t, const struct pipe_job *job,
                    size_t j0, size_t n, struct ram_scratch *s, const double *lam, int want_nz,
                    uint64_t *cnt, int write, size_t *j1)
{
	size_t off = j0 * t->unit_in, j = 0;
	unsigned nm = p->nmodels;
	uint8_t *nz = want_nz ? (uint8_t *)(s->tau + (size_t)nm * RAM_TILE) : NULL;
	int fl = 0; /* float32 values, taken as float32 */
	*j1 = 0;
#if defined(__GNUC__)
	fl = t->in_dt != DT_F64 && nm <= RAM_FLOAT_MAX && !(write && t->out_dt == DT_F64);
#endif
	if (!fl) {
		tile_load(p->k, t->in_dt, job->in[0] + off, n, s->b, s->bf);
		for (unsigned i = 0; i < nm; i++)
			tile_tau(p->k, t->in_dt, job->in[i + 1] + off, n, s->b, s->bf,
			         s->tau + (size_t)i * RAM_TILE, s->f);
	}
#if defined(__GNUC__)
	/* Markstein's quotient needs m a sum of float32 values */
	int divide = t->in_dt == DT_F64 || nm > RAM_DIV_MAX;
	j = n & ~(size_t)7;
	if (cnt && nm > RAM_PACK_MAX) /* counted by ram_tile */
		cnt = NULL;
	if (fl) {
		const unsigned char *raw[RAM_FLOAT_MAX + 1];
		float *ft = ram_floats(p, s);
		const unsigned char *const *bf =
			tile_decode_f32(p, t, job, j0, n, nm, raw, s->bf, ft, RAM_TILE) ? raw : NULL;
		const struct tensor *wt = write ? t : NULL;
		/* each its own copy, without the tests of the others */
		if (nz)
			ram_vec(p, s, ft, bf, j, divide, NULL, nz, NULL, NULL);
		else if (wt && lam)
			ram_vec(p, s, ft, bf, j, divide, lam, NULL, cnt, wt);
		else if (wt)
			ram_vec(p, s, ft, bf, j, divide, NULL, NULL, cnt, wt);
		else if (lam)
			ram_vec(p, s, ft, bf, j, divide, lam, NULL, NULL, NULL);
		else
			ram_vec(p, s, ft, bf, j, divide, NULL, NULL, NULL, NULL);
		for (size_t q = j; q < n; q++) { /* the tail's values, as tile_tau's */
			s->b[q] = s->bf[q];
			for (unsigned i = 0; i < nm; i++)
				s->tau[(size_t)i * RAM_TILE + q] =
					(double)(ft[(size_t)i * RAM_TILE + q] - s->bf[q]);
		}
		*j1 = write ? j : 0;
	} else if (nz) {
		ram_vec(p, s, NULL, NULL, j, divide, NULL, nz, NULL, NULL);
	} else if (lam) {
		ram_vec(p, s, NULL, NULL, j, divide, lam, NULL, cnt, NULL);
	} else if (cnt) {
		ram_vec(p, s, NULL, NULL, j, divide, NULL, NULL, cnt, NULL);
	} else {
		ram_vec(p, s, NULL, NULL, j, divide, NULL, NULL, NULL, NULL);
	}
#else
	(void)write;
	cnt = NULL;
#endif
	for (size_t q = j; q < n; q++)
		ram_elem(p, s, q, lam, nz);
	for (; cnt && j < n; j++) /* the tail's counts */
		cnt[s->c16[j]]++;
	return cnt != NULL;
}

static const double *ram_lambdas(const struct merge_ctx *p, size_t tensor)
{
	const struct ram_state *st = p->state;
	return st->plus ? st->lam + tensor * p->nmodels : NULL;
}

/* ---- the count pass of ramplus_tl ------------------------------------------------- */
/* part[2i] += the elements where nz_i and c > 1, part[2i + 1] where
 * c = 1, from s->c1, s->cg and the models' nz_i; lone: some element has
 * c = 1 */
static void ram_count_models(const struct merge_ctx *p, const struct ram_scratch *s, size_t n,
                             int lone, double *part)
{
	for (unsigned i = 0; i < p->nmodels; i++) {
		const uint8_t *q = (const uint8_t *)(s->tau + (size_t)p->nmodels * RAM_TILE) +
		                   (size_t)i * RAM_TILE;
		uint32_t shared = 0, unique = 0;
		for (size_t j = 0; j < n; j++)
			shared += (uint32_t)(q[j] & s->cg[j]);
		for (size_t j = 0; lone && j < n; j++)
			unique += (uint32_t)(q[j] & s->c1[j]);
		part[2 * i] += shared;
		part[2 * i + 1] += unique;
	}
}

/* s->c1 and s->cg from the counts s->c16: bytes, so that
 * ram_count_models' loops take 32 or 64 elements a step; returns whether
 * some element has c = 1 */
static int ram_lone(struct ram_scratch *s, size_t n)
{
	uint8_t lone = 0;
	for (size_t j = 0; j < n; j++) {
		s->c1[j] = s->c16[j] == 1;
		s->cg[j] = s->c16[j] > 1;
		lone |= s->c1[j];
	}
	return lone;
}

/* The counts of a tile that ram_load() merged (s->c16, the nz_i) into
 * part, as ram_count_models(); returns whether some element has c = 1 */
static int ram_count_tile(const struct merge_ctx *p, struct ram_scratch *s, size_t n,
                          double *part)
{
	int lone = ram_lone(s, n);
	ram_count_models(p, s, n, lone, part);
	return lone;
}

/*
 * The count pass without the norms (a given alpha): only each model's
 * nz_i = |tau_i| > epsilon, as ram_elem() tests it, and the counts c
 * (s->c16), not the merged vector; then ram_lone().
 */
static int ram_count_nz(const struct merge_ctx *p, const struct tensor *t,
                        const struct pipe_job *job, size_t j0, size_t n, struct ram_scratch *s)
{
	size_t off = j0 * t->unit_in;
	unsigned nm = p->nmodels;
	uint8_t *nz = (uint8_t *)(s->tau + (size_t)nm * RAM_TILE);
	double eps = p->o->ram_epsilon, *tau = s->tau;
	tile_load(p->k, t->in_dt, job->in[0] + off, n, s->b, s->bf);
	for (unsigned i = 0; i < nm; i++) {
		uint8_t *q = nz + (size_t)i * RAM_TILE;
		tile_tau(p->k, t->in_dt, job->in[i + 1] + off, n, s->b, s->bf, tau, s->f);
		for (size_t j = 0; j < n; j++)
			q[j] = fabs(tau[j]) > eps;
		if (i == 0)
			for (size_t j = 0; j < n; j++)
				s->c16[j] = q[j];
		else
			for (size_t j = 0; j < n; j++)
				s->c16[j] = (uint16_t)(s->c16[j] + q[j]);
	}
	return ram_lone(s, n);
}

/*
 * The count pass. Fused with the norm pass of automatic alpha
 * (st->fused), it also measures, per block of KERN_BLOCK elements, the
 * norm sums of the merged vector m with 0 where c = 1 (part[0..3], as
 * norm_lanes_add: |s|, |m|, s^2, m^2, leaving out the elements whose s
 * or m is not finite), and for each model i the sums of |tau_i| and
 * tau_i^2 over the elements it changed alone (c = 1) whose s is finite
 * (part[4 + 2i], part[5 + 2i]). Where c = 1, ramplus_tl's m is
 * lambda_i tau_i, so once the counts give lambda_i, ram_count_done adds
 * |lambda_i| and lambda_i^2 times those to the sums of |m| and m^2.
 */
LINES_HOT static int ram_count_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                          struct lines_error *err)
{
	const struct ram_state *st = p->state;
	const struct tensor *t = &p->t[job->tensor];
	struct ram_scratch *s = scratch;
	size_t n = (size_t)(job->u1 - job->u0);
	unsigned nm = p->nmodels, pb = 4 + 2 * nm;
	uint8_t *nz = (uint8_t *)(s->tau + (size_t)nm * RAM_TILE);
	double(*lanes)[2][KERN_LANES] = (double(*)[2][KERN_LANES])(void *)(nz + (size_t)nm * RAM_TILE);
	(void)err;
	memset(job->part, 0, 2 * nm * sizeof(double));
	for (unsigned blk = 0; blk < job->nblocks; blk++) {
		size_t b0 = (size_t)blk * KERN_BLOCK, b1 = b0 + KERN_BLOCK < n ? b0 + KERN_BLOCK : n;
		struct norm_lanes l = {0};
		if (st->fused)
			memset(lanes, 0, (size_t)nm * sizeof(*lanes));
		for (size_t j0 = b0; j0 < b1; j0 += RAM_TILE) {
			size_t nn = b1 - j0 < RAM_TILE ? b1 - j0 : RAM_TILE;
			if (!st->fused) {
				ram_count_models(p, s, nn, ram_count_nz(p, t, job, j0, nn, s), job->part);
				continue;
			}
			size_t j1;
			ram_load(p, t, job, j0, nn, s, NULL, 1, NULL, 0, &j1);
			int lone = ram_count_tile(p, s, nn, job->part);
			for (size_t j = 0; j < nn; j++) /* m, 0 where c = 1 */
				s->out[j] = s->c[j] == 1.0 ? 0.0 : s->m[j];
			norm_lanes_add(p->k->wide, &l, s->s, s->out, nn);
			if (!lone) /* no element that one model changed alone */
				continue;
			/* where c = 1 and s is finite, m is the one tau_i */
			for (size_t j = 0; j < nn; j++)
				s->out[j] = s->c[j] == 1.0 && isfinite(s->s[j]) ? s->m[j] : 0.0;
			for (unsigned i = 0; i < nm; i++) {
				const uint8_t *q = nz + (size_t)i * RAM_TILE;
				size_t j = 0;
#if defined(__GNUC__)
				if (p->k->wide) { /* the loop below in GNU C's vectors
						   * (kernels.h), where eight lanes are one
						   * register (kv_width.h) */
					const kv8u abs_mask = (kv8u){0} + 0x7fffffffffffffffull;
					const kv8d zero = {0};
					kv8d l0, l1;
					memcpy(&l0, lanes[i][0], sizeof(l0));
					memcpy(&l1, lanes[i][1], sizeof(l1));
					for (; j + KERN_LANES <= nn; j += KERN_LANES) {
						kv8d o, v;
						kv8i m = {0};
						memcpy(&o, s->out + j, sizeof(o));
						for (unsigned k = 0; k < KERN_LANES; k++)
							m[k] = q[j + k] ? -1 : 0;
						v = KV8_PICK(m, o, zero);
						l0 += (kv8d)((kv8u)v & abs_mask), l1 += v * v;
					}
					memcpy(lanes[i][0], &l0, sizeof(l0));
					memcpy(lanes[i][1], &l1, sizeof(l1));
				}
#endif
				for (; j + KERN_LANES <= nn; j += KERN_LANES)
					for (unsigned k = 0; k < KERN_LANES; k++) {
						double v = q[j + k] ? s->out[j + k] : 0.0;
						lanes[i][0][k] += fabs(v), lanes[i][1][k] += v * v;
					}
				for (unsigned k = 0; j < nn; j++, k++) {
					double v = q[j] ? s->out[j] : 0.0;
					lanes[i][0][k] += fabs(v), lanes[i][1][k] += v * v;
				}
			}
		}
		if (!st->fused)
			continue;
		double *part = job->part + 2 * nm + (size_t)pb * blk;
		norm_lanes_fold(part, &l);
		for (unsigned i = 0; i < nm; i++) {
			part[4 + 2 * i] = kern_lane_sum(lanes[i][0]);
			part[5 + 2 * i] = kern_lane_sum(lanes[i][1]);
		}
	}
	return 0;
}

static int ram_count_reduce(struct merge_ctx *p, const struct pipe_job *job,
                            struct lines_error *err)
{
	struct ram_state *st = p->state;
	unsigned nm = p->nmodels, pb = 4 + 2 * nm;
	uint64_t *cnt = st->cnt + 2 * job->tensor * nm;
	(void)err;
	for (unsigned q = 0; q < 2 * nm; q++)
		cnt[q] += (uint64_t)job->part[q];
	if (!st->fused)
		return 0;
	double *uni = st->uni + 2 * job->tensor * nm;
	for (unsigned b = 0; b < job->nblocks; b++) {
		const double *part = job->part + 2 * nm + (size_t)pb * b;
		for (int i = 0; i < 4; i++)
			st->acc[i] += part[i];
		for (unsigned q = 0; q < 2 * nm; q++)
			uni[q] += part[4 + q];
	}
	return 0;
}

/* lambda_i = 1 + r clamp(shared_i / max(unique_i, epsilon), 0, alpha); a
 * NaN ratio (0 / 0 with epsilon 0) clamps to 0. lambda_i is used only
 * where model i changed an element alone, so unique_i > 0 there. */
static int ram_count_done(struct merge_ctx *p, struct lines_error *err)
{
	struct ram_state *st = p->state;
	const struct lines_merge_opts *o = p->o;
	for (size_t k = 0; k < p->nt * p->nmodels; k++) {
		double shared = (double)st->cnt[2 * k], unique = (double)st->cnt[2 * k + 1];
		double rho = shared / fmax(unique, o->ram_epsilon);
		rho = rho > o->ram_alpha ? o->ram_alpha : rho > 0 ? rho : 0.0;
		st->lam[k] = 1.0 + o->ram_r * rho;
	}
	st->counted = 1;
	if (!st->fused)
		return 0;
	/* the sums of |m| and m^2 where c = 1: |lambda_i| |tau_i| (lambda_i
	 * is below 0 with a negative r) and its square, tensor by tensor in
	 * output order, then alpha */
	double acc[4] = {st->acc[0], st->acc[1], st->acc[2], st->acc[3]};
	for (size_t k = 0; k < p->nt * p->nmodels; k++) {
		acc[1] += fabs(st->lam[k]) * st->uni[2 * k];
		acc[3] += st->lam[k] * st->lam[k] * st->uni[2 * k + 1];
	}
	memcpy(st->acc, acc, sizeof(acc));
	return norm_sums_alpha(p, st->acc, 1, err);
}

/* ---- the writing pass ------------------------------------------------------ */
/* The tile's output; cnt[c] += the elements that c models changed
 * (counted in ram_vec's registers with up to RAM_PACK_MAX models). The
 * loops have no branch, so that they vectorise: every fma computed, then
 * chosen; one count of the tile for each c (with a few models). */
static void ram_tile(const struct merge_ctx *p, const struct tensor *t, const struct pipe_job *job,
                     size_t j0, size_t n, struct ram_scratch *s, uint64_t *cnt)
{
	unsigned nc = p->nmodels + 1;
	const double *lam = ram_lambdas(p, job->tensor);
	size_t j1;
	int counted = ram_load(p, t, job, j0, n, s, lam, 0, cnt, 1, &j1);
	for (size_t j = j1; j < n; j++) {
		int base = (s->c[j] == 0.0) & (isfinite(s->s[j]) != 0);
		double o = fma(t->lambda, s->m[j], s->b[j]);
		s->out[j] = base ? s->b[j] : o;
	}
	if (!counted && nc > 16) { /* a loop per count would cost more than one at a time */
		for (size_t j = 0; j < n; j++)
			cnt[s->c16[j]]++;
	} else if (!counted) {
		for (unsigned c = 0; c < nc; c++) {
			uint32_t k = 0;
			for (size_t j = 0; j < n; j++)
				k += s->c16[j] == c;
			cnt[c] += k;
		}
	}
	if (t->out_dt == DT_F64) {
		tile_store(p->k, t->out_dt, s->out, n, job->out + j0 * t->unit_out, s->f);
		return;
	}
	for (size_t j = j1; j < n; j++) /* tile_store's rounding; ram_vec's before j1 */
		f32_store(&s->f[j], s->out[j]);
	p->k->encode(t->out_dt, s->f, job->out + j0 * t->unit_out, n);
}

LINES_HOT static int ram_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                    struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;
	uint64_t cnt[LINES_MAX_MODELS + 1] = {0};
	for (size_t j0 = 0; j0 < n; j0 += RAM_TILE)
		ram_tile(p, t, job, j0, n - j0 < RAM_TILE ? n - j0 : RAM_TILE, scratch, cnt);
	for (unsigned c = 0; c <= p->nmodels; c++) /* exact: a job holds far fewer than 2^53 */
		job->part[c] = (double)cnt[c];
	return 0;
}

static int ram_write_reduce(struct merge_ctx *p, const struct pipe_job *job,
                            struct lines_error *err)
{
	struct ram_state *st = p->state;
	(void)err;
	for (unsigned c = 0; c <= p->nmodels; c++)
		st->agree[c] += (uint64_t)job->part[c];
	return 0;
}

static int ram_write_done(struct merge_ctx *p, struct lines_error *err)
{
	struct ram_state *st = p->state;
	(void)err;
	st->written = 1;
	return 0;
}

/* ---- the norm pass of automatic alpha ----------------------------------------- */
/*
 * Per block of KERN_BLOCK elements (aligned to the tensor's start): |s|,
 * |m|, s^2 and m^2 with s = sum_i tau_i and m the merged vector,
 * elements in order, leaving out those where s or m is not finite.
 */

LINES_HOT static int ram_norm_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                         struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	const double *lam = ram_lambdas(p, job->tensor);
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;
	for (unsigned blk = 0; blk < job->nblocks; blk++) {
		double *part = job->part + 4 * blk;
		size_t b0 = (size_t)blk * KERN_BLOCK,
		       b1 = b0 + KERN_BLOCK < n ? b0 + KERN_BLOCK : n;
		struct ram_scratch *s = scratch;
		struct norm_lanes l = {0};
		for (size_t j0 = b0; j0 < b1; j0 += RAM_TILE) {
			size_t nn = b1 - j0 < RAM_TILE ? b1 - j0 : RAM_TILE;
			size_t j1;
			ram_load(p, t, job, j0, nn, s, lam, 0, NULL, 0, &j1);
			norm_lanes_add(p->k->wide, &l, s->s, s->m, nn);
		}
		norm_lanes_fold(part, &l);
	}
	return 0;
}

static int ram_norm_reduce(struct merge_ctx *p, const struct pipe_job *job, struct lines_error *err)
{
	struct ram_state *st = p->state;
	(void)err;
	norm_sums_add(st->acc, job);
	return 0;
}

/* epsilon may leave every task vector out: alpha 1 with a warning then. */
static int ram_norm_done(struct merge_ctx *p, struct lines_error *err)
{
	const struct ram_state *st = p->state;
	return norm_sums_alpha(p, st->acc, 1, err);
}

/* ---- setup ------------------------------------------------------------------- */
static size_t ram_scratch_size(const struct merge_ctx *p)
{
	const struct ram_state *st = p->state;
	return sizeof(struct ram_scratch) + (size_t)p->nmodels * RAM_TILE * sizeof(double) +
	       (st->plus ? (size_t)p->nmodels * (RAM_TILE + 2 * KERN_LANES * sizeof(double)) : 0) +
	       (size_t)p->nmodels * RAM_TILE * sizeof(float); /* ram_floats() */
}

static struct pass *ram_add_pass(struct merge_ctx *p, const char *name,
                                 int (*work)(struct merge_ctx *, struct pipe_job *, void *,
                                             struct lines_error *))
{
	struct pass *ps = passes_add(p->passes);
	ps->name = name;
	ps->want = want_merged;
	ps->work = work;
	ps->scratch = ram_scratch_size(p);
	return ps;
}

/*
 * Whether ramplus_tl's count pass can measure the norms too (see
 * ram_count_work): lambda_i |tau_i| must not overflow where the norm pass
 * would find it finite, which holds for tau_i of float32 values (below
 * 2^129) and |lambda_i| <= 1 + |r| alpha below 2^64; and the partial
 * results, 4 + 2 N doubles a block, must stay small (up to 64 models).
 */
static int ram_fuses(const struct merge_ctx *p)
{
	if (p->nmodels > 64 || !(1.0 + fabs(p->o->ram_r) * p->o->ram_alpha < 0x1p64))
		return 0;
	for (size_t i = 0; i < p->nt; i++)
		if (p->t[i].merge && p->t[i].in_dt == DT_F64)
			return 0;
	return 1;
}

static int ram_read_passes(struct merge_ctx *p, struct lines_error *err)
{
	struct ram_state *st = p->state;
	int norms = p->o->lines && p->o->alpha_auto;
	RETURN_ERROR_IF((st->plus || norms) && p->single_pass, err, LINES_EUSAGE, NULL, NULL,
	                "standard input can be read only once, but -m %s needs a %s pass before "
	                "the writing pass: give that model as a file%s",
	                st->plus ? "ramplus_tl" : "ram", st->plus ? "count" : "norm",
	                st->plus ? "" : ", or give --alpha");
	st->fused = st->plus && norms && ram_fuses(p);
	if (st->plus) {
		struct pass *pc = ram_add_pass(p, "count", ram_count_work);
		pc->part_job = 2 * p->nmodels;
		pc->part_block = st->fused ? 4 + 2 * p->nmodels : 0;
		pc->reduce = ram_count_reduce;
		pc->done = ram_count_done;
		if (st->fused) {
			RETURN_ERROR_IF(!(st->uni = calloc(2 * p->nt * p->nmodels + 1, sizeof(double))),
			                err, LINES_ENOMEM, NULL, NULL, "out of memory");
			p->sc->measured = 1;
		}
	}
	if (norms && !st->fused) {
		struct pass *pn = ram_add_pass(p, "norms", ram_norm_work);
		pn->part_block = 4;
		pn->reduce = ram_norm_reduce;
		pn->done = ram_norm_done;
		p->sc->measured = 1;
	}
	return 0;
}

static int ram_setup_common(struct merge_ctx *p, int plus, struct lines_error *err)
{
	struct ram_state *st = calloc(1, sizeof(*st));
	size_t k = p->nt * p->nmodels;
	p->state = st;
	RETURN_ERROR_IF(!st, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	st->plus = plus;
	/* where the plain sum is not finite, theta = fma(lambda, sum, b): a
	 * non-finite tau_i or base makes it NaN or infinite */
	p->nonfinite_out = 1;
	st->agree = calloc(p->nmodels + 1, sizeof(*st->agree));
	st->recip = malloc((p->nmodels + 1) * sizeof(*st->recip));
	for (unsigned c = 0; st->recip && c <= p->nmodels; c++)
		st->recip[c] = c ? 1.0 / c : 1.0;
	if (plus) {
		st->cnt = calloc(2 * k + 1, sizeof(*st->cnt));
		st->lam = calloc(k + 1, sizeof(*st->lam));
	}
	RETURN_ERROR_IF(!st->agree || !st->recip || (plus && (!st->cnt || !st->lam)), err, LINES_ENOMEM, NULL,
	                NULL, "out of memory");
	FORWARD_IF_ERROR(ram_read_passes(p, err));
	struct pass *pw = ram_add_pass(p, "write", ram_work);
	pw->writes = 1;
	pw->want = want_all;
	pw->part_job = p->nmodels + 1;
	pw->reduce = ram_write_reduce;
	pw->done = ram_write_done;
	return 0;
}

static int ram_setup(struct merge_ctx *p, struct lines_error *err)
{
	return ram_setup_common(p, 0, err);
}

static int ramplus_setup(struct merge_ctx *p, struct lines_error *err)
{
	return ram_setup_common(p, 1, err);
}

static int ram_check(const struct lines_merge_opts *o, struct lines_error *err)
{
	RETURN_ERROR_IF(o->weights, err, LINES_EUSAGE, NULL, NULL,
	                "-m %s takes no weights (as mergekit's)",
	                o->method == LINES_M_RAM ? "ram" : "ramplus_tl");
	RETURN_ERROR_IF(!(o->ram_epsilon >= 0 && isfinite(o->ram_epsilon)), err, LINES_EUSAGE, NULL,
	                NULL, "--epsilon must be finite and at least 0");
	RETURN_ERROR_IF(!isfinite(o->ram_r), err, LINES_EUSAGE, NULL, NULL,
	                "--ram-r must be a finite number");
	RETURN_ERROR_IF(!(o->ram_alpha >= 0 && isfinite(o->ram_alpha)), err, LINES_EUSAGE, NULL,
	                NULL, "--ram-alpha must be finite and at least 0");
	return 0;
}

static void ram_free(struct merge_ctx *p)
{
	struct ram_state *st = p->state;
	if (st) {
		free(st->cnt);
		free(st->lam);
		free(st->agree);
		free(st->recip);
		free(st->uni);
	}
	free(st);
	p->state = NULL;
}

/* ---- reports ----------------------------------------------------------------- */
/* {epsilon, [r, alpha,] agree}: agree[c] the merged elements that c
 * models changed, after a run; else null */
static json_t *ram_report(const struct merge_ctx *c)
{
	const struct ram_state *st = c->state;
	json_t *m = json_object(), *a = st && st->written ? json_array() : NULL;
	json_object_set_new(m, "epsilon", json_num(c->o->ram_epsilon));
	if (c->o->method == LINES_M_RAMPLUS_TL) {
		json_object_set_new(m, "r", json_num(c->o->ram_r));
		json_object_set_new(m, "alpha", json_num(c->o->ram_alpha));
	}
	for (unsigned k = 0; a && k <= c->nmodels; k++)
		json_array_append_new(a, json_integer((json_int_t)st->agree[k]));
	json_object_set_new(m, "agree", a ? a : json_null());
	return m;
}

/* ramplus_tl: "ram": {"shared": [...], "unique": [...], "lambda": [...]},
 * one per model, in each merged tensor's entry once counted */
static void ram_report_tensor(const struct merge_ctx *c, size_t i, json_t *e)
{
	const struct ram_state *st = c->state;
	if (!st || !st->plus || !st->counted || !c->t[i].merge)
		return;
	json_t *r = json_object(), *sh = json_array(), *un = json_array(), *la = json_array();
	for (unsigned q = 0; q < c->nmodels; q++) {
		size_t k = i * c->nmodels + q;
		json_array_append_new(sh, json_integer((json_int_t)st->cnt[2 * k]));
		json_array_append_new(un, json_integer((json_int_t)st->cnt[2 * k + 1]));
		json_array_append_new(la, json_num(st->lam[k]));
	}
	json_object_set_new(r, "shared", sh);
	json_object_set_new(r, "unique", un);
	json_object_set_new(r, "lambda", la);
	json_object_set_new(e, "ram", r);
}

/* lines.epsilon, and ramplus_tl's lines.ram_r and lines.ram_alpha */
static void ram_meta(const struct merge_ctx *c,
                     void (*put)(void *arg, const char *key, const char *value), void *arg)
{
	char v[40];
	lines_fmt_double(v, sizeof(v), c->o->ram_epsilon);
	put(arg, "lines.epsilon", v);
	if (c->o->method != LINES_M_RAMPLUS_TL)
		return;
	lines_fmt_double(v, sizeof(v), c->o->ram_r);
	put(arg, "lines.ram_r", v);
	lines_fmt_double(v, sizeof(v), c->o->ram_alpha);
	put(arg, "lines.ram_alpha", v);
}

const struct method method_ram = {
	.name = "ram",
	.summary = "RAM: each element's task vectors averaged over the models that changed it",
	.flags = METHOD_USES_EPSILON,
	.check = ram_check,
	.setup = ram_setup,
	.meta = ram_meta,
	.report = ram_report,
	.free = ram_free,
};

const struct method method_ramplus_tl = {
	.name = "ramplus_tl",
	.summary = "RAM+: as ram, a model's lone changes scaled by its shared/unique ratio",
	.flags = METHOD_USES_EPSILON | METHOD_USES_RAM,
	.check = ram_check,
	.setup = ramplus_setup,
	.meta = ram_meta,
	.report = ram_report,
	.report_tensor = ram_report_tensor,
	.free = ram_free,
};
