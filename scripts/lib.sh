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

# Installs Debian packages with apt (as root, or through sudo); `apt-get update` once per run.
apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "installing $* (apt)"
  if [ -z "${APT_UPDATED:-}" ]; then
    $sudo apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# Installs Debian package PKG with apt when command CMD is missing.
ensure_apt_package() {
  local cmd="$1" pkg="$2"
  command -v "$cmd" >/dev/null 2>&1 || apt_install "$pkg"
}

# Makes `import MODULE` work in python3: Debian's own python3 (prefix /usr) takes APT_PKG, as its
# pip refuses to install system-wide (PEP 668); any other python3 (pyenv, venv) takes PIP_PKG.
ensure_python_module() {
  local module="$1" apt_pkg="$2" pip_pkg="$3"
  python3 -c "import $module" 2>/dev/null && return 0
  if [ "$(python3 -c 'import sys; print(sys.prefix)')" = /usr ]; then
    apt_install "$apt_pkg"
  else
    log "installing $pip_pkg (pip)"
    python3 -m pip install --quiet --disable-pip-version-check "$pip_pkg"
  fi
  python3 -c "import $module"
}

# A C and C++ toolchain: native builds link with cc, rusqlite's bundled SQLite and ring compile C,
# libfuzzer-sys compiles libFuzzer (C++).
ensure_build_tools() {
  command -v cc >/dev/null 2>&1 && command -v c++ >/dev/null 2>&1 || apt_install build-essential
}

# Runs CMD ARGS... and puts its output lines into the array named NAME. Fails (returns 1) when
# CMD fails or prints nothing, which `mapfile -t NAME < <(CMD)` would both let pass.
lines_of() {
  local -n lines_of_out="$1"
  shift
  local text
  text=$("$@") || { log "failed: $*"; return 1; }
  [ -n "$text" ] || { log "no output from: $*"; return 1; }
  mapfile -t lines_of_out <<<"$text"
}

# The Redis trigger and the tests need a real redis-server binary.
ensure_redis_installed() { ensure_apt_package redis-server redis-server; }

# The outbound PostgreSQL host tests need a PostgreSQL: testkit's PostgresServer uses the one on
# 127.0.0.1:5432 when it answers, else starts a private one from /usr/lib/postgresql/*/bin.
ensure_postgres_installed() {
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || apt_install postgresql
  ensure_apt_package psql postgresql-client
}

# The host's PostgreSQL TLS (native-tls, as Spin's) builds against the system's OpenSSL.
ensure_openssl_dev() {
  dpkg -s libssl-dev >/dev/null 2>&1 && command -v pkg-config >/dev/null 2>&1 ||
    apt_install libssl-dev pkg-config
}

# The MQTT host tests start a private mosquitto broker (testkit's MosquittoServer). Debian puts the
# binary in /usr/sbin, which is not on every user's PATH.
ensure_mosquitto_installed() {
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || apt_install mosquitto
}

# True when something answers a Redis PING on host:port.
redis_answers() {
  local host="$1" port="$2" reply
  reply=$(timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port && printf 'PING\r\n' >&3 && head -c 5 <&3" 2>/dev/null) || return 1
  [[ "$reply" == "+PONG" ]]
}

# Package names of every crate under the given folders that builds a Wasm component. Fails on
# a Cargo.toml without a package name rather than skip that component.
component_packages() {
  local dir name
  for dir in "$@"; do
    [ -f "$dir/Cargo.toml" ] || continue
    name=$(sed -n '/^name *= *"/{s/^name *= *"\(.*\)"/\1/p;q}' "$dir/Cargo.toml")
    [ -n "$name" ] || { log "no package name in $dir/Cargo.toml"; return 1; }
    printf '%s\n' "$name"
  done
}

# Builds the given component packages for wasm32-wasip2 in one cargo invocation. With no
# package, cargo would build the workspace's default members instead: refused.
build_components() {
  [ "$#" -gt 0 ] || { log "build_components: no component package given"; return 1; }
  local args=() pkg
  for pkg in "$@"; do args+=(-p "$pkg"); done
  log "building components: $*"
  cargo build --release --target wasm32-wasip2 "${args[@]}"
}

# Redis messages the shop-host whose metrics listen on 127.0.0.1:PORT has handled so far, over
# every consumer and channel.
redis_messages_handled() {
  curl -sf "http://127.0.0.1:$1/metrics" |
    awk '/^shop_host_redis_messages_total/ { n += $NF } END { printf "%d\n", n }'
}

# Waits until the shop-host with metrics on PORT has handled no Redis message for a whole
# second, or until DEADLINE_MS (epoch milliseconds); fails at the deadline.
wait_redis_quiet() {
  local port="$1" deadline="$2" before after
  after=$(redis_messages_handled "$port")
  while (( $(date +%s%3N) < deadline )); do
    sleep 1
    before=$after
    after=$(redis_messages_handled "$port")
    [[ $after == "$before" ]] && return 0
  done
  return 1
}
