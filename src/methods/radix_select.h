/*
 * radix_select.h -- the k-th smallest magnitude of a task vector by radix
 * selection over the bit patterns of |tau| (ties_mag(), which order like
 * the magnitudes), in two counting passes and constant memory: TIES's
 * thresholds (merge_ties.c) and breadcrumbs' two cuts per tensor and task
 * (merge_breadcrumbs.c).
 *
 *   first pass   hist[ties_key(mag)]++ (kern_ties.h): RSEL_BINS counts,
 *                bin b (the high 16 bits) in hist[2b] + hist[2b + 1], the
 *                bin's smallest value b << 16 alone in hist[2b + 1];
 *                rsel_bin() finds the bin of the k-th smallest and its
 *                rank inside the bin, and the value itself when that rank
 *                falls on the bin's smallest value;
 *   second pass  hist[mag & 0xffff]++ for the values in that bin only;
 *                rsel_low() then gives the exact value.
 * Counts are uint64 added in a fixed order by the caller: the results do
 * not depend on -j or --chunk.
 */
#ifndef LINES_RADIX_SELECT_H
#define LINES_RADIX_SELECT_H

#include <stdint.h>

#define RSEL_BINS 65536u

/* Where the k-th smallest (1-based, k >= 1) of the counted values is. */
struct rsel {
	uint32_t bin;   /* its high 16 bits */
	uint64_t rank;  /* its rank inside the bin, 1-based (after rsel_low():
	                 * inside the bucket of its exact value) */
	uint32_t thr;   /* the value's bits, once known */
	uint64_t bcnt;  /* the values equal to thr, once known */
	int known;
};

/* From the first pass's counts h (RSEL_BINS of them). A k beyond the
 * count leaves r unknown with the last bin. */
static inline void rsel_bin(const uint64_t *h, uint64_t k, struct rsel *r)
{
	uint64_t cum = 0;
	r->known = 0;
	r->bin = RSEL_BINS / 2 - 1;
	r->rank = k;
	for (uint32_t b = 0; b < RSEL_BINS / 2; b++) {
		uint64_t c = h[2 * b] + h[2 * b + 1];
		if (cum + c >= k) {
			r->bin = b;
			r->rank = k - cum;
			if (k - cum <= h[2 * b + 1]) { /* the bin's smallest value */
				r->known = 1;
				r->thr = b << 16;
				r->bcnt = h[2 * b + 1];
			}
			return;
		}
		cum += c;
	}
}

/* From the second pass's counts h of the low 16 bits inside r->bin: the
 * exact value, and r->rank becomes its rank among the values equal to it. */
static inline void rsel_low(const uint64_t *h, struct rsel *r)
{
	uint64_t cum = 0;
	if (r->known)
		return;
	for (uint32_t l = 0; l < RSEL_BINS; l++) {
		if (cum + h[l] >= r->rank) {
			r->thr = r->bin << 16 | l;
			r->rank -= cum;
			r->bcnt = h[l];
			break;
		}
		cum += h[l];
	}
	r->known = 1;
}

#endif
