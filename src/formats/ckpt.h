/*
 * ckpt.h -- a checkpoint opened for reading: one or more files whose
 * headers have been read and validated, and a table of every tensor with
 * the file and absolute offset of its data. Knows nothing of how the data
 * is read later (that is a chunk source's business), and hands out
 * tensors without the types of the file format (a struct ckpt_format
 * reads each file: safetensors now).
 */
#ifndef LINES_CKPT_H
#define LINES_CKPT_H

#include <sys/types.h>
#include <time.h>

#include "layers.h"
#include "internal.h"

struct zstream;
struct ckpt_file;

/* A tensor as a file format describes it (storage order). */
struct ckpt_entry {
	const char *name;
	enum dtype dtype;
	unsigned rank;
	const uint64_t *shape;
	uint64_t nelem;
	uint64_t off;    /* absolute offset of its data in the file */
	uint64_t nbytes;
};

/* A metadata entry of the file (safetensors' __metadata__). */
struct ckpt_kv {
	const char *key;
	const char *value;
	int summary; /* the value is a summary ([32000 x string]), not the value */
};

/* Read n bytes at off of the file: pread for a file, in order for a stream. */
typedef int (*ckpt_read_fn)(struct ckpt_file *f, void *buf, size_t n, uint64_t off,
                            struct lines_error *err);

/*
 * A file format: open() reads the header through read(), validates it,
 * and fills the file's entries, metadata and data range (the strings and
 * shapes stay owned by the format's state until close()). Everything
 * above this layer sees only those, never the format's own types.
 */
struct ckpt_format {
	const char *name;
	int (*open)(struct ckpt_file *f, ckpt_read_fn read, struct lines_error *err);
	void (*close)(struct ckpt_file *f);
};
extern const struct ckpt_format ckpt_fmt_safetensors;
extern const struct ckpt_format ckpt_fmt_gguf; /* fmt_gguf.c */

struct ckpt_file {
	char *path;
	int fd;
	int own_fd;    /* 0 for standard input */
	uint64_t size; /* UINT64_MAX for a stream of unknown length */
	struct zstream *zs; /* standard input or a .zst file: read in order */
	dev_t dev;
	ino_t ino;
	struct timespec mtime; /* when opened, to notice a change during a run */
	uint64_t disk_size;    /* st_size when opened (compressed size for .zst) */
	int spilled;           /* decompressed to a temporary file: read in full */
	/* filled by the format */
	const struct ckpt_format *fmt;
	void *fmt_state;
	size_t nentries;
	struct ckpt_entry *entries;
	size_t nmeta;
	struct ckpt_kv *meta;
	uint64_t data_start; /* where the first tensor's data may begin */
	uint64_t data_end;   /* where the last tensor's data ends: the file's end */
	size_t heap_peak;    /* the heap in use at its parse's peak (0: unknown) */
	long num_blocks;     /* the blocks the file says it has (GGUF's
	                      * <arch>.block_count), 0 when it does not say */
	unsigned char peek[4]; /* a stream's first bytes, read to tell its format */
	unsigned npeek;
};

struct ckpt_tensor {
	const char *name;
	enum dtype dtype;
	unsigned rank;
	const uint64_t *shape;
	uint64_t nelem;
	unsigned file;  /* index into files */
	uint64_t off;   /* absolute offset of the data in that file */
	uint64_t nbytes;
	long block;     /* -1 outside the blocks */
	int stack;      /* index into stacks, -1 outside the blocks */
};

/* A stack of blocks: the name before the block index (encoder.block,
 * decoder.block, model.layers, ...), and 1 + its largest index. */
struct ckpt_stack {
	char *name;
	long num_layers;
};

struct ckpt {
	char *path;
	char *dir;      /* a Hugging Face directory (given, or the index's), or NULL */
	char note[512]; /* something worth telling about how it was read, or "" */
	char *hub;      /* a hub id's snapshot in the Hugging Face cache, or NULL */
	size_t nfiles;
	struct ckpt_file *files;
	size_t ntensors;
	struct ckpt_tensor *t; /* storage order: file by file, by offset */
	size_t *by_name;       /* indices into t, sorted by name */
	long num_layers;       /* 1 + largest block index, 0 if none */
	size_t nstacks;        /* in the order they first appear */
	struct ckpt_stack *stacks;
	uint64_t data_bytes;
	uint64_t header_bytes;
	/* a composed checkpoint (ckpt_compose): its files are its sources'
	 * (closed with them, not here), its names its own (names[i] for t[i]) */
	int borrowed;
	char **names;
};

/*
 * Open path, validate, and find the block of every tensor with ly. path
 * "-" is standard input; a path ending in ".zst" is decompressed as it is
 * read. Both are streams (files[i].zs is set): their data can only be read
 * in order. A GGUF file with split.count > 1 (llama.cpp's split files,
 * NAME-0000i-of-0000N.gguf) opens its whole set, file 1 first.
 */
int ckpt_open(struct ckpt **out, const char *path, const struct layers *ly,
              struct lines_error *err);
/* The same, but a split GGUF file (split.count > 1) alone, not its set
 * (lines verify checks each file of a split output by itself). */
int ckpt_open_file(struct ckpt **out, const char *path, const struct layers *ly,
                   struct lines_error *err);
void ckpt_close(struct ckpt *c);
const struct ckpt_tensor *ckpt_find(const struct ckpt *c, const char *name);

/*
 * mergekit's slices: a checkpoint composed of layer ranges of others. Part
 * i is blocks [first, end) of src, which become blocks off_i .. off_i +
 * (end - first) - 1 of the result (off_i: the blocks of the parts before
 * it), renamed so. Each source has one stack of blocks. The tensors
 * outside the blocks are the first part's embeddings (names with "embed",
 * "wte" or "wpe") and the last part's others (final norm, output head),
 * as mergekit takes them. The result borrows the sources' files and
 * shapes: close it before them. NAME is its path in messages. Errors name
 * the source and the range.
 */
struct ckpt_part {
	const struct ckpt *src;
	long first, end;
};
int ckpt_compose(struct ckpt **out, const char *name, const struct ckpt_part *parts, size_t nparts,
                 const struct layers *ly, struct lines_error *err);
/* 1 when TENSOR (outside the blocks) comes from the first slice: an embedding. */
int ckpt_is_embedding(const char *name);

/*
 * Decompress a .zst file into an unnamed temporary file (in $TMPDIR) and
 * read that instead, for inputs whose tensors cannot be read in the order
 * the merge needs. Constant memory; the disk holds the uncompressed size.
 */
int ckpt_spill(struct ckpt_file *f, struct lines_error *err);

#endif
