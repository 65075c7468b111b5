#!/usr/bin/env python3
"""Offline check of infra/k8s beyond what kubernetes-validate covers (it only warns on CRDs).

  - KEDA ScaledObject, ServiceMonitor and PrometheusRule against the schemas in schemas/
    (the fields we use, unknown fields rejected);
  - the PrometheusRule's groups parse with promtool check rules;
  - the pieces agree: the KEDA trigger reads the worker's model's queue gauges (pending + in
    flight, max over gateways, which sum the model's partition consumers) from the Prometheus the
    adapter reads, and scales the worker Deployment from zero with threshold = the worker's
    --concurrency; its query parses with promtool; the HPA scales the same Deployment
    on the external metric coder_queue_pending_requests (and coder_queue_backlog) for the
    same model with --concurrency per replica; the adapter serves exactly those names, each
    query reads the queue gauges with max and parses with promtool (check_adapter_queries.py
    renders them); the gateway provisions the model's consumer (CODER_MODELS); the ServiceMonitor
    selects both Services by a port they have; pod annotations name the metrics port; the
    worker asks for nvidia.com/gpu; NATS runs 3 nodes with JetStream on file storage; the
    gateway and the worker both provision the stream with replicas = the NATS cluster size
    (CODER_STREAM_REPLICAS or --stream-replicas; unset means the binaries' default of 1);
    NATS is secured: the values include the shipped nats/config/auth.conf, fill every password
    it names from a Secret, and turn on mutual TLS for clients and routes; the NetworkPolicy
    admits only the gateway and workers to 4222 and only Prometheus to 8222; the gateway and the
    worker connect over tls:// as their own user, with the password from a Secret and the TLS
    files from a mounted Secret.

usage: check_k8s.py   (paths from this file's place in the repository)
"""
import json
import pathlib
import re
import sys

import jsonschema
import yaml

from check_adapter_queries import rendered
from promtool_rules import check_rules

TESTS = pathlib.Path(__file__).resolve().parent
K8S = TESTS.parent / "k8s"
AUTH_CONF = TESTS.parent.parent / "nats" / "config" / "auth.conf"
PENDING = "coder_queue_pending_requests"
BACKLOG = "coder_queue_backlog"
failures = []


def check(cond, what):
    print(f"{'PASS' if cond else 'FAIL'}  {what}")
    if not cond:
        failures.append(what)


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


def promql_parses(queries):
    """promtool check rules on a rule file recording each query."""
    rules = [{"record": f"adapter:query_{i}", "expr": q} for i, q in enumerate(queries)]
    passed, output = check_rules([{"name": "adapter", "rules": rules}])
    if not passed:
        print(output)
    return bool(queries) and passed


def stream_replicas(container):
    """The container's --stream-replicas: the flag if given, else CODER_STREAM_REPLICAS, else None
    (the binaries' default, 1)."""
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    return flags(container).get("stream-replicas", env.get("CODER_STREAM_REPLICAS"))


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def check_nats_security(docs, *services):
    auth = AUTH_CONF.read_text()
    values = yaml.safe_load((K8S / "nats" / "values.yaml").read_text())
    config = values["config"]
    check(config["merge"].get("$include", "").endswith("/auth.conf"), "NATS: values include the shipped auth.conf")
    wanted = sorted(set(re.findall(r"\$(NATS_\w+_PASSWORD)", auth)))
    env = values.get("container", {}).get("env", {})
    from_secrets = sorted(k for k, v in env.items() if "secretKeyRef" in v.get("valueFrom", {}))
    check(wanted and from_secrets == wanted, f"NATS: every password auth.conf reads comes from a Secret: {wanted}")
    for block in ("nats", "cluster"):
        tls = config[block].get("tls", {})
        check(tls.get("enabled") and tls.get("merge", {}).get("verify") is True,
              f"NATS: mutual TLS on {block} connections")
    check(values.get("tlsCA", {}).get("enabled"), "NATS: a CA verifies client and route certificates")
    check(not values.get("natsBox", {}).get("enabled", True), "NATS: no nats-box beside the services")

    policy = docs[("NetworkPolicy", "nats")][1]["spec"]
    by_port = {}
    for rule in policy["ingress"]:
        for port in rule["ports"]:
            by_port.setdefault(port["port"], []).extend(rule.get("from", []))
    clients = by_port.get(4222, [])
    names = [sorted(e["values"]) for p in clients for e in p.get("podSelector", {}).get("matchExpressions", [])]
    check(len(clients) == 1 and names == [["coder-gateway", "coder-worker"]]
          and clients[0].get("namespaceSelector", {}).get("matchLabels") == {"kubernetes.io/metadata.name": "coder"},
          "NetworkPolicy: only the gateway and the workers reach 4222")
    monitors = {p.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
                for p in by_port.get(8222, [])}
    check(by_port.get(8222) and monitors == {"monitoring"} and all("podSelector" not in p or "namespaceSelector" in p for p in by_port[8222]),
          f"NetworkPolicy: only Prometheus reaches the monitoring port 8222 ({sorted(map(str, monitors))})")
    check(set(by_port) <= {4222, 6222, 8222, 7777}, f"NetworkPolicy: no other port open ({sorted(by_port)})")

    for dep, container, user in services:
        name = dep["metadata"]["name"]
        env = env_of(container)
        value = lambda key: env.get(key, {}).get("value", "")
        check(value("CODER_NATS_URL").startswith("tls://"), f"{name}: connects to NATS over tls://")
        check(value("CODER_NATS_USER") == user and re.search(rf"\{{\s*user: {user},", auth),
              f"{name}: connects as the auth.conf user {user}")
        check("secretKeyRef" in env.get("CODER_NATS_PASSWORD", {}).get("valueFrom", {}),
              f"{name}: its NATS password comes from a Secret")
        pod = dep["spec"]["template"]["spec"]
        secret_mounts = {m["mountPath"] for m in container.get("volumeMounts", [])
                         for v in pod.get("volumes", []) if v["name"] == m["name"] and "secret" in v}
        files = [value(f"CODER_NATS_TLS_{k}") for k in ("CA", "CERT", "KEY")]
        check(all(files) and all(str(pathlib.PurePosixPath(f).parent) in secret_mounts for f in files),
              f"{name}: its NATS TLS files are in a mounted Secret")


