// bf16 products for attention tiles: the fp32 kernel's 6 × 64 block of C in 24 AVX-512 registers, with
// vdpbf16ps taking two steps of k per instruction (products of bf16 values are exact in fp32, sums in fp32).
// B comes packed in bf16 pairs, word (q, j) = bf16(B[2q][j]) | bf16(B[2q+1][j]) << 16, once per head (keys,
// values) or per tile; A is rounded into a scratch per product, in the pair layout its strides make cheap:
//   A rows contiguous (a_col = 1):     word (i, q) at s[i * kp + q]   (a row's bf16 values read as pairs)
//   A columns contiguous (a_row = 1):  word (q, i) at s[q * m + i]    (A's storage packed like B)
// Rounding is vcvtneps2bf16's everywhere (nearest even, denormals to zero), as in CBF16's conversion.
#include "CKernels.h"
#include <immintrin.h>

#define BF16_TARGET __attribute__((target("avx512f,avx512bf16")))

static inline __mmask16 first_lanes(long count) {
    return count >= 16 ? (__mmask16)0xFFFF : count <= 0 ? 0 : (__mmask16)((1u << count) - 1);
}

// 16 words from two fp32 vectors: word j = bf16(lo[j]) | bf16(hi[j]) << 16.
static inline BF16_TARGET __m512i interleave_pairs(__m512 lo, __m512 hi) {
    __m512i l = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(lo));
    __m512i h = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(hi));
    return _mm512_or_si512(l, _mm512_slli_epi32(h, 16));
}

// 16 words from 32 consecutive floats x[0..count) (zero past count): word q = bf16(x[2q]) | bf16(x[2q+1]) << 16.
static inline BF16_TARGET __m512i consecutive_pairs(const float *x, long count) {
    __m512 lo = _mm512_maskz_loadu_ps(first_lanes(count), x);
    __m512 hi = _mm512_maskz_loadu_ps(first_lanes(count - 16), x + 16);
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);   // bf16 elements 0..15 from lo, 16..31 from hi: in memory order
}

BF16_TARGET
void dt_bf16_pack_pairs(const float *b, long ldb, long k, long n, uint32_t *dst, long ld_dst) {
    for (long q = 0; 2 * q < k; q++) {
        const float *lo = b + 2 * q * ldb, *hi = lo + ldb;
        int has_hi = 2 * q + 1 < k;
        uint32_t *d = dst + q * ld_dst;
        for (long j = 0; j < n; j += 16) {
            __mmask16 m = first_lanes(n - j);
            __m512 h = has_hi ? _mm512_maskz_loadu_ps(m, hi + j) : _mm512_setzero_ps();
            _mm512_mask_storeu_epi32(d + j, m, interleave_pairs(_mm512_maskz_loadu_ps(m, lo + j), h));
        }
    }
}

BF16_TARGET
void dt_bf16_pack_pairs_transposed(const float *bt, long ldbt, long n, long k, uint32_t *dst, long ld_dst) {
    const __m512i lanes = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i step = _mm512_mullo_epi32(lanes, _mm512_set1_epi32((int)ld_dst));
    for (long j = 0; j < n; j++) {
        const float *row = bt + j * ldbt;
        for (long p = 0; p < k; p += 32) {
            __mmask16 m = first_lanes((k - p + 1) / 2);
            _mm512_mask_i32scatter_epi32(dst + (p / 2) * ld_dst + j, m, step, consecutive_pairs(row + p, k - p), 4);
        }
    }
}

// A (m, k) with any strides into the scratch; returns the word strides of (row i, pair q).
static BF16_TARGET
void round_a(long m, long k, const float *a, long a_row, long a_col, uint32_t *s, long *w_row, long *w_q) {
    long kp = (k + 1) / 2;
    if (a_row == 1 && a_col != 1) {
        dt_bf16_pack_pairs(a, a_col, k, m, s, m);
        *w_row = 1; *w_q = m;
        return;
    }
    float gathered[32];
    for (long i = 0; i < m; i++) {
        const float *row = a + i * a_row;
        for (long p = 0; p < k; p += 32) {
            long count = k - p < 32 ? k - p : 32;
            const float *x = row + p * a_col;
            if (a_col != 1) {   // neither rows nor columns contiguous: gather (tests only)
                for (long t = 0; t < count; t++) gathered[t] = x[t * a_col];
                x = gathered;
            }
            _mm512_mask_storeu_epi32(s + i * kp + p / 2, first_lanes((count + 1) / 2), consecutive_pairs(x, count));
        }
    }
    *w_row = kp; *w_q = 1;
}

