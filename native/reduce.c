/*
 * Reductions and row normalisations: reduce, argReduce, softmax, logSoftmax, rmsnorm.
 *
 * Follows src/backends/reference/reduce.ts: sums (including softmax denominators and RMS sums of
 * squares) accumulate in double; max/min propagate NaN and put +0 above -0 (Math.max/min); argmax /
 * argmin skip NaN, take the first of equal values, and give 0 for an all-NaN slice. Rows run in
 * parallel; a single long row (outer == 1) is split into chunks whose partial results are combined.
 */
#include <math.h>
#include <stdlib.h>

#include "gb.h"
#include "vmath.h"

#define GRAIN 16384
#define JBLOCK 256

/* ---- partial results of a contiguous reduction ---- */

typedef struct {
  double sum;
  float m;     /* max (or min) ignoring NaN */
  int nan;     /* a NaN was seen */
  int zero;    /* for max: a +0 was seen; for min: a -0 was seen */
} partial;

static partial reduce_contig(int op, const float *x, int64_t n) {
  partial p = {0.0, op == GB_RMAX ? -INFINITY : INFINITY, 0, 0};
  if (op == GB_SUM) {
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++) s += (double)x[i];
    p.sum = s;
    return p;
  }
  float m = p.m;
  int nan = 0, zero = 0;
  if (op == GB_RMAX) {
#pragma omp simd reduction(max : m) reduction(| : nan, zero)
    for (int64_t i = 0; i < n; i++) {
      float v = x[i];
      nan |= v != v;
      zero |= gb_to_bits(v) == 0u;
      m = v > m ? v : m;
    }
  } else {
#pragma omp simd reduction(min : m) reduction(| : nan, zero)
    for (int64_t i = 0; i < n; i++) {
      float v = x[i];
      nan |= v != v;
      zero |= gb_to_bits(v) == 0x80000000u;
      m = v < m ? v : m;
    }
  }
  p.m = m;
  p.nan = nan;
  p.zero = zero;
  return p;
}

static void combine(int op, partial *into, const partial *p) {
  into->sum += p->sum;
  into->nan |= p->nan;
  into->zero |= p->zero;
  if (op == GB_RMAX) into->m = p->m > into->m ? p->m : into->m;
  if (op == GB_RMIN) into->m = p->m < into->m ? p->m : into->m;
}

static float finish(int op, const partial *p) {
  if (op == GB_SUM) return (float)p->sum;
  if (p->nan) return NAN;
  if (p->m == 0.0f) return p->zero ? (op == GB_RMAX ? 0.0f : -0.0f) : p->m;
  return p->m;
}

typedef struct {
  int op;
  const float *x;
  int64_t n, chunks;
  partial *parts;
} chunk_ctx;

static void chunk_range(void *vctx, int64_t b, int64_t e) {
  chunk_ctx *c = vctx;
  for (int64_t t = b; t < e; t++) {
    int64_t lo = c->n * t / c->chunks, hi = c->n * (t + 1) / c->chunks;
    c->parts[t] = reduce_contig(c->op, c->x + lo, hi - lo);
  }
}

/* One long contiguous reduction, split across the pool. */
static partial reduce_long(int op, const float *x, int64_t n) {
  enum { CHUNKS = 64 };
  partial parts[CHUNKS];
  int64_t chunks = n / GRAIN;
  if (chunks > CHUNKS) chunks = CHUNKS;
  if (chunks < 2) return reduce_contig(op, x, n);
  chunk_ctx c = {op, x, n, chunks, parts};
  gb_parallel_for(chunks, 1, chunk_range, &c);
  partial acc = parts[0];
  for (int64_t t = 1; t < chunks; t++) combine(op, &acc, &parts[t]);
  return acc;
}

/* ---- reduce ---- */

typedef struct {
  int op;
  const float *x;
  float *out;
  int64_t outer, size, inner, jblocks;
} reduce_ctx;

static void reduce_rows(void *vctx, int64_t b, int64_t e) {
  const reduce_ctx *c = vctx;
  for (int64_t o = b; o < e; o++) {
    partial p = reduce_contig(c->op, c->x + o * c->size, c->size);
    c->out[o] = finish(c->op, &p);
  }
}

