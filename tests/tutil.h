/*
 * tutil.h -- helpers of the C tests: temporary directories, running the
 * lines program, and an independent reader of (small) safetensors files
 * written for the tests alone, so that lines is not checked against its
 * own parser.
 */
#ifndef LINES_TUTIL_H
#define LINES_TUTIL_H

#include <stddef.h>
#include <stdint.h>

/* A fresh directory under $TMPDIR, removed by tu_cleanup(). */
const char *tu_tmpdir(void);
void tu_cleanup(void);

/* Run a shell command; return its exit status (or 128+signal). The
 * standard error is captured in tu_stderr (truncated to 64 KiB). */
extern char tu_stderr[65536];
int tu_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *tu_lines(void); /* $LINES or ./lines */
const char *tu_gen(void);   /* $GEN or ./tests/gen-family */

int tu_write_file(const char *path, const void *buf, size_t len);
int tu_exists(const char *path);
/* Number of entries of dir whose name contains needle. */
int tu_count_entries(const char *dir, const char *needle);

struct tu_tensor {
	char *name;
	char dtype[16];
	unsigned rank;
	uint64_t shape[8];
	uint64_t nelem;
	const unsigned char *data;
	uint64_t nbytes;
};

struct tu_model {
	unsigned char *buf;
	size_t len;
	size_t n;
	struct tu_tensor *t;
	char *meta_json; /* __metadata__ serialized, or NULL */
};

/* Read a whole file and index its tensors; 0 on success. */
int tu_model_load(struct tu_model *m, const char *path);
void tu_model_free(struct tu_model *m);
const struct tu_tensor *tu_model_find(const struct tu_model *m, const char *name);
/* A __metadata__ value, or NULL. */
const char *tu_model_meta(const struct tu_model *m, const char *key);

/* Element i of a BF16/F16/F32 tensor as a float (independent decoders). */
float tu_elem(const struct tu_tensor *t, uint64_t i);
int tu_is_float(const struct tu_tensor *t);
/* Element i as a double: F64 exactly, the others as tu_elem(). */
double tu_elem64(const struct tu_tensor *t, uint64_t i);
/* Spacing of the output dtype at |v|: 2^(e - p + 1), never below the
 * smallest subnormal. */
double tu_ulp(const char *dtype, double v);

/* got against a float64 reference ref: a NaN for a NaN, the same
 * infinity for an infinity, else within one ULP of dtype odt at ref plus
 * slack * mag (the reference's own uncertainty where the operands, of
 * magnitude mag, cancel). *worst keeps the largest error in ULP of the
 * elements within one ULP. 1 when fine. */
int tu_within(const char *odt, double ref, double mag, double got, double slack, double *worst);

/* The block index in a tensor name, found by the tests' own matcher
 * (independent of liblines'), or -1. */
long tu_block_of(const char *name);

#endif
