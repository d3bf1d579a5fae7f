#!/usr/bin/env bash
# Builds Toxiproxy's server (github.com/Shopify/toxiproxy/v2, the fault-injection proxy of the fault
# matrix) from the Go module proxy and caches it outside the clone, like scripts/pulumi-cli.sh does
# for the Pulumi CLI. Prints the binary's path on the last line of stdout; a cached build is reused.
set -euo pipefail

VERSION=2.5.0
CACHE=${TOXIPROXY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/toxiproxy}/v$VERSION
BIN=$CACHE/bin/toxiproxy-server

log() { echo "toxiproxy: $*" >&2; }

if [ -x "$BIN" ] && "$BIN" -version 2>/dev/null | grep -q "$VERSION"; then
  log "cached: $BIN"
  echo "$BIN"; exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  log "Go is not installed: Toxiproxy is built from Go modules. Install Go, then run again."
  exit 1
fi
export GOTOOLCHAIN=local CGO_ENABLED=0
mkdir -p "$CACHE"
WORK=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)
log "building github.com/Shopify/toxiproxy/v2/cmd/server@v$VERSION"
GOBIN=$WORK go install -trimpath \
  -ldflags "-s -w -X github.com/Shopify/toxiproxy/v2.Version=$VERSION" \
  "github.com/Shopify/toxiproxy/v2/cmd/server@v$VERSION" >&2
mkdir -p "$CACHE/bin"
mv "$WORK/server" "$BIN"
log "built $("$BIN" -version 2>&1 | head -1) in $(( $(date +%s) - start ))s: $BIN"
echo "$BIN"
