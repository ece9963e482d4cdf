#!/usr/bin/env bash
# Patch benchmark (issue 15): plan and build the patch of the Debian test
# image against a loopback, signed archive of real packages, cold (empty
# download cache) and warm (everything cached), through a running server.
#   bash bench/patch/run.sh [ROUNDS]        (default 3 warm rounds)
# Needs skopeo, the test images (scripts/test-images.sh), the packages
# `.ci/run` downloads into target/patch-debs (or $DRYDOCK_PATCH_DEBS),
# dpkg-scanpackages, gpg and xz. Uses $DRYDOCK_BIN, else a release build.
# Prints a markdown table for bench/RESULTS.md. Not part of `cargo test`.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
rounds="${1:-3}"
debs="${DRYDOCK_PATCH_DEBS:-$root/target/patch-debs}"
bash scripts/test-images.sh bookworm-base >/dev/null
layout_src="${DRYDOCK_TEST_IMAGES:-$root/target/test-images}/oci"
if [ -z "${DRYDOCK_BIN:-}" ]; then
  cargo build --release -q -p drydock
  DRYDOCK_BIN="$root/target/release/drydock"
fi
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

bash crates/patch/tests/make-archive.sh "$debs" "$work/archive"
ndebs=$(ls "$debs"/*.deb | wc -l)
aport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server "$aport" --bind 127.0.0.1 --directory "$work/archive" >/dev/null 2>&1 &
pids+=($!)
older=$(python3 bench/patch/old-image.py "$layout_src" "$work/layout" \
  "$work/archive/dists/bookworm/main/binary-amd64/Packages" tests/fixtures/vulndata)

data="$work/data"
export DRYDOCK_VULNDB_UPDATE_HOURS=0 RUST_LOG=warn
"$DRYDOCK_BIN" --data "$data" db import tests/fixtures/vulndata >/dev/null
cat >"$work/drydock.toml" <<TOML
[outbound]
allow = ["127.0.0.0/8"]
[patch.debian]
keyring = "$work/archive/keyring.gpg"
archives = [{ url = "http://127.0.0.1:$aport", suite = "bookworm" }]
TOML
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$DRYDOCK_BIN" --data "$data" --config "$work/drydock.toml" serve --listen "127.0.0.1:$port" \
  2>"$work/server.log" &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
skopeo copy -q --dest-tls-verify=false "oci:$work/layout:v1" "docker://127.0.0.1:$port/bench/app:v1"
digest=$(curl -sfI -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
  "http://127.0.0.1:$port/v2/bench/app/manifests/v1" | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}')
for _ in $(seq 600); do
  st=$(curl -sf "http://127.0.0.1:$port/api/v1/images/$digest" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("status",""))' || true)
  [ "$st" = done ] && break
  sleep 0.2
done

# One patch through the API; prints "wall_ms server_ms upgrades refusals
# upgraded_packages refused_packages".
patch() {
  local dry="$1" t0 t1 out
  t0=$(date +%s%N)
  out=$("$DRYDOCK_BIN" patch --server "http://127.0.0.1:$port" --json $dry bench/app:v1)
  t1=$(date +%s%N)
  python3 - "$(( (t1 - t0) / 1000000 ))" "$out" <<'PY'
import json, sys
from datetime import datetime
wall, job = int(sys.argv[1]), json.loads(sys.argv[2])
assert job["state"] == "done", job
def t(s):
    # RFC 3339 with nanoseconds: keep microseconds for fromisoformat.
    head, _, frac = s.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")
server = "-"
if job.get("created_at") and job.get("finished_at"):
    server = round((t(job["finished_at"]) - t(job["created_at"])).total_seconds() * 1000)
p = job["result"]["platforms"][0]["plan"]
names = lambda xs: ",".join(sorted(x["package"] for x in xs)) or "-"
print(wall, server, len(p["upgrades"]), len(p["refusals"]), names(p["upgrades"]), names(p["refusals"]))
PY
}

# Cold: the verified downloads go (the cache directory itself stays; the
# server writes its temporary files there).
rm -f "$data"/patch-cache/sha256/*
read -r cold_wall cold_srv ups refs upgraded refused < <(patch "")
warm=()
for _ in $(seq "$rounds"); do warm+=("$(patch "")"); done
dry=()
for _ in $(seq "$rounds"); do dry+=("$(patch --dry-run)"); done
best() { printf '%s\n' "$@" | sort -n -k1 | head -1; }
read -r warm_wall warm_srv _ <<<"$(best "${warm[@]}")"
read -r dry_wall dry_srv _ <<<"$(best "${dry[@]}")"

echo "\`bash bench/patch/run.sh $rounds\`, $(date -u +%F), $(nproc) cores, loopback archive of $ndebs real packages (\`target/patch-debs\`), image \`bookworm-base\` recording older versions of: $older."
echo
echo "Upgraded: ${upgraded//,/, }. Refused: ${refused//,/, }."
echo
echo "| run | upgrades | refused | wall, CLI (ms) | server, job start to end (ms) |"
echo "| --- | ---: | ---: | ---: | ---: |"
echo "| cold cache: plan, download, build, push | $ups | $refs | $cold_wall | $cold_srv |"
echo "| warm cache: plan, build, push (best of $rounds) | $ups | $refs | $warm_wall | $warm_srv |"
echo "| warm cache: plan only (--dry-run, best of $rounds) | $ups | $refs | $dry_wall | $dry_srv |"
