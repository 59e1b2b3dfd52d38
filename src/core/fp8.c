/*
 * fp8.c -- float8 codes and the scales beside them (see fp8.h).
 */
#include "config.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ckpt.h"
#include "fp8.h"
#include "layout.h"

/* ---- the codes --------------------------------------------------------------- */
/* E4M3 (the "fn" variant: no infinities, S.1111.111 is NaN, largest 448)
 * and E5M2 (IEEE-like: infinities and NaNs, largest 57344). */
struct f8fmt {
	int mbits, bias;
	double max;
};
static const struct f8fmt E4M3 = {3, 7, 448.0}, E5M2 = {2, 15, 57344.0};

static const struct f8fmt *fmt_of(enum dtype d) { return d == DT_F8_E4M3 ? &E4M3 : &E5M2; }

double fp8_max(enum dtype d) { return fmt_of(d)->max; }

float fp8_decode(enum dtype d, uint8_t code)
{
	const struct f8fmt *f = fmt_of(d);
	int ebits = 7 - f->mbits;
	unsigned e = (code >> f->mbits) & ((1u << ebits) - 1), m = code & ((1u << f->mbits) - 1);
	double v;
	if (d == DT_F8_E4M3 && e == 15 && m == 7)
		v = NAN;
	else if (d == DT_F8_E5M2 && e == 31)
		v = m ? NAN : INFINITY;
	else if (e == 0)
		v = ldexp((double)m, 1 - f->bias - f->mbits);
	else
		v = ldexp((double)(m | (1u << f->mbits)), (int)e - f->bias - f->mbits);
	return (float)((code & 0x80) ? -v : v);
}

uint8_t fp8_encode(enum dtype d, double v)
{
	const struct f8fmt *f = fmt_of(d);
	const int emin = 1 - f->bias; /* the smallest normal exponent */
	const unsigned top = d == DT_F8_E4M3 ? 0x7e : 0x7b; /* the largest finite code */
	uint8_t sign = signbit(v) ? 0x80 : 0;
	double a = fabs(v);
	unsigned code;
	if (v != v)
		return (uint8_t)(sign | 0x7f);
	if (a >= f->max) /* and infinities: saturate */
		a = f->max;
	if (a < ldexp(1.0, emin)) {
		/* a multiple of the subnormal step, ties to even; 2^mbits is
		 * the smallest normal's code */
		code = (unsigned)nearbyint(ldexp(a, f->mbits - emin));
	} else {
		/* the float64 bits rounded to mbits of mantissa, ties to even
		 * (a carry moves into the exponent, as it should), rebased */
		uint64_t u;
		int sh = 52 - f->mbits;
		memcpy(&u, &a, 8);
		u += ((1ull << (sh - 1)) - 1) + ((u >> sh) & 1);
		code = (unsigned)((u >> sh) - ((uint64_t)(1023 - f->bias) << f->mbits));
	}
	return (uint8_t)(sign | (code > top ? top : code));
}

/* ---- finding the scales ------------------------------------------------------ */
static const struct ckpt_tensor *find_with(const struct ckpt *c, const char *name, size_t keep,
                                           const char *suffix)
{
	char buf[1024];
	if (keep + strlen(suffix) >= sizeof(buf))
		return NULL;
	memcpy(buf, name, keep);
	strcpy(buf + keep, suffix);
	return ckpt_find(c, buf);
}

const struct ckpt_tensor *fp8_scale_tensor(const struct ckpt *c, const struct ckpt_tensor *w)
{
	const struct ckpt_tensor *s;
	size_t n = strlen(w->name);
	if (!fp8_dtype(w->dtype))
		return NULL;
	if ((s = find_with(c, w->name, n, "_scale_inv")))
		return s;
	return find_with(c, w->name, n, "_scale");
}

static int ends_with(const char *s, size_t n, const char *suffix)
{
	size_t k = strlen(suffix);
	return n >= k && !strcmp(s + n - k, suffix);
}

int fp8_is_scale(const struct ckpt *c, const char *name)
{
	size_t n = strlen(name);
	const struct ckpt_tensor *w = NULL;
	if (ends_with(name, n, "_scale_inv"))
		w = find_with(c, name, n - strlen("_scale_inv"), "");
	else if (ends_with(name, n, "input_scale"))
		w = find_with(c, name, n - strlen("input_scale"), "weight");
	else if (ends_with(name, n, "_scale"))
		w = find_with(c, name, n - strlen("_scale"), "");
	return w && fp8_dtype(w->dtype);
}

