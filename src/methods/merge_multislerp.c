/*
 * merge_multislerp.c -- mergekit's multislerp: barycentric interpolation
 * of N models on the sphere around their weighted mean, or of their task
 * vectors when there is a base.
 *
 * Per tensor, flattened, with x_i the models' values, or with a base b
 * their task vectors x_i - b rounded to float32 (float64 for F64), and w
 * the weights (-w, 1 each by default) divided by their sum unless
 * --no-normalize (mergekit's normalize_weights), eps = 1e-8, mergekit
 * computes
 *     n_i = |x_i|,  u_i = x_i / (n_i + eps),  m = sum w_i u_i
 *     |m| < eps:  two models: w_0 x_0 + w_1 x_1;  more: an error
 *     else:  mh = m / |m|,  t_i = u_i - (u_i . mh) mh,  T = sum w_i t_i
 *            r = (mh cos(|T| + eps) + T sin(|T| + eps) / (|T| + eps))
 *                * sum w_i n_i
 * T is exactly zero (sum w_i (u_i . mh) = m . mh = |m|), and cos(eps)
 * is 1 in float64, so r = (sum w_i n_i) m / |m|: a linear combination
 * r = sum c_i x_i with c_i = (sum_k w_k n_k) w_i / ((n_i + eps) |m|).
 * The c_i come from the Gram matrix of the x_i, which a read-only pass
 * measures in float64 (tensor_dots.h); |m|^2 = sum_ij a_i a_j G_ij with
 * a_i = w_i / (n_i + eps). lines computes that exact result where
 * mergekit's float32 leaves rounding noise in T. Then per element, in
 * float64 and rounded once,
 *     without a base:  theta = r
 *     with a base:     theta = b + lambda r     fma(lambda, r, b)
 * One model is that model (b + lambda (x_0 - b) with a base and LiNeS).
 * Where every x_i is zero (a tensor no fine-tune changed), mergekit
 * raises; lines gives r = 0 (avg_norm is 0 whatever m's direction).
 *
 * Without -b, input 0 is the first model read a second time; the models
 * are inputs 1..N either way. Vector N of the dots pass is room for the
 * base's values.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>

#include "method.h"
#include "tensor_dots.h"

#define MS_EPS 1e-8
#define MS_MAX_N (TDOTS_MAX_K - 1)

struct multislerp {
	struct tdots d; /* first: tensor_dots.h */
	unsigned n;
	double w[MS_MAX_N]; /* normalized unless --no-normalize */
	double acc[4];      /* automatic alpha: |s|, |r|, s^2, r^2 */
};

struct ms_scratch {
	double v[MS_MAX_N][KERN_TILE], b[KERN_TILE];
	float f[KERN_TILE], bf[KERN_TILE];
};

/* What a tensor's dots say: the sphere; two models' lerp; every vector
 * zero (the result is 0 whatever its direction, where mergekit raises);
 * a zero mean of three or more (refused, as mergekit does). */
enum ms_kind { MS_SLERP, MS_LERP, MS_NULL, MS_ZERO };
static const char *const ms_case[] = {"slerp", "lerp", "zero_vectors", "zero_mean"};

/* The index of the pair (i, j), i <= j, in the order ms_setup() lists them. */
static unsigned ms_pair(unsigned n, unsigned i, unsigned j)
{
	return i * n - i * (i - 1) / 2 + (j - i);
}

/* The dots pass's vectors: v[i] = model i, or its task vector when there
 * is a base (tile_tau(); v[n] gets the base's values); tmp is tdots' two
 * float tiles. */
