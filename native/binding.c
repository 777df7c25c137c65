/*
 * Node-API entry points of the glassbox native addon (plain C N-API, version 8).
 *
 * Each function takes the kernel's typed arrays and sizes exactly as src/backends/native/index.ts
 * passes them, reads and writes the arrays' memory in place, and checks that every index the kernel
 * will touch lies inside each array (a RangeError instead of memory corruption if a caller is
 * wrong). Strided layouts arrive packed in one Float64Array: [ndim, shape..., strides of each
 * operand...]. matmulAsync runs the sgemm on a libuv worker thread and keeps its arrays alive with
 * references until it settles; the arrays must not be transferred or detached meanwhile.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "gb.h"
#include "sparse.h"
#include "training.h"

#define MAX_ARGS 16

typedef struct {
  void *data;
  int64_t len;
} arr_t;

typedef struct {
  napi_env env;
  napi_value argv[MAX_ARGS];
  size_t argc;
  int ok;
} call_t;

static void fail_type(call_t *c, const char *fmt, const char *what) {
  if (!c->ok) return;
  char msg[256];
  snprintf(msg, sizeof msg, fmt, what);
  napi_throw_type_error(c->env, NULL, msg);
  c->ok = 0;
}

static void fail_range(call_t *c, const char *msg) {
  if (!c->ok) return;
  napi_throw_range_error(c->env, NULL, msg);
  c->ok = 0;
}

static call_t begin(napi_env env, napi_callback_info info, size_t want) {
  call_t c = {env, {0}, MAX_ARGS, 1};
  napi_get_cb_info(env, info, &c.argc, c.argv, NULL, NULL);
  if (c.argc < want) fail_type(&c, "%s", "native kernel: too few arguments");
  return c;
}

static const char *type_name(napi_typedarray_type t) {
  switch (t) {
    case napi_float32_array: return "a Float32Array";
    case napi_uint16_array: return "a Uint16Array";
    case napi_int32_array: return "an Int32Array";
    case napi_float64_array: return "a Float64Array";
    default: return "a typed array";
  }
}

static arr_t typed(call_t *c, size_t i, napi_typedarray_type want) {
  arr_t a = {NULL, 0};
  if (!c->ok) return a;
  bool is = false;
  napi_is_typedarray(c->env, c->argv[i], &is);
  napi_typedarray_type t;
  size_t len = 0;
  if (is) napi_get_typedarray_info(c->env, c->argv[i], &t, &len, &a.data, NULL, NULL);
  if (!is || t != want) {
    char msg[96];
    snprintf(msg, sizeof msg, "native kernel: argument %zu must be %%s", i);
    fail_type(c, msg, type_name(want));
    return a;
  }
  a.len = (int64_t)len;
  return a;
}

/*
 * Large fresh outputs (logits over a 262k vocabulary are 128 MiB per 128 tokens) otherwise cost one
 * page fault per 4 KiB on first write, which took longer than the matmul that filled them (measured:
 * [1024, 640] x [640, 262144] bf16 in 1.1 s into a reused buffer, 2.0 s into a fresh one). Where
 * transparent huge pages are enabled for advised ranges ("madvise" mode), a 2 MiB page per fault
 * removes nearly all of that. Advice only: failures are ignored and results never change.
 */
#define HUGE_ADVICE_MIN ((int64_t)8 << 20)
#define HUGE_PAGE ((uintptr_t)2 << 20)

