#!/usr/bin/env python3
"""A stand-in for one gateway and one worker, to exercise the infra scripts without them.

It serves a tiny OpenAI-style API and the metric catalogue (catalogue.py) with exactly the
exposition names, labels and buckets the Rust services emit (no otel_scope_name, no
target_info), so live_stack.sh, check_dashboard.py and federation can be run end to end
before or without the real binaries. It checks the infra files, not the services: the real
check is live_stack.sh against the real gateway and gpu-worker.

usage: fake_coder.py --api PORT --gateway-metrics PORT --worker-metrics PORT --model NAME [--gpu]
Standard library only.
"""
import argparse
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DURATION_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]
TTFT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
TPOT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5]
WAIT_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]
ROUTES = {"/v1/completions", "/v1/chat/completions", "/v1/models", "/healthz", "/readyz"}


def le(bound):
    """Rust's f64 Display, as the exporter writes `le`: 1.0 -> "1", 2.5 -> "2.5"."""
    text = repr(float(bound))
    return text[:-2] if text.endswith(".0") else text


def labels(pairs):
    return "{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}"


class Registry:
    def __init__(self):
        self.lock = threading.Lock()
        self.counters = {}  # (name, labels tuple) -> value
        self.gauges = {}
        self.hists = {}  # (name, labels tuple) -> [buckets, counts, sum, count]

    def inc(self, name, lbl, by=1.0):
        with self.lock:
            self.counters[(name, lbl)] = self.counters.get((name, lbl), 0.0) + by

    def set(self, name, lbl, value):
        with self.lock:
            self.gauges[(name, lbl)] = value

    def observe(self, name, lbl, buckets, value):
        with self.lock:
            h = self.hists.setdefault((name, lbl), [buckets, [0] * len(buckets), 0.0, 0])
            for i, bound in enumerate(buckets):
                if value <= bound:
                    h[1][i] += 1
            h[2] += value
            h[3] += 1

    def render(self):
        out = []
        with self.lock:
            for kind, series in (("counter", self.counters), ("gauge", self.gauges)):
                for name in sorted({n for n, _ in series}):
                    out.append(f"# TYPE {name} {kind}")
                    out += [f"{n}{labels(l)} {v}" for (n, l), v in series.items() if n == name]
            for name in sorted({n for n, _ in self.hists}):
                out.append(f"# TYPE {name} histogram")
                for (n, lbl), (buckets, counts, total, count) in self.hists.items():
                    if n != name:
                        continue
                    for bound, c in zip(buckets, counts):
                        out.append(f"{n}_bucket{labels(lbl + (('le', le(bound)),))} {c}")
                    out.append(f"{n}_bucket{labels(lbl + (('le', '+Inf'),))} {count}")
                    out.append(f"{n}_sum{labels(lbl)} {total}")
                    out.append(f"{n}_count{labels(lbl)} {count}")
        return "\n".join(out) + "\n"


def metrics_handler(registry):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = registry.render().encode() if self.path == "/metrics" else b"not found\n"
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


