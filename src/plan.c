/*
 * plan.c -- open and check every input, lay out the output, choose the
 * scales and the passes, then run them.
 *
 * Everything that can be known before reading tensor data is checked
 * here, before the output is created: headers, names, shapes, dtypes,
 * block counts, options. Incompatibilities are all reported (through the
 * log callback) before the call fails, so a user fixes them in one go.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dirent.h>
#include <libgen.h>

#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_getCParams, for the memory bound */
#include <zstd.h>

#include "checksum.h"
#include "pipeline.h"
#include "sink.h"
#include "stream.h"

#define PLAN_MIN_CHUNK (16u << 10)
#define PLAN_MEMORY_BUDGET (96ull << 20)
#define PLAN_MAX_JOBS 256
#define PLAN_LIST_MAX 20 /* names listed per kind of mismatch */

void plan_log(const struct plan *p, enum lines_level level, const char *file, const char *tensor,
              const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	if (!p->o.log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	p->o.log(p->o.cb_ctx, level, file ? file : "", tensor ? tensor : "", msg);
}

void lines_merge_opts_init(struct lines_merge_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->command = "merge";
	o->method = LINES_M_SUM;
	o->lambda = 1.0;
	o->alpha_auto = 1;
	o->alpha = 1.0;
	o->beta = NAN;
	o->norm_p = 1;
	o->density = 0.2;
	o->io = LINES_IO_AUTO;
}

static const char *method_name(enum lines_method m)
{
	static const char *const names[] = {"sum", "mean", "ties", "dare"};
	return (unsigned)m < ARRAY_SIZE(names) ? names[m] : "?";
}

/* Shortest decimal that reads back as the same double. */
static void fmt_double(char *buf, size_t n, double v)
{
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, n, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			return;
	}
}

/* 17 significant digits in a fixed width (for non-negative values). */
static void fmt_fixed(char *buf, size_t n, double v) { snprintf(buf, n, "%.16e", v); }

static void fmt_shape(char *buf, size_t n, unsigned rank, const uint64_t *shape)
{
	size_t len = 0;
	len += (size_t)snprintf(buf + len, n - len, "[");
	for (unsigned i = 0; i < rank && len < n; i++)
		len += (size_t)snprintf(buf + len, n - len, "%s%" PRIu64, i ? ", " : "", shape[i]);
	if (len < n)
		snprintf(buf + len, n - len, "]");
}

static int same_shape(const struct st_tensor *a, const struct st_tensor *b)
{
	if (a->rank != b->rank)
		return 0;
	for (unsigned i = 0; i < a->rank; i++)
		if (a->shape[i] != b->shape[i])
			return 0;
	return 1;
}

/* ---- checks before anything is read --------------------------------------- */
static int check_options(const struct lines_merge_opts *o, struct lines_error *err)
{
	RETURN_ERROR_IF(!o->base, err, LINES_EUSAGE, NULL, NULL, "no base model (-b BASE)");
	RETURN_ERROR_IF(o->nmodels < 1, err, LINES_EUSAGE, NULL, NULL, "no model to merge");
	RETURN_ERROR_IF(o->nmodels > 1024, err, LINES_EUSAGE, NULL, NULL,
	                "at most 1024 models can be merged at once");
	RETURN_ERROR_IF(!o->output && !o->norms_only, err, LINES_EUSAGE, NULL, NULL,
	                "no output (-o OUT)");
	unsigned dashes = !strcmp(o->base, "-");
	for (size_t i = 0; i < o->nmodels; i++)
		dashes += !strcmp(o->models[i], "-");
	RETURN_ERROR_IF(dashes > 1, err, LINES_EUSAGE, NULL, NULL,
	                "standard input (-) can be given only once");
	RETURN_ERROR_IF((o->method == LINES_M_TIES || o->method == LINES_M_DARE) &&
	                        !(o->density > 0 && o->density <= 1),
	                err, LINES_EUSAGE, NULL, NULL, "--density must be in (0, 1]");
	RETURN_ERROR_IF(!isfinite(o->lambda), err, LINES_EUSAGE, NULL, NULL,
	                "--lambda must be a finite number");
	RETURN_ERROR_IF(o->lines && !o->alpha_auto && !isfinite(o->alpha), err, LINES_EUSAGE, NULL,
	                NULL, "--alpha must be a finite number");
	RETURN_ERROR_IF(o->lines && !isnan(o->beta) && !isfinite(o->beta), err, LINES_EUSAGE, NULL,
	                NULL, "--beta must be a finite number");
	RETURN_ERROR_IF(o->norm_p != 1 && o->norm_p != 2, err, LINES_EUSAGE, NULL, NULL,
	                "--norm must be l1 or l2");
	if (o->weights)
		for (size_t i = 0; i < o->nmodels; i++)
			RETURN_ERROR_IF(!isfinite(o->weights[i]), err, LINES_EUSAGE, NULL, NULL,
			                "weight %zu is not a finite number", i + 1);
	return 0;
}

static int parse_out_dtype(const char *s, enum dtype *d, struct lines_error *err)
{
	static const struct {
		const char *name;
		enum dtype dt;
	} ok[] = {{"bf16", DT_BF16}, {"f16", DT_F16}, {"f32", DT_F32}, {"f64", DT_F64}};
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++)
		if (!strcasecmp(s, ok[i].name)) {
			*d = ok[i].dt;
			return 0;
		}
	return lines_errf(err, LINES_EUSAGE, NULL, NULL,
	                  "unknown output dtype '%s' (bf16, f16 or f32)", s);
}

