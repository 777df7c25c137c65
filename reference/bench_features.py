"""SAEDashboard side of `bench/features.ts --anchor`: feature-dashboard data for N SAEs over a corpus.

Runs in its own venv, reference/.venv-dashboard (pins in requirements-dashboard.txt: sae-dashboard
0.8.0 with the sae-lens / transformer-lens / torch / transformers it resolves to). Invoked by the
benchmark as

    OMP_NUM_THREADS=2 reference/.venv-dashboard/bin/python reference/bench_features.py \
        --model models/tiny-gemma3 --data data/corpus/train.jsonl --tokens 65536 --context 128 \
        --batch 8 --dict models/tiny-gemma3/gemma-scope/resid_post/layer_0_width_1k_l0_big --dict ...

and prints, as the last line of stdout, one JSON object {"impl": "sae-dashboard", "tokens",
"seconds", "tokens_per_second", "read_seconds", "peak_rss_bytes", ...}; everything else goes to stderr.

Model. transformer-lens has no generic Gemma 3 config converter: its Gemma 3 configs are hard-coded
per official Hub name (google/gemma-3-270m, ...), so `HookedTransformer.from_pretrained*` cannot
describe the tiny model. The route here: the HF checkpoint is loaded with transformers
(Gemma3ForCausalLM, float32), a `HookedTransformerConfig` is written from its config.json with the
same fields transformer-lens uses for its own Gemma 3 entries (RMS pre+post norms, qk-norm, local /
global attention with two RoPE bases, gated gelu_tanh MLP), plus `attn_scale =
sqrt(query_pre_attn_scalar)` (the tiny model's 64 != head_dim 48, which the hard-coded entries never
need), and the weights go through transformer-lens' own `convert_gemma_weights` into a sae-lens
`HookedSAETransformer` (a HookedTransformer subclass, the model type SAEDashboard's runner takes),
processed as `from_pretrained_no_processing` would (no folding or centring). Before timing, one
sequence checks every blocks.{L}.hook_resid_post against the HF model's hidden states.

Dictionaries. One sae-lens `JumpReLUSAE` per --dict (Gemma Scope 2 layout: params.safetensors +
config.json), built by sae-lens' own `gemma_3_sae_huggingface_loader` through `SAE.load_from_disk`
with its two Hub calls (hf_hub_download, get_safetensors_tensor_shapes) replaced by local reads,
as reference/dictionaries.py does; float32, hook blocks.{L}.hook_resid_post.

Tokens: the same sequences glassbox's `features build` reads (src/activations/sequences.ts): each
JSONL document's "text" is tokenized with BOS in front; a document longer than --context is split
(its first `context` tokens, then BOS + the next `context - 1`, ...); documents are never packed.
Counted tokens are those glassbox counts (not position 0, never BOS or pad); the sequence that
crosses --tokens is cut there, so exactly --tokens tokens are counted. SAEDashboard takes one
[n_seq, context] tensor, so short rows are right-padded with the pad id (causal attention: the
padding never changes a real token's activations) and `ignore_tokens = {bos, pad}`, which is
glassbox's masking as far as SAEDashboard applies it: it zeroes those positions for the activation
histograms, density and example sequences, but its quantile statistics (FeatureStatistics) and
correlation tables take every position. The corpus documents are long, so nearly every row is full
(2048 tokens: 17 rows x 128, 4096: 33 rows).

Data generation: `SaeVisRunner(SaeVisConfig(...)).run(sae, model, tokens)`, SAEDashboard's whole
feature-centric data path, for every feature of every SAE: forward passes (stopped after the hooked
layer) in minibatches of --batch sequences, encoding, rolling correlation tables (neurons / other
features), activation quantile statistics, activation and logit histograms, the logit table
(W_dec @ W_U, i.e. logit effects) and the sequence groups. Settings as close to glassbox's
defaults as the layout allows: top 20 activating contexts, 10 activation intervals from 0 to the
max with 5 examples each, a window of 10 tokens before and 5 after the example token, 10 rows in
the logit table. `minibatch_size_features` (features per forward sweep) is --feature-batch,
default all features of the SAE, so the model runs once over the tokens per SAE (SAEDashboard's
own default, 256, would run it width / 256 times); pass --feature-batch 256 for the library default.
One deviation from the stock library, on by default (--stock-ticks turns it off): SAEDashboard's
"5 ticks" rule for histogram axis ticks degenerates to a 1e-6 step when all values lie within
(-0.3, 0.3), which the tiny model's logit effects do for ~95 % of features; it then builds lists of
hundreds of thousands of ticks per logit histogram (~85 s per SAE and ~5 GB of extra peak RSS here,
independent of the number of tokens). `bound_histogram_ticks` replaces only the tick list (every
histogram bar is still computed by the library); see that function.
With all features in one sweep (the default) a 16384-token run of one SAE took 36 s, with
--feature-batch 256 162 s (2 loaded CPU cores).
SAEDashboard's window (its `buffer`) also keeps example tokens at least 11 positions from a row's
start and 5 from its end; glassbox has no such exclusion. The returned SaeVisData is kept in memory
only (not written as JSON or HTML) and dropped before the next SAE; glassbox's time includes
writing its SQLite database, so this favours SAEDashboard slightly.

Like-for-like: SAEDashboard handles one SAE (one hook point) per run and re-runs the model for each,
while glassbox encodes all dictionaries in one pass; so the 12 SAEs are run here one after the
other, and `seconds` is the total for "feature data for all the SAEs over the same N tokens".
`tokens` is N (tokens per SAE), so tokens_per_second = N / seconds is comparable with glassbox's.

Timing: `seconds` covers, for every SAE, loading it from disk plus `SaeVisRunner.run`; model loading
and tokenization are excluded. `read_seconds` is the part spent in SAEDashboard's
`FeatureDataGenerator.get_feature_data` (forward passes, encoding, rolling correlations: its pass
over the corpus), measured by wrapping that method with a timer; the rest is its per-feature
finishing (quantiles, histograms, tables, sequences). peak_rss_bytes is this process's ru_maxrss
(model, torch import and tokens included). torch runs on the CPU with --threads threads (default 2).
"""