def main():
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
    passed, _ = check_rules(rule["spec"]["groups"])
    check(passed, "PrometheusRule groups pass promtool check rules")

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
    check(trigger["type"] == "prometheus", "KEDA trigger: prometheus (a model's queue is 16 consumers)")
    adapter = yaml.safe_load((K8S / "autoscaling" / "prometheus-adapter-values.yaml").read_text())
    prometheus = f"{adapter['prometheus']['url']}:{adapter['prometheus']['port']}"
    check(meta["serverAddress"] == prometheus, f"KEDA reads the adapter's Prometheus ({prometheus})")
    query = " ".join(meta["query"].split())
    want_query = (f'max({PENDING}{{model_name="{model}"}}) '
                  f'+ max(coder_queue_inflight_requests{{model_name="{model}"}})')
    check(query == want_query, f"KEDA query: the model's pending + in flight, max over gateways: {query!r}")
    check(promql_parses([query]), "KEDA query parses (promtool)")
    check(meta["threshold"] == concurrency, "KEDA threshold equals the worker's --concurrency")
    check(meta.get("activationThreshold") == "0", "KEDA wakes the model from zero on any queued request")

    hpa = docs[("HorizontalPodAutoscaler", "coder-worker")][1]["spec"]
    check(hpa["scaleTargetRef"]["name"] == worker["metadata"]["name"], "HPA targets the worker Deployment")
    external = {m["external"]["metric"]["name"]: m["external"] for m in hpa["metrics"] if m["type"] == "External"}
    only_ours = len(external) == len(hpa["metrics"]) and set(external) <= {PENDING, BACKLOG}
    check(only_ours and PENDING in external,
          f"HPA scales on the external metric {PENDING} (and optionally {BACKLOG}): {list(external)}")
    for name, ext in external.items():
        check(ext["metric"]["selector"]["matchLabels"] == {"model_name": model}, f"HPA {name}: selects the worker's model")
        check(ext["target"] == {"type": "AverageValue", "averageValue": concurrency},
              f"HPA {name}: target per worker (AverageValue) equals --concurrency")
    adapter = yaml.safe_load((K8S / "autoscaling" / "prometheus-adapter-values.yaml").read_text())
    rules = {r["name"]["as"]: r for r in adapter["rules"]["external"]}
    check(set(rules) == set(external), f"adapter serves exactly the HPA's metrics: {sorted(rules)}")
    want_series = {PENDING: [PENDING], BACKLOG: [PENDING, "coder_queue_inflight_requests"]}
    for name, rule in rules.items():
        query = rule["metricsQuery"]
        series = sorted(set(re.findall(r"coder_[a-z_]+", rule["seriesQuery"] + query)))
        check(series == sorted(want_series.get(name, [])), f"adapter {name}: reads {series}")
        check("sum" not in query and query.count("max by (model_name)") == len(want_series.get(name, [])),
              f"adapter {name}: per-gateway queue gauges read with max, never sum")
    check(promql_parses(list(rendered('model_name="m",namespace="coder"').values())),
          "adapter queries, rendered as the adapter renders them, parse (promtool)")

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
    for dep, container in ((gateway, gc), (worker, wc)):
        replicas = stream_replicas(container)
        check(replicas == str(nats["cluster"]["replicas"]),
              f"{dep['metadata']['name']}: stream replicas ({replicas}) = NATS cluster size "
              f"({nats['cluster']['replicas']})")

    check_nats_security(docs, (gateway, gc, "gateway"), (worker, wc, "worker"))

    print(f"k8s checks: {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
