/*
 * pipeline.c -- chunk scheduling: readers, compute workers, one ordered
 * consumer.
 *
 * The protocol, once. Jobs are numbered 0, 1, 2, ... in output order; a
 * job is a range of units of one tensor, and job k lives in slot k % nslots
 * of a ring. Jobs are handed out by one iterator that only moves forward,
 * under the lock, and only while k < consumed + nslots: that bound is the
 * back-pressure. A worker that is a whole ring ahead of the consumer waits
 * on `space`, so memory never grows with the model.
 *
 * A worker claims job k and starts its reads (the chunk source maps or
 * submits them), then tries, without waiting, to claim job k+1 and start
 * its reads as well, and only then computes job k: the I/O of one job
 * overlaps the arithmetic of the one before. It never waits for anything
 * while it holds an unstarted job, so the consumer can always make
 * progress. When a job is computed the worker marks its slot DONE and
 * signals `done`.
 *
 * The thread that called pipe_run() is the consumer. It waits for the slot
 * of job `consumed` to be DONE, reduces the job's partial results into
 * the plan and writes its output bytes to the sink, then frees the slot
 * and signals `space`. Because it takes jobs strictly in order, the output
 * bytes and every floating-point sum are the same for any number of
 * workers, any chunk size and any timing.
 *
 * An error in a worker, an error in the consumer, or lines_cancel() sets
 * `abort`: workers stop claiming and exit after the job in hand, the
 * consumer stops at once and joins them. The first error is the one
 * reported.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "kern_ties.h"
#include "kernels.h"
#include "fp8.h"
#include "ggml_quants.h"
#include "pipeline.h"

#define PIPE_DEPTH 2 /* jobs a worker has started at once */

enum { SLOT_FREE, SLOT_BUSY, SLOT_DONE, SLOT_FAILED };

struct slot {
	int state;
	struct pipe_job job;
	uint64_t *nonfinite;    /* ninputs, writing passes with stats */
	uint64_t overflow;      /* and the outputs' (overflow()) */
	unsigned char *differs; /* ninputs */
	unsigned char **vout;   /* a sweep's writing pass: each variant's output */
};

struct pipe {
	const struct pipe_env *env;
	struct pass *pass;
	struct source *src;

	pthread_mutex_t mu;
	pthread_cond_t space, done, moved;
	struct slot *slots;
	unsigned nslots;
	uint64_t njobs, next, consumed;
	/* a sweep's writing pass: a writer thread per other value writes job
	 * k to its sink once the consumer has taken it (main_done > k), so
	 * the outputs are written side by side; consumed is then the least
	 * of main_done and every writer's count, and a slot is reused only
	 * when all have passed it */
	uint64_t main_done;
	uint64_t *wdone; /* nvariants */
	size_t it_tensor; /* the job iterator: next tensor and unit */
	uint64_t it_unit;
	int abort;
	int failed;
	struct lines_error err;

	size_t out_cap;  /* bytes of output per slot */
	size_t part_cap; /* doubles of partial results per slot */
	size_t span_cap; /* bytes per input span */
	size_t widen_cap; /* bytes of F32 per input of a mixed-dtype job */
	size_t scale_cap; /* floats of FP8 scales a job needs */
	size_t wide_cap;  /* bytes of F32 output of a job that is encoded in float8 */
};

struct pass *passes_add(struct passes *ps)
{
	struct pass *a;
	if (ps->n >= PIPE_MAX_PASSES)
		return NULL;
	a = &ps->pass[ps->n++];
	memset(a, 0, sizeof(*a));
	return a;
}

struct pass *passes_insert(struct passes *ps, unsigned i)
{
	if (ps->n >= PIPE_MAX_PASSES || i > ps->n)
		return NULL;
	memmove(&ps->pass[i + 1], &ps->pass[i], (ps->n - i) * sizeof(ps->pass[0]));
	ps->n++;
	memset(&ps->pass[i], 0, sizeof(ps->pass[0]));
	return &ps->pass[i];
}

struct pass *passes_add_first(struct passes *ps) { return passes_insert(ps, 0); }

uint64_t pipe_slab(const struct tensor *t)
{
	if (t->rank < 2 || t->shape[0] == 0)
		return t->nelem ? t->nelem : 1;
	return t->nelem / t->shape[0] ? t->nelem / t->shape[0] : 1;
}

uint64_t pipe_step(const struct pipe_env *env, const struct pass *pass, const struct tensor *t)
{
	uint64_t step = env->chunk / t->unit_in;
	if (t->merge && pass && pass->rows) {
		uint64_t s = pipe_slab(t);
		step = PIPE_ROW_UNITS / s ? PIPE_ROW_UNITS / s * s : s;
	} else if (t->merge) {
		step -= step % KERN_BLOCK;
		if (step < KERN_BLOCK)
			step = KERN_BLOCK;
	} else if (step == 0) {
		step = 1;
	}
	return step;
}

/* Bytes of n units of a tensor over every input (their dtypes may differ;
 * n whole blocks of a block type). */
static uint64_t in_bytes_sum(const struct layout *lay, const struct tensor *t, uint64_t n)
{
	uint64_t s = 0;
	for (unsigned m = 0; m < lay->ninputs; m++)
		s += src_bytes(&t->in[m], n);
	return s;
}

/* The most bytes n units of a tensor take in any input. */
static uint64_t in_bytes_max(const struct layout *lay, const struct tensor *t, uint64_t n)
{
	uint64_t u = 0;
	for (unsigned m = 0; m < lay->ninputs; m++)
		u = src_bytes(&t->in[m], n) > u ? src_bytes(&t->in[m], n) : u;
	return u;
}

