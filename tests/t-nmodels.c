/*
 * t-nmodels.c -- consensus and sce compile their vector loops with the
 * number of models as a constant for 2, 3 and 4 models, and with it a
 * variable for the others. Whichever copy runs, the loops must compute
 * what the tile loops compute: an F64 output takes the tile loops
 * (consensus in both of its passes, sce in its writing pass), whose
 * float64 value of each element, rounded once to float32 here, must be
 * the float32 output's value bit for bit (a NaN for a NaN). For 2 to 5
 * models of a BF16 family with special values (NaN, infinities, zeros),
 * with a given and with automatic alpha.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tap.h"
#include "tutil.h"

#define NMAX 5

/* Elements of a (F32) that differ from b (F64) rounded to float32; -1 if
 * the two outputs do not hold the same tensors. */
static long long differ(const struct tu_model *a, const struct tu_model *b, uint64_t *n)
{
	long long bad = 0;
	*n = 0;
	if (a->n != b->n)
		return -1;
	for (size_t k = 0; k < a->n; k++) {
		const struct tu_tensor *x = &a->t[k], *y = tu_model_find(b, x->name);
		if (!y || strcmp(x->dtype, "F32") != 0 || strcmp(y->dtype, "F64") != 0 ||
		    x->nelem != y->nelem)
			return -1;
		for (uint64_t i = 0; i < x->nelem; i++) {
			float got = tu_elem(x, i), want = (float)tu_elem64(y, i);
			int same = isnan(got) ? isnan(want) != 0 : memcmp(&got, &want, sizeof(got)) == 0;
			bad += !same;
			(*n)++;
		}
	}
	return bad;
}

int main(void)
{
	static const char *const methods[] = {
	    "consensus --alpha 0.5 --lines",
	    "consensus --lines",
	    "consensus --consensus-k 1 --tall-lambda 0.6 --lambda 0.8",
	    "sce --alpha 0.5 --lines",
	    "sce --lines --norm l2",
	};
	const char *dir = tu_tmpdir();
	if (!ok(tu_run("'%s' --arch llama --dtype bf16 --layers 3 --hidden 48 --models %d --seed 29 "
	               "--specials --out '%s/fam'",
	               tu_gen(), NMAX, dir) == 0,
	        "generate a bf16 family of %d models with special values", NMAX)) {
		diag("%s", tu_stderr);
		return tap_done();
	}
	for (int nm = 2; nm <= NMAX; nm++) {
		char models[4096];
		size_t len = 0;
		for (int i = 1; i <= nm; i++)
			len += (size_t)snprintf(models + len, sizeof(models) - len, " '%s/fam/ft%d.safetensors'",
			                        dir, i);
		for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++) {
			struct tu_model a, b;
			char pa[4200], pb[4200];
			uint64_t n = 0;
			snprintf(pa, sizeof(pa), "%s/o32.st", dir);
			snprintf(pb, sizeof(pb), "%s/o64.st", dir);
			int rc = tu_run("'%s' merge -q -m %s --dtype f32 -b '%s/fam/base.safetensors' -o '%s'%s",
			                tu_lines(), methods[m], dir, pa, models) |
			         tu_run("'%s' merge -q -m %s --dtype f64 -b '%s/fam/base.safetensors' -o '%s'%s",
			                tu_lines(), methods[m], dir, pb, models);
			if (!ok(rc == 0 && tu_model_load(&a, pa) == 0 && tu_model_load(&b, pb) == 0,
			        "%d models, %s: both merges run", nm, methods[m])) {
				diag("%s", tu_stderr);
				continue;
			}
			long long bad = differ(&a, &b, &n);
			ok(bad == 0 && n > 0,
			   "%d models, %s: the F32 output is the F64 output rounded, %llu elements "
			   "(%lld differ)",
			   nm, methods[m], (unsigned long long)n, bad);
			tu_model_free(&a);
			tu_model_free(&b);
		}
	}
	return tap_done();
}
