/*
 * kern_dispatch.c -- choose the kernels once, at first use.
 *
 * The choice is the best instruction set that was built and that the CPU
 * runs, unless LINES_ISA forces one (tests use it to compare sets). An
 * unsupported forced choice is an error, not a silent fallback: a test
 * that asks for avx2 must not quietly compare scalar with scalar.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

static int cpu_has(const char *isa)
{
	if (!strcmp(isa, "scalar"))
		return 1;
#if defined(HAVE_KERN_AVX2) && (defined(__x86_64__) || defined(__i386__))
	if (!strcmp(isa, "avx2")) {
		__builtin_cpu_init();
		return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
		       __builtin_cpu_supports("f16c");
	}
#endif
#if defined(HAVE_KERN_AVX512) && (defined(__x86_64__) || defined(__i386__))
	if (!strcmp(isa, "avx512")) { /* the AVX2 table with AVX-512 TIES kernels */
		__builtin_cpu_init();
		return cpu_has("avx2") && __builtin_cpu_supports("avx512f") &&
		       __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
		       __builtin_cpu_supports("avx512vl");
	}
#endif
#if defined(HAVE_KERN_NEON) && defined(__aarch64__)
	if (!strcmp(isa, "neon"))
		return 1; /* Advanced SIMD and FP16 conversions are baseline on aarch64 */
#endif
	return 0;
}

#ifdef HAVE_KERN_AVX512
static struct kern kern_avx512;
static pthread_once_t avx512_once = PTHREAD_ONCE_INIT;
static void make_avx512(void) { kern_avx512_fill(&kern_avx512); }
#endif

const struct kern *kern_by_name(const char *name)
{
#ifdef HAVE_KERN_AVX512
	pthread_once(&avx512_once, make_avx512);
#endif
	static const struct kern *const all[] = {
#ifdef HAVE_KERN_AVX512
		&kern_avx512,
#endif
#ifdef HAVE_KERN_AVX2
		&kern_avx2,
#endif
#ifdef HAVE_KERN_NEON
		&kern_neon,
#endif
		&kern_scalar,
	};
	for (size_t i = 0; i < ARRAY_SIZE(all); i++)
		if (!strcmp(all[i]->name, name))
			return cpu_has(name) ? all[i] : NULL;
	return NULL;
}

static const struct kern *chosen;
static char chosen_err[128];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void choose(void)
{
	const char *force = getenv("LINES_ISA");
	static const char *const order[] = {"avx512", "avx2", "neon", "scalar"};

	if (force && *force) {
		chosen = kern_by_name(force);
		if (!chosen)
			snprintf(chosen_err, sizeof(chosen_err),
			         "LINES_ISA=%s: this build or this CPU has no such kernels", force);
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(order) && !chosen; i++)
		chosen = kern_by_name(order[i]);
}

const struct kern *kern_get(struct lines_error *err)
{
	pthread_once(&once, choose);
	if (!chosen)
		lines_errf(err, LINES_EUSAGE, NULL, NULL, "%s", chosen_err);
	return chosen;
}

const char *lines_kernels(struct lines_error *err)
{
	const struct kern *k = kern_get(err);
	return k ? k->name : NULL;
}
