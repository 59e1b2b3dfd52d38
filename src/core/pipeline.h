/*
 * pipeline.h -- run one pass over the inputs, in chunks, on worker
 * threads, with results consumed in order.
 *
 * The pipeline knows the tensors (layout.h), a source to read from and a
 * sink to write to; it knows nothing of methods: a pass is a set of
 * callbacks and a context it hands back to them.
 */
#ifndef LINES_PIPELINE_H
#define LINES_PIPELINE_H

#include "layout.h"
#include "sink.h"
#include "source.h"

struct merge_ctx;
struct kern;

/* One job: units [u0, u1) of one tensor. */
struct pipe_job {
	size_t tensor;
	uint64_t u0, u1;
	const unsigned char **in; /* ninputs pointers to the bytes of [u0, u1) */
	unsigned char *out;       /* (u1 - u0) * unit_out bytes, write passes */
	double *part;             /* part_job + part_block * blocks doubles  */
	unsigned nblocks;         /* KERN_BLOCK blocks in this job            */
	uint64_t in_bytes;        /* bytes read for this job, all inputs      */
	/* a sweep, in a writing pass whose work() writes every value itself
	 * (pass->sweeps): the other values' outputs and contexts (pipe_job_lambda in method.h) */
	unsigned nvout;
	unsigned char *const *vout;
	const struct pipe_variant *var;
};

/*
 * A pass: one walk of the pipeline over the tensors it wants.
 *   work()   on a worker thread, for one job of a merged tensor; pure
 *            computation on the job's input bytes into its output buffer
 *            and partial results. (Tensors that are not merged are the
 *            pipeline's: a writing pass copies them from the base, a pass
 *            that checks_copies compares them.)
 *   reduce() on the thread that runs the plan, for every job in order:
 *            where results that must not depend on thread count or chunk
 *            size are summed.
 *   done()   once, after the last reduce().
 */
struct pass {
	const char *name;
	int writes;          /* produces the output bytes */
	unsigned part_job;   /* doubles of partial results per job */
	unsigned part_block; /* doubles of partial results per KERN_BLOCK */
	size_t scratch;      /* bytes of per-worker scratch memory */
	int (*want)(const struct merge_ctx *c, size_t tensor);
	int (*work)(struct merge_ctx *c, struct pipe_job *job, void *scratch,
	            struct lines_error *err);
	int (*reduce)(struct merge_ctx *c, const struct pipe_job *job, struct lines_error *err);
	int (*done)(struct merge_ctx *c, struct lines_error *err);
	/* Set when work() keeps results in its worker's scratch across jobs
	 * (counts, whose order does not matter): the scratch starts zeroed,
	 * and this takes each worker's results after the last job. */
	int (*worker_end)(struct merge_ctx *c, void *scratch, struct lines_error *err);
	/* Set when work() keeps counts in its worker's scratch between the
	 * steps of a job and leaves them zeroed after each job: the scratch
	 * starts zeroed. */
	int zero_scratch;
	/* also compare the copied (non-float) tensors with the base's: set on
	 * the first read-only pass, or the check pass */
	int checks_copies;
	/* optional: called before the pass starts (on the plan's thread) */
	int (*begin)(struct merge_ctx *c, struct lines_error *err);
	/* optional: 0 when an earlier pass already did this one's work, so it
	 * is skipped (reads nothing); the dry run shows the pass as "if needed" */
	int (*needed)(const struct merge_ctx *c);
	/* --dtype fp8: this pass runs the writing pass's work() on the float8
	 * weights and measures the largest magnitude of each block (fp8.h),
	 * in doubles after the work's own partial results */
	int measure;
	/* a sweep: work() writes the other values' outputs too (job->vout),
	 * from what it computes once (the merged task vector: only the
	 * finish, base + lambda tau, differs); else the pipeline runs work()
	 * once per value */
	int sweeps;
	/* jobs of a merged tensor hold whole slabs (pipe_slab(): the elements
	 * that share their first index, so every row along dim 1): as many as
	 * make PIPE_ROW_UNITS elements, at least one, whatever --chunk is, so
	 * that the job boundaries, and the order of the sums of the pass, do
	 * not depend on --chunk (della's ranks within a row) */
	int rows;
	/* a whole-model statistic (partition.c): reduce() keeps per-tensor
	 * results in the context's table and done() adds them; a partitioned
	 * run measures it per part (--stats-out) or reads it (--stats) */
	int stats;
	/* its results are whole-model ones that are not kept per tensor (a
	 * majority sign, norms summed across tensors): a method with
	 * METHOD_PART that adds such a pass is refused with --part */
	int whole_model;
};

/* Elements per job of a pass with rows (at least one slab). */
#define PIPE_ROW_UNITS ((uint64_t)1 << 18)

#define PIPE_MAX_PASSES 5

/* The passes of a run, in order. */
struct passes {
	struct pass pass[PIPE_MAX_PASSES];
	unsigned n;
};

