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
 * kthLargest narrows the search with a sample before a radix select on the bit patterns of positive
 * floats (which order like the floats; see kth_largest): histograms are scalar and slow, so they
 * only ever run over the sample and the few candidates, while the full passes are vectorised.
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
#include "napi_args.h"
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
#define SAMPLE_MIN (1 << 16) /* the sample: 1/64 of the values, at least this many */

/* 0 < x <= +inf, from the bits (excludes -x, 0 and NaN). */
static inline int positive_bits(uint32_t u) { return u - 1u < 0x7f800000u; }

/* Radix select, single-threaded: the k-th largest positive value of u[0..n) (k <= positives);
 * hist has LO_BUCKETS entries of scratch. */
static uint32_t radix_kth(const uint32_t *u, int64_t n, int64_t k, int64_t *hist) {
  memset(hist, 0, HI_BUCKETS * sizeof(int64_t));
  for (int64_t i = 0; i < n; i++)
    if (positive_bits(u[i])) hist[u[i] >> 16]++;
  int64_t hi = HI_BUCKETS - 1;
  for (; hi > 0 && hist[hi] < k; hi--) k -= hist[hi];
  memset(hist, 0, LO_BUCKETS * sizeof(int64_t));
  for (int64_t i = 0; i < n; i++)
    if (positive_bits(u[i]) && (u[i] >> 16) == (uint32_t)hi) hist[u[i] & 0xffff]++;
  int64_t lo = LO_BUCKETS - 1;
  for (; lo > 0 && hist[lo] < k; lo--) k -= hist[lo];
  return ((uint32_t)hi << 16) | (uint32_t)lo;
}

typedef struct {
  const float *x;
  int64_t n;
  int parts;
  float t;          /* candidates: x > t (and > 0) */
  int64_t *counts;  /* per part */
  int64_t *offsets; /* per part, into out */
  float *out;
  int pass;         /* 1: count, 2: compact */
} cand_ctx;

static void cand_parts(void *vctx, int64_t p0, int64_t p1) {
  cand_ctx *c = vctx;
  for (int64_t p = p0; p < p1; p++) {
    const int64_t b = c->n * p / c->parts, e = c->n * (p + 1) / c->parts;
    const float t = c->t;
    const float *x = c->x;
    if (c->pass == 1) {
      int64_t k = 0;
#pragma omp simd reduction(+ : k)
      for (int64_t i = b; i < e; i++) k += (x[i] > t) & (x[i] > 0.0f);
      c->counts[p] = k;
    } else {
      float *o = c->out + c->offsets[p];
      int64_t i = b;
      /* Candidates are rare: test 16 values at once (vectorised) and copy only from hit blocks. */
      for (; i + 16 <= e; i += 16) {
        int any = 0;
#pragma omp simd reduction(| : any)
        for (int j = 0; j < 16; j++) any |= (x[i + j] > t) & (x[i + j] > 0.0f);
        if (!any) continue;
        for (int j = 0; j < 16; j++)
          if (x[i + j] > t && x[i + j] > 0.0f) *o++ = x[i + j];
      }
      for (; i < e; i++)
        if (x[i] > t && x[i] > 0.0f) *o++ = x[i];
    }
  }
}

/*
 * The k-th largest positive value. A strided sample (1/64 of the values) gives a threshold t below
 * which, with a wide margin, the answer does not lie; a vectorised pass counts x > t (lowering t
 * until at least k pass), a second copies those candidates out, and a radix select over the
 * candidates finds the value. Returns -1 when scratch memory could not be allocated.
 */
