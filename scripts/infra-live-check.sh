#!/usr/bin/env bash
# The monitoring checked against the real binaries: starts nats-server, a synthetic gpu-worker and
# the gateway on free ports, then runs infra/tests/live_stack.sh against them (a real Prometheus
# evaluating every rule and dashboard query, and a second one federating the first).
# Needs `cargo build --workspace` first. Stops everything it started on exit.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
MODEL=synthetic
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nats_port=$(port); api=$(port); gateway_metrics=$(port); worker_metrics=$(port)

.venv/bin/nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$work/nats" >"$work/nats.log" 2>&1 &
pids+=($!)
target/debug/gpu-worker --nats-url "nats://127.0.0.1:$nats_port" --metrics-listen "127.0.0.1:$worker_metrics" \
  --backend synthetic --model "$MODEL" --synthetic-ms-per-token 5 --concurrency 4 >"$work/worker.log" 2>&1 &
pids+=($!)
target/debug/gateway --nats-url "nats://127.0.0.1:$nats_port" --listen "127.0.0.1:$api" \
  --metrics-listen "127.0.0.1:$gateway_metrics" --models "$MODEL" >"$work/gateway.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$api/v1/models" 2>/dev/null | grep -q "\"$MODEL\"" && break
  sleep 0.2
done

GATEWAY_METRICS="127.0.0.1:$gateway_metrics" WORKER_METRICS="127.0.0.1:$worker_metrics" \
  GATEWAY_URL="http://127.0.0.1:$api" MODEL=$MODEL infra/tests/live_stack.sh
