#!/usr/bin/env bash
# Re-assessment after a database update (issue #13; see bench/reassess.md).
#   bash bench/reassess/run.sh          10,000 and 100,000 stored images, on
#                                       SQLite and on PostgreSQL
#   BENCH_IMAGES=2000 BENCH_BACKENDS=sqlite bash bench/reassess/run.sh
# PostgreSQL: a throwaway cluster started here with ../shared/tools/pg-server.sh
# (fsync on, as a real server), or BENCH_PG_URL (put {n} in its database name:
# each size needs an empty database of its own); without the tool, the bench
# starts storage::testing's cluster (fsync off). Needs the test images
# (scripts/test-images.sh) and vulnerability data (../shared/vulndata, else
# tests/fixtures/vulndata). The tables are printed and kept in
# target/reassess-last-run.md; copy them into bench/reassess.md, then run
# bench/collect.sh.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
bash scripts/test-images.sh bookworm-base python-app node-app rust-app >/dev/null
pg_tool="$root/../shared/tools/pg-server.sh"
pg_dir=""
cleanup() {
  if [ -n "$pg_dir" ]; then
    bash "$pg_tool" stop "$pg_dir/data" || true
    rm -rf "$pg_dir"
  fi
}
trap cleanup EXIT
if [[ ",${BENCH_BACKENDS:-sqlite,postgres}," == *,postgres,* ]] \
  && [ -z "${BENCH_PG_URL:-}" ] && [ -x "$pg_tool" -o -f "$pg_tool" ]; then
  pg_dir="$(mktemp -d /tmp/drydock-reassess-pg.XXXXXX)"
  chmod 755 "$pg_dir" # the server runs as postgres
  # A free loopback port: ask the kernel, then hand it to the server.
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  out="$(bash "$pg_tool" "$port" "$pg_dir/data")"
  base="${out%%$'\n'*}"
  # An empty database per size (the bench puts the size for {n}).
  pgbin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  IFS=, read -ra sizes <<< "${BENCH_IMAGES:-10000,100000}"
  for n in "${sizes[@]}"; do
    su postgres -s /bin/sh -c "$pgbin/createdb -h 127.0.0.1 -p $port -U drydock reassess_$n"
  done
  export BENCH_PG_URL="${base%/*}/reassess_{n}"
fi
echo "load before: $(uptime)" >&2
cargo bench -p assess --bench reassess "$@" | tee target/reassess-last-run.md
echo "load after: $(uptime)" >&2