/* config.json's quantization_config.weight_block_size, if it has one. */
static void block_size(const struct ckpt *c, uint64_t *bh, uint64_t *bw)
{
	char path[4096];
	json_t *root, *bs;
	*bh = *bw = 128;
	if (!c->dir || (size_t)snprintf(path, sizeof(path), "%s/config.json", c->dir) >= sizeof(path) ||
	    !(root = json_load_file(path, 0, NULL)))
		return;
	bs = json_object_get(json_object_get(root, "quantization_config"), "weight_block_size");
	if (json_array_size(bs) == 2 && json_integer_value(json_array_get(bs, 0)) > 0 &&
	    json_integer_value(json_array_get(bs, 1)) > 0) {
		*bh = (uint64_t)json_integer_value(json_array_get(bs, 0));
		*bw = (uint64_t)json_integer_value(json_array_get(bs, 1));
	}
	json_decref(root);
}

static float scale_value(enum dtype dt, const unsigned char *p)
{
	uint32_t u = 0;
	float f;
	if (dt == DT_F32) {
		memcpy(&f, p, 4);
		return f;
	}
	memcpy(&u, p, 2); /* BF16 (little-endian, as the file is) */
	u <<= 16;
	memcpy(&f, &u, 4);
	return f;
}

static int read_at(const struct fp8_scale *q, void *buf, size_t n, uint64_t off,
                   struct lines_error *err)
{
	RETURN_ERROR_IF(full_pread(q->fd, buf, n, q->off + off) < 0, err, LINES_EIO, NULL, q->name,
	                "cannot read the FP8 scales");
	return 0;
}

/* The shape of the scales against the weight's: one, one per row, or one
 * per bh x bw block. */
static int fit(struct fp8_scale *q, const struct ckpt *c, const struct ckpt_tensor *w,
               const struct ckpt_tensor *s, struct lines_error *err)
{
	uint64_t R = w->rank == 2 ? w->shape[0] : 1, C = w->rank == 2 ? w->shape[1] : w->nelem;
	q->cols = C ? C : 1;
	if (s->nelem == 1) {
		q->single = 1;
		q->bh = R;
		q->bw = q->cols;
		q->scols = 1;
		return 0;
	}
	RETURN_ERROR_IF(w->rank != 2 || s->rank != 2, err, LINES_EUNSUPPORTED, c->path, s->name,
	                "FP8 scales of %u dimensions for a weight of %u: only one scale, one per "
	                "row, or one per block of a matrix are read",
	                s->rank, w->rank);
	if (s->shape[0] == R && s->shape[1] == 1) {
		q->bh = 1, q->bw = C, q->scols = 1;
		return 0;
	}
	block_size(c, &q->bh, &q->bw);
	RETURN_ERROR_IF(s->shape[0] != (R + q->bh - 1) / q->bh || s->shape[1] != (C + q->bw - 1) / q->bw,
	                err, LINES_EFORMAT, c->path, s->name,
	                "FP8 scales of shape [%llu, %llu] do not fit the weight's [%llu, %llu] in "
	                "blocks of %llu x %llu (config.json's weight_block_size)",
	                (unsigned long long)s->shape[0], (unsigned long long)s->shape[1],
	                (unsigned long long)R, (unsigned long long)C, (unsigned long long)q->bh,
	                (unsigned long long)q->bw);
	q->scols = s->shape[1];
	return 0;
}

