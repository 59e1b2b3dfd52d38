/*
 * kernels.h -- the element operations every merge method is made of, as a
 * table of function pointers with one implementation per instruction set.
 *
 * The scalar kernels (kern_scalar.c) are the definition of correct. Every
 * other implementation must return the very same bits for every input,
 * NaN payloads included, so the rules below fix the order of operations
 * and where a fused multiply-add is used:
 *
 *   decode     float32 from BF16/F16/F32 (F64 rounds to nearest even);
 *              a NaN keeps its sign and payload and gets the quiet bit.
 *   encode     float32 to the output dtype, round to nearest even;
 *              overflow gives infinity, subnormals are exact, a NaN stays
 *              a NaN (sign and top payload bits kept, quiet bit set).
 *   accum      tau = dec(x) - b, rounded to float32 (the task vector as
 *              the spec defines it), then in float64:
 *              acc = c * tau            for the first model
 *              acc = fma(c, tau, acc)   for every next one
 *   finish     r = fma(lambda, m, b) in float64, then f = (float)r, round
 *              to nearest even, and out = enc(f); a NaN f is replaced by
 *              the default quiet NaN 0x7fc00000 (NaN payloads out of
 *              arithmetic differ between instruction sets). F64 output
 *              stores r itself (NaN: 0x7ff8000000000000).
 *
 * Why float64 for the sum and the add-back: float32 there loses up to
 * thousands of ULPs of an F32 output when theta_0 and lambda * tau nearly
 * cancel, and the result must stay within one ULP of the exact value.
 * The task vectors themselves are float32, as specified.
 *   merge_lin  accum over the N models and finish, fused: per element,
 *              b = dec(base), acc = c_0 tau_0, acc = fma(c_i, tau_i, acc),
 *              out = enc(canon((float)fma(lambda, acc, b))). The same bits
 *              as the separate calls, without the round trips through
 *              memory (the hot loop of sum and mean).
 *   norm_lin   float64: s = sum_i tau_i, t = sum_i c_i * tau_i (multiply,
 *              then add, models in order); lane j % 8 of a block of
 *              KERN_BLOCK elements accumulates |s|, |t|, s*s and t*t,
 *              unless s or t is not finite (a NaN or infinite weight):
 *              such elements are left out of the norms.
 *
 * TIES and DARE work on the task vectors of one element at a time,
 * tau'_i = (float)(w_i * (double)tau_i) (exact when w_i is 1; an F64
 * tensor written as F64 does not come here: every method computes it
 * in float64, in portable C, src/methods/f64.h):
 *   taus        decode and subtract into tiles of tau' (kern_ties.h);
 *   ties_elect  with thresholds T_i (bit patterns of |tau'| kept when >=),
 *               P and N = the float64 sums, tasks in order, of the kept
 *               positive and of the kept negative tau', S = P + N,
 *               s = sign(S), or the model's majority sign when S == 0;
 *               tau_MTL = mean of the kept tau' of sign s, P or N over
 *               their count (0 if none); a kept NaN makes it NaN;
 *   ties_select, ties_bins, ties_decided
 *               the work of each TIES pass over those (below), the
 *               select pass fused from the raw inputs;
 *   dare_drop   keep an entry when a hash of (seed, task, tensor, index)
 *               falls below a limit, divide it by the density (below);
 *   dare_sum, dare_keep
 *               the drop and the sum of a tile's tasks in one step, and
 *               the keep test alone (the rescale pass);
 *   bc_merge, bc_taus_merge
 *               breadcrumbs' merge of a tile's tasks (kern_ties.h), and
 *               the same with the taus.
 * These are in the scalar and AVX2 tables, but for bc_merge, which only
 * the AVX-512 table has, and bc_taus_merge, which only the AVX2 and
 * AVX-512 tables have; NULL in a table means
 * the scalar kernel (or, for taus and select, the tile loops of
 * kern_ties.c and merge_ties.c around the table's own decode; for the
 * two of breadcrumbs, kern_ties.c's portable loops). The counting of the
 * select pass (ties_hist) exists once, in portable C.
 *
 * GGUF's K-type encoders (src/core/ggml_quants.c) use one kernel:
 *   qk_fit8     the Q4_K/Q5_K sub-block fit, eight sub-blocks at once;
 *   q6_fit8     the Q6_K sub-block fit likewise
 *               (AVX2 and NEON; NULL: ggml_quants.c's scalar fits).
 *
 * Kernels know nothing of files, tensors or threads; they are pure
 * functions of their arguments and safe to call from any thread.
 */