static void advise_huge(void *p, int64_t bytes) {
#if defined(MADV_HUGEPAGE)
  if (bytes < HUGE_ADVICE_MIN) return;
  uintptr_t lo = ((uintptr_t)p + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
  uintptr_t hi = ((uintptr_t)p + (uintptr_t)bytes) & ~(HUGE_PAGE - 1);
  if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
  (void)p, (void)bytes;
#endif
}

/* A Float32Array a kernel writes (see advise_huge). */
static arr_t output(call_t *c, size_t i) {
  arr_t a = typed(c, i, napi_float32_array);
  if (c->ok) advise_huge(a.data, a.len * (int64_t)sizeof(float));
  return a;
}

/* A Float32Array, or a Uint16Array when dtype is bf16/f16. */
static arr_t float_source(call_t *c, size_t i, int dtype) {
  return typed(c, i, dtype == GB_F32 ? napi_float32_array : napi_uint16_array);
}

static int is_null(call_t *c, size_t i) {
  napi_valuetype t;
  napi_typeof(c->env, c->argv[i], &t);
  return t == napi_null || t == napi_undefined;
}

static double num(call_t *c, size_t i) {
  double v = 0;
  if (c->ok && napi_get_value_double(c->env, c->argv[i], &v) != napi_ok) fail_type(c, "%s", "native kernel: expected a number");
  return v;
}

/* A non-negative integer size (< 2^53). */
static int64_t size_arg(call_t *c, size_t i) {
  double v = num(c, i);
  if (c->ok && !(v >= 0 && v <= 9007199254740991.0 && v == (double)(int64_t)v))
    fail_range(c, "native kernel: sizes must be non-negative integers");
  return (int64_t)v;
}

static int flag(call_t *c, size_t i) {
  bool b = false;
  if (c->ok && napi_get_value_bool(c->env, c->argv[i], &b) != napi_ok) fail_type(c, "%s", "native kernel: expected a boolean");
  return b;
}

static int code(call_t *c, size_t i, int limit) {
  int64_t v = size_arg(c, i);
  if (c->ok && v >= limit) fail_range(c, "native kernel: unknown op code");
  return (int)v;
}

/* Product of sizes with overflow check. */
static int64_t prod(call_t *c, int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) fail_range(c, "native kernel: size overflow");
  return r;
}

static void need(call_t *c, const arr_t *a, int64_t n, const char *name) {
  if (c->ok && a->len < n) {
    char msg[160];
    snprintf(msg, sizeof msg, "native kernel: %s has %lld elements, needs %lld", name, (long long)a->len,
             (long long)n);
    fail_range(c, msg);
  }
}

static napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

static napi_value number(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

/* Parses [ndim, shape, strides x nops] and checks each strided operand stays inside its array. */
static void layout_arg(call_t *c, size_t i, int nops, gb_layout *l) {
  arr_t meta = typed(c, i, napi_float64_array);
  if (!c->ok) return;
  const double *m = meta.data;
  if (meta.len < 1 || m[0] < 0 || m[0] > GB_MAX_DIMS || m[0] != (double)(int)m[0]) {
    fail_range(c, "native kernel: bad layout (at most 32 dims)");
    return;
  }
  int nd = (int)m[0];
  if (meta.len < 1 + (int64_t)nd * (1 + nops)) {
    fail_range(c, "native kernel: layout too short");
    return;
  }
  l->ndim = nd;
  for (int d = 0; d < nd; d++) {
    double s = m[1 + d];
    if (!(s >= 0 && s == (double)(int64_t)s)) fail_range(c, "native kernel: bad shape");
    l->shape[d] = (int64_t)s;
    for (int o = 0; o < nops; o++) {
      double st = m[1 + nd * (1 + o) + d];
      if (!(st == (double)(int64_t)st) || st > 4e15 || st < -4e15) fail_range(c, "native kernel: bad stride");
      l->strides[o][d] = (int64_t)st;
    }
  }
}

/* Checks operand `o` of layout `l`, starting at `base`, against an array of `len` elements. */
static void check_strided(call_t *c, const gb_layout *l, int o, int64_t base, int64_t len, const char *name) {
  if (!c->ok) return;
  int64_t lo = base, hi = base, total = 1;
  for (int d = 0; d < l->ndim; d++) {
    total = prod(c, total, l->shape[d]);
    if (l->shape[d] == 0) return;
    int64_t span = prod(c, l->shape[d] - 1, l->strides[o][d]);
    if (span < 0) lo += span;
    else hi += span;
  }
  if (c->ok && (lo < 0 || hi >= len)) {
    char msg[160];
    snprintf(msg, sizeof msg, "native kernel: %s strides reach [%lld, %lld] outside %lld elements", name,
             (long long)lo, (long long)hi, (long long)len);
    fail_range(c, msg);
  }
}

static int64_t layout_total(const gb_layout *l) {
  int64_t t = 1;
  for (int d = 0; d < l->ndim; d++) t *= l->shape[d];
  return t;
}

/* Sets operand 0 to the contiguous strides of l->shape. */
static void contiguous_out(gb_layout *l) {
  int64_t s = 1;
  for (int d = l->ndim - 1; d >= 0; d--) {
    l->strides[0][d] = s;
    s *= l->shape[d];
  }
}

/* ---- matmul ---- */

/* (a, b, out, batch, m, k, n, transA, transB, aBatchStride, bBatchStride, bDtype, accumulate, aBf16, bBf16) */
static void matmul_parse(call_t *c, arr_t *a, arr_t *b, arr_t *out, gb_matmul_args *g) {
  g->batch = size_arg(c, 3);
  g->m = size_arg(c, 4);
  g->k = size_arg(c, 5);
  g->n = size_arg(c, 6);
  g->trans_a = flag(c, 7);
  g->trans_b = flag(c, 8);
  g->a_batch_stride = size_arg(c, 9);
  g->b_batch_stride = size_arg(c, 10);
  g->b_dtype = code(c, 11, 3);
  g->accumulate = flag(c, 12);
  g->a_bf16 = flag(c, 13);
  g->b_bf16 = flag(c, 14);
  *a = typed(c, 0, napi_float32_array);
  *b = float_source(c, 1, g->b_dtype);
  *out = output(c, 2);
  if (!c->ok || g->batch == 0) return;
  int64_t last = g->batch - 1;
  int64_t mk = prod(c, g->m, g->k), kn = prod(c, g->k, g->n), mn = prod(c, g->m, g->n);
  need(c, a, prod(c, last, g->a_batch_stride) + mk, "a");
  need(c, b, prod(c, last, g->b_batch_stride) + kn, "b");
  need(c, out, prod(c, g->batch, mn), "out");
  if (c->ok && (g->m > 0x7fffffff || g->n > 0x7fffffff || g->k > 0x7fffffff || prod(c, g->batch, g->m) > 0x7fffffff))
    fail_range(c, "native matmul: dimensions exceed the BLAS integer range");
}

static napi_value js_matmul(napi_env env, napi_callback_info info) {
  call_t c = begin(env, info, 15);
  arr_t a, b, out;
  gb_matmul_args g;
  matmul_parse(&c, &a, &b, &out, &g);
  if (c.ok && gb_matmul_run(a.data, b.data, out.data, &g) != 0)
    napi_throw_error(env, NULL, "native matmul: out of memory for the conversion scratch buffer");
  return undefined(env);
}

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref refs[3];
  arr_t a, b, out;
  gb_matmul_args g;
  int rc;
} async_matmul;

