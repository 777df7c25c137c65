/*
 * Rotary embedding, gather, scatterAdd and top-k (src/backends/reference/{reduce,indexing}.ts).
 *
 * rope computes in double like the reference, so results round identically. gather widens 16-bit
 * sources row by row. scatterAdd splits work by (outer, column block) so each output element is
 * summed by one thread in index order: the same float additions as the reference. Indices are
 * validated by the caller (binding.c). topk keeps a k-element heap per row, O(cols log k).
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "gb.h"

#define GRAIN 16384

/* ---- rope ---- */

typedef struct {
  const float *x, *cos_t, *sin_t;
  float *out;
  int64_t seq, heads, dim;
  double sign;
} rope_ctx;

static void rope_range(void *vctx, int64_t b, int64_t e) {
  const rope_ctx *c = vctx;
  int64_t half = c->dim / 2;
  for (int64_t r = b; r < e; r++) {
    int64_t t = (r / c->heads) % c->seq;
    const float *x = c->x + r * c->dim;
    float *o = c->out + r * c->dim;
    const float *cs = c->cos_t + t * half, *sn = c->sin_t + t * half;
    double sign = c->sign;
#pragma omp simd
    for (int64_t j = 0; j < half; j++) {
      double x1 = x[j], x2 = x[j + half], cj = cs[j], sj = sign * (double)sn[j];
      o[j] = (float)(x1 * cj - x2 * sj);
      o[j + half] = (float)(x2 * cj + x1 * sj);
    }
  }
}

/* x and out are [rows, seq, heads, dim] (out may be x); the tables [seq, dim / 2]. */
void gb_rope_run(const float *x, const float *cos_t, const float *sin_t, float *out, int64_t rows, int64_t seq,
                 int64_t heads, int64_t dim, int inverse) {
  rope_ctx c = {x, cos_t, sin_t, out, seq, heads, dim, inverse ? -1.0 : 1.0};
  int64_t grain = dim >= GRAIN ? 1 : GRAIN / (dim > 0 ? dim : 1);
  gb_parallel_for(rows * seq * heads, grain, rope_range, &c);
}

/* ---- gather ---- */

typedef struct {
  const void *src;
  int dtype;
  const int32_t *idx;
  float *out;
  int64_t size, inner, src_size;
} gather_ctx;

static void gather_range(void *vctx, int64_t b, int64_t e) {
  const gather_ctx *c = vctx;
  for (int64_t r = b; r < e; r++) {
    int64_t o = r / c->size, i = r % c->size;
    int64_t from = (o * c->src_size + c->idx[i]) * c->inner;
    float *dst = c->out + r * c->inner;
    if (c->dtype == GB_F32)
      memcpy(dst, (const float *)c->src + from, (size_t)c->inner * sizeof(float));
    else
      gb_widen((const uint16_t *)c->src + from, c->dtype, dst, c->inner);
  }
}

void gb_gather_run(const void *src, int dtype, const int32_t *idx, float *out, int64_t outer, int64_t size,
                   int64_t inner, int64_t src_size) {
  gather_ctx c = {src, dtype, idx, out, size, inner, src_size};
  int64_t grain = inner >= GRAIN ? 1 : GRAIN / (inner > 0 ? inner : 1);
  gb_parallel_for(outer * size, grain, gather_range, &c);
}

/* ---- scatterAdd ---- */

#define SCATTER_JBLOCK 2048

typedef struct {
  const float *src;
  const int32_t *idx;
  float *out;
  int64_t size, inner, out_size, jblocks;
} scatter_ctx;

static void scatter_range(void *vctx, int64_t b, int64_t e) {
  const scatter_ctx *c = vctx;
  for (int64_t t = b; t < e; t++) {
    int64_t o = t / c->jblocks, j0 = (t % c->jblocks) * SCATTER_JBLOCK;
    int64_t w = c->inner - j0 < SCATTER_JBLOCK ? c->inner - j0 : SCATTER_JBLOCK;
    for (int64_t i = 0; i < c->size; i++) {
      const float *s = c->src + (o * c->size + i) * c->inner + j0;
      float *d = c->out + (o * c->out_size + c->idx[i]) * c->inner + j0;
#pragma omp simd
      for (int64_t j = 0; j < w; j++) d[j] += s[j];
    }
  }
}

