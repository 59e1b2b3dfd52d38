/*
 * api.c -- the small public entry points: models for inspection and the
 * version strings.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>
#include <xxhash.h>
#include <zstd.h>

#include "ckpt.h"

struct lines_model {
	struct ckpt *ck;
	struct layers layers;
};

const char *lines_version(void) { return PACKAGE_VERSION; }

/*
 * Written once (two threads may ask at once), then only read: the
 * libraries linked in cannot change while we run.
 */
static char libraries[256];
static pthread_once_t libraries_once = PTHREAD_ONCE_INIT;

static void libraries_fill(void)
{
	char *buf = libraries;
	const size_t cap = sizeof(libraries);
	unsigned xv = XXH_versionNumber();
	int n = snprintf(buf, cap, "zstd %s, xxHash %u.%u.%u, jansson %s", ZSTD_versionString(),
	                 xv / 10000, xv / 100 % 100, xv % 100, jansson_version_str());
	if (n < 0 || (size_t)n >= cap)
		return;
#ifdef HAVE_URING
	snprintf(buf + n, cap - (size_t)n, ", liburing %s", URING_VERSION);
#else
	snprintf(buf + n, cap - (size_t)n, ", liburing (not built)");
#endif
}

const char *lines_libraries(void)
{
	pthread_once(&libraries_once, libraries_fill);
	return libraries;
}

int lines_model_open(const char *path, const struct lines_layer_opts *lo, struct lines_model **out,
                     struct lines_error *err)
{
	struct lines_model *m = calloc(1, sizeof(*m));
	int rc;

	*out = NULL;
	RETURN_ERROR_IF(!m, err, LINES_ENOMEM, path, NULL, "out of memory");
	rc = layers_init(&m->layers, lo, err);
	if (rc == 0)
		rc = ckpt_open(&m->ck, path, &m->layers, err);
	if (rc == 0 && lo && lo->num_layers && m->ck->num_layers > lo->num_layers) {
		for (size_t i = 0; i < m->ck->ntensors; i++)
			if (m->ck->t[i].block >= lo->num_layers) {
				rc = lines_errf(err, LINES_EUSAGE, path, m->ck->t[i].name,
				                "block %ld is beyond --num-layers %ld", m->ck->t[i].block,
				                lo->num_layers);
				break;
			}
	}
	if (rc < 0) {
		lines_model_close(m);
		return rc;
	}
	if (lo && lo->num_layers) { /* every stack's, as a merge takes it */
		m->ck->num_layers = lo->num_layers;
		for (size_t i = 0; i < m->ck->nstacks; i++)
			m->ck->stacks[i].num_layers = lo->num_layers;
	}
	*out = m;
	return 0;
}

void lines_model_close(struct lines_model *m)
{
	if (!m)
		return;
	ckpt_close(m->ck);
	layers_free(&m->layers);
	free(m);
}

size_t lines_model_count(const struct lines_model *m) { return m->ck->ntensors; }

void lines_model_tensor(const struct lines_model *m, size_t i, struct lines_tensor_info *info)
{
	const struct ckpt_tensor *t = &m->ck->t[i];
	info->name = t->name;
	info->dtype = dtype_name(t->dtype);
	info->is_float = dtype_mergeable(t->dtype);
	info->rank = t->rank;
	info->shape = t->shape;
	info->nelem = t->nelem;
	info->nbytes = t->nbytes;
	info->block = t->block;
	info->stack = t->stack >= 0 ? m->ck->stacks[t->stack].name : NULL;
}

long lines_model_num_layers(const struct lines_model *m) { return m->ck->num_layers; }
size_t lines_model_stack_count(const struct lines_model *m) { return m->ck->nstacks; }
void lines_model_stack(const struct lines_model *m, size_t i, const char **name, long *num_layers)
{
	*name = m->ck->stacks[i].name;
	*num_layers = m->ck->stacks[i].num_layers;
}
uint64_t lines_model_data_bytes(const struct lines_model *m) { return m->ck->data_bytes; }
uint64_t lines_model_header_bytes(const struct lines_model *m) { return m->ck->header_bytes; }

const char *lines_model_format(const struct lines_model *m)
{
	return m->ck->nfiles && m->ck->files[0].fmt ? m->ck->files[0].fmt->name : "safetensors";
}

size_t lines_model_meta_count(const struct lines_model *m)
{
	return m->ck->nfiles ? m->ck->files[0].nmeta : 0;
}

void lines_model_meta(const struct lines_model *m, size_t i, const char **key, const char **value)
{
	*key = m->ck->files[0].meta[i].key;
	*value = m->ck->files[0].meta[i].value;
}
