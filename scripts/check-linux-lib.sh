#!/usr/bin/env bash
# Checks Linux builds of the Sustenet GDExtension and of the `sustenet` command:
#
#   1. a library exports `gdext_rust_init` (the entry symbol sustenet.gdextension names);
#   2. it needs only libc, libm, libgcc_s and the dynamic loader (nothing to install beside it);
#   3. it asks for no glibc symbol newer than GLIBC_2.34, the floor addons/sustenet/README.md
#      promises (Ubuntu 22.04, Debian 12, RHEL 9 and later).
#
#   scripts/check-linux-lib.sh [FILE...]   # default: the .so files in addons/sustenet/bin/ and
#                                          # target/release/sustenet or target/debug/sustenet
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_GLIBC=2.34
ALLOWED=" libc.so.6 libm.so.6 libgcc_s.so.1 ld-linux-x86-64.so.2 ld-linux-aarch64.so.1 libpthread.so.0 libdl.so.2 librt.so.1 "
say() { printf 'check-linux-lib: %s\n' "$*"; }
case "${1:-}" in -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;; esac
command -v objdump >/dev/null || { say "objdump not found (apt-get install binutils)"; exit 3; }

files=("$@")
if [ ${#files[@]} -eq 0 ]; then
    for f in addons/sustenet/bin/*.so; do [ -e "$f" ] && files+=("$f"); done
    for f in target/release/sustenet target/debug/sustenet; do [ -x "$f" ] && { files+=("$f"); break; }; done
fi
[ ${#files[@]} -gt 0 ] || { say "nothing to check (scripts/build-godot.sh builds the libraries)"; exit 1; }

failed=0
for f in "${files[@]}"; do
    dyn=$(objdump -p "$f") || { say "FAIL $f: objdump cannot read it"; failed=1; continue; }
    problems=()
    if [[ "$f" == *.so ]] && ! objdump -T "$f" | grep -qE '[[:space:]]gdext_rust_init$'; then
        problems+=("gdext_rust_init is not exported")
    fi
    for n in $(awk '$1 == "NEEDED" {print $2}' <<<"$dyn"); do
        [[ "$ALLOWED" == *" $n "* ]] || problems+=("needs $n")
    done
    newest=$(objdump -T "$f" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
    if [ -n "$newest" ] && [ "$(printf '%s\n%s\n' "$newest" "$MAX_GLIBC" | sort -V | tail -n 1)" != "$MAX_GLIBC" ]; then
        problems+=("needs GLIBC_$newest (newer than $MAX_GLIBC)")
    fi
    if [ ${#problems[@]} -eq 0 ]; then
        say "ok $f: $(awk '$1 == "NEEDED" {printf "%s ", $2}' <<<"$dyn")(glibc ${newest:-none} at most)"
    else
        say "FAIL $f: $(IFS=';'; echo "${problems[*]}")"; failed=1
    fi
done
exit $failed
