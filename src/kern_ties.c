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

static inline float dec1(enum dtype dt, const unsigned char *p, size_t j)
{
	switch (dt) {
	case DT_BF16: {
		uint16_t h;
		memcpy(&h, p + 2 * j, 2);
		return kern_bf16_to_f32(h);
	}
	case DT_F16: {
		uint16_t h;
		memcpy(&h, p + 2 * j, 2);
		return kern_f16_to_f32(h);
	}
	case DT_F32: {
		float f;
		memcpy(&f, p + 4 * j, 4);
		return f;
	}
	case DT_F64: {
		double d;
		memcpy(&d, p + 8 * j, 8);
		return (float)d;
	}
	default: return 0.0f;
	}
}

void ties_taus(enum dtype dt, const void *const *x, unsigned nx, const void *base,
               const double *w, size_t n, float *bt, float *tp)
{
	for (size_t j = 0; j < n; j++)
		bt[j] = dec1(dt, base, j);
	for (unsigned i = 0; i < nx; i++) {
		float *t = tp + (size_t)i * n;
		if (w[i] == 1.0)
			for (size_t j = 0; j < n; j++)
				t[j] = dec1(dt, x[i], j) - bt[j];
		else
			for (size_t j = 0; j < n; j++) {
				float tau = dec1(dt, x[i], j) - bt[j];
				t[j] = (float)(w[i] * (double)tau);
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
	double s = 0.0, sum = 0.0;
	unsigned cnt = 0;
	int sign, e;

	for (unsigned i = 0; i < nx; i++) {
		float v = tp[(size_t)i * stride];
		if (v != 0.0f && ties_mag(v) >= thr[i]) {
			if (v != v) { /* a kept NaN: the element is NaN */
				*mtl = NAN;
				return 1;
			}
			s += (double)v;
		}
	}
	sign = s > 0.0 ? 1 : s < 0.0 ? -1 : 0;
	e = sign ? sign : maj;
	for (unsigned i = 0; i < nx; i++) {
		float v = tp[(size_t)i * stride];
		if (v != 0.0f && ties_mag(v) >= thr[i] && (v > 0.0f) == (e > 0)) {
			sum += (double)v;
			cnt++;
		}
	}
	*mtl = cnt ? sum / (double)cnt : 0.0;
	return sign;
}

static inline uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

uint64_t dare_key(uint64_t seed, unsigned task, uint64_t name_hash)
{
	return mix64(seed ^ mix64(((uint64_t)task + 1) * 0x100000001b3ull ^ mix64(name_hash)));
}

double dare_draw(uint64_t key, uint64_t idx)
{
	return (double)(mix64(key ^ (idx * 0xd1b54a32d192ed03ull)) >> 11) * 0x1p-53;
}

void ties_finish1(enum dtype odt, unsigned char *out, float b, double m, double lambda)
{
	/* the very operations of kern_scalar's finish, one element at a time */
	kern_scalar.finish(odt, out, &b, &m, lambda, 1);
}
