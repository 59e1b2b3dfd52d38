/*
 * kern_sce.h -- the element operations of SCE (merge_sce.c): the plain
 * sums and variance keys of a tile, and its election. Portable C built
 * for the compiler's vectorizer without FP traps (-fno-trapping-math,
 * which changes no value): each element's operations are single IEEE
 * operations in a fixed order, so every instruction set and vector width
 * gives the same bits.
 */
#ifndef LINES_KERN_SCE_H
#define LINES_KERN_SCE_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

/*
 * SCE (merge_sce.c) over a tile of n elements of nx float64 task vectors,
 * tau_i at tau[i * stride + j], in single IEEE operations per element,
 * models in order (so the vectorizer cannot change a bit):
 * sce_sums: s[j] = 0 + tau_0j + ... (the plain sum), and when key is not
 * NULL the ranking key of the variance sum_i (tau_ij - s[j] / nx)^2 / nx:
 * its float32 bits (nearest even), 1 for a nonzero variance that rounds to
 * 0, 0x7fc00000 for a NaN (above every other key); var is room for n
 * doubles.
 */
void sce_sums(const double *tau, size_t stride, unsigned nx, size_t n, double *s, uint32_t *key,
              double *var);
/* tau[j] = x[j] - b[j] in float32, widened; bw[j] = b[j] when bw is not
 * NULL. */
void sce_taus(const float *x, const float *b, size_t n, double *tau, double *bw);
/*
 * sce_elect: mtl[j] = sum_i w_i e_i tau_ij / max(sum_i w_i e_i, 1e-6), e_i
 * where tau_ij has the sign of the majority (+ where s[j] >= 0, else -;
 * a zero never has it); s[j] itself where it is not finite; 0 where
 * keep[j] is 0 (keep NULL: every element). wide: struct kern's.
 */
void sce_elect(int wide, const double *tau, size_t stride, unsigned nx, size_t n,
               const double *s, const unsigned char *keep, const double *w, double *mtl);

#endif
