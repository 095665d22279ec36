// AVX-512 element-wise loops for the exp-heavy stages (softmax rows forward and backward, SwiGLU): sixteen
// lanes with FMA, where DTKernels' Swift SIMD code is compiled for baseline x86-64. Only
// DTKernels/VectorMath.swift imports this module.
#ifndef DTRAIN_CVECTORMATH_H
#define DTRAIN_CVECTORMATH_H

/// These functions need AVX-512F (checked once on the Swift side: Attention.hasAVX512F). exp is VectorMath.exp's Cephes polynomial (same clamping), with FMA.
/// y[i] = exp(x[i] - shift) for i < count; returns Σ y (per-lane partial sums). y may be x.
float dt_vm_exp_shifted(const float *x, float shift, float *y, long count);
/// max of x[0..count) (-inf when empty).
float dt_vm_max(const float *x, long count);
/// x[i] *= factor.
void dt_vm_scale(float *x, float factor, long count);
/// Σ x[i]·y[i] (per-lane partial sums).
float dt_vm_dot(const float *x, const float *y, long count);
/// Softmax backward of a row: d[i] = p[i] · (d[i] − Σ p·d) · scale, with d holding dL/dp on entry.
void dt_vm_softmax_backward(const float *p, float *d, float scale, long count);
/// h[i] = silu(gate[i]) · up[i].
void dt_vm_swiglu(const float *gate, const float *up, float *h, long count);
/// dgate[i], dup[i] from dh[i] for h = silu(gate) · up.
void dt_vm_swiglu_backward(const float *dh, const float *gate, const float *up, float *dgate, float *dup, long count);

#endif
