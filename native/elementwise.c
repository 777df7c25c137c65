/*
 * Elementwise kernels: unary maps, affine, broadcasting binary ops, where, strided copy.
 *
 * Semantics follow src/backends/reference/elementwise.ts, which computes in float64 and rounds once:
 * ops whose double result rounds to the same float as a float computation (add, sub, mul, div, sqrt,
 * comparisons) run in float; affine, rsqrt and pow run in double to round identically; exp, log, tanh,
 * sigmoid and GELU use the float approximations in vmath.h (1-2 ulp). max/min propagate NaN and
 * order -0 below +0 like Math.max/min.
 */
#include <math.h>
#include <string.h>

#include "gb.h"
#include "vmath.h"

#define GRAIN 16384

/* ---- layout coalescing ---- */

int64_t gb_layout_coalesce(gb_layout *l, int nops) {
  int nd = 0;
  int64_t total = 1;
  for (int d = 0; d < l->ndim; d++) {
    int64_t s = l->shape[d];
    total *= s;
    if (s == 1) continue;
    if (nd > 0) {
      int merge = 1;
      for (int o = 0; o < nops; o++)
        if (l->strides[o][nd - 1] != l->strides[o][d] * s) merge = 0;
      if (merge) {
        l->shape[nd - 1] *= s;
        for (int o = 0; o < nops; o++) l->strides[o][nd - 1] = l->strides[o][d];
        continue;
      }
    }
    l->shape[nd] = s;
    for (int o = 0; o < nops; o++) l->strides[o][nd] = l->strides[o][d];
    nd++;
  }
  if (nd == 0) {
    l->shape[0] = 1;
    for (int o = 0; o < nops; o++) l->strides[o][0] = 0;
    nd = 1;
  }
  l->ndim = nd;
  return total;
}

/* Visits [begin, end) of the row-major index space in segments along the last dim. */
typedef void (*segment_fn)(void *ctx, const int64_t *off, int64_t len);

static void for_segments(const gb_layout *l, int nops, const int64_t *base, int64_t begin, int64_t end,
                         segment_fn seg, void *ctx) {
  int nd = l->ndim, last = nd - 1;
  int64_t idx[GB_MAX_DIMS];
  int64_t off[4];
  int64_t rem = begin;
  for (int o = 0; o < nops; o++) off[o] = base[o];
  for (int d = last; d >= 0; d--) {
    idx[d] = rem % l->shape[d];
    rem /= l->shape[d];
    for (int o = 0; o < nops; o++) off[o] += idx[d] * l->strides[o][d];
  }
  int64_t pos = begin;
  while (pos < end) {
    int64_t len = l->shape[last] - idx[last];
    if (len > end - pos) len = end - pos;
    seg(ctx, off, len);
    pos += len;
    idx[last] += len;
    for (int o = 0; o < nops; o++) off[o] += len * l->strides[o][last];
    for (int d = last; d > 0 && idx[d] == l->shape[d]; d--) {
      for (int o = 0; o < nops; o++) off[o] += l->strides[o][d - 1] - l->shape[d] * l->strides[o][d];
      idx[d] = 0;
      idx[d - 1]++;
    }
  }
}

/* ---- unary ---- */

typedef struct {
  int op;
  const float *x;
  float *out;
} unary_ctx;

#define MAP(expr)                                           \
  do {                                                      \
    _Pragma("omp simd") for (int64_t i = b; i < e; i++) {   \
      float x = in[i];                                      \
      o[i] = (expr);                                        \
    }                                                       \
  } while (0)

static void unary_range(void *vctx, int64_t b, int64_t e) {
  const unary_ctx *c = vctx;
  const float *in = c->x;
  float *o = c->out;
  switch (c->op) {
    case GB_NEG: MAP(-x); break;
    case GB_EXP: MAP(gb_expf(x)); break;
    case GB_LOG: MAP(gb_logf(x)); break;
    case GB_SQRT: MAP(sqrtf(x)); break;
    case GB_RSQRT: MAP((float)(1.0 / sqrt((double)x))); break;
    case GB_ABS: MAP(fabsf(x)); break;
    case GB_SIGN: MAP(x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : x)); break;
    case GB_SQUARE: MAP(x * x); break;
    case GB_RECIPROCAL: MAP(1.0f / x); break;
    case GB_TANH: MAP(gb_tanhf(x)); break;
    case GB_SIGMOID: MAP(gb_sigmoidf(x)); break;
    case GB_RELU: MAP(x > 0.0f || x != x ? x : 0.0f); break;
    case GB_GELU_TANH: MAP(gb_gelu_tanhf(x)); break;
    case GB_GELU_TANH_GRAD: MAP(gb_gelu_tanh_gradf(x)); break;
    case GB_STEP: MAP(x > 0.0f ? 1.0f : 0.0f); break;
    default: break;
  }
}

void gb_unary_run(int op, const float *x, float *out, int64_t n) {
  unary_ctx c = {op, x, out};
  gb_parallel_for(n, GRAIN, unary_range, &c);
}

