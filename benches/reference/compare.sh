#!/usr/bin/env bash
# candle vs PyTorch on this machine, in one run: `suti bench train/sample` at the small preset and
# the PyTorch twin (benches/reference/dit_twin.py), both on the same number of threads.
set -euo pipefail
cd "$(dirname "$0")/../.."
threads="${THREADS:-2}"
venv="${SUTI_REFERENCE_VENV:-$HOME/.cache/suti/reference-venv}"
cargo build --release -p suti --locked -q
suti="${CARGO_TARGET_DIR:-target}/release/suti"
RAYON_NUM_THREADS="$threads" "$suti" bench train --presets small --batch 32 --steps 5
RAYON_NUM_THREADS="$threads" "$suti" bench sample --presets small --images 4 --steps 25
"$venv/bin/python" benches/reference/dit_twin.py --threads "$threads"
