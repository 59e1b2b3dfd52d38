/*
 * header.c -- the safetensors header of the output (or of one shard):
 * the tensors, the base's own __metadata__, and what lines records of
 * the run (run_meta.c); a GGUF output's is gguf_header.c's.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "plan.h"
#include "st_format.h"

int plan_header(const struct plan *p, size_t t0, size_t t1, unsigned char **hdr, size_t *hdr_len,
                struct lines_error *err)
{
	const struct ckpt_file *bf = &p->in.ck[0]->files[0];
	struct st_out_tensor *ot;
	struct st_kv *meta;
	struct header_meta hm;
	size_t nmeta = 0;
	int rc;

	if (p->out.gguf)
		return gguf_header(p, t0, t1, hdr, hdr_len, err);
	ot = calloc(t1 > t0 ? t1 - t0 : 1, sizeof(*ot));
	meta = calloc(bf->nmeta + HEADER_META_MAX, sizeof(*meta));
	if (!ot || !meta) {
		free(ot);
		free(meta);
		return lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
	}
	if ((rc = header_meta(p, &hm, err)) < 0)
		goto out;
	for (size_t i = t0; i < t1; i++) {
		const struct tensor *t = &p->lay.t[i];
		ot[i - t0].name = t->name;
		ot[i - t0].dtype = tensor_file_dt(t);
		ot[i - t0].rank = t->rank;
		ot[i - t0].shape = t->shape;
		ot[i - t0].nbytes = tensor_file_bytes(t);
	}
	/* the base's own metadata is carried along, except what lines rewrites */
	for (size_t i = 0; i < bf->nmeta; i++)
		if (strcmp(bf->meta[i].key, "format") && strncmp(bf->meta[i].key, "lines.", 6) &&
		    !bf->meta[i].summary) /* a GGUF array too long to show */
			meta[nmeta].key = bf->meta[i].key, meta[nmeta++].value = bf->meta[i].value;
	for (size_t i = 0; i < hm.n; i++)
		meta[nmeta++] = hm.kv[i];
	rc = st_build(ot, t1 - t0, meta, nmeta, hdr, hdr_len, err);
	header_meta_free(&hm);
out:
	free(ot);
	free(meta);
	return rc;
}
