/*
 * Sparse kernels for dictionaries (contracts: SparseMatmulArgs / ThresholdArgs in src/core/backend.ts;
 * the reference is src/backends/reference/sparse.ts), with their Node-API entry points:
 *
 *   sparseMatmul(offsets, indices, values, w, wDtype, out, rows, n, wRows, wRowStride, accumulate)
 *       -> -1, or the position in `indices` of an out-of-range index (nothing written then)
 *   thresholdCount(x, bias | null, threshold, thresholdStride, counts, rows, cols)
 *   thresholdSelect(x, bias | null, threshold, thresholdStride, offsets, indices, values, rows, cols)
 *       -> -1, or a row with more selected entries than offsets leave room for
 *
 * Rows are split across the kernel pool. Decoding a row is one axpy per stored entry
 * (out_row += v * w_row), vectorised; 16-bit rows of w are widened a block at a time on the stack.
 * Kept in its own file (registered from binding.c) so that dictionary kernels and the core ones can
 * change independently.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "gb.h"
#include "napi_args.h"
#include "sparse.h"

#define WIDEN_BLOCK 1024

typedef struct {
  const int32_t *offsets, *indices;
  const float *values;
  const void *w;
  int dtype;
  float *out;
  int64_t n, w_row_stride;
  int accumulate;
} spmm_ctx;

static void spmm_rows(void *vctx, int64_t r0, int64_t r1) {
  const spmm_ctx *c = vctx;
  const int64_t n = c->n;
  float buf[WIDEN_BLOCK];
  for (int64_t r = r0; r < r1; r++) {
    float *o = c->out + r * n;
    if (!c->accumulate) memset(o, 0, (size_t)n * sizeof(float));
    for (int64_t j = c->offsets[r]; j < c->offsets[r + 1]; j++) {
      const float v = c->values[j];
      const int64_t base = (int64_t)c->indices[j] * c->w_row_stride;
      if (c->dtype == GB_F32) {
        const float *w = (const float *)c->w + base;
#pragma omp simd
        for (int64_t k = 0; k < n; k++) o[k] += v * w[k];
      } else {
        const uint16_t *w = (const uint16_t *)c->w + base;
        for (int64_t k0 = 0; k0 < n; k0 += WIDEN_BLOCK) {
          int64_t len = n - k0 < WIDEN_BLOCK ? n - k0 : WIDEN_BLOCK;
          gb_widen(w + k0, c->dtype, buf, len);
#pragma omp simd
          for (int64_t k = 0; k < len; k++) o[k0 + k] += v * buf[k];
        }
      }
    }
  }
}

void gb_sparse_matmul_run(const int32_t *offsets, const int32_t *indices, const float *values, const void *w,
                          int dtype, float *out, int64_t rows, int64_t n, int64_t w_row_stride, int accumulate) {
  spmm_ctx c = {offsets, indices, values, w, dtype, out, n, w_row_stride, accumulate};
  int64_t nnz = rows > 0 ? offsets[rows] - offsets[0] : 0;
  /* Grain: about 64K multiply-adds per range. */
  int64_t per_row = rows > 0 ? (nnz / rows + 1) * (n + 1) : 1;
  int64_t grain = 65536 / per_row + 1;
  gb_parallel_for(rows, grain, spmm_rows, &c);
}

typedef struct {
  const float *x, *bias, *t;
  int64_t cols, t_stride;
  int32_t *counts;
  const int32_t *offsets;
  int32_t *indices;
  float *values;
  _Atomic int64_t overflow; /* -1, or some row that had more entries than room */
} thr_ctx;

#define ROW_BLOCK 4096

static void count_rows(void *vctx, int64_t r0, int64_t r1) {
  thr_ctx *c = vctx;
  float buf[ROW_BLOCK];
  for (int64_t r = r0; r < r1; r++) {
    int32_t k = 0;
    for (int64_t c0 = 0; c0 < c->cols; c0 += ROW_BLOCK) {
      const int64_t len = c->cols - c0 < ROW_BLOCK ? c->cols - c0 : ROW_BLOCK;
      const float *x = c->x + r * c->cols + c0;
      const float *b = c->bias ? c->bias + c0 : NULL;
      if (b) {
#pragma omp simd
        for (int64_t i = 0; i < len; i++) buf[i] = x[i] + b[i];
        x = buf;
      }
      if (c->t_stride) {
        const float *t = c->t + c0;
#pragma omp simd reduction(+ : k)
        for (int64_t i = 0; i < len; i++) k += (x[i] > t[i]) & (x[i] > 0.0f);
      } else {
        const float t = c->t[0];
#pragma omp simd reduction(+ : k)
        for (int64_t i = 0; i < len; i++) k += (x[i] > t) & (x[i] > 0.0f);
      }
    }
    c->counts[r] = k;
  }
}

