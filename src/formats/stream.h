/*
 * stream.h -- an input that can only be read in order: standard input, or
 * a zstd-compressed file decompressed on the fly. Offsets are those of the
 * uncompressed safetensors bytes.
 */
#ifndef LINES_STREAM_H
#define LINES_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

struct zstream;

/*
 * fd is read from its current position (standard input) or, when
 * restartable, from offset 0 (a file: zs_rewind() starts again). zst:
 * decompress. The stream does not own fd.
 */
int zs_open(struct zstream **out, int fd, int zst, int restartable, const char *path,
            struct lines_error *err);
void zs_close(struct zstream *z);
/* Exactly n bytes; the end of the stream first is LINES_EFORMAT (truncated). */
int zs_read(struct zstream *z, void *buf, size_t n, struct lines_error *err);
/* Read and drop n bytes. */
int zs_skip(struct zstream *z, uint64_t n, struct lines_error *err);
/* Uncompressed offset of the next byte. */
uint64_t zs_pos(const struct zstream *z);
/* 1 at the end of the data (after zs_read has consumed the last byte, this
 * tries one more read); LINES_EFORMAT if bytes follow where none should. */
int zs_expect_end(struct zstream *z, struct lines_error *err);
/* Start again from the first byte; LINES_EUSAGE for standard input. */
int zs_rewind(struct zstream *z, struct lines_error *err);
int zs_restartable(const struct zstream *z);
/* Hash every raw (still compressed) byte read from now on into st, an
 * XXH3_state_t set up for XXH3-128 by the caller. */
void zs_hash_raw(struct zstream *z, void *st);
/* Read the rest of the raw file (for the hash) without decoding it. */
int zs_drain_raw(struct zstream *z, struct lines_error *err);

#endif
