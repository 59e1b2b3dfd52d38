/*
 * src_uring.c -- the io_uring chunk source.
 *
 * Each worker owns a ring and a fixed pool of buffers registered with it
 * (one per input span per batch slot), so a read is a READ_FIXED into
 * memory the kernel already has pinned. start() queues the reads of every
 * input of a job at once and submits them; finish() reaps completions
 * until every span of that batch is complete, re-queueing the rest of a
 * short read. With two batch slots a worker has the reads of the next job
 * in flight while it computes the current one: 2 x (N + 1) reads per
 * worker.
 *
 * With --direct the files are reopened with O_DIRECT (through
 * /proc/self/fd, so the very file that was checked is read); offsets and
 * lengths are widened to the alignment statx reports (STATX_DIOALIGN, or
 * 4096) and the buffers are aligned to it. A file system that refuses
 * O_DIRECT (EINVAL on open or on the first read) is read buffered instead.
 *
 * A read that ends early (the file was truncated under us) is an error,
 * never a crash: there is no mapping to fault on.
 */
#include "config.h"

#ifdef HAVE_URING

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <liburing.h>

#include "source.h"

#define URING_ALIGN_DEFAULT 4096u

struct uring_source {
	struct source base;
	int *dfd;         /* O_DIRECT descriptor per file, or -1 */
	unsigned *align;  /* alignment per file (1 when buffered) */
	unsigned max_align;
	unsigned char *hot; /* per file: in the page cache when the pass began */
};

struct uspan {
	uint64_t off;   /* where the read starts (aligned down for O_DIRECT) */
	size_t len;     /* bytes asked for (aligned up for O_DIRECT) */
	size_t need;    /* bytes that must arrive: skip + the span's length */
	size_t done;    /* bytes read so far */
	size_t skip;    /* the span starts this far into the buffer */
	unsigned file;
	int fd;
	int pending;
};

struct src_worker {
	struct uring_source *s;
	struct io_uring ring;
	int ring_ok;
	unsigned max_spans, depth;
	size_t buf_len;
	unsigned char *mem; /* depth x max_spans buffers of buf_len */
	struct iovec *iov;
	struct uspan *sp;   /* depth x max_spans */
	unsigned *left;     /* spans still incomplete, per slot */
};

static unsigned file_align(int fd)
{
#if defined(STATX_DIOALIGN)
	struct statx stx;
	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align) {
		unsigned a = stx.stx_dio_offset_align;
		if (stx.stx_dio_mem_align > a)
			a = stx.stx_dio_mem_align;
		return a;
	}
#else
	(void)fd;
#endif
	return URING_ALIGN_DEFAULT;
}

static unsigned char *buf_of(struct src_worker *w, unsigned slot, unsigned i)
{
	return w->mem + ((size_t)slot * w->max_spans + i) * w->buf_len;
}

static int queue(struct src_worker *w, unsigned slot, unsigned i, struct lines_error *err)
{
	struct uspan *u = &w->sp[(size_t)slot * w->max_spans + i];
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
	RETURN_ERROR_IF(!sqe, err, LINES_EIO, NULL, NULL, "io_uring submission queue is full");
	io_uring_prep_read_fixed(sqe, u->fd, buf_of(w, slot, i) + u->done, (unsigned)(u->len - u->done),
	                         u->off + u->done, (int)(slot * w->max_spans + i));
	io_uring_sqe_set_data64(sqe, ((uint64_t)slot << 32) | i);
	u->pending = 1;
	return 0;
}

static int ur_worker_open(struct source *base, unsigned max_spans, size_t max_len, unsigned depth,
                          struct src_worker **out, struct lines_error *err)
{
	struct uring_source *s = (struct uring_source *)base;
	struct src_worker *w = calloc(1, sizeof(*w));
	unsigned nbuf = depth * max_spans;
	int rc;