LINES_HOT static void ms_load(const struct merge_ctx *p, const struct tensor *t, const struct pipe_job *job,
                    size_t j0, size_t n, double *const *v, float *tmp)
{
	const struct multislerp *ms = p->state;
	size_t off = j0 * t->unit_in;
	float *bf = tmp + KERN_TILE;
	if (!p->no_base)
		tile_load(p->k, t->in_dt, job->in[0] + off, n, v[ms->n], bf);
	for (unsigned i = 0; i < ms->n; i++)
		if (p->no_base)
			tile_load(p->k, t->in_dt, job->in[i + 1] + off, n, v[i], tmp);
		else
			tile_tau(p->k, t->in_dt, job->in[i + 1] + off, n, v[ms->n], bf, v[i], tmp);
}

/* The weights of TENSOR into w: the run's (ms->w), or its own (a
 * configuration's gradients and filters: tensor_w()) divided by their sum
 * unless --no-normalize. */
static void ms_tensor_w(const struct merge_ctx *p, const struct multislerp *ms, size_t tensor,
                        double *w)
{
	const struct tensor *t = &p->t[tensor];
	for (unsigned i = 0; i < ms->n; i++)
		w[i] = !t->w ? ms->w[i] : p->o->no_normalize ? t->w[i] : t->w[i] / t->wsum;
}

/* The coefficients c[0..n) of tensor TENSOR from its Gram matrix g; *mn
 * gets |m| (NaN stays NaN, and then so do the coefficients). */
static enum ms_kind ms_coef(const struct merge_ctx *p, const struct multislerp *ms, size_t tensor,
                            const double *g, double *c, double *mn)
{
	unsigned n = ms->n;
	double a[MS_MAX_N], q = 0.0, avg = 0.0, w[MS_MAX_N];
	int null = 1;
	ms_tensor_w(p, ms, tensor, w);
	for (unsigned i = 0; i < n; i++) {
		double ni = sqrt(g[ms_pair(n, i, i)]);
		a[i] = w[i] / (ni + MS_EPS);
		avg += w[i] * ni;
		null &= ni == 0.0;
	}
	if (null) {
		*mn = 0.0;
		for (unsigned i = 0; i < n; i++)
			c[i] = 0.0;
		return MS_NULL;
	}
	for (unsigned i = 0; i < n; i++)
		for (unsigned j = 0; j < n; j++)
			q += a[i] * a[j] * g[i <= j ? ms_pair(n, i, j) : ms_pair(n, j, i)];
	*mn = sqrt(q > 0.0 ? q : 0.0 * q); /* rounding can leave a tiny q < 0 */
	if (*mn < MS_EPS) {
		for (unsigned i = 0; i < n; i++)
			c[i] = w[i];
		return n == 2 ? MS_LERP : MS_ZERO;
	}
	for (unsigned i = 0; i < n; i++)
		c[i] = avg * a[i] / *mn;
	return MS_SLERP;
}

/*
 * r = sum_i c_i v_i over one tile, in the models' order (0.0 + c_0 v_0,
 * then + c_i v_i), one model at a time so that the loops run over the
 * elements; with SV, also sv = sum_i v_i (0.0 + v_0 + v_1 ...). v_i is
 * model i's values, or with a base its task vector from tile_tau(), as
 * in the dots pass (ms_load()); the base's values go to s->b. r and sv
 * are two of the tiles s->v[1..].
 */
static void ms_sum(const struct merge_ctx *p, const struct multislerp *ms, const double *c,
                   const struct tensor *t, const struct pipe_job *job, size_t j0, size_t nn,
                   struct ms_scratch *s, double *r, double *sv)
{
	size_t off = j0 * t->unit_in;
	double *x = s->v[0];
	if (!p->no_base)
		tile_load(p->k, t->in_dt, job->in[0] + off, nn, s->b, s->bf);
	for (unsigned i = 0; i < ms->n; i++) {
		double ci = c[i];
		if (!p->no_base)
			tile_tau(p->k, t->in_dt, job->in[i + 1] + off, nn, s->b, s->bf, x, s->f);
		else
			tile_load(p->k, t->in_dt, job->in[i + 1] + off, nn, x, s->f);
		if (i == 0 && sv)
			for (size_t j = 0; j < nn; j++)
				r[j] = 0.0 + ci * x[j], sv[j] = 0.0 + x[j];
		else if (i == 0)
			for (size_t j = 0; j < nn; j++)
				r[j] = 0.0 + ci * x[j];
		else if (sv)
			for (size_t j = 0; j < nn; j++)
				r[j] += ci * x[j], sv[j] += x[j];
		else
			for (size_t j = 0; j < nn; j++)
				r[j] += ci * x[j];
	}
}

