/*
 * cmd_inspect.c -- lines inspect: what is in a model, which block every
 * tensor belongs to, and L. The header is validated as strictly as for a
 * merge, so `lines inspect` is also a checker for downloaded files.
 */
#include "config.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

enum { OPT_LAYERS = 256, OPT_JSON, OPT_LAYER_REGEX, OPT_NUM_LAYERS };

static const struct option inspect_options[] = {
	{"layers", no_argument, NULL, OPT_LAYERS},
	{"json", no_argument, NULL, OPT_JSON},
	{"layer-regex", required_argument, NULL, OPT_LAYER_REGEX},
	{"num-layers", required_argument, NULL, OPT_NUM_LAYERS},
	{"quiet", no_argument, NULL, 'q'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static void help(void)
{
	printf("usage: lines inspect [--layers] [--json] [--layer-regex RE] [--num-layers L] MODEL\n\n"
	       "Validate MODEL's header and list its tensors: block, dtype, shape, bytes, name.\n\n"
	       "      --layers        one line per block instead: tensors, elements, bytes\n"
	       "      --json          the same, as JSON on standard output\n"
	       "      --layer-regex RE  POSIX ERE whose one capture group is the block index\n"
	       "      --num-layers L  number of blocks (default: 1 + the largest index)\n"
	       "  -q, --quiet         print nothing; the exit status tells if MODEL is valid\n");
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
	if (layers) {
		struct block_sum *bs = calloc((size_t)L + 1, sizeof(*bs));
		if (!bs) {
			json_decref(root);
			cli_msg("out of memory");
			return CLI_EXIT_FAIL;
		}
		for (size_t i = 0; i < n; i++) {
			struct lines_tensor_info t;
			lines_model_tensor(m, i, &t);
			struct block_sum *b = &bs[t.block < 0 ? (size_t)L : (size_t)t.block];
			b->tensors++, b->elems += t.nelem, b->bytes += t.nbytes;
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
			json_array_append_new(arr, e);
		}
		json_object_set_new(root, "tensor_list", arr);
	}
	json_dumpf(root, stdout, JSON_INDENT(2));
	fputc('\n', stdout);
	json_decref(root);
	return CLI_EXIT_OK;
}

int cmd_inspect(int argc, char **argv)
{
	struct lines_layer_opts lo = {NULL, 0};
	struct lines_model *m;
	struct lines_error err;
	int c, layers = 0, json = 0;
	long l;
	char hb[32], db[32];

	optind = 0;
	while ((c = getopt_long(argc, argv, "qh", inspect_options, NULL)) != -1) {
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
		case 'h': help(); return CLI_EXIT_OK;
		default: return cli_usage_error("inspect", "invalid option");
		}
	}
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
	printf("%s: %zu tensors, %s of data, %s of header, L = %ld blocks\n",
	       cli_printable(argv[optind]), n, db, hb, L);
	for (size_t i = 0; i < lines_model_meta_count(m); i++) {
		const char *k, *v;
		lines_model_meta(m, i, &k, &v);
		printf("  metadata %s = ", cli_printable(k));
		printf("%s\n", cli_printable(v));
	}
	if (layers) {
		struct block_sum *bs = calloc((size_t)L + 1, sizeof(*bs));
		if (!bs) {
			lines_model_close(m);
			cli_msg("out of memory");
			return CLI_EXIT_FAIL;
		}
		for (size_t i = 0; i < n; i++) {
			struct lines_tensor_info t;
			lines_model_tensor(m, i, &t);
			struct block_sum *b = &bs[t.block < 0 ? (size_t)L : (size_t)t.block];
			b->tensors++, b->elems += t.nelem, b->bytes += t.nbytes;
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
