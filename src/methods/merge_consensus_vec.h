/*
 * merge_consensus_vec.h -- cs_vec() (merge_consensus.c), included once per
 * width (kv_width.h).
 *
 * cs_elem() on elements [0, n8) of the tile, n8 a multiple of 8, KVW at
 * a time in GNU C's vectors (kernels.h), every model's weighted task
 * vector in registers: each lane makes cs_elem()'s operations on its
 * element, so the same numbers, without the tiles of float64 values that
 * the loops above write and read again. The values come from bf16 (the
 * BF16 bytes of the base and the models, decoded here), or else from
 * s->bf and f.
 */
static inline __attribute__((always_inline)) void
KV_NAME(cs_vec)(const struct merge_ctx *p, const struct tensor *t, struct cs_scratch *s,
                const float *f, const unsigned char *const *bf16, size_t n8, int norms,
                uint32_t *kept, uint32_t *dropped, const unsigned nmc)
{
	const KVD zero = {0}, one = zero + 1.0, k = zero + p->o->consensus_k,
	           lam = zero + t->lambda;
	const KVU abs_mask = (KVU){0} + 0x7fffffffffffffffull,
	           exp_mask = (KVU){0} + 0x7ff0000000000000ull;
	/* nmc, when not 0, is the number of models as a constant: the
	 * loops over the models unrolled and c[] in registers */
	const unsigned nm = nmc ? nmc : p->nmodels;
	double w[CS_VMAX], tl[CS_VMAX];
	KVI nkept = {0}, ndropped = {0};
	for (unsigned i = 0; i < nm; i++)
		w[i] = p->w[i], tl[i] = tall_lambda(p->o, i);
	for (size_t j = 0; j < n8; j += KVW) {
		KVF bf;
		KVD c[CS_VMAX], sum = zero, mtl = zero, votes = zero;
		KV_LOAD_F32(bf, bf16 ? bf16[0] : NULL, s->bf, j);
		for (unsigned i = 0; i < nm; i++) {
			KVF x;
			KV_LOAD_F32(x, bf16 ? bf16[i + 1] : NULL, f + (size_t)i * CS_TILE, j);
			KVF d = x - bf;
			KVD tau;
			KV_WIDEN(tau, d);
			sum = i == 0 ? tau : sum + tau;
			c[i] = tau * w[i];
			mtl = i == 0 ? c[i] : mtl + c[i];
		}
		for (unsigned i = 0; i < nm; i++) {
			KVD a = (KVD)((KVU)c[i] & abs_mask),
			     e = tl[i] * (KVD)((KVU)(mtl - c[i]) & abs_mask);
			KVI v;
			KV_CMP(v, a, >, e);
			votes += (KVD)((KVU)one & (KVU)v);
		}
		/* keep: at least k votes, or a sum that is not finite */
		KVU ex = (KVU)mtl & exp_mask;
		KVI keep, inf;
		KV_CMP(keep, votes, >=, k);
		KV_CMP(inf, ex, ==, exp_mask);
		keep |= inf;
		if (norms) {
			KVD u = KV_PICK(keep, mtl, zero);
			memcpy(s->s + j, &sum, sizeof(sum));
			memcpy(s->out + j, &u, sizeof(u));
			continue;
		}
		KVD b, o;
		KV_WIDEN(b, bf);
		KV_FMA(o, lam, mtl, b);
		o = KV_PICK(keep, o, b);
		/* -1 where a test holds: kept and finite, dropped (never finite) */
		nkept -= keep & ~inf;
		ndropped -= ~keep;
		KV_STORE_F32(s->f + j, o);
	}
	for (unsigned l = 0; !norms && l < KVW; l++)
		*kept += (uint32_t)nkept[l], *dropped += (uint32_t)ndropped[l];
}
