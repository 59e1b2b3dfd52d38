/*
 * method.h -- a merge method as a plug-in.
 *
 * A method is one file that exports one `const struct method`; methods.c
 * lists them in a table indexed by enum lines_method, and nothing else in
 * liblines names a method. The core calls a method only through the
 * table: check() the options before any input is opened, setup() once the
 * inputs are checked and the layout is known (it adds its passes and
 * makes its state), the pass callbacks while the pipeline runs, meta()
 * and report() to describe what it did, and free().
 *
 * A method sees the run through a struct merge_ctx: the options, the
 * tensors, the kernels and the weights, all read-only. It writes only its
 * own state (ctx->state) and, through scales_from_norms(), alpha. Its
 * results (thresholds, majority sign, ...) stay in its state, and
 * report() hands them to the manifest and the JSON summary.
 *
 * Adding a method: one merge_NAME.c with its `const struct method`, one
 * enum value in lines.h and one row in methods.c, its options in
 * cmd_merge.c, a section of lines-merge(1), and its tests.
 */
#ifndef LINES_METHOD_H
#define LINES_METHOD_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kernels.h"
#include "layout.h"
#include "pipeline.h"
#include "scales.h"
#include "source.h"

/* What a method sees of the run. */
struct merge_ctx {
	const struct lines_merge_opts *o;
	const struct kern *k;
	const struct tensor *t; /* the layout's tensors, output order */
	size_t nt;
	unsigned ninputs, nmodels;
	long L;
	const double *w; /* N weights */
	double wsum;
	int equal_weights;
	/* some tensor has weights of its own (opts.tensor_params): read them
	 * with tensor_w(); equal_weights is then 0 */
	int tensor_w;
	int tensor_density; /* and densities (tensor_density()) */
	int single_pass; /* an input can be read only once (standard input) */
	/* no -b (METHOD_NO_BASE): input 0 is the first model read again */
	int no_base;
	int streams;     /* some input is read in order (standard input, .zst) */
	/* the run's chunk source, while the run lasts: a pass's begin() may
	 * read through a worker of its own (TIES's sample) */
	struct source *src;
	struct scales *sc;     /* alpha: scales_from_norms() only */
	struct passes *passes; /* setup() adds its passes here */
	/* nt x 4 doubles: per tensor, the norm sums of a stats pass
	 * (norm_sums_tensor(), norm_sums_total()) */
	double *tstats;
	/* setup() sets it when every non-finite input value makes its output
	 * element non-finite (as in a linear method): the writing pass then
	 * counts the inputs' non-finite values only in a job whose output
	 * has one */
	int nonfinite_out;
	void *state;           /* the method's own */
};