static void caps(const struct pipe_env *env, const struct pass *pass, size_t *out_cap,
                 size_t *part_cap, size_t *span_cap, size_t *widen_cap)
{
	const struct layout *lay = env->lay;
	uint64_t oc = 0, pc = 0, sc = 0, wc = 0;
	for (size_t i = 0; i < lay->nt; i++) {
		const struct tensor *t = &lay->t[i];
		if (pass && !pass_wants(pass, env, i))
			continue;
		uint64_t step = pipe_step(env, pass, t);
		if (step > t->units)
			step = t->units;
		if (step * t->unit_out > oc)
			oc = step * t->unit_out;
		if (in_bytes_max(lay, t, step) > sc)
			sc = in_bytes_max(lay, t, step);
		if (t->mixed && step * sizeof(float) > wc)
			wc = step * sizeof(float);
		uint64_t blocks = (step + KERN_BLOCK - 1) / KERN_BLOCK;
		if (blocks > pc)
			pc = blocks;
	}
	*out_cap = (size_t)oc;
	*span_cap = (size_t)sc;
	*widen_cap = (size_t)wc;
	*part_cap = pass ? pass->part_job + pass->part_block * (size_t)pc : 4 * (size_t)pc + 64;
	for (size_t i = 0; pass && pass->measure && i < lay->nt; i++) /* the blocks' maxima */
		if (lay->t[i].rq && pass_wants(pass, env, i)) {
			size_t b = fp8_out_blocks(lay->t[i].rq, pipe_step(env, pass, &lay->t[i]));
			if (pass->part_job + pass->part_block * (size_t)pc + b > *part_cap)
				*part_cap = pass->part_job + pass->part_block * (size_t)pc + b;
		}
	if (pass && (pass->checks_copies || (pass->writes && env->check_in_write)) &&
	    *part_cap < lay->nmodels)
		*part_cap = lay->nmodels; /* the copied tensors' flags */
}

/* Floats of FP8 scales a job of this pass needs at most, and of its
 * float8 output before it is encoded (fp8.c). */
static size_t fp8_caps(const struct pipe_env *env, const struct pass *pass, size_t *wide)
{
	size_t cap = 0;
	*wide = 0;
	for (size_t i = 0; i < env->lay->nt; i++) {
		const struct tensor *t = &env->lay->t[i];
		if ((!t->mixed && !t->rq && !t->qdt) || (pass && !pass_wants(pass, env, i)))
			continue;
		uint64_t step = pipe_step(env, pass, t);
		for (unsigned m = 0; m < env->lay->ninputs; m++) {
			size_t f = t->in[m].q ? fp8_scale_floats(t->in[m].q, step) : 0;
			cap = f > cap ? f : cap;
		}
		if ((t->rq || t->qdt) && step * sizeof(float) > *wide)
			*wide = (size_t)step * sizeof(float);
	}
	return cap;
}

/* Zeros after a tensor of bytes bytes, to the next multiple of align (GGUF). */
static int write_padding(struct sink *out, uint64_t bytes, uint64_t align, struct lines_error *err)
{
	static const unsigned char zeros[256];
	uint64_t pad = (align - bytes % align) % align;
	while (pad) {
		size_t k = pad < sizeof(zeros) ? (size_t)pad : sizeof(zeros);
		FORWARD_IF_ERROR(sink_write(out, zeros, k, err));
		pad -= k;
	}
	return 0;
}

static unsigned nslots_for(unsigned jobs) { return 2 * jobs + 2; }

uint64_t pipe_memory(const struct pipe_env *env, const struct passes *ps,
                     const struct src_ops *src)
{
	const unsigned nin = env->lay->ninputs, jobs = env->jobs;
	uint64_t total = 0;
	for (unsigned i = 0; i < ps->n; i++) {
		size_t oc, pc, sc, wc;
		const struct pass *pass = &ps->pass[i];
		caps(env, pass, &oc, &pc, &sc, &wc);
		size_t wide, fc = fp8_caps(env, pass, &wide);
		/* a sweep's writing pass: one output buffer per value */
		uint64_t nout = pass->writes ? 1 + (uint64_t)env->nvariants : 0;
		uint64_t m = (uint64_t)nslots_for(jobs) * nout * oc +
		             (uint64_t)nslots_for(jobs) * pc * sizeof(double) +
		             (uint64_t)jobs * (pass->scratch + (uint64_t)nin * wc + fc * sizeof(float) + wide +
		                               (env->streams ? src_stream_worker_bytes(src, nin, sc, PIPE_DEPTH)
		                                             : src->worker_bytes(nin, sc, PIPE_DEPTH)));
		if (m > total)
			total = m;
	}
	return total;
}

/* ---- the job iterator (called with the lock held) -------------------------- */
static int next_tensor(struct pipe *pp)
{
	while (pp->it_tensor < pp->env->lay->nt) {
		const struct tensor *t = &pp->env->lay->t[pp->it_tensor];
		if (pp->it_unit < t->units && pass_wants(pp->pass, pp->env, pp->it_tensor))
			return 1;
		pp->it_tensor++;
		pp->it_unit = 0;
	}
	return 0;
}

static uint64_t count_jobs(const struct pipe_env *env, const struct pass *pass, uint64_t *bytes)
{
	const struct layout *lay = env->lay;
	uint64_t n = 0;
	*bytes = 0;
	for (size_t i = 0; i < lay->nt; i++) {
		const struct tensor *t = &lay->t[i];
		if (!t->units || !pass_wants(pass, env, i))
			continue;
		uint64_t step = pipe_step(env, pass, t);
		n += (t->units + step - 1) / step;
		*bytes += in_bytes_sum(lay, t, t->units);
	}
	return n;
}

uint64_t pipe_read_bytes(const struct pipe_env *env, const struct pass *pass)
{
	uint64_t bytes;
	count_jobs(env, pass, &bytes);
	return bytes;
}

static int64_t claim(struct pipe *pp, int wait)
{
	uint64_t k;
	struct slot *s;
	const struct tensor *t;
	uint64_t step;

	for (;;) {
		if (pp->abort || pp->next >= pp->njobs)
			return -1;
		if (pp->next < pp->consumed + pp->nslots)
			break;
		if (!wait)
			return -1;
		pthread_cond_wait(&pp->space, &pp->mu);
	}
	if (!next_tensor(pp))
		return -1; /* cannot happen: njobs counted the same tensors */
	k = pp->next++;
	s = &pp->slots[k % pp->nslots];
	t = &pp->env->lay->t[pp->it_tensor];
	step = pipe_step(pp->env, pp->pass, t);
	s->job.tensor = pp->it_tensor;
	s->job.u0 = pp->it_unit;
	s->job.u1 = t->units - pp->it_unit < step ? t->units : pp->it_unit + step;
	s->job.nblocks = (unsigned)((s->job.u1 - s->job.u0 + KERN_BLOCK - 1) / KERN_BLOCK);
	s->job.in_bytes = in_bytes_sum(pp->env->lay, t, s->job.u1 - s->job.u0);
	s->state = SLOT_BUSY;
	pp->it_unit = s->job.u1;
	return (int64_t)k;
}

