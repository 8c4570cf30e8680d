#!/usr/bin/env bash
# `make install`: Debian's chromium for the browser tests (Playwright drives it; no browser
# is ever downloaded). Installed with apt-get when this user may (root, or sudo without a
# password); otherwise one line says exactly what to run. Never fails the install:
# `make run` needs no browser.
set -uo pipefail
log=${CHROMIUM_LOG:-.venv/apt.log}

if [[ -n ${CHROMIUM:-} ]] || command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "The browser tests need Chromium: install your system's chromium package," \
    "or set CHROMIUM=/path/to/chromium."
  exit 0
fi
if [[ $(id -u) == 0 ]]; then
  sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "The browser tests need Chromium. Run: sudo apt-get install -y chromium"
  exit 0
fi
echo "Installing Debian's chromium for the browser tests (apt-get, log: $log)"
if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends chromium; } >"$log" 2>&1; then
  echo "apt-get could not install chromium (see $log). Run: sudo apt-get install -y chromium"
fi
exit 0