#ifndef LINES_KERNELS_H
#define LINES_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/*
 * LINES_HOT marks a function where per-element float64 loops in portable
 * C run (a pass's work callback, the portable element operations): every
 * function it calls in its file is inlined into it (flatten), and with
 * GCC on x86-64 (not under ThreadSanitizer: the CPU's choice is made by
 * an ifunc resolver that runs while the program is relocated, before
 * TSan's runtime is up, and crashes there) it is compiled
 * three times, at -O3, for x86-64-v4 (AVX-512), x86-64-v3 (AVX2, FMA) and
 * the baseline, the CPU choosing one when the program is loaded. The
 * three are the same IEEE operations in the same order (no contraction,
 * no reassociation: FP_CFLAGS), so they give the same bits; they differ
 * in speed only (vector registers, and fma() as one instruction rather
 * than a call). LINES_ISA chooses the kernels, not these. (Not
 * -fno-trapping-math: GCC does not inline a function with floating-point
 * code into one built with other floating-point options, and flatten
 * would stop at every helper. A loop that must not branch computes its
 * division or fma for every element in one loop and chooses in another.)
 */
#if defined(HAVE_TARGET_CLONES) && !defined(__SANITIZE_THREAD__) && defined(LINES_NO_AVX512_CLONES)
/* CPPFLAGS=-DLINES_NO_AVX512_CLONES: a build without the AVX-512 clones,
 * which with LINES_ISA=avx2 runs as a CPU without AVX-512 runs lines, to
 * measure that on a machine that has it */
#define LINES_HOT                                                                                \
	__attribute__((flatten, optimize("O3", "fp-contract=off"),                                    \
	               target_clones("arch=x86-64-v3", "default")))
#elif defined(HAVE_TARGET_CLONES) && !defined(__SANITIZE_THREAD__)
#define LINES_HOT                                                                                \
	__attribute__((flatten, optimize("O3", "fp-contract=off"),                                    \
	               target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#elif defined(__GNUC__)
#define LINES_HOT __attribute__((flatten))
#else
#define LINES_HOT
#endif

#define KERN_LANES 8

#if defined(__GNUC__)
/*
 * KERN_LANES elements in GNU C's vector types: one AVX-512 register
 * (kv8*), or four in one AVX2 register (kv4*: a loop written for both,
 * kv_width.h, takes the eight lanes as two vectors of four where a
 * register holds four, which GCC would otherwise keep in memory). The
 * arithmetic is lane by lane, each lane the same IEEE operations as one
 * element of the scalar reference, so the vector loops written in them
 * give the same bits on every instruction set and at either width. Load
 * and store by memcpy; pass them through macros, not functions (a
 * function taking or returning a 64-byte vector has another ABI with
 * AVX-512 than without, which GCC warns of).
 */
typedef double kv8d __attribute__((vector_size(64)));
typedef uint64_t kv8u __attribute__((vector_size(64)));
typedef int64_t kv8i __attribute__((vector_size(64)));
typedef float kv8f __attribute__((vector_size(32)));
typedef uint32_t kv8uw __attribute__((vector_size(32)));
typedef int32_t kv8w __attribute__((vector_size(32)));
typedef uint16_t kv8h __attribute__((vector_size(16)));
typedef uint8_t kv8b __attribute__((vector_size(8)));
typedef double kv4d __attribute__((vector_size(32)));
typedef uint64_t kv4u __attribute__((vector_size(32)));
typedef int64_t kv4i __attribute__((vector_size(32)));
typedef float kv4f __attribute__((vector_size(16)));
typedef uint32_t kv4uw __attribute__((vector_size(16)));
typedef int32_t kv4w __attribute__((vector_size(16)));
typedef uint16_t kv4h __attribute__((vector_size(8)));
typedef uint8_t kv4b __attribute__((vector_size(4)));
/* a where mask (all ones in a lane), else b */
#define KV8_PICK(mask, a, b)                                                                      \
	((kv8d)(((kv8u)(a) & (kv8u)(mask)) | ((kv8u)(b) & ~(kv8u)(mask))))
/* The macros below write a vector lane by lane, every lane, which GCC
 * may take for a use of the vector before it is set (-Wmaybe-uninitialized
 * at their lines, as aarch64's GCC 12 does); zeroing it first would cost
 * the vectorization of the loops. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
/*
 * Comparisons and conversions are written as loops over the lanes: GCC
 * 12, in a function whose target attribute raises the instruction set
 * (LINES_HOT's clones), may lower a comparison of vectors written with
 * the operator, or __builtin_convertvector, to one operation per lane or
 * per 128 bits, as for the baseline; these loops it makes one instruction.
 * Except a comparison of four 64-bit lanes on x86-64: there GCC 12 does
 * the opposite (in the AVX2 clone it compares the loop's lanes one by
 * one, and the operator in one instruction), so KV_CMP takes the
 * operator for those (the same masks). On aarch64 the loop stays: its
 * GCC 12 makes the operator one compare a lane, the loop two NEON ones.
 */
/* The number of lanes of vector v */
#define KV_LANES(v) (sizeof(v) / sizeof((v)[0]))
/* r = (a OP b) lane by lane as a mask: -1 where it holds, 0 elsewhere
 * (any width: r's lanes the size of a's) */
#if defined(__x86_64__)
#define KV_CMP_OP 1 /* the operator for four 64-bit lanes (see above) */
#else
#define KV_CMP_OP 0 /* aarch64's GCC 12 compares them lane by lane */
#endif
#define KV_CMP(r, a, op, b)                                                                       \
	do {                                                                                      \
		if (KV_CMP_OP && sizeof(r) == 32 && KV_LANES(r) == 4)                            \
			(r) = (__typeof__(r))((a)op(b));                                            \
		else                                                                              \
			for (unsigned l_ = 0; l_ < KV_LANES(r); l_++)                             \
				(r)[l_] = (a)[l_] op(b)[l_] ? -1 : 0;                               \
	} while (0)
/* the same where r's lanes are wider than a's (a mask of bytes widened) */
#define KV_CMP_WIDE(r, a, op, b)                                                                  \
	do {                                                                                      \
		for (unsigned l_ = 0; l_ < KV_LANES(r); l_++)                                     \
			(r)[l_] = (a)[l_] op(b)[l_] ? -1 : 0;                                       \
	} while (0)
/* r (kv8d, kv4d) = x (kv8f, kv4f) widened, exactly */
#define KV_WIDEN(r, x)                                                                            \
	do {                                                                                      \
		for (unsigned l_ = 0; l_ < KV_LANES(r); l_++)                                     \
			(r)[l_] = (double)(x)[l_];                                                  \
	} while (0)
/* r (kv8f, kv4f) = the BF16 values at p (little-endian bytes), one a
 * lane, as float32: each one's bits shifted up by 16, as
 * kern_bf16_to_f32() */
#define KV_BF16(r, p)                                                                             \
	do {                                                                                      \
		typedef uint16_t h_t_ __attribute__((vector_size(sizeof(r) / 2)));                \
		typedef uint32_t u_t_ __attribute__((vector_size(sizeof(r))));                    \
		h_t_ h_;                                                                          \
		u_t_ u_;                                                                          \
		memcpy(&h_, (p), sizeof(h_));                                                     \
		for (unsigned l_ = 0; l_ < KV_LANES(r); l_++)                                     \
			u_[l_] = (uint32_t)h_[l_] << 16;                                            \
		(r) = (__typeof__(r))u_;                                                          \
	} while (0)
/* r (kv8f, kv4f) = the input values of element j on: from raw (BF16
 * bytes, decoded with KV_BF16) when it is not NULL, else from the
 * float32 values at f (the kernels' decoding) */
#define KV_LOAD_F32(r, raw, f, j)                                                                 \
	do {                                                                                      \
		if (raw)                                                                          \
			KV_BF16(r, (raw) + 2 * (j));                                              \
		else                                                                              \
			memcpy(&(r), (f) + (j), sizeof(r));                                       \
	} while (0)
/* The float32 values at dst = x (kv8d, kv4d) rounded to float32, a NaN
 * as the default quiet NaN (tile_store()'s rounding): a NaN is made
 * +0x7ff8... first, which rounds to 0x7fc00000 */
#define KV_STORE_F32(dst, x)                                                                      \
	do {                                                                                      \
		typedef uint64_t u_t_ __attribute__((vector_size(sizeof(x))));                    \
		typedef int64_t i_t_ __attribute__((vector_size(sizeof(x))));                     \
		typedef float f_t_ __attribute__((vector_size(sizeof(x) / 2)));                  \
		__typeof__(x) x_ = (x);                                                           \
		i_t_ n_;                                                                          \
		f_t_ f_;                                                                          \
		KV_CMP(n_, x_, !=, x_);                                                           \
		x_ = (__typeof__(x))(((u_t_)x_ & ~(u_t_)n_) |                                     \
		                     (((u_t_){0} + 0x7ff8000000000000ull) & (u_t_)n_));            \
		for (unsigned l_ = 0; l_ < KV_LANES(x_); l_++)                                    \
			f_[l_] = (float)x_[l_];                                                     \
		memcpy((dst), &f_, sizeof(f_));                                                   \
	} while (0)
/* r = fma(a, b, c) lane by lane, which the compiler makes one instruction
 * where it has one (any width) */
#define KV_FMA(r, a, b, c)                                                                        \
	do {                                                                                      \
		for (unsigned l_ = 0; l_ < KV_LANES(r); l_++)                                     \
			(r)[l_] = fma((a)[l_], (b)[l_], (c)[l_]);                                   \
	} while (0)
#pragma GCC diagnostic pop
#endif
/* Norms are reduced per block of this many elements, aligned to the start
 * of each tensor, so the sums do not depend on how work is chunked. */
#define KERN_BLOCK 4096
/* Elements a worker decodes at a time (fits L1 several times over). */
#define KERN_TILE 1024

struct kern_norms {
	double s1[KERN_LANES], t1[KERN_LANES]; /* sum |s|, sum |t| */
	double s2[KERN_LANES], t2[KERN_LANES]; /* sum s^2, sum t^2 */
};

struct kern {
	const char *name;
	/* the portable loops' vectors: eight lanes (a 64-byte register) when
	 * set, else four (kv_width.h); only the avx512 table sets it */
	int wide;
	void (*decode)(enum dtype dt, const void *src, float *dst, size_t n);
	void (*encode)(enum dtype dt, const float *src, void *dst, size_t n);
	void (*accum)(enum dtype dt, const void *x, const float *b, double c, double *acc, size_t n,
	              int first);
	void (*finish)(enum dtype odt, void *out, const float *b, const double *m, double lambda,
	               size_t n);
	void (*merge_lin)(enum dtype dt, const void *const *x, unsigned nx, const void *base,
	                  const double *c, double lambda, enum dtype odt, void *out, size_t n);
	void (*norm_lin)(enum dtype dt, const void *const *x, unsigned nx, const float *b,
	                 const double *c, size_t n, struct kern_norms *acc);
	/*
	 * The tiles of TIES and DARE: bt = dec(base), and tp[i * n + j] =
	 * tau'_i of element j = dec(x_i) - bt rounded to float32, then, when
	 * w_i is not 1, (float)(w_i * (double)tau_i). NULL: the portable
	 * loop of kern_ties.c around this table's decode.
	 */
	void (*taus)(enum dtype dt, const void *const *x, unsigned nx, const void *base,
	             const double *w, size_t n, float *bt, float *tp);
	/*
	 * TIES election over n elements: tp[i * n + j] is tau'_i of element
	 * j; kept when tau' != 0 and its magnitude's bits >= thr[i]; mtl[j]
	 * and sign[j] as ties_elect() in kern_ties.h defines them. NULL in a
	 * table means: use the scalar one.
	 */
	void (*ties_elect)(const float *tp, size_t n, unsigned nx, const uint32_t *thr, int maj,
	                   double *mtl, signed char *sign);
	/* The threshold pass's sums over the elected elements: ties_decided()
	 * in kern_ties.h defines it. NULL: scalar. */
	int64_t (*ties_decided)(const double *mtl, const signed char *sign, unsigned char *open,
	                        size_t n, double *dl, double *dq);
	/*
	 * TIES's select pass in one step: hist[i][ties_key(mag(tau'_i))]++
	 * for each element (taus's tau'), and norm_lin's s1 and s2 with every
	 * c = 1 (the raw tau, whatever the weights), element j in lane
	 * j % 8; with tp, also tp[i * ld + j] = tau'_i of element j, the
	 * tiles taus makes. The same counts and bits as taus, the counting
	 * and norm_lin. s1 NULL: the counts (and tiles) without the norms,
	 * s2 unused. NULL: those on tiles.
	 */
	void (*ties_select)(enum dtype dt, const void *const *x, unsigned nx, const void *base,
	                    const double *w, size_t n, uint32_t *const *hist, double *s1,
	                    double *s2, float *tp, size_t ld);
	/* The threshold pass's low-bit counts and open flags: ties_bins() in
	 * kern_ties.h defines them. NULL: scalar. */
	void (*ties_bins)(const float *tp, unsigned nx, size_t n, const uint32_t *bin,
	                  uint32_t *const *hist, unsigned char *open);
	/*
	 * DARE's drop and rescale of n values of one task, elements idx0 on:
	 * x = kern_mix64(key ^ idx * 0xd1b54a32d192ed03) >> 11, and
	 * tp[j] = x < limit ? (float)((double)tp[j] / density) : +0.0f.
	 * Integer hashing and one IEEE division: the same bits everywhere.
	 * NULL in a table means: use the scalar one.
	 */
	void (*dare_drop)(float *tp, size_t n, uint64_t key, uint64_t idx0, uint64_t limit,
	                  double density);
	/*
	 * DARE's drop and sum over a tile of nx tasks, elements idx0 on:
	 * q_i = dare_drop's value of tp[i * n + j] (key[i], limit[i],
	 * div[i]), and mtl[j] = ((+0.0 + q_0) + q_1) + ... in float64, tasks
	 * in order; tp is left as it is. The same bits as dare_drop on each
	 * task followed by those sums, except that a NaN sum may carry any
	 * payload (finish makes every NaN the default one, and the norms
	 * leave NaNs out). NULL: scalar.
	 */
	void (*dare_sum)(const float *tp, size_t n, unsigned nx, const uint64_t *key, uint64_t idx0,
	                 const uint64_t *limit, const double *div, double *mtl);
	/*
	 * DARE's keep test alone, n values of one task, elements idx0 on:
	 * out[j] = tp[j] when the element is kept (dare_drop's test), else
	 * +0.0f. NULL: scalar.
	 */
	void (*dare_keep)(const float *tp, float *out, size_t n, uint64_t key, uint64_t idx0,
	                  uint64_t limit);
	/*
	 * Breadcrumbs' merge (kern_ties.h, bc_merge_tile()) of elements
	 * [0, n8) of a tile of n (n8 a multiple of 8); with ties, every
	 * weight's magnitude in [2^-900, 2^900]: the bits of the tile's
	 * loops, except that a NaN may carry any payload (finish makes every
	 * NaN the default one, and the norms leave NaNs out). NULL: the
	 * portable loops of kern_ties.c.
	 */
	void (*bc_merge)(const float *tp, unsigned nx, size_t n, size_t n8, const uint32_t *lo,
	                 const uint32_t *hi, const double *w, int ties, int normalize, double wdiv,
	                 double *m);
	/*
	 * The same merge of the tile's raw task vectors x[i] - base (dt
	 * BF16, F16 or F32: ties_taus() with every weight 1) in one loop,
	 * without writing them, on the same condition as bc_merge (with
	 * ties, every weight's magnitude in [2^-900, 2^900]): bt gets the
	 * base in float32, m the merge (as bc_merge) and, unless s is NULL,
	 * s their sum (bc_raw_sum), of the elements [0, k) for the k it
	 * returns, a multiple of its width not above n (0 for another
	 * dtype). NULL: taus, then bc_merge.
	 */
	size_t (*bc_taus_merge)(enum dtype dt, const void *const *x, unsigned nx, const void *base,
	                        size_t n, const uint32_t *lo, const uint32_t *hi, const double *w,
	                        int ties, int normalize, double wdiv, float *bt, double *m,
	                        double *s);
	/*
	 * GGUF's Q4_K and Q5_K (ggml_quants.c): the scale-and-offset fit of
	 * the eight 32-element sub-blocks of a super-block at once. x and w
	 * are 256 floats (sub-block j at 32 j), nmax 15 or 31, the grid
	 * search rmin + rdelta * is for is = 0..nstep; L gets the 256
	 * levels, scale[j] and the_min[j] sub-block j's fit: the same bits
	 * as ggml_quants.c's scalar fit on each sub-block. NULL: scalar.
	 */
	void (*qk_fit8)(const float *x, const float *w, int nmax, float rmin, float rdelta, int nstep,
	                uint8_t *L, float *scale, float *the_min);
	/* GGUF's Q6_K: the symmetric fit of eight 16-element sub-blocks at
	 * once (x 128 floats, L 128 levels offset by nmax, scale[8]): the
	 * bits of ggml_quants.c's scalar fit. NULL: scalar. */
	void (*q6_fit8)(const float *x, int nmax, int8_t *L, float *scale);
};

/* SplitMix64: add the golden-ratio increment, then its finalizer. */
static inline uint64_t kern_mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}
#define KERN_DARE_STEP 0xd1b54a32d192ed03ull

/*
 * The division of DARE's kernels without a division: for a kept t and
 * r = 1 / d (rounded once), q0 = t * r differs from the rounded quotient
 * t / d by less than 3 units of its last place when d and r are normal
 * (below, d in [2^-500, 2^500]) and q0 too. Rounded to float32, the two
 * give the same value unless a float32 rounding midpoint lies between
 * them; so q0 may stand for t / d when its exponent is that of a normal
 * float32 (1 to 254, above 2^-126 and below 2^128) and its 29 bits below
 * a float32's are not within 4 of the midpoint 2^28, and when t is 0, an
 * infinity or a NaN (t * r is then t / d exactly, sign and payload
 * included). The SIMD kernels divide the values of a vector where that
 * test fails for a kept one (about 2^-26 of random values).
 */
#define KERN_DARE_RMIN 0x1p-500
#define KERN_DARE_RMAX 0x1p500
#define KERN_DARE_EMIN (1023 - 126) /* the float64 exponent field of 2^-126 */
#define KERN_DARE_ESPAN 253         /* up to that of 2^127 */
#define KERN_DARE_MID 0x10000000ull /* the float32 midpoint in the low 29 bits */
#define KERN_DARE_NEAR 4
/* Where q0 is above 2^-126 and below 2^127 and not near a midpoint, the
 * float32 it rounds to is q0 with 2^28 added to its bits and the low 29
 * cleared (the float64 bits of that float32). */
#define KERN_DARE_QLO 0x3810000000000000ull /* 2^-126 */
#define KERN_DARE_QHI 0x47e0000000000000ull /* 2^127 */
/* 2^128: below it, and above 2^-126, the hardware rounds q0 to a normal
 * float32 or to an infinity as it rounds t / d (AVX2's dare_drop) */
#define KERN_DARE_QTOP 0x47f0000000000000ull

/* DARE's keep test of element idx (dare_drop's), and the value of a kept
 * entry t divided by d: the definition the SIMD kernels' tails use. */
static inline int kern_dare_kept(uint64_t key, uint64_t idx, uint64_t limit)
{
	return (kern_mix64(key ^ (idx * KERN_DARE_STEP)) >> 11) < limit;
}
static inline float kern_dare_q(float t, uint64_t key, uint64_t idx, uint64_t limit, double d)
{
	return kern_dare_kept(key, idx, limit) ? (float)((double)t / d) : 0.0f;
}

extern const struct kern kern_scalar;
#ifdef HAVE_KERN_AVX2
extern const struct kern kern_avx2;
void kern_avx2_qk_fit8(const float *x, const float *w, int nmax, float rmin, float rdelta, int nstep,
                       uint8_t *L, float *scale, float *the_min);
void kern_avx2_q6_fit8(const float *x, int nmax, int8_t *L, float *scale);
#endif
#ifdef HAVE_KERN_NEON
extern const struct kern kern_neon;
void kern_neon_qk_fit8(const float *x, const float *w, int nmax, float rmin, float rdelta, int nstep,
                       uint8_t *L, float *scale, float *the_min);
void kern_neon_q6_fit8(const float *x, int nmax, int8_t *L, float *scale);
#endif
#ifdef HAVE_KERN_AVX512
/* The "avx512" table: the AVX2 one with AVX-512 TIES kernels (election,
 * select, taus, decided sums, finish). */
void kern_avx512_fill(struct kern *k);
#endif

/*
 * The kernels for this machine, chosen once: the best set the CPU runs,
 * or the one LINES_ISA names (scalar, avx2, avx512, neon). NULL with err filled
 * when LINES_ISA asks for a set that cannot run here.
 */
const struct kern *kern_get(struct lines_error *err);
/* A given set by name, if built and supported by this CPU; else NULL. */
const struct kern *kern_by_name(const char *name);

/* Fixed-order combination of the lanes: ((0+1)+(2+3))+((4+5)+(6+7)). */
static inline double kern_lane_sum(const double v[KERN_LANES])
{
	return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}

/* Whether every one of the nx weights is 1 (breadcrumbs' merges then
 * skip the multiply and count the weights). */
static inline int kern_unit_weights(const double *w, unsigned nx)
{
	for (unsigned i = 0; i < nx; i++)
		if (w[i] != 1.0)
			return 0;
	return 1;
}

/*
 * Whether x / d can be computed as x * r for every x, with the same bits:
 * d is a power of two (+-2^k) whose reciprocal r = 2^-k is finite, so
 * both are the exact x 2^-k rounded once. r gets 1 / d then.
 */
static inline int pow2_inverse(double d, double *r)
{
	int e;
	if (!isfinite(d) || fabs(frexp(d, &e)) != 0.5)
		return 0;
	*r = 1.0 / d;
	return isfinite(*r);
}

/* xs[i] = x[i] + off bytes: the inputs of the tail a SIMD kernel leaves to
 * the scalar one (nx <= LINES_MAX_MODELS, as run.c allows). */
static inline void kern_advance(const void *const *x, unsigned nx, size_t off, const void **xs)
{
	for (unsigned i = 0; i < nx; i++)
		xs[i] = (const unsigned char *)x[i] + off;
}

/* Scalar conversions, shared by the SIMD files for their tails. */
float kern_bf16_to_f32(uint16_t h);
float kern_f16_to_f32(uint16_t h);
uint16_t kern_f32_to_bf16(float f);
uint16_t kern_f32_to_f16(float f);

#endif
