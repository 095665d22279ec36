// fp32 <-> bf16 conversion and CPU feature detection. The AVX512-BF16 path uses vcvtneps2bf16, which
// rounds to nearest even and flushes denormal inputs to zero; the scalar path does exactly the same, so both
// give identical bits (tests compare them).
#include "CBF16.h"
#include <cpuid.h>
#include <string.h>
#include <immintrin.h>

static int os_saves_zmm(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0;   // OSXSAVE
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 0xE6) == 0xE6;   // SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM state enabled
}

int dt_cpu_has_avx512bf16(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || a < 1) return 0;
    if (!(b & (1u << 16)) || !(b & (1u << 30)) || !(b & (1u << 31))) return 0;   // AVX512F, BW, VL
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
    return (a & (1u << 5)) && os_saves_zmm();
}

int dt_cpu_has_amx_bf16(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (d & (1u << 22)) != 0;
}

static inline uint16_t bf16_scalar(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);   // quiet NaN
    if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000);           // denormal: signed zero
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
static void row_avx512bf16(const float *src, uint16_t *dst, long n) {
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256bh v = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
        _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)v);
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i));
        _mm256_mask_storeu_epi16(dst + i, m, (__m256i)v);
    }
}

void dt_f32_to_bf16(const float *src, long ld_src, uint16_t *dst, long ld_dst, long rows, long cols, int use_avx512bf16) {
    for (long r = 0; r < rows; r++) {
        const float *s = src + r * ld_src;
        uint16_t *d = dst + r * ld_dst;
        if (use_avx512bf16) {
            row_avx512bf16(s, d, cols);
        } else {
            for (long j = 0; j < cols; j++) d[j] = bf16_scalar(s[j]);
        }
    }
}

void dt_bf16_to_f32(const uint16_t *src, float *dst, long count) {
    for (long i = 0; i < count; i++) {
        uint32_t u = (uint32_t)src[i] << 16;
        memcpy(dst + i, &u, 4);
    }
}