/* What a method needs besides the models. */
enum {
	METHOD_USES_DENSITY = LINES_MOPT_DENSITY, /* --density */
	METHOD_USES_TRIM = LINES_MOPT_TRIM,       /* --trim */
	METHOD_USES_SEED = LINES_MOPT_SEED,       /* --seed, --dare-elect */
	METHOD_USES_NORMALIZE = LINES_MOPT_NORMALIZE, /* --no-normalize */
	METHOD_USES_T = LINES_MOPT_T,             /* --t */
	METHOD_USES_WEIGHTS = LINES_MOPT_WEIGHTS, /* -w */
	/* the base is optional: without it, input 0 is a second reading of
	 * the first model (the layout's reference), not a base */
	METHOD_NO_BASE = LINES_MOPT_NO_BASE,
	METHOD_ONE_MODEL = LINES_MOPT_ONE_MODEL, /* exactly one model besides the base */
	METHOD_USES_CONSENSUS = LINES_MOPT_CONSENSUS, /* --consensus-k, --tall-lambda */
	METHOD_USES_RESCALE = LINES_MOPT_RESCALE, /* --rescale, --no-rescale */
	METHOD_USES_EPSILON = LINES_MOPT_EPSILON, /* --epsilon */
	METHOD_USES_RAM = LINES_MOPT_RAM,         /* --ram-r, --ram-alpha */
	METHOD_USES_PER_ROW = LINES_MOPT_PER_ROW, /* --per-row */
	METHOD_USES_KARCHER = LINES_MOPT_KARCHER, /* --max-iter, --tol */
	METHOD_USES_BC_GAMMA = LINES_MOPT_BC_GAMMA, /* --bc-gamma */
	METHOD_USES_SELECT_TOPK = LINES_MOPT_SELECT_TOPK, /* --select-topk */
	/* the merged task vector is linear in the inputs: automatic alpha is
	 * known in closed form with equal weights, else from a norm pass */
	METHOD_LINEAR = 1 << 24,
	/* the kernel divides by the sum of the weights (a mean) */
	METHOD_DIVIDES_WSUM = 1 << 25,
	/* takes t per tensor (tensor->t, from opts.tensor_t) */
	METHOD_TENSOR_T = 1 << 26,
	/* runs in parts (--part K/M): every result of its passes is per
	 * tensor, or whole-model sums kept per tensor by a pass marked stats;
	 * a pass of other whole-model results is marked whole_model, and a
	 * plan with one is refused in parts */
	METHOD_PART = 1 << 27,
	/* reads a weight per model per tensor (tensor_w()), from
	 * opts.tensor_params */
	METHOD_TENSOR_W = 1 << 28,
	/* reads a density per model per tensor (tensor_density()); with
	 * METHOD_USES_TRIM only under --trim tensor */
	METHOD_TENSOR_DENSITY = 1 << 29,
};
/* The bits of flags that lines_method_options() hands out. */
#define METHOD_MOPTS                                                                          \
	(LINES_MOPT_DENSITY | LINES_MOPT_TRIM | LINES_MOPT_SEED | LINES_MOPT_NORMALIZE |          \
	 LINES_MOPT_T | LINES_MOPT_WEIGHTS | LINES_MOPT_NO_BASE | LINES_MOPT_ONE_MODEL |         \
	 LINES_MOPT_CONSENSUS | LINES_MOPT_RESCALE | LINES_MOPT_EPSILON | LINES_MOPT_RAM |        \
	 LINES_MOPT_KARCHER | LINES_MOPT_PER_ROW | LINES_MOPT_BC_GAMMA | LINES_MOPT_SELECT_TOPK)

struct method {
	const char *name;
	const char *summary; /* one line, for the plan */
	unsigned flags;
	/* optional: the options this method takes, before anything is opened */
	int (*check)(const struct lines_merge_opts *o, struct lines_error *err);
	/* add the passes and make the state */
	int (*setup)(struct merge_ctx *c, struct lines_error *err);
	/* optional: metadata for the output's header, in order: put(key, value) */
	void (*meta)(const struct merge_ctx *c, void (*put)(void *arg, const char *key,
	                                                    const char *value),
	             void *arg);
	/* optional: the method's parameters and results as a JSON object (the
	 * manifest's run.NAME and the summary's), or NULL for none */
	json_t *(*report)(const struct merge_ctx *c);
	/* optional: what the method adds to a tensor's manifest entry */
	void (*report_tensor)(const struct merge_ctx *c, size_t tensor, json_t *entry);
	/* optional: release the state */
	void (*free)(struct merge_ctx *c);
	/*
	 * optional, for --part (partition.c): what stats pass r (1-based)
	 * measured over tensors [t0, t1), as a JSON object whose members
	 * "rows" (one array per tensor t0..t1-1, concatenated over the
	 * parts), "counts" ([index, n] pairs of integers, added), "totals"
	 * (integers, added) and "records" (an array, concatenated in part
	 * order) lines stats combines; and back from the combined object,
	 * before the pass's done(). Without them a stats pass keeps its norm
	 * sums in c->tstats (norm_sums_tensor()).
	 */
	json_t *(*stats_save)(struct merge_ctx *c, unsigned r, size_t t0, size_t t1);
	int (*stats_load)(struct merge_ctx *c, unsigned r, json_t *res, struct lines_error *err);
};

