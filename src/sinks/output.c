/*
 * output.c -- where the output goes: a file (standard output, a device,
 * a .zst) with its companions OUT.xxh128 and OUT.manifest.json, or a
 * directory of shards (sink_dir.c). Checked before anything is read;
 * opened as a stack of sinks; committed so that a failure at any point
 * leaves nothing under OUT.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "checksum.h"
#include "fp8.h"
#include "plan.h"
#include "strutil.h"

/* The directory of path takes a new file. */
static int can_create_in(const char *path)
{
	char *c = strdup(path);
	int ok = c && access(dirname(c), W_OK | X_OK) == 0;
	free(c);
	return ok;
}

static char *concat(const char *a, const char *b)
{
	char *s = malloc(strlen(a) + strlen(b) + 1);
	if (s)
		strcat(strcpy(s, a), b);
	return s;
}

static int shards_plan(struct plan *p, struct lines_error *err)
{
	size_t cap = 16;
	uint64_t cur = 0;
	p->out.shards = calloc(cap, sizeof(*p->out.shards));
	RETURN_ERROR_IF(!p->out.shards, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	p->out.nshards = 0;
	for (size_t i = 0; i < p->lay.nt; i++) {
		uint64_t b = tensor_file_bytes(&p->lay.t[i]);
		b += (p->lay.align - b % p->lay.align) % p->lay.align; /* GGUF: its padding */
		if (p->out.nshards == 0 || (cur + b > p->out.shard_size && cur > 0)) {
			if (p->out.nshards == cap) {
				struct shard *s = realloc(p->out.shards, 2 * cap * sizeof(*s));
				RETURN_ERROR_IF(!s, err, LINES_ENOMEM, NULL, NULL, "out of memory");
				p->out.shards = s;
				cap *= 2;
			}
			struct shard *s = &p->out.shards[p->out.nshards++];
			memset(s, 0, sizeof(*s));
			s->t0 = i;
			s->off0 = p->lay.t[i].out_off;
			cur = 0;
		}
		cur += b;
		p->out.shards[p->out.nshards - 1].t1 = i + 1;
		p->out.shards[p->out.nshards - 1].data = cur;
	}
	if (p->out.nshards == 0) { /* no tensors at all: one empty file */
		p->out.nshards = 1;
		memset(&p->out.shards[0], 0, sizeof(p->out.shards[0]));
	}
	for (size_t k = 0; k < p->out.nshards; k++) {
		struct shard *sh = &p->out.shards[k];
		if (p->out.gguf_prefix) {
			int n = p->out.nshards == 1
			                ? snprintf(sh->name, sizeof(sh->name), "%s.gguf", p->out.gguf_prefix)
			                : snprintf(sh->name, sizeof(sh->name), "%s-%05zu-of-%05zu.gguf",
			                           p->out.gguf_prefix, k + 1, p->out.nshards);
			RETURN_ERROR_IF(n < 0 || (size_t)n >= sizeof(sh->name), err, LINES_EUSAGE,
			                p->o.output, NULL, "the output's name is too long for its shards");
			continue;
		}
		if (p->out.nshards == 1)
			snprintf(p->out.shards[k].name, sizeof(p->out.shards[k].name), "model.safetensors");
		else
			snprintf(p->out.shards[k].name, sizeof(p->out.shards[k].name),
			         "model-%05zu-of-%05zu.safetensors", k + 1, p->out.nshards);
	}
	return 0;
}


/* The directory whose small files come along: the base's, if it is one. */
static char *carry_dir(const struct plan *p)
{
	/* the base's directory as it was opened: given, an index's, or a hub
	 * id's snapshot in the Hugging Face cache (a single file has none) */
	const char *d = p->in.ck[0]->dir;
	return d ? strdup(d) : NULL;
}

/*
 * The output's companions: zstd when OUT ends in .zst; OUT.xxh128 (the
 * XXH3-128 of the file as written) and OUT.manifest.json for a regular
 * file output unless --no-checksum; --checksum-file and --manifest put
 * them elsewhere, and are the only way to get them for standard output.
 */
/* A sharded GGUF output: llama.cpp's split files beside OUT's name. */
static int choose_gguf_shards(struct plan *p, struct lines_error *err)
{
	const char *out = p->o.output;
	RETURN_ERROR_IF(!strcmp(out, "-"), err, LINES_EUSAGE, NULL, NULL,
	                "a sharded GGUF output (--shard-size) cannot go to standard output");
	RETURN_ERROR_IF(p->o.checksum_file || p->o.manifest_file || p->o.no_copy, err, LINES_EUSAGE,
	                NULL, NULL,
	                "--checksum-file, --manifest and --no-copy do not apply to a sharded GGUF "
	                "output (each shard gets its own companions)");
	char *c1 = strdup(out), *c2 = strdup(out);
	char *dir = c1 ? strdup(dirname(c1)) : NULL, *base = c2 ? strdup(basename(c2)) : NULL;
	free(c1), free(c2);
	if (!dir || !base) {
		free(dir), free(base);
		return lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
	}
	base[strlen(base) - 5] = '\0'; /* less .gguf */
	p->out.dir = dir;
	p->out.gguf_prefix = base;
	p->out.shard_size = p->o.shard_size;
	FORWARD_IF_ERROR(shards_plan(p, err));
	/* the split files' names are not OUT's: none may be an input's */
	for (size_t k = 0; k < p->out.nshards; k++) {
		char *path = malloc(strlen(dir) + strlen(p->out.shards[k].name) + 2);
		RETURN_ERROR_IF(!path, err, LINES_ENOMEM, NULL, NULL, "out of memory");
		sprintf(path, "%s/%s", dir, p->out.shards[k].name);
		int in = plan_is_input(p, path);
		if (in) {
			int r = lines_errf(err, LINES_EUSAGE, path, NULL,
			                   "this file of the split output is one of the inputs; "
			                   "refusing to overwrite it");
			free(path);
			return r;
		}
		free(path);
	}
	return p->o.no_checksum ? 0 : manifest_init(p, err);
}

int output_choose(struct plan *p, struct lines_error *err)
{
	const char *out = p->o.output;

	if (p->out.gguf && p->o.shard_size)
		return choose_gguf_shards(p, err);

	if (p->out.dir) { /* every shard has its companions (sink_dir.c) */
		RETURN_ERROR_IF(p->o.zstd_level || p->o.checksum_file || p->o.manifest_file, err,
		                LINES_EUSAGE, NULL, NULL,
		                "--zstd-level, --checksum-file and --manifest apply to a file output");
		FORWARD_IF_ERROR(shards_plan(p, err));
		return p->o.no_checksum ? 0 : manifest_init(p, err);
	}
	RETURN_ERROR_IF(p->o.shard_size || p->o.no_copy, err, LINES_EUSAGE, NULL, NULL,
	                "--shard-size and --no-copy apply to a directory output (-o DIR/)");
	int to_stdout = !strcmp(out, "-");
	struct stat st;
	int regular = !to_stdout && (stat(out, &st) < 0 || S_ISREG(st.st_mode));

	p->out.zst = !to_stdout && str_ends_with(out, ".zst");
	RETURN_ERROR_IF(p->o.zstd_level && !p->out.zst, err, LINES_EUSAGE, NULL, NULL,
	                "--zstd-level applies to an output whose name ends in .zst");
	p->out.zstd_level = p->o.zstd_level ? p->o.zstd_level : 1;
	RETURN_ERROR_IF(p->out.zstd_level < ZSTD_minCLevel() || p->out.zstd_level > ZSTD_maxCLevel(), err,
	                LINES_EUSAGE, NULL, NULL, "--zstd-level must be between %d and %d",
	                ZSTD_minCLevel(), ZSTD_maxCLevel());
	if (p->o.no_checksum) {
		RETURN_ERROR_IF(p->o.checksum_file || p->o.manifest_file, err, LINES_EUSAGE, NULL, NULL,
		                "--no-checksum excludes --checksum-file and --manifest");
		return 0;
	}
	if (p->o.checksum_file)
		p->out.sidecar_path = strdup(p->o.checksum_file);
	else if (regular)
		p->out.sidecar_path = concat(out, ".xxh128");
	if (p->o.manifest_file)
		p->out.manifest_path = strdup(p->o.manifest_file);
	else if (regular)
		p->out.manifest_path = concat(out, ".manifest.json");
	if (to_stdout) {
		p->out.sidecar_name = strdup("-");
	} else {
		char *copy = strdup(out);
		p->out.sidecar_name = copy ? strdup(basename(copy)) : NULL;
		free(copy);
	}
	RETURN_ERROR_IF((p->o.checksum_file && !p->out.sidecar_path) ||
	                        (p->o.manifest_file && !p->out.manifest_path) || !p->out.sidecar_name ||
	                        (regular && (!p->out.sidecar_path || !p->out.manifest_path)),
	                err, LINES_ENOMEM, NULL, NULL, "out of memory");
	/* a companion that could not be created would fail after the run */
	RETURN_ERROR_IF(p->o.checksum_file && p->out.sidecar_path &&
	                    !can_create_in(p->out.sidecar_path),
	                err, LINES_EIO, p->out.sidecar_path, NULL,
	                "cannot create the checksum file: its directory is missing or not writable");
	RETURN_ERROR_IF(p->o.manifest_file && p->out.manifest_path &&
	                    !can_create_in(p->out.manifest_path),
	                err, LINES_EIO, p->out.manifest_path, NULL,
	                "cannot create the manifest: its directory is missing or not writable");
	/* a companion's name taken by a directory would fail only after the
	 * output is in place */
	RETURN_ERROR_IF(p->out.sidecar_path && lstat(p->out.sidecar_path, &st) == 0 &&
	                    S_ISDIR(st.st_mode),
	                err, LINES_EUSAGE, p->out.sidecar_path, NULL,
	                "the checksum file's name is a directory");
	RETURN_ERROR_IF(p->out.manifest_path && lstat(p->out.manifest_path, &st) == 0 &&
	                    S_ISDIR(st.st_mode),
	                err, LINES_EUSAGE, p->out.manifest_path, NULL,
	                "the manifest's name is a directory");
	RETURN_ERROR_IF(p->out.sidecar_path && plan_is_input(p, p->out.sidecar_path), err, LINES_EUSAGE,
	                p->out.sidecar_path, NULL, "the checksum file is one of the inputs");
	RETURN_ERROR_IF(p->out.manifest_path && plan_is_input(p, p->out.manifest_path), err, LINES_EUSAGE,
	                p->out.manifest_path, NULL, "the manifest is one of the inputs");
	RETURN_ERROR_IF(!to_stdout && p->out.sidecar_path && same_file(p->out.sidecar_path, out), err,
	                LINES_EUSAGE, p->out.sidecar_path, NULL, "the checksum file is the output");
	RETURN_ERROR_IF(!to_stdout && p->out.manifest_path && same_file(p->out.manifest_path, out), err,
	                LINES_EUSAGE, p->out.manifest_path, NULL, "the manifest is the output");
	RETURN_ERROR_IF(p->out.sidecar_path && p->out.manifest_path &&
	                    same_file(p->out.sidecar_path, p->out.manifest_path),
	                err, LINES_EUSAGE, p->out.manifest_path, NULL,
	                "the manifest and the checksum file are the same file");
	if (p->out.manifest_path)
		FORWARD_IF_ERROR(manifest_init(p, err));
	return 0;
}

static int set_out_dir(struct plan *p, const char *out, struct lines_error *err)
{
	size_t n = strlen(out);
	while (n > 1 && out[n - 1] == '/')
		n--;
	p->out.dir = malloc(n + 1);
	RETURN_ERROR_IF(!p->out.dir, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	memcpy(p->out.dir, out, n);
	p->out.dir[n] = '\0';
	RETURN_ERROR_IF(str_ends_with(p->out.dir, ".zst"), err, LINES_EUSAGE, out, NULL,
	                "a directory output cannot be compressed");
	p->out.shard_size = p->o.shard_size ? p->o.shard_size : 5000000000ull;
	return 0;
}

int output_check(struct plan *p, struct lines_error *err)
{
	struct stat st;
	const char *out = p->o.output;

	if (!strcmp(out, "-"))
		return 0;
	if (stat(out, &st) < 0) {
		RETURN_ERROR_IF(errno != ENOENT, err, LINES_EIO, out, NULL, "cannot stat the output: %s",
		                strerror(errno));
		if (out[strlen(out) - 1] == '/') {
			/* a new directory, made beside: its parent must take it */
			char *c = strdup(out), *parent;
			RETURN_ERROR_IF(!c, err, LINES_ENOMEM, NULL, NULL, "out of memory");
			size_t n = strlen(c);
			while (n > 1 && c[n - 1] == '/')
				c[--n] = '\0';
			parent = dirname(c);
			int ok = access(parent, W_OK | X_OK) == 0;
			int e = errno;
			if (!ok) {
				int r = lines_errno(err, e, parent, "cannot create the output directory %s here",
				                    out);
				free(c);
				return r;
			}
			free(c);
			return set_out_dir(p, out, err);
		}
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
		/* the parts of a partitioned run write into one directory */
		RETURN_ERROR_IF(!empty && !p->o.part_m, err, LINES_EUSAGE, out, NULL,
		                "the output directory exists and is not empty; lines writes a new "
		                "directory (remove it, or name another)");
		/* written inside it (it may be a mount point or a symlink's target) */
		if (access(out, W_OK | X_OK) < 0)
			return lines_errno(err, errno, out, "cannot write into the output directory");
		return set_out_dir(p, out, err);
	}
	RETURN_ERROR_IF(S_ISBLK(st.st_mode) || S_ISSOCK(st.st_mode), err, LINES_EUSAGE, out, NULL,
	                "is a block device or a socket; refusing to write a model there");
	RETURN_ERROR_IF(plan_is_input(p, out), err, LINES_EUSAGE, out, NULL,
	                "the output is one of the inputs; refusing to overwrite it");
	return 0;
}

static int shard_header(const void *arg, size_t t0, size_t t1, unsigned char **hdr, size_t *len,
                        struct lines_error *err)
{
	return plan_header(arg, t0, t1, hdr, len, err);
}

static int shard_manifest(const void *arg, const struct manifest_file *mf, struct sink *s,
                          struct lines_error *err)
{
	return manifest_write(arg, mf, s, err);
}

/* A growing text for the README. */
struct text {
	char *s;
	size_t len, cap;
	int oom;
};

static void put(struct text *t, const char *fmt, ...) LINES_PRINTF(2, 3);
static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	for (int tries = 0; tries < 2 && !t->oom; tries++) {
		va_start(ap, fmt);
		int n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->oom = 1;
			return;
		}
		if (t->s && t->len + (size_t)n < t->cap) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = 2 * (t->cap + (size_t)n + 64);
		char *s = realloc(t->s, cap);
		if (!s) {
			t->oom = 1;
			return;
		}
		t->s = s;
		t->cap = cap;
	}
}

