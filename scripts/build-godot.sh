#!/usr/bin/env bash
# Builds the Sustenet GDExtension (crate sustenet-godot, cdylib libsustenet.so) and installs
# it as the drop-in addon:
#
#   target/debug/libsustenet.so   -> addons/sustenet/bin/libsustenet.debug.so  (editor, debug runs)
#   target/release/libsustenet.so -> addons/sustenet/bin/libsustenet.so        (exports)
#   sustenet.gdextension          -> addons/sustenet/sustenet.gdextension
#   addons/sustenet/              -> demo_project/addons/sustenet/            (gitignored copy)
#
#   scripts/build-godot.sh              # debug + release
#   scripts/build-godot.sh --debug-only # debug only (faster; headless exports need the release build)
#
# Idempotent: cargo rebuilds only what changed and files are copied only when they differ.
# Environment: CARGO_BUILD_JOBS (default: cargo's), CARGO_TARGET_DIR (default: target).
set -euo pipefail
cd "$(dirname "$0")/.."

debug_only=0
for a in "$@"; do
    case "$a" in
        --debug-only) debug_only=1 ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-godot.sh: unknown argument: $a (try --help)" >&2; exit 2 ;;
    esac
done

say() { printf 'build-godot: %s\n' "$*"; }
target="${CARGO_TARGET_DIR:-target}"
addon=addons/sustenet
demo_addon=demo_project/addons/sustenet

[ -f rust/godot/Cargo.toml ] || { echo "build-godot.sh: rust/godot/Cargo.toml not found (the GDExtension crate)" >&2; exit 1; }

# install_if_changed <src> <dst>: copy only when the content differs, so the files keep their
# timestamps (and Godot does not see a change) when nothing was rebuilt.
install_if_changed() {
    if [ -e "$2" ] && cmp -s "$1" "$2"; then
        say "  $2 up to date"
    else
        cp -f "$1" "$2.tmp.$$" && mv -f "$2.tmp.$$" "$2"
        say "  installed $2"
    fi
}

say "cargo build -p sustenet-godot (debug)"
cargo build -p sustenet-godot
if [ "$debug_only" -eq 0 ]; then
    say "cargo build --release -p sustenet-godot"
    cargo build --release -p sustenet-godot
fi

mkdir -p "$addon/bin"
say "installing into $addon/"
install_if_changed "$target/debug/libsustenet.so" "$addon/bin/libsustenet.debug.so"
if [ "$debug_only" -eq 0 ]; then
    install_if_changed "$target/release/libsustenet.so" "$addon/bin/libsustenet.so"
elif [ ! -e "$addon/bin/libsustenet.so" ]; then
    say "  note: no release build in $addon/bin yet (--debug-only); exports need it: run without --debug-only"
fi
install_if_changed sustenet.gdextension "$addon/sustenet.gdextension"

say "syncing $addon/ -> $demo_addon/"
mkdir -p "$demo_addon"
# Mirror: files gone from the addon disappear from the demo copy too. Godot's own
# *.import / *.uid files next to the demo copy's sources are kept.
( cd "$addon" && find . -type f ) | while read -r f; do
    mkdir -p "$demo_addon/$(dirname "$f")"
    if ! cmp -s "$addon/$f" "$demo_addon/$f"; then
        cp -f "$addon/$f" "$demo_addon/$f.tmp.$$" && mv -f "$demo_addon/$f.tmp.$$" "$demo_addon/$f"
    fi
done
( cd "$demo_addon" && find . -type f ! -name '*.import' ! -name '*.uid' ) | while read -r f; do
    [ -e "$addon/$f" ] || { rm -f "$demo_addon/$f"; say "  removed stale $demo_addon/$f"; }
done

say "done: $(ls "$addon/bin" | tr '\n' ' ')"
