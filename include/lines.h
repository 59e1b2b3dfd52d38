/*
 * lines.h -- the public interface of liblines.
 *
 * liblines merges and edits neural-network checkpoints (safetensors) with
 * LiNeS (layer-increasing network scaling) and the classic weight-space
 * merging methods, streaming every tensor in fixed-size chunks so that
 * memory use never depends on the size of the model.
 *
 * Conventions
 *   - Functions return 0 (LINES_OK) on success and a negative LINES_E*
 *     code on failure; on failure the struct lines_error passed in is
 *     filled with what went wrong, in which file and which tensor.
 *   - The library never prints and never exits. Messages that are not
 *     fatal (warnings, notes, the list of every header mismatch found
 *     before a merge) go to the log callback of the options, if any.
 *   - Strings passed in are borrowed for the duration of the call (or of
 *     the object they configure); strings handed out are owned by the
 *     object they came from.
 *   - Objects are not thread-safe; the library runs its own threads
 *     internally. Separate objects may be used in separate threads at
 *     once (two plans running side by side: tests/t-api.c). The first
 *     mmap pass installs a process-wide SIGBUS handler, once, that
 *     handles only faults of its own workers and passes any other SIGBUS
 *     to the handler that was there before. lines_cancel() is
 *     async-signal-safe and stops every running plan.
 */
#ifndef LINES_H
#define LINES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes -------------------------------------------------------- */
enum lines_status {
	LINES_OK = 0,
	LINES_EUSAGE = -1,    /* options that cannot work together (exit 2)   */
	LINES_EFORMAT = -2,   /* an input is malformed                        */
	LINES_EMISMATCH = -3, /* inputs are not compatible with each other    */
	LINES_EIO = -4,       /* a system call failed; sys_errno tells which   */
	LINES_ENOMEM = -5,    /* out of memory                                 */
	LINES_ECANCELED = -6, /* lines_cancel() was called (SIGINT, SIGTERM)   */
	LINES_EUNSUPPORTED = -7, /* valid input this version cannot handle     */
	LINES_ECHANGED = -8,  /* an input changed (was truncated) during a run */
	LINES_ECORRUPT = -9,  /* verification found a damaged file             */
};

/*
 * What went wrong. file and tensor are empty strings when they do not
 * apply. A CLI prints it as "lines: FILE: TENSOR: msg".
 */
struct lines_error {
	int code;      /* one of enum lines_status                         */
	int sys_errno; /* errno of the failing system call, or 0           */
	char file[1024];
	char tensor[512];
	char msg[1024];
};

/* Name of a status code, e.g. "malformed input". */
const char *lines_strerror(int code);

/* ---- logging and progress ------------------------------------------------ */
enum lines_level { LINES_LOG_ERROR, LINES_LOG_WARN, LINES_LOG_NOTE, LINES_LOG_INFO };

/*
 * Called from the thread that runs the library call (never from a worker
 * thread). file and tensor may be empty strings.
 */
typedef void (*lines_log_fn)(void *ctx, enum lines_level level, const char *file,
                             const char *tensor, const char *msg);

struct lines_progress {
	const char *pass;    /* name of the running pass: "norms", "write" ... */
	unsigned pass_index; /* 1-based                                        */
	unsigned pass_count;
	uint64_t done;  /* input bytes processed in this pass         */
	uint64_t total; /* input bytes this pass will process          */
	double seconds; /* since the start of this pass                */
};
typedef void (*lines_progress_fn)(void *ctx, const struct lines_progress *p);

/*
 * Ask every running lines_plan_run() to stop as soon as possible; it then
 * removes its temporary output and returns LINES_ECANCELED.
 * Async-signal-safe: meant to be called from a SIGINT/SIGTERM handler.
 */
void lines_cancel(void);
/* Clear the request, e.g. in a test that runs several merges. */
void lines_cancel_reset(void);

/* ---- version ------------------------------------------------------------- */
const char *lines_version(void);
/* Versions of the libraries in use, e.g. "zstd 1.5.4, xxHash 0.8.1, ...". */
const char *lines_libraries(void);
/*
 * Kernels in use after run-time detection (and LINES_ISA), e.g. "avx2".
 * Returns NULL and fills err when LINES_ISA names a set this machine or
 * this build cannot run.
 */
