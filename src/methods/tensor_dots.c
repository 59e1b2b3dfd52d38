/*
 * tensor_dots.c -- the read-only pass of per-tensor dot products
 * (tensor_dots.h): blocks of KERN_BLOCK elements summed on the workers,
 * added in output order by the consumer.
 */
#include "config.h"

#include <stdlib.h>

#include "tensor_dots.h"

int tdots_init(struct tdots *d, const struct merge_ctx *c, unsigned k,
               const unsigned char (*pairs)[2], unsigned npairs, tdots_load_fn *load,
               struct lines_error *err)
{
	memset(d, 0, sizeof(*d));
	d->k = k, d->npairs = npairs, d->load = load, d->nt = c->nt;
	memcpy(d->pair, pairs, npairs * sizeof(pairs[0]));
	RETURN_ERROR_IF(!(d->dot = calloc(c->nt ? c->nt * npairs : 1, sizeof(double))), err,
	                LINES_ENOMEM, NULL, NULL, "out of memory");
	return 0;
}

void tdots_free(struct tdots *d)
{
	free(d->dot);
	d->dot = NULL;
}

size_t tdots_scratch(unsigned k)
{
	return (size_t)k * KERN_TILE * sizeof(double) + 2 * KERN_TILE * sizeof(float);
}

/* Pair (x, y)'s products over a tile of n elements, element e into lane
 * e % KERN_LANES (a tile starts on a lane boundary). */
static inline void td_one(double *l, const double *x, const double *y, size_t n)
{
	size_t full = n - n % KERN_LANES;
	for (size_t j = 0; j < full; j += KERN_LANES)
		for (unsigned e = 0; e < KERN_LANES; e++)
			l[e] += x[j + e] * y[j + e];
	for (size_t j = full; j < n; j++)
		l[j - full] += x[j] * y[j];
}

/* a += x[j..j+w) * y[j..j+w) in GNU C's vectors (kernels.h) of a's type
 * (w lanes): lane by lane, as in td_one() */
#define TD_MAC(a, x, y, j)                                                                        \
	do {                                                                                      \
		__typeof__(a) x_, y_;                                                             \
		memcpy(&x_, (x) + (j), sizeof(x_)), memcpy(&y_, (y) + (j), sizeof(y_));           \
		(a) += x_ * y_;                                                                   \
	} while (0)

/* Four pairs at once: the same sums, each lane's in the same order, but
 * four independent chains of additions instead of one, so that the loop
 * is not bound by the latency of an addition. */
static inline void td_four(int wide, double (*lane)[KERN_LANES], double *const *v,
                           const unsigned char (*pair)[2], size_t n)
{
	const double *x0 = v[pair[0][0]], *y0 = v[pair[0][1]], *x1 = v[pair[1][0]],
	             *y1 = v[pair[1][1]], *x2 = v[pair[2][0]], *y2 = v[pair[2][1]],
	             *x3 = v[pair[3][0]], *y3 = v[pair[3][1]];
	size_t full = n - n % KERN_LANES;
	if (wide) { /* struct kern's: eight lanes in one vector */
		kv8d a0, a1, a2, a3;
		memcpy(&a0, lane[0], sizeof(a0)), memcpy(&a1, lane[1], sizeof(a1));
		memcpy(&a2, lane[2], sizeof(a2)), memcpy(&a3, lane[3], sizeof(a3));
		for (size_t j = 0; j < full; j += KERN_LANES) {
			TD_MAC(a0, x0, y0, j);
			TD_MAC(a1, x1, y1, j);
			TD_MAC(a2, x2, y2, j);
			TD_MAC(a3, x3, y3, j);
		}
		memcpy(lane[0], &a0, sizeof(a0)), memcpy(lane[1], &a1, sizeof(a1));
		memcpy(lane[2], &a2, sizeof(a2)), memcpy(lane[3], &a3, sizeof(a3));
	} else { /* in two of four (kv_width.h): lanes 0-3 in b, 4-7 in c */
		kv4d b0, b1, b2, b3, c0, c1, c2, c3;
		memcpy(&b0, lane[0], 32), memcpy(&b1, lane[1], 32);
		memcpy(&b2, lane[2], 32), memcpy(&b3, lane[3], 32);
		memcpy(&c0, lane[0] + 4, 32), memcpy(&c1, lane[1] + 4, 32);
		memcpy(&c2, lane[2] + 4, 32), memcpy(&c3, lane[3] + 4, 32);
		for (size_t j = 0; j < full; j += KERN_LANES) {
			TD_MAC(b0, x0, y0, j);
			TD_MAC(b1, x1, y1, j);
			TD_MAC(b2, x2, y2, j);
			TD_MAC(b3, x3, y3, j);
			TD_MAC(c0, x0, y0, j + 4);
			TD_MAC(c1, x1, y1, j + 4);
			TD_MAC(c2, x2, y2, j + 4);
			TD_MAC(c3, x3, y3, j + 4);
		}
		memcpy(lane[0], &b0, 32), memcpy(lane[1], &b1, 32);
		memcpy(lane[2], &b2, 32), memcpy(lane[3], &b3, 32);
		memcpy(lane[0] + 4, &c0, 32), memcpy(lane[1] + 4, &c1, 32);
		memcpy(lane[2] + 4, &c2, 32), memcpy(lane[3] + 4, &c3, 32);
	}
	for (unsigned q = 0; q < 4; q++)
		for (size_t j = full; j < n; j++)
			lane[q][j - full] += v[pair[q][0]][j] * v[pair[q][1]][j];
}