/* The method for -m (NULL if out of range), and by name. */
const struct method *method_get(enum lines_method m);
const struct method *method_find(const char *name);

/* lines inspect --norms (block_norms.c); the methods are declared where
 * their table is (methods.c). */
extern const struct method method_block_norms;
/* The norms that method_block_norms measured. */
const struct lines_block_norms *block_norms_of(const struct merge_ctx *c);

/* A number for the manifest and the JSON summary; JSON has no infinity or
 * NaN, so those are the strings "inf", "-inf" and "nan". */
static inline json_t *json_num(double v)
{
	if (isfinite(v))
		return json_real(v);
	return json_string(v != v ? "nan" : v > 0 ? "inf" : "-inf");
}

/* A double exactly, as a C99 hex float string (a statistics file's), and
 * back (-1 when v is not one). */
static inline json_t *json_hexf(double v)
{
	char b[48];
	snprintf(b, sizeof(b), "%a", v);
	return json_string(b);
}
static inline int json_unhexf(const json_t *v, double *out)
{
	const char *s = json_string_value(v);
	char *end;
	if (!s)
		return -1;
	*out = strtod(s, &end);
	return *end || end == s ? -1 : 0;
}

/* The density of model i (0-based): its own, or the one for all. */
static inline double density_of(const struct lines_merge_opts *o, unsigned i)
{
	return o->densities ? o->densities[i] : o->density;
}

/* Tensor T's weights (opts.tensor_params, for METHOD_TENSOR_W), else the
 * run's; their sum; its density of model i (METHOD_TENSOR_DENSITY). */
static inline const double *tensor_w(const struct merge_ctx *c, const struct tensor *t)
{
	return t->w ? t->w : c->w;
}
static inline double tensor_wsum(const struct merge_ctx *c, const struct tensor *t)
{
	return t->w ? t->wsum : c->wsum;
}
static inline double tensor_density(const struct merge_ctx *c, const struct tensor *t, unsigned i)
{
	return t->density ? t->density[i] : density_of(c->o, i);
}

/*
 * The divisors of an elected mean (ties_elect()'s c in kern_ties.h):
 * mergekit's sum(w_i m_i) with normalize, which is the count of the
 * agreeing values when every weight is 1 (then NULL: the kernels'
 * count); without normalize, zeros (no division). buf holds nmodels.
 */
static inline const double *elect_divisors(const struct merge_ctx *c, double *buf)
{
	int ones = 1;
	for (unsigned i = 0; i < c->nmodels; i++) {
		buf[i] = c->o->no_normalize ? 0.0 : c->w[i];
		ones &= c->w[i] == 1.0;
	}
	return ones && !c->o->no_normalize ? NULL : buf;
}

/* A tensor's own weights and densities (opts.tensor_params) in its
 * manifest entry and -n --json: "weights" and "densities", one per model. */
static inline void tensor_params_report(const struct merge_ctx *c, size_t i, json_t *e)
{
	const struct tensor *t = &c->t[i];
	for (int k = 0; k < 2; k++) {
		const double *v = k ? t->density : t->w;
		if (!t->merge || !v)
			continue;
		json_t *a = json_array();
		for (unsigned q = 0; q < c->nmodels; q++)
			json_array_append_new(a, json_num(v[q]));
		json_object_set_new(e, k ? "densities" : "weights", a);
	}
}

/* The density in the output's metadata (lines.density): one number, or
 * one per model separated by commas. */
static inline void density_meta(const struct merge_ctx *c,
                                void (*put)(void *arg, const char *key, const char *value),
                                void *arg)
{
	char v[40 * LINES_MAX_MODELS] = "";
	size_t n = 0;
	if (c->tensor_density) {
		put(arg, "lines.density", "per tensor (see the manifest)");
		return;
	}
	for (unsigned i = 0; i < (c->o->densities ? c->nmodels : 1) && n + 40 < sizeof(v); i++) {
		if (i)
			v[n++] = ',';
		lines_fmt_double(v + n, sizeof(v) - n, density_of(c->o, i));
		n += strlen(v + n);
	}
	put(arg, "lines.density", v);
}

