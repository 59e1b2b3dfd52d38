/*
 * cmd_merge.c -- lines merge and lines scale.
 *
 * scale is merge with one model and LiNeS set by --gamma; both parse the
 * same options into struct lines_merge_opts and share the reporting.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "merge_config.h"

enum {
	OPT_LAMBDA = 256, OPT_LINES, OPT_ALPHA, OPT_BETA, OPT_GAMMA, OPT_NORM, OPT_DENSITY,
	OPT_TRIM, OPT_SEED, OPT_DARE_ELECT, OPT_DTYPE, OPT_LAYER_REGEX, OPT_NUM_LAYERS, OPT_IO,
	OPT_CHUNK, OPT_STRICT, OPT_DIRECT, OPT_ZSTD_LEVEL, OPT_NO_CHECKSUM, OPT_CHECKSUM_FILE,
	OPT_MANIFEST, OPT_SHARD_SIZE, OPT_NO_COPY, OPT_JSON, OPT_STACKS, OPT_STACK_ORDER, OPT_VOCAB,
	OPT_NORMALIZE, OPT_NO_NORMALIZE, OPT_T, OPT_CONSENSUS_K, OPT_TALL_LAMBDA, OPT_CONSENSUS_OVER,
	OPT_RESCALE, OPT_NO_RESCALE, OPT_EPSILON, OPT_RAM_R, OPT_RAM_ALPHA, OPT_PER_ROW, OPT_CONFIG,
	OPT_PRINT_CONFIG, OPT_MAX_ITER, OPT_TOL, OPT_BC_GAMMA, OPT_SELECT_TOPK, OPT_SCHEDULE, OPT_TOKENIZER_SOURCE,
	OPT_PART, OPT_STATS, OPT_STATS_OUT, OPT_COUNT
};

static const struct option merge_options[] = {
	{"base", required_argument, NULL, 'b'},
	{"method", required_argument, NULL, 'm'},
	{"weights", required_argument, NULL, 'w'},
	{"lambda", required_argument, NULL, OPT_LAMBDA},
	{"lines", no_argument, NULL, OPT_LINES},
	{"alpha", required_argument, NULL, OPT_ALPHA},
	{"beta", required_argument, NULL, OPT_BETA},
	{"gamma", required_argument, NULL, OPT_GAMMA},
	{"schedule", required_argument, NULL, OPT_SCHEDULE},
	{"norm", required_argument, NULL, OPT_NORM},
	{"density", required_argument, NULL, OPT_DENSITY},
	{"trim", required_argument, NULL, OPT_TRIM},
	{"seed", required_argument, NULL, OPT_SEED},
	{"dare-elect", no_argument, NULL, OPT_DARE_ELECT},
	{"normalize", no_argument, NULL, OPT_NORMALIZE},
	{"no-normalize", no_argument, NULL, OPT_NO_NORMALIZE},
	{"t", required_argument, NULL, OPT_T},
	{"consensus-k", required_argument, NULL, OPT_CONSENSUS_K},
	{"tall-lambda", required_argument, NULL, OPT_TALL_LAMBDA},
	{"consensus-over", required_argument, NULL, OPT_CONSENSUS_OVER},
	{"rescale", no_argument, NULL, OPT_RESCALE},
	{"no-rescale", no_argument, NULL, OPT_NO_RESCALE},
	{"epsilon", required_argument, NULL, OPT_EPSILON},
	{"ram-r", required_argument, NULL, OPT_RAM_R},
	{"ram-alpha", required_argument, NULL, OPT_RAM_ALPHA},
	{"per-row", no_argument, NULL, OPT_PER_ROW},
	{"max-iter", required_argument, NULL, OPT_MAX_ITER},
	{"tol", required_argument, NULL, OPT_TOL},
	{"bc-gamma", required_argument, NULL, OPT_BC_GAMMA},
	{"select-topk", required_argument, NULL, OPT_SELECT_TOPK},
	{"dtype", required_argument, NULL, OPT_DTYPE},
	{"layer-regex", required_argument, NULL, OPT_LAYER_REGEX},
	{"num-layers", required_argument, NULL, OPT_NUM_LAYERS},
	{"stacks", required_argument, NULL, OPT_STACKS},
	{"stack-order", required_argument, NULL, OPT_STACK_ORDER},
	{"vocab", required_argument, NULL, OPT_VOCAB},
	{"tokenizer-source", required_argument, NULL, OPT_TOKENIZER_SOURCE},
	{"output", required_argument, NULL, 'o'},
	{"jobs", required_argument, NULL, 'j'},
	{"io", required_argument, NULL, OPT_IO},
	{"chunk", required_argument, NULL, OPT_CHUNK},
	{"direct", no_argument, NULL, OPT_DIRECT},
	{"zstd-level", required_argument, NULL, OPT_ZSTD_LEVEL},
	{"no-checksum", no_argument, NULL, OPT_NO_CHECKSUM},
	{"checksum-file", required_argument, NULL, OPT_CHECKSUM_FILE},
	{"manifest", required_argument, NULL, OPT_MANIFEST},
	{"shard-size", required_argument, NULL, OPT_SHARD_SIZE},
	{"no-copy", no_argument, NULL, OPT_NO_COPY},
	{"strict", no_argument, NULL, OPT_STRICT},
	{"quiet", no_argument, NULL, 'q'},
	{"verbose", no_argument, NULL, 'v'},
	{"dry-run", no_argument, NULL, 'n'},
	{"json", no_argument, NULL, OPT_JSON},
	{"config", required_argument, NULL, OPT_CONFIG},
	{"print-config", no_argument, NULL, OPT_PRINT_CONFIG},
	{"part", required_argument, NULL, OPT_PART},
	{"stats", required_argument, NULL, OPT_STATS},
	{"stats-out", required_argument, NULL, OPT_STATS_OUT},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static int takes_value(int c)
{
	for (const struct option *o = merge_options; o->name; o++)
		if (o->val == c)
			return o->has_arg == required_argument;
	return 0;
}

/* "-b/--base" for 'b', "--alpha" for OPT_ALPHA. */
static const char *option_name(int c)
{
	static char buf[64];
	for (const struct option *o = merge_options; o->name; o++)
		if (o->val == c) {
			if (c < 256)
				snprintf(buf, sizeof(buf), "-%c/--%s", c, o->name);
			else
				snprintf(buf, sizeof(buf), "--%s", o->name);
			return buf;
		}
	return "an option";
}

