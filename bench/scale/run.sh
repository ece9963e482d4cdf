#!/usr/bin/env bash
# Scale-out benchmark (issue #13, "Speed"), loopback only, release build.
#
#   bash bench/scale/run.sh [--only blobs|nodes] [--out FILE]
#
# blobs: skopeo pushes and pulls the same two images to and from three
#   registries, side by side in turns: drydock on the filesystem (SQLite),
#   drydock on SeaweedFS (PostgreSQL metadata), and CNCF distribution 2.8
#   on the same SeaweedFS. Images: `large` (one 1 GiB layer, from the test
#   images) and a 200-layer image of 10 KiB layers (made here with
#   scripts/oci-synth.py). Then curl pushes one 1 GiB blob monolithically
#   (POST, then PUT ?digest= with the body: the digest known before the
#   bytes, which skopeo's POST, PATCH, PUT never tells) and pulls it, and
#   PUTs and GETs the same bytes straight to SeaweedFS (the store's own rate). Each round starts every registry afresh (new
#   data directory, bucket prefix, database and port), so nothing is
#   already stored and skopeo's blob cache knows no location to mount
#   from; the order of the three rotates each round. Pulls go to an OCI
#   layout in /dev/shm, so the local disk is not the bound.
# nodes: three `drydock serve` on one PostgreSQL database and one bucket,
#   all started before anything is pushed, and two round-robin balancers
#   (bench/scale/balancer.rs, per connection, compiled with rustc; no
#   HAProxy here): one in front of node 1 alone, one in front of all three.
#   Manifest GET req/s (wrk, 64 connections) through each balancer, and
#   straight to the nodes (one wrk per node at once, rates summed).
#   Assessment throughput: N distinct small images with cold layers
#   (bench/scale/assess_load.py) pushed through each balancer, timed until
#   every one is `done` on the node that took it. The two sides alternate.
#
# Prints markdown tables (and appends them to --out when given); each part
# keeps under 10 minutes on the 2-core bench machine.
# Knobs: BENCH_ROUNDS (blob rounds, 2), BENCH_NODE_ROUNDS (2),
# BENCH_IMAGES (images per assessment batch, 300), BENCH_PUSH_THREADS
# (concurrent image pushes, 16), BENCH_DURATION (wrk
# seconds, 10), DRYDOCK_BIN (skip the build), DRYDOCK_VULNDATA.
# Needs: skopeo, wrk, curl, python3, rustc, docker-registry, and the shared
# tools (s3-server.sh for SeaweedFS, pg-server.sh for PostgreSQL).
set -euo pipefail
shopt -s inherit_errexit
root="$(cd "$(dirname "$0")/../.." && pwd)"
tools="${DRYDOCK_SHARED_TOOLS:-$root/../shared/tools}"
here="$root/bench/scale"
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
bench_options "blobs nodes" "$@"
# The command as run, knobs included, for the report's header.
invocation=""
for v in BENCH_ROUNDS BENCH_NODE_ROUNDS BENCH_IMAGES BENCH_PUSH_THREADS BENCH_DURATION; do
  [ -z "${!v:-}" ] || invocation+="$v=${!v} "
done
invocation+="bash bench/scale/run.sh${only:+ --only $only}"
rounds="${BENCH_ROUNDS:-2}"
node_rounds="${BENCH_NODE_ROUNDS:-2}"
nimages="${BENCH_IMAGES:-300}"
# Pushes in flight: enough that three nodes each have several, so the
# client's concurrency is not what bounds the three-node side.
push_threads="${BENCH_PUSH_THREADS:-16}"
dur="${BENCH_DURATION:-10}"
vulndata="${DRYDOCK_VULNDATA:-$root/../shared/vulndata}"
[ -d "$vulndata" ] || vulndata="$root/tests/fixtures/vulndata"
MT="application/vnd.oci.image.manifest.v1+json"
started_at="$(date -u '+%Y-%m-%d %H:%M UTC')"
load_at_start="$(cut -d' ' -f1-3 /proc/loadavg)"

