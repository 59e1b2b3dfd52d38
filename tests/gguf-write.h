/*
 * gguf-write.h -- GGUF bytes built by hand for the tests (gen-corpus,
 * gen-gguf, t-gguf): no code shared with the reader they test. A file is
 * a header, a blob of key-value pairs, a blob of tensor infos, padding
 * and the data; struct gb collects them and gb_emit writes them out, with
 * knobs to make them lie.
 */
#ifndef LINES_TESTS_GGUF_WRITE_H
#define LINES_TESTS_GGUF_WRITE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gw {
	unsigned char *p;
	size_t n, cap;
};

static void gw_bytes(struct gw *w, const void *s, size_t n)
{
	if (w->cap - w->n < n) {
		size_t cap = w->cap ? w->cap : 256;
		while (cap - w->n < n)
			cap *= 2;
		w->p = realloc(w->p, cap);
		if (!w->p) {
			fprintf(stderr, "gguf-write: out of memory\n");
			exit(1);
		}
		w->cap = cap;
	}
	memcpy(w->p + w->n, s, n);
	w->n += n;
}

static void gw_le(struct gw *w, uint64_t v, unsigned n)
{
	unsigned char b[8];
	for (unsigned i = 0; i < n; i++)
		b[i] = (unsigned char)(v >> (8 * i));
	gw_bytes(w, b, n);
}
#define gw_u8(w, v) gw_le((w), (v), 1)
#define gw_u16(w, v) gw_le((w), (v), 2)
#define gw_u32(w, v) gw_le((w), (v), 4)
#define gw_u64(w, v) gw_le((w), (v), 8)

static void gw_f32(struct gw *w, float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	gw_u32(w, u);
}

static void gw_strn(struct gw *w, const char *s, size_t n)
{
	gw_u64(w, n);
	gw_bytes(w, s, n);
}
static void gw_str(struct gw *w, const char *s) { gw_strn(w, s, strlen(s)); }

enum { GV_U8, GV_I8, GV_U16, GV_I16, GV_U32, GV_I32, GV_F32, GV_BOOL, GV_STRING, GV_ARRAY,
       GV_U64, GV_I64, GV_F64 };

/* ggml type ids and their blocks */
enum { GT_F32 = 0, GT_F16 = 1, GT_Q4_0 = 2, GT_Q4_1 = 3, GT_Q5_0 = 6, GT_Q5_1 = 7, GT_Q8_0 = 8,
       GT_Q8_1 = 9, GT_Q2_K = 10, GT_Q3_K = 11, GT_Q4_K = 12, GT_Q5_K = 13, GT_Q6_K = 14,
       GT_Q8_K = 15, GT_IQ2_XXS = 16, GT_BF16 = 30, GT_MXFP4 = 39 };

static void gt_block(unsigned type, unsigned *elems, unsigned *bytes)
{
	static const struct {
		unsigned t, e, b;
	} tab[] = {{GT_F32, 1, 4},     {GT_F16, 1, 2},      {GT_BF16, 1, 2},     {GT_Q4_0, 32, 18},
	           {GT_Q4_1, 32, 20},  {GT_Q5_0, 32, 22},   {GT_Q5_1, 32, 24},   {GT_Q8_0, 32, 34},
	           {GT_Q2_K, 256, 84}, {GT_Q3_K, 256, 110}, {GT_Q4_K, 256, 144}, {GT_Q5_K, 256, 176},
	           {GT_Q6_K, 256, 210}, {GT_Q8_K, 256, 292}};
	*elems = 1, *bytes = 4;
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (tab[i].t == type)
			*elems = tab[i].e, *bytes = tab[i].b;
}

/* A file being built. */
struct gb {
	uint32_t version;         /* 3 unless set */
	int64_t nt_claim, nkv_claim; /* -1: the true counts */
	uint64_t nt, nkv;
	struct gw kv, ti, data;
	uint64_t align;           /* 32 unless set (and general.alignment is the caller's) */
	int no_end_pad;           /* the data ends with the last tensor, unpadded */
	uint64_t trailing;        /* bytes after everything */
	int64_t cut;              /* >= 0: keep only this many bytes */
};

