/*
 * Kernels for training sparse dictionaries (contracts: SparseDotArgs, kthLargest and AdamArgs in
 * src/core/backend.ts; the reference is src/backends/reference/training.ts), with their Node-API
 * entry points:
 *
 *   sparseDot(offsets, indices, a, w, out, rows, n, wRows, wRowStride)
 *       -> -1, or the position in `indices` of an out-of-range index (nothing written then)
 *   kthLargest(x, n, k) -> the k-th largest positive value (see the contract)
 *   adamUpdate(w, g, m | null, v, beta1, beta2, eps, stepSize, vScale)
 *   projectOutRows(w, g, rows, cols)
 *   normalizeRows(w, rows, cols)
 *
 * sparseDot splits rows across the kernel pool, one vectorised dot product per stored entry.
 * kthLargest is a two-pass radix select on the bit patterns of positive floats (which order like the
 * floats): a histogram of the high 16 bits picks the bucket holding the k-th value, a histogram of
 * the low 16 bits inside that bucket picks the value; each pool part fills its own histogram.
 * adamUpdate runs in double precision like the reference, split across the pool; the row kernels
 * split rows across the pool and accumulate each row's dot product in double.
 */
#define NAPI_VERSION 8
#include <math.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gb.h"
#include "training.h"

/* ---- sparseDot ---- */

typedef struct {
  const int32_t *offsets, *indices;
  const float *a, *w;
  float *out;
  int64_t n, w_row_stride;
} sdot_ctx;

static void sdot_rows(void *vctx, int64_t r0, int64_t r1) {
  const sdot_ctx *c = vctx;
  const int64_t n = c->n;
  for (int64_t r = r0; r < r1; r++) {
    const float *a = c->a + r * n;
    for (int64_t j = c->offsets[r]; j < c->offsets[r + 1]; j++) {
      const float *w = c->w + (int64_t)c->indices[j] * c->w_row_stride;
      float s = 0.0f;
#pragma omp simd reduction(+ : s)
      for (int64_t k = 0; k < n; k++) s += a[k] * w[k];
      c->out[j] = s;
    }
  }
}

/* ---- kthLargest ---- */

#define HI_BUCKETS 0x7f81 /* high halves of positive floats up to +inf (0x7f80) */
#define LO_BUCKETS 0x10000

typedef struct {
  const uint32_t *x;
  int64_t n;
  int parts;
  uint32_t hi; /* pass 2: the chosen high half */
  int64_t *hist; /* parts x buckets */
  int64_t buckets;
  int pass;
} kth_ctx;

static void kth_parts(void *vctx, int64_t p0, int64_t p1) {
  const kth_ctx *c = vctx;
  for (int64_t p = p0; p < p1; p++) {
    int64_t *h = c->hist + p * c->buckets;
    int64_t b = c->n * p / c->parts, e = c->n * (p + 1) / c->parts;
    if (c->pass == 1) {
      for (int64_t i = b; i < e; i++) {
        uint32_t u = c->x[i];
        if (u - 1u < 0x7f800000u) h[u >> 16]++; /* 0 < x <= +inf; excludes -x, 0, NaN */
      }
    } else {
      for (int64_t i = b; i < e; i++) {
        uint32_t u = c->x[i];
        if (u - 1u < 0x7f800000u && (u >> 16) == c->hi) h[u & 0xffff]++;
      }
    }
  }
}

/* Merges per-part histograms into part 0 and returns the bucket holding the k-th largest (from the
 * top); *k becomes the rank inside that bucket. */
static int64_t pick(int64_t *hist, int parts, int64_t buckets, int64_t *k) {
  for (int p = 1; p < parts; p++)
    for (int64_t b = 0; b < buckets; b++) hist[b] += hist[p * buckets + b];
  for (int64_t b = buckets - 1; b >= 0; b--) {
    if (hist[b] >= *k) return b;
    *k -= hist[b];
  }
  return -1;
}

