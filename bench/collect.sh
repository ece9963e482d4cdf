#!/usr/bin/env bash
# Gather the latest benchmark tables (bench/<area>.md, each written by that
# area's harness) into bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")"
{
  echo "# Benchmark results"
  echo
  echo "The latest table of each harness, gathered by \`bench/collect.sh\`."
  echo "Machine: 2 cores, 24 GiB. Each section says how it was run."
  for area in registry vulndb catalog assess reassess patch dashboard scale; do
    [ -f "$area.md" ] || continue
    echo
    # Demote the part's headings one level under this page's title.
    sed -e 's/^#/##/' "$area.md"
  done
} > RESULTS.md
echo "wrote bench/RESULTS.md"
