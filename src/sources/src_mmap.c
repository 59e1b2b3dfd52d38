/*
 * src_mmap.c -- the mmap chunk source.
 *
 * Each span of each job gets its own small mapping, made when the job
 * starts and unmapped when it is done, so the pages of an input that are
 * mapped at any moment are those of the jobs in flight: resident memory
 * is bounded by depth x spans x chunk per worker, whatever the size of
 * the model. The page cache keeps what the kernel wants to keep; it is
 * not ours and not counted in our RSS once the mapping is gone.
 *
 * start() maps and asks for read-ahead (MADV_WILLNEED), so the reads of
 * job k+1 overlap the computation of job k; finish() pre-faults the page
 * tables in one call (MADV_POPULATE_READ) where the kernel has it, which
 * also turns a file truncated under us into an error instead of SIGBUS.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "source.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

struct map {
	void *base;
	size_t len;
};

struct src_worker {
	struct source *s;
	unsigned max_spans;
	struct map *maps; /* depth x max_spans */
};

/* Not cached in a static: the workers of two plans may ask at once. */
static long page_size(void)
{
	return sysconf(_SC_PAGESIZE);
}

static int mm_worker_open(struct source *s, unsigned max_spans, size_t max_len, unsigned depth,
                          struct src_worker **out, struct lines_error *err)
{
	struct src_worker *w = calloc(1, sizeof(*w));
	(void)max_len;
	if (w)
		w->maps = calloc((size_t)depth * max_spans, sizeof(*w->maps));
	if (!w || !w->maps) {
		free(w);
		return lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
	}
	w->s = s;
	w->max_spans = max_spans;
	*out = w;
	return 0;
}

static void mm_release(struct src_worker *w, struct src_batch *b)
{
	struct map *m = &w->maps[(size_t)b->slot * w->max_spans];
	for (unsigned i = 0; i < b->n; i++) {
		if (m[i].base)
			munmap(m[i].base, m[i].len);
		m[i].base = NULL;
	}
}

static int mm_start(struct src_worker *w, struct src_batch *b, struct lines_error *err)
{
	struct map *m = &w->maps[(size_t)b->slot * w->max_spans];
	static const unsigned char empty[1];

	for (unsigned i = 0; i < b->n; i++) {
		const struct src_span *sp = &b->span[i];
		const struct src_file *f = &w->s->files[sp->file];
		uint64_t aligned = sp->off & ~(uint64_t)(page_size() - 1);
		size_t delta = (size_t)(sp->off - aligned);

		m[i].base = NULL;
		if (sp->len == 0) {
			b->ptr[i] = empty;
			continue;
		}
		m[i].len = sp->len + delta;
		m[i].base = mmap(NULL, m[i].len, PROT_READ, MAP_SHARED, f->fd, (off_t)aligned);
		if (m[i].base == MAP_FAILED) {
			int e = errno;
			m[i].base = NULL;
			b->n = i; /* release what was mapped */
			mm_release(w, b);
			return lines_errno(err, e, f->path, "cannot map");
		}
		madvise(m[i].base, m[i].len, MADV_WILLNEED);
		b->ptr[i] = (const unsigned char *)m[i].base + delta;
	}
	return 0;
}

static int mm_finish(struct src_worker *w, struct src_batch *b, struct lines_error *err)
{
	struct map *m = &w->maps[(size_t)b->slot * w->max_spans];
	for (unsigned i = 0; i < b->n; i++) {
		if (!m[i].base)
			continue;
		if (madvise(m[i].base, m[i].len, MADV_POPULATE_READ) < 0 && errno == EFAULT)
			return lines_errf(err, LINES_ECHANGED, w->s->files[b->span[i].file].path, NULL,
			                  "the file is shorter than when it was opened "
			                  "(truncated during the run?)");
	}
	return 0;
}

static void mm_worker_close(struct src_worker *w)
{
	if (!w)
		return;
	free(w->maps);
	free(w);
}

static void mm_close(struct source *s) { free(s); }

static uint64_t mm_worker_bytes(unsigned max_spans, size_t max_len, unsigned depth)
{
	/* mapped pages: each span may straddle one extra page at each end */
	return (uint64_t)depth * max_spans * (max_len + 2 * (uint64_t)page_size());
}

const struct src_ops src_mmap_ops = {
	.name = "mmap",
	.open = src_mmap_open,
	.worker_open = mm_worker_open,
	.start = mm_start,
	.finish = mm_finish,
	.release = mm_release,
	.worker_close = mm_worker_close,
	.close = mm_close,
	.worker_bytes = mm_worker_bytes,
	/* fewer, larger mappings: mmap/munmap and page-table work per call */
	.default_chunk = 4u << 20,
	.mapped = 1,
};

int src_mmap_open(struct source **out, const struct src_file *files, unsigned nfiles, int direct,
                  struct lines_error *err)
{
	(void)direct; /* page cache mappings: O_DIRECT means nothing here */
	struct source *s = calloc(1, sizeof(*s));
	RETURN_ERROR_IF(!s, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	s->ops = &src_mmap_ops;
	s->files = files;
	s->nfiles = nfiles;
	*out = s;
	return 0;
}
