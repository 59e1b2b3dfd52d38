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

#include "ckpt.h"

static int read_header(struct ckpt_file *f, struct lines_error *err)
{
	unsigned char prefix[8];
	uint64_t n;
	char *json;
	int rc;

	if (f->size != UINT64_MAX && f->size < 8)
		return st_parse_prefix(prefix, f->size, &n, f->path, err);
	rc = full_pread(f->fd, prefix, 8, 0);
	if (rc < 0)
		return lines_errno(err, -rc, f->path, "cannot read the header");
	FORWARD_IF_ERROR(st_parse_prefix(prefix, f->size, &n, f->path, err));
	json = malloc(n ? (size_t)n : 1);
	RETURN_ERROR_IF(!json, err, LINES_ENOMEM, f->path, NULL, "out of memory for the header");
	rc = full_pread(f->fd, json, (size_t)n, 8);
	if (rc < 0) {
		free(json);
		return lines_errno(err, -rc, f->path, "cannot read the header");
	}
	rc = st_parse(json, n, f->size, &f->hdr, f->path, err);
	free(json);
	return rc;
}

static int open_file(struct ckpt_file *f, const char *path, struct lines_error *err)
{
	struct stat st;

	f->fd = -1;
	f->path = strdup(path);
	RETURN_ERROR_IF(!f->path, err, LINES_ENOMEM, path, NULL, "out of memory");
	f->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (f->fd < 0)
		return lines_errno(err, errno, path, "cannot open");
	if (fstat(f->fd, &st) < 0)
		return lines_errno(err, errno, path, "cannot stat");
	RETURN_ERROR_IF(S_ISDIR(st.st_mode), err, LINES_EUNSUPPORTED, path, NULL,
	                "is a directory (sharded checkpoints are not supported yet)");
	RETURN_ERROR_IF(!S_ISREG(st.st_mode), err, LINES_EUNSUPPORTED, path, NULL,
	                "is not a regular file");
	f->size = (uint64_t)st.st_size;
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	f->mtime = st.st_mtim;
	return read_header(f, err);
}

static const struct ckpt *sort_ctx;
static int cmp_name(const void *a, const void *b)
{
	const size_t *x = a, *y = b;
	return strcmp(sort_ctx->t[*x].st->name, sort_ctx->t[*y].st->name);
}

static int build_index(struct ckpt *c, const struct layers *ly, struct lines_error *err)
{
	size_t n = 0;

	for (size_t f = 0; f < c->nfiles; f++)
		n += c->files[f].hdr.ntensors;
	c->t = calloc(n ? n : 1, sizeof(*c->t));
	c->by_name = calloc(n ? n : 1, sizeof(*c->by_name));
	RETURN_ERROR_IF(!c->t || !c->by_name, err, LINES_ENOMEM, c->path, NULL, "out of memory");
	for (size_t f = 0; f < c->nfiles; f++) {
		const struct st_header *h = &c->files[f].hdr;
		for (size_t i = 0; i < h->ntensors; i++) {
			struct ckpt_tensor *t = &c->t[c->ntensors];
			t->st = &h->tensors[i];
			t->file = (unsigned)f;
			t->off = h->data_start + t->st->begin;
			t->nbytes = t->st->end - t->st->begin;
			if (ly) {
				int rc = layers_index(ly, t->st->name, &t->block, err);
				if (rc < 0) {
					if (err)
						snprintf(err->file, sizeof(err->file), "%s",
						         c->files[f].path);
					return rc;
				}
			} else {
				t->block = -1;
			}
			if (t->block + 1 > c->num_layers)
				c->num_layers = t->block + 1;
			c->by_name[c->ntensors] = c->ntensors;
			c->ntensors++;
		}
		c->data_bytes += h->data_len;
		c->header_bytes += h->data_start;
	}
	/* qsort has no context argument; the checkpoint is opened by one thread */
	sort_ctx = c;
	qsort(c->by_name, c->ntensors, sizeof(*c->by_name), cmp_name);
	sort_ctx = NULL;
	for (size_t i = 1; i < c->ntensors; i++)
		RETURN_ERROR_IF(!strcmp(c->t[c->by_name[i]].st->name, c->t[c->by_name[i - 1]].st->name),
		                err, LINES_EFORMAT, c->path, c->t[c->by_name[i]].st->name,
		                "tensor appears twice");
	return 0;
}

int ckpt_open(struct ckpt **out, const char *path, const struct layers *ly,
              struct lines_error *err)
{
	struct ckpt *c = calloc(1, sizeof(*c));
	int rc;

	*out = NULL;
	RETURN_ERROR_IF(!c, err, LINES_ENOMEM, path, NULL, "out of memory");
	c->path = strdup(path);
	c->files = calloc(1, sizeof(*c->files));
	if (!c->path || !c->files) {
		ckpt_close(c);
		return lines_errf(err, LINES_ENOMEM, path, NULL, "out of memory");
	}
	c->nfiles = 1;
	rc = open_file(&c->files[0], path, err);
	if (rc == 0)
		rc = build_index(c, ly, err);
	if (rc < 0) {
		ckpt_close(c);
		return rc;
	}
	*out = c;
	return 0;
}

void ckpt_close(struct ckpt *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nfiles; i++) {
		if (c->files[i].fd >= 0)
			close(c->files[i].fd);
		free(c->files[i].path);
		st_header_free(&c->files[i].hdr);
	}
	free(c->files);
	free(c->t);
	free(c->by_name);
	free(c->path);
	free(c);
}

const struct ckpt_tensor *ckpt_find(const struct ckpt *c, const char *name)
{
	size_t lo = 0, hi = c->ntensors;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int r = strcmp(name, c->t[c->by_name[mid]].st->name);
		if (r == 0)
			return &c->t[c->by_name[mid]];
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}