#if defined(__GNUC__)
/*
 * ms_sum() and what the passes do with r, fused, for float32 values with a
 * base: one element (j of the tile) from the decoded values, bf the
 * base's and ft the models' (ft[i * KERN_TILE + j]), the reference for
 * ms_vec(). r = sum_i c_i tau_i and sv = sum_i tau_i as ms_sum() adds
 * them; the norm pass adds them to lane k of l, the writing pass rounds
 * fma(lambda, r, b) to float32 into out[j] (as tile_store()).
 */
static inline void ms_elem(const struct multislerp *ms, const double *c, const float *bf,
                           const float *ft, size_t j, unsigned k, struct norm_lanes *l,
                           double lambda, float *out)
{
	double r = 0.0, sv = 0.0;
	for (unsigned i = 0; i < ms->n; i++) {
		double tau = (double)(ft[(size_t)i * KERN_TILE + j] - bf[j]);
		r = i == 0 ? 0.0 + c[i] * tau : r + c[i] * tau;
		sv = i == 0 ? 0.0 + tau : sv + tau;
	}
	if (l) {
		norm_lane(l, k, sv, r);
		return;
	}
	f32_store(&out[j], fma(lambda, r, (double)bf[j]));
}

/* ms_vec_8() and ms_vec_4(): merge_multislerp_vec.h */
#define KV_BODY "merge_multislerp_vec.h"
#include "kv_both.h"
/* ms_vec() at the width of struct kern's wide */
#define ms_vec(wide, ...) KV_CALL(wide, ms_vec, __VA_ARGS__)

/* Whether ms_fused() takes tensor t: float32 values in (and out, for the
 * writing pass), and a base */
static int ms_fuses(const struct merge_ctx *p, const struct tensor *t, int write)
{
	return !p->no_base && t->in_dt != DT_F64 && !(write && t->out_dt == DT_F64);
}

/* Elements [j0, j0 + nn) of the job: the base's and the models' values
 * decoded to float32 (BF16 decoded in ms_vec() instead, but for the
 * elements after the last multiple of 8), then ms_vec() and ms_elem(); the
 * norm pass's sums into l, or the writing pass's output in s->f, encoded. */
static void ms_fused(const struct merge_ctx *p, const struct multislerp *ms, const double *c,
                     const struct tensor *t, const struct pipe_job *job, size_t j0, size_t nn,
                     struct ms_scratch *s, struct norm_lanes *l)
{
	size_t n8 = nn & ~(size_t)7;
	float *ft = (float *)(void *)s->v; /* MS_MAX_N float tiles in the float64 ones */
	const unsigned char *raw[MS_MAX_N + 1];
	int d0 = tile_decode_f32(p, t, job, j0, nn, ms->n, raw, s->bf, ft, KERN_TILE);
	if (d0 && l)
		ms_vec(p->k->wide, ms, c, s->bf, ft, raw, n8, l, 0.0, NULL);
	else if (d0)
		ms_vec(p->k->wide, ms, c, s->bf, ft, raw, n8, NULL, t->lambda, s->f);
	else if (l)
		ms_vec(p->k->wide, ms, c, s->bf, ft, NULL, n8, l, 0.0, NULL);
	else
		ms_vec(p->k->wide, ms, c, s->bf, ft, NULL, n8, NULL, t->lambda, s->f);
	for (size_t j = n8; j < nn; j++)
		ms_elem(ms, c, s->bf, ft, j, (unsigned)(j - n8), l, t->lambda, s->f);
	if (!l)
		p->k->encode(t->out_dt, s->f, job->out + j0 * t->unit_out, nn);
}
#endif

