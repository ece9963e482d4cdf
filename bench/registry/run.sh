#!/usr/bin/env bash
# Registry benchmark: drydock (release build) against CNCF distribution
# (Debian's docker-registry), same machine, same run, loopback only.
#
#   bash bench/registry/run.sh [--out bench/registry.md]
#
# Measures: 1 GiB blob push (monolithic POST+PUT, and 64 MiB PATCH chunks)
# and pull in MB/s (curl), manifest GET and HEAD requests/s at 1, 8 and 64
# connections (wrk), and each server's peak RSS (VmHWM). Prints one
# markdown table with both registries and the ratio drydock/distribution.
# Needs: curl, wrk, docker-registry, ../shared/tools/peer-registry.sh.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
tools="${DRYDOCK_SHARED_TOOLS:-$root/../shared/tools}"
out=""
[ "${1:-}" = "--out" ] && out="$2"
work="$(mktemp -d /tmp/drydock-bench.XXXXXX)"
dur="${BENCH_DURATION:-5}"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "building drydock (release)..." >&2
if [ -z "${DRYDOCK_BIN:-}" ]; then
  (cd "$root" && cargo build --release -q -p drydock)
  DRYDOCK_BIN="${CARGO_TARGET_DIR:-$root/target}/release/drydock"
fi
# wrk cannot measure HEAD (it waits for a body), so HEAD uses a small
# reqwest-based load generator.
if [ -z "${HEADLOAD_BIN:-}" ]; then
  (cd "$root" && cargo build --release -q -p registry --example headload)
  HEADLOAD_BIN="${CARGO_TARGET_DIR:-$root/target}/release/examples/headload"
fi

echo "making test data..." >&2
head -c 1073741824 /dev/urandom > "$work/mono.bin"
head -c 1073741824 /dev/urandom > "$work/chunked.bin"
mkdir "$work/chunks"
split -b 64M -d -a 3 "$work/chunked.bin" "$work/chunks/c"
dmono="sha256:$(sha256sum "$work/mono.bin" | cut -d' ' -f1)"
dchunk="sha256:$(sha256sum "$work/chunked.bin" | cut -d' ' -f1)"
printf '{"architecture":"amd64","os":"linux"}' > "$work/config.json"
printf 'small layer' > "$work/layer.bin"
dcfg="sha256:$(sha256sum "$work/config.json" | cut -d' ' -f1)"
dlay="sha256:$(sha256sum "$work/layer.bin" | cut -d' ' -f1)"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}' \
  "$dcfg" "$(stat -c %s "$work/config.json")" "$dlay" "$(stat -c %s "$work/layer.bin")" > "$work/manifest.json"
MT="application/vnd.oci.image.manifest.v1+json"
# Write the test data out now, or its writeback competes with the pushes.
sync

# Upload a session-based blob: POST, PUT body. Prints seconds for the PUT.
push_mono() { # base repo file digest
  local loc
  loc=$(curl -sS -D - -o /dev/null -X POST "$1/v2/$2/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
  case "$loc" in http*) ;; *) loc="$1$loc" ;; esac
  local sep='?'; case "$loc" in *\?*) sep='&' ;; esac
  curl -sS -o /dev/null -w '%{time_total}' -X PUT -H 'Content-Type: application/octet-stream' -T "$3" "$loc${sep}digest=$4"
}
push_chunked() { # base repo digest -> seconds for all PATCHes + PUT
  local start end loc off=0 sz
  start=$(date +%s.%N)
  loc=$(curl -sS -D - -o /dev/null -X POST -H 'Content-Length: 0' "$1/v2/$2/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
  for c in "$work"/chunks/c*; do
    sz=$(stat -c %s "$c")
    case "$loc" in http*) ;; *) loc="$1$loc" ;; esac
    loc=$(curl -sS -D - -o /dev/null -X PATCH -H 'Content-Type: application/octet-stream' \
      -H "Content-Range: $off-$((off + sz - 1))" -T "$c" "$loc" | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
    off=$((off + sz))
  done
  case "$loc" in http*) ;; *) loc="$1$loc" ;; esac
  local sep='?'; case "$loc" in *\?*) sep='&' ;; esac
  curl -sS -o /dev/null -X PUT -H 'Content-Length: 0' "$loc${sep}digest=$3"
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}
pull() { curl -sS -o /dev/null -w '%{time_total}' "$1/v2/$2/blobs/$3"; }
mbps() { echo "scale=0; 1073741824 / $1 / 1000000" | bc -l; }
rps() { # url conns
  local t=$(( $2 < 2 ? $2 : 2 ))
  wrk -t"$t" -c"$2" -d"${dur}s" -H "Accept: $MT" "$1" | awk '/Requests\/sec/{printf "%d", $2}'
}
rps_head() { "$HEADLOAD_BIN" "$1" "$2" "$dur" "$MT"; }
rss_mb() { awk '/VmHWM/{printf "%d", $2/1024}' "/proc/$1/status"; }

