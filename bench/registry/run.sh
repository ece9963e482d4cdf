#!/usr/bin/env bash
# Registry benchmark: drydock (release build) against CNCF distribution
# (Debian's docker-registry), same machine, same run, loopback only.
#
#   bash bench/registry/run.sh [--out bench/registry.md] [--only compare|auth|gate]
#
# Measures: 1 GiB blob push (monolithic POST+PUT, and 64 MiB PATCH chunks)
# and pull in MB/s (curl), manifest GET and HEAD requests/s at 1, 8 and 64
# connections (wrk), and each server's peak RSS (VmHWM). Prints one
# markdown table with both registries and the ratio drydock/distribution.
#
# Then the cost of access control: drydock twice, with the same content in
# two data directories, once without auth and once with `--auth`; manifest
# GET at 8 and 64 connections with a bearer token (and with HTTP Basic),
# 1 GiB monolithic push and pull with a bearer token, against the same
# requests without credentials. The two are measured in turns
# (BENCH_ROUNDS, default 2, best of each) so a load change hits both.
#
# Then the cost of the pull gate: drydock twice again, one with
# `[[assess.pull_gate]]` over the benchmark's repository (the image is
# assessed healthy against the in-repo advisory fixtures, and
# `not_assessed = true`, so a missing verdict would be refused and stop
# the run), manifest GET at 8 and 64 connections, in turns as above.
#
# --only compare / auth / gate runs one part; with --out, the auth and
# gate parts replace the sections between their `auth-bench` and
# `gate-bench` markers of the file (or are appended), and the comparison
# rewrites the rest.
# Needs: curl, wrk, python3; for the comparison docker-registry and
# ../shared/tools/peer-registry.sh.
set -euo pipefail
shopt -s inherit_errexit
root="$(cd "$(dirname "$0")/../.." && pwd)"
tools="${DRYDOCK_SHARED_TOOLS:-$root/../shared/tools}"
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
bench_options "compare auth gate" "$@"
rounds="${BENCH_ROUNDS:-2}"
load_at_start="$(cut -d' ' -f1-3 /proc/loadavg)"
work="$(mktemp -d /tmp/drydock-bench.XXXXXX)"
dur="${BENCH_DURATION:-5}"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT


echo "building drydock (release)..." >&2
if [ -z "${DRYDOCK_BIN:-}" ]; then
  (cd "$root" && cargo build --release -q -p drydock)
  DRYDOCK_BIN="${CARGO_TARGET_DIR:-$root/target}/release/drydock"
fi
# wrk cannot measure HEAD (it waits for a body), so HEAD uses a small
# reqwest-based load generator.
if [ -z "${HEADLOAD_BIN:-}" ] && wants compare; then
  (cd "$root" && cargo build --release -q -p registry --example headload)
  HEADLOAD_BIN="${CARGO_TARGET_DIR:-$root/target}/release/examples/headload"
fi

echo "making test data..." >&2
head -c 1073741824 /dev/urandom > "$work/mono.bin"
dmono="sha256:$(sha256sum "$work/mono.bin" | cut -d' ' -f1)"
if wants compare; then
  head -c 1073741824 /dev/urandom > "$work/chunked.bin"
  mkdir "$work/chunks"
  split -b 64M -d -a 3 "$work/chunked.bin" "$work/chunks/c"
  dchunk="sha256:$(sha256sum "$work/chunked.bin" | cut -d' ' -f1)"
fi
printf '{"architecture":"amd64","os":"linux"}' > "$work/config.json"
printf 'small layer' > "$work/layer.bin"
dcfg="sha256:$(sha256sum "$work/config.json" | cut -d' ' -f1)"
dlay="sha256:$(sha256sum "$work/layer.bin" | cut -d' ' -f1)"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}' \
  "$dcfg" "$(stat -c %s "$work/config.json")" "$dlay" "$(stat -c %s "$work/layer.bin")" > "$work/manifest.json"
MT="application/vnd.oci.image.manifest.v1+json"
# Write the test data out now, or its writeback competes with the pushes.
sync