static void merge_help(void)
{
	printf("usage: lines merge -b BASE [-m METHOD] [-w W1,W2,...] [--lambda X]\n"
	       "                   [--lines [--alpha A|auto] [--beta B] | --gamma G] [--norm l1|l2]\n"
	       "                   [--schedule F0,F1,...]\n"
	       "                   [--density D] [--trim global|tensor] [--seed S] [--dare-elect]\n"
	       "                   [--normalize | --no-normalize] [--rescale | --no-rescale] [--t T]\n"
	       "                   [--consensus-k K] [--tall-lambda L|L1,L2,...]\n"
	       "                   [--consensus-over ta|ties]\n"
	       "                   [--epsilon E] [--ram-r R] [--ram-alpha A] [--per-row]\n"
	       "                   [--max-iter N] [--tol X] [--bc-gamma G] [--select-topk F]\n"
	       "                   [--dtype bf16|f16|f32|f64|fp8] [--layer-regex RE] [--num-layers L]\n"
	       "                   [--stacks separate|joint | --stack-order A,B]\n"
	       "                   [--tokenizer-source MODEL|base]\n"
	       "                   [-o OUT] [-j N] [--io auto|mmap|uring] [--direct] [--chunk SIZE]\n"
	       "                   [--zstd-level N] [--no-checksum | --checksum-file F --manifest F]\n"
	       "                   [--strict] [-q] [-v] [-n] [--json] MODEL...\n"
	       "       lines merge --config FILE.yml [options] [-o OUT]\n"
	       "       lines merge ... --print-config\n\n"
	       "  MODEL and BASE may be a .safetensors file, a model.safetensors.index.json or a\n"
	       "  directory holding either, - (standard input), or end in .zst (decompressed);\n"
	       "  org/name[@rev] names a model in the local Hugging Face cache.\n"
	       "  OUT ending in / (or an empty directory) is written as a model directory.\n"
	       "  OUT ending in .zst is compressed; OUT.xxh128 and OUT.manifest.json go with it.\n\n"
	       "  -b, --base BASE     the pre-trained model the task vectors are taken from\n"
	       "                      (optional with -m linear, nuslerp, multislerp and\n"
	       "                      karcher: then only for LiNeS, --lambda; with -m slerp,\n"
	       "                      the t = 0 end)\n"
	       "  -m, --method M      sum (task arithmetic, default; also task_arithmetic),\n"
	       "                      mean (model soup), ties (TIES-merging), dare (drop and\n"
	       "                      rescale; also dare_linear), dare_ties (dare with\n"
	       "                      --dare-elect), linear (weighted mean of the models),\n"
	       "                      nearswap (one model where it is within --t of the base),\n"
	       "                      consensus (sum where K TALL masks agree), slerp\n"
	       "                      (spherical, from the base at --t 0 to the one model at 1),\n"
	       "                      nuslerp (spherical, two models, t from their weights;\n"
	       "                      of their task vectors with -b), multislerp (N <= 7\n"
	       "                      models on the sphere around their weighted mean; of\n"
	       "                      their task vectors with -b), model_stock (the\n"
	       "                      models' mean pulled toward the base by their angle),\n"
	       "                      ram (mean over the models that changed an element),\n"
	       "                      ramplus_tl (ram, lone changes scaled per tensor),\n"
	       "                      karcher (the Riemannian mean of N <= 8 models on the\n"
	       "                      sphere, scaled by their mean norm; no weights),\n"
	       "                      della (drops by magnitude rank in each row, rescaled,\n"
	       "                      then ties's election), della_linear (della, summed),\n"
	       "                      breadcrumbs (each task vector's largest and smallest\n"
	       "                      magnitudes dropped per tensor), breadcrumbs_ties\n"
	       "                      (breadcrumbs, then ties's election), sce (positions\n"
	       "                      of high variance, weights from mean squares, signs\n"
	       "                      elected as ties), passthrough (one model's tensors\n"
	       "                      copied; layer stacking with a configuration's\n"
	       "                      slices:) or arcee_fusion (one model's changes where\n"
	       "                      |tau| times its row's softmax KL is a tensor's\n"
	       "                      outlier, above median + 1.5 IQR)\n"
	       "  -w, --weights LIST  one weight per MODEL (default 1 each; not nearswap,\n"
	       "                      slerp, model_stock, ram, ramplus_tl, karcher, sce or\n"
	       "                      arcee_fusion)\n"
	       "      --lambda X      global scale of the merged task vector (default 1)\n"
	       "      --lines         scale block i of L by alpha + beta * i / (L - 1)\n"
	       "      --alpha A|auto  LiNeS alpha; auto (the default for several models) sets\n"
	       "                      ||tau_1 + ... + tau_N|| / (N ||tau_merged||)\n"
	       "      --beta B        LiNeS beta (default max(0, 1 - alpha): the last block\n"
	       "                      gets 1)\n"
	       "      --gamma G       single-task LiNeS: alpha = G, beta = 1 - G\n"
	       "      --schedule F0,F1,...  LiNeS's depth schedule (lines' extension): block i\n"
	       "                      of L gets alpha + beta * f(i / (L - 1)), f piecewise\n"
	       "                      linear through the values at evenly spaced depths\n"
	       "                      (default 0,1: the linear ramp)\n"
	       "      --beta, --lambda, --alpha, --gamma A,B,...  a sweep: one output per value,\n"
	       "                      from one read of the inputs; -o names {beta} (or\n"
	       "                      {lambda}, {alpha}, {gamma}) where the value goes, as\n"
	       "                      written: -o 'merged-beta{beta}.safetensors'\n"
	       "      --norm l1|l2    the norm of automatic alpha (default l1)\n"
	       "      --density D     ties: fraction of each task vector kept by magnitude;\n"
	       "                      dare: probability of keeping an entry; della: the\n"
	       "                      mean keep probability (default 0.2); breadcrumbs:\n"
	       "                      fraction kept per tensor (default 1, as mergekit:\n"
	       "                      nothing dropped); a list D1,D2,... gives one per MODEL\n"
	       "      --trim global|tensor  ties: one threshold per task over the whole model\n"
	       "                      (default) or one per tensor\n"
	       "      --seed S        dare, della: the seed of the drops (default 0)\n"
	       "      --dare-elect    dare: elect signs and average as ties does\n"
	       "      --normalize, --no-normalize  linear, multislerp: divide the weights by\n"
	       "                      their sum; ties, dare_ties, della, breadcrumbs_ties: by\n"
	       "                      the sum of the agreeing ones (default) or not;\n"
	       "                      breadcrumbs: by the sum of the weights (default: not,\n"
	       "                      as mergekit)\n"
	       "      --rescale, --no-rescale  dare, della: rescale the kept values to keep each\n"
	       "                      task vector's L1 norm per tensor (mergekit's rescale),\n"
	       "                      or not (default: divide them by the density; della: by\n"
	       "                      their keep probability)\n"
	       "      --t T           nearswap: the sameness threshold, T > 0 (required);\n"
	       "                      slerp: the position, 0 the base, 1 the model (required)\n"
	       "      --consensus-k K consensus: keep an element where at least K of the\n"
	       "                      models' TALL masks hold it (default 2; 0 keeps all)\n"
	       "      --tall-lambda L|L1,L2,...  consensus: task t's mask is\n"
	       "                      |tau_t| > L_t |tau_sum - tau_t| (default 0.4 each)\n"
	       "      --consensus-over ta|ties  consensus: the masked vector is the\n"
	       "                      task-arithmetic sum (default) or TIES's merge (then\n"
	       "                      --density, --trim, --no-normalize as for ties)\n"
	       "      --epsilon E     ram, ramplus_tl: model i changed an element where\n"
	       "                      |tau_i| > E (default 1e-5, E >= 0); della: keep\n"
	       "                      probabilities from D - E (the smallest |tau| of a row)\n"
	       "                      to D + E (the largest), both in (0, 1) (default 0.15;\n"
	       "                      a list E1,E2,... gives one per MODEL)\n"
	       "      --ram-r R       ramplus_tl: lambda_i = 1 + R clamp(rho_i, 0, A), rho_i\n"
	       "                      = shared_i / max(unique_i, E) per tensor (default 0.1)\n"
	       "      --ram-alpha A   ramplus_tl: the clamp of rho_i (default 0.2, A >= 0)\n"
	       "      --per-row       model_stock, nuslerp: the angles per row (mergekit's\n"
	       "                      filter_wise, nuslerp_flatten: false), not per tensor\n"
	       "      --max-iter N    karcher: at most N steps of each tensor's mean (default\n"
	       "                      10, N >= 1)\n"
	       "      --tol X         karcher: stop once the step is shorter than X; models\n"
	       "                      of norm <= X are left out (default 1e-5, X > 0)\n"
	       "      --bc-gamma G|G1,G2,...  breadcrumbs, breadcrumbs_ties: fraction of each\n"
	       "                      task vector's largest magnitudes dropped per tensor\n"
	       "                      (mergekit's gamma; default 0.01; not LiNeS's --gamma)\n"
	       "      --select-topk F sce: keep the fraction F of the positions, those whose\n"
	       "                      task vectors vary most (default 1: all; 0 <= F <= 1)\n"
	       "      --dtype T       output dtype of merged tensors (default: the base's);\n"
	       "                      a .gguf output also takes q8_0 q4_0 q4_1 q5_0 q5_1\n"
	       "                      q4_k q5_k q6_k (matrices; 1-D tensors keep theirs)\n"
	       "      --layer-regex RE  POSIX ERE whose one capture group is the block index,\n"
	       "                      or whose two are the stack, then the index\n"
	       "      --num-layers L  number of blocks of every stack (default: 1 + its\n"
	       "                      largest index)\n"
	       "      --stacks separate|joint  one LiNeS ramp per stack of blocks (default), or\n"
	       "                      one over all (the official LiNeS code)\n"
	       "      --stack-order A,B  chain stacks that run one after the other into one\n"
	       "                      ramp (Flux: double_blocks,single_blocks)\n"
	       "  -o, --output OUT    output file, or - for standard output\n"
	       "  -j, --jobs N        worker threads (default: online CPUs)\n"
	       "      --io auto|mmap|uring  how inputs are read (default auto: io_uring if\n"
	       "                      the kernel allows it, else mmap)\n"
	       "      --direct        io_uring reads with O_DIRECT (bypass the page cache)\n"
	       "      --chunk SIZE    bytes read from each input per step (default 512K with\n"
	       "                      io_uring, 4M with mmap)\n"
	       "      --strict        non-float tensors that differ from the base are an error\n"
	       "      --vocab strict|base  a model with a larger vocabulary: refused (default),\n"
	       "                      or its embeddings and head merged over the base's rows\n"
	       "      --tokenizer-source MODEL|base  with -o DIR/: the tokenizer files of MODEL\n"
	       "                      (whose vocabulary must be the base's) instead of the\n"
	       "                      base's (default base)\n"
	       "      --zstd-level N  compression level when OUT ends in .zst (default 1)\n"
	       "      --no-checksum   no OUT.xxh128 and no OUT.manifest.json\n"
	       "      --checksum-file F  write the XXH3-128 line there (for -o -: the only way)\n"
	       "      --manifest F    write the manifest there\n"
	       "      --shard-size SIZE  with -o DIR/: shards of at most SIZE (default 5GB);\n"
	       "                      with -o NAME.gguf: split files NAME-0000i-of-0000N.gguf\n"
	       "      --no-copy       with -o DIR/: do not copy config.json, tokenizer files...\n"
	       "  -n, --dry-run       print the plan, write nothing\n"
	       "      --json          the plan (-n) or the summary of the run as JSON on\n"
	       "                      standard output (not with -o -)\n"
	       "  -q, --quiet         no progress, no summary, no warnings\n"
	       "  -v, --verbose       with -n, list every tensor with its block and lambda\n"
	       "      --config FILE   a mergekit YAML configuration (- for standard input);\n"
	       "                      options given beside it override it (lines-config(5))\n"
	       "      --print-config  print the configuration of this command line and exit\n"
	       "      --part K/M      write only part K (0..M-1) of M: whole shards of -o DIR/;\n"
	       "                      `lines index DIR/` assembles them (-n shows every step)\n"
	       "      --stats FILE    with --part: the whole-model statistics (lines stats)\n"
	       "      --stats-out FILE  with --part: measure this part's statistics of the\n"
	       "                      next round into FILE, write no model\n"
	       "  -h, --help          print this help and exit\n");
}

static void scale_help(void)
{
	printf("usage: lines scale -b BASE --gamma G [-o OUT] [options] MODEL\n\n"
	       "MODEL and BASE may be - (standard input) or end in .zst; OUT ending in .zst\n"
	       "is compressed.\n\n"
	       "Keep gamma of the update of the first block, all of it in the last, and a\n"
	       "linear ramp between: theta = theta_0 + (gamma + (1 - gamma) i / (L - 1)) tau.\n"
	       "Tensors outside the blocks keep gamma of their update.\n"
	       "--gamma G1,G2,... writes one output per value from one read, named by -o\n"
	       "with {gamma} where the value goes: -o 'edited-gamma{gamma}.safetensors'.\n\n"
	       "Options as for lines merge (see lines-scale(1)):\n"
	       "  -b/--base, --gamma, -o/--output, --dtype, --layer-regex, --num-layers,\n"
	       "  --stacks, --stack-order, --vocab, --schedule, --tokenizer-source,\n"
	       "  -j/--jobs, --io, --direct, --chunk, --zstd-level, --no-checksum,\n"
	       "  --checksum-file, --manifest, --shard-size, --no-copy, --strict,\n"
	       "  -n/--dry-run, --json, -q/--quiet, -v/--verbose, -h/--help.\n");
}

struct merge_cli {
	const char *cmd;
	struct lines_merge_opts o;
	double *weights;
	size_t nweights;
	double *densities;
	size_t ndensities;
	const char *mname; /* -m as given */
	int have_lambda, have_alpha, have_beta, have_gamma, dry_run, json;
	int have_method, have_lines, have_norm, have_ties_opts, have_trim, have_dare_opts;
	int have_normalize, have_t, have_consensus, have_rescale, have_epsilon, have_ram, have_per_row;
	int have_karcher;
	int have_density;
	double *bc_gammas;
	size_t nbc_gammas;
	int have_select;
	double gamma;
	double *schedule; /* --schedule */
	size_t nschedule;
	double *eps; /* --epsilon: one value, or one per model (della) */
	size_t neps;
	double *tall;
	size_t ntall;
	/* a sweep: one option given as a list, its values as written */
	enum lines_sweep sweep;
	double *sweep_vals;
	char **sweep_tok;
	char **sweep_out;
	size_t nsweep;
	/* --config FILE: its options come first, those given beside it win */
	const char *config;
	int print_config;
	unsigned char given[OPT_COUNT]; /* options of the command line */
	char **cfg_args, **argv_all;
	size_t ncfg_args;
	struct mcfg_extra extra; /* name, chat_template, dtype of the file */
	char *extra_owned[3];    /* their copies */
	struct mcfg_slices slices; /* the configuration's slices: */
	struct mcfg *cfg;          /* kept when a value differs between tensors */
	char *yaml;              /* the configuration as run (lines_config.yml) */
	char **sweep_yaml;       /* per value of a sweep (nsweep) */
};

static void free_sweep(struct merge_cli *mc)
{
	for (size_t v = 0; v < mc->nsweep; v++) {
		free(mc->sweep_tok ? mc->sweep_tok[v] : NULL);
		free(mc->sweep_out ? mc->sweep_out[v] : NULL);
	}
	free(mc->sweep_vals), free(mc->sweep_tok), free(mc->sweep_out);
	mc->sweep_vals = NULL, mc->sweep_tok = mc->sweep_out = NULL;
	mc->nsweep = 0;
}

/* The lists the options allocate (a first parse's, before a second). */
static void free_lists(struct merge_cli *mc)
{
	free(mc->weights), free(mc->tall), free(mc->densities), free(mc->schedule);
	free(mc->eps), free(mc->bc_gammas);
	mc->weights = mc->tall = mc->densities = mc->schedule = mc->eps = mc->bc_gammas = NULL;
	free_sweep(mc);
	mc->sweep = LINES_SWEEP_NONE;
}

/*
 * --beta, --lambda, --alpha or --gamma given as a list A,B,...: a sweep
 * (one at a time); *first gets the first value, as if it alone were
 * given. 0, or the exit status of a usage error.
 */
static int parse_sweep(struct merge_cli *mc, enum lines_sweep kind, const char *arg,
                       double *first)
{
	char opt[16];
	snprintf(opt, sizeof(opt), "--%s", lines_sweep_name(kind));
	if (mc->sweep && mc->sweep != kind)
		return cli_usage_error(mc->cmd, "%s and --%s both give lists: a sweep varies one "
		                                "option at a time", opt, lines_sweep_name(mc->sweep));
	free_sweep(mc);
	mc->sweep = kind;
	if (cli_parse_list(mc->cmd, opt, arg, &mc->sweep_vals, &mc->nsweep) < 0)
		return CLI_EXIT_USAGE;
	mc->sweep_tok = calloc(mc->nsweep, sizeof(char *));
	mc->sweep_out = calloc(mc->nsweep, sizeof(char *));
	if (!mc->sweep_tok || !mc->sweep_out) {
		cli_msg("out of memory");
		return CLI_EXIT_FAIL;
	}
	const char *c = arg;
	for (size_t v = 0; v < mc->nsweep; v++) {
		size_t n = strcspn(c, ",");
		if (!(mc->sweep_tok[v] = strndup(c, n))) {
			cli_msg("out of memory");
			return CLI_EXIT_FAIL;
		}
		c += n + (c[n] == ',');
	}
	*first = mc->sweep_vals[0];
	return 0;
}

