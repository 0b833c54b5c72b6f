#!/usr/bin/env bash
# Sets up .venv (first time) and runs the unit, property and integration tests in tests/.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CLAIMS_DATA_DIR="${CLAIMS_DATA_DIR:-$(cd .. && pwd)/shared/datasets}"
exec .venv/bin/python -m pytest tests "$@"
