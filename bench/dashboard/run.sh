#!/usr/bin/env bash
# Dashboard benchmark: 10,000 images in the registry, each dashboard page
# loaded in headless Chromium, time until drawn and bytes fetched.
#
#   bash bench/dashboard/run.sh [--out bench/dashboard.md] [--regenerate]
#
# 1. Fills a data directory (kept under target/bench-dashboard, reused by
#    later runs unless --regenerate) with BENCH_IMAGES (10,000) distinct
#    images over BENCH_REPOS (200) repositories: gen.py pushes re-configured
#    copies of the test images over /v2/ to a release-built `drydock serve`
#    without access control, the vulnerability database is imported
#    (../shared/vulndata when present, else tests/fixtures/vulndata) and
#    every image's assessment is awaited.
# 2. Restarts the server with access control on (and without the
#    dashboard's kept judging, so its first read judges every image), adds
#    an administrator with a random password, and runs measure.mjs
#    (playwright-core from ui-tests/node_modules, Debian's chromium): per
#    page BENCH_RUNS (15) cold loads after one warm-up, median and p95 of
#    the time from navigation start until the page is drawn, and the bytes
#    transferred. Then restarts it once more and times the first read,
#    now served from the judging the first run kept on disk.
# 3. Prints the markdown table (and writes it to --out); bench/collect.sh
#    gathers bench/dashboard.md into bench/RESULTS.md.
#
# Needs: node, chromium, npm ci --prefix ui-tests, python3, the test
# images (scripts/test-images.sh). Not part of `cargo test`.
set -euo pipefail
shopt -s inherit_errexit
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
out=""
regenerate=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --regenerate) regenerate=1; shift ;;
    *) echo "usage: $0 [--out FILE] [--regenerate]" >&2; exit 2 ;;
  esac
done
images="${BENCH_IMAGES:-10000}"
repos="${BENCH_REPOS:-200}"
runs="${BENCH_RUNS:-15}"
target="${CARGO_TARGET_DIR:-$root/target}"
data="${BENCH_DATA:-$target/bench-dashboard/data-$images}"
vulndata="${DRYDOCK_VULNDATA:-${DRYDOCK_SHARED:-$root/../shared}/vulndata}"
[ -d "$vulndata" ] || vulndata="$root/tests/fixtures/vulndata"
load_at_start="$(cut -d' ' -f1-3 /proc/loadavg)"
work="$(mktemp -d /tmp/drydock-bench-ui.XXXXXX)"
pid=""
stop() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; fi; }
cleanup() { stop; rm -rf "$work"; }
trap cleanup EXIT

# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

if [ -z "${DRYDOCK_BIN:-}" ]; then
  echo "building drydock (release)..." >&2
  cargo build --release -q -p drydock
  DRYDOCK_BIN="$target/release/drydock"
fi
[ -d ui-tests/node_modules/playwright-core ] || { echo "npm ci --prefix ui-tests first" >&2; exit 1; }

port="$(free_port)"
url="http://127.0.0.1:$port"
serve() {
  "$DRYDOCK_BIN" serve --data "$data" --listen "127.0.0.1:$port" "$@" >>"$work/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 200); do
    curl -fs -o /dev/null "$url/v2/" -H 'Accept: application/json' 2>/dev/null && return 0
    curl -s -o /dev/null -w '%{http_code}' "$url/v2/" 2>/dev/null | grep -q 401 && return 0
    sleep 0.1
  done
  echo "the server did not start; its log:" >&2
  tail -20 "$work/server.log" >&2
  exit 1
}
api() { curl -fsS "$url/api/v1$1" -H 'Accept: application/json'; }

gen_seconds=""
assess_seconds=""
if [ "$regenerate" = 1 ] || [ ! -f "$data/bench-complete" ]; then
  bash scripts/test-images.sh bookworm-base python-app node-app rust-app multiarch >/dev/null
  rm -rf "$data"
  mkdir -p "$data"
  serve --no-auth
  t0=$(date +%s)
  python3 bench/dashboard/gen.py --url "$url" --layout "$target/test-images/oci" \
    --images "$images" --repos "$repos" >"$work/gen.json"
  t1=$(date +%s)
  gen_seconds=$((t1 - t0))
  echo "importing $vulndata..." >&2
  "$DRYDOCK_BIN" db import --data "$data" "$vulndata" >/dev/null
  # Assessed: nothing queued or running, and no image still without a
  # verdict against the database just imported.
  while true; do
    pending="$(api /overview | python3 -c '
