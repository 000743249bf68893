#!/usr/bin/env bash
# Create (or refresh) the local virtual environment .venv with the pinned, tested dependency set.
# Idempotent: does nothing when .venv already matches requirements.txt, pyproject.toml and the index
# settings below.
#
# torch is pinned (torch==2.13.0) in the same pip command as everything else, so pip takes whichever
# build of that version the configured indexes offer:
#   - a machine whose pip has a local CPU wheel (find-links) gets that CPU build;
#   - a Linux machine that sees only the public index gets the default (CUDA) build, which also runs on
#     the CPU; with an NVIDIA GPU, `train.device=auto` then trains on it;
#   - FNAC_TORCH_INDEX=URL adds a PyTorch wheel index to that pip command (for example the CPU-only
#     index of the PyTorch project, to avoid the large CUDA download on a machine without a GPU).
# PYTHON=/path/to/python chooses the interpreter the venv is made from.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
stamp=.venv/.fnac-stamp
want=$( (cat requirements.txt pyproject.toml; echo "torch-index=${FNAC_TORCH_INDEX:-}") | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/python ]; then
  exit 0
fi
echo "[setup] creating .venv with the pinned dependency set (requirements.txt)" >&2
[ -x .venv/bin/python ] || "$PY" -m venv .venv
extra=()
if [ -n "${FNAC_TORCH_INDEX:-}" ]; then
  echo "[setup] also looking for torch in $FNAC_TORCH_INDEX (FNAC_TORCH_INDEX)" >&2
  extra=(--extra-index-url "$FNAC_TORCH_INDEX")
fi
.venv/bin/python -m pip install -q --disable-pip-version-check "${extra[@]}" -r requirements.txt
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
# Say which torch was installed and what it will run on; never refuse a working torch.
.venv/bin/python - <<'PY'
import torch

build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
try:
    gpu = torch.cuda.is_available()
except Exception:  # noqa: BLE001 - a driver problem only means: no GPU for us
    gpu = False
where = f"GPU available: {torch.cuda.get_device_name(0)}" if gpu else "no GPU visible: training runs on the CPU"
print(f"[setup] torch {torch.__version__} ({build}); {where}", flush=True)
PY
echo "$want" > "$stamp"
