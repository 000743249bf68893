#!/usr/bin/env bash
# Create (or refresh) the local virtual environment .venv with the pinned, tested dependency set.
# Idempotent: does nothing when .venv already matches requirements.txt and pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
stamp=.venv/.fnac-stamp
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/python ]; then
  exit 0
fi
echo "[setup] creating .venv with the pinned dependency set (requirements.txt)" >&2
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
.venv/bin/python - <<'PY'
import torch
assert torch.version.cuda is None, f"expected the CPU build of torch, got CUDA {torch.version.cuda}"
print(f"[setup] torch {torch.__version__} (CPU build) ready", flush=True)
PY
echo "$want" > "$stamp"
