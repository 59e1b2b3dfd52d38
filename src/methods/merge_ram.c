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
 * infinite tau_i makes the element NaN there). One rounding to the output dtype. Portable C on tiles decoded
 * and encoded by the kernel table: the same bytes on every instruction
 * set, -j and --chunk.
 *
 * Automatic alpha is ||sum_i tau_i|| / (N ||m||): m is not linear in the
 * inputs, so a read-only norm pass measures it (after the count pass).
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>

#include "method.h"

/* A worker's tiles: the base, the plain sum, the merged vector, the
 * output, float32 room (a model's values, the base's), the task vectors
 * (nmodels tiles) and c. */
struct ram_scratch {
	double b[KERN_TILE], s[KERN_TILE], m[KERN_TILE], out[KERN_TILE];
	float f[KERN_TILE], bf[KERN_TILE];
	unsigned c[KERN_TILE];
	double tau[]; /* tau[i * KERN_TILE + j] */
};

struct ram_state {
	int plus;      /* ramplus_tl */
	double acc[4]; /* the norm pass: |s|, |m|, s^2, m^2 */
	/* ramplus_tl: nt x N x 2 (shared, unique), and nt x N lambda_i */
	uint64_t *cnt;
	double *lam;
	uint64_t *agree; /* N + 1: the merged elements by c, writing pass */
	int counted, written;
};

/* s->b, s->tau, s->s (the plain sum) and s->c for elements [j0, j0 + n)
 * of the job. */
static void ram_load(const struct merge_ctx *p, const struct tensor *t, const struct pipe_job *job,
                     size_t j0, size_t n, struct ram_scratch *s)
{
	size_t off = j0 * t->unit_in;
	double eps = p->o->ram_epsilon;
	tile_load(p->k, t->in_dt, job->in[0] + off, n, s->b, s->bf);
	for (unsigned i = 0; i < p->nmodels; i++) {
		double *tau = s->tau + (size_t)i * KERN_TILE;
		tile_tau(p->k, t->in_dt, job->in[i + 1] + off, n, s->b, s->bf, tau, s->f);
		for (size_t j = 0; j < n; j++) {
			s->s[j] = i == 0 ? tau[j] : s->s[j] + tau[j];
			s->c[j] = (i == 0 ? 0 : s->c[j]) + (fabs(tau[j]) > eps);
		}
	}
}

/* s->m: the merged task vector of the tile (lam: ramplus_tl's lambda_i
 * of the tensor, or NULL for ram). */
static void ram_merge(const struct merge_ctx *p, const double *lam, size_t n, struct ram_scratch *s)
{
	double eps = p->o->ram_epsilon;
	/* model by model over the tile, so that the loops vectorise: adding
	 * +0.0 for a value left out changes no sum (a sum of nonzero values
	 * that cancels is +0.0, never -0.0) */
	for (size_t j = 0; j < n; j++)
		s->m[j] = 0.0;
	for (unsigned i = 0; i < p->nmodels; i++) {
		const double *tau = s->tau + (size_t)i * KERN_TILE;
		double li = lam ? lam[i] : 1.0;
		for (size_t j = 0; j < n; j++) {
			double v = s->c[j] == 1 && lam ? li * tau[j] : tau[j];
			s->m[j] += fabs(tau[j]) > eps ? v : 0.0;
		}
	}
	/* every element divided (by 1 where c <= 1: the same value), then
	 * chosen, in two loops without a branch that vectorise (an integer
	 * divisor, which the compiler does not split into cases) */
	for (size_t j = 0; j < n; j++)
		s->m[j] /= (double)(s->c[j] + (s->c[j] == 0));
	for (size_t j = 0; j < n; j++)
		s->m[j] = isfinite(s->s[j]) ? s->m[j] : s->s[j];
}

static const double *ram_lambdas(const struct merge_ctx *p, size_t tensor)
{
	const struct ram_state *st = p->state;
	return st->plus ? st->lam + tensor * p->nmodels : NULL;
}

/* ---- the count pass of ramplus_tl ------------------------------------------------- */
/* part[2i] += the elements where nz_i and c > 1, part[2i + 1] where c = 1 */
static void ram_count_tile(const struct merge_ctx *p, const struct ram_scratch *s, size_t n,
                           double *part)
{
	for (size_t j = 0; j < n; j++) {
		if (s->c[j] == 0)
			continue;
		for (unsigned i = 0; i < p->nmodels; i++)
			if (fabs(s->tau[(size_t)i * KERN_TILE + j]) > p->o->ram_epsilon)
				part[2 * i + (s->c[j] == 1)] += 1.0;
	}
}

LINES_HOT static int ram_count_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                          struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;
	memset(job->part, 0, 2 * p->nmodels * sizeof(double));
	for (size_t j0 = 0; j0 < n; j0 += KERN_TILE) {
		size_t nn = n - j0 < KERN_TILE ? n - j0 : KERN_TILE;
		ram_load(p, t, job, j0, nn, scratch);
		ram_count_tile(p, scratch, nn, job->part);
	}
	return 0;
}

