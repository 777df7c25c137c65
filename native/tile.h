/*
 * Shared by the AVX-512 GEMM micro-kernels (bf16gemm.c, smallgemm.c, widegemm.c): storing one row
 * of a 32-column output tile held in two registers, masked to the `nr` columns that exist,
 * overwriting or adding to what is there; the 8 x 32 f32 FMA tile over a packed panel; and a
 * 16 x 16 transpose of 32-bit elements in registers (for packing); the job of the batched
 * kernels (one per batch entry and block of rows); and the tile driver of the GEMMs against a bf16
 * B stored [n, k] (gb_nt_job: tiling, panel reuse, prefetch of the next block, pool dispatch).
 */
#ifndef GB_TILE_H
#define GB_TILE_H

#if defined(__AVX512F__)
#include <immintrin.h>
#include <stdint.h>

#include "gb.h"

#define GB_TILE_MR 8
#define GB_TILE_NR 32

/* out[t] (+)= A[t] @ op(B[t]) over pool tasks of (batch entry t / row_blocks, a block of rows). */
typedef struct {
  const float *a, *b;
  float *out;
  int64_t m, k, n, a_stride, b_stride;
  int trans_b, acc;
  int64_t row_blocks;
  int failed;
  /* B stored as bf16 (read in place of b), or NULL. */
  const uint16_t *b16;
} gb_batched_job;

static inline void gb_store_tile_row(float *c, __m512 v0, __m512 v1, int nr, int acc) {
  __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
  __mmask16 m1 = nr >= 32 ? 0xffff : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
  if (acc) {
    v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, c));
    v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, c + 16));
  }
  _mm512_mask_storeu_ps(c, m0, v0);
  _mm512_mask_storeu_ps(c + 16, m1, v1);
}

/* Transposes a 16 x 16 block of 32-bit elements held in r[0..15] (row i in r[i]). */
static inline void gb_transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int i = 0; i < 4; i++) {
    t[i] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0xdd);
    t[i + 8] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0xdd);
  }
  for (int i = 0; i < 8; i++) {
    r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
  }
}

/* Rows of A per tile for an m-row GEMM over `blocks` column blocks: `mc`, or fewer (a multiple of
 * GB_TILE_MR, at least 4 of them) when there are too few column blocks to give every pool thread
 * several tiles. */
static inline int64_t gb_tile_rows(int64_t m, int64_t blocks, int64_t mc, int64_t want) {
  int64_t rows = mc;
  if (blocks * ((m + mc - 1) / mc) < want) {
    int64_t chunks = (want + blocks - 1) / blocks;
    rows = (m + chunks - 1) / chunks;
    rows = (rows + 7) / 8 * 8;
    if (rows < 32) rows = 32;
    if (rows > mc) rows = mc;
  }
  return rows;
}

/* Where tile t of a GEMM tiled as (column block t / chunks) x (row chunk t % chunks) lies. */
typedef struct {
  int64_t blk, i0, mc, j0;
  int nr;
} gb_tile;

static inline gb_tile gb_tile_at(int64_t t, int64_t chunks, int64_t rows, int64_t m, int64_t n, int64_t nr_max) {
  gb_tile x;
  x.blk = t / chunks;
  x.i0 = (t % chunks) * rows;
  x.mc = m - x.i0 < rows ? m - x.i0 : rows;
  x.j0 = x.blk * nr_max;
  x.nr = (int)(n - x.j0 < nr_max ? n - x.j0 : nr_max);
  return x;
}

/*
 * Prefetching the next column block's rows of B (stored [n, k], `esize`-byte elements; contiguous,
 * and from DRAM for an unembedding) into L2 while the last row chunk of this block computes, a
 * slice per micro-kernel, so that the memory latency of the next packing overlaps this work.
 */
typedef struct {
  const char *next;
  int64_t bytes, slice, done;
} gb_prefetch;

static inline gb_prefetch gb_prefetch_next(const void *b, int64_t esize, int64_t k, int64_t n, gb_tile x,
                                           int64_t t, int64_t chunks, int64_t nr_max) {
  gb_prefetch f = {NULL, 0, 0, 0};
  int64_t j1 = x.j0 + nr_max;
  if (j1 >= n || (t + 1) % chunks != 0) return f;
  f.next = (const char *)b + j1 * k * esize;
  f.bytes = (n - j1 < nr_max ? n - j1 : nr_max) * k * esize;
  int64_t slices = (x.mc + GB_TILE_MR - 1) / GB_TILE_MR;
  f.slice = (f.bytes / slices + 63) / 64 * 64;
  return f;
}

/* Issues the next slice of prefetches (call once per micro-kernel). */
static inline void gb_prefetch_step(gb_prefetch *f) {
  for (int64_t e = f->done + f->slice; f->done < e && f->done < f->bytes; f->done += 64)
    _mm_prefetch(f->next + f->done, _MM_HINT_T1);
}


