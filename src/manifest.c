/*
 * manifest.c -- what a run wrote, for people and for `lines verify`:
 * OUT.manifest.json records the tool and its version, the run (command,
 * method, options, alpha and beta, the norms, the inputs with their
 * sizes) and, per tensor, its dtype, shape, place in the data, block,
 * lambda and the XXH3-64 of its (uncompressed) bytes, plus the XXH3-64 of
 * the header and the XXH3-128 of the file as written.
 *
 * The per-tensor hashes are taken by the consumer thread as the output
 * bytes go by (manifest_note), in order, so no byte is read twice.
 */
#include "config.h"

#include <libgen.h>
#include <math.h>
#include <stdlib.h>

#include <jansson.h>
#include <xxhash.h>

#include "checksum.h"
#include "pipeline.h"
#include "report.h"

int manifest_init(struct plan *p, struct lines_error *err)
{
	p->thash = calloc(p->nt ? p->nt : 1, sizeof(*p->thash));
	p->tstate = XXH3_createState();
	RETURN_ERROR_IF(!p->thash || !p->tstate, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	return 0;
}

void manifest_free(struct plan *p)
{
	free(p->thash);
	p->thash = NULL;
	if (p->tstate)
		XXH3_freeState(p->tstate);
	p->tstate = NULL;
}

void manifest_note(struct plan *p, const struct pipe_job *job)
{
	const struct plan_tensor *t = &p->t[job->tensor];
	if (job->u0 == 0)
		XXH3_64bits_reset(p->tstate);
	XXH3_64bits_update(p->tstate, job->out, (size_t)((job->u1 - job->u0) * t->unit_out));
	if (job->u1 == t->units)
		p->thash[job->tensor] = XXH3_64bits_digest(p->tstate);
}

static json_t *num_or_null(double v) { return isnan(v) ? json_null() : report_num(v); }

static json_t *hex64(uint64_t v)
{
	char h[17];
	xxh64_hex(v, h);
	return json_string(h);
}

int manifest_build(struct plan *p, const char *name, const struct xxh128 *file_digest, char **out,
                   struct lines_error *err)
{
	struct manifest_file mf = {name, file_digest, 0, p->nt, 0, p->header_len, p->header_hash,
	                           p->out_data_bytes};
	return manifest_build_part(p, &mf, out, err);
}

int manifest_build_part(struct plan *p, const struct manifest_file *mf, char **out,
                        struct lines_error *err)
{
	const char *name = mf->name;
	const struct xxh128 *file_digest = mf->digest;
	json_t *root = json_object(), *run = json_object(), *inputs = json_array(),
	       *tensors = json_array(), *hdr = json_object(), *w = json_array();
	char hex[33];
	int rc = 0;

	*out = NULL;
	if (!root || !run || !inputs || !tensors || !hdr || !w) {
		json_decref(root), json_decref(run), json_decref(inputs), json_decref(tensors);
		json_decref(hdr), json_decref(w);
		return lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory for the manifest");
	}
	xxh128_hex(file_digest, hex);
	json_object_set_new(root, "manifest", json_string("lines"));
	json_object_set_new(root, "manifest_version", json_integer(1));
	json_object_set_new(root, "lines_version", json_string(lines_version()));
	json_object_set_new(root, "file", json_string(name));
	json_object_set_new(root, "compression", json_string(p->zst ? "zstd" : "none"));
	json_object_set_new(root, "xxh3_128", json_string(hex));
	json_object_set_new(hdr, "bytes", json_integer((json_int_t)mf->header_len));
	json_object_set_new(hdr, "xxh3_64", hex64(mf->header_hash));
	json_object_set_new(root, "header", hdr);
	json_object_set_new(root, "data_bytes", json_integer((json_int_t)mf->data_bytes));

	static const char *const methods[] = {"sum", "mean", "ties", "dare"};
	json_object_set_new(run, "command", json_string(p->o.command ? p->o.command : "merge"));
	json_object_set_new(run, "method", json_string(methods[p->o.method]));
	for (unsigned i = 0; i < p->nmodels; i++)
		json_array_append_new(w, json_real(p->w[i]));
	json_object_set_new(run, "weights", w);
	json_object_set_new(run, "lines", json_boolean(p->o.lines));
	if (p->o.lines) {
		json_object_set_new(run, "alpha", json_real(p->alpha));
		json_object_set_new(run, "beta", json_real(p->beta));
		json_object_set_new(run, "alpha_mode", json_string(p->o.alpha_auto ? "auto" : "given"));
		json_object_set_new(run, "norm", json_string(p->o.norm_p == 2 ? "l2" : "l1"));
	} else {
		json_object_set_new(run, "lambda", json_real(p->o.lambda));
	}
	json_object_set_new(run, "norm_sum", p->have_norms ? json_real(p->norm_sum) : json_null());
	json_object_set_new(run, "norm_mtl", p->have_norms ? json_real(p->norm_mtl) : json_null());
	json_object_set_new(run, "num_layers", json_integer(p->L));
	json_object_set_new(run, "dtype", p->o.dtype ? json_string(p->o.dtype) : json_null());
	json_object_set_new(run, "zstd_level", p->zst ? json_integer(p->zstd_level) : json_null());
	if (p->o.method == LINES_M_TIES || p->o.method == LINES_M_DARE) {
		json_t *m = json_object();
		json_object_set_new(m, "density", json_real(p->o.density));
		if (p->o.method == LINES_M_TIES)
			json_object_set_new(m, "trim", json_string(p->o.trim_tensor ? "tensor" : "global"));
		else {
			char seed[24]; /* a string: JSON readers lose integers above 2^53 */
			snprintf(seed, sizeof(seed), "%llu", (unsigned long long)p->o.seed);
			json_object_set_new(m, "seed", json_string(seed));
			json_object_set_new(m, "elect", json_boolean(p->o.dare_elect));
		}
		json_object_set_new(m, "majority", p->maj ? json_integer(p->maj) : json_null());
		if (p->thr && !p->thr_per_tensor)
			json_object_set_new(m, "thresholds", report_thresholds(p->thr, p->nmodels));
		json_object_set_new(run, methods[p->o.method], m);
	}
	for (unsigned m = 0; m < p->ninputs; m++) {
		json_t *in = json_object();
		const struct ckpt *c = p->ck[m];
		json_object_set_new(in, "role", json_string(m ? "model" : "base"));
		json_object_set_new(in, "path", json_string(m ? p->o.models[m - 1] : p->o.base));
		json_object_set_new(in, "bytes", c->files[0].disk_size
		                                     ? json_integer((json_int_t)c->files[0].disk_size)
		                                     : json_null());
		if (m)
			json_object_set_new(in, "weight", json_real(p->w[m - 1]));
		json_array_append_new(inputs, in);
	}
	json_object_set_new(run, "inputs", inputs);
	json_object_set_new(root, "run", run);

	for (size_t i = mf->t0; i < mf->t1; i++) {
		const struct plan_tensor *t = &p->t[i];
		json_t *e = json_object(), *shape = json_array();
		uint64_t h = t->units ? p->thash[i] : XXH3_64bits(NULL, 0);
		for (unsigned k = 0; k < t->rank; k++)
			json_array_append_new(shape, json_integer((json_int_t)t->shape[k]));
		json_object_set_new(e, "name", json_string(t->name));
		json_object_set_new(e, "dtype", json_string(dtype_name(t->out_dt)));
		json_object_set_new(e, "shape", shape);
		json_object_set_new(e, "offset", json_integer((json_int_t)(t->out_off - mf->off0)));
		json_object_set_new(e, "bytes", json_integer((json_int_t)(t->units * t->unit_out)));
		json_object_set_new(e, "block", t->block < 0 ? json_null() : json_integer(t->block));
		json_object_set_new(e, "lambda", t->merge ? num_or_null(t->lambda) : json_null());
		json_object_set_new(e, "xxh3_64", hex64(h));
		if (p->thr && p->thr_per_tensor && t->merge)
			json_object_set_new(e, "ties_thresholds",
			                    report_thresholds(p->thr + i * p->nmodels, p->nmodels));
		json_array_append_new(tensors, e);
	}
	json_object_set_new(root, "tensors", tensors);

	*out = json_dumps(root, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
	if (!*out)
		rc = lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory for the manifest");
	json_decref(root);
	return rc;
}