/* The XXH3-128 in PATH.xxh128 beside an input, or NULL. */
static const char *input_sidecar(const char *path, char *buf, size_t n)
{
	char *side = concat(path, ".xxh128");
	FILE *f = side ? fopen(side, "r") : NULL;
	const char *r = NULL;
	if (f && fgets(buf, (int)n, f) && strlen(buf) >= 32) {
		buf[32] = '\0';
		r = buf;
	}
	if (f)
		fclose(f);
	free(side);
	return r;
}

/*
 * README.md of a directory output: what model this is and how it was
 * made (the base's model card describes the base, so it is not carried).
 */
static int make_readme(const void *arg, char **out, struct lines_error *err)
{
	const struct plan *p = arg;
	const struct lines_merge_opts *o = &p->o;
	struct text t = {0};
	char v[64], side[80];

	int edited = o->command && !strcmp(o->command, "scale");
	put(&t, "# A %s model, made by lines %s\n\n", edited ? "LiNeS-edited" : "merged",
	    lines_version());
	put(&t, "This directory was written by `lines %s` from the models below; it is not any "
	        "one of them. Each shard has its XXH3-128 in SHARD.xxh128 and a manifest of "
	        "every tensor in SHARD.manifest.json: `lines verify` checks them.\n\n",
	    o->command ? o->command : "merge");
	put(&t, "## Recipe\n\n- method: %s\n", p->method->name);
	put(&t, "- weights:");
	for (unsigned i = 0; i < p->lay.nmodels; i++) {
		lines_fmt_double(v, sizeof(v), p->sc.w[i]);
		put(&t, "%s%s", i ? ", " : " ", v);
	}
	put(&t, "\n");
	if (o->lines) {
		lines_fmt_double(v, sizeof(v), p->sc.alpha);
		put(&t, "- LiNeS: alpha = %s (%s)", v, o->alpha_auto ? "automatic" : "given");
		lines_fmt_double(v, sizeof(v), p->sc.beta);
		if (o->schedule) {
			put(&t, ", beta = %s; block i of a ramp of L blocks keeps "
			        "alpha + beta * f(i / (L - 1)) of its update, f the schedule", v);
			for (size_t i = 0; i < o->nschedule; i++) {
				lines_fmt_double(v, sizeof(v), o->schedule[i]);
				put(&t, "%s%s", i ? ", " : " ", v);
			}
			put(&t, " at evenly spaced depths\n");
		} else {
			put(&t, ", beta = %s; block i of a ramp of L blocks keeps "
			        "alpha + beta * i / (L - 1) of its update\n", v);
		}
		for (size_t k = 0; k < p->lay.nstacks; k++) {
			const struct stack *st = &p->lay.stacks[k];
			put(&t, "  - `%s`: %ld block%s", st->name, st->L, st->L == 1 ? "" : "s");
			if (st->first || st->ramp != st->L)
				put(&t, " (blocks %ld to %ld of a ramp of %ld)", st->first,
				    st->first + st->L - 1, st->ramp);
			put(&t, "\n");
		}
	} else {
		lines_fmt_double(v, sizeof(v), o->lambda);
		put(&t, "- lambda: %s\n", v);
	}
	if (p->method->flags & METHOD_USES_DENSITY) {
		lines_fmt_double(v, sizeof(v), o->density);
		put(&t, "- density: %s\n", v);
	}
	if (o->tokenizer_source)
		put(&t, "- tokenizer: the files of `%s` (its vocabulary is the base's)\n",
		    o->tokenizer_source);
	put(&t, "\n## Inputs\n\n| role | path | bytes | XXH3-128 (from its .xxh128) |\n"
	        "| --- | --- | --- | --- |\n");
	for (unsigned m = 0; m < p->in.ninputs; m++) {
		const struct ckpt *c = p->in.ck[m];
		const char *h = input_sidecar(c->path, side, sizeof(side));
		uint64_t bytes = 0; /* every shard's */
		for (size_t f = 0; f < c->nfiles; f++)
			bytes += c->files[f].disk_size;
		put(&t, "| %s | `%s` | %llu | %s |\n", m ? "model" : "base", c->path,
		    (unsigned long long)bytes, h ? h : "-");
	}
	int scale = o->command && !strcmp(o->command, "scale");
	char shard[64] = "";
	if (o->shard_size)
		snprintf(shard, sizeof(shard), " --shard-size %llu", (unsigned long long)o->shard_size);
	if (o->config_yaml && !scale) { /* every option is in the configuration */
		put(&t, "\n## Command\n\nFrom the directory the merge ran in (the paths of the "
		        "configuration are relative to it):\n\n```\nlines merge --config "
		        "%s/lines_config.yml%s -o %s/\n```\n",
		    p->out.dir, shard, p->out.dir);
		put(&t, "\n## Configuration\n\nAs run:\n\n```yaml\n%s```\n", o->config_yaml);
		goto done;
	}
	put(&t, "\n## Command\n\n```\nlines %s -b %s", scale ? "scale" : "merge", p->in.names[0]);
	if (!scale)
		put(&t, " -m %s", p->method->name);
	if (scale) {
		lines_fmt_double(v, sizeof(v), o->alpha);
		put(&t, " --gamma %s", v);
	} else if (o->lines && !o->alpha_auto) {
		lines_fmt_double(v, sizeof(v), o->alpha);
		put(&t, " --alpha %s", v);
	} else if (o->lines) {
		put(&t, " --lines");
	}
	if (!scale && o->lines && !isnan(o->beta)) {
		lines_fmt_double(v, sizeof(v), o->beta);
		put(&t, " --beta %s", v);
	}
	for (size_t i = 0; o->lines && o->schedule && i < o->nschedule; i++) {
		lines_fmt_double(v, sizeof(v), o->schedule[i]);
		put(&t, "%s%s", i ? "," : " --schedule ", v);
	}
	if (o->weights) {
		put(&t, " -w ");
		for (unsigned i = 0; i < p->lay.nmodels; i++) {
			lines_fmt_double(v, sizeof(v), p->sc.w[i]);
			put(&t, "%s%s", i ? "," : "", v);
		}
	}
	if (o->tokenizer_source)
		put(&t, " --tokenizer-source %s", o->tokenizer_source);
	put(&t, "%s -o %s/", shard, p->out.dir);
	for (unsigned m = 1; m < p->in.ninputs; m++)
		put(&t, " %s", p->in.names[m]);
	put(&t, "\n```\n");
	if (o->config_yaml)
		put(&t, "\n## Configuration\n\nAs run (`lines merge --config lines_config.yml` "
		        "makes it again):\n\n```yaml\n%s```\n", o->config_yaml);
done:
	if (t.oom) {
		free(t.s);
		return lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory for README.md");
	}
	*out = t.s;
	return 0;
}