# Extra curl/wrk arguments for every request (credentials); empty: none.
H=()
# Upload a session-based blob: POST, PUT body. Prints seconds for the PUT.
push_mono() { # base repo file digest
  local loc
  loc=$(curl -sS -D - -o /dev/null "${H[@]}" -X POST "$1/v2/$2/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
  case "$loc" in http*) ;; *) loc="$1$loc" ;; esac
  local sep='?'; case "$loc" in *\?*) sep='&' ;; esac
  curl -sS -o /dev/null -w '%{time_total}' "${H[@]}" -X PUT -H 'Content-Type: application/octet-stream' -T "$3" "$loc${sep}digest=$4"
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
pull() { curl -sS -f -o /dev/null -w '%{time_total}' "${H[@]}" "$1/v2/$2/blobs/$3"; }
mbps() { echo "scale=0; 1073741824 / $1 / 1000000" | bc -l; }
rps() { # url conns
  local t=$(( $2 < 2 ? $2 : 2 ))
  local res
  res=$(wrk -t"$t" -c"$2" -d"${dur}s" -H "Accept: $MT" "${H[@]}" "$1")
  # Error answers are cheap and would inflate the rate.
  if grep -q 'Non-2xx' <<<"$res"; then echo "wrk got error answers from $1:" >&2; echo "$res" >&2; exit 1; fi
  awk '/Requests\/sec/{printf "%d", $2}' <<<"$res"
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

compare() {
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
}
# Access control: the same requests without credentials and with them.
start_drydock() { # data port log [args...]
  local data=$1 port=$2 log=$3; shift 3
  DRYDOCK_VULNDB_UPDATE_HOURS=0 RUST_LOG=info "$DRYDOCK_BIN" --data "$data" "$@" --listen "127.0.0.1:$port" 2> "$log" &
  pids+=($!)
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/readyz" && break; sleep 0.1; done
}
token() { # base user:password repo actions -> a bearer token
  curl -sSf -u "$2" "$1/token?service=drydock&scope=repository:$3:$4" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])'
}
seed_small() { # base: the small image the manifest GETs read
  push_mono "$1" bench/small "$work/config.json" "$dcfg" >/dev/null
  push_mono "$1" bench/small "$work/layer.bin" "$dlay" >/dev/null
  curl -sSf -o /dev/null "${H[@]}" -X PUT -H "Content-Type: $MT" --data-binary @"$work/manifest.json" "$1/v2/bench/small/manifests/latest"
}
best() { # key command...: run it, keep the larger of its output and the last
  local v
  v=$("${@:2}")
  if [ -z "${A[$1]:-}" ] || [ "$v" -gt "${A[$1]}" ]; then A[$1]=$v; fi
}
push_mbps() { local s; s=$(push_mono "$@"); mbps "$s"; }
pull_mbps() { local s; pull "$@" >/dev/null; s=$(pull "$@"); mbps "$s"; }  # the first warms the cache
declare -A A
auth_part() {
  # Tokens last an hour here: the default 300 s could end within a run.
  printf '[auth]\ntoken_ttl_secs = 3600\n' > "$work/auth.toml"
  local pw creds plain authd pp pa
  pw="bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  creds="admin:$pw"
  pp=$(free_port); pa=$(free_port)
  plain="http://127.0.0.1:$pp"; authd="http://127.0.0.1:$pa"
  start_drydock "$work/plain" "$pp" "$work/plain.log" serve
  DRYDOCK_ADMIN_PASSWORD="$pw" start_drydock "$work/authd" "$pa" "$work/authd.log" --config "$work/auth.toml" serve --auth
  local pull_tok push_tok basic
  pull_tok=$(token "$authd" "$creds" bench/small pull)
  push_tok=$(token "$authd" "$creds" bench/mono pull,push)
  basic="Authorization: Basic $(printf '%s' "$creds" | base64 -w0)"
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$authd/v2/bench/small/manifests/latest")" = 401 ] ||
    { echo "the auth server answers without credentials" >&2; exit 1; }
  H=(); seed_small "$plain"
  H=(-H "Authorization: Bearer $(token "$authd" "$creds" bench/small pull,push)"); seed_small "$authd"
  for r in $(seq "$rounds"); do
    echo "[auth] round $r/$rounds: push, pull..." >&2
    H=(); best push_plain push_mbps "$plain" bench/mono "$work/mono.bin" "$dmono"
    H=(-H "Authorization: Bearer $push_tok"); best push_bearer push_mbps "$authd" bench/mono "$work/mono.bin" "$dmono"
    H=(); best pull_plain pull_mbps "$plain" bench/mono "$dmono"
    H=(-H "Authorization: Bearer $push_tok"); best pull_bearer pull_mbps "$authd" bench/mono "$dmono"
    for c in 8 64; do
      echo "[auth] round $r/$rounds: manifest GET c=$c..." >&2
      H=(); best "get${c}_plain" rps "$plain/v2/bench/small/manifests/latest" "$c"
      H=(-H "Authorization: Bearer $pull_tok"); best "get${c}_bearer" rps "$authd/v2/bench/small/manifests/latest" "$c"
      H=(-H "$basic"); best "get${c}_basic" rps "$authd/v2/bench/small/manifests/latest" "$c"
    done
  done
  H=()
  # Refusals besides the one anonymous probe above would mean a broken
  # measurement (rps() also stops on any non-2xx answer).
  local refused
  refused=$(grep -ac 'status[^ ]*40[13] ' "$work/authd.log" || true)
  if [ "$refused" -gt 1 ]; then
    echo "the auth server refused $refused requests during the run (see $work/authd.log)" >&2
    exit 1
  fi
  pct() { echo "$(( 100 * $2 / $1 ))%"; }
  {
    echo "| measurement | no auth | \`--auth\` | with / without |"
    echo "| --- | ---: | ---: | ---: |"
    for k in get8_bearer:"manifest GET, 8 conns, bearer (req/s)" get64_bearer:"manifest GET, 64 conns, bearer (req/s)" \
             get8_basic:"manifest GET, 8 conns, Basic (req/s)" get64_basic:"manifest GET, 64 conns, Basic (req/s)" \
             push_bearer:"1 GiB push, monolithic, bearer (MB/s)" pull_bearer:"1 GiB pull, bearer (MB/s)"; do
      key=${k%%:*}; label=${k#*:}; base=${key%_*}_plain
      echo "| $label | ${A[$base]} | ${A[$key]} | $(pct "${A[$base]}" "${A[$key]}") |"
    done
  } > "$work/auth-table.md"
  cat "$work/auth-table.md"
}