import argparse
import json
import math
import resource
import sys
import time
import warnings
from pathlib import Path
from unittest import mock


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def load_model(model_dir: Path):
    """The tiny Gemma 3 as a sae-lens HookedSAETransformer (see the module docstring)."""
    import torch
    from sae_lens import HookedSAETransformer
    from transformer_lens import HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.gemma import convert_gemma_weights
    from transformers import AutoTokenizer, Gemma3ForCausalLM

    hf = Gemma3ForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    hf.eval()
    c = hf.config
    if c.rope_scaling is not None:
        raise SystemExit(f"bench_features: rope_scaling {c.rope_scaling} is not mapped to transformer-lens")
    if c.attn_logit_softcapping is not None or c.final_logit_softcapping is not None:
        raise SystemExit("bench_features: soft-capping is not mapped to transformer-lens")
    cfg = HookedTransformerConfig.from_dict({
        "model_name": model_dir.name,
        "original_architecture": "Gemma3ForCausalLM",
        "d_model": c.hidden_size,
        "d_head": c.head_dim,
        "n_heads": c.num_attention_heads,
        "n_key_value_heads": c.num_key_value_heads,
        "d_mlp": c.intermediate_size,
        "n_layers": c.num_hidden_layers,
        "n_ctx": c.max_position_embeddings,
        "eps": c.rms_norm_eps,
        "d_vocab": c.vocab_size,
        "act_fn": c.hidden_activation,
        "initializer_range": c.initializer_range,
        "normalization_type": "RMS",
        "positional_embedding_type": "rotary",
        "rotary_dim": c.head_dim,
        "rotary_base": c.rope_theta,
        "rotary_base_local": c.rope_local_base_freq,
        "use_attn_scale": True,
        "attn_scale": math.sqrt(c.query_pre_attn_scalar),
        "gated_mlp": True,
        "final_rms": True,
        "use_normalization_before_and_after": True,
        "use_qk_norm": True,
        "window_size": c.sliding_window,
        "use_local_attn": True,
        "attn_types": ["local" if t == "sliding_attention" else "global" for t in c.layer_types],
        "default_prepend_bos": False,
        "dtype": torch.float32,
        "device": "cpu",
        "init_weights": False,
    })
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = HookedSAETransformer(cfg, tokenizer=tokenizer)
    with torch.no_grad():
        state = convert_gemma_weights(hf, cfg)
    model.load_and_process_state_dict(state, fold_ln=False, center_writing_weights=False,
                                      center_unembed=False, fold_value_biases=False,
                                      refactor_factored_attn_matrices=False)
    model.eval()
    return model, hf, tokenizer


def check_model(model, hf, tokens) -> float:
    """Max abs difference of every hook_resid_post against the HF hidden states, on one sequence."""
    import torch

    with torch.inference_mode():
        out = hf(tokens, output_hidden_states=True)
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_resid_post"))
    n = model.cfg.n_layers
    err = 0.0
    for layer in range(n):
        ref = out.hidden_states[layer + 1]
        if layer == n - 1:
            continue  # HF's last hidden state is after the final norm
        scale = max(1.0, ref.abs().max().item())
        err = max(err, (cache[f"blocks.{layer}.hook_resid_post"] - ref).abs().max().item() / scale)
    # the last layer: compare through the final norm
    last = model.ln_final(cache[f"blocks.{n - 1}.hook_resid_post"])
    ref = out.hidden_states[n]
    err = max(err, (last - ref).abs().max().item() / max(1.0, ref.abs().max().item()))
    return err


