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
#include "stream.h"

/* Read n bytes at off: pread for a file, in order for a stream. */
static int hdr_read(struct ckpt_file *f, void *buf, size_t n, uint64_t off, struct lines_error *err)
{
	int rc;
	if (f->zs) {
		rc = zs_read(f->zs, buf, n, err);
		if (rc < 0 && off == 0 && err && strstr(err->msg, "ends early"))
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

static int read_header(struct ckpt_file *f, struct lines_error *err)
{
	unsigned char prefix[8] = {0};
	uint64_t n;
	char *json;
	int rc;

	if (f->size != UINT64_MAX && f->size < 8)
		return st_parse_prefix(prefix, f->size, &n, f->path, err);
	FORWARD_IF_ERROR(hdr_read(f, prefix, 8, 0, err));
	FORWARD_IF_ERROR(st_parse_prefix(prefix, f->size, &n, f->path, err));
	json = malloc(n ? (size_t)n : 1);
	RETURN_ERROR_IF(!json, err, LINES_ENOMEM, f->path, NULL, "out of memory for the header");
	rc = hdr_read(f, json, (size_t)n, 8, err);
	if (rc == 0)
		rc = st_parse(json, n, f->size, &f->hdr, f->path, err);
	free(json);
	return rc;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && !strcmp(s + a - b, suffix);
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
	f->disk_size = (uint64_t)st.st_size;
	if (ends_with(path, ".zst")) {
		f->size = UINT64_MAX; /* of the decompressed bytes: not known */
		FORWARD_IF_ERROR(zs_open(&f->zs, f->fd, 1, 1, f->path, err));
	}
	return read_header(f, err);
}

int ckpt_spill(struct ckpt_file *f, struct lines_error *err)
{
	const char *dir = getenv("TMPDIR");
	uint64_t total = f->hdr.data_start + f->hdr.data_len, done = 0;
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
	c->path = strdup(strcmp(path, "-") ? path : "(standard input)");
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
		if (c->files[i].fd >= 0 && c->files[i].own_fd)
			close(c->files[i].fd);
		zs_close(c->files[i].zs);
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
