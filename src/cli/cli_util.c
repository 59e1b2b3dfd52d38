/*
 * cli_util.c -- messages, signals, progress and option parsing shared by
 * every subcommand.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"
#include "strutil.h"

int cli_quiet;
int cli_verbose;

void cli_msg(const char *fmt, ...)
{
	va_list ap;
	cli_progress_end();
	fputs("lines: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* ---- where a configuration gave an option ---------------------------------- */
static struct origin {
	char *opt, *where;
} *origins;
static size_t norigins;

void cli_origin_add(const char *opt, const char *where)
{
	struct origin *o = realloc(origins, (norigins + 1) * sizeof(*o));
	if (!o)
		return; /* the message only loses its place */
	origins = o;
	o[norigins].opt = strdup(opt), o[norigins].where = strdup(where);
	if (o[norigins].opt && o[norigins].where)
		norigins++;
	else
		free(o[norigins].opt), free(o[norigins].where);
}

static int opt_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

/* Where the option MSG names first came from, or NULL: the first of the
 * registered options in MSG, as a whole word ("--t" is not in "--tol"). */
static const char *origin_in(const char *msg)
{
	const char *best = NULL, *at = NULL;
	for (size_t i = 0; i < norigins; i++) {
		size_t n = strlen(origins[i].opt);
		for (const char *p = strstr(msg, origins[i].opt); p; p = strstr(p + 1, origins[i].opt))
			if ((p == msg || !opt_char(p[-1])) && !opt_char(p[n])) {
				if (!at || p < at)
					at = p, best = origins[i].where;
				break;
			}
	}
	return best;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	char msg[2048];
	const char *where;
	cli_progress_end();
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if ((where = origin_in(msg)) != NULL) {
		fprintf(stderr, "lines: %s: %s\n", where, msg);
		return CLI_EXIT_USAGE;
	}
	fprintf(stderr, "lines: %s\nTry 'lines %s%s--help' for more information.\n", msg,
	        cmd ? cmd : "", cmd ? " " : "");
	return CLI_EXIT_USAGE;
}

int cli_bad_option(const char *cmd, int c, char **argv)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "";
	if (c == ':')
		return cli_usage_error(cmd, "option '%s' needs a value", arg);
	if (optopt && optopt != '?')
		return cli_usage_error(cmd, "unknown option '-%c'", optopt);
	return cli_usage_error(cmd, "unknown option '%s'", arg);
}

const char *cli_printable(const char *s)
{
	static char buf[2048];
	size_t o = 0;
	for (; *s && o + 8 < sizeof(buf); s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c == 0x7f)
			o += (size_t)snprintf(buf + o, sizeof(buf) - o, "\\x%02x", c);
		else
			buf[o++] = (char)c;
	}
	if (*s) { /* cut: at the start of a character, and said so */
		o = utf8_whole_prefix(buf, o);
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return buf;
}

static void print_place(FILE *f, const char *file, const char *tensor)
{
	if (file && *file)
		fprintf(f, "%s: ", cli_printable(file));
	if (tensor && *tensor)
		fprintf(f, "%s: ", cli_printable(tensor));
}

int cli_report(const struct lines_error *err)
{
	cli_progress_end();
	if (err->code == LINES_ECANCELED && cli_signal_caught())
		return 128 + cli_signal_caught();
	/* the reader of our output went away (`lines ... | head`): end quietly,
	 * with the status a process killed by SIGPIPE has */
	if (err->sys_errno == EPIPE)
		return 128 + SIGPIPE;
	fputs("lines: ", stderr);
	const char *where =
	    err->code == LINES_EUSAGE && !err->file[0] && !err->tensor[0] ? origin_in(err->msg) : NULL;
	if (where)
		fprintf(stderr, "%s: ", where);
	print_place(stderr, err->file, err->tensor);
	fprintf(stderr, "%s\n", err->msg[0] ? err->msg : lines_strerror(err->code));
	return err->code == LINES_EUSAGE ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
}

void cli_log(void *ctx, enum lines_level level, const char *file, const char *tensor,
             const char *msg)
{
	(void)ctx;
	if ((level == LINES_LOG_NOTE || level == LINES_LOG_INFO) && !cli_verbose)
		return;
	if (level == LINES_LOG_WARN && cli_quiet)
		return;
	cli_progress_end();
	fputs("lines: ", stderr);
	if (level == LINES_LOG_WARN)
		fputs("warning: ", stderr);
	print_place(stderr, file, tensor);
	fprintf(stderr, "%s\n", msg);
}

/* ---- progress ----------------------------------------------------------------- */
static int progress_shown;

