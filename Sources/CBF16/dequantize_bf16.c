// Stored blocks straight to bf16 (AVX512-BF16), for per-use dequantization in QLoRA: each block is expanded
// in registers and rounded, with the same fp32 arithmetic as DTFormats' scalar dequantizers (a multiply, then
// an add: no fused multiply-add), so the result equals rounding their output.
#include "CBF16.h"
#include <immintrin.h>
#include <string.h>

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,f16c")))

static inline TARGET float half(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

static inline TARGET void store_bf16(uint16_t *dst, __m512 v) {
    _mm256_storeu_si256((__m256i *)dst, (__m256i)_mm512_cvtneps_pbh(v));
}

TARGET void dt_q4_1_to_bf16(const void *src, long blocks, uint16_t *dst) {
    const uint8_t *p = src;
    const __m512i low = _mm512_set1_epi32(15);
    for (long b = 0; b < blocks; b++, p += 20, dst += 32) {
        __m512 d = _mm512_set1_ps(half(p)), m = _mm512_set1_ps(half(p + 2));
        __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + 4)));
        __m512 lo = _mm512_cvtepi32_ps(_mm512_and_si512(q, low)), hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(q, 4));
        store_bf16(dst, _mm512_add_ps(_mm512_mul_ps(lo, d), m));
        store_bf16(dst + 16, _mm512_add_ps(_mm512_mul_ps(hi, d), m));
    }
}

TARGET void dt_q8_0_to_bf16(const void *src, long blocks, uint16_t *dst) {
    const uint8_t *p = src;
    for (long b = 0; b < blocks; b++, p += 34, dst += 32) {
        __m512 d = _mm512_set1_ps(half(p));
        __m512 a = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 2))));
        __m512 c = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 18))));
        store_bf16(dst, _mm512_mul_ps(a, d));
        store_bf16(dst + 16, _mm512_mul_ps(c, d));
    }
}

TARGET void dt_nf4_to_bf16(const uint8_t *codes, const float *scales, long blocks, const float *codebook, uint16_t *dst) {
    const __m512 book = _mm512_loadu_ps(codebook);
    const __m512i low = _mm512_set1_epi32(15);
    // Element 2i is the high nibble of byte i: interleave (high_i, low_i).
    const __m512i first = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i second = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    for (long b = 0; b < blocks; b++, codes += 32, dst += 64) {
        __m512 s = _mm512_set1_ps(scales[b]);
        for (int half16 = 0; half16 < 2; half16++) {
            __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(codes + 16 * half16)));
            __m512 hi = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), book), s);
            __m512 lo = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_and_si512(q, low), book), s);
            store_bf16(dst + 32 * half16, _mm512_permutex2var_ps(hi, first, lo));
            store_bf16(dst + 32 * half16 + 16, _mm512_permutex2var_ps(hi, second, lo));
        }
    }
}