/* C[0:mr, 0:nr] (+)= A[0:mr, 0:k] . P in f32 FMAs, for mr <= 8 rows of A (`lda` floats apart) and P
 * the packed panel [k][32] of op(B)'s columns: 16 accumulators, A's elements broadcast. */
static inline void gb_f32_tile(const float *a, int64_t lda, int mr, const float *p, int64_t k, float *c,
                               int64_t ldc, int nr, int acc) {
  __m512 c0[GB_TILE_MR], c1[GB_TILE_MR];
  for (int i = 0; i < GB_TILE_MR; i++) c0[i] = c1[i] = _mm512_setzero_ps();
  if (mr == GB_TILE_MR) {
    for (int64_t q = 0; q < k; q++) {
      __m512 b0 = _mm512_loadu_ps(p + q * GB_TILE_NR), b1 = _mm512_loadu_ps(p + q * GB_TILE_NR + 16);
#pragma GCC unroll 8
      for (int i = 0; i < GB_TILE_MR; i++) {
        __m512 av = _mm512_set1_ps(a[i * lda + q]);
        c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
        c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
      }
    }
  } else {
    for (int64_t q = 0; q < k; q++) {
      __m512 b0 = _mm512_loadu_ps(p + q * GB_TILE_NR), b1 = _mm512_loadu_ps(p + q * GB_TILE_NR + 16);
      for (int i = 0; i < mr; i++) {
        __m512 av = _mm512_set1_ps(a[i * lda + q]);
        c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
        c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
      }
    }
  }
  for (int i = 0; i < mr; i++) gb_store_tile_row(c + i * ldc, c0[i], c1[i], nr, acc);
}

/*
 * One GEMM against a bf16 B stored [n, k] (bf16gemm.c, widegemm.c): tiles of `rows` rows by NR
 * columns, tile t being column block t / chunks by row chunk t % chunks. `pack` fills a panel with
 * columns j0 .. j0+nr of B; `rows_fn` computes rows i .. i+mr of the tile's columns of `out` from
 * it. Kernels put this first in their own job (which adds their A).
 */
typedef struct gb_nt_job {
  const uint16_t *b;
  float *out;
  int64_t m, k, n;
  int64_t rows, chunks;
  size_t panel_bytes;
  void (*pack)(const uint16_t *b, int64_t k, int64_t j0, int64_t nr, void *panel);
  void (*rows_fn)(const struct gb_nt_job *job, const void *panel, int64_t i, int mr, int64_t j0, int nr);
  int acc;
  int failed;
} gb_nt_job;

/* Tiles [begin, end) of a gb_nt_job (a pool range function). Consecutive tiles of one column block
 * reuse its panel, and the next block of B is prefetched while the last row chunk computes. */
static inline void gb_nt_tiles(void *vctx, int64_t begin, int64_t end) {
  gb_nt_job *g = vctx;
  void *p = gb_scratch(GB_SCRATCH_PANEL, g->panel_bytes);
  if (!p) {
    g->failed = 1;
    return;
  }
  int64_t packed = -1;
  for (int64_t t = begin; t < end; t++) {
    gb_tile x = gb_tile_at(t, g->chunks, g->rows, g->m, g->n, GB_TILE_NR);
    if (x.blk != packed) {
      g->pack(g->b, g->k, x.j0, x.nr, p);
      packed = x.blk;
    }
    gb_prefetch f = gb_prefetch_next(g->b, 2, g->k, g->n, x, t, g->chunks, GB_TILE_NR);
    for (int64_t i = x.i0; i < x.i0 + x.mc; i += GB_TILE_MR) {
      int mr = (int)(x.i0 + x.mc - i < GB_TILE_MR ? x.i0 + x.mc - i : GB_TILE_MR);
      gb_prefetch_step(&f);
      g->rows_fn(g, p, i, mr, x.j0, (int)x.nr);
    }
  }
  gb_scratch_done(GB_SCRATCH_PANEL, p);
}

/* Runs a gb_nt_job (m, k, n, b, out, acc, pack, rows_fn and panel_bytes set) on the kernel pool:
 * tiles of mc rows by one column block, a few blocks per pool task; with few column blocks (a narrow
 * projection) the rows are cut finer so that every thread gets work. Returns 0, or -1 when a panel
 * could not be allocated. */
static inline int gb_nt_run(gb_nt_job *g, int64_t mc) {
  int64_t blocks = (g->n + GB_TILE_NR - 1) / GB_TILE_NR;
  int64_t want = 8 * (int64_t)gb_pool_threads();
  g->rows = gb_tile_rows(g->m, blocks, mc, want);
  g->chunks = (g->m + g->rows - 1) / g->rows;
  g->failed = 0;
  int64_t tiles = blocks * g->chunks;
  gb_parallel_tiles(tiles, tiles >= 4 * want ? 4 : 1, gb_nt_tiles, g);
  return g->failed ? -1 : 0;
}
#endif

#endif
