#!/usr/bin/env bash
# Builds the host's test components (host/test-components/*) for wasm32-wasip2 in release:
# the host's integration tests load target/wasm32-wasip2/release/<name>.wasm.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=()
for manifest in host/test-components/*/Cargo.toml; do
    name=$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -n 1)
    packages+=(-p "$name")
done
cargo build --release --target wasm32-wasip2 "${packages[@]}"
