#!/usr/bin/env bash
# Runs the whole test suite: unit tests, host tests and end-to-end tests against real
# components, a real wasmtime host and real redis-server processes; then fmt and clippy, on the
# workspace and on fuzz/ (a workspace of its own).
source "$(dirname "$0")/lib.sh"

# What the suite shells out to, installed on a fresh Debian machine: a C/C++ toolchain for the
# native builds, redis-server (the end-to-end fixtures), PostgreSQL and libssl-dev (outbound
# PostgreSQL, and the end-to-end tests' second run with the SQL stores in it), mosquitto (the
# MQTT host tests), the sqlite3 shell (the end-to-end tests that tamper with a store:
# dead_letters.rs, faults.rs; psql, which comes with PostgreSQL, on the second run),
# python3 with PyYAML (deploy/check.py).
# scripts/contract-test.sh sees to its own (curl, python3-venv, Schemathesis).
ensure_wasm_target
ensure_build_tools
ensure_redis_installed
ensure_postgres_installed
ensure_openssl_dev
ensure_mosquitto_installed
ensure_apt_package sqlite3 sqlite3
# Headless Chromium and its WebDriver for the operator console's browser test (tests/tests/console.rs).
ensure_apt_package chromium chromium
ensure_apt_package chromedriver chromium-driver
ensure_apt_package python3 python3
ensure_python_module yaml python3-yaml pyyaml
installed_components=$(rustup component list --installed)
for component in clippy rustfmt; do
  grep -q "^$component" <<<"$installed_components" || rustup component add "$component"
done

lines_of components component_packages functions/* host/test-components/*
build_components "${components[@]}"

log "building the host and the test binaries"
cargo test --workspace --no-run
log "running the tests"
cargo test --workspace
log "end-to-end tests again, the SQL stores in PostgreSQL"
SHOP_TEST_SQL_STORE=postgres cargo test -p shop-e2e
log "contract tests: schemathesis against the running app from each OpenAPI document"
CONTRACT_SKIP_BUILD=1 "$ROOT/scripts/contract-test.sh"

log "checking that deploy/ matches spin.toml"
python3 deploy/check.py

log "checking formatting and lints"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The fuzz targets on the stable toolchain (libfuzzer-sys builds there; only running them with
# sanitizers needs nightly, scripts/fuzz.sh).
cargo clippy --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings
