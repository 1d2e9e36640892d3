#!/usr/bin/env bash
# Runs the whole test suite: unit tests, host tests and end-to-end tests against real
# components, a real wasmtime host and real redis-server processes; then fmt and clippy.
source "$(dirname "$0")/lib.sh"

ensure_wasm_target
ensure_redis_installed
rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt

mapfile -t components < <(component_packages functions/* host/test-components/*)
build_components "${components[@]}"

log "building the host and the test binaries"
cargo test --workspace --no-run
log "running the tests"
cargo test --workspace
log "contract tests: schemathesis against the running app from each OpenAPI document"
CONTRACT_SKIP_BUILD=1 "$ROOT/scripts/contract-test.sh"

log "checking that deploy/ matches spin.toml"
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check pyyaml
python3 deploy/check.py

log "checking formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
