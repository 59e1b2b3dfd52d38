/*
 * kv_width.h -- the names of GNU C's vectors (kernels.h) for a loop body
 * written once for two widths: KVW lanes, 8 (64 bytes: one AVX-512
 * register) or 4 (32 bytes: one AVX2 register).
 *
 * Why two: GCC 12 keeps a vector wider than the target's registers in
 * memory and compares or converts it lane by lane, so the eight-lane
 * loops, one instruction an operation in LINES_HOT's AVX-512 clone, run
 * several times slower in its AVX2 and baseline clones than plain C.
 * A body names its functions KV_NAME(f) (f_8 or f_4) and its types and
 * macros as below; kv_both.h includes this file and the body at each
 * width. Every lane does the same IEEE
 * operations on its element at either width, so both give the same
 * bits; struct kern's wide (the avx512 table) chooses the eight-lane one.
 * No include guard: it is meant to be included once per width.
 */
#undef KVD
#undef KVU
#undef KVI
#undef KVF
#undef KVUW
#undef KVIW
#undef KVH
#undef KVB
#if KVW == 8
#define KVD kv8d
#define KVU kv8u
#define KVI kv8i
#define KVF kv8f
#define KVUW kv8uw
#define KVIW kv8w
#define KVH kv8h
#define KVB kv8b
#elif KVW == 4
#define KVD kv4d
#define KVU kv4u
#define KVI kv4i
#define KVF kv4f
#define KVUW kv4uw
#define KVIW kv4w
#define KVH kv4h
#define KVB kv4b
#else
#error "kv_width.h: KVW must be 8 or 4"
#endif

#ifndef KV_NAME
#define KV_NAME(f) KV_NAME_(f, KVW)
#define KV_NAME_(f, w) KV_NAME__(f, w)
#define KV_NAME__(f, w) f##_##w
/* a where mask (all ones in a lane), else b (KV_CMP, KV_WIDEN, KV_FMA,
 * KV_BF16, KV_LOAD_F32 and KV_STORE_F32 of kernels.h take either width) */
#define KV_PICK(mask, a, b) ((KVD)(((KVU)(a) & (KVU)(mask)) | ((KVU)(b) & ~(KVU)(mask))))
/* f_8(...) where wide (struct kern's), else f_4(...): the two widths of
 * a body that kv_both.h included */
#define KV_CALL(wide, f, ...) ((wide) ? f##_8(__VA_ARGS__) : f##_4(__VA_ARGS__))
/* f(..., nmc) with nmc the number of models nm as a constant where it is
 * 2, 3 or 4 (the merges made most: a body's loops over the models then
 * unroll and keep their vectors in registers), else 0 (the body reads
 * the number itself); f is meant to be always_inline */
#define KV_NM_CONST(nm, f, ...)                                                                   \
	do {                                                                                      \
		switch (nm) {                                                                     \
		case 2: f(__VA_ARGS__, 2); break;                                                 \
		case 3: f(__VA_ARGS__, 3); break;                                                 \
		case 4: f(__VA_ARGS__, 4); break;                                                 \
		default: f(__VA_ARGS__, 0);                                                       \
		}                                                                                 \
	} while (0)
#endif
