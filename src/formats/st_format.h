/*
 * st_format.h -- the safetensors header: parse and validate, build.
 *
 * Pure functions over memory: no file is opened here. The rules are those
 * of the reference reader (huggingface/safetensors), applied with checked
 * arithmetic; see lines-inspect(1) for the two places where lines is
 * stricter (duplicate keys, NUL bytes in names).
 */
#ifndef LINES_ST_FORMAT_H
#define LINES_ST_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

#define ST_MAX_HEADER 100000000u /* the reference reader's limit */
#define ST_MAX_RANK 64

struct st_tensor {
	char *name; /* NUL-terminated; names holding NUL bytes are refused */
	enum dtype dtype;
	unsigned rank;
	uint64_t *shape; /* rank entries, NULL for rank 0 */
	uint64_t nelem;
	uint64_t begin, end; /* offsets into the data buffer */
};

struct st_meta {
	char *key;
	char *value;
};

struct st_header {
	uint64_t header_len; /* N: the JSON length from the first 8 bytes */
	uint64_t data_start; /* 8 + N */
	uint64_t data_len;   /* the end of the last tensor                */
	size_t ntensors;
	struct st_tensor *tensors; /* sorted by (begin, end), as stored    */
	size_t nmeta;
	struct st_meta *meta; /* __metadata__, in header order            */
	int has_meta;
	size_t heap_parsed; /* heap in use with the parsed JSON alive (its peak) */
};

/*
 * Check the 8-byte prefix against the file size and return N in *n.
 * file_size UINT64_MAX means unknown (a stream): only the limit is checked.
 */
int st_parse_prefix(const unsigned char prefix[8], uint64_t file_size, uint64_t *n,
                    const char *file, struct lines_error *err);

/*
 * Parse and validate the n bytes of JSON that follow the prefix. With a
 * known file_size the data buffer must end exactly at the end of the file.
 * On success h owns its memory (st_header_free); on failure h is empty.
 */
int st_parse(const char *json, uint64_t n, uint64_t file_size, struct st_header *h,
             const char *file, struct lines_error *err);
void st_header_free(struct st_header *h);

/* ---- writer ---------------------------------------------------------------- */
/* A metadata entry to write (borrowed strings). */
struct st_kv {
	const char *key;
	const char *value;
};

struct st_out_tensor {
	const char *name;
	enum dtype dtype;
	unsigned rank;
	const uint64_t *shape;
	uint64_t nbytes;
};

/*
 * Build a complete header (8-byte length, JSON, space padding to a multiple
 * of 8): __metadata__ first, with "format":"pt" then the given entries,
 * then the tensors packed back to back in the given order. *out is
 * malloc'ed. Refuses a tensor named __metadata__.
 */
int st_build(const struct st_out_tensor *t, size_t nt, const struct st_kv *meta,
             size_t nmeta, unsigned char **out, size_t *out_len, struct lines_error *err);

#endif
