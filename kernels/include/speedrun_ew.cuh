// speedrun_ew.cuh: the element-wise functions of the registry (core/registry.h: SR_UNARY_FNS,
// SR_BINARY_FNS) in f32, shared by kernels/elementwise.cu and the kernels the step compiler
// generates for fused groups (host/jit/fuse_cuda.c), so both compute with the same formulas.
// The includer defines the SR_UNARY_* / SR_BINARY_* constants first (registry.h, or the generated
// source's enums). Built with --use_fast_math in both places.
#pragma once

#include "speedrun_device.cuh"  // defines: ld8, st8 (the generated kernels' 16-byte accesses)

// the unary functions of registry.h; p is the scalar parameter. cos and sin go through double:
// under --use_fast_math cosf/sinf become __cosf/__sinf, whose error grows with |x| (rotary tables
// take angles up to the sequence length, 65,536 rad); the double functions are not affected, and
// round to the f32 the CPU reference gives (it computes in double too)
// x^p that keeps the sign for a negative base and an integral exponent (powf under
// --use_fast_math is exp2(p*log2(x)): NaN for x < 0)
__device__ __forceinline__ float pow_f(float x, float p) {
  if (x >= 0.f || p != rintf(p)) return powf(x, p);
  float r = powf(-x, p);
  return fmodf(fabsf(p), 2.f) == 1.f ? -r : r;
}

__device__ __forceinline__ float unary_f(int fn, float x, float p) {
  switch (fn) {
    case SR_UNARY_NEG: return -x;
    case SR_UNARY_EXP: return expf(x);
    case SR_UNARY_LOG: return logf(x);
    case SR_UNARY_TANH: return tanhf(x);
    case SR_UNARY_SIGMOID: return 1.f / (1.f + expf(-x));
    case SR_UNARY_RELU: return x > 0.f ? x : 0.f;
    case SR_UNARY_SQUARE: return x * x;
    case SR_UNARY_SQRT: return sqrtf(x);
    case SR_UNARY_RSQRT: return rsqrtf(x);
    case SR_UNARY_ABS: return fabsf(x);
    case SR_UNARY_GELU_ERF: return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
    case SR_UNARY_GELU_TANH: {
      float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
      return 0.5f * x * (1.f + tanhf(u));
    }
    case SR_UNARY_RELU2: { float r = x > 0.f ? x : 0.f; return r * r; }
    case SR_UNARY_ADD_SCALAR: return x + p;
    case SR_UNARY_MUL_SCALAR: return x * p;
    case SR_UNARY_POW_SCALAR: return pow_f(x, p);
    case SR_UNARY_RSUB_SCALAR: return p - x;
    case SR_UNARY_RDIV_SCALAR: return p / x;
    case SR_UNARY_SIGN: return (float)((x > 0.f) - (x < 0.f));
    case SR_UNARY_COS: return (float)cos((double)x);   // see accurate_trig below
    case SR_UNARY_SIN: return (float)sin((double)x);
    default: return __int_as_float(0x7fffffff);
  }
}

// f' from the output y = f(x) (unary_backward with i1 = 1; the launcher passes fn + SR_UNARY_COUNT)
__device__ __forceinline__ float unary_df_y(int fn, float y) {
  switch (fn) {
    case SR_UNARY_TANH: return 1.f - y * y;
    case SR_UNARY_SIGMOID: return y * (1.f - y);
    case SR_UNARY_EXP: return y;
    default: return __int_as_float(0x7fffffff);
  }
}

// f'(x); fn >= SR_UNARY_COUNT: f' of fn - SR_UNARY_COUNT from its output
__device__ __forceinline__ float unary_df(int fn, float x, float p) {
  if (fn >= SR_UNARY_COUNT) return unary_df_y(fn - SR_UNARY_COUNT, x);
  switch (fn) {
    case SR_UNARY_NEG: return -1.f;
    case SR_UNARY_EXP: return expf(x);
    case SR_UNARY_LOG: return 1.f / x;
    case SR_UNARY_TANH: { float t = tanhf(x); return 1.f - t * t; }
    case SR_UNARY_SIGMOID: { float s = 1.f / (1.f + expf(-x)); return s * (1.f - s); }
    case SR_UNARY_RELU: return x > 0.f ? 1.f : 0.f;
    case SR_UNARY_SQUARE: return 2.f * x;
    case SR_UNARY_SQRT: return 0.5f / sqrtf(x);
    case SR_UNARY_RSQRT: return -0.5f * rsqrtf(x) / x;
    case SR_UNARY_ABS: return (float)((x > 0.f) - (x < 0.f));
    case SR_UNARY_GELU_ERF: {
      float cdf = 0.5f * (1.f + erff(x * 0.70710678118654752f));
      float pdf = 0.3989422804014327f * expf(-0.5f * x * x);
      return cdf + x * pdf;
    }
    case SR_UNARY_GELU_TANH: {
      float x3 = x * x * x;
      float u = 0.7978845608028654f * (x + 0.044715f * x3);
      float t = tanhf(u);
      float du = 0.7978845608028654f * (1.f + 3.f * 0.044715f * x * x);
      return 0.5f * (1.f + t) + 0.5f * x * (1.f - t * t) * du;
    }
    case SR_UNARY_RELU2: return x > 0.f ? 2.f * x : 0.f;
    case SR_UNARY_ADD_SCALAR: return 1.f;
    case SR_UNARY_MUL_SCALAR: return p;
    case SR_UNARY_POW_SCALAR: return p * pow_f(x, p - 1.f);
    case SR_UNARY_RSUB_SCALAR: return -1.f;
    case SR_UNARY_RDIV_SCALAR: return -p / (x * x);
    case SR_UNARY_SIGN: return 0.f;
    case SR_UNARY_COS: return -(float)sin((double)x);
    case SR_UNARY_SIN: return (float)cos((double)x);
    default: return __int_as_float(0x7fffffff);
  }
}

__device__ __forceinline__ float binary_f(int fn, float a, float b) {
  switch (fn) {
    case SR_BINARY_EQ: return a == b ? 1.f : 0.f;
    case SR_BINARY_NE: return a != b ? 1.f : 0.f;
    case SR_BINARY_LT: return a < b ? 1.f : 0.f;
    case SR_BINARY_LE: return a <= b ? 1.f : 0.f;
    case SR_BINARY_GT: return a > b ? 1.f : 0.f;
    case SR_BINARY_GE: return a >= b ? 1.f : 0.f;
    case SR_BINARY_ADD: return a + b;
    case SR_BINARY_SUB: return a - b;
    case SR_BINARY_MUL: return a * b;
    case SR_BINARY_DIV: return a / b;
    case SR_BINARY_POW: return pow_f(a, b);
    case SR_BINARY_MAX: return (a != a || b != b) ? a + b : fmaxf(a, b);  // NaN propagates
    case SR_BINARY_MIN: return (a != a || b != b) ? a + b : fminf(a, b);
    default: return __int_as_float(0x7fffffff);
  }
}

// the step compiler's f32 register values kept from being contracted (mul + add into fma) with the
// next op, which the unfused kernels cannot do (its bf16 values are rounded as a store would:
// sr_round_bf16, speedrun_device.cuh)
__device__ __forceinline__ float sr_ew_keep(float v) {
  asm volatile("mul.rn.f32 %0, %0, 0f3F800000;" : "+f"(v));
  return v;
}
