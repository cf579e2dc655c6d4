#!/usr/bin/env bash
# Install the toolchain that cross-compiles the Sustenet GDExtension for Windows x86_64
# (x86_64-pc-windows-gnu) on a Debian x86_64 host, without touching the host's Rust:
#
#   * a Debian testing root file system of its own (debootstrap) holding rustc, cargo and
#     rust-src (the standard library's sources: Debian packages no current Windows standard
#     library, so scripts/build-windows.sh builds it with cargo -Zbuild-std) and the MinGW-w64
#     cross compiler (gcc-mingw-w64-x86-64) that links the DLL;
#   * Wine on the host (Debian's wine64), which scripts/check-windows-dll.sh uses to load the
#     DLL with LoadLibrary + GetProcAddress.
#
#   scripts/install-win-cross.sh        # idempotent; does nothing when already installed
#
# Environment:
#   SUSTENET_WIN_ROOT      where the root goes        (default /opt/sustenet-win-root)
#   SUSTENET_WIN_SUITE     Debian suite to bootstrap  (default testing)
#   SUSTENET_DEBIAN_MIRROR Debian mirror URL          (default: the host's own)
#   SUSTENET_WIN_REINSTALL=1  throw away an existing root and start again
#
# Needs root (debootstrap, chroot). Takes a few minutes and about 2 GB.
set -euo pipefail

ROOT="${SUSTENET_WIN_ROOT:-/opt/sustenet-win-root}"
SUITE="${SUSTENET_WIN_SUITE:-testing}"
MARKER="$ROOT/.sustenet-win-cross-installed"
STAGE1="$ROOT/.sustenet-debootstrap-done"
PACKAGES=(rustc cargo rust-src gcc-mingw-w64-x86-64 ca-certificates)

log() { printf '[install-win-cross] %s\n' "$*" >&2; }
die() { printf '[install-win-cross] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source-path=SCRIPTDIR source=lib/debian-host.sh
. "$(dirname "$0")/lib/debian-host.sh"

root_ready() {
    [ -f "$MARKER" ] && [ -x "$ROOT/usr/bin/cargo" ] && [ -x "$ROOT/usr/bin/x86_64-w64-mingw32-gcc-win32" ] \
        && [ -d "$ROOT/usr/lib/rustlib/src/rust/library/std" ]
}
wine_ready() { command -v wine64 >/dev/null || [ -x /usr/lib/wine/wine64 ]; }

if [ "${SUSTENET_WIN_REINSTALL:-0}" != 1 ] && root_ready && wine_ready; then
    log "already installed in $ROOT ($(cat "$MARKER")); nothing to do"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "must run as root (apt-get, debootstrap and chroot need it); try: sudo $0"
[ "$(uname -m)" = x86_64 ] || die "only x86_64 hosts are supported (found $(uname -m))"
command -v apt-get >/dev/null || die "apt-get not found: this script needs a Debian-based host"

# --- host packages: debootstrap and Wine ----------------------------------------------------
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || host_install debootstrap
wine_ready || host_install wine64
export PATH="$PATH:/usr/sbin:/sbin"

if [ "${SUSTENET_WIN_REINSTALL:-0}" != 1 ] && root_ready; then
    log "root already installed in $ROOT; Wine installed on the host; done"
    exit 0
fi

# --- the host's own Debian mirror -------------------------------------------------------------
debian_mirror
log "Debian mirror: $mirror (suite: $SUITE)"

# --- stage 1: debootstrap ---------------------------------------------------------------------
mounted_under_root() { awk -v r="$ROOT" '$2 == r || index($2, r "/") == 1 {f=1} END {exit !f}' /proc/mounts; }
if [ -e "$ROOT" ] && { [ "${SUSTENET_WIN_REINSTALL:-0}" = 1 ] || [ ! -f "$STAGE1" ]; }; then
    mounted_under_root && die "something is mounted under $ROOT; unmount it first"
    log "removing unfinished or unwanted root $ROOT"
    rm -rf --one-file-system "$ROOT" || die "could not remove $ROOT"
fi
if [ ! -f "$STAGE1" ]; then
    log "debootstrap --variant=minbase $SUITE into $ROOT (a few minutes)"
    mkdir -p "$(dirname "$ROOT")"
    debootstrap --variant=minbase "$SUITE" "$ROOT" "$mirror" \
        || die "debootstrap failed (log: $ROOT/debootstrap/debootstrap.log if present); rerun to start over"
    date -u +%Y-%m-%dT%H:%M:%SZ > "$STAGE1"
else
    log "debootstrap already done ($(cat "$STAGE1")); resuming"
fi

# --- stage 2: packages inside the root (in a private mount namespace: /proc goes with it) ----
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"; chmod 755 "$ROOT/usr/sbin/policy-rc.d"
in_root() {
    unshare --mount --propagation private -- sh -c 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"' \
        "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"
}
log "apt-get update inside the root"
if ! in_root apt-get update -q; then
    log "apt-get update failed; retrying with Acquire::Check-Valid-Until=false (expired snapshot mirror?)"
    echo 'Acquire::Check-Valid-Until "false";' > "$ROOT/etc/apt/apt.conf.d/99sustenet-snapshot"
    in_root apt-get update -q || die "apt-get update failed inside $ROOT"
fi
in_root dpkg --configure -a || die "dpkg --configure -a failed inside $ROOT"
log "installing ${PACKAGES[*]} inside the root"
in_root apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" \
    || die "apt-get install ${PACKAGES[*]} failed inside $ROOT; rerun to resume"
in_root apt-get clean

[ -d "$ROOT/usr/lib/rustlib/src/rust/library/std" ] || die "rust-src is not where expected ($ROOT/usr/lib/rustlib/src/rust/library)"
rustc_version=$(in_root rustc --version) || die "rustc does not run inside $ROOT"
gcc_version=$(in_root x86_64-w64-mingw32-gcc-win32 -dumpfullversion) || die "x86_64-w64-mingw32-gcc-win32 does not run inside $ROOT"
printf '%s, mingw-w64 gcc %s, suite %s, installed %s\n' "$rustc_version" "$gcc_version" "$SUITE" \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$MARKER"
log "done: $(cat "$MARKER")"
