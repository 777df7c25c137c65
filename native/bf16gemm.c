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
 * With a few hundred rows against a wide weight (a prompt chunk of 128 tokens through an MLP),
 * packing all of B for so few rows is a tenth of the time. There the roles turn: A is packed 32 rows
 * at a time (the lanes of two vectors) and B is read in place, 8 rows at a time, its pairs broadcast;
 * a 32 x 8 tile is transposed in registers on the way out. Each output's sum runs over k in the same
 * order as on the tiled path, so both give the same bits.
 *
 * `gb_bf16_batched_gemm` is the same arithmetic for products of two f32 activations, both rounded
 * (MatmulArgs.bBf16; attention scores and mixing in bf16-inputs mode, as bf16 inference frameworks
 * compute them), or of rounded f32 A and a bf16 B (a bf16 KV cache): batches with their own B, B
 * stored [n, k] or [k, n], odd k padded with a zero pair.
 * Each pool task takes (batch entry x 64-row) tiles, packs all of op(B[t]) once per entry and rounds
 * its rows of A as it goes.
 *
 * Built only when the compiler targets AVX512-BF16 (-march=native on such a CPU); otherwise both
 * entry points return 1 and the caller rounds the operands and uses the sgemm paths.
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
  gb_nt_job job;
  const uint16_t *a; /* [m, k] bf16 */
} gemm_job;

static void pack_panel(const uint16_t *b, int64_t k, int64_t j0, int64_t nr, void *p) { pack_b(b, k, j0, nr, p); }

static void gemm_rows(const gb_nt_job *job, const void *p, int64_t i, int mr, int64_t j0, int nr) {
  const uint16_t *a = ((const gemm_job *)job)->a + i * job->k;
  float *c = job->out + i * job->n + j0;
  if (mr == MR)
    micro_full(a, job->k, p, job->k / 2, c, job->n, nr, job->acc);
  else
    micro_part(a, job->k, mr, p, job->k / 2, c, job->n, nr, job->acc);
}

/* Few rows (decoding): no packing; each output is a dot product of an A row and a B row, 4 columns
 * at a time so that A's vectors are loaded once per group. */
