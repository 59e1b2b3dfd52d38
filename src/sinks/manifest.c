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
#include "plan.h"

int manifest_init(struct plan *p, struct lines_error *err)
{
	p->out.thash = calloc(p->lay.nt ? p->lay.nt : 1, sizeof(*p->out.thash));
	p->out.tstate = XXH3_createState();
	RETURN_ERROR_IF(!p->out.thash || !p->out.tstate, err, LINES_ENOMEM, NULL, NULL,
	                "out of memory");
	return 0;
}

void manifest_note(void *arg, const struct tensor *t, const struct pipe_job *job)
{
	struct output *o = arg;
	if (job->u0 == 0)
		XXH3_64bits_reset(o->tstate);
	XXH3_64bits_update(o->tstate, job->out, (size_t)tensor_file_span(t, job->u1 - job->u0));
	if (job->u1 == t->units)
		o->thash[job->tensor] = XXH3_64bits_digest(o->tstate);
}

static json_t *num_or_null(double v) { return isnan(v) ? json_null() : json_num(v); }

static json_t *hex64(uint64_t v)
{
	char h[17];
	xxh64_hex(v, h);
	return json_string(h);
}

/* One entry of "tensors", at the depth json_dumps(JSON_INDENT(1)) puts it:
 * two more spaces after every line break (JSON strings hold none). */