/* One model: itself, or b + lambda (x_0 - b) from the model's own values. */
static void ms_one(const struct merge_ctx *p, const struct tensor *t, const struct pipe_job *job,
                   size_t j0, size_t nn, struct ms_scratch *s)
{
	size_t off = j0 * t->unit_in;
	tile_load(p->k, t->in_dt, job->in[1] + off, nn, s->v[0], s->f);
	if (p->no_base)
		return;
	tile_load(p->k, t->in_dt, job->in[0] + off, nn, s->b, s->f);
	for (size_t j = 0; j < nn; j++)
		s->v[0][j] = toward_base(s->v[0][j], s->b[j], t->lambda);
}

LINES_HOT static int ms_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                   struct lines_error *err)
{
	const struct multislerp *ms = p->state;
	const struct tensor *t = &p->t[job->tensor];
	struct ms_scratch *s = scratch;
	double *v[MS_MAX_N], c[MS_MAX_N], mn;
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;
	for (unsigned i = 0; i < MS_MAX_N; i++)
		v[i] = s->v[i];
	if (ms->n > 1)
		ms_coef(p, ms, job->tensor, tdots_of(&ms->d, job->tensor), c, &mn);
	for (size_t j0 = 0; j0 < n; j0 += KERN_TILE) {
		size_t nn = n - j0 < KERN_TILE ? n - j0 : KERN_TILE;
		if (ms->n == 1) {
			ms_one(p, t, job, j0, nn, s);
#if defined(__GNUC__)
		} else if (ms_fuses(p, t, 1)) {
			ms_fused(p, ms, c, t, job, j0, nn, s, NULL);
			continue;
#endif
		} else {
			ms_sum(p, ms, c, t, job, j0, nn, s, v[1], NULL);
			for (size_t j = 0; j < nn; j++)
				v[0][j] = !p->no_base ? fma(t->lambda, v[1][j], s->b[j]) : v[1][j];
		}
		tile_store(p->k, t->out_dt, v[0], nn, job->out + j0 * t->unit_out, s->f);
	}
	return 0;
}

/* The dots pass is done: a zero weighted mean of three or more unit
 * vectors has no direction (mergekit raises); refuse before writing. */
static int ms_dots_done(struct merge_ctx *p, struct lines_error *err)
{
	struct multislerp *ms = p->state;
	double c[MS_MAX_N], mn;
	ms->d.measured = 1;
	for (size_t i = 0; i < p->nt; i++)
		RETURN_ERROR_IF(p->t[i].merge &&
		                    ms_coef(p, ms, i, tdots_of(&ms->d, i), c, &mn) == MS_ZERO,
		                err, LINES_EUNSUPPORTED, NULL, p->t[i].name,
		                "-m multislerp: the weighted mean of the %u unit vectors is zero "
		                "(|m| = %g < 1e-8): it has no direction; change the weights",
		                ms->n, fabs(mn));
	return 0;
}

/* ---- the norm pass of automatic alpha ----------------------------------------- */
/*
 * With s = sum v_i (the float32 task vectors) and r the interpolated task
 * vector: |s|, |r|, s^2 and r^2 per KERN_BLOCK block, elements in order,
 * leaving out those where s or r is not finite.
 */
static void ms_norm_block(const struct merge_ctx *p, const struct multislerp *ms,
                          const struct pipe_job *job, size_t b0, size_t b1, const double *c,
                          struct ms_scratch *s, double *part)
{
	const struct tensor *t = &p->t[job->tensor];
	struct norm_lanes l = {0};
	double *sv = s->v[1], *r = s->v[2];
	for (size_t j0 = b0; j0 < b1; j0 += KERN_TILE) {
		size_t nn = b1 - j0 < KERN_TILE ? b1 - j0 : KERN_TILE;
#if defined(__GNUC__)
		if (ms_fuses(p, t, 0)) {
			ms_fused(p, ms, c, t, job, j0, nn, s, &l);
			continue;
		}
#endif
		ms_sum(p, ms, c, t, job, j0, nn, s, r, sv);
		norm_lanes_add(p->k->wide, &l, sv, r, nn);
	}
	norm_lanes_fold(part, &l);
}

