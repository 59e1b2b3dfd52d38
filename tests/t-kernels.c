/*
 * t-kernels.c -- the element kernels.
 *
 * 1. The scalar conversions against independent ones: every one of the
 *    65536 F16 and BF16 values decoded; float32 values of every exponent,
 *    exact ties and overflow encoded, compared with the compiler's
 *    _Float16 conversion and with a round-to-nearest-even written here
 *    with integer arithmetic.
 * 2. The scalar kernels against their definition (kernels.h).
 * 3. Every other instruction set built into this binary and supported by
 *    this CPU against the scalar kernels, bit for bit: random data, edge
 *    values (NaN payloads, infinities, signed zeros, subnormals, ties,
 *    overflow), every length from 0 to 67 and unaligned buffers.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern_ties.h"
#include "kernels.h"
#include "tap.h"

static uint64_t rng = 0x1234567887654321ull;
static uint32_t rnd32(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}
static float u2f(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}
static uint32_t f2u(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

/* ---- independent references ------------------------------------------------ */
static int is_nan32(uint32_t u) { return (u & 0x7fffffffu) > 0x7f800000u; }

/* bf16 by exact comparison: the two candidates around u, nearest, ties to even */
static uint16_t ref_bf16(float f)
{
	uint32_t u = f2u(f);
	if (is_nan32(u))
		return (uint16_t)((u >> 16) | 0x40);
	uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1);
	uint32_t rest = u & 0xffffu;
	if (rest < 0x8000u)
		return lo;
	if (rest > 0x8000u)
		return hi;
	return (lo & 1) ? hi : lo; /* carries into the exponent and to inf correctly */
}

/* a random float32 with a spread of exponents, edge values included */
static float rnd_float(void)
{
	static const uint32_t edges[] = {
		0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00001u,
		0x7f800001u, 0x7fbfffffu, 0x00000001u, 0x807fffffu, 0x00800000u, 0x7f7fffffu,
		0x477ff000u, 0x477fefffu, 0x477fe000u, 0x38800000u, 0x387fe000u, 0x33000000u,
		0x33000001u, 0x3f808000u, 0x3f818000u, 0x3f800800u, 0x3f801800u, 0xc7800000u,
		0x7f7f8000u, 0x7f7fc000u, 0x3f800fffu, 0x337fffffu, 0x33800000u, 0x38000000u,
	};
	uint32_t r = rnd32();
	if (r % 8 == 0)
		return u2f(edges[rnd32() % (sizeof(edges) / sizeof(edges[0]))]);
	if (r % 8 == 1) /* exact bf16 / f16 ties */
		return u2f((rnd32() & 0xffff0000u) | 0x8000u);
	if (r % 8 == 2)
		return u2f((rnd32() & 0xffffe000u) | 0x1000u);
	return u2f(rnd32());
}

/* ---- 1. conversions ----------------------------------------------------------- */
static void test_conversions(void)
{
	int bad = 0;
	for (uint32_t h = 0; h < 65536; h++) {
		_Float16 x;
		uint16_t hh = (uint16_t)h;
		memcpy(&x, &hh, 2);
		float want = (float)x, got = kern_f16_to_f32(hh);
		uint32_t gu = f2u(got);
		if (isnan(want)) {
			/* NaN: sign and payload kept, quiet bit set */
			uint32_t w = ((uint32_t)(h & 0x8000) << 16) | 0x7fc00000u | ((h & 0x3ffu) << 13);
			bad += gu != w;
		} else {
			bad += gu != f2u(want);
		}
	}
	ok(bad == 0, "F16 -> F32: all 65536 values as _Float16 converts them (%d differ)", bad);

	bad = 0;
	for (uint32_t h = 0; h < 65536; h++) {
		uint32_t u = h << 16, gu = f2u(kern_bf16_to_f32((uint16_t)h));
		bad += gu != (is_nan32(u) ? (u | 0x00400000u) : u);
	}
	ok(bad == 0, "BF16 -> F32: all 65536 values exact, NaNs quieted (%d differ)", bad);

	int bad16 = 0, badb = 0;
	for (int i = 0; i < 2000000; i++) {
		float f = rnd_float();
		uint16_t gb = kern_f32_to_bf16(f), g16 = kern_f32_to_f16(f);
		badb += gb != ref_bf16(f);
		if (isnan(f)) {
			uint32_t u = f2u(f);
			uint16_t w = (uint16_t)(((u >> 16) & 0x8000u) | 0x7e00u | ((u >> 13) & 0x3ffu));
			bad16 += g16 != w;
		} else {
			_Float16 r = (_Float16)f;
			uint16_t w;
			memcpy(&w, &r, 2);
			bad16 += g16 != w;
		}
	}
	ok(badb == 0, "F32 -> BF16: round to nearest even, ties, overflow, NaN (%d differ)", badb);
	ok(bad16 == 0, "F32 -> F16: as _Float16 rounds, subnormals and overflow included (%d differ)",
	   bad16);
	ok(kern_f32_to_bf16(u2f(0x7f7fffffu)) == 0x7f80 && kern_f32_to_f16(70000.0f) == 0x7c00 &&
	       kern_f32_to_f16(-70000.0f) == 0xfc00 && kern_f32_to_f16(65504.0f) == 0x7bff &&
	       kern_f32_to_f16(0x1p-25f) == 0 && kern_f32_to_f16(0x1.000002p-25f) == 1 &&
	       kern_f32_to_f16(-0.0f) == 0x8000 && kern_f32_to_bf16(-0.0f) == 0x8000,
	   "spot values: overflow to infinity, f16 subnormal ties, signed zeros");
}