work="$(mktemp -d /tmp/drydock-scale.XXXXXX)"
# PostgreSQL runs as its own user and must reach its directory inside.
chmod 711 "$work"
shm="$(mktemp -d /dev/shm/drydock-scale.XXXXXX)"
pids=()
pgdir=""
cleanup() {
  local p
  # The shell's "Killed" notices for our own children are noise here.
  exec 2>/dev/null
  # SIGKILL: SeaweedFS takes ~15 s to leave on SIGTERM; nothing here is kept.
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ -n "$pgdir" ]; then bash "$tools/pg-server.sh" stop "$pgdir" 2>/dev/null || true; fi
  rm -rf "$work" "$shm"
}
trap cleanup EXIT
# Interrupted: leave through the EXIT trap, so every server still goes.
trap 'exit 130' INT TERM
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

port_free() { ! ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
# CPU seconds (user + system) a process has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0; }
cpu_sum() { local t=0 p; for p in "$@"; do t=$(echo "$t + $(cpu_s "$p")" | bc -l); done; echo "$t"; }
# The PostgreSQL postmaster and its backends.
pg_pids() { echo "$pg_pid"; pgrep -P "$pg_pid" || true; }
# Busy and total jiffies of the whole machine (/proc/stat).
sys_cpu() { awk '/^cpu /{t=0; for (i=2;i<=NF;i++) t+=$i; print t-$5-$6, t}' /proc/stat; }
now() { date +%s.%N; }

log "building drydock (release) and the balancer..."
if [ -z "${DRYDOCK_BIN:-}" ]; then
  (cd "$root" && cargo build --release -q -p drydock)
  DRYDOCK_BIN="${CARGO_TARGET_DIR:-$root/target}/release/drydock"
fi
rustc --edition 2024 -O "$here/balancer.rs" -o "$work/balancer"

layout="${DRYDOCK_TEST_IMAGES:-$root/target/test-images}/oci"
if wants blobs && ! grep -q '"large"' "$layout/index.json" 2>/dev/null; then
  bash "$root/scripts/test-images.sh" large >/dev/null
fi
if wants nodes && [ ! -f "${DRYDOCK_TEST_IMAGES:-$root/target/test-images}/rootfs/bookworm/var/lib/dpkg/status" ]; then
  bash "$root/scripts/test-images.sh" bookworm-base >/dev/null
fi

# --- shared services: SeaweedFS and PostgreSQL -----------------------------
s3_port=""
for _ in $(seq 1 20); do
  p=$(( 21000 + RANDOM % 24000 ))
  ok=1
  for i in 0 1 2 3 4; do port_free $((p + i)) && port_free $((p + i + 10000)) || ok=0; done
  [ "$ok" = 1 ] || continue
  if s3_pid=$(env -u AWS_CA_BUNDLE bash "$tools/s3-server.sh" seaweedfs "$p" "$work/weed"); then
    s3_port=$p; pids+=("$s3_pid"); break
  fi
done
[ -n "$s3_port" ] || { echo "could not start SeaweedFS" >&2; exit 1; }
s3="http://127.0.0.1:$s3_port"
pgdir="$work/pg"
pg_port=$(free_port)
pg_out=$(bash "$tools/pg-server.sh" "$pg_port" "$pgdir")
pg_url=$(sed -n 1p <<<"$pg_out")
pg_pid=$(sed -n 2p <<<"$pg_out")
pg_base="${pg_url%/*}"
new_db() { psql -q "$pg_url" -c "CREATE DATABASE \"$1\"" >/dev/null; echo "$pg_base/$1"; }
log "SeaweedFS on $s3_port (pid $s3_pid), PostgreSQL on $pg_port"

# Start `drydock serve`: sets DD_PORT and DD_PID. ARGS: name data [config]
start_drydock() {
  local name=$1 data=$2 cfg=${3:-}
  local args=(--data "$data")
  [ -z "$cfg" ] || args+=(--config "$cfg")
  mkdir -p "$data"
  DD_PORT=$(free_port)
  env -u AWS_CA_BUNDLE -u DRYDOCK_CONFIG -u DRYDOCK_DATA -u DRYDOCK_METADATA_URL \
    DRYDOCK_VULNDB_UPDATE_HOURS=0 \
    "$DRYDOCK_BIN" "${args[@]}" serve --listen "127.0.0.1:$DD_PORT" --no-auth \
    >>"$work/$name.log" 2>&1 </dev/null &
  DD_PID=$!
  pids+=("$DD_PID")
  wait_up "drydock $name" "http://127.0.0.1:$DD_PORT/readyz" "$DD_PID" "$work/$name.log" 600
}
# drydock's S3 configuration. ARGS: file prefix database_url
s3_config() {
  cat >"$1" <<EOF
[metadata]
url = "$3"

[storage.s3]
endpoint = "$s3"
bucket = "registry"
region = "us-east-1"
path_style = true
access_key = "testkey"
secret_key = "testsecret"
prefix = "$2"
EOF
}
# CNCF distribution on the same bucket, its own root per round: sets
# DIST_PORT, DIST_PID. (peer-registry.sh always uses the bucket's root.)
start_distribution() {
  local root_dir=$1 cfg="$work/dist-$1.yml"
  DIST_PORT=$(free_port)
  cat >"$cfg" <<EOF
version: 0.1
log:
  level: info
storage:
  s3:
    region: us-east-1
    regionendpoint: $s3
    bucket: registry
    accesskey: testkey
    secretkey: testsecret
    secure: false
    v4auth: true
    rootdirectory: /$root_dir
    chunksize: 5242880
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  redirect:
    disable: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$DIST_PORT
  secret: scale-bench-local-secret
EOF
  # distribution's S3 client fails when AWS_CA_BUNDLE is set.
  env -u AWS_CA_BUNDLE docker-registry serve "$cfg" >>"$work/dist.log" 2>&1 </dev/null &
  DIST_PID=$!
  pids+=("$DIST_PID")
  wait_up distribution "http://127.0.0.1:$DIST_PORT/v2/" "$DIST_PID" "$work/dist.log" 200
}
stop_pid() { kill -9 "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

report=()
emit() { report+=("$*"); }

# --- part 1: blob push and pull --------------------------------------------
# One timed client run; its CPU (user + system) goes to $work/client.cpu.
timed() { /usr/bin/time -f '%U %S' -o "$work/client.time" "$@" && awk '{printf "%.2f", $1 + $2}' "$work/client.time" >"$work/client.cpu"; }
# Monolithic upload, as one client request with its digest known: POST,
# then PUT ?digest= with the body. ARGS: base repo file digest
push_mono() {
  local loc sep code
  loc=$(curl -fsS -D - -o /dev/null -X POST "http://$1/v2/$2/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
  case "$loc" in http*) ;; *) loc="http://$1$loc" ;; esac
  sep='?'; case "$loc" in *\?*) sep='&' ;; esac
  code=$(timed curl -sS -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/octet-stream' -T "$3" "$loc${sep}digest=$4")
  [ "$code" = 201 ] || { echo "monolithic push to $1: HTTP $code" >&2; exit 1; }
}
# The operations, in the order each round runs them.
ops=(skopeo-large-push skopeo-large-pull curl-mono-push curl-mono-pull skopeo-small-push skopeo-small-pull)
run_op() { # op base tag
  case "$1" in
    skopeo-large-push) timed skopeo copy -q --dest-tls-verify=false "oci:$layout:large" "docker://$2/bench/large:$3" >/dev/null ;;
    skopeo-small-push) timed skopeo copy -q --dest-tls-verify=false "oci:$work/oci:many-small-layers" "docker://$2/bench/small:$3" >/dev/null ;;
    skopeo-large-pull) timed skopeo copy -q --src-tls-verify=false "docker://$2/bench/large:$3" "oci:$shm/pull:large" >/dev/null; rm -rf "$shm/pull" ;;
    skopeo-small-pull) timed skopeo copy -q --src-tls-verify=false "docker://$2/bench/small:$3" "oci:$shm/pull:small" >/dev/null; rm -rf "$shm/pull" ;;
    curl-mono-push) push_mono "$2" bench/mono "$work/mono.bin" "$dmono" ;;
    curl-mono-pull) timed curl -fsS -o /dev/null "http://$2/v2/bench/mono/blobs/$dmono" ;;
  esac
}
declare -A op_label=(
  [skopeo-large-push]="large (1 layer, 1 GiB): skopeo push"
  [skopeo-large-pull]="large: skopeo pull"
  [curl-mono-push]="1 GiB blob: curl POST + PUT ?digest= (monolithic)"
  [curl-mono-pull]="1 GiB blob: curl GET"
  [skopeo-small-push]="many-small-layers (200 × 10 KiB): skopeo push"
  [skopeo-small-pull]="many-small-layers: skopeo pull"
)

