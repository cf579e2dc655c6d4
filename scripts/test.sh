#!/usr/bin/env bash
# Runs every check and test of the project: formatting, lints, the Rust test
# suites (unit, property, loopback integration, real processes) and, when the
# Godot addon is present, the in-engine tests in a real headless Godot 4.
# Installs what it needs (idempotently) on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# A CI run builds once from clean: incremental caches there are gigabytes of disk for nothing.
if [[ -n "${CI:-}" ]]; then export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"; fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "size rules (scripts/check-sizes.sh: files and functions, docs/architecture.md)"
scripts/check-sizes.sh

step "cargo test --workspace"
cargo test --workspace

step "Agones integration (cargo feature agones; the SDK against an in-test gRPC SDK server)"
scripts/install-protoc.sh >/dev/null
cargo test -p sustenet-server --features agones --test agones
step "Instances on Agones (a real master and sustenet cluster --agones-instance processes against in-test Kubernetes API and SDK servers)"
cargo test -p sustenet-cli --features agones --test agones_instances

if [[ -f fuzz/Cargo.toml ]]; then
  step "fuzz targets on random inputs (stable smoke run)"
  cargo test --manifest-path fuzz/Cargo.toml
fi

if [[ -x scripts/godot-tests.sh ]]; then
  step "in-engine tests (headless Godot 4)"
  scripts/godot-tests.sh
fi

if [[ -x scripts/godot-tests.sh ]]; then
  step "side by side with Godot's ENet, smoke run (scripts/bench-compare.sh --smoke: N = 50, 4 s each side)"
  scripts/bench-compare.sh --smoke
fi

if [[ -x scripts/godot-tests.sh ]]; then
  step "smoke test of the addon as installed in a new project (the release workflow's, here on Linux)"
  scripts/smoke-test.sh scripts/godot.sh "${CARGO_TARGET_DIR:-target}/debug/sustenet"
fi

step "one version: Cargo.toml, plugin.cfg, CHANGELOG.md"
scripts/version.sh --check

step "Linux libraries: entry symbol, dependencies, glibc floor"
scripts/check-linux-lib.sh

# The Windows x86_64 build, cross-compiled with MinGW-w64 in a Debian testing root and loaded
# under Wine (docs/release.md). The debug build: it is what the check needs and builds in
# a fraction of the release build's time; scripts/package-addon.sh builds both.
step "Windows x86_64 cross build, checked under Wine"
if [[ "$(id -u)" -eq 0 && "$(uname -m)" == x86_64 ]] && command -v apt-get >/dev/null; then
  scripts/install-win-cross.sh
  scripts/build-windows.sh --debug-only
  scripts/check-windows-dll.sh addons/sustenet/bin/sustenet.debug.dll
else
  echo "SKIPPED: the Windows cross toolchain needs root on a Debian-based x86_64 machine" \
       "(scripts/install-win-cross.sh); the release workflow builds Windows natively"
fi

step "deploy/: Dockerfiles (hadolint), compose, Kubernetes and Agones manifests (vendored schemas), Grafana"
scripts/check-deploy.sh

step "workflow files (actionlint)"
actionlint=$(scripts/install-actionlint.sh)
"$actionlint" -no-color -shellcheck="$(dirname "$actionlint")/shellcheck"
echo "actionlint: $(ls .github/workflows/*.yml | wc -l) workflow file(s) clean"

step "disk used by the build (target/, fuzz/target/)"
du -sh "${CARGO_TARGET_DIR:-target}" fuzz/target 2>/dev/null || true

step "all checks passed"
