#!/usr/bin/env python3
"""What `promtool check config` on the shipped files cannot cover here.

  k8s    prometheus-k8s.yml: Debian's Prometheus and promtool are built without Kubernetes
         discovery, and no cluster API runs here, so its kubernetes_sd_configs are checked
         against the documented fields and pod meta labels, its relabel rules are applied to
         sample pods by relabel() below (a re-implementation of replace/keep/drop, the only
         check of them here) and must give the job, instance and address operators expect;
         then the block is swapped for an empty file_sd and the rest goes through promtool.
  fleet  prometheus.yml with targets/fleet.json.example installed as a file_sd file, through
         promtool (which checks file_sd files). Its relabelling is checked on a real
         Prometheus instead, by live_stack.sh (check_file_sd.py).

usage: check_prom_configs.py   (paths from this file's place in the repository)
"""
import copy
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

PROM = pathlib.Path(__file__).resolve().parent.parent / "prometheus"
K8S_SD_KEYS = {"role", "api_server", "kubeconfig_file", "namespaces", "selectors", "attach_metadata",
               "basic_auth", "authorization", "oauth2", "tls_config", "proxy_url", "follow_redirects",
               "enable_http2"}
POD_META = re.compile(
    r"__meta_kubernetes_(namespace|pod_(name|ip|uid|ready|phase|node_name|host_ip|controller_kind|"
    r"controller_name|container_(init|name|id|image|port_name|port_number|port_protocol)|"
    r"(label|labelpresent|annotation|annotationpresent)_[a-zA-Z0-9_]+))$")
failures = []


def check(cond, what):
    print(f"{'PASS' if cond else 'FAIL'}  {what}")
    if not cond:
        failures.append(what)


def relabel(labels, configs):
    """Prometheus relabelling (replace, keep, drop) as the configs here use it; None = dropped."""
    labels = dict(labels)
    for c in configs:
        value = c.get("separator", ";").join(labels.get(s, "") for s in c.get("source_labels", []))
        m = re.fullmatch(c.get("regex", "(.*)"), value)
        action = c.get("action", "replace")
        if action == "keep" and not m or action == "drop" and m:
            return None
        if action == "replace" and m:
            result = re.sub(r"\$\{?(\d+)\}?", lambda g: m.group(int(g.group(1))) or "", c.get("replacement", "$1"))
            if result:
                labels[c["target_label"]] = result
            else:
                labels.pop(c["target_label"], None)
    labels.setdefault("instance", labels["__address__"])
    return {k: v for k, v in labels.items() if not k.startswith("__") or k in ("__address__", "__metrics_path__")}


def promtool_check(cfg, tmp, name):
    cfg = copy.deepcopy(cfg)
    cfg["rule_files"] = [str(PROM / f) for f in cfg.get("rule_files", [])]
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    run = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True)
    if run.returncode:
        print(run.stdout + run.stderr)
    return run.returncode == 0


def pod(name, app, ip, port, scrape="true", phase="Running"):
    return {"__address__": f"{ip}:{port}", "__meta_kubernetes_namespace": "coder",
            "__meta_kubernetes_pod_name": name, "__meta_kubernetes_pod_phase": phase,
            "__meta_kubernetes_pod_node_name": "gpu-node-1",
            "__meta_kubernetes_pod_label_app_kubernetes_io_name": app,
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape": scrape,
            "__meta_kubernetes_pod_annotation_prometheus_io_port": {"coder-gateway": "8001"}.get(app, "8002"),
            "__meta_kubernetes_pod_annotation_prometheus_io_path": "/metrics",
            "job": "kubernetes-pods"}


def check_k8s(tmp):
    cfg = yaml.safe_load((PROM / "prometheus-k8s.yml").read_text())
    (tmp / "empty.json").write_text("[]")
    for job in cfg["scrape_configs"]:
        for sd in job.pop("kubernetes_sd_configs", []):
            check(set(sd) <= K8S_SD_KEYS and sd.get("role") == "pod", f"k8s: {job['job_name']}: kubernetes_sd_configs role pod, known fields")
            metas = {s for r in job.get("relabel_configs", []) for s in r.get("source_labels", [])
                     if s.startswith("__meta_")}
            check(all(POD_META.fullmatch(s) for s in metas), f"k8s: {job['job_name']}: only pod meta labels {sorted(metas)}")
            job["file_sd_configs"] = [{"files": [str(tmp / "empty.json")]}]
        relabels = job.get("relabel_configs", [])
        # The container port the SD proposes (8000, the API) is replaced by the annotated one.
        gw = relabel(pod("coder-gateway-7d9f-abcde", "coder-gateway", "10.1.2.3", 8000), relabels)
        check(gw == {"__address__": "10.1.2.3:8001", "__metrics_path__": "/metrics", "job": "coder-gateway",
                     "instance": "coder-gateway-7d9f-abcde", "namespace": "coder", "node": "gpu-node-1"},
              f"k8s: gateway pod -> job coder-gateway, instance = pod name, port 8001 ({gw})")
        wk = relabel(pod("coder-worker-5c4b-xyz12", "coder-worker", "10.1.2.4", 8002), relabels)
        check(wk and wk["job"] == "coder-worker" and wk["instance"] == "coder-worker-5c4b-xyz12"
              and wk["__address__"] == "10.1.2.4:8002", "k8s: worker pod -> job coder-worker, instance = pod name")
        check(relabel(pod("other", "x", "10.1.2.5", 80, scrape="false"), relabels) is None, "k8s: unannotated pod dropped")
        check(relabel(pod("done", "coder-worker", "10.1.2.6", 8002, phase="Succeeded"), relabels) is None,
              "k8s: finished pod dropped")
    check(promtool_check(cfg, tmp, "k8s.yml"), "k8s: promtool check config (kubernetes_sd swapped for file_sd)")


def check_fleet(tmp):
    cfg = yaml.safe_load((PROM / "prometheus.yml").read_text())
    shutil.copy(PROM / "targets" / "fleet.json.example", tmp / "fleet.json")
    job = next(j for j in cfg["scrape_configs"] if "file_sd_configs" in j)
    job["file_sd_configs"][0]["files"] = [str(tmp / "*.json")]
    check(promtool_check(cfg, tmp, "fleet.yml"), "fleet: promtool check config with fleet.json.example installed")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        check_k8s(pathlib.Path(tmp))
        check_fleet(pathlib.Path(tmp))
    print(f"prometheus config checks: {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
