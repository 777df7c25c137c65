"""SAELens side of bench/training.bench.ts: training throughput (tokens/s) of one dictionary.

Builds a sae-lens training SAE on cpu, float32, with the same sizes and inputs as the glassbox side:
  jumprelu  -- JumpReLUTrainingSAE, Gemma Scope 2 "quadratic" L0 loss (target_l0 = --l0), bandwidth
               0.001, threshold initialised like the glassbox side (about --l0 active per token);
  batchtopk -- BatchTopKTrainingSAE (k = --l0, AuxK on, dense activations as SAELens defaults;
               --sparse uses its use_sparse_activations path).
Inputs: x ~ U(-sqrt 3, sqrt 3) / sqrt(d_in) (E||x||^2 = 1), --pool distinct batches cycled.
One step is exactly SAETrainer._train_step's work: training_forward_pass, backward,
clip_grad_norm_(1.0), Adam(0, 0.999) step, zero_grad, and the dead-latent bookkeeping.
Times --steps steps after --warmup steps and prints one JSON object.

Usage: reference/.venv/bin/python reference/bench_training.py --arch jumprelu
       [--d-in 640] [--width 16384] [--batch 4096] [--l0 64] [--threads 2] [--steps 5] [--warmup 2]
"""

import argparse
import json
import math
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--arch", choices=["jumprelu", "batchtopk"], required=True)
    p.add_argument("--d-in", type=int, default=640)
    p.add_argument("--width", type=int, default=16384)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--l0", type=float, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--pool", type=int, default=4)
    p.add_argument("--sparse", action="store_true")
    args = p.parse_args()

    import sae_lens
    import torch
    from sae_lens.saes.sae import TrainStepInput

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    d, m, b = args.d_in, args.width, args.batch
    common = dict(d_in=d, d_sae=m, dtype="float32", device="cpu", apply_b_dec_to_input=False)
    # Pre-activations of unit-norm encoder rows on these inputs are ~N(0, 1/d); this threshold
    # keeps about l0 of width latents active, as on the glassbox side.
    z = threshold_for(args.l0 / m)
    if args.arch == "jumprelu":
        from sae_lens import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig

        cfg = JumpReLUTrainingSAEConfig(
            **common,
            jumprelu_sparsity_loss_mode="quadratic",
            target_l0=args.l0,
            jumprelu_bandwidth=0.001,
            jumprelu_init_threshold=z / math.sqrt(d),
            l0_coefficient=0.1,
        )
        sae = JumpReLUTrainingSAE(cfg)
        with torch.no_grad():
            w = torch.randn(m, d)
            w /= w.norm(dim=1, keepdim=True)
            sae.W_dec.copy_(w)
            sae.W_enc.copy_(w.T)
        coefficients = {"l0": 0.1}
    else:
        from sae_lens import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig

        cfg = BatchTopKTrainingSAEConfig(**common, k=args.l0, use_sparse_activations=args.sparse)
        sae = BatchTopKTrainingSAE(cfg)
        coefficients = {}
    sae.train()
    optimizer = torch.optim.Adam(sae.parameters(), lr=7e-5, betas=(0.0, 0.999), eps=1e-8)
    g = torch.Generator().manual_seed(1)
    pool = [(torch.rand(b, d, generator=g) * 2 - 1) * math.sqrt(3) / math.sqrt(d) for _ in range(args.pool)]
    since_fired = torch.zeros(m)
    times = []
    l0 = float("nan")
    for step in range(args.warmup + args.steps):
        x = pool[step % len(pool)]
        t0 = time.perf_counter()
        out = sae.training_forward_pass(
            step_input=TrainStepInput(
                sae_in=x,
                coefficients=coefficients,
                dead_neuron_mask=since_fired > 1000,
                n_training_steps=step,
                is_logging_step=False,
            )
        )
        with torch.no_grad():
            acts = out.feature_acts
            if acts.is_sparse:
                acts = acts.to_dense()
            firing = acts.bool().float()
            did_fire = firing.sum(-2).bool()
            since_fired += 1
            since_fired[did_fire] = 0
            l0 = float(firing.sum(-1).mean())
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
    total = sum(times)
    print(
        json.dumps(
            {
                "side": "saelens",
                "version": sae_lens.__version__,
                "torch": torch.__version__,
                "arch": args.arch + ("-sparse" if args.sparse else ""),
                "threads": torch.get_num_threads(),
                "step_seconds": times,
                "tokens_per_second": b * len(times) / total,
                "l0": l0,
            }
        )
    )


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


if __name__ == "__main__":
    main()
