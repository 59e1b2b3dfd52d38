/*
 * plan.h -- a merge plan: the inputs opened and checked against each
 * other, the output layout, the scale of every tensor, and the passes
 * that the pipeline runs over the inputs (norms, thresholds, writing).
 *
 * Methods (merge_*.c) fill in the passes; the pipeline (pipeline.c) runs
 * them; neither knows how the other works.
 */
#ifndef LINES_PLAN_H
#define LINES_PLAN_H

#include <xxhash.h>

#include "ckpt.h"
#include "sink.h"
#include "kernels.h"
#include "layers.h"
#include "source.h"

struct sink;
struct pipe_job;
struct plan;

/* One file of a sharded output: output tensors [t0, t1). */
struct shard {
	size_t t0, t1;
	uint64_t off0; /* out_off of t0 */
	uint64_t data; /* bytes of tensor data */
	char name[64];
};

/* Where the data of one tensor is, in one input. */
struct plan_input {
	unsigned file; /* index into plan->files */
	uint64_t off;
};

struct plan_tensor {
	const char *name; /* owned by the base's header */
	enum dtype in_dt;
	enum dtype out_dt;
	int merge; /* floating: merged; otherwise copied from the base */
	unsigned rank;
	const uint64_t *shape;
	uint64_t nelem;
	/* The pipeline walks a tensor in "units": elements for a merged
	 * tensor, bytes for a copied one. */
	uint64_t units;
	unsigned unit_in;  /* bytes per unit in every input */
	unsigned unit_out; /* bytes per unit in the output */
	uint64_t out_off;  /* offset in the output's data buffer */
	long block;        /* -1 outside the blocks */
	double lambda;     /* the exact scale of this tensor */
	double k_lambda;   /* what the kernel multiplies by (may fold in 1/sum(w)) */
	struct plan_input *in; /* ninputs entries: 0 is the base */
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
	int writes;         /* produces the output bytes */
	unsigned part_job;  /* doubles of partial results per job */
	unsigned part_block; /* doubles of partial results per KERN_BLOCK */
	size_t scratch;     /* bytes of per-worker scratch memory */
	int (*want)(const struct plan *p, size_t tensor);
	int (*work)(struct plan *p, struct pipe_job *job, void *scratch, struct lines_error *err);
	int (*reduce)(struct plan *p, const struct pipe_job *job, struct lines_error *err);
	int (*done)(struct plan *p, struct lines_error *err);
	/* Set when work() keeps results in its worker's scratch across jobs
	 * (counts, whose order does not matter): the scratch starts zeroed,
	 * and this takes each worker's results after the last job. */
	int (*worker_end)(struct plan *p, void *scratch, struct lines_error *err);
	/* also compare the copied (non-float) tensors, as the check pass
	 * would: set on a method's first read-only pass, saving a pass */
	int checks_copies;
	/* optional: called before the pass starts (on the plan's thread) */
	int (*begin)(struct plan *p, struct lines_error *err);
	/* optional: 0 when an earlier pass already did this one's work, so it
	 * is skipped (reads nothing); the dry run shows the pass as "if needed" */
	int (*needed)(const struct plan *p);
	uint64_t read_bytes; /* filled by the plan: input bytes it reads */
};

/* The tensors a pass reads: its own, and the copied ones if it checks them. */
static inline int pass_wants(const struct pass *ps, const struct plan *p, size_t i);

#define PLAN_MAX_PASSES 4

struct plan {
	struct lines_merge_opts o; /* a copy; weights point at w */
	unsigned ninputs;          /* N + 1 */
	unsigned nmodels;          /* N */
	struct ckpt **ck;          /* ninputs: base, then the models */
	struct src_file *files;    /* every file of every input */
	unsigned nfiles;
	struct layers layers;
	const struct kern *k;

	size_t nt;
	struct plan_tensor *t; /* output order */
	uint64_t out_data_bytes;
	long L;

	double *w;   /* N weights */
	double wsum; /* sum of the weights */
	int equal_weights;

	/* LiNeS */
	int alpha_known;
	double alpha, beta;
	double *lambda_layer; /* L entries */
	double lambda_outside;
	double norm_sum, norm_mtl;
	int have_norms;
	int norm_pass; /* alpha comes from a norm pass */
	int single_pass;    /* an input can be read only once (standard input) */
	int check_in_write; /* so the writing pass compares the copied tensors */
	int streams;        /* some input is read in order (stdin, .zst) */
	unsigned char *spill; /* per file: decompress to a temporary file first */