#define SCAN_BLOCK 64

/* Whether any of len entries from x (+ bias) passes its threshold: a vectorised pre-check, so that
 * the scalar selection below only visits the few blocks holding an active feature. */
static int block_any(const float *x, const float *b, const float *t, int64_t t_stride, int64_t len) {
  int any = 0;
  if (b && t_stride) {
#pragma omp simd reduction(| : any)
    for (int64_t k = 0; k < len; k++) any |= (x[k] + b[k] > t[k]) & (x[k] + b[k] > 0.0f);
  } else if (b) {
    const float tt = t[0];
#pragma omp simd reduction(| : any)
    for (int64_t k = 0; k < len; k++) any |= (x[k] + b[k] > tt) & (x[k] + b[k] > 0.0f);
  } else if (t_stride) {
#pragma omp simd reduction(| : any)
    for (int64_t k = 0; k < len; k++) any |= (x[k] > t[k]) & (x[k] > 0.0f);
  } else {
    const float tt = t[0];
#pragma omp simd reduction(| : any)
    for (int64_t k = 0; k < len; k++) any |= (x[k] > tt) & (x[k] > 0.0f);
  }
  return any;
}

static void select_rows(void *vctx, int64_t r0, int64_t r1) {
  thr_ctx *c = vctx;
  for (int64_t r = r0; r < r1; r++) {
    const float *x = c->x + r * c->cols;
    int64_t j = c->offsets[r], end = c->offsets[r + 1];
    for (int64_t i0 = 0; i0 < c->cols; i0 += SCAN_BLOCK) {
      const int64_t len = c->cols - i0 < SCAN_BLOCK ? c->cols - i0 : SCAN_BLOCK;
      const float *b = c->bias ? c->bias + i0 : NULL;
      if (!block_any(x + i0, b, c->t + i0 * c->t_stride, c->t_stride, len)) continue;
      for (int64_t i = i0; i < i0 + len; i++) {
        const float v = c->bias ? x[i] + c->bias[i] : x[i];
        const float t = c->t[i * c->t_stride];
        if (!(v > t && v > 0.0f)) continue;
        if (j >= end) {
          c->overflow = r;
          break;
        }
        c->indices[j] = (int32_t)i;
        c->values[j] = v;
        j++;
      }
      if (c->overflow == r) break;
    }
  }
}

/* ---- Node-API entry points ---- */

/* offsets[0..rows] must be non-decreasing from >= 0, ending within `limit` entries. */
static void check_offsets(args_t *a, const int32_t *off, int64_t rows, int64_t limit) {
  if (!a->ok) return;
  if (off[0] < 0) args_fail(a, "offsets[0] < 0", 1);
  for (int64_t r = 0; a->ok && r < rows; r++)
    if (off[r + 1] < off[r]) args_fail(a, "offsets decrease", 1);
  if (a->ok && off[rows] > limit) args_fail(a, "offsets reach past indices/values", 1);
}

