"""The pipeline benchmark's baseline: a plain FastAPI + prometheus_client service doing no work.

It has the shape of the service this project replaces (the README, "Measured
here"): prometheus_client metrics recorded by an HTTP middleware (a request counter by endpoint and
status, a latency histogram with buckets 0.1-30 s, an active-request gauge), a pydantic model for
the request body, and `GET /metrics` in the Prometheus text format. `POST /v1/completions`
validates the body and answers a small completion-shaped JSON: no model, no queue. The endpoint
label is the route template, not the raw path (one of the brief's faults, not copied).

load-tests/bench.sh serves it with uvicorn (uvloop, httptools, one process) and drives it with wrk
at the same connections and duration as the gateway, so the gateway's requests/s is set against a
figure measured on the same machine, not a quoted one.

    .venv/bin/uvicorn fastapi_app:app --app-dir load-tests/baseline --port 8100
"""

import time

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter("model_requests", "Requests by endpoint and status", ["endpoint", "status"])
LATENCY = Histogram(
    "model_request_duration_seconds",
    "Time spent answering a request",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)
ACTIVE = Gauge("model_active_requests", "Requests being answered")


class CompletionRequest(BaseModel):
    model: str
    prompt: str
    max_tokens: int = 16
    stream: bool = False


app = FastAPI()


@app.middleware("http")
async def record_metrics(request: Request, call_next):
    started = time.perf_counter()
    ACTIVE.inc()
    try:
        response = await call_next(request)
    finally:
        ACTIVE.dec()
    route = request.scope.get("route")
    endpoint = route.path if route is not None else "unmatched"
    REQUESTS.labels(endpoint, str(response.status_code)).inc()
    LATENCY.labels(endpoint).observe(time.perf_counter() - started)
    return response


@app.post("/v1/completions")
async def completions(body: CompletionRequest) -> dict:
    return {
        "id": "baseline",
        "object": "text_completion",
        "model": body.model,
        "choices": [{"index": 0, "text": "x", "finish_reason": "length"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


@app.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