/* ---- 2. scalar kernels against their definition ------------------------------- */
static void test_scalar_definition(void)
{
	enum { n = 1000 };
	static float b[n], xf[n], out[n];
	static double acc[n], m[n];
	int bad = 0;
	for (int j = 0; j < n; j++) {
		b[j] = (float)((int)(rnd32() % 2001) - 1000) / 512.0f;
		xf[j] = b[j] + (float)((int)(rnd32() % 2001) - 1000) / 4096.0f;
	}
	kern_scalar.accum(DT_F32, xf, b, 0.3, acc, n, 1);
	kern_scalar.accum(DT_F32, xf, b, 0.7, acc, n, 0);
	for (int j = 0; j < n; j++) {
		float tau = xf[j] - b[j];
		bad += acc[j] != fma(0.7, (double)tau, 0.3 * (double)tau);
		m[j] = acc[j];
	}
	ok(bad == 0, "scalar accum: c1*tau, then fma(c2, tau, acc), tau in float32");
	kern_scalar.finish(DT_F32, out, b, m, 0.25, n);
	bad = 0;
	for (int j = 0; j < n; j++)
		bad += f2u(out[j]) != f2u((float)fma(0.25, m[j], (double)b[j]));
	ok(bad == 0, "scalar finish: (float)fma(lambda, m, b)");
	double nanm = NAN;
	float nb = 1.0f, o;
	kern_scalar.finish(DT_F32, &o, &nb, &nanm, 1.0, 1);
	ok(f2u(o) == 0x7fc00000u, "scalar finish: NaN becomes the default quiet NaN");

	struct kern_norms nm;
	memset(&nm, 0, sizeof(nm));
	const void *xs[2] = {xf, out};
	double c[2] = {2.0, -1.0};
	kern_scalar.norm_lin(DT_F32, xs, 2, b, c, 20, &nm);
	double s1 = 0, t2 = 0;
	for (int j = 0; j < 20; j += 8) { /* lane 0 only */
		double s = (double)(xf[j] - b[j]) + (double)(out[j] - b[j]);
		double t = 2.0 * (double)(xf[j] - b[j]) + -1.0 * (double)(out[j] - b[j]);
		s1 += fabs(s);
		t2 += t * t;
	}
	ok(nm.s1[0] == s1 && nm.t2[0] == t2, "scalar norm_lin: lane 0 holds elements 0, 8, 16");
}

/* ---- 3. every ISA against the scalar kernels ---------------------------------- */
static void fill_input(enum dtype dt, unsigned char *p, size_t n, const float *base, int related)
{
	for (size_t j = 0; j < n; j++) {
		float f = related && rnd32() % 16 ? base[j] + (float)((int)(rnd32() % 201) - 100) / 8192.0f
		                                  : rnd_float();
		if (dt == DT_BF16) {
			uint16_t h = related ? kern_f32_to_bf16(f) : (uint16_t)rnd32();
			memcpy(p + 2 * j, &h, 2);
		} else if (dt == DT_F16) {
			uint16_t h = related ? kern_f32_to_f16(f) : (uint16_t)rnd32();
			memcpy(p + 2 * j, &h, 2);
		} else {
			memcpy(p + 4 * j, &f, 4);
		}
	}
}

/* Inputs for the TIES kernels: raw[0] the base, raw[1..nx] the models, in
 * dt (F64 with some NaNs), and weights of 1 or not. */
static void fill_models(enum dtype dt, unsigned char (*raw)[1100 * 8], unsigned nx, size_t n,
                        float *base, int round, double *w)
{
	for (size_t q = 0; q < n; q++)
		base[q] = rnd_float();
	for (unsigned i = 0; i <= nx; i++) {
		if (dt == DT_F64)
			for (size_t q = 0; q < n; q++) {
				double v = rnd32() % 8 ? (double)rnd_float() + (double)rnd32() * 1e-12 : NAN;
				memcpy(raw[i] + 8 * q, &v, 8);
			}
		else
			fill_input(dt, raw[i], n, base, round % 3 != 0);
	}
	for (unsigned i = 0; i < nx; i++)
		w[i] = rnd32() % 2 ? 1.0 : (double)(rnd32() % 2000) / 997.0 - 0.5;
}

/* DARE's fused kernels are their definition: dare_sum is dare_drop on each
 * task and the float64 sum from +0.0, tasks in order; dare_keep keeps what
 * dare_drop keeps (with density 1, dare_drop returns a kept value as it is). */
static void test_dare_definition(void)
{
	enum { n = 777, nx = 5 };
	static float tp[nx * n], d[nx * n], o[n];
	static double m[n];
	uint64_t key[nx], lim[nx], idx0 = 123456789;
	double div[nx];
	int bad_s = 0, bad_k = 0;
	for (unsigned i = 0; i < nx; i++) {
		key[i] = (uint64_t)rnd32() << 32 | rnd32();
		lim[i] = (uint64_t)ceil((0.1 + 0.2 * i) * 0x1p53);
		div[i] = i % 2 ? 0.1 + 0.2 * i : 0.3 * i + 0.01;
	}
	for (size_t q = 0; q < nx * n; q++)
		tp[q] = d[q] = rnd_float();
	kern_scalar.dare_sum(tp, n, nx, key, idx0, lim, div, m);
	for (unsigned i = 0; i < nx; i++)
		kern_scalar.dare_drop(d + i * n, n, key[i], idx0, lim[i], div[i]);
	for (size_t j = 0; j < n; j++) {
		double s = 0.0;
		for (unsigned i = 0; i < nx; i++)
			s += (double)d[i * n + j];
		bad_s += memcmp(&s, &m[j], sizeof(s)) != 0;
	}
	for (unsigned i = 0; i < nx; i++) {
		for (size_t j = 0; j < n; j++)
			d[j] = 1.0f;
		kern_scalar.dare_drop(d, n, key[i], idx0, lim[i], 1.0);
		kern_scalar.dare_keep(tp + i * n, o, n, key[i], idx0, lim[i]);
		for (size_t j = 0; j < n; j++)
			bad_k += d[j] == 1.0f ? memcmp(&o[j], &tp[i * n + j], 4) != 0 : f2u(o[j]) != 0;
	}
	ok(bad_s == 0, "scalar dare_sum = dare_drop on each task, then the sum (%d differ)", bad_s);
	ok(bad_k == 0, "scalar dare_keep keeps what dare_drop keeps, +0.0 for the rest (%d differ)", bad_k);
}

/* pow2_inverse (kernels.h): the methods' divisions by a power of two as
 * products. Every power of two a double holds (normal and subnormal,
 * both signs), each against 2000 dividends of every kind (random bits:
 * subnormals, infinities, NaN, zeros, and results that overflow or
 * become subnormal); and the divisors it must refuse. */
static void test_pow2_inverse(void)
{
	long bad = 0, n = 0, took = 0;
	for (int k = -1074; k <= 1023; k++)
		for (int sg = 0; sg < 2; sg++) {
			double d = ldexp(sg ? -1.0 : 1.0, k), r = 0.0;
			if (!pow2_inverse(d, &r))
				continue; /* 2^-1074 .. 2^-1024: 1/d overflows */
			took++;
			for (int i = 0; i < 2000; i++) {
				uint64_t u = (uint64_t)rnd32() << 32 | rnd32();
				double x, q1, q2;
				memcpy(&x, &u, 8);
				q1 = x / d, q2 = x * r;
				bad += memcmp(&q1, &q2, 8) != 0 && !(q1 != q1 && q2 != q2);
				n++;
			}
		}
	ok(bad == 0 && took == 2 * (1023 + 1023 + 1),
	   "pow2_inverse: %ld powers of two, x / d and x * (1/d) the same bits for %ld dividends "
	   "(%ld differ)",
	   took, n, bad);
	double r, refused[] = {3.0,       0.75, 1.5,       0.0,         -0.0,      INFINITY,
	                       -INFINITY, NAN,  0x1p-1074, 0x1.8p-1074, 0x1p-1060, 1e300};
	int wrong = 0;
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		wrong += pow2_inverse(refused[i], &r);
	ok(wrong == 0,
	   "pow2_inverse refuses divisors that are not powers of two, zero, infinities, NaN and "
	   "those whose reciprocal overflows (%d taken)",
	   wrong);
}