# The pull gate: the same manifest GETs with the gate off and on.
gate_part() {
  # A real (empty) tar layer, so the image is cataloged and judged healthy.
  python3 - "$work/gate-layer.tar" <<'PY'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w") as t:
    data = b"drydock bench\n"
    info = tarfile.TarInfo("etc/motd"); info.size = len(data); info.mtime = 0
    t.addfile(info, io.BytesIO(data))
PY
  local dgl gate_manifest
  dgl="sha256:$(sha256sum "$work/gate-layer.tar" | cut -d' ' -f1)"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}' \
    "$dcfg" "$(stat -c %s "$work/config.json")" "$dgl" "$(stat -c %s "$work/gate-layer.tar")" > "$work/gate-manifest.json"
  printf '[[assess.pull_gate]]\nrepository = "bench/*"\nnot_assessed = true\n' > "$work/gate.toml"
  "$DRYDOCK_BIN" --data "$work/gated" db import "$root/tests/fixtures/vulndata" >/dev/null
  local po pg off on
  po=$(free_port); pg=$(free_port)
  off="http://127.0.0.1:$po"; on="http://127.0.0.1:$pg"
  start_drydock "$work/ungated" "$po" "$work/ungated.log" serve
  start_drydock "$work/gated" "$pg" "$work/gated.log" --config "$work/gate.toml" serve
  H=()
  for b in "$off" "$on"; do
    push_mono "$b" bench/small "$work/config.json" "$dcfg" >/dev/null
    push_mono "$b" bench/small "$work/gate-layer.tar" "$dgl" >/dev/null
    curl -sSf -o /dev/null -X PUT -H "Content-Type: $MT" --data-binary @"$work/gate-manifest.json" "$b/v2/bench/small/manifests/latest"
  done
  local health=""
  for _ in $(seq 300); do
    health=$(curl -sSf "$on/api/v1/images?repository=bench/small" |
      python3 -c 'import json, sys; print(next((i["health"]["status"] for i in json.load(sys.stdin) if i["kind"] == "image" and i["health"]), ""))')
    [ "$health" = healthy ] && break
    sleep 0.1
  done
  [ "$health" = healthy ] || { echo "the gated image was not judged healthy (${health:-no verdict})" >&2; exit 1; }
  for r in $(seq "$rounds"); do
    for c in 8 64; do
      echo "[gate] round $r/$rounds: manifest GET c=$c..." >&2
      best "gget${c}_off" rps "$off/v2/bench/small/manifests/latest" "$c"
      best "gget${c}_on" rps "$on/v2/bench/small/manifests/latest" "$c"
    done
  done
  pct() { echo "$(( 100 * $2 / $1 ))%"; }
  {
    echo "| measurement | gate off | gate on (image healthy) | on / off |"
    echo "| --- | ---: | ---: | ---: |"
    for c in 8 64; do
      echo "| manifest GET, $c conns (req/s) | ${A[gget${c}_off]} | ${A[gget${c}_on]} | $(pct "${A[gget${c}_off]}" "${A[gget${c}_on]}") |"
    done
  } > "$work/gate-table.md"
  cat "$work/gate-table.md"
}

