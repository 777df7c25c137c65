"""numpy float32 matmul timings for bench/matmul.bench.ts (same protocol: one warm-up, then repeated
calls into a preallocated output for at least --min-seconds and --min-runs; median seconds).

Set OPENBLAS_NUM_THREADS / OMP_NUM_THREADS in the environment before starting this script: numpy's
OpenBLAS reads them when it loads. Usage: matmul_numpy.py M,K,N [M,K,N ...] [--min-runs 3]
[--min-seconds 1]. Prints one JSON object.
"""

import argparse
import json
import statistics
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("shapes", nargs="+")
    p.add_argument("--min-runs", type=int, default=3)
    p.add_argument("--min-seconds", type=float, default=1.0)
    p.add_argument("--max-runs", type=int, default=200)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    results = []
    for spec in args.shapes:
        m, k, n = (int(v) for v in spec.split(","))
        a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
        b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
        c = np.empty((m, n), dtype=np.float32)
        np.matmul(a, b, out=c)
        times = []
        start = time.perf_counter()
        while len(times) < args.max_runs and (
            len(times) < args.min_runs or time.perf_counter() - start < args.min_seconds
        ):
            t0 = time.perf_counter()
            np.matmul(a, b, out=c)
            times.append(time.perf_counter() - t0)
        results.append({"m": m, "k": k, "n": n, "median": statistics.median(times), "min": min(times),
                        "max": max(times), "runs": len(times)})
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas_desc = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # older numpy: no dict mode
        blas_desc = "unknown"
    print(json.dumps({"numpy": np.__version__, "blas": blas_desc, "results": results}))


if __name__ == "__main__":
    main()