/* The numerator of alpha from the tiles (the select pass without a fused
 * kernel) is norm_lin's s with every c = 1: the same lanes and bits, NaN,
 * infinities and lengths that are not a multiple of 8 included. */
static void test_norm_sum(void)
{
	static float x[5][1100], b[1100], bt[1100], tp[5 * 1100];
	static const double ones[5] = {1, 1, 1, 1, 1};
	int bad = 0;
	for (int round = 0; round < 300; round++) {
		unsigned nx = 1 + rnd32() % 5;
		size_t n = round < 40 ? (size_t)round : 1 + rnd32() % 1100;
		const void *xs[5];
		struct kern_norms a, c;
		memset(&a, 0, sizeof(a));
		memset(&c, 0, sizeof(c));
		for (size_t q = 0; q < n; q++) {
			uint32_t k = rnd32() % 32;
			b[q] = rnd_float();
			for (unsigned i = 0; i < nx; i++)
				x[i][q] = k == 0 ? NAN : k == 1 ? INFINITY : k == 2 ? -u2f(0x7f7fffffu) : rnd_float();
		}
		for (unsigned i = 0; i < nx; i++)
			xs[i] = x[i];
		kern_scalar.norm_lin(DT_F32, xs, nx, b, ones, n, &a);
		kern_scalar.decode(DT_F32, b, bt, n);
		kern_scalar.taus(DT_F32, xs, nx, b, ones, n, bt, tp);
		for (int wide = 0; wide < 2; wide++) { /* eight lanes a vector, and four */
			memset(&c, 0, sizeof(c));
			ties_norm_sum(wide, tp, nx, n, c.s1, c.s2);
			bad += memcmp(a.s1, c.s1, sizeof(a.s1)) != 0 ||
			       memcmp(a.s2, c.s2, sizeof(a.s2)) != 0;
		}
	}
	ok(bad == 0, "ties_norm_sum (both widths) = norm_lin's s with c = 1, lane by lane (%d differ)",
	   bad);
}

