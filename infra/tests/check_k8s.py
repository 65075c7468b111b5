#!/usr/bin/env python3
"""Offline check of infra/k8s beyond what kubernetes-validate covers (it only warns on CRDs).

  - KEDA ScaledObject, ServiceMonitor and PrometheusRule against the schemas in schemas/
    (the fields we use, unknown fields rejected);
  - the PrometheusRule's groups parse with promtool check rules;
  - the pieces agree: the KEDA trigger names the worker's model consumer
    ("coder-" + model token) on stream CODER_REQUESTS and scales the worker Deployment from
    zero with lagThreshold = the worker's --concurrency; the HPA scales the same Deployment
    on the adapter's external metric for the same model; the adapter reads the queue gauges
    with max; the gateway provisions the model's consumer (CODER_MODELS); the ServiceMonitor
    selects both Services by a port they have; pod annotations name the metrics port; the
    worker asks for nvidia.com/gpu; NATS runs 3 nodes with JetStream on file storage.

usage: check_k8s.py   (paths from this file's place in the repository)
"""
import json
import pathlib
import subprocess
import sys
import tempfile

import jsonschema
import yaml

TESTS = pathlib.Path(__file__).resolve().parent
K8S = TESTS.parent / "k8s"
STREAM = "CODER_REQUESTS"
failures = []


def check(cond, what):
    print(f"{'PASS' if cond else 'FAIL'}  {what}")
    if not cond:
        failures.append(what)


def model_token(model):
    """nats/src/subjects.rs model_token: [A-Za-z0-9_-] stay, every other byte is ~HH."""
    return "".join(
        chr(b) if chr(b).isascii() and (chr(b).isalnum() or chr(b) in "-_") else f"~{b:02X}"
        for b in model.encode()
    )


def load_all():
    docs = {}
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name.endswith("-values.yaml") or path.name == "values.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[(doc["kind"], doc["metadata"]["name"])] = (path.relative_to(K8S), doc)
    return docs


def flags(container):
    """--name=value / --name value pairs of a container's args."""
    out, args = {}, container.get("args", [])
    for i, arg in enumerate(args):
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            out[name] = value if eq else (args[i + 1] if i + 1 < len(args) else "")
    return out


