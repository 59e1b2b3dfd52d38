/*
 * t-f64.c -- F64 stays F64 (issue 14, item 6): an F64 tensor merged into
 * F64 is computed in float64 end to end, so --lambda 0 gives the base's
 * bytes, and every element of a weighted sum and a mean is within one
 * float64 ULP of the float64 reference, plus 2^-51 of the operands where
 * they cancel (a float32 computation would be some 2^29 ULP off).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tap.h"
#include "tutil.h"

static int check(const char *dir, const char *name, const char *args, const double *w,
                 int mean, double lambda)
{
	char out[4400], p[4400];
	struct tu_model b, x[2], o;
	int rc = tu_run("'%s' merge -q -b '%s/base.safetensors' %s -o '%s/%s.st' "
	                "'%s/ft1.safetensors' '%s/ft2.safetensors'",
	                tu_lines(), dir, args, dir, name, dir, dir);
	if (!ok(rc == 0, "%s: lines exits 0", name))
		return 0;
	snprintf(out, sizeof(out), "%s/%s.st", dir, name);
	snprintf(p, sizeof(p), "%s/base.safetensors", dir);
	int loaded = tu_model_load(&b, p) == 0 && tu_model_load(&o, out) == 0;
	for (int i = 0; i < 2; i++) {
		snprintf(p, sizeof(p), "%s/ft%d.safetensors", dir, i + 1);
		loaded &= tu_model_load(&x[i], p) == 0;
	}
	if (!ok(loaded, "%s: read the models and the output", name))
		return 0;
	uint64_t n = 0, bad = 0, same = 0;
	double worst = 0;
	for (size_t ti = 0; ti < b.n; ti++) {
		const struct tu_tensor *bt = &b.t[ti], *ot = tu_model_find(&o, bt->name);
		const struct tu_tensor *x0 = tu_model_find(&x[0], bt->name);
		const struct tu_tensor *x1 = tu_model_find(&x[1], bt->name);
		if (strcmp(bt->dtype, "F64"))
			continue;
		if (!ot || strcmp(ot->dtype, "F64")) {
			bad++;
			continue;
		}
		same += bt->nbytes == ot->nbytes && !memcmp(bt->data, ot->data, bt->nbytes);
		for (uint64_t e = 0; e < bt->nelem; e++) {
			double bv = tu_elem64(bt, e);
			double t0 = w[0] * (tu_elem64(x0, e) - bv), t1 = w[1] * (tu_elem64(x1, e) - bv);
			double tau = t0 + t1, mag = fabs(t0) + fabs(t1);
			if (mean)
				tau /= w[0] + w[1], mag /= fabs(w[0] + w[1]);
			double ref = bv + lambda * tau, got = tu_elem64(ot, e);
			/* lines rounds with FMAs, the reference without: where b and
			 * lambda tau cancel, both are within 2^-51 of the operands */
			double slack = 0x1p-51 * (fabs(bv) + fabs(lambda) * mag);
			double err = fabs(got - ref) / tu_ulp("F64", ref);
			if (fabs(got - ref) > tu_ulp("F64", ref) + slack)
				bad++;
			else if (fabs(got - ref) > tu_ulp("F64", ref))
				err = 0; /* within the reference's own uncertainty */
			if (err > worst)
				worst = err;
			n++;
		}
	}
	ok(bad == 0 && n > 0, "%s: %llu F64 elements within 1 ULP of float64 (worst %.2f ULP)", name,
	   (unsigned long long)n, worst);
	if (lambda == 0.0)
		ok(same > 0 && same == (uint64_t)b.n, "%s: every tensor is the base's bytes", name);
	tu_model_free(&b);
	tu_model_free(&o);
	tu_model_free(&x[0]);
	tu_model_free(&x[1]);
	return 1;
}

int main(void)
{
	char dir[4200];
	snprintf(dir, sizeof(dir), "%s/f64", tu_tmpdir());
	if (!ok(tu_run("'%s' --arch llama --dtype f64 --layers 3 --hidden 32 --models 2 --seed 9 "
	               "--out '%s'",
	               tu_gen(), dir) == 0,
	        "generate an F64 family"))
		return tap_done();
	const double ones[2] = {1, 1}, w[2] = {0.75, -0.5};
	check(dir, "lambda0", "--lambda 0", ones, 0, 0.0);
	check(dir, "sum", "-w 0.75,-0.5 --lambda 0.9", w, 0, 0.9);
	check(dir, "mean", "-m mean --lambda 1", ones, 1, 1.0);
	tu_cleanup();
	return tap_done();
}