static void fail(struct pipe *pp, const struct lines_error *e)
{
	/* the first error, unless it is a worker stopped because another one
	 * failed (a stream's reader), whose reason then wins */
	if (!pp->failed || (pp->err.code == LINES_ECANCELED && e->code != LINES_ECANCELED &&
	                    !lines_canceled())) {
		pp->failed = 1;
		pp->err = *e;
	}
	if (!pp->abort && pp->src->ops->cancel)
		pp->src->ops->cancel(pp->src);
	pp->abort = 1;
	pthread_cond_broadcast(&pp->space);
	pthread_cond_broadcast(&pp->done);
	pthread_cond_broadcast(&pp->moved);
}

/* consumed: the consumer's count, or the least of it and the writers'
 * (called with the lock held) */
static void set_consumed(struct pipe *pp)
{
	uint64_t c = pp->main_done;
	for (unsigned v = 0; pp->wdone && v < pp->env->nvariants; v++)
		c = pp->wdone[v] < c ? pp->wdone[v] : c;
	pp->consumed = c;
}

/* ---- a sweep's writers -------------------------------------------------------- */
struct vwriter {
	struct pipe *pp;
	unsigned v;
	pthread_t tid;
	int started;
};

/* The output of value v + 1 of a sweep, job after job in order: the
 * variant's buffer of a merged tensor, the one copy of a copied one. */
static void *writer_main(void *arg)
{
	struct vwriter *wr = arg;
	struct pipe *pp = wr->pp;
	const struct pipe_variant *pv = &pp->env->variants[wr->v];
	struct lines_error err;
	int rc = 0;

	for (uint64_t k = 0; k < pp->njobs; k++) {
		pthread_mutex_lock(&pp->mu);
		while (pp->main_done <= k && !pp->abort)
			pthread_cond_wait(&pp->moved, &pp->mu);
		int stop = pp->abort;
		pthread_mutex_unlock(&pp->mu);
		if (stop)
			break;
		const struct slot *s = &pp->slots[k % pp->nslots];
		const struct tensor *t = &pp->env->lay->t[s->job.tensor];
		struct pipe_job vj = s->job;
		vj.out = t->merge && s->vout ? s->vout[wr->v] : s->job.out;
		rc = sink_write(pv->out, vj.out, (size_t)tensor_file_span(t, vj.u1 - vj.u0), &err);
		if (rc == 0 && pv->on_output)
			pv->on_output(pv->on_output_arg, t, &vj);
		pthread_mutex_lock(&pp->mu);
		if (rc < 0) {
			fail(pp, &err);
			pthread_mutex_unlock(&pp->mu);
			break;
		}
		pp->wdone[wr->v] = k + 1;
		set_consumed(pp);
		pthread_cond_broadcast(&pp->space);
		pthread_mutex_unlock(&pp->mu);
	}
	return NULL;
}

/* ---- workers ----------------------------------------------------------------- */
struct wjob {
	int64_t k;
	struct src_batch batch;
	struct src_span *spans;
	const unsigned char **ptrs;
};

struct worker {
	struct pipe *pp;
	pthread_t tid;
	struct src_worker *sw;
	void *scratch;
	float *widen; /* ninputs x widen_cap bytes: a mixed job's inputs as F32 */
	float *scales; /* scale_cap floats: an FP8 job's scales */
	float *wide;   /* wide_cap bytes: a float8 output before it is encoded */
	const unsigned char **wptrs; /* ninputs */
	unsigned char *differs;      /* ninputs: this worker saw the input differ from the base */
	struct wjob j[PIPE_DEPTH];
	int started;
};

int pipe_widen_input(const struct kern *k, const struct tensor *t, unsigned m,
                     const unsigned char *src, uint64_t u0, size_t n, float *dst, float *sbuf,
                     struct lines_error *err)
{
	if (t->in[m].q)
		return fp8_dequant(t->in[m].q, t->in[m].dt, src, u0, n, dst, sbuf, err);
	if (ggml_block_dtype(t->in[m].dt)) { /* a job is whole blocks (pipe_step) */
		ggml_dequant(t->in[m].dt, src, n / t->in[m].be, dst);
		return 0;
	}
	k->decode(t->in[m].dt, src, dst, n);
	return 0;
}

/*
 * A tensor whose inputs have different float dtypes (an F32 fine-tune of a
 * BF16 base), or float8 ones: every input is decoded to F32 (exactly; F64
 * rounds to nearest, as the kernels decode it; a float8 value times its
 * scale rounds once), so the method sees one dtype.
 */
static int widen(struct worker *w, const struct tensor *t, struct pipe_job *job,
                 const unsigned char **in, struct lines_error *err)
{
	const struct pipe_env *env = w->pp->env;
	size_t n = (size_t)(job->u1 - job->u0), stride = w->pp->widen_cap / sizeof(float);
	for (unsigned m = 0; m < env->lay->ninputs; m++) {
		if (t->in[m].dt == DT_F32) {
			w->wptrs[m] = in[m];
			continue;
		}
		float *dst = w->widen + m * stride;
		FORWARD_IF_ERROR(pipe_widen_input(env->k, t, m, in[m], job->u0, n, dst, w->scales, err));
		w->wptrs[m] = (const unsigned char *)dst;
	}
	job->in = w->wptrs;
	return 0;
}

/*
 * A float8 weight written in float8 (--dtype fp8): the method computes
 * F32 values into the worker's buffer, which the measuring pass scans for
 * each block's largest magnitude and the writing pass encodes with the
 * scales measured. (The output's non-finite count sees the F32 values.)
 */
