/*
 * cli.h -- what the subcommands of the lines program share. The CLI uses
 * only the public API in lines.h.
 */
#ifndef LINES_CLI_H
#define LINES_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "lines.h"

/* Exit statuses (documented in lines(1), EXIT STATUS). */
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2

struct cli_cmd {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

int cmd_merge(int argc, char **argv);
int cmd_scale(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_index(int argc, char **argv);

/* Global flags set by main: -q and -v may also be given per command. */
extern int cli_quiet;
extern int cli_verbose;

/* "lines: msg" on stderr. */
void cli_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print a usage error, a hint to --help, and return CLI_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* getopt_long() said '?' (an unknown option) or ':' (a missing value; the
 * option string starts with ':'): one message, ours (opterr is 0). */
int cli_bad_option(const char *cmd, int c, char **argv);
/* Option OPT ("--t") came from WHERE ("FILE:LINE:COL: key" of a
 * configuration): a usage error that names it is reported there. */
void cli_origin_add(const char *opt, const char *where);
/* Print "lines: FILE: TENSOR: msg" for a library error; return the exit status. */
int cli_report(const struct lines_error *err);
/* The log callback for the library. */
void cli_log(void *ctx, enum lines_level level, const char *file, const char *tensor,
             const char *msg);
/* The progress callback: one line on a terminal, nothing otherwise. */
void cli_progress(void *ctx, const struct lines_progress *p);
void cli_progress_end(void);

/* SIGINT and SIGTERM ask the library to stop; SIGPIPE is ignored. */
void cli_signals(void);
/* The signal that stopped the run, or 0. */
int cli_signal_caught(void);

/* Parsers: 0 on success, -1 (after printing a usage error) on failure. */
int cli_parse_size(const char *cmd, const char *opt, const char *s, uint64_t *out);
int cli_parse_u64(const char *cmd, const char *opt, const char *s, uint64_t *out);
int cli_parse_double(const char *cmd, const char *opt, const char *s, double *out);
int cli_parse_long(const char *cmd, const char *opt, const char *s, long min, long max,
                   long *out);
int cli_parse_list(const char *cmd, const char *opt, const char *s, double **out, size_t *n);

/* "1.50 GiB" */
void cli_human(char *buf, size_t n, uint64_t bytes);
/* A name made printable: control characters as \xNN. Static buffer. */
const char *cli_printable(const char *s);

#endif