static void test_isa(const struct kern *k)
{
	static const enum dtype dts[] = {DT_BF16, DT_F16, DT_F32};
	enum { MAXN = 67 * 3 + 1024 };
	int bad_dec = 0, bad_enc = 0, bad_acc = 0, bad_fin = 0, bad_norm = 0, bad_ml = 0, runs = 0;

	for (int round = 0; round < 300; round++) {
		for (size_t d = 0; d < 3; d++) {
			enum dtype dt = dts[d];
			size_t es = dtype_size(dt);
			size_t n = round < 68 ? (size_t)round : 1 + rnd32() % 1100;
			size_t mis = rnd32() % 4; /* misalignment of the inputs */
			static unsigned char raw[4][MAXN * 4 + 64], o1[MAXN * 8 + 64], o2[MAXN * 8 + 64];
			static float b1[MAXN], b2[MAXN], fl[MAXN];
			static double a1[MAXN], a2[MAXN];
			const int related = round % 3 != 0;

			if (n > MAXN)
				n = MAXN;
			for (size_t j = 0; j < n; j++)
				fl[j] = rnd_float();
			fill_input(dt, raw[0] + mis, n, fl, 0);
			kern_scalar.decode(dt, raw[0] + mis, b1, n);
			k->decode(dt, raw[0] + mis, b2, n);
			bad_dec += memcmp(b1, b2, n * 4) != 0;

			memset(o1, 0, sizeof(o1)), memset(o2, 0, sizeof(o2));
			kern_scalar.encode(dt, fl, o1 + mis, n);
			k->encode(dt, fl, o2 + mis, n);
			bad_enc += memcmp(o1, o2, n * es + mis) != 0;

			/* a merge: base b1, three models near it (or anywhere) */
			for (int i = 1; i < 4; i++)
				fill_input(dt, raw[i] + mis, n, b1, related);
			double c[3] = {1.0, related ? 0.5 : -2.25, 1.0 / 3};
			for (int i = 0; i < 3; i++) {
				kern_scalar.accum(dt, raw[i + 1] + mis, b1, c[i], a1, n, i == 0);
				k->accum(dt, raw[i + 1] + mis, b1, c[i], a2, n, i == 0);
			}
			bad_acc += memcmp(a1, a2, n * 8) != 0;

			enum dtype odt = dts[rnd32() % 3];
			double lam = round % 5 == 0 ? 1e30 : 0.37;
			memset(o1, 0, sizeof(o1)), memset(o2, 0, sizeof(o2));
			kern_scalar.finish(odt, o1 + mis, b1, a1, lam, n);
			k->finish(odt, o2 + mis, b1, a1, lam, n);
			bad_fin += memcmp(o1, o2, n * dtype_size(odt) + mis) != 0;

			/* the fused kernel: the same bits as scalar, and as the
			 * separate accum and finish (with the base as raw bytes) */
			const void *xm[3] = {raw[1] + mis, raw[2] + mis, raw[3] + mis};
			static unsigned char o3[MAXN * 8 + 64];
			memset(o2, 0, sizeof(o2)), memset(o3, 0, sizeof(o3));
			kern_scalar.merge_lin(dt, xm, 3, raw[0] + mis, c, lam, odt, o2 + mis, n);
			k->merge_lin(dt, xm, 3, raw[0] + mis, c, lam, odt, o3 + mis, n);
			bad_ml += memcmp(o1, o2, n * dtype_size(odt) + mis) != 0;
			bad_ml += memcmp(o2, o3, n * dtype_size(odt) + mis) != 0;

			struct kern_norms n1, n2;
			memset(&n1, 0, sizeof(n1));
			for (int l = 0; l < KERN_LANES; l++)
				n1.s1[l] = l * 0.5, n1.t2[l] = l * 0.25; /* accumulators carry over */
			n2 = n1;
			const void *xs[3] = {raw[1] + mis, raw[2] + mis, raw[3] + mis};
			kern_scalar.norm_lin(dt, xs, 3, b1, c, n, &n1);
			k->norm_lin(dt, xs, 3, b1, c, n, &n2);
			bad_norm += memcmp(&n1, &n2, sizeof(n1)) != 0;
			runs++;
		}
	}
	ok(bad_dec == 0, "%s decode = scalar, bit for bit (%d of %d runs differ)", k->name, bad_dec, runs);
	ok(bad_enc == 0, "%s encode = scalar (%d differ)", k->name, bad_enc);
	ok(bad_acc == 0, "%s accum = scalar (%d differ)", k->name, bad_acc);
	ok(bad_fin == 0, "%s finish = scalar, NaN and overflow included (%d differ)", k->name, bad_fin);
	ok(bad_norm == 0, "%s norm_lin = scalar, lane by lane (%d differ)", k->name, bad_norm);
	ok(bad_ml == 0, "%s merge_lin = scalar merge_lin = accum then finish (%d differ)", k->name,
	   bad_ml);

	/* TIES election: task vectors with zeros, NaNs, infinities and equal
	 * magnitudes, thresholds from everything to nothing, both majorities */
	if (k->ties_elect) {
		int bad = 0;
		static float tp[5 * 1100];
		static double m1[1100], m2[1100];
		static signed char s1[1100], s2[1100];
		for (int round = 0; round < 400; round++) {
			unsigned nx = 1 + rnd32() % 5;
			size_t n = round < 40 ? (size_t)round : 1 + rnd32() % 1100;
			uint32_t thr[5];
			for (unsigned i = 0; i < nx; i++) {
				uint32_t c = rnd32() % 4;
				thr[i] = c == 0 ? 0 : c == 1 ? 0x3c000000u + rnd32() % 0x1000000u : c == 2 ? 0x7fffffffu : 0x3c23d70au;
				if (rnd32() % 16 == 0) /* nothing kept, whatever the bits */
					thr[i] = rnd32() % 2 ? 0x80000000u : 0x80000000u + rnd32();
				if (rnd32() % 16 == 0)
					thr[i] = 1;
			}
			for (size_t q = 0; q < nx * n; q++) {
				uint32_t c = rnd32() % 16;
				tp[q] = c == 0 ? 0.0f : c == 1 ? -0.0f : c == 2 ? u2f(0x3c23d70au) : c == 3 ? -u2f(0x3c23d70au)
				      : c == 4 ? u2f(0x7fc00000u) : c == 5 ? INFINITY : c == 6 ? -INFINITY
				      : c == 7 ? u2f(0x7f800000u | (rnd32() % 2 ? 0x80000000u : 0) | (1 + rnd32() % 0x7fffff))
				      : (float)((int)(rnd32() % 2001) - 1000) / 32768.0f;
			}
			int maj = rnd32() % 2 ? 1 : -1;
			kern_scalar.ties_elect(tp, n, nx, thr, maj, m1, s1);
			k->ties_elect(tp, n, nx, thr, maj, m2, s2);
			bad += memcmp(m1, m2, n * 8) != 0 || memcmp(s1, s2, n) != 0;
		}
		ok(bad == 0, "%s ties_elect = scalar, NaN, infinities and ties included (%d differ)", k->name, bad);
	}

	/* the tiles of TIES and DARE: every dtype, weights 1 and not 1 */
	if (k->taus) {
		int bad = 0;
		static const enum dtype tdt[] = {DT_BF16, DT_F16, DT_F32, DT_F64};
		static unsigned char raw[6][1100 * 8];
		static float bt1[1100], bt2[1100], tp1[5 * 1100], tp2[5 * 1100];
		static float base[1100];
		for (int round = 0; round < 400; round++) {
			enum dtype dt = tdt[round % 4];
			unsigned nx = 1 + rnd32() % 5;
			size_t n = round < 40 ? (size_t)round : 1 + rnd32() % 1100;
			const void *x[5];
			double w[5];
			fill_models(dt, raw, nx, n, base, round, w);
			for (unsigned i = 0; i < nx; i++)
				x[i] = raw[i + 1];
			kern_scalar.taus(dt, x, nx, raw[0], w, n, bt1, tp1);
			k->taus(dt, x, nx, raw[0], w, n, bt2, tp2);
			bad += memcmp(bt1, bt2, n * 4) != 0 || memcmp(tp1, tp2, nx * n * 4) != 0;
		}
		ok(bad == 0, "%s taus = scalar, four dtypes, weights 1 and not (%d differ)", k->name, bad);
	}

	/* the threshold pass's sums and its low-bit counts: the same lanes,
	 * counts and flags */
	if (k->ties_decided || k->ties_bins) {
		int bad_d = 0, bad_b = 0;
		static float tp[5 * 1100];
		static double mtl[1100];
		static signed char sg[1100];
		static unsigned char o1[1100], o2[1100];
		static uint32_t h1[5][65536], h2[5][65536];
		for (int round = 0; round < 300; round++) {
			unsigned nx = 1 + rnd32() % 5;
			size_t n = round < 40 ? (size_t)round : 1 + rnd32() % 1100;
			double a1[2][8] = {{0}}, a2[2][8] = {{0}};
			for (size_t q = 0; q < nx * n; q++) {
				uint32_t c = rnd32() % 16;
				tp[q] = c == 0 ? 0.0f : c == 1 ? -0.0f : c == 2 ? u2f(0x3c23d70au) : c == 3 ? -u2f(0x3c23d7ffu)
				      : c == 4 ? u2f(0x7fc00000u) : c == 5 ? INFINITY : c == 6 ? -u2f(0x7f7fffffu)
				      : (float)((int)(rnd32() % 2001) - 1000) / 32768.0f;
			}
			for (size_t q = 0; q < n; q++) {
				uint32_t c = rnd32() % 8;
				mtl[q] = c == 0 ? 0.0 : c == 1 ? NAN : c == 2 ? -INFINITY : (double)rnd_float();
				sg[q] = (signed char)((int)(rnd32() % 3) - 1);
				o1[q] = o2[q] = (unsigned char)(rnd32() % 4 == 0);
			}
			if (k->ties_decided) {
				int64_t v1 = kern_scalar.ties_decided(mtl, sg, o1, n, a1[0], a1[1]);
				int64_t v2 = k->ties_decided(mtl, sg, o2, n, a2[0], a2[1]);
				bad_d += v1 != v2 || memcmp(a1, a2, sizeof(a1)) != 0 || memcmp(o1, o2, n) != 0;
			}
			if (k->ties_bins) {
				uint32_t bin[5], *p1[5], *p2[5];
				for (unsigned i = 0; i < nx; i++) {
					uint32_t c = rnd32() % 4;
					bin[i] = c == 0 ? UINT32_MAX : c == 1 ? 0 : c == 2 ? 0x3c23u : 0x7fc0u;
					p1[i] = h1[i], p2[i] = h2[i];
					memset(h1[i], 0, sizeof(h1[i]));
					memset(h2[i], 0, sizeof(h2[i]));
				}
				kern_scalar.ties_bins(tp, nx, n, bin, p1, o1);
				k->ties_bins(tp, nx, n, bin, p2, o2);
				bad_b += memcmp(o1, o2, n) != 0 || memcmp(h1, h2, nx * sizeof(h1[0])) != 0;
			}
		}
		if (k->ties_decided)
			ok(bad_d == 0, "%s ties_decided = scalar: sums, votes and flags (%d differ)", k->name, bad_d);
		if (k->ties_bins)
			ok(bad_b == 0, "%s ties_bins = scalar: counts and open flags (%d differ)", k->name, bad_b);
	}

	/* TIES's fused select pass against the scalar one: every dtype in,
	 * weights 1 and not, up to 9 tasks (its buffer of keys is shared);
	 * half the rounds also give the tiles, with a stride wider than n
	 * (what lies between must stay untouched); one round in three asks
	 * the kernel for the counts without the norms (s1 NULL, breadcrumbs'
	 * select pass): the same counts and tiles */
	if (k->ties_select) {
		int bad = 0, bad_t = 0;
		static const enum dtype tdt[] = {DT_BF16, DT_F16, DT_F32, DT_F64};
		static unsigned char raw[10][1100 * 8];
		static float base[1100], t1[9 * 1103], t2[9 * 1103], bt[1100], tt[9 * 1100];
		static uint32_t h1[9][65536], h2[9][65536];
		for (int round = 0; round < 300; round++) {
			enum dtype dt = tdt[round % 4];
			unsigned nx = 1 + rnd32() % 9;
			size_t n = round < 40 ? (size_t)round : 1 + rnd32() % 1100, ld = n + round % 4;
			const void *x[9];
			double w[9], a1[2][8] = {{0}}, a2[2][8] = {{0}};
			uint32_t *p1[9], *p2[9];
			int tiles = round % 2;
			fill_models(dt, raw, nx, n, base, round, w);
			for (unsigned i = 0; i < nx; i++)
				x[i] = raw[i + 1], p1[i] = h1[i], p2[i] = h2[i];
			memset(h1, 0, nx * sizeof(h1[0]));
			memset(h2, 0, nx * sizeof(h2[0]));
			memset(t1, 0x5a, sizeof(t1));
			memset(t2, 0x5a, sizeof(t2));
			int counts = round % 3 == 2;
			kern_scalar.ties_select(dt, x, nx, raw[0], w, n, p1, a1[0], a1[1], tiles ? t1 : NULL, ld);
			k->ties_select(dt, x, nx, raw[0], w, n, p2, counts ? NULL : a2[0],
			               counts ? NULL : a2[1], tiles ? t2 : NULL, ld);
			bad += memcmp(h1, h2, nx * sizeof(h1[0])) != 0 ||
			       (!counts && memcmp(a1, a2, sizeof(a1)) != 0);
			bad_t += memcmp(t1, t2, sizeof(t1)) != 0;
			if (tiles) { /* the scalar kernel's tiles are taus's */
				kern_scalar.taus(dt, x, nx, raw[0], w, n, bt, tt);
				for (unsigned i = 0; i < nx; i++)
					bad_t += memcmp(t1 + (size_t)i * ld, tt + (size_t)i * n, n * 4) != 0;
			}
		}
		ok(bad == 0, "%s ties_select = scalar: counts and norm lanes (%d differ)", k->name, bad);
		ok(bad_t == 0, "%s ties_select's tiles = scalar's = taus's, nothing else written (%d differ)",
		   k->name, bad_t);
	}

	/* DARE's drop: any key, index and density, special values included */
	if (k->dare_drop) {
		int bad = 0;
		static float a[1100], b[1100];
		static const double dens[] = {0.2, 0.5, 0.9, 1.0, 1e-9, 0.3333333333333333, 0.7};
		for (int round = 0; round < 400; round++) {
			size_t n = round < 40 ? (size_t)round : 1 + rnd32() % 1100;
			double d = dens[rnd32() % (sizeof(dens) / sizeof(dens[0]))];
			uint64_t key = (uint64_t)rnd32() << 32 | rnd32();
			uint64_t idx0 = round % 3 == 0 ? UINT64_MAX - rnd32() % 2000 : (uint64_t)rnd32() << 20;
			uint64_t lim = d >= 1.0 ? (uint64_t)1 << 53 : (uint64_t)ceil(d * 0x1p53);
			for (size_t q = 0; q < n; q++) {
				uint32_t c = rnd32() % 10;
				a[q] = c == 0 ? 0.0f : c == 1 ? -0.0f : c == 2 ? u2f(0x7fc00001u) : c == 3 ? -INFINITY
				     : c == 4 ? u2f(0x00000003u) : c == 5 ? u2f(0x7f7fffffu) : rnd_float();
				b[q] = a[q];
			}
			kern_scalar.dare_drop(a, n, key, idx0, lim, d);
			k->dare_drop(b, n, key, idx0, lim, d);
			bad += memcmp(a, b, n * sizeof(float)) != 0;
		}
		ok(bad == 0, "%s dare_drop = scalar, any index, NaN, infinities and subnormals (%d differ)",
		   k->name, bad);
	}

	/* DARE's drop and sum of a tile, and the keep test alone: any key,
	 * index, density and number of tasks, special values included */
	if (k->dare_sum || k->dare_keep) {
		int bad_s = 0, bad_k = 0;
		static float a[9 * 1100], o1[1100], o2[1100];
		static double m1[1100], m2[1100];
		static const double dens[] = {0.2, 0.5, 0.9, 1.0, 1e-9, 0.3333333333333333, 0.7};
		for (int round = 0; round < 300; round++) {
			size_t n = round < 40 ? (size_t)round : 1 + rnd32() % 1100;
			unsigned nx = 1 + rnd32() % 9;
			uint64_t key[9], lim[9];
			double div[9];
			uint64_t idx0 = round % 3 == 0 ? UINT64_MAX - rnd32() % 2000 : (uint64_t)rnd32() << 20;
			for (unsigned i = 0; i < nx; i++) {
				double d = dens[rnd32() % (sizeof(dens) / sizeof(dens[0]))];
				key[i] = (uint64_t)rnd32() << 32 | rnd32();
				lim[i] = d >= 1.0 ? (uint64_t)1 << 53 : (uint64_t)ceil(d * 0x1p53);
				/* the density, 1, or a rescale's ratio of L1 norms */
				div[i] = rnd32() % 3 == 0 ? 1.0 : rnd32() % 2 ? d : (double)rnd32() / 4294967296.0 + 1e-3;
			}
			for (size_t q = 0; q < nx * n; q++) {
				uint32_t c = rnd32() % 10;
				a[q] = c == 0 ? 0.0f : c == 1 ? -0.0f : c == 2 ? u2f(0x7fc00001u) : c == 3 ? -INFINITY
				     : c == 4 ? u2f(0x00000003u) : c == 5 ? u2f(0x7f7fffffu) : rnd_float();
			}
			if (k->dare_sum) {
				memset(m1, 0x5a, sizeof(m1));
				memset(m2, 0x5a, sizeof(m2));
				kern_scalar.dare_sum(a, n, nx, key, idx0, lim, div, m1);
				k->dare_sum(a, n, nx, key, idx0, lim, div, m2);
				for (size_t j = 0; j < n; j++)
					if (memcmp(&m1[j], &m2[j], 8) && !(isnan(m1[j]) && isnan(m2[j]))) {
						if (!bad_s)
							diag("%s dare_sum element %zu: %a, scalar %a", k->name, j, m2[j], m1[j]);
						bad_s++;
						break;
					}
			}
			if (k->dare_keep) {
				unsigned i = rnd32() % nx;
				memset(o1, 0x5a, sizeof(o1));
				memset(o2, 0x5a, sizeof(o2));
				kern_scalar.dare_keep(a + i * n, o1, n, key[i], idx0, lim[i]);
				k->dare_keep(a + i * n, o2, n, key[i], idx0, lim[i]);
				bad_k += memcmp(o1, o2, sizeof(o1)) != 0;
			}
		}
		ok(bad_s == 0, "%s dare_sum = scalar: 1 to 9 tasks, any index, divisor and value (%d differ)",
		   k->name, bad_s);
		ok(bad_k == 0, "%s dare_keep = scalar, nothing else written (%d differ)", k->name, bad_k);
	}

	/* The divisions of dare_drop and dare_sum where a fast one would
	 * round wrong: quotients within a few units of float64's last place
	 * of a float32 rounding midpoint (d = t0 / m for a midpoint m, values
	 * t0 * 2^k and their neighbours), at the edges of float32's range
	 * (subnormal and overflowing quotients) and d outside the range of
	 * the fast path; every entry kept. */
	if (k->dare_drop || k->dare_sum) {
		int bad = 0, near = 0;
		static float a[1024], b[1024];
		static double m1[1024], m2[1024];
		const uint64_t all = (uint64_t)1 << 53;
		for (int round = 0; round < 2000; round++) {
			size_t n = 1 + rnd32() % 1024;
			uint32_t mb = (rnd32() & 0x007fffffu) | 0x3f000000u; /* a float32 in [0.5, 1) */
			float t0 = u2f((rnd32() & 0x807fffffu) | 0x3f800000u); /* in [1, 2) */
			double m = (double)u2f(mb) + 0x1p-25, d = (double)t0 / m; /* m: a midpoint */
			if (round % 50 == 0)
				d = round % 100 ? 0x1p-600 : 0x1p700;
			else if (round % 11 == 0) /* quotients near FLT_MAX and the overflow */
				d = 1.0 - ldexp((double)(rnd32() % 256), -31), t0 = u2f(0x7f7fff00u);
			else if (round % 7 == 0)
				d = ldexp(d, (int)(rnd32() % 200) - 100);
			for (size_t q = 0; q < n; q++) {
				uint32_t c = rnd32() % 8;
				float t = round % 11 == 0 ? u2f(f2u(t0) | (rnd32() & 0xffu))
				                          : ldexpf(t0, (int)(rnd32() % 300) - 150);
				if (c == 1)
					t = nextafterf(t, INFINITY);
				else if (c == 2)
					t = nextafterf(t, 0.0f);
				else if (c == 3)
					t = rnd_float();
				else if (c == 4)
					t = -t;
				a[q] = b[q] = t;
			}
			for (size_t q = 0; q < n; q++) { /* how often the test case is hard */
				double e = (double)a[q] / d;
				uint64_t u;
				memcpy(&u, &e, 8);
				near += isfinite(e) && e != 0.0 &&
				        ((u & 0x1fffffffu) - (0x10000000u - 4)) <= 8;
			}
			if (k->dare_drop) {
				kern_scalar.dare_drop(a, n, 99, 7, all, d);
				k->dare_drop(b, n, 99, 7, all, d);
				bad += memcmp(a, b, n * sizeof(float)) != 0;
				memcpy(a, b, n * sizeof(float));
			}
			if (k->dare_sum) {
				uint64_t key = 5, lim = all;
				kern_scalar.dare_sum(a, n, 1, &key, 7, &lim, &d, m1);
				k->dare_sum(a, n, 1, &key, 7, &lim, &d, m2);
				bad += memcmp(m1, m2, n * sizeof(double)) != 0;
			}
		}
		ok(bad == 0 && near > 1000,
		   "%s dare_drop and dare_sum divide as the scalar kernel near float32 midpoints, "
		   "at the ends of the range and with any divisor (%d of 2000 differ; %d hard cases)",
		   k->name, bad, near);
	}

	/* dare_sum on tiles that a kernel may sum with one test of the
	 * rounding at the end (every value zero or of magnitude in [2^-100,
	 * 2^100], every divisor in [2^-20, 2^20]): quotients near float32
	 * midpoints among ordinary ones, at the ends of that range, several
	 * tasks and drops; and the same tiles with one value just outside */
	if (k->dare_sum) {
		int bad = 0, near = 0, edge = 0;
		static float a[5 * 1024];
		static double m1[1024], m2[1024];
		for (int round = 0; round < 600; round++) {
			size_t n = 1 + rnd32() % 1024;
			unsigned nx = 1 + rnd32() % 5;
			uint64_t key[5], lim[5];
			double div[5];
			float t0[5];
			for (unsigned i = 0; i < nx; i++) {
				uint32_t mb = (rnd32() & 0x007fffffu) | 0x3f000000u; /* in [0.5, 1) */
				t0[i] = u2f((rnd32() & 0x007fffffu) | 0x3f800000u); /* in [1, 2) */
				key[i] = (uint64_t)rnd32() << 32 | rnd32();
				lim[i] = i % 2 ? (uint64_t)1 << 53 : (uint64_t)1 << 52;
				/* t0 / m for a midpoint m (so that t0 2^k / d is near
				 * one), or a plain divisor; either now and then at an
				 * end of [2^-20, 2^20] */
				div[i] = rnd32() % 4 ? (double)t0[i] / ((double)u2f(mb) + 0x1p-25)
				                     : (double)rnd32() / 4294967296.0 + 0.25;
				if (round % 5 == 0)
					div[i] = ldexp(div[i] / 4, rnd32() % 2 ? -18 : 20);
			}
			for (size_t q = 0; q < nx * n; q++) {
				uint32_t c = rnd32() % 8;
				float t = ldexpf(t0[q / n], (int)(rnd32() % 121) - 60);
				a[q] = c == 0 ? 0.0f : c == 1 ? -0.0f : c == 2 ? nextafterf(t, INFINITY)
				     : c == 3 ? -t : c == 4 ? nextafterf(t, 0.0f)
				     : c == 5 ? u2f((rnd32() & 0x807fffffu) | (uint32_t)(27 + rnd32() % 201) << 23)
				     : t;
			}
			if (round % 3 == 0) { /* the first or last value of one task at an end */
				static const uint32_t ends[] = {0x0d800000u, 0x71800000u, 0x8d800000u, 0xf1800000u};
				a[rnd32() % 2 ? 0 : nx * n - 1] = u2f(ends[rnd32() % 4]);
				edge++;
			}
			for (size_t q = 0; q < nx * n; q++) {
				double e = (double)a[q] * (1.0 / div[q / n]);
				uint64_t u;
				memcpy(&u, &e, 8);
				near += e != 0.0 && ((u & 0x1fffffffu) - (0x10000000u - 4)) <= 8;
			}
			for (int out = 0; out < 2; out++) { /* the tile, then one value outside */
				if (out) {
					static const uint32_t outs[] = {0x0d7fffffu, 0x71800001u, 0x00000001u, 0x7f800000u, 0x7fc00000u};
					a[rnd32() % (nx * n)] = u2f(outs[rnd32() % 5]);
				}
				kern_scalar.dare_sum(a, n, nx, key, 11, lim, div, m1);
				k->dare_sum(a, n, nx, key, 11, lim, div, m2);
				for (size_t j = 0; j < n; j++)
					if (memcmp(&m1[j], &m2[j], 8) && !(isnan(m1[j]) && isnan(m2[j]))) {
						if (!bad)
							diag("%s dare_sum round %d%s element %zu: %a, scalar %a", k->name,
							     round, out ? " (one outside)" : "", j, m2[j], m1[j]);
						bad++;
						break;
					}
			}
		}
		ok(bad == 0 && near > 1000 && edge > 100,
		   "%s dare_sum = scalar on tiles of values in [2^-100, 2^100] and divisors in [2^-20, 2^20], "
		   "near float32 midpoints and with one value outside (%d differ; %d hard cases)",
		   k->name, bad, near);
	}

	/* exhaustive 16-bit decodes through the vector path */
	static uint16_t all[65536];
	static float d1[65536], d2[65536];
	for (uint32_t h = 0; h < 65536; h++)
		all[h] = (uint16_t)h;
	int ex = 0;
	k->decode(DT_F16, all, d2, 65536);
	kern_scalar.decode(DT_F16, all, d1, 65536);
	ex += memcmp(d1, d2, sizeof(d1)) != 0;
	k->decode(DT_BF16, all, d2, 65536);
	kern_scalar.decode(DT_BF16, all, d1, 65536);
	ex += memcmp(d1, d2, sizeof(d1)) != 0;
	ok(ex == 0, "%s decodes all 65536 F16 and BF16 values as the scalar kernels do", k->name);
}

