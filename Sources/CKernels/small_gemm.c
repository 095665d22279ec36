// Register-blocked fp32 products for attention tiles: a 6 × 64 block of C lives in 24 AVX-512 registers
// while k runs; B's row (4 vectors, masked at the right edge) is loaded once per k and each of A's 6 values
// is broadcast. Shapes here: scores Q·Kᵀ (k = head dim, B = Kᵀ packed), P·V and dS·K (n = head dim),
// Pᵀ·dO and dSᵀ·Q (A read transposed through its strides).
#include "CKernels.h"
#include <cpuid.h>
#include <immintrin.h>

int dt_cpu_has_avx512f(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0;   // OSXSAVE
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0xE6) != 0xE6) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b & (1u << 16)) != 0;
}

#define MR 6

// The 6 × 64 block in named registers (arrays of vectors end up on the stack). Rows past `rows` read the last
// valid row of A again and are not stored, so one kernel serves the bottom edge.
#define ROW_DECL(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = c##i##0, c##i##2 = c##i##0, c##i##3 = c##i##0;
#define ROW_FMA(i) { __m512 x = _mm512_set1_ps(a##i[p * a_col]); \
    c##i##0 = _mm512_fmadd_ps(x, b0, c##i##0); c##i##1 = _mm512_fmadd_ps(x, b1, c##i##1); \
    c##i##2 = _mm512_fmadd_ps(x, b2, c##i##2); c##i##3 = _mm512_fmadd_ps(x, b3, c##i##3); }
#define STORE1(i, v, m) { __m512 r = _mm512_mul_ps(c##i##v, s); \
    if (accumulate) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, c + i * ldc + 16 * v)); \
    _mm512_mask_storeu_ps(c + i * ldc + 16 * v, m, r); }
#define ROW_STORE(i) if (i < rows) { STORE1(i, 0, m0) if (m1) STORE1(i, 1, m1) if (m2) STORE1(i, 2, m2) if (m3) STORE1(i, 3, m3) }

static __attribute__((target("avx512f")))
void block(long rows, long n, long k, float alpha, const float *a, long a_row, long a_col,
           const float *b, long ldb, int accumulate, float *c, long ldc) {
    __mmask16 m0, m1, m2, m3;
    {
        long l0 = n, l1 = n - 16, l2 = n - 32, l3 = n - 48;
        m0 = l0 >= 16 ? 0xFFFF : (__mmask16)((1u << l0) - 1);
        m1 = l1 >= 16 ? 0xFFFF : l1 <= 0 ? 0 : (__mmask16)((1u << l1) - 1);
        m2 = l2 >= 16 ? 0xFFFF : l2 <= 0 ? 0 : (__mmask16)((1u << l2) - 1);
        m3 = l3 >= 16 ? 0xFFFF : l3 <= 0 ? 0 : (__mmask16)((1u << l3) - 1);
    }
    const float *a0 = a, *a1 = a + (rows > 1 ? 1 : 0) * a_row, *a2 = a + (rows > 2 ? 2 : rows - 1) * a_row;
    const float *a3 = a + (rows > 3 ? 3 : rows - 1) * a_row, *a4 = a + (rows > 4 ? 4 : rows - 1) * a_row;
    const float *a5 = a + (rows > 5 ? 5 : rows - 1) * a_row;
    ROW_DECL(0) ROW_DECL(1) ROW_DECL(2) ROW_DECL(3) ROW_DECL(4) ROW_DECL(5)
    for (long p = 0; p < k; p++) {
        const float *bp = b + p * ldb;
        __m512 b0 = _mm512_maskz_loadu_ps(m0, bp), b1 = _mm512_maskz_loadu_ps(m1, bp + 16);
        __m512 b2 = _mm512_maskz_loadu_ps(m2, bp + 32), b3 = _mm512_maskz_loadu_ps(m3, bp + 48);
        ROW_FMA(0) ROW_FMA(1) ROW_FMA(2) ROW_FMA(3) ROW_FMA(4) ROW_FMA(5)
    }
    __m512 s = _mm512_set1_ps(alpha);
    ROW_STORE(0) ROW_STORE(1) ROW_STORE(2) ROW_STORE(3) ROW_STORE(4) ROW_STORE(5)
}

void dt_small_gemm(long m, long n, long k, float alpha, const float *a, long a_row, long a_col,
                   const float *b, long ldb, int accumulate, float *c, long ldc) {
    for (long j = 0; j < n; j += 64) {
        long cols = n - j < 64 ? n - j : 64;
        for (long i = 0; i < m; i += MR) {
            long rows = m - i < MR ? m - i : MR;
            block(rows, cols, k, alpha, a + i * a_row, a_row, a_col, b + j, ldb, accumulate, c + i * ldc + j, ldc);
        }
    }
}

void dt_transpose(const float *src, long ld_src, long rows, long cols, float *dst, long ld_dst) {
    for (long r0 = 0; r0 < rows; r0 += 16)
        for (long c0 = 0; c0 < cols; c0 += 16)
            for (long r = r0; r < r0 + 16 && r < rows; r++)
                for (long c = c0; c < c0 + 16 && c < cols; c++) dst[c * ld_dst + r] = src[r * ld_src + c];
}
