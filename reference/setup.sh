#!/usr/bin/env bash
# Creates reference/.venv and installs the exact pins in reference/requirements.txt.
# Idempotent: re-running only installs what is missing or differs from the pins.
# The Python reference is a test oracle only; `npm test` and CI never need it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 10) else 1)'; then
  echo "setup.sh: need Python >= 3.10 (pins were resolved on 3.11); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
# The default Linux torch wheel from PyPI pulls CUDA libraries (several GB); it runs on the CPU.
"$venv/bin/python" -m pip install --quiet --progress-bar off -r "$here/requirements.txt"
"$venv/bin/python" - <<'PY'
import torch, transformers, tokenizers, safetensors, numpy
print(f"reference/.venv ready: torch {torch.__version__}, transformers {transformers.__version__}, "
      f"tokenizers {tokenizers.__version__}, safetensors {safetensors.__version__}, numpy {numpy.__version__}")
PY
