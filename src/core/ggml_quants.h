/*
 * ggml_quants.h -- ggml's block-quantized element types (GGUF): decoding
 * a whole number of blocks to float32, exactly as ggml's reference
 * dequantize_row_* functions do (ggml-quants.c), written from the block
 * layouts of ggml-common.h.
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

#endif
