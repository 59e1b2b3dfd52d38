/*
 * ckpt.c -- open a checkpoint and read its headers.
 *
 * Only the header is read here (at most 100 MB of JSON, never tensor
 * data). The descriptor stays open so that the file the merge reads is
 * the file that was checked, even if the path is replaced meanwhile.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libgen.h>

#include <jansson.h>

#include "ckpt.h"
#include "fmt_gguf.h"
#include "hub.h"
#include "stream.h"
#include "strutil.h"

/* Read n bytes at off: pread for a file, in order for a stream (whose
 * first bytes may have been read already to tell its format). */
static int hdr_read(struct ckpt_file *f, void *buf, size_t n, uint64_t off, struct lines_error *err)
{
	int rc;
	if (f->zs) {
		if (off < f->npeek) { /* the bytes read to tell the format */
			size_t k = f->npeek - off < n ? (size_t)(f->npeek - off) : n;
			memcpy(buf, f->peek + off, k);
			buf = (unsigned char *)buf + k, n -= k, off += k;
			if (n == 0)
				return 0;
		}
		rc = zs_read(f->zs, buf, n, err);
		if (rc < 0 && off < 8 && f->fmt == &ckpt_fmt_safetensors && err &&
		    strstr(err->msg, "ends early"))
			/* not even the length: say it like a file would */
			return lines_errf(err, LINES_EFORMAT, f->path, NULL,
			                  "too short to be safetensors (fewer than 8 bytes)");
		return rc;
	}
	rc = full_pread(f->fd, buf, n, off);
	if (rc < 0)
		return lines_errno(err, -rc, f->path, "cannot read the header");
	return 0;
}

/* The format of the file: GGUF when it starts with "GGUF" (safetensors
 * starts with a little-endian length whose top bytes are 0), else
 * safetensors. A stream's first four bytes are kept for the reader. */
static int read_header(struct ckpt_file *f, struct lines_error *err)
{
	unsigned char m[4];
	f->fmt = &ckpt_fmt_safetensors;
	if (f->zs) {
		struct lines_error e2;
		int rc = zs_read(f->zs, m, 4, &e2);
		if (rc < 0) {
			if (strstr(e2.msg, "ends early")) /* fewer than 4 bytes */
				return lines_errf(err, LINES_EFORMAT, f->path, NULL,
				                  "too short to be safetensors (fewer than 8 bytes)");
			if (err)
				*err = e2;
			return rc;
		}
		memcpy(f->peek, m, 4);
		f->npeek = 4;
	} else if (f->size >= 4 && full_pread(f->fd, m, 4, 0) == 0) {
		f->npeek = 0;
	} else {
		memset(m, 0, 4);
	}
	if (!memcmp(m, "GGUF", 4))
		f->fmt = &ckpt_fmt_gguf;
	else if (str_ends_with(f->path, ".gguf") || str_ends_with(f->path, ".gguf.zst"))
		/* not read as safetensors: its "header length" would be nonsense */
		return lines_errf(err, LINES_EFORMAT, f->path, NULL,
		                  "named .gguf, but the magic is not \"GGUF\" (the file starts "
		                  "with %02x %02x %02x %02x)",
		                  m[0], m[1], m[2], m[3]);
	return f->fmt->open(f, hdr_read, err);
}

static int open_file(struct ckpt_file *f, const char *path, struct lines_error *err)
{
	struct stat st;

	f->fd = -1;
	f->path = strdup(path);
	RETURN_ERROR_IF(!f->path, err, LINES_ENOMEM, path, NULL, "out of memory");
	if (!strcmp(path, "-")) {
		free(f->path);
		f->path = strdup("(standard input)");
		RETURN_ERROR_IF(!f->path, err, LINES_ENOMEM, path, NULL, "out of memory");
		f->fd = STDIN_FILENO;
		f->size = UINT64_MAX;
		if (fstat(f->fd, &st) == 0)
			f->dev = st.st_dev, f->ino = st.st_ino;
		FORWARD_IF_ERROR(zs_open(&f->zs, f->fd, 0, 0, f->path, err));
		return read_header(f, err);
	}
	f->own_fd = 1;
	/* O_NONBLOCK: a FIFO with no writer is refused below, not waited on */
	f->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (f->fd < 0)
		return lines_errno(err, errno, path, "cannot open");
	if (fstat(f->fd, &st) < 0)
		return lines_errno(err, errno, path, "cannot stat");
	RETURN_ERROR_IF(S_ISDIR(st.st_mode), err, LINES_EUNSUPPORTED, path, NULL, "is a directory");
	RETURN_ERROR_IF(!S_ISREG(st.st_mode), err, LINES_EUNSUPPORTED, path, NULL,
	                "is not a regular file");
	if (fcntl(f->fd, F_SETFL, fcntl(f->fd, F_GETFL) & ~O_NONBLOCK) < 0)
		return lines_errno(err, errno, path, "cannot open");
	f->size = (uint64_t)st.st_size;
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	f->mtime = st.st_mtim;
	f->disk_size = (uint64_t)st.st_size;
	if (str_ends_with(path, ".zst")) {
		f->size = UINT64_MAX; /* of the decompressed bytes: not known */
		FORWARD_IF_ERROR(zs_open(&f->zs, f->fd, 1, 1, f->path, err));
	}
	return read_header(f, err);
}

