/*
 * main.c -- the lines program: global options and the command table.
 * Adding a command touches two places: this table and its own file.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct cli_cmd commands[] = {
	{"merge", cmd_merge, "merge fine-tuned models into one (task arithmetic, soups, LiNeS)"},
	{"scale", cmd_scale, "edit one fine-tuned model with LiNeS (--gamma)"},
	{"inspect", cmd_inspect, "list the tensors, blocks and metadata of a model"},
	{"verify", cmd_verify, "check outputs against their checksums and manifests"},
	{"stats", cmd_stats, "combine the statistics of the parts of a partitioned merge"},
	{"index", cmd_index, "assemble the output directory of a partitioned merge"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: lines [--version] [--help] COMMAND [ARGS]\n\n"
	           "Merge and edit neural-network checkpoints far larger than memory.\n\n"
	           "Commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nRun 'lines COMMAND --help' for the options of a command;\n"
	           "'man lines' for the whole manual.\n");
}

static int version(void)
{
	struct lines_error err;
	const char *k = lines_kernels(&err);
	printf("lines %s\n", lines_version());
	printf("libraries: %s\n", lines_libraries());
	printf("kernels: %s\n", k ? k : err.msg);
	return k ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "help") && argc > 2) { /* lines help CMD: lines CMD --help */
		char *args[] = {argv[2], "--help", NULL};
		for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
			if (!strcmp(argv[2], commands[i].name))
				return commands[i].run(2, args);
		return cli_usage_error(NULL, "'%s' is not a lines command", argv[2]);
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return CLI_EXIT_OK;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))
		return version();
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	return cli_usage_error(NULL, "'%s' is not a lines command", argv[1]);
}
