# Shared by the infra test scripts (source it). Paths come from this file's place in the
# repository, so the scripts run from any directory and any checkout.
INFRA_TESTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
INFRA=$(dirname "$INFRA_TESTS")
REPO=$(git -C "$INFRA" rev-parse --show-toplevel 2>/dev/null || dirname "$INFRA")
VENV=$REPO/.venv
PY=$VENV/bin/python

# Debian's prometheus (with promtool) and prometheus-alertmanager (with amtool); installing
# them does not start them.
ensure_prometheus_tools() {
  local missing=0 tool
  for tool in promtool prometheus amtool prometheus-alertmanager; do
    command -v "$tool" >/dev/null || missing=1
  done
  [ "$missing" = 0 ] && return 0
  echo "installing Debian packages prometheus, prometheus-alertmanager" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus prometheus-alertmanager >/dev/null
}

# The pinned Python tools of requirements.txt, in the repository's .venv.
ensure_python_tools() {
  [ -x "$PY" ] || python3 -m venv "$VENV"
  if ! "$PY" -c 'import yaml, jsonschema, kubernetes_validate' 2>/dev/null; then
    echo "installing $INFRA_TESTS/requirements.txt into $VENV" >&2
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$INFRA_TESTS/requirements.txt"
  fi
}

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_until SECONDS COMMAND...: retry COMMAND every 0.5 s until it succeeds or time runs out.
wait_until() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -ge "$deadline" ] && return 1
    sleep 0.5
  done
}