/* OUT with every {NAME} replaced by tok; NULL when out of memory. */
static char *expand(const char *out, const char *ph, const char *tok)
{
	size_t n = 1, lp = strlen(ph), lt = strlen(tok);
	for (const char *c = out; *c;)
		if (!strncmp(c, ph, lp))
			n += lt, c += lp;
		else
			n++, c++;
	char *r = malloc(n), *o = r;
	for (const char *c = out; r && *c;)
		if (!strncmp(c, ph, lp))
			memcpy(o, tok, lt), o += lt, c += lp;
		else
			*o++ = *c++;
	if (r)
		*o = '\0';
	return r;
}

/* The outputs of a sweep from the -o template: 0, or the exit status of
 * a usage error. Without a sweep, a placeholder in -o is an error. */
static int sweep_outputs(struct merge_cli *mc)
{
	struct lines_merge_opts *o = &mc->o;
	static const enum lines_sweep all[] = {LINES_SWEEP_BETA, LINES_SWEEP_LAMBDA,
	                                       LINES_SWEEP_ALPHA, LINES_SWEEP_GAMMA};
	char ph[16];
	for (size_t i = 0; o->output && i < sizeof(all) / sizeof(all[0]); i++) {
		snprintf(ph, sizeof(ph), "{%s}", lines_sweep_name(all[i]));
		if (all[i] != mc->sweep && strstr(o->output, ph))
			return cli_usage_error(mc->cmd, mc->sweep ? "-o names %s, but the sweep is of --%s"
			                                          : "-o names %s, but --%s gives one value "
			                                            "(a sweep gives a list: A,B,...)",
			                       ph, mc->sweep ? lines_sweep_name(mc->sweep)
			                                     : lines_sweep_name(all[i]));
	}
	if (!mc->sweep)
		return 0;
	const char *name = lines_sweep_name(mc->sweep);
	snprintf(ph, sizeof(ph), "{%s}", name);
	if (!o->output || !strcmp(o->output, "-"))
		return cli_usage_error(mc->cmd, "a sweep of --%s writes one output per value: give "
		                                "-o with %s where the value goes (-o merged-%s%s.safetensors)",
		                       name, ph, name, ph);
	if (!strstr(o->output, ph))
		return cli_usage_error(mc->cmd, "-o must name %s: each value of the --%s sweep needs "
		                                "an output of its own", ph, name);
	for (size_t v = 0; v < mc->nsweep; v++) {
		if (!(mc->sweep_out[v] = expand(o->output, ph, mc->sweep_tok[v]))) {
			cli_msg("out of memory");
			return CLI_EXIT_FAIL;
		}
		for (size_t u = 0; u < v; u++)
			if (!strcmp(mc->sweep_out[u], mc->sweep_out[v]))
				return cli_usage_error(mc->cmd, "--%s values %s and %s give the same output "
				                                "name %s", name, mc->sweep_tok[u],
				                       mc->sweep_tok[v], cli_printable(mc->sweep_out[v]));
	}
	o->sweep = mc->sweep;
	o->nsweep = mc->nsweep;
	o->sweep_values = mc->sweep_vals;
	o->sweep_outputs = (const char *const *)mc->sweep_out;
	o->output = mc->sweep_out[0];
	return 0;
}

/* --consensus-k, --tall-lambda, --consensus-over: 0, or the exit status
 * of a usage error. */
static int parse_consensus_option(struct merge_cli *mc, int c)
{
	long l;
	mc->have_consensus = 1;
	switch (c) {
	case OPT_CONSENSUS_K:
		if (cli_parse_long(mc->cmd, "--consensus-k", optarg, 0, 1024, &l) < 0)
			return CLI_EXIT_USAGE;
		mc->o.consensus_k = (unsigned)l;
		break;
	case OPT_TALL_LAMBDA:
		if (cli_parse_list(mc->cmd, "--tall-lambda", optarg, &mc->tall, &mc->ntall) < 0)
			return CLI_EXIT_USAGE;
		for (size_t i = 0; i < mc->ntall; i++)
			if (!(mc->tall[i] >= 0 && isfinite(mc->tall[i])))
				return cli_usage_error(mc->cmd, "--tall-lambda: each value must be finite "
				                                "and at least 0");
		break;
	case OPT_CONSENSUS_OVER:
		if (!strcmp(optarg, "ties"))
			mc->o.consensus_ties = 1;
		else if (!strcmp(optarg, "ta"))
			mc->o.consensus_ties = 0;
		else
			return cli_usage_error(mc->cmd, "--consensus-over: '%s' is not ta or ties", optarg);
		break;
	}
	return 0;
}

/* --epsilon, --ram-r, --ram-alpha: 0, or the exit status of a usage error. */
static int parse_ram_option(struct merge_cli *mc, int c)
{
	struct lines_merge_opts *o = &mc->o;
	const char *name = c == OPT_RAM_R ? "--ram-r" : "--ram-alpha";
	double *v = c == OPT_RAM_R ? &o->ram_r : &o->ram_alpha;
	if (c == OPT_EPSILON) { /* ram's or della's: check() knows the method */
		mc->have_epsilon = 1;
		if (cli_parse_list(mc->cmd, "--epsilon", optarg, &mc->eps, &mc->neps) < 0)
			return CLI_EXIT_USAGE;
		for (size_t i = 0; i < mc->neps; i++)
			if (!isfinite(mc->eps[i]))
				return cli_usage_error(mc->cmd, "--epsilon must be finite");
		return 0;
	}
	mc->have_ram = 1;
	if (cli_parse_double(mc->cmd, name, optarg, v) < 0)
		return CLI_EXIT_USAGE;
	if (!isfinite(*v) || (c != OPT_RAM_R && *v < 0))
		return cli_usage_error(mc->cmd, "%s must be finite%s", name,
		                       c != OPT_RAM_R ? " and at least 0" : "");
	return 0;
}

/* --max-iter, --tol: 0, or the exit status of a usage error. */
static int parse_karcher_option(struct merge_cli *mc, int c)
{
	struct lines_merge_opts *o = &mc->o;
	long l;
	mc->have_karcher = 1;
	if (c == OPT_MAX_ITER) {
		if (cli_parse_long(mc->cmd, "--max-iter", optarg, 1, 1000000, &l) < 0)
			return CLI_EXIT_USAGE;
		o->max_iter = (unsigned)l;
		return 0;
	}
	if (cli_parse_double(mc->cmd, "--tol", optarg, &o->tol) < 0)
		return CLI_EXIT_USAGE;
	if (!(o->tol > 0 && isfinite(o->tol)))
		return cli_usage_error(mc->cmd, "--tol must be a finite number above 0");
	return 0;
}

/* The options of one method or another (check_method_options() refuses
 * those the chosen method does not take): 0, or the exit status of a
 * usage error. */
