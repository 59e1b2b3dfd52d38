/*
 * gguf_header.c -- the header of a GGUF output (version 3): the base's
 * metadata keys in the base's order and with their types and values byte
 * for byte (tokenizer, chat template, hyper-parameters, arrays of any
 * type), then the keys lines records of the run (lines.method,
 * lines.alpha, ... as strings, the same as a safetensors output's
 * __metadata__), then the tensor infos in output order (the base's), and
 * zeros to general.alignment, where the data section starts.
 *
 * What is not copied: the base's own lines.* keys (an earlier merge) and
 * split.* (a shard of a split input). A sharded output (--shard-size) is
 * llama.cpp's split files, as gguf-split writes them: every shard has
 * split.no, split.count and split.tensors.count first, and the first
 * alone the metadata.
 * general.file_type, when the base has it, is set to the type of the
 * output's matrices (llama.cpp's llama_ftype) when they all have one, as
 * llama.cpp's quantizer does; it only names the file's type.
 */
#include "config.h"

#include <stdlib.h>

#include "fmt_gguf.h"
#include "plan.h"

struct gbuf {
	unsigned char *p;
	size_t n, cap;
	int oom;
};

static void put(struct gbuf *b, const void *s, size_t n)
{
	if (b->oom)
		return;
	if (b->cap - b->n < n) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap - b->n < n)
			cap *= 2;
		unsigned char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = 1;
			return;
		}
		b->p = p, b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->n, s, n);
	b->n += n;
}

static void put_le(struct gbuf *b, uint64_t v, unsigned n)
{
	unsigned char x[8];
	for (unsigned i = 0; i < n; i++)
		x[i] = (unsigned char)(v >> (8 * i));
	put(b, x, n);
}

static void put_str(struct gbuf *b, const char *s)
{
	size_t n = strlen(s);
	put_le(b, n, 8);
	put(b, s, n);
}

/* llama.cpp's llama_ftype of a file whose matrices are all of type d, or -1. */
static int ftype_of(enum dtype d)
{
	switch (d) {
	case DT_F32: return 0;
	case DT_F16: return 1;
	case DT_Q4_0: return 2;
	case DT_Q4_1: return 3;
	case DT_Q8_0: return 7;
	case DT_Q5_0: return 8;
	case DT_Q5_1: return 9;
	case DT_Q4_K: return 15; /* Q4_K_M */
	case DT_Q5_K: return 17; /* Q5_K_M */
	case DT_Q6_K: return 18;
	case DT_BF16: return 32;
	default: return -1;
	}
}

/* The one type of the output's merged matrices, or -1 when they differ. */
static int matrix_ftype(const struct plan *p)
{
	int ft = -2;
	for (size_t i = 0; i < p->lay.nt; i++) {
		const struct tensor *t = &p->lay.t[i];
		if (t->rank < 2)
			continue;
		int f = ftype_of(tensor_file_dt(t));
		if (ft != -2 && f != ft)
			return -1;
		ft = f;
	}
	return ft < 0 ? -1 : ft;
}

int gguf_header(const struct plan *p, size_t t0, size_t t1, unsigned char **hdr, size_t *hdr_len,
                struct lines_error *err)
{
	const struct ckpt_file *bf = &p->in.ck[0]->files[0];
	const struct gguf_file *g = bf->fmt_state;
	struct header_meta hm;
	struct gbuf b = {0};
	size_t nkv = 0;
	int ft = matrix_ftype(p);

	RETURN_ERROR_IF(bf->fmt != &ckpt_fmt_gguf || !g, err, LINES_EUSAGE, bf->path, NULL,
	                "a GGUF output needs a GGUF base");
	/* a shard of llama.cpp's split files (gguf-split): split.no, .count
	 * and .tensors.count first; the metadata in the first shard only */
	size_t shard = 0, nshards = p->out.gguf_prefix ? p->out.nshards : 1;
	while (shard + 1 < nshards && p->out.shards[shard].t0 != t0)
		shard++;
	uint64_t off0 = nshards > 1 ? p->out.shards[shard].off0 : 0;
	FORWARD_IF_ERROR(header_meta(p, &hm, err));
	if (shard > 0)
		hm.n = 0;
	for (size_t i = 0; i < g->nkv && shard == 0; i++)
		nkv += strncmp(g->kv[i].key, "lines.", 6) && strncmp(g->kv[i].key, "split.", 6);
	put(&b, "GGUF", 4);
	put_le(&b, 3, 4);
	put_le(&b, t1 - t0, 8);
	put_le(&b, nkv + hm.n + (nshards > 1 ? 3 : 0), 8);
	if (nshards > 1) {
		put_str(&b, "split.no");
		put_le(&b, GGUF_U16, 4);
		put_le(&b, shard, 2);
		put_str(&b, "split.count");
		put_le(&b, GGUF_U16, 4);
		put_le(&b, nshards, 2);
		put_str(&b, "split.tensors.count");
		put_le(&b, GGUF_I32, 4);
		put_le(&b, p->lay.nt, 4);
	}
	for (size_t i = 0; i < g->nkv && shard == 0; i++) {
		const struct gguf_kv *kv = &g->kv[i];
		if (!strncmp(kv->key, "lines.", 6) || !strncmp(kv->key, "split.", 6))
			continue;
		put_str(&b, kv->key);
		if (!strcmp(kv->key, "general.file_type") && ft >= 0 && kv->type == GGUF_U32) {
			put_le(&b, GGUF_U32, 4);
			put_le(&b, (uint64_t)ft, 4);
			continue;
		}
		put_le(&b, kv->type, 4);
		put(&b, kv->raw, (size_t)kv->raw_len);
	}
	for (size_t i = 0; i < hm.n; i++) {
		put_str(&b, hm.kv[i].key);
		put_le(&b, GGUF_STRING, 4);
		put_str(&b, hm.kv[i].value);
	}
	header_meta_free(&hm);
	for (size_t i = t0; i < t1; i++) {
		const struct tensor *t = &p->lay.t[i];
		int id = gguf_ggml_type_id(tensor_file_dt(t));
		if (id < 0) {
			free(b.p);
			return lines_errf(err, LINES_EUNSUPPORTED, NULL, t->name, "GGUF has no type for %s",
			                  dtype_name(tensor_file_dt(t)));
		}
		put_str(&b, t->name);
		put_le(&b, t->rank, 4);
		for (unsigned k = 0; k < t->rank; k++) /* ggml's order: ne[0] varies fastest */
			put_le(&b, t->shape[t->rank - 1 - k], 8);
		put_le(&b, (uint64_t)id, 4);
		put_le(&b, t->out_off - off0, 8);
	}
	while (b.n % p->lay.align)
		put(&b, "", 1);
	if (b.oom) {
		free(b.p);
		return lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory for the GGUF header");
	}
	*hdr = b.p;
	*hdr_len = b.n;
	return 0;
}
