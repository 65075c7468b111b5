#!/usr/bin/env python3
"""Write the Prometheus configs live_stack.sh runs, derived from the repository's own files.

  cluster OUT GATEWAY_ADDR WORKER_ADDRS
      infra/prometheus/prometheus.yml with a 1s scrape/evaluation interval, its coder-gateway
      and coder-worker jobs pointed at the given addresses (WORKER_ADDRS: comma-separated),
      the other jobs and alerting dropped, and rule_files made absolute (the repository's
      rules, unchanged).
  fleet OUT TARGETS_DIR
      infra/prometheus/prometheus.yml with only its file_sd job, reading TARGETS_DIR/*.json,
      and a 1s scrape interval; relabel_configs stay as written.
  global OUT CLUSTER_ADDR
      infra/prometheus/federation.yml with its federate job pointed at CLUSTER_ADDR and a 1s
      interval; match[], honor_labels and metrics_path stay as written.

Needs PyYAML.
"""
import pathlib
import sys

import yaml

PROM_DIR = pathlib.Path(__file__).resolve().parent.parent / "prometheus"
CLUSTER_LABEL = "live-test"


def cluster(out, gateway, workers):
    cfg = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
    cfg["global"]["external_labels"] = {"cluster": CLUSTER_LABEL}
    cfg["rule_files"] = [str(PROM_DIR / f) for f in cfg["rule_files"]]
    cfg.pop("alerting", None)
    targets = {"coder-gateway": [gateway], "coder-worker": workers.split(",")}
    jobs = [j for j in cfg["scrape_configs"] if j["job_name"] in targets]
    if len(jobs) != 2:
        sys.exit("prometheus.yml must have jobs coder-gateway and coder-worker")
    for job in jobs:
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
    cfg["scrape_configs"] = jobs
    pathlib.Path(out).write_text(yaml.safe_dump(cfg, sort_keys=False))


def fleet(out, targets_dir):
    cfg = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    cfg["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    cfg.pop("rule_files", None)
    cfg.pop("alerting", None)
    jobs = [j for j in cfg["scrape_configs"] if "file_sd_configs" in j]
    if len(jobs) != 1 or len(jobs[0]["file_sd_configs"]) != 1:
        sys.exit("prometheus.yml must have exactly one job with one file_sd_configs entry")
    jobs[0]["file_sd_configs"][0]["files"] = [str(pathlib.Path(targets_dir).resolve() / "*.json")]
    cfg["scrape_configs"] = jobs
    pathlib.Path(out).write_text(yaml.safe_dump(cfg, sort_keys=False))


def federation(out, cluster_addr):
    cfg = yaml.safe_load((PROM_DIR / "federation.yml").read_text())
    cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
    jobs = [j for j in cfg["scrape_configs"] if j.get("metrics_path") == "/federate"]
    if len(jobs) != 1:
        sys.exit("federation.yml must have exactly one /federate job")
    jobs[0].update(scrape_interval="1s", scrape_timeout="1s")
    jobs[0]["static_configs"] = [{"targets": [cluster_addr]}]
    cfg["scrape_configs"] = jobs
    pathlib.Path(out).write_text(yaml.safe_dump(cfg, sort_keys=False))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "cluster":
        cluster(*sys.argv[2:])
    elif len(sys.argv) == 4 and sys.argv[1] == "global":
        federation(*sys.argv[2:])
    elif len(sys.argv) == 4 and sys.argv[1] == "fleet":
        fleet(*sys.argv[2:])
    else:
        sys.exit(__doc__)