# Replace the section between `<!-- NAME:begin` and `<!-- NAME:end -->` of
# $out with the file $2 (or append it).
put_section() { # name file
  touch "$out"
  python3 - "$out" "$2" "$1" <<'PY'
import sys, re
path, section, name = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3]
text = open(path).read()
pat = re.compile(r"<!-- " + name + r":begin.*?<!-- " + name + r":end -->\n", re.S)
if pat.search(text):
    text = pat.sub(lambda _: section, text)
else:
    text = text.rstrip("\n") + "\n\n" + section
open(path, "w").write(text)
PY
}

wants compare && compare
wants auth && auth_part
wants gate && gate_part
if [ -n "$out" ] && wants gate; then
  {
    echo "<!-- gate-bench:begin (written by bench/registry/run.sh) -->"
    echo "## Pull gate"
    echo
    echo "\`bash bench/registry/run.sh --only gate --out bench/registry.md\`, $(nproc) cores, $(date -u +%Y-%m-%d), load average at start $load_at_start."
    echo "Two drydock servers (release build) with the same image, one with \`[[assess.pull_gate]]\` over its repository (the image assessed healthy against the in-repo advisory fixtures) and one without, measured in turns ($rounds rounds, best of each; wrk ${dur}s per point)."
    echo
    cat "$work/gate-table.md"
    echo "<!-- gate-bench:end -->"
  } > "$work/gate-section.md"
  put_section gate-bench "$work/gate-section.md"
fi
if [ -n "$out" ] && wants auth; then
  {
    echo "<!-- auth-bench:begin (written by bench/registry/run.sh) -->"
    echo "## Access control"
    echo
    echo "\`bash bench/registry/run.sh --only auth --out bench/registry.md\`, $(nproc) cores, $(date -u +%Y-%m-%d), load average at start $load_at_start."
    echo "Two drydock servers (release build) with the same content, one without auth and one with \`--auth\`, measured in turns ($rounds rounds, best of each; wrk ${dur}s per point). Bearer: an access token from \`/token\` for the repository; Basic: the admin's password on every request (verified once, then remembered)."
    echo
    cat "$work/auth-table.md"
    echo "<!-- auth-bench:end -->"
  } > "$work/auth-section.md"
  touch "$out"
  python3 - "$out" "$work/auth-section.md" <<'PY'
import sys, re
path, section = sys.argv[1], open(sys.argv[2]).read()
text = open(path).read()
pat = re.compile(r"<!-- auth-bench:begin.*?<!-- auth-bench:end -->\n", re.S)
if pat.search(text):
    text = pat.sub(lambda _: section, text)
else:
    text = text.rstrip("\n") + "\n\n" + section
open(path, "w").write(text)
PY
fi