const char *lines_kernels(struct lines_error *err);

/* ---- reading a model ----------------------------------------------------- */
struct lines_model;

struct lines_tensor_info {
	const char *name;
	const char *dtype;  /* "BF16", "F32", "I64", ...                     */
	int is_float;       /* BF16, F16, F32 or F64: merged, not copied      */
	unsigned rank;
	const uint64_t *shape;
	uint64_t nelem;
	uint64_t nbytes;
	long block; /* block index (section 1.1 of the spec), -1 outside the blocks */
	const char *stack; /* the stack of the block (encoder.block, ...), NULL outside */
	double t; /* lines_plan_tensor(): the method's t for it (slerp's may differ
	           * between tensors: lines_merge_opts.tensor_t) */
	/* lines_plan_tensor(): its own weights and densities (nmodels each,
	 * from lines_merge_opts.tensor_params), NULL when it has none */
	const double *weights, *densities;
	unsigned nmodels;
};

/*
 * Layer detection settings. regex NULL means the built-in pattern;
 * num_layers 0 means "1 + the largest block index of the base".
 */
struct lines_layer_opts {
	const char *regex;
	long num_layers;
	/* one ramp over every stack (the official LiNeS code's choice)
	 * instead of one per stack */
	int joint;
	/* stacks that run one after the other, chained into one ramp:
	 * "A,B" (names as lines inspect --layers shows them), or NULL */
	const char *stack_order;
};

/*
 * Open a model (a .safetensors or GGUF file) and validate its header strictly.
 * layers may be NULL for the defaults. The data is not read.
 */
int lines_model_open(const char *path, const struct lines_layer_opts *layers,
                     struct lines_model **out, struct lines_error *err);
void lines_model_close(struct lines_model *m);
size_t lines_model_count(const struct lines_model *m);
/* Tensors in the order of their data in the file. */
void lines_model_tensor(const struct lines_model *m, size_t i, struct lines_tensor_info *info);
/* 1 + the largest block index (0 when no tensor is in a block). */
long lines_model_num_layers(const struct lines_model *m);
/* The stacks of blocks (the names before the block index: encoder.block,
 * decoder.block, model.layers, ...), each with 1 + its largest index. */
size_t lines_model_stack_count(const struct lines_model *m);
void lines_model_stack(const struct lines_model *m, size_t i, const char **name, long *num_layers);
uint64_t lines_model_data_bytes(const struct lines_model *m);
uint64_t lines_model_header_bytes(const struct lines_model *m);
/* The file format of the model: "safetensors" or "gguf". */
const char *lines_model_format(const struct lines_model *m);
/* The __metadata__ map (GGUF: the metadata keys, every value as text, see
 * lines-inspect(1)): number of entries and the i-th key and value. */
size_t lines_model_meta_count(const struct lines_model *m);
void lines_model_meta(const struct lines_model *m, size_t i, const char **key, const char **value);

