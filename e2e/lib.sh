# Shared helpers for the end-to-end scripts. Source it; it expects $BIN.
set -euo pipefail

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

fail() { echo "FAIL: $*" >&2; exit 1; }

# start_keyhold DATA_DIR PORT: starts `keyhold serve` in the background and
# waits for /healthz (up to a minute: the suite runs the scripts alongside
# the Go tests on 2 cores; a server that exits fails at once); sets
# KEYHOLD_PID.
start_keyhold() {
  local dir=$1 port=$2
  "$BIN" serve --data-dir "$dir" --addr "127.0.0.1:$port" >>"$dir.log" 2>&1 &
  KEYHOLD_PID=$!
  for _ in $(seq 1 600); do
    if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then return 0; fi
    kill -0 "$KEYHOLD_PID" 2>/dev/null || { cat "$dir.log" >&2; fail "keyhold exited during start"; }
    sleep 0.1
  done
  fail "keyhold did not become healthy on port $port"
}

# expect_error CODE CMD...: runs CMD, which must fail with CODE in its output.
expect_error() {
  local code=$1; shift
  local out
  if out=$("$@" 2>&1); then fail "expected $code, command succeeded: $*"; fi
  grep -q "$code" <<<"$out" || fail "expected $code, got: $out"
}
