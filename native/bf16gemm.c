/*
 * out (+)= bf16(A) @ B^T for a bf16 right operand stored [n, k] (a linear layer's x @ W^T), on
 * AVX512-BF16 dot products (VDPBF16PS): A's elements are rounded to bf16 (nearest even, as
 * `gb_float_to_half` does), every product of two bf16 values is exact in f32, and the sums are f32.
 * This is the `aBf16` mode of MatmulArgs (src/core/backend.ts); the reference backend computes the
 * same thing with plain loops.
 *
 * Layout (the usual GEMM blocking): B is packed 32 columns at a time into [k/2][32][2] so that one
 * 512-bit load holds bf16 pairs (B[j, 2p], B[j, 2p+1]) for 16 columns j; an 8 x 32 micro-kernel
 * broadcasts A's pair (A[i, 2p], A[i, 2p+1]) and accumulates 16 registers with no horizontal sums.
 * Rows of A are taken 256 at a time (about 320 KB of bf16 for k = 640, L2-resident) and tiles of
 * rows by column blocks are split across the kernel pool (finer row chunks when there are few
 * column blocks, so that narrow projections use every thread). With at most 4 rows (decoding) packing would cost as
 * much as the arithmetic, so each output is instead a dot product of two contiguous bf16 rows.
 *
 * Built only when the compiler targets AVX512-BF16 (-march=native on such a CPU); otherwise
 * `gb_bf16_gemm_nt` returns 1 and the caller rounds A and uses the widening sgemm path.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gb.h"
#include "tile.h"

#if defined(__AVX512BF16__) && defined(__AVX512F__)
#include <immintrin.h>

#define MR GB_TILE_MR
#define NR GB_TILE_NR
#define MC 256

/* Packs rows j0 .. j0+nr of B ([n, k] bf16, k even) as 32-bit pairs [k/2][NR], zero past nr.
 * Full blocks move 16 x 16 tiles through registers; the rest goes element by element. */
static void pack_b(const uint16_t *b, int64_t k, int64_t j0, int64_t nr, uint32_t *p) {
  int64_t kh = k / 2;
  int64_t q0 = 0;
  if (nr == NR) {
    for (; q0 + 16 <= kh; q0 += 16) {
      for (int h = 0; h < 2; h++) {
        __m512i r[16];
        for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_si512((const uint32_t *)(b + (j0 + h * 16 + i) * k) + q0);
        gb_transpose16(r);
        for (int t = 0; t < 16; t++) _mm512_storeu_si512(p + (q0 + t) * NR + h * 16, r[t]);
      }
    }
  }
  for (int64_t j = 0; j < NR; j++) {
    if (j < nr) {
      const uint32_t *row = (const uint32_t *)(b + (j0 + j) * k);
      for (int64_t q = q0; q < kh; q++) p[q * NR + j] = row[q];
    } else {
      for (int64_t q = q0; q < kh; q++) p[q * NR + j] = 0;
    }
  }
}

/* C[0:MR, 0:nr] (+)= A[0:MR, :] . P, A bf16 rows of `lda` elements, kh = k / 2 pairs. */
static void micro_full(const uint16_t *a, int64_t lda, const uint32_t *p, int64_t kh, float *c, int64_t ldc,
                       int nr, int acc) {
  __m512 c0[MR], c1[MR];
  for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm512_setzero_ps();
  for (int64_t q = 0; q < kh; q++) {
    __m512bh b0 = (__m512bh)_mm512_loadu_si512(p + q * NR);
    __m512bh b1 = (__m512bh)_mm512_loadu_si512(p + q * NR + 16);
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
      int32_t pair;
      memcpy(&pair, a + i * lda + 2 * q, sizeof pair);
      __m512bh av = (__m512bh)_mm512_set1_epi32(pair);
      c0[i] = _mm512_dpbf16_ps(c0[i], av, b0);
      c1[i] = _mm512_dpbf16_ps(c1[i], av, b1);
    }
  }
  for (int i = 0; i < MR; i++) gb_store_tile_row(c + i * ldc, c0[i], c1[i], nr, acc);
}

/* The same for mr < MR rows. */
static void micro_part(const uint16_t *a, int64_t lda, int mr, const uint32_t *p, int64_t kh, float *c,
                       int64_t ldc, int nr, int acc) {
  for (int i = 0; i < mr; i++) {
    __m512 c0 = _mm512_setzero_ps(), c1 = _mm512_setzero_ps();
    for (int64_t q = 0; q < kh; q++) {
      int32_t pair;
      memcpy(&pair, a + i * lda + 2 * q, sizeof pair);
      __m512bh av = (__m512bh)_mm512_set1_epi32(pair);
      c0 = _mm512_dpbf16_ps(c0, av, (__m512bh)_mm512_loadu_si512(p + q * NR));
      c1 = _mm512_dpbf16_ps(c1, av, (__m512bh)_mm512_loadu_si512(p + q * NR + 16));
    }
    gb_store_tile_row(c + i * ldc, c0, c1, nr, acc);
  }
}

typedef struct {
  const uint16_t *a; /* [m, k] bf16 */
  const uint16_t *b; /* [n, k] bf16 */
  float *out;        /* [m, n] */
  int64_t m, k, n;
  int64_t rows;   /* rows of A per tile (a multiple of MR) */
  int64_t chunks; /* row chunks: tile t is column block t / chunks, rows (t % chunks) * rows .. */
  int acc;
  int failed;
} gemm_ctx;