static int work_fp8(struct worker *w, const struct tensor *t, struct pipe_job *job,
                    unsigned char *out, struct lines_error *err)
{
	struct pipe *pp = w->pp;
	size_t n = (size_t)(job->u1 - job->u0);
	job->out = (unsigned char *)w->wide;
	int rc = pp->pass->work(pp->env->ctx, job, w->scratch, err);
	if (rc == 0 && pp->pass->measure)
		fp8_measure(t->rq, w->wide, job->u0, n,
		            job->part + pp->pass->part_job + pp->pass->part_block * job->nblocks);
	else if (rc == 0 && pp->pass->writes)
		fp8_quantize(t->rq, w->wide, job->u0, n, out);
	return rc;
}

/*
 * A GGUF output of a ggml block type: the method computes F32 values into
 * the worker's buffer, and the writing pass encodes them in whole blocks
 * (a job of such a tensor is whole blocks: pipe_step takes multiples of
 * KERN_BLOCK or of rows, and rows are whole blocks, see plan.c). A pass
 * that does not write only needs the method's work.
 */
static int work_quant(struct worker *w, const struct tensor *t, struct pipe_job *job,
                      unsigned char *out, struct lines_error *err)
{
	struct pipe *pp = w->pp;
	size_t n = (size_t)(job->u1 - job->u0);
	job->out = (unsigned char *)w->wide;
	int rc = pp->pass->work(pp->env->ctx, job, w->scratch, err);
	if (rc == 0 && pp->pass->writes)
		ggml_quant(t->qdt, w->wide, n / dtype_table[t->qdt].block_elems, out);
	return rc;
}

static int start_job(struct worker *w, struct wjob *j, struct lines_error *err)
{
	struct pipe *pp = w->pp;
	const struct pipe_job *job = &pp->slots[j->k % pp->nslots].job;
	const struct tensor *t = &pp->env->lay->t[job->tensor];

	for (unsigned m = 0; m < pp->env->lay->ninputs; m++) {
		j->spans[m].file = t->in[m].file;
		j->spans[m].off = t->in[m].off + src_bytes(&t->in[m], job->u0);
		j->spans[m].len = (size_t)src_bytes(&t->in[m], job->u1 - job->u0);
	}
	j->batch.n = pp->env->lay->ninputs;
	j->batch.seq = (uint64_t)j->k;
	j->batch.span = j->spans;
	j->batch.ptr = j->ptrs;
	return pp->src->ops->start(w->sw, &j->batch, err);
}

/*
 * The tensors that are not merged (integer position ids, boolean masks,
 * ...) keep the base's values, so a model whose bytes differ there is
 * worth a warning, and with --strict an error reported before a single
 * output byte exists: the first read-only pass of a method, or a check
 * pass of its own, compares them (check_job on the worker, check_reduce
 * in order on the consumer). With an input that can be read only once
 * (standard input) the writing pass compares while it copies.
 */
static void check_job(const struct pipe_env *env, struct pipe_job *job)
{
	size_t n = (size_t)(job->u1 - job->u0);
	for (unsigned m = 1; m <= env->lay->nmodels; m++)
		job->part[m - 1] = memcmp(job->in[m], job->in[0], n) != 0;
}

static int check_reduce(const struct pipe_env *env, const struct pipe_job *job,
                        struct lines_error *err)
{
	const struct tensor *t = &env->lay->t[job->tensor];
	struct copy_check *cc = env->check;
	for (unsigned m = 1; m <= env->lay->nmodels; m++) {
		unsigned char *warned = &cc->warned[job->tensor * env->lay->nmodels + (m - 1)];
		if (!job->part[m - 1] || *warned)
			continue;
		RETURN_ERROR_IF(cc->strict, err, LINES_EMISMATCH, cc->names[m], t->name,
		                "%s tensor differs from the base's (--strict)", dtype_name(t->in_dt));
		lines_logf(cc->log, LINES_LOG_WARN, cc->names[m], t->name,
		           "%s tensor differs from the base's; the base's values are kept",
		           dtype_name(t->in_dt));
		*warned = 1;
	}
	return 0;
}

/* Whether each input differs from the base (see job_stats). */
static void job_differs(struct worker *w, struct slot *s, const struct tensor *t,
                        const unsigned char *const *seen, unsigned ninputs)
{
	size_t n = (size_t)(s->job.u1 - s->job.u0);
	for (unsigned m = 1; m < ninputs; m++) {
		if (!w->differs[m])
			w->differs[m] = memcmp(seen[m], seen[0], n * t->unit_in) != 0;
		s->differs[m] = w->differs[m];
	}
}

/*
 * The writing pass's look at every input of a merged job (struct
 * input_stats): its non-finite values, and whether it differs from the
 * base (compared once per worker and input: an input that differed stays
 * so, and the consumer ORs the flags, so the result is the same).
 */
static void job_stats(struct worker *w, struct slot *s, const struct tensor *t,
                      const unsigned char *const *raw, const unsigned char *const *seen,
                      unsigned ninputs)
{
	size_t n = (size_t)(s->job.u1 - s->job.u0);
	/* float8, block types and mixed dtypes: counted decoded (F32) */
	for (unsigned m = 0; m < ninputs; m++)
		s->nonfinite[m] = t->in[m].q || t->mixed ? kern_count_nonfinite(DT_F32, seen[m], n)
		                                         : kern_count_nonfinite(t->in[m].dt, raw[m], n);
	job_differs(w, s, t, seen, ninputs);
}

/* Whether element i of p (of type dt) is NaN or infinite: its exponent's
 * bits all set (the types a merge reads or writes as floats). */
