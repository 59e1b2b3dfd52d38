/*
 * merge_nuslerp.c -- mergekit's nuslerp: spherical interpolation of two
 * models by weights, or of their task vectors when there is a base.
 *
 * t = w1 / (w0 + w1) from -w w0,w1 (0.5 when |w0 + w1| < 1e-6; weights of
 * opposite signs extrapolate), per tensor when a configuration's
 * gradients and filters give each tensor its weights (nu_t()). Per tensor, flattened (mergekit's default
 * nuslerp_flatten: true), with v0, v1 the two models' values, or with a
 * base b their task vectors x_i - b rounded to float32 (float64 for F64),
 * everything else in float64:
 *     c = (v0 . v1) / (max(|v0|, 1e-7) max(|v1|, 1e-7)), clamped to [-1, 1]
 *     th = acos(c)
 *     |sin th| < 1e-8:  s0 = 1 - t, s1 = t       (lerp: parallel or
 *                                                  antiparallel vectors)
 *     else:  s0 = sin((1 - t) th) / sin th,  s1 = sin(t th) / sin th
 * and per element m = s0 v0 + s1 v1 (two products and a sum, so that
 * m is exactly 0 where s0 = s1 and v1 = -v0), then
 *     without a base:  theta = m
 *     with a base:     theta = b + lambda m      fma(lambda, m, b); lambda is
 *                                                --lambda or LiNeS's lambda(block)
 * rounded once to the output dtype. A read-only pass measures v0 . v1,
 * |v0|^2 and |v1|^2 of every tensor (tensor_dots.h). Automatic alpha,
 * ||v0 + v1|| / (2 ||m||) over the task vectors, needs a second read-only
 * pass (norms) once the coefficients are known.
 *
 * Without -b, input 0 is the first model read a second time (the layout's
 * reference); this file reads the models as inputs 1 and 2 either way. *
 * --per-row (mergekit's nuslerp_flatten: false): the same per row, in
 * passes of whole rows (pass.rows) that sum each row's dots first; no
 * dots pass.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>

#include "method.h"
#include "tensor_dots.h"

struct nuslerp {
	struct tdots d; /* first: tensor_dots.h */
	double t;
	double acc[4]; /* automatic alpha: |s|, |m|, s^2, m^2 */
};

static const unsigned char nu_pairs[3][2] = {{0, 1}, {0, 0}, {1, 1}};

struct nu_scratch {
	double v[2][KERN_TILE], b[KERN_TILE];
	float f[KERN_TILE], bf[KERN_TILE];
};

/* v[i] = model i, or its task vector when there is a base (tile_tau(): b
 * gets the base's values, bf their float32 values); tmp is room for a
 * model's float32 values. */
static void nu_vectors(const struct merge_ctx *p, const struct tensor *t,
                       const struct pipe_job *job, size_t j0, size_t n, double *const *v,
                       double *b, float *tmp, float *bf)
{
	size_t off = j0 * t->unit_in;
	if (p->no_base) {
		for (unsigned i = 0; i < 2; i++)
			tile_load(p->k, t->in_dt, job->in[i + 1] + off, n, v[i], tmp);
		return;
	}
	tile_load(p->k, t->in_dt, job->in[0] + off, n, b, bf);
	for (unsigned i = 0; i < 2; i++)
		tile_tau(p->k, t->in_dt, job->in[i + 1] + off, n, b, bf, v[i], tmp);
}

/* The pass's vectors: v[0], v[1] as above, v[2] the base's values (room). */
LINES_HOT static void nu_load(const struct merge_ctx *p, const struct tensor *t, const struct pipe_job *job,
                    size_t j0, size_t n, double *const *v, float *tmp)
{
	nu_vectors(p, t, job, j0, n, v, v[2], tmp, tmp + KERN_TILE);
}

/* The coefficients of a tensor from its dots; 1 when it falls back to lerp. */
static int nu_coef(const double *dot, double t, double *s0, double *s1)
{
	double n0 = sqrt(dot[1]), n1 = sqrt(dot[2]);
	double c = dot[0] / ((n0 > 1e-7 ? n0 : 1e-7) * (n1 > 1e-7 ? n1 : 1e-7));
	c = c > 1.0 ? 1.0 : c < -1.0 ? -1.0 : c; /* NaN stays NaN */
	double th = acos(c), st = sin(th);
	if (fabs(st) < 1e-8) {
		*s0 = 1.0 - t, *s1 = t;
		return 1;
	}
	*s0 = sin((1.0 - t) * th) / st;
	*s1 = sin(t * th) / st;
	return 0;
}

