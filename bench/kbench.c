/*
 * kbench.c -- the speed of every kernel of every instruction set built
 * here and supported by this CPU, in GB/s of input bytes, on buffers that
 * stay in the cache (64 KiB per input) and on buffers that do not
 * (256 MiB per input), beside memcpy of the same bytes.
 *
 * Output, one line per measurement:
 *   kernel dtype N buffers isa GB/s
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#define NMOD 4

static unsigned char *in[NMOD + 1], *outb;
static float *fb;
static double *acc;

/* run f over `elems` elements in tiles of `tile`, until `secs` elapse */
typedef void (*bench_fn)(const struct kern *k, size_t off, size_t n);

static void b_decode(const struct kern *k, size_t off, size_t n)
{
	k->decode(DT_BF16, in[0] + 2 * off, fb, n);
}
static void b_encode(const struct kern *k, size_t off, size_t n)
{
	k->encode(DT_BF16, fb, outb + 2 * off, n);
}
static void b_merge(const struct kern *k, size_t off, size_t n)
{
	static const double c[NMOD] = {1, 1, 1, 1};
	const void *x[NMOD];
	for (int i = 0; i < NMOD; i++)
		x[i] = in[i + 1] + 2 * off;
	k->merge_lin(DT_BF16, x, NMOD, in[0] + 2 * off, c, 0.5, DT_BF16, outb + 2 * off, n);
}
static void b_norm(const struct kern *k, size_t off, size_t n)
{
	static const double c[NMOD] = {1, 2, 3, 4};
	struct kern_norms nm;
	const void *x[NMOD];
	memset(&nm, 0, sizeof(nm));
	for (int i = 0; i < NMOD; i++)
		x[i] = in[i + 1] + 2 * off;
	k->decode(DT_BF16, in[0] + 2 * off, fb, n);
	k->norm_lin(DT_BF16, x, NMOD, fb, c, n, &nm);
}
/* TIES's tiles: the four task vectors of a tile, then their election
 * with thresholds near the 80th percentile of |tau| (the default density) */
static float *tp;
static void b_taus(const struct kern *k, size_t off, size_t n)
{
	static const double w[NMOD] = {1, 1, 1, 1};
	for (size_t j = 0; j < n; j += KERN_TILE) {
		size_t m = n - j < KERN_TILE ? n - j : KERN_TILE;
		const void *x[NMOD];
		for (int i = 0; i < NMOD; i++)
			x[i] = in[i + 1] + 2 * (off + j);
		k->taus(DT_BF16, x, NMOD, in[0] + 2 * (off + j), w, m, fb, tp);
	}
}
static void b_elect(const struct kern *k, size_t off, size_t n)
{
	static const uint32_t thr[NMOD] = {0x3b000000, 0x3b000000, 0x3b000000, 0x3b000000};
	(void)off;
	for (size_t j = 0; j < n; j += KERN_TILE)
		k->ties_elect(tp, n - j < KERN_TILE ? n - j : KERN_TILE, NMOD, thr, 1, acc,
		              (signed char *)outb);
}
/* DARE's drops and their sum over that tile (density 0.3, divided by
 * 0.3, which no float32 is), and the keep test alone (the rescale pass) */
static const uint64_t dkey[NMOD] = {1, 2, 3, 4};
static const uint64_t dlim[NMOD] = {2702159776422298ull, 2702159776422298ull,
                                    2702159776422298ull, 2702159776422298ull};
static void b_dare_sum(const struct kern *k, size_t off, size_t n)
{
	static const double dv[NMOD] = {0.3, 0.3, 0.3, 0.3};
	for (size_t j = 0; j < n; j += KERN_TILE)
		k->dare_sum(tp, n - j < KERN_TILE ? n - j : KERN_TILE, NMOD, dkey, off + j, dlim, dv, acc);
}
static void b_dare_keep(const struct kern *k, size_t off, size_t n)
{
	for (size_t j = 0; j < n; j += KERN_TILE)
		for (int i = 0; i < NMOD; i++) {
			size_t m = n - j < KERN_TILE ? n - j : KERN_TILE;
			k->dare_keep(tp + (size_t)i * m, fb, m, dkey[i], off + j, dlim[i]);
		}
}
static void b_memcpy(const struct kern *k, size_t off, size_t n)
{
	(void)k;
	for (int i = 0; i <= NMOD; i++) /* the same input bytes as merge_lin */
		memcpy(outb + 2 * off, in[i] + 2 * off, 2 * n);
}

