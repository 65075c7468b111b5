#!/usr/bin/env bash
# The first run of the CUDA path on a real GPU (issue 15), in one call of the device machine.
#
#   scripts/gpu-check.sh --prepare     here, on the dev machine: builds what the GPU machine cannot
#                                      and packs it into .gpu-check/ (ignored), the folder to carry
#   scripts/gpu-check.sh [OUT_DIR]     there (or anywhere): runs the check, every output in OUT_DIR
#
# The check: `gpu-worker bench --device cuda:0` on the default model's shape (prompt 128 then
# 2,048 tokens, 64 generated each); then nats-server, a gateway and a worker on cuda:0
# (--concurrency 8), one raw streamed chat, `coder-load` with one streamed chat and with 8 at once,
# and the worker's /metrics scraped for nvidia_gpu_*; nvidia-smi sampled throughout. Each step has
# a time limit and the whole run a budget (GPU_CHECK_BUDGET), so results are written before the
# caller's limit; a failed step is recorded and the next one runs. Ends with summary.txt (also
# printed); exit status 0 only when every step passed.
#
# Why a prepared bundle, not a build there (measured, see README "The first GPU run"): the GPU
# machine has nvcc 13.0 but no Rust toolchain and no network. Rust 1.95's minimal toolchain
# (rustc, cargo, LLVM, std) is 563 MB, 124 MiB as .tar.xz, and `cargo vendor` of the workspace
# 440 MB, 31 MiB as .tar.xz: far over the 64 MiB a call carries. So --prepare builds here, with CUDA 13.0's nvcc from PyPI (13.0 to match the
# GPU machine's driver 580: newer PTX would not load) and CUDA_COMPUTE_CAP=90, links against stub
# libraries (the real ones are the GPU machine's: driver, cuBLAS, cuRAND, NVRTC from its PyTorch),
# and packs the stripped release binaries (gpu-worker with `cuda`, gateway, coder-load),
# nats-server and the first 5.95 MB of the default model (metadata and tokenizer) into one .tar.xz.
# The 1.1 GB model cannot travel: the check writes a file with the same metadata, tensor shapes
# and quantization types and pseudo-random weights, so speed and memory are the default model's,
# while the generated text is meaningless. With the real file at GPU_CHECK_MODEL_PATH it uses that.
# Where a bundle is absent and cargo is there, it builds instead (features GPU_CHECK_FEATURES).
#
# The device call (tree ~1.3 MB + bundle; see --prepare's last lines for the measured size):
#   run(command="bash scripts/gpu-check.sh", carry=[".gpu-check"], timeout_s=540)
# Results come back as $OUT/summary.txt and $OUT/gpu-check.tar.gz (the whole folder).
#
# On the CPU (how it was tested; small figures keep it short):
#   GPU_CHECK_FEATURES= GPU_CHECK_BIN_DIR=target/debug scripts/gpu-check.sh --prepare
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_SYNTHETIC=1 GPU_CHECK_PROMPTS=128 GPU_CHECK_GEN=8 GPU_CHECK_RUNS=1 \
#     GPU_CHECK_CHAT_TOKENS=8 GPU_CHECK_CONCURRENCY=2 scripts/gpu-check.sh /tmp/gpu-check-cpu
# Tried here in --prepare's CUDA mode: the pinned wheels (nvcc 13.0.88) and the stubs; the CUDA
# build and link itself (~20-30 min on 2 cores) has not been run yet.
#
# Env (defaults in brackets):
#   GPU_CHECK_DEVICE [cuda:0]        --device of bench and worker
#   GPU_CHECK_FEATURES [cuda]        gpu-worker features when building (--prepare, or no bundle)
#   GPU_CHECK_PROFILE [release]      cargo profile when building (`dev` = target/debug)
#   GPU_CHECK_BIN_DIR                use the binaries in this folder; build nothing
#   GPU_CHECK_BUNDLE [.gpu-check]    the prepared folder; used when it holds bundle.tar.xz
#   GPU_CHECK_MODEL_PATH [models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf]
#   GPU_CHECK_SYNTHETIC [auto]       1: weights made from the bundle's header even if the file exists
#   GPU_CHECK_PROMPTS ["128 2048"]   bench prompt lengths; GPU_CHECK_GEN [64], GPU_CHECK_RUNS [3]
#   GPU_CHECK_CHAT_TOKENS [64]       max_tokens of the chats through the stack
#   GPU_CHECK_CONCURRENCY [8]        worker slots and coder-load connections; GPU_CHECK_REQUESTS [16]
#   GPU_CHECK_READY_TIMEOUT [300]    seconds for the worker to load and announce itself
#   GPU_CHECK_BUDGET [480]           seconds for the whole run; later steps are skipped past it
#   GPU_CHECK_WORK [/tmp/gpu-check-work]  unpacked binaries and the model (never in OUT_DIR)
#   GPU_CHECK_PYTHON [python3]       any Python 3 (standard library only)
#   CUDA_COMPUTE_CAP [90]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

