/*
 * merge_multislerp_vec.h -- ms_vec() (merge_multislerp.c), included once
 * per width (kv_width.h).
 *
 * ms_elem() on elements [0, n8) of the tile (n8 a multiple of
 * KERN_LANES), KVW at a time in GNU C's vectors, the same operations in
 * each lane; the models' values from raw (BF16, decoded here) or else from
 * ft and bf. With l, the norm pass's sums (norm_lanes_add()'s, in
 * registers: KERN_LANES / KVW vectors, H); else the output's float32
 * values in out.
 */
static inline __attribute__((always_inline)) void
KV_NAME(ms_vec)(const struct multislerp *ms, const double *c, const float *bf, const float *ft,
                const unsigned char *const *raw, size_t n8, struct norm_lanes *l, double lambda,
                float *out)
{
	enum { H = KERN_LANES / KVW };
	const KVD zero = {0}, lam = zero + lambda;
	KVD a0[H], a1[H], a2[H], a3[H];
	for (unsigned h = 0; h < H; h++) {
		a0[h] = a1[h] = a2[h] = a3[h] = zero;
		if (l)
			NORM_LANES_GET(l, h, a0[h], a1[h], a2[h], a3[h]);
	}
	for (size_t j8 = 0; j8 < n8; j8 += KERN_LANES) {
#pragma GCC unroll 2
		for (unsigned h = 0; h < H; h++) {
			size_t j = j8 + h * KVW;
			KVF bv;
			KVD r = zero, sv = zero;
			KV_LOAD_F32(bv, raw ? raw[0] : NULL, bf, j);
			for (unsigned i = 0; i < ms->n; i++) {
				KVF x, d;
				KVD tau;
				KV_LOAD_F32(x, raw ? raw[i + 1] : NULL, ft + (size_t)i * KERN_TILE, j);
				d = x - bv;
				KV_WIDEN(tau, d);
				r = i == 0 ? zero + c[i] * tau : r + c[i] * tau;
				sv = i == 0 ? zero + tau : sv + tau;
			}
			if (l) {
				NORM_LANES(KVD, KVU, KVI, a0[h], a1[h], a2[h], a3[h], sv, r);
				continue;
			}
			KVD b, o;
			KV_WIDEN(b, bv);
			KV_FMA(o, lam, r, b);
			KV_STORE_F32(out + j, o);
		}
	}
	for (unsigned h = 0; l && h < H; h++)
		NORM_LANES_PUT(l, h, a0[h], a1[h], a2[h], a3[h]);
}
