#!/usr/bin/env python3
"""Offline check of the Grafana dashboard: structure, names, and that every query parses.

  - JSON loads; uid, title, refresh 30s; a datasource variable and the model variable
    (label_values(coder_model_requests_total, model_name)); unique panel ids; panels do not
    overlap on the grid; every target names the datasource variable and a unique refId;
  - every query uses $model, names only catalogue metrics or recording rules, and reads the
    gauges every gateway reports alike through max by (...);
  - the panels issue 5 asks for are there (request rate, p50/p95/p99, heatmap, error codes,
    TTFT, tokens/s, queue pending / in flight / oldest age, workers, slots, GPU memory and
    utilisation);
  - every query, with variables substituted, parses: promtool check rules on a rule file of
    them (the live check, check_dashboard.py, then asks Prometheus for data).

usage: check_dashboard_json.py DASHBOARD_JSON
"""
import json
import pathlib
import sys


sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from catalogue import EXPOSED, recorded_names, shared_gauges_not_under_max, unknown_names  # noqa: E402
from check_dashboard import grafana_regex_escape, substitute, walk_panels  # noqa: E402
from promtool_rules import check_rules  # noqa: E402

# (what, a test over the list of (panel, expr)).
REQUIRED = [
    ("request rate", lambda ps: any("rate(coder_model_requests_total" in e for _, e in ps)),
    ("p50/p95/p99 latency", lambda ps: all(
        any(f"histogram_quantile({q}" in e and "coder_model_request_duration_seconds_bucket" in e for _, e in ps)
        for q in ("0.5", "0.95", "0.99"))),
    ("latency heatmap", lambda ps: any(p["type"] == "heatmap" and "coder_model_request_duration_seconds_bucket" in e
                                       for p, e in ps)),
    ("error codes", lambda ps: any("coder_model_requests_total" in e and "by (code" in e for _, e in ps)),
    ("time to first token", lambda ps: any("coder_model_time_to_first_token_seconds" in e for _, e in ps)),
    ("tokens/s", lambda ps: any("rate(coder_model_generation_tokens_total" in e for _, e in ps)),
    ("queue pending", lambda ps: any("max by (model_name) (coder_queue_pending_requests" in e for _, e in ps)),
    ("queue in flight", lambda ps: any("max by (model_name) (coder_queue_inflight_requests" in e for _, e in ps)),
    ("queue oldest age", lambda ps: any("max by (model_name) (coder_queue_oldest_request_age_seconds" in e
                                        for _, e in ps)),
    ("workers connected", lambda ps: any("max by (model_name) (coder_workers_connected" in e for _, e in ps)),
    ("worker slots", lambda ps: any("coder_worker_slots" in e for _, e in ps)),
    ("GPU memory", lambda ps: any("nvidia_gpu_memory_used_bytes" in e for _, e in ps)),
    ("GPU utilisation", lambda ps: any("nvidia_gpu_utilization_ratio" in e for _, e in ps)),
]


def overlaps(a, b):
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


def main():
    path = sys.argv[1]
    dash = json.loads(pathlib.Path(path).read_text())
    errors = []

    def need(cond, msg):
        if not cond:
            errors.append(msg)

    need(dash.get("uid") and dash.get("title"), "uid and title")
    need(dash.get("refresh") == "30s", f"refresh is {dash.get('refresh')!r}, want '30s'")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    need(variables.get("datasource", {}).get("type") == "datasource", "a datasource variable")
    model = variables.get("model", {})
    need(model.get("definition") == "label_values(coder_model_requests_total, model_name)",
         "model variable defined by label_values(coder_model_requests_total, model_name)")

    panels = list(walk_panels(dash["panels"]))
    ids = [p["id"] for p in panels]
    need(len(ids) == len(set(ids)), "unique panel ids")
    for i, a in enumerate(panels):
        for b in panels[i + 1:]:
            need(not overlaps(a["gridPos"], b["gridPos"]), f"panels {a['title']!r} and {b['title']!r} overlap")

    known = EXPOSED | recorded_names()
    pairs = []
    for panel in panels:
        if panel["type"] == "row":
            continue
        targets = panel.get("targets", [])
        need(targets, f"panel {panel['title']!r} has targets")
        refs = [t.get("refId") for t in targets]
        need(len(refs) == len(set(refs)), f"panel {panel['title']!r}: unique refIds")
        for t in targets:
            expr = t.get("expr", "")
            need(expr, f"panel {panel['title']!r} {t.get('refId')}: an expr")
            need(t.get("datasource", {}).get("uid") == "${datasource}",
                 f"panel {panel['title']!r} {t.get('refId')}: datasource ${{datasource}}")
            need("$model" in expr, f"panel {panel['title']!r} {t.get('refId')}: uses $model")
            bad = unknown_names(expr, known)
            need(not bad, f"panel {panel['title']!r} {t.get('refId')}: unknown metric names {bad}")
            summed = shared_gauges_not_under_max(expr)
            need(not summed, f"panel {panel['title']!r} {t.get('refId')}: read {summed} with max by (...)")
            pairs.append((panel, expr))
    for what, test in REQUIRED:
        need(test(pairs), f"a panel for {what}")

    # Parse every query with promtool, variables substituted as Grafana would.
    values = {"model": grafana_regex_escape("qwen2.5-coder-1.5b-instruct"), "__rate_interval": "1m",
              "__interval": "1m", "__range": "5m", "__interval_ms": "60000", "datasource": "prometheus"}
    rules = [{"record": f"dashboard:query_{i}:check", "expr": substitute(e, values)} for i, (_, e) in enumerate(pairs)]
    passed, output = check_rules([{"name": "dashboard-queries", "rules": rules}])
    need(passed, f"promtool parse of the queries:\n{output}")

    for e in errors:
        print(f"FAIL  {e}")
    print(f"dashboard {pathlib.Path(path).name}: {len(panels)} panels, {len(pairs)} queries, "
          f"{len(REQUIRED)} required topics, {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
