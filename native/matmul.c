/*
 * Batched matmul on OpenBLAS `cblas_sgemm` (contract: MatmulArgs in src/core/backend.ts).
 *
 * - Batches that share one right operand and have contiguous, untransposed A run as a single sgemm
 *   with M = batch * m (the usual activations x weight case); others loop over batches.
 * - A bf16/f16 right operand is widened a panel at a time (a block of columns of B, or of rows of a
 *   transposed B) into a scratch buffer of at most a few MB, and sgemm runs per panel writing the
 *   matching columns of `out`: no full f32 copy of a weight is ever made.
 * - A bf16 B stored [n, k] with at most FEW_ROWS rows of f32 A (decoding) is read in place by
 *   few_rows_bf16, with no panel.
 * - Batches of small f32 problems with their own B (attention) run on the kernel pool, one batch
 *   entry per task (smallgemm.c), instead of one multi-threaded sgemm call per entry.
 * - Otherwise f32 A against a bf16 B stored [n, k] (a linear layer) goes to widegemm.c, which widens
 *   B while packing it for its own f32 kernel.
 * - `a_bf16` (MatmulArgs.aBf16: A rounded to bf16): a bf16 B stored [n, k] with a plain A goes to the
 *   AVX512-BF16 kernel in bf16gemm.c; every other case rounds a copy of A and continues as below.
 * - `b_bf16` with `a_bf16` (both f32 operands rounded: attention in bf16-inputs mode) and a plain A
 *   goes to bf16gemm.c's batched kernel; otherwise a rounded copy of B continues as below. So does
 *   `a_bf16` with any other bf16 B (a bf16 KV cache: batches, or B stored [k, n]).
 * - One sgemm runs at a time in the process (a mutex); OpenBLAS threads do the parallelism, and the
 *   kernel pool goes single-threaded meanwhile (gb_blas_begin/end), so it never adds threads on top
 *   of OpenBLAS's.
 */
#include <cblas.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "gb.h"

extern void openblas_set_num_threads(int num_threads);
extern int openblas_get_num_threads(void);
extern char *openblas_get_config(void);

static pthread_mutex_t blas_mu = PTHREAD_MUTEX_INITIALIZER;

const char *gb_blas_config(void) { return openblas_get_config(); }
int gb_blas_threads(void) { return openblas_get_num_threads(); }
void gb_blas_set_threads(int n) {
  pthread_mutex_lock(&blas_mu);
  openblas_set_num_threads(n);
  pthread_mutex_unlock(&blas_mu);
}

static void sgemm(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
                  int64_t ldb, float beta, float *c, int64_t ldc) {
  gb_blas_begin();
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (blasint)m,
              (blasint)n, (blasint)k, 1.0f, a, (blasint)lda, b, (blasint)ldb, beta, c, (blasint)ldc);
  gb_blas_end();
}

typedef struct {
  const uint16_t *b;
  int dtype;
  float *scratch;
  int64_t ld, n0, nc; /* row length of stored B, first column, columns in the panel */
} panel_ctx;

/* Untransposed B [k, n]: rows p of the panel are B[p, n0 : n0 + nc]. */
static void widen_panel_rows(void *vctx, int64_t b, int64_t e) {
  const panel_ctx *c = vctx;
  for (int64_t p = b; p < e; p++) gb_widen(c->b + p * c->ld + c->n0, c->dtype, c->scratch + p * c->nc, c->nc);
}

/* Transposed B [n, k]: the panel is the contiguous block of rows n0 .. n0 + nc. */
static void widen_panel_flat(void *vctx, int64_t b, int64_t e) {
  const panel_ctx *c = vctx;
  gb_widen(c->b + c->n0 * c->ld + b, c->dtype, c->scratch + b, e - b);
}