static int part_text(const void *arg, const char *index_json, const char *readme, char **text,
                     struct lines_error *err)
{
	return part_plan_text(arg, index_json, readme, text, err);
}

/* A directory: the shards, each its own safetensors file. */
static int open_dir(struct plan *p, struct sink **out, struct lines_error *err)
{
	struct sink_dir_desc d = {0};
	/* slices: the small files of the model the first slice's embeddings
	 * come from (mergekit's choice), config.json with the new depth */
	char *carry = p->o.no_copy       ? NULL
	              : !p->o.nslices    ? carry_dir(p)
	              : p->in.ck[0]->dir ? strdup(p->in.ck[0]->dir)
	                                 : NULL;
	int rc;
	d.path = p->out.dir;
	d.num_layers = p->o.nslices ? p->lay.L : 0;
	free(p->out.layer_src);
	p->out.layer_src = d.num_layers ? calloc((size_t)d.num_layers, sizeof(long)) : NULL;
	for (size_t s = 0, j = 0; p->out.layer_src && s < p->o.nslices; s++)
		for (long b = p->o.slices[s].src[0].first;
		     b < p->o.slices[s].src[0].end && j < (size_t)d.num_layers; b++)
			p->out.layer_src[j++] = b;
	d.layer_src = p->out.layer_src;
	d.lay = &p->lay;
	d.shards = p->out.shards;
	d.nshards = p->out.nshards;
	d.checksums = !p->o.no_checksum;
	d.carry_from = p->out.gguf_prefix ? NULL : carry;
	d.tokenizer_from = p->o.no_copy || p->out.gguf_prefix ? NULL : p->tok_dir;
	d.files_only = p->out.gguf_prefix != NULL;
	for (size_t i = 0; i < p->lay.nt; i++)
		d.dequantized |= p->lay.t[i].in[0].q && !p->lay.t[i].rq;
	d.torch_dtype = dtype_torch_name(p->o.dtype); /* not fp8: its own scheme */
	d.header = shard_header;
	d.manifest = shard_manifest;
	d.readme = p->out.gguf_prefix ? NULL : make_readme;
	d.config_yaml = p->out.gguf_prefix ? NULL : p->o.config_yaml;
	d.arg = p;
	d.log = &p->o;
	if (p->part.on) {
		d.part = 1;
		d.part_k = p->part.k;
		d.s0 = p->part.s0;
		d.s1 = p->part.s1;
		d.plan_text = part_text;
	}
	rc = sink_dir_open(out, &d, err);
	free(carry);
	return rc;
}