declare -A R
bench_one() { # name base pid
  local n=$1 b=$2 pid=$3
  echo "[$n] monolithic push..." >&2
  R[$n,push]=$(mbps "$(push_mono "$b" bench/mono "$work/mono.bin" "$dmono")")
  echo "[$n] chunked push..." >&2
  R[$n,chunk]=$(mbps "$(push_chunked "$b" bench/chunked "$dchunk")")
  echo "[$n] pull..." >&2
  pull "$b" bench/mono "$dmono" >/dev/null  # warm the page cache
  R[$n,pull]=$(mbps "$(pull "$b" bench/mono "$dmono")")
  R[$n,rss]=$(rss_mb "$pid")
  push_mono "$b" bench/small "$work/config.json" "$dcfg" >/dev/null
  push_mono "$b" bench/small "$work/layer.bin" "$dlay" >/dev/null
  curl -sS -o /dev/null -X PUT -H "Content-Type: $MT" --data-binary @"$work/manifest.json" "$b/v2/bench/small/manifests/latest"
  for c in 1 8 64; do
    echo "[$n] manifest GET/HEAD c=$c..." >&2
    R[$n,get$c]=$(rps "$b/v2/bench/small/manifests/latest" $c)
    R[$n,head$c]=$(rps_head "$b/v2/bench/small/manifests/latest" $c)
  done
  R[$n,rss]=$(rss_mb "$pid")
}

# drydock
p1=$(free_port)
DRYDOCK_VULNDB_UPDATE_HOURS=0 RUST_LOG=info "$DRYDOCK_BIN" --data "$work/drydock" serve --listen "127.0.0.1:$p1" 2> "$work/drydock.log" &
pids+=($!); dpid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$p1/v2/" >/dev/null && break; sleep 0.1; done
bench_one drydock "http://127.0.0.1:$p1" "$dpid"
kill "$dpid"; wait "$dpid" 2>/dev/null || true

# distribution
p2=$(free_port)
rpid=$(bash "$tools/peer-registry.sh" "$p2" "$work/distribution" "$work/distribution.log" | tail -1)
pids+=("$rpid")
bench_one distribution "http://127.0.0.1:$p2" "$rpid"
kill "$rpid" 2>/dev/null || true

ratio() { echo "scale=1; $1 / $2" | bc -l; }
{
  echo "| measurement | drydock | distribution 2.8 | ratio |"
  echo "| --- | ---: | ---: | ---: |"
  for k in push:"1 GiB push, monolithic (MB/s)" chunk:"1 GiB push, 64 MiB chunks (MB/s)" pull:"1 GiB pull (MB/s)" \
           get1:"manifest GET, 1 conn (req/s)" get8:"manifest GET, 8 conns (req/s)" get64:"manifest GET, 64 conns (req/s)" \
           head1:"manifest HEAD, 1 conn (req/s)" head8:"manifest HEAD, 8 conns (req/s)" head64:"manifest HEAD, 64 conns (req/s)" \
           rss:"peak RSS (MB)"; do
    key=${k%%:*}; label=${k#*:}
    echo "| $label | ${R[drydock,$key]} | ${R[distribution,$key]} | $(ratio "${R[drydock,$key]}" "${R[distribution,$key]}")× |"
  done
} > "$work/table.md"
cat "$work/table.md"
if [ -n "$out" ]; then
  {
    echo "# Registry benchmark"
    echo
    echo "Run with \`bash bench/registry/run.sh --out bench/registry.md\` on $(nproc) cores, $(date -u +%Y-%m-%d)."
    echo "Loopback, filesystem storage, curl for blobs, wrk (${dur}s per point) for manifest GET, the reqwest-based \`headload\` example for HEAD (wrk cannot do HEAD); drydock logs one line per request at info. Blob pushes are POST then PUT (distribution has no single-POST upload); drydock fsyncs every blob before acknowledging it."
    echo
    cat "$work/table.md"
  } > "$out"
fi
