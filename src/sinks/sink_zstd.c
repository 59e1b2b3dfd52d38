/*
 * sink_zstd.c -- compress the output with zstd as it is written.
 *
 * The output is one standard zstd frame of the exact bytes the same run
 * writes without compression, with the frame's content checksum, so
 * `zstd -d` restores them and `zstd -t` checks them. libzstd's own worker
 * threads (ZSTD_c_nbWorkers) compress while lines computes: the consumer
 * thread only hands bytes over.
 */
#include "config.h"

#include <stdlib.h>

#include <zstd.h>

#include "sink.h"

struct sink_zstd {
	struct sink base;
	struct sink *next;
	ZSTD_CCtx *cctx;
	unsigned char *obuf;
	size_t ocap;
};

static int drain(struct sink_zstd *z, ZSTD_inBuffer *in, ZSTD_EndDirective mode,
                 struct lines_error *err)
{
	size_t left;
	do {
		ZSTD_outBuffer out = {z->obuf, z->ocap, 0};
		/* between jobs handed over: an interrupted run goes no further */
		RETURN_ERROR_IF(lines_canceled(), err, LINES_ECANCELED, NULL, NULL, "interrupted");
		left = ZSTD_compressStream2(z->cctx, &out, in, mode);
		RETURN_ERROR_IF(ZSTD_isError(left), err, LINES_EIO, z->next->name, NULL,
		                "zstd compression failed: %s", ZSTD_getErrorName(left));
		if (out.pos)
			FORWARD_IF_ERROR(sink_write(z->next, z->obuf, out.pos, err));
	} while (mode == ZSTD_e_end ? left != 0 : in->pos < in->size);
	return 0;
}

static int sz_write(struct sink *s, const void *buf, size_t len, struct lines_error *err)
{
	struct sink_zstd *z = (struct sink_zstd *)s;
	ZSTD_inBuffer in = {buf, len, 0};
	return drain(z, &in, ZSTD_e_continue, err);
}

static int sz_finish(struct sink *s, struct lines_error *err)
{
	struct sink_zstd *z = (struct sink_zstd *)s;
	ZSTD_inBuffer in = {NULL, 0, 0};
	FORWARD_IF_ERROR(drain(z, &in, ZSTD_e_end, err));
	return sink_finish(z->next, err);
}

static int sz_commit(struct sink *s, struct lines_error *err)
{
	return sink_commit(((struct sink_zstd *)s)->next, err);
}

static void sz_abort(struct sink *s) { sink_abort(((struct sink_zstd *)s)->next); }

static void sz_free(struct sink *s)
{
	struct sink_zstd *z = (struct sink_zstd *)s;
	ZSTD_freeCCtx(z->cctx);
	free(z->obuf);
	sink_free(z->next);
	free(z);
}

static const struct sink_ops sink_zstd_ops = {sz_write, sz_finish, sz_commit, sz_abort, sz_free};

int sink_zstd_open(struct sink **out, struct sink *next, int level, unsigned workers,
                   struct lines_error *err)
{
	struct sink_zstd *z = calloc(1, sizeof(*z));
	size_t r;

	*out = NULL;
	if (z) {
		z->cctx = ZSTD_createCCtx();
		z->ocap = ZSTD_CStreamOutSize();
		z->obuf = malloc(z->ocap);
	}
	if (!z || !z->cctx || !z->obuf) {
		if (z) {
			ZSTD_freeCCtx(z->cctx);
			free(z->obuf);
			free(z);
		}
		return lines_errf(err, LINES_ENOMEM, next->name, NULL, "out of memory for zstd");
	}
	r = ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_compressionLevel, level);
	if (!ZSTD_isError(r))
		r = ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_checksumFlag, 1);
	if (!ZSTD_isError(r))
		/* At least one worker, always: libzstd's multi-threaded mode
		 * writes the same frame for any number of workers, but not the
		 * same as its single-threaded mode, and the output must not
		 * depend on -j. (A libzstd without threads refuses: inline.) */
		(void)ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_nbWorkers, (int)(workers ? workers : 1));
	/* Jobs of at most 4 MiB (the high levels' default is up to 32x their
	 * window): libzstd finishes every job it holds before its context can
	 * be freed, so this bounds how long an interrupted run takes to stop
	 * (seconds at level 19, not minutes); the frame is still the same for
	 * any number of workers. */
	if (!ZSTD_isError(r))
		(void)ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_jobSize, 4 << 20);
	if (ZSTD_isError(r)) {
		ZSTD_freeCCtx(z->cctx);
		free(z->obuf);
		free(z);
		return lines_errf(err, LINES_EUSAGE, next->name, NULL, "zstd level %d: %s", level,
		                  ZSTD_getErrorName(r));
	}
	z->next = next;
	z->base.ops = &sink_zstd_ops;
	z->base.name = next->name;
	*out = &z->base;
	return 0;
}
