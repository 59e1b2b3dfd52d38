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

#include "cli.h"

enum {
	OPT_LAMBDA = 256, OPT_LINES, OPT_ALPHA, OPT_BETA, OPT_GAMMA, OPT_NORM, OPT_DENSITY,
	OPT_TRIM, OPT_SEED, OPT_DARE_ELECT, OPT_DTYPE, OPT_LAYER_REGEX, OPT_NUM_LAYERS, OPT_IO,
	OPT_CHUNK, OPT_STRICT, OPT_DIRECT, OPT_ZSTD_LEVEL, OPT_NO_CHECKSUM, OPT_CHECKSUM_FILE,
	OPT_MANIFEST, OPT_SHARD_SIZE, OPT_NO_COPY, OPT_JSON, OPT_STACKS, OPT_STACK_ORDER, OPT_VOCAB,
	OPT_NORMALIZE, OPT_NO_NORMALIZE, OPT_T, OPT_CONSENSUS_K, OPT_TALL_LAMBDA, OPT_CONSENSUS_OVER,
	OPT_RESCALE, OPT_NO_RESCALE, OPT_EPSILON, OPT_RAM_R, OPT_RAM_ALPHA, OPT_SELECT_TOPK, OPT_COUNT
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
	{"select-topk", required_argument, NULL, OPT_SELECT_TOPK},
	{"dtype", required_argument, NULL, OPT_DTYPE},
	{"layer-regex", required_argument, NULL, OPT_LAYER_REGEX},
	{"num-layers", required_argument, NULL, OPT_NUM_LAYERS},
	{"stacks", required_argument, NULL, OPT_STACKS},
	{"stack-order", required_argument, NULL, OPT_STACK_ORDER},
	{"vocab", required_argument, NULL, OPT_VOCAB},
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
	       "                   [--density D] [--trim global|tensor] [--seed S] [--dare-elect]\n"
	       "                   [--normalize | --no-normalize] [--rescale | --no-rescale] [--t T]\n"
	       "                   [--consensus-k K] [--tall-lambda L|L1,L2,...] [--consensus-over ta]\n"
	       "                   [--epsilon E] [--ram-r R] [--ram-alpha A] [--select-topk F]\n"
	       "                   [--dtype bf16|f16|f32|f64|fp8] [--layer-regex RE] [--num-layers L]\n"
	       "                   [--stacks separate|joint | --stack-order A,B]\n"
	       "                   [-o OUT] [-j N] [--io auto|mmap|uring] [--direct] [--chunk SIZE]\n"
	       "                   [--zstd-level N] [--no-checksum | --checksum-file F --manifest F]\n"
	       "                   [--strict] [-q] [-v] [-n] [--json] MODEL...\n\n"
	       "  MODEL and BASE may be a .safetensors file, a model.safetensors.index.json or a\n"
	       "  directory holding either, - (standard input), or end in .zst (decompressed);\n"
	       "  org/name[@rev] names a model in the local Hugging Face cache.\n"
	       "  OUT ending in / (or an empty directory) is written as a model directory.\n"
	       "  OUT ending in .zst is compressed; OUT.xxh128 and OUT.manifest.json go with it.\n\n"
	       "  -b, --base BASE     the pre-trained model the task vectors are taken from\n"
	       "                      (optional with -m linear, nuslerp and multislerp: then\n"
	       "                      only for LiNeS, --lambda; with -m slerp, the t = 0 end)\n"
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
	       "                      ramplus_tl (ram, lone changes scaled per tensor) or\n"
	       "                      sce (positions of high variance, weights from mean\n"
	       "                      squares, signs elected as ties)\n"
	       "  -w, --weights LIST  one weight per MODEL (default 1 each; not nearswap,\n"
	       "                      slerp, model_stock, ram, ramplus_tl or sce)\n"
	       "      --lambda X      global scale of the merged task vector (default 1)\n"
	       "      --lines         scale block i of L by alpha + beta * i / (L - 1)\n"
	       "      --alpha A|auto  LiNeS alpha; auto (the default for several models) sets\n"
	       "                      ||tau_1 + ... + tau_N|| / (N ||tau_merged||)\n"
	       "      --beta B        LiNeS beta (default max(0, 1 - alpha): the last block\n"
	       "                      gets 1)\n"
	       "      --gamma G       single-task LiNeS: alpha = G, beta = 1 - G\n"
	       "      --norm l1|l2    the norm of automatic alpha (default l1)\n"
	       "      --density D     ties: fraction of each task vector kept by magnitude;\n"
	       "                      dare: probability of keeping an entry (default 0.2);\n"
	       "                      a list D1,D2,... gives one per MODEL\n"
	       "      --trim global|tensor  ties: one threshold per task over the whole model\n"
	       "                      (default) or one per tensor\n"
	       "      --seed S        dare: the seed of the drops (default 0)\n"
	       "      --dare-elect    dare: elect signs and average as ties does\n"
	       "      --normalize, --no-normalize  linear, multislerp: divide the weights by\n"
	       "                      their sum; ties, dare_ties: by the sum of the agreeing\n"
	       "                      ones (default) or not\n"
	       "      --rescale, --no-rescale  dare: rescale the kept values to keep each task\n"
	       "                      vector's L1 norm per tensor (mergekit's rescale), or\n"
	       "                      not (default: divide them by the density)\n"
	       "      --t T           nearswap: the sameness threshold, T > 0 (required);\n"
	       "                      slerp: the position, 0 the base, 1 the model (required)\n"
	       "      --consensus-k K consensus: keep an element where at least K of the\n"
	       "                      models' TALL masks hold it (default 2; 0 keeps all)\n"
	       "      --tall-lambda L|L1,L2,...  consensus: task t's mask is\n"
	       "                      |tau_t| > L_t |tau_sum - tau_t| (default 0.4 each)\n"
	       "      --consensus-over ta  consensus: the masked vector is the task-arithmetic\n"
	       "                      sum (the only one so far; ties is refused)\n"
	       "      --epsilon E     ram, ramplus_tl: model i changed an element where\n"
	       "                      |tau_i| > E (default 1e-5, E >= 0)\n"
	       "      --ram-r R       ramplus_tl: lambda_i = 1 + R clamp(rho_i, 0, A), rho_i\n"
	       "                      = shared_i / max(unique_i, E) per tensor (default 0.1)\n"
	       "      --ram-alpha A   ramplus_tl: the clamp of rho_i (default 0.2, A >= 0)\n"
	       "      --select-topk F sce: keep the fraction F of the positions, those whose\n"
	       "                      task vectors vary most (default 1: all; 0 <= F <= 1)\n"
	       "      --dtype T       output dtype of merged tensors (default: the base's)\n"
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
	       "      --zstd-level N  compression level when OUT ends in .zst (default 1)\n"
	       "      --no-checksum   no OUT.xxh128 and no OUT.manifest.json\n"
	       "      --checksum-file F  write the XXH3-128 line there (for -o -: the only way)\n"
	       "      --manifest F    write the manifest there\n"
	       "      --shard-size SIZE  with -o DIR/: shards of at most SIZE (default 5GB)\n"
	       "      --no-copy       with -o DIR/: do not copy config.json, tokenizer files...\n"
	       "  -n, --dry-run       print the plan, write nothing\n"
	       "      --json          the plan (-n) or the summary of the run as JSON on\n"
	       "                      standard output (not with -o -)\n"
	       "  -q, --quiet         no progress, no summary, no warnings\n"
	       "  -v, --verbose       with -n, list every tensor with its block and lambda\n");
}