LINES_HOT static int ms_norm_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                        struct lines_error *err)
{
	const struct multislerp *ms = p->state;
	size_t n = (size_t)(job->u1 - job->u0);
	double c[MS_MAX_N] = {1.0}, mn;
	(void)err;
	if (ms->n > 1)
		ms_coef(p, ms, job->tensor, tdots_of(&ms->d, job->tensor), c, &mn);
	for (unsigned b = 0; b < job->nblocks; b++) {
		size_t b0 = (size_t)b * KERN_BLOCK, b1 = b0 + KERN_BLOCK < n ? b0 + KERN_BLOCK : n;
		ms_norm_block(p, ms, job, b0, b1, c, scratch, job->part + 4 * b);
	}
	return 0;
}

static int ms_norm_reduce(struct merge_ctx *p, const struct pipe_job *job, struct lines_error *err)
{
	struct multislerp *ms = p->state;
	(void)err;
	norm_sums_add(ms->acc, job);
	return 0;
}

static int ms_norm_done(struct merge_ctx *p, struct lines_error *err)
{
	const struct multislerp *ms = p->state;
	return norm_sums_alpha(p, ms->acc, 0, err);
}

static void ms_add_norms(struct merge_ctx *p)
{
	struct pass *ps = passes_add(p->passes);
	ps->name = "norms";
	ps->part_block = 4;
	ps->scratch = sizeof(struct ms_scratch);
	ps->want = want_merged;
	ps->work = ms_norm_work;
	ps->reduce = ms_norm_reduce;
	ps->done = ms_norm_done;
	p->sc->measured = 1;
}

/* ---- setup ---------------------------------------------------------------------- */

/* LiNeS and --lambda scale the interpolated task vector: they need a base. */
static int ms_check(const struct lines_merge_opts *o, struct lines_error *err)
{
	RETURN_ERROR_IF(o->nmodels < 1 || o->nmodels > MS_MAX_N, err, LINES_EUSAGE, NULL, NULL,
	                "-m multislerp interpolates 1 to %d models (got %zu)", MS_MAX_N,
	                o->nmodels);
	RETURN_ERROR_IF(!o->base && (o->lines || o->lambda != 1.0), err, LINES_EUSAGE, NULL, NULL,
	                "-m multislerp --lines and --lambda scale the interpolated task vector: "
	                "give -b BASE");
	double ws = 0.0;
	for (size_t i = 0; o->weights && i < o->nmodels; i++)
		ws += o->weights[i];
	RETURN_ERROR_IF(o->weights && !o->no_normalize && o->nmodels > 1 && ws == 0.0, err,
	                LINES_EUSAGE, NULL, NULL,
	                "-m multislerp: the weights (--weights) sum to 0 and cannot be normalized "
	                "(give other weights, or --no-normalize)");
	return 0;
}

/* The weights, divided by their sum unless --no-normalize. */
static int ms_weights(struct multislerp *ms, const struct merge_ctx *p, struct lines_error *err)
{
	double ws = 0.0;
	ms->n = p->nmodels;
	for (unsigned i = 0; i < ms->n; i++)
		ws += p->w[i];
	for (unsigned i = 0; i < ms->n; i++)
		ms->w[i] = p->o->no_normalize ? p->w[i] : p->w[i] / ws;
	for (size_t t = 0; t < p->nt && !p->o->no_normalize && ms->n > 1; t++)
		RETURN_ERROR_IF(p->t[t].merge && p->t[t].w && p->t[t].wsum == 0.0, err, LINES_EUSAGE,
		                NULL, p->t[t].name,
		                "-m multislerp: the weights sum to 0 here and cannot be normalized");
	return 0;
}