static void async_execute(napi_env env, void *data) {
  (void)env;
  async_matmul *d = data;
  d->rc = gb_matmul_run(d->a.data, d->b.data, d->out.data, &d->g);
}

static void async_complete(napi_env env, napi_status status, void *data) {
  async_matmul *d = data;
  for (int i = 0; i < 3; i++) napi_delete_reference(env, d->refs[i]);
  if (status == napi_ok && d->rc == 0) {
    napi_resolve_deferred(env, d->deferred, undefined(env));
  } else {
    napi_value msg, err;
    napi_create_string_utf8(env, status == napi_ok ? "native matmul: out of memory" : "native matmul: cancelled",
                            NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, d->deferred, err);
  }
  napi_delete_async_work(env, d->work);
  free(d);
}

static napi_value js_matmul_async(napi_env env, napi_callback_info info) {
  call_t c = begin(env, info, 15);
  async_matmul *d = calloc(1, sizeof *d);
  if (!d) {
    napi_throw_error(env, NULL, "native matmul: out of memory");
    return undefined(env);
  }
  matmul_parse(&c, &d->a, &d->b, &d->out, &d->g);
  if (!c.ok) {
    free(d);
    return undefined(env);
  }
  napi_value promise, name;
  napi_create_promise(env, &d->deferred, &promise);
  for (int i = 0; i < 3; i++) napi_create_reference(env, c.argv[i], 1, &d->refs[i]);
  napi_create_string_utf8(env, "glassbox.matmul", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, async_execute, async_complete, d, &d->work);
  napi_queue_async_work(env, d->work);
  return promise;
}

/* ---- elementwise ---- */

/* (op, x, out) */
static napi_value js_unary(napi_env env, napi_callback_info info) {
  call_t c = begin(env, info, 3);
  int op = code(&c, 0, GB_UNARY_COUNT);
  arr_t x = typed(&c, 1, napi_float32_array), out = output(&c, 2);
  need(&c, &out, x.len, "out");
  if (c.ok) gb_unary_run(op, x.data, out.data, x.len);
  return undefined(env);
}

