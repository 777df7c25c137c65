"""PyTorch / transformers side of bench/chat.ts: the refusal-direction fit of Arditi et al. 2024.

Reads a JSON job written by bench/chat.ts: {"model", "train": {"harmful", "harmless"}, "validation":
{"harmful", "harmless"} (lists of chat-rendered token id lists), "refusal_tokens", "positions"}, and
runs the same pipeline as src/chat/refusal.ts, in float32 on the CPU with 2 threads, one prompt per
forward pass (as the glassbox side):
- resid_pre of every layer at the last `positions` tokens (hidden_states[l] of output_hidden_states)
  averaged per set, the candidates their difference;
- for every non-zero candidate below 80 % depth: the mean harmful refusal score under directional
  ablation (a forward pre-hook projecting each decoder layer's input, and forward hooks projecting
  post_attention_layernorm and post_feedforward_layernorm outputs: the same residual-stream sites as
  glassbox's resid_pre(0), resid_mid and resid_post), the mean KL(base || ablated) of harmless
  last-position distributions and the mean harmless refusal score with the direction added at its
  layer's input.
Prints one JSON line: {"impl": "transformers", "seconds", "means_seconds", "scoring_seconds",
"peak_rss_bytes", "scores": [{"layer", "position", "ablation", "kl", "steering"}]}.

    reference/.venv/bin/python reference/bench_refusal.py --job JOB.json
"""

import argparse
import json
import resource
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--job", required=True)
    args = ap.parse_args()
    torch.set_num_threads(2)
    job = json.load(open(args.job))
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(job["model"], torch_dtype=torch.float32)
    model.eval()
    layers = model.model.layers
    L = len(layers)
    P = job["positions"]
    tokens = torch.tensor(job["refusal_tokens"])

    def forward(ids, hidden=False):
        x = torch.tensor([ids])
        return model(input_ids=x, output_hidden_states=hidden, use_cache=False)

    def refusal_score(logits):
        lp = torch.log_softmax(logits.double(), -1)
        p = lp[tokens].exp().sum()
        return float(torch.log(p + 1e-12) - torch.log(1 - p + 1e-12))

    t0 = time.perf_counter()
    with torch.no_grad():

        def means(prompts):
            s = torch.zeros(L, P, model.config.hidden_size, dtype=torch.float64)
            for ids in prompts:
                hs = forward(ids, hidden=True).hidden_states
                for l in range(L):
                    s[l] += hs[l][0, -P:].double()
            return s / len(prompts)

        diff = (means(job["train"]["harmful"]) - means(job["train"]["harmless"])).float()
        t1 = time.perf_counter()

        handles = []

        def clear():
            for h in handles:
                h.remove()
            handles.clear()

        def project(x, u):
            return x - (x @ u).unsqueeze(-1) * u

        def ablate(r):
            u = r / r.norm()

            def pre(_m, a, kw):
                if "hidden_states" in kw:
                    kw = dict(kw)
                    kw["hidden_states"] = project(kw["hidden_states"], u)
                    return a, kw
                return (project(a[0], u),) + tuple(a[1:]), kw

            def post(_m, _i, out):
                return project(out, u)

            for layer in layers:
                handles.append(layer.register_forward_pre_hook(pre, with_kwargs=True))
                handles.append(layer.post_attention_layernorm.register_forward_hook(post))
                handles.append(layer.post_feedforward_layernorm.register_forward_hook(post))

        def add(layer, r):
            def pre(_m, a, kw):
                if "hidden_states" in kw:
                    kw = dict(kw)
                    kw["hidden_states"] = kw["hidden_states"] + r
                    return a, kw
                return (a[0] + r,) + tuple(a[1:]), kw

            handles.append(layers[layer].register_forward_pre_hook(pre, with_kwargs=True))

        def last(ids):
            return forward(ids).logits[0, -1]

        val = job["validation"]
        base_lp = [torch.log_softmax(last(ids).double(), -1) for ids in val["harmless"]]
        scores = []
        for layer in range(L):
            if layer >= 0.8 * L:
                continue
            for pos in range(P):
                r = diff[layer, pos]
                if float((r.double() ** 2).sum()) <= 1e-12:
                    continue
                ablate(r)
                abl = sum(refusal_score(last(ids)) for ids in val["harmful"]) / len(val["harmful"])
                kl = 0.0
                for ids, b in zip(val["harmless"], base_lp):
                    a = torch.log_softmax(last(ids).double(), -1)
                    kl += float((b.exp() * (b - a)).sum())
                kl /= len(val["harmless"])
                clear()
                add(layer, r)
                st = sum(refusal_score(last(ids)) for ids in val["harmless"]) / len(val["harmless"])
                clear()
                scores.append({"layer": layer, "position": pos, "ablation": abl, "kl": kl, "steering": st})
        t2 = time.perf_counter()
    print(
        json.dumps(
            {
                "impl": "transformers",
                "seconds": t2 - t0,
                "means_seconds": t1 - t0,
                "scoring_seconds": t2 - t1,
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "scores": scores,
            }
        )
    )


if __name__ == "__main__":
    main()