int ckpt_spill(struct ckpt_file *f, struct lines_error *err)
{
	const char *dir = getenv("TMPDIR");
	uint64_t total = f->data_end, done = 0;
	unsigned char *buf = NULL;
	int fd, rc = 0;

	if (!dir || !*dir)
		dir = "/tmp";
	RETURN_ERROR_IF(!f->zs || !zs_restartable(f->zs), err, LINES_EUNSUPPORTED, f->path, NULL,
	                "cannot be decompressed to a temporary file");
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		return lines_errno(err, errno, dir, "cannot create a temporary file to decompress %s",
		                   f->path);
	buf = malloc(1 << 20);
	if (!buf)
		rc = lines_errf(err, LINES_ENOMEM, f->path, NULL, "out of memory");
	if (rc == 0)
		rc = zs_rewind(f->zs, err);
	while (rc == 0 && done < total) {
		size_t n = total - done < (1u << 20) ? (size_t)(total - done) : (1u << 20);
		if ((rc = zs_read(f->zs, buf, n, err)) < 0)
			break;
		if ((rc = full_write(fd, buf, n)) < 0) {
			rc = lines_errno(err, -rc, dir, "cannot write the decompressed copy of %s", f->path);
			break;
		}
		done += n;
	}
	if (rc == 0 && (rc = zs_expect_end(f->zs, err)) > 0)
		rc = 0;
	free(buf);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	zs_close(f->zs);
	f->zs = NULL;
	if (f->own_fd)
		close(f->fd);
	f->fd = fd;
	f->own_fd = 1;
	f->size = total;
	f->spilled = 1; /* read in full already: later changes cannot matter */
	return 0;
}

/*
 * The sort carries each name beside its index, so the comparison needs no
 * context: qsort has no argument for one, a file-static pointer would race
 * when two threads open checkpoints, and qsort_r is not portable.
 */
struct name_ix {
	const char *name;
	size_t ix;
};

static int cmp_name(const void *a, const void *b)
{
	const struct name_ix *x = a, *y = b;
	return strcmp(x->name, y->name);
}

/* The stack called name[0, len) (added when new), with block in it. */
static int stack_of(struct ckpt *c, const char *name, size_t len, long block,
                    struct lines_error *err)
{
	size_t i;
	for (i = 0; i < c->nstacks; i++)
		if (strlen(c->stacks[i].name) == len && !memcmp(c->stacks[i].name, name, len))
			break;
	if (i == c->nstacks) {
		struct ckpt_stack *s = realloc(c->stacks, (c->nstacks + 1) * sizeof(*s));
		RETURN_ERROR_IF(!s, err, LINES_ENOMEM, c->path, NULL, "out of memory");
		c->stacks = s;
		s[i].name = malloc(len + 1);
		RETURN_ERROR_IF(!s[i].name, err, LINES_ENOMEM, c->path, NULL, "out of memory");
		memcpy(s[i].name, name, len);
		s[i].name[len] = '\0';
		s[i].num_layers = 0;
		c->nstacks++;
	}
	if (block + 1 > c->stacks[i].num_layers)
		c->stacks[i].num_layers = block + 1;
	return (int)i;
}

/* The block and stack of every tensor of c->t (names set), the depth,
 * and the table by name; a name twice is an error. */
