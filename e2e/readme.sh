#!/usr/bin/env bash
# readme.sh: the README's walkthroughs, extracted and run verbatim. Every
# ```sh block that follows a "<!-- e2e: NAME -->" line belongs to the
# walkthrough NAME; each walkthrough runs in its own bash (set -euo
# pipefail), with the built keyhold first on PATH, in its own process group
# (stopped afterwards whatever happened). The walkthroughs use the fixed
# port 4599, as a reader would, so they run one after the other, and the
# script stops at once if the port is taken. Usage: e2e/readme.sh BIN [NAME...]
set -euo pipefail
BIN=$(realpath "${1:?usage: readme.sh path/to/keyhold [walkthrough...]}")
shift
cd "$(dirname "$0")/.."
source e2e/lib.sh
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/bin"
ln -s "$BIN" "$WORK/bin/keyhold"

python3 - README.md "$WORK" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
out = {}
order = []
for m in re.finditer(r'<!-- e2e: ([a-z0-9-]+) -->\s*\n```sh\n(.*?)```', text, re.S):
    name, body = m.group(1), m.group(2)
    if name not in out:
        order.append(name)
        out[name] = ""
    out[name] += body
for name in order:
    open(f"{sys.argv[2]}/{name}.sh", "w").write(out[name])
open(f"{sys.argv[2]}/order", "w").write("\n".join(order) + "\n")
PY
mapfile -t all < "$WORK/order"
[ "${#all[@]}" -ge 4 ] || fail "found ${#all[@]} walkthroughs in README.md"
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${all[@]}")
# CloudHSM needs SoftHSM2.
have_softhsm() { [ -e /usr/lib/softhsm/libsofthsm2.so ]; }

for name in "${names[@]}"; do
  [ -f "$WORK/$name.sh" ] || fail "no walkthrough $name in README.md"
  if { [ "$name" = cloudhsm ] || [ "$name" = xks ]; } && ! have_softhsm; then
    echo "== $name: skipped (SoftHSM2 is not installed: apt-get install softhsm2)"
    continue
  fi
  if curl -s -o /dev/null http://127.0.0.1:4599/ 2>/dev/null; then
    fail "port 4599 is in use: the README's walkthroughs need it"
  fi
  echo "== README walkthrough: $name (at ${SECONDS}s)"
  rc=0
  # HOME in the scratch area: the aws CLI must not read the user's config.
  # setsid: the walkthrough and the servers it starts are one process
  # group, stopped together afterwards even if it failed half-way.
  (cd "$WORK" && PATH="$WORK/bin:$PATH" HOME="$WORK" AWS_CONFIG_FILE=/dev/null \
     exec setsid bash -euo pipefail "$WORK/$name.sh" >"$WORK/$name.log" 2>&1) &
  pid=$!
  wait $pid || rc=$?
  kill -- "-$pid" 2>/dev/null || true
  if [ $rc != 0 ]; then
    echo "--- output of $name:"; tail -40 "$WORK/$name.log"
    fail "README walkthrough $name exited $rc"
  fi
  tail -3 "$WORK/$name.log" | sed 's/^/    /'
done
echo "e2e readme: ${#names[@]} walkthroughs passed"
