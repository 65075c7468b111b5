#!/usr/bin/env bash
# Brings the whole local stack up in the background, or down again:
#   scripts/stack.sh up     setup, fetch the default model, build, then start
#                           nats-server :4222, gpu-worker (candle, default model, metrics :8002),
#                           gateway :8000 (metrics :8001), Prometheus :9090, Alertmanager :9093
#   scripts/stack.sh down   stop everything it started
#   scripts/stack.sh status
# Logs and data live under .run/. Running `up` again restarts what is not running.
# Env: CODER_BACKEND=synthetic serves the synthetic backend instead of the model (no download).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN=$REPO/.run
MODEL=${CODER_MODEL:-qwen2.5-coder-1.5b-instruct}
BACKEND=${CODER_BACKEND:-candle}
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

up() {
  scripts/setup.sh
  [ "$BACKEND" = synthetic ] || scripts/fetch-model.sh
  log "building (cargo build --workspace)"
  cargo build --workspace --quiet
  mkdir -p "$RUN/nats" "$RUN/monitoring"
  start nats .venv/bin/nats-server -c nats/config/single.conf -sd "$RUN/nats"
  start worker target/debug/gpu-worker --nats-url nats://127.0.0.1:4222 --metrics-listen 127.0.0.1:8002 \
    --backend "$BACKEND" --model "$MODEL"
  start gateway target/debug/gateway --nats-url nats://127.0.0.1:4222 --listen 127.0.0.1:8000 \
    --metrics-listen 127.0.0.1:8001 --models "$MODEL"
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
Prometheus http://127.0.0.1:9090, Alertmanager http://127.0.0.1:9093. Try:

  curl -s http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{"model": "$MODEL", "messages": [{"role": "user", "content": "Write a Python function that reverses a string."}], "max_tokens": 96}'

Stop it with: scripts/stack.sh down
MSG
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