/* Breadcrumbs' merge of a tile (kern_ties.c): its loops of eight elements
 * at a time (k's bc_merge kernel, or the portable loop of breadcrumbs_ties
 * with weights of magnitude in [2^-900, 2^900]) against its strip's
 * loops, which a tile of one element takes: the same bits in every
 * element (a NaN may differ in payload: the output makes every NaN the
 * default one); tasks with NaN, infinities, zeros of both signs,
 * subnormals, cuts anywhere (keep none, no top cut), weights of both
 * signs and some out of that range, with and without normalizing. */
static void test_bc_merge(const struct kern *k)
{
	static float tp[9 * 300], one[9];
	static double m1[300], m2[300], sc[BC_SCRATCH];
	static const uint32_t specials[] = {0x7fc00000u, 0xffc00001u, 0x7f800000u, 0xff800000u,
	                                    0x00000000u, 0x80000000u, 0x00000001u, 0x807fffffu};
	int bad = 0, rounds = 0;
	for (int round = 0; round < 600; round++) {
		unsigned nx = 1 + rnd32() % 9;
		size_t n = 1 + rnd32() % 300;
		int ties = round % 4 != 3, normalize = rnd32() % 2;
		uint32_t lo[9], hi[9];
		double w[9], ws = 0.0;
		for (unsigned i = 0; i < nx; i++) {
			uint32_t a = rnd32() % 0x7f800001u, b = rnd32() % 0x7f800001u, r = rnd32() % 8;
			lo[i] = r == 0 ? 0 : r == 1 ? UINT32_MAX : (a < b ? a : b) >> (rnd32() % 8);
			hi[i] = r == 2 ? UINT32_MAX : r == 3 ? 0x7f800000u : (a < b ? b : a);
			w[i] = rnd32() % 4 == 0 ? 1.0 /* a 1 among others */
			                        : ldexp((double)(rnd32() % 2000) / 1000.0 - 1.0,
			                                (int)(rnd32() % 21) - 10);
			if (w[i] == 0.0)
				w[i] = 0.5;
			if (rnd32() % 32 == 0) /* the ends of [2^-900, 2^900] */
				w[i] = rnd32() % 2 ? -0x1p900 : 0x1p-900;
			if (rnd32() % 16 == 0) { /* out of [2^-900, 2^900]: the strip's other loop with ties */
				static const double odd[] = {0.0, -0.0, INFINITY, -INFINITY, NAN, 0x1p-1000,
				                             -0x1p1000};
				w[i] = odd[rnd32() % 7];
			}
			ws += w[i];
		}
		for (size_t q = 0; q < nx * n; q++) {
			uint32_t r = rnd32() % 16;
			tp[q] = r == 0 ? u2f(specials[rnd32() % 8])
			        : r < 4 ? u2f(rnd32()) /* any bits */
			                : (float)((double)(int32_t)rnd32() * 0x1p-40);
		}
		bc_merge_tile(k, tp, nx, n, lo, hi, w, ties, normalize, ws == 0.0 ? 1.0 : ws, m1, sc);
		for (size_t j = 0; j < n; j++) {
			for (unsigned i = 0; i < nx; i++)
				one[i] = tp[(size_t)i * n + j];
			bc_merge_tile(k, one, nx, 1, lo, hi, w, ties, normalize, ws == 0.0 ? 1.0 : ws,
			              m2 + j, sc);
			bad += !(memcmp(&m1[j], &m2[j], 8) == 0 || (isnan(m1[j]) && isnan(m2[j])));
		}
		rounds += n >= 8;
	}
	ok(bad == 0 && rounds > 400,
	   "%s bc_merge_tile: eight at a time = the strip's loops, element by element (%d differ)",
	   k->name, bad);
}

