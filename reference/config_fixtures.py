#!/usr/bin/env python3
"""Expected structure of the real Gemma 3 config fixtures (test/fixtures/configs/*.json), by transformers.

For each config.json, transformers parses it (filling its own class defaults for the keys the
published files leave out, e.g. the 4B text_config has no num_attention_heads), builds the text
model on the `meta` device (no weights allocated) and counts its parameters. The result, with the
parsed text-config fields a runtime needs, goes to test/fixtures/configs/expected.json.

Usage (from the repository root):
    reference/.venv/bin/python reference/config_fixtures.py
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, Gemma3ForCausalLM

DIR = Path("test/fixtures/configs")
FIELDS = [
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "query_pre_attn_scalar",
    "sliding_window",
    "max_position_embeddings",
    "rope_theta",
    "rope_local_base_freq",
    "rope_scaling",
    "layer_types",
    "rms_norm_eps",
]


def main() -> None:
    out = {
        "format": "glassbox-config-fixture",
        "format_version": 1,
        "generator": "reference/.venv/bin/python reference/config_fixtures.py",
        "transformers_version": transformers.__version__,
        "models": {},
    }
    for path in sorted(DIR.glob("gemma-3-*.json")):
        cfg = AutoConfig.from_pretrained(str(path))
        text = cfg.get_text_config()
        with torch.device("meta"):
            model = Gemma3ForCausalLM(text)
        n = sum(p.numel() for p in model.parameters())
        embed = model.model.embed_tokens.weight.numel()
        out["models"][path.stem] = {
            "architecture": cfg.architectures[0],
            "text_params": n,
            "embedding_params": embed,
            "text_config": {k: getattr(text, k) for k in FIELDS},
        }
        print(f"{path.stem}: {n:,} text parameters ({embed:,} in the embedding)")
    (DIR / "expected.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
