/*
 * sink_dir.c -- a Hugging Face model directory as the output.
 *
 * The tensors, in output order, are cut into shards of at most
 * --shard-size bytes (a tensor larger than that gets a shard of its own):
 * model-0000i-of-0000K.safetensors, each a complete safetensors file with
 * its own header and __metadata__, plus model.safetensors.index.json
 * (metadata.total_size, weight_map); one shard is model.safetensors
 * without an index. Each shard gets its OUT.xxh128 and OUT.manifest.json
 * unless --no-checksum, and the small non-weight files of the base's
 * directory (config.json, tokenizer files, ...) come along unless
 * --no-copy.
 *
 * Everything is written into a temporary directory next to the output,
 * which is renamed into place at the very end: a run that fails, or is
 * interrupted, leaves no output directory at all.
 *
 * The shards are laid out by output.c; this file knows nothing of the
 * run beyond the tensors' names and the two callbacks that make a
 * shard's header and manifest.
 *
 * To the pipeline this is one sink taking the data bytes in order; it
 * opens the next shard (writing that shard's header) when the bytes of
 * the current one are all in.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <xxhash.h>

#include "checksum.h"
#include "output.h"
#include "strutil.h"

#define CARRY_MAX (64ull << 20) /* larger files are not "small" */

/* ---- the sink ------------------------------------------------------------------------- */
struct sink_dir {
	struct sink base;
	struct sink_dir_desc desc;
	char *carry; /* a copy of desc.carry_from */
	int inside;  /* the final directory exists: tmpdir is in it, and the files move */
	char *tmpdir, *final;
	size_t cur;     /* the open shard, or nshards when none is */
	uint64_t left;  /* its data bytes still to come */
	struct sink *s; /* its stack: file, then hash */
	struct sink **files;
	struct xxh128 *digest;
	uint64_t *hhash, *hlen;
	int failed;
	int lock_fd; /* a part: the lock on its temporary directory, or -1 */
};