typedef struct {
  const float *x;
  double s, t;
  float *out;
} affine_ctx;

static void affine_range(void *vctx, int64_t b, int64_t e) {
  const affine_ctx *c = vctx;
  const float *x = c->x;
  float *o = c->out;
  double s = c->s, t = c->t;
#pragma omp simd
  for (int64_t i = b; i < e; i++) o[i] = (float)((double)x[i] * s + t);
}

void gb_affine_run(const float *x, double s, double t, float *out, int64_t n) {
  affine_ctx c = {x, s, t, out};
  gb_parallel_for(n, GRAIN, affine_range, &c);
}

/* ---- binary ---- */

static inline float js_max(float a, float b) {
  float m = a > b ? a : b;
  m = a == b ? gb_from_bits(gb_to_bits(a) & gb_to_bits(b)) : m;
  return (a != a || b != b) ? a + b : m;
}
static inline float js_min(float a, float b) {
  float m = a < b ? a : b;
  m = a == b ? gb_from_bits(gb_to_bits(a) | gb_to_bits(b)) : m;
  return (a != a || b != b) ? a + b : m;
}
static inline float js_pow(float a, float b) {
  /* Math.pow differs from C pow: pow(x, NaN) is NaN, and (+-1) ** +-inf is NaN. */
  if (b != b) return b;
  if (fabsf(a) == 1.0f && isinf(b)) return NAN;
  return (float)pow((double)a, (double)b);
}

#define BIN_LOOP(expr)                                                               \
  do {                                                                               \
    if (so == 1 && sa == 1 && sb == 1) {                                             \
      _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                          \
        float x = a[i], y = b[i];                                                    \
        o[i] = (expr);                                                               \
      }                                                                              \
    } else if (so == 1 && sa == 1 && sb == 0) {                                      \
      float y = b[0];                                                                \
      _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                          \
        float x = a[i];                                                              \
        o[i] = (expr);                                                               \
      }                                                                              \
    } else if (so == 1 && sa == 0 && sb == 1) {                                      \
      float x = a[0];                                                                \
      _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                          \
        float y = b[i];                                                              \
        o[i] = (expr);                                                               \
      }                                                                              \
    } else {                                                                         \
      for (int64_t i = 0; i < n; i++) {                                              \
        float x = a[i * sa], y = b[i * sb];                                          \
        o[i * so] = (expr);                                                          \
      }                                                                              \
    }                                                                                \
  } while (0)

static void binary_inner(int op, const float *a, int64_t sa, const float *b, int64_t sb, float *o, int64_t so,
                         int64_t n) {
  switch (op) {
    case GB_ADD: BIN_LOOP(x + y); break;
    case GB_SUB: BIN_LOOP(x - y); break;
    case GB_MUL: BIN_LOOP(x * y); break;
    case GB_DIV: BIN_LOOP(x / y); break;
    case GB_MAX: BIN_LOOP(js_max(x, y)); break;
    case GB_MIN: BIN_LOOP(js_min(x, y)); break;
    case GB_POW: BIN_LOOP(js_pow(x, y)); break;
    case GB_EQ: BIN_LOOP(x == y ? 1.0f : 0.0f); break;
    case GB_NE: BIN_LOOP(x != y ? 1.0f : 0.0f); break;
    case GB_LT: BIN_LOOP(x < y ? 1.0f : 0.0f); break;
    case GB_LE: BIN_LOOP(x <= y ? 1.0f : 0.0f); break;
    case GB_GT: BIN_LOOP(x > y ? 1.0f : 0.0f); break;
    case GB_GE: BIN_LOOP(x >= y ? 1.0f : 0.0f); break;
    default: break;
  }
}

typedef struct {
  int op;
  const float *a, *b;
  float *out;
  const gb_layout *l;
} binary_ctx;

static void binary_segment(void *vctx, const int64_t *off, int64_t len) {
  const binary_ctx *c = vctx;
  int last = c->l->ndim - 1;
  binary_inner(c->op, c->a + off[1], c->l->strides[1][last], c->b + off[2], c->l->strides[2][last],
               c->out + off[0], c->l->strides[0][last], len);
}

static void binary_range(void *vctx, int64_t b, int64_t e) {
  const binary_ctx *c = vctx;
  const int64_t base[3] = {0, 0, 0};
  for_segments(c->l, 3, base, b, e, binary_segment, vctx);
}

void gb_binary_run(int op, const float *a, const float *b, float *out, const gb_layout *l) {
  int64_t total = 1;
  for (int d = 0; d < l->ndim; d++) total *= l->shape[d];
  binary_ctx c = {op, a, b, out, l};
  gb_parallel_for(total, GRAIN, binary_range, &c);
}

/* ---- where ---- */

typedef struct {
  const float *c, *a, *b;
  float *out;
  const gb_layout *l;
} where_ctx;

