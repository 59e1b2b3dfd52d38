/*
 * f64.h -- the float64 path every method takes for an F64 tensor merged
 * into F64 (issue 14, item 6: F64 stays F64).
 *
 * The kernels decode to float32; an F64 tensor written as F64 is instead
 * computed in float64 end to end, one element at a time in portable C
 * (F64 checkpoints are rare): tau_i = theta_i - theta_0 and
 * tau'_i = w_i tau_i in double, the method's combination in double, and
 * the add-back r = fma(lambda, tau_MTL, theta_0), stored as is (a NaN as
 * the quiet NaN 0x7ff8000000000000). So --lambda 0 gives the base's bytes,
 * and the bytes are the same under every instruction set.
 *
 * TIES compares float64 magnitudes with thresholds held as their bit
 * patterns (uint64, ordered as the magnitudes, NaN above infinity).
 * f64_key32() maps such a magnitude to the float32 key space of the
 * radix selection by rounding toward zero: a monotone map that is the
 * identity on float32 values, so F64 and float32 elements share one
 * ranking (merge_ties.c).
 */
#ifndef LINES_F64_H
#define LINES_F64_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "layout.h"
#include "pipeline.h"

/* The tensor is computed on the float64 path. */
static inline int f64_tensor(const struct tensor *t)
{
	return t->in_dt == DT_F64 && t->out_dt == DT_F64;
}

static inline double f64_load(const unsigned char *p, size_t j)
{
	double v;
	memcpy(&v, p + 8 * j, 8);
	return v;
}

/* Store r at element j; a NaN is stored as the quiet NaN. */
static inline void f64_store(unsigned char *out, size_t j, double r)
{
	if (r != r) {
		uint64_t u = 0x7ff8000000000000ull;
		memcpy(&r, &u, 8);
	}
	memcpy(out + 8 * j, &r, 8);
}

/* Element j of a job: *b = theta_0 and tau[i] = w_i (theta_i - theta_0)
 * (the difference alone when w_i is 1); with raw, raw[i] = the difference. */
static inline double f64_taus(const struct pipe_job *job, unsigned nx, const double *w, size_t j,
                              double *tau, double *raw)
{
	double b = f64_load(job->in[0], j);
	for (unsigned i = 0; i < nx; i++) {
		double d = f64_load(job->in[i + 1], j) - b;
		if (raw)
			raw[i] = d;
		tau[i] = w[i] == 1.0 ? d : w[i] * d;
	}
	return b;
}

/* r = fma(lambda, m, b) stored at element j of the output. */
static inline void f64_finish(unsigned char *out, size_t j, double b, double m, double lambda)
{
	f64_store(out, j, fma(lambda, m, b));
}

/* The bit pattern of |v|, ordered as the magnitudes (NaN above infinity). */
static inline uint64_t f64_mag(double v)
{
	uint64_t u;
	memcpy(&u, &v, 8);
	return u & 0x7fffffffffffffffull;
}

/* The float32 key of a float64 magnitude's bits: the largest float32
 * magnitude not above it (its bit pattern); infinity and NaN keep the
 * top payload bits. Monotone, and exact on float32 values. */
static inline uint32_t f64_key32(uint64_t mag)
{
	double m;
	float f;
	uint32_t u;
	if (mag >= 0x7ff0000000000000ull)
		return 0x7f800000u | (uint32_t)((mag >> 29) & 0x7fffffu);
	memcpy(&m, &mag, 8);
	if (m >= 0x1.fffffep127)
		return 0x7f7fffffu; /* FLT_MAX and up to infinity */
	f = (float)m;
	memcpy(&u, &f, 4);
	return (double)f > m ? u - 1 : u; /* round toward zero */
}

/* The float64 bits of a float32 magnitude's bits (the exact value). */
static inline uint64_t f64_widen(uint32_t mag)
{
	float f;
	double d;
	uint64_t u;
	if (mag >= 0x7f800000u)
		return 0x7ff0000000000000ull | (uint64_t)(mag & 0x7fffffu) << 29;
	memcpy(&f, &mag, 4);
	d = (double)f;
	memcpy(&u, &d, 8);
	return u;
}

/* The smallest float32 magnitude at or above a float64 one (the float32
 * threshold that keeps the same values as t). */
static inline uint32_t f64_ceil32(uint64_t t)
{
	uint32_t k = f64_key32(t);
	return f64_widen(k) >= t ? k : k + 1;
}

/*
 * TIES election at one element, as the kernels' (kernels.h) in float64:
 * tau'_i kept when nonzero and f64_mag >= thr[i]; P and N the sums, tasks
 * in order, of the kept positive and negative values, s = sign(P + N)
 * (maj when 0), *mtl = P or N over its count (0 if none), NaN when a kept
 * value is NaN; with c, over the sum of c[i] of its values instead (1
 * where 0), as ties_elect() in kern_ties.h. Returns sign(P + N).
 */
static inline int f64_elect(const double *tau, unsigned nx, const uint64_t *thr, int maj,
                            const double *c, double *mtl)
{
	double pos = 0.0, neg = 0.0, cp = 0.0, cn = 0.0, s, dv;
	int sign, e;
	for (unsigned i = 0; i < nx; i++) {
		double v = tau[i];
		if (v != 0.0 && f64_mag(v) >= thr[i]) {
			if (v != v) {
				*mtl = NAN;
				return 1;
			}
			if (v > 0.0)
				pos += v, cp += c ? c[i] : 1.0;
			else
				neg += v, cn += c ? c[i] : 1.0;
		}
	}
	s = pos + neg;
	sign = s > 0.0 ? 1 : s < 0.0 ? -1 : 0;
	e = sign ? sign : maj;
	dv = e > 0 ? cp : cn;
	*mtl = (e > 0 ? pos : neg) / (dv != 0.0 ? dv : 1.0);
	return sign;
}

/* A norm's lanes: |v| and v^2 into lane l, unless v is not finite. */
static inline void f64_norm_add(double *l1, double *l2, unsigned l, double v)
{
	if (isfinite(v))
		l1[l] += fabs(v), l2[l] += v * v;
}

#endif