	RETURN_ERROR_IF(!w, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	w->s = s;
	w->max_spans = max_spans;
	w->depth = depth;
	/* room for an aligned-down start and an aligned-up end */
	w->buf_len = (max_len + 2 * (size_t)s->max_align + s->max_align - 1) & ~((size_t)s->max_align - 1);
	w->mem = aligned_alloc(s->max_align, w->buf_len * nbuf);
	w->iov = calloc(nbuf, sizeof(*w->iov));
	w->sp = calloc(nbuf, sizeof(*w->sp));
	w->left = calloc(depth, sizeof(*w->left));
	if (!w->mem || !w->iov || !w->sp || !w->left) {
		free(w->mem), free(w->iov), free(w->sp), free(w->left), free(w);
		return lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory for read buffers");
	}
	if ((rc = io_uring_queue_init(nbuf < 8 ? 8 : nbuf, &w->ring, 0)) < 0) {
		free(w->mem), free(w->iov), free(w->sp), free(w->left), free(w);
		return lines_errno(err, -rc, NULL, "cannot set up io_uring");
	}
	w->ring_ok = 1;
	for (unsigned i = 0; i < nbuf; i++) {
		w->iov[i].iov_base = w->mem + (size_t)i * w->buf_len;
		w->iov[i].iov_len = w->buf_len;
	}
	if ((rc = io_uring_register_buffers(&w->ring, w->iov, nbuf)) < 0) {
		io_uring_queue_exit(&w->ring);
		free(w->mem), free(w->iov), free(w->sp), free(w->left), free(w);
		return lines_errno(err, -rc, NULL, "cannot register io_uring buffers");
	}
	*out = w;
	return 0;
}

static int ur_start(struct src_worker *w, struct src_batch *b, struct lines_error *err)
{
	struct uspan *sp = &w->sp[(size_t)b->slot * w->max_spans];
	unsigned queued = 0;
	int rc;

	w->left[b->slot] = 0;
	for (unsigned i = 0; i < b->n; i++) {
		const struct src_span *s = &b->span[i];
		unsigned a = __atomic_load_n(&w->s->align[s->file], __ATOMIC_RELAXED);
		struct uspan *u = &sp[i];
		uint64_t end = s->off + s->len;

		u->file = s->file;
		u->fd = w->s->dfd[s->file] >= 0 && a > 1 ? w->s->dfd[s->file]
		                                         : w->s->base.files[s->file].fd;
		u->off = s->off - s->off % a;
		u->skip = (size_t)(s->off - u->off);
		if (a > 1 && end % a) {
			/* read whole blocks; the file may end inside the last one */
			uint64_t aend = end + (a - end % a), fsize = w->s->base.files[s->file].size;
			end = aend;
			if (fsize != UINT64_MAX && aend > fsize)
				end = fsize + (fsize % a ? a - fsize % a : 0);
		}
		u->len = (size_t)(end - u->off);
		u->need = u->skip + s->len;
		u->done = 0;
		u->pending = 0;
		b->ptr[i] = buf_of(w, b->slot, i) + u->skip;
		if (s->len == 0)
			continue;
		if ((rc = queue(w, b->slot, i, err)) < 0)
			return rc;
		/* Ask the kernel to read the next chunk of this file ahead: the
		 * reads of the workers interleave, which defeats its own
		 * sequential read-ahead. Not for a file in the page cache: there
		 * the kernel would only look up every page once more. */
		if (u->fd == w->s->base.files[s->file].fd && !w->s->hot[s->file])
			posix_fadvise(u->fd, (off_t)end, (off_t)s->len, POSIX_FADV_WILLNEED);
		queued++;
		w->left[b->slot]++;
	}
	if (queued && (rc = io_uring_submit(&w->ring)) < 0)
		return lines_errno(err, -rc, NULL, "io_uring submit failed");
	return 0;
}

static int ur_finish(struct src_worker *w, struct src_batch *b, struct lines_error *err)
{
	while (w->left[b->slot]) {
		struct io_uring_cqe *cqe;
		int rc = io_uring_wait_cqe(&w->ring, &cqe);
		if (rc == -EINTR)
			continue;
		if (rc < 0)
			return lines_errno(err, -rc, NULL, "io_uring wait failed");
		uint64_t ud = io_uring_cqe_get_data64(cqe);
		unsigned slot = (unsigned)(ud >> 32), i = (unsigned)ud;
		int res = cqe->res;
		io_uring_cqe_seen(&w->ring, cqe);

		struct uspan *u = &w->sp[(size_t)slot * w->max_spans + i];
		const struct src_file *f = &w->s->base.files[u->file];
		u->pending = 0;
		if (res == -EINTR || res == -EAGAIN) {
			FORWARD_IF_ERROR(queue(w, slot, i, err));
		} else if (res == -EINVAL && u->fd != f->fd) {
			/* this file system refuses O_DIRECT after all: read buffered
			 * (the aligned range is still a valid buffered read) */
			__atomic_store_n(&w->s->align[u->file], 1u, __ATOMIC_RELAXED);
			u->fd = f->fd;
			FORWARD_IF_ERROR(queue(w, slot, i, err));
		} else if (res < 0) {
			return lines_errno(err, -res, f->path, "read failed");
		} else {
			u->done += (size_t)res;
			if (u->done >= u->need) {
				w->left[slot]--;
				continue;
			}
			RETURN_ERROR_IF(res == 0, err, LINES_ECHANGED, f->path, NULL,
			                "the file is shorter than when it was opened "
			                "(truncated during the run?)");
			FORWARD_IF_ERROR(queue(w, slot, i, err)); /* a short read: the rest */
		}
		rc = io_uring_submit(&w->ring);
		if (rc < 0)
			return lines_errno(err, -rc, NULL, "io_uring submit failed");
	}
	return 0;
}

static void ur_release(struct src_worker *w, struct src_batch *b)
{
	/* Reads still in flight (after an error) must land before their
	 * buffers are reused: wait for them. */
	struct uspan *sp = &w->sp[(size_t)b->slot * w->max_spans];
	for (unsigned i = 0; i < b->n; i++)
		while (sp[i].pending) {
			struct io_uring_cqe *cqe;
			if (io_uring_wait_cqe(&w->ring, &cqe) < 0)
				return;
			uint64_t ud = io_uring_cqe_get_data64(cqe);
			w->sp[(size_t)(ud >> 32) * w->max_spans + (unsigned)ud].pending = 0;
			io_uring_cqe_seen(&w->ring, cqe);
		}
}

static void ur_worker_close(struct src_worker *w)
{
	if (!w)
		return;
	if (w->ring_ok)
		io_uring_queue_exit(&w->ring);
	free(w->mem);
	free(w->iov);
	free(w->sp);
	free(w->left);
	free(w);
}

static void ur_close(struct source *base)
{
	struct uring_source *s = (struct uring_source *)base;
	for (unsigned f = 0; f < base->nfiles; f++)
		if (s->dfd[f] >= 0)
			close(s->dfd[f]);
	free(s->dfd);
	free(s->hot);
	free(s->align);
	free(s);
}

static uint64_t ur_worker_bytes(unsigned max_spans, size_t max_len, unsigned depth)
{
	return (uint64_t)depth * max_spans * (max_len + 3 * (uint64_t)URING_ALIGN_DEFAULT);
}

/*
 * Whether each file is in the page cache, from 64 of its pages spread
 * evenly (mincore on a mapping that is never touched): a guess that only
 * decides whether to ask for read-ahead, so a wrong one costs time, never
 * a byte of the result.
 */
static int ur_pass_begin(struct source *base, struct lines_error *err)
{
	struct uring_source *s = (struct uring_source *)base;
	long pg = sysconf(_SC_PAGESIZE);
	(void)err;
	for (unsigned f = 0; f < base->nfiles; f++) {
		uint64_t size = base->files[f].size, npages;
		unsigned char *map;
		s->hot[f] = 0;
		if (size == 0 || size == UINT64_MAX || pg <= 0 || s->dfd[f] >= 0)
			continue;
		map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, base->files[f].fd, 0);
		if (map == MAP_FAILED)
			continue;
		npages = (size + (uint64_t)pg - 1) / (uint64_t)pg;
		s->hot[f] = 1;
		for (unsigned q = 0; q < 64 && s->hot[f]; q++) {
			unsigned char v = 0;
			uint64_t page = npages * q / 64;
			if (mincore(map + page * (uint64_t)pg, (size_t)pg, &v) < 0 || !(v & 1))
				s->hot[f] = 0;
		}
		munmap(map, (size_t)size);
	}
	return 0;
}

