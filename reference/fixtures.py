"""Generates glassbox's parity fixtures from the Python reference (transformers, sae-lens, circuit-tracer).

Run from the repository root with the reference venv (see reference/README.md):

  reference/.venv/bin/python reference/fixtures.py tiny-model NAME
      builds test/fixtures/gemma3/NAME/ (config.json + model.safetensors, random weights, from the
      TINY_MODELS table below) and its fixture.safetensors.
  reference/.venv/bin/python reference/fixtures.py model --model-dir DIR --out FILE [...]
      captures every hook site of any Gemma 3 model directory (e.g. a trained models/tiny-gemma3).
  reference/.venv/bin/python reference/fixtures.py dictionaries
      builds the Gemma Scope 2 style dictionaries under test/fixtures/dictionaries/ and their fixtures,
      cross-checked against sae-lens and circuit-tracer.

reference/regen_fixtures.sh runs every command; each fixture records the exact command that made it
in its `generator` metadata. Hook-site names and shapes follow the project's contract, documented in
SITE_DOCS below. Everything is seeded and single-threaded: regenerating on the same machine gives
byte-identical files.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shlex
import shutil
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixture_io import fixture_metadata, tensor_listing, write_json, write_safetensors  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

import transformers  # noqa: E402
from transformers import (  # noqa: E402
    Gemma3Config,
    Gemma3ForCausalLM,
    Gemma3ForConditionalGeneration,
    Gemma3TextConfig,
)
from transformers.models.gemma3 import modeling_gemma3  # noqa: E402

transformers.logging.set_verbosity_error()

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "test" / "fixtures"
PYTHON = "reference/.venv/bin/python"
TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])


def generator_command() -> str:
    return " ".join([PYTHON, "reference/fixtures.py", *map(shlex.quote, sys.argv[1:])])


def rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


# --------------------------------------------------------------------------------------------------
# Tiny random Gemma 3 configurations (model variants are data).
# --------------------------------------------------------------------------------------------------

TINY_MODELS: dict[str, dict] = {
    # Gemma3ForCausalLM, one kv head (as 270m/1b), head_dim != hidden/heads, 7 layers so layer 5 is
    # global by the legacy `sliding_window_pattern` rule and layer 6 is local again. Old spelling:
    # config.json has `sliding_window_pattern` and `rope_scaling: null`, no `layer_types`.
    "text-mqa-f32-legacy": {
        "kind": "causal",
        "dtype": "float32",
        "seed": 1001,
        "spelling": "legacy",
        "text": {
            "vocab_size": 256,
            "hidden_size": 48,
            "intermediate_size": 96,
            "num_hidden_layers": 7,
            "num_attention_heads": 4,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "query_pre_attn_scalar": 16,
            "sliding_window": 8,
            "sliding_window_pattern": 6,
            "rope_theta": 1_000_000.0,
            "rope_local_base_freq": 10_000.0,
            "rope_scaling": None,
            "max_position_embeddings": 1024,
        },
        "lengths": [20, 13, 7],
        "greedy": {"prompts": 2, "prompt_len": 6, "new_tokens": 16},
    },
    # Gemma3ForCausalLM in bf16, grouped-query attention (4 heads / 2 kv), head_dim 24 != 64/4,
    # query_pre_attn_scalar 20 != head_dim (as 27b), linear RoPE scaling x8 on global layers, and an
    # explicit `layer_types` that the legacy every-6th rule would get wrong. Also written as a
    # hand-built two-shard checkpoint under sharded/.
    "text-gqa-bf16-scaled": {
        "kind": "causal",
        "dtype": "bfloat16",
        "seed": 1002,
        "spelling": "layer_types",
        "sharded": True,
        "text": {
            "vocab_size": 320,
            "hidden_size": 64,
            "intermediate_size": 160,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 24,
            "query_pre_attn_scalar": 20,
            "sliding_window": 6,
            "layer_types": ["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
            "rope_theta": 1_000_000.0,
            "rope_local_base_freq": 10_000.0,
            "rope_scaling": {"rope_type": "linear", "factor": 8.0},
            "max_position_embeddings": 1024,
        },
        "lengths": [20, 13, 7],
        "greedy": {"prompts": 2, "prompt_len": 5, "new_tokens": 16},
    },
    # Gemma3ForConditionalGeneration (as 4b+), saved by save_pretrained, which in transformers 4.57
    # writes the OLDER key layout `language_model.model.*`; a tiny SigLIP vision tower and projector
    # are included (a text runtime ignores them). Multi-head (kv heads == heads), non-default RoPE
    # bases and linear scaling x4 on the global layer.
    "mm-legacy-prefix-f32": {
        "kind": "multimodal",
        "dtype": "float32",
        "seed": 1003,
        "spelling": "legacy",
        "key_layout": "language_model.model.",
        "text": {
            "vocab_size": 288,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "query_pre_attn_scalar": 16,
            "sliding_window": 5,
            "sliding_window_pattern": 2,
            "rope_theta": 10_000.0,
            "rope_local_base_freq": 100.0,
            "rope_scaling": {"rope_type": "linear", "factor": 4.0},
            "max_position_embeddings": 1024,
        },
        "lengths": [20, 13, 7],
        "greedy": {"prompts": 2, "prompt_len": 6, "new_tokens": 12},
    },
    # Gemma3ForConditionalGeneration in bf16 with the NEWER key layout `model.language_model.*`
    # (renamed by hand from save_pretrained's output) and the NEWER config spelling
    # (`rope_parameters` per layer type + `layer_types`, as transformers 5 writes it). The pinned
    # transformers 4.57 does not read `rope_parameters`, so the generator translates it to the old
    # spelling before loading (recorded in the fixture's description).
    "mm-new-prefix-bf16": {
        "kind": "multimodal",
        "dtype": "bfloat16",
        "seed": 1004,
        "spelling": "rope_parameters",
        "key_layout": "model.language_model.",
        "text": {
            "vocab_size": 300,
            "hidden_size": 40,
            "intermediate_size": 72,
            "num_hidden_layers": 3,
            "num_attention_heads": 4,
            "num_key_value_heads": 1,
            "head_dim": 8,
            "query_pre_attn_scalar": 12,
            "sliding_window": 4,
            "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
            "rope_theta": 500_000.0,
            "rope_local_base_freq": 20_000.0,
            "rope_scaling": {"rope_type": "linear", "factor": 8.0},
            "max_position_embeddings": 1024,
        },
        "lengths": [20, 13, 7],
        "greedy": {"prompts": 2, "prompt_len": 5, "new_tokens": 12},
    },
}

TINY_VISION = {
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "image_size": 28,
    "patch_size": 14,
    "num_channels": 3,
    "vision_use_head": False,
}

SITE_DOCS = {
    "embed": "[b,s,d_model] embed_tokens[ids] * sqrt(d_model) (scale cast to the weight dtype)",
    "resid_pre": "[b,s,d_model] input of decoder layer i",
    "attn_in": "[b,s,d_model] input_layernorm output",
    "q": "[b,heads,s,head_dim] after q_proj, q_norm and RoPE",
    "k": "[b,kv_heads,s,head_dim] after k_proj, k_norm and RoPE (not repeated)",
    "v": "[b,kv_heads,s,head_dim] v_proj output (not repeated)",
    "pattern": "[b,heads,s,s] softmax probabilities (eager attention, mask applied)",
    "z": "[b,s,heads*head_dim] input of o_proj",
    "attn_out": "[b,s,d_model] post_attention_layernorm output",
    "resid_mid": "[b,s,d_model] resid_pre + attn_out",
    "mlp_in": "[b,s,d_model] pre_feedforward_layernorm output",
    "mlp_hidden": "[b,s,d_mlp] gelu_tanh(gate_proj(mlp_in)) * up_proj(mlp_in) (input of down_proj)",
    "mlp_out": "[b,s,d_model] post_feedforward_layernorm output",
    "resid_post": "[b,s,d_model] output of decoder layer i",
    "final_norm": "[b,s,d_model] model.norm output",
    "logits": "[b,s,vocab] final_norm @ embed_tokens^T (lm_head tied)",
}
LAYER_SITES = ["resid_pre", "attn_in", "q", "k", "v", "pattern", "z", "attn_out", "resid_mid", "mlp_in",
               "mlp_hidden", "mlp_out", "resid_post"]


# --------------------------------------------------------------------------------------------------
# Config spellings
# --------------------------------------------------------------------------------------------------

def rope_parameters_from_legacy(text: dict) -> dict:
    """transformers 5 spelling: one RoPE dict per layer type (see its configuration_gemma3.py)."""
    full = {"rope_type": "default", "rope_theta": float(text.get("rope_theta", 1_000_000.0))}
    if text.get("rope_scaling"):
        full.update(text["rope_scaling"])
        full["rope_theta"] = float(text.get("rope_theta", 1_000_000.0))
    sliding = {"rope_type": "default", "rope_theta": float(text.get("rope_local_base_freq", 10_000.0))}
    return {"full_attention": full, "sliding_attention": sliding}


def legacy_from_rope_parameters(text: dict) -> dict:
    """Translate a transformers-5 `rope_parameters` text config into the spelling 4.x reads."""
    out = dict(text)
    rp = out.pop("rope_parameters")
    full = dict(rp.get("full_attention", {"rope_type": "default"}))
    sliding = dict(rp.get("sliding_attention", {"rope_type": "default"}))
    if sliding.get("rope_type", "default") != "default":
        raise ValueError("transformers 4.x cannot express RoPE scaling on sliding layers")
    out["rope_theta"] = full.pop("rope_theta", 1_000_000.0)
    out["rope_local_base_freq"] = sliding.get("rope_theta", 10_000.0)
    out["rope_scaling"] = None if full.get("rope_type", "default") == "default" else full
    return out


def load_config(model_dir: Path) -> tuple[transformers.PretrainedConfig, dict]:
    """Reads config.json; returns the config transformers is given and a note on any translation."""
    raw = json.loads((model_dir / "config.json").read_text())
    note: dict = {"config_spelling_on_disk": {}}
    text_raw = raw.get("text_config", raw)
    note["config_spelling_on_disk"] = {
        "layer_types": "layer_types" in text_raw,
        "sliding_window_pattern": "sliding_window_pattern" in text_raw,
        "rope_parameters": "rope_parameters" in text_raw,
        "rope_scaling": "rope_scaling" in text_raw,
    }
    if "rope_parameters" in text_raw and TRANSFORMERS_MAJOR < 5:
        text_legacy = legacy_from_rope_parameters(text_raw)
        note["translated_for_transformers_4"] = {
            "from": {"rope_parameters": text_raw["rope_parameters"]},
            "to": {k: text_legacy[k] for k in ("rope_theta", "rope_local_base_freq", "rope_scaling")},
        }
        if "text_config" in raw:
            raw = {**raw, "text_config": text_legacy}
        else:
            raw = text_legacy
    if raw.get("model_type") == "gemma3":
        cfg = Gemma3Config(**{k: v for k, v in raw.items() if k != "architectures"})
    else:
        cfg = Gemma3TextConfig(**{k: v for k, v in raw.items() if k != "architectures"})
    return cfg, note


# --------------------------------------------------------------------------------------------------
# Building random tiny models
# --------------------------------------------------------------------------------------------------

def init_text_weights(text_model: torch.nn.Module, seed: int) -> None:
    """Seeded weights with non-trivial scales: norm weights away from 0 so (1 + w) is exercised,
    linear layers ~ N(0, 1/fan_in), embeddings ~ N(0, 0.3^2) (tied lm_head)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in text_model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(torch.rand(p.shape, generator=g) - 0.5)
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            elif p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[1]))
            else:
                raise AssertionError(f"unexpected parameter {name}")