/* One (possibly merged) batch: out[m, n] (+)= op(A) @ op(B). */
static int run_one(const float *a, const void *b, float *out, int64_t m, int64_t k, int64_t n, int ta, int tb,
                   int b_dtype, float beta, float **scratch, int64_t *scratch_len) {
  int64_t lda = ta ? m : k;
  if (b_dtype == GB_F32) {
    pthread_mutex_lock(&blas_mu);
    sgemm(ta, tb, m, n, k, a, lda, b, tb ? k : n, beta, out, n);
    pthread_mutex_unlock(&blas_mu);
    return 0;
  }
  /* Panel width: ~2M floats (8 MB) when sgemm has enough rows to amortise repacking A per panel,
   * ~256K floats when m is small and the conversion itself dominates (stays cache resident). */
  int64_t target = m >= 64 ? ((int64_t)1 << 21) : ((int64_t)1 << 18);
  int64_t nc = target / k;
  nc = nc >= 64 ? nc / 64 * 64 : (nc >= 16 ? nc / 16 * 16 : 16);
  if (nc > n) nc = n;
  if (*scratch_len < nc * k) {
    free(*scratch);
    *scratch = malloc((size_t)(nc * k) * sizeof(float));
    *scratch_len = *scratch ? nc * k : 0;
    if (!*scratch) return -1;
  }
  for (int64_t n0 = 0; n0 < n; n0 += nc) {
    int64_t w = n - n0 < nc ? n - n0 : nc;
    panel_ctx pc = {(const uint16_t *)b, b_dtype, *scratch, tb ? k : n, n0, w};
    if (tb)
      gb_parallel_for(w * k, 32768, widen_panel_flat, &pc);
    else
      gb_parallel_for(k, 32768 / (w > 0 ? w : 1) + 1, widen_panel_rows, &pc);
    pthread_mutex_lock(&blas_mu);
    sgemm(ta, tb, m, w, k, a, lda, *scratch, tb ? k : w, beta, out + n0, n);
    pthread_mutex_unlock(&blas_mu);
  }
  return 0;
}

/* out[i] = a[i] rounded to the nearest bf16 (ties to even; NaN stays NaN), as an f32 value. */
static void round_to_bf16(const float *a, float *out, int64_t n) {
  const uint32_t *s = (const uint32_t *)a;
  uint32_t *o = (uint32_t *)out;
#pragma omp simd
  for (int64_t i = 0; i < n; i++) {
    uint32_t x = s[i];
    uint32_t r = (x + 0x7fffu + ((x >> 16) & 1u)) & 0xffff0000u;
    o[i] = (x & 0x7fffffffu) > 0x7f800000u ? (x | 0x400000u) & 0xffff0000u : r;
  }
}

/* Batched f32 problems up to this many multiply-adds each go to smallgemm.c (attention scores and
 * mixing), larger ones to OpenBLAS one batch entry at a time. */
#define SMALL_GEMM_MAX ((int64_t)1 << 27)

/* Few rows of f32 A (decoding) against a bf16 B stored [n, k] (a linear layer's weight): each
 * output is a dot product of a row of A with a row of B widened in registers. B is read once at 2
 * bytes per weight, where the panel path would write and re-read it as f32: decoding is bound by
 * reading the weights. Exact f32 products, as on the panel path; only the summation order differs. */
#define FEW_ROWS 4

typedef struct {
  const float *a;
  const uint16_t *b;
  float *out;
  int64_t m, k, n;
  int acc;
} few_rows_ctx;

static void few_rows_bf16(void *vctx, int64_t begin, int64_t end) {
  const few_rows_ctx *c = vctx;
  int64_t k = c->k;
  for (int64_t j = begin; j < end; j++) {
    const uint16_t *bj = c->b + j * k;
    for (int64_t i = 0; i < c->m; i++) {
      const float *ai = c->a + i * k;
      float s = 0.0f;
#pragma omp simd reduction(+ : s)
      for (int64_t p = 0; p < k; p++) {
        union {
          uint32_t u;
          float f;
        } w = {(uint32_t)bj[p] << 16};
        s += ai[p] * w.f;
      }
      float *o = c->out + i * c->n + j;
      *o = c->acc ? *o + s : s;
    }
  }
}

