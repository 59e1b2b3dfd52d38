/*
 * tutil.c -- see tutil.h.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "tutil.h"

static char tmpdir[4096];
char tu_stderr[65536];

const char *tu_tmpdir(void)
{
	if (!tmpdir[0]) {
		const char *base = getenv("TMPDIR");
		snprintf(tmpdir, sizeof(tmpdir), "%s/lines-test-XXXXXX", base && *base ? base : "/tmp");
		if (!mkdtemp(tmpdir)) {
			perror("mkdtemp");
			exit(99);
		}
	}
	return tmpdir;
}

void tu_cleanup(void)
{
	if (tmpdir[0] && !getenv("LINES_KEEP_TMP")) {
		char cmd[4200];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", tmpdir);
	}
}

const char *tu_lines(void)
{
	const char *l = getenv("LINES");
	return l && *l ? l : "./lines";
}

const char *tu_gen(void)
{
	const char *g = getenv("GEN");
	return g && *g ? g : "./tests/gen-family";
}

int tu_run(const char *fmt, ...)
{
	char cmd[16384], errpath[4200], full[20600];
	va_list ap;
	int st;
	FILE *f;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(errpath, sizeof(errpath), "%s/.stderr", tu_tmpdir());
	snprintf(full, sizeof(full), "( %s ) 2>'%s'", cmd, errpath);
	st = system(full);
	tu_stderr[0] = '\0';
	if ((f = fopen(errpath, "r"))) {
		size_t n = fread(tu_stderr, 1, sizeof(tu_stderr) - 1, f);
		tu_stderr[n] = '\0';
		fclose(f);
	}
	if (st == -1)
		return -1;
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return 128 + WTERMSIG(st);
}

int tu_write_file(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	if (len && fwrite(buf, 1, len, f) != len) {
		fclose(f);
		return -1;
	}
	return fclose(f);
}

int tu_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

int tu_count_entries(const char *dir, const char *needle)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (strstr(e->d_name, needle))
			n++;
	closedir(d);
	return n;
}

/* ---- the independent reader ----------------------------------------------------- */
int tu_model_load(struct tu_model *m, const char *path)
{
	FILE *f = fopen(path, "rb");
	json_t *root, *v;
	const char *key;
	uint64_t n;
	size_t k = 0;

	memset(m, 0, sizeof(*m));
	if (!f)
		return -1;
	fseek(f, 0, SEEK_END);
	m->len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	m->buf = malloc(m->len ? m->len : 1);
	if (!m->buf || fread(m->buf, 1, m->len, f) != m->len) {
		fclose(f);
		return -1;
	}
	fclose(f);
	if (m->len < 8)
		return -1;
	n = 0;
	for (int i = 7; i >= 0; i--)
		n = (n << 8) | m->buf[i];
	if (n > m->len - 8)
		return -1;
	root = json_loadb((const char *)m->buf + 8, (size_t)n, 0, NULL);
	if (!root || !json_is_object(root))
		return -1;
	m->t = calloc(json_object_size(root) + 1, sizeof(*m->t));
	json_object_foreach(root, key, v)
	{
		if (!strcmp(key, "__metadata__")) {
			m->meta_json = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
			continue;
		}
		struct tu_tensor *t = &m->t[k++];
		json_t *sh = json_object_get(v, "shape"), *of = json_object_get(v, "data_offsets");
		t->name = strdup(key);
		snprintf(t->dtype, sizeof(t->dtype), "%s", json_string_value(json_object_get(v, "dtype")));
		t->rank = (unsigned)json_array_size(sh);
		t->nelem = 1;
		for (unsigned i = 0; i < t->rank && i < 8; i++) {
			t->shape[i] = (uint64_t)json_integer_value(json_array_get(sh, i));
			t->nelem *= t->shape[i];
		}
		uint64_t b = (uint64_t)json_integer_value(json_array_get(of, 0));
		uint64_t e = (uint64_t)json_integer_value(json_array_get(of, 1));
		if (8 + n + e > m->len || e < b) {
			json_decref(root);
			return -1;
		}
		t->data = m->buf + 8 + n + b;
		t->nbytes = e - b;
	}
	m->n = k;
	json_decref(root);
	return 0;
}

