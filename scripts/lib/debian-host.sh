# shellcheck shell=bash
# Shared by scripts/install-godot.sh and scripts/install-win-cross.sh (sourced, not run):
# installing packages on the Debian host, and finding the host's own Debian mirror for
# debootstrap. The sourcing script defines log and die.

_host_apt_updated=0

# host_install <package>...: apt-get install on the host, running apt-get update first when
# there are no package lists yet, and once more (then retrying) when the install fails.
host_install() {
    log "installing on the host: $*"
    if [ $_host_apt_updated = 0 ] && ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
        log "apt-get update (no package lists yet)"
        apt-get update -q || die "apt-get update failed on the host"
        _host_apt_updated=1
    fi
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"; then
        [ $_host_apt_updated = 1 ] && die "apt-get install $* failed on the host"
        log "apt-get install failed; running apt-get update and retrying"
        apt-get update -q || die "apt-get update failed on the host"
        _host_apt_updated=1
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" \
            || die "apt-get install $* failed on the host"
    fi
}

# debian_mirror: sets mirror to SUSTENET_DEBIAN_MIRROR, or to the host's main archive (not
# -security) from /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list; dies when none.
debian_mirror() {
    mirror="${SUSTENET_DEBIAN_MIRROR:-}"
    if [ -z "$mirror" ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
        # First URIs: line of the stanza for the main archive.
        mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
        mirror=$(awk '$1=="deb" && $0 !~ /security/ { for (i=2;i<=NF;i++) if ($i ~ /^https?:/) {print $i; exit} }' /etc/apt/sources.list)
    fi
    [ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list; set SUSTENET_DEBIAN_MIRROR"
}