/* (x, s, t, out) */
static napi_value js_affine(napi_env env, napi_callback_info info) {
  call_t c = begin(env, info, 4);
  arr_t x = typed(&c, 0, napi_float32_array), out = output(&c, 3);
  double s = num(&c, 1), t = num(&c, 2);
  need(&c, &out, x.len, "out");
  if (c.ok) gb_affine_run(x.data, s, t, out.data, x.len);
  return undefined(env);
}

/* (op, a, b, out, layout[ndim, shape, aStrides, bStrides]) */
static napi_value js_binary(napi_env env, napi_callback_info info) {
  call_t c = begin(env, info, 5);
  int op = code(&c, 0, GB_BINARY_COUNT);
  arr_t a = typed(&c, 1, napi_float32_array), b = typed(&c, 2, napi_float32_array),
        out = output(&c, 3);
  gb_layout in, l;
  layout_arg(&c, 4, 2, &in);
  if (!c.ok) return undefined(env);
  l.ndim = in.ndim;
  for (int d = 0; d < in.ndim; d++) {
    l.shape[d] = in.shape[d];
    l.strides[1][d] = in.strides[0][d];
    l.strides[2][d] = in.strides[1][d];
  }
  contiguous_out(&l);
  check_strided(&c, &l, 1, 0, a.len, "a");
  check_strided(&c, &l, 2, 0, b.len, "b");
  need(&c, &out, layout_total(&l), "out");
  if (!c.ok) return undefined(env);
  gb_layout_coalesce(&l, 3);
  gb_binary_run(op, a.data, b.data, out.data, &l);
  return undefined(env);
}

/* (cond, a, b, out, layout[ndim, shape, cStrides, aStrides, bStrides]) */
static napi_value js_where(napi_env env, napi_callback_info info) {
  call_t c = begin(env, info, 5);
  arr_t cond = typed(&c, 0, napi_float32_array), a = typed(&c, 1, napi_float32_array),
        b = typed(&c, 2, napi_float32_array), out = output(&c, 3);
  gb_layout in, l;
  layout_arg(&c, 4, 3, &in);
  if (!c.ok) return undefined(env);
  l.ndim = in.ndim;
  for (int d = 0; d < in.ndim; d++) {
    l.shape[d] = in.shape[d];
    for (int o = 0; o < 3; o++) l.strides[o + 1][d] = in.strides[o][d];
  }
  contiguous_out(&l);
  check_strided(&c, &l, 1, 0, cond.len, "cond");
  check_strided(&c, &l, 2, 0, a.len, "a");
  check_strided(&c, &l, 3, 0, b.len, "b");
  need(&c, &out, layout_total(&l), "out");
  if (!c.ok) return undefined(env);
  gb_layout_coalesce(&l, 4);
  gb_where_run(cond.data, a.data, b.data, out.data, &l);
  return undefined(env);
}

/* (src, out, layout[ndim, shape, srcStrides, dstStrides], srcOffset, dstOffset) */
static napi_value js_copy(napi_env env, napi_callback_info info) {
  call_t c = begin(env, info, 5);
  arr_t src = typed(&c, 0, napi_float32_array), dst = output(&c, 1);
  gb_layout in, l;
  layout_arg(&c, 2, 2, &in);
  int64_t so = size_arg(&c, 3), dof = size_arg(&c, 4);
  if (!c.ok) return undefined(env);
  l.ndim = in.ndim;
  for (int d = 0; d < in.ndim; d++) {
    l.shape[d] = in.shape[d];
    l.strides[1][d] = in.strides[0][d];
    l.strides[0][d] = in.strides[1][d];
  }
  check_strided(&c, &l, 1, so, src.len, "src");
  check_strided(&c, &l, 0, dof, dst.len, "out");
  if (!c.ok || layout_total(&l) == 0) return undefined(env);
  gb_layout_coalesce(&l, 2);
  gb_copy_run((const float *)src.data + so, (float *)dst.data + dof, &l);
  return undefined(env);
}

/* ---- reductions and rows ---- */

/* (op, x, out, outer, size, inner) */
static napi_value js_reduce(napi_env env, napi_callback_info info) {
  call_t c = begin(env, info, 6);
  int op = code(&c, 0, GB_REDUCE_COUNT);
  arr_t x = typed(&c, 1, napi_float32_array), out = output(&c, 2);
  int64_t outer = size_arg(&c, 3), size = size_arg(&c, 4), inner = size_arg(&c, 5);
  need(&c, &x, prod(&c, prod(&c, outer, size), inner), "x");
  need(&c, &out, prod(&c, outer, inner), "out");
  if (c.ok) gb_reduce_run(op, x.data, out.data, outer, size, inner);
  return undefined(env);
}