static int nonfinite_at(enum dtype dt, const unsigned char *p, size_t i)
{
	uint16_t h;
	uint32_t f;
	uint64_t d;
	switch (dt) {
	case DT_BF16:
		memcpy(&h, p + 2 * i, 2);
		return (h & 0x7f80) == 0x7f80;
	case DT_F16:
		memcpy(&h, p + 2 * i, 2);
		return (h & 0x7c00) == 0x7c00;
	case DT_F32:
		memcpy(&f, p + 4 * i, 4);
		return (f & 0x7f800000u) == 0x7f800000u;
	case DT_F64:
		memcpy(&d, p + 8 * i, 8);
		return (d & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
	default:
		return 0;
	}
}

/*
 * The NaN or infinite values of a merged job's output OUT (n elements of
 * t->out_dt) where every input is finite: the merge's own overflow (a
 * weight or lambda too large for the output's type), which no input's
 * count shows. The inputs are looked at only where the output has one.
 */
static uint64_t overflow(const struct tensor *t, const unsigned char *out,
                         const unsigned char *const *raw, const unsigned char *const *seen,
                         unsigned ninputs, size_t n, uint64_t counted)
{
	uint64_t c = 0;
	/* counted: OUT's non-finite values when the caller has counted them
	 * already, else UINT64_MAX */
	if (!(counted == UINT64_MAX ? kern_count_nonfinite(t->out_dt, out, n) : counted))
		return 0;
	for (size_t i = 0; i < n; i++) {
		int in = 0;
		if (!nonfinite_at(t->out_dt, out, i))
			continue;
		for (unsigned m = 0; m < ninputs && !in; m++) /* decoded: F32 */
			in = t->in[m].q || t->mixed ? nonfinite_at(DT_F32, seen[m], i)
			                            : nonfinite_at(t->in[m].dt, raw[m], i);
		c += !in;
	}
	return c;
}

/* A tensor that is not merged, in a writing pass: the base's bytes. */
static void copy_job(const struct pipe_env *env, struct pipe_job *job)
{
	const struct tensor *t = &env->lay->t[job->tensor];
	if (t->gen) /* --dtype fp8: the new scales */
		fp8_scale_bytes(t->gen, job->u0, (size_t)(job->u1 - job->u0), job->out);
	else
		memcpy(job->out, job->in[0], (size_t)(job->u1 - job->u0));
	if (env->check_in_write && !t->scale)
		check_job(env, job);
}

/*
 * Mapped input pages can vanish under us if a file is truncated during
 * the run; touching one raises SIGBUS in the thread that touched it.
 *
 * Signal dispositions belong to the process, and two plans may run at
 * once in two threads of one process, so the handler is installed once,
 * the first time a pass of a mapped source runs (pthread_once), and never
 * uninstalled: installing it around each pass and restoring the old one
 * after would let one pass put back the old disposition while another
 * still needs ours. What the handler does is decided per thread by
 * bus_jmp: a worker sets it while it touches mapped pages, and a SIGBUS
 * there jumps back to that worker, which reports the file. A SIGBUS in any
 * other thread is not ours and goes where it would have gone without us:
 * to the handler installed before ours, called the way it asked to be
 * (with or without siginfo); a SIG_IGN drops a SIGBUS sent with kill();
 * otherwise the default action: the disposition is reset to SIG_DFL and
 * the signal raised again, to be delivered when the handler returns (a
 * SIGBUS from a fault cannot be ignored). A program that installs its own
 * SIGBUS handler after its first merge replaces ours and must chain to it.
 */
static __thread sigjmp_buf *bus_jmp;
static __thread const unsigned char *bus_addr;
static struct sigaction old_bus; /* written once, before ours is installed */
static pthread_once_t bus_once = PTHREAD_ONCE_INIT;

static void on_sigbus(int sig, siginfo_t *si, void *ctx)
{
	struct sigaction dfl;

	if (bus_jmp) {
		bus_addr = si->si_addr;
		siglongjmp(*bus_jmp, 1);
	}
	if (old_bus.sa_flags & SA_SIGINFO) {
		old_bus.sa_sigaction(sig, si, ctx);
		return;
	}
	if (old_bus.sa_handler == SIG_IGN && si->si_code <= 0)
		return; /* sent by kill(), and the program ignores it */
	if (old_bus.sa_handler != SIG_DFL && old_bus.sa_handler != SIG_IGN) {
		old_bus.sa_handler(sig);
		return;
	}
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	sigaction(sig, &dfl, NULL);
	raise(sig);
}

/* Run once per process; see above. */
static void bus_install(void)
{
	struct sigaction sa;

	if (sigaction(SIGBUS, NULL, &old_bus) < 0)
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
}

static int run_job(struct worker *w, struct wjob *j, struct lines_error *err)
{
	struct pipe *pp = w->pp;
	struct pipe_job *job = &pp->slots[j->k % pp->nslots].job;
	sigjmp_buf jb;
	volatile int rc = 0;

	if (sigsetjmp(jb, 1)) {
		const char *file = NULL;
		bus_jmp = NULL;
		job->in = NULL;
		for (unsigned i = 0; i < j->batch.n; i++) /* whose page was it? */
			if (bus_addr >= j->ptrs[i] && bus_addr < j->ptrs[i] + j->spans[i].len)
				file = pp->src->files[j->spans[i].file].path;
		pp->src->ops->release(w->sw, &j->batch);
		return lines_errf(err, LINES_ECHANGED, file, NULL,
		                  "the file became shorter during the run (truncated?)");
	}
	bus_jmp = &jb;
	rc = pp->src->ops->finish(w->sw, &j->batch, err);
	if (rc == 0) {
		const struct tensor *t = &pp->env->lay->t[job->tensor];
		job->in = j->ptrs;
		if (t->mixed)
			rc = widen(w, t, job, j->ptrs, err);
		struct slot *sl = &pp->slots[j->k % pp->nslots];
		if (sl->nonfinite) {
			memset(sl->nonfinite, 0, pp->env->lay->ninputs * sizeof(uint64_t));
			memset(sl->differs, 0, pp->env->lay->ninputs);
			sl->overflow = 0;
		}
		unsigned char *out = job->out; /* a float8 output: encoded from w->wide */
		if (rc == 0 && t->merge) {
			/* a sweep: every other value from the same input bytes, then
			 * the plan's own (whose partial results reduce() takes) */
			int self = pp->pass->sweeps && sl->vout;
			job->nvout = self ? pp->env->nvariants : 0;
			job->vout = self ? sl->vout : NULL;
			job->var = self ? pp->env->variants : NULL;
			for (unsigned v = 0; rc == 0 && !self && sl->vout && v < pp->env->nvariants; v++) {
				job->out = sl->vout[v];
				rc = pp->pass->work(pp->env->variants[v].ctx, job, w->scratch, err);
			}
			job->out = out;
			if (rc == 0)
				rc = t->rq    ? work_fp8(w, t, job, out, err)
				     : t->qdt ? work_quant(w, t, job, out, err)
				              : pp->pass->work(pp->env->ctx, job, w->scratch, err);
			/* after the work, on its output (in cache): a method through
			 * which every non-finite input reaches the output needs the
			 * inputs counted only where the output has one */
			size_t n = (size_t)(job->u1 - job->u0);
			/* what the method wrote (job->out: the worker's F32 values
			 * of a float8 or block-type output, else out), counted once
			 * for both uses */
			uint64_t out_bad = UINT64_MAX;
			if (rc == 0 && sl->nonfinite && pp->env->nonfinite_reaches_output)
				out_bad = kern_count_nonfinite(t->out_dt, job->out, n);
			if (rc == 0 && sl->nonfinite && out_bad != 0)
				job_stats(w, sl, t, j->ptrs, job->in, pp->env->lay->ninputs);
			else if (rc == 0 && sl->nonfinite)
				job_differs(w, sl, t, job->in, pp->env->lay->ninputs);
			/* every output of a plain float type (a sweep's too) */
			unsigned nin = pp->env->lay->ninputs;
			for (unsigned v = 0; rc == 0 && sl->nonfinite && !t->rq && !t->qdt &&
			                     v <= (sl->vout ? pp->env->nvariants : 0);
			     v++)
				sl->overflow += overflow(t, v ? sl->vout[v - 1] : out, j->ptrs, job->in,
				                         nin, n, v || job->out != out ? UINT64_MAX : out_bad);
			job->out = out;
		} else if (rc == 0 && pp->pass->writes) /* copied from the base, checked if asked */
			copy_job(pp->env, job);
		else if (rc == 0 && pp->pass->checks_copies)
			check_job(pp->env, job);
		job->in = NULL;
	}
	bus_jmp = NULL;
	pp->src->ops->release(w->sw, &j->batch);
	return rc;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct pipe *pp = w->pp;
	struct lines_error err;
	struct wjob *cur = &w->j[0], *nxt = &w->j[1];
	int rc = 0;

	pthread_mutex_lock(&pp->mu);
	cur->k = claim(pp, 1);
	pthread_mutex_unlock(&pp->mu);
	if (cur->k >= 0)
		rc = start_job(w, cur, &err);
	while (cur->k >= 0 && rc == 0) {
		pthread_mutex_lock(&pp->mu);
		nxt->k = claim(pp, 0);
		pthread_mutex_unlock(&pp->mu);
		if (nxt->k >= 0 && (rc = start_job(w, nxt, &err)) < 0) {
			pp->src->ops->release(w->sw, &cur->batch);
			break;
		}
		rc = run_job(w, cur, &err);
		pthread_mutex_lock(&pp->mu);
		pp->slots[cur->k % pp->nslots].state = rc < 0 ? SLOT_FAILED : SLOT_DONE;
		if (rc < 0)
			fail(pp, &err);
		pthread_cond_broadcast(&pp->done);
		pthread_mutex_unlock(&pp->mu);
		if (rc < 0) {
			if (nxt->k >= 0)
				pp->src->ops->release(w->sw, &nxt->batch);
			break;
		}
		if (nxt->k < 0) {
			pthread_mutex_lock(&pp->mu);
			nxt->k = claim(pp, 1);
			pthread_mutex_unlock(&pp->mu);
			if (nxt->k >= 0)
				rc = start_job(w, nxt, &err);
		}
		struct wjob *tmp = cur;
		cur = nxt;
		nxt = tmp;
	}
	if (rc < 0) {
		pthread_mutex_lock(&pp->mu);
		fail(pp, &err);
		pthread_mutex_unlock(&pp->mu);
	}
	return NULL;
}

/* ---- the consumer ---------------------------------------------------------------- */
static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void report(struct pipe *pp, unsigned pass_index, uint64_t done, uint64_t total,
                   double t0)
{
	const struct pipe_env *env = pp->env;
	struct lines_progress pr = {pp->pass->name, pass_index, env->npasses, done, total,
	                            now() - t0};
	if (env->o->progress)
		env->o->progress(env->o->cb_ctx, &pr);
}

static void check_cancel(struct pipe *pp)
{
	if (lines_canceled() && !pp->abort) {
		struct lines_error e;
		lines_errf(&e, LINES_ECANCELED, NULL, NULL, "interrupted");
		fail(pp, &e);
	}
}

static int wait_done(struct pipe *pp, struct slot *s)
{
	check_cancel(pp);
	while (s->state != SLOT_DONE && !pp->abort) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += 100 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&pp->done, &pp->mu, &ts);
		check_cancel(pp);
	}
	return pp->abort ? -1 : 0;
}

