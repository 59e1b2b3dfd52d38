/*
 * src_stream.c -- a chunk source for runs where some inputs are streams
 * (standard input, or .zst files decompressed on the fly).
 *
 * It wraps the random-access source (mmap or io_uring) that serves the
 * other files: each batch is split into the spans of ordinary files, which
 * go to the inner source, and the spans of streams, which this source
 * reads itself into per-worker buffers.
 *
 * A stream can only be read in order, but workers start their jobs in any
 * order. So the stream spans of job k are read only when jobs 0..k-1 have
 * had theirs: a ticket, the job's number within the pass. That cannot
 * deadlock, because a worker starts every job right after claiming it, so
 * the holder of the next ticket is always on its way. The bytes between
 * one job's span and the next (tensors a pass does not read, the header on
 * a second pass) are decompressed and dropped. A later pass starts a .zst
 * file again from its first byte; standard input cannot be, which the plan
 * knows (one pass only).
 */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>

#include "source.h"
#include "stream.h"

struct stream_source {
	struct source base;
	struct source *inner;
	struct zstream **zs; /* per file; NULL for files the inner source reads */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t next_seq;
	int aborted;
	int first_pass;
};

struct src_worker {
	struct stream_source *s;
	struct src_worker *iw;
	unsigned max_spans, depth;
	size_t max_len;
	unsigned char *mem;          /* depth x max_spans buffers of max_len */
	struct src_span *sub_span;   /* depth x max_spans */
	const unsigned char **sub_ptr;
	unsigned *sub_map;           /* which span of the batch each sub span is */
	struct src_batch *sub;       /* depth */
};

static int st_worker_open(struct source *base, unsigned max_spans, size_t max_len, unsigned depth,
                          struct src_worker **out, struct lines_error *err)
{
	struct stream_source *s = (struct stream_source *)base;
	struct src_worker *w = calloc(1, sizeof(*w));
	size_t n = (size_t)depth * max_spans;
	int rc;

