"""numpy float32 matmul timings for bench/matmul.bench.ts.

Serve mode (used by the benchmark, so that native and numpy calls alternate one by one):
  matmul_numpy.py --serve   then, on stdin, one command per line:
    shape M K N   allocate A [M, K], B [K, N] (uniform [-1, 1), float32), C [M, N]; one warm-up call;
                  answers "ok <numpy version> <blas>"
    run [COUNT]   COUNT (default 1) back-to-back np.matmul(A, B, out=C); answers their seconds, space
                  separated
Standalone: matmul_numpy.py M,K,N [...] prints one JSON object with the median seconds per shape
(one warm-up, then at least --min-runs calls and --min-seconds).

Set OPENBLAS_NUM_THREADS / OMP_NUM_THREADS in the environment: numpy's OpenBLAS reads them at load.
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np


def blas_description() -> str:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')}-{blas.get('version')}"
    except Exception:  # older numpy: no dict mode
        return "unknown"


def make(m: int, k: int, n: int):
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    c = np.empty((m, n), dtype=np.float32)
    np.matmul(a, b, out=c)
    return a, b, c


def serve() -> None:
    a = b = c = None
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "shape":
            a, b, c = make(int(cmd[1]), int(cmd[2]), int(cmd[3]))
            print(f"ok {np.__version__} {blas_description()}", flush=True)
        elif cmd[0] == "run" and a is not None:
            times = []
            for _ in range(int(cmd[1]) if len(cmd) > 1 else 1):
                t0 = time.perf_counter()
                np.matmul(a, b, out=c)
                times.append(time.perf_counter() - t0)
            print(" ".join(str(t) for t in times), flush=True)
        else:
            print(f"error unknown command {line.strip()!r}", flush=True)


def standalone(args: argparse.Namespace) -> None:
    results = []
    for spec in args.shapes:
        m, k, n = (int(v) for v in spec.split(","))
        a, b, c = make(m, k, n)
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
    print(json.dumps({"numpy": np.__version__, "blas": blas_description(), "results": results}))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("shapes", nargs="*")
    p.add_argument("--serve", action="store_true")
    p.add_argument("--min-runs", type=int, default=3)
    p.add_argument("--min-seconds", type=float, default=1.0)
    p.add_argument("--max-runs", type=int, default=200)
    args = p.parse_args()
    if args.serve:
        serve()
    else:
        standalone(args)


if __name__ == "__main__":
    main()
