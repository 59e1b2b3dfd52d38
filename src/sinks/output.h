/*
 * output.h -- the output of a run as data: a file (maybe compressed) with
 * its checksum and manifest, or a directory of shards.
 */
#ifndef LINES_OUTPUT_H
#define LINES_OUTPUT_H

#include <xxhash.h>

#include "layout.h"
#include "sink.h"

/* One file of a sharded output: output tensors [t0, t1). */
struct shard {
	size_t t0, t1;
	uint64_t off0; /* out_off of t0 */
	uint64_t data; /* bytes of tensor data */
	char name[64];
};

/* What the manifest of one file (the output, or a shard) describes. */
struct manifest_file {
	const char *name;
	const struct xxh128 *digest;
	size_t t0, t1;
	uint64_t off0; /* out_off of tensor t0 */
	uint64_t header_len;
	uint64_t header_hash;
	uint64_t data_bytes;
};

struct output {
	/* a directory output (sink_dir.c) */
	char *dir;
	uint64_t shard_size;
	struct shard *shards;
	size_t nshards;
	/* a file output */
	int gguf; /* a GGUF file (gguf_header.c): OUT ends in .gguf, or GGUF
	             inputs go to standard output */
	/* a sharded GGUF output (--shard-size): PREFIX-0000i-of-0000N.gguf in
	 * dir, llama.cpp's split files; NULL otherwise */
	char *gguf_prefix;
	int zst; /* OUT ends in .zst */
	int zstd_level;
	char *sidecar_path;  /* NULL: no OUT.xxh128 */
	char *sidecar_name;  /* the name the sidecar line gives */
	char *manifest_path; /* NULL: no manifest */
	uint64_t header_hash;
	struct xxh128 file_digest;
	/* per-tensor hashes of what is written, for the manifest */
	XXH3_state_t *tstate;
	uint64_t *thash;
	unsigned char *header; /* the output's header, once alpha is known */
	size_t header_len;
	long *layer_src; /* slices: sink_dir_desc.layer_src */
	/* held from before the first read until the commit (output_lock) */
	int lock_fd;
	char *lock_path;
};

/*
 * A directory of shards as one sink (sink_dir.c): the data bytes come in
 * order, and each shard's header comes from header(). On commit every
 * shard gets its .xxh128 and (from manifest()) .manifest.json when
 * checksums is set, the index when there are several shards, the small
 * files of carry_from (a directory, or NULL), then the temporary
 * directory is renamed to path.
 */
struct sink_dir_desc {
	const char *path;
	const struct layout *lay;
	const struct shard *shards;
	size_t nshards;
	int checksums;
	const char *carry_from;
	/* the tokenizer files come from this directory instead (NULL: from
	 * carry_from, as the other files) */
	const char *tokenizer_from;
	int dequantized; /* FP8 weights written dequantized: config.json loses its
	                    quantization_config */
	int files_only; /* GGUF splits: the shards and their companions, into
	                   the existing directory path; no index, README or
	                   files carried along */
	const char *torch_dtype; /* the output's dtype as config.json names it
	                            ("float32", ...) when --dtype changed it */
	long num_layers; /* > 0: the blocks of a layer stack (slices): config.json's
	                    counts of layers (num_hidden_layers, ...) set to it */
	const long *layer_src; /* num_layers: the block of its model each block is
	                          (config.json's per-layer lists are taken so) */
	int (*header)(const void *arg, size_t t0, size_t t1, unsigned char **hdr, size_t *len,
	              struct lines_error *err);
	int (*manifest)(const void *arg, const struct manifest_file *mf, struct sink *s,
	                struct lines_error *err);
	/* optional: the README.md the directory gets (the base's model card
	 * is not carried along: it describes another model) */
	int (*readme)(const void *arg, char **text, struct lines_error *err);
	/* optional: lines_config.yml, the configuration of the run */
	const char *config_yaml;
	const void *arg;
	const struct lines_merge_opts *log; /* notes of the files carried along */
	/* a part of a partitioned run (partition.c): only shards [s0, s1) are
	 * written, in path's .lines-part-K (locked), then moved into path
	 * one by one with the base's small files and .lines-plan.json, whose
	 * text plan_text() makes from the index and README.md texts; the
	 * index, README.md and lines_config.yml wait for lines index.
	 * Otherwise s0 = 0 and s1 = nshards. */
	int part;
	unsigned part_k;
	size_t s0, s1;
	int (*plan_text)(const void *arg, const char *index_json, const char *readme, char **text,
	                 struct lines_error *err);
};
int sink_dir_open(struct sink **out, const struct sink_dir_desc *desc, struct lines_error *err);
/* Remove every file in a directory (a part's temporary one). */
void sink_dir_empty(const char *path);

/* A tokenizer file's name: tokenizer.json, tokenizer_config.json,
 * tokenizer.model, special_tokens_map.json, vocab.json, merges.txt, ...
 * (tok_source.c). */
int output_is_tokenizer_file(const char *name);

#endif
