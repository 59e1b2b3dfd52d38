/*
 * stream.c -- sequential inputs: standard input and zstd files.
 *
 * A zstd file is decompressed with a ZSTD_DCtx as it is read: the frame's
 * content checksum, when present, is checked by libzstd at the end of the
 * frame, so a damaged file is an error, not a silently different merge.
 * Several frames in a row (what `zstd` writes for concatenated inputs) are
 * read as one stream, as `zstd -d` does.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include <xxhash.h>
#include <zstd.h>

#include "stream.h"

struct zstream {
	int fd;
	int zst;
	int restartable;
	const char *path;
	ZSTD_DCtx *dctx;
	unsigned char *in;
	size_t in_cap, in_pos, in_len;
	int in_eof;
	unsigned char *out; /* decompressed bytes not yet handed out */
	size_t out_cap, out_pos, out_len;
	size_t frame_left; /* ZSTD_decompressStream's hint; 0 at a frame end */
	uint64_t pos;
	XXH3_state_t *raw_hash;
};

void zs_hash_raw(struct zstream *z, void *st) { z->raw_hash = st; }

int zs_open(struct zstream **out, int fd, int zst, int restartable, const char *path,
            struct lines_error *err)
{
	struct zstream *z = calloc(1, sizeof(*z));
	RETURN_ERROR_IF(!z, err, LINES_ENOMEM, path, NULL, "out of memory");
	z->fd = fd;
	z->zst = zst;
	z->restartable = restartable;
	z->path = path;
	z->in_cap = zst ? ZSTD_DStreamInSize() : 1 << 20;
	z->in = malloc(z->in_cap);
	if (zst) {
		z->out_cap = ZSTD_DStreamOutSize();
		z->out = malloc(z->out_cap);
		z->dctx = ZSTD_createDCtx();
	}
	if (!z->in || (zst && (!z->out || !z->dctx))) {
		zs_close(z);
		return lines_errf(err, LINES_ENOMEM, path, NULL, "out of memory");
	}
	if (restartable && lseek(fd, 0, SEEK_SET) < 0) {
		int e = errno;
		zs_close(z);
		return lines_errno(err, e, path, "cannot seek");
	}
	*out = z;
	return 0;
}

void zs_close(struct zstream *z)
{
	if (!z)
		return;
	ZSTD_freeDCtx(z->dctx);
	free(z->in);
	free(z->out);
	free(z);
}

uint64_t zs_pos(const struct zstream *z) { return z->pos; }
int zs_restartable(const struct zstream *z) { return z->restartable; }

/* Refill the raw input buffer; 0 with in_eof set at the end. */
static int fill(struct zstream *z, struct lines_error *err)
{
	size_t got;
	int rc;
	if (z->in_pos < z->in_len || z->in_eof)
		return 0;
	rc = full_read(z->fd, z->in, z->in_cap, &got);
	if (rc < 0)
		return lines_errno(err, -rc, z->path, "cannot read");
	z->in_pos = 0;
	z->in_len = got;
	if (got == 0)
		z->in_eof = 1;
	else if (z->raw_hash)
		XXH3_128bits_update(z->raw_hash, z->in, got);
	return 0;
}

int zs_drain_raw(struct zstream *z, struct lines_error *err)
{
	do {
		z->in_pos = z->in_len;
		FORWARD_IF_ERROR(fill(z, err));
	} while (!z->in_eof);
	return 0;
}

/* Make decompressed bytes available in out; 0 with out_len == out_pos at
 * the end of the stream. */
static int produce(struct zstream *z, struct lines_error *err)
{
	while (z->out_pos == z->out_len) {
		FORWARD_IF_ERROR(fill(z, err));
		if (z->in_eof && z->in_pos == z->in_len) {
			RETURN_ERROR_IF(z->frame_left, err, LINES_EFORMAT, z->path, NULL,
			                "the zstd stream ends in the middle of a frame (truncated?)");
			return 0;
		}
		ZSTD_inBuffer ib = {z->in, z->in_len, z->in_pos};
		ZSTD_outBuffer ob = {z->out, z->out_cap, 0};
		size_t r = ZSTD_decompressStream(z->dctx, &ob, &ib);
		RETURN_ERROR_IF(ZSTD_isError(r), err, LINES_EFORMAT, z->path, NULL,
		                "the zstd stream is damaged: %s", ZSTD_getErrorName(r));
		z->in_pos = ib.pos;
		z->out_pos = 0;
		z->out_len = ob.pos;
		z->frame_left = r;
	}
	return 0;
}

int zs_read(struct zstream *z, void *buf, size_t n, struct lines_error *err)
{
	unsigned char *p = buf;
	while (n) {
		size_t k;
		if (!z->zst) {
			FORWARD_IF_ERROR(fill(z, err));
			RETURN_ERROR_IF(z->in_pos == z->in_len, err, LINES_EFORMAT, z->path, NULL,
			                "the stream ends early, after %llu bytes (truncated?)",
			                (unsigned long long)z->pos);
			k = z->in_len - z->in_pos < n ? z->in_len - z->in_pos : n;
			if (p)
				memcpy(p, z->in + z->in_pos, k);
			z->in_pos += k;
		} else {
			FORWARD_IF_ERROR(produce(z, err));
			RETURN_ERROR_IF(z->out_pos == z->out_len, err, LINES_EFORMAT, z->path, NULL,
			                "the decompressed stream ends early, after %llu bytes "
			                "(truncated?)",
			                (unsigned long long)z->pos);
			k = z->out_len - z->out_pos < n ? z->out_len - z->out_pos : n;
			if (p)
				memcpy(p, z->out + z->out_pos, k);
			z->out_pos += k;
		}
		if (p)
			p += k;
		n -= k;
		z->pos += k;
	}
	return 0;
}

int zs_skip(struct zstream *z, uint64_t n, struct lines_error *err)
{
	while (n) {
		size_t k = n > (1u << 30) ? (1u << 30) : (size_t)n;
		FORWARD_IF_ERROR(zs_read(z, NULL, k, err));
		n -= k;
	}
	return 0;
}

int zs_expect_end(struct zstream *z, struct lines_error *err)
{
	if (!z->zst) {
		FORWARD_IF_ERROR(fill(z, err));
		RETURN_ERROR_IF(z->in_pos < z->in_len, err, LINES_EFORMAT, z->path, NULL,
		                "bytes follow the last tensor's data");
		return 1;
	}
	FORWARD_IF_ERROR(produce(z, err));
	RETURN_ERROR_IF(z->out_pos < z->out_len, err, LINES_EFORMAT, z->path, NULL,
	                "bytes follow the last tensor's data");
	return 1;
}

int zs_rewind(struct zstream *z, struct lines_error *err)
{
	RETURN_ERROR_IF(!z->restartable, err, LINES_EUSAGE, z->path, NULL,
	                "standard input can be read only once");
	if (lseek(z->fd, 0, SEEK_SET) < 0)
		return lines_errno(err, errno, z->path, "cannot seek");
	z->in_pos = z->in_len = 0;
	z->in_eof = 0;
	z->out_pos = z->out_len = 0;
	z->frame_left = 0;
	z->pos = 0;
	if (z->dctx)
		ZSTD_DCtx_reset(z->dctx, ZSTD_reset_session_only);
	return 0;
}