static void dot_columns(void *vctx, int64_t begin, int64_t end) {
  const gemm_job *w = vctx;
  const gb_nt_job *g = &w->job;
  int64_t k = g->k;
  int64_t tail = k % 32;
  __mmask32 tail_mask = (__mmask32)((1ull << tail) - 1);
  for (int64_t j = begin; j < end; j += 4) {
    int cols = (int)(end - j < 4 ? end - j : 4);
    const uint16_t *bj[4];
    for (int c = 0; c < 4; c++) bj[c] = g->b + (j + (c < cols ? c : 0)) * k;
    for (int64_t i = 0; i < g->m; i++) {
      const uint16_t *ai = w->a + i * k;
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
  const gemm_job *w = vctx;
  int64_t j1 = end * 4 < w->job.n ? end * 4 : w->job.n;
  dot_columns(vctx, begin * 4, j1);
}

/* ---- rows of A packed, B read in place (a few hundred rows against a wide weight) ---- */

/* Rows of A per packed block (the 16 lanes of two vectors), columns of out per micro-tile. */
#define TR 32
#define TC 8
/* Packed A kept in L2 while a task's columns pass over it (bytes), and most keys per pass. */
#define TSUPER_BYTES ((int64_t)320 << 10)
#define TKC 2048

typedef struct {
  const uint16_t *abf; /* [m, k] bf16 */
  uint32_t *pa;        /* block blk of rows at pa + blk * kh * TR, [kh][TR] pairs */
  const uint16_t *b;   /* [n, k] bf16 */
  float *out;
  int64_t m, k, n, blocks, super, kc;
  int acc;
} tjob;

static void pack_a_blocks(void *vctx, int64_t begin, int64_t end) {
  const tjob *t = vctx;
  for (int64_t blk = begin; blk < end; blk++) {
    int64_t i0 = blk * TR;
    pack_b(t->abf, t->k, i0, t->m - i0 < TR ? t->m - i0 : TR, t->pa + blk * (t->k / 2) * TR);
  }
}

/*
 * out[i0 : i0+mr, j0 : j0+nc] for pairs q0 .. q1 of one packed block `pa` and B rows bj[0..TC):
 * lanes run over rows of A, B's pairs are broadcast, so the 16 accumulators hold columns of the
 * tile; one 16 x 16 transpose turns them into rows (lanes 0-7: row L, 8-15: row 16 + L). `from`:
 * 0 starts at zero (then adds out when acc), 1 continues the partial sums stored in out (keys
 * taken in passes), so every sum runs over q in order exactly as micro_full's.
 */
static void micro_t(const uint32_t *pa, int64_t q0, int64_t q1, const uint32_t *const bj[TC], float *c,
                    int64_t ldc, int mr, int nc, int from, int acc) {
  __m512 c0[TC], c1[TC];
  __mmask8 cm = (__mmask8)((1u << nc) - 1);
  if (from) {
    __m512i r[16];
    for (int l = 0; l < 16; l++) {
      __m256 lo = l < mr ? _mm256_maskz_loadu_ps(cm, c + l * ldc) : _mm256_setzero_ps();
      __m256 hi = 16 + l < mr ? _mm256_maskz_loadu_ps(cm, c + (16 + l) * ldc) : _mm256_setzero_ps();
      r[l] = _mm512_castps_si512(_mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1));
    }
    gb_transpose16(r);
    for (int j = 0; j < TC; j++) {
      c0[j] = _mm512_castsi512_ps(r[j]);
      c1[j] = _mm512_castsi512_ps(r[TC + j]);
    }
  } else {
    for (int j = 0; j < TC; j++) c0[j] = c1[j] = _mm512_setzero_ps();
  }
  for (int64_t q = q0; q < q1; q++) {
    __m512bh a0 = (__m512bh)_mm512_loadu_si512(pa + q * TR);
    __m512bh a1 = (__m512bh)_mm512_loadu_si512(pa + q * TR + 16);
#pragma GCC unroll 8
    for (int j = 0; j < TC; j++) {
      __m512bh bv = (__m512bh)_mm512_set1_epi32((int32_t)bj[j][q]);
      c0[j] = _mm512_dpbf16_ps(c0[j], a0, bv);
      c1[j] = _mm512_dpbf16_ps(c1[j], a1, bv);
    }
  }
  __m512i r[16];
  for (int j = 0; j < TC; j++) {
    r[j] = _mm512_castps_si512(c0[j]);
    r[TC + j] = _mm512_castps_si512(c1[j]);
  }
  gb_transpose16(r);
  for (int l = 0; l < 16; l++) {
    for (int h = 0; h < 2; h++) {
      int row = h * 16 + l;
      if (row >= mr) continue;
      __m256 v = h ? _mm512_extractf32x8_ps(_mm512_castsi512_ps(r[l]), 1)
                   : _mm512_castps512_ps256(_mm512_castsi512_ps(r[l]));
      float *o = c + row * ldc;
      if (acc && !from) v = _mm256_add_ps(v, _mm256_maskz_loadu_ps(cm, o));
      _mm256_mask_storeu_ps(o, cm, v);
    }
  }
}

/* Column groups [g0, g1) of a tjob: per pass of keys, per super-block of rows (packed A in L2),
 * each group's TC rows of B (L1-resident) against every block of the super-block. */
static void t_columns(void *vctx, int64_t g0, int64_t g1) {
  const tjob *t = vctx;
  int64_t kh = t->k / 2;
  for (int64_t q0 = 0; q0 < kh; q0 += t->kc) {
    int64_t q1 = kh - q0 < t->kc ? kh : q0 + t->kc;
    for (int64_t s0 = 0; s0 < t->blocks; s0 += t->super) {
      int64_t s1 = t->blocks - s0 < t->super ? t->blocks : s0 + t->super;
      for (int64_t g = g0; g < g1; g++) {
        int64_t j0 = g * TC;
        int nc = (int)(t->n - j0 < TC ? t->n - j0 : TC);
        const uint32_t *bj[TC];
        for (int j = 0; j < TC; j++) bj[j] = (const uint32_t *)(t->b + (j0 + (j < nc ? j : 0)) * t->k);
        for (int64_t blk = s0; blk < s1; blk++) {
          int64_t i0 = blk * TR;
          int mr = (int)(t->m - i0 < TR ? t->m - i0 : TR);
          micro_t(t->pa + blk * kh * TR, q0, q1, bj, t->out + i0 * t->n + j0, t->n, mr, nc, q0 > 0, t->acc);
        }
      }
    }
  }
}

/* Whether the packed-A path takes an m-row product (measured against gb_nt_run with B read from
 * DRAM, as weights are): up to 192 rows, where packing all of B costs more than re-packing A; at
 * least 512 columns; rows filling their 32-row blocks to 7/8 at least (a half-empty block wastes its
 * products); and no accumulation into out across passes of keys (partial sums would mix with out's
 * values). */
static int packed_a_fits(int64_t m, int64_t k, int64_t n, int accumulate) {
  int64_t padded = (m + TR - 1) / TR * TR;
  return m <= 192 && n >= 512 && 8 * (padded - m) <= padded && !(accumulate && k / 2 > TKC / 2);
}

/* The packed-A path of gb_bf16_gemm_nt for `abf` (A rounded, [m, k], k even). */
static int gemm_packed_a(const uint16_t *abf, const uint16_t *b, float *out, int64_t m, int64_t k, int64_t n,
                         int accumulate) {
  int64_t kh = k / 2, blocks = (m + TR - 1) / TR;
  uint32_t *pa = gb_scratch(GB_SCRATCH_A_PACK, (size_t)(blocks * kh * TR) * sizeof *pa);
  if (!pa) return -1;
  int64_t kc = kh < TKC / 2 ? kh : TKC / 2;
  int64_t super = TSUPER_BYTES / (kc * TR * (int64_t)sizeof *pa);
  tjob t = {abf, pa, b, out, m, k, n, blocks, super < 1 ? 1 : super, kc, accumulate};
  gb_parallel_for(blocks, 1, pack_a_blocks, &t);
  gb_parallel_tiles((n + TC - 1) / TC, 2, t_columns, &t);
  gb_scratch_done(GB_SCRATCH_A_PACK, pa);
  return 0;
}

int gb_bf16_gemm_nt(const float *a, const uint16_t *b, float *out, int64_t m, int64_t k, int64_t n, int accumulate) {
  if (k % 2 != 0 || k == 0) return 1;
  if (m == 0 || n == 0) return 0;
  uint16_t *abf = gb_scratch(GB_SCRATCH_A_BF16, (size_t)(m * k) * sizeof(uint16_t));
  if (!abf) return -1;
  gb_float_to_half(a, GB_BF16, abf, m * k);
  gemm_job g = {{b, out, m, k, n, 0, 0, (size_t)(k / 2 * NR) * sizeof(uint32_t), pack_panel, gemm_rows, accumulate, 0}, abf};
  int rc = 0;
  if (m <= 4) {
    /* Multiples of 4 columns per task, so only the last task has a partial group. */
    gb_parallel_for((n + 3) / 4, 16, dot_columns_groups, &g);
  } else if (packed_a_fits(m, k, n, accumulate)) {
    rc = gemm_packed_a(abf, b, out, m, k, n, accumulate);
  } else {
    rc = gb_nt_run(&g.job, MC);
  }
  gb_scratch_done(GB_SCRATCH_A_BF16, abf);
  return rc;
}

/* ---- both operands f32, rounded here ---- */

#define BROWS 64
/* Largest packed op(B[t]) (bytes) per thread; larger problems fall back to the caller. */
#define BPACK_MAX ((int64_t)32 << 20)

/* Nearest-even bf16 bits of x, quiet NaN kept (as gb_float_to_half). */
static inline uint32_t bf16_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
  return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

/* bf16 bits of element i of a B stored in f32 (b, rounded here) or in bf16 (b16, as stored). */
static inline uint32_t b_bits(const float *b, const uint16_t *b16, int64_t i) { return b16 ? b16[i] : bf16_bits(b[i]); }

/* op(B) ([k, n]) as bf16 pairs, column block blk at p + blk * kh * NR laid out [kh][NR]; zero past n
 * columns and past k. B is batch entry t's: f32 or, with g->b16, bf16. */
static void pack_batch_b(const gb_batched_job *g, int64_t t, uint32_t *p) {
  int64_t k = g->k, n = g->n, kh = (k + 1) / 2, blocks = (n + NR - 1) / NR;
  const float *b = g->b16 ? NULL : g->b + t * g->b_stride;
  const uint16_t *b16 = g->b16 ? g->b16 + t * g->b_stride : NULL;
  memset(p, 0, (size_t)(blocks * kh * NR) * sizeof *p);
  if (g->trans_b) {
    /* Stored [n, k]: column j of op(B) is row j, contiguous. */
    for (int64_t j = 0; j < n; j++) {
      int64_t row = j * k;
      uint32_t *col = p + (j / NR) * kh * NR + j % NR;
      for (int64_t q = 0; q < k / 2; q++)
        col[q * NR] = b_bits(b, b16, row + 2 * q) | b_bits(b, b16, row + 2 * q + 1) << 16;
      if (k % 2) col[(k / 2) * NR] = b_bits(b, b16, row + k - 1);
    }
  } else {
    /* Stored [k, n]: rows 2q and 2q + 1 interleave. */
    for (int64_t q = 0; q < kh; q++) {
      int64_t r0 = 2 * q * n;
      int two = 2 * q + 1 < k;
      for (int64_t j = 0; j < n; j++)
        p[(j / NR) * kh * NR + q * NR + j % NR] = b_bits(b, b16, r0 + j) | (two ? b_bits(b, b16, r0 + n + j) << 16 : 0u);
    }
  }
}

/* Tiles [begin, end): batch entry t / row_blocks, rows (t % row_blocks) * BROWS .. */
static void batched_tiles(void *vctx, int64_t begin, int64_t end) {
  gb_batched_job *g = vctx;
  int64_t kh = (g->k + 1) / 2, kp = 2 * kh, blocks = (g->n + NR - 1) / NR;
  uint32_t *p = gb_scratch(GB_SCRATCH_BATCH_B, (size_t)(blocks * kh * NR) * sizeof *p);
  uint16_t *abf = gb_scratch(GB_SCRATCH_BATCH_A, (size_t)(BROWS * kp) * sizeof *abf);
  if (!p || !abf) {
    g->failed = 1;
    gb_scratch_done(GB_SCRATCH_BATCH_B, p);
    gb_scratch_done(GB_SCRATCH_BATCH_A, abf);
    return;
  }
  int64_t packed = -1;
  for (int64_t t = begin; t < end; t++) {
    int64_t bt = t / g->row_blocks, i0 = (t % g->row_blocks) * BROWS;
    int64_t mc = g->m - i0 < BROWS ? g->m - i0 : BROWS;
    /* Batch entries that share one B (stride 0) pack it once. */
    int64_t src = g->b_stride == 0 ? 0 : bt;
    if (src != packed) {
      pack_batch_b(g, src, p);
      packed = src;
    }
    const float *a = g->a + bt * g->a_stride + i0 * g->k;
    for (int64_t i = 0; i < mc; i++) {
      for (int64_t q = 0; q < g->k; q++) abf[i * kp + q] = (uint16_t)bf16_bits(a[i * g->k + q]);
      if (kp > g->k) abf[i * kp + g->k] = 0;
    }
    float *c = g->out + bt * g->m * g->n + i0 * g->n;
    for (int64_t blk = 0; blk < blocks; blk++) {
      int64_t j0 = blk * NR;
      int nr = (int)(g->n - j0 < NR ? g->n - j0 : NR);
      const uint32_t *pb = p + blk * kh * NR;
      for (int64_t i = 0; i < mc; i += MR) {
        int mr = (int)(mc - i < MR ? mc - i : MR);
        if (mr == MR)
          micro_full(abf + i * kp, kp, pb, kh, c + i * g->n + j0, g->n, nr, g->acc);
        else
          micro_part(abf + i * kp, kp, mr, pb, kh, c + i * g->n + j0, g->n, nr, g->acc);
      }
    }
  }
  gb_scratch_done(GB_SCRATCH_BATCH_B, p);
  gb_scratch_done(GB_SCRATCH_BATCH_A, abf);
}

int gb_bf16_batched_gemm(const float *a, const float *b, const uint16_t *b16, float *out, int64_t batch, int64_t m,
                         int64_t k, int64_t n, int64_t a_stride, int64_t b_stride, int trans_b, int accumulate) {
  if (batch == 0 || m == 0 || n == 0) return 0;
  if (k == 0 || ((n + NR - 1) / NR) * ((k + 1) / 2) * NR * 4 > BPACK_MAX) return 1;
  gb_batched_job g = {a, b, out, m, k, n, a_stride, b_stride, trans_b, accumulate, (m + BROWS - 1) / BROWS, 0, b16};
  /* Every range packs the B of each batch entry it touches (as much work as a tile's products), so
   * ranges cover half a batch entry's rows at least. */
  int64_t grain = g.row_blocks / 2 > 1 ? g.row_blocks / 2 : 1;
  gb_parallel_for(batch * g.row_blocks, grain, batched_tiles, &g);
  return g.failed ? -1 : 0;
}

#else

int gb_bf16_gemm_nt(const float *a, const uint16_t *b, float *out, int64_t m, int64_t k, int64_t n, int accumulate) {
  (void)a, (void)b, (void)out, (void)m, (void)k, (void)n, (void)accumulate;
  return 1;
}

int gb_bf16_batched_gemm(const float *a, const float *b, const uint16_t *b16, float *out, int64_t batch, int64_t m,
                         int64_t k, int64_t n, int64_t a_stride, int64_t b_stride, int trans_b, int accumulate) {
  (void)a, (void)b, (void)b16, (void)out, (void)batch, (void)m, (void)k, (void)n, (void)a_stride, (void)b_stride;
  (void)trans_b, (void)accumulate;
  return 1;
}

#endif