static double measure(const struct kern *k, bench_fn f, size_t elems, size_t tile,
                      double in_bytes_per_elem)
{
	double t0 = now(), t;
	size_t done = 0;
	do {
		for (size_t off = 0; off < elems; off += tile)
			f(k, off, elems - off < tile ? elems - off : tile);
		done += elems;
		t = now() - t0;
	} while (t < 0.3);
	return (double)done * in_bytes_per_elem / t / 1e9;
}

int main(void)
{
	static const char *const isas[] = {"scalar", "avx2", "avx512", "neon"};
	const size_t large = 128u << 20; /* elements: 256 MiB of bf16 per input */
	const size_t small = 32u << 10;  /* elements: 64 KiB per input */
	static const struct {
		const char *name;
		bench_fn f;
		double bytes; /* input bytes per element */
		int nmod;
	} ks[] = {
		{"decode", b_decode, 2, 0},
		{"encode", b_encode, 4, 0},
		{"merge_lin", b_merge, 2 * (NMOD + 1), NMOD},
		{"norm_lin", b_norm, 2 * (NMOD + 1), NMOD},
		{"taus", b_taus, 2 * (NMOD + 1), NMOD},
		{"ties_elect", b_elect, 2 * (NMOD + 1), NMOD},
		{"dare_sum", b_dare_sum, 2 * (NMOD + 1), NMOD},
		{"dare_keep", b_dare_keep, 2 * (NMOD + 1), NMOD},
		{"memcpy", b_memcpy, 2 * (NMOD + 1), NMOD},
	};

	for (int i = 0; i <= NMOD; i++) {
		in[i] = malloc(2 * large);
		if (!in[i])
			return 1;
		for (size_t j = 0; j < 2 * large; j += 2) { /* bf16 values near 0.01 */
			uint16_t h = (uint16_t)(0x3c23 + ((j * 2654435761u + (size_t)i * 97) >> 7) % 64);
			memcpy(in[i] + j, &h, 2);
		}
	}
	outb = malloc(4 * large);
	fb = malloc(4 * large);
	acc = malloc(8 * large);
	tp = malloc(4 * NMOD * KERN_TILE);
	if (!outb || !fb || !acc || !tp)
		return 1;
	{ /* one tile of task vectors for the election */
		static const double w[NMOD] = {1, 1, 1, 1};
		const void *x[NMOD];
		for (int i = 0; i < NMOD; i++)
			x[i] = in[i + 1];
		kern_scalar.taus(DT_BF16, x, NMOD, in[0], w, KERN_TILE, fb, tp);
	}
	for (size_t j = 0; j < large; j++)
		fb[j] = 0.01f * (float)(j % 100);

	printf("%-10s %-5s %-2s %-6s %-7s %s\n", "kernel", "dtype", "N", "buffer", "isa", "GB/s");
	for (size_t s = 0; s < 2; s++) {
		size_t elems = s ? large : small;
		for (size_t q = 0; q < sizeof(ks) / sizeof(ks[0]); q++)
			for (size_t i = 0; i < sizeof(isas) / sizeof(isas[0]); i++) {
				const struct kern *k = kern_by_name(isas[i]);
				if (!k || (ks[q].f == b_memcpy && i > 0) ||
				    (ks[q].f == b_taus && !k->taus) || (ks[q].f == b_elect && !k->ties_elect) ||
				    (ks[q].f == b_dare_sum && !k->dare_sum) ||
				    (ks[q].f == b_dare_keep && !k->dare_keep))
					continue;
				double g = measure(k, ks[q].f, elems, s ? 128u << 10 : small, ks[q].bytes);
				printf("%-10s %-5s %-2d %-6s %-7s %.2f\n", ks[q].name, "bf16", ks[q].nmod,
				       s ? "large" : "cache", ks[q].f == b_memcpy ? "-" : isas[i], g);
				fflush(stdout);
			}
	}
	return 0;
}
