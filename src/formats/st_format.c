/*
 * st_format.c -- parse, validate and build safetensors headers.
 *
 * The layout is: an 8-byte little-endian length N, N bytes of UTF-8 JSON,
 * then the data buffer. A header is accepted exactly when the reference
 * reader accepts it, with two deliberate exceptions that make lines
 * stricter: duplicate keys (which readers resolve differently, so a file
 * could show one tensor to one tool and another to the next) and NUL bytes
 * in names or metadata (which no C string can carry) are refused.
 *
 * Nothing read from the file is trusted: every count, product and offset
 * goes through checked arithmetic before it is used.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "st_format.h"

int st_parse_prefix(const unsigned char prefix[8], uint64_t file_size, uint64_t *n,
                    const char *file, struct lines_error *err)
{
	uint64_t len, stop;

	RETURN_ERROR_IF(file_size != UINT64_MAX && file_size < 8, err, LINES_EFORMAT, file, NULL,
	                "file is too small to be safetensors (%" PRIu64 " bytes)", file_size);
	len = load_le64(prefix);
	RETURN_ERROR_IF(len > ST_MAX_HEADER, err, LINES_EFORMAT, file, NULL,
	                "header length %" PRIu64 " exceeds the limit of %u bytes", len,
	                ST_MAX_HEADER);
	RETURN_ERROR_IF(ck_add(len, 8, &stop) || (file_size != UINT64_MAX && stop > file_size), err,
	                LINES_EFORMAT, file, NULL,
	                "header length %" PRIu64 " runs past the end of the file (%" PRIu64
	                " bytes)",
	                len, file_size);
	*n = len;
	return 0;
}

/* Offset of the first byte that is not valid UTF-8, or n. */
static size_t utf8_check(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned c = s[i];
		size_t len;
		uint32_t cp, min;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			len = 2, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			len = 4, cp = c & 0x07, min = 0x10000;
		} else {
			return i;
		}
		if (n - i < len)
			return i;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return i;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return i;
		i += len;
	}
	return n;
}

/*
 * What jansson does not tell: how deep the JSON nests (the reference
 * reader's parser gives up at 128 levels; jansson would go to 2048), and
 * whether a bare -0 appears (jansson reads it as the integer 0, the
 * reference as a float, which no shape or offset may be).
 */
#define ST_MAX_DEPTH 127

static int scan_json(const char *s, size_t n, int *minus_zero)
{
	int depth = 0, in_str = 0;
	*minus_zero = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (in_str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = 0;
			continue;
		}
		if (c == '"')
			in_str = 1;
		else if (c == '[' || c == '{') {
			if (++depth > ST_MAX_DEPTH)
				return -1;
		} else if (c == ']' || c == '}')
			depth--;
		else if (c == '-' && i + 1 < n && s[i + 1] == '0' &&
		         (i + 2 == n || !strchr("0123456789.eE", s[i + 2])))
			*minus_zero = 1;
	}
	return 0;
}