def main():
    assert model_token("qwen2.5-coder-1.5b-instruct") == "qwen2~2E5-coder-1~2E5b-instruct"
    assert model_token("Qwen/Qwen2.5:Q4 x~") == "Qwen~2FQwen2~2E5~3AQ4~20x~7E"
    docs = load_all()

    for kind in ("ScaledObject", "ServiceMonitor", "PrometheusRule"):
        schema = json.loads((TESTS / "schemas" / f"{kind.lower()}.schema.json").read_text())
        found = [(p, d) for (k, _), (p, d) in docs.items() if k == kind]
        check(found, f"{kind}: present")
        for path, doc in found:
            errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=str)
            for e in errors:
                print(f"      {path}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
            check(not errors, f"{kind} {doc['metadata']['name']} ({path}) matches its schema")

    rule = docs[("PrometheusRule", "coder")][1]
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as fh:
        yaml.safe_dump({"groups": rule["spec"]["groups"]}, fh)
        fh.flush()
        run = subprocess.run(["promtool", "check", "rules", fh.name], capture_output=True, text=True)
    check(run.returncode == 0, "PrometheusRule groups pass promtool check rules")

    gateway = docs[("Deployment", "coder-gateway")][1]
    worker = docs[("Deployment", "coder-worker")][1]
    wc = worker["spec"]["template"]["spec"]["containers"][0]
    gc = gateway["spec"]["template"]["spec"]["containers"][0]
    wflags = flags(wc)
    model, concurrency = wflags.get("model"), wflags.get("concurrency")
    check(model and concurrency, f"worker runs --model ({model}) with --concurrency ({concurrency})")
    check(str(wc["resources"]["limits"].get("nvidia.com/gpu")) == "1", "worker requests one nvidia.com/gpu")
    check(wflags.get("device", "").startswith("cuda:"), "worker runs on --device cuda:N")
    env = {e["name"]: e.get("value", "") for e in gc.get("env", [])}
    check(model in env.get("CODER_MODELS", "").split(","), "gateway provisions the worker's model (CODER_MODELS)")

    so = docs[("ScaledObject", "coder-worker")][1]["spec"]
    trigger = so["triggers"][0]
    meta = trigger["metadata"]
    check(so["scaleTargetRef"]["name"] == worker["metadata"]["name"], "ScaledObject targets the worker Deployment")
    check(so.get("minReplicaCount") == 0, "ScaledObject scales to zero (minReplicaCount 0)")
    check(trigger["type"] == "nats-jetstream" and meta["stream"] == STREAM, f"trigger nats-jetstream on {STREAM}")
    want = "coder-" + model_token(model)
    check(meta["consumer"] == want, f"trigger consumer {meta['consumer']!r} == {want!r}")
    check(meta["lagThreshold"] == concurrency, "lagThreshold equals the worker's --concurrency")

    hpa = docs[("HorizontalPodAutoscaler", "coder-worker")][1]["spec"]
    ext = hpa["metrics"][0]["external"]
    check(hpa["scaleTargetRef"]["name"] == worker["metadata"]["name"], "HPA targets the worker Deployment")
    check(ext["metric"]["selector"]["matchLabels"].get("model_name") == model, "HPA selects the worker's model")
    check(ext["target"]["averageValue"] == concurrency, "HPA target per worker equals --concurrency")
    adapter = yaml.safe_load((K8S / "autoscaling" / "prometheus-adapter-values.yaml").read_text())
    rules = {r["name"]["as"]: r for r in adapter["rules"]["external"]}
    rule_for = rules.get(ext["metric"]["name"])
    check(rule_for is not None, f"adapter serves the HPA's metric {ext['metric']['name']}")
    if rule_for:
        check("coder_queue_pending_requests" in rule_for["seriesQuery"], "adapter rule reads coder_queue_pending_requests")
        query = rule_for["metricsQuery"]
        check("sum" not in query and query.count("max by (model_name)") == 2,
              "adapter aggregates the per-gateway queue gauges with max, never sum")

    services = {n: d for (k, n), (_, d) in docs.items() if k == "Service"}
    sm = docs[("ServiceMonitor", "coder")][1]["spec"]
    for name in ("coder-gateway", "coder-worker"):
        svc = services[name]
        labels = svc["metadata"]["labels"]
        selected = all(labels.get(k) == v for k, v in sm["selector"]["matchLabels"].items())
        check(selected, f"ServiceMonitor selects Service {name}")
        ports = {p["name"] for p in svc["spec"]["ports"]}
        check(all(e["port"] in ports for e in sm["endpoints"]), f"Service {name} has the ServiceMonitor's port")
        check(labels.get(sm["jobLabel"]) == name, f"Service {name}: job label {sm['jobLabel']} = {name}")

    for dep in (gateway, worker):
        pod = dep["spec"]["template"]
        ann = pod["metadata"].get("annotations", {})
        ports = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
        check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(ports.get("metrics")),
              f"{dep['metadata']['name']}: scrape annotations name the metrics port")

    nats = yaml.safe_load((K8S / "nats" / "values.yaml").read_text())["config"]
    check(nats["cluster"]["enabled"] and nats["cluster"]["replicas"] == 3, "NATS: 3-node cluster")
    check(nats["jetstream"]["enabled"] and nats["jetstream"]["fileStore"]["enabled"], "NATS: JetStream on file storage")
    endpoint = meta["natsServerMonitoringEndpoint"]
    check(endpoint.endswith(f":{nats['monitor']['port']}"), "KEDA reads NATS's monitoring port")

    print(f"k8s checks: {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