def text_config_kwargs(spec: dict) -> dict:
    text = dict(spec["text"])
    kw = {k: v for k, v in text.items()}
    kw.update(pad_token_id=0, eos_token_id=1, bos_token_id=2, hidden_activation="gelu_pytorch_tanh",
              rms_norm_eps=1e-6, tie_word_embeddings=True, attention_bias=False)
    return kw


def build_tiny_model(name: str) -> Path:
    spec = TINY_MODELS[name]
    out = FIXTURES / "gemma3" / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    dtype = getattr(torch, spec["dtype"])
    torch.manual_seed(spec["seed"])
    text_kw = text_config_kwargs(spec)
    if spec["kind"] == "causal":
        cfg = Gemma3TextConfig(**text_kw)
        model = Gemma3ForCausalLM(cfg)
        text_model = model.model
    else:
        v = spec["text"]["vocab_size"]
        cfg = Gemma3Config(text_config=text_kw, vision_config=dict(TINY_VISION), mm_tokens_per_image=4,
                           boi_token_index=v - 3, eoi_token_index=v - 2, image_token_index=v - 1)
        model = Gemma3ForConditionalGeneration(cfg)
        text_model = model.model.language_model
    init_text_weights(text_model, spec["seed"])
    model = model.to(dtype).eval()
    model.save_pretrained(out, safe_serialization=True)
    for extra in ("generation_config.json",):
        (out / extra).unlink(missing_ok=True)

    # Config spelling on disk.
    raw = json.loads((out / "config.json").read_text())
    text_raw = raw["text_config"] if spec["kind"] == "multimodal" else raw
    if spec["spelling"] == "legacy":
        text_raw.pop("layer_types", None)
        text_raw.pop("_sliding_window_pattern", None)
        text_raw["sliding_window_pattern"] = spec["text"]["sliding_window_pattern"]
    elif spec["spelling"] == "layer_types":
        text_raw.pop("sliding_window_pattern", None)
    elif spec["spelling"] == "rope_parameters":
        text_raw.pop("sliding_window_pattern", None)
        rp = rope_parameters_from_legacy(text_raw)
        for k in ("rope_theta", "rope_local_base_freq", "rope_scaling"):
            text_raw.pop(k, None)
        text_raw["rope_parameters"] = rp
    write_json(out / "config.json", raw)

    # Key layout on disk.
    if spec.get("key_layout") == "model.language_model.":
        from safetensors.torch import load_file, save_file

        sd = load_file(str(out / "model.safetensors"))
        renamed = {}
        for k, t in sd.items():
            for old, new in (("language_model.model.", "model.language_model."),
                             ("vision_tower.", "model.vision_tower."),
                             ("multi_modal_projector.", "model.multi_modal_projector.")):
                if k.startswith(old):
                    k = new + k[len(old):]
                    break
            renamed[k] = t
        save_file(renamed, str(out / "model.safetensors"), metadata={"format": "pt"})

    if spec.get("sharded"):
        build_sharded(out)
    return out


