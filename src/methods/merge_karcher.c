/*
 * merge_karcher.c -- mergekit's karcher: the Riemannian (Karcher) mean of
 * the models on the unit sphere, scaled by the mean of their norms.
 *
 * Per tensor, flattened, with x_i the N models' values (never task
 * vectors: a base is only for LiNeS and --lambda) and every weight 1/N
 * (mergekit's karcher takes none), mergekit computes
 *     n_i = |x_i|,  u_i = x_i / n_i (0 where n_i = 0),  s = sum_i n_i / N
 *     V = {i : n_i > tol};  V empty: the result is 0
 *     a = 1 / |V|;  m = sum_V a u_i;  u = m / |m|, or u_V0 if |m| < tol
 *     at most max_iter times:
 *         T = sum over i in V with theta_i = acos(clamp(u . u_i)) >= tol of
 *             a (theta_i / sin theta_i) (u_i - (u . u_i) u)
 *         |T| < tol: stop
 *         u = cos|T| u + sin|T| T / |T|;  u = u / |u| if |u| > tol
 *     result s u
 * Every vector it forms is a linear combination of the x_i, and it looks
 * at them only through dot products. So lines keeps, per tensor, the
 * Gram matrix G_ij = x_i . x_j (a read-only pass, tensor_dots.h: float64,
 * the same for any -j, --chunk or instruction set) and iterates on the N
 * coefficients of u = sum_j c_j x_j in float64, with p . q = c_p' G c_q,
 * once every tensor's Gram matrix is known and before anything is
 * written. The writing pass then forms theta = sum_j (s c_j) x_j per
 * element in float64 and rounds once (LiNeS or --lambda with -b:
 * b + lambda (theta - b)). Two reads of each tensor, three with
 * automatic alpha: no read per iteration.
 *
 * Where lines differs from mergekit: mergekit iterates in the working
 * dtype (float32 at best), in which acos near 1 cannot see angles below
 * about 3e-4, so nearly parallel models stop anywhere within about 1e-4;
 * lines iterates in float64. Its |T| comes from the Gram matrix, where it
 * cancels down to about 1e-8: a tol below that may run to max_iter (each
 * extra step is then smaller than about 1e-8). A model within 1.4e-6 of
 * the antipode of u (1 + u . u_i <= 1e-12) adds nothing to T: its log
 * map has no direction there (mergekit adds exactly 0 for an exact
 * negation, and float32 noise near one). A tensor with a NaN or an
 * infinity in a model comes out NaN, as in mergekit, except where every
 * model has a NaN: mergekit leaves them all out (a NaN norm is not above
 * tol) and writes 0.
 *
 * Without -b, input 0 is the first model read a second time; the models
 * are inputs 1..N either way.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "method.h"
#include "tensor_dots.h"

#define KA_MAX_N TDOTS_MAX_K
/* 1 + cos theta at or below which a model is antipodal to the estimate */
#define KA_ANTIPODE 1e-12

/* What a tensor came to: iterated on the sphere; every norm <= tol (the
 * result is 0); a NaN or an infinity somewhere (the result is NaN). */
enum ka_kind { KA_MEAN, KA_ZERO, KA_NAN };
static const char *const ka_case[] = {"karcher", "zero", "nan"};

struct karcher {
	struct tdots d; /* first: tensor_dots.h */
	unsigned n;
	/* per tensor, once solved: n coefficients of theta = sum c_j x_j,
	 * the updates made, whether |T| < tol stopped them, the case */
	double *coef;
	unsigned *iters;
	unsigned char *conv, *kind;
	int solved;
	unsigned iters_max;
	size_t unconverged;
	double acc[4]; /* automatic alpha: |s|, |t|, s^2, t^2 */
};

struct ka_scratch {
	double x[KA_MAX_N][KERN_TILE], r[KERN_TILE], b[KERN_TILE], ts[KERN_TILE];
	float f[KERN_TILE];
};

/* ---- the iteration on the coefficients ----------------------------------------- */

/* G_ij of a tensor's pairs (i <= j listed in order). */
static double ka_g(const double *g, unsigned n, unsigned i, unsigned j)
{
	if (i > j) {
		unsigned k = i;
		i = j, j = k;
	}
	return g[i * n - i * (i - 1) / 2 + (j - i)];
}

