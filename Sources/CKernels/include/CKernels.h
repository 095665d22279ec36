// Small fp32 matrix products for attention tiles (AVX-512), where a BLAS call's packing and threading cost
// more than the tile's arithmetic. Only DTKernels/Attention.swift imports this module.
#ifndef DTRAIN_CKERNELS_H
#define DTRAIN_CKERNELS_H

/// 1 when this CPU runs AVX-512F and the OS saves its registers.
int dt_cpu_has_avx512f(void);

/// C (m, n) = alpha · A · B (+ C when accumulate), where A[i][p] = a[i * a_row + p * a_col] (any strides, so
/// Aᵀ is a stride swap) and B (k, n) is row-major with leading dimension ldb; C row-major with ldc.
/// Needs AVX-512F (check dt_cpu_has_avx512f first).
void dt_small_gemm(long m, long n, long k, float alpha, const float *a, long a_row, long a_col,
                   const float *b, long ldb, int accumulate, float *c, long ldc);

/// dst (cols, rows) = srcᵀ, src (rows, cols) with leading dimension ld_src; dst with leading dimension ld_dst.
void dt_transpose(const float *src, long ld_src, long rows, long cols, float *dst, long ld_dst);

#endif
