#!/usr/bin/env bash
# Installs what Tether needs, skipping whatever is already there. Sourced by scripts/run and
# scripts/test; safe to run again and again. Parts: rust, wasm (the SDK's toolchain), node (the
# npm tools), browser (Debian's Chromium and zbar), services (PostgreSQL, Redis), all.
#
#   scripts/setup.sh [rust|wasm|node|browser|services|all]
#
# The WebAssembly toolchain: `rustup target add wasm32-unknown-unknown` first (with a time
# limit); where rustup cannot reach its server, Debian's matching toolchain (rustc-web,
# cargo-web, rust-web-src, lld-22) built with -Z build-std. The choice is written to
# target/wasm-toolchain.env for the SDK build to source.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[setup] %s\033[0m\n' "$*" >&2; exit 1; }

APT_UPDATED=0
apt_install() {
  # apt_install PKG... : installs the Debian packages that are missing.
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "need Debian packages ${missing[*]} but there is no apt-get"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if [ "$APT_UPDATED" -eq 0 ]; then
    say "apt-get update"
    $sudo apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  say "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

setup_rust() {
  if ! command -v cargo >/dev/null; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null || die "cargo is missing: install Rust (https://rustup.rs) and run this again"
  # The bundled SQLite and other -sys crates build C.
  command -v cc >/dev/null || apt_install gcc libc6-dev
}

wasm_env_file="$ROOT/target/wasm-toolchain.env"

setup_wasm() {
  setup_rust
  mkdir -p "$ROOT/target"
  if [ -f "$wasm_env_file" ]; then
    # shellcheck disable=SC1090
    . "$wasm_env_file"
    local asked="${TETHER_WASM_TOOLCHAIN:-auto}"
    if [ "${WASM_ENV_VERSION:-}" != 2 ]; then
      rm -f "$wasm_env_file"
    elif [ "$asked" != auto ] && [ "$asked" != "${WASM_TOOLCHAIN:-}" ]; then
      # Another toolchain asked for than the one chosen before: choose again.
      rm -f "$wasm_env_file"
    elif [ "${WASM_TOOLCHAIN:-}" = rustup ] && rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
      :
    elif [ "${WASM_TOOLCHAIN:-}" = debian ] && [ -x /usr/bin/rustc ] && [ -d /usr/lib/rustlib/src/rust/library ]; then
      :
    else
      rm -f "$wasm_env_file"
    fi
  fi
  if [ ! -f "$wasm_env_file" ]; then
    local choice="${TETHER_WASM_TOOLCHAIN:-auto}"
    if [ "$choice" != debian ] && command -v rustup >/dev/null; then
      if rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$' \
        || { say "rustup target add wasm32-unknown-unknown (up to 180 s)"; timeout 180 rustup target add wasm32-unknown-unknown >&2; }; then
        # With std's sources, std is rebuilt with panic=immediate-abort: about 10 KB less
        # gzipped wasm. Without them the build still works, only larger.
        local std=""
        if rustup component list --installed 2>/dev/null | grep -q '^rust-src' \
          || { say "rustup component add rust-src (up to 180 s)"; timeout 180 rustup component add rust-src >&2; }; then
          std="std,panic_abort"
        fi
        printf '%s\n' 'WASM_ENV_VERSION=2' 'WASM_TOOLCHAIN=rustup' 'WASM_CARGO=cargo' 'WASM_RUSTC=' \
          "WASM_BUILD_STD=$std" > "$wasm_env_file"
      fi
    fi
    if [ ! -f "$wasm_env_file" ]; then
      if [ "$choice" = debian ]; then
        say "using Debian's wasm toolchain (TETHER_WASM_TOOLCHAIN=debian)"
      else
        say "rustup's wasm32 target is out of reach; using Debian's toolchain"
      fi
      apt_install rustc-web cargo-web rust-web-src lld-22
      printf '%s\n' 'WASM_ENV_VERSION=2' 'WASM_TOOLCHAIN=debian' 'WASM_CARGO=/usr/bin/cargo' 'WASM_RUSTC=/usr/bin/rustc' \
        'WASM_BUILD_STD=std,panic_abort' > "$wasm_env_file"
    fi
  fi
  # shellcheck disable=SC1090
  . "$wasm_env_file"
  say "wasm toolchain: $WASM_TOOLCHAIN${WASM_BUILD_STD:+ (std rebuilt: panic=immediate-abort)}"

  # wasm-bindgen-cli must match the wasm-bindgen in Cargo.lock exactly (pinned in Cargo.toml).
  local want
  want="$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' "$ROOT/Cargo.lock" 2>/dev/null || true)"
  if [ -n "$want" ]; then
    local have=""
    command -v wasm-bindgen >/dev/null && have="$(wasm-bindgen --version | awk '{print $2}')"
    if [ "$have" != "$want" ]; then
      say "cargo install wasm-bindgen-cli --version =$want (have: ${have:-none})"
      cargo install -q wasm-bindgen-cli --version "=$want" >&2
    fi
  fi
}

# Node tools (binaryen's wasm-opt, terser, playwright-core; Ajv and har-schema, which check the
# relay's HAR in tests/tests/api.rs) from the root package.json.
# The pages' own tools (Vite, TypeScript) are in www/package.json (scripts/build-www).
setup_node() {
  command -v node >/dev/null || apt_install nodejs npm
  if [ ! -x "$ROOT/node_modules/.bin/wasm-opt" ] || [ ! -x "$ROOT/node_modules/.bin/terser" ] \
     || [ ! -d "$ROOT/node_modules/playwright-core" ] || [ ! -d "$ROOT/node_modules/har-schema" ] \
     || [ "$ROOT/package-lock.json" -nt "$ROOT/node_modules/.package-lock.json" ]; then
    say "npm ci (binaryen, terser, playwright-core, ajv, har-schema)"
    (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
}

# Debian's Chromium and ChromeDriver for the browser tests (never a tool's own download).
setup_browser() {
  [ -x /usr/bin/chromium ] || apt_install chromium chromium-driver
  # zbarimg reads the QR code back from the PC page's screenshot.
  command -v zbarimg >/dev/null || apt_install zbar-tools
}

# PostgreSQL (shared history) and Redis (cluster mode): tests start their own instances.
setup_services() {
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_install postgresql
  command -v redis-server >/dev/null || apt_install redis-server
}

main() {
  case "${1:-all}" in
    rust) setup_rust ;;
    wasm) setup_wasm ;;
    node) setup_node ;;
    browser) setup_browser ;;
    services) setup_services ;;
    all) setup_rust; setup_wasm; setup_node; setup_browser; setup_services ;;
    *) die "usage: scripts/setup.sh [rust|wasm|node|browser|services|all]" ;;
  esac
}

# Run when executed; only define functions when sourced.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