static float kth_largest(const float *x, int64_t n, int64_t k) {
  int parts = gb_pool_threads();
  if (parts < 1) parts = 1;
  if (n < 65536) parts = 1;
  kth_ctx c = {(const uint32_t *)x, n, parts, 0, NULL, HI_BUCKETS, 1};
  c.hist = calloc((size_t)parts * LO_BUCKETS, sizeof(int64_t));
  if (c.hist == NULL) return -1.0f;
  gb_parallel_for(parts, 1, kth_parts, &c);
  int64_t total = 0;
  for (int p = 0; p < parts; p++)
    for (int64_t b = 0; b < HI_BUCKETS; b++) total += c.hist[p * HI_BUCKETS + b];
  if (total == 0) {
    free(c.hist);
    return 0.0f;
  }
  if (k > total) k = total;
  int64_t hi = pick(c.hist, parts, HI_BUCKETS, &k);
  memset(c.hist, 0, (size_t)parts * LO_BUCKETS * sizeof(int64_t));
  c.pass = 2;
  c.hi = (uint32_t)hi;
  c.buckets = LO_BUCKETS;
  gb_parallel_for(parts, 1, kth_parts, &c);
  int64_t lo = pick(c.hist, parts, LO_BUCKETS, &k);
  free(c.hist);
  uint32_t u = ((uint32_t)hi << 16) | (uint32_t)lo;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* ---- adamUpdate ---- */

typedef struct {
  float *w, *m, *v;
  const float *g;
  double beta1, beta2, eps, step, vscale;
} adam_ctx;

static void adam_range(void *vctx, int64_t i0, int64_t i1) {
  const adam_ctx *c = vctx;
  const double b1 = c->beta1, b2 = c->beta2, ob1 = 1 - c->beta1, ob2 = 1 - c->beta2;
  for (int64_t i = i0; i < i1; i++) {
    const double g = c->g[i];
    double m = g;
    if (c->m) {
      m = b1 * (double)c->m[i] + ob1 * g;
      c->m[i] = (float)m;
    }
    const double v = b2 * (double)c->v[i] + ob2 * g * g;
    c->v[i] = (float)v;
    c->w[i] = (float)((double)c->w[i] - c->step * m / (sqrt(v) * c->vscale + c->eps));
  }
}

/* ---- decoder-row constraint ---- */

typedef struct {
  float *w, *g;
  int64_t cols;
} rows_ctx;

static void project_rows(void *vctx, int64_t r0, int64_t r1) {
  const rows_ctx *c = vctx;
  const int64_t n = c->cols;
  for (int64_t r = r0; r < r1; r++) {
    const float *w = c->w + r * n;
    float *g = c->g + r * n;
    double dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int64_t k = 0; k < n; k++) dot += (double)g[k] * w[k];
    const float d = (float)dot;
#pragma omp simd
    for (int64_t k = 0; k < n; k++) g[k] -= d * w[k];
  }
}

