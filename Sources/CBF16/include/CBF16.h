// bf16 support for DTKernels: fp32 <-> bf16 conversion (AVX512-BF16 `vcvtneps2bf16` where the CPU has it,
// the same round-to-nearest-even in scalar code elsewhere) and oneDNN's matmul primitive with bf16 inputs
// and fp32 output. Only DTKernels/BF16.swift imports this module.
#ifndef DTRAIN_CBF16_H
#define DTRAIN_CBF16_H
#include <stdint.h>

/// 1 when this CPU executes AVX512-BF16 instructions (cpuid leaf 7.1 EAX bit 5, and the OS saves ZMM state).
int dt_cpu_has_avx512bf16(void);
/// 1 when this CPU has AMX tiles with bf16 (cpuid leaf 7.0 EDX bit 22).
int dt_cpu_has_amx_bf16(void);

/// dst[i] = bf16(src[i]), round to nearest even (NaN stays NaN); rows x cols with leading dimensions.
void dt_f32_to_bf16(const float *src, long ld_src, uint16_t *dst, long ld_dst, long rows, long cols, int use_avx512bf16);
/// dst[i] = fp32(src[i]) (exact).
void dt_bf16_to_f32(const uint16_t *src, float *dst, long count);

/// Stored blocks to bf16 (need AVX512-BF16): `blocks` consecutive GGUF Q4_1 (20 bytes) or Q8_0 (34 bytes)
/// blocks of 32; NF4 blocks of 64 (32 bytes, element 2i in the high nibble) with one fp32 scale per block and
/// the 16-entry codebook.
void dt_q4_1_to_bf16(const void *src, long blocks, uint16_t *dst);
void dt_q8_0_to_bf16(const void *src, long blocks, uint16_t *dst);
void dt_nf4_to_bf16(const uint8_t *codes, const float *scales, long blocks, const float *codebook, uint16_t *dst);

/// A oneDNN matmul C (M, N) = A (M, K) · B (K, N) [+ C], A and B bf16, C fp32, all with leading
/// dimensions; B is read transposed (B[k][n] at b[n * ldb + k]) when trans_b is 1, likewise A with trans_a.
typedef struct dt_matmul dt_matmul;

/// Creates the primitive for one (n, k, layout), the row count m given at each run (NULL on failure; `error`
/// then holds oneDNN's status text).
/// `impl` receives the implementation oneDNN chose (e.g. "brg:avx512_core_bf16").
dt_matmul *dt_matmul_create(long n, long k, int trans_a, long lda, int trans_b, long ldb, long ldc,
                            int accumulate, char *impl, int impl_capacity, char *error, int error_capacity);
/// Runs it on these pointers for m rows; returns 0 on success, else a oneDNN status code.
int dt_matmul_run(dt_matmul *mm, long m, const uint16_t *a, const uint16_t *b, float *c);
void dt_matmul_destroy(dt_matmul *mm);

/// OpenMP threads used by oneDNN's calls from the calling thread.
void dt_set_onednn_threads(int n);

#endif