static int index_names(struct ckpt *c, const struct layers *ly, struct lines_error *err)
{
	struct name_ix *sorted;

	for (size_t i = 0; i < c->ntensors; i++) {
		struct ckpt_tensor *t = &c->t[i];
		t->block = -1;
		t->stack = -1;
		if (ly) {
			size_t so, sl;
			int rc = layers_index(ly, t->name, &t->block, &so, &sl, err);
			if (rc == 0 && t->block >= 0)
				rc = t->stack = stack_of(c, t->name + so, sl, t->block, err);
			if (rc < 0) {
				if (err)
					snprintf(err->file, sizeof(err->file), "%s",
					         c->files[t->file].path);
				return rc;
			}
		}
		if (t->block + 1 > c->num_layers)
			c->num_layers = t->block + 1;
		c->by_name[i] = i;
	}
	/* GGUF says how many blocks it has (<arch>.block_count): the stack
	 * blk has that many, even when the last ones hold no tensor */
	for (size_t f = 0; f < c->nfiles && !c->borrowed; f++)
		for (size_t s = 0; c->files[f].num_blocks > 0 && s < c->nstacks; s++)
			if (!strcmp(c->stacks[s].name, "blk") &&
			    c->stacks[s].num_layers < c->files[f].num_blocks) {
				c->stacks[s].num_layers = c->files[f].num_blocks;
				if (c->num_layers < c->files[f].num_blocks)
					c->num_layers = c->files[f].num_blocks;
			}
	sorted = calloc(c->ntensors ? c->ntensors : 1, sizeof(*sorted));
	RETURN_ERROR_IF(!sorted, err, LINES_ENOMEM, c->path, NULL, "out of memory");
	for (size_t i = 0; i < c->ntensors; i++)
		sorted[i] = (struct name_ix){c->t[i].name, i};
	qsort(sorted, c->ntensors, sizeof(*sorted), cmp_name);
	for (size_t i = 0; i < c->ntensors; i++)
		c->by_name[i] = sorted[i].ix;
	free(sorted);
	for (size_t i = 1; i < c->ntensors; i++)
		RETURN_ERROR_IF(
		    !strcmp(c->t[c->by_name[i]].name, c->t[c->by_name[i - 1]].name), err,
		    LINES_EFORMAT,
		    c->nfiles > 1 && !c->borrowed
		        ? c->files[c->t[c->by_name[i]].file > c->t[c->by_name[i - 1]].file
		                       ? c->t[c->by_name[i]].file
		                       : c->t[c->by_name[i - 1]].file]
		              .path
		        : c->path,
		    c->t[c->by_name[i]].name, "tensor appears twice");
	return 0;
}

static int build_index(struct ckpt *c, const struct layers *ly, struct lines_error *err)
{
	size_t n = 0;

	for (size_t f = 0; f < c->nfiles; f++)
		n += c->files[f].nentries;
	c->t = calloc(n ? n : 1, sizeof(*c->t));
	c->by_name = calloc(n ? n : 1, sizeof(*c->by_name));
	RETURN_ERROR_IF(!c->t || !c->by_name, err, LINES_ENOMEM, c->path, NULL, "out of memory");
	for (size_t f = 0; f < c->nfiles; f++) {
		const struct ckpt_file *cf = &c->files[f];
		for (size_t i = 0; i < cf->nentries; i++) {
			const struct ckpt_entry *e = &cf->entries[i];
			struct ckpt_tensor *t = &c->t[c->ntensors++];
			t->name = e->name;
			t->dtype = e->dtype;
			t->rank = e->rank;
			t->shape = e->shape;
			t->nelem = e->nelem;
			t->file = (unsigned)f;
			t->off = e->off;
			t->nbytes = e->nbytes;
		}
		c->data_bytes += cf->data_end - cf->data_start;
		c->header_bytes += cf->data_start;
	}
	return index_names(c, ly, err);
}

/* ---- Hugging Face sharded checkpoints ------------------------------------------------ */

/*
 * An index file: {"metadata": {"total_size": N}, "weight_map": {tensor:
 * shard}}. Every shard is opened and validated like any file, and must
 * hold exactly the tensors the index gives it; shard names are plain file
 * names in the index's directory (an index from a stranger does not get
 * to open ../../anything).
 */
