#!/usr/bin/env bash
# candle vs PyTorch on this machine, in one run, on the same threads: `suti bench train`,
# `suti bench sample` and `suti bench tower` against the PyTorch twins (dit_twin.py at each preset,
# tower_twin.py), then one table of ratios (candle / PyTorch; above 1 means suti is faster).
# THREADS (default 2) sets both sides' threads; PRESETS (default tiny,small) the denoiser
# presets; SUTI_FEATURES=mkl builds suti with Intel MKL (scripts/fetch-mkl first).
# TWIN_CPU_TUNING (auto, avx2, off) sets which kernels PyTorch's MKL and ATen run (see below).
set -euo pipefail
cd "$(dirname "$0")/../.."
threads="${THREADS:-2}"
presets="${PRESETS:-tiny,small}"
venv="${SUTI_REFERENCE_VENV:-$HOME/.cache/suti/reference-venv}"
[ -x "$venv/bin/python" ] || { echo "no reference venv: run benches/reference/setup.sh" >&2; exit 1; }
# SUTI_BIN: a suti binary already built (skips the release build).
if [ -n "${SUTI_BIN:-}" ]; then
  suti="$SUTI_BIN"
else
  cargo build --release -p suti --locked -q ${SUTI_FEATURES:+--features "$SUTI_FEATURES"}
  suti="${CARGO_TARGET_DIR:-target}/release/suti"
fi
# The mkl build loads Intel MKL from where scripts/fetch-mkl put it.
export LD_LIBRARY_PATH="${SUTI_MKL_DIR:-$HOME/.cache/suti/mkl/lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
# MKL on one thread of its own: rayon already keeps every core busy, and MKL's OpenMP threads beside
# rayon's were slower on two cores (docs/performance.md).
export RAYON_NUM_THREADS="$threads" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}" MKL_THREADING_LAYER=GNU
"$suti" bench train --presets "$presets" --batch 32 --steps 5 --json > "$out/train.json"
"$suti" bench sample --presets "$presets" --images 4 --steps 25 --json > "$out/sample.json"
"$suti" bench tower --batch 16 --batches 4 --no-composed --json > "$out/tower.json"
# PyTorch 1.12.1's MKL (2020.0) runs its AVX2 and AVX-512 kernels only on Intel CPUs and a generic
# path elsewhere (half the speed on an AMD EPYC with AVX-512), and ATen picked AVX2 there. So that
# the twin is PyTorch at its best, as an Intel CPU with the same vector features would run it, MKL's
# kernels are forced on other vendors' CPUs (MKL_DEBUG_CPU_TYPE: 5 = AVX2, 7 = AVX-512; MKL 2020.0
# still reads it), and ATen's AVX-512 kernels with them. TWIN_CPU_TUNING: auto (that, the default),
# avx2 (both capped at AVX2 on any CPU, to stand in for an AVX2-only one), off (as installed).
twin_env=()
case "${TWIN_CPU_TUNING:-auto}" in
  auto)
    if ! grep -q GenuineIntel /proc/cpuinfo; then
      if grep -qw avx512f /proc/cpuinfo; then
        twin_env=(MKL_DEBUG_CPU_TYPE=7 ATEN_CPU_CAPABILITY=avx512)
      elif grep -qw avx2 /proc/cpuinfo; then
        twin_env=(MKL_DEBUG_CPU_TYPE=5)
      fi
    fi ;;
  avx2) twin_env=(MKL_DEBUG_CPU_TYPE=5 MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2) ;;
  off) ;;
  *) echo "TWIN_CPU_TUNING must be auto, avx2 or off" >&2; exit 2 ;;
esac
for preset in ${presets//,/ }; do
  env "${twin_env[@]}" "$venv/bin/python" benches/reference/dit_twin.py --threads "$threads" --preset "$preset" \
    --batch 32 --steps 5 --sample-images 4 --sample-steps 25 --json > "$out/twin-$preset.json"
done
env "${twin_env[@]}" "$venv/bin/python" benches/reference/tower_twin.py --threads "$threads" --batch 16 --batches 4 \
  --json > "$out/tower-twin.json"
"$venv/bin/python" - "$out" "$presets" "${twin_env[*]}" <<'EOF'
import json, sys
out, presets, twin_env = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
load = lambda name: json.load(open(f"{out}/{name}.json"))
train, sample, tower = load("train"), load("sample"), load("tower")
machine = train["machine"]
print(f"machine: {machine['cpu']}")
print(f"vector features: {' '.join(machine['vector_features'])}; matmul: {machine['matmul_backend']}; "
      f"threads: {machine['threads']}")
print(f"PyTorch: {twin_env or 'as installed'}")
print(f"{'measure':<34} {'suti (candle)':>14} {'PyTorch':>12} {'ratio':>7}")
rows = []
for preset in presets:
    twin = load(f"twin-{preset}")
    t = next(r for r in train["results"] if r["preset"] == preset)
    s = next(r for r in sample["results"] if r["preset"] == preset)
    rows.append((f"train {preset} (img/s, batch 32)", t["images_per_second"],
                 twin["train_images_per_second"], t["images_per_second"] / twin["train_images_per_second"]))
    # Sampling: lower is better, so the ratio is PyTorch's time over candle's.
    rows.append((f"sample {preset} (ms, 4 img x 25 steps)", s["text_only_ms"], twin["sample_ms"],
                 twin["sample_ms"] / s["text_only_ms"]))
twin = load("tower-twin")
fast = next(r for r in tower["results"] if r.get("path") == "channels_last_kernels")
rows.append(("image tower (img/s, batch 16, 224)", fast["images_per_second"],
             twin["images_per_second"], fast["images_per_second"] / twin["images_per_second"]))
for name, ours, theirs, ratio in rows:
    print(f"{name:<34} {ours:>14.1f} {theirs:>12.1f} {ratio:>6.2f}x")
EOF
