"""Harvesting throughput of SAELens' ActivationsStore (CPU): the SAELens side of bench/harvest.ts.

The model is loaded the way SAELens loads any Hugging Face model (`load_model("AutoModelForCausalLM",
...)`, a HookedProxyLM with a forward hook on the one module harvested); the dataset is the same
JSONL file glassbox reads, as a `datasets.Dataset` with a `text` column, tokenized on the fly.
`ActivationsStore.get_filtered_llm_batch()` is called until `--tokens` tokens have been produced:
it tokenizes, concatenates and chunks documents into `context` tokens with BOS in front, runs the
model with `stop_at_layer` (the forward stops after the hooked layer), and drops BOS/EOS/pad rows.
That is SAELens' whole harvesting path short of its mixing buffer. Prints one JSON object.

    reference/.venv/bin/python reference/bench_harvest.py --model-dir models/tiny-gemma3 \
        --data data/corpus/validation.jsonl --layer 3 --tokens 32768 --context 256 --batch 8 --threads 2
"""

import argparse
import json
import resource
import time
import warnings

import torch
from datasets import Dataset
from sae_lens.load_model import load_model
from sae_lens.training.activations_store import ActivationsStore


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--layer", type=int, required=True)
    ap.add_argument("--tokens", type=int, default=32768)
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)

    hook = f"model.layers.{args.layer}"
    t0 = time.perf_counter()
    model = load_model(
        "AutoModelForCausalLM",
        args.model_dir,
        device="cpu",
        model_from_pretrained_kwargs={"dtype": getattr(torch, args.dtype)},
        hook_names=[hook],
    )
    model.eval()
    with open(args.data, encoding="utf8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    dataset = Dataset.from_dict({"text": texts})
    tok = model.tokenizer
    special = sorted({tok.bos_token_id, tok.eos_token_id, tok.pad_token_id})
    store = ActivationsStore(
        model=model,
        dataset=dataset,
        streaming=False,
        hook_name=hook,
        hook_head_index=None,
        context_size=args.context,
        d_in=model.model.config.hidden_size,
        n_batches_in_buffer=2,
        total_training_tokens=args.tokens,
        store_batch_size_prompts=args.batch,
        train_batch_size_tokens=4096,
        prepend_bos=True,
        normalize_activations="none",
        device=torch.device("cpu"),
        dtype="float32",
        exclude_special_tokens=torch.tensor(special, dtype=torch.long),
    )
    load_s = time.perf_counter() - t0

    tokens = 0
    batches = 0
    checksum = 0.0
    t1 = time.perf_counter()
    with torch.inference_mode():
        while tokens < args.tokens:
            acts = store.get_filtered_llm_batch()
            tokens += acts.shape[0]
            checksum += float(acts[:, 0].sum())
            batches += 1
    seconds = time.perf_counter() - t1
    print(
        json.dumps(
            {
                "impl": "sae_lens",
                "hook": hook,
                "tokens": tokens,
                "batches": batches,
                "seconds": seconds,
                "tokens_per_second": tokens / seconds,
                "load_seconds": load_s,
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "checksum": checksum,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
