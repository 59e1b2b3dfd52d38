/*
 * fmt_gguf.c -- the GGUF reader behind struct ckpt_format (versions 2 and
 * 3, little-endian): the header, every metadata key of every value type
 * (arrays of any type, nested arrays and arrays of strings included), the
 * tensor infos and the data section, all validated before anything is
 * believed.
 *
 * The rules are gguf.md's and, where llama.cpp (ggml's gguf.cpp) is
 * stricter, llama.cpp's, so that a file lines accepts is one llama.cpp
 * loads:
 *   - magic "GGUF", version 2 or 3; keys non-empty printable ASCII of at
 *     most 65535 bytes, each once; general.alignment a u32, a power of two
 *     and a multiple of 8 (default 32);
 *   - tensor names of 1 to 63 bytes of UTF-8 without control characters,
 *     each once; at most 4 dimensions; a row (ne[0]) a whole number of the
 *     type's blocks; the size in bytes computed with checked arithmetic;
 *   - the data section at the first multiple of the alignment after the
 *     tensor infos; every tensor's offset a multiple of the alignment, the
 *     tensors packed in the order of their infos (each at the previous
 *     one's end rounded up to the alignment, as gguf.cpp requires: no gap,
 *     no overlap), every byte of data inside the file, nothing after the
 *     last tensor but its padding;
 *   - a blk.N tensor has N below <general.architecture>.block_count when
 *     the file gives it.
 * Every error names the file, and the tensor or the key.
 *
 * Metadata reaches the layers above as text (ckpt_kv): a string as it is
 * (a byte that is not UTF-8, or NUL, as \xNN), a number in decimal (a
 * float as the shortest decimal that reads back as the same value), a
 * bool as true or false, an array of at most GGUF_SHOW_ELEMS elements as
 * JSON ([1, 2], ["a", "b"], nested alike), a longer one summarised as
 * [N x TYPE]. The typed values stay in struct gguf_file, byte for byte.
 */
#include "config.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "ckpt.h"
#include "fmt_gguf.h"
#include "layers.h"

/* ---- ggml's type ids ---------------------------------------------------------------- */
static const struct {
	const char *name;
	int dt; /* the dtype lines reads it as, or -1 */
} ggml_types[] = {
	[0] = {"F32", DT_F32},       [1] = {"F16", DT_F16},
	[2] = {"Q4_0", DT_Q4_0},     [3] = {"Q4_1", DT_Q4_1},
	[4] = {"Q4_2", -1},          [5] = {"Q4_3", -1},
	[6] = {"Q5_0", DT_Q5_0},     [7] = {"Q5_1", DT_Q5_1},
	[8] = {"Q8_0", DT_Q8_0},     [9] = {"Q8_1", -1},
	[10] = {"Q2_K", DT_Q2_K},    [11] = {"Q3_K", DT_Q3_K},
	[12] = {"Q4_K", DT_Q4_K},    [13] = {"Q5_K", DT_Q5_K},
	[14] = {"Q6_K", DT_Q6_K},    [15] = {"Q8_K", DT_Q8_K},
	[16] = {"IQ2_XXS", -1},      [17] = {"IQ2_XS", -1},
	[18] = {"IQ3_XXS", -1},      [19] = {"IQ1_S", -1},
	[20] = {"IQ4_NL", -1},       [21] = {"IQ3_S", -1},
	[22] = {"IQ2_S", -1},        [23] = {"IQ4_XS", -1},
	[24] = {"I8", DT_I8},        [25] = {"I16", DT_I16},
	[26] = {"I32", DT_I32},      [27] = {"I64", DT_I64},
	[28] = {"F64", DT_F64},      [29] = {"IQ1_M", -1},
	[30] = {"BF16", DT_BF16},    [31] = {"Q4_0_4_4", -1},
	[32] = {"Q4_0_4_8", -1},     [33] = {"Q4_0_8_8", -1},
	[34] = {"TQ1_0", -1},        [35] = {"TQ2_0", -1},
	[36] = {"IQ4_NL_4_4", -1},   [37] = {"IQ4_NL_4_8", -1},
	[38] = {"IQ4_NL_8_8", -1},   [39] = {"MXFP4", -1},
};

const char *gguf_ggml_type_name(uint32_t id)
{
	return id < ARRAY_SIZE(ggml_types) ? ggml_types[id].name : NULL;
}

int gguf_ggml_type_id(enum dtype d)
{
	for (size_t i = 0; i < ARRAY_SIZE(ggml_types); i++)
		if (ggml_types[i].name && ggml_types[i].dt == (int)d)
			return (int)i;
	return -1;
}

uint64_t gguf_alignment(const struct ckpt *c)
{
	const struct gguf_file *g = c->nfiles ? c->files[0].fmt_state : NULL;
	return c->nfiles && c->files[0].fmt == &ckpt_fmt_gguf && g ? g->alignment
	                                                           : GGUF_DEFAULT_ALIGNMENT;
}