/* One element of a tile in dtype dt, as bits: mostly task-vector sized
 * values near base value b (a few near zero), sometimes any bits, NaN,
 * an infinity or a zero of either sign. */
static void put_elem(enum dtype dt, unsigned char *p, float b, int special)
{
	static const uint32_t specials[] = {0x7fc00000u, 0xff800001u, 0x7f800000u, 0xff800000u,
	                                    0x00000000u, 0x80000000u, 0x00000001u, 0x807fffffu};
	uint32_t r = rnd32() % 16;
	float f = special && r == 0 ? u2f(specials[rnd32() % 8])
	          : special && r == 1 ? u2f(rnd32())
	                              : b + (float)((double)(int32_t)rnd32() * 0x1p-38);
	uint32_t u;
	memcpy(&u, &f, 4);
	if (dt == DT_F32)
		memcpy(p, &u, 4);
	else if (dt == DT_BF16) {
		uint16_t h = (uint16_t)(u >> 16);
		memcpy(p, &h, 2);
	} else {
		uint16_t h = (uint16_t)(special && r == 1 ? rnd32() : 0);
		if (!(special && r == 1)) { /* a value near b in F16 */
			float g = f;
			h = 0;
			kern_scalar.encode(DT_F16, &g, &h, 1);
		}
		memcpy(p, &h, 2);
	}
}

