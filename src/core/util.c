/*
 * util.c -- the error record, the dtype table, cancellation and the I/O
 * loops that every reader and writer uses.
 */
#include "config.h"

#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#ifdef HAVE_MALLINFO2
#include <malloc.h>
#endif

#include "internal.h"
#include "strutil.h"

/* Cut s (a string that was cut at its end) back to its last whole UTF-8
 * character, so that a message never ends inside one. */
static void utf8_trim_end(char *s)
{
	s[utf8_whole_prefix(s, strlen(s))] = '\0';
}

static void copy_str(char *dst, size_t cap, const char *src)
{
	if (!src)
		src = "";
	size_t n = strlen(src);
	if (n >= cap) {
		/* keep the end of a long path: it is the part that tells, from
		 * the start of a character */
		if (cap > 4) {
			const char *from = src + n - (cap - 4);
			while (((unsigned char)*from & 0xc0) == 0x80)
				from++;
			memcpy(dst, "...", 3);
			memcpy(dst + 3, from, strlen(from) + 1);
			return;
		}
		n = cap - 1;
	}
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static int verrf(struct lines_error *err, int code, int errnum, const char *file,
                 const char *tensor, const char *fmt, va_list ap)
{
	if (!err)
		return code;
	err->code = code;
	err->sys_errno = errnum;
	copy_str(err->file, sizeof(err->file), file);
	copy_str(err->tensor, sizeof(err->tensor), tensor);
	if (vsnprintf(err->msg, sizeof(err->msg), fmt, ap) >= (int)sizeof(err->msg))
		utf8_trim_end(err->msg);
	if (errnum) {
		size_t n = strlen(err->msg);
		snprintf(err->msg + n, sizeof(err->msg) - n, "%s%s", n ? ": " : "",
		         strerror(errnum));
	}
	return code;
}

int lines_errf(struct lines_error *err, int code, const char *file, const char *tensor,
               const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	verrf(err, code, 0, file, tensor, fmt, ap);
	va_end(ap);
	return code;
}

int lines_errno(struct lines_error *err, int errnum, const char *file, const char *fmt, ...)
{
	va_list ap;
	int code = errnum == ENOMEM ? LINES_ENOMEM : LINES_EIO;
	va_start(ap, fmt);
	verrf(err, code, errnum, file, NULL, fmt, ap);
	va_end(ap);
	return code;
}

void lines_logf(const struct lines_merge_opts *o, enum lines_level level, const char *file,
                const char *tensor, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	if (!o->log)
		return;
	va_start(ap, fmt);
	if (vsnprintf(msg, sizeof(msg), fmt, ap) >= (int)sizeof(msg))
		utf8_trim_end(msg);
	va_end(ap);
	o->log(o->cb_ctx, level, file ? file : "", tensor ? tensor : "", msg);
}

size_t lines_heap_in_use(void)
{
	/* the resident set: what the heap holds, freed or not (the allocator
	 * keeps freed pages), and the program itself */
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long size = 0, resident = 0;
	int got = f ? fscanf(f, "%lu %lu", &size, &resident) : 0;
	if (f)
		fclose(f);
	if (got == 2)
		return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
#ifdef HAVE_MALLINFO2
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd; /* small chunks in use, and mmapped ones */
#else
	return 0;
#endif
}

void lines_fmt_double(char *buf, size_t n, double v)
{
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, n, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			return;
	}
}

const char *lines_strerror(int code)
{
	switch (code) {
	case LINES_OK: return "success";
	case LINES_EUSAGE: return "invalid usage";
	case LINES_EFORMAT: return "malformed input";
	case LINES_EMISMATCH: return "incompatible inputs";
	case LINES_EIO: return "input/output error";
	case LINES_ENOMEM: return "out of memory";
	case LINES_ECANCELED: return "interrupted";
	case LINES_EUNSUPPORTED: return "not supported";
	case LINES_ECHANGED: return "input changed during the run";
	case LINES_ECORRUPT: return "damaged file";
	}
	return "unknown error";
}