/* Tiles [begin, end): column block t / chunks of NR columns by row chunk t % chunks. Consecutive
 * tiles of one column block reuse its packed B. */
static void gemm_tiles(void *vctx, int64_t begin, int64_t end) {
  gemm_ctx *g = vctx;
  int64_t kh = g->k / 2;
  uint32_t *p = aligned_alloc(64, (size_t)((kh * NR * 4 + 63) / 64 * 64));
  if (!p) {
    g->failed = 1;
    return;
  }
  int64_t packed = -1;
  for (int64_t t = begin; t < end; t++) {
    gb_tile x = gb_tile_at(t, g->chunks, g->rows, g->m, g->n, NR);
    if (x.blk != packed) {
      pack_b(g->b, g->k, x.j0, x.nr, p);
      packed = x.blk;
    }
    gb_prefetch f = gb_prefetch_next(g->b, 2, g->k, g->n, x, t, g->chunks, NR);
    for (int64_t i = x.i0; i < x.i0 + x.mc; i += MR) {
      int mr = (int)(x.i0 + x.mc - i < MR ? x.i0 + x.mc - i : MR);
      gb_prefetch_step(&f);
      const uint16_t *a = g->a + i * g->k;
      float *c = g->out + i * g->n + x.j0;
      if (mr == MR)
        micro_full(a, g->k, p, kh, c, g->n, x.nr, g->acc);
      else
        micro_part(a, g->k, mr, p, kh, c, g->n, x.nr, g->acc);
    }
  }
  free(p);
}

/* Few rows (decoding): no packing; each output is a dot product of an A row and a B row, 4 columns
 * at a time so that A's vectors are loaded once per group. */
static void dot_columns(void *vctx, int64_t begin, int64_t end) {
  gemm_ctx *g = vctx;
  int64_t k = g->k;
  int64_t tail = k % 32;
  __mmask32 tail_mask = (__mmask32)((1ull << tail) - 1);
  for (int64_t j = begin; j < end; j += 4) {
    int cols = (int)(end - j < 4 ? end - j : 4);
    const uint16_t *bj[4];
    for (int c = 0; c < 4; c++) bj[c] = g->b + (j + (c < cols ? c : 0)) * k;
    for (int64_t i = 0; i < g->m; i++) {
      const uint16_t *ai = g->a + i * k;
      __m512 s[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
      int64_t p = 0;
      for (; p + 32 <= k; p += 32) {
        __m512bh av = (__m512bh)_mm512_loadu_si512(ai + p);
        for (int c = 0; c < 4; c++) s[c] = _mm512_dpbf16_ps(s[c], av, (__m512bh)_mm512_loadu_si512(bj[c] + p));
      }
      if (tail) {
        __m512bh av = (__m512bh)_mm512_maskz_loadu_epi16(tail_mask, ai + p);
        for (int c = 0; c < 4; c++)
          s[c] = _mm512_dpbf16_ps(s[c], av, (__m512bh)_mm512_maskz_loadu_epi16(tail_mask, bj[c] + p));
      }
      float *o = g->out + i * g->n + j;
      for (int c = 0; c < cols; c++) {
        float v = _mm512_reduce_add_ps(s[c]);
        o[c] = g->acc ? o[c] + v : v;
      }
    }
  }
}

/* dot_columns over groups [begin, end) of 4 columns. */
static void dot_columns_groups(void *vctx, int64_t begin, int64_t end) {
  gemm_ctx *g = vctx;
  int64_t j1 = end * 4 < g->n ? end * 4 : g->n;
  dot_columns(vctx, begin * 4, j1);
}

int gb_bf16_gemm_nt(const float *a, const uint16_t *b, float *out, int64_t m, int64_t k, int64_t n, int accumulate) {
  if (k % 2 != 0 || k == 0) return 1;
  if (m == 0 || n == 0) return 0;
  uint16_t *abf = malloc((size_t)(m * k) * sizeof(uint16_t));
  if (!abf) return -1;
  gb_float_to_half(a, GB_BF16, abf, m * k);
  gemm_ctx g = {abf, b, out, m, k, n, MC, 1, accumulate, 0};
  if (m <= 4) {
    /* Multiples of 4 columns per task, so only the last task has a partial group. */
    gb_parallel_for((n + 3) / 4, 16, dot_columns_groups, &g);
    free(abf);
    return 0;
  }
  int64_t blocks = (n + NR - 1) / NR;
  /* Tiles of MC rows by one column block, in a few blocks per pool task; with few column blocks
   * (a narrow projection) the rows are cut finer so that every thread gets work. */
  int64_t want = 8 * (int64_t)gb_pool_threads();
  int64_t rows = gb_tile_rows(m, blocks, MC, want);
  g.rows = rows;
  g.chunks = (m + rows - 1) / rows;
  int64_t tiles = blocks * g.chunks;
  gb_parallel_for(tiles, tiles >= 4 * want ? 4 : 1, gemm_tiles, &g);
  free(abf);
  return g.failed ? -1 : 0;
}

#else

int gb_bf16_gemm_nt(const float *a, const uint16_t *b, float *out, int64_t m, int64_t k, int64_t n, int accumulate) {
  (void)a, (void)b, (void)out, (void)m, (void)k, (void)n, (void)accumulate;
  return 1;
}

#endif