/* An output dtype --dtype names (the plan checks it against the output). */
static int cli_dtype_name(const char *s)
{
	static const char *const names[] = {"bf16", "f16",  "f32",  "f64",  "fp8",  "q8_0", "q4_0",
	                                    "q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcasecmp(s, names[i]))
			return 1;
	return 0;
}

static int parse_method_option(struct merge_cli *mc, int c)
{
	struct lines_merge_opts *o = &mc->o;

	switch (c) {
	case OPT_DENSITY:
		mc->have_ties_opts = mc->have_density = 1;
		free(mc->densities);
		mc->densities = NULL;
		if (cli_parse_list(mc->cmd, "--density", optarg, &mc->densities, &mc->ndensities) < 0)
			return CLI_EXIT_USAGE;
		for (size_t i = 0; i < mc->ndensities; i++)
			if (!(mc->densities[i] > 0 && mc->densities[i] <= 1))
				return cli_usage_error(mc->cmd, "--density must be in (0, 1]");
		o->density = mc->densities[0];
		break;
	case OPT_TRIM:
		mc->have_ties_opts = mc->have_trim = 1;
		if (!strcmp(optarg, "global")) o->trim_tensor = 0;
		else if (!strcmp(optarg, "tensor")) o->trim_tensor = 1;
		else return cli_usage_error(mc->cmd, "--trim: '%s' is not global or tensor", optarg);
		break;
	case OPT_SEED:
		mc->have_ties_opts = mc->have_dare_opts = 1;
		if (cli_parse_u64(mc->cmd, "--seed", optarg, &o->seed) < 0)
			return CLI_EXIT_USAGE;
		break;
	case OPT_DARE_ELECT: o->dare_elect = mc->have_ties_opts = mc->have_dare_opts = 1; break;
	case OPT_NORMALIZE: o->no_normalize = 0, mc->have_normalize = 1; break;
	case OPT_NO_NORMALIZE: o->no_normalize = 1, mc->have_normalize = 1; break;
	case OPT_CONSENSUS_K: case OPT_TALL_LAMBDA: case OPT_CONSENSUS_OVER:
		return parse_consensus_option(mc, c);
	case OPT_EPSILON: case OPT_RAM_R: case OPT_RAM_ALPHA:
		return parse_ram_option(mc, c);
	case OPT_MAX_ITER: case OPT_TOL:
		return parse_karcher_option(mc, c);
	case OPT_BC_GAMMA:
		free(mc->bc_gammas);
		mc->bc_gammas = NULL;
		if (cli_parse_list(mc->cmd, "--bc-gamma", optarg, &mc->bc_gammas, &mc->nbc_gammas) < 0)
			return CLI_EXIT_USAGE;
		for (size_t i = 0; i < mc->nbc_gammas; i++)
			if (!(mc->bc_gammas[i] >= 0 && mc->bc_gammas[i] <= 1))
				return cli_usage_error(mc->cmd, "--bc-gamma must be in [0, 1]");
		o->bc_gamma = mc->bc_gammas[0];
		break;
	case OPT_RESCALE: o->rescale = LINES_RESCALE_L1, mc->have_rescale = 1; break;
	case OPT_SELECT_TOPK:
		mc->have_select = 1;
		if (cli_parse_double(mc->cmd, "--select-topk", optarg, &o->select_topk) < 0)
			return CLI_EXIT_USAGE;
		if (!(o->select_topk >= 0 && o->select_topk <= 1))
			return cli_usage_error(mc->cmd, "--select-topk must be in [0, 1]");
		break;
	case OPT_NO_RESCALE: o->rescale = LINES_RESCALE_NONE, mc->have_rescale = 1; break;
	case OPT_PER_ROW: o->per_row = mc->have_per_row = 1; break;
	case OPT_T:
		mc->have_t = 1;
		if (cli_parse_double(mc->cmd, "--t", optarg, &o->t) < 0)
			return CLI_EXIT_USAGE;
		if (!isfinite(o->t))
			return cli_usage_error(mc->cmd, "--t must be a finite number");
		break;
	}
	return 0;
}

/* -m NAME: the method, and what its name implies (dare_ties: election). */
static int parse_method_name(struct merge_cli *mc)
{
	mc->have_method = 1;
	mc->mname = optarg;
	if (lines_method_select(&mc->o, optarg) < 0)
		return cli_usage_error(mc->cmd, "-m: unknown method '%s' (sum, task_arithmetic, mean, "
		                                "ties, dare, dare_linear, dare_ties, linear, nearswap, "
		                                "consensus, slerp, nuslerp, multislerp, model_stock, "
		                                "ram, ramplus_tl, karcher, della, della_linear, "
		                                "breadcrumbs, breadcrumbs_ties, sce, passthrough, "
		                                "arcee_fusion)",
		                       optarg);
	return 0;
}

static int parse(struct merge_cli *mc, int argc, char **argv)
{
	struct lines_merge_opts *o = &mc->o;
	int c, rc;
	long l;
	uint64_t sz;

	unsigned char seen[OPT_COUNT] = {0};

	optind = 0; /* GNU getopt: reinitialise (scale parses twice) */
	opterr = 0; /* one message, ours */
	while ((c = getopt_long(argc, argv, ":b:m:w:o:j:qvnh", merge_options, NULL)) != -1) {
		/* an option with a value given twice is a mistake, not "the last wins" */
		if (c > 0 && c < OPT_COUNT && takes_value(c) && seen[c]++)
			return cli_usage_error(mc->cmd, "%s given twice", option_name(c));
		if (c > 0 && c < OPT_COUNT)
			mc->given[c] = 1;
		switch (c) {
		case 'b': o->base = optarg; break;
		case 'm':
			if ((rc = parse_method_name(mc)) != 0)
				return rc;
			break;
		case 'w':
			free(mc->weights);
			mc->weights = NULL;
			if (cli_parse_list(mc->cmd, "-w", optarg, &mc->weights, &mc->nweights) < 0)
				return CLI_EXIT_USAGE;
			break;
		case OPT_LAMBDA:
			if (strchr(optarg, ',')) {
				if ((rc = parse_sweep(mc, LINES_SWEEP_LAMBDA, optarg, &o->lambda)) != 0)
					return rc;
			} else if (cli_parse_double(mc->cmd, "--lambda", optarg, &o->lambda) < 0)
				return CLI_EXIT_USAGE;
			mc->have_lambda = 1;
			break;
		case OPT_LINES: o->lines = 1, mc->have_lines = 1; break;
		case OPT_ALPHA:
			mc->have_alpha = 1;
			o->lines = 1;
			if (!strcmp(optarg, "auto")) {
				o->alpha_auto = 1;
			} else if (strchr(optarg, ',')) {
				o->alpha_auto = 0;
				if ((rc = parse_sweep(mc, LINES_SWEEP_ALPHA, optarg, &o->alpha)) != 0)
					return rc;
			} else {
				o->alpha_auto = 0;
				if (cli_parse_double(mc->cmd, "--alpha", optarg, &o->alpha) < 0)
					return CLI_EXIT_USAGE;
			}
			break;
		case OPT_BETA:
			mc->have_beta = 1;
			o->lines = 1;
			if (strchr(optarg, ',')) {
				if ((rc = parse_sweep(mc, LINES_SWEEP_BETA, optarg, &o->beta)) != 0)
					return rc;
			} else if (cli_parse_double(mc->cmd, "--beta", optarg, &o->beta) < 0)
				return CLI_EXIT_USAGE;
			break;
		case OPT_GAMMA:
			mc->have_gamma = 1;
			if (strchr(optarg, ',')) {
				if ((rc = parse_sweep(mc, LINES_SWEEP_GAMMA, optarg, &mc->gamma)) != 0)
					return rc;
				for (size_t v = 0; v < mc->nsweep; v++)
					if (mc->sweep_vals[v] < 0 || mc->sweep_vals[v] > 1)
						return cli_usage_error(mc->cmd, "--gamma must be between 0 and 1 "
						                                "(%g is not)", mc->sweep_vals[v]);
			} else if (cli_parse_double(mc->cmd, "--gamma", optarg, &mc->gamma) < 0)
				return CLI_EXIT_USAGE;
			if (mc->gamma < 0 || mc->gamma > 1)
				return cli_usage_error(mc->cmd, "--gamma must be between 0 and 1");
			break;
		case OPT_SCHEDULE:
			if (cli_parse_list(mc->cmd, "--schedule", optarg, &mc->schedule,
			                   &mc->nschedule) < 0)
				return CLI_EXIT_USAGE;
			if (mc->nschedule < 2)
				return cli_usage_error(mc->cmd, "--schedule needs at least 2 values, the "
				                                "first block's and the last's (one value for "
				                                "every block is --alpha)");
			o->schedule = mc->schedule, o->nschedule = mc->nschedule;
			break;
		case OPT_NORM:
			mc->have_norm = 1;
			if (!strcmp(optarg, "l1")) o->norm_p = 1;
			else if (!strcmp(optarg, "l2")) o->norm_p = 2;
			else return cli_usage_error(mc->cmd, "--norm: '%s' is not l1 or l2", optarg);
			break;
		case OPT_DENSITY: case OPT_TRIM: case OPT_SEED: case OPT_DARE_ELECT:
		case OPT_NORMALIZE: case OPT_NO_NORMALIZE: case OPT_T:
		case OPT_CONSENSUS_K: case OPT_TALL_LAMBDA: case OPT_CONSENSUS_OVER:
		case OPT_RESCALE: case OPT_NO_RESCALE:
		case OPT_EPSILON: case OPT_RAM_R: case OPT_RAM_ALPHA: case OPT_PER_ROW:
		case OPT_MAX_ITER: case OPT_TOL: case OPT_BC_GAMMA: case OPT_SELECT_TOPK:
			if ((rc = parse_method_option(mc, c)) != 0)
				return rc;
			break;
		case OPT_DTYPE:
			if (!cli_dtype_name(optarg))
				return cli_usage_error(mc->cmd,
				                       "--dtype: '%s' is not bf16, f16, f32, f64, fp8, or for "
				                       "a .gguf output q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, "
				                       "q5_k, q6_k",
				                       optarg);
			o->dtype = optarg;
			break;
		case OPT_LAYER_REGEX: o->layers.regex = optarg; break;
		case OPT_NUM_LAYERS:
			if (cli_parse_long(mc->cmd, "--num-layers", optarg, 1, 1000000, &l) < 0)
				return CLI_EXIT_USAGE;
			o->layers.num_layers = l;
			break;
		case OPT_STACKS:
			if (strcmp(optarg, "separate") && strcmp(optarg, "joint"))
				return cli_usage_error(mc->cmd, "--stacks: '%s' is not separate or joint",
				                       optarg);
			o->layers.joint = !strcmp(optarg, "joint");
			break;
		case OPT_STACK_ORDER: o->layers.stack_order = optarg; break;
		case 'o': o->output = optarg; break;
		case 'j':
			if (cli_parse_long(mc->cmd, "-j", optarg, 1, 256, &l) < 0)
				return CLI_EXIT_USAGE;
			o->jobs = (unsigned)l;
			break;
		case OPT_IO:
			if (!strcmp(optarg, "auto")) o->io = LINES_IO_AUTO;
			else if (!strcmp(optarg, "mmap")) o->io = LINES_IO_MMAP;
			else if (!strcmp(optarg, "uring")) o->io = LINES_IO_URING;
			else return cli_usage_error(mc->cmd, "--io: '%s' is not auto, mmap or uring", optarg);
			break;
		case OPT_CHUNK:
			if (cli_parse_size(mc->cmd, "--chunk", optarg, &sz) < 0)
				return CLI_EXIT_USAGE;
			if (sz < (16u << 10) || sz > (1ull << 30))
				return cli_usage_error(mc->cmd, "--chunk must be between 16K and 1G");
			o->chunk = (size_t)sz;
			break;
		case OPT_STRICT: o->strict = 1; break;
		case OPT_VOCAB:
			if (strcmp(optarg, "strict") && strcmp(optarg, "base"))
				return cli_usage_error(mc->cmd, "--vocab: '%s' is not strict or base", optarg);
			o->vocab_base = !strcmp(optarg, "base");
			break;
		case OPT_TOKENIZER_SOURCE: /* base: the default */
			o->tokenizer_source = strcmp(optarg, "base") ? optarg : NULL;
			break;
		case OPT_DIRECT: o->direct = 1; break;
		case OPT_ZSTD_LEVEL:
			if (cli_parse_long(mc->cmd, "--zstd-level", optarg, -131072, 22, &l) < 0)
				return CLI_EXIT_USAGE;
			if (l == 0)
				return cli_usage_error(mc->cmd, "--zstd-level 0 is not a level");
			o->zstd_level = (int)l;
			break;
		case OPT_NO_CHECKSUM: o->no_checksum = 1; break;
		case OPT_CHECKSUM_FILE: o->checksum_file = optarg; break;
		case OPT_MANIFEST: o->manifest_file = optarg; break;
		case OPT_SHARD_SIZE:
			if (cli_parse_size(mc->cmd, "--shard-size", optarg, &sz) < 0)
				return CLI_EXIT_USAGE;
			if (sz < 4096)
				return cli_usage_error(mc->cmd, "--shard-size must be at least 4K");
			o->shard_size = sz;
			break;
		case OPT_NO_COPY: o->no_copy = 1; break;
		case 'q': cli_quiet = 1; break;
		case 'v': cli_verbose = 1; break;
		case 'n': mc->dry_run = 1; break;
		case OPT_JSON: mc->json = 1; break;
		case OPT_CONFIG: mc->config = optarg; break;
		case OPT_PRINT_CONFIG: mc->print_config = 1; break;
		case OPT_PART: {
			unsigned long k, m;
			char *end;
			errno = 0;
			k = strtoul(optarg, &end, 10);
			if (end == optarg || *end != '/' || optarg[0] == '-' || errno)
				return cli_usage_error(mc->cmd, "--part takes K/M (part K of M, K from 0): "
				                                "'%s'", optarg);
			const char *ms = end + 1;
			m = strtoul(ms, &end, 10);
			if (end == ms || *end || ms[0] == '-' || errno || m > 1000000)
				return cli_usage_error(mc->cmd, "--part takes K/M (part K of M, K from 0): "
				                                "'%s'", optarg);
			if (m < 1)
				return cli_usage_error(mc->cmd, "--part %s: M must be at least 1", optarg);
			if (k >= m)
				return cli_usage_error(mc->cmd, "--part %s: K counts from 0 and must be "
				                                "below M", optarg);
			o->part_k = (unsigned)k, o->part_m = (unsigned)m;
			break;
		}
		case OPT_STATS: o->stats_in = optarg; break;
		case OPT_STATS_OUT: o->stats_out = optarg; break;
		case 'h':
			if (!strcmp(mc->cmd, "scale"))
				scale_help();
			else
				merge_help();
			exit(CLI_EXIT_OK);
		default:
			return cli_bad_option(mc->cmd, c, argv);
		}
	}
	o->models = (const char *const *)(argv + optind);
	o->nmodels = (size_t)(argc - optind);
	return 0;
}

/* Options that the method does not take (lines_method_options()). */
static int check_method_options(struct merge_cli *mc)
{
	const struct lines_merge_opts *o = &mc->o;
	unsigned mo = lines_method_options(o->method);
	const char *name = lines_method_name(o->method);

	if (!strcmp(mc->cmd, "scale") && mc->have_ties_opts)
		return cli_usage_error(mc->cmd, "--density, --trim, --seed and --dare-elect belong to "
		                                "lines merge -m ties or -m dare");
	if (!strcmp(mc->cmd, "scale") &&
	    (mc->have_normalize || mc->have_t || mc->have_consensus || mc->have_rescale ||
	     mc->have_epsilon || mc->have_ram || mc->have_per_row || mc->have_karcher ||
	     mc->have_select))
		return cli_usage_error(mc->cmd, "--normalize, --no-normalize, --rescale, --no-rescale, "
		                                "--t, the --consensus and --tall-lambda options, "
		                                "--epsilon, the --ram options, --per-row, --max-iter, "
		                                "--tol and --select-topk belong to lines merge");
	if (!o->base && !(mo & LINES_MOPT_NO_BASE))
		return cli_usage_error(mc->cmd, "no base model: give -b BASE");
	if ((mo & LINES_MOPT_ONE_MODEL) && o->nmodels != 1)
		return cli_usage_error(mc->cmd, "-m %s %s exactly one MODEL (got %zu)", name,
		                       (mo & LINES_MOPT_NO_BASE) ? "copies" : "merges the base with",
		                       o->nmodels);
	if (mc->weights && !(mo & LINES_MOPT_WEIGHTS))
		return cli_usage_error(mc->cmd, "-m %s takes no weights (-w)", name);
	if (o->method == LINES_M_CONSENSUS && !o->consensus_ties &&
	    (mc->have_ties_opts || mc->have_normalize))
		return cli_usage_error(mc->cmd, "--density, --trim and --no-normalize apply to -m "
		                                "consensus only with --consensus-over ties (the masks "
		                                "over TIES's merge)");
	if (mc->have_ties_opts && !(mo & LINES_MOPT_DENSITY))
		return cli_usage_error(mc->cmd, "--density, --trim, --seed and --dare-elect apply to "
		                                "-m ties, -m dare, -m della and (--density) -m "
		                                "breadcrumbs only");
	if (mc->bc_gammas && !(mo & LINES_MOPT_BC_GAMMA))
		return cli_usage_error(mc->cmd, "--bc-gamma applies to -m breadcrumbs and -m "
		                                "breadcrumbs_ties only (LiNeS's gamma is --gamma)");
	if (mc->have_trim && !(mo & LINES_MOPT_TRIM))
		return cli_usage_error(mc->cmd, "--trim applies to -m ties only (the other methods "
		                                "drop by their own rules)");
	if (mc->have_dare_opts && !(mo & LINES_MOPT_SEED))
		return cli_usage_error(mc->cmd, "--seed and --dare-elect apply to -m dare only (and "
		                                "--seed to -m della)");
	if (o->dare_elect && (o->method == LINES_M_DELLA || o->method == LINES_M_DELLA_LINEAR))
		return cli_usage_error(mc->cmd, "-m %s takes no --dare-elect: della elects signs, "
		                                "della_linear does not", name);
	if (mc->have_normalize && (!(mo & LINES_MOPT_NORMALIZE) ||
	                           (o->method == LINES_M_DARE && !o->dare_elect)))
		return cli_usage_error(mc->cmd, "--normalize and --no-normalize apply to -m linear, "
		                                "multislerp, ties, dare_ties, della, breadcrumbs and "
		                                "breadcrumbs_ties only (-m mean is sum normalized; "
		                                "dare_linear and della_linear sum)");
	if (mc->have_rescale && !(mo & LINES_MOPT_RESCALE))
		return cli_usage_error(mc->cmd, "--rescale and --no-rescale apply to -m dare and -m "
		                                "della only");
	if (mc->mname && !strcmp(mc->mname, "dare_linear") && o->dare_elect)
		return cli_usage_error(mc->cmd, "-m dare_linear elects no signs: for --dare-elect "
		                                "give -m dare_ties");
	if (mc->have_t && !(mo & LINES_MOPT_T))
		return cli_usage_error(mc->cmd, "--t applies to -m nearswap and -m slerp only");
	if (mc->have_consensus && !(mo & LINES_MOPT_CONSENSUS))
		return cli_usage_error(mc->cmd, "--consensus-k, --tall-lambda and --consensus-over "
		                                "apply to -m consensus only");
	if (mc->have_epsilon && !(mo & LINES_MOPT_EPSILON))
		return cli_usage_error(mc->cmd, "--epsilon applies to -m ram, ramplus_tl, della and "
		                                "della_linear only");
	if (mc->have_ram && !(mo & LINES_MOPT_RAM))
		return cli_usage_error(mc->cmd, "--ram-r and --ram-alpha apply to -m ramplus_tl only "
		                                "(LiNeS's alpha is --alpha)");
	if (mc->have_per_row && !(mo & LINES_MOPT_PER_ROW))
		return cli_usage_error(mc->cmd, "--per-row applies to -m model_stock and -m nuslerp only");
	if (mc->have_karcher && !(mo & LINES_MOPT_KARCHER))
		return cli_usage_error(mc->cmd, "--max-iter and --tol apply to -m karcher only");
	if (mc->have_select && !(mo & LINES_MOPT_SELECT_TOPK))
		return cli_usage_error(mc->cmd, "--select-topk applies to -m sce only");
	if ((mo & LINES_MOPT_T) && !mc->have_t)
		return cli_usage_error(mc->cmd, "-m %s needs --t T (no default, as in mergekit)", name);
	if (o->method == LINES_M_PASSTHROUGH && (o->lines || mc->have_gamma || mc->have_lambda))
		return cli_usage_error(mc->cmd, "-m passthrough copies one model: it takes no "
		                                "--lines, --alpha, --beta, --gamma or --lambda, and no "
		                                "base to scale toward");
	if (!o->base && (o->lines || mc->have_gamma || mc->have_lambda))
		return cli_usage_error(mc->cmd, "-m %s without -b has no base to scale toward: "
		                                "--lines, --alpha, --beta, --gamma and --lambda need "
		                                "-b BASE", name);
	return 0;
}

/* --epsilon: ram's one threshold, or della's one or per-model half-width. */
static int assign_epsilon(struct merge_cli *mc)
{
	struct lines_merge_opts *o = &mc->o;
	int della = o->method == LINES_M_DELLA || o->method == LINES_M_DELLA_LINEAR;
	if (!mc->eps)
		return 0;
	if (!della) {
		if (mc->neps != 1)
			return cli_usage_error(mc->cmd, "--epsilon: -m %s takes one value",
			                       lines_method_name(o->method));
		if (mc->eps[0] < 0)
			return cli_usage_error(mc->cmd, "--epsilon must be finite and at least 0");
		o->ram_epsilon = mc->eps[0];
		return 0;
	}
	if (mc->neps != 1 && mc->neps != o->nmodels)
		return cli_usage_error(mc->cmd, "--epsilon gives %zu values for %zu models: give one, "
		                                "or one per model", mc->neps, o->nmodels);
	if (mc->neps == 1)
		o->della_epsilon = mc->eps[0];
	else
		o->della_epsilons = mc->eps;
	return 0;
}

/* Usage rules that need the whole command line. */
static int check(struct merge_cli *mc)
{
	struct lines_merge_opts *o = &mc->o;
	int rc;

	if (o->nmodels == 0)
		return cli_usage_error(mc->cmd, "no model to merge: give at least one MODEL");
	if ((rc = check_method_options(mc)) != 0)
		return rc;
	if (mc->have_gamma && (mc->have_alpha || mc->have_beta))
		return cli_usage_error(mc->cmd, "--gamma sets alpha and beta; give one or the other");
	if (mc->have_gamma) {
		o->lines = 1;
		o->alpha_auto = 0;
		o->alpha = mc->gamma;
		o->beta = 1.0 - mc->gamma;
	}
	if (mc->have_lambda && o->lines)
		return cli_usage_error(mc->cmd, "--lambda and LiNeS (--lines, --alpha, --gamma) exclude "
		                                "each other: LiNeS replaces the global coefficient");
	if (mc->schedule && !o->lines)
		return cli_usage_error(mc->cmd, "--schedule shapes LiNeS's depth ramp: give it with "
		                                "--lines, --alpha or --gamma (--lambda scales every "
		                                "block alike)");
	if (o->lines && !mc->have_alpha && !mc->have_gamma && o->nmodels == 1)
		return cli_usage_error(mc->cmd, "with one model, give --alpha or --gamma "
		                                "(automatic alpha compares several task vectors)");
	if ((rc = assign_epsilon(mc)) != 0)
		return rc;
	if (mc->tall && mc->ntall != 1 && mc->ntall != o->nmodels)
		return cli_usage_error(mc->cmd, "--tall-lambda gives %zu values for %zu models: give "
		                                "one, or one per model", mc->ntall, o->nmodels);
	if (mc->tall && mc->ntall == 1)
		o->tall_lambda = mc->tall[0];
	else if (mc->tall)
		o->tall_lambdas = mc->tall;
	if (mc->weights) {
		if (mc->nweights != o->nmodels)
			return cli_usage_error(mc->cmd, "-w gives %zu weight%s for %zu model%s",
			                       mc->nweights, mc->nweights == 1 ? "" : "s", o->nmodels,
			                       o->nmodels == 1 ? "" : "s");
		o->weights = mc->weights;
	}
	if (mc->bc_gammas && mc->nbc_gammas > 1) {
		if (mc->nbc_gammas != o->nmodels)
			return cli_usage_error(mc->cmd, "--bc-gamma gives %zu values for %zu model%s",
			                       mc->nbc_gammas, o->nmodels, o->nmodels == 1 ? "" : "s");
		o->bc_gammas = mc->bc_gammas;
	}
	/* mergekit's defaults for breadcrumbs: density 1 (nothing dropped),
	 * and breadcrumbs without consensus does not normalize */
	if ((o->method == LINES_M_BREADCRUMBS || o->method == LINES_M_BREADCRUMBS_TIES) &&
	    !mc->have_density)
		o->density = 1.0;
	if (o->method == LINES_M_BREADCRUMBS && !mc->have_normalize)
		o->no_normalize = 1;
	if (mc->ndensities > 1) {
		if (mc->ndensities != o->nmodels)
			return cli_usage_error(mc->cmd, "--density gives %zu densities for %zu model%s",
			                       mc->ndensities, o->nmodels, o->nmodels == 1 ? "" : "s");
		o->densities = mc->densities;
	}
	if ((rc = sweep_outputs(mc)) != 0)
		return rc;
	if (!o->output) {
		if (isatty(STDOUT_FILENO) && !mc->dry_run && !mc->print_config)
			return cli_usage_error(mc->cmd, "no output given and standard output is a "
			                                "terminal: give -o OUT (or -o - to insist)");
		o->output = "-";
	}
	if (o->part_m && !strcmp(o->output, "-"))
		return cli_usage_error(mc->cmd, "--part writes whole shards of a directory output: "
		                                "give -o DIR/, not standard output");
	if ((o->stats_in || o->stats_out) && !o->part_m)
		return cli_usage_error(mc->cmd, "--stats and --stats-out belong to a partitioned run: "
		                                "give --part K/M");
	if (o->part_m && mc->nsweep > 1) /* the library sees one value of it at a time */
		return cli_usage_error(mc->cmd, "--part runs one value at a time: give --%s one value",
		                       lines_sweep_name(mc->sweep));
	if (mc->json && !mc->dry_run && !strcmp(o->output, "-"))
		return cli_usage_error(mc->cmd, "--json prints on standard output, where -o - (or no "
		                                "-o) writes the model: give -o OUT");
	return 0;
}

/* "the norms pass", "the select pass (and the threshold pass if needed)":
 * where alpha is measured */
static const char *alpha_passes(const struct lines_plan_info *in)
{
	static char buf[160];
	const char *names[8], *opt = NULL;
	unsigned n = 0;
	for (unsigned i = 0; i < in->npasses && n < 8; i++) {
		if (!strcmp(in->pass_names[i], "check") || !strcmp(in->pass_names[i], "write"))
			continue;
		if (in->pass_optional[i])
			opt = in->pass_names[i];
		else
			names[n++] = in->pass_names[i];
	}
	if (n == 0)
		return "the first pass";
	snprintf(buf, sizeof(buf), "the %s%s%s pass%s", names[0], n > 1 ? " and " : "",
	         n > 1 ? names[n - 1] : "", n > 1 ? "es" : "");
	if (opt)
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), " (and the %s pass if needed)", opt);
	return buf;
}