def api_handler(model, gw, worker, concurrency):
    busy = [0]
    busy_lock = threading.Lock()

    def set_slots():
        worker.set("coder_worker_slots", (("model_name", model), ("state", "busy")), busy[0])
        worker.set("coder_worker_slots", (("model_name", model), ("state", "idle")), concurrency - busy[0])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def reply(self, code, obj, endpoint, name, started):
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            status = "success" if code < 400 else "error"
            lbl = (("model_name", name), ("endpoint", endpoint), ("status", status), ("code", str(code)))
            gw.inc("coder_model_requests_total", lbl)
            gw.observe("coder_model_request_duration_seconds", (("model_name", name), ("endpoint", endpoint)),
                       DURATION_BUCKETS, time.monotonic() - started)

        def do_GET(self):
            started = time.monotonic()
            endpoint = self.path if self.path in ROUTES else "unmatched"
            if self.path == "/v1/models":
                self.reply(200, {"object": "list", "data": [{"id": model, "object": "model"}]}, endpoint, "unknown", started)
            elif self.path in ("/healthz", "/readyz"):
                self.reply(200, {"status": "ok"}, endpoint, "unknown", started)
            else:
                self.reply(404, {"error": {"message": "no such route", "type": "not_found", "param": None, "code": None}},
                           endpoint, "unknown", started)

        def do_POST(self):
            started = time.monotonic()
            endpoint = self.path if self.path in ROUTES else "unmatched"
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if endpoint not in ("/v1/completions", "/v1/chat/completions"):
                return self.reply(404, {"error": {"message": "no such route", "type": "not_found", "param": None,
                                                  "code": None}}, endpoint, "unknown", started)
            try:
                req = json.loads(raw)
            except ValueError:
                return self.reply(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error",
                                                  "param": None, "code": None}}, endpoint, "unknown", started)
            if req.get("model") != model:
                return self.reply(404, {"error": {"message": "unknown model", "type": "not_found", "param": "model",
                                                  "code": "model_not_found"}}, endpoint, "unknown", started)
            tokens = int(req.get("max_tokens", 4))
            m = (("model_name", model),)
            gw.set("coder_model_active_requests", m, 1)
            with busy_lock:
                busy[0] += 1
                set_slots()
            wait = random.uniform(0.001, 0.02)
            gw.observe("coder_queue_wait_seconds", m, WAIT_BUCKETS, wait)
            time.sleep(wait + 0.02)
            gw.observe("coder_model_time_to_first_token_seconds", m, TTFT_BUCKETS, time.monotonic() - started)
            time.sleep(0.01 * tokens)
            gw.observe("coder_model_time_per_output_token_seconds", m, TPOT_BUCKETS, 0.01)
            gw.inc("coder_model_prompt_tokens_total", m, 4)
            gw.inc("coder_model_generation_tokens_total", m, tokens)
            worker.inc("coder_worker_requests_total", m + (("outcome", "completed"),))
            # A prefix cache that holds three of every four looked-up blocks.
            worker.inc("coder_worker_prefix_cache_queried_tokens_total", m, 64)
            worker.inc("coder_worker_prefix_cache_hit_tokens_total", m, 48)
            worker.inc("coder_worker_prefix_cache_evictions_total", m, 0)
            worker.set("coder_worker_prefix_cache_bytes", m, 1 << 20)
            with busy_lock:
                busy[0] -= 1
                set_slots()
            gw.set("coder_model_active_requests", m, 0)
            text = {"id": "cmpl-fake", "object": "text_completion", "model": model,
                    "choices": [{"index": 0, "text": " return 1", "finish_reason": "length"}],
                    "usage": {"prompt_tokens": 4, "completion_tokens": tokens, "total_tokens": 4 + tokens}}
            self.reply(200, text, endpoint, model, started)

        def log_message(self, *args):
            pass

    set_slots()
    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--api", type=int, required=True)
    ap.add_argument("--gateway-metrics", type=int, required=True)
    ap.add_argument("--worker-metrics", type=int, required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--gpu", action="store_true", help="also export nvidia_gpu_* gauges")
    args = ap.parse_args()

    gw, worker = Registry(), Registry()
    m = (("model_name", args.model),)
    for name in ("coder_queue_pending_requests", "coder_queue_inflight_requests",
                 "coder_queue_oldest_request_age_seconds", "coder_model_active_requests"):
        gw.set(name, m, 0)
    gw.set("coder_workers_connected", m, 1)
    worker.set("coder_worker_model_load_seconds", m, 2.3)
    worker.set("coder_worker_info", m + (("backend", "synthetic"), ("device", "cpu"),
                                         ("cpu_kernels", "none")), 1)
    if args.gpu:
        g = m + (("gpu_id", "0"),)
        worker.set("nvidia_gpu_memory_used_bytes", g, 3.2e9)
        worker.set("nvidia_gpu_memory_total_bytes", g, 80e9)
        worker.set("nvidia_gpu_utilization_ratio", g, 0.4)
        worker.set("nvidia_gpu_temperature_celsius", g, 55)
        worker.set("nvidia_gpu_power_watts", g, 180)

    servers = [
        ThreadingHTTPServer(("127.0.0.1", args.api), api_handler(args.model, gw, worker, 4)),
        ThreadingHTTPServer(("127.0.0.1", args.gateway_metrics), metrics_handler(gw)),
        ThreadingHTTPServer(("127.0.0.1", args.worker_metrics), metrics_handler(worker)),
    ]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