/* file or descriptor, then the hash of what is written, then zstd */
static int open_file(struct plan *p, struct sink **out, struct lines_error *err)
{
	struct sink *s = NULL, *layer;
	if (!strcmp(p->o.output, "-"))
		FORWARD_IF_ERROR(sink_fd_open(&s, STDOUT_FILENO, 0, "(standard output)", err));
	else
		FORWARD_IF_ERROR(sink_file_open(&s, p->o.output, err));
	if (p->out.sidecar_path || p->out.manifest_path) {
		int rc = sink_hash_open(&layer, s, &p->out.file_digest, err);
		if (rc < 0) {
			sink_abort(s);
			sink_free(s);
			return rc;
		}
		s = layer;
	}
	if (p->out.zst) {
		int rc = sink_zstd_open(&layer, s, p->out.zstd_level, p->env.jobs, err);
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

int output_open(struct plan *p, struct sink **out, struct lines_error *err)
{
	return p->out.dir ? open_dir(p, out, err) : open_file(p, out, err);
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

/* Remove path if it is a regular file (not a directory in its place). */
static void unlink_regular(const char *path)
{
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISREG(st.st_mode))
		unlink(path);
}

/*
 * Every companion is written in full under a temporary name before the
 * output appears, then the output is renamed into place, then they are: a
 * failure before the output's rename leaves nothing, and after it only a
 * rename in the same directory remains to be done.
 */
static int commit_file(struct plan *p, struct sink *out, struct lines_error *err)
{
	struct sink *side = NULL, *man = NULL;
	char line[4200];
	int rc = 0;

	if (p->out.sidecar_path) {
		sidecar_line(line, sizeof(line), &p->out.file_digest, p->out.sidecar_name);
		rc = stage(p->out.sidecar_path, line, &side, err);
	}
	if (rc == 0 && p->out.manifest_path) {
		struct manifest_file mf = {p->out.sidecar_name, &p->out.file_digest, 0, p->lay.nt, 0,
		                           p->out.header_len, p->out.header_hash,
		                           p->lay.out_data_bytes};
		rc = sink_file_open(&man, p->out.manifest_path, err);
		if (rc == 0)
			rc = manifest_write(p, &mf, man, err);
	}
	if (rc == 0)
		rc = sink_commit(out, err);
	else
		sink_abort(out);
	int placed = rc == 0, side_ok = 0, man_ok = 0;
	if (rc == 0 && side)
		side_ok = (rc = sink_commit(side, err)) == 0;
	if (rc == 0 && man)
		man_ok = (rc = sink_commit(man, err)) == 0;
	if (rc < 0 && placed) {
		/* the output is the new one: a companion left from before, which
		 * this run did not replace, would describe another file */
		if (side && !side_ok)
			unlink_regular(p->out.sidecar_path);
		if (man && !man_ok)
			unlink_regular(p->out.manifest_path);
	}
	if (rc == 0 && strcmp(p->o.output, "-") && sink_is_file_output(p)) {
		/* companions of an earlier run, at the default names, would now
		 * describe another file: remove those this run did not write */
		char *a = concat(p->o.output, ".xxh128"), *b = concat(p->o.output, ".manifest.json");
		if (a && (!p->out.sidecar_path || strcmp(a, p->out.sidecar_path)))
			unlink(a);
		if (b && (!p->out.manifest_path || strcmp(b, p->out.manifest_path)))
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
	return rc;
}

int output_commit(struct plan *p, struct sink *out, struct lines_error *err)
{
	return p->out.dir ? sink_commit(out, err) : commit_file(p, out, err);
}


/*
 * With OUT's lock held no other run writes OUT or its companions, so the
 * temporary files of their names (.NAME.lines-XXXXXX, mkostemp's six
 * characters) are what a killed run (SIGKILL, a crash, a power cut) left:
 * removed, with a note.
 */
static void remove_stale(struct plan *p, const char *out)
{
	static const char *const kinds[] = {"", ".xxh128", ".manifest.json"};
	char *dcopy = strdup(out), *bcopy = strdup(out);
	DIR *d = dcopy && bcopy ? opendir(dirname(dcopy)) : NULL;
	const char *base = bcopy ? basename(bcopy) : NULL;
	struct dirent *e;
	unsigned n = 0;
	while (d && (e = readdir(d))) {
		for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
			char want[NAME_MAX + 64];
			int len = snprintf(want, sizeof(want), ".%s%s.lines-", base, kinds[k]);
			struct stat st;
			if (len <= 0 || (size_t)len >= sizeof(want) || strncmp(e->d_name, want, (size_t)len) ||
			    strlen(e->d_name) != (size_t)len + 6 ||
			    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
			    !S_ISREG(st.st_mode))
				continue;
			n += unlinkat(dirfd(d), e->d_name, 0) == 0;
			break;
		}
	}
	if (d)
		closedir(d);
	if (n)
		lines_logf(&p->o, LINES_LOG_NOTE, out, NULL,
		           "removed %u temporary file%s that a killed run left beside it", n,
		           n == 1 ? "" : "s");
	free(dcopy), free(bcopy);
}

/*
 * Two runs writing the same OUT at once could leave OUT and its .xxh128
 * and .manifest.json from different runs: a run holds an exclusive
 * flock(2) on DIR/.NAME.lines-lock from before it reads until its output
 * is committed or removed, and a second run waits for it. The lock file
 * is removed by its holder; a waiter that gets the lock of a removed file
 * takes the new one instead.
 */
int output_lock(struct plan *p, struct lines_error *err)
{
	/* a sharded GGUF output: its files go beside OUT's name, locked as a file */
	const char *out = p->out.dir && !p->out.gguf_prefix ? p->out.dir : p->o.output;
	char *dcopy, *bcopy, *path;
	int fd, locked = 0;

	if (!out || !strcmp(out, "-") || (!p->out.dir && !sink_is_file_output(p) &&
	                                  access(out, F_OK) == 0))
		return 0; /* standard output, a device, a FIFO: nothing to commit */
	if (p->part.on)
		return 0; /* the parts run at once; each locks its own (sink_dir.c) */
	dcopy = strdup(out), bcopy = strdup(out);
	path = dcopy && bcopy ? malloc(strlen(out) + 32) : NULL;
	if (!path) {
		free(dcopy), free(bcopy);
		return lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
	}
	sprintf(path, "%s/.%s.lines-lock", dirname(dcopy), basename(bcopy));
	free(dcopy), free(bcopy);
	/* an existing directory (a mount point, say) whose parent we may not
	 * write: the lock goes inside it, where the output goes too */
	struct stat ds;
	if (p->out.dir && stat(out, &ds) == 0 && S_ISDIR(ds.st_mode) && !can_create_in(path)) {
		free(path);
		if (!(path = malloc(strlen(out) + 32)))
			return lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
		sprintf(path, "%s/.lines-lock", out);
	}
	for (;;) {
		struct stat a, b;
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
		if (fd < 0) {
			int e = errno, rc;
			char *slash = strrchr(path, '/');
			*slash = '\0'; /* the lock's directory: the output's */
			if (e == ENOENT)
				rc = lines_errno(err, e, out, "the output's directory %s does not exist",
				                 path);
			else
				rc = lines_errno(err, e, out,
				                 "cannot create the lock file %s/%s in the output's directory",
				                 path, slash + 1);
			free(path);
			return rc;
		}
		locked = flock(fd, LOCK_EX | LOCK_NB) == 0;
		if (!locked && errno == EWOULDBLOCK) {
			lines_logf(&p->o, LINES_LOG_NOTE, out, NULL,
			           "another lines run is writing this output: waiting for it");
			while (!(locked = flock(fd, LOCK_EX) == 0) && errno == EINTR &&
			       !lines_canceled())
				;
		}
		if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
		    a.st_ino == b.st_ino)
			break; /* ours, and still the lock file */
		close(fd);
		RETURN_ERROR_IF(lines_canceled(), err, LINES_ECANCELED, NULL, NULL, "interrupted");
	}
	p->out.lock_fd = fd;
	p->out.lock_path = path;
	/* (a file system without locks: no lock, and nothing removed) */
	if (!p->out.dir && locked)
		remove_stale(p, out);
	return 0;
}

void output_unlock(struct output *o)
{
	if (!o->lock_path)
		return;
	unlink(o->lock_path); /* while holding it: a waiter then takes a new one */
	close(o->lock_fd);
	free(o->lock_path);
	o->lock_path = NULL;
}

void output_free(struct output *o)
{
	output_unlock(o);
	free(o->layer_src);
	free(o->dir);
	free(o->gguf_prefix);
	free(o->shards);
	free(o->sidecar_path);
	free(o->sidecar_name);
	free(o->manifest_path);
	free(o->thash);
	if (o->tstate)
		XXH3_freeState(o->tstate);
	free(o->header);
	memset(o, 0, sizeof(*o));
}
