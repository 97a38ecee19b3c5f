#!/usr/bin/env bash
# release.sh: build release binaries of keyhold into dist/, with the version
# and commit stamped in (`keyhold version` prints them) and a SHA-256 sum.
#
#   scripts/release.sh [VERSION]     (default: git describe, else "dev")
#
# keyhold needs cgo (PKCS#11 modules and SQLite are C libraries), so it
# builds for the host platform with its C compiler; cross-building needs a
# cross C toolchain (set CC and GOARCH yourself).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${1:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
COMMIT=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$(go env CGO_ENABLED)" != 1 ]; then
  echo "release.sh: keyhold needs cgo: set CGO_ENABLED=1 and install a C compiler (gcc)" >&2
  exit 1
fi
OS=$(go env GOOS) ARCH=$(go env GOARCH)
OUT=dist/keyhold-$VERSION-$OS-$ARCH
mkdir -p dist
go build -trimpath \
  -ldflags "-s -w -X github.com/keyhold/keyhold/internal/cli.version=$VERSION -X github.com/keyhold/keyhold/internal/cli.commit=$COMMIT" \
  -o "$OUT" ./cmd/keyhold
(cd dist && sha256sum "$(basename "$OUT")" > "$(basename "$OUT").sha256")
"$OUT" version
echo "built $OUT"
