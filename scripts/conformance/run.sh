#!/usr/bin/env bash
# Runs Spin's conformance suite (fermyon/conformance-tests, pinned below) against shop-host, as
# Spin's own tests/conformance-tests runs it: each test's app under `shop-host up --listen ...`,
# checked with the suite's assertions. The test components are built from the suite's source
# for wasm32-unknown-unknown: core modules, as the suite's releases ship them. The Redis,
# Mosquitto and PostgreSQL answering on loopback (6379, 1883, 5432) stand in for the suite's
# Docker services; PostgreSQL gets the suite's `spin_dev` database (PGUSER/PGPASSWORD, default
# postgres/postgres). Needs the network to clone the suite, so CI does not run it: the host's
# own tests (host/runtime/tests) cover what it checks. The score goes in the README.
# Usage: scripts/conformance/run.sh [libtest arguments, e.g. a test name]
source "$(dirname "$0")/../lib.sh"

SUITE_URL=${SUITE_URL:-https://github.com/fermyon/conformance-tests}
SUITE_REV=${SUITE_REV:-61f2799f92b5d85f342cc07e3f5dec5cd0a7bc9c}
WORK=$ROOT/target/conformance
SUITE=$WORK/suite
export CARGO_TARGET_DIR=$WORK/target

ensure_build_tools
rustup target add wasm32-unknown-unknown >/dev/null
if [ ! -d "$SUITE/.git" ]; then
    log "cloning $SUITE_URL"
    git clone -q "$SUITE_URL" "$SUITE"
fi
git -C "$SUITE" checkout -q "$SUITE_REV"

log "building shop-host, the runner and the suite's components"
(cd "$ROOT" && CARGO_TARGET_DIR="$ROOT/target" cargo build -q -p shop-host)
cargo build -q --release --manifest-path "$ROOT/scripts/conformance/Cargo.toml"
packages=()
for dir in "$SUITE"/components/*/; do
    packages+=(-p "$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$dir/Cargo.toml" | head -1)")
done
(cd "$SUITE" && cargo build -q --release --target wasm32-unknown-unknown "${packages[@]}")

# Each test as the suite's release lays it out: spin.toml, test.json5, component.wasm.
TESTS=$WORK/tests
rm -rf "$TESTS"
for test in "$SUITE"/tests/*/; do
    test=${test%/}
    name=$(basename "$test")
    component=$(sed -n 's/.*%{source=\([^}]*\)}.*/\1/p' "$test/spin.toml" | head -1)
    crate=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$SUITE/components/$component/Cargo.toml" | head -1 | tr - _)
    mkdir -p "$TESTS/$name"
    cp "$test/test.json5" "$TESTS/$name/"
    sed "s/%{source=[^}]*}/component.wasm/" "$test/spin.toml" >"$TESTS/$name/spin.toml"
    cp "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/$crate.wasm" "$TESTS/$name/component.wasm"
done

log "preparing PostgreSQL's spin_dev database"
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres} PGPASSWORD=${PGPASSWORD:-postgres}
psql -d postgres -qc 'DROP DATABASE IF EXISTS spin_dev' -c 'CREATE DATABASE spin_dev'
for sql in "$SUITE"/crates/test-environment/services/postgres-init/*.sql; do
    psql -d spin_dev -q -v ON_ERROR_STOP=1 -f "$sql"
done

log "running the suite (commit $SUITE_REV)"
RUST_LIB_BACKTRACE=0 "$CARGO_TARGET_DIR/release/conformance-runner" \
    "$ROOT/target/debug/shop-host" "$TESTS" --test-threads=1 "$@"
