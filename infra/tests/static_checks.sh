#!/usr/bin/env bash
# Every check of infra/ that runs on this machine, against the real Prometheus tools:
#   infra/tests/static_checks.sh
# Installs what it needs (Debian prometheus + prometheus-alertmanager, the pinned Python tools
# of requirements.txt into the repository's .venv), prints PASS/FAIL per check (with the
# output of a failing one) and ends with "infra static checks: N passed, M failed".
# The last check runs live_stack.sh (three real Prometheus servers) against fake_coder.py, a
# stand-in for the services; INFRA_SKIP_LIVE=1 skips it. Against the real gateway and
# worker: scripts/infra-live-check.sh (see infra/README.md).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_prometheus_tools
ensure_python_tools

passed=0
failed=0
log=$(mktemp)
fake_pid=
cleanup() {
  [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null || true
  rm -f "$log"
}
trap cleanup EXIT INT TERM

run_check() { # run_check NAME COMMAND...
  local name=$1; shift
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1)); echo "PASS  $name"
  else
    failed=$((failed + 1)); echo "FAIL  $name"; sed 's/^/      /' "$log"
  fi
}

prom=$INFRA/prometheus
k8s=$INFRA/k8s
am=$INFRA/alertmanager/alertmanager.yml

routes_test() { # the receiver each severity reaches
  amtool config routes test --config.file="$am" --verify.receivers=oncall severity=critical alertname=X &&
    amtool config routes test --config.file="$am" --verify.receivers=team-chat severity=warning alertname=X &&
    amtool config routes test --config.file="$am" --verify.receivers=team-chat alertname=X
}

core_k8s_files() { # manifests holding only built-in kinds (CRDs are schema-checked by check_k8s.py)
  find "$k8s" -name '*.yaml' ! -name '*values.yaml' -print0 | sort -z |
    xargs -0 grep -L -E '^apiVersion: (keda\.sh|monitoring\.coreos\.com)/'
}
kubernetes_validate() {
  local files
  mapfile -t files < <(core_k8s_files)
  [ "${#files[@]}" -gt 0 ] && "$VENV/bin/kubernetes-validate" --strict "${files[@]}"
}

live_with_fake() {
  local api gw wk
  api=$(free_port); gw=$(free_port); wk=$(free_port)
  "$PY" "$INFRA_TESTS/fake_coder.py" --api "$api" --gateway-metrics "$gw" --worker-metrics "$wk" \
    --model qwen2.5-coder-1.5b-instruct --gpu &
  fake_pid=$!
  wait_until 10 curl -fsS "http://127.0.0.1:$gw/metrics" || return 1
  GATEWAY_METRICS=127.0.0.1:$gw WORKER_METRICS=127.0.0.1:$wk GATEWAY_URL=http://127.0.0.1:$api \
    MODEL=qwen2.5-coder-1.5b-instruct "$INFRA_TESTS/live_stack.sh"
  local rc=$?
  kill "$fake_pid"; wait "$fake_pid" 2>/dev/null || true; fake_pid=
  return $rc
}

run_check "promtool check config prometheus.yml" promtool check config "$prom/prometheus.yml"
run_check "promtool check config federation.yml" promtool check config "$prom/federation.yml"
run_check "prometheus-k8s.yml (promtool + kubernetes_sd relabelling) and the file_sd example (promtool)" \
  "$PY" "$INFRA_TESTS/check_prom_configs.py"
run_check "promtool check rules" promtool check rules "$prom"/rules/*.yml
run_check "promtool test rules" promtool test rules "$prom"/tests/*.yml
run_check "catalogue.py agrees with metrics-common (names.rs + instruments) and DESIGN.md" \
  "$PY" "$INFRA_TESTS/check_catalogue.py"
run_check "rules, runbook, federation, compose and Grafana refer to what exists" "$PY" "$INFRA_TESTS/check_refs.py"
run_check "amtool check-config" amtool check-config "$am"
run_check "amtool config routes test by severity" routes_test
run_check "Alertmanager routes, inhibits and groups (live)" "$PY" "$INFRA_TESTS/check_alertmanager.py"
run_check "dashboard JSON: structure, names, queries parse" \
  "$PY" "$INFRA_TESTS/check_dashboard_json.py" "$INFRA/grafana/dashboards/coder-overview.json"
run_check "kubernetes-validate --strict (core kinds)" kubernetes_validate
run_check "KEDA/ServiceMonitor/PrometheusRule schemas and k8s consistency" "$PY" "$INFRA_TESTS/check_k8s.py"
run_check "PrometheusRule in sync with the rule files" "$PY" "$k8s/monitoring/gen_prometheusrule.py" --check
if [ "${INFRA_SKIP_LIVE:-0}" = 1 ]; then
  echo "SKIP  live_stack.sh against fake_coder.py (INFRA_SKIP_LIVE=1)"
else
  run_check "live_stack.sh against fake_coder.py: dashboard data, federation, file_sd relabelling" live_with_fake
fi

echo "infra static checks: $passed passed, $failed failed"
[ "$failed" = 0 ]
