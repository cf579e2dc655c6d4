#!/usr/bin/env bash
# Installs Debian's protoc (packages `protobuf-compiler`, and `libprotobuf-dev` for the
# well-known types such as google/protobuf/descriptor.proto) on the host for building the `agones`
# cargo feature (the Agones SDK and its test server are generated from .proto files) and prints
# the path of the binary. Idempotent: an installed protoc is kept.
#
#   scripts/install-protoc.sh          # -> /usr/bin/protoc
set -euo pipefail
log() { printf '[install-protoc] %s\n' "$*" >&2; }
die() { printf '[install-protoc] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source-path=SCRIPTDIR source=lib/debian-host.sh
. "$(dirname "$0")/lib/debian-host.sh"

WKT=/usr/include/google/protobuf/descriptor.proto
if command -v protoc >/dev/null 2>&1 && [ -f "$WKT" ]; then command -v protoc; exit 0; fi
[ "$(id -u)" -eq 0 ] || die "protoc is not installed and installing it needs root (apt-get install protobuf-compiler)"
command -v apt-get >/dev/null || die "protoc is not installed and this host has no apt-get"
host_install protobuf-compiler libprotobuf-dev >&2
command -v protoc >/dev/null || die "apt-get installed protobuf-compiler but protoc is missing"
[ -f "$WKT" ] || die "apt-get installed libprotobuf-dev but $WKT is missing"
log "$(protoc --version)"
command -v protoc