/* (isMin, x, out:Int32Array, outer, size, inner) */
static napi_value js_arg_reduce(napi_env env, napi_callback_info info) {
  call_t c = begin(env, info, 6);
  int is_min = flag(&c, 0);
  arr_t x = typed(&c, 1, napi_float32_array), out = typed(&c, 2, napi_int32_array);
  int64_t outer = size_arg(&c, 3), size = size_arg(&c, 4), inner = size_arg(&c, 5);
  need(&c, &x, prod(&c, prod(&c, outer, size), inner), "x");
  need(&c, &out, prod(&c, outer, inner), "out");
  if (c.ok && size > 0x7fffffff) fail_range(&c, "native argReduce: axis too long for Int32 indices");
  if (c.ok) gb_argreduce_run(is_min, x.data, out.data, outer, size, inner);
  return undefined(env);
}

/* (x, out, rows, cols, log) */
static napi_value js_softmax(napi_env env, napi_callback_info info) {
  call_t c = begin(env, info, 5);
  arr_t x = typed(&c, 0, napi_float32_array), out = output(&c, 1);
  int64_t rows = size_arg(&c, 2), cols = size_arg(&c, 3);
  int log = flag(&c, 4);
  int64_t n = prod(&c, rows, cols);
  need(&c, &x, n, "x");
  need(&c, &out, n, "out");
  if (c.ok) gb_softmax_run(x.data, out.data, rows, cols, log);
  return undefined(env);
}

/* (x, weight|null, out, rows, cols, eps, weightOffset, invRms|null) */
static napi_value js_rmsnorm(napi_env env, napi_callback_info info) {
  call_t c = begin(env, info, 8);
  arr_t x = typed(&c, 0, napi_float32_array), out = output(&c, 2), w = {NULL, 0},
        inv = {NULL, 0};
  int has_w = c.ok && !is_null(&c, 1), has_inv = c.ok && !is_null(&c, 7);
  if (has_w) w = typed(&c, 1, napi_float32_array);
  if (has_inv) inv = typed(&c, 7, napi_float32_array);
  int64_t rows = size_arg(&c, 3), cols = size_arg(&c, 4);
  double eps = num(&c, 5), off = num(&c, 6);
  int64_t n = prod(&c, rows, cols);
  need(&c, &x, n, "x");
  need(&c, &out, n, "out");
  if (has_w) need(&c, &w, cols, "weight");
  if (has_inv) need(&c, &inv, rows, "invRms");
  if (c.ok) gb_rmsnorm_run(x.data, has_w ? w.data : NULL, out.data, rows, cols, eps, off, has_inv ? inv.data : NULL);
  return undefined(env);
}

/* (x, cos, sin, out, rows, seq, dim, inverse, heads) */
static napi_value js_rope(napi_env env, napi_callback_info info) {
  call_t c = begin(env, info, 9);
  arr_t x = typed(&c, 0, napi_float32_array), cs = typed(&c, 1, napi_float32_array),
        sn = typed(&c, 2, napi_float32_array), out = output(&c, 3);
  int64_t rows = size_arg(&c, 4), seq = size_arg(&c, 5), dim = size_arg(&c, 6);
  int inverse = flag(&c, 7);
  int64_t heads = size_arg(&c, 8);
  if (c.ok && dim % 2 != 0) fail_range(&c, "native rope: dim must be even");
  int64_t n = prod(&c, prod(&c, prod(&c, rows, seq), heads), dim);
  need(&c, &x, n, "x");
  need(&c, &out, n, "out");
  need(&c, &cs, prod(&c, seq, dim / 2), "cos");
  need(&c, &sn, prod(&c, seq, dim / 2), "sin");
  if (c.ok) gb_rope_run(x.data, cs.data, sn.data, out.data, rows, seq, heads, dim, inverse);
  return undefined(env);
}

/* Position of the first index outside [0, limit), or -1. */
static int64_t bad_index(const int32_t *idx, int64_t n, int64_t limit) {
  for (int64_t i = 0; i < n; i++)
    if (idx[i] < 0 || idx[i] >= limit) return i;
  return -1;
}

