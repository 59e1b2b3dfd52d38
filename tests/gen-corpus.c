/*
 * gen-corpus.c -- write the corpus of malformed and edge-case safetensors
 * files that t-corpus.sh checks and `make fuzz` starts from.
 *
 *   gen-corpus [--no-big] DIR
 *
 * writes DIR/NAME.safetensors for every case and DIR/verdicts.txt with one
 * line per case: NAME<TAB>accept|reject<TAB>SUBSTRING, where SUBSTRING is a
 * fixed string that the message of `lines inspect` must contain (empty for
 * an accepted file). The verdict is the reference reader's
 * (huggingface/safetensors), except where lines-inspect(1) documents that
 * lines is stricter: duplicate keys, NUL bytes in names and metadata,
 * integers above 2^63 - 1 and ranks above 64.
 *
 * Every file is built here byte by byte, with no JSON library, so that the
 * corpus shares no parser with the reader it tests. The two headers at the
 * 100,000,000-byte limit are written on the fly (they are never committed)
 * and left out with --no-big; their verdict lines are written either way,
 * so that the test can say what it skipped.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf-write.h"

static const char *dir;
static FILE *verdicts;
static int big = 1;
static int naccept, nreject;

static void die(const char *what)
{
	fprintf(stderr, "gen-corpus: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		die("out of memory");
	return p;
}

static FILE *create(const char *name)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.safetensors", dir, name);
	if (!(f = fopen(path, "wb")))
		die(path);
	return f;
}

static void finish(FILE *f, const char *name)
{
	if (ferror(f) || fclose(f))
		die(name);
}

/* The verdict line of a case; expect NULL means accepted. */
static void verdict(const char *name, const char *expect)
{
	fprintf(verdicts, "%s.safetensors\t%s\t%s\n", name, expect ? "reject" : "accept",
	        expect ? expect : "");
	if (expect)
		nreject++;
	else
		naccept++;
}

/* Data bytes: never JSON whitespace, so that a header length that runs
 * one byte into the data cannot turn a data byte into valid JSON. */
static void put_data(FILE *f, size_t n)
{
	for (size_t i = 0; i < n; i++)
		putc((int)(0x80 | (i * 37 % 0x7f)), f);
}

static void put_le64(FILE *f, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		putc((int)(v >> (8 * i) & 0xff), f);
}

/* A file that is exactly the given bytes. */
static void emit_bytes(const char *name, const char *expect, const void *buf, size_t len)
{
	FILE *f = create(name);
	fwrite(buf, 1, len, f);
	finish(f, name);
	verdict(name, expect);
}

/* The prefix holding n, then jlen bytes of header, then data bytes. */
static void emit_st(const char *name, const char *expect, uint64_t n, const char *json, size_t jlen,
                    size_t data)
{
	FILE *f = create(name);
	put_le64(f, n);
	fwrite(json, 1, jlen, f);
	put_data(f, data);
	finish(f, name);
	verdict(name, expect);
}

/* The common case: the prefix tells the true length of the header. */
static void emit_json(const char *name, const char *expect, const char *json, size_t data)
{
	emit_st(name, expect, strlen(json), json, strlen(json), data);
}

/* ---- the table ------------------------------------------------------------- */
/* One tensor entry, written the way a careful writer would. */
#define E(dt, shape, b, e)                                                                         \
	"{\"dtype\":\"" dt "\",\"shape\":[" shape "],\"data_offsets\":[" b "," e "]}"

struct jcase {
	const char *name;
	const char *json; /* the whole header; may hold NUL bytes */
	size_t jlen;
	size_t data;        /* bytes of data after the header */
	const char *expect; /* NULL: accepted */
};

/* The cases, one a line: a reflowed table would read worse. */
/* clang-format off */
/* sizeof, not strlen: the header may hold NUL bytes */
#define J(nm, js, data, exp) {nm, js, sizeof(js) - 1, data, exp}

