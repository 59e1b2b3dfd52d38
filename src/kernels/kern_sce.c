/*
 * kern_sce.c -- SCE's element operations (kern_sce.h).
 */
#include "config.h"

#include <string.h>

#include "kern_sce.h"

/* Elements of a strip of sce_sums' variance (its means on the stack) */
#define SCE_STRIP 64

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
	/* s / nx once per element (the same quotient every model's step would
	 * compute), in strips of SCE_STRIP on the stack; a division by a power
	 * of two is the product by its reciprocal, exactly */
	int pow2 = (nx & (nx - 1)) == 0;
	double inv = 1.0 / nx;
	for (size_t j0 = 0; j0 < n; j0 += SCE_STRIP) {
		size_t m = n - j0 < SCE_STRIP ? n - j0 : SCE_STRIP;
		double mean[SCE_STRIP], *v = var + j0;
		const double *sj = s + j0;
		if (pow2)
			for (size_t j = 0; j < m; j++)
				mean[j] = sj[j] * inv;
		else
			for (size_t j = 0; j < m; j++)
				mean[j] = sj[j] / nx;
		for (size_t j = 0; j < m; j++)
			v[j] = 0.0;
		for (unsigned i = 0; i < nx; i++) {
			const double *t = tau + (size_t)i * stride + j0;
			for (size_t j = 0; j < m; j++) {
				double d = t[j] - mean[j];
				v[j] += d * d;
			}
		}
		if (pow2)
			for (size_t j = 0; j < m; j++)
				v[j] *= inv;
		else
			for (size_t j = 0; j < m; j++)
				v[j] /= nx;
	}
	for (size_t j = 0; j < n; j++) {
		double v = var[j];
		float f = (float)v;
		uint32_t u;
		memcpy(&u, &f, 4);
		u = u == 0 && v > 0.0 ? 1u : u;
		key[j] = v != v ? 0x7fc00000u : u;
	}
}

/* One element, the reference: the vector loop (kern_sce_elect.h) makes
 * the same operations on KVW at once. */
static inline double sce_elect1(const double *tau, size_t stride, unsigned nx, size_t j,
                                const double *s, const unsigned char *keep, const double *w)
{
	/* the majority's sign as +-1 (exactly); t has it when t * (+-1) > 0
	 * (never a zero or a NaN). Adding +0.0 leaves these sums, which start
	 * at +0.0 and never become -0.0, as they are. */
	double sign = s[j] >= 0.0 ? 1.0 : -1.0, num = 0.0, den = 0.0;
	for (unsigned i = 0; i < nx; i++) {
		double t = tau[(size_t)i * stride + j], pr = t * sign;
		num += pr > 0.0 ? w[i] * t : 0.0;
		den += pr > 0.0 ? w[i] : 0.0;
	}
	double d = den < 1e-6 ? 1e-6 : den, q = num / d;
	double m = s[j] - s[j] == 0.0 ? q : s[j]; /* s finite, or itself */
	return keep && !keep[j] ? 0.0 : m;
}

#if defined(__GNUC__)
#define KV_BODY "kern_sce_elect.h"
#include "kv_both.h"
#endif

LINES_HOT void sce_elect(int wide, const double *tau, size_t stride, unsigned nx, size_t n,
                         const double *s, const unsigned char *keep, const double *w, double *mtl)
{
	size_t n8 = 0;
#if defined(__GNUC__)
	n8 = n - n % 8;
	KV_CALL(wide, sce_elect_vec, tau, stride, nx, n8, s, keep, w, mtl);
#else
	(void)wide;
#endif
	for (size_t j = n8; j < n; j++)
		mtl[j] = sce_elect1(tau, stride, nx, j, s, keep, w);
}

LINES_HOT void sce_taus(const float *x, const float *b, size_t n, double *tau, double *bw)
{
	for (size_t j = 0; j < n; j++)
		tau[j] = (double)(x[j] - b[j]);
	if (bw)
		for (size_t j = 0; j < n; j++)
			bw[j] = (double)b[j];
}