/* p . q for vectors given by their coefficients over the x_i. */
static double ka_dot(const double *g, unsigned n, const double *p, const double *q)
{
	double s = 0.0;
	for (unsigned i = 0; i < n; i++) {
		double r = 0.0;
		for (unsigned j = 0; j < n; j++)
			r += ka_g(g, n, i, j) * q[j];
		s += p[i] * r;
	}
	return s;
}

/* |p|; rounding can leave p . p a hair below 0 when |p| is 0. */
static double ka_norm(const double *g, unsigned n, const double *p)
{
	double q = ka_dot(g, n, p, p);
	return sqrt(q > 0.0 ? q : 0.0 * q);
}

struct ka_result {
	enum ka_kind kind;
	unsigned iters;
	int converged;
};

/*
 * The coefficients c[0..n) of a tensor's result (s u) from its Gram
 * matrix g, with at most max_iter updates and tolerance tol.
 */
static struct ka_result ka_solve(const double *g, unsigned n, unsigned max_iter, double tol,
                                 double *c)
{
	struct ka_result res = {KA_MEAN, 0, 0};
	double nrm[KA_MAX_N], u[KA_MAX_N] = {0}, t[KA_MAX_N], s = 0.0, a;
	unsigned valid[KA_MAX_N], nv = 0;
	int finite = 1;

	for (unsigned q = 0; q < n * (n + 1) / 2; q++)
		finite &= isfinite(g[q]) != 0;
	for (unsigned i = 0; i < n; i++) {
		nrm[i] = sqrt(ka_g(g, n, i, i));
		s += nrm[i] / n;
		if (nrm[i] > tol)
			valid[nv++] = i;
		c[i] = finite ? 0.0 : NAN;
	}
	if (!finite)
		return res.kind = KA_NAN, res;
	if (nv == 0)
		return res.kind = KA_ZERO, res;
	a = 1.0 / nv;

	/* the start: the normalized mean of the unit vectors */
	for (unsigned k = 0; k < nv; k++)
		u[valid[k]] = a / nrm[valid[k]];
	double mn = ka_norm(g, n, u);
	for (unsigned i = 0; i < n; i++)
		u[i] = mn < tol ? (i == valid[0] ? 1.0 / nrm[i] : 0.0) : u[i] / mn;

	while (res.iters < max_iter) {
		/* T: the mean of the log maps of the models at u */
		for (unsigned i = 0; i < n; i++)
			t[i] = 0.0;
		for (unsigned k = 0; k < nv; k++) {
			unsigned i = valid[k];
			double d = 0.0;
			for (unsigned j = 0; j < n; j++)
				d += u[j] * ka_g(g, n, j, i);
			d /= nrm[i];
			d = d > 1.0 ? 1.0 : d < -1.0 ? -1.0 : d;
			double th = acos(d);
			if (th < tol || 1.0 + d <= KA_ANTIPODE)
				continue;
			double f = a * (th / sin(th));
			for (unsigned j = 0; j < n; j++)
				t[j] -= f * d * u[j];
			t[i] += f / nrm[i];
		}
		double tn = ka_norm(g, n, t);
		if (tn < tol) {
			res.converged = 1;
			break;
		}
		/* the exponential map: a step of |T| along T */
		double cs = cos(tn), sn = sin(tn) / tn;
		for (unsigned j = 0; j < n; j++)
			u[j] = cs * u[j] + sn * t[j];
		double un = ka_norm(g, n, u);
		if (un > tol)
			for (unsigned j = 0; j < n; j++)
				u[j] /= un;
		res.iters++;
	}
	for (unsigned i = 0; i < n; i++)
		c[i] = s * u[i];
	return res;
}

/* The dots pass is done: solve every merged tensor. */
static int ka_dots_done(struct merge_ctx *p, struct lines_error *err)
{
	struct karcher *ka = p->state;
	(void)err;
	ka->d.measured = 1;
	for (size_t i = 0; i < p->nt; i++) {
		if (!p->t[i].merge)
			continue;
		struct ka_result r = ka_solve(tdots_of(&ka->d, i), ka->n, p->o->max_iter, p->o->tol,
		                              ka->coef + i * ka->n);
		ka->iters[i] = r.iters;
		ka->conv[i] = (unsigned char)r.converged;
		ka->kind[i] = (unsigned char)r.kind;
		if (r.iters > ka->iters_max)
			ka->iters_max = r.iters;
		ka->unconverged += r.kind == KA_MEAN && !r.converged;
	}
	ka->solved = 1;
	return 0;
}

