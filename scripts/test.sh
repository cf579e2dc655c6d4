#!/usr/bin/env bash
# Runs every check and test of the project: formatting, lints, the Rust test
# suites (unit, property, loopback integration, real processes) and, when the
# Godot addon is present, the in-engine tests in a real headless Godot 4.
# Installs what it needs (idempotently) on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace"
cargo test --workspace

if [[ -f fuzz/Cargo.toml ]]; then
  step "fuzz targets on random inputs (stable smoke run)"
  cargo test --manifest-path fuzz/Cargo.toml
fi

if [[ -x scripts/godot-tests.sh ]]; then
  step "in-engine tests (headless Godot 4)"
  scripts/godot-tests.sh
fi

step "all checks passed"
