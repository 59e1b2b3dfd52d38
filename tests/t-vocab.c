/*
 * t-vocab.c -- --vocab base (issue 14, item 9): a fine-tune with added
 * tokens (a larger embedding and head) is merged over the base's rows, as
 * mergekit does: every element of the output against a float64 reference
 * computed from the base's rows; without it the model is refused, with
 * nothing written.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tap.h"
#include "tutil.h"

int main(void)
{
	char dir[4200], out[4300], p[4400];
	struct tu_model base, ft, om;
	const char *tmp = tu_tmpdir();

	snprintf(dir, sizeof(dir), "%s/v", tmp);
	int rc = tu_run("mkdir -p '%s' && "
	                "'%s' --arch llama --dtype bf16 --layers 2 --hidden 16 --vocab 64 --models 1 "
	                "--seed 5 --out '%s/small' && "
	                "'%s' --arch llama --dtype bf16 --layers 2 --hidden 16 --vocab 96 --models 1 "
	                "--seed 5 --out '%s/large'",
	                dir, tu_gen(), dir, tu_gen(), dir);
	if (!ok(rc == 0, "generate a base (64 tokens) and a fine-tune with 32 added tokens"))
		return tap_done();
	snprintf(out, sizeof(out), "%s/out.safetensors", dir);

	rc = tu_run("'%s' merge -q -b '%s/small/base.safetensors' --lambda 0.75 -o '%s' "
	            "'%s/large/ft1.safetensors'",
	            tu_lines(), dir, out, dir);
	ok(rc == 1 && strstr(tu_stderr, "--vocab base"),
	   "without --vocab base the larger vocabulary is refused, suggesting it");
	ok(!tu_exists(out), "... and nothing is written");

	rc = tu_run("'%s' merge -b '%s/small/base.safetensors' --vocab base --lambda 0.75 -o '%s' "
	            "'%s/large/ft1.safetensors'",
	            tu_lines(), dir, out, dir);
	ok(rc == 0, "--vocab base merges");
	ok(strstr(tu_stderr, "32 rows beyond the base's 64") != NULL,
	   "... and reports the added rows with their count");

	snprintf(p, sizeof(p), "%s/small/base.safetensors", dir);
	int loaded = tu_model_load(&base, p) == 0;
	snprintf(p, sizeof(p), "%s/large/ft1.safetensors", dir);
	loaded &= tu_model_load(&ft, p) == 0;
	loaded &= tu_model_load(&om, out) == 0;
	if (!ok(loaded, "read the base, the fine-tune and the output"))
		return tap_done();
	static const char *const names[] = {"model.embed_tokens.weight", "lm_head.weight",
	                                    "model.layers.1.mlp.up_proj.weight"};
	for (size_t k = 0; k < 3; k++) {
		const struct tu_tensor *b = tu_model_find(&base, names[k]);
		const struct tu_tensor *x = tu_model_find(&ft, names[k]);
		const struct tu_tensor *o = tu_model_find(&om, names[k]);
		if (!ok(b && x && o && o->shape[0] == b->shape[0] && o->nelem == b->nelem,
		        "%s: the output has the base's shape", names[k]))
			continue;
		uint64_t bad = 0;
		for (uint64_t e = 0; e < b->nelem; e++) {
			/* row r, column c of the base is row r, column c of the model */
			float bv = tu_elem(b, e), xv = tu_elem(x, e);
			double ref = (double)bv + 0.75 * (double)(float)(xv - bv);
			double got = tu_elem(o, e);
			if (fabs(got - ref) > tu_ulp(o->dtype, ref))
				bad++;
		}
		ok(bad == 0, "%s: %llu elements within 1 ULP of the base-rows reference (%llu bad)",
		   names[k], (unsigned long long)b->nelem, (unsigned long long)bad);
	}
	tu_model_free(&base);
	tu_model_free(&ft);
	tu_model_free(&om);
	rc = tu_run("'%s' merge -q -b '%s/large/base.safetensors' --vocab base -o '%s/x.st' "
	            "'%s/small/ft1.safetensors'",
	            tu_lines(), dir, dir, dir);
	ok(rc == 1, "a model with fewer rows than the base is refused even with --vocab base");
	tu_cleanup();
	return tap_done();
}
