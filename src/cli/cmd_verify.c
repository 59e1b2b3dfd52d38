/*
 * cmd_verify.c -- lines verify FILE...: is every file what lines wrote?
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct option verify_options[] = {
	{"checksum-file", required_argument, NULL, 'c'},
	{"manifest", required_argument, NULL, 'M'},
	{"quiet", no_argument, NULL, 'q'},
	{"verbose", no_argument, NULL, 'v'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static void help(void)
{
	printf("usage: lines verify [-q] [-v] [--checksum-file F] [--manifest F] FILE...\n\n"
	       "Check each FILE: its header, its zstd frames (.zst), its XXH3-128 against\n"
	       "FILE.xxh128 and every tensor (and the XXH3-128) against FILE.manifest.json,\n"
	       "when they exist.\n\n"
	       "      --checksum-file F  the XXH3-128 line is in F (one FILE only)\n"
	       "      --manifest F    the manifest is F (one FILE only)\n"
	       "  -q, --quiet         print only the problems\n"
	       "  -v, --verbose       say when a file has neither sidecar nor manifest\n"
	       "  -h, --help          print this help and exit\n");
}

int cmd_verify(int argc, char **argv)
{
	struct lines_verify_opts o = {NULL, NULL, cli_log, NULL};
	int c, rc = CLI_EXIT_OK;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":qvh", verify_options, NULL)) != -1) {
		switch (c) {
		case 'c': o.checksum_file = optarg; break;
		case 'M': o.manifest_file = optarg; break;
		case 'q': cli_quiet = 1; break;
		case 'v': cli_verbose = 1; break;
		case 'h': help(); return CLI_EXIT_OK;
		default: return cli_bad_option("verify", c, argv);
		}
	}
	if (optind == argc)
		return cli_usage_error("verify", "give at least one FILE");
	if ((o.checksum_file || o.manifest_file) && argc - optind > 1)
		return cli_usage_error("verify", "--checksum-file and --manifest go with one FILE");
	for (int i = optind; i < argc; i++) {
		struct lines_verify_result r;
		struct lines_error err;
		if (lines_verify(argv[i], &o, &r, &err) < 0) {
			int st = cli_report(&err);
			if (st > rc)
				rc = st;
			continue;
		}
		if (!cli_quiet) {
			printf("%s: OK (", cli_printable(argv[i]));
			printf("%zu tensors%s%s%s)\n", r.tensors_checked,
			       r.compressed ? ", zstd frames" : "",
			       r.sidecar_checked ? ", XXH3-128" : "",
			       r.manifest_checked ? ", manifest" : ", no manifest");
		}
	}
	return rc;
}
