/*
 * fmt_safetensors.c -- the safetensors reader behind struct ckpt_format:
 * the 8-byte length, the JSON header validated by st_format.c, and the
 * tensors and __metadata__ handed to the checkpoint layer in its own
 * format-neutral terms.
 */
#include "config.h"

#include <stdlib.h>

#include "ckpt.h"
#include "st_format.h"

static int sf_open(struct ckpt_file *f, ckpt_read_fn read, struct lines_error *err)
{
	unsigned char prefix[8] = {0};
	struct st_header *h = calloc(1, sizeof(*h));
	uint64_t n;
	char *json;
	int rc;

	RETURN_ERROR_IF(!h, err, LINES_ENOMEM, f->path, NULL, "out of memory for the header");
	f->fmt_state = h;
	if (f->size != UINT64_MAX && f->size < 8)
		return st_parse_prefix(prefix, f->size, &n, f->path, err);
	FORWARD_IF_ERROR(read(f, prefix, 8, 0, err));
	FORWARD_IF_ERROR(st_parse_prefix(prefix, f->size, &n, f->path, err));
	json = malloc(n ? (size_t)n : 1);
	RETURN_ERROR_IF(!json, err, LINES_ENOMEM, f->path, NULL, "out of memory for the header");
	rc = read(f, json, (size_t)n, 8, err);
	if (rc == 0)
		rc = st_parse(json, n, f->size, h, f->path, err);
	free(json);
	FORWARD_IF_ERROR(rc);

	f->entries = calloc(h->ntensors ? h->ntensors : 1, sizeof(*f->entries));
	f->meta = calloc(h->nmeta ? h->nmeta : 1, sizeof(*f->meta));
	RETURN_ERROR_IF(!f->entries || !f->meta, err, LINES_ENOMEM, f->path, NULL, "out of memory");
	for (size_t i = 0; i < h->ntensors; i++) {
		const struct st_tensor *t = &h->tensors[i];
		struct ckpt_entry *e = &f->entries[i];
		e->name = t->name;
		e->dtype = t->dtype;
		e->rank = t->rank;
		e->shape = t->shape;
		e->nelem = t->nelem;
		e->off = h->data_start + t->begin;
		e->nbytes = t->end - t->begin;
	}
	f->nentries = h->ntensors;
	for (size_t i = 0; i < h->nmeta; i++) {
		f->meta[i].key = h->meta[i].key;
		f->meta[i].value = h->meta[i].value;
	}
	f->nmeta = h->nmeta;
	f->data_start = h->data_start;
	f->heap_peak = h->heap_parsed;
	f->data_end = h->data_start + h->data_len;
	return 0;
}

static void sf_close(struct ckpt_file *f)
{
	struct st_header *h = f->fmt_state;
	if (h) {
		st_header_free(h);
		free(h);
	}
	free(f->entries);
	free(f->meta);
	f->fmt_state = NULL;
	f->entries = NULL;
	f->meta = NULL;
	f->nentries = f->nmeta = 0;
}

const struct ckpt_format ckpt_fmt_safetensors = {
	.name = "safetensors",
	.open = sf_open,
	.close = sf_close,
};
