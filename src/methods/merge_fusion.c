/*
 * merge_fusion.c -- mergekit's arcee_fusion: one model fused into its
 * base where the change matters, by a per-tensor outlier rule.
 *
 * For a tensor of base b and model x, tau = x - b (float32, as lines
 * defines task vectors; float64 on the F64 path). Along the last
 * dimension (a row; the whole tensor for rank 0 and 1, as torch's
 * softmax(dim=-1) takes it), in float64:
 *     p = softmax(x_row) + 1e-8,   q = softmax(b_row) + 1e-8,
 *     kl_row = sum_j p_j log(p_j / q_j)          (summed in row order)
 * (softmax as max-subtracted exponentials over their sum), and every
 * element gets the importance
 *     imp = (float)(|tau| kl_row)
 * rounded once to float32: lines defines the importance in float32 (mergekit
 * computes it in its working dtype, bfloat16 in its example), so that the
 * 32-bit radix selection finds its quantiles in two counting passes.
 * The threshold of a tensor of n elements is
 *     thr = Q(1/2) + 1.5 (Q(3/4) - Q(1/4))       (in float64)
 * where Q(q) is the sorted importances' element of 0-based index
 * floor(q (n - 1)) (mergekit's index rule, in exact integers here), and
 * the fused tensor keeps tau where imp >= thr:
 *     theta = fma(lambda, m tau, b),  m = [imp >= thr]
 * (lambda is --lambda or LiNeS's lambda per block), rounded once to the
 * output dtype. A NaN importance (a row holding a NaN or an infinity) is
 * sorted above every number, as torch.sort puts it, and never kept.
 * mergekit sorts a random sample of 10^6 importances of a larger tensor;
 * lines' quantiles are exact for every size.
 *
 * Passes. The quantiles are exact, by radix selection over the bit
 * patterns of the importances mapped to keys that order as the values
 * (negatives, which rounding can give a KL, below +0; -0 counts as +0; a
 * NaN as the quiet NaN, above infinity): `select` counts the keys' high
 * 16 bits per tensor, which fixes the bin and the rank in it of each of
 * the three quantiles; `threshold` counts the low 16 bits of the keys
 * in those bins, which gives the exact values. With automatic alpha a
 * read-only `norms` pass measures ||tau|| and ||m tau|| (N = 1). Then
 * the writing pass. Jobs hold whole slabs (pass.rows: pipe_slab(), every
 * row of the last dimension lies in one), so a worker's scratch holds the
 * longest slab (-n's bound counts it), and the jobs and the order of
 * every sum do not depend on -j or --chunk. The KL of a row costs two
 * exponentials and a logarithm an element, several times the rest of a
 * pass: the select pass keeps the rows' KL in a table for the later
 * passes, for the tensors, in order, whose rows fit in KL_ROWS (one
 * double a row, a constant bound); the later passes compute the others'
 * again from the bytes they read, the same doubles.
 * The arithmetic is portable C in float64: the same bytes under every
 * LINES_ISA.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "f64.h"
#include "method.h"

#define BINS       65536u
#define NQ         3    /* the quantiles 1/4, 1/2, 3/4 */
#define FUSION_EPS 1e-8 /* mergekit's eps, added to both softmaxes */
#define NO_KL      UINT64_MAX
/* The rows whose KL the select pass keeps for the later passes, at most
 * (16 MiB of doubles: every row of a 7B model of width 4096). */
#define KL_ROWS ((uint64_t)1 << 21)

/* Where a quantile is: its key's high 16 bits, its 1-based rank among
 * the keys of that bin, and the key itself once known. */
struct fq {
	uint32_t bin;
	uint64_t rank;
	uint32_t key;
};

struct fusion {
	uint64_t *run;       /* NQ x BINS counts of the tensor being reduced */
	struct fq *q;        /* nt x NQ */
	double *thr;         /* nt: the threshold (NaN: nothing kept) */
	uint64_t *kept;      /* nt: what the writing pass kept */
	unsigned char *done; /* nt: the quantiles are known */
	uint64_t slab;       /* the longest slab of a merged tensor */
	double *kl;          /* the rows' KL that the select pass keeps */
	uint64_t *kl_at;     /* nt: a tensor's first row in kl, or NO_KL */
	int kl_kept;         /* the select pass is done: kl holds its rows */
	double acc[4];       /* the norms pass: |tau|, |m tau|, tau^2, (m tau)^2 */
	uint64_t nkept, elements;
};

static struct fusion *F(const struct merge_ctx *p)
{
	return p->state;
}

/* ---- importance ------------------------------------------------------------------ */

