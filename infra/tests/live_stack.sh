#!/usr/bin/env bash
# Live checks of the monitoring against a running gateway and worker (started by the caller):
#   GATEWAY_METRICS=127.0.0.1:8001 WORKER_METRICS=127.0.0.1:8002 \
#   GATEWAY_URL=http://127.0.0.1:8000 MODEL=qwen2.5-coder-1.5b-instruct infra/tests/live_stack.sh
#
# 1. starts a cluster Prometheus (temp dir, free port, 1 s scrape and evaluation) with the
#    repository's prometheus.yml jobs and rule files, scraping the two addresses;
# 2. sends traffic to the gateway for the rest of the run: completions (plain, streaming,
#    chat), an unknown model, an unmatched route and a malformed body (so error panels have
#    data);
# 3. checks the targets are up, every rule evaluates without error, and every dashboard query
#    returns data (check_dashboard.py; GPU panels must only parse when no GPU series exist);
# 4. starts a global Prometheus from federation.yml, its target rewritten to the cluster
#    server, and checks it holds the federated recording-rule series and no raw series.
# Everything it starts is stopped on exit. Last line: "live stack checks: N passed, M failed".
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${GATEWAY_METRICS:?set GATEWAY_METRICS=host:port of the gateway's /metrics}"
: "${WORKER_METRICS:?set WORKER_METRICS=host:port of the worker's /metrics}"
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

targets_up() {
  [ "$(series_count "$cluster_port" 'up{job=~"coder-gateway|coder-worker"} == 1')" = 2 ]
}
check "gateway and worker targets up" wait_until 30 targets_up

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

# --- dashboard -----------------------------------------------------------------------------
check "every dashboard query returns data" \
  "$PY" "$INFRA_TESTS/check_dashboard.py" "http://127.0.0.1:$cluster_port" \
  "$INFRA/grafana/dashboards/coder-overview.json" --model "$MODEL" --wait 60

# --- federation ----------------------------------------------------------------------------
global_port=$(free_port)
"$PY" "$INFRA_TESTS/render_live_config.py" global "$work/global.yml" "127.0.0.1:$cluster_port"
check "global Prometheus ready on :$global_port" start_prometheus global "$work/global.yml" "$global_port"

federated() {
  local name
  for name in model:coder_model_requests:rate5m model:coder_model_requests_errors:ratio_rate5m \
    model:coder_model_request_duration_seconds:p95_rate5m model:coder_queue_pending_requests:max \
    model:coder_worker_slots:sum job:coder_model_requests:rate5m job:up:sum; do
    has_series "$global_port" "${name}{cluster=\"live-test\"}" || return 1
  done
}
check "global Prometheus holds the federated recording rules" wait_until 60 federated
check "global Prometheus holds no raw series" \
  test "$(series_count "$global_port" '{__name__=~"coder_.+|nvidia_gpu_.+"}')" = 0

if [ "$failed" != 0 ]; then
  for log in "$work"/*.log; do echo "--- $log"; tail -20 "$log"; done
fi
echo "live stack checks: $passed passed, $failed failed"
[ "$failed" = 0 ]