void gb_scatter_add_run(const float *src, const int32_t *idx, float *out, int64_t outer, int64_t size,
                        int64_t inner, int64_t out_size) {
  scatter_ctx c = {src, idx, out, size, inner, out_size, (inner + SCATTER_JBLOCK - 1) / SCATTER_JBLOCK};
  int64_t per = size * (inner < SCATTER_JBLOCK ? inner : SCATTER_JBLOCK);
  int64_t grain = per >= GRAIN ? 1 : GRAIN / (per > 0 ? per : 1);
  gb_parallel_for(outer * c.jblocks, grain, scatter_range, &c);
}

/* ---- topk ---- */

/* (va, ia) ranks before (vb, ib): larger value first, NaN after every number, then lower index. */
static inline int ranks_before(float va, int32_t ia, float vb, int32_t ib) {
  int an = va != va, bn = vb != vb;
  if (an || bn) return an == bn ? ia < ib : bn;
  return va == vb ? ia < ib : va > vb;
}

typedef struct {
  float v;
  int32_t i;
} entry;

/* Heap with the entry that ranks last at the root. */
static void sift_down(entry *h, int64_t n, int64_t p) {
  for (;;) {
    int64_t l = 2 * p + 1, r = l + 1, w = p;
    if (l < n && ranks_before(h[w].v, h[w].i, h[l].v, h[l].i)) w = l;
    if (r < n && ranks_before(h[w].v, h[w].i, h[r].v, h[r].i)) w = r;
    if (w == p) return;
    entry t = h[p];
    h[p] = h[w];
    h[w] = t;
    p = w;
  }
}

typedef struct {
  const float *x;
  int64_t cols, k;
  float *values;
  int32_t *indices;
  atomic_int failed;
} topk_ctx;

static void topk_range(void *vctx, int64_t b, int64_t e) {
  topk_ctx *c = vctx;
  int64_t k = c->k, cols = c->cols;
  entry *h = malloc((size_t)k * sizeof(entry));
  if (!h) {
    atomic_store(&c->failed, 1);
    return;
  }
  for (int64_t r = b; r < e; r++) {
    const float *x = c->x + r * cols;
    for (int64_t j = 0; j < k; j++) h[j] = (entry){x[j], (int32_t)j};
    for (int64_t p = k / 2 - 1; p >= 0; p--) sift_down(h, k, p);
    for (int64_t j = k; j < cols;) {
      float top = h[0].v;
      /* Most elements lose to the current k-th best: skip blocks with no candidate (vectorised). */
      if (top == top && j + 16 <= cols) {
        int any = 0;
#pragma omp simd reduction(| : any)
        for (int64_t t = 0; t < 16; t++) any |= x[j + t] > top;
        if (!any) {
          j += 16;
          continue;
        }
      }
      int64_t end = j + 16 < cols ? j + 16 : cols;
      for (; j < end; j++) {
        float v = x[j];
        top = h[0].v;
        /* A later index wins only with a strictly larger value; NaN only displaces nothing. */
        if (top == top ? !(v > top) : v != v) continue;
        h[0] = (entry){v, (int32_t)j};
        sift_down(h, k, 0);
      }
    }
    for (int64_t n = k; n > 0; n--) {
      c->values[r * k + n - 1] = h[0].v;
      c->indices[r * k + n - 1] = h[0].i;
      h[0] = h[n - 1];
      sift_down(h, n - 1, 0);
    }
  }
  free(h);
}

int gb_topk_run(const float *x, int64_t rows, int64_t cols, int64_t k, float *values, int32_t *indices) {
  if (k <= 0) return 0;
  topk_ctx c = {x, cols, k, values, indices, 0};
  atomic_init(&c.failed, 0);
  int64_t grain = cols >= GRAIN ? 1 : GRAIN / (cols > 0 ? cols : 1);
  gb_parallel_for(rows, grain, topk_range, &c);
  return atomic_load(&c.failed) ? -1 : 0;
}
