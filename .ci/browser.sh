#!/usr/bin/env bash
# Headless chromium for the HTML report test (tests/test_html_report.py), like .ci/slurm/cluster.sh
# for the SLURM tests: the test calls `install` when no browser is found.
#
#   .ci/browser.sh path      # print the browser's path ($FEWSHOT_CHROMIUM or chromium on PATH); rc 1 if none
#   .ci/browser.sh install   # apt-get Debian's chromium if missing (root + apt-get), then print its path
set -euo pipefail

log() { echo "[browser.sh] $*" >&2; }

find_browser() {
  local b
  if [ -n "${FEWSHOT_CHROMIUM:-}" ]; then
    [ -x "$FEWSHOT_CHROMIUM" ] || command -v "$FEWSHOT_CHROMIUM" >/dev/null 2>&1 || return 1
    command -v "$FEWSHOT_CHROMIUM"; return 0
  fi
  for b in chromium chromium-browser google-chrome-stable google-chrome; do
    if command -v "$b" >/dev/null 2>&1; then command -v "$b"; return 0; fi
  done
  return 1
}

cmd_install() {
  if find_browser; then return 0; fi
  if [ -n "${FEWSHOT_CHROMIUM:-}" ]; then log "FEWSHOT_CHROMIUM=$FEWSHOT_CHROMIUM is not an executable"; return 1; fi
  if [ "$(id -u)" != 0 ]; then log "installing chromium needs root (or set FEWSHOT_CHROMIUM)"; return 1; fi
  command -v apt-get >/dev/null || { log "apt-get not available"; return 1; }
  log "installing chromium via apt-get (~1 min)"
  local out; out=$(mktemp)
  # flock: one of our apt-get runs at a time (.ci/run starts this and .ci/slurm/cluster.sh's early, beside pip)
  if ! ( flock 8 && apt-get -o DPkg::Lock::Timeout=120 update -qq &&
         DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 install -y -qq \
           --no-install-recommends chromium ) 8>/tmp/fewshot-apt.lock >"$out" 2>&1; then
    tail -n 40 "$out" >&2; rm -f "$out"; return 1
  fi
  rm -f "$out"
  find_browser
}

case "${1:-}" in
  path) find_browser ;;
  install) cmd_install ;;
  *) echo "usage: $0 path|install" >&2; exit 2 ;;
esac