static int write_entry(struct sink *s, json_t *e, int comma, struct lines_error *err)
{
	char *text = json_dumps(e, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
	int rc;
	RETURN_ERROR_IF(!text, err, LINES_ENOMEM, NULL, NULL, "out of memory for the manifest");
	rc = sink_write(s, comma ? ",\n  " : "\n  ", comma ? 4 : 3, err);
	for (const char *a = text, *nl; rc == 0 && *a; a = nl + 1) {
		nl = strchr(a, '\n');
		if (!nl) {
			rc = sink_write(s, a, strlen(a), err);
			break;
		}
		rc = sink_write(s, a, (size_t)(nl - a), err);
		if (rc == 0)
			rc = sink_write(s, "\n  ", 3, err);
	}
	free(text);
	return rc;
}

int manifest_write(const struct plan *p, const struct manifest_file *mf, struct sink *s,
                   struct lines_error *err)
{
	const char *name = mf->name;
	const struct xxh128 *file_digest = mf->digest;
	json_t *root = json_object(), *run = json_object(), *inputs = json_array(),
	       *tensors = json_array(), *hdr = json_object(), *w = json_array();
	char hex[33];
	int rc = 0;

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
	json_object_set_new(root, "compression", json_string(p->out.zst ? "zstd" : "none"));
	json_object_set_new(root, "xxh3_128", json_string(hex));
	json_object_set_new(hdr, "bytes", json_integer((json_int_t)mf->header_len));
	json_object_set_new(hdr, "xxh3_64", hex64(mf->header_hash));
	json_object_set_new(root, "header", hdr);
	json_object_set_new(root, "data_bytes", json_integer((json_int_t)mf->data_bytes));

	json_object_set_new(run, "command", json_string(p->o.command ? p->o.command : "merge"));
	json_object_set_new(run, "method", json_string(p->method->name));
	for (unsigned i = 0; i < p->lay.nmodels; i++)
		json_array_append_new(w, json_real(p->sc.w[i]));
	json_object_set_new(run, "weights", w);
	json_object_set_new(run, "weights_per_tensor", json_boolean(p->lay.tensor_w));
	json_object_set_new(run, "densities_per_tensor", json_boolean(p->lay.tensor_density));
	json_object_set_new(run, "lines", json_boolean(p->o.lines));
	if (p->o.lines) {
		json_object_set_new(run, "alpha", json_real(p->sc.alpha));
		json_object_set_new(run, "beta", json_real(p->sc.beta));
		json_object_set_new(run, "alpha_mode", json_string(p->o.alpha_auto ? "auto" : "given"));
		json_object_set_new(run, "norm", json_string(p->o.norm_p == 2 ? "l2" : "l1"));
		if (p->o.schedule) { /* only when given: the linear ramp as before */
			json_t *f = json_array();
			for (size_t i = 0; i < p->o.nschedule; i++)
				json_array_append_new(f, json_real(p->o.schedule[i]));
			json_object_set_new(run, "schedule", f);
		}
	} else {
		json_object_set_new(run, "lambda", json_real(p->o.lambda));
	}
	if (p->o.tokenizer_source) /* only when given: the base's, as before */
		json_object_set_new(run, "tokenizer_source", json_string(p->o.tokenizer_source));
	json_object_set_new(run, "norm_sum", p->sc.have_norms ? json_real(p->sc.norm_sum) : json_null());
	json_object_set_new(run, "norm_mtl", p->sc.have_norms ? json_real(p->sc.norm_mtl) : json_null());
	json_object_set_new(run, "num_layers", json_integer(p->lay.L));
	if (p->lay.nstacks > 1) { /* one stack (most models): as before stacks were known */
		json_t *stacks = json_array();
		for (size_t k = 0; k < p->lay.nstacks; k++) {
			const struct stack *st = &p->lay.stacks[k];
			json_t *e = json_object();
			json_object_set_new(e, "name", json_string(st->name));
			json_object_set_new(e, "num_layers", json_integer(st->L));
			json_object_set_new(e, "first", json_integer(st->first));
			json_object_set_new(e, "ramp", json_integer(st->ramp));
			json_array_append_new(stacks, e);
		}
		json_object_set_new(run, "stacks", stacks);
	}
	json_object_set_new(run, "dtype", p->o.dtype ? json_string(p->o.dtype) : json_null());
	json_object_set_new(run, "zstd_level", p->out.zst ? json_integer(p->out.zstd_level) : json_null());
	if (p->method->report) {
		json_t *m = p->method->report(&p->ctx);
		if (m)
			json_object_set_new(run, p->method->name, m);
	}
	for (unsigned m = 0; m < p->in.ninputs; m++) {
		json_t *in = json_object();
		const struct ckpt *c = p->in.ck[m];
		json_object_set_new(in, "role", json_string(m                      ? "model"
		                                            : p->in.base_is_model ? "reference"
		                                                                  : "base"));
		json_object_set_new(in, "path", json_string(m ? p->o.models[m - 1] : p->o.base));
		uint64_t bytes = 0; /* a sharded input's: every shard's */
		for (size_t f = 0; f < c->nfiles && c->files[0].disk_size; f++)
			bytes += c->files[f].disk_size;
		json_object_set_new(in, "bytes", bytes ? json_integer((json_int_t)bytes) : json_null());
		if (m)
			json_object_set_new(in, "weight", json_real(p->sc.w[m - 1]));
		/* a shard's: its own tensors' (the same whatever part wrote it) */
		uint64_t nf = p->stats.nonfinite ? p->stats.nonfinite[m] : 0;
		if (p->stats.by_shard)
			nf = mf->t1 > mf->t0
			         ? p->stats.by_shard[(size_t)p->stats.shard_of[mf->t0] * p->in.ninputs + m]
			         : 0;
		json_object_set_new(in, "nonfinite", json_integer((json_int_t)nf));
		json_array_append_new(inputs, in);
	}
	json_object_set_new(run, "inputs", inputs);
	json_object_set_new(root, "run", run);

	/* the tensors are written one at a time, not held as one tree: a
	 * model of many tensors would need a large one. The text is what
	 * json_dumps(JSON_INDENT(1)) gives the whole object, "tensors" last. */
	char *head = json_dumps(root, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
	json_decref(root);
	json_decref(tensors);
	RETURN_ERROR_IF(!head, err, LINES_ENOMEM, NULL, NULL, "out of memory for the manifest");
	size_t hl = strlen(head);
	if (hl >= 2 && !strcmp(head + hl - 2, "\n}"))
		hl -= 2; /* the object's end: the tensors go before it */
	rc = sink_write(s, head, hl, err);
	free(head);
	if (rc == 0)
		rc = sink_write(s, mf->t1 > mf->t0 ? ",\n \"tensors\": [" : ",\n \"tensors\": []", 
		                mf->t1 > mf->t0 ? 15 : 16, err);
	for (size_t i = mf->t0; rc == 0 && i < mf->t1; i++) {
		const struct tensor *t = &p->lay.t[i];
		json_t *e = json_object(), *shape = json_array();
		uint64_t h = t->units ? p->out.thash[i] : XXH3_64bits(NULL, 0);
		for (unsigned k = 0; k < t->rank; k++)
			json_array_append_new(shape, json_integer((json_int_t)t->shape[k]));
		json_object_set_new(e, "name", json_string(t->name));
		json_object_set_new(e, "dtype", json_string(dtype_name(tensor_file_dt(t))));
		json_object_set_new(e, "shape", shape);
		json_object_set_new(e, "offset", json_integer((json_int_t)(t->out_off - mf->off0)));
		json_object_set_new(e, "bytes", json_integer((json_int_t)tensor_file_bytes(t)));
		json_object_set_new(e, "block", t->block < 0 ? json_null() : json_integer(t->block));
		if (p->lay.nstacks > 1)
			json_object_set_new(e, "stack", t->stack < 0 ? json_null()
			                                              : json_string(p->lay.stacks[t->stack].name));
		json_object_set_new(e, "lambda", t->merge ? num_or_null(t->lambda) : json_null());
		json_object_set_new(e, "xxh3_64", hex64(h));
		if (p->method->report_tensor)
			p->method->report_tensor(&p->ctx, i, e);
		tensor_params_report(&p->ctx, i, e);
		rc = write_entry(s, e, i > mf->t0, err);
		json_decref(e);
	}
	if (rc == 0)
		rc = sink_write(s, mf->t1 > mf->t0 ? "\n ]\n}" : "\n}", mf->t1 > mf->t0 ? 5 : 2, err);
	return rc;
}
