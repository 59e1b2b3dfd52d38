/*
 * fuzz-index.c -- a libFuzzer target for the reader of Hugging Face index
 * files (`make fuzz`, see tests/hardening.mk).
 *
 * The input becomes model.safetensors.index.json in a directory that also
 * holds two small valid shards, so that both halves of the reader are
 * reached: the JSON (weight_map, metadata.total_size, shard names that
 * must stay in the directory) and the cross-checks of the index against
 * what the shards really hold. Whatever the input, opening the directory
 * must fail cleanly or succeed with a tensor table that agrees with the
 * shards; the sanitizers catch the rest.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

static void put(const char *name, const void *buf, size_t n)
{
	char path[128];
	FILE *f;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (!(f = fopen(path, "wb")) || fwrite(buf, 1, n, f) != n || fclose(f) != 0)
		abort();
}

/* a shard holding one U8 tensor of 4 bytes */
static void shard(const char *file, const char *tensor)
{
	char json[128], buf[256];
	int n = snprintf(json, sizeof(json),
	                 "{\"%s\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", tensor);
	while (n % 8)
		json[n++] = ' ';
	memset(buf, 0, sizeof(buf));
	for (int i = 0; i < 8; i++)
		buf[i] = (char)((uint64_t)n >> (8 * i));
	memcpy(buf + 8, json, (size_t)n);
	memcpy(buf + 8 + n, "abcd", 4);
	put(file, buf, (size_t)(8 + n + 4));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ckpt *c = NULL;
	struct lines_error err;

	if (!dir[0]) {
		strcpy(dir, "/tmp/lines-fuzz-index-XXXXXX");
		if (!mkdtemp(dir))
			abort();
		shard("model-00001-of-00002.safetensors", "a");
		shard("model-00002-of-00002.safetensors", "b");
	}
	put("model.safetensors.index.json", data, size);
	if (ckpt_open(&c, dir, NULL, &err) == 0) {
		/* accepted: the table holds the shards' tensors, each once */
		if (c->ntensors < 1 || c->ntensors > 2 || c->nfiles < 1 || c->nfiles > 2 ||
		    !ckpt_find(c, c->t[0].name))
			abort();
		ckpt_close(c);
	}
	return 0;
}
