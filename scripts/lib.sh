# Shared set-up for the run and test scripts: toolchain target, redis-server, component builds.
# Sourced, not executed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# The components are WebAssembly components for WASI 0.2.
ensure_wasm_target() {
  if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    log "adding the wasm32-wasip2 target"
    rustup target add wasm32-wasip2
  fi
}

# Installs Debian package PKG with apt when command CMD is missing.
ensure_apt_package() {
  local cmd="$1" pkg="$2"
  if ! command -v "$cmd" >/dev/null 2>&1; then
    log "installing $pkg (apt)"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$pkg" >/dev/null
  fi
}

# The Redis trigger and the tests need a real redis-server binary.
ensure_redis_installed() { ensure_apt_package redis-server redis-server; }

# True when something answers a Redis PING on host:port.
redis_answers() {
  local host="$1" port="$2" reply
  reply=$(timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port && printf 'PING\r\n' >&3 && head -c 5 <&3" 2>/dev/null) || return 1
  [[ "$reply" == "+PONG" ]]
}

# Package names of every crate under the given folders that builds a Wasm component.
component_packages() {
  local dir
  for dir in "$@"; do
    [ -f "$dir/Cargo.toml" ] || continue
    sed -n 's/^name *= *"\(.*\)"/\1/p' "$dir/Cargo.toml" | head -n 1
  done
}

# Builds the given component packages for wasm32-wasip2 in one cargo invocation.
build_components() {
  local args=() pkg
  for pkg in "$@"; do args+=(-p "$pkg"); done
  log "building components: $*"
  cargo build --release --target wasm32-wasip2 "${args[@]}"
}