static int open_inputs(struct plan *p, struct lines_error *err)
{
	int rc = 0, failures = 0;
	struct lines_error e;

	p->ck = calloc(p->ninputs, sizeof(*p->ck));
	RETURN_ERROR_IF(!p->ck, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	for (unsigned m = 0; m < p->ninputs; m++) {
		const char *path = m ? p->o.models[m - 1] : p->o.base;
		int r = ckpt_open(&p->ck[m], path, &p->layers, &e);
		if (r < 0) {
			/* report every unreadable input, the last one as the error */
			if (failures++)
				plan_log(p, LINES_LOG_ERROR, err->file, err->tensor, "%s", err->msg);
			*err = e;
			rc = r;
		}
	}
	if (rc < 0)
		return rc;

	for (unsigned m = 0; m < p->ninputs; m++)
		p->nfiles += (unsigned)p->ck[m]->nfiles;
	p->files = calloc(p->nfiles, sizeof(*p->files));
	p->spill = calloc(p->nfiles ? p->nfiles : 1, 1);
	RETURN_ERROR_IF(!p->files || !p->spill, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	unsigned stdin_uses = 0;
	for (unsigned m = 0; m < p->ninputs; m++)
		for (size_t i = 0; i < p->ck[m]->nfiles; i++) {
			const struct ckpt_file *cf = &p->ck[m]->files[i];
			if (!cf->zs)
				continue;
			p->streams = 1;
			if (!zs_restartable(cf->zs)) {
				p->single_pass = 1;
				stdin_uses++;
			}
		}
	(void)stdin_uses; /* at most one: check_options made sure */
	for (unsigned m = 0, f = 0; m < p->ninputs; m++)
		for (size_t i = 0; i < p->ck[m]->nfiles; i++, f++) {
			p->files[f].path = p->ck[m]->files[i].path;
			p->files[f].fd = p->ck[m]->files[i].fd;
			p->files[f].size = p->ck[m]->files[i].size;
		}
	return 0;
}

/* An embedding or output head whose vocabulary (first dimension) differs. */
static int is_vocab(const struct st_tensor *a, const struct st_tensor *b)
{
	static const char *const names[] = {"embed", "wte", "lm_head", "shared", "word_embeddings",
	                                    "token_embd", "output.weight"};
	int named = 0;
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		named |= strstr(a->name, names[i]) != NULL;
	if (!named || a->rank != b->rank || a->rank == 0 || a->shape[0] == b->shape[0])
		return 0;
	for (unsigned k = 1; k < a->rank; k++)
		if (a->shape[k] != b->shape[k])
			return 0;
	return 1;
}

/* Compare one model with the base; log every difference; count them. */
static unsigned check_model(struct plan *p, unsigned m)
{
	const struct ckpt *b = p->ck[0], *c = p->ck[m];
	unsigned missing = 0, extra = 0, other = 0;
	char s1[256], s2[256];

	for (size_t i = 0; i < b->ntensors; i++) {
		const struct st_tensor *bt = b->t[i].st;
		const struct ckpt_tensor *ct = ckpt_find(c, bt->name);
		if (!ct) {
			if (++missing <= PLAN_LIST_MAX)
				plan_log(p, LINES_LOG_ERROR, c->path, bt->name,
				         "missing (the base has this tensor)");
			continue;
		}
		if (!same_shape(bt, ct->st)) {
			fmt_shape(s1, sizeof(s1), ct->st->rank, ct->st->shape);
			fmt_shape(s2, sizeof(s2), bt->rank, bt->shape);
			if (is_vocab(bt, ct->st))
				plan_log(p, LINES_LOG_ERROR, c->path, bt->name,
				         "shape %s differs from the base's %s: the vocabularies differ "
				         "(%llu tokens, the base has %llu); a model with added tokens "
				         "cannot be merged row by row, resize its embeddings first",
				         s1, s2, (unsigned long long)ct->st->shape[0],
				         (unsigned long long)bt->shape[0]);
			else
				plan_log(p, LINES_LOG_ERROR, c->path, bt->name,
				         "shape %s differs from the base's %s", s1, s2);
			other++;
		} else if (ct->st->dtype != bt->dtype) {
			plan_log(p, LINES_LOG_ERROR, c->path, bt->name,
			         "dtype %s differs from the base's %s", dtype_name(ct->st->dtype),
			         dtype_name(bt->dtype));
			other++;
		}
	}
	if (missing > PLAN_LIST_MAX)
		plan_log(p, LINES_LOG_ERROR, c->path, NULL, "... %u tensors of the base are missing in all",
		         missing);
	for (size_t i = 0; i < c->ntensors; i++) {
		const struct st_tensor *ct = c->t[i].st;
		if (ckpt_find(b, ct->name))
			continue;
		if (++extra <= PLAN_LIST_MAX)
			plan_log(p, LINES_LOG_ERROR, c->path, ct->name, "not in the base");
	}
	if (extra > PLAN_LIST_MAX)
		plan_log(p, LINES_LOG_ERROR, c->path, NULL, "... %u tensors are not in the base in all",
		         extra);
	if (c->num_layers != b->num_layers) {
		plan_log(p, LINES_LOG_ERROR, c->path, NULL, "has %ld blocks, the base has %ld",
		         c->num_layers, b->num_layers);
		other++;
	}
	return missing + extra + other;
}

static int check_unsupported(struct plan *p, struct lines_error *err)
{
	const struct ckpt *b = p->ck[0];
	unsigned bad = 0;
	const struct st_tensor *first = NULL;
	for (size_t i = 0; i < b->ntensors; i++) {
		const struct st_tensor *t = b->t[i].st;
		if (dtype_table[t->dtype].floating && !dtype_mergeable(t->dtype)) {
			if (!bad++)
				first = t;
			else if (bad <= PLAN_LIST_MAX)
				plan_log(p, LINES_LOG_ERROR, b->path, t->name,
				         "cannot merge %s tensors (only BF16, F16, F32 and F64)",
				         dtype_name(t->dtype));
		}
	}
	RETURN_ERROR_IF(bad, err, LINES_EUNSUPPORTED, b->path, first->name,
	                "cannot merge %s tensors (only BF16, F16, F32 and F64); %u such tensor%s",
	                dtype_name(first->dtype), bad, bad == 1 ? "" : "s");
	return 0;
}

/* 1 when path names one of the input files (the same inode). */
static int is_input(const struct plan *p, const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return 0;
	for (unsigned m = 0; m < p->ninputs; m++)
		for (size_t f = 0; f < p->ck[m]->nfiles; f++)
			if (p->ck[m]->files[f].dev == st.st_dev && p->ck[m]->files[f].ino == st.st_ino)
				return 1;
	return 0;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && !strcmp(s + a - b, suffix);
}

static char *concat(const char *a, const char *b)
{
	char *s = malloc(strlen(a) + strlen(b) + 1);
	if (s)
		strcat(strcpy(s, a), b);
	return s;
}

/*
 * The output's companions: zstd when OUT ends in .zst; OUT.xxh128 (the
 * XXH3-128 of the file as written) and OUT.manifest.json for a regular
 * file output unless --no-checksum; --checksum-file and --manifest put
 * them elsewhere, and are the only way to get them for standard output.
 */
static int choose_outputs(struct plan *p, struct lines_error *err)
{
	const char *out = p->o.output;

	if (p->out_dir) { /* every shard has its companions (output_dir.c) */
		RETURN_ERROR_IF(p->o.zstd_level || p->o.checksum_file || p->o.manifest_file, err,
		                LINES_EUSAGE, NULL, NULL,
		                "--zstd-level, --checksum-file and --manifest apply to a file output");
		FORWARD_IF_ERROR(outdir_plan(p, err));
		return p->o.no_checksum ? 0 : manifest_init(p, err);
	}
	RETURN_ERROR_IF(p->o.shard_size || p->o.no_copy, err, LINES_EUSAGE, NULL, NULL,
	                "--shard-size and --no-copy apply to a directory output (-o DIR/)");
	int to_stdout = !strcmp(out, "-");
	struct stat st;
	int regular = !to_stdout && (stat(out, &st) < 0 || S_ISREG(st.st_mode));

	p->zst = !to_stdout && ends_with(out, ".zst");
	RETURN_ERROR_IF(p->o.zstd_level && !p->zst, err, LINES_EUSAGE, NULL, NULL,
	                "--zstd-level applies to an output whose name ends in .zst");
	p->zstd_level = p->o.zstd_level ? p->o.zstd_level : 1;
	RETURN_ERROR_IF(p->zstd_level < ZSTD_minCLevel() || p->zstd_level > ZSTD_maxCLevel(), err,
	                LINES_EUSAGE, NULL, NULL, "--zstd-level must be between %d and %d",
	                ZSTD_minCLevel(), ZSTD_maxCLevel());
	if (p->o.no_checksum) {
		RETURN_ERROR_IF(p->o.checksum_file || p->o.manifest_file, err, LINES_EUSAGE, NULL, NULL,
		                "--no-checksum excludes --checksum-file and --manifest");
		return 0;
	}
	if (p->o.checksum_file)
		p->sidecar_path = strdup(p->o.checksum_file);
	else if (regular)
		p->sidecar_path = concat(out, ".xxh128");
	if (p->o.manifest_file)
		p->manifest_path = strdup(p->o.manifest_file);
	else if (regular)
		p->manifest_path = concat(out, ".manifest.json");
	if (to_stdout) {
		p->sidecar_name = strdup("-");
	} else {
		char *copy = strdup(out);
		p->sidecar_name = copy ? strdup(basename(copy)) : NULL;
		free(copy);
	}
	RETURN_ERROR_IF((p->o.checksum_file && !p->sidecar_path) ||
	                        (p->o.manifest_file && !p->manifest_path) || !p->sidecar_name ||
	                        (regular && (!p->sidecar_path || !p->manifest_path)),
	                err, LINES_ENOMEM, NULL, NULL, "out of memory");
	RETURN_ERROR_IF(p->sidecar_path && is_input(p, p->sidecar_path), err, LINES_EUSAGE,
	                p->sidecar_path, NULL, "the checksum file is one of the inputs");
	RETURN_ERROR_IF(p->manifest_path && is_input(p, p->manifest_path), err, LINES_EUSAGE,
	                p->manifest_path, NULL, "the manifest is one of the inputs");
	if (p->manifest_path)
		FORWARD_IF_ERROR(manifest_init(p, err));
	return 0;
}

static int set_out_dir(struct plan *p, const char *out, struct lines_error *err)
{
	size_t n = strlen(out);
	while (n > 1 && out[n - 1] == '/')
		n--;
	p->out_dir = malloc(n + 1);
	RETURN_ERROR_IF(!p->out_dir, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	memcpy(p->out_dir, out, n);
	p->out_dir[n] = '\0';
	RETURN_ERROR_IF(ends_with(p->out_dir, ".zst"), err, LINES_EUSAGE, out, NULL,
	                "a directory output cannot be compressed");
	p->shard_size = p->o.shard_size ? p->o.shard_size : 5000000000ull;
	return 0;
}

static int check_output(struct plan *p, struct lines_error *err)
{
	struct stat st;
	const char *out = p->o.output;

	if (!strcmp(out, "-"))
		return 0;
	if (stat(out, &st) < 0) {
		RETURN_ERROR_IF(errno != ENOENT, err, LINES_EIO, out, NULL, "cannot stat the output: %s",
		                strerror(errno));
		if (out[strlen(out) - 1] == '/')
			return set_out_dir(p, out, err);
		return 0;
	}
	if (S_ISDIR(st.st_mode)) {
		DIR *dh = opendir(out);
		struct dirent *e;
		int empty = 1;
		while (dh && (e = readdir(dh)))
			empty &= !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
		if (dh)
			closedir(dh);
		RETURN_ERROR_IF(!empty, err, LINES_EUSAGE, out, NULL,
		                "the output directory exists and is not empty; lines writes a new "
		                "directory (remove it, or name another)");
		return set_out_dir(p, out, err);
	}
	RETURN_ERROR_IF(S_ISBLK(st.st_mode) || S_ISSOCK(st.st_mode), err, LINES_EUSAGE, out, NULL,
	                "is a block device or a socket; refusing to write a model there");
	RETURN_ERROR_IF(is_input(p, out), err, LINES_EUSAGE, out, NULL,
	                "the output is one of the inputs; refusing to overwrite it");
	return 0;
}

static int layout(struct plan *p, struct lines_error *err)
{
	const struct ckpt *b = p->ck[0];
	enum dtype forced = DT_COUNT;
	uint64_t off = 0;

	if (p->o.dtype)
		FORWARD_IF_ERROR(parse_out_dtype(p->o.dtype, &forced, err));
	p->nt = b->ntensors;
	p->t = calloc(p->nt ? p->nt : 1, sizeof(*p->t));
	p->copy_warned = calloc(p->nt ? p->nt : 1, 1);
	RETURN_ERROR_IF(!p->t || !p->copy_warned, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	for (size_t i = 0; i < p->nt; i++) {
		const struct ckpt_tensor *bt = &b->t[i];
		struct plan_tensor *t = &p->t[i];
		t->name = bt->st->name;
		t->in_dt = bt->st->dtype;
		t->merge = dtype_mergeable(t->in_dt);
		t->out_dt = t->merge && forced != DT_COUNT ? forced : t->in_dt;
		t->rank = bt->st->rank;
		t->shape = bt->st->shape;
		t->nelem = bt->st->nelem;
		t->block = bt->block;
		if (t->merge) {
			t->units = t->nelem;
			t->unit_in = dtype_size(t->in_dt);
			t->unit_out = dtype_size(t->out_dt);
		} else {
			t->units = bt->nbytes;
			t->unit_in = t->unit_out = 1;
		}
		t->out_off = off;
		RETURN_ERROR_IF(ck_add(off, t->units * t->unit_out, &off), err, LINES_EFORMAT, NULL,
		                t->name, "output too large");
		t->in = calloc(p->ninputs, sizeof(*t->in));
		RETURN_ERROR_IF(!t->in, err, LINES_ENOMEM, NULL, NULL, "out of memory");
		for (unsigned m = 0, fbase = 0; m < p->ninputs; m++) {
			const struct ckpt_tensor *ct = m ? ckpt_find(p->ck[m], t->name) : bt;
			t->in[m].file = fbase + ct->file;
			t->in[m].off = ct->off;
			fbase += (unsigned)p->ck[m]->nfiles;
		}
		t->lambda = 1.0;
	}
	p->out_data_bytes = off;
	return 0;
}

/*
 * A stream is read in order, and every pass visits the tensors in output
 * order (the base's): a stream whose tensors are stored in another order
 * cannot be read in one sweep. A .zst file is then decompressed to a
 * temporary file first; standard input is refused.
 */
static int check_stream_order(struct plan *p, struct lines_error *err)
{
	if (!p->streams)
		return 0;
	for (unsigned m = 0, fbase = 0; m < p->ninputs; fbase += (unsigned)p->ck[m]->nfiles, m++)
		for (size_t f = 0; f < p->ck[m]->nfiles; f++) {
			const struct ckpt_file *cf = &p->ck[m]->files[f];
			uint64_t last = 0;
			int ordered = 1;
			if (!cf->zs)
				continue;
			for (size_t i = 0; i < p->nt && ordered; i++) {
				const struct plan_input *in = &p->t[i].in[m];
				if (in->file != fbase + f || !p->t[i].units)
					continue;
				ordered = in->off >= last;
				last = in->off;
			}
			if (ordered)
				continue;
			RETURN_ERROR_IF(!zs_restartable(cf->zs), err, LINES_EUNSUPPORTED, cf->path, NULL,
			                "its tensors are not stored in the base's order, so it cannot "
			                "be read in one pass; save it to a file");
			p->spill[fbase + f] = 1;
			plan_log(p, LINES_LOG_NOTE, cf->path, NULL,
			         "its tensors are stored in another order than the base's: it will be "
			         "decompressed to a temporary file in $TMPDIR first");
		}
	return 0;
}

/* ---- scales ------------------------------------------------------------------ */
int plan_set_alpha(struct plan *p, double alpha, struct lines_error *err)
{
	(void)err;
	p->alpha = alpha;
	p->beta = isnan(p->o.beta) ? fmax(0.0, 1.0 - alpha) : p->o.beta;
	p->alpha_known = 1;
	for (long i = 0; i < p->L; i++)
		p->lambda_layer[i] = p->o.lines ? layers_lambda(i, p->L, p->alpha, p->beta) : p->o.lambda;
	p->lambda_outside = p->o.lines ? p->alpha : p->o.lambda;
	for (size_t i = 0; i < p->nt; i++) {
		struct plan_tensor *t = &p->t[i];
		t->lambda = t->block >= 0 ? p->lambda_layer[t->block] : p->lambda_outside;
		t->k_lambda = p->o.method == LINES_M_MEAN ? t->lambda / p->wsum : t->lambda;
	}
	p->info.alpha_known = 1;
	p->info.alpha = p->o.lines ? p->alpha : NAN;
	p->info.beta = p->o.lines ? p->beta : NAN;
	return 0;
}

int plan_alpha_from_norms(struct plan *p, struct lines_error *err)
{
	p->have_norms = 1;
	if (!p->o.lines || !p->o.alpha_auto)
		return 0;
	if (p->norm_mtl == 0.0) {
		plan_log(p, LINES_LOG_WARN, NULL, NULL,
		         "the merged task vector is zero; alpha is set to 1 (the output is the base)");
		return plan_set_alpha(p, 1.0, err);
	}
	return plan_set_alpha(p, p->norm_sum / ((double)p->nmodels * p->norm_mtl), err);
}

static int choose_alpha(struct plan *p, struct lines_error *err)
{
	const struct lines_merge_opts *o = &p->o;

	p->w = calloc(p->nmodels, sizeof(*p->w));
	p->lambda_layer = calloc(p->L ? (size_t)p->L : 1, sizeof(*p->lambda_layer));
	RETURN_ERROR_IF(!p->w || !p->lambda_layer, err, LINES_ENOMEM, NULL, NULL,
	                "out of memory");
	p->equal_weights = 1;
	for (unsigned i = 0; i < p->nmodels; i++) {
		p->w[i] = o->weights ? o->weights[i] : 1.0;
		p->wsum += p->w[i];
		if (p->w[i] != p->w[0])
			p->equal_weights = 0;
	}
	RETURN_ERROR_IF(o->method == LINES_M_MEAN && p->wsum == 0.0, err, LINES_EUSAGE, NULL, NULL,
	                "the weights of a mean must not sum to zero");

	if (!o->lines)
		return plan_set_alpha(p, 1.0, err);
	if (!o->alpha_auto)
		return plan_set_alpha(p, o->alpha, err);
	if (o->method == LINES_M_TIES || o->method == LINES_M_DARE)
		return 0; /* not linear: alpha comes from a pass */
	if (p->equal_weights) {
		/* ||sum tau|| / (N ||w sum tau||) = 1 / (N |w|); a mean divides by N w */
		if (o->method == LINES_M_MEAN)
			return plan_set_alpha(p, 1.0, err);
		RETURN_ERROR_IF(p->w[0] == 0.0, err, LINES_EUSAGE, NULL, NULL,
		                "with zero weights alpha cannot be set automatically; give --alpha");
		return plan_set_alpha(p, 1.0 / ((double)p->nmodels * fabs(p->w[0])), err);
	}
	return 0; /* after the norm pass */
}

/* ---- the output header ------------------------------------------------------- */
static int build_header(struct plan *p, struct lines_error *err)
{
	free(p->header);
	p->header = NULL;
	return plan_header(p, 0, p->nt, &p->header, &p->header_len, err);
}

int plan_header(struct plan *p, size_t t0, size_t t1, unsigned char **hdr, size_t *hdr_len,
                struct lines_error *err)
{
	const struct ckpt_file *bf = &p->ck[0]->files[0];
	struct st_out_tensor *ot = calloc(t1 > t0 ? t1 - t0 : 1, sizeof(*ot));
	size_t nmeta = 0, cap = bf->hdr.nmeta + 24;
	struct st_kv *meta = calloc(cap, sizeof(*meta));
	char (*vals)[64] = calloc(24, sizeof(*vals));
	char *weights = calloc((size_t)p->nmodels * 26 + 1, 1);
	int rc;

	if (!ot || !meta || !vals || !weights) {
		rc = lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
		goto out;
	}
	for (size_t i = t0; i < t1; i++) {
		ot[i - t0].name = p->t[i].name;
		ot[i - t0].dtype = p->t[i].out_dt;
		ot[i - t0].rank = p->t[i].rank;
		ot[i - t0].shape = p->t[i].shape;
		ot[i - t0].nbytes = p->t[i].units * p->t[i].unit_out;
	}
	/* the base's own metadata is carried along, except what lines rewrites */
	for (size_t i = 0; i < bf->hdr.nmeta; i++)
		if (strcmp(bf->hdr.meta[i].key, "format") && strncmp(bf->hdr.meta[i].key, "lines.", 6))
			meta[nmeta].key = bf->hdr.meta[i].key, meta[nmeta++].value = bf->hdr.meta[i].value;

#define META(k, v) (meta[nmeta].key = (k), meta[nmeta++].value = (v))
	int nv = 0;
	META("lines.version", lines_version());
	META("lines.command", p->o.command ? p->o.command : "merge");
	META("lines.method", method_name(p->o.method));
	snprintf(vals[nv], 64, "%u", p->nmodels);
	META("lines.models", vals[nv++]);
	for (unsigned i = 0; i < p->nmodels; i++) {
		size_t len = strlen(weights);
		if (i)
			weights[len++] = ',';
		fmt_double(weights + len, 25, p->w[i]);
	}
	META("lines.weights", weights);
	snprintf(vals[nv], 64, "%ld", p->L);
	META("lines.num_layers", vals[nv++]);
	/* Values measured by a norm pass are written with a fixed width, so
	 * the header the plan announces has the length of the one written. */
	void (*fmt_late)(char *, size_t, double) = p->norm_pass ? fmt_fixed : fmt_double;
	if (p->o.lines) {
		fmt_late(vals[nv], 64, p->alpha);
		META("lines.alpha", vals[nv++]);
		(isnan(p->o.beta) ? fmt_late : fmt_double)(vals[nv], 64, p->beta);
		META("lines.beta", vals[nv++]);
		META("lines.alpha_mode", p->o.alpha_auto ? "auto" : "given");
		META("lines.norm", p->o.norm_p == 2 ? "l2" : "l1");
	} else {
		fmt_double(vals[nv], 64, p->o.lambda);
		META("lines.lambda", vals[nv++]);
	}
	if (p->o.method == LINES_M_TIES || p->o.method == LINES_M_DARE) {
		fmt_double(vals[nv], 64, p->o.density);
		META("lines.density", vals[nv++]);
	}
	if (p->o.method == LINES_M_TIES)
		META("lines.trim", p->o.trim_tensor ? "tensor" : "global");
	if (p->o.method == LINES_M_DARE) {
		snprintf(vals[nv], 64, "%llu", (unsigned long long)p->o.seed);
		META("lines.seed", vals[nv++]);
		META("lines.dare_elect", p->o.dare_elect ? "true" : "false");
	}
	if (p->norm_pass) {
		fmt_fixed(vals[nv], 64, p->norm_sum);
		META("lines.norm_sum", vals[nv++]);
		fmt_fixed(vals[nv], 64, p->norm_mtl);
		META("lines.norm_mtl", vals[nv++]);
	}
#undef META
	rc = st_build(ot, t1 - t0, meta, nmeta, hdr, hdr_len, err);
out:
	free(ot);
	free(meta);
	free(vals);
	free(weights);
	return rc;
}

/*
 * An input rewritten in place while we read it would give a merge of two
 * different files; its size or modification time tells, and the output is
 * then not committed. (An input replaced by rename is harmless: the open
 * descriptor still reads the file that was checked.)
 */
static int check_unchanged(struct plan *p, struct lines_error *err)
{
	for (unsigned m = 0; m < p->ninputs; m++)
		for (size_t f = 0; f < p->ck[m]->nfiles; f++) {
			const struct ckpt_file *cf = &p->ck[m]->files[f];
			struct stat st;
			if (!cf->own_fd || cf->spilled || fstat(cf->fd, &st) < 0)
				continue; /* standard input, or a decompressed copy */
			RETURN_ERROR_IF((uint64_t)st.st_size != cf->disk_size ||
			                        st.st_mtim.tv_sec != cf->mtime.tv_sec ||
			                        st.st_mtim.tv_nsec != cf->mtime.tv_nsec,
			                err, LINES_ECHANGED, cf->path, NULL,
			                "the file changed during the run; the output is not written");
		}
	return 0;
}

/* A stream read to its last tensor must end there, as a file must. */
static int check_stream_ends(struct plan *p, struct lines_error *err)
{
	for (unsigned m = 0; m < p->ninputs; m++)
		for (size_t f = 0; f < p->ck[m]->nfiles; f++) {
			struct ckpt_file *cf = &p->ck[m]->files[f];
			if (cf->zs && zs_pos(cf->zs) == cf->hdr.data_start + cf->hdr.data_len) {
				int rc = zs_expect_end(cf->zs, err);
				if (rc < 0)
					return rc;
			}
		}
	return 0;
}

/* ---- the reader ------------------------------------------------------------------ */
static int choose_io(struct plan *p, struct lines_error *err)
{
	p->src_ops = &src_mmap_ops;
	RETURN_ERROR_IF(p->o.direct && p->o.io == LINES_IO_MMAP, err, LINES_EUSAGE, NULL, NULL,
	                "--direct reads through io_uring; it cannot be used with --io mmap");
	switch (p->o.io) {
	case LINES_IO_MMAP:
		return 0;
	case LINES_IO_URING:
#ifdef HAVE_URING
		RETURN_ERROR_IF(!src_uring_available(), err, LINES_EUNSUPPORTED, NULL, NULL,
		                "io_uring is not available here (kernel, seccomp or "
		                "kernel.io_uring_disabled); use --io mmap");
		p->src_ops = &src_uring_ops;
		return 0;
#else
		return lines_errf(err, LINES_EUNSUPPORTED, NULL, NULL,
		                  "this lines was built without io_uring; use --io mmap");
#endif
	case LINES_IO_AUTO:
	default:
#ifdef HAVE_URING
		if (src_uring_available()) {
			p->src_ops = &src_uring_ops;
			return 0;
		}
		plan_log(p, LINES_LOG_NOTE, NULL, NULL,
		         "io_uring is not available here; reading through mmap");
#endif
		return 0;
	}
}

/* ---- public: plan ------------------------------------------------------------ */
static void fill_info(struct plan *p)
{
	struct lines_plan_info *in = &p->info;
	in->ntensors = p->nt;
	in->nfloat = 0;
	for (size_t i = 0; i < p->nt; i++)
		in->nfloat += p->t[i].merge;
	in->num_layers = p->L;
	in->alpha_known = p->alpha_known;
	in->lambda = p->lambda_layer;
	in->lambda_outside = p->lambda_outside;
	in->norm_sum = p->have_norms ? p->norm_sum : 0;
	in->norm_mtl = p->have_norms ? p->norm_mtl : 0;
	in->npasses = p->npasses;
	for (unsigned i = 0; i < p->npasses; i++) {
		uint64_t bytes = 0;
		p->pass_names[i] = p->pass[i].name;
		for (size_t t = 0; t < p->nt && !p->pass_skipped[i]; t++)
			if (pass_wants(&p->pass[i], p, t))
				bytes += p->t[t].units * p->t[t].unit_in * p->ninputs;
		p->pass_read[i] = p->pass[i].read_bytes = bytes;
		p->pass_optional[i] = p->pass[i].needed != NULL;
	}
	in->pass_names = p->pass_names;
	in->pass_optional = p->pass_optional;
	in->pass_skipped = p->pass_skipped;
	in->pass_read_bytes = p->pass_read;
	in->output_bytes = p->header_len + p->out_data_bytes;
	if (p->out_dir) {
		in->output_bytes = 0;
		for (size_t k = 0; k < p->nshards; k++) {
			unsigned char *h = NULL;
			size_t hl = 0;
			if (plan_header(p, p->shards[k].t0, p->shards[k].t1, &h, &hl, NULL) == 0)
				in->output_bytes += hl + p->shards[k].data;
			free(h);
		}
	}
	if (!in->written_bytes)
		in->written_bytes = in->output_bytes;
	in->memory_bound = p->mem_bound;
	in->chunk = p->chunk;
	in->jobs = p->jobs;
	in->io = p->src_ops->name;
	in->kernels = p->k->name;
}

int lines_plan_new(const struct lines_merge_opts *opts, struct lines_plan **out,
                   struct lines_error *err)
{
	struct lines_plan *lp;
	struct plan *p;
	struct lines_error dummy;
	unsigned problems = 0;
	int rc;

	if (!err)
		err = &dummy;
	*out = NULL;
	FORWARD_IF_ERROR(check_options(opts, err));
	lp = calloc(1, sizeof(*lp));
	RETURN_ERROR_IF(!lp, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	p = &lp->p;
	p->o = *opts;
	p->nmodels = (unsigned)opts->nmodels;
	p->ninputs = p->nmodels + 1;

	if (!(p->k = kern_get(err))) {
		rc = LINES_EUSAGE;
		goto fail;
	}
	if ((rc = layers_init(&p->layers, &opts->layers, err)) < 0)
		goto fail;
	if ((rc = open_inputs(p, err)) < 0)
		goto fail;

	p->L = opts->layers.num_layers ? opts->layers.num_layers : p->ck[0]->num_layers;
	if (p->ck[0]->num_layers > p->L) {
		for (size_t i = 0; i < p->ck[0]->ntensors; i++)
			if (p->ck[0]->t[i].block >= p->L) {
				rc = lines_errf(err, LINES_EUSAGE, p->ck[0]->path, p->ck[0]->t[i].st->name,
				                "block %ld is beyond --num-layers %ld", p->ck[0]->t[i].block,
				                p->L);
				goto fail;
			}
	}
	for (unsigned m = 1; m < p->ninputs; m++)
		problems += check_model(p, m);
	if (problems) {
		rc = lines_errf(err, LINES_EMISMATCH, NULL, NULL,
		                "the models do not match the base (%u problem%s listed above)", problems,
		                problems == 1 ? "" : "s");
		goto fail;
	}
	/* choose_outputs after layout: the manifest sizes its table by tensors */
	if ((rc = check_unsupported(p, err)) < 0 ||
	    (!opts->norms_only && (rc = check_output(p, err)) < 0) ||
	    (rc = layout(p, err)) < 0 || (!opts->norms_only && (rc = choose_outputs(p, err)) < 0) ||
	    (rc = choose_alpha(p, err)) < 0)
		goto fail;
	if ((rc = check_stream_order(p, err)) < 0)
		goto fail;
	if (opts->norms_only) {
		if ((rc = block_norms_setup(p, err)) < 0)
			goto fail;
	} else {
		switch (opts->method) {
		case LINES_M_TIES: rc = merge_ties_setup(p, err); break;
		case LINES_M_DARE: rc = merge_dare_setup(p, err); break;
		default: rc = merge_linear_setup(p, err); break;
		}
		if (rc < 0 || (rc = merge_check_setup(p, err)) < 0)
			goto fail;
	}

	p->jobs = opts->jobs;
	if (!p->jobs) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		p->jobs = n > 0 ? (unsigned)n : 1;
	}
	if (p->jobs > PLAN_MAX_JOBS)
		p->jobs = PLAN_MAX_JOBS;
	if ((rc = choose_io(p, err)) < 0)
		goto fail;
	p->chunk = opts->chunk ? opts->chunk : p->src_ops->default_chunk;
	if (p->chunk < PLAN_MIN_CHUNK)
		p->chunk = PLAN_MIN_CHUNK;
	p->mem_bound = pipe_memory(p, p->src_ops);
	/* many threads times many inputs: smaller chunks keep the default
	 * run under PLAN_MEMORY_BUDGET (an explicit --chunk is obeyed) */
	while (!opts->chunk && p->mem_bound > PLAN_MEMORY_BUDGET && p->chunk > PLAN_MIN_CHUNK * 4) {
		p->chunk /= 2;
		p->mem_bound = pipe_memory(p, p->src_ops);
	}
	if (p->zst) {
		/* libzstd's: per thread (its workers and the caller) about four
		 * windows of input, history and output (measured: 8 MiB each at
		 * level 1, whose window is 512 KiB) */
		uint64_t win = 1ull << ZSTD_getCParams(p->zstd_level, 0, 0).windowLog;
		p->mem_bound += (uint64_t)(p->jobs + 1) * 16 * win;
	}
	/* the header as it will be (alpha may still change its digits) */
	if ((rc = build_header(p, err)) < 0)
		goto fail;
	fill_info(p);
	*out = lp;
	return 0;
fail:
	lines_plan_free(lp);
	return rc;
}

const struct lines_plan_info *lines_plan_info(const struct lines_plan *lp)
{
	return &lp->p.info;
}

void lines_plan_tensor(const struct lines_plan *lp, size_t i, struct lines_tensor_info *info,
                       double *lambda)
{
	const struct plan_tensor *t = &lp->p.t[i];
	info->name = t->name;
	info->dtype = dtype_name(t->out_dt);
	info->is_float = t->merge;
	info->rank = t->rank;
	info->shape = t->shape;
	info->nelem = t->nelem;
	info->nbytes = t->units * t->unit_out;
	info->block = t->block;
	if (lambda)
		*lambda = lp->p.alpha_known ? t->lambda : NAN;
}

/* file or descriptor, then the hash of what is written, then zstd */
static int open_output(struct plan *p, struct sink **out, struct lines_error *err)
{
	struct sink *s = NULL, *layer;
	if (!strcmp(p->o.output, "-"))
		FORWARD_IF_ERROR(sink_fd_open(&s, STDOUT_FILENO, 0, "(standard output)", err));
	else
		FORWARD_IF_ERROR(sink_file_open(&s, p->o.output, err));
	if (p->sidecar_path || p->manifest_path) {
		int rc = sink_hash_open(&layer, s, &p->file_digest, err);
		if (rc < 0) {
			sink_abort(s);
			sink_free(s);
			return rc;
		}
		s = layer;
	}
	if (p->zst) {
		int rc = sink_zstd_open(&layer, s, p->zstd_level, p->jobs, err);
		if (rc < 0) {
			sink_abort(s);
			sink_free(s);
			return rc;
		}
		s = layer;
	}
	*out = s;
	return 0;
}

/* The output is a regular file (not standard output, a device or a FIFO). */
static int sink_is_file_output(const struct plan *p)
{
	struct stat st;
	return stat(p->o.output, &st) == 0 && S_ISREG(st.st_mode);
}

/* Write a small companion file under a temporary name (not yet visible). */
static int stage(const char *path, const char *text, struct sink **s, struct lines_error *err)
{
	FORWARD_IF_ERROR(sink_file_open(s, path, err));
	return sink_write(*s, text, strlen(text), err);
}

/*
 * Every companion is written in full under a temporary name before the
 * output appears, then the output is renamed into place, then they are: a
 * failure before the output's rename leaves nothing, and after it only a
 * rename in the same directory remains to be done.
 */
static int commit_all(struct plan *p, struct sink *out, struct lines_error *err)
{
	struct sink *side = NULL, *man = NULL;
	char *json = NULL, line[4200];
	int rc = 0;

	if (p->sidecar_path) {
		sidecar_line(line, sizeof(line), &p->file_digest, p->sidecar_name);
		rc = stage(p->sidecar_path, line, &side, err);
	}
	if (rc == 0 && p->manifest_path) {
		rc = manifest_build(p, p->sidecar_name, &p->file_digest, &json, err);
		if (rc == 0)
			rc = stage(p->manifest_path, json, &man, err);
	}
	if (rc == 0)
		rc = sink_commit(out, err);
	else
		sink_abort(out);
	if (rc == 0 && side)
		rc = sink_commit(side, err);
	if (rc == 0 && man)
		rc = sink_commit(man, err);
	if (rc == 0 && strcmp(p->o.output, "-") && sink_is_file_output(p)) {
		/* companions of an earlier run, at the default names, would now
		 * describe another file: remove those this run did not write */
		char *a = concat(p->o.output, ".xxh128"), *b = concat(p->o.output, ".manifest.json");
		if (a && (!p->sidecar_path || strcmp(a, p->sidecar_path)))
			unlink(a);
		if (b && (!p->manifest_path || strcmp(b, p->manifest_path)))
			unlink(b);
		free(a), free(b);
	}
	if (rc < 0) {
		if (side)
			sink_abort(side);
		if (man)
			sink_abort(man);
	}
	sink_free(side);
	sink_free(man);
	free(json);
	return rc;
}

int lines_plan_run(struct lines_plan *lp, struct lines_error *err)
{
	struct plan *p = &lp->p;
	struct source *src = NULL;
	struct sink *out = NULL;
	int rc;

	RETURN_ERROR_IF(p->ran, err, LINES_EUSAGE, NULL, NULL, "a plan runs only once");
	p->ran = 1;
	/* streams that cannot be read in order: decompress them first */
	for (unsigned m = 0, f = 0; m < p->ninputs; m++)
		for (size_t i = 0; i < p->ck[m]->nfiles; i++, f++)
			if (p->spill[f]) {
				FORWARD_IF_ERROR(ckpt_spill(&p->ck[m]->files[i], err));
				p->files[f].fd = p->ck[m]->files[i].fd;
				p->files[f].size = p->ck[m]->files[i].size;
			}
#ifdef HAVE_URING
	if (p->src_ops == &src_uring_ops)
		rc = src_uring_open(&src, p->files, p->nfiles, p->o.direct, err);
	else
#endif
		rc = src_mmap_open(&src, p->files, p->nfiles, err);
	if (rc < 0)
		return rc;
	if (p->streams) {
		struct zstream **zs = calloc(p->nfiles ? p->nfiles : 1, sizeof(*zs));
		struct source *wrapped = NULL;
		for (unsigned m = 0, f = 0; zs && m < p->ninputs; m++)
			for (size_t i = 0; i < p->ck[m]->nfiles; i++, f++)
				zs[f] = p->ck[m]->files[i].zs;
		rc = zs ? src_stream_open(&wrapped, src, zs, err)
		        : lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
		free(zs);
		if (rc < 0) {
			src->ops->close(src);
			return rc;
		}
		src = wrapped;
	}
	rc = p->o.norms_only ? 0 : p->out_dir ? outdir_open(p, &out, err) : open_output(p, &out, err);
	for (unsigned i = 0; rc == 0 && i < p->npasses; i++) {
		if (lines_canceled()) {
			rc = lines_errf(err, LINES_ECANCELED, NULL, NULL, "interrupted");
			break;
		}
		if (p->pass[i].writes && !p->out_dir) { /* shards write their own */
			if ((rc = build_header(p, err)) < 0 ||
			    (rc = sink_write(out, p->header, p->header_len, err)) < 0)
				break;
			p->header_hash = XXH3_64bits(p->header, p->header_len);
		}
		if (p->pass[i].needed && !p->pass[i].needed(p)) {
			p->pass_skipped[i] = 1;
			plan_log(p, LINES_LOG_INFO, NULL, NULL, "pass %u/%u (%s): not needed, skipped",
			         i + 1, p->npasses, p->pass[i].name);
			continue;
		}
		if (p->pass[i].begin && (rc = p->pass[i].begin(p, err)) < 0)
			break;
		rc = pipe_run(p, &p->pass[i], i + 1, src, p->pass[i].writes ? out : NULL, err);
	}
	if (rc == 0)
		rc = check_unchanged(p, err);
	if (rc == 0)
		rc = check_stream_ends(p, err);
	if (rc == 0 && out)
		rc = sink_finish(out, err);
	if (rc == 0 && out)
		rc = p->out_dir ? sink_commit(out, err) : commit_all(p, out, err);
	else if (out)
		sink_abort(out);
	sink_free(out);
	src->ops->close(src);
	if (rc == 0 && p->zst) {
		struct stat st;
		if (stat(p->o.output, &st) == 0)
			p->info.written_bytes = (uint64_t)st.st_size;
	}
	fill_info(p);
	return rc;
}

int lines_block_norms(struct lines_plan *lp, const struct lines_block_norms **out,
                      struct lines_error *err)
{
	struct plan *p = &lp->p;
	RETURN_ERROR_IF(!p->o.norms_only, err, LINES_EUSAGE, NULL, NULL,
	                "the plan was not made for norms");
	FORWARD_IF_ERROR(lines_plan_run(lp, err));
	p->bn.num_layers = p->L;
	p->bn.nmodels = p->nmodels;
	*out = &p->bn;
	return 0;
}

void lines_plan_free(struct lines_plan *lp)
{
	struct plan *p;
	if (!lp)
		return;
	p = &lp->p;
	if (p->ck)
		for (unsigned m = 0; m < p->ninputs; m++)
			ckpt_close(p->ck[m]);
	free(p->ck);
	free(p->files);
	if (p->t)
		for (size_t i = 0; i < p->nt; i++)
			free(p->t[i].in);
	free(p->t);
	if (p->mfree)
		p->mfree(p);
	block_norms_free(p);
	free(p->copy_warned);
	free(p->spill);
	free(p->out_dir);
	free(p->shards);
	free(p->sidecar_path);
	free(p->sidecar_name);
	free(p->manifest_path);
	manifest_free(p);
	free(p->w);
	free(p->lambda_layer);
	free(p->header);
	layers_free(&p->layers);
	free(lp);
}