static int open_shard(struct sink_dir *d, size_t k, struct lines_error *err)
{
	const struct sink_dir_desc *p = &d->desc;
	const struct shard *sh = &p->shards[k];
	unsigned char *hdr = NULL;
	size_t hl = 0;
	char *path = str_join_path(d->tmpdir, sh->name);
	struct sink *f = NULL, *h;
	int rc;

	RETURN_ERROR_IF(!path, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	rc = sink_file_open(&f, path, err);
	free(path);
	if (rc < 0)
		return rc;
	d->files[k] = f;
	if (p->checksums) {
		if ((rc = sink_hash_open(&h, f, &d->digest[k], err)) < 0)
			return rc;
		d->files[k] = NULL; /* owned by the hash layer now */
		f = h;
	}
	d->s = f;
	d->cur = k;
	d->left = sh->data;
	if ((rc = p->header(p->arg, sh->t0, sh->t1, &hdr, &hl, err)) == 0) {
		rc = sink_write(d->s, hdr, hl, err);
		d->hhash[k] = XXH3_64bits(hdr, hl);
		d->hlen[k] = hl;
	}
	free(hdr);
	return rc;
}

/* The current shard is complete: flush it (its digest is ready), keep it
 * for the commit. */
static int close_shard(struct sink_dir *d, struct lines_error *err)
{
	int rc = sink_finish(d->s, err);
	d->files[d->cur] = d->s;
	d->s = NULL;
	d->cur = d->desc.nshards;
	return rc;
}

static int next_shard(struct sink_dir *d, size_t k, struct lines_error *err)
{
	if (d->s)
		FORWARD_IF_ERROR(close_shard(d, err));
	return open_shard(d, k, err);
}

static int sd_write(struct sink *s, const void *buf, size_t len, struct lines_error *err)
{
	struct sink_dir *d = (struct sink_dir *)s;
	const unsigned char *b = buf;
	while (len) {
		if (!d->s || d->left == 0) {
			size_t k = d->s ? d->cur + 1 : d->desc.s0;
			while (d->s && k < d->desc.s1 && d->desc.shards[k].data == 0) {
				/* shards of zero-size tensors only */
				FORWARD_IF_ERROR(next_shard(d, k, err));
				k++;
			}
			RETURN_ERROR_IF(k >= d->desc.s1, err, LINES_EIO, d->final, NULL,
			                "more bytes than the shards hold");
			FORWARD_IF_ERROR(next_shard(d, k, err));
			continue;
		}
		size_t n = len < d->left ? len : (size_t)d->left;
		FORWARD_IF_ERROR(sink_write(d->s, b, n, err));
		b += n;
		len -= n;
		d->left -= n;
	}
	return 0;
}

static int sd_finish(struct sink *s, struct lines_error *err)
{
	struct sink_dir *d = (struct sink_dir *)s;
	size_t k;
	if (d->desc.s0 < d->desc.s1 && !d->s && !d->files[d->desc.s0]) {
		/* nothing was written: no data at all */
		FORWARD_IF_ERROR(open_shard(d, d->desc.s0, err));
	}
	RETURN_ERROR_IF(d->left, err, LINES_EIO, d->final, NULL, "fewer bytes than the shards hold");
	/* the shards after the last byte hold zero-size tensors only */
	for (k = d->cur + 1; k < d->desc.s1; k++)
		FORWARD_IF_ERROR(next_shard(d, k, err));
	if (d->s)
		FORWARD_IF_ERROR(close_shard(d, err));
	return 0;
}

/* Write a file into the temporary directory: its bytes come from write(). */
static int put(struct sink_dir *d, const char *name,
               int (*write)(struct sink *f, const void *arg, struct lines_error *err),
               const void *arg, struct lines_error *err)
{
	struct sink *f = NULL;
	char *path = str_join_path(d->tmpdir, name);
	int rc;
	RETURN_ERROR_IF(!path, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	rc = sink_file_open(&f, path, err);
	free(path);
	if (rc == 0)
		rc = write(f, arg, err);
	if (rc == 0)
		rc = sink_commit(f, err);
	else if (f)
		sink_abort(f);
	sink_free(f);
	return rc;
}

static int write_text(struct sink *f, const void *text, struct lines_error *err)
{
	return sink_write(f, text, strlen(text), err);
}

/* Write a small file into the temporary directory. */
static int put_file(struct sink_dir *d, const char *name, const char *text, struct lines_error *err)
{
	return put(d, name, write_text, text, err);
}

/* A shard's manifest, written into the temporary directory as it is made. */
struct manifest_arg {
	const struct sink_dir_desc *desc;
	const struct manifest_file *mf;
};

static int write_manifest(struct sink *f, const void *arg, struct lines_error *err)
{
	const struct manifest_arg *a = arg;
	return a->desc->manifest(a->desc->arg, a->mf, f, err);
}

static int put_manifest(struct sink_dir *d, const char *name, const struct manifest_file *mf,
                        struct lines_error *err)
{
	struct manifest_arg a = {&d->desc, mf};
	return put(d, name, write_manifest, &a, err);
}

/* The text of model.safetensors.index.json. */
static int index_text(struct sink_dir *d, char **out, struct lines_error *err)
{
	const struct sink_dir_desc *p = &d->desc;
	json_t *root = json_object(), *meta = json_object(), *wm = json_object();
	char *text;

	json_object_set_new(meta, "total_size", json_integer((json_int_t)p->lay->out_data_bytes));
	json_object_set_new(root, "metadata", meta);
	for (size_t k = 0; k < p->nshards; k++)
		for (size_t i = p->shards[k].t0; i < p->shards[k].t1; i++)
			json_object_set_new(wm, p->lay->t[i].name, json_string(p->shards[k].name));
	json_object_set_new(root, "weight_map", wm);
	text = json_dumps(root, JSON_INDENT(2));
	json_decref(root);
	RETURN_ERROR_IF(!text, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	*out = text;
	return 0;
}

static int write_index(struct sink_dir *d, struct lines_error *err)
{
	char *text = NULL;
	int rc = index_text(d, &text, err);
	if (rc == 0)
		rc = put_file(d, "model.safetensors.index.json", text, err);
	free(text);
	return rc;
}

/*
 * A part: .lines-plan.json, the same text from every part of the plan.
 * One already in the output directory that differs (another plan, or
 * other statistics) is refused before anything moves.
 */
static int write_plan(struct sink_dir *d, struct lines_error *err)
{
	const struct sink_dir_desc *p = &d->desc;
	char *index = NULL, *readme = NULL, *text = NULL, *old = str_join_path(d->final, ".lines-plan.json");
	int rc = 0;
	if (!old)
		return lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
	if (p->nshards > 1)
		rc = index_text(d, &index, err);
	if (rc == 0 && p->readme)
		rc = p->readme(p->arg, &readme, err);
	if (rc == 0)
		rc = p->plan_text(p->arg, index, readme, &text, err);
	if (rc == 0) {
		FILE *f = fopen(old, "r");
		if (f) {
			size_t n = strlen(text);
			char *buf = malloc(n + 2);
			size_t got = buf ? fread(buf, 1, n + 1, f) : 0;
			if (!buf || got != n || memcmp(buf, text, n))
				rc = lines_errf(err, LINES_EUSAGE, d->final, NULL,
				                "holds parts written with other statistics, options or "
				                "paths (.lines-plan.json differs; README.md records the "
				                "paths as given): write every part with the same "
				                "arguments, or use another output directory");
			free(buf);
			fclose(f);
		}
	}
	if (rc == 0)
		rc = put_file(d, ".lines-plan.json", text, err);
	free(index), free(readme), free(text), free(old);
	return rc;
}

/* Is this a file of weights (or of lines'), not to be carried along? */
static int is_weight(const char *name)
{
	static const char *const ext[] = {".safetensors", ".safetensors.index.json", ".bin",
	                                  ".bin.index.json", ".pt", ".pth", ".ckpt", ".h5",
	                                  ".msgpack", ".gguf", ".onnx", ".zst", ".xxh128",
	                                  ".manifest.json", ".npz", ".pkl"};
	size_t n = strlen(name);
	/* the model card and the configuration are lines's own */
	if (name[0] == '.' || !strcmp(name, "README.md") || !strcmp(name, "lines_config.yml"))
		return 1;
	for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
		size_t e = strlen(ext[i]);
		if (n >= e && !strcmp(name + n - e, ext[i]))
			return 1;
	}
	return 0;
}

static int copy_file(struct sink_dir *d, const char *src, const char *name, struct lines_error *err)
{
	struct sink *f = NULL;
	char *path = str_join_path(d->tmpdir, name);
	unsigned char *buf = malloc(1 << 20);
	int fd = open(src, O_RDONLY | O_CLOEXEC), rc = 0;

	if (!path || !buf)
		rc = lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
	else if (fd < 0)
		rc = lines_errno(err, errno, src, "cannot open");
	else
		rc = sink_file_open(&f, path, err);
	while (rc == 0) {
		size_t got;
		int r = full_read(fd, buf, 1 << 20, &got);
		if (r < 0) {
			rc = lines_errno(err, -r, src, "cannot read");
			break;
		}
		if (got == 0)
			break;
		rc = sink_write(f, buf, got, err);
	}
	if (rc == 0 && f)
		rc = sink_commit(f, err);
	else if (f)
		sink_abort(f);
	sink_free(f);
	if (fd >= 0)
		close(fd);
	free(path);
	free(buf);
	return rc;
}

/* The keys of a layer count in config.json, as transformers' architectures
 * name it (the top level, and a multimodal model's text_config). */
static const char *const layer_keys[] = {"num_hidden_layers", "n_layer", "num_layers", "n_layers"};

/* Lists with one entry per layer (Qwen3's and Gemma 3's layer_types,
 * SmolLM3's no_rope_layers): taken at each block's source index. */
static const char *const per_layer_keys[] = {"layer_types", "no_rope_layers"};

static void set_layers(json_t *obj, long n, const long *src)
{
	json_int_t old = 0;
	for (size_t i = 0; json_is_object(obj) && i < sizeof(layer_keys) / sizeof(*layer_keys); i++)
		if (json_is_integer(json_object_get(obj, layer_keys[i]))) {
			if (!old)
				old = json_integer_value(json_object_get(obj, layer_keys[i]));
			json_object_set_new(obj, layer_keys[i], json_integer(n));
		}
	for (size_t i = 0; src && old > 0 && i < sizeof(per_layer_keys) / sizeof(*per_layer_keys);
	     i++) {
		json_t *a = json_object_get(obj, per_layer_keys[i]), *b;
		if (!json_is_array(a) || (json_int_t)json_array_size(a) != old || !(b = json_array()))
			continue;
		for (long j = 0; j < n; j++)
			json_array_append(b, json_array_get(a, src[j] < old ? (size_t)src[j] : 0));
		json_object_set_new(obj, per_layer_keys[i], b);
	}
}

/* The dtype key of a config (or its text_config) set to name: "dtype"
 * where newer transformers wrote that, "torch_dtype" where the config has
 * it, or (top level) is missing both. */
static void set_dtype(json_t *obj, const char *name, int top)
{
	int done = 0;
	if (!json_is_object(obj))
		return;
	if (json_object_get(obj, "dtype"))
		json_object_set_new(obj, "dtype", json_string(name)), done = 1;
	if (json_object_get(obj, "torch_dtype") || (top && !done))
		json_object_set_new(obj, "torch_dtype", json_string(name));
}

/* The base's config.json, changed: without its quantization_config for
 * dequantized weights, with the new layer count for a layer stack, with
 * the dtype that --dtype gave (the rest as it was, in its order). */
static int copy_config(struct sink_dir *d, const char *src, struct lines_error *err)
{
	json_error_t je;
	json_t *root = json_load_file(src, JSON_PRESERVE_ORDER, &je);
	char *text;
	int rc;
	if (!root && !d->desc.dequantized && d->desc.num_layers <= 0) {
		/* only the dtype to change: the run is not failed for that */
		lines_logf(d->desc.log, LINES_LOG_WARN, src, NULL,
		           "line %d: not valid JSON (%s); copied as it is, without the output's dtype",
		           je.line, je.text);
		return copy_file(d, src, "config.json", err);
	}
	RETURN_ERROR_IF(
	    !root, err, LINES_EFORMAT, src, NULL,
	    "line %d: not valid JSON (%s); it cannot be copied with %s", je.line, je.text,
	    d->desc.dequantized ? "out its quantization_config" : "its new layer count");
	if (d->desc.dequantized)
		json_object_del(root, "quantization_config");
	if (d->desc.num_layers > 0) {
		set_layers(root, d->desc.num_layers, d->desc.layer_src);
		set_layers(json_object_get(root, "text_config"), d->desc.num_layers,
		           d->desc.layer_src);
	}
	if (d->desc.torch_dtype) {
		set_dtype(root, d->desc.torch_dtype, 1);
		set_dtype(json_object_get(root, "text_config"), d->desc.torch_dtype, 0);
	}
	text = lines_json_text(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(root);
	RETURN_ERROR_IF(!text, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	rc = put_file(d, "config.json", text, err);
	free(text);
	if (rc == 0 && d->desc.dequantized)
		lines_logf(d->desc.log, LINES_LOG_NOTE, src, NULL,
		           "copied without its quantization_config: the weights are dequantized");
	if (rc == 0 && d->desc.num_layers > 0)
		lines_logf(d->desc.log, LINES_LOG_NOTE, src, NULL,
		           "copied with %ld layers (the slices' blocks)", d->desc.num_layers);
	if (rc == 0 && d->desc.torch_dtype)
		lines_logf(d->desc.log, LINES_LOG_NOTE, src, NULL, "copied with dtype %s (--dtype)",
		           d->desc.torch_dtype);
	return rc;
}

/* The small files of DIR: every one (WHICH 0), all but the tokenizer's
 * (1), or the tokenizer's only (2). */
static int carry_dir_files(struct sink_dir *d, const char *dir, int which, struct lines_error *err)
{
	const struct sink_dir_desc *p = &d->desc;
	DIR *dh;
	struct dirent *e;
	int rc = 0;

	if (!(dh = opendir(dir)))
		return lines_errno(err, errno, dir,
		                   which == 2 ? "cannot read the tokenizer source's directory"
		                              : "cannot read the base's directory");
	while (rc == 0 && (e = readdir(dh))) {
		struct stat st;
		int tok = output_is_tokenizer_file(e->d_name);
		if ((which == 1 && tok) || (which == 2 && !tok))
			continue;
		char *src = str_join_path(dir, e->d_name);
		if (!src) {
			rc = lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
			break;
		}
		if (!is_weight(e->d_name) && stat(src, &st) == 0 && S_ISREG(st.st_mode)) {
			if ((uint64_t)st.st_size > CARRY_MAX)
				lines_logf(p->log, LINES_LOG_NOTE, src, NULL,
				         "not copied: larger than %llu MiB, so not a small configuration file",
				         (unsigned long long)(CARRY_MAX >> 20));
			else if ((d->desc.dequantized || d->desc.num_layers > 0 || d->desc.torch_dtype) &&
			         !strcmp(e->d_name, "config.json"))
				rc = copy_config(d, src, err);
			else if ((rc = copy_file(d, src, e->d_name, err)) == 0)
				lines_logf(p->log, LINES_LOG_NOTE, src, NULL, "copied into the output directory");
		}
		free(src);
	}
	closedir(dh);
	return rc;
}

/* The base's small files, and the tokenizer source's tokenizer files. */
static int carry(struct sink_dir *d, struct lines_error *err)
{
	const char *tok = d->desc.tokenizer_from;
	int rc = 0;
	if (d->carry)
		rc = carry_dir_files(d, d->carry, tok ? 1 : 0, err);
	if (rc == 0 && tok)
		rc = carry_dir_files(d, tok, 2, err);
	return rc;
}

static int fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/*
 * The final directory existed (empty: output.c made sure), so it may be a
 * mount point or a symlink's target, which a rename cannot replace: the
 * files were written in a temporary directory inside it, on its file
 * system, and now move up one by one. A failure moves nothing more and
 * removes what moved, so the directory is left empty as it was.
 */
static int move_out(struct sink_dir *d, struct lines_error *err)
{
	DIR *dh = opendir(d->tmpdir);
	struct dirent *e;
	char **moved = NULL;
	size_t nmoved = 0;
	int rc = 0;

	RETURN_ERROR_IF(!dh, err, LINES_EIO, d->tmpdir, NULL, "cannot read the temporary directory");
	/* a part's .lines-plan.json first: another part that finds a file of
	 * this one in the directory finds the plan too (check_out_plan) */
	int plan_first = d->desc.part;
	while (rc == 0 && (plan_first || (e = readdir(dh)))) {
		char *from, *to, **m;
		const char *name = plan_first ? ".lines-plan.json" : e->d_name;
		if (!plan_first && (!strcmp(name, ".") || !strcmp(name, "..") ||
		                    (d->desc.part && !strcmp(name, ".lines-plan.json"))))
			continue;
		plan_first = 0;
		from = str_join_path(d->tmpdir, name);
		to = str_join_path(d->final, name);
		m = realloc(moved, (nmoved + 1) * sizeof(*moved));
		if (!from || !to || !m)
			rc = lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
		else if (moved = m, rename(from, to) < 0)
			rc = lines_errno(err, errno, to, "cannot move the output into place");
		else
			moved[nmoved++] = to, to = NULL;
		free(from), free(to);
	}
	closedir(dh);
	if (rc == 0 && fsync_path(d->final) < 0)
		rc = lines_errno(err, errno, d->final, "cannot sync");
	for (size_t i = 0; i < nmoved; i++) {
		if (rc < 0 && !d->desc.part) /* a part's files are complete: they stay */
			unlink(moved[i]);
		free(moved[i]);
	}
	free(moved);
	if (rc == 0)
		rmdir(d->tmpdir);
	return rc;
}

static int sd_commit(struct sink *s, struct lines_error *err)
{
	struct sink_dir *d = (struct sink_dir *)s;
	const struct sink_dir_desc *p = &d->desc;
	int rc = 0;

	for (size_t k = p->s0; rc == 0 && k < p->s1; k++) {
		const struct shard *sh = &p->shards[k];
		if ((rc = sink_commit(d->files[k], err)) < 0)
			break;
		if (!p->checksums)
			continue;
		char line[256], name[128];
		struct manifest_file mf = {sh->name, &d->digest[k], sh->t0, sh->t1, sh->off0,
		                           d->hlen[k], d->hhash[k], sh->data};
		sidecar_line(line, sizeof(line), &d->digest[k], sh->name);
		snprintf(name, sizeof(name), "%s.xxh128", sh->name);
		if ((rc = put_file(d, name, line, err)) < 0)
			break;
		snprintf(name, sizeof(name), "%s.manifest.json", sh->name);
		rc = put_manifest(d, name, &mf, err);
	}
	if (rc == 0 && p->part)
		rc = write_plan(d, err);
	if (rc == 0 && p->nshards > 1 && !p->files_only && !p->part)
		rc = write_index(d, err);
	if (rc == 0 && p->readme && !p->part) {
		char *text = NULL;
		if ((rc = p->readme(p->arg, &text, err)) == 0)
			rc = put_file(d, "README.md", text, err);
		free(text);
	}
	if (rc == 0 && p->config_yaml && !p->part)
		rc = put_file(d, "lines_config.yml", p->config_yaml, err);
	if (rc == 0 && !p->files_only)
		rc = carry(d, err);
	if (rc == 0 && (rc = fsync_path(d->tmpdir)) < 0)
		rc = lines_errno(err, -rc, d->tmpdir, "cannot sync");
	if (rc == 0 && d->inside) {
		rc = move_out(d, err);
	} else if (rc == 0) {
		if (rename(d->tmpdir, d->final) < 0)
			rc = lines_errno(err, errno, d->final,
			                 "cannot rename the temporary directory into place");
	}
	if (rc == 0) {
		char *c = strdup(d->final);
		if (c)
			fsync_path(dirname(c));
		free(c);
		free(d->tmpdir);
		d->tmpdir = NULL;
	}
	if (rc == 0 && d->lock_fd >= 0) {
		close(d->lock_fd);
		d->lock_fd = -1;
	}
	return rc;
}

void sink_dir_empty(const char *path)
{
	DIR *dh = opendir(path);
	struct dirent *e;
	if (!dh)
		return;
	while ((e = readdir(dh)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			char *f = str_join_path(path, e->d_name);
			if (f)
				unlink(f);
			free(f);
		}
	closedir(dh);
}

/* Remove the temporary directory and everything in it (all ours). */
static void sd_abort(struct sink *s)
{
	struct sink_dir *d = (struct sink_dir *)s;
	DIR *dh;
	struct dirent *e;

	if (d->s) {
		sink_abort(d->s);
		sink_free(d->s);
		d->s = NULL;
	}
	for (size_t k = 0; k < d->desc.nshards; k++)
		if (d->files[k]) {
			sink_abort(d->files[k]);
			sink_free(d->files[k]);
			d->files[k] = NULL;
		}
	if (!d->tmpdir)
		return;
	if ((dh = opendir(d->tmpdir))) {
		while ((e = readdir(dh)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
				char *f = str_join_path(d->tmpdir, e->d_name);
				if (f)
					unlink(f);
				free(f);
			}
		closedir(dh);
	}
	rmdir(d->tmpdir);
	free(d->tmpdir);
	d->tmpdir = NULL;
	if (d->lock_fd >= 0) {
		close(d->lock_fd);
		d->lock_fd = -1;
	}
}

static void sd_free(struct sink *s)
{
	struct sink_dir *d = (struct sink_dir *)s;
	sd_abort(s); /* nothing left to remove after a commit */
	for (size_t k = 0; k < d->desc.nshards; k++)
		sink_free(d->files[k]);
	free(d->files);
	free(d->digest);
	free(d->hhash);
	free(d->hlen);
	free(d->final);
	free(d->carry);
	free(d);
}

static const struct sink_ops sink_dir_ops = {sd_write, sd_finish, sd_commit, sd_abort, sd_free};

/*
 * A part's temporary directory: DIR/.lines-part-K, made with DIR if need
 * be (parts start at once: either may make it). Its lock keeps a second
 * run of the same part waiting; what a killed run left in it is removed.
 * A lock taken on a directory that its holder removed meanwhile is let
 * go, and the new one taken.
 */
static int part_tmpdir(struct sink_dir *d, char *tmpl, size_t n, struct lines_error *err)
{
	mode_t mode = 0777 & ~sink_umask();
	if (mkdir(d->final, mode) < 0 && errno != EEXIST)
		return lines_errno(err, errno, d->final, "cannot create the output directory");
	snprintf(tmpl, n, "%s/.lines-part-%u", d->final, d->desc.part_k);
	for (;;) {
		struct stat a, b;
		if (mkdir(tmpl, 0700) < 0 && errno != EEXIST)
			return lines_errno(err, errno, tmpl, "cannot create a temporary directory");
		int fd = open(tmpl, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0) {
			if (errno == ENOENT)
				continue;
			return lines_errno(err, errno, tmpl, "cannot open");
		}
		int locked = flock(fd, LOCK_EX | LOCK_NB) == 0, e = locked ? 0 : errno;
		if (!locked && e == EWOULDBLOCK) {
			lines_logf(d->desc.log, LINES_LOG_NOTE, tmpl, NULL,
			           "another run of this part is writing: waiting for it");
			while (!(locked = flock(fd, LOCK_EX) == 0) && (e = errno) == EINTR &&
			       !lines_canceled())
				;
		}
		if (!locked) { /* stopped while waiting: the other run's files are its own */
			close(fd);
			RETURN_ERROR_IF(lines_canceled(), err, LINES_ECANCELED, NULL, NULL, "interrupted");
			return lines_errno(err, e, tmpl, "cannot lock");
		}
		if (fstat(fd, &a) == 0 && stat(tmpl, &b) == 0 && a.st_dev == b.st_dev &&
		    a.st_ino == b.st_ino) {
			d->lock_fd = fd;
			break;
		}
		close(fd);
		RETURN_ERROR_IF(lines_canceled(), err, LINES_ECANCELED, NULL, NULL, "interrupted");
	}
	sink_dir_empty(tmpl); /* a killed run's */
	return 0;
}

int sink_dir_open(struct sink **out, const struct sink_dir_desc *p, struct lines_error *err)
{
	struct sink_dir *d = calloc(1, sizeof(*d));
	char *copy = NULL, *parent, *base, *tmpl = NULL;
	size_t n;

	*out = NULL;
	RETURN_ERROR_IF(!d, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	d->desc = *p;
	d->desc.carry_from = NULL;
	d->lock_fd = -1;
	if (!p->part) {
		d->desc.s0 = 0;
		d->desc.s1 = p->nshards;
	}
	if (p->carry_from && !(d->carry = strdup(p->carry_from))) {
		free(d);
		return lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
	}
	d->final = strdup(p->path);
	d->files = calloc(p->nshards, sizeof(*d->files));
	d->digest = calloc(p->nshards, sizeof(*d->digest));
	d->hhash = calloc(p->nshards, sizeof(*d->hhash));
	d->hlen = calloc(p->nshards, sizeof(*d->hlen));
	copy = d->final ? strdup(d->final) : NULL;
	if (!d->final || !d->files || !d->digest || !d->hhash || !d->hlen || !copy)
		goto nomem;
	/* .NAME.lines-XXXXXX beside the final directory, or .lines-XXXXXX in
	 * it when it exists (empty; maybe a mount point or a symlink's target) */
	struct stat fst;
	d->inside = stat(d->final, &fst) == 0 && S_ISDIR(fst.st_mode);
	base = strdup(basename(copy));
	free(copy);
	copy = strdup(d->final);
	parent = copy ? dirname(copy) : NULL;
	if (!base || !parent) {
		free(base);
		goto nomem;
	}
	n = strlen(d->final) + strlen(parent) + strlen(base) + 32;
	tmpl = malloc(n);
	if (!tmpl) {
		free(base);
		goto nomem;
	}
	if (p->part) {
		free(base);
		free(copy);
		copy = NULL;
		int rc = part_tmpdir(d, tmpl, n, err);
		if (rc < 0) {
			free(tmpl);
			free(d->files), free(d->digest), free(d->hhash), free(d->hlen), free(d->final),
				free(d->carry), free(d);
			return rc;
		}
		d->inside = 1;
		d->tmpdir = tmpl;
		d->cur = p->nshards;
		d->base.ops = &sink_dir_ops;
		d->base.name = d->final;
		*out = &d->base;
		return 0;
	}
	if (d->inside)
		snprintf(tmpl, n, "%s/.lines-XXXXXX", d->final);
	else
		snprintf(tmpl, n, "%s/.%s.lines-XXXXXX", parent, base);
	free(base);
	free(copy);
	copy = NULL;
	if (!mkdtemp(tmpl)) {
		int e = errno;
		free(tmpl);
		free(d->files), free(d->digest), free(d->hhash), free(d->hlen), free(d->final), free(d->carry), free(d);
		return lines_errno(err, e, p->path, "cannot create a temporary directory next to it");
	}
	d->tmpdir = tmpl;
	/* mkdtemp makes it 0700; a new output directory gets what the umask
	 * gives, as mkdir(1) would */
	if (!d->inside)
		chmod(tmpl, 0777 & ~sink_umask());
	d->cur = p->nshards;
	d->base.ops = &sink_dir_ops;
	d->base.name = d->final;
	*out = &d->base;
	return 0;
nomem:
	free(copy);
	free(d->files), free(d->digest), free(d->hhash), free(d->hlen), free(d->final), free(d->carry), free(d);
	return lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
}