import json, sys
o = json.load(sys.stdin)
q = o["queue"]
waiting = sum(o["images"].get(k, 0) for k in ("not_assessed", "waiting_for_database", "assessing"))
print(q.get("pending", 0) + q.get("running", 0) + waiting)')"
    [ "$pending" = 0 ] && break
    echo "  $pending images to go" >&2
    sleep 10
  done
  assess_seconds=$(($(date +%s) - t1))
  stop
  echo "generated in ${gen_seconds}s, assessed in ${assess_seconds}s" > "$data/bench-complete"
fi

password="bench-$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
user="bench-$(date +%s)"
printf '%s\n' "$password" | "$DRYDOCK_BIN" user add "$user" --admin --password-stdin --data "$data" >/dev/null
rm -f "$data/dashboard-judged.json.zst"
serve --auth
DRYDOCK_BENCH_URL="$url" DRYDOCK_BENCH_USER="$user" DRYDOCK_BENCH_PASSWORD="$password" \
  DRYDOCK_BENCH_RUNS="$runs" node bench/dashboard/measure.mjs >"$work/measure.json"
rss="$(grep VmHWM "/proc/$pid/status" | awk '{print int($2/1024)}')"
stop
serve --auth
DRYDOCK_BENCH_URL="$url" DRYDOCK_BENCH_USER="$user" DRYDOCK_BENCH_PASSWORD="$password" \
  DRYDOCK_BENCH_FIRST_ONLY=1 node bench/dashboard/measure.mjs >"$work/restart.json"
stop
kept="$(stat -c %s "$data/dashboard-judged.json.zst" 2>/dev/null || echo 0)"

python3 - "$work/measure.json" "$data/bench-complete" "$load_at_start" "$rss" "$vulndata" "$root" "$work/restart.json" "$kept" >"$work/table.md" <<'EOF'
import json, os, statistics, sys
m = json.load(open(sys.argv[1]))
restart = json.load(open(sys.argv[7]))
kept = int(sys.argv[8])
made = open(sys.argv[2]).read().strip()
load, rss, vulndata, root = sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * len(xs) + 0.5) - 1))]
print("# Dashboard at 10,000 images\n")
print(f"`bash bench/dashboard/run.sh` ({len(m['pages'][0]['runs'])} cold loads per page after one warm-up, headless Chromium, browser cache off), release build, loopback.")
print(f"Registry: {m['images_total']} tagged images and {m['untagged']} untagged digests in {m['repositories']} repositories ({made}); database from `{os.path.relpath(vulndata, root)}`. Load at start {load}; server peak RSS {rss} MB.")
print("Time is from navigation start until the page is drawn (the dashboard removes `aria-busy` from `<main>`); bytes are everything the page fetched (HTML, script, style, API answers; compressed bodies plus headers).\n")
print("| page | median ms | p95 ms | bytes | requests | target | met |")
print("| --- | ---: | ---: | ---: | ---: | --- | --- |")
for p in m["pages"]:
    ms = [r["ms"] for r in p["runs"]]
    b = max(r["bytes"] for r in p["runs"])
    med, p95 = statistics.median(ms), pct(ms, 95)
    ok = "yes" if p95 < 500 and b <= 1_000_000 else "no"
    name = p["page"] + (f", {p['note']}" if p.get("note") else "")
    print(f"| {name} | {med:.0f} | {p95} | {b:,} | {p['runs'][0]['requests']} | < 500 ms, ≤ 1 MB | {ok} |")
print(f"\nThe first read after a start (`/api/v1/vulnerabilities`, before the pages): {m['first_read_ms']} ms without a kept judging (every image judged: results read, exemptions and VEX applied); {restart['first_read_ms']} ms after a restart, served from the judging kept in `dashboard-judged.json.zst` ({kept:,} bytes) while the images changed meanwhile are judged again in the background. Later judgings judge only the images whose rows or results moved (every image when exemptions, VEX or the policy move); tags are read again every two seconds.")
EOF
cat "$work/table.md"
if [ -n "$out" ]; then
  cp "$work/table.md" "$out"
  echo "wrote $out" >&2
fi
