"""Gemma Scope 2 style dictionary fixtures (random weights) for the tiny model text-mqa-f32-legacy.

Writes, under test/fixtures/dictionaries/:
  gemma-scope-2-tiny/            the published Gemma Scope 2 layout (config.json + params.safetensors):
    resid_post/layer_2_width_128_l0_small/            JumpReLU SAE on model.layers.2.output
    transcoder/layer_5_width_128_l0_small/            transcoder, pre_feedforward_layernorm -> post_feedforward_layernorm
    transcoder/layer_5_width_128_l0_small_affine/     skip-transcoder (affine_skip_connection [d_in, d_out])
    clt/width_64_l0_small/                            CLT: config.json + params_layer_{i}.safetensors, i = 0..6
  gemma-scope-1-tiny/layer_2/width_128/average_l0_N/params.npz              same weights as the resid_post SAE
  gemma-scope-1-tiny-transcoders/layer_5/width_128/average_l0_N/params.npz  same weights as the transcoder
  saelens/resid_post_layer_2/ (cfg.json + sae_weights.safetensors)           same weights, written by SAELens
  expected/*.safetensors         glassbox fixtures: inputs x (real activations of the tiny model at the
                                 site), pre, acts, recon by the official formula
      pre = x @ w_enc + b_enc; acts = (pre > threshold) * relu(pre); recon = acts @ w_dec + b_dec (+ x @ A)
                                 cross-checked against sae-lens and circuit-tracer loading the files above.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from unittest import mock

import numpy as np
import torch

import fixtures as fx
from fixture_io import fixture_metadata, tensor_listing, write_json, write_npz, write_safetensors

MODEL = "text-mqa-f32-legacy"
OUT = fx.FIXTURES / "dictionaries"
GS2 = OUT / "gemma-scope-2-tiny"
GS2_REPO = "google/gemma-scope-2-tiny-pt"  # only a label: nothing is downloaded
MODEL_NAME = "glassbox/tiny-gemma3-text-mqa-f32-legacy"
SEED = 2024


def versions() -> dict[str, str]:
    import circuit_tracer  # noqa: F401
    import sae_lens
    from importlib.metadata import version

    return {"sae_lens_version": sae_lens.__version__, "circuit_tracer_version": version("circuit-tracer")}


# --------------------------------------------------------------------------------------------------
# Inputs: real activations of the tiny model
# --------------------------------------------------------------------------------------------------

def model_activations() -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    spec = fx.TINY_MODELS[MODEL]
    model_dir = fx.FIXTURES / "gemma3" / MODEL
    if not (model_dir / "model.safetensors").exists():
        raise SystemExit(f"{model_dir} missing: run `reference/fixtures.py tiny-model {MODEL}` first")
    model, _ = fx.load_model(model_dir, "float32")
    _, cfg = fx.text_parts(model)
    ids, mask, pos = fx.make_inputs(cfg.vocab_size, spec["lengths"], spec["seed"])
    with torch.no_grad(), fx.Capture(model) as cap:
        model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
    valid = mask.bool()
    bi, pi = valid.nonzero(as_tuple=True)
    acts = {k: v[valid] for k, v in cap.acts.items() if v.dim() == 3 and v.shape[:2] == ids.shape}
    return acts, bi, pi


# --------------------------------------------------------------------------------------------------
# Random JumpReLU weights with realistic firing rates
# --------------------------------------------------------------------------------------------------

def choose_thresholds(pre: torch.Tensor, g: torch.Generator, lo=0.03, hi=0.3, dead=0.05):
    """Per latent: a firing fraction in [lo, hi] (a few latents dead); the threshold sits in the
    middle of a gap between two observed pre-activations so that no input is near it. Latents whose
    threshold would be <= 0 get b_enc shifted up (same firing set) so every threshold is > 0."""
    n, d_sae = pre.shape
    thr = torch.empty(d_sae, dtype=torch.float64)
    shift = torch.zeros(d_sae, dtype=torch.float64)
    scale = pre.abs().max().item()
    min_gap = 2e-3 * scale
    fracs = lo + (hi - lo) * torch.rand(d_sae, generator=g, dtype=torch.float64)
    is_dead = torch.rand(d_sae, generator=g, dtype=torch.float64) < dead
    for j in range(d_sae):
        v = pre[:, j].sort(descending=True).values
        if is_dead[j]:
            thr[j] = v[0] + 0.25 * scale
            continue
        k0 = max(1, round(fracs[j].item() * n))
        order = sorted(range(1, n), key=lambda k: abs(k - k0))
        k = next(k for k in order if v[k - 1] - v[k] >= min_gap)
        thr[j] = (v[k - 1] + v[k]) / 2
        if thr[j] <= 0.05 * scale:
            shift[j] = 0.05 * scale - thr[j] + 0.1 * scale * torch.rand((), generator=g, dtype=torch.float64)
            thr[j] += shift[j]
    return thr, shift


def jumprelu_reference(x, w_enc, b_enc, threshold, w_dec, b_dec, affine_skip_connection=None):
    """The official Gemma Scope 2 forward, in float64."""
    x64 = x.double()
    pre = x64 @ w_enc.double() + b_enc.double()
    acts = (pre > threshold.double()) * torch.relu(pre)
    recon = acts @ w_dec.double() + b_dec.double()
    if affine_skip_connection is not None:
        recon = recon + x64 @ affine_skip_connection.double()
    return pre, acts, recon


def make_dictionary(x: torch.Tensor, target: torch.Tensor, d_sae: int, g: torch.Generator, affine: bool):
    n, d_in = x.shape
    d_out = target.shape[1]
    x64, t64 = x.double(), target.double()
    w_dec = torch.randn(d_sae, d_out, generator=g, dtype=torch.float64)
    w_dec = w_dec / w_dec.norm(dim=1, keepdim=True) * (t64 - t64.mean(0)).pow(2).mean().sqrt() * 0.5
    w_enc = torch.randn(d_in, d_sae, generator=g, dtype=torch.float64) / (math.sqrt(d_in) * x64.pow(2).mean().sqrt())
    b_enc = 0.1 * torch.randn(d_sae, generator=g, dtype=torch.float64)
    b_dec = t64.mean(0)
    pre = x64 @ w_enc + b_enc
    thr, shift = choose_thresholds(pre, g)
    b_enc = b_enc + shift
    params = {"w_enc": w_enc, "b_enc": b_enc, "w_dec": w_dec, "b_dec": b_dec, "threshold": thr}
    if affine:
        params["affine_skip_connection"] = 0.5 * torch.randn(d_in, d_out, generator=g, dtype=torch.float64) / math.sqrt(d_in)
    return {k: v.float() for k, v in params.items()}


def firing_stats(pre: torch.Tensor, acts: torch.Tensor, thr: torch.Tensor) -> dict:
    fired = acts > 0
    margin = (pre - thr.double()).abs().min().item()
    return {
        "mean_l0": round(fired.sum(-1).double().mean().item(), 3),
        "fraction_of_latents_firing_per_token": round(fired.double().mean().item(), 4),
        "dead_latents": int((~fired.reshape(-1, fired.shape[-1]).any(0)).sum().item()),
        "min_abs_pre_minus_threshold": margin,
    }


# --------------------------------------------------------------------------------------------------
# Library cross-checks
# --------------------------------------------------------------------------------------------------

def close(a: torch.Tensor, b: torch.Tensor, what: str, rtol=1e-5, atol=1e-5) -> str:
    a64, b64 = a.detach().double(), b.detach().double()
    if a64.shape != b64.shape:
        raise AssertionError(f"{what}: shape {tuple(a64.shape)} != {tuple(b64.shape)}")
    err = (a64 - b64).abs().max().item()
    if not torch.allclose(a64, b64, rtol=rtol, atol=atol * max(1.0, b64.abs().max().item())):
        raise AssertionError(f"{what}: max abs err {err:.3g}")
    return f"{what}: max abs err {err:.3g}"


def gs2_converter(root: Path):
    """A SAELens disk converter that runs SAELens' own Gemma Scope 2 loader
    (sae_lens.loading.pretrained_sae_loaders.gemma_3_sae_huggingface_loader) on local files.
    That loader has no local-file path in sae-lens 6.54.12: it calls hf_hub_download and
    get_safetensors_tensor_shapes (HTTP range requests); those two are substituted by local reads."""
    import sae_lens.loading.pretrained_sae_loaders as L
    from huggingface_hub.errors import EntryNotFoundError
    from safetensors import safe_open

    def fake_download(repo_id, filename, subfolder=None, **_):
        p = root / (subfolder or "") / filename
        if not p.exists():
            raise EntryNotFoundError(f"404: {p} (local stand-in for the hub)")
        return str(p)

    def fake_shapes(repo_id, filename):
        with safe_open(str(root / filename), framework="pt") as f:
            return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}

    def convert(path, device, cfg_overrides=None):
        folder = str(Path(path).relative_to(root))
        with mock.patch.object(L, "hf_hub_download", fake_download), \
                mock.patch.object(L, "get_safetensors_tensor_shapes", fake_shapes):
            cfg, sd, _ = L.gemma_3_sae_huggingface_loader(GS2_REPO, folder, device=device, cfg_overrides=cfg_overrides)
        return cfg, sd

    return convert


def gs1_converter(npz_root: Path, d_in: int, d_sae: int):
    """SAELens' Gemma Scope 1 loader (gemma_2_sae_huggingface_loader) on a local params.npz. It also
    downloads via hf_hub_download and hard-codes Gemma 2 sizes from the repo id, so d_in/d_sae are
    passed as cfg_overrides (its documented override mechanism)."""
    import sae_lens.loading.pretrained_sae_loaders as L

    def fake_download(repo_id, filename, subfolder=None, **_):
        return str(npz_root / (subfolder or "") / filename)

    def convert(path, device, cfg_overrides=None):
        folder = str(Path(path).relative_to(npz_root))
        overrides = {"d_in": d_in, "d_sae": d_sae, "model_name": MODEL_NAME, **(cfg_overrides or {})}
        with mock.patch.object(L, "hf_hub_download", fake_download):
            cfg, sd, _ = L.gemma_2_sae_huggingface_loader("google/gemma-scope-2b-pt-res", folder, device=device,
                                                          cfg_overrides=overrides)
        return cfg, sd

    return convert


def check_saelens(sae, x, acts, recon, what: str) -> list[str]:
    with torch.no_grad():
        return [close(sae.encode(x), acts, f"{what} encode == acts"), close(sae(x), recon, f"{what} forward == recon")]


def check_circuit_tracer_single(tc, x, acts, recon, what: str) -> list[str]:
    with torch.no_grad():
        a = tc.encode(x)
        return [close(a, acts, f"{what} encode == acts"), close(tc.decode(a, x), recon, f"{what} decode(acts, x) == recon")]


# --------------------------------------------------------------------------------------------------
# Writers for the published layouts
# --------------------------------------------------------------------------------------------------

def write_gs2_folder(folder: Path, params: dict[str, torch.Tensor], config: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "config.json", config)
    write_safetensors(folder / "params.safetensors", params, None)


def write_gs1_npz(path: Path, params: dict[str, torch.Tensor]) -> None:
    arrays = {"W_enc": params["w_enc"], "W_dec": params["w_dec"], "b_enc": params["b_enc"],
              "b_dec": params["b_dec"], "threshold": params["threshold"]}
    write_npz(path, {k: v.numpy().astype(np.float32) for k, v in arrays.items()})


def gs2_config(width: int, l0: float, hook_in: str, hook_out: str, typ: str, affine: bool) -> dict:
    return {"width": width, "model_name": MODEL_NAME, "architecture": "jump_relu", "l0": int(round(l0)),
            "affine_connection": affine, "hf_hook_point_in": hook_in, "hf_hook_point_out": hook_out, "type": typ}


def write_fixture(name: str, tensors: dict[str, torch.Tensor], desc: dict, confirmed_by: list[str],
                  notes: dict[str, str]) -> None:
    desc = {**desc, "confirmed_by": confirmed_by, "library_notes": notes, "tensors": tensor_listing(tensors),
            "formula": "pre = x @ w_enc + b_enc; acts = (pre > threshold) * relu(pre); "
                       "recon = acts @ w_dec + b_dec (+ x @ affine_skip_connection), computed in float64, stored float32"}
    extra = {**versions(), "confirmed_by": json.dumps(confirmed_by)}
    path = OUT / "expected" / f"{name}.safetensors"
    write_safetensors(path, tensors, fixture_metadata(fx.generator_command(), desc, extra))
    print(f"wrote {fx.rel(path)}: confirmed by {len(confirmed_by)} library checks")


# --------------------------------------------------------------------------------------------------

def cmd_dictionaries(_args) -> None:
    import shutil

    from circuit_tracer.transcoder.cross_layer_transcoder import load_gemma_scope_2_clt
    from circuit_tracer.transcoder.single_layer_transcoder import (
        load_gemma_scope_2_transcoder,
        load_gemma_scope_transcoder,
    )
    from sae_lens import SAE

    if OUT.exists():
        for child in OUT.iterdir():
            if child.name != "npz":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    acts_by_site, bi, pi = model_activations()
    n_layers = fx.TINY_MODELS[MODEL]["text"]["num_hidden_layers"]
    g = torch.Generator().manual_seed(SEED)
    cpu = torch.device("cpu")
    common = {"model_dir": f"test/fixtures/gemma3/{MODEL}",
              "inputs": "x rows are the non-padding tokens of that model's fixture batch (same ids, lengths "
                        "and seed), in row-major (batch, position) order; batch_index/position say which"}
    index = {"batch_index": bi, "position": pi}

    # ---- resid_post SAE, layer 2 -------------------------------------------------------------
    L = 2
    x = acts_by_site[f"blocks.{L}.resid_post"]
    p = make_dictionary(x, x, 128, g, affine=False)
    pre, a, r = jumprelu_reference(x, **p)
    stats = firing_stats(pre, a, p["threshold"])
    folder_rel = f"resid_post/layer_{L}_width_128_l0_small"
    write_gs2_folder(GS2 / folder_rel, p, gs2_config(128, stats["mean_l0"], f"model.layers.{L}.output",
                                                     f"model.layers.{L}.output", "sae", False))
    gs1_rel = f"layer_{L}/width_128/average_l0_{int(round(stats['mean_l0']))}"
    write_gs1_npz(OUT / "gemma-scope-1-tiny" / gs1_rel / "params.npz", p)
    checks = []
    sae = SAE.load_from_disk(GS2 / folder_rel, converter=gs2_converter(GS2))
    checks.append(f"sae_lens {type(sae).__name__} via gemma_3_sae_huggingface_loader on {folder_rel}")
    checks += check_saelens(sae, x, a, r, "sae_lens gemma-scope-2")
    saelens_dir = OUT / "saelens" / f"resid_post_layer_{L}"
    sae.save_model(saelens_dir)
    sae2 = SAE.load_from_disk(saelens_dir)
    checks.append(f"sae_lens save_model wrote {fx.rel(saelens_dir)}; SAE.load_from_disk (sae_lens_disk_loader) reloads it")
    checks += check_saelens(sae2, x, a, r, "sae_lens saelens-format folder")
    sae1 = SAE.load_from_disk(OUT / "gemma-scope-1-tiny" / gs1_rel, converter=gs1_converter(OUT / "gemma-scope-1-tiny", 48, 128))
    checks.append("sae_lens via gemma_2_sae_huggingface_loader on gemma-scope-1-tiny params.npz")
    checks += check_saelens(sae1, x, a, r, "sae_lens gemma-scope-1 npz")
    tc = load_gemma_scope_2_transcoder(str(GS2 / folder_rel / "params.safetensors"), L, device=cpu, dtype=torch.float32)
    checks.append("circuit_tracer load_gemma_scope_2_transcoder (its SingleLayerTranscoder; same JumpReLU math as an SAE)")
    checks += check_circuit_tracer_single(tc, x, a, r, "circuit_tracer gemma-scope-2")
    write_fixture(f"resid_post_layer_{L}", {"x": x, "pre": pre.float(), "acts": a.float(), "recon": r.float(), **index}, {
        **common, "kind": "jumprelu-sae", "site": f"act.blocks.{L}.resid_post",
        "folders": {"gemma_scope_2": f"test/fixtures/dictionaries/gemma-scope-2-tiny/{folder_rel}",
                    "gemma_scope_1_npz": f"test/fixtures/dictionaries/gemma-scope-1-tiny/{gs1_rel}/params.npz",
                    "saelens": fx.rel(saelens_dir)},
        "stats": stats}, checks, {
        "sae_lens": "gemma_3_sae_huggingface_loader / gemma_2_sae_huggingface_loader have no local-file path "
                    "(hf_hub_download, and for Gemma Scope 2 also get_safetensors_tensor_shapes over HTTP); run here with "
                    "those two functions replaced by local reads. Gemma Scope 1 loader needs d_in/d_sae cfg_overrides "
                    "(it hard-codes Gemma 2 sizes).",
        "circuit_tracer": "has no SAE class; its Gemma Scope 2 transcoder loader reads the SAE file directly (local path OK)."})

    # ---- transcoders, layer 5 (plain and affine) -------------------------------------------------
    L = 5
    x = acts_by_site[f"blocks.{L}.mlp_in"]
    target = acts_by_site[f"blocks.{L}.mlp_out"]
    for affine in (False, True):
        p = make_dictionary(x, target, 128, g, affine=affine)
        pre, a, r = jumprelu_reference(x, **p)
        stats = firing_stats(pre, a, p["threshold"])
        folder_rel = f"transcoder/layer_{L}_width_128_l0_small" + ("_affine" if affine else "")
        write_gs2_folder(GS2 / folder_rel, p, gs2_config(
            128, stats["mean_l0"], f"model.layers.{L}.pre_feedforward_layernorm.output",
            f"model.layers.{L}.post_feedforward_layernorm.output", "transcoder", affine))
        checks = []
        sae = SAE.load_from_disk(GS2 / folder_rel, converter=gs2_converter(GS2))
        checks.append(f"sae_lens {type(sae).__name__} via gemma_3_sae_huggingface_loader on {folder_rel}")
        checks += check_saelens(sae, x, a, r, "sae_lens gemma-scope-2")
        tc = load_gemma_scope_2_transcoder(str(GS2 / folder_rel / "params.safetensors"), L, device=cpu, dtype=torch.float32)
        checks.append("circuit_tracer load_gemma_scope_2_transcoder")
        checks += check_circuit_tracer_single(tc, x, a, r, "circuit_tracer gemma-scope-2")
        notes = {}
        folders = {"gemma_scope_2": f"test/fixtures/dictionaries/gemma-scope-2-tiny/{folder_rel}"}
        if affine:
            A = p["affine_skip_connection"].double()
            wrong = (a @ p["w_dec"].double() + p["b_dec"].double() + x.double() @ A.T)
            gap = (wrong - r).abs().max().item()
            if gap < 1e-2:
                raise AssertionError("skip orientation not distinguishable")
            checks.append(f"skip orientation: x @ A^T (wrong) differs from recon by up to {gap:.3g}")
            notes["skip_orientation"] = ("both libraries compute x @ affine_skip_connection as stored: sae_lens stores "
                                         "W_skip = A^T and applies x @ W_skip.T; circuit_tracer stores W_skip = A^T and "
                                         "applies input_acts @ W_skip.T. Confirmed numerically above.")
        else:
            gs1_rel = f"layer_{L}/width_128/average_l0_{int(round(stats['mean_l0']))}"
            npz = OUT / "gemma-scope-1-tiny-transcoders" / gs1_rel / "params.npz"
            write_gs1_npz(npz, p)
            folders["gemma_scope_1_npz"] = fx.rel(npz)
            tc1 = load_gemma_scope_transcoder(str(npz), L, device=cpu, dtype=torch.float32)
            checks.append("circuit_tracer load_gemma_scope_transcoder on the Gemma Scope 1 style params.npz")
            checks += check_circuit_tracer_single(tc1, x, a, r, "circuit_tracer gemma-scope-1 npz")
        name = f"transcoder_layer_{L}" + ("_affine" if affine else "")
        write_fixture(name, {"x": x, "target": target, "pre": pre.float(), "acts": a.float(), "recon": r.float(), **index}, {
            **common, "kind": "jumprelu-skip-transcoder" if affine else "jumprelu-transcoder",
            "site": f"act.blocks.{L}.mlp_in -> act.blocks.{L}.mlp_out (target = the model's real mlp_out)",
            "folders": folders, "stats": stats}, checks, notes)

    # ---- CLT over all layers ------------------------------------------------------------------------
    d_sae = 64
    xs = torch.stack([acts_by_site[f"blocks.{i}.mlp_in"] for i in range(n_layers)])
    ts = torch.stack([acts_by_site[f"blocks.{i}.mlp_out"] for i in range(n_layers)])
    layer_params = []
    for i in range(n_layers):
        p = make_dictionary(xs[i], ts[i], d_sae, g, affine=False)
        # w_dec [d_sae, n_layers, d_out]: targets l >= i from the random decoder; targets l < i hold
        # random values that a correct CLT ignores (non-zero so that using them shows up).
        w_dec = torch.randn(d_sae, n_layers, p["w_dec"].shape[1], generator=g) * p["w_dec"].norm(dim=1).mean() / math.sqrt(
            p["w_dec"].shape[1])
        w_dec[:, i, :] = p["w_dec"]
        p["w_dec"] = w_dec.contiguous()
        layer_params.append(p)
    pres, acts_l = [], []
    for i, p in enumerate(layer_params):
        pre = xs[i].double() @ p["w_enc"].double() + p["b_enc"].double()
        pres.append(pre)
        acts_l.append((pre > p["threshold"].double()) * torch.relu(pre))
    recon = torch.stack([
        sum(acts_l[i] @ layer_params[i]["w_dec"][:, l, :].double() for i in range(l + 1)) + layer_params[l]["b_dec"].double()
        for l in range(n_layers)])
    pre_t, acts_t = torch.stack(pres), torch.stack(acts_l)
    stats = firing_stats(pre_t, acts_t, torch.stack([p["threshold"] for p in layer_params])[:, None, :])
    clt_rel = f"clt/width_{d_sae}_l0_small"
    (GS2 / clt_rel).mkdir(parents=True)
    write_json(GS2 / clt_rel / "config.json", gs2_config(
        d_sae, stats["mean_l0"], "model.layers.{all}.pre_feedforward_layernorm.output",
        "model.layers.{all}.post_feedforward_layernorm.output", "clt", False))
    paths = {}
    for i, p in enumerate(layer_params):
        paths[i] = str(GS2 / clt_rel / f"params_layer_{i}.safetensors")
        write_safetensors(Path(paths[i]), p, None)
    checks = []
    notes = {}
    try:
        load_gemma_scope_2_clt(paths, device=cpu, dtype=torch.float32)
        raise AssertionError("circuit_tracer load_gemma_scope_2_clt with 0-based keys unexpectedly worked: update the note")
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        failure = " ".join(line.strip() for line in first[:2]).rstrip(".")
    notes["circuit_tracer"] = (
        f"load_gemma_scope_2_clt(paths) iterates range(max(paths.keys())), so with 0-based keys 0..{n_layers-1} "
        f"(as resolve_transcoder_paths builds them) it stacks only {n_layers-1} of {n_layers} files and then fails: "
        f"{failure}. Cross-checked by passing one extra dummy key ({n_layers}) so that all {n_layers} files load.")
    clt = load_gemma_scope_2_clt({**paths, n_layers: paths[n_layers - 1]}, device=cpu, dtype=torch.float32)
    if clt.n_layers != n_layers:
        raise AssertionError("CLT workaround failed")
    with torch.no_grad():
        checks.append(f"circuit_tracer load_gemma_scope_2_clt with keys 0..{n_layers} (workaround): n_layers {clt.n_layers}")
        checks.append(close(clt.encode(xs), acts_t, "circuit_tracer CrossLayerTranscoder.encode == acts"))
        checks.append(close(clt(xs), recon, "circuit_tracer CrossLayerTranscoder.forward == recon"))
    conv = gs2_converter(GS2)
    for i in range(n_layers):
        sae = SAE.load_from_disk(GS2 / clt_rel / f"params_layer_{i}", converter=conv)
        with torch.no_grad():
            checks.append(close(sae.encode(xs[i]), acts_t[i], f"sae_lens {type(sae).__name__} encode(x_{i}) == acts_{i}"))
            summed = acts_t[i] @ layer_params[i]["w_dec"].double().sum(1) + layer_params[i]["b_dec"].double()
            checks.append(close(sae.decode(sae.encode(xs[i])), summed,
                                f"sae_lens decode(acts_{i}) == acts_{i} @ w_dec_{i}.sum(targets) + b_dec_{i} (not a CLT output)"))
    notes["sae_lens"] = ("gemma_3_sae_huggingface_loader loads one params_layer_i file as a single-layer transcoder with "
                         "W_dec = w_dec.sum(dim=1) (summed over ALL target layers, including the unused l < i), so its "
                         "decode is not a CLT reconstruction; only its encoder (acts) confirms this fixture.")
    write_fixture("clt", {"x": xs, "target": ts, "pre": pre_t.float(), "acts": acts_t.float(), "recon": recon.float(), **index}, {
        **common, "kind": "jumprelu-clt",
        "site": "x[l] = act.blocks.l.mlp_in, recon[l] approximates act.blocks.l.mlp_out (target), l = 0..n_layers-1",
        "shapes": "x/target [n_layers, n, d_model]; pre/acts [n_layers, n, d_sae]; recon [n_layers, n, d_model]",
        "clt_formula": "recon[l] = sum_{i<=l} acts[i] @ w_dec_i[:, l, :] + b_dec_l (b_dec_l from params_layer_l)",
        "unused_decoder_entries": "w_dec_i[:, l, :] for l < i are random non-zero values that must be ignored",
        "folders": {"gemma_scope_2": f"test/fixtures/dictionaries/gemma-scope-2-tiny/{clt_rel}"},
        "stats": stats}, checks, notes)
