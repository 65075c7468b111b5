#!/usr/bin/env bash
# Live checks of the monitoring against a running gateway and worker (started by the caller):
#   GATEWAY_METRICS=127.0.0.1:8001 WORKER_METRICS=127.0.0.1:8002 \
#   GATEWAY_URL=http://127.0.0.1:8000 MODEL=qwen2.5-coder-1.5b-instruct infra/tests/live_stack.sh
# WORKER_METRICS may list several coder-worker targets, comma-separated (the first must be a
# gpu-worker; scripts/infra-live-check.sh adds metrics-common's gpu_fixture where no GPU is).
#
# 1. starts a cluster Prometheus (temp dir, free port, 1 s scrape and evaluation) with the
#    repository's prometheus.yml jobs and rule files, scraping those addresses;
# 2. sends traffic to the gateway for the rest of the run: completions (plain, streaming,
#    chat), an unknown model, an unmatched route and a malformed body (so error panels have
#    data);
# 3. checks the targets are up, every rule evaluates without error, the GPU rules have data
#    (GpuMemoryHigh pending for exactly the GPUs above 95%), and every dashboard query returns
#    data (check_dashboard.py; GPU panels included: zero series is a failure), and so does
#    each prometheus-adapter query the HPA scales on (check_adapter_queries.py); every
#    coder_*/nvidia_gpu_* name scraped is in catalogue.py (check_catalogue.py --scraped);
# 4. starts a global Prometheus from federation.yml, its target rewritten to the cluster
#    server, and checks it holds the federated recording-rule series and no raw series;
# 5. starts a Prometheus with prometheus.yml's file_sd job on a copy of
#    targets/fleet.json.example plus a file naming the live gateway and worker, and checks the
#    job and instance labels Prometheus gives them (check_file_sd.py).
# Everything it starts is stopped on exit. Last line: "live stack checks: N passed, M failed".
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${GATEWAY_METRICS:?set GATEWAY_METRICS=host:port of the gateway's /metrics}"
: "${WORKER_METRICS:?set WORKER_METRICS=host:port of the worker's /metrics (several: comma-separated)}"
: "${GATEWAY_URL:?set GATEWAY_URL=http://host:port of the gateway API}"
: "${MODEL:?set MODEL=the model the worker serves}"

ensure_prometheus_tools
ensure_python_tools

work=$(mktemp -d)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

passed=0
failed=0
check() { # check NAME COMMAND...: run one check and count it.
  local name=$1; shift
  if "$@"; then
    passed=$((passed + 1)); echo "PASS  $name"
  else
    failed=$((failed + 1)); echo "FAIL  $name"
  fi
}

# series_count PORT EXPR: how many series an instant query returns (-1 on error).
series_count() {
  curl -fsS --get --data-urlencode "query=$2" "http://127.0.0.1:$1/api/v1/query" 2>/dev/null |
    "$PY" -c 'import json, sys; print(len(json.load(sys.stdin)["data"]["result"]))' 2>/dev/null ||
    echo -1
}
has_series() { [ "$(series_count "$1" "$2")" -gt 0 ]; }

start_prometheus() { # start_prometheus NAME CONFIG PORT
  prometheus --config.file="$2" --storage.tsdb.path="$work/$1-data" \
    --web.listen-address="127.0.0.1:$3" --log.level=warn >"$work/$1.log" 2>&1 &
  pids+=($!)
  wait_until 30 curl -fsS "http://127.0.0.1:$3/-/ready"
}

# --- cluster Prometheus ------------------------------------------------------------------
cluster_port=$(free_port)
"$PY" "$INFRA_TESTS/render_live_config.py" cluster "$work/cluster.yml" "$GATEWAY_METRICS" "$WORKER_METRICS"
check "cluster Prometheus ready on :$cluster_port" start_prometheus cluster "$work/cluster.yml" "$cluster_port"

# --- traffic -------------------------------------------------------------------------------
body() { "$PY" -c 'import json, sys; print(json.dumps(json.loads(sys.argv[1]) | {"model": sys.argv[2]}))' "$1" "$2"; }
completion=$(body '{"prompt": "def f():", "max_tokens": 4}' "$MODEL")
streaming=$(body '{"prompt": "def f():", "max_tokens": 4, "stream": true}' "$MODEL")
chat=$(body '{"messages": [{"role": "user", "content": "def f():"}], "max_tokens": 4}' "$MODEL")
unknown=$(body '{"prompt": "def f():", "max_tokens": 4}' "no-such-model")
post() { curl -sS -o /dev/null -w '%{http_code}' -m 300 -H 'content-type: application/json' -d "$2" "$GATEWAY_URL$1" 2>/dev/null || true; }

first_completion() {
  local code
  code=$(post /v1/completions "$completion")
  echo "      POST /v1/completions -> $code"
  [ "$code" = 200 ]
}
check "gateway answers a completion for $MODEL" first_completion

traffic() {
  while :; do
    post /v1/completions "$completion" >/dev/null
    post /v1/completions "$streaming" >/dev/null
    post /v1/chat/completions "$chat" >/dev/null
    post /v1/completions "$unknown" >/dev/null            # 404, model_name="unknown"
    post /v1/completions '{"model": ' >/dev/null           # 400, malformed JSON
    post /v1/no-such-route '{}' >/dev/null                 # 404, endpoint="unmatched"
    curl -sS -o /dev/null -m 10 "$GATEWAY_URL/v1/models" 2>/dev/null || true
    sleep 0.5
  done
}
traffic &
pids+=($!)

IFS=, read -ra workers <<<"$WORKER_METRICS"
targets_up() {
  [ "$(series_count "$cluster_port" 'up{job=~"coder-gateway|coder-worker"} == 1')" = $((1 + ${#workers[@]})) ]
}
check "gateway and ${#workers[@]} worker target(s) up" wait_until 30 targets_up

# --- rules -------------------------------------------------------------------------------
rules_healthy() { # every rule evaluated at least once, none with an error
  curl -fsS "http://127.0.0.1:$cluster_port/api/v1/rules" | "$PY" -c '
import json, sys
groups = json.load(sys.stdin)["data"]["groups"]
rules = [r for g in groups for r in g["rules"]]
bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] == "err"]
for name, error in bad:
    print(f"      rule {name}: {error}", file=sys.stderr)
sys.exit(0 if rules and not bad and all(r["health"] == "ok" for r in rules) else 1)'
}
check "recording rules produce series" wait_until 60 has_series "$cluster_port" 'model:coder_model_requests:rate5m'
sleep 3
check "every rule evaluates without error" wait_until 20 rules_healthy

# --- GPU rules -----------------------------------------------------------------------------
# On real exposition (an NVML worker, or metrics-common's gpu_fixture): the recording rules
# have data, and GpuMemoryHigh is pending or firing for exactly the GPUs above 95%, none else.
gpu_key='model_name, instance, gpu_id'
gpu_full="max by ($gpu_key) (nvidia_gpu_memory_used_bytes / (nvidia_gpu_memory_total_bytes > 0)) > 0.95"
gpu_alerts='ALERTS{alertname="GpuMemoryHigh"}'
gpu_alerts_match() {
  [ "$(series_count "$cluster_port" "($gpu_full) unless on ($gpu_key) $gpu_alerts")" = 0 ] &&
    [ "$(series_count "$cluster_port" "$gpu_alerts unless on ($gpu_key) ($gpu_full)")" = 0 ]
}
check "worker targets expose nvidia_gpu_* gauges" \
  has_series "$cluster_port" "nvidia_gpu_memory_used_bytes{job=\"coder-worker\",model_name=\"$MODEL\"}"
check "GPU recording rules produce series" wait_until 20 has_series "$cluster_port" \
  "model:nvidia_gpu_memory_used_bytes:max_ratio and on (model_name) model:nvidia_gpu_utilization_ratio:avg"
check "GpuMemoryHigh pending for exactly the GPUs above 95% ($(series_count "$cluster_port" "$gpu_full") now)" \
  wait_until 20 gpu_alerts_match

# --- dashboard -----------------------------------------------------------------------------
check "every dashboard query returns data" \
  "$PY" "$INFRA_TESTS/check_dashboard.py" "http://127.0.0.1:$cluster_port" \
  "$INFRA/grafana/dashboards/coder-overview.json" --model "$MODEL" --wait 60

check "every coder_/nvidia_gpu_ name scraped is in catalogue.py" \
  "$PY" "$INFRA_TESTS/check_catalogue.py" --scraped "http://127.0.0.1:$cluster_port"

# --- autoscaling ---------------------------------------------------------------------------
check "prometheus-adapter's HPA queries return the model's value" \
  "$PY" "$INFRA_TESTS/check_adapter_queries.py" "http://127.0.0.1:$cluster_port" "$MODEL"

# --- federation ----------------------------------------------------------------------------
global_port=$(free_port)
"$PY" "$INFRA_TESTS/render_live_config.py" global "$work/global.yml" "127.0.0.1:$cluster_port"
check "global Prometheus ready on :$global_port" start_prometheus global "$work/global.yml" "$global_port"

federated() {
  local name
  for name in model:coder_model_requests:rate5m model:coder_model_requests_errors:ratio_rate5m \
    model:coder_model_request_duration_seconds:p95_rate5m model:coder_queue_pending_requests:max \
    model:coder_worker_slots:sum model:coder_worker_prefix_cache_hits:ratio_rate5m \
    model:nvidia_gpu_memory_used_bytes:max_ratio \
    job:coder_model_requests:rate5m job:up:sum; do
    has_series "$global_port" "${name}{cluster=\"live-test\"}" || return 1
  done
}
check "global Prometheus holds the federated recording rules" wait_until 60 federated
check "global Prometheus holds no raw series" \
  test "$(series_count "$global_port" '{__name__=~"coder_.+|nvidia_gpu_.+"}')" = 0

# --- file-based discovery --------------------------------------------------------------------
fleet_port=$(free_port)
mkdir "$work/targets"
cp "$INFRA/prometheus/targets/fleet.json.example" "$work/targets/fleet.json"
"$PY" -c 'import json, sys; print(json.dumps([{"targets": [a], "labels": {"job": j}} for j, a in zip(sys.argv[1::2], sys.argv[2::2])]))' \
  coder-gateway "$GATEWAY_METRICS" coder-worker "${workers[0]}" >"$work/targets/live.json"
"$PY" "$INFRA_TESTS/render_live_config.py" fleet "$work/fleet.yml" "$work/targets"
check "file_sd Prometheus ready on :$fleet_port" start_prometheus fleet "$work/fleet.yml" "$fleet_port"
check "file_sd relabelling: job and instance as documented (fleet.json.example + live targets)" \
  "$PY" "$INFRA_TESTS/check_file_sd.py" "http://127.0.0.1:$fleet_port" "$work/targets/fleet.json" \
  --live "$work/targets/live.json" --wait 30

if [ "$failed" != 0 ]; then
  for log in "$work"/*.log; do echo "--- $log"; tail -20 "$log"; done
fi
echo "live stack checks: $passed passed, $failed failed"
[ "$failed" = 0 ]
