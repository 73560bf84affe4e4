#!/usr/bin/env bash
# Create .venv with the pinned stack and the project (editable). Idempotent: a second call is quick.
# torch/torchvision are pinned to the builds that lie on this machine's disk (see DEVELOPERS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.adapmtl-installed
want=$(cat pyproject.toml requirements.lock | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first, alone: its own line keeps pip on the local wheel instead of resolving a CUDA download.
  .venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
  .venv/bin/python -m pip install -q -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
fi
# AdapMTL's fused CPU kernel (trainers/soft_threshold_kernel.py): compiled once per machine into torch's
# extension cache (~1 min with g++ and ninja), so that no trial pays for it; later calls only load it
# (~4 s, most of it importing torch). Where it cannot be built, it says why and the stock torch ops serve (never an install failure).
.venv/bin/python -m trainers.soft_threshold_kernel
