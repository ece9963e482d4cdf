#!/usr/bin/env bash
# Memory benchmark: one image whose single layer holds N tiny
# node_modules/*/package.json files (default 1,000,000), pushed with skopeo
# into a release `drydock serve --no-auth` on loopback. Prints the server's
# peak RSS (VmHWM) once the image is assessed, its RSS afterwards, the
# growth of assess.db, and the latency of the image's API views.
# usage: bench/memory/run.sh [N]   (BIN=path/to/drydock to skip the build)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
n="${1:-1000000}"
work="$root/target/bench-memory"
layout="$work/npm-$n"
mkdir -p "$work"
if [ ! -f "$layout/index.json" ]; then
  python3 bench/memory/gen.py "$layout" "$n"
fi
bin="${BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release -p drydock >/dev/null
  bin="$root/target/release/drydock"
fi
data="$(mktemp -d "$work/data.XXXXXX")"
port=$((20000 + RANDOM % 20000))
"$bin" --data "$data" db import tests/fixtures/vulndata >/dev/null
"$bin" serve --no-auth --listen "127.0.0.1:$port" --data "$data" >"$data/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
db_before=$(stat -c %s "$data/assess.db")
rss_idle=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
start=$(date +%s.%N)
skopeo copy -q --dest-tls-verify=false "oci:$layout:latest" "docker://127.0.0.1:$port/bench/npm:latest"
digest=$(skopeo inspect --tls-verify=false --raw "docker://127.0.0.1:$port/bench/npm:latest" | sha256sum | cut -d' ' -f1)
digest="sha256:$digest"
api="http://127.0.0.1:$port/api/v1/images/$digest"
status=""
for _ in $(seq 3000); do
  status=$(curl -fsS "$api" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin).get("status",""))' 2>/dev/null || true)
  case "$status" in done|failed) break ;; esac
  sleep 0.2
done
end=$(date +%s.%N)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
sleep 2
rss_after=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
# The WAL holds recent writes; fold it in before measuring the file.
sqlite3 "$data/assess.db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null 2>&1 || true
db_after=$(( $(stat -c %s "$data/assess.db") + $(stat -c %s "$data/assess.db-wal" 2>/dev/null || echo 0) ))
# Latency of the image's views: best and median of 10 requests each.
measure() {
  local url="$1" times=() size=0
  for _ in $(seq 10); do
    read -r t s < <(curl -fsS -o /dev/null -w '%{time_total} %{size_download}\n' "$url")
    times+=("$t"); size=$s
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v size="$size" '{a[NR]=$1} END {printf "%.1f ms median, %.1f ms best, %d bytes\n", a[int((NR+1)/2)]*1000, a[1]*1000, size}'
}
echo "image: $n package.json files, layer $(stat -c %s "$layout"/blobs/sha256/* | sort -n | tail -1) bytes"
echo "status: $status; push→$status $(echo "$end - $start" | bc) s"
curl -fsS "$api" | python3 -c '
import json,sys
v=json.load(sys.stdin)
print("complete:", v.get("complete"), "| incomplete_reasons:", v.get("incomplete_reasons"))
print("summary:", v.get("summary"))
print("health:", (v.get("health") or {}).get("status"))'
echo "peak RSS (VmHWM): $((hwm / 1024)) MB; idle before push $((rss_idle / 1024)) MB; 2 s after $((rss_after / 1024)) MB"
echo "assess.db growth: $(( (db_after - db_before) / 1024 )) KiB"
echo "GET /api/v1/images/{digest}: $(measure "$api")"
if curl -fsS -o /dev/null "$api/findings?limit=100" 2>/dev/null; then
  echo "GET .../findings?limit=100: $(measure "$api/findings?limit=100")"
  echo "GET .../packages?limit=100: $(measure "$api/packages?limit=100")"
fi