int gb_matmul_run(const float *a, const void *b, float *out, const gb_matmul_args *g) {
  int64_t m = g->m, k = g->k, n = g->n;
  if (g->batch == 0 || m == 0 || n == 0) return 0;
  if (k == 0) {
    if (!g->accumulate) memset(out, 0, (size_t)(g->batch * m * n) * sizeof(float));
    return 0;
  }
  float beta = g->accumulate ? 1.0f : 0.0f;
  float *scratch = NULL;
  int64_t scratch_len = 0;
  int rc = 0;
  int merge = g->batch > 1 && g->b_batch_stride == 0 && !g->trans_a && g->a_batch_stride == m * k;
  float *rounded = NULL;
  if (g->b_dtype == GB_BF16 && g->trans_b && !g->trans_a && (merge || g->batch == 1) && g->batch * m <= FEW_ROWS) {
    /* With a_bf16 the few rows are rounded first; products of two bf16 values are exact in f32, so
     * this computes what the AVX512-BF16 kernel would. */
    const float *rows = a;
    if (g->a_bf16) {
      rounded = malloc((size_t)(g->batch * m * k) * sizeof(float));
      if (!rounded) return -1;
      round_to_bf16(a, rounded, g->batch * m * k);
      rows = rounded;
    }
    few_rows_ctx c = {rows, b, out, g->batch * m, k, n, g->accumulate};
    gb_parallel_for(n, 64, few_rows_bf16, &c);
    free(rounded);
    return 0;
  }
  if (!g->a_bf16 && g->b_dtype == GB_BF16 && g->trans_b && !g->trans_a && (merge || g->batch == 1)) {
    rc = gb_wide_gemm_nt(a, b, out, g->batch * m, k, n, g->accumulate);
    if (rc <= 0) return rc;
    rc = 0;
  }
  float *rounded_b = NULL;
  if (g->b_bf16 && g->b_dtype == GB_F32) {
    if (g->a_bf16 && !g->trans_a) {
      rc = gb_bf16_batched_gemm(a, b, NULL, out, g->batch, m, k, n, g->a_batch_stride, g->b_batch_stride, g->trans_b,
                                g->accumulate);
      if (rc <= 0) return rc;
      rc = 0;
    }
    /* No bf16 kernel for this case: round every element of B the batches read. */
    int64_t len = (g->batch - 1) * g->b_batch_stride + k * n;
    rounded_b = malloc((size_t)len * sizeof(float));
    if (!rounded_b) return -1;
    round_to_bf16((const float *)b, rounded_b, len);
    b = rounded_b;
  }
  if (g->a_bf16) {
    if (g->b_dtype == GB_BF16 && g->trans_b && !g->trans_a && (merge || g->batch == 1)) {
      rc = gb_bf16_gemm_nt(a, b, out, g->batch * m, k, n, g->accumulate);
      if (rc <= 0) return rc;
      rc = 0;
    }
    if (g->b_dtype == GB_BF16 && !g->trans_a) {
      /* Batches with their own bf16 B, or one stored [k, n] (keys and values of a bf16 KV cache). */
      rc = gb_bf16_batched_gemm(a, NULL, b, out, g->batch, m, k, n, g->a_batch_stride, g->b_batch_stride,
                                g->trans_b, g->accumulate);
      if (rc <= 0) return rc;
      rc = 0;
    }
    /* No bf16 kernel for this case: round every element of A the batches read, then the usual path. */
    int64_t len = (g->batch - 1) * g->a_batch_stride + m * k;
    rounded = malloc((size_t)len * sizeof(float));
    if (!rounded) {
      free(rounded_b);
      return -1;
    }
    round_to_bf16(a, rounded, len);
    a = rounded;
  }
  if (g->b_dtype == GB_F32 && !g->trans_a && g->batch > 1 && !merge && m * n * k <= SMALL_GEMM_MAX) {
    rc = gb_small_gemm(a, b, out, g->batch, m, k, n, g->a_batch_stride, g->b_batch_stride, g->trans_b, g->accumulate);
    if (rc <= 0) {
      free(rounded);
      free(rounded_b);
      return rc;
    }
    rc = 0;
  }
  if (merge || g->batch == 1) {
    rc = run_one(a, b, out, g->batch * m, k, n, g->trans_a, g->trans_b, g->b_dtype, beta, &scratch, &scratch_len);
  } else {
    size_t esz = g->b_dtype == GB_F32 ? sizeof(float) : sizeof(uint16_t);
    for (int64_t t = 0; t < g->batch && rc == 0; t++) {
      const char *bt = (const char *)b + (size_t)(t * g->b_batch_stride) * esz;
      rc = run_one(a + t * g->a_batch_stride, bt, out + t * m * n, m, k, n, g->trans_a, g->trans_b, g->b_dtype,
                   beta, &scratch, &scratch_len);
    }
  }
  free(scratch);
  free(rounded);
  free(rounded_b);
  return rc;
}