def build_sharded(model_dir: Path) -> None:
    """Hand-built two-shard copy of model.safetensors with model.safetensors.index.json."""
    from safetensors.torch import load_file, save_file

    sd = load_file(str(model_dir / "model.safetensors"))
    names = sorted(sd)
    half = len(names) // 2
    shards = [names[:half], names[half:]]
    out = model_dir / "sharded"
    out.mkdir()
    weight_map = {}
    total = 0
    for i, group in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file({k: sd[k] for k in group}, str(out / fname), metadata={"format": "pt"})
        for k in group:
            weight_map[k] = fname
            total += sd[k].numel() * sd[k].element_size()
    write_json(out / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})
    shutil.copy(model_dir / "config.json", out / "config.json")


# --------------------------------------------------------------------------------------------------
# Loading and capturing
# --------------------------------------------------------------------------------------------------

def load_model(model_dir: Path, dtype_arg: str) -> tuple[torch.nn.Module, dict]:
    cfg, note = load_config(model_dir)
    if dtype_arg == "auto":
        from safetensors import safe_open

        index = model_dir / "model.safetensors.index.json"
        if index.exists():
            weight_map = json.loads(index.read_text())["weight_map"]
            key = next(k for k in sorted(weight_map) if "embed_tokens" in k)
            path = model_dir / weight_map[key]
        else:
            path = model_dir / "model.safetensors"
        with safe_open(str(path), framework="pt") as f:
            key = next(k for k in f.keys() if "embed_tokens" in k)
            stored = f.get_slice(key).get_dtype()
        dtype = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}[stored]
    else:
        dtype = getattr(torch, dtype_arg)
    cls = Gemma3ForConditionalGeneration if isinstance(cfg, Gemma3Config) else Gemma3ForCausalLM
    model = cls.from_pretrained(model_dir, config=cfg, dtype=dtype, attn_implementation="eager").eval()
    note["class"] = cls.__name__
    note["compute_dtype"] = str(dtype).removeprefix("torch.")
    return model, note


