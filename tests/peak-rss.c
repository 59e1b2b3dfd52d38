/*
 * peak-rss.c -- run a command and print its peak resident set size.
 *
 *   peak-rss FILE CMD [ARGS...]
 *
 * runs CMD, writes its peak RSS in KiB (from wait4's rusage) to FILE and
 * exits with CMD's exit status. Used by the memory tests and `make bench`
 * instead of GNU time, which a minimal system lacks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct rusage ru;
	int st;
	pid_t pid;
	FILE *f;

	if (argc < 3) {
		fprintf(stderr, "usage: peak-rss FILE CMD [ARGS...]\n");
		return 2;
	}
	pid = fork();
	if (pid < 0) {
		perror("peak-rss: fork");
		return 2;
	}
	if (pid == 0) {
		execvp(argv[2], argv + 2);
		perror(argv[2]);
		_exit(127);
	}
	if (wait4(pid, &st, 0, &ru) < 0) {
		perror("peak-rss: wait4");
		return 2;
	}
	if (!(f = fopen(argv[1], "w"))) {
		perror(argv[1]);
		return 2;
	}
	fprintf(f, "%ld\n", ru.ru_maxrss);
	fclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