LINES_HOT void tdots_range(const struct merge_ctx *c, const struct tdots *d, const struct tensor *t,
                 const struct pipe_job *job, size_t b0, size_t b1, double *const *v, float *tmp,
                 double *part)
{
	double lane[TDOTS_MAX_PAIRS][KERN_LANES];
	memset(lane, 0, sizeof(lane));
	for (size_t j0 = b0; j0 < b1; j0 += KERN_TILE) { /* KERN_TILE: lanes align */
		size_t n = b1 - j0 < KERN_TILE ? b1 - j0 : KERN_TILE;
		unsigned q = 0;
		d->load(c, t, job, j0, n, v, tmp);
		for (; q + 4 <= d->npairs; q += 4)
			td_four(c->k->wide, lane + q, v, d->pair + q, n);
		for (; q < d->npairs; q++)
			td_one(lane[q], v[d->pair[q][0]], v[d->pair[q][1]], n);
	}
	for (unsigned q = 0; q < d->npairs; q++)
		part[q] = kern_lane_sum(lane[q]);
}

LINES_HOT static int td_work(struct merge_ctx *c, struct pipe_job *job, void *scratch,
                   struct lines_error *err)
{
	const struct tdots *d = c->state;
	const struct tensor *t = &c->t[job->tensor];
	size_t n = (size_t)(job->u1 - job->u0);
	double *v[TDOTS_MAX_K];
	float *tmp = tdots_tiles(d, scratch, v);
	(void)err;
	for (unsigned b = 0; b < job->nblocks; b++) {
		size_t b0 = (size_t)b * KERN_BLOCK, b1 = b0 + KERN_BLOCK < n ? b0 + KERN_BLOCK : n;
		tdots_range(c, d, t, job, b0, b1, v, tmp, job->part + (size_t)d->npairs * b);
	}
	return 0;
}

static int td_reduce(struct merge_ctx *c, const struct pipe_job *job, struct lines_error *err)
{
	struct tdots *d = c->state;
	double *row = d->dot + job->tensor * d->npairs;
	(void)err;
	for (unsigned b = 0; b < job->nblocks; b++)
		for (unsigned q = 0; q < d->npairs; q++)
			row[q] += job->part[(size_t)d->npairs * b + q];
	return 0;
}

static int td_done(struct merge_ctx *c, struct lines_error *err)
{
	struct tdots *d = c->state;
	(void)err;
	d->measured = 1;
	return 0;
}

float *tdots_tiles(const struct tdots *d, void *scratch, double **v)
{
	for (unsigned i = 0; i < d->k; i++)
		v[i] = (double *)scratch + (size_t)i * KERN_TILE;
	return (float *)((double *)scratch + (size_t)d->k * KERN_TILE);
}

int tdots_add_pass(struct merge_ctx *c, const char *name, const char *who,
                   struct lines_error *err)
{
	const struct tdots *d = c->state;
	struct pass *ps;
	RETURN_ERROR_IF(c->single_pass, err, LINES_EUSAGE, NULL, NULL,
	                "standard input can be read only once, but %s measures every tensor in a "
	                "pass before the writing pass: give that model as a file",
	                who);
	RETURN_ERROR_IF(!(ps = passes_add(c->passes)), err, LINES_EUNSUPPORTED, NULL, NULL,
	                "too many passes");
	ps->name = name;
	ps->part_block = d->npairs;
	ps->scratch = tdots_scratch(d->k);
	ps->want = want_merged;
	ps->work = td_work;
	ps->reduce = td_reduce;
	ps->done = td_done;
	return 0;
}

void tdots_method_free(struct merge_ctx *c)
{
	struct tdots *d = c->state;
	if (d)
		tdots_free(d);
	free(c->state);
	c->state = NULL;
}

int tdots_add_write(struct merge_ctx *c,
                    int (*work)(struct merge_ctx *, struct pipe_job *, void *, struct lines_error *),
                    size_t scratch, struct lines_error *err)
{
	struct pass *pw = passes_add(c->passes);
	RETURN_ERROR_IF(!pw, err, LINES_EUNSUPPORTED, NULL, NULL, "too many passes");
	pw->name = "write";
	pw->writes = 1;
	pw->want = want_all;
	pw->work = work;
	pw->scratch = scratch;
	return 0;
}

void tdots_report_pair(json_t *e, const char *key, const double *d, int lerp, double s0,
                       double s1)
{
	json_t *o = json_object();
	json_object_set_new(o, "dot", json_num(d[0]));
	json_object_set_new(o, "norm0_sq", json_num(d[1]));
	json_object_set_new(o, "norm1_sq", json_num(d[2]));
	json_object_set_new(o, "lerp", json_boolean(lerp));
	json_object_set_new(o, "s0", json_num(s0));
	json_object_set_new(o, "s1", json_num(s1));
	json_object_set_new(e, key, o);
}
