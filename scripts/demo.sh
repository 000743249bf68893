#!/usr/bin/env bash
# The main job: set up .venv if needed, then run the demo (synthetic data, FNAC vs EZ-VSL, baselines).
# Extra arguments go to `fnac demo` (e.g. --out DIR, --seed N, --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/fnac demo "$@"