static const struct jcase cases[] = {
	/* ---- the JSON text ---- */
	J("json-empty-object", "{}", 0, NULL),
	J("json-empty-object-padded", "{}      ", 0, NULL),
	J("json-not-json", "hello!!!", 0, "header is not valid JSON"),
	J("json-truncated", "{\"w\":{\"dtype\":", 0, "header is not valid JSON"),
	J("json-only-spaces", "        ", 0, "header is not valid JSON"),
	J("json-single-quotes", "{'w':{}}", 0, "header is not valid JSON"),
	J("json-unquoted-key", "{w:{}}", 0, "header is not valid JSON"),
	J("json-trailing-comma", "{\"w\":" E("U8", "1", "0", "1") ",}", 1, "header is not valid JSON"),
	J("json-trailing-comma-in-shape", "{\"w\":" E("U8", "1,", "0", "1") "}", 1, "header is not valid JSON"),
	J("json-comment", "{/* c */}", 0, "header is not valid JSON"),
	J("json-nan-in-shape", "{\"w\":" E("U8", "NaN", "0", "1") "}", 1, "header is not valid JSON"),
	J("json-leading-zero", "{\"w\":" E("U8", "01", "0", "1") "}", 1, "header is not valid JSON"),
	J("json-plus-sign", "{\"w\":" E("U8", "+1", "0", "1") "}", 1, "header is not valid JSON"),
	J("json-hex-number", "{\"w\":" E("U8", "0x1", "0", "1") "}", 1, "header is not valid JSON"),
	J("json-bad-escape", "{\"\\x41\":{}}", 0, "header is not valid JSON"),
	J("json-two-objects", "{}{}", 0, "header is not valid JSON"),
	J("json-trailing-garbage", "{} x", 0, "header is not valid JSON"),
	J("json-trailing-nul", "{}\0", 0, "header is not valid JSON"),
	J("json-nul-padding", "{}\0\0\0\0\0\0", 0, "header is not valid JSON"),
	J("root-array", "[]", 0, "header is not a JSON object"),
	J("root-string", "\"abc\"", 0, "JSON"),
	J("root-number", "1", 0, "JSON"),
	J("root-null", "null", 0, "JSON"),
	J("root-true", "true", 0, "JSON"),

	/* ---- whitespace around the object: only JSON's four characters ---- */
	J("ws-leading-space", " {}", 0, NULL),
	J("ws-leading-tab", "\t{}", 0, NULL),
	J("ws-leading-cr", "\r{}", 0, NULL),
	J("ws-leading-lf", "\n{}", 0, NULL),
	J("ws-trailing-all-four", "{} \t\r\n", 0, NULL),
	J("ws-between-tokens",
	  " {\n\t\"w\" :\r\n{ \"dtype\" : \"F32\" , \"shape\" : [ 1 ] , \"data_offsets\" : [ 0 , 4 ] }\n} ",
	  4, NULL),
	J("ws-leading-formfeed", "\f{}", 0, "header is not valid JSON"),
	J("ws-trailing-formfeed", "{}\f", 0, "header is not valid JSON"),
	J("ws-trailing-vtab", "{}\v", 0, "header is not valid JSON"),
	J("ws-leading-nul", "\0{}", 0, "header is not valid JSON"),
	J("ws-trailing-nbsp", "{}\xc2\xa0", 0, "header is not valid JSON"),
	J("ws-bom", "\xef\xbb\xbf{}", 0, "header is not valid JSON"),
	J("ws-bom-after-space", " \xef\xbb\xbf{}", 0, "header is not valid JSON"),

	/* ---- UTF-8 ---- */
	J("utf8-name-ff", "{\"a\xff\":{}}", 0, "header is not valid UTF-8"),
	J("utf8-name-lone-continuation", "{\"a\x80\":{}}", 0, "header is not valid UTF-8"),
	J("utf8-name-overlong-2", "{\"\xc0\xaf\":{}}", 0, "header is not valid UTF-8"),
	J("utf8-name-overlong-3", "{\"\xe0\x80\xaf\":{}}", 0, "header is not valid UTF-8"),
	J("utf8-name-overlong-4", "{\"\xf0\x80\x80\xaf\":{}}", 0, "header is not valid UTF-8"),
	J("utf8-name-surrogate", "{\"\xed\xa0\x80\":{}}", 0, "header is not valid UTF-8"),
	J("utf8-name-above-10ffff", "{\"\xf4\x90\x80\x80\":{}}", 0, "header is not valid UTF-8"),
	J("utf8-name-truncated-sequence", "{\"\xe2\x82\":{}}", 0, "header is not valid UTF-8"),
	J("utf8-name-5-byte-lead", "{\"\xf8\x88\x80\x80\x80\":{}}", 0, "header is not valid UTF-8"),
	J("utf8-metadata-value", "{\"__metadata__\":{\"k\":\"\xe9t\xe9\"}}", 0, "header is not valid UTF-8"),
	J("utf8-after-the-object", "{}\xff", 0, "header is not valid UTF-8"),
	J("utf8-name-valid", "{\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\":" E("I8", "1", "0", "1") "}", 1, NULL),
	J("utf8-name-escaped", "{\"\\u00e9\\u20ac\":" E("I8", "1", "0", "1") "}", 1, NULL),
	J("utf8-name-escaped-pair", "{\"\\ud83d\\ude00\":" E("I8", "1", "0", "1") "}", 1, NULL),
	J("utf8-name-max-code-point", "{\"\xf4\x8f\xbf\xbf\":" E("I8", "1", "0", "1") "}", 1, NULL),
	J("escape-lone-high-surrogate", "{\"\\ud800\":{}}", 0, "header is not valid JSON"),
	J("escape-lone-low-surrogate", "{\"\\udc00\":{}}", 0, "header is not valid JSON"),
	J("escape-high-surrogate-then-letter", "{\"\\ud800\\u0041\":{}}", 0, "header is not valid JSON"),
	J("escape-reversed-pair", "{\"\\ude00\\ud83d\":{}}", 0, "header is not valid JSON"),

	/* ---- NUL bytes ---- */
	J("nul-raw-in-name", "{\"a\0b\":" E("U8", "0", "0", "0") "}", 0, "header is not valid JSON"),
	J("nul-escaped-in-name", "{\"a\\u0000b\":" E("U8", "0", "0", "0") "}", 0, "NUL byte"),
	J("nul-escaped-name-only", "{\"\\u0000\":" E("U8", "0", "0", "0") "}", 0, "NUL byte"),
	J("nul-escaped-in-metadata-key", "{\"__metadata__\":{\"a\\u0000\":\"b\"}}", 0, "NUL byte"),
	J("nul-escaped-in-metadata-value", "{\"__metadata__\":{\"k\":\"a\\u0000\"}}", 0, "__metadata__ holds a NUL byte"),
	J("nul-escaped-in-dtype", "{\"w\":" E("F32\\u0000", "1", "0", "4") "}", 4, "w: unknown dtype"),

	/* ---- names ---- */
	J("name-empty", "{\"\":" E("U8", "1", "0", "1") "}", 1, NULL),
	J("name-control-escaped", "{\"a\\u0001b\":" E("U8", "1", "0", "1") "}", 1, NULL),
	J("name-almost-metadata", "{\"__metadata_\":" E("U8", "1", "0", "1") "}", 1, NULL),
	J("name-raw-tab", "{\"a\tb\":" E("U8", "1", "0", "1") "}", 1, "header is not valid JSON"),
	J("name-del", "{\"a\x7f" "b\":" E("U8", "1", "0", "1") "}", 1, NULL),
	J("name-uppercase-metadata", "{\"__METADATA__\":{}}", 0, "__METADATA__: missing \"dtype\""),

	/* ---- duplicate keys: lines refuses them at every level ---- */
	J("dup-tensor",
	  "{\"a\":" E("U8", "1", "0", "1") ",\"a\":" E("U8", "1", "0", "1") "}", 1,
	  "duplicate object key"),
	J("dup-tensor-escaped",
	  "{\"a\":" E("U8", "1", "0", "1") ",\"\\u0061\":" E("U8", "1", "0", "1") "}", 1,
	  "duplicate object key"),
	J("dup-metadata", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate object key"),
	J("dup-metadata-key", "{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, "duplicate object key"),
	J("dup-dtype-field",
	  "{\"w\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
	  "duplicate object key"),
	J("dup-in-ignored-field",
	  "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":{\"k\":1,\"k\":2}}}", 1,
	  "duplicate object key"),

	/* ---- __metadata__ ---- */
	J("meta-null", "{\"__metadata__\":null}", 0, NULL),
	J("meta-empty", "{\"__metadata__\":{}}", 0, NULL),
	J("meta-strings", "{\"__metadata__\":{\"format\":\"pt\",\"k\":\"\\u00e9t\\u00e9\",\"\":\"\"}}", 0, NULL),
	J("meta-after-tensors", "{\"w\":" E("U8", "1", "0", "1") ",\"__metadata__\":{\"format\":\"pt\"}}", 1, NULL),
	J("meta-escaped-key", "{\"\\u005f_metadata__\":{\"format\":\"pt\"}}", 0, NULL),
	J("meta-string", "{\"__metadata__\":\"x\"}", 0, "__metadata__ is not an object of strings"),
	J("meta-array", "{\"__metadata__\":[]}", 0, "__metadata__ is not an object of strings"),
	J("meta-number", "{\"__metadata__\":0}", 0, "__metadata__ is not an object of strings"),
	J("meta-true", "{\"__metadata__\":true}", 0, "__metadata__ is not an object of strings"),
	J("meta-value-number", "{\"__metadata__\":{\"k\":1}}", 0, "__metadata__ value of \"k\" is not a string"),
	J("meta-value-true", "{\"__metadata__\":{\"k\":true}}", 0, "__metadata__ value of \"k\" is not a string"),
	J("meta-value-null", "{\"__metadata__\":{\"k\":null}}", 0, "__metadata__ value of \"k\" is not a string"),
	J("meta-value-object", "{\"__metadata__\":{\"k\":{\"a\":\"b\"}}}", 0, "__metadata__ value of \"k\" is not a string"),
	J("meta-value-array", "{\"__metadata__\":{\"k\":[\"a\"]}}", 0, "__metadata__ value of \"k\" is not a string"),
	J("meta-is-a-tensor", "{\"__metadata__\":" E("U8", "1", "0", "1") "}", 1, "__metadata__ value of \"shape\" is not a string"),

	/* ---- tensor entries ---- */
	J("entry-number", "{\"w\":1}", 0, "w: tensor entry is not an object"),
	J("entry-string", "{\"w\":\"F32\"}", 0, "w: tensor entry is not an object"),
	J("entry-null", "{\"w\":null}", 0, "w: tensor entry is not an object"),
	/* the reference's JSON library reads an entry from an array too, in
	 * field order, and so does lines */
	J("entry-array", "{\"w\":[\"U8\",[1],[0,1]]}", 1, NULL),
	J("entry-empty-object", "{\"w\":{}}", 0, "w: missing \"dtype\""),
	J("entry-missing-dtype", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "w: missing \"dtype\""),
	J("entry-missing-shape", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "w: missing \"shape\""),
	J("entry-missing-offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "w: missing \"data_offsets\""),
	J("entry-uppercase-field", "{\"w\":{\"DTYPE\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "w: missing \"dtype\""),
	J("ignored-field-minus-zero", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":-0}}", 1, NULL),
	J("ignored-field-nul-in-string", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":\"\\u0000\"}}", 1, NULL),
	/* a NUL byte in a key that is neither a name nor metadata: the
	 * reference takes it, and lines-inspect(1) does not say otherwise */
	/* lines refuses NUL in any key (jansson cannot hold one); documented */
	J("ignored-field-nul-in-key", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":{\"a\\u0000\":1}}}", 1, "NUL byte"),
	J("ignored-field-big-integer", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":123456789012345678901234567890}}", 1, "header is not valid JSON"),
	J("ignored-field-1e400", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":1e400}}", 1, "header is not valid JSON"),
	J("entry-unknown-fields", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"extra\":[1,{\"a\":null}],\"z\":\"\"}}", 1, NULL),

	/* ---- dtype ---- */
	J("dtype-number", "{\"w\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "w: \"dtype\" is not a string"),
	J("dtype-null", "{\"w\":{\"dtype\":null,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "w: \"dtype\" is not a string"),
	J("dtype-array", "{\"w\":{\"dtype\":[\"F32\"],\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "w: \"dtype\" is not a string"),
	J("dtype-empty", "{\"w\":" E("", "1", "0", "4") "}", 4, "w: unknown dtype \"\""),
	J("dtype-lowercase", "{\"w\":" E("f32", "1", "0", "4") "}", 4, "w: unknown dtype \"f32\""),
	J("dtype-lowercase-bf16", "{\"w\":" E("bf16", "1", "0", "2") "}", 2, "w: unknown dtype \"bf16\""),
	J("dtype-unknown-f128", "{\"w\":" E("F128", "1", "0", "16") "}", 16, "w: unknown dtype \"F128\""),
	J("dtype-unknown-fp32", "{\"w\":" E("FP32", "1", "0", "4") "}", 4, "w: unknown dtype \"FP32\""),
	J("dtype-torch-name", "{\"w\":" E("float32", "1", "0", "4") "}", 4, "w: unknown dtype \"float32\""),
	J("dtype-torch-f8-name", "{\"w\":" E("F8_E4M3FN", "1", "0", "1") "}", 1, "w: unknown dtype \"F8_E4M3FN\""),
	J("dtype-trailing-space", "{\"w\":" E("F32 ", "1", "0", "4") "}", 4, "w: unknown dtype \"F32 \""),
	J("dtype-escaped", "{\"w\":" E("\\u0046\\u0033\\u0032", "1", "0", "4") "}", 4, NULL),

	/* ---- F4 and F6: the bit count must be a whole number of bytes ---- */
	J("f4-one", "{\"w\":" E("F4", "1", "0", "1") "}", 1, "w: 1 elements of F4 are not a whole number of bytes"),
	J("f4-rank-0", "{\"w\":" E("F4", "", "0", "1") "}", 1, "w: 1 elements of F4 are not a whole number of bytes"),
	J("f4-three", "{\"w\":" E("F4", "3", "0", "2") "}", 2, "w: 3 elements of F4 are not a whole number of bytes"),
	J("f4-two", "{\"w\":" E("F4", "2", "0", "1") "}", 1, NULL),
	J("f4-three-by-two", "{\"w\":" E("F4", "3,2", "0", "3") "}", 3, NULL),
	J("f4-zero", "{\"w\":" E("F4", "0", "0", "0") "}", 0, NULL),
	J("f6-e2m3-one", "{\"w\":" E("F6_E2M3", "1", "0", "1") "}", 1, "w: 1 elements of F6_E2M3 are not a whole number of bytes"),
	J("f6-e2m3-two", "{\"w\":" E("F6_E2M3", "2", "0", "2") "}", 2, "w: 2 elements of F6_E2M3 are not a whole number of bytes"),
	J("f6-e2m3-rank-0", "{\"w\":" E("F6_E2M3", "", "0", "1") "}", 1, "w: 1 elements of F6_E2M3 are not a whole number of bytes"),
	J("f6-e2m3-four", "{\"w\":" E("F6_E2M3", "4", "0", "3") "}", 3, NULL),
	J("f6-e3m2-five", "{\"w\":" E("F6_E3M2", "5", "0", "4") "}", 4, "w: 5 elements of F6_E3M2 are not a whole number of bytes"),
	J("f6-e3m2-four-by-three", "{\"w\":" E("F6_E3M2", "4,3", "0", "9") "}", 9, NULL),

	/* ---- shape ---- */
	J("shape-rank-0", "{\"w\":" E("F32", "", "0", "4") "}", 4, NULL),
	J("shape-rank-0-no-bytes", "{\"w\":" E("F32", "", "0", "0") "}", 0, "w: data_offsets span 0 bytes but F32 with 1 elements needs 4"),
	J("shape-not-an-array", "{\"w\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", 4, "w: \"shape\" is not an array"),
	J("shape-negative", "{\"w\":" E("F32", "-1", "0", "4") "}", 4, "w: \"shape\" entry 0 is not a non-negative integer"),
	J("shape-float", "{\"w\":" E("F32", "1.0", "0", "4") "}", 4, "w: \"shape\" entry 0 is not a non-negative integer"),
	J("shape-exponent", "{\"w\":" E("F32", "1e0", "0", "4") "}", 4, "w: \"shape\" entry 0 is not a non-negative integer"),
	J("shape-string", "{\"w\":" E("F32", "1,\"1\"", "0", "4") "}", 4, "w: \"shape\" entry 1 is not a non-negative integer"),
	J("shape-null", "{\"w\":" E("F32", "null", "0", "4") "}", 4, "w: \"shape\" entry 0 is not a non-negative integer"),
	J("shape-true", "{\"w\":" E("F32", "true", "0", "4") "}", 4, "w: \"shape\" entry 0 is not a non-negative integer"),
	J("shape-nested", "{\"w\":" E("F32", "[1]", "0", "4") "}", 4, "w: \"shape\" entry 0 is not a non-negative integer"),
	/* -0 is a float to the reference's JSON library, not an integer */
	J("shape-minus-zero", "{\"w\":" E("U8", "-0", "0", "0") "}", 0, "w: \"shape\" entry 0 is not a non-negative integer"),
	/* products that overflow 2^64, each in its own way */
	J("shape-two-dims-of-2^32", "{\"w\":" E("U8", "4294967296,4294967296", "0", "0") "}", 0, "w: the number of elements of the shape overflows"),
	J("shape-eight-dims-of-2^8", "{\"w\":" E("U8", "256,256,256,256,256,256,256,256", "0", "0") "}", 0, "w: the number of elements of the shape overflows"),
	J("shape-seven-dims-of-2^8", "{\"w\":" E("U8", "256,256,256,256,256,256,256", "0", "72057594037927936") "}", 0, "the tensors need 72057594037927936 bytes of data but the file holds 0"),
	J("shape-elements-2^64-1-u8", "{\"w\":" E("U8", "4294967297,4294967295", "0", "0") "}", 0, "w: the size in bits overflows"),
	J("shape-f64-2^61", "{\"w\":" E("F64", "2305843009213693952", "0", "0") "}", 0, "w: the size in bits overflows"),
	J("shape-f4-2^62", "{\"w\":" E("F4", "4611686018427387904", "0", "0") "}", 0, "w: the size in bits overflows"),
	J("shape-f4-2^61", "{\"w\":" E("F4", "2305843009213693952", "0", "1152921504606846976") "}", 0, "the tensors need 1152921504606846976 bytes of data but the file holds 0"),
	J("shape-zero-then-huge", "{\"w\":" E("U8", "0,9223372036854775807,9223372036854775807", "0", "0") "}", 0, NULL),
	J("shape-huge-then-zero", "{\"w\":" E("U8", "9223372036854775807,9223372036854775807,0", "0", "0") "}", 0, "w: the number of elements of the shape overflows"),
	/* the reference accepts these two; lines refuses integers above 2^63 - 1 */
	J("shape-zero-and-2^64-1", "{\"w\":" E("U8", "0,18446744073709551615", "0", "0") "}", 0, "header is not valid JSON"),
	J("shape-zero-and-2^63", "{\"w\":" E("U8", "0,9223372036854775808", "0", "0") "}", 0, "header is not valid JSON"),

	/* ---- data_offsets ---- */
	J("offsets-one", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1, "w: \"data_offsets\" is not an array of two integers"),
	J("offsets-empty", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[]}}", 1, "w: \"data_offsets\" is not an array of two integers"),
	J("offsets-three", "{\"w\":" E("F32", "1", "0", "4,8") "}", 4, "w: \"data_offsets\" is not an array of two integers"),
	J("offsets-string", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":\"0-4\"}}", 4, "w: \"data_offsets\" is not an array of two integers"),
	J("offsets-object", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{\"0\":0,\"1\":4}}}", 4, "w: \"data_offsets\" is not an array of two integers"),
	J("offsets-negative", "{\"w\":" E("F32", "1", "-4", "0") "}", 4, "w: \"data_offsets\" entries are not non-negative integers"),
	J("offsets-minus-zero", "{\"w\":" E("U8", "0", "-0", "0") "}", 0, "w: \"data_offsets\" entries are not non-negative integers"),
	J("offsets-float", "{\"w\":" E("F32", "1", "0", "4.0") "}", 4, "w: \"data_offsets\" entries are not non-negative integers"),
	J("offsets-string-entry", "{\"w\":" E("F32", "1", "0", "\"4\"") "}", 4, "w: \"data_offsets\" entries are not non-negative integers"),
	J("offsets-null-entry", "{\"w\":" E("F32", "1", "0", "null") "}", 4, "w: \"data_offsets\" entries are not non-negative integers"),
	J("offsets-end-before-begin", "{\"w\":" E("U8", "0", "4", "0") "}", 4, "w: data_offsets [4, 0] end before they begin"),
	/* begin and end whose difference, taken modulo 2^64, matches the shape */
	J("offsets-wrap-2^64", "{\"w\":" E("U8", "4", "18446744073709551612", "0") "}", 4, "header is not valid JSON"),
	J("offsets-wrap-2^63",
	  "{\"a\":" E("U8", "4", "0", "4") ",\"b\":" E("U8", "4", "9223372036854775807", "3") "}", 8,
	  "b: data_offsets [9223372036854775807, 3] end before they begin"),
	J("offsets-end-2^63", "{\"w\":" E("U8", "9223372036854775808", "0", "9223372036854775808") "}", 0, "header is not valid JSON"),
	/* end - begin is the element count, but 8 bits each do not fit */
	J("offsets-end-2^63-1", "{\"w\":" E("U8", "9223372036854775807", "0", "9223372036854775807") "}", 0, "w: the size in bits overflows"),
	J("offsets-end-2^60", "{\"w\":" E("U8", "1152921504606846976", "0", "1152921504606846976") "}", 0, "the tensors need 1152921504606846976 bytes of data but the file holds 0"),
	/* five tensors that tile the buffer up to 2^63 - 1, each as large as
	 * a U8 tensor can be (2^61 - 1 bytes) */
	J("offsets-up-to-2^63-1",
	  "{\"a\":" E("U8", "2305843009213693951", "0", "2305843009213693951")
	  ",\"b\":" E("U8", "2305843009213693951", "2305843009213693951", "4611686018427387902")
	  ",\"c\":" E("U8", "2305843009213693951", "4611686018427387902", "6917529027641081853")
	  ",\"d\":" E("U8", "2305843009213693951", "6917529027641081853", "9223372036854775804")
	  ",\"e\":" E("U8", "3", "9223372036854775804", "9223372036854775807") "}", 0,
	  "the tensors need 9223372036854775807 bytes of data but the file holds 0"),
	J("offsets-begin-2^63-1", "{\"w\":" E("U8", "0", "9223372036854775807", "9223372036854775807") "}", 0, "w: data_offsets [9223372036854775807, 9223372036854775807] leave a gap of 9223372036854775807 bytes"),
	J("offsets-gap-first", "{\"w\":" E("F32", "1", "4", "8") "}", 8, "w: data_offsets [4, 8] leave a gap of 4 bytes"),
	J("offsets-gap-between",
	  "{\"a\":" E("F32", "1", "0", "4") ",\"b\":" E("F32", "1", "8", "12") "}", 12,
	  "b: data_offsets [8, 12] leave a gap of 4 bytes"),
	J("offsets-overlap",
	  "{\"a\":" E("F32", "2", "0", "8") ",\"b\":" E("F32", "2", "4", "12") "}", 12,
	  "b: data_offsets [4, 12] overlap the previous tensor, which ends at 8"),
	J("offsets-same-bytes",
	  "{\"a\":" E("F32", "1", "0", "4") ",\"b\":" E("F32", "1", "0", "4") "}", 4,
	  "b: data_offsets [0, 4] overlap the previous tensor, which ends at 4"),
	J("offsets-contained",
	  "{\"a\":" E("F32", "4", "0", "16") ",\"b\":" E("F32", "1", "4", "8") "}", 16,
	  "b: data_offsets [4, 8] overlap the previous tensor, which ends at 16"),
	J("size-short-of-shape", "{\"w\":" E("F32", "2", "0", "4") "}", 4, "w: data_offsets span 4 bytes but F32 with 2 elements needs 8"),
	J("size-short-of-dtype", "{\"w\":" E("BF16", "2", "0", "8") "}", 8, "w: data_offsets span 8 bytes but BF16 with 2 elements needs 4"),

	/* ---- zero-size tensors at every position ---- */
	J("zero-only", "{\"z\":" E("U8", "0", "0", "0") "}", 0, NULL),
	J("zero-first", "{\"a\":" E("F32", "1", "0", "4") ",\"z\":" E("F32", "0", "0", "0") "}", 4, NULL),
	J("zero-middle",
	  "{\"z1\":" E("F32", "0", "4", "4") ",\"a\":" E("F32", "1", "0", "4")
	  ",\"z2\":" E("BF16", "3,0", "4", "4") ",\"b\":" E("BF16", "2", "4", "8") "}", 8, NULL),
	J("zero-last", "{\"z\":" E("I64", "0,7", "4", "4") ",\"a\":" E("F32", "1", "0", "4") "}", 4, NULL),
	J("zero-three-at-once",
	  "{\"z1\":" E("U8", "0", "0", "0") ",\"z2\":" E("F64", "0", "0", "0")
	  ",\"z3\":" E("BOOL", "0,0", "0", "0") "}", 0, NULL),
	J("zero-past-the-end", "{\"a\":" E("F32", "1", "0", "4") ",\"z\":" E("F32", "0", "8", "8") "}", 4, "z: data_offsets [8, 8] leave a gap of 4 bytes"),
	J("zero-inside-another", "{\"a\":" E("F32", "2", "0", "8") ",\"z\":" E("F32", "0", "4", "4") "}", 8, "z: data_offsets [4, 4] overlap the previous tensor, which ends at 8"),
	J("zero-with-bytes", "{\"z\":" E("U8", "0", "0", "4") "}", 4, "z: data_offsets span 4 bytes but U8 with 0 elements needs 0"),

	/* ---- order: the header need not list the tensors by offset ---- */
	J("order-reversed",
	  "{\"c\":" E("U8", "1", "12", "13") ",\"b\":" E("F64", "1", "4", "12") ",\"a\":" E("F32", "1", "0", "4") "}", 13, NULL),
	J("order-interleaved",
	  "{\"b\":" E("F32", "1", "8", "12") ",\"d\":" E("I16", "2", "12", "16")
	  ",\"a\":" E("I32", "2", "0", "8") "}", 16, NULL),

	/* ---- the end of the data buffer ---- */
	J("data-exact", "{\"w\":" E("F32", "4", "0", "16") "}", 16, NULL),
	J("data-one-extra-byte", "{\"w\":" E("F32", "4", "0", "16") "}", 17, "1 byte follows the last tensor's data"),
	J("data-many-extra-bytes", "{\"w\":" E("F32", "4", "0", "16") "}", 16 + 4096, "4096 bytes follow the last tensor's data"),
	J("data-truncated-by-one", "{\"w\":" E("F32", "4", "0", "16") "}", 15, "the tensors need 16 bytes of data but the file holds 15 (truncated?)"),
	J("data-missing", "{\"w\":" E("F32", "4", "0", "16") "}", 0, "the tensors need 16 bytes of data but the file holds 0 (truncated?)"),
	J("data-after-empty-header", "{}", 1, "1 byte follows the last tensor's data"),
};
/* clang-format on */

/* ---- cases built in code -------------------------------------------------- */
/* depth levels of [ around 0, or of {"a": around {} */
static char *nest(const char *before, size_t depth, int objects, const char *after)
{
	const char *open = objects ? "{\"a\":" : "[", *close = objects ? "}" : "]";
	size_t lo = strlen(open), lb = strlen(before), la = strlen(after);
	char *s = xmalloc(lb + depth * (lo + 1) + 4 + la + 1), *p = s;

	memcpy(p, before, lb), p += lb;
	for (size_t i = 0; i < depth; i++)
		memcpy(p, open, lo), p += lo;
	if (objects)
		memcpy(p, "{}", 2), p += 2;
	else
		*p++ = '0';
	for (size_t i = 0; i < depth; i++)
		*p++ = *close;
	memcpy(p, after, la + 1);
	return s;
}

static void deep_cases(void)
{
	static const size_t depths[] = {100, 3000, 100000};
	char name[64];

	for (size_t i = 0; i < 3; i++) {
		size_t d = depths[i];
		/* jansson stops at 2048 levels; below that the value is simply
		 * of the wrong type */
		int parses = d < 2048;
		char *s;

		s = nest("{\"__metadata__\":{\"k\":", d, 0, "}}");
		snprintf(name, sizeof(name), "deep-%zu-in-metadata-value", d);
		emit_json(name,
		          parses ? "__metadata__ value of \"k\" is not a string"
		                 : "header is not valid JSON",
		          s, 0);
		free(s);

		s = nest("{\"w\":", d, 0, "}");
		snprintf(name, sizeof(name), "deep-%zu-as-tensor-entry", d);
		emit_json(name,
		          parses ? "w: tensor entry is not an object" : "header is not valid JSON",
		          s, 0);
		free(s);

		s = nest("{\"__metadata__\":", d, 1, "}");
		snprintf(name, sizeof(name), "deep-%zu-objects-as-metadata", d);
		emit_json(name,
		          parses ? "__metadata__ value of \"a\" is not a string"
		                 : "header is not valid JSON",
		          s, 0);
		free(s);
	}
	/*
	 * An ignored field nested as deep as the reference reader goes: its
	 * JSON parser (serde_json) stops at 128 levels, counting the root and
	 * the tensor entry, so 125 more are taken and 126 are not.
	 */
	for (size_t d = 125; d <= 126; d++) {
		char *s =
		    nest("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":", d,
		         0, "}}");
		snprintf(name, sizeof(name), "deep-%zu-in-ignored-field", d);
		emit_json(name, d == 125 ? NULL : "JSON", s, 1);
		free(s);
	}
}

/* Every dtype at its size, and one byte off. */
static void dtype_cases(void)
{
	static const struct {
		const char *name;
		unsigned bits;
	} dt[] = {
	    {"BOOL", 8},        {"F4", 4},      {"F6_E2M3", 6}, {"F6_E3M2", 6}, {"U8", 8},
	    {"I8", 8},          {"F8_E5M2", 8}, {"F8_E4M3", 8}, {"F8_E8M0", 8}, {"F8_E4M3FNUZ", 8},
	    {"F8_E5M2FNUZ", 8}, {"I16", 16},    {"U16", 16},    {"F16", 16},    {"BF16", 16},
	    {"I32", 32},        {"U32", 32},    {"F32", 32},    {"C64", 64},    {"F64", 64},
	    {"I64", 64},        {"U64", 64},
	};
	char json[4096], name[64], expect[160];
	size_t o, off = 0;

	for (size_t i = 0; i < sizeof(dt) / sizeof(dt[0]); i++) {
		unsigned nbytes = dt[i].bits; /* 8 elements */
		snprintf(json, sizeof(json),
		         "{\"w\":{\"dtype\":\"%s\",\"shape\":[2,4],\"data_offsets\":[0,%u]}}",
		         dt[i].name, nbytes);
		snprintf(name, sizeof(name), "dtype-%s", dt[i].name);
		emit_json(name, NULL, json, nbytes);

		snprintf(json, sizeof(json),
		         "{\"w\":{\"dtype\":\"%s\",\"shape\":[2,4],\"data_offsets\":[0,%u]}}",
		         dt[i].name, nbytes + 1);
		snprintf(name, sizeof(name), "dtype-%s-one-byte-too-many", dt[i].name);
		snprintf(expect, sizeof(expect),
		         "w: data_offsets span %u bytes but %s with 8 elements needs %u",
		         nbytes + 1, dt[i].name, nbytes);
		emit_json(name, expect, json, nbytes + 1);
	}

	/* all of them in one file, back to back */
	o = (size_t)snprintf(json, sizeof(json), "{");
	for (size_t i = 0; i < sizeof(dt) / sizeof(dt[0]); i++) {
		o += (size_t)snprintf(
		    json + o, sizeof(json) - o,
		    "%s\"t%zu\":{\"dtype\":\"%s\",\"shape\":[8],\"data_offsets\":[%zu,%zu]}",
		    i ? "," : "", i, dt[i].name, off, off + dt[i].bits);
		off += dt[i].bits;
	}
	snprintf(json + o, sizeof(json) - o, "}");
	emit_json("dtype-all-in-one-file", NULL, json, off);
}

/* Rank 64 is the most lines takes; the reference takes any rank. */
static void rank_cases(void)
{
	char json[1024], dims[512];
	size_t o;

	for (int rank = 64; rank <= 65; rank++) {
		o = 0;
		for (int i = 0; i < rank; i++)
			o += (size_t)snprintf(dims + o, sizeof(dims) - o, "%s1", i ? "," : "");
		snprintf(json, sizeof(json), "{\"w\":" E("U16", "%s", "0", "2") "}", dims);
		emit_json(rank == 64 ? "rank-64" : "rank-65",
		          rank == 64 ? NULL : "w: rank 65 is more than lines supports (64)", json,
		          2);
	}
	/* 64 dimensions of 2: the last multiplication overflows */
	o = 0;
	for (int i = 0; i < 64; i++)
		o += (size_t)snprintf(dims + o, sizeof(dims) - o, "%s2", i ? "," : "");
	snprintf(json, sizeof(json), "{\"w\":" E("U8", "%s", "0", "0") "}", dims);
	emit_json("rank-64-dims-of-2", "w: the number of elements of the shape overflows", json, 0);
	/* 58 dimensions of 2 in F64: 2^58 elements fit, their 2^64 bits do not */
	o = 0;
	for (int i = 0; i < 58; i++)
		o += (size_t)snprintf(dims + o, sizeof(dims) - o, "%s2", i ? "," : "");
	snprintf(json, sizeof(json), "{\"w\":" E("F64", "%s", "0", "0") "}", dims);
	emit_json("rank-58-dims-of-2-f64", "w: the size in bits overflows", json, 0);
}

/* The 8-byte prefix and the file size. */
static void prefix_cases(void)
{
	static const char w[] = "{\"w\":" E("F32", "1", "0", "4") "}";
	static const char padded[] = "{\"w\":" E("F32", "1", "0", "4") "}   ";
	unsigned char b[8] = {0};
	char expect[160];

	emit_bytes("prefix-empty-file", "file is too small to be safetensors (0 bytes)", b, 0);
	emit_bytes("prefix-seven-bytes", "file is too small to be safetensors (7 bytes)",
	           "\x02\0\0\0\0\0\0", 7);
	emit_bytes("prefix-zero-length-only", "header is not valid JSON", b, 8);
	emit_st("prefix-zero-length-then-object", "header is not valid JSON", 0, "{}", 2, 0);

	emit_st("len-2^64-1", "header length 18446744073709551615 exceeds the limit", UINT64_MAX,
	        "{}", 2, 0);
	emit_st("len-2^64-8", "header length 18446744073709551608 exceeds the limit",
	        UINT64_MAX - 7, "{}", 2, 0);
	emit_st("len-2^63", "header length 9223372036854775808 exceeds the limit",
	        (uint64_t)1 << 63, "{}", 2, 0);
	emit_st("len-big-endian-2", "header length 144115188075855872 exceeds the limit",
	        (uint64_t)2 << 56, "{}", 2, 0);
	emit_st("len-limit-plus-one-small-file", "header length 100000001 exceeds the limit",
	        100000001, "{}", 2, 0);
	snprintf(expect, sizeof(expect),
	         "header length 100000000 runs past the end of the file (%zu bytes)",
	         8 + 2 + (size_t)4);
	emit_st("len-limit-small-file", expect, 100000000, "{}", 2, 4);

	/* around the true length */
	emit_st("len-one-past-the-end", "runs past the end of the file", sizeof(w), w,
	        sizeof(w) - 1, 0);
	emit_st("len-one-into-the-data", "header is not valid UTF-8", sizeof(w), w, sizeof(w) - 1,
	        4);
	emit_st("len-one-short", "header is not valid JSON", sizeof(w) - 2, w, sizeof(w) - 1, 4);
	/* the last padding space counted as data instead */
	emit_st("len-one-short-of-padding", "1 byte follows the last tensor's data",
	        sizeof(padded) - 2, padded, sizeof(padded) - 1, 4);
	emit_st("len-covers-the-data", "header is not valid UTF-8", sizeof(w) - 1 + 4, w,
	        sizeof(w) - 1, 4);
}

/* The 100,000,000-byte limit, met exactly and passed by one. */
static void big_case(const char *name, uint64_t n, const char *expect)
{
	static const char obj[] = "{\"w\":" E("U8", "1", "0", "1") "}";
	static char spaces[1 << 16];
	FILE *f;

	if (!big) {
		verdict(name, expect);
		return;
	}
	memset(spaces, ' ', sizeof(spaces));
	f = create(name);
	put_le64(f, n);
	fwrite(obj, 1, sizeof(obj) - 1, f);
	for (uint64_t left = n - (sizeof(obj) - 1); left;) {
		size_t k = left < sizeof(spaces) ? (size_t)left : sizeof(spaces);
		fwrite(spaces, 1, k, f);
		left -= k;
	}
	put_data(f, 1);
	finish(f, name);
	verdict(name, expect);
}


/* ---- GGUF ------------------------------------------------------------------------------ */
/*
 * GGUF files, built with tests/gguf-write.h: a good llama-like file and
 * ways it can lie. The verdicts are gguf.md's and llama.cpp's (gguf.cpp),
 * where lines-inspect(1) says lines follows the stricter of the two.
 */
static void emit_gguf(const char *name, const char *expect, struct gb *b)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s.gguf", dir, name);
	if (gb_write(b, path) < 0)
		die(path);
	fprintf(verdicts, "%s.gguf\t%s\t%s\n", name, expect ? "reject" : "accept", expect ? expect : "");
	if (expect)
		nreject++;
	else
		naccept++;
	gb_free(b);
}

/* The usual keys of a llama file with block_count L. */
static void g_llama_keys(struct gb *b, uint32_t L)
{
	gb_kv_str(b, "general.architecture", "llama");
	gb_kv_str(b, "general.name", "corpus");
	gb_kv_u32(b, "llama.block_count", L);
	gb_kv_f32(b, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
}

/* A good file: keys, then a tensor per block and one outside. */
static void g_good(struct gb *b)
{
	static const uint64_t ne[2] = {32, 2};
	gb_init(b);
	g_llama_keys(b, 2);
	gb_tensor(b, "token_embd.weight", 2, ne, GT_F32, NULL);
	gb_tensor(b, "blk.0.attn_q.weight", 2, ne, GT_Q8_0, NULL);
	gb_tensor(b, "blk.1.attn_q.weight", 2, ne, GT_F16, NULL);
}

/* One tensor info of the caller's making after the usual keys. */
static void g_one(struct gb *b, const char *name, unsigned nd, const uint64_t *ne, unsigned type)
{
	gb_init(b);
	g_llama_keys(b, 2);
	gb_tensor(b, name, nd, ne, type, NULL);
}

static void gguf_cases(void)
{
	struct gb b;
	static const uint64_t ne32x2[2] = {32, 2}, ne256[1] = {256};
	char name[128];

	/* ---- accepted ---- */
	g_good(&b);
	emit_gguf("g-ok-v3", NULL, &b);
	g_good(&b);
	b.version = 2;
	emit_gguf("g-ok-v2", NULL, &b);
	gb_init(&b);
	emit_gguf("g-ok-empty", NULL, &b);
	gb_init(&b);
	g_llama_keys(&b, 4);
	emit_gguf("g-ok-keys-only", NULL, &b);
	g_good(&b);
	b.no_end_pad = 1;
	emit_gguf("g-ok-last-padding-left-out", NULL, &b);
	gb_init(&b);
	b.align = 64;
	gb_kv_u32(&b, "general.alignment", 64);
	gb_tensor(&b, "a", 2, ne32x2, GT_F32, NULL);
	gb_tensor(&b, "b", 1, ne256, GT_Q4_K, NULL);
	emit_gguf("g-ok-alignment-64", NULL, &b);
	gb_init(&b);
	{
		static const unsigned types[] = {GT_F32, GT_F16, GT_BF16, GT_Q4_0, GT_Q4_1, GT_Q5_0,
		                                 GT_Q5_1, GT_Q8_0, GT_Q2_K, GT_Q3_K, GT_Q4_K, GT_Q5_K,
		                                 GT_Q6_K, GT_Q8_K};
		for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
			snprintf(name, sizeof(name), "t%zu", i);
			gb_tensor(&b, name, 1, ne256, types[i], NULL);
		}
	}
	emit_gguf("g-ok-every-type", NULL, &b);
	gb_init(&b);
	{ /* every value type, arrays of strings, nested arrays */
		gb_key(&b, "k.u8", GV_U8), gw_u8(&b.kv, 255);
		gb_key(&b, "k.i8", GV_I8), gw_u8(&b.kv, 0x80);
		gb_key(&b, "k.u16", GV_U16), gw_u16(&b.kv, 65535);
		gb_key(&b, "k.i16", GV_I16), gw_u16(&b.kv, 0x8000);
		gb_key(&b, "k.u32", GV_U32), gw_u32(&b.kv, 4294967295u);
		gb_key(&b, "k.i32", GV_I32), gw_u32(&b.kv, 0x80000000u);
		gb_key(&b, "k.f32", GV_F32), gw_f32(&b.kv, 0.1f);
		gb_key(&b, "k.bool", GV_BOOL), gw_u8(&b.kv, 1);
		gb_key(&b, "k.u64", GV_U64), gw_u64(&b.kv, UINT64_MAX);
		gb_key(&b, "k.i64", GV_I64), gw_u64(&b.kv, (uint64_t)1 << 63);
		gb_key(&b, "k.f64", GV_F64), gw_u64(&b.kv, 0x3fb999999999999aull);
		gb_kv_str(&b, "k.str", "h\xc3\xa9llo \"q\"");
		gb_key(&b, "k.strs", GV_ARRAY), gw_u32(&b.kv, GV_STRING), gw_u64(&b.kv, 3);
		gw_str(&b.kv, "a"), gw_str(&b.kv, ""), gw_str(&b.kv, "\n");
		gb_key(&b, "k.nested", GV_ARRAY), gw_u32(&b.kv, GV_ARRAY), gw_u64(&b.kv, 2);
		for (int i = 0; i < 2; i++) {
			gw_u32(&b.kv, GV_I32), gw_u64(&b.kv, 2);
			gw_u32(&b.kv, (uint32_t)i), gw_u32(&b.kv, (uint32_t)-i);
		}
		gb_key(&b, "k.long", GV_ARRAY), gw_u32(&b.kv, GV_F32), gw_u64(&b.kv, 100);
		for (int i = 0; i < 100; i++)
			gw_f32(&b.kv, (float)i);
		gb_key(&b, "k.empty", GV_ARRAY), gw_u32(&b.kv, GV_U8), gw_u64(&b.kv, 0);
	}
	gb_tensor(&b, "x", 2, ne32x2, GT_F32, NULL);
	emit_gguf("g-ok-every-value-type", NULL, &b);
	{
		static const uint64_t ne0[2] = {0, 4};
		g_one(&b, "blk.0.empty", 2, ne0, GT_Q8_0);
		emit_gguf("g-ok-zero-elements", NULL, &b);
	}

	/* ---- the header ---- */
	{
		static const unsigned char m[] = "GGUF";
		FILE *f;
		char path[4096];
		snprintf(path, sizeof(path), "%s/g-magic-only.gguf", dir);
		if (!(f = fopen(path, "wb")) || fwrite(m, 1, 4, f) != 4 || fclose(f))
			die(path);
		fprintf(verdicts, "g-magic-only.gguf\treject\tends inside the header\n");
		nreject++;
	}
	g_good(&b), b.version = 1;
	emit_gguf("g-version-1", "GGUF version 1 is not supported", &b);
	g_good(&b), b.version = 4;
	emit_gguf("g-version-4", "GGUF version 4 is not supported", &b);
	g_good(&b), b.version = 0;
	emit_gguf("g-version-0", "GGUF version 0 is not supported", &b);
	g_good(&b), b.version = 0x03000000;
	emit_gguf("g-big-endian", "big-endian GGUF files are not supported", &b);
	g_good(&b), b.cut = 6;
	emit_gguf("g-cut-in-version", "ends inside the header", &b);
	g_good(&b), b.cut = 16;
	emit_gguf("g-cut-in-counts", "ends inside the header", &b);
	g_good(&b), b.nt_claim = (int64_t)1 << 40;
	emit_gguf("g-tensor-count-2^40", "claims 1099511627776 tensors", &b);
	g_good(&b), b.nkv_claim = INT64_MAX;
	emit_gguf("g-key-count-2^63-1", "metadata keys", &b);
	g_good(&b), b.nt_claim = 5;
	emit_gguf("g-tensor-count-lies", "tensor info 3: ", &b);
	g_good(&b), b.nkv_claim = 40;
	emit_gguf("g-key-count-lies", "metadata key ", &b);
	g_good(&b), b.cut = 24 + 10;
	emit_gguf("g-cut-in-first-key", "ends inside the header", &b);

	/* ---- keys and values ---- */
	g_good(&b), gb_kv_str(&b, "", "x");
	emit_gguf("g-key-empty", "the key is empty", &b);
	g_good(&b), gw_u64(&b.kv, 65536), b.nkv++;
	emit_gguf("g-key-65536-bytes", "65536 bytes long (at most 65535)", &b);
	g_good(&b), gw_u64(&b.kv, UINT64_MAX), b.nkv++;
	emit_gguf("g-key-len-2^64-1", "bytes long (at most 65535)", &b);
	g_good(&b), gb_kv_u32(&b, "general.x\ny", 1);
	emit_gguf("g-key-newline", "printable ASCII", &b);
	g_good(&b), gb_kv_u32(&b, "general.\xc3\xa9", 1);
	emit_gguf("g-key-non-ascii", "printable ASCII", &b);
	g_good(&b), gb_kv_str(&b, "general.name", "again");
	emit_gguf("g-key-twice", "'general.name': appears twice", &b);
	g_good(&b), gb_key(&b, "k", 13), gw_u32(&b.kv, 0);
	emit_gguf("g-value-type-13", "unknown value type 13", &b);
	g_good(&b), gb_key(&b, "k", 0xffffffffu), gw_u32(&b.kv, 0);
	emit_gguf("g-value-type-2^32-1", "unknown value type 4294967295", &b);
	g_good(&b), gb_key(&b, "k", GV_BOOL), gw_u8(&b.kv, 2);
	emit_gguf("g-bool-2", "bool value 2 is not 0 or 1", &b);
	g_good(&b), gb_key(&b, "k", GV_ARRAY), gw_u32(&b.kv, GV_BOOL), gw_u64(&b.kv, 20);
	for (int i = 0; i < 20; i++)
		gw_u8(&b.kv, i == 17 ? 255 : 1);
	emit_gguf("g-bool-array-255", "bool element 17 is 255", &b);
	g_good(&b), gb_key(&b, "k", GV_STRING), gw_u64(&b.kv, 1000000);
	emit_gguf("g-string-past-the-end", "runs past the end of the file", &b);
	g_good(&b), gb_key(&b, "k", GV_STRING), gw_u64(&b.kv, UINT64_MAX);
	emit_gguf("g-string-len-2^64-1", "runs past the end of the file", &b);
	g_good(&b), gb_key(&b, "k", GV_ARRAY), gw_u32(&b.kv, GV_U64), gw_u64(&b.kv, (uint64_t)1 << 61);
	emit_gguf("g-array-2^61-u64", "cannot fit in the rest of the file", &b);
	g_good(&b), gb_key(&b, "k", GV_ARRAY), gw_u32(&b.kv, GV_STRING), gw_u64(&b.kv, UINT64_MAX);
	emit_gguf("g-array-2^64-1-strings", "cannot fit in the rest of the file", &b);
	g_good(&b), gb_key(&b, "k", GV_ARRAY), gw_u32(&b.kv, 77), gw_u64(&b.kv, 1);
	emit_gguf("g-array-of-type-77", "array of unknown value type 77", &b);
	g_good(&b), gb_key(&b, "k", GV_ARRAY);
	for (int i = 0; i < 9; i++)
		gw_u32(&b.kv, GV_ARRAY), gw_u64(&b.kv, 1);
	gw_u32(&b.kv, GV_U8), gw_u64(&b.kv, 0);
	emit_gguf("g-arrays-nested-10-deep", "arrays nested deeper than 8", &b);
	g_good(&b), gb_key(&b, "k", GV_ARRAY), gw_u32(&b.kv, GV_STRING), gw_u64(&b.kv, 3);
	gw_str(&b.kv, "a"), gw_u64(&b.kv, 100);
	emit_gguf("g-array-string-runs-on", "'k'", &b);
	g_good(&b), gb_key(&b, "k", GV_ARRAY), gw_u32(&b.kv, GV_STRING), gw_u64(&b.kv, 2);
	gw_str(&b.kv, "a");
	b.cut = -1, b.nt = 0, b.ti.n = 0, b.data.n = 0;
	emit_gguf("g-array-strings-cut", "an array of 2 string elements cannot fit", &b);
	gb_init(&b), gb_key(&b, "k", GV_U64), gw_u32(&b.kv, 1);
	emit_gguf("g-value-cut", "ends inside the header", &b);
	gb_init(&b), gb_key(&b, "general.alignment", GV_U64), gw_u64(&b.kv, 32);
	emit_gguf("g-alignment-u64", "is a u64, not a u32", &b);
	gb_init(&b), gb_kv_str(&b, "general.alignment", "32");
	emit_gguf("g-alignment-string", "is a string, not a u32", &b);
	gb_init(&b), gb_kv_u32(&b, "general.alignment", 0);
	emit_gguf("g-alignment-0", "0 is not a power of two", &b);
	gb_init(&b), gb_kv_u32(&b, "general.alignment", 48);
	emit_gguf("g-alignment-48", "48 is not a power of two", &b);
	gb_init(&b), gb_kv_u32(&b, "general.alignment", 4);
	emit_gguf("g-alignment-4", "4 is not a multiple of 8", &b);
	gb_init(&b), gb_kv_u32(&b, "general.architecture", 1);
	emit_gguf("g-architecture-u32", "'general.architecture': is a u32, not a string", &b);
	gb_init(&b), gb_kv_str(&b, "general.architecture", "");
	emit_gguf("g-architecture-empty", "is empty or holds a NUL byte", &b);
	gb_init(&b), gb_kv_str(&b, "general.architecture", "llama");
	gb_kv_str(&b, "llama.block_count", "2");
	emit_gguf("g-block-count-string", "'llama.block_count': is 2 (a string), not a non-negative integer", &b);
	gb_init(&b), gb_kv_str(&b, "general.architecture", "llama");
	gb_key(&b, "llama.block_count", GV_I32), gw_u32(&b.kv, (uint32_t)-3);
	emit_gguf("g-block-count-negative", "is -3 (a i32), not a non-negative integer", &b);
	g_good(&b), gb_tensor(&b, "blk.2.ffn_up.weight", 2, ne32x2, GT_F32, NULL);
	emit_gguf("g-block-beyond-block-count", "is in block 2, and the file has 2", &b);

	/* ---- tensor infos ---- */
	g_good(&b), gb_tensor(&b, "", 2, ne32x2, GT_F32, NULL);
	emit_gguf("g-name-empty", "the tensor name is empty", &b);
	g_good(&b);
	gb_tensor(&b, "blk.1.a.very.long.name.that.is.sixty.four.bytes.long.xxxxxxxxxxx", 2, ne32x2,
	          GT_F32, NULL);
	emit_gguf("g-name-64-bytes", "64 bytes long (ggml allows at most 63)", &b);
	g_good(&b), gb_tensor(&b, "bad\xff", 2, ne32x2, GT_F32, NULL);
	emit_gguf("g-name-not-utf8", "byte 0xff at 3", &b);
	g_good(&b), gb_tensor(&b, "bad\xed\xa0\x80", 2, ne32x2, GT_F32, NULL);
	emit_gguf("g-name-surrogate", "byte 0xed at 3", &b);
	g_good(&b), gb_tensor(&b, "bad\tname", 2, ne32x2, GT_F32, NULL);
	emit_gguf("g-name-tab", "control character", &b);
	g_good(&b), gw_strn(&b.ti, "a\0b", 3), gw_u32(&b.ti, 1), gw_u64(&b.ti, 32),
	        gw_u32(&b.ti, GT_F32), gw_u64(&b.ti, 0), b.nt++;
	emit_gguf("g-name-nul", "byte 0x00 at 1", &b);
	g_good(&b), gb_tensor(&b, "blk.0.attn_q.weight", 2, ne32x2, GT_F32, NULL);
	emit_gguf("g-name-twice", "tensor name appears twice", &b);
	{
		static const uint64_t ne5[5] = {32, 1, 1, 1, 1};
		g_good(&b), gb_ti_at(&b, "five", 5, ne5, GT_F32, 0);
		emit_gguf("g-five-dims", "has 5 dimensions (GGUF allows at most 4)", &b);
		static const uint64_t neg[2] = {32, (uint64_t)-2};
		g_good(&b), gb_ti_at(&b, "neg", 2, neg, GT_F32, 0);
		emit_gguf("g-dim-negative", "dimension 1 is negative (-2)", &b);
		static const uint64_t big2[2] = {(uint64_t)1 << 32, (uint64_t)1 << 32};
		g_good(&b), gb_ti_at(&b, "big", 2, big2, GT_F32, 0);
		emit_gguf("g-elements-2^64", "more than 2^63 - 1 elements", &b);
		static const uint64_t big3[3] = {(uint64_t)1 << 31, (uint64_t)1 << 31, 2};
		g_good(&b), gb_ti_at(&b, "big", 3, big3, GT_F32, 0);
		emit_gguf("g-elements-2^63", "more than 2^63 - 1 elements", &b);
		static const uint64_t bytes2[2] = {(uint64_t)1 << 31, (uint64_t)1 << 31};
		g_good(&b), gb_ti_at(&b, "big", 2, bytes2, GT_F32, 0);
		emit_gguf("g-bytes-2^64", "its size in bytes overflows", &b);
	}
	{
		static const struct {
			const char *name, *expect;
			unsigned type;
		} bad[] = {
			{"g-type-99", "has type 99, which is no ggml type", 99},
			{"g-type-2^32-1", "has type 4294967295, which is no ggml type", 0xffffffffu},
			{"g-type-q4-2", "has type Q4_2, which lines does not read", 4},
			{"g-type-q8-1", "has type Q8_1, which lines does not read", GT_Q8_1},
			{"g-type-iq2-xxs", "has type IQ2_XXS, which lines does not read", GT_IQ2_XXS},
			{"g-type-iq4-nl", "has type IQ4_NL, which lines does not read", 20},
			{"g-type-iq1-m", "has type IQ1_M, which lines does not read", 29},
			{"g-type-tq2-0", "has type TQ2_0, which lines does not read", 35},
			{"g-type-mxfp4", "has type MXFP4, which lines does not read", GT_MXFP4},
		};
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			g_good(&b), gb_ti_at(&b, "blk.1.w", 2, ne32x2, bad[i].type, 0);
			emit_gguf(bad[i].name, bad[i].expect, &b);
		}
	}
	{
		static const uint64_t ne33[2] = {33, 2}, ne128[1] = {128}, ne2x32[2] = {2, 32};
		g_good(&b), gb_ti_at(&b, "q", 2, ne33, GT_Q8_0, 0);
		emit_gguf("g-q8-0-row-33", "rows of 33 elements are not a whole number of Q8_0 blocks of 32", &b);
		g_good(&b), gb_ti_at(&b, "q", 1, ne128, GT_Q4_K, 0);
		emit_gguf("g-q4-k-row-128", "rows of 128 elements are not a whole number of Q4_K blocks of 256", &b);
		g_good(&b), gb_ti_at(&b, "q", 2, ne2x32, GT_Q4_0, 0);
		emit_gguf("g-q4-0-row-2-of-64", "rows of 2 elements", &b);
		g_good(&b), gb_ti_at(&b, "q", 0, ne128, GT_Q8_0, 0);
		emit_gguf("g-q8-0-scalar", "rows of 1 elements", &b);
	}
	g_good(&b), b.cut = (int64_t)(24 + b.kv.n + 10);
	emit_gguf("g-cut-in-tensor-name", "ends inside the header", &b);
	g_good(&b), b.cut = (int64_t)(24 + b.kv.n + 8 + 17 + 4 + 3);
	emit_gguf("g-cut-in-dims", "ends inside the header", &b);
	g_good(&b), b.cut = (int64_t)(24 + b.kv.n + b.ti.n - 3);
	emit_gguf("g-cut-in-offset", "ends inside the header", &b);

	/* ---- the data ---- */
	g_good(&b), gb_ti_at(&b, "late", 1, ne256, GT_F32, 1024);
	emit_gguf("g-offset-gap", "leaving", &b);
	g_good(&b), gb_ti_at(&b, "x", 1, ne256, GT_F32, 8);
	emit_gguf("g-offset-unaligned", "its offset 8 is not a multiple of the alignment 32", &b);
	g_good(&b), gb_ti_at(&b, "x", 1, ne256, GT_F32, 0);
	emit_gguf("g-offset-overlap", "overlaps the data of 'blk.1.attn_q.weight'", &b);
	g_good(&b), gb_ti_at(&b, "x", 1, ne256, GT_F32, UINT64_MAX - 31);
	emit_gguf("g-offset-2^64-32", "leaving", &b);
	{
		static const uint64_t ne_big[1] = {(uint64_t)1 << 40};
		uint64_t off;
		g_good(&b);
		off = (b.data.n + 31) / 32 * 32;
		gb_ti_at(&b, "x", 1, ne_big, GT_F32, off);
		emit_gguf("g-data-past-the-end", "runs past the end of the file", &b);
		g_good(&b);
		off = (b.data.n + 31) / 32 * 32;
		gb_ti_at(&b, "x", 1, ne256, GT_F32, off);
		b.no_end_pad = 1;
		for (int i = 0; i < 1023; i++)
			gw_u8(&b.data, 0);
		while (b.data.n < off)
			gw_u8(&b.data, 0);
		emit_gguf("g-data-short-by-one", "runs past the end of the file", &b);
		g_good(&b);
		gb_ti_at(&b, "y", 1, ne256, GT_F32, (b.data.n + 31) / 32 * 32);
		b.data.n = 0;
		emit_gguf("g-no-data", "runs past the end of the file", &b);
	}
	g_good(&b), b.trailing = 32;
	emit_gguf("g-trailing-32", "32 bytes follow the last tensor's data and its padding", &b);
	g_good(&b), b.trailing = 1;
	emit_gguf("g-trailing-1", "1 bytes follow the last tensor's data", &b);
	gb_init(&b), g_llama_keys(&b, 1), b.trailing = 5;
	emit_gguf("g-no-tensors-trailing", "5 bytes follow", &b);
	{
		struct gw w;
		char path[4096];
		FILE *f;
		g_good(&b);
		gb_bytes(&b, &w);
		size_t hdr = 24 + b.kv.n + b.ti.n;
		/* the infos end the file, short of the aligned data section */
		snprintf(path, sizeof(path), "%s/g-ends-before-data.gguf", dir);
		if (hdr % 32 == 0)
			hdr--;
		if (!(f = fopen(path, "wb")) || fwrite(w.p, 1, hdr, f) != hdr || fclose(f))
			die(path);
		fprintf(verdicts, "g-ends-before-data.gguf\treject\t%s\n",
		        (24 + b.kv.n + b.ti.n) % 32 ? "before the data section" : "ends inside the header");
		nreject++;
		free(w.p);
		gb_free(&b);
	}
}