/* ---- dtypes --------------------------------------------------------------- */
const struct dtype_desc dtype_table[DT_COUNT] = {
	[DT_BOOL] = {"BOOL", 8, 0, 0, 1, 1},
	[DT_F4] = {"F4", 4, 1, 0, 2, 1},
	[DT_F6_E2M3] = {"F6_E2M3", 6, 1, 0, 4, 3},
	[DT_F6_E3M2] = {"F6_E3M2", 6, 1, 0, 4, 3},
	[DT_U8] = {"U8", 8, 0, 0, 1, 1},
	[DT_I8] = {"I8", 8, 0, 0, 1, 1},
	[DT_F8_E5M2] = {"F8_E5M2", 8, 1, 0, 1, 1},
	[DT_F8_E4M3] = {"F8_E4M3", 8, 1, 0, 1, 1},
	[DT_F8_E8M0] = {"F8_E8M0", 8, 1, 0, 1, 1},
	[DT_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8, 1, 0, 1, 1},
	[DT_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8, 1, 0, 1, 1},
	[DT_I16] = {"I16", 16, 0, 0, 1, 2},
	[DT_U16] = {"U16", 16, 0, 0, 1, 2},
	[DT_F16] = {"F16", 16, 1, 1, 1, 2},
	[DT_BF16] = {"BF16", 16, 1, 1, 1, 2},
	[DT_I32] = {"I32", 32, 0, 0, 1, 4},
	[DT_U32] = {"U32", 32, 0, 0, 1, 4},
	[DT_F32] = {"F32", 32, 1, 1, 1, 4},
	[DT_C64] = {"C64", 64, 1, 0, 1, 8},
	[DT_F64] = {"F64", 64, 1, 1, 1, 8},
	[DT_I64] = {"I64", 64, 0, 0, 1, 8},
	[DT_U64] = {"U64", 64, 0, 0, 1, 8},
	/* ggml's blocks (ggml-common.h): bits 0, as no safetensors size uses them */
	[DT_Q4_0] = {"Q4_0", 0, 1, 0, 32, 18},
	[DT_Q4_1] = {"Q4_1", 0, 1, 0, 32, 20},
	[DT_Q5_0] = {"Q5_0", 0, 1, 0, 32, 22},
	[DT_Q5_1] = {"Q5_1", 0, 1, 0, 32, 24},
	[DT_Q8_0] = {"Q8_0", 0, 1, 0, 32, 34},
	[DT_Q2_K] = {"Q2_K", 0, 1, 0, 256, 84},
	[DT_Q3_K] = {"Q3_K", 0, 1, 0, 256, 110},
	[DT_Q4_K] = {"Q4_K", 0, 1, 0, 256, 144},
	[DT_Q5_K] = {"Q5_K", 0, 1, 0, 256, 176},
	[DT_Q6_K] = {"Q6_K", 0, 1, 0, 256, 210},
	[DT_Q8_K] = {"Q8_K", 0, 1, 0, 256, 292},
};

int dtype_parse(const char *name, size_t len)
{
	for (int i = 0; i < DT_ST_COUNT; i++)
		if (strlen(dtype_table[i].name) == len && memcmp(dtype_table[i].name, name, len) == 0)
			return i;
	return -1;
}

/* ---- cancellation --------------------------------------------------------- */
/*
 * One flag for the process, as lines.h says: lines_cancel() stops every
 * running plan. It is set by a signal handler in one thread and read by
 * the workers of every plan in others, so it is a lock-free atomic: a
 * volatile sig_atomic_t is safe against a handler of the same thread only,
 * not between threads, and lock-free atomics may be used in a handler.
 * Relaxed order: the flag publishes no other data.
 */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "lines_cancel() needs a lock-free atomic int");
static atomic_int cancel_flag;

void lines_cancel(void) { atomic_store_explicit(&cancel_flag, 1, memory_order_relaxed); }
void lines_cancel_reset(void) { atomic_store_explicit(&cancel_flag, 0, memory_order_relaxed); }
int lines_canceled(void) { return atomic_load_explicit(&cancel_flag, memory_order_relaxed) != 0; }

/* ---- I/O loops ------------------------------------------------------------ */
int full_pread(int fd, void *buf, size_t n, uint64_t off)
{
	unsigned char *p = buf;
	while (n) {
		ssize_t r = pread(fd, p, n, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO; /* the file is shorter than it said */
		p += r;
		off += (uint64_t)r;
		n -= (size_t)r;
	}
	return 0;
}

int full_read(int fd, void *buf, size_t n, size_t *got)
{
	unsigned char *p = buf;
	size_t done = 0;
	while (done < n) {
		ssize_t r = read(fd, p + done, n - done);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			*got = done;
			return -errno;
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	*got = done;
	return 0;
}

int full_write(int fd, const void *buf, size_t n)
{
	const unsigned char *p = buf;
	while (n) {
		ssize_t r = write(fd, p, n);
		if (r < 0) {
			if (errno == EINTR) {
				if (lines_canceled())
					return -EINTR;
				continue;
			}
			return -errno;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* json_dumps(root, flags) with a final newline, as a file of JSON text
 * ends; NULL when out of memory. */
char *lines_json_text(struct json_t *root, size_t flags)
{
	char *text = json_dumps(root, flags), *t;
	size_t n;
	if (!text)
		return NULL;
	n = strlen(text);
	if (!(t = realloc(text, n + 2))) {
		free(text);
		return NULL;
	}
	t[n] = '\n', t[n + 1] = '\0';
	return t;
}

int same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	int ea = stat(a, &sa) == 0, eb = stat(b, &sb) == 0, same = 0;
	if (ea && eb)
		return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
	if (ea != eb) /* one exists, the other not */
		return 0;
	/* neither exists yet: the same base name in the same directory */
	char *ca = strdup(a), *cb = strdup(b), *da = ca ? strdup(a) : NULL, *db = cb ? strdup(b) : NULL;
	if (ca && cb && da && db && !strcmp(basename(ca), basename(cb)) &&
	    stat(dirname(da), &sa) == 0 && stat(dirname(db), &sb) == 0)
		same = sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
	free(ca), free(cb), free(da), free(db);
	return same;
}