void tu_model_free(struct tu_model *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->t[i].name);
	free(m->t);
	free(m->buf);
	free(m->meta_json);
	memset(m, 0, sizeof(*m));
}

const struct tu_tensor *tu_model_find(const struct tu_model *m, const char *name)
{
	for (size_t i = 0; i < m->n; i++)
		if (!strcmp(m->t[i].name, name))
			return &m->t[i];
	return NULL;
}

const char *tu_model_meta(const struct tu_model *m, const char *key)
{
	static char val[4096];
	json_t *root, *v;
	if (!m->meta_json)
		return NULL;
	root = json_loads(m->meta_json, 0, NULL);
	v = json_object_get(root, key);
	if (!v || !json_is_string(v)) {
		json_decref(root);
		return NULL;
	}
	snprintf(val, sizeof(val), "%s", json_string_value(v));
	json_decref(root);
	return val;
}

int tu_is_float(const struct tu_tensor *t)
{
	return !strcmp(t->dtype, "BF16") || !strcmp(t->dtype, "F16") || !strcmp(t->dtype, "F32") ||
	       !strcmp(t->dtype, "F64");
}

float tu_elem(const struct tu_tensor *t, uint64_t i)
{
	if (!strcmp(t->dtype, "F32")) {
		float f;
		memcpy(&f, t->data + 4 * i, 4);
		return f;
	}
	if (!strcmp(t->dtype, "F16")) {
		_Float16 h;
		memcpy(&h, t->data + 2 * i, 2);
		return (float)h;
	}
	if (!strcmp(t->dtype, "BF16")) {
		uint16_t h;
		uint32_t u;
		float f;
		memcpy(&h, t->data + 2 * i, 2);
		u = (uint32_t)h << 16;
		memcpy(&f, &u, 4);
		return f;
	}
	return NAN;
}

double tu_elem64(const struct tu_tensor *t, uint64_t i)
{
	if (!strcmp(t->dtype, "F64")) {
		double d;
		memcpy(&d, t->data + 8 * i, 8);
		return d;
	}
	return (double)tu_elem(t, i);
}

double tu_ulp(const char *dtype, double v)
{
	int p, emin; /* precision and minimum normal exponent */
	if (!strcmp(dtype, "BF16"))
		p = 8, emin = -126;
	else if (!strcmp(dtype, "F16"))
		p = 11, emin = -14;
	else if (!strcmp(dtype, "F64"))
		p = 53, emin = -1022;
	else
		p = 24, emin = -126;
	int e;
	if (v == 0 || !isfinite(v))
		e = emin;
	else {
		frexp(fabs(v), &e);
		e -= 1; /* v = m * 2^e with 1 <= m < 2 */
		if (e < emin)
			e = emin;
	}
	return ldexp(1.0, e - p + 1);
}

/* The test's own block matcher: the number after the leftmost
 * "(^|.)KEY." of layers, layer, h, blocks, block, resblocks or blk. */
long tu_block_of(const char *name)
{
	static const char *const keys[] = {"layers", "layer", "h", "blocks", "block", "resblocks", "blk"};
	for (const char *p = name; *p; p++) {
		if (p != name && p[-1] != '.')
			continue;
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			size_t kl = strlen(keys[k]);
			if (strncmp(p, keys[k], kl) || p[kl] != '.')
				continue;
			const char *d = p + kl + 1, *e = d;
			while (*e >= '0' && *e <= '9')
				e++;
			if (e > d && *e == '.')
				return strtol(d, NULL, 10);
		}
	}
	return -1;
}

int tu_within(const char *odt, double ref, double mag, double got, double slack, double *worst)
{
	if (isnan(ref))
		return isnan(got);
	if (isinf(ref))
		return got == ref;
	double err = fabs(got - ref), ulp = tu_ulp(odt, ref);
	if (err <= ulp && err / ulp > *worst)
		*worst = err / ulp;
	return err <= ulp + slack * mag;
}
