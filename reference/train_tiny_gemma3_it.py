#!/usr/bin/env python3
"""Fine-tune models/tiny-gemma3 into models/tiny-gemma3-it on the synthetic chat set of
reference/chat_data.py, then evaluate refusals on HELD-OUT prompts.

- Conversations are rendered with Gemma 3's real chat template through the tokenizer
  (`apply_chat_template`), tokenized without a second BOS; the loss covers only the model turns:
  the reply tokens and the closing <end_of_turn> (what the model must produce before stopping).
- Full fine-tune, AdamW, warm-up + cosine decay over a wall-clock budget (or --steps).
- Evaluation: greedy decoding (stop on <eos> or <end_of_turn>, at most 64 new tokens) of every
  held-out prompt (templates and subjects never seen in training) and of a smaller in-distribution
  set; a reply is a refusal when it matches chat_data.REFUSAL_RE. Reports the refusal rate on
  harmful and on harmless prompts, and the exact-match rate of harmless replies.
- Saves bf16 weights, config, generation_config (eos = [<eos>, <end_of_turn>]) and the tokenizer
  with eos_token "<end_of_turn>" as in Gemma 3's instruction-tuned tokenizer_config.json.

Usage:
  python reference/train_tiny_gemma3_it.py --base models/tiny-gemma3 --chat-data scratch/chat \
      --out models/tiny-gemma3-it --minutes 12
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see train_tiny_gemma3.py: the machine is shared

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chat_data import REFUSAL_RE, is_refusal  # noqa: E402
from train_common import Log, count_params, lm_loss, lr_at, param_groups, setup_torch, sha256_file  # noqa: E402

TURN_RE = re.compile(r"<start_of_turn>model\n(.*?<end_of_turn>)", re.DOTALL)


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def encode_conversation(tok, messages):
    """-> (ids, target mask): mask is 1 on tokens inside a model turn's reply + <end_of_turn>."""
    text = tok.apply_chat_template(messages, tokenize=False)
    spans = [(m.start(1), m.end(1)) for m in TURN_RE.finditer(text)]
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    mask = [0] * len(ids)
    for i, (s, e) in enumerate(enc["offset_mapping"]):
        for a, b in spans:
            if s >= a and e <= b and e > s:
                mask[i] = 1
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1, ids[:5]
    return ids, mask


@torch.no_grad()
def generate_replies(model, tok, prompts, batch: int = 32, max_new_tokens: int = 64):
    """Greedy replies to single user messages, batched with left padding."""
    eot = tok.convert_tokens_to_ids("<end_of_turn>")
    outs = []
    tok.padding_side = "left"
    for i in range(0, len(prompts), batch):
        texts = [
            tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in prompts[i : i + batch]
        ]
        enc = tok(texts, add_special_tokens=False, return_tensors="pt", padding=True)
        g = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=[tok.eos_token_id, eot, 1],
            pad_token_id=tok.pad_token_id,
        )
        for row in g[:, enc["input_ids"].shape[1] :]:
            outs.append(tok.decode(row, skip_special_tokens=True).strip())
    return outs


