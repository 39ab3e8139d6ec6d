/*
** core/fp8.h: the float8 formats, bit for bit, for the CPU and the GPU alike (the CUDA cast kernel
** in kernels/fp8.cu includes this file, so both sides run the same integer code).
**   e4m3fn (torch.float8_e4m3fn): 1 sign, 4 exponent bits (bias 7), 3 mantissa bits; no infinity;
**          S.1111.111 is NaN; largest finite 448 (0x7e); smallest subnormal 2^-9.
**   e5m2   (torch.float8_e5m2): 1 sign, 5 exponent bits (bias 15), 2 mantissa bits; IEEE-like:
**          S.11111.00 is infinity, S.11111.xx NaN; largest finite 57344 (0x7b); subnormal 2^-16.
** sr_f32_to_fp8 rounds to nearest, ties to even (subnormals included). Beyond the largest finite
** value (infinity included) it gives +-max when sat is nonzero (cuda's __NV_SATFINITE), else what
** torch's .to(float8) gives: NaN for e4m3fn, +-inf for e5m2. NaN gives sign | 0x7f in both formats.
*/
#ifndef SR_FP8_H
#define SR_FP8_H

#include <stdint.h>  /* defines: uint8_t, uint32_t */
#include <string.h>  /* defines: memcpy */

#ifdef __CUDACC__
#define SR_FP8_HD __host__ __device__ __forceinline__
#else
#define SR_FP8_HD inline
#endif

static SR_FP8_HD uint32_t sr_fp8_f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static SR_FP8_HD float sr_fp8_bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* e5m2 != 0 selects e5m2, else e4m3fn */
static SR_FP8_HD uint8_t sr_f32_to_fp8(float f, int e5m2, int sat) {
  const int M = e5m2 ? 2 : 3, bias = e5m2 ? 15 : 7, emin = 1 - bias;
  const int maxbits = e5m2 ? 0x7b : 0x7e, overflow = sat ? maxbits : (e5m2 ? 0x7c : 0x7f);
  uint32_t u = sr_fp8_f32_bits(f);
  uint8_t sign = (uint8_t)((u >> 24) & 0x80u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint8_t)(sign | 0x7f);  /* NaN */
  int E = (int)(a >> 23);
  uint32_t mant = a & 0x7fffffu;
  int e = E ? E - 127 : -126;                          /* value = mant24 * 2^(e - 23) */
  if (E) mant |= 0x800000u;
  if (e > 16) return (uint8_t)(sign | overflow);       /* far beyond both ranges; infinity too */
  int shift = 23 - M + (e < emin ? emin - e : 0);      /* drop this many bits of mant24 */
  if (shift > 25) return sign;                         /* below half the smallest subnormal */
  uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1);
  if (rem > half || (rem == half && (q & 1u))) q++;    /* nearest, ties to even */
  /* normal: exponent field e + bias over the mantissa q - 2^M (a carry of q into 2^(M+1) moves
  ** the exponent up by itself); subnormal: exponent field 0 and mantissa q (q = 2^M is the
  ** smallest normal, again by itself) */
  int bits = e >= emin ? ((e + bias) << M) + (int)q - (1 << M) : (int)q;
  if (bits > maxbits) bits = overflow;
  return (uint8_t)(sign | bits);
}

/* x * scale as one f32 product, a NaN x passed through as it is: the GPU's multiply gives its one
** canonical NaN (sign dropped) where x86 keeps x's sign, so both devices skip it (+-NaN -> +-0x7f) */
static SR_FP8_HD float sr_fp8_scale(float x, float scale) {
  if ((sr_fp8_f32_bits(x) & 0x7fffffffu) > 0x7f800000u) return x;
#ifdef __CUDA_ARCH__
  return __fmul_rn(x, scale);
#else
  return x * scale;
#endif
}

/* from a double, rounded once: the double goes to float rounded to odd (toward zero, then the
** last bit set when anything was dropped), which keeps every tie and near-tie of the 3- or 2-bit
** rounding that follows as it was. sat as sr_f32_to_fp8 (0 keeps a float8 infinity infinite) */
static SR_FP8_HD uint8_t sr_f64_to_fp8(double v, int e5m2, int sat) {
  float f = (float)v;
  if (v == v && (double)f != v) {
    uint32_t u = sr_fp8_f32_bits(f);
    if (f != 0 && (f > 0 ? (double)f > v : (double)f < v)) u--;  /* one step toward zero */
    f = sr_fp8_bits_f32(u | 1u);
  }
  return sr_f32_to_fp8(f, e5m2, sat);
}

static SR_FP8_HD float sr_fp8_to_f32(uint8_t b, int e5m2) {
  const int M = e5m2 ? 2 : 3, bias = e5m2 ? 15 : 7;
  uint32_t sign = (uint32_t)(b & 0x80) << 24;
  int E = (b & 0x7f) >> M, m = b & ((1 << M) - 1);
  if (!e5m2 && (b & 0x7f) == 0x7f) return sr_fp8_bits_f32(sign | 0x7fc00000u);      /* NaN */
  if (e5m2 && E == 31) return sr_fp8_bits_f32(sign | (m ? 0x7fc00000u : 0x7f800000u));
  if (E == 0) {                                        /* m * 2^(1 - bias - M), exact */
    float v = (float)m * (e5m2 ? 1.0f / 65536.0f : 1.0f / 512.0f);
    return sign ? -v : v;
  }
  return sr_fp8_bits_f32(sign | (uint32_t)(E - bias + 127) << 23 | (uint32_t)m << (23 - M));
}

#endif
