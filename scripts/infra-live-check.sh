#!/usr/bin/env bash
# The monitoring checked against the real binaries: starts nats-server, a synthetic gpu-worker and
# the gateway on free ports, then runs infra/tests/live_stack.sh against them (a real Prometheus
# evaluating every rule and dashboard query, a second one federating the first, a third on the
# file_sd configuration).
# The synthetic worker has no GPU, so metrics-common's gpu_fixture example (the crate's exporter
# and GPU gauges with fixed readings, labelled for the same model) is scraped as a second
# coder-worker target: GPU panels and rules are evaluated on data, none exempt. On a machine where
# the worker reads a GPU through NVML, GPU_FIXTURE=0 leaves the fixture out.
# Needs `cargo build --workspace --all-targets` first (the binaries and the example). Stops
# everything it started on exit.
set -euo pipefail
# shellcheck source=infra/tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../infra/tests/lib.sh" # REPO, free_port, wait_until
cd "$REPO"
MODEL=synthetic
work=$(mktemp -d)
pids=()
cleanup() { # newest first, each gone before the next: NATS outlives the services that drain into it
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

nats_port=$(free_port); api=$(free_port); gateway_metrics=$(free_port)
worker_metrics=$(free_port); gpu_metrics=$(free_port)
for binary in target/debug/gateway target/debug/gpu-worker target/debug/examples/gpu_fixture; do
  [ -x "$binary" ] || { echo "missing $binary: run cargo build --workspace --all-targets" >&2; exit 1; }
done

.venv/bin/nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$work/nats" >"$work/nats.log" 2>&1 &
pids+=($!)
target/debug/gpu-worker --nats-url "nats://127.0.0.1:$nats_port" --metrics-listen "127.0.0.1:$worker_metrics" \
  --backend synthetic --model "$MODEL" --synthetic-ms-per-token 5 --concurrency 4 >"$work/worker.log" 2>&1 &
pids+=($!)
target/debug/gateway --nats-url "nats://127.0.0.1:$nats_port" --listen "127.0.0.1:$api" \
  --metrics-listen "127.0.0.1:$gateway_metrics" --models "$MODEL" >"$work/gateway.log" 2>&1 &
pids+=($!)
worker_targets="127.0.0.1:$worker_metrics"
if [ "${GPU_FIXTURE:-1}" != 0 ]; then
  target/debug/examples/gpu_fixture --metrics-listen "127.0.0.1:$gpu_metrics" --model "$MODEL" \
    >"$work/gpu_fixture.log" 2>&1 &
  pids+=($!)
  worker_targets+=",127.0.0.1:$gpu_metrics"
fi
model_listed() { curl -fsS "http://127.0.0.1:$api/v1/models" | grep -q "\"$MODEL\""; }
wait_until 20 model_listed || true # live_stack.sh says what is missing

GATEWAY_METRICS="127.0.0.1:$gateway_metrics" WORKER_METRICS="$worker_targets" \
  GATEWAY_URL="http://127.0.0.1:$api" MODEL=$MODEL infra/tests/live_stack.sh