/* ---- per element ---------------------------------------------------------------- */

LINES_HOT static void ka_load(const struct merge_ctx *p, const struct tensor *t, const struct pipe_job *job,
                    size_t j0, size_t n, double *const *v, float *tmp)
{
	for (unsigned i = 0; i < p->nmodels; i++)
		tile_load(p->k, t->in_dt, job->in[i + 1] + j0 * t->unit_in, n, v[i], tmp);
}

/* s->r = the result from the models' values in s->x: the coefficients
 * c, or the one model, before any move toward the base. */
static void ka_combine(const struct karcher *ka, size_t tensor, const double *c, size_t nn,
                       struct ka_scratch *s)
{
	if (ka->n == 1) {
		memcpy(s->r, s->x[0], nn * sizeof(double));
		return;
	}
	if (ka->kind[tensor] == KA_ZERO) {
		for (size_t j = 0; j < nn; j++)
			s->r[j] = 0.0;
		return;
	}
	for (size_t j = 0; j < nn; j++)
		s->r[j] = c[0] * s->x[0][j];
	for (unsigned i = 1; i < ka->n; i++)
		for (size_t j = 0; j < nn; j++)
			s->r[j] = fma(c[i], s->x[i][j], s->r[j]);
}

/* s->x = the models' values of elements [j0, j0 + nn) of the job. */
static void ka_models(const struct merge_ctx *p, const struct karcher *ka,
                      const struct tensor *t, const struct pipe_job *job, size_t j0, size_t nn,
                      struct ka_scratch *s)
{
	for (unsigned i = 0; i < ka->n; i++)
		tile_load(p->k, t->in_dt, job->in[i + 1] + j0 * t->unit_in, nn, s->x[i], s->f);
}

static const double *ka_coef_of(const struct karcher *ka, size_t tensor)
{
	return ka->n > 1 ? ka->coef + tensor * ka->n : NULL;
}

LINES_HOT static int ka_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                   struct lines_error *err)
{
	const struct karcher *ka = p->state;
	const struct tensor *t = &p->t[job->tensor];
	struct ka_scratch *s = scratch;
	const double *c = ka_coef_of(ka, job->tensor);
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;
	for (size_t j0 = 0; j0 < n; j0 += KERN_TILE) {
		size_t nn = n - j0 < KERN_TILE ? n - j0 : KERN_TILE;
		ka_models(p, ka, t, job, j0, nn, s);
		ka_combine(ka, job->tensor, c, nn, s);
		if (t->lambda != 1.0) {
			tile_load(p->k, t->in_dt, job->in[0] + j0 * t->unit_in, nn, s->b, s->f);
			for (size_t j = 0; j < nn; j++)
				s->r[j] = toward_base(s->r[j], s->b[j], t->lambda);
		}
		tile_store(p->k, t->out_dt, s->r, nn, job->out + j0 * t->unit_out, s->f);
	}
	return 0;
}

/* ---- the norm pass of automatic alpha ----------------------------------------- */
/*
 * Per KERN_BLOCK block, elements in order: |s|, |t|, s^2 and t^2 with
 * s = sum_i tau_i (the task vectors x_i - b rounded to float32; float64
 * for F64) and t = theta - b, the merged model's difference from the
 * base; elements where s or t is not finite are left out.
 */
static void ka_norm_block(const struct merge_ctx *p, const struct karcher *ka,
                          const struct pipe_job *job, const double *c, size_t b0, size_t b1,
                          struct ka_scratch *s, double *part)
{
	const struct tensor *t = &p->t[job->tensor];
	int f64 = t->in_dt == DT_F64;
	struct norm_lanes l = {0};
	for (size_t j0 = b0; j0 < b1; j0 += KERN_TILE) {
		size_t nn = b1 - j0 < KERN_TILE ? b1 - j0 : KERN_TILE;
		ka_models(p, ka, t, job, j0, nn, s);
		ka_combine(ka, job->tensor, c, nn, s);
		tile_load(p->k, t->in_dt, job->in[0] + j0 * t->unit_in, nn, s->b, s->f);
		for (unsigned i = 0; i < ka->n; i++) { /* the conditions out of the loops */
			const double *x = s->x[i];
			double *ts = s->ts;
			if (f64 && i == 0)
				for (size_t j = 0; j < nn; j++)
					ts[j] = x[j] - s->b[j];
			else if (f64)
				for (size_t j = 0; j < nn; j++)
					ts[j] += x[j] - s->b[j];
			else if (i == 0)
				for (size_t j = 0; j < nn; j++)
					ts[j] = (double)(float)(x[j] - s->b[j]);
			else
				for (size_t j = 0; j < nn; j++)
					ts[j] += (double)(float)(x[j] - s->b[j]);
		}
		for (size_t j = 0; j < nn; j++) /* t, in place of theta */
			s->r[j] -= s->b[j];
		norm_lanes_add(p->k->wide, &l, s->ts, s->r, nn);
	}
	norm_lanes_fold(part, &l);
}

