#!/usr/bin/env bash
# Assessment benchmarks (see bench/assess.md).
#   bash bench/assess/run.sh            push-to-findings latency over skopeo
#                                       pushes, and re-assessment of 10,000
#                                       stored inventories after a database update
#   BENCH=stream bash bench/assess/run.sh
#                                       catalog-while-uploading on and off in
#                                       the same run: push-to-findings and blob
#                                       push throughput (bench/RESULTS.md)
# Needs skopeo, the test images (scripts/test-images.sh) and shared/vulndata.
# Results: paste the printed tables into bench/assess.md or bench/RESULTS.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
# BENCH_TAGS=large measures the 1 GiB image alone; large-500m is a 500 MB
# one (built here: one random gzip layer, as `large`).
IFS=, read -ra tags <<< "${BENCH_TAGS:-bookworm-base,python-app,node-app,rust-app}"
build=()
for t in "${tags[@]}"; do
  [ "$t" = large-500m ] || build+=("$t")
done
bash scripts/test-images.sh "${build[@]}" >/dev/null
layout="${DRYDOCK_TEST_IMAGES:-$root/target/test-images}/oci"
if printf '%s\n' "${tags[@]}" | grep -qx large-500m \
  && ! grep -q '"large-500m"' "$layout/index.json"; then
  python3 scripts/oci-synth.py random-image --layout "$layout" --tag large-500m \
    --layers 1 --size 524288000 --seed mid >/dev/null
fi
cargo bench -p assess --bench "${BENCH:-assess}" "$@"