/* The ramp of n blocks, lam[i] for block i. */
static void print_ramp(FILE *f, const double *lam, long n)
{
	for (long i = 0; i < n; i++)
		fprintf(f, "%s%4ld: %.6f%s", i % 6 == 0 ? "   " : "  ", i, lam[i],
		        i % 6 == 5 || i == n - 1 ? "\n" : "");
}

static void print_lambdas(FILE *f, const struct lines_plan_info *in, const char *beta,
                          int sched)
{
	const char *f0 = sched ? "f(" : "", *f1 = sched ? ")" : "";
	if (in->lambda && !in->alpha_known) {
		fprintf(f, "  lambda per block i: alpha + beta * %si / %ld%s, beta = %s\n", f0,
		        in->num_layers > 1 ? in->num_layers - 1 : 1, f1, beta);
		return;
	}
	if (in->lambda) {
		fprintf(f, "  lambda per block (L = %ld):\n", in->num_layers);
		print_ramp(f, in->lambda, in->num_layers);
	} else { /* a ramp per stack, or stacks chained */
		for (size_t k = 0; k < in->nstacks; k++) {
			const struct lines_stack_info *st = &in->stacks[k];
			fprintf(f, "  stack %s (L = %ld", st->name, st->num_layers);
			if (st->first || st->ramp != st->num_layers)
				fprintf(f, ", blocks %ld to %ld of a ramp of %ld", st->first,
				        st->first + st->num_layers - 1, st->ramp);
			if (!in->alpha_known) {
				fprintf(f, "): alpha + beta * %s(%ld + i) / %ld%s, beta = %s\n", f0,
				        st->first, st->ramp > 1 ? st->ramp - 1 : 1, f1, beta);
				continue;
			}
			fprintf(f, "):\n");
			print_ramp(f, st->lambda, st->num_layers);
		}
		if (!in->alpha_known)
			return;
	}
	fprintf(f, "  lambda outside the blocks: %.6f\n", in->lambda_outside);
}