/* Breadcrumbs' taus and merge in one loop (k's bc_taus_merge) against the
 * taus, the merge and the raw sum of each element alone (the strip's
 * loops): the same bits of the base, the merge and the sum in every
 * element of BF16, F16 and F32 tiles (a NaN may differ in payload), with
 * every weight 1, some 1 and some not, and others (some at the ends of
 * [2^-900, 2^900] or just outside), with and without ties, normalizing and
 * the sum; tiles of any length (the kernel takes eight or sixteen at a
 * time, the rest is the tile's loops). */
static void test_bc_taus_merge(const struct kern *k)
{
	static const enum dtype dts[] = {DT_BF16, DT_F16, DT_F32};
	static unsigned char xb[9][300 * 4], bb[300 * 4];
	static float bt1[300], bt2[300], tp[9 * 300];
	static double m1[300], m2[300], s1[300], s2[300], sc[BC_SCRATCH];
	static const double ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
	int bad = 0, rounds = 0, fused = 0;
	for (int round = 0; round < 900; round++) {
		enum dtype dt = dts[round % 3];
		unsigned nx = 1 + rnd32() % 9, es = dt == DT_F32 ? 4 : 2;
		size_t n = 1 + rnd32() % 300;
		int ties = round % 5 != 4, normalize = rnd32() % 2, unit = rnd32() % 2,
		    mixed = !unit && rnd32() % 2, raw = rnd32() % 3 != 0, special = rnd32() % 2;
		uint32_t lo[9], hi[9];
		double w[9], ws = 0.0;
		const void *xs[9];
		for (unsigned i = 0; i < nx; i++) {
			/* cuts among the magnitudes of task vectors near 2^-14 */
			uint32_t a = 0x36000000u + rnd32() % 0x4000000u, b = 0x36000000u + rnd32() % 0x4000000u,
			         r = rnd32() % 8;
			lo[i] = r == 0 ? 0 : r == 1 ? UINT32_MAX : (a < b ? a : b);
			hi[i] = r == 2 ? UINT32_MAX : r == 3 ? 0x7f800000u : (a < b ? b : a);
			/* all 1; or some 1 and some not (mixed); or any */
			w[i] = unit || (mixed && rnd32() % 2)
			           ? 1.0
			           : ldexp((double)(rnd32() % 2000) / 1000.0 - 1.0, (int)(rnd32() % 5) - 2);
			if (w[i] == 0.0 || (!unit && rnd32() % 16 == 0)) {
				/* at the ends of [2^-900, 2^900] and just outside */
				static const double odd[] = {0x1p900,  -0x1p900, 0x1p-900, -0x1p-900,
				                             0x1.0000000000001p900, -0x1.fffffffffffffp-901,
				                             0x1p-1000, -0.25};
				w[i] = odd[rnd32() % 8];
			}
			ws += w[i];
			xs[i] = xb[i];
		}
		for (size_t j = 0; j < n; j++) {
			float b = (float)((double)(int32_t)rnd32() * 0x1p-37);
			put_elem(dt, bb + j * es, b, special);
			for (unsigned i = 0; i < nx; i++)
				put_elem(dt, xb[i] + j * es, b, special);
		}
		double wdiv = ws == 0.0 ? 1.0 : ws;
		bc_taus_merge_tile(k, dt, xs, nx, bb, ones, n, lo, hi, w, ties, normalize, wdiv, bt1, tp,
		                   m1, raw ? s1 : NULL, sc);
		for (size_t j = 0; j < n; j++) {
			const void *xj[9];
			for (unsigned i = 0; i < nx; i++)
				xj[i] = xb[i] + j * es;
			bc_taus_merge_tile(k, dt, xj, nx, bb + j * es, ones, 1, lo, hi, w, ties, normalize,
			                   wdiv, bt2 + j, tp, m2 + j, s2 + j, sc);
			bad += memcmp(&bt1[j], &bt2[j], 4) != 0;
			bad += !(memcmp(&m1[j], &m2[j], 8) == 0 || (isnan(m1[j]) && isnan(m2[j])));
			bad += raw && !(memcmp(&s1[j], &s2[j], 8) == 0 || (isnan(s1[j]) && isnan(s2[j])));
		}
		rounds += n >= 16;
		fused += n >= 16 && ties && unit;
	}
	ok(bad == 0 && rounds > 800 && fused > 200,
	   "%s bc_taus_merge_tile: whole tiles = each element alone (%d differ)", k->name, bad);
}

int main(void)
{
	struct lines_error e;
	static const char *const isas[] = {"avx2", "avx512", "neon"};

	test_conversions();
	test_scalar_definition();
	test_norm_sum();
	test_pow2_inverse();
	test_dare_definition();
	test_bc_merge(&kern_scalar); /* the portable loop */
	test_bc_taus_merge(&kern_scalar);
	ok(kern_get(&e) != NULL, "kernels chosen for this machine: %s",
	   kern_get(&e) ? kern_get(&e)->name : e.msg);
	for (size_t i = 0; i < sizeof(isas) / sizeof(isas[0]); i++) {
		const struct kern *k = kern_by_name(isas[i]);
		if (!k) {
			skip("%s kernels: not built or not supported by this CPU", isas[i]);
			continue;
		}
		test_isa(k);
		if (k->bc_merge)
			test_bc_merge(k);
		test_bc_taus_merge(k);
	}
	return tap_done();
}