static void pipe_free(struct pipe *pp)
{
	if (pp->slots) {
		for (unsigned i = 0; i < pp->nslots; i++) {
			free(pp->slots[i].job.out);
			free(pp->slots[i].job.part);
			free(pp->slots[i].nonfinite);
			free(pp->slots[i].differs);
			for (unsigned v = 0; pp->slots[i].vout && v < pp->env->nvariants; v++)
				free(pp->slots[i].vout[v]);
			free(pp->slots[i].vout);
		}
		free(pp->slots);
	}
	pthread_mutex_destroy(&pp->mu);
	pthread_cond_destroy(&pp->space);
	pthread_cond_destroy(&pp->done);
	pthread_cond_destroy(&pp->moved);
	free(pp->wdone);
}

static int pipe_init(struct pipe *pp, struct lines_error *err)
{
	pthread_condattr_t ca;

	pthread_mutex_init(&pp->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&pp->done, &ca);
	pthread_cond_init(&pp->space, NULL);
	pthread_cond_init(&pp->moved, NULL);
	pthread_condattr_destroy(&ca);

	caps(pp->env, pp->pass, &pp->out_cap, &pp->part_cap, &pp->span_cap, &pp->widen_cap);
	pp->scale_cap = fp8_caps(pp->env, pp->pass, &pp->wide_cap);
	pp->nslots = nslots_for(pp->env->jobs);
	pp->slots = calloc(pp->nslots, sizeof(*pp->slots));
	RETURN_ERROR_IF(!pp->slots, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	for (unsigned i = 0; i < pp->nslots; i++) {
		struct pipe_job *j = &pp->slots[i].job;
		if (pp->pass->writes && pp->out_cap)
			j->out = aligned_alloc(64, (pp->out_cap + 63) & ~(size_t)63);
		j->part = calloc(pp->part_cap ? pp->part_cap : 1, sizeof(double));
		RETURN_ERROR_IF((pp->pass->writes && pp->out_cap && !j->out) || !j->part, err,
		                LINES_ENOMEM, NULL, NULL, "out of memory for the job buffers");
		if (pp->pass->writes && pp->env->nvariants && pp->out_cap) {
			unsigned nv = pp->env->nvariants;
			RETURN_ERROR_IF(!(pp->slots[i].vout = calloc(nv, sizeof(unsigned char *))), err,
			                LINES_ENOMEM, NULL, NULL, "out of memory for the job buffers");
			for (unsigned v = 0; v < nv; v++)
				RETURN_ERROR_IF(!(pp->slots[i].vout[v] =
				                          aligned_alloc(64, (pp->out_cap + 63) & ~(size_t)63)),
				                err, LINES_ENOMEM, NULL, NULL,
				                "out of memory for the job buffers");
		}
		if (pp->pass->writes && pp->env->stats) {
			unsigned n = pp->env->lay->ninputs;
			pp->slots[i].nonfinite = calloc(n, sizeof(uint64_t));
			pp->slots[i].differs = calloc(n, 1);
			RETURN_ERROR_IF(!pp->slots[i].nonfinite || !pp->slots[i].differs, err,
			                LINES_ENOMEM, NULL, NULL, "out of memory for the job buffers");
		}
	}
	return 0;
}

/*
 * LINES_TEST_JOB_DELAY_US makes the consumer sleep before every job: a
 * testing hook (like git's GIT_TEST_* variables) so that the tests can
 * interrupt or disturb a run at a known moment on any machine.
 */
static unsigned test_delay_us(void)
{
	const char *s = getenv("LINES_TEST_JOB_DELAY_US");
	return s ? (unsigned)strtoul(s, NULL, 10) : 0;
}

int pipe_run(const struct pipe_env *env, struct pass *pass, unsigned pass_index,
             struct source *src, struct sink *out, struct lines_error *err)
{
	const struct layout *lay = env->lay;
	const unsigned delay = test_delay_us();
	struct pipe pp = {0};
	struct worker *ws = NULL;
	struct vwriter *wrs = NULL;
	uint64_t total, done = 0;
	unsigned nw = 0, nwr = 0;
	double t0 = now(), last = t0;
	int rc;

	pp.env = env;
	pp.pass = pass;
	pp.src = src;
	if ((rc = pipe_init(&pp, err)) < 0)
		goto out;
	pp.njobs = count_jobs(env, pass, &total);
	if (src->ops->pass_begin && (rc = src->ops->pass_begin(src, err)) < 0)
		goto out;
	if (src->ops->mapped)
		pthread_once(&bus_once, bus_install);

	ws = calloc(env->jobs, sizeof(*ws));
	if (!ws) {
		rc = lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
		goto out;
	}
	for (nw = 0; nw < env->jobs && pp.njobs; nw++) {
		struct worker *w = &ws[nw];
		w->pp = &pp;
		rc = src->ops->worker_open(src, lay->ninputs, pp.span_cap, PIPE_DEPTH, &w->sw, err);
		if (rc == 0 && pass->scratch) {
			size_t sz = (pass->scratch + 63) & ~(size_t)63;
			if (!(w->scratch = aligned_alloc(64, sz)))
				rc = lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory for scratch");
			else if (pass->worker_end || pass->zero_scratch) /* counts there: from zero */
				memset(w->scratch, 0, sz);
		}
		if (rc == 0 && pp.widen_cap) {
			size_t sz = ((size_t)lay->ninputs * pp.widen_cap + 63) & ~(size_t)63;
			w->widen = aligned_alloc(64, sz);
			w->wptrs = calloc(lay->ninputs, sizeof(*w->wptrs));
			if (!w->widen || !w->wptrs)
				rc = lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
		}
		if (rc == 0 && pp.scale_cap && !(w->scales = malloc(pp.scale_cap * sizeof(float))))
			rc = lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
		if (rc == 0 && pp.wide_cap && !(w->wide = aligned_alloc(64, (pp.wide_cap + 63) & ~(size_t)63)))
			rc = lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
		if (rc == 0 && !(w->differs = calloc(lay->ninputs, 1)))
			rc = lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
		for (unsigned d = 0; rc == 0 && d < PIPE_DEPTH; d++) {
			w->j[d].batch.slot = d;
			w->j[d].spans = calloc(lay->ninputs, sizeof(*w->j[d].spans));
			w->j[d].ptrs = calloc(lay->ninputs, sizeof(*w->j[d].ptrs));
			if (!w->j[d].spans || !w->j[d].ptrs)
				rc = lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
		}
		if (rc == 0 && (errno = pthread_create(&w->tid, NULL, worker_main, w)) != 0)
			rc = lines_errno(err, errno, NULL, "cannot start a worker thread");
		if (rc < 0) {
			nw++; /* clean this one up too, it never started */
			break;
		}
		w->started = 1;
	}

	/* a sweep's writing pass: the other values' writers */
	if (rc == 0 && pass->writes && env->nvariants && env->variants && pp.njobs) {
		wrs = calloc(env->nvariants, sizeof(*wrs));
		pp.wdone = calloc(env->nvariants, sizeof(*pp.wdone));
		if (!wrs || !pp.wdone)
			rc = lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
		for (nwr = 0; rc == 0 && nwr < env->nvariants; nwr++) {
			wrs[nwr].pp = &pp;
			wrs[nwr].v = nwr;
			if ((errno = pthread_create(&wrs[nwr].tid, NULL, writer_main, &wrs[nwr])) != 0)
				rc = lines_errno(err, errno, NULL, "cannot start a writer thread");
			else
				wrs[nwr].started = 1;
		}
	}

	pthread_mutex_lock(&pp.mu);
	if (rc < 0) {
		fail(&pp, err);
	}
	uint64_t ov_tensor = UINT64_MAX, ov_count = 0; /* the tensor being written */
	int ov_bad = 0;
	for (uint64_t k = 0; rc == 0 && k < pp.njobs; k++) {
		struct slot *s = &pp.slots[k % pp.nslots];
		if (wait_done(&pp, s) < 0)
			break;
		pthread_mutex_unlock(&pp.mu);

		if (delay)
			usleep(delay);
		const struct tensor *t = &lay->t[s->job.tensor];
		if (!t->merge)
			rc = pass->checks_copies || (pass->writes && env->check_in_write)
			             ? check_reduce(env, &s->job, err)
			             : 0;
		else if (pass->measure)
			fp8_measure_reduce(t->rq, s->job.u0, (size_t)(s->job.u1 - s->job.u0),
			                   s->job.part + pass->part_job + pass->part_block * s->job.nblocks);
		else
			rc = pass->reduce ? pass->reduce(env->ctx, &s->job, err) : 0;
		if (rc == 0 && pass->writes && out)
			rc = sink_write(out, s->job.out, (size_t)tensor_file_span(t, s->job.u1 - s->job.u0),
			                err);
		if (rc == 0 && pass->writes && out && env->lay->align > 1 && s->job.u1 == t->units)
			rc = write_padding(out, tensor_file_bytes(t), env->lay->align, err);
		if (rc == 0 && pass->writes && env->on_output)
			env->on_output(env->on_output_arg, t, &s->job);
		for (unsigned v = 0; rc == 0 && pass->writes && !wrs && v < env->nvariants; v++) {
			/* a copied tensor is the same in every output */
			const struct pipe_variant *pv = &env->variants[v];
			struct pipe_job vj = s->job;
			vj.out = t->merge && s->vout ? s->vout[v] : s->job.out;
			rc = sink_write(pv->out, vj.out, (size_t)tensor_file_span(t, vj.u1 - vj.u0), err);
			if (rc == 0 && pv->on_output)
				pv->on_output(pv->on_output_arg, t, &vj);
		}
		for (unsigned m = 0; s->nonfinite && m < lay->ninputs; m++) {
			if (env->stats->by_shard)
				env->stats->by_shard[(size_t)env->stats->shard_of[s->job.tensor] * lay->ninputs +
				                     m] += s->nonfinite[m];
			env->stats->nonfinite[m] += s->nonfinite[m];
			env->stats->differs[m] |= s->differs[m];
		}
		if (s->nonfinite) {
			/* a tensor's overflow counts only if none of its inputs had
			 * a NaN or infinity, unless the method keeps each where it
			 * is (sum, mean): a method that mixes elements (a norm, a
			 * dot) spreads one over the whole tensor */
			uint64_t bad = 0;
			for (unsigned m = 0; m < lay->ninputs && !env->nonfinite_reaches_output; m++)
				bad |= s->nonfinite[m];
			if (s->job.tensor != ov_tensor) {
				env->stats->overflow += ov_bad ? 0 : ov_count;
				ov_tensor = s->job.tensor, ov_count = 0, ov_bad = 0;
			}
			ov_count += s->overflow;
			ov_bad |= bad != 0;
		}
		done += s->job.in_bytes;
		if (rc == 0 && env->o->progress && now() - last >= 0.2) {
			last = now();
			report(&pp, pass_index, done, total, t0);
		}

		pthread_mutex_lock(&pp.mu);
		if (rc < 0) {
			fail(&pp, err);
			break;
		}
		/* (the writers read the slot's job and buffers until they pass
		 * it: it is claimed again only then, see set_consumed) */
		s->state = SLOT_FREE;
		pp.main_done = k + 1;
		set_consumed(&pp);
		pthread_cond_broadcast(&pp.space);
		pthread_cond_broadcast(&pp.moved);
	}
	if (env->stats && !ov_bad)
		env->stats->overflow += ov_count; /* the last tensor's */
	if (pp.main_done < pp.njobs && !pp.abort) {
		struct lines_error e;
		lines_errf(&e, LINES_ECANCELED, NULL, NULL, "interrupted");
		fail(&pp, &e);
	}
	pthread_mutex_unlock(&pp.mu);
	for (unsigned i = 0; i < nwr; i++)
		if (wrs[i].started)
			pthread_join(wrs[i].tid, NULL);
	free(wrs);

	for (unsigned i = 0; i < nw; i++) {
		if (ws[i].started)
			pthread_join(ws[i].tid, NULL);
		if (ws[i].sw)
			src->ops->worker_close(ws[i].sw);
		for (unsigned d = 0; d < PIPE_DEPTH; d++) {
			free(ws[i].j[d].spans);
			free(ws[i].j[d].ptrs);
		}
	}
	if (pp.failed) {
		*err = pp.err;
		rc = pp.err.code < 0 ? pp.err.code : LINES_EIO;
	}
	/* what the workers kept for the whole pass (integer counts: in any
	 * order), after every job was reduced */
	for (unsigned i = 0; rc == 0 && pass->worker_end && i < nw; i++)
		rc = pass->worker_end(env->ctx, ws[i].scratch, err);
	for (unsigned i = 0; i < nw; i++) {
		free(ws[i].scratch);
		free(ws[i].widen);
		free(ws[i].scales);
		free(ws[i].wide);
		free(ws[i].wptrs);
		free(ws[i].differs);
	}
	if (rc == 0) {
		report(&pp, pass_index, done, total, t0);
		if (pass->done)
			rc = pass->done(env->ctx, err);
		lines_logf(env->o, LINES_LOG_INFO, NULL, NULL, "pass %u/%u (%s): %.1f MiB read in %.3f s",
		           pass_index, env->npasses, pass->name, (double)done / 1048576.0, now() - t0);
	}
out:
	free(ws);
	pipe_free(&pp);
	return rc;
}
