"""circuit-tracer 0.5.0 side of bench/circuits.ts, and the parity dump for test fixtures.

Runs circuit-tracer's attribution on the CPU (nnsight backend, float32, 2 threads) for a prompt given
as token ids, with the bundled tiny-gemma3 Gemma Scope 2-format per-layer transcoders (--transcoder
DIR, one per layer in order) or CLT (--clt DIR), then prunes (0.8 / 0.98), scores, and writes the
Neuronpedia graph JSON (create_graph_files) to a temporary folder, as `glassbox graph` does. Prints
one JSON line: {"impl": "circuit-tracer", "case", "seconds", "peak_rss_bytes", "active_features",
"visited_features", "kept_nodes", "kept_edges", "replacement_score", "completeness_score"}.
`seconds` runs from attribute() to the JSON written (model and dictionary loading excluded, as on
the glassbox side); peak RSS is the whole process's.

With --dump FILE it also saves the graph's tensors (active_features, activation_values,
selected_features, adjacency_matrix, logit_targets, logit_probabilities) to a .npz for a parity
comparison.

Notes (circuit-tracer 0.5.0):
- load_gemma_scope_2_clt(paths) iterates range(max(paths.keys())): with 0-based keys it loads one
  file too few; an extra key repeating the last file works around it (see reference/dictionaries.py).
- Gemma Scope 2 transcoders read `mlp.hook_in` (pre_feedforward_layernorm output) and write
  `hook_mlp_out` (post_feedforward_layernorm output), as the nnsight Gemma3ForCausalLM mapping names them.

    reference/.venv/bin/python reference/bench_circuits.py --model models/tiny-gemma3 \\
        --clt models/tiny-gemma3/gemma-scope/clt/width_3k_l0_medium --ids 2,665,1134 --case tiny-clt-3
"""

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--transcoder", action="append", default=[])
    ap.add_argument("--clt")
    ap.add_argument("--ids", required=True)
    ap.add_argument("--case", default="")
    ap.add_argument("--max-feature-nodes", type=int, default=7500)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--dump")
    ap.add_argument("--fixture", help="write a parity fixture (safetensors) to this path")
    ap.add_argument("--rows", type=int, default=48, help="feature rows kept in the fixture (logit rows always)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    cpu = torch.device("cpu")

    from circuit_tracer import ReplacementModel, attribute
    from circuit_tracer.graph import compute_graph_scores, prune_graph
    from circuit_tracer.transcoder.cross_layer_transcoder import load_gemma_scope_2_clt
    from circuit_tracer.transcoder.single_layer_transcoder import TranscoderSet, load_gemma_scope_2_transcoder
    from circuit_tracer.utils.create_graph_files import create_graph_files

    hook_in, hook_out = "mlp.hook_in", "hook_mlp_out"
    if args.clt:
        files = sorted(Path(args.clt).glob("params_layer_*.safetensors"), key=lambda p: int(p.stem.split("_")[-1]))
        paths = {i: str(p) for i, p in enumerate(files)}
        paths[len(files)] = paths[len(files) - 1]  # the range(max(keys)) workaround
        transcoders = load_gemma_scope_2_clt(paths, feature_input_hook=hook_in, feature_output_hook=hook_out,
                                             scan="tiny-gemma3", device=cpu, dtype=torch.float32)
    else:
        tcs = {l: load_gemma_scope_2_transcoder(str(Path(d) / "params.safetensors"), l, device=cpu, dtype=torch.float32)
               for l, d in enumerate(args.transcoder)}
        transcoders = TranscoderSet(tcs, feature_input_hook=hook_in, feature_output_hook=hook_out, scan="tiny-gemma3")
    model = ReplacementModel.from_pretrained_and_transcoders(args.model, transcoders, backend="nnsight",
                                                             device=cpu, dtype=torch.float32)
    ids = torch.tensor([int(x) for x in args.ids.split(",")])

    t0 = time.perf_counter()
    graph = attribute(ids, model, max_feature_nodes=args.max_feature_nodes, batch_size=args.batch)
    pruned = prune_graph(graph, node_threshold=0.8, edge_threshold=0.98)
    replacement, completeness = compute_graph_scores(graph)
    with tempfile.TemporaryDirectory() as tmp:
        create_graph_files(graph, slug=args.case or "bench", output_path=tmp, scan="tiny-gemma3",
                           node_threshold=0.8, edge_threshold=0.98)
    seconds = time.perf_counter() - t0

    if args.dump:
        import numpy as np
        np.savez(args.dump,
                 active_features=graph.active_features.numpy(),
                 activation_values=graph.activation_values.numpy(),
                 selected_features=graph.selected_features.numpy(),
                 adjacency_matrix=graph.adjacency_matrix.numpy(),
                 logit_targets=np.array([t.vocab_idx if hasattr(t, "vocab_idx") else t for t in graph.logit_targets]),
                 logit_probabilities=graph.logit_probabilities.numpy(),
                 node_mask=pruned.node_mask.numpy(),
                 edge_mask=pruned.edge_mask.numpy())
    if args.fixture:
        write_fixture(args, graph, replacement, completeness)
    print(json.dumps({
        "impl": "circuit-tracer",
        "case": args.case,
        "seconds": seconds,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "active_features": int(graph.active_features.shape[0]),
        "visited_features": int(graph.selected_features.shape[0]),
        "kept_nodes": int(pruned.node_mask.sum()),
        "kept_edges": int(pruned.edge_mask.sum()),
        "replacement_score": replacement,
        "completeness_score": completeness,
    }))
    sys.stdout.flush()


def write_fixture(args, graph, replacement: float, completeness: float) -> None:
    """Node set, activations, logit targets and a deterministic sample of adjacency rows (every
    logit row and `--rows` feature rows spread evenly, all columns), with the fixture metadata."""
    sys.path.insert(0, str(Path(__file__).parent))
    import fixture_io as fx
    from importlib.metadata import version

    adj = graph.adjacency_matrix
    n = adj.shape[0]
    n_feat = int(graph.selected_features.shape[0])
    n_logits = len(graph.logit_targets)
    step = max(1, n_feat // max(1, args.rows))
    rows = list(range(0, n_feat, step))[: args.rows] + list(range(n - n_logits, n))
    targets = graph.logit_targets
    token_ids = [t.vocab_idx if hasattr(t, "vocab_idx") else int(t) for t in targets]
    tensors = {
        "prompt_ids": torch.tensor([int(x) for x in args.ids.split(",")], dtype=torch.int32),
        "active_features": graph.active_features.to(torch.int32),
        "activation_values": graph.activation_values.to(torch.float32),
        "selected_features": graph.selected_features.to(torch.int32),
        "logit_targets": torch.tensor(token_ids, dtype=torch.int32),
        "logit_probabilities": graph.logit_probabilities.to(torch.float32),
        "sample_rows": torch.tensor(rows, dtype=torch.int32),
        "sample_adjacency": adj[rows].to(torch.float32).contiguous(),
        "scores": torch.tensor([replacement, completeness], dtype=torch.float32),
    }
    dicts = [args.clt] if args.clt else args.transcoder
    generator = " ".join(["reference/.venv/bin/python", "reference/bench_circuits.py", "--model", args.model,
                          *(["--clt", args.clt] if args.clt else [x for d in args.transcoder for x in ("--transcoder", d)]),
                          "--ids", args.ids, "--rows", str(args.rows), "--fixture", args.fixture])
    description = {
        "what": "circuit-tracer 0.5.0 attribution graph (nnsight backend, CPU, float32) of a prompt on tiny-gemma3",
        "dictionaries": dicts,
        "max_feature_nodes": args.max_feature_nodes,
        "batch_size": args.batch,
        "tensors": fx.tensor_listing(tensors),
        "notes": "sample_adjacency[i] = adjacency_matrix[sample_rows[i]] (targets x sources; node order: "
                 "selected features, errors layer-major, tokens, logits)",
    }
    meta = fx.fixture_metadata(generator, description, {"circuit_tracer_version": version("circuit-tracer"),
                                                        "nnsight_version": version("nnsight")})
    fx.write_safetensors(Path(args.fixture), tensors, meta)


if __name__ == "__main__":
    main()