/* A key ordered as the float32 values: NaN canonical (above +inf), -0 as +0. */
static inline uint32_t imp_key(float f)
{
	uint32_t u;
	if (f != f)
		f = NAN;
	f += 0.0f; /* -0 + 0 = +0 */
	memcpy(&u, &f, 4);
	if (f != f)
		u = 0x7fc00000u;
	return u & 0x80000000u ? ~u : u | 0x80000000u;
}

static inline float key_value(uint32_t k)
{
	uint32_t u = k & 0x80000000u ? k & 0x7fffffffu : ~k;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

/* The scratch of a worker for slabs of s elements. */
struct rows {
	double *b, *x, *tau, *e1, *e2, *r;
	float *tmp;
	float *imp;
};

static size_t scratch_bytes(uint64_t s)
{
	return (size_t)s * (6 * sizeof(double) + 2 * sizeof(float)) + 64;
}

static struct rows rows_of(void *scratch, uint64_t s)
{
	struct rows w;
	w.b = scratch;
	w.x = w.b + s;
	w.tau = w.x + s;
	w.e1 = w.tau + s;
	w.e2 = w.e1 + s;
	w.r = w.e2 + s;
	w.tmp = (float *)(void *)(w.r + s);
	w.imp = w.tmp + s;
	return w;
}

/* The sum of exp(v_j - max v) over a row into e (e_j the terms). */
static double softmax_terms(const double *v, uint64_t r, double *e)
{
	double mx = -INFINITY, sum = 0.0;
	for (uint64_t j = 0; j < r; j++) /* a NaN is skipped here, and makes the sum NaN */
		if (v[j] > mx)
			mx = v[j];
	for (uint64_t j = 0; j < r; j++) {
		e[j] = exp(v[j] - mx);
		sum += e[j];
	}
	return sum;
}

/* KL(p || q) of a row of r elements: p from x, q from b. */
static double row_kl(const double *x, const double *b, uint64_t r, double *e1, double *e2)
{
	double s1 = softmax_terms(x, r, e1), s2 = softmax_terms(b, r, e2), kl = 0.0;
	for (uint64_t j = 0; j < r; j++) {
		double p = e1[j] / s1 + FUSION_EPS, q = e2[j] / s2 + FUSION_EPS;
		kl += p * log(p / q);
	}
	return kl;
}

/*
 * Load slab [a, a + s) of a job: the base, the model, tau and the
 * importance of every element (w->b, w->x, w->tau, w->imp). The rows' KL
 * come from the table when the select pass has kept them; that pass
 * stores them there (each job its own rows).
 */
static void load_slab(const struct merge_ctx *p, const struct pipe_job *job, uint64_t a, uint64_t s,
                      struct rows *w)
{
	const struct fusion *fu = F(p);
	const struct tensor *t = &p->t[job->tensor];
	uint64_t at = fu->kl_at[job->tensor];
	size_t off = (size_t)(a - job->u0);
	uint64_t r = t->rank < 2 ? s : t->shape[t->rank - 1];
	int f64 = f64_tensor(t);
	tile_load(p->k, t->in_dt, job->in[0] + off * t->unit_in, s, w->b, w->tmp);
	tile_load(p->k, t->in_dt, job->in[1] + off * t->unit_in, s, w->x, w->tmp);
	for (uint64_t j = 0; j < s; j++)
		w->tau[j] = f64 ? w->x[j] - w->b[j] : (double)((float)w->x[j] - (float)w->b[j]);
	if (r == 0)
		return;
	for (uint64_t j0 = 0; j0 < s; j0 += r) {
		double *kept = at == NO_KL ? NULL : fu->kl + at + (a + j0) / r, kl;
		if (kept && fu->kl_kept) {
			kl = *kept;
		} else {
			kl = row_kl(w->x + j0, w->b + j0, r, w->e1, w->e2);
			if (kept)
				*kept = kl;
		}
		for (uint64_t j = j0; j < j0 + r; j++)
			w->imp[j] = (float)(fabs(w->tau[j]) * kl);
	}
}

/* ---- select and threshold -------------------------------------------------------- */

/* The 0-based index of quantile i (1/4, 1/2, 3/4) among n values. */
static uint64_t q_index(uint64_t n, int i)
{
	uint64_t m = n - 1; /* below 2^62: 3 m does not overflow */
	return i == 0 ? m / 4 : i == 1 ? m / 2 : 3 * m / 4;
}

LINES_HOT static int select_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                                 struct lines_error *err)
{
	uint64_t s = pipe_slab(&p->t[job->tensor]);
	struct rows w = rows_of(scratch, F(p)->slab);
	uint32_t *h = (uint32_t *)(void *)job->part;
	(void)err;
	memset(h, 0, BINS * sizeof(*h));
	for (uint64_t a = job->u0; a < job->u1; a += s) {
		load_slab(p, job, a, s, &w);
		for (uint64_t j = 0; j < s; j++)
			h[imp_key(w.imp[j]) >> 16]++;
	}
	return 0;
}