/* Add a pass (zeroed) at the end; NULL when there are too many. */
struct pass *passes_add(struct passes *ps);
/* Add a pass (zeroed) before the others; NULL when there are too many. */
struct pass *passes_add_first(struct passes *ps);
/* Add a pass (zeroed) before pass i; NULL when there are too many. */
struct pass *passes_insert(struct passes *ps, unsigned i);

/*
 * The tensors that are copied from the base (not merged) are compared
 * with every model's as they are read: a difference is a warning, or
 * with strict an error, reported once per tensor and model.
 */
struct copy_check {
	int strict;
	const char *const *names; /* ninputs: the inputs' paths, for messages */
	unsigned char *warned;    /* nt x nmodels: warned of this tensor and model already */
	const struct lines_merge_opts *log; /* the log callback */
};

/*
 * What the writing pass sees of every input, on every path: the NaN and
 * infinite values of its merged tensors, and whether it differs from the
 * base anywhere (else its task vector is zero).
 */
struct input_stats {
	uint64_t *nonfinite;    /* ninputs */
	unsigned char *differs; /* ninputs; [0], the base, stays 0 */
	/* output values NaN or infinite where every input is finite (every
	 * output of a sweep; not float8 or quantized outputs) */
	uint64_t overflow;
	/* optional (a directory output): the same counts per shard, for each
	 * shard's manifest, nshards x ninputs; shard_of: nt, each tensor's */
	uint64_t *by_shard;
	uint32_t *shard_of;
};

/*
 * A sweep's other outputs (sweep.c): the writing pass runs work() once
 * more per variant on the same input bytes, with the variant's context
 * (its lambdas), into a buffer of its own, which the consumer sends to
 * the variant's sink. The variants' work() runs before the plan's own,
 * so the job's partial results, which reduce() takes, are the plan's.
 */
struct pipe_variant {
	struct merge_ctx *ctx;
	struct sink *out;
	void (*on_output)(void *arg, const struct tensor *t, const struct pipe_job *job);
	void *on_output_arg;
};

/* What every pass of a run shares. */
struct pipe_env {
	const struct layout *lay;
	const struct kern *k; /* decode, for tensors of mixed dtypes */
	unsigned jobs;
	size_t chunk;
	int streams;        /* read through src_stream (the memory bound) */
	int check_in_write; /* the writing pass compares the copied tensors */
	struct copy_check *check;
	struct input_stats *stats; /* optional: filled by the writing pass */
	/* every NaN or infinity of an input makes the output element NaN or
	 * infinite (sum, mean): inputs are counted only where the output has one */
	int nonfinite_reaches_output;
	struct merge_ctx *ctx; /* handed to the pass callbacks */
	const struct lines_merge_opts *o; /* progress and log callbacks */
	unsigned npasses;
	/* optional: every output job, in order (the manifest's hashes) */
	void (*on_output)(void *arg, const struct tensor *t, const struct pipe_job *job);
	void *on_output_arg;
	/* a sweep: the writing pass's other outputs (counted in pipe_memory
	 * from nvariants; variants is set before the writing pass) */
	unsigned nvariants;
	const struct pipe_variant *variants;
	/* a partitioned run: only tensors [part_t0, part_t1) are read */
	int parted;
	size_t part_t0, part_t1;
};

/* The tensors a pass reads: its own, and the copied ones if it checks them. */
static inline int pass_wants(const struct pass *ps, const struct pipe_env *env, size_t i)
{
	if (env->parted && (i < env->part_t0 || i >= env->part_t1))
		return 0;
	return ps->want(env->ctx, i) ||
	       (ps->checks_copies && !env->lay->t[i].merge && !env->lay->t[i].scale);
}

/* Input m of units [u0, u0 + n) of a mixed tensor (t->mixed) decoded to
 * F32, as the methods see it: a float8 input with its scales, read into
 * sbuf (fp8_scale_floats(t->in[m].q, n) floats). */
int pipe_widen_input(const struct kern *k, const struct tensor *t, unsigned m,
                     const unsigned char *src, uint64_t u0, size_t n, float *dst, float *sbuf,
                     struct lines_error *err);

/* The elements of a slab of a tensor: those sharing their first index
 * (a row of a matrix; the whole tensor for rank 0 and 1, as mergekit
 * makes it a matrix of one row). */
uint64_t pipe_slab(const struct tensor *t);

/* Units per job for a tensor in a pass (NULL: the default): a multiple of
 * KERN_BLOCK for merged ones, of pipe_slab() for those of a pass with
 * rows. */
uint64_t pipe_step(const struct pipe_env *env, const struct pass *pass, const struct tensor *t);

/* Bytes of memory the pipeline allocates (or maps) for these passes at most. */
uint64_t pipe_memory(const struct pipe_env *env, const struct passes *ps,
                     const struct src_ops *src);

/* Input bytes a pass reads. */
uint64_t pipe_read_bytes(const struct pipe_env *env, const struct pass *pass);

/*
 * Run pass over every tensor it wants. A writing pass sends its output
 * to out, after whatever the caller has written there already.
 */
int pipe_run(const struct pipe_env *env, struct pass *pass, unsigned pass_index,
             struct source *src, struct sink *out, struct lines_error *err);

#endif
