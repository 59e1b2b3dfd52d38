/*
 * kern_sce.c -- SCE's element operations (kern_sce.h).
 */
#include "config.h"

#include <string.h>

#include "kern_sce.h"

/* Loops over the models outside and the elements inside, with selects
 * instead of branches, for the vectorizer; each element's operations are
 * the ones a loop per element would make, in the same order. */
LINES_HOT void sce_sums(const double *tau, size_t stride, unsigned nx, size_t n, double *s, uint32_t *key,
              double *var)
{
	for (size_t j = 0; j < n; j++)
		s[j] = 0.0;
	for (unsigned i = 0; i < nx; i++) {
		const double *t = tau + (size_t)i * stride;
		for (size_t j = 0; j < n; j++)
			s[j] += t[j];
	}
	if (!key)
		return;
	for (size_t j = 0; j < n; j++)
		var[j] = 0.0;
	for (unsigned i = 0; i < nx; i++) {
		const double *t = tau + (size_t)i * stride;
		for (size_t j = 0; j < n; j++) {
			double d = t[j] - s[j] / nx;
			var[j] += d * d;
		}
	}
	for (size_t j = 0; j < n; j++) {
		double v = var[j] / nx;
		float f = (float)v;
		uint32_t u;
		memcpy(&u, &f, 4);
		u = u == 0 && v > 0.0 ? 1u : u;
		key[j] = v != v ? 0x7fc00000u : u;
	}
}

LINES_HOT void sce_elect(const double *tau, size_t stride, unsigned nx, size_t n, const double *s,
               const unsigned char *keep, const double *w, double *num, double *den,
               double *mtl)
{
	/* the majority's sign as +-1 (exactly), in mtl until the end */
	for (size_t j = 0; j < n; j++) {
		num[j] = den[j] = 0.0;
		mtl[j] = s[j] >= 0.0 ? 1.0 : -1.0;
	}
	for (unsigned i = 0; i < nx; i++) {
		const double *t = tau + (size_t)i * stride;
		double wi = w[i];
		for (size_t j = 0; j < n; j++) {
			/* t has the majority's sign: t * (+-1) > 0 (never a zero
			 * or a NaN). Adding +0.0 leaves these sums, which start at
			 * +0.0 and never become -0.0, as they are. */
			double pr = t[j] * mtl[j];
			num[j] += pr > 0.0 ? wi * t[j] : 0.0;
			den[j] += pr > 0.0 ? wi : 0.0;
		}
	}
	for (size_t j = 0; j < n; j++) {
		double d = den[j] < 1e-6 ? 1e-6 : den[j];
		double q = num[j] / d;
		mtl[j] = s[j] - s[j] == 0.0 ? q : s[j]; /* s finite, or itself */
	}
	if (keep)
		for (size_t j = 0; j < n; j++)
			mtl[j] = keep[j] ? mtl[j] : 0.0;
}

LINES_HOT void sce_taus(const float *x, const float *b, size_t n, double *tau, double *bw)
{
	for (size_t j = 0; j < n; j++)
		tau[j] = (double)(x[j] - b[j]);
	if (bw)
		for (size_t j = 0; j < n; j++)
			bw[j] = (double)b[j];
}