static void normalize_rows(void *vctx, int64_t r0, int64_t r1) {
  const rows_ctx *c = vctx;
  const int64_t n = c->cols;
  for (int64_t r = r0; r < r1; r++) {
    float *w = c->w + r * n;
    double sq = 0;
#pragma omp simd reduction(+ : sq)
    for (int64_t k = 0; k < n; k++) sq += (double)w[k] * w[k];
    if (sq == 0) continue;
    const float s = (float)(1 / sqrt(sq));
#pragma omp simd
    for (int64_t k = 0; k < n; k++) w[k] *= s;
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
  if (argc < want) fail(&a, "native training kernel: too few arguments", 0);
  return a;
}

/* A typed array of type `want` with at least `min` elements (its length in *len when len != NULL). */
static void *arr(args_t *a, size_t i, napi_typedarray_type want, int64_t min, const char *name, int64_t *len) {
  if (!a->ok) return NULL;
  bool is = false;
  napi_typedarray_type t;
  size_t n = 0;
  void *data = NULL;
  napi_is_typedarray(a->env, a->argv[i], &is);
  if (is) napi_get_typedarray_info(a->env, a->argv[i], &t, &n, &data, NULL, NULL);
  char msg[160];
  if (!is || t != want) {
    snprintf(msg, sizeof msg, "native training kernel: %s has the wrong array type", name);
    fail(a, msg, 0);
    return NULL;
  }
  if ((int64_t)n < min) {
    snprintf(msg, sizeof msg, "native training kernel: %s has %zu elements, needs %lld", name, n, (long long)min);
    fail(a, msg, 1);
    return NULL;
  }
  if (len) *len = (int64_t)n;
  return data;
}

static double real(args_t *a, size_t i) {
  double v = 0;
  if (a->ok && napi_get_value_double(a->env, a->argv[i], &v) != napi_ok)
    fail(a, "native training kernel: expected a number", 0);
  return v;
}

static int64_t size(args_t *a, size_t i) {
  double v = real(a, i);
  if (a->ok && !(v >= 0 && v <= 9007199254740991.0 && v == (double)(int64_t)v))
    fail(a, "native training kernel: sizes must be non-negative integers", 1);
  return (int64_t)v;
}

static int64_t mul(args_t *a, int64_t x, int64_t y) {
  int64_t r = 0;
  if (__builtin_mul_overflow(x, y, &r)) fail(a, "native training kernel: size overflow", 1);
  return r;
}

static napi_value num(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

static napi_value js_sparse_dot(napi_env env, napi_callback_info info) {
  args_t a = get_args(env, info, 9);
  int64_t rows = size(&a, 5), n = size(&a, 6), w_rows = size(&a, 7), stride = size(&a, 8);
  if (a.ok && w_rows > 0 && n > stride) fail(&a, "native sparseDot: n > wRowStride", 1);
  const int32_t *off = arr(&a, 0, napi_int32_array, rows + 1, "offsets", NULL);
  int64_t ilen = 0, olen = 0;
  const int32_t *idx = arr(&a, 1, napi_int32_array, 0, "indices", &ilen);
  const float *av = arr(&a, 2, napi_float32_array, mul(&a, rows, n), "a", NULL);
  int64_t w_need = w_rows > 0 ? mul(&a, w_rows - 1, stride) + n : 0;
  const float *w = arr(&a, 3, napi_float32_array, w_need, "w", NULL);
  float *out = arr(&a, 4, napi_float32_array, 0, "out", &olen);
  if (!a.ok) return NULL;
  if (off[0] < 0) fail(&a, "native sparseDot: offsets[0] < 0", 1);
  for (int64_t r = 0; a.ok && r < rows; r++)
    if (off[r + 1] < off[r]) fail(&a, "native sparseDot: offsets decrease", 1);
  if (a.ok && (off[rows] > ilen || off[rows] > olen)) fail(&a, "native sparseDot: offsets reach past indices/out", 1);
  if (!a.ok) return NULL;
  for (int64_t j = off[0]; j < off[rows]; j++)
    if (idx[j] < 0 || idx[j] >= w_rows) return num(env, (double)j);
  sdot_ctx c = {off, idx, av, w, out, n, stride};
  int64_t nnz = off[rows] - off[0];
  int64_t per_row = rows > 0 ? (nnz / rows + 1) * (n + 1) : 1;
  gb_parallel_for(rows, 65536 / per_row + 1, sdot_rows, &c);
  return num(env, -1);
}

static napi_value js_kth_largest(napi_env env, napi_callback_info info) {
  args_t a = get_args(env, info, 3);
  int64_t n = size(&a, 1), k = size(&a, 2);
  if (a.ok && k < 1) fail(&a, "native kthLargest: k must be >= 1", 1);
  const float *x = arr(&a, 0, napi_float32_array, n, "x", NULL);
  if (!a.ok) return NULL;
  float r = kth_largest(x, n, k);
  if (r < 0) {
    napi_throw_error(env, NULL, "native kthLargest: out of memory");
    return NULL;
  }
  return num(env, r);
}

static napi_value js_adam_update(napi_env env, napi_callback_info info) {
  args_t a = get_args(env, info, 9);
  int64_t n = 0;
  adam_ctx c = {0};
  c.w = arr(&a, 0, napi_float32_array, 0, "w", &n);
  c.g = arr(&a, 1, napi_float32_array, n, "g", NULL);
  napi_valuetype mt = napi_undefined;
  if (a.ok) napi_typeof(env, a.argv[2], &mt);
  c.m = (mt == napi_null || mt == napi_undefined) ? NULL : arr(&a, 2, napi_float32_array, n, "m", NULL);
  c.v = arr(&a, 3, napi_float32_array, n, "v", NULL);
  c.beta1 = real(&a, 4);
  c.beta2 = real(&a, 5);
  c.eps = real(&a, 6);
  c.step = real(&a, 7);
  c.vscale = real(&a, 8);
  if (!a.ok) return NULL;
  gb_parallel_for(n, 32768, adam_range, &c);
  return NULL;
}

static napi_value js_project_out_rows(napi_env env, napi_callback_info info) {
  args_t a = get_args(env, info, 4);
  int64_t rows = size(&a, 2), cols = size(&a, 3);
  int64_t n = mul(&a, rows, cols);
  rows_ctx c = {0};
  c.w = arr(&a, 0, napi_float32_array, n, "w", NULL);
  c.g = arr(&a, 1, napi_float32_array, n, "g", NULL);
  if (!a.ok) return NULL;
  c.cols = cols;
  gb_parallel_for(rows, 16384 / (cols + 1) + 1, project_rows, &c);
  return NULL;
}

static napi_value js_normalize_rows(napi_env env, napi_callback_info info) {
  args_t a = get_args(env, info, 3);
  int64_t rows = size(&a, 1), cols = size(&a, 2);
  rows_ctx c = {0};
  c.w = arr(&a, 0, napi_float32_array, mul(&a, rows, cols), "w", NULL);
  if (!a.ok) return NULL;
  c.cols = cols;
  gb_parallel_for(rows, 16384 / (cols + 1) + 1, normalize_rows, &c);
  return NULL;
}

void gb_training_register(napi_env env, napi_value exports) {
  static const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {
      {"sparseDot", js_sparse_dot},
      {"kthLargest", js_kth_largest},
      {"adamUpdate", js_adam_update},
      {"projectOutRows", js_project_out_rows},
      {"normalizeRows", js_normalize_rows},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
    napi_set_named_property(env, exports, fns[i].name, f);
  }
}