/* The density in a method's report: a number, or an array of one per
 * model. */
static inline void density_report(const struct merge_ctx *c, json_t *m)
{
	json_t *a = c->o->densities ? json_array() : NULL;
	for (unsigned i = 0; a && i < c->nmodels; i++)
		json_array_append_new(a, json_real(c->o->densities[i]));
	json_object_set_new(m, "density", a ? a : json_real(c->o->density));
}

/*
 * The norm pass of automatic alpha: per KERN_BLOCK four doubles in
 * job->part, |s|, |t|, s^2 and t^2 of the summed (s) and merged (t) task
 * vectors, added into acc by the consumer in output order (so alpha does
 * not depend on -j or --chunk); then ||s|| and ||t|| in the run's norm.
 * A block's sums are kept in KERN_LANES lanes (struct norm_lanes):
 * element q of the block (counted from its start) goes to lane
 * q % KERN_LANES, so that the loop vectorises, and norm_lanes_fold()
 * adds each sum's lanes in kern_lane_sum()'s order. An element where s
 * or t is NaN or infinite is left out of both norms (it adds +0.0, which
 * changes no sum: they start at +0.0 and only grow).
 */
struct norm_lanes {
	double v[4][KERN_LANES];
};
static inline void norm_lane(struct norm_lanes *l, unsigned k, double s, double t)
{
	int ok = (isfinite(s) != 0) & (isfinite(t) != 0);
	l->v[0][k] += ok ? fabs(s) : 0.0, l->v[1][k] += ok ? fabs(t) : 0.0;
	l->v[2][k] += ok ? s * s : 0.0, l->v[3][k] += ok ? t * t : 0.0;
}
/* Elements of a block s[0..n), t[0..n), the first of them a multiple of
 * KERN_LANES from the block's start (a tile's: KERN_TILE is one). */
#if defined(__GNUC__)
/* norm_lane() on the lanes of GNU C's vectors (kernels.h) of types VD
 * (double), VU and VI (64-bit integers) of one width, the same operations
 * in each: a0..a3 += |s|, |t|, s^2, t^2 where s and t are both finite,
 * +0.0 elsewhere */
#define NORM_LANES(VD, VU, VI, a0, a1, a2, a3, s, t)                                              \
	do {                                                                                      \
		const VU e_ = (VU){0} + 0x7ff0000000000000ull, m_ = (VU){0} + 0x7fffffffffffffffull; \
		const VD s_ = (s), t_ = (t);                                                      \
		VU es_ = (VU)s_ & e_, et_ = (VU)t_ & e_;                                          \
		VI fs_, ft_;                                                                      \
		KV_CMP(fs_, es_, !=, e_);                                                         \
		KV_CMP(ft_, et_, !=, e_);                                                         \
		VU ok_ = (VU)(fs_ & ft_);                                                         \
		(a0) += (VD)((VU)s_ & m_ & ok_);                                                  \
		(a1) += (VD)((VU)t_ & m_ & ok_);                                                  \
		(a2) += (VD)((VU)(s_ * s_) & ok_);                                                \
		(a3) += (VD)((VU)(t_ * t_) & ok_);                                                \
	} while (0)
#define NORM_LANES8(a0, a1, a2, a3, s, t) NORM_LANES(kv8d, kv8u, kv8i, a0, a1, a2, a3, s, t)
/* a0..a3 = lanes [h w, (h + 1) w) of the four sums of l, w the lanes of
 * a0 (eight lanes kept in 8 / w vectors), and back */
