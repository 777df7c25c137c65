/*
 * Branch-free float32 exp / log / tanh / sigmoid that GCC vectorises inside `#pragma omp simd` loops
 * (libm's scalar calls do not vectorise without -ffast-math, which would break NaN/inf handling).
 * Polynomials follow Cephes (expf, logf); accuracy is about 1-2 ulp, NaN and +-inf follow libm.
 */
#ifndef GB_VMATH_H
#define GB_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float gb_from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static inline uint32_t gb_to_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

/* exp(x) = 2^n * e^r with |r| <= ln2/2; 2^n applied in two halves so subnormal results round once.
 * x is clamped to [-104, 88.8]: e^-104 rounds to 0 and e^88.8 overflows to inf, so no special cases
 * are needed; the clamps are written so NaN passes through (and n is read from the rounding
 * constant's bits, not by a float->int conversion, which NaN would make undefined). */
static inline float gb_expf(float x) {
  float xc = x < -104.0f ? -104.0f : x;
  xc = xc > 88.8f ? 88.8f : xc;
  float t = xc * 1.44269504088896341f + 12582912.0f; /* 1.5 * 2^23: low mantissa bits = round(t) */
  int32_t ni = (int32_t)gb_to_bits(t) - 0x4b400000;
  float n = t - 12582912.0f;
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t n1 = ni >> 1, n2 = ni - n1;
  return p * gb_from_bits((uint32_t)(n1 + 127) << 23) * gb_from_bits((uint32_t)(n2 + 127) << 23);
}

/* e^x for x <= 0 (softmax after max subtraction): one 2^n scale instead of two, and results below
 * e^-87 (< 1.7e-38, under FLT_MIN) flush to 0; NaN passes through. */
static inline float gb_expf_nonpos(float x) {
  float xc = x < -87.0f ? -87.0f : x;
  float t = xc * 1.44269504088896341f + 12582912.0f;
  int32_t ni = (int32_t)gb_to_bits(t) - 0x4b400000;
  float n = t - 12582912.0f;
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  float res = p * gb_from_bits((uint32_t)(ni + 127) << 23);
  return x < -87.0f ? 0.0f : res;
}

static inline float gb_logf(float x) {
  int sub = x < 1.17549435e-38f;
  float xs = sub ? x * 8388608.0f : x;
  uint32_t u = gb_to_bits(xs);
  int32_t e = (int32_t)((u >> 23) & 0xff) - 126;
  float m = gb_from_bits((u & 0x007fffffu) | 0x3f000000u); /* [0.5, 1) */
  int small = m < 0.707106781186547524f;
  e = small ? e - 1 : e;
  m = small ? m + m - 1.0f : m - 1.0f;
  e = sub ? e - 23 : e;
  float z = m * m;
  float y = 7.0376836292e-2f;
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  float fe = (float)e;
  y = y + fe * -2.12194440e-4f;
  y = y - 0.5f * z;
  float res = m + y + fe * 0.693359375f;
  res = x == 0.0f ? -INFINITY : res;
  res = x < 0.0f ? NAN : res;
  res = x == INFINITY ? INFINITY : res;
  return x != x ? x : res;
}

/* e^x - 1 without cancellation near 0 (Taylor to x^8 below |x| = 0.5). */
static inline float gb_expm1f(float x) {
  float p = 1.0f / 40320.0f;
  p = p * x + 1.0f / 5040.0f;
  p = p * x + 1.0f / 720.0f;
  p = p * x + 1.0f / 120.0f;
  p = p * x + 1.0f / 24.0f;
  p = p * x + 1.0f / 6.0f;
  p = p * x + 0.5f;
  p = (p * x + 1.0f) * x;
  float q = gb_expf(x) - 1.0f;
  return fabsf(x) < 0.5f ? p : q;
}

static inline float gb_tanhf(float x) {
  float ax = fabsf(x);
  float t = gb_expm1f(2.0f * (ax > 9.0f ? 9.0f : ax));
  float r = t / (t + 2.0f);
  r = ax > 9.0f ? 1.0f : r;
  r = copysignf(r, x);
  return x != x ? x : r;
}

static inline float gb_sigmoidf(float x) { return 1.0f / (1.0f + gb_expf(-x)); }

#define GB_SQRT_2_OVER_PI 0.7978845608028654f
#define GB_GELU_C 0.044715f

/* 0.5 x (1 + tanh(u)) written as x * sigmoid(2u): no cancellation for negative x. */
static inline float gb_gelu_tanhf(float x) {
  float u = GB_SQRT_2_OVER_PI * (x + GB_GELU_C * x * x * x);
  return x / (1.0f + gb_expf(-2.0f * u));
}

/* d/dx of gelu_tanh: 0.5 (1 + th) + 0.5 x (1 - th^2) u'(x), with 1 + th = 2s and 1 - th^2 = 4s(1-s),
 * s = sigmoid(2u); 1 - s is computed as sigmoid(-2u) to keep its precision when s is near 1.
 * u and u' use x clamped to +-20 (s saturates long before) so x^3 cannot overflow float. */
static inline float gb_gelu_tanh_gradf(float x) {
  float xc = x > 20.0f ? 20.0f : (x < -20.0f ? -20.0f : x);
  float u = GB_SQRT_2_OVER_PI * (xc + GB_GELU_C * xc * xc * xc);
  float s = 1.0f / (1.0f + gb_expf(-2.0f * u));
  float t = 1.0f / (1.0f + gb_expf(2.0f * u));
  float du = GB_SQRT_2_OVER_PI * (1.0f + 3.0f * GB_GELU_C * xc * xc);
  return s + x * (2.0f * s * t * du);
}

#endif
