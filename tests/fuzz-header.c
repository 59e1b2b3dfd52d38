/*
 * fuzz-header.c -- a libFuzzer target for the safetensors header reader
 * (`make fuzz`, see tests/hardening.mk).
 *
 * The input is the image of a whole file: its first 8 bytes are checked by
 * st_parse_prefix against the input's size, the JSON after them by
 * st_parse. The sanitizers catch what the reader does wrong on the way;
 * the round trip below catches what it gets wrong quietly. A header that
 * is accepted is written again with st_build, from the tensors as parsed,
 * and read back: the names, dtypes, shapes and offsets must come back the
 * same and in the same order (the writer packs the tensors back to back in
 * the order given, and an accepted header already tiles the buffer from 0,
 * so even the offsets agree), the metadata too (less "format", which the
 * writer always sets to "pt"), and writing the read-back header once more
 * must give the same bytes. Any difference aborts, which libFuzzer reports
 * with the input that caused it.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz-header: round trip: %s (line %d)\n", #cond,          \
			        __LINE__);                                                         \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/*
 * Write h again with st_build. Returns 0 and the bytes in *out, or -1 when
 * memory ran out (the only failure an accepted header allows).
 */
static int rebuild(const struct st_header *h, unsigned char **out, size_t *len)
{
	struct st_out_tensor *t = calloc(h->ntensors ? h->ntensors : 1, sizeof(*t));
	struct st_kv *kv = calloc(h->nmeta ? h->nmeta : 1, sizeof(*kv));
	struct lines_error err;
	int rc = -1;

	if (t && kv) {
		for (size_t i = 0; i < h->ntensors; i++) {
			const struct st_tensor *s = &h->tensors[i];
			t[i] = (struct st_out_tensor){s->name, s->dtype, s->rank, s->shape,
			                              s->end - s->begin};
		}
		for (size_t i = 0; i < h->nmeta; i++)
			kv[i] = (struct st_kv){h->meta[i].key, h->meta[i].value};
		rc = st_build(t, h->ntensors, kv, h->nmeta, out, len, &err);
		/* the tensors were accepted, so only memory can be missing */
		CHECK(rc == 0 || err.code == LINES_ENOMEM);
	}
	free(t);
	free(kv);
	return rc < 0 ? -1 : 0;
}

/* Parse a built header, with a file size that the data would make. */
static void reparse(const unsigned char *buf, size_t len, uint64_t data_len, struct st_header *h)
{
	struct lines_error err;
	uint64_t n;

	CHECK(st_parse_prefix(buf, len + data_len, &n, "rebuilt", &err) == 0);
	CHECK(n == len - 8 && n % 8 == 0 && buf[8] == '{');
	CHECK(st_parse((const char *)buf + 8, n, len + data_len, h, "rebuilt", &err) == 0);
}

static void compare(const struct st_header *a, const struct st_header *b)
{
	size_t m = 0;

	CHECK(a->ntensors == b->ntensors);
	CHECK(a->data_len == b->data_len);
	for (size_t i = 0; i < a->ntensors; i++) {
		const struct st_tensor *x = &a->tensors[i], *y = &b->tensors[i];
		CHECK(strcmp(x->name, y->name) == 0);
		CHECK(x->dtype == y->dtype);
		CHECK(x->rank == y->rank);
		CHECK(x->rank == 0 || memcmp(x->shape, y->shape, x->rank * sizeof(*x->shape)) == 0);
		CHECK(x->nelem == y->nelem && x->begin == y->begin && x->end == y->end);
	}

	/* "format":"pt" first, then a's entries in order, a's "format" left out */
	CHECK(b->has_meta && b->nmeta >= 1);
	CHECK(strcmp(b->meta[0].key, "format") == 0 && strcmp(b->meta[0].value, "pt") == 0);
	for (size_t i = 0; i < a->nmeta; i++) {
		if (strcmp(a->meta[i].key, "format") == 0)
			continue;
		m++;
		CHECK(m < b->nmeta);
		CHECK(strcmp(a->meta[i].key, b->meta[m].key) == 0);
		CHECK(strcmp(a->meta[i].value, b->meta[m].value) == 0);
	}
	CHECK(m + 1 == b->nmeta);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* st_parse_prefix reads 8 bytes whatever the size: give it 8 */
	unsigned char prefix[8] = {0};
	struct lines_error err;
	struct st_header h, h2, h3;
	unsigned char *out = NULL, *out2 = NULL;
	size_t len, len2;
	uint64_t n;

	memcpy(prefix, data, size < 8 ? size : 8);
	if (st_parse_prefix(prefix, size, &n, "fuzz", &err) < 0)
		return 0;
	CHECK(size >= 8 && n <= size - 8);
	if (st_parse((const char *)data + 8, n, size, &h, "fuzz", &err) < 0) {
		/* a failed parse leaves nothing behind */
		CHECK(h.ntensors == 0 && h.tensors == NULL && h.meta == NULL);
		return 0;
	}
	CHECK(h.data_start == 8 + n && h.data_start + h.data_len == size);

	if (rebuild(&h, &out, &len) == 0 && len - 8 <= ST_MAX_HEADER) {
		reparse(out, len, h.data_len, &h2);
		compare(&h, &h2);
		/* and the writer is a function of what it is given */
		if (rebuild(&h2, &out2, &len2) == 0) {
			CHECK(len2 == len && memcmp(out, out2, len) == 0);
			reparse(out2, len2, h2.data_len, &h3);
			st_header_free(&h3);
		}
		st_header_free(&h2);
	}
	free(out);
	free(out2);
	st_header_free(&h);
	return 0;
}