static int select_reduce(struct merge_ctx *p, const struct pipe_job *job, struct lines_error *err)
{
	struct fusion *fu = F(p);
	const uint32_t *h = (const uint32_t *)(const void *)job->part;
	uint64_t n = p->t[job->tensor].units;
	(void)err;
	for (uint32_t b = 0; b < BINS; b++)
		fu->run[b] += h[b];
	if (job->u1 != n)
		return 0;
	for (int i = 0; i < NQ; i++) {
		struct fq *q = fu->q + job->tensor * NQ + i;
		uint64_t k = q_index(n, i) + 1, cum = 0;
		for (uint32_t b = 0; b < BINS; b++) {
			if (cum + fu->run[b] >= k) {
				q->bin = b, q->rank = k - cum;
				break;
			}
			cum += fu->run[b];
		}
	}
	memset(fu->run, 0, BINS * sizeof(*fu->run));
	return 0;
}

static int select_done(struct merge_ctx *p, struct lines_error *err)
{
	(void)err;
	F(p)->kl_kept = 1;
	return 0;
}

/* The low 16 bits of the keys in each quantile's bin. */
LINES_HOT static int threshold_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                                    struct lines_error *err)
{
	const struct fq *q = F(p)->q + job->tensor * NQ;
	uint64_t s = pipe_slab(&p->t[job->tensor]);
	struct rows w = rows_of(scratch, F(p)->slab);
	uint32_t *h = (uint32_t *)(void *)job->part;
	(void)err;
	memset(h, 0, NQ * BINS * sizeof(*h));
	for (uint64_t a = job->u0; a < job->u1; a += s) {
		load_slab(p, job, a, s, &w);
		for (uint64_t j = 0; j < s; j++) {
			uint32_t k = imp_key(w.imp[j]);
			for (int i = 0; i < NQ; i++)
				h[(size_t)i * BINS + (k & 0xffff)] += k >> 16 == q[i].bin;
		}
	}
	return 0;
}

static int threshold_reduce(struct merge_ctx *p, const struct pipe_job *job,
                            struct lines_error *err)
{
	struct fusion *fu = F(p);
	const uint32_t *h = (const uint32_t *)(const void *)job->part;
	size_t e = job->tensor;
	(void)err;
	for (size_t b = 0; b < NQ * BINS; b++)
		fu->run[b] += h[b];
	if (job->u1 != p->t[e].units)
		return 0;
	double v[NQ];
	for (int i = 0; i < NQ; i++) {
		struct fq *q = fu->q + e * NQ + i;
		const uint64_t *c = fu->run + (size_t)i * BINS;
		uint64_t cum = 0;
		for (uint32_t l = 0; l < BINS; l++) {
			if (cum + c[l] >= q->rank) {
				q->key = q->bin << 16 | l;
				break;
			}
			cum += c[l];
		}
		v[i] = key_value(q->key);
	}
	fu->thr[e] = v[1] + 1.5 * (v[2] - v[0]);
	fu->done[e] = 1;
	memset(fu->run, 0, NQ * BINS * sizeof(*fu->run));
	return 0;
}

/* ---- norms and the output -------------------------------------------------------- */

/* The kept task vector of a slab into w->r (m tau); returns the count kept. */
static uint64_t mask_slab(const struct fusion *fu, size_t e, uint64_t s, struct rows *w)
{
	double thr = fu->thr[e];
	uint64_t kept = 0;
	for (uint64_t j = 0; j < s; j++) {
		int keep = (double)w->imp[j] >= thr;
		w->r[j] = keep ? w->tau[j] : 0.0;
		kept += (uint64_t)keep;
	}
	return kept;
}

LINES_HOT static int norms_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                                struct lines_error *err)
{
	const struct fusion *fu = F(p);
	uint64_t s = pipe_slab(&p->t[job->tensor]);
	struct rows w = rows_of(scratch, fu->slab);
	struct norm_lanes l = {0}; /* each slab from lane 0 */
	(void)err;
	for (uint64_t a = job->u0; a < job->u1; a += s) {
		load_slab(p, job, a, s, &w);
		mask_slab(fu, job->tensor, s, &w);
		norm_lanes_add(p->k->wide, &l, w.tau, w.r, s);
	}
	norm_lanes_fold(job->part, &l);
	return 0;
}

