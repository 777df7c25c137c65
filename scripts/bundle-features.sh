#!/usr/bin/env bash
# Builds the bundled feature statistics of tiny-gemma3: its layer-5 residual SAE (l0 small) over
# the held-out split of the corpus, into models/tiny-gemma3/features.sqlite (what `glassbox demo`
# and docs/features.md show). Smaller than a default build (10 top contexts, 3 examples per
# interval, 12-token windows) to keep the repository lean. Needs `npm run build` and the corpus
# (`node dist/src/cli/main.js data build`). Dictionary paths are recorded relative to the model
# folder, where the database lives, so the file works from any checkout.
#   scripts/bundle-features.sh [extra `features build` options]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="$root/data/corpus/validation.jsonl"
if [ ! -f "$data" ]; then
  echo "bundle-features: no $data; build the corpus first: node dist/src/cli/main.js data build" >&2
  exit 1
fi
cd "$root/models/tiny-gemma3"
rm -f features.sqlite.partial
node "$root/dist/src/cli/main.js" features build --model . \
  --dict gemma-scope/resid_post/layer_5_width_1k_l0_small \
  --data "$data" --top-k 10 --group-examples 3 --before 8 --after 3 \
  --out features.sqlite.partial "$@"
mv features.sqlite.partial features.sqlite
echo "wrote models/tiny-gemma3/features.sqlite ($(du -h features.sqlite | cut -f1))"