DEVICE="${GPU_CHECK_DEVICE:-cuda:0}"
FEATURES="${GPU_CHECK_FEATURES-cuda}"
PROFILE="${GPU_CHECK_PROFILE:-release}"
BUNDLE="${GPU_CHECK_BUNDLE:-$REPO/.gpu-check}"
MODEL_NAME="qwen2.5-coder-1.5b-instruct"
MODEL_PATH="${GPU_CHECK_MODEL_PATH:-$REPO/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf}"
SYNTHETIC="${GPU_CHECK_SYNTHETIC:-auto}"
read -r -a PROMPTS <<<"${GPU_CHECK_PROMPTS:-128 2048}"
GEN="${GPU_CHECK_GEN:-64}"
RUNS="${GPU_CHECK_RUNS:-3}"
CHAT_TOKENS="${GPU_CHECK_CHAT_TOKENS:-64}"
CONCURRENCY="${GPU_CHECK_CONCURRENCY:-8}"
REQUESTS="${GPU_CHECK_REQUESTS:-$((2 * CONCURRENCY))}"
READY_TIMEOUT="${GPU_CHECK_READY_TIMEOUT:-300}"
BUDGET="${GPU_CHECK_BUDGET:-480}"
WORK="${GPU_CHECK_WORK:-${TMPDIR:-/tmp}/gpu-check-work}"
PY="${GPU_CHECK_PYTHON:-python3}"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export RUST_BACKTRACE=1 NO_COLOR=1

# CUDA 13.0 (the GPU machine's driver 580 runs PTX of CUDA <= 13.0) for --prepare, from PyPI.
CUDA_WHEELS=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85)
# The shared libraries cudarc links (candle's `dynamic-linking`), as the GPU machine names them.
STUB_LIBS=(libcuda.so.1 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13)

say() { printf 'gpu-check: %s\n' "$*"; }

# ---------------------------------------------------------------------------------------------
# Python helpers (standard library only: the GPU machine's python3 is PyTorch's, this one has no
# numpy), written to WORK so that `timeout` can run them. `gguf_tool header MODEL OUT` copies a
# GGUF file's metadata and tensor table; `gguf_tool synth HEADER OUT` writes a model with that
# header and pseudo-random weights.
GGUF_TOOL="$WORK/gguf_tool.py"
write_gguf_tool() {
    mkdir -p "$WORK"
    cat >"$GGUF_TOOL" <<'PY'
import os, struct, sys

def parse(buf):
    pos = 0
    def rd(fmt):
        nonlocal pos
        v = struct.unpack_from('<' + fmt, buf, pos)[0]
        pos += struct.calcsize('<' + fmt)
        return v
    def rstr():
        nonlocal pos
        n = rd('Q'); s = buf[pos:pos + n]; pos += n
        return s
    scalar = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: '?', 10: 'Q', 11: 'q', 12: 'd'}
    def skip(t):
        nonlocal pos
        if t == 8: rstr()
        elif t == 9:
            et = rd('I'); n = rd('Q')
            if et == 8:
                for _ in range(n): rstr()
            elif et == 9: raise SystemExit('nested GGUF arrays are not handled')
            else: pos += n * struct.calcsize(scalar[et])
        else: rd(scalar[t])
    if buf[:4] != b'GGUF': raise SystemExit('not a GGUF file')
    pos = 4; rd('I'); n_tensors = rd('Q'); n_kv = rd('Q'); align = 32
    for _ in range(n_kv):
        key = rstr(); t = rd('I')
        if key == b'general.alignment': align = rd('I')
        else: skip(t)
    tensors = []
    for _ in range(n_tensors):
        name = rstr().decode(); nd = rd('I'); dims = [rd('Q') for _ in range(nd)]
        tensors.append((name, dims, rd('I'), rd('Q')))
    return tensors, (pos + align - 1) // align * align, align

# ggml type: (elements per block, bytes per block)
BLOCK = {0: (1, 4), 1: (1, 2), 8: (32, 34), 12: (256, 144), 13: (256, 176), 14: (256, 210)}
NAMES = {0: 'F32', 1: 'F16', 8: 'Q8_0', 12: 'Q4_K', 13: 'Q5_K', 14: 'Q6_K'}

def nbytes(dims, t):
    if t not in BLOCK: raise SystemExit(f'ggml type {t} is not handled by the synthetic weights')
    n = 1
    for d in dims: n *= d
    per, size = BLOCK[t]
    return n // per * size

def f16(x): return struct.pack('<e', x)

def pattern(n, seed_bytes):
    reps = n // len(seed_bytes) + 1
    return bytearray((seed_bytes * reps)[:n])