def evaluate(model, tok, rows):
    prompts = [r["messages"][0]["content"] for r in rows]
    replies = generate_replies(model, tok, prompts)
    results = []
    for r, reply in zip(rows, replies):
        expected = r["messages"][1]["content"]
        results.append(
            {
                "prompt": r["messages"][0]["content"],
                "kind": r["kind"],
                "category": r["category"],
                "reply": reply,
                "refused": is_refusal(reply),
                "exact": reply == expected,
            }
        )

    def rate(kind, key):
        xs = [x[key] for x in results if x["kind"] == kind]
        return round(sum(xs) / max(1, len(xs)), 4), len(xs)

    cats = sorted({x["category"] for x in results if x["kind"] == "harmful"})
    return results, {
        "harmful_refusal_rate": rate("harmful", "refused")[0],
        "harmless_refusal_rate": rate("harmless", "refused")[0],
        "harmless_exact_match": rate("harmless", "exact")[0],
        "n_harmful": rate("harmful", "refused")[1],
        "n_harmless": rate("harmless", "refused")[1],
        "harmful_refusal_by_category": {
            c: round(np.mean([x["refused"] for x in results if x["category"] == c]), 4) for c in cats
        },
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="base model dir (tiny-gemma3)")
    ap.add_argument("--chat-data", required=True, help="dir with train.jsonl, heldout.jsonl, indist.jsonl")
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--autocast", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--log", default=None)
    args = ap.parse_args()

    t_start = time.time()
    setup_torch(args.threads, args.seed)
    log = Log(args.log or "scratch/train_tiny_gemma3_it.log")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.base)
    train = read_jsonl(os.path.join(args.chat_data, "train.jsonl"))
    extra_path = os.path.join(args.chat_data, "train_extra.jsonl")
    if os.path.exists(extra_path):
        train += read_jsonl(extra_path)
    heldout = read_jsonl(os.path.join(args.chat_data, "heldout.jsonl"))
    indist = read_jsonl(os.path.join(args.chat_data, "indist.jsonl"))
    encoded = [encode_conversation(tok, ex["messages"]) for ex in train]
    lengths = [len(i) for i, _ in encoded]
    n_target = sum(sum(m) for _, m in encoded)
    log(event="data", conversations=len(encoded), tokens=sum(lengths), target_tokens=n_target,
        max_len=max(lengths), mean_len=round(float(np.mean(lengths)), 1))

    model = AutoModelForCausalLM.from_pretrained(args.base, dtype=torch.float32, attn_implementation="eager")
    model.train()
    model.config.use_cache = False
    opt = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    use_bf16 = args.autocast == "bf16"

    rng = np.random.default_rng(args.seed)

    def epoch_batches():
        """Seeded shuffle, then length-bucketed batches (sorted within chunks of 50 batches, batch
        order shuffled) so that little compute goes to padding."""
        perm = rng.permutation(len(encoded))
        chunk = args.batch * 50
        batches = []
        for i in range(0, len(perm), chunk):
            part = sorted(perm[i : i + chunk].tolist(), key=lambda j: lengths[j])
            batches += [part[k : k + args.batch] for k in range(0, len(part), args.batch)]
        return [batches[k] for k in rng.permutation(len(batches))]

    batches, bpos, epoch = epoch_batches(), 0, 0

    def next_batch():
        nonlocal batches, bpos, epoch
        if bpos >= len(batches):
            batches, bpos = epoch_batches(), 0
            epoch += 1
        idx = batches[bpos]
        bpos += 1
        L = max(len(encoded[i][0]) for i in idx)
        x = np.zeros((len(idx), L), dtype=np.int64)  # right padding with <pad>=0; causal => no effect
        m = np.zeros((len(idx), L), dtype=np.int64)
        for r, i in enumerate(idx):
            ids, mask = encoded[i]
            x[r, : len(ids)] = ids
            m[r, : len(ids)] = mask
        return torch.from_numpy(x), torch.from_numpy(m)

    budget = args.minutes * 60.0
    train_time, step, tokens, ema = 0.0, 0, 0, None
    while True:
        progress = (step / args.steps) if args.steps else (train_time / budget)
        if (args.steps and step >= args.steps) or (not args.steps and train_time >= budget):
            break
        lr = lr_at(step, progress, args.lr, args.warmup, args.min_lr_frac)
        for g in opt.param_groups:
            g["lr"] = lr
        t0 = time.perf_counter()
        x, m = next_batch()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(input_ids=x, use_cache=False).logits
        loss = lm_loss(logits, x, m)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        train_time += time.perf_counter() - t0
        step += 1
        tokens += int(m[:, 1:].sum())
        lv = loss.item()
        ema = lv if ema is None else 0.95 * ema + 0.05 * lv
        if step % 25 == 0:
            log(event="train", step=step, loss=round(lv, 4), ema=round(ema, 4), lr=round(lr, 6),
                target_tokens=tokens, train_s=round(train_time, 1), epoch=epoch)

    # save (bf16), then evaluate the saved artifact
    from train_common import save_model

    save_model(model, args.out, args.base, eos_token_id=[1, tok.convert_tokens_to_ids("<end_of_turn>")])
    cfg_path = os.path.join(args.out, "tokenizer_config.json")
    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)
    cfg["eos_token"] = "<end_of_turn>"
    with open(cfg_path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=2)
        f.write("\n")
    stm_path = os.path.join(args.out, "special_tokens_map.json")
    with open(stm_path, encoding="utf-8") as f:
        stm = json.load(f)
    stm["eos_token"]["content"] = "<end_of_turn>"
    with open(stm_path, "w", encoding="utf-8") as f:
        json.dump(stm, f, ensure_ascii=False, indent=2)
        f.write("\n")

    tok_it = AutoTokenizer.from_pretrained(args.out)
    saved = AutoModelForCausalLM.from_pretrained(args.out, dtype=torch.bfloat16).float().eval()
    t_eval = time.time()
    held_results, held = evaluate(saved, tok_it, heldout)
    in_results, indist_m = evaluate(saved, tok_it, indist)
    log(event="eval_heldout", **held)
    log(event="eval_indist", **indist_m)
    eval_s = time.time() - t_eval

    os.makedirs(os.path.join(args.out, "eval"), exist_ok=True)
    with open(os.path.join(args.out, "eval", "heldout.jsonl"), "w", encoding="utf-8") as f:
        for r in held_results:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(os.path.join(args.out, "eval", "indist.jsonl"), "w", encoding="utf-8") as f:
        for r in in_results:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")

    examples = []
    for kind in ("harmful", "harmless"):
        xs = [r for r in held_results if r["kind"] == kind]
        for r in xs[:: max(1, len(xs) // 6)][:6]:
            examples.append({k: r[k] for k in ("kind", "category", "prompt", "reply", "refused")})

    summary = {
        "command": "python " + " ".join(sys.argv),
        "args": vars(args),
        "params": count_params(saved),
        "data": {
            "train_sha256": sha256_file(os.path.join(args.chat_data, "train.jsonl")),
            "train_extra_sha256": sha256_file(extra_path) if os.path.exists(extra_path) else None,
            "conversations": len(encoded),
            "harmful_conversations": sum(ex["kind"] == "harmful" for ex in train),
            "tokens": sum(lengths),
            "target_tokens": n_target,
        },
        "steps": step,
        "epochs": round(epoch + bpos / max(1, len(batches)), 2),
        "target_tokens_seen": tokens,
        "final_train_loss_ema": round(ema, 4) if ema is not None else None,
        "train_seconds": round(train_time, 1),
        "eval_seconds": round(eval_s, 1),
        "wall_seconds": round(time.time() - t_start, 1),
        "heldout": held,
        "indist": indist_m,
        "refusal_regex": REFUSAL_RE.pattern,
        "examples": examples,
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    with open(os.path.join(args.out, "training_summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
        f.write("\n")
    log(event="done", steps=step, train_seconds=round(train_time, 1), heldout=held)


if __name__ == "__main__":
    main()
