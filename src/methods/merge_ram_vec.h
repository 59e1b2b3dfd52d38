/*
 * merge_ram_vec.h -- ram_vec() (merge_ram.c), included once per width
 * (kv_width.h).
 *
 * Elements [0, n8) of the tile, n8 a multiple of 8: ram_elem's steps,
 * KVW elements at a time. The task vectors come from s->tau (F64), or
 * as float32 from the base's values in s->bf and the models' in ft (each
 * tau_i the float32 difference, as tile_tau makes it), or with bf16 from
 * the BF16 bytes themselves (bf16[0] the base's, bf16[1 + i] model i's).
 * divide: m / c by a division (see above). lam and nz as ram_elem's.
 * With wt (float32 in and out), the writing pass's value of each element
 * (ram_tile's), rounded to float32 as tile_store() rounds it, goes to
 * s->f, and s->s, s->c and s->m are left out.
 */
static inline __attribute__((always_inline)) void
KV_NAME(ram_vec)(const struct merge_ctx *p, struct ram_scratch *s, const float *ft,
                 const unsigned char *const *bf16, size_t n8, int divide, const double *lam,
                 uint8_t *nz, uint64_t *cnt, const struct tensor *wt)
{
	const struct ram_state *st = p->state;
	const KVU zu = {0};
	const KVU abs_mask = zu + 0x7fffffffffffffffull, exp_mask = zu + 0x7ff0000000000000ull;
	const KVD zero = {0}, one = zero + 1.0, eps = zero + p->o->ram_epsilon,
	           wl = zero + (wt ? wt->lambda : 0.0);
	unsigned nm = p->nmodels;
	/* cnt (at most RAM_PACK_MAX models): each lane counts its elements
	 * by c in eight fields of 8 bits (a tile gives a lane RAM_TILE / KVW,
	 * 64 at most) */
	KVU packed = zu;
	for (size_t j = 0; j < n8; j += KVW) {
		/* -0.0 + x is x for every x (-0.0 too): the sum of the models */
		KVD sum = -zero, c = zero, m = zero, ml = zero;
		KVU ci = zu;
		KVF bv = {0};
		if (bf16 || ft)
			KV_LOAD_F32(bv, bf16 ? bf16[0] : NULL, s->bf, j);
		for (unsigned i = 0; i < nm; i++) {
			KVD tau;
			KVF x;
			if (bf16 || ft) {
				KV_LOAD_F32(x, bf16 ? bf16[i + 1] : NULL, ft + (size_t)i * RAM_TILE, j);
				KVF dx = x - bv;
				KV_WIDEN(tau, dx);
			} else {
				memcpy(&tau, s->tau + (size_t)i * RAM_TILE + j, sizeof(tau));
			}
			KVD a = (KVD)((KVU)tau & abs_mask);
			KVI z;
			KV_CMP(z, a, >, eps);
			sum += tau;
			c += (KVD)((KVU)one & (KVU)z);
			if (cnt)
				ci -= (KVU)z; /* z is -1 where it holds */
			m += (KVD)((KVU)tau & (KVU)z);
			if (lam) {
				KVD v = tau * lam[i];
				ml += (KVD)((KVU)v & (KVU)z);
			}
			if (nz) {
				uint8_t *q = nz + (size_t)i * RAM_TILE + j;
#if KVW == 4 /* GCC 12 assembles the four bytes of the loop below one by
	      * one in a general register: the low byte of each lane */
				typedef uint8_t zb_t __attribute__((vector_size(32)));
				zb_t zb = (zb_t)z & 1;
				KVB zq = __builtin_shufflevector(zb, zb, 0, 8, 16, 24);
				memcpy(q, &zq, sizeof(zq));
#else
				for (unsigned l = 0; l < KVW; l++)
					q[l] = (uint8_t)(z[l] & 1);
#endif
			}
		}
		KVI c1, cg, fin;
		KV_CMP(c1, c, ==, one);
		KV_CMP(cg, c, >, one);
		if (lam)
			m = KV_PICK(c1, ml, m);
		KVD d = KV_PICK(cg, c, one);
		if (divide) {
			m /= d;
		} else {
			/* where d is a power of two, m times 1/d; for every other
			 * count k, m / k by Markstein's two fmas */
			KVD mm = m * (KVD)(0x7fe0000000000000ull - (KVU)d);
			for (unsigned k = 3; k <= nm; k++) {
				if ((k & (k - 1)) == 0)
					continue;
				KVD kk = zero + (double)k, r = zero + st->recip[k], q = m * r, e, v;
				KVD nq = -q;
				KVI dk;
				KV_FMA(e, nq, kk, m);
				KV_FMA(v, e, r, q);
				KV_CMP(dk, d, ==, kk);
				mm = KV_PICK(dk, v, mm);
			}
			m = mm;
		}
		KVU ex = (KVU)sum & exp_mask;
		KV_CMP(fin, ex, !=, exp_mask);
		m = KV_PICK(fin, m, sum);
		if (cnt) {
			packed += (zu + 1) << (ci << 3);
		} else {
			for (unsigned l = 0; l < KVW; l++)
				s->c16[j + l] = (uint16_t)(int32_t)c[l];
		}
		if (wt) { /* the base's value where no model changed a finite sum */
			KVD b, o;
			KV_WIDEN(b, bv);
			KVI c0;
			KV_FMA(o, wl, m, b);
			KV_CMP(c0, c, ==, zero);
			o = KV_PICK(c0 & fin, b, o);
			KV_STORE_F32(s->f + j, o);
			continue;
		}
		memcpy(s->s + j, &sum, sizeof(sum));
		memcpy(s->c + j, &c, sizeof(c));
		memcpy(s->m + j, &m, sizeof(m));
	}
	for (unsigned l = 0; cnt && l < KVW; l++)
		for (unsigned f = 0; f <= nm; f++)
			cnt[f] += (packed[l] >> (8 * f)) & 0xff;
}