void cli_progress(void *ctx, const struct lines_progress *p)
{
	char done[32], total[32], eta[32] = "";
	double rate;
	(void)ctx;
	if (cli_quiet || !isatty(STDERR_FILENO))
		return;
	cli_human(done, sizeof(done), p->done);
	cli_human(total, sizeof(total), p->total);
	rate = p->seconds > 0 ? (double)p->done / p->seconds : 0;
	if (rate > 0 && p->total > p->done) {
		unsigned s = (unsigned)((double)(p->total - p->done) / rate);
		snprintf(eta, sizeof(eta), "  ETA %u:%02u", s / 60, s % 60);
	}
	fprintf(stderr, "\r\033[K%s [%u/%u]  %s / %s  %.*f %s%s", p->pass, p->pass_index,
	        p->pass_count, done, total, rate >= 1e9 ? 2 : 1, rate >= 1e9 ? rate / 1e9 : rate / 1e6,
	        rate >= 1e9 ? "GB/s" : "MB/s", eta);
	fflush(stderr);
	progress_shown = 1;
}

void cli_progress_end(void)
{
	if (progress_shown) {
		fputs("\r\033[K", stderr);
		progress_shown = 0;
	}
}

/* ---- signals ------------------------------------------------------------------ */
static volatile sig_atomic_t caught;

static void on_signal(int sig)
{
	caught = sig;
	lines_cancel();
}

void cli_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: a blocked write returns EINTR */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int cli_signal_caught(void) { return caught; }

/* ---- parsers ------------------------------------------------------------------ */
int cli_parse_size(const char *cmd, const char *opt, const char *s, uint64_t *out)
{
	static const struct {
		const char *suffix;
		uint64_t mul;
	} units[] = {
		{"", 1},           {"B", 1},
		{"K", 1ull << 10}, {"KiB", 1ull << 10}, {"KB", 1000ull},
		{"M", 1ull << 20}, {"MiB", 1ull << 20}, {"MB", 1000000ull},
		{"G", 1ull << 30}, {"GiB", 1ull << 30}, {"GB", 1000000000ull},
		{"T", 1ull << 40}, {"TiB", 1ull << 40}, {"TB", 1000000000000ull},
	};
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || errno || !(v >= 0))
		goto bad;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (!strcasecmp(end, units[i].suffix)) {
			double b = v * (double)units[i].mul;
			if (b > 9.0e18)
				goto bad;
			*out = (uint64_t)b;
			return 0;
		}
bad:
	cli_usage_error(cmd, "%s: invalid size '%s' (e.g. 64K, 2M, 1GiB, 5GB)", opt, s);
	return -1;
}

int cli_parse_u64(const char *cmd, const char *opt, const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s || *end || errno || *s == '-') {
		cli_usage_error(cmd, "%s: '%s' is not a non-negative integer", opt, s);
		return -1;
	}
	*out = v;
	return 0;
}

int cli_parse_double(const char *cmd, const char *opt, const char *s, double *out)
{
	char *end;
	/* decimal only: strtod would also take 0x10, inf and nan */
	if (strpbrk(s, "xXpPiInN")) {
		cli_usage_error(cmd, "%s: '%s' is not a decimal number", opt, s);
		return -1;
	}
	errno = 0;
	*out = strtod(s, &end);
	/* nor spaces, which strtod skips (a sweep's value names a file) */
	if (end == s || *end || isspace((unsigned char)*s)) {
		cli_usage_error(cmd, "%s: '%s' is not a number", opt, s);
		return -1;
	}
	if (errno == ERANGE || !isfinite(*out)) {
		cli_usage_error(cmd, "%s: '%s' is out of range", opt, s);
		return -1;
	}
	*out += 0.0; /* -0 is 0: never printed or recorded as -0 */
	return 0;
}

int cli_parse_long(const char *cmd, const char *opt, const char *s, long min, long max,
                   long *out)
{
	char *end;
	errno = 0;
	*out = strtol(s, &end, 10);
	if (end == s || *end || errno || *out < min || *out > max) {
		cli_usage_error(cmd, "%s: '%s' is not an integer between %ld and %ld", opt, s, min,
		                max);
		return -1;
	}
	return 0;
}

int cli_parse_list(const char *cmd, const char *opt, const char *s, double **out, size_t *n)
{
	size_t cap = 1;
	for (const char *c = s; *c; c++)
		cap += *c == ',';
	double *v = calloc(cap, sizeof(*v));
	char *copy = strdup(s), *save = NULL, *tok;
	size_t k = 0;
	if (!v || !copy) {
		free(v), free(copy);
		cli_msg("out of memory");
		return -1;
	}
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (cli_parse_double(cmd, opt, tok, &v[k]) < 0) {
			free(v), free(copy);
			return -1;
		}
		k++;
	}
	free(copy);
	if (k != cap) {
		free(v);
		cli_usage_error(cmd, "%s: '%s' is not a comma-separated list of numbers", opt, s);
		return -1;
	}
	*out = v;
	*n = k;
	return 0;
}

void cli_human(char *buf, size_t n, uint64_t bytes)
{
	static const char *const u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double v = (double)bytes;
	unsigned i = 0;
	while (v >= 1024 && i + 1 < sizeof(u) / sizeof(u[0])) {
		v /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(buf, n, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, n, "%.2f %s", v, u[i]);
}
