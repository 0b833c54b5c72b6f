#!/usr/bin/env bash
# Sets up .venv (first time) and runs the CPU claims suite; writes reports/index.html and
# reports/verdicts.json. Extra arguments go to pytest (e.g. --profile full, --no-cache, claims/sgm).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CLAIMS_DATA_DIR="${CLAIMS_DATA_DIR:-$(cd .. && pwd)/shared/datasets}"
exec .venv/bin/python -m pytest claims --device cpu "$@"