LINES_HOT static int ka_norm_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                        struct lines_error *err)
{
	const struct karcher *ka = p->state;
	const double *c = ka_coef_of(ka, job->tensor);
	size_t n = (size_t)(job->u1 - job->u0);
	(void)err;
	for (unsigned b = 0; b < job->nblocks; b++) {
		size_t b0 = (size_t)b * KERN_BLOCK, b1 = b0 + KERN_BLOCK < n ? b0 + KERN_BLOCK : n;
		ka_norm_block(p, ka, job, c, b0, b1, scratch, job->part + 4 * b);
	}
	return 0;
}

static int ka_norm_reduce(struct merge_ctx *p, const struct pipe_job *job, struct lines_error *err)
{
	struct karcher *ka = p->state;
	(void)err;
	norm_sums_add(ka->acc, job);
	return 0;
}

static int ka_norm_done(struct merge_ctx *p, struct lines_error *err)
{
	const struct karcher *ka = p->state;
	return norm_sums_alpha(p, ka->acc, 0, err);
}

static int ka_add_norms(struct merge_ctx *p, struct lines_error *err)
{
	struct pass *ps;
	RETURN_ERROR_IF(p->single_pass, err, LINES_EUSAGE, NULL, NULL,
	                "standard input can be read only once, but -m karcher's automatic alpha "
	                "needs a norms pass before the writing pass: give that model as a file, "
	                "or --alpha A");
	RETURN_ERROR_IF(!(ps = passes_add(p->passes)), err, LINES_EUNSUPPORTED, NULL, NULL,
	                "too many passes");
	ps->name = "norms";
	ps->part_block = 4;
	ps->scratch = sizeof(struct ka_scratch);
	ps->want = want_merged;
	ps->work = ka_norm_work;
	ps->reduce = ka_norm_reduce;
	ps->done = ka_norm_done;
	p->sc->measured = 1;
	return 0;
}

/* ---- setup ---------------------------------------------------------------------- */

static int ka_check(const struct lines_merge_opts *o, struct lines_error *err)
{
	RETURN_ERROR_IF(o->nmodels < 1 || o->nmodels > KA_MAX_N, err, LINES_EUSAGE, NULL, NULL,
	                "-m karcher averages 1 to %d models (got %zu)", KA_MAX_N, o->nmodels);
	RETURN_ERROR_IF(o->weights, err, LINES_EUSAGE, NULL, NULL,
	                "-m karcher takes no weights: every model counts 1/N (as mergekit's)");
	RETURN_ERROR_IF(o->max_iter < 1, err, LINES_EUSAGE, NULL, NULL,
	                "-m karcher: --max-iter must be at least 1");
	RETURN_ERROR_IF(!(o->tol > 0 && isfinite(o->tol)), err, LINES_EUSAGE, NULL, NULL,
	                "-m karcher: --tol must be a finite number above 0");
	RETURN_ERROR_IF(!o->base && (o->lines || o->lambda != 1.0), err, LINES_EUSAGE, NULL, NULL,
	                "-m karcher --lines and --lambda move the mean toward a base: give -b BASE");
	return 0;
}

