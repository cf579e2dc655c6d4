/* Stand-in for bcryptprimitives.dll, used only by scripts/check-windows-dll.sh under Wine
 * releases that lack it (Wine 8, Debian 12's). Every Windows 10/11 ships bcryptprimitives.dll;
 * Rust's standard library imports ProcessPrng from it for random numbers. This stand-in
 * implements ProcessPrng with BCryptGenRandom of Wine's own bcrypt.dll, so that the loader
 * test runs the DLL's real imports. It is never shipped.
 */
#include <windows.h>
#include <bcrypt.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!BCRYPT_SUCCESS(BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG))) {
            return FALSE;
        }
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