/* ---- merging ------------------------------------------------------------- */
enum lines_method {
	LINES_M_SUM, /* task arithmetic; also called "task_arithmetic" */
	LINES_M_MEAN,
	LINES_M_TIES,
	LINES_M_DARE,
	LINES_M_LINEAR,   /* mergekit's linear: a weighted mean of the models */
	LINES_M_NEARSWAP, /* mergekit's nearswap: the model where it is near the base */
	LINES_M_CONSENSUS, /* Consensus Task Arithmetic: the sum where TALL masks agree */
	LINES_M_SLERP,    /* mergekit's slerp: from the base (t = 0) to the model (t = 1) */
	LINES_M_NUSLERP,  /* mergekit's nuslerp: two models (task vectors with a base) */
	LINES_M_MODEL_STOCK, /* Model Stock: the mean pulled toward the base by the angle */
	LINES_M_RAM,       /* mergekit's ram: the mean over the models that changed an element */
	LINES_M_RAMPLUS_TL, /* mergekit's ramplus_tl: ram, lone changes scaled per tensor */
	LINES_M_MULTISLERP, /* mergekit's multislerp: N models on the sphere (task vectors
	                     * with a base) */
	LINES_M_KARCHER,   /* mergekit's karcher: the Riemannian mean of N models on the sphere */
	LINES_M_DELLA,        /* DELLA: drops by magnitude rank in each row, TIES election */
	LINES_M_DELLA_LINEAR, /* DELLA without election: the kept values summed */
	LINES_M_BREADCRUMBS, /* Model Breadcrumbs: each task vector's top gamma and bottom
	                      * dropped per tensor, weighted sum */
	LINES_M_BREADCRUMBS_TIES, /* breadcrumbs' cuts, then TIES's sign election */
	LINES_M_SCE,        /* mergekit's sce: select by variance, weights, TIES election */
	LINES_M_PASSTHROUGH, /* mergekit's passthrough: the one model's bytes, copied */
	LINES_M_ARCEE_FUSION, /* mergekit's arcee_fusion: one model's changes where their
	                       * importance is a tensor's outlier */
};

/* The method called NAME ("sum", "task_arithmetic", "mean", "ties",
 * "dare", "dare_linear", "dare_ties", "linear", "nearswap", "consensus",
 * "slerp", "nuslerp", "multislerp", "model_stock", "ram", "ramplus_tl",
 * "karcher", "della", "della_linear", "breadcrumbs", "breadcrumbs_ties", "sce",
 * "passthrough", "arcee_fusion"):
 * 0, or -1 when there is none. An alias parses to the method it names;
 * lines_method_name() gives the one canonical name ("sum" for
 * "task_arithmetic", "dare" for "dare_linear" and "dare_ties"). */
int lines_method_parse(const char *name, enum lines_method *m);
/* The name of a method, NULL for a value that is none. */
const char *lines_method_name(enum lines_method m);
/* The method-specific options a method takes (LINES_MOPT_*), so that a
 * front end can refuse the others. */
enum {
	LINES_MOPT_DENSITY = 1 << 0, /* density                              */
	LINES_MOPT_TRIM = 1 << 1,    /* trim_tensor                          */
	LINES_MOPT_SEED = 1 << 2,    /* seed, dare_elect                     */
	LINES_MOPT_NORMALIZE = 1 << 3, /* no_normalize                       */
	LINES_MOPT_T = 1 << 4,       /* t (nearswap's threshold)             */
	LINES_MOPT_WEIGHTS = 1 << 5, /* weights                              */
	LINES_MOPT_NO_BASE = 1 << 6, /* base may be NULL (linear)            */
	LINES_MOPT_ONE_MODEL = 1 << 7, /* exactly one model (nearswap)       */
	LINES_MOPT_CONSENSUS = 1 << 8, /* consensus_k, tall_lambda(s)        */
	LINES_MOPT_RESCALE = 1 << 9, /* rescale (dare)                       */
	LINES_MOPT_EPSILON = 1 << 10, /* ram_epsilon (ram, ramplus_tl); della_epsilon(s) (della) */
	LINES_MOPT_RAM = 1 << 11,    /* ram_r, ram_alpha (ramplus_tl)        */
	LINES_MOPT_PER_ROW = 1 << 16, /* per_row (model_stock, nuslerp)      */
	LINES_MOPT_KARCHER = 1 << 15, /* max_iter, tol (karcher)             */
	LINES_MOPT_BC_GAMMA = 1 << 12, /* bc_gamma(s) (breadcrumbs*)          */
	LINES_MOPT_SELECT_TOPK = 1 << 14, /* select_topk (sce)               */
};
unsigned lines_method_options(enum lines_method m);
/* DARE's rescaling of the kept values (lines_merge_opts.rescale). */
enum { LINES_RESCALE_DENSITY, LINES_RESCALE_L1, LINES_RESCALE_NONE };
/* lines_method_parse(), and the options a name implies: "dare_ties" is
 * dare with dare_elect set, "dare_linear" dare without (the name sets
 * o->method, and dare_elect for those two). 0, or -1 when there is no
 * method of that name. */
