/*
 * kern_ties.c -- element operations of TIES and DARE.
 *
 * These are branchy, per-element decisions (which task keeps its value,
 * which sign wins) over N values at a time; they are written once, in
 * portable C, so that every instruction set gives the same bits without
 * a second implementation to keep in step.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include "kern_ties.h"

void ties_taus(const struct kern *k, enum dtype dt, const void *const *x, unsigned nx,
               const void *base, const double *w, size_t n, float *bt, float *tp)
{
	/* decoding is the instruction set's (exact everywhere); the rest is
	 * one rounding per element, the same on any machine */
	k->decode(dt, base, bt, n);
	for (unsigned i = 0; i < nx; i++) {
		float *t = tp + (size_t)i * n;
		k->decode(dt, x[i], t, n);
		if (w[i] == 1.0)
			for (size_t j = 0; j < n; j++)
				t[j] = t[j] - bt[j];
		else
			for (size_t j = 0; j < n; j++)
				t[j] = (float)(w[i] * (double)(t[j] - bt[j]));
	}
}

void ties_open(const float *tp, size_t n, unsigned nx, const uint32_t *lo, const uint32_t *up,
               signed char *open)
{
	typedef uint32_t __attribute__((may_alias)) alias32; /* the bits of the floats */
	const alias32 *u = (const alias32 *)(const void *)tp;
	memset(open, 0, n);
	for (unsigned i = 0; i < nx; i++) {
		uint32_t l = lo[i], w = up[i] - lo[i];
		const alias32 *ui = u + (size_t)i * n;
		/* branch-free, so that the compiler vectorizes it: a value is in
		 * the bin when (mag - lo) < width, unsigned; zero never is */
		for (size_t j = 0; j < n; j++) {
			uint32_t a = ui[j] & 0x7fffffffu;
			open[j] |= (signed char)((a - l < w) & (a != 0));
		}
	}
}

void ties_hist(const float *tp, unsigned nx, size_t n, uint32_t *const *hist)
{
	for (unsigned i = 0; i < nx; i++)
		for (size_t j = 0; j < n; j++)
			hist[i][ties_mag(tp[(size_t)i * n + j]) >> 16]++;
}

void ties_low(const float *tp, unsigned nx, size_t n, const uint32_t *bin, uint32_t *const *hist)
{
	for (unsigned i = 0; i < nx; i++)
		for (size_t j = 0; j < n; j++) {
			uint32_t a = ties_mag(tp[(size_t)i * n + j]);
			if (a >> 16 == bin[i])
				hist[i][a & 0xffffu]++;
		}
}

int ties_elect(const float *tp, size_t stride, unsigned nx, const uint32_t *thr, int maj,
               double *mtl)
{
	/* one element through the scalar tile kernel (stride: its task step) */
	float t[1024];
	signed char sign;
	for (unsigned i = 0; i < nx && i < 1024; i++)
		t[i] = tp[(size_t)i * stride];
	kern_scalar.ties_elect(t, 1, nx, thr, maj, mtl, &sign);
	return sign;
}

void ties_elect_tile(const struct kern *k, const float *tp, size_t n, unsigned nx,
                     const uint32_t *thr, int maj, double *mtl, signed char *sign)
{
	(k->ties_elect ? k->ties_elect : kern_scalar.ties_elect)(tp, n, nx, thr, maj, mtl, sign);
}

uint64_t dare_key(uint64_t seed, unsigned task, uint64_t name_hash)
{
	return kern_mix64(seed ^ kern_mix64(((uint64_t)task + 1) * 0x100000001b3ull ^
	                                    kern_mix64(name_hash)));
}

uint64_t dare_limit(double density)
{
	/* u = x 2^-53 < density  <=>  x < density 2^53 (exact)  <=>  x < ceil() */
	return density >= 1.0 ? (uint64_t)1 << 53 : (uint64_t)ceil(density * 0x1p53);
}

void dare_drop_tile(const struct kern *k, float *tp, size_t n, uint64_t key, uint64_t idx0,
                    uint64_t limit, double density)
{
	(k->dare_drop ? k->dare_drop : kern_scalar.dare_drop)(tp, n, key, idx0, limit, density);
}
