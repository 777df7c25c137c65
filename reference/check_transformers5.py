"""Optional cross-check: load the committed tiny Gemma 3 fixtures with transformers 5.x.

The pinned reference stack is transformers 4.57.3 (circuit-tracer 0.5.0 requires <= 4.57.3), which
does not read the newer `rope_parameters` config spelling; fixtures.py translates it. This script
confirms, in a separate environment with transformers 5, that every fixture directory (old and new
config spellings, old and new multimodal key prefixes, the sharded copy) loads and reproduces the
fixture's logits and greedy tokens. It is not part of regen_fixtures.sh.

  python3 -m venv /tmp/tf5 && /tmp/tf5/bin/pip install transformers==5.24.0
  echo "$PWD/reference/.venv/lib/python3.11/site-packages" > /tmp/tf5/lib/python3.11/site-packages/ref.pth  # torch
  /tmp/tf5/bin/python reference/check_transformers5.py
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers
from safetensors import safe_open
from transformers import AutoConfig, Gemma3ForCausalLM, Gemma3ForConditionalGeneration

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent
NAMES = ["text-mqa-f32-legacy", "text-gqa-bf16-scaled", "mm-legacy-prefix-f32", "mm-new-prefix-bf16"]


def main() -> None:
    assert int(transformers.__version__.split(".")[0]) >= 5, "run this with transformers 5.x"
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    for name in NAMES:
        base = ROOT / "test" / "fixtures" / "gemma3" / name
        with safe_open(str(base / "fixture.safetensors"), framework="pt") as f:
            fx = {k: f.get_tensor(k) for k in ("input_ids", "attention_mask", "position_ids", "logits",
                                                "greedy.input_ids", "greedy.output_ids")}
            desc = json.loads(f.metadata()["description"])
        dtype = getattr(torch, desc["compute_dtype"])
        dirs = [base] + ([base / "sharded"] if (base / "sharded").exists() else [])
        for d in dirs:
            cfg = AutoConfig.from_pretrained(d)
            cls = Gemma3ForConditionalGeneration if cfg.model_type == "gemma3" else Gemma3ForCausalLM
            model = cls.from_pretrained(d, dtype=dtype, attn_implementation="eager").eval()
            text_cfg = cfg.get_text_config()
            with torch.no_grad():
                logits = model(input_ids=fx["input_ids"], attention_mask=fx["attention_mask"],
                               position_ids=fx["position_ids"], use_cache=False).logits.float()
                valid = fx["attention_mask"].bool()
                err = (logits - fx["logits"])[valid].abs().max().item()
                model.generation_config.eos_token_id = None
                n_new = fx["greedy.output_ids"].shape[1] - fx["greedy.input_ids"].shape[1]
                out = model.generate(fx["greedy.input_ids"], attention_mask=torch.ones_like(fx["greedy.input_ids"]),
                                     do_sample=False, max_new_tokens=n_new, eos_token_id=None, pad_token_id=0)
            same_greedy = torch.equal(out, fx["greedy.output_ids"])
            print(f"{d.relative_to(ROOT)}: {cls.__name__} {desc['compute_dtype']}, layer_types={text_cfg.layer_types}, "
                  f"rope_parameters={json.dumps(text_cfg.rope_parameters, sort_keys=True)}; "
                  f"logits max abs err vs fixture (valid positions) {err:.3g}; greedy identical: {same_greedy}")


if __name__ == "__main__":
    main()