struct lines_merge_opts;
struct lines_tensor_at;
struct lines_tensor_params;
int lines_method_select(struct lines_merge_opts *o, const char *name);
enum lines_io { LINES_IO_AUTO, LINES_IO_MMAP, LINES_IO_URING };

/* The option a sweep varies (lines-merge(1), SWEEPS). */
enum lines_sweep {
	LINES_SWEEP_NONE,
	LINES_SWEEP_BETA,   /* LiNeS's beta                              */
	LINES_SWEEP_LAMBDA, /* the global coefficient without LiNeS      */
	LINES_SWEEP_ALPHA,  /* LiNeS's alpha, given                      */
	LINES_SWEEP_GAMMA,  /* single-task LiNeS: alpha = G, beta = 1 - G */
};
/* "beta", "lambda", "alpha", "gamma"; NULL for LINES_SWEEP_NONE */
const char *lines_sweep_name(enum lines_sweep s);
struct lines_merge_opts;
/* The options of value v of opts' sweep: what a run with that one value
 * alone is given (its output sweep_outputs[v], no sweep). */
void lines_sweep_value(const struct lines_merge_opts *opts, size_t v,
                       struct lines_merge_opts *out);

struct lines_merge_opts {
	const char *command; /* recorded in the output: "merge" or "scale" */
	const char *base; /* NULL only for a method with LINES_MOPT_NO_BASE */
	const char *const *models;
	size_t nmodels;

	enum lines_method method;
	const double *weights; /* nmodels entries, or NULL for all 1        */
	double lambda;         /* global coefficient without LiNeS           */

	int lines;      /* apply layer-increasing scaling                  */
	int alpha_auto; /* alpha from the norms of the task vectors        */
	double alpha;
	double beta;
	int norm_p; /* 1 or 2                                              */
	/* LiNeS's depth schedule (lines' extension): block i of a ramp of L
	 * blocks gets alpha + beta * f(i / (L - 1)) instead of alpha + beta *
	 * i / (L - 1), f the piecewise-linear curve through the nschedule
	 * values at evenly spaced depths (lines_gradient()); f(0) for L = 1;
	 * tensors outside the blocks keep alpha. NULL: the linear ramp. At
	 * least 2 finite values; only with lines. The array is the caller's
	 * and must outlive the plan. */
	const double *schedule;
	size_t nschedule;

