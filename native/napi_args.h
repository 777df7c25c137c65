/*
 * Argument reading shared by the Node-API entry points of sparse.c and training.c: each call reads
 * its arguments into an args_t; the first problem throws a TypeError (wrong kind of value) or a
 * RangeError (a size or length out of range) prefixed with the family's name (`who`), and every
 * later read is a no-op, so an entry point checks `a.ok` once before running its kernel.
 */
#ifndef GB_NAPI_ARGS_H
#define GB_NAPI_ARGS_H

#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define ARGS_MAX 12

typedef struct {
  napi_env env;
  napi_value argv[ARGS_MAX];
  int ok;
  const char *who;
} args_t;

static inline void args_fail(args_t *a, const char *msg, int range) {
  if (!a->ok) return;
  char text[224];
  snprintf(text, sizeof text, "%s: %s", a->who, msg);
  if (range)
    napi_throw_range_error(a->env, NULL, text);
  else
    napi_throw_type_error(a->env, NULL, text);
  a->ok = 0;
}

static inline args_t args_get(napi_env env, napi_callback_info info, size_t want, const char *who) {
  args_t a = {env, {0}, 1, who};
  size_t argc = ARGS_MAX;
  napi_get_cb_info(env, info, &argc, a.argv, NULL, NULL);
  if (argc < want) args_fail(&a, "too few arguments", 0);
  return a;
}

/* A typed array of type `want` with at least `min` elements (its length in *len when len != NULL). */
static inline void *args_array(args_t *a, size_t i, napi_typedarray_type want, int64_t min, const char *name,
                               int64_t *len) {
  if (!a->ok) return NULL;
  bool is = false;
  napi_typedarray_type t;
  size_t n = 0;
  void *data = NULL;
  napi_is_typedarray(a->env, a->argv[i], &is);
  if (is) napi_get_typedarray_info(a->env, a->argv[i], &t, &n, &data, NULL, NULL);
  char msg[160];
  if (!is || t != want) {
    snprintf(msg, sizeof msg, "%s has the wrong array type", name);
    args_fail(a, msg, 0);
    return NULL;
  }
  if ((int64_t)n < min) {
    snprintf(msg, sizeof msg, "%s has %zu elements, needs %lld", name, n, (long long)min);
    args_fail(a, msg, 1);
    return NULL;
  }
  if (len) *len = (int64_t)n;
  return data;
}

static inline double args_real(args_t *a, size_t i) {
  double v = 0;
  if (a->ok && napi_get_value_double(a->env, a->argv[i], &v) != napi_ok) args_fail(a, "expected a number", 0);
  return v;
}

/* A non-negative integer no larger than `max`. */
static inline int64_t args_size(args_t *a, size_t i, double max) {
  double v = args_real(a, i);
  if (a->ok && !(v >= 0 && v <= max && v == (double)(int64_t)v)) {
    char msg[96];
    snprintf(msg, sizeof msg, "sizes must be integers in [0, %.0f]", max);
    args_fail(a, msg, 1);
  }
  return (int64_t)v;
}

static inline int args_is_null(args_t *a, size_t i) {
  napi_valuetype t = napi_undefined;
  if (a->ok) napi_typeof(a->env, a->argv[i], &t);
  return t == napi_null || t == napi_undefined;
}

static inline int args_flag(args_t *a, size_t i) {
  bool b = false;
  if (a->ok && napi_get_value_bool(a->env, a->argv[i], &b) != napi_ok) args_fail(a, "expected a boolean", 0);
  return b;
}

static inline int64_t args_mul(args_t *a, int64_t x, int64_t y) {
  int64_t r = 0;
  if (__builtin_mul_overflow(x, y, &r)) args_fail(a, "size overflow", 1);
  return r;
}

static inline napi_value args_number(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

#endif
