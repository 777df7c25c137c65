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

typedef struct {
  napi_env env;
  napi_value argv[12];
  int ok;
} args_t;

static void fail(args_t *a, const char *msg, int range) {
  if (!a->ok) return;
  if (range)
    napi_throw_range_error(a->env, NULL, msg);
  else
    napi_throw_type_error(a->env, NULL, msg);
  a->ok = 0;
}

static args_t get_args(napi_env env, napi_callback_info info, size_t want) {
  args_t a = {env, {0}, 1};
  size_t argc = 12;
  napi_get_cb_info(env, info, &argc, a.argv, NULL, NULL);
  if (argc < want) fail(&a, "native sparse kernel: too few arguments", 0);
  return a;
}

/* A typed array of type `want`, with at least `min` elements; *len receives its length. */
static void *arr(args_t *a, size_t i, napi_typedarray_type want, int64_t min, const char *name) {
  if (!a->ok) return NULL;
  bool is = false;
  napi_typedarray_type t;
  size_t len = 0;
  void *data = NULL;
  napi_is_typedarray(a->env, a->argv[i], &is);
  if (is) napi_get_typedarray_info(a->env, a->argv[i], &t, &len, &data, NULL, NULL);
  char msg[160];
  if (!is || t != want) {
    snprintf(msg, sizeof msg, "native sparse kernel: %s has the wrong array type", name);
    fail(a, msg, 0);
    return NULL;
  }
  if ((int64_t)len < min) {
    snprintf(msg, sizeof msg, "native sparse kernel: %s has %zu elements, needs %lld", name, len, (long long)min);
    fail(a, msg, 1);
    return NULL;
  }
  return data;
}

static int64_t size(args_t *a, size_t i) {
  double v = 0;
  if (a->ok && napi_get_value_double(a->env, a->argv[i], &v) != napi_ok) fail(a, "native sparse kernel: expected a number", 0);
  if (a->ok && !(v >= 0 && v <= 2147483647.0 && v == (double)(int64_t)v))
    fail(a, "native sparse kernel: sizes must be integers in [0, 2^31)", 1);
  return (int64_t)v;
}

static int is_null(args_t *a, size_t i) {
  napi_valuetype t = napi_undefined;
  if (a->ok) napi_typeof(a->env, a->argv[i], &t);
  return t == napi_null || t == napi_undefined;
}

static int flag(args_t *a, size_t i) {
  bool b = false;
  if (a->ok && napi_get_value_bool(a->env, a->argv[i], &b) != napi_ok) fail(a, "native sparse kernel: expected a boolean", 0);
  return b;
}

static int64_t mul(args_t *a, int64_t x, int64_t y) {
  int64_t r = 0;
  if (__builtin_mul_overflow(x, y, &r)) fail(a, "native sparse kernel: size overflow", 1);
  return r;
}

/* offsets[0..rows] must be non-decreasing from >= 0, ending within `limit` entries. */
static void check_offsets(args_t *a, const int32_t *off, int64_t rows, int64_t limit) {
  if (!a->ok) return;
  if (off[0] < 0) fail(a, "native sparse kernel: offsets[0] < 0", 1);
  for (int64_t r = 0; a->ok && r < rows; r++)
    if (off[r + 1] < off[r]) fail(a, "native sparse kernel: offsets decrease", 1);
  if (a->ok && off[rows] > limit) fail(a, "native sparse kernel: offsets reach past indices/values", 1);
}