/* The dots pass: every pair (i, j), i <= j, of the N vectors. */
static int ms_add_dots(struct merge_ctx *p, struct multislerp *ms, struct lines_error *err)
{
	unsigned char pairs[TDOTS_MAX_PAIRS][2];
	unsigned q = 0;
	for (unsigned i = 0; i < ms->n; i++)
		for (unsigned j = i; j < ms->n; j++)
			pairs[q][0] = (unsigned char)i, pairs[q++][1] = (unsigned char)j;
	FORWARD_IF_ERROR(tdots_init(&ms->d, p, ms->n + 1, (const unsigned char (*)[2])pairs, q,
	                            ms_load, err));
	FORWARD_IF_ERROR(tdots_add_pass(p, "dots", "-m multislerp", err));
	p->passes->pass[p->passes->n - 1].done = ms_dots_done;
	return 0;
}

static int ms_setup(struct merge_ctx *p, struct lines_error *err)
{
	struct multislerp *ms;
	RETURN_ERROR_IF(!(ms = calloc(1, sizeof(*ms))), err, LINES_ENOMEM, NULL, NULL,
	                "out of memory");
	p->state = ms;
	FORWARD_IF_ERROR(ms_weights(ms, p, err));
	if (ms->n > 1)
		FORWARD_IF_ERROR(ms_add_dots(p, ms, err));
	if (p->o->lines && p->o->alpha_auto) {
		RETURN_ERROR_IF(p->single_pass, err, LINES_EUSAGE, NULL, NULL,
		                "standard input can be read only once, but -m multislerp's "
		                "automatic alpha needs a norms pass before the writing pass: give "
		                "that model as a file, or --alpha A");
		ms_add_norms(p);
	}
	return tdots_add_write(p, ms_work, sizeof(struct ms_scratch), err);
}

/* ---- reporting ------------------------------------------------------------------ */

static json_t *ms_report(const struct merge_ctx *c)
{
	const struct multislerp *ms = c->state;
	json_t *m = json_object(), *w = json_array();
	for (unsigned i = 0; ms && i < ms->n; i++)
		json_array_append_new(w, json_num(ms->w[i]));
	json_object_set_new(m, "weights", w);
	json_object_set_new(m, "normalize", json_boolean(!c->o->no_normalize));
	json_object_set_new(m, "eps", json_real(MS_EPS));
	json_object_set_new(m, "task_vectors", json_boolean(!c->no_base));
	return m;
}

static void ms_report_tensor(const struct merge_ctx *c, size_t i, json_t *e)
{
	const struct multislerp *ms = c->state;
	if (!ms || !ms->d.measured || !c->t[i].merge)
		return;
	const double *g = tdots_of(&ms->d, i);
	double cf[MS_MAX_N], mn;
	enum ms_kind k = ms_coef(c, ms, i, g, cf, &mn);
	json_t *o = json_object(), *gram = json_array(), *co = json_array();
	for (unsigned q = 0; q < ms->d.npairs; q++)
		json_array_append_new(gram, json_num(g[q]));
	for (unsigned j = 0; j < ms->n; j++)
		json_array_append_new(co, json_num(cf[j]));
	json_object_set_new(o, "gram", gram);
	json_object_set_new(o, "mean_norm", json_num(mn));
	json_object_set_new(o, "case", json_string(ms_case[k]));
	json_object_set_new(o, "c", co);
	json_object_set_new(e, "multislerp", o);
}

const struct method method_multislerp = {
	.name = "multislerp",
	.summary = "barycentric interpolation of N models on the sphere (task vectors with a base)",
	.flags = METHOD_USES_WEIGHTS | METHOD_NO_BASE | METHOD_USES_NORMALIZE | METHOD_TENSOR_W,
	.check = ms_check,
	.setup = ms_setup,
	.report = ms_report,
	.report_tensor = ms_report_tensor,
	.free = tdots_method_free,
};
