#!/usr/bin/env python3
"""Evaluate every query of a Grafana dashboard against a live Prometheus.

No Grafana server can run here, so this does what Grafana would: substitute the template
variables ($model the way Grafana escapes a regex variable, once as one model and once as
"All", $__rate_interval and $__interval as the given window), send each panel target's expr to
/api/v1/query, and judge the answer:

  HTTP 400 (a parse error)              -> FAIL
  zero series, or only NaN values       -> FAIL (a wrong name or label gives zero series)

No panel is exempt: GPU panels need nvidia_gpu_* series too (a worker on a GPU, or
metrics-common's gpu_fixture example where there is none, as scripts/infra-live-check.sh runs).

The model variable's own query (label_values) is checked too. Failing targets are retried
until --wait seconds have passed, since rules and rates need a few scrapes to fill.

usage: check_dashboard.py PROM_URL DASHBOARD_JSON [--model NAME] [--window 1m] [--wait 60]
Standard library only.
"""
import argparse
import json
import math
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

REGEX_SPECIALS = re.compile(r"[$^*{}\[\]'+?.()|]")


def grafana_regex_escape(value):
    """Grafana's escaping of a multi-value variable inside a Prometheus regex matcher."""
    value = value.replace("\\", "\\\\\\\\")
    return REGEX_SPECIALS.sub(lambda m: "\\\\" + m.group(0), value)


def substitute(expr, variables):
    """Replace $var, ${var}, ${var:format} and [[var]]; unknown variables raise KeyError."""

    def repl(m):
        name = m.group(1) or m.group(3) or m.group(4)
        return variables[name]

    return re.sub(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)\]\]|\$(\w+)", repl, expr)


def walk_panels(panels):
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def http_json(url):
    """GET url; returns (http_status, decoded body or None)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        try:
            return err.code, json.load(err)
        except ValueError:
            return err.code, None


def instant_query(prom, expr):
    return http_json(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))


def judge(prom, expr):
    """Returns (verdict, detail) with verdict PASS or FAIL."""
    status, body = instant_query(prom, expr)
    if status != 200 or not body or body.get("status") != "success":
        error = (body or {}).get("error", "no body")
        return "FAIL", f"HTTP {status}: {error}"
    result = body["data"]["result"]
    if body["data"]["resultType"] == "scalar":
        result = [{"value": result}]
    values = [float(r["value"][1]) for r in result]
    if not result:
        return "FAIL", "zero series"
    if all(math.isnan(v) for v in values):
        return "FAIL", f"{len(result)} series, all NaN"
    return "PASS", f"{len(result)} series"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prom_url")
    ap.add_argument("dashboard")
    ap.add_argument("--model", help="value for $model (default: first model Prometheus knows)")
    ap.add_argument("--window", default="1m", help="value for $__rate_interval/$__interval")
    ap.add_argument("--wait", type=float, default=60, help="seconds to retry failing targets")
    args = ap.parse_args()
    prom = args.prom_url.rstrip("/")
    with open(args.dashboard) as fh:
        dashboard = json.load(fh)

    failures = 0
    # The model variable: Grafana runs label_values(...) as a label-values call.
    var = next(v for v in dashboard["templating"]["list"] if v["name"] == "model")
    definition = var["definition"]
    m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", definition)
    status, body = http_json(
        f"{prom}/api/v1/label/{m.group(2)}/values?" + urllib.parse.urlencode({"match[]": m.group(1)})
    )
    models = [v for v in (body or {}).get("data", []) if v != "unknown"]
    model = args.model or (models[0] if models else "")
    ok = status == 200 and model in models
    failures += not ok
    print(f"{'PASS' if ok else 'FAIL'}  variable model: {definition} -> {models} (using {model!r})")

    # One model, and "All" (includeAll without allValue): Grafana writes every value, escaped,
    # as one regex alternation.
    selections = {
        model: grafana_regex_escape(model),
        "All": "(" + "|".join(grafana_regex_escape(m) for m in models) + ")",
    }
    variables = {
        "__rate_interval": args.window,
        "__interval": args.window,
        "__range": "5m",
        "__interval_ms": "60000",
        "datasource": "prometheus",
    }
    targets = []
    for panel in walk_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            if target.get("expr"):
                targets.append((panel["title"], target["refId"], target["expr"]))

    deadline = time.monotonic() + args.wait
    counts = {"PASS": 0, "FAIL": 0}
    for selection, value in selections.items():
        for title, ref, raw in targets:
            expr = raw
            try:
                expr = substitute(raw, {**variables, "model": value})
            except KeyError as err:
                verdict, detail = "FAIL", f"unknown variable {err}"
            else:
                verdict, detail = judge(prom, expr)
                while verdict == "FAIL" and time.monotonic() < deadline and "HTTP 400" not in detail:
                    time.sleep(2)
                    verdict, detail = judge(prom, expr)
            counts[verdict] += 1
            print(f"{verdict:10}  [{title}] {ref} (model {selection}): {detail}")
            if verdict == "FAIL":
                print(f"            expr: {expr}")

    failures += counts["FAIL"]
    print(f"dashboard check: {counts['PASS']} passed, {counts['FAIL']} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
