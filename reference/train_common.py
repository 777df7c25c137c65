"""Shared helpers for glassbox's tiny Gemma 3 training scripts (reference/train_*.py)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time

import numpy as np
import torch
import torch.nn.functional as F

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def setup_torch(threads: int, seed: int):
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def read_jsonl_texts(path: str):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line)["text"])
    return out


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pack_chunks(tok, texts, seq_len: int, bos_id: int, eos_id: int) -> np.ndarray:
    """Documents -> one stream `text <eos> text <eos> ...` cut into rows of seq_len-1 tokens,
    each row prefixed with <bos> (every training row starts like an inference prompt).
    The ragged tail is dropped. Returns uint16 [rows, seq_len]."""
    stream = []
    batch = 2048
    for i in range(0, len(texts), batch):
        for enc in tok.encode_batch(texts[i : i + batch], add_special_tokens=False):
            stream.extend(enc.ids)
            stream.append(eos_id)
    arr = np.asarray(stream, dtype=np.uint16)
    body = seq_len - 1
    rows = len(arr) // body
    arr = arr[: rows * body].reshape(rows, body)
    bos = np.full((rows, 1), bos_id, dtype=np.uint16)
    return np.concatenate([bos, arr], axis=1)


def lm_loss(logits: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor | None = None):
    """Next-token cross-entropy in float32. loss_mask (same shape as input_ids) marks TARGET tokens
    that count; None counts every target."""
    v = logits.shape[-1]
    lg = logits[:, :-1].float().reshape(-1, v)
    tgt = input_ids[:, 1:].reshape(-1)
    if loss_mask is None:
        return F.cross_entropy(lg, tgt)
    m = loss_mask[:, 1:].reshape(-1).float()
    per = F.cross_entropy(lg, tgt, reduction="none")
    return (per * m).sum() / m.sum().clamp_min(1.0)


@torch.no_grad()
def eval_loss(model, rows: np.ndarray, batch: int, autocast: bool) -> float:
    """Mean next-token loss (nats/token) over all rows; every target token weighs the same."""
    model.eval()
    tot, n = 0.0, 0
    for i in range(0, len(rows), batch):
        x = torch.from_numpy(rows[i : i + batch].astype(np.int64))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(input_ids=x, use_cache=False).logits
        v = logits.shape[-1]
        loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, v), x[:, 1:].reshape(-1), reduction="sum")
        tot += loss.item()
        n += x[:, 1:].numel()
    model.train()
    return tot / n


def lr_at(step: int, progress: float, peak: float, warmup: int, floor_frac: float) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay from peak to floor_frac*peak as
    `progress` (0..1, fraction of the wall-clock or step budget) goes from 0 to 1."""
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min(max(progress, 0.0), 1.0)
    return peak * (floor_frac + (1 - floor_frac) * 0.5 * (1 + math.cos(math.pi * p)))


def param_groups(model, weight_decay: float):
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def probe_autocast(model, opt, x, rounds: int = 3) -> tuple[float, float]:
    """Fastest seconds per optimizer step without / with bf16 autocast, measured alternately
    (min over rounds: the machine is shared, the minimum is the least noisy estimate).
    Weights and optimizer state are restored afterwards."""
    import copy

    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    best = {False: float("inf"), True: float("inf")}
    for r in range(rounds + 1):
        for ac in (False, True):
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=ac):
                logits = model(input_ids=x, use_cache=False).logits
            lm_loss(logits, x).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if r > 0:
                best[ac] = min(best[ac], time.perf_counter() - t)
    model.load_state_dict(saved_model)
    opt.load_state_dict(saved_opt)
    return best[False], best[True]


def save_model(model, out_dir: str, tokenizer_dir: str, eos_token_id, extra_gen: dict | None = None):
    """save_pretrained in bf16 (model.safetensors + config.json) + generation_config.json + tokenizer."""
    from transformers import GenerationConfig

    os.makedirs(out_dir, exist_ok=True)
    m = model.to(torch.bfloat16)
    m.config.torch_dtype = torch.bfloat16
    m.config.use_cache = True
    gen = dict(bos_token_id=2, eos_token_id=eos_token_id, pad_token_id=0)
    gen.update(extra_gen or {})
    m.generation_config = GenerationConfig(**gen)
    m.save_pretrained(out_dir, safe_serialization=True)
    for f in TOKENIZER_FILES:
        src = os.path.join(tokenizer_dir, f)
        if os.path.abspath(src) != os.path.abspath(os.path.join(out_dir, f)):
            shutil.copyfile(src, os.path.join(out_dir, f))
    model.to(torch.float32)


def count_params(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    emb = model.model.embed_tokens.weight.numel()
    return {"total": total, "embedding": emb, "non_embedding": total - emb}


class Log:
    """Prints and appends JSON lines to a log file."""

    def __init__(self, path: str | None):
        self.path = path
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def __call__(self, **kv):
        print(json.dumps(kv), flush=True)
        if self.path:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(kv) + "\n")
