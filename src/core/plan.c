/*
 * plan.c -- the inputs of a plan, opened and checked against each other,
 * and the layout of the output.
 *
 * Everything that can be known before reading tensor data is checked
 * here, before the output is created: headers, names, shapes, dtypes,
 * block counts. Incompatibilities are all reported (through the log
 * callback) before the call fails, so a user fixes them in one go.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>

#include <jansson.h>

#include "fmt_gguf.h"
#include "fp8.h"
#include "ggml_quants.h"
#include "plan.h"
#include "stream.h"
#include "strutil.h"

#define PLAN_LIST_MAX 20 /* names listed per kind of mismatch */

static void fmt_shape(char *buf, size_t n, unsigned rank, const uint64_t *shape)
{
	size_t len = 0;
	len += (size_t)snprintf(buf + len, n - len, "[");
	for (unsigned i = 0; i < rank && len < n; i++)
		len += (size_t)snprintf(buf + len, n - len, "%s%" PRIu64, i ? ", " : "", shape[i]);
	if (len < n)
		snprintf(buf + len, n - len, "]");
}

static int same_shape(const struct ckpt_tensor *a, const struct ckpt_tensor *b)
{
	if (a->rank != b->rank)
		return 0;
	for (unsigned i = 0; i < a->rank; i++)
		if (a->shape[i] != b->shape[i])
			return 0;
	return 1;
}

static int parse_out_dtype(const char *s, int gguf, enum dtype *d, struct lines_error *err)
{
	static const struct {
		const char *name;
		enum dtype dt;
	} ok[] = {{"bf16", DT_BF16}, {"f16", DT_F16}, {"f32", DT_F32}, {"f64", DT_F64},
	          {"fp8", DT_F8_E4M3}, /* fp8: the base's float8 scheme */
	          /* ggml's block types: a GGUF output only */
	          {"q8_0", DT_Q8_0}, {"q4_0", DT_Q4_0}, {"q4_1", DT_Q4_1}, {"q5_0", DT_Q5_0},
	          {"q5_1", DT_Q5_1}, {"q4_k", DT_Q4_K}, {"q5_k", DT_Q5_K}, {"q6_k", DT_Q6_K}};
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		if (strcasecmp(s, ok[i].name))
			continue;
		*d = ok[i].dt;
		RETURN_ERROR_IF(ggml_block_dtype(*d) && !gguf, err, LINES_EUSAGE, NULL, NULL,
		                "--dtype %s is a GGUF type: the output must be a .gguf file", s);
		RETURN_ERROR_IF(ggml_block_dtype(*d) && !ggml_quant_writable(*d), err,
		                LINES_EUNSUPPORTED, NULL, NULL,
		                "--dtype %s: this lines cannot write %s blocks yet", s, dtype_name(*d));
		RETURN_ERROR_IF(gguf && *d == DT_F8_E4M3, err, LINES_EUSAGE, NULL, NULL,
		                "--dtype fp8 writes safetensors: GGUF has no float8 type");
		RETURN_ERROR_IF(gguf && *d == DT_F64, err, LINES_EUSAGE, NULL, NULL,
		                "--dtype f64 writes safetensors: llama.cpp has no float64 model "
		                "type (general.file_type could not name it)");
		return 0;
	}
	return lines_errf(err, LINES_EUSAGE, NULL, NULL,
	                  "unknown output dtype '%s' (bf16, f16, f32, f64, fp8, or for a GGUF output "
	                  "q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k)",
	                  s);
}

/*
 * mergekit's slices: every model the slices name is opened once, and each
 * input is composed of its source in every slice (ckpt_compose), which
 * borrows the models' files.
 */
static int open_slices(struct plan *p, struct lines_error *err)
{
	size_t ns = p->o.nslices;
	struct ckpt_part *parts = calloc(ns, sizeof(*parts));
	int rc = 0;
	p->in.src = calloc(ns * p->in.ninputs, sizeof(*p->in.src));
	p->in.src_names = calloc(ns * p->in.ninputs, sizeof(*p->in.src_names));
	if (!parts || !p->in.src || !p->in.src_names) {
		free(parts);
		return lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
	}
	for (unsigned m = 0; m < p->in.ninputs && rc == 0; m++) {
		/* without a base, input 0 is the first model's again */
		unsigned k = p->in.base_is_model ? (m ? m - 1 : 0) : m;
		for (size_t s = 0; s < ns && rc == 0; s++) {
			const struct lines_slice_src *ss = &p->o.slices[s].src[k];
			unsigned j = 0;
			while (j < p->in.nsrc && strcmp(p->in.src_names[j], ss->model))
				j++;
			if (j == p->in.nsrc) {
				rc = ckpt_open(&p->in.src[j], ss->model, &p->layers, err);
				if (rc < 0)
					break;
				p->in.src_names[p->in.nsrc++] = ss->model;
			}
			parts[s] = (struct ckpt_part){p->in.src[j], ss->first, ss->end};
		}
		if (rc == 0)
			rc = ckpt_compose(&p->in.ck[m], m ? p->o.models[m - 1] : p->o.base, parts,
			                  ns, &p->layers, err);
	}
	free(parts);
	return rc;
}

static unsigned check_model(struct plan *p, unsigned m, unsigned *listed);