#define MR 6

#define ROW_DECL(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = c##i##0, c##i##2 = c##i##0, c##i##3 = c##i##0;
#define ROW_DOT(i) { __m512bh x = (__m512bh)_mm512_set1_epi32((int)a##i[q * w_q]); \
    c##i##0 = _mm512_dpbf16_ps(c##i##0, x, b0); c##i##1 = _mm512_dpbf16_ps(c##i##1, x, b1); \
    c##i##2 = _mm512_dpbf16_ps(c##i##2, x, b2); c##i##3 = _mm512_dpbf16_ps(c##i##3, x, b3); }
#define STORE1(i, v, m) { __m512 r = _mm512_mul_ps(c##i##v, s); \
    if (accumulate) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, c + i * ldc + 16 * v)); \
    _mm512_mask_storeu_ps(c + i * ldc + 16 * v, m, r); }
#define ROW_STORE(i) if (i < rows) { STORE1(i, 0, m0) if (m1) STORE1(i, 1, m1) if (m2) STORE1(i, 2, m2) if (m3) STORE1(i, 3, m3) }

// Rows past `rows` read the last valid row of A again and are not stored, as in the fp32 kernel.
static BF16_TARGET
void block_bf16(long rows, long n, long kp, float alpha, const uint32_t *a, long w_row, long w_q,
                const uint32_t *b, long ldb, int accumulate, float *c, long ldc) {
    __mmask16 m0 = first_lanes(n), m1 = first_lanes(n - 16), m2 = first_lanes(n - 32), m3 = first_lanes(n - 48);
    const uint32_t *a0 = a, *a1 = a + (rows > 1 ? 1 : 0) * w_row, *a2 = a + (rows > 2 ? 2 : rows - 1) * w_row;
    const uint32_t *a3 = a + (rows > 3 ? 3 : rows - 1) * w_row, *a4 = a + (rows > 4 ? 4 : rows - 1) * w_row;
    const uint32_t *a5 = a + (rows > 5 ? 5 : rows - 1) * w_row;
    ROW_DECL(0) ROW_DECL(1) ROW_DECL(2) ROW_DECL(3) ROW_DECL(4) ROW_DECL(5)
    for (long q = 0; q < kp; q++) {
        const uint32_t *bq = b + q * ldb;
        __m512bh b0 = (__m512bh)_mm512_maskz_loadu_epi32(m0, bq), b1 = (__m512bh)_mm512_maskz_loadu_epi32(m1, bq + 16);
        __m512bh b2 = (__m512bh)_mm512_maskz_loadu_epi32(m2, bq + 32), b3 = (__m512bh)_mm512_maskz_loadu_epi32(m3, bq + 48);
        ROW_DOT(0) ROW_DOT(1) ROW_DOT(2) ROW_DOT(3) ROW_DOT(4) ROW_DOT(5)
    }
    __m512 s = _mm512_set1_ps(alpha);
    ROW_STORE(0) ROW_STORE(1) ROW_STORE(2) ROW_STORE(3) ROW_STORE(4) ROW_STORE(5)
}

BF16_TARGET
void dt_small_gemm_bf16(long m, long n, long k, float alpha, const float *a, long a_row, long a_col,
                        const uint32_t *bp, long ldbp, int accumulate, float *c, long ldc, uint32_t *scratch) {
    if (m <= 0 || n <= 0) return;
    long w_row, w_q, kp = (k + 1) / 2;
    round_a(m, k, a, a_row, a_col, scratch, &w_row, &w_q);
    for (long j = 0; j < n; j += 64) {
        long cols = n - j < 64 ? n - j : 64;
        for (long i = 0; i < m; i += MR) {
            long rows = m - i < MR ? m - i : MR;
            block_bf16(rows, cols, kp, alpha, scratch + i * w_row, w_row, w_q, bp + j, ldbp, accumulate, c + i * ldc + j, ldc);
        }
    }
}
