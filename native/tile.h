/*
 * Shared by the AVX-512 GEMM micro-kernels (bf16gemm.c, smallgemm.c): storing one row of a
 * 32-column output tile held in two registers, masked to the `nr` columns that exist, overwriting
 * or adding to what is there.
 */
#ifndef GB_TILE_H
#define GB_TILE_H

#if defined(__AVX512F__)
#include <immintrin.h>

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
#endif

#endif