static int open_index(struct ckpt *c, const char *index, struct lines_error *err)
{
	json_error_t je;
	json_t *root = NULL, *wm, *meta, *shards = NULL;
	struct stat st;
	const char *key;
	json_t *val;
	char *dir = NULL, *dcopy = strdup(index);
	int rc = 0;

	RETURN_ERROR_IF(!dcopy, err, LINES_ENOMEM, index, NULL, "out of memory");
	dir = strdup(dirname(dcopy));
	free(dcopy);
	RETURN_ERROR_IF(!dir, err, LINES_ENOMEM, index, NULL, "out of memory");
	if (stat(index, &st) == 0 && !S_ISREG(st.st_mode)) { /* a FIFO would block */
		rc = lines_errf(err, LINES_EFORMAT, index, NULL, "is not a regular file");
		goto out;
	}
	root = json_load_file(index, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		free(dir);
		return lines_errf(err, LINES_EFORMAT, index, NULL,
		                  "not a valid index file: %s (line %d)", je.text, je.line);
	}
	wm = json_object_get(root, "weight_map");
	meta = json_object_get(root, "metadata");
	if (!json_is_object(root) || !json_is_object(wm)) {
		rc = lines_errf(err, LINES_EFORMAT, index, NULL, "has no \"weight_map\" object");
		goto out;
	}
	if (json_object_size(wm) == 0) { /* found by fuzzing: no shard to open */
		rc = lines_errf(err, LINES_EFORMAT, index, NULL, "maps no tensor to any shard");
		goto out;
	}
	/* the distinct shard names, in order of first appearance */
	shards = json_array();
	json_object_foreach(wm, key, val)
	{
		const char *s = json_string_value(val);
		int seen = 0;
		if (!json_is_string(val) || !*s || strchr(s, '/') || !strcmp(s, ".") || !strcmp(s, "..")) {
			rc = lines_errf(err, LINES_EFORMAT, index, key,
			                "the shard it maps to is not a file name in the index's directory");
			goto out;
		}
		for (size_t i = 0; i < json_array_size(shards) && !seen; i++)
			seen = !strcmp(json_string_value(json_array_get(shards, i)), s);
		if (!seen)
			json_array_append_new(shards, json_string(s));
	}
	c->files = calloc(json_array_size(shards) ? json_array_size(shards) : 1, sizeof(*c->files));
	if (!c->files) {
		rc = lines_errf(err, LINES_ENOMEM, index, NULL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < json_array_size(shards); i++) {
		const char *s = json_string_value(json_array_get(shards, i));
		char *path = malloc(strlen(dir) + strlen(s) + 2);
		if (!path) {
			rc = lines_errf(err, LINES_ENOMEM, index, NULL, "out of memory");
			goto out;
		}
		sprintf(path, "%s/%s", dir, s);
		c->nfiles++;
		rc = open_file(&c->files[i], path, err);
		free(path);
		if (rc < 0)
			goto out;
		/* the shard holds exactly what the index says */
		const struct ckpt_file *h = &c->files[i];
		for (size_t t = 0; t < h->nentries; t++) {
			json_t *m = json_object_get(wm, h->entries[t].name);
			if (!m || strcmp(json_string_value(m), s)) {
				rc = lines_errf(err, LINES_EFORMAT, c->files[i].path, h->entries[t].name,
				                m ? "the index maps this tensor to %s" : "not in the index %s",
				                m ? json_string_value(m) : index);
				goto out;
			}
		}
	}
	json_object_foreach(wm, key, val)
	{
		size_t found = 0;
		for (size_t i = 0; i < c->nfiles && !found; i++)
			if (!strcmp(c->files[i].path + strlen(dir) + 1, json_string_value(val)))
				for (size_t t = 0; t < c->files[i].nentries && !found; t++)
					found = !strcmp(c->files[i].entries[t].name, key);
		if (!found) {
			rc = lines_errf(err, LINES_EFORMAT, index, key, "the index maps it to %s, which does "
			                                                "not hold it",
			                json_string_value(val));
			goto out;
		}
	}
	if (json_is_object(meta) && json_object_get(meta, "total_size")) {
		json_t *ts = json_object_get(meta, "total_size");
		uint64_t total = 0, files = 0;
		double v = json_is_number(ts) ? json_number_value(ts) : -1.0;
		for (size_t i = 0; i < c->nfiles; i++) {
			total += c->files[i].data_end - c->files[i].data_start;
			files += c->files[i].disk_size;
		}
		/* transformers ignores total_size; others write it as a float, or
		 * as the size of the shard files (mlx-lm): taken, with a note */
		if (json_is_real(ts) && v == (double)total)
			snprintf(c->note, sizeof(c->note),
			         "metadata.total_size is a float (%.17g); taken as %llu", v,
			         (unsigned long long)total);
		else if (v == (double)files && files != total)
			snprintf(c->note, sizeof(c->note),
			         "metadata.total_size %.17g is the size of the shard files, not of the "
			         "tensors (%llu bytes), as mlx-lm writes it; accepted",
			         v, (unsigned long long)total);
		else if (!json_is_integer(ts) || (uint64_t)json_integer_value(ts) != total) {
			if (json_is_number(ts))
				rc = lines_errf(err, LINES_EFORMAT, index, NULL,
				                "metadata.total_size is %.17g, not %llu, the bytes of the "
				                "tensors of its shards",
				                v, (unsigned long long)total);
			else
				rc = lines_errf(err, LINES_EFORMAT, index, NULL,
				                "metadata.total_size is not a number (the tensors of its "
				                "shards hold %llu bytes)",
				                (unsigned long long)total);
			goto out;
		}
	}
out:
	json_decref(shards);
	json_decref(root);
	free(dir);
	return rc;
}

/* ---- llama.cpp's split GGUF files ------------------------------------------------------ */

/*
 * files[0] is a GGUF file with split.* keys (gguf-split, or lines'
 * --shard-size): its name is PREFIX-0000i-of-0000N.gguf, and the set is
 * PREFIX-00001-of-0000N.gguf ... PREFIX-0000N-of-0000N.gguf, read as one
 * checkpoint in that order (the first holds the metadata, as llama.cpp
 * writes it). Every file must be there, be GGUF, say it is split.no k of
 * the same split.count, and give the same split.tensors.count, which is
 * the number of tensors of the whole set; a tensor in two files is an
 * error of the second (index_names).
 */
static int open_gguf_split(struct ckpt *c, const char *path, struct lines_error *err)
{
	struct gguf_split s0, sk;
	size_t len = strlen(path);
	unsigned no, count;
	char tail[32];
	int n = -1;

	FORWARD_IF_ERROR(gguf_split_of(&c->files[0], &s0, err));
	if (s0.count <= 1 && s0.no == 0)
		return 0;
	RETURN_ERROR_IF(
	    c->files[0].zs, err, LINES_EUNSUPPORTED, c->files[0].path, NULL,
	    "is split file %llu of %llu of a GGUF model: a split model is read from its "
	    "files, not from a stream",
	    (unsigned long long)s0.no + 1, (unsigned long long)s0.count);
	/* -00001-of-00003.gguf: 20 bytes */
	if (len > 20 && sscanf(path + len - 20, "-%5u-of-%5u.gguf%n", &no, &count, &n) == 2 &&
	    n == 20)
		snprintf(tail, sizeof(tail), "-%05u-of-%05u.gguf", no, count);
	RETURN_ERROR_IF(n != 20 || strcmp(tail, path + len - 20), err, LINES_EFORMAT, path, NULL,
	                "is split file %llu of %llu (split.no, split.count) but is not named "
	                "NAME-%05llu-of-%05llu.gguf: the other files cannot be found",
	                (unsigned long long)s0.no + 1, (unsigned long long)s0.count,
	                (unsigned long long)s0.no + 1, (unsigned long long)s0.count);
	RETURN_ERROR_IF(no != s0.no + 1 || count != s0.count, err, LINES_EFORMAT, path, NULL,
	                "is named split file %u of %u but its split.no and split.count say file "
	                "%llu of %llu",
	                no, count, (unsigned long long)s0.no + 1, (unsigned long long)s0.count);
	struct ckpt_file *files = realloc(c->files, count * sizeof(*files));
	RETURN_ERROR_IF(!files, err, LINES_ENOMEM, path, NULL, "out of memory");
	c->files = files;
	memset(files + 1, 0, (count - 1) * sizeof(*files));
	for (size_t k = 1; k < count; k++)
		files[k].fd = -1;
	if (no != 1) { /* the given file in its place */
		struct ckpt_file t = files[0];
		files[0] = files[no - 1];
		files[no - 1] = t;
	}
	c->nfiles = count;
	char *name = malloc(len + 32);
	RETURN_ERROR_IF(!name, err, LINES_ENOMEM, path, NULL, "out of memory");
	size_t ntensors = 0;
	int rc = 0;
	for (unsigned k = 0; k < count && rc == 0; k++) {
		struct stat st;
		memcpy(name, path, len - 20);
		snprintf(name + len - 20, 52, "-%05u-of-%05u.gguf", k + 1, count);
		if (k + 1 != no) {
			if (stat(name, &st) != 0) {
				rc = lines_errf(err, LINES_EFORMAT, path, NULL,
				                "split file %u of %u (%s) is missing", k + 1, count,
				                name);
				break;
			}
			if ((rc = open_file(&files[k], name, err)) < 0)
				break;
		}
		if (files[k].fmt != &ckpt_fmt_gguf) {
			rc = lines_errf(err, LINES_EFORMAT, name, NULL,
			                "is not GGUF, but split file %u of %u of %s", k + 1, count,
			                path);
			break;
		}
		if ((rc = gguf_split_of(&files[k], &sk, err)) < 0)
			break;
		if (sk.count == 0)
			rc = lines_errf(
			    err, LINES_EFORMAT, name, NULL,
			    "has no split.* keys, but is named split file %u of %u of %s", k + 1,
			    count, path);
		else if (sk.count != count)
			rc = lines_errf(err, LINES_EFORMAT, name, NULL,
			                "split.count is %llu, but %s says %u",
			                (unsigned long long)sk.count, path, count);
		else if (sk.no != k)
			rc = lines_errf(
			    err, LINES_EFORMAT, name, NULL,
			    "split.no is %llu, but the file is split file %u of %u (split.no "
			    "%u)",
			    (unsigned long long)sk.no, k + 1, count, k);
		else if (sk.tensors != s0.tensors)
			rc = lines_errf(err, LINES_EFORMAT, name, NULL,
			                "split.tensors.count is %llu, but %s says %llu",
			                (unsigned long long)sk.tensors, path,
			                (unsigned long long)s0.tensors);
		ntensors += files[k].nentries;
	}
	if (rc == 0 && ntensors != s0.tensors)
		rc = lines_errf(
		    err, LINES_EFORMAT, path, NULL,
		    "split.tensors.count is %llu, but the %u split files hold %zu tensors",
		    (unsigned long long)s0.tensors, count, ntensors);
	free(name);
	return rc;
}

static int is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int open_ckpt(struct ckpt **out, const char *path, const struct layers *ly, int one_file,
                     struct lines_error *err)
{
	struct ckpt *c = calloc(1, sizeof(*c));
	char *found = NULL;
	int rc;

	*out = NULL;
	RETURN_ERROR_IF(!c, err, LINES_ENOMEM, path, NULL, "out of memory");
	/* org/name[@rev] that is no file: the local Hugging Face cache */
	struct stat hs;
	if (strcmp(path, "-") && stat(path, &hs) != 0 && (hub_is_id(path) || hub_is_lora(path))) {
		char *snap = NULL;
		rc = hub_is_lora(path) ? lines_errf(err, LINES_EUNSUPPORTED, path, NULL,
		                                    "a model with a LoRA adapter (model+lora) is not "
		                                    "supported: merge the adapter into the model first")
		                       : hub_resolve(path, &snap, err);
		if (rc < 0) {
			free(c);
			return rc;
		}
		snprintf(c->note, sizeof(c->note), "%s is read from the Hugging Face cache: %s", path,
		         snap);
		c->hub = snap;
		path = snap;
	}
	c->path = strdup(strcmp(path, "-") ? path : "(standard input)");
	if (!c->path) {
		ckpt_close(c);
		return lines_errf(err, LINES_ENOMEM, path, NULL, "out of memory");
	}
	/* a directory: its single file, or its index, as transformers looks
	 * for them (model.safetensors first) */
	if (strcmp(path, "-") && is_dir(path)) {
		static const char *const names[] = {"model.safetensors", "model.safetensors.index.json"};
		int dl = (int)strlen(path);
		while (dl > 1 && path[dl - 1] == '/') /* dir/ and dir name the same files */
			dl--;
		for (size_t i = 0; i < 2; i++) {
			char *p = malloc((size_t)dl + strlen(names[i]) + 2);
			struct stat st;
			if (!p)
				break;
			sprintf(p, "%.*s/%s", dl, path, names[i]);
			if (stat(p, &st) == 0 && !found) {
				found = p;
				continue;
			}
			if (stat(p, &st) == 0 && found)
				snprintf(c->note, sizeof(c->note),
				         "holds both model.safetensors and model.safetensors.index.json; "
				         "reading model.safetensors, as transformers does");
			free(p);
		}
		c->dir = strndup(path, (size_t)dl);
		if (!found) {
			ckpt_close(c);
			return lines_errf(err, LINES_EFORMAT, path, NULL,
			                  "holds neither model.safetensors nor model.safetensors.index.json");
		}
		path = found;
	}
	if (str_ends_with(path, ".index.json")) {
		if (!c->dir) {
			char *d = strdup(path);
			c->dir = d ? strdup(dirname(d)) : NULL;
			free(d);
		}
		rc = open_index(c, path, err);
	} else {
		c->files = calloc(1, sizeof(*c->files));
		if (!c->files) {
			free(found);
			ckpt_close(c);
			return lines_errf(err, LINES_ENOMEM, path, NULL, "out of memory");
		}
		c->nfiles = 1;
		rc = open_file(&c->files[0], path, err);
		if (rc == 0 && !one_file && c->files[0].fmt == &ckpt_fmt_gguf)
			rc = open_gguf_split(c, path, err);
	}
	free(found);
	if (rc == 0)
		rc = build_index(c, ly, err);
	if (rc < 0) {
		ckpt_close(c);
		return rc;
	}
	*out = c;
	return 0;
}

int ckpt_open(struct ckpt **out, const char *path, const struct layers *ly, struct lines_error *err)
{
	return open_ckpt(out, path, ly, 0, err);
}

int ckpt_open_file(struct ckpt **out, const char *path, const struct layers *ly,
                   struct lines_error *err)
{
	return open_ckpt(out, path, ly, 1, err);
}

void ckpt_close(struct ckpt *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nfiles && !c->borrowed; i++) {
		if (c->files[i].fd >= 0 && c->files[i].own_fd)
			close(c->files[i].fd);
		zs_close(c->files[i].zs);
		free(c->files[i].path);
		if (c->files[i].fmt)
			c->files[i].fmt->close(&c->files[i]);
	}
	free(c->files);
	for (size_t i = 0; c->names && i < c->ntensors; i++)
		free(c->names[i]);
	free(c->names);
	free(c->hub);
	free(c->t);
	free(c->by_name);
	for (size_t i = 0; i < c->nstacks; i++)
		free(c->stacks[i].name);
	free(c->stacks);
	free(c->dir);
	free(c->path);
	free(c);
}