/* A file of a split set (llama.cpp's gguf-split): split.no, split.count
 * (u16) and split.tensors.count (i32) as gguf-split writes them; the
 * first file gets the llama keys too. */
static void g_split(struct gb *b, unsigned no, unsigned count, unsigned tensors)
{
	gb_init(b);
	gb_key(b, "split.no", GV_U16), gw_le(&b->kv, no, 2);
	gb_key(b, "split.count", GV_U16), gw_le(&b->kv, count, 2);
	gb_key(b, "split.tensors.count", GV_I32), gw_le(&b->kv, tensors, 4);
	if (no == 0)
		g_llama_keys(b, 2);
}

/* A file of a set that is not itself a case (the other files of one). */
static void g_part(const char *name, struct gb *b)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s.gguf", dir, name);
	if (gb_write(b, path) < 0)
		die(path);
	gb_free(b);
}

/*
 * Split sets: a case is the file given to lines, and the errors it can
 * see from that file's name and keys, or that name it (a file missing
 * from its set, a tensor it holds that an earlier file holds, a count
 * the set does not have). Errors in another file of the set name that
 * file: tests/t-gguf-split.sh.
 */
static void gguf_split_cases(void)
{
	struct gb b;
	static const uint64_t ne[2] = {32, 2};

	/* a good set of two, given by either file */
	g_split(&b, 0, 2, 3);
	gb_tensor(&b, "token_embd.weight", 2, ne, GT_F32, NULL);
	gb_tensor(&b, "blk.0.attn_q.weight", 2, ne, GT_Q8_0, NULL);
	emit_gguf("g-ok-split-00001-of-00002", NULL, &b);
	g_split(&b, 1, 2, 3);
	gb_tensor(&b, "blk.1.attn_q.weight", 2, ne, GT_F16, NULL);
	emit_gguf("g-ok-split-00002-of-00002", NULL, &b);
	/* a set of one is a file */
	g_split(&b, 0, 1, 1);
	gb_tensor(&b, "token_embd.weight", 2, ne, GT_F32, NULL);
	emit_gguf("g-ok-split-count-1", NULL, &b);

	g_split(&b, 0, 2, 1);
	gb_tensor(&b, "token_embd.weight", 2, ne, GT_F32, NULL);
	emit_gguf("g-split-not-named-so", "but is not named NAME-00001-of-00002.gguf", &b);
	g_split(&b, 0, 3, 1);
	gb_tensor(&b, "token_embd.weight", 2, ne, GT_F32, NULL);
	emit_gguf("g-split-name-says-2-00001-of-00002", "split.no and split.count say file 1 of 3",
	          &b);
	g_split(&b, 2, 2, 1);
	emit_gguf("g-split-no-2-of-2-00003-of-00002", "'split.no' is 2, not below split.count 2",
	          &b);
	g_split(&b, 0, 0, 1);
	emit_gguf("g-split-count-0-00001-of-00000", "'split.count' is 0, not 1 to 99999", &b);
	gb_init(&b);
	gb_key(&b, "split.count", GV_U16), gw_le(&b.kv, 2, 2);
	gb_key(&b, "split.tensors.count", GV_I32), gw_le(&b.kv, 1, 4);
	emit_gguf("g-split-no-split-no-00001-of-00002", "but no 'split.no'", &b);
	gb_init(&b);
	gb_kv_str(&b, "split.no", "0");
	gb_key(&b, "split.count", GV_U16), gw_le(&b.kv, 2, 2);
	gb_key(&b, "split.tensors.count", GV_I32), gw_le(&b.kv, 1, 4);
	emit_gguf("g-split-no-string-00001-of-00002", "'split.no' is 0 (a string), not a", &b);
	gb_init(&b);
	gb_key(&b, "split.no", GV_U16), gw_le(&b.kv, 0, 2);
	gb_key(&b, "split.count", GV_U16), gw_le(&b.kv, 2, 2);
	gb_key(&b, "split.tensors.count", GV_I32), gw_le(&b.kv, 0xffffffffu, 4);
	emit_gguf("g-split-tensors-count-minus-1-00001-of-00002", "'split.tensors.count' is -1",
	          &b);
	/* file 2 of 2 is not there */
	g_split(&b, 0, 2, 2);
	gb_tensor(&b, "token_embd.weight", 2, ne, GT_F32, NULL);
	emit_gguf("g-split-missing-00001-of-00002", "split file 2 of 2 (", &b);
	/* the second file holds a tensor the first holds */
	g_split(&b, 0, 2, 2);
	gb_tensor(&b, "token_embd.weight", 2, ne, GT_F32, NULL);
	g_part("g-split-dup-00001-of-00002", &b);
	g_split(&b, 1, 2, 2);
	gb_tensor(&b, "token_embd.weight", 2, ne, GT_F32, NULL);
	emit_gguf("g-split-dup-00002-of-00002", "token_embd.weight: tensor appears twice", &b);
	/* the set holds 3 tensors, its files say 4 */
	g_split(&b, 0, 2, 4);
	gb_tensor(&b, "token_embd.weight", 2, ne, GT_F32, NULL);
	gb_tensor(&b, "blk.0.attn_q.weight", 2, ne, GT_Q8_0, NULL);
	emit_gguf("g-split-tensors-count-4-00001-of-00002",
	          "split.tensors.count is 4, but the 2 split files hold 3 tensors", &b);
	g_split(&b, 1, 2, 4);
	gb_tensor(&b, "blk.1.attn_q.weight", 2, ne, GT_F16, NULL);
	g_part("g-split-tensors-count-4-00002-of-00002", &b);
}

int main(int argc, char **argv)
{
	char path[4096];
	int i = 1;

	if (argc > 1 && !strcmp(argv[1], "--no-big"))
		big = 0, i++;
	if (argc != i + 1) {
		fprintf(stderr, "usage: gen-corpus [--no-big] DIR\n");
		return 2;
	}
	dir = argv[i];
	if (mkdir(dir, 0777) < 0 && errno != EEXIST)
		die(dir);
	snprintf(path, sizeof(path), "%s/verdicts.txt", dir);
	if (!(verdicts = fopen(path, "w")))
		die(path);

	prefix_cases();
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		const struct jcase *c = &cases[k];
		emit_st(c->name, c->expect, c->jlen, c->json, c->jlen, c->data);
	}
	dtype_cases();
	rank_cases();
	deep_cases();
	gguf_cases();
	gguf_split_cases();
	big_case("big-header-100000000", 100000000, NULL);
	big_case("big-header-100000001", 100000001, "header length 100000001 exceeds the limit");

	if (ferror(verdicts) || fclose(verdicts))
		die(path);
	printf("gen-corpus: %d cases (%d accepted, %d rejected)%s\n", naccept + nreject, naccept,
	       nreject, big ? "" : ", the two 100 MB headers left out");
	return 0;
}
