// Small matrix products for attention tiles (AVX-512 fp32, AVX512-BF16 with fp32 accumulation), where a BLAS
// call's packing and threading cost more than the tile's arithmetic. Only DTKernels/Attention.swift imports
// this module.
#ifndef DTRAIN_CKERNELS_H
#define DTRAIN_CKERNELS_H
#include <stdint.h>

/// 1 when this CPU runs AVX-512F and the OS saves its registers.
int dt_cpu_has_avx512f(void);

/// C (m, n) = alpha · A · B (+ C when accumulate), where A[i][p] = a[i * a_row + p * a_col] (any strides, so
/// Aᵀ is a stride swap) and B (k, n) is row-major with leading dimension ldb; C row-major with ldc.
/// Needs AVX-512F (check dt_cpu_has_avx512f first).
void dt_small_gemm(long m, long n, long k, float alpha, const float *a, long a_row, long a_col,
                   const float *b, long ldb, int accumulate, float *c, long ldc);

/// dst (cols, rows) = srcᵀ, src (rows, cols) with leading dimension ld_src; dst with leading dimension ld_dst.
void dt_transpose(const float *src, long ld_src, long rows, long cols, float *dst, long ld_dst);

/// bf16 pairs, the B operand of dt_small_gemm_bf16: word (q, j) at dst[q * ld_dst + j] holds bf16(B[2q][j]) in
/// its low and bf16(B[2q+1][j]) in its high 16 bits (0 for the row past an odd k); ⌈k/2⌉ rows of n words.
/// Rounding as vcvtneps2bf16 (nearest even). Both need AVX512-BF16.
/// From B (k, n) row-major with leading dimension ldb:
void dt_bf16_pack_pairs(const float *b, long ldb, long k, long n, uint32_t *dst, long ld_dst);
/// From Bᵀ (n, k) row-major with leading dimension ldbt (B[p][j] = bt[j * ldbt + p]):
void dt_bf16_pack_pairs_transposed(const float *bt, long ldbt, long n, long k, uint32_t *dst, long ld_dst);

/// C (m, n) = alpha · bf16(A) · bf16(B) (+ C when accumulate) with fp32 products, sums and C: A as for
/// dt_small_gemm (any strides; fastest with a_col = 1 or a_row = 1), B packed by dt_bf16_pack_pairs* with
/// leading dimension ldbp (words). `scratch` holds A rounded to bf16: m · ⌈k/2⌉ words.
/// Needs AVX512-BF16 (the caller checks the cached CPU flag).
void dt_small_gemm_bf16(long m, long n, long k, float alpha, const float *a, long a_row, long a_col,
                        const uint32_t *bp, long ldbp, int accumulate, float *c, long ldc, uint32_t *scratch);

#endif