static void scale_help(void)
{
	printf("usage: lines scale -b BASE --gamma G [-o OUT] [options] MODEL\n\n"
	       "MODEL and BASE may be - (standard input) or end in .zst; OUT ending in .zst\n"
	       "is compressed.\n\n"
	       "Keep gamma of the update of the first block, all of it in the last, and a\n"
	       "linear ramp between: theta = theta_0 + (gamma + (1 - gamma) i / (L - 1)) tau.\n"
	       "Tensors outside the blocks keep gamma of their update.\n\n"
	       "Options as for lines merge (see lines-scale(1)):\n"
	       "  -b/--base, --gamma, -o/--output, --dtype, --layer-regex, --num-layers,\n"
	       "  --stacks, --stack-order, --vocab,\n"
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
	int have_normalize, have_t, have_consensus, have_rescale, have_epsilon, have_ram, have_select;
	double gamma;
	double *tall;
	size_t ntall;
};

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
			return cli_usage_error(mc->cmd, "--consensus-over ties is not implemented yet: "
			                                "the masks and the merge are over the "
			                                "task-arithmetic sum (ta)");
		if (strcmp(optarg, "ta"))
			return cli_usage_error(mc->cmd, "--consensus-over: '%s' is not ta", optarg);
		break;
	}
	return 0;
}