	/* ties, dare, breadcrumbs (lines merge's default for breadcrumbs is
	 * 1, mergekit's: nothing dropped)                                  */
	double density;
	/* ties, dare: one density per model (nmodels entries, each in
	 * (0, 1]), or NULL for density for every model */
	const double *densities;
	int trim_tensor; /* ties: per-tensor instead of global threshold    */
	uint64_t seed;  /* dare                                            */
	int dare_elect;
	/* linear: the weighted sum, not divided by sum(w); ties, dare with
	 * dare_elect and breadcrumbs_ties: the sum of the agreeing w_i tau_i,
	 * not divided by the sum of their weights; breadcrumbs: the sum, not
	 * divided by sum(w) (lines merge sets it for breadcrumbs unless
	 * --normalize: mergekit's default) */
	int no_normalize;
	/* dare: how kept values are rescaled: LINES_RESCALE_DENSITY (the
	 * default: divided by the density), LINES_RESCALE_L1 (mergekit's
	 * rescale: each task vector's L1 norm per tensor kept) or
	 * LINES_RESCALE_NONE */
	int rescale;
	double t; /* nearswap: the sameness threshold, > 0; slerp: the
	           * position, 0 the base, 1 the model (any finite value) */
	/* consensus: an element is kept where at least consensus_k of the
	 * models' TALL masks hold it (default 2); mask t compares with
	 * tall_lambdas[t] (nmodels entries), or with tall_lambda (default
	 * 0.4) for every model when tall_lambdas is NULL */
	unsigned consensus_k;
	double tall_lambda;
	const double *tall_lambdas;
	/* consensus: the merged vector that the masks compare with and keep
	 * is TIES's (density, trim_tensor, weights and no_normalize as for
	 * ties), not the task-arithmetic sum */
	int consensus_ties;
	/* ram, ramplus_tl: model i changed an element where |tau_i| >
	 * ram_epsilon (default 1e-5, at least 0); ramplus_tl: lambda_i = 1 +
	 * ram_r clamp(shared_i / max(unique_i, ram_epsilon), 0, ram_alpha)
	 * (defaults 0.1 and 0.2) */
	double ram_epsilon;
	double ram_r;
	double ram_alpha;
	/* model_stock (mergekit's filter_wise: true), nuslerp (nuslerp_flatten:
	 * false): the angles are taken per row (the elements that share all
	 * but their last index; a tensor of rank 0 or 1 is one row) instead of
	 * over the flattened tensor */
	int per_row;
	/* karcher: at most max_iter updates of each tensor's mean (default
	 * 10, at least 1), stopped once the tangent's norm is below tol
	 * (default 1e-5, > 0), which also leaves out models of norm <= tol */
	unsigned max_iter;
	double tol;
	/* della, della_linear: model i keeps an element with a probability
	 * from density_i - epsilon_i (the smallest |tau_i| of its row) to
	 * density_i + epsilon_i (the largest): della_epsilons[i] (nmodels
	 * entries), or della_epsilon (default 0.15, mergekit's) for every
	 * model when della_epsilons is NULL; both ends in (0, 1) when
	 * density_i < 1. seed, density(ies) and rescale as for dare (divided
	 * by that probability by default) */
	double della_epsilon;
	const double *della_epsilons;
	/* breadcrumbs, breadcrumbs_ties: the fraction of each task vector's
	 * largest magnitudes dropped per tensor (mergekit's gamma, default
	 * 0.01), bc_gammas[i] for model i (nmodels entries) unless NULL */
	double bc_gamma;
	const double *bc_gammas;
	/* sce: the fraction of the positions with a nonzero variance across
	 * the task vectors that is kept, those of largest variance, in [0, 1]
	 * (default 1: no selection) */
	double select_topk;

	const char *dtype; /* output dtype "BF16"/"F16"/"F32", NULL = base's */
	struct lines_layer_opts layers;

	const char *output; /* path, or "-" for standard output             */
	unsigned jobs;      /* worker threads; 0 = online CPUs              */
	enum lines_io io;
	int direct;   /* io_uring reads with O_DIRECT where possible      */
	size_t chunk; /* bytes read from each input per step; 0 = default */
	int strict;   /* non-float tensors that differ are an error       */
	/* embeddings and output heads of a model with a larger vocabulary
	 * are merged over the base's rows only (mergekit's choice); 0: such
	 * a model is refused */
	int vocab_base;
	/* a directory output: the tokenizer files (tokenizer.json,
	 * tokenizer_config.json, tokenizer.model, special_tokens_map.json,
	 * vocab.json, merges.txt, ...) come from this model's directory
	 * instead of the base's (mergekit's tokenizer_source: MODEL); NULL:
	 * the base's. Its vocabulary must be the base's: its embeddings and
	 * heads have the base's rows, and its tokenizer.json (vocab.json)
	 * the base's tokens, or the plan is refused (LINES_EMISMATCH). */
	const char *tokenizer_source;

	/* OUT ending in .zst is compressed; 0 = the default level (1) */
	int zstd_level;
	/* OUT.xxh128 and OUT.manifest.json are written for a file output
	 * unless no_checksum; checksum_file and manifest_file name other
	 * places (for standard output, the only way to get them) */
	int no_checksum;
	const char *checksum_file;
	const char *manifest_file;

	/* an output directory (OUT ending in / or an existing empty
	 * directory): shards of at most shard_size bytes (0: 5 GB), and the
	 * base directory's small files copied unless no_copy */
	uint64_t shard_size;
	int no_copy;
	/* a directory output: the configuration of the run as YAML (what
	 * `lines merge --print-config` prints), written as lines_config.yml
	 * and shown in README.md; NULL for none */
	const char *config_yaml;

	/* measure per-block norms only (lines_block_norms), write nothing */
	int norms_only;