/* inner > 1: each task is (o, block of JBLOCK columns), accumulated in index order like the reference. */
static void reduce_cols(void *vctx, int64_t b, int64_t e) {
  const reduce_ctx *c = vctx;
  double acc[JBLOCK];
  float m[JBLOCK];
  for (int64_t t = b; t < e; t++) {
    int64_t o = t / c->jblocks, j0 = (t % c->jblocks) * JBLOCK;
    int64_t w = c->inner - j0 < JBLOCK ? c->inner - j0 : JBLOCK;
    const float *x = c->x + o * c->size * c->inner + j0;
    float *out = c->out + o * c->inner + j0;
    if (c->op == GB_SUM) {
      for (int64_t j = 0; j < w; j++) acc[j] = 0.0;
      for (int64_t i = 0; i < c->size; i++) {
        const float *row = x + i * c->inner;
#pragma omp simd
        for (int64_t j = 0; j < w; j++) acc[j] += (double)row[j];
      }
      for (int64_t j = 0; j < w; j++) out[j] = (float)acc[j];
    } else {
      int is_max = c->op == GB_RMAX;
      for (int64_t j = 0; j < w; j++) m[j] = is_max ? -INFINITY : INFINITY;
      for (int64_t i = 0; i < c->size; i++) {
        const float *row = x + i * c->inner;
        if (is_max) {
#pragma omp simd
          for (int64_t j = 0; j < w; j++) {
            float a = m[j], v = row[j];
            float r = v > a ? v : a;
            r = v == a ? gb_from_bits(gb_to_bits(v) & gb_to_bits(a)) : r;
            m[j] = (a != a || v != v) ? a + v : r;
          }
        } else {
#pragma omp simd
          for (int64_t j = 0; j < w; j++) {
            float a = m[j], v = row[j];
            float r = v < a ? v : a;
            r = v == a ? gb_from_bits(gb_to_bits(v) | gb_to_bits(a)) : r;
            m[j] = (a != a || v != v) ? a + v : r;
          }
        }
      }
      for (int64_t j = 0; j < w; j++) out[j] = m[j];
    }
  }
}

void gb_reduce_run(int op, const float *x, float *out, int64_t outer, int64_t size, int64_t inner) {
  if (inner == 1 && outer == 1) {
    partial p = reduce_long(op, x, size);
    out[0] = finish(op, &p);
    return;
  }
  reduce_ctx c = {op, x, out, outer, size, inner, (inner + JBLOCK - 1) / JBLOCK};
  int64_t per = size * (inner < JBLOCK ? inner : JBLOCK);
  int64_t grain = per >= GRAIN ? 1 : GRAIN / (per > 0 ? per : 1);
  if (inner == 1)
    gb_parallel_for(outer, grain, reduce_rows, &c);
  else
    gb_parallel_for(outer * c.jblocks, grain, reduce_cols, &c);
}

/* ---- argReduce ---- */

typedef struct {
  int is_min;
  const float *x;
  int32_t *out;
  int64_t size, inner, jblocks;
} arg_ctx;

static int32_t arg_contig(int is_min, const float *x, int64_t n) {
  /* The extreme ignoring NaN, then its first occurrence; an all-NaN slice finds none and gives 0. */
  float m = reduce_contig(is_min ? GB_RMIN : GB_RMAX, x, n).m;
  for (int64_t i = 0; i < n; i++)
    if (x[i] == m) return (int32_t)i;
  return 0;
}

static void arg_rows(void *vctx, int64_t b, int64_t e) {
  const arg_ctx *c = vctx;
  for (int64_t o = b; o < e; o++) c->out[o] = arg_contig(c->is_min, c->x + o * c->size, c->size);
}

static void arg_cols(void *vctx, int64_t b, int64_t e) {
  const arg_ctx *c = vctx;
  float bv[JBLOCK];
  int32_t bi[JBLOCK];
  for (int64_t t = b; t < e; t++) {
    int64_t o = t / c->jblocks, j0 = (t % c->jblocks) * JBLOCK;
    int64_t w = c->inner - j0 < JBLOCK ? c->inner - j0 : JBLOCK;
    const float *x = c->x + o * c->size * c->inner + j0;
    for (int64_t j = 0; j < w; j++) {
      bv[j] = NAN;
      bi[j] = 0;
    }
    for (int64_t i = 0; i < c->size; i++) {
      const float *row = x + i * c->inner;
      int32_t ii = (int32_t)i;
      if (c->is_min) {
#pragma omp simd
        for (int64_t j = 0; j < w; j++) {
          float v = row[j], a = bv[j];
          int take = v == v && (a != a || v < a);
          bv[j] = take ? v : a;
          bi[j] = take ? ii : bi[j];
        }
      } else {
#pragma omp simd
        for (int64_t j = 0; j < w; j++) {
          float v = row[j], a = bv[j];
          int take = v == v && (a != a || v > a);
          bv[j] = take ? v : a;
          bi[j] = take ? ii : bi[j];
        }
      }
    }
    for (int64_t j = 0; j < w; j++) c->out[o * c->inner + j0 + j] = bi[j];
  }
}