/* Elements [j0, j1) of the job (relative to its first) with the
 * coefficients s0, s1 of the tensor or the row. */
static void nu_write(const struct merge_ctx *p, const struct tensor *t, struct pipe_job *job,
                     size_t j0, size_t j1, double s0, double s1, struct nu_scratch *s)
{
	double *v[2] = {s->v[0], s->v[1]};
	for (; j0 < j1; j0 += KERN_TILE) {
		size_t nn = j1 - j0 < KERN_TILE ? j1 - j0 : KERN_TILE;
		nu_vectors(p, t, job, j0, nn, v, s->b, s->f, s->bf);
		for (size_t j = 0; j < nn; j++) {
			double m = s0 * v[0][j] + s1 * v[1][j];
			v[0][j] = !p->no_base ? fma(t->lambda, m, s->b[j]) : m;
		}
		tile_store(p->k, t->out_dt, v[0], nn, job->out + j0 * t->unit_out, s->f);
	}
}

/* mergekit's t = w1 / (w0 + w1) (0.5 when |w0 + w1| < 1e-6) of TENSOR,
 * whose weights may be its own (a configuration's gradients and filters:
 * tensor_w()) */
static double nu_t(const struct merge_ctx *p, size_t tensor)
{
	const double *w = tensor_w(p, &p->t[tensor]);
	double ws = w[0] + w[1];
	return fabs(ws) < 1e-6 ? 0.5 : w[1] / ws;
}

LINES_HOT static int nu_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                   struct lines_error *err)
{
	const struct nuslerp *nu = p->state;
	double s0, s1;
	(void)err;
	nu_coef(tdots_of(&nu->d, job->tensor), nu_t(p, job->tensor), &s0, &s1);
	nu_write(p, &p->t[job->tensor], job, 0, (size_t)(job->u1 - job->u0), s0, s1, scratch);
	return 0;
}

/* ---- the norm pass of automatic alpha ----------------------------------------- */
/*
 * With s = v0 + v1 (the sum of the float32 task vectors) and m the
 * interpolated task vector: |s|, |m|, s^2 and m^2 per KERN_BLOCK block,
 * elements in order, leaving out those where s or m is not finite; the
 * consumer adds the blocks in order.
 */
static void nu_norm_block(const struct merge_ctx *p, const struct tensor *t,
                          const struct pipe_job *job, size_t b0, size_t b1, double s0, double s1,
                          struct nu_scratch *s, double *part)
{
	double *v[2] = {s->v[0], s->v[1]};
	struct norm_lanes l = {0};
	double sv[KERN_TILE], m[KERN_TILE];
	for (size_t j0 = b0; j0 < b1; j0 += KERN_TILE) {
		size_t nn = b1 - j0 < KERN_TILE ? b1 - j0 : KERN_TILE;
		nu_vectors(p, t, job, j0, nn, v, s->b, s->f, s->bf);
		for (size_t j = 0; j < nn; j++)
			sv[j] = v[0][j] + v[1][j], m[j] = s0 * v[0][j] + s1 * v[1][j];
		norm_lanes_add(p->k->wide, &l, sv, m, nn);
	}
	norm_lanes_fold(part, &l);
}

LINES_HOT static int nu_norm_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                        struct lines_error *err)
{
	const struct nuslerp *nu = p->state;
	size_t n = (size_t)(job->u1 - job->u0);
	double s0, s1;
	(void)err;
	nu_coef(tdots_of(&nu->d, job->tensor), nu_t(p, job->tensor), &s0, &s1);
	for (unsigned b = 0; b < job->nblocks; b++) {
		size_t b0 = (size_t)b * KERN_BLOCK, b1 = b0 + KERN_BLOCK < n ? b0 + KERN_BLOCK : n;
		nu_norm_block(p, &p->t[job->tensor], job, b0, b1, s0, s1, scratch, job->part + 4 * b);
	}
	return 0;
}

static int nu_norm_reduce(struct merge_ctx *p, const struct pipe_job *job, struct lines_error *err)
{
	struct nuslerp *nu = p->state;
	(void)err;
	norm_sums_add(nu->acc, job);
	return 0;
}

