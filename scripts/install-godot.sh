#!/usr/bin/env bash
# Install Godot 4 (Debian testing's `godot` + `godot-template-release`, plus Mesa's
# software GL for running under Xvfb) into a root file system of its own, made with
# debootstrap, without touching the host's packages. Debian 12 only packages Godot 3.
#
#   scripts/install-godot.sh            # idempotent; does nothing when already installed
#
# Environment:
#   SUSTENET_GODOT_ROOT    where the root goes        (default /opt/sustenet-godot-root)
#   SUSTENET_GODOT_SUITE   Debian suite to bootstrap  (default testing; `sid` also works)
#   SUSTENET_DEBIAN_MIRROR Debian mirror URL          (default: the host's own, read from
#                          /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list)
#   SUSTENET_GODOT_REINSTALL=1  throw away an existing root and start again
#
# Run the installed Godot with scripts/godot.sh and exported binaries with
# scripts/godot-run-export.sh. Needs root (debootstrap, chroot). Takes a few minutes
# and about 1 GB.
set -euo pipefail

ROOT="${SUSTENET_GODOT_ROOT:-/opt/sustenet-godot-root}"
SUITE="${SUSTENET_GODOT_SUITE:-testing}"
MARKER="$ROOT/.sustenet-godot-installed"
STAGE1="$ROOT/.sustenet-debootstrap-done"
PACKAGES=(godot godot-template-release
          libgl1-mesa-dri libglx-mesa0 libegl-mesa0 libgl1 libegl1)

log()  { printf '[install-godot] %s\n' "$*" >&2; }
died=0
die()  { printf '[install-godot] ERROR: %s\n' "$*" >&2; died=1; exit 1; }
on_exit() {
    local rc=$?
    if [ -n "${PROC_MOUNTED:-}" ]; then umount "$ROOT/proc" 2>/dev/null || umount -l "$ROOT/proc" || true; fi
    if [ $rc -ne 0 ] && [ $died = 0 ]; then
        printf '[install-godot] ERROR: failed (exit %s) running: %s\n' "$rc" "$BASH_COMMAND" >&2
    fi
}
trap on_exit EXIT
# shellcheck source-path=SCRIPTDIR source=lib/debian-host.sh
. "$(dirname "$0")/lib/debian-host.sh"

installed() {
    [ -f "$MARKER" ] && [ -x "$ROOT/usr/bin/godot" ] && [ -x "$ROOT/usr/bin/godot-template-release" ] \
        && [ -e "$ROOT/usr/lib64/ld-linux-x86-64.so.2" ]
}

if [ "${SUSTENET_GODOT_REINSTALL:-0}" != 1 ] && installed; then
    log "Godot already installed in $ROOT ($(cat "$MARKER")); nothing to do"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap and chroot need it); try: sudo $0"
[ "$(uname -m)" = x86_64 ] || die "only x86_64 is supported (found $(uname -m))"
command -v apt-get >/dev/null || die "apt-get not found: this script needs a Debian-based host"

# --- the host's own Debian mirror --------------------------------------------------------
debian_mirror
log "Debian mirror: $mirror (suite: $SUITE)"

# --- host tools ----------------------------------------------------------------------------
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || host_install debootstrap
command -v Xvfb >/dev/null || host_install xvfb xauth
export PATH="$PATH:/usr/sbin:/sbin"

# --- mounts inside the root (from an interrupted run or godot-run-export.sh) ---------------
unmount_all() {
    local m
    # Deepest first.
    for m in $(awk -v r="$ROOT" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/mounts | sort -r); do
        log "unmounting leftover $m"
        umount "$m" 2>/dev/null || umount -l "$m" || die "cannot unmount $m; unmount it by hand"
    done
}

# --- stage 1: debootstrap --------------------------------------------------------------------
if [ -e "$ROOT" ] && { [ "${SUSTENET_GODOT_REINSTALL:-0}" = 1 ] || [ ! -f "$STAGE1" ]; }; then
    log "removing unfinished or unwanted root $ROOT"
    unmount_all
    if awk -v r="$ROOT" '$2 == r || index($2, r "/") == 1 {f=1} END {exit !f}' /proc/mounts; then
        die "something is still mounted under $ROOT; refusing to delete it"
    fi
    rm -rf --one-file-system "$ROOT" || die "could not remove $ROOT"
fi

if [ ! -f "$STAGE1" ]; then
    log "debootstrap --variant=minbase $SUITE into $ROOT (a few minutes)"
    mkdir -p "$(dirname "$ROOT")"
    debootstrap --variant=minbase "$SUITE" "$ROOT" "$mirror" \
        || die "debootstrap failed (log: $ROOT/debootstrap/debootstrap.log if present); rerun to start over"
    date -u +%Y-%m-%dT%H:%M:%SZ > "$STAGE1"
    log "debootstrap done"
else
    log "debootstrap already done ($(cat "$STAGE1")); resuming"
fi

# --- stage 2: packages inside the root -------------------------------------------------------
unmount_all
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
# No daemons may start inside the root.
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"; chmod 755 "$ROOT/usr/sbin/policy-rc.d"
mount -t proc proc "$ROOT/proc" || die "could not mount /proc in $ROOT"
PROC_MOUNTED=1

in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"; }

log "apt-get update inside the root"
if ! in_root apt-get update -q; then
    # A mirror that serves a frozen snapshot has a Release file whose Valid-Until date
    # has passed ("Release file ... is expired"). Accept it inside this test root only.
    log "apt-get update failed; retrying with Acquire::Check-Valid-Until=false (expired snapshot mirror?)"
    echo 'Acquire::Check-Valid-Until "false";' > "$ROOT/etc/apt/apt.conf.d/99sustenet-snapshot"
    in_root apt-get update -q || die "apt-get update failed inside $ROOT (see the apt messages above)"
fi
log "dpkg --configure -a (finishes an interrupted install, if any)"
in_root dpkg --configure -a || die "dpkg --configure -a failed inside $ROOT"
log "installing ${PACKAGES[*]} inside the root"
in_root apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" \
    || die "apt-get install ${PACKAGES[*]} failed inside $ROOT; rerun to resume"
in_root apt-get clean

[ -x "$ROOT/usr/bin/godot" ] || die "$ROOT/usr/bin/godot missing after install"
[ -x "$ROOT/usr/bin/godot-template-release" ] || die "$ROOT/usr/bin/godot-template-release missing after install"
[ -e "$ROOT/usr/lib64/ld-linux-x86-64.so.2" ] || die "$ROOT/usr/lib64/ld-linux-x86-64.so.2 missing"
# Use the root's Godot to print its version (run inside the root: no host libraries involved).
version=$(in_root /usr/bin/godot --headless --version 2>/dev/null | tail -n 1) \
    || die "the installed godot does not run (chroot $ROOT /usr/bin/godot --headless --version)"
pkgver=$(in_root dpkg-query -W -f='${Version}' godot)
printf 'godot %s (package %s), suite %s, installed %s\n' "$version" "$pkgver" "$SUITE" \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$MARKER"
log "done: Godot $version (Debian package $pkgver) in $ROOT"
log "run it with scripts/godot.sh --headless --version"