#define NORM_LANES_GET(l, h, a0, a1, a2, a3)                                                      \
	do {                                                                                      \
		memcpy(&(a0), (l)->v[0] + (h) * KV_LANES(a0), sizeof(a0));                        \
		memcpy(&(a1), (l)->v[1] + (h) * KV_LANES(a0), sizeof(a0));                        \
		memcpy(&(a2), (l)->v[2] + (h) * KV_LANES(a0), sizeof(a0));                        \
		memcpy(&(a3), (l)->v[3] + (h) * KV_LANES(a0), sizeof(a0));                        \
	} while (0)
#define NORM_LANES_PUT(l, h, a0, a1, a2, a3)                                                      \
	do {                                                                                      \
		memcpy((l)->v[0] + (h) * KV_LANES(a0), &(a0), sizeof(a0));                        \
		memcpy((l)->v[1] + (h) * KV_LANES(a0), &(a1), sizeof(a0));                        \
		memcpy((l)->v[2] + (h) * KV_LANES(a0), &(a2), sizeof(a0));                        \
		memcpy((l)->v[3] + (h) * KV_LANES(a0), &(a3), sizeof(a0));                        \
	} while (0)
#endif
/* wide: struct kern's (eight lanes in one vector, else two of four) */
static inline void norm_lanes_add(int wide, struct norm_lanes *l, const double *s, const double *t,
                                  size_t n)
{
	struct norm_lanes a; /* a local copy, which the compiler keeps in registers */
	size_t j = 0;
	memcpy(&a, l, sizeof(a));
#if defined(__GNUC__)
	if (wide) {
		kv8d a0, a1, a2, a3;
		NORM_LANES_GET(&a, 0, a0, a1, a2, a3);
		for (; j + KERN_LANES <= n; j += KERN_LANES) {
			kv8d sv, tv;
			memcpy(&sv, s + j, sizeof(sv)), memcpy(&tv, t + j, sizeof(tv));
			NORM_LANES8(a0, a1, a2, a3, sv, tv);
		}
		NORM_LANES_PUT(&a, 0, a0, a1, a2, a3);
	} else { /* lanes 0-3 in the b vectors, 4-7 in the c ones */
		kv4d b0, b1, b2, b3, c0, c1, c2, c3;
		NORM_LANES_GET(&a, 0, b0, b1, b2, b3);
		NORM_LANES_GET(&a, 1, c0, c1, c2, c3);
		for (; j + KERN_LANES <= n; j += KERN_LANES) {
			kv4d sv, tv;
			memcpy(&sv, s + j, sizeof(sv)), memcpy(&tv, t + j, sizeof(tv));
			NORM_LANES(kv4d, kv4u, kv4i, b0, b1, b2, b3, sv, tv);
			memcpy(&sv, s + j + 4, sizeof(sv)), memcpy(&tv, t + j + 4, sizeof(tv));
			NORM_LANES(kv4d, kv4u, kv4i, c0, c1, c2, c3, sv, tv);
		}
		NORM_LANES_PUT(&a, 0, b0, b1, b2, b3);
		NORM_LANES_PUT(&a, 1, c0, c1, c2, c3);
	}
#else
	(void)wide;
	for (; j + KERN_LANES <= n; j += KERN_LANES)
		for (unsigned k = 0; k < KERN_LANES; k++)
			norm_lane(&a, k, s[j + k], t[j + k]);
#endif
	for (unsigned k = 0; j < n; j++, k++)
		norm_lane(&a, k, s[j], t[j]);
	memcpy(l, &a, sizeof(a));
}
static inline void norm_lanes_fold(double part[4], const struct norm_lanes *l)
{
	for (int i = 0; i < 4; i++)
		part[i] = kern_lane_sum(l->v[i]);
}
static inline void norm_sums_add(double acc[4], const struct pipe_job *job)
{
	for (unsigned b = 0; b < job->nblocks; b++)
		for (int i = 0; i < 4; i++)
			acc[i] += job->part[4 * b + i];
}
/*
 * The same sums kept per tensor, for a pass marked stats (a partitioned
 * run measures them per part): norm_sums_tensor() adds a job's blocks to
 * its tensor's four sums in c->tstats; norm_sums_total() adds the
 * tensors in output order. The total groups the same way whatever part
 * of the tensors a run measured.
 */
