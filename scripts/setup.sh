#!/usr/bin/env bash
# One-command setup on a fresh Debian machine: system packages (OpenBLAS headers, a C toolchain),
# npm dependencies with the native addon build, the TypeScript build; then the demo unless
# --no-demo is given.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
[ -e /usr/include/x86_64-linux-gnu/cblas.h ] || [ -e /usr/include/cblas.h ] || [ -e /usr/include/openblas/cblas.h ] || need+=(libopenblas-dev)
command -v g++ >/dev/null || need+=(g++)
command -v make >/dev/null || need+=(make)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${need[*]}"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
npm ci --no-audit --no-fund
# Real Gemma 3 tokenizer files for the tokenizer tests (optional: they skip without it).
node scripts/fetch-gemma3-tokenizer.mjs || echo "setup: continuing without the real Gemma 3 tokenizer"
npm run build
if [ "${1:-}" != "--no-demo" ]; then
  node dist/src/cli/main.js demo
fi
