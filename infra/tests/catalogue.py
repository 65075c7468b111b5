"""The metric catalogue as exposed names, for the offline name checks.

Kept by hand; check_catalogue.py fails when it drifts from what metrics-common exports
(the instrument specs in names.rs) or from DESIGN.md. A rule or panel naming anything else
is a typo.
"""
import pathlib
import re

import yaml

COUNTERS = [
    "coder_model_requests_total",
    "coder_model_prompt_tokens_total",
    "coder_model_generation_tokens_total",
    "coder_queue_rejected_total",
    "coder_queue_redeliveries_total",
    "coder_worker_requests_total",
    "coder_worker_prefill_tokens_total",
    "coder_worker_decode_tokens_total",
    "coder_worker_prefix_cache_queried_tokens_total",
    "coder_worker_prefix_cache_hit_tokens_total",
    "coder_worker_prefix_cache_evictions_total",
]
GAUGES = [
    "coder_model_active_requests",
    "coder_queue_pending_requests",
    "coder_queue_inflight_requests",
    "coder_queue_oldest_request_age_seconds",
    "coder_workers_connected",
    "coder_worker_slots",
    "coder_worker_info",
    "coder_worker_model_load_seconds",
    "coder_worker_kv_cache_usage_ratio",
    "coder_worker_prefix_cache_bytes",
    "nvidia_gpu_memory_used_bytes",
    "nvidia_gpu_memory_total_bytes",
    "nvidia_gpu_utilization_ratio",
    "nvidia_gpu_temperature_celsius",
    "nvidia_gpu_power_watts",
]
HISTOGRAMS = [
    "coder_model_request_duration_seconds",
    "coder_model_time_to_first_token_seconds",
    "coder_model_time_per_output_token_seconds",
    "coder_queue_wait_seconds",
    "coder_worker_batch_size",
    "coder_worker_step_tokens",
]
# Gauges every gateway reports with the same value (from JetStream and the heartbeats):
# aggregate them with max, never sum.
SHARED_GAUGES = [
    "coder_queue_pending_requests",
    "coder_queue_inflight_requests",
    "coder_queue_oldest_request_age_seconds",
    "coder_workers_connected",
]
# Series Prometheus itself adds.
BUILTIN = ["up", "ALERTS", "ALERTS_FOR_STATE"]

EXPOSED = set(COUNTERS + GAUGES + BUILTIN) | {
    h + suffix for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")
}
# Names the checks look at: ours, not PromQL functions or label names.
NAME_RE = re.compile(r"\b((?:coder_|nvidia_gpu_|model:|job:)[A-Za-z0-9_:]*)")

RULES_DIR = pathlib.Path(__file__).resolve().parent.parent / "prometheus" / "rules"


def recorded_names():
    names = set()
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {r["record"] for r in group["rules"] if "record" in r}
    return names


def unknown_names(expr, known):
    """Metric names in expr (outside label matchers' values) that are not in known."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return sorted({n for n in NAME_RE.findall(without_strings) if n not in known})


def shared_gauges_not_under_max(expr):
    """Shared gauges in expr that are not read directly through max by (...) (...)."""
    bad = []
    for g in SHARED_GAUGES:
        total = len(re.findall(rf"(?<![\w:]){g}(?![\w:])", expr))
        under_max = len(re.findall(rf"max by \([^)]*\) \({g}(?![\w:])", expr))
        if total != under_max:
            bad.append(g)
    return bad
