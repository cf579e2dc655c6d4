#!/usr/bin/env bash
# Run a Godot game exported for Linux (e.g. the headless cluster) inside the Godot root
# made by scripts/install-godot.sh. An exported binary finds its .pck through
# /proc/self/exe, so it cannot run through the root's loader from the host; it runs in a
# chroot with /proc mounted and the export directory bind-mounted at the same absolute
# path. The root shares the host's network, so it talks to host processes on loopback.
#
#   scripts/godot-run-export.sh build/cluster/cluster.x86_64 [game args...]
#
# The working directory inside the root is the export directory. The exit code is the
# game's. Needs root. Mounts live in a private mount namespace (unshare) when possible,
# so they disappear with the process; otherwise they are made idempotently and removed
# by a trap on exit.
#
# Environment: SUSTENET_GODOT_ROOT (default /opt/sustenet-godot-root).
set -euo pipefail

R="${SUSTENET_GODOT_ROOT:-/opt/sustenet-godot-root}"
die() { echo "godot-run-export.sh: $*" >&2; exit 125; }

[ $# -ge 1 ] || die "usage: $0 <exported-binary> [args...]"
[ "$(id -u)" -eq 0 ] || die "must run as root (chroot and mount need it)"
[ -x "$R/usr/bin/godot-template-release" ] && [ -d "$R/proc" ] \
    || die "no Godot root at $R; run scripts/install-godot.sh first"
bin=$(realpath -e -- "$1") || die "exported binary not found: $1"
[ -x "$bin" ] || die "not executable: $bin"
shift
dir=$(dirname -- "$bin")
name=$(basename -- "$bin")
case "$dir" in "$R"|"$R"/*) die "the export must live outside $R (found $dir)";; esac

# Re-run in a private mount namespace: mounts vanish with it, and concurrent runs do not
# see (or unmount) each other's mounts.
if [ -z "${SUSTENET_IN_MOUNT_NS:-}" ] && command -v unshare >/dev/null \
        && unshare --mount --propagation private true 2>/dev/null; then
    export SUSTENET_IN_MOUNT_NS=1
    exec unshare --mount --propagation private -- "$0" "$bin" "$@"
fi

if [ ! -e "$dir/${name%.*}.pck" ] && [ ! -e "$dir/$name.pck" ]; then
    echo "godot-run-export.sh: warning: no ${name%.*}.pck beside $bin (fine only if the pck is embedded)" >&2
fi

mounted=()
cleanup() {
    local i
    for ((i=${#mounted[@]}-1; i>=0; i--)); do
        umount "${mounted[$i]}" 2>/dev/null || umount -l "${mounted[$i]}" 2>/dev/null || \
            echo "godot-run-export.sh: warning: could not unmount ${mounted[$i]}" >&2
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# mount_once <mountpoint> <mount args...>: mount unless something is mounted there already.
mount_once() {
    local target=$1; shift
    if mountpoint -q "$target"; then return 0; fi
    mount "$@" "$target" || die "mount $* $target failed"
    mounted+=("$target")
}
mount_once "$R/proc" -t proc proc
mkdir -p "$R$dir"
mount_once "$R$dir" --bind "$dir"

# The root's own environment: the host's LD_* settings must not leak in. The game keeps this
# script's standard input (an agent's pipe: a game started with --quit-on-stdin-eof stops when
# it closes). SIGTERM or SIGINT to this script gives the game SUSTENET_EXPORT_STOP_GRACE_SEC
# (default 3) to stop by itself, then passes SIGTERM on; the exit code is always the game's.
grace=${SUSTENET_EXPORT_STOP_GRACE_SEC:-3}
[[ "$grace" =~ ^[0-9]+$ ]] || die "SUSTENET_EXPORT_STOP_GRACE_SEC must be a whole number of seconds"
set +e
chroot "$R" /usr/bin/env -u LD_LIBRARY_PATH -u LD_PRELOAD \
    PATH=/usr/local/bin:/usr/bin:/bin HOME="${HOME:-/root}" \
    /bin/sh -c 'cd "$1" && shift && exec "$@"' sh "$dir" "$dir/$name" "$@" <&0 &
game=$!
stop_asked=0
trap 'stop_asked=1' TERM INT
while :; do
    wait "$game"
    rc=$?
    kill -0 "$game" 2>/dev/null || break
    if [ "$stop_asked" -eq 1 ]; then
        for _ in $(seq $((grace * 10))); do kill -0 "$game" 2>/dev/null || break; sleep 0.1; done
        kill -TERM "$game" 2>/dev/null
    fi
done
set -e
exit $rc