static napi_value js_sparse_matmul(napi_env env, napi_callback_info info) {
  args_t a = args_get(env, info, 11, "native sparseMatmul");
  int64_t dtype = args_size(&a, 4, 2147483647.0), rows = args_size(&a, 6, 2147483647.0), n = args_size(&a, 7, 2147483647.0), w_rows = args_size(&a, 8, 2147483647.0), stride = args_size(&a, 9, 2147483647.0);
  int accumulate = args_flag(&a, 10);
  if (a.ok && dtype > 2) args_fail(&a, "unknown dtype code", 1);
  if (a.ok && w_rows > 0 && n > stride) args_fail(&a, "n > wRowStride", 1);
  const int32_t *off = args_array(&a, 0, napi_int32_array, rows + 1, "offsets", NULL);
  size_t ilen = 0, vlen = 0;
  if (a.ok) napi_get_typedarray_info(env, a.argv[1], NULL, &ilen, NULL, NULL, NULL);
  if (a.ok) napi_get_typedarray_info(env, a.argv[2], NULL, &vlen, NULL, NULL, NULL);
  const int32_t *idx = args_array(&a, 1, napi_int32_array, 0, "indices", NULL);
  const float *val = args_array(&a, 2, napi_float32_array, 0, "values", NULL);
  int64_t w_need = w_rows > 0 ? args_mul(&a, w_rows - 1, stride) + n : 0;
  const void *w = args_array(&a, 3, dtype == GB_F32 ? napi_float32_array : napi_uint16_array, w_need, "w", NULL);
  float *out = args_array(&a, 5, napi_float32_array, args_mul(&a, rows, n), "out", NULL);
  check_offsets(&a, off, rows, (int64_t)(ilen < vlen ? ilen : vlen));
  if (!a.ok) return NULL;
  for (int64_t j = off[0]; j < off[rows]; j++)
    if (idx[j] < 0 || idx[j] >= w_rows) return args_number(env, (double)j);
  gb_sparse_matmul_run(off, idx, val, w, (int)dtype, out, rows, n, stride, accumulate);
  return args_number(env, -1);
}

static napi_value js_threshold_count(napi_env env, napi_callback_info info) {
  args_t a = args_get(env, info, 7, "native thresholdCount");
  int64_t t_stride = args_size(&a, 3, 2147483647.0), rows = args_size(&a, 5, 2147483647.0), cols = args_size(&a, 6, 2147483647.0);
  if (a.ok && t_stride > 1) args_fail(&a, "thresholdStride must be 0 or 1", 1);
  thr_ctx c = {0};
  c.x = args_array(&a, 0, napi_float32_array, args_mul(&a, rows, cols), "x", NULL);
  c.bias = args_is_null(&a, 1) ? NULL : args_array(&a, 1, napi_float32_array, cols, "bias", NULL);
  c.t = args_array(&a, 2, napi_float32_array, t_stride ? cols : 1, "threshold", NULL);
  c.counts = args_array(&a, 4, napi_int32_array, rows, "counts", NULL);
  if (!a.ok) return NULL;
  c.cols = cols;
  c.t_stride = t_stride;
  gb_parallel_for(rows, 262144 / (cols + 1) + 1, count_rows, &c);
  return NULL;
}

static napi_value js_threshold_select(napi_env env, napi_callback_info info) {
  args_t a = args_get(env, info, 9, "native thresholdSelect");
  int64_t t_stride = args_size(&a, 3, 2147483647.0), rows = args_size(&a, 7, 2147483647.0), cols = args_size(&a, 8, 2147483647.0);
  if (a.ok && t_stride > 1) args_fail(&a, "thresholdStride must be 0 or 1", 1);
  thr_ctx c = {0};
  c.x = args_array(&a, 0, napi_float32_array, args_mul(&a, rows, cols), "x", NULL);
  c.bias = args_is_null(&a, 1) ? NULL : args_array(&a, 1, napi_float32_array, cols, "bias", NULL);
  c.t = args_array(&a, 2, napi_float32_array, t_stride ? cols : 1, "threshold", NULL);
  c.offsets = args_array(&a, 4, napi_int32_array, rows + 1, "offsets", NULL);
  c.indices = args_array(&a, 5, napi_int32_array, 0, "indices", NULL);
  c.values = args_array(&a, 6, napi_float32_array, 0, "values", NULL);
  size_t ilen = 0, vlen = 0;
  if (a.ok) napi_get_typedarray_info(env, a.argv[5], NULL, &ilen, NULL, NULL, NULL);
  if (a.ok) napi_get_typedarray_info(env, a.argv[6], NULL, &vlen, NULL, NULL, NULL);
  check_offsets(&a, c.offsets, rows, (int64_t)(ilen < vlen ? ilen : vlen));
  if (!a.ok) return NULL;
  c.cols = cols;
  c.t_stride = t_stride;
  c.overflow = -1;
  gb_parallel_for(rows, 262144 / (cols + 1) + 1, select_rows, &c);
  return args_number(env, (double)c.overflow);
}

void gb_sparse_register(napi_env env, napi_value exports) {
  static const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {
      {"sparseMatmul", js_sparse_matmul},
      {"thresholdCount", js_threshold_count},
      {"thresholdSelect", js_threshold_select},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
    napi_set_named_property(env, exports, fns[i].name, f);
  }
}