static int ka_setup(struct merge_ctx *p, struct lines_error *err)
{
	struct karcher *ka;
	unsigned char pairs[TDOTS_MAX_PAIRS][2];
	unsigned q = 0;
	RETURN_ERROR_IF(!(ka = calloc(1, sizeof(*ka))), err, LINES_ENOMEM, NULL, NULL,
	                "out of memory");
	p->state = ka;
	ka->n = p->nmodels;
	if (ka->n > 1) {
		size_t nt = p->nt ? p->nt : 1;
		for (unsigned i = 0; i < ka->n; i++)
			for (unsigned j = i; j < ka->n; j++)
				pairs[q][0] = (unsigned char)i, pairs[q++][1] = (unsigned char)j;
		FORWARD_IF_ERROR(tdots_init(&ka->d, p, ka->n, (const unsigned char (*)[2])pairs, q,
		                            ka_load, err));
		ka->coef = calloc(nt * ka->n, sizeof(double));
		ka->iters = calloc(nt, sizeof(unsigned));
		ka->conv = calloc(nt, 1);
		ka->kind = calloc(nt, 1);
		RETURN_ERROR_IF(!ka->coef || !ka->iters || !ka->conv || !ka->kind, err, LINES_ENOMEM,
		                NULL, NULL, "out of memory");
		FORWARD_IF_ERROR(tdots_add_pass(p, "dots", "-m karcher", err));
		p->passes->pass[p->passes->n - 1].done = ka_dots_done;
	} else {
		ka->solved = 1; /* one model: itself, nothing to iterate */
	}
	if (p->o->lines && p->o->alpha_auto)
		FORWARD_IF_ERROR(ka_add_norms(p, err));
	return tdots_add_write(p, ka_work, sizeof(struct ka_scratch), err);
}

static void ka_free(struct merge_ctx *p)
{
	struct karcher *ka = p->state;
	if (ka) {
		free(ka->coef);
		free(ka->iters);
		free(ka->conv);
		free(ka->kind);
	}
	tdots_method_free(p);
}

/* ---- reporting ------------------------------------------------------------------ */

/* {max_iter, tol, iterations_max, unconverged}: the last two once solved,
 * else null */
static json_t *ka_report(const struct merge_ctx *c)
{
	const struct karcher *ka = c->state;
	int known = ka && ka->solved;
	json_t *m = json_object();
	json_object_set_new(m, "max_iter", json_integer((json_int_t)c->o->max_iter));
	json_object_set_new(m, "tol", json_num(c->o->tol));
	json_object_set_new(m, "iterations_max",
	                    known ? json_integer((json_int_t)ka->iters_max) : json_null());
	json_object_set_new(m, "unconverged",
	                    known ? json_integer((json_int_t)ka->unconverged) : json_null());
	return m;
}

/* "karcher": {gram, c, iterations, converged, case} in a merged tensor's
 * entry once solved (none with one model) */
static void ka_report_tensor(const struct merge_ctx *c, size_t i, json_t *e)
{
	const struct karcher *ka = c->state;
	if (!ka || ka->n < 2 || !ka->solved || !c->t[i].merge)
		return;
	const double *g = tdots_of(&ka->d, i);
	json_t *o = json_object(), *gram = json_array(), *co = json_array();
	for (unsigned q = 0; q < ka->d.npairs; q++)
		json_array_append_new(gram, json_num(g[q]));
	for (unsigned j = 0; j < ka->n; j++)
		json_array_append_new(co, json_num(ka->coef[i * ka->n + j]));
	json_object_set_new(o, "gram", gram);
	json_object_set_new(o, "c", co);
	json_object_set_new(o, "iterations", json_integer((json_int_t)ka->iters[i]));
	json_object_set_new(o, "converged", json_boolean(ka->conv[i]));
	json_object_set_new(o, "case", json_string(ka_case[ka->kind[i]]));
	json_object_set_new(e, "karcher", o);
}

/* lines.max_iter and lines.tol */
static void ka_meta(const struct merge_ctx *c,
                    void (*put)(void *arg, const char *key, const char *value), void *arg)
{
	char v[40];
	snprintf(v, sizeof(v), "%u", c->o->max_iter);
	put(arg, "lines.max_iter", v);
	lines_fmt_double(v, sizeof(v), c->o->tol);
	put(arg, "lines.tol", v);
}

const struct method method_karcher = {
	.name = "karcher",
	.summary = "Karcher (Riemannian) mean of the models on the sphere, scaled by their mean norm",
	.flags = METHOD_NO_BASE | METHOD_USES_KARCHER,
	.check = ka_check,
	.setup = ka_setup,
	.meta = ka_meta,
	.report = ka_report,
	.report_tensor = ka_report_tensor,
	.free = ka_free,
};