int fp8_find(struct fp8_scale *q, const struct ckpt *c, const struct ckpt_tensor *w,
             struct lines_error *err)
{
	const struct ckpt_tensor *s = fp8_scale_tensor(c, w);
	memset(q, 0, sizeof(*q));
	q->one = 1.0f;
	q->single = 1;
	q->cols = w->nelem ? w->nelem : 1;
	q->bh = 1, q->bw = q->cols, q->scols = 1;
	if (!s)
		return 0;
	RETURN_ERROR_IF(s->dtype != DT_F32 && s->dtype != DT_BF16, err, LINES_EUNSUPPORTED, c->path,
	                s->name, "FP8 scales in %s: only F32 and BF16 scales are read",
	                dtype_name(s->dtype));
	RETURN_ERROR_IF(c->files[s->file].zs, err, LINES_EUNSUPPORTED, c->path, w->name,
	                "FP8 weights are read with their scales, out of order: a stream (standard "
	                "input or .zst) cannot be; decompress it to a file first");
	q->name = s->name;
	q->fd = c->files[s->file].fd;
	q->off = s->off;
	q->dt = s->dtype;
	q->single = 0;
	FORWARD_IF_ERROR(fit(q, c, w, s, err));
	if (q->single) {
		unsigned char b[4];
		FORWARD_IF_ERROR(read_at(q, b, dtype_size(q->dt), 0, err));
		q->one = scale_value(q->dt, b);
	}
	return 0;
}

/* ---- decoding a job ---------------------------------------------------------- */
size_t fp8_scale_floats(const struct fp8_scale *q, uint64_t n)
{
	if (q->single)
		return 0;
	return (size_t)(2 * (n / (q->cols * q->bh) + 2) * q->scols);
}

int fp8_dequant(const struct fp8_scale *q, enum dtype dt, const unsigned char *src, uint64_t e0,
                size_t n, float *dst, float *sbuf, struct lines_error *err)
{
	float tab[256];
	for (unsigned c = 0; c < 256; c++)
		tab[c] = fp8_decode(dt, (uint8_t)c);
	if (q->single) {
		for (size_t j = 0; j < n; j++)
			dst[j] = tab[src[j]] * q->one;
		return 0;
	}
	if (n == 0)
		return 0;
	/* the bands of rows of scales [b0, b1] this job touches, read at once */
	uint64_t b0 = e0 / q->cols / q->bh, b1 = (e0 + n - 1) / q->cols / q->bh;
	size_t cnt = (size_t)((b1 - b0 + 1) * q->scols), es = dtype_size(q->dt);
	unsigned char *raw = (unsigned char *)(sbuf + cnt);
	FORWARD_IF_ERROR(read_at(q, raw, cnt * es, b0 * q->scols * es, err));
	for (size_t i = 0; i < cnt; i++)
		sbuf[i] = scale_value(q->dt, raw + i * es);
	for (size_t j = 0; j < n;) { /* a run of one row within one block */
		uint64_t e = e0 + j, r = e / q->cols, c = e % q->cols;
		float sc = sbuf[(r / q->bh - b0) * q->scols + c / q->bw];
		uint64_t end = (c / q->bw + 1) * q->bw;
		size_t run = (size_t)((end < q->cols ? end : q->cols) - c);
		if (run > n - j)
			run = n - j;
		for (size_t k = 0; k < run; k++)
			dst[j + k] = tab[src[j + k]] * sc;
		j += run;
	}
	return 0;
}

/* ---- encoding again (--dtype fp8) -------------------------------------------- */
int fp8_out_new(struct fp8_out **r, enum dtype dt, const struct fp8_scale *base, uint64_t nelem,
                struct lines_error *err)
{
	struct fp8_out *o = calloc(1, sizeof(*o));
	RETURN_ERROR_IF(!o, err, LINES_ENOMEM, NULL, NULL, "out of memory");
	o->dt = dt;
	o->geo = *base;
	o->scaled = base->name != NULL;
	uint64_t rows = nelem / base->cols;
	o->nscales = base->single ? 1 : (size_t)((rows + base->bh - 1) / base->bh * base->scols);
	o->s = calloc(o->nscales, sizeof(float));
	if (!o->s) {
		free(o);
		return lines_errf(err, LINES_ENOMEM, NULL, NULL, "out of memory for the FP8 scales");
	}
	if (!o->scaled)
		o->s[0] = 1.0f;
	*r = o;
	return 0;
}

void fp8_out_free(struct fp8_out *r)
{
	if (r)
		free(r->s);
	free(r);
}

size_t fp8_out_blocks(const struct fp8_out *r, uint64_t n)
{
	if (r->geo.single)
		return 1;
	return (size_t)((n / (r->geo.cols * r->geo.bh) + 2) * r->geo.scols);
}