static int ram_count_reduce(struct merge_ctx *p, const struct pipe_job *job,
                            struct lines_error *err)
{
	struct ram_state *st = p->state;
	uint64_t *cnt = st->cnt + 2 * job->tensor * p->nmodels;
	(void)err;
	for (unsigned q = 0; q < 2 * p->nmodels; q++)
		cnt[q] += (uint64_t)job->part[q];
	return 0;
}

/* lambda_i = 1 + r clamp(shared_i / max(unique_i, epsilon), 0, alpha); a
 * NaN ratio (0 / 0 with epsilon 0) clamps to 0. lambda_i is used only
 * where model i changed an element alone, so unique_i > 0 there. */
static int ram_count_done(struct merge_ctx *p, struct lines_error *err)
{
	struct ram_state *st = p->state;
	const struct lines_merge_opts *o = p->o;
	(void)err;
	for (size_t k = 0; k < p->nt * p->nmodels; k++) {
		double shared = (double)st->cnt[2 * k], unique = (double)st->cnt[2 * k + 1];
		double rho = shared / fmax(unique, o->ram_epsilon);
		rho = rho > o->ram_alpha ? o->ram_alpha : rho > 0 ? rho : 0.0;
		st->lam[k] = 1.0 + o->ram_r * rho;
	}
	st->counted = 1;
	return 0;
}

/* ---- the writing pass ------------------------------------------------------ */
/* The tile's output; cnt[c] += the elements that c models changed. The
 * loops have no branch, so that they vectorise: every fma computed, then
 * chosen; one count of the tile for each c. */
static void ram_tile(const struct merge_ctx *p, const struct tensor *t, const struct pipe_job *job,
                     size_t j0, size_t n, struct ram_scratch *s, uint64_t *cnt)
{
	unsigned nc = p->nmodels + 1;
	ram_load(p, t, job, j0, n, s);
	ram_merge(p, ram_lambdas(p, job->tensor), n, s);
	for (size_t j = 0; j < n; j++)
		s->out[j] = fma(t->lambda, s->m[j], s->b[j]);
	for (size_t j = 0; j < n; j++) {
		int base = (s->c[j] == 0) & (isfinite(s->s[j]) != 0);
		s->out[j] = base ? s->b[j] : s->out[j];
	}
	for (unsigned c = 0; c < nc; c++) {
		uint32_t k = 0;
		for (size_t j = 0; j < n; j++)
			k += s->c[j] == c;
		cnt[c] += k;
	}
	tile_store(p->k, t->out_dt, s->out, n, job->out + j0 * t->unit_out, s->f);
}

LINES_HOT static int ram_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                    struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;
	uint64_t cnt[LINES_MAX_MODELS + 1] = {0};
	for (size_t j0 = 0; j0 < n; j0 += KERN_TILE)
		ram_tile(p, t, job, j0, n - j0 < KERN_TILE ? n - j0 : KERN_TILE, scratch, cnt);
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
		for (size_t j0 = b0; j0 < b1; j0 += KERN_TILE) {
			size_t nn = b1 - j0 < KERN_TILE ? b1 - j0 : KERN_TILE;
			ram_load(p, t, job, j0, nn, s);
			ram_merge(p, lam, nn, s);
			norm_lanes_add(&l, s->s, s->m, nn);
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
	return sizeof(struct ram_scratch) + (size_t)p->nmodels * KERN_TILE * sizeof(double);
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

static int ram_read_passes(struct merge_ctx *p, struct lines_error *err)
{
	struct ram_state *st = p->state;
	int norms = p->o->lines && p->o->alpha_auto;
	RETURN_ERROR_IF((st->plus || norms) && p->single_pass, err, LINES_EUSAGE, NULL, NULL,
	                "standard input can be read only once, but -m %s needs a %s pass before "
	                "the writing pass: give that model as a file%s",
	                st->plus ? "ramplus_tl" : "ram", st->plus ? "count" : "norm",
	                st->plus ? "" : ", or give --alpha");
	if (st->plus) {
		struct pass *pc = ram_add_pass(p, "count", ram_count_work);
		pc->part_job = 2 * p->nmodels;
		pc->reduce = ram_count_reduce;
		pc->done = ram_count_done;
	}
	if (norms) {
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
	st->agree = calloc(p->nmodels + 1, sizeof(*st->agree));
	if (plus) {
		st->cnt = calloc(2 * k + 1, sizeof(*st->cnt));
		st->lam = calloc(k + 1, sizeof(*st->lam));
	}
	RETURN_ERROR_IF(!st->agree || (plus && (!st->cnt || !st->lam)), err, LINES_ENOMEM, NULL,
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