def text_parts(model: torch.nn.Module):
    if isinstance(model, Gemma3ForConditionalGeneration):
        return model.model.language_model, model.config.text_config
    return model.model, model.config


def make_inputs(vocab: int, lengths: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    b, s = len(lengths), max(lengths)
    ids = torch.zeros(b, s, dtype=torch.int64)  # pad id 0, right padding
    mask = torch.zeros(b, s, dtype=torch.int64)
    for i, n in enumerate(lengths):
        ids[i, 0] = 2  # <bos>
        ids[i, 1:n] = torch.randint(3, vocab, (n - 1,), generator=g)
        mask[i, :n] = 1
    pos = torch.arange(s, dtype=torch.int64).unsqueeze(0).expand(b, s).contiguous()
    return ids, mask, pos


class Capture:
    """Forward hooks / pre-hooks on the text model plus a wrapper around the eager attention
    function transformers calls, recording every hook site in the computation dtype."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.text, self.cfg = text_parts(model)
        self.acts: dict[str, torch.Tensor] = {}
        self.internal: dict[str, torch.Tensor] = {}
        self.handles = []
        self._orig_attn = None

    def _put(self, key: str, t: torch.Tensor, store: dict | None = None) -> None:
        store = self.acts if store is None else store
        if key in store:
            raise AssertionError(f"hook site {key} captured twice")
        store[key] = t.detach().clone()

    def __enter__(self):
        text = self.text
        put = self._put

        def fwd(key, store=None):
            return lambda m, a, o: put(key, o[0] if isinstance(o, tuple) else o, store)

        def pre(key):
            return lambda m, a: put(key, a[0])

        h = self.handles
        h.append(text.embed_tokens.register_forward_hook(fwd("embed")))
        for i, layer in enumerate(text.layers):
            p = f"blocks.{i}."
            h.append(layer.register_forward_pre_hook(pre(p + "resid_pre")))
            h.append(layer.input_layernorm.register_forward_hook(fwd(p + "attn_in")))
            h.append(layer.self_attn.q_norm.register_forward_hook(fwd(p + "q_normed", self.internal)))
            h.append(layer.self_attn.k_norm.register_forward_hook(fwd(p + "k_normed", self.internal)))
            h.append(layer.self_attn.o_proj.register_forward_pre_hook(pre(p + "z")))
            h.append(layer.post_attention_layernorm.register_forward_hook(fwd(p + "attn_out")))
            h.append(layer.pre_feedforward_layernorm.register_forward_pre_hook(pre(p + "resid_mid")))
            h.append(layer.pre_feedforward_layernorm.register_forward_hook(fwd(p + "mlp_in")))
            h.append(layer.mlp.down_proj.register_forward_pre_hook(pre(p + "mlp_hidden")))
            h.append(layer.post_feedforward_layernorm.register_forward_hook(fwd(p + "mlp_out")))
            h.append(layer.register_forward_hook(fwd(p + "resid_post")))
        h.append(text.norm.register_forward_hook(fwd("final_norm")))

        self._orig_attn = modeling_gemma3.eager_attention_forward
        orig = self._orig_attn

        def wrapped(module, query, key, value, attention_mask, **kwargs):
            out, weights = orig(module, query, key, value, attention_mask, **kwargs)
            p = f"blocks.{module.layer_idx}."
            put(p + "q", query)
            put(p + "k", key)
            put(p + "v", value)
            put(p + "pattern", weights)
            put(p + "mask", attention_mask, self.internal)
            self.internal[p + "scaling"] = torch.tensor(kwargs["scaling"], dtype=torch.float64)
            return out, weights

        modeling_gemma3.eager_attention_forward = wrapped
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        modeling_gemma3.eager_attention_forward = self._orig_attn


def rope_reference(x: torch.Tensor, pos: torch.Tensor, base: float, linear_factor: float) -> torch.Tensor:
    """Independent RoPE (non-interleaved, rotate_half) in float64 for checking captured q/k."""
    d = x.shape[-1]
    inv = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float64) / d)) / linear_factor
    ang = pos.to(torch.float64)[:, :, None] * inv[None, None, :]  # [b,s,d/2]
    emb = torch.cat([ang, ang], dim=-1)[:, None]  # [b,1,s,d]
    x64 = x.to(torch.float64)
    rot = torch.cat([-x64[..., d // 2:], x64[..., : d // 2]], dim=-1)
    return x64 * emb.cos() + rot * emb.sin()


def assert_close(name: str, got: torch.Tensor, want: torch.Tensor, rtol: float, atol: float, checks: list) -> None:
    got64, want64 = got.to(torch.float64), want.to(torch.float64)
    err = (got64 - want64).abs().max().item() if got.numel() else 0.0
    scale = want64.abs().max().item() if want.numel() else 0.0
    if not torch.allclose(got64, want64, rtol=rtol, atol=atol):
        raise AssertionError(f"check failed: {name}: max abs err {err:.3g} (scale {scale:.3g})")
    checks.append(f"{name}: max abs err {err:.3g}")


def assert_equal(name: str, got: torch.Tensor, want: torch.Tensor, checks: list) -> None:
    if not torch.equal(got, want):
        err = (got.to(torch.float64) - want.to(torch.float64)).abs().max().item()
        raise AssertionError(f"check failed (exact): {name}: max abs err {err:.3g}")
    checks.append(f"{name}: exact")


def verify_capture(cap: Capture, ids, mask, pos, logits: torch.Tensor, cdtype: torch.dtype, checks: list) -> None:
    """Consistency checks between captured sites (the generator refuses to write a fixture otherwise)."""
    a, it, cfg = cap.acts, cap.internal, cap.cfg
    text = cap.text
    lm_weight = text.embed_tokens.weight
    bf = cdtype != torch.float32
    tol = dict(rtol=2e-2, atol=2e-2) if bf else dict(rtol=1e-5, atol=2e-5)
    n_layers = cfg.num_hidden_layers
    nh, nkv, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    b, s = ids.shape
    assert_equal("embed == embed_tokens[ids] * sqrt(d) (scale in weight dtype)", a["embed"],
                 F.embedding(ids, lm_weight) * torch.tensor(cfg.hidden_size ** 0.5).to(lm_weight.dtype), checks)
    assert_equal("blocks.0.resid_pre == embed", a["blocks.0.resid_pre"], a["embed"], checks)
    rope_scaling = cfg.rope_scaling or {}
    for i in range(n_layers):
        p = f"blocks.{i}."
        layer = text.layers[i]
        sliding = cfg.layer_types[i] == "sliding_attention"
        if i > 0:
            assert_equal(f"{p}resid_pre == blocks.{i-1}.resid_post", a[p + "resid_pre"], a[f"blocks.{i-1}.resid_post"], checks)
        assert_equal(f"{p}resid_mid == resid_pre + attn_out", a[p + "resid_mid"], a[p + "resid_pre"] + a[p + "attn_out"], checks)
        assert_equal(f"{p}resid_post == resid_mid + mlp_out", a[p + "resid_post"], a[p + "resid_mid"] + a[p + "mlp_out"], checks)
        # q/k: q_norm/k_norm output then RoPE, recomputed independently in float64.
        if sliding:
            base, factor = cfg.rope_local_base_freq, 1.0
        else:
            base = cfg.rope_theta
            factor = float(rope_scaling.get("factor", 1.0)) if rope_scaling.get("rope_type", rope_scaling.get("type")) == "linear" else 1.0
            if rope_scaling and rope_scaling.get("rope_type", rope_scaling.get("type")) not in ("linear", "default"):
                raise NotImplementedError(f"rope scaling {rope_scaling}")
        assert_close(f"{p}q == rope(q_norm(q_proj(attn_in))) base={base} linear={factor}", a[p + "q"],
                     rope_reference(it[p + "q_normed"], pos, base, factor), checks=checks, **tol)
        assert_close(f"{p}k == rope(k_norm(k_proj(attn_in)))", a[p + "k"],
                     rope_reference(it[p + "k_normed"], pos, base, factor), checks=checks, **tol)
        assert_equal(f"{p}v == v_proj(attn_in)", a[p + "v"],
                     layer.self_attn.v_proj(a[p + "attn_in"]).view(b, s, nkv, hd).transpose(1, 2), checks)
        # pattern: softmax(q k^T * query_pre_attn_scalar^-0.5 + mask) in float32.
        scaling = cfg.query_pre_attn_scalar ** -0.5
        if abs(it[p + "scaling"].item() - scaling) > 1e-12:
            raise AssertionError(f"{p}: attention scaling {it[p + 'scaling'].item()} != query_pre_attn_scalar^-0.5")
        krep = a[p + "k"].float().repeat_interleave(nh // nkv, dim=1)
        vrep = a[p + "v"].repeat_interleave(nh // nkv, dim=1)
        scores = a[p + "q"].float() @ krep.transpose(2, 3) * scaling
        qi = torch.arange(s)[:, None]
        ki = torch.arange(s)[None, :]
        allowed = (ki <= qi)
        if sliding:
            allowed = allowed & (ki > qi - cfg.sliding_window)
        allowed = allowed[None, None] & mask.bool()[:, None, None, :]
        valid_q = mask.bool()[:, None, :, None]
        want = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
        want = torch.where(valid_q, want, a[p + "pattern"].float())
        assert_close(f"{p}pattern == softmax(q k^T / sqrt(qpas) + {'sliding' if sliding else 'causal'} mask) at valid queries",
                     a[p + "pattern"].float(), want, checks=checks, **tol)
        if not bool((a[p + "pattern"].float() * (~allowed & valid_q)).eq(0).all()):
            raise AssertionError(f"{p}pattern puts weight on masked keys")
        checks.append(f"{p}pattern is exactly 0 on masked keys at valid queries")
        assert_equal(f"{p}z == (pattern @ repeat_kv(v)) reshaped", a[p + "z"],
                     (a[p + "pattern"] @ vrep).transpose(1, 2).reshape(b, s, nh * hd), checks)
        assert_equal(f"{p}attn_out == post_attention_layernorm(o_proj(z))", a[p + "attn_out"],
                     layer.post_attention_layernorm(layer.self_attn.o_proj(a[p + "z"])), checks)
        m = layer.mlp
        assert_equal(f"{p}mlp_hidden == gelu_tanh(gate(mlp_in)) * up(mlp_in)", a[p + "mlp_hidden"],
                     F.gelu(m.gate_proj(a[p + "mlp_in"]), approximate="tanh") * m.up_proj(a[p + "mlp_in"]), checks)
        assert_equal(f"{p}mlp_out == post_feedforward_layernorm(down_proj(mlp_hidden))", a[p + "mlp_out"],
                     layer.post_feedforward_layernorm(m.down_proj(a[p + "mlp_hidden"])), checks)
    assert_equal("final_norm == norm(blocks.last.resid_post)", a["final_norm"],
                 text.norm(a[f"blocks.{n_layers-1}.resid_post"]), checks)
    assert_equal("logits == linear(final_norm, embed_tokens.weight)", logits, F.linear(a["final_norm"], lm_weight), checks)
    assert_close("logits == final_norm @ embed^T (float64)", logits, a["final_norm"].double() @ lm_weight.double().T,
                 checks=checks, **tol)
    for k, t in a.items():
        if not torch.isfinite(t.float()).all():
            raise AssertionError(f"{k} has non-finite values")
    checks.append("all captured sites finite")


def greedy(model, vocab: int, n_prompts: int, prompt_len: int, new_tokens: int, seed: int, cdtype, checks: list):
    g = torch.Generator().manual_seed(seed + 7)
    prompts = torch.randint(3, vocab, (n_prompts, prompt_len), generator=g)
    prompts[:, 0] = 2
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    with torch.no_grad():
        out = model.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=False,
                             max_new_tokens=new_tokens, min_new_tokens=0, eos_token_id=None, pad_token_id=0,
                             top_k=None, top_p=None)
    if out.shape != (n_prompts, prompt_len + new_tokens):
        raise AssertionError(f"generation stopped early: {tuple(out.shape)}")
    if not torch.equal(out[:, :prompt_len], prompts):
        raise AssertionError("generate did not echo the prompt")
    # Uncached reference: argmax of a full forward at each step.
    seq = prompts.clone()
    with torch.no_grad():
        for _ in range(new_tokens):
            nxt = model(input_ids=seq, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
    matches = bool(torch.equal(seq, out))
    if cdtype == torch.float32 and not matches:
        raise AssertionError("cached greedy generation differs from uncached argmax in float32")
    checks.append(f"greedy (generate, kv cache) == uncached argmax loop: {matches}")
    return prompts, out, matches


def capture_model(model_dir: Path, out: Path, lengths: list[int], seed: int, dtype_arg: str,
                  n_prompts: int, prompt_len: int, new_tokens: int, extra_desc: dict | None = None) -> None:
    model, note = load_model(model_dir, dtype_arg)
    text, cfg = text_parts(model)
    cdtype = next(model.parameters()).dtype
    ids, mask, pos = make_inputs(cfg.vocab_size, lengths, seed)
    checks: list[str] = []
    with torch.no_grad(), Capture(model) as cap:
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits
    expected = {"embed", "final_norm"} | {f"blocks.{i}.{s}" for i in range(cfg.num_hidden_layers) for s in LAYER_SITES}
    if set(cap.acts) != expected:
        raise AssertionError(f"missing/extra sites: {sorted(set(cap.acts) ^ expected)}")
    with torch.no_grad():
        verify_capture(cap, ids, mask, pos, logits, cdtype, checks)
        # The same forward without hooks or wrappers gives the same logits.
        plain = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits
    assert_equal("logits unchanged without capture hooks", plain, logits, checks)
    prompts, gen, gen_matches = greedy(model, cfg.vocab_size, n_prompts, prompt_len, new_tokens, seed, cdtype, checks)

    tensors = {"input_ids": ids, "attention_mask": mask, "position_ids": pos, "logits": logits.float()}
    for k, t in cap.acts.items():
        tensors[f"act.{k}"] = t.float()
    tensors["act.logits"] = logits.float()
    tensors["greedy.input_ids"] = prompts
    tensors["greedy.output_ids"] = gen
    desc = {
        "kind": "gemma3-model-parity",
        "model_dir": rel(model_dir),
        "model_class": note["class"],
        "compute_dtype": note["compute_dtype"],
        "stored_dtype": "float32 (activations upcast from compute_dtype; integer inputs int64)",
        "attn_implementation": "eager",
        "text_config": {k: getattr(cfg, k) for k in (
            "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "head_dim", "query_pre_attn_scalar", "sliding_window", "layer_types",
            "rope_theta", "rope_local_base_freq", "rope_scaling", "rms_norm_eps", "hidden_activation")},
        "config_spelling_on_disk": note["config_spelling_on_disk"],
        "inputs": {"lengths": lengths, "seed": seed, "padding": "right, pad id 0; row 0 is <bos>=2",
                   "position_ids": "arange(seq) for every row"},
        "sites": SITE_DOCS,
        "valid_positions": "compare only where attention_mask == 1; values at padded query positions are "
                           "what transformers computed but carry no meaning",
        "capture": "forward hooks / pre-hooks on the text model; q, k, v, pattern by wrapping "
                   "transformers.models.gemma3.modeling_gemma3.eager_attention_forward",
        "greedy": {"prompts": n_prompts, "prompt_len": prompt_len, "new_tokens": new_tokens,
                   "eos_stop": "disabled (eos_token_id=None); exactly new_tokens generated",
                   "method": "model.generate(do_sample=False) with kv cache",
                   "matches_uncached_argmax": gen_matches},
        "checks": checks,
        "tensors": tensor_listing(tensors),
    }
    if "translated_for_transformers_4" in note:
        desc["config_translation"] = note["translated_for_transformers_4"]
    if extra_desc:
        desc.update(extra_desc)
    write_safetensors(out, tensors, fixture_metadata(generator_command(), desc))
    print(f"wrote {rel(out)}: {len(tensors)} tensors, {len(checks)} checks passed, compute {note['compute_dtype']}")


def check_model_dir_loads(model_dir: Path, reference_dir: Path, dtype_arg: str, lengths, seed) -> str:
    """Loads another directory holding the same weights (sharded / renamed) and compares logits."""
    m1, _ = load_model(reference_dir, dtype_arg)
    m2, _ = load_model(model_dir, dtype_arg)
    _, cfg = text_parts(m1)
    ids, mask, pos = make_inputs(cfg.vocab_size, lengths, seed)
    with torch.no_grad():
        l1 = m1(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits
        l2 = m2(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits
    if not torch.equal(l1, l2):
        raise AssertionError(f"{model_dir} does not reproduce {reference_dir}")
    return f"{rel(model_dir)} loads in transformers and gives logits identical to {rel(reference_dir)}"


def cmd_tiny_model(args) -> None:
    spec = TINY_MODELS[args.name]
    out = build_tiny_model(args.name)
    g = spec["greedy"]
    extra: dict = {"tiny_model_spec": spec, "weights": "random, seeded (see init_text_weights in reference/fixtures.py)"}
    if spec["kind"] == "multimodal":
        from safetensors import safe_open

        with safe_open(str(out / "model.safetensors"), framework="pt") as f:
            keys = sorted(f.keys())
        prefixes = sorted({k.split(".layers.")[0] for k in keys if ".layers." in k and "vision" not in k})
        extra["checkpoint_key_layout"] = {
            "text_prefix": spec["key_layout"],
            "observed_text_prefixes": prefixes,
            "vision_weights": "tiny random SigLIP tower (1 layer, hidden 16, 28x28 images, 14x14 patches) and "
                              "multi_modal_projector are included so the loader must skip them",
            "non_text_keys": [k for k in keys if "language_model" not in k],
        }
        if prefixes != [spec["key_layout"].rstrip(".")]:
            raise AssertionError(f"unexpected key layout {prefixes}")
    if spec.get("sharded"):
        extra["sharded_variant"] = check_model_dir_loads(out / "sharded", out, "auto", spec["lengths"], spec["seed"])
    capture_model(out, out / "fixture.safetensors", spec["lengths"], spec["seed"], "auto",
                  g["prompts"], g["prompt_len"], g["new_tokens"], extra)


def cmd_model(args) -> None:
    lengths = [int(x) for x in args.lengths.split(",")]
    capture_model(Path(args.model_dir), Path(args.out), lengths, args.seed, args.dtype,
                  args.greedy_prompts, args.greedy_prompt_len, args.greedy_new_tokens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tiny-model", help="build a random tiny Gemma 3 directory + its fixture")
    t.add_argument("name", choices=sorted(TINY_MODELS))
    t.set_defaults(fn=cmd_tiny_model)
    m = sub.add_parser("model", help="capture every hook site of an existing model directory")
    m.add_argument("--model-dir", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--lengths", default="24,17,9", help="comma-separated sequence lengths of the right-padded batch")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="computation dtype; auto = the dtype stored on disk")
    m.add_argument("--greedy-prompts", type=int, default=2)
    m.add_argument("--greedy-prompt-len", type=int, default=6)
    m.add_argument("--greedy-new-tokens", type=int, default=16)
    m.set_defaults(fn=cmd_model)
    d = sub.add_parser("dictionaries", help="Gemma Scope 2 style dictionaries + fixtures, cross-checked")
    d.set_defaults(fn=lambda a: __import__("dictionaries").cmd_dictionaries(a))
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
