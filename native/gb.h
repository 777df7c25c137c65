/*
 * Shared declarations of the glassbox native kernels (see src/core/backend.ts for the contract each
 * kernel implements; src/backends/reference is the definition they are tested against).
 *
 * Build: -O3 -march=native (the addon is compiled at install on the machine that runs it), plus
 * -fopenmp-simd so `#pragma omp simd` loops vectorise without pulling in the OpenMP runtime, and
 * -fno-math-errno -fno-trapping-math (no errno / FP-exception semantics: lets sqrt and selects
 * vectorise; IEEE results, NaN and inf are unchanged, unlike -ffast-math). Inner loops are plain C
 * written to auto-vectorise (AVX-512 on Zen 4); the only intrinsics are the F16C conversions in
 * half.c, behind feature macros with a portable fallback, so the source builds on any x86-64 or ARM.
 *
 * Threading: our own small pthread pool (pool.c) runs the elementwise / row kernels; OpenBLAS's own
 * pthreads run sgemm. They never run at full width together: while a matmul is in flight (sync or
 * async) the pool runs kernels on the calling thread only, and matmuls are serialised by a mutex.
 */
#ifndef GB_H
#define GB_H

#include <stdint.h>
#include <stddef.h>

/* ---- thread pool (pool.c) ---- */
typedef void (*gb_range_fn)(void *ctx, int64_t begin, int64_t end);
/* Runs fn over [0, n) split into contiguous ranges of at least `grain` items across the pool; runs
 * inline when n is small, when the pool is busy (another thread is using it) or a matmul is in
 * flight. Returns after every range is done. */
void gb_parallel_for(int64_t n, int64_t grain, gb_range_fn fn, void *ctx);
/* The same for GEMM tiles: a finer split (16 ranges per thread instead of 4), each range still at
 * least `grain` items. */
void gb_parallel_tiles(int64_t n, int64_t grain, gb_range_fn fn, void *ctx);
int gb_pool_threads(void);
void gb_pool_set_threads(int n);
/* Marks a matmul (OpenBLAS using its own threads) as running; the pool goes single-threaded. */
void gb_blas_begin(void);
void gb_blas_end(void);

/* ---- per-thread scratch (scratch.c) ---- */
/* Slots: one per buffer a kernel holds at once, so nested users on one thread never share. */
enum gb_scratch_slot { GB_SCRATCH_A_BF16, GB_SCRATCH_PANEL, GB_SCRATCH_BATCH_B, GB_SCRATCH_BATCH_A, GB_SCRATCH_A_PACK, GB_SCRATCH_SLOTS };
/* A 64-byte-aligned buffer of at least `bytes` for the calling thread, kept for its next call to the
 * same slot; NULL when out of memory. Hand it back with gb_scratch_done (which frees it only when it
 * was too large to keep). */
void *gb_scratch(int slot, size_t bytes);
void gb_scratch_done(int slot, void *p);

/* ---- kernels ---- */
enum gb_half { GB_F32 = 0, GB_BF16 = 1, GB_F16 = 2 };

enum gb_unary {
  GB_NEG, GB_EXP, GB_LOG, GB_SQRT, GB_RSQRT, GB_ABS, GB_SIGN, GB_SQUARE, GB_RECIPROCAL, GB_TANH,
  GB_SIGMOID, GB_RELU, GB_GELU_TANH, GB_GELU_TANH_GRAD, GB_STEP, GB_UNARY_COUNT
};
enum gb_binary {
  GB_ADD, GB_SUB, GB_MUL, GB_DIV, GB_MAX, GB_MIN, GB_POW, GB_EQ, GB_NE, GB_LT, GB_LE, GB_GT, GB_GE,
  GB_BINARY_COUNT
};
enum gb_reduce { GB_SUM, GB_RMAX, GB_RMIN, GB_REDUCE_COUNT };

#define GB_MAX_DIMS 32

/* A strided N-d iteration space after dropping size-1 dims and merging contiguous ones. */
typedef struct {
  int ndim;
  int64_t shape[GB_MAX_DIMS];
  int64_t strides[4][GB_MAX_DIMS]; /* operand 0 is always the contiguous output */
} gb_layout;

/* Coalesces `nops` operands (strides[0] contiguous output); returns the element count. */
int64_t gb_layout_coalesce(gb_layout *l, int nops);

void gb_unary_run(int op, const float *x, float *out, int64_t n);
void gb_affine_run(const float *x, double s, double t, float *out, int64_t n);
void gb_binary_run(int op, const float *a, const float *b, float *out, const gb_layout *l);
void gb_where_run(const float *c, const float *a, const float *b, float *out, const gb_layout *l);
void gb_copy_run(const float *src, float *dst, const gb_layout *l);

