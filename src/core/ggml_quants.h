/*
 * ggml_quants.h -- ggml's block-quantized element types (GGUF): decoding
 * a whole number of blocks to float32, exactly as ggml's reference
 * dequantize_row_* functions do (ggml-quants.c), and encoding float32 to
 * the types lines writes, byte for byte as ggml's reference (non-imatrix)
 * quantize_row_*_ref functions do, written from the block layouts of
 * ggml-common.h.
 *
 * Blocks of 32 elements: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (an F16 scale d,
 * and for the _1 types an F16 offset m). Super-blocks of 256 (the "K"
 * types): Q2_K, Q3_K, Q4_K, Q5_K, Q6_K with sub-block scales, Q8_K with an
 * F32 scale. Every block is little-endian whatever the host.
 */
#ifndef LINES_GGML_QUANTS_H
#define LINES_GGML_QUANTS_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* A ggml block type (Q4_0 ... Q8_K). */
static inline int ggml_block_dtype(enum dtype d) { return d >= DT_Q4_0 && d <= DT_Q8_K; }

/* The float32 value of an IEEE half (exact). */
float ggml_f16_to_f32(uint16_t h);

/* Decode nblocks blocks of dtype d from src into dst
 * (nblocks * dtype_table[d].block_elems floats); d a ggml block type. */
void ggml_dequant(enum dtype d, const unsigned char *src, size_t nblocks, float *dst);

/* The IEEE half nearest f, ties to even, subnormals kept, overflow to
 * infinity, a NaN to the quiet NaN 0x7e00 with f's sign: ggml's
 * GGML_FP32_TO_FP16 (the scalar one of ggml-base, which the reference
 * quantizers use). */
uint16_t ggml_f32_to_f16(float f);
/* The bfloat16 nearest f, ties to even, a NaN made quiet: ggml's
 * GGML_FP32_TO_BF16. */
uint16_t ggml_f32_to_bf16(float f);

/* 1 if lines can write dtype d as a block type: F32, F16 and BF16 (blocks
 * of one element) and Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K;
 * 0 for every other dtype (Q2_K, Q3_K and Q8_K are read only). */
int ggml_quant_writable(enum dtype d);

/* Encode nblocks blocks of dtype d from src (nblocks * block_elems floats)
 * into dst (nblocks * block_bytes bytes, little-endian whatever the host),
 * exactly as ggml's reference quantize_row_*_ref (non-imatrix), or for
 * F16/BF16/F32 its element conversion: the same bytes as llama.cpp's
 * ggml_quantize_chunk() without an importance matrix. d must be writable
 * (ggml_quant_writable); otherwise nothing is written. Pure: no state, no
 * allocation, safe from any number of threads on distinct buffers. The
 * result depends on src only through the values of each block (block i of
 * dst from block i of src). */
void ggml_quant(enum dtype d, const float *src, size_t nblocks, unsigned char *dst);

/* The relative RMS error of a round trip through block type d (encode
 * then decode), as measured on lines' test family (gen-gguf --type f32
 * --layers 2 --hidden 256 --models 2 --seed 7, merged with --lines into
 * F32: lines-merge(1), GGUF round-trip error): an estimate, since it
 * depends on the values; NaN for a type lines does not write in blocks. */
double ggml_roundtrip_rms(enum dtype d);

/* ggml_quant with a given kernel set (kernels.h; NULL: the scalar code):
 * the same bytes whatever the set. ggml_quant uses the set kern_get()
 * chose (LINES_ISA), the scalar code if that fails. */
struct kern;
void ggml_quant_with(const struct kern *k, enum dtype d, const float *src, size_t nblocks,
                     unsigned char *dst);

#endif
