#!/usr/bin/env bash
# Builds, evaluates and documents the bundled dictionaries of a tiny Gemma 3 model (resumable):
#   scripts/bundle-dictionaries.sh models/tiny-gemma3 [options]
# See scripts/bundle-dictionaries.mjs for the stages and options. Needs `npm run build` first.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec node "$here/bundle-dictionaries.mjs" "$@"