/* --epsilon, --ram-r, --ram-alpha: 0, or the exit status of a usage error. */
static int parse_ram_option(struct merge_cli *mc, int c)
{
	struct lines_merge_opts *o = &mc->o;
	const char *name = c == OPT_EPSILON ? "--epsilon" : c == OPT_RAM_R ? "--ram-r" : "--ram-alpha";
	double *v = c == OPT_EPSILON ? &o->ram_epsilon : c == OPT_RAM_R ? &o->ram_r : &o->ram_alpha;
	if (c == OPT_EPSILON)
		mc->have_epsilon = 1;
	else
		mc->have_ram = 1;
	if (cli_parse_double(mc->cmd, name, optarg, v) < 0)
		return CLI_EXIT_USAGE;
	if (!isfinite(*v) || (c != OPT_RAM_R && *v < 0))
		return cli_usage_error(mc->cmd, "%s must be finite%s", name,
		                       c != OPT_RAM_R ? " and at least 0" : "");
	return 0;
}

/* The options of one method or another (check_method_options() refuses
 * those the chosen method does not take): 0, or the exit status of a
 * usage error. */
static int parse_method_option(struct merge_cli *mc, int c)
{
	struct lines_merge_opts *o = &mc->o;

	switch (c) {
	case OPT_DENSITY:
		mc->have_ties_opts = 1;
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
	case OPT_RESCALE: o->rescale = LINES_RESCALE_L1, mc->have_rescale = 1; break;
	case OPT_SELECT_TOPK:
		mc->have_select = 1;
		if (cli_parse_double(mc->cmd, "--select-topk", optarg, &o->select_topk) < 0)
			return CLI_EXIT_USAGE;
		if (!(o->select_topk >= 0 && o->select_topk <= 1))
			return cli_usage_error(mc->cmd, "--select-topk must be in [0, 1]");
		break;
	case OPT_NO_RESCALE: o->rescale = LINES_RESCALE_NONE, mc->have_rescale = 1; break;
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
		                                "ram, ramplus_tl, sce)",
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
			if (cli_parse_double(mc->cmd, "--lambda", optarg, &o->lambda) < 0)
				return CLI_EXIT_USAGE;
			mc->have_lambda = 1;
			break;
		case OPT_LINES: o->lines = 1, mc->have_lines = 1; break;
		case OPT_ALPHA:
			mc->have_alpha = 1;
			o->lines = 1;
			if (!strcmp(optarg, "auto")) {
				o->alpha_auto = 1;
			} else {
				o->alpha_auto = 0;
				if (cli_parse_double(mc->cmd, "--alpha", optarg, &o->alpha) < 0)
					return CLI_EXIT_USAGE;
			}
			break;
		case OPT_BETA:
			mc->have_beta = 1;
			o->lines = 1;
			if (cli_parse_double(mc->cmd, "--beta", optarg, &o->beta) < 0)
				return CLI_EXIT_USAGE;
			break;
		case OPT_GAMMA:
			mc->have_gamma = 1;
			if (cli_parse_double(mc->cmd, "--gamma", optarg, &mc->gamma) < 0)
				return CLI_EXIT_USAGE;
			if (mc->gamma < 0 || mc->gamma > 1)
				return cli_usage_error(mc->cmd, "--gamma must be between 0 and 1");
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
		case OPT_EPSILON: case OPT_RAM_R: case OPT_RAM_ALPHA: case OPT_SELECT_TOPK:
			if ((rc = parse_method_option(mc, c)) != 0)
				return rc;
			break;
		case OPT_DTYPE:
			if (strcasecmp(optarg, "bf16") && strcasecmp(optarg, "f16") &&
			    strcasecmp(optarg, "f32") && strcasecmp(optarg, "f64") && strcasecmp(optarg, "fp8"))
				return cli_usage_error(mc->cmd, "--dtype: '%s' is not bf16, f16, f32, f64 or fp8",
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
	     mc->have_epsilon || mc->have_ram || mc->have_select))
		return cli_usage_error(mc->cmd, "--normalize, --no-normalize, --rescale, --no-rescale, "
		                                "--t, the --consensus and --tall-lambda options, "
		                                "--epsilon, the --ram options and --select-topk "
		                                "belong to lines merge");
	if (!o->base && !(mo & LINES_MOPT_NO_BASE))
		return cli_usage_error(mc->cmd, "no base model: give -b BASE");
	if ((mo & LINES_MOPT_ONE_MODEL) && o->nmodels != 1)
		return cli_usage_error(mc->cmd, "-m %s merges exactly one MODEL into the base (got %zu)",
		                       name, o->nmodels);
	if (mc->weights && !(mo & LINES_MOPT_WEIGHTS))
		return cli_usage_error(mc->cmd, "-m %s takes no weights (-w)", name);
	if (mc->have_ties_opts && !(mo & LINES_MOPT_DENSITY))
		return cli_usage_error(mc->cmd, "--density, --trim, --seed and --dare-elect apply to "
		                                "-m ties and -m dare only");
	if (mc->have_trim && !(mo & LINES_MOPT_TRIM))
		return cli_usage_error(mc->cmd, "--trim applies to -m ties only (DARE drops at random)");
	if (mc->have_dare_opts && !(mo & LINES_MOPT_SEED))
		return cli_usage_error(mc->cmd, "--seed and --dare-elect apply to -m dare only");
	if (mc->have_normalize && (!(mo & LINES_MOPT_NORMALIZE) ||
	                           (o->method == LINES_M_DARE && !o->dare_elect)))
		return cli_usage_error(mc->cmd, "--normalize and --no-normalize apply to -m linear, "
		                                "multislerp, ties and dare_ties only (-m mean is sum normalized; "
		                                "dare_linear sums)");
	if (mc->have_rescale && !(mo & LINES_MOPT_RESCALE))
		return cli_usage_error(mc->cmd, "--rescale and --no-rescale apply to -m dare only");
	if (mc->mname && !strcmp(mc->mname, "dare_linear") && o->dare_elect)
		return cli_usage_error(mc->cmd, "-m dare_linear elects no signs: for --dare-elect "
		                                "give -m dare_ties");
	if (mc->have_t && !(mo & LINES_MOPT_T))
		return cli_usage_error(mc->cmd, "--t applies to -m nearswap and -m slerp only");
	if (mc->have_consensus && !(mo & LINES_MOPT_CONSENSUS))
		return cli_usage_error(mc->cmd, "--consensus-k, --tall-lambda and --consensus-over "
		                                "apply to -m consensus only");
	if (mc->have_epsilon && !(mo & LINES_MOPT_EPSILON))
		return cli_usage_error(mc->cmd, "--epsilon applies to -m ram and -m ramplus_tl only");
	if (mc->have_ram && !(mo & LINES_MOPT_RAM))
		return cli_usage_error(mc->cmd, "--ram-r and --ram-alpha apply to -m ramplus_tl only "
		                                "(LiNeS's alpha is --alpha)");
	if (mc->have_select && !(mo & LINES_MOPT_SELECT_TOPK))
		return cli_usage_error(mc->cmd, "--select-topk applies to -m sce only");
	if ((mo & LINES_MOPT_T) && !mc->have_t)
		return cli_usage_error(mc->cmd, "-m %s needs --t T (no default, as in mergekit)", name);
	if (!o->base && (o->lines || mc->have_gamma || mc->have_lambda))
		return cli_usage_error(mc->cmd, "-m %s without -b has no base to scale toward: "
		                                "--lines, --alpha, --beta, --gamma and --lambda need "
		                                "-b BASE", name);
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
	if (o->lines && !mc->have_alpha && !mc->have_gamma && o->nmodels == 1)
		return cli_usage_error(mc->cmd, "with one model, give --alpha or --gamma "
		                                "(automatic alpha compares several task vectors)");
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
	if (mc->ndensities > 1) {
		if (mc->ndensities != o->nmodels)
			return cli_usage_error(mc->cmd, "--density gives %zu densities for %zu model%s",
			                       mc->ndensities, o->nmodels, o->nmodels == 1 ? "" : "s");
		o->densities = mc->densities;
	}
	if (!o->output) {
		if (isatty(STDOUT_FILENO) && !mc->dry_run)
			return cli_usage_error(mc->cmd, "no output given and standard output is a "
			                                "terminal: give -o OUT (or -o - to insist)");
		o->output = "-";
	}
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

static void print_lambdas(FILE *f, const struct lines_plan_info *in, const char *beta)
{
	if (in->lambda && !in->alpha_known) {
		fprintf(f, "  lambda per block i: alpha + beta * i / %ld, beta = %s\n",
		        in->num_layers > 1 ? in->num_layers - 1 : 1, beta);
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
				fprintf(f, "): alpha + beta * (%ld + i) / %ld, beta = %s\n", st->first,
				        st->ramp > 1 ? st->ramp - 1 : 1, beta);
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

static void print_scaling(FILE *f, const struct merge_cli *mc, const struct lines_plan_info *in)
{
	const struct lines_merge_opts *o = &mc->o;
	fprintf(f, "  method: %s of %zu model%s", lines_method_name(o->method), o->nmodels,
	        o->nmodels == 1 ? "" : "s");
	if (o->weights) {
		fprintf(f, ", weights");
		for (size_t i = 0; i < o->nmodels; i++)
			fprintf(f, "%s%g", i ? "," : " ", o->weights[i]);
	}
	fputc('\n', f);
	if (o->method == LINES_M_CONSENSUS)
		print_consensus(f, o);
	if (o->method == LINES_M_RAM || o->method == LINES_M_RAMPLUS_TL)
		print_ram(f, o);
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
	print_lambdas(f, in, beta);
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
	printf("  tensors: %zu (%s), blocks: %ld", in->ntensors, tensor_counts(mc, in, t, sizeof(t)),
	       in->num_layers);
	for (size_t k = 0; in->nstacks > 1 && k < in->nstacks; k++)
		printf("%s%s %ld%s", k ? ", " : " (", in->stacks[k].name, in->stacks[k].num_layers,
		       k + 1 == in->nstacks ? ")" : "");
	putchar('\n');
	print_scaling(stdout, mc, in);
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
	printf(")\n");
	if (cli_verbose) {
		printf("  %-6s %-5s %-10s %s\n", "block", "dtype", "lambda", "tensor");
		for (size_t i = 0; i < in->ntensors; i++) {
			struct lines_tensor_info ti;
			double lam;
			lines_plan_tensor(plan, i, &ti, &lam);
			char blk[16];
			snprintf(blk, sizeof(blk), "%ld", ti.block);
			printf("  %-6s %-5s %-10s %s\n", ti.block < 0 ? "-" : blk, ti.dtype,
			       ti.is_float ? (isnan(lam) ? "auto" : (snprintf(a, sizeof(a), "%.6f", lam), a))
			                   : "copy",
			       cli_printable(ti.name));
		}
	}
}

static void print_summary(const struct merge_cli *mc, const struct lines_plan *plan, double secs)
{
	const struct lines_plan_info *in = lines_plan_info(plan);
	char a[32], w[32], t[160];
	cli_human(a, sizeof(a), in->output_bytes);
	cli_human(w, sizeof(w), in->written_bytes);
	fprintf(stderr, "lines: wrote %s",
	        strcmp(mc->o.output, "-") ? cli_printable(mc->o.output) : "(standard output)");
	if (in->written_bytes != in->output_bytes)
		fprintf(stderr, " (%s, compressed from %s) in %.2f s\n", w, a, secs);
	else
		fprintf(stderr, " (%s) in %.2f s\n", a, secs);
	fprintf(stderr, "  tensors: %zu (%s)\n", in->ntensors, tensor_counts(mc, in, t, sizeof(t)));
	print_scaling(stderr, mc, in);
}

/* The plan, or after the run its summary, as JSON on standard output. */
static int print_json(const struct lines_plan *plan, int after_run)
{
	char *text = lines_plan_json(plan, after_run);
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

	if ((rc = parse(mc, argc, argv)) != 0 || (rc = check(mc)) != 0)
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
			rc = print_json(plan, 0);
		else
			print_plan(mc, plan);
		goto out;
	}
	if (lines_plan_run(plan, &err) < 0) {
		rc = cli_report(&err);
		goto out;
	}
	cli_progress_end();
	if (mc->json)
		rc = print_json(plan, 1);
	else if (!cli_quiet)
		print_summary(mc, plan, now() - t0);
out:
	lines_plan_free(plan);
	free(mc->weights);
	free(mc->tall);
	free(mc->densities);
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
	if (rc == 0 && !mc.have_gamma)
		rc = cli_usage_error("scale", "--gamma G is required");
	else if (rc == 0 && mc.o.nmodels != 1)
		rc = cli_usage_error("scale", "scale edits exactly one MODEL (got %zu)", mc.o.nmodels);
	else if (rc == 0 && (mc.have_method || mc.weights || mc.have_lambda || mc.have_lines ||
	                     mc.have_alpha || mc.have_beta || mc.have_norm))
		rc = cli_usage_error("scale", "-m, -w, --lambda, --lines, --alpha, --beta and --norm "
		                              "belong to lines merge; scale takes --gamma");
	free(mc.weights);
	free(mc.tall);
	free(mc.densities);
	if (rc != 0)
		return rc;
	mc.weights = NULL;
	mc.tall = NULL;
	mc.densities = NULL;
	/* parse again inside run(): getopt state is reset there */
	return run(&mc, argc, argv);
}
