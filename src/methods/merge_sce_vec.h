/*
 * merge_sce_vec.h -- sce_vec() (merge_sce.c), included once per width
 * (kv_width.h).
 *
 * sce_elem() on elements [0, n8) of the tile (n8 a multiple of
 * KERN_LANES), KVW at a time in GNU C's vectors, the same operations in
 * each lane; the values from raw (BF16, decoded here) or else from bf and
 * ft. The eight lanes of mode 0 and 1 stay in registers over the tile, in
 * KERN_LANES / KVW vectors (H).
 */
static inline __attribute__((always_inline)) void
KV_NAME(sce_vec)(unsigned nm, const double *w, const float *bf, const float *ft,
                 const unsigned char *const *raw, size_t n8, int mode,
                 double (*lane)[KERN_LANES], struct norm_lanes *l, double lambda, float *out)
{
	enum { H = KERN_LANES / KVW };
	const KVD zero = {0}, one = zero + 1.0, mone = zero - 1.0, dmin = zero + 1e-6,
	          lam = zero + lambda;
	KVD sq[SCE_VMAX][H], a0[H], a1[H], a2[H], a3[H];
	for (unsigned h = 0; h < H; h++) {
		a0[h] = a1[h] = a2[h] = a3[h] = zero;
		for (unsigned i = 0; mode == 0 && i < nm; i++)
			memcpy(&sq[i][h], lane[i] + h * KVW, sizeof(KVD));
		if (mode == 1)
			NORM_LANES_GET(l, h, a0[h], a1[h], a2[h], a3[h]);
	}
	for (size_t j8 = 0; j8 < n8; j8 += KERN_LANES) {
#pragma GCC unroll 2
		for (unsigned h = 0; h < H; h++) {
			size_t j = j8 + h * KVW;
			KVF bv;
			KVD tau[SCE_VMAX], s = zero, nu = zero, de = zero;
			KV_LOAD_F32(bv, raw ? raw[0] : NULL, bf, j);
			for (unsigned i = 0; i < nm; i++) {
				KVF x, d;
				KV_LOAD_F32(x, raw ? raw[i + 1] : NULL, ft + (size_t)i * SCE_TILE, j);
				d = x - bv;
				KV_WIDEN(tau[i], d);
				s += tau[i];
				if (mode == 0)
					sq[i][h] += tau[i] * tau[i];
			}
			if (mode == 0)
				continue;
			KVI pos, small, fin;
			KV_CMP(pos, s, >=, zero);
			KVD sign = KV_PICK(pos, one, mone);
			for (unsigned i = 0; i < nm; i++) {
				KVD pr = tau[i] * sign;
				KVI has;
				KV_CMP(has, pr, >, zero);
				nu += (KVD)((KVU)(w[i] * tau[i]) & (KVU)has);
				de += (KVD)((KVU)(zero + w[i]) & (KVU)has);
			}
			KV_CMP(small, de, <, dmin);
			KVD q = nu / KV_PICK(small, dmin, de), ds = s - s;
			KV_CMP(fin, ds, ==, zero);
			KVD m = KV_PICK(fin, q, s);
			if (mode == 1) {
				NORM_LANES(KVD, KVU, KVI, a0[h], a1[h], a2[h], a3[h], s, m);
				continue;
			}
			KVD b, o;
			KV_WIDEN(b, bv);
			KV_FMA(o, lam, m, b);
			KV_STORE_F32(out + j, o);
		}
	}
	for (unsigned h = 0; h < H; h++) {
		for (unsigned i = 0; mode == 0 && i < nm; i++)
			memcpy(lane[i] + h * KVW, &sq[i][h], sizeof(KVD));
		if (mode == 1)
			NORM_LANES_PUT(l, h, a0[h], a1[h], a2[h], a3[h]);
	}
}