static inline void norm_sums_tensor(struct merge_ctx *c, const struct pipe_job *job)
{
	double *acc = c->tstats + 4 * job->tensor;
	for (unsigned b = 0; b < job->nblocks; b++)
		for (int i = 0; i < 4; i++)
			acc[i] += job->part[4 * b + i];
}
static inline void norm_sums_total(const struct merge_ctx *c, double acc[4])
{
	acc[0] = acc[1] = acc[2] = acc[3] = 0.0;
	for (size_t t = 0; t < c->nt; t++)
		for (int i = 0; i < 4; i++)
			acc[i] += c->tstats[4 * t + i];
}
static inline double norm_sum_of(const double acc[4], int norm_p)
{
	return norm_p == 2 ? sqrt(acc[2]) : acc[0];
}
static inline double norm_mtl_of(const double acc[4], int norm_p)
{
	return norm_p == 2 ? sqrt(acc[3]) : acc[1];
}
/* Automatic alpha from the run's sums acc (scales_from_norms(): zero_ok
 * lets a zero merged vector give alpha 1 with a warning). */
static inline int norm_sums_alpha(struct merge_ctx *c, const double acc[4], int zero_ok,
                                  struct lines_error *err)
{
	return scales_from_norms(c->sc, norm_sum_of(acc, c->o->norm_p), norm_mtl_of(acc, c->o->norm_p),
	                         zero_ok, err);
}

/* -m consensus --consensus-over ties runs TIES's passes (merge_ties.c
 * with o->method LINES_M_CONSENSUS) with the TALL masks on its merged
 * vector; after the writing pass, 1 and the elements the masks kept and
 * dropped, else 0. */
int ties_consensus_counts(const struct merge_ctx *c, uint64_t *kept, uint64_t *dropped);
extern const struct method method_ties;

/* What a pass wants: every tensor, or the merged ones. */
static inline int want_all(const struct merge_ctx *c, size_t tensor)
{
	(void)c, (void)tensor;
	return 1;
}
static inline int want_merged(const struct merge_ctx *c, size_t tensor)
{
	return c->t[tensor].merge;
}

/*
 * Tiles of float64 values, for methods that compute per element in
 * float64 in portable C (linear, nearswap): the same bits on every
 * instruction set, since decode and encode are.
 *
 * tile_load: dst[j] = element j of src (dtype dt): F64 read as it is,
 * any other dtype decoded to float32 through tmp (n floats) and widened;
 * tmp keeps those float32 values.
 */
static inline void tile_load(const struct kern *k, enum dtype dt, const unsigned char *src,
                             size_t n, double *dst, float *tmp)
{
	if (dt == DT_F64) {
		memcpy(dst, src, n * sizeof(double));
		return;
	}
	k->decode(dt, src, tmp, n);
	for (size_t j = 0; j < n; j++)
		dst[j] = tmp[j];
}

/*
 * tile_tau: the task vector of a tile, tau = theta_i - theta_0 rounded to
 * float32 (float64 for F64), as every method takes it: b and bf are the
 * base's values and their float32 values (tile_load(..., b, bf) gives
 * both), tmp is room for the model's. One float32 subtraction: the
 * float64 difference of two float32 values rounded to float32 is the
 * same number.
 */
static inline void tile_tau(const struct kern *k, enum dtype dt, const unsigned char *src,
                            size_t n, const double *b, const float *bf, double *tau, float *tmp)
{
	if (dt == DT_F64) {
		tile_load(k, dt, src, n, tau, tmp);
		for (size_t j = 0; j < n; j++)
			tau[j] -= b[j];
		return;
	}
	k->decode(dt, src, tmp, n);
	for (size_t j = 0; j < n; j++)
		tau[j] = (double)(tmp[j] - bf[j]);
}

