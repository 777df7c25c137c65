"""SAELens side of bench/dictionaries.bench.ts: JumpReLU SAE encode + decode throughput and memory.

Builds a sae-lens `JumpReLUSAE` (d_in, width; float32, cpu, apply_b_dec_to_input False as in Gemma
Scope 2) with the same random distributions as the glassbox side: W_enc, W_dec ~ U(-a, a) with
a = sqrt(3 / d_in), x ~ U(-sqrt 3, sqrt 3), zero biases, every threshold z with P(N(0,1) > z) =
l0 / width (so each token has about l0 active features). Times `sae.encode(x)` and
`sae.decode(acts)` (what `sae(x)` runs) under torch.no_grad after one warm-up, `--runs` times.

Usage: reference/.venv/bin/python reference/bench_dictionaries.py --d-in 640 --width 16384
       [--batch 1024] [--l0 64] [--threads 2] [--runs 3]
Prints one JSON object. Peak memory is ru_maxrss of this process (torch import included);
rss_base is the resident set before the weights are made, rss_weights after.
"""

import argparse
import json
import math
import resource
import statistics
import time


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def threshold_for(p: float) -> float:
    """z with P(N(0,1) > z) = p, by bisection on erfc."""
    lo, hi = -10.0, 10.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(mid / math.sqrt(2)) > p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--d-in", type=int, required=True)
    p.add_argument("--width", type=int, required=True)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--l0", type=float, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()

    import torch
    import sae_lens
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rss_base = rss_bytes()
    cfg = JumpReLUSAEConfig(d_in=args.d_in, d_sae=args.width, dtype="float32", device="cpu",
                            apply_b_dec_to_input=False)
    with torch.no_grad():
        sae = JumpReLUSAE(cfg)
        a = math.sqrt(3 / args.d_in)
        sae.W_enc.uniform_(-a, a)
        sae.W_dec.uniform_(-a, a)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
        sae.threshold.fill_(threshold_for(args.l0 / args.width))
        s3 = math.sqrt(3)
        x = torch.empty(args.batch, args.d_in).uniform_(-s3, s3)
        rss_weights = rss_bytes()
        acts = sae.decode(sae.encode(x))  # warm-up
        del acts
        enc, dec, l0s = [], [], []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            acts = sae.encode(x)
            t1 = time.perf_counter()
            recon = sae.decode(acts)
            t2 = time.perf_counter()
            enc.append(t1 - t0)
            dec.append(t2 - t1)
            l0s.append((acts > 0).sum().item() / args.batch)
            del acts, recon
    total = [e + d for e, d in zip(enc, dec)]
    print(json.dumps({
        "impl": f"sae-lens {sae_lens.__version__} (torch {torch.__version__}, {torch.get_num_threads()} threads)",
        "d_in": args.d_in, "width": args.width, "batch": args.batch,
        "seconds": statistics.median(total), "encode": statistics.median(enc), "decode": statistics.median(dec),
        "l0": statistics.mean(l0s),
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_base": rss_base, "rss_weights": rss_weights,
        "weight_bytes": 4 * (2 * args.d_in * args.width + 2 * args.width + args.d_in),
    }))


if __name__ == "__main__":
    main()
