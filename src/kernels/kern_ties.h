/*
 * kern_ties.h -- the element operations of TIES and DARE (see kernels.h
 * for the table). Each goes to the instruction set's kernel when there is
 * one, tested bit-identical to the scalar one, and otherwise to portable
 * C: the results are the same everywhere.
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

/* NaN and infinite values among n values of dt (BF16, F16, F32, F64): the
 * pipeline's count for the summary and --strict. */
uint64_t kern_count_nonfinite(enum dtype dt, const void *p, size_t n);

/* The bit pattern of |v|: ordered as the magnitudes (NaN above infinity). */
static inline uint32_t ties_mag(float v)
{
	uint32_t u;
	memcpy(&u, &v, 4);
	return u & 0x7fffffffu;
}

/*
 * The select pass's key of a magnitude's bits: its high 16 bits (the bin),
 * times two, plus one when its low 16 bits are all zero. Bin b counts
 * hist[2b] + hist[2b + 1]; hist[2b + 1] counts the bin's smallest value
 * b << 16 alone. The task vectors of 16-bit models are mostly that value
 * exactly (a difference of nearby BF16 numbers fits in a BF16), so when
 * the threshold is the bin's smallest value the select pass knows it, and
 * otherwise the elements equal to it are known to be trimmed.
 */
static inline uint32_t ties_key(uint32_t mag)
{
	return (mag >> 16) << 1 | ((mag & 0xffffu) == 0);
}
/* hist[i][ties_key(mag)]++ for every element of every task. */
void ties_hist(const float *tp, unsigned nx, size_t n, uint32_t *const *hist);
/*
 * The threshold pass's refinement: for the tasks with a bin (bin[i] !=
 * UINT32_MAX), hist[i][mag & 0xffff]++ for the elements whose mag >> 16
 * is bin[i]; open[j] = 1 when some task's value is in its bin and not
 * the bin's smallest value (which is below t_i: else the select pass
 * knew t_i), so not decided until t_i is known; else 0.
 */
void ties_bins(const struct kern *k, const float *tp, unsigned nx, size_t n, const uint32_t *bin,
               uint32_t *const *hist, unsigned char *open);
/*
 * The numerator of alpha from the task vectors themselves (all weights
 * 1, so tau' = tau): norm_lin's s and the lanes it adds |s| and s*s to,
 * the same bits. n elements from a multiple of KERN_LANES; wide: struct
 * kern's.
 */
void ties_norm_sum(int wide, const float *tp, unsigned nx, size_t n, double *s1, double *s2);
/*
 * The decided elements of the threshold pass, after the election with
 * the majority +1: adds |mtl| and mtl^2 of each element that is not open
 * and has a sign to lane j % KERN_LANES of dl and dq (a non-finite mtl
 * is left out), and returns the sum of their signs. Sets bit 1 of
 * open[j] for an element with a zero sum of kept values that are not
 * all zero (its norm depends on the majority sign: the caller settles
 * it). n elements from a multiple of KERN_LANES.
 */
int64_t ties_decided(const struct kern *k, const double *mtl, const signed char *sign,
                     unsigned char *open, size_t n, double *dl, double *dq);

/*
 * Election at one element: tau'_i at tp[i * stride]; kept when
 * mag >= thr[i] and tau' != 0. Returns sign(S) (0 when S is 0: then maj
 * elected); *mtl is tau_MTL (NaN when a kept value is NaN).
 *
 * The divisor of tau_MTL: with c NULL, the number of kept values of the
 * elected sign (the kernels'); else the float64 sum, tasks in order, of
 * c[i] over them, 1 where that sum is 0 (mergekit's normalize with
 * c = the weights; c all 0: no division). With c, the portable loop here
 * on every instruction set.
 */
int ties_elect(const float *tp, size_t stride, unsigned nx, const uint32_t *thr, int maj,
               const double *c, double *mtl);
/* The same over a tile, with the instruction set's kernel when c is NULL. */
void ties_elect_tile(const struct kern *k, const float *tp, size_t n, unsigned nx,
                     const uint32_t *thr, int maj, const double *c, double *mtl,
                     signed char *sign);

/*
 * Breadcrumbs' merge of a tile (merge_breadcrumbs.c): tp[i * n + j] is the
 * raw task vector tau_i of element j; it is kept when lo[i] <= its
 * magnitude's bits <= hi[i], as v_i = w[i] * (double)tau_i (0 when
 * dropped). Without ties: m[j] = sum_i v_i (tasks in order), divided by
 * wdiv when normalize. With ties, as lines' TIES elects: P and N the sums
 * (tasks in order) of the positive and of the negative v_i, s = +1 where
 * P + N >= 0, else -1, m[j] = P or N (sign s) divided when normalize by
 * the sum of the w[i] of its values (1 when 0); NaN where a kept value is
 * NaN or P + N is. sc is scratch of BC_SCRATCH doubles. Portable C that
 * the compiler vectorizes without reordering any element's sums, or with
 * k's bc_merge kernel where k has one (NULL k: none): the same bits
 * on every machine (but for the payload of a NaN, which the output makes
 * the default NaN).
 */
#define BC_SCRATCH 1024
void bc_merge_tile(const struct kern *k, const float *tp, unsigned nx, size_t n,
                   const uint32_t *lo, const uint32_t *hi, const double *w, int ties,
                   int normalize, double wdiv, double *m, double *sc);
/* s[j] = sum_i (double)tp[i * n + j], tasks in order. */
void bc_raw_sum(const float *tp, unsigned nx, size_t n, double *s);
/*
 * The raw task vectors of a tile of n elements of dtype dt, ties_taus()
 * of x[i] and base with weights `ones` (nx 1s), then bc_merge_tile() of
 * them into m and, unless s is NULL, bc_raw_sum() into s; bt gets the
 * base in float32. Through k's bc_taus_merge kernel where it has one
 * (the same bits; the taus never written), the rest through tp (nx x n
 * floats) and sc (BC_SCRATCH doubles).
 */
void bc_taus_merge_tile(const struct kern *k, enum dtype dt, const void *const *x, unsigned nx,
                        const void *base, const double *ones, size_t n, const uint32_t *lo,
                        const uint32_t *hi, const double *w, int ties, int normalize,
                        double wdiv, float *bt, float *tp, double *m, double *s, double *sc);

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
/* The drop of every task of a tile and their sum (kernels.h's dare_sum),
 * and the keep test alone (dare_keep), with the instruction set's kernel. */
void dare_sum_tile(const struct kern *k, const float *tp, size_t n, unsigned nx,
                   const uint64_t *key, uint64_t idx0, const uint64_t *limit, const double *div,
                   double *mtl);
void dare_keep_tile(const struct kern *k, const float *tp, float *out, size_t n, uint64_t key,
                    uint64_t idx0, uint64_t limit);

#endif
