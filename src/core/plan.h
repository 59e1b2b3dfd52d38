/*
 * plan.h -- a merge plan as data: parts with one owner each.
 *
 *   inputs   the checkpoints opened and checked against each other (plan.c)
 *   layout   the output's tensors, their sources and scales (plan.c, layout.h)
 *   scales   the weights, alpha, beta and lambda (scales.c)
 *   output   where the bytes go and their companions (output.c, header.c,
 *            manifest.c, sink_dir.c)
 *   ctx      what the method sees, and its state (method.h)
 *   passes   what the method asked the pipeline to run (pipeline.h)
 *
 * run.c makes a plan from the options (lines_plan_new), runs it
 * (lines_plan_run) and frees it; the parts are filled in that order, and
 * after lines_plan_new only the scales and the method's state change.
 */
#ifndef LINES_PLAN_H
#define LINES_PLAN_H

#include <xxhash.h>

#include "ckpt.h"
#include "kernels.h"
#include "layers.h"
#include "layout.h"
#include "method.h"
#include "output.h"
#include "pipeline.h"
#include "scales.h"
#include "source.h"
#include "st_format.h"

/* The inputs: the base, then the models. */
struct inputs {
	unsigned ninputs;
	struct ckpt **ck;
	const char **names;      /* ninputs: each checkpoint's path, for messages */
	struct src_file *files;  /* every file of every input */
	unsigned nfiles;
	int single_pass; /* an input can be read only once (standard input) */
	int streams;     /* some input is read in order (stdin, .zst) */
	unsigned char *spill; /* per file: decompress to a temporary file first */
	/* no base was given (METHOD_NO_BASE): input 0 is the first model read
	 * a second time, the reference of the layout and of the copied tensors */
	int base_is_model;
	/* slices (lines_merge_opts.slices): each input is composed (ckpt_compose)
	 * of these, every model of the slices opened once */
	struct ckpt **src;
	const char **src_names;
	unsigned nsrc;
};

/* A partitioned run (partition.c): --part K/M, its shards and the
 * rounds of statistics. */
struct part {
	int on;           /* --part given */
	unsigned k, m;
	size_t s0, s1;    /* its shards [s0, s1) */
	size_t t0, t1;    /* their tensors [t0, t1) (all of them without --part) */
	unsigned rounds;  /* the plan's stats passes */
	unsigned have;    /* rounds given by --stats */
	unsigned round;   /* --stats-out: the round this run measures (1-based), else 0 */
	char hash[33];    /* the plan's identity */
	json_t *loaded;   /* --stats: its results, for the next round's file */
};

struct plan {
	struct lines_merge_opts o; /* a copy */
	struct layers layers;
	const struct kern *k;
	const struct method *method;
	struct inputs in;
	struct layout lay;
	struct scales sc;
	struct output out;
	struct merge_ctx ctx;
	struct passes passes;
	struct copy_check check;
	struct input_stats stats;
	struct pipe_env env;
	struct part part;

	const struct src_ops *src_ops; /* the chunk source the run uses */
	char *tok_dir; /* --tokenizer-source: its directory (output_tokenizer()) */
	uint64_t mem_bound;
	struct lines_plan_info info;
	struct lines_stack_info *stack_info; /* lay.nstacks */
	const char *pass_names[PIPE_MAX_PASSES];
	uint64_t pass_read[PIPE_MAX_PASSES];
	unsigned char pass_optional[PIPE_MAX_PASSES]; /* has needed() */
	unsigned char pass_skipped[PIPE_MAX_PASSES];  /* needed() said 0 */
	const char *input_types[DT_COUNT];            /* info.input_types */
	int ran;

	/* a sweep (sweep.c): the plans of the other values, nvar - 1 of
	 * them. Each is a shallow copy of this one that shares its inputs,
	 * layout tables and method state, and has its own options, scales,
	 * tensor table (the lambdas), method context and output. */
	unsigned nvar; /* the outputs: 1, or the sweep's values */
	struct plan **var;
	struct pipe_variant *pvar;
	struct sink **var_sink;
	const char **outputs; /* nvar: every output's path */
	int is_variant;
	struct lines_merge_opts sweep_o; /* the options as given, with the sweep */
	const struct lines_merge_opts *sweep_opts; /* &sweep_o, or NULL: no sweep */
};

/* The public handle (lines.h) is the plan itself. */
struct lines_plan {
	struct plan p;
};

/* ---- plan.c: the inputs and the layout --------------------------------------- */
/* Open every input (all failures are logged, the last is the error). */
int plan_open_inputs(struct plan *p, struct lines_error *err);
/* Check the models against the base and what can be merged; every problem
 * is logged before the call fails. */
int plan_check_inputs(struct plan *p, struct lines_error *err);
/* The stacks of blocks and their LiNeS ramps (called by plan_check_inputs). */
int plan_stacks(struct plan *p, struct lines_error *err);
/* The output's tensors in the base's order, and the files they come from. */
int plan_layout(struct plan *p, struct lines_error *err);
/* A name that embeddings and output heads have (embed, lm_head, wte, ...):
 * a tensor whose rows are the vocabulary. */
