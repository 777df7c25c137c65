/*
 * Many small f32 matmuls at once (attention: scores q k^T and pattern @ v for every batch row and
 * kv head): out[t] (+)= A[t] @ op(B[t]) for t < batch, plain row-major A.
 *
 * OpenBLAS threads each call separately and, at these sizes (a few MFLOP), spends as long waking
 * and joining its threads as computing. Here the kernel pool splits the (batch x row block) tiles
 * and each tile runs single-threaded: B[t] is packed as [k][NR] column panels (from a transposed
 * [n, k] or a plain [k, n] layout) and an 8 x 32 micro-kernel of AVX-512 FMAs broadcasts A's
 * elements, as bf16gemm.c does with bf16 pairs. Products and sums are f32 (only the summation order
 * differs from sgemm). Built only with AVX-512F; otherwise `gb_small_gemm` returns 1 and the caller
 * uses OpenBLAS.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gb.h"
#include "tile.h"

#if defined(__AVX512F__)
#include <immintrin.h>

#define MR GB_TILE_MR
#define NR GB_TILE_NR
#define ROWS 64

/* Columns j0 .. j0 + nr of op(B) as [k][NR], zero past nr. */
static void pack(const gb_batched_job *g, const float *b, int64_t j0, int nr, float *p) {
  int64_t k = g->k;
  if (g->trans_b) {
    for (int64_t q = 0; q < k; q++)
      for (int j = 0; j < NR; j++) p[q * NR + j] = j < nr ? b[(j0 + j) * k + q] : 0.0f;
  } else {
    for (int64_t q = 0; q < k; q++) {
      const float *row = b + q * g->n + j0;
      for (int j = 0; j < NR; j++) p[q * NR + j] = j < nr ? row[j] : 0.0f;
    }
  }
}

/* Tiles [begin, end): batch entry t / row_blocks, rows (t % row_blocks) * ROWS .. */
static void tiles(void *vctx, int64_t begin, int64_t end) {
  gb_batched_job *g = vctx;
  int64_t blocks = (g->n + NR - 1) / NR;
  float *p = gb_scratch(GB_SCRATCH_BATCH_B, (size_t)(blocks * g->k * NR) * sizeof *p);
  if (!p) {
    g->failed = 1;
    return;
  }
  int64_t packed = -1;
  for (int64_t t = begin; t < end; t++) {
    int64_t bt = t / g->row_blocks, i0 = (t % g->row_blocks) * ROWS;
    int64_t mc = g->m - i0 < ROWS ? g->m - i0 : ROWS;
    if (bt != packed) {
      for (int64_t blk = 0; blk < blocks; blk++) {
        int64_t j0 = blk * NR;
        pack(g, g->b + bt * g->b_stride, j0, (int)(g->n - j0 < NR ? g->n - j0 : NR), p + blk * g->k * NR);
      }
      packed = bt;
    }
    const float *a = g->a + bt * g->a_stride;
    float *c = g->out + bt * g->m * g->n;
    for (int64_t blk = 0; blk < blocks; blk++) {
      int64_t j0 = blk * NR;
      int nr = (int)(g->n - j0 < NR ? g->n - j0 : NR);
      for (int64_t i = i0; i < i0 + mc; i += MR) {
        int mr = (int)(i0 + mc - i < MR ? i0 + mc - i : MR);
        gb_f32_tile(a + i * g->k, g->k, mr, p + blk * g->k * NR, g->k, c + i * g->n + j0, g->n, nr, g->acc);
      }
    }
  }
  gb_scratch_done(GB_SCRATCH_BATCH_B, p);
}

int gb_small_gemm(const float *a, const float *b, float *out, int64_t batch, int64_t m, int64_t k, int64_t n,
                  int64_t a_stride, int64_t b_stride, int trans_b, int accumulate) {
  gb_batched_job g = {a, b, out, m, k, n, a_stride, b_stride, trans_b, accumulate, (m + ROWS - 1) / ROWS, 0};
  gb_parallel_tiles(batch * g.row_blocks, 1, tiles, &g);
  return g.failed ? -1 : 0;
}

#else

int gb_small_gemm(const float *a, const float *b, float *out, int64_t batch, int64_t m, int64_t k, int64_t n,
                  int64_t a_stride, int64_t b_stride, int trans_b, int accumulate) {
  (void)a, (void)b, (void)out, (void)batch, (void)m, (void)k, (void)n, (void)a_stride, (void)b_stride;
  (void)trans_b, (void)accumulate;
  return 1;
}

#endif
