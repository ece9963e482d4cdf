#!/usr/bin/env bash
# Quick blob-only benchmark for drydock alone: N rounds of a 1 GiB
# monolithic push (POST+PUT), a push in 64 MiB PATCH chunks, and a pull
# from the page cache; prints each round and the medians in MB/s.
#
#   bash bench/registry/blobs.sh [rounds]      (default 5)
#
# DRYDOCK_BIN picks the binary (default: target/release/drydock, built if
# missing); SERVE_EXAMPLE=1 runs the registry alone (examples/serve.rs,
# env passed through) instead; BLOBS_WORK keeps the test data between runs (default: a
# temporary directory). The committed blob is deleted between rounds so
# every push writes, fsyncs and renames a new file.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
rounds="${1:-5}"
bin="${DRYDOCK_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/drydock}"
[ "${SERVE_EXAMPLE:-0}" = 1 ] || [ -x "$bin" ] || (cd "$root" && cargo build --release -q -p drydock)
work="${BLOBS_WORK:-}"
keep=1
if [ -z "$work" ]; then work="$(mktemp -d /tmp/drydock-blobs.XXXXXX)"; keep=0; fi
data="$(mktemp -d /tmp/drydock-blobs-data.XXXXXX)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$data"; [ $keep = 1 ] || rm -rf "$work"; }
trap cleanup EXIT
if [ ! -f "$work/mono.bin" ]; then
  head -c 1073741824 /dev/urandom > "$work/mono.bin"
  mkdir -p "$work/chunks"
  split -b 64M -d -a 3 "$work/mono.bin" "$work/chunks/c"
  sync
fi
hex=$(sha256sum "$work/mono.bin" | cut -d' ' -f1)
d="sha256:$hex"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
b="http://127.0.0.1:$port"
if [ "${SERVE_EXAMPLE:-0}" = 1 ]; then
  # The registry alone (crates/registry/examples/serve.rs), for profiling.
  ex="${CARGO_TARGET_DIR:-$root/target}/release/examples/serve"
  [ -x "$ex" ] || (cd "$root" && cargo build --release -q -p registry --example serve)
  "$ex" "$data" "127.0.0.1:$port" 2>/dev/null &
else
  DRYDOCK_VULNDB_UPDATE_HOURS=0 RUST_LOG=info "$bin" --data "$data" serve --listen "127.0.0.1:$port" 2>/dev/null &
fi
pid=$!
for _ in $(seq 100); do curl -sf "$b/v2/" >/dev/null && break; sleep 0.1; done

loc_of() { tr -d '\r' | awk 'tolower($1)=="location:"{print $2}'; }
mono() {
  local loc; loc=$(curl -sS -D - -o /dev/null -X POST "$b/v2/bench/mono/blobs/uploads/" | loc_of)
  curl -sS -o /dev/null -w '%{time_total}' -X PUT -H 'Content-Type: application/octet-stream' \
    -T "$work/mono.bin" "$b$loc?digest=$d"
}
chunked() {
  local start loc off=0 sz
  start=$(date +%s.%N)
  loc=$(curl -sS -D - -o /dev/null -X POST -H 'Content-Length: 0' "$b/v2/bench/chunked/blobs/uploads/" | loc_of)
  for c in "$work"/chunks/c*; do
    sz=$(stat -c %s "$c")
    loc=$(curl -sS -D - -o /dev/null -X PATCH -H 'Content-Type: application/octet-stream' \
      -H "Content-Range: $off-$((off + sz - 1))" -T "$c" "$b$loc" | loc_of)
    off=$((off + sz))
  done
  curl -sS -o /dev/null -X PUT -H 'Content-Length: 0' "$b$loc?digest=$d"
  echo "$(date +%s.%N) - $start" | bc -l
}
pull() { curl -sS -o /dev/null -w '%{time_total}' "$b/v2/bench/mono/blobs/$d"; }
mbps() { echo "scale=0; 1073741824 / $1 / 1000000" | bc -l; }
drop_blob() { rm -f "$data/blobs/sha256/${hex:0:2}/$hex"; }
# Server CPU time (user+system) in seconds so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$pid/stat"; }
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

P=() C=() G=() PC=() CC=() GC=()
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq "$rounds"); do
  drop_blob; c0=$(cpu); p=$(mbps "$(mono)"); c1=$(cpu)
  drop_blob; c=$(mbps "$(chunked)"); c2=$(cpu)
  pull >/dev/null; c3=$(cpu); g=$(mbps "$(pull)"); c4=$(cpu)
  pc=$(echo "$c1 - $c0" | bc); cc=$(echo "$c2 - $c1" | bc); gc=$(echo "$c4 - $c3" | bc)
  P+=("$p"); C+=("$c"); G+=("$g"); PC+=("$pc"); CC+=("$cc"); GC+=("$gc")
  echo "round $i: push $p  chunked $c  pull $g MB/s; server CPU s: $pc $cc $gc  (load $(cut -d' ' -f1 /proc/loadavg))"
done
echo "median: push $(printf '%s\n' "${P[@]}" | median)  chunked $(printf '%s\n' "${C[@]}" | median)  pull $(printf '%s\n' "${G[@]}" | median) MB/s; server CPU s: $(printf '%s\n' "${PC[@]}" | median) $(printf '%s\n' "${CC[@]}" | median) $(printf '%s\n' "${GC[@]}" | median)"
echo "peak RSS: $(awk '/VmHWM/{printf "%d", $2/1024}' "/proc/$pid/status") MB"