static int norms_reduce(struct merge_ctx *p, const struct pipe_job *job, struct lines_error *err)
{
	(void)err;
	for (int i = 0; i < 4; i++)
		F(p)->acc[i] += job->part[i];
	return 0;
}

static int norms_done(struct merge_ctx *p, struct lines_error *err)
{
	return norm_sums_alpha(p, F(p)->acc, 1, err);
}

LINES_HOT static int write_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                                struct lines_error *err)
{
	const struct fusion *fu = F(p);
	const struct tensor *t = &p->t[job->tensor];
	uint64_t s = pipe_slab(t), kept = 0;
	struct rows w = rows_of(scratch, fu->slab);
	(void)err;
	for (uint64_t a = job->u0; a < job->u1; a += s) {
		size_t off = (size_t)(a - job->u0);
		load_slab(p, job, a, s, &w);
		kept += mask_slab(fu, job->tensor, s, &w);
		for (uint64_t j = 0; j < s; j++)
			w.r[j] = fma(t->lambda, w.r[j], w.b[j]);
		tile_store(p->k, t->out_dt, w.r, s, job->out + off * t->unit_out, w.tmp);
	}
	job->part[0] = (double)kept;
	return 0;
}

static int write_reduce(struct merge_ctx *p, const struct pipe_job *job, struct lines_error *err)
{
	struct fusion *fu = F(p);
	(void)err;
	if (!p->t[job->tensor].merge)
		return 0;
	fu->kept[job->tensor] += (uint64_t)job->part[0];
	fu->nkept += (uint64_t)job->part[0];
	fu->elements += job->u1 - job->u0;
	return 0;
}

/* ---- setup ------------------------------------------------------------------------- */

static struct pass *add_pass(struct merge_ctx *p, const char *name, int writes,
                             int (*work)(struct merge_ctx *, struct pipe_job *, void *,
                                         struct lines_error *),
                             unsigned part)
{
	struct pass *a = passes_add(p->passes);
	if (!a)
		return NULL;
	a->name = name;
	a->writes = writes;
	a->rows = 1;
	a->scratch = scratch_bytes(F(p)->slab);
	a->part_job = part;
	a->want = writes ? want_all : want_merged;
	a->work = work;
	return a;
}

