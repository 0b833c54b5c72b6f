#!/usr/bin/env bash
# Sets up .venv (first time) and runs the speed benchmarks (benchmarks/): ratios printed and kept in
# pytest-benchmark's table, never asserted. Extra arguments go to pytest (e.g. -k engine).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CLAIMS_DATA_DIR="${CLAIMS_DATA_DIR:-$(cd .. && pwd)/shared/datasets}"
exec .venv/bin/python -m pytest benchmarks -s "$@"