static napi_value num(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

static napi_value js_sparse_matmul(napi_env env, napi_callback_info info) {
  args_t a = get_args(env, info, 11);
  int64_t dtype = size(&a, 4), rows = size(&a, 6), n = size(&a, 7), w_rows = size(&a, 8), stride = size(&a, 9);
  int accumulate = flag(&a, 10);
  if (a.ok && dtype > 2) fail(&a, "native sparseMatmul: unknown dtype code", 1);
  if (a.ok && w_rows > 0 && n > stride) fail(&a, "native sparseMatmul: n > wRowStride", 1);
  const int32_t *off = arr(&a, 0, napi_int32_array, rows + 1, "offsets");
  size_t ilen = 0, vlen = 0;
  if (a.ok) napi_get_typedarray_info(env, a.argv[1], NULL, &ilen, NULL, NULL, NULL);
  if (a.ok) napi_get_typedarray_info(env, a.argv[2], NULL, &vlen, NULL, NULL, NULL);
  const int32_t *idx = arr(&a, 1, napi_int32_array, 0, "indices");
  const float *val = arr(&a, 2, napi_float32_array, 0, "values");
  int64_t w_need = w_rows > 0 ? mul(&a, w_rows - 1, stride) + n : 0;
  const void *w = arr(&a, 3, dtype == GB_F32 ? napi_float32_array : napi_uint16_array, w_need, "w");
  float *out = arr(&a, 5, napi_float32_array, mul(&a, rows, n), "out");
  check_offsets(&a, off, rows, (int64_t)(ilen < vlen ? ilen : vlen));
  if (!a.ok) return NULL;
  for (int64_t j = off[0]; j < off[rows]; j++)
    if (idx[j] < 0 || idx[j] >= w_rows) return num(env, (double)j);
  gb_sparse_matmul_run(off, idx, val, w, (int)dtype, out, rows, n, stride, accumulate);
  return num(env, -1);
}

static napi_value js_threshold_count(napi_env env, napi_callback_info info) {
  args_t a = get_args(env, info, 7);
  int64_t t_stride = size(&a, 3), rows = size(&a, 5), cols = size(&a, 6);
  if (a.ok && t_stride > 1) fail(&a, "native thresholdCount: thresholdStride must be 0 or 1", 1);
  thr_ctx c = {0};
  c.x = arr(&a, 0, napi_float32_array, mul(&a, rows, cols), "x");
  c.bias = is_null(&a, 1) ? NULL : arr(&a, 1, napi_float32_array, cols, "bias");
  c.t = arr(&a, 2, napi_float32_array, t_stride ? cols : 1, "threshold");
  c.counts = arr(&a, 4, napi_int32_array, rows, "counts");
  if (!a.ok) return NULL;
  c.cols = cols;
  c.t_stride = t_stride;
  gb_parallel_for(rows, 262144 / (cols + 1) + 1, count_rows, &c);
  return NULL;
}

static napi_value js_threshold_select(napi_env env, napi_callback_info info) {
  args_t a = get_args(env, info, 9);
  int64_t t_stride = size(&a, 3), rows = size(&a, 7), cols = size(&a, 8);
  if (a.ok && t_stride > 1) fail(&a, "native thresholdSelect: thresholdStride must be 0 or 1", 1);
  thr_ctx c = {0};
  c.x = arr(&a, 0, napi_float32_array, mul(&a, rows, cols), "x");
  c.bias = is_null(&a, 1) ? NULL : arr(&a, 1, napi_float32_array, cols, "bias");
  c.t = arr(&a, 2, napi_float32_array, t_stride ? cols : 1, "threshold");
  c.offsets = arr(&a, 4, napi_int32_array, rows + 1, "offsets");
  c.indices = arr(&a, 5, napi_int32_array, 0, "indices");
  c.values = arr(&a, 6, napi_float32_array, 0, "values");
  size_t ilen = 0, vlen = 0;
  if (a.ok) napi_get_typedarray_info(env, a.argv[5], NULL, &ilen, NULL, NULL, NULL);
  if (a.ok) napi_get_typedarray_info(env, a.argv[6], NULL, &vlen, NULL, NULL, NULL);
  check_offsets(&a, c.offsets, rows, (int64_t)(ilen < vlen ? ilen : vlen));
  if (!a.ok) return NULL;
  c.cols = cols;
  c.t_stride = t_stride;
  c.overflow = -1;
  gb_parallel_for(rows, 262144 / (cols + 1) + 1, select_rows, &c);
  return num(env, (double)c.overflow);
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
