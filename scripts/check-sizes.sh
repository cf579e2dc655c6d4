#!/usr/bin/env bash
# Checks the size rules of the Rust sources (docs/architecture.md, "Size
# rules"): no file in rust/ over 800 lines and no function over 100 lines,
# unless a comment says why: `// Long file: <why>` within a file's first 20
# lines, or `// Long: <why>` right above a function (among its docs and
# attributes) or on the first line of its body. Prints every offender and
# exits 1 if there is one.
#
#   scripts/check-sizes.sh [MAX_FILE_LINES [MAX_FN_LINES]]
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - "${1:-800}" "${2:-100}" <<'PY'
import os, re, sys

max_file, max_fn = int(sys.argv[1]), int(sys.argv[2])
fn_re = re.compile(r'^(\s*)(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+"[^"]*"\s+)?fn\s+(\w+)')
bad = []
for root, dirs, files in os.walk('rust'):
    dirs[:] = sorted(d for d in dirs if d != 'target')
    for f in sorted(files):
        if not f.endswith('.rs'):
            continue
        path = os.path.join(root, f)
        lines = open(path, encoding='utf-8').read().split('\n')
        n = len(lines) - (1 if lines and lines[-1] == '' else 0)
        if n > max_file and not any(l.strip().startswith('// Long file:') for l in lines[:20]):
            bad.append(f'{path}: {n} lines (over {max_file}; say why with "// Long file: ...")')
        for i, line in enumerate(lines):
            m = fn_re.match(line)
            if not m or line.rstrip().endswith(';'):
                continue
            indent = m.group(1)
            # rustfmt puts the closing brace at the function's indentation
            end = next((j for j in range(i + 1, len(lines)) if lines[j] == indent + '}'), None)
            if end is None or end - i + 1 <= max_fn:
                continue
            above, k = [], i - 1
            while k >= 0 and lines[k].strip().startswith(('///', '#[', '//')):
                above.append(lines[k].strip()); k -= 1
            body_start = next(j for j in range(i, end) if lines[j].rstrip().endswith('{'))
            first = lines[body_start + 1].strip() if body_start + 1 < end else ''
            if any(a.startswith('// Long:') for a in above) or first.startswith('// Long:'):
                continue
            bad.append(f'{path}:{i + 1}: fn {m.group(8)} is {end - i + 1} lines (over {max_fn}; say why with "// Long: ...")')
for b in bad:
    print(b)
if bad:
    sys.exit(1)
print(f'sizes: every file in rust/ is at most {max_file} lines and every function at most {max_fn}, or says why')
PY
