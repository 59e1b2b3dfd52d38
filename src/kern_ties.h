/*
 * kern_ties.h -- the element operations of TIES and DARE (see kernels.h
 * for their definitions). Portable C, used by every instruction set, so
 * their results are the same everywhere by construction; the election
 * goes through the kernel table (ties_elect_tile), whose AVX2 version is
 * tested against the scalar one.
 */
#ifndef LINES_KERN_TIES_H
#define LINES_KERN_TIES_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

/*
 * Decode n elements of the base and of nx models; bt gets the base,
 * tp[i * n + j] the weighted task vector tau'_i of element j.
 */
void ties_taus(const struct kern *k, enum dtype dt, const void *const *x, unsigned nx,
               const void *base, const double *w, size_t n, float *bt, float *tp);

/* The bit pattern of |v|: ordered as the magnitudes (NaN above infinity). */
static inline uint32_t ties_mag(float v)
{
	uint32_t u;
	memcpy(&u, &v, 4);
	return u & 0x7fffffffu;
}

/* open[j] = 1 when some task's nonzero tau' has lo[i] <= mag < up[i]. */
void ties_open(const float *tp, size_t n, unsigned nx, const uint32_t *lo, const uint32_t *up,
               signed char *open);

/* hist[i][mag >> 16]++ for every element of every task. */
void ties_hist(const float *tp, unsigned nx, size_t n, uint32_t *const *hist);
/* hist[i][mag & 0xffff]++ for the elements whose mag >> 16 is bin[i]. */
void ties_low(const float *tp, unsigned nx, size_t n, const uint32_t *bin, uint32_t *const *hist);

/*
 * Election at one element: tau'_i at tp[i * stride]; kept when
 * mag >= thr[i] and tau' != 0. Returns sign(S) (0 when S is 0: then maj
 * elected); *mtl is tau_MTL (NaN when a kept value is NaN).
 */
int ties_elect(const float *tp, size_t stride, unsigned nx, const uint32_t *thr, int maj,
               double *mtl);
/* The same over a tile, with the instruction set's kernel. */
void ties_elect_tile(const struct kern *k, const float *tp, size_t n, unsigned nx,
                     const uint32_t *thr, int maj, double *mtl, signed char *sign);

/*
 * DARE's draw for element idx of a tensor of task `task` is
 * u = (kern_mix64(key ^ idx * KERN_DARE_STEP) >> 11) * 2^-53, uniform in
 * [0, 1), with
 * key = dare_key(seed, task, hash of the tensor's name); the element is
 * kept when u < density, that is when the 53-bit integer is below
 * dare_limit(density) (the same test, without a float).
 */
uint64_t dare_key(uint64_t seed, unsigned task, uint64_t name_hash);
uint64_t dare_limit(double density);
/* Drop and rescale n values of one task, elements idx0 on, with the
 * instruction set's kernel (kernels.h's dare_drop). */
void dare_drop_tile(const struct kern *k, float *tp, size_t n, uint64_t key, uint64_t idx0,
                    uint64_t limit, double density);

#endif