const struct src_ops src_uring_ops = {
	.name = "uring",
	.open = src_uring_open,
	.worker_open = ur_worker_open,
	.start = ur_start,
	.finish = ur_finish,
	.release = ur_release,
	.worker_close = ur_worker_close,
	.close = ur_close,
	.worker_bytes = ur_worker_bytes,
	.pass_begin = ur_pass_begin,
	/* small enough that the bytes the kernel copies in are still in the
	 * cache when the kernels read them */
	.default_chunk = 512u << 10,
	.mapped = 0,
};

int src_uring_available(void)
{
	struct io_uring ring;
	if (io_uring_queue_init(2, &ring, 0) < 0)
		return 0;
	io_uring_queue_exit(&ring);
	return 1;
}

int src_uring_open(struct source **out, const struct src_file *files, unsigned nfiles, int direct,
                   struct lines_error *err)
{
	struct uring_source *s = calloc(1, sizeof(*s));
	RETURN_ERROR_IF(!s, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	s->dfd = calloc(nfiles ? nfiles : 1, sizeof(*s->dfd));
	s->align = calloc(nfiles ? nfiles : 1, sizeof(*s->align));
	s->hot = calloc(nfiles ? nfiles : 1, 1);
	if (!s->dfd || !s->align || !s->hot) {
		free(s->dfd), free(s->align), free(s->hot), free(s);
		return lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory");
	}
	s->base.ops = &src_uring_ops;
	s->base.files = files;
	s->base.nfiles = nfiles;
	s->max_align = URING_ALIGN_DEFAULT;
	for (unsigned f = 0; f < nfiles; f++) {
		s->dfd[f] = -1;
		s->align[f] = 1;
		if (!direct)
			continue;
		char path[64];
		snprintf(path, sizeof(path), "/proc/self/fd/%d", files[f].fd);
		int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
		if (fd < 0)
			continue; /* no O_DIRECT here: buffered reads */
		unsigned a = file_align(fd);
		if (a > 65536 || (a & (a - 1))) {
			close(fd);
			continue;
		}
		s->dfd[f] = fd;
		s->align[f] = a;
		if (a > s->max_align)
			s->max_align = a;
	}
	*out = &s->base;
	return 0;
}

#endif /* HAVE_URING */
