#!/usr/bin/env bash
# Prove README command 1 on a fresh clone with nothing beside it: clone the checkout's HEAD into an
# empty temporary directory (no ../shared there), run command 1 exactly as the README writes it,
# and check that it printed the query table and wrote the hull plot.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
command1="$(grep -m1 '^bash .ci/setup && .venv/bin/matris-flows screen' "$repo/README.md")"
[ -n "$command1" ] || { echo "README command 1 not found" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
git clone -q "$repo" "$tmp/matris-flows"
cd "$tmp/matris-flows"
[ ! -e ../shared ] || { echo "a shared/ folder is beside the clone" >&2; exit 1; }
start=$(date +%s)
env -u MATRIS_FLOWS_SHARED_DATA bash -c "$command1" >"$tmp/stdout" 2>"$tmp/stderr" || {
    echo "README command 1 failed on a fresh clone:" >&2; tail -n 30 "$tmp/stderr" >&2; exit 1; }
echo "README command 1 on a fresh clone took $(( $(date +%s) - start )) s"
# The query table: its header, and one row per screened candidate (the demo screens 7).
grep -q "^candidate_id .*e_above_hull" "$tmp/stdout" || { echo "no query table on stdout:" >&2; cat "$tmp/stdout" >&2; exit 1; }
rows=$(grep -c "^cand-" "$tmp/stdout" || true)
[ "$rows" -ge 5 ] || { echo "query table has $rows rows, expected the demo's ~7" >&2; cat "$tmp/stdout" >&2; exit 1; }
echo "query table: $rows candidates"
python3 - "$tmp/matris-flows/campaigns/demo-li-fe-o/hull.png" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read(24)
assert data[:8] == b"\x89PNG\r\n\x1a\n", "hull.png is not a PNG"
width, height = struct.unpack(">II", data[16:24])
assert width >= 400 and height >= 300, f"hull.png is only {width}x{height}"
print(f"hull.png {width}x{height}")
PY
grep -rn "shared" "$tmp/matris-flows/campaigns/demo-li-fe-o/campaign.log" && { echo "the demo mentions shared data" >&2; exit 1; } || true
# The demo's last line says how to browse it; `serve` answers on the fresh install (pages and a download).
grep -q "^browse it: matris-flows serve campaigns/demo-li-fe-o" "$tmp/stdout" || { echo "no browse line on stdout" >&2; exit 1; }
.venv/bin/python - <<'PY'
import re, subprocess, sys, urllib.request
server = subprocess.Popen([".venv/bin/matris-flows", "serve", "campaigns/demo-li-fe-o", "--port", "0"], stdout=subprocess.PIPE, text=True)
try:
    url = re.search(r"http://\S+/", server.stdout.readline()).group(0)
    assert b"matris-flows" in urllib.request.urlopen(url, timeout=30).read()
    rows = urllib.request.urlopen(url + "download/candidates.csv", timeout=30).read().decode().splitlines()
    assert rows[0].startswith("candidate_id,") and len(rows) >= 6, rows
    print(f"serve: {url} answers, {len(rows) - 1} candidates in its CSV")
finally:
    server.terminate()
PY
echo "fresh-clone demo: ok"
