/*
 * cmd_inspect.c -- lines inspect: what is in a model, which block every
 * tensor belongs to, and L. The header is validated as strictly as for a
 * merge, so `lines inspect` is also a checker for downloaded files.
 */
#include "config.h"

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

enum {
	OPT_LAYERS = 256, OPT_JSON, OPT_LAYER_REGEX, OPT_NUM_LAYERS, OPT_NORMS, OPT_ALPHA, OPT_BETA,
	OPT_SCHEDULE
};

static const struct option inspect_options[] = {
	{"layers", no_argument, NULL, OPT_LAYERS},
	{"json", no_argument, NULL, OPT_JSON},
	{"layer-regex", required_argument, NULL, OPT_LAYER_REGEX},
	{"num-layers", required_argument, NULL, OPT_NUM_LAYERS},
	{"norms", no_argument, NULL, OPT_NORMS},
	{"base", required_argument, NULL, 'b'},
	{"alpha", required_argument, NULL, OPT_ALPHA},
	{"beta", required_argument, NULL, OPT_BETA},
	{"schedule", required_argument, NULL, OPT_SCHEDULE},
	{"quiet", no_argument, NULL, 'q'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static void help(void)
{
	printf("usage: lines inspect [--layers] [--json] [--layer-regex RE] [--num-layers L] MODEL\n"
	       "       lines inspect --norms -b BASE [--alpha A] [--beta B] [--schedule F0,F1,...]\n"
	       "                     [--json] MODEL...\n\n"
	       "Validate MODEL's header (safetensors or GGUF) and list its tensors: block,\n"
	       "dtype, shape, bytes, name.\n"
	       "With --norms, read BASE and every MODEL and show, per block, how far each\n"
	       "task vector moved the weights (L1, L2, L2 relative to the base's), as a bar\n"
	       "chart from the shallowest block to the deepest, with the LiNeS scale of\n"
	       "each block (alpha = 1/N, beta = max(0, 1 - alpha) unless given).\n\n"
	       "      --layers        one line per block instead: tensors, elements, bytes\n"
	       "      --json          the same, as JSON on standard output\n"
	       "      --layer-regex RE  POSIX ERE whose one capture group is the block index,\n"
	       "                      or whose two are the stack, then the index\n"
	       "      --num-layers L  number of blocks of every stack (default: 1 + its\n"
	       "                      largest index)\n"
	       "      --norms         per-block norms of the task vectors (needs -b)\n"
	       "  -b, --base BASE     with --norms: the pre-trained model\n"
	       "      --alpha A       with --norms: the LiNeS alpha shown (default 1/N)\n"
	       "      --beta B        with --norms: the LiNeS beta shown (default\n"
	       "                      max(0, 1 - alpha))\n"
	       "      --schedule F0,F1,...  with --norms: the LiNeS depth schedule shown\n"
	       "                      (alpha + beta * f(i / (L - 1)); lines-merge(1))\n"
	       "  -q, --quiet         print nothing; the exit status tells if MODEL is valid\n"
	       "  -h, --help          print this help and exit\n");
}

static void shape_str(char *buf, size_t n, const struct lines_tensor_info *t)
{
	size_t len = (size_t)snprintf(buf, n, "[");
	for (unsigned i = 0; i < t->rank && len < n; i++)
		len += (size_t)snprintf(buf + len, n - len, "%s%" PRIu64, i ? ", " : "", t->shape[i]);
	if (len < n)
		snprintf(buf + len, n - len, "]");
}

struct block_sum {
	uint64_t tensors, elems, bytes;
};

/* Per block (row L: outside the blocks), what its tensors hold; NULL and
 * a message when out of memory. */
static struct block_sum *block_sums(const struct lines_model *m, long L)
{
	struct block_sum *bs = calloc((size_t)L + 1, sizeof(*bs));
	if (!bs) {
		cli_msg("out of memory");
		return NULL;
	}
	for (size_t i = 0; i < lines_model_count(m); i++) {
		struct lines_tensor_info t;
		lines_model_tensor(m, i, &t);
		struct block_sum *b = &bs[t.block < 0 ? (size_t)L : (size_t)t.block];
		b->tensors++, b->elems += t.nelem, b->bytes += t.nbytes;
	}
	return bs;
}

static int print_json(const char *path, const struct lines_model *m, int layers)
{
	json_t *root = json_object(), *arr = json_array(), *meta = json_object();
	size_t n = lines_model_count(m);
	long L = lines_model_num_layers(m);

	json_t *file = json_string(path);
	if (!file) { /* not UTF-8: every byte above 0x7f as \xNN */
		char esc[4096];
		size_t o = 0;
		for (const unsigned char *s = (const unsigned char *)path; *s && o + 5 < sizeof(esc); s++)
			o += *s < 0x80 ? (size_t)snprintf(esc + o, 2, "%c", *s)
			               : (size_t)snprintf(esc + o, 5, "\\x%02x", *s);
		file = json_string(esc);
	}
	json_object_set_new(root, "file", file);
	json_object_set_new(root, "format", json_string(lines_model_format(m)));
	json_object_set_new(root, "tensors", json_integer((json_int_t)n));
	json_object_set_new(root, "num_layers", json_integer(L));
	json_object_set_new(root, "data_bytes", json_integer((json_int_t)lines_model_data_bytes(m)));
	json_object_set_new(root, "header_bytes",
	                    json_integer((json_int_t)lines_model_header_bytes(m)));
	for (size_t i = 0; i < lines_model_meta_count(m); i++) {
		const char *k, *v;
		lines_model_meta(m, i, &k, &v);
		json_object_set_new(meta, k, json_string(v));
	}
	json_object_set_new(root, "metadata", meta);
	json_t *stacks = json_array();
	for (size_t i = 0; i < lines_model_stack_count(m); i++) {
		const char *sn;
		long sl;
		json_t *e = json_object();
		lines_model_stack(m, i, &sn, &sl);
		json_object_set_new(e, "name", json_string(sn));
		json_object_set_new(e, "num_layers", json_integer(sl));
		json_array_append_new(stacks, e);
	}
	json_object_set_new(root, "stacks", stacks);
	if (layers) {
		struct block_sum *bs = block_sums(m, L);
		if (!bs) {
			json_decref(root);
			return CLI_EXIT_FAIL;
		}
		for (long i = 0; i <= L; i++) {
			json_t *e = json_object();
			json_object_set_new(e, "block", i < L ? json_integer(i) : json_null());
			json_object_set_new(e, "tensors", json_integer((json_int_t)bs[i].tensors));
			json_object_set_new(e, "elements", json_integer((json_int_t)bs[i].elems));
			json_object_set_new(e, "bytes", json_integer((json_int_t)bs[i].bytes));
			json_array_append_new(arr, e);
		}
		free(bs);
		json_object_set_new(root, "blocks", arr);
	} else {
		for (size_t i = 0; i < n; i++) {
			struct lines_tensor_info t;
			json_t *e = json_object(), *shape = json_array();
			lines_model_tensor(m, i, &t);
			for (unsigned k = 0; k < t.rank; k++)
				json_array_append_new(shape, json_integer((json_int_t)t.shape[k]));
			json_object_set_new(e, "name", json_string(t.name));
			json_object_set_new(e, "dtype", json_string(t.dtype));
			json_object_set_new(e, "shape", shape);
			json_object_set_new(e, "bytes", json_integer((json_int_t)t.nbytes));
			json_object_set_new(e, "block", t.block < 0 ? json_null() : json_integer(t.block));
			json_object_set_new(e, "stack", t.stack ? json_string(t.stack) : json_null());
			json_array_append_new(arr, e);
		}
		json_object_set_new(root, "tensor_list", arr);
	}
	json_dumpf(root, stdout, JSON_INDENT(2));
	fputc('\n', stdout);
	json_decref(root);
	return CLI_EXIT_OK;
}

/* ---- --norms ---------------------------------------------------------------------- */
static void bar(double frac, int width)
{
	int n = (int)(frac * width + 0.5);
	for (int i = 0; i < width; i++)
		putchar(i < n ? '#' : '.');
}

static int show_norms(const char *base, char **models, size_t n, const struct lines_layer_opts *lo,
                      double alpha, double beta, const double *sched, size_t nsched, int json)
{
	struct lines_merge_opts o;
	struct lines_plan *plan = NULL;
	const struct lines_block_norms *bn;
	struct lines_error err;
	int rc = CLI_EXIT_OK;

	lines_merge_opts_init(&o);
	o.command = "inspect";
	o.base = base;
	o.models = (const char *const *)models;
	o.nmodels = n;
	o.layers = *lo;
	o.norms_only = 1;
	o.lines = 1;
	o.alpha_auto = 0;
	o.alpha = isnan(alpha) ? 1.0 / (double)n : alpha;
	o.beta = isnan(beta) ? fmax(0.0, 1.0 - o.alpha) : beta;
	o.schedule = sched, o.nschedule = nsched;
	o.log = cli_log;
	o.progress = cli_progress;
	cli_signals();
	if (lines_plan_new(&o, &plan, &err) < 0 || lines_block_norms(plan, &bn, &err) < 0) {
		rc = cli_report(&err);
		lines_plan_free(plan);
		return rc;
	}
	cli_progress_end();
	const struct lines_plan_info *in = lines_plan_info(plan);
	long L = bn->num_layers;
	if (json) {
		json_t *root = json_object(), *rows = json_array(), *ms = json_array();
		json_object_set_new(root, "base", json_string(base));
		for (size_t i = 0; i < n; i++)
			json_array_append_new(ms, json_string(models[i]));
		json_object_set_new(root, "models", ms);
		json_object_set_new(root, "num_layers", json_integer(L));
		json_object_set_new(root, "alpha", json_real(o.alpha));
		json_object_set_new(root, "beta", json_real(o.beta));
		if (sched) {
			json_t *f = json_array();
			for (size_t i = 0; i < nsched; i++)
				json_array_append_new(f, json_real(sched[i]));
			json_object_set_new(root, "schedule", f);
		}
		for (long r = 0; r <= L; r++) {
			json_t *e = json_object(), *per = json_array();
			json_object_set_new(e, "block", r < L ? json_integer(r) : json_null());
			/* several stacks: a ramp each, no one lambda for block r */
			json_object_set_new(e, "lambda",
			                    r == L       ? json_real(in->lambda_outside)
			                    : in->lambda ? json_real(in->lambda[r])
			                                 : json_null());
			json_object_set_new(e, "elements", json_integer((json_int_t)bn->elements[r]));
			json_object_set_new(e, "base_l1", json_real(bn->base_l1[r]));
			json_object_set_new(e, "base_l2", json_real(bn->base_l2[r]));
			for (size_t i = 0; i < n; i++) {
				json_t *m = json_object();
				double l2 = bn->tau_l2[r * n + i];
				json_object_set_new(m, "l1", json_real(bn->tau_l1[r * n + i]));
				json_object_set_new(m, "l2", json_real(l2));
				json_object_set_new(m, "rel_l2", bn->base_l2[r] > 0 ? json_real(l2 / bn->base_l2[r]) : json_null());
				json_array_append_new(per, m);
			}
			json_object_set_new(e, "tasks", per);
			json_array_append_new(rows, e);
		}
		json_object_set_new(root, "blocks", rows);
		json_dumpf(root, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
		fputc('\n', stdout);
		json_decref(root);
		lines_plan_free(plan);
		return rc;
	}
	double top = 0;
	for (long r = 0; r <= L; r++)
		for (size_t i = 0; i < n; i++)
			if (bn->base_l2[r] > 0 && bn->tau_l2[r * n + i] / bn->base_l2[r] > top)
				top = bn->tau_l2[r * n + i] / bn->base_l2[r];
	printf("how far each model moved from %s, per block (shallow to deep);\n", cli_printable(base));
	printf("bars: ||tau||2 / ||base||2, scaled to the largest (%.3g); lambda: alpha %.4g, beta %.4g",
	       top, o.alpha, o.beta);
	for (size_t i = 0; sched && i < nsched; i++)
		printf("%s%.4g", i ? "," : ", schedule ", sched[i]);
	printf("\n\n");
	printf("%-7s %-7s %-4s %12s %12s %9s  %s\n", "block", "lambda", "task", "||tau||1", "||tau||2",
	       "rel. L2", "");
	for (long r = 0; r <= L; r++) {
		if (r == L && !bn->elements[r])
			break;
		for (size_t i = 0; i < n; i++) {
			double rel = bn->base_l2[r] > 0 ? bn->tau_l2[r * n + i] / bn->base_l2[r] : 0;
			char blk[24], lam[24];
			snprintf(blk, sizeof(blk), "%ld", r);
			if (r < L && !in->lambda) /* one ramp per stack: no one lambda per row */
				snprintf(lam, sizeof(lam), "-");
			else
				snprintf(lam, sizeof(lam), "%.4f",
				         r < L ? in->lambda[r] : in->lambda_outside);
			printf("%-7s %-7s %-4zu %12.5g %12.5g %9.5f  ", i ? "" : (r < L ? blk : "outside"),
			       i ? "" : lam, i + 1, bn->tau_l1[r * n + i], bn->tau_l2[r * n + i], rel);
			bar(top > 0 ? rel / top : 0, 30);
			putchar('\n');
		}
	}
	lines_plan_free(plan);
	return rc;
}

int cmd_inspect(int argc, char **argv)
{
	struct lines_layer_opts lo = {NULL, 0, 0, NULL};
	const char *base = NULL;
	int norms = 0;
	double alpha = NAN, beta = NAN, *sched = NULL;
	size_t nsched = 0;
	struct lines_model *m;
	struct lines_error err;
	int c, layers = 0, json = 0;
	long l;
	char hb[32], db[32];

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":qhb:", inspect_options, NULL)) != -1) {
		switch (c) {
		case OPT_LAYERS: layers = 1; break;
		case OPT_JSON: json = 1; break;
		case OPT_LAYER_REGEX: lo.regex = optarg; break;
		case OPT_NUM_LAYERS:
			if (cli_parse_long("inspect", "--num-layers", optarg, 1, 1000000, &l) < 0)
				return CLI_EXIT_USAGE;
			lo.num_layers = l;
			break;
		case 'q': cli_quiet = 1; break;
		case 'b': base = optarg; break;
		case OPT_NORMS: norms = 1; break;
		case OPT_ALPHA:
			if (cli_parse_double("inspect", "--alpha", optarg, &alpha) < 0)
				return CLI_EXIT_USAGE;
			break;
		case OPT_BETA:
			if (cli_parse_double("inspect", "--beta", optarg, &beta) < 0)
				return CLI_EXIT_USAGE;
			break;
		case OPT_SCHEDULE:
			free(sched);
			sched = NULL;
			if (cli_parse_list("inspect", "--schedule", optarg, &sched, &nsched) < 0)
				return CLI_EXIT_USAGE;
			if (nsched < 2) {
				free(sched);
				return cli_usage_error("inspect", "--schedule needs at least 2 values, the "
				                                  "first block's and the last's");
			}
			break;
		case 'h': help(); return CLI_EXIT_OK;
		default: return cli_bad_option("inspect", c, argv);
		}
	}
	if (norms) {
		if (!base)
			return cli_usage_error("inspect", "--norms needs the base model: -b BASE");
		if (argc - optind < 1)
			return cli_usage_error("inspect", "--norms needs at least one MODEL");
		if (layers)
			return cli_usage_error("inspect", "--norms and --layers exclude each other");
		int rc = show_norms(base, argv + optind, (size_t)(argc - optind), &lo, alpha, beta,
		                    sched, nsched, json);
		free(sched);
		return rc;
	}
	int have_sched = sched != NULL;
	free(sched);
	if (base || !isnan(alpha) || !isnan(beta) || have_sched)
		return cli_usage_error("inspect", "-b, --alpha, --beta and --schedule go with --norms");
	if (argc - optind != 1)
		return cli_usage_error("inspect", "give exactly one MODEL");
	if (lines_model_open(argv[optind], &lo, &m, &err) < 0)
		return cli_report(&err);
	if (cli_quiet) {
		lines_model_close(m);
		return CLI_EXIT_OK;
	}
	if (json) {
		int rc = print_json(argv[optind], m, layers);
		lines_model_close(m);
		return rc;
	}

	size_t n = lines_model_count(m);
	long L = lines_model_num_layers(m);
	cli_human(db, sizeof(db), lines_model_data_bytes(m));
	cli_human(hb, sizeof(hb), lines_model_header_bytes(m));
	printf("%s: %s%zu tensor%s, %s of data, %s of header, L = %ld block%s\n",
	       cli_printable(argv[optind]), strcmp(lines_model_format(m), "gguf") ? "" : "GGUF, ", n,
	       n == 1 ? "" : "s", db, hb, L, L == 1 ? "" : "s");
	for (size_t i = 0; i < lines_model_meta_count(m); i++) {
		const char *k, *v;
		lines_model_meta(m, i, &k, &v);
		printf("  metadata %s = ", cli_printable(k));
		printf("%s\n", cli_printable(v));
	}
	if (layers)
		for (size_t i = 0; i < lines_model_stack_count(m); i++) {
			const char *sn;
			long sl;
			lines_model_stack(m, i, &sn, &sl);
			printf("  stack %s: L = %ld block%s\n", cli_printable(sn), sl, sl == 1 ? "" : "s");
		}
	if (layers) {
		struct block_sum *bs = block_sums(m, L);
		if (!bs) {
			lines_model_close(m);
			return CLI_EXIT_FAIL;
		}
		printf("%-8s %8s %14s %12s\n", "block", "tensors", "elements", "bytes");
		for (long i = 0; i <= L; i++) {
			char name[24];
			if (i == L && bs[i].tensors == 0)
				break;
			snprintf(name, sizeof(name), "%ld", i);
			cli_human(db, sizeof(db), bs[i].bytes);
			printf("%-8s %8" PRIu64 " %14" PRIu64 " %12s\n", i < L ? name : "outside",
			       bs[i].tensors, bs[i].elems, db);
		}
		free(bs);
	} else {
		printf("%-6s %-8s %-20s %14s  %s\n", "block", "dtype", "shape", "bytes", "name");
		for (size_t i = 0; i < n; i++) {
			struct lines_tensor_info t;
			char shape[256], blk[24];
			lines_model_tensor(m, i, &t);
			shape_str(shape, sizeof(shape), &t);
			snprintf(blk, sizeof(blk), "%ld", t.block);
			printf("%-6s %-8s %-20s %14" PRIu64 "  %s\n", t.block < 0 ? "-" : blk, t.dtype,
			       shape, t.nbytes, cli_printable(t.name));
		}
	}
	lines_model_close(m);
	return CLI_EXIT_OK;
}
