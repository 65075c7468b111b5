#!/usr/bin/env python3
"""Offline cross-file checks: what one infra file says about another holds.

  - rules name only catalogue metrics (catalogue.py) or recording rules, and read the gauges
    every gateway reports alike through max by (...);
  - every alert has severity critical|warning, a summary, a description and a runbook_url
    whose anchor is a section of prometheus/RUNBOOK.md;
  - federation.yml's match[] selects every recording rule, and only recording rules;
  - compose.yml has the six services, its bind mounts and Dockerfiles exist, and each
    Dockerfile copies every workspace member of Cargo.toml;
  - Grafana provisioning: a default Prometheus datasource, and the dashboard provider reads
    the folder compose mounts infra/grafana/dashboards at.

usage: check_refs.py   (paths from this file's place in the repository)
"""
import pathlib
import re
import sys

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from catalogue import EXPOSED, RULES_DIR, recorded_names, shared_gauges_not_under_max, unknown_names  # noqa: E402

INFRA = pathlib.Path(__file__).resolve().parent.parent
REPO = INFRA.parent
failures = []


def check(cond, what):
    print(f"{'PASS' if cond else 'FAIL'}  {what}")
    if not cond:
        failures.append(what)


def anchors(markdown):
    """GitHub-style anchors of the ## headings."""
    return {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", markdown, re.M)}


def main():
    recorded = recorded_names()
    known = EXPOSED | recorded
    runbook = anchors((INFRA / "prometheus" / "RUNBOOK.md").read_text())
    rules = [r for path in sorted(RULES_DIR.glob("*.yml"))
             for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]
    for r in rules:
        name = r.get("record") or r["alert"]
        bad = unknown_names(r["expr"], known)
        check(not bad, f"rule {name}: names only catalogue metrics and recording rules {bad or ''}")
        summed = shared_gauges_not_under_max(r["expr"])
        check(not summed, f"rule {name}: reads the per-gateway queue gauges with max {summed or ''}")
        if "alert" in r:
            ann = r.get("annotations", {})
            check(r.get("labels", {}).get("severity") in ("critical", "warning"), f"alert {name}: severity")
            check(ann.get("summary") and ann.get("description"), f"alert {name}: summary and description")
            url = ann.get("runbook_url", "")
            check(url.startswith("infra/prometheus/RUNBOOK.md#") and url.split("#")[1] in runbook,
                  f"alert {name}: runbook_url {url} is a RUNBOOK.md section")

    fed = yaml.safe_load((INFRA / "prometheus" / "federation.yml").read_text())
    job = next(j for j in fed["scrape_configs"] if j.get("metrics_path") == "/federate")
    check(job.get("honor_labels") is True, "federation: honor_labels: true")
    matchers = job["params"]["match[]"]
    regexes = [re.fullmatch(r'\{__name__=~"(.+)"\}', m).group(1) for m in matchers]
    selected = lambda n: any(re.fullmatch(rx, n) for rx in regexes)  # noqa: E731
    check(all(selected(n) for n in recorded), f"federation match[] selects all {len(recorded)} recording rules")
    check(not any(selected(n) for n in EXPOSED), "federation match[] selects no raw series")

    compose_path = INFRA / "docker" / "compose.yml"
    compose = yaml.safe_load(compose_path.read_text())
    services = compose["services"]
    want = {"nats", "gateway", "worker", "prometheus", "alertmanager", "grafana"}
    check(want <= set(services), f"compose services {sorted(want)}")
    members = re.search(r"members\s*=\s*\[([^\]]*)\]", (REPO / "Cargo.toml").read_text())
    members = re.findall(r'"([^"]+)"', members.group(1)) if members else []
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                exists = (compose_path.parent / src).resolve().exists()
                check(exists or src.endswith("models"), f"compose {name}: mount {src} exists")
        build = svc.get("build")
        if build:
            dockerfile = (compose_path.parent / build["context"] / build["dockerfile"]).resolve()
            check(dockerfile.exists(), f"compose {name}: {build['dockerfile']} exists")
    for dockerfile in sorted((INFRA / "docker").glob("Dockerfile.*")):
        text = dockerfile.read_text()
        missing = [m for m in members if not re.search(rf"^COPY {re.escape(m)} {re.escape(m)}$", text, re.M)]
        check(members and not missing, f"{dockerfile.name} copies every workspace member {missing or ''}")

    grafana = INFRA / "grafana"
    ds = yaml.safe_load((grafana / "provisioning" / "datasources" / "prometheus.yml").read_text())["datasources"]
    check(any(d["type"] == "prometheus" and d.get("isDefault") for d in ds), "Grafana: a default Prometheus datasource")
    provider = yaml.safe_load((grafana / "provisioning" / "dashboards" / "coder.yml").read_text())["providers"][0]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"]}
    src = mounts.get(provider["options"]["path"], "")
    check(src and (compose_path.parent / src).resolve() == (grafana / "dashboards").resolve(),
          "Grafana: the dashboard provider's path is where compose mounts infra/grafana/dashboards")

    print(f"reference checks: {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