/* (src, dtype, idx, out, outer, size, inner, srcSize) -> -1, or the position of a bad index */
static napi_value js_gather(napi_env env, napi_callback_info info) {
  call_t c = begin(env, info, 8);
  int dtype = code(&c, 1, 3);
  arr_t src = float_source(&c, 0, dtype), idx = typed(&c, 2, napi_int32_array), out = output(&c, 3);
  int64_t outer = size_arg(&c, 4), size = size_arg(&c, 5), inner = size_arg(&c, 6), src_size = size_arg(&c, 7);
  need(&c, &idx, size, "idx");
  need(&c, &src, prod(&c, prod(&c, outer, src_size), inner), "src");
  need(&c, &out, prod(&c, prod(&c, outer, size), inner), "out");
  if (!c.ok) return undefined(env);
  int64_t bad = bad_index(idx.data, size, src_size);
  if (bad < 0) gb_gather_run(src.data, dtype, idx.data, out.data, outer, size, inner, src_size);
  return number(env, (double)bad);
}

/* (src, idx, out, outer, size, inner, outSize) -> -1, or the position of a bad index */
static napi_value js_scatter_add(napi_env env, napi_callback_info info) {
  call_t c = begin(env, info, 7);
  arr_t src = typed(&c, 0, napi_float32_array), idx = typed(&c, 1, napi_int32_array),
        out = output(&c, 2);
  int64_t outer = size_arg(&c, 3), size = size_arg(&c, 4), inner = size_arg(&c, 5), out_size = size_arg(&c, 6);
  need(&c, &idx, size, "idx");
  need(&c, &src, prod(&c, prod(&c, outer, size), inner), "src");
  need(&c, &out, prod(&c, prod(&c, outer, out_size), inner), "out");
  if (!c.ok) return undefined(env);
  int64_t bad = bad_index(idx.data, size, out_size);
  if (bad < 0) gb_scatter_add_run(src.data, idx.data, out.data, outer, size, inner, out_size);
  return number(env, (double)bad);
}

/* (x, rows, cols, k, values, indices) */
static napi_value js_topk(napi_env env, napi_callback_info info) {
  call_t c = begin(env, info, 6);
  arr_t x = typed(&c, 0, napi_float32_array), values = typed(&c, 4, napi_float32_array),
        indices = typed(&c, 5, napi_int32_array);
  int64_t rows = size_arg(&c, 1), cols = size_arg(&c, 2), k = size_arg(&c, 3);
  if (c.ok && (k > cols || cols > 0x7fffffff)) fail_range(&c, "native topk: k must be <= cols < 2^31");
  need(&c, &x, prod(&c, rows, cols), "x");
  need(&c, &values, prod(&c, rows, k), "values");
  need(&c, &indices, prod(&c, rows, k), "indices");
  if (c.ok && gb_topk_run(x.data, rows, cols, k, values.data, indices.data) != 0)
    napi_throw_error(env, NULL, "native topk: out of memory");
  return undefined(env);
}

/* (src:Uint16Array, dtype, out) */
static napi_value js_half_to_float(napi_env env, napi_callback_info info) {
  call_t c = begin(env, info, 3);
  arr_t src = typed(&c, 0, napi_uint16_array), out = output(&c, 2);
  int dtype = code(&c, 1, 3);
  if (c.ok && dtype == GB_F32) fail_range(&c, "native halfToFloat: dtype must be bf16 or f16");
  need(&c, &out, src.len, "out");
  if (c.ok) gb_half_to_float(src.data, dtype, out.data, src.len);
  return undefined(env);
}

/* (src:Float32Array, dtype, out:Uint16Array) */
static napi_value js_float_to_half(napi_env env, napi_callback_info info) {
  call_t c = begin(env, info, 3);
  arr_t src = typed(&c, 0, napi_float32_array), out = typed(&c, 2, napi_uint16_array);
  int dtype = code(&c, 1, 3);
  if (c.ok && dtype == GB_F32) fail_range(&c, "native floatToHalf: dtype must be bf16 or f16");
  need(&c, &out, src.len, "out");
  if (c.ok) gb_float_to_half(src.data, dtype, out.data, src.len);
  return undefined(env);
}

/* ---- runtime info and tools ---- */

static void set_named(napi_env env, napi_value obj, const char *key, napi_value v) {
  napi_set_named_property(env, obj, key, v);
}

