/*
 * fmt_gguf.h -- the GGUF reader's state: what a GGUF file (version 2 or 3)
 * holds, kept typed, so that a writer can copy the metadata as it was
 * (the checkpoint layer sees only ckpt_entry and ckpt_kv, fmt_gguf.c).
 */
#ifndef LINES_FMT_GGUF_H
#define LINES_FMT_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* GGUF's metadata value types (gguf.md). */
enum gguf_vtype {
	GGUF_U8, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL,
	GGUF_STRING, GGUF_ARRAY, GGUF_U64, GGUF_I64, GGUF_F64,
	GGUF_VTYPE_COUNT
};

/* The limits of the reader (lines-inspect(1), GGUF). */
#define GGUF_MAX_HEADER (256ull << 20)  /* bytes before the data section */
#define GGUF_MAX_KEY 65535              /* bytes of a key (gguf.md)      */
#define GGUF_MAX_NAME 63                /* bytes of a tensor name (ggml)  */
#define GGUF_MAX_DEPTH 8                /* arrays nested in arrays        */
#define GGUF_MAX_COUNT (1ull << 24)     /* tensors, and keys              */
#define GGUF_SHOW_ELEMS 16              /* arrays rendered in full up to  */
#define GGUF_DEFAULT_ALIGNMENT 32

/* One key: its type and its value's bytes exactly as the file has them
 * (after the type; for an array its element type, count and elements). */
struct gguf_kv {
	char *key;
	enum gguf_vtype type;
	unsigned char *raw;
	uint64_t raw_len;
	char *text; /* the value as text (ckpt_kv) */
	int summary; /* text summarises an array ([N x TYPE]) */
};

struct gguf_tinfo {
	char *name;
	uint32_t ggml_type;
	enum dtype dt;
	unsigned n_dims;
	uint64_t ne[4];    /* ggml's order: ne[0] varies fastest */
	uint64_t shape[4]; /* row-major: ne reversed */
	uint64_t nelem;
	uint64_t off;      /* from the start of the data section */
	uint64_t nbytes;
};

struct gguf_file {
	uint32_t version;
	uint32_t alignment;
	size_t nkv;
	struct gguf_kv *kv;
	size_t nt;
	struct gguf_tinfo *t;
	uint64_t data_start;
	long block_count; /* <general.architecture>.block_count, or -1 */
};

void gguf_file_free(struct gguf_file *g);

/* The name of ggml type id (F32, Q4_K, IQ2_XXS, ...), or NULL when ggml has none. */
const char *gguf_ggml_type_name(uint32_t id);
/* The ggml type id of dtype d (0 for F32, 8 for Q8_0, ...), or -1. */
int gguf_ggml_type_id(enum dtype d);
struct ckpt;
/* general.alignment of a GGUF checkpoint's first file (32 when it has
 * none, or is not GGUF). */
uint64_t gguf_alignment(const struct ckpt *c);
/*
 * llama.cpp's split files (gguf-split): the keys split.no (from 0),
 * split.count and split.tensors.count of file f (a GGUF file), in *s;
 * s->count is 0 when f has none of them. An error names the file and the
 * key when one is there without the others or is no non-negative integer.
 */
struct gguf_split {
	uint64_t no, count, tensors;
};
struct ckpt_file;
int gguf_split_of(const struct ckpt_file *f, struct gguf_split *s, struct lines_error *err);

/* The value type's name as gguf.md spells it in short (u8, string, ...). */
const char *gguf_vtype_name(uint32_t t);

#endif