static float kth_largest(const float *x, int64_t n, int64_t k) {
  int parts = gb_pool_threads();
  if (parts < 1) parts = 1;
  int64_t *hist = malloc(LO_BUCKETS * sizeof(int64_t));
  /* The sample is whole cache lines (16 values) every `stride * 16` values: 1/stride of the data. */
  int64_t stride = n / 64 >= SAMPLE_MIN ? 64 : n / SAMPLE_MIN > 1 ? n / SAMPLE_MIN : 1;
  int64_t ns = ((n + 16 * stride - 1) / (16 * stride)) * 16;
  uint32_t *sample = malloc((size_t)ns * sizeof(uint32_t));
  int64_t *counts = calloc((size_t)parts * 2, sizeof(int64_t));
  if (!hist || !sample || !counts) {
    free(hist), free(sample), free(counts);
    return -1.0f;
  }
  const uint32_t *u = (const uint32_t *)x;
  int64_t sample_pos = 0;
  ns = 0;
  for (int64_t i = 0; i < n; i += 16 * stride) {
    for (int64_t j = i; j < i + 16 && j < n; j++) {
      sample[ns++] = u[j];
      sample_pos += positive_bits(u[j]);
    }
  }
  cand_ctx c = {x, n, parts, 0.0f, counts, counts + parts, NULL, 1};
  int64_t total = 0;
  /* Sample rank with a margin: 2x the expected rank of the k-th value, then 8x, ..., then all positives. */
  for (int64_t rank = 2 * (k / stride) + 64;; rank *= 4) {
    float t = 0.0f;
    if (rank < sample_pos) {
      uint32_t bits = radix_kth(sample, ns, rank, hist);
      memcpy(&t, &bits, sizeof t);
    }
    c.t = t;
    c.pass = 1;
    gb_parallel_for(parts, 1, cand_parts, &c);
    total = 0;
    for (int p = 0; p < parts; p++) total += counts[p];
    if (total >= k || t == 0.0f) break;
  }
  free(sample);
  if (total == 0) {
    free(hist), free(counts);
    return 0.0f;
  }
  if (k > total) k = total;
  float *cand = malloc((size_t)total * sizeof(float));
  if (!cand) {
    free(hist), free(counts);
    return -1.0f;
  }
  for (int p = 0, at = 0; p < parts; p++) {
    c.offsets[p] = at;
    at += counts[p];
  }
  c.out = cand;
  c.pass = 2;
  gb_parallel_for(parts, 1, cand_parts, &c);
  uint32_t bits = radix_kth((const uint32_t *)cand, total, k, hist);
  free(cand), free(hist), free(counts);
  float f;
  memcpy(&f, &bits, sizeof f);
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

static napi_value js_sparse_dot(napi_env env, napi_callback_info info) {
  args_t a = args_get(env, info, 9, "native sparseDot");
  int64_t rows = args_size(&a, 5, 9007199254740991.0), n = args_size(&a, 6, 9007199254740991.0), w_rows = args_size(&a, 7, 9007199254740991.0), stride = args_size(&a, 8, 9007199254740991.0);
  if (a.ok && w_rows > 0 && n > stride) args_fail(&a, "n > wRowStride", 1);
  const int32_t *off = args_array(&a, 0, napi_int32_array, rows + 1, "offsets", NULL);
  int64_t ilen = 0, olen = 0;
  const int32_t *idx = args_array(&a, 1, napi_int32_array, 0, "indices", &ilen);
  const float *av = args_array(&a, 2, napi_float32_array, args_mul(&a, rows, n), "a", NULL);
  int64_t w_need = w_rows > 0 ? args_mul(&a, w_rows - 1, stride) + n : 0;
  const float *w = args_array(&a, 3, napi_float32_array, w_need, "w", NULL);
  float *out = args_array(&a, 4, napi_float32_array, 0, "out", &olen);
  if (!a.ok) return NULL;
  if (off[0] < 0) args_fail(&a, "offsets[0] < 0", 1);
  for (int64_t r = 0; a.ok && r < rows; r++)
    if (off[r + 1] < off[r]) args_fail(&a, "offsets decrease", 1);
  if (a.ok && (off[rows] > ilen || off[rows] > olen)) args_fail(&a, "offsets reach past indices/out", 1);
  if (!a.ok) return NULL;
  for (int64_t j = off[0]; j < off[rows]; j++)
    if (idx[j] < 0 || idx[j] >= w_rows) return args_number(env, (double)j);
  sdot_ctx c = {off, idx, av, w, out, n, stride};
  int64_t nnz = off[rows] - off[0];
  int64_t per_row = rows > 0 ? (nnz / rows + 1) * (n + 1) : 1;
  gb_parallel_for(rows, 65536 / per_row + 1, sdot_rows, &c);
  return args_number(env, -1);
}

static napi_value js_kth_largest(napi_env env, napi_callback_info info) {
  args_t a = args_get(env, info, 3, "native kthLargest");
  int64_t n = args_size(&a, 1, 9007199254740991.0), k = args_size(&a, 2, 9007199254740991.0);
  if (a.ok && k < 1) args_fail(&a, "k must be >= 1", 1);
  const float *x = args_array(&a, 0, napi_float32_array, n, "x", NULL);
  if (!a.ok) return NULL;
  float r = kth_largest(x, n, k);
  if (r < 0) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  return args_number(env, r);
}

static napi_value js_adam_update(napi_env env, napi_callback_info info) {
  args_t a = args_get(env, info, 9, "native adamUpdate");
  int64_t n = 0;
  adam_ctx c = {0};
  c.w = args_array(&a, 0, napi_float32_array, 0, "w", &n);
  c.g = args_array(&a, 1, napi_float32_array, n, "g", NULL);
  napi_valuetype mt = napi_undefined;
  if (a.ok) napi_typeof(env, a.argv[2], &mt);
  c.m = (mt == napi_null || mt == napi_undefined) ? NULL : args_array(&a, 2, napi_float32_array, n, "m", NULL);
  c.v = args_array(&a, 3, napi_float32_array, n, "v", NULL);
  c.beta1 = args_real(&a, 4);
  c.beta2 = args_real(&a, 5);
  c.eps = args_real(&a, 6);
  c.step = args_real(&a, 7);
  c.vscale = args_real(&a, 8);
  if (!a.ok) return NULL;
  gb_parallel_for(n, 32768, adam_range, &c);
  return NULL;
}

static napi_value js_project_out_rows(napi_env env, napi_callback_info info) {
  args_t a = args_get(env, info, 4, "native projectOutRows");
  int64_t rows = args_size(&a, 2, 9007199254740991.0), cols = args_size(&a, 3, 9007199254740991.0);
  int64_t n = args_mul(&a, rows, cols);
  rows_ctx c = {0};
  c.w = args_array(&a, 0, napi_float32_array, n, "w", NULL);
  c.g = args_array(&a, 1, napi_float32_array, n, "g", NULL);
  if (!a.ok) return NULL;
  c.cols = cols;
  gb_parallel_for(rows, 16384 / (cols + 1) + 1, project_rows, &c);
  return NULL;
}

static napi_value js_normalize_rows(napi_env env, napi_callback_info info) {
  args_t a = args_get(env, info, 3, "native normalizeRows");
  int64_t rows = args_size(&a, 1, 9007199254740991.0), cols = args_size(&a, 2, 9007199254740991.0);
  rows_ctx c = {0};
  c.w = args_array(&a, 0, napi_float32_array, args_mul(&a, rows, cols), "w", NULL);
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
