/*
 * pipeline.h -- run one pass of a plan over the inputs, in chunks, on
 * worker threads, with results consumed in order.
 */
#ifndef LINES_PIPELINE_H
#define LINES_PIPELINE_H

#include "plan.h"

struct sink;

/* One job: units [u0, u1) of one tensor. */
struct pipe_job {
	size_t tensor;
	uint64_t u0, u1;
	const unsigned char **in; /* ninputs pointers to the bytes of [u0, u1) */
	unsigned char *out;       /* (u1 - u0) * unit_out bytes, write passes */
	double *part;             /* part_job + part_block * blocks doubles  */
	unsigned nblocks;         /* KERN_BLOCK blocks in this job            */
	uint64_t in_bytes;        /* bytes read for this job, all inputs      */
};

/* Units per job for a tensor: a multiple of KERN_BLOCK for merged ones. */
uint64_t pipe_step(const struct plan *p, const struct plan_tensor *t);

/* Bytes of memory the pipeline allocates (or maps) for a pass at most. */
uint64_t pipe_memory(const struct plan *p, const struct src_ops *src);

/*
 * Run pass over every tensor it wants. A writing pass sends its output
 * to out, after whatever the caller has written there already.
 */
int pipe_run(struct plan *p, struct pass *pass, unsigned pass_index, struct source *src,
             struct sink *out, struct lines_error *err);

#endif
