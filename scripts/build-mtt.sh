#!/usr/bin/env bash
# Builds mos-tls-tunnel's mtt-client and mtt-mu-server (the peers of
# `npm run bench -- gateway`'s mtt rows) from a checkout of its source:
#
#   scripts/build-mtt.sh /path/to/mos-tls-tunnel [OUT_DIR]    (default OUT_DIR: ./.mtt-bin)
#   MTT_BIN_DIR=OUT_DIR npm run bench -- gateway
#
# The source is not fetched here (only the npm and Debian registries are
# reachable from CI); clone github.com/IrineSistiana/mos-tls-tunnel yourself.
# It vendors its Go dependencies, so Debian's golang-go (installed if
# missing) builds it in GOPATH mode with nothing else.
set -euo pipefail
src=${1:?usage: build-mtt.sh MOS_TLS_TUNNEL_DIR [OUT_DIR]}
out=$(realpath -m "${2:-.mtt-bin}")
[ -f "$src/cmd/mtt-client/client.go" ] || { echo "build-mtt: $src is not a mos-tls-tunnel checkout (no cmd/mtt-client/client.go)" >&2; exit 1; }
if ! command -v go >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "build-mtt: needs Go (apt-get install golang-go)" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q golang-go >/dev/null
fi
gopath=$(mktemp -d)
trap 'rm -rf "$gopath"' EXIT
mkdir -p "$gopath/src/github.com/IrineSistiana" "$out"
cp -r "$src" "$gopath/src/github.com/IrineSistiana/mos-tls-tunnel"
cd "$gopath/src/github.com/IrineSistiana/mos-tls-tunnel"
export GOPATH="$gopath" GO111MODULE=off GOFLAGS= GOCACHE="$gopath/.cache"
go build -o "$out/mtt-client" ./cmd/mtt-client
go build -o "$out/mtt-mu-server" ./cmd/mtt-mu-server
echo "built $out/mtt-client and $out/mtt-mu-server"
