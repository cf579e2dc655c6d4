#!/usr/bin/env bash
# Cross-compiles the Sustenet GDExtension for Windows x86_64 (x86_64-pc-windows-gnu, MinGW-w64)
# in the root made by scripts/install-win-cross.sh, and installs it into the addon:
#
#   target/win-cross/x86_64-pc-windows-gnu/debug/sustenet.dll   -> addons/sustenet/bin/sustenet.debug.dll
#   target/win-cross/x86_64-pc-windows-gnu/release/sustenet.dll -> addons/sustenet/bin/sustenet.dll
#
#   scripts/build-windows.sh                  # debug + release
#   scripts/build-windows.sh --release-only   # release only (what scripts/test.sh checks)
#   scripts/build-windows.sh --debug-only
#
# It also builds target/win-cross/load-dll.exe from scripts/windows/load-dll.c, the program
# scripts/check-windows-dll.sh runs under Wine, and target/win-cross/bcryptprimitives.dll from
# scripts/windows/bcryptprimitives.c, a stand-in for a Windows DLL that Wine 8 lacks.
#
# Debian packages no current Windows standard library, so the standard library is built from
# the root's rust-src with `cargo -Zbuild-std` (RUSTC_BOOTSTRAP=1 lets the root's stable cargo
# take that flag). libgcc is linked statically (no libgcc_s_seh-1.dll beside the DLL), and the
# root's MinGW gcc uses the win32 thread model (no libwinpthread-1.dll); scripts/check-windows-dll.sh
# checks both. No debug info is generated (DWARF in a DLL serves no Windows debugger; without it
# the build is faster and the DLL a fraction of the size). The repository and the host's CARGO_HOME are bind-mounted into the root at their
# own paths inside a private mount namespace, so nothing stays mounted afterwards. Builds are
# incremental in target/win-cross/ (kept apart from the host toolchain's target/ since the root's
# rustc is a different version).
#
# Exit status 3 means the cross toolchain is not installed (run scripts/install-win-cross.sh).
# Environment: SUSTENET_WIN_ROOT (default /opt/sustenet-win-root), CARGO_HOME, CARGO_BUILD_JOBS.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

R="${SUSTENET_WIN_ROOT:-/opt/sustenet-win-root}"
TRIPLE=x86_64-pc-windows-gnu
OUT="$REPO/target/win-cross"
addon=addons/sustenet
say() { printf 'build-windows: %s\n' "$*"; }
die() { printf 'build-windows: error: %s\n' "$1" >&2; exit "${2:-1}"; }

profiles=(debug release)
for a in "$@"; do
    case "$a" in
        --release-only) profiles=(release) ;;
        --debug-only) profiles=(debug) ;;
        -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
        *) die "unknown argument: $a (try --help)" 2 ;;
    esac
done

[ -f "$R/.sustenet-win-cross-installed" ] && [ -x "$R/usr/bin/cargo" ] && [ -x "$R/usr/bin/x86_64-w64-mingw32-gcc-win32" ] \
    || die "no Windows cross toolchain in $R; run scripts/install-win-cross.sh" 3
[ "$(id -u)" -eq 0 ] || die "must run as root (the build runs in a chroot)"

# Re-run in a private mount namespace: the bind mounts vanish with the process.
if [ -z "${SUSTENET_IN_MOUNT_NS:-}" ]; then
    export SUSTENET_IN_MOUNT_NS=1
    exec unshare --mount --propagation private -- "$0" "$@"
fi

cargo_home="${CARGO_HOME:-$HOME/.cargo}"
mkdir -p "$cargo_home/registry" "$OUT"
for d in "$REPO" "$cargo_home/registry"; do
    mkdir -p "$R$d"
    mount --bind "$d" "$R$d"
done
mount -t proc proc "$R/proc"
# The host's trusted certificates (cargo fetches the crates this target needs and the host's
# cache lacks, such as windows-link, through whatever TLS setup the host has).
ca="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
if [ -f "$ca" ]; then
    mkdir -p "$R/etc/ssl/certs" && touch "$R/etc/ssl/certs/ca-certificates.crt"
    mount --bind "$ca" "$R/etc/ssl/certs/ca-certificates.crt"
fi

in_root() {
    chroot "$R" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
        CARGO_HOME="$cargo_home" CARGO_TARGET_DIR="$OUT" CARGO_TERM_COLOR=never \
        ${CARGO_BUILD_JOBS:+CARGO_BUILD_JOBS="$CARGO_BUILD_JOBS"} RUSTC_BOOTSTRAP=1 CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc-win32 \
        RUSTFLAGS="-C link-arg=-static-libgcc" CARGO_PROFILE_DEV_DEBUG=0 CARGO_PROFILE_RELEASE_DEBUG=0 \
        sh -c 'cd "$0" && exec "$@"' "$REPO" "$@"
}
say "$(in_root rustc --version), target $TRIPLE"

mkdir -p "$addon/bin"
for p in "${profiles[@]}"; do
    flag=(); [ "$p" = release ] && flag=(--release)
    say "cargo build -Zbuild-std --target $TRIPLE -p sustenet-godot ($p)"
    in_root cargo build --locked -Zbuild-std=std,panic_abort --target "$TRIPLE" -p sustenet-godot "${flag[@]}"
    dll="$OUT/$TRIPLE/$p/sustenet.dll"
    [ -f "$dll" ] || die "cargo succeeded but $dll is missing"
    if [ "$p" = debug ]; then dst="$addon/bin/sustenet.debug.dll"; else dst="$addon/bin/sustenet.dll"; fi
    if ! cmp -s "$dll" "$dst"; then cp -f "$dll" "$dst.tmp.$$" && mv -f "$dst.tmp.$$" "$dst"; fi
    say "  $dst ($(stat -c %s "$dst") bytes)"
done

# The loader test program for scripts/check-windows-dll.sh (static: runs under a bare Wine),
# and the bcryptprimitives.dll stand-in it installs into Wine releases that lack that DLL.
exe="$OUT/load-dll.exe"
if [ ! -e "$exe" ] || [ scripts/windows/load-dll.c -nt "$exe" ]; then
    say "x86_64-w64-mingw32-gcc scripts/windows/load-dll.c -> $exe"
    in_root x86_64-w64-mingw32-gcc-win32 -O2 -Wall -Werror -municode -static \
        -o "$exe" scripts/windows/load-dll.c
fi
shim="$OUT/bcryptprimitives.dll"
if [ ! -e "$shim" ] || [ scripts/windows/bcryptprimitives.c -nt "$shim" ]; then
    say "x86_64-w64-mingw32-gcc scripts/windows/bcryptprimitives.c -> $shim"
    in_root x86_64-w64-mingw32-gcc-win32 -O2 -Wall -Werror -shared -static-libgcc \
        -o "$shim" scripts/windows/bcryptprimitives.c -lbcrypt
fi
