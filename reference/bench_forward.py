"""Forward / generation throughput of a Gemma 3 checkpoint in PyTorch + transformers (CPU).

The PyTorch side of bench/forward.ts, which runs it as a child process with the same checkpoint,
the same token ids and the same thread count, and reads one JSON object from stdout:

    reference/.venv/bin/python reference/bench_forward.py --model-dir DIR --dtype bf16 \
        --points 128x1,128x8,1024x1 --reps 3 --gen-prompt 16 --gen-new 32 --threads 2

Forward: model(ids) with the default attention implementation (sdpa), full logits (or with
`--logits last` only the last position's, `logits_to_keep=1`), under torch.inference_mode(); each
point runs once to warm up, then `reps` timed runs (all reported).
Generation: model.generate(greedy, exactly gen-new tokens, kv cache) from one prompt.
`--compute f32` loads a bf16 checkpoint as float32 (weights upcast), so every product and sum is f32:
the partner of glassbox's default mode on bf16 weights.
Peak RSS (VmHWM of /proc/self/status: unlike ru_maxrss it does not count the RSS the process had
before exec, i.e. the parent's at fork) after loading and at the end.
"""

import argparse
import json
import resource
import time

import torch
from transformers import AutoModelForCausalLM


def ids_for(batch: int, seq: int, vocab: int) -> torch.Tensor:
    # Same formula as bench/forward.ts.
    # <bos>, then ids >= 3 (no pad id, which generate() would mask as padding).
    return torch.tensor(
        [[2 if i == 0 else 3 + (i * 7919 + r * 104729) % (vocab - 3) for i in range(seq)] for r in range(batch)]
    )


def rss_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--dtype", choices=["f32", "bf16"], required=True)
    ap.add_argument("--points", default="128x1")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--min-seconds", type=float, default=1.0, help="repeat each point until this long was spent")
    ap.add_argument("--gen-prompt", type=int, default=16)
    ap.add_argument("--gen-new", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--logits", choices=["all", "last"], default="all")
    ap.add_argument("--compute", choices=["f32", "checkpoint"], default="checkpoint")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    dtype = torch.float32 if args.dtype == "f32" or args.compute == "f32" else torch.bfloat16
    keep = {"logits_to_keep": 1} if args.logits == "last" else {}
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=dtype)
    model.eval()
    load_s = time.perf_counter() - t0
    rss_loaded = rss_bytes()
    vocab = model.config.vocab_size

    forward = []
    with torch.inference_mode():
        for point in args.points.split(","):
            seq, batch = (int(x) for x in point.split("x"))
            ids = ids_for(batch, seq, vocab)
            model(ids, **keep)
            times = []
            while len(times) < args.reps or sum(times) < args.min_seconds:
                t = time.perf_counter()
                out = model(ids, **keep)
                times.append(time.perf_counter() - t)
            forward.append(
                {"seq": seq, "batch": batch, "seconds": times, "logit0": float(out.logits[0, 0, 0])}
            )
            del out

        gen = None
        if args.gen_new > 0:
            ids = ids_for(1, args.gen_prompt, vocab)
            kw = dict(max_new_tokens=args.gen_new, min_new_tokens=args.gen_new, do_sample=False, eos_token_id=None)
            model.generate(ids, **{**kw, "max_new_tokens": 2, "min_new_tokens": 2})
            times = []
            while len(times) < args.reps or sum(times) < args.min_seconds:
                t = time.perf_counter()
                out = model.generate(ids, **kw)
                times.append(time.perf_counter() - t)
            gen = {
                "prompt": args.gen_prompt,
                "new_tokens": args.gen_new,
                "seconds": times,
                "tokens": out[0, args.gen_prompt :].tolist(),
            }

    print(
        json.dumps(
            {
                "impl": "pytorch" + (", f32 compute" if args.compute == "f32" else ""),
                "torch": torch.__version__,
                "attention": model.config._attn_implementation,
                "threads": torch.get_num_threads(),
                "dtype": args.dtype,
                "load_seconds": load_s,
                "rss_loaded": rss_loaded,
                "rss_peak": rss_bytes(),
                "forward": forward,
                "generate": gen,
            }
        )
    )


if __name__ == "__main__":
    main()
