/*
 * t-stformat.c -- the safetensors reader against malformed and edge-case
 * files built here, byte by byte: each case has its expected verdict, and
 * a rejected one must say what is wrong (and name the tensor when there is
 * one). Every rejected case is then given to `lines merge` as the base and
 * as a model: exit 1, a message naming the file, no output file and no
 * temporary file left. The writer is checked by reading back what it built.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "st_format.h"
#include "tap.h"
#include "tutil.h"

struct tcase {
	const char *name;
	int accept;
	const char *json;  /* header text (NULL: raw bytes in `raw`) */
	long data;         /* bytes of data after the header (-1: none, file ends early) */
	int64_t len_delta; /* added to the true header length in the prefix */
	const char *expect; /* substring of the error message */
	const char *tensor; /* tensor the error must name, or NULL */
	int raw_len;        /* >= 0: the file is only this many bytes of `json` */
	uint64_t force_len; /* nonzero: this exact prefix value */
};

#define T(nm, acc, js, data, exp, tn) {nm, acc, js, data, 0, exp, tn, -1, 0}

static const struct tcase cases[] = {
	/* ---- the prefix ---- */
	{"empty file", 0, "", -1, 0, "too small", NULL, 0, 0},
	{"five bytes", 0, "abcde", -1, 0, "too small", NULL, 5, 0},
	{"header length over 100 MB", 0, "{}", 0, 0, "exceeds the limit", NULL, -1, 100000001},
	{"header length 2^64-1 (overflows when 8 is added)", 0, "{}", 0, 0, "exceeds the limit", NULL, -1, UINT64_MAX},
	{"header length past the end of the file", 0, "{}", 0, 0, "past the end", NULL, -1, 4096},
	{"header length one past the end", 0, "{}  ", 0, 1, "past the end", NULL, -1, 0},
	/* ---- the JSON ---- */
	T("invalid UTF-8", 0, "{\"a\xff\":{}}", 0, "UTF-8", NULL),
	T("overlong UTF-8 encoding", 0, "{\"\xc0\xaf\":{}}", 0, "UTF-8", NULL),
	T("not JSON", 0, "hello!!!", 0, "not valid JSON", NULL),
	T("truncated JSON", 0, "{\"a\":{\"dtype\":", 0, "not valid JSON", NULL),
	T("root is an array", 0, "[]", 0, "not a JSON object", NULL),
	T("root is a string", 0, "\"abc\"", 0, "JSON", NULL),
	T("trailing garbage after the object", 0, "{} x", 0, "not valid JSON", NULL),
	T("NUL padding after the object", 0, "{}\0\0\0\0\0\0", 0, "not valid JSON", NULL),
	T("duplicate tensor name", 0,
	  "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
	  "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "duplicate", NULL),
	T("deep nesting", 0, NULL, 0, "JSON", NULL), /* built in main */
	T("lone surrogate in a name", 0, "{\"\\ud800\":{}}", 0, "JSON", NULL),
	/* ---- entries ---- */
	T("tensor entry is a number", 0, "{\"w\":1}", 0, "not an object", "w"),
	T("missing dtype", 0, "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype", "w"),
	T("missing shape", 0, "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "shape", "w"),
	T("missing data_offsets", 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "data_offsets", "w"),
	T("unknown dtype", 0, "{\"w\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,16]}}", 16, "unknown dtype", "w"),
	T("lowercase dtype", 0, "{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype", "w"),
	T("dtype is a number", 0, "{\"w\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype", "w"),
	T("shape is not an array", 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", 4, "shape", "w"),
	T("negative shape", 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "non-negative", "w"),
	T("float shape", 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, "non-negative integer", "w"),
	T("shape entry above 2^63", 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[0,18446744073709551615],\"data_offsets\":[0,0]}}", 0, "JSON", NULL),
	T("negative offset", 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, "non-negative", "w"),
	T("float offset", 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", 4, "non-negative", "w"),
	T("three offsets", 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, "two integers", "w"),
	T("offsets not an array", 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":\"0-4\"}}", 4, "two integers", "w"),
	T("end before begin", 0, "{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4, "end before", "w"),
	T("gap before the first tensor", 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "gap", "w"),
	T("gap between tensors", 0,
	  "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
	  "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12, "gap", "b"),
	T("overlapping tensors", 0,
	  "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
	  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap", "b"),
	T("two tensors on the same bytes", 0,
	  "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
	  "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "overlap", NULL),
	T("size does not match the shape", 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "needs 8", "w"),
	T("size does not match the dtype", 0, "{\"w\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "needs 4", "w"),
	T("element count overflows", 0, "{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,0]}}", 0, "overflows", "w"),
	T("bit count overflows", 0, "{\"w\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,0]}}", 0, "overflows", "w"),
	T("F4 with an odd number of elements", 0, "{\"w\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, "whole number of bytes", "w"),
	T("trailing bytes after the data", 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 5, "the last tensor", NULL),
	T("data truncated", 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 9, "truncated", NULL),
	T("empty header with a data byte", 0, "{}", 1, "the last tensor", NULL),
	/* ---- metadata ---- */
	T("__metadata__ is a string", 0, "{\"__metadata__\":\"x\"}", 0, "__metadata__", NULL),
	T("__metadata__ value is a number", 0, "{\"__metadata__\":{\"a\":1}}", 0, "not a string", NULL),
	T("__metadata__ value is an object", 0, "{\"__metadata__\":{\"a\":{}}}", 0, "not a string", NULL),
	T("NUL in a tensor name", 0, "{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, "NUL", NULL),
	T("NUL in metadata", 0, "{\"__metadata__\":{\"k\":\"a\\u0000\"}}", 0, "NUL", NULL),

	/* ---- accepted ---- */
	T("empty header {}", 1, "{}", 0, NULL, NULL),
	T("empty header padded with spaces", 1, "{}      ", 0, NULL, NULL),
	T("whitespace around the header", 1, " \n\t{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} \r\n ", 4, NULL, NULL),
	T("unaligned header length", 1, "{\"w\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}", 3, NULL, NULL),
	T("zero-size tensor", 1, "{\"w\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]}}", 0, NULL, NULL),
	T("rank-0 tensor", 1, "{\"w\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4, NULL, NULL),
	T("zero-size tensors between others", 1,
	  "{\"z1\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
	  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
	  "\"z2\":{\"dtype\":\"BF16\",\"shape\":[3,0],\"data_offsets\":[4,4]},"
	  "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[4,8]}}", 8, NULL, NULL),
	T("tensors listed out of offset order", 1,
	  "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
	  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, NULL, NULL),
	T("__metadata__ null", 1, "{\"__metadata__\":null}", 0, NULL, NULL),
	T("__metadata__ strings", 1, "{\"__metadata__\":{\"format\":\"pt\",\"k\":\"\\u00e9t\\u00e9\"}}", 0, NULL, NULL),
	T("unknown fields in an entry are ignored", 1, "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"extra\":[1,2]}}", 1, NULL, NULL),
	T("non-ASCII tensor name", 1, "{\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, NULL, NULL),
	T("F4 and F6 with whole bytes", 1,
	  "{\"a\":{\"dtype\":\"F4\",\"shape\":[2,2],\"data_offsets\":[0,2]},"
	  "\"b\":{\"dtype\":\"F6_E2M3\",\"shape\":[4],\"data_offsets\":[2,5]}}", 5, NULL, NULL),
	T("every integer dtype", 1,
	  "{\"a\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[0,1]},"
	  "\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[1,9]},"
	  "\"c\":{\"dtype\":\"U16\",\"shape\":[1],\"data_offsets\":[9,11]},"
	  "\"d\":{\"dtype\":\"C64\",\"shape\":[1],\"data_offsets\":[11,19]}}", 19, NULL, NULL),
};

/* Build the bytes of a case: prefix, header, data. */
static unsigned char *build(const struct tcase *c, const char *json, size_t jlen, size_t *len)
{
	size_t data = c->data > 0 ? (size_t)c->data : 0;
	unsigned char *b = calloc(8 + jlen + data + 1, 1);
	if (c->raw_len >= 0) {
		memcpy(b, json, (size_t)c->raw_len);
		*len = (size_t)c->raw_len;
		return b;
	}
	uint64_t n = c->force_len ? c->force_len : (uint64_t)((int64_t)jlen + c->len_delta);
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(n >> (8 * i));
	memcpy(b + 8, json, jlen);
	for (size_t i = 0; i < data; i++)
		b[8 + jlen + i] = (unsigned char)i;
	*len = 8 + jlen + data;
	return b;
}

static int parse_buf(const unsigned char *b, size_t len, struct st_header *h, struct lines_error *e)
{
	uint64_t n;
	int rc;
	memset(h, 0, sizeof(*h));
	if (len < 8)
		return st_parse_prefix(b, len, &n, "case", e);
	if ((rc = st_parse_prefix(b, len, &n, "case", e)) < 0)
		return rc;
	return st_parse((const char *)b + 8, n, len, h, "case", e);
}

static void test_writer(void)
{
	const uint64_t s1[] = {2, 3}, s2[] = {4};
	struct st_out_tensor t[] = {
		{"model.layers.0.w", DT_BF16, 2, s1, 12},
		{"b", DT_I64, 1, s2, 32},
		{"empty", DT_F32, 0, NULL, 4},
	};
	struct st_kv meta[] = {{"format", "ignored"}, {"lines.alpha", "0.25"}};
	unsigned char *buf = NULL, *file;
	size_t len = 0;
	struct lines_error e;
	struct st_header h;

	ok(st_build(t, 3, meta, 2, &buf, &len, &e) == 0, "writer builds a header");
	ok(len % 8 == 0 && buf[8] == '{' && !memcmp(buf + 9, "\"__metadata__\"", 14),
	   "writer: 8-aligned, starts with {, __metadata__ first");
	file = calloc(len + 48, 1);
	memcpy(file, buf, len);
	ok(parse_buf(file, len + 48, &h, &e) == 0, "writer output passes the reader");
	ok(h.ntensors == 3 && !strcmp(h.tensors[0].name, "model.layers.0.w") && h.tensors[0].begin == 0 &&
	       h.tensors[1].begin == 12 && h.tensors[2].begin == 44 && h.data_len == 48,
	   "writer packs tensors back to back in the given order");
	ok(h.nmeta == 2 && !strcmp(h.meta[0].key, "format") && !strcmp(h.meta[0].value, "pt") &&
	       !strcmp(h.meta[1].key, "lines.alpha"),
	   "writer records format=pt first and the given metadata");
	st_header_free(&h);
	free(buf);
	free(file);

	struct st_out_tensor bad[] = {{"__metadata__", DT_F32, 0, NULL, 4}};
	ok(st_build(bad, 1, NULL, 0, &buf, &len, &e) < 0 && strstr(e.msg, "__metadata__"),
	   "writer refuses a tensor named __metadata__");
	struct st_out_tensor dup[] = {{"a", DT_F32, 0, NULL, 4}, {"a", DT_F32, 0, NULL, 4}};
	ok(st_build(dup, 2, NULL, 0, &buf, &len, &e) < 0, "writer refuses duplicate names");
}

int main(void)
{
	const char *dir = tu_tmpdir();
	char good[4200];
	int nbad = 0, ngood = 0;

	/* a valid model to merge with the malformed ones */
	snprintf(good, sizeof(good), "%s/good", dir);
	if (tu_run("'%s' --arch llama --dtype bf16 --layers 2 --hidden 16 --models 1 --seed 3 --out '%s'",
	           tu_gen(), good) != 0)
		return 99;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct tcase *c = &cases[i];
		const char *json = c->json;
		char *owned = NULL;
		size_t jlen;
		struct st_header h;
		struct lines_error e;

		if (!json) { /* deep nesting: 4000 levels in a metadata value */
			size_t d = 4000, o;
			owned = malloc(2 * d + 64);
			o = (size_t)sprintf(owned, "{\"__metadata__\":{\"k\":");
			memset(owned + o, '[', d);
			memset(owned + o + d, ']', d);
			strcpy(owned + o + 2 * d, "}}");
			json = owned;
		}
		jlen = c->raw_len >= 0 ? (size_t)c->raw_len : strlen(json);
		if (strstr(c->name, "NUL padding"))
			jlen = 8;
		size_t len;
		unsigned char *b = build(c, json, jlen, &len);
		memset(&e, 0, sizeof(e));
		int rc = parse_buf(b, len, &h, &e);
		if (c->accept) {
			ngood++;
			if (!ok(rc == 0, "accepts: %s", c->name))
				diag("message: %s", e.msg);
			st_header_free(&h);
		} else {
			nbad++;
			int named = !c->tensor || !strcmp(e.tensor, c->tensor);
			if (!ok(rc == LINES_EFORMAT && strstr(e.msg, c->expect) && named &&
			                !strcmp(e.file, "case"),
			        "rejects: %s (\"%s\"%s%s)", c->name, e.msg, c->tensor ? " in " : "",
			        c->tensor ? e.tensor : ""))
				diag("rc %d, message '%s', tensor '%s', want '%s'", rc, e.msg, e.tensor,
				     c->expect);

			/* the same bytes through lines merge, as base and as model */
			char path[4300], out[4300];
			snprintf(path, sizeof(path), "%s/bad%zu.safetensors", dir, i);
			snprintf(out, sizeof(out), "%s/out%zu.safetensors", dir, i);
			tu_write_file(path, b, len);
			int r1 = tu_run("'%s' merge -q -b '%s' --lambda 0.5 -o '%s' '%s/ft1.safetensors'",
			                tu_lines(), path, out, good);
			int m1 = strstr(tu_stderr, path) != NULL;
			int r2 = tu_run("'%s' merge -q -b '%s/base.safetensors' -o '%s' '%s'", tu_lines(),
			                good, out, path);
			int m2 = strstr(tu_stderr, path) != NULL;
			int r3 = tu_run("'%s' inspect '%s'", tu_lines(), path);
			ok(r1 == 1 && r2 == 1 && r3 == 1 && m1 && m2 && !tu_exists(out) &&
			           tu_count_entries(dir, ".lines-") == 0,
			   "lines merge and inspect: exit 1, the file named, no output: %s", c->name);
		}
		free(owned);
		free(b);
	}
	ok(nbad >= 25, "%d malformed cases (at least 25)", nbad);
	ok(ngood >= 10, "%d accepted edge cases", ngood);
	test_writer();
	tu_cleanup();
	return tap_done();
}