void gb_reduce_run(int op, const float *x, float *out, int64_t outer, int64_t size, int64_t inner);
void gb_argreduce_run(int is_min, const float *x, int32_t *out, int64_t outer, int64_t size, int64_t inner);
void gb_softmax_run(const float *x, float *out, int64_t rows, int64_t cols, int log_softmax);
void gb_rmsnorm_run(const float *x, const float *w, float *out, int64_t rows, int64_t cols, double eps,
                    double w_offset, float *inv_rms);
void gb_rope_run(const float *x, const float *cos_t, const float *sin_t, float *out, int64_t rows, int64_t seq,
                 int64_t heads, int64_t dim, int inverse);
void gb_gather_run(const void *src, int dtype, const int32_t *idx, float *out, int64_t outer, int64_t size,
                   int64_t inner, int64_t src_size);
void gb_scatter_add_run(const float *src, const int32_t *idx, float *out, int64_t outer, int64_t size,
                        int64_t inner, int64_t out_size);
/* Returns -1 when heap memory could not be allocated. */
int gb_topk_run(const float *x, int64_t rows, int64_t cols, int64_t k, float *values, int32_t *indices);

void gb_half_to_float(const uint16_t *src, int dtype, float *out, int64_t n);
void gb_float_to_half(const float *src, int dtype, uint16_t *out, int64_t n);
/* Single-threaded widening of n elements (used inside other kernels). */
void gb_widen(const uint16_t *src, int dtype, float *out, int64_t n);

typedef struct {
  int64_t batch, m, k, n;
  int trans_a, trans_b;
  int64_t a_batch_stride, b_batch_stride;
  int b_dtype;
  int accumulate;
  int a_bf16; /* round A's elements to bf16 first (MatmulArgs.aBf16) */
  int b_bf16; /* round an f32 B's elements to bf16 first (MatmulArgs.bBf16) */
} gb_matmul_args;
/* Returns 0, or -1 when scratch memory for a 16-bit right operand could not be allocated. */
int gb_matmul_run(const float *a, const void *b, float *out, const gb_matmul_args *args);
/* out (+)= bf16(A) @ B^T, B bf16 [n, k], on AVX512-BF16 (bf16gemm.c). Returns 0, -1 when out of memory,
 * or 1 when unsupported here (no AVX512-BF16 build, odd or zero k): the caller falls back. */
int gb_bf16_gemm_nt(const float *a, const uint16_t *b, float *out, int64_t m, int64_t k, int64_t n, int accumulate);
/* out[t] (+)= bf16(A[t]) @ bf16(op(B[t])) for t < batch, f32 A and B both rounded to bf16 (nearest even)
 * and multiplied on AVX512-BF16, A plain row-major with batch stride a_stride, B [n, k] (trans_b) or
 * [k, n] with stride b_stride, on the kernel pool (bf16gemm.c; attention in bf16-inputs mode). With b16
 * non-NULL, B is that bf16 storage instead of b (a bf16 KV cache). Returns 0, -1 when out of memory, or
 * 1 when not built here or op(B) is too large to pack: the caller falls back. */
int gb_bf16_batched_gemm(const float *a, const float *b, const uint16_t *b16, float *out, int64_t batch, int64_t m,
                         int64_t k, int64_t n, int64_t a_stride, int64_t b_stride, int trans_b, int accumulate);
/* out[t] (+)= A[t] @ op(B[t]) for t < batch, f32, A plain row-major with batch stride a_stride, B [n, k]
 * (trans_b) or [k, n] with stride b_stride, on the kernel pool (smallgemm.c; for many small problems).
 * Returns 0, -1 when out of memory, or 1 when not built here (no AVX-512F): the caller falls back. */
int gb_small_gemm(const float *a, const float *b, float *out, int64_t batch, int64_t m, int64_t k, int64_t n,
                  int64_t a_stride, int64_t b_stride, int trans_b, int accumulate);
/* out (+)= A @ B^T for f32 A [m, k] and bf16 B [n, k], exact f32 products, B widened while packed
 * (widegemm.c). Returns 0, -1 when out of memory, or 1 when not built here (no AVX-512F). */
int gb_wide_gemm_nt(const float *a, const uint16_t *b, float *out, int64_t m, int64_t k, int64_t n, int accumulate);
const char *gb_blas_config(void);
int gb_blas_threads(void);
void gb_blas_set_threads(int n);

/* STREAM-style bandwidth probe: bytes moved per second (reads + writes, no write-allocate). */
void gb_stream(int64_t n, int reps, double *copy_gbs, double *triad_gbs);

#endif