/* consensus: its k and TALL lambdas */
static void print_consensus(FILE *f, const struct lines_merge_opts *o)
{
	fprintf(f, "  consensus: kept where at least %u TALL masks agree, TALL lambda", o->consensus_k);
	for (size_t i = 0; i < (o->tall_lambdas ? o->nmodels : 1); i++)
		fprintf(f, "%s%g", i ? "," : " ", o->tall_lambdas ? o->tall_lambdas[i] : o->tall_lambda);
	fputc('\n', f);
}

/* ram, ramplus_tl: epsilon, and r and alpha of lambda_i */
static void print_ram(FILE *f, const struct lines_merge_opts *o)
{
	fprintf(f, "  %s: a model changed an element where |tau| > %g", lines_method_name(o->method),
	        o->ram_epsilon);
	if (o->method == LINES_M_RAMPLUS_TL)
		fprintf(f, ";\n  lone changes times 1 + %g clamp(shared/unique, 0, %g), counted per "
		           "tensor in the count pass", o->ram_r, o->ram_alpha);
	fputc('\n', f);
}

/* karcher: its stop rule, and after a run the most steps a tensor took
 * (read from the run's JSON report, where the method puts it) */
static void print_karcher(FILE *f, const struct lines_merge_opts *o, const struct lines_plan *plan)
{
	fprintf(f, "  karcher: every model 1/N, at most %u steps per tensor, tol %g", o->max_iter,
	        o->tol);
	char *text = plan ? lines_plan_json(plan, 1) : NULL;
	json_t *root = text ? json_loads(text, 0, NULL) : NULL;
	json_t *k = json_object_get(root, "karcher");
	json_t *most = json_object_get(k, "iterations_max"), *unc = json_object_get(k, "unconverged");
	if (json_is_integer(most) && json_is_integer(unc))
		fprintf(f, ";\n  a tensor took at most %lld step%s, %lld tensor%s stopped by --max-iter",
		        (long long)json_integer_value(most), json_integer_value(most) == 1 ? "" : "s",
		        (long long)json_integer_value(unc), json_integer_value(unc) == 1 ? "" : "s");
	fputc('\n', f);
	json_decref(root);
	free(text);
}

static void print_scaling(FILE *f, const struct merge_cli *mc, const struct lines_plan_info *in,
                          const struct lines_plan *ran)
{
	const struct lines_merge_opts *o = &mc->o;
	fprintf(f, "  method: %s of %zu model%s", lines_method_name(o->method), o->nmodels,
	        o->nmodels == 1 ? "" : "s");
	if (mc->cfg && (mc->cfg->tensor_lists & MCFG_TENSOR_W)) /* gradients, filters */
		fprintf(f, ", weights per tensor (the configuration's)");
	else if (o->weights) {
		fprintf(f, ", weights");
		for (size_t i = 0; i < o->nmodels; i++)
			fprintf(f, "%s%g", i ? "," : " ", o->weights[i]);
	}
	fputc('\n', f);
	if (o->method == LINES_M_CONSENSUS)
		print_consensus(f, o);
	if (o->method == LINES_M_RAM || o->method == LINES_M_RAMPLUS_TL)
		print_ram(f, o);
	if (o->method == LINES_M_KARCHER)
		print_karcher(f, o, ran);
	if (o->method == LINES_M_SCE)
		fprintf(f, "  sce: %s; weights per tensor from the mean squares\n",
		        o->select_topk < 1 ? "keep the positions of largest variance (--select-topk)"
		                           : "every position kept (--select-topk 1)");
	if (!o->lines) {
		fprintf(f, "  lambda: %g (no LiNeS)\n", o->lambda);
		return;
	}
	if (in->alpha_known)
		fprintf(f, "  LiNeS: alpha = %.10g%s, beta = %.10g\n", in->alpha,
		        o->alpha_auto ? (o->norm_p == 2 ? " (auto, L2)" : " (auto, L1)") : "", in->beta);
	else
		fprintf(f, "  LiNeS: alpha = auto (%s), measured in %s\n", o->norm_p == 2 ? "L2" : "L1",
		        alpha_passes(in));
	if (in->norm_sum > 0 || in->norm_mtl > 0)
		fprintf(f, "  norms: ||sum tau|| = %.10g, ||tau_MTL|| = %.10g\n", in->norm_sum,
		        in->norm_mtl);
	char beta[40] = "max(0, 1 - alpha)";
	if (mc->have_beta)
		snprintf(beta, sizeof(beta), "%.10g", o->beta);
	if (o->schedule) {
		fprintf(f, "  schedule: f =");
		for (size_t i = 0; i < o->nschedule; i++)
			fprintf(f, "%s%.10g", i ? "," : " ", o->schedule[i]);
		fprintf(f, " at evenly spaced depths; lambda = alpha + beta * f(i / (L - 1))\n");
	}
	print_lambdas(f, in, beta, o->schedule != NULL);
}

/* "30 merged, 21 copied from the base", and the FP8 scales. */
static const char *tensor_counts(const struct merge_cli *mc, const struct lines_plan_info *in,
                                 char *buf, size_t n)
{
	size_t copied = in->ntensors - in->nfloat - in->nscales_new;
	int k = snprintf(buf, n, "%zu merged, ", in->nfloat);
	if (in->nscales_new)
		k += snprintf(buf + k, n - (size_t)k, "%zu FP8 scales made new, ", in->nscales_new);
	k += snprintf(buf + k, n - (size_t)k, "%zu copied from %s", copied,
	              mc->o.base ? "the base" : "the first model");
	if (in->nscales_dropped)
		snprintf(buf + k, n - (size_t)k, "; %zu FP8 scales left out: the weights are dequantized",
		         in->nscales_dropped);
	return buf;
}

/* A sweep's values and outputs. */
static void print_sweep(FILE *f, const struct merge_cli *mc)
{
	fprintf(f, "  sweep: --%s, %zu values, one output each from one read of the inputs:\n",
	        lines_sweep_name(mc->sweep), mc->nsweep);
	for (size_t v = 0; v < mc->nsweep; v++) {
		fprintf(f, "    %s %s -> ", lines_sweep_name(mc->sweep), mc->sweep_tok[v]);
		fprintf(f, "%s\n", cli_printable(mc->sweep_out[v]));
	}
}

/* The inputs' matrix dtypes ("Q4_K (all)"), and what writing the output
 * in a block type costs (an estimate). */
static void print_types(FILE *f, const struct lines_plan_info *in)
{
	if (in->ninput_types) {
		fprintf(f, "  inputs:");
		for (size_t i = 0; i < in->ninput_types; i++)
			fprintf(f, "%s %s", i ? "," : "", in->input_types[i]);
		fprintf(f, "%s\n", in->ninput_types == 1 ? " (all)" : "");
	}
	if (!isnan(in->roundtrip_rms))
		fprintf(f,
		        "  output: %s matrices; a round trip through %s costs about %.2e "
		        "relative RMS (an estimate, measured on lines' test family)\n",
		        in->output_type, in->output_type, in->roundtrip_rms);
}

/* A tensor's own weights and densities (a configuration's gradients and
 * filters), after its name in -n -v's table: "  w 1,0.3,0.5  d 0.8,0.5". */
static void print_tensor_params(const struct lines_tensor_info *ti)
{
	for (int k = 0; k < 2; k++) {
		const double *v = k ? ti->densities : ti->weights;
		if (!v)
			continue;
		printf("  %s ", k ? "d" : "w");
		for (unsigned i = 0; i < ti->nmodels; i++)
			printf("%s%.6g", i ? "," : "", v[i]);
	}
}

static void print_plan(const struct merge_cli *mc, const struct lines_plan *plan)
{
	const struct lines_plan_info *in = lines_plan_info(plan);
	char a[32], b[32], t[160];

	/* cli_printable() has one buffer: one call per printf */
	if (mc->o.base)
		printf("plan: lines %s -b %s", mc->cmd, cli_printable(mc->o.base));
	else
		printf("plan: lines %s (no base; the first model is the reference)", mc->cmd);
	printf(" -> %s\n", strcmp(mc->o.output, "-") ? cli_printable(mc->o.output) : "(standard output)");
	if (mc->o.nsweep)
		print_sweep(stdout, mc);
	printf("  tensors: %zu (%s), blocks: %ld", in->ntensors, tensor_counts(mc, in, t, sizeof(t)),
	       in->num_layers);
	for (size_t k = 0; in->nstacks > 1 && k < in->nstacks; k++)
		printf("%s%s %ld%s", k ? ", " : " (", in->stacks[k].name, in->stacks[k].num_layers,
		       k + 1 == in->nstacks ? ")" : "");
	putchar('\n');
	print_types(stdout, in);
	print_scaling(stdout, mc, in, NULL);
	printf("  passes:\n");
	for (unsigned i = 0; i < in->npasses; i++) {
		cli_human(a, sizeof(a), in->pass_read_bytes[i]);
		printf("    %u. %-9s reads %s%s\n", i + 1, in->pass_names[i], a,
		       i + 1 == in->npasses ? ", writes the output"
		       : in->pass_optional[i] ? " (read-only, only if the passes before need it)"
		                              : " (read-only)");
	}
	cli_human(a, sizeof(a), in->output_bytes);
	cli_human(b, sizeof(b), in->memory_bound);
	printf("  output: %llu bytes (%s)\n", (unsigned long long)in->output_bytes, a);
	printf("  memory bound: %s (%u worker%s, %zu KiB chunks, %s reads, %s kernels", b,
	       in->jobs, in->jobs == 1 ? "" : "s", in->chunk >> 10, in->io, in->kernels);
	if (in->memory_metadata) {
		cli_human(a, sizeof(a), in->memory_metadata);
		printf("; headers and tables %s", a);
	}
	if (in->memory_scratch) {
		cli_human(a, sizeof(a), in->memory_scratch);
		printf("; workers' scratch %s", a);
	}
	printf(")\n");
	if (cli_verbose) {
		int tcol = mc->o.tensor_t != NULL; /* a configuration's t per tensor */
		printf("  %-6s %-5s %-10s %s%s\n", "block", "dtype", "lambda", tcol ? "t          " : "",
		       "tensor");
		for (size_t i = 0; i < in->ntensors; i++) {
			struct lines_tensor_info ti;
			double lam;
			char tt[40] = "";
			lines_plan_tensor(plan, i, &ti, &lam);
			char blk[16];
			snprintf(blk, sizeof(blk), "%ld", ti.block);
			if (tcol)
				snprintf(tt, sizeof(tt), "%-10s ", ti.is_float ? "" : "-");
			if (tcol && ti.is_float)
				snprintf(tt, sizeof(tt), "%-10.6g ", ti.t);
			printf("  %-6s %-5s %-10s %s%s", ti.block < 0 ? "-" : blk, ti.dtype,
			       ti.is_float ? (isnan(lam) ? "auto" : (snprintf(a, sizeof(a), "%.6f", lam), a))
			                   : "copy",
			       tt, cli_printable(ti.name));
			print_tensor_params(&ti);
			putchar('\n');
		}
	}
}

/* A part's first summary line: its shards and their bytes (the JSON
 * report's part), not the whole output's; 0 when the report lacks them. */
static int print_part_summary(const struct merge_cli *mc, const struct lines_plan *plan, double secs)
{
	char *text = lines_plan_json(plan, 1), b[32];
	json_t *root = text ? json_loads(text, 0, NULL) : NULL, *pt = json_object_get(root, "part");
	json_t *first = json_object_get(pt, "shard_first"), *shards = json_object_get(pt, "shards"),
	       *all = json_object_get(pt, "nshards"), *bytes = json_object_get(pt, "output_bytes");
	json_t *round = json_object_get(pt, "round");
	int ok = json_is_integer(first) && json_is_array(shards) && json_is_integer(all) &&
	         json_is_integer(bytes);
	if (ok && json_is_integer(round) && mc->o.stats_out) /* a statistics step */
		fprintf(stderr, "lines: measured part %u of %u, round %lld, into %s in %.2f s\n",
		        mc->o.part_k, mc->o.part_m, json_integer_value(round),
		        cli_printable(mc->o.stats_out), secs);
	else if (ok) {
		size_t n = json_array_size(shards);
		long long f = json_integer_value(first);
		cli_human(b, sizeof(b), (uint64_t)json_integer_value(bytes));
		fprintf(stderr, "lines: wrote part %u of %u into %s: ", mc->o.part_k, mc->o.part_m,
		        cli_printable(mc->o.output));
		if (!n)
			fprintf(stderr, "no shard (of %lld) in %.2f s\n", json_integer_value(all), secs);
		else if (n == 1)
			fprintf(stderr, "shard %lld of %lld (%s) in %.2f s\n", f + 1, json_integer_value(all), b,
			        secs);
		else
			fprintf(stderr, "shards %lld to %lld of %lld (%s) in %.2f s\n", f + 1, f + (long long)n,
			        json_integer_value(all), b, secs);
	}
	json_decref(root);
	free(text);
	return ok;
}