static int nu_norm_done(struct merge_ctx *p, struct lines_error *err)
{
	const struct nuslerp *nu = p->state;
	return norm_sums_alpha(p, nu->acc, 0, err);
}

static void nu_add_norms(struct merge_ctx *p)
{
	struct pass *ps = passes_add(p->passes);
	ps->name = "norms";
	ps->part_block = 4;
	ps->scratch = sizeof(struct nu_scratch);
	ps->want = want_merged;
	ps->work = nu_norm_work;
	ps->reduce = nu_norm_reduce;
	ps->done = nu_norm_done;
	p->sc->measured = 1;
}

/* ---- --per-row (mergekit's nuslerp_flatten: false) --------------------------- */
/*
 * Passes with rows: every job holds whole rows; work() takes each row's
 * dots (tdots_range, elements in order) and coefficients, then writes
 * the row or (norm pass) adds its norms. Per job, part_job doubles: its
 * rows, those that fell back to lerp, then the four norm sums.
 */
struct nu_row_scratch {
	struct nu_scratch w;
	double tiles[]; /* tdots_scratch(3) */
};

LINES_HOT static int nu_rows(struct merge_ctx *p, struct pipe_job *job, void *scratch, int write)
{
	const struct nuslerp *nu = p->state;
	const struct tensor *t = &p->t[job->tensor];
	struct nu_row_scratch *s = scratch;
	size_t n = (size_t)(job->u1 - job->u0), len = (size_t)tdots_row_len(t);
	double *v[TDOTS_MAX_K], dot[3], s0, s1, nb[4], *part = job->part;
	float *tmp = tdots_tiles(&nu->d, s->tiles, v);
	for (int i = 0; i < 6; i++)
		part[i] = 0.0;
	for (size_t r0 = 0; r0 < n; r0 += len) {
		tdots_range(p, &nu->d, t, job, r0, r0 + len, v, tmp, dot);
		part[1] += nu_coef(dot, nu_t(p, job->tensor), &s0, &s1);
		part[0] += 1.0;
		if (write) {
			nu_write(p, t, job, r0, r0 + len, s0, s1, &s->w);
			continue;
		}
		nu_norm_block(p, t, job, r0, r0 + len, s0, s1, &s->w, nb);
		for (int i = 0; i < 4; i++)
			part[2 + i] += nb[i];
	}
	return 0;
}

LINES_HOT static int nu_rows_write(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                         struct lines_error *err)
{
	(void)err;
	return nu_rows(p, job, scratch, 1);
}

LINES_HOT static int nu_rows_norms(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                         struct lines_error *err)
{
	(void)err;
	return nu_rows(p, job, scratch, 0);
}

/* In output order: each tensor's rows and lerp rows (the table of the
 * dots, which --per-row does not otherwise use), and the norms. */
static int nu_rows_reduce(struct merge_ctx *p, const struct pipe_job *job, struct lines_error *err)
{
	struct nuslerp *nu = p->state;
	double *row = nu->d.dot + job->tensor * nu->d.npairs;
	(void)err;
	row[0] += job->part[0], row[1] += job->part[1];
	for (int i = 0; i < 4; i++)
		nu->acc[i] += job->part[2 + i];
	return 0;
}

/* Each pass counts the rows afresh. */
static int nu_rows_begin(struct merge_ctx *p, struct lines_error *err)
{
	struct nuslerp *nu = p->state;
	(void)err;
	memset(nu->d.dot, 0, p->nt * nu->d.npairs * sizeof(double));
	return 0;
}

static int nu_rows_done(struct merge_ctx *p, struct lines_error *err)
{
	struct nuslerp *nu = p->state;
	(void)err;
	nu->d.measured = 1;
	return 0;
}

static int nu_rows_setup(struct merge_ctx *p, struct lines_error *err)
{
	size_t scratch = sizeof(struct nu_row_scratch) + tdots_scratch(3);
	struct pass *ps;
	if (p->o->lines && p->o->alpha_auto) {
		RETURN_ERROR_IF(p->single_pass, err, LINES_EUSAGE, NULL, NULL,
		                "standard input can be read only once, but automatic alpha of -m "
		                "nuslerp needs a pass before the writing pass: give that model as a "
		                "file, or give --alpha");
		RETURN_ERROR_IF(!(ps = passes_add(p->passes)), err, LINES_EUNSUPPORTED, NULL, NULL,
		                "too many passes");
		ps->name = "norms", ps->rows = 1, ps->part_job = 6, ps->scratch = scratch;
		ps->want = want_merged, ps->work = nu_rows_norms, ps->reduce = nu_rows_reduce;
		ps->begin = nu_rows_begin, ps->done = nu_norm_done;
		p->sc->measured = 1;
	}
	FORWARD_IF_ERROR(tdots_add_write(p, nu_rows_write, scratch, err));
	ps = &p->passes->pass[p->passes->n - 1];
	ps->rows = 1, ps->part_job = 6, ps->reduce = nu_rows_reduce;
	ps->begin = nu_rows_begin, ps->done = nu_rows_done;
	return 0;
}