def make_sequences(data: Path, tokenizer, context: int, limit: int, bos: int, pad: int):
    """glassbox's sequences (see the module docstring): [n_seq, context] ids and the counted tokens."""
    import torch

    rows: list[list[int]] = []
    counted = 0
    exclude = {bos, pad}

    def add(ids: list[int]) -> bool:
        nonlocal counted
        keep = [0] + [0 if t in exclude else 1 for t in ids[1:]]
        k = sum(keep)
        if k == 0:
            return False
        if counted + k > limit:  # cut after the limit-th counted token
            need = limit - counted
            seen = 0
            for p, kp in enumerate(keep):
                seen += kp
                if seen == need:
                    ids = ids[: p + 1]
                    break
            k = need
        rows.append(ids + [pad] * (context - len(ids)))
        counted += k
        return counted >= limit

    with open(data, encoding="utf8") as f:
        for line in f:
            if counted >= limit:
                break
            if not line.strip():
                continue
            ids = [bos] + tokenizer.backend_tokenizer.encode(json.loads(line)["text"], add_special_tokens=False).ids
            if len(ids) <= 1:
                continue
            if len(ids) <= context:
                if add(ids):
                    break
                continue
            if add(ids[:context]):
                break
            for at in range(context, len(ids), context - 1):
                if add([bos] + ids[at: at + context - 1]):
                    break
            else:
                continue
            break
    return torch.tensor(rows, dtype=torch.long), counted


def load_sae(folder: Path):
    """sae-lens' Gemma Scope 2 loader on a local folder (Hub calls replaced by local reads)."""
    import sae_lens.loading.pretrained_sae_loaders as L
    from huggingface_hub.errors import EntryNotFoundError
    from safetensors import safe_open
    from sae_lens import SAE

    root = folder.parent.parent  # .../gemma-scope; folder names are resid_post/layer_L_...

    def fake_download(repo_id, filename, subfolder=None, **_):
        p = root / (subfolder or "") / filename
        if not p.exists():
            raise EntryNotFoundError(f"404: {p} (local stand-in for the hub)")
        return str(p)

    def fake_shapes(repo_id, filename):
        with safe_open(str(root / filename), framework="pt") as f:
            return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}

    def convert(path, device, cfg_overrides=None):
        rel = str(Path(path).relative_to(root))
        with mock.patch.object(L, "hf_hub_download", fake_download), \
                mock.patch.object(L, "get_safetensors_tensor_shapes", fake_shapes):
            cfg, sd, _ = L.gemma_3_sae_huggingface_loader("google/gemma-scope-2-tiny-pt", rel, device=device,
                                                          cfg_overrides=cfg_overrides)
        return cfg, sd

    return SAE.load_from_disk(folder, device="cpu", converter=convert)


def nice_ticks(lo: float, hi: float) -> list[float]:
    """At most 7 axis ticks at multiples of a 0.1-multiple step, 0 included, covering [lo, hi]."""
    step = max(0.1, 0.1 * math.floor(1e-4 + max(hi, -lo) / 0.3))
    return [round(i * step, 1) for i in range(-math.floor(-min(lo, 0.0) / step), math.floor(max(hi, 0.0) / step) + 1)]


