#!/usr/bin/env bash
# Assessment benchmark: push-to-findings latency over skopeo pushes, and
# re-assessment of 10,000 stored inventories after a database update.
# Needs skopeo, the test images (scripts/test-images.sh) and shared/vulndata.
# Results: paste the printed tables into bench/assess.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
# BENCH_TAGS=large measures the 1 GiB image alone.
IFS=, read -ra tags <<< "${BENCH_TAGS:-bookworm-base,python-app,node-app,rust-app}"
bash scripts/test-images.sh "${tags[@]}" >/dev/null
cargo bench -p assess --bench assess "$@"
