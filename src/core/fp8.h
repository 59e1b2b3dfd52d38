/*
 * fp8.h -- FP8 checkpoints: float8 weights (F8_E4M3, F8_E5M2) with their
 * scales beside them.
 *
 * Two layouts are read, as the checkpoints on the hubs have them:
 *   - block scales (DeepSeek-V3): X.weight_scale_inv, float32, one scale
 *     per block of 128 x 128 weights (or the config's weight_block_size),
 *     shape ceil(R/bh) x ceil(C/bw);
 *   - a scale per tensor or per output row, as compressed-tensors writes
 *     them: X.weight_scale of one element, or of shape R x 1 (and
 *     X.input_scale, the activations' scale, which a dequantized model no
 *     longer uses).
 * In both the weight is w = q * s (q the float8 value, s its scale). A
 * float8 tensor without a scale beside it has s = 1.
 *
 * The plan finds the scale of each float8 tensor (fp8_find); the pipeline
 * decodes the float8 inputs of a job to float32 (fp8_dequant), reading the
 * scales the job needs from the file as it goes, so nothing larger than a
 * row of scales is held; the writing pass encodes again for --dtype fp8.
 */
#ifndef LINES_FP8_H
#define LINES_FP8_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

struct ckpt;
struct ckpt_tensor;

/* F8_E4M3 and F8_E5M2: the float8 types lines decodes. */
static inline int fp8_dtype(enum dtype d) { return d == DT_F8_E4M3 || d == DT_F8_E5M2; }

/* The value of a float8 code (exact in float32). */
float fp8_decode(enum dtype d, uint8_t code);
/* The float8 code nearest to v (ties to even); beyond the largest finite
 * value (448 for E4M3, 57344 for E5M2), and infinities, saturate to it;
 * NaN stays NaN. */
uint8_t fp8_encode(enum dtype d, double v);
/* The largest finite value of d. */
double fp8_max(enum dtype d);

/* Where the scales of one float8 tensor of one input are. */
struct fp8_scale {
	const char *name; /* the scale tensor (owned by its checkpoint), or NULL: s = 1 */
	int fd;           /* its file */
	uint64_t off;     /* its data */
	enum dtype dt;    /* F32, BF16 or F16 */
	uint64_t cols;    /* the weight's last dimension (a 1-D weight: its length) */
	uint64_t bh, bw;  /* weight rows x columns per scale */
	uint64_t scols;   /* scales per row of scales */
	float one;        /* a single scale (per tensor, or none), read when planned */
	int single;
};

/* The scale tensor of float8 weight w in c (NULL if none), and whether
 * name is such a scale (or an activation scale) of c: not a tensor of
 * its own. */
const struct ckpt_tensor *fp8_scale_tensor(const struct ckpt *c, const struct ckpt_tensor *w);
int fp8_is_scale(const struct ckpt *c, const char *name);

/*
 * The scales of float8 tensor w of input c, checked against its shape
 * (with bh x bw from config.json's quantization_config.weight_block_size,
 * else 128 x 128); fd reads c's files.
 */
int fp8_find(struct fp8_scale *q, const struct ckpt *c, const struct ckpt_tensor *w,
             struct lines_error *err);

/* Floats of scale buffer a job of at most n elements needs. */
size_t fp8_scale_floats(const struct fp8_scale *q, uint64_t n);

/* Decode elements [e0, e0 + n) of a float8 tensor from src (its n codes)
 * into dst, with the scales read into sbuf (fp8_scale_floats(q, n)). */
int fp8_dequant(const struct fp8_scale *q, enum dtype dt, const unsigned char *src, uint64_t e0,
                size_t n, float *dst, float *sbuf, struct lines_error *err);

/*
 * --dtype fp8: a float8 weight of the base written in float8 again, in
 * the base's scheme (its float8 type, its scale layout and dtype). A pass
 * before the writing one computes the merged values and keeps the largest
 * magnitude of each block (the scale tensor's size, 1/16384 of the
 * weight's for 128 x 128 blocks); its scale is that / the largest float8
 * value (1 for a block of zeros), rounded to the scales' dtype; the
 * writing pass computes the values again and encodes value / scale.
 */
struct fp8_out {
	enum dtype dt;         /* the base's float8 type */
	struct fp8_scale geo;  /* the base's scales: their layout and dtype */
	int scaled;            /* the base had scales; else s = 1 */
	size_t nscales;
	float *s;              /* the largest |value| per block, then the scales */
};

int fp8_out_new(struct fp8_out **r, enum dtype dt, const struct fp8_scale *base, uint64_t nelem,
                struct lines_error *err);
void fp8_out_free(struct fp8_out *r);
/* Blocks a job of at most n elements touches. */
size_t fp8_out_blocks(const struct fp8_out *r, uint64_t n);
/* The largest |x| of each block elements [e0, e0 + n) touch, into part
 * (fp8_out_blocks), and into r's table, in job order. */
void fp8_measure(const struct fp8_out *r, const float *x, uint64_t e0, size_t n, double *part);
void fp8_measure_reduce(struct fp8_out *r, uint64_t e0, size_t n, const double *part);
/* Maxima to scales, once every job is measured. */
void fp8_out_scales(struct fp8_out *r);
/* Encode x[0, n), elements [e0, e0 + n), into float8 codes. */
void fp8_quantize(const struct fp8_out *r, const float *x, uint64_t e0, size_t n,
                  unsigned char *out);
/* Bytes [b0, b0 + nb) of the scale tensor, in its dtype. */
void fp8_scale_bytes(const struct fp8_out *r, uint64_t b0, size_t nb, unsigned char *out);

#endif
