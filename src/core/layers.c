/*
 * layers.c -- block indices from tensor names, and the LiNeS ramp.
 *
 * POSIX regexec() returns the leftmost match, which is what the spec asks
 * for: in encoder.block.5.layer.1.DenseReluDense the anchored pattern
 * first matches at ".block.5." so the index is 5, not 1.
 *
 * The stack of a block is the name before its index: encoder.block and
 * decoder.block in a T5, model.layers in a Llama, vision_model.encoder.
 * layers and text_model.encoder.layers in a CLIP. Each stack has its own
 * depth (plan.c). A --layer-regex with two capture groups names the stack
 * with the first (POSIX ERE has no named groups).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "layers.h"

static const char default_re[] =
	"(^|\\.)(layers|layer|h|blocks|block|resblocks|blk|double_blocks|single_blocks|"
	"transformer_blocks|single_transformer_blocks|down_blocks|up_blocks|input_blocks|"
	"output_blocks)\\.([0-9]+)\\.";

int layers_init(struct layers *ly, const struct lines_layer_opts *o, struct lines_error *err)
{
	const char *re = o && o->regex ? o->regex : default_re;
	int rc;

	memset(ly, 0, sizeof(*ly));
	ly->num_layers = o ? o->num_layers : 0;
	RETURN_ERROR_IF(ly->num_layers < 0 || ly->num_layers > LAYERS_MAX_INDEX, err, LINES_EUSAGE,
	                NULL, NULL, "--num-layers must be between 1 and %ld", LAYERS_MAX_INDEX);
	rc = regcomp(&ly->re, re, REG_EXTENDED);
	if (rc) {
		char buf[256];
		regerror(rc, &ly->re, buf, sizeof(buf));
		return lines_errf(err, LINES_EUSAGE, NULL, NULL, "bad --layer-regex '%s': %s", re,
		                  buf);
	}
	ly->compiled = 1;
	if (o && o->regex) {
		if (ly->re.re_nsub != 1 && ly->re.re_nsub != 2) {
			layers_free(ly);
			return lines_errf(err, LINES_EUSAGE, NULL, NULL,
			                  "--layer-regex '%s' must have one capture group (the block "
			                  "index) or two (the stack, then the index); it has %zu",
			                  re, ly->re.re_nsub);
		}
		ly->group = (int)ly->re.re_nsub;
		ly->stack_group = ly->re.re_nsub == 2 ? 1 : 0;
	} else {
		ly->group = 3;
	}
	return 0;
}

void layers_free(struct layers *ly)
{
	if (ly->compiled)
		regfree(&ly->re);
	ly->compiled = 0;
}

int layers_index(const struct layers *ly, const char *name, long *index, size_t *stack_off,
                 size_t *stack_len, struct lines_error *err)
{
	regmatch_t m[4];
	long v = 0;

	*index = -1;
	*stack_off = *stack_len = 0;
	if (regexec(&ly->re, name, (size_t)ly->group + 1, m, 0) != 0 || m[ly->group].rm_so < 0)
		return 0;
	if (ly->stack_group) { /* the pattern names the stack */
		RETURN_ERROR_IF(m[ly->stack_group].rm_so < 0, err, LINES_EFORMAT, NULL, name,
		                "the layer pattern matched without a stack");
		*stack_off = (size_t)m[ly->stack_group].rm_so;
		*stack_len = (size_t)(m[ly->stack_group].rm_eo - m[ly->stack_group].rm_so);
	} else { /* the stack is the name before the index, without its dot */
		*stack_len = (size_t)m[ly->group].rm_so;
		if (*stack_len && name[*stack_len - 1] == '.')
			(*stack_len)--;
	}
	RETURN_ERROR_IF(m[ly->group].rm_eo == m[ly->group].rm_so, err, LINES_EFORMAT, NULL, name,
	                "the layer pattern captured an empty block index");
	for (regoff_t k = m[ly->group].rm_so; k < m[ly->group].rm_eo; k++) {
		char c = name[k];
		RETURN_ERROR_IF(c < '0' || c > '9', err, LINES_EFORMAT, NULL, name,
		                "the layer pattern captured \"%.*s\", which is not a block number",
		                (int)(m[ly->group].rm_eo - m[ly->group].rm_so),
		                name + m[ly->group].rm_so);
		v = v * 10 + (c - '0');
		RETURN_ERROR_IF(v >= LAYERS_MAX_INDEX, err, LINES_EFORMAT, NULL, name,
		                "block index is larger than %ld", LAYERS_MAX_INDEX - 1);
	}
	*index = v;
	return 0;
}

int layers_span(const struct layers *ly, const char *name, size_t *off, size_t *len)
{
	regmatch_t m[4];
	if (regexec(&ly->re, name, (size_t)ly->group + 1, m, 0) != 0 || m[ly->group].rm_so < 0)
		return -1;
	*off = (size_t)m[ly->group].rm_so;
	*len = (size_t)(m[ly->group].rm_eo - m[ly->group].rm_so);
	return 0;
}

/* t = i / (L - 1) first, as mergekit's gradients take it: the last block
 * gets alpha + beta exactly (beta * i / (L - 1) need not round to beta),
 * and the ramp is the schedule 0,1 bit for bit (lines_gradient() of
 * {0, 1} at t is t itself). */
double layers_lambda(long i, long L, double alpha, double beta)
{
	if (i < 0 || L <= 1)
		return alpha;
	double t = (double)i / (double)(L - 1);
	return alpha + beta * t;
}

/* mergekit's rule (its gradient parameters), the one place lines has it:
 * the configurations' gradients and --schedule both come here. */
double lines_gradient(const double *g, size_t n, double t)
{
	double s = t * (double)(n - 1);
	if (!(s > 0)) /* t <= 0 (and NaN): the first value */
		return g[0];
	if (s >= (double)(n - 1))
		return g[n - 1];
	size_t i0 = (size_t)s;
	double f = s - (double)i0;
	return (1 - f) * g[i0] + f * g[i0 + 1];
}

double layers_lambda_at(long i, long L, double alpha, double beta, const double *sched,
                        size_t nsched)
{
	if (!sched)
		return layers_lambda(i, L, alpha, beta);
	if (i < 0)
		return alpha;
	double t = L <= 1 ? 0.0 : (double)i / (double)(L - 1);
	return alpha + beta * lines_gradient(sched, nsched, t);
}
