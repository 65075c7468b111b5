#!/usr/bin/env bash
# Prometheus (:9090) and Alertmanager (:9093) beside a local stack (gateway :8001, worker
# :8002), with the repository's configs; data under .run/. Ctrl-C stops both.
#   infra/run_monitoring.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/tests/lib.sh"
ensure_prometheus_tools

data=$REPO/.run/monitoring
mkdir -p "$data"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait' EXIT INT TERM

prometheus --config.file="$INFRA/prometheus/prometheus.yml" --storage.tsdb.path="$data/prometheus" \
  --web.listen-address=127.0.0.1:9090 --web.enable-lifecycle >"$data/prometheus.log" 2>&1 &
pids+=($!)
prometheus-alertmanager --config.file="$INFRA/alertmanager/alertmanager.yml" \
  --storage.path="$data/alertmanager" --web.listen-address=127.0.0.1:9093 \
  --cluster.listen-address= >"$data/alertmanager.log" 2>&1 &
pids+=($!)

wait_until 30 curl -fsS http://127.0.0.1:9090/-/ready || { tail "$data/prometheus.log"; exit 1; }
wait_until 30 curl -fsS http://127.0.0.1:9093/-/ready || { tail "$data/alertmanager.log"; exit 1; }
echo "Prometheus http://127.0.0.1:9090  Alertmanager http://127.0.0.1:9093  (logs: $data)"
echo "reload configs: curl -X POST http://127.0.0.1:9090/-/reload   stop: Ctrl-C"
wait
