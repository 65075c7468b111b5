#!/usr/bin/env python3
"""prometheus-adapter's external-metric queries, rendered as the adapter renders them.

The queries are the metricsQuery templates of infra/k8s/autoscaling/prometheus-adapter-values.yaml:
the adapter puts the series name of seriesQuery in <<.Series>> and the HPA's selector plus the
namespace, comma-separated, in <<.LabelMatchers>>. check_k8s.py imports rendered() to parse each
query with promtool; run as a script, it asks a live Prometheus (live_stack.sh's) for each query
with the given model and wants exactly one series with a number, as the HPA needs.

usage: check_adapter_queries.py PROM_URL MODEL
Needs PyYAML.
"""
import math
import pathlib
import re
import sys

import yaml

from check_dashboard import instant_query

VALUES = (
    pathlib.Path(__file__).resolve().parent.parent
    / "k8s" / "autoscaling" / "prometheus-adapter-values.yaml"
)


def rendered(matchers):
    """{external metric name: its PromQL} with <<.LabelMatchers>> = matchers."""
    out = {}
    for rule in yaml.safe_load(VALUES.read_text())["rules"]["external"]:
        series = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["seriesQuery"]).group(0)
        query = rule["metricsQuery"].replace("<<.Series>>", series)
        out[rule["name"]["as"]] = query.replace("<<.LabelMatchers>>", matchers)
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    prom, model = sys.argv[1].rstrip("/"), sys.argv[2]
    failed = 0
    for name, query in rendered(f'model_name="{model}"').items():
        status, body = instant_query(prom, query)
        result = (body or {}).get("data", {}).get("result", []) if status == 200 else []
        values = [float(r["value"][1]) for r in result]
        ok = len(values) == 1 and not math.isnan(values[0])
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {query} -> {values}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
