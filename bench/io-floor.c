/*
 * io-floor.c -- the I/O floor of a merge: read every input once and write
 * one output of the base's size, with plain read(2) and write(2), the
 * inputs taken round-robin a chunk at a time as lines takes them; then
 * fsync(2) the output, as lines does before its rename. No arithmetic.
 * `make bench` compares lines with this, run on the same files, on the
 * same machine, just before.
 *
 *   io-floor [--no-fsync] [--chunk BYTES] OUT IN...
 *
 * prints the seconds it took.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	size_t chunk = 512 << 10;
	int do_sync = 1, a = 1;

	for (; a < argc && argv[a][0] == '-' && argv[a][1]; a++) {
		if (!strcmp(argv[a], "--no-fsync"))
			do_sync = 0;
		else if (!strcmp(argv[a], "--chunk") && a + 1 < argc)
			chunk = strtoul(argv[++a], NULL, 10);
		else
			break;
	}
	if (argc - a < 2) {
		fprintf(stderr, "usage: io-floor [--no-fsync] [--chunk BYTES] OUT IN...\n");
		return 2;
	}
	const char *out = argv[a++];
	int n = argc - a, *fd = calloc((size_t)n, sizeof(int)), *eof = calloc((size_t)n, sizeof(int));
	unsigned char *buf = malloc(chunk);
	if (!fd || !eof || !buf)
		return 2;
	double t0 = now();
	for (int i = 0; i < n; i++)
		if ((fd[i] = open(argv[a + i], O_RDONLY)) < 0) {
			perror(argv[a + i]);
			return 1;
		}
	int ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (ofd < 0) {
		perror(out);
		return 1;
	}
	for (int left = n; left;) {
		for (int i = 0; i < n; i++) {
			if (eof[i])
				continue;
			size_t got = 0;
			while (got < chunk) {
				ssize_t r = read(fd[i], buf + got, chunk - got);
				if (r < 0 && errno == EINTR)
					continue;
				if (r < 0) {
					perror(argv[a + i]);
					return 1;
				}
				if (r == 0)
					break;
				got += (size_t)r;
			}
			if (got < chunk) {
				eof[i] = 1;
				left--;
			}
			if (i == 0) /* the output has the base's size */
				for (size_t w = 0; w < got;) {
					ssize_t r = write(ofd, buf + w, got - w);
					if (r < 0 && errno == EINTR)
						continue;
					if (r < 0) {
						perror(out);
						return 1;
					}
					w += (size_t)r;
				}
		}
	}
	if (do_sync && fsync(ofd) < 0) {
		perror(out);
		return 1;
	}
	close(ofd);
	for (int i = 0; i < n; i++)
		close(fd[i]);
	printf("%.3f\n", now() - t0);
	return 0;
}
