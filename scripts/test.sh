#!/usr/bin/env bash
# Run the lint and format check and the whole test suite (sets up .venv first if needed). Extra
# arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_browser.sh || echo "[test] headless chromium unavailable: browser tests will be skipped" >&2
# lint and format check first (ruff, pinned in requirements.txt, configured in pyproject.toml)
.venv/bin/ruff check src tests bench experiments
.venv/bin/ruff format --check --quiet src tests bench experiments || {
  echo "[test] formatting differs: run .venv/bin/ruff format src tests bench experiments" >&2; exit 1; }
exec .venv/bin/python -m pytest "$@"