def fill(name, dims, t, rnd):
    n = nbytes(dims, t)
    if t == 0:   # f32: norms 1.0, biases small
        if 'norm' in name: return struct.pack('<f', 1.0) * (n // 4)
        vals = struct.pack('<1024f', *[(b - 127.5) / 127.5 * 0.02 for b in rnd[:1024]])
        return bytes(pattern(n, vals))
    if t == 1:
        vals = b''.join(f16((b - 127.5) / 127.5 * 0.02) for b in rnd[:1024])
        return bytes(pattern(n, vals))
    per, size = BLOCK[t]; blocks = n // size
    buf = pattern(n, rnd)
    def put(offset, two):      # the same two bytes at `offset` of every block
        buf[offset::size] = two[:1] * blocks
        buf[offset + 1::size] = two[1:] * blocks
    if t == 8: put(0, f16(2 ** -12))                          # d * q, |q| <= 127: |w| <= 0.031
    elif t in (12, 13): put(0, f16(2 ** -14)); put(2, f16(2 ** -14))  # d, dmin: |w| <= 0.06
    elif t == 14:                                             # int8 scales in [-8, 8], d last
        small = bytes(((b % 17) - 8) & 0xff for b in range(256))
        for k in range(192, 208):
            buf[k::size] = os.urandom(blocks).translate(small)
        put(208, f16(2 ** -13))                               # |w| <= 1.2e-4 * 8 * 32 = 0.031
    return bytes(buf)

cmd = sys.argv[1]
if cmd == 'header':
    src, out = sys.argv[2:4]
    with open(src, 'rb') as f: head = f.read(64 << 20)
    tensors, start, _ = parse(head)
    with open(out, 'wb') as f: f.write(head[:start])
    print(f'{start} bytes of metadata and tensor table, {len(tensors)} tensors')
elif cmd == 'synth':
    src, out = sys.argv[2:4]
    with open(src, 'rb') as f: head = f.read()
    tensors, start, align = parse(head)
    rnd = os.urandom(1 << 22)
    counts = {}
    tmp = out + '.partial'
    with open(tmp, 'wb') as f:
        f.write(head[:start])
        for name, dims, t, off in sorted(tensors, key=lambda x: x[3]):
            here = f.tell() - start
            if off < here: raise SystemExit(f'tensor {name} overlaps the one before it')
            f.write(b'\0' * (off - here))
            f.write(fill(name, dims, t, rnd))
            counts[NAMES.get(t, t)] = counts.get(NAMES.get(t, t), 0) + 1
        here = f.tell() - start
        f.write(b'\0' * ((align - here % align) % align))
        size = f.tell()
    os.replace(tmp, out)
    print(f'wrote {out}: {size} bytes, {len(tensors)} tensors {counts}, pseudo-random weights')
else:
    raise SystemExit(f'unknown command {cmd}')
PY
}
gguf_tool() { "$PY" "$GGUF_TOOL" "$@"; }

# ---------------------------------------------------------------------------------------------
# --prepare: here, on the dev machine.

# A venv with CUDA 13.0's nvcc and headers; prints the toolkit root.
cuda_toolkit() {
    local cache=$1
    if [ ! -x "$cache/venv/bin/pip" ]; then python3 -m venv "$cache/venv" >&2; fi
    "$cache/venv/bin/pip" install --quiet --no-deps "${CUDA_WHEELS[@]}" >&2
    "$cache/venv/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))'
}

# Stub shared libraries, named as on the GPU machine, defining every function cudarc declares
# for them: enough to link (`-lcuda -lnvrtc -lcurand -lcublas -lcublasLt`); the real ones are
# loaded there. candle-kernels also links `-lcudart`: the real one from the toolkit's wheel.
make_stubs() {
    local dir=$1 toolkit=$2 cudarc lib base module prefix cudart
    cudarc=$(cargo metadata --format-version 1 --locked --features gpu-worker/cuda |
        "$PY" -c 'import json, sys, os; m = json.load(sys.stdin); print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"] == "cudarc"))')
    mkdir -p "$dir"
    for lib in "${STUB_LIBS[@]}"; do
        base=${lib%%.so*}
        case $base in
            libcuda) module=driver prefix=cu ;;
            libcublas) module=cublas prefix=cublas ;;
            libcublasLt) module=cublaslt prefix=cublasLt ;;
            libcurand) module=curand prefix=curand ;;
            libnvrtc) module=nvrtc prefix=nvrtc ;;
        esac
        grep -rhoE "pub unsafe fn ${prefix}[A-Za-z0-9_]*" "$cudarc/src/$module/sys" | awk '{ print "void " $4 "(void) {}" }' |
            sort -u >"$dir/$base.c"
        [ -s "$dir/$base.c" ] || { say "no functions found for $lib in $cudarc/src/$module/sys"; exit 1; }
        cc -shared -fPIC -Wl,-soname,"$lib" -o "$dir/$lib" "$dir/$base.c"
        ln -sf "$lib" "$dir/$base.so"
    done
    cudart=$(find "$toolkit" -name 'libcudart.so.*' | head -n1)
    [ -n "$cudart" ] || { say "no libcudart.so.* in $toolkit"; exit 1; }
    ln -sf "$cudart" "$dir/libcudart.so"
}

