/*
 * sink.h -- where output bytes go.
 *
 * A sink takes the output as one ordered stream of bytes. finish() says
 * no more bytes will come (a compressor flushes its last frame, a hash
 * takes its digest); commit() makes the output durable and visible (for a
 * file: fsync, then rename over OUT); abort() makes sure no partial output
 * is left (the temporary file is removed); commit or abort ends the sink's
 * life, and free() releases it. Sinks stack: a sink that compresses or
 * hashes writes into the next one and passes finish, commit, abort and
 * free down.
 *
 * Implementations: a file written through a temporary name and a plain
 * descriptor (sink_file.c), zstd compression (sink_zstd.c), XXH3-128 of
 * the bytes that pass (checksum.c). Calls return 0 or a negative LINES_E*.
 */
#ifndef LINES_SINK_H
#define LINES_SINK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "internal.h"

struct sink;

struct sink_ops {
	int (*write)(struct sink *s, const void *buf, size_t len, struct lines_error *err);
	int (*finish)(struct sink *s, struct lines_error *err);
	int (*commit)(struct sink *s, struct lines_error *err);
	void (*abort)(struct sink *s);
	void (*free)(struct sink *s);
};

struct sink {
	const struct sink_ops *ops;
	const char *name; /* for messages: the final path or "(stdout)" */
	uint64_t written;
};

static inline int sink_write(struct sink *s, const void *buf, size_t len,
                             struct lines_error *err)
{
	int rc = s->ops->write(s, buf, len, err);
	if (rc == 0)
		s->written += len;
	return rc;
}
static inline int sink_finish(struct sink *s, struct lines_error *err)
{
	return s->ops->finish(s, err);
}
static inline int sink_commit(struct sink *s, struct lines_error *err)
{
	return s->ops->commit(s, err);
}
static inline void sink_abort(struct sink *s) { s->ops->abort(s); }
static inline void sink_free(struct sink *s)
{
	if (s)
		s->ops->free(s);
}

/*
 * A file written as DIR/.NAME.lines-XXXXXX and renamed to path on commit.
 * When path exists and is a character device or a FIFO (/dev/null, a
 * named pipe) it is opened and written directly instead: renaming over it
 * would replace the device with a regular file.
 */
int sink_file_open(struct sink **out, const char *path, struct lines_error *err);
/* The process's umask, read without changing it (thread-safe). */
mode_t sink_umask(void);

/* An already open descriptor; closed by the sink when own is set. */
int sink_fd_open(struct sink **out, int fd, int own, const char *name, struct lines_error *err);

/*
 * zstd compression into next (which the new sink owns): one frame with the
 * content checksum, compressed by `workers` threads of libzstd (0: in the
 * calling thread) at `level`.
 */
int sink_zstd_open(struct sink **out, struct sink *next, int level, unsigned workers,
                   struct lines_error *err);

/* XXH3-128 of every byte written into next (owned); *digest is set by finish. */
struct xxh128 {
	uint64_t lo, hi;
};
int sink_hash_open(struct sink **out, struct sink *next, struct xxh128 *digest,
                   struct lines_error *err);

#endif
