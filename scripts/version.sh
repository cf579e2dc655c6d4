#!/usr/bin/env bash
# Prints the one version of a Sustenet release, read from where it is defined:
#
#   scripts/version.sh              # the workspace version ([workspace.package] in Cargo.toml),
#                                   # which is also the addon's (plugin.cfg) and the zip's
#   scripts/version.sh --protocol   # the protocol version (PROTOCOL_VERSION in rust/proto/src/lib.rs)
#   scripts/version.sh --notes      # release notes: the protocol version, then the CHANGELOG.md
#                                   # section of the workspace version
#   scripts/version.sh --check      # exit 1 unless addons/sustenet/plugin.cfg has the workspace
#                                   # version and CHANGELOG.md has [Unreleased] and a dated
#                                   # section and a link for it (scripts/test.sh runs this)
#
# rust/cli/tests/version.rs checks that `sustenet --version` prints both versions.
set -euo pipefail
cd "$(dirname "$0")/.."

workspace_version() {
    awk '/^\[workspace\.package\]/ {s=1; next} /^\[/ {s=0} s && /^version *=/ {gsub(/[" ]/, "", $0); sub(/^version=/, ""); print; exit}' Cargo.toml
}
v=$(workspace_version)
[ -n "$v" ] || { echo "version.sh: no version in [workspace.package] of Cargo.toml" >&2; exit 1; }

case "${1:-}" in
    "") echo "$v" ;;
    --protocol)
        p=$(sed -n 's/^pub const PROTOCOL_VERSION: u16 = \([0-9]*\);.*/\1/p' rust/proto/src/lib.rs)
        [ -n "$p" ] || { echo "version.sh: PROTOCOL_VERSION not found in rust/proto/src/lib.rs" >&2; exit 1; }
        echo "$p" ;;
    --notes)
        echo "Sustenet $v speaks protocol version $("$0" --protocol)."
        echo
        awk -v v="$v" '$0 ~ "^## \\[" v "\\]" {s=1; next} s && /^## \[/ {exit} s' CHANGELOG.md | sed '/./,$!d'
        ;;
    --check)
        bad=0
        grep -qx "version=\"$v\"" addons/sustenet/plugin.cfg \
            || { echo "version.sh: addons/sustenet/plugin.cfg: version is not \"$v\"" >&2; bad=1; }
        grep -q '^## \[Unreleased\]' CHANGELOG.md \
            || { echo "version.sh: CHANGELOG.md has no ## [Unreleased] section" >&2; bad=1; }
        grep -qE "^## \[$v\] - [0-9]{4}-[0-9]{2}-[0-9]{2}\$" CHANGELOG.md \
            || { echo "version.sh: CHANGELOG.md has no '## [$v] - YYYY-MM-DD' section" >&2; bad=1; }
        grep -q "^\[$v\]: https://" CHANGELOG.md \
            || { echo "version.sh: CHANGELOG.md has no link line for [$v]" >&2; bad=1; }
        [ $bad -eq 0 ] && echo "version $v: Cargo.toml, plugin.cfg and CHANGELOG.md agree; protocol $("$0" --protocol)"
        exit $bad ;;
    -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0" ;;
    *) echo "version.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
esac
