#!/usr/bin/env python3
"""Run the real Alertmanager on infra/alertmanager/alertmanager.yml and check that it routes,
inhibits and groups as the config and infra/README.md say: post alerts through the API, read
back each alert's state and receivers (/api/v2/alerts) and the notification groups
(/api/v2/alerts/groups): one group per alertname, cluster and model_name on every route, so
several gateways, GPUs or instances raising one alert make one notification.

usage: check_alertmanager.py   (needs prometheus-alertmanager on PATH; standard library only)
"""
import json
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

CONFIG = pathlib.Path(__file__).resolve().parent.parent / "alertmanager" / "alertmanager.yml"

# (alertname, severity, model) -> (expected state, expected receiver)
CASES = {
    ("QueueOldestRequestTooOld", "critical", "m1"): ("active", "oncall"),
    # Same name and model as a critical one: inhibited.
    ("QueueOldestRequestTooOld", "warning", "m1"): ("suppressed", "team-chat"),
    # Another model: not inhibited.
    ("QueueOldestRequestTooOld", "warning", "m2"): ("active", "team-chat"),
    # No worker at all explains the backlog of the same model.
    ("QueuePendingWithoutWorkers", "critical", "m3"): ("active", "oncall"),
    ("QueueBacklogHigh", "warning", "m3"): ("suppressed", "team-chat"),
    # Another alert name for m1: not inhibited by the critical above.
    ("HighLatency", "warning", "m1"): ("active", "team-chat"),
}


# Grouping probes: (alertname, severity, cluster, model, instance, gpu_id or "").
GROUP_BY = ("alertname", "cluster", "model_name")
PROBES = [
    ("HighErrorRate", "critical", "c1", "g1", "gw-1", ""),
    ("HighErrorRate", "critical", "c1", "g1", "gw-2", ""),  # another gateway: same group
    ("HighErrorRate", "critical", "c2", "g1", "gw-1", ""),  # another cluster: own group
    ("HighErrorRate", "critical", "c1", "g2", "gw-1", ""),  # another model: own group
    ("GpuMemoryHigh", "warning", "c1", "g1", "node-1", "0"),
    ("GpuMemoryHigh", "warning", "c1", "g1", "node-1", "1"),  # another GPU: same group
]
# (receiver, alertname, cluster, model) -> the probes' (instance, gpu_id) in that group
GROUPS = {
    ("oncall", "HighErrorRate", "c1", "g1"): [("gw-1", ""), ("gw-2", "")],
    ("oncall", "HighErrorRate", "c2", "g1"): [("gw-1", "")],
    ("oncall", "HighErrorRate", "c1", "g2"): [("gw-1", "")],
    ("team-chat", "GpuMemoryHigh", "c1", "g1"): [("node-1", "0"), ("node-1", "1")],
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url, data=None):
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.load(resp) if resp.status == 200 and data is None else None


def observed(base):
    out = {}
    for a in call(f"{base}/api/v2/alerts"):
        key = (a["labels"]["alertname"], a["labels"]["severity"], a["labels"]["model_name"])
        out[key] = (a["status"]["state"], ",".join(sorted(r["name"] for r in a["receivers"])))
    return out


def probe_alerts():
    alerts = []
    for name, severity, cluster, model, instance, gpu in PROBES:
        labels = {"alertname": name, "severity": severity, "cluster": cluster, "model_name": model,
                  "instance": instance} | ({"gpu_id": gpu} if gpu else {})
        alerts.append({"labels": labels, "annotations": {"summary": "check_alertmanager.py"}})
    return alerts


def observed_groups(base):
    """Groups holding probes: {(receiver, *group labels): sorted (instance, gpu_id)}; a group
    whose labels are not exactly GROUP_BY is keyed by its labels, so it cannot match."""
    out = {}
    for g in call(f"{base}/api/v2/alerts/groups"):
        if not any(a["labels"].get("cluster") for a in g["alerts"]):
            continue  # the routing cases' groups
        key = (g["receiver"]["name"], *(g["labels"].get(k) for k in GROUP_BY))
        if set(g["labels"]) != set(GROUP_BY):
            key = (g["receiver"]["name"], json.dumps(g["labels"], sort_keys=True))
        out[key] = sorted((a["labels"]["instance"], a["labels"].get("gpu_id", "")) for a in g["alerts"])
    return out


def main():
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as storage:
        proc = subprocess.Popen(
            ["prometheus-alertmanager", f"--config.file={CONFIG}", f"--storage.path={storage}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"{base}/-/ready", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            alerts = [{"labels": {"alertname": n, "severity": s, "model_name": m},
                       "annotations": {"summary": "check_alertmanager.py"}} for n, s, m in CASES]
            got = settle(base, alerts, observed, CASES)
            groups = settle(base, probe_alerts(), observed_groups, GROUPS)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    group_keys = sorted(set(GROUPS) | set(groups), key=str)
    failed = report(CASES, got, CASES, "") + report(GROUPS, groups, group_keys, "group ")
    total = len(CASES) + len(group_keys)
    print(f"alertmanager checks: {total - failed} passed, {failed} failed")
    return 1 if failed else 0


def settle(base, alerts, observe, want):
    """Posts `alerts`, then reads `observe(base)` until it equals `want` (inhibition and grouping
    are computed asynchronously) or 10 s have passed; returns the last reading."""
    call(f"{base}/api/v2/alerts", json.dumps(alerts).encode())
    got = {}
    for _ in range(50):
        got = observe(base)
        if got == want:
            break
        time.sleep(0.2)
    return got


def report(want, got, keys, label):
    """Prints PASS/FAIL for each of `keys`; returns the failures."""
    failed = 0
    for key in keys:
        ok = got.get(key) == want.get(key)
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'}  {label}{'/'.join(key)}: want {want.get(key)}, got {got.get(key)}")
    return failed


if __name__ == "__main__":
    sys.exit(main())