void gb_argreduce_run(int is_min, const float *x, int32_t *out, int64_t outer, int64_t size, int64_t inner) {
  arg_ctx c = {is_min, x, out, size, inner, (inner + JBLOCK - 1) / JBLOCK};
  int64_t per = size * (inner < JBLOCK ? inner : JBLOCK);
  int64_t grain = per >= GRAIN ? 1 : GRAIN / (per > 0 ? per : 1);
  if (inner == 1)
    gb_parallel_for(outer, grain, arg_rows, &c);
  else
    gb_parallel_for(outer * c.jblocks, grain, arg_cols, &c);
}

/* ---- softmax / logSoftmax ---- */

typedef struct {
  const float *x;
  float *out;
  int64_t cols;
  int log;
} softmax_ctx;

static void softmax_rows(void *vctx, int64_t b, int64_t e) {
  const softmax_ctx *c = vctx;
  int64_t n = c->cols;
  for (int64_t r = b; r < e; r++) {
    const float *x = c->x + r * n;
    float *o = c->out + r * n;
    partial p = reduce_contig(GB_RMAX, x, n);
    float m = p.nan ? NAN : p.m;
    /* Sums of exp: float within blocks of 512 (vectorised, no per-element widening), double across
     * blocks, which keeps the total as accurate as a double sum for all practical purposes. */
    double total = 0.0;
    for (int64_t j0 = 0; j0 < n; j0 += 512) {
      int64_t j1 = j0 + 512 < n ? j0 + 512 : n;
      float s = 0.0f;
      if (c->log) {
#pragma omp simd reduction(+ : s)
        for (int64_t j = j0; j < j1; j++) s += gb_expf_nonpos(x[j] - m);
      } else {
#pragma omp simd reduction(+ : s)
        for (int64_t j = j0; j < j1; j++) {
          float v = gb_expf_nonpos(x[j] - m);
          o[j] = v;
          s += v;
        }
      }
      total += (double)s;
    }
    if (c->log) {
      double lse = (double)m + log(total);
#pragma omp simd
      for (int64_t j = 0; j < n; j++) o[j] = (float)((double)x[j] - lse);
    } else {
      float inv = (float)(1.0 / total);
#pragma omp simd
      for (int64_t j = 0; j < n; j++) o[j] *= inv;
    }
  }
}

void gb_softmax_run(const float *x, float *out, int64_t rows, int64_t cols, int log_softmax) {
  softmax_ctx c = {x, out, cols, log_softmax};
  int64_t grain = cols >= GRAIN / 4 ? 1 : (GRAIN / 4) / (cols > 0 ? cols : 1);
  gb_parallel_for(rows, grain, softmax_rows, &c);
}

/* ---- RMSNorm ---- */

typedef struct {
  const float *x, *w;
  float *out, *inv_rms;
  int64_t cols;
  double eps, w_offset;
} rms_ctx;

static void rms_rows(void *vctx, int64_t b, int64_t e) {
  const rms_ctx *c = vctx;
  int64_t n = c->cols;
  const float *w = c->w;
  double off = c->w_offset;
  for (int64_t r = b; r < e; r++) {
    const float *x = c->x + r * n;
    float *o = c->out + r * n;
    double ss = 0.0;
#pragma omp simd reduction(+ : ss)
    for (int64_t j = 0; j < n; j++) ss += (double)x[j] * (double)x[j];
    float inv = (float)(1.0 / sqrt(ss / (double)n + c->eps));
    if (c->inv_rms) c->inv_rms[r] = inv;
    double dinv = (double)inv;
    if (w) {
#pragma omp simd
      for (int64_t j = 0; j < n; j++) o[j] = (float)((double)x[j] * dinv * (off + (double)w[j]));
    } else {
#pragma omp simd
      for (int64_t j = 0; j < n; j++) o[j] = x[j] * inv;
    }
  }
}

void gb_rmsnorm_run(const float *x, const float *w, float *out, int64_t rows, int64_t cols, double eps,
                    double w_offset, float *inv_rms) {
  rms_ctx c = {x, w, out, inv_rms, cols, eps, w_offset};
  int64_t grain = cols >= GRAIN ? 1 : GRAIN / (cols > 0 ? cols : 1);
  gb_parallel_for(rows, grain, rms_rows, &c);
}