	struct lines_block_norms bn; /* norms_only: per-block norms */
	void *mstate;                /* the method's own state (TIES, DARE) */
	/* what TIES and DARE decided, for the manifest */
	const uint32_t *thr; /* TIES thresholds: nx per tensor (--trim tensor) or nx */
	int thr_per_tensor;
	int maj;             /* the majority sign, 0 when none was elected */
	void (*mfree)(struct plan *p);

	/* a directory output: its shards (output_dir.c) */
	char *out_dir;
	uint64_t shard_size;
	struct shard *shards;
	size_t nshards;

	/* the output: zstd, checksum sidecar and manifest */
	int zst;            /* OUT ends in .zst */
	int zstd_level;
	char *sidecar_path; /* NULL: no OUT.xxh128 */
	char *sidecar_name; /* the name the sidecar line gives */
	char *manifest_path; /* NULL: no manifest */
	uint64_t header_hash;
	struct xxh128 file_digest;
	XXH3_state_t *tstate; /* per-tensor hashing in the consumer */
	uint64_t *thash;
	/* running sums of the norm pass: |s|, |t|, s^2, t^2 */
	double acc[4];
	/* copied tensors that differ between models: one warning per tensor */
	unsigned char *copy_warned;

	struct pass pass[PLAN_MAX_PASSES];
	unsigned npasses;
	const char *pass_names[PLAN_MAX_PASSES];
	uint64_t pass_read[PLAN_MAX_PASSES];
	unsigned char pass_optional[PLAN_MAX_PASSES]; /* has needed() */
	unsigned char pass_skipped[PLAN_MAX_PASSES];  /* needed() said 0 */

	unsigned char *header; /* the output's header, once alpha is known */
	size_t header_len;

	size_t chunk;
	unsigned jobs;
	const struct src_ops *src_ops; /* the chunk source the run uses */
	uint64_t mem_bound;
	struct lines_plan_info info;
	int ran;
};

/* The public handle (lines.h) is the plan itself. */
struct lines_plan {
	struct plan p;
};

/* Fill in the passes for the method: merge_linear.c, merge_ties.c, merge_dare.c */
int merge_linear_setup(struct plan *p, struct lines_error *err);
int merge_ties_setup(struct plan *p, struct lines_error *err);
int merge_dare_setup(struct plan *p, struct lines_error *err);
/* lines inspect --norms (block_norms.c) */
int block_norms_setup(struct plan *p, struct lines_error *err);
void block_norms_free(struct plan *p);
/* The check pass of the tensors that are copied (merge_common.c), and
 * its two halves for a writing pass that checks as it copies. */
int merge_check_setup(struct plan *p, struct lines_error *err);
void merge_check_job(struct plan *p, struct pipe_job *job);
int merge_check_reduce(struct plan *p, const struct pipe_job *job, struct lines_error *err);

/* A Hugging Face model directory as the output (output_dir.c). */
int outdir_plan(struct plan *p, struct lines_error *err);
int outdir_open(struct plan *p, struct sink **out, struct lines_error *err);

/* The header of a file holding output tensors [t0, t1): a shard, or all. */
int plan_header(struct plan *p, size_t t0, size_t t1, unsigned char **hdr, size_t *hdr_len,
                struct lines_error *err);

/* Set alpha, beta and every tensor's lambda once alpha is known. */
int plan_set_alpha(struct plan *p, double alpha, struct lines_error *err);
/* TIES and DARE, after their read-only passes set norm_sum and norm_mtl:
 * automatic alpha = norm_sum / (N norm_mtl), or 1 with a warning when the
 * merged task vector is zero. */
int plan_alpha_from_norms(struct plan *p, struct lines_error *err);

/* The manifest (manifest.c): per-tensor hashes as the output is written. */
struct xxh128;
int manifest_init(struct plan *p, struct lines_error *err);
void manifest_free(struct plan *p);
void manifest_note(struct plan *p, const struct pipe_job *job);
int manifest_build(struct plan *p, const char *name, const struct xxh128 *file_digest, char **out,
                   struct lines_error *err);
/* The manifest of one file holding tensors [t0, t1) (a shard). */
struct manifest_file {
	const char *name;
	const struct xxh128 *digest;
	size_t t0, t1;
	uint64_t off0; /* out_off of tensor t0 */
	uint64_t header_len;
	uint64_t header_hash;
	uint64_t data_bytes;
};
int manifest_build_part(struct plan *p, const struct manifest_file *mf, char **out,
                        struct lines_error *err);

static inline int pass_wants(const struct pass *ps, const struct plan *p, size_t i)
{
	return ps->want(p, i) || (ps->checks_copies && !p->t[i].merge);
}

/* Forward a message to the caller's log callback. */
void plan_log(const struct plan *p, enum lines_level level, const char *file, const char *tensor,
              const char *fmt, ...) LINES_PRINTF(5, 6);

#endif
