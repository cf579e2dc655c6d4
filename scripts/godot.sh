#!/usr/bin/env bash
# Run the Godot 4 editor binary installed by scripts/install-godot.sh, from the host,
# through the root's own dynamic loader and libraries (the host's Debian 12 libraries are
# too old for it). All arguments go to Godot unchanged:
#
#   scripts/godot.sh --headless --version
#   scripts/godot.sh --headless --path demo_project res://tests/test.tscn
#   scripts/godot.sh --headless --path demo_project --export-release "Linux Cluster (headless)" out/cluster
#
# With DISPLAY set (e.g. `Xvfb :99 -screen 0 1280x720x24 &` then DISPLAY=:99), Mesa's
# software OpenGL from the root is used; pass `--rendering-driver opengl3`.
#
# Environment: SUSTENET_GODOT_ROOT (default /opt/sustenet-godot-root),
#              SUSTENET_GODOT_BIN   (binary inside the root, default /usr/bin/godot).
# Note: the loader's --library-path does not reach child processes Godot starts itself
# (OS.execute, OS.create_instance); run exported games with scripts/godot-run-export.sh.
set -euo pipefail

R="${SUSTENET_GODOT_ROOT:-/opt/sustenet-godot-root}"
BIN="${SUSTENET_GODOT_BIN:-/usr/bin/godot}"
LOADER="$R/usr/lib64/ld-linux-x86-64.so.2"

if [ ! -x "$R$BIN" ] || [ ! -e "$LOADER" ]; then
    echo "godot.sh: Godot is not installed in $R ($R$BIN or $LOADER missing); run scripts/install-godot.sh first" >&2
    exit 127
fi

LIBS="$R/usr/lib/x86_64-linux-gnu:$R/lib/x86_64-linux-gnu:$R/usr/lib/x86_64-linux-gnu/pulseaudio"

if [ -n "${DISPLAY:-}" ]; then
    # Software OpenGL (llvmpipe) from the root, for Xvfb.
    export LIBGL_DRIVERS_PATH="$R/usr/lib/x86_64-linux-gnu/dri"
    export __EGL_VENDOR_LIBRARY_DIRS="$R/usr/share/glvnd/egl_vendor.d"
    export LIBGL_ALWAYS_SOFTWARE="${LIBGL_ALWAYS_SOFTWARE:-1}"
fi

exec "$LOADER" --library-path "$LIBS" "$R$BIN" "$@"
