/*
 * out (+)= A @ B^T for f32 A and a bf16 B stored [n, k] (a linear layer with bf16 weights and f32
 * activations, glassbox's default for bf16 checkpoints), in exact f32 products.
 *
 * The panel path widens a block of B to f32 in a scratch buffer, then OpenBLAS packs it again for
 * sgemm. Here B is widened while it is packed, 32 columns at a time into [k][32] f32 panels (16 x 16
 * register transposes, as bf16gemm.c packs bf16 pairs), and the 8 x 32 FMA tile of tile.h runs over
 * each panel. Tiles of rows by column blocks are split across the kernel pool, with finer row
 * chunks when there are few column blocks. Products and sums are f32; only the summation order
 * differs from sgemm. Built only with AVX-512F; otherwise `gb_wide_gemm_nt` returns 1 and the caller
 * uses the panel path.
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
#define MC 128

/* Rows j0 .. j0+nr of B ([n, k] bf16) widened into p as [k][NR] f32, zero past nr. */
static void pack_wide(const uint16_t *b, int64_t k, int64_t j0, int64_t nr, float *p) {
  int64_t q0 = 0;
  if (nr == NR) {
    for (; q0 + 16 <= k; q0 += 16) {
      for (int h = 0; h < 2; h++) {
        __m512i r[16];
        for (int i = 0; i < 16; i++) {
          __m256i v = _mm256_loadu_si256((const __m256i *)(b + (j0 + h * 16 + i) * k + q0));
          r[i] = _mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16);
        }
        gb_transpose16(r);
        for (int t = 0; t < 16; t++) _mm512_storeu_si512(p + (q0 + t) * NR + h * 16, r[t]);
      }
    }
  }
  for (int64_t j = 0; j < NR; j++) {
    for (int64_t q = q0; q < k; q++) {
      uint32_t w = j < nr ? (uint32_t)b[(j0 + j) * k + q] << 16 : 0;
      memcpy(p + q * NR + j, &w, sizeof w);
    }
  }
}

typedef struct {
  gb_nt_job job;
  const float *a; /* [m, k] f32 */
} wide_job;

static void pack_panel(const uint16_t *b, int64_t k, int64_t j0, int64_t nr, void *p) { pack_wide(b, k, j0, nr, p); }

static void wide_rows(const gb_nt_job *job, const void *p, int64_t i, int mr, int64_t j0, int nr) {
  const wide_job *w = (const wide_job *)job;
  gb_f32_tile(w->a + i * job->k, job->k, mr, p, job->k, job->out + i * job->n + j0, job->n, nr, job->acc);
}

int gb_wide_gemm_nt(const float *a, const uint16_t *b, float *out, int64_t m, int64_t k, int64_t n, int accumulate) {
  if (m == 0 || n == 0) return 0;
  wide_job w = {{b, out, m, k, n, 0, 0, (size_t)(k * NR) * sizeof(float), pack_panel, wide_rows, accumulate, 0}, a};
  return gb_nt_run(&w.job, MC);
}

#else

int gb_wide_gemm_nt(const float *a, const uint16_t *b, float *out, int64_t m, int64_t k, int64_t n, int accumulate) {
  (void)a, (void)b, (void)out, (void)m, (void)k, (void)n, (void)accumulate;
  return 1;
}

#endif
