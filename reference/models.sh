#!/usr/bin/env bash
# Rebuilds glassbox's own tiny Gemma 3 models from the corpus, in order:
#   1. the synthetic chat set      reference/chat_data.py        -> scratch/chat/
#   2. the tokenizer               reference/tokenizer_train.py  -> models/tiny-gemma3/tokenizer*.json
#   3. the base model              reference/train_tiny_gemma3.py    -> models/tiny-gemma3/
#   4. the chat model + its eval   reference/train_tiny_gemma3_it.py -> models/tiny-gemma3-it/
#   5. the model cards             reference/train_cards.py      -> models/*/README.md
# Needs reference/.venv (bash reference/setup.sh) and data/corpus (glassbox data build).
# Wall-clock budgets: BASE_MINUTES (default 40) and IT_MINUTES (default 15); about 65 minutes in all
# on a 2-core CPU. Logs go to scratch/. See docs/models.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=reference/.venv/bin/python
BASE_MINUTES=${BASE_MINUTES:-40}
IT_MINUTES=${IT_MINUTES:-15}
if [ ! -x "$PY" ]; then
  echo "models.sh: reference/.venv missing; run: bash reference/setup.sh" >&2
  exit 1
fi
if [ ! -f data/corpus/manifest.json ]; then
  echo "models.sh: data/corpus missing; run: node dist/src/cli/main.js data build" >&2
  exit 1
fi
mkdir -p scratch
rm -f scratch/train_tiny_gemma3.log scratch/train_tiny_gemma3_it.log

$PY reference/chat_data.py --out scratch/chat --corpus data/corpus
$PY reference/tokenizer_train.py --train data/corpus/train.jsonl --chat scratch/chat/train.jsonl --out models/tiny-gemma3
$PY reference/train_tiny_gemma3.py --corpus data/corpus --tokenizer models/tiny-gemma3 --out models/tiny-gemma3 \
  --minutes "$BASE_MINUTES"
$PY reference/train_tiny_gemma3_it.py --base models/tiny-gemma3 --chat-data scratch/chat --out models/tiny-gemma3-it \
  --minutes "$IT_MINUTES"
$PY reference/train_cards.py
