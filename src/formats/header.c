/*
 * header.c -- the safetensors header of the output (or of one shard):
 * the tensors, the base's own __metadata__, and what lines records of
 * the run (lines.*: the version, the command, the method and its
 * parameters, the weights, alpha and beta).
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "plan.h"
#include "st_format.h"

#define HEADER_VALUES 24 /* values lines formats, at most */

/* 17 significant digits in a fixed width (for non-negative values). */
static void fmt_fixed(char *buf, size_t n, double v) { snprintf(buf, n, "%.16e", v); }

/* A method's metadata, copied into the header's values. */
struct meta_put {
	struct st_kv *meta;
	size_t *nmeta;
	char (*vals)[64];
	int *nv;
};

static void put_meta(void *arg, const char *key, const char *value)
{
	struct meta_put *mp = arg;
	if (*mp->nv >= HEADER_VALUES)
		return;
	snprintf(mp->vals[*mp->nv], 64, "%s", value);
	mp->meta[*mp->nmeta].key = key;
	mp->meta[(*mp->nmeta)++].value = mp->vals[(*mp->nv)++];
}

int plan_header(const struct plan *p, size_t t0, size_t t1, unsigned char **hdr, size_t *hdr_len,
                struct lines_error *err)
{
	const struct ckpt_file *bf = &p->in.ck[0]->files[0];
	struct st_out_tensor *ot = calloc(t1 > t0 ? t1 - t0 : 1, sizeof(*ot));
	size_t nmeta = 0, cap = bf->nmeta + HEADER_VALUES;
	struct st_kv *meta = calloc(cap, sizeof(*meta));
	char (*vals)[64] = calloc(HEADER_VALUES, sizeof(*vals));
	char *weights = calloc((size_t)p->lay.nmodels * 26 + 1, 1);
	size_t stacks_cap = 1;
	for (size_t k = 0; k < p->lay.nstacks; k++)
		stacks_cap += strlen(p->lay.stacks[k].name) + 64;
	char *stacks = p->lay.nstacks > 1 ? calloc(stacks_cap, 1) : NULL;
	int rc;

	if (!ot || !meta || !vals || !weights || (p->lay.nstacks > 1 && !stacks)) {
		rc = lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
		goto out;
	}
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

#define META(k, v) (meta[nmeta].key = (k), meta[nmeta++].value = (v))
	int nv = 0;
	META("lines.version", lines_version());
	META("lines.command", p->o.command ? p->o.command : "merge");
	META("lines.method", p->method->name);
	snprintf(vals[nv], 64, "%u", p->lay.nmodels);
	META("lines.models", vals[nv++]);
	for (unsigned i = 0; i < p->lay.nmodels; i++) {
		size_t len = strlen(weights);
		if (i)
			weights[len++] = ',';
		lines_fmt_double(weights + len, 25, p->sc.w[i]);
	}
	META("lines.weights", p->lay.tensor_w ? "per tensor (see the manifest)" : weights);
	snprintf(vals[nv], 64, "%ld", p->lay.L);
	META("lines.num_layers", vals[nv++]);
	if (p->lay.nstacks > 1) { /* NAME:L, first+ramp when chained or joint */
		size_t len = 0;
		for (size_t k = 0; k < p->lay.nstacks && stacks; k++) {
			const struct stack *st = &p->lay.stacks[k];
			len += (size_t)snprintf(stacks + len, stacks_cap - len, "%s%s:%ld", k ? "," : "",
			                        st->name, st->L);
			if (st->first || st->ramp != st->L)
				len += (size_t)snprintf(stacks + len, stacks_cap - len, "@%ld/%ld", st->first,
				                        st->ramp);
		}
		if (stacks)
			META("lines.stacks", stacks);
	}
	/* Values measured by a norm pass are written with a fixed width, so
	 * the header the plan announces has the length of the one written. */
	void (*fmt_late)(char *, size_t, double) = p->sc.measured ? fmt_fixed : lines_fmt_double;
	if (p->o.lines) {
		fmt_late(vals[nv], 64, p->sc.alpha);
		META("lines.alpha", vals[nv++]);
		(isnan(p->o.beta) ? fmt_late : lines_fmt_double)(vals[nv], 64, p->sc.beta);
		META("lines.beta", vals[nv++]);
		META("lines.alpha_mode", p->o.alpha_auto ? "auto" : "given");
		META("lines.norm", p->o.norm_p == 2 ? "l2" : "l1");
	} else {
		lines_fmt_double(vals[nv], 64, p->o.lambda);
		META("lines.lambda", vals[nv++]);
	}
	if (p->method->meta) {
		struct meta_put mp = {meta, &nmeta, vals, &nv};
		p->method->meta(&p->ctx, put_meta, &mp);
	}
	if (p->sc.measured) {
		fmt_fixed(vals[nv], 64, p->sc.norm_sum);
		META("lines.norm_sum", vals[nv++]);
		fmt_fixed(vals[nv], 64, p->sc.norm_mtl);
		META("lines.norm_mtl", vals[nv++]);
	}
#undef META
	rc = st_build(ot, t1 - t0, meta, nmeta, hdr, hdr_len, err);
out:
	free(ot);
	free(meta);
	free(vals);
	free(weights);
	free(stacks);
	return rc;
}
