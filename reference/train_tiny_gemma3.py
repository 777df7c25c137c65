#!/usr/bin/env python3
"""Train models/tiny-gemma3: a few-million-parameter Gemma 3 text model (transformers'
Gemma3ForCausalLM, model_type gemma3_text) on glassbox's English corpus, within a wall-clock budget.

Every architectural feature of real Gemma 3 is present: 5 local (sliding-window) layers per global
layer, a sliding window shorter than the training context, grouped-query attention, q/k RMSNorm,
pre- and post-norms around attention and MLP, tied embeddings scaled by sqrt(hidden), a
query_pre_attn_scalar different from head_dim (as in Gemma 3 27B), RoPE base 1e4 on local and 1e6
on global layers, a q/o projection width (heads*head_dim) different from hidden (as in 270M/1B).

Data: each document becomes `text <eos>`; the stream is cut into rows of seq_len-1 tokens, each row
prefixed with <bos>; rows are visited in a seeded permutation (deterministic order).
Schedule: AdamW, linear warm-up, cosine decay to 10% driven by the fraction of the wall-clock
training budget used (evaluation time excluded), or by --steps when given (fully deterministic).

Usage:
  python reference/train_tiny_gemma3.py --corpus data/corpus --tokenizer models/tiny-gemma3 \
      --out models/tiny-gemma3 --minutes 40
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

# The machine is shared: with OpenMP's default spinning, a 2-thread step slowed ~50x when other jobs
# oversubscribed the cores (measured 50 s vs 6-10 s per step with PASSIVE). Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_common import (  # noqa: E402
    Log,
    count_params,
    eval_loss,
    lm_loss,
    lr_at,
    pack_chunks,
    param_groups,
    read_jsonl_texts,
    save_model,
    setup_torch,
    sha256_file,
    probe_autocast,
)

SAMPLE_PROMPTS = [
    "The",
    "It is a truth universally acknowledged, that",
    "In the beginning God created",
    "Call me Ishmael. Some years ago",
    "The jury said",
    "She looked at him and said,",
    "A hacker is",
]


def make_config(args, vocab_size: int):
    from transformers import Gemma3TextConfig

    n = args.layers
    layer_types = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(n)]
    return Gemma3TextConfig(
        vocab_size=vocab_size,
        hidden_size=args.hidden,
        intermediate_size=args.mlp,
        num_hidden_layers=n,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        head_dim=args.head_dim,
        query_pre_attn_scalar=args.query_pre_attn_scalar,
        sliding_window=args.window,
        layer_types=layer_types,
        sliding_window_pattern=6,
        max_position_embeddings=args.max_positions,
        rope_theta=1_000_000.0,
        rope_local_base_freq=10_000.0,
        rope_scaling=None,
        rms_norm_eps=1e-6,
        hidden_activation="gelu_pytorch_tanh",
        tie_word_embeddings=True,
        attention_bias=False,
        attention_dropout=0.0,
        attn_logit_softcapping=None,
        final_logit_softcapping=None,
        initializer_range=0.02,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        use_cache=True,
        attn_implementation="eager",
    )


@torch.no_grad()
def generate_samples(model_dir: str, prompts, max_new_tokens: int, seed: int):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16)
    model.eval()
    out = []
    for i, p in enumerate(prompts):
        ids = tok(p, return_tensors="pt")
        g = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
        greedy = tok.decode(g[0, ids["input_ids"].shape[1] :], skip_special_tokens=False)
        torch.manual_seed(seed + i)
        s = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=True, temperature=0.8, top_k=40)
        sampled = tok.decode(s[0, ids["input_ids"].shape[1] :], skip_special_tokens=False)
        out.append({"prompt": p, "greedy": greedy, "sampled": sampled})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="data/corpus")
    ap.add_argument("--tokenizer", required=True, help="dir with tokenizer.json/tokenizer_config.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=40.0, help="wall-clock training budget (excl. evals)")
    ap.add_argument("--steps", type=int, default=0, help="fixed step count instead of the time budget")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--autocast", choices=["auto", "bf16", "fp32"], default="auto")
    ap.add_argument("--eval-every-min", type=float, default=5.0)
    ap.add_argument("--val-rows", type=int, default=256, help="validation rows (x seq-len tokens)")
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--mlp", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=48)
    ap.add_argument("--query-pre-attn-scalar", type=int, default=64)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--max-positions", type=int, default=2048)
    ap.add_argument("--log", default=None, help="JSON-lines log file (default: scratch/train_tiny_gemma3.log)")
    ap.add_argument("--ckpt", default="scratch/train_tiny_gemma3.ckpt", help="resumable checkpoint (float32 + optimizer)")
    ap.add_argument("--resume", action="store_true", help="continue from --ckpt if it exists")
    args = ap.parse_args()

    t_start = time.time()
    setup_torch(args.threads, args.seed)
    log = Log(args.log or "scratch/train_tiny_gemma3.log")
    from tokenizers import Tokenizer
    from transformers import Gemma3ForCausalLM

    tok = Tokenizer.from_file(os.path.join(args.tokenizer, "tokenizer.json"))
    train_path = os.path.join(args.corpus, "train.jsonl")
    val_path = os.path.join(args.corpus, "validation.jsonl")
    train_rows = pack_chunks(tok, read_jsonl_texts(train_path), args.seq_len, 2, 1)
    val_rows_all = pack_chunks(tok, read_jsonl_texts(val_path), args.seq_len, 2, 1)
    vr = np.random.default_rng(12345).permutation(len(val_rows_all))[: args.val_rows]
    val_rows = val_rows_all[np.sort(vr)]
    log(
        event="data",
        train_rows=len(train_rows),
        train_tokens=int(train_rows.size),
        val_rows=len(val_rows),
        val_rows_available=len(val_rows_all),
        seconds=round(time.time() - t_start, 1),
    )

    config = make_config(args, tok.get_vocab_size())
    model = Gemma3ForCausalLM(config)
    model.train()
    params = count_params(model)
    log(event="model", **params)
    opt = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.95), eps=1e-8)

    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(train_rows))
    epoch, pos = 0, 0

    def next_batch():
        nonlocal order, epoch, pos
        if pos + args.batch > len(order):
            epoch += 1
            order = rng.permutation(len(train_rows))
            pos = 0
        idx = order[pos : pos + args.batch]
        pos += args.batch
        return torch.from_numpy(train_rows[idx].astype(np.int64))

    resumed = None
    if args.resume and os.path.exists(args.ckpt):
        resumed = torch.load(args.ckpt, weights_only=False)
        assert resumed["args"] == {k: v for k, v in vars(args).items() if k not in ("resume", "log")}, "args differ"
    if resumed is not None:
        use_bf16, probe_note = resumed["use_bf16"], resumed["probe_note"]
    elif args.autocast == "auto":
        probe = torch.from_numpy(train_rows[: args.batch].astype(np.int64))
        t32, t16 = probe_autocast(model, opt, probe)
        use_bf16 = t16 < 0.9 * t32
        log(event="autocast_probe", fp32_s_per_step=round(t32, 3), bf16_s_per_step=round(t16, 3), bf16=use_bf16)
        probe_note = f"{t32:.2f} s/step float32 vs {t16:.2f} s/step bf16, fastest of 3"
    else:
        use_bf16 = args.autocast == "bf16"
        probe_note = "forced by --autocast"
    torch.manual_seed(args.seed)

    budget = args.minutes * 60.0
    curve = []
    train_time = 0.0
    step = 0
    tokens = 0
    next_eval = args.eval_every_min * 60.0
    ema = None
    if resumed is None:
        v0 = eval_loss(model, val_rows, 32, use_bf16)
        curve.append({"step": 0, "tokens": 0, "train_s": 0.0, "val_loss": round(v0, 4)})
        log(event="eval", step=0, val_loss=round(v0, 4))
    else:
        model.load_state_dict(resumed["model"])
        opt.load_state_dict(resumed["opt"])
        rng.bit_generator.state = resumed["rng"]
        torch.set_rng_state(resumed["torch_rng"])
        order, pos, epoch = resumed["order"], resumed["pos"], resumed["epoch"]
        step, tokens, train_time = resumed["step"], resumed["tokens"], resumed["train_time"]
        curve, ema, next_eval = resumed["curve"], resumed["ema"], resumed["next_eval"]
        log(event="resumed", step=step, train_s=round(train_time, 1))
        resumed = None

    def save_ckpt():
        tmp = args.ckpt + ".tmp"
        os.makedirs(os.path.dirname(os.path.abspath(tmp)), exist_ok=True)
        torch.save(
            {
                "args": {k: v for k, v in vars(args).items() if k not in ("resume", "log")},
                "model": model.state_dict(), "opt": opt.state_dict(), "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(), "order": order, "pos": pos, "epoch": epoch, "step": step,
                "tokens": tokens, "train_time": train_time, "curve": curve, "ema": ema, "next_eval": next_eval,
                "use_bf16": use_bf16, "probe_note": probe_note,
            },
            tmp,
        )
        os.replace(tmp, args.ckpt)

    while True:
        progress = (step / args.steps) if args.steps else (train_time / budget)
        if (args.steps and step >= args.steps) or (not args.steps and train_time >= budget):
            break
        lr = lr_at(step, progress, args.lr, args.warmup, args.min_lr_frac)
        for g in opt.param_groups:
            g["lr"] = lr
        t0 = time.perf_counter()
        x = next_batch()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(input_ids=x, use_cache=False).logits
        loss = lm_loss(logits, x)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        train_time += time.perf_counter() - t0
        step += 1
        tokens += x[:, 1:].numel()
        lv = loss.item()
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        if step % 25 == 0:
            log(
                event="train",
                step=step,
                loss=round(lv, 4),
                ema=round(ema, 4),
                lr=round(lr, 6),
                gnorm=round(float(gnorm), 3),
                tokens=tokens,
                train_s=round(train_time, 1),
                tok_per_s=round(tokens / train_time),
                epoch=epoch,
            )
        if train_time >= next_eval:
            next_eval += args.eval_every_min * 60.0
            v = eval_loss(model, val_rows, 32, use_bf16)
            curve.append({"step": step, "tokens": tokens, "train_s": round(train_time, 1), "val_loss": round(v, 4)})
            log(event="eval", step=step, val_loss=round(v, 4), train_s=round(train_time, 1))
            save_ckpt()

    v_final = eval_loss(model, val_rows, 32, use_bf16)
    curve.append({"step": step, "tokens": tokens, "train_s": round(train_time, 1), "val_loss": round(v_final, 4)})
    log(event="eval", step=step, val_loss=round(v_final, 4), final=True)

    save_model(model, args.out, args.tokenizer, eos_token_id=1)

    # Reload the saved bf16 checkpoint with transformers and re-evaluate + generate.
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(args.out, dtype=torch.bfloat16)
    assert reloaded.config.model_type == "gemma3_text", reloaded.config.model_type
    v_bf16 = eval_loss(reloaded.float(), val_rows, 32, False)
    log(event="eval_saved_bf16", val_loss=round(v_bf16, 4))
    samples = generate_samples(args.out, SAMPLE_PROMPTS, 40, args.seed)
    for s in samples:
        log(event="sample", **s)

    summary = {
        "command": "python " + " ".join(sys.argv),
        "args": vars(args),
        "params": params,
        "corpus": {
            "train_sha256": sha256_file(train_path),
            "validation_sha256": sha256_file(val_path),
            "train_rows": len(train_rows),
            "train_tokens": int(train_rows.size),
            "val_rows": len(val_rows),
            "val_tokens": int(val_rows[:, 1:].size),
        },
        "autocast_bf16": use_bf16,
        "autocast_probe": probe_note,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "steps": step,
        "tokens_seen": tokens,
        "epochs": round(tokens / max(1, train_rows[:, 1:].size), 3),
        "train_seconds": round(train_time, 1),
        "wall_seconds": round(time.time() - t_start, 1),
        "val_loss_fp32_weights": round(v_final, 4),
        "val_loss_bf16_weights": round(v_bf16, 4),
        "val_ppl_bf16_weights": round(float(np.exp(v_bf16)), 2),
        "curve": curve,
        "samples": samples,
        "sampling": {"max_new_tokens": 40, "greedy": "do_sample=False", "sampled": "temperature=0.8, top_k=40, torch seed = seed+i"},
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    with open(os.path.join(args.out, "training_summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
        f.write("\n")
    log(event="done", **{k: summary[k] for k in ("steps", "tokens_seen", "train_seconds", "wall_seconds", "val_loss_bf16_weights")})


if __name__ == "__main__":
    main()
