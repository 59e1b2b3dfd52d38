/*
 * layout.h -- the output as a table of tensors: for each, its shape and
 * dtypes, where its bytes are in every input, where they go in the
 * output, its block and its scale.
 *
 * The plan (plan.c) fills the table once, before anything is read; after
 * that only the scales (scales.c) change the lambda fields. Everything
 * else reads it: the pipeline walks it, the methods compute on it, the
 * header and the manifest describe it.
 */
#ifndef LINES_LAYOUT_H
#define LINES_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

struct fp8_scale;

/* Where the data of one tensor is, in one input, and in what dtype. */
struct tensor_src {
	unsigned file; /* index into the run's table of every input file */
	uint64_t off;
	enum dtype dt; /* the input's dtype (a fine-tune may differ from the base) */
	unsigned unit; /* bytes per unit in this input (per block of be units) */
	unsigned be;   /* units per block: 1, or a ggml block type's elements */
	struct fp8_scale *q; /* a float8 input: its scales (fp8.h), else NULL */
};

struct tensor {
	const char *name; /* owned by the base's checkpoint */
	enum dtype in_dt;
	enum dtype out_dt;
	int merge; /* floating: merged; otherwise copied from the base */
	/* the inputs' float dtypes differ: the pipeline decodes every input to
	 * F32 before the method sees it, and in_dt is DT_F32, unit_in 4 */
	int mixed;
	unsigned rank;
	const uint64_t *shape;
	uint64_t nelem;
	/* The pipeline walks a tensor in "units": elements for a merged
	 * tensor, bytes for a copied one. */
	uint64_t units;
	unsigned unit_in;  /* bytes per unit the method sees in every input */
	unsigned unit_out; /* bytes per unit in the output */
	uint64_t out_off;  /* offset in the output's data buffer */
	long block;        /* -1 outside the blocks; else the index in its stack */
	int stack;         /* index into the layout's stacks, -1 outside */
	double lambda;     /* the exact scale of this tensor */
	double k_lambda;   /* what the kernel multiplies by (may fold in 1/sum(w)) */
	double t;          /* slerp's t for this tensor (opts.t, or opts.tensor_t's) */
	/* opts.tensor_params: this tensor's nmodels weights and densities
	 * (into layout.params) and the sum of its weights; NULL: the run's */
	const double *w, *density;
	double wsum;
	struct tensor_src *in; /* ninputs entries: 0 is the base */
	/* --dtype fp8: the method writes F32 (out_dt), and the output has it
	 * encoded in float8 with new scales (fp8.h) */
	struct fp8_out *rq;
	const struct fp8_out *gen; /* the scales of such a weight: written from rq */
	int scale; /* an FP8 scale kept with --dtype fp8: not compared with the models' */
	/* a GGUF output of a ggml block type (Q8_0, Q4_K, ...): the method
	 * writes F32 (out_dt) and the pipeline encodes whole blocks of qdt
	 * (ggml_quant); DT_BOOL (0) when the output is written as out_dt */
	enum dtype qdt;
};

/* Bytes of n units of input s (n whole blocks of a block type). */
static inline uint64_t src_bytes(const struct tensor_src *s, uint64_t n)
{
	return s->be > 1 ? n / s->be * s->unit : n * s->unit;
}

/* What the output file holds of a tensor: its dtype and bytes. */
enum dtype fp8_out_dtype(const struct fp8_out *r);
static inline enum dtype tensor_file_dt(const struct tensor *t)
{
	return t->rq ? fp8_out_dtype(t->rq) : t->qdt ? t->qdt : t->out_dt;
}
/* Bytes the output file holds for n units of t (n whole blocks of a
 * block type: a job of such a tensor is, see pipe_step). */
static inline uint64_t tensor_file_span(const struct tensor *t, uint64_t n)
{
	if (t->qdt)
		return n / dtype_table[t->qdt].block_elems * dtype_table[t->qdt].block_bytes;
	return n * (t->rq ? 1 : t->unit_out);
}
static inline uint64_t tensor_file_bytes(const struct tensor *t)
{
	return tensor_file_span(t, t->units);
}

/*
 * A stack of blocks (encoder.block, decoder.block, model.layers, ...) and
 * the LiNeS ramp it is on: its block i gets
 *     lambda = alpha + beta * (first + i) / (ramp - 1)
 * Each stack is its own ramp by default (first 0, ramp L); --stacks joint
 * puts every stack on one ramp of the model's largest depth, and
 * --stack-order chains stacks that run one after the other.
 */
struct stack {
	const char *name; /* owned by the base's checkpoint */
	long L;           /* its blocks */
	long first;
	long ramp;
};

struct layout {
	unsigned ninputs; /* N + 1: the base, then the models */
	unsigned nmodels; /* N */
	size_t nt;
	struct tensor *t; /* output order (the base's storage order) */
	uint64_t out_data_bytes;
	/* a GGUF output: every tensor's data starts at a multiple of align
	 * (general.alignment) and is padded with zeros to the next; else 1 */
	uint64_t align;
	size_t dropped; /* tensors of the base not in the output (FP8 scales) */
	long L; /* 1 + the largest block index of any stack */
	size_t nstacks;
	struct stack *stacks;
	double *params; /* opts.tensor_params: 2 nmodels per tensor, else NULL */
	int tensor_w, tensor_density; /* some tensor's weights (densities) are its own */
};

#endif