static void print_summary(const struct merge_cli *mc, const struct lines_plan *plan, double secs)
{
	const struct lines_plan_info *in = lines_plan_info(plan);
	char a[32], w[32], t[160];
	cli_human(a, sizeof(a), in->output_bytes);
	cli_human(w, sizeof(w), in->written_bytes);
	const char *first = in->noutputs > 1 ? "the first: " : ""; /* a sweep's sizes */
	if (mc->o.part_m && print_part_summary(mc, plan, secs))
		; /* its shards, not the whole output */
	else {
		if (in->noutputs > 1) /* its outputs are listed below */
			fprintf(stderr, "lines: wrote %zu outputs", in->noutputs);
		else
			fprintf(stderr, "lines: wrote %s",
			        strcmp(mc->o.output, "-") ? cli_printable(mc->o.output)
			                                  : "(standard output)");
		if (in->written_bytes != in->output_bytes)
			fprintf(stderr, " (%s%s, compressed from %s) in %.2f s\n", first, w, a, secs);
		else
			fprintf(stderr, " (%s%s) in %.2f s\n", first, a, secs);
	}
	fprintf(stderr, "  tensors: %zu (%s)\n", in->ntensors, tensor_counts(mc, in, t, sizeof(t)));
	print_types(stderr, in);
	if (mc->o.nsweep)
		print_sweep(stderr, mc);
	print_scaling(stderr, mc, in, plan);
}

/* The plan, or after the run its summary, as JSON on standard output. */
/* ---- --part: the steps of a partitioned run --------------------------------------- */
/* An argument as the shell reads it back: bare when it is plain, else
 * in single quotes. */
static void put_arg(FILE *f, const char *s)
{
	int plain = *s != '\0';
	for (const char *c = s; *c; c++)
		plain &= !!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
		                  "_./,:=@%+-",
		                  *c);
	if (plain) {
		fputs(s, f);
		return;
	}
	fputc('\'', f);
	for (const char *c = s; *c; c++)
		if (*c == '\'')
			fputs("'\\''", f);
		else
			fputc(*c, f);
	fputc('\'', f);
}

/* lines merge with the arguments given, less --part, --stats,
 * --stats-out, -n and --json, then "--part K/M" and what follows. */
static char *step_merge(int argc, char **argv, const char *tail)
{
	char *text = NULL;
	size_t len;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return NULL;
	fputs("lines merge", f);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--")) { /* the models after it */
			for (; i < argc; i++)
				fputc(' ', f), put_arg(f, argv[i]);
			break;
		}
		if (!strcmp(a, "--part") || !strcmp(a, "--stats") || !strcmp(a, "--stats-out")) {
			i++;
			continue;
		}
		if (!strncmp(a, "--part=", 7) || !strncmp(a, "--stats=", 8) ||
		    !strncmp(a, "--stats-out=", 12) || !strcmp(a, "-n") || !strcmp(a, "--dry-run") ||
		    !strcmp(a, "--json"))
			continue;
		fputc(' ', f);
		put_arg(f, a);
	}
	fputs(tail, f);
	return fclose(f) == 0 ? text : (free(text), NULL);
}

/* The directory of the statistics files: OUT.stats beside OUT. */
static char *stats_dir(const char *out)
{
	size_t n = strlen(out);
	while (n > 1 && out[n - 1] == '/')
		n--;
	char *d = malloc(n + 8);
	if (d)
		memcpy(d, out, n), strcpy(d + n, ".stats");
	return d;
}

static json_t *step(const char *kind, long round, long part, char *cmd)
{
	json_t *s = json_object();
	json_object_set_new(s, "step", json_string(kind));
	json_object_set_new(s, "round", round > 0 ? json_integer(round) : json_null());
	json_object_set_new(s, "part", part >= 0 ? json_integer(part) : json_null());
	json_object_set_new(s, "command", cmd ? json_string(cmd) : json_null());
	free(cmd);
	return s;
}

/*
 * Every step of the run for M parts and R rounds of statistics, in order:
 * per round, the map step of every part and the reduce; then the write
 * step of every part, and the assembly.
 */
static json_t *part_steps(const struct merge_cli *mc, int argc, char **argv, unsigned m,
                          unsigned rounds)
{
	json_t *steps = json_array();
	char *dir = stats_dir(mc->o.output), tail[4200];
	if (!dir || !steps) {
		free(dir);
		json_decref(steps);
		return NULL;
	}
	for (unsigned r = 1; r <= rounds; r++) {
		char prev[2100] = "";
		if (r > 1)
			snprintf(prev, sizeof(prev), " --stats %s/r%u.json", dir, r - 1);
		for (unsigned k = 0; k < m; k++) {
			snprintf(tail, sizeof(tail), " --part %u/%u%s --stats-out %s/r%u-part-%u.json", k, m,
			         prev, dir, r, k);
			json_array_append_new(steps, step("stats", r, k, step_merge(argc, argv, tail)));
		}
		snprintf(tail, sizeof(tail), "lines stats %s/r%u-part-*.json -o %s/r%u.json", dir, r, dir,
		         r);
		json_array_append_new(steps, step("combine", r, -1, strdup(tail)));
	}
	for (unsigned k = 0; k < m; k++) {
		char st[2100] = "";
		if (rounds)
			snprintf(st, sizeof(st), " --stats %s/r%u.json", dir, rounds);
		snprintf(tail, sizeof(tail), " --part %u/%u%s", k, m, st);
		json_array_append_new(steps, step("write", -1, k, step_merge(argc, argv, tail)));
	}
	snprintf(tail, sizeof(tail), "lines index %s", mc->o.output);
	json_array_append_new(steps, step("index", -1, -1, strdup(tail)));
	free(dir);
	return steps;
}

/* The plan as JSON: lines_plan_json, and with --part the steps. */
static char *plan_json_text(const struct merge_cli *mc, const struct lines_plan *plan,
                            int after_run, int argc, char **argv)
{
	char *text = lines_plan_json(plan, after_run);
	if (!text || !mc->o.part_m)
		return text;
	json_t *root = json_loads(text, 0, NULL), *part = json_object_get(root, "part");
	free(text);
	text = NULL;
	if (json_is_object(part)) {
		unsigned rounds = (unsigned)json_integer_value(json_object_get(part, "rounds"));
		json_t *steps = part_steps(mc, argc, argv, mc->o.part_m, rounds);
		if (steps)
			json_object_set_new(part, "steps", steps);
		text = steps ? json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(17)) : NULL;
	}
	json_decref(root);
	return text;
}

/* -n of a part: its share and every step. */
static void print_part(const struct merge_cli *mc, const struct lines_plan *plan, int argc,
                       char **argv)
{
	char *text = plan_json_text(mc, plan, 0, argc, argv), h[32];
	json_t *root = text ? json_loads(text, 0, NULL) : NULL;
	json_t *part = json_object_get(root, "part"), *shards = json_object_get(part, "shards");
	free(text);
	if (!json_is_object(part)) {
		json_decref(root);
		return;
	}
	size_t ns = json_array_size(shards);
	json_int_t first = json_integer_value(json_object_get(part, "shard_first"));
	json_int_t rounds = json_integer_value(json_object_get(part, "rounds"));
	printf("\npart %u of %u (K from 0) of plan %s:\n", mc->o.part_k, mc->o.part_m,
	       json_string_value(json_object_get(part, "plan")));
	if (ns)
		printf("  shards %lld to %lld of %lld (%lld tensors)\n", (long long)first + 1,
		       (long long)(first + (json_int_t)ns),
		       (long long)json_integer_value(json_object_get(part, "nshards")),
		       (long long)json_integer_value(json_object_get(part, "ntensors")));
	else
		printf("  no shard (more parts than shards): this part writes nothing\n");
	cli_human(h, sizeof(h), (uint64_t)json_integer_value(json_object_get(part, "read_bytes")));
	printf("  this step (%s) reads %s", json_string_value(json_object_get(part, "step")), h);
	cli_human(h, sizeof(h), (uint64_t)json_integer_value(json_object_get(part, "output_bytes")));
	printf(" and writes %s\n", h);
	printf("  %lld round%s of whole-model statistics before the parts write\n", (long long)rounds,
	       rounds == 1 ? "" : "s");
	printf("  the steps for %u parts, in order (the parts of a step in any order or at once):\n",
	       mc->o.part_m);
	json_t *steps = json_object_get(part, "steps"), *s;
	size_t i;
	json_array_foreach(steps, i, s)
		printf("    %s\n", json_string_value(json_object_get(s, "command")));
	json_decref(root);
}

static int print_json(const struct merge_cli *mc, const struct lines_plan *plan, int after_run,
                      int argc, char **argv)
{
	char *text = plan_json_text(mc, plan, after_run, argc, argv);
	if (!text) {
		cli_msg("out of memory for the JSON report");
		return CLI_EXIT_FAIL;
	}
	puts(text);
	free(text);
	if (fflush(stdout) == 0 && !ferror(stdout))
		return CLI_EXIT_OK;
	if (errno == EPIPE) /* `lines merge --json ... | head`: quietly, as a write does */
		return 128 + SIGPIPE;
	cli_msg("standard output: %s", strerror(errno));
	return CLI_EXIT_FAIL;
}

/* ---- --config --------------------------------------------------------------------- */
/* The option called NAME ("--weights"): its entry, or NULL. */
static const struct option *long_option(const char *name)
{
	if (strncmp(name, "--", 2))
		return NULL;
	for (const struct option *o = merge_options; o->name; o++)
		if (!strcmp(o->name, name + 2))
			return o;
	return NULL;
}

/* An option of the configuration that one given on the command line
 * replaces: the same one, its negation, or one it cannot go with. */
static int overridden(const unsigned char *given, int c)
{
	static const int pairs[][2] = {
		{OPT_NORMALIZE, OPT_NO_NORMALIZE}, {OPT_NO_NORMALIZE, OPT_NORMALIZE},
		{OPT_RESCALE, OPT_NO_RESCALE},     {OPT_NO_RESCALE, OPT_RESCALE},
		{OPT_LINES, OPT_GAMMA},           {OPT_ALPHA, OPT_GAMMA},
		{OPT_BETA, OPT_GAMMA},            {OPT_LINES, OPT_LAMBDA},
		{OPT_ALPHA, OPT_LAMBDA},          {OPT_BETA, OPT_LAMBDA},
		{OPT_LAMBDA, OPT_LINES},          {OPT_LAMBDA, OPT_ALPHA},
		{OPT_LAMBDA, OPT_BETA},           {OPT_LAMBDA, OPT_GAMMA},
		{OPT_STACKS, OPT_STACK_ORDER},    {OPT_STACK_ORDER, OPT_STACKS},
		{OPT_SCHEDULE, OPT_LAMBDA},
	};
	if (given[c])
		return 1;
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
		if (pairs[i][0] == c && given[pairs[i][1]])
			return 1;
	return 0;
}

/* Print the configuration's problems: the exit status of a usage error. */
static int config_problems(const struct mcfg *cfg)
{
	for (size_t i = 0; i < cfg->nproblems; i++)
		cli_msg("%s", cfg->problems[i]);
	fprintf(stderr, "lines: %zu problem%s in %s; nothing was read or written\n", cfg->nproblems,
	        cfg->nproblems == 1 ? "" : "s", cfg->file);
	return CLI_EXIT_USAGE;
}

