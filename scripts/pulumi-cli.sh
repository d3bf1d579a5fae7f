#!/usr/bin/env bash
# Builds the real Pulumi CLI (pulumi + pulumi-language-nodejs) from Go modules and caches it
# outside the clone. No registry ships the binary, so this is how tests and the demo get it.
# Prints the bin directory on the last line of stdout. A cached build is reused in seconds.
set -euo pipefail

VERSION=3.248.0
LANGHOST=3.68.0   # see below: the newest Node.js language host the module proxy serves
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
# The checksum database has no record of some Pulumi releases (its lookup answers 404), so
# Pulumi's own modules are taken from the module proxy without it; all others are verified.
export GONOSUMDB=${GONOSUMDB:-github.com/pulumi}
mkdir -p "$CACHE"
WORK=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
LDVERSION=github.com/pulumi/pulumi/sdk/v3/go/common/version.Version

# build NAME MAIN_PACKAGE VERSION_STRING REQUIRE... : one wrapper module per binary, because a
# module's replace directives are ignored when it is a dependency.
build() {
  local name=$1 pkg=$2 version=$3; shift 3
  local dir=$WORK/$name
  mkdir -p "$dir" && cd "$dir"
  printf 'module build-%s\n\ngo 1.25\n\nreplace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e\n' "$name" > go.mod
  printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" > tools.go
  log "$name: resolving modules ($*)"
  go get "$@" >&2
  log "$name: compiling (cold: several minutes on 2 cores)"
  go build -trimpath -tags osusergo,grpcnotrace -ldflags "-s -w -X $LDVERSION=$version" -o "$WORK/out/$name" "$pkg" >&2
}

start=$(date +%s)
mkdir -p "$WORK/out"
# The Node.js language host became its own, never-tagged module in sdk v3.69.0, and the module proxy
# reachable here serves none of its pseudo-versions (HTTP 403 "This module version is not
# available", also for the pkg/v3.248.0 commit). v3.68.0 is the last release that ships it inside
# sdk/v3; the engine talks to it over the stable LanguageRuntime gRPC API, and it starts the
# program through the pinned npm SDK (@pulumi/pulumi 3.248.0), so the program runs as with a
# matching host.
build pulumi-language-nodejs github.com/pulumi/pulumi/sdk/v3/nodejs/cmd/pulumi-language-nodejs "v$LANGHOST" \
  "github.com/pulumi/pulumi/sdk/v3@v$LANGHOST"
build pulumi github.com/pulumi/pulumi/pkg/v3/cmd/pulumi "v$VERSION" \
  "github.com/pulumi/pulumi/pkg/v3@v$VERSION" "github.com/pulumi/pulumi/sdk/v3@v$VERSION"
mkdir -p "$BIN"
mv "$WORK/out/pulumi" "$WORK/out/pulumi-language-nodejs" "$BIN/"
install_launcher
log "built $("$BIN/pulumi" version) in $(( $(date +%s) - start ))s: $BIN"
echo "$BIN"