/* *dst = x rounded to float32 (nearest even), a NaN as the default quiet
 * NaN 0x7fc00000, as the kernels' finish does (KV_STORE_F32 on a vector) */
static inline void f32_store(float *dst, double x)
{
	uint32_t u = 0x7fc00000u;
	float f = (float)x;
	if (f == f)
		memcpy(&u, &f, 4);
	memcpy(dst, &u, 4);
}

/*
 * tile_store: out = r[0..n) in dtype odt. F64 stores r; any other dtype
 * rounds r to float32 (nearest even), then encodes it. A NaN becomes the
 * default quiet NaN, as the kernels' finish does.
 */
static inline void tile_store(const struct kern *k, enum dtype odt, const double *r, size_t n,
                              unsigned char *out, float *tmp)
{
	size_t j = 0;
	if (odt == DT_F64) {
		for (; j < n; j++) {
			uint64_t u = 0x7ff8000000000000ull;
			if (r[j] == r[j])
				memcpy(&u, &r[j], 8);
			memcpy(out + 8 * j, &u, 8);
		}
		return;
	}
#if defined(__GNUC__)
	if (k->wide) /* the same, eight at a time (struct kern's wide) */
		for (; j + KERN_LANES <= n; j += KERN_LANES) {
			kv8d x;
			memcpy(&x, r + j, sizeof(x));
			KV_STORE_F32(tmp + j, x);
		}
	else /* four at a time (kv_width.h) */
		for (; j + 4 <= n; j += 4) {
			kv4d x;
			memcpy(&x, r + j, sizeof(x));
			KV_STORE_F32(tmp + j, x);
		}
#endif
	for (; j < n; j++)
		f32_store(&tmp[j], r[j]);
	k->encode(odt, tmp, out, n);
}

/*
 * The inputs of the loops that take float32 values (consensus, ram,
 * multislerp, sce) for elements [j0, j0 + n) of a job: raw[0..nm] point at
 * the base's and the models' bytes of element j0, and the kernels decode
 * to float32 the base's values into bf and model i's into ft + i * stride.
 * Returns 1 when the loop decodes the first n rounded down to a multiple
 * of 8 itself (BF16 on a little-endian machine: KV_BF16), which the
 * kernels then leave out; 0 when they decode all n.
 */
static inline int tile_decode_f32(const struct merge_ctx *p, const struct tensor *t,
                                  const struct pipe_job *job, size_t j0, size_t n, unsigned nm,
                                  const unsigned char **raw, float *bf, float *ft, size_t stride)
{
	size_t off = j0 * t->unit_in, d0 = 0;
	for (unsigned i = 0; i <= nm; i++)
		raw[i] = job->in[i] + off;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	if (t->in_dt == DT_BF16)
		d0 = n & ~(size_t)7;
#endif
	if (d0 < n) {
		p->k->decode(t->in_dt, raw[0] + d0 * t->unit_in, bf + d0, n - d0);
		for (unsigned i = 0; i < nm; i++)
			p->k->decode(t->in_dt, raw[i + 1] + d0 * t->unit_in, ft + i * stride + d0,
			             n - d0);
	}
	return d0 > 0;
}

/* The lambda of a job's tensor for the other value v of a sweep, in a
 * writing pass that writes every value itself (pass->sweeps). */
static inline double pipe_job_lambda(const struct pipe_job *job, unsigned v)
{
	return job->var[v].ctx->t[job->tensor].lambda;
}
/* ... and what the kernel multiplies by (tensor.k_lambda) */
static inline double pipe_job_k_lambda(const struct pipe_job *job, unsigned v)
{
	return job->var[v].ctx->t[job->tensor].k_lambda;
}

/* The method's result v moved toward the base b by lambda (LiNeS, or
 * --lambda): b + lambda (v - b); v itself when lambda is 1. */
static inline double toward_base(double v, double b, double lambda)
{
	return lambda == 1.0 ? v : fma(lambda, v - b, b);
}

#endif
