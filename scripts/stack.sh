#!/usr/bin/env bash
# Brings the whole local stack up in the background, or down again:
#   scripts/stack.sh up     setup, fetch the default model, build, then start
#                           nats-server :4222, gpu-worker (candle, default model, metrics :8002),
#                           gateway :8000 (metrics :8001), Prometheus :9090, Alertmanager :9093
#   scripts/stack.sh down   stop everything it started
#   scripts/stack.sh status
# Logs and data live under .run/. Running `up` again restarts what is not running.
# NATS runs secured (nats/config/single.conf): users per role with passwords made once into
# .run/nats-secrets.env, and mutual TLS with a local CA from scripts/nats-pki.sh (.run/nats-pki);
# the gateway and the worker get their user's password (CODER_NATS_PASSWORD) and certificates.
# Env: CODER_BACKEND=synthetic serves the synthetic backend instead of the model (no download).
#      CODER_NATS_INSECURE=1 runs NATS without users or TLS (nats/config/single-insecure.conf),
#      for local development only; `down` first when switching.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN=$REPO/.run
MODEL=${CODER_MODEL:-qwen2.5-coder-1.5b-instruct}
BACKEND=${CODER_BACKEND:-candle}
INSECURE=${CODER_NATS_INSECURE:-0}
PKI=$RUN/nats-pki
SECRETS=$RUN/nats-secrets.env
cd "$REPO"

log() { printf 'stack: %s\n' "$*" >&2; }

running() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

start() { # start NAME COMMAND...: run in the background unless already running
  local name=$1; shift
  if running "$name"; then log "$name already running (pid $(cat "$RUN/$name.pid"))"; return; fi
  "$@" >"$RUN/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
  log "$name started (pid $!, log .run/$name.log)"
}

wait_http() { # wait_http NAME URL SECONDS
  local deadline=$((SECONDS + $3))
  until curl -fsS -o /dev/null "$2" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ] || ! running "$1"; then
      log "$1 did not come up; last lines of .run/$1.log:"; tail -n 20 "$RUN/$1.log" >&2; exit 1
    fi
    sleep 0.5
  done
}

secrets() { # the NATS users' passwords, made once
  if [ ! -s "$SECRETS" ]; then
    (
      umask 077
      for role in GATEWAY WORKER MONITOR; do
        echo "NATS_${role}_PASSWORD=$(openssl rand -hex 24)"
      done >"$SECRETS"
    )
    log "NATS passwords written to .run/nats-secrets.env"
  fi
  # shellcheck disable=SC1090
  set -a; source "$SECRETS"; set +a
}

# The flags a service of role $1 connects to NATS with (its password goes in the environment).
nats_flags() {
  if [ "$INSECURE" = 1 ]; then
    echo --nats-url nats://127.0.0.1:4222
  else
    echo --nats-url tls://127.0.0.1:4222 --nats-user "$1" --nats-tls-ca "$PKI/ca.pem" \
      --nats-tls-cert "$PKI/$1.pem" --nats-tls-key "$PKI/$1-key.pem"
  fi
}

# start_service ROLE COMMAND...: starts the service named ROLE (gateway, worker) with that NATS
# user's flags and, secured, its password in CODER_NATS_PASSWORD (not on the command line).
start_service() {
  local role=$1; shift
  # shellcheck disable=SC2046 # the flags are words without spaces (paths under the repository)
  if [ "$INSECURE" = 1 ]; then
    start "$role" "$@" $(nats_flags "$role")
  else
    local password="NATS_${role^^}_PASSWORD"
    # shellcheck disable=SC2046
    CODER_NATS_PASSWORD=${!password} start "$role" "$@" $(nats_flags "$role")
  fi
}

start_nats() {
  if [ "$INSECURE" = 1 ]; then
    log "NATS WITHOUT users or TLS (CODER_NATS_INSECURE=1): for local development only"
    start nats .venv/bin/nats-server -c nats/config/single-insecure.conf -sd "$RUN/nats"
    return
  fi
  scripts/nats-pki.sh "$PKI"
  secrets
  NATS_SERVER_TLS_CERT=$PKI/server.pem NATS_SERVER_TLS_KEY=$PKI/server-key.pem \
    NATS_SERVER_TLS_CA=$PKI/ca.pem start nats .venv/bin/nats-server -c nats/config/single.conf -sd "$RUN/nats"
}

up() {
  scripts/setup.sh
  [ "$BACKEND" = synthetic ] || scripts/fetch-model.sh
  log "building (cargo build --workspace)"
  cargo build --workspace --quiet
  mkdir -p "$RUN/nats" "$RUN/monitoring"
  start_nats
  # The gateway first: it creates the streams, which the worker user may not (it would wait).
  start_service gateway target/debug/gateway --listen 127.0.0.1:8000 --metrics-listen 127.0.0.1:8001 \
    --models "$MODEL"
  start_service worker target/debug/gpu-worker --metrics-listen 127.0.0.1:8002 --backend "$BACKEND" \
    --model "$MODEL"
  start prometheus prometheus --config.file=infra/prometheus/prometheus.yml \
    --storage.tsdb.path="$RUN/monitoring/prometheus" --web.listen-address=127.0.0.1:9090 --web.enable-lifecycle
  start alertmanager prometheus-alertmanager --config.file=infra/alertmanager/alertmanager.yml \
    --storage.path="$RUN/monitoring/alertmanager" --web.listen-address=127.0.0.1:9093 --cluster.listen-address=
  wait_http gateway http://127.0.0.1:8000/readyz 60
  wait_http prometheus http://127.0.0.1:9090/-/ready 30
  wait_http alertmanager http://127.0.0.1:9093/-/ready 30
  log "waiting for the worker to load $MODEL and announce itself"
  local deadline=$((SECONDS + 180))
  until curl -fsS http://127.0.0.1:8000/v1/models | grep -q "\"$MODEL\""; do
    running worker || { log "the worker exited:"; tail -n 20 "$RUN/worker.log" >&2; exit 1; }
    [ "$SECONDS" -lt "$deadline" ] || { log "the worker did not announce itself"; exit 1; }
    sleep 1
  done
  cat <<MSG

The stack is up: gateway http://127.0.0.1:8000 (metrics :8001), worker metrics :8002,
Prometheus http://127.0.0.1:9090, Alertmanager http://127.0.0.1:9093, NATS $(nats_state). Try:

  curl -s http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{"model": "$MODEL", "messages": [{"role": "user", "content": "Write a Python function that reverses a string."}], "max_tokens": 96}'

Stop it with: scripts/stack.sh down
MSG
}

nats_state() {
  if [ "$INSECURE" = 1 ]; then echo "nats://127.0.0.1:4222 (no users, no TLS)"
  else echo "tls://127.0.0.1:4222 (users and passwords in .run/nats-secrets.env, certificates in .run/nats-pki)"; fi
}

down() {
  local name
  for name in gateway worker alertmanager prometheus nats; do
    if running "$name"; then
      kill -TERM "$(cat "$RUN/$name.pid")" && log "$name stopping"
    fi
    rm -f "$RUN/$name.pid"
  done
}

status() {
  local name
  for name in nats worker gateway prometheus alertmanager; do
    if running "$name"; then echo "$name: running (pid $(cat "$RUN/$name.pid"))"; else echo "$name: stopped"; fi
  done
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: scripts/stack.sh [up|down|status]" >&2; exit 2 ;;
esac
