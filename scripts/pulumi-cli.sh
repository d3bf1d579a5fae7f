#!/usr/bin/env bash
# Builds the real Pulumi CLI (pulumi + pulumi-language-nodejs) from Go modules and caches it
# outside the clone. No registry ships the binary, so this is how tests and the demo get it.
# Prints the bin directory on the last line of stdout. A cached build is reused in seconds.
set -euo pipefail

VERSION=3.248.0
COMMIT=dc7edd58bc13179f81b80983aab4eb7f74a01b41   # tag pkg/v3.248.0
CACHE=${PULUMI_CLI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pulumi-cli}/v$VERSION
BIN=$CACHE/bin
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LAUNCHER=$ROOT/node_modules/@pulumi/pulumi/pulumi-resource-pulumi-nodejs

log() { echo "pulumi-cli: $*" >&2; }

install_launcher() {
  # The dynamic-provider launcher ships with the npm SDK; it must sit beside the CLI.
  if [ ! -f "$LAUNCHER" ]; then
    log "missing $LAUNCHER: run 'npm ci' first"; exit 1
  fi
  install -m 0755 "$LAUNCHER" "$BIN/pulumi-resource-pulumi-nodejs"
}

if [ -x "$BIN/pulumi" ] && [ -x "$BIN/pulumi-language-nodejs" ] \
   && [ "$("$BIN/pulumi" version 2>/dev/null)" = "v$VERSION" ]; then
  install_launcher
  log "cached: $BIN ($("$BIN/pulumi" version))"
  echo "$BIN"; exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  log "Go is not installed: the Pulumi CLI is built from Go modules (Go >= 1.25 needed). Install Go, then run again."
  exit 1
fi

export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
# The checksum database may be out of reach where only the module proxy is; go.sum from the
# proxy's own files is then the record.
export GONOSUMDB=${GONOSUMDB:-github.com/pulumi}
mkdir -p "$CACHE"
WORK=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

cat > go.mod <<GOMOD
module pulumi-cli-build

go 1.25

replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e
GOMOD
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
	_ "github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3"
)
GO

start=$(date +%s)
log "resolving modules for v$VERSION (cold: ~300 modules, several minutes)"
go get "github.com/pulumi/pulumi/pkg/v3@v$VERSION" "github.com/pulumi/pulumi/sdk/v3@v$VERSION" >&2
go get "github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3@$COMMIT" >&2
# The language host's stale requirements are lifted to the pinned version.
go get "github.com/pulumi/pulumi/pkg/v3@v$VERSION" "github.com/pulumi/pulumi/sdk/v3@v$VERSION" >&2
log "compiling (cold: 10-20 minutes on 2 cores)"
mkdir -p "$WORK/out"
go build -trimpath -tags osusergo,grpcnotrace \
  -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$VERSION" \
  -o "$WORK/out/" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi \
  github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3 >&2
mkdir -p "$BIN"
mv "$WORK/out/pulumi" "$WORK/out/pulumi-language-nodejs" "$BIN/"
install_launcher
log "built $("$BIN/pulumi" version) in $(( $(date +%s) - start ))s: $BIN"
echo "$BIN"
