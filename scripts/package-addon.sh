#!/usr/bin/env bash
# Packages the addon as dist/sustenet-addon-<version>.zip: the addons/sustenet/ folder (plugin,
# icons, sustenet.gdextension, LICENSE, README.md, every library in addons/sustenet/bin/ that
# sustenet.gdextension lists, Linux ones without their DWARF debug info) and
# addons/sustenet/MANIFEST.txt, which says which platforms the zip holds, with each library's
# size and SHA-256 as packaged. The manifest is also written beside the zip, with the Asset
# Library metadata.
#
#   scripts/package-addon.sh                 # build what this machine can, then package
#   scripts/package-addon.sh --no-build      # package the libraries already in addons/sustenet/bin/
#   scripts/package-addon.sh --require-all   # fail unless every platform's library is there
#
# On a Debian x86_64 machine the build is Linux x86_64 (scripts/build-godot.sh) and, when
# scripts/install-win-cross.sh has been run, Windows x86_64 (scripts/build-windows.sh). Linux
# arm64 and macOS come from the release workflow (.github/workflows/release.yml), which runs
# this script with --no-build --require-all on all of them. See docs/release.md.
set -euo pipefail
cd "$(dirname "$0")/.."

build=1; require_all=0
for a in "$@"; do
    case "$a" in
        --no-build) build=0 ;;
        --require-all) require_all=1 ;;
        -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
        *) echo "package-addon.sh: unknown argument $a (try --help)" >&2; exit 2 ;;
    esac
done
say() { printf 'package-addon: %s\n' "$*"; }
die() { printf 'package-addon: error: %s\n' "$*" >&2; exit 1; }
command -v zip >/dev/null || die "zip not found (apt-get install zip)"

version=$(scripts/version.sh)
protocol=$(scripts/version.sh --protocol)
name="sustenet-addon-$version"
addon=addons/sustenet

if [ "$build" -eq 1 ]; then
    if [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ]; then
        say "building Linux x86_64 (debug + release)"
        scripts/build-godot.sh
        rc=0; scripts/build-windows.sh || rc=$?
        case $rc in
            0) ;;
            3) say "no Windows cross toolchain (scripts/install-win-cross.sh); the zip will lack Windows" ;;
            *) die "scripts/build-windows.sh failed (exit $rc)" ;;
        esac
    else
        die "this script builds on Linux x86_64 only; elsewhere put the libraries in $addon/bin/ and use --no-build"
    fi
fi

# strip_debug_info <file>: drop the DWARF debug sections of an ELF library built for this
# machine's architecture (hundreds of MB in the debug builds; exported symbols stay). Other
# files (PE, Mach-O, ELF of another architecture) are packaged as built: the Windows and macOS
# builds keep their debug info outside the library, and the release workflow strips the arm64
# libraries on their own runner.
strip_debug_info() {
    command -v strip >/dev/null && command -v objdump >/dev/null || return 0
    [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ] || return 0
    case "$(uname -m):$(objdump -f "$1" 2>/dev/null | sed -n 's/^architecture: \([^,]*\).*/\1/p')" in
        x86_64:i386:x86-64|aarch64:aarch64) ;;
        *) return 0 ;;
    esac
    strip --strip-debug -o "$1.stripped" "$1" && mv -f "$1.stripped" "$1"
}

# --- the libraries sustenet.gdextension lists ------------------------------------------------
cmp -s sustenet.gdextension "$addon/sustenet.gdextension" \
    || die "$addon/sustenet.gdextension differs from sustenet.gdextension (run scripts/build-godot.sh)"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/$addon/bin"
manifest="$stage/$addon/MANIFEST.txt"
{
    echo "Sustenet addon $version (protocol $protocol)"
    echo "packaged $(date -u +%Y-%m-%dT%H:%M:%SZ) from commit $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
    echo
    echo "platform (feature tags)  file  size  sha256"
} >"$manifest"
missing=(); present=0
while IFS='=' read -r tag path; do
    tag=$(echo "$tag" | tr -d ' '); path=$(echo "$path" | tr -d ' "')
    file="${path#res://}"
    if [ -f "$file" ]; then
        cp "$file" "$stage/$file"
        strip_debug_info "$stage/$file"
        sum=$( (sha256sum "$stage/$file" 2>/dev/null || shasum -a 256 "$stage/$file") | cut -d' ' -f1)
        echo "$tag  ${file#"$addon"/}  $(wc -c <"$stage/$file" | tr -d ' ')  $sum" >>"$manifest"
        say "  $tag: $file"
        present=$((present + 1))
    else
        echo "$tag  ${file#"$addon"/}  MISSING" >>"$manifest"
        missing+=("$tag")
        say "  $tag: missing ($file)"
    fi
done < <(awk '/^\[libraries\]/ {s=1; next} /^\[/ {s=0} s && /=/ && !/^;/' sustenet.gdextension)
if [ ${#missing[@]} -gt 0 ] && [ "$require_all" -eq 1 ]; then
    die "missing libraries for: ${missing[*]}"
fi
[ "$present" -gt 0 ] || die "no library at all in $addon/bin/ (build first, or drop --no-build)"

# --- the rest of the addon -------------------------------------------------------------------
for f in plugin.cfg plugin.gd plugin.gd.uid sustenet.gdextension sustenet.gdextension.uid LICENSE README.md; do
    [ -f "$addon/$f" ] || die "$addon/$f missing"
    cp "$addon/$f" "$stage/$addon/$f"
done
mkdir -p "$stage/$addon/icons"
cp "$addon"/icons/*.svg "$stage/$addon/icons/"
# The pure-GDScript web client and the helper that picks a client (docs/godot.md).
for f in sustenet_net.gd sustenet_net.gd.uid; do
    [ -f "$addon/$f" ] || die "$addon/$f missing"
    cp "$addon/$f" "$stage/$addon/$f"
done
mkdir -p "$stage/$addon/web"
cp "$addon"/web/*.gd "$addon"/web/*.gd.uid "$stage/$addon/web/"
grep -q "^version=\"$version\"" "$stage/$addon/plugin.cfg" \
    || die "$addon/plugin.cfg version is not $version (the workspace version)"

mkdir -p dist
rm -f "dist/$name.zip"
( cd "$stage" && zip -q -X -r "$OLDPWD/dist/$name.zip" addons )
cp "$manifest" "dist/$name.manifest.txt"
sed "s/@VERSION@/$version/g" asset-library/asset.json >"dist/$name.asset-library.json"
cp asset-library/icon.png "dist/sustenet-icon.png"
say "dist/$name.zip ($(wc -c <"dist/$name.zip" | tr -d ' ') bytes); platforms missing: ${missing[*]:-none}"
say "manifest: dist/$name.manifest.txt; Asset Library entry: dist/$name.asset-library.json"