	RETURN_ERROR_IF(!w, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	w->s = s;
	w->max_spans = max_spans;
	w->depth = depth;
	w->max_len = max_len ? max_len : 1;
	w->mem = malloc(n * w->max_len);
	w->sub_span = calloc(n, sizeof(*w->sub_span));
	w->sub_ptr = calloc(n, sizeof(*w->sub_ptr));
	w->sub_map = calloc(n, sizeof(*w->sub_map));
	w->sub = calloc(depth, sizeof(*w->sub));
	if (!w->mem || !w->sub_span || !w->sub_ptr || !w->sub_map || !w->sub) {
		free(w->mem), free(w->sub_span), free(w->sub_ptr), free(w->sub_map), free(w->sub);
		free(w);
		return lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory for stream buffers");
	}
	if ((rc = s->inner->ops->worker_open(s->inner, max_spans, max_len, depth, &w->iw, err)) < 0) {
		free(w->mem), free(w->sub_span), free(w->sub_ptr), free(w->sub_map), free(w->sub);
		free(w);
		return rc;
	}
	*out = w;
	return 0;
}

/* Read the stream spans of batch b, in ticket order. */
static int read_streams(struct src_worker *w, struct src_batch *b, struct lines_error *err)
{
	struct stream_source *s = w->s;
	int rc = 0;

	pthread_mutex_lock(&s->mu);
	while (s->next_seq != b->seq && !s->aborted)
		pthread_cond_wait(&s->cv, &s->mu);
	if (s->aborted) {
		pthread_mutex_unlock(&s->mu);
		return lines_errf(err, LINES_ECANCELED, NULL, NULL, "stopped");
	}
	for (unsigned i = 0; rc == 0 && i < b->n; i++) {
		const struct src_span *sp = &b->span[i];
		struct zstream *z = s->zs[sp->file];
		unsigned char *buf = w->mem + ((size_t)b->slot * w->max_spans + i) * w->max_len;
		if (!z)
			continue;
		if (sp->off < zs_pos(z)) {
			rc = lines_errf(err, LINES_EUNSUPPORTED, s->base.files[sp->file].path, NULL,
			                "the tensors are not stored in the order of the base's, so "
			                "this stream cannot be read in one pass");
			break;
		}
		rc = zs_skip(z, sp->off - zs_pos(z), err);
		if (rc == 0)
			rc = zs_read(z, buf, sp->len, err);
		b->ptr[i] = buf;
	}
	if (rc < 0)
		s->aborted = 1;
	else
		s->next_seq++;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int st_start(struct src_worker *w, struct src_batch *b, struct lines_error *err)
{
	struct src_batch *sub = &w->sub[b->slot];
	size_t base = (size_t)b->slot * w->max_spans;
	unsigned k = 0;

	for (unsigned i = 0; i < b->n; i++) {
		if (w->s->zs[b->span[i].file])
			continue;
		w->sub_span[base + k] = b->span[i];
		w->sub_map[base + k] = i;
		k++;
	}
	sub->slot = b->slot;
	sub->seq = b->seq;
	sub->n = k;
	sub->span = &w->sub_span[base];
	sub->ptr = &w->sub_ptr[base];
	FORWARD_IF_ERROR(w->s->inner->ops->start(w->iw, sub, err));
	int rc = read_streams(w, b, err);
	if (rc < 0)
		w->s->inner->ops->release(w->iw, sub);
	return rc;
}

static int st_finish(struct src_worker *w, struct src_batch *b, struct lines_error *err)
{
	struct src_batch *sub = &w->sub[b->slot];
	FORWARD_IF_ERROR(w->s->inner->ops->finish(w->iw, sub, err));
	for (unsigned k = 0; k < sub->n; k++)
		b->ptr[w->sub_map[(size_t)b->slot * w->max_spans + k]] = sub->ptr[k];
	return 0;
}

static void st_release(struct src_worker *w, struct src_batch *b)
{
	w->s->inner->ops->release(w->iw, &w->sub[b->slot]);
}

static void st_worker_close(struct src_worker *w)
{
	if (!w)
		return;
	w->s->inner->ops->worker_close(w->iw);
	free(w->mem), free(w->sub_span), free(w->sub_ptr), free(w->sub_map), free(w->sub);
	free(w);
}

static int st_pass_begin(struct source *base, struct lines_error *err)
{
	struct stream_source *s = (struct stream_source *)base;
	s->next_seq = 0;
	s->aborted = 0;
	if (!s->first_pass)
		for (unsigned f = 0; f < base->nfiles; f++)
			if (s->zs[f])
				FORWARD_IF_ERROR(zs_rewind(s->zs[f], err));
	s->first_pass = 0;
	if (s->inner->ops->pass_begin)
		return s->inner->ops->pass_begin(s->inner, err);
	return 0;
}

static void st_cancel(struct source *base)
{
	struct stream_source *s = (struct stream_source *)base;
	pthread_mutex_lock(&s->mu);
	s->aborted = 1;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void st_close(struct source *base)
{
	struct stream_source *s = (struct stream_source *)base;
	s->inner->ops->close(s->inner);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s->zs);
	free(s);
}

static uint64_t st_worker_bytes(unsigned max_spans, size_t max_len, unsigned depth)
{
	return (uint64_t)depth * max_spans * max_len;
}

static const struct src_ops src_stream_ops = {
	.name = "stream",
	.worker_open = st_worker_open,
	.start = st_start,
	.finish = st_finish,
	.release = st_release,
	.worker_close = st_worker_close,
	.close = st_close,
	.worker_bytes = st_worker_bytes,
	.pass_begin = st_pass_begin,
	.cancel = st_cancel,
};

uint64_t src_stream_worker_bytes(const struct src_ops *inner, unsigned max_spans, size_t max_len,
                                 unsigned depth)
{
	return st_worker_bytes(max_spans, max_len, depth) +
	       inner->worker_bytes(max_spans, max_len, depth);
}

int src_stream_open(struct source **out, struct source *inner, struct zstream **zs,
                    struct lines_error *err)
{
	struct stream_source *s = calloc(1, sizeof(*s));
	if (s)
		s->zs = calloc(inner->nfiles ? inner->nfiles : 1, sizeof(*s->zs));
	if (!s || !s->zs) {
		free(s);
		return lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
	}
	memcpy(s->zs, zs, inner->nfiles * sizeof(*zs));
	s->base.ops = &src_stream_ops;
	s->base.files = inner->files;
	s->base.nfiles = inner->nfiles;
	s->inner = inner;
	s->first_pass = 1;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	*out = &s->base;
	return 0;
}
