/*
 * run_meta.c -- what lines records of a run in its output's metadata
 * (lines.*: the version, the command, the method and its parameters,
 * the weights, alpha and beta, the norms), as key-value text that the
 * safetensors header (header.c) and the GGUF header (gguf_header.c)
 * both write.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "plan.h"

#define HEADER_VALUES 25 /* values lines formats, at most (and keys beyond them) */

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

void header_meta_free(struct header_meta *hm)
{
	free(hm->kv);
	free(hm->vals);
	free(hm->weights);
	free(hm->stacks);
	free(hm->sched);
	memset(hm, 0, sizeof(*hm));
}

int header_meta(const struct plan *p, struct header_meta *hm, struct lines_error *err)
{
	size_t stacks_cap = 1;
	memset(hm, 0, sizeof(*hm));
	for (size_t k = 0; k < p->lay.nstacks; k++)
		stacks_cap += strlen(p->lay.stacks[k].name) + 64;
	hm->kv = calloc(HEADER_META_MAX, sizeof(*hm->kv));
	hm->vals = calloc(HEADER_VALUES, sizeof(*hm->vals));
	hm->weights = calloc((size_t)p->lay.nmodels * 26 + 1, 1);
	hm->stacks = p->lay.nstacks > 1 ? calloc(stacks_cap, 1) : NULL;
	hm->sched = p->o.lines && p->o.schedule ? calloc(p->o.nschedule * 26 + 1, 1) : NULL;
	if (!hm->kv || !hm->vals || !hm->weights || (p->lay.nstacks > 1 && !hm->stacks) ||
	    (p->o.lines && p->o.schedule && !hm->sched)) {
		header_meta_free(hm);
		return lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
	}
	struct st_kv *meta = hm->kv;
	char(*vals)[64] = hm->vals;
	char *weights = hm->weights, *stacks = hm->stacks, *sched = hm->sched;
	size_t nmeta = 0;

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
		for (size_t i = 0; sched && i < p->o.nschedule; i++) { /* F0,F1,...: --schedule */
			size_t len = strlen(sched);
			if (i)
				sched[len++] = ',';
			lines_fmt_double(sched + len, 25, p->o.schedule[i]);
		}
		if (sched)
			META("lines.schedule", sched);
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
	hm->n = nmeta;
	return 0;
}

