/*
 * bf16 / f16 <-> f32 conversion (definitions: src/core/half.ts) and the STREAM-style bandwidth probe.
 *
 * bf16 is bit arithmetic (widen: shift; narrow: round to nearest even, NaN kept quiet). f16 uses the
 * F16C / AVX-512F conversion instructions when the compiler targets them (vcvtph2ps / vcvtps2ph with
 * round-to-nearest-even keep subnormals and give the same quiet NaN bits as half.ts); elsewhere a
 * bitwise version of half.ts.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gb.h"
#include "vmath.h"

#define GRAIN 32768

#if defined(__F16C__)
#include <immintrin.h>
#define GB_HW_F16 1
#endif

#ifdef GB_HW_F16
static void f16_widen_hw(const uint16_t *src, float *out, int64_t n) {
  int64_t i = 0;
#ifdef __AVX512F__
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(out + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
#endif
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
  for (; i < n; i++) out[i] = _cvtsh_ss(src[i]);
}

static void f16_narrow_hw(const float *src, uint16_t *out, int64_t n) {
  int64_t i = 0;
#ifdef __AVX512F__
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256((__m256i *)(out + i), _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128((__m128i *)(out + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; i++) out[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}
#else
static float f16_to_f32_bits(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  if (exp == 0) {
    float v = (float)mant * 5.9604644775390625e-8f; /* mant * 2^-24, exact */
    return gb_from_bits(gb_to_bits(v) | sign);
  }
  if (exp == 0x1f) return gb_from_bits(sign | 0x7f800000u | (mant << 13));
  return gb_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
}

static uint16_t f32_to_f16_bits(float f) {
  uint32_t x = gb_to_bits(f);
  uint32_t sign = (x >> 16) & 0x8000, exp = (x >> 23) & 0xff, mant = x & 0x7fffff;
  if (exp == 0xff) return (uint16_t)(mant == 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >> 13));
  int32_t e = (int32_t)exp - 127 + 15;
  if (e >= 31) return (uint16_t)(sign | 0x7c00);
  if (e <= 0) {
    if (e < -10) return (uint16_t)sign;
    mant |= 0x800000;
    uint32_t shift = (uint32_t)(14 - e), h = mant >> shift, rem = mant & ((1u << shift) - 1),
             halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (h & 1))) h++;
    return (uint16_t)(sign | h);
  }
  uint32_t h = ((uint32_t)e << 10) | (mant >> 13), rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
  return (uint16_t)(sign | h);
}
#endif

void gb_widen(const uint16_t *src, int dtype, float *out, int64_t n) {
  if (dtype == GB_BF16) {
    uint32_t *o = (uint32_t *)out;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) o[i] = (uint32_t)src[i] << 16;
    return;
  }
#ifdef GB_HW_F16
  f16_widen_hw(src, out, n);
#else
  for (int64_t i = 0; i < n; i++) out[i] = f16_to_f32_bits(src[i]);
#endif
}

static void narrow(const float *src, int dtype, uint16_t *out, int64_t n) {
  if (dtype == GB_BF16) {
    const uint32_t *s = (const uint32_t *)src;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
      uint32_t x = s[i];
      uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
      uint32_t nan = (x & 0x7fffffffu) > 0x7f800000u;
      out[i] = (uint16_t)(nan ? (x >> 16) | 0x40u : rounded);
    }
    return;
  }
#ifdef GB_HW_F16
  f16_narrow_hw(src, out, n);
#else
  for (int64_t i = 0; i < n; i++) out[i] = f32_to_f16_bits(src[i]);
#endif
}

typedef struct {
  const void *src;
  int dtype;
  void *out;
} conv_ctx;

static void widen_range(void *vctx, int64_t b, int64_t e) {
  const conv_ctx *c = vctx;
  gb_widen((const uint16_t *)c->src + b, c->dtype, (float *)c->out + b, e - b);
}

static void narrow_range(void *vctx, int64_t b, int64_t e) {
  const conv_ctx *c = vctx;
  narrow((const float *)c->src + b, c->dtype, (uint16_t *)c->out + b, e - b);
}

void gb_half_to_float(const uint16_t *src, int dtype, float *out, int64_t n) {
  conv_ctx c = {src, dtype, out};
  gb_parallel_for(n, GRAIN, widen_range, &c);
}

void gb_float_to_half(const float *src, int dtype, uint16_t *out, int64_t n) {
  conv_ctx c = {src, dtype, out};
  gb_parallel_for(n, GRAIN, narrow_range, &c);
}

/* ---- STREAM copy / triad ---- */

typedef struct {
  float *a, *b, *c;
  int kind; /* 0 init, 1 copy, 2 triad */
} stream_ctx;

static void stream_range(void *vctx, int64_t lo, int64_t hi) {
  const stream_ctx *s = vctx;
  float *a = s->a, *b = s->b, *c = s->c;
  if (s->kind == 0) {
    for (int64_t i = lo; i < hi; i++) {
      a[i] = 1.0f;
      b[i] = 2.0f;
      c[i] = 0.5f;
    }
  } else if (s->kind == 1) {
    memcpy(b + lo, a + lo, (size_t)(hi - lo) * sizeof(float));
  } else {
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) a[i] = b[i] + 3.0f * c[i];
  }
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void gb_stream(int64_t n, int reps, double *copy_gbs, double *triad_gbs) {
  *copy_gbs = *triad_gbs = 0.0;
  size_t bytes = ((size_t)n * sizeof(float) + 63) / 64 * 64;
  float *a = aligned_alloc(64, bytes), *b = aligned_alloc(64, bytes), *c = aligned_alloc(64, bytes);
  if (a && b && c) {
    stream_ctx s = {a, b, c, 0};
    gb_parallel_for(n, GRAIN, stream_range, &s);
    double best_copy = 1e30, best_triad = 1e30;
    for (int r = 0; r < reps; r++) {
      s.kind = 1;
      double t0 = now_s();
      gb_parallel_for(n, GRAIN, stream_range, &s);
      double t1 = now_s();
      s.kind = 2;
      gb_parallel_for(n, GRAIN, stream_range, &s);
      double t2 = now_s();
      if (t1 - t0 < best_copy) best_copy = t1 - t0;
      if (t2 - t1 < best_triad) best_triad = t2 - t1;
    }
    *copy_gbs = 2.0 * 4.0 * (double)n / best_copy / 1e9;
    *triad_gbs = 3.0 * 4.0 * (double)n / best_triad / 1e9;
  }
  free(a);
  free(b);
  free(c);
}
