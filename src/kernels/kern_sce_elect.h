/*
 * kern_sce_elect.h -- the vector loop of sce_elect() (kern_sce.c) on
 * elements [0, n8), KVW at a time, included once per width (kv_width.h):
 * each lane sce_elect1()'s operations.
 */
static inline __attribute__((always_inline)) void
KV_NAME(sce_elect_vec)(const double *tau, size_t stride, unsigned nx, size_t n8, const double *s,
                       const unsigned char *keep, const double *w, double *mtl)
{
	const KVD zero = {0}, one = zero + 1.0, mone = zero - 1.0, dmin = zero + 1e-6;
	for (size_t j = 0; j < n8; j += KVW) {
		KVD sv, nu = zero, de = zero;
		KVI pos, small, fin;
		memcpy(&sv, s + j, sizeof(sv));
		KV_CMP(pos, sv, >=, zero);
		KVD sign = KV_PICK(pos, one, mone);
		for (unsigned i = 0; i < nx; i++) {
			KVD t;
			KVI has;
			memcpy(&t, tau + (size_t)i * stride + j, sizeof(t));
			KV_CMP(has, t * sign, >, zero);
			nu += (KVD)((KVU)(w[i] * t) & (KVU)has);
			de += (KVD)((KVU)(zero + w[i]) & (KVU)has);
		}
		KV_CMP(small, de, <, dmin);
		KVD d = KV_PICK(small, dmin, de), q = nu / d, ds = sv - sv;
		KV_CMP(fin, ds, ==, zero);
		KVD m = KV_PICK(fin, q, sv);
		if (keep) {
			KVB k;
			KVI kept;
			memcpy(&k, keep + j, sizeof(k));
			KV_CMP_WIDE(kept, k, !=, (KVB){0});
			m = (KVD)((KVU)m & (KVU)kept);
		}
		memcpy(mtl + j, &m, sizeof(m));
	}
}
