#!/usr/bin/env bash
# Build the real test images (OCI layout) that integration tests and
# benchmarks use, with the image builder kept beside this script
# (scripts/make-images.sh). Idempotent.
# Output: $DRYDOCK_TEST_IMAGES (default: target/test-images)/oci
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${DRYDOCK_TEST_IMAGES:-$root/target/test-images}"
# The 1 GiB and 200-layer images are for benchmarks only (bench/ builds them).
images=("$@")
[ ${#images[@]} -gt 0 ] || images=(bookworm-base python-app node-app rust-app multiarch)
mkdir -p "$out"
# make-images.sh skips images whose tag already exists. It builds a small
# Rust app and copies it from that app's own target/ directory, so a
# caller's CARGO_TARGET_DIR must not send the build elsewhere.
env -u CARGO_TARGET_DIR bash "$root/scripts/make-images.sh" "$out" "${images[@]}"
