/*
 * internal.h -- what every file of liblines shares: the error record
 * helpers, checked arithmetic and the dtype table. Depends on nothing
 * but lines.h and libc.
 */
#ifndef LINES_INTERNAL_H
#define LINES_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lines.h"

#if defined(__GNUC__)
#define LINES_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define LINES_UNUSED __attribute__((unused))
#define LINES_LIKELY(x) __builtin_expect(!!(x), 1)
#define LINES_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define LINES_PRINTF(f, a)
#define LINES_UNUSED
#define LINES_LIKELY(x) (x)
#define LINES_UNLIKELY(x) (x)
#endif

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/*
 * Fill err (which may be NULL) and return code. file and tensor may be
 * NULL. The message is lowercase and has no full stop.
 */
int lines_errf(struct lines_error *err, int code, const char *file, const char *tensor,
               const char *fmt, ...) LINES_PRINTF(5, 6);
/* Same, for a failed system call: appends strerror(errnum). */
int lines_errno(struct lines_error *err, int errnum, const char *file, const char *fmt, ...)
	LINES_PRINTF(4, 5);

/* Error paths one line long, in the manner of zstd's RETURN_ERROR_IF. */
#define RETURN_ERROR_IF(cond, err, code, file, tensor, ...)                                   \
	do {                                                                                 \
		if (cond)                                                                    \
			return lines_errf((err), (code), (file), (tensor), __VA_ARGS__);     \
	} while (0)
#define FORWARD_IF_ERROR(expr)                                                               \
	do {                                                                                 \
		int forward_rc_ = (expr);                                                    \
		if (forward_rc_ < 0)                                                         \
			return forward_rc_;                                                  \
	} while (0)

/* Checked arithmetic: return 1 on overflow. */
static inline int ck_add(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_add_overflow(a, b, r); }
static inline int ck_mul(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_mul_overflow(a, b, r); }

/* Unaligned-safe little-endian load. */
static inline uint64_t load_le64(const void *p)
{
	const unsigned char *b = p;
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | b[i];
	return v;
}
static inline void store_le64(void *p, uint64_t v)
{
	unsigned char *b = p;
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(v >> (8 * i));
}

/* ---- dtypes (every dtype the safetensors format knows, then GGUF's blocks) */
enum dtype {
	DT_BOOL, DT_F4, DT_F6_E2M3, DT_F6_E3M2, DT_U8, DT_I8, DT_F8_E5M2, DT_F8_E4M3,
	DT_F8_E8M0, DT_F8_E4M3FNUZ, DT_F8_E5M2FNUZ, DT_I16, DT_U16, DT_F16, DT_BF16,
	DT_I32, DT_U32, DT_F32, DT_C64, DT_F64, DT_I64, DT_U64,
	/* ggml's block-quantized types (GGUF only; ggml_quants.h decodes them) */
	DT_Q4_0, DT_Q4_1, DT_Q5_0, DT_Q5_1, DT_Q8_0, DT_Q2_K, DT_Q3_K, DT_Q4_K, DT_Q5_K,
	DT_Q6_K, DT_Q8_K,
	DT_COUNT
};
/* The dtypes a safetensors header may name: those before the GGUF blocks. */
#define DT_ST_COUNT DT_Q4_0

/*
 * An element type is a number of blocks of a fixed byte size, each of
 * which decodes to a fixed number of elements: 1 element of 2 bytes for
 * BF16, 2 elements of 1 byte for F4, and so a block-quantized type (GGUF's
 * Q8_0: 32 elements in 34 bytes, a scale and 32 quants; FP8 with block
 * scales) is one more row, not a special case: a tensor of n elements
 * takes n / block_elems * block_bytes bytes, n a multiple of block_elems.
 */
struct dtype_desc {
	const char *name;
	unsigned bits;           /* per element, for the formats that count so */
	unsigned char floating;  /* a floating-point format of any kind         */
	unsigned char mergeable; /* decoded to float32 by the kernels            */
	unsigned block_elems;    /* elements per block                          */
	unsigned block_bytes;    /* bytes per block                             */
};
extern const struct dtype_desc dtype_table[DT_COUNT];

/* Look up a safetensors dtype name (case-sensitive; GGUF's block types are
 * not safetensors names); -1 if unknown. */
int dtype_parse(const char *name, size_t len);
static inline const char *dtype_name(enum dtype d) { return dtype_table[d].name; }
static inline unsigned dtype_size(enum dtype d) { return dtype_table[d].bits / 8; }
static inline int dtype_mergeable(enum dtype d) { return dtype_table[d].mergeable; }
/* Bytes of n elements of d: 0, or -1 when n is not a whole number of
 * blocks or the size overflows. */
static inline int dtype_bytes(enum dtype d, uint64_t n, uint64_t *bytes)
{
	const struct dtype_desc *t = &dtype_table[d];
	if (n % t->block_elems)
		return -1;
	return ck_mul(n / t->block_elems, t->block_bytes, bytes) ? -1 : 0;
}

/* Send a message to the log callback of o (nothing when it has none). */
void lines_logf(const struct lines_merge_opts *o, enum lines_level level, const char *file,
                const char *tensor, const char *fmt, ...) LINES_PRINTF(5, 6);

/* Bytes of memory the process holds now (its resident set; else the heap
 * in use, glibc's mallinfo2; 0 where neither can be had): measured while
 * a plan is made, what its headers and tables take. */
size_t lines_heap_in_use(void);

/* The shortest decimal that reads back as the same double. */
void lines_fmt_double(char *buf, size_t n, double v);

/* json_dumps() with a final newline (malloc'd; NULL when out of memory). */
struct json_t;
char *lines_json_text(struct json_t *root, size_t flags);

/* The most models one run merges (the select pass's counts are per model). */
#define LINES_MAX_MODELS 1024

/* The cancellation flag set by lines_cancel(). */
int lines_canceled(void);

/* Read/write exactly n bytes at offset (pread/pwrite), retrying on EINTR and
 * short transfers. Return 0, -errno, or -EIO at end of file for reads. */
int full_pread(int fd, void *buf, size_t n, uint64_t off);
int full_read(int fd, void *buf, size_t n, size_t *got);
int full_write(int fd, const void *buf, size_t n);

/* 1 when paths A and B name the same file: the same inode when both
 * exist, else the same name in the same directory (the directories by
 * inode); 0 otherwise, or when a directory cannot be looked up. */
int same_file(const char *a, const char *b);

#endif /* LINES_INTERNAL_H */
