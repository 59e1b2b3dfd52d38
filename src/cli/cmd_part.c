/*
 * cmd_part.c -- the steps of a partitioned run besides lines merge --part:
 * lines stats (the reduce step of a round of statistics) and lines index
 * (the assembly of the parts' shards).
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct option stats_options[] = {
	{"output", required_argument, NULL, 'o'},
	{"quiet", no_argument, NULL, 'q'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static void stats_help(void)
{
	printf("usage: lines stats [-q] -o OUT.json PART.json...\n\n"
	       "Combine the statistics of every part of one round of a partitioned merge\n"
	       "(lines merge --part K/M --stats-out PART.json) into OUT.json, which the next\n"
	       "step reads with --stats. Every part 0..M-1 must be given once, all of one\n"
	       "plan (the same inputs and options) and one round.\n\n"
	       "  -o, --output OUT.json  the combined file (written whole, then renamed)\n"
	       "  -q, --quiet         print only the problems\n"
	       "  -h, --help          print this help and exit\n");
}

int cmd_stats(int argc, char **argv)
{
	struct lines_merge_opts log;
	struct lines_error err;
	const char *out = NULL;
	int c;

	lines_merge_opts_init(&log);
	log.log = cli_log;
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":o:qh", stats_options, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'q': cli_quiet = 1; break;
		case 'h': stats_help(); return CLI_EXIT_OK;
		default: return cli_bad_option("stats", c, argv);
		}
	}
	if (!out)
		return cli_usage_error("stats", "give the combined file with -o OUT.json");
	if (optind == argc)
		return cli_usage_error("stats", "give the statistics files of the parts");
	if (lines_stats_combine((const char *const *)argv + optind, (size_t)(argc - optind), out,
	                        &log, &err) < 0)
		return cli_report(&err);
	return CLI_EXIT_OK;
}

static const struct option index_options[] = {
	{"quiet", no_argument, NULL, 'q'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static void index_help(void)
{
	printf("usage: lines index [-q] DIR/\n\n"
	       "Assemble the output directory of a partitioned merge once every part has\n"
	       "been written (lines merge --part K/M -o DIR/): check that every shard of the\n"
	       "plan is there and matches its .xxh128 and manifest, then write\n"
	       "model.safetensors.index.json, README.md and lines_config.yml. DIR is then\n"
	       "byte for byte what lines merge -o DIR/ writes on one machine. The input\n"
	       "models are not read.\n\n"
	       "  -q, --quiet         print only the problems\n"
	       "  -h, --help          print this help and exit\n");
}

int cmd_index(int argc, char **argv)
{
	struct lines_merge_opts log;
	struct lines_error err;
	int c;

	lines_merge_opts_init(&log);
	log.log = cli_log;
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":qh", index_options, NULL)) != -1) {
		switch (c) {
		case 'q': cli_quiet = 1; break;
		case 'h': index_help(); return CLI_EXIT_OK;
		default: return cli_bad_option("index", c, argv);
		}
	}
	if (argc - optind != 1)
		return cli_usage_error("index", "give one output directory");
	cli_verbose = !cli_quiet; /* its notes (assembled, already assembled) are its answer */
	if (lines_index(argv[optind], &log, &err) < 0)
		return cli_report(&err);
	return CLI_EXIT_OK;
}