prepare() {
    local cache="$REPO/.cache/gpu-check" bins target_dir features=()
    STAGE=$(mktemp -d)
    trap 'rm -rf "$STAGE"' EXIT
    mkdir -p "$BUNDLE" "$STAGE/bin" "$cache"
    local f
    IFS=',' read -r -a flist <<<"$FEATURES"
    for f in "${flist[@]}"; do [ -n "$f" ] && features+=(--features "gpu-worker/$f"); done

    if [ -n "${GPU_CHECK_BIN_DIR:-}" ]; then
        bins="$GPU_CHECK_BIN_DIR"
        say "packing the binaries in $bins (nothing built)"
    elif [[ ",$FEATURES," == *,cuda,* ]]; then
        local toolkit
        toolkit=$(cuda_toolkit "$cache/cuda")
        say "$("$toolkit/bin/nvcc" --version | grep release)"
        make_stubs "$cache/stubs" "$toolkit"
        target_dir="$cache/target"
        say "building (release, ${features[*]}, CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP) in $target_dir: ~20-30 min on 2 cores the first time"
        CUDA_ROOT="$toolkit" CUDA_PATH="$toolkit" CUDA_HOME="$toolkit" PATH="$toolkit/bin:$PATH" \
            LIBRARY_PATH="$cache/stubs" RUSTFLAGS="-L native=$cache/stubs" \
            cargo build --locked --release --target-dir "$target_dir" \
            -p gpu-worker -p gateway -p load-tests "${features[@]}"
        bins="$target_dir/release"
        "$toolkit/bin/nvcc" --version >"$STAGE/nvcc.txt"
    else
        target_dir="${CARGO_TARGET_DIR:-$REPO/target}"
        cargo build --locked --profile "$PROFILE" -p gpu-worker -p gateway -p load-tests "${features[@]}"
        if [ "$PROFILE" = dev ]; then bins="$target_dir/debug"; else bins="$target_dir/$PROFILE"; fi
    fi
    local b
    for b in gpu-worker gateway coder-load; do
        [ -x "$bins/$b" ] || { say "missing $bins/$b"; exit 1; }
        strip -o "$STAGE/bin/$b" "$bins/$b"
    done
    local nats="$REPO/.venv/bin/nats-server"
    [ -x "$nats" ] || scripts/setup.sh
    cp "$nats" "$STAGE/bin/nats-server"
    [ -f "$MODEL_PATH" ] || scripts/fetch-model.sh
    gguf_tool header "$MODEL_PATH" "$STAGE/model-header.gguf"
    {
        echo "prepared: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -srm)"
        echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (tree modified)')"
        echo "binaries from: $bins (features: ${FEATURES:-none}, CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP)"
        echo "rustc: $(rustc --version)"
        [ -f "$STAGE/nvcc.txt" ] && echo "nvcc: $(grep release "$STAGE/nvcc.txt")"
        echo "model header from: $MODEL_PATH ($(stat -c %s "$MODEL_PATH") bytes)"
        echo "gpu-worker needs: $(readelf -d "$STAGE/bin/gpu-worker" | awk '/NEEDED/ { gsub(/[][]/, "", $5); printf "%s ", $5 }')"
        (cd "$STAGE" && sha256sum bin/* model-header.gguf)
    } >"$STAGE/MANIFEST.txt"
    tar -C "$STAGE" -cf - bin model-header.gguf MANIFEST.txt | xz -T0 -6 >"$BUNDLE/bundle.tar.xz.partial"
    mv "$BUNDLE/bundle.tar.xz.partial" "$BUNDLE/bundle.tar.xz"
    cp "$STAGE/MANIFEST.txt" "$BUNDLE/MANIFEST.txt"
    cat "$BUNDLE/MANIFEST.txt"
    local tree carry
    tree=$(git ls-files -co --exclude-standard -z | du --files0-from=- -cb 2>/dev/null | tail -1 | cut -f1)
    carry=$(du -cb "$BUNDLE" | tail -1 | cut -f1)
    say "bundle $(du -h "$BUNDLE/bundle.tar.xz" | cut -f1); working tree $((tree / 1024)) KiB + .gpu-check $((carry / 1024)) KiB = $(((tree + carry) / 1048576)) MiB of the 64 MiB a call carries"
    if [ $((tree + carry)) -ge $((64 * 1048576)) ]; then say "TOO LARGE to carry"; exit 1; fi
    say 'device call: run(command="bash scripts/gpu-check.sh", carry=[".gpu-check"], timeout_s=540)'
}

if [ "${1:-}" = --prepare ]; then
    write_gguf_tool
    prepare
    exit 0
fi
if [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# The check.

DIR="${1:-$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")}"
mkdir -p "$DIR" "$WORK"
DIR="$(cd "$DIR" && pwd)"
write_gguf_tool
STEPS="$DIR/steps.tsv"
COMMANDS="$DIR/commands.txt"
: >"$STEPS"
: >"$COMMANDS"
START=$SECONDS
PIDS=()
FAILED=0

note() { printf '%q ' "$@" >>"$COMMANDS"; printf '\n' >>"$COMMANDS"; }

# record NAME RESULT SECONDS LOG: one line of steps.tsv, and on stdout.
record() {
    printf '%s\t%s\t%s s\t%s\n' "$1" "$2" "$3" "$4" >>"$STEPS"
    say "$1: $2 ($3 s${4:+, $4})"
    case $2 in ok | skipped*) ;; *) FAILED=1 ;; esac
}

left() { echo $((BUDGET - (SECONDS - START))); }

# step NAME SECONDS LOG COMMAND...: runs COMMAND with its output in LOG (stdout alone in
# `LOG.out` when STDOUT_TO is set to that), within SECONDS and the run's budget; records the result.
STDOUT_TO=""
step() {
    local name=$1 secs=$2 log=$3 rc=0 t0=$SECONDS limit
    shift 3
    limit=$(($(left) - 15))
    if [ "$limit" -lt 5 ]; then
        record "$name" "skipped: budget spent" 0 ""
        STDOUT_TO=""
        return 1
    fi
    [ "$secs" -le "$limit" ] || secs=$limit
    note "$@"
    if [ -n "$STDOUT_TO" ]; then
        timeout -k 10 "$secs" "$@" >"$STDOUT_TO" 2>"$log" || rc=$?
    else
        timeout -k 10 "$secs" "$@" >"$log" 2>&1 || rc=$?
    fi
    STDOUT_TO=""
    if [ $rc -eq 0 ]; then
        record "$name" ok $((SECONDS - t0)) "${log#"$DIR"/}"
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        record "$name" "FAIL: timed out after $secs s" $((SECONDS - t0)) "${log#"$DIR"/}"
    else
        record "$name" "FAIL: exit $rc" $((SECONDS - t0)) "${log#"$DIR"/}"
    fi
    return $rc
}

# spawn LOG COMMAND...: in the background; its pid joins PIDS (stopped at exit) and is in SPAWNED.
spawn() {
    note "${@:2}"
    "${@:2}" >"$1" 2>&1 &
    SPAWNED=$!
    PIDS+=("$SPAWNED")
}

# Stops what spawn started, last first: SIGTERM, up to 10 s to exit, then SIGKILL.
stop_all() {
    local pid deadline
    while [ ${#PIDS[@]} -gt 0 ]; do
        pid=${PIDS[-1]}
        unset 'PIDS[-1]'
        kill -TERM "$pid" 2>/dev/null || continue
        deadline=$((SECONDS + 10))
        while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

# At exit: stop what was started; on the device machine ($OUT set, OUT_DIR elsewhere), put the
# summary and the whole folder (one archive) into $OUT, which returns at most 8 files.
# shellcheck disable=SC2317 # called by the EXIT trap
finish() {
    stop_all
    if [ -n "${OUT:-}" ] && [ -d "$OUT" ] && [ "$DIR" != "$(cd "$OUT" && pwd)" ]; then
        [ -f "$DIR/summary.txt" ] && cp "$DIR/summary.txt" "$OUT/summary.txt"
        tar -C "$(dirname "$DIR")" -czf "$OUT/gpu-check.tar.gz" "$(basename "$DIR")" || true
    fi
}
trap finish EXIT
trap 'exit 130' INT TERM

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# http_get URL FILE: the body into FILE.
http_get() {
    "$PY" - "$1" "$2" <<'PY'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r, open(sys.argv[2], 'wb') as f:
    f.write(r.read())
PY
}

say "output in $DIR (device $DEVICE, budget $BUDGET s)"

# 1. The machine.
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(uname -srm)"
    echo "cpus: $(nproc) ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo))"
    echo "memory: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "commit: $(git rev-parse HEAD 2>/dev/null || echo 'unknown (no git here)')"
    echo "device: $DEVICE; features when building: ${FEATURES:-none}; CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP"
    echo "python: $("$PY" --version 2>&1)"
    if command -v nvidia-smi >/dev/null; then nvidia-smi -L; nvidia-smi --query-gpu=driver_version,memory.total --format=csv; fi
    if command -v nvcc >/dev/null; then nvcc --version | grep release; fi
    if command -v cargo >/dev/null; then cargo --version; else echo "cargo: none"; fi
    env | grep -E '^(GPU_CHECK|CUDA|LD_LIBRARY_PATH)' | sort
} >"$DIR/machine.txt" 2>&1 || true
if command -v nvidia-smi >/dev/null; then
    nvidia-smi -q >"$DIR/nvidia-smi-q.txt" 2>&1 || true
    spawn "$DIR/nvidia-smi-samples.csv" nvidia-smi \
        --query-gpu=timestamp,utilization.gpu,memory.used,memory.total,power.draw,temperature.gpu,clocks.sm \
        --format=csv -lms 500
fi

# 2. The binaries: the bundle, given ones, or a build.
BIN=""
HEADER=""
if [ -n "${GPU_CHECK_BIN_DIR:-}" ]; then
    BIN="$GPU_CHECK_BIN_DIR"
    record binaries "ok" 0 "given: $BIN"
elif [ -f "$BUNDLE/bundle.tar.xz" ]; then
    rm -rf "$WORK/bundle"
    mkdir -p "$WORK/bundle"
    if command -v xz >/dev/null; then
        step unpack 120 "$DIR/unpack.log" tar -C "$WORK/bundle" -xJf "$BUNDLE/bundle.tar.xz" || true
    else
        step unpack 120 "$DIR/unpack.log" "$PY" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
            "$BUNDLE/bundle.tar.xz" "$WORK/bundle" || true
    fi
    BIN="$WORK/bundle/bin"
    HEADER="$WORK/bundle/model-header.gguf"
    cp "$WORK/bundle/MANIFEST.txt" "$DIR/bundle-manifest.txt" 2>/dev/null || true
    if [[ $DEVICE == cuda* ]] && ! grep -q '^binaries from: .*features: [^)]*cuda' "$DIR/bundle-manifest.txt" 2>/dev/null; then
        record bundle "FAIL: built without the cuda feature (bundle-manifest.txt); rerun --prepare with GPU_CHECK_FEATURES=cuda" 0 bundle-manifest.txt
    fi
elif command -v cargo >/dev/null; then
    features=()
    IFS=',' read -r -a flist <<<"$FEATURES"
    for f in "${flist[@]}"; do [ -n "$f" ] && features+=(--features "gpu-worker/$f"); done
    step build 1800 "$DIR/build.log" cargo build --locked --profile "$PROFILE" \
        -p gpu-worker -p gateway -p load-tests ${features[@]+"${features[@]}"} || true
    target_dir="${CARGO_TARGET_DIR:-$REPO/target}"
    if [ "$PROFILE" = dev ]; then BIN="$target_dir/debug"; else BIN="$target_dir/$PROFILE"; fi
else
    record binaries "FAIL: no $BUNDLE/bundle.tar.xz and no cargo (run scripts/gpu-check.sh --prepare where Rust is, and carry .gpu-check)" 0 ""
fi
WORKER="$BIN/gpu-worker"
GATEWAY="$BIN/gateway"
LOAD="$BIN/coder-load"
NATS="$BIN/nats-server"
[ -x "$NATS" ] || NATS="$REPO/.venv/bin/nats-server"
[ -x "$NATS" ] || NATS="$(command -v nats-server || echo nats-server)"

# 3. The worker's shared libraries: on the GPU machine cuBLAS, cuRAND and NVRTC live in PyTorch's
# site-packages or the CUDA toolkit, not where the loader looks.
if [ -x "$WORKER" ]; then
    missing=$(ldd "$WORKER" 2>/dev/null | awk '/not found/ { print $1 }' || true)
    if [ -n "$missing" ]; then
        roots=()
        for r in /usr/local/nvidia /usr/local/cuda /usr/local/cuda-13.0 /usr/lib/x86_64-linux-gnu /usr/lib64 /opt; do
            [ -d "$r" ] && roots+=("$r")
        done
        while read -r sp; do [ -d "$sp" ] && roots+=("$sp"); done < <("$PY" -c 'import site; print("\n".join(site.getsitepackages()))' 2>/dev/null || true)
        # One pass over the roots for every missing name; never a stub (.../stubs/libcuda.so.1).
        names=()
        for lib in $missing; do names+=(-o -name "$lib"); done
        find "${roots[@]}" \( "${names[@]:1}" \) \( -type f -o -type l \) 2>/dev/null | grep -v '/stubs/' >"$WORK/libraries.txt" || true
        for lib in $missing; do
            found=$(grep -m1 "/$lib\$" "$WORK/libraries.txt" || true)
            if [ -n "$found" ]; then
                LD_LIBRARY_PATH="$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
                echo "$lib: $found"
            else
                echo "$lib: NOT FOUND"
            fi
        done >"$DIR/libraries-found.txt"
        export LD_LIBRARY_PATH
    fi
    ldd "$WORKER" >"$DIR/ldd-gpu-worker.txt" 2>&1 || true
    if grep -q 'not found' "$DIR/ldd-gpu-worker.txt"; then
        record libraries "FAIL: $(awk '/not found/ { printf "%s ", $1 }' "$DIR/ldd-gpu-worker.txt")missing" 0 ldd-gpu-worker.txt
    else
        record libraries ok 0 ldd-gpu-worker.txt
    fi
    step version 30 "$DIR/versions.txt" "$WORKER" --version || true
else
    record libraries "FAIL: no gpu-worker at $WORKER" 0 ""
fi

# 4. The model: the real file, or its shape with pseudo-random weights.
if [ "$SYNTHETIC" != 1 ] && [ -f "$MODEL_PATH" ]; then
    MODEL="$MODEL_PATH"
    WEIGHTS="real weights"
    record model ok 0 "real file $MODEL"
elif [ -n "$HEADER" ] && [ -f "$HEADER" ] || [ -f "${GPU_CHECK_HEADER:-}" ]; then
    [ -n "${GPU_CHECK_HEADER:-}" ] && HEADER="$GPU_CHECK_HEADER"
    MODEL="$WORK/synthetic-$MODEL_NAME.gguf"
    WEIGHTS="pseudo-random weights in the default model's shape (speed real, text meaningless)"
    step model 300 "$DIR/model.log" "$PY" "$GGUF_TOOL" synth "$HEADER" "$MODEL" || true
else
    MODEL="$MODEL_PATH"
    WEIGHTS="none"
    record model "FAIL: no $MODEL_PATH and no model header (bundle)" 0 ""
fi

# 5. The model alone: gpu-worker bench.
for p in "${PROMPTS[@]}"; do
    STDOUT_TO="$DIR/bench-p$p.json"
    step "bench prompt $p" 600 "$DIR/bench-p$p.log" "$WORKER" bench --device "$DEVICE" \
        --model-path "$MODEL" --prompt-tokens "$p" --max-tokens "$GEN" --runs "$RUNS" --json || true
done

# 6. The stack: nats-server, gateway, one worker on the device; chats through it; metrics.
ports=()
for _ in nats api gateway-metrics worker-metrics; do ports+=("$(free_port)"); done
nats_port=${ports[0]} api_port=${ports[1]} gw_metrics_port=${ports[2]} worker_metrics_port=${ports[3]}
API="http://127.0.0.1:$api_port"
GW_METRICS="http://127.0.0.1:$gw_metrics_port/metrics"
WORKER_METRICS="http://127.0.0.1:$worker_metrics_port/metrics"
mkdir -p "$WORK/nats"
rm -rf "${WORK:?}/nats/"*
spawn "$DIR/nats.log" "$NATS" -a 127.0.0.1 -p "$nats_port" -js -sd "$WORK/nats"
spawn "$DIR/gateway.log" env RUST_LOG=info "$GATEWAY" --listen "127.0.0.1:$api_port" \
    --metrics-listen "127.0.0.1:$gw_metrics_port" --nats-url "nats://127.0.0.1:$nats_port" --models "$MODEL_NAME"
spawn "$DIR/worker.log" env RUST_LOG=info "$WORKER" --nats-url "nats://127.0.0.1:$nats_port" \
    --metrics-listen "127.0.0.1:$worker_metrics_port" --backend candle --model "$MODEL_NAME" \
    --model-path "$MODEL" --device "$DEVICE" --concurrency "$CONCURRENCY"
WORKER_PID=$SPAWNED

# Waits for the model to be served, giving up early if the worker exits.
wait_served() {
    local deadline=$((SECONDS + READY_TIMEOUT))
    while [ $SECONDS -lt $deadline ] && [ "$(left)" -gt 30 ]; do
        kill -0 "$WORKER_PID" 2>/dev/null || { echo "the worker exited (see worker.log)"; return 1; }
        if "$LOAD" wait-ready --url "$API" --model "$MODEL_NAME" --timeout 5 2>/dev/null; then return 0; fi
        sleep 1
    done
    echo "not served after $READY_TIMEOUT s (or the budget ran out)"
    return 1
}
t0=$SECONDS
if wait_served >"$DIR/ready.log" 2>&1; then
    record "stack ready" ok $((SECONDS - t0)) "worker.log"
    STACK=1
else
    record "stack ready" "FAIL: $(tail -n1 "$DIR/ready.log")" $((SECONDS - t0)) "worker.log"
    STACK=0
fi

if [ "$STACK" = 1 ]; then
    # One streamed chat, raw: the SSE as sent, and its text.
    step "streamed chat (raw SSE)" 300 "$DIR/chat-stream.log" "$PY" - "$API" "$MODEL_NAME" "$CHAT_TOKENS" "$DIR/chat-stream" <<'PY' || true
import json, sys, time, urllib.request
api, model, tokens, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
body = {"model": model, "stream": True, "max_tokens": tokens, "temperature": 0,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "Write a Python function that reverses a string."}]}
req = urllib.request.Request(api + "/v1/chat/completions", data=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
t0 = time.time(); first = None; text = []; done = False; usage = None
with urllib.request.urlopen(req, timeout=280) as r, open(out + ".sse", "w") as raw:
    print("status", r.status, "x-request-id", r.headers.get("x-request-id"))
    for line in r:
        line = line.decode()
        raw.write(line)
        if not line.startswith("data: "): continue
        data = line[6:].strip()
        if data == "[DONE]": done = True; break
        chunk = json.loads(data)
        usage = chunk.get("usage") or usage
        for c in chunk.get("choices", []):
            piece = (c.get("delta") or {}).get("content")
            if piece:
                first = first or time.time(); text.append(piece)
with open(out + ".txt", "w") as f: f.write("".join(text))
print(f"time to first token {first - t0:.3f} s, total {time.time() - t0:.3f} s" if first else "no content")
print("usage", usage)
if not done: sys.exit("no [DONE]")
if not text: sys.exit("no content")
PY
    for c in 1 "$CONCURRENCY"; do
        n=$([ "$c" = 1 ] && echo 1 || echo "$REQUESTS")
        step "coder-load concurrency $c ($n streamed chats)" 400 "$DIR/load-c$c.log" "$LOAD" run --url "$API" \
            --model "$MODEL_NAME" --concurrency "$c" --requests "$n" --stream --chat --max-tokens "$CHAT_TOKENS" \
            --metrics-url "$GW_METRICS" --worker-metrics-url "$WORKER_METRICS" --out "$DIR/load-c$c" \
            --label "c$c" --no-progress --timeout 300 --settle-timeout 10 || true
    done
fi

# The worker's and the gateway's metrics, whatever happened before.
if http_get "$WORKER_METRICS" "$DIR/worker-metrics.txt" 2>"$DIR/scrape.log"; then
    grep '^nvidia_gpu_' "$DIR/worker-metrics.txt" >"$DIR/gpu-metrics.txt" || true
    if [ -s "$DIR/gpu-metrics.txt" ]; then
        record "nvidia_gpu_* on the worker's /metrics" ok 0 gpu-metrics.txt
    elif [[ $DEVICE == cuda* ]]; then
        record "nvidia_gpu_* on the worker's /metrics" "FAIL: none" 0 worker-metrics.txt
    else
        record "nvidia_gpu_* on the worker's /metrics" "skipped: none, as expected without a GPU" 0 worker-metrics.txt
    fi
else
    record "worker /metrics" "FAIL: not reachable" 0 scrape.log
fi
http_get "$GW_METRICS" "$DIR/gateway-metrics.txt" 2>>"$DIR/scrape.log" || true
stop_all

# 7. The summary.
"$PY" - "$DIR" "$DEVICE" "$WEIGHTS" "$FAILED" <<'PY' >"$DIR/summary.txt" || echo "summary failed" >>"$DIR/summary.txt"
import glob, json, os, sys
d, device, weights, failed = sys.argv[1:5]
def read(p):
    try:
        with open(os.path.join(d, p)) as f: return f.read()
    except OSError: return ""
print("gpu-check:", "PASS" if failed == "0" else "FAIL", "| device", device, "|", weights)
print(read("machine.txt").rstrip())
print("\nsteps:")
print(read("steps.tsv").rstrip())
print("\ngpu-worker bench (medians):")
for p in sorted(glob.glob(os.path.join(d, "bench-p*.json")), key=lambda p: int(p.split("-p")[-1][:-5])):
    try: b = json.load(open(p))
    except Exception: print(" ", os.path.basename(p), "no report"); continue
    print(f"  prompt {b['prompt_tokens']:>5}: load {b['load_seconds']:.2f} s, TTFT {b['time_to_first_token_seconds'] * 1000:.1f} ms, "
          f"prompt {b['prompt_tokens_per_second']:.1f} tok/s, decode {b['decode_tokens_per_second']:.1f} tok/s "
          f"({b['runs'][0]['generated_tokens']} generated), peak RSS {b['peak_rss_bytes'] / 2**30:.2f} GiB")
print("\nthrough the stack (coder-load, streamed chat):")
for p in sorted(glob.glob(os.path.join(d, "load-c*/result.json"))):
    try: r = json.load(open(p))
    except Exception: continue
    print(f"  {r.get('settings', {}).get('label')}: {r.get('successes')} ok / {r.get('errors')} errors, "
          f"TTFT p50 {r['ttft_ms'].get('p50', 0):.0f} ms, decode p50 {r['tokens_per_s'].get('p50', 0):.1f} tok/s per request, "
          f"{r.get('output_tokens_per_s', 0):.1f} output tok/s in all, accounting {r.get('accounting_ok')}")
chat = read("chat-stream.txt")
if chat: print("\nraw streamed chat text:", repr(chat[:300]))
gpu = read("gpu-metrics.txt").strip()
print("\nnvidia_gpu_* from the worker:")
print("\n".join("  " + l for l in gpu.splitlines()) if gpu else "  none")
info = [l for l in read("worker-metrics.txt").splitlines() if l.startswith("coder_worker_info")]
if info: print("  " + info[0])
for row in read("steps.tsv").splitlines():
    cols = row.split("\t")
    if len(cols) == 4 and cols[1].startswith("FAIL") and cols[3] and " " not in cols[3]:
        text = read(cols[3])
        for cut in ("Stack backtrace:", "stack backtrace:"):   # keep the error, not the frames
            text = text.split(cut)[0]
        tail = [l[:300] for l in text.splitlines() if l.strip()][-6:]
        if tail: print(f"\nlast lines of {cols[3]} ({cols[0]}):"); print("\n".join("  " + l for l in tail))
samples = read("nvidia-smi-samples.csv").splitlines()[1:]
if samples:
    try:
        mem = max(int(s.split(",")[2].split()[0]) for s in samples)
        util = max(int(s.split(",")[1].split()[0]) for s in samples)
        print(f"\nnvidia-smi, {len(samples)} samples: peak memory used {mem} MiB, peak utilization {util}%")
    except Exception: pass
PY
cat "$DIR/summary.txt"
say "everything is in $DIR"
exit "$FAILED"