/* LiNeS and --lambda scale the interpolated task vector: they need a base. */
static int nu_check(const struct lines_merge_opts *o, struct lines_error *err)
{
	RETURN_ERROR_IF(o->nmodels != 2, err, LINES_EUSAGE, NULL, NULL,
	                "-m nuslerp interpolates exactly two models (got %zu)", o->nmodels);
	RETURN_ERROR_IF(!o->base && (o->lines || o->lambda != 1.0), err, LINES_EUSAGE, NULL, NULL,
	                "-m nuslerp --lines and --lambda scale the interpolated task vector: "
	                "give -b BASE");
	return 0;
}

static int nu_setup(struct merge_ctx *p, struct lines_error *err)
{
	struct nuslerp *nu;
	double ws = p->w[0] + p->w[1];
	RETURN_ERROR_IF(!(nu = calloc(1, sizeof(*nu))), err, LINES_ENOMEM, NULL, NULL,
	                "out of memory");
	p->state = nu;
	nu->t = fabs(ws) < 1e-6 ? 0.5 : p->w[1] / ws;
	FORWARD_IF_ERROR(tdots_init(&nu->d, p, 3, nu_pairs, 3, nu_load, err));
	if (p->o->per_row)
		return nu_rows_setup(p, err);
	FORWARD_IF_ERROR(tdots_add_pass(p, "dots", "-m nuslerp", err));
	if (p->o->lines && p->o->alpha_auto)
		nu_add_norms(p);
	return tdots_add_write(p, nu_work, sizeof(struct nu_scratch), err);
}

static json_t *nu_report(const struct merge_ctx *c)
{
	const struct nuslerp *nu = c->state;
	json_t *m = json_object();
	json_object_set_new(m, "t", nu ? json_num(nu->t) : json_null());
	json_object_set_new(m, "flatten", json_boolean(!c->o->per_row));
	json_object_set_new(m, "task_vectors", json_boolean(!c->no_base));
	return m;
}

static void nu_report_tensor(const struct merge_ctx *c, size_t i, json_t *e)
{
	const struct nuslerp *nu = c->state;
	if (c->tensor_w && c->t[i].merge) /* its own t */
		json_object_set_new(e, "t", json_num(nu_t(c, i)));
	if (!nu || !nu->d.measured || !c->t[i].merge)
		return;
	const double *d = tdots_of(&nu->d, i);
	double s0, s1;
	if (c->o->per_row) {
		json_t *o = json_object();
		json_object_set_new(o, "rows", json_integer((json_int_t)d[0]));
		json_object_set_new(o, "lerp_rows", json_integer((json_int_t)d[1]));
		json_object_set_new(e, "nuslerp", o);
		return;
	}
	int lerp = nu_coef(d, nu_t(c, i), &s0, &s1);
	tdots_report_pair(e, "nuslerp", d, lerp, s0, s1);
}

static void nu_meta(const struct merge_ctx *c,
                    void (*put)(void *arg, const char *key, const char *value), void *arg)
{
	const struct nuslerp *nu = c->state;
	char v[64];
	if (!nu)
		return;
	lines_fmt_double(v, sizeof(v), nu->t);
	put(arg, "lines.t", c->tensor_w ? "per tensor (see the manifest)" : v);
}

const struct method method_nuslerp = {
	.name = "nuslerp",
	.summary = "spherical interpolation of two models (of their task vectors with a base)",
	.flags = METHOD_USES_WEIGHTS | METHOD_NO_BASE | METHOD_USES_PER_ROW | METHOD_TENSOR_W,
	.check = nu_check,
	.setup = nu_setup,
	.meta = nu_meta,
	.report = nu_report,
	.report_tensor = nu_report_tensor,
	.free = tdots_method_free,
};