/* () -> { threads, blasThreads, blasConfig } */
static napi_value js_info(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value obj, s;
  napi_create_object(env, &obj);
  set_named(env, obj, "threads", number(env, gb_pool_threads()));
  set_named(env, obj, "blasThreads", number(env, gb_blas_threads()));
  napi_create_string_utf8(env, gb_blas_config(), NAPI_AUTO_LENGTH, &s);
  set_named(env, obj, "blasConfig", s);
  return obj;
}

/* (n) -> sets the kernel pool and OpenBLAS thread counts */
static napi_value js_set_threads(napi_env env, napi_callback_info info) {
  call_t c = begin(env, info, 1);
  int64_t n = size_arg(&c, 0);
  if (c.ok && (n < 1 || n > 1024)) fail_range(&c, "native setThreads: thread count must be in [1, 1024]");
  if (c.ok) {
    gb_pool_set_threads((int)n);
    gb_blas_set_threads((int)n);
  }
  return undefined(env);
}

/* (floats, reps) -> { copy, triad } in GB/s */
static napi_value js_stream(napi_env env, napi_callback_info info) {
  call_t c = begin(env, info, 2);
  int64_t n = size_arg(&c, 0), reps = size_arg(&c, 1);
  if (!c.ok) return undefined(env);
  double cp = 0, tr = 0;
  gb_stream(n, (int)(reps > 0 ? reps : 1), &cp, &tr);
  napi_value obj;
  napi_create_object(env, &obj);
  set_named(env, obj, "copy", number(env, cp));
  set_named(env, obj, "triad", number(env, tr));
  return obj;
}

/*
 * (array) -> drops the resident pages wholly inside a Float32Array that nothing will read again
 * (a buffer the recycler gives up): its memory returns to the system now rather than when the
 * collector frees the array. The pages stay mapped and read as zeros if touched. Advice only.
 */
static napi_value js_discard_pages(napi_env env, napi_callback_info info) {
  call_t c = begin(env, info, 1);
  arr_t a = typed(&c, 0, napi_float32_array);
  if (!c.ok) return undefined(env);
#if defined(MADV_DONTNEED)
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t lo = ((uintptr_t)a.data + page - 1) & ~(page - 1);
  uintptr_t hi = ((uintptr_t)a.data + (uintptr_t)a.len * sizeof(float)) & ~(page - 1);
  if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
#endif
  return undefined(env);
}

/*
 * (bytes) -> whether glibc's mmap threshold is now fixed at `bytes`. By default glibc raises the
 * threshold to the size of each mmapped block freed (up to 32 MiB), after which blocks of that size
 * come from the heap, where freed ones stay resident. A fixed threshold keeps large blocks mmapped,
 * so freeing one returns its memory at once. Not glibc: false, nothing changed.
 */
static napi_value js_fix_mmap_threshold(napi_env env, napi_callback_info info) {
  call_t c = begin(env, info, 1);
  int64_t bytes = size_arg(&c, 0);
  if (!c.ok) return undefined(env);
  bool done = false;
#ifdef __GLIBC__
  done = bytes > 0 && bytes <= (int64_t)32 << 20 && mallopt(M_MMAP_THRESHOLD, (int)bytes) == 1;
#else
  (void)bytes;
#endif
  napi_value out;
  napi_get_boolean(env, done, &out);
  return out;
}

NAPI_MODULE_INIT() {
  static const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {
      {"matmul", js_matmul},
      {"matmulAsync", js_matmul_async},
      {"unary", js_unary},
      {"affine", js_affine},
      {"binary", js_binary},
      {"where", js_where},
      {"copy", js_copy},
      {"reduce", js_reduce},
      {"argReduce", js_arg_reduce},
      {"softmax", js_softmax},
      {"rmsnorm", js_rmsnorm},
      {"rope", js_rope},
      {"gather", js_gather},
      {"scatterAdd", js_scatter_add},
      {"topk", js_topk},
      {"halfToFloat", js_half_to_float},
      {"floatToHalf", js_float_to_half},
      {"info", js_info},
      {"setThreads", js_set_threads},
      {"stream", js_stream},
      {"fixMmapThreshold", js_fix_mmap_threshold},
      {"discardPages", js_discard_pages},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
    napi_set_named_property(env, exports, fns[i].name, f);
  }
  gb_sparse_register(env, exports);
  gb_training_register(env, exports);
  return exports;
}
