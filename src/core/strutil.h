/*
 * strutil.h -- string helpers shared by the library and the command line
 * (which sees only lines.h and this): a suffix test, where a string cut
 * at a byte count may end without splitting a UTF-8 character, a path
 * joined from a directory and a name, and a --dtype's name in torch.
 */
#ifndef LINES_STRUTIL_H
#define LINES_STRUTIL_H

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* 1 when s ends with suffix. */
static inline int str_ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && !strcmp(s + a - b, suffix);
}

/* The length, at most n, of the longest prefix of s[0..n) that does not
 * end inside a UTF-8 character: an incomplete last character (its lead
 * byte and fewer continuation bytes than it announces) is left out. */
static inline size_t utf8_whole_prefix(const char *s, size_t n)
{
	size_t k = n;
	while (k > 0 && ((unsigned char)s[k - 1] & 0xc0) == 0x80)
		k--; /* continuation bytes */
	if (k > 0 && (unsigned char)s[k - 1] >= 0xc0) {
		unsigned char lead = (unsigned char)s[k - 1];
		size_t len = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
		if (n - (k - 1) < len)
			return k - 1;
	}
	return n;
}

/* dir/name in a new string (malloc; NULL when out of memory), with one
 * slash between them when dir ends in one already (as "out/" given). */
static inline char *str_join_path(const char *dir, const char *name)
{
	size_t a = strlen(dir), b = strlen(name), slash = !(a && dir[a - 1] == '/');
	char *s = malloc(a + slash + b + 1);
	if (s) {
		memcpy(s, dir, a);
		if (slash)
			s[a] = '/';
		memcpy(s + a + slash, name, b + 1);
	}
	return s;
}

/* torch's name of a float --dtype (bf16: "bfloat16", f16, f32, f64, any
 * case), as config.json and mergekit's out_dtype write it; NULL for
 * another (fp8, a GGUF block type) or none. */
static inline const char *dtype_torch_name(const char *dt)
{
	static const char *const names[][2] = {
	    {"bf16", "bfloat16"}, {"f16", "float16"}, {"f32", "float32"}, {"f64", "float64"}};
	for (size_t i = 0; dt && i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcasecmp(dt, names[i][0]))
			return names[i][1];
	return NULL;
}

#endif /* LINES_STRUTIL_H */