/* The first block row a job touches, and the scale of element e. */
static uint64_t band0(const struct fp8_out *r, uint64_t e0)
{
	return r->geo.single ? 0 : e0 / r->geo.cols / r->geo.bh;
}
static size_t block_of(const struct fp8_out *r, uint64_t e)
{
	if (r->geo.single)
		return 0;
	uint64_t row = e / r->geo.cols, col = e % r->geo.cols;
	return (size_t)((row / r->geo.bh) * r->geo.scols + col / r->geo.bw);
}

/* The blocks of the bands of rows [e0, e0 + n) touch: [first, first + count). */
static size_t touched(const struct fp8_out *r, uint64_t e0, size_t n, size_t *first)
{
	*first = (size_t)(band0(r, e0) * r->geo.scols);
	if (r->geo.single)
		return 1;
	return (size_t)((band0(r, e0 + n - 1) - band0(r, e0) + 1) * r->geo.scols);
}

/* From element e, the elements left in its row and block (at most left),
 * and that block. */
static size_t run_at(const struct fp8_out *r, uint64_t e, size_t left, size_t *blk)
{
	*blk = block_of(r, e);
	if (r->geo.single)
		return left;
	uint64_t c = e % r->geo.cols, end = (c / r->geo.bw + 1) * r->geo.bw;
	size_t run = (size_t)((end < r->geo.cols ? end : r->geo.cols) - c);
	return run < left ? run : left;
}

void fp8_measure(const struct fp8_out *r, const float *x, uint64_t e0, size_t n, double *part)
{
	size_t first, count = n ? touched(r, e0, n, &first) : 0, blk;
	for (size_t k = 0; k < count; k++)
		part[k] = 0.0;
	for (size_t j = 0, run; j < n; j += run) {
		float m = 0.0f;
		run = run_at(r, e0 + j, n - j, &blk);
		for (size_t k = 0; k < run; k++) {
			float a = fabsf(x[j + k]);
			if (a > m && a <= FLT_MAX) /* NaN and infinities saturate */
				m = a;
		}
		if (m > part[blk - first])
			part[blk - first] = m;
	}
}

void fp8_measure_reduce(struct fp8_out *r, uint64_t e0, size_t n, const double *part)
{
	size_t first, count = n ? touched(r, e0, n, &first) : 0;
	for (size_t k = 0; k < count; k++)
		if (part[k] > r->s[first + k])
			r->s[first + k] = (float)part[k];
}

static float round_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	u = (u + 0x7fffu + ((u >> 16) & 1)) & 0xffff0000u;
	memcpy(&f, &u, 4);
	return f;
}

void fp8_out_scales(struct fp8_out *r)
{
	if (!r->scaled)
		return;
	for (size_t k = 0; k < r->nscales; k++) {
		float s = r->s[k] > 0 ? (float)(r->s[k] / fp8_max(r->dt)) : 1.0f;
		if (s == 0.0f) /* below the smallest float: the block is ~0 */
			s = 1.0f;
		r->s[k] = r->geo.dt == DT_BF16 ? round_bf16(s) : s;
	}
}

void fp8_quantize(const struct fp8_out *r, const float *x, uint64_t e0, size_t n,
                  unsigned char *out)
{
	size_t blk;
	for (size_t j = 0, run; j < n; j += run) {
		run = run_at(r, e0 + j, n - j, &blk);
		double s = r->s[blk];
		for (size_t k = 0; k < run; k++)
			out[j + k] = fp8_encode(r->dt, (double)x[j + k] / s);
	}
}

void fp8_scale_bytes(const struct fp8_out *r, uint64_t b0, size_t nb, unsigned char *out)
{
	unsigned es = dtype_size(r->geo.dt);
	for (size_t j = 0; j < nb; j++) {
		uint64_t b = b0 + j;
		float f = r->s[b / es];
		unsigned char v[4];
		if (es == 4) {
			memcpy(v, &f, 4);
		} else { /* BF16: the top half, exact (rounded already) */
			uint32_t u;
			memcpy(&u, &f, 4);
			u >>= 16;
			memcpy(v, &u, 2);
		}
		out[j] = v[b % es];
	}
}

enum dtype fp8_out_dtype(const struct fp8_out *r) { return r->dt; }