	/* a partitioned run (--part K/M, partition.c): part_m parts, 0 for
	 * none; this run writes only the output shards of part part_k (shard
	 * s of S belongs to part floor(s M / S)) into the directory output,
	 * for `lines index` to assemble. stats_in: a combined statistics
	 * file (`lines stats`) with the whole-model results of the rounds
	 * before; stats_out: measure this part's share of the next round
	 * and write it there instead of any output. */
	unsigned part_k, part_m;
	const char *stats_in;
	const char *stats_out;

	/* a sweep: nsweep (at least 2) values of one option, each written to
	 * its own output sweep_outputs[v] (output is not used), from one read
	 * of the inputs; the value in the option itself is not used either */
	enum lines_sweep sweep;
	size_t nsweep;
	const double *sweep_values;
	const char *const *sweep_outputs;
	/* the configuration of each value (config_yaml of its output), or
	 * NULL for config_yaml for every value */
	const char *const *sweep_config_yaml;

	/* mergekit's slices (layer stacking): with nslices > 0 every input is
	 * composed of one layer range of a model per slice, the slices' blocks
	 * one after the other and renumbered from 0; base and models then
	 * only name the inputs. slices[s].src has one entry per input, in the
	 * inputs' order: the base's first when base is given, then the
	 * models' (without a base, input 0 reads the first model's again).
	 * Tensors outside the blocks come from the first slice's model (the
	 * embeddings) and the last slice's (the others), as in mergekit; a
	 * directory output's config.json gets the new number of blocks. */
	const struct lines_slice *slices;
	size_t nslices;
	/* optional: per-tensor values of t (slerp), as mergekit's gradients
	 * and filters give them: called once for every merged tensor while
	 * the plan is made, with *t set to opts.t first; t_ctx is its first
	 * argument. -n --json and the manifest give each tensor's t. */
	void (*tensor_t)(void *t_ctx, const struct lines_tensor_at *at, double *t);
	void *t_ctx;
	/* optional: per-tensor weights and densities (and t), as mergekit's
	 * gradients and filters give them: called once for every merged
	 * tensor while the plan is made (after tensor_t), with *p holding the
	 * run's values (opts.weights or 1, the densities, the tensor's t);
	 * tp_ctx is its first argument. Only the methods that read a weight
	 * (a density) per tensor take one: sum, mean, linear, nuslerp,
	 * multislerp, ties (density with --trim tensor only), dare,
	 * breadcrumbs, della; for the
	 * others a value that differs from the run's is an error. -n --json
	 * and the manifest give each tensor's weights and densities. */
	void (*tensor_params)(void *tp_ctx, const struct lines_tensor_at *at,
	                      struct lines_tensor_params *p);
	void *tp_ctx;

	lines_log_fn log;
	lines_progress_fn progress;
	void *cb_ctx;
};

/* A tensor's parameters (tensor_params): t, and one weight and one
 * density per model (w[i], density[i] for i < nmodels). */
struct lines_tensor_params {
	double t;
	double *w;
	double *density;
	unsigned nmodels;
};

/* Where an output tensor is, for per-tensor values (tensor_t). */
struct lines_tensor_at {
	const char *name;
	long block;      /* -1 outside the blocks */
	long num_layers; /* of its stack (the output's) */
	/* with slices: the slice (0-based) its block is in, the block's
	 * position in it and the slice's blocks; outside the blocks, slice
	 * is 0 for an embedding and the last slice for the other tensors
	 * (where they come from), and slice_block is -1. Without slices:
	 * 0, block and num_layers. */
	size_t slice;
	long slice_block, slice_layers;
};

/* One source of a slice: blocks [first, end) of a model (a path or hub
 * id, as a MODEL argument). */
struct lines_slice_src {
	const char *model;
	long first, end;
};
/* One slice: as many sources as inputs (lines_merge_opts.slices). */
struct lines_slice {
	const struct lines_slice_src *src;
};

/* Fill opts with the defaults (sum, lambda 1, L1 norm, density 0.2, ...). */
void lines_merge_opts_init(struct lines_merge_opts *opts);

