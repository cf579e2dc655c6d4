#!/usr/bin/env bash
# Checks Windows builds of the Sustenet GDExtension (made by scripts/build-windows.sh):
#
#   1. it is a PE32+ x86-64 DLL;
#   2. it exports `gdext_rust_init`, the entry symbol sustenet.gdextension names;
#   3. it imports only DLLs every Windows 10/11 has (no libgcc_s_seh-1.dll, libwinpthread-1.dll,
#      libstdc++-6.dll or Visual C++ runtime to ship beside it);
#   4. it loads under Wine: target/win-cross/load-dll.exe (scripts/windows/load-dll.c) calls
#      LoadLibraryExW, GetProcAddress("gdext_rust_init") and FreeLibrary. Under a Wine without
#      bcryptprimitives.dll (Wine 8) the stand-in from scripts/windows/bcryptprimitives.c is
#      put into the Wine prefix first.
#
#   scripts/check-windows-dll.sh [DLL...]   # default: addons/sustenet/bin/sustenet.dll (and
#                                           # sustenet.debug.dll when present)
#
# Needs objdump (binutils, with PE support as Debian's has) and Wine (Debian's wine64; both
# installed by scripts/install-win-cross.sh). The Wine prefix lives in target/win-cross/wine.
# Exit status: 0 all checks passed, 1 a check failed, 3 a tool is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

say() { printf 'check-windows-dll: %s\n' "$*"; }
die() { printf 'check-windows-dll: error: %s\n' "$1" >&2; exit "${2:-1}"; }

case "${1:-}" in -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;; esac

dlls=("$@")
if [ ${#dlls[@]} -eq 0 ]; then
    dlls=(addons/sustenet/bin/sustenet.dll)
    [ -e addons/sustenet/bin/sustenet.debug.dll ] && dlls+=(addons/sustenet/bin/sustenet.debug.dll)
fi
command -v objdump >/dev/null || die "objdump not found (apt-get install binutils)" 3
WINE=$(command -v wine64 || command -v wine || { [ -x /usr/lib/wine/wine64 ] && echo /usr/lib/wine/wine64; } || true)
[ -n "$WINE" ] || die "Wine not found (scripts/install-win-cross.sh installs it)" 3
LOADER="$REPO/target/win-cross/load-dll.exe"
[ -f "$LOADER" ] || die "$LOADER not found (scripts/build-windows.sh builds it)" 3

# DLLs that ship with Windows itself (lower case). The UCRT api-ms-win-* sets are part of
# Windows 10 and later.
SYSTEM_DLLS=" kernel32.dll ntdll.dll advapi32.dll bcrypt.dll bcryptprimitives.dll userenv.dll ws2_32.dll"
SYSTEM_DLLS+=" msvcrt.dll ucrtbase.dll secur32.dll crypt32.dll ole32.dll oleaut32.dll shell32.dll"
SYSTEM_DLLS+=" user32.dll iphlpapi.dll mswsock.dll dbghelp.dll synchronization.dll ncrypt.dll "

export WINEPREFIX="$REPO/target/win-cross/wine" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
if [ ! -f "$WINEPREFIX/system.reg" ]; then
    say "creating the Wine prefix $WINEPREFIX"
    "$WINE" wineboot --init >/dev/null 2>&1 || true
    # The wine server writes the prefix's registry (system.reg) only when it exits: wait for it.
    wineserver=$(dirname "$WINE")/wineserver
    [ -x "$wineserver" ] || wineserver=$(command -v wineserver || true)
    [ -n "$wineserver" ] && "$wineserver" -w
    [ -f "$WINEPREFIX/system.reg" ] || die "wineboot could not create $WINEPREFIX"
fi
# Windows 10/11 ship bcryptprimitives.dll (Rust's standard library takes random numbers from
# it); Wine 8 does not. Give such a Wine the stand-in built from scripts/windows/bcryptprimitives.c.
sys32="$WINEPREFIX/drive_c/windows/system32"
if [ ! -e "$sys32/bcryptprimitives.dll" ] || cmp -s "$REPO/target/win-cross/bcryptprimitives.dll" "$sys32/bcryptprimitives.dll"; then
    [ -f "$REPO/target/win-cross/bcryptprimitives.dll" ] || die "target/win-cross/bcryptprimitives.dll not found (scripts/build-windows.sh builds it)" 3
    cp -f "$REPO/target/win-cross/bcryptprimitives.dll" "$sys32/bcryptprimitives.dll"
    say "this Wine ($("$WINE" --version 2>/dev/null || echo unknown)) has no bcryptprimitives.dll: using the stand-in from scripts/windows/bcryptprimitives.c"
fi

failed=0
fail() { say "FAIL $1"; failed=1; }
for dll in "${dlls[@]}"; do
    [ -f "$dll" ] || die "$dll not found (scripts/build-windows.sh builds it)"
    say "checking $dll ($(stat -c %s "$dll") bytes)"
    dump=$(objdump -p "$dll") || { fail "$dll: objdump cannot read it"; continue; }

    if grep -q 'file format pei-x86-64' <<<"$dump"; then say "  ok: PE32+ x86-64"; else fail "$dll: not a pei-x86-64 file"; fi

    # Export table lines look like "	[   0] +base[   1]  0000 gdext_rust_init".
    if awk '/^\[Ordinal\/Name Pointer\] Table/ {t=1; next} t && NF==0 {t=0} t' <<<"$dump" \
            | grep -qE '[[:space:]]gdext_rust_init$'; then
        say "  ok: exports gdext_rust_init"
    else
        fail "$dll: gdext_rust_init is not exported"
    fi

    imports=$(awk '/DLL Name:/ {print tolower($3)}' <<<"$dump" | sort -u)
    [ -n "$imports" ] || fail "$dll: no import table found"
    bad=()
    for i in $imports; do
        case "$i" in api-ms-win-*.dll) continue ;; esac
        [[ "$SYSTEM_DLLS" == *" $i "* ]] || bad+=("$i")
    done
    if [ ${#bad[@]} -eq 0 ]; then
        say "  ok: imports only system DLLs: $(echo $imports)"
    else
        fail "$dll: imports DLLs Windows does not ship: ${bad[*]}"
    fi

    winpath="Z:$(realpath "$dll" | tr / '\\')"
    if out=$("$WINE" "$LOADER" "$winpath" gdext_rust_init 2>&1); then
        say "  ok: loads under Wine ($(echo $out | tr -d '\r'))"
    else
        rc=$?
        fail "$dll: load-dll.exe under Wine exited $rc: $(tr -d '\r' <<<"$out" | tail -n 5)"
    fi
done

if [ $failed -ne 0 ]; then say "some checks failed"; exit 1; fi
say "all checks passed for ${dlls[*]}"
