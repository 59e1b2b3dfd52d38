/*
 * source.h -- chunk sources: where the bytes of the inputs come from.
 *
 * A source serves byte ranges ("spans") of a fixed set of open files. A
 * worker thread asks for all the spans one job needs at once (a batch):
 * start() begins the reads, finish() waits until every span is readable
 * at batch->ptr[i], release() gives the memory back. A worker may have up
 * to `depth` batches started at once (it starts job k+1 before computing
 * job k), each in its own batch slot.
 *
 * Sources know nothing of tensors or methods. Implementations: mmap
 * (src_mmap.c) and io_uring (src_uring.c). Every call returns 0 or a
 * negative LINES_E* code.
 */
#ifndef LINES_SOURCE_H
#define LINES_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

struct src_file {
	const char *path;
	int fd;
	uint64_t size;
};

struct src_span {
	unsigned file;
	uint64_t off;
	size_t len;
};

struct src_batch {
	unsigned slot; /* 0 .. depth-1, chosen by the caller */
	uint64_t seq;  /* the job's number in its pass (streams read in this order) */
	unsigned n;
	const struct src_span *span;
	const unsigned char **ptr; /* n entries, set by finish() */
};

struct source;
struct src_worker;

struct src_ops {
	const char *name;
	/* a source over nfiles open files (direct: O_DIRECT where it can; a
	 * source that cannot ignores it); NULL for a wrapper such as
	 * src_stream, which is opened over another source */
	int (*open)(struct source **s, const struct src_file *files, unsigned nfiles, int direct,
	            struct lines_error *err);
	int (*worker_open)(struct source *s, unsigned max_spans, size_t max_len, unsigned depth,
	                   struct src_worker **w, struct lines_error *err);
	int (*start)(struct src_worker *w, struct src_batch *b, struct lines_error *err);
	int (*finish)(struct src_worker *w, struct src_batch *b, struct lines_error *err);
	void (*release)(struct src_worker *w, struct src_batch *b);
	void (*worker_close)(struct src_worker *w);
	void (*close)(struct source *s);
	/* bytes of memory a worker holds at most, for the plan's memory bound */
	uint64_t (*worker_bytes)(unsigned max_spans, size_t max_len, unsigned depth);
	/* the chunk size this source works best with (measured, see bench/) */
	size_t default_chunk;
	/* 1 when the bytes are mapped pages of the file (a fault can SIGBUS) */
	int mapped;
	/* optional: called before each pass (jobs are numbered from 0 again) */
	int (*pass_begin)(struct source *s, struct lines_error *err);
	/* optional: wake and fail every worker waiting in start() (an abort) */
	void (*cancel)(struct source *s);
};

struct source {
	const struct src_ops *ops;
	const struct src_file *files;
	unsigned nfiles;
};

int src_mmap_open(struct source **s, const struct src_file *files, unsigned nfiles, int direct,
                  struct lines_error *err);
extern const struct src_ops src_mmap_ops;

/*
 * Wrap inner so that the files with a stream in zs[file] (standard input,
 * .zst) are read in order, by job number; zs has inner->nfiles entries and
 * stays owned by the caller. The new source owns inner.
 */
struct zstream;
int src_stream_open(struct source **s, struct source *inner, struct zstream **zs,
                    struct lines_error *err);
uint64_t src_stream_worker_bytes(const struct src_ops *inner, unsigned max_spans, size_t max_len,
                                 unsigned depth);

#ifdef HAVE_URING
/* 1 when this kernel lets us set up a ring (not ENOSYS, EPERM, disabled). */
int src_uring_available(void);
/* direct: read with O_DIRECT where the file system allows it. */
int src_uring_open(struct source **s, const struct src_file *files, unsigned nfiles, int direct,
                   struct lines_error *err);
extern const struct src_ops src_uring_ops;
#endif

#endif