int plan_open_inputs(struct plan *p, struct lines_error *err)
{
	int rc = 0, failures = 0;
	struct lines_error e;

	p->in.ck = calloc(p->in.ninputs, sizeof(*p->in.ck));
	p->in.names = calloc(p->in.ninputs, sizeof(*p->in.names));
	RETURN_ERROR_IF(!p->in.ck || !p->in.names, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	if (p->o.nslices)
		FORWARD_IF_ERROR(open_slices(p, err));
	for (unsigned m = 0; m < p->in.ninputs && !p->o.nslices; m++) {
		const char *path = m ? p->o.models[m - 1] : p->o.base;
		int r = ckpt_open(&p->in.ck[m], path, &p->layers, &e);
		if (r < 0) {
			/* report every unreadable input, the last one as the error */
			if (failures++)
				lines_logf(&p->o, LINES_LOG_ERROR, err->file, err->tensor, "%s", err->msg);
			*err = e;
			rc = r;
		}
	}
	if (rc < 0) {
		/* and what the readable models do not share with a readable base
		 * (of their format), so that one run reports every problem */
		unsigned listed = 0;
		for (unsigned m = 1; m < p->in.ninputs && p->in.ck[0] && !p->o.nslices; m++)
			if (p->in.ck[m] && p->in.ck[m]->files[0].fmt == p->in.ck[0]->files[0].fmt)
				(void)check_model(p, m, &listed);
		return rc;
	}
	/* GGUF (fmt_gguf.c) is read and inspected; merging it waits for the
	 * GGUF writer, and GGUF and safetensors name and lay out tensors
	 * differently, so the two never mix */
	int gguf = -1, st = -1;
	for (unsigned m = 0; m < p->in.ninputs; m++) {
		if (p->in.ck[m]->files[0].fmt == &ckpt_fmt_gguf)
			gguf = gguf < 0 ? (int)m : gguf;
		else
			st = st < 0 ? (int)m : st;
	}
	RETURN_ERROR_IF(gguf >= 0 && st >= 0, err, LINES_EMISMATCH, p->in.ck[gguf]->path, NULL,
	                "is GGUF and %s is safetensors: the two name and lay out tensors "
	                "differently and are not merged together",
	                p->in.ck[st]->path);
	/* GGUF models merge into GGUF when OUT ends in .gguf, or is standard
	 * output (a filter keeps its format); into safetensors otherwise */
	const char *out = p->o.output;
	if (gguf >= 0 && out &&
	    (str_ends_with(out, ".gguf") || str_ends_with(out, ".gguf.zst") || !strcmp(out, "-")))
		p->out.gguf = 1; /* .gguf.zst: through the zstd sink, as .safetensors.zst */
	RETURN_ERROR_IF(out && (str_ends_with(out, ".gguf") || str_ends_with(out, ".gguf.zst")) && gguf < 0,
	                err, LINES_EUSAGE, out, NULL,
	                "a GGUF output needs GGUF inputs (safetensors models name and lay out "
	                "tensors differently)");
	RETURN_ERROR_IF(out && str_ends_with(out, ".gguf.zst") && p->o.shard_size, err, LINES_EUSAGE,
	                out, NULL,
	                "--shard-size writes split .gguf files: a compressed GGUF output is one "
	                "file (name it .gguf to split)");
	for (unsigned m = 0; m < p->in.ninputs; m++)
		p->in.names[m] = p->in.ck[m]->path;

	for (unsigned m = 0; m < p->in.ninputs; m++)
		p->in.nfiles += (unsigned)p->in.ck[m]->nfiles;
	p->in.files = calloc(p->in.nfiles, sizeof(*p->in.files));
	p->in.spill = calloc(p->in.nfiles ? p->in.nfiles : 1, 1);
	RETURN_ERROR_IF(!p->in.files || !p->in.spill, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	unsigned stdin_uses = 0;
	for (unsigned m = 0; m < p->in.ninputs; m++)
		for (size_t i = 0; i < p->in.ck[m]->nfiles; i++) {
			const struct ckpt_file *cf = &p->in.ck[m]->files[i];
			if (!cf->zs)
				continue;
			p->in.streams = 1;
			if (!zs_restartable(cf->zs)) {
				p->in.single_pass = 1;
				stdin_uses++;
			}
		}
	(void)stdin_uses; /* at most one: check_options made sure */
	for (unsigned m = 0, f = 0; m < p->in.ninputs; m++)
		for (size_t i = 0; i < p->in.ck[m]->nfiles; i++, f++) {
			p->in.files[f].path = p->in.ck[m]->files[i].path;
			p->in.files[f].fd = p->in.ck[m]->files[i].fd;
			p->in.files[f].size = p->in.ck[m]->files[i].size;
		}
	return 0;
}

/* A float dtype the pipeline decodes for the methods. */
static int decodable(enum dtype d)
{
	return dtype_mergeable(d) || fp8_dtype(d) || ggml_block_dtype(d);
}

int plan_is_vocab_name(const char *name)
{
	static const char *const names[] = {"embed", "wte", "lm_head", "shared", "word_embeddings",
	                                    "token_embd", "output.weight"};
	int named = 0;
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		named |= strstr(name, names[i]) != NULL;
	return named;
}

/* An embedding or output head whose vocabulary (first dimension) differs. */
static int is_vocab(const struct ckpt_tensor *a, const struct ckpt_tensor *b)
{
	if (!plan_is_vocab_name(a->name) || a->rank != b->rank || a->rank == 0 || a->shape[0] == b->shape[0])
		return 0;
	for (unsigned k = 1; k < a->rank; k++)
		if (a->shape[k] != b->shape[k])
			return 0;
	return 1;
}

/* Compare one model with the base; log the differences, PLAN_LIST_MAX of
 * each kind at most; count them all, and those listed. */
static unsigned check_model(struct plan *p, unsigned m, unsigned *listed)
{
	const struct ckpt *b = p->in.ck[0], *c = p->in.ck[m];
	unsigned missing = 0, extra = 0, shape = 0, dtype = 0, other = 0;
	char s1[256], s2[256];
	/* without a base, the first model is the reference */
	const char *ref = p->in.base_is_model ? "the first model" : "the base";

	for (size_t i = 0; i < b->ntensors; i++) {
		const struct ckpt_tensor *bt = &b->t[i];
		const struct ckpt_tensor *ct = ckpt_find(c, bt->name);
		if (fp8_is_scale(b, bt->name))
			continue; /* its weight's business (fp8.c) */
		if (!ct) {
			if (++missing <= PLAN_LIST_MAX)
				lines_logf(&p->o, LINES_LOG_ERROR, c->path, bt->name,
				           "missing (%s has this tensor)", ref);
			continue;
		}
		if (!same_shape(bt, ct) && p->o.vocab_base && is_vocab(bt, ct) &&
		    ct->shape[0] > bt->shape[0]) {
			/* --vocab base: the base's rows are the first rows */
			lines_logf(&p->o, LINES_LOG_WARN, c->path, bt->name,
			           "%llu rows beyond the base's %llu (added tokens) are left out "
			           "(--vocab base)",
			           (unsigned long long)(ct->shape[0] - bt->shape[0]),
			           (unsigned long long)bt->shape[0]);
			continue;
		}
		if (!same_shape(bt, ct)) {
			if (++shape > PLAN_LIST_MAX)
				continue;
			fmt_shape(s1, sizeof(s1), ct->rank, ct->shape);
			fmt_shape(s2, sizeof(s2), bt->rank, bt->shape);
			if (is_vocab(bt, ct) && ct->shape[0] > bt->shape[0])
				lines_logf(&p->o, LINES_LOG_ERROR, c->path, bt->name,
				           "shape %s differs from %s's %s: the vocabularies differ "
				           "(%llu tokens, %s has %llu); give --vocab base to merge "
				           "the base's rows only (as mergekit does), or resize the "
				           "embeddings first",
				           s1, ref, s2, (unsigned long long)ct->shape[0], ref,
				           (unsigned long long)bt->shape[0]);
			else if (is_vocab(bt, ct)) /* --vocab base needs the base's rows */
				lines_logf(&p->o, LINES_LOG_ERROR, c->path, bt->name,
				           "shape %s differs from %s's %s: the model has fewer tokens "
				           "(%llu, %s has %llu), so it lacks rows that %s has%s; "
				           "resize its embeddings first",
				           s1, ref, s2, (unsigned long long)ct->shape[0], ref,
				           (unsigned long long)bt->shape[0], ref,
				           p->o.vocab_base ? " (--vocab base merges all of them)" : "");
			else
				lines_logf(&p->o, LINES_LOG_ERROR, c->path, bt->name,
				           "shape %s differs from %s's %s", s1, ref, s2);
		} else if (ct->dtype != bt->dtype &&
		           !(decodable(ct->dtype) && decodable(bt->dtype)) &&
		           ++dtype <= PLAN_LIST_MAX) {
			/* float dtypes may differ (merged in F32); others may not */
			lines_logf(&p->o, LINES_LOG_ERROR, c->path, bt->name,
			           "dtype %s differs from %s's %s", dtype_name(ct->dtype), ref,
			           dtype_name(bt->dtype));
		}
	}
	if (missing > PLAN_LIST_MAX)
		lines_logf(&p->o, LINES_LOG_ERROR, c->path, NULL,
		           "... %u tensors of %s are missing in all", missing, ref);
	if (shape > PLAN_LIST_MAX)
		lines_logf(&p->o, LINES_LOG_ERROR, c->path, NULL,
		           "... %u tensors have another shape in all", shape);
	if (dtype > PLAN_LIST_MAX)
		lines_logf(&p->o, LINES_LOG_ERROR, c->path, NULL,
		           "... %u tensors have another dtype in all", dtype);
	for (size_t i = 0; i < c->ntensors; i++) {
		const struct ckpt_tensor *ct = &c->t[i];
		if (ckpt_find(b, ct->name) || fp8_is_scale(c, ct->name))
			continue;
		if (++extra <= PLAN_LIST_MAX)
			lines_logf(&p->o, LINES_LOG_ERROR, c->path, ct->name, "not in %s", ref);
	}
	if (extra > PLAN_LIST_MAX)
		lines_logf(&p->o, LINES_LOG_ERROR, c->path, NULL,
		           "... %u tensors are not in %s in all", extra, ref);
	if (c->num_layers != b->num_layers) {
		lines_logf(&p->o, LINES_LOG_ERROR, c->path, NULL, "has %ld block%s, %s has %ld",
		           c->num_layers, c->num_layers == 1 ? "" : "s", ref, b->num_layers);
		other++;
	}
#define LISTED(n) ((n) < PLAN_LIST_MAX ? (n) : PLAN_LIST_MAX)
	*listed += LISTED(missing) + LISTED(extra) + LISTED(shape) + LISTED(dtype) + other;
#undef LISTED
	return missing + extra + shape + dtype + other;
}

static int check_unsupported(struct plan *p, struct lines_error *err)
{
	const struct ckpt *b = p->in.ck[0];
	unsigned bad = 0;
	const struct ckpt_tensor *first = NULL;
	for (size_t i = 0; i < b->ntensors; i++) {
		const struct ckpt_tensor *t = &b->t[i];
		if (dtype_table[t->dtype].floating && !decodable(t->dtype)) {
			if (!bad++)
				first = t;
			else if (bad <= PLAN_LIST_MAX)
				lines_logf(&p->o, LINES_LOG_ERROR, b->path, t->name,
				         "cannot merge %s tensors (only BF16, F16, F32, F64, F8_E4M3, F8_E5M2 and ggml's Q4_0 to Q8_K)",
				         dtype_name(t->dtype));
		}
	}
	RETURN_ERROR_IF(bad, err, LINES_EUNSUPPORTED, b->path, first->name,
	                "cannot merge %s tensors (only BF16, F16, F32, F64, F8_E4M3, F8_E5M2 and ggml's Q4_0 to Q8_K); "
	                "%u such tensor%s",
	                dtype_name(first->dtype), bad, bad == 1 ? "" : "s");
	return 0;
}

/* The stack named name[0, len) of the base, or -1. */
static int find_stack(const struct plan *p, const char *name, size_t len)
{
	const struct ckpt *b = p->in.ck[0];
	for (size_t i = 0; i < b->nstacks; i++)
		if (strlen(b->stacks[i].name) == len && !memcmp(b->stacks[i].name, name, len))
			return (int)i;
	return -1;
}

/* "A,B": the stacks of one ramp, in the order they run. */
static int chain_stacks(struct plan *p, const char *order, struct lines_error *err)
{
	long total = 0;
	int *chain = calloc(p->lay.nstacks ? p->lay.nstacks : 1, sizeof(*chain));
	size_t n = 0;
	int rc = 0;
	RETURN_ERROR_IF(!chain, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	for (const char *s = order; rc == 0 && *s;) {
		size_t len = strcspn(s, ",");
		int k = find_stack(p, s, len);
		if (k < 0)
			rc = lines_errf(err, LINES_EUSAGE, p->in.names[0], NULL,
			                "--stack-order: the base has no stack '%.*s' (lines inspect "
			                "--layers lists them)",
			                (int)len, s);
		for (size_t j = 0; rc == 0 && j < n; j++)
			if (chain[j] == k)
				rc = lines_errf(err, LINES_EUSAGE, NULL, NULL,
				                "--stack-order names stack '%.*s' twice", (int)len, s);
		if (rc == 0) {
			chain[n++] = k;
			total += p->lay.stacks[k].L;
		}
		s += len;
		if (*s == ',')
			s++;
	}
	if (rc == 0 && n < 2)
		rc = lines_errf(err, LINES_EUSAGE, NULL, NULL,
		                "--stack-order chains two stacks or more ('A,B')");
	for (size_t j = 0, first = 0; rc == 0 && j < n; j++) {
		p->lay.stacks[chain[j]].first = (long)first;
		p->lay.stacks[chain[j]].ramp = total;
		first += (size_t)p->lay.stacks[chain[j]].L;
	}
	free(chain);
	return rc;
}

/*
 * LiNeS scales by depth: a model with no tensor in a block would get one
 * global scale, which is not what was asked, so it is an error that says
 * which names were seen; a stack of one block is on a ramp of one step.
 */
static int check_depth(struct plan *p, struct lines_error *err)
{
	const struct ckpt *b = p->in.ck[0];
	char seen[400];
	size_t len = 0, shown = 0, floats = 0;

	for (size_t i = 0; i < p->lay.nstacks; i++)
		if (p->lay.stacks[i].ramp == 1)
			lines_logf(&p->o, LINES_LOG_WARN, b->path, NULL,
			           "stack %s has a single block: LiNeS gives it alpha, with no ramp",
			           p->lay.stacks[i].name);
	if (p->lay.nstacks)
		return 0;
	seen[0] = '\0';
	for (size_t i = 0; i < b->ntensors; i++) {
		if (!dtype_mergeable(b->t[i].dtype))
			continue;
		if (shown < 4 && len + strlen(b->t[i].name) + 8 < sizeof(seen)) {
			len += (size_t)snprintf(seen + len, sizeof(seen) - len, "%s%s", shown ? ", " : "",
			                        b->t[i].name);
			shown++;
		}
		floats++;
	}
	if (floats == 0)
		return lines_errf(err, LINES_EUSAGE, b->path, NULL,
		                  "no tensor is in a block, so LiNeS cannot scale by depth (the "
		                  "model has no floating-point tensor); merge without LiNeS "
		                  "(--lambda)");
	return lines_errf(err, LINES_EUSAGE, b->path, NULL,
	                  "no tensor is in a block, so LiNeS cannot scale by depth (%zu tensor%s, "
	                  "e.g. %s%s); give --layer-regex with the block index as its capture group "
	                  "(and the stack as a first one), or merge without LiNeS (--lambda)",
	                  floats, floats == 1 ? "" : "s", shown ? seen : "...",
	                  floats > shown && shown ? ", ..." : "");
}

/*
 * The stacks of the base and their ramps: each its own (L = 1 + its
 * largest index, or --num-layers), one joint ramp over the model's
 * largest depth (--stacks joint), or chained (--stack-order).
 */
int plan_stacks(struct plan *p, struct lines_error *err)
{
	const struct ckpt *b = p->in.ck[0];
	const struct lines_layer_opts *lo = &p->o.layers;

	RETURN_ERROR_IF(lo->joint && lo->stack_order, err, LINES_EUSAGE, NULL, NULL,
	                "--stacks joint and --stack-order exclude each other");
	p->lay.nstacks = b->nstacks;
	p->lay.stacks = calloc(b->nstacks ? b->nstacks : 1, sizeof(*p->lay.stacks));
	RETURN_ERROR_IF(!p->lay.stacks, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	for (size_t i = 0; i < b->nstacks; i++) {
		struct stack *st = &p->lay.stacks[i];
		st->name = b->stacks[i].name;
		st->L = lo->num_layers ? lo->num_layers : b->stacks[i].num_layers;
		st->first = 0;
		st->ramp = lo->joint ? p->lay.L : st->L;
	}
	if (lo->stack_order)
		FORWARD_IF_ERROR(chain_stacks(p, lo->stack_order, err));
	if (p->o.lines)
		FORWARD_IF_ERROR(check_depth(p, err));
	return 0;
}

/* Tensor names that only integer-quantized checkpoints have. */
static const char *quant_kind(const char *name)
{
	static const struct {
		const char *suffix, *kind;
	} q[] = {
		{".qweight", "GPTQ/AWQ (qweight, qzeros, scales)"},
		{".qzeros", "GPTQ/AWQ (qweight, qzeros, scales)"},
		{".g_idx", "GPTQ (g_idx)"},
		{".SCB", "bitsandbytes 8-bit (SCB)"},
		{".weight_format", "bitsandbytes 8-bit (weight_format)"},
		{".absmax", "bitsandbytes 4-bit (absmax)"},
		{".quant_map", "bitsandbytes 4-bit (quant_map)"},
		{".quant_state.bitsandbytes__nf4", "bitsandbytes NF4"},
		{".quant_state.bitsandbytes__fp4", "bitsandbytes FP4"},
		{".weight_packed", "compressed-tensors packed integers (weight_packed)"},
	};
	size_t n = strlen(name);
	for (size_t i = 0; i < ARRAY_SIZE(q); i++) {
		size_t k = strlen(q[i].suffix);
		if (n >= k && !strcmp(name + n - k, q[i].suffix))
			return q[i].kind;
	}
	return NULL;
}

/* The quant_method of DIR/config.json's quantization_config, in buf, or "". */
static void config_quant(const char *dir, char *buf, size_t n)
{
	char path[4096];
	json_t *root, *qc, *m;
	buf[0] = '\0';
	if (!dir || (size_t)snprintf(path, sizeof(path), "%s/config.json", dir) >= sizeof(path) ||
	    !(root = json_load_file(path, 0, NULL)))
		return;
	qc = json_object_get(root, "quantization_config");
	if (json_is_object(qc)) {
		m = json_object_get(qc, "quant_method");
		snprintf(buf, n, "%s", json_is_string(m) ? json_string_value(m) : "unknown");
	}
	json_decref(root);
}

/*
 * Integer-quantized checkpoints (GPTQ, AWQ, bitsandbytes, or a config.json
 * whose quantization_config names an integer scheme) would "merge" into an
 * inconsistent model: refused up front, each input named. FP8 configs are
 * the float8 tensors' business (check_unsupported).
 */
static int check_quantized(struct plan *p, struct lines_error *err)
{
	unsigned bad = 0;
	for (unsigned m = 0; m < p->in.ninputs; m++) {
		const struct ckpt *c = p->in.ck[m];
		const char *kind = NULL, *tensor = NULL;
		char method[64], what[128];
		for (size_t i = 0; i < c->ntensors && !kind; i++)
			if ((kind = quant_kind(c->t[i].name)))
				tensor = c->t[i].name;
		config_quant(c->dir, method, sizeof(method));
		if (!kind && method[0] && strcmp(method, "fp8") && strcmp(method, "compressed-tensors")) {
			snprintf(what, sizeof(what), "%s (config.json: quantization_config)", method);
			kind = what;
		}
		if (!kind)
			continue;
		bad++;
		lines_logf(&p->o, LINES_LOG_ERROR, c->path, tensor,
		           "quantized with %s: integer-quantized weights cannot be merged; "
		           "dequantize the model first (to BF16 or F16)",
		           kind);
	}
	RETURN_ERROR_IF(bad, err, LINES_EUNSUPPORTED, NULL, NULL,
	                "%u quantized input%s (listed above)", bad, bad == 1 ? "" : "s");
	return 0;
}

/* n bytes at off of two files are equal. */
static int same_bytes(int fa, int fb, uint64_t off, uint64_t n, unsigned char *x, unsigned char *y,
                      size_t cap)
{
	while (n) {
		size_t k = n < cap ? (size_t)n : cap;
		if (full_pread(fa, x, k, off) < 0 || full_pread(fb, y, k, off) < 0 || memcmp(x, y, k))
			return 0;
		off += k;
		n -= k;
	}
	return 1;
}

/* Two inputs that are the same bytes: the same files (through any path),
 * or copies with the same header and the same first 64 KiB of data. */
static int same_input(const struct ckpt *a, const struct ckpt *b)
{
	if (a->borrowed || b->borrowed) /* slices: other ranges of the same files */
		return 0;
	int same_files = a->nfiles == b->nfiles;
	for (size_t f = 0; same_files && f < a->nfiles; f++)
		same_files = a->files[f].dev == b->files[f].dev && a->files[f].ino == b->files[f].ino;
	if (same_files)
		return 1;
	const struct ckpt_file *fa = &a->files[0], *fb = &b->files[0];
	if (a->nfiles != 1 || b->nfiles != 1 || fa->zs || fb->zs || fa->size != fb->size ||
	    fa->data_start != fb->data_start)
		return 0;
	uint64_t data = fa->data_end - fa->data_start;
	unsigned char *x = malloc(2 * 65536), *y = x ? x + 65536 : NULL;
	/* the data first: models of one architecture share their header, and
	 * it may be large */
	int same = x &&
	           same_bytes(fa->fd, fb->fd, fa->data_start, data < 65536 ? data : 65536, x, y, 65536) &&
	           same_bytes(fa->fd, fb->fd, 0, fa->data_start, x, y, 65536);
	free(x);
	return same;
}

/* Likely mistakes that are still valid merges: warnings. */
static void check_twice(struct plan *p)
{
	for (unsigned m = 1; m < p->in.ninputs; m++)
		/* a method that merges the models themselves (linear) may take the
		 * base as a model on purpose, and a reference is no base */
		for (unsigned k = !!(p->method->flags & METHOD_NO_BASE); k < m; k++) {
			if (!same_input(p->in.ck[k], p->in.ck[m]))
				continue;
			if (k == 0)
				lines_logf(&p->o, LINES_LOG_WARN, p->in.names[m], NULL,
				           "is the base (the same file or the same bytes): its task vector "
				           "is zero");
			else
				lines_logf(&p->o, LINES_LOG_WARN, p->in.names[m], NULL,
				           "is the same model as %s: it is counted twice", p->in.names[k]);
			break;
		}
}

int plan_check_inputs(struct plan *p, struct lines_error *err)
{
	unsigned problems = 0;
	long L = p->o.layers.num_layers ? p->o.layers.num_layers : p->in.ck[0]->num_layers;
	const struct ckpt *b = p->in.ck[0];

	if (b->num_layers > L)
		for (size_t i = 0; i < b->ntensors; i++)
			RETURN_ERROR_IF(b->t[i].block >= L, err, LINES_EUSAGE, b->path, b->t[i].name,
			                "block %ld is beyond --num-layers %ld", b->t[i].block, L);
	for (unsigned m = 0; m < p->in.ninputs; m++)
		if (p->in.ck[m]->note[0])
			lines_logf(&p->o, LINES_LOG_NOTE, p->in.ck[m]->path, NULL, "%s",
			           p->in.ck[m]->note);
	for (unsigned j = 0; j < p->in.nsrc; j++) /* the models of slices */
		if (p->in.src[j]->note[0])
			lines_logf(&p->o, LINES_LOG_NOTE, p->in.src[j]->path, NULL, "%s",
			           p->in.src[j]->note);
	FORWARD_IF_ERROR(check_quantized(p, err));
	check_twice(p);
	p->lay.L = L;
	FORWARD_IF_ERROR(plan_stacks(p, err));
	unsigned listed = 0;
	for (unsigned m = 1; m < p->in.ninputs; m++)
		problems += check_model(p, m, &listed);
	const char *ref = p->in.base_is_model ? "the first model" : "the base";
	RETURN_ERROR_IF(problems && listed == problems, err, LINES_EMISMATCH, NULL, NULL,
	                "the models do not match %s (%u problem%s listed above)", ref, problems,
	                problems == 1 ? "" : "s");
	RETURN_ERROR_IF(problems, err, LINES_EMISMATCH, NULL, NULL,
	                "the models do not match %s (%u problems, %u of them listed above)", ref,
	                problems, listed);
	return check_unsupported(p, err);
}

/* 1 when path names one of the input files (the same inode). */
int plan_is_input(const struct plan *p, const char *path)
{
	struct stat st, ix;
	if (stat(path, &st) < 0)
		return 0;
	for (unsigned m = 0; m < p->in.ninputs; m++) {
		const struct ckpt *c = p->in.ck[m];
		for (size_t f = 0; f < c->nfiles; f++)
			if (c->files[f].dev == st.st_dev && c->files[f].ino == st.st_ino)
				return 1;
		/* a sharded model's index, given or in its directory */
		char idx[PATH_MAX];
		if (c->path && str_ends_with(c->path, ".index.json"))
			snprintf(idx, sizeof(idx), "%s", c->path);
		else if (c->dir)
			snprintf(idx, sizeof(idx), "%s/model.safetensors.index.json", c->dir);
		else
			continue;
		if (stat(idx, &ix) == 0 && ix.st_dev == st.st_dev && ix.st_ino == st.st_ino)
			return 1;
	}
	return 0;
}

/* Where tensor t is in every input; a float8 input gets its scales. */
static int layout_sources(struct plan *p, struct tensor *t, struct lines_error *err)
{
	t->in = calloc(p->in.ninputs, sizeof(*t->in));
	RETURN_ERROR_IF(!t->in, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	for (unsigned m = 0, fbase = 0; m < p->in.ninputs; m++) {
		const struct ckpt *c = p->in.ck[m];
		const struct ckpt_tensor *ct = ckpt_find(c, t->name);
		t->in[m].file = fbase + ct->file;
		t->in[m].off = ct->off;
		t->in[m].dt = ct->dtype;
		t->in[m].unit = t->merge ? dtype_table[ct->dtype].block_bytes : 1;
		t->in[m].be = t->merge ? dtype_table[ct->dtype].block_elems : 1;
		t->mixed |= t->merge && (ct->dtype != t->in[0].dt || ggml_block_dtype(ct->dtype));
		if (t->merge && fp8_dtype(ct->dtype)) {
			t->mixed = 1; /* decoded to F32 with its scales */
			t->in[m].q = malloc(sizeof(*t->in[m].q));
			RETURN_ERROR_IF(!t->in[m].q, err, LINES_ENOMEM, NULL, NULL, "out of memory");
			FORWARD_IF_ERROR(fp8_find(t->in[m].q, c, ct, err));
		}
		fbase += (unsigned)c->nfiles;
	}
	return 0;
}

/* The dtype and units of merged tensor t; a float8 base gives BF16, or
 * with --dtype fp8 float8 again (the method computes F32, fp8.c encodes). */
static void layout_dtypes(struct tensor *t, enum dtype forced)
{
	if (fp8_dtype(forced))
		forced = DT_COUNT; /* only the float8 weights change */
	t->out_dt = forced != DT_COUNT ? forced
	            : fp8_dtype(t->in_dt)  ? DT_BF16
	            : ggml_block_dtype(t->in_dt) ? DT_F32 /* ggml's blocks decode exactly in F32 */
	                                         : t->in_dt;
	if (fp8_dtype(t->in_dt) || ggml_block_dtype(t->in_dt))
		t->in_dt = DT_F32; /* decoded (fp8.c, ggml_quants.c): mixed */
	t->units = t->nelem / dtype_table[t->in_dt].block_elems;
	t->unit_in = dtype_table[t->in_dt].block_bytes;
	t->unit_out = dtype_table[t->out_dt].block_bytes;
}

/*
 * The type a merged tensor has in a GGUF output (llama.cpp's quantizer
 * is the model): a tensor of one dimension (norms, biases) keeps the
 * base's type; another gets --dtype, or the base's type; a block type
 * lines cannot write becomes one it can (Q2_K, Q3_K: Q4_K; Q8_K and the
 * others: Q8_0); a tensor whose rows are not whole blocks of it is F32. A float
 * type is written by the method itself (out_dt), a block type is encoded
 * from the method's F32 (qdt, the pipeline's work_quant).
 */
static void layout_gguf_type(struct tensor *t, enum dtype base, enum dtype forced)
{
	enum dtype d = t->rank >= 2 && forced != DT_COUNT ? forced : base;
	if ((d == DT_Q2_K || d == DT_Q3_K) && ggml_quant_writable(DT_Q4_K))
		d = DT_Q4_K;
	if (ggml_block_dtype(d) && !ggml_quant_writable(d))
		d = DT_Q8_0; /* Q8_K, or a type this lines cannot write yet */
	if (ggml_block_dtype(d) && !ggml_quant_writable(d))
		d = DT_F16;
	uint64_t row = t->rank ? t->shape[t->rank - 1] : 1;
	if (ggml_block_dtype(d) && row % dtype_table[d].block_elems)
		d = DT_F32;
	t->qdt = DT_BOOL;
	if (ggml_block_dtype(d)) {
		t->qdt = d;
		d = DT_F32;
	}
	t->out_dt = d;
	t->unit_out = dtype_table[d].block_bytes;
}

/* --dtype fp8: the float8 weights of the base are written in float8, and
 * their scales are written new (not merged). */
static int layout_requant(struct plan *p, struct lines_error *err)
{
	const struct ckpt *b = p->in.ck[0];
	size_t n = 0;
	for (size_t i = 0; i < p->lay.nt; i++) {
		struct tensor *t = &p->lay.t[i];
		const struct ckpt_tensor *bt = &b->t[i], *st;
		if (!fp8_dtype(bt->dtype))
			continue;
		t->out_dt = DT_F32; /* what the method writes */
		t->unit_out = dtype_size(DT_F32);
		FORWARD_IF_ERROR(fp8_out_new(&t->rq, bt->dtype, t->in[0].q, t->nelem, err));
		n++;
		if ((st = fp8_scale_tensor(b, bt)))
			p->lay.t[st - b->t].gen = t->rq;
	}
	RETURN_ERROR_IF(!n, err, LINES_EUSAGE, b->path, NULL,
	                "--dtype fp8 writes FP8 weights in the %s's scheme, and it has none",
	                p->in.base_is_model ? "first model" : "base");
	return 0;
}

/* Where tensor T is, for opts.tensor_t: its slice and its place in it. */
static void tensor_at(const struct plan *p, const struct tensor *t, struct lines_tensor_at *at)
{
	long L = t->stack >= 0 ? p->lay.stacks[t->stack].L : p->lay.L;
	*at = (struct lines_tensor_at){t->name, t->block, L, 0, t->block, L};
	if (!p->o.nslices)
		return;
	if (t->block < 0) {
		at->slice = ckpt_is_embedding(t->name) ? 0 : p->o.nslices - 1;
		at->slice_block = -1;
		at->slice_layers = 0;
		return;
	}
	long off = 0;
	for (size_t s = 0; s < p->o.nslices; s++) {
		long n = p->o.slices[s].src[0].end - p->o.slices[s].src[0].first;
		if (t->block < off + n || s + 1 == p->o.nslices) {
			at->slice = s, at->slice_block = t->block - off, at->slice_layers = n;
			return;
		}
		off += n;
	}
}

/*
 * opts.tensor_params for merged tensor T (the IDX-th of the base's NTOT):
 * its t, weights and densities, starting from the run's; the weights and
 * densities go to the layout's table. A method takes them only when its
 * flags say so (TIES a density per tensor only with --trim tensor); a
 * value that differs from the run's is refused for the others, naming
 * the tensor.
 */
static int tensor_params_of(struct plan *p, struct tensor *t, size_t idx, size_t ntot,
                            struct lines_error *err)
{
	unsigned n = p->lay.nmodels, fl = p->method->flags;
	const struct lines_merge_opts *o = &p->o;
	int take_w = !!(fl & METHOD_TENSOR_W), take_t = !!(fl & METHOD_TENSOR_T);
	int take_d = (fl & METHOD_TENSOR_DENSITY) && (!(fl & METHOD_USES_TRIM) || o->trim_tensor);
	struct lines_tensor_at at;
	if (!p->lay.params) {
		p->lay.params = calloc(ntot * 2 * (n ? n : 1), sizeof(double));
		RETURN_ERROR_IF(!p->lay.params, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	}
	double *w = p->lay.params + idx * 2 * n, *d = w + n;
	struct lines_tensor_params tp = {t->t, w, d, n};
	for (unsigned i = 0; i < n; i++) {
		w[i] = o->weights ? o->weights[i] : 1.0;
		d[i] = o->densities ? o->densities[i] : o->density;
	}
	tensor_at(p, t, &at);
	o->tensor_params(o->tp_ctx, &at, &tp);
	RETURN_ERROR_IF(!isfinite(tp.t), err, LINES_EUSAGE, NULL, t->name, "t is not a finite number");
	RETURN_ERROR_IF(tp.t != t->t && !take_t, err, LINES_EUSAGE, NULL, t->name,
	                "-m %s takes one t for the whole model, not one per tensor", p->method->name);
	t->t = tp.t;
	t->wsum = 0.0;
	for (unsigned i = 0; i < n; i++) {
		double w0 = o->weights ? o->weights[i] : 1.0;
		double d0 = o->densities ? o->densities[i] : o->density;
		RETURN_ERROR_IF(!isfinite(w[i]) || !isfinite(d[i]), err, LINES_EUSAGE, NULL, t->name,
		                "the weight or density of model %u is not a finite number", i + 1);
		/* a method that takes no weights (densities) ignores them */
		RETURN_ERROR_IF(w[i] != w0 && !take_w && (fl & METHOD_USES_WEIGHTS), err, LINES_EUSAGE,
		                NULL, t->name,
		                "-m %s takes one weight per model for the whole model, not one per "
		                "tensor (all but consensus and the methods without weights take them)",
		                p->method->name);
		RETURN_ERROR_IF(d[i] != d0 && !take_d && (fl & METHOD_TENSOR_DENSITY), err, LINES_EUSAGE,
		                NULL, t->name,
		                "a density per tensor needs --trim tensor: the global threshold ranks "
		                "the whole model with one density per model");
		RETURN_ERROR_IF(d[i] != d0 && !take_d && (fl & METHOD_USES_DENSITY), err, LINES_EUSAGE,
		                NULL, t->name,
		                "-m %s takes one density per model for the whole model, not one per "
		                "tensor (dare, breadcrumbs, della, and ties with --trim tensor, take them)",
		                p->method->name);
		RETURN_ERROR_IF(take_d && !(d[i] >= 0.0 && d[i] <= 1.0), err, LINES_EUSAGE, NULL,
		                t->name, "the density of model %u is %g, outside [0, 1]", i + 1, d[i]);
		p->lay.tensor_w |= take_w && w[i] != w0;
		p->lay.tensor_density |= take_d && d[i] != d0;
		t->wsum += w[i];
	}
	t->w = take_w ? w : NULL;
	t->density = take_d ? d : NULL;
	return 0;
}

int plan_layout(struct plan *p, struct lines_error *err)
{
	const struct ckpt *b = p->in.ck[0];
	enum dtype forced = DT_COUNT;
	uint64_t off = 0;

	if (p->o.dtype)
		FORWARD_IF_ERROR(parse_out_dtype(p->o.dtype, p->out.gguf, &forced, err));
	p->lay.ninputs = p->in.ninputs;
	p->lay.nmodels = p->in.ninputs - 1;
	p->lay.align = p->out.gguf ? gguf_alignment(b) : 1;
	p->lay.t = calloc(b->ntensors ? b->ntensors : 1, sizeof(*p->lay.t));
	RETURN_ERROR_IF(!p->lay.t, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	for (size_t i = 0; i < b->ntensors; i++) {
		const struct ckpt_tensor *bt = &b->t[i];
		int scale = fp8_is_scale(b, bt->name);
		if (scale && !fp8_dtype(forced)) { /* the weights are dequantized */
			p->lay.dropped++;
			continue;
		}
		struct tensor *t = &p->lay.t[p->lay.nt++];
		t->name = bt->name;
		t->in_dt = bt->dtype;
		t->merge = decodable(t->in_dt) && !scale; /* --dtype fp8: new, or the base's */
		t->scale = scale;
		t->rank = bt->rank;
		t->shape = bt->shape;
		t->nelem = bt->nelem;
		t->block = bt->block;
		t->stack = bt->stack;
		t->t = p->o.t;
		if (t->merge && p->o.tensor_t && (p->method->flags & METHOD_TENSOR_T)) {
			struct lines_tensor_at at;
			tensor_at(p, t, &at);
			p->o.tensor_t(p->o.t_ctx, &at, &t->t);
			RETURN_ERROR_IF(!isfinite(t->t), err, LINES_EUSAGE, NULL, t->name,
			                "t is not a finite number");
		}
		if (t->merge && p->o.tensor_params)
			FORWARD_IF_ERROR(tensor_params_of(p, t, p->lay.nt - 1, b->ntensors, err));
		if (t->merge) {
			layout_dtypes(t, p->out.gguf ? DT_COUNT : forced);
			if (p->out.gguf)
				layout_gguf_type(t, bt->dtype, forced);
		} else {
			t->out_dt = t->in_dt;
			t->units = bt->nbytes;
			t->unit_in = t->unit_out = 1;
		}
		t->out_off = off;
		RETURN_ERROR_IF(ck_add(off, tensor_file_bytes(t), &off) ||
		                        ck_add(off, p->lay.align - 1, &off),
		                err, LINES_EFORMAT, NULL, t->name, "output too large");
		off -= off % p->lay.align; /* GGUF: the next tensor at the alignment */
		FORWARD_IF_ERROR(layout_sources(p, t, err));
		if (t->mixed) { /* decoded to F32 for the method (pipeline.c) */
			t->in_dt = DT_F32;
			t->unit_in = dtype_size(DT_F32);
		}
	}
	if (p->out.gguf && ggml_block_dtype(forced)) { /* rows of another length: F32 */
		size_t mats = 0, blocks = 0;
		for (size_t i = 0; i < p->lay.nt; i++)
			if (p->lay.t[i].merge && p->lay.t[i].rank >= 2)
				mats++, blocks += ggml_block_dtype(p->lay.t[i].qdt) != 0;
		if (mats && !blocks)
			lines_logf(&p->o, LINES_LOG_WARN, NULL, NULL,
			           "--dtype %s: no matrix has rows of whole %u-element blocks, so every "
			           "one is written F32",
			           p->o.dtype, (unsigned)dtype_table[forced].block_elems);
	}
	if (fp8_dtype(forced)) {
		FORWARD_IF_ERROR(layout_requant(p, err));
		off = 0;
		for (size_t i = 0; i < p->lay.nt; i++) { /* a float8 byte per element */
			p->lay.t[i].out_off = off;
			off += tensor_file_bytes(&p->lay.t[i]);
		}
	}
	p->lay.out_data_bytes = off;
	return 0;
}

/*
 * A stream is read in order, and every pass visits the tensors in output
 * order (the base's): a stream whose tensors are stored in another order
 * cannot be read in one sweep. A .zst file is then decompressed to a
 * temporary file first; standard input is refused.
 */
int plan_check_stream_order(struct plan *p, struct lines_error *err)
{
	if (!p->in.streams)
		return 0;
	for (unsigned m = 0, fbase = 0; m < p->in.ninputs; fbase += (unsigned)p->in.ck[m]->nfiles, m++)
		for (size_t f = 0; f < p->in.ck[m]->nfiles; f++) {
			const struct ckpt_file *cf = &p->in.ck[m]->files[f];
			uint64_t last = 0;
			int ordered = 1;
			if (!cf->zs)
				continue;
			for (size_t i = 0; i < p->lay.nt && ordered; i++) {
				const struct tensor_src *in = &p->lay.t[i].in[m];
				if (in->file != fbase + f || !p->lay.t[i].units)
					continue;
				ordered = in->off >= last;
				last = in->off;
			}
			if (ordered)
				continue;
			RETURN_ERROR_IF(!zs_restartable(cf->zs), err, LINES_EUNSUPPORTED, cf->path, NULL,
			                "its tensors are not stored in the base's order, so it cannot "
			                "be read in one pass; save it to a file");
			p->in.spill[fbase + f] = 1;
			lines_logf(&p->o, LINES_LOG_NOTE, cf->path, NULL,
			         "its tensors are stored in another order than the base's: it will be "
			         "decompressed to a temporary file in $TMPDIR first");
		}
	return 0;
}

/*
 * An input rewritten in place while we read it would give a merge of two
 * different files; its size or modification time tells, and the output is
 * then not committed. (An input replaced by rename is harmless: the open
 * descriptor still reads the file that was checked.)
 */
int plan_check_unchanged(struct plan *p, struct lines_error *err)
{
	for (unsigned m = 0; m < p->in.ninputs; m++)
		for (size_t f = 0; f < p->in.ck[m]->nfiles; f++) {
			const struct ckpt_file *cf = &p->in.ck[m]->files[f];
			struct stat st;
			if (!cf->own_fd || cf->spilled || fstat(cf->fd, &st) < 0)
				continue; /* standard input, or a decompressed copy */
			RETURN_ERROR_IF((uint64_t)st.st_size != cf->disk_size ||
			                        st.st_mtim.tv_sec != cf->mtime.tv_sec ||
			                        st.st_mtim.tv_nsec != cf->mtime.tv_nsec,
			                err, LINES_ECHANGED, cf->path, NULL,
			                "the file changed during the run; the output is not written");
		}
	return 0;
}

/* A stream read to its last tensor must end there, as a file must. */
int plan_check_stream_ends(struct plan *p, struct lines_error *err)
{
	for (unsigned m = 0; m < p->in.ninputs; m++)
		for (size_t f = 0; f < p->in.ck[m]->nfiles; f++) {
			struct ckpt_file *cf = &p->in.ck[m]->files[f];
			if (cf->zs && zs_pos(cf->zs) == cf->data_end) {
				int rc = zs_expect_end(cf->zs, err);
				if (rc < 0)
					return rc;
			}
		}
	return 0;
}

void plan_inputs_free(struct plan *p)
{
	if (p->in.ck)
		for (unsigned m = 0; m < p->in.ninputs; m++)
			ckpt_close(p->in.ck[m]);
	for (unsigned j = 0; j < p->in.nsrc; j++) /* after the inputs that borrow them */
		ckpt_close(p->in.src[j]);
	free(p->in.src);
	free(p->in.src_names);
	free(p->in.ck);
	free(p->in.names);
	free(p->in.files);
	free(p->in.spill);
	if (p->lay.t)
		for (size_t i = 0; i < p->lay.nt; i++) {
			for (unsigned m = 0; p->lay.t[i].in && m < p->lay.ninputs; m++)
				free(p->lay.t[i].in[m].q);
			fp8_out_free(p->lay.t[i].rq);
			free(p->lay.t[i].in);
		}
	free(p->lay.t);
	free(p->lay.params);
	free(p->lay.stacks);
}
