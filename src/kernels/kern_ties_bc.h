/*
 * kern_ties_bc.h -- the vector loop of breadcrumbs' merge with ties
 * (kern_ties.c, bc_ties_vec()), included once per width (kv_width.h).
 *
 * bc_merge_strip() with ties on elements [0, n8) of the tile, n8 a
 * multiple of KERN_LANES, every weight's magnitude in [2^-900, 2^900]:
 * KVW elements at a time, the tasks in order and the four sums in
 * registers, where the strip's arrays went through memory once a task.
 * Each lane adds the same values as the strip to each sum, in the same
 * order: the same bits (but for the payload of a NaN, which the output
 * makes the default NaN). The cut is tested on the float32 bits and a
 * dropped value zeroed before it is widened, and the sign is read from
 * v = w x, in fewer operations than the strip's; the strip's m, the sum
 * of all kept values, is not needed (a kept NaN goes to P, which makes
 * S NaN), and with every weight 1 neither is the multiply, and the sums
 * of the weights are counts in integers.
 */
static inline __attribute__((always_inline)) void
KV_NAME(bc_ties_vec_t)(const float *tp, unsigned nx, size_t n, size_t n8, const uint32_t *lo,
                       const uint32_t *hi, const double *w, int normalize, double *m, const int unit)
{
	const KVD zero = {0}, one = zero + 1.0;
	const KVU magic = (KVU){0} + 0x4330000000000000u; /* 2^52: its low bits hold a count */
	for (size_t j = 0; j < n8; j += KVW) {
		KVD vp = zero, vn = zero, cp = zero, cn = zero;
		KVU np = {0}, nn = {0};
		for (unsigned i = 0; i < nx; i++) {
			KVUW u, a;
			KVIW ge, le;
			KVI kp, kn;
			KVF x;
			KVD xd, v, c = zero + w[i];
			memcpy(&u, tp + (size_t)i * n + j, sizeof(u));
			a = u & 0x7fffffffu;
			KV_CMP(ge, a, >=, (KVUW){0} + lo[i]);
			KV_CMP(le, a, <=, (KVUW){0} + hi[i]);
			/* a dropped x becomes +0.0, so v = c x is +-0.0 there, which
			 * adds nothing to a sum: one from +0.0 is never -0.0 */
			x = (KVF)(u & (KVUW)(ge & le));
			KV_WIDEN(xd, x);
			v = unit ? xd : c * xd; /* 1 x is x (but for a NaN's payload) */
			/* v is nonzero with the sign of c x exactly when x is (no
			 * underflow or overflow to 0 for these weights): the strip's
			 * kp and kn, but for a kept NaN, which goes to P (not v <= 0)
			 * and makes S, and the element, NaN, as the strip's m does */
			KV_CMP(kp, v, <=, zero);
			kp = ~kp;
			KV_CMP(kn, v, <, zero);
			vp += (KVD)((KVU)v & (KVU)kp);
			vn += (KVD)((KVU)v & (KVU)kn);
			if (unit) { /* every weight 1: their sums are counts */
				np -= (KVU)kp;
				nn -= (KVU)kn;
			} else {
				cp += (KVD)((KVU)c & (KVU)kp);
				cn += (KVD)((KVU)c & (KVU)kn);
			}
		}
		if (unit) { /* a count k below 2^52 as a double: (2^52 + k) - 2^52, exact */
			cp = (KVD)(np | magic) - 0x1p52;
			cn = (KVD)(nn | magic) - 0x1p52;
		}
		KVD s = vp + vn, num, d, r;
		KVI pos, dnz, snan;
		KV_CMP(pos, s, >=, zero);
		num = KV_PICK(pos, vp, vn);
		d = KV_PICK(pos, cp, cn);
		KV_CMP(dnz, d, !=, zero);
		d = normalize ? KV_PICK(dnz, d, one) : one;
		KV_CMP(snan, s, !=, s);
		r = KV_PICK(snan, s, num / d);
		memcpy(m + j, &r, sizeof(r));
	}
}