static const char *const vtype_names[GGUF_VTYPE_COUNT] = {
	"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};
static const unsigned char vtype_size[GGUF_VTYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *gguf_vtype_name(uint32_t t) { return t < GGUF_VTYPE_COUNT ? vtype_names[t] : "?"; }

/* ---- growing buffers ------------------------------------------------------------------ */
struct buf {
	unsigned char *p;
	size_t n, cap;
};

static int buf_reserve(struct buf *b, size_t more)
{
	if (b->cap - b->n >= more)
		return 0;
	size_t cap = b->cap ? b->cap : 64;
	while (cap - b->n < more) {
		if (cap > SIZE_MAX / 2)
			return -1;
		cap *= 2;
	}
	unsigned char *p = realloc(b->p, cap);
	if (!p)
		return -1;
	b->p = p;
	b->cap = cap;
	return 0;
}

static int buf_put(struct buf *b, const void *s, size_t n)
{
	if (buf_reserve(b, n + 1) < 0)
		return -1;
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
	return 0;
}

static int buf_str(struct buf *b, const char *s) { return buf_put(b, s, strlen(s)); }

/* ---- reading the header in order -------------------------------------------------------- */
#define RD_CHUNK (64u << 10)

struct rd {
	struct ckpt_file *f;
	ckpt_read_fn read;
	struct lines_error *err;
	uint64_t pos;          /* offset of the next byte to parse */
	unsigned char *buf;    /* a file's bytes [bstart, bstart + blen) */
	uint64_t bstart;
	size_t blen;
	char ctx[320];         /* what is being read: "metadata key 'x'", "tensor 3" */
	const char *tensor;    /* the tensor being read, once its name is known */
	int summary;           /* an array of the value was summarised */
};

#define RD_ERR(r, code, ...) rd_err((r), (code), __VA_ARGS__)
static int rd_err(struct rd *r, int code, const char *fmt, ...) LINES_PRINTF(3, 4);
static int rd_err(struct rd *r, int code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (r->tensor)
		return lines_errf(r->err, code, r->f->path, r->tensor, "%s", msg);
	return lines_errf(r->err, code, r->f->path, NULL, "%s: %s", r->ctx, msg);
}

static int rd_oom(struct rd *r)
{
	return lines_errf(r->err, LINES_ENOMEM, r->f->path, r->tensor, "out of memory reading %s",
	                  r->ctx);
}

/* The bytes left in the header as far as the file and the limit allow. */
static uint64_t rd_room(const struct rd *r)
{
	uint64_t lim = GGUF_MAX_HEADER;
	if (r->f->size != UINT64_MAX && r->f->size < lim)
		lim = r->f->size;
	return r->pos < lim ? lim - r->pos : 0;
}

static int rd_get(struct rd *r, void *dst, uint64_t n, const char *what)
{
	uint64_t end;
	int rc;
	if (ck_add(r->pos, n, &end) || end > GGUF_MAX_HEADER)
		return RD_ERR(r, LINES_EFORMAT,
		              "%s runs past %llu MiB, the largest GGUF header lines reads", what,
		              GGUF_MAX_HEADER >> 20);
	if (r->f->size != UINT64_MAX && end > r->f->size)
		return RD_ERR(r, LINES_EFORMAT,
		              "the file ends inside the header: %s needs %" PRIu64 " bytes at offset %" PRIu64
		              ", the file has %" PRIu64,
		              what, n, r->pos, r->f->size);
	if (n == 0)
		return 0;
	if (r->f->zs || n > RD_CHUNK) { /* a stream is read in order, never ahead */
		FORWARD_IF_ERROR(r->read(r->f, dst, (size_t)n, r->pos, r->err));
		r->pos = end;
		return 0;
	}
	if (r->pos < r->bstart || end > r->bstart + r->blen) {
		uint64_t left = r->f->size - r->pos;
		size_t want = left < RD_CHUNK ? (size_t)left : RD_CHUNK;
		rc = r->read(r->f, r->buf, want, r->pos, r->err);
		if (rc < 0)
			return rc;
		r->bstart = r->pos;
		r->blen = want;
	}
	memcpy(dst, r->buf + (r->pos - r->bstart), (size_t)n);
	r->pos = end;
	return 0;
}

static int rd_u32(struct rd *r, uint32_t *v, const char *what)
{
	unsigned char b[4];
	FORWARD_IF_ERROR(rd_get(r, b, 4, what));
	*v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
	return 0;
}

static int rd_u64(struct rd *r, uint64_t *v, const char *what)
{
	unsigned char b[8];
	FORWARD_IF_ERROR(rd_get(r, b, 8, what));
	*v = load_le64(b);
	return 0;
}

/* ---- text ---------------------------------------------------------------------------- */
/* Length of the UTF-8 sequence at s (at most n bytes), or 0 when it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	uint32_t c;
	size_t len;
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, c = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, c = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, c = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10ffff)) ||
	    (c >= 0xd800 && c <= 0xdfff))
		return 0;
	return len;
}

/* s as text: bytes that are not UTF-8, and NUL, as \xNN; quoted as a
 * JSON string (with JSON's escapes) when json. */
static int put_text(struct buf *b, const unsigned char *s, size_t n, int json)
{
	char esc[8];
	if (json && buf_str(b, "\"") < 0)
		return -1;
	for (size_t i = 0; i < n;) {
		size_t l = s[i] ? utf8_len(s + i, n - i) : 0;
		int rc;
		if (l == 0) {
			snprintf(esc, sizeof(esc), "\\x%02x", s[i]);
			rc = buf_str(b, esc), l = 1;
		} else if (json && (s[i] == '"' || s[i] == '\\')) {
			esc[0] = '\\', esc[1] = (char)s[i];
			rc = buf_put(b, esc, 2);
		} else if (json && s[i] < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", s[i]);
			rc = buf_str(b, esc);
		} else {
			rc = buf_put(b, s + i, l);
		}
		if (rc < 0)
			return -1;
		i += l;
	}
	return json ? buf_str(b, "\"") : 0;
}

/* v in the fewest significant digits that read back as the same float
 * (single) or double, positional between 1e-4 and 1e16 (10000, 0.1,
 * 1e-05), as Python's repr writes it. */
static void fmt_shortest(char *s, size_t n, double v, int single)
{
	int p, e;
	if (!isfinite(v)) {
		snprintf(s, n, "%s", isnan(v) ? "nan" : v < 0 ? "-inf" : "inf");
		return;
	}
	for (p = 1; p < 17; p++) {
		snprintf(s, n, "%.*e", p - 1, v);
		if (single ? strtof(s, NULL) == (float)v : strtod(s, NULL) == v)
			break;
	}
	e = atoi(strchr(s, 'e') + 1);
	if (v != 0 && e >= -4 && e < 16)
		snprintf(s, n, "%.*f", p - 1 - e > 0 ? p - 1 - e : 0, v);
	else if (v == 0)
		snprintf(s, n, "%s", signbit(v) ? "-0" : "0");
}

/* A scalar of type t at p as text. */
static int put_scalar(struct buf *b, enum gguf_vtype t, const unsigned char *p)
{
	char s[48];
	uint64_t u = 0;
	for (int i = vtype_size[t] - 1; i >= 0; i--)
		u = u << 8 | p[i];
	switch (t) {
	case GGUF_U8: case GGUF_U16: case GGUF_U32: case GGUF_U64:
		snprintf(s, sizeof(s), "%" PRIu64, u);
		break;
	case GGUF_I8: snprintf(s, sizeof(s), "%d", (int)(int8_t)u); break;
	case GGUF_I16: snprintf(s, sizeof(s), "%d", (int)(int16_t)u); break;
	case GGUF_I32: snprintf(s, sizeof(s), "%" PRId32, (int32_t)u); break;
	case GGUF_I64: snprintf(s, sizeof(s), "%" PRId64, (int64_t)u); break;
	case GGUF_BOOL: snprintf(s, sizeof(s), "%s", u ? "true" : "false"); break;
	case GGUF_F32: {
		uint32_t bits = (uint32_t)u;
		float f;
		memcpy(&f, &bits, sizeof(f));
		fmt_shortest(s, sizeof(s), f, 1);
		break;
	}
	case GGUF_F64: {
		double d;
		memcpy(&d, &u, sizeof(d));
		fmt_shortest(s, sizeof(s), d, 0);
		break;
	}
	default: s[0] = '\0';
	}
	return buf_str(b, s);
}

/* ---- metadata values ----------------------------------------------------------------- */
/*
 * A value of type t: its bytes appended to raw, its text to text when
 * text is not NULL (json: as an element of an array). Nothing is
 * allocated before the bytes it stands for are known to be in the file.
 */
static int parse_value(struct rd *r, uint32_t t, unsigned depth, struct buf *raw, struct buf *text,
                       int json)
{
	if (t >= GGUF_VTYPE_COUNT)
		return RD_ERR(r, LINES_EFORMAT, "unknown value type %" PRIu32 " (GGUF has 0 to 12)", t);
	if (t == GGUF_STRING) {
		uint64_t len;
		FORWARD_IF_ERROR(rd_u64(r, &len, "a string's length"));
		if (len > rd_room(r))
			return RD_ERR(r, LINES_EFORMAT,
			              "a string of %" PRIu64 " bytes runs past the end of the %s", len,
			              r->f->size != UINT64_MAX && r->f->size < GGUF_MAX_HEADER
			                      ? "file" : "largest header lines reads");
		if (buf_reserve(raw, 8 + (size_t)len + 1) < 0)
			return rd_oom(r);
		store_le64(raw->p + raw->n, len);
		raw->n += 8;
		unsigned char *s = raw->p + raw->n;
		FORWARD_IF_ERROR(rd_get(r, s, len, "a string"));
		raw->n += (size_t)len;
		if (text && put_text(text, s, (size_t)len, json) < 0)
			return rd_oom(r);
		return 0;
	}
	if (t == GGUF_ARRAY) {
		uint32_t et;
		uint64_t n, least;
		unsigned char hdr[12];
		if (depth >= GGUF_MAX_DEPTH)
			return RD_ERR(r, LINES_EFORMAT, "arrays nested deeper than %d", GGUF_MAX_DEPTH);
		FORWARD_IF_ERROR(rd_u32(r, &et, "an array's element type"));
		FORWARD_IF_ERROR(rd_u64(r, &n, "an array's length"));
		if (et >= GGUF_VTYPE_COUNT)
			return RD_ERR(r, LINES_EFORMAT,
			              "an array of unknown value type %" PRIu32 " (GGUF has 0 to 12)", et);
		/* every element takes a few bytes at least: the count must fit */
		least = et == GGUF_STRING ? 8 : et == GGUF_ARRAY ? 12 : vtype_size[et];
		if (n > rd_room(r) / least)
			return RD_ERR(r, LINES_EFORMAT,
			              "an array of %" PRIu64 " %s elements cannot fit in the rest of the %s",
			              n, vtype_names[et],
			              r->f->size != UINT64_MAX && r->f->size < GGUF_MAX_HEADER
			                      ? "file" : "largest header lines reads");
		hdr[0] = (unsigned char)et, hdr[1] = hdr[2] = hdr[3] = 0;
		store_le64(hdr + 4, n);
		if (buf_put(raw, hdr, 12) < 0)
			return rd_oom(r);
		int full = text && n <= GGUF_SHOW_ELEMS;
		if (text && !full) {
			char s[64];
			r->summary = 1;
			snprintf(s, sizeof(s), "[%" PRIu64 " x %s]", n, vtype_names[et]);
			if ((json ? put_text(text, (const unsigned char *)s, strlen(s), 1)
			          : buf_str(text, s)) < 0)
				return rd_oom(r);
		}
		if (full && buf_str(text, "[") < 0)
			return rd_oom(r);
		if (et != GGUF_STRING && et != GGUF_ARRAY && !full) { /* in one piece */
			uint64_t bytes = n * least;
			if (buf_reserve(raw, (size_t)bytes + 1) < 0)
				return rd_oom(r);
			FORWARD_IF_ERROR(rd_get(r, raw->p + raw->n, bytes, "an array's elements"));
			if (et == GGUF_BOOL)
				for (uint64_t i = 0; i < n; i++)
					if (raw->p[raw->n + i] > 1)
						return RD_ERR(r, LINES_EFORMAT,
						              "bool element %" PRIu64 " is %u, not 0 or 1", i,
						              raw->p[raw->n + i]);
			raw->n += (size_t)bytes;
			return 0;
		}
		for (uint64_t i = 0; i < n; i++) {
			if (full && i && buf_str(text, ", ") < 0)
				return rd_oom(r);
			FORWARD_IF_ERROR(parse_value(r, et, depth + 1, raw, full ? text : NULL, 1));
		}
		if (full && buf_str(text, "]") < 0)
			return rd_oom(r);
		return 0;
	}
	unsigned char v[8];
	FORWARD_IF_ERROR(rd_get(r, v, vtype_size[t], "a value"));
	if (t == GGUF_BOOL && v[0] > 1)
		return RD_ERR(r, LINES_EFORMAT, "bool value %u is not 0 or 1", v[0]);
	if (buf_put(raw, v, vtype_size[t]) < 0 || (text && put_scalar(text, t, v) < 0))
		return rd_oom(r);
	return 0;
}

/* The scalar integer value of kv, in *v; -1 if it is no integer or negative. */
static int kv_int(const struct gguf_kv *kv, uint64_t *v)
{
	static const unsigned char is_int[GGUF_VTYPE_COUNT] = {
		[GGUF_U8] = 1, [GGUF_I8] = 1, [GGUF_U16] = 1, [GGUF_I16] = 1, [GGUF_U32] = 1,
		[GGUF_I32] = 1, [GGUF_U64] = 1, [GGUF_I64] = 1,
	};
	uint64_t u = 0;
	unsigned sz = vtype_size[kv->type];
	if (!is_int[kv->type])
		return -1;
	for (int i = (int)sz - 1; i >= 0; i--)
		u = u << 8 | kv->raw[i];
	int is_signed = kv->type == GGUF_I8 || kv->type == GGUF_I16 || kv->type == GGUF_I32 ||
	                kv->type == GGUF_I64;
	if (is_signed && (kv->raw[sz - 1] & 0x80))
		return -1;
	*v = u;
	return 0;
}

static const struct gguf_kv *find_kv(const struct gguf_file *g, const char *key)
{
	for (size_t i = 0; i < g->nkv; i++)
		if (!strcmp(g->kv[i].key, key))
			return &g->kv[i];
	return NULL;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The name that appears twice in names[0, n), or NULL. */
static const char *find_dup(char **names, size_t n, int *oom)
{
	char **s = malloc((n ? n : 1) * sizeof(*s));
	const char *dup = NULL;
	*oom = !s;
	if (!s)
		return NULL;
	memcpy(s, names, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_str);
	for (size_t i = 1; i < n && !dup; i++)
		if (!strcmp(s[i], s[i - 1]))
			dup = s[i];
	free(s);
	return dup;
}

static int parse_kvs(struct rd *r, struct gguf_file *g, uint64_t nkv)
{
	size_t cap = 0;
	for (uint64_t i = 0; i < nkv; i++) {
		uint64_t len;
		uint32_t type;
		struct gguf_kv *kv;
		snprintf(r->ctx, sizeof(r->ctx), "metadata key %" PRIu64, i);
		if (g->nkv == cap) {
			size_t nc = cap ? cap * 2 : 16;
			kv = realloc(g->kv, nc * sizeof(*kv));
			if (!kv)
				return rd_oom(r);
			g->kv = kv, cap = nc;
		}
		kv = &g->kv[g->nkv];
		memset(kv, 0, sizeof(*kv));
		FORWARD_IF_ERROR(rd_u64(r, &len, "the key's length"));
		if (len == 0)
			return RD_ERR(r, LINES_EFORMAT, "the key is empty");
		if (len > GGUF_MAX_KEY)
			return RD_ERR(r, LINES_EFORMAT, "the key is %" PRIu64 " bytes long (at most %d)", len,
			              GGUF_MAX_KEY);
		kv->key = malloc((size_t)len + 1);
		if (!kv->key)
			return rd_oom(r);
		g->nkv++;
		FORWARD_IF_ERROR(rd_get(r, kv->key, len, "the key"));
		kv->key[len] = '\0';
		for (uint64_t k = 0; k < len; k++)
			if ((unsigned char)kv->key[k] < 0x20 || (unsigned char)kv->key[k] > 0x7e)
				return RD_ERR(r, LINES_EFORMAT,
				              "the key has byte 0x%02x at %" PRIu64
				              " (a key is printable ASCII)",
				              (unsigned char)kv->key[k], k);
		snprintf(r->ctx, sizeof(r->ctx), "metadata key '%.256s'", kv->key);
		FORWARD_IF_ERROR(rd_u32(r, &type, "the value's type"));
		r->summary = 0;
		struct buf raw = {0}, text = {0};
		int rc = parse_value(r, type, 0, &raw, &text, 0);
		kv->type = (enum gguf_vtype)type;
		kv->raw = raw.p, kv->raw_len = raw.n;
		kv->text = (char *)text.p;
		kv->summary = r->summary;
		if (rc < 0)
			return rc;
		if (!kv->text && !(kv->text = calloc(1, 1)))
			return rd_oom(r);
		if (!kv->raw && !(kv->raw = calloc(1, 1)))
			return rd_oom(r);
	}
	int oom;
	char **keys = malloc((g->nkv ? g->nkv : 1) * sizeof(*keys));
	if (!keys)
		return rd_oom(r);
	for (size_t i = 0; i < g->nkv; i++)
		keys[i] = g->kv[i].key;
	const char *dup = find_dup(keys, g->nkv, &oom);
	int rc = 0;
	snprintf(r->ctx, sizeof(r->ctx), "metadata key '%.256s'", dup ? dup : "");
	if (oom)
		rc = rd_oom(r);
	else if (dup)
		rc = RD_ERR(r, LINES_EFORMAT, "appears twice");
	free(keys);
	return rc;
}

/* general.alignment, general.architecture and its block_count. */
static int check_known_keys(struct rd *r, struct gguf_file *g)
{
	const struct gguf_kv *kv = find_kv(g, "general.alignment");
	uint64_t v;
	g->alignment = GGUF_DEFAULT_ALIGNMENT;
	g->block_count = -1;
	snprintf(r->ctx, sizeof(r->ctx), "metadata key 'general.alignment'");
	if (kv) {
		if (kv->type != GGUF_U32)
			return RD_ERR(r, LINES_EFORMAT, "is a %s, not a u32", vtype_names[kv->type]);
		kv_int(kv, &v);
		if (v == 0 || (v & (v - 1)))
			return RD_ERR(r, LINES_EFORMAT, "%" PRIu64 " is not a power of two", v);
		if (v % 8)
			return RD_ERR(r, LINES_EFORMAT, "%" PRIu64 " is not a multiple of 8 (gguf.md)", v);
		g->alignment = (uint32_t)v;
	}
	snprintf(r->ctx, sizeof(r->ctx), "metadata key 'general.architecture'");
	kv = find_kv(g, "general.architecture");
	if (!kv)
		return 0;
	if (kv->type != GGUF_STRING)
		return RD_ERR(r, LINES_EFORMAT, "is a %s, not a string", vtype_names[kv->type]);
	const char *arch = (const char *)kv->raw + 8;
	size_t alen = (size_t)(kv->raw_len - 8);
	if (alen == 0 || memchr(arch, '\0', alen))
		return RD_ERR(r, LINES_EFORMAT, "is empty or holds a NUL byte");
	char *key = malloc(alen + sizeof(".block_count"));
	if (!key)
		return rd_oom(r);
	memcpy(key, arch, alen);
	memcpy(key + alen, ".block_count", sizeof(".block_count"));
	kv = find_kv(g, key);
	snprintf(r->ctx, sizeof(r->ctx), "metadata key '%.256s'", key);
	free(key);
	if (!kv)
		return 0;
	if (kv_int(kv, &v) < 0)
		return RD_ERR(r, LINES_EFORMAT, "is %.64s (a %s), not a non-negative integer",
		              kv->text, vtype_names[kv->type]);
	if (v >= LAYERS_MAX_INDEX)
		return RD_ERR(r, LINES_EFORMAT, "%" PRIu64 " blocks are more than %ld", v,
		              LAYERS_MAX_INDEX - 1);
	g->block_count = (long)v;
	return 0;
}

/* The block of a blk.N. name, or -1. */
static long blk_index(const char *name)
{
	long v = 0;
	const char *p = name + 4;
	if (strncmp(name, "blk.", 4) || *p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++)
		if ((v = v * 10 + (*p - '0')) >= LAYERS_MAX_INDEX)
			return LAYERS_MAX_INDEX;
	return *p == '.' ? v : -1;
}

static int parse_tensor(struct rd *r, struct gguf_file *g, struct gguf_tinfo *t, uint64_t i)
{
	uint64_t len, nelem = 1;
	uint32_t nd, type;

	snprintf(r->ctx, sizeof(r->ctx), "tensor info %" PRIu64, i);
	FORWARD_IF_ERROR(rd_u64(r, &len, "the tensor name's length"));
	if (len == 0)
		return RD_ERR(r, LINES_EFORMAT, "the tensor name is empty");
	if (len > GGUF_MAX_NAME)
		return RD_ERR(r, LINES_EFORMAT,
		              "the tensor name is %" PRIu64 " bytes long (ggml allows at most %d)", len,
		              GGUF_MAX_NAME);
	if (!(t->name = malloc((size_t)len + 1)))
		return rd_oom(r);
	FORWARD_IF_ERROR(rd_get(r, t->name, len, "the tensor name"));
	t->name[len] = '\0';
	for (size_t k = 0; k < len;) {
		size_t l = t->name[k] ? utf8_len((unsigned char *)t->name + k, (size_t)len - k) : 0;
		if (l == 0 || (unsigned char)t->name[k] < 0x20 || t->name[k] == 0x7f)
			return RD_ERR(r, LINES_EFORMAT,
			              "the tensor name has byte 0x%02x at %zu (not UTF-8, or a control "
			              "character)",
			              (unsigned char)t->name[k], k);
		k += l;
	}
	r->tensor = t->name;
	FORWARD_IF_ERROR(rd_u32(r, &nd, "the number of dimensions"));
	if (nd > 4)
		return RD_ERR(r, LINES_EFORMAT, "has %" PRIu32 " dimensions (GGUF allows at most 4)", nd);
	t->n_dims = nd;
	for (unsigned k = 0; k < nd; k++) {
		FORWARD_IF_ERROR(rd_u64(r, &t->ne[k], "a dimension"));
		if (t->ne[k] > (uint64_t)INT64_MAX)
			return RD_ERR(r, LINES_EFORMAT, "dimension %u is negative (%" PRId64 ")", k,
			              (int64_t)t->ne[k]);
		if (ck_mul(nelem, t->ne[k], &nelem) || nelem > (uint64_t)INT64_MAX)
			return RD_ERR(r, LINES_EFORMAT, "has more than 2^63 - 1 elements");
	}
	for (unsigned k = 0; k < nd; k++)
		t->shape[k] = t->ne[nd - 1 - k];
	t->nelem = nelem;
	FORWARD_IF_ERROR(rd_u32(r, &type, "the tensor type"));
	t->ggml_type = type;
	const char *tn = gguf_ggml_type_name(type);
	if (!tn)
		return RD_ERR(r, LINES_EFORMAT, "has type %" PRIu32 ", which is no ggml type", type);
	if (ggml_types[type].dt < 0)
		return RD_ERR(r, LINES_EUNSUPPORTED,
		              "has type %s, which lines does not read (it reads F32, F16, BF16, F64, "
		              "I8 to I64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q2_K to Q8_K)",
		              tn);
	t->dt = (enum dtype)ggml_types[type].dt;
	unsigned be = dtype_table[t->dt].block_elems;
	uint64_t row = nd ? t->ne[0] : 1;
	if (row % be)
		return RD_ERR(r, LINES_EFORMAT,
		              "rows of %" PRIu64 " elements are not a whole number of %s blocks of %u",
		              row, tn, be);
	if (dtype_bytes(t->dt, nelem, &t->nbytes) < 0)
		return RD_ERR(r, LINES_EFORMAT, "its size in bytes overflows");
	FORWARD_IF_ERROR(rd_u64(r, &t->off, "the tensor's offset"));
	long b = blk_index(t->name);
	if (b >= 0 && g->block_count >= 0 && b >= g->block_count)
		return RD_ERR(r, LINES_EFORMAT, "is in block %ld, and the file has %ld (block_count)", b,
		              g->block_count);
	return 0;
}

/* The data section: after the infos, at the alignment; the tensors packed. */
static int check_data(struct rd *r, struct gguf_file *g, uint64_t *data_end)
{
	const uint64_t a = g->alignment, size = r->f->size;
	uint64_t expect = 0, start = r->pos;
	r->tensor = NULL;
	snprintf(r->ctx, sizeof(r->ctx), "the data section");
	if (g->nt) {
		if (ck_add(r->pos, a - 1, &start))
			return RD_ERR(r, LINES_EFORMAT, "its offset overflows");
		start -= start % a;
		if (size != UINT64_MAX && start > size)
			return RD_ERR(r, LINES_EFORMAT,
			              "the file ends (at %" PRIu64 ") before the data section (at %" PRIu64 ")",
			              size, start);
		while (r->pos < start) { /* a stream is then at the data */
			unsigned char pad[64];
			uint64_t n = start - r->pos < sizeof(pad) ? start - r->pos : sizeof(pad);
			FORWARD_IF_ERROR(rd_get(r, pad, n, "the padding before the data"));
		}
	}
	g->data_start = start;
	*data_end = start;
	for (size_t i = 0; i < g->nt; i++) {
		const struct gguf_tinfo *t = &g->t[i];
		uint64_t end, padded;
		r->tensor = t->name;
		if (t->off % a)
			return RD_ERR(r, LINES_EFORMAT,
			              "its offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
			              t->off, a);
		if (t->off < expect)
			return RD_ERR(r, LINES_EFORMAT,
			              "its data (offset %" PRIu64 ") overlaps the data of '%s', which ends at %"
			              PRIu64,
			              t->off, i ? g->t[i - 1].name : "", expect);
		if (t->off > expect)
			return RD_ERR(r, LINES_EFORMAT,
			              "its data is at offset %" PRIu64 ", leaving %" PRIu64
			              " bytes unused after the previous tensor's (GGUF readers such as "
			              "llama.cpp expect the tensors packed in order, at %" PRIu64 ")",
			              t->off, t->off - expect, expect);
		if (ck_add(start, t->off, &end) || ck_add(end, t->nbytes, &end))
			return RD_ERR(r, LINES_EFORMAT, "the end of its data overflows");
		if (size != UINT64_MAX && end > size)
			return RD_ERR(r, LINES_EFORMAT,
			              "its data (%" PRIu64 " bytes at %" PRIu64
			              ") runs past the end of the file (%" PRIu64 " bytes)",
			              t->nbytes, start + t->off, size);
		*data_end = end;
		if (ck_add(t->off, t->nbytes, &padded) || ck_add(padded, a - 1, &padded))
			return RD_ERR(r, LINES_EFORMAT, "the end of its data overflows");
		expect = padded - padded % a;
	}
	r->tensor = NULL;
	if (size != UINT64_MAX) {
		uint64_t allowed = g->nt ? start + expect : start;
		if (size > allowed)
			return RD_ERR(r, LINES_EFORMAT,
			              "%" PRIu64 " bytes follow the last tensor's data and its padding",
			              size - allowed);
		*data_end = size;
	}
	return 0;
}

static int parse(struct rd *r, struct gguf_file *g)
{
	unsigned char magic[4];
	uint64_t nt, nkv;

	snprintf(r->ctx, sizeof(r->ctx), "the GGUF header");
	FORWARD_IF_ERROR(rd_get(r, magic, 4, "the magic"));
	if (memcmp(magic, "GGUF", 4))
		return RD_ERR(r, LINES_EFORMAT, "the magic is not \"GGUF\"");
	FORWARD_IF_ERROR(rd_u32(r, &g->version, "the version"));
	if (g->version != 2 && g->version != 3) {
		if (g->version != 0 && (g->version & 0xffff) == 0)
			return RD_ERR(r, LINES_EUNSUPPORTED,
			              "version 0x%08" PRIx32 " looks byte-swapped: big-endian GGUF files are "
			              "not supported",
			              g->version);
		return RD_ERR(r, g->version == 1 ? LINES_EUNSUPPORTED : LINES_EFORMAT,
		              "GGUF version %" PRIu32 " is not supported (lines reads versions 2 and 3)",
		              g->version);
	}
	FORWARD_IF_ERROR(rd_u64(r, &nt, "the tensor count"));
	FORWARD_IF_ERROR(rd_u64(r, &nkv, "the metadata key count"));
	if (nt > GGUF_MAX_COUNT)
		return RD_ERR(r, LINES_EFORMAT, "it claims %" PRIu64 " tensors (lines reads at most %llu)",
		              nt, GGUF_MAX_COUNT);
	if (nkv > GGUF_MAX_COUNT)
		return RD_ERR(r, LINES_EFORMAT,
		              "it claims %" PRIu64 " metadata keys (lines reads at most %llu)", nkv,
		              GGUF_MAX_COUNT);
	FORWARD_IF_ERROR(parse_kvs(r, g, nkv));
	FORWARD_IF_ERROR(check_known_keys(r, g));
	for (uint64_t i = 0, cap = 0; i < nt; i++) {
		if (g->nt == cap) {
			size_t nc = cap ? (size_t)cap * 2 : 16;
			struct gguf_tinfo *t = realloc(g->t, nc * sizeof(*t));
			if (!t)
				return rd_oom(r);
			g->t = t, cap = nc;
		}
		memset(&g->t[g->nt], 0, sizeof(g->t[0]));
		g->nt++;
		r->tensor = NULL;
		FORWARD_IF_ERROR(parse_tensor(r, g, &g->t[g->nt - 1], i));
	}
	r->tensor = NULL;
	int oom;
	char **names = malloc((g->nt ? g->nt : 1) * sizeof(*names));
	if (!names)
		return rd_oom(r);
	for (size_t i = 0; i < g->nt; i++)
		names[i] = g->t[i].name;
	const char *dup = find_dup(names, g->nt, &oom);
	free(names);
	if (oom)
		return rd_oom(r);
	if (dup) {
		r->tensor = dup;
		return RD_ERR(r, LINES_EFORMAT, "tensor name appears twice");
	}
	return 0;
}

void gguf_file_free(struct gguf_file *g)
{
	if (!g)
		return;
	for (size_t i = 0; i < g->nkv; i++) {
		free(g->kv[i].key);
		free(g->kv[i].raw);
		free(g->kv[i].text);
	}
	for (size_t i = 0; i < g->nt; i++)
		free(g->t[i].name);
	free(g->kv);
	free(g->t);
	free(g);
}

static int gg_open(struct ckpt_file *f, ckpt_read_fn read, struct lines_error *err)
{
	struct gguf_file *g = calloc(1, sizeof(*g));
	struct rd r = {.f = f, .read = read, .err = err};
	uint64_t data_end = 0;
	int rc;

	RETURN_ERROR_IF(!g, err, LINES_ENOMEM, f->path, NULL, "out of memory for the header");
	f->fmt_state = g;
	r.buf = f->zs ? NULL : malloc(RD_CHUNK);
	RETURN_ERROR_IF(!f->zs && !r.buf, err, LINES_ENOMEM, f->path, NULL,
	                "out of memory for the header");
	rc = parse(&r, g);
	if (rc == 0)
		rc = check_data(&r, g, &data_end);
	free(r.buf);
	FORWARD_IF_ERROR(rc);

	f->entries = calloc(g->nt ? g->nt : 1, sizeof(*f->entries));
	f->meta = calloc(g->nkv ? g->nkv : 1, sizeof(*f->meta));
	RETURN_ERROR_IF(!f->entries || !f->meta, err, LINES_ENOMEM, f->path, NULL, "out of memory");
	for (size_t i = 0; i < g->nt; i++) {
		const struct gguf_tinfo *t = &g->t[i];
		struct ckpt_entry *e = &f->entries[i];
		e->name = t->name;
		e->dtype = t->dt;
		e->rank = t->n_dims;
		e->shape = t->shape;
		e->nelem = t->nelem;
		e->off = g->data_start + t->off;
		e->nbytes = t->nbytes;
	}
	f->nentries = g->nt;
	for (size_t i = 0; i < g->nkv; i++) {
		f->meta[i].key = g->kv[i].key;
		f->meta[i].value = g->kv[i].text;
		f->meta[i].summary = g->kv[i].summary;
	}
	f->nmeta = g->nkv;
	f->data_start = g->data_start;
	f->data_end = data_end;
	f->num_blocks = g->block_count > 0 ? g->block_count : 0;
	return 0;
}

int gguf_split_of(const struct ckpt_file *f, struct gguf_split *s, struct lines_error *err)
{
	static const char *const keys[3] = {"split.no", "split.count", "split.tensors.count"};
	const struct gguf_file *g = f->fmt == &ckpt_fmt_gguf ? f->fmt_state : NULL;
	uint64_t v[3] = {0, 0, 0};
	int have[3] = {0, 0, 0};

	memset(s, 0, sizeof(*s));
	if (!g)
		return 0;
	for (int k = 0; k < 3; k++) {
		const struct gguf_kv *kv = find_kv(g, keys[k]);
		if (!kv)
			continue;
		RETURN_ERROR_IF(kv_int(kv, &v[k]) < 0, err, LINES_EFORMAT, f->path, NULL,
		                "metadata key '%s' is %.64s (a %s), not a non-negative integer",
		                keys[k], kv->text, vtype_names[kv->type]);
		have[k] = 1;
	}
	if (!have[0] && !have[1] && !have[2])
		return 0;
	for (int k = 0; k < 3; k++)
		RETURN_ERROR_IF(
		    !have[k], err, LINES_EFORMAT, f->path, NULL,
		    "has split.* keys but no '%s' (llama.cpp's split files have all three)",
		    keys[k]);
	RETURN_ERROR_IF(v[1] == 0 || v[1] > 99999, err, LINES_EFORMAT, f->path, NULL,
	                "metadata key 'split.count' is %" PRIu64 ", not 1 to 99999", v[1]);
	RETURN_ERROR_IF(v[0] >= v[1], err, LINES_EFORMAT, f->path, NULL,
	                "metadata key 'split.no' is %" PRIu64 ", not below split.count %" PRIu64,
	                v[0], v[1]);
	s->no = v[0], s->count = v[1], s->tensors = v[2];
	return 0;
}

static void gg_close(struct ckpt_file *f)
{
	gguf_file_free(f->fmt_state);
	free(f->entries);
	free(f->meta);
	f->fmt_state = NULL;
	f->entries = NULL;
	f->meta = NULL;
	f->nentries = f->nmeta = 0;
}

const struct ckpt_format ckpt_fmt_gguf = {
	.name = "gguf",
	.open = gg_open,
	.close = gg_close,
};
