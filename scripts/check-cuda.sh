#!/usr/bin/env bash
# Compiles gpu-worker with `--features cuda` on a machine without a GPU or a CUDA toolkit.
#
# CUDA 13.4's nvcc and headers come from PyPI (scripts/cuda-requirements.txt, sha256-pinned) into
# their own venv under .cache/cuda; candle's kernels are then compiled to PTX and objects for
# CUDA_COMPUTE_CAP (default 90, H100/H200) and every crate is type-checked with the feature on, in
# a target directory of its own so the CPU build is left alone. Nothing is linked: that needs the
# NVIDIA driver's libcuda, which only a GPU machine has; there, build with
# `cargo build --release -p gpu-worker --features cuda` against the installed toolkit.
#
# Idempotent; ~11 min on 2 cores the first time, seconds after.
#
# Usage: scripts/check-cuda.sh
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${CODER_CUDA_DIR:-$REPO_ROOT/.cache/cuda}"
VENV="$CACHE/venv"

log() { printf 'check-cuda: %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/pip" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --require-hashes --no-deps -r "$REPO_ROOT/scripts/cuda-requirements.txt"
toolkit="$("$VENV/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')"
log "$("$toolkit/bin/nvcc" --version | tail -2 | head -1)"

cd "$REPO_ROOT"
CUDA_ROOT="$toolkit" CUDA_PATH="$toolkit" CUDA_HOME="$toolkit" \
    CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}" PATH="$toolkit/bin:$PATH" \
    cargo check -p gpu-worker --features cuda --all-targets --target-dir "$CACHE/target"
log "gpu-worker type-checks with --features cuda; candle's CUDA kernels compiled for sm_${CUDA_COMPUTE_CAP:-90}"