static void where_segment(void *vctx, const int64_t *off, int64_t n) {
  const where_ctx *w = vctx;
  int last = w->l->ndim - 1;
  const float *c = w->c + off[1], *a = w->a + off[2], *b = w->b + off[3];
  float *o = w->out + off[0];
  int64_t so = w->l->strides[0][last], sc = w->l->strides[1][last], sa = w->l->strides[2][last],
          sb = w->l->strides[3][last];
  if (so == 1 && sc == 1 && sa == 1 && sb == 1) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) o[i] = c[i] != 0.0f ? a[i] : b[i];
  } else {
    for (int64_t i = 0; i < n; i++) o[i * so] = c[i * sc] != 0.0f ? a[i * sa] : b[i * sb];
  }
}

static void where_range(void *vctx, int64_t b, int64_t e) {
  const where_ctx *w = vctx;
  const int64_t base[4] = {0, 0, 0, 0};
  for_segments(w->l, 4, base, b, e, where_segment, vctx);
}

void gb_where_run(const float *c, const float *a, const float *b, float *out, const gb_layout *l) {
  int64_t total = 1;
  for (int d = 0; d < l->ndim; d++) total *= l->shape[d];
  where_ctx w = {c, a, b, out, l};
  gb_parallel_for(total, GRAIN, where_range, &w);
}

/* ---- strided copy (operand 0 = destination, 1 = source; offsets already applied) ---- */

typedef struct {
  const float *src;
  float *dst;
  const gb_layout *l;
} copy_ctx;

static void copy_segment(void *vctx, const int64_t *off, int64_t n) {
  const copy_ctx *c = vctx;
  int last = c->l->ndim - 1;
  int64_t sd = c->l->strides[0][last], ss = c->l->strides[1][last];
  float *d = c->dst + off[0];
  const float *s = c->src + off[1];
  if (sd == 1 && ss == 1) {
    memcpy(d, s, (size_t)n * sizeof(float));
  } else if (sd == 1 && ss == 0) {
    float v = s[0];
    for (int64_t i = 0; i < n; i++) d[i] = v;
  } else {
    for (int64_t i = 0; i < n; i++) d[i * sd] = s[i * ss];
  }
}

static void copy_range(void *vctx, int64_t b, int64_t e) {
  const copy_ctx *c = vctx;
  const int64_t base[2] = {0, 0};
  for_segments(c->l, 2, base, b, e, copy_segment, vctx);
}

/* A transpose of the last two dims ([.., a, b] -> [.., b, a], e.g. materialising K^T): the source's
 * unit stride is on dim nd-2 and the destination's on dim nd-1. Copying TILE x TILE blocks keeps
 * both sides' cache lines in L1 instead of touching a new source line for every element. */
#define TILE 32

typedef struct {
  const float *src;
  float *dst;
  const gb_layout *l;
  int64_t ti, tj;
} tile_ctx;

static void tile_range(void *vctx, int64_t b, int64_t e) {
  const tile_ctx *c = vctx;
  const gb_layout *l = c->l;
  int nd = l->ndim;
  int64_t rows = l->shape[nd - 2], cols = l->shape[nd - 1];
  int64_t dr = l->strides[0][nd - 2], sc = l->strides[1][nd - 1];
  for (int64_t t = b; t < e; t++) {
    int64_t o = t / (c->ti * c->tj), rest = t % (c->ti * c->tj);
    int64_t i0 = (rest / c->tj) * TILE, j0 = (rest % c->tj) * TILE;
    int64_t od = 0, os = 0;
    for (int d = nd - 3; d >= 0; d--) {
      int64_t id = o % l->shape[d];
      o /= l->shape[d];
      od += id * l->strides[0][d];
      os += id * l->strides[1][d];
    }
    int64_t i1 = i0 + TILE < rows ? i0 + TILE : rows, j1 = j0 + TILE < cols ? j0 + TILE : cols;
    float *dst = c->dst + od;
    const float *src = c->src + os;
    for (int64_t i = i0; i < i1; i++)
      for (int64_t j = j0; j < j1; j++) dst[i * dr + j] = src[i + j * sc];
  }
}

void gb_copy_run(const float *src, float *dst, const gb_layout *l) {
  int64_t total = 1;
  for (int d = 0; d < l->ndim; d++) total *= l->shape[d];
  int nd = l->ndim;
  if (nd >= 2 && l->strides[0][nd - 1] == 1 && l->strides[1][nd - 2] == 1 && l->strides[1][nd - 1] != 1 &&
      l->shape[nd - 1] >= TILE / 2 && l->shape[nd - 2] >= TILE / 2) {
    tile_ctx t = {src, dst, l, (l->shape[nd - 2] + TILE - 1) / TILE, (l->shape[nd - 1] + TILE - 1) / TILE};
    gb_parallel_for(total / (l->shape[nd - 2] * l->shape[nd - 1]) * t.ti * t.tj, 16, tile_range, &t);
    return;
  }
  copy_ctx c = {src, dst, l};
  gb_parallel_for(total, GRAIN, copy_range, &c);
}
