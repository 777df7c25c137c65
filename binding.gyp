{
  # The glassbox native backend (native/*.c): Node-API addon linking OpenBLAS.
  # Built by scripts/build-native.mjs at install; -march=native because it is compiled on the
  # machine that runs it. `cblas_include` and `blas_lib` are overridable gyp variables
  # (node-gyp --cblas_include=DIR --blas_lib=NAME).
  "variables": {
    "cblas_include%": "/usr/include/x86_64-linux-gnu",
    "blas_lib%": "openblas"
  },
  "targets": [
    {
      "target_name": "glassbox_native",
      "sources": [
        "native/binding.c",
        "native/pool.c",
        "native/scratch.c",
        "native/elementwise.c",
        "native/reduce.c",
        "native/index_ops.c",
        "native/half.c",
        "native/matmul.c",
        "native/sparse.c",
        "native/training.c",
        "native/bf16gemm.c",
        "native/smallgemm.c",
        "native/widegemm.c"
      ],
      "include_dirs": ["<(cblas_include)"],
      "cflags": ["-std=gnu11", "-O3", "-march=native", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math", "-fno-strict-aliasing", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags!": ["-O2", "-O0"],
      "libraries": ["-l<(blas_lib)", "-lpthread", "-lm"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