/*
 * mergekit's gradient: the value at t in [0, 1] of the piecewise-linear
 * curve through g[0..n-1] (n >= 1) at t = 0, 1/(n-1), ..., 1: with
 * s = t (n - 1), i = floor(s), f = s - i, (1 - f) g[i] + f g[i + 1];
 * g[n - 1] from t = 1 on (and g[0] for t <= 0). Pure; thread-safe.
 */
double lines_gradient(const double *g, size_t n, double t);

/*
 * A merge plan: the inputs, opened and checked against each other, the
 * output layout, the scale of every block and the passes to run.
 */
struct lines_plan;

/* A stack of blocks and its LiNeS ramp: its block i gets
 * alpha + beta * (first + i) / (ramp - 1) (with a schedule: alpha + beta *
 * f((first + i) / (ramp - 1))). */
struct lines_stack_info {
	const char *name;
	long num_layers;
	long first;
	long ramp;
	const double *lambda; /* num_layers entries (valid once alpha_known) */
};

struct lines_plan_info {
	size_t ntensors;
	size_t nfloat;       /* tensors that are merged                       */
	long num_layers;     /* L                                             */
	int alpha_known;     /* 0 until the norm pass has run                 */
	double alpha, beta;  /* the LiNeS coefficients (lines only)           */
	const double *lambda; /* num_layers entries: scale of block i          */
	double lambda_outside; /* scale of tensors outside the blocks          */
	double norm_sum;     /* ||tau_1 + ... + tau_N||_p, when computed       */
	double norm_mtl;     /* ||tau_MTL||_p, when computed                   */
	unsigned npasses;
	const char *const *pass_names;
	const uint64_t *pass_read_bytes; /* input bytes each pass reads        */
	uint64_t output_bytes;           /* size of the output (uncompressed)  */
	uint64_t written_bytes;          /* after a run: bytes of the file (.zst) */
	uint64_t memory_bound;           /* bytes the run holds at most: its
	                                  * buffers and memory_metadata */
	uint64_t memory_metadata;        /* of which the headers and tables: the
	                                  * heap measured while the plan was made
	                                  * (0 where it cannot be measured) */
	uint64_t memory_scratch;         /* of which the workers' scratch in the
	                                  * pass that needs the most (della: its
	                                  * rows, the longest slab per model) */
	size_t chunk;                    /* chosen chunk size                   */
	unsigned jobs;                   /* worker threads                      */
	const char *io;                  /* "mmap" or "uring"                   */
	const char *kernels;             /* "scalar", "avx2", ...               */
	/* per pass: 1 when it runs only if the passes before leave it work
	 * (TIES's threshold pass); after a run, 1 in pass_skipped when it
	 * did not run */
	const unsigned char *pass_optional;
	const unsigned char *pass_skipped;
	/* the stacks of blocks; lambda above is their common ramp when there
	 * is one (one stack, or --stacks joint), else NULL */
	size_t nstacks;
	const struct lines_stack_info *stacks;
	/* FP8 checkpoints: the base's scale tensors left out (the weights
	 * written dequantized), or written with new values (--dtype fp8) */
	size_t nscales_dropped;
	size_t nscales_new;
	/* the outputs: one, or one per value of a sweep (outputs[0] is the
	 * plan's own: alpha, beta and lambda above are its value's) */
	size_t noutputs;
	const char *const *outputs;
	/* the dtypes of the inputs' merged matrices (tensors of two or more
	 * dimensions), every input's, in order of first appearance ("Q4_K":
	 * every input quantized the same way); the output matrices' dtype when
	 * they all have one, else NULL; and when that is a ggml block type
	 * (Q8_0, Q4_K, ...), the relative RMS error of a round trip through it
	 * as measured on lines' test family (lines-merge(1), GGUF round-trip
	 * error): an estimate of what writing in that type costs, else NaN */
	size_t ninput_types;
	const char *const *input_types;
	const char *output_type;
	double roundtrip_rms;
};

/* Open every input, check every header, and lay out the output. */
int lines_plan_new(const struct lines_merge_opts *opts, struct lines_plan **out,
                   struct lines_error *err);
