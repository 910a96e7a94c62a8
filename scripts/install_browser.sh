#!/usr/bin/env bash
# Make sure a Chromium exists for the browser tests (tests/browser: JupyterLab driven by Playwright).
#
# Idempotent and fast when Chromium is already there. Installs Debian's `chromium` package with apt
# when it is missing and we are root. Where that is impossible (not root, no apt-get) it prints
# what to install and exits 0: `make test` then still runs, and the browser tests FAIL with the
# same advice (they are never skipped silently). `make test-fast` does not run them.
#
# Playwright's own browser download (`playwright install`) is not used: the tests drive the
# system Chromium. Set CHROMIUM=/path/to/chromium to use another Chromium-based browser.
set -uo pipefail

find_chromium() {
  if [ -n "${CHROMIUM:-}" ]; then
    [ -x "$CHROMIUM" ] && echo "$CHROMIUM"
    return
  fi
  for c in /usr/bin/chromium /usr/bin/chromium-browser; do
    if [ -x "$c" ]; then echo "$c"; return; fi
  done
}

if [ -n "$(find_chromium)" ]; then
  exit 0
fi

advice="Chromium is missing, so the browser tests (tests/browser) cannot run.
Install it, then run 'make test' again:
  Debian/Ubuntu:  sudo apt-get install -y chromium   (Ubuntu: chromium-browser)
  Fedora:         sudo dnf install -y chromium
  macOS:          brew install --cask chromium, then: export CHROMIUM=\"/Applications/Chromium.app/Contents/MacOS/Chromium\"
or point CHROMIUM at any Chromium/Chrome binary. ('make test-fast' skips the browser tests.)"

if [ -n "${CHROMIUM:-}" ]; then
  echo ">> CHROMIUM=$CHROMIUM is not an executable file." >&2
  echo "$advice" >&2
  exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo ">> WARNING: $advice" >&2
  exit 0
fi

echo ">> installing Chromium for the browser tests (apt-get install chromium, about 20 s)"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q chromium >/tmp/install_browser.$$.log 2>&1; then
  # Stale or empty package lists: refresh them once and retry.
  apt-get update -q >>/tmp/install_browser.$$.log 2>&1
  if ! apt-get install -y -q chromium >>/tmp/install_browser.$$.log 2>&1; then
    tail -n 20 /tmp/install_browser.$$.log >&2
    rm -f /tmp/install_browser.$$.log
    echo ">> WARNING: apt-get could not install chromium. $advice" >&2
    exit 0
  fi
fi
rm -f /tmp/install_browser.$$.log
echo ">> $("$(find_chromium)" --version 2>/dev/null || echo chromium) installed"
