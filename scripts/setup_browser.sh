#!/usr/bin/env bash
# Headless Chromium (Debian's package) and playwright-core (npm) for the demo page's browser test.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing Debian's chromium for browser tests" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    exit 1
  fi
fi
if [ ! -d node_modules/playwright-core ] && command -v npm >/dev/null 2>&1; then
  echo "[setup] installing playwright-core (npm) to drive chromium" >&2
  npm install --no-save --silent --no-audit --no-fund playwright-core@1 >/dev/null
fi
