/*
 * merge_passthrough.c -- mergekit's passthrough: the one model, as it is.
 *
 * With slices (lines_merge_opts.slices) the model is the layer stack the
 * slices compose, so this is how frankenmerges are written. Each tensor's
 * bytes are copied: when the output dtype is the input's, byte for byte
 * (NaN payloads, negative zeros and all); with another output dtype
 * (--dtype, out_dtype) each element is rounded once to it. There is no
 * base: input 0 is the model read again (METHOD_NO_BASE), never used.
 * mergekit's optional scale parameter is not taken.
 */
#include "config.h"

#include "method.h"

struct pt_scratch {
	double v[KERN_TILE];
	float f[KERN_TILE];
};

static int pt_work(struct merge_ctx *p, struct pipe_job *job, void *scratch,
                   struct lines_error *err)
{
	const struct tensor *t = &p->t[job->tensor];
	size_t n = (size_t)(job->u1 - job->u0);
	struct pt_scratch *s = scratch;
	(void)err;
	if (t->in_dt == t->out_dt && t->unit_in == t->unit_out) {
		memcpy(job->out, job->in[1], n * t->unit_in);
		return 0;
	}
	for (size_t j0 = 0; j0 < n; j0 += KERN_TILE) {
		size_t nn = n - j0 < KERN_TILE ? n - j0 : KERN_TILE;
		tile_load(p->k, t->in_dt, job->in[1] + j0 * t->unit_in, nn, s->v, s->f);
		tile_store(p->k, t->out_dt, s->v, nn, job->out + j0 * t->unit_out, s->f);
	}
	return 0;
}

static int pt_check(const struct lines_merge_opts *o, struct lines_error *err)
{
	RETURN_ERROR_IF(o->lines || o->lambda != 1.0, err, LINES_EUSAGE, NULL, NULL,
	                "-m passthrough copies one model: it takes no --lines, --gamma or --lambda "
	                "(there is no base to scale toward)");
	RETURN_ERROR_IF(o->base, err, LINES_EUSAGE, NULL, NULL,
	                "-m passthrough copies one model and takes no base (-b)");
	return 0;
}

static int pt_setup(struct merge_ctx *p, struct lines_error *err)
{
	struct pass *pw = passes_add(p->passes);
	RETURN_ERROR_IF(!pw, err, LINES_EUSAGE, NULL, NULL, "too many passes");
	pw->name = "write";
	pw->writes = 1;
	pw->want = want_all;
	pw->work = pt_work;
	pw->scratch = sizeof(struct pt_scratch);
	return 0;
}

const struct method method_passthrough = {
    .name = "passthrough",
    .summary = "the one model's tensors, copied (layer stacking with slices)",
    .flags = METHOD_NO_BASE | METHOD_ONE_MODEL,
    .check = pt_check,
    .setup = pt_setup,
};