static void gb_init(struct gb *b)
{
	memset(b, 0, sizeof(*b));
	b->version = 3;
	b->nt_claim = b->nkv_claim = -1;
	b->align = 32;
	b->cut = -1;
}

static void gb_free(struct gb *b)
{
	free(b->kv.p);
	free(b->ti.p);
	free(b->data.p);
}

static void gb_key(struct gb *b, const char *key, unsigned type)
{
	gw_str(&b->kv, key);
	gw_u32(&b->kv, type);
	b->nkv++;
}
static void gb_kv_str(struct gb *b, const char *key, const char *v)
{
	gb_key(b, key, GV_STRING);
	gw_str(&b->kv, v);
}
static void gb_kv_u32(struct gb *b, const char *key, uint32_t v)
{
	gb_key(b, key, GV_U32);
	gw_u32(&b->kv, v);
}
static void gb_kv_f32(struct gb *b, const char *key, float v)
{
	gb_key(b, key, GV_F32);
	gw_f32(&b->kv, v);
}

/* A tensor info at an explicit offset (its data is the caller's). */
static void gb_ti_at(struct gb *b, const char *name, unsigned nd, const uint64_t *ne, unsigned type,
                     uint64_t off)
{
	gw_str(&b->ti, name);
	gw_u32(&b->ti, nd);
	for (unsigned i = 0; i < nd; i++)
		gw_u64(&b->ti, ne[i]);
	gw_u32(&b->ti, type);
	gw_u64(&b->ti, off);
	b->nt++;
}

/* Bytes of a tensor of type with ne[0..nd). */
static uint64_t gt_nbytes(unsigned type, unsigned nd, const uint64_t *ne)
{
	unsigned be, bb;
	uint64_t n = 1;
	gt_block(type, &be, &bb);
	for (unsigned i = 0; i < nd; i++)
		n *= ne[i];
	return n / be * bb;
}

/* A tensor info at the next aligned offset, with data (NULL: a pattern). */
static void gb_tensor(struct gb *b, const char *name, unsigned nd, const uint64_t *ne, unsigned type,
                      const void *data)
{
	uint64_t nbytes = gt_nbytes(type, nd, ne);
	while (b->data.n % b->align)
		gw_u8(&b->data, 0);
	gb_ti_at(b, name, nd, ne, type, b->data.n);
	for (uint64_t i = 0; i < nbytes; i++)
		gw_u8(&b->data, data ? ((const unsigned char *)data)[i] : (unsigned char)(i * 7 + 1));
}

/* The whole file, in out (the caller frees out->p). */
static void gb_bytes(const struct gb *b, struct gw *out)
{
	memset(out, 0, sizeof(*out));
	gw_bytes(out, "GGUF", 4);
	gw_u32(out, b->version);
	gw_u64(out, b->nt_claim >= 0 ? (uint64_t)b->nt_claim : b->nt);
	gw_u64(out, b->nkv_claim >= 0 ? (uint64_t)b->nkv_claim : b->nkv);
	if (b->kv.n)
		gw_bytes(out, b->kv.p, b->kv.n);
	if (b->ti.n)
		gw_bytes(out, b->ti.p, b->ti.n);
	if (b->nt) {
		while (out->n % b->align)
			gw_u8(out, 0);
		if (b->data.n)
			gw_bytes(out, b->data.p, b->data.n);
		while (!b->no_end_pad && out->n % b->align)
			gw_u8(out, 0);
	}
	for (uint64_t i = 0; i < b->trailing; i++)
		gw_u8(out, 0);
	if (b->cut >= 0 && (size_t)b->cut < out->n)
		out->n = (size_t)b->cut;
}

static int gb_write(const struct gb *b, const char *path)
{
	struct gw out;
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	gb_bytes(b, &out);
	size_t w = out.n ? fwrite(out.p, 1, out.n, f) : 0;
	free(out.p);
	if (fclose(f) || w != out.n)
		return -1;
	return 0;
}

#endif
