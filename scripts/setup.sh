#!/usr/bin/env bash
# Sets up a fresh checkout: .venv in the repository root with the project (editable, with its
# `clearingd` console command and the dev tools) and the pinned npm tools (anvil, solcjs).
# Idempotent: a second run only checks that everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml setup.py bridges/_keccak.c | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  .venv/bin/python -m pip check
  rm -f .venv/.installed-* && touch "$stamp"
fi
if [ ! -x node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil ] || [ ! -f node_modules/solc/soljson.js ]; then
  # `npm ci` refuses this lock file (npm omits the other platforms' optional anvil binaries from it);
  # package.json pins exact versions, so a plain install is reproducible.
  npm install --no-audit --no-fund --loglevel=error
fi
# System tools of the monitoring and web-view tests: promtool (Debian's `prometheus` package) checks
# the alert rules, headless Chromium renders the node's web view. Installed only when missing.
missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    started=$(date +%s)
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    echo "setup: installed ${missing[*]} in $(( $(date +%s) - started ))s" >&2
  else
    echo "setup: missing ${missing[*]} (apt-get as root needed); their tests will be skipped" >&2
  fi
fi
echo "setup: ok ($(.venv/bin/python --version), anvil $(node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil --version | head -n1 | awk '{print $3}'))" >&2
