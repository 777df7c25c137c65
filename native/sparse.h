/* Sparse dictionary kernels and their Node-API registration (native/sparse.c). */
#ifndef GB_SPARSE_H
#define GB_SPARSE_H

#include <node_api.h>
#include <stdint.h>

void gb_sparse_matmul_run(const int32_t *offsets, const int32_t *indices, const float *values, const void *w,
                          int dtype, float *out, int64_t rows, int64_t n, int64_t w_row_stride, int accumulate);

/* Adds sparseMatmul, thresholdCount and thresholdSelect to the addon's exports. */
void gb_sparse_register(napi_env env, napi_value exports);

#endif