static int fusion_setup(struct merge_ctx *p, struct lines_error *err)
{
	struct fusion *fu = calloc(1, sizeof(*fu));
	size_t nt = p->nt ? p->nt : 1;
	struct pass *a, *b, *c = NULL, *d;

	p->state = fu;
	RETURN_ERROR_IF(!fu, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	RETURN_ERROR_IF(p->nmodels != 1, err, LINES_EUSAGE, NULL, NULL,
	                "-m arcee_fusion merges exactly one model into the base (got %u)",
	                p->nmodels);
	RETURN_ERROR_IF(p->single_pass, err, LINES_EUSAGE, NULL, NULL,
	                "standard input can be read only once, and -m arcee_fusion reads its "
	                "inputs three or four times: give that model as a file");
	fu->slab = 1;
	for (size_t t = 0; t < p->nt; t++) {
		uint64_t s = pipe_slab(&p->t[t]);
		RETURN_ERROR_IF(p->t[t].merge && s >= UINT32_MAX, err, LINES_EUNSUPPORTED, NULL,
		                p->t[t].name,
		                "a slab of 2^32 - 1 elements or more (a job's counts are 32-bit)");
		if (p->t[t].merge && s > fu->slab)
			fu->slab = s;
	}
	/* the rows' KL of the tensors, in order, while KL_ROWS (or the test's
	 * LINES_TEST_FUSION_KL_ROWS) suffice; the others' are computed again */
	uint64_t budget = KL_ROWS, nrows = 0;
	const char *test = getenv("LINES_TEST_FUSION_KL_ROWS");
	if (test)
		budget = strtoull(test, NULL, 10);
	fu->kl_at = malloc(nt * sizeof(*fu->kl_at));
	RETURN_ERROR_IF(!fu->kl_at, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	for (size_t t = 0; t < nt; t++) {
		const struct tensor *te = &p->t[t];
		uint64_t r = te->rank < 2 ? pipe_slab(te) : te->shape[te->rank - 1];
		uint64_t rows = t < p->nt && te->merge && r ? te->units / r : 0;
		fu->kl_at[t] = NO_KL;
		if (rows && nrows + rows <= budget)
			fu->kl_at[t] = nrows, nrows += rows;
	}
	fu->kl = calloc(nrows ? nrows : 1, sizeof(*fu->kl));
	fu->run = calloc((size_t)NQ * BINS, sizeof(*fu->run));
	fu->q = calloc(nt * NQ, sizeof(*fu->q));
	fu->thr = calloc(nt, sizeof(*fu->thr));
	fu->kept = calloc(nt, sizeof(*fu->kept));
	fu->done = calloc(nt, 1);
	RETURN_ERROR_IF(!fu->kl || !fu->run || !fu->q || !fu->thr || !fu->kept || !fu->done, err,
	                LINES_ENOMEM, NULL, NULL, "out of memory for -m arcee_fusion");
	/* resident now, so that the plan's measure of its heap has them */
	for (size_t q = 0; q < (size_t)NQ * BINS * sizeof(*fu->run); q += 4096)
		((volatile unsigned char *)fu->run)[q] = 0;
	for (size_t q = 0; q < nrows * sizeof(*fu->kl); q += 4096)
		((volatile unsigned char *)fu->kl)[q] = 0;

	a = add_pass(p, "select", 0, select_work, BINS / 2); /* BINS uint32 */
	b = add_pass(p, "threshold", 0, threshold_work, NQ * BINS / 2);
	RETURN_ERROR_IF(!a || !b, err, LINES_EUSAGE, NULL, NULL, "too many passes");
	a->reduce = select_reduce;
	a->done = select_done;
	b->reduce = threshold_reduce;
	if (p->o->lines && p->o->alpha_auto) {
		c = add_pass(p, "norms", 0, norms_work, 4);
		RETURN_ERROR_IF(!c, err, LINES_EUSAGE, NULL, NULL, "too many passes");
		c->reduce = norms_reduce;
		c->done = norms_done;
		p->sc->measured = 1;
	}
	d = add_pass(p, "write", 1, write_work, 1);
	RETURN_ERROR_IF(!d, err, LINES_EUSAGE, NULL, NULL, "too many passes");
	d->reduce = write_reduce;
	return 0;
}

static void fusion_free(struct merge_ctx *p)
{
	struct fusion *fu = p->state;
	if (fu) {
		free(fu->run), free(fu->q), free(fu->thr), free(fu->kept);
		free(fu->kl), free(fu->kl_at);
		free(fu->done);
	}
	free(fu);
	p->state = NULL;
}

/* {"eps", "kept", "elements", "longest_slab"} */
static json_t *fusion_report(const struct merge_ctx *p)
{
	const struct fusion *fu = p->state;
	json_t *m = json_object();
	if (!m)
		return NULL;
	json_object_set_new(m, "eps", json_real(FUSION_EPS));
	json_object_set_new(m, "kept", json_integer(fu ? (json_int_t)fu->nkept : 0));
	json_object_set_new(m, "elements", json_integer(fu ? (json_int_t)fu->elements : 0));
	json_object_set_new(m, "longest_slab", json_integer(fu ? (json_int_t)fu->slab : 0));
	/* the rows whose KL the select pass kept for the later passes */
	uint64_t kr = 0;
	for (size_t t = 0; fu && t < p->nt; t++)
		if (fu->kl_at[t] != NO_KL)
			kr += p->t[t].units / (p->t[t].rank < 2 ? pipe_slab(&p->t[t])
			                                        : p->t[t].shape[p->t[t].rank - 1]);
	json_object_set_new(m, "kl_rows_kept", json_integer((json_int_t)kr));
	return m;
}

/* "arcee_fusion": {"q1", "median", "q3", "threshold", "kept"}: the
 * importance quantiles, the threshold, the elements kept */
static void fusion_report_tensor(const struct merge_ctx *p, size_t e, json_t *entry)
{
	const struct fusion *fu = p->state;
	if (!fu || !p->t[e].merge || !fu->done[e])
		return;
	json_t *r = json_object();
	json_object_set_new(r, "q1", json_num(key_value(fu->q[e * NQ].key)));
	json_object_set_new(r, "median", json_num(key_value(fu->q[e * NQ + 1].key)));
	json_object_set_new(r, "q3", json_num(key_value(fu->q[e * NQ + 2].key)));
	json_object_set_new(r, "threshold", json_num(fu->thr[e]));
	json_object_set_new(r, "kept", json_integer((json_int_t)fu->kept[e]));
	json_object_set_new(entry, "arcee_fusion", r);
}

const struct method method_arcee_fusion = {
	.name = "arcee_fusion",
	.summary = "Arcee Fusion: the model's changes whose importance (|tau| times the row's "
	           "softmax KL) is an outlier of the tensor",
	.flags = METHOD_ONE_MODEL,
	.setup = fusion_setup,
	.report = fusion_report,
	.report_tensor = fusion_report_tensor,
	.free = fusion_free,
};