/* The command line again, with the configuration's options first (less
 * those given on the command line) and its models last; each option
 * taken from the configuration is known by where it came from (where[k]
 * for args[k]; NULL when nothing says), for the messages. */
static int config_argv(struct merge_cli *mc, char **args, char *const *where, size_t nargs,
                       size_t nmodels, int argc, char **argv, int *argc_all)
{
	char **v = calloc(nargs + (size_t)argc + 1, sizeof(*v));
	size_t n = 0;
	if (!v) {
		cli_msg("out of memory");
		return CLI_EXIT_FAIL;
	}
	v[n++] = argv[0];
	for (size_t i = 0; i + nmodels < nargs; i++) {
		const struct option *o = long_option(args[i]);
		int arg = o && o->has_arg == required_argument && i + 1 + nmodels < nargs;
		if (o && !overridden(mc->given, o->val)) {
			v[n++] = args[i];
			if (arg)
				v[n++] = args[i + 1];
			if (where && where[i])
				cli_origin_add(args[i], where[i]);
		}
		i += (size_t)arg;
	}
	for (int i = 1; i < argc; i++)
		v[n++] = argv[i];
	for (size_t i = nargs - nmodels; i < nargs; i++)
		v[n++] = args[i];
	mc->argv_all = v;
	*argc_all = (int)n;
	return 0;
}

/* Read --config FILE, then parse its options and the command line's into
 * a fresh state: 0, or an exit status. */
static int apply_config(struct merge_cli *mc, int argc, char **argv)
{
	struct mcfg *cfg;
	size_t nargs = 0, nmodels = 0;
	char **args = NULL;
	int rc, argc_all;

	if (mc->o.nmodels)
		return cli_usage_error(mc->cmd, "--config names the models: give no MODEL beside it");
	if (!(cfg = mcfg_read(mc->config, NULL, 0)) || mcfg_args(cfg, &args, &nargs, &nmodels) < 0) {
		mcfg_free(cfg);
		cli_msg("out of memory");
		return CLI_EXIT_FAIL;
	}
	if (cfg->nproblems) {
		rc = config_problems(cfg);
		mcfg_args_free(args, nargs);
		mcfg_free(cfg);
		return rc;
	}
	if (cfg->nslices && (mc->given['b'] || mc->given['m'])) {
		mcfg_args_free(args, nargs);
		mcfg_free(cfg);
		return cli_usage_error(mc->cmd, "--config with slices: the slices decide the inputs: "
		                                "give base_model and merge_method in the configuration, "
		                                "not -b or -m");
	}
	struct mcfg_slices slices;
	if (mcfg_take_slices(cfg, &slices) < 0) {
		mcfg_slices_free(&slices);
		mcfg_args_free(args, nargs);
		mcfg_free(cfg);
		cli_msg("out of memory");
		return CLI_EXIT_FAIL;
	}
	char **where = cfg->arg_where; /* kept until config_argv() */
	size_t nwhere = cfg->narg_where;
	cfg->arg_where = NULL, cfg->narg_where = 0;
	char *owned[3] = {cfg->name.s, cfg->chat_template.s, cfg->dtype.s};
	cfg->name.s = cfg->chat_template.s = cfg->dtype.s = NULL; /* kept, not freed */
	struct mcfg *keep = NULL;
	/* mcfg_tensor_value() reads it during the plan, unless the command
	 * line gives one t for all; mcfg_tensor_params() the weights and
	 * densities per tensor, unless -w or --density gives them */
	if (mc->given[OPT_T])
		cfg->tensor_param = NULL;
	if (mc->given['w'])
		cfg->tensor_lists &= ~(unsigned)MCFG_TENSOR_W;
	if (mc->given[OPT_DENSITY])
		cfg->tensor_lists &= ~(unsigned)MCFG_TENSOR_D;
	if (cfg->tensor_param || cfg->tensor_lists)
		keep = cfg;
	else
		mcfg_free(cfg);
	if (cli_verbose) {
		fprintf(stderr, "lines: the configuration means:");
		for (size_t i = 0; i < nargs; i++)
			fprintf(stderr, " %s", cli_printable(args[i]));
		fputc('\n', stderr);
		if (keep) /* values per tensor: no command line gives them */
			fprintf(stderr,
			        "lines: ... except that %s%s%s%s%s differ%s between tensors (the configuration's "
			        "gradients or filters); the options above give one value for all\n",
			        keep->tensor_param ? keep->tensor_param : "",
			        keep->tensor_param && keep->tensor_lists ? ", " : "",
			        keep->tensor_lists & MCFG_TENSOR_W ? "weight" : "",
			        (keep->tensor_lists & MCFG_TENSOR_W) && (keep->tensor_lists & MCFG_TENSOR_D) ? ", " : "",
			        keep->tensor_lists & MCFG_TENSOR_D ? "density" : "",
			        keep->tensor_param && keep->tensor_lists ? "" : "s");
	}
	rc = config_argv(mc, args, nwhere == nargs ? where : NULL, nargs, nmodels, argc, argv,
	                 &argc_all);
	mcfg_args_free(where, nwhere);
	if (rc != 0) {
		mcfg_free(keep);
		mcfg_slices_free(&slices);
		mcfg_args_free(args, nargs);
		for (int i = 0; i < 3; i++)
			free(owned[i]);
		return rc;
	}
	/* start again from the defaults: the configuration's options, then ours */
	free_lists(mc);
	char **all = mc->argv_all;
	*mc = (struct merge_cli){.cmd = mc->cmd, .o.command = mc->o.command};
	lines_merge_opts_init(&mc->o);
	mc->o.command = "merge";
	mc->argv_all = all, mc->cfg_args = args, mc->ncfg_args = nargs;
	memcpy(mc->extra_owned, owned, sizeof(owned));
	mc->extra = (struct mcfg_extra){owned[0], owned[1], owned[2], NULL};
	mc->slices = slices;
	mc->cfg = keep;
	if ((rc = parse(mc, argc_all, all)) != 0)
		return rc;
	mc->o.slices = mc->slices.s;
	mc->o.nslices = mc->slices.n;
	if (keep && keep->tensor_param) { /* t per tensor */
		mc->o.tensor_t = mcfg_tensor_value;
		mc->o.t_ctx = keep;
	}
	if (keep && keep->tensor_lists) { /* weights, densities per tensor */
		mc->o.tensor_params = mcfg_tensor_params;
		mc->o.tp_ctx = keep;
	}
	mc->extra.cfg = keep;
	return 0;
}

/* The configuration of o as YAML into *text (NULL where no key says
 * the options yet); 0, or the exit status. */
static int print_text(struct merge_cli *mc, const struct lines_merge_opts *o, char **text)
{
	size_t len;
	FILE *f = open_memstream(text, &len);
	int rc = f ? mcfg_print(f, o, &mc->extra) : -1;
	if (!f || rc == -1 || fclose(f) != 0) {
		cli_msg("out of memory for the configuration");
		return CLI_EXIT_FAIL;
	}
	if (rc == MCFG_NO_FORM) {
		free(*text);
		*text = NULL;
	}
	return 0;
}

/* The configuration as run, for a directory output's lines_config.yml:
 * one per value of a sweep, each what a run with that value records. */
static int config_text(struct merge_cli *mc)
{
	struct lines_merge_opts ov;
	int rc = print_text(mc, &mc->o, &mc->yaml);
	mc->o.config_yaml = mc->yaml;
	if (rc != 0 || !mc->o.sweep)
		return rc;
	if (!(mc->sweep_yaml = calloc(mc->nsweep, sizeof(char *)))) {
		cli_msg("out of memory for the configuration");
		return CLI_EXIT_FAIL;
	}
	for (size_t v = 0; v < mc->nsweep; v++) {
		lines_sweep_value(&mc->o, v, &ov);
		if ((rc = print_text(mc, &ov, &mc->sweep_yaml[v])) != 0)
			return rc;
	}
	mc->o.sweep_config_yaml = (const char *const *)mc->sweep_yaml;
	return 0;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int run(struct merge_cli *mc, int argc, char **argv)
{
	struct lines_plan *plan = NULL;
	struct lines_error err;
	double t0 = now();
	int rc;

	if ((rc = parse(mc, argc, argv)) != 0)
		goto out;
	if (mc->config && (rc = apply_config(mc, argc, argv)) != 0)
		goto out;
	if ((rc = check(mc)) != 0)
		goto out;
	if (mc->print_config) {
		if (mcfg_no_form(&mc->o)) {
			rc = cli_usage_error(mc->cmd, "--print-config: %s", mcfg_no_form(&mc->o));
			goto out;
		}
		if (mc->o.sweep) {
			rc = cli_usage_error(mc->cmd, "--print-config prints one configuration: give "
			                              "--%s one value", lines_sweep_name(mc->o.sweep));
			goto out;
		}
		if (mcfg_print(stdout, &mc->o, &mc->extra) < 0) {
			cli_msg("standard output: %s", strerror(errno));
			rc = CLI_EXIT_FAIL;
		}
		goto out;
	}
	if ((rc = config_text(mc)) != 0)
		goto out;
	mc->o.log = cli_log;
	mc->o.progress = cli_progress;
	cli_signals();
	if (lines_plan_new(&mc->o, &plan, &err) < 0) {
		rc = cli_report(&err);
		goto out;
	}
	if (cli_signal_caught()) {
		rc = 128 + cli_signal_caught();
		goto out;
	}
	if (mc->dry_run) {
		if (mc->json)
			rc = print_json(mc, plan, 0, argc, argv);
		else {
			print_plan(mc, plan);
			if (mc->o.part_m)
				print_part(mc, plan, argc, argv);
		}
		goto out;
	}
	if (lines_plan_run(plan, &err) < 0) {
		rc = cli_report(&err);
		goto out;
	}
	cli_progress_end();
	if (mc->json)
		rc = print_json(mc, plan, 1, argc, argv);
	else if (!cli_quiet)
		print_summary(mc, plan, now() - t0);
out:
	lines_plan_free(plan);
	mcfg_args_free(mc->cfg_args, mc->ncfg_args);
	free(mc->yaml);
	for (size_t v = 0; mc->sweep_yaml && v < mc->nsweep; v++)
		free(mc->sweep_yaml[v]);
	free(mc->sweep_yaml);
	for (int i = 0; i < 3; i++)
		free(mc->extra_owned[i]);
	mcfg_slices_free(&mc->slices);
	mcfg_free(mc->cfg);
	free(mc->argv_all);
	free_lists(mc);
	return rc;
}

int cmd_merge(int argc, char **argv)
{
	struct merge_cli mc = {.cmd = "merge"};
	lines_merge_opts_init(&mc.o);
	mc.o.command = "merge";
	return run(&mc, argc, argv);
}

int cmd_scale(int argc, char **argv)
{
	struct merge_cli mc = {.cmd = "scale"};
	int rc;
	lines_merge_opts_init(&mc.o);
	mc.o.command = "scale";
	/* scale accepts the merge options but needs --gamma and one model */
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			scale_help();
			return CLI_EXIT_OK;
		}
	rc = parse(&mc, argc, argv);
	if (rc == 0 && (mc.config || mc.print_config))
		rc = cli_usage_error("scale", "--config and --print-config belong to lines merge");
	else if (rc == 0 && !mc.have_gamma)
		rc = cli_usage_error("scale", "--gamma G is required");
	else if (rc == 0 && mc.o.nmodels != 1)
		rc = cli_usage_error("scale", "scale edits exactly one MODEL (got %zu)", mc.o.nmodels);
	else if (rc == 0 && (mc.o.part_m || mc.o.stats_in || mc.o.stats_out))
		rc = cli_usage_error("scale", "--part, --stats and --stats-out belong to lines merge "
		                              "(lines merge -m sum --gamma G runs in parts)");
	else if (rc == 0 && (mc.have_method || mc.weights || mc.have_lambda || mc.have_lines ||
	                     mc.have_alpha || mc.have_beta || mc.have_norm))
		rc = cli_usage_error("scale", "-m, -w, --lambda, --lines, --alpha, --beta and --norm "
		                              "belong to lines merge; scale takes --gamma");
	free_lists(&mc);
	if (rc != 0)
		return rc;
	/* parse again inside run(): getopt state is reset there */
	return run(&mc, argc, argv);
}
