#!/usr/bin/env python3
"""Tokenizer and chat-template fixtures for glassbox's TypeScript tokenizer (src/io/tokenizer.ts, chat.ts).

Two subcommands (run from the repository root):

  tiny --out DIR
      Trains a deliberately tiny Gemma-3-shaped tokenizer (300 ids: Gemma's 9 fixed tokens, 256 byte
      tokens, a lowercase alphabet and a few merges) on the text embedded below, with the files and
      chat template of reference/tokenizer_train.py. Its ids fit the vocabularies of the tiny parity
      models test/fixtures/gemma3/{text-gqa-bf16-scaled,mm-new-prefix-bf16} (320 / 300 ids), so the
      CLI tests can run those models on text. Most characters go through byte fallback.

  expected --tokenizer-dir DIR --out FILE [--source TEXT]
      Writes the expected ids, vocabulary strings and character offsets (from Hugging Face's Rust
      `tokenizers`), decoded text, padded batches, and rendered chat conversations with ids and a
      per-token role mask (rendered by transformers' apply_chat_template) for the edge cases below.

Offsets are converted from Python code points to UTF-16 code units (JavaScript string indices).
The role mask is computed independently of the TypeScript method: this script rebuilds each
conversation from Gemma 3's documented layout (`<bos>`, then per turn `<start_of_turn>ROLE\\n`,
the system prompt + "\\n\\n" in the first user turn, trimmed content, `<end_of_turn>\\n`), checks
the result equals transformers' rendering, and labels a token with a message when its offsets
overlap that message's content.

Regenerate: bash reference/regen_fixtures.sh (the real Gemma 3 fixture needs
`node scripts/fetch-gemma3-tokenizer.mjs` first).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
from pathlib import Path

import tokenizers
import transformers
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer_train as tt  # noqa: E402

FORMAT = "glassbox-tokenizer-fixture"
FORMAT_VERSION = 1

TINY_VOCAB = 300
TINY_TEXT = """\
the cat sat on the mat. the dog ate the bone. a model reads the text and writes the next token.
the user asks and the model answers. hello world, hello there. what is a cat? a cat is an animal.
she sells sea shells on the sea shore. the quick brown fox jumps over the lazy dog.
"""

CASES: list[str] = [
    "Hello world",
    "",
    " ",
    "   ",
    " leading space",
    "trailing space ",
    "  both sides  ",
    "a  b   c    d     e",
    "tab\there",
    "\t\t\tindented",
    "line\nbreak",
    "two\n\nbreaks",
    "\n\n\n",
    "crlf\r\nline\r\n",
    "lone\rcarriage",
    "\U0001F600",
    "\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466 family",
    "thumbs \U0001F44D\U0001F3FD up",
    "\U0001F3F3\ufe0f\u200d\U0001F308 flag",
    "\u4e2d\u6587\u5b57\u7b26",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
    "\ud55c\uad6d\uc5b4",
    "caf\u00e9",
    "cafe\u0301",
    "\u00c5ngstr\u00f6m vs A\u030angstro\u0308m",
    "\ufb01nance \ufb00",
    "\u00dcn\u00efc\u00f6d\u00e9 fa\u00e7ade na\u00efve r\u00e9sum\u00e9",
    "<start_of_turn>user\nhi<end_of_turn>",
    "a<bos>b",
    "text <bos> in the middle",
    "<eos>",
    "<pad><unk><mask>",
    "<start_of_turn",
    "<end_of_turn>\n<start_of_turn>model\n",
    "a" * 100,
    "!" * 50,
    "-" * 80,
    " " * 20 + "x",
    "\n" * 10,
    "1234567890",
    "3.14159 and 1,000,000 and 2026-11-25",
    "def f(x):\n    return x * 2\n",
    "for (let i = 0; i < n; i++) {\n\tsum += a[i];\n}",
    '<div class="x">&amp;</div>',
    "\u00a0non-breaking\u00a0space",
    "zero\u200bwidth",
    "\ufeffbyte order mark",
    "\ufffd replacement",
    "null\u0000byte",
    "The quick brown fox jumps over the lazy dog.",
]

# Token sequences to decode that no encoding produces: truncated or invalid UTF-8 byte runs (Rust
# writes one U+FFFD per byte of an invalid run), a byte-order mark spelled as bytes, specials.
DECODES: list[list[str]] = [
    ["<0xE4>", "<0xB8>"],
    ["<0x80>"],
    ["<0xE4>", "<0xB8>", "<0xAD>", "<0xE4>"],
    ["<0xEF>", "<0xBB>", "<0xBF>", "<0x41>"],
    ["<bos>", "<0xEF>", "<0xBB>", "<0xBF>", "\u2581", "<0xEF>", "<0xBB>", "<0xBF>"],
    ["<start_of_turn>", "\u2581", "\u2581", "<0xF0>", "<0x9F>", "<end_of_turn>", "<eos>"],
]

# Texts for batch encoding (different lengths, one empty).
BATCH = ["Hello world", "a", "", "the cat sat on the mat"]

CHATS: list[dict] = [
    {"messages": [{"role": "user", "content": "What is a cat?"}], "add_generation_prompt": True},
    {
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "add_generation_prompt": True,
    },
    {
        "messages": [
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi! How can I help?"},
            {"role": "user", "content": "Tell me a joke."},
        ],
        "add_generation_prompt": True,
    },
    {
        "messages": [
            {"role": "system", "content": "  You are terse.  "},
            {"role": "user", "content": "  padded question \n"},
            {"role": "model", "content": "answer\nwith two lines"},
        ],
        "add_generation_prompt": False,
    },
    {
        "messages": [
            {"role": "user", "content": "user"},
            {"role": "assistant", "content": "model"},
            {"role": "user", "content": "<start_of_turn> typed \U0001F600 \u4e2d\u6587"},
        ],
        "add_generation_prompt": False,
    },
    {"messages": [{"role": "user", "content": ""}], "add_generation_prompt": True},
    {"messages": [{"role": "system", "content": "only a system prompt"}], "add_generation_prompt": True},
    {
        "messages": [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}],
        "add_generation_prompt": True,
    },
    {"messages": [{"role": "assistant", "content": "I start"}], "add_generation_prompt": False},
]


def utf16_len(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def utf16_offsets(text: str, offsets) -> list[list[int]]:
    return [[utf16_len(text[:a]), utf16_len(text[:b])] for a, b in offsets]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def gemma_layout(messages: list[dict], add_generation_prompt: bool, bos: str):
    """Gemma 3's documented chat layout, with each message's content span (code points)."""
    out = bos
    spans = []
    msgs = messages
    prefix = None
    if msgs and msgs[0]["role"] == "system":
        prefix = (0, msgs[0]["content"])
        msgs = list(enumerate(messages))[1:]
    else:
        msgs = list(enumerate(messages))
    for k, (i, m) in enumerate(msgs):
        role = "model" if m["role"] == "assistant" else m["role"]
        out += f"<start_of_turn>{role}\n"
        if k == 0 and prefix is not None:
            spans.append((prefix[0], len(out), len(out) + len(prefix[1])))
            out += prefix[1] + "\n\n"
        c = m["content"].strip()
        spans.append((i, len(out), len(out) + len(c)))
        out += c + "<end_of_turn>\n"
    if add_generation_prompt:
        out += "<start_of_turn>model\n"
    return out, spans


def cmd_tiny(out: str) -> None:
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", tt.SPIECE)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("\n", behavior="removed"),
            pre_tokenizers.Split(tt.SPIECE, behavior="merged_with_next"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    alphabet = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [tt.SPIECE]
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB,
        min_frequency=2,
        special_tokens=[c for c, _ in tt.ADDED] + tt.BYTE_TOKENS,
        initial_alphabet=alphabet,
        limit_alphabet=len(alphabet),
        show_progress=False,
    )
    tok.train_from_iterator(TINY_TEXT.splitlines(), trainer=trainer)
    raw = json.loads(tok.to_str())
    assert len(raw["model"]["vocab"]) == TINY_VOCAB, len(raw["model"]["vocab"])
    tt.write_tokenizer_files(out, tt.gemma_shape(raw), model_max_length=1024)
    print(f"wrote {out} ({TINY_VOCAB} ids)")


def cmd_expected(tok_dir: str, out: str, source: str, generator: str) -> None:
    from transformers import AutoTokenizer

    d = Path(tok_dir)
    rust = Tokenizer.from_file(str(d / "tokenizer.json"))
    hf = AutoTokenizer.from_pretrained(tok_dir)
    bos = hf.bos_token
    cases = []
    for text in CASES:
        enc = rust.encode(text, add_special_tokens=True)
        nob = rust.encode(text, add_special_tokens=False)
        assert hf(text)["input_ids"] == enc.ids, text
        decoded = rust.decode(enc.ids, skip_special_tokens=False)
        cases.append(
            {
                "text": text,
                "ids": enc.ids,
                "ids_no_bos": nob.ids,
                "tokens": enc.tokens,
                "offsets": utf16_offsets(text, enc.offsets),
                "decoded": decoded,
                "decoded_skip_special": rust.decode(enc.ids, skip_special_tokens=True),
            }
        )
    decodes = []
    for toks in DECODES:
        ids = [rust.token_to_id(t) for t in toks]
        assert None not in ids, toks
        decodes.append(
            {
                "tokens": toks,
                "ids": ids,
                "decoded": rust.decode(ids, skip_special_tokens=False),
                "decoded_skip_special": rust.decode(ids, skip_special_tokens=True),
            }
        )
    batches = {}
    for side in ["left", "right"]:
        hf.padding_side = side
        b = hf(BATCH, padding=True)
        batches[side] = {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]}
    chats = []
    for chat in CHATS:
        msgs, agp = chat["messages"], chat["add_generation_prompt"]
        entry = {"messages": msgs, "add_generation_prompt": agp}
        try:
            rendered = hf.apply_chat_template(msgs, tokenize=False, add_generation_prompt=agp)
        except Exception as e:  # the template's own raise_exception
            entry["error"] = str(e)
            chats.append(entry)
            continue
        layout, spans = gemma_layout(msgs, agp, bos)
        assert layout == rendered, (layout, rendered)
        enc = rust.encode(rendered, add_special_tokens=False)
        assert hf(rendered, add_special_tokens=False)["input_ids"] == enc.ids
        assert enc.ids.count(hf.bos_token_id) == 1, enc.ids
        message = []
        for a, b in enc.offsets:
            hit = [i for i, s, e in spans if s < e and a < e and b > s]
            message.append(hit[0] if hit else -1)
        entry.update(
            {
                "rendered": rendered,
                "ids": enc.ids,
                "tokens": enc.tokens,
                "message": message,
                "spans": [[i, utf16_len(rendered[:s]), utf16_len(rendered[:e])] for i, s, e in spans],
            }
        )
        chats.append(entry)
    fixture = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generator": generator,
        "tokenizers_version": tokenizers.__version__,
        "transformers_version": transformers.__version__,
        "tokenizer": {
            "source": source,
            "vocab_size": rust.get_vocab_size(with_added_tokens=True),
            "tokenizer_json_sha256": sha256(d / "tokenizer.json"),
            "tokenizer_config_sha256": sha256(d / "tokenizer_config.json"),
            "special": {
                "bos": hf.bos_token_id,
                "eos": hf.eos_token_id,
                "pad": hf.pad_token_id,
                "unk": hf.unk_token_id,
                "start_of_turn": hf.convert_tokens_to_ids("<start_of_turn>"),
                "end_of_turn": hf.convert_tokens_to_ids("<end_of_turn>"),
            },
        },
        "cases": cases,
        "decodes": decodes,
        "batch": {"texts": BATCH, **batches},
        "chats": chats,
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=True, indent=1)
        f.write("\n")
    print(f"wrote {out}: {len(cases)} cases, {len(chats)} chats")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tiny")
    t.add_argument("--out", required=True)
    e = sub.add_parser("expected")
    e.add_argument("--tokenizer-dir", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--source", default=None, help="where the tokenizer files came from (recorded)")
    args = ap.parse_args()
    if args.cmd == "tiny":
        cmd_tiny(args.out)
    else:
        generator = shlex.join(["reference/.venv/bin/python", "reference/tokenizer_fixture.py", *sys.argv[1:]])
        cmd_expected(args.tokenizer_dir, args.out, args.source or args.tokenizer_dir, generator)


if __name__ == "__main__":
    main()
