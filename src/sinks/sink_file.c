/*
 * sink_file.c -- output files that are either complete or absent.
 *
 * The bytes go to a temporary file in the destination directory (so the
 * final rename stays on one file system and is atomic). commit() fsyncs
 * the file, gives it the mode a new file would get (mkstemp makes it
 * 0600), renames it over OUT and fsyncs the directory. Any failure, and
 * abort() on SIGINT or SIGTERM, removes the temporary file. A SIGKILL can
 * leave one behind; its name is unique and hidden, and no later run ever
 * opens it, so it cannot confuse anything.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sink.h"

struct sink_file {
	struct sink base;
	int fd;
	char *path; /* final name */
	char *tmp;  /* temporary name, NULL once renamed or removed */
	mode_t mode;
};

static int sf_write(struct sink *s, const void *buf, size_t len, struct lines_error *err)
{
	struct sink_file *f = (struct sink_file *)s;
	int rc = full_write(f->fd, buf, len);
	if (rc == -EINTR)
		return lines_errf(err, LINES_ECANCELED, f->path, NULL, "interrupted");
	if (rc < 0)
		return lines_errno(err, -rc, f->path, "cannot write");
	return 0;
}

static void sf_abort(struct sink *s)
{
	struct sink_file *f = (struct sink_file *)s;
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	if (f->tmp)
		unlink(f->tmp);
	free(f->tmp);
	f->tmp = NULL;
}

static int sf_commit(struct sink *s, struct lines_error *err)
{
	struct sink_file *f = (struct sink_file *)s;
	char *dcopy;
	int dfd, rc = 0;

	if (fchmod(f->fd, f->mode) < 0 || fsync(f->fd) < 0) {
		rc = lines_errno(err, errno, f->path, "cannot sync");
		goto fail;
	}
	if (close(f->fd) < 0) {
		f->fd = -1;
		rc = lines_errno(err, errno, f->path, "cannot close");
		goto fail;
	}
	f->fd = -1;
	if (rename(f->tmp, f->path) < 0) {
		rc = lines_errno(err, errno, f->path, "cannot rename the temporary file into place");
		goto fail;
	}
	free(f->tmp);
	f->tmp = NULL;
	/* make the rename itself durable */
	dcopy = strdup(f->path);
	if (dcopy) {
		dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
		free(dcopy);
	}
	return 0;
fail:
	sf_abort(s);
	return rc;
}

static void sf_free(struct sink *s)
{
	struct sink_file *f = (struct sink_file *)s;
	sf_abort(s); /* no-op after a commit */
	free(f->path);
	free(f);
}

static int no_finish(struct sink *s, struct lines_error *err)
{
	(void)s, (void)err;
	return 0;
}

static const struct sink_ops sink_file_ops = {sf_write, no_finish, sf_commit, sf_abort, sf_free};

/*
 * The umask, read without changing it: umask() can only be read by
 * setting it, and between the two calls another thread (a second plan,
 * or the program's own) would create files with the wrong mode, or two
 * of us would leave it changed for good. Linux (4.7 and later) shows it
 * in /proc/self/status; only without /proc do we fall back to umask(),
 * and then only once per process.
 */
static mode_t fallback_umask;
static pthread_once_t fallback_once = PTHREAD_ONCE_INIT;

static void read_umask_once(void)
{
	fallback_umask = umask(022);
	umask(fallback_umask);
}

mode_t sink_umask(void)
{
	FILE *fp = fopen("/proc/self/status", "re");
	char line[256];
	unsigned long um;

	if (fp) {
		while (fgets(line, sizeof(line), fp))
			if (sscanf(line, "Umask: %lo", &um) == 1) {
				fclose(fp);
				return (mode_t)(um & 0777);
			}
		fclose(fp);
	}
	pthread_once(&fallback_once, read_umask_once);
	return fallback_umask;
}

int sink_file_open(struct sink **out, const char *path, struct lines_error *err)
{
	struct sink_file *f;
	char *dcopy = NULL, *bcopy = NULL;
	struct stat st;
	mode_t um;
	int rc = 0;

	*out = NULL;
	if (stat(path, &st) == 0 && (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode))) {
		int fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			return lines_errno(err, errno, path, "cannot open the output");
		return sink_fd_open(out, fd, 1, path, err);
	}
	f = calloc(1, sizeof(*f));
	RETURN_ERROR_IF(!f, err, LINES_ENOMEM, path, NULL, "out of memory");
	f->fd = -1;
	f->path = strdup(path);
	dcopy = strdup(path);
	bcopy = strdup(path);
	if (!f->path || !dcopy || !bcopy) {
		rc = lines_errf(err, LINES_ENOMEM, path, NULL, "out of memory");
		goto out;
	}
	{
		const char *dir = dirname(dcopy), *base = basename(bcopy);
		size_t n = strlen(dir) + strlen(base) + 32;
		f->tmp = malloc(n);
		if (!f->tmp) {
			rc = lines_errf(err, LINES_ENOMEM, path, NULL, "out of memory");
			goto out;
		}
		snprintf(f->tmp, n, "%s/.%s.lines-XXXXXX", dir, base);
	}
	f->fd = mkostemp(f->tmp, O_CLOEXEC);
	if (f->fd < 0) {
		rc = lines_errno(err, errno, path, "cannot create a temporary file in its directory");
		free(f->tmp);
		f->tmp = NULL;
		goto out;
	}
	um = sink_umask();
	f->mode = 0666 & ~um;
	f->base.ops = &sink_file_ops;
	f->base.name = f->path;
	*out = &f->base;
out:
	free(dcopy);
	free(bcopy);
	if (rc < 0) {
		free(f->path);
		free(f->tmp);
		free(f);
	}
	return rc;
}

/* ---- a plain descriptor --------------------------------------------------- */
struct sink_fd {
	struct sink base;
	int fd;
	int own;
	char *name;
};

static int sd_write(struct sink *s, const void *buf, size_t len, struct lines_error *err)
{
	struct sink_fd *f = (struct sink_fd *)s;
	int rc = full_write(f->fd, buf, len);
	if (rc == -EINTR)
		return lines_errf(err, LINES_ECANCELED, s->name, NULL, "interrupted");
	if (rc < 0)
		return lines_errno(err, -rc, s->name, "cannot write");
	return 0;
}
static int sd_commit(struct sink *s, struct lines_error *err)
{
	struct sink_fd *f = (struct sink_fd *)s;
	if (f->own && f->fd >= 0) {
		int rc = close(f->fd);
		f->fd = -1;
		if (rc < 0)
			return lines_errno(err, errno, s->name, "cannot close");
	}
	return 0;
}
static void sd_abort(struct sink *s) { (void)s; }
static void sd_free(struct sink *s)
{
	struct sink_fd *f = (struct sink_fd *)s;
	if (f->own && f->fd >= 0)
		close(f->fd);
	free(f->name);
	free(s);
}

static const struct sink_ops sink_fd_ops = {sd_write, no_finish, sd_commit, sd_abort, sd_free};

int sink_fd_open(struct sink **out, int fd, int own, const char *name, struct lines_error *err)
{
	struct sink_fd *f = calloc(1, sizeof(*f));
	if (f)
		f->name = strdup(name);
	if (!f || !f->name) {
		free(f);
		if (own)
			close(fd);
		return lines_errf(err, LINES_ENOMEM, name, NULL, "out of memory");
	}
	f->fd = fd;
	f->own = own;
	f->base.ops = &sink_fd_ops;
	f->base.name = f->name;
	*out = &f->base;
	return 0;
}