const struct lines_plan_info *lines_plan_info(const struct lines_plan *p);
/* Tensor i of the output (in output order), with its block and scale. */
void lines_plan_tensor(const struct lines_plan *p, size_t i, struct lines_tensor_info *info,
                       double *lambda);
/*
 * Run the passes and write the output. On failure or cancellation no
 * output file is left behind (a partial stream may have reached standard
 * output).
 */
int lines_plan_run(struct lines_plan *p, struct lines_error *err);
void lines_plan_free(struct lines_plan *p);

/*
 * The plan as one JSON object, for programs and tests (what `lines merge
 * -n --json` prints): the method and its options, the inputs and the
 * output, alpha, beta and lambda per block (null while a pass has still
 * to measure them), the passes, the sizes and the memory bound, and every
 * tensor with its block and lambda. With after_run, once lines_plan_run()
 * has succeeded, also what only the run knows: the bytes written, which
 * passes were skipped, the norms and what TIES and DARE decided; before a
 * run, or with after_run 0, those are null. Numbers that are infinite or
 * NaN are the strings "inf", "-inf" and "nan", as in the manifest.
 * lines-merge(1) lists the keys. Returns a malloc'd, NUL-terminated text
 * the caller frees, or NULL when memory runs out.
 */
char *lines_plan_json(const struct lines_plan *p, int after_run);

/*
 * Per block, the L1 and L2 norms of each task vector and of the base:
 * rows 0..num_layers-1 are the blocks, row num_layers the tensors outside
 * them. Arrays belong to the plan.
 */
struct lines_block_norms {
	long num_layers;
	size_t nmodels;
	double *tau_l1, *tau_l2;   /* (num_layers + 1) x nmodels */
	double *base_l1, *base_l2; /* num_layers + 1 */
	uint64_t *elements;        /* floating elements per row */
};
/*
 * Partitioned runs (partition.c). lines_stats_combine: check that files
 * (n of them) are every part 0..M-1 of one plan and round, each once,
 * and write their combined statistics to out (a temporary name, then
 * renamed). lines_index: check that the directory dir holds every shard
 * of its plan (.lines-plan.json, written by each part) with a matching
 * XXH3-128, then write the files a one-machine run writes besides the
 * shards (the index, README.md, lines_config.yml) and remove the plan
 * file: dir is then what `lines merge -o dir/` writes. log (may be NULL)
 * takes the notes.
 */
int lines_stats_combine(const char *const *files, size_t n, const char *out,
                        const struct lines_merge_opts *log, struct lines_error *err);
int lines_index(const char *dir, const struct lines_merge_opts *log, struct lines_error *err);

/* Run a plan made with norms_only and return its norms. */
int lines_block_norms(struct lines_plan *p, const struct lines_block_norms **out,
                      struct lines_error *err);

/* ---- verifying an output --------------------------------------------------- */
struct lines_verify_opts {
	const char *checksum_file; /* NULL: FILE.xxh128, if it exists        */
	const char *manifest_file; /* NULL: FILE.manifest.json, if it exists */
	lines_log_fn log;          /* every problem found, with its tensor   */
	void *cb_ctx;
};

struct lines_verify_result {
	int compressed;       /* FILE ends in .zst: its frames were checked */
	int sidecar_checked;  /* the XXH3-128 of the file was compared      */
	int manifest_checked; /* every tensor was compared with the manifest */
	size_t tensors_checked;
	size_t problems;
};

/*
 * Read FILE once: check its header as strictly as an input, its zstd
 * frames and content checksum (.zst), the XXH3-128 of the file against
 * the sidecar, and every tensor's XXH3 against the manifest (and the
 * file's XXH3-128 against the manifest's, where no sidecar gives it and
 * the file is stored as the manifest says: compressed or not). Returns 0
 * when all is well, LINES_ECORRUPT when problems were found (each one was
 * logged, naming the tensor, the header or the compressed stream), or
 * another error when the file cannot be read at all.
 */
int lines_verify(const char *path, const struct lines_verify_opts *o,
                 struct lines_verify_result *r, struct lines_error *err);

#ifdef __cplusplus
}
#endif
#endif /* LINES_H */
