/*
 * merge_common.c -- passes every method shares.
 *
 * The check pass reads the tensors that are not merged (integer position
 * ids, boolean masks, ...) in every input before the output is created,
 * and compares each model's bytes with the base's: the output keeps the
 * base's values, so a difference is worth a warning, and with --strict it
 * is an error reported before a single output byte exists.
 *
 * With an input that can be read only once (standard input) there is no
 * separate pass: the writing pass compares while it copies, through the
 * same two functions.
 */
#include "config.h"

#include "pipeline.h"

static int want_none(const struct plan *p, size_t i)
{
	(void)p, (void)i;
	return 0;
}

void merge_check_job(struct plan *p, struct pipe_job *job)
{
	size_t n = (size_t)(job->u1 - job->u0);
	for (unsigned m = 1; m <= p->nmodels; m++)
		job->part[m - 1] = memcmp(job->in[m], job->in[0], n) != 0;
}

int merge_check_reduce(struct plan *p, const struct pipe_job *job, struct lines_error *err)
{
	const struct plan_tensor *t = &p->t[job->tensor];
	if (t->merge)
		return 0;
	for (unsigned m = 1; m <= p->nmodels; m++) {
		if (!job->part[m - 1] || p->copy_warned[job->tensor])
			continue;
		RETURN_ERROR_IF(p->o.strict, err, LINES_EMISMATCH, p->ck[m]->path, t->name,
		                "%s tensor differs from the base's (--strict)", dtype_name(t->in_dt));
		plan_log(p, LINES_LOG_WARN, p->ck[m]->path, t->name,
		         "%s tensor differs from the base's; the base's values are kept",
		         dtype_name(t->in_dt));
		p->copy_warned[job->tensor] = 1;
	}
	return 0;
}

/*
 * Called after the method has set its passes: a first pass that only reads
 * checks the copied tensors too; otherwise a check pass goes first (or,
 * with standard input, the writing pass checks as it copies).
 */
int merge_check_setup(struct plan *p, struct lines_error *err)
{
	int any = 0;
	(void)err;
	for (size_t i = 0; i < p->nt; i++)
		any |= !p->t[i].merge && p->t[i].units;
	if (!any)
		return 0;
	if (p->npasses > 1 && !p->pass[0].writes) {
		p->pass[0].checks_copies = 1;
		return 0;
	}
	if (p->single_pass) {
		p->check_in_write = 1;
		return 0;
	}
	RETURN_ERROR_IF(p->npasses >= PLAN_MAX_PASSES, err, LINES_EUSAGE, NULL, NULL,
	                "too many passes");
	memmove(&p->pass[1], &p->pass[0], p->npasses * sizeof(p->pass[0]));
	p->npasses++;
	struct pass *ps = &p->pass[0];
	memset(ps, 0, sizeof(*ps));
	ps->name = "check";
	ps->part_job = p->nmodels;
	ps->want = want_none; /* no merged tensor; the copied ones, as any pass */
	ps->checks_copies = 1;
	return 0;
}