const struct ckpt_tensor *ckpt_find(const struct ckpt *c, const char *name)
{
	size_t lo = 0, hi = c->ntensors;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int r = strcmp(name, c->t[c->by_name[mid]].name);
		if (r == 0)
			return &c->t[c->by_name[mid]];
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* ---- mergekit's slices ---------------------------------------------------------------- */

int ckpt_is_embedding(const char *name)
{
	return strstr(name, "embed") || strstr(name, "wte") || strstr(name, "wpe");
}

/* A tensor of a part, in the order of the output: by block, then as stored. */
struct part_ix {
	long block;
	size_t ix;
};

static int cmp_part(const void *a, const void *b)
{
	const struct part_ix *x = a, *y = b;
	if (x->block != y->block)
		return x->block < y->block ? -1 : 1;
	return x->ix < y->ix ? -1 : x->ix > y->ix;
}

/* Each source once in c->files: where source p's files start. */
static int compose_files(struct ckpt *c, const struct ckpt_part *parts, size_t nparts,
                         size_t *first_file, struct lines_error *err)
{
	size_t n = 0;
	for (size_t i = 0; i < nparts; i++) {
		size_t k = 0;
		while (k < i && parts[k].src != parts[i].src)
			k++;
		if (k < i) {
			first_file[i] = first_file[k];
			continue;
		}
		first_file[i] = n;
		n += parts[i].src->nfiles;
	}
	c->files = calloc(n ? n : 1, sizeof(*c->files));
	RETURN_ERROR_IF(!c->files, err, LINES_ENOMEM, c->path, NULL, "out of memory");
	for (size_t i = 0; i < nparts; i++) {
		if (first_file[i] != c->nfiles)
			continue; /* a source seen before */
		for (size_t f = 0; f < parts[i].src->nfiles; f++)
			c->files[c->nfiles++] = parts[i].src->files[f]; /* borrowed */
		c->data_bytes += parts[i].src->data_bytes;
		c->header_bytes += parts[i].src->header_bytes;
	}
	return 0;
}

/* Check part i's source and range. */
static int compose_check(const struct ckpt_part *pt, size_t i, struct lines_error *err)
{
	const struct ckpt *s = pt->src;
	for (size_t f = 0; f < s->nfiles; f++)
		RETURN_ERROR_IF(
		    s->files[f].zs, err, LINES_EUNSUPPORTED, s->path, NULL,
		    "slice %zu: a compressed or standard-input model cannot be a slice's "
		    "source (its tensors are read out of order): decompress it first",
		    i + 1);
	RETURN_ERROR_IF(s->files[0].fmt != &ckpt_fmt_safetensors, err, LINES_EUNSUPPORTED, s->path,
	                NULL, "slice %zu: slices of GGUF models are not supported", i + 1);
	RETURN_ERROR_IF(s->nstacks != 1, err, LINES_EUNSUPPORTED, s->path, NULL,
	                "slice %zu: slices stack the blocks of models with one stack of blocks, "
	                "and this one has %zu%s%s%s",
	                i + 1, s->nstacks, s->nstacks ? " (" : "",
	                s->nstacks ? s->stacks[0].name : "", s->nstacks ? ", ...)" : "");
	RETURN_ERROR_IF(pt->first < 0 || pt->end <= pt->first || pt->end > s->num_layers, err,
	                LINES_EUSAGE, s->path, NULL,
	                "slice %zu: layer_range [%ld, %ld] is not a range of its %ld blocks "
	                "(0 <= first < end <= %ld)",
	                i + 1, pt->first, pt->end, s->num_layers, s->num_layers);
	return 0;
}

/* Tensor st of a source, as tensor t of the result named NAME (owned). */
static void compose_add(struct ckpt *c, const struct ckpt_tensor *st, size_t file0, char *name)
{
	struct ckpt_tensor *t = &c->t[c->ntensors];
	*t = *st;
	t->file = (unsigned)(file0 + st->file);
	c->names[c->ntensors] = name;
	t->name = name ? name : st->name;
	c->ntensors++;
}

/* SRC's tensor name with block index BLOCK written instead of its own. */
static char *renamed(const struct layers *ly, const char *name, long block)
{
	size_t off, len;
	char num[24];
	if (layers_span(ly, name, &off, &len) < 0)
		return NULL;
	int k = snprintf(num, sizeof(num), "%ld", block);
	size_t n = strlen(name) - len + (size_t)k;
	char *s = malloc(n + 1);
	if (!s)
		return NULL;
	memcpy(s, name, off);
	memcpy(s + off, num, (size_t)k);
	strcpy(s + off + (size_t)k, name + off + len);
	return s;
}

int ckpt_compose(struct ckpt **out, const char *name, const struct ckpt_part *parts, size_t nparts,
                 const struct layers *ly, struct lines_error *err)
{
	struct ckpt *c = calloc(1, sizeof(*c));
	size_t *file0 = calloc(nparts ? nparts : 1, sizeof(*file0)), n = 0, cap = 0;
	struct part_ix *ord = NULL;
	int rc = 0;

	*out = NULL;
	if (!nparts) {
		free(c);
		free(file0);
		return lines_errf(err, LINES_EUSAGE, name, NULL, "no slice");
	}
	if (!c || !file0 || !(c->path = strdup(name))) {
		rc = lines_errf(err, LINES_ENOMEM, name, NULL, "out of memory");
		goto fail;
	}
	c->borrowed = 1;
	for (size_t i = 0; i < nparts && rc == 0; i++)
		rc = compose_check(&parts[i], i, err);
	if (rc < 0 || (rc = compose_files(c, parts, nparts, file0, err)) < 0)
		goto fail;
	/* at most every tensor of every part's source */
	for (size_t i = 0; i < nparts; i++)
		cap += parts[i].src->ntensors;
	c->t = calloc(cap ? cap : 1, sizeof(*c->t));
	c->by_name = calloc(cap ? cap : 1, sizeof(*c->by_name));
	c->names = calloc(cap ? cap : 1, sizeof(*c->names));
	ord = calloc(cap ? cap : 1, sizeof(*ord));
	if (!c->t || !c->by_name || !c->names || !ord) {
		rc = lines_errf(err, LINES_ENOMEM, name, NULL, "out of memory");
		goto fail;
	}
	if (parts[0].src->dir && !(c->dir = strdup(parts[0].src->dir))) {
		rc = lines_errf(err, LINES_ENOMEM, name, NULL, "out of memory");
		goto fail;
	}
	/* the embeddings of the first part's source */
	const struct ckpt *s0 = parts[0].src, *sl = parts[nparts - 1].src;
	for (size_t i = 0; i < s0->ntensors; i++)
		if (s0->t[i].block < 0 && ckpt_is_embedding(s0->t[i].name))
			compose_add(c, &s0->t[i], file0[0], NULL);
	/* the blocks, part by part, each block's tensors as they are stored */
	long at = 0;
	for (size_t p = 0; p < nparts; p++) {
		const struct ckpt *s = parts[p].src;
		n = 0;
		for (size_t i = 0; i < s->ntensors; i++)
			if (s->t[i].block >= parts[p].first && s->t[i].block < parts[p].end)
				ord[n++] = (struct part_ix){s->t[i].block, i};
		qsort(ord, n, sizeof(*ord), cmp_part);
		for (size_t k = 0; k < n; k++) {
			const struct ckpt_tensor *st = &s->t[ord[k].ix];
			char *nm = renamed(ly, st->name, at + st->block - parts[p].first);
			if (!nm) {
				rc = lines_errf(err, LINES_ENOMEM, s->path, st->name,
				                "out of memory");
				goto fail;
			}
			compose_add(c, st, file0[p], nm);
		}
		at += parts[p].end - parts[p].first;
	}
	/* the rest outside the blocks: the last part's source's */
	for (size_t i = 0; i < sl->ntensors; i++)
		if (sl->t[i].block < 0 && !ckpt_is_embedding(sl->t[i].name))
			compose_add(c, &sl->t[i], file0[nparts - 1], NULL);
	if ((rc = index_names(c, ly, err)) < 0)
		goto fail;
	if (c->num_layers != at) /* a block of no tensor at the end of a range */
		c->num_layers = at;
	if (c->nstacks == 1)
		c->stacks[0].num_layers = at;
	free(ord);
	free(file0);
	*out = c;
	return 0;
fail:
	free(ord);
	free(file0);
	ckpt_close(c);
	return rc;
}
