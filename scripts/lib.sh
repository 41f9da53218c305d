# Shared by the scripts in this folder: paths, tool locations, progress lines.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$CARGO_BIN:$ROOT/node_modules/.bin:$PATH"
export WRANGLER_SEND_METRICS=false
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-auto}"

# Where fetched fixtures (real photographs from Debian packages) are cached, outside the repo.
FIXTURE_CACHE="${COURSE_EDGE_FIXTURES:-$HOME/.cache/course-edge/fixtures}"
export FIXTURE_CACHE

# C code (libwebp) for wasm32: wasi-libc's headers, WASM SIMD, and libwebp's SSE2 code paths
# compiled onto WASM SIMD through emscripten's SSE2→wasm_simd128 headers (fetched by
# scripts/setup from Debian's emscripten package; nothing else of emscripten is used).
# EMSCRIPTEN makes libwebp report SSE2 from its compile flags instead of a CPUID probe.
# Measured in workerd: 800 px WebP encode 83 → 38 ms, output bytes identical.
WASM_SSE2_INCLUDE="${COURSE_EDGE_CACHE:-$HOME/.cache/course-edge}/wasm-sse2/include"
export WASM_SSE2_INCLUDE
export CFLAGS_wasm32_unknown_unknown="-isystem /usr/include/wasm32-wasi -D__wasi__ -O3 -msimd128 -isystem $WASM_SSE2_INCLUDE -D__SSE__ -D__SSE2__ -DEMSCRIPTEN"

# The three binaries worker-build would otherwise try to download from GitHub.
export WASM_BINDGEN_BIN="$CARGO_BIN/wasm-bindgen"
export ESBUILD_BIN="$ROOT/node_modules/.bin/esbuild"
export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"

# The deployable artifact worker-build writes (wrangler.toml's `main` points here).
WORKER_WASM="$ROOT/worker/build/index_bg.wasm"

_step_started=0
step() {
  _step_started=$SECONDS
  printf '\n==> %s\n' "$*"
}
step_done() {
  printf '    done in %ds\n' "$((SECONDS - _step_started))"
}
info() { printf '    %s\n' "$*"; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# The wasm-bindgen version Cargo.lock pins; the CLI must match it exactly.
locked_wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}

# Runs a command in its own process group and forwards INT/TERM to the whole group, so
# Ctrl-C or a CI kill stops wrangler, workerd and origins instead of orphaning them.
run_group() {
  setsid "$@" &
  local pid=$!
  trap 'kill -TERM -- -'"$pid"' 2>/dev/null; wait '"$pid"'; exit 130' INT TERM
  local rc=0
  wait "$pid" || rc=$?
  trap - INT TERM
  return "$rc"
}

# A loopback port free now, from below the kernel's ephemeral range: workerd binds ports of
# its own with bind(:0) while it starts, and one drawn from that range could be taken
# between our check and wrangler's bind (tests/src/lib.rs `free_port` does the same).
free_port() {
  python3 - <<'PY'
import os, random, socket
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except Exception:
    low = 32768
high = max(low, 2048); low = max(1024, high - 12000)
for port in random.sample(range(low, high), high - low):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port)); print(port); break
    except OSError:
        pass
    finally:
        s.close()
PY
}
