/* Loads a DLL the way Godot does on Windows (LoadLibraryExW with the DLL's own folder searched
 * for its dependencies) and looks up a symbol in it:
 *
 *   load-dll.exe <path-to.dll> <symbol>
 *
 * Prints "loaded <path>" and "found <symbol>" and exits 0 on success; on failure prints the
 * Windows error code and exits 1 (LoadLibrary failed) or 2 (symbol missing). Built with
 * MinGW-w64 and run under Wine by scripts/check-windows-dll.sh.
 */
#include <stdio.h>
#include <windows.h>

int wmain(int argc, wchar_t **argv) {
    if (argc != 3) {
        fwprintf(stderr, L"usage: load-dll.exe <path-to.dll> <symbol>\n");
        return 64;
    }
    HMODULE lib = LoadLibraryExW(argv[1], NULL,
                                 LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR | LOAD_LIBRARY_SEARCH_DEFAULT_DIRS);
    if (lib == NULL) {
        fwprintf(stderr, L"LoadLibraryExW(%ls) failed: Windows error %lu\n", argv[1], GetLastError());
        return 1;
    }
    wprintf(L"loaded %ls\n", argv[1]);
    char symbol[256];
    if (WideCharToMultiByte(CP_UTF8, 0, argv[2], -1, symbol, sizeof symbol, NULL, NULL) == 0) {
        fwprintf(stderr, L"symbol name too long\n");
        return 64;
    }
    FARPROC proc = GetProcAddress(lib, symbol);
    if (proc == NULL) {
        fwprintf(stderr, L"GetProcAddress(%hs) failed: Windows error %lu\n", symbol, GetLastError());
        return 2;
    }
    wprintf(L"found %hs\n", symbol);
    if (!FreeLibrary(lib)) {
        fwprintf(stderr, L"FreeLibrary failed: Windows error %lu\n", GetLastError());
        return 3;
    }
    return 0;
}
