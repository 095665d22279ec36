// AVX-512 versions of VectorMath's loops (see CVectorMath.h). exp: n = round(x / ln 2) with the 1.5·2^23
// trick, r = x − n·ln 2 in two parts, the degree-5 Cephes polynomial, then 2^n through the exponent bits.
#include "CVectorMath.h"
#include <immintrin.h>

#define TARGET __attribute__((target("avx512f")))

static inline TARGET __m512 exp16(__m512 x) {
    // clamped as VectorMath.exp (a NaN stays NaN: min/max return their second operand when one is NaN)
    x = _mm512_min_ps(_mm512_set1_ps(88.37626266f), _mm512_max_ps(_mm512_set1_ps(-87.33654475f), x));
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    __m512 shifted = _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504f), magic);
    __m512 n = _mm512_sub_ps(shifted, magic);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    __m512i e = _mm512_sub_epi32(_mm512_castps_si512(shifted), _mm512_set1_epi32(0x4B400000));
    __m512 scale = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(e, _mm512_set1_epi32(127)), 23));
    return _mm512_mul_ps(y, scale);
}

static inline __mmask16 lanes(long count) {
    return count >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << count) - 1);
}

TARGET float dt_vm_exp_shifted(const float *x, float shift, float *y, long count) {
    __m512 sum = _mm512_setzero_ps(), s = _mm512_set1_ps(shift);
    for (long i = 0; i < count; i += 16) {
        __mmask16 m = lanes(count - i);
        __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), s));
        _mm512_mask_storeu_ps(y + i, m, e);
        sum = _mm512_mask_add_ps(sum, m, sum, e);
    }
    return _mm512_reduce_add_ps(sum);
}

TARGET float dt_vm_max(const float *x, long count) {
    __m512 best = _mm512_set1_ps(-__builtin_inff());
    for (long i = 0; i < count; i += 16) best = _mm512_mask_max_ps(best, lanes(count - i), best, _mm512_maskz_loadu_ps(lanes(count - i), x + i));
    return _mm512_reduce_max_ps(best);
}

TARGET void dt_vm_scale(float *x, float factor, long count) {
    __m512 f = _mm512_set1_ps(factor);
    for (long i = 0; i < count; i += 16) {
        __mmask16 m = lanes(count - i);
        _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), f));
    }
}

TARGET float dt_vm_dot(const float *x, const float *y, long count) {
    __m512 sum = _mm512_setzero_ps();
    for (long i = 0; i < count; i += 16) {
        __mmask16 m = lanes(count - i);
        sum = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i), sum);
    }
    return _mm512_reduce_add_ps(sum);
}

TARGET void dt_vm_softmax_backward(const float *p, float *d, float scale, long count) {
    __m512 dot = _mm512_set1_ps(dt_vm_dot(p, d, count)), s = _mm512_set1_ps(scale);
    for (long i = 0; i < count; i += 16) {
        __mmask16 m = lanes(count - i);
        __m512 pi = _mm512_maskz_loadu_ps(m, p + i), di = _mm512_maskz_loadu_ps(m, d + i);
        _mm512_mask_storeu_ps(d + i, m, _mm512_mul_ps(_mm512_mul_ps(pi, _mm512_sub_ps(di, dot)), s));
    }
}

// sigmoid(g) = 1 / (1 + exp(−g)), divided exactly (as the Swift code).
static inline TARGET __m512 sigmoid16(__m512 g) {
    const __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), g))));
}

TARGET void dt_vm_swiglu(const float *gate, const float *up, float *h, long count) {
    for (long i = 0; i < count; i += 16) {
        __mmask16 m = lanes(count - i);
        __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
        _mm512_mask_storeu_ps(h + i, m, _mm512_mul_ps(_mm512_mul_ps(g, sigmoid16(g)), _mm512_maskz_loadu_ps(m, up + i)));
    }
}

TARGET void dt_vm_swiglu_backward(const float *dh, const float *gate, const float *up, float *dgate, float *dup, long count) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (long i = 0; i < count; i += 16) {
        __mmask16 m = lanes(count - i);
        __m512 g = _mm512_maskz_loadu_ps(m, gate + i), d = _mm512_maskz_loadu_ps(m, dh + i), u = _mm512_maskz_loadu_ps(m, up + i);
        __m512 sig = sigmoid16(g);
        // dgate = dh · up · sig · (1 + g · (1 − sig)),  dup = dh · g · sig
        __m512 dsilu = _mm512_mul_ps(sig, _mm512_fmadd_ps(g, _mm512_sub_ps(one, sig), one));
        _mm512_mask_storeu_ps(dgate + i, m, _mm512_mul_ps(_mm512_mul_ps(d, u), dsilu));
        _mm512_mask_storeu_ps(dup + i, m, _mm512_mul_ps(d, _mm512_mul_ps(g, sig)));
    }
}