static char *dup_n(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

void st_header_free(struct st_header *h)
{
	for (size_t i = 0; i < h->ntensors; i++) {
		free(h->tensors[i].name);
		free(h->tensors[i].shape);
	}
	free(h->tensors);
	for (size_t i = 0; i < h->nmeta; i++) {
		free(h->meta[i].key);
		free(h->meta[i].value);
	}
	free(h->meta);
	memset(h, 0, sizeof(*h));
}

/* shadow: the same value parsed with every integer as a real, when the
 * text has a bare -0 somewhere; a -0.0 there is the reference's float */
static int parse_uint(json_t *v, json_t *shadow, uint64_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	if (shadow && json_is_real(shadow) && json_real_value(shadow) == 0.0 &&
	    signbit(json_real_value(shadow)))
		return -1;
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int parse_meta(json_t *v, struct st_header *h, const char *file, struct lines_error *err)
{
	const char *key;
	size_t klen;
	json_t *val;

	if (json_is_null(v))
		return 0;
	RETURN_ERROR_IF(!json_is_object(v), err, LINES_EFORMAT, file, NULL,
	                "__metadata__ is not an object of strings");
	h->has_meta = 1;
	h->meta = calloc(json_object_size(v) ? json_object_size(v) : 1, sizeof(*h->meta));
	RETURN_ERROR_IF(!h->meta, err, LINES_ENOMEM, file, NULL, "out of memory");
	json_object_keylen_foreach(v, key, klen, val)
	{
		RETURN_ERROR_IF(!json_is_string(val), err, LINES_EFORMAT, file, NULL,
		                "__metadata__ value of \"%.*s\" is not a string", (int)klen, key);
		RETURN_ERROR_IF(memchr(key, 0, klen) ||
		                        memchr(json_string_value(val), 0, json_string_length(val)),
		                err, LINES_EFORMAT, file, NULL,
		                "__metadata__ holds a NUL byte, which lines refuses");
		struct st_meta *m = &h->meta[h->nmeta++];
		m->key = dup_n(key, klen);
		m->value = dup_n(json_string_value(val), json_string_length(val));
		RETURN_ERROR_IF(!m->key || !m->value, err, LINES_ENOMEM, file, NULL, "out of memory");
	}
	return 0;
}

/* field k of an entry: by name in an object, by position in an array
 * (the reference reader accepts both forms of [dtype, shape, offsets]) */
static json_t *field(json_t *v, const char *key, size_t k)
{
	return json_is_array(v) ? json_array_get(v, k) : json_object_get(v, key);
}

static int parse_tensor(const char *name, json_t *v, json_t *sv, struct st_tensor *t,
                        const char *file, struct lines_error *err)
{
	json_t *dt = field(v, "dtype", 0);
	json_t *shape = field(v, "shape", 1);
	json_t *offs = field(v, "data_offsets", 2);
	json_t *sshape = sv ? field(sv, "shape", 1) : NULL, *soffs = sv ? field(sv, "data_offsets", 2) : NULL;
	int d;

	RETURN_ERROR_IF(!json_is_object(v) && !(json_is_array(v) && json_array_size(v) == 3), err,
	                LINES_EFORMAT, file, name,
	                "tensor entry is not an object (nor an array of dtype, shape, offsets)");
	RETURN_ERROR_IF(!dt, err, LINES_EFORMAT, file, name, "missing \"dtype\"");
	RETURN_ERROR_IF(!shape, err, LINES_EFORMAT, file, name, "missing \"shape\"");
	RETURN_ERROR_IF(!offs, err, LINES_EFORMAT, file, name, "missing \"data_offsets\"");
	RETURN_ERROR_IF(!json_is_string(dt), err, LINES_EFORMAT, file, name,
	                "\"dtype\" is not a string");
	d = dtype_parse(json_string_value(dt), json_string_length(dt));
	RETURN_ERROR_IF(d < 0, err, LINES_EFORMAT, file, name, "unknown dtype \"%.*s\"",
	                (int)(json_string_length(dt) > 32 ? 32 : json_string_length(dt)),
	                json_string_value(dt));
	t->dtype = (enum dtype)d;

	RETURN_ERROR_IF(!json_is_array(shape), err, LINES_EFORMAT, file, name,
	                "\"shape\" is not an array");
	RETURN_ERROR_IF(json_array_size(shape) > ST_MAX_RANK, err, LINES_EFORMAT, file, name,
	                "rank %zu is more than lines supports (%d)", json_array_size(shape),
	                ST_MAX_RANK);
	t->rank = (unsigned)json_array_size(shape);
	if (t->rank) {
		t->shape = calloc(t->rank, sizeof(*t->shape));
		RETURN_ERROR_IF(!t->shape, err, LINES_ENOMEM, file, name, "out of memory");
	}
	for (unsigned i = 0; i < t->rank; i++)
		RETURN_ERROR_IF(parse_uint(json_array_get(shape, i), json_array_get(sshape, i), &t->shape[i]), err,
		                LINES_EFORMAT, file, name,
		                "\"shape\" entry %u is not a non-negative integer", i);

	RETURN_ERROR_IF(!json_is_array(offs) || json_array_size(offs) != 2, err, LINES_EFORMAT,
	                file, name, "\"data_offsets\" is not an array of two integers");
	RETURN_ERROR_IF(parse_uint(json_array_get(offs, 0), json_array_get(soffs, 0), &t->begin) ||
	                        parse_uint(json_array_get(offs, 1), json_array_get(soffs, 1), &t->end),
	                err, LINES_EFORMAT, file, name,
	                "\"data_offsets\" entries are not non-negative integers");
	return 0;
}

static int cmp_offsets(const void *a, const void *b)
{
	const struct st_tensor *x = a, *y = b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	/* equal ranges (zero-size tensors): keep header order, which the
	 * caller stored in nelem until the sort is done */
	return x->nelem < y->nelem ? -1 : x->nelem > y->nelem;
}

/* Offsets tile the buffer from 0; sizes agree with dtype and shape. */
static int validate(struct st_header *h, const char *file, struct lines_error *err)
{
	uint64_t start = 0;

	for (size_t i = 0; i < h->ntensors; i++)
		h->tensors[i].nelem = i; /* sort key for ties, see cmp_offsets */
	if (h->ntensors > 1)
		qsort(h->tensors, h->ntensors, sizeof(*h->tensors), cmp_offsets);

	for (size_t i = 0; i < h->ntensors; i++) {
		struct st_tensor *t = &h->tensors[i];
		uint64_t nelem = 1, nbits, nbytes;

		RETURN_ERROR_IF(t->end < t->begin, err, LINES_EFORMAT, file, t->name,
		                "data_offsets [%" PRIu64 ", %" PRIu64 "] end before they begin",
		                t->begin, t->end);
		RETURN_ERROR_IF(t->begin < start, err, LINES_EFORMAT, file, t->name,
		                "data_offsets [%" PRIu64 ", %" PRIu64
		                "] overlap the previous tensor, which ends at %" PRIu64,
		                t->begin, t->end, start);
		RETURN_ERROR_IF(t->begin > start, err, LINES_EFORMAT, file, t->name,
		                "data_offsets [%" PRIu64 ", %" PRIu64 "] leave a gap of %" PRIu64
		                " bytes before the tensor",
		                t->begin, t->end, t->begin - start);
		start = t->end;

		for (unsigned k = 0; k < t->rank; k++)
			RETURN_ERROR_IF(ck_mul(nelem, t->shape[k], &nelem), err, LINES_EFORMAT, file,
			                t->name, "the number of elements of the shape overflows");
		RETURN_ERROR_IF(ck_mul(nelem, dtype_table[t->dtype].bits, &nbits), err,
		                LINES_EFORMAT, file, t->name, "the size in bits overflows");
		RETURN_ERROR_IF(nbits % 8, err, LINES_EFORMAT, file, t->name,
		                "%" PRIu64 " elements of %s are not a whole number of bytes", nelem,
		                dtype_name(t->dtype));
		nbytes = nbits / 8;
		RETURN_ERROR_IF(t->end - t->begin != nbytes, err, LINES_EFORMAT, file, t->name,
		                "data_offsets span %" PRIu64 " bytes but %s with %" PRIu64
		                " elements needs %" PRIu64,
		                t->end - t->begin, dtype_name(t->dtype), nelem, nbytes);
		t->nelem = nelem;
	}
	h->data_len = start;
	return 0;
}

int st_parse(const char *json, uint64_t n, uint64_t file_size, struct st_header *h,
             const char *file, struct lines_error *err)
{
	json_error_t je;
	json_t *root, *shadow = NULL;
	const char *key;
	size_t klen, bad;
	json_t *val;
	int rc = 0, minus_zero;

	memset(h, 0, sizeof(*h));
	h->header_len = n;
	h->data_start = n + 8;

	bad = utf8_check((const unsigned char *)json, (size_t)n);
	RETURN_ERROR_IF(bad != n, err, LINES_EFORMAT, file, NULL,
	                "header is not valid UTF-8 (at byte %zu of the JSON)", bad);

	RETURN_ERROR_IF(scan_json(json, (size_t)n, &minus_zero) < 0, err, LINES_EFORMAT, file, NULL,
	                "header is not valid JSON: it nests deeper than %d levels", ST_MAX_DEPTH);
	root = json_loadb(json, (size_t)n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
	RETURN_ERROR_IF(!root, err, LINES_EFORMAT, file, NULL,
	                "header is not valid JSON: %s (at byte %d of the JSON)", je.text,
	                je.position);
	if (minus_zero)
		shadow = json_loadb(json, (size_t)n,
		                    JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL,
		                    NULL);
	/* the most this header makes the heap hold (the tree is freed below) */
	h->heap_parsed = lines_heap_in_use();
	if (!json_is_object(root)) {
		rc = lines_errf(err, LINES_EFORMAT, file, NULL, "header is not a JSON object");
		goto out;
	}

	h->tensors = calloc(json_object_size(root) ? json_object_size(root) : 1,
	                    sizeof(*h->tensors));
	if (!h->tensors) {
		rc = lines_errf(err, LINES_ENOMEM, file, NULL, "out of memory");
		goto out;
	}
	json_object_keylen_foreach(root, key, klen, val)
	{
		if (klen == 12 && memcmp(key, "__metadata__", 12) == 0) {
			if ((rc = parse_meta(val, h, file, err)) < 0)
				goto out;
			continue;
		}
		if (memchr(key, 0, klen)) {
			rc = lines_errf(err, LINES_EFORMAT, file, NULL,
			                "a tensor name holds a NUL byte, which lines refuses");
			goto out;
		}
		struct st_tensor *t = &h->tensors[h->ntensors++];
		if (!(t->name = dup_n(key, klen))) {
			rc = lines_errf(err, LINES_ENOMEM, file, NULL, "out of memory");
			goto out;
		}
		if ((rc = parse_tensor(t->name, val, shadow ? json_object_getn(shadow, key, klen) : NULL,
		                       t, file, err)) < 0)
			goto out;
	}
	if ((rc = validate(h, file, err)) < 0)
		goto out;

	if (file_size != UINT64_MAX) {
		uint64_t avail = file_size - h->data_start;
		if (h->data_len < avail)
			rc = lines_errf(err, LINES_EFORMAT, file, NULL,
			                "%" PRIu64 " byte%s follow%s the last tensor's data",
			                avail - h->data_len, avail - h->data_len == 1 ? "" : "s",
			                avail - h->data_len == 1 ? "s" : "");
		else if (h->data_len > avail)
			rc = lines_errf(err, LINES_EFORMAT, file, NULL,
			                "the tensors need %" PRIu64 " bytes of data but the file holds %" PRIu64
			                " (truncated?)",
			                h->data_len, avail);
	}
out:
	json_decref(root);
	json_decref(shadow);
	if (rc < 0)
		st_header_free(h);
	return rc;
}

/* ---- writer ---------------------------------------------------------------- */
int st_build(const struct st_out_tensor *t, size_t nt, const struct st_kv *meta,
             size_t nmeta, unsigned char **out, size_t *out_len, struct lines_error *err)
{
	json_t *root = json_object(), *m = json_object();
	char *text = NULL;
	uint64_t off = 0;
	int rc = 0;

	*out = NULL;
	if (!root || !m)
		goto nomem;
	if (json_object_set_new(root, "__metadata__", m))
		goto nomem;
	if (json_object_set_new(m, "format", json_string("pt")))
		goto nomem;
	for (size_t i = 0; i < nmeta; i++)
		if (strcmp(meta[i].key, "format") &&
		    json_object_set_new(m, meta[i].key, json_string(meta[i].value)))
			goto nomem;

	for (size_t i = 0; i < nt; i++) {
		json_t *e, *shape, *offs;
		uint64_t end;
		if (strcmp(t[i].name, "__metadata__") == 0) {
			rc = lines_errf(err, LINES_EFORMAT, NULL, t[i].name,
			                "a tensor cannot be named __metadata__");
			goto out;
		}
		if (json_object_get(root, t[i].name)) {
			rc = lines_errf(err, LINES_EFORMAT, NULL, t[i].name, "duplicate tensor name");
			goto out;
		}
		if (ck_add(off, t[i].nbytes, &end) || end > INT64_MAX) {
			rc = lines_errf(err, LINES_EFORMAT, NULL, t[i].name, "output too large");
			goto out;
		}
		/* the _new setters steal their argument even when they fail, so
		 * each object is owned by its parent from the moment it exists */
		e = json_object();
		if (!e || json_object_set_new(root, t[i].name, e))
			goto nomem;
		shape = json_array();
		offs = json_array();
		if (json_object_set_new(e, "dtype", json_string(dtype_name(t[i].dtype))) ||
		    json_object_set_new(e, "shape", shape) ||
		    json_object_set_new(e, "data_offsets", offs) || !shape || !offs)
			goto nomem;
		for (unsigned k = 0; k < t[i].rank; k++)
			if (json_array_append_new(shape, json_integer((json_int_t)t[i].shape[k])))
				goto nomem;
		if (json_array_append_new(offs, json_integer((json_int_t)off)) ||
		    json_array_append_new(offs, json_integer((json_int_t)end)))
			goto nomem;
		off = end;
	}

	text = json_dumps(root, JSON_COMPACT);
	if (!text)
		goto nomem;
	{
		size_t len = strlen(text), pad = (8 - len % 8) % 8;
		unsigned char *buf = malloc(8 + len + pad);
		if (!buf)
			goto nomem;
		store_le64(buf, len + pad);
		memcpy(buf + 8, text, len);
		memset(buf + 8 + len, ' ', pad);
		*out = buf;
		*out_len = 8 + len + pad;
	}
	goto out;
nomem:
	rc = lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory building the header");
out:
	free(text);
	json_decref(root);
	return rc;
}