blobs() {
  log "making the test data..."
  python3 "$root/scripts/oci-synth.py" random-image --layout "$work/oci" --tag many-small-layers \
    --layers 200 --size 10240 --seed small >/dev/null
  head -c 1073741824 /dev/urandom >"$work/mono.bin"
  dmono="sha256:$(sha256sum "$work/mono.bin" | cut -d' ' -f1)"
  local large_bytes
  large_bytes=$(python3 - "$layout" <<'PY'
import json, sys, os
lay = sys.argv[1]
idx = json.load(open(os.path.join(lay, "index.json")))
d = next(m["digest"] for m in idx["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "large")
m = json.load(open(os.path.join(lay, "blobs", *d.split(":"))))
print(m["config"]["size"] + sum(l["size"] for l in m["layers"]))
PY
)
  # Write the test data out now, or its writeback competes with the pushes.
  sync
  local -A op_bytes=([skopeo-large-push]=$large_bytes [skopeo-large-pull]=$large_bytes
    [curl-mono-push]=1073741824 [curl-mono-pull]=1073741824)
  local setups=(dd-fs dd-s3 dist-s3)
  local -A T C S3C CL
  local r k s op t0 t1 c0 c1 w0 w1 pid
  for r in $(seq 1 "$rounds"); do
    log "blobs round $r/$rounds: starting fresh registries..."
    start_drydock "fs-r$r" "$work/fs-r$r"
    local -A PORT=([dd-fs]=$DD_PORT) PID=([dd-fs]=$DD_PID)
    s3_config "$work/s3-r$r.toml" "r$r/drydock/" "$(new_db "blobs_r$r")"
    start_drydock "s3-r$r" "$work/s3-r$r" "$work/s3-r$r.toml"
    PORT[dd-s3]=$DD_PORT; PID[dd-s3]=$DD_PID
    start_distribution "r$r-dist"
    PORT[dist-s3]=$DIST_PORT; PID[dist-s3]=$DIST_PID
    # Rotate who goes first, so a load change does not favour one side.
    local order=()
    for k in 0 1 2; do order+=("${setups[$(( (k + r - 1) % 3 ))]}"); done
    for op in "${ops[@]}"; do
      for s in "${order[@]}"; do
        pid=${PID[$s]}
        log "  $s $op"
        c0=$(cpu_s "$pid"); w0=$(cpu_s "$s3_pid"); t0=$(now)
        run_op "$op" "127.0.0.1:${PORT[$s]}" "r$r"
        t1=$(now); c1=$(cpu_s "$pid"); w1=$(cpu_s "$s3_pid")
        T[$s,$op,$r]=$(echo "$t1 - $t0" | bc -l)
        C[$s,$op,$r]=$(echo "$c1 - $c0" | bc -l)
        S3C[$s,$op,$r]=$(echo "$w1 - $w0" | bc -l)
        CL[$s,$op,$r]=$(cat "$work/client.cpu")
      done
    done
    for s in "${setups[@]}"; do stop_pid "${PID[$s]}"; done
    rm -rf "$work/fs-r$r"
    # The store alone, for scale: the same 1 GiB as one signed PUT (no
    # multipart, unsigned payload), then a GET, straight to SeaweedFS.
    log "  SeaweedFS alone"
    local sig=(--aws-sigv4 "aws:amz:us-east-1:s3" --user testkey:testsecret -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD')
    for op in put get; do
      w0=$(cpu_s "$s3_pid"); t0=$(now)
      if [ "$op" = put ]; then
        timed curl -fsS -o /dev/null "${sig[@]}" -T "$work/mono.bin" "$s3/registry/raw-r$r/blob"
      else
        timed curl -fsS -o /dev/null "${sig[@]}" "$s3/registry/raw-r$r/blob"
      fi
      t1=$(now); w1=$(cpu_s "$s3_pid")
      T[raw,$op,$r]=$(echo "$t1 - $t0" | bc -l)
      S3C[raw,$op,$r]=$(echo "$w1 - $w0" | bc -l)
      CL[raw,$op,$r]=$(cat "$work/client.cpu")
    done
  done
  med() { sort -g | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
  local -A M MC MW ML
  for s in "${setups[@]}"; do for op in "${ops[@]}"; do
    M[$s,$op]=$(for r in $(seq 1 "$rounds"); do echo "${T[$s,$op,$r]}"; done | med)
    MC[$s,$op]=$(for r in $(seq 1 "$rounds"); do echo "${C[$s,$op,$r]}"; done | med)
    MW[$s,$op]=$(for r in $(seq 1 "$rounds"); do echo "${S3C[$s,$op,$r]}"; done | med)
    ML[$s,$op]=$(for r in $(seq 1 "$rounds"); do echo "${CL[$s,$op,$r]}"; done | med)
  done; done
  emit "| operation | drydock, filesystem | drydock, SeaweedFS | distribution, SeaweedFS | drydock ÷ distribution on SeaweedFS |"
  emit "| --- | ---: | ---: | ---: | ---: |"
  local cells rate
  for op in "${ops[@]}"; do
    cells=()
    for s in "${setups[@]}"; do
      if [ -n "${op_bytes[$op]:-}" ]; then
        rate=$(printf '%.0f MB/s' "$(echo "${op_bytes[$op]} / ${M[$s,$op]} / 1000000" | bc -l)")
      else
        rate=$(printf '%.0f layers/s' "$(echo "200 / ${M[$s,$op]}" | bc -l)")
      fi
      cells+=("$rate ($(printf '%.2f' "${M[$s,$op]}") s)")
    done
    emit "| ${op_label[$op]} | ${cells[0]} | ${cells[1]} | ${cells[2]} | $(printf '%.1f×' "$(echo "${M[dist-s3,$op]} / ${M[dd-s3,$op]}" | bc -l)") |"
  done
  local raw
  for op in put get; do
    raw[0]=$(for r in $(seq 1 "$rounds"); do echo "${T[raw,$op,$r]}"; done | med)
    raw[1]=$(for r in $(seq 1 "$rounds"); do echo "${S3C[raw,$op,$r]}"; done | med)
    raw[2]=$(for r in $(seq 1 "$rounds"); do echo "${CL[raw,$op,$r]}"; done | med)
    emit "| SeaweedFS alone, 1 GiB object: curl $(tr a-z A-Z <<<"$op") (SigV4, one request) | | $(printf '%.0f MB/s (%.2f s; CPU %.2f + %.2f)' "$(echo "1073741824 / ${raw[0]} / 1000000" | bc -l)" "${raw[0]}" "${raw[1]}" "${raw[2]}") | | |"
  done
  emit ""
  emit "CPU seconds per operation (medians): registry + SeaweedFS + client."
  emit ""
  emit "| operation | drydock, filesystem | drydock, SeaweedFS | distribution, SeaweedFS |"
  emit "| --- | ---: | ---: | ---: |"
  for op in "${ops[@]}"; do
    emit "| $op | $(printf '%.2f + – + %.2f' "${MC[dd-fs,$op]}" "${ML[dd-fs,$op]}") | $(printf '%.2f + %.2f + %.2f' "${MC[dd-s3,$op]}" "${MW[dd-s3,$op]}" "${ML[dd-s3,$op]}") | $(printf '%.2f + %.2f + %.2f' "${MC[dist-s3,$op]}" "${MW[dist-s3,$op]}" "${ML[dist-s3,$op]}") |"
  done
  emit ""
  emit "Every round's seconds (drydock fs / drydock S3 / distribution S3):"
  emit ""
  local line
  for op in "${ops[@]}"; do
    line="- $op:"
    for r in $(seq 1 "$rounds"); do
      line+=" round $r: $(printf '%.2f / %.2f / %.2f' "${T[dd-fs,$op,$r]}" "${T[dd-s3,$op,$r]}" "${T[dist-s3,$op,$r]}");"
    done
    emit "${line%;}"
  done
}

# --- part 2: one node and three --------------------------------------------
wrk_rps() { # url conns threads
  local res
  res=$(wrk -t"$3" -c"$2" -d"${dur}s" -H "Accept: $MT" "$1")
  # Error answers are cheap and would inflate the rate.
  if grep -q 'Non-2xx\|Socket errors' <<<"$res"; then echo "wrk errors from $1:" >&2; echo "$res" >&2; exit 1; fi
  awk '/Requests\/sec/{printf "%d", $2}' <<<"$res"
}
nodes() {
  local url cfg n i
  url=$(new_db nodes)
  cfg="$work/nodes.toml"
  s3_config "$cfg" "nodes/" "$url"
  log "importing $vulndata into the nodes' data directories..."
  "$DRYDOCK_BIN" db import --data "$work/n1" "$vulndata" >/dev/null
  for n in n2 n3; do mkdir -p "$work/$n"; cp -a "$work/n1/vulndb" "$work/$n/"; done
  # Every node starts before the first push: a node queues at start every
  # manifest it never saw, which would add the others' images to its work.
  local np=() npid=()
  for n in n1 n2 n3; do
    start_drydock "$n" "$work/$n" "$cfg"
    np+=("$DD_PORT"); npid+=("$DD_PID")
  done
  local lb1 lb3 nodes_csv
  lb1=$(free_port); lb3=$(free_port)
  "$work/balancer" "127.0.0.1:$lb1" "127.0.0.1:${np[0]}" >/dev/null 2>&1 &
  pids+=("$!")
  "$work/balancer" "127.0.0.1:$lb3" "127.0.0.1:${np[0]}" "127.0.0.1:${np[1]}" "127.0.0.1:${np[2]}" >/dev/null 2>&1 &
  pids+=("$!")
  local bal_pids=("${pids[-2]}" "${pids[-1]}")
  for i in $(seq 1 50); do curl -fsS -o /dev/null "http://127.0.0.1:$lb3/v2/" 2>/dev/null && break; sleep 0.1; done
  nodes_csv="http://127.0.0.1:${np[0]},http://127.0.0.1:${np[1]},http://127.0.0.1:${np[2]}"

  log "manifest GET..."
  python3 "$here/assess_load.py" one "http://127.0.0.1:$lb1" get/small latest >/dev/null
  local path="/v2/get/small/manifests/latest"
  for p in "${np[@]}"; do curl -fsS -o /dev/null -H "Accept: $MT" "http://127.0.0.1:$p$path"; done
  local -A G
  local r
  for r in $(seq 1 "$node_rounds"); do
    G[lb1,$r]=$(wrk_rps "http://127.0.0.1:$lb1$path" 64 2)
    G[lb3,$r]=$(wrk_rps "http://127.0.0.1:$lb3$path" 64 2)
    G[n1,$r]=$(wrk_rps "http://127.0.0.1:${np[0]}$path" 64 2)
    # One wrk per node at once (22 + 21 + 21 connections), rates summed.
    local f="$work/wrk3" j w=()
    for j in 0 1 2; do
      wrk_rps "http://127.0.0.1:${np[$j]}$path" $(( j == 0 ? 22 : 21 )) 1 >"$f.$j" &
      w+=("$!")
    done
    for j in "${w[@]}"; do wait "$j"; done
    G[n3,$r]=$(( $(cat "$f.0") + $(cat "$f.1") + $(cat "$f.2") ))
    log "  round $r: lb1 ${G[lb1,$r]} lb3 ${G[lb3,$r]} n1 ${G[n1,$r]} n1+n2+n3 ${G[n3,$r]}"
  done

  log "assessment throughput ($nimages images per batch)..."
  local -A A
  local side b0 b1 a0 a1 pc0 pc1 w0 w1 dc0 dc1 bc0 bc1 res
  for r in $(seq 1 "$node_rounds"); do
    local sides=(lb1 lb3)
    [ $((r % 2)) = 0 ] && sides=(lb3 lb1)
    for side in "${sides[@]}"; do
      local port=$lb1; [ "$side" = lb3 ] && port=$lb3
      read -r b0 a0 < <(sys_cpu)
      dc0=$(cpu_sum "${npid[@]}"); w0=$(cpu_s "$s3_pid"); pc0=$(cpu_sum $(pg_pids)); bc0=$(cpu_sum "${bal_pids[@]}")
      res=$(python3 "$here/assess_load.py" push "http://127.0.0.1:$port" --nodes "$nodes_csv" \
        --count "$nimages" --seed "r$r-$side" --threads "$push_threads")
      read -r b1 a1 < <(sys_cpu)
      dc1=$(cpu_sum "${npid[@]}"); w1=$(cpu_s "$s3_pid"); pc1=$(cpu_sum $(pg_pids)); bc1=$(cpu_sum "${bal_pids[@]}")
      A[$side,$r]="$res"
      A[$side,$r,cpu]=$(printf '%.0f%% of 2 cores; CPU s: nodes %.1f, PostgreSQL %.1f, SeaweedFS %.1f, balancer %.1f' \
        "$(echo "100 * ($b1 - $b0) / ($a1 - $a0)" | bc -l)" "$(echo "$dc1 - $dc0" | bc -l)" \
        "$(echo "$pc1 - $pc0" | bc -l)" "$(echo "$w1 - $w0" | bc -l)" "$(echo "$bc1 - $bc0" | bc -l)")
      log "  $side round $r: $res; ${A[$side,$r,cpu]}"
    done
  done

  emit "| measurement | 1 node | 3 nodes | ratio |"
  emit "| --- | ---: | ---: | ---: |"
  for r in $(seq 1 "$node_rounds"); do
    emit "| manifest GET via the balancer, 64 conns (req/s), round $r | ${G[lb1,$r]} | ${G[lb3,$r]} | $(printf '%.2f×' "$(echo "${G[lb3,$r]} / ${G[lb1,$r]}" | bc -l)") |"
  done
  for r in $(seq 1 "$node_rounds"); do
    emit "| manifest GET straight to the nodes, 64 conns (req/s), round $r | ${G[n1,$r]} | ${G[n3,$r]} | $(printf '%.2f×' "$(echo "${G[n3,$r]} / ${G[n1,$r]}" | bc -l)") |"
  done
  local ips1 ips3
  for r in $(seq 1 "$node_rounds"); do
    ips1=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["images_per_s"])' "${A[lb1,$r]}")
    ips3=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["images_per_s"])' "${A[lb3,$r]}")
    emit "| assessment, $nimages cold images pushed and done (images/s), round $r | $ips1 | $ips3 | $(printf '%.2f×' "$(echo "$ips3 / $ips1" | bc -l)") |"
  done
  emit ""
  emit "Assessment batches ($push_threads image pushes in flight; assess_load.py's JSON; machine CPU while each ran):"
  emit ""
  for r in $(seq 1 "$node_rounds"); do for side in lb1 lb3; do
    emit "- round $r, $([ "$side" = lb1 ] && echo "1 node" || echo "3 nodes"): \`${A[$side,$r]}\`; ${A[$side,$r,cpu]}"
  done; done
}

if wants blobs; then
  emit "#### Blob push and pull: filesystem, SeaweedFS, and distribution on the same SeaweedFS"
  emit ""
  emit "\`$invocation\` (blobs: $rounds rounds), $started_at; load average at start $load_at_start. skopeo copy from an OCI layout (push) and to an OCI layout in /dev/shm (pull); curl for one 1 GiB blob (POST, then PUT ?digest= with the body; GET to /dev/null). Each registry's defaults: drydock S3 parts of 8 MiB, 3 in flight; distribution chunks of 5 MiB. Medians of the rounds (with 2 rounds, their mean)."
  emit ""
  blobs
  emit ""
fi
if wants nodes; then
  emit "#### One node and three (PostgreSQL + SeaweedFS)"
  emit ""
  emit "\`$invocation\` (nodes: $node_rounds rounds, wrk ${dur}s per point), $(date -u '+%Y-%m-%d %H:%M UTC'); load average $(cut -d' ' -f1-3 /proc/loadavg); vulnerability data \`$(realpath --relative-to="$root" "$vulndata")\`."
  emit ""
  nodes
  emit ""
fi
emit "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
printf '%s\n' "${report[@]}"
if [ -n "$out" ]; then printf '%s\n' "${report[@]}" >>"$out"; fi
