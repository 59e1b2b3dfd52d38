/*
 * fuzz-gguf.c -- a libFuzzer target for the GGUF reader (fmt_gguf.c;
 * `make fuzz`, see tests/hardening.mk).
 *
 * The input is the image of a whole file. It is read twice: as a file
 * (its size known, read through a buffer) and as a stream (size unknown,
 * read in order, as standard input or a .zst file is), and the two reads
 * must agree: both refuse it, or both accept it with the same tensors and
 * metadata (but for data cut short or bytes after it, which only a file
 * shows before its data is read). An accepted file is then written again from the reader's
 * typed state (each key's type and raw value bytes, each tensor info) and
 * must give back the input's header byte for byte; its tensors must lie
 * packed inside the input. Any difference aborts, which libFuzzer reports
 * with the input that caused it.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "fmt_gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz-gguf: %s (line %d)\n", #cond, __LINE__);             \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static const uint8_t *in_data;
static size_t in_size;
static uint64_t stream_pos;

static int mem_read(struct ckpt_file *f, void *buf, size_t n, uint64_t off, struct lines_error *err)
{
	if (f->zs) { /* a stream: in order, from where the last read ended */
		CHECK(off == stream_pos);
		if (off > in_size || n > in_size - off)
			return lines_errf(err, LINES_EFORMAT, f->path, NULL, "ends early");
		stream_pos += n;
	} else {
		CHECK(off <= in_size && n <= in_size - off); /* the reader checks first */
	}
	memcpy(buf, in_data + off, n);
	return 0;
}

static int open_as(struct ckpt_file *f, int stream, struct lines_error *err)
{
	static char zs_flag;
	memset(f, 0, sizeof(*f));
	f->path = "fuzz.gguf";
	f->size = stream ? UINT64_MAX : in_size;
	f->zs = stream ? (struct zstream *)(void *)&zs_flag : NULL; /* only tested, never used */
	stream_pos = 0;
	return ckpt_fmt_gguf.open(f, mem_read, err);
}

struct wb {
	uint8_t *p;
	size_t n, cap;
};

static void put(struct wb *w, const void *s, size_t n)
{
	if (w->cap - w->n < n) {
		size_t cap = w->cap ? w->cap : 256;
		while (cap - w->n < n)
			cap *= 2;
		w->p = realloc(w->p, cap);
		CHECK(w->p);
		w->cap = cap;
	}
	memcpy(w->p + w->n, s, n);
	w->n += n;
}

static void le(struct wb *w, uint64_t v, unsigned n)
{
	uint8_t b[8];
	for (unsigned i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	put(w, b, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ckpt_file a, b;
	struct lines_error ea, eb;
	in_data = data, in_size = size;
	int ra = open_as(&a, 0, &ea);
	int rb = open_as(&b, 1, &eb);
	/* a stream's header cannot tell where its data ends (the run reading
	 * the data does): only a file sees data cut short, or bytes after it */
	CHECK(ra != 0 || rb == 0);
	CHECK(rb != 0 || ra == 0 || strstr(ea.msg, "follow the last tensor") ||
	      strstr(ea.msg, "runs past the end of the file") || strstr(ea.msg, "before the data section"));
	if (ra == 0) {
		const struct gguf_file *g = a.fmt_state;
		struct wb w = {0};
		CHECK(a.nentries == b.nentries && a.nmeta == b.nmeta);
		CHECK(a.data_start == b.data_start);
		for (size_t i = 0; i < a.nentries; i++) {
			const struct ckpt_entry *x = &a.entries[i], *y = &b.entries[i];
			CHECK(!strcmp(x->name, y->name) && x->dtype == y->dtype && x->rank == y->rank);
			CHECK(x->off == y->off && x->nbytes == y->nbytes && x->nelem == y->nelem);
			CHECK(x->off >= a.data_start && x->off <= size && x->nbytes <= size - x->off);
			CHECK(i == 0 || x->off >= a.entries[i - 1].off + a.entries[i - 1].nbytes);
		}
		for (size_t i = 0; i < a.nmeta; i++)
			CHECK(!strcmp(a.meta[i].key, b.meta[i].key) &&
			      !strcmp(a.meta[i].value, b.meta[i].value));
		/* the header again, from the typed state */
		put(&w, "GGUF", 4);
		le(&w, g->version, 4);
		le(&w, g->nt, 8);
		le(&w, g->nkv, 8);
		for (size_t i = 0; i < g->nkv; i++) {
			le(&w, strlen(g->kv[i].key), 8);
			put(&w, g->kv[i].key, strlen(g->kv[i].key));
			le(&w, g->kv[i].type, 4);
			put(&w, g->kv[i].raw, (size_t)g->kv[i].raw_len);
		}
		for (size_t i = 0; i < g->nt; i++) {
			const struct gguf_tinfo *t = &g->t[i];
			le(&w, strlen(t->name), 8);
			put(&w, t->name, strlen(t->name));
			le(&w, t->n_dims, 4);
			for (unsigned k = 0; k < t->n_dims; k++)
				le(&w, t->ne[k], 8);
			le(&w, t->ggml_type, 4);
			le(&w, t->off, 8);
		}
		CHECK(w.n <= size && !memcmp(w.p, data, w.n));
		CHECK(w.n <= a.data_start && a.data_start - w.n < g->alignment + (g->nt == 0));
		free(w.p);
	}
	if (a.fmt_state || a.entries)
		ckpt_fmt_gguf.close(&a);
	if (b.fmt_state || b.entries)
		ckpt_fmt_gguf.close(&b);
	return 0;
}
