#!/usr/bin/env bash
# Runs every test: installs what is missing (scripts/setup.sh), fetches the default model
# (scripts/fetch-model.sh), builds once (dev profile), then
#   1. cargo test --workspace: unit tests, and black-box tests against a real nats-server per test,
#      the real gateway and gpu-worker binaries, the default model and the openai Python client;
#   2. infra/tests/static_checks.sh: promtool, amtool, Alertmanager, dashboards, Kubernetes;
#   3. scripts/infra-live-check.sh: every rule and dashboard query on a real Prometheus scraping
#      the real binaries (and metrics-common's gpu_fixture example, built by --all-targets, for
#      the GPU series), federation into a second Prometheus, file_sd relabelling in a third.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

scripts/setup.sh
scripts/fetch-model.sh
# Every binary before any test: `cargo test` builds a package's own binaries for its tests, but
# the gateway's and load-tests' tests also start the built `gpu-worker` (and load-tests the
# `gateway`), which only this build makes current.
cargo build --workspace --all-targets --locked
cargo test --workspace --locked --no-fail-fast
INFRA_SKIP_LIVE=1 infra/tests/static_checks.sh
scripts/infra-live-check.sh
echo "all test suites passed"