def bound_histogram_ticks() -> None:
    """Work around SAEDashboard's "5 ticks" tick rule (HistogramData.from_data, utils_fns.py): its tick
    step is 0.1 * int(1e-4 + max(|lo|, hi) / 0.3) + 1e-6, i.e. 1e-6 when every value lies in (-0.3, 0.3),
    and it then lists |lo| / 1e-6 ticks (hundreds of thousands of rounded floats per histogram). The tiny
    model's logit effects are that small for ~95 % of features, so the stock rule alone costs ~85 s per SAE
    here whatever the number of tokens. The histogram is computed by the library unchanged (mode "ints",
    which differs only in the ticks); only `tick_vals` is replaced by at most 7 ticks (nice_ticks)."""
    from sae_dashboard.utils_fns import HistogramData

    stock = HistogramData.from_data.__func__

    def from_data(cls, data, n_bins, tickmode, title):
        if tickmode != "5 ticks" or data.numel() == 0:
            return stock(cls, data, n_bins, tickmode, title)
        out = stock(cls, data, n_bins, "ints", title)
        out.tick_vals = nice_ticks(data.min().item(), data.max().item())
        return out

    HistogramData.from_data = classmethod(from_data)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--tokens", type=int, default=65536)
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8, help="sequences per forward pass (minibatch_size_tokens)")
    ap.add_argument("--dict", action="append", required=True, dest="dicts")
    ap.add_argument("--feature-batch", type=int, default=0,
                    help="minibatch_size_features; 0 = all features of the SAE (default)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--stock-ticks", action="store_true",
                    help="keep SAEDashboard's histogram tick rule as is (see bound_histogram_ticks)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    import torch

    torch.set_num_threads(args.threads)
    import sae_dashboard
    import sae_lens
    import transformers
    from sae_dashboard import feature_data_generator as fdg
    from sae_dashboard.components_config import (
        ActsHistogramConfig,
        Column,
        FeatureTablesConfig,
        LogitsHistogramConfig,
        LogitsTableConfig,
        SequencesConfig,
    )
    from sae_dashboard.layout import SaeVisLayoutConfig
    from sae_dashboard.sae_vis_data import SaeVisConfig
    from sae_dashboard.sae_vis_runner import SaeVisRunner

    t_load = time.perf_counter()
    model, hf, tokenizer = load_model(Path(args.model))
    bos, pad = hf.config.bos_token_id, hf.config.pad_token_id
    tokens, counted = make_sequences(Path(args.data), tokenizer, args.context, args.tokens, bos, pad)
    err = check_model(model, hf, tokens[:1])
    if err > 1e-4:
        raise SystemExit(f"bench_features: transformer-lens model differs from HF by {err:.3g} (relative)")
    del hf
    load_s = time.perf_counter() - t_load
    log(f"model + tokens: {load_s:.1f} s; {tokens.shape[0]} sequences x {tokens.shape[1]}, {counted} counted tokens; "
        f"TL vs HF resid_post max rel err {err:.2g}")

    # time SAEDashboard's pass over the corpus (forward + encode + rolling correlations)
    read = [0.0]
    original = fdg.FeatureDataGenerator.get_feature_data

    def timed(self, *a, **k):
        t = time.perf_counter()
        try:
            return original(self, *a, **k)
        finally:
            read[0] += time.perf_counter() - t

    fdg.FeatureDataGenerator.get_feature_data = timed
    if not args.stock_ticks:
        bound_histogram_ticks()

    def layout() -> SaeVisLayoutConfig:
        return SaeVisLayoutConfig(columns=[
            Column(FeatureTablesConfig()),
            Column(ActsHistogramConfig(), LogitsTableConfig(n_rows=10), LogitsHistogramConfig()),
            Column(SequencesConfig(buffer=(10, 5), top_acts_group_size=20, n_quantiles=10,
                                   quantile_group_size=5, stack_mode="stack-none")),
        ], height=750)

    per_sae = []
    t0 = time.perf_counter()
    for d in args.dicts:
        ts = time.perf_counter()
        sae = load_sae(Path(d).resolve())
        width = sae.cfg.d_sae
        cfg = SaeVisConfig(
            hook_point=sae.cfg.metadata.hook_name,
            features=list(range(width)),
            minibatch_size_features=args.feature_batch or width,
            minibatch_size_tokens=args.batch,
            device="cpu",
            dtype="float32",
            ignore_tokens={bos, pad},
            feature_centric_layout=layout(),
            verbose=False,
        )
        data = SaeVisRunner(cfg).run(encoder=sae, model=model, tokens=tokens)
        n = len(data.feature_data_dict)
        del data, sae
        per_sae.append(time.perf_counter() - ts)
        log(f"{Path(d).name}: {cfg.hook_point}, {n} features, {per_sae[-1]:.1f} s")
    seconds = time.perf_counter() - t0

    print(json.dumps({
        "impl": "sae-dashboard",
        "tokens": counted,
        "seconds": seconds,
        "tokens_per_second": counted / seconds,
        "read_seconds": read[0],
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "dictionaries": len(args.dicts),
        "sequences": int(tokens.shape[0]),
        "context": args.context,
        "seconds_per_dictionary": per_sae,
        "load_seconds": load_s,
        "versions": {
            "sae_dashboard": getattr(sae_dashboard, "__version__", None) or _dist_version("sae-dashboard"),
            "sae_lens": sae_lens.__version__,
            "transformer_lens": _dist_version("transformer-lens"),
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        },
        "threads": torch.get_num_threads(),
        "histogram_ticks": "stock" if args.stock_ticks else "bounded",
        "feature_batch": args.feature_batch or "all",
    }))


def _dist_version(name: str):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