int plan_is_vocab_name(const char *name);
/* Streams whose tensors are not in the base's order: spill or refuse. */
int plan_check_stream_order(struct plan *p, struct lines_error *err);
/* 1 when path names one of the input files (the same inode). */
int plan_is_input(const struct plan *p, const char *path);
/* After a run: no input changed, and every stream ended where it must. */
int plan_check_unchanged(struct plan *p, struct lines_error *err);
int plan_check_stream_ends(struct plan *p, struct lines_error *err);
void plan_inputs_free(struct plan *p);

/* ---- sweep.c: one output per value of a swept option ------------------------- */
/* Check the sweep's options; set o to its first value. */
int sweep_first(const struct lines_merge_opts *opts, struct lines_merge_opts *o,
                struct lines_error *err);
/* The other values' plans, once the method has set up (after add_check). */
int sweep_make(struct plan *p, struct lines_error *err);
/* Before the writing pass: the other values' scales from what the passes
 * before measured, and their headers written into their sinks. */
int sweep_begin_write(struct plan *p, struct lines_error *err);
/* Lock, open, finish, commit or abort, free the other values' outputs. */
int sweep_lock(struct plan *p, struct lines_error *err);
int sweep_open(struct plan *p, struct lines_error *err);
int sweep_finish(struct plan *p, struct lines_error *err);
int sweep_commit(struct plan *p, struct lines_error *err);
void sweep_abort(struct plan *p);
void sweep_close(struct plan *p);
void sweep_free(struct plan *p);

/* ---- header.c: the output's safetensors header -------------------------------- */
/* run_meta.c: what lines records of the run (lines.version,
 * lines.method, ...), as key-value text: kv[0, n) point into the
 * record's own buffers; n <= HEADER_META_MAX. */
#define HEADER_META_MAX 40
struct header_meta {
	struct st_kv *kv;
	size_t n;
	char (*vals)[64];
	char *weights;
	char *stacks;
	char *sched; /* --schedule's values, or NULL */
};
int header_meta(const struct plan *p, struct header_meta *hm, struct lines_error *err);
void header_meta_free(struct header_meta *hm);
/* gguf_header.c: the header of a GGUF output holding tensors [t0, t1)
 * (the base's keys, then lines'; a shard of several: split.* first, and
 * the other keys in the first shard only), padded to general.alignment:
 * the data section starts at *hdr_len. */
int gguf_header(const struct plan *p, size_t t0, size_t t1, unsigned char **hdr, size_t *hdr_len,
                struct lines_error *err);
/* The header of a file holding output tensors [t0, t1): a shard, or all. */
int plan_header(const struct plan *p, size_t t0, size_t t1, unsigned char **hdr,
                size_t *hdr_len, struct lines_error *err);

/* ---- output.c: where the output goes ----------------------------------------- */
/* Check OUT before anything is read: a file, a directory, a device. */
int output_check(struct plan *p, struct lines_error *err);
/* Its companions: zstd, OUT.xxh128, OUT.manifest.json, or the shards. */
int output_choose(struct plan *p, struct lines_error *err);
/* --tokenizer-source MODEL: check that its vocabulary is the base's and
 * keep its directory in p->tok_dir (tok_source.c). */
int output_tokenizer(struct plan *p, struct lines_error *err);
/* The sink the writing pass writes into. */
int output_open(struct plan *p, struct sink **out, struct lines_error *err);
/* Make the output and its companions visible, or leave nothing. */
int output_commit(struct plan *p, struct sink *out, struct lines_error *err);
void output_free(struct output *o);
/* Hold OUT's lock for the run (a second run waits); release it. */
int output_lock(struct plan *p, struct lines_error *err);
void output_unlock(struct output *o);

/* ---- partition.c: --part K/M ------------------------------------------------- */
/* After the shards are laid out: the part's shards and tensors, the plan's hash. */
int part_setup(struct plan *p, struct lines_error *err);
/* After the method's setup: the rounds, --stats read, what this step does. */
int part_after_setup(struct plan *p, struct lines_error *err);
/* Before the run: the statistics it needs given, OUT not another plan's. */
int part_check_run(struct plan *p, struct lines_error *err);
/* Round r of --stats into the method's state, before its pass's done(). */
int part_load_round(struct plan *p, unsigned r, struct lines_error *err);
/* The index of stats pass r (1-based), or passes.n. */
unsigned part_stats_pass(const struct plan *p, unsigned r);
/* --stats-out: write the part's statistics of its round. */
int part_write_stats(struct plan *p, struct lines_error *err);
/* The text of OUT/.lines-plan.json (index_json may be NULL: one shard). */
int part_plan_text(const struct plan *p, const char *index_json, const char *readme, char **out,
                   struct lines_error *err);

/* ---- manifest.c --------------------------------------------------------------- */
int manifest_init(struct plan *p, struct lines_error *err);
/* The pipeline's on_output: hash each tensor as it is written (arg: the output). */
void manifest_note(void *arg, const struct tensor *t, const struct pipe_job *job);
/* The manifest of one file holding tensors [t0, t1): a shard, or all. */
int manifest_write(const struct plan *p, const struct manifest_file *mf, struct sink *s,
                   struct lines_error *err);

#endif
